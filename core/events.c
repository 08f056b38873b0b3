/* The array's state on disk (SPEC §2, §5, §6, §8): member superblocks,
 * events bumps, marking a failed member faulty durably, the bitmap
 * abandoned after a failure, and every member fdatasync with the error it
 * may report once.  Everything here runs under sb_lock, or takes it. */
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

static void
build_sb (struct array *a, uint32_t slot, struct md_sb *sb)
{
  *sb = a->tmpl;
  sb->dev_number = slot;
  memcpy (sb->device_uuid, a->m[slot].sb.device_uuid, 16);
  sb->devflags = a->m[slot].sb.devflags;        /* its own, not tmpl's */
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

/* fdatasync member M, its sync lock held.  Never retried: the kernel
 * reports a lost write once, so once any fdatasync of the member failed
 * (sync_err), none counts it as synced.  *FAILED_NOW: this call saw the
 * error first, and its caller handles it. */
static int
member_sync_locked (struct array_member *m, bool *failed_now)
{
  assert_held (&m->sync_lock);
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
  assert_held (&a->sb_lock);
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
    log_error ("%s: superblock write failed: %s; member marked faulty, the "
               "volume goes on degraded", a->m[failed].io->name,
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
      return array_bitmap_failed_locked (a);
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
abandon_bitmap_locked (struct array *a, bool failed)
{
  assert_held (&a->sb_lock);
  set_bitmap_use (a, BITMAP_FAILING);   /* the bump below writes no header */
  int r = array_bump_events_locked (a);
  if (r < 0)
    return r;
  set_bitmap_use (a, BITMAP_ABANDONED);
  if (failed)
    log_warn_loud ("%s: the volume goes on without its bitmap (members at "
                   "events %" PRIu64 "); the next mount resyncs everything",
                   a->bitmap.io->name, a->events);
  else
    log_warn_loud ("%s: bitmap removed by the administrator; the volume "
                   "runs without it (members at events %" PRIu64 ")",
                   a->bitmap.io->name, a->events);
  array_notice (a, failed ? NOTICE_BITMAP_FAILED : NOTICE_BITMAP_REMOVED,
                a->bitmap.io->name, 0);
  return 0;
}

int
array_bitmap_failed_locked (struct array *a)
{
  assert_held (&a->sb_lock);
  if (bitmap_use (a) == BITMAP_ABANDONED)
    return 0;
  return abandon_bitmap_locked (a, true);
}

int
array_bitmap_failed (struct array *a)
{
  pthread_mutex_lock (&a->sb_lock);
  int r = array_bitmap_failed_locked (a);
  pthread_mutex_unlock (&a->sb_lock);
  return r;
}

int
array_remove_bitmap (struct array *a, bool force, char *msg, size_t msglen)
{
  pthread_mutex_lock (&a->sb_lock);
  int r = 0;
  if (!bitmap_in_use (a)) {
    snprintf (msg, msglen, "the volume has no bitmap in use");
    r = -ENOENT;
  }
  else if (!force && a->resync.running) {
    snprintf (msg, msglen, "%s: a resync is running from its bits; remove "
              "it when the resync has ended (or with --force, and the "
              "resync goes on from memory)", a->bitmap.io->name);
    r = -EBUSY;
  }
  else if (!force && !all_active (a)) {
    snprintf (msg, msglen, "%s: a member is not active, and the bitmap is "
              "what lets its re-add copy only the changed chunks; --force "
              "removes it anyway (the re-add then copies everything)",
              a->bitmap.io->name);
    r = -EBUSY;
  }
  else {
    /* As if it had failed: the members go past its events, durably,
     * before a write skips it, so that it is stale wherever it is used
     * again (SPEC §6). */
    r = abandon_bitmap_locked (a, false);
    if (r == 0)
      snprintf (msg, msglen, "%s: no longer used; mount with -o nobitmap "
                "from now on (a crash then copies the whole volume), or give "
                "a new one made by 'mdfusectl add-bitmap'",
                a->bitmap.io->name);
    else
      snprintf (msg, msglen, "%s: the members could not be updated: %s",
                a->bitmap.io->name, strerror (-r));
  }
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
  [MEMBER_IO_BEHIND_WRITE] = "write-behind write",
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
  assert_held (&a->sb_lock);
  if (state_of (a, slot) == MEMBER_ACTIVE)
    return 0;                   /* re-added and recovered meanwhile */
  if (!__atomic_load_n (&a->m[slot].out_on_disk, __ATOMIC_ACQUIRE))
    array_bump_events_locked (a);
  return __atomic_load_n (&a->m[slot].out_on_disk, __ATOMIC_ACQUIRE)
    ? 0 : -EIO;
}

/* The source (the first current member) failed: the next current member
 * takes over.  For chunks the resync has not copied yet either copy is a
 * valid outcome of the writes that were not acknowledged (SPEC §8). */
static void
next_source_locked (struct array *a, uint32_t failed)
{
  /* A write-mostly member only when no other is left: it may lack the
   * writes still behind (SPEC §8). */
  uint32_t s = first_reader (a, (failed + 1) % a->nslots);
  if (s >= a->nslots || s == failed)
    return;
  __atomic_store_n (&a->reference, s, __ATOMIC_RELEASE);
  if (__atomic_load_n (&a->resync.need_count, __ATOMIC_ACQUIRE) > 0)
    log_warn ("%s: the resync's source failed; %s is the source now",
              a->m[failed].io->name, a->m[s].io->name);
}

int
array_member_failed (struct array *a, uint32_t slot, int err,
                     enum member_io what, uint64_t off, uint64_t len)
{
  /* The one message about this error: what failed, where, and what the
   * array does about it. */
  char name[96];
  if (len)
    snprintf (name, sizeof name, "%s of %" PRIu64 " bytes at %" PRIu64,
              member_io_name[what], len, off);
  else
    snprintf (name, sizeof name, "%s", member_io_name[what]);
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
      log_error_loud ("%s: %s failed: %s; member marked faulty, the volume "
                      "goes on degraded", a->m[slot].io->name, name,
                      strerror (-err));
      array_notice (a, NOTICE_FAIL, a->m[slot].io->name, 0);
      if (slot == __atomic_load_n (&a->reference, __ATOMIC_ACQUIRE))
        next_source_locked (a, slot);
    }
    else if (st == MEMBER_RECOVERING) {
      /* Already faulty in every superblock: just stop recovering it. */
      set_state (a, slot, MEMBER_FAULTY);
      log_error_loud ("%s: %s failed during recovery: %s; member left out",
                      a->m[slot].io->name, name, strerror (-err));
      array_notice (a, NOTICE_FAIL, a->m[slot].io->name, 0);
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
  assert_held (&a->sb_lock);
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
    array_member_failed (a, slot, r, MEMBER_IO_RECOVERY_WRITE, 0, 0);
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
    array_member_failed (a, slot, r, MEMBER_IO_SYNC, 0, 0);
  return r;
}
