#include <config.h>

#include <errno.h>
#include <limits.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bitmap/bitmap_format.h"
#include "core/assemble.h"
#include "core/create.h"
#include "common/io.h"
#include "common/log.h"
#include "core/member.h"
#include "core/superblock.h"
#include "common/util.h"

int
create_check (const struct create_options *o, size_t nmembers)
{
  if (nmembers < 2) {
    log_error ("a mirror needs at least two members (%zu given)", nmembers);
    return -EINVAL;
  }
  if (nmembers > ASSEMBLE_MAX_SLOTS) {
    log_error ("at most %d members are supported (%zu given)",
               ASSEMBLE_MAX_SLOTS, nmembers);
    return -EINVAL;
  }
  if (o->volume_bytes == 0 || o->volume_bytes % 4096 != 0) {
    log_error ("volume size %" PRIu64 " is not a positive multiple of 4096 "
               "bytes", o->volume_bytes);
    return -EINVAL;
  }
  if (o->volume_bytes < 64 * 1024) {
    log_error ("volume size %" PRIu64 " is too small (at least 64 KiB)",
               o->volume_bytes);
    return -EINVAL;
  }
  if (o->chunk && !bitmap_chunk_valid (o->chunk)) {
    log_error ("chunk size %" PRIu64 " is not a power of two from 4 KiB to "
               "1 GiB", o->chunk);
    return -EINVAL;
  }
  uint64_t chunk = o->chunk ? o->chunk : bitmap_default_chunk (o->volume_bytes);
  if (bitmap_chunks (o->volume_bytes, chunk) > BITMAP_MAX_BITS) {
    log_error ("chunk size %" PRIu64 " gives %" PRIu64 " chunks, more than "
               "%llu; choose a larger chunk", chunk,
               bitmap_chunks (o->volume_bytes, chunk), BITMAP_MAX_BITS);
    return -EINVAL;
  }
  if (o->name && strlen (o->name) > 32) {
    log_error ("name '%s' is longer than 32 bytes", o->name);
    return -EINVAL;
  }
  if (o->daemon_sleep > 3600) {
    log_error ("daemon sleep %u s is out of range (1..3600)", o->daemon_sleep);
    return -EINVAL;
  }
  if (o->write_behind > BITMAP_MAX_WRITE_BEHIND) {
    log_error ("write-behind %" PRIu32 " is out of range (0..%d)",
               o->write_behind, BITMAP_MAX_WRITE_BEHIND);
    return -EINVAL;
  }
  bool all_wm = o->write_mostly != NULL;
  for (size_t i = 0; all_wm && i < nmembers; i++)
    all_wm = o->write_mostly[i];
  if (all_wm) {
    log_error ("every member is write-mostly: at least one must not be");
    return -EINVAL;
  }
  return 0;
}

/* A new file; an NBD export (a URI) exists already and is opened. */
static struct io_file *
create_file (const char *path, bool force)
{
  if (io_is_uri (path))
    return io_open (path, 0);
  int flags = IO_OPEN_CREATE | IO_OPEN_LOCK | (force ? 0 : IO_OPEN_EXCL);
  return io_posix_open (path, flags);
}

/* Make F a member file of SIZE bytes, reading as zeros when ZERO.  A file
 * is truncated; an export (an NBD member) cannot be: it keeps its own
 * size, which must be at least SIZE, and is zeroed.  *ACTUAL is the size
 * the superblock's place is computed from (SPEC §2: the end of the file,
 * or of the export). */
