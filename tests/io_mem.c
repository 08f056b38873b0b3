#include <config.h>

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/io_mem.h"

/* Locks: a buffer's lock before its log's, never the other way. */

struct mem_buf {
  pthread_mutex_t lock;
  pthread_cond_t unheld;        /* hold went false */
  bool hold;                    /* pwrites wait (io_mem_hold_pwrites) */
  unsigned char *data;
  size_t len;
  int refs;                     /* io_files on it, and its log */
  struct io_mem_stats stats;
  struct io_log *log;           /* or NULL */
  int index;                    /* in the log */
  unsigned char *durable;       /* with a log: as of the last fdatasync */
  size_t durable_len;
};

struct io_log {
  pthread_mutex_t lock;
  bool with_data;
  int nfiles;
  struct mem_buf *files[IO_LOG_MAX_FILES];
  uint8_t *initial[IO_LOG_MAX_FILES];   /* images when recording began */
  size_t initial_len[IO_LOG_MAX_FILES];
  struct io_log_entry *ops;
  size_t nops, cap;
};

static const struct io_ops mem_ops;

static void *
xmemdup (const void *p, size_t n)
{
  void *q = malloc (n ? n : 1);
  if (!q)
    abort ();
  if (n)
    memcpy (q, p, n);
  return q;
}

/* Sets *LEN to WANT, zero-filling what grows; -ENOMEM. */
static int
resize (uint8_t **buf, size_t *len, size_t want)
{
  if (want > *len) {
    uint8_t *p = realloc (*buf, want);
    if (!p)
      return -ENOMEM;
    memset (p + *len, 0, want - *len);
    *buf = p;
  }
  *len = want;
  return 0;
}

static void
grow_to (uint8_t **buf, size_t *len, size_t want)
{
  if (want > *len && resize (buf, len, want) < 0)
    abort ();
}

/* ================= the log ================= */

static void
log_append (struct io_log *log, struct io_log_entry e)
{
  pthread_mutex_lock (&log->lock);
  if (log->nops == log->cap) {
    log->cap = log->cap ? log->cap * 2 : 1024;
    log->ops = realloc (log->ops, log->cap * sizeof *log->ops);
    if (!log->ops)
      abort ();
  }
  log->ops[log->nops++] = e;
  pthread_mutex_unlock (&log->lock);
}

static void
log_free_entries (struct io_log *log)
{
  for (size_t k = 0; k < log->nops; k++)
    free (log->ops[k].data);
  log->nops = 0;
}

struct io_log *
io_log_new (bool with_data)
{
  struct io_log *log = calloc (1, sizeof *log);
  if (!log)
    abort ();
  pthread_mutex_init (&log->lock, NULL);
  log->with_data = with_data;
  return log;
}

static void buf_unref (struct mem_buf *m);

void
io_log_free (struct io_log *log)
{
  if (!log)
    return;
  for (int i = 0; i < log->nfiles; i++) {
    struct mem_buf *m = log->files[i];
    pthread_mutex_lock (&m->lock);
    m->log = NULL;
    free (m->durable);
    m->durable = NULL;
    m->durable_len = 0;
    pthread_mutex_unlock (&m->lock);
    buf_unref (m);
    free (log->initial[i]);
  }
  log_free_entries (log);
  free (log->ops);
  pthread_mutex_destroy (&log->lock);
  free (log);
}

int
io_log_attach (struct io_log *log, struct io_file *f)
{
  assert (f->ops == &mem_ops);
  struct mem_buf *m = f->priv;
  pthread_mutex_lock (&m->lock);
  assert (m->log == NULL);
  pthread_mutex_lock (&log->lock);
  assert (log->nfiles < IO_LOG_MAX_FILES);
  int i = log->nfiles++;
  log->files[i] = m;
  log->initial[i] = xmemdup (m->data, m->len);
  log->initial_len[i] = m->len;
  pthread_mutex_unlock (&log->lock);
  m->refs++;
  m->log = log;
  m->index = i;
  m->durable = xmemdup (m->data, m->len);
  m->durable_len = m->len;
  pthread_mutex_unlock (&m->lock);
  return i;
}

