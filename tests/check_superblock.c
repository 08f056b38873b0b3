/* The md v1.0 superblock (SPEC §2): its layout, md's checksum, what
 * decoding accepts and refuses, where it sits in a member file, and
 * reading/writing it through an io_file. */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/raid/md_p.h>

#include "tests/io_mem.h"
#include "core/member.h"
#include "core/superblock.h"
#include "tests/le_bytes.h"

/* ---- helpers: a superblock made by hand, little-endian, byte by byte ---- */

/* md's checksum written out plainly from its definition (SPEC §2, the
 * kernel's calc_sb_1_csum): LE u32 words of the first 256 + 2*max_dev
 * bytes with sb_csum (bytes 216..219) as 0, a trailing LE u16, fold. */
static uint64_t last_raw_sum;

static uint32_t
reference_csum (const uint8_t *b)
{
  uint32_t max_dev = get32 (b, 220);
  size_t size = 256 + 2 * (size_t) max_dev;
  uint64_t sum = 0;
  size_t off = 0;
  while (size - off >= 4) {
    uint32_t w = off == 216 ? 0 : get32 (b, off);
    sum += w;
    off += 4;
  }
  if (size - off == 2)
    sum += (uint32_t) b[off] | (uint32_t) b[off + 1] << 8;
  last_raw_sum = sum;
  return (uint32_t) ((sum & 0xffffffff) + (sum >> 32));
}

#define VOL (64ull << 20)               /* 64 MiB */

static const uint8_t UUID_A[16] = {
  0xde, 0xad, 0xbe, 0xef, 0x01, 0x23, 0x45, 0x67,
  0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98 };
static const uint8_t DEV_UUID[16] = {
  0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88,
  0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00 };

/* Fill BLOCK as an md tool would: a valid 1.0 raid1 superblock of MAX_DEV
 * members, slot DEV, with the checksum computed by reference_csum. */
static void
hand_made (uint8_t block[SB_BLOCK_SIZE], uint32_t max_dev, uint32_t dev)
{
  memset (block, 0, SB_BLOCK_SIZE);
  put32 (block, 0, 0xa92b4efc);
  put32 (block, 4, 1);
  put32 (block, 8, 0);
  memcpy (block + 16, UUID_A, 16);
  memcpy (block + 32, "hand-made-array", 15);
  put64 (block, 64, 1700000000ull);
  put32 (block, 72, 1);
  put64 (block, 80, VOL / 512);
  put32 (block, 92, max_dev);
  put64 (block, 128, 0);
  put64 (block, 136, VOL / 512);
  put64 (block, 144, VOL / 512);
  put32 (block, 160, dev);
  memcpy (block + 168, DEV_UUID, 16);
  put64 (block, 192, 1700000123ull);
  put64 (block, 200, 0x1122334455667788ull);
  put64 (block, 208, UINT64_MAX);
  put32 (block, 220, max_dev);
  for (uint32_t k = 0; k < max_dev; k++)
    put16 (block, 256 + 2 * k, (uint16_t) k);
  put32 (block, 216, reference_csum (block));
}

static void
fill_sb (struct md_sb *sb, uint32_t n, uint32_t dev)
{
  memset (sb, 0, sizeof *sb);
  memcpy (sb->set_uuid, UUID_A, 16);
  strcpy (sb->set_name, "roundtrip");
  sb->ctime = 0x123456789aull;
  sb->utime = 0xfedcba9876ull;
  sb->level = 1;
  sb->raid_disks = n;
  sb->size = VOL / 512;
  sb->data_offset = 0;
  sb->data_size = VOL / 512;
  sb->super_offset = sb_super_offset_for (sb_member_size_for (VOL));
  sb->dev_number = dev;
  memcpy (sb->device_uuid, DEV_UUID, 16);
  sb->events = 0x0102030405060708ull;
  sb->resync_offset = 12345;
  sb->max_dev = n;
  for (uint32_t k = 0; k < n; k++)
    sb->dev_roles[k] = (uint16_t) k;
}

/* ---- layout ---- */

