/* mdfusectl: create an mdfuse array and examine its files. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <limits.h>
#include <sys/ioctl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "bitmap/bitmap_format.h"
#include "core/create.h"
#include "common/io.h"
#include "common/log.h"
#include "core/member.h"
#include "common/progress.h"
#include "core/superblock.h"
#include "common/util.h"

static void
usage (FILE *f)
{
  fprintf (f,
           "Usage:\n"
           "  mdfusectl create [--force] [--chunk SIZE] [--name NAME]\n"
           "                   [--daemon-sleep SECONDS] --size SIZE\n"
           "                   --bitmap FILE MEMBER MEMBER...\n"
           "  mdfusectl new-member [--force] --like MEMBER --slot N NEWFILE\n"
           "  mdfusectl examine MEMBER...\n"
           "  mdfusectl examine-bitmap [--dirty] [--map] FILE\n"
           "  mdfusectl status [--json] [--map] MOUNTPOINT\n"
           "  mdfusectl fail MOUNTPOINT MEMBER\n"
           "  mdfusectl re-add [--no-wait] MOUNTPOINT MEMBER\n"
           "  mdfusectl check [--repair] [--rate SIZE] [--no-wait] MOUNTPOINT\n"
           "\n"
           "SIZE is in bytes, or with a K, M, G or T suffix (powers of 1024).\n");
}

static int
cmd_create (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "force", no_argument, NULL, 'f' },
    { "chunk", required_argument, NULL, 'c' },
    { "name", required_argument, NULL, 'n' },
    { "size", required_argument, NULL, 's' },
    { "bitmap", required_argument, NULL, 'b' },
    { "daemon-sleep", required_argument, NULL, 'd' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct create_options o = { 0 };
  bool have_size = false;
  int c;
  while ((c = getopt_long (argc, argv, "fc:n:s:b:d:h", longopts, NULL)) != -1) {
    switch (c) {
    case 'f':
      o.force = true;
      break;
    case 'c':
      if (parse_size (optarg, &o.chunk) < 0 || o.chunk == 0) {
        log_error ("--chunk %s: not a size", optarg);
        return 1;
      }
      break;
    case 'n':
      o.name = optarg;
      break;
    case 's':
      if (parse_size (optarg, &o.volume_bytes) < 0) {
        log_error ("--size %s: not a size", optarg);
        return 1;
      }
      have_size = true;
      break;
    case 'b':
      o.bitmap = optarg;
      break;
    case 'd': {
      char *end;
      unsigned long v = strtoul (optarg, &end, 10);
      if (*end || v < 1 || v > 3600) {
        log_error ("--daemon-sleep %s: not a number of seconds in 1..3600",
                   optarg);
        return 1;
      }
      o.daemon_sleep = (unsigned) v;
      break;
    }
    case 'h':
      usage (stdout);
      return 0;
    default:
      usage (stderr);
      return 1;
    }
  }
  if (!have_size) {
    log_error ("create: --size is required");
    return 1;
  }
  if (!o.bitmap) {
    log_error ("create: --bitmap FILE is required");
    return 1;
  }
  size_t n = (size_t) (argc - optind);
  if (create_array (&o, (const char *const *) argv + optind, n) < 0)
    return 1;
  uint64_t chunk = o.chunk ? o.chunk : bitmap_default_chunk (o.volume_bytes);
  char vs[32], cs[32];
  format_bytes (o.volume_bytes, vs, sizeof vs);
  format_bytes (chunk, cs, sizeof cs);
  printf ("created a %zu-member mirror of %s, chunk %s, bitmap %s\n", n, vs,
          cs, o.bitmap);
  return 0;
}

static int
cmd_new_member (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "force", no_argument, NULL, 'f' },
    { "like", required_argument, NULL, 'l' },
    { "slot", required_argument, NULL, 's' },
    { NULL, 0, NULL, 0 },
  };
  bool force = false;
  const char *like = NULL;
  long slot = -1;
  int c;
  while ((c = getopt_long (argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'f': force = true; break;
    case 'l': like = optarg; break;
    case 's': {
      char *end;
      slot = strtol (optarg, &end, 10);
      if (*end || slot < 0) {
        log_error ("--slot %s: not a slot number", optarg);
        return 1;
      }
      break;
    }
    default: usage (stderr); return 1;
    }
  }
  if (!like || slot < 0 || optind + 1 != argc) {
    log_error ("new-member: --like MEMBER, --slot N and NEWFILE are needed");
    return 1;
  }
  if (create_member_like (like, (uint32_t) slot, argv[optind], force) < 0)
    return 1;
  printf ("%s: new member for slot %ld; add it with 'mdfusectl re-add "
          "MOUNTPOINT %s' (everything is copied)\n", argv[optind], slot,
          argv[optind]);
  return 0;
}

static void
print_time (const char *key, uint64_t t)
{
  time_t tt = (time_t) t;
  char buf[64];
  struct tm tm;
  strftime (buf, sizeof buf, "%a %b %e %H:%M:%S %Y", localtime_r (&tt, &tm));
  printf ("%16s : %s\n", key, buf);
}

static int
examine_one (const char *path)
{
  struct io_file *f = io_posix_open (path, IO_OPEN_READONLY);
  if (!f)
    return 1;
  struct member_probe p;
  int r = member_probe (f, &p);
  io_close (f);
  if (r < 0 || p.status == SB_NO_MAGIC || p.status == SB_UNSUPPORTED) {
    log_error ("%s: %s", path, p.why);
    return 1;
  }
  const struct md_sb *s = &p.sb;
  char uuid[36], duuid[36];
  sb_format_uuid (s->set_uuid, uuid);
  sb_format_uuid (s->device_uuid, duuid);
  printf ("%s:\n", path);
  printf ("%16s : %08x\n", "Magic", 0xa92b4efc);
  printf ("%16s : 1.0\n", "Version");
  printf ("%16s : 0x%" PRIx32 "\n", "Feature Map", sb_feature_map (s));
  printf ("%16s : %s\n", "Array UUID", uuid);
  printf ("%16s : %s\n", "Name", s->set_name);
  print_time ("Creation Time", s->ctime);
  printf ("%16s : raid1\n", "Raid Level");
  printf ("%16s : %" PRIu32 "\n", "Raid Devices", s->raid_disks);
  printf ("%16s : %" PRIu64 "\n", "Volume Size", s->size * 512);
  printf ("%16s : %" PRIu64 " sectors\n", "Data Offset", s->data_offset);
  printf ("%16s : %" PRIu64 " sectors\n", "Super Offset", s->super_offset);
  printf ("%16s : %s\n", "Device UUID", duuid);
  print_time ("Update Time", s->utime);
  printf ("%16s : %" PRIu64 "\n", "Events", s->events);
  printf ("%16s : %s\n", "State",
          s->resync_offset == SB_RESYNC_CLEAN ? "clean" : "active");
  if (s->resync_offset != SB_RESYNC_CLEAN)
    printf ("%16s : %" PRIu64 " sectors\n", "Resync Offset", s->resync_offset);
  if (s->recovering)
    printf ("%16s : %" PRIu64 " sectors%s\n", "Recovery Offset",
            s->recovery_offset, s->recovery_bitmap
            ? " (guided by the bitmap)" : "");
  if (p.status == SB_BAD_CHECKSUM)
    printf ("%16s : wrong (%s)\n", "Checksum", p.why);
  else
    printf ("%16s : %08" PRIx32 " - correct\n", "Checksum", s->sb_csum);
  uint16_t role = s->dev_number < s->max_dev ? s->dev_roles[s->dev_number]
    : SB_ROLE_SPARE;
  if (role == SB_ROLE_FAULTY)
    printf ("%16s : faulty\n", "Device Role");
  else if (role == SB_ROLE_SPARE)
    printf ("%16s : spare\n", "Device Role");
  else
    printf ("%16s : Active device %u\n", "Device Role", role);
  printf ("%16s : ", "Array State");
  for (uint32_t k = 0; k < s->raid_disks && k < s->max_dev; k++)
    putchar (s->dev_roles[k] == SB_ROLE_FAULTY ? '.' : 'A');
  printf (" ('A' == active, '.' == faulty)\n");
  return p.status == SB_VALID ? 0 : 2;
}

static int
cmd_examine (int argc, char **argv)
{
  if (argc < 2) {
    usage (stderr);
    return 1;
  }
  int rc = 0;
  for (int i = 1; i < argc; i++) {
    int r = examine_one (argv[i]);
    if (r > rc)
      rc = r;
  }
  return rc;
}

/* ---- the bitmap as a picture ---- */

