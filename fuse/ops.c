/* The FUSE operations: a directory holding one file, `volume`, whose
 * reads, writes and syncs go to the array. */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/array.h"
#include "common/log.h"
#include "fuse/mdfuse.h"
#include "fuse/wire.h"


static void
fill_attr (struct mdfuse *mf, fuse_ino_t ino, struct stat *st)
{
  memset (st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_uid = mf->uid;
  st->st_gid = mf->gid;
  st->st_atime = st->st_mtime = st->st_ctime = mf->mount_time;
  if (ino == ROOT_INO) {
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
  }
  else {
    st->st_mode = S_IFREG | 0600;
    st->st_nlink = 1;
    st->st_size = (off_t) array_size (mf->array);
    st->st_blocks = st->st_size / 512;
    st->st_blksize = 4096;
  }
}

static void
op_init (void *userdata, struct fuse_conn_info *conn)
{
  struct mdfuse *mf = userdata;
  conn->max_write = MAX_WRITE;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  if (conn->capable & FUSE_CAP_ASYNC_DIO)
    conn->want |= FUSE_CAP_ASYNC_DIO;
  /* The volume's size never changes and nothing else writes it: what the
   * kernel caches of it is never stale. */
  conn->want &= ~(unsigned) FUSE_CAP_AUTO_INVAL_DATA;
  /* -o writeback_cache (SPEC §7): the kernel keeps buffered writes in its
   * page cache and sends them as ordinary writes when it writes them back
   * (or on fsync, which writes back before it sends FSYNC).  They reach
   * array_write like any other: the bit before the data (SPEC §4). */
  if (mf->want_writeback_cache) {
    if (conn->capable & FUSE_CAP_WRITEBACK_CACHE) {
      conn->want |= FUSE_CAP_WRITEBACK_CACHE;
      mf->writeback_cache = true;
      log_info ("writeback cache on (-o writeback_cache): buffered writes "
                "to %s stay in the kernel's page cache until written back; "
                "only what fsync or O_SYNC covered survives a crash",
                VOLUME_NAME);
    }
    else
      log_warn ("-o writeback_cache: the kernel does not offer "
                "FUSE_WRITEBACK_CACHE; %s is served direct_io",
                VOLUME_NAME);
  }
}

static void
op_lookup (fuse_req_t req, fuse_ino_t parent, const char *name)
{
  struct mdfuse *mf = fuse_req_userdata (req);
  if (parent != ROOT_INO || strcmp (name, VOLUME_NAME) != 0) {
    fuse_reply_err (req, ENOENT);
    return;
  }
  struct fuse_entry_param e;
  memset (&e, 0, sizeof e);
  e.ino = VOLUME_INO;
  e.attr_timeout = 3600;
  e.entry_timeout = 3600;
  fill_attr (mf, VOLUME_INO, &e.attr);
  fuse_reply_entry (req, &e);
}

static void
op_getattr (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  struct mdfuse *mf = fuse_req_userdata (req);
  if (ino != ROOT_INO && ino != VOLUME_INO) {
    fuse_reply_err (req, ENOENT);
    return;
  }
  struct stat st;
  fill_attr (mf, ino, &st);
  fuse_reply_attr (req, &st, 3600);
}

static void
op_setattr (fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
            struct fuse_file_info *fi)
{
  struct mdfuse *mf = fuse_req_userdata (req);
  if (ino != VOLUME_INO) {
    fuse_reply_err (req, EPERM);
    return;
  }
  /* The volume never changes size (SPEC §7). */
  if ((to_set & FUSE_SET_ATTR_SIZE)
      && (uint64_t) attr->st_size != array_size (mf->array)) {
    fuse_reply_err (req, EINVAL);
    return;
  }
  if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    fuse_reply_err (req, EPERM);
    return;
  }
  struct stat st;
  fill_attr (mf, ino, &st);       /* times: accepted, not kept */
  fuse_reply_attr (req, &st, 3600);
}