START_TEST (test_uapi_layout_matches_the_md_offsets)
{
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, magic), 0);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, major_version), 4);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, feature_map), 8);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, set_uuid), 16);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, set_name), 32);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, ctime), 64);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, level), 72);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, size), 80);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, raid_disks), 92);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, data_offset), 128);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, data_size), 136);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, super_offset), 144);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, dev_number), 160);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, device_uuid), 168);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, utime), 192);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, events), 200);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, resync_offset), 208);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, sb_csum), 216);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, max_dev), 220);
  ck_assert_uint_eq (offsetof (struct mdp_superblock_1, dev_roles), 256);
  ck_assert_uint_eq (MD_SB_MAGIC, 0xa92b4efc);
}
END_TEST

START_TEST (test_encode_puts_every_field_at_its_md_offset)
{
  struct md_sb sb;
  fill_sb (&sb, 2, 1);
  sb.dev_roles[0] = SB_ROLE_FAULTY;
  uint8_t b[SB_BLOCK_SIZE];
  memset (b, 0xaa, sizeof b);           /* encode must zero the block */
  sb_encode (&sb, b);
  ck_assert_uint_eq (get32 (b, 0), 0xa92b4efc);
  ck_assert_uint_eq (get32 (b, 4), 1);
  ck_assert_uint_eq (get32 (b, 8), 0);
  ck_assert_mem_eq (b + 16, UUID_A, 16);
  ck_assert_mem_eq (b + 32, "roundtrip", 10);
  ck_assert_uint_eq (get64 (b, 64), 0x123456789aull);
  ck_assert_uint_eq (get32 (b, 72), 1);
  ck_assert_uint_eq (get64 (b, 80), VOL / 512);
  ck_assert_uint_eq (get32 (b, 92), 2);
  ck_assert_uint_eq (get64 (b, 128), 0);
  ck_assert_uint_eq (get64 (b, 136), VOL / 512);
  ck_assert_uint_eq (get64 (b, 144), sb.super_offset);
  ck_assert_uint_eq (get32 (b, 160), 1);
  ck_assert_mem_eq (b + 168, DEV_UUID, 16);
  ck_assert_uint_eq (get64 (b, 192), 0xfedcba9876ull);
  ck_assert_uint_eq (get64 (b, 200), 0x0102030405060708ull);
  ck_assert_uint_eq (get64 (b, 208), 12345);
  ck_assert_uint_eq (get32 (b, 220), 2);
  ck_assert_uint_eq (b[184], 0);        /* devflags: none */
  ck_assert_uint_eq (b[256] | b[257] << 8, SB_ROLE_FAULTY);
  ck_assert_uint_eq (b[258] | b[259] << 8, 1);
  ck_assert_uint_eq (get32 (b, 216), reference_csum (b));
  for (size_t i = 260; i < SB_BLOCK_SIZE; i++)
    ck_assert_msg (b[i] == 0, "byte %zu after the roles is 0x%02x", i, b[i]);
}
END_TEST

START_TEST (test_encode_decode_round_trips_every_field)
{
  struct md_sb in, out;
  fill_sb (&in, 3, 2);
  in.dev_roles[1] = SB_ROLE_FAULTY;
  memcpy (in.set_name, "exactly-thirty-two-bytes-long-xy", 32);  /* no NUL room */
  in.set_name[32] = '\0';
  uint8_t b[SB_BLOCK_SIZE];
  sb_encode (&in, b);
  char why[160] = "";
  ck_assert_int_eq (sb_decode (b, &out, why, sizeof why), SB_VALID);
  ck_assert_mem_eq (out.set_uuid, in.set_uuid, 16);
  ck_assert_str_eq (out.set_name, "exactly-thirty-two-bytes-long-xy");
  ck_assert_uint_eq (out.ctime, in.ctime);
  ck_assert_uint_eq (out.utime, in.utime);
  ck_assert_uint_eq (out.level, 1);
  ck_assert_uint_eq (out.raid_disks, 3);
  ck_assert_uint_eq (out.size, in.size);
  ck_assert_uint_eq (out.data_offset, 0);
  ck_assert_uint_eq (out.data_size, in.data_size);
  ck_assert_uint_eq (out.super_offset, in.super_offset);
  ck_assert_uint_eq (out.dev_number, 2);
  ck_assert_mem_eq (out.device_uuid, in.device_uuid, 16);
  ck_assert_uint_eq (out.events, in.events);
  ck_assert_uint_eq (out.resync_offset, 12345);
  ck_assert_uint_eq (out.max_dev, 3);
  ck_assert_uint_eq (out.dev_roles[0], 0);
  ck_assert_uint_eq (out.dev_roles[1], SB_ROLE_FAULTY);
  ck_assert_uint_eq (out.dev_roles[2], 2);
  ck_assert_uint_eq (out.sb_csum, get32 (b, 216));
  ck_assert_uint_eq (out.devflags, 0);

  /* The write-mostly flag: md's devflags byte at 184, bit WriteMostly1. */
  in.devflags = SB_DEVFLAG_WRITE_MOSTLY;
  sb_encode (&in, b);
  ck_assert_uint_eq (b[184], 1);
  ck_assert_int_eq (sb_decode (b, &out, why, sizeof why), SB_VALID);
  ck_assert_uint_eq (out.devflags, SB_DEVFLAG_WRITE_MOSTLY);
  in.devflags = 0;

  /* A clean superblock keeps MaxSector. */
  in.resync_offset = SB_RESYNC_CLEAN;
  sb_encode (&in, b);
  ck_assert_int_eq (sb_decode (b, &out, why, sizeof why), SB_VALID);
  ck_assert_uint_eq (out.resync_offset, UINT64_MAX);
}
END_TEST

