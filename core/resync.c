/* Resync at mount (SPEC §5 step 5): copy the chunks the bitmap marks (or
 * everything) from the first current member to the others and to the
 * members that are behind, checkpointing so that a crash resumes where it
 * stood. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/array_impl.h"
#include "common/log.h"
#include "common/util.h"


void
array_request_stop (struct array *a)
{
  __atomic_store_n (&a->stopping, true, __ATOMIC_RELEASE);
}

void
array_set_resync_progress (struct array *a, struct progress *p)
{
  a->resync_progress = p;
}

static int
sync_targets (struct array *a, const bool *written)
{
  for (uint32_t s = 0; s < a->nslots; s++) {
    if (!written[s] || state_of (a, s) == MEMBER_FAULTY)
      continue;
    int r = array_member_sync (a, s);
    /* A member that failed is out of the array now; one still active
     * after a failed sync is the last one: the resync cannot go on. */
    if (r < 0 && state_of (a, s) == MEMBER_ACTIVE)
      return r;
  }
  return 0;
}

/* A checkpoint: make the copies of chunks [FIRST, END) durable on the
 * members written, then clear their bits (or advance resync_offset).  It
 * runs on its own thread while the next chunks are copied: a fdatasync
 * makes durable everything written before it, and the bits go only after
 * it returns, so a crash still resumes at or before the first chunk whose
 * copy is not durable.  One checkpoint at a time, in order. */
struct checkpoint
{
  struct array *a;
  bool written[ASSEMBLE_MAX_SLOTS];
  /* Behind members recovered in full: their recovery offset advances to
   * the checkpoint's end once their copies are durable. */
  const bool *full_target;
  uint64_t first, end;          /* chunks */
  uint64_t chunk;
  bool last, any_behind;
  bool running;
  pthread_t thread;
  int r;
};

static int
checkpoint_run (struct checkpoint *k)
{
  struct array *a = k->a;
  int r = sync_targets (a, k->written);
  uint64_t done = k->end * k->chunk / 512;
  if (done > a->volume_bytes / 512)
    done = a->volume_bytes / 512;
  for (uint32_t s = 0; s < a->nslots && r == 0; s++)
    if (k->full_target[s] && state_of (a, s) == MEMBER_RECOVERING
        && done > a->m[s].recover_from) {
      /* A member that fails here is left out; the resync goes on. */
      if (array_write_recovery_sb (a, s, done, false) == 0)
        a->m[s].recover_from = done;
    }
  /* Bits go only while every slot is active: a missing, faulty or behind
   * member may still need them (md's NEEDED). */
  if (r == 0 && bitmap_in_use (a) && !k->any_behind && all_active (a)
      && bitmap_clear_range (a->bitmap.bm, k->first, k->end - k->first) < 0)
    r = array_bitmap_failed (a);
  if (r == 0 && !a->bitmap.bm && a->resync_from != UINT64_MAX) {
    pthread_mutex_lock (&a->sb_lock);
    a->resync_offset = k->last ? SB_RESYNC_CLEAN : k->end * k->chunk / 512;
    r = array_bump_events_locked (a);
    pthread_mutex_unlock (&a->sb_lock);
  }
  return r;
}

static void *
checkpoint_thread (void *arg)
{
  struct checkpoint *k = arg;
  k->r = checkpoint_run (k);
  return NULL;
}

/* Wait for the checkpoint in flight, if any; its result. */
static int
checkpoint_wait (struct checkpoint *k)
{
  if (!k->running)
    return 0;
  pthread_join (k->thread, NULL);
  k->running = false;
  return k->r;
}

/* Start the checkpoint K describes.  The last one (nothing left to overlap
 * with), and one whose thread cannot start, run here. */
static int
checkpoint_start (struct checkpoint *k)
{
  if (!k->last && pthread_create (&k->thread, NULL, checkpoint_thread, k) == 0) {
    k->running = true;
    return 0;
  }
  return checkpoint_run (k);
}

/* What the resync copies, decided before the first copy (plan). */
struct resync_plan {
  uint64_t chunk, nchunks;
  /* Per slot: copy the set bits; copy everything from full_from on (and
   * the set bits below it: a recovery resumed at its recovery offset);
   * copy everything from from_chunk on (no bitmap, dirty shutdown). */
  bool bits_target[ASSEMBLE_MAX_SLOTS];
  bool full_target[ASSEMBLE_MAX_SLOTS];
  uint64_t full_from[ASSEMBLE_MAX_SLOTS];
  bool current_target[ASSEMBLE_MAX_SLOTS];
  uint64_t from_chunk;
  bool any_behind, any_target;
  bool bits_only;               /* only set bits anywhere: skip clean runs */
};

