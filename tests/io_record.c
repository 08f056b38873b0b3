#include <config.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tests/io_record.h"

#define MAX_ENTRIES 100000

static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static struct record_entry entries[MAX_ENTRIES];
static size_t nentries;

static void
record (const struct io_file *f, enum record_op op, uint64_t off, uint64_t len)
{
  pthread_mutex_lock (&rec_lock);
  if (nentries < MAX_ENTRIES)
    entries[nentries++] = (struct record_entry) { f, op, off, len };
  pthread_mutex_unlock (&rec_lock);
}

static ssize_t
rec_pread (struct io_file *f, void *buf, size_t len, uint64_t off)
{
  struct io_file *in = f->priv;
  return in->ops->pread (in, buf, len, off);
}

static ssize_t
rec_pwrite (struct io_file *f, const void *buf, size_t len, uint64_t off)
{
  struct io_file *in = f->priv;
  ssize_t r = in->ops->pwrite (in, buf, len, off);
  if (r > 0)
    record (f, REC_PWRITE, off, (uint64_t) r);
  return r;
}

static int
rec_fdatasync (struct io_file *f)
{
  struct io_file *in = f->priv;
  int r = in->ops->fdatasync (in);
  if (r == 0)
    record (f, REC_FDATASYNC, 0, 0);
  return r;
}

static int64_t
rec_size (struct io_file *f)
{
  struct io_file *in = f->priv;
  return in->ops->size (in);
}

static void
rec_close (struct io_file *f)
{
  io_close (f->priv);
  free (f->name);
  free (f);
}

static const struct io_ops rec_ops = {
  .pread = rec_pread,
  .pwrite = rec_pwrite,
  .fdatasync = rec_fdatasync,
  .size = rec_size,
  .close = rec_close,
};

struct io_file *
io_record_wrap (struct io_file *inner)
{
  struct io_file *f = calloc (1, sizeof *f);
  f->ops = &rec_ops;
  f->name = strdup (inner->name);
  f->priv = inner;
  return f;
}

void
io_record_reset (void)
{
  pthread_mutex_lock (&rec_lock);
  nentries = 0;
  pthread_mutex_unlock (&rec_lock);
}

size_t
io_record_count (void)
{
  pthread_mutex_lock (&rec_lock);
  size_t n = nentries;
  pthread_mutex_unlock (&rec_lock);
  return n;
}

const struct record_entry *
io_record_get (size_t i)
{
  return &entries[i];
}
