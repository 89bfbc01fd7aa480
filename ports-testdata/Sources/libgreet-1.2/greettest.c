/* greettest.c -- self test run at build time */
#include <stdio.h>
#include <string.h>
#include "greet.h"

int
main(void)
{
	char buf[64];

	greet_format(buf, sizeof(buf), "test");
	if (strcmp(buf, "Hello, test!") != 0) {
		fprintf(stderr, "greettest: got '%s'\n", buf);
		return 1;
	}
	greet_format(buf, sizeof(buf), NULL);
	if (strcmp(buf, "Hello, world!") != 0) {
		fprintf(stderr, "greettest: got '%s'\n", buf);
		return 1;
	}
	printf("greettest: libgreet %s OK\n", greet_version());
	return 0;
}
