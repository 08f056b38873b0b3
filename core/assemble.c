#include <config.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/assemble.h"

#define FAIL(...) do { snprintf (err, errlen, __VA_ARGS__); return -1; } while (0)

static void __attribute__ ((format (printf, 2, 3)))
add_warning (struct assemble_plan *p, const char *fmt, ...)
{
  size_t used = strlen (p->warnings);
  if (used + 2 >= sizeof p->warnings)
    return;
  if (used)
    p->warnings[used++] = '\n';
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (p->warnings + used, sizeof p->warnings - used, fmt, ap);
  va_end (ap);
}

enum recovery_mode
assemble_recovery_mode (const struct md_sb *sb, bool bits_usable,
                        uint64_t size, uint64_t *from)
{
  *from = 0;
  if (bits_usable && (!sb->recovering || sb->recovery_bitmap))
    return RECOVER_BITMAP;
  if (bits_usable)
    *from = sb->recovery_offset < size ? sb->recovery_offset : size;
  return RECOVER_FULL;
}

int
assemble_decide (const struct member_probe *m, const char *const *names,
                 size_t n, const struct assemble_bitmap_in *bm,
                 const struct assemble_options *opts,
                 struct assemble_plan *plan, char *err, size_t errlen)
{
  memset (plan, 0, sizeof *plan);
  plan->resync_from = UINT64_MAX;
  for (size_t s = 0; s < ASSEMBLE_MAX_SLOTS; s++) {
    plan->member_of_slot[s] = -1;
    plan->slot[s] = MEMBER_MISSING;
  }
  if (n == 0)
    FAIL ("no member given");

