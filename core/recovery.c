/* Bringing a member back while the volume is in use (SPEC §6): fail,
 * re-add, and the background recovery that copies only what the bitmap
 * marks when it can. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/array_impl.h"
#include "common/io_nbd.h"
#include "common/log.h"
#include "core/member.h"
#include "common/util.h"

#define RECOVERY_BUF (1u << 20)

int
array_fail_member (struct array *a, uint32_t slot, char *msg, size_t msglen)
{
  if (slot >= a->nslots) {
    snprintf (msg, msglen, "no slot %" PRIu32, slot);
    return -EINVAL;
  }
  pthread_mutex_lock (&a->sb_lock);
  int st = state_of (a, slot);
  int r = 0;
  if (st == MEMBER_RECOVERING) {
    /* Stop its recovery; it is faulty in every superblock already. */
    set_state (a, slot, MEMBER_FAULTY);
    snprintf (msg, msglen, "%s: recovery stopped, member faulty",
              a->m[slot].io->name);
  }
  else if (st != MEMBER_ACTIVE) {
    snprintf (msg, msglen, "slot %" PRIu32 " is not active", slot);
    r = -EINVAL;
  }
  else if (active_count (a) <= 1) {
    snprintf (msg, msglen, "%s: the last active member cannot be failed",
              a->m[slot].io->name);
    r = -EBUSY;
  }
  else {
    set_state (a, slot, MEMBER_FAULTY);
    a->m[slot].failed_by_admin = true;
    if (a->bitmap.bm)
      bitmap_allow_clearing (a->bitmap.bm, false);
    /* Durable before we answer: the survivors say it is faulty. */
    r = array_bump_events_locked (a);
    log_warn_loud ("%s: failed by the administrator; the volume goes on "
                   "degraded", a->m[slot].io->name);
    array_notice (a, NOTICE_FAIL, a->m[slot].io->name, 0);
    snprintf (msg, msglen, "%s: marked faulty", a->m[slot].io->name);
  }
  pthread_mutex_unlock (&a->sb_lock);
  return r;
}

/* Copy [START, END) from an active member to SLOT, holding the range lock
 * so that no user write to the range interleaves.  0, or a negative errno
 * (SLOT failed, or no member could supply the data). */
static int
recover_range (struct array *a, uint32_t slot, uint8_t *buf, uint64_t start,
               uint64_t end)
{
  bool target[ASSEMBLE_MAX_SLOTS] = { 0 }, written[ASSEMBLE_MAX_SLOTS];
  target[slot] = true;
  /* Not a write-mostly member while another is active (SPEC §8). */
  uint32_t source = first_reader (a, (slot + 1) % a->nslots);
  if (source >= a->nslots || source == slot)
    return -EIO;                /* no active member left */
  struct rangelock_entry lk;
  rangelock_acquire (&a->rl, &lk, start, end);
  int r = array_copy_range (a, source, target, start, end, buf, RECOVERY_BUF,
                            MEMBER_IO_RECOVERY_WRITE, written);
  rangelock_release (&a->rl, &lk);
  return r < 0 ? r : written[slot] ? 0 : -EIO;
}