START_TEST (test_times_keep_only_the_low_40_bits_as_seconds)
{
  struct md_sb in, out;
  fill_sb (&in, 2, 0);
  in.ctime = (0xabcdefull << 40) | 1700000000ull;
  in.utime = (0x123456ull << 40) | 1700000001ull;
  uint8_t b[SB_BLOCK_SIZE];
  sb_encode (&in, b);
  ck_assert_uint_eq (get64 (b, 64), 1700000000ull);
  ck_assert_uint_eq (get64 (b, 192), 1700000001ull);
  /* md writes microseconds in the top 24 bits: decode drops them. */
  put64 (b, 64, (999999ull << 40) | 1700000000ull);
  put32 (b, 216, reference_csum (b));
  char why[160];
  ck_assert_int_eq (sb_decode (b, &out, why, sizeof why), SB_VALID);
  ck_assert_uint_eq (out.ctime, 1700000000ull);
}
END_TEST

/* ---- checksum ---- */

START_TEST (test_checksum_of_a_hand_made_superblock_matches_md)
{
  uint8_t b[SB_BLOCK_SIZE];
  hand_made (b, 2, 1);
  /* The fold must matter for this block, else the test proves less. */
  ck_assert_uint_ne (last_raw_sum >> 32, 0);
  ck_assert_uint_eq (sb_checksum (b), get32 (b, 216));
  /* sb_csum itself does not take part. */
  put32 (b, 216, 0x5a5a5a5a);
  ck_assert_uint_eq (sb_checksum (b), reference_csum (b));
}
END_TEST

START_TEST (test_hand_made_superblock_decodes_valid_with_its_fields)
{
  uint8_t b[SB_BLOCK_SIZE];
  hand_made (b, 2, 1);
  struct md_sb sb;
  char why[160] = "";
  ck_assert_msg (sb_decode (b, &sb, why, sizeof why) == SB_VALID, "%s", why);
  ck_assert_mem_eq (sb.set_uuid, UUID_A, 16);
  ck_assert_str_eq (sb.set_name, "hand-made-array");
  ck_assert_uint_eq (sb.ctime, 1700000000ull);
  ck_assert_uint_eq (sb.utime, 1700000123ull);
  ck_assert_uint_eq (sb.level, 1);
  ck_assert_uint_eq (sb.size, VOL / 512);
  ck_assert_uint_eq (sb.raid_disks, 2);
  ck_assert_uint_eq (sb.data_offset, 0);
  ck_assert_uint_eq (sb.data_size, VOL / 512);
  ck_assert_uint_eq (sb.super_offset, VOL / 512);
  ck_assert_uint_eq (sb.dev_number, 1);
  ck_assert_mem_eq (sb.device_uuid, DEV_UUID, 16);
  ck_assert_uint_eq (sb.events, 0x1122334455667788ull);
  ck_assert_uint_eq (sb.resync_offset, UINT64_MAX);
  ck_assert_uint_eq (sb.max_dev, 2);
  ck_assert_uint_eq (sb.dev_roles[0], 0);
  ck_assert_uint_eq (sb.dev_roles[1], 1);
  ck_assert_uint_eq (sb.sb_csum, get32 (b, 216));
}
END_TEST

