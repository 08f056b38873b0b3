/* The NBD backend: a member on a Network Block Device server, through
 * libnbd's asynchronous API.
 *
 * One request at a time per member: the caller that holds the file's lock
 * submits its command and drives the connection with poll(2) until the
 * command completes or the member timeout runs out.  A request that runs
 * out of time closes the connection (so libnbd touches its buffer no
 * more), as does a connection that drops; from then on every request of
 * that file fails at once, with no network round trip, until io_reconnect
 * (mdfusectl re-add of a faulty member) connects anew.  Nothing here runs a thread of its
 * own, so an open file survives the daemon's fork.
 */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libnbd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common/io.h"
#include "common/io_nbd.h"
#include "common/log.h"

/* NBD servers take requests of at most 32 MiB; larger ones are split (the
 * io_*_full wrappers loop over short transfers). */
#define NBD_MAX_REQUEST (32u << 20)
/* A zero request carries no payload, only a length. */
#define NBD_MAX_ZERO (1u << 30)

static unsigned member_timeout = IO_NBD_DEFAULT_TIMEOUT;

void
io_nbd_set_timeout (unsigned seconds)
{
  __atomic_store_n (&member_timeout, seconds ? seconds : 1, __ATOMIC_RELAXED);
}

static unsigned
timeout_seconds (void)
{
  return __atomic_load_n (&member_timeout, __ATOMIC_RELAXED);
}

/* ---- names ---- */

static const char *const schemes[] = {
  "nbd://", "nbds://", "nbd+unix://", "nbds+unix://", "nbd+vsock://",
  "nbds+vsock://",
};

size_t
io_nbd_scheme_len (const char *name)
{
  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
    if (strncmp (name, schemes[i], strlen (schemes[i])) == 0)
      return strlen (schemes[i]);
  return 0;
}

size_t
io_nbd_uri_len (const char *list)
{
  size_t n = io_nbd_scheme_len (list);
  if (n == 0)
    return 0;
  const char *p = list + n;
  /* user[:password]@, when an '@' comes before the path. */
  const char *at = strchr (p, '@');
  if (at && at < p + strcspn (p, "/?"))
    p = at + 1;
  /* The host: an IPv6 address in brackets, or a name. */
  if (*p == '[') {
    const char *close = strchr (p, ']');
    p = close ? close + 1 : p + strlen (p);
  }
  else
    p += strcspn (p, ":/?");
  /* A port: ':' and digits, then the path, the query, the end or the
   * next member.  A ':' followed by anything else is the separator. */
  if (*p == ':' && p[1] >= '0' && p[1] <= '9') {
    const char *q = p + 1;
    while (*q >= '0' && *q <= '9')
      q++;
    if (*q == '/' || *q == '?' || *q == ':' || *q == '\0')
      p = q;
  }
  /* The path and the query, up to the next member. */
  p += strcspn (p, ":");
  return (size_t) (p - list);
}

void
io_nbd_display_name (const char *uri, char *buf, size_t len)
{
  size_t n = io_nbd_scheme_len (uri);
  const char *auth = uri + n;
  const char *at = strchr (auth, '@');
  const char *colon = strchr (auth, ':');
  if (n && at && at < auth + strcspn (auth, "/?") && colon && colon < at)
    snprintf (buf, len, "%.*s%s", (int) (colon - uri), uri, at);
  else
    snprintf (buf, len, "%s", uri);
}

/* ---- the connection ---- */

/* Requests up to this size count for the round-trip time. */
#define RTT_MAX_LEN (64u << 10)

