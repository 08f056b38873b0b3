/* Keeping a background copy under a rate (check, resync): sleep so that
 * the bytes done since the rate was set went no faster than it. */
#ifndef MDFUSE_THROTTLE_H
#define MDFUSE_THROTTLE_H

#include <stdbool.h>
#include <stdint.h>

struct throttle {
  double since;                 /* when the current rate took effect */
  uint64_t base;                /* bytes done by then */
  uint64_t rate;                /* bytes/s; 0: unlimited */
};

/* Start (or restart) at DONE bytes with RATE. */
void throttle_set (struct throttle *t, uint64_t done, uint64_t rate);
/* DONE bytes so far: sleep until they fit the rate, in slices of at most
 * 0.1 s, returning early once *STOP is set.  A new rate restarts the
 * measure from here. */
void throttle_wait (struct throttle *t, uint64_t done, uint64_t rate,
                    const bool *stop);

#endif
