/*
 * mltest -- run a minilang test suite: each line of the suite is
 * "EXPRESSION => EXPECTED" (EXPECTED may be several values separated by
 * spaces, one per statement).  The interpreter is run once per case.
 *
 * usage: mltest [-i INTERPRETER] SUITE
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
shellquote(char *dst, size_t len, const char *src)
{
	size_t n = 0;

	dst[n++] = '\'';
	for (; *src && n + 5 < len; src++) {
		if (*src == '\'') {
			memcpy(dst + n, "'\\''", 4);
			n += 4;
		} else
			dst[n++] = *src;
	}
	dst[n++] = '\'';
	dst[n] = '\0';
}

int
main(int argc, char *argv[])
{
	const char *interp = "minilang-full";
	char line[512], cmd[1200], q[1100], out[512];
	int c, pass = 0, fail = 0;
	FILE *suite;

	while ((c = getopt(argc, argv, "i:")) != -1) {
		if (c != 'i') {
			fprintf(stderr, "usage: mltest [-i INTERPRETER] SUITE\n");
			return 2;
		}
		interp = optarg;
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "usage: mltest [-i INTERPRETER] SUITE\n");
		return 2;
	}
	if ((suite = fopen(argv[optind], "r")) == NULL) {
		perror(argv[optind]);
		return 2;
	}
	while (fgets(line, sizeof(line), suite) != NULL) {
		char *arrow, *want, got[512] = "";
		FILE *pipe;

		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		if ((arrow = strstr(line, "=>")) == NULL) {
			fprintf(stderr, "mltest: bad line: %s\n", line);
			return 2;
		}
		*arrow = '\0';
		want = arrow + 2;
		while (*want == ' ')
			want++;
		shellquote(q, sizeof(q), line);
		snprintf(cmd, sizeof(cmd), "%s %s 2>&1", interp, q);
		if ((pipe = popen(cmd, "r")) == NULL) {
			perror("popen");
			return 2;
		}
		while (fgets(out, sizeof(out), pipe) != NULL) {
			out[strcspn(out, "\n")] = '\0';
			if (got[0] != '\0')
				strncat(got, " ", sizeof(got) - strlen(got) - 1);
			strncat(got, out, sizeof(got) - strlen(got) - 1);
		}
		pclose(pipe);
		if (strcmp(got, want) == 0) {
			pass++;
		} else {
			fail++;
			printf("FAIL: %s => expected '%s', got '%s'\n", line, want, got);
		}
	}
	fclose(suite);
	printf("mltest: %d passed, %d failed (%s)\n", pass, fail, interp);
	return fail ? 1 : 0;
}
