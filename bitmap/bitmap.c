#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap/bitmap.h"
#include "common/log.h"
#include "common/util.h"

#define PAGE 4096

struct bitmap_page {
  uint64_t set_seq;             /* bumped whenever the page changes */
  uint64_t durable_seq;         /* the set_seq an fdatasync has covered */
};

struct bitmap {
  struct io_file *io;
  uint64_t volume_bytes;
  uint64_t chunk;
  uint64_t nchunks;

  pthread_mutex_t lock;         /* guards everything below */
  pthread_cond_t cond;          /* durable_seq published, flusher free */
  struct bitmap_header hdr;
  uint8_t *buf;                 /* the whole file image */
  uint64_t file_bytes;
  uint64_t npages;
  struct bitmap_page *pages;
  uint32_t *inflight;           /* writes in flight per chunk */
  uint32_t *last_done_epoch;    /* clearing-pass epoch of the last completion */
  uint32_t epoch;
  uint64_t seq;
  uint64_t dirty;
  uint64_t flushes;
  bool flusher_busy;            /* one thread writes the file at a time */
  bool clearing_allowed;
  int failed;                   /* negative errno, sticky */

  uint8_t *scratch;             /* page images being written by the flusher */
  uint64_t *scratch_seq;
};

static inline uint64_t
page_of_chunk (uint64_t chunk)
{
  return bitmap_bit_byte (chunk) / PAGE;
}

struct bitmap *
bitmap_new (struct io_file *io, const struct bitmap_header *h,
            uint8_t *filebuf, uint64_t volume_bytes)
{
  struct bitmap *bm = calloc (1, sizeof *bm);
  if (!bm)
    return NULL;
  bm->io = io;
  bm->volume_bytes = volume_bytes;
  bm->chunk = h->chunksize;
  bm->nchunks = bitmap_chunks (volume_bytes, bm->chunk);
  bm->file_bytes = bitmap_file_size (bm->nchunks);
  bm->npages = bm->file_bytes / PAGE;
  bm->hdr = *h;
  bm->buf = filebuf;
  bm->pages = calloc (bm->npages, sizeof *bm->pages);
  bm->inflight = calloc (bm->nchunks, sizeof *bm->inflight);
  bm->last_done_epoch = calloc (bm->nchunks, sizeof *bm->last_done_epoch);
  bm->scratch = malloc (bm->file_bytes);
  bm->scratch_seq = calloc (bm->npages, sizeof *bm->scratch_seq);
  if (!bm->pages || !bm->inflight || !bm->last_done_epoch || !bm->scratch
      || !bm->scratch_seq) {
    bm->buf = NULL;             /* the caller still owns it on failure */
    bitmap_free (bm);
    errno = ENOMEM;
    return NULL;
  }
  /* Padding bits past the last chunk are never set. */
  for (uint64_t i = bm->nchunks; i < (bm->file_bytes - BITMAP_HEADER_SIZE) * 8; i++)
    bm->buf[bitmap_bit_byte (i)] &= (uint8_t) ~bitmap_bit_mask (i);
  bitmap_header_encode (&bm->hdr, bm->buf);
  bm->dirty = bitmap_count_dirty (bm->buf, bm->nchunks);
  bm->epoch = 1;
  bm->clearing_allowed = true;
  pthread_mutex_init (&bm->lock, NULL);
  pthread_cond_init (&bm->cond, NULL);
  return bm;
}

void
bitmap_free (struct bitmap *bm)
{
  if (!bm)
    return;
  pthread_mutex_destroy (&bm->lock);
  pthread_cond_destroy (&bm->cond);
  free (bm->buf);
  free (bm->pages);
  free (bm->inflight);
  free (bm->last_done_epoch);
  free (bm->scratch);
  free (bm->scratch_seq);
  free (bm);
}

uint64_t
bitmap_nchunks (const struct bitmap *bm)
{
  return bm->nchunks;
}