static int
size_member (struct io_file *f, uint64_t size, bool zero, uint64_t *actual)
{
  *actual = size;
  int r = io_truncate (f, 0);
  if (r == 0)
    r = io_truncate (f, size);
  if (r != -EOPNOTSUPP) {
    if (r < 0)
      log_error ("%s: cannot size to %" PRIu64 " bytes: %s", f->name, size,
                 strerror (-r));
    return r;
  }
  int64_t have = io_size (f);
  if (have < 0) {
    log_error ("%s: cannot get its size: %s", f->name, strerror ((int) -have));
    return (int) have;
  }
  if ((uint64_t) have < size) {
    log_error ("%s: the export is %" PRId64 " bytes, too small for a member "
               "of this volume (at least %" PRIu64 " bytes)", f->name, have,
               size);
    return -ENOSPC;
  }
  *actual = (uint64_t) have;
  if (!zero)
    return 0;
  r = io_punch_hole (f, 0, (uint64_t) have);
  if (r == -EOPNOTSUPP) {
    /* The server cannot zero: write the zeros. */
    size_t buflen = 1u << 20;
    void *buf = calloc (1, buflen);
    r = buf ? 0 : -ENOMEM;
    for (uint64_t off = 0; r == 0 && off < (uint64_t) have; off += buflen) {
      size_t n = (uint64_t) have - off < buflen ? (size_t) ((uint64_t) have
                                                            - off) : buflen;
      r = io_pwrite_full (f, buf, n, off);
    }
    free (buf);
  }
  if (r < 0)
    log_error ("%s: cannot zero the export: %s", f->name, strerror (-r));
  return r;
}

int
create_array_on (const struct create_options *o, struct io_file *const *files,
                 size_t n, struct io_file *bio)
{
  int r = create_check (o, n);
  if (r < 0)
    return r;
  uint64_t chunk = o->chunk ? o->chunk : bitmap_default_chunk (o->volume_bytes);
  uint64_t member_size = sb_member_size_for (o->volume_bytes);
  struct md_sb sb;
  memset (&sb, 0, sizeof sb);
  r = random_bytes (sb.set_uuid, 16);
  if (r < 0) {
    log_error ("cannot get random bytes: %s", strerror (-r));
    return r;
  }
  snprintf (sb.set_name, sizeof sb.set_name, "%s", o->name ? o->name : "");
  sb.ctime = sb.utime = (uint64_t) time (NULL);
  sb.level = 1;
  sb.raid_disks = (uint32_t) n;
  sb.size = o->volume_bytes / 512;
  sb.data_offset = 0;
  sb.super_offset = sb_super_offset_for (member_size);
  sb.data_size = sb.super_offset;
  sb.events = 1;
  sb.resync_offset = SB_RESYNC_CLEAN;   /* zeros everywhere: in sync */
  sb.max_dev = (uint32_t) n;
  for (uint32_t k = 0; k < n; k++)
    sb.dev_roles[k] = (uint16_t) k;
  if (o->write_behind && !bio) {
    log_error ("write-behind needs a bitmap: its bits cover the writes "
               "still behind");
    return -EINVAL;
  }

  for (size_t i = 0; i < n; i++) {
    /* Sparse zeros: every member reads as zeros, so no initial sync. */
    uint64_t size;
    r = size_member (files[i], member_size, true, &size);
    if (r < 0)
      return r;
    sb.super_offset = sb_super_offset_for (size);
    sb.data_size = sb.super_offset;
    sb.dev_number = (uint32_t) i;
    sb.devflags = o->write_mostly && o->write_mostly[i]
      ? SB_DEVFLAG_WRITE_MOSTLY : 0;
    r = random_bytes (sb.device_uuid, 16);
    if (r < 0) {
      log_error ("%s: cannot get random bytes: %s", files[i]->name,
                 strerror (-r));
      return r;
    }
    r = member_write_sb (files[i], &sb);
    if (r < 0) {
      log_error ("%s: cannot write the superblock: %s", files[i]->name,
                 strerror (-r));
      return r;
    }
  }

  if (bio) {
    uint64_t chunks = bitmap_chunks (o->volume_bytes, chunk);
    uint64_t bytes = bitmap_file_size (chunks);
    uint8_t *buf = calloc (1, bytes);
    if (!buf) {
      r = -ENOMEM;
      log_error ("%s: out of memory", bio->name);
      return r;
    }
    struct bitmap_header h = {
      .events = sb.events,
      .events_cleared = sb.events,
      .sync_size = sb.size,
      .state = 0,
      .chunksize = (uint32_t) chunk,
      .daemon_sleep = o->daemon_sleep ? o->daemon_sleep
        : BITMAP_DEFAULT_DAEMON_SLEEP,
      .write_behind = o->write_behind,
    };
    memcpy (h.uuid, sb.set_uuid, 16);
    bitmap_header_encode (&h, buf);
    r = io_truncate (bio, 0);
    if (r == 0)
      r = io_pwrite_full (bio, buf, bytes, 0);
    if (r == 0)
      r = io_fdatasync (bio);
    free (buf);
    if (r < 0) {
      log_error ("%s: cannot write the bitmap: %s", bio->name, strerror (-r));
      return r;
    }
  }
  return 0;
}

