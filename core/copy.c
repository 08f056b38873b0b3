/* Copying a range between members: the one routine under resync (SPEC §5
 * step 5), recovery (§6 re-add) and repair.  Run by run of the source:
 * its holes are punched in the targets (they stay as sparse as the
 * source), its data is copied fast through the backends' copy_range, or,
 * on any error, piece by piece through a buffer, which tells which member
 * failed, and fails that one (SPEC §6). */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "common/log.h"
#include "core/array_impl.h"

int
array_write_targets (struct array *a, const bool *targets, const void *buf,
                     size_t len, uint64_t off, enum member_io what,
                     bool *written)
{
  int r = 0;
  for (uint32_t s = 0; s < a->nslots; s++) {
    written[s] = false;
    int st = state_of (a, s);
    if (!targets[s] || st == MEMBER_FAULTY || st == MEMBER_MISSING)
      continue;
    int w = io_pwrite_full (a->m[s].io, buf, len, off);
    if (w == 0) {
      written[s] = true;
      continue;
    }
    if (st == MEMBER_ACTIVE) {
      int f = array_member_failed (a, s, w, what, off, len);
      if (r == 0)
        r = f;
    }
    else
      array_member_failed (a, s, w, MEMBER_IO_RECOVERY_WRITE, off, len);
  }
  return r;
}

/* Copy one run [START, END) of the source, all data or all hole. */
static int
copy_run (struct array *a, uint32_t source, const bool *targets,
          uint64_t start, uint64_t end, void *buf, size_t buflen,
          enum member_io what, bool *written)
{
  for (uint32_t s = 0; s < a->nslots; s++)
    written[s] = false;
  bool copied = state_of (a, source) == MEMBER_ACTIVE;
  for (uint32_t s = 0; s < a->nslots && copied; s++) {
    int st = state_of (a, s);
    if (targets[s] && st != MEMBER_FAULTY && st != MEMBER_MISSING) {
      if (io_copy_range (a->m[source].io, a->m[s].io, start, end - start,
                         buf, buflen) < 0)
        copied = false;
      else
        written[s] = true;
    }
  }
  if (copied)
    return 0;

  for (uint32_t s = 0; s < a->nslots; s++)
    written[s] = targets[s];
  for (uint64_t off = start; off < end; off += buflen) {
    size_t len = (size_t) (end - off < buflen ? end - off : buflen);
    int r = array_read_any (a, buf, len, off, source);
    if (r < 0) {
      log_error ("no member could supply %zu bytes at %" PRIu64 " to copy",
                 len, off);
      memset (written, 0, a->nslots * sizeof *written);
      return r;
    }
    bool piece[ASSEMBLE_MAX_SLOTS];
    r = array_write_targets (a, written, buf, len, off, what, piece);
    memcpy (written, piece, a->nslots * sizeof *written);
    if (r < 0)
      return r;
  }
  return 0;
}

/* Where the source has a hole, punch one in every target: the copy reads
 * as zeros there and keeps the targets as sparse as the source.  false
 * when a target cannot (the caller copies the zeros instead). */
static bool
punch_targets (struct array *a, const bool *targets, uint64_t start,
               uint64_t end, bool *written)
{
  for (uint32_t s = 0; s < a->nslots; s++) {
    written[s] = false;
    int st = state_of (a, s);
    if (!targets[s] || st == MEMBER_FAULTY || st == MEMBER_MISSING)
      continue;
    if (io_punch_hole (a->m[s].io, start, end - start) < 0)
      return false;
    written[s] = true;
  }
  return true;
}

int
array_copy_range (struct array *a, uint32_t source, const bool *targets,
                  uint64_t start, uint64_t end, void *buf, size_t buflen,
                  enum member_io what, bool *written)
{
  for (uint32_t s = 0; s < a->nslots; s++)
    written[s] = targets[s];
  /* Run by run of the source's data and holes, so that the targets stay
   * as sparse as the source (a full recovery of a mostly empty volume
   * writes only its data). */
  for (uint64_t pos = start; pos < end;) {
    uint64_t data = pos, hole = end;
    if (state_of (a, source) == MEMBER_ACTIVE)
      io_data_extent (a->m[source].io, pos, end, &data, &hole);
    bool run[ASSEMBLE_MAX_SLOTS];
    uint64_t run_end = data > pos ? data : hole;
    int r = 0;
    if (data > pos) {
      if (!punch_targets (a, written, pos, data, run))
        r = copy_run (a, source, written, pos, data, buf, buflen, what, run);
    }
    else
      r = copy_run (a, source, written, pos, hole, buf, buflen, what, run);
    for (uint32_t s = 0; s < a->nslots; s++)
      written[s] = written[s] && run[s];
    if (r < 0)
      return r;
    pos = run_end;
  }
  return 0;
}
