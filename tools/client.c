/* mdfusectl's client of a running daemon: status, fail, re-add, check,
 * and the waits that follow a recovery or a check.  It talks through
 * extended attributes of MOUNTPOINT/volume (fuse/control.c) and reads the
 * status JSON (fuse/status.c) with json-c. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <json.h>

#include "bitmap/bitmap_format.h"
#include "common/io.h"
#include "common/log.h"
#include "common/progress.h"
#include "common/util.h"
#include "tools/mdfusectl.h"

#define STATUS_JSON "user.mdfuse.status.json"

/* The volume file of MOUNTPOINT; the volume file itself may be given
 * instead of its mount point. */
static void
volume_path (const char *mountpoint, char *out, size_t len)
{
  struct stat st;
  const char *base = strrchr (mountpoint, '/');
  base = base ? base + 1 : mountpoint;
  if (strcmp (base, "volume") == 0 && stat (mountpoint, &st) == 0
      && S_ISREG (st.st_mode))
    snprintf (out, len, "%s", mountpoint);
  else
    snprintf (out, len, "%s/volume", mountpoint);
}

/* Whether PATH is a running mdfuse volume or its mount point. */
static bool
is_volume (const char *path)
{
  char vol[PATH_MAX];
  volume_path (path, vol, sizeof vol);
  return getxattr (vol, "user.mdfuse.status", NULL, 0) >= 0;
}

/* Read attribute NAME of the volume into a malloc'd string; NULL with a
 * message. */
static char *
get_attr_q (const char *mountpoint, const char *name, bool quiet)
{
  char path[PATH_MAX];
  volume_path (mountpoint, path, sizeof path);
  int e = 0;
  for (int tries = 0; tries < 5; tries++) {
    ssize_t n = getxattr (path, name, NULL, 0);
    if (n < 0) {
      e = errno;
      break;
    }
    char *buf = malloc ((size_t) n + 1);
    if (!buf) {
      e = ENOMEM;
      break;
    }
    ssize_t m = getxattr (path, name, buf, (size_t) n);
    if (m >= 0) {
      buf[m] = '\0';
      return buf;
    }
    e = errno;
    free (buf);
    if (e != ERANGE)
      break;
  }
  if (quiet)
    return NULL;
  struct stat st;
  if (e == ENOTDIR && stat (mountpoint, &st) == 0 && S_ISREG (st.st_mode))
    log_error ("%s: a file, not the mount point of a running volume (a "
               "member file is read with 'mdfusectl examine')", mountpoint);
  else if (e == ENOENT || e == ENOTCONN)
    log_error ("%s: no mdfuse volume is mounted there (%s)", mountpoint,
               strerror (e));
  else if (e == ENODATA || e == ENOTSUP)
    log_error ("%s: not an mdfuse mount", mountpoint);
  else
    log_error ("%s: %s: %s", path, name, strerror (e));
  return NULL;
}

static char *
get_attr (const char *mountpoint, const char *name)
{
  return get_attr_q (mountpoint, name, false);
}

/* ---- the status JSON ---- */

/* The daemon's status, parsed; NULL with a message.  json_object_put it. */
struct json_object *
client_status_q (const char *mnt, bool quiet)
{
  char *text = get_attr_q (mnt, STATUS_JSON, quiet);
  if (!text)
    return NULL;
  enum json_tokener_error err;
  struct json_object *j = json_tokener_parse_verbose (text, &err);
  free (text);
  if (!j || !json_object_is_type (j, json_type_object)) {
    log_error ("%s: the daemon's status (%s) is not a JSON object: %s", mnt,
               STATUS_JSON, j ? "another type" : json_tokener_error_desc (err));
    json_object_put (j);
    return NULL;
  }
  return j;
}

struct json_object *
client_status (const char *mnt)
{
  return client_status_q (mnt, false);
}

/* Member KEY of object O, of TYPE (or null when NULL_OK: then *V is
 * NULL).  WHERE names O in the message ("check"; NULL for the top).
 * 0, or -EPROTO with a message naming the key. */
int
json_field (const char *mnt, struct json_object *o, const char *where,
            const char *key, enum json_type type, bool null_ok,
            struct json_object **v)
{
  struct json_object *x = NULL;
  const char *dot = where ? "." : "";
  if (!where)
    where = "";
  if (!json_object_object_get_ex (o, key, &x)) {
    log_error ("%s: the daemon's status has no \"%s%s%s\"", mnt, where, dot,
               key);
    return -EPROTO;
  }
  if (!x && null_ok) {
    *v = NULL;
    return 0;
  }
  if (!json_object_is_type (x, type)) {
    log_error ("%s: the daemon's status: \"%s%s%s\" is not %s %s%s", mnt,
               where, dot, key, type == json_type_int ? "an" : "a",
               json_type_to_name (type), null_ok ? " or null" : "");
    return -EPROTO;
  }
  *v = x;
  return 0;
}

