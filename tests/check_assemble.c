/* The mount decision (SPEC §5 steps 1-3) as a table: what the member
 * superblocks and the bitmap header say -> which slots are current, which
 * are behind (and how much to copy), whether the bitmap is trusted, or a
 * refusal whose message names the file at fault.  One row per decision,
 * all run by one loop test that names the failing row. */
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

#define N0 "/mnt/disk0/member-zero.img"
#define N1 "/mnt/disk1/member-one.img"
#define N2 "/mnt/disk2/member-two.img"
#define BM "/mnt/flash/array.bitmap"
static const char *const NAMES[] = { N0, N1, N2 };
static const char *const BITMAP_NAME = BM;

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

static int
decide (const struct member_probe *m, size_t n,
        const struct assemble_bitmap_in *bm, bool degraded, bool force)
{
  struct assemble_options o = { degraded, force };
  memset (err, 0, sizeof err);
  return assemble_decide (m, NAMES, n, bm, &o, &plan, err, sizeof err);
}

/* ================= the table ================= */

enum member_kind {
  VALID,                        /* a good superblock */
  TORN,                         /* magic good, checksum bad */
  NO_MAGIC,                     /* no superblock at all */
  TRUNCATED,                    /* no superblock: the file is cut short */
  UNSUPPORTED,                  /* md, raid level 5 */
};

struct opt_u64 {
  bool set;
  uint64_t v;
};
#define U64(x) { true, (x) }
#define RESYNC_NONE U64 (UINT64_MAX)

/* One member file, as its superblock says. */
struct member_facts {
  bool given;
  uint32_t slot;
  uint64_t events;
  enum member_kind kind;
  unsigned marks_faulty;        /* bit k: the role of slot k is faulty */
  bool recovering, recovery_bitmap;
  uint64_t recovery_offset;
  struct opt_u64 resync_offset; /* unset: clean */
  bool other_uuid;
  uint64_t size_short;          /* sectors less in sb.size */
  int64_t file_short;           /* bytes less in the file */
  struct opt_u64 dev_number;    /* a garbled one */
  const char *why;              /* for TORN, NO_MAGIC, ... */
};
#define M(slot_, events_, ...) \
  { .given = true, .slot = (slot_), .events = (events_), __VA_ARGS__ }

enum bitmap_given { BM_GIVEN, BM_UNUSED, BM_NONE };

/* The bitmap file, as its header says. */
struct bitmap_facts {
  enum bitmap_given given;      /* BM_UNUSED: -o nobitmap; BM_NONE: NULL */
  uint64_t events, cleared;
  enum bitmap_header_status status;
  uint32_t state;
  bool other_uuid;
  bool zero_header;             /* nothing decoded (foreign) */
  struct opt_u64 sync_size;
  struct opt_u64 file_size;
  const char *why;
};
#define B(events_, cleared_, ...) \
  { .events = (events_), .cleared = (cleared_), __VA_ARGS__ }

struct row {
  const char *name;
  struct member_facts m[3];     /* in the order given to assemble */
  struct bitmap_facts b;
  bool degraded, force;
  /* Expected: a refusal whose message has every one of ERR_HAS, or a plan
   * with (where not NULL / set): */
  bool refused;
  const char *err_has[3];
  const char *slots;            /* per slot: A active, R recovering,
                                 * M missing, . not checked */
  const char *recovery;         /* per slot: B bitmap, F full, . */
  const char *map;              /* per slot: the member's index, - none */
  const char *bitmap;           /* "current", "stale", "unused", "used" */
  const char *stale_why;        /* the stale reason is not empty and has it */
  struct opt_u64 recover_from[3];
  struct opt_u64 resync_from;
  struct opt_u64 events;
  struct opt_u64 reference;
  bool geometry;                /* raid_disks 2, volume VOL */
  const char *warn_has;
  bool no_warnings;
};

