/* The data path (SPEC §4, §6): reads balanced over the active members,
 * writes under the range lock with the write-intent bits durable first,
 * and the flush that makes them durable on every member. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bitmap/bitmap.h"
#include "common/log.h"
#include "common/util.h"
#include "core/array_impl.h"
#include "core/member.h"
#include "common/fanout.h"
#include "common/rangelock.h"

/* Read [OFF, OFF+LEN) from an active member, trying each in turn, the
 * members that are not write-mostly first.  A member that fails a read is
 * marked faulty (unless it is the last one) and the read goes to another
 * (SPEC §6). */
int
array_read_any (struct array *a, void *buf, size_t len, uint64_t off,
          uint32_t first)
{
  int r = -EIO;
  for (int pass = 0; pass < 2; pass++)
    for (uint32_t k = 0; k < a->nslots; k++) {
      uint32_t s = (first + k) % a->nslots;
      if (state_of (a, s) != MEMBER_ACTIVE || write_mostly_of (a, s) != pass)
        continue;
      /* No other member is left: a write-mostly member is read once it
       * has every write (none is behind), as md does. */
      if (pass == 1)
        array_behind_wait_idle (a);
      r = io_pread_full (a->m[s].io, buf, len, off);
      if (r == 0)
        return 0;
      if (array_member_failed (a, s, r, MEMBER_IO_READ, off, len) < 0)
        return r;               /* the last member: the error is the user's */
    }
  return r;
}

/* ---- the chunks the current members may differ in ----
 *
 * Set by the resync's plan (resync.c), cleared by its checkpoints once
 * the copies are durable; read here, by the read path, without a lock. */

void
array_need_set (struct array *a, uint64_t c)
{
  struct resync_job *j = &a->resync;
  if (!__atomic_exchange_n (&j->need[c], 1, __ATOMIC_ACQ_REL))
    __atomic_add_fetch (&j->need_count, 1, __ATOMIC_ACQ_REL);
}

void
array_need_clear (struct array *a, uint64_t first, uint64_t end)
{
  struct resync_job *j = &a->resync;
  for (uint64_t c = first; c < end; c++)
    if (__atomic_exchange_n (&j->need[c], 0, __ATOMIC_ACQ_REL))
      __atomic_sub_fetch (&j->need_count, 1, __ATOMIC_ACQ_REL);
}

bool
array_range_needs_resync (struct array *a, uint64_t off, uint64_t len)
{
  struct resync_job *j = &a->resync;
  if (__atomic_load_n (&j->need_count, __ATOMIC_ACQUIRE) == 0 || len == 0)
    return false;
  uint64_t first = off / j->chunk, last = (off + len - 1) / j->chunk;
  for (uint64_t c = first; c <= last && c < j->nchunks; c++)
    if (__atomic_load_n (&j->need[c], __ATOMIC_ACQUIRE))
      return true;
  return false;
}

/* The member a read starts with.  A read of a chunk the resync has not
 * made the same on every current member yet goes to the source, so that
 * two reads with no write between them see the same data (SPEC §8).  A
 * read that continues the last read of an active member stays on that
 * member: one sequential stream reads one file, whose readahead then runs
 * ahead of it (alternating would show each member a stride and defeat
 * it).  Other reads take turns.  A write-mostly member is read only when
 * no other active member is left (SPEC §8). */
static uint32_t
read_balance (struct array *a, uint64_t off, size_t len)
{
  __atomic_add_fetch (&a->user_io, 1, __ATOMIC_RELAXED);
  if (array_range_needs_resync (a, off, len))
    return __atomic_load_n (&a->reference, __ATOMIC_ACQUIRE);
  uint32_t s = a->nslots;
  for (uint32_t i = 0; i < a->nslots; i++)
    if (__atomic_load_n (&a->m[i].read_next, __ATOMIC_RELAXED) == off
        && preferred_reader (a, i)) {
      s = i;
      break;
    }
  if (s == a->nslots) {
    uint32_t turn = __atomic_fetch_add (&a->read_rr, 1, __ATOMIC_RELAXED)
      % a->nslots;
    s = first_reader (a, turn);
    if (s == a->nslots)
      s = turn;                 /* no active member: the read fails */
  }
  __atomic_store_n (&a->m[s].read_next, off + len, __ATOMIC_RELAXED);
  return s;
}

/* A read of [OFF, OFF+*LEN) cut at the volume's end; false if nothing
 * is left of it. */
static bool
clamp_read (const struct array *a, uint64_t off, size_t *len)
{
  if (off >= a->volume_bytes)
    return false;
  if (*len > a->volume_bytes - off)
    *len = (size_t) (a->volume_bytes - off);
  return *len > 0;
}

