/* demo.c -- prints what configure recorded in config.h */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include "config.h"
#if HAVE_UNISTD_H
#include <unistd.h>
#endif

int
main(int argc, char *argv[])
{
	char msg[256];

	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("%s %s (prefix %s)\n", PACKAGE_NAME, PACKAGE_VERSION, PREFIX);
		return 0;
	}
	snprintf(msg, sizeof(msg), "%s", GREETING);
	if (SHOUT)
		for (char *p = msg; *p; p++)
			*p = (char)toupper((unsigned char)*p);
	puts(msg);
	return 0;
}
