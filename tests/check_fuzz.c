/* Bad input at scale: a seeded mutation fuzzer for the superblock and
 * bitmap parsers and for the whole mount path (assemble, resync, close).
 *
 * Seeds come from tests/corpus/ (files written by the real code) and are
 * mutated: bit flips, interesting values at the fields' offsets, random
 * bytes, truncation and extension.  Nothing may crash or read out of
 * bounds (run under ASan/UBSan in CI), every rejection must come with a
 * message, and an accepted mount must recover and close cleanly.  Bounded
 * by FUZZ_SECONDS (default 5) per target. */
#include <config.h>

#include <check.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap/bitmap_format.h"
#include "core/array.h"
#include "tests/io_mem.h"
#include "common/log.h"
#include "core/member.h"
#include "core/superblock.h"
#include "common/util.h"

#define VOL (64ull << 10)
#define CHUNK (4ull << 10)

static unsigned long execs_sb, execs_bm, execs_mount, mounts_accepted;

static double
budget (void)
{
  const char *s = getenv ("FUZZ_SECONDS");
  double v = s ? atof (s) : 5.0;
  return v > 0 ? v : 5.0;
}

static uint8_t *
read_corpus (const char *name, size_t *len)
{
  const char *dir = getenv ("top_srcdir");
  char path[4096];
  snprintf (path, sizeof path, "%s/tests/corpus/%s", dir ? dir : ".", name);
  FILE *f = fopen (path, "rb");
  ck_assert_msg (f != NULL, "%s: %s", path, strerror (errno));
  fseek (f, 0, SEEK_END);
  long n = ftell (f);
  fseek (f, 0, SEEK_SET);
  uint8_t *buf = malloc ((size_t) n);
  ck_assert_int_eq (fread (buf, 1, (size_t) n, f), (size_t) n);
  fclose (f);
  *len = (size_t) n;
  return buf;
}

/* Field offsets worth hitting with interesting values. */
static const size_t sb_fields[] = { 0, 4, 8, 16, 72, 80, 92, 128, 136, 144,
                                    160, 200, 208, 216, 220, 256, 258, 260 };
static const size_t bm_fields[] = { 0, 4, 8, 24, 32, 40, 48, 52, 56, 60, 64,
                                    68, 248, 256 };
static const uint64_t interesting[] = { 0, 1, 2, 7, 8, 0x7f, 0x80, 0xff,
                                        0x7fff, 0xffff, 0xfffe, 0x7fffffff,
                                        0xffffffff, 0x100000000ull,
                                        0xffffffffffffffffull, 385, 1920 };

static void
mutate (uint8_t *buf, size_t len, const size_t *fields, size_t nfields,
        uint64_t *seed)
{
  int rounds = 1 + (int) (sim_rand (seed) % 4);
  for (int i = 0; i < rounds; i++) {
    switch (sim_rand (seed) % 4) {
    case 0: {                   /* flip a bit */
      size_t at = sim_rand (seed) % len;
      buf[at] ^= (uint8_t) (1u << (sim_rand (seed) % 8));
      break;
    }
    case 1: {                   /* a random byte */
      buf[sim_rand (seed) % len] = (uint8_t) sim_rand (seed);
      break;
    }
    default: {                  /* an interesting value on a field */
      size_t at = fields[sim_rand (seed) % nfields];
      uint64_t v = interesting[sim_rand (seed) % (sizeof interesting
                                                  / sizeof interesting[0])];
      size_t w = (size_t) 1 << (sim_rand (seed) % 4);
      if (at + w <= len)
        memcpy (buf + at, &v, w);
      break;
    }
    }
  }
}

static void
assert_message (const char *why)
{
  ck_assert_msg (why[0] != '\0', "a rejection without a message");
  for (const char *p = why; *p; p++)
    ck_assert_msg (isprint ((unsigned char) *p), "unprintable message");
}

START_TEST (test_fuzz_superblock_parser)
{
  size_t len;
  uint8_t *seedbuf = read_corpus ("superblock.bin", &len);
  ck_assert_uint_eq (len, SB_BLOCK_SIZE);
  uint8_t block[SB_BLOCK_SIZE];
  uint64_t seed = 1;
  double end = now_seconds () + budget ();
  while (now_seconds () < end) {
    for (int k = 0; k < 1000; k++) {
      memcpy (block, seedbuf, SB_BLOCK_SIZE);
      mutate (block, SB_BLOCK_SIZE, sb_fields,
              sizeof sb_fields / sizeof sb_fields[0], &seed);
      struct md_sb sb;
      char why[160] = "";
      enum sb_status st = sb_decode (block, &sb, why, sizeof why);
      ck_assert (st >= SB_VALID && st <= SB_UNSUPPORTED);
      if (st != SB_VALID)
        assert_message (why);
      else {
        /* What is accepted re-encodes to a block that decodes the same. */
        uint8_t again[SB_BLOCK_SIZE];
        struct md_sb sb2;
        sb_encode (&sb, again);
        ck_assert_int_eq (sb_decode (again, &sb2, why, sizeof why), SB_VALID);
        ck_assert_uint_eq (sb2.events, sb.events);
        ck_assert_uint_le (sb.max_dev, SB_MAX_DEV);
      }
      execs_sb++;
    }
  }
  free (seedbuf);
}
END_TEST

