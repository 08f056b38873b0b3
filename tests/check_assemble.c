/* The mount decision (SPEC §5 steps 1-3) as a table: what the member
 * superblocks and the bitmap header say -> which slots are current, which
 * are behind (and how much to copy), whether the bitmap is trusted, or a
 * refusal whose message names the file at fault. */
#include <config.h>

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap/bitmap_format.h"
#include "core/assemble.h"
#include "core/member.h"
#include "core/superblock.h"

#define VOL (1ull << 30)
#define CHUNK (1ull << 20)

static const uint8_t UUID[16] = {
  0xc0, 0xff, 0xee, 0x00, 0x11, 0x22, 0x33, 0x44,
  0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc };
static const uint8_t OTHER_UUID[16] = {
  0xc0, 0xff, 0xee, 0x00, 0x11, 0x22, 0x33, 0x44,
  0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcd };

static const char *const NAMES[] = {
  "/mnt/disk0/member-zero.img", "/mnt/disk1/member-one.img",
  "/mnt/disk2/member-two.img" };
static const char *const BITMAP_NAME = "/mnt/flash/array.bitmap";

/* A valid member of a 2-slot array of VOL bytes, in slot SLOT. */
static void
member (struct member_probe *p, uint32_t slot, uint64_t events)
{
  memset (p, 0, sizeof *p);
  p->status = SB_VALID;
  p->file_size = (int64_t) sb_member_size_for (VOL);
  struct md_sb *sb = &p->sb;
  memcpy (sb->set_uuid, UUID, 16);
  strcpy (sb->set_name, "table");
  sb->level = 1;
  sb->raid_disks = 2;
  sb->max_dev = 2;
  sb->size = VOL / 512;
  sb->data_offset = 0;
  sb->data_size = VOL / 512;
  sb->super_offset = sb_super_offset_for (sb_member_size_for (VOL));
  sb->dev_number = slot;
  sb->device_uuid[0] = (uint8_t) (slot + 1);
  sb->events = events;
  sb->resync_offset = SB_RESYNC_CLEAN;
  sb->dev_roles[0] = 0;
  sb->dev_roles[1] = 1;
}

/* A torn member: magic good, checksum bad; only what sb_decode fills
 * before the checksum can be relied on. */
static void
torn (struct member_probe *p, uint32_t slot, uint64_t events)
{
  member (p, slot, events);
  p->status = SB_BAD_CHECKSUM;
  snprintf (p->why, sizeof p->why, "superblock checksum 0x12345678 != "
            "0x9abcdef0");
}

static void
bitmap_in (struct assemble_bitmap_in *b, uint64_t events,
           uint64_t events_cleared)
{
  memset (b, 0, sizeof *b);
  b->used = true;
  b->name = BITMAP_NAME;
  b->file_size = (int64_t) bitmap_file_size (bitmap_chunks (VOL, CHUNK));
  b->status = BITMAP_HEADER_OK;
  memcpy (b->hdr.uuid, UUID, 16);
  b->hdr.events = events;
  b->hdr.events_cleared = events_cleared;
  b->hdr.sync_size = VOL / 512;
  b->hdr.state = 0;
  b->hdr.chunksize = (uint32_t) CHUNK;
  b->hdr.daemon_sleep = 5;
}

static char err[512];
static struct assemble_plan plan;

/* Slot S is behind and recovered by MODE. */
#define ck_assert_recovering(p, s, mode) do {                 \
    ck_assert_int_eq ((p)->slot[s], MEMBER_RECOVERING);       \
    ck_assert_int_eq ((p)->recovery[s], (mode));              \
  } while (0)

static int
decide (const struct member_probe *m, size_t n,
        const struct assemble_bitmap_in *bm, bool degraded, bool force)
{
  struct assemble_options o = { degraded, force };
  memset (err, 0, sizeof err);
  return assemble_decide (m, NAMES, n, bm, &o, &plan, err, sizeof err);
}

#define ASSERT_OK(expr) \
  ck_assert_msg ((expr) == 0, "refused: %s", err)

#define ASSERT_REFUSED_NAMING(expr, name) do {                          \
    ck_assert_msg ((expr) == -1, "accepted, expected a refusal");       \
    ck_assert_msg (strstr (err, (name)) != NULL,                        \
                   "message does not name %s: %s", (name), err);        \
  } while (0)