static void
resync_plan (struct array *a, struct resync_plan *p,
             struct array_resync_stats *st)
{
  memset (p, 0, sizeof *p);
  p->chunk = array_copy_unit (a);
  p->nchunks = bitmap_chunks (a->volume_bytes, p->chunk);
  p->from_chunk = a->resync_from == UINT64_MAX ? p->nchunks
    : a->resync_from * 512 / p->chunk;
  bool any_full = false, any_current = false;
  for (uint32_t s = 0; s < a->nslots; s++) {
    if (s == a->reference)
      continue;
    int state = state_of (a, s);
    if (state == MEMBER_ACTIVE) {
      if (a->bitmap.stale_at_mount && bitmap_use (a) != BITMAP_IN_USE)
        p->full_target[s] = true;       /* stale bits not rebuilt */
      else if (a->bitmap.bm)
        p->bits_target[s] = true;
      else if (a->resync_from != UINT64_MAX)
        p->current_target[s] = true;
    }
    else if (state == MEMBER_RECOVERING) {
      p->any_behind = true;
      bool bits = a->m[s].recovery == RECOVER_BITMAP && a->bitmap.bm;
      if (bits)
        p->bits_target[s] = true;
      else {
        p->full_target[s] = true;
        if (a->bitmap.bm)
          p->full_from[s] = a->m[s].recover_from * 512 / p->chunk;
        else
          a->m[s].recover_from = 0;
      }
      /* Its own superblock says it is being recovered before the first
       * copy lands: alone, it is no longer taken as current (SPEC §8). */
      array_write_recovery_sb (a, s, bits ? 0 : a->m[s].recover_from, bits);
    }
    any_full |= p->full_target[s];
    any_current |= p->current_target[s];
    p->any_target |= p->bits_target[s] || p->current_target[s]
      || p->full_target[s];
  }
  p->bits_only = a->bitmap.bm != NULL && !any_full && !any_current;
  st->chunks_total = p->nchunks;
  st->full = a->bitmap.stale_at_mount
    || (!a->bitmap.bm && a->resync_from != UINT64_MAX) || any_full;
}

/* Copy every chunk the plan names, with a checkpoint every
 * RESYNC_CHECKPOINT_BYTES (and at the end).  0, -ECANCELED when stopped
 * (the last checkpoint durable), or a negative errno. */
static int
resync_copy (struct array *a, const struct resync_plan *p,
             struct array_resync_stats *st)
{
  uint8_t *buf = NULL;
  if (posix_memalign ((void **) &buf, 4096, COPY_BUF_SIZE) != 0) {
    log_error ("out of memory for the resync buffer");
    return -ENOMEM;
  }
  uint64_t chunk = p->chunk, nchunks = p->nchunks;
  bool written[ASSEMBLE_MAX_SLOTS] = { 0 };
  uint64_t pending_first = 0, pending_bytes = 0;
  uint64_t ahead = 0;           /* bits_only: the first dirty chunk after c */
  struct checkpoint ck = { .a = a, .chunk = chunk,
                           .any_behind = p->any_behind,
                           .full_target = p->full_target };
  int r = 0;