int
json_field_u64 (const char *mnt, struct json_object *o, const char *where,
           const char *key, uint64_t *v)
{
  struct json_object *x;
  int r = json_field (mnt, o, where, key, json_type_int, false, &x);
  if (r == 0)
    *v = json_object_get_uint64 (x);
  return r;
}

int
json_field_bool (const char *mnt, struct json_object *o, const char *where,
            const char *key, bool *v)
{
  struct json_object *x;
  int r = json_field (mnt, o, where, key, json_type_boolean, false, &x);
  if (r == 0)
    *v = json_object_get_boolean (x);
  return r;
}

int
json_field_string (const char *mnt, struct json_object *o, const char *where,
              const char *key, const char **v)
{
  struct json_object *x;
  int r = json_field (mnt, o, where, key, json_type_string, false, &x);
  if (r == 0)
    *v = json_object_get_string (x);
  return r;
}

/* ---- status ---- */

/* The bitmap of a mounted volume: its file (every set bit is on disk
 * before the write it covers), 'R' while a recovery runs. */
static int
status_map (const char *mnt)
{
  struct json_object *j = client_status (mnt), *bitmap, *recovery;
  if (!j)
    return 1;
  const char *p = NULL;
  uint64_t chunk = 0, chunks = 0;
  if (json_field (mnt, j, NULL, "bitmap", json_type_object, true, &bitmap) < 0
      || json_field (mnt, j, NULL, "recovery", json_type_object, true,
                &recovery) < 0) {
    json_object_put (j);
    return 1;
  }
  if (!bitmap) {
    printf ("map: no bitmap in use\n");
    json_object_put (j);
    return 0;
  }
  if (json_field_string (mnt, bitmap, "bitmap", "path", &p) < 0
      || json_field_u64 (mnt, bitmap, "bitmap", "chunk_size", &chunk) < 0
      || json_field_u64 (mnt, bitmap, "bitmap", "chunks", &chunks) < 0) {
    json_object_put (j);
    return 1;
  }
  char path[PATH_MAX];
  snprintf (path, sizeof path, "%s", p);
  bool recovering = recovery != NULL;
  json_object_put (j);

  struct io_file *f = io_posix_open (path, IO_OPEN_READONLY);
  if (!f)
    return 1;
  size_t len = bitmap_bits_end (chunks);
  uint8_t *buf = malloc (len);
  int r = buf ? io_pread_full (f, buf, len, 0) : -ENOMEM;
  io_close (f);
  if (r < 0) {
    log_error ("%s: cannot read: %s", path, strerror (-r));
    free (buf);
    return 1;
  }
  draw_map (buf, chunks, chunk, recovering ? 'R' : '#');
  free (buf);
  return 0;
}


/* ---- fail, re-add ---- */

/* Send an administrative command; print the daemon's answer. */
static int
send_command (const char *mnt, const char *cmd, const char *arg)
{
  char path[PATH_MAX], name[64];
  volume_path (mnt, path, sizeof path);
  snprintf (name, sizeof name, "user.mdfuse.%s", cmd);
  int r = setxattr (path, name, arg, strlen (arg), 0);
  int e = errno;
  char *msg = get_attr (mnt, "user.mdfuse.message");
  if (r < 0) {
    if (e == EACCES)
      log_error ("%s: permission denied: only the user who mounted the "
                 "volume, or root, may %s", mnt, cmd);
    else if (msg && *msg)
      log_error ("%s", msg);
    else
      log_error ("%s: %s: %s", mnt, cmd, strerror (e));
    free (msg);
    return 1;
  }
  if (msg && *msg)
    printf ("%s\n", msg);
  free (msg);
  return 0;
}

/* What wait_recovery follows: 0, or -EPROTO with a message. */
struct recovery_view {
  bool running;                 /* a recovery job runs */
  bool recovering;              /* some member is recovering */
  bool whole;                   /* the volume is active */
  uint64_t done_bytes, total_bytes;
};