struct nbd_priv {
  /* Requests go out side by side, many on the connection at once; one
   * thread at a time, the driver, moves the connection on (poll and
   * libnbd's notify calls, without the lock) and the others wait on COND
   * for their answers or for the driver's turn.  The connection is closed
   * only under the lock with no driver. */
  pthread_mutex_t lock;
  pthread_cond_t cond;          /* a drive pass ended; the connection changed */
  bool driving;
  unsigned gen;                 /* connections closed so far */
  struct nbd_handle *nbd;       /* NULL: no connection (lost, or closed) */
  char *uri;                    /* as given, to connect again */
  int flags;                    /* IO_OPEN_* */
  int64_t size;
  bool can_flush, can_fua, can_zero;
  char why[256];                /* why the last connection failed */
  uint64_t rtt_ns;              /* moving average of small requests (atomic) */
};

struct nbd_req {
  bool done;
  int err;
};

static int
req_complete (void *opaque, int *error)
{
  struct nbd_req *r = opaque;
  r->err = *error;
  /* Read by the request's own thread, which may not hold the lock. */
  __atomic_store_n (&r->done, true, __ATOMIC_RELEASE);
  return 1;                     /* retired: nothing to collect later */
}

static double
now_mono (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static bool
connection_gone (struct nbd_handle *h)
{
  return nbd_aio_is_dead (h) > 0 || nbd_aio_is_closed (h) > 0;
}

/* One pass of the connection: wait for it (at most SECONDS) and let libnbd
 * read or write what it can, answers' callbacks included.  0, or
 * -ENOTCONN when the connection ended (P->why says why). */
static int
drive_once (struct nbd_priv *p, struct nbd_handle *h, double seconds)
{
  if (connection_gone (h)) {
    if (!p->why[0])
      snprintf (p->why, sizeof p->why, "%s", nbd_get_error ()
                ? nbd_get_error () : "the server closed the connection");
    return -ENOTCONN;
  }
  unsigned dir = nbd_aio_get_direction (h);
  struct pollfd pfd = {
    .fd = nbd_aio_get_fd (h),
    .events = (short) (((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0)
                       | ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0)),
  };
  if (pfd.fd < 0) {
    snprintf (p->why, sizeof p->why, "%s", nbd_get_error ()
              ? nbd_get_error () : "no connection");
    return -ENOTCONN;
  }
  int n = poll (&pfd, 1, (int) (seconds * 1000) + 1);
  if (n < 0 && errno != EINTR) {
    snprintf (p->why, sizeof p->why, "poll: %s", strerror (errno));
    return -ENOTCONN;
  }
  if (n <= 0)
    return 0;
  int r = 0;
  if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
    r = nbd_aio_notify_read (h);
  else if (pfd.revents & POLLOUT)
    r = nbd_aio_notify_write (h);
  if (r < 0)
    snprintf (p->why, sizeof p->why, "%s", nbd_get_error ()
              ? nbd_get_error () : "connection lost");
  return connection_gone (h) ? -ENOTCONN : 0;
}

/* Move the connection on until DONE says so, the connection ends, or
 * DEADLINE passes.  0 when DONE; -ENOTCONN when the connection ended
 * (P->why says why); -ETIMEDOUT. */
static int
drive (struct nbd_priv *p, struct nbd_handle *h, bool (*done) (void *),
       void *arg, double deadline)
{
  while (!done (arg)) {
    double left = deadline - now_mono ();
    if (left <= 0)
      return -ETIMEDOUT;
    int r = drive_once (p, h, left);
    if (r < 0 && !done (arg))
      return r;
  }
  return 0;
}

static bool
req_is_done (void *arg)
{
  return __atomic_load_n (&((struct nbd_req *) arg)->done, __ATOMIC_ACQUIRE);
}

static bool
handshake_done (void *arg)
{
  return nbd_aio_is_connecting (arg) <= 0;
}

static bool
never (void *arg)
{
  return false;
}

/* A plain connection that leaves this machine carries the volume's data
 * in clear: say so. */
static void
warn_if_exposed (struct nbd_handle *h, const char *name)
{
  if (nbd_get_tls_negotiated (h) > 0)
    return;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  int fd = nbd_aio_get_fd (h);
  if (fd < 0 || getpeername (fd, (struct sockaddr *) &ss, &sl) < 0)
    return;
  char addr[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *) &ss;
    if ((ntohl (in->sin_addr.s_addr) >> 24) == 127)
      return;
    inet_ntop (AF_INET, &in->sin_addr, addr, sizeof addr);
  }
  else if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
    if (IN6_IS_ADDR_LOOPBACK (&in6->sin6_addr)
        || (IN6_IS_ADDR_V4MAPPED (&in6->sin6_addr)
            && in6->sin6_addr.s6_addr[12] == 127))
      return;
    inet_ntop (AF_INET6, &in6->sin6_addr, addr, sizeof addr);
  }
  else
    return;                     /* a Unix socket, vsock: this machine */
  log_warn ("%s: plain NBD to %s, not encrypted or authenticated: anyone on "
            "the way can read and change the volume's data; use nbds:// "
            "(TLS)", name, addr);
}

