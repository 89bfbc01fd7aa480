/* noisy -- runs every generated unit once and prints the checksum */
#include <stdio.h>

long run_units(long x);

int
main(void)
{
	printf("noisy: checksum %ld\n", run_units(0));
	return 0;
}