static int
recovery_view (const char *mnt, struct json_object *j,
               struct recovery_view *v)
{
  memset (v, 0, sizeof *v);
  struct json_object *rec, *members;
  const char *state = NULL;
  if (json_field (mnt, j, NULL, "recovery", json_type_object, true, &rec) < 0
      || json_field (mnt, j, NULL, "members", json_type_array, false,
                &members) < 0
      || json_field_string (mnt, j, NULL, "state", &state) < 0)
    return -EPROTO;
  v->whole = strcmp (state, "active") == 0;
  size_t n = json_object_array_length (members);
  for (size_t k = 0; k < n; k++) {
    struct json_object *m = json_object_array_get_idx (members, k);
    const char *ms = NULL;
    if (!json_object_is_type (m, json_type_object)) {
      log_error ("%s: the daemon's status: \"members[%zu]\" is not an "
                 "object", mnt, k);
      return -EPROTO;
    }
    if (json_field_string (mnt, m, "members[]", "state", &ms) < 0)
      return -EPROTO;
    if (strcmp (ms, "recovering") == 0)
      v->recovering = true;
  }
  if (rec) {
    uint64_t done = 0, total = 0, chunk = 0;
    if (json_field_u64 (mnt, rec, "recovery", "done_chunks", &done) < 0
        || json_field_u64 (mnt, rec, "recovery", "total_chunks", &total) < 0
        || json_field_u64 (mnt, rec, "recovery", "chunk_size", &chunk) < 0)
      return -EPROTO;
    v->running = true;
    v->done_bytes = done * chunk;
    v->total_bytes = total * chunk;
  }
  return 0;
}

/* Follow a recovery until the member is active (or the recovery ends
 * without it), with a progress bar on a terminal. */
static int
wait_recovery (const char *mnt)
{
  struct progress prog;
  progress_init (&prog, stdout, "recovery");
  for (;;) {
    struct json_object *j = client_status (mnt);
    if (!j)
      return 1;
    struct recovery_view v;
    int r = recovery_view (mnt, j, &v);
    json_object_put (j);
    if (r < 0)
      return 1;
    if (!v.running && !v.recovering) {
      progress_end (&prog);
      printf ("recovery finished: the volume is %s\n",
              v.whole ? "whole" : "still degraded (see mdfusectl status)");
      return v.whole ? 0 : 1;
    }
    progress_update (&prog, v.done_bytes, v.total_bytes);
    usleep (200000);
  }
}