static unsigned
map_columns (void)
{
  struct winsize ws;
  if (isatty (STDOUT_FILENO) && ioctl (STDOUT_FILENO, TIOCGWINSZ, &ws) == 0
      && ws.ws_col >= 20)
    return ws.ws_col - 2u;
  const char *c = getenv ("COLUMNS");
  if (c && atoi (c) >= 20)
    return (unsigned) atoi (c) - 2u;
  return 64;
}

/* Draw NCHUNKS bits (BITS is the bits area, bit i = chunk i) as a grid:
 * '.' clean, '#' dirty, DIRTY_CHAR instead of '#' when given (e.g. 'R'
 * while those chunks are being recovered).  Each cell stands for as many
 * chunks as it takes to fit in 16 rows of the terminal's width. */
static void
draw_map (const uint8_t *bits, uint64_t nchunks, uint64_t chunk,
          char dirty_char)
{
  uint64_t cols = map_columns (), max_rows = 16;
  uint64_t per = (nchunks + cols * max_rows - 1) / (cols * max_rows);
  if (per == 0)
    per = 1;
  uint64_t cells = (nchunks + per - 1) / per;
  if (cells < cols)
    cols = cells;
  char cs[32];
  format_bytes (per * chunk, cs, sizeof cs);
  printf ("map: %" PRIu64 " chunks, each cell %" PRIu64 " chunk%s (%s); "
          "'.' clean, '%c' dirty%s\n", nchunks, per, per == 1 ? "" : "s", cs,
          dirty_char, dirty_char == 'R' ? " and being recovered" : "");
  for (uint64_t cell = 0; cell < cells; cell++) {
    bool dirty = false;
    for (uint64_t c = cell * per; c < (cell + 1) * per && c < nchunks; c++)
      if (bits[c / 8] & (1u << (c % 8))) {
        dirty = true;
        break;
      }
    putchar (dirty ? dirty_char : '.');
    if ((cell + 1) % cols == 0 || cell + 1 == cells)
      putchar ('\n');
  }
}

