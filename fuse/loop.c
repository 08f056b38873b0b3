/* The session loop.
 *
 * One thread, the dispatcher, receives every request the kernel sends.
 * It serves the reads of `volume` itself, through one io_uring, and hands
 * the requests that may block (writes, syncs, the control channel) to
 * worker threads, which run them through libfuse.
 *
 * Why: on the machines we run on, a thread going to sleep and being woken
 * costs more than the rest of a 4 KiB read (docs/performance.md).  With
 * libfuse's loop, each request wakes a worker blocked in read() on
 * /dev/fuse, and a worker that waits for a member's read sleeps again.
 * Here, under load, the dispatcher does not sleep: it drains /dev/fuse
 * without blocking, puts the members' reads and the replies in its ring
 * and submits them together, one system call for many requests.  When it
 * must wait it first polls for a while, then sleeps: in its ring while
 * reads are in flight (until a read ends, a request comes, shown by a
 * poll of /dev/fuse, or a worker gives back a buffer, by an eventfd), in
 * read() on /dev/fuse when the ring is empty.
 *
 * The reads it serves it parses and answers on the wire itself (the
 * kernel's struct fuse_read_in and fuse_out_header, from <linux/fuse.h>):
 * a reply is then one more entry in the ring, where libfuse would make a
 * system call of its own per reply.  Every other request goes through
 * libfuse (fuse_session_process_buf): the quick ones (lookup, getattr,
 * open, release, statfs, ...) in the dispatcher, the rest in a worker,
 * but for a small write that comes alone (see receive).
 *
 * Only reads are served in the ring: they change nothing, so whatever
 * goes wrong there (an error, a short read) the read is served again by
 * array_read, which applies the member error rules (SPEC §6).  Writes keep
 * their ordering with the bitmap in array_write (core/array.c), whichever
 * thread calls it.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/array.h"
#include "common/log.h"
#include "fuse/loop.h"
#include "fuse/workers.h"
#include "fuse/wire.h"

#include <linux/fuse.h>         /* after fuse_lowlevel.h (mdfuse.h) */

enum {
  RING_ENTRIES = 256,
  /* Small reads in the ring at once; the kernel sends at most
   * max_background (64, ops.c) asynchronous requests at a time. */
  MAX_READS = 64,
  /* Large reads in the ring at once (a sequential reader has one or two
   * in flight); more wait for a worker.  Each has a buffer of MAX_WRITE. */
  MAX_LARGE_READS = 4,
  /* A write no larger than this that comes alone is served in the
   * dispatcher: handing it to a worker would only add a wake-up. */
  ALONE_WRITE_MAX = 128 << 10,
};

/* How long the dispatcher polls its ring for a completion while reads are
 * in flight, and only if completions come at most this far apart. */
#define RING_SPIN_NS (1000 * 1000L)
#define RING_SPIN_WHEN_NS (250 * 1000L)

/* How long the dispatcher looks for a request before it sleeps. */
#define SPIN_NS (50 * 1000L)

/* The user_data of the two entries that are not reads (a read's is its
 * struct ring_read, never this small). */
#define TAG_POLL ((uint64_t) 1) /* the poll of /dev/fuse */
#define TAG_WAKE ((uint64_t) 2) /* the eventfd's read */

/* A read served in the ring: first the member's read, then the reply. */
struct ring_read {
  struct ring_read *next;       /* on its free list */
  bool busy;
  bool large;                   /* its buffer holds MAX_WRITE bytes */
  bool replying;
  int fd;                       /* the member read */
  uint64_t unique;
  uint64_t off;
  size_t len;
  size_t done;                  /* bytes read so far */
  struct fuse_out_header out;
  struct iovec iov[2];
  void *buf;                    /* LOOP_RING_READ_MAX bytes, or MAX_WRITE */
};

/* A request as received, and the buffer it came in. */
struct request {
  struct request *next;         /* on the free list */
  struct work work;             /* with the workers */
  size_t len;
  char *mem;                    /* bufsize bytes */
};

struct loop {
  struct fuse_session *se;
  struct array *array;
  int fd;                       /* /dev/fuse, non-blocking */
  int fd_flags;                 /* as found, put back by loop_free */
  size_t bufsize;               /* the largest request */
  struct io_uring ring;
  int efd;
  uint64_t efd_value;

