/* Opening an array for mounting: the paths are checked (mount point,
 * separate device for the bitmap, nothing below the mount point), the
 * files opened and locked, and the array assembled. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/array.h"
#include "common/io.h"
#include "common/log.h"
#include "fuse/mdfuse.h"



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

static void
log_dead_mount (const char *mountpoint)
{
  log_error ("%s: a dead FUSE mount is still there (its daemon died); "
             "run 'fusermount3 -u -z %s' first", mountpoint, mountpoint);
}

struct array *
mdfuse_open_array (struct mdfuse_config *conf, const char *mountpoint)
{
  char *paths[32];
  int n = io_split_list (conf->members, paths, 32);
  if (n < 1)
    return NULL;
  char mnt_real[PATH_MAX];
  if (!realpath (mountpoint, mnt_real)) {
    if (errno == ENOTCONN)
      log_dead_mount (mountpoint);
    else
      log_error ("%s: %s", mountpoint, strerror (errno));
    return NULL;
  }
  struct stat st;
  if (stat (mnt_real, &st) < 0 && errno == ENOTCONN) {
    log_dead_mount (mountpoint);
    return NULL;
  }
  if (stat (mnt_real, &st) < 0 || !S_ISDIR (st.st_mode)) {
    log_error ("%s: mount point is not a directory; make an empty directory "
               "to mount on", mountpoint);
    return NULL;
  }
  int empty = dir_is_empty (mnt_real);
  if (empty < 0 && errno == ENOTCONN) {
    log_dead_mount (mountpoint);
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
  uint64_t devs[32];
  int opened = 0;
  for (int i = 0; i < n; i++) {
    bool uri = io_is_uri (paths[i]);
    if (!uri && below_mountpoint (paths[i], mnt_real)) {
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
     * should say which file it means.  A URI is an NBD member. */
    char abs[PATH_MAX];
    members[i] = io_open (!uri && realpath (paths[i], abs) ? abs : paths[i],
                          IO_OPEN_LOCK);
    if (!members[i]) {
      if (!conf->degraded || errno == EBUSY)
        goto fail;
      log_warn ("%s: starting without it (-o degraded)", paths[i]);
      continue;
    }
    struct io_identity id;
    devs[i] = io_identity (members[i], &id) == 0 ? id.dev : UINT64_MAX;
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
    if (io_is_uri (conf->bitmap)) {
      log_error ("%s: the bitmap must be a local file (on another "
                 "filesystem than the members), not an NBD export",
                 conf->bitmap);
      goto fail;
    }
    if (below_mountpoint (conf->bitmap, mnt_real)) {
      log_error ("%s: is below the mount point %s: the volume cannot hold "
                 "its own bitmap", conf->bitmap, mountpoint);
      goto fail;
    }
    if (access (conf->bitmap, F_OK) != 0 && errno == ENOENT) {
      log_error ("%s: no such bitmap file; if it is lost, make a new one "
                 "with 'mdfusectl add-bitmap --bitmap %s MEMBER...' (the "
                 "first mount with it copies every chunk), or mount with "
                 "-o nobitmap", conf->bitmap, conf->bitmap);
      goto fail;
    }
    char abs[PATH_MAX];
    bitmap = io_posix_open (realpath (conf->bitmap, abs) ? abs : conf->bitmap,
                            IO_OPEN_LOCK);
    if (!bitmap)
      goto fail;
    struct io_identity bid;
    if (io_identity (bitmap, &bid) < 0)
      bid.dev = UINT64_MAX - 1;   /* not on a filesystem: nothing shared */
    for (int i = 0; i < n; i++) {
      if (!members[i] || devs[i] != bid.dev)
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
    .auto_readd = conf->auto_readd,
  };
  return array_assemble (members, (size_t) n, bitmap, &ao);

fail:
  for (int i = 0; i < n; i++)
    io_close (members[i]);
  io_close (bitmap);
  return NULL;
}