static int
cmd_examine_bitmap (int argc, char **argv)
{
  bool dirty_list = false, map = false;
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp (argv[i], "--dirty") == 0)
      dirty_list = true;
    else if (strcmp (argv[i], "--map") == 0)
      map = true;
    else if (!path && argv[i][0] != '-')
      path = argv[i];
    else {
      usage (stderr);
      return 1;
    }
  }
  if (!path) {
    usage (stderr);
    return 1;
  }
  struct io_file *f = io_posix_open (path, IO_OPEN_READONLY);
  if (!f)
    return 1;
  int64_t size = io_size (f);
  if (size < BITMAP_HEADER_SIZE) {
    log_error ("%s: file is %" PRId64 " bytes, too small to be a bitmap",
               path, size);
    io_close (f);
    return 1;
  }
  uint8_t *buf = malloc ((size_t) size);
  if (!buf || io_pread_full (f, buf, (size_t) size, 0) < 0) {
    log_error ("%s: cannot read: %s", path, strerror (errno));
    free (buf);
    io_close (f);
    return 1;
  }
  io_close (f);

  struct bitmap_header h;
  char why[200];
  enum bitmap_header_status st = bitmap_header_decode (buf, &h, why, sizeof why);
  if (st == BITMAP_HEADER_FOREIGN
      || (st != BITMAP_HEADER_OK && !bitmap_chunk_valid (h.chunksize))) {
    log_error ("%s: %s", path, why);
    free (buf);
    return 1;
  }
  uint64_t chunks = bitmap_chunks (h.sync_size * 512, h.chunksize);
  if ((uint64_t) size < BITMAP_HEADER_SIZE + (chunks + 7) / 8) {
    log_error ("%s: file is %" PRId64 " bytes, too small for %" PRIu64
               " chunks", path, size, chunks);
    free (buf);
    return 1;
  }
  uint64_t dirty = bitmap_count_dirty (buf, chunks);
  if (dirty_list) {
    for (uint64_t c = 0; c < chunks; c++)
      if (buf[bitmap_bit_byte (c)] & bitmap_bit_mask (c))
        printf ("%" PRIu64 "\n", c);
    free (buf);
    return st == BITMAP_HEADER_OK ? 0 : 2;
  }
  char uuid[36];
  sb_format_uuid (h.uuid, uuid);
  printf ("%16s : %s\n", "Filename", path);
  printf ("%16s : %08x\n", "Magic", BITMAP_MAGIC);
  printf ("%16s : %d\n", "Version", BITMAP_VERSION);
  printf ("%16s : %s\n", "UUID", uuid);
  printf ("%16s : %" PRIu64 "\n", "Events", h.events);
  printf ("%16s : %" PRIu64 "\n", "Events Cleared", h.events_cleared);
  printf ("%16s : %s\n", "State",
          (h.state & BITMAP_STATE_STALE) ? "Out of date" : "OK");
  printf ("%16s : %" PRIu32 "\n", "Chunksize", h.chunksize);
  printf ("%16s : %" PRIu32 "s flush period\n", "Daemon", h.daemon_sleep);
  printf ("%16s : %" PRIu64 "\n", "Sync Size", h.sync_size * 512);
  printf ("%16s : %" PRIu64 " bits (chunks), %" PRIu64 " dirty (%.1f%%)\n",
          "Bitmap", chunks, dirty, chunks ? 100.0 * (double) dirty / (double) chunks : 0.0);
  printf ("%16s : %s\n", "Checksum",
          st == BITMAP_HEADER_OK ? "correct" : why);
  if (map)
    draw_map (buf + BITMAP_HEADER_SIZE, chunks, h.chunksize, '#');
  free (buf);
  return st == BITMAP_HEADER_OK ? 0 : 2;
}