#define NCHUNKS ((VOL + CHUNK - 1) / CHUNK)    /* bitmap_chunks (VOL, CHUNK) */
#define NEEDED_BITMAP_BYTES (256 + (NCHUNKS + 7) / 8)
#define RECOVERY_AT (300 * CHUNK / 512)

static const struct row rows[] = {
  /* ---------------- accepted ---------------- */
  { "whole array with a current bitmap resyncs by the bitmap",
    { M (0, 10), M (1, 10) }, B (10, 8),
    .slots = "AA", .map = "01", .bitmap = "current", .geometry = true,
    .events = U64 (10), .resync_from = RESYNC_NONE, .no_warnings = true },
  { "members given in any order map to their slots",
    { M (1, 10), M (0, 10) }, B (10, 8),
    .slots = "AA", .map = "10", .bitmap = "current" },
  { "a bitmap with older events is stale",
    { M (0, 10), M (1, 10) }, B (9, 8),
    .slots = "AA", .bitmap = "stale", .stale_why = "" },
  { "a bitmap marked stale is stale",
    { M (0, 10), M (1, 10) }, B (10, 8, .state = BITMAP_STATE_STALE),
    .bitmap = "stale", .stale_why = "" },
  { "our bitmap with a bad header checksum is stale, not refused",
    { M (0, 10), M (1, 10) },
    B (10, 8, .status = BITMAP_HEADER_BAD_CHECKSUM,
       .why = "header checksum 0x1 != 0x2"),
    .slots = "AA", .bitmap = "stale", .stale_why = "checksum" },
  { "a member behind, not older than the last clear, recovers the set bits",
    { M (0, 12, .marks_faulty = 1u << 1), M (1, 10) },
    B (12, 10),                 /* events_cleared == the member's events */
    .slots = "AR", .recovery = ".B", .bitmap = "current",
    .events = U64 (12), .reference = U64 (0), .warn_has = N1 },
  { "a member behind, older than the last clear, recovers everything",
    { M (0, 12), M (1, 10) }, B (12, 11),
    .slots = "AR", .recovery = ".F", .bitmap = "current" },
  { "a member behind is recovered fully when the bitmap is behind",
    { M (0, 12), M (1, 11) }, B (11, 5),
    .slots = ".R", .recovery = ".F", .bitmap = "stale" },
  { "a member behind is recovered fully when the bitmap is marked stale",
    { M (0, 12), M (1, 11) }, B (12, 5, .state = BITMAP_STATE_STALE),
    .slots = ".R", .recovery = ".F" },
  { "the newest member is the reference whatever its place",
    { M (0, 10), M (1, 12, .marks_faulty = 1u << 0) }, B (12, 9),
    .slots = "RA", .recovery = "B.", .reference = U64 (1),
    .events = U64 (12) },
  { "a member marked faulty by the current member is behind (same events)",
    { M (0, 12, .marks_faulty = 1u << 1), M (1, 12) }, B (12, 10),
    .slots = "AR", .recovery = ".B" },
  /* SPEC §5.2: "whose role is faulty in a current member's superblock",
   * whatever the order of the member list. */
  { "a member marked faulty by a current member listed after it is behind",
    { M (1, 12), M (0, 12, .marks_faulty = 1u << 1) }, B (12, 10),
    .slots = "AR", .recovery = ".B", .map = ".0" },
  /* Issue 13, bug 6: md's recovery offset.  A member whose recovery was
   * interrupted is never current, even with the newest events and no one
   * marking it faulty. */
  { "a member mid-recovery alone is refused, degraded",
    { M (1, 12, .recovering = true, .recovery_offset = 4096) }, B (12, 10),
    .degraded = true, .refused = true, .err_has = { N0, "recovery" } },
  { "a member mid-recovery alone is refused, degraded and forced",
    { M (1, 12, .recovering = true, .recovery_offset = 4096) }, B (12, 10),
    .degraded = true, .force = true, .refused = true, .err_has = { N0 } },
  /* Listed first (with the events of when it began), it is still not the
   * reference. */
  { "an interrupted full recovery resumes at its recovery offset",
    { M (1, 12, .recovering = true, .recovery_offset = RECOVERY_AT),
      M (0, 12, .marks_faulty = 1u << 1) }, B (12, 10),
    .slots = "AR", .recovery = ".F", .recover_from = { [1] = U64 (RECOVERY_AT) },
    .reference = U64 (1), .warn_has = "resuming" },
  /* A bit cleared since it began: the bits below the offset no longer say
   * what it missed; everything is copied. */
  { "an interrupted full recovery starts over after a clear",
    { M (0, 12, .marks_faulty = 1u << 1),
      M (1, 12, .recovering = true, .recovery_offset = RECOVERY_AT) },
    B (12, 13),
    .slots = ".R", .recovery = ".F", .recover_from = { [1] = U64 (0) } },
  { "an interrupted full recovery starts over with a stale bitmap",
    { M (0, 12, .marks_faulty = 1u << 1),
      M (1, 12, .recovering = true, .recovery_offset = RECOVERY_AT) },
    B (11, 10),
    .recover_from = { [1] = U64 (0) } },
  { "an interrupted bitmap-guided recovery copies the set bits again",
    { M (0, 12, .marks_faulty = 1u << 1),
      M (1, 11, .recovering = true, .recovery_bitmap = true,
         .recovery_offset = 0) }, B (12, 10),
    .slots = ".R", .recovery = ".B" },
  { "a torn member (its events not trusted) gets a full recovery",
    { M (0, 12), M (1, 12, .kind = TORN) }, B (12, 10),
    .slots = "AR", .recovery = ".F", .map = ".1", .bitmap = "current",
    .reference = U64 (0), .warn_has = N1 },
  { "a torn member with a garbled slot takes the free slot",
    { M (0, 12, .kind = TORN, .dev_number = U64 (77)), M (0, 12) },
    B (12, 10),
    .slots = "AR", .recovery = ".F", .map = "10" },
  { "a missing slot with degraded is missing",
    { M (0, 10) }, B (10, 8), .degraded = true,
    .slots = "AM", .map = ".-", .bitmap = "current" },
  { "nobitmap, dirty shutdown: resync from the resync offset",
    { M (0, 10, .resync_offset = U64 (123456)),
      M (1, 10, .resync_offset = U64 (123456)) },
    B (10, 8, .given = BM_UNUSED),
    .bitmap = "unused", .resync_from = U64 (123456) },
  { "no bitmap argument at all, dirty shutdown: the same",
    { M (0, 10, .resync_offset = U64 (123456)),
      M (1, 10, .resync_offset = U64 (123456)) },
    B (10, 8, .given = BM_NONE),
    .resync_from = U64 (123456) },
  { "nobitmap, a resync interrupted at sector 0 is a resync from 0",
    { M (0, 10, .resync_offset = U64 (0)), M (1, 10, .resync_offset = U64 (0)) },
    B (10, 8, .given = BM_UNUSED),
    .resync_from = U64 (0) },
  { "nobitmap, clean shutdown: no resync",
    { M (0, 10), M (1, 10) }, B (10, 8, .given = BM_UNUSED),
    .bitmap = "unused", .resync_from = RESYNC_NONE },
  { "with a bitmap, a resync offset (active) does not force a full resync",
    { M (0, 10, .resync_offset = U64 (0)), M (1, 10, .resync_offset = U64 (0)) },
    B (10, 8),
    .bitmap = "current", .resync_from = RESYNC_NONE },
  { "a bitmap file of exactly the needed size is accepted",
    { M (0, 10), M (1, 10) },
    B (10, 8, .file_size = U64 (NEEDED_BITMAP_BYTES)), .refused = false },
  { "a bitmap newer than every member is accepted when forced",
    { M (0, 10), M (1, 10) }, B (11, 8), .force = true,
    .slots = "AA", .bitmap = "used" },

  /* ---------------- refused ---------------- */
  { "a member of another array is refused by name",
    { M (0, 10), M (1, 10, .other_uuid = true) }, B (10, 8),
    .degraded = true, .force = true, .refused = true, .err_has = { N1 } },
  { "a torn member of another array is refused by name",
    { M (0, 10), M (1, 10, .kind = TORN, .other_uuid = true) }, B (10, 8),
    .degraded = true, .force = true, .refused = true, .err_has = { N1 } },
  { "a bitmap of another array is refused by name",
    { M (0, 10), M (1, 10) }, B (10, 8, .other_uuid = true), .force = true,
    .refused = true, .err_has = { BM } },
  { "a torn bitmap header of another array is not ours: refused by name",
    { M (0, 10), M (1, 10) },
    B (10, 8, .other_uuid = true, .status = BITMAP_HEADER_BAD_CHECKSUM),
    .force = true, .refused = true, .err_has = { BM, "corrupt", "uuid" } },
  { "a bitmap for another volume size is refused by name",
    { M (0, 10), M (1, 10) },
    B (10, 8, .sync_size = U64 (VOL / 512 * 2),
       .file_size = U64 (1 << 20)),        /* large enough for either */
    .force = true, .refused = true, .err_has = { BM } },
  { "a torn bitmap for another volume size is refused by name",
    { M (0, 10), M (1, 10) },
    B (10, 8, .sync_size = U64 (VOL / 512 * 2), .file_size = U64 (1 << 20),
       .status = BITMAP_HEADER_BAD_CHECKSUM, .why = "header checksum 0x1 != 0x2"),
    .force = true, .refused = true,
    .err_has = { BM, "corrupt bitmap header (header checksum", "volume size" } },
  { "a foreign bitmap is refused by name",
    { M (0, 10), M (1, 10) },
    B (10, 8, .status = BITMAP_HEADER_FOREIGN, .zero_header = true,
       .why = "not an md bitmap (magic 0x00000000)"),
    .degraded = true, .force = true, .refused = true,
    .err_has = { BM, "not an md bitmap" } },
  { "an invalid bitmap header is refused by name",
    { M (0, 10), M (1, 10) },
    B (10, 8, .status = BITMAP_HEADER_INVALID, .state = 0x1,
       .why = "unknown state 0x1"),
    .degraded = true, .force = true, .refused = true,
    .err_has = { BM, "state" } },
  { "a bitmap file a byte short is refused by name",
    { M (0, 10), M (1, 10) },
    B (10, 8, .file_size = U64 (NEEDED_BITMAP_BYTES - 1)),
    .degraded = true, .force = true, .refused = true, .err_has = { BM } },
  { "an empty bitmap file is refused by name",
    { M (0, 10), M (1, 10) }, B (10, 8, .file_size = U64 (0)),
    .degraded = true, .force = true, .refused = true, .err_has = { BM } },
  { "members of different sizes are refused naming both",
    { M (0, 10), M (1, 10, .size_short = 8) }, B (10, 8),
    .degraded = true, .force = true, .refused = true, .err_has = { N1, N0 } },
  { "a member file too small for the volume is refused by name",
    { M (0, 10), M (1, 10, .file_short = 4096) }, B (10, 8),
    .degraded = true, .force = true, .refused = true, .err_has = { N1 } },
  { "a member without magic is refused by name",
    { M (0, 10), M (1, 10, .kind = NO_MAGIC,
                    .why = "no md superblock (magic 0x00000000, expected "
                    "0xa92b4efc) at sector 2097152") }, B (10, 8),
    .degraded = true, .force = true, .refused = true,
    .err_has = { N1, "no md superblock" } },
  { "a member without magic listed first, before any valid one, is named",
    { M (1, 10, .kind = NO_MAGIC,
         .why = "no md superblock (magic 0x00000000, expected 0xa92b4efc) "
         "at sector 2097152"), M (0, 10) }, B (10, 8),
    .degraded = true, .force = true, .refused = true, .err_has = { N0 } },
  { "a truncated member is refused as truncated",
    { M (0, 10), M (1, 10, .kind = TRUNCATED,
                    .why = "no md superblock (magic 0x0) at sector 2097136") },
    B (10, 8),
    .degraded = true, .force = true, .refused = true,
    .err_has = { N1, "truncated" } },
  { "an unsupported member is refused by name",
    { M (0, 10), M (1, 10, .kind = UNSUPPORTED,
                    .why = "raid level 5, expected raid1") }, B (10, 8),
    .degraded = true, .force = true, .refused = true,
    .err_has = { N1, "raid level 5" } },
  { "two members claiming one slot are refused naming both",
    { M (0, 10), M (0, 10) }, B (10, 8),
    .degraded = true, .force = true, .refused = true, .err_has = { N0, N1 } },
  /* Neither degraded nor force lets it through. */
  { "split brain is refused naming both",
    { M (0, 12, .marks_faulty = 1u << 1), M (1, 11, .marks_faulty = 1u << 0) },
    B (12, 10), .degraded = true, .force = true, .refused = true,
    .err_has = { N0, N1, "split brain" } },
  { "split brain is refused whichever is newer, in either order",
    { M (1, 13, .marks_faulty = 1u << 0), M (0, 12, .marks_faulty = 1u << 1) },
    B (12, 10), .refused = true, .err_has = { N0, N1 } },
  { "a missing slot 1 without degraded is refused",
    { M (0, 10) }, B (10, 8),
    .refused = true, .err_has = { "slot 1", "degraded" } },
  { "a missing slot 0 without degraded is refused",
    { M (1, 10) }, B (10, 8),
    .refused = true, .err_has = { "slot 0" } },
  { "a bitmap newer than every member is refused unless forced",
    { M (0, 10), M (1, 10) }, B (11, 8), .degraded = true,
    .refused = true, .err_has = { BM, "force" } },
  { "no member at all is refused",
    { { .given = false } }, B (10, 8), .degraded = true, .force = true, .refused = true },
};

