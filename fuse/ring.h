/* The FUSE-over-io_uring transport: one queue per possible CPU, each with
 * its own io_uring and thread, through which the kernel hands requests to
 * mdfuse and takes the replies, with no read() or write() on /dev/fuse
 * per request (see ring.c). */
#ifndef MDFUSE_FUSE_RING_H
#define MDFUSE_FUSE_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fuse/mdfuse.h"

struct ring;
struct loop;

/* Where the kernel's switch for FUSE over io_uring is (Linux 6.14 and
 * later, CONFIG_FUSE_IO_URING); root writes Y there to allow it. */
#define RING_ENABLE_PATH "/sys/module/fuse/parameters/enable_uring"

/* Whether the kernel allows FUSE over io_uring now; when not, says why in
 * WHY (LEN bytes). */
bool ring_enabled (char *why, size_t len);

/* Prepares one queue per possible CPU for SE (mounted, wire.c installed)
 * over ARRAY, with WORKERS threads for the requests that may block.  The
 * queues register with the kernel once the INIT reply is sent (wire.c
 * tells), if the kernel offered FUSE_OVER_IO_URING in INIT.  When that
 * cannot be had: with REQUIRED the session is ended (ring_failed then
 * says so), else the session loop goes on serving everything.  LP is the
 * session loop to wake (NULL: libfuse's).  Call after any daemonizing
 * fork; NULL, with the reason in REASON (REASON_LEN bytes), for the caller
 * to log, if the queues or the threads cannot be set up. */
struct ring *ring_new (struct fuse_session *se, struct array *array,
                       struct loop *lp, unsigned workers, bool required,
                       char *reason, size_t reason_len);
/* True once the ring was required and could not be had. */
bool ring_failed (struct ring *r);
/* Lets the queues and workers finish what they hold, and ends them; logs
 * how many requests the ring served.  NULL: a no-op. */
void ring_stop (struct ring *r);
/* Frees R (after ring_stop, and after the unmount: the kernel may hold
 * the queues' buffers until then).  NULL: a no-op. */
void ring_free (struct ring *r);

#endif