/* ---- talking to a running daemon (extended attributes on volume) ---- */

static void
volume_path (const char *mountpoint, char *out, size_t len)
{
  snprintf (out, len, "%s/volume", mountpoint);
}

/* Read attribute NAME of the volume into a malloc'd string. */
static char *
get_attr (const char *mountpoint, const char *name)
{
  char path[PATH_MAX];
  volume_path (mountpoint, path, sizeof path);
  for (int tries = 0; tries < 5; tries++) {
    ssize_t n = getxattr (path, name, NULL, 0);
    if (n < 0)
      break;
    char *buf = malloc ((size_t) n + 1);
    if (!buf)
      return NULL;
    ssize_t m = getxattr (path, name, buf, (size_t) n);
    if (m >= 0) {
      buf[m] = '\0';
      return buf;
    }
    free (buf);
    if (errno != ERANGE)
      break;
  }
  if (errno == ENOENT || errno == ENOTCONN)
    log_error ("%s: no mdfuse volume is mounted there (%s)", mountpoint,
               strerror (errno));
  else if (errno == ENODATA || errno == ENOTSUP)
    log_error ("%s: not an mdfuse mount", mountpoint);
  else
    log_error ("%s: %s", path, strerror (errno));
  return NULL;
}
static uint64_t
json_number (const char *json, const char *section, const char *key)
{
  const char *p = section ? strstr (json, section) : json;
  if (!p)
    return 0;
  char k[64];
  snprintf (k, sizeof k, "\"%s\":", key);
  p = strstr (p, k);
  return p ? strtoull (p + strlen (k), NULL, 10) : 0;
}

