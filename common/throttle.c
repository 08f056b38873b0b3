#include <config.h>

#include <time.h>

#include "common/throttle.h"
#include "common/util.h"

void
throttle_set (struct throttle *t, uint64_t done, uint64_t rate)
{
  t->since = now_seconds ();
  t->base = done;
  t->rate = rate;
}

void
throttle_wait (struct throttle *t, uint64_t done, uint64_t rate,
               const bool *stop)
{
  if (rate != t->rate)
    throttle_set (t, done, rate);
  if (rate == 0 || done <= t->base)
    return;
  double should = (double) (done - t->base) / (double) rate;
  while (!__atomic_load_n (stop, __ATOMIC_ACQUIRE)) {
    double d = should - (now_seconds () - t->since);
    if (d <= 0)
      break;
    if (d > 0.1)
      d = 0.1;
    struct timespec ts = { 0, (long) (d * 1e9) };
    nanosleep (&ts, NULL);
  }
}