uint64_t
bitmap_chunk_size (const struct bitmap *bm)
{
  return bm->chunk;
}

const char *
bitmap_name (const struct bitmap *bm)
{
  return bm->io->name;
}

/* ---- the flusher ---- */

/* Become the one thread that writes the file.  Called and returns with
 * bm->lock held. */
static void
flusher_acquire (struct bitmap *bm)
{
  assert_held (&bm->lock);
  while (bm->flusher_busy)
    pthread_cond_wait (&bm->cond, &bm->lock);
  bm->flusher_busy = true;
}

static void
flusher_release (struct bitmap *bm)
{
  assert (bm->flusher_busy);
  bm->flusher_busy = false;
  pthread_cond_broadcast (&bm->cond);
}

static void
set_failed (struct bitmap *bm, int err, const char *what)
{
  if (!bm->failed) {
    log_error ("%s: bitmap %s failed: %s; the bitmap is abandoned and the "
               "next mount resyncs everything", bm->io->name, what,
               strerror (-err));
    bm->failed = err;
  }
}

/* Write every page whose set_seq is ahead of its durable_seq, fdatasync,
 * then publish durable_seq.  Must hold the flusher role; called and
 * returns with bm->lock held (it is dropped around the I/O). */
static int
flush_pages_locked (struct bitmap *bm)
{
  assert_held (&bm->lock);
  assert (bm->flusher_busy);
  if (bm->failed)
    return bm->failed;
  uint64_t n = 0;
  for (uint64_t p = 0; p < bm->npages; p++) {
    if (bm->pages[p].set_seq > bm->pages[p].durable_seq) {
      /* Copy under the lock: this image and its seq go together. */
      memcpy (bm->scratch + p * PAGE, bm->buf + p * PAGE, PAGE);
      bm->scratch_seq[p] = bm->pages[p].set_seq;
      n++;
    }
    else
      bm->scratch_seq[p] = 0;
  }
  if (n == 0)
    return 0;

  pthread_mutex_unlock (&bm->lock);
  int r = 0;
  for (uint64_t p = 0; p < bm->npages && r == 0; p++) {
    if (bm->scratch_seq[p] == 0)
      continue;
    /* Coalesce a run of consecutive pages into one write. */
    uint64_t q = p;
    while (q + 1 < bm->npages && bm->scratch_seq[q + 1] != 0)
      q++;
    r = io_pwrite_full (bm->io, bm->scratch + p * PAGE, (q - p + 1) * PAGE,
                        p * PAGE);
    p = q;
  }
  if (r == 0)
    r = io_fdatasync (bm->io);
  pthread_mutex_lock (&bm->lock);

  if (r < 0) {
    set_failed (bm, r, "write");
    return r;
  }
  bm->flushes++;
  for (uint64_t p = 0; p < bm->npages; p++)
    if (bm->scratch_seq[p] > bm->pages[p].durable_seq)
      bm->pages[p].durable_seq = bm->scratch_seq[p];
  return 0;
}

/* Become the flusher, write what changed, and let go.  Called and returns
 * with bm->lock held. */
static int
flush_now_locked (struct bitmap *bm)
{
  flusher_acquire (bm);
  int r = flush_pages_locked (bm);
  flusher_release (bm);
  return r;
}

static int
write_header_locked (struct bitmap *bm)
{
  assert_held (&bm->lock);
  assert (bm->flusher_busy);
  if (bm->failed)
    return bm->failed;
  uint8_t h[BITMAP_HEADER_SIZE];
  bitmap_header_encode (&bm->hdr, bm->buf);
  memcpy (h, bm->buf, sizeof h);
  pthread_mutex_unlock (&bm->lock);
  int r = io_pwrite_full (bm->io, h, sizeof h, 0);
  if (r == 0)
    r = io_fdatasync (bm->io);
  pthread_mutex_lock (&bm->lock);
  if (r < 0)
    set_failed (bm, r, "header write");
  else
    bm->flushes++;
  return r;
}

