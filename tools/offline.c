/* mdfusectl's commands that work on the files themselves, with no daemon:
 * create, new-member, examine, examine-bitmap; and the map of a bitmap. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "bitmap/bitmap_format.h"
#include "common/io.h"
#include "common/log.h"
#include "common/util.h"
#include "core/create.h"
#include "core/member.h"
#include "core/superblock.h"
#include "tools/mdfusectl.h"

/* --chunk SIZE and --daemon-sleep SECONDS of command CMD: 0, or a usage
 * error's exit status. */
static int
opt_chunk (const char *cmd, const char *arg, uint64_t *chunk)
{
  int r = parse_size (arg, chunk);
  if (r < 0 || *chunk == 0)
    return usage_error (cmd, "--chunk %s: %s", arg,
                        r < 0 ? size_error (r) : "must not be 0");
  return 0;
}

static int
opt_daemon_sleep (const char *cmd, const char *arg, unsigned *sleep)
{
  char *end;
  unsigned long v = strtoul (arg, &end, 10);
  if (*end || v < 1 || v > 3600)
    return usage_error (cmd, "--daemon-sleep %s: not a number of seconds "
                        "in 1..3600", arg);
  *sleep = (unsigned) v;
  return 0;
}

int
cmd_create (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "force", no_argument, NULL, 'f' },
    { "chunk", required_argument, NULL, 'c' },
    { "name", required_argument, NULL, 'n' },
    { "size", required_argument, NULL, 's' },
    { "bitmap", required_argument, NULL, 'b' },
    { "daemon-sleep", required_argument, NULL, 'd' },
    { "write-mostly", no_argument, NULL, 'W' },
    { "readwrite", no_argument, NULL, 'R' },
    { "write-behind", required_argument, NULL, 'B' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct create_options o = { 0 };
  bool have_size = false;
  /* The members in order, each with the --write-mostly or --readwrite
   * that came last before it (as mdadm reads them): "-" makes getopt
   * hand over operands in place (as option 1). */
  char **members = calloc ((size_t) argc + 1, sizeof *members);
  bool *wm = calloc ((size_t) argc + 1, sizeof *wm);
  if (!members || !wm) {
    free (members);
    free (wm);
    log_error ("out of memory");
    return EXIT_FAIL;
  }
  int n = 0, rc = 0;
  bool write_mostly = false, any_wm = false;
  int c;
  while (rc == 0
         && (c = getopt_long (argc, argv, "-fc:n:s:b:d:h", longopts, NULL))
         != -1) {
    switch (c) {
    case 1:
      wm[n] = write_mostly;
      any_wm |= write_mostly;
      members[n++] = optarg;
      break;
    case 'W':
      write_mostly = true;
      break;
    case 'R':
      write_mostly = false;
      break;
    case 'B': {
      char *end;
      unsigned long v = strtoul (optarg, &end, 10);
      if (*end || end == optarg || v > BITMAP_MAX_WRITE_BEHIND)
        rc = usage_error ("create", "--write-behind %s: not a number in "
                          "0..%d", optarg, BITMAP_MAX_WRITE_BEHIND);
      o.write_behind = (uint32_t) v;
      break;
    }
    case 'f':
      o.force = true;
      break;
    case 'c':
      rc = opt_chunk ("create", optarg, &o.chunk);
      break;
    case 'n':
      o.name = optarg;
      break;
    case 's': {
      int r = parse_size (optarg, &o.volume_bytes);
      if (r < 0) {
        rc = usage_error ("create", "--size %s: %s", optarg,
                          size_error (r));
      }
      have_size = true;
      break;
    }
    case 'b':
      o.bitmap = optarg;
      break;
    case 'd':
      rc = opt_daemon_sleep ("create", optarg, &o.daemon_sleep);
      break;
    case 'h':
      usage ("create");
      rc = -1;
      break;
    default:
      rc = usage_error ("create", NULL);
    }
  }
  /* After "--", the rest are members. */
  for (int i = optind; rc == 0 && i < argc; i++) {
    wm[n] = write_mostly;
    any_wm |= write_mostly;
    members[n++] = argv[i];
  }
  if (rc == 0 && !have_size)
    rc = usage_error ("create", "--size SIZE is required");
  if (rc == 0 && !o.bitmap)
    rc = usage_error ("create", "--bitmap FILE is required");
  if (rc == 0)
    rc = check_operands ("create", n, members, 0, 1, -1, "MEMBER MEMBER...");
  if (rc == 0 && o.write_behind && !any_wm)
    log_warn ("--write-behind %" PRIu32 " with no --write-mostly member: "
              "every write stays synchronous until a member is made "
              "write-mostly ('mdfusectl write-mostly --set')", o.write_behind);
  o.write_mostly = any_wm ? wm : NULL;
  if (rc == 0 && create_array (&o, (const char *const *) members,
                               (size_t) n) < 0)
    rc = EXIT_FAIL;
  free (members);
  free (wm);
  if (rc)
    return rc < 0 ? 0 : rc;
  uint64_t chunk = o.chunk ? o.chunk : bitmap_default_chunk (o.volume_bytes);
  char vs[32], cs[32];
  format_bytes (o.volume_bytes, vs, sizeof vs);
  format_bytes (chunk, cs, sizeof cs);
  printf ("created a %d-member mirror of %s, chunk %s, bitmap %s\n", n, vs,
          cs, o.bitmap);
  return 0;
}

