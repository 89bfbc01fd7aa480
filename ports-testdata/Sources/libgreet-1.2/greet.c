/* greet.c -- libgreet implementation */
#include <stdio.h>
#include "greet.h"

const char *
greet_version(void)
{
	return GREET_VERSION;
}

int
greet_format(char *buf, size_t len, const char *name)
{
	if (name == NULL || *name == '\0')
		name = "world";
	return snprintf(buf, len, "Hello, %s!", name);
}

int
greet(const char *name)
{
	char buf[256];
	int n = greet_format(buf, sizeof(buf), name);

	if (n < 0 || (size_t)n >= sizeof(buf))
		return -1;
	return puts(buf) < 0 ? -1 : 0;
}