#define NROWS (sizeof rows / sizeof rows[0])

static void
member_from (struct member_probe *p, const struct member_facts *f)
{
  member (p, f->slot, f->events);
  switch (f->kind) {
  case VALID:
    break;
  case TORN:
    torn (p, f->slot, f->events);
    break;
  case TRUNCATED:
    p->file_size = (int64_t) VOL;       /* superblock cut off */
    /* fall through */
  case NO_MAGIC:
    p->status = SB_NO_MAGIC;
    memset (&p->sb, 0, sizeof p->sb);
    break;
  case UNSUPPORTED:
    p->status = SB_UNSUPPORTED;
    p->sb.level = 5;
    break;
  }
  if (f->why)
    snprintf (p->why, sizeof p->why, "%s", f->why);
  for (uint32_t k = 0; k < 32; k++)
    if (f->marks_faulty & (1u << k))
      p->sb.dev_roles[k] = SB_ROLE_FAULTY;
  if (f->recovering) {
    p->sb.recovering = true;
    p->sb.recovery_bitmap = f->recovery_bitmap;
    p->sb.recovery_offset = f->recovery_offset;
  }
  if (f->resync_offset.set)
    p->sb.resync_offset = f->resync_offset.v;
  if (f->other_uuid)
    memcpy (p->sb.set_uuid, OTHER_UUID, 16);
  p->sb.size -= f->size_short;
  p->file_size -= f->file_short;
  if (f->dev_number.set)
    p->sb.dev_number = (uint32_t) f->dev_number.v;
}

