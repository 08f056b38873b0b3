/* The one I/O interface under every member and bitmap file access.
 *
 * Everything on disk that mdfuse touches goes through a struct io_file, so
 * tests can put a recording, failing or crash-simulating backend under the
 * real array code.  Backends return the number of bytes transferred, or a
 * negative errno.
 */
#ifndef MDFUSE_IO_H
#define MDFUSE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct io_file;

/* Where a file lives: two io_files with the same identity are one file,
 * and files with different devs are on different filesystems. */
struct io_identity {
  uint64_t dev, ino;
};

struct io_ops {
  ssize_t (*pread) (struct io_file *f, void *buf, size_t len, uint64_t off);
  ssize_t (*pwrite) (struct io_file *f, const void *buf, size_t len,
                     uint64_t off);
  int (*fdatasync) (struct io_file *f);
  /* Size in bytes, or a negative errno. */
  int64_t (*size) (struct io_file *f);
  void (*close) (struct io_file *f);

  /* Optional (NULL: the backend cannot; the wrappers below say what then
   * happens). */
  /* Set the size to SIZE bytes; bytes past the old end read as zeros. */
  int (*truncate) (struct io_file *f, uint64_t size);
  /* [OFF, OFF+LEN) will be read soon: start reading it ahead. */
  void (*advise_willneed) (struct io_file *f, uint64_t off, uint64_t len);
  int (*identity) (struct io_file *f, struct io_identity *id);
  /* Copy [OFF, OFF+LEN) of SRC (same backend) to the same place in DST
   * without a trip through the caller; -EOPNOTSUPP when not possible for
   * these two files (the caller then copies through a buffer). */
  int (*copy_range) (struct io_file *src, struct io_file *dst, uint64_t off,
                     uint64_t len);
  /* The first byte at or after OFF that is data (SEEK_DATA), or that is
   * in a hole (SEEK_HOLE; the end of the file counts as one); -ENXIO when
   * there is no data from OFF on. */
  int64_t (*seek_data) (struct io_file *f, uint64_t off);
  int64_t (*seek_hole) (struct io_file *f, uint64_t off);
  /* [OFF, OFF+LEN) reads as zeros from now on, and takes no space. */
  int (*punch_hole) (struct io_file *f, uint64_t off, uint64_t len);
  /* A file reached over a connection (NBD): close the connection, if
   * any, and make a new one (for a member being re-added after a fault:
   * the old connection may be dead without knowing it).  0 when up. */
  int (*reconnect) (struct io_file *f);
  /* For a member on a connection: the round-trip time of its recent
   * small requests, in ns (0: none measured yet). */
  uint64_t (*rtt_ns) (struct io_file *f);
  /* How many requests it serves at once (NULL: as many as are sent). */
  unsigned (*max_inflight) (struct io_file *f);
};

struct io_file {
  const struct io_ops *ops;
  char *name;                   /* path or URI (without secrets), for messages */
  void *priv;
};

/* Full transfers: loop over short reads/writes.  Return 0 or a negative
 * errno; a read past end of file is -EIO ("short read"). */
int io_pread_full (struct io_file *f, void *buf, size_t len, uint64_t off);
int io_pwrite_full (struct io_file *f, const void *buf, size_t len,
                    uint64_t off);
int io_fdatasync (struct io_file *f);
int64_t io_size (struct io_file *f);
void io_close (struct io_file *f);
/* -EOPNOTSUPP when the backend cannot. */
int io_truncate (struct io_file *f, uint64_t size);
int io_identity (struct io_file *f, struct io_identity *id);
/* A hint; nothing when the backend takes none. */
void io_advise_willneed (struct io_file *f, uint64_t off, uint64_t len);
/* Where the data of F from OFF on ends before END: *DATA is the first
 * data byte at or after OFF (END if none), *HOLE the first hole byte
 * after *DATA (END at most).  A backend that cannot tell says it is all
 * data.  For copies that keep a file sparse. */
void io_data_extent (struct io_file *f, uint64_t off, uint64_t end,
                     uint64_t *data, uint64_t *hole);
int io_punch_hole (struct io_file *f, uint64_t off, uint64_t len);
/* A new connection under F (see io_ops.reconnect); 0 for a file that
 * has none. */
int io_reconnect (struct io_file *f);
/* The round-trip time of F's recent small requests in ns; 0 when F is not
 * on a connection or none was measured. */
uint64_t io_rtt_ns (struct io_file *f);
/* How many requests F serves at once; 0: no limit. */
unsigned io_max_inflight (struct io_file *f);
/* Whether F is on a connection that io_reconnect can make again. */
bool io_can_reconnect (const struct io_file *f);

/* Copy [OFF, OFF+LEN) of SRC to the same place in DST: by the backend's
 * copy_range when both files have it (for POSIX files, copy_file_range in
 * the kernel), else through BUF (BUFLEN bytes).  0 or a negative errno; on error the caller cannot tell which
 * side failed and should retry through its own read and write. */
int io_copy_range (struct io_file *src, struct io_file *dst, uint64_t off,
                   uint64_t len, void *buf, size_t buflen);

/* Any backend by its name: an NBD URI (nbd://, nbds://, nbd+unix://...;
 * common/io_nbd.h) or a path (io_posix_open).  NULL with errno set; a
 * message naming the file has been logged. */
struct io_file *io_open (const char *name, int flags);
/* NAME is a URI (an NBD member), not a path: no realpath, stat, lock or
 * unlink applies to it. */
bool io_is_uri (const char *name);
/* Splits a member list in place (SPEC §7): names separated by ':', where
 * the ':' of a URI's port or address belongs to the URI (io_nbd_uri_len);
 * empty names are skipped.  The number of names, or -1 (logged) when
 * there are more than MAX. */
int io_split_list (char *list, char **out, size_t max);

/* POSIX backend. */
enum { IO_OPEN_READONLY = 1, IO_OPEN_LOCK = 2, IO_OPEN_CREATE = 4,
       IO_OPEN_EXCL = 8 };
/* Opens PATH; with IO_OPEN_LOCK takes an exclusive OFD lock on the whole
 * file (refused with -EBUSY if another process holds it).  Returns NULL
 * with errno set; a message naming the path has been logged. */
struct io_file *io_posix_open (const char *path, int flags);
/* The file descriptor under a POSIX io_file, or -1 for other backends.
 * For one caller only: the daemon's io_uring read path (array_read_fd),
 * which reads members itself.  Everything else goes through io_ops. */
int io_posix_fd (struct io_file *f);

#endif