static bool
json_true (const char *json, const char *section, const char *key)
{
  const char *p = section ? strstr (json, section) : json;
  if (!p)
    return false;
  char k[64];
  snprintf (k, sizeof k, "\"%s\":true", key);
  const char *q = strstr (p, k);
  const char *end = strchr (p, '}');
  return q && (!end || q < end);
}


/* The bitmap of a mounted volume: its file (every set bit is on disk
 * before the write it covers), 'R' while a recovery runs. */
static int
status_map (const char *mnt)
{
  char *j = get_attr (mnt, "user.mdfuse.status.json");
  if (!j)
    return 1;
  const char *p = strstr (j, "\"bitmap\":{\"path\":\"");
  if (!p) {
    printf ("map: no bitmap in use\n");
    free (j);
    return 0;
  }
  p += strlen ("\"bitmap\":{\"path\":\"");
  char path[PATH_MAX];
  size_t n = 0;
  while (*p && *p != '"' && n + 1 < sizeof path) {
    if (*p == '\\' && p[1])
      p++;
    path[n++] = *p++;
  }
  path[n] = '\0';
  bool recovering = !strstr (j, "\"recovery\":null");
  uint64_t chunk = json_number (j, "\"bitmap\":", "chunk_size");
  uint64_t chunks = json_number (j, "\"bitmap\":", "chunks");
  free (j);
  struct io_file *f = io_posix_open (path, IO_OPEN_READONLY);
  if (!f)
    return 1;
  size_t len = BITMAP_HEADER_SIZE + (chunks + 7) / 8;
  uint8_t *buf = malloc (len);
  int r = buf ? io_pread_full (f, buf, len, 0) : -ENOMEM;
  io_close (f);
  if (r < 0) {
    log_error ("%s: cannot read: %s", path, strerror (-r));
    free (buf);
    return 1;
  }
  draw_map (buf + BITMAP_HEADER_SIZE, chunks, chunk, recovering ? 'R' : '#');
  free (buf);
  return 0;
}

static int
cmd_status (int argc, char **argv)
{
  bool json = false, map = false;
  const char *mnt = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp (argv[i], "--json") == 0)
      json = true;
    else if (strcmp (argv[i], "--map") == 0)
      map = true;
    else if (!mnt)
      mnt = argv[i];
    else {
      usage (stderr);
      return 1;
    }
  }
  if (!mnt) {
    usage (stderr);
    return 1;
  }
  char *text = get_attr (mnt, json ? "user.mdfuse.status.json"
                         : "user.mdfuse.status");
  if (!text)
    return 1;
  fputs (text, stdout);
  free (text);
  return map ? status_map (mnt) : 0;
}

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

/* Follow a recovery until the member is active (or the recovery ends
 * without it), with a progress bar on a terminal. */
static int
wait_recovery (const char *mnt)
{
  struct progress prog;
  progress_init (&prog, stdout, "recovery");
  for (;;) {
    char *j = get_attr (mnt, "user.mdfuse.status.json");
    if (!j)
      return 1;
    bool running = !strstr (j, "\"recovery\":null");
    uint64_t chunk = json_number (j, "\"bitmap\":", "chunk_size");
    uint64_t done = json_number (j, "\"recovery\":", "done_chunks");
    uint64_t total = json_number (j, "\"recovery\":", "total_chunks");
    bool recovering = strstr (j, "\"state\":\"recovering\"") != NULL;
    /* The volume's state ("active", "degraded" or "failed"); members'
     * states never take those last two words. */
    bool whole = !strstr (j, "\"state\":\"degraded\"")
      && !strstr (j, "\"state\":\"failed\"");
    free (j);
    if (!running && !recovering) {
      progress_end (&prog);
      printf ("recovery finished: the volume is %s\n",
              whole ? "whole" : "still degraded (see mdfusectl status)");
      return whole ? 0 : 1;
    }
    if (!chunk)
      chunk = 4u << 20;
    progress_update (&prog, done * chunk, total * chunk);
    usleep (200000);
  }
}

