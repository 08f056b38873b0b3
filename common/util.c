#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#include "common/util.h"

int
parse_size (const char *s, uint64_t *out)
{
  if (!s || !isdigit ((unsigned char) *s))
    return -EINVAL;
  errno = 0;
  char *end;
  unsigned long long v = strtoull (s, &end, 10);
  if (errno == ERANGE)
    return -ERANGE;
  if (errno || end == s)
    return -EINVAL;
  unsigned shift = 0;
  switch (*end) {
  case '\0': break;
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  case 'g': case 'G': shift = 30; end++; break;
  case 't': case 'T': shift = 40; end++; break;
  default: return -EINVAL;
  }
  if (*end == 'i' && shift)
    end++;
  if ((*end == 'B' || *end == 'b') && shift)
    end++;
  if (*end != '\0')
    return -EINVAL;
  if (shift && v > (UINT64_MAX >> shift))
    return -ERANGE;
  *out = (uint64_t) v << shift;
  return 0;
}

int
random_bytes (void *buf, size_t len)
{
  char *p = buf;
  while (len > 0) {
    ssize_t r = getrandom (p, len, 0);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += r;
    len -= (size_t) r;
  }
  return 0;
}

double
now_seconds (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

void
format_bytes (uint64_t n, char *out, size_t len)
{
  const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
  double v = (double) n;
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    snprintf (out, len, "%llu B", (unsigned long long) n);
  else
    snprintf (out, len, "%.2f %s", v, units[u]);
}