/* Connect P to its URI within the timeout; 0, or a negative errno with a
 * message naming the URI logged. */
static int
nbd_connect (struct nbd_priv *p, const char *name)
{
  double deadline = now_mono () + timeout_seconds ();
  struct nbd_handle *h;
  int r;
  for (int attempt = 1;; attempt++) {
    h = nbd_create ();
    if (!h) {
      log_error ("%s: %s", name, nbd_get_error ());
      return -ENOMEM;
    }
    if (nbd_supports_uri (h) <= 0) {
      log_error ("%s: this libnbd cannot read NBD URIs (built without "
                 "libxml2)", name);
      nbd_close (h);
      return -ENOTSUP;
    }
    p->why[0] = '\0';
    /* tls-psk-file= and tls-certificates= name local files: the URI
     * comes from the administrator. */
    nbd_set_uri_allow_local_file (h, true);
    if (nbd_aio_connect_uri (h, p->uri) < 0) {
      int e = nbd_get_errno ();
      log_error ("%s: cannot connect: %s", name, nbd_get_error ());
      nbd_close (h);
      return -(e ? e : EINVAL);
    }
    r = drive (p, h, handshake_done, h, deadline);
    if (r == 0 && nbd_aio_is_ready (h) <= 0) {
      r = -ENOTCONN;
      if (!p->why[0])
        snprintf (p->why, sizeof p->why, "%s", nbd_get_error ()
                  ? nbd_get_error () : "the handshake failed");
    }
    /* A server that hangs up in the handshake may be one that serves one
     * client and has not yet seen our last connection end (a probe just
     * before, a connection just given up): a few more tries, briefly. */
    if (r == -ENOTCONN && attempt < 5 && strstr (p->why, "disconnected")
        && now_mono () + 0.3 < deadline) {
      nbd_close (h);
      nanosleep (&(struct timespec) { .tv_nsec = 200 * 1000 * 1000 }, NULL);
      continue;
    }
    break;
  }
  if (r == -ETIMEDOUT) {
    log_error ("%s: cannot connect: no answer within %u s (member_timeout)",
               name, timeout_seconds ());
    nbd_close (h);
    return r;
  }
  if (r < 0) {
    log_error ("%s: cannot connect: %s", name, p->why);
    nbd_close (h);
    return r;
  }
  int64_t size = nbd_get_size (h);
  if (size < 0) {
    log_error ("%s: cannot get the export's size: %s", name, nbd_get_error ());
    nbd_close (h);
    return -EIO;
  }
  if (!(p->flags & IO_OPEN_READONLY) && nbd_is_read_only (h) > 0) {
    log_error ("%s: the export is read-only; a member must be writable",
               name);
    nbd_close (h);
    return -EROFS;
  }
  if (p->nbd == NULL && p->size >= 0 && p->size != size && p->size != 0)
    log_warn ("%s: the export was %" PRId64 " bytes and is now %" PRId64,
              name, p->size, size);
  p->size = size;
  p->can_flush = nbd_can_flush (h) > 0;
  p->can_fua = nbd_can_fua (h) > 0;
  p->can_zero = nbd_can_zero (h) > 0;
  if (!p->can_flush && !(p->flags & IO_OPEN_READONLY))
    log_warn ("%s: the server cannot flush: a write counts as durable when "
              "the server acknowledges it", name);
  warn_if_exposed (h, name);
  p->nbd = h;
  return 0;
}