static void
mark_page_changed (struct bitmap *bm, uint64_t page)
{
  bm->pages[page].set_seq = ++bm->seq;
}

/* ---- the write-intent protocol ---- */

int
bitmap_start_write (struct bitmap *bm, uint64_t off, uint64_t len)
{
  if (len == 0)
    return 0;
  uint64_t first = off / bm->chunk;
  uint64_t last = (off + len - 1) / bm->chunk;
  if (last >= bm->nchunks)
    last = bm->nchunks - 1;

  pthread_mutex_lock (&bm->lock);
  /* Step 1: count the write and set its bits in memory.  The in-memory
   * bit is tested, never the on-disk one: a set in-memory bit whose page
   * is not yet durable still makes us wait in step 2. */
  uint64_t first_page = page_of_chunk (first), last_page = page_of_chunk (last);
  for (uint64_t c = first; c <= last; c++) {
    bm->inflight[c]++;
    uint8_t *byte = &bm->buf[bitmap_bit_byte (c)];
    if (!(*byte & bitmap_bit_mask (c))) {
      *byte |= bitmap_bit_mask (c);
      bm->dirty++;
      mark_page_changed (bm, page_of_chunk (c));
    }
  }

  /* Step 2: wait until every page we touched is durable at least up to
   * what we saw; the first waiter flushes for all (group commit). */
  uint64_t need[2] = { bm->pages[first_page].set_seq,
                       bm->pages[last_page].set_seq };
  int r = 0;
  for (;;) {
    bool durable = true;
    for (uint64_t p = first_page; p <= last_page; p++) {
      uint64_t want = bm->pages[p].set_seq;
      if (p == first_page)
        want = need[0];
      else if (p == last_page)
        want = need[1];
      if (bm->pages[p].durable_seq < want) {
        durable = false;
        break;
      }
    }
    if (durable)
      break;
    if (bm->failed) {
      r = bm->failed;
      break;
    }
    if (bm->flusher_busy) {
      pthread_cond_wait (&bm->cond, &bm->lock);
      continue;
    }
    r = flush_now_locked (bm);
    if (r < 0)
      break;
  }
  pthread_mutex_unlock (&bm->lock);
  return r;
}

void
bitmap_end_write (struct bitmap *bm, uint64_t off, uint64_t len)
{
  if (len == 0)
    return;
  uint64_t first = off / bm->chunk;
  uint64_t last = (off + len - 1) / bm->chunk;
  if (last >= bm->nchunks)
    last = bm->nchunks - 1;
  pthread_mutex_lock (&bm->lock);
  for (uint64_t c = first; c <= last; c++) {
    assert (bm->inflight[c] > 0);       /* every end has its start */
    bm->inflight[c]--;
    bm->last_done_epoch[c] = bm->epoch;
  }
  pthread_mutex_unlock (&bm->lock);
}

/* ---- header ---- */

void
bitmap_set_events (struct bitmap *bm, uint64_t events)
{
  pthread_mutex_lock (&bm->lock);
  bm->hdr.events = events;
  pthread_mutex_unlock (&bm->lock);
}

void
bitmap_set_events_cleared (struct bitmap *bm, uint64_t events_cleared)
{
  pthread_mutex_lock (&bm->lock);
  bm->hdr.events_cleared = events_cleared;
  pthread_mutex_unlock (&bm->lock);
}

void
bitmap_set_stale (struct bitmap *bm, bool stale)
{
  pthread_mutex_lock (&bm->lock);
  if (stale)
    bm->hdr.state |= BITMAP_STATE_STALE;
  else
    bm->hdr.state &= ~(uint32_t) BITMAP_STATE_STALE;
  pthread_mutex_unlock (&bm->lock);
}

