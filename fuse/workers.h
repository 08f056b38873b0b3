/* Worker threads for the requests that may block (writes, syncs, the
 * control channel): a FIFO of jobs, taken by whichever worker is free.
 * The session loop (loop.c) and the ring's queues (ring.c) each have a
 * pool. */
#ifndef MDFUSE_WORKERS_H
#define MDFUSE_WORKERS_H

#include <stdbool.h>
#include <stddef.h>

/* Embedded in what a job carries. */
struct work {
  struct work *next;
};

/* The TYPE whose MEMBER (a struct work) W is. */
#define work_owner(w, type, member) \
  ((type *) (void *) ((char *) (w) - offsetof (type, member)))

struct workers;

/* Runs one job, in a worker thread. */
typedef void (*work_fn) (void *arg, struct work *w);

/* A pool of N threads (at least one) running FN (ARG, job) for each job
 * pushed; NULL with errno set (*WHY says what failed). */
struct workers *workers_new (unsigned n, work_fn fn, void *arg,
                             const char **why);
/* Queues W for the first free worker. */
void workers_push (struct workers *ws, struct work *w);
/* True when no job is queued or being run. */
bool workers_idle (struct workers *ws);
/* Runs what is queued, then ends the threads.  NULL is a no-op; so is a
 * second call. */
void workers_stop (struct workers *ws);
/* Stops the pool if need be and frees it. */
void workers_free (struct workers *ws);

#endif