/* ================= accepted ================= */

START_TEST (test_whole_array_with_current_bitmap_resyncs_by_bitmap)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  bitmap_in (&b, 10, 8);
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_int_eq (plan.slot[0], MEMBER_ACTIVE);
  ck_assert_int_eq (plan.slot[1], MEMBER_ACTIVE);
  ck_assert_int_eq (plan.member_of_slot[0], 0);
  ck_assert_int_eq (plan.member_of_slot[1], 1);
  ck_assert_int_eq (plan.bitmap, BITMAP_USE_CURRENT);
  ck_assert_uint_eq (plan.raid_disks, 2);
  ck_assert_uint_eq (plan.volume_bytes, VOL);
  ck_assert_uint_eq (plan.events, 10);
  ck_assert_uint_eq (plan.resync_from, UINT64_MAX);
  ck_assert_str_eq (plan.warnings, "");
}
END_TEST

START_TEST (test_members_given_in_any_order_map_to_their_slots)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 1, 10);
  member (&m[1], 0, 10);
  bitmap_in (&b, 10, 8);
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_int_eq (plan.member_of_slot[0], 1);
  ck_assert_int_eq (plan.member_of_slot[1], 0);
  ck_assert_int_eq (plan.slot[0], MEMBER_ACTIVE);
  ck_assert_int_eq (plan.slot[1], MEMBER_ACTIVE);
  ck_assert_int_eq (plan.bitmap, BITMAP_USE_CURRENT);
}
END_TEST

START_TEST (test_bitmap_with_older_events_is_stale)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  bitmap_in (&b, 9, 8);
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_int_eq (plan.bitmap, BITMAP_USE_STALE);
  ck_assert_str_ne (plan.bitmap_stale_reason, "");
  ck_assert_int_eq (plan.slot[0], MEMBER_ACTIVE);
  ck_assert_int_eq (plan.slot[1], MEMBER_ACTIVE);
}
END_TEST

START_TEST (test_bitmap_marked_stale_is_stale)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  bitmap_in (&b, 10, 8);
  b.hdr.state = BITMAP_STATE_STALE;
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_int_eq (plan.bitmap, BITMAP_USE_STALE);
  ck_assert_str_ne (plan.bitmap_stale_reason, "");
}
END_TEST

START_TEST (test_our_bitmap_with_bad_header_checksum_is_stale_not_refused)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  bitmap_in (&b, 10, 8);
  b.status = BITMAP_HEADER_BAD_CHECKSUM;
  snprintf (b.why, sizeof b.why, "header checksum 0x1 != 0x2");
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_int_eq (plan.bitmap, BITMAP_USE_STALE);
  ck_assert_ptr_nonnull (strstr (plan.bitmap_stale_reason, "checksum"));
  ck_assert_int_eq (plan.slot[0], MEMBER_ACTIVE);
  ck_assert_int_eq (plan.slot[1], MEMBER_ACTIVE);
}
END_TEST

START_TEST (test_behind_member_not_older_than_last_clear_recovers_set_bits)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 12);
  m[0].sb.dev_roles[1] = SB_ROLE_FAULTY;
  member (&m[1], 1, 10);
  bitmap_in (&b, 12, 10);               /* events_cleared == member's events */
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_int_eq (plan.slot[0], MEMBER_ACTIVE);
  ck_assert_recovering (&plan, 1, RECOVER_BITMAP);
  ck_assert_int_eq (plan.bitmap, BITMAP_USE_CURRENT);
  ck_assert_uint_eq (plan.events, 12);
  ck_assert_uint_eq (plan.reference, 0);
  ck_assert_ptr_nonnull (strstr (plan.warnings, NAMES[1]));
}
END_TEST

START_TEST (test_behind_member_older_than_last_clear_recovers_everything)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 12);
  member (&m[1], 1, 10);
  bitmap_in (&b, 12, 11);
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_int_eq (plan.slot[0], MEMBER_ACTIVE);
  ck_assert_recovering (&plan, 1, RECOVER_FULL);
  ck_assert_int_eq (plan.bitmap, BITMAP_USE_CURRENT);
}
END_TEST

