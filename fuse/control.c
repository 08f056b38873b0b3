/* The control channel: mdfusectl reads and sets extended attributes of
 * `volume` (see the comment below). */
#include <config.h>

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
#include "common/util.h"
#include "common/log.h"
#include "fuse/mdfuse.h"
#include "fuse/status.h"

/* ---- the control channel: extended attributes on `volume` ----
 *
 * mdfusectl reads user.mdfuse.status (text) or user.mdfuse.status.json,
 * and sets user.mdfuse.fail, re-add, check, resync-rate or remove-bitmap
 * to act; user.mdfuse.message then holds the answer.  Only the user who
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

/* The status, as text or JSON, into BUF: its length, or a negative
 * errno (JSON that does not fit is not cut: -E2BIG). */
static int
status_xattr (struct mdfuse *mf, bool json, char *buf, size_t len)
{
  /* Large (a path per member): not on a worker's stack. */
  struct array_status *st = malloc (sizeof *st);
  if (!st)
    return -ENOMEM;
  int r = array_get_status (mf->array, st);
  if (r == 0)
    r = json ? status_render_json (st, buf, len)
      : status_render_text (st, buf, len);
  free (st);
  if (json && r >= 0 && (size_t) r + 1 >= len) {
    log_error ("status: the JSON takes more than %zu bytes", len);
    return -E2BIG;
  }
  return r;
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

void
op_getxattr (fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
  struct mdfuse *mf = fuse_req_userdata (req);
  if (ino != VOLUME_INO || strncmp (name, XATTR_PREFIX,
                                    strlen (XATTR_PREFIX)) != 0) {
    fuse_reply_err (req, ENODATA);
    return;
  }
  const char *what = name + strlen (XATTR_PREFIX);
  static __thread char buf[65536];      /* XATTR_SIZE_MAX */
  size_t len;
  if (strcmp (what, "status") == 0 || strcmp (what, "status.json") == 0) {
    int r = status_xattr (mf, strcmp (what, "status.json") == 0, buf,
                          sizeof buf);
    if (r < 0) {
      fuse_reply_err (req, -r);
      return;
    }
    len = (size_t) r;
  }
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

void
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
  if (io_is_uri (arg))
    return array_slot_of_name (mf->array, arg);
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
  struct io_file *io = io_open (arg, IO_OPEN_LOCK);
  if (!io) {
    int e = errno;
    snprintf (msg, len, "%.300s: %s%s", arg, e == EBUSY
              ? "in use by another mdfuse" : io_is_uri (arg)
              ? "cannot connect (the daemon's log says why): " : "",
              e == EBUSY ? "" : strerror (e));
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

/* "min=SIZE,max=SIZE" (either may be left out; max=0: no limit). */
static int
admin_resync_rate (struct mdfuse *mf, const char *arg, char *msg, size_t len)
{
  struct array_status *st = malloc (sizeof *st);
  if (!st) {
    snprintf (msg, len, "out of memory");
    return -ENOMEM;
  }
  array_get_status (mf->array, st);
  uint64_t min = st->resync.rate_min, max = st->resync.rate_max;
  free (st);
  char copy[4096];
  snprintf (copy, sizeof copy, "%s", arg);
  for (char *save = NULL, *tok = strtok_r (copy, ",", &save); tok;
       tok = strtok_r (NULL, ",", &save)) {
    if (strncmp (tok, "min=", 4) == 0 && parse_size (tok + 4, &min) == 0)
      ;
    else if (strncmp (tok, "max=", 4) == 0 && parse_size (tok + 4, &max) == 0)
      ;
    else {
      snprintf (msg, len, "resync-rate: '%.100s' is not min=SIZE or "
                "max=SIZE", tok);
      return -EINVAL;
    }
  }
  if (max && min > max) {
    snprintf (msg, len, "resync-rate: the minimum is above the maximum");
    return -EINVAL;
  }
  array_set_resync_rate (mf->array, min, max);
  char mn[32], mx[32];
  format_bytes (min, mn, sizeof mn);
  format_bytes (max, mx, sizeof mx);
  snprintf (msg, len, "resync rate: min %s/s, max %s%s", mn,
            max ? mx : "unlimited", max ? "/s" : "");
  log_info ("%s", msg);
  return 0;
}

void
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
  else if (strcmp (what, "resync-rate") == 0)
    r = admin_resync_rate (mf, arg, msg, sizeof msg);
  else if (strcmp (what, "remove-bitmap") == 0) {
    if (*arg && strcmp (arg, "force") != 0) {
      snprintf (msg, sizeof msg, "remove-bitmap: '%.100s' is not 'force'",
                arg);
      r = -EINVAL;
    }
    else
      r = array_remove_bitmap (mf->array, *arg != '\0', msg, sizeof msg);
  }
  else {
    fuse_reply_err (req, ENOTSUP);
    return;
  }
  set_message (mf, msg);
  if (r < 0)
    log_error ("%s", msg);
  fuse_reply_err (req, r < 0 ? -r : 0);
}

