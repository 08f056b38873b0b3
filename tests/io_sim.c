#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tests/io_sim.h"

uint64_t
sim_rand (uint64_t *s)
{
  /* splitmix64: small, seedable, good enough for choosing crash states. */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static void *
xmemdup (const void *p, size_t n)
{
  void *q = malloc (n ? n : 1);
  if (!q)
    abort ();
  memcpy (q, p, n);
  return q;
}

static void
grow_to (uint8_t **buf, size_t *len, size_t want)
{
  if (want <= *len)
    return;
  uint8_t *p = realloc (*buf, want);
  if (!p)
    abort ();
  memset (p + *len, 0, want - *len);
  *buf = p;
  *len = want;
}

static void
append (struct sim_world *w, struct sim_op op)
{
  if (w->nops == w->cap) {
    w->cap = w->cap ? w->cap * 2 : 1024;
    w->ops = realloc (w->ops, w->cap * sizeof *w->ops);
    if (!w->ops)
      abort ();
  }
  w->ops[w->nops++] = op;
}

void
sim_init (struct sim_world *w, int n, const char *const *names,
          uint8_t *const *images, const size_t *lens)
{
  memset (w, 0, sizeof *w);
  w->nfiles = n;
  for (int i = 0; i < n; i++) {
    w->names[i] = strdup (names[i]);
    w->initial[i] = xmemdup (images[i], lens[i]);
    w->initial_len[i] = lens[i];
    w->current[i] = xmemdup (images[i], lens[i]);
    w->current_len[i] = lens[i];
  }
}

void
sim_free (struct sim_world *w)
{
  for (int i = 0; i < w->nfiles; i++) {
    free (w->names[i]);
    free (w->initial[i]);
    free (w->current[i]);
  }
  for (size_t k = 0; k < w->nops; k++)
    free (w->ops[k].data);
  free (w->ops);
  memset (w, 0, sizeof *w);
}

struct sim_priv {
  struct sim_world *w;
  int i;
};

static ssize_t
s_pread (struct io_file *f, void *buf, size_t len, uint64_t off)
{
  struct sim_priv *p = f->priv;
  struct sim_world *w = p->w;
  if (off >= w->current_len[p->i])
    return 0;
  size_t n = w->current_len[p->i] - off < len ? w->current_len[p->i] - off
    : len;
  memcpy (buf, w->current[p->i] + off, n);
  return (ssize_t) n;
}

static ssize_t
s_pwrite (struct io_file *f, const void *buf, size_t len, uint64_t off)
{
  struct sim_priv *p = f->priv;
  struct sim_world *w = p->w;
  grow_to (&w->current[p->i], &w->current_len[p->i], off + len);
  memcpy (w->current[p->i] + off, buf, len);
  append (w, (struct sim_op) { .kind = SIM_WRITE, .file = p->i, .off = off,
                               .len = len, .data = xmemdup (buf, len) });
  return (ssize_t) len;
}

static int
s_fdatasync (struct io_file *f)
{
  struct sim_priv *p = f->priv;
  append (p->w, (struct sim_op) { .kind = SIM_SYNC, .file = p->i });
  return 0;
}

static int64_t
s_size (struct io_file *f)
{
  struct sim_priv *p = f->priv;
  return (int64_t) p->w->current_len[p->i];
}

static void
s_close (struct io_file *f)
{
  free (f->priv);
  free (f->name);
  free (f);
}

static const struct io_ops sim_ops = {
  .pread = s_pread, .pwrite = s_pwrite, .fdatasync = s_fdatasync,
  .size = s_size, .close = s_close,
};

struct io_file *
sim_open (struct sim_world *w, int i)
{
  struct io_file *f = calloc (1, sizeof *f);
  struct sim_priv *p = calloc (1, sizeof *p);
  if (!f || !p)
    abort ();
  p->w = w;
  p->i = i;
  f->ops = &sim_ops;
  f->priv = p;
  f->name = strdup (w->names[i]);
  return f;
}

void
sim_mark (struct sim_world *w, int mark, uint64_t off, uint64_t len,
          const void *data)
{
  append (w, (struct sim_op) { .kind = SIM_MARK, .mark = mark, .off = off,
                               .len = len,
                               .data = data ? xmemdup (data, len) : NULL });
}

void
sim_replay_init (struct sim_replay *r, struct sim_world *w)
{
  memset (r, 0, sizeof *r);
  r->w = w;
  for (int i = 0; i < w->nfiles; i++) {
    r->durable[i] = xmemdup (w->initial[i], w->initial_len[i]);
    r->durable_len[i] = w->initial_len[i];
  }
}

void
sim_replay_free (struct sim_replay *r)
{
  for (int i = 0; i < r->w->nfiles; i++) {
    free (r->durable[i]);
    free (r->pending[i]);
  }
}

static void
apply (uint8_t **buf, size_t *len, const struct sim_op *op)
{
  grow_to (buf, len, op->off + op->len);
  memcpy (*buf + op->off, op->data, op->len);
}

const struct sim_op *
sim_replay_step (struct sim_replay *r)
{
  if (r->pos == r->w->nops)
    return NULL;
  const struct sim_op *op = &r->w->ops[r->pos];
  int f = op->file;
  if (op->kind == SIM_WRITE) {
    if (r->npending[f] == r->cap_pending[f]) {
      r->cap_pending[f] = r->cap_pending[f] ? 2 * r->cap_pending[f] : 64;
      r->pending[f] = realloc (r->pending[f],
                               r->cap_pending[f] * sizeof *r->pending[f]);
      if (!r->pending[f])
        abort ();
    }
    r->pending[f][r->npending[f]++] = r->pos;
  }
  else if (op->kind == SIM_SYNC) {
    for (size_t k = 0; k < r->npending[f]; k++)
      apply (&r->durable[f], &r->durable_len[f], &r->w->ops[r->pending[f][k]]);
    r->npending[f] = 0;
  }
  r->pos++;
  return op;
}

void
sim_crash_images (struct sim_replay *r, enum sim_keep keep, uint64_t *seed,
                  uint8_t **out, size_t *out_len)
{
  for (int f = 0; f < r->w->nfiles; f++) {
    out[f] = xmemdup (r->durable[f], r->durable_len[f]);
    out_len[f] = r->durable_len[f];
    if (keep == SIM_KEEP_NONE)
      continue;
    for (size_t k = 0; k < r->npending[f]; k++) {
      const struct sim_op *op = &r->w->ops[r->pending[f][k]];
      if (keep == SIM_KEEP_ALL) {
        apply (&out[f], &out_len[f], op);
        continue;
      }
      if (sim_rand (seed) % 2)
        continue;               /* this write never reached the platter */
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
