/* FUSE over io_uring (Linux 6.14 and later): the ring transport.
 *
 * The kernel hands requests to the daemon through io_uring commands on
 * /dev/fuse instead of read() and write().  The daemon registers ring
 * entries, each a header buffer and a payload buffer, with one SQE128
 * IORING_OP_URING_CMD each (FUSE_IO_URING_CMD_REGISTER), per queue; there
 * is one queue per possible CPU, and a request goes to the queue of the
 * CPU that issued it.  A request arrives as the completion of an entry's
 * command: its struct fuse_in_header in the header's in_out, the op's
 * first argument (struct fuse_read_in, fuse_write_in, ...) in op_in, the
 * rest (a write's data, a name) in the payload.  The daemon answers in the
 * same buffers (struct fuse_out_header in in_out, the reply's arguments in
 * the payload) and submits FUSE_IO_URING_CMD_COMMIT_AND_FETCH on the
 * entry, which delivers the reply and makes the entry wait for the next
 * request.  The kernel uses the queues only once every queue has an entry
 * ("ready"); before, and always for interrupts and forgets, requests come
 * through /dev/fuse, which the session loop (loop.c, or libfuse's) keeps
 * reading.  Notifications (none today) would go to /dev/fuse too.
 *
 * Here each queue has its own io_uring and its own thread, pinned to the
 * queue's CPU: a request is served on the CPU that sent it, and the
 * requesting thread's wake-up is local.  The thread serves:
 *   - a READ of `volume` from a member, through its own io_uring, straight
 *     into the entry's payload, the reply's COMMIT_AND_FETCH linked behind
 *     it: one io_uring_enter reads, answers and waits for the next
 *     request (array_read_fd picks the member; a read that fails or comes
 *     up short cancels the commit and is served again by array_read, which
 *     applies the member error rules, SPEC §6);
 *   - the requests libfuse answers at once (lookup, getattr, open, ...)
 *     itself, through fuse_session_process_buf, as does loop.c;
 *   - a WRITE itself when it is the only request about (a worker would
 *     only add a wake-up), else in a worker; writes go through
 *     array_write, which keeps their ordering with the bitmap (SPEC §4)
 *     whichever thread calls it;
 *   - everything else (syncs, the control channel) in a worker.
 * libfuse sees each request as it would come from /dev/fuse: the header,
 * the first argument and the payload, laid end to end in front of and in
 * the entry's payload buffer (no copy of a write's data).  Its reply
 * comes out through wire.c's writev, which hands it to this entry
 * (wire_set_sink, by the request's unique id); a reply built in a worker
 * is committed by the queue's thread, woken by an eventfd.
 *
 * The structures are the kernel's UAPI <linux/fuse.h> of protocol 7.42
 * (Linux 6.14); Debian 12's headers are older, so the few needed are
 * carried below.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/array.h"
#include "common/log.h"
#include "fuse/loop.h"
#include "fuse/ring.h"
#include "fuse/wire.h"
#include "fuse/workers.h"

#include <linux/fuse.h>         /* after fuse_lowlevel.h (mdfuse.h) */

#ifndef FUSE_URING_IN_OUT_HEADER_SZ
/* From the kernel's UAPI <linux/fuse.h>, protocol 7.42 (Linux 6.14). */
#define FUSE_URING_IN_OUT_HEADER_SZ 128
#define FUSE_URING_OP_IN_OUT_SZ 128

struct fuse_uring_ent_in_out {
  uint64_t flags;
  /* The id to name in the reply's COMMIT_AND_FETCH. */
  uint64_t commit_id;
  /* Bytes of the payload used (by the request, then by the reply). */
  uint32_t payload_sz;
  uint32_t padding;
  uint64_t reserved;
};

struct fuse_uring_req_header {
  char in_out[FUSE_URING_IN_OUT_HEADER_SZ];     /* fuse_in/out_header */
  char op_in[FUSE_URING_OP_IN_OUT_SZ];  /* the op's first argument */
  struct fuse_uring_ent_in_out ring_ent_in_out;
};

enum fuse_uring_cmd {
  FUSE_IO_URING_CMD_INVALID = 0,
  FUSE_IO_URING_CMD_REGISTER = 1,
  FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2,
};

