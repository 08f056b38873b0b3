#include <config.h>

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tests/io_mem.h"

struct mem_buf {
  pthread_mutex_t lock;
  unsigned char *data;
  size_t len;
  int refs;
  struct io_mem_stats stats;
};

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

static int
mem_grow (struct mem_buf *m, size_t len)
{
  if (len <= m->len)
    return 0;
  unsigned char *p = realloc (m->data, len);
  if (!p)
    return -ENOMEM;
  memset (p + m->len, 0, len - m->len);
  m->data = p;
  m->len = len;
  return 0;
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
  m->stats.pwrites++;
  int r = take_fault (&m->stats.fail_pwrite, &m->stats.fail_pwrite_after,
                      &m->stats.fail_pwrite_times);
  if (r == 0)
    r = mem_grow (m, (size_t) off + len);
  if (r == 0)
    memcpy (m->data + off, buf, len);
  pthread_mutex_unlock (&m->lock);
  return r < 0 ? r : (ssize_t) len;
}

static int
mem_fdatasync (struct io_file *f)
{
  struct mem_buf *m = f->priv;
  pthread_mutex_lock (&m->lock);
  m->stats.syncs++;
  int r = take_fault (&m->stats.fail_fdatasync,
                      &m->stats.fail_fdatasync_after,
                      &m->stats.fail_fdatasync_times);
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
mem_close (struct io_file *f)
{
  struct mem_buf *m = f->priv;
  pthread_mutex_lock (&m->lock);
  int left = --m->refs;
  pthread_mutex_unlock (&m->lock);
  if (left == 0) {
    pthread_mutex_destroy (&m->lock);
    free (m->data);
    free (m);
  }
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
  return mem_wrap (m, name);
}

struct io_file *
io_mem_reopen (struct io_file *f)
{
  struct mem_buf *m = f->priv;
  pthread_mutex_lock (&m->lock);
  struct io_file *g = mem_wrap (m, f->name);
  pthread_mutex_unlock (&m->lock);
  return g;
}

unsigned char *
io_mem_data (struct io_file *f, size_t *len)
{
  struct mem_buf *m = f->priv;
  *len = m->len;
  return m->data;
}

struct io_mem_stats *
io_mem_stats (struct io_file *f)
{
  return &((struct mem_buf *) f->priv)->stats;
}

int
io_mem_truncate (struct io_file *f, size_t len)
{
  assert (f->ops == &mem_ops);
  struct mem_buf *m = f->priv;
  pthread_mutex_lock (&m->lock);
  int r = 0;
  if (len > m->len)
    r = mem_grow (m, len);
  else
    m->len = len;
  pthread_mutex_unlock (&m->lock);
  return r;
}