  /* Step 1: every member must be one of ours; the valid one with the
   * highest events is the reference. */
  /* The reference: a valid member with the highest events that no other
   * such member marks faulty (so the choice does not depend on the order
   * the members were given in). */
  int ref = -1;
  uint64_t maxev = 0;
  for (size_t i = 0; i < n; i++)
    if (m[i].status == SB_VALID && (ref < 0 || m[i].sb.events > maxev)) {
      ref = (int) i;
      maxev = m[i].sb.events;
    }
  for (size_t i = 0; ref >= 0 && i < n; i++) {
    /* A member in the middle of a recovery is never current. */
    if (m[i].status != SB_VALID || m[i].sb.events != maxev
        || m[i].sb.recovering)
      continue;
    bool marked = false;
    for (size_t j = 0; j < n; j++)
      if (j != i && m[j].status == SB_VALID && m[j].sb.events == maxev
          && m[i].sb.dev_number < SB_MAX_DEV
          && m[j].sb.dev_roles[m[i].sb.dev_number] == SB_ROLE_FAULTY)
        marked = true;
    if (!marked) {
      ref = (int) i;
      break;
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (m[i].status == SB_NO_MAGIC || m[i].status == SB_UNSUPPORTED) {
      if (ref >= 0 && m[i].file_size >= 0
          && m[i].file_size < m[ref].file_size)
        FAIL ("%s: file is %" PRId64 " bytes, smaller than the array's "
              "members (%" PRId64 " bytes): truncated? (%s)", names[i],
              m[i].file_size, m[ref].file_size, m[i].why);
      FAIL ("%s: %s", names[i], m[i].why);
    }
  }
  if (ref < 0)
    FAIL ("%s: %s; no member has a valid superblock", names[0], m[0].why);

  const struct md_sb *r = &m[ref].sb;
  if (r->raid_disks > ASSEMBLE_MAX_SLOTS)
    FAIL ("%s: %" PRIu32 " raid disks, at most %d are supported", names[ref],
          r->raid_disks, ASSEMBLE_MAX_SLOTS);
  plan->reference = (size_t) ref;
  plan->raid_disks = r->raid_disks;
  plan->volume_bytes = r->size * 512;
  plan->events = r->events;

  for (size_t i = 0; i < n; i++) {
    const struct md_sb *s = &m[i].sb;
    if (memcmp (s->set_uuid, r->set_uuid, 16) != 0) {
      char a[36], b[36];
      sb_format_uuid (s->set_uuid, a);
      sb_format_uuid (r->set_uuid, b);
      FAIL ("%s: member of another array (uuid %s, %s has %s)", names[i], a,
            names[ref], b);
    }
    if (m[i].status != SB_VALID) {
      /* Torn: its other fields are not trusted, but its file must still
       * hold the volume below where its superblock goes. */
      if (sb_max_volume_for ((uint64_t) m[i].file_size) < r->size * 512)
        FAIL ("%s: file of %" PRId64 " bytes is too small for a volume of %"
              PRIu64 " bytes", names[i], m[i].file_size, r->size * 512);
      continue;
    }
    if (s->size != r->size || s->raid_disks != r->raid_disks)
      FAIL ("%s: volume size %" PRIu64 " sectors / %" PRIu32
            " disks disagrees with %s (%" PRIu64 " / %" PRIu32 ")",
            names[i], s->size, s->raid_disks, names[ref], r->size,
            r->raid_disks);
    if (sb_max_volume_for ((uint64_t) m[i].file_size) < s->size * 512)
      FAIL ("%s: file of %" PRId64 " bytes is too small for a volume of %"
            PRIu64 " bytes", names[i], m[i].file_size, s->size * 512);
  }

  /* Slots: valid members claim their dev_number; torn ones take theirs if
   * free and sane, else the only slot left. */
  for (size_t i = 0; i < n; i++) {
    if (m[i].status != SB_VALID)
      continue;
    uint32_t d = m[i].sb.dev_number;
    if (plan->member_of_slot[d] >= 0)
      FAIL ("%s and %s both claim slot %" PRIu32, names[plan->member_of_slot[d]],
            names[i], d);
    plan->member_of_slot[d] = (int) i;
  }
  for (size_t i = 0; i < n; i++) {
    if (m[i].status == SB_VALID)
      continue;
    uint32_t d = m[i].sb.dev_number;
    if (d >= r->raid_disks || plan->member_of_slot[d] >= 0) {
      int free_slot = -1, nfree = 0;
      for (uint32_t s = 0; s < r->raid_disks; s++)
        if (plan->member_of_slot[s] < 0) {
          free_slot = (int) s;
          nfree++;
        }
      if (nfree != 1)
        FAIL ("%s: %s, and its slot cannot be told", names[i], m[i].why);
      d = (uint32_t) free_slot;
    }
    plan->member_of_slot[d] = (int) i;
  }

  /* Step 2: current, behind, split brain. */
  for (size_t i = 0; i < n; i++) {
    if (m[i].status != SB_VALID)
      continue;
    for (size_t j = i + 1; j < n; j++) {
      if (m[j].status != SB_VALID)
        continue;
      const struct md_sb *a = &m[i].sb, *b = &m[j].sb;
      /* A member under recovery never served as current: its view of the
       * others (two recovering at once mark each other faulty) is no
       * split brain. */
      if (a->recovering || b->recovering)
        continue;
      if (a->dev_roles[b->dev_number] == SB_ROLE_FAULTY
          && b->dev_roles[a->dev_number] == SB_ROLE_FAULTY)
        FAIL ("split brain: %s and %s each mark the other faulty (each ran "
              "without the other); refusing to choose", names[i], names[j]);
    }
  }
  for (uint32_t s = 0; s < r->raid_disks; s++) {
    int i = plan->member_of_slot[s];
    if (i < 0) {
      if (!opts->degraded)
        FAIL ("slot %" PRIu32 " of %" PRIu32 " has no member; give every "
              "member, or mount with -o degraded to start without it", s,
              r->raid_disks);
      plan->slot[s] = MEMBER_MISSING;
      continue;
    }
    bool marked_faulty = false;
    for (size_t j = 0; j < n; j++)
      if (m[j].status == SB_VALID && m[j].sb.events == r->events
          && m[j].sb.dev_roles[s] == SB_ROLE_FAULTY)
        marked_faulty = true;
    if (m[i].status == SB_VALID && m[i].sb.events == r->events
        && !marked_faulty && !m[i].sb.recovering)
      plan->slot[s] = MEMBER_ACTIVE;
    else
      plan->slot[s] = MEMBER_RECOVERING;        /* how: decided below */
  }

  bool any_current = false;
  for (uint32_t s = 0; s < r->raid_disks; s++)
    any_current |= plan->slot[s] == MEMBER_ACTIVE;
  if (!any_current && r->recovering)
    FAIL ("%s: in the middle of a recovery (recovery offset %" PRIu64
          " sectors): it is not a whole copy of the volume; give the member "
          "it was recovering from", names[ref], r->recovery_offset);
  if (!any_current)
    FAIL ("no member is current: every member with the newest events (%"
          PRIu64 ") is marked faulty by another; refusing to choose",
          r->events);

  /* Step 3: the bitmap. */
  plan->bitmap = BITMAP_UNUSED;
  if (bm && bm->used) {
    const struct bitmap_header *h = &bm->hdr;
    switch (bm->status) {
    case BITMAP_HEADER_FOREIGN:
    case BITMAP_HEADER_INVALID:
      FAIL ("%s: %s", bm->name, bm->why);
    case BITMAP_HEADER_OK:
    case BITMAP_HEADER_BAD_CHECKSUM:
      break;
    }
    /* A header that fails its checksum and does not match the members
     * either: corrupt first, whatever its damaged fields say. */
    if (bm->status == BITMAP_HEADER_BAD_CHECKSUM
        && (memcmp (h->uuid, r->set_uuid, 16) != 0
            || h->sync_size != r->size))
      FAIL ("%s: corrupt bitmap header (%s), and its %s does not match the "
            "members'; refusing it (replace it with 'mdfusectl add-bitmap "
            "--force', or mount with -o nobitmap)", bm->name, bm->why[0] ? bm->why : "bad checksum",
            memcmp (h->uuid, r->set_uuid, 16) != 0 ? "array uuid"
            : "volume size");
    if (memcmp (h->uuid, r->set_uuid, 16) != 0) {
      char a[36], b[36];
      sb_format_uuid (h->uuid, a);
      sb_format_uuid (r->set_uuid, b);
      FAIL ("%s: bitmap of another array (uuid %s, members have %s); "
            "check -o bitmap=, or make this array a new one with "
            "'mdfusectl add-bitmap'", bm->name, a, b);
    }
    if (h->sync_size != r->size)
      FAIL ("%s: bitmap is for a volume of %" PRIu64 " sectors, the members "
            "hold %" PRIu64, bm->name, h->sync_size, r->size);
    if (!bitmap_chunk_valid (h->chunksize)) {
      if (bm->status != BITMAP_HEADER_BAD_CHECKSUM)
        FAIL ("%s: %s; chunk size %" PRIu32 " is not usable", bm->name,
              bm->why[0] ? bm->why : "bad header", h->chunksize);
      /* A torn header of ours: every bit is distrusted anyway; take the
       * smallest usable chunk whose bits fit in the file. */
      uint64_t c = bitmap_default_chunk (plan->volume_bytes);
      while (c < BITMAP_MAX_CHUNK && bm->file_size >= 0
             && (uint64_t) bm->file_size < BITMAP_HEADER_SIZE
             + (bitmap_chunks (plan->volume_bytes, c) + 7) / 8)
        c *= 2;
      plan->bitmap_chunk = c;
      add_warning (plan, "%s: torn header with chunk size %" PRIu32
                   "; rebuilding it with chunk %" PRIu64, bm->name,
                   h->chunksize, c);
    }
    else
      plan->bitmap_chunk = h->chunksize;
    uint64_t chunk = plan->bitmap_chunk;
    uint64_t chunks = bitmap_chunks (plan->volume_bytes, chunk);
    uint64_t need = BITMAP_HEADER_SIZE + (chunks + 7) / 8;
    if (bm->file_size < 0 || (uint64_t) bm->file_size < need)
      FAIL ("%s: file is %" PRId64 " bytes, too small for %" PRIu64
            " chunks (needs %" PRIu64 "): truncated?", bm->name,
            bm->file_size, chunks, need);
    if (chunks > BITMAP_MAX_BITS)
      FAIL ("%s: %" PRIu64 " chunks, more than the %llu supported; "
            "recreate it with a larger chunk", bm->name, chunks,
            BITMAP_MAX_BITS);
    if (bm->status == BITMAP_HEADER_BAD_CHECKSUM) {
      /* Ours (magic, uuid, size match) but torn: distrust every bit. */
      plan->bitmap = BITMAP_USE_STALE;
      snprintf (plan->bitmap_stale_reason, sizeof plan->bitmap_stale_reason,
                "%s", bm->why);
    }
    else {
      if (h->events > r->events && !opts->force)
        FAIL ("%s: bitmap events %" PRIu64 " are newer than every given "
              "member's (%" PRIu64 "): a newer member is missing; mount "
              "with -o force to go on without it", bm->name, h->events,
              r->events);
      if (h->state & BITMAP_STATE_STALE) {
        plan->bitmap = BITMAP_USE_STALE;
        snprintf (plan->bitmap_stale_reason,
                  sizeof plan->bitmap_stale_reason, "marked out of date");
      }
      else if (h->events < r->events) {
        plan->bitmap = BITMAP_USE_STALE;
        snprintf (plan->bitmap_stale_reason,
                  sizeof plan->bitmap_stale_reason,
                  "events %" PRIu64 " are behind the members' %" PRIu64,
                  h->events, r->events);
      }
      else
        plan->bitmap = BITMAP_USE_CURRENT;
    }
  }

  /* A behind member copies only the set bits when the bitmap is current
   * and no bit was cleared since it left (its events >= events_cleared).
   * A member whose recovery was interrupted carries the events of when
   * it began: with no bit cleared since, a bitmap-guided one copies the
   * set bits again, and a full one resumes at its recovery offset, the
   * set bits below it copied again (the writes that were in flight when
   * it stopped). */
  for (uint32_t s = 0; s < r->raid_disks; s++) {
    int i = plan->member_of_slot[s];
    if (i < 0 || plan->slot[s] != MEMBER_RECOVERING)
      continue;
    bool bits_usable = m[i].status == SB_VALID
      && plan->bitmap == BITMAP_USE_CURRENT
      && m[i].sb.events >= bm->hdr.events_cleared;
    plan->recovery[s] = assemble_recovery_mode (&m[i].sb, bits_usable,
                                                r->size,
                                                &plan->recover_from[s]);
    if (plan->recovery[s] == RECOVER_BITMAP)
      add_warning (plan, "%s: behind the array: recovering the chunks the "
                   "bitmap marks", names[i]);
    else if (plan->recover_from[s] > 0)
      add_warning (plan, "%s: behind the array: resuming its recovery at "
                   "sector %" PRIu64 " (and the chunks the bitmap marks "
                   "below it)", names[i], plan->recover_from[s]);
    else
      add_warning (plan, "%s: behind the array: recovering everything",
                   names[i]);
  }

  if (plan->bitmap == BITMAP_UNUSED && r->resync_offset != SB_RESYNC_CLEAN)
    plan->resync_from = r->resync_offset;
  return 0;
}
