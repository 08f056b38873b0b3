/* mdfuse: the daemon.  FUSE glue only: it opens the files, hands them to
 * the array (core/), and turns FUSE requests into array calls and error
 * codes into replies.  No on-disk logic lives here. */
#include <config.h>

#define FUSE_USE_VERSION 312

#include <dirent.h>
#include <errno.h>
#include <semaphore.h>
#include <signal.h>
#include <pthread.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "core/array.h"
#include "core/io.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/util.h"

#define ROOT_INO FUSE_ROOT_ID
#define VOLUME_INO 2
#define VOLUME_NAME "volume"
#define MAX_WRITE (1u << 20)

struct mdfuse_config {
  char *members;                /* "a:b:c" */
  char *bitmap;
  int nobitmap;
  int degraded;
  int force;
  int bitmap_same_device;
};

struct mdfuse {
  struct array *array;
  uid_t uid;
  gid_t gid;
  time_t mount_time;
  /* Writes since the last member sync: a FLUSH with nothing written has
   * nothing to make durable. */
  uint64_t writes_since_sync;
  /* Opens of `volume`: a stop is refused while it is in use. */
  int open_count;
  /* The answer to the last administrative command, for mdfusectl. */
  pthread_mutex_t msg_lock;
  char last_msg[512];
};

#define OPT(t, p) { t, offsetof (struct mdfuse_config, p), 1 }
static const struct fuse_opt mdfuse_opts[] = {
  { "bitmap=%s", offsetof (struct mdfuse_config, bitmap), 0 },
  OPT ("nobitmap", nobitmap),
  OPT ("degraded", degraded),
  OPT ("force", force),
  OPT ("bitmap_same_device", bitmap_same_device),
  FUSE_OPT_END
};

static int
opt_proc (void *data, const char *arg, int key, struct fuse_args *outargs)
{
  struct mdfuse_config *conf = data;
  if (key == FUSE_OPT_KEY_NONOPT && !conf->members) {
    conf->members = strdup (arg);
    return 0;
  }
  return 1;
}

static void
usage (const char *prog)
{
  printf ("Usage: %s [-f] [-d] -o bitmap=FILE[,OPTIONS] MEMBER[:MEMBER...] "
          "MOUNTPOINT\n\n"
          "mdfuse options:\n"
          "    -o bitmap=FILE         the write-intent bitmap file (on another "
          "filesystem)\n"
          "    -o nobitmap            run without a bitmap (full resync after a "
          "crash)\n"
          "    -o degraded            start even if a member is missing\n"
          "    -o force               accept a bitmap newer than every member\n"
          "    -o bitmap_same_device  allow the bitmap beside a member (tests "
          "only)\n\n", prog);
}

/* ---- FUSE operations ---- */

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
  conn->max_write = MAX_WRITE;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  if (conn->capable & FUSE_CAP_ASYNC_DIO)
    conn->want |= FUSE_CAP_ASYNC_DIO;
  /* The volume's size never changes and nothing else writes it. */
  conn->want &= ~(unsigned) FUSE_CAP_AUTO_INVAL_DATA;
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
  /* No page cache in the kernel for the volume: every write reaches us
   * (and the members) in order, and fsync has nothing hidden above us. */
  fi->direct_io = 1;
  fi->keep_cache = 0;
  struct mdfuse *mf = fuse_req_userdata (req);
  __atomic_add_fetch (&mf->open_count, 1, __ATOMIC_ACQ_REL);
  if (fuse_reply_open (req, fi) != 0)
    __atomic_sub_fetch (&mf->open_count, 1, __ATOMIC_ACQ_REL);
}

/* One read buffer per FUSE thread, kept: a fresh 1 MiB allocation per
 * request would leave glibc arenas holding tens of MiB.  Freed when the
 * thread ends (libfuse ends idle worker threads). */
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