/* The connection is given up: closed at once, without a goodbye (the
 * server may not be there to hear it).  Requests fail from now on. */
static void
drop_connection (struct nbd_priv *p)
{
  while (p->driving)
    pthread_cond_wait (&p->cond, &p->lock);
  if (p->nbd) {
    nbd_close (p->nbd);
    p->nbd = NULL;
    p->gen++;
  }
  pthread_cond_broadcast (&p->cond);
}

/* Wait, with the lock held, for REQ's answer: driving the connection when
 * no other thread does, else waiting for the driver.  0 when answered;
 * -ETIMEDOUT at DEADLINE; -ENOTCONN when the connection ended (P->why);
 * -ECONNRESET when another request closed it meanwhile. */
static int
wait_answer (struct nbd_priv *p, struct nbd_req *req, double deadline)
{
  unsigned gen = p->gen;
  for (;;) {
    if (req_is_done (req))
      return 0;
    if (p->gen != gen || !p->nbd)
      return -ECONNRESET;
    double left = deadline - now_mono ();
    if (left <= 0)
      return -ETIMEDOUT;
    double slice = left < 0.05 ? left : 0.05;
    if (!p->driving) {
      p->driving = true;
      struct nbd_handle *h = p->nbd;
      pthread_mutex_unlock (&p->lock);
      int r = drive_once (p, h, slice);
      pthread_mutex_lock (&p->lock);
      p->driving = false;
      pthread_cond_broadcast (&p->cond);
      if (r < 0 && !req_is_done (req))
        return r;
    }
    else {
      struct timespec ts;
      clock_gettime (CLOCK_MONOTONIC, &ts);
      long ns = ts.tv_nsec + (long) (slice * 1e9);
      ts.tv_sec += ns / 1000000000L;
      ts.tv_nsec = ns % 1000000000L;
      pthread_cond_timedwait (&p->cond, &p->lock, &ts);
    }
  }
}

enum nbd_op { OP_READ, OP_WRITE, OP_FLUSH, OP_ZERO };

static const char *const op_names[] = { "read", "write", "flush", "zero" };

/* One request under the file's lock, within the member timeout.  0 or a
 * negative errno.  A lost connection or a request out of time is logged
 * here, once: the connection is closed and every later request fails at
 * once with -ENOTCONN (the array logs those as member errors). */
