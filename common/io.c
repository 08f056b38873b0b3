#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/io.h"
#include "common/io_nbd.h"
#include "common/log.h"

int
io_pread_full (struct io_file *f, void *buf, size_t len, uint64_t off)
{
  char *p = buf;
  while (len > 0) {
    ssize_t r = f->ops->pread (f, p, len, off);
    if (r < 0)
      return (int) r;
    if (r == 0)
      return -EIO;              /* short read: file shorter than expected */
    p += r;
    len -= (size_t) r;
    off += (uint64_t) r;
  }
  return 0;
}

int
io_pwrite_full (struct io_file *f, const void *buf, size_t len, uint64_t off)
{
  const char *p = buf;
  while (len > 0) {
    ssize_t r = f->ops->pwrite (f, p, len, off);
    if (r < 0)
      return (int) r;
    if (r == 0)
      return -ENOSPC;           /* a short write that makes no progress */
    p += r;
    len -= (size_t) r;
    off += (uint64_t) r;
  }
  return 0;
}

int
io_fdatasync (struct io_file *f)
{
  return f->ops->fdatasync (f);
}

int64_t
io_size (struct io_file *f)
{
  return f->ops->size (f);
}

void
io_close (struct io_file *f)
{
  if (f)
    f->ops->close (f);
}

int
io_truncate (struct io_file *f, uint64_t size)
{
  return f->ops->truncate ? f->ops->truncate (f, size) : -EOPNOTSUPP;
}

int
io_identity (struct io_file *f, struct io_identity *id)
{
  return f->ops->identity ? f->ops->identity (f, id) : -EOPNOTSUPP;
}

void
io_advise_willneed (struct io_file *f, uint64_t off, uint64_t len)
{
  if (f->ops->advise_willneed)
    f->ops->advise_willneed (f, off, len);
}

void
io_data_extent (struct io_file *f, uint64_t off, uint64_t end,
                uint64_t *data, uint64_t *hole)
{
  *data = off;
  *hole = end;
  if (!f->ops->seek_data || !f->ops->seek_hole)
    return;
  int64_t d = f->ops->seek_data (f, off);
  if (d == -ENXIO || (d >= 0 && (uint64_t) d >= end)) {
    *data = *hole = end;        /* no data before END */
    return;
  }
  if (d < 0)
    return;                     /* cannot tell: all data */
  int64_t h = f->ops->seek_hole (f, (uint64_t) d);
  *data = (uint64_t) d;
  *hole = h >= 0 && (uint64_t) h < end ? (uint64_t) h : end;
}

int
io_punch_hole (struct io_file *f, uint64_t off, uint64_t len)
{
  return f->ops->punch_hole ? f->ops->punch_hole (f, off, len) : -EOPNOTSUPP;
}

uint64_t
io_rtt_ns (struct io_file *f)
{
  return f->ops->rtt_ns ? f->ops->rtt_ns (f) : 0;
}

unsigned
io_max_inflight (struct io_file *f)
{
  return f->ops->max_inflight ? f->ops->max_inflight (f) : 0;
}

bool
io_can_reconnect (const struct io_file *f)
{
  return f->ops->reconnect != NULL;
}

int
io_reconnect (struct io_file *f)
{
  return f->ops->reconnect ? f->ops->reconnect (f) : 0;
}

bool
io_is_uri (const char *name)
{
  return io_nbd_scheme_len (name) > 0;
}

struct io_file *
io_open (const char *name, int flags)
{
  if (io_is_uri (name))
    return io_nbd_open (name, flags);
  if (strstr (name, "://")) {
    log_error ("%s: not a file name, and not an NBD URI (nbd://, nbds://, "
               "nbd+unix://)", name);
    errno = EINVAL;
    return NULL;
  }
  return io_posix_open (name, flags);
}

int
io_split_list (char *list, char **out, size_t max)
{
  size_t n = 0;
  char *p = list;
  while (*p) {
    if (*p == ':') {
      p++;                      /* an empty name */
      continue;
    }
    size_t len = io_nbd_uri_len (p);
    if (len == 0)
      len = strcspn (p, ":");
    if (n == max) {
      log_error ("too many members (at most %zu)", max);
      return -1;
    }
    out[n++] = p;
    p += len;
    if (*p)
      *p++ = '\0';
  }
  return (int) n;
}

/* ---- POSIX backend ---- */

struct posix_priv {
  int fd;
};

