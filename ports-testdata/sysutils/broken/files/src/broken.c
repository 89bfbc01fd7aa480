/* broken -- a trivial program; the port is never built (BROKEN) */
#include <stdio.h>

int
main(void)
{
	puts("broken");
	return 0;
}
