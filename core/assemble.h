/* The mount decision (SPEC §5 steps 1-3), as a pure function of what the
 * member and bitmap files say, so it can be tested as a table. */
#ifndef MDFUSE_ASSEMBLE_H
#define MDFUSE_ASSEMBLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bitmap/bitmap_format.h"
#include "core/member.h"

#define ASSEMBLE_MAX_SLOTS 32

struct assemble_bitmap_in {
  bool used;                    /* false with -o nobitmap */
  const char *name;
  int64_t file_size;
  enum bitmap_header_status status;
  struct bitmap_header hdr;
  char why[160];
};

struct assemble_options {
  bool degraded;                /* start without missing slots */
  bool force;                   /* accept a bitmap newer than every member */
};

enum bitmap_verdict {
  BITMAP_USE_CURRENT,           /* resync the set bits */
  BITMAP_USE_STALE,             /* set every bit: full resync */
  BITMAP_UNUSED,                /* -o nobitmap */
};

struct assemble_plan {
  uint32_t raid_disks;
  uint64_t volume_bytes;
  uint64_t events;              /* highest among the members */
  size_t reference;             /* index of the first current member */
  int member_of_slot[ASSEMBLE_MAX_SLOTS];  /* member index, or -1 */
  /* MEMBER_ACTIVE (current), MEMBER_RECOVERING (behind) or
   * MEMBER_MISSING (not given: marked faulty). */
  enum member_state slot[ASSEMBLE_MAX_SLOTS];
  enum recovery_mode recovery[ASSEMBLE_MAX_SLOTS];  /* MEMBER_RECOVERING */
  /* RECOVER_FULL: the sectors below this were copied by a recovery
   * that a crash or a stop interrupted (its recovery offset); of them
   * only the chunks the bitmap marks are recovered again.  0: none. */
  uint64_t recover_from[ASSEMBLE_MAX_SLOTS];
  enum bitmap_verdict bitmap;
  uint64_t bitmap_chunk;        /* the chunk size to use */
  char bitmap_stale_reason[200];
  /* Full resync of the current members from this sector on (no bitmap,
   * dirty shutdown), or UINT64_MAX for none. */
  uint64_t resync_from;
  char warnings[512];           /* non-fatal findings, for the log */
};

/* How a member that is behind is recovered: RECOVER_BITMAP (the set
 * bits only) when BITS_USABLE (the bitmap is current and no bit was
 * cleared since the member left: its events >= events_cleared) and no
 * full recovery of it was interrupted; else RECOVER_FULL, from
 * *FROM sectors on (the recovery offset of an interrupted full recovery
 * when BITS_USABLE, so the set bits below it cover what it missed; else
 * 0).  SIZE: the volume, in sectors. */
enum recovery_mode assemble_recovery_mode (const struct md_sb *sb,
                                           bool bits_usable, uint64_t size,
                                           uint64_t *from);

/* Decide.  Returns 0 with PLAN filled, or -1 with ERR naming the file and
 * the problem.  M[i].name is the member's path. */
int assemble_decide (const struct member_probe *m, const char *const *names,
                     size_t n, const struct assemble_bitmap_in *bm,
                     const struct assemble_options *opts,
                     struct assemble_plan *plan, char *err, size_t errlen);

#endif
