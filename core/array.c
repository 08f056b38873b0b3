#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bitmap/bitmap.h"
#include "core/array.h"
#include "core/assemble.h"
#include "common/log.h"
#include "core/member.h"
#include "common/rangelock.h"
#include "common/util.h"
#include "core/array_impl.h"

/* ---- superblocks and events ---- */

static void
build_sb (struct array *a, uint32_t slot, struct md_sb *sb)
{
  *sb = a->tmpl;
  sb->dev_number = slot;
  memcpy (sb->device_uuid, a->m[slot].sb.device_uuid, 16);
  sb->events = a->events;
  sb->utime = (uint64_t) time (NULL);
  sb->resync_offset = a->resync_offset;
  sb->max_dev = a->nslots;
  sb->super_offset = a->m[slot].sb.super_offset;
  sb->data_size = a->m[slot].sb.data_size;
  for (uint32_t k = 0; k < a->nslots; k++)
    sb->dev_roles[k] = state_of (a, k) == MEMBER_ACTIVE ? (uint16_t) k
      : SB_ROLE_FAULTY;
}

static int bitmap_abandon_locked (struct array *a);

/* fdatasync member M, its sync lock held.  Never retried: the kernel
 * reports a lost write once, so once any fdatasync of the member failed
 * (sync_err), none counts it as synced.  *FAILED_NOW: this call saw the
 * error first, and its caller handles it. */
static int
member_sync_locked (struct array_member *m, bool *failed_now)
{
  int r = m->sync_err;
  if (r == 0) {
    r = io_fdatasync (m->io);
    if (r < 0) {
      m->sync_err = r;
      *failed_now = true;
    }
  }
  return r;
}

/* Write SB on member SLOT, its fdatasync under the member's sync lock:
 * that fdatasync may be the one that learns of a lost data write, and
 * then no other caller may count the member as synced (SPEC §8).  A
 * member that has already lost a write gets no superblock: it fails as if
 * this one had. */
static int
write_member_sb (struct array *a, uint32_t slot, const struct md_sb *sb)
{
  struct array_member *m = &a->m[slot];
  pthread_mutex_lock (&m->sync_lock);
  bool failed_now = false;       /* the bump marks the member on any error */
  int r = m->sync_err;
  if (r == 0)
    r = member_write_sb_unsynced (m->io, sb);
  if (r == 0)
    r = member_sync_locked (m, &failed_now);
  pthread_mutex_unlock (&m->sync_lock);
  return r;
}

/* Bump events and write every active member's superblock, then the bitmap
 * header with the same events (SPEC §1: a crash between them only makes
 * the bitmap stale).  Members that recovered just now are written after
 * the others (SPEC §5 step 5).  A member whose superblock cannot be
 * written is marked faulty and the bump is redone without it.  Called with
 * sb_lock held.  Fails only when no member could be written. */
int
array_bump_events_locked (struct array *a)
{
  for (;;) {
    a->events++;
    int failed = -1, err = 0;
    for (int pass = 0; pass < 2 && failed < 0; pass++) {
      for (uint32_t s = 0; s < a->nslots; s++) {
        if (state_of (a, s) != MEMBER_ACTIVE || a->m[s].just_recovered != pass)
          continue;
        struct md_sb sb;
        build_sb (a, s, &sb);
        int r = write_member_sb (a, s, &sb);
        if (r < 0) {
          failed = (int) s;
          err = r;
          break;
        }
        a->m[s].sb = sb;
      }
    }
    if (failed < 0)
      break;
    a->m[failed].write_errors++;
    if (active_count (a) <= 1) {
      log_error ("%s: superblock write failed: %s; it is the last active "
                 "member", a->m[failed].io->name, strerror (-err));
      return err;
    }
    log_error ("%s: superblock write failed: %s", a->m[failed].io->name,
               strerror (-err));
    set_state (a, (uint32_t) failed, MEMBER_FAULTY);
    if (a->bitmap.bm)
      bitmap_allow_clearing (a->bitmap.bm, false);
  }
  /* Every survivor now says what each slot is: writes and syncs held for
   * a slot's faulty marking may reply. */
  for (uint32_t s = 0; s < a->nslots; s++) {
    a->m[s].just_recovered = false;
    __atomic_store_n (&a->m[s].out_on_disk, state_of (a, s) != MEMBER_ACTIVE,
                      __ATOMIC_RELEASE);
  }

  if (bitmap_in_use (a)) {
    bitmap_set_events (a->bitmap.bm, a->events);
    if (bitmap_write_header (a->bitmap.bm) < 0) {
      /* The header may be on disk with these very events: a failed
       * fdatasync says nothing of whether its pwrite landed.  Then it would
       * look current at the next mount, with bits that no longer cover
       * the writes made without it.  The members go past it first. */
      return bitmap_abandon_locked (a);
    }
  }
  return 0;
}

