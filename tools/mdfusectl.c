/* mdfusectl: create an mdfuse array and examine its files. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bitmap/bitmap_format.h"
#include "core/create.h"
#include "core/io.h"
#include "core/log.h"
#include "core/member.h"
#include "core/superblock.h"
#include "core/util.h"

static void
usage (FILE *f)
{
  fprintf (f,
           "Usage:\n"
           "  mdfusectl create [--force] [--chunk SIZE] [--name NAME]\n"
           "                   [--daemon-sleep SECONDS] --size SIZE\n"
           "                   --bitmap FILE MEMBER MEMBER...\n"
           "  mdfusectl examine MEMBER...\n"
           "  mdfusectl examine-bitmap [--dirty] FILE\n"
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

static int
cmd_examine_bitmap (int argc, char **argv)
{
  bool dirty_list = false;
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp (argv[i], "--dirty") == 0)
      dirty_list = true;
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
  free (buf);
  return st == BITMAP_HEADER_OK ? 0 : 2;
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
  if (strcmp (cmd, "examine-bitmap") == 0)
    return cmd_examine_bitmap (argc - 1, argv + 1);
  if (strcmp (cmd, "-h") == 0 || strcmp (cmd, "--help") == 0 || strcmp (cmd, "help") == 0) {
    usage (stdout);
    return 0;
  }
  log_error ("unknown command '%s'", cmd);
  usage (stderr);
  return 1;
}