int
cmd_new_member (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "force", no_argument, NULL, 'f' },
    { "like", required_argument, NULL, 'l' },
    { "slot", required_argument, NULL, 's' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  bool force = false;
  const char *like = NULL;
  long slot = -1;
  int c;
  while ((c = getopt_long (argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 'f': force = true; break;
    case 'l': like = optarg; break;
    case 's': {
      char *end;
      slot = strtol (optarg, &end, 10);
      if (*end || slot < 0) {
        return usage_error ("new-member", "--slot %s: not a slot number",
                            optarg);
      }
      break;
    }
    case 'h': usage ("new-member"); return 0;
    default: return usage_error ("new-member", NULL);
    }
  }
  if (!like || slot < 0 || optind + 1 != argc) {
    return usage_error ("new-member", "--like MEMBER, --slot N and NEWFILE "
                        "are needed");
  }
  if (create_member_like (like, (uint32_t) slot, argv[optind], force) < 0)
    return 1;
  printf ("%s: new member for slot %ld; add it with 'mdfusectl re-add "
          "MOUNTPOINT %s' (everything is copied)\n", argv[optind], slot,
          argv[optind]);
  return 0;
}

int
cmd_add_bitmap (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "force", no_argument, NULL, 'f' },
    { "chunk", required_argument, NULL, 'c' },
    { "bitmap", required_argument, NULL, 'b' },
    { "daemon-sleep", required_argument, NULL, 'd' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct create_bitmap_options o = { 0 };
  int c, u;
  while ((c = getopt_long (argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 'f':
      o.force = true;
      break;
    case 'c':
      if ((u = opt_chunk ("add-bitmap", optarg, &o.chunk)))
        return u;
      break;
    case 'b':
      o.bitmap = optarg;
      break;
    case 'd':
      if ((u = opt_daemon_sleep ("add-bitmap", optarg, &o.daemon_sleep)))
        return u;
      break;
    case 'h':
      usage ("add-bitmap");
      return 0;
    default:
      return usage_error ("add-bitmap", NULL);
    }
  }
  if (!o.bitmap)
    return usage_error ("add-bitmap", "--bitmap FILE is required");
  u = check_operands ("add-bitmap", argc, argv, optind, 1, -1,
                          "MEMBER...");
  if (u)
    return u;
  size_t n = (size_t) (argc - optind);
  if (create_bitmap_for (&o, (const char *const *) argv + optind, n) < 0)
    return EXIT_FAIL;
  printf ("%s: a new bitmap, every chunk marked; mount with -o bitmap=%s "
          "(the first mount copies every chunk, in the background)\n",
          o.bitmap, o.bitmap);
  return 0;
}

/* A command's only option is --help: 0 when the operands start at
 * optind, -1 after printing the usage on --help, EXIT_USAGE on a bad
 * option. */
static int
help_only (int argc, char **argv, const char *name)
{
  static const struct option longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int c;
  while ((c = getopt_long (argc, argv, "h", longopts, NULL)) != -1) {
    if (c == 'h') {
      usage (name);
      return -1;
    }
    return usage_error (name, NULL);
  }
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
  struct io_file *f = io_open (path, IO_OPEN_READONLY);
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
  printf ("%16s : %08x\n", "Magic", SB_MAGIC);
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
  if (s->devflags) {
    /* As mdadm --examine shows them. */
    printf ("%16s :%s%s\n", "Flags",
            (s->devflags & SB_DEVFLAG_WRITE_MOSTLY) ? " write-mostly" : "",
            (s->devflags & 2) ? " failfast" : "");
  }
  print_time ("Update Time", s->utime);
  printf ("%16s : %" PRIu64 "\n", "Events", s->events);
  printf ("%16s : %s\n", "State", sb_state_name (s));
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
  uint16_t role = sb_own_role (s);
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
  return p.status == SB_VALID ? 0 : EXIT_FOUND;
}

int
cmd_examine (int argc, char **argv)
{
  int h = help_only (argc, argv, "examine");
  if (h != 0)
    return h < 0 ? 0 : h;
  int u = check_operands ("examine", argc, argv, optind, 1, -1, "MEMBER...");
  if (u)
    return u;
  int rc = 0;
  for (int i = optind; i < argc; i++) {
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

/* Each cell stands for as many chunks as it takes to fit in 16 rows of
 * the terminal's width. */
void
draw_map (const uint8_t *file, uint64_t nchunks, uint64_t chunk,
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
      if (bitmap_bit_test (file, c)) {
        dirty = true;
        break;
      }
    putchar (dirty ? dirty_char : '.');
    if ((cell + 1) % cols == 0 || cell + 1 == cells)
      putchar ('\n');
  }
}

int
cmd_examine_bitmap (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "dirty", no_argument, NULL, 'd' },
    { "map", no_argument, NULL, 'm' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  bool dirty_list = false, map = false;
  int c;
  while ((c = getopt_long (argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 'd': dirty_list = true; break;
    case 'm': map = true; break;
    case 'h': usage ("examine-bitmap"); return 0;
    default: return usage_error ("examine-bitmap", NULL);
    }
  }
  int u = check_operands ("examine-bitmap", argc, argv, optind, 1, 1, "FILE");
  if (u)
    return u;
  const char *path = argv[optind];
  struct io_file *f = io_posix_open (path, IO_OPEN_READONLY);
  if (!f)
    return 1;
  int64_t size = io_size (f);
  if (size < 0) {
    log_error ("%s: cannot get its size: %s", path, strerror ((int) -size));
    io_close (f);
    return 1;
  }
  if (size < BITMAP_HEADER_SIZE) {
    log_error ("%s: file is %" PRId64 " bytes, too small to be a bitmap",
               path, size);
    io_close (f);
    return 1;
  }
  uint8_t *buf = malloc ((size_t) size);
  int r = buf ? io_pread_full (f, buf, (size_t) size, 0) : -ENOMEM;
  io_close (f);
  if (r < 0) {
    log_error ("%s: cannot read: %s", path, strerror (-r));
    free (buf);
    return 1;
  }

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
  if ((uint64_t) size < bitmap_bits_end (chunks)) {
    log_error ("%s: file is %" PRId64 " bytes, too small for %" PRIu64
               " chunks", path, size, chunks);
    free (buf);
    return 1;
  }
  uint64_t dirty = bitmap_count_dirty (buf, chunks);
  if (dirty_list) {
    for (uint64_t k = 0; k < chunks; k++)
      if (bitmap_bit_test (buf, k))
        printf ("%" PRIu64 "\n", k);
    free (buf);
    return st == BITMAP_HEADER_OK ? 0 : EXIT_FOUND;
  }
  char uuid[36];
  sb_format_uuid (h.uuid, uuid);
  printf ("%16s : %s\n", "Filename", path);
  printf ("%16s : %08x\n", "Magic", BITMAP_MAGIC);
  printf ("%16s : %d\n", "Version", BITMAP_VERSION);
  printf ("%16s : %s\n", "UUID", uuid);
  printf ("%16s : %" PRIu64 "\n", "Events", h.events);
  printf ("%16s : %" PRIu64 "\n", "Events Cleared", h.events_cleared);
  printf ("%16s : %s\n", "State", bitmap_state_name (h.state));
  printf ("%16s : %" PRIu32 "\n", "Chunksize", h.chunksize);
  printf ("%16s : %" PRIu32 "s flush period\n", "Daemon", h.daemon_sleep);
  if (h.write_behind)
    printf ("%16s : Allow write behind, max %" PRIu32 "\n", "Write Mode",
            h.write_behind);
  else
    printf ("%16s : Normal\n", "Write Mode");
  printf ("%16s : %" PRIu64 "\n", "Sync Size", h.sync_size * 512);
  printf ("%16s : %" PRIu64 " bits (chunks), %" PRIu64 " dirty (%.1f%%)\n",
          "Bitmap", chunks, dirty,
          chunks ? 100.0 * (double) dirty / (double) chunks : 0.0);
  printf ("%16s : %s\n", "Checksum",
          st == BITMAP_HEADER_OK ? "correct" : why);
  if (map)
    draw_map (buf, chunks, h.chunksize, '#');
  free (buf);
  return st == BITMAP_HEADER_OK ? 0 : EXIT_FOUND;
}

int
cmd_write_mostly (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "set", no_argument, NULL, 's' },
    { "clear", no_argument, NULL, 'c' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int set = -1;
  int c;
  while ((c = getopt_long (argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 's': set = 1; break;
    case 'c': set = 0; break;
    case 'h': usage ("write-mostly"); return 0;
    default: return usage_error ("write-mostly", NULL);
    }
  }
  if (set < 0)
    return usage_error ("write-mostly", "--set or --clear is needed");
  int u = check_operands ("write-mostly", argc, argv, optind, 1, -1,
                          "MEMBER...");
  if (u)
    return u;
  int rc = 0;
  for (int i = optind; i < argc; i++) {
    if (member_set_write_mostly (argv[i], set == 1) < 0) {
      rc = EXIT_FAIL;
      continue;
    }
    printf ("%s: %s\n", argv[i], set ? "write-mostly (read only when no "
            "other member can serve)" : "no longer write-mostly");
  }
  return rc;
}