START_TEST (test_odd_max_dev_adds_the_trailing_u16)
{
  uint8_t b[SB_BLOCK_SIZE];
  hand_made (b, 3, 2);
  put16 (b, 256 + 4, SB_ROLE_FAULTY);   /* the trailing u16 */
  put32 (b, 216, reference_csum (b));
  struct md_sb sb;
  char why[160] = "";
  ck_assert_msg (sb_decode (b, &sb, why, sizeof why) == SB_VALID, "%s", why);
  ck_assert_uint_eq (sb.max_dev, 3);
  ck_assert_uint_eq (sb.dev_roles[2], SB_ROLE_FAULTY);
  /* The trailing u16 is covered: changing it breaks the checksum ... */
  put16 (b, 260, 2);
  ck_assert_int_eq (sb_decode (b, &sb, why, sizeof why), SB_BAD_CHECKSUM);
  /* ... and the two bytes after it are not. */
  put16 (b, 260, SB_ROLE_FAULTY);
  b[262] = 0x77;
  ck_assert_int_eq (sb_decode (b, &sb, why, sizeof why), SB_VALID);

  /* sb_encode agrees with the reference for an odd count too. */
  struct md_sb in;
  fill_sb (&in, 3, 0);
  sb_encode (&in, b);
  ck_assert_uint_eq (get32 (b, 216), reference_csum (b));
}
END_TEST

START_TEST (test_flipped_byte_is_torn_with_uuid_still_decoded)
{
  uint8_t b[SB_BLOCK_SIZE];
  hand_made (b, 2, 1);
  b[200] ^= 0x01;                       /* a bit of events */
  struct md_sb sb;
  char why[160] = "";
  ck_assert_int_eq (sb_decode (b, &sb, why, sizeof why), SB_BAD_CHECKSUM);
  ck_assert_mem_eq (sb.set_uuid, UUID_A, 16);
  ck_assert_uint_eq (sb.dev_number, 1);
  ck_assert_ptr_nonnull (strstr (why, "checksum"));
  /* A flipped role byte is covered too. */
  hand_made (b, 2, 1);
  b[257] ^= 0x80;
  ck_assert_int_eq (sb_decode (b, &sb, why, sizeof why), SB_BAD_CHECKSUM);
  ck_assert_mem_eq (sb.set_uuid, UUID_A, 16);
}
END_TEST

START_TEST (test_absurd_max_dev_is_torn_and_roles_are_not_overread)
{
  uint8_t b[SB_BLOCK_SIZE];
  hand_made (b, 2, 1);
  put32 (b, 220, 5000);                 /* past the 4 KiB block */
  struct md_sb sb;
  char why[160] = "";
  ck_assert_int_eq (sb_decode (b, &sb, why, sizeof why), SB_BAD_CHECKSUM);
  ck_assert_mem_eq (sb.set_uuid, UUID_A, 16);
  ck_assert_uint_le (sb.max_dev, SB_MAX_DEV);
  ck_assert_ptr_nonnull (strstr (why, "max_dev"));
}
END_TEST

START_TEST (test_wrong_magic_is_no_magic)
{
  uint8_t b[SB_BLOCK_SIZE];
  hand_made (b, 2, 0);
  put32 (b, 0, 0xa92b4efd);
  put32 (b, 216, reference_csum (b));
  struct md_sb sb;
  char why[160] = "";
  ck_assert_int_eq (sb_decode (b, &sb, why, sizeof why), SB_NO_MAGIC);
  ck_assert_ptr_nonnull (strstr (why, "magic"));
  memset (b, 0, sizeof b);
  ck_assert_int_eq (sb_decode (b, &sb, why, sizeof why), SB_NO_MAGIC);
}
END_TEST

static enum sb_status
decode_with (size_t off, int width, uint64_t v, char *why, size_t whylen)
{
  uint8_t b[SB_BLOCK_SIZE];
  hand_made (b, 2, 0);
  if (width == 4)
    put32 (b, off, (uint32_t) v);
  else
    put64 (b, off, v);
  put32 (b, 216, reference_csum (b));
  struct md_sb sb;
  return sb_decode (b, &sb, why, whylen);
}