static ssize_t
posix_pread (struct io_file *f, void *buf, size_t len, uint64_t off)
{
  struct posix_priv *p = f->priv;
  ssize_t r;
  do
    r = pread (p->fd, buf, len, (off_t) off);
  while (r < 0 && errno == EINTR);
  return r < 0 ? -errno : r;
}

/* The most one pwrite(2) to a member file carries.  A buffered write
 * brings its range into the page cache as folios as large as the write
 * (Linux 6.16 and later on ext4, earlier on XFS), and every later small
 * write into such a folio costs time in proportion to its size: on ext4
 * with Linux 6.18, a random 4 KiB pwrite into a file last written in
 * 1 MiB pieces took 15.5 us, into one written in 256 KiB pieces 4.0 us
 * (the same as 4 KiB pieces).  A volume's large writes (up to 1 MiB, a
 * sequential writer, mkfs) would otherwise slow down every small write
 * that comes after them to the same place, for as long as the pages stay
 * cached; four system calls per MiB cost nothing beside that. */
enum { MEMBER_WRITE_PIECE = 256 << 10 };

static ssize_t
posix_pwrite (struct io_file *f, const void *buf, size_t len, uint64_t off)
{
  struct posix_priv *p = f->priv;
  const char *b = buf;
  size_t done = 0;
  while (done < len) {
    size_t n = len - done;
    if (n > MEMBER_WRITE_PIECE)
      n = MEMBER_WRITE_PIECE;
    ssize_t r = pwrite (p->fd, b + done, n, (off_t) (off + done));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return done > 0 ? (ssize_t) done : -errno;   /* the error comes next */
    done += (size_t) r;
    if ((size_t) r < n)
      break;                    /* short: the caller goes on or gives up */
  }
  return (ssize_t) done;
}

static int
posix_fdatasync (struct io_file *f)
{
  struct posix_priv *p = f->priv;
  /* Never retried on failure: the kernel reports a lost write once. */
  return fdatasync (p->fd) < 0 ? -errno : 0;
}

static int64_t
posix_size (struct io_file *f)
{
  struct posix_priv *p = f->priv;
  struct stat st;
  if (fstat (p->fd, &st) < 0)
    return -errno;
  return st.st_size;
}

static void
posix_close (struct io_file *f)
{
  struct posix_priv *p = f->priv;
  close (p->fd);
  free (p);
  free (f->name);
  free (f);
}

static int
posix_truncate (struct io_file *f, uint64_t size)
{
  struct posix_priv *p = f->priv;
  return ftruncate (p->fd, (off_t) size) < 0 ? -errno : 0;
}

static void
posix_advise_willneed (struct io_file *f, uint64_t off, uint64_t len)
{
  struct posix_priv *p = f->priv;
  posix_fadvise (p->fd, (off_t) off, (off_t) len, POSIX_FADV_WILLNEED);
}

static int
posix_identity (struct io_file *f, struct io_identity *id)
{
  struct posix_priv *p = f->priv;
  struct stat st;
  if (fstat (p->fd, &st) < 0)
    return -errno;
  id->dev = (uint64_t) st.st_dev;
  id->ino = (uint64_t) st.st_ino;
  return 0;
}

static int
posix_copy_range (struct io_file *src, struct io_file *dst, uint64_t off,
                  uint64_t len)
{
  int in = ((struct posix_priv *) src->priv)->fd;
  int out = ((struct posix_priv *) dst->priv)->fd;
  loff_t oin = (loff_t) off, oout = (loff_t) off;
  uint64_t left = len;
  while (left > 0) {
    ssize_t n = copy_file_range (in, &oin, out, &oout, left, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP
                  || errno == EINVAL) && left == len)
      return -EOPNOTSUPP;       /* not here: the caller copies itself */
    if (n < 0)
      return -errno;
    if (n == 0)
      return -EIO;              /* the source is shorter than expected */
    left -= (uint64_t) n;
  }
  return 0;
}

static int64_t
posix_seek (struct io_file *f, uint64_t off, int whence)
{
  struct posix_priv *p = f->priv;
  off_t r = lseek (p->fd, (off_t) off, whence);
  if (r < 0)
    return errno == EINVAL ? -EOPNOTSUPP : -errno;
  return r;
}

static int64_t
posix_seek_data (struct io_file *f, uint64_t off)
{
  return posix_seek (f, off, SEEK_DATA);
}