/* The bitmap file failed.  Before any member write goes on without it,
 * the members' events are bumped, durably, past any events its header
 * can carry on disk: the next mount finds it stale by the events rule
 * even if no STALE flag could be written (SPEC §6, §8).  Until that bump
 * is durable writers may not skip the bitmap (they fail and retry it).
 * Called with sb_lock held; 0 or a negative errno. */
static int
bitmap_abandon_locked (struct array *a)
{
  if (bitmap_use (a) == BITMAP_ABANDONED)
    return 0;
  set_bitmap_use (a, BITMAP_FAILING);   /* the bump below writes no header */
  int r = array_bump_events_locked (a);
  if (r == 0) {
    set_bitmap_use (a, BITMAP_ABANDONED);
    log_warn ("%s: the volume goes on without its bitmap (members at "
              "events %" PRIu64 "); the next mount resyncs everything",
              a->bitmap.io->name, a->events);
  }
  return r;
}

int
array_bitmap_failed (struct array *a)
{
  pthread_mutex_lock (&a->sb_lock);
  int r = bitmap_abandon_locked (a);
  pthread_mutex_unlock (&a->sb_lock);
  return r;
}

static const char *const member_io_name[] = {
  [MEMBER_IO_READ] = "read",
  [MEMBER_IO_WRITE] = "write",
  [MEMBER_IO_SYNC] = "fdatasync",
  [MEMBER_IO_RESYNC_WRITE] = "resync write",
  [MEMBER_IO_RECOVERY_WRITE] = "recovery write",
  [MEMBER_IO_CHECK_READ] = "check read",
  [MEMBER_IO_REPAIR_WRITE] = "repair write",
};

static bool
member_io_is_read (enum member_io what)
{
  return what == MEMBER_IO_READ || what == MEMBER_IO_CHECK_READ;
}

/* SLOT is out of the array in memory: make that durable if the bump that
 * marked it did not.  Called with sb_lock held; 0 or -EIO. */
static int
out_on_disk_locked (struct array *a, uint32_t slot)
{
  if (state_of (a, slot) == MEMBER_ACTIVE)
    return 0;                   /* re-added and recovered meanwhile */
  if (!__atomic_load_n (&a->m[slot].out_on_disk, __ATOMIC_ACQUIRE))
    array_bump_events_locked (a);
  return __atomic_load_n (&a->m[slot].out_on_disk, __ATOMIC_ACQUIRE)
    ? 0 : -EIO;
}