static void
op_write (fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
          off_t off, struct fuse_file_info *fi)
{
  struct mdfuse *mf = fuse_req_userdata (req);
  ssize_t r = array_write (mf->array, buf, size, (uint64_t) off);
  if (r >= 0) {
    __atomic_add_fetch (&mf->writes_since_sync, 1, __ATOMIC_RELAXED);
    /* An O_DSYNC/O_SYNC write is durable before its reply. */
    if (fi->flags & (O_DSYNC | O_SYNC)) {
      int s = array_flush (mf->array);
      if (s < 0) {
        fuse_reply_err (req, -s);
        return;
      }
    }
    fuse_reply_write (req, (size_t) r);
  }
  else
    fuse_reply_err (req, (int) -r);
}

static int
sync_if_written (struct mdfuse *mf)
{
  uint64_t w = __atomic_exchange_n (&mf->writes_since_sync, 0,
                                    __ATOMIC_ACQ_REL);
  (void) w;
  /* fsync always syncs: a write acknowledged before it must be durable,
   * even if its count was taken by a concurrent sync that has not yet
   * finished. */
  return array_flush (mf->array);
}

static void
op_flush (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  struct mdfuse *mf = fuse_req_userdata (req);
  int r = 0;
  if (__atomic_load_n (&mf->writes_since_sync, __ATOMIC_ACQUIRE) > 0)
    r = sync_if_written (mf);
  fuse_reply_err (req, r < 0 ? -r : 0);
}

static void
op_fsync (fuse_req_t req, fuse_ino_t ino, int datasync,
          struct fuse_file_info *fi)
{
  struct mdfuse *mf = fuse_req_userdata (req);
  int r = sync_if_written (mf);
  fuse_reply_err (req, r < 0 ? -r : 0);
}