void
io_log_mark (struct io_log *log, int mark, uint64_t off, uint64_t len,
             const void *data)
{
  log_append (log, (struct io_log_entry) {
    .kind = IO_LOG_MARK, .file = -1, .mark = mark, .off = off, .len = len,
    .data = data ? xmemdup (data, len) : NULL });
}

void
io_log_reset (struct io_log *log)
{
  for (int i = 0; i < log->nfiles; i++) {
    struct mem_buf *m = log->files[i];
    pthread_mutex_lock (&m->lock);
    free (log->initial[i]);
    log->initial[i] = xmemdup (m->data, m->len);
    log->initial_len[i] = m->len;
    pthread_mutex_unlock (&m->lock);
  }
  pthread_mutex_lock (&log->lock);
  log_free_entries (log);
  pthread_mutex_unlock (&log->lock);
}

size_t
io_log_count (struct io_log *log)
{
  pthread_mutex_lock (&log->lock);
  size_t n = log->nops;
  pthread_mutex_unlock (&log->lock);
  return n;
}

const struct io_log_entry *
io_log_get (struct io_log *log, size_t i)
{
  pthread_mutex_lock (&log->lock);
  assert (i < log->nops);
  const struct io_log_entry *e = &log->ops[i];
  pthread_mutex_unlock (&log->lock);
  return e;
}

int
io_log_nfiles (const struct io_log *log)
{
  return log->nfiles;
}

/* ================= files ================= */

static ssize_t
mem_pread (struct io_file *f, void *buf, size_t len, uint64_t off)
{
  struct mem_buf *m = f->priv;
  pthread_mutex_lock (&m->lock);
  m->stats.preads++;
  if (m->stats.fail_pread) {
    pthread_mutex_unlock (&m->lock);
    return m->stats.fail_pread;
  }
  ssize_t n = 0;
  if (off < m->len) {
    n = (ssize_t) (m->len - off < len ? m->len - off : len);
    memcpy (buf, m->data + off, (size_t) n);
  }
  pthread_mutex_unlock (&m->lock);
  return n;
}

/* The error an armed fault gives this call, or 0 (see io_mem_stats). */
static int
take_fault (int *fail, unsigned long *after, unsigned long *times)
{
  if (*fail == 0)
    return 0;
  if (*after > 0) {
    (*after)--;
    return 0;
  }
  int r = *fail;
  if (*times > 0 && --*times == 0)
    *fail = 0;
  return r;
}

static ssize_t
mem_pwrite (struct io_file *f, const void *buf, size_t len, uint64_t off)
{
  struct mem_buf *m = f->priv;
  pthread_mutex_lock (&m->lock);
  while (m->hold)
    pthread_cond_wait (&m->unheld, &m->lock);
  m->stats.pwrites++;
  int r = take_fault (&m->stats.fail_pwrite, &m->stats.fail_pwrite_after,
                      &m->stats.fail_pwrite_times);
  if (r == 0 && (size_t) off + len > m->len)
    r = resize (&m->data, &m->len, (size_t) off + len);
  if (r == 0) {
    memcpy (m->data + off, buf, len);
    if (m->log && len > 0)
      log_append (m->log, (struct io_log_entry) {
        .kind = IO_LOG_WRITE, .file = m->index, .off = off, .len = len,
        .data = m->log->with_data ? xmemdup (buf, len) : NULL });
  }
  pthread_mutex_unlock (&m->lock);
  return r < 0 ? r : (ssize_t) len;
}

static void
sleep_ms (unsigned ms)
{
  struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
  while (nanosleep (&ts, &ts) != 0)
    ;
}

static int
mem_fdatasync (struct io_file *f)
{
  struct mem_buf *m = f->priv;
  pthread_mutex_lock (&m->lock);
  unsigned delay = m->stats.sync_delay_ms;
  pthread_mutex_unlock (&m->lock);
  if (delay)
    sleep_ms (delay);
  pthread_mutex_lock (&m->lock);
  m->stats.syncs++;
  int r = take_fault (&m->stats.fail_fdatasync,
                      &m->stats.fail_fdatasync_after,
                      &m->stats.fail_fdatasync_times);
  if (r == 0 && m->log) {
    free (m->durable);
    m->durable = xmemdup (m->data, m->len);
    m->durable_len = m->len;
    log_append (m->log, (struct io_log_entry) {
      .kind = IO_LOG_SYNC, .file = m->index });
  }
  pthread_mutex_unlock (&m->lock);
  return r;
}