  /* The dispatcher's own. */
  bool poll_armed, wake_armed;
  bool readable;                /* /dev/fuse may hold a request */
  bool nonblocking;             /* lp->fd is O_NONBLOCK now */
  int64_t wait_ewma_ns;         /* time a completion takes to come */
  bool failed;                  /* /dev/fuse itself failed */
  bool complained;
  struct ring_read reads[MAX_READS + MAX_LARGE_READS];
  struct ring_read *free_reads, *free_large;
  unsigned reads_busy;          /* being read or replied to */
  struct request *cur;          /* the buffer the next request goes to */

  struct workers *workers;      /* for the requests that may block */

  /* Shared with the workers, under lock. */
  pthread_mutex_t lock;
  struct request *free_bufs;
  unsigned nbufs, max_bufs;
  bool starved;                 /* the dispatcher waits for a buffer */
};

static struct request *
request_new (size_t bufsize)
{
  struct request *b = calloc (1, sizeof *b);
  if (b && posix_memalign ((void **) &b->mem, 4096, bufsize) != 0) {
    free (b);
    b = NULL;
  }
  return b;
}

static void
request_free (struct request *b)
{
  if (b) {
    free (b->mem);
    free (b);
  }
}

void
loop_wake (struct loop *lp)
{
  if (!lp)
    return;
  uint64_t one = 1;
  ssize_t w;
  do
    w = write (lp->efd, &one, sizeof one);
  while (w < 0 && errno == EINTR);
}

/* A buffer for the next request: a spare one, or a new one while there
 * are fewer than max_bufs.  NULL when the workers hold them all: the
 * worker that gives one back wakes the dispatcher. */
static struct request *
take_buf (struct loop *lp)
{
  bool make = false;
  pthread_mutex_lock (&lp->lock);
  struct request *b = lp->free_bufs;
  if (b)
    lp->free_bufs = b->next;
  else if (lp->nbufs < lp->max_bufs) {
    lp->nbufs++;
    make = true;
  }
  else
    lp->starved = true;
  pthread_mutex_unlock (&lp->lock);
  if (make && !(b = request_new (lp->bufsize))) {
    /* At least one buffer exists (loop_new made it), and it is with a
     * worker: wait for it. */
    pthread_mutex_lock (&lp->lock);
    assert (lp->nbufs > 0);
    lp->nbufs--;
    lp->starved = true;
    pthread_mutex_unlock (&lp->lock);
  }
  return b;
}

static void
give_back_buf (struct loop *lp, struct request *b)
{
  pthread_mutex_lock (&lp->lock);
  b->next = lp->free_bufs;
  lp->free_bufs = b;
  bool wake = lp->starved;
  lp->starved = false;
  pthread_mutex_unlock (&lp->lock);
  if (wake)
    loop_wake (lp);
}

static void
process (struct loop *lp, struct request *b)
{
  struct fuse_buf fb = { .size = b->len, .mem = b->mem };
  fuse_session_process_buf (lp->se, &fb);
}

/* A worker's job: the request, then its buffer back. */
static void
work (void *arg, struct work *w)
{
  struct loop *lp = arg;
  struct request *b = work_owner (w, struct request, work);
  process (lp, b);
  give_back_buf (lp, b);
}

static void
to_worker (struct loop *lp, struct request *b)
{
  workers_push (lp->workers, &b->work);
}

/* A free submission entry, submitting what waits if the queue is full;
 * NULL only if even that leaves none. */
static struct io_uring_sqe *
get_sqe (struct loop *lp)
{
  struct io_uring_sqe *sqe = io_uring_get_sqe (&lp->ring);
  if (!sqe) {
    io_uring_submit (&lp->ring);
    sqe = io_uring_get_sqe (&lp->ring);
  }
  return sqe;
}

static void
arm_poll (struct loop *lp)
{
  struct io_uring_sqe *sqe = get_sqe (lp);
  if (sqe) {
    io_uring_prep_poll_add (sqe, lp->fd, POLLIN);
    io_uring_sqe_set_data64 (sqe, TAG_POLL);
    lp->poll_armed = true;
  }
}

