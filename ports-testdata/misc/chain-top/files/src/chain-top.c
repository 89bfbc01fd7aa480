/* chain-top -- link of a three-port RUN_DEPENDS chain */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME "chain-top"
#define NEXT "chain-middle"

int
main(int argc, char *argv[])
{
	char line[256] = "";

	if (argc > 1 && strcmp(argv[1], "--self") == 0) {
		puts(NAME);
		return 0;
	}
	if (NEXT[0] != '\0') {
		/* run the next link of the chain (a run-time dependency) */
		FILE *p = popen(NEXT, "r");

		if (p == NULL || fgets(line, sizeof(line), p) == NULL) {
			fprintf(stderr, NAME ": cannot run " NEXT "\n");
			return 1;
		}
		if (pclose(p) != 0) {
			fprintf(stderr, NAME ": " NEXT " failed\n");
			return 1;
		}
		line[strcspn(line, "\n")] = '\0';
		printf("%s -> %s\n", NAME, line);
	} else
		puts(NAME);
	return 0;
}