START_TEST (test_behind_member_is_recovered_fully_when_the_bitmap_is_stale)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 12);
  member (&m[1], 1, 11);
  bitmap_in (&b, 11, 5);                /* behind the current member */
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_int_eq (plan.bitmap, BITMAP_USE_STALE);
  ck_assert_recovering (&plan, 1, RECOVER_FULL);
  bitmap_in (&b, 12, 5);
  b.hdr.state = BITMAP_STATE_STALE;
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_recovering (&plan, 1, RECOVER_FULL);
}
END_TEST

START_TEST (test_newest_member_is_the_reference_whatever_its_place)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 12);
  m[1].sb.dev_roles[0] = SB_ROLE_FAULTY;
  bitmap_in (&b, 12, 9);
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_uint_eq (plan.reference, 1);
  ck_assert_uint_eq (plan.events, 12);
  ck_assert_int_eq (plan.slot[1], MEMBER_ACTIVE);
  ck_assert_recovering (&plan, 0, RECOVER_BITMAP);
}
END_TEST

START_TEST (test_member_marked_faulty_by_the_current_member_is_behind)
{
  /* Same events: only the role in the current superblock tells. */
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 12);
  m[0].sb.dev_roles[1] = SB_ROLE_FAULTY;
  member (&m[1], 1, 12);
  bitmap_in (&b, 12, 10);
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_int_eq (plan.slot[0], MEMBER_ACTIVE);
  ck_assert_recovering (&plan, 1, RECOVER_BITMAP);
}
END_TEST

START_TEST (test_member_marked_faulty_by_a_current_member_listed_after_it_is_behind)
{
  /* As above, the members given the other way round: the decision must
   * not depend on the order of the member list (SPEC §5.2: "whose role is
   * faulty in a current member's superblock"). */
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 1, 12);                /* the one marked faulty, first */
  member (&m[1], 0, 12);
  m[1].sb.dev_roles[1] = SB_ROLE_FAULTY;
  bitmap_in (&b, 12, 10);
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_int_eq (plan.member_of_slot[1], 0);
  ck_assert_int_eq (plan.slot[0], MEMBER_ACTIVE);
  ck_assert_recovering (&plan, 1, RECOVER_BITMAP);
}
END_TEST

/* Issue 13, bug 6: md's recovery offset.  A member whose recovery was
 * interrupted is never current, even with the newest events and no one
 * marking it faulty. */
START_TEST (test_member_mid_recovery_alone_is_refused_even_degraded)
{
  struct member_probe m[1];
  struct assemble_bitmap_in b;
  member (&m[0], 1, 12);
  m[0].sb.recovering = true;
  m[0].sb.recovery_offset = 4096;
  bitmap_in (&b, 12, 10);
  ASSERT_REFUSED_NAMING (decide (m, 1, &b, true, false), NAMES[0]);
  ck_assert_ptr_nonnull (strstr (err, "recovery"));
  ASSERT_REFUSED_NAMING (decide (m, 1, &b, true, true), NAMES[0]);
}
END_TEST

START_TEST (test_interrupted_full_recovery_resumes_at_its_recovery_offset)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 12);
  m[0].sb.dev_roles[1] = SB_ROLE_FAULTY;
  member (&m[1], 1, 12);                /* the events of when it began */
  m[1].sb.recovering = true;
  m[1].sb.recovery_offset = 300 * CHUNK / 512;
  bitmap_in (&b, 12, 10);
  /* Listed first, it is still not the reference. */
  struct member_probe r[2] = { m[1], m[0] };
  ASSERT_OK (decide (r, 2, &b, false, false));
  ck_assert_int_eq (plan.slot[0], MEMBER_ACTIVE);
  ck_assert_recovering (&plan, 1, RECOVER_FULL);
  ck_assert_uint_eq (plan.recover_from[1], 300 * CHUNK / 512);
  ck_assert_uint_eq (plan.reference, 1);
  ck_assert_ptr_nonnull (strstr (plan.warnings, "resuming"));
  /* A bit cleared since it began: the bits below the offset no longer
   * say what it missed; everything is copied. */
  bitmap_in (&b, 12, 13);
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_recovering (&plan, 1, RECOVER_FULL);
  ck_assert_uint_eq (plan.recover_from[1], 0);
  /* A stale bitmap: the same. */
  bitmap_in (&b, 11, 10);
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_uint_eq (plan.recover_from[1], 0);
}
END_TEST

