/* The test io backend: in-memory files under the real array code.
 *
 * A file is a growable byte buffer with counters and injectable failures.
 * Files attached to a log also record, in one order across all of them,
 * every pwrite (with its data, if the log keeps data) and fdatasync that
 * succeeded, next to markers from the workload; each keeps the image its
 * last fdatasync made durable.  From a log that kept data, the disk state
 * at any I/O boundary can be rebuilt as a power loss would leave it: per
 * file, what the last fdatasync made durable, plus any subset of the writes
 * issued since (as a volatile disk cache may keep them), each possibly torn
 * at 4 KiB granularity.
 */
#ifndef MDFUSE_TEST_IO_MEM_H
#define MDFUSE_TEST_IO_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/io.h"

/* ---- files ---- */

struct io_mem_stats {
  unsigned long preads, pwrites, syncs;   /* calls, failed ones included */
  int fail_pwrite;              /* negative errno to return, or 0 */
  int fail_fdatasync;
  int fail_pread;
  /* With a fail_* armed: that many calls still succeed first, and then,
   * if *_times is not 0, only that many fail (the fault clears itself).
   * A failed pwrite changes nothing; a failed fdatasync follows a pwrite
   * that did land (as a failed writeback does). */
  unsigned long fail_pwrite_after, fail_pwrite_times;
  unsigned long fail_fdatasync_after, fail_fdatasync_times;
  /* Every fdatasync first sleeps this long (a slow disk). */
  unsigned sync_delay_ms;
};

/* A new empty file called NAME; the io_file owns its buffer.  Its io_ops
 * include truncate and identity (every file its own "filesystem": dev 0,
 * the buffer's address as the inode). */
struct io_file *io_mem_new (const char *name);
/* A second io_file sharing the same buffer (closing one keeps the other). */
struct io_file *io_mem_reopen (struct io_file *f);
/* The buffer and its length (valid until the next write). */
unsigned char *io_mem_data (struct io_file *f, size_t *len);
/* The counters and fault knobs, to read and set between calls. */
struct io_mem_stats *io_mem_stats (struct io_file *f);
/* A copy of them taken under the file's lock, while other threads call. */
struct io_mem_stats io_mem_stats_now (struct io_file *f);
/* While HOLD, every pwrite on the file waits (a member that lags); false
 * lets the waiting ones go on. */
void io_mem_hold_pwrites (struct io_file *f, bool hold);
/* Sets the file's length, zero-filling. */
int io_mem_truncate (struct io_file *f, size_t len);

/* The image as of the last successful fdatasync (as of io_log_attach
 * before the first); only for a file attached to a log.  The pointer is
 * valid until the next fdatasync: read it while nothing syncs, or copy
 * with io_mem_durable_read (bytes copied, 0 past the end). */
const unsigned char *io_mem_durable (struct io_file *f, size_t *len);
size_t io_mem_durable_read (struct io_file *f, void *buf, size_t len,
                            uint64_t off);

/* ---- the log ---- */

#define IO_LOG_MAX_FILES 8
#define SIM_BLOCK 4096

enum io_log_kind { IO_LOG_WRITE, IO_LOG_SYNC, IO_LOG_MARK, IO_LOG_TRUNCATE };

struct io_log_entry {
  enum io_log_kind kind;
  int file;                     /* index from io_log_attach; -1 for marks */
  int mark;                     /* IO_LOG_MARK: the workload's code */
  uint64_t off, len;            /* IO_LOG_TRUNCATE: len is the new size */
  uint8_t *data;                /* IO_LOG_WRITE: a copy if the log keeps
                                 * data; IO_LOG_MARK: optional */
};

struct io_log;

/* A new, empty log; WITH_DATA: writes keep a copy of their data (needed
 * for replay). */
struct io_log *io_log_new (bool with_data);
/* Frees the log and detaches its files (which stay open). */
void io_log_free (struct io_log *log);
/* Log every call on F's buffer (through any io_file on it) from now on;
 * its current contents become its initial (and durable) image.  Returns
 * the file's index in the log (0, 1, ... in attach order). */
int io_log_attach (struct io_log *log, struct io_file *f);
/* A marker from the workload, in order with the I/O (DATA may be NULL). */
void io_log_mark (struct io_log *log, int mark, uint64_t off, uint64_t len,
                  const void *data);
/* Forget the entries; every file's current contents become its initial
 * image for a replay. */
void io_log_reset (struct io_log *log);
size_t io_log_count (struct io_log *log);
/* Entry I (valid until the next entry is logged or the log reset). */
const struct io_log_entry *io_log_get (struct io_log *log, size_t i);
int io_log_nfiles (const struct io_log *log);

/* ---- replaying a log into crash images ---- */

struct sim_replay {
  struct io_log *log;
  int nfiles;
  size_t pos;                   /* entries consumed */
  uint8_t *durable[IO_LOG_MAX_FILES];
  size_t durable_len[IO_LOG_MAX_FILES];
  size_t *pending[IO_LOG_MAX_FILES];    /* entries since the last sync */
  size_t npending[IO_LOG_MAX_FILES], cap_pending[IO_LOG_MAX_FILES];
};

/* From the initial images of LOG (which must keep data); the log must not
 * change during the replay. */
void sim_replay_init (struct sim_replay *r, struct io_log *log);
void sim_replay_free (struct sim_replay *r);
/* Consume one entry; returns it, or NULL at the end of the log. */
const struct io_log_entry *sim_replay_step (struct sim_replay *r);

enum sim_keep { SIM_KEEP_ALL, SIM_KEEP_NONE, SIM_KEEP_RANDOM };
/* The crash images at the current position, into OUT[i] (malloc'd, with
 * their lengths), one per file of the log: the durable image plus all
 * (SIM_KEEP_ALL), none (SIM_KEEP_NONE) or a random subset, some torn at
 * SIM_BLOCK (SIM_KEEP_RANDOM, using *SEED) of the unsynced writes.  An
 * unsynced truncate is kept or not, whole. */
void sim_crash_images (struct sim_replay *r, enum sim_keep keep,
                       uint64_t *seed, uint8_t **out, size_t *out_len);

/* splitmix64. */
uint64_t sim_rand (uint64_t *seed);

#endif
