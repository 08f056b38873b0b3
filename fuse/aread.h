/* Asynchronous reads of small requests (see aread.c). */
#ifndef MDFUSE_FUSE_AREAD_H
#define MDFUSE_FUSE_AREAD_H

#include <stddef.h>
#include <stdint.h>

#include "fuse/mdfuse.h"

struct aread;

/* Reads up to this size go through the ring; larger ones are served in
 * the FUSE thread (they gain little, and keep the buffers small). */
#define AREAD_MAX (32u << 10)

/* Starts the reader thread and its ring over ARRAY's members; NULL (with
 * a warning logged) when io_uring is not available: reads then stay
 * synchronous.  Call after any daemonizing fork. */
struct aread *aread_start (struct array *array);
/* Takes the read of [OFF, OFF+LEN) of the volume for REQ (LEN at most
 * AREAD_MAX; cut at the volume's end) and replies to it; false when it
 * cannot, and the caller serves the read itself. */
bool aread_submit (struct aread *ar, fuse_req_t req, size_t len, uint64_t off);
/* Waits for every read taken to be answered, then ends the thread.  NULL
 * is a no-op. */
void aread_stop (struct aread *ar);

#endif
