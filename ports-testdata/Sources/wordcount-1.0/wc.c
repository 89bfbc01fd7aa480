/* wordcount -- count lines, words and bytes of files or stdin */
#include <ctype.h>
#include <stdio.h>

struct counts {
	unsigned long lines, words, bytes;
};

static void
count(FILE *in, struct counts *c)
{
	int ch, inword = 0;

	while ((ch = getc(in)) != EOF) {
		c->bytes++;
		if (ch == '\n')
			c->lines++;
		if (isspace(ch)) {
			inword = 0;
		} else if (!inword) {
			inword = 1;
		}
	}
}

static void
report(const struct counts *c, const char *name)
{
	printf("%8lu %8lu %8lu", c->lines, c->words, c->bytes);
	if (name != NULL)
		printf(" %s", name);
	putchar('\n');
}

int
main(int argc, char *argv[])
{
	struct counts total = { 0, 0, 0 };
	int rc = 0;

	if (argc < 2) {
		count(stdin, &total);
		report(&total, NULL);
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		struct counts c = { 0, 0, 0 };
		FILE *in = fopen(argv[i], "r");

		if (in == NULL) {
			perror(argv[i]);
			rc = 1;
			continue;
		}
		count(in, &c);
		fclose(in);
		report(&c, argv[i]);
		total.lines += c.lines;
		total.words += c.words;
		total.bytes += c.bytes;
	}
	if (argc > 2)
		report(&total, "total");
	return rc;
}
