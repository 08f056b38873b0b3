/* Asynchronous reads: small reads of `volume` through one io_uring.
 *
 * A FUSE thread that serves a read itself makes one pread on a member and
 * sleeps until it is done: one queue kick and one interrupt per read, and
 * two thread wake-ups.  Here the FUSE thread only queues the read and goes
 * back for the next request; one reader thread owns a ring, submits every
 * queued read with one system call, and replies as the reads complete.
 * Under load the reader is always busy, so the reads of many requests go
 * to the members together and nobody has to be woken for them.  A read
 * that arrives while no other is taken is read at once in its FUSE thread:
 * one at a time (a plain loop device, a single reader), there is nothing
 * to batch, and the hand-over would only add to its latency.
 *
 * Only reads go this way: they change nothing, so whatever goes wrong
 * (an error, a short read, no room) the request is served again by
 * array_read, which applies the member error rules (SPEC §6).  Writes keep
 * their ordering with the bitmap in the FUSE thread (core/array.c).
 */
#include <config.h>

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/array.h"
#include "core/log.h"
#include "fuse/aread.h"

enum {
  RING_ENTRIES = 256,
  MAX_INFLIGHT = 64,            /* reads taken and not yet answered */
};

/* The eventfd's read in the ring: wakes the reader when a read is queued
 * while it waits. */
#define WAKE_TAG ((uint64_t) 1)

struct aread_ctx {
  struct aread_ctx *next;
  fuse_req_t req;
  uint64_t off;
  size_t len;
  int fd;
  void *buf;                    /* AREAD_MAX bytes, kept with the ctx */
};

struct aread {
  struct array *array;
  struct io_uring ring;
  pthread_t thread;
  int efd;
  uint64_t efd_value;

  pthread_mutex_t lock;
  pthread_cond_t drained;
  struct aread_ctx *head, *tail;        /* queued, not yet in the ring */
  struct aread_ctx *free;               /* spare contexts and buffers */
  unsigned inflight;                    /* taken, not yet answered */
  bool waiting;                         /* the reader sleeps in the ring */
  bool stop;
  int start_error;                      /* 0: starting, 1: running, <0 */
};

static void
ctx_release (struct aread *ar, struct aread_ctx *c)
{
  pthread_mutex_lock (&ar->lock);
  c->next = ar->free;
  ar->free = c;
  if (--ar->inflight == 0)
    pthread_cond_broadcast (&ar->drained);
  pthread_mutex_unlock (&ar->lock);
}

/* A free submission entry, submitting what waits if the queue is full;
 * NULL only if even that leaves none. */
static struct io_uring_sqe *
get_sqe (struct aread *ar)
{
  struct io_uring_sqe *sqe = io_uring_get_sqe (&ar->ring);
  if (!sqe) {
    io_uring_submit (&ar->ring);
    sqe = io_uring_get_sqe (&ar->ring);
  }
  return sqe;
}

/* Wakes the reader from its wait in the ring (through the eventfd). */
static void
wake_reader (struct aread *ar)
{
  uint64_t one = 1;
  ssize_t w;
  do
    w = write (ar->efd, &one, sizeof one);
  while (w < 0 && errno == EINTR);
}

/* Queues the eventfd's read; false if the ring has no entry for it. */
static bool
arm_wake (struct aread *ar)
{
  struct io_uring_sqe *sqe = get_sqe (ar);
  if (!sqe)
    return false;
  io_uring_prep_read (sqe, ar->efd, &ar->efd_value, sizeof ar->efd_value, 0);
  io_uring_sqe_set_data64 (sqe, WAKE_TAG);
  return true;
}

static void
pause_1ms (void)
{
  struct timespec ms = { 0, 1000000 };
  nanosleep (&ms, NULL);
}

