/* Online check and repair (md's check/repair): read every chunk from every
 * active member while the volume stays in use, compare xxh3-128 digests,
 * count mismatches, and on repair rewrite them from the first member or,
 * with three or more members, from the majority. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include "core/array_impl.h"
#include "common/log.h"
#include "common/throttle.h"
#include "common/util.h"

#define CHECK_PIECE (1u << 20)

static bool
same_digest (XXH128_hash_t x, XXH128_hash_t y)
{
  return XXH128_isEqual (x, y);
}

/* The member whose data the others take: the majority digest when three
 * or more agree on one, else the first active member that is not
 * write-mostly (SPEC §8: one may lack writes still behind; the range lock
 * the check holds waits for them, but it is also the one the user reads
 * least). */
static int
choose_source (struct array *a, const bool *have, const XXH128_hash_t *d,
               uint32_t nactive)
{
  int first = -1, best = -1;
  uint32_t best_votes = 0;
  for (uint32_t s = 0; s < a->nslots; s++) {
    if (!have[s])
      continue;
    if (first < 0 || (write_mostly_of (a, (uint32_t) first)
                       && !write_mostly_of (a, s)))
      first = (int) s;
    uint32_t votes = 0;
    for (uint32_t t = 0; t < a->nslots; t++)
      if (have[t] && same_digest (d[s], d[t]))
        votes++;
    if (votes > best_votes) {
      best_votes = votes;
      best = (int) s;
    }
  }
  if (nactive >= 3 && best_votes * 2 > nactive)
    return best;
  return first;
}

static bool
any_behind (struct array *a)
{
  for (uint32_t s = 0; s < a->nslots; s++)
    if (state_of (a, s) == MEMBER_RECOVERING)
      return true;
  return false;
}

/* Rewrite the members whose piece [OFF, OFF+LEN) differs from the
 * source's, as a user write would be made (SPEC §4): the superblocks say
 * the members may differ, the bits are durable (or the bitmap is durably
 * abandoned) first, and a member that fails is out of the array on disk
 * before the repair goes on.  0, or a negative errno that ends the repair
 * (then nothing unsafe was written). */
static int
repair_piece (struct array *a, const bool *have, const XXH128_hash_t *d,
              uint32_t nactive, uint8_t *const *bufs, uint64_t off,
              size_t len)
{
  int src = choose_source (a, have, d, nactive);
  snprintf (a->check.source, sizeof a->check.source, "%s",
            nactive >= 3 ? "majority" : "first member");
  int r = array_mark_active (a);
  if (r < 0)
    return r;
  bool counted = bitmap_guards_writes (a);
  if (counted && bitmap_start_write (a->bitmap.bm, off, len) < 0)
    r = array_bitmap_failed (a);
  if (r == 0) {
    bool target[ASSEMBLE_MAX_SLOTS] = { 0 }, written[ASSEMBLE_MAX_SLOTS];
    for (uint32_t s = 0; s < a->nslots; s++)
      target[s] = have[s] && (int) s != src && !same_digest (d[s], d[src])
        && state_of (a, s) == MEMBER_ACTIVE;    /* not failed meanwhile */
    r = array_write_targets (a, target, bufs[src], len, off,
                             MEMBER_IO_REPAIR_WRITE, written);
    for (uint32_t s = 0; s < a->nslots; s++)
      if (target[s] && written[s])
        __atomic_add_fetch (&a->check.repaired, 1, __ATOMIC_RELAXED);
  }
  if (counted)
    bitmap_end_write (a->bitmap.bm, off, len);
  return r;
}