static void
arm_wake (struct loop *lp)
{
  struct io_uring_sqe *sqe = get_sqe (lp);
  if (sqe) {
    io_uring_prep_read (sqe, lp->efd, &lp->efd_value, sizeof lp->efd_value,
                        0);
    io_uring_sqe_set_data64 (sqe, TAG_WAKE);
    lp->wake_armed = true;
  }
}

static void
ring_read_free (struct loop *lp, struct ring_read *c)
{
  struct ring_read **list = c->large ? &lp->free_large : &lp->free_reads;
  c->busy = false;
  c->next = *list;
  *list = c;
  assert (lp->reads_busy > 0);
  lp->reads_busy--;
}

/* Puts the member's read of what C still lacks in the ring; false if the
 * ring has no room. */
static bool
ring_read_submit (struct loop *lp, struct ring_read *c)
{
  struct io_uring_sqe *sqe = get_sqe (lp);
  if (!sqe)
    return false;
  io_uring_prep_read (sqe, c->fd, (char *) c->buf + c->done,
                      (unsigned) (c->len - c->done), c->off + c->done);
  io_uring_sqe_set_data (sqe, c);
  return true;
}

/* Answers C's request with N bytes of C's buffer, or the error -N. */
static void
ring_read_reply (struct loop *lp, struct ring_read *c, ssize_t n)
{
  size_t data = n > 0 ? (size_t) n : 0;
  c->out = (struct fuse_out_header) {
    .len = (uint32_t) (sizeof c->out + data),
    .error = n < 0 ? (int32_t) n : 0,
    .unique = c->unique,
  };
  c->iov[0] = (struct iovec) { &c->out, sizeof c->out };
  c->iov[1] = (struct iovec) { c->buf, data };
  unsigned niov = data ? 2 : 1;
  c->replying = true;
  struct io_uring_sqe *sqe = get_sqe (lp);
  if (sqe) {
    io_uring_prep_writev (sqe, lp->fd, c->iov, niov, 0);
    io_uring_sqe_set_data (sqe, c);
    return;
  }
  ssize_t w;
  do
    w = writev (lp->fd, c->iov, (int) niov);
  while (w < 0 && errno == EINTR);
  ring_read_free (lp, c);
}

/* The member's read of C ended with RES. */
static void
ring_read_done (struct loop *lp, struct ring_read *c, int res)
{
  if (res > 0) {
    c->done += (size_t) res;
    /* A short read (a large buffered read may end early) goes on. */
    if (c->done == c->len || ring_read_submit (lp, c)) {
      if (c->done == c->len)
        ring_read_reply (lp, c, (ssize_t) c->len);
      return;
    }
  }
  /* An error (or the end of the member file, or no room to go on): served
   * again the synchronous way, which tries the other members and counts
   * the error (SPEC §6). */
  ring_read_reply (lp, c, array_read (lp->array, c->buf, c->len, c->off));
}

/* Takes the READ request IN (N bytes) into the ring; false when it is not
 * one to serve here (another file, past the end, no room). */
static bool
ring_read_start (struct loop *lp, const struct fuse_in_header *in, size_t n)
{
  /* fh, offset and size: the part of fuse_read_in every protocol minor
   * version has. */
  if (in->nodeid != VOLUME_INO
      || n < sizeof *in + offsetof (struct fuse_read_in, lock_owner))
    return false;
  const struct fuse_read_in *arg = (const void *) (in + 1);
  size_t len = arg->size;
  uint64_t off = arg->offset;
  struct ring_read **list = len <= LOOP_RING_READ_MAX ? &lp->free_reads
    : &lp->free_large;
  if (len > MAX_WRITE || !*list)
    return false;
  int fd = array_read_fd (lp->array, off, &len);
  if (fd < 0)
    return false;
  struct ring_read *c = *list;
  c->fd = fd;
  c->off = off;
  c->len = len;
  c->done = 0;
  if (!ring_read_submit (lp, c))
    return false;
  *list = c->next;
  lp->reads_busy++;
  c->busy = true;
  c->replying = false;
  c->unique = in->unique;
  return true;
}

