#include <config.h>

#include <ctype.h>
#include <stdbool.h>
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
  /* The whole part, then an optional fraction ("1.5G"). */
  uint64_t whole = 0, frac = 0, frac_div = 1;
  const char *p = s;
  bool big = false;
  for (; isdigit ((unsigned char) *p); p++) {
    uint64_t d = (uint64_t) (*p - '0');
    if (whole > (UINT64_MAX - d) / 10)
      big = true;
    else
      whole = whole * 10 + d;
  }
  if (*p == '.') {
    p++;
    if (!isdigit ((unsigned char) *p))
      return -EINVAL;
    for (; isdigit ((unsigned char) *p); p++) {
      if (frac_div > UINT64_MAX / 100)
        return -EINVAL;         /* more decimals than any size needs */
      frac = frac * 10 + (uint64_t) (*p - '0');
      frac_div *= 10;
    }
  }
  unsigned shift = 0;
  switch (*p) {
  case '\0': break;
  case 'k': case 'K': shift = 10; p++; break;
  case 'm': case 'M': shift = 20; p++; break;
  case 'g': case 'G': shift = 30; p++; break;
  case 't': case 'T': shift = 40; p++; break;
  case 'p': case 'P': shift = 50; p++; break;
  case 'e': case 'E': shift = 60; p++; break;
  default: return -EINVAL;
  }
  if (*p == 'i' && shift)
    p++;
  if ((*p == 'B' || *p == 'b') && shift)
    p++;
  if (*p != '\0')
    return -EINVAL;
  if (big || (shift && whole > (UINT64_MAX >> shift)))
    return -ERANGE;
  /* The fraction must come to whole bytes: 1.5K is 1536, 0.1K is not a
   * size.  frac / frac_div < 1, so frac << shift fits when frac_div
   * does. */
  uint64_t unit = (uint64_t) 1 << shift;
  if (frac && (frac_div > UINT64_MAX / unit || (frac * unit) % frac_div))
    return -EINVAL;
  uint64_t v = (whole << shift) + (frac ? frac * unit / frac_div : 0);
  if (v < (whole << shift))
    return -ERANGE;
  *out = v;
  return 0;
}

const char *
size_error (int r)
{
  return r == -ERANGE ? "too large (a size is less than 16 EiB)"
    : "not a size (a number of bytes, or with K, M, G, T, P or E, powers of "
    "1024; \"1.5G\" works)";
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