static void
op_release (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  struct mdfuse *mf = fuse_req_userdata (req);
  if (ino == VOLUME_INO)
    __atomic_sub_fetch (&mf->open_count, 1, __ATOMIC_ACQ_REL);
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

/* ---- the control channel: extended attributes on `volume` ----
 *
 * mdfusectl reads user.mdfuse.status (text) or user.mdfuse.status.json,
 * and sets user.mdfuse.fail, user.mdfuse.re-add or user.mdfuse.check to
 * act; user.mdfuse.message then holds the answer.  Only the user who
 * mounted the volume, or root, may use it. */

#define XATTR_PREFIX "user.mdfuse."
static const char xattr_list[] = XATTR_PREFIX "status\0" XATTR_PREFIX
  "status.json\0" XATTR_PREFIX "message";

static void
set_message (struct mdfuse *mf, const char *msg)
{
  pthread_mutex_lock (&mf->msg_lock);
  snprintf (mf->last_msg, sizeof mf->last_msg, "%s", msg);
  pthread_mutex_unlock (&mf->msg_lock);
}

static bool
may_administer (fuse_req_t req, struct mdfuse *mf)
{
  const struct fuse_ctx *ctx = fuse_req_ctx (req);
  return ctx->uid == 0 || ctx->uid == mf->uid;
}

static void
reply_text (fuse_req_t req, const char *text, size_t len, size_t size)
{
  if (size == 0)
    fuse_reply_xattr (req, len);
  else if (size < len)
    fuse_reply_err (req, ERANGE);
  else
    fuse_reply_buf (req, text, len);
}

static void
op_getxattr (fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
  struct mdfuse *mf = fuse_req_userdata (req);
  if (ino != VOLUME_INO || strncmp (name, XATTR_PREFIX,
                                    strlen (XATTR_PREFIX)) != 0) {
    fuse_reply_err (req, ENODATA);
    return;
  }
  const char *what = name + strlen (XATTR_PREFIX);
  static __thread char buf[16384];
  size_t len;
  if (strcmp (what, "status") == 0)
    len = array_status_text (mf->array, buf, sizeof buf);
  else if (strcmp (what, "status.json") == 0)
    len = array_status_json (mf->array, buf, sizeof buf);
  else if (strcmp (what, "message") == 0) {
    pthread_mutex_lock (&mf->msg_lock);
    len = (size_t) snprintf (buf, sizeof buf, "%s", mf->last_msg);
    pthread_mutex_unlock (&mf->msg_lock);
  }
  else {
    fuse_reply_err (req, ENODATA);
    return;
  }
  reply_text (req, buf, len, size);
}

static void
op_listxattr (fuse_req_t req, fuse_ino_t ino, size_t size)
{
  if (ino != VOLUME_INO)
    reply_text (req, "", 0, size);
  else
    reply_text (req, xattr_list, sizeof xattr_list, size);
}

/* A member named by slot number or by path (the same file). */
static int
find_slot (struct mdfuse *mf, const char *arg, struct stat *st)
{
  char *end;
  unsigned long n = strtoul (arg, &end, 10);
  if (*arg && !*end)
    return n < array_slots (mf->array) ? (int) n : -1;
  if (stat (arg, st) < 0)
    return -1;
  return array_slot_of_file (mf->array, (uint64_t) st->st_dev,
                             (uint64_t) st->st_ino);
}

static int
admin_fail (struct mdfuse *mf, const char *arg, char *msg, size_t len)
{
  struct stat st;
  int slot = find_slot (mf, arg, &st);
  if (slot < 0) {
    snprintf (msg, len, "%.300s: not a member of this volume", arg);
    return -ENOENT;
  }
  return array_fail_member (mf->array, (uint32_t) slot, msg, len);
}

static int
admin_readd (struct mdfuse *mf, const char *arg, char *msg, size_t len)
{
  struct stat st;
  int slot = find_slot (mf, arg, &st);
  if (slot >= 0)
    return array_readd_member (mf->array, NULL, (uint32_t) slot, msg, len);
  if (!strchr (arg, '/') && strspn (arg, "0123456789") == strlen (arg)) {
    snprintf (msg, len, "%.100s: no such slot", arg);
    return -ENOENT;
  }
  struct io_file *io = io_posix_open (arg, IO_OPEN_LOCK);
  if (!io) {
    int e = errno;
    snprintf (msg, len, "%.300s: %s", arg, e == EBUSY
              ? "in use by another mdfuse" : strerror (e));
    return -e;
  }
  return array_readd_member (mf->array, io, UINT32_MAX, msg, len);
}

static int
admin_check (struct mdfuse *mf, const char *arg, char *msg, size_t len)
{
  bool repair = false;
  uint64_t rate = 0;
  char copy[4096];
  snprintf (copy, sizeof copy, "%s", arg);
  for (char *save = NULL, *tok = strtok_r (copy, ",", &save); tok;
       tok = strtok_r (NULL, ",", &save)) {
    if (strcmp (tok, "check") == 0)
      repair = false;
    else if (strcmp (tok, "repair") == 0)
      repair = true;
    else if (strncmp (tok, "rate=", 5) == 0 && parse_size (tok + 5, &rate) == 0)
      ;
    else {
      snprintf (msg, len, "check: '%.100s' is not check, repair or rate=SIZE",
                tok);
      return -EINVAL;
    }
  }
  return array_check_start (mf->array, repair, rate, msg, len);
}

static void
op_setxattr (fuse_req_t req, fuse_ino_t ino, const char *name,
             const char *value, size_t size, int flags)
{
  struct mdfuse *mf = fuse_req_userdata (req);
  if (ino != VOLUME_INO || strncmp (name, XATTR_PREFIX,
                                    strlen (XATTR_PREFIX)) != 0) {
    fuse_reply_err (req, ENOTSUP);
    return;
  }
  if (!may_administer (req, mf)) {
    fuse_reply_err (req, EACCES);
    return;
  }
  char arg[4096];
  if (size >= sizeof arg) {
    fuse_reply_err (req, E2BIG);
    return;
  }
  memcpy (arg, value, size);
  arg[size] = '\0';
  const char *what = name + strlen (XATTR_PREFIX);
  char msg[512] = "";
  int r;
  if (strcmp (what, "fail") == 0)
    r = admin_fail (mf, arg, msg, sizeof msg);
  else if (strcmp (what, "re-add") == 0)
    r = admin_readd (mf, arg, msg, sizeof msg);
  else if (strcmp (what, "check") == 0)
    r = admin_check (mf, arg, msg, sizeof msg);
  else {
    fuse_reply_err (req, ENOTSUP);
    return;
  }
  set_message (mf, msg);
  if (r < 0)
    log_error ("%s", msg);
  fuse_reply_err (req, r < 0 ? -r : 0);
}

static const struct fuse_lowlevel_ops mdfuse_ops = {
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

/* ---- opening the files ---- */

/* A file placed under the mount point would live on the volume itself:
 * every write would wait for itself. */
static bool
below_mountpoint (const char *path, const char *mnt_real)
{
  char dir[PATH_MAX];
  snprintf (dir, sizeof dir, "%s", path);
  char *slash = strrchr (dir, '/');
  if (slash == dir)
    dir[1] = '\0';
  else if (slash)
    *slash = '\0';
  else
    snprintf (dir, sizeof dir, ".");
  char real[PATH_MAX];
  if (!realpath (dir, real))
    return false;
  size_t n = strlen (mnt_real);
  return strncmp (real, mnt_real, n) == 0 && (real[n] == '/' || real[n] == '\0');
}

/* 1 when PATH is an empty directory, 0 when not, -1 (errno set) when it
 * cannot be read.  Reading it reaches a FUSE server, where stat() may be
 * answered from the kernel's cache even when the server is dead. */
static int
dir_is_empty (const char *path)
{
  DIR *d = opendir (path);
  if (!d)
    return -1;
  struct dirent *e;
  bool empty = true;
  while ((e = readdir (d)) != NULL)
    if (strcmp (e->d_name, ".") != 0 && strcmp (e->d_name, "..") != 0) {
      empty = false;
      break;
    }
  closedir (d);
  return empty ? 1 : 0;
}

static int
split_members (char *list, char **out, size_t max)
{
  size_t n = 0;
  for (char *save = NULL, *tok = strtok_r (list, ":", &save); tok;
       tok = strtok_r (NULL, ":", &save)) {
    if (n == max) {
      log_error ("too many members (at most %zu)", max);
      return -1;
    }
    out[n++] = tok;
  }
  return (int) n;
}

static struct array *
open_array (struct mdfuse_config *conf, const char *mountpoint)
{
  char *paths[32];
  int n = split_members (conf->members, paths, 32);
  if (n < 1)
    return NULL;
  char mnt_real[PATH_MAX];
  if (!realpath (mountpoint, mnt_real)) {
    if (errno == ENOTCONN)
      log_error ("%s: a dead FUSE mount is still there (its daemon died); "
                 "run 'fusermount3 -u -z %s' first", mountpoint, mountpoint);
    else
      log_error ("%s: %s", mountpoint, strerror (errno));
    return NULL;
  }
  struct stat st;
  if (stat (mnt_real, &st) < 0 && errno == ENOTCONN) {
    log_error ("%s: a dead FUSE mount is still there (its daemon died); "
               "run 'fusermount3 -u -z %s' first", mountpoint, mountpoint);
    return NULL;
  }
  if (stat (mnt_real, &st) < 0 || !S_ISDIR (st.st_mode)) {
    log_error ("%s: mount point is not a directory; make an empty directory "
               "to mount on", mountpoint);
    return NULL;
  }
  int empty = dir_is_empty (mnt_real);
  if (empty < 0 && errno == ENOTCONN) {
    log_error ("%s: a dead FUSE mount is still there (its daemon died); "
               "run 'fusermount3 -u -z %s' first", mountpoint, mountpoint);
    return NULL;
  }
  if (empty < 0) {
    log_error ("%s: cannot read the mount point: %s", mountpoint,
               strerror (errno));
    return NULL;
  }
  if (!empty) {
    log_error ("%s: mount point is not empty (its files would be hidden); "
               "mount on an empty directory", mountpoint);
    return NULL;
  }

  struct io_file *members[32] = { 0 };
  struct io_file *bitmap = NULL;
  dev_t devs[32];
  int opened = 0;
  for (int i = 0; i < n; i++) {
    if (below_mountpoint (paths[i], mnt_real)) {
      log_error ("%s: is below the mount point %s: the volume cannot hold "
                 "its own member", paths[i], mountpoint);
      goto fail;
    }
    for (int j = 0; j < i; j++)
      if (strcmp (paths[i], paths[j]) == 0) {
        log_error ("%s: given twice", paths[i]);
        goto fail;
      }
    /* Absolute names: the daemon leaves its working directory, and status
     * should say which file it means. */
    char abs[PATH_MAX];
    members[i] = io_posix_open (realpath (paths[i], abs) ? abs : paths[i],
                                IO_OPEN_LOCK);
    if (!members[i]) {
      if (!conf->degraded || errno == EBUSY)
        goto fail;
      log_warn ("%s: starting without it (-o degraded)", paths[i]);
      continue;
    }
    fstat (io_posix_fd (members[i]), &st);
    devs[i] = st.st_dev;
    opened++;
  }
  if (opened == 0) {
    log_error ("no member could be opened");
    goto fail;
  }

  if (!conf->nobitmap) {
    if (!conf->bitmap) {
      log_error ("no bitmap given: use -o bitmap=FILE (on another "
                 "filesystem), or -o nobitmap");
      goto fail;
    }
    if (below_mountpoint (conf->bitmap, mnt_real)) {
      log_error ("%s: is below the mount point %s: the volume cannot hold "
                 "its own bitmap", conf->bitmap, mountpoint);
      goto fail;
    }
    char abs[PATH_MAX];
    bitmap = io_posix_open (realpath (conf->bitmap, abs) ? abs : conf->bitmap,
                            IO_OPEN_LOCK);
    if (!bitmap)
      goto fail;
    fstat (io_posix_fd (bitmap), &st);
    for (int i = 0; i < n; i++) {
      if (!members[i] || devs[i] != st.st_dev)
        continue;
      if (!conf->bitmap_same_device) {
        log_error ("%s: bitmap is on the same filesystem as member %s; a "
                   "write-intent bitmap must be on a different device "
                   "(-o bitmap_same_device overrides this, for tests only)",
                   conf->bitmap, paths[i]);
        goto fail;
      }
      log_warn ("%s: bitmap on the same filesystem as %s "
                "(bitmap_same_device): a failure of that device loses both",
                conf->bitmap, paths[i]);
      break;
    }
  }

  struct array_options ao = {
    .nobitmap = conf->nobitmap,
    .degraded = conf->degraded,
    .force = conf->force,
  };
  return array_assemble (members, (size_t) n, bitmap, &ao);

fail:
  for (int i = 0; i < n; i++)
    io_close (members[i]);
  io_close (bitmap);
  return NULL;
}

/* ---- stopping ----
 *
 * SIGTERM, SIGINT and SIGHUP ask for a clean shutdown.  The handler only
 * posts a semaphore; a watcher thread decides: during the mount-time
 * resync it stops the resync (the next mount resumes it); while serving,
 * it refuses as long as `volume` is open (a loop device or a program
 * still uses it: stopping would fail their I/O), else it ends the FUSE
 * loop, after which main shuts the array down cleanly. */

static sem_t stop_sem;
static struct mdfuse *stop_mf;
static struct fuse_session *stop_se;   /* set once serving */
static pthread_t main_thread;
static int stop_requested;

static void
on_stop_signal (int sig)
{
  (void) sig;
  sem_post (&stop_sem);
}

static void
on_wake_signal (int sig)
{
  (void) sig;                   /* only interrupts the main thread's wait */
}

static void *
stop_watcher (void *arg)
{
  (void) arg;
  for (;;) {
    while (sem_wait (&stop_sem) < 0)
      ;
    struct fuse_session *se = __atomic_load_n (&stop_se, __ATOMIC_ACQUIRE);
    if (!se) {
      __atomic_store_n (&stop_requested, 1, __ATOMIC_RELEASE);
      if (stop_mf->array)
        array_request_stop (stop_mf->array);
      log_warn ("stop requested during the resync: stopping it; the next "
                "mount resumes it");
      continue;
    }
    int opens = __atomic_load_n (&stop_mf->open_count, __ATOMIC_ACQUIRE);
    if (opens > 0) {
      log_warn ("stop refused: the volume is open %d time%s (a loop device "
                "or a program uses it); unmount and detach it first", opens,
                opens == 1 ? "" : "s");
      continue;
    }
    __atomic_store_n (&stop_requested, 1, __ATOMIC_RELEASE);
    fuse_session_exit (se);
    pthread_kill (main_thread, SIGUSR2);
    return NULL;
  }
}

static int
start_stop_watcher (void)
{
  main_thread = pthread_self ();
  pthread_t t;
  int e = pthread_create (&t, NULL, stop_watcher, NULL);
  if (e) {
    log_error ("cannot start the signal thread: %s", strerror (e));
    return -1;
  }
  pthread_detach (t);
  return 0;
}

static void
install_stop_signals (void)
{
  struct sigaction sa;
  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset (&sa.sa_mask);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGHUP, &sa, NULL);
  sa.sa_handler = on_wake_signal;       /* no SA_RESTART: EINTR wakes */
  sigaction (SIGUSR2, &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction (SIGPIPE, &sa, NULL);
}

int
main (int argc, char **argv)
{
  log_set_program ("mdfuse");
  struct fuse_args args = FUSE_ARGS_INIT (argc, argv);
  struct mdfuse_config conf = { 0 };
  struct fuse_cmdline_opts opts = { 0 };
  int rc = 1;
  struct fuse_session *se = NULL;
  struct mdfuse mf = { 0 };

  if (fuse_opt_parse (&args, &conf, mdfuse_opts, opt_proc) < 0)
    return 1;
  if (fuse_parse_cmdline (&args, &opts) != 0)
    return 1;
  if (opts.show_help) {
    usage (argv[0]);
    fuse_cmdline_help ();
    fuse_lowlevel_help ();
    rc = 0;
    goto out;
  }
  if (opts.show_version) {
    printf ("mdfuse %s\n", PACKAGE_VERSION);
    fuse_lowlevel_version ();
    rc = 0;
    goto out;
  }
  if (!conf.members || !opts.mountpoint) {
    usage (argv[0]);
    goto out;
  }
  if (access ("/dev/fuse", R_OK | W_OK) != 0) {
    log_error ("/dev/fuse: %s; load the fuse module (modprobe fuse) and "
               "install fuse3", strerror (errno));
    goto out;
  }

  /* The session first: a mistyped option is refused before any file is
   * touched.  The volume holds raw data: the kernel enforces its mode
   * (owner only) even with allow_other; the source shows the members. */
  char extra[PATH_MAX + 128];
  snprintf (extra, sizeof extra, "default_permissions,subtype=mdfuse,fsname=%s",
            conf.members);
  for (char *c = extra + strlen ("default_permissions,subtype=mdfuse,fsname=");
       *c; c++)
    if (*c == ',')
      *c = ';';                 /* a comma would split the option */
  if (fuse_opt_add_arg (&args, "-o") != 0 || fuse_opt_add_arg (&args, extra) != 0)
    goto out;
  pthread_mutex_init (&mf.msg_lock, NULL);
  mf.uid = getuid ();
  mf.gid = getgid ();
  mf.mount_time = time (NULL);
  se = fuse_session_new (&args, &mdfuse_ops, sizeof mdfuse_ops, &mf);
  if (!se)
    goto out;

  sem_init (&stop_sem, 0, 0);
  stop_mf = &mf;
  install_stop_signals ();
  if (start_stop_watcher () < 0)
    goto out_session;

  mf.array = open_array (&conf, opts.mountpoint);
  if (!mf.array)
    goto out_session;
  if (conf.force)
    log_warn ("-o force: going on although a newer member may be missing");

  struct array_resync_stats rs;
  struct progress prog;
  progress_init (&prog, stderr, "resync");
  array_set_resync_progress (mf.array, &prog);
  int resync_r = array_resync (mf.array, &rs);
  array_set_resync_progress (mf.array, NULL);
  if (resync_r < 0 || __atomic_load_n (&stop_requested, __ATOMIC_ACQUIRE)) {
    if (resync_r == -ECANCELED)
      log_warn ("resync interrupted; not mounting (the next mount resumes "
                "it)");
    else
      log_error ("resync failed; not mounting");
    /* Not a clean shutdown: the bits of what was not copied stay set. */
    array_close (mf.array, false);
    mf.array = NULL;
    goto out_session;
  }
  char bytes[32];
  format_bytes (rs.bytes_copied, bytes, sizeof bytes);
  log_info ("resync: copied %" PRIu64 " of %" PRIu64 " chunks (%" PRIu64
            " bytes, %s) in %.3f s%s", rs.chunks_copied, rs.chunks_total,
            rs.bytes_copied, bytes, rs.seconds, rs.full ? " (full)" : "");

  if (fuse_session_mount (se, opts.mountpoint) != 0) {
    log_error ("%s: cannot mount", opts.mountpoint);
    goto out_array;
  }
  fuse_daemonize (opts.foreground);
  if (!opts.foreground)
    log_use_syslog (true);
  /* After daemonizing: a fork keeps no threads. */
  if (!opts.foreground && start_stop_watcher () < 0)
    goto out_unmount;
  __atomic_store_n (&stop_se, se, __ATOMIC_RELEASE);
  if (array_start_daemon (mf.array) < 0)
    goto out_unmount;
  log_info ("%s: serving %s (%" PRIu64 " bytes)", opts.mountpoint,
            VOLUME_NAME, array_size (mf.array));

  struct fuse_loop_config *lc = fuse_loop_cfg_create ();
  int lr;
  if (lc) {
    fuse_loop_cfg_set_clone_fd (lc, opts.clone_fd);
    fuse_loop_cfg_set_max_threads (lc, opts.max_threads);
    fuse_loop_cfg_set_idle_threads (lc, opts.max_idle_threads == UINT_MAX
                                    ? 8 : opts.max_idle_threads);
    lr = opts.singlethread ? fuse_session_loop (se)
      : fuse_session_loop_mt (se, lc);
    fuse_loop_cfg_destroy (lc);
  }
  else
    lr = fuse_session_loop (se);
  /* An unmount or a stop: both end the loop normally. */
  rc = lr < 0 ? 1 : 0;

out_unmount:
  __atomic_store_n (&stop_se, NULL, __ATOMIC_RELEASE);
  fuse_session_unmount (se);
out_array:
  /* Every request has been answered: shut down cleanly (SPEC §5). */
  if (mf.array) {
    if (array_close (mf.array, true) < 0)
      rc = 1;
    else if (rc == 0)
      log_info ("clean shutdown");
    mf.array = NULL;
  }
out_session:
  fuse_session_destroy (se);
out:
  free (opts.mountpoint);
  free (conf.members);
  free (conf.bitmap);
  fuse_opt_free_args (&args);
  return rc;
}