static void
bitmap_from (struct assemble_bitmap_in *b, const struct bitmap_facts *f)
{
  bitmap_in (b, f->events, f->cleared);
  b->used = f->given != BM_UNUSED;
  b->status = f->status;
  b->hdr.state = f->state;
  if (f->other_uuid)
    memcpy (b->hdr.uuid, OTHER_UUID, 16);
  if (f->zero_header)
    memset (&b->hdr, 0, sizeof b->hdr);
  if (f->sync_size.set)
    b->hdr.sync_size = f->sync_size.v;
  if (f->file_size.set)
    b->file_size = (int64_t) f->file_size.v;
  if (f->why)
    snprintf (b->why, sizeof b->why, "%s", f->why);
}

static const char *
verdict_name (enum bitmap_verdict v)
{
  switch (v) {
  case BITMAP_USE_CURRENT:
    return "current";
  case BITMAP_USE_STALE:
    return "stale";
  case BITMAP_UNUSED:
    return "unused";
  }
  return "?";
}

#define ROW_ASSERT(cond, ...) do {                                      \
    if (!(cond)) {                                                      \
      char msg_[600];                                                   \
      snprintf (msg_, sizeof msg_, __VA_ARGS__);                        \
      ck_abort_msg ("row %d \"%s\": %s", _i, row->name, msg_);          \
    }                                                                   \
  } while (0)