START_TEST (test_raid5_is_unsupported)
{
  char why[160] = "";
  ck_assert_int_eq (decode_with (72, 4, 5, why, sizeof why), SB_UNSUPPORTED);
  ck_assert_ptr_nonnull (strstr (why, "level"));
}
END_TEST

START_TEST (test_feature_map_set_is_unsupported)
{
  char why[160] = "";
  ck_assert_int_eq (decode_with (8, 4, 1, why, sizeof why), SB_UNSUPPORTED);
  ck_assert_ptr_nonnull (strstr (why, "feature"));
}
END_TEST

START_TEST (test_nonzero_data_offset_is_unsupported)
{
  char why[160] = "";
  ck_assert_int_eq (decode_with (128, 8, 2048, why, sizeof why), SB_UNSUPPORTED);
  ck_assert_ptr_nonnull (strstr (why, "data offset"));
}
END_TEST

START_TEST (test_each_control_decode_is_valid)
{
  /* The decode_with helper itself yields a valid block when it writes
   * the values a good superblock has: the refusals above are due to the
   * field alone. */
  char why[160] = "";
  ck_assert_int_eq (decode_with (72, 4, 1, why, sizeof why), SB_VALID);
  ck_assert_int_eq (decode_with (8, 4, 0, why, sizeof why), SB_VALID);
  ck_assert_int_eq (decode_with (128, 8, 0, why, sizeof why), SB_VALID);
}
END_TEST

/* ---- placement ---- */

START_TEST (test_own_role_and_state_name)
{
  struct md_sb sb;
  memset (&sb, 0, sizeof sb);
  sb.max_dev = 3;
  sb.dev_roles[0] = 0;
  sb.dev_roles[1] = SB_ROLE_FAULTY;
  sb.dev_roles[2] = 1;
  sb.dev_number = 0;
  ck_assert_uint_eq (sb_own_role (&sb), 0);
  sb.dev_number = 1;
  ck_assert_uint_eq (sb_own_role (&sb), SB_ROLE_FAULTY);
  sb.dev_number = 2;
  ck_assert_uint_eq (sb_own_role (&sb), 1);
  sb.dev_number = 3;                    /* past max_dev */
  ck_assert_uint_eq (sb_own_role (&sb), SB_ROLE_SPARE);
  sb.dev_number = 100000;
  sb.max_dev = 200000;                  /* never past dev_roles */
  ck_assert_uint_eq (sb_own_role (&sb), SB_ROLE_SPARE);
  sb.resync_offset = SB_RESYNC_CLEAN;
  ck_assert_str_eq (sb_state_name (&sb), "clean");
  sb.resync_offset = 0;
  ck_assert_str_eq (sb_state_name (&sb), "active");
  sb.resync_offset = 1024;
  ck_assert_str_eq (sb_state_name (&sb), "active");
  ck_assert_uint_eq (SB_MAGIC, MD_SB_MAGIC);
}
END_TEST

START_TEST (test_super_offset_is_dsize_minus_16_rounded_down_to_8)
{
  static const uint64_t sizes[] = {
    12288, 1ull << 20, (1ull << 20) + 512, (1ull << 20) + 3584,
    (64ull << 20) + 8192, (1ull << 40) + 4096 * 3, 1000000 * 512ull };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    uint64_t dsize = sizes[i] / 512;
    ck_assert_uint_eq (sb_super_offset_for (sizes[i]), (dsize - 16) & ~7ull);
  }
  /* Worked values: 1 MiB = 2048 sectors -> 2032; 2049 sectors -> 2032;
   * 2055 sectors -> 2032; 2056 sectors -> 2040. */
  ck_assert_uint_eq (sb_super_offset_for (2048 * 512), 2032);
  ck_assert_uint_eq (sb_super_offset_for (2049 * 512), 2032);
  ck_assert_uint_eq (sb_super_offset_for (2055 * 512), 2032);
  ck_assert_uint_eq (sb_super_offset_for (2056 * 512), 2040);
}
END_TEST