static int64_t
mem_size (struct io_file *f)
{
  struct mem_buf *m = f->priv;
  pthread_mutex_lock (&m->lock);
  int64_t n = (int64_t) m->len;
  pthread_mutex_unlock (&m->lock);
  return n;
}

static void
buf_unref (struct mem_buf *m)
{
  pthread_mutex_lock (&m->lock);
  int left = --m->refs;
  pthread_mutex_unlock (&m->lock);
  if (left == 0) {
    pthread_mutex_destroy (&m->lock);
    free (m->data);
    free (m->durable);
    free (m);
  }
}

static void
mem_close (struct io_file *f)
{
  buf_unref (f->priv);
  free (f->name);
  free (f);
}

static int
mem_truncate (struct io_file *f, uint64_t size)
{
  return io_mem_truncate (f, (size_t) size);
}

/* Every in-memory file is its own "filesystem": dev 0, the buffer's
 * address as the inode, shared by io_mem_reopen's second io_file. */
static int
mem_identity (struct io_file *f, struct io_identity *id)
{
  id->dev = 0;
  id->ino = (uint64_t) (uintptr_t) f->priv;
  return 0;
}

static const struct io_ops mem_ops = {
  .pread = mem_pread,
  .pwrite = mem_pwrite,
  .fdatasync = mem_fdatasync,
  .size = mem_size,
  .close = mem_close,
  .truncate = mem_truncate,
  .identity = mem_identity,
};

static struct io_file *
mem_wrap (struct mem_buf *m, const char *name)
{
  struct io_file *f = calloc (1, sizeof *f);
  if (!f)
    return NULL;
  f->name = strdup (name);
  f->ops = &mem_ops;
  f->priv = m;
  m->refs++;
  return f;
}

struct io_file *
io_mem_new (const char *name)
{
  struct mem_buf *m = calloc (1, sizeof *m);
  if (!m)
    return NULL;
  pthread_mutex_init (&m->lock, NULL);
  pthread_cond_init (&m->unheld, NULL);
  struct io_file *f = mem_wrap (m, name);
  if (!f) {
    pthread_mutex_destroy (&m->lock);
    free (m);
  }
  return f;
}

struct io_file *
io_mem_reopen (struct io_file *f)
{
  assert (f->ops == &mem_ops);
  struct mem_buf *m = f->priv;
  pthread_mutex_lock (&m->lock);
  struct io_file *g = mem_wrap (m, f->name);
  pthread_mutex_unlock (&m->lock);
  return g;
}

unsigned char *
io_mem_data (struct io_file *f, size_t *len)
{
  assert (f->ops == &mem_ops);
  struct mem_buf *m = f->priv;
  *len = m->len;
  return m->data;
}

struct io_mem_stats *
io_mem_stats (struct io_file *f)
{
  assert (f->ops == &mem_ops);
  return &((struct mem_buf *) f->priv)->stats;
}

void
io_mem_hold_pwrites (struct io_file *f, bool hold)
{
  assert (f->ops == &mem_ops);
  struct mem_buf *m = f->priv;
  pthread_mutex_lock (&m->lock);
  m->hold = hold;
  pthread_cond_broadcast (&m->unheld);
  pthread_mutex_unlock (&m->lock);
}

struct io_mem_stats
io_mem_stats_now (struct io_file *f)
{
  assert (f->ops == &mem_ops);
  struct mem_buf *m = f->priv;
  pthread_mutex_lock (&m->lock);
  struct io_mem_stats s = m->stats;
  pthread_mutex_unlock (&m->lock);
  return s;
}

int
io_mem_truncate (struct io_file *f, size_t len)
{
  assert (f->ops == &mem_ops);
  struct mem_buf *m = f->priv;
  pthread_mutex_lock (&m->lock);
  int r = resize (&m->data, &m->len, len);
  if (r == 0 && m->log)
    log_append (m->log, (struct io_log_entry) {
      .kind = IO_LOG_TRUNCATE, .file = m->index, .len = len });
  pthread_mutex_unlock (&m->lock);
  return r;
}

