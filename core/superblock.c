#include <config.h>

#include <endian.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <linux/raid/md_p.h>

#include "core/superblock.h"

_Static_assert (SB_MAGIC == MD_SB_MAGIC, "SB_MAGIC is md's");

_Static_assert (SB_DEVFLAG_WRITE_MOSTLY == WriteMostly1,
                "SB_DEVFLAG_WRITE_MOSTLY is md's WriteMostly1");

_Static_assert (sizeof (struct mdp_superblock_1) == 256,
                "mdp_superblock_1 must be 256 bytes before dev_roles");

uint64_t
sb_super_offset_for (uint64_t file_size)
{
  uint64_t dsize = file_size / 512;
  if (dsize < 16)
    return 0;
  return (dsize - 16) & ~(uint64_t) 7;
}

uint64_t
sb_max_volume_for (uint64_t file_size)
{
  return (sb_super_offset_for (file_size) * 512) & ~(uint64_t) 4095;
}

uint64_t
sb_member_size_for (uint64_t volume_bytes)
{
  /* V/512 + 16 sectors puts the superblock exactly at V (V is 4 KiB
   * aligned, so (dsize - 16) & ~7 == V/512), followed by 4 KiB spare. */
  return volume_bytes + 8192;
}

uint32_t
sb_checksum (const uint8_t block[SB_BLOCK_SIZE])
{
  const struct mdp_superblock_1 *s = (const void *) block;
  uint32_t max_dev = le32toh (s->max_dev);
  if (max_dev > (SB_BLOCK_SIZE - 256) / 2)
    max_dev = (SB_BLOCK_SIZE - 256) / 2;
  size_t size = 256 + 2 * (size_t) max_dev;
  size_t csum_off = offsetof (struct mdp_superblock_1, sb_csum);
  uint64_t sum = 0;
  size_t i;
  for (i = 0; i + 4 <= size; i += 4) {
    uint32_t w;
    if (i == csum_off)
      continue;                 /* sb_csum is taken as 0 */
    memcpy (&w, block + i, 4);
    sum += le32toh (w);
  }
  if (size - i == 2) {
    uint16_t h;
    memcpy (&h, block + i, 2);
    sum += le16toh (h);
  }
  return (uint32_t) ((sum & 0xffffffff) + (sum >> 32));
}

uint32_t
sb_feature_map (const struct md_sb *sb)
{
  /* The bitmap is external: the only features are a recovery's. */
  if (!sb->recovering)
    return 0;
  return MD_FEATURE_RECOVERY_OFFSET
    | (sb->recovery_bitmap ? MD_FEATURE_RECOVERY_BITMAP : 0);
}

void
sb_encode (const struct md_sb *sb, uint8_t block[SB_BLOCK_SIZE])
{
  memset (block, 0, SB_BLOCK_SIZE);
  struct mdp_superblock_1 *s = (void *) block;
  s->magic = htole32 (MD_SB_MAGIC);
  s->major_version = htole32 (1);
  s->feature_map = htole32 (sb_feature_map (sb));
  if (sb->recovering)
    s->recovery_offset = htole64 (sb->recovery_offset);
  memcpy (s->set_uuid, sb->set_uuid, 16);
  memcpy (s->set_name, sb->set_name, strnlen (sb->set_name, sizeof s->set_name));
  s->ctime = htole64 (sb->ctime & 0xffffffffffULL);
  s->level = htole32 (sb->level);
  s->layout = 0;
  s->size = htole64 (sb->size);
  s->chunksize = 0;
  s->raid_disks = htole32 (sb->raid_disks);
  s->data_offset = htole64 (sb->data_offset);
  s->data_size = htole64 (sb->data_size);
  s->super_offset = htole64 (sb->super_offset);
  s->dev_number = htole32 (sb->dev_number);
  memcpy (s->device_uuid, sb->device_uuid, 16);
  s->devflags = sb->devflags;
  s->utime = htole64 (sb->utime & 0xffffffffffULL);
  s->events = htole64 (sb->events);
  s->resync_offset = htole64 (sb->resync_offset);
  uint32_t max_dev = sb->max_dev > SB_MAX_DEV ? SB_MAX_DEV : sb->max_dev;
  s->max_dev = htole32 (max_dev);
  for (uint32_t i = 0; i < max_dev; i++) {
    uint16_t r = htole16 (sb->dev_roles[i]);
    memcpy (block + 256 + 2 * i, &r, 2);
  }
  s->sb_csum = htole32 (sb_checksum (block));
}