static int
request (struct io_file *f, enum nbd_op op, void *buf, size_t len,
         uint64_t off)
{
  struct nbd_priv *p = f->priv;
  unsigned t = timeout_seconds ();
  double deadline = now_mono () + t;
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  ts.tv_sec += t;
  /* Behind a request that hangs: it gives up at its own deadline, and
   * this one fails at its own. */
  int e = pthread_mutex_clocklock (&p->lock, CLOCK_MONOTONIC, &ts);
  if (e == ETIMEDOUT)
    return -ETIMEDOUT;
  if (e)
    return -e;
  if (!p->nbd) {
    pthread_mutex_unlock (&p->lock);
    return -ENOTCONN;
  }
  double start = now_mono ();
  struct nbd_req req = { 0 };
  nbd_completion_callback cb = { .callback = req_complete, .user_data = &req };
  int64_t cookie = -1;
  switch (op) {
  case OP_READ:
    cookie = nbd_aio_pread (p->nbd, buf, len, off, cb, 0);
    break;
  case OP_WRITE:
    cookie = nbd_aio_pwrite (p->nbd, buf, len, off, cb, 0);
    break;
  case OP_FLUSH:
    cookie = nbd_aio_flush (p->nbd, cb, 0);
    break;
  case OP_ZERO:
    cookie = nbd_aio_zero (p->nbd, len, off, cb, 0);
    break;
  }
  int r;
  if (cookie < 0) {
    r = -(nbd_get_errno () ? nbd_get_errno () : EIO);
    if (connection_gone (p->nbd)) {
      log_error ("%s: connection lost: %s", f->name, nbd_get_error ());
      drop_connection (p);
      r = -ENOTCONN;
    }
  }
  else {
    r = wait_answer (p, &req, deadline);
    if (r == -ETIMEDOUT) {
      log_error ("%s: no answer to a %zu-byte %s at %" PRIu64 " within %u s "
                 "(member_timeout); connection closed", f->name, len,
                 op_names[op], off, t);
      drop_connection (p);
    }
    else if (r == -ECONNRESET)
      r = -ENOTCONN;            /* closed by another request, which said why */
    else if (r < 0) {
      log_error ("%s: connection lost: %s", f->name, p->why);
      drop_connection (p);
    }
    else if (req.err && p->nbd && connection_gone (p->nbd)) {
      /* The connection ended with the request in flight. */
      log_error ("%s: connection lost: %s", f->name, p->why[0] ? p->why
                 : "the server closed the connection");
      drop_connection (p);
      r = -ENOTCONN;
    }
    else if (req.err)
      r = -req.err;             /* the server's answer; the connection stays */
    if (r == 0 && len <= RTT_MAX_LEN) {
      /* The round trip: small requests, whose transfer takes no time;
       * each counts for an eighth. */
      uint64_t ns = (uint64_t) ((now_mono () - start) * 1e9);
      uint64_t old = __atomic_load_n (&p->rtt_ns, __ATOMIC_RELAXED);
      __atomic_store_n (&p->rtt_ns, old ? old - old / 8 + ns / 8 : ns,
                        __ATOMIC_RELAXED);
    }
  }
  pthread_mutex_unlock (&p->lock);
  return r;
}

/* Requests side by side on the connection: as many as write-behind
 * should keep in flight. */
static unsigned
nbd_max_inflight_op (struct io_file *f)
{
  (void) f;
  return 8;
}

static uint64_t
nbd_rtt_ns_op (struct io_file *f)
{
  struct nbd_priv *p = f->priv;
  return __atomic_load_n (&p->rtt_ns, __ATOMIC_RELAXED);
}

static ssize_t
nbd_pread_op (struct io_file *f, void *buf, size_t len, uint64_t off)
{
  struct nbd_priv *p = f->priv;
  if (off >= (uint64_t) p->size)
    return 0;                   /* the end of the export */
  if (len > (uint64_t) p->size - off)
    len = (size_t) ((uint64_t) p->size - off);
  if (len > NBD_MAX_REQUEST)
    len = NBD_MAX_REQUEST;
  int r = request (f, OP_READ, buf, len, off);
  return r < 0 ? r : (ssize_t) len;
}

static ssize_t
nbd_pwrite_op (struct io_file *f, const void *buf, size_t len, uint64_t off)
{
  struct nbd_priv *p = f->priv;
  if (off >= (uint64_t) p->size)
    return -ENOSPC;             /* an export does not grow */
  if (len > (uint64_t) p->size - off)
    len = (size_t) ((uint64_t) p->size - off);
  if (len > NBD_MAX_REQUEST)
    len = NBD_MAX_REQUEST;
  int r = request (f, OP_WRITE, (void *) buf, len, off);
  return r < 0 ? r : (ssize_t) len;
}

static int
nbd_fdatasync_op (struct io_file *f)
{
  struct nbd_priv *p = f->priv;
  if (!p->can_flush) {
    /* Nothing to flush; but a lost connection is still an error. */
    pthread_mutex_lock (&p->lock);
    bool up = p->nbd != NULL;
    pthread_mutex_unlock (&p->lock);
    return up ? 0 : -ENOTCONN;
  }
  return request (f, OP_FLUSH, NULL, 0, 0);
}

