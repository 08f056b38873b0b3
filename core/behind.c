/* Write-behind (md's, DRBD's protocol A; SPEC §8): with the bitmap's
 * write_behind = N > 0, a user write is acknowledged once every member
 * that is not write-mostly has it; the write-mostly members get it from a
 * copy of the data, here, by a few threads, at most N such writes
 * outstanding (a writer past that waits).
 *
 * What keeps it safe:
 *
 * - Invariant I (SPEC §4).  The write's bits were durable before any
 *   member was written (array_write, step 2), and its in-flight count is
 *   held until the behind write has completed: bitmap_end_write comes
 *   after it, here.  No clearing pass or resync checkpoint clears a chunk
 *   whose count is not 0, nor one whose last write completed after the
 *   member sync that would cover it.  So a crash, a power cut or a lost
 *   link while a write is behind leaves its chunk's bit set, and the next
 *   mount copies the chunk from the resync's source, which is never a
 *   write-mostly member while another current member exists (array.c,
 *   assembly): the write-mostly member gets the newer data, not the
 *   other way round.
 *
 * - Order.  Two overlapping writes W1 then W2: if W2 could reach the
 *   write-mostly member M before W1's behind write, M would end with W1's
 *   data while the others hold W2's, and no bit would say so once both
 *   completed.  So a write keeps its range lock (common/rangelock.c) until
 *   its behind write has completed; W2 waits for it before it writes
 *   anything, on any member.  The user's reply to W1 does not wait.  Resync,
 *   recovery and check copies take the same lock, so they too see M's copy
 *   complete.
 *
 * - Reads.  A write-mostly member is read only when no other active member
 *   is left (datapath.c); then a read waits until no write is behind
 *   (array_behind_wait_idle), as md does.
 *
 * - Failure.  A behind write that fails marks its member faulty (SPEC §6)
 *   from here; the bit stays set (clearing stops while a member is not
 *   active).  The user, already answered, is not told.
 *
 * - fsync of the volume (array_flush) syncs the members that are not
 *   write-mostly only: it does not wait for the writes behind.  A clean
 *   unmount (array_close) waits for every one, then syncs every member.
 *
 * What it gives up (as md and DRBD's protocol A do): if every member that
 * is not write-mostly is lost while writes are behind, the write-mostly
 * member lacks acknowledged writes. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap/bitmap.h"
#include "common/log.h"
#include "core/array_impl.h"

/* Threads writing behind (BEHIND_THREADS_MAX): enough to keep a remote
 * member busy, few enough to cost nothing when idle. */

struct behind_write {
  struct behind_write *next;
  struct rangelock_entry lk;    /* the user write's, held until done */
  uint64_t off;
  size_t len;
  bool counted;                 /* bitmap_end_write when done */
  uint32_t n;
  uint32_t slot[ASSEMBLE_MAX_SLOTS];
  struct io_file *io[ASSEMBLE_MAX_SLOTS];       /* as when it was queued */
  uint8_t data[];
};

/* Write W to its members; fail a member whose write fails. */
static void
behind_do (struct array *a, struct behind_write *w)
{
  for (uint32_t i = 0; i < w->n; i++) {
    uint32_t s = w->slot[i];
    int st = state_of (a, s);
    /* Failed meanwhile, or re-added with another file: its recovery
     * copies this range after our range lock is released. */
    if ((st != MEMBER_ACTIVE && st != MEMBER_RECOVERING)
        || __atomic_load_n (&a->m[s].io, __ATOMIC_ACQUIRE) != w->io[i])
      continue;
    int r = io_pwrite_full (w->io[i], w->data, w->len, w->off);
    if (r < 0)
      array_member_failed (a, s, r, MEMBER_IO_BEHIND_WRITE, w->off, w->len);
  }
}

static void *
behind_main (void *arg)
{
  struct array *a = arg;
  struct array_behind *b = &a->behind;
  pthread_mutex_lock (&b->lock);
  for (;;) {
    while (!b->head && !b->stop)
      pthread_cond_wait (&b->work, &b->lock);
    if (!b->head)
      break;                    /* stopping, and nothing is left */
    struct behind_write *w = b->head;
    b->head = w->next;
    if (!b->head)
      b->tail = NULL;
    pthread_mutex_unlock (&b->lock);

    behind_do (a, w);
    /* Every member has it (or is out of the array): the chunk's count
     * may drop, and an overlapping write may go on. */
    if (w->counted)
      bitmap_end_write (a->bitmap.bm, w->off, w->len);
    rangelock_release (&a->rl, &w->lk);
    free (w);

    pthread_mutex_lock (&b->lock);
    b->outstanding--;
    b->done++;
    pthread_cond_broadcast (&b->idle);
  }
  pthread_mutex_unlock (&b->lock);
  return NULL;
}