static void *
check_main (void *arg)
{
  struct array *a = arg;
  uint8_t *bufs[ASSEMBLE_MAX_SLOTS] = { 0 };
  int r = 0;
  for (uint32_t s = 0; s < a->nslots && r == 0; s++)
    if (posix_memalign ((void **) &bufs[s], 4096, CHECK_PIECE) != 0)
      r = -ENOMEM;
  uint64_t chunk = array_copy_unit (a);
  uint64_t piece = chunk < CHECK_PIECE ? chunk : CHECK_PIECE;
  uint64_t last_bad_chunk = UINT64_MAX;
  uint64_t done = 0;

  for (uint64_t off = 0; off < a->volume_bytes && r == 0; off += piece) {
    if (__atomic_load_n (&a->stopping, __ATOMIC_ACQUIRE)) {
      r = -ECANCELED;
      break;
    }
    size_t len = (size_t) (a->volume_bytes - off < piece
                           ? a->volume_bytes - off : piece);
    struct rangelock_entry lk;
    rangelock_acquire (&a->rl, &lk, off, off + len);
    bool have[ASSEMBLE_MAX_SLOTS] = { 0 };
    XXH128_hash_t d[ASSEMBLE_MAX_SLOTS];
    uint32_t nactive = 0;
    for (uint32_t s = 0; s < a->nslots; s++) {
      if (state_of (a, s) != MEMBER_ACTIVE)
        continue;
      int e = io_pread_full (a->m[s].io, bufs[s], len, off);
      if (e < 0) {
        array_member_failed (a, s, e, MEMBER_IO_CHECK_READ, off, len);
        continue;
      }
      d[s] = XXH3_128bits (bufs[s], len);
      have[s] = true;
      nactive++;
    }
    bool mismatch = false;
    int ref = -1;
    for (uint32_t s = 0; s < a->nslots; s++) {
      if (!have[s])
        continue;
      if (ref < 0)
        ref = (int) s;
      else if (!same_digest (d[s], d[ref]))
        mismatch = true;
    }
    if (mismatch) {
      uint64_t c = off / chunk;
      if (c != last_bad_chunk) {
        __atomic_add_fetch (&a->check.mismatches, 1, __ATOMIC_RELAXED);
        last_bad_chunk = c;
        log_warn ("check: chunk %" PRIu64 " (bytes %" PRIu64 "..%" PRIu64
                  ") differs between members", c, c * chunk,
                  (c + 1) * chunk - 1);
      }
      if (a->check.repair)
        r = repair_piece (a, have, d, nactive, bufs, off, len);
    }
    rangelock_release (&a->rl, &lk);
    done += len;
    __atomic_store_n (&a->check.pos, done, __ATOMIC_RELAXED);
    throttle_wait (&a->check.throttle, done, a->check.rate, &a->stopping);
  }
  if (r == 0 && a->check.repair)
    r = array_flush (a);
  for (uint32_t s = 0; s < a->nslots; s++)
    free (bufs[s]);

  pthread_mutex_lock (&a->sb_lock);
  if (r == 0) {
    log_info ("%s finished: %" PRIu64 " mismatched chunk%s%s in %.1f s",
              a->check.repair ? "repair" : "check", a->check.mismatches,
              plural (a->check.mismatches), a->check.repair ? " rewritten" : "",
              now_seconds () - a->check.start);
    array_notice (a, a->check.mismatches ? NOTICE_CHECK_MISMATCHES
                  : NOTICE_CHECK_FINISHED, NULL, a->check.mismatches);
  }
  else
    log_warn ("%s stopped: %s", a->check.repair ? "repair" : "check",
              strerror (-r));
  a->check.running = false;
  a->check.done_once = true;
  pthread_cond_broadcast (&a->bg_cond);
  pthread_mutex_unlock (&a->sb_lock);
  return NULL;
}

int
array_check_start (struct array *a, bool repair, uint64_t rate, char *msg,
                   size_t msglen)
{
  pthread_mutex_lock (&a->sb_lock);
  int r = 0;
  if (a->check.running) {
    snprintf (msg, msglen, "a check is already running");
    r = -EBUSY;
  }
  else if (a->resync.running) {
    /* A repair could rewrite a chunk after the resync copied it, and a
     * check would report what the resync is about to make the same. */
    snprintf (msg, msglen, "the resync is running; check when it is done "
              "(mdfusectl wait)");
    r = -EBUSY;
  }
  else if (a->recovery.running || any_behind (a)) {
    /* A repair could rewrite a chunk after the recovery copied it. */
    snprintf (msg, msglen, "a member is being recovered; check when it is "
              "done");
    r = -EBUSY;
  }
  else if (active_count (a) < 2) {
    snprintf (msg, msglen, "fewer than two active members: nothing to "
              "compare");
    r = -EINVAL;
  }
  else {
    a->check.repair = repair;
    a->check.rate = rate;
    a->check.pos = 0;
    a->check.total = a->volume_bytes;
    a->check.mismatches = a->check.repaired = 0;
    a->check.source[0] = '\0';
    a->check.start = now_seconds ();
    throttle_set (&a->check.throttle, 0, rate);
    int e = pthread_create (&a->check.thread, NULL, check_main, a);
    if (e) {
      snprintf (msg, msglen, "cannot start the check thread: %s",
                strerror (e));
      r = -e;
    }
    else {
      pthread_detach (a->check.thread);
      a->check.running = true;
      snprintf (msg, msglen, "%s started", repair ? "repair" : "check");
      log_info ("%s", msg);
    }
  }
  pthread_mutex_unlock (&a->sb_lock);
  return r;
}