void
bitmap_get_header (struct bitmap *bm, struct bitmap_header *h)
{
  pthread_mutex_lock (&bm->lock);
  *h = bm->hdr;
  pthread_mutex_unlock (&bm->lock);
}

int
bitmap_write_header (struct bitmap *bm)
{
  pthread_mutex_lock (&bm->lock);
  flusher_acquire (bm);
  int r = write_header_locked (bm);
  flusher_release (bm);
  pthread_mutex_unlock (&bm->lock);
  return r;
}

/* ---- resync support ---- */

int
bitmap_set_all (struct bitmap *bm)
{
  pthread_mutex_lock (&bm->lock);
  for (uint64_t c = 0; c < bm->nchunks; c++)
    bm->buf[bitmap_bit_byte (c)] |= bitmap_bit_mask (c);
  bm->dirty = bm->nchunks;
  for (uint64_t p = 0; p < bm->npages; p++)
    mark_page_changed (bm, p);
  int r = flush_now_locked (bm);
  pthread_mutex_unlock (&bm->lock);
  return r;
}

int
bitmap_clear_synced (struct bitmap *bm, uint64_t first, uint64_t n,
                     uint32_t epoch)
{
  pthread_mutex_lock (&bm->lock);
  if (!bm->clearing_allowed) {
    /* A member is faulty, missing or behind: its bits stay. */
    pthread_mutex_unlock (&bm->lock);
    return 0;
  }
  for (uint64_t c = first; c < first + n && c < bm->nchunks; c++) {
    uint8_t *byte = &bm->buf[bitmap_bit_byte (c)];
    if ((*byte & bitmap_bit_mask (c)) && bm->inflight[c] == 0
        && bm->last_done_epoch[c] < epoch) {
      *byte &= (uint8_t) ~bitmap_bit_mask (c);
      bm->dirty--;
      mark_page_changed (bm, page_of_chunk (c));
    }
  }
  int r = flush_now_locked (bm);
  pthread_mutex_unlock (&bm->lock);
  return r;
}

int
bitmap_clear_range (struct bitmap *bm, uint64_t first, uint64_t n)
{
  return bitmap_clear_synced (bm, first, n, UINT32_MAX);
}

uint32_t
bitmap_next_epoch (struct bitmap *bm)
{
  pthread_mutex_lock (&bm->lock);
  uint32_t e = ++bm->epoch;
  pthread_mutex_unlock (&bm->lock);
  return e;
}

bool
bitmap_test (struct bitmap *bm, uint64_t chunk)
{
  pthread_mutex_lock (&bm->lock);
  bool set = chunk < bm->nchunks && bitmap_bit_test (bm->buf, chunk);
  pthread_mutex_unlock (&bm->lock);
  return set;
}

/* The first set bit at or after FROM, or nchunks. */
static uint64_t
next_set_locked (const struct bitmap *bm, uint64_t from)
{
  uint64_t c = from;
  while (c < bm->nchunks) {
    uint8_t byte = bm->buf[bitmap_bit_byte (c)];
    if (byte == 0 && c % 8 == 0) {
      c += 8;                   /* skip a whole clean byte */
      continue;
    }
    if (byte & bitmap_bit_mask (c))
      break;
    c++;
  }
  return c < bm->nchunks ? c : bm->nchunks;
}

uint64_t
bitmap_next_dirty (struct bitmap *bm, uint64_t from)
{
  pthread_mutex_lock (&bm->lock);
  uint64_t c = next_set_locked (bm, from);
  pthread_mutex_unlock (&bm->lock);
  return c;
}

uint64_t
bitmap_dirty_count (struct bitmap *bm)
{
  pthread_mutex_lock (&bm->lock);
  uint64_t n = bm->dirty;
  pthread_mutex_unlock (&bm->lock);
  return n;
}

void
bitmap_allow_clearing (struct bitmap *bm, bool allowed)
{
  pthread_mutex_lock (&bm->lock);
  bm->clearing_allowed = allowed;
  pthread_mutex_unlock (&bm->lock);
}