  for (uint64_t c = 0; c < nchunks && r == 0; c++) {
    if (__atomic_load_n (&a->stopping, __ATOMIC_ACQUIRE)) {
      /* Stopped: the last checkpoint is durable and its bits cleared;
       * the rest stays set, so the next mount resumes here. */
      r = -ECANCELED;
      break;
    }
    if (p->bits_only) {
      /* Only dirty chunks are copied: skip the clean run to the next one
       * (landing on its last clean chunk, so the checkpoint test below
       * still sees the volume's last chunk).  The turn before found it
       * already, unless this is the first. */
      uint64_t next = c > 0 ? ahead : bitmap_next_dirty (a->bitmap.bm, c);
      if (next > c)
        c = next - 1;
      /* The chunks to copy are scattered: ask for the next one's data now,
       * so that its read overlaps this chunk's copy.  (Only chunks before
       * this one are cleared meanwhile, by the checkpoints.) */
      ahead = bitmap_next_dirty (a->bitmap.bm, c + 1);
      if (ahead < nchunks)
        io_advise_willneed (a->m[a->reference].io, ahead * chunk, chunk);
    }
    bool dirty = a->bitmap.bm && bitmap_test (a->bitmap.bm, c);
    bool want[ASSEMBLE_MAX_SLOTS];
    bool any = false;
    for (uint32_t s = 0; s < a->nslots; s++) {
      want[s] = (p->full_target[s] && (c >= p->full_from[s] || dirty))
        || (dirty && p->bits_target[s])
        || (p->current_target[s] && c >= p->from_chunk);
      any |= want[s];
    }
    if (any) {
      uint64_t start = c * chunk;
      uint64_t end = start + chunk < a->volume_bytes ? start + chunk
        : a->volume_bytes;
      bool got[ASSEMBLE_MAX_SLOTS];
      r = array_copy_range (a, a->reference, want, start, end, buf,
                            COPY_BUF_SIZE, MEMBER_IO_RESYNC_WRITE, got);
      for (uint32_t s = 0; s < a->nslots; s++)
        written[s] |= got[s];
      st->chunks_copied++;
      st->bytes_copied += end - start;
      pending_bytes += end - start;
    }

    if (a->resync_progress)
      progress_update (a->resync_progress, (c + 1) * chunk < a->volume_bytes
                       ? (c + 1) * chunk : a->volume_bytes, a->volume_bytes);
    bool last = c + 1 == nchunks;
    if (r == 0 && (pending_bytes >= RESYNC_CHECKPOINT_BYTES
                   || (last && pending_bytes))) {
      /* Checkpoint: the copies are durable before any bit is cleared or
       * any resync_offset advanced, so a crash resumes from here.  The
       * previous one ends first: bits are cleared in order. */
      r = checkpoint_wait (&ck);
      if (r == 0) {
        memcpy (ck.written, written, sizeof written);
        ck.first = pending_first;
        ck.end = c + 1;
        ck.last = last;
        r = checkpoint_start (&ck);
      }
      memset (written, 0, sizeof written);
      pending_first = c + 1;
      pending_bytes = 0;
    }
  }
  /* Stopped or failed: the checkpoint in flight still ends (durable, its
   * bits cleared) before the resync returns. */
  int rk = checkpoint_wait (&ck);
  if (r == 0)
    r = rk;
  free (buf);
  return r;
}

/* Every copy is durable: recovered members become current (the current
 * members' superblocks, their role active, written first), a resync
 * without bitmap is recorded as done, and the bits behind the copies go. */
static int
resync_finish (struct array *a, const struct resync_plan *p)
{
  int r = 0;
  pthread_mutex_lock (&a->sb_lock);
  bool recovered = false;
  for (uint32_t s = 0; s < a->nslots; s++) {
    if (state_of (a, s) == MEMBER_RECOVERING) {
      set_state (a, s, MEMBER_ACTIVE);
      a->m[s].just_recovered = true;
      recovered = true;
    }
  }
  if (recovered)
    r = array_bump_events_locked (a);
  if (a->resync_from != UINT64_MAX && !a->bitmap.bm) {
    a->resync_from = UINT64_MAX;
    if (a->resync_offset != SB_RESYNC_CLEAN && r == 0) {
      a->resync_offset = SB_RESYNC_CLEAN;
      r = array_bump_events_locked (a);
    }
  }
  pthread_mutex_unlock (&a->sb_lock);

  /* With every member in sync and durable, the bits behind the copies can
   * go (none was cleared while a member was behind). */
  if (r == 0 && bitmap_in_use (a) && all_active (a)) {
    bitmap_allow_clearing (a->bitmap.bm, true);
    if (p->any_behind && bitmap_clear_range (a->bitmap.bm, 0, p->nchunks) < 0)
      r = array_bitmap_failed (a);
  }
  if (r == 0 && a->bitmap.bm && bitmap_failed (a->bitmap.bm))
    r = array_bitmap_failed (a);
  return r;
}

int
array_resync (struct array *a, struct array_resync_stats *st)
{
  memset (st, 0, sizeof *st);
  double t0 = now_seconds ();
  struct resync_plan p;
  resync_plan (a, &p, st);
  int r = p.any_target ? resync_copy (a, &p, st) : 0;
  if (a->resync_progress)
    progress_end (a->resync_progress);
  if (r == 0)
    r = resync_finish (a, &p);
  st->seconds = now_seconds () - t0;
  a->last_resync = *st;
  return r < 0 ? r : 0;
}
