#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/member.h"

const char *
member_state_name (enum member_state st)
{
  switch (st) {
  case MEMBER_ACTIVE: return "active";
  case MEMBER_RECOVERING: return "recovering";
  case MEMBER_FAULTY: return "faulty";
  case MEMBER_MISSING: return "missing";
  }
  return "?";
}

int
member_probe (struct io_file *io, struct member_probe *probe)
{
  memset (probe, 0, sizeof *probe);
  probe->status = SB_NO_MAGIC;
  probe->file_size = io_size (io);
  if (probe->file_size < 0) {
    snprintf (probe->why, sizeof probe->why, "cannot stat: %s",
              strerror ((int) -probe->file_size));
    return (int) probe->file_size;
  }
  uint64_t off = sb_super_offset_for ((uint64_t) probe->file_size);
  if (probe->file_size < 2 * SB_BLOCK_SIZE || off == 0) {
    snprintf (probe->why, sizeof probe->why,
              "file is %" PRId64 " bytes, too small to hold a member",
              probe->file_size);
    return 0;
  }
  uint8_t block[SB_BLOCK_SIZE] __attribute__ ((aligned (8)));
  int r = io_pread_full (io, block, sizeof block, off * 512);
  if (r < 0) {
    snprintf (probe->why, sizeof probe->why,
              "cannot read the superblock at sector %" PRIu64 ": %s", off,
              strerror (-r));
    return r;
  }
  probe->status = sb_decode (block, &probe->sb, probe->why, sizeof probe->why);
  if (probe->status == SB_NO_MAGIC) {
    size_t used = strlen (probe->why);
    snprintf (probe->why + used, sizeof probe->why - used,
              " at sector %" PRIu64, off);
  }
  if (probe->status == SB_VALID && probe->sb.super_offset != off) {
    snprintf (probe->why, sizeof probe->why,
              "superblock says it is at sector %" PRIu64
              " but was found at %" PRIu64 " (file resized?)",
              probe->sb.super_offset, off);
    probe->status = SB_UNSUPPORTED;
  }
  return 0;
}

int
member_write_sb_unsynced (struct io_file *io, const struct md_sb *sb)
{
  uint8_t block[SB_BLOCK_SIZE] __attribute__ ((aligned (8)));
  sb_encode (sb, block);
  return io_pwrite_full (io, block, sizeof block, sb->super_offset * 512);
}

int
member_write_sb (struct io_file *io, const struct md_sb *sb)
{
  int r = member_write_sb_unsynced (io, sb);
  if (r == 0)
    r = io_fdatasync (io);
  return r;
}