START_TEST (test_interrupted_bitmap_guided_recovery_copies_the_set_bits_again)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 12);
  m[0].sb.dev_roles[1] = SB_ROLE_FAULTY;
  member (&m[1], 1, 11);
  m[1].sb.recovering = true;
  m[1].sb.recovery_bitmap = true;
  m[1].sb.recovery_offset = 0;
  bitmap_in (&b, 12, 10);
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_recovering (&plan, 1, RECOVER_BITMAP);
}
END_TEST

START_TEST (test_torn_member_gets_full_recovery)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 12);
  torn (&m[1], 1, 12);                  /* its events are not trusted */
  bitmap_in (&b, 12, 10);
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_int_eq (plan.slot[0], MEMBER_ACTIVE);
  ck_assert_int_eq (plan.member_of_slot[1], 1);
  ck_assert_recovering (&plan, 1, RECOVER_FULL);
  ck_assert_int_eq (plan.bitmap, BITMAP_USE_CURRENT);
  ck_assert_uint_eq (plan.reference, 0);
  ck_assert_ptr_nonnull (strstr (plan.warnings, NAMES[1]));
}
END_TEST

START_TEST (test_torn_member_with_garbled_slot_takes_the_free_slot)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  torn (&m[0], 0, 12);
  m[0].sb.dev_number = 77;
  member (&m[1], 0, 12);
  bitmap_in (&b, 12, 10);
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_int_eq (plan.member_of_slot[0], 1);
  ck_assert_int_eq (plan.member_of_slot[1], 0);
  ck_assert_int_eq (plan.slot[0], MEMBER_ACTIVE);
  ck_assert_recovering (&plan, 1, RECOVER_FULL);
}
END_TEST

START_TEST (test_missing_slot_with_degraded_is_missing)
{
  struct member_probe m[1];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  bitmap_in (&b, 10, 8);
  ASSERT_OK (decide (m, 1, &b, true, false));
  ck_assert_int_eq (plan.slot[0], MEMBER_ACTIVE);
  ck_assert_int_eq (plan.slot[1], MEMBER_MISSING);
  ck_assert_int_eq (plan.member_of_slot[1], -1);
  ck_assert_int_eq (plan.bitmap, BITMAP_USE_CURRENT);
}
END_TEST

START_TEST (test_nobitmap_dirty_shutdown_resyncs_from_resync_offset)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  m[0].sb.resync_offset = m[1].sb.resync_offset = 123456;
  bitmap_in (&b, 10, 8);
  b.used = false;
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_int_eq (plan.bitmap, BITMAP_UNUSED);
  ck_assert_uint_eq (plan.resync_from, 123456);
  /* Without any bitmap argument at all, the same. */
  ASSERT_OK (decide (m, 2, NULL, false, false));
  ck_assert_uint_eq (plan.resync_from, 123456);
  /* A resync interrupted at sector 0 is a resync from 0. */
  m[0].sb.resync_offset = m[1].sb.resync_offset = 0;
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_uint_eq (plan.resync_from, 0);
}
END_TEST

START_TEST (test_nobitmap_clean_shutdown_resyncs_nothing)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  bitmap_in (&b, 10, 8);
  b.used = false;
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_int_eq (plan.bitmap, BITMAP_UNUSED);
  ck_assert_uint_eq (plan.resync_from, UINT64_MAX);
}
END_TEST

START_TEST (test_with_a_bitmap_resync_offset_does_not_force_a_full_resync)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  m[0].sb.resync_offset = m[1].sb.resync_offset = 0;    /* "active" */
  bitmap_in (&b, 10, 8);
  ASSERT_OK (decide (m, 2, &b, false, false));
  ck_assert_int_eq (plan.bitmap, BITMAP_USE_CURRENT);
  ck_assert_uint_eq (plan.resync_from, UINT64_MAX);
}
END_TEST

START_TEST (test_bitmap_file_of_exactly_the_needed_size_is_accepted)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  bitmap_in (&b, 10, 8);
  b.file_size = 256 + (int64_t) (bitmap_chunks (VOL, CHUNK) + 7) / 8;
  ASSERT_OK (decide (m, 2, &b, false, false));
}
END_TEST

