/* A power-loss simulator under the io interface.
 *
 * Files live in memory.  Every pwrite (with its data) and every fdatasync
 * is appended to one log, across all files, in the order the array code
 * issued them; markers from the workload go into the same log.  From the
 * log, the disk state at any I/O boundary can be rebuilt: per file, what
 * the last fdatasync made durable, plus any subset of the writes issued
 * since (as a volatile disk cache may keep them), each possibly torn at
 * 4 KiB granularity.
 */
#ifndef MDFUSE_TEST_IO_SIM_H
#define MDFUSE_TEST_IO_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/io.h"

#define SIM_MAX_FILES 8
#define SIM_BLOCK 4096

enum sim_kind { SIM_WRITE, SIM_SYNC, SIM_MARK };

struct sim_op {
  enum sim_kind kind;
  int file;                     /* SIM_WRITE, SIM_SYNC */
  int mark;                     /* SIM_MARK: the workload's code */
  uint64_t off, len;
  uint8_t *data;                /* SIM_WRITE: a copy; SIM_MARK: optional */
};

struct sim_world {
  int nfiles;
  char *names[SIM_MAX_FILES];
  uint8_t *initial[SIM_MAX_FILES];      /* images when recording began */
  size_t initial_len[SIM_MAX_FILES];
  uint8_t *current[SIM_MAX_FILES];      /* what reads see */
  size_t current_len[SIM_MAX_FILES];
  struct sim_op *ops;
  size_t nops, cap;
};

/* A world whose files start as copies of IMAGES. */
void sim_init (struct sim_world *w, int nfiles, const char *const *names,
               uint8_t *const *images, const size_t *lens);
void sim_free (struct sim_world *w);
/* An io_file on file I of W (closing it keeps the file). */
struct io_file *sim_open (struct sim_world *w, int i);
void sim_mark (struct sim_world *w, int mark, uint64_t off, uint64_t len,
               const void *data);

/* Replaying the log. */
struct sim_replay {
  struct sim_world *w;
  size_t pos;                   /* ops consumed */
  uint8_t *durable[SIM_MAX_FILES];
  size_t durable_len[SIM_MAX_FILES];
  size_t *pending[SIM_MAX_FILES];       /* op indices since the last sync */
  size_t npending[SIM_MAX_FILES], cap_pending[SIM_MAX_FILES];
};

void sim_replay_init (struct sim_replay *r, struct sim_world *w);
void sim_replay_free (struct sim_replay *r);
/* Consume one op; returns it, or NULL at the end of the log. */
const struct sim_op *sim_replay_step (struct sim_replay *r);

enum sim_keep { SIM_KEEP_ALL, SIM_KEEP_NONE, SIM_KEEP_RANDOM };
/* The crash images at the current position, into OUT[i] (malloc'd, with
 * their lengths).  SIM_KEEP_RANDOM uses *SEED. */
void sim_crash_images (struct sim_replay *r, enum sim_keep keep,
                       uint64_t *seed, uint8_t **out, size_t *out_len);

uint64_t sim_rand (uint64_t *seed);

#endif