/* A read came back: reply, or serve it again the synchronous way. */
static void
complete (struct aread *ar, struct aread_ctx *c, int res)
{
  if (res < 0 || (size_t) res != c->len)
    reply_array_read (c->req, ar->array, c->buf, c->len, c->off);
  else
    fuse_reply_buf (c->req, c->buf, c->len);
  ctx_release (ar, c);
}

static void *
reader_main (void *arg)
{
  struct aread *ar = arg;
  unsigned in_ring = 0;
  bool complained = false;

  /* The ring was made disabled so that it belongs to this thread, the
   * only one that submits to it (SINGLE_ISSUER).  aread_start waits for
   * the verdict: a ring that cannot even take the eventfd read is not
   * used at all. */
  int e = 0;
  bool armed = false;           /* the eventfd's read is in the ring */
  if (ar->ring.flags & IORING_SETUP_R_DISABLED
      && syscall (__NR_io_uring_register, ar->ring.ring_fd,
                  IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
    e = -errno;     /* liburing 2.3 has no io_uring_enable_rings */
  if (e == 0) {
    armed = arm_wake (ar);
    e = armed ? io_uring_submit (&ar->ring) : -EBUSY;
    e = e < 0 ? e : 0;
  }
  pthread_mutex_lock (&ar->lock);
  ar->start_error = e ? e : 1;
  pthread_cond_broadcast (&ar->drained);
  pthread_mutex_unlock (&ar->lock);
  if (e)
    return NULL;

  for (;;) {
    pthread_mutex_lock (&ar->lock);
    struct aread_ctx *list = ar->head;
    ar->head = ar->tail = NULL;
    bool done = ar->stop && !list && in_ring == 0;
    ar->waiting = !list && !done;
    pthread_mutex_unlock (&ar->lock);
    if (done)
      break;

    for (struct aread_ctx *c = list, *next; c; c = next) {
      next = c->next;
      struct io_uring_sqe *sqe = get_sqe (ar);
      if (!sqe) {
        complete (ar, c, -EAGAIN);
        continue;
      }
      io_uring_prep_read (sqe, c->fd, c->buf, (unsigned) c->len, c->off);
      io_uring_sqe_set_data (sqe, c);
      in_ring++;
    }

    /* With nothing new to submit, sleep until a read completes or the
     * eventfd says one was queued; else submit and take what is done
     * (with DEFER_TASKRUN, completions are posted only when asked).
     * Without the eventfd's read in the ring, nothing could wake the
     * reader there: it looks again every millisecond instead. */
    int r = list || !armed ? io_uring_submit_and_get_events (&ar->ring)
      : io_uring_submit_and_wait (&ar->ring, 1);
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
      /* Not expected once the ring works: say so once, and try again
       * shortly (what was queued stays in the ring's queue). */
      if (!complained)
        log_warn ("reader: io_uring_enter: %s; retrying", strerror (-r));
      complained = true;
      pause_1ms ();
    }

    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    bool rearm = false;
    io_uring_for_each_cqe (&ar->ring, head, cqe) {
      seen++;
      if (cqe->user_data == WAKE_TAG) {
        rearm = true;
        continue;
      }
      in_ring--;
      complete (ar, io_uring_cqe_get_data (cqe), cqe->res);
    }
    io_uring_cq_advance (&ar->ring, seen);
    if (rearm || !armed)
      armed = arm_wake (ar);
    if (!armed && !list)
      pause_1ms ();
  }
  return NULL;
}

struct aread *
aread_start (struct array *array)
{
  struct aread *ar = calloc (1, sizeof *ar);
  if (!ar)
    return NULL;
  ar->array = array;
  ar->efd = eventfd (0, EFD_CLOEXEC);
  if (ar->efd < 0) {
    log_warn ("reads stay synchronous: eventfd: %s", strerror (errno));
    free (ar);
    return NULL;
  }
  struct io_uring_params p;
  memset (&p, 0, sizeof p);
  /* One thread submits and reaps: completions run in it, when it asks. */
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN
    | IORING_SETUP_R_DISABLED;
  int r = io_uring_queue_init_params (RING_ENTRIES, &ar->ring, &p);
  if (r < 0) {
    memset (&p, 0, sizeof p);
    r = io_uring_queue_init_params (RING_ENTRIES, &ar->ring, &p);
  }
  if (r < 0) {
    log_warn ("reads stay synchronous: io_uring: %s", strerror (-r));
    close (ar->efd);
    free (ar);
    return NULL;
  }
  pthread_mutex_init (&ar->lock, NULL);
  pthread_cond_init (&ar->drained, NULL);
  r = pthread_create (&ar->thread, NULL, reader_main, ar);
  if (r == 0) {
    pthread_mutex_lock (&ar->lock);
    while (ar->start_error == 0)
      pthread_cond_wait (&ar->drained, &ar->lock);
    pthread_mutex_unlock (&ar->lock);
    if (ar->start_error < 0) {
      pthread_join (ar->thread, NULL);
      r = -ar->start_error;
    }
  }
  if (r != 0) {
    log_warn ("reads stay synchronous: cannot start the reader: %s",
              strerror (r));
    io_uring_queue_exit (&ar->ring);
    close (ar->efd);
    pthread_cond_destroy (&ar->drained);
    pthread_mutex_destroy (&ar->lock);
    free (ar);
    return NULL;
  }
  return ar;
}

bool
aread_submit (struct aread *ar, fuse_req_t req, size_t len, uint64_t off)
{
  if (!ar || len > AREAD_MAX)
    return false;
  int fd = array_read_fd (ar->array, off, &len);
  if (fd < 0)
    return false;

  pthread_mutex_lock (&ar->lock);
  if (ar->stop || ar->inflight >= MAX_INFLIGHT) {
    pthread_mutex_unlock (&ar->lock);
    return false;
  }
  struct aread_ctx *c = ar->free;
  if (c)
    ar->free = c->next;
  pthread_mutex_unlock (&ar->lock);
  if (!c) {
    c = calloc (1, sizeof *c);
    if (!c || posix_memalign (&c->buf, 4096, AREAD_MAX) != 0) {
      free (c);
      return false;
    }
  }
  *c = (struct aread_ctx) { .req = req, .off = off, .len = len, .fd = fd,
                            .buf = c->buf };

  bool wake = false, alone;
  pthread_mutex_lock (&ar->lock);
  /* The only read taken: nothing to batch it with, and handing it to the
   * reader would only add two wake-ups to its time.  It is read here, and
   * counts as taken meanwhile, so that reads arriving now go to the ring. */
  alone = ++ar->inflight == 1;
  if (!alone) {
    if (ar->tail)
      ar->tail->next = c;
    else
      ar->head = c;
    ar->tail = c;
    wake = ar->waiting;
    ar->waiting = false;
  }
  pthread_mutex_unlock (&ar->lock);
  if (alone) {
    ssize_t n = pread (fd, c->buf, len, (off_t) off);
    complete (ar, c, n < 0 ? -errno : (int) n);
  }
  else if (wake)
    wake_reader (ar);
  return true;
}

void
aread_stop (struct aread *ar)
{
  if (!ar)
    return;
  pthread_mutex_lock (&ar->lock);
  ar->stop = true;
  while (ar->inflight > 0)
    pthread_cond_wait (&ar->drained, &ar->lock);
  pthread_mutex_unlock (&ar->lock);
  /* The reader may sleep in the ring: it must see the stop. */
  wake_reader (ar);
  pthread_join (ar->thread, NULL);
  io_uring_queue_exit (&ar->ring);
  close (ar->efd);
  for (struct aread_ctx *c = ar->free, *next; c; c = next) {
    next = c->next;
    free (c->buf);
    free (c);
  }
  pthread_cond_destroy (&ar->drained);
  pthread_mutex_destroy (&ar->lock);
  free (ar);
}
