/* The session loop: a dispatcher thread that receives every request and
 * serves the reads itself through an io_uring, and worker threads for the
 * rest (see loop.c). */
#ifndef MDFUSE_FUSE_LOOP_H
#define MDFUSE_FUSE_LOOP_H

#include <stddef.h>

#include "fuse/mdfuse.h"

struct loop;

/* Reads up to this size take one of the ring's many small buffers;
 * larger ones one of its few of MAX_WRITE bytes, or, when those are all
 * taken, a worker, which reads the synchronous way. */
#define LOOP_RING_READ_MAX (32u << 10)

/* Sets up the ring and WORKERS worker threads for SE (mounted) over
 * ARRAY; NULL, with a warning logged, when io_uring cannot be used: the
 * caller then runs libfuse's own loop.  Call after any daemonizing fork. */
struct loop *loop_new (struct fuse_session *se, struct array *array,
                       unsigned workers);
/* Serves requests in the calling thread until the session ends (an
 * unmount, or fuse_session_exit and loop_wake).  Every read taken has been
 * answered when it returns, and every request handed to a worker.
 * Returns 0, or -1 after an error of /dev/fuse itself. */
int loop_run (struct loop *lp);
/* Makes loop_run look at fuse_session_exited now.  Safe from any thread;
 * NULL is a no-op. */
void loop_wake (struct loop *lp);
/* Lets the workers finish what they hold, ends them and frees LP (NULL:
 * a no-op). */
void loop_free (struct loop *lp);

#endif