/* ================= refused ================= */

START_TEST (test_member_of_another_array_is_refused_by_name)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  memcpy (m[1].sb.set_uuid, OTHER_UUID, 16);
  bitmap_in (&b, 10, 8);
  ASSERT_REFUSED_NAMING (decide (m, 2, &b, true, true), NAMES[1]);
}
END_TEST

START_TEST (test_torn_member_of_another_array_is_refused_by_name)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  torn (&m[1], 1, 10);
  memcpy (m[1].sb.set_uuid, OTHER_UUID, 16);
  bitmap_in (&b, 10, 8);
  ASSERT_REFUSED_NAMING (decide (m, 2, &b, true, true), NAMES[1]);
}
END_TEST

START_TEST (test_bitmap_of_another_array_is_refused_by_name)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  bitmap_in (&b, 10, 8);
  memcpy (b.hdr.uuid, OTHER_UUID, 16);
  ASSERT_REFUSED_NAMING (decide (m, 2, &b, false, true), BITMAP_NAME);
  /* A torn header of another array is not "ours": refused too. */
  b.status = BITMAP_HEADER_BAD_CHECKSUM;
  ASSERT_REFUSED_NAMING (decide (m, 2, &b, false, true), BITMAP_NAME);
}
END_TEST

START_TEST (test_bitmap_for_another_volume_size_is_refused_by_name)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  bitmap_in (&b, 10, 8);
  b.hdr.sync_size = VOL / 512 * 2;
  b.file_size = 1 << 20;                /* large enough for either size */
  ASSERT_REFUSED_NAMING (decide (m, 2, &b, false, true), BITMAP_NAME);
  b.status = BITMAP_HEADER_BAD_CHECKSUM;
  ASSERT_REFUSED_NAMING (decide (m, 2, &b, false, true), BITMAP_NAME);
}
END_TEST

START_TEST (test_foreign_bitmap_is_refused_by_name)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  bitmap_in (&b, 10, 8);
  b.status = BITMAP_HEADER_FOREIGN;
  memset (&b.hdr, 0, sizeof b.hdr);
  snprintf (b.why, sizeof b.why, "not an md bitmap (magic 0x00000000)");
  ASSERT_REFUSED_NAMING (decide (m, 2, &b, true, true), BITMAP_NAME);
  ck_assert_ptr_nonnull (strstr (err, "not an md bitmap"));
}
END_TEST

START_TEST (test_invalid_bitmap_header_is_refused_by_name)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  bitmap_in (&b, 10, 8);
  b.status = BITMAP_HEADER_INVALID;
  b.hdr.state = 0x1;
  snprintf (b.why, sizeof b.why, "unknown state 0x1");
  ASSERT_REFUSED_NAMING (decide (m, 2, &b, true, true), BITMAP_NAME);
  ck_assert_ptr_nonnull (strstr (err, "state"));
}
END_TEST

START_TEST (test_truncated_bitmap_file_is_refused_by_name)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  bitmap_in (&b, 10, 8);
  b.file_size = 256 + (int64_t) (bitmap_chunks (VOL, CHUNK) + 7) / 8 - 1;
  ASSERT_REFUSED_NAMING (decide (m, 2, &b, true, true), BITMAP_NAME);
  b.file_size = 0;
  ASSERT_REFUSED_NAMING (decide (m, 2, &b, true, true), BITMAP_NAME);
}
END_TEST

START_TEST (test_members_of_different_sizes_are_refused_by_name)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  m[1].sb.size = VOL / 512 - 8;
  bitmap_in (&b, 10, 8);
  ASSERT_REFUSED_NAMING (decide (m, 2, &b, true, true), NAMES[1]);
  ck_assert_ptr_nonnull (strstr (err, NAMES[0]));
}
END_TEST

START_TEST (test_member_file_too_small_for_the_volume_is_refused_by_name)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  m[1].file_size -= 4096;
  bitmap_in (&b, 10, 8);
  ASSERT_REFUSED_NAMING (decide (m, 2, &b, true, true), NAMES[1]);
}
END_TEST