START_TEST (test_max_volume_stays_below_the_superblock_in_4k_units)
{
  ck_assert_uint_eq (sb_max_volume_for (2048 * 512), 2032 * 512);
  ck_assert_uint_eq (sb_max_volume_for (2056 * 512), 2040 * 512);
  /* 2060 sectors: the superblock at 2040 still; 2064: at 2048. */
  ck_assert_uint_eq (sb_max_volume_for (2060 * 512), 2040 * 512);
  ck_assert_uint_eq (sb_max_volume_for (2064 * 512), 2048 * 512);
  /* A file size that is not a multiple of 4 KiB. */
  ck_assert_uint_eq (sb_super_offset_for (2052 * 512), 2032);
  ck_assert_uint_eq (sb_max_volume_for (2052 * 512), 2032 * 512);
  static const uint64_t sizes[] = {
    12288, 1ull << 20, (1ull << 20) + 512, (1ull << 20) + 3584,
    (64ull << 20) + 8192, 1000000 * 512ull };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    uint64_t v = sb_max_volume_for (sizes[i]);
    ck_assert_uint_eq (v % 4096, 0);
    ck_assert_uint_le (v, sb_super_offset_for (sizes[i]) * 512);
    ck_assert_uint_gt (v + 4096, sb_super_offset_for (sizes[i]) * 512);
  }
}
END_TEST

START_TEST (test_member_of_member_size_for_holds_the_volume)
{
  static const uint64_t vols[] = {
    4096, 8192, 1ull << 20, (1ull << 20) + 4096, 64ull << 20,
    (1ull << 40) + 4096, 16ull << 40 };
  for (size_t i = 0; i < sizeof vols / sizeof vols[0]; i++) {
    uint64_t v = vols[i];
    uint64_t s = sb_member_size_for (v);
    ck_assert_uint_eq (s % 4096, 0);
    ck_assert_uint_ge (sb_max_volume_for (s), v);
    /* The superblock block lies past the data and inside the file. */
    uint64_t so = sb_super_offset_for (s);
    ck_assert_uint_eq (so, ((s / 512) - 16) & ~7ull);
    ck_assert_uint_ge (so * 512, v);
    ck_assert_uint_le (so * 512 + SB_BLOCK_SIZE, s);
    /* And it is the smallest such file, in 4 KiB steps. */
    ck_assert_uint_lt (sb_max_volume_for (s - 4096), v);
  }
}
END_TEST

/* ---- member_probe / member_write_sb on io_mem ---- */

START_TEST (test_member_write_then_probe_round_trips)
{
  struct io_file *f = io_mem_new ("member0.img");
  uint64_t size = sb_member_size_for (VOL);
  ck_assert_int_eq (io_mem_truncate (f, size), 0);
  struct md_sb sb;
  fill_sb (&sb, 2, 1);
  sb.super_offset = sb_super_offset_for (size);
  unsigned long syncs = io_mem_stats (f)->syncs;
  ck_assert_int_eq (member_write_sb (f, &sb), 0);
  ck_assert_uint_gt (io_mem_stats (f)->syncs, syncs);   /* pwrite + fdatasync */

  size_t len;
  unsigned char *d = io_mem_data (f, &len);
  ck_assert_uint_eq (len, size);                        /* not grown */
  ck_assert_uint_eq (get32 (d, sb.super_offset * 512), 0xa92b4efc);
  ck_assert_uint_eq (get32 (d, sb.super_offset * 512 + 216),
                     reference_csum (d + sb.super_offset * 512));
  for (uint64_t i = 0; i < VOL; i += 4096)
    ck_assert_msg (d[i] == 0, "data area touched at %llu",
                   (unsigned long long) i);

  struct member_probe p;
  ck_assert_int_eq (member_probe (f, &p), 0);
  ck_assert_msg (p.status == SB_VALID, "%s", p.why);
  ck_assert_int_eq (p.file_size, (int64_t) size);
  ck_assert_mem_eq (p.sb.set_uuid, UUID_A, 16);
  ck_assert_uint_eq (p.sb.dev_number, 1);
  ck_assert_uint_eq (p.sb.events, sb.events);
  ck_assert_uint_eq (p.sb.size, VOL / 512);
  ck_assert_uint_eq (p.sb.super_offset, sb.super_offset);
  ck_assert_uint_eq (p.sb.resync_offset, 12345);
  io_close (f);
}
END_TEST