ssize_t
array_read (struct array *a, void *buf, size_t len, uint64_t off)
{
  if (!clamp_read (a, off, &len))
    return 0;
  uint32_t first = read_balance (a, off, len);
  int r = array_read_any (a, buf, len, off, first);
  /* No member could serve it: the user sees EIO, whatever the members
   * said (SPEC §6). */
  return r < 0 ? -EIO : (ssize_t) len;
}

int
array_read_fd (struct array *a, uint64_t off, size_t *len)
{
  if (!clamp_read (a, off, len))
    return -1;
  uint32_t s = first_reader (a, read_balance (a, off, *len));
  if (s == a->nslots)
    return -1;
  /* A write-mostly member with writes behind: array_read waits for them. */
  if (write_mostly_of (a, s) && array_behind_active (a)
      && array_behind_outstanding (a) > 0)
    return -1;
  return io_posix_fd (a->m[s].io);
}

/* One write or sync on several members at once (fanout_run). */
struct member_job {
  struct array *a;
  void *buf;
  size_t len;
  uint64_t off;
  uint32_t n;
  uint32_t slot[ASSEMBLE_MAX_SLOTS];
  int state[ASSEMBLE_MAX_SLOTS];
  int r[ASSEMBLE_MAX_SLOTS];
};

/* Smaller writes cost less to do one after the other than to hand over. */
#define FANOUT_MIN_WRITE (64u << 10)

static void
write_one (void *arg, unsigned i)
{
  struct member_job *w = arg;
  w->r[i] = io_pwrite_full (w->a->m[w->slot[i]].io, w->buf, w->len, w->off);
}

bool
array_writes_cross_network (struct array *a)
{
  /* A write-mostly member written behind is not waited for. */
  bool behind = array_behind_active (a) && bitmap_in_use (a);
  for (uint32_t s = 0; s < a->nslots; s++) {
    int st = state_of (a, s);
    if (behind && write_mostly_of (a, s))
      continue;
    /* A member's file changes only in a re-add, under sb_lock; the old
     * one stays open until shutdown, so a stale pointer is still valid. */
    struct io_file *io = __atomic_load_n (&a->m[s].io, __ATOMIC_ACQUIRE);
    if ((st == MEMBER_ACTIVE || st == MEMBER_RECOVERING) && io
        && io_can_reconnect (io))
      return true;
  }
  return false;
}

