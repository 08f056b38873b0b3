/* An in-memory io_file backend for tests: a growable byte buffer with
 * counters and injectable failures. */
#ifndef MDFUSE_IO_MEM_H
#define MDFUSE_IO_MEM_H

#include "common/io.h"

struct io_mem_stats {
  unsigned long preads, pwrites, syncs;
  int fail_pwrite;              /* negative errno to return, or 0 */
  int fail_fdatasync;
  int fail_pread;
  /* With a fail_* armed: that many calls still succeed first, and then,
   * if *_times is not 0, only that many fail (the fault clears itself).
   * A failed pwrite changes nothing; a failed fdatasync follows a pwrite
   * that did land (as a failed writeback does). */
  unsigned long fail_pwrite_after, fail_pwrite_times;
  unsigned long fail_fdatasync_after, fail_fdatasync_times;
};

/* A new empty file called NAME; the io_file owns its buffer. */
struct io_file *io_mem_new (const char *name);
/* The buffer and its length (valid until the next write). */
unsigned char *io_mem_data (struct io_file *f, size_t *len);
struct io_mem_stats *io_mem_stats (struct io_file *f);
/* Sets the file's length, zero-filling. */
int io_mem_truncate (struct io_file *f, size_t len);
/* A second io_file sharing the same buffer (closing one keeps the other). */
struct io_file *io_mem_reopen (struct io_file *f);

#endif