/* If PATH holds an md superblock, say which array it belongs to ("appears
 * to be part of a raid array", as mdadm says) into WHAT. */
static bool
describe_member (const char *path, char *what, size_t len)
{
  struct io_file *f = io_open (path, IO_OPEN_READONLY);
  if (!f)
    return false;
  struct member_probe p;
  bool ours = member_probe (f, &p) == 0 && p.status == SB_VALID;
  io_close (f);
  if (ours) {
    char uuid[36];
    sb_format_uuid (p.sb.set_uuid, uuid);
    snprintf (what, len, "it appears to be member %" PRIu32 " of an md "
              "raid array (name '%s', uuid %s, events %" PRIu64 ")",
              p.sb.dev_number, p.sb.set_name, uuid, p.sb.events);
  }
  return ours;
}

/* The same for a bitmap file. */
static bool
describe_bitmap (const char *path, char *what, size_t len)
{
  struct io_file *f = io_posix_open (path, IO_OPEN_READONLY);
  if (!f)
    return false;
  uint8_t hdr[BITMAP_HEADER_SIZE];
  struct bitmap_header h;
  char why[200];
  bool ours = io_pread_full (f, hdr, sizeof hdr, 0) == 0
    && bitmap_header_decode (hdr, &h, why, sizeof why) == BITMAP_HEADER_OK;
  io_close (f);
  if (ours) {
    char uuid[36];
    sb_format_uuid (h.uuid, uuid);
    snprintf (what, len, "it appears to be the bitmap of an md raid array "
              "(uuid %s, events %" PRIu64 ")", uuid, h.events);
  }
  return ours;
}

/* The filesystem a path is on, or will be on (its directory's). */
static int
filesystem_of (const char *path, dev_t *dev)
{
  struct stat st;
  if (stat (path, &st) == 0) {
    *dev = st.st_dev;
    return 0;
  }
  char dir[PATH_MAX];
  snprintf (dir, sizeof dir, "%s", path);
  char *slash = strrchr (dir, '/');
  if (!slash)
    snprintf (dir, sizeof dir, ".");
  else if (slash == dir)
    dir[1] = '\0';
  else
    *slash = '\0';
  if (stat (dir, &st) < 0)
    return -errno;
  *dev = st.st_dev;
  return 0;
}

/* The index of a member on the same filesystem as BITMAP, or -1. */
static int
same_filesystem (const char *bitmap, const char *const *members, size_t n)
{
  dev_t b, m;
  if (filesystem_of (bitmap, &b) < 0)
    return -1;                  /* the open that follows says why */
  for (size_t i = 0; i < n; i++)
    if (!io_is_uri (members[i]) && filesystem_of (members[i], &m) == 0
        && m == b)
      return (int) i;
  return -1;
}

