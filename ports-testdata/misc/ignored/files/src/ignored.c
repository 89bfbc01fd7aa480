/* ignored -- a trivial program; the port is never built (IGNORE) */
#include <stdio.h>

int
main(void)
{
	puts("ignored");
	return 0;
}
