/* Small helpers: sizes, random bytes, clocks, lock assertions. */
#ifndef MDFUSE_UTIL_H
#define MDFUSE_UTIL_H

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* In a function named *_locked: the lock it needs is held (by someone: a
 * plain mutex cannot tell by whom, which catches the usual mistake, a
 * call without it).  Gone with NDEBUG, like assert. */
#define assert_held(m) assert (pthread_mutex_trylock (m) == EBUSY)

/* Parse "123", "4K", "4M", "1.5G", "2T", "1P", "1E" (powers of 1024; an
 * "i" and a "B" may follow the letter).  0, -EINVAL (not a size, or not a
 * whole number of bytes) or -ERANGE (2^64 bytes or more). */
int parse_size (const char *s, uint64_t *out);
/* Fill BUF with random bytes (getrandom). */
int random_bytes (void *buf, size_t len);
/* Monotonic seconds. */
double now_seconds (void);
/* What a parse_size error R means, for a message about the argument. */
const char *size_error (int r);
/* "s" unless N is 1: "%d chunk%s", n, plural (n). */
static inline const char *
plural (uint64_t n)
{
  return n == 1 ? "" : "s";
}
/* "4.00 MiB" style. */
void format_bytes (uint64_t n, char *out, size_t len);

#endif