int
create_array (const struct create_options *o, const char *const *members,
              size_t n)
{
  int r = create_check (o, n);
  if (r < 0)
    return r;
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++)
      if (strcmp (members[i], members[j]) == 0) {
        log_error ("%s: given twice", members[i]);
        return -EINVAL;
      }

  /* Refuse before creating anything if a file exists; with --force, say
   * which array a file to be overwritten belongs to. */
  for (size_t i = 0; i <= n; i++) {
    const char *p = i < n ? members[i] : o->bitmap;
    if (p && i == n && io_is_uri (p)) {
      log_error ("%s: the bitmap must be a local file, not an NBD export", p);
      return -EINVAL;
    }
    if (!p || (!io_is_uri (p) && access (p, F_OK) != 0))
      continue;
    char what[160];
    bool ours = i < n ? describe_member (p, what, sizeof what)
      : describe_bitmap (p, what, sizeof what);
    /* An export is always there: only a member's superblock on it stops
     * the create. */
    if (io_is_uri (p) && !ours)
      continue;
    if (!o->force) {
      log_error ("%s: already %s%s%s (use --force to overwrite)", p,
                 io_is_uri (p) ? "in use" : "exists", ours ? ": " : "",
                 ours ? what : "");
      return -EEXIST;
    }
    if (ours)
      log_warn ("%s: %s; overwriting it (--force)", p, what);
  }

  /* The bitmap on another filesystem than every member (SPEC §3): a
   * mount would refuse it. */
  if (o->bitmap) {
    int k = same_filesystem (o->bitmap, members, n);
    if (k >= 0) {
      log_error ("%s: on the same filesystem as member %s; put the bitmap "
                 "on another device (mdfuse refuses to mount it there)",
                 o->bitmap, members[k]);
      return -EINVAL;
    }
  }

  /* Open and lock every file before changing any: a file in use by a
   * running mdfuse stops the create with nothing truncated. */
  struct io_file *files[ASSEMBLE_MAX_SLOTS] = { 0 };
  struct io_file *bio = NULL;
  bool existed[ASSEMBLE_MAX_SLOTS + 1];
  for (size_t i = 0; i <= n; i++) {
    const char *p = i < n ? members[i] : o->bitmap;
    existed[i] = p && (io_is_uri (p) || access (p, F_OK) == 0);
  }
  size_t made = 0;
  for (size_t i = 0; i < n; i++) {
    files[i] = create_file (members[i], o->force);
    if (!files[i]) {
      r = -errno;               /* io_posix_open logged it */
      goto close_all;
    }
    made = i + 1;
  }
  if (o->bitmap) {
    bio = create_file (o->bitmap, o->force);
    if (!bio) {
      r = -errno;
      goto close_all;
    }
  }

  r = create_array_on (o, files, n, bio);
  if (r < 0)
    goto undo;
  for (size_t i = 0; i < n; i++)
    io_close (files[i]);
  io_close (bio);
  return 0;

undo:
  /* Half made: remove what we made (all of it was ours to overwrite). */
  for (size_t i = 0; i < n; i++)
    if (!io_is_uri (members[i]))
      unlink (members[i]);
  if (bio)
    unlink (o->bitmap);
  for (size_t i = 0; i <= n; i++)
    existed[i] = false;         /* removed above */
close_all:
  /* Files that were not there before are removed; existing ones were
   * not touched yet. */
  for (size_t i = 0; i < made; i++) {
    io_close (files[i]);
    if (!existed[i])
      unlink (members[i]);
  }
  if (bio) {
    io_close (bio);
    if (!existed[n])
      unlink (o->bitmap);
  }
  return r;
}

