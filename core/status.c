/* The array's state at one moment, for the daemon to show (as text like
 * /proc/mdstat, or JSON: fuse/status.c).  No formatting here. */
#include <config.h>

#include <stdio.h>
#include <string.h>

#include "core/array_impl.h"
#include "common/util.h"

const char *
array_state_name (enum array_state st)
{
  switch (st) {
  case ARRAY_ACTIVE: return "active";
  case ARRAY_DEGRADED: return "degraded";
  case ARRAY_FAILED: return "failed";
  }
  return "unknown";
}

static uint64_t
rate_of (uint64_t bytes, double seconds)
{
  return seconds > 0 ? (uint64_t) ((double) bytes / seconds) : 0;
}

int
array_get_status (struct array *a, struct array_status *st)
{
  memset (st, 0, sizeof *st);
  double now = now_seconds ();
  pthread_mutex_lock (&a->sb_lock);
  st->size = a->volume_bytes;
  st->events = a->events;
  memcpy (st->uuid, a->tmpl.set_uuid, sizeof st->uuid);
  snprintf (st->name, sizeof st->name, "%s", a->tmpl.set_name);
  st->raid_disks = a->nslots;
  for (uint32_t k = 0; k < a->nslots; k++) {
    struct array_member_status *m = &st->members[k];
    m->state = (enum member_state) state_of (a, k);
    snprintf (m->path, sizeof m->path, "%s",
              a->m[k].io ? a->m[k].io->name : "(missing)");
    m->write_mostly = a->m[k].io && write_mostly_of (a, k);
    m->read_errors = __atomic_load_n (&a->m[k].read_errors, __ATOMIC_RELAXED);
    m->write_errors = a->m[k].write_errors;
    if (a->m[k].io && io_can_reconnect (a->m[k].io)) {
      m->networked = true;
      m->rtt_ns = io_rtt_ns (a->m[k].io);
    }
    if (m->state == MEMBER_ACTIVE)
      st->active++;
  }
  st->state = st->active == a->nslots ? ARRAY_ACTIVE
    : st->active ? ARRAY_DEGRADED : ARRAY_FAILED;

  st->write_behind.max = a->behind.max;
  pthread_mutex_lock (&a->behind.lock);
  st->write_behind.outstanding = a->behind.outstanding;
  st->write_behind.done = a->behind.done;
  pthread_mutex_unlock (&a->behind.lock);
  if (a->bitmap.bm) {
    st->bitmap.present = true;
    st->bitmap.in_use = bitmap_guards_writes (a);
    snprintf (st->bitmap.path, sizeof st->bitmap.path, "%s",
              bitmap_name (a->bitmap.bm));
    st->bitmap.chunk_size = bitmap_chunk_size (a->bitmap.bm);
    st->bitmap.chunks = bitmap_nchunks (a->bitmap.bm);
    st->bitmap.dirty = bitmap_dirty_count (a->bitmap.bm);
  }

  if (a->recovery.running) {
    st->recovery.running = true;
    st->recovery.slot = a->recovery.slot;
    st->recovery.mode = a->recovery.full ? RECOVER_FULL : RECOVER_BITMAP;
    st->recovery.done_chunks = __atomic_load_n (&a->recovery.pos,
                                                __ATOMIC_RELAXED);
    st->recovery.total_chunks = a->recovery.total;
    if (st->recovery.done_chunks > st->recovery.total_chunks)
      st->recovery.total_chunks = st->recovery.done_chunks;
    st->recovery.chunk_size = array_copy_unit (a);
    st->recovery.seconds = now - a->recovery.start;
    st->recovery.rate = rate_of (st->recovery.done_chunks
                                 * st->recovery.chunk_size,
                                 st->recovery.seconds);
  }

  st->check.running = a->check.running;
  st->check.finished = a->check.done_once;
  st->check.repair = a->check.repair;
  st->check.done_bytes = __atomic_load_n (&a->check.pos, __ATOMIC_RELAXED);
  st->check.total_bytes = a->check.total;
  st->check.mismatches = __atomic_load_n (&a->check.mismatches,
                                          __ATOMIC_RELAXED);
  st->check.repaired = __atomic_load_n (&a->check.repaired, __ATOMIC_RELAXED);
  snprintf (st->check.source, sizeof st->check.source, "%s", a->check.source);
  if (st->check.running) {
    st->check.seconds = now - a->check.start;
    st->check.rate = rate_of (st->check.done_bytes, st->check.seconds);
  }
  st->check.rate_limit = a->check.rate;

  const struct resync_job *j = &a->resync;
  st->resync.rate_min = __atomic_load_n (&j->rate_min, __ATOMIC_RELAXED);
  st->resync.rate_max = __atomic_load_n (&j->rate_max, __ATOMIC_RELAXED);
  if (j->running) {
    st->resync.running = true;
    st->resync.full = j->stats.full;
    st->resync.done_chunks = __atomic_load_n (&j->copied, __ATOMIC_RELAXED);
    st->resync.total_chunks = j->plan.total;
    if (st->resync.done_chunks > st->resync.total_chunks)
      st->resync.total_chunks = st->resync.done_chunks;
    st->resync.chunk_size = j->chunk;
    st->resync.differ_chunks = __atomic_load_n (&j->need_count,
                                                __ATOMIC_RELAXED);
    st->resync.seconds = now - j->start;
    st->resync.rate = rate_of (st->resync.done_chunks * j->chunk,
                               st->resync.seconds);
  }
  else if (!j->done && j->need)
    st->resync_error = j->result < 0 ? j->result : -EIO;

  st->last_resync = a->last_resync;
  pthread_mutex_unlock (&a->sb_lock);
  array_notices_copy (a, st);
  return 0;
}
