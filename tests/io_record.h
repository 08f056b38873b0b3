/* A recording io backend for tests: forwards to an inner io_file and logs
 * every pwrite and fdatasync, across all files, in one global order. */
#ifndef MDFUSE_TEST_IO_RECORD_H
#define MDFUSE_TEST_IO_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "common/io.h"

enum record_op { REC_PWRITE, REC_FDATASYNC };

struct record_entry {
  const struct io_file *file;   /* the recording io_file */
  enum record_op op;
  uint64_t off, len;
};

/* Wraps INNER (ownership taken). */
struct io_file *io_record_wrap (struct io_file *inner);
void io_record_reset (void);
size_t io_record_count (void);
const struct record_entry *io_record_get (size_t i);

#endif