ssize_t
array_write (struct array *a, const void *buf, size_t len, uint64_t off)
{
  if (off >= a->volume_bytes)
    return -ENOSPC;
  if (len > a->volume_bytes - off)
    len = (size_t) (a->volume_bytes - off);
  if (len == 0)
    return 0;
  if (active_count (a) == 0)
    return -EIO;
  __atomic_add_fetch (&a->user_io, 1, __ATOMIC_RELAXED);
  int r = array_mark_active (a);
  if (r < 0)
    return -EIO;

  struct rangelock_entry lk;
  rangelock_acquire (&a->rl, &lk, off, off + len);

  /* Steps 1-2: the bits covering this write are durable first. */
  bool counted = false, unsafe = false;
  if (bitmap_guards_writes (a)) {
    counted = true;
    /* Without a durable events bump the failed bitmap may still look
     * current: then nothing may be written. */
    if (bitmap_start_write (a->bitmap.bm, off, len) < 0 && array_bitmap_failed (a) < 0)
      unsafe = true;
  }

  /* Step 3: every active member, and a member being recovered (the
   * recovery copies under the same range lock, so whichever comes second
   * carries this write's data), all at once when the write is large.
   * Under write-behind the write-mostly members get it afterwards, from a
   * copy, while the user has the reply (behind.c). */
  uint32_t ok = 0;
  bool behind = false;
  if (!unsafe) {
    struct member_job w = { .a = a, .buf = (void *) buf, .len = len, .off = off };
    uint32_t later[ASSEMBLE_MAX_SLOTS], nlater = 0;
    bool sent[ASSEMBLE_MAX_SLOTS] = { 0 };
    /* Behind only with the bitmap guarding the write (its bit covers the
     * member that lags) and a member that is not write-mostly to take
     * it now. */
    bool may_lag = counted && bitmap_in_use (a) && array_behind_active (a);
    bool any_now = false;
    for (uint32_t s = 0; s < a->nslots && may_lag; s++)
      any_now |= preferred_reader (a, s);
    for (uint32_t s = 0; s < a->nslots; s++) {
      int st = state_of (a, s);
      if (st != MEMBER_ACTIVE && st != MEMBER_RECOVERING)
        continue;
      sent[s] = true;
      if (any_now && write_mostly_of (a, s))
        later[nlater++] = s;
      else {
        w.state[w.n] = st;
        w.slot[w.n++] = s;
      }
    }
    fanout_run (len >= FANOUT_MIN_WRITE ? a->fan : NULL, w.n, write_one, &w);
    for (uint32_t i = 0; i < w.n && !unsafe; i++) {
      if (w.r[i] == 0) {
        if (w.state[i] == MEMBER_ACTIVE)
          ok++;
        continue;
      }
      /* Step 4: a failed member is durably faulty before we reply. */
      if (array_member_failed (a, w.slot[i], w.r[i], MEMBER_IO_WRITE, off,
                               len) < 0)
        unsafe = true;
    }
    /* The write-mostly members: behind, unless no other member took the
     * write (then the reply waits for them, as without write-behind). */
    if (nlater > 0 && ok > 0 && !unsafe)
      behind = array_behind_queue (a, &lk, counted, later, nlater, buf, len,
                                   off);
    if (nlater > 0 && !behind) {
      struct member_job m = { .a = a, .buf = (void *) buf, .len = len,
                              .off = off };
      for (uint32_t i = 0; i < nlater; i++) {
        m.state[m.n] = state_of (a, later[i]);
        m.slot[m.n++] = later[i];
      }
      fanout_run (len >= FANOUT_MIN_WRITE ? a->fan : NULL, m.n, write_one, &m);
      for (uint32_t i = 0; i < m.n; i++) {
        if (m.r[i] == 0) {
          if (m.state[i] == MEMBER_ACTIVE)
            ok++;
          continue;
        }
        if (array_member_failed (a, m.slot[i], m.r[i], MEMBER_IO_WRITE, off,
                                 len) < 0)
          unsafe = true;
      }
    }
    /* So is a member this write skipped: were its faulty marking still
     * in flight, a power cut could bring it back as current, without
     * this write (SPEC §8). */
    for (uint32_t s = 0; s < a->nslots && !unsafe; s++)
      if (!sent[s] && array_member_left_out (a, s) < 0)
        unsafe = true;
  }

  /* Step 5, unless the write went behind: then the behind write ends its
   * count and releases its range once the write-mostly members have it
   * (behind.c). */
  if (!behind) {
    if (counted)
      bitmap_end_write (a->bitmap.bm, off, len);
    rangelock_release (&a->rl, &lk);
  }
  /* ENOSPC is for writes past the end of the volume; a member's own
   * errors reach the user as EIO (SPEC §6). */
  if (ok == 0 || unsafe)
    return -EIO;
  return (ssize_t) len;
}

static void
sync_one (void *arg, unsigned i)
{
  struct member_job *w = arg;
  w->r[i] = array_member_sync (w->a, w->slot[i]);
}

/* fdatasync the active members; under write-behind, with ALL false, only
 * those that are not write-mostly (when there is one). */
static int
flush_members (struct array *a, bool all)
{
  bool skip_wm = !all && array_behind_active (a);
  if (skip_wm) {
    skip_wm = false;
    for (uint32_t s = 0; s < a->nslots; s++)
      skip_wm |= preferred_reader (a, s);
  }
  bool skipped[ASSEMBLE_MAX_SLOTS] = { 0 };
  struct member_job w = { .a = a };
  for (uint32_t s = 0; s < a->nslots; s++)
    if (state_of (a, s) == MEMBER_ACTIVE) {
      if (skip_wm && write_mostly_of (a, s))
        skipped[s] = true;
      else
        w.slot[w.n++] = s;
    }
  fanout_run (a->fan, w.n, sync_one, &w);
  /* Durable means: on every slot, or that slot is durably out of the
   * array (SPEC §8).  A slot that failed its sync was marked by the
   * caller that saw the error; array_member_left_out waits for that
   * marking and tells whether it held.  One still active after a failed
   * sync is the last one: its error is ours. */
  bool synced[ASSEMBLE_MAX_SLOTS] = { 0 };
  uint32_t ok = 0;
  for (uint32_t i = 0; i < w.n; i++) {
    if (w.r[i] == 0) {
      synced[w.slot[i]] = true;
      ok++;
    }
    else if (state_of (a, w.slot[i]) == MEMBER_ACTIVE)
      return -EIO;
  }
  for (uint32_t s = 0; s < a->nslots; s++)
    if (!synced[s] && !skipped[s] && array_member_left_out (a, s) < 0)
      return -EIO;
  return ok ? 0 : -EIO;
}

/* Under write-behind, fsync of the volume makes the writes durable on
 * the members that are not write-mostly, and waits for no write behind
 * (DRBD's protocol A, SPEC §8); otherwise on every active member. */
int
array_flush (struct array *a)
{
  return flush_members (a, false);
}

int
array_flush_all (struct array *a)
{
  array_behind_wait_idle (a);
  return flush_members (a, true);
}
