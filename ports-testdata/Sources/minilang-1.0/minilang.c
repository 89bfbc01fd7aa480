/*
 * minilang -- a tiny expression interpreter.
 *
 * lite: integer arithmetic: + - * / % ( ) and unary minus.
 * full (built with -DMINILANG_FULL): also ^ (power), variables
 *       (`let x = expr`), the builtins min(a,b), max(a,b), abs(a), and
 *       several statements per line separated by ';'.
 *
 * Usage: minilang [EXPR...]   evaluates each argument, or each stdin line,
 *                             and prints the value of each statement.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MINILANG_FULL
#define EDITION "full"
#else
#define EDITION "lite"
#endif

static const char *p;
static jmp_buf fail;
static char errmsg[128];

static void
error(const char *msg)
{
	snprintf(errmsg, sizeof(errmsg), "%s near '%.10s'", msg, *p ? p : "end of input");
	longjmp(fail, 1);
}

static void
skip(void)
{
	while (isspace((unsigned char)*p))
		p++;
}

static int
accept(char c)
{
	skip();
	if (*p == c) {
		p++;
		return 1;
	}
	return 0;
}

static long expr(void);

#ifdef MINILANG_FULL
#define NVARS 64
static struct {
	char name[32];
	long value;
} vars[NVARS];
static int nvars;

static int
ident(char *buf, size_t len)
{
	size_t n = 0;

	skip();
	if (!isalpha((unsigned char)*p) && *p != '_')
		return 0;
	while (isalnum((unsigned char)*p) || *p == '_') {
		if (n + 1 < len)
			buf[n++] = *p;
		p++;
	}
	buf[n] = '\0';
	return 1;
}

static long *
var(const char *name, int create)
{
	for (int i = 0; i < nvars; i++)
		if (strcmp(vars[i].name, name) == 0)
			return &vars[i].value;
	if (!create)
		error("undefined variable");
	if (nvars == NVARS)
		error("too many variables");
	snprintf(vars[nvars].name, sizeof(vars[nvars].name), "%s", name);
	vars[nvars].value = 0;
	return &vars[nvars++].value;
}
#endif

static long
primary(void)
{
	long v;

	skip();
	if (accept('(')) {
		v = expr();
		if (!accept(')'))
			error("expected ')'");
		return v;
	}
	if (accept('-'))
		return -primary();
	if (isdigit((unsigned char)*p)) {
		char *end;

		v = strtol(p, &end, 10);
		p = end;
		return v;
	}
#ifdef MINILANG_FULL
	{
		char name[32];

		if (ident(name, sizeof(name))) {
			if (accept('(')) {
				long a = expr(), b = 0;
				int two = accept(',');

				if (two)
					b = expr();
				if (!accept(')'))
					error("expected ')'");
				if (strcmp(name, "abs") == 0 && !two)
					return a < 0 ? -a : a;
				if (strcmp(name, "min") == 0 && two)
					return a < b ? a : b;
				if (strcmp(name, "max") == 0 && two)
					return a > b ? a : b;
				error("unknown function");
			}
			return *var(name, 0);
		}
	}
#endif
	error("expected a number");
	return 0;
}

static long
power(void)
{
	long base = primary();
#ifdef MINILANG_FULL
	if (accept('^')) {
		long e = power(), r = 1;	/* right associative */

		if (e < 0)
			error("negative exponent");
		while (e-- > 0)
			r *= base;
		return r;
	}
#endif
	return base;
}

static long
term(void)
{
	long v = power(), d;

	for (;;) {
		if (accept('*')) {
			v *= power();
		} else if (accept('/')) {
			if ((d = power()) == 0)
				error("division by zero");
			v /= d;
		} else if (accept('%')) {
			if ((d = power()) == 0)
				error("division by zero");
			v %= d;
		} else
			return v;
	}
}

static long
expr(void)
{
	long v = term();

	for (;;) {
		if (accept('+'))
			v += term();
		else if (accept('-'))
			v -= term();
		else
			return v;
	}
}

static long
statement(void)
{
#ifdef MINILANG_FULL
	const char *save;
	char name[32];

	skip();
	save = p;
	if (ident(name, sizeof(name)) && strcmp(name, "let") == 0) {
		long v;

		if (!ident(name, sizeof(name)))
			error("expected a variable name");
		if (!accept('='))
			error("expected '='");
		v = expr();
		*var(name, 1) = v;
		return v;
	}
	p = save;
#endif
	return expr();
}

/* Evaluate one line; prints one value per statement.  0 on success. */
static int
run(const char *line)
{
	p = line;
	if (setjmp(fail)) {
		fprintf(stderr, "minilang: error: %s\n", errmsg);
		return 1;
	}
	for (;;) {
		skip();
		if (*p == '\0')
			return 0;
		printf("%ld\n", statement());
		skip();
#ifdef MINILANG_FULL
		if (accept(';'))
			continue;
#endif
		if (*p != '\0')
			error("unexpected input");
	}
}

int
main(int argc, char *argv[])
{
	char buf[1024];
	int rc = 0;

	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("minilang 1.0 (%s)\n", EDITION);
		return 0;
	}
	if (argc > 1) {
		for (int i = 1; i < argc; i++)
			rc |= run(argv[i]);
		return rc;
	}
	while (fgets(buf, sizeof(buf), stdin) != NULL) {
		buf[strcspn(buf, "\n")] = '\0';
		if (buf[0] == '#')
			continue;
		rc |= run(buf);
	}
	return rc;
}
