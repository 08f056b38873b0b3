#ifndef MDFUSE_UTIL_H
#define MDFUSE_UTIL_H

#include <stdbool.h>
#include <stdint.h>

/* Parse "123", "4K", "4M", "1G", "2T" (powers of 1024).  -1 on error. */
int parse_size (const char *s, uint64_t *out);
/* Fill BUF with random bytes (getrandom). */
int random_bytes (void *buf, size_t len);
/* Monotonic seconds. */
double now_seconds (void);
/* "4.00 MiB" style. */
void format_bytes (uint64_t n, char *out, size_t len);

#endif
