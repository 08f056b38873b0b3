/* The resync after a mount (SPEC §5 step 5, §8): copy the chunks the
 * bitmap marks (or everything) from the source, the first current member,
 * to the other current members and to the members that are behind,
 * checkpointing so that a crash resumes where it stood.  It runs in the
 * background while the volume is served (array_resync_start), or in the
 * caller (array_resync).
 *
 * While it runs, `need` marks the chunks where the current members may
 * still differ: a read touching one goes to the source alone, so two reads
 * see the same data (datapath.c).  Each copy holds the range lock that
 * user writes take; a chunk leaves `need` once its copy is durable, and
 * its bit is cleared only if no user write to it completed after the
 * checkpoint's member sync began (bitmap_clear_synced). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/array_impl.h"
#include "common/log.h"
#include "common/throttle.h"
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

/* ---- checkpoints ---- */

/* fdatasync every active member and every target written: the copies
 * made so far, and the user writes that completed before, are durable. */
static int
sync_members (struct array *a, const bool *written)
{
  for (uint32_t s = 0; s < a->nslots; s++) {
    int st = state_of (a, s);
    if (st == MEMBER_FAULTY || st == MEMBER_MISSING
        || (st == MEMBER_RECOVERING && !written[s]))
      continue;
    int r = array_member_sync (a, s);
    /* A member that failed is out of the array now; one still active
     * after a failed sync is the last one: the resync cannot go on. */
    if (r < 0 && state_of (a, s) == MEMBER_ACTIVE)
      return r;
  }
  return 0;
}

/* A checkpoint: make the copies of chunks [FIRST, END) durable, then take
 * them out of `need`, advance the recovery offsets, and clear their bits
 * (or advance resync_offset).  It runs on its own thread while the next
 * chunks are copied: a fdatasync makes durable everything written before
 * it, and the bits go only after it returns, so a crash still resumes at
 * or before the first chunk whose copy is not durable.  One checkpoint at
 * a time, in order. */
struct checkpoint
{
  struct array *a;
  const struct resync_plan *p;
  bool written[ASSEMBLE_MAX_SLOTS];
  uint64_t first, end;          /* chunks */
  bool last;
  bool running;
  pthread_t thread;
  int r;
};