START_TEST (test_smallest_member_of_one_block_round_trips)
{
  struct io_file *f = io_mem_new ("tiny.img");
  uint64_t size = sb_member_size_for (4096);
  ck_assert_int_eq (io_mem_truncate (f, size), 0);
  struct md_sb sb;
  fill_sb (&sb, 2, 0);
  sb.size = 8;
  sb.data_size = 8;
  sb.super_offset = sb_super_offset_for (size);
  ck_assert_uint_eq (sb.super_offset, 8);
  ck_assert_int_eq (member_write_sb (f, &sb), 0);
  struct member_probe p;
  ck_assert_int_eq (member_probe (f, &p), 0);
  ck_assert_msg (p.status == SB_VALID, "%s", p.why);
  ck_assert_uint_eq (p.sb.size, 8);
  io_close (f);
}
END_TEST

START_TEST (test_file_too_small_for_a_member_is_said_so)
{
  static const size_t sizes[] = { 0, 4096, 8191, 8192 };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    struct io_file *f = io_mem_new ("small.img");
    ck_assert_int_eq (io_mem_truncate (f, sizes[i]), 0);
    struct member_probe p;
    ck_assert_int_eq (member_probe (f, &p), 0);
    ck_assert_int_ne (p.status, SB_VALID);
    ck_assert_int_eq (p.file_size, (int64_t) sizes[i]);
    ck_assert_msg (strstr (p.why, "too small") != NULL, "size %zu: %s",
                   sizes[i], p.why);
    io_close (f);
  }
}
END_TEST

START_TEST (test_truncated_member_is_not_valid_and_why_says_where_it_looked)
{
  struct io_file *f = io_mem_new ("member1.img");
  uint64_t size = sb_member_size_for (VOL);
  ck_assert_int_eq (io_mem_truncate (f, size), 0);
  struct md_sb sb;
  fill_sb (&sb, 2, 1);
  sb.super_offset = sb_super_offset_for (size);
  ck_assert_int_eq (member_write_sb (f, &sb), 0);

  /* Cut off the superblock (and its 4 KiB spare): data only is left. */
  ck_assert_int_eq (io_mem_truncate (f, VOL), 0);
  struct member_probe p;
  ck_assert_int_eq (member_probe (f, &p), 0);
  ck_assert_int_eq (p.status, SB_NO_MAGIC);
  ck_assert_int_eq (p.file_size, (int64_t) VOL);
  char where[64];
  snprintf (where, sizeof where, "at sector %llu",
            (unsigned long long) sb_super_offset_for (VOL));
  ck_assert_msg (strstr (p.why, "no md superblock") != NULL, "%s", p.why);
  ck_assert_msg (strstr (p.why, where) != NULL, "%s lacks '%s'", p.why, where);
  io_close (f);
}
END_TEST

START_TEST (test_superblock_found_elsewhere_than_it_says_is_refused)
{
  /* Written for a file of one size, then found in a larger file whose
   * superblock place happens to hold it: "resized". */
  struct io_file *f = io_mem_new ("grown.img");
  uint64_t size = sb_member_size_for (VOL);
  ck_assert_int_eq (io_mem_truncate (f, size), 0);
  struct md_sb sb;
  fill_sb (&sb, 2, 0);
  sb.super_offset = sb_super_offset_for (size) - 8;     /* lies */
  ck_assert_int_eq (member_write_sb (f, &sb), 0);
  ck_assert_int_eq (io_mem_truncate (f, size - 4096), 0);
  ck_assert_uint_eq (sb_super_offset_for (size - 4096), sb.super_offset);
  /* Now it is where it says: valid. */
  struct member_probe p;
  ck_assert_int_eq (member_probe (f, &p), 0);
  ck_assert_msg (p.status == SB_VALID, "%s", p.why);
  /* Grow the file back: the same block is now at the wrong place. */
  size_t len;
  unsigned char blk[SB_BLOCK_SIZE];
  memcpy (blk, io_mem_data (f, &len) + sb.super_offset * 512, sizeof blk);
  ck_assert_int_eq (io_mem_truncate (f, size), 0);
  memcpy (io_mem_data (f, &len) + sb_super_offset_for (size) * 512, blk,
          sizeof blk);
  ck_assert_int_eq (member_probe (f, &p), 0);
  ck_assert_int_eq (p.status, SB_UNSUPPORTED);
  ck_assert_ptr_nonnull (strstr (p.why, "resized"));
  io_close (f);
}
END_TEST