int
bitmap_failed (struct bitmap *bm)
{
  pthread_mutex_lock (&bm->lock);
  int r = bm->failed;
  pthread_mutex_unlock (&bm->lock);
  return r;
}

uint64_t
bitmap_flush_count (struct bitmap *bm)
{
  pthread_mutex_lock (&bm->lock);
  uint64_t n = bm->flushes;
  pthread_mutex_unlock (&bm->lock);
  return n;
}

/* ---- lazy clearing (SPEC §4) ---- */

/* Chunk C's bit may go in the pass of PASS_EPOCH: nothing in flight, and
 * its last write completed before the previous pass began (idle a full
 * pass), so certainly before that pass's member sync begins. */
static bool
candidate_locked (const struct bitmap *bm, uint64_t c, uint32_t pass_epoch)
{
  return bm->inflight[c] == 0 && bm->last_done_epoch[c] + 2 <= pass_epoch;
}

static bool
any_candidate_locked (const struct bitmap *bm, uint32_t pass_epoch)
{
  for (uint64_t c = next_set_locked (bm, 0); c < bm->nchunks;
       c = next_set_locked (bm, c + 1))
    if (candidate_locked (bm, c, pass_epoch))
      return true;
  return false;
}

int64_t
bitmap_clear_pass (struct bitmap *bm, int (*sync_members) (void *arg),
                   void *arg)
{
  pthread_mutex_lock (&bm->lock);
  if (bm->failed || !bm->clearing_allowed || bm->dirty == 0) {
    int r = bm->failed;
    pthread_mutex_unlock (&bm->lock);
    return r;
  }
  /* Completions from now on carry the new epoch: they may not be covered
   * by the member sync below.  The sync runs without the flusher role, so
   * writers setting new bits meanwhile are not held up by it. */
  uint32_t pass_epoch = ++bm->epoch;
  /* With no bit idle a whole pass, the sync below would clear nothing: it
   * is skipped (under steady writes all over the volume, a member sync
   * every pass would only hold the writers up).  A write that completes
   * from now on carries the new epoch, so no candidate can appear while
   * the lock is down: this test sees every bit the loop below would. */
  if (!any_candidate_locked (bm, pass_epoch)) {
    pthread_mutex_unlock (&bm->lock);
    return 0;
  }
  pthread_mutex_unlock (&bm->lock);

  int r = sync_members (arg);

  pthread_mutex_lock (&bm->lock);
  int64_t cleared = 0;
  if (r < 0 || !bm->clearing_allowed || bm->failed) {
    pthread_mutex_unlock (&bm->lock);
    return r < 0 ? r : bm->failed;
  }
  /* Holding the flusher role from the clearing in memory to the last page
   * write keeps the three steps in order with every other file write. */
  flusher_acquire (bm);
  if (!bm->clearing_allowed || bm->failed) {
    /* Changed while we waited for the flusher role. */
    int failed = bm->failed;
    flusher_release (bm);
    pthread_mutex_unlock (&bm->lock);
    return failed;
  }
  for (uint64_t c = next_set_locked (bm, 0); c < bm->nchunks;
       c = next_set_locked (bm, c + 1)) {
    if (candidate_locked (bm, c, pass_epoch)) {
      bm->buf[bitmap_bit_byte (c)] &= (uint8_t) ~bitmap_bit_mask (c);
      bm->dirty--;
      mark_page_changed (bm, page_of_chunk (c));
      cleared++;
    }
  }
  if (cleared > 0) {
    /* events_cleared first and durable; only then the cleared pages. */
    bm->hdr.events_cleared = bm->hdr.events;
    r = write_header_locked (bm);
    if (r == 0)
      r = flush_pages_locked (bm);
  }
  flusher_release (bm);
  pthread_mutex_unlock (&bm->lock);
  return r < 0 ? r : cleared;
}