void
array_behind_init (struct array *a, uint32_t max)
{
  struct array_behind *b = &a->behind;
  pthread_mutex_init (&b->lock, NULL);
  pthread_cond_init (&b->work, NULL);
  pthread_cond_init (&b->idle, NULL);
  b->max = max;
}

int
array_behind_start (struct array *a)
{
  struct array_behind *b = &a->behind;
  if (b->max == 0 || b->nthreads > 0)
    return 0;
  /* As many threads as the write-mostly members take requests at once:
   * more would only queue on a member that serves one at a time (an NBD
   * connection), and each costs the writer a wake-up. */
  bool any_wm = false, unlimited = false;
  unsigned want = 0;
  for (uint32_t s = 0; s < a->nslots; s++) {
    if (!write_mostly_of (a, s))
      continue;
    any_wm = true;
    unsigned m = a->m[s].io ? io_max_inflight (a->m[s].io) : 0;
    if (m == 0)
      unlimited = true;
    want += m;
  }
  if (unlimited || want == 0 || want > BEHIND_THREADS_MAX)
    want = BEHIND_THREADS_MAX;
  if (want > b->max)
    want = b->max;
  for (unsigned i = 0; i < want; i++) {
    int e = pthread_create (&b->threads[i], NULL, behind_main, a);
    if (e) {
      if (b->nthreads == 0) {
        log_warn ("cannot start the write-behind threads (%s): every write "
                  "is synchronous", strerror (e));
        return 0;
      }
      break;
    }
    b->nthreads++;
  }
  __atomic_store_n (&b->running, true, __ATOMIC_RELEASE);
  log_info ("write-behind: up to %" PRIu32 " writes behind on the "
            "write-mostly members%s", b->max,
            any_wm ? "" : " (none is write-mostly now: every write is "
            "synchronous)");
  return 0;
}

bool
array_behind_queue (struct array *a, struct rangelock_entry *lk,
                    bool counted, const uint32_t *slots, uint32_t n,
                    const void *buf, size_t len, uint64_t off)
{
  struct array_behind *b = &a->behind;
  struct behind_write *w = malloc (sizeof *w + len);
  if (!w)
    return false;               /* the caller writes it now */
  memset (w, 0, sizeof *w);
  w->off = off;
  w->len = len;
  w->counted = counted;
  w->n = n;
  for (uint32_t i = 0; i < n; i++) {
    w->slot[i] = slots[i];
    w->io[i] = a->m[slots[i]].io;
  }
  memcpy (w->data, buf, len);

  pthread_mutex_lock (&b->lock);
  /* At most max behind: this writer waits for one to complete.  It holds
   * its range lock meanwhile, which no behind write needs. */
  while (b->outstanding >= b->max)
    pthread_cond_wait (&b->idle, &b->lock);
  b->outstanding++;
  /* The lock entry moves into W: rangelock keeps the entry's address, so
   * it is taken over in place of the caller's. */
  rangelock_move (&a->rl, lk, &w->lk);
  if (b->tail)
    b->tail->next = w;
  else
    b->head = w;
  b->tail = w;
  pthread_cond_signal (&b->work);
  pthread_mutex_unlock (&b->lock);
  return true;
}

bool
array_behind_active (struct array *a)
{
  return __atomic_load_n (&a->behind.running, __ATOMIC_ACQUIRE);
}

uint32_t
array_behind_outstanding (struct array *a)
{
  pthread_mutex_lock (&a->behind.lock);
  uint32_t n = a->behind.outstanding;
  pthread_mutex_unlock (&a->behind.lock);
  return n;
}

void
array_behind_wait_idle (struct array *a)
{
  struct array_behind *b = &a->behind;
  if (!array_behind_active (a))
    return;
  pthread_mutex_lock (&b->lock);
  while (b->outstanding > 0)
    pthread_cond_wait (&b->idle, &b->lock);
  pthread_mutex_unlock (&b->lock);
}

void
array_behind_stop (struct array *a)
{
  struct array_behind *b = &a->behind;
  if (b->nthreads == 0)
    return;
  pthread_mutex_lock (&b->lock);
  b->stop = true;
  pthread_cond_broadcast (&b->work);
  pthread_mutex_unlock (&b->lock);
  /* Each thread ends once the queue is empty: every write is done. */
  for (unsigned i = 0; i < b->nthreads; i++)
    pthread_join (b->threads[i], NULL);
  b->nthreads = 0;
  __atomic_store_n (&b->running, false, __ATOMIC_RELEASE);
}

void
array_behind_destroy (struct array *a)
{
  struct array_behind *b = &a->behind;
  pthread_mutex_destroy (&b->lock);
  pthread_cond_destroy (&b->work);
  pthread_cond_destroy (&b->idle);
}
