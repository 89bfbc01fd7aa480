/* sleeper -- sleeps for the given number of seconds (default 1) */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int
main(int argc, char *argv[])
{
	unsigned s = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 1;

	printf("sleeper: sleeping %u second(s)\n", s);
	fflush(stdout);
	sleep(s);
	return 0;
}