int
array_member_failed (struct array *a, uint32_t slot, int err,
                     enum member_io what)
{
  const char *name = member_io_name[what];
  pthread_mutex_lock (&a->sb_lock);
  if (member_io_is_read (what))
    __atomic_add_fetch (&a->m[slot].read_errors, 1, __ATOMIC_RELAXED);
  else
    a->m[slot].write_errors++;
  int r;
  int st = state_of (a, slot);
  if (st == MEMBER_ACTIVE && active_count (a) <= 1) {
    log_error ("%s: %s failed: %s (last active member)",
               a->m[slot].io->name, name, strerror (-err));
    r = err;
  }
  else {
    if (st == MEMBER_ACTIVE) {
      set_state (a, slot, MEMBER_FAULTY);
      if (a->bitmap.bm)
        bitmap_allow_clearing (a->bitmap.bm, false);
      log_error ("%s: %s failed: %s; member marked faulty, the volume goes "
                 "on degraded", a->m[slot].io->name, name, strerror (-err));
    }
    else if (st == MEMBER_RECOVERING) {
      /* Already faulty in every superblock: just stop recovering it. */
      set_state (a, slot, MEMBER_FAULTY);
      log_error ("%s: %s failed during recovery: %s; member left out",
                 a->m[slot].io->name, name, strerror (-err));
    }
    r = out_on_disk_locked (a, slot);
  }
  pthread_mutex_unlock (&a->sb_lock);
  return r;
}

int
array_write_recovery_sb_locked (struct array *a, uint32_t slot,
                                uint64_t offset, bool bitmap_guided)
{
  struct md_sb sb;
  build_sb (a, slot, &sb);
  sb.dev_roles[slot] = (uint16_t) slot;
  sb.recovering = true;
  sb.recovery_bitmap = bitmap_guided;
  sb.recovery_offset = offset;
  int r = write_member_sb (a, slot, &sb);
  if (r == 0)
    a->m[slot].sb = sb;
  return r;
}

int
array_write_recovery_sb (struct array *a, uint32_t slot, uint64_t offset,
                         bool bitmap_guided)
{
  pthread_mutex_lock (&a->sb_lock);
  int r = array_write_recovery_sb_locked (a, slot, offset, bitmap_guided);
  pthread_mutex_unlock (&a->sb_lock);
  if (r < 0)
    array_member_failed (a, slot, r, MEMBER_IO_RECOVERY_WRITE);
  return r;
}

int
array_member_left_out (struct array *a, uint32_t slot)
{
  if (__atomic_load_n (&a->m[slot].out_on_disk, __ATOMIC_ACQUIRE))
    return 0;
  /* A marking in progress holds sb_lock until its bump ends. */
  pthread_mutex_lock (&a->sb_lock);
  int r = out_on_disk_locked (a, slot);
  pthread_mutex_unlock (&a->sb_lock);
  return r;
}

/* ---- assembly ---- */

static int
read_bitmap_header (struct io_file *io, struct assemble_bitmap_in *in)
{
  in->used = true;
  in->name = io->name;
  in->file_size = io_size (io);
  if (in->file_size < 0) {
    log_error ("%s: %s", io->name, strerror ((int) -in->file_size));
    return -1;
  }
  if (in->file_size < BITMAP_HEADER_SIZE) {
    log_error ("%s: file is %" PRId64 " bytes, too small to be a bitmap",
               io->name, in->file_size);
    return -1;
  }
  uint8_t hdr[BITMAP_HEADER_SIZE];
  int r = io_pread_full (io, hdr, sizeof hdr, 0);
  if (r < 0) {
    log_error ("%s: cannot read the bitmap header: %s", io->name,
               strerror (-r));
    return -1;
  }
  in->status = bitmap_header_decode (hdr, &in->hdr, in->why, sizeof in->why);
  return 0;
}

static void
close_all (struct io_file **members, size_t n, struct io_file *bitmap)
{
  for (size_t i = 0; i < n; i++)
    io_close (members[i]);
  io_close (bitmap);
}

static struct bitmap *
load_bitmap (struct io_file *io, const struct bitmap_header *h,
             uint64_t volume_bytes)
{
  uint64_t chunks = bitmap_chunks (volume_bytes, h->chunksize);
  uint64_t bytes = bitmap_file_size (chunks);
  uint8_t *buf = calloc (1, bytes);
  if (!buf) {
    log_error ("%s: out of memory for %" PRIu64 " bytes of bitmap", io->name,
               bytes);
    return NULL;
  }
  int64_t fsize = io_size (io);
  uint64_t want = (uint64_t) fsize < bytes ? (uint64_t) fsize : bytes;
  int r = io_pread_full (io, buf, want, 0);
  if (r < 0) {
    log_error ("%s: cannot read the bitmap: %s", io->name, strerror (-r));
    free (buf);
    return NULL;
  }
  struct bitmap *bm = bitmap_new (io, h, buf, volume_bytes);
  if (!bm) {
    log_error ("%s: out of memory", io->name);
    free (buf);
  }
  return bm;
}