static int
checkpoint_run (struct checkpoint *k)
{
  struct array *a = k->a;
  const struct resync_plan *p = k->p;
  /* A user write to these chunks that completes from here on may not be
   * covered by the sync below: its bit stays. */
  uint32_t epoch = a->bitmap.bm ? bitmap_next_epoch (a->bitmap.bm) : 0;
  int r = sync_members (a, k->written);
  if (r < 0)
    return r;
  array_need_clear (a, k->first, k->end);
  uint64_t done = k->end * p->chunk / 512;
  if (done > a->volume_bytes / 512)
    done = a->volume_bytes / 512;
  for (uint32_t s = 0; s < a->nslots; s++)
    if (p->full_target[s] && state_of (a, s) == MEMBER_RECOVERING
        && done > a->m[s].recover_from) {
      /* A member that fails here is left out; the resync goes on. */
      if (array_write_recovery_sb (a, s, done, false) == 0)
        a->m[s].recover_from = done;
    }
  /* Bits go only while every slot is active: a missing, faulty or behind
   * member may still need them (md's NEEDED). */
  if (bitmap_in_use (a) && !p->any_behind && all_active (a)
      && bitmap_clear_synced (a->bitmap.bm, k->first, k->end - k->first,
                              epoch) < 0)
    r = array_bitmap_failed (a);
  /* Without a bitmap, the progress goes into resync_offset, but only
   * while no user write has come: from the first one on, the superblocks
   * say 0 (md's "active"), and a crash resyncs everything. */
  if (r == 0 && !a->bitmap.bm && a->resync_from != UINT64_MAX
      && !__atomic_load_n (&a->marked_active, __ATOMIC_ACQUIRE)) {
    pthread_mutex_lock (&a->sb_lock);
    if (!a->marked_active) {
      a->resync_offset = k->last ? SB_RESYNC_CLEAN : done;
      r = array_bump_events_locked (a);
    }
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

/* ---- plan, copy, finish ---- */

/* Whether the plan copies chunk C (its bit DIRTY) to slot S. */
static bool
target_wants (const struct resync_plan *p, uint32_t s, uint64_t c, bool dirty)
{
  return (p->full_target[s] && (c >= p->full_from[s] || dirty))
    || (p->bits_target[s] && dirty)
    || (p->current_target[s] && c >= p->from_chunk);
}

/* Decide what to copy; mark the chunks the current members may differ in
 * (`need`).  0 or -ENOMEM. */
static int
resync_plan (struct array *a, struct resync_plan *p)
{
  memset (p, 0, sizeof *p);
  struct resync_job *j = &a->resync;
  p->chunk = array_copy_unit (a);
  p->nchunks = bitmap_chunks (a->volume_bytes, p->chunk);
  p->from_chunk = a->resync_from == UINT64_MAX ? p->nchunks
    : a->resync_from * 512 / p->chunk;
  bool any_full = false, any_current = false, active_full = false;
  for (uint32_t s = 0; s < a->nslots; s++) {
    if (s == a->reference)
      continue;
    int state = state_of (a, s);
    if (state == MEMBER_ACTIVE) {
      if (a->bitmap.stale_at_mount && bitmap_use (a) != BITMAP_IN_USE)
        p->full_target[s] = active_full = true; /* stale bits not rebuilt */
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
  }
  p->bits_only = a->bitmap.bm != NULL && !any_full && !any_current;

  j->chunk = p->chunk;
  j->nchunks = p->nchunks;
  free (j->need);
  j->need_count = 0;
  j->need = calloc (p->nchunks ? p->nchunks : 1, 1);
  if (!j->need) {
    log_error ("out of memory for the resync");
    return -ENOMEM;
  }
  /* The current members may differ where a bit is set (or everywhere the
   * plan copies to a current member without bits); behind members are
   * never read, so they add nothing here. */
  bool active_bits = false;
  for (uint32_t s = 0; s < a->nslots; s++)
    active_bits |= p->bits_target[s] && state_of (a, s) == MEMBER_ACTIVE;
  for (uint64_t c = 0; c < p->nchunks; c++) {
    bool dirty = a->bitmap.bm && bitmap_test (a->bitmap.bm, c);
    bool differ = active_full || (any_current && c >= p->from_chunk)
      || (active_bits && dirty);
    bool copied = false;
    for (uint32_t s = 0; s < a->nslots && !copied; s++)
      copied = target_wants (p, s, c, dirty);
    if (differ)
      array_need_set (a, c);
    p->total += copied;
  }
  /* Nothing to copy (a clean mount, or behind members with no bit set):
   * no thread, the finish only. */
  p->any_target = p->total > 0;
  return 0;
}

/* The source of the next copy: the first current member, or the next one
 * once it failed (array_member_failed moves it). */
static uint32_t
resync_source (struct array *a)
{
  return __atomic_load_n (&a->reference, __ATOMIC_ACQUIRE);
}

/* Copy every chunk the plan names, each under the range lock, with a
 * checkpoint every RESYNC_CHECKPOINT_BYTES (and at the end), at the rate
 * the throttle allows.  0, -ECANCELED when stopped (the last checkpoint
 * durable), or a negative errno. */
static int
resync_copy (struct array *a, const struct resync_plan *p,
             struct array_resync_stats *st)
{
  struct resync_job *j = &a->resync;
  uint8_t *buf = NULL;
  if (posix_memalign ((void **) &buf, 4096, COPY_BUF_SIZE) != 0) {
    log_error ("out of memory for the resync buffer");
    return -ENOMEM;
  }
  uint64_t chunk = p->chunk, nchunks = p->nchunks;
  bool written[ASSEMBLE_MAX_SLOTS] = { 0 };
  uint64_t pending_first = 0, pending_bytes = 0;
  uint64_t ahead = 0;           /* bits_only: the first dirty chunk after c */
  struct checkpoint ck = { .a = a, .p = p };
  struct throttle th;
  uint64_t user_io = __atomic_load_n (&a->user_io, __ATOMIC_RELAXED);
  throttle_set (&th, 0, 0);
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
        io_advise_willneed (a->m[resync_source (a)].io, ahead * chunk,
                            chunk);
    }
    bool dirty = a->bitmap.bm && bitmap_test (a->bitmap.bm, c);
    uint32_t src = resync_source (a);
    bool want[ASSEMBLE_MAX_SLOTS];
    bool any = false;
    for (uint32_t s = 0; s < a->nslots; s++) {
      want[s] = s != src && target_wants (p, s, c, dirty);
      any |= want[s];
    }
    if (any) {
      uint64_t start = c * chunk;
      uint64_t end = start + chunk < a->volume_bytes ? start + chunk
        : a->volume_bytes;
      /* Users may write meanwhile: as fast as the maximum rate when they
       * are idle, no faster than the minimum when they are not (md's
       * speed_limit_min/max). */
      uint64_t io_now = __atomic_load_n (&a->user_io, __ATOMIC_RELAXED);
      uint64_t rate = io_now != user_io
        ? __atomic_load_n (&j->rate_min, __ATOMIC_RELAXED)
        : __atomic_load_n (&j->rate_max, __ATOMIC_RELAXED);
      user_io = io_now;
      throttle_wait (&th, st->bytes_copied, rate, &a->stopping);

      struct rangelock_entry lk;
      rangelock_acquire (&a->rl, &lk, start, end);
      bool got[ASSEMBLE_MAX_SLOTS];
      r = array_copy_range (a, src, want, start, end, buf,
                            COPY_BUF_SIZE, MEMBER_IO_RESYNC_WRITE, got);
      rangelock_release (&a->rl, &lk);
      for (uint32_t s = 0; s < a->nslots; s++)
        written[s] |= got[s];
      st->chunks_copied++;
      st->bytes_copied += end - start;
      pending_bytes += end - start;
      __atomic_store_n (&j->copied, st->chunks_copied, __ATOMIC_RELAXED);
    }

    __atomic_store_n (&j->pos, c + 1, __ATOMIC_RELAXED);
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
  array_need_clear (a, 0, p->nchunks);
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
    /* Once a user write came, the superblocks say 0 until a clean
     * shutdown: a crash with writes in flight resyncs everything. */
    if (a->resync_offset != SB_RESYNC_CLEAN && !a->marked_active && r == 0) {
      a->resync_offset = SB_RESYNC_CLEAN;
      r = array_bump_events_locked (a);
    }
  }
  pthread_mutex_unlock (&a->sb_lock);

  /* With every member in sync and durable, the bits behind the copies can
   * go (none was cleared while a member was behind); not those of user
   * writes that completed after the sync below began. */
  if (r == 0 && bitmap_in_use (a) && all_active (a)) {
    bitmap_allow_clearing (a->bitmap.bm, true);
    if (p->any_behind) {
      uint32_t epoch = bitmap_next_epoch (a->bitmap.bm);
      bool none[ASSEMBLE_MAX_SLOTS] = { 0 };
      r = sync_members (a, none);
      if (r == 0 && bitmap_clear_synced (a->bitmap.bm, 0, p->nchunks,
                                         epoch) < 0)
        r = array_bitmap_failed (a);
    }
  }
  if (r == 0 && a->bitmap.bm && bitmap_failed (a->bitmap.bm))
    r = array_bitmap_failed (a);
  return r;
}

/* The whole resync, in the calling thread. */
static int
resync_run (struct array *a, struct array_resync_stats *st)
{
  struct resync_job *j = &a->resync;
  double t0 = now_seconds ();
  int r = j->plan.any_target ? resync_copy (a, &j->plan, st) : 0;
  if (a->resync_progress)
    progress_end (a->resync_progress);
  if (r == 0)
    r = resync_finish (a, &j->plan);
  st->seconds = now_seconds () - t0;
  a->last_resync = *st;
  return r < 0 ? r : 0;
}

static void
resync_log (struct array *a, const struct array_resync_stats *st, int r)
{
  char bytes[32];
  format_bytes (st->bytes_copied, bytes, sizeof bytes);
  if (r == 0)
    log_info ("resync: copied %" PRIu64 " of %" PRIu64 " chunks (%" PRIu64
              " bytes, %s) in %.3f s%s", st->chunks_copied, st->chunks_total,
              st->bytes_copied, bytes, st->seconds, st->full ? " (full)" : "");
  else if (r == -ECANCELED)
    log_warn ("resync stopped after %" PRIu64 " of %" PRIu64 " chunks; the "
              "next mount resumes it", st->chunks_copied,
              a->resync.plan.total);
  else
    log_error ("resync failed after %" PRIu64 " chunk%s: %s; the chunks it "
               "did not copy keep their bits, and the next mount copies them",
               st->chunks_copied, plural (st->chunks_copied), strerror (-r));
  /* For the monitor: a resync that ran (not a mount with nothing to
   * copy), or one that failed. */
  if (r == 0 && (a->resync.plan.any_target || st->chunks_copied))
    array_notice (a, NOTICE_RESYNC_FINISHED, NULL, st->chunks_copied);
  else if (r < 0 && r != -ECANCELED)
    array_notice (a, NOTICE_RESYNC_FAILED, NULL, st->chunks_copied);
}

static int
resync_prepare (struct array *a, struct array_resync_stats *st)
{
  struct resync_job *j = &a->resync;
  memset (st, 0, sizeof *st);
  int r = resync_plan (a, &j->plan);
  if (r < 0)
    return r;
  st->chunks_total = j->plan.nchunks;
  st->full = a->bitmap.stale_at_mount
    || (!a->bitmap.bm && a->resync_from != UINT64_MAX);
  for (uint32_t s = 0; s < a->nslots; s++)
    st->full |= j->plan.full_target[s];
  j->start = now_seconds ();
  return 0;
}

int
array_resync (struct array *a, struct array_resync_stats *st)
{
  int r = resync_prepare (a, st);
  if (r == 0) {
    r = resync_run (a, st);
    resync_log (a, st, r);
  }
  a->resync.result = r;
  a->resync.done = r == 0;
  return r;
}

static void *
resync_main (void *arg)
{
  struct array *a = arg;
  struct resync_job *j = &a->resync;
  struct array_resync_stats st = j->stats;
  int r = resync_run (a, &st);
  resync_log (a, &st, r);
  pthread_mutex_lock (&a->sb_lock);
  j->stats = st;
  j->result = r;
  j->done = r == 0;
  j->running = false;
  pthread_cond_broadcast (&a->bg_cond);
  pthread_mutex_unlock (&a->sb_lock);
  return NULL;
}

int
array_resync_start (struct array *a)
{
  struct resync_job *j = &a->resync;
  int r = resync_prepare (a, &j->stats);
  if (r < 0)
    return r;
  if (!j->plan.any_target) {
    /* Nothing to copy: finish here (a mount with nothing to resync). */
    r = resync_run (a, &j->stats);
    resync_log (a, &j->stats, r);
    j->result = r;
    j->done = r == 0;
    return r;
  }
  /* Bits go only at this resync's checkpoints until it ends: a clearing
   * pass must not clear a chunk it has not copied. */
  pthread_mutex_lock (&a->sb_lock);
  j->running = true;
  int e = pthread_create (&j->thread, NULL, resync_main, a);
  if (e) {
    j->running = false;
    pthread_mutex_unlock (&a->sb_lock);
    log_error ("cannot start the resync thread: %s", strerror (e));
    return -e;
  }
  j->started = true;
  pthread_mutex_unlock (&a->sb_lock);
  uint32_t src = resync_source (a);
  log_info ("resync: %" PRIu64 " of %" PRIu64 " chunks to copy%s, from %s, "
            "in the background", j->plan.total, j->plan.nchunks,
            j->stats.full ? " (full)" : "",
            src < a->nslots && a->m[src].io ? a->m[src].io->name : "?");
  return 0;
}

int
array_resync_wait (struct array *a, struct array_resync_stats *st)
{
  struct resync_job *j = &a->resync;
  pthread_mutex_lock (&a->sb_lock);
  while (j->running)
    pthread_cond_wait (&a->bg_cond, &a->sb_lock);
  bool join = j->started;
  j->started = false;
  int r = j->result;
  if (st)
    *st = j->stats;
  pthread_mutex_unlock (&a->sb_lock);
  if (join)
    pthread_join (j->thread, NULL);
  return r;
}

void
array_set_resync_rate (struct array *a, uint64_t min, uint64_t max)
{
  __atomic_store_n (&a->resync.rate_min, min, __ATOMIC_RELAXED);
  __atomic_store_n (&a->resync.rate_max, max, __ATOMIC_RELAXED);
}