int
create_member_like (const char *like, uint32_t slot, const char *path,
                    bool force)
{
  struct io_file *src = io_open (like, IO_OPEN_READONLY);
  if (!src)
    return -errno;              /* io_open logged it */
  struct member_probe p;
  int r = member_probe (src, &p);
  io_close (src);
  if (r < 0 || p.status != SB_VALID) {
    log_error ("%s: %s", like, p.why);
    return r < 0 ? r : -EINVAL;
  }
  if (slot >= p.sb.raid_disks) {
    log_error ("slot %" PRIu32 " does not exist: %s has %" PRIu32
               " slots (0..%" PRIu32 ")", slot, like, p.sb.raid_disks,
               p.sb.raid_disks - 1);
    return -EINVAL;
  }
  bool uri = io_is_uri (path);
  char what[160];
  if (!force && (uri ? describe_member (path, what, sizeof what)
                 : access (path, F_OK) == 0)) {
    log_error ("%s: already %s (use --force to overwrite)", path,
               uri ? "holds an md member superblock" : "exists");
    return -EEXIST;
  }
  bool existed = uri || access (path, F_OK) == 0;
  struct io_file *f = create_file (path, force);
  if (!f)
    return -errno;
  /* The array's fields, a fresh device, events 0: whatever the array's
   * events_cleared, this member is recovered in full when re-added. */
  struct md_sb sb = p.sb;
  uint64_t size = (uint64_t) p.file_size;
  sb.dev_number = slot;
  r = random_bytes (sb.device_uuid, 16);
  if (r < 0) {
    log_error ("%s: cannot get random bytes: %s", path, strerror (-r));
    io_close (f);
    if (!existed)
      unlink (path);
    return r;
  }
  sb.events = 0;
  sb.resync_offset = 0;
  sb.super_offset = sb_super_offset_for (size);
  sb.data_size = sb.super_offset;
  sb.utime = (uint64_t) time (NULL);
  for (uint32_t k = 0; k < sb.max_dev; k++)
    sb.dev_roles[k] = (uint16_t) k;
  /* Its data need not be zeros: the member is recovered in full.  An
   * export keeps its size, which needs only to hold the volume. */
  r = size_member (f, uri ? sb_member_size_for (p.sb.size * 512) : size,
                   false, &size);
  if (r == 0) {
    sb.super_offset = sb_super_offset_for (size);
    sb.data_size = sb.super_offset;
    r = member_write_sb (f, &sb);
    if (r < 0)
      log_error ("%s: cannot write the superblock: %s", path, strerror (-r));
  }
  io_close (f);
  if (r < 0 && !existed)
    unlink (path);
  return r;
}

