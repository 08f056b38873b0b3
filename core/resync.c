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

/* Read [OFF, OFF+LEN) from an active member, trying each in turn.  A
 * member that fails a read is marked faulty (unless it is the last one)
 * and the read goes to another (SPEC §6). */
int
array_read_any (struct array *a, void *buf, size_t len, uint64_t off,
          uint32_t first)
{
  int r = -EIO;
  for (uint32_t k = 0; k < a->nslots; k++) {
    uint32_t s = (first + k) % a->nslots;
    if (state_of (a, s) != MEMBER_ACTIVE)
      continue;
    r = io_pread_full (a->m[s].io, buf, len, off);
    if (r == 0)
      return 0;
    log_error ("%s: read of %zu bytes at %" PRIu64 " failed: %s",
               a->m[s].io->name, len, off, strerror (-r));
    if (array_member_failed (a, s, r, MEMBER_IO_READ) < 0)
      return r;                 /* the last member: the error is the user's */
  }
  return r;
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

static bool
any_full_target (const bool *full, uint32_t n)
{
  for (uint32_t s = 0; s < n; s++)
    if (full[s])
      return true;
  return false;
}

int
array_resync (struct array *a, struct array_resync_stats *st)
{
  memset (st, 0, sizeof *st);
  double t0 = now_seconds ();
  uint64_t chunk = array_copy_unit (a);
  uint64_t nchunks = bitmap_chunks (a->volume_bytes, chunk);
  st->chunks_total = nchunks;

  bool bits_target[ASSEMBLE_MAX_SLOTS] = { 0 };
  bool full_target[ASSEMBLE_MAX_SLOTS] = { 0 };
  /* A full target copies every chunk from here on, only the set bits
   * below (a recovery resumed at its recovery offset). */
  uint64_t full_from[ASSEMBLE_MAX_SLOTS] = { 0 };
  bool current_target[ASSEMBLE_MAX_SLOTS] = { 0 };
  bool any_behind = false, any_target = false;
  for (uint32_t s = 0; s < a->nslots; s++) {
    if (s == a->reference)
      continue;
    int state = state_of (a, s);
    if (state == MEMBER_ACTIVE) {
      if (a->bitmap.stale_at_mount && bitmap_use (a) != BITMAP_IN_USE)
        full_target[s] = true;  /* stale bits that could not be rebuilt */
      else if (a->bitmap.bm)
        bits_target[s] = true;
      else if (a->resync_from != UINT64_MAX)
        current_target[s] = true;
      any_target |= bits_target[s] || current_target[s] || full_target[s];
    }
    else if (state == MEMBER_RECOVERING) {
      any_behind = true;
      any_target = true;
      bool bits = a->m[s].recovery == RECOVER_BITMAP && a->bitmap.bm;
      if (bits)
        bits_target[s] = true;
      else {
        full_target[s] = true;
        if (a->bitmap.bm)
          full_from[s] = a->m[s].recover_from * 512 / chunk;
        else
          a->m[s].recover_from = 0;
      }
      /* Its own superblock says it is being recovered before the first
       * copy lands: alone, it is no longer taken as current (SPEC §8). */
      array_write_recovery_sb (a, s, bits ? 0 : a->m[s].recover_from, bits);
    }
  }
  st->full = a->bitmap.stale_at_mount
    || (!a->bitmap.bm && a->resync_from != UINT64_MAX) || any_full_target (full_target, a->nslots);

  uint8_t *buf = NULL;
  if (any_target && posix_memalign ((void **) &buf, 4096, COPY_BUF_SIZE) != 0) {
    log_error ("out of memory for the resync buffer");
    return -ENOMEM;
  }

  bool bits_only = a->bitmap.bm != NULL && !any_full_target (full_target, a->nslots);
  for (uint32_t s = 0; s < a->nslots; s++)
    bits_only &= !current_target[s];
  bool written[ASSEMBLE_MAX_SLOTS] = { 0 };
  uint64_t pending_first = 0, pending_bytes = 0;
  uint64_t ahead = 0;           /* bits_only: the first dirty chunk after c */
  struct checkpoint ck = { .a = a, .chunk = chunk, .any_behind = any_behind,
                           .full_target = full_target };
  uint64_t from_chunk = a->resync_from == UINT64_MAX ? nchunks
    : a->resync_from * 512 / chunk;
  int r = 0;

  for (uint64_t c = 0; any_target && c < nchunks && r == 0; c++) {
    if (__atomic_load_n (&a->stopping, __ATOMIC_ACQUIRE)) {
      /* Stopped: the last checkpoint is durable and its bits cleared;
       * the rest stays set, so the next mount resumes here. */
      r = -ECANCELED;
      break;
    }
    if (bits_only) {
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
      want[s] = state_of (a, s) != MEMBER_FAULTY
        && ((full_target[s] && (c >= full_from[s] || dirty))
            || (dirty && bits_target[s])
            || (current_target[s] && c >= from_chunk));
      any |= want[s];
    }
    if (any) {
      uint64_t start = c * chunk;
      uint64_t end = start + chunk < a->volume_bytes ? start + chunk
        : a->volume_bytes;
      /* In the kernel first (copy_file_range); on any error, the piece
       * by piece path below tells which member failed. */
      bool copied = state_of (a, a->reference) == MEMBER_ACTIVE;
      for (uint32_t s = 0; s < a->nslots && copied; s++)
        if (want[s] && state_of (a, s) != MEMBER_FAULTY
            && io_copy_range (a->m[a->reference].io, a->m[s].io, start,
                              end - start, buf, COPY_BUF_SIZE) < 0)
          copied = false;
      if (copied)
        for (uint32_t s = 0; s < a->nslots; s++)
          written[s] |= want[s] && state_of (a, s) != MEMBER_FAULTY;
      for (uint64_t off = start; off < end && r == 0 && !copied;
           off += COPY_BUF_SIZE) {
        size_t len = (size_t) (end - off < COPY_BUF_SIZE ? end - off
                               : COPY_BUF_SIZE);
        r = array_read_any (a, buf, len, off, a->reference);
        if (r < 0) {
          log_error ("resync: no member could supply %zu bytes at %" PRIu64,
                     len, off);
          break;
        }
        for (uint32_t s = 0; s < a->nslots; s++) {
          if (!want[s] || state_of (a, s) == MEMBER_FAULTY)
            continue;
          int w = io_pwrite_full (a->m[s].io, buf, len, off);
          if (w < 0) {
            bool active = state_of (a, s) == MEMBER_ACTIVE;
            int f = array_member_failed (a, s, w, active
                                         ? MEMBER_IO_RESYNC_WRITE
                                         : MEMBER_IO_RECOVERY_WRITE);
            if (active)
              r = f;
            continue;
          }
          written[s] = true;
        }
      }
      st->chunks_copied++;
      st->bytes_copied += end - start;
      pending_bytes += end - start;
    }

    if (a->resync_progress)
      progress_update (a->resync_progress, (c + 1) * chunk < a->volume_bytes
                       ? (c + 1) * chunk : a->volume_bytes, a->volume_bytes);
    bool last = c + 1 == nchunks;
    if (r == 0 && (pending_bytes >= RESYNC_CHECKPOINT_BYTES || (last && pending_bytes))) {
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
  if (a->resync_progress)
    progress_end (a->resync_progress);
  if (r < 0)
    return r;

  /* Recovered members become current: their copy is durable; the current
   * members' superblocks (their role active) are written first. */
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
    if (any_behind && bitmap_clear_range (a->bitmap.bm, 0, nchunks) < 0)
      r = array_bitmap_failed (a);
  }
  if (r == 0 && a->bitmap.bm && bitmap_failed (a->bitmap.bm))
    r = array_bitmap_failed (a);
  st->seconds = now_seconds () - t0;
  a->last_resync = *st;
  return r < 0 ? r : 0;
}