#define ROW_U64(field, what) do {                                       \
    if (row->field.set)                                                 \
      ROW_ASSERT ((what) == row->field.v, #what " is %llu, expected %llu", \
                  (unsigned long long) (what),                          \
                  (unsigned long long) row->field.v);                   \
  } while (0)

/* Three slots: m0 current, m1 and m2 both under recovery.  Each one's own
 * superblock (its role active, recovering) marks the other faulty, as it
 * was when its recovery began; that is no split brain: neither ever ran
 * as current.  Found by check_crash, a crash during a background resync
 * of a three-member array. */
START_TEST (test_two_members_recovering_at_once_are_no_split_brain)
{
  struct member_probe m[3];
  for (uint32_t k = 0; k < 3; k++) {
    member (&m[k], k, 12);
    m[k].sb.raid_disks = m[k].sb.max_dev = 3;
    for (uint32_t j = 0; j < 3; j++)
      m[k].sb.dev_roles[j] = (uint16_t) j;
  }
  m[0].sb.dev_roles[1] = m[0].sb.dev_roles[2] = SB_ROLE_FAULTY;
  m[1].sb.recovering = m[2].sb.recovering = true;
  m[1].sb.recovery_offset = m[2].sb.recovery_offset = RECOVERY_AT;
  m[1].sb.dev_roles[2] = SB_ROLE_FAULTY;
  m[2].sb.dev_roles[1] = SB_ROLE_FAULTY;
  struct assemble_bitmap_in b;
  bitmap_in (&b, 12, 10);
  ck_assert_msg (decide (m, 3, &b, false, false) == 0, "refused: %s", err);
  ck_assert_int_eq (plan.slot[0], MEMBER_ACTIVE);
  ck_assert_int_eq (plan.slot[1], MEMBER_RECOVERING);
  ck_assert_int_eq (plan.slot[2], MEMBER_RECOVERING);
  ck_assert_uint_eq (plan.reference, 0);
}
END_TEST