static int64_t
posix_seek_hole (struct io_file *f, uint64_t off)
{
  return posix_seek (f, off, SEEK_HOLE);
}

static int
posix_punch_hole (struct io_file *f, uint64_t off, uint64_t len)
{
  struct posix_priv *p = f->priv;
  if (fallocate (p->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                 (off_t) off, (off_t) len) < 0)
    return errno == EOPNOTSUPP || errno == ENOSYS ? -EOPNOTSUPP : -errno;
  return 0;
}

static const struct io_ops posix_ops = {
  .pread = posix_pread,
  .pwrite = posix_pwrite,
  .fdatasync = posix_fdatasync,
  .size = posix_size,
  .close = posix_close,
  .truncate = posix_truncate,
  .advise_willneed = posix_advise_willneed,
  .identity = posix_identity,
  .copy_range = posix_copy_range,
  .seek_data = posix_seek_data,
  .seek_hole = posix_seek_hole,
  .punch_hole = posix_punch_hole,
};

struct io_file *
io_posix_open (const char *path, int flags)
{
  int oflags = O_CLOEXEC;
  oflags |= (flags & IO_OPEN_READONLY) ? O_RDONLY : O_RDWR;
  if (flags & IO_OPEN_CREATE)
    oflags |= O_CREAT;
  if (flags & IO_OPEN_EXCL)
    oflags |= O_EXCL;

  int fd = open (path, oflags, 0600);
  if (fd < 0) {
    int e = errno;
    if (e == EEXIST)
      log_error ("%s: already exists (use --force to overwrite)", path);
    else if (e == EACCES || e == EPERM || e == EROFS)
      log_error ("%s: %s; mdfuse needs to %s it: run as root, or give the "
                 "user access to the file%s", path, strerror (e),
                 (flags & IO_OPEN_READONLY) ? "read" : "read and write",
                 e == EROFS ? " on a writable filesystem" : "");
    else if (e == ENOENT)
      log_error ("%s: no such file (check the path; members and bitmap are "
                 "made by 'mdfusectl create')", path);
    else
      log_error ("%s: %s", path, strerror (e));
    errno = e;
    return NULL;
  }

  struct stat st;
  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode)) {
    int e = errno;
    if (!S_ISREG (st.st_mode)) {
      log_error ("%s: not a regular file", path);
      e = EINVAL;
    }
    else
      log_error ("%s: %s", path, strerror (e));
    close (fd);
    errno = e;
    return NULL;
  }

  if (flags & IO_OPEN_LOCK) {
    struct flock fl = { .l_type = (flags & IO_OPEN_READONLY) ? F_RDLCK : F_WRLCK,
                        .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
    if (fcntl (fd, F_OFD_SETLK, &fl) < 0) {
      int e = errno;
      if (e == EAGAIN || e == EACCES) {
        log_error ("%s: in use by another mdfuse (the file is locked)", path);
        e = EBUSY;
      }
      else
        log_error ("%s: cannot lock: %s", path, strerror (e));
      close (fd);
      errno = e;
      return NULL;
    }
  }

  struct io_file *f = calloc (1, sizeof *f);
  struct posix_priv *p = calloc (1, sizeof *p);
  char *name = strdup (path);
  if (!f || !p || !name) {
    free (f);
    free (p);
    free (name);
    close (fd);
    log_error ("%s: out of memory", path);
    errno = ENOMEM;
    return NULL;
  }
  p->fd = fd;
  f->ops = &posix_ops;
  f->priv = p;
  f->name = name;
  return f;
}

int
io_posix_fd (struct io_file *f)
{
  if (f->ops != &posix_ops)
    return -1;
  return ((struct posix_priv *) f->priv)->fd;
}

int
io_copy_range (struct io_file *src, struct io_file *dst, uint64_t off,
               uint64_t len, void *buf, size_t buflen)
{
  if (src->ops == dst->ops && src->ops->copy_range) {
    int r = src->ops->copy_range (src, dst, off, len);
    if (r != -EOPNOTSUPP)
      return r;
  }
  for (uint64_t done = 0; done < len;) {
    size_t n = (size_t) (len - done < buflen ? len - done : buflen);
    int r = io_pread_full (src, buf, n, off + done);
    if (r == 0)
      r = io_pwrite_full (dst, buf, n, off + done);
    if (r < 0)
      return r;
    done += n;
  }
  return 0;
}