START_TEST (test_member_without_magic_is_refused_by_name)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  m[1].status = SB_NO_MAGIC;
  memset (&m[1].sb, 0, sizeof m[1].sb);
  snprintf (m[1].why, sizeof m[1].why,
            "no md superblock (magic 0x00000000, expected 0xa92b4efc) "
            "at sector 2097152");
  bitmap_in (&b, 10, 8);
  ASSERT_REFUSED_NAMING (decide (m, 2, &b, true, true), NAMES[1]);
  ck_assert_ptr_nonnull (strstr (err, "no md superblock"));
  /* Listed first, before any valid member, it is still the one named. */
  struct member_probe r[2] = { m[1], m[0] };
  ASSERT_REFUSED_NAMING (decide (r, 2, &b, true, true), NAMES[0]);
}
END_TEST

START_TEST (test_truncated_member_is_refused_as_truncated)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  m[1].status = SB_NO_MAGIC;
  m[1].file_size = (int64_t) VOL;       /* superblock cut off */
  memset (&m[1].sb, 0, sizeof m[1].sb);
  snprintf (m[1].why, sizeof m[1].why, "no md superblock (magic 0x0) at "
            "sector 2097136");
  bitmap_in (&b, 10, 8);
  ASSERT_REFUSED_NAMING (decide (m, 2, &b, true, true), NAMES[1]);
  ck_assert_ptr_nonnull (strstr (err, "truncated"));
}
END_TEST

START_TEST (test_unsupported_member_is_refused_by_name)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  m[1].status = SB_UNSUPPORTED;
  m[1].sb.level = 5;
  snprintf (m[1].why, sizeof m[1].why, "raid level 5, expected raid1");
  bitmap_in (&b, 10, 8);
  ASSERT_REFUSED_NAMING (decide (m, 2, &b, true, true), NAMES[1]);
  ck_assert_ptr_nonnull (strstr (err, "raid level 5"));
}
END_TEST

START_TEST (test_two_members_claiming_one_slot_are_refused_naming_both)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 0, 10);
  bitmap_in (&b, 10, 8);
  ASSERT_REFUSED_NAMING (decide (m, 2, &b, true, true), NAMES[0]);
  ck_assert_ptr_nonnull (strstr (err, NAMES[1]));
}
END_TEST

START_TEST (test_split_brain_is_refused_naming_both)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 12);
  m[0].sb.dev_roles[1] = SB_ROLE_FAULTY;
  member (&m[1], 1, 11);
  m[1].sb.dev_roles[0] = SB_ROLE_FAULTY;
  bitmap_in (&b, 12, 10);
  /* Neither degraded nor force lets it through. */
  ASSERT_REFUSED_NAMING (decide (m, 2, &b, true, true), NAMES[0]);
  ck_assert_ptr_nonnull (strstr (err, NAMES[1]));
  ck_assert_ptr_nonnull (strstr (err, "split brain"));
  /* Whichever is newer, and in either order. */
  struct member_probe r[2] = { m[1], m[0] };
  r[0].sb.events = 13;
  ASSERT_REFUSED_NAMING (decide (r, 2, &b, false, false), NAMES[0]);
  ck_assert_ptr_nonnull (strstr (err, NAMES[1]));
}
END_TEST

START_TEST (test_missing_slot_without_degraded_is_refused)
{
  struct member_probe m[1];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  bitmap_in (&b, 10, 8);
  ck_assert_int_eq (decide (m, 1, &b, false, false), -1);
  ck_assert_msg (strstr (err, "slot 1") != NULL, "%s", err);
  ck_assert_msg (strstr (err, "degraded") != NULL, "%s", err);
  /* The other slot missing. */
  member (&m[0], 1, 10);
  ck_assert_int_eq (decide (m, 1, &b, false, false), -1);
  ck_assert_msg (strstr (err, "slot 0") != NULL, "%s", err);
}
END_TEST

START_TEST (test_bitmap_newer_than_every_member_is_refused_unless_forced)
{
  struct member_probe m[2];
  struct assemble_bitmap_in b;
  member (&m[0], 0, 10);
  member (&m[1], 1, 10);
  bitmap_in (&b, 11, 8);
  ASSERT_REFUSED_NAMING (decide (m, 2, &b, true, false), BITMAP_NAME);
  ck_assert_ptr_nonnull (strstr (err, "force"));
  ASSERT_OK (decide (m, 2, &b, false, true));
  ck_assert_int_eq (plan.slot[0], MEMBER_ACTIVE);
  ck_assert_int_eq (plan.slot[1], MEMBER_ACTIVE);
  ck_assert_int_ne (plan.bitmap, BITMAP_UNUSED);
}
END_TEST