static int
cmd_member_op (int argc, char **argv, const char *cmd)
{
  bool wait = strcmp (cmd, "re-add") == 0;
  if (argc == 4 && strcmp (argv[1], "--no-wait") == 0) {
    wait = false;
    argv++;
    argc--;
  }
  if (argc != 3) {
    usage (stderr);
    return 1;
  }
  /* The daemon's working directory is not ours: send an absolute path
   * (a slot number goes as it is). */
  char abs[PATH_MAX];
  const char *arg = argv[2];
  if (strspn (arg, "0123456789") != strlen (arg)) {
    if (!realpath (arg, abs)) {
      log_error ("%s: %s", arg, strerror (errno));
      return 1;
    }
    arg = abs;
  }
  int r = send_command (argv[1], cmd, arg);
  if (r != 0 || !wait)
    return r;
  return wait_recovery (argv[1]);
}

static int
cmd_check (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "repair", no_argument, NULL, 'r' },
    { "rate", required_argument, NULL, 'R' },
    { "no-wait", no_argument, NULL, 'n' },
    { NULL, 0, NULL, 0 },
  };
  bool repair = false, wait = true;
  const char *rate = NULL;
  uint64_t dummy;
  int c;
  while ((c = getopt_long (argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'r': repair = true; break;
    case 'R':
      if (parse_size (optarg, &dummy) < 0) {
        log_error ("--rate %s: not a size (bytes per second)", optarg);
        return 1;
      }
      rate = optarg;
      break;
    case 'n': wait = false; break;
    default: usage (stderr); return 1;
    }
  }
  if (optind + 1 != argc) {
    usage (stderr);
    return 1;
  }
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
    char *j = get_attr (mnt, "user.mdfuse.status.json");
    if (!j)
      return 1;
    bool running = json_true (j, "\"check\":", "running");
    uint64_t done = json_number (j, "\"check\":", "done_bytes");
    uint64_t total = json_number (j, "\"check\":", "total_bytes");
    uint64_t bad = json_number (j, "\"check\":", "mismatches");
    free (j);
    if (!running) {
      progress_end (&prog);
      printf ("%s finished: %" PRIu64 " mismatched chunk%s%s\n",
              repair ? "repair" : "check", bad, bad == 1 ? "" : "s",
              repair && bad ? " rewritten" : "");
      return !repair && bad ? 2 : 0;
    }
    progress_update (&prog, done, total);
    usleep (200000);
  }
}

int
main (int argc, char **argv)
{
  log_set_program ("mdfusectl");
  if (argc < 2) {
    usage (stderr);
    return 1;
  }
  const char *cmd = argv[1];
  if (strcmp (cmd, "create") == 0)
    return cmd_create (argc - 1, argv + 1);
  if (strcmp (cmd, "examine") == 0)
    return cmd_examine (argc - 1, argv + 1);
  if (strcmp (cmd, "new-member") == 0)
    return cmd_new_member (argc - 1, argv + 1);
  if (strcmp (cmd, "examine-bitmap") == 0)
    return cmd_examine_bitmap (argc - 1, argv + 1);
  if (strcmp (cmd, "status") == 0)
    return cmd_status (argc - 1, argv + 1);
  if (strcmp (cmd, "fail") == 0)
    return cmd_member_op (argc - 1, argv + 1, "fail");
  if (strcmp (cmd, "re-add") == 0)
    return cmd_member_op (argc - 1, argv + 1, "re-add");
  if (strcmp (cmd, "check") == 0)
    return cmd_check (argc - 1, argv + 1);
  if (strcmp (cmd, "-h") == 0 || strcmp (cmd, "--help") == 0 || strcmp (cmd, "help") == 0) {
    usage (stdout);
    return 0;
  }
  log_error ("unknown command '%s'", cmd);
  usage (stderr);
  return 1;
}
