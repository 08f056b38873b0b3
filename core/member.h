/* Reading and writing a member file's superblock. */
#ifndef MDFUSE_MEMBER_H
#define MDFUSE_MEMBER_H

#include <stddef.h>
#include <stdint.h>

#include "common/io.h"
#include "core/superblock.h"

/* A member's state: one vocabulary for the mount decision, the array and
 * status (member_state_name). */
enum member_state {
  MEMBER_ACTIVE,                /* current: read from and written to */
  MEMBER_RECOVERING,            /* behind: written to, not read, until its
                                 * recovery is durable */
  MEMBER_FAULTY,                /* failed: neither */
  MEMBER_MISSING,               /* its slot has no file */
};

/* How a recovering member is brought back (SPEC §5 step 5, §6). */
enum recovery_mode {
  RECOVER_BITMAP,               /* copy the chunks the bitmap marks */
  RECOVER_FULL,                 /* copy everything (from recover_from on) */
};

/* "active", "recovering", "faulty", "missing": as status shows them. */
const char *member_state_name (enum member_state st);

/* What a member file says about itself. */
struct member_probe {
  int64_t file_size;            /* bytes, or a negative errno */
  enum sb_status status;
  struct md_sb sb;
  char why[160];                /* for status != SB_VALID */
};

/* Read and decode the superblock of IO.  Returns 0 when the superblock
 * was read (whatever it says: see probe->status), or a negative errno when
 * the file could not be read (probe->why says why). */
int member_probe (struct io_file *io, struct member_probe *probe);

/* Encode SB and write it at its place (pwrite + fdatasync, SPEC §2). */
int member_write_sb (struct io_file *io, const struct md_sb *sb);
/* The same without the fdatasync, for a caller that syncs it itself. */
int member_write_sb_unsynced (struct io_file *io, const struct md_sb *sb);

#endif