START_TEST (test_decision_table)
{
  const struct row *row = &rows[_i];
  ck_assert_uint_eq (NCHUNKS, bitmap_chunks (VOL, CHUNK));
  struct member_probe m[3];
  size_t n = 0;
  while (n < 3 && row->m[n].given) {
    member_from (&m[n], &row->m[n]);
    n++;
  }
  struct assemble_bitmap_in b;
  bitmap_from (&b, &row->b);
  int r = decide (n ? m : NULL, n, row->b.given == BM_NONE ? NULL : &b,
                  row->degraded, row->force);

  if (row->refused) {
    ROW_ASSERT (r == -1, "accepted, expected a refusal");
    ROW_ASSERT (err[0] != '\0', "refused without a message");
    for (size_t k = 0; k < 3 && row->err_has[k]; k++)
      ROW_ASSERT (strstr (err, row->err_has[k]) != NULL,
                  "the message does not have \"%s\": %s", row->err_has[k],
                  err);
    return;
  }
  ROW_ASSERT (r == 0, "refused: %s", err);

  static const struct { char c; enum member_state st; } states[] = {
    { 'A', MEMBER_ACTIVE }, { 'R', MEMBER_RECOVERING },
    { 'M', MEMBER_MISSING } };
  for (size_t s = 0; row->slots && row->slots[s]; s++) {
    if (row->slots[s] == '.')
      continue;
    enum member_state want = MEMBER_FAULTY;
    for (size_t k = 0; k < 3; k++)
      if (states[k].c == row->slots[s])
        want = states[k].st;
    ROW_ASSERT (plan.slot[s] == want, "slot %zu is %s, expected %s", s,
                member_state_name (plan.slot[s]), member_state_name (want));
  }
  for (size_t s = 0; row->recovery && row->recovery[s]; s++) {
    if (row->recovery[s] == '.')
      continue;
    ROW_ASSERT (plan.slot[s] == MEMBER_RECOVERING,
                "slot %zu is %s, expected recovering", s,
                member_state_name (plan.slot[s]));
    enum recovery_mode want = row->recovery[s] == 'B' ? RECOVER_BITMAP
      : RECOVER_FULL;
    ROW_ASSERT (plan.recovery[s] == want, "slot %zu recovers %s, expected %s",
                s, plan.recovery[s] == RECOVER_BITMAP ? "by the bitmap"
                : "in full", want == RECOVER_BITMAP ? "by the bitmap"
                : "in full");
  }
  for (size_t s = 0; row->map && row->map[s]; s++) {
    if (row->map[s] == '.')
      continue;
    int want = row->map[s] == '-' ? -1 : row->map[s] - '0';
    ROW_ASSERT (plan.member_of_slot[s] == want,
                "slot %zu has member %d, expected %d", s,
                plan.member_of_slot[s], want);
  }
  if (row->bitmap && strcmp (row->bitmap, "used") == 0)
    ROW_ASSERT (plan.bitmap != BITMAP_UNUSED, "the bitmap is unused");
  else if (row->bitmap)
    ROW_ASSERT (strcmp (verdict_name (plan.bitmap), row->bitmap) == 0,
                "the bitmap is %s, expected %s", verdict_name (plan.bitmap),
                row->bitmap);
  if (row->stale_why)
    ROW_ASSERT (plan.bitmap_stale_reason[0] != '\0'
                && strstr (plan.bitmap_stale_reason, row->stale_why),
                "stale reason \"%s\", expected one with \"%s\"",
                plan.bitmap_stale_reason, row->stale_why);
  for (size_t s = 0; s < 3; s++)
    ROW_U64 (recover_from[s], plan.recover_from[s]);
  ROW_U64 (resync_from, plan.resync_from);
  ROW_U64 (events, plan.events);
  ROW_U64 (reference, plan.reference);
  if (row->geometry) {
    ROW_ASSERT (plan.raid_disks == 2, "raid_disks %u", plan.raid_disks);
    ROW_ASSERT (plan.volume_bytes == VOL, "volume %llu bytes",
                (unsigned long long) plan.volume_bytes);
  }
  if (row->warn_has)
    ROW_ASSERT (strstr (plan.warnings, row->warn_has) != NULL,
                "the warnings do not have \"%s\": %s", row->warn_has,
                plan.warnings);
  if (row->no_warnings)
    ROW_ASSERT (plan.warnings[0] == '\0', "warnings: %s", plan.warnings);
}
END_TEST

static Suite *
assemble_suite (void)
{
  Suite *s = suite_create ("assemble");
  TCase *tc = tcase_create ("decision table");
  tcase_add_loop_test (tc, test_decision_table, 0, (int) NROWS);
  tcase_add_test (tc, test_two_members_recovering_at_once_are_no_split_brain);
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