START_TEST (test_no_member_at_all_is_refused)
{
  struct assemble_bitmap_in b;
  bitmap_in (&b, 10, 8);
  ck_assert_int_eq (decide (NULL, 0, &b, true, true), -1);
  ck_assert_str_ne (err, "");
}
END_TEST

static Suite *
assemble_suite (void)
{
  Suite *s = suite_create ("assemble");
  TCase *tc = tcase_create ("accepted");
  tcase_add_test (tc, test_whole_array_with_current_bitmap_resyncs_by_bitmap);
  tcase_add_test (tc, test_members_given_in_any_order_map_to_their_slots);
  tcase_add_test (tc, test_bitmap_with_older_events_is_stale);
  tcase_add_test (tc, test_bitmap_marked_stale_is_stale);
  tcase_add_test (tc, test_our_bitmap_with_bad_header_checksum_is_stale_not_refused);
  tcase_add_test (tc, test_behind_member_not_older_than_last_clear_recovers_set_bits);
  tcase_add_test (tc, test_behind_member_older_than_last_clear_recovers_everything);
  tcase_add_test (tc, test_behind_member_is_recovered_fully_when_the_bitmap_is_stale);
  tcase_add_test (tc, test_newest_member_is_the_reference_whatever_its_place);
  tcase_add_test (tc, test_member_marked_faulty_by_the_current_member_is_behind);
  tcase_add_test (tc, test_member_marked_faulty_by_a_current_member_listed_after_it_is_behind);
  tcase_add_test (tc, test_torn_member_gets_full_recovery);
  tcase_add_test (tc, test_member_mid_recovery_alone_is_refused_even_degraded);
  tcase_add_test (tc, test_interrupted_full_recovery_resumes_at_its_recovery_offset);
  tcase_add_test (tc, test_interrupted_bitmap_guided_recovery_copies_the_set_bits_again);
  tcase_add_test (tc, test_torn_member_with_garbled_slot_takes_the_free_slot);
  tcase_add_test (tc, test_missing_slot_with_degraded_is_missing);
  tcase_add_test (tc, test_nobitmap_dirty_shutdown_resyncs_from_resync_offset);
  tcase_add_test (tc, test_nobitmap_clean_shutdown_resyncs_nothing);
  tcase_add_test (tc, test_with_a_bitmap_resync_offset_does_not_force_a_full_resync);
  tcase_add_test (tc, test_bitmap_file_of_exactly_the_needed_size_is_accepted);
  suite_add_tcase (s, tc);

  tc = tcase_create ("refused");
  tcase_add_test (tc, test_member_of_another_array_is_refused_by_name);
  tcase_add_test (tc, test_torn_member_of_another_array_is_refused_by_name);
  tcase_add_test (tc, test_bitmap_of_another_array_is_refused_by_name);
  tcase_add_test (tc, test_bitmap_for_another_volume_size_is_refused_by_name);
  tcase_add_test (tc, test_foreign_bitmap_is_refused_by_name);
  tcase_add_test (tc, test_invalid_bitmap_header_is_refused_by_name);
  tcase_add_test (tc, test_truncated_bitmap_file_is_refused_by_name);
  tcase_add_test (tc, test_members_of_different_sizes_are_refused_by_name);
  tcase_add_test (tc, test_member_file_too_small_for_the_volume_is_refused_by_name);
  tcase_add_test (tc, test_member_without_magic_is_refused_by_name);
  tcase_add_test (tc, test_truncated_member_is_refused_as_truncated);
  tcase_add_test (tc, test_unsupported_member_is_refused_by_name);
  tcase_add_test (tc, test_two_members_claiming_one_slot_are_refused_naming_both);
  tcase_add_test (tc, test_split_brain_is_refused_naming_both);
  tcase_add_test (tc, test_missing_slot_without_degraded_is_refused);
  tcase_add_test (tc, test_bitmap_newer_than_every_member_is_refused_unless_forced);
  tcase_add_test (tc, test_no_member_at_all_is_refused);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (assemble_suite ());
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