const unsigned char *
io_mem_durable (struct io_file *f, size_t *len)
{
  assert (f->ops == &mem_ops);
  struct mem_buf *m = f->priv;
  pthread_mutex_lock (&m->lock);
  const unsigned char *d = m->durable;
  *len = m->durable_len;
  pthread_mutex_unlock (&m->lock);
  return d;
}

size_t
io_mem_durable_read (struct io_file *f, void *buf, size_t len, uint64_t off)
{
  assert (f->ops == &mem_ops);
  struct mem_buf *m = f->priv;
  pthread_mutex_lock (&m->lock);
  size_t n = 0;
  if (m->durable && off < m->durable_len) {
    n = m->durable_len - off < len ? m->durable_len - off : len;
    memcpy (buf, m->durable + off, n);
  }
  pthread_mutex_unlock (&m->lock);
  return n;
}

/* ================= replay ================= */

uint64_t
sim_rand (uint64_t *s)
{
  /* splitmix64: small, seedable, good enough for choosing crash states. */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void
sim_replay_init (struct sim_replay *r, struct io_log *log)
{
  assert (log->with_data);
  memset (r, 0, sizeof *r);
  r->log = log;
  r->nfiles = log->nfiles;
  for (int i = 0; i < r->nfiles; i++) {
    r->durable[i] = xmemdup (log->initial[i], log->initial_len[i]);
    r->durable_len[i] = log->initial_len[i];
  }
}

void
sim_replay_free (struct sim_replay *r)
{
  for (int i = 0; i < r->nfiles; i++) {
    free (r->durable[i]);
    free (r->pending[i]);
  }
}

static void
apply (uint8_t **buf, size_t *len, const struct io_log_entry *op)
{
  if (op->kind == IO_LOG_TRUNCATE) {
    if (resize (buf, len, op->len) < 0)
      abort ();
    return;
  }
  grow_to (buf, len, op->off + op->len);
  memcpy (*buf + op->off, op->data, op->len);
}

const struct io_log_entry *
sim_replay_step (struct sim_replay *r)
{
  if (r->pos == r->log->nops)
    return NULL;
  const struct io_log_entry *op = &r->log->ops[r->pos];
  int f = op->file;
  if (op->kind == IO_LOG_WRITE || op->kind == IO_LOG_TRUNCATE) {
    if (r->npending[f] == r->cap_pending[f]) {
      r->cap_pending[f] = r->cap_pending[f] ? 2 * r->cap_pending[f] : 64;
      r->pending[f] = realloc (r->pending[f],
                               r->cap_pending[f] * sizeof *r->pending[f]);
      if (!r->pending[f])
        abort ();
    }
    r->pending[f][r->npending[f]++] = r->pos;
  }
  else if (op->kind == IO_LOG_SYNC) {
    for (size_t k = 0; k < r->npending[f]; k++)
      apply (&r->durable[f], &r->durable_len[f],
             &r->log->ops[r->pending[f][k]]);
    r->npending[f] = 0;
  }
  r->pos++;
  return op;
}

void
sim_crash_images (struct sim_replay *r, enum sim_keep keep, uint64_t *seed,
                  uint8_t **out, size_t *out_len)
{
  for (int f = 0; f < r->nfiles; f++) {
    out[f] = xmemdup (r->durable[f], r->durable_len[f]);
    out_len[f] = r->durable_len[f];
    if (keep == SIM_KEEP_NONE)
      continue;
    for (size_t k = 0; k < r->npending[f]; k++) {
      const struct io_log_entry *op = &r->log->ops[r->pending[f][k]];
      if (keep == SIM_KEEP_ALL) {
        apply (&out[f], &out_len[f], op);
        continue;
      }
      if (sim_rand (seed) % 2)
        continue;               /* this write never reached the platter */
      if (op->kind == IO_LOG_TRUNCATE) {
        apply (&out[f], &out_len[f], op);
        continue;
      }
      /* Kept, but each 4 KiB block on its own: a torn write. */
      bool torn = sim_rand (seed) % 4 == 0;
      grow_to (&out[f], &out_len[f], op->off + op->len);
      for (uint64_t b = 0; b < op->len; b += SIM_BLOCK) {
        uint64_t n = op->len - b < SIM_BLOCK ? op->len - b : SIM_BLOCK;
        if (torn && sim_rand (seed) % 2)
          continue;
        memcpy (out[f] + op->off + b, op->data + b, n);
      }
    }
  }
}