/* In the SQE128's command area. */
struct fuse_uring_cmd_req {
  uint64_t flags;
  uint64_t commit_id;
  uint16_t qid;
  uint8_t padding[6];
};
#endif

enum {
  /* Ring entries per queue: requests a queue holds at once (the kernel
   * keeps more waiting for an entry). */
  RING_DEPTH = 16,
  /* Room in front of a payload for the request's header and first
   * argument, laid there for libfuse; keeps the payload page-aligned for
   * the members' direct reads. */
  PREFIX = 4096,
  /* The kernel's payload size: max(max_write, max_pages pages); libfuse
   * sets max_pages from max_write (MAX_WRITE, ops.c).  One page more
   * leaves room should it round up. */
  PAYLOAD = MAX_WRITE + 4096,
  /* A WRITE no larger than this that comes alone is served by the queue's
   * thread (as loop.c does). */
  ALONE_WRITE_MAX = 128 << 10,
};

/* user_data: an entry's address, with the low bit set for its member
 * read; TAG_WAKE for the eventfd's read. */
#define TAG_WAKE ((uint64_t) 2)
#define TAG_READ ((uint64_t) 1)

struct queue;

enum ent_state {
  ENT_KERNEL,                   /* registered, waiting for a request */
  ENT_READING,                  /* a member read in flight */
  ENT_SERVING,                  /* with the queue's thread or a worker */
  ENT_DONE,                     /* replied, to be committed */
  ENT_DEAD,                     /* cancelled by the kernel */
};

struct ent {
  struct wire_sink sink;        /* first: wire.c hands it back */
  struct queue *q;
  struct ent *next;             /* on the done list */
  struct work work;             /* with the workers */
  enum ent_state state;
  enum fuse_uring_cmd last_cmd;
  uint64_t commit_id;
  struct fuse_uring_req_header *hdr;
  char *block;                  /* PREFIX + PAYLOAD bytes */
  char *payload;                /* block + PREFIX */
  char *req_mem;                /* the request laid out for libfuse */
  size_t req_len;
  struct iovec iov[2];
  /* A READ served from a member. */
  int fd;
  uint64_t off;
  size_t len;
  /* The commit linked to the read may still end cancelled: set with
   * the read, cleared when the read fills the payload or when the
   * cancellation comes (before or after the read's own completion). */
  bool link_pending;
};

struct queue {
  struct ring *r;
  unsigned qid;
  pthread_t thread;
  bool started;
  struct io_uring uring;
  bool uring_ok;
  int efd;
  uint64_t efd_value;
  bool wake_armed;
  unsigned inflight;            /* entries reading or with a worker */
  struct ent ents[RING_DEPTH];
  /* Replies built in workers, for this thread to commit. */
  pthread_mutex_t lock;
  struct ent *done;
};

struct ring {
  struct fuse_session *se;
  struct array *array;
  struct loop *lp;
  pthread_t main_thread;
  bool required;
  unsigned fault_qid;           /* MDFUSE_FAULT_RING_REGISTER, or UINT_MAX */
  int fd;                       /* /dev/fuse */
  unsigned nqueues;
  struct queue *queues;

  /* The INIT reply, then each queue's registration. */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool init_done, granted;
  unsigned registered, reg_failed;
  bool failed;
  bool stopping;

  struct workers *workers;      /* for the requests that may block */

  uint64_t served;              /* requests taken from the queues */
};

bool
ring_enabled (char *why, size_t len)
{
  FILE *f = fopen (RING_ENABLE_PATH, "r");
  if (!f) {
    snprintf (why, len, "%s: %s (the kernel has no FUSE over io_uring: "
              "Linux 6.14 and later, CONFIG_FUSE_IO_URING)", RING_ENABLE_PATH,
              strerror (errno));
    return false;
  }
  int c = fgetc (f);
  fclose (f);
  if (c != 'Y' && c != '1') {
    snprintf (why, len, "%s is N (as root: echo Y > %s)", RING_ENABLE_PATH,
              RING_ENABLE_PATH);
    return false;
  }
  return true;
}