/* An interrupt of a read in the ring: that read is answered soon anyway,
 * and a filesystem may let an interrupt go unanswered. */
static bool
interrupts_ring_read (struct loop *lp, const struct fuse_in_header *in,
                      size_t n)
{
  if (n < sizeof *in + sizeof (struct fuse_interrupt_in))
    return false;
  const struct fuse_interrupt_in *arg = (const void *) (in + 1);
  for (unsigned i = 0; i < MAX_READS + MAX_LARGE_READS; i++)
    if (lp->reads[i].busy && lp->reads[i].unique == arg->unique)
      return true;
  return false;
}


/* The request in lp->cur, N bytes: served, handed on, or, for a small
 * write, kept back in *HELD to see whether it comes alone. */
static void
dispatch (struct loop *lp, size_t n, struct request **held)
{
  struct request *b = lp->cur;
  const struct fuse_in_header *in = (const void *) b->mem;
  if (in->opcode == FUSE_READ && ring_read_start (lp, in, n))
    return;
  if (in->opcode == FUSE_INTERRUPT && interrupts_ring_read (lp, in, n))
    return;
  b->len = n;
  if (in->opcode == FUSE_INIT)
    wire_request (b->mem, n);
  if (wire_is_quick (in->opcode)) {
    process (lp, b);
    return;
  }
  if (in->opcode == FUSE_WRITE
      && n <= sizeof *in + sizeof (struct fuse_write_in) + ALONE_WRITE_MAX
      && !array_writes_cross_network (lp->array))
    *held = b;
  else
    to_worker (lp, b);
  lp->cur = take_buf (lp);
}


static void
set_nonblocking (struct loop *lp, bool on)
{
  if (lp->nonblocking != on
      && fcntl (lp->fd, F_SETFL, on ? lp->fd_flags | O_NONBLOCK
                : lp->fd_flags & ~O_NONBLOCK) == 0)
    lp->nonblocking = on;
}

static uint64_t
now_ns (void)
{
  struct timespec t;
  clock_gettime (CLOCK_MONOTONIC, &t);
  return (uint64_t) t.tv_sec * 1000000000u + (uint64_t) t.tv_nsec;
}

/* Before going to sleep in read(), looks for a request for a little
 * while.  Requests that come one at a time (a plain loop device, a
 * program reading at queue depth 1) follow each other closely, and waking
 * a thread on an idle CPU costs more than that on the machines we run on:
 * 4 KiB reads at queue depth 1 took 90 us each without this, 33 us with
 * it (docs/performance.md).  True when a request is there. */
static bool
spin_for_request (struct loop *lp)
{
  uint64_t t0 = now_ns ();
  do {
    struct pollfd pfd = { .fd = lp->fd, .events = POLLIN };
    if (poll (&pfd, 1, 0) > 0)
      return true;
  } while (now_ns () - t0 < SPIN_NS);
  return false;
}

/* Takes requests from /dev/fuse until it has none, or no read can be
 * taken, or every buffer is with a worker; with WAIT, the first read waits
 * for a request (the ring is empty: nothing else can happen meanwhile but
 * a stop, whose signal interrupts it).
 *
 * A small write that turns out to be the only request about, with no read
 * in the ring and no worker busy (a plain loop device sends one request
 * at a time), is served here: a worker would have to be woken for it,
 * and the dispatcher has nothing else to do meanwhile. */