static void *
recovery_main (void *arg)
{
  struct array *a = arg;
  uint32_t slot = a->recovery.slot;
  const char *name = a->m[slot].io->name;
  uint64_t chunk = array_copy_unit (a);
  uint64_t nchunks = (a->volume_bytes + chunk - 1) / chunk;
  uint8_t *buf = NULL;
  int r = posix_memalign ((void **) &buf, 4096, RECOVERY_BUF) ? -ENOMEM : 0;
  uint64_t copied = 0;

  /* A full recovery copies every chunk from full_from on; below it (a
   * recovery resumed at its recovery offset), and in a bitmap-guided one,
   * only the set bits: a clear bit was not written since the member left
   * (no bit has been cleared since, by the events_cleared rule). */
  uint64_t full_from = a->recovery.full
    ? a->m[slot].recover_from * 512 / chunk : nchunks;
  uint64_t pending = 0;
  for (uint64_t c = 0; c < nchunks && r == 0; c++) {
    if (__atomic_load_n (&a->stopping, __ATOMIC_ACQUIRE)
        || state_of (a, slot) != MEMBER_RECOVERING) {
      r = -ECANCELED;
      break;
    }
    if (c < full_from && !(a->bitmap.bm && bitmap_test (a->bitmap.bm, c)))
      continue;
    uint64_t start = c * chunk;
    uint64_t end = start + chunk < a->volume_bytes ? start + chunk
      : a->volume_bytes;
    r = recover_range (a, slot, buf, start, end);
    copied++;
    __atomic_store_n (&a->recovery.pos, copied, __ATOMIC_RELAXED);
    pending += end - start;
    if (r == 0 && c >= full_from && pending >= RESYNC_CHECKPOINT_BYTES) {
      /* Checkpoint: the copies so far are durable, then the member's
       * recovery offset says so; a crash or a stop resumes here. */
      pending = 0;
      r = array_member_sync (a, slot);
      uint64_t done = end / 512;
      if (r == 0)
        r = array_write_recovery_sb (a, slot, done, false);
      if (r == 0)
        a->m[slot].recover_from = done;
    }
  }
  free (buf);
  if (r == 0)
    r = array_member_sync (a, slot);

  pthread_mutex_lock (&a->sb_lock);
  if (r == 0 && state_of (a, slot) == MEMBER_RECOVERING) {
    /* Its copy is durable: it becomes current, the others' superblocks
     * (its role active) first, then its own (SPEC §5 step 5). */
    set_state (a, slot, MEMBER_ACTIVE);
    a->m[slot].just_recovered = true;
    r = array_bump_events_locked (a);
    if (r == 0 && a->bitmap.bm && all_active (a))
      bitmap_allow_clearing (a->bitmap.bm, true);
    log_info ("%s: recovered (%" PRIu64 " of %" PRIu64 " chunks copied, %s) "
              "in %.1f s", name, copied, nchunks,
              a->recovery.full ? "full" : "from the bitmap",
              now_seconds () - a->recovery.start);
    array_notice (a, NOTICE_RECOVERY_FINISHED, name, copied);
  }
  else if (r != -ECANCELED)
    log_error ("%s: recovery failed: %s", name, strerror (-r));
  else
    log_warn ("%s: recovery stopped", name);
  a->recovery.running = false;
  pthread_cond_broadcast (&a->bg_cond);
  pthread_mutex_unlock (&a->sb_lock);
  return NULL;
}

