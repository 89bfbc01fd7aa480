/*
 * calc -- command-line calculator front end.  Joins its arguments into one
 * expression and evaluates it with the minilang interpreter (found in PATH,
 * or $MINILANG), so minilang is a run-time dependency.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int
main(int argc, char *argv[])
{
	const char *interp = getenv("MINILANG");
	char expr[1024] = "";

	if (interp == NULL || *interp == '\0')
		interp = "minilang";
	if (argc < 2) {
		fprintf(stderr, "usage: calc EXPRESSION...\n");
		return 2;
	}
	if (strcmp(argv[1], "--version") == 0) {
		puts("calc 1.0");
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		if (strlen(expr) + strlen(argv[i]) + 2 > sizeof(expr)) {
			fprintf(stderr, "calc: expression too long\n");
			return 2;
		}
		if (i > 1)
			strcat(expr, " ");
		strcat(expr, argv[i]);
	}
	fflush(stdout);
	execlp(interp, interp, expr, (char *)NULL);
	fprintf(stderr, "calc: cannot run %s (install lang/minilang)\n", interp);
	return 127;
}
