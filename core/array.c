/* The array's life: assembly from the mount decision (SPEC §5 steps
 * 1-4), the lazy clearing thread (SPEC §4), clean shutdown (SPEC §5). */
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

/* ---- assembly ---- */

static int
read_bitmap_header (struct io_file *io, struct assemble_bitmap_in *in)
{
  in->used = true;
  in->name = io->name;
  in->file_size = io_size (io);
  if (in->file_size < 0) {
    log_error ("%s: %s", io->name, strerror ((int) -in->file_size));
    return (int) in->file_size;
  }
  if (in->file_size < BITMAP_HEADER_SIZE) {
    log_error ("%s: file is %" PRId64 " bytes, too small to be a bitmap",
               io->name, in->file_size);
    return -EINVAL;
  }
  uint8_t hdr[BITMAP_HEADER_SIZE];
  int r = io_pread_full (io, hdr, sizeof hdr, 0);
  if (r < 0) {
    log_error ("%s: cannot read the bitmap header: %s", io->name,
               strerror (-r));
    return r;
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
  pthread_mutex_init (&a->notices.lock, NULL);
  pthread_mutex_init (&a->auto_readd.lock, NULL);
  pthread_cond_init (&a->auto_readd.cond, NULL);
  a->auto_readd.enabled = opts->auto_readd;
  random_bytes (&a->notices.instance, sizeof a->notices.instance);
  a->notices.instance &= (1ull << 53) - 1;     /* exact in any JSON reader */
  pthread_mutex_init (&a->clearer.lock, NULL);
  pthread_cond_init (&a->clearer.cond, NULL);
  pthread_cond_init (&a->bg_cond, NULL);
  for (uint32_t s = 0; s < ASSEMBLE_MAX_SLOTS; s++)
    pthread_mutex_init (&a->m[s].sync_lock, NULL);
  rangelock_init (&a->rl);
  array_behind_init (a, 0);
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
    m->write_mostly = (m->sb.devflags & SB_DEVFLAG_WRITE_MOSTLY) != 0;
  }
  /* The source of the resync and of reads of chunks it has not copied:
   * the first current member that is not write-mostly.  Under
   * write-behind a write-mostly member may lack acknowledged writes, and
   * a resync from it would copy its old data over them (SPEC §8). */
  a->reference = first_reader (a, 0);
  if (a->reference >= a->nslots)
    a->reference = a->tmpl.dev_number;
  if (active_count (a) < a->nslots) {
    char which[256] = "";
    size_t used = 0;
    for (uint32_t s = 0; s < a->nslots && used < sizeof which; s++) {
      enum member_state st = (enum member_state) state_of (a, s);
      if (st == MEMBER_ACTIVE)
        continue;
      int w = a->m[s].io
        ? snprintf (which + used, sizeof which - used, "%s%s %s",
                    used ? ", " : "", a->m[s].io->name, member_state_name (st))
        : snprintf (which + used, sizeof which - used, "%sslot %" PRIu32
                    " %s", used ? ", " : "", s, member_state_name (st));
      used += w > 0 ? (size_t) w : 0;
    }
    log_warn_loud ("started degraded, with %" PRIu32 " of %" PRIu32 " members "
                   "active (%s)", active_count (a), a->nslots, which);
    array_notice (a, NOTICE_DEGRADED_ARRAY, which, active_count (a));
  }

  a->clearer.sleep = BITMAP_DEFAULT_DAEMON_SLEEP;
  a->resync.rate_min = ARRAY_RESYNC_RATE_MIN;
  a->resync.rate_max = ARRAY_RESYNC_RATE_MAX;
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
    a->behind.max = h.write_behind;
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
      r = array_bitmap_failed_locked (a);
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
  /* During the resync only its checkpoints clear bits: a pass here could
   * clear a chunk it has not copied yet. */
  if (!bitmap_guards_writes (a) || !all_active (a)
      || __atomic_load_n (&a->resync.running, __ATOMIC_ACQUIRE))
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
  int r = array_auto_readd_start (a);
  if (r < 0)
    return r;
  if (!a->bitmap.bm)
    return 0;
  array_behind_start (a);
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
  array_auto_readd_stop (a);
  if (a->clearer.running) {
    pthread_mutex_lock (&a->clearer.lock);
    a->clearer.stop = true;
    pthread_cond_broadcast (&a->clearer.cond);
    pthread_mutex_unlock (&a->clearer.lock);
    pthread_join (a->clearer.thread, NULL);
    a->clearer.running = false;
  }

  /* Background resync, recovery and check end first: they hold ranges
   * and may write superblocks.  A resync stops at its next chunk, its
   * last checkpoint durable. */
  pthread_mutex_lock (&a->sb_lock);
  __atomic_store_n (&a->stopping, true, __ATOMIC_RELEASE);
  while (a->recovery.running || a->check.running)
    pthread_cond_wait (&a->bg_cond, &a->sb_lock);
  pthread_mutex_unlock (&a->sb_lock);
  array_resync_wait (a, NULL);
  /* Every write behind reaches its member (SPEC §8: a clean unmount
   * leaves every member with every write). */
  array_behind_stop (a);
  /* Where the resync did not reach, the members may still differ: those
   * bits stay, and without a bitmap resync_offset says where to resume. */
  bool whole = a->resync.done || a->resync.need == NULL;

  int r = 0;
  if (clean && active_count (a) > 0) {
    /* In-flight writes are finished (the caller stopped serving), the
     * writes behind too: every member is synced. */
    r = array_flush_all (a);
    pthread_mutex_lock (&a->sb_lock);
    if (r == 0 && bitmap_in_use (a) && all_active (a)) {
      /* Every member is durable and whole: header first, then the
       * cleared pages (SPEC §5, clean unmount); only where the resync
       * made the members the same, if it did not end. */
      bitmap_set_events_cleared (a->bitmap.bm, a->events + 1);
      r = bitmap_write_header (a->bitmap.bm);
      for (uint64_t c = 0; r == 0 && c < bitmap_nchunks (a->bitmap.bm);) {
        uint64_t end = c;
        while (end < bitmap_nchunks (a->bitmap.bm)
               && (whole || !a->resync.need[end]))
          end++;
        if (end > c)
          r = bitmap_clear_range (a->bitmap.bm, c, end - c);
        c = end + 1;
      }
      if (r < 0) {
        set_bitmap_use (a, BITMAP_FAILING);
        r = 0;                  /* the events bump below makes it stale */
      }
    }
    if (r == 0) {
      if (whole || a->bitmap.bm)
        a->resync_offset = SB_RESYNC_CLEAN;
      else {                    /* no bitmap: resume where it stopped */
        uint64_t at = a->resync.pos * a->resync.chunk / 512;
        a->resync_offset = at > a->resync_from ? at : a->resync_from;
      }
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
  free (a->resync.need);
  rangelock_destroy (&a->rl);
  array_behind_destroy (a);
  pthread_mutex_destroy (&a->sb_lock);
  pthread_mutex_destroy (&a->notices.lock);
  pthread_mutex_destroy (&a->auto_readd.lock);
  pthread_cond_destroy (&a->auto_readd.cond);
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
