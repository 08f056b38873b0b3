/* Flags of the FUSE protocol that libfuse 3.14 (Debian 12) cannot send,
 * added to its replies on their way to /dev/fuse; and the replies that go
 * to a ring entry instead (FUSE over io_uring, ring.c).
 *
 * FOPEN_PARALLEL_DIRECT_WRITES, in an OPEN reply (struct fuse_open_out,
 * Linux 6.2 and later): the kernel then takes the inode lock shared, not
 * exclusive, for each direct write through that open file, so writes to
 * `volume` reach the daemon side by side.  Overlapping writes are still
 * ordered, by the array's range lock (SPEC §4 step 3): that is the only
 * ordering mdfuse relies on.  libfuse 3.14's struct fuse_file_info has no
 * bit for it.
 *
 * FUSE_DIRECT_IO_ALLOW_MMAP, in the INIT reply (struct fuse_init_out,
 * flags2; Linux 6.6 and later): mmap(MAP_SHARED) of a direct_io file is
 * allowed instead of failing with ENODEV.  The kernel then keeps the
 * mapped pages in its page cache and writes them back as ordinary WRITE
 * requests, which go through array_write like any other (the bit durable
 * before the data, SPEC §4); a direct write or read of a range first
 * writes back its dirty mapped pages, and a direct write drops the cached
 * ones.  libfuse 3.14's struct fuse_conn_info has 32 bits of capabilities
 * and the flag is bit 36.
 *
 * FUSE_HANDLE_KILLPRIV_V2, in the INIT reply (flags; Linux 5.11 and
 * later), with -o writeback_cache only: mdfuse says it clears the setuid
 * and setgid bits and security.capability itself on a write, which for
 * `volume` holds trivially (its mode is 0600 and cannot change, and it
 * takes no such attribute).  The kernel then marks the mount SB_NOSEC,
 * and a buffered write no longer asks the daemon for the file's
 * security.capability (a GETXATTR round trip per write otherwise, where
 * a write into the page cache costs far less).  libfuse 3.14 has no
 * capability bit for it.
 *
 * FUSE_OVER_IO_URING, in the INIT reply (flags2; Linux 6.14 and later):
 * the daemon will register io_uring queues and take requests from them
 * (ring.c).  A request taken from a ring entry is answered in that entry,
 * not on /dev/fuse: the thread that runs it through libfuse names the
 * entry with wire_set_sink, and its reply, known by its unique id, goes
 * there once the flags above are added.
 *
 * How: libfuse sends every reply through the session's custom I/O
 * (fuse_session_custom_io, libfuse 3.13 and later), and a reply is sent
 * by the thread that builds it, before the call that builds it returns.
 * wire_reply_open marks its thread for the one OPEN reply it sends; the
 * INIT reply is known by its request's unique id, noted by wire_request
 * along with the flags the kernel offered. */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/log.h"
#include "fuse/wire.h"

/* The INIT flags mdfuse adds to libfuse's where the kernel offers them
 * (FUSE_OVER_IO_URING too, when ring.c asks for it;
 * FUSE_HANDLE_KILLPRIV_V2 with -o writeback_cache). */
static uint64_t init_want = FUSE_DIRECT_IO_ALLOW_MMAP;
/* What the INIT reply got of them. */
static uint64_t init_granted;
/* The opens of `volume` may go through the page cache (-o
 * writeback_cache): a shared mapping works without
 * FUSE_DIRECT_IO_ALLOW_MMAP. */
static bool cached_opens;
static void (*ring_on_init) (void *arg, bool granted);
static void *ring_on_init_arg;

/* Where this thread's reply to one request goes (wire_set_sink). */
static __thread struct wire_sink *reply_sink;

/* The INIT request (there is one per session, answered before the kernel
 * sends anything else): its unique id and the flags it offered. */
static uint64_t init_unique;
static uint64_t init_offered;
static bool init_seen;

/* The open flags this thread's next OPEN reply gets (wire_reply_open). */
static __thread uint32_t open_extra;