/* Ends the session because the ring was required and cannot serve. */
static void
ring_give_up (struct ring *r)
{
  pthread_mutex_lock (&r->lock);
  r->failed = true;
  pthread_mutex_unlock (&r->lock);
  fuse_session_exit (r->se);
  loop_wake (r->lp);
  pthread_kill (r->main_thread, SIGUSR2);
}

/* A queue's registration ended: ERR 0 (its entries wait for requests), or
 * a negative errno. */
static void
report_registered (struct queue *q, int err)
{
  struct ring *r = q->r;
  pthread_mutex_lock (&r->lock);
  if (err)
    r->reg_failed++;
  else
    r->registered++;
  bool last = r->registered + r->reg_failed == r->nqueues;
  bool ok = r->registered == r->nqueues;
  bool first_failure = err && r->reg_failed == 1;
  pthread_mutex_unlock (&r->lock);
  if (first_failure) {
    if (r->required)
      log_error ("transport=ring: FUSE io_uring queue %u: cannot register "
                 "with /dev/fuse: %s; stopping", q->qid, strerror (-err));
    else
      log_warn ("FUSE io_uring queue %u: cannot register with /dev/fuse: "
                "%s; serving through %s", q->qid, strerror (-err),
                r->lp ? "the session loop" : "libfuse's loop");
    if (r->required)
      ring_give_up (r);
  }
  if (last && ok)
    log_info ("serving through FUSE io_uring queues (%u CPUs)", r->nqueues);
}

/* --- Submissions ------------------------------------------------------ */

static struct io_uring_sqe *
get_sqe (struct queue *q)
{
  struct io_uring_sqe *sqe = io_uring_get_sqe (&q->uring);
  if (!sqe) {
    io_uring_submit (&q->uring);
    sqe = io_uring_get_sqe (&q->uring);
  }
  return sqe;
}

/* Puts E's command (REGISTER or COMMIT_AND_FETCH) in the queue's ring. */
static void
submit_cmd (struct queue *q, struct ent *e, enum fuse_uring_cmd cmd)
{
  struct io_uring_sqe *sqe = get_sqe (q);
  if (!sqe) {
    /* The ring has room for every entry's command and read at once. */
    log_error ("FUSE io_uring queue %u: no submission entry free; entry "
               "lost", q->qid);
    e->state = ENT_DEAD;
    return;
  }
  memset (sqe, 0, 2 * sizeof *sqe);     /* SQE128: the command area too */
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = q->r->fd;
  sqe->cmd_op = cmd;
  struct fuse_uring_cmd_req *req = (void *) sqe->cmd;
  req->qid = (uint16_t) q->qid;
  if (cmd == FUSE_IO_URING_CMD_REGISTER) {
    sqe->addr = (uint64_t) (uintptr_t) e->iov;
    sqe->len = 2;
  }
  else
    req->commit_id = e->commit_id;
  io_uring_sqe_set_data (sqe, e);
  e->last_cmd = cmd;
  e->state = ENT_KERNEL;
}

static void
arm_wake (struct queue *q)
{
  struct io_uring_sqe *sqe = get_sqe (q);
  if (sqe) {
    io_uring_prep_read (sqe, q->efd, &q->efd_value, sizeof q->efd_value, 0);
    io_uring_sqe_set_data64 (sqe, TAG_WAKE);
    q->wake_armed = true;
  }
}

static void
wake_queue (struct queue *q)
{
  uint64_t one = 1;
  ssize_t w;
  do
    w = write (q->efd, &one, sizeof one);
  while (w < 0 && errno == EINTR);
}

/* --- Replies ---------------------------------------------------------- */

/* Puts the reply's header in E's in_out and its arguments, DATA bytes,
 * already in E's payload, on record. */
static void
set_reply (struct ent *e, int error, size_t data)
{
  struct fuse_out_header out = {
    .len = (uint32_t) (sizeof out + data),
    .error = error,
    .unique = e->sink.unique,
  };
  memcpy (e->hdr->in_out, &out, sizeof out);
  e->hdr->ring_ent_in_out.payload_sz = (uint32_t) data;
}