static void
op_open (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  if (ino != VOLUME_INO) {
    fuse_reply_err (req, EISDIR);
    return;
  }
  struct mdfuse *mf = fuse_req_userdata (req);
  /* By default no page cache in the kernel for the volume: every write
   * reaches us (and the members) before it returns, and fsync has nothing
   * hidden above us.  A shared mapping (wire.c) is the exception: its
   * pages are written back as ordinary writes, and msync or fsync waits
   * for them.
   *
   * With -o writeback_cache, an open without O_DIRECT goes through the
   * page cache: a write returns once it is there, the kernel writes it
   * back as ordinary writes, and fsync (or close) writes back every dirty
   * page before it sends FSYNC (FLUSH).  An O_DIRECT open stays direct_io
   * where the kernel has FUSE_DIRECT_IO_ALLOW_MMAP: its writes and reads
   * then first write back the dirty pages of their range, and its writes
   * drop the cached ones; without it, it too goes through the page
   * cache, whose O_DIRECT path does the same.  The cache is kept across
   * opens: the volume changes only through this inode. */
  bool cached = mf->writeback_cache
    && (!(fi->flags & O_DIRECT)
        || !(wire_init_granted () & FUSE_DIRECT_IO_ALLOW_MMAP));
  fi->direct_io = !cached;
  fi->keep_cache = mf->writeback_cache;
  /* Direct writes through this file side by side: the range lock alone
   * orders the overlapping ones (SPEC §4 step 3). */
  uint32_t extra = !cached && mf->parallel_writes
    ? FOPEN_PARALLEL_DIRECT_WRITES : 0;
  __atomic_add_fetch (&mf->open_count, 1, __ATOMIC_ACQ_REL);
  if (wire_reply_open (req, fi, extra) != 0)
    __atomic_sub_fetch (&mf->open_count, 1, __ATOMIC_ACQ_REL);
}

/* One read buffer per FUSE thread, kept: a fresh 1 MiB allocation per
 * request would leave glibc arenas holding tens of MiB.  Freed when the
 * thread ends. */
static pthread_key_t read_buf_key;
static pthread_once_t read_buf_once = PTHREAD_ONCE_INIT;

static void
read_buf_make_key (void)
{
  pthread_key_create (&read_buf_key, free);
}

static void *
thread_read_buf (void)
{
  pthread_once (&read_buf_once, read_buf_make_key);
  void *buf = pthread_getspecific (read_buf_key);
  if (!buf) {
    if (posix_memalign (&buf, 4096, MAX_WRITE) != 0)
      return NULL;
    pthread_setspecific (read_buf_key, buf);
  }
  return buf;
}

static void
op_read (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
         struct fuse_file_info *fi)
{
  struct mdfuse *mf = fuse_req_userdata (req);
  if (size > MAX_WRITE)
    size = MAX_WRITE;
  /* The session loop serves reads in its ring (loop.c): here come those
   * it has no room for, and every read under libfuse's loop. */
  void *read_buf = thread_read_buf ();
  if (!read_buf) {
    fuse_reply_err (req, ENOMEM);
    return;
  }
  ssize_t r = array_read (mf->array, read_buf, size, (uint64_t) off);
  if (r < 0)
    fuse_reply_err (req, (int) -r);
  else
    fuse_reply_buf (req, read_buf, (size_t) r);
}

/* Makes durable every write that completed before the call: returns
 * only after a member sync that began after them has completed, with that
 * sync's result.  Concurrent callers share syncs: one that began late
 * enough, running or done, serves every caller whose writes it covers.
 * A FLUSH with nothing unsynced returns at once (a close after reads
 * only); an FSYNC (ALWAYS) waits for a sync that began after it arrived,
 * so that a member that can no longer sync is reported even when nothing
 * was written since. */
static int
sync_volume (struct mdfuse *mf, bool always)
{
  pthread_mutex_lock (&mf->sync_lock);
  uint64_t need = __atomic_load_n (&mf->write_gen, __ATOMIC_ACQUIRE);
  uint64_t arrived = mf->syncs_started;
  int r;
  for (;;) {
    if (!always && mf->synced_gen >= need) {
      r = 0;
      break;
    }
    if (mf->sync_running) {
      uint64_t seen = mf->syncs_done;
      bool covers = mf->sync_running_gen >= need
        && (!always || mf->syncs_started > arrived);
      while (mf->syncs_done == seen)
        pthread_cond_wait (&mf->sync_cond, &mf->sync_lock);
      if (covers) {
        r = mf->sync_done_err;  /* its error is ours too */
        break;
      }
      continue;                 /* began too early: try again */
    }
    uint64_t gen = __atomic_load_n (&mf->write_gen, __ATOMIC_ACQUIRE);
    mf->sync_running = true;
    mf->sync_running_gen = gen;
    mf->syncs_started++;
    pthread_mutex_unlock (&mf->sync_lock);
    r = array_flush (mf->array);
    pthread_mutex_lock (&mf->sync_lock);
    mf->sync_running = false;
    if (r == 0 && gen > mf->synced_gen)
      mf->synced_gen = gen;
    mf->sync_done_err = r;
    mf->syncs_done++;
    pthread_cond_broadcast (&mf->sync_cond);
    break;
  }
  pthread_mutex_unlock (&mf->sync_lock);
  return r;
}