/* fail and re-add: MOUNTPOINT MEMBER (a path or a slot number). */
static int
member_op (int argc, char **argv, const char *cmd)
{
  static const struct option longopts[] = {
    { "no-wait", no_argument, NULL, 'n' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  bool readd = strcmp (cmd, "re-add") == 0, wait = readd;
  int c;
  /* fail has no --no-wait: its long options end before it. */
  while ((c = getopt_long (argc, argv, "h", readd ? longopts : longopts + 1,
                           NULL)) != -1) {
    switch (c) {
    case 'n': wait = false; break;
    case 'h': usage (cmd); return 0;
    default: return usage_error (cmd, NULL);
    }
  }
  int u = check_operands (cmd, argc, argv, optind, 2, 2, "MOUNTPOINT MEMBER");
  if (u)
    return u;
  const char *mnt = argv[optind];
  if (!is_volume (mnt) && is_volume (argv[optind + 1]))
    return usage_error (cmd, "'%s' is the volume and '%s' not: the mount "
                        "point comes first: mdfusectl %s %s %s",
                        argv[optind + 1], mnt, cmd, argv[optind + 1], mnt);
  /* The daemon's working directory is not ours: send an absolute path
   * (a slot number and an NBD URI go as they are). */
  char abs[PATH_MAX];
  const char *arg = argv[optind + 1];
  if (strspn (arg, "0123456789") != strlen (arg) && !io_is_uri (arg)) {
    if (!realpath (arg, abs)) {
      log_error ("%s: %s", arg, strerror (errno));
      return 1;
    }
    arg = abs;
  }
  int r = send_command (mnt, cmd, arg);
  if (r != 0 || !wait)
    return r;
  return wait_recovery (mnt);
}

int
cmd_fail (int argc, char **argv)
{
  return member_op (argc, argv, "fail");
}

int
cmd_readd (int argc, char **argv)
{
  return member_op (argc, argv, "re-add");
}

/* ---- check ---- */

struct check_view {
  bool running;
  uint64_t done_bytes, total_bytes, mismatches;
};

static int
check_view (const char *mnt, struct json_object *j, struct check_view *v)
{
  struct json_object *check;
  if (json_field (mnt, j, NULL, "check", json_type_object, false, &check) < 0
      || json_field_bool (mnt, check, "check", "running", &v->running) < 0
      || json_field_u64 (mnt, check, "check", "done_bytes", &v->done_bytes) < 0
      || json_field_u64 (mnt, check, "check", "total_bytes", &v->total_bytes) < 0
      || json_field_u64 (mnt, check, "check", "mismatches", &v->mismatches) < 0)
    return -EPROTO;
  return 0;
}

int
cmd_check (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "repair", no_argument, NULL, 'r' },
    { "rate", required_argument, NULL, 'R' },
    { "no-wait", no_argument, NULL, 'n' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  bool repair = false, wait = true;
  const char *rate = NULL;
  uint64_t dummy;
  int c, e;
  while ((c = getopt_long (argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 'r': repair = true; break;
    case 'R':
      if ((e = parse_size (optarg, &dummy)) < 0) {
        return usage_error ("check", "--rate %s: %s", optarg, size_error (e));
      }
      rate = optarg;
      break;
    case 'n': wait = false; break;
    case 'h': usage ("check"); return 0;
    default: return usage_error ("check", NULL);
    }
  }
  int u = check_operands ("check", argc, argv, optind, 1, 1, "MOUNTPOINT");
  if (u)
    return u;
  const char *mnt = argv[optind];
  char arg[128];
  snprintf (arg, sizeof arg, "%s%s%s", repair ? "repair" : "check",
            rate ? ",rate=" : "", rate ? rate : "");
  if (send_command (mnt, "check", arg) != 0)
    return 1;
  if (!wait)
    return 0;
  struct progress prog;
  progress_init (&prog, stdout, repair ? "repair" : "check");
  for (;;) {
    struct json_object *j = client_status (mnt);
    if (!j)
      return 1;
    struct check_view v = { 0 };
    int r = check_view (mnt, j, &v);
    json_object_put (j);
    if (r < 0)
      return 1;
    if (!v.running) {
      progress_end (&prog);
      printf ("%s finished: %" PRIu64 " mismatched chunk%s%s\n",
              repair ? "repair" : "check", v.mismatches,
              v.mismatches == 1 ? "" : "s",
              repair && v.mismatches ? " rewritten" : "");
      return !repair && v.mismatches ? EXIT_FOUND : 0;
    }
    progress_update (&prog, v.done_bytes, v.total_bytes);
    usleep (200000);
  }
}

/* ---- wait, resync-rate ---- */

/* What `wait` follows: the resync, a recovery, the volume's state. */
struct sync_view {
  bool resyncing;
  const char *resync_error;     /* the resync did not end (NULL: it did) */
  uint64_t done_bytes, total_bytes;
  struct recovery_view rec;
};

static int
sync_view (const char *mnt, struct json_object *j, struct sync_view *v)
{
  memset (v, 0, sizeof *v);
  struct json_object *rs, *err;
  if (recovery_view (mnt, j, &v->rec) < 0
      || json_field (mnt, j, NULL, "resync", json_type_object, true, &rs) < 0
      || json_field (mnt, j, NULL, "resync_error", json_type_string, true,
                &err) < 0)
    return -EPROTO;
  if (err)
    v->resync_error = json_object_get_string (err);
  if (rs) {
    uint64_t done = 0, total = 0, chunk = 0;
    if (json_field_u64 (mnt, rs, "resync", "done_chunks", &done) < 0
        || json_field_u64 (mnt, rs, "resync", "total_chunks", &total) < 0
        || json_field_u64 (mnt, rs, "resync", "chunk_size", &chunk) < 0)
      return -EPROTO;
    v->resyncing = true;
    v->done_bytes = done * chunk;
    v->total_bytes = total * chunk;
  }
  return 0;
}

/* mdadm --wait: block until the volume is in sync (no resync, no
 * recovery), with a progress bar on a terminal.  0 when it is whole and
 * in sync; 1 when it cannot get there (degraded, failed, the resync
 * failed or was stopped). */
int
cmd_wait (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int c;
  while ((c = getopt_long (argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 'h': usage ("wait"); return 0;
    default: return usage_error ("wait", NULL);
    }
  }
  int u = check_operands ("wait", argc, argv, optind, 1, 1, "MOUNTPOINT");
  if (u)
    return u;
  const char *mnt = argv[optind];
  struct progress prog;
  progress_init (&prog, stdout, "resync");
  for (;;) {
    struct json_object *j = client_status (mnt);
    if (!j)
      return 1;
    struct sync_view v;
    int r = sync_view (mnt, j, &v);
    if (r < 0) {
      json_object_put (j);
      return 1;
    }
    if (!v.resyncing && !v.rec.running && !v.rec.recovering) {
      progress_end (&prog);
      int rc = 0;
      if (v.resync_error) {
        log_error ("%s: the resync did not finish (%s); the next mount "
                   "resumes it", mnt, v.resync_error);
        rc = 1;
      }
      else if (!v.rec.whole) {
        log_error ("%s: in sync, but not whole: a member is missing or "
                   "faulty (see mdfusectl status)", mnt);
        rc = 1;
      }
      else
        printf ("%s: in sync\n", mnt);
      json_object_put (j);
      return rc;
    }
    json_object_put (j);
    if (v.resyncing)
      progress_update (&prog, v.done_bytes, v.total_bytes);
    else
      progress_update (&prog, v.rec.done_bytes, v.rec.total_bytes);
    usleep (200000);
  }
}

/* The resync's rate limits while it runs (md's speed_limit_min/max). */
int
cmd_resync_rate (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "min", required_argument, NULL, 'm' },
    { "max", required_argument, NULL, 'M' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *min = NULL, *max = NULL;
  uint64_t dummy;
  int c, e;
  while ((c = getopt_long (argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 'm':
    case 'M':
      if ((e = parse_size (optarg, &dummy)) < 0) {
        return usage_error ("resync-rate", "--%s %s: %s",
                            c == 'm' ? "min" : "max", optarg, size_error (e));
      }
      *(c == 'm' ? &min : &max) = optarg;
      break;
    case 'h': usage ("resync-rate"); return 0;
    default: return usage_error ("resync-rate", NULL);
    }
  }
  if (!min && !max)
    return usage_error ("resync-rate", "give --min SIZE, --max SIZE or both");
  int u = check_operands ("resync-rate", argc, argv, optind, 1, 1,
                          "MOUNTPOINT");
  if (u)
    return u;
  char arg[128];
  snprintf (arg, sizeof arg, "%s%s%s%s%s", min ? "min=" : "", min ? min : "",
            min && max ? "," : "", max ? "max=" : "", max ? max : "");
  return send_command (argv[optind], "resync-rate", arg);
}

/* ---- status ---- */

int
cmd_remove_bitmap (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "force", no_argument, NULL, 'f' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  bool force = false;
  int c;
  while ((c = getopt_long (argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 'f': force = true; break;
    case 'h': usage ("remove-bitmap"); return 0;
    default: return usage_error ("remove-bitmap", NULL);
    }
  }
  int u = check_operands ("remove-bitmap", argc, argv, optind, 1, 1,
                          "MOUNTPOINT");
  if (u)
    return u;
  return send_command (argv[optind], "remove-bitmap", force ? "force" : "");
}

/* mdadm --detail --test: 0 when the volume is whole and in sync, 1 when
 * it is degraded or not in sync (a resync or recovery runs, or a resync
 * did not end), 2 when it has no active member, 4 when its state cannot
 * be read. */
static int
status_test (const char *mnt)
{
  struct json_object *j = client_status (mnt);
  if (!j)
    return 4;
  struct json_object *rs, *err;
  const char *state = NULL;
  struct recovery_view rec;
  int r;
  if (json_field_string (mnt, j, NULL, "state", &state) < 0
      || json_field (mnt, j, NULL, "resync", json_type_object, true, &rs) < 0
      || json_field (mnt, j, NULL, "resync_error", json_type_string, true, &err) < 0
      || recovery_view (mnt, j, &rec) < 0)
    r = 4;
  else if (strcmp (state, "failed") == 0)
    r = 2;
  else if (strcmp (state, "active") != 0 || rs || err || rec.running
           || rec.recovering)
    r = 1;
  else
    r = 0;
  json_object_put (j);
  return r;
}

int
cmd_status (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "json", no_argument, NULL, 'j' },
    { "map", no_argument, NULL, 'm' },
    { "test", no_argument, NULL, 't' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  bool json = false, map = false, test = false;
  int c;
  while ((c = getopt_long (argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 'j': json = true; break;
    case 'm': map = true; break;
    case 't': test = true; break;
    case 'h': usage ("status"); return 0;
    default: return usage_error ("status", NULL);
    }
  }
  int u = check_operands ("status", argc, argv, optind, 1, 1, "MOUNTPOINT");
  if (u)
    return u;
  const char *mnt = argv[optind];
  char *text = get_attr (mnt, json ? STATUS_JSON : "user.mdfuse.status");
  if (!text)
    return 1;
  fputs (text, stdout);
  free (text);
  int r = map ? status_map (mnt) : 0;
  if (r == 0 && test)
    r = status_test (mnt);
  return r;
}
