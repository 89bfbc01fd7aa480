/* greet.h -- libgreet: tiny greeting library */
#ifndef GREET_H
#define GREET_H

#include <stddef.h>

#define GREET_VERSION "1.2"

/* Version of the library actually loaded. */
const char *greet_version(void);

/* Format "Hello, NAME!" into buf; returns the length it needed
 * (like snprintf).  A NULL or empty name greets the world. */
int greet_format(char *buf, size_t len, const char *name);

/* Print the greeting followed by a newline; returns 0 on success. */
int greet(const char *name);

#endif