void
wire_request (const void *buf, size_t len)
{
  const struct fuse_in_header *in = buf;
  if (len < sizeof *in || in->opcode != FUSE_INIT)
    return;
  const struct fuse_init_in *arg = (const void *) (in + 1);
  uint64_t offered = 0;
  /* flags since 7.6, flags2 since 7.36 (only with FUSE_INIT_EXT). */
  if (len >= sizeof *in + offsetof (struct fuse_init_in, flags)
      + sizeof arg->flags) {
    offered = arg->flags;
    if ((arg->flags & FUSE_INIT_EXT)
        && len >= sizeof *in + offsetof (struct fuse_init_in, flags2)
        + sizeof arg->flags2)
      offered |= (uint64_t) arg->flags2 << 32;
  }
  __atomic_store_n (&init_unique, in->unique, __ATOMIC_RELAXED);
  __atomic_store_n (&init_offered, offered, __ATOMIC_RELAXED);
  __atomic_store_n (&init_seen, true, __ATOMIC_RELEASE);
}

void
wire_set_sink (struct wire_sink *sink)
{
  reply_sink = sink;
}

void
wire_want_ring (void (*on_init) (void *arg, bool granted), void *arg)
{
  ring_on_init = on_init;
  ring_on_init_arg = arg;
  if (on_init)
    init_want |= FUSE_OVER_IO_URING;
  else
    init_want &= ~FUSE_OVER_IO_URING;
}

void
wire_want_cached_opens (void)
{
  cached_opens = true;
  init_want |= FUSE_HANDLE_KILLPRIV_V2;
}

uint64_t
wire_init_granted (void)
{
  return __atomic_load_n (&init_granted, __ATOMIC_ACQUIRE);
}

/* A reply, to this thread's sink if it is for the sink's request, else
 * to /dev/fuse. */
static ssize_t
full_writev (int fd, const struct iovec *iov, int count)
{
  const struct fuse_out_header *out = iov[0].iov_base;
  if (reply_sink && iov[0].iov_len >= sizeof *out
      && out->unique == reply_sink->unique)
    return reply_sink->send (reply_sink, iov, count);
  ssize_t w;
  do
    w = writev (fd, iov, count);
  while (w < 0 && errno == EINTR);
  return w;
}

/* The OPEN reply in IOV, its open flags with open_extra added. */
static ssize_t
send_open (int fd, const struct iovec *iov)
{
  struct fuse_open_out arg;
  memcpy (&arg, iov[1].iov_base, sizeof arg);
  arg.open_flags |= open_extra;
  open_extra = 0;
  const struct iovec patched[2] = { iov[0], { &arg, sizeof arg } };
  return full_writev (fd, patched, 2);
}

/* The INIT reply in IOV (N bytes of struct fuse_init_out), with what
 * mdfuse wants of what the kernel offered added to its flags and flags2.
 * Nothing is added to flags2 unless libfuse's reply carries
 * FUSE_INIT_EXT: only then does the kernel read it. */
static ssize_t
send_init (int fd, const struct iovec *iov, size_t n, uint64_t *granted)
{
  struct fuse_init_out arg;
  memset (&arg, 0, sizeof arg);
  memcpy (&arg, iov[1].iov_base, n);
  uint64_t offered = __atomic_load_n (&init_offered, __ATOMIC_RELAXED);
  uint64_t add = init_want & offered;
  if (!(arg.flags & FUSE_INIT_EXT))
    add &= UINT32_MAX;
  arg.flags |= (uint32_t) add;
  arg.flags2 |= (uint32_t) (add >> 32);
  if ((init_want & FUSE_DIRECT_IO_ALLOW_MMAP)
      && !(add & FUSE_DIRECT_IO_ALLOW_MMAP) && !cached_opens)
    log_info ("/dev/fuse: the kernel does not offer "
              "FUSE_DIRECT_IO_ALLOW_MMAP (Linux 6.6 and later): "
              "mmap(MAP_SHARED) of %s fails with ENODEV", VOLUME_NAME);
  *granted = add;
  __atomic_store_n (&init_granted, add, __ATOMIC_RELEASE);
  const struct iovec patched[2] = { iov[0], { &arg, n } };
  return full_writev (fd, patched, 2);
}

