/* What mdfuse says on the FUSE wire that libfuse 3.14 has no words for:
 * the open flag FOPEN_PARALLEL_DIRECT_WRITES and the INIT flag
 * FUSE_DIRECT_IO_ALLOW_MMAP (see wire.c). */
#ifndef MDFUSE_FUSE_WIRE_H
#define MDFUSE_FUSE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "fuse/mdfuse.h"

#include <linux/fuse.h>         /* after fuse_lowlevel.h (mdfuse.h) */

#ifndef FUSE_DIRECT_IO_ALLOW_MMAP
/* From the kernel's UAPI <linux/fuse.h>, protocol 7.39 (Linux 6.6, first
 * named FUSE_DIRECT_IO_RELAX; renamed in 6.7, same bit).  Debian 12's
 * headers are at 7.38. */
#define FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36)
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

/* A request of LEN bytes at BUF, as received from /dev/fuse, before
 * libfuse sees it.  The session loop (loop.c) calls it for the requests
 * it receives itself; libfuse's loop does through wire_install. */
void wire_request (const void *buf, size_t len);

/* fuse_reply_open, with EXTRA (FOPEN_* flags) added to the open flags
 * libfuse sends for FI. */
int wire_reply_open (fuse_req_t req, const struct fuse_file_info *fi,
                     uint32_t extra);

#endif