int
create_bitmap_for (const struct create_bitmap_options *o,
                   const char *const *members, size_t n)
{
  if (n == 0) {
    log_error ("add-bitmap: give the array's members (all of them, so that "
               "the bitmap can be checked to be on another filesystem)");
    return -EINVAL;
  }
  if (o->chunk && !bitmap_chunk_valid (o->chunk)) {
    log_error ("chunk %" PRIu64 " is not a power of two between 4K and 1G",
               o->chunk);
    return -EINVAL;
  }
  if (o->daemon_sleep > 3600) {
    log_error ("daemon sleep %u s is out of range (1..3600)", o->daemon_sleep);
    return -EINVAL;
  }
  if (io_is_uri (o->bitmap)) {
    log_error ("%s: the bitmap must be a local file", o->bitmap);
    return -EINVAL;
  }

  /* What the members say: one array, its events. */
  struct md_sb ref;
  uint64_t events = 0;
  for (size_t i = 0; i < n; i++) {
    if (strcmp (members[i], o->bitmap) == 0) {
      log_error ("%s: given as the bitmap and as a member", o->bitmap);
      return -EINVAL;
    }
    struct io_file *f = io_open (members[i], IO_OPEN_READONLY);
    if (!f)
      return -errno;            /* io_open logged it */
    struct member_probe p;
    int r = member_probe (f, &p);
    io_close (f);
    if (r < 0 || p.status != SB_VALID) {
      log_error ("%s: %s", members[i], p.why);
      return r < 0 ? r : -EINVAL;
    }
    if (i == 0)
      ref = p.sb;
    else if (memcmp (p.sb.set_uuid, ref.set_uuid, 16) != 0) {
      char a[36], b[36];
      sb_format_uuid (p.sb.set_uuid, a);
      sb_format_uuid (ref.set_uuid, b);
      log_error ("%s: member of another array (uuid %s; %s has %s)",
                 members[i], a, members[0], b);
      return -EINVAL;
    }
    else if (p.sb.size != ref.size) {
      log_error ("%s: holds %" PRIu64 " sectors, %s %" PRIu64 ": not one "
                 "array", members[i], p.sb.size, members[0], ref.size);
      return -EINVAL;
    }
    if (p.sb.events > events)
      events = p.sb.events;
  }
  uint64_t volume_bytes = ref.size * 512;
  uint64_t chunk = o->chunk ? o->chunk : bitmap_default_chunk (volume_bytes);
  uint64_t chunks = bitmap_chunks (volume_bytes, chunk);
  if (chunks > BITMAP_MAX_BITS) {
    log_error ("a chunk of %" PRIu64 " bytes gives %" PRIu64 " chunks, more "
               "than the %llu supported; give a larger --chunk", chunk,
               chunks, BITMAP_MAX_BITS);
    return -EINVAL;
  }

  if (access (o->bitmap, F_OK) == 0) {
    char what[160];
    bool ours = describe_bitmap (o->bitmap, what, sizeof what);
    if (!o->force) {
      log_error ("%s: already exists%s%s (use --force to replace it)",
                 o->bitmap, ours ? ": " : "", ours ? what : "");
      return -EEXIST;
    }
    if (ours)
      log_warn ("%s: %s; replacing it (--force)", o->bitmap, what);
  }
  int k = same_filesystem (o->bitmap, members, n);
  if (k >= 0) {
    log_error ("%s: on the same filesystem as member %s; put the bitmap on "
               "another device (mdfuse refuses to mount it there)", o->bitmap,
               members[k]);
    return -EINVAL;
  }

  bool existed = access (o->bitmap, F_OK) == 0;
  struct io_file *bio = create_file (o->bitmap, o->force);
  if (!bio)
    return -errno;              /* in use by a running mdfuse, say */
  uint64_t bytes = bitmap_file_size (chunks);
  uint8_t *buf = calloc (1, bytes);
  if (!buf) {
    log_error ("%s: out of memory", o->bitmap);
    io_close (bio);
    if (!existed)
      unlink (o->bitmap);
    return -ENOMEM;
  }
  /* It has seen no write: every bit set, and marked out of date, so that
   * the first mount copies every chunk (SPEC §5 step 4) and no bit ever
   * claims a chunk clean that it did not watch. */
  struct bitmap_header h = {
    .events = events,
    .events_cleared = events,
    .sync_size = ref.size,
    .state = BITMAP_STATE_STALE,
    .chunksize = (uint32_t) chunk,
    .daemon_sleep = o->daemon_sleep ? o->daemon_sleep
      : BITMAP_DEFAULT_DAEMON_SLEEP,
  };
  memcpy (h.uuid, ref.set_uuid, 16);
  bitmap_header_encode (&h, buf);
  for (uint64_t c = 0; c < chunks; c++)
    buf[bitmap_bit_byte (c)] |= bitmap_bit_mask (c);
  int r = io_truncate (bio, 0);
  if (r == 0)
    r = io_pwrite_full (bio, buf, bytes, 0);
  if (r == 0)
    r = io_fdatasync (bio);
  free (buf);
  io_close (bio);
  if (r < 0) {
    log_error ("%s: cannot write the bitmap: %s", o->bitmap, strerror (-r));
    unlink (o->bitmap);
    return r;
  }
  return 0;
}

int
member_set_write_mostly (const char *path, bool set)
{
  /* The lock a running mdfuse holds on its members: taken, the file is
   * ours until it closes. */
  struct io_file *f = io_posix_open (path, IO_OPEN_LOCK);
  if (!f)
    return -errno;              /* io_posix_open logged it ("in use") */
  struct member_probe p;
  int r = member_probe (f, &p);
  if (r == 0 && p.status != SB_VALID) {
    log_error ("%s: %s", path, p.why);
    r = -EINVAL;
  }
  else if (r < 0)
    log_error ("%s: %s", path, p.why);
  if (r == 0) {
    uint8_t want = set ? (uint8_t) (p.sb.devflags | SB_DEVFLAG_WRITE_MOSTLY)
      : (uint8_t) (p.sb.devflags & ~SB_DEVFLAG_WRITE_MOSTLY);
    if (want != p.sb.devflags) {
      p.sb.devflags = want;
      r = member_write_sb (f, &p.sb);
      if (r < 0)
        log_error ("%s: cannot write the superblock: %s", path,
                   strerror (-r));
    }
  }
  io_close (f);
  return r;
}