static int64_t
nbd_size_op (struct io_file *f)
{
  return ((struct nbd_priv *) f->priv)->size;
}

static int
nbd_punch_hole_op (struct io_file *f, uint64_t off, uint64_t len)
{
  struct nbd_priv *p = f->priv;
  if (!p->can_zero)
    return -EOPNOTSUPP;
  /* NBD_CMD_WRITE_ZEROES without NO_HOLE: the server reads zeros there
   * from now on, and may free the space. */
  while (len > 0) {
    uint64_t n = len < NBD_MAX_ZERO ? len : NBD_MAX_ZERO;
    int r = request (f, OP_ZERO, NULL, (size_t) n, off);
    if (r == -ENOTSUP || r == -EOPNOTSUPP)
      return -EOPNOTSUPP;
    if (r < 0)
      return r;
    off += n;
    len -= n;
  }
  return 0;
}

static int
nbd_reconnect_op (struct io_file *f)
{
  struct nbd_priv *p = f->priv;
  pthread_mutex_lock (&p->lock);
  drop_connection (p);
  int r = nbd_connect (p, f->name);
  if (r == 0)
    log_info ("%s: connected", f->name);
  pthread_mutex_unlock (&p->lock);
  return r;
}

static void
nbd_close_op (struct io_file *f)
{
  struct nbd_priv *p = f->priv;
  pthread_mutex_lock (&p->lock);
  if (p->nbd && !connection_gone (p->nbd)
      && nbd_aio_disconnect (p->nbd, 0) == 0) {
    /* A goodbye, within a short time: a hung server is not waited for. */
    unsigned t = timeout_seconds ();
    drive (p, p->nbd, never, NULL, now_mono () + (t < 5 ? t : 5));
  }
  drop_connection (p);
  pthread_mutex_unlock (&p->lock);
  pthread_mutex_destroy (&p->lock);
  pthread_cond_destroy (&p->cond);
  free (p->uri);
  free (p);
  free (f->name);
  free (f);
}

static const struct io_ops nbd_ops = {
  .pread = nbd_pread_op,
  .pwrite = nbd_pwrite_op,
  .fdatasync = nbd_fdatasync_op,
  .size = nbd_size_op,
  .close = nbd_close_op,
  .punch_hole = nbd_punch_hole_op,
  .reconnect = nbd_reconnect_op,
  .rtt_ns = nbd_rtt_ns_op,
  .max_inflight = nbd_max_inflight_op,
  /* No identity: an export is no file on a local filesystem, so it never
   * shares one with the bitmap, and two URIs are compared as names. */
};

struct io_file *
io_nbd_open (const char *uri, int flags)
{
  char name[1024];
  io_nbd_display_name (uri, name, sizeof name);
  struct io_file *f = calloc (1, sizeof *f);
  struct nbd_priv *p = calloc (1, sizeof *p);
  if (f)
    f->name = strdup (name);
  if (p)
    p->uri = strdup (uri);
  if (!f || !p || !f->name || !p->uri) {
    if (f)
      free (f->name);
    if (p)
      free (p->uri);
    free (f);
    free (p);
    log_error ("%s: out of memory", name);
    errno = ENOMEM;
    return NULL;
  }
  pthread_mutex_init (&p->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init (&ca);
  pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
  pthread_cond_init (&p->cond, &ca);
  pthread_condattr_destroy (&ca);
  p->flags = flags;
  f->ops = &nbd_ops;
  f->priv = p;
  int r = nbd_connect (p, f->name);
  if (r < 0) {
    pthread_mutex_destroy (&p->lock);
    free (p->uri);
    free (p);
    free (f->name);
    free (f);
    errno = -r;
    return NULL;
  }
  return f;
}