struct array *
array_assemble (struct io_file **members, size_t n, struct io_file *bitmap_io,
                const struct array_options *opts)
{
  struct member_probe *probes = calloc (n ? n : 1, sizeof *probes);
  const char **names = calloc (n ? n : 1, sizeof *names);
  struct io_file **present = calloc (n ? n : 1, sizeof *present);
  struct array *a = calloc (1, sizeof *a);
  size_t np = 0;
  if (!probes || !names || !present || !a) {
    log_error ("out of memory");
    goto refuse;
  }

  /* Step 1: read every superblock; nothing is written before the plan. */
  for (size_t i = 0; i < n; i++) {
    if (!members[i])
      continue;
    if (member_probe (members[i], &probes[np]) < 0) {
      log_error ("%s: %s", members[i]->name, probes[np].why);
      goto refuse;
    }
    names[np] = members[i]->name;
    present[np] = members[i];
    np++;
  }

  struct assemble_bitmap_in bin;
  memset (&bin, 0, sizeof bin);
  if (!opts->nobitmap) {
    if (!bitmap_io) {
      log_error ("no bitmap file given (use -o bitmap=FILE, or -o nobitmap)");
      goto refuse;
    }
    if (read_bitmap_header (bitmap_io, &bin) < 0)
      goto refuse;
  }

  struct assemble_options aopts = { .degraded = opts->degraded,
                                    .force = opts->force };
  struct assemble_plan plan;
  char err[512];
  if (assemble_decide (probes, names, np, &bin, &aopts, &plan, err,
                       sizeof err) < 0) {
    log_error ("%s", err);
    goto refuse;
  }
  if (plan.warnings[0])
    log_warn ("%s", plan.warnings);

  /* Build the array from the plan. */
  pthread_mutex_init (&a->sb_lock, NULL);
  pthread_mutex_init (&a->clearer.lock, NULL);
  pthread_cond_init (&a->clearer.cond, NULL);
  pthread_cond_init (&a->bg_cond, NULL);
  for (uint32_t s = 0; s < ASSEMBLE_MAX_SLOTS; s++)
    pthread_mutex_init (&a->m[s].sync_lock, NULL);
  rangelock_init (&a->rl);
  a->nslots = plan.raid_disks;
  a->tmpl = probes[plan.reference].sb;
  a->volume_bytes = plan.volume_bytes;
  a->events = plan.events;
  a->resync_offset = a->tmpl.resync_offset;   /* kept as found (step 4) */
  a->resync_from = plan.resync_from;
  a->reference = a->tmpl.dev_number;
  for (uint32_t s = 0; s < a->nslots; s++) {
    struct array_member *m = &a->m[s];
    int i = plan.member_of_slot[s];
    if (i < 0) {
      m->state = MEMBER_MISSING;
      continue;
    }
    m->io = present[i];
    present[i] = NULL;
    m->sb = probes[i].sb;
    m->sb.super_offset = sb_super_offset_for ((uint64_t) probes[i].file_size);
    m->sb.data_size = m->sb.super_offset;
    if (probes[i].status != SB_VALID) {
      /* Torn: a fresh device uuid rather than a half-written one. */
      random_bytes (m->sb.device_uuid, 16);
    }
    m->recovery = plan.recovery[s];
    m->recover_from = plan.recover_from[s];
    m->state = plan.slot[s];
  }

  a->clearer.sleep = BITMAP_DEFAULT_DAEMON_SLEEP;
  struct bitmap_header h = bin.hdr;
  if (plan.bitmap != BITMAP_UNUSED) {
    if (h.daemon_sleep >= 1 && h.daemon_sleep <= 3600)
      a->clearer.sleep = h.daemon_sleep;
    h.daemon_sleep = a->clearer.sleep;
    h.chunksize = (uint32_t) plan.bitmap_chunk;
    h.state &= BITMAP_STATE_STALE;
    a->bitmap.io = bitmap_io;
    bitmap_io = NULL;
    a->bitmap.bm = load_bitmap (a->bitmap.io, &h, a->volume_bytes);
    if (!a->bitmap.bm)
      goto fail_built;
    set_bitmap_use (a, BITMAP_IN_USE);
    if (!all_active (a))
      bitmap_allow_clearing (a->bitmap.bm, false);
  }
  else {
    io_close (bitmap_io);       /* -o nobitmap: it falls behind (SPEC §5) */
    bitmap_io = NULL;
  }

  /* Step 4: the plan holds; from here on we write. */
  pthread_mutex_lock (&a->sb_lock);
  int r = 0;
  if (plan.bitmap == BITMAP_USE_STALE) {
    log_warn ("%s: bitmap is stale (%s): full resync", a->bitmap.io->name,
              plan.bitmap_stale_reason);
    a->bitmap.stale_at_mount = true;
    /* The header this bump writes says STALE, events_cleared = events;
     * then every bit is set durably; only then is STALE dropped. */
    bitmap_set_stale (a->bitmap.bm, true);
    bitmap_set_events_cleared (a->bitmap.bm, a->events + 1);
  }
  r = array_bump_events_locked (a);
  if (r == 0 && plan.bitmap == BITMAP_USE_STALE && bitmap_in_use (a)) {
    int b = bitmap_set_all (a->bitmap.bm);
    if (b == 0) {
      bitmap_set_stale (a->bitmap.bm, false);
      b = bitmap_write_header (a->bitmap.bm);
    }
    /* The bits could not be rebuilt: the mount goes on without the
     * bitmap, and the resync copies everything (SPEC §8). */
    if (b < 0)
      r = bitmap_abandon_locked (a);
  }
  pthread_mutex_unlock (&a->sb_lock);
  if (r < 0)
    goto fail_built;

  free (probes);
  free (names);
  free (present);
  return a;

fail_built:
  /* Every member now belongs to the array. */
  array_close (a, false);
  io_close (bitmap_io);
  free (probes);
  free (names);
  free (present);
  return NULL;

refuse:
  /* Nothing was written and nothing moved: close what we were given. */
  close_all (members, n, bitmap_io);
  free (a);
  free (probes);
  free (names);
  free (present);
  return NULL;
}