static void
op_write (fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
          off_t off, struct fuse_file_info *fi)
{
  struct mdfuse *mf = fuse_req_userdata (req);
  ssize_t r = array_write (mf->array, buf, size, (uint64_t) off);
  if (r < 0) {
    fuse_reply_err (req, (int) -r);
    return;
  }
  __atomic_add_fetch (&mf->write_gen, 1, __ATOMIC_ACQ_REL);
  /* A write that runs past the end of the volume is cut there (SPEC §7):
   * a direct write then returns short, and the next one fails with
   * ENOSPC.  The kernel takes no short answer from the writeback of its
   * page cache (-o writeback_cache): it would count the pages past the
   * end as written.  So that writeback fails with ENOSPC, which fsync,
   * fdatasync, msync or close then return; the part inside the volume is
   * written all the same, as the cached pages say. */
  if ((size_t) r < size && fi->writepage) {
    fuse_reply_err (req, ENOSPC);
    return;
  }
  /* An O_DSYNC/O_SYNC write is durable before its reply. */
  if (fi->flags & (O_DSYNC | O_SYNC)) {
    int s = sync_volume (mf, false);
    if (s < 0) {
      fuse_reply_err (req, -s);
      return;
    }
  }
  fuse_reply_write (req, (size_t) r);
}

static void
op_flush (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  struct mdfuse *mf = fuse_req_userdata (req);
  int r = sync_volume (mf, false);
  fuse_reply_err (req, r < 0 ? -r : 0);
}

static void
op_fsync (fuse_req_t req, fuse_ino_t ino, int datasync,
          struct fuse_file_info *fi)
{
  struct mdfuse *mf = fuse_req_userdata (req);
  int r = sync_volume (mf, true);
  fuse_reply_err (req, r < 0 ? -r : 0);
}

static void
op_release (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  struct mdfuse *mf = fuse_req_userdata (req);
  if (ino == VOLUME_INO) {
    int left = __atomic_sub_fetch (&mf->open_count, 1, __ATOMIC_SEQ_CST);
    assert (left >= 0);         /* every release has its open */
    if (left == 0)
      stop_volume_closed ();
  }
  fuse_reply_err (req, 0);
}

static void
op_opendir (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  if (ino != ROOT_INO) {
    fuse_reply_err (req, ENOTDIR);
    return;
  }
  fuse_reply_open (req, fi);
}

static void
op_readdir (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
            struct fuse_file_info *fi)
{
  struct mdfuse *mf = fuse_req_userdata (req);
  char buf[512];
  size_t used = 0;
  static const struct { const char *name; fuse_ino_t ino; } ents[] = {
    { ".", ROOT_INO }, { "..", ROOT_INO }, { VOLUME_NAME, VOLUME_INO },
  };
  for (off_t i = off; i < 3; i++) {
    struct stat st;
    fill_attr (mf, ents[i].ino, &st);
    size_t need = fuse_add_direntry (req, buf + used, sizeof buf - used,
                                     ents[i].name, &st, i + 1);
    if (need > sizeof buf - used || used + need > size)
      break;
    used += need;
  }
  fuse_reply_buf (req, buf, used);
}

static void
op_statfs (fuse_req_t req, fuse_ino_t ino)
{
  struct mdfuse *mf = fuse_req_userdata (req);
  struct statvfs sv;
  memset (&sv, 0, sizeof sv);
  sv.f_bsize = sv.f_frsize = 4096;
  sv.f_blocks = array_size (mf->array) / 4096;
  sv.f_files = 2;
  sv.f_namemax = 255;
  fuse_reply_statfs (req, &sv);
}

static void
op_fallocate (fuse_req_t req, fuse_ino_t ino, int mode, off_t off,
              off_t len, struct fuse_file_info *fi)
{
  /* Would change the size or punch holes in one member's view. */
  fuse_reply_err (req, EOPNOTSUPP);
}

const struct fuse_lowlevel_ops mdfuse_ops = {
  .init = op_init,
  .lookup = op_lookup,
  .getattr = op_getattr,
  .setattr = op_setattr,
  .open = op_open,
  .read = op_read,
  .write = op_write,
  .flush = op_flush,
  .fsync = op_fsync,
  .release = op_release,
  .opendir = op_opendir,
  .readdir = op_readdir,
  .statfs = op_statfs,
  .fallocate = op_fallocate,
  .getxattr = op_getxattr,
  .listxattr = op_listxattr,
  .setxattr = op_setxattr,
};