int
array_readd_member (struct array *a, struct io_file *io, uint32_t same_slot,
                    char *msg, size_t msglen)
{
  /* Re-adding the very file a slot already has open: reuse it (a second
   * open would conflict with our own lock on it). */
  bool reuse = io == NULL;
  if (reuse) {
    if (same_slot >= a->nslots || !a->m[same_slot].io) {
      snprintf (msg, msglen, "slot %" PRIu32 " has no file", same_slot);
      return -EINVAL;
    }
    io = a->m[same_slot].io;
    /* A network member that failed: a new connection (the old one may
     * be dead without knowing it yet).  Not under an active member. */
    int st = state_of (a, same_slot);
    int c = st == MEMBER_ACTIVE || st == MEMBER_RECOVERING ? 0
      : io_reconnect (io);
    if (c < 0) {
      snprintf (msg, msglen, "%s: cannot connect (the daemon's log says "
                "why): %s", io->name, strerror (-c));
      return c;
    }
  }
  struct member_probe p;
  int r = member_probe (io, &p);
  if (r < 0 || p.status == SB_NO_MAGIC || p.status == SB_UNSUPPORTED) {
    snprintf (msg, msglen, "%s: %s", io->name, p.why);
    r = r < 0 ? r : -EINVAL;
    goto refuse_unlocked;
  }
  if (memcmp (p.sb.set_uuid, a->tmpl.set_uuid, 16) != 0) {
    snprintf (msg, msglen, "%s: member of another array", io->name);
    r = -EINVAL;
    goto refuse_unlocked;
  }
  if (sb_max_volume_for ((uint64_t) p.file_size) < a->volume_bytes) {
    snprintf (msg, msglen, "%s: file of %" PRId64 " bytes is too small for "
              "the volume (%" PRIu64 " bytes)", io->name, p.file_size,
              a->volume_bytes);
    r = -EINVAL;
    goto refuse_unlocked;
  }
  uint32_t slot = p.status == SB_VALID ? p.sb.dev_number : same_slot;
  if (slot >= a->nslots || (reuse && slot != same_slot)) {
    snprintf (msg, msglen, "%s: its superblock names slot %" PRIu32
              ", which does not fit", io->name, p.sb.dev_number);
    r = -EINVAL;
    goto refuse_unlocked;
  }

  pthread_mutex_lock (&a->sb_lock);
  int st = state_of (a, slot);
  if (a->resync.running) {
    snprintf (msg, msglen, "the resync is running; re-add when it is done "
              "(mdfusectl wait)");
    r = -EBUSY;
    goto refuse;
  }
  if (a->recovery.running) {
    snprintf (msg, msglen, "a recovery is already running; try again when "
              "it ends");
    r = -EBUSY;
    goto refuse;
  }
  if (a->check.running) {
    /* A repair could rewrite a chunk after the recovery copied it. */
    snprintf (msg, msglen, "a %s is running; re-add when it is done",
              a->check.repair ? "repair" : "check");
    r = -EBUSY;
    goto refuse;
  }
  if (st == MEMBER_ACTIVE || st == MEMBER_RECOVERING) {
    snprintf (msg, msglen, "%s: slot %" PRIu32 " is already %s", io->name,
              slot, member_state_name ((enum member_state) st));
    r = -EEXIST;
    goto refuse;
  }
  /* Split brain: it ran without an active member.  Not a member whose
   * recovery was interrupted: it never ran as current. */
  if (p.status == SB_VALID && !p.sb.recovering) {
    for (uint32_t k = 0; k < a->nslots && k < p.sb.max_dev; k++) {
      if (state_of (a, k) == MEMBER_ACTIVE
          && p.sb.dev_roles[k] == SB_ROLE_FAULTY) {
        snprintf (msg, msglen, "%s: split brain: it marks the active member "
                  "%s faulty (it ran without it); refusing", io->name,
                  a->m[k].io ? a->m[k].io->name : "?");
        r = -EINVAL;
        goto refuse;
      }
    }
  }

  bool bits_usable = false;
  if (bitmap_guards_writes (a)
      && p.status == SB_VALID) {
    struct bitmap_header h;
    bitmap_get_header (a->bitmap.bm, &h);
    bits_usable = p.sb.events >= h.events_cleared;
  }
  uint64_t from;
  bool bits = assemble_recovery_mode (&p.sb, bits_usable,
                                      a->volume_bytes / 512, &from)
    == RECOVER_BITMAP;
  if (!reuse) {
    /* A writer may still be inside a pwrite on the old file: it closes at
     * shutdown. */
    if (a->m[slot].io
        && a->nretired < sizeof a->retired / sizeof a->retired[0])
      a->retired[a->nretired++] = a->m[slot].io;
    else
      io_close (a->m[slot].io);
    a->m[slot].io = io;
  }
  a->m[slot].sb = p.sb;
  a->m[slot].sb.super_offset = sb_super_offset_for ((uint64_t) p.file_size);
  a->m[slot].sb.data_size = a->m[slot].sb.super_offset;
  if (p.status != SB_VALID)
    random_bytes (a->m[slot].sb.device_uuid, 16);
  __atomic_store_n (&a->m[slot].write_mostly,
                    (p.sb.devflags & SB_DEVFLAG_WRITE_MOSTLY) != 0,
                    __ATOMIC_RELEASE);
  a->m[slot].read_errors = a->m[slot].write_errors = 0;
  pthread_mutex_lock (&a->m[slot].sync_lock);
  a->m[slot].sync_err = 0;      /* a new start: its lost writes are recovered */
  pthread_mutex_unlock (&a->m[slot].sync_lock);
  a->m[slot].recover_from = from;
  /* Before the first copy lands, its own superblock says it is being
   * recovered: assembled alone after a crash, it is refused as not
   * current, and with the others its recovery resumes (SPEC §8).  It is
   * still faulty here: no user write reaches it yet. */
  r = array_write_recovery_sb_locked (a, slot, bits ? 0 : from, bits);
  if (r < 0) {
    snprintf (msg, msglen, "%s: cannot write its superblock: %s", io->name,
              strerror (-r));
    pthread_mutex_unlock (&a->sb_lock);
    return r;
  }
  a->recovery.slot = slot;
  a->recovery.full = !bits;
  a->recovery.pos = 0;
  uint64_t chunk = array_copy_unit (a);
  a->recovery.total = bits ? bitmap_dirty_count (a->bitmap.bm)
    : (a->volume_bytes + chunk - 1) / chunk - from * 512 / chunk;
  a->recovery.start = now_seconds ();
  a->m[slot].failed_by_admin = false;
  set_state (a, slot, MEMBER_RECOVERING);
  if (a->bitmap.bm)
    bitmap_allow_clearing (a->bitmap.bm, false);
  int e = pthread_create (&a->recovery.thread, NULL, recovery_main, a);
  if (e) {
    set_state (a, slot, MEMBER_FAULTY);
    snprintf (msg, msglen, "cannot start the recovery thread: %s",
              strerror (e));
    pthread_mutex_unlock (&a->sb_lock);
    return -e;
  }
  pthread_detach (a->recovery.thread);
  a->recovery.running = true;
  snprintf (msg, msglen, "%s: re-added to slot %" PRIu32 "; recovering %s "
            "(%" PRIu64 " chunk%s)", io->name, slot,
            bits ? "the chunks the bitmap marks" : "everything",
            a->recovery.total, plural (a->recovery.total));
  log_info ("%s", msg);
  pthread_mutex_unlock (&a->sb_lock);
  return 0;

refuse:
  pthread_mutex_unlock (&a->sb_lock);
refuse_unlocked:
  if (!reuse)
    io_close (io);
  return r;
}