/* ---- the data path ---- */

/* The member a read starts with.  A read that continues the last read of
 * an active member stays on that member: one sequential stream reads one
 * file, whose readahead then runs ahead of it (alternating would show each
 * member a stride and defeat it).  Other reads take turns. */
static uint32_t
read_balance (struct array *a, uint64_t off, size_t len)
{
  uint32_t s = a->nslots;
  for (uint32_t i = 0; i < a->nslots; i++)
    if (__atomic_load_n (&a->m[i].read_next, __ATOMIC_RELAXED) == off
        && state_of (a, i) == MEMBER_ACTIVE) {
      s = i;
      break;
    }
  if (s == a->nslots)
    s = __atomic_fetch_add (&a->read_rr, 1, __ATOMIC_RELAXED) % a->nslots;
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
  uint32_t first = read_balance (a, off, *len);
  for (uint32_t k = 0; k < a->nslots; k++) {
    uint32_t s = (first + k) % a->nslots;
    if (state_of (a, s) == MEMBER_ACTIVE)
      return io_posix_fd (a->m[s].io);
  }
  return -1;
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

int
array_mark_active (struct array *a)
{
  if (__atomic_load_n (&a->marked_active, __ATOMIC_ACQUIRE))
    return 0;
  pthread_mutex_lock (&a->sb_lock);
  int r = 0;
  if (!a->marked_active) {
    a->resync_offset = 0;
    r = array_bump_events_locked (a);
    if (r == 0)
      __atomic_store_n (&a->marked_active, 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock (&a->sb_lock);
  return r;
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
   * carries this write's data), all at once when the write is large. */
  uint32_t ok = 0;
  if (!unsafe) {
    struct member_job w = { .a = a, .buf = (void *) buf, .len = len, .off = off };
    bool sent[ASSEMBLE_MAX_SLOTS] = { 0 };
    for (uint32_t s = 0; s < a->nslots; s++) {
      int st = state_of (a, s);
      if (st == MEMBER_ACTIVE || st == MEMBER_RECOVERING) {
        w.state[w.n] = st;
        w.slot[w.n++] = s;
        sent[s] = true;
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
      if (array_member_failed (a, w.slot[i], w.r[i], MEMBER_IO_WRITE) < 0)
        unsafe = true;
    }
    /* So is a member this write skipped: were its faulty marking still
     * in flight, a power cut could bring it back as current, without
     * this write (SPEC §8). */
    for (uint32_t s = 0; s < a->nslots && !unsafe; s++)
      if (!sent[s] && array_member_left_out (a, s) < 0)
        unsafe = true;
  }

  /* Step 5. */
  if (counted)
    bitmap_end_write (a->bitmap.bm, off, len);
  rangelock_release (&a->rl, &lk);
  /* ENOSPC is for writes past the end of the volume; a member's own
   * errors reach the user as EIO (SPEC §6). */
  if (ok == 0 || unsafe)
    return -EIO;
  return (ssize_t) len;
}

int
array_member_sync (struct array *a, uint32_t slot)
{
  struct array_member *m = &a->m[slot];
  pthread_mutex_lock (&m->sync_lock);
  int st = state_of (a, slot);
  int r = -EIO;
  bool failed_now = false;
  if (st == MEMBER_ACTIVE || st == MEMBER_RECOVERING)
    r = member_sync_locked (m, &failed_now);
  pthread_mutex_unlock (&m->sync_lock);
  /* The marking takes sb_lock, which a superblock write holds while it
   * waits for sync_lock: it must come after sync_lock is let go. */
  if (failed_now)
    array_member_failed (a, slot, r, MEMBER_IO_SYNC);
  return r;
}

static void
sync_one (void *arg, unsigned i)
{
  struct member_job *w = arg;
  w->r[i] = array_member_sync (w->a, w->slot[i]);
}

int
array_flush (struct array *a)
{
  struct member_job w = { .a = a };
  for (uint32_t s = 0; s < a->nslots; s++)
    if (state_of (a, s) == MEMBER_ACTIVE)
      w.slot[w.n++] = s;
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
    if (!synced[s] && array_member_left_out (a, s) < 0)
      return -EIO;
  return ok ? 0 : -EIO;
}

/* ---- lazy clearing ---- */

static int
sync_active_members (void *arg)
{
  struct array *a = arg;
  for (uint32_t s = 0; s < a->nslots; s++) {
    if (state_of (a, s) != MEMBER_ACTIVE)
      return -EAGAIN;           /* degraded meanwhile: clear nothing */
    /* A failure marks the member faulty at once: the pass holds neither
     * the bitmap lock nor the flusher role while it syncs. */
    int r = array_member_sync (a, s);
    if (r < 0)
      return r;
  }
  return 0;
}

int64_t
array_clear_pass (struct array *a)
{
  if (!bitmap_guards_writes (a)
      || !all_active (a))
    return 0;
  int64_t r = bitmap_clear_pass (a->bitmap.bm, sync_active_members, a);
  if (bitmap_failed (a->bitmap.bm))
    array_bitmap_failed (a);
  return r == -EAGAIN ? 0 : r;
}

static void *
daemon_main (void *arg)
{
  struct array *a = arg;
  pthread_mutex_lock (&a->clearer.lock);
  while (!a->clearer.stop) {
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_sec += a->clearer.sleep;
    int w = 0;
    while (!a->clearer.stop && w != ETIMEDOUT)
      w = pthread_cond_timedwait (&a->clearer.cond, &a->clearer.lock, &ts);
    if (a->clearer.stop)
      break;
    pthread_mutex_unlock (&a->clearer.lock);
    array_clear_pass (a);
    pthread_mutex_lock (&a->clearer.lock);
  }
  pthread_mutex_unlock (&a->clearer.lock);
  return NULL;
}

int
array_start_daemon (struct array *a)
{
  /* After a daemonizing fork: threads do not survive one. */
  if (!a->fan && a->nslots > 1) {
    a->fan = fanout_new (a->nslots - 1);
    if (!a->fan)
      log_warn ("cannot start member threads (%s): members are written one "
                "after the other", strerror (errno));
  }
  if (!a->bitmap.bm)
    return 0;
  int e = pthread_create (&a->clearer.thread, NULL, daemon_main, a);
  if (e) {
    log_error ("cannot start the bitmap clearing thread: %s", strerror (e));
    return -e;
  }
  a->clearer.running = true;
  return 0;
}

/* ---- shutdown ---- */

int
array_close (struct array *a, bool clean)
{
  if (!a)
    return 0;
  if (a->clearer.running) {
    pthread_mutex_lock (&a->clearer.lock);
    a->clearer.stop = true;
    pthread_cond_broadcast (&a->clearer.cond);
    pthread_mutex_unlock (&a->clearer.lock);
    pthread_join (a->clearer.thread, NULL);
    a->clearer.running = false;
  }

  /* Background recovery and check end first: they hold ranges and may
   * write superblocks. */
  pthread_mutex_lock (&a->sb_lock);
  __atomic_store_n (&a->stopping, true, __ATOMIC_RELEASE);
  while (a->recovery.running || a->check.running)
    pthread_cond_wait (&a->bg_cond, &a->sb_lock);
  pthread_mutex_unlock (&a->sb_lock);

  int r = 0;
  if (clean && active_count (a) > 0) {
    /* In-flight writes are finished (the caller stopped serving). */
    r = array_flush (a);
    pthread_mutex_lock (&a->sb_lock);
    if (r == 0 && bitmap_in_use (a) && all_active (a)) {
      /* Every member is durable and whole: header first, then the
       * cleared pages (SPEC §5, clean unmount). */
      bitmap_set_events_cleared (a->bitmap.bm, a->events + 1);
      r = bitmap_write_header (a->bitmap.bm);
      if (r == 0)
        r = bitmap_clear_range (a->bitmap.bm, 0, bitmap_nchunks (a->bitmap.bm));
      if (r < 0) {
        set_bitmap_use (a, BITMAP_FAILING);
        r = 0;                  /* the events bump below makes it stale */
      }
    }
    if (r == 0) {
      a->resync_offset = SB_RESYNC_CLEAN;
      r = array_bump_events_locked (a);
    }
    pthread_mutex_unlock (&a->sb_lock);
  }

  fanout_free (a->fan);
  a->fan = NULL;
  for (uint32_t s = 0; s < a->nslots; s++)
    io_close (a->m[s].io);
  for (size_t i = 0; i < a->nretired; i++)
    io_close (a->retired[i]);
  bitmap_free (a->bitmap.bm);
  io_close (a->bitmap.io);
  rangelock_destroy (&a->rl);
  pthread_mutex_destroy (&a->sb_lock);
  pthread_mutex_destroy (&a->clearer.lock);
  pthread_cond_destroy (&a->clearer.cond);
  pthread_cond_destroy (&a->bg_cond);
  for (uint32_t s = 0; s < ASSEMBLE_MAX_SLOTS; s++)
    pthread_mutex_destroy (&a->m[s].sync_lock);
  free (a);
  return r;
}

/* ---- introspection ---- */

uint64_t
array_size (const struct array *a)
{
  return a->volume_bytes;
}

uint32_t
array_slots (const struct array *a)
{
  return a->nslots;
}

enum member_state
array_member_state (struct array *a, uint32_t slot)
{
  return (enum member_state) state_of (a, slot);
}