enum sb_status
sb_decode (const uint8_t block[SB_BLOCK_SIZE], struct md_sb *sb,
           char *why, size_t whylen)
{
  const struct mdp_superblock_1 *s = (const void *) block;
  memset (sb, 0, sizeof *sb);

  uint32_t magic = le32toh (s->magic);
  if (magic != MD_SB_MAGIC) {
    snprintf (why, whylen, "no md superblock (magic 0x%08" PRIx32
              ", expected 0x%08x)", magic, MD_SB_MAGIC);
    return SB_NO_MAGIC;
  }

  memcpy (sb->set_uuid, s->set_uuid, 16);
  memcpy (sb->set_name, s->set_name, 32);
  sb->set_name[32] = '\0';
  sb->ctime = le64toh (s->ctime) & 0xffffffffffULL;
  sb->utime = le64toh (s->utime) & 0xffffffffffULL;
  sb->level = le32toh (s->level);
  sb->raid_disks = le32toh (s->raid_disks);
  sb->size = le64toh (s->size);
  sb->data_offset = le64toh (s->data_offset);
  sb->data_size = le64toh (s->data_size);
  sb->super_offset = le64toh (s->super_offset);
  sb->dev_number = le32toh (s->dev_number);
  memcpy (sb->device_uuid, s->device_uuid, 16);
  sb->devflags = s->devflags;
  sb->events = le64toh (s->events);
  sb->resync_offset = le64toh (s->resync_offset);
  if (le32toh (s->feature_map) & MD_FEATURE_RECOVERY_OFFSET) {
    sb->recovering = true;
    sb->recovery_offset = le64toh (s->recovery_offset);
    sb->recovery_bitmap
      = (le32toh (s->feature_map) & MD_FEATURE_RECOVERY_BITMAP) != 0;
  }
  sb->max_dev = le32toh (s->max_dev);

  if (sb->max_dev > SB_MAX_DEV) {
    snprintf (why, whylen, "max_dev %" PRIu32 " is larger than %d",
              sb->max_dev, SB_MAX_DEV);
    sb->max_dev = 0;
    return SB_BAD_CHECKSUM;     /* a sane writer never writes this: torn */
  }
  for (uint32_t i = 0; i < sb->max_dev; i++) {
    uint16_t r;
    memcpy (&r, block + 256 + 2 * i, 2);
    sb->dev_roles[i] = le16toh (r);
  }

  uint32_t want = sb_checksum (block);
  uint32_t have = le32toh (s->sb_csum);
  sb->sb_csum = have;
  if (want != have) {
    snprintf (why, whylen, "superblock checksum 0x%08" PRIx32
              " != 0x%08" PRIx32, have, want);
    return SB_BAD_CHECKSUM;
  }

  if (le32toh (s->major_version) != 1) {
    snprintf (why, whylen, "md superblock major version %" PRIu32
              ", expected 1", le32toh (s->major_version));
    return SB_UNSUPPORTED;
  }
  uint32_t features = le32toh (s->feature_map);
  if (features & ~(uint32_t) (MD_FEATURE_RECOVERY_OFFSET
                              | MD_FEATURE_RECOVERY_BITMAP)) {
    snprintf (why, whylen, "md feature map 0x%" PRIx32
              " (internal bitmap, reshape or journal) is not supported",
              features);
    return SB_UNSUPPORTED;
  }
  if ((features & MD_FEATURE_RECOVERY_BITMAP)
      && !(features & MD_FEATURE_RECOVERY_OFFSET)) {
    snprintf (why, whylen, "md feature map 0x%" PRIx32 ": a bitmap-guided "
              "recovery without a recovery offset", features);
    return SB_UNSUPPORTED;
  }
  if (sb->level != 1) {
    snprintf (why, whylen, "raid level %" PRId32 ", expected raid1",
              (int32_t) sb->level);
    return SB_UNSUPPORTED;
  }
  if (sb->data_offset != 0) {
    snprintf (why, whylen, "data offset %" PRIu64 " sectors, expected 0 "
              "(a 1.0 superblock)", sb->data_offset);
    return SB_UNSUPPORTED;
  }
  if (sb->raid_disks < 1 || sb->raid_disks > sb->max_dev) {
    snprintf (why, whylen, "raid_disks %" PRIu32 " does not fit max_dev %"
              PRIu32, sb->raid_disks, sb->max_dev);
    return SB_UNSUPPORTED;
  }
  if (sb->dev_number >= sb->raid_disks) {
    snprintf (why, whylen, "dev_number %" PRIu32 " out of range (%" PRIu32
              " raid disks)", sb->dev_number, sb->raid_disks);
    return SB_UNSUPPORTED;
  }
  if (sb->size == 0 || sb->size % 8 != 0) {
    snprintf (why, whylen, "volume size %" PRIu64
              " sectors is not a positive multiple of 4 KiB", sb->size);
    return SB_UNSUPPORTED;
  }
  return SB_VALID;
}

void
sb_format_uuid (const uint8_t u[16], char out[36])
{
  snprintf (out, 36, "%02x%02x%02x%02x:%02x%02x%02x%02x:"
            "%02x%02x%02x%02x:%02x%02x%02x%02x",
            u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7],
            u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

uint16_t
sb_own_role (const struct md_sb *sb)
{
  return sb->dev_number < sb->max_dev && sb->dev_number < SB_MAX_DEV
    ? sb->dev_roles[sb->dev_number] : SB_ROLE_SPARE;
}

const char *
sb_state_name (const struct md_sb *sb)
{
  return sb->resync_offset == SB_RESYNC_CLEAN ? "clean" : "active";
}