int
array_slot_of_file (struct array *a, uint64_t dev, uint64_t ino)
{
  for (uint32_t s = 0; s < a->nslots; s++) {
    struct io_identity id;
    if (a->m[s].io && io_identity (a->m[s].io, &id) == 0 && id.dev == dev
        && id.ino == ino)
      return (int) s;
  }
  return -1;
}

int
array_slot_of_name (struct array *a, const char *name)
{
  char shown[1024];
  io_nbd_display_name (name, shown, sizeof shown);
  for (uint32_t s = 0; s < a->nslots; s++)
    if (a->m[s].io && strcmp (a->m[s].io->name, shown) == 0)
      return (int) s;
  return -1;
}

/* ---- -o auto_readd ----
 *
 * A member on a connection (an NBD server) that failed is re-added when
 * its server answers again: every faulty slot whose file can reconnect is
 * tried, first after 1 s, then after twice as long each time up to 60 s.
 * A re-add refused because a resync, recovery or check runs is tried
 * again later; a member failed by mdfusectl fail is left alone until an
 * operator re-adds it. */

enum { AUTO_READD_MAX_WAIT = 60 };

static void *
auto_readd_main (void *arg)
{
  struct array *a = arg;
  double next[ASSEMBLE_MAX_SLOTS] = { 0 };
  unsigned wait[ASSEMBLE_MAX_SLOTS] = { 0 };
  pthread_mutex_lock (&a->auto_readd.lock);
  while (!a->auto_readd.stop) {
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_sec += 1;
    int w = 0;
    while (!a->auto_readd.stop && w != ETIMEDOUT)
      w = pthread_cond_timedwait (&a->auto_readd.cond, &a->auto_readd.lock,
                                  &ts);
    if (a->auto_readd.stop)
      break;
    pthread_mutex_unlock (&a->auto_readd.lock);
    double now = now_seconds ();
    for (uint32_t s = 0; s < a->nslots; s++) {
      pthread_mutex_lock (&a->sb_lock);
      bool try = state_of (a, s) == MEMBER_FAULTY && a->m[s].io
        && io_can_reconnect (a->m[s].io) && !a->m[s].failed_by_admin;
      pthread_mutex_unlock (&a->sb_lock);
      if (!try) {
        wait[s] = 0;
        next[s] = 0;
        continue;
      }
      if (now < next[s])
        continue;
      if (!wait[s]) {
        /* Just failed: its first try a second from now. */
        wait[s] = 1;
        next[s] = now + 1;
        continue;
      }
      char msg[512];
      int r = array_readd_member (a, NULL, s, msg, sizeof msg);
      if (r == 0) {
        log_info ("auto re-add: %s", msg);
        wait[s] = 0;
        continue;
      }
      if (r != -EBUSY)
        log_info ("auto re-add of slot %" PRIu32 " failed (%s); next try in "
                  "%u s", s, msg, wait[s] * 2 > AUTO_READD_MAX_WAIT
                  ? AUTO_READD_MAX_WAIT : wait[s] * 2);
      wait[s] = wait[s] * 2 > AUTO_READD_MAX_WAIT ? AUTO_READD_MAX_WAIT
        : wait[s] * 2;
      next[s] = now_seconds () + wait[s];
    }
    pthread_mutex_lock (&a->auto_readd.lock);
  }
  pthread_mutex_unlock (&a->auto_readd.lock);
  return NULL;
}

int
array_auto_readd_start (struct array *a)
{
  if (!a->auto_readd.enabled || a->auto_readd.running)
    return 0;
  int e = pthread_create (&a->auto_readd.thread, NULL, auto_readd_main, a);
  if (e) {
    log_error ("cannot start the auto re-add thread: %s", strerror (e));
    return -e;
  }
  a->auto_readd.running = true;
  return 0;
}

void
array_auto_readd_stop (struct array *a)
{
  if (!a->auto_readd.running)
    return;
  pthread_mutex_lock (&a->auto_readd.lock);
  a->auto_readd.stop = true;
  pthread_cond_broadcast (&a->auto_readd.cond);
  pthread_mutex_unlock (&a->auto_readd.lock);
  pthread_join (a->auto_readd.thread, NULL);
  a->auto_readd.running = false;
}