/* E is answered: committed now by the queue's thread, or handed to it. */
static void
reply_done (struct ent *e, bool in_queue_thread)
{
  struct queue *q = e->q;
  if (in_queue_thread) {
    submit_cmd (q, e, FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
    return;
  }
  pthread_mutex_lock (&q->lock);
  e->state = ENT_DONE;
  e->next = q->done;
  q->done = e;
  pthread_mutex_unlock (&q->lock);
  wake_queue (q);
}

/* The thread serving an entry: its queue's (true) or a worker; and
 * whether the entry's reply went out (sink_send). */
static __thread bool in_queue_thread;
static __thread bool sink_used;

/* wire.c's writev for the reply to E's request: copied into E. */
static ssize_t
sink_send (struct wire_sink *sink, const struct iovec *iov, int count)
{
  struct ent *e = (struct ent *) sink;
  const struct fuse_out_header *out = iov[0].iov_base;
  size_t data = 0, total = iov[0].iov_len;
  int error = out->error;
  for (int i = 1; i < count; i++) {
    if (data + iov[i].iov_len > PAYLOAD) {
      log_error ("FUSE io_uring queue %u: a reply of more than %u bytes; "
                 "answered EIO", e->q->qid, (unsigned) PAYLOAD);
      error = -EIO;
      data = 0;
      break;
    }
    /* A reply may be built in the payload itself (a read). */
    if ((char *) iov[i].iov_base != e->payload + data)
      memmove (e->payload + data, iov[i].iov_base, iov[i].iov_len);
    data += iov[i].iov_len;
    total += iov[i].iov_len;
  }
  set_reply (e, error, error ? 0 : data);
  /* The entry is the queue thread's again from here (it may already hold
   * the next request): nothing here touches it after reply_done. */
  wire_set_sink (NULL);
  sink_used = true;
  reply_done (e, in_queue_thread);
  return (ssize_t) total;
}

/* Runs E's request through libfuse in this thread; the reply reaches E
 * through sink_send.  A request libfuse did not answer is answered EIO:
 * an entry must go back to the kernel. */
static void
process (struct ent *e, bool queue_thread)
{
  struct fuse_buf fb = { .size = e->req_len, .mem = e->req_mem };
  in_queue_thread = queue_thread;
  sink_used = false;
  wire_set_sink (&e->sink);
  fuse_session_process_buf (e->q->r->se, &fb);
  wire_set_sink (NULL);
  if (!sink_used) {
    set_reply (e, -EIO, 0);
    reply_done (e, queue_thread);
  }
}

/* --- Workers ---------------------------------------------------------- */

static void
work (void *arg, struct work *w)
{
  (void) arg;
  process (work_owner (w, struct ent, work), false);
}

static void
to_worker (struct ent *e)
{
  e->q->inflight++;
  workers_push (e->q->r->workers, &e->work);
}

/* --- Serving ---------------------------------------------------------- */


/* Puts E's member read in the queue's ring, and behind it, linked, the
 * COMMIT_AND_FETCH of its reply, written beforehand for the whole length:
 * the kernel runs the commit as soon as the read has filled the payload,
 * in the same io_uring_enter when the member's pages are cached.  A read
 * that fails or comes up short breaks the link: the commit ends with
 * -ECANCELED (E->link_pending tells reap to pass it over) and read_done
 * serves the read again. */
static bool
read_submit (struct queue *q, struct ent *e)
{
  /* Room for both entries, or neither is taken. */
  if (io_uring_sq_space_left (&q->uring) < 2) {
    io_uring_submit (&q->uring);
    if (io_uring_sq_space_left (&q->uring) < 2)
      return false;
  }
  struct io_uring_sqe *sqe = io_uring_get_sqe (&q->uring);
  io_uring_prep_read (sqe, e->fd, e->payload, (unsigned) e->len, e->off);
  io_uring_sqe_set_data64 (sqe, (uint64_t) (uintptr_t) e | TAG_READ);
  sqe->flags |= IOSQE_IO_LINK;
  set_reply (e, 0, e->len);
  submit_cmd (q, e, FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
  e->link_pending = true;
  e->state = ENT_READING;
  return true;
}

/* Starts the member read of a READ of `volume` into E's payload; false
 * when it is not one to serve that way (libfuse then serves it). */
static bool
read_start (struct queue *q, struct ent *e, const struct fuse_in_header *in,
            size_t arg_len)
{
  /* fh, offset and size: the part of fuse_read_in every minor has. */
  if (in->nodeid != VOLUME_INO
      || arg_len < offsetof (struct fuse_read_in, lock_owner))
    return false;
  const struct fuse_read_in *arg = (const void *) e->hdr->op_in;
  size_t len = arg->size;
  uint64_t off = arg->offset;
  if (len > MAX_WRITE)
    return false;
  int fd = array_read_fd (q->r->array, off, &len);
  if (fd < 0)
    return false;
  e->fd = fd;
  e->off = off;
  e->len = len;
  if (!read_submit (q, e))
    return false;
  q->inflight++;
  return true;
}

/* The member read of E ended with RES; its linked commit is with the
 * kernel, or cancelled if the read came up short. */
static void
read_done (struct queue *q, struct ent *e, int res)
{
  q->inflight--;
  if (res >= 0 && (size_t) res == e->len) {
    e->link_pending = false;
    e->state = ENT_KERNEL;
    return;
  }
  /* An error or a short read (the end of the member): served again the
   * synchronous way, which tries the other members and counts the error
   * (SPEC §6), then committed on its own. */
  ssize_t n = array_read (q->r->array, e->payload, e->len, e->off);
  set_reply (e, n < 0 ? (int) n : 0, n > 0 ? (size_t) n : 0);
  submit_cmd (q, e, FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
}

/* A request arrived in E.  ALONE: no other request came with it, and the
 * queue holds no other. */
static void
serve (struct queue *q, struct ent *e, bool alone)
{
  struct fuse_in_header in;
  memcpy (&in, e->hdr->in_out, sizeof in);
  const struct fuse_uring_ent_in_out *io = &e->hdr->ring_ent_in_out;
  e->commit_id = io->commit_id;
  e->sink.unique = in.unique;
  e->state = ENT_SERVING;
  __atomic_add_fetch (&q->r->served, 1, __ATOMIC_RELAXED);
  /* The first argument's length is what the header's length leaves
   * after the payload. */
  size_t payload = io->payload_sz;
  if (in.len < sizeof in + payload || payload > PAYLOAD
      || in.len - sizeof in - payload > FUSE_URING_OP_IN_OUT_SZ) {
    log_error ("FUSE io_uring queue %u: request %" PRIu64 " (opcode %u) "
               "has a length of %u bytes with a payload of %zu; answered "
               "EIO", q->qid, in.unique, in.opcode, in.len, payload);
    set_reply (e, -EIO, 0);
    submit_cmd (q, e, FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
    return;
  }
  size_t arg_len = in.len - sizeof in - payload;
  if (in.opcode == FUSE_READ && read_start (q, e, &in, arg_len))
    return;
  /* As libfuse would read it from /dev/fuse: header, first argument,
   * payload, end to end. */
  char *mem = e->payload - arg_len - sizeof in;
  memcpy (mem, &in, sizeof in);
  memcpy (mem + sizeof in, e->hdr->op_in, arg_len);
  e->req_mem = mem;
  e->req_len = in.len;
  if (wire_is_quick (in.opcode)
      || (in.opcode == FUSE_WRITE && alone && payload <= ALONE_WRITE_MAX
          && !array_writes_cross_network (q->r->array)))
    process (e, true);
  else
    to_worker (e);
}

/* Takes back the entries workers have answered, and commits them. */
static void
commit_done (struct queue *q)
{
  pthread_mutex_lock (&q->lock);
  struct ent *e = q->done;
  q->done = NULL;
  pthread_mutex_unlock (&q->lock);
  while (e) {
    struct ent *next = e->next;
    assert (q->inflight > 0);
    q->inflight--;
    submit_cmd (q, e, FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
    e = next;
  }
}

static void
reap (struct queue *q)
{
  struct io_uring_cqe *cqe;
  unsigned head, seen = 0, requests = 0;
  io_uring_for_each_cqe (&q->uring, head, cqe) {
    uint64_t tag = cqe->user_data;
    if (tag != TAG_WAKE && !(tag & TAG_READ) && cqe->res == 0)
      requests++;
  }
  io_uring_for_each_cqe (&q->uring, head, cqe) {
    seen++;
    uint64_t tag = cqe->user_data;
    if (tag == TAG_WAKE) {
      q->wake_armed = false;
      commit_done (q);
      continue;
    }
    if (tag & TAG_READ) {
      read_done (q, (struct ent *) (uintptr_t) (tag & ~TAG_READ), cqe->res);
      continue;
    }
    struct ent *e = (struct ent *) (uintptr_t) tag;
    int res = cqe->res;
    /* The commit behind a short read, after or before the read's own
     * completion. */
    if (res == -ECANCELED && e->link_pending) {
      e->link_pending = false;
      continue;
    }
    if (res == 0) {
      serve (q, e, requests == 1 && q->inflight == 0);
      continue;
    }
    if (res == -EAGAIN || res == -EINTR) {
      submit_cmd (q, e, e->last_cmd);   /* again */
      continue;
    }
    /* ENOTCONN: the kernel let the entry go (an unmount, an abort);
     * ECANCELED: the same as this thread ends. */
    e->state = ENT_DEAD;
    if (res != -ENOTCONN && res != -ECANCELED && res != -ECONNABORTED)
      log_warn ("FUSE io_uring queue %u: %s: %s", q->qid,
                e->last_cmd == FUSE_IO_URING_CMD_REGISTER ? "register"
                : "commit and fetch", strerror (-res));
  }
  io_uring_cq_advance (&q->uring, seen);
}

/* Registers Q's entries; 0 once the kernel holds them all, or a negative
 * errno. */
static int
register_entries (struct queue *q)
{
  for (unsigned i = 0; i < RING_DEPTH; i++) {
    if (q->qid == q->r->fault_qid)
      q->ents[i].iov[1].iov_len = 4096;         /* the test's fault */
    submit_cmd (q, &q->ents[i], FUSE_IO_URING_CMD_REGISTER);
  }
  for (;;) {
    int r = io_uring_submit (&q->uring);
    if (r < 0 && r != -EINTR && r != -EAGAIN)
      return r;
    /* A registration the kernel refused ends at once; one it took ends
     * only with a request. */
    struct io_uring_cqe *cqe;
    bool again = false;
    while (io_uring_peek_cqe (&q->uring, &cqe) == 0) {
      uint64_t tag = cqe->user_data;
      int res = cqe->res;
      if (res == 0 || tag == TAG_WAKE)
        break;                  /* a request already: served in the loop */
      struct ent *e = (struct ent *) (uintptr_t) tag;
      io_uring_cqe_seen (&q->uring, cqe);
      if (res == -EAGAIN || res == -EINTR) {
        submit_cmd (q, e, FUSE_IO_URING_CMD_REGISTER);
        again = true;
        continue;
      }
      e->state = ENT_DEAD;
      return res;
    }
    if (!again && r >= 0)
      return 0;
  }
}

static void *
queue_main (void *arg)
{
  struct queue *q = arg;
  struct ring *r = q->r;

  cpu_set_t set;
  CPU_ZERO (&set);
  CPU_SET (q->qid, &set);
  /* A CPU that is possible but not online takes no thread: its queue is
   * served wherever the scheduler puts it. */
  pthread_setaffinity_np (pthread_self (), sizeof set, &set);

  pthread_mutex_lock (&r->lock);
  while (!r->init_done && !r->stopping)
    pthread_cond_wait (&r->cond, &r->lock);
  bool go = r->granted && !r->stopping;
  pthread_mutex_unlock (&r->lock);
  if (!go)
    return NULL;

  int err = register_entries (q);
  report_registered (q, err);
  if (err)
    return NULL;

  for (;;) {
    pthread_mutex_lock (&r->lock);
    bool stopping = r->stopping;
    pthread_mutex_unlock (&r->lock);
    /* Every entry read or handed to a worker is back, and committed. */
    if (stopping && q->inflight == 0 && !io_uring_sq_ready (&q->uring))
      break;
    if (!q->wake_armed)
      arm_wake (q);
    int w = io_uring_submit_and_wait (&q->uring, 1);
    if (w < 0 && w != -EINTR && w != -EAGAIN && w != -EBUSY) {
      log_warn ("FUSE io_uring queue %u: io_uring_enter: %s", q->qid,
                strerror (-w));
      struct timespec ms = { 0, 1000000 };
      nanosleep (&ms, NULL);
    }
    reap (q);
  }
  return NULL;
}

/* wire.c: the INIT reply is sent; GRANTED: with FUSE_OVER_IO_URING. */
static void
on_init (void *arg, bool granted)
{
  struct ring *r = arg;
  pthread_mutex_lock (&r->lock);
  r->init_done = true;
  r->granted = granted;
  pthread_cond_broadcast (&r->cond);
  pthread_mutex_unlock (&r->lock);
  if (granted)
    return;
  if (r->required) {
    log_error ("transport=ring: the kernel did not offer FUSE over io_uring "
               "in INIT (%s); stopping", RING_ENABLE_PATH);
    ring_give_up (r);
  }
  else
    log_info ("serving through %s (the kernel did not offer FUSE over "
              "io_uring)", r->lp ? "the session loop" : "libfuse's loop");
}

/* A test-only fault (docs/architecture.md, Tests), read once by ring_new:
 * MDFUSE_FAULT_RING_REGISTER=Q makes queue Q offer the kernel a payload
 * buffer of one page, below the kernel's minimum (max_payload_sz in
 * fs/fuse/dev_uring.c), so that the kernel itself refuses the queue's
 * registrations (EINVAL), after INIT granted FUSE_OVER_IO_URING.  A refusal
 * faked here alone would not do: until a registration fails in the kernel,
 * it holds every request back waiting for the ring.  Returns Q (no queue
 * when Q is not below the number of queues), or UINT_MAX when the variable
 * is unset. */
static unsigned
fault_register_qid (void)
{
  const char *v = getenv ("MDFUSE_FAULT_RING_REGISTER");
  if (!v || !*v)
    return UINT_MAX;
  char *end;
  unsigned long qid = strtoul (v, &end, 10);
  if (*end || qid >= UINT_MAX) {
    log_warn ("MDFUSE_FAULT_RING_REGISTER=%s: not a queue number; ignored",
              v);
    return UINT_MAX;
  }
  log_info ("MDFUSE_FAULT_RING_REGISTER: queue %lu registers a payload the "
            "kernel refuses (a test's fault)", qid);
  return (unsigned) qid;
}

/* How many queues the kernel makes: one per possible CPU. */
static unsigned
possible_cpus (void)
{
  unsigned n = 0;
  FILE *f = fopen ("/sys/devices/system/cpu/possible", "r");
  if (f) {
    /* "0-3", "0", "0-3,6-7": the highest number, plus one. */
    char buf[256];
    if (fgets (buf, sizeof buf, f))
      for (char *p = buf; *p;) {
        if (*p < '0' || *p > '9') {
          p++;                  /* '-', ',' or the newline */
          continue;
        }
        char *end;
        unsigned long v = strtoul (p, &end, 10);
        if (v + 1 > n)
          n = (unsigned) v + 1;
        p = end;
      }
    fclose (f);
  }
  if (n == 0) {
    long c = sysconf (_SC_NPROCESSORS_CONF);
    n = c > 0 ? (unsigned) c : 1;
  }
  return n;
}

static int
queue_init (struct ring *r, struct queue *q, unsigned qid)
{
  q->r = r;
  q->qid = qid;
  q->efd = -1;
  pthread_mutex_init (&q->lock, NULL);
  for (unsigned i = 0; i < RING_DEPTH; i++) {
    struct ent *e = &q->ents[i];
    e->q = q;
    e->sink.send = sink_send;
    e->state = ENT_DEAD;
    if (posix_memalign ((void **) &e->hdr, 4096, sizeof *e->hdr) != 0
        || posix_memalign ((void **) &e->block, 4096, PREFIX + PAYLOAD) != 0)
      return -ENOMEM;
    memset (e->hdr, 0, sizeof *e->hdr);
    e->payload = e->block + PREFIX;
    e->iov[0] = (struct iovec) { e->hdr, sizeof *e->hdr };
    e->iov[1] = (struct iovec) { e->payload, PAYLOAD };
  }
  q->efd = eventfd (0, EFD_CLOEXEC);
  if (q->efd < 0)
    return -errno;
  struct io_uring_params p;
  memset (&p, 0, sizeof p);
  /* SQE128: FUSE's commands are in the big entries' command area.  Room
   * for every entry's command and member read, and the eventfd's read. */
  p.flags = IORING_SETUP_SQE128;
  int e = io_uring_queue_init_params (2 * RING_DEPTH + 2, &q->uring, &p);
  if (e < 0)
    return e;
  q->uring_ok = true;
  return 0;
}

struct ring *
ring_new (struct fuse_session *se, struct array *array, struct loop *lp,
          unsigned workers, bool required, char *reason, size_t reason_len)
{
  struct ring *r = calloc (1, sizeof *r);
  if (!r) {
    snprintf (reason, reason_len, "out of memory");
    return NULL;
  }
  r->se = se;
  r->array = array;
  r->lp = lp;
  r->required = required;
  r->fault_qid = fault_register_qid ();
  r->main_thread = pthread_self ();
  r->fd = fuse_session_fd (se);
  r->nqueues = possible_cpus ();
  pthread_mutex_init (&r->lock, NULL);
  pthread_cond_init (&r->cond, NULL);
  r->queues = calloc (r->nqueues, sizeof *r->queues);
  const char *why = "out of memory";
  int err = 0;
  if (!r->queues)
    goto fail;
  for (unsigned i = 0; i < r->nqueues; i++) {
    err = -queue_init (r, &r->queues[i], i);
    if (err) {
      why = "io_uring (SQE128) or memory";
      goto fail;
    }
  }
  /* The workers before the queues' threads, which hand them requests. */
  r->workers = workers_new (workers, work, r, &why);
  if (!r->workers) {
    err = errno;
    goto fail;
  }
  wire_want_ring (on_init, r);
  for (unsigned i = 0; i < r->nqueues; i++) {
    err = pthread_create (&r->queues[i].thread, NULL, queue_main,
                          &r->queues[i]);
    if (err) {
      why = "cannot start the queue threads";
      goto fail_threads;
    }
    r->queues[i].started = true;
  }
  return r;

fail_threads:
  /* INIT has not been received yet: nothing is registered. */
  ring_stop (r);
fail:
  wire_want_ring (NULL, NULL);
  snprintf (reason, reason_len, "%s%s%s", why, err ? ": " : "",
            err ? strerror (err) : "");
  ring_free (r);
  return NULL;
}

bool
ring_failed (struct ring *r)
{
  if (!r)
    return false;
  pthread_mutex_lock (&r->lock);
  bool f = r->failed;
  pthread_mutex_unlock (&r->lock);
  return f;
}

void
ring_stop (struct ring *r)
{
  if (!r)
    return;
  pthread_mutex_lock (&r->lock);
  r->stopping = true;
  pthread_cond_broadcast (&r->cond);
  pthread_mutex_unlock (&r->lock);
  /* The workers first: what they hold goes back to the queues. */
  workers_stop (r->workers);
  for (unsigned i = 0; i < r->nqueues; i++) {
    struct queue *q = &r->queues[i];
    if (!q->started)
      continue;
    wake_queue (q);
    pthread_join (q->thread, NULL);
    q->started = false;
    /* Closing the ring cancels the entries the kernel still holds. */
    if (q->uring_ok)
      io_uring_queue_exit (&q->uring);
    q->uring_ok = false;
  }
  uint64_t served = __atomic_load_n (&r->served, __ATOMIC_RELAXED);
  pthread_mutex_lock (&r->lock);
  bool used = r->registered == r->nqueues;
  pthread_mutex_unlock (&r->lock);
  if (used)
    log_info ("FUSE io_uring queues: %" PRIu64 " requests served", served);
}

void
ring_free (struct ring *r)
{
  if (!r)
    return;
  wire_want_ring (NULL, NULL);
  for (unsigned i = 0; r->queues && i < r->nqueues; i++) {
    struct queue *q = &r->queues[i];
    if (q->uring_ok)
      io_uring_queue_exit (&q->uring);
    if (q->efd >= 0)
      close (q->efd);
    for (unsigned j = 0; j < RING_DEPTH; j++) {
      free (q->ents[j].hdr);
      free (q->ents[j].block);
    }
    pthread_mutex_destroy (&q->lock);
  }
  free (r->queues);
  workers_free (r->workers);
  pthread_cond_destroy (&r->cond);
  pthread_mutex_destroy (&r->lock);
  free (r);
}