static void
receive (struct loop *lp, bool wait)
{
  struct request *held = NULL;
  while ((lp->readable || wait) && lp->free_reads
         && !fuse_session_exited (lp->se)) {
    if (!lp->cur && !(lp->cur = take_buf (lp)))
      break;
    if (wait && spin_for_request (lp))
      wait = false;
    set_nonblocking (lp, !wait);
    ssize_t n = read (lp->fd, lp->cur->mem, lp->bufsize);
    if (n < 0) {
      int e = errno;
      if (e == EAGAIN)
        lp->readable = false;
      else if (e == ENODEV)     /* unmounted */
        fuse_session_exit (lp->se);
      else if (e == EINTR)
        break;                  /* a stop, perhaps */
      else if (e != ENOENT) {
        /* ENOENT: that request was interrupted before we took it. */
        log_error ("/dev/fuse: read: %s", strerror (e));
        lp->failed = true;
        fuse_session_exit (lp->se);
      }
      continue;
    }
    wait = false;
    if ((size_t) n < sizeof (struct fuse_in_header)) {
      log_error ("/dev/fuse: short read (%zd bytes)", n);
      lp->failed = true;
      fuse_session_exit (lp->se);
      continue;
    }
    if (held) {
      to_worker (lp, held);     /* not alone */
      held = NULL;
    }
    dispatch (lp, (size_t) n, &held);
  }
  set_nonblocking (lp, true);
  if (!held)
    return;
  if (lp->reads_busy == 0 && workers_idle (lp->workers)) {
    process (lp, held);
    give_back_buf (lp, held);
  }
  else
    to_worker (lp, held);
}

static void
pause_1ms (void)
{
  struct timespec ms = { 0, 1000000 };
  nanosleep (&ms, NULL);
}

static void
reap (struct loop *lp)
{
  struct io_uring_cqe *cqe;
  unsigned head, seen = 0;
  io_uring_for_each_cqe (&lp->ring, head, cqe) {
    seen++;
    if (cqe->user_data == TAG_POLL) {
      /* Readable, hung up, or an error of the poll: read() tells. */
      lp->readable = true;
      lp->poll_armed = false;
      continue;
    }
    if (cqe->user_data == TAG_WAKE) {
      lp->wake_armed = false;
      continue;
    }
    struct ring_read *c = io_uring_cqe_get_data (cqe);
    if (!c->replying) {
      ring_read_done (lp, c, cqe->res);
      continue;
    }
    /* ENOENT: the request is gone (interrupted); ENODEV: unmounted. */
    if (cqe->res < 0 && cqe->res != -ENOENT && cqe->res != -ENODEV
        && !lp->complained) {
      log_warn ("/dev/fuse: reply: %s", strerror (-cqe->res));
      lp->complained = true;
    }
    ring_read_free (lp, c);
  }
  io_uring_cq_advance (&lp->ring, seen);
}

/* Submits what is queued and waits for a completion.  With reads in
 * flight, and completions that have been coming quickly, it polls the ring
 * for a while before it sleeps: a thread put to sleep on an idle CPU is
 * woken late on the machines we run on (cold random 4 KiB reads at queue
 * depth 32 gained about a quarter, docs/performance.md).  A slow disk
 * (completions further apart than RING_SPIN_WHEN_NS) never makes it
 * spin. */
static int
ring_wait (struct loop *lp)
{
  uint64_t t0 = now_ns ();
  int r;
  if (lp->reads_busy > 0 && lp->wait_ewma_ns < RING_SPIN_WHEN_NS) {
    do {
      r = io_uring_submit_and_get_events (&lp->ring);
      if (io_uring_cq_ready (&lp->ring))
        goto done;
    } while (r >= 0 && now_ns () - t0 < RING_SPIN_NS);
  }
  r = io_uring_submit_and_wait (&lp->ring, 1);
done:;
  /* How long a completion takes to come, smoothed (1/8 of each wait). */
  uint64_t waited = now_ns () - t0;
  if (lp->reads_busy > 0)
    lp->wait_ewma_ns += ((int64_t) waited - (int64_t) lp->wait_ewma_ns) / 8;
  return r;
}

/* Nothing in the ring or queued for it, and a buffer to receive into:
 * only a request can come next. */
static bool
ring_idle (struct loop *lp)
{
  return lp->reads_busy == 0 && lp->cur && !io_uring_sq_ready (&lp->ring);
}