static ssize_t
wire_writev (int fd, struct iovec *iov, int count, void *userdata)
{
  (void) userdata;
  const struct fuse_out_header *out = iov[0].iov_base;
  if (count == 2 && iov[0].iov_len == sizeof *out && out->error == 0
      && open_extra && iov[1].iov_len == sizeof (struct fuse_open_out))
    return send_open (fd, iov);
  if (!__atomic_load_n (&init_seen, __ATOMIC_ACQUIRE)
      || out->unique != __atomic_load_n (&init_unique, __ATOMIC_RELAXED))
    return full_writev (fd, iov, count);
  /* The INIT reply. */
  __atomic_store_n (&init_seen, false, __ATOMIC_RELAXED);
  uint64_t granted = 0;
  ssize_t w;
  if (count == 2 && iov[0].iov_len == sizeof *out && out->error == 0
      && iov[1].iov_len >= offsetof (struct fuse_init_out, flags2)
      + sizeof (uint32_t)
      && iov[1].iov_len <= sizeof (struct fuse_init_out))
    w = send_init (fd, iov, iov[1].iov_len, &granted);
  else
    w = full_writev (fd, iov, count);
  /* The kernel has taken the reply (its INIT is done) when writev
   * returns: ring.c may register its queues now. */
  if (ring_on_init)
    ring_on_init (ring_on_init_arg,
                  w >= 0 && (granted & FUSE_OVER_IO_URING) != 0);
  return w;
}

/* libfuse's own loop (-o nouring, -s) receives through this. */
static ssize_t
wire_read (int fd, void *buf, size_t len, void *userdata)
{
  (void) userdata;
  ssize_t n = read (fd, buf, len);
  if (n > 0) {
    int e = errno;
    wire_request (buf, (size_t) n);
    errno = e;
  }
  return n;
}

int
wire_install (struct fuse_session *se)
{
  /* libfuse splices nothing for mdfuse (no write_buf operation, no
   * splice options), so plain read and writev are all it needs. */
  static const struct fuse_custom_io io = {
    .read = wire_read,
    .writev = wire_writev,
  };
  /* The session keeps its mounted descriptor: only the I/O calls change
   * (fuse_session_unmount still unmounts its mount point). */
  int r = fuse_session_custom_io (se, &io, fuse_session_fd (se));
  if (r < 0) {
    log_warn ("/dev/fuse: cannot add mdfuse's flags to libfuse's replies "
              "(%s): direct writes to %s one at a time, no "
              "mmap(MAP_SHARED)", strerror (-r), VOLUME_NAME);
    return r;
  }
  return 0;
}

int
wire_reply_open (fuse_req_t req, const struct fuse_file_info *fi,
                 uint32_t extra)
{
  open_extra = extra;
  int r = fuse_reply_open (req, fi);
  open_extra = 0;               /* also when the reply was never sent */
  return r;
}

bool
wire_is_quick (uint32_t opcode)
{
  switch (opcode) {
  case FUSE_INIT:
  case FUSE_DESTROY:
  case FUSE_LOOKUP:
  case FUSE_FORGET:
  case FUSE_BATCH_FORGET:
  case FUSE_GETATTR:
  case FUSE_SETATTR:
  case FUSE_ACCESS:
  case FUSE_OPEN:
  case FUSE_RELEASE:
  case FUSE_OPENDIR:
  case FUSE_READDIR:
  case FUSE_READDIRPLUS:
  case FUSE_RELEASEDIR:
  case FUSE_STATFS:
  case FUSE_LISTXATTR:
  case FUSE_FALLOCATE:
  case FUSE_INTERRUPT:
    return true;
  default:
    return false;
  }
}
