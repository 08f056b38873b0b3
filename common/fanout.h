/* Fan-out: one call per member, at the same time.
 *
 * A write or a sync that goes to every member takes as long as the
 * slowest member instead of the sum of them all.  Call 0 runs in the
 * calling thread, the others on a small pool of threads; a call no pool
 * thread has picked up by the time the caller is done with its own is run
 * by the caller, so a busy pool never makes a request slower than doing
 * the calls one after the other. */
#ifndef MDFUSE_FANOUT_H
#define MDFUSE_FANOUT_H

struct fanout;

/* A pool of NTHREADS threads, or NULL (errno set; fanout_run then runs
 * every call in the caller). */
struct fanout *fanout_new (unsigned nthreads);
/* Ends the threads; no fanout_run may be running.  NULL is a no-op. */
void fanout_free (struct fanout *f);

/* Calls FN (ARG, i) for every i in [0, N) and returns when all have
 * returned.  F may be NULL.  FN must not call fanout_run. */
void fanout_run (struct fanout *f, unsigned n,
                 void (*fn) (void *arg, unsigned i), void *arg);

#endif