START_TEST (test_fuzz_bitmap_header_parser)
{
  size_t len;
  uint8_t *seedbuf = read_corpus ("bitmap.bin", &len);
  ck_assert_uint_ge (len, BITMAP_HEADER_SIZE);
  uint8_t hdr[BITMAP_HEADER_SIZE];
  uint64_t seed = 2;
  double end = now_seconds () + budget ();
  while (now_seconds () < end) {
    for (int k = 0; k < 1000; k++) {
      memcpy (hdr, seedbuf, sizeof hdr);
      mutate (hdr, sizeof hdr, bm_fields,
              sizeof bm_fields / sizeof bm_fields[0], &seed);
      /* Half the time, a header made consistent again (checksum fixed),
       * so the range checks behind the checksum are reached too. */
      if (sim_rand (&seed) % 2) {
        struct bitmap_header h;
        char why[200];
        if (bitmap_header_decode (hdr, &h, why, sizeof why)
            == BITMAP_HEADER_BAD_CHECKSUM)
          bitmap_header_encode (&h, hdr);
      }
      struct bitmap_header h;
      char why[200] = "";
      enum bitmap_header_status st = bitmap_header_decode (hdr, &h, why,
                                                           sizeof why);
      ck_assert (st >= BITMAP_HEADER_OK && st <= BITMAP_HEADER_INVALID);
      if (st != BITMAP_HEADER_OK)
        assert_message (why);
      else
        ck_assert (bitmap_chunk_valid (h.chunksize));
      execs_bm++;
    }
  }
  free (seedbuf);
}
END_TEST

/* Whole files, mutated, through assemble + resync + close. */
START_TEST (test_fuzz_mount_path)
{
  size_t l0, l1, lb;
  uint8_t *m0 = read_corpus ("member0.bin", &l0);
  uint8_t *m1 = read_corpus ("member1.bin", &l1);
  uint8_t *bm = read_corpus ("bitmap.bin", &lb);
  uint64_t seed = 3;
  double end = now_seconds () + budget ();
  while (now_seconds () < end) {
    struct io_file *mem[3];
    const uint8_t *src[3] = { m0, m1, bm };
    size_t lens[3] = { l0, l1, lb };
    for (int i = 0; i < 3; i++) {
      mem[i] = io_mem_new (i == 0 ? "m0" : i == 1 ? "m1" : "bm");
      ck_assert_int_eq (io_pwrite_full (mem[i], src[i], lens[i], 0), 0);
    }
    int target = (int) (sim_rand (&seed) % 3);
    size_t len;
    uint8_t *d = io_mem_data (mem[target], &len);
    if (target < 2) {
      /* Hit the superblock (near the end) most of the time. */
      uint64_t off = sb_super_offset_for (len) * 512;
      mutate (d + off, SB_BLOCK_SIZE, sb_fields,
              sizeof sb_fields / sizeof sb_fields[0], &seed);
      struct md_sb sb;
      char why[160];
      if (sb_decode (d + off, &sb, why, sizeof why) == SB_BAD_CHECKSUM
          && sim_rand (&seed) % 2)
        sb_encode (&sb, d + off);       /* valid again, odd fields */
    }
    else {
      mutate (d, len, bm_fields, sizeof bm_fields / sizeof bm_fields[0],
              &seed);
      struct bitmap_header h;
      char why[200];
      if (bitmap_header_decode (d, &h, why, sizeof why)
          == BITMAP_HEADER_BAD_CHECKSUM && sim_rand (&seed) % 2)
        bitmap_header_encode (&h, d);
    }
    switch (sim_rand (&seed) % 8) {     /* truncate or extend a file */
    case 0:
      io_mem_truncate (mem[target], sim_rand (&seed) % (len + 1));
      break;
    case 1:
      io_mem_truncate (mem[target], len + 4096 * (sim_rand (&seed) % 4));
      break;
    default:
      break;
    }

    struct io_file *f[3];
    for (int i = 0; i < 3; i++)
      f[i] = io_mem_reopen (mem[i]);
    struct array_options o = { .degraded = sim_rand (&seed) % 4 == 0,
                               .force = sim_rand (&seed) % 4 == 0 };
    struct array *a = array_assemble (f, 2, f[2], &o);
    if (a) {
      mounts_accepted++;
      struct array_resync_stats st;
      array_resync (a, &st);
      uint8_t buf[4096] = { 1 };
      array_write (a, buf, sizeof buf, (sim_rand (&seed) % (VOL / 4096)) * 4096);
      array_read (a, buf, sizeof buf, 0);
      array_close (a, true);
    }
    for (int i = 0; i < 3; i++)
      io_close (mem[i]);
    execs_mount++;
  }
  free (m0);
  free (m1);
  free (bm);
}
END_TEST

int
main (void)
{
  /* Every refusal logs a line; thousands of them are noise. */
  if (!getenv ("CHECK_FUZZ_VERBOSE"))
    freopen ("/dev/null", "w", stderr);
  log_set_program ("check_fuzz");
  Suite *s = suite_create ("fuzz");
  TCase *tc = tcase_create ("parsers");
  tcase_set_timeout (tc, 600);
  tcase_add_test (tc, test_fuzz_superblock_parser);
  tcase_add_test (tc, test_fuzz_bitmap_header_parser);
  tcase_add_test (tc, test_fuzz_mount_path);
  suite_add_tcase (s, tc);
  SRunner *sr = srunner_create (s);
  srunner_set_fork_status (sr, CK_NOFORK);
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  printf ("fuzz execs: %lu superblock, %lu bitmap header, %lu mounts "
          "(%lu accepted)\n", execs_sb, execs_bm, execs_mount,
          mounts_accepted);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