START_TEST (test_unreadable_member_returns_the_errno_and_why)
{
  struct io_file *f = io_mem_new ("bad.img");
  ck_assert_int_eq (io_mem_truncate (f, sb_member_size_for (VOL)), 0);
  io_mem_stats (f)->fail_pread = -EIO;
  struct member_probe p;
  ck_assert_int_eq (member_probe (f, &p), -EIO);
  ck_assert_int_ne (p.status, SB_VALID);
  ck_assert_ptr_nonnull (strstr (p.why, "cannot read"));
  io_close (f);
}
END_TEST

START_TEST (test_member_write_sb_reports_a_failed_sync)
{
  struct io_file *f = io_mem_new ("m.img");
  ck_assert_int_eq (io_mem_truncate (f, sb_member_size_for (VOL)), 0);
  struct md_sb sb;
  fill_sb (&sb, 2, 0);
  io_mem_stats (f)->fail_fdatasync = -EIO;
  ck_assert_int_eq (member_write_sb (f, &sb), -EIO);
  io_mem_stats (f)->fail_fdatasync = 0;
  io_mem_stats (f)->fail_pwrite = -ENOSPC;
  unsigned long syncs = io_mem_stats (f)->syncs;
  ck_assert_int_eq (member_write_sb (f, &sb), -ENOSPC);
  ck_assert_uint_eq (io_mem_stats (f)->syncs, syncs);   /* no sync after a failed write */
  io_close (f);
}
END_TEST

static Suite *
superblock_suite (void)
{
  Suite *s = suite_create ("superblock");
  TCase *tc = tcase_create ("format");
  tcase_add_test (tc, test_uapi_layout_matches_the_md_offsets);
  tcase_add_test (tc, test_encode_puts_every_field_at_its_md_offset);
  tcase_add_test (tc, test_encode_decode_round_trips_every_field);
  tcase_add_test (tc, test_times_keep_only_the_low_40_bits_as_seconds);
  tcase_add_test (tc, test_checksum_of_a_hand_made_superblock_matches_md);
  tcase_add_test (tc, test_hand_made_superblock_decodes_valid_with_its_fields);
  tcase_add_test (tc, test_odd_max_dev_adds_the_trailing_u16);
  tcase_add_test (tc, test_flipped_byte_is_torn_with_uuid_still_decoded);
  tcase_add_test (tc, test_absurd_max_dev_is_torn_and_roles_are_not_overread);
  tcase_add_test (tc, test_wrong_magic_is_no_magic);
  tcase_add_test (tc, test_raid5_is_unsupported);
  tcase_add_test (tc, test_feature_map_set_is_unsupported);
  tcase_add_test (tc, test_nonzero_data_offset_is_unsupported);
  tcase_add_test (tc, test_each_control_decode_is_valid);
  tcase_add_test (tc, test_own_role_and_state_name);
  suite_add_tcase (s, tc);

  tc = tcase_create ("placement");
  tcase_add_test (tc, test_super_offset_is_dsize_minus_16_rounded_down_to_8);
  tcase_add_test (tc, test_max_volume_stays_below_the_superblock_in_4k_units);
  tcase_add_test (tc, test_member_of_member_size_for_holds_the_volume);
  suite_add_tcase (s, tc);

  tc = tcase_create ("member");
  tcase_add_test (tc, test_member_write_then_probe_round_trips);
  tcase_add_test (tc, test_smallest_member_of_one_block_round_trips);
  tcase_add_test (tc, test_file_too_small_for_a_member_is_said_so);
  tcase_add_test (tc, test_truncated_member_is_not_valid_and_why_says_where_it_looked);
  tcase_add_test (tc, test_superblock_found_elsewhere_than_it_says_is_refused);
  tcase_add_test (tc, test_unreadable_member_returns_the_errno_and_why);
  tcase_add_test (tc, test_member_write_sb_reports_a_failed_sync);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (superblock_suite ());
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