int
loop_run (struct loop *lp)
{
  for (;;) {
    /* With nothing in the ring and nothing to receive, wait in read() on
     * /dev/fuse, as libfuse's workers do: cheaper than a wait in the ring
     * when requests come one at a time (a plain loop device, a reader at
     * queue depth 1).  The ring's poll may still be armed: it only makes
     * the next receive try a read. */
    receive (lp, ring_idle (lp) && !lp->readable);
    bool exiting = fuse_session_exited (lp->se);
    if (exiting && lp->reads_busy == 0)
      break;
    if (ring_idle (lp) && !exiting)
      continue;                 /* nothing for the ring to wait on */
    /* receive() stopped for want of a request, a free read or a buffer:
     * each comes as a completion. */
    if (!exiting && !lp->poll_armed)
      arm_poll (lp);
    if (!lp->wake_armed)
      arm_wake (lp);
    int r = ring_wait (lp);
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
      if (!lp->complained)
        log_warn ("io_uring_enter: %s; retrying", strerror (-r));
      lp->complained = true;
      pause_1ms ();
    }
    reap (lp);
  }
  return lp->failed ? -1 : 0;
}

static void
loop_destroy (struct loop *lp)
{
  for (unsigned i = 0; i < MAX_READS + MAX_LARGE_READS; i++)
    free (lp->reads[i].buf);
  request_free (lp->cur);
  for (struct request *b = lp->free_bufs, *next; b; b = next) {
    next = b->next;
    request_free (b);
  }
  pthread_mutex_destroy (&lp->lock);
  if (lp->efd >= 0)
    close (lp->efd);
  if (lp->fd_flags >= 0)
    fcntl (lp->fd, F_SETFL, lp->fd_flags);
  free (lp);
}

struct loop *
loop_new (struct fuse_session *se, struct array *array, unsigned workers)
{
  struct loop *lp = calloc (1, sizeof *lp);
  if (!lp)
    return NULL;
  lp->se = se;
  lp->array = array;
  lp->fd = fuse_session_fd (se);
  lp->fd_flags = fcntl (lp->fd, F_GETFL);
  lp->efd = -1;
  /* The largest request: a write of max_write bytes and its headers, as
   * libfuse sizes its own buffers. */
  lp->bufsize = MAX_WRITE + 4096;
  lp->max_bufs = workers + 1;   /* one with each worker, one receiving */
  lp->nbufs = 1;
  pthread_mutex_init (&lp->lock, NULL);
  const char *why = NULL;
  int err = 0;
  lp->cur = request_new (lp->bufsize);
  if (!lp->cur) {
    why = "out of memory";
    goto fail;
  }
  for (unsigned i = 0; i < MAX_READS + MAX_LARGE_READS; i++) {
    struct ring_read *c = &lp->reads[i];
    c->large = i >= MAX_READS;
    if (posix_memalign (&c->buf, 4096, c->large ? MAX_WRITE
                        : LOOP_RING_READ_MAX) != 0) {
      why = "out of memory";
      goto fail;
    }
    struct ring_read **list = c->large ? &lp->free_large : &lp->free_reads;
    c->next = *list;
    *list = c;
  }
  lp->efd = eventfd (0, EFD_CLOEXEC);
  if (lp->efd < 0 || lp->fd_flags < 0
      || fcntl (lp->fd, F_SETFL, lp->fd_flags | O_NONBLOCK) < 0) {
    err = errno;
    why = "eventfd or fcntl";
    goto fail;
  }

  struct io_uring_params p;
  memset (&p, 0, sizeof p);
  /* This thread alone submits and reaps (loop_run runs where loop_new
   * ran): completions then run in it, when it asks for them. */
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  int r = io_uring_queue_init_params (RING_ENTRIES, &lp->ring, &p);
  if (r < 0) {
    memset (&p, 0, sizeof p);
    r = io_uring_queue_init_params (RING_ENTRIES, &lp->ring, &p);
  }
  if (r < 0) {
    err = -r;
    why = "io_uring";
    goto fail;
  }
  lp->workers = workers_new (workers, work, lp, &why);
  if (!lp->workers) {
    err = errno;
    io_uring_queue_exit (&lp->ring);
    goto fail;
  }
  lp->readable = true;
  lp->nonblocking = true;
  return lp;

fail:
  log_warn ("libfuse's loop serves the volume: %s%s%s", why,
            err ? ": " : "", err ? strerror (err) : "");
  loop_destroy (lp);
  return NULL;
}

void
loop_free (struct loop *lp)
{
  if (!lp)
    return;
  workers_free (lp->workers);
  io_uring_queue_exit (&lp->ring);
  loop_destroy (lp);
}
