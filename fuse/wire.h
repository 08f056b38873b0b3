/* What mdfuse says on the FUSE wire that libfuse 3.14 has no words for:
 * the open flag FOPEN_PARALLEL_DIRECT_WRITES, the INIT flags
 * FUSE_DIRECT_IO_ALLOW_MMAP, FUSE_HANDLE_KILLPRIV_V2 and
 * FUSE_OVER_IO_URING, and replies that go
 * to a ring entry instead of /dev/fuse (see wire.c). */
#ifndef MDFUSE_FUSE_WIRE_H
#define MDFUSE_FUSE_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "fuse/mdfuse.h"

#include <linux/fuse.h>         /* after fuse_lowlevel.h (mdfuse.h) */

#ifndef FUSE_DIRECT_IO_ALLOW_MMAP
/* From the kernel's UAPI <linux/fuse.h>, protocol 7.39 (Linux 6.6, first
 * named FUSE_DIRECT_IO_RELAX; renamed in 6.7, same bit).  Debian 12's
 * headers are at 7.38. */
#define FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36)
#endif
#ifndef FUSE_OVER_IO_URING
/* From the kernel's UAPI <linux/fuse.h>, protocol 7.42 (Linux 6.14): the
 * INIT flag by which the daemon says it will serve through io_uring
 * (ring.c). */
#define FUSE_OVER_IO_URING (1ULL << 41)
#endif
#ifndef FOPEN_PARALLEL_DIRECT_WRITES
/* From the kernel's UAPI <linux/fuse.h>, protocol 7.38 (Linux 6.2). */
#define FOPEN_PARALLEL_DIRECT_WRITES (1 << 6)
#endif

/* Puts wire.c between SE (mounted) and /dev/fuse: every reply libfuse
 * sends, and every request libfuse's own loop receives, passes through
 * it; the INIT reply gets FUSE_DIRECT_IO_ALLOW_MMAP if the kernel offers
 * it.  Call before the first request is received.  0, or a negative
 * errno with a warning logged: the volume is then served without either
 * flag. */
int wire_install (struct fuse_session *se);

/* Requests libfuse answers at once, without touching a member: the
 * thread that receives them serves them (session loop and ring alike);
 * anything else may block and goes to a worker. */
bool wire_is_quick (uint32_t opcode);

/* A request of LEN bytes at BUF, as received from /dev/fuse, before
 * libfuse sees it.  The session loop (loop.c) calls it for the requests
 * it receives itself; libfuse's loop does through wire_install. */
void wire_request (const void *buf, size_t len);

/* A place other than /dev/fuse for the one reply whose unique id is
 * UNIQUE: the ring entry its request came in (ring.c).  SEND gets the
 * reply as libfuse would write it (IOV[0] is the struct fuse_out_header,
 * with wire.c's flags already added) and returns what writev would. */
struct wire_sink {
  uint64_t unique;
  ssize_t (*send) (struct wire_sink *sink, const struct iovec *iov,
                   int count);
};

/* The sink for the replies this thread sends from now on (NULL: none,
 * every reply to /dev/fuse).  A reply to another request, or a
 * notification, still goes to /dev/fuse. */
void wire_set_sink (struct wire_sink *sink);

/* Asks for FUSE_OVER_IO_URING in the INIT reply if the kernel offers it;
 * ON_INIT (ARG, granted) is called once the INIT reply is sent, granted
 * saying whether the flag went with it.  Call before the first request
 * is received; (NULL, NULL) takes it back. */
void wire_want_ring (void (*on_init) (void *arg, bool granted), void *arg);

/* The opens of `volume` may go through the kernel's page cache (-o
 * writeback_cache, ops.c): the INIT reply asks for
 * FUSE_HANDLE_KILLPRIV_V2 too, where the kernel offers it (see wire.c).
 * Call before the first request is received. */
void wire_want_cached_opens (void);

/* The flags wire.c added to the INIT reply (FUSE_DIRECT_IO_ALLOW_MMAP,
 * FUSE_HANDLE_KILLPRIV_V2, FUSE_OVER_IO_URING): 0 before it is sent, or
 * when wire_install failed. */
uint64_t wire_init_granted (void);

/* fuse_reply_open, with EXTRA (FOPEN_* flags) added to the open flags
 * libfuse sends for FI. */
int wire_reply_open (fuse_req_t req, const struct fuse_file_info *fi,
                     uint32_t extra);

#endif
