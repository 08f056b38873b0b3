/* The bitmap file (SPEC §3) and the write-intent protocol over it
 * (SPEC §4): the header format, bit addressing and sizes, then struct
 * bitmap over in-memory files, observed through a test backend that
 * records every write and sync and keeps the image an fdatasync made
 * durable. */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include "bitmap/bitmap.h"
#include "bitmap/bitmap_format.h"
#include "common/io.h"
#include "tests/io_mem.h"
#include "tests/le_bytes.h"

static void
sleep_ms (unsigned ms)
{
  struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
  while (nanosleep (&ts, &ts) != 0)
    ;
}

static const uint8_t UUID[16] = {
  0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe,
  0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef };

static struct bitmap_header
header_for (uint64_t volume, uint64_t chunk)
{
  struct bitmap_header h;
  memset (&h, 0, sizeof h);
  memcpy (h.uuid, UUID, 16);
  h.events = 10;
  h.events_cleared = 7;
  h.sync_size = volume / 512;
  h.state = 0;
  h.chunksize = (uint32_t) chunk;
  h.daemon_sleep = 5;
  return h;
}

/* ================= the test's file =================
 * In memory, attached to a log that keeps every pwrite (with its data),
 * fdatasync and test marker in one order; io_mem keeps the image the last
 * fdatasync made durable and can delay fdatasync.  One file per test. */

static struct io_log *tlog;

/* A new file NAME holding IMAGE (SIZE bytes; no call counted), logged
 * from then on. */
static struct io_file *
logged_new (const char *name, const void *image, size_t size)
{
  struct io_file *io = io_mem_new (name);
  ck_assert_ptr_nonnull (io);
  if (size) {
    ck_assert_int_eq (io_mem_truncate (io, size), 0);
    size_t len;
    memcpy (io_mem_data (io, &len), image, size);
  }
  ck_assert_ptr_null (tlog);
  tlog = io_log_new (true);
  io_log_attach (tlog, io);
  return io;
}

/* Whether chunk C's bit is set in the file now / as last made durable. */
static bool
file_bit (struct io_file *f, uint64_t c)
{
  size_t len;
  unsigned char *d = io_mem_data (f, &len);
  ck_assert_uint_lt (bitmap_bit_byte (c), len);
  return (d[bitmap_bit_byte (c)] & bitmap_bit_mask (c)) != 0;
}

static bool
durable_bit (struct io_file *f, uint64_t c)
{
  uint8_t byte;
  return io_mem_durable_read (f, &byte, 1, bitmap_bit_byte (c)) == 1
    && (byte & bitmap_bit_mask (c));
}

static unsigned long
mem_syncs (struct io_file *f)
{
  return io_mem_stats_now (f).syncs;
}

static const uint8_t *
durable (struct io_file *f, size_t *len)
{
  size_t l;
  const uint8_t *d = io_mem_durable (f, len ? len : &l);
  ck_assert_ptr_nonnull (d);
  return d;
}

/* A bitmap for a volume of VOLUME bytes with chunk CHUNK over a fresh
 * recording file that already holds its (clean) image. */
static struct bitmap *
bm_make (struct io_file **iop, uint64_t volume, uint64_t chunk)
{
  struct bitmap_header h = header_for (volume, chunk);
  uint64_t size = bitmap_file_size (bitmap_chunks (volume, chunk));
  uint8_t *buf = calloc (1, size);
  bitmap_header_encode (&h, buf);
  struct io_file *io = logged_new ("test.bitmap", buf, size);
  struct bitmap *bm = bitmap_new (io, &h, buf, volume);
  ck_assert_ptr_nonnull (bm);
  *iop = io;
  return bm;
}

static void
bm_done (struct bitmap *bm, struct io_file *io)
{
  bitmap_free (bm);
  io_close (io);
  io_log_free (tlog);
  tlog = NULL;
}

/* ================= header format ================= */

START_TEST (test_header_struct_has_the_md_offsets)
{
  ck_assert_uint_eq (offsetof (bitmap_super_t, magic), 0);
  ck_assert_uint_eq (offsetof (bitmap_super_t, version), 4);
  ck_assert_uint_eq (offsetof (bitmap_super_t, uuid), 8);
  ck_assert_uint_eq (offsetof (bitmap_super_t, events), 24);
  ck_assert_uint_eq (offsetof (bitmap_super_t, events_cleared), 32);
  ck_assert_uint_eq (offsetof (bitmap_super_t, sync_size), 40);
  ck_assert_uint_eq (offsetof (bitmap_super_t, state), 48);
  ck_assert_uint_eq (offsetof (bitmap_super_t, chunksize), 52);
  ck_assert_uint_eq (offsetof (bitmap_super_t, daemon_sleep), 56);
  ck_assert_uint_eq (offsetof (bitmap_super_t, write_behind), 60);
  ck_assert_uint_eq (offsetof (bitmap_super_t, sectors_reserved), 64);
  ck_assert_uint_eq (offsetof (bitmap_super_t, nodes), 68);
  ck_assert_uint_eq (offsetof (bitmap_super_t, cluster_name), 72);
  ck_assert_uint_eq (offsetof (bitmap_super_t, pad), 136);
  ck_assert_uint_eq (offsetof (bitmap_super_t, xxh64), 248);
  ck_assert_uint_eq (sizeof (bitmap_super_t), 256);
}
END_TEST

START_TEST (test_header_encode_writes_md_bytes_and_xxh64)
{
  struct bitmap_header h = header_for (1ull << 30, 1ull << 20);
  h.events = 0x1111222233334444ull;
  h.events_cleared = 0x5555666677778888ull;
  h.state = BITMAP_STATE_STALE;
  h.daemon_sleep = 7;
  uint8_t b[BITMAP_HEADER_SIZE];
  memset (b, 0xcc, sizeof b);
  bitmap_header_encode (&h, b);
  ck_assert_mem_eq (b, "bitm", 4);
  ck_assert_uint_eq (get32 (b, 0), 0x6d746962);
  ck_assert_uint_eq (get32 (b, 4), 4);
  ck_assert_mem_eq (b + 8, UUID, 16);
  ck_assert_uint_eq (get64 (b, 24), 0x1111222233334444ull);
  ck_assert_uint_eq (get64 (b, 32), 0x5555666677778888ull);
  ck_assert_uint_eq (get64 (b, 40), (1ull << 30) / 512);
  ck_assert_uint_eq (get32 (b, 48), 2);
  ck_assert_uint_eq (get32 (b, 52), 1u << 20);
  ck_assert_uint_eq (get32 (b, 56), 7);
  for (size_t i = 60; i < 248; i++)
    ck_assert_msg (b[i] == 0, "byte %zu is 0x%02x", i, b[i]);
  ck_assert_uint_eq (get64 (b, 248), XXH64 (b, 248, 0));
}
END_TEST

START_TEST (test_header_round_trips_every_field)
{
  struct bitmap_header in = header_for (3ull << 30, 64 << 10), out;
  in.events = 99;
  in.events_cleared = 98;
  in.state = BITMAP_STATE_STALE;
  in.daemon_sleep = 30;
  in.write_behind = 256;
  uint8_t b[BITMAP_HEADER_SIZE];
  bitmap_header_encode (&in, b);
  ck_assert_uint_eq (get32 (b, 60), 256);       /* md's write_behind */
  char why[160] = "";
  ck_assert_msg (bitmap_header_decode (b, &out, why, sizeof why)
                 == BITMAP_HEADER_OK, "%s", why);
  ck_assert_uint_eq (out.write_behind, 256);
  ck_assert_mem_eq (out.uuid, UUID, 16);
  ck_assert_uint_eq (out.events, 99);
  ck_assert_uint_eq (out.events_cleared, 98);
  ck_assert_uint_eq (out.sync_size, (3ull << 30) / 512);
  ck_assert_uint_eq (out.state, BITMAP_STATE_STALE);
  ck_assert_uint_eq (out.chunksize, 64 << 10);
  ck_assert_uint_eq (out.daemon_sleep, 30);

  in.state = 0;
  bitmap_header_encode (&in, b);
  ck_assert_int_eq (bitmap_header_decode (b, &out, why, sizeof why),
                    BITMAP_HEADER_OK);
  ck_assert_uint_eq (out.state, 0);
}
END_TEST

START_TEST (test_flipped_covered_byte_is_bad_checksum_with_fields_decoded)
{
  struct bitmap_header in = header_for (1ull << 30, 1ull << 20), out;
  uint8_t b[BITMAP_HEADER_SIZE];
  static const size_t flips[] = { 24, 40, 60, 100, 200, 247 };
  for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
    bitmap_header_encode (&in, b);
    b[flips[i]] ^= 0x04;
    char why[160] = "";
    ck_assert_msg (bitmap_header_decode (b, &out, why, sizeof why)
                   == BITMAP_HEADER_BAD_CHECKSUM, "flip at %zu", flips[i]);
    ck_assert_mem_eq (out.uuid, UUID, 16);
    ck_assert_uint_eq (out.chunksize, 1u << 20);
    ck_assert_uint_eq (out.events_cleared, 7);
    if (flips[i] == 24)
      ck_assert_uint_eq (out.events, 10 ^ 0x04);
    else
      ck_assert_uint_eq (out.events, 10);
    if (flips[i] == 40)
      ck_assert_uint_eq (out.sync_size, ((1ull << 30) / 512) ^ 0x04);
    else
      ck_assert_uint_eq (out.sync_size, (1ull << 30) / 512);
    ck_assert_ptr_nonnull (strstr (why, "checksum"));
  }
  /* A flipped checksum byte is a mismatch too. */
  bitmap_header_encode (&in, b);
  b[250] ^= 0x80;
  char why[160];
  ck_assert_int_eq (bitmap_header_decode (b, &out, why, sizeof why),
                    BITMAP_HEADER_BAD_CHECKSUM);
}
END_TEST

static enum bitmap_header_status
decode_patched (size_t off, uint32_t v, char *why, size_t whylen)
{
  struct bitmap_header h = header_for (1ull << 30, 1ull << 20), out;
  uint8_t b[BITMAP_HEADER_SIZE];
  bitmap_header_encode (&h, b);
  put32 (b, off, v);
  put64 (b, 248, XXH64 (b, 248, 0));    /* a consistent, well-formed header */
  return bitmap_header_decode (b, &out, why, whylen);
}

START_TEST (test_wrong_magic_or_version_is_foreign)
{
  char why[160] = "";
  ck_assert_int_eq (decode_patched (0, 0x6d746963, why, sizeof why),
                    BITMAP_HEADER_FOREIGN);
  ck_assert_ptr_nonnull (strstr (why, "magic"));
  ck_assert_int_eq (decode_patched (4, 3, why, sizeof why),
                    BITMAP_HEADER_FOREIGN);
  ck_assert_ptr_nonnull (strstr (why, "version"));
  ck_assert_int_eq (decode_patched (4, 5, why, sizeof why),
                    BITMAP_HEADER_FOREIGN);
  uint8_t zero[BITMAP_HEADER_SIZE] = { 0 };
  struct bitmap_header out;
  ck_assert_int_eq (bitmap_header_decode (zero, &out, why, sizeof why),
                    BITMAP_HEADER_FOREIGN);
  /* The control: the helper's unpatched header is fine. */
  ck_assert_int_eq (decode_patched (4, 4, why, sizeof why), BITMAP_HEADER_OK);
}
END_TEST

START_TEST (test_state_other_than_ok_or_stale_is_invalid)
{
  char why[160] = "";
  ck_assert_int_eq (decode_patched (48, 0x1, why, sizeof why),
                    BITMAP_HEADER_INVALID);
  ck_assert_ptr_nonnull (strstr (why, "state"));
  ck_assert_int_eq (decode_patched (48, 0x3, why, sizeof why),
                    BITMAP_HEADER_INVALID);
  ck_assert_int_eq (decode_patched (48, 0x2, why, sizeof why),
                    BITMAP_HEADER_OK);
  ck_assert_int_eq (decode_patched (48, 0x0, why, sizeof why),
                    BITMAP_HEADER_OK);
}
END_TEST

START_TEST (test_write_behind_past_md_limit_is_invalid)
{
  char why[160] = "";
  ck_assert_int_eq (decode_patched (60, BITMAP_MAX_WRITE_BEHIND, why,
                                    sizeof why), BITMAP_HEADER_OK);
  ck_assert_int_eq (decode_patched (60, BITMAP_MAX_WRITE_BEHIND + 1, why,
                                    sizeof why), BITMAP_HEADER_INVALID);
  ck_assert_ptr_nonnull (strstr (why, "write_behind"));
}
END_TEST

START_TEST (test_chunk_not_a_power_of_two_in_range_is_invalid)
{
  char why[160] = "";
  ck_assert_int_eq (decode_patched (52, 12288, why, sizeof why),
                    BITMAP_HEADER_INVALID);
  ck_assert_ptr_nonnull (strstr (why, "chunk"));
  ck_assert_int_eq (decode_patched (52, (1u << 20) + 4096, why, sizeof why),
                    BITMAP_HEADER_INVALID);
  ck_assert_int_eq (decode_patched (52, 2048, why, sizeof why),
                    BITMAP_HEADER_INVALID);
  ck_assert_int_eq (decode_patched (52, 0, why, sizeof why),
                    BITMAP_HEADER_INVALID);
  ck_assert_int_eq (decode_patched (52, 1u << 31, why, sizeof why),
                    BITMAP_HEADER_INVALID);
  ck_assert_int_eq (decode_patched (52, 4096, why, sizeof why),
                    BITMAP_HEADER_OK);
  ck_assert_int_eq (decode_patched (52, 1u << 30, why, sizeof why),
                    BITMAP_HEADER_OK);
}
END_TEST

/* ================= addressing and sizes ================= */

START_TEST (test_bit_addressing_at_chunk_boundaries)
{
  static const struct { uint64_t chunk, byte; uint8_t mask; } t[] = {
    { 0, 256, 0x01 }, { 7, 256, 0x80 }, { 8, 257, 0x01 },
    { 2047, 511, 0x80 }, { 2048, 512, 0x01 }, { 13, 257, 0x20 },
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    ck_assert_uint_eq (bitmap_bit_byte (t[i].chunk), t[i].byte);
    ck_assert_uint_eq (bitmap_bit_mask (t[i].chunk), t[i].mask);
  }
}
END_TEST

START_TEST (test_a_write_to_chunk_i_sets_exactly_bit_i_of_the_file)
{
  /* The same addressing, seen on the file the protocol writes. */
  static const uint64_t chunks[] = { 0, 7, 8, 2047, 2048, 4095 };
  for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
    struct io_file *io;
    struct bitmap *bm = bm_make (&io, 4096ull * 4096, 4096);
    uint64_t c = chunks[i];
    ck_assert_int_eq (bitmap_start_write (bm, c * 4096, 4096), 0);
    size_t len;
    unsigned char *d = io_mem_data (io, &len);
    for (size_t b = BITMAP_HEADER_SIZE; b < len; b++) {
      uint8_t want = b == 256 + c / 8 ? (uint8_t) (1u << (c % 8)) : 0;
      ck_assert_msg (d[b] == want, "chunk %llu: byte %zu is 0x%02x",
                     (unsigned long long) c, b, d[b]);
    }
    bitmap_end_write (bm, c * 4096, 4096);
    bm_done (bm, io);
  }
}
END_TEST

START_TEST (test_chunk_count_includes_a_last_partial_chunk)
{
  ck_assert_uint_eq (bitmap_chunks (8ull << 20, 4ull << 20), 2);
  ck_assert_uint_eq (bitmap_chunks ((8ull << 20) + 4096, 4ull << 20), 3);
  ck_assert_uint_eq (bitmap_chunks (10ull << 20, 4ull << 20), 3);
  ck_assert_uint_eq (bitmap_chunks (4096, 4ull << 20), 1);
  ck_assert_uint_eq (bitmap_chunks (16ull << 40, 4ull << 20), 1ull << 22);
}
END_TEST

START_TEST (test_file_size_is_header_plus_bits_padded_to_4k)
{
  ck_assert_uint_eq (bitmap_file_size (1), 4096);
  ck_assert_uint_eq (bitmap_file_size (8 * (4096 - 256)), 4096);
  ck_assert_uint_eq (bitmap_file_size (8 * (4096 - 256) + 1), 8192);
  ck_assert_uint_eq (bitmap_file_size (1ull << 21), 266240);   /* 256+262144 -> 65 pages */
  for (uint64_t n = 1; n < 100000; n += 997) {
    uint64_t s = bitmap_file_size (n);
    ck_assert_uint_eq (s % 4096, 0);
    ck_assert_uint_ge (s, 256 + (n + 7) / 8);
    ck_assert_uint_lt (s - 4096, 256 + (n + 7) / 8);
  }
}
END_TEST

START_TEST (test_default_chunk_is_4m_doubled_past_2_21_bits)
{
  ck_assert_uint_eq (bitmap_default_chunk (1ull << 30), 4ull << 20);
  ck_assert_uint_eq (bitmap_default_chunk (4096), 4ull << 20);
  /* 8 TiB / 4 MiB = 2^21 bits exactly: still 4 MiB. */
  ck_assert_uint_eq (bitmap_default_chunk (8ull << 40), 4ull << 20);
  ck_assert_uint_eq (bitmap_default_chunk ((8ull << 40) + 4096), 8ull << 20);
  ck_assert_uint_eq (bitmap_default_chunk (16ull << 40), 8ull << 20);
  ck_assert_uint_eq (bitmap_default_chunk ((16ull << 40) + 4096), 16ull << 20);
  ck_assert_uint_eq (bitmap_default_chunk (2ull << 50), 1ull << 30);
  /* Past what 1 GiB chunks cover, it stays at the largest chunk. */
  ck_assert_uint_eq (bitmap_default_chunk (4ull << 50), 1ull << 30);
  for (uint64_t v = 1ull << 30; v <= (1ull << 51); v *= 3) {
    uint64_t c = bitmap_default_chunk (v);
    ck_assert (bitmap_chunk_valid (c));
    ck_assert_uint_le (bitmap_chunks (v, c), BITMAP_MAX_BITS);
  }
}
END_TEST

START_TEST (test_count_dirty_ignores_padding_bits)
{
  uint8_t buf[4096];
  memset (buf, 0, sizeof buf);
  memset (buf + 256, 0xff, 4);          /* 32 bits set, chunks 0..31 */
  ck_assert_uint_eq (bitmap_count_dirty (buf, 11), 11);
  ck_assert_uint_eq (bitmap_count_dirty (buf, 8), 8);
  ck_assert_uint_eq (bitmap_count_dirty (buf, 1), 1);
  ck_assert_uint_eq (bitmap_count_dirty (buf, 0), 0);
  ck_assert_uint_eq (bitmap_count_dirty (buf, 100), 32);
  memset (buf + 256, 0, 4);
  buf[257] = 0xf8;                      /* chunks 11..15 */
  ck_assert_uint_eq (bitmap_count_dirty (buf, 11), 0);
  ck_assert_uint_eq (bitmap_count_dirty (buf, 12), 1);
  buf[0] = 0xff;                        /* the header is not bits */
  ck_assert_uint_eq (bitmap_count_dirty (buf, 16), 5);
}
END_TEST

START_TEST (test_bit_test_reads_the_bit_of_a_whole_file_buffer)
{
  uint8_t buf[4096];
  memset (buf, 0, sizeof buf);
  buf[0] = 0xff;                        /* the header is not bits */
  buf[256] = 0x81;                      /* chunks 0 and 7 */
  buf[257] = 0x20;                      /* chunk 13 */
  for (uint64_t c = 0; c < 64; c++)
    ck_assert_msg (bitmap_bit_test (buf, c) == (c == 0 || c == 7 || c == 13),
                   "chunk %llu", (unsigned long long) c);
  ck_assert_uint_eq (bitmap_count_dirty (buf, 64), 3);
}
END_TEST

START_TEST (test_bits_end_is_header_plus_bits_unpadded)
{
  ck_assert_uint_eq (bitmap_bits_end (0), 256);
  ck_assert_uint_eq (bitmap_bits_end (1), 257);
  ck_assert_uint_eq (bitmap_bits_end (8), 257);
  ck_assert_uint_eq (bitmap_bits_end (9), 258);
  ck_assert_uint_eq (bitmap_bits_end (1ull << 21), 256 + 262144);
  for (uint64_t n = 1; n < 100000; n += 997) {
    ck_assert_uint_gt (bitmap_bits_end (n), bitmap_bit_byte (n - 1));
    ck_assert_uint_le (bitmap_bits_end (n), bitmap_file_size (n));
  }
}
END_TEST

START_TEST (test_state_name_is_mdadms)
{
  ck_assert_str_eq (bitmap_state_name (0), "OK");
  ck_assert_str_eq (bitmap_state_name (BITMAP_STATE_STALE), "Out of date");
}
END_TEST

/* ================= the write-intent protocol ================= */

#define C64K (64ull << 10)

START_TEST (test_write_straddling_a_chunk_boundary_sets_both_bits_durably)
{
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, 16 * C64K, C64K);
  unsigned long syncs = mem_syncs (io);
  ck_assert_int_eq (bitmap_start_write (bm, 3 * C64K - 512, 1024), 0);
  /* Exactly bits 2 and 3, in the file... */
  size_t len;
  unsigned char *d = io_mem_data (io, &len);
  ck_assert_uint_eq (d[256], 0x0c);
  ck_assert_uint_eq (d[257], 0x00);
  /* ... and synced after they were written. */
  ck_assert_uint_gt (mem_syncs (io), syncs);
  ck_assert (durable_bit (io, 2));
  ck_assert (durable_bit (io, 3));
  size_t last_write = SIZE_MAX, last_sync = SIZE_MAX;
  for (size_t i = 0; i < io_log_count (tlog); i++) {
    const struct io_log_entry *e = io_log_get (tlog, i);
    if (e->kind == IO_LOG_WRITE && e->off <= 256 && e->off + e->len > 256)
      last_write = i;
    if (e->kind == IO_LOG_SYNC)
      last_sync = i;
  }
  ck_assert_uint_ne (last_write, SIZE_MAX);
  ck_assert_uint_ne (last_sync, SIZE_MAX);
  ck_assert_uint_gt (last_sync, last_write);
  /* In memory too, and nothing else. */
  ck_assert (bitmap_test (bm, 2));
  ck_assert (bitmap_test (bm, 3));
  ck_assert (!bitmap_test (bm, 1));
  ck_assert (!bitmap_test (bm, 4));
  ck_assert_uint_eq (bitmap_dirty_count (bm), 2);
  bitmap_end_write (bm, 3 * C64K - 512, 1024);
  bm_done (bm, io);
}
END_TEST

START_TEST (test_write_straddling_a_page_boundary_makes_both_pages_durable)
{
  /* 4 KiB chunks: chunk 30719 is the last bit of page 0, 30720 the first
   * of page 1. */
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, 40000ull * 4096, 4096);
  ck_assert_uint_eq (bitmap_bit_byte (30719) / 4096, 0);
  ck_assert_uint_eq (bitmap_bit_byte (30720) / 4096, 1);
  ck_assert_int_eq (bitmap_start_write (bm, 30719ull * 4096, 8192), 0);
  ck_assert (durable_bit (io, 30719));
  ck_assert (durable_bit (io, 30720));
  ck_assert (!durable_bit (io, 30718));
  ck_assert (!durable_bit (io, 30721));
  ck_assert_uint_eq (bitmap_dirty_count (bm), 2);
  bitmap_end_write (bm, 30719ull * 4096, 8192);
  bm_done (bm, io);
}
END_TEST

START_TEST (test_write_covering_the_last_partial_chunk_sets_only_the_last_bit)
{
  /* 10 whole chunks and a partial 11th of 16 KiB. */
  uint64_t vol = 10 * C64K + (16 << 10);
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, vol, C64K);
  ck_assert_uint_eq (bitmap_nchunks (bm), 11);
  ck_assert_int_eq (bitmap_start_write (bm, 10 * C64K, 16 << 10), 0);
  size_t len;
  unsigned char *d = io_mem_data (io, &len);
  ck_assert_uint_eq (d[256], 0x00);
  ck_assert_uint_eq (d[257], 0x04);     /* bit 10 only; no padding bit */
  for (size_t b = 258; b < len; b++)
    ck_assert_uint_eq (d[b], 0);
  ck_assert (durable_bit (io, 10));
  ck_assert_uint_eq (bitmap_dirty_count (bm), 1);
  bitmap_end_write (bm, 10 * C64K, 16 << 10);

  /* Its last 4 KiB block alone: the same single bit. */
  ck_assert_int_eq (bitmap_start_write (bm, vol - 4096, 4096), 0);
  ck_assert_uint_eq (d[256], 0x00);
  ck_assert_uint_eq (d[257], 0x04);
  bitmap_end_write (bm, vol - 4096, 4096);
  bm_done (bm, io);
}
END_TEST

START_TEST (test_write_to_a_durable_bit_needs_no_flush)
{
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, 16 * C64K, C64K);
  ck_assert_int_eq (bitmap_start_write (bm, 5 * C64K, 4096), 0);
  bitmap_end_write (bm, 5 * C64K, 4096);
  unsigned long syncs = mem_syncs (io), pw = io_mem_stats_now (io).pwrites;
  uint64_t flushes = bitmap_flush_count (bm);
  ck_assert_int_eq (bitmap_start_write (bm, 5 * C64K + 8192, 4096), 0);
  ck_assert_uint_eq (mem_syncs (io), syncs);
  ck_assert_uint_eq (io_mem_stats_now (io).pwrites, pw);
  ck_assert_uint_eq (bitmap_flush_count (bm), flushes);
  bitmap_end_write (bm, 5 * C64K + 8192, 4096);
  bm_done (bm, io);
}
END_TEST

struct writer_arg {
  struct bitmap *bm;
  uint64_t off, len;
  pthread_barrier_t *barrier;
  int result;
};

static void *
writer (void *p)
{
  struct writer_arg *a = p;
  if (a->barrier)
    pthread_barrier_wait (a->barrier);
  a->result = bitmap_start_write (a->bm, a->off, a->len);
  return NULL;
}

START_TEST (test_writer_finding_its_bit_set_but_not_durable_waits_for_the_flush)
{
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, 16 * C64K, C64K);
  io_mem_stats (io)->sync_delay_ms = 250;
  struct writer_arg a = { bm, 1 * C64K, 4096, NULL, -1 };
  pthread_t t;
  ck_assert_int_eq (pthread_create (&t, NULL, writer, &a), 0);
  /* Wait until the first writer's page is written but not yet synced. */
  for (int i = 0; i < 1000; i++) {
    unsigned long pw = io_mem_stats_now (io).pwrites;
    if (pw > 0)
      break;
    sleep_ms (1);
  }
  ck_assert (file_bit (io, 1));
  ck_assert (!durable_bit (io, 1));
  /* The bit is set in memory already; this writer must still wait. */
  ck_assert_int_eq (bitmap_start_write (bm, 1 * C64K + 8192, 4096), 0);
  ck_assert (durable_bit (io, 1));
  pthread_join (t, NULL);
  ck_assert_int_eq (a.result, 0);
  bitmap_end_write (bm, 1 * C64K, 4096);
  bitmap_end_write (bm, 1 * C64K + 8192, 4096);
  bm_done (bm, io);
}
END_TEST

START_TEST (test_concurrent_writers_share_flushes)
{
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, 64 * C64K, C64K);
  io_mem_stats (io)->sync_delay_ms = 20;
  enum { N = 8 };
  pthread_barrier_t barrier;
  pthread_barrier_init (&barrier, NULL, N);
  struct writer_arg a[N];
  pthread_t t[N];
  for (int i = 0; i < N; i++) {
    a[i] = (struct writer_arg) { bm, (uint64_t) (3 + 5 * i) * C64K, 4096,
                                 &barrier, -1 };
    ck_assert_int_eq (pthread_create (&t[i], NULL, writer, &a[i]), 0);
  }
  for (int i = 0; i < N; i++)
    pthread_join (t[i], NULL);
  pthread_barrier_destroy (&barrier);
  for (int i = 0; i < N; i++) {
    ck_assert_int_eq (a[i].result, 0);
    ck_assert_msg (durable_bit (io, 3 + 5 * (uint64_t) i),
                   "bit %d not durable", 3 + 5 * i);
  }
  uint64_t flushes = bitmap_flush_count (bm);
  ck_assert_uint_ge (flushes, 1);
  ck_assert_msg (flushes <= 3, "%llu flushes for 8 concurrent writers",
                 (unsigned long long) flushes);
  ck_assert_uint_le (mem_syncs (io), 3);
  ck_assert_uint_eq (bitmap_dirty_count (bm), N);
  for (int i = 0; i < N; i++)
    bitmap_end_write (bm, a[i].off, a[i].len);
  bm_done (bm, io);
}
END_TEST

START_TEST (test_failed_bitmap_write_fails_the_write_and_sticks)
{
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, 16 * C64K, C64K);
  ck_assert_int_eq (bitmap_failed (bm), 0);
  io_mem_stats (io)->fail_pwrite = -EIO;
  ck_assert_int_eq (bitmap_start_write (bm, 2 * C64K, 4096), -EIO);
  bitmap_end_write (bm, 2 * C64K, 4096);
  ck_assert_int_eq (bitmap_failed (bm), -EIO);
  /* The bitmap is abandoned: later writes are told so too. */
  io_mem_stats (io)->fail_pwrite = 0;
  ck_assert_int_eq (bitmap_start_write (bm, 6 * C64K, 4096), -EIO);
  bitmap_end_write (bm, 6 * C64K, 4096);
  ck_assert_int_eq (bitmap_failed (bm), -EIO);
  bm_done (bm, io);
}
END_TEST

START_TEST (test_failed_bitmap_sync_fails_the_write)
{
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, 16 * C64K, C64K);
  io_mem_stats (io)->fail_fdatasync = -EIO;
  ck_assert_int_eq (bitmap_start_write (bm, 2 * C64K, 4096), -EIO);
  bitmap_end_write (bm, 2 * C64K, 4096);
  ck_assert_int_eq (bitmap_failed (bm), -EIO);
  bm_done (bm, io);
}
END_TEST

/* ---- lazy clearing ---- */

struct sync_probe {
  struct bitmap *bm;
  struct io_file *io;
  uint64_t chunk;
  int calls;
  int result;
  bool bit_set_in_memory, bit_set_in_file;
  size_t log_pos;
};

static int
sync_members_probe (void *p)
{
  struct sync_probe *s = p;
  s->calls++;
  s->bit_set_in_memory = bitmap_test (s->bm, s->chunk);
  s->bit_set_in_file = file_bit (s->io, s->chunk);
  s->log_pos = io_log_count (tlog);
  io_log_mark (tlog, 0, 0, 0, NULL);
  return s->result;
}

static int
sync_ok (void *p)
{
  int *calls = p;
  if (calls)
    (*calls)++;
  return 0;
}

START_TEST (test_chunk_with_a_write_in_flight_is_not_cleared)
{
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, 16 * C64K, C64K);
  ck_assert_int_eq (bitmap_start_write (bm, 5 * C64K, 100), 0);
  ck_assert_int_eq (bitmap_start_write (bm, 5 * C64K + 50, C64K - 50), 0);
  bitmap_end_write (bm, 5 * C64K, 100);
  for (int pass = 0; pass < 3; pass++) {
    ck_assert_int_eq (bitmap_clear_pass (bm, sync_ok, NULL), 0);
    ck_assert (bitmap_test (bm, 5));
    ck_assert (file_bit (io, 5));
  }
  bitmap_end_write (bm, 5 * C64K + 50, C64K - 50);
  bm_done (bm, io);
}
END_TEST

START_TEST (test_completed_chunk_is_cleared_only_after_a_whole_idle_pass)
{
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, 16 * C64K, C64K);
  ck_assert_int_eq (bitmap_start_write (bm, 5 * C64K, 100), 0);
  ck_assert_int_eq (bitmap_start_write (bm, 5 * C64K + 50, C64K - 50), 0);
  bitmap_end_write (bm, 5 * C64K, 100);
  ck_assert_int_eq (bitmap_clear_pass (bm, sync_ok, NULL), 0);
  bitmap_end_write (bm, 5 * C64K + 50, C64K - 50);
  /* First pass after the last completion: not idle a whole pass yet. */
  ck_assert_int_eq (bitmap_clear_pass (bm, sync_ok, NULL), 0);
  ck_assert (bitmap_test (bm, 5));
  ck_assert (file_bit (io, 5));
  ck_assert_uint_eq (bitmap_dirty_count (bm), 1);
  /* The following pass clears it, in memory and durably. */
  ck_assert_int_eq (bitmap_clear_pass (bm, sync_ok, NULL), 1);
  ck_assert (!bitmap_test (bm, 5));
  ck_assert (!file_bit (io, 5));
  ck_assert (!durable_bit (io, 5));
  ck_assert_uint_eq (bitmap_dirty_count (bm), 0);
  bm_done (bm, io);
}
END_TEST

START_TEST (test_written_chunk_survives_the_first_pass_after_its_write)
{
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, 16 * C64K, C64K);
  ck_assert_int_eq (bitmap_start_write (bm, 9 * C64K, 4096), 0);
  bitmap_end_write (bm, 9 * C64K, 4096);
  ck_assert_int_eq (bitmap_clear_pass (bm, sync_ok, NULL), 0);
  ck_assert (bitmap_test (bm, 9));
  ck_assert_int_eq (bitmap_clear_pass (bm, sync_ok, NULL), 1);
  ck_assert (!bitmap_test (bm, 9));
  bm_done (bm, io);
}
END_TEST

START_TEST (test_pass_with_nothing_to_clear_does_not_sync_the_members)
{
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, 16 * C64K, C64K);
  int calls = 0;
  /* A write in flight on chunk 7 through every pass, and chunk 2 written
   * again before each (steady writes): nothing is ever idle a whole pass,
   * so no pass syncs the members. */
  ck_assert_int_eq (bitmap_start_write (bm, 7 * C64K, 4096), 0);
  for (int pass = 0; pass < 4; pass++) {
    ck_assert_int_eq (bitmap_start_write (bm, 2 * C64K, 4096), 0);
    bitmap_end_write (bm, 2 * C64K, 4096);
    ck_assert_int_eq (bitmap_clear_pass (bm, sync_ok, &calls), 0);
    ck_assert_int_eq (calls, 0);
    ck_assert (bitmap_test (bm, 2));
    ck_assert (bitmap_test (bm, 7));
  }
  bitmap_end_write (bm, 7 * C64K, 4096);
  /* Left alone: chunk 2 is idle a whole pass at the next one, which syncs
   * once and clears it; chunk 7, just completed, waits one more pass. */
  ck_assert_int_eq (bitmap_clear_pass (bm, sync_ok, &calls), 1);
  ck_assert_int_eq (calls, 1);
  ck_assert (!bitmap_test (bm, 2));
  ck_assert (!file_bit (io, 2));
  ck_assert (bitmap_test (bm, 7));
  ck_assert_int_eq (bitmap_clear_pass (bm, sync_ok, &calls), 1);
  ck_assert_int_eq (calls, 2);
  ck_assert_uint_eq (bitmap_dirty_count (bm), 0);
  /* Nothing dirty: no sync. */
  ck_assert_int_eq (bitmap_clear_pass (bm, sync_ok, &calls), 0);
  ck_assert_int_eq (calls, 2);
  bm_done (bm, io);
}
END_TEST

START_TEST (test_clear_pass_makes_events_cleared_durable_before_the_cleared_page)
{
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, 16 * C64K, C64K);
  bitmap_set_events (bm, 42);
  ck_assert_int_eq (bitmap_start_write (bm, 3 * C64K, 4096), 0);
  bitmap_end_write (bm, 3 * C64K, 4096);
  ck_assert_int_eq (bitmap_clear_pass (bm, sync_ok, NULL), 0);
  io_log_reset (tlog);
  ck_assert_int_eq (bitmap_clear_pass (bm, sync_ok, NULL), 1);

  size_t hdr = SIZE_MAX, hdr_sync = SIZE_MAX, page = SIZE_MAX;
  uint64_t bit = bitmap_bit_byte (3);
  size_t n = io_log_count (tlog);
  for (size_t i = 0; i < n; i++) {
    const struct io_log_entry *e = io_log_get (tlog, i);
    if (e->kind == IO_LOG_WRITE && e->off == 0 && e->len >= 256
        && hdr == SIZE_MAX && get64 (e->data, 32) == 42)
      hdr = i;
    if (e->kind == IO_LOG_SYNC && hdr != SIZE_MAX && hdr_sync == SIZE_MAX)
      hdr_sync = i;
    if (e->kind == IO_LOG_WRITE && e->off <= bit && e->off + e->len > bit
        && !(e->data[bit - e->off] & bitmap_bit_mask (3)) && page == SIZE_MAX)
      page = i;
  }
  ck_assert_msg (hdr != SIZE_MAX, "no header write with events_cleared 42");
  ck_assert_msg (page != SIZE_MAX, "no write of the cleared page");
  ck_assert_msg (hdr_sync != SIZE_MAX, "header never synced");
  ck_assert_msg (hdr < hdr_sync && hdr_sync < page,
                 "header write #%zu, its sync #%zu, cleared page #%zu",
                 hdr, hdr_sync, page);
  /* The cleared page was synced too. */
  ck_assert_uint_eq (io_log_get (tlog, n - 1)->kind, IO_LOG_SYNC);
  ck_assert (!durable_bit (io, 3));
  ck_assert_uint_eq (get64 (durable (io, NULL), 32), 42);
  ck_assert_uint_eq (get64 (durable (io, NULL), 24), 42);
  struct bitmap_header h;
  char why[160] = "";
  ck_assert_msg (bitmap_header_decode (durable (io, NULL), &h, why, sizeof why)
                 == BITMAP_HEADER_OK, "%s", why);
  ck_assert_uint_eq (h.events_cleared, 42);
  bm_done (bm, io);
}
END_TEST

START_TEST (test_members_are_synced_before_anything_is_cleared)
{
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, 16 * C64K, C64K);
  ck_assert_int_eq (bitmap_start_write (bm, 3 * C64K, 4096), 0);
  bitmap_end_write (bm, 3 * C64K, 4096);
  ck_assert_int_eq (bitmap_clear_pass (bm, sync_ok, NULL), 0);
  io_log_reset (tlog);
  struct sync_probe s = { bm, io, 3, 0, 0, false, false, 0 };
  ck_assert_int_eq (bitmap_clear_pass (bm, sync_members_probe, &s), 1);
  ck_assert_int_eq (s.calls, 1);
  ck_assert (s.bit_set_in_memory);
  ck_assert (s.bit_set_in_file);
  ck_assert_uint_eq (s.log_pos, 0);     /* nothing written before it */
  ck_assert_uint_gt (io_log_count (tlog), 1);
  ck_assert_uint_eq (io_log_get (tlog, 0)->kind, IO_LOG_MARK);
  ck_assert (!bitmap_test (bm, 3));
  bm_done (bm, io);
}
END_TEST

START_TEST (test_failing_member_sync_clears_nothing)
{
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, 16 * C64K, C64K);
  ck_assert_int_eq (bitmap_start_write (bm, 3 * C64K, 4096), 0);
  bitmap_end_write (bm, 3 * C64K, 4096);
  ck_assert_int_eq (bitmap_clear_pass (bm, sync_ok, NULL), 0);
  io_log_reset (tlog);
  unsigned long syncs = mem_syncs (io);
  struct sync_probe s = { bm, io, 3, 0, -EIO, false, false, 0 };
  ck_assert_int_eq (bitmap_clear_pass (bm, sync_members_probe, &s), -EIO);
  ck_assert_int_eq (s.calls, 1);
  ck_assert (bitmap_test (bm, 3));
  ck_assert (file_bit (io, 3));
  ck_assert (durable_bit (io, 3));
  ck_assert_uint_eq (bitmap_dirty_count (bm), 1);
  ck_assert_uint_eq (mem_syncs (io), syncs);
  for (size_t i = 0; i < io_log_count (tlog); i++)
    ck_assert_msg (io_log_get (tlog, i)->kind != IO_LOG_WRITE,
                   "a write after a failed sync");
  /* events_cleared untouched, in memory and on disk. */
  struct bitmap_header h;
  bitmap_get_header (bm, &h);
  ck_assert_uint_eq (h.events_cleared, 7);
  size_t len;
  ck_assert_uint_eq (get64 (io_mem_data (io, &len), 32), 7);
  bm_done (bm, io);
}
END_TEST

START_TEST (test_no_clearing_while_clearing_is_not_allowed)
{
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, 16 * C64K, C64K);
  ck_assert_int_eq (bitmap_start_write (bm, 3 * C64K, 4096), 0);
  bitmap_end_write (bm, 3 * C64K, 4096);
  bitmap_allow_clearing (bm, false);
  int calls = 0;
  for (int i = 0; i < 4; i++)
    ck_assert_int_eq (bitmap_clear_pass (bm, sync_ok, &calls), 0);
  ck_assert (bitmap_test (bm, 3));
  ck_assert (file_bit (io, 3));
  /* Allowed again: idle chunks are cleared (within two passes). */
  bitmap_allow_clearing (bm, true);
  int64_t cleared = bitmap_clear_pass (bm, sync_ok, &calls);
  cleared += bitmap_clear_pass (bm, sync_ok, &calls);
  ck_assert_int_eq (cleared, 1);
  ck_assert (!bitmap_test (bm, 3));
  ck_assert (!file_bit (io, 3));
  bm_done (bm, io);
}
END_TEST

START_TEST (test_failed_bitmap_clears_nothing)
{
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, 16 * C64K, C64K);
  ck_assert_int_eq (bitmap_start_write (bm, 3 * C64K, 4096), 0);
  bitmap_end_write (bm, 3 * C64K, 4096);
  io_mem_stats (io)->fail_pwrite = -EIO;
  ck_assert_int_eq (bitmap_start_write (bm, 4 * C64K, 4096), -EIO);
  bitmap_end_write (bm, 4 * C64K, 4096);
  io_mem_stats (io)->fail_pwrite = 0;
  for (int i = 0; i < 3; i++)
    ck_assert_int_lt (bitmap_clear_pass (bm, sync_ok, NULL), 0);
  ck_assert (bitmap_test (bm, 3));
  ck_assert (file_bit (io, 3));
  bm_done (bm, io);
}
END_TEST

/* ---- resync support and queries ---- */

START_TEST (test_set_all_sets_every_chunk_durably_and_no_padding)
{
  uint64_t vol = 10 * C64K + (16 << 10);        /* 11 chunks */
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, vol, C64K);
  unsigned long syncs = mem_syncs (io);
  ck_assert_int_eq (bitmap_set_all (bm), 0);
  ck_assert_uint_gt (mem_syncs (io), syncs);
  ck_assert_uint_eq (bitmap_dirty_count (bm), 11);
  size_t dlen;
  const uint8_t *d = durable (io, &dlen);
  ck_assert_uint_eq (d[256], 0xff);
  ck_assert_uint_eq (d[257], 0x07);
  for (size_t b = 258; b < dlen; b++)
    ck_assert_uint_eq (d[b], 0);
  ck_assert_uint_eq (bitmap_count_dirty (d, 11), 11);
  for (uint64_t c = 0; c < 11; c++)
    ck_assert (bitmap_test (bm, c));
  ck_assert (!bitmap_test (bm, 11));
  bm_done (bm, io);
}
END_TEST

START_TEST (test_clear_range_clears_idle_chunks_durably_and_keeps_busy_ones)
{
  uint64_t vol = 10 * C64K + (16 << 10);        /* 11 chunks */
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, vol, C64K);
  ck_assert_int_eq (bitmap_set_all (bm), 0);
  ck_assert_int_eq (bitmap_start_write (bm, 4 * C64K, 4096), 0);      /* busy */
  ck_assert_int_eq (bitmap_clear_range (bm, 2, 5), 0);
  for (uint64_t c = 0; c < 11; c++) {
    bool want = !(c == 2 || c == 3 || c == 5 || c == 6);
    ck_assert_msg (bitmap_test (bm, c) == want, "chunk %llu in memory",
                   (unsigned long long) c);
    ck_assert_msg (durable_bit (io, c) == want, "chunk %llu on disk",
                   (unsigned long long) c);
  }
  ck_assert_uint_eq (bitmap_dirty_count (bm), 7);
  bitmap_end_write (bm, 4 * C64K, 4096);
  /* A range past the end is cut at the last chunk. */
  ck_assert_int_eq (bitmap_clear_range (bm, 9, 100), 0);
  ck_assert (!bitmap_test (bm, 9));
  ck_assert (!bitmap_test (bm, 10));
  ck_assert (!durable_bit (io, 10));
  ck_assert_uint_eq (bitmap_dirty_count (bm), 5);
  ck_assert_uint_eq (bitmap_count_dirty (durable (io, NULL), 11), 5);
  bm_done (bm, io);
}
END_TEST

START_TEST (test_next_dirty_finds_the_next_set_chunk)
{
  uint64_t vol = 45 * C64K;
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, vol, C64K);
  ck_assert_uint_eq (bitmap_next_dirty (bm, 0), 45);    /* none */
  static const uint64_t set[] = { 0, 9, 17, 32, 40, 44 };
  for (size_t i = 0; i < 6; i++) {
    ck_assert_int_eq (bitmap_start_write (bm, set[i] * C64K, 512), 0);
    bitmap_end_write (bm, set[i] * C64K, 512);
  }
  ck_assert_uint_eq (bitmap_next_dirty (bm, 0), 0);
  ck_assert_uint_eq (bitmap_next_dirty (bm, 1), 9);
  ck_assert_uint_eq (bitmap_next_dirty (bm, 8), 9);
  ck_assert_uint_eq (bitmap_next_dirty (bm, 9), 9);
  ck_assert_uint_eq (bitmap_next_dirty (bm, 10), 17);
  ck_assert_uint_eq (bitmap_next_dirty (bm, 18), 32);  /* past a clean byte */
  ck_assert_uint_eq (bitmap_next_dirty (bm, 24), 32);
  ck_assert_uint_eq (bitmap_next_dirty (bm, 33), 40);
  ck_assert_uint_eq (bitmap_next_dirty (bm, 41), 44);
  ck_assert_uint_eq (bitmap_next_dirty (bm, 45), 45);
  ck_assert_uint_eq (bitmap_next_dirty (bm, 1000), 45);
  ck_assert_uint_eq (bitmap_dirty_count (bm), 6);
  /* Walking from 0 visits exactly the set chunks. */
  size_t k = 0;
  for (uint64_t c = bitmap_next_dirty (bm, 0); c < 45;
       c = bitmap_next_dirty (bm, c + 1))
    ck_assert_uint_eq (c, set[k++]);
  ck_assert_uint_eq (k, 6);
  bm_done (bm, io);
}
END_TEST

START_TEST (test_loaded_bits_count_and_padding_bits_are_dropped)
{
  /* A file image with chunk 2 dirty and every padding bit set. */
  uint64_t vol = 10 * C64K + (16 << 10);        /* 11 chunks */
  struct bitmap_header h = header_for (vol, C64K);
  uint64_t size = bitmap_file_size (11);
  uint8_t *buf = calloc (1, size);
  memset (buf + 256, 0xff, size - 256);
  buf[256] = 0x04;
  buf[257] = 0xf8;                      /* chunks 8..10 clean, 11..15 padding */
  struct io_file *io = logged_new ("loaded.bitmap", NULL, 0);
  struct bitmap *bm = bitmap_new (io, &h, buf, vol);
  ck_assert_ptr_nonnull (bm);
  ck_assert_uint_eq (bitmap_nchunks (bm), 11);
  ck_assert_uint_eq (bitmap_chunk_size (bm), C64K);
  ck_assert_uint_eq (bitmap_dirty_count (bm), 1);
  ck_assert (bitmap_test (bm, 2));
  ck_assert (!bitmap_test (bm, 3));
  ck_assert (!bitmap_test (bm, 11));
  ck_assert_uint_eq (bitmap_next_dirty (bm, 3), 11);
  ck_assert_str_eq (bitmap_name (bm), "loaded.bitmap");
  /* set_all then writes no padding bit. */
  ck_assert_int_eq (io_mem_truncate (io, size), 0);
  ck_assert_int_eq (bitmap_set_all (bm), 0);
  ck_assert_uint_eq (durable (io, NULL)[257], 0x07);
  ck_assert_uint_eq (durable (io, NULL)[258], 0x00);
  bm_done (bm, io);
}
END_TEST

START_TEST (test_write_header_makes_the_header_durable)
{
  struct io_file *io;
  struct bitmap *bm = bm_make (&io, 16 * C64K, C64K);
  bitmap_set_events (bm, 77);
  bitmap_set_events_cleared (bm, 70);
  bitmap_set_stale (bm, true);
  ck_assert_int_eq (bitmap_write_header (bm), 0);
  struct bitmap_header h;
  char why[160] = "";
  ck_assert_msg (bitmap_header_decode (durable (io, NULL), &h, why, sizeof why)
                 == BITMAP_HEADER_OK, "%s", why);
  ck_assert_uint_eq (h.events, 77);
  ck_assert_uint_eq (h.events_cleared, 70);
  ck_assert_uint_eq (h.state, BITMAP_STATE_STALE);
  bitmap_set_stale (bm, false);
  ck_assert_int_eq (bitmap_write_header (bm), 0);
  ck_assert_int_eq (bitmap_header_decode (durable (io, NULL), &h, why, sizeof why),
                    BITMAP_HEADER_OK);
  ck_assert_uint_eq (h.state, 0);
  bm_done (bm, io);
}
END_TEST

static Suite *
bitmap_suite (void)
{
  Suite *s = suite_create ("bitmap");
  TCase *tc = tcase_create ("format");
  tcase_add_test (tc, test_header_struct_has_the_md_offsets);
  tcase_add_test (tc, test_header_encode_writes_md_bytes_and_xxh64);
  tcase_add_test (tc, test_header_round_trips_every_field);
  tcase_add_test (tc, test_flipped_covered_byte_is_bad_checksum_with_fields_decoded);
  tcase_add_test (tc, test_wrong_magic_or_version_is_foreign);
  tcase_add_test (tc, test_state_other_than_ok_or_stale_is_invalid);
  tcase_add_test (tc, test_write_behind_past_md_limit_is_invalid);
  tcase_add_test (tc, test_chunk_not_a_power_of_two_in_range_is_invalid);
  tcase_add_test (tc, test_bit_addressing_at_chunk_boundaries);
  tcase_add_test (tc, test_a_write_to_chunk_i_sets_exactly_bit_i_of_the_file);
  tcase_add_test (tc, test_chunk_count_includes_a_last_partial_chunk);
  tcase_add_test (tc, test_file_size_is_header_plus_bits_padded_to_4k);
  tcase_add_test (tc, test_default_chunk_is_4m_doubled_past_2_21_bits);
  tcase_add_test (tc, test_count_dirty_ignores_padding_bits);
  tcase_add_test (tc, test_bit_test_reads_the_bit_of_a_whole_file_buffer);
  tcase_add_test (tc, test_bits_end_is_header_plus_bits_unpadded);
  tcase_add_test (tc, test_state_name_is_mdadms);
  suite_add_tcase (s, tc);

  tc = tcase_create ("intent");
  tcase_set_timeout (tc, 30);
  tcase_add_test (tc, test_write_straddling_a_chunk_boundary_sets_both_bits_durably);
  tcase_add_test (tc, test_write_straddling_a_page_boundary_makes_both_pages_durable);
  tcase_add_test (tc, test_write_covering_the_last_partial_chunk_sets_only_the_last_bit);
  tcase_add_test (tc, test_write_to_a_durable_bit_needs_no_flush);
  tcase_add_test (tc, test_writer_finding_its_bit_set_but_not_durable_waits_for_the_flush);
  tcase_add_test (tc, test_concurrent_writers_share_flushes);
  tcase_add_test (tc, test_failed_bitmap_write_fails_the_write_and_sticks);
  tcase_add_test (tc, test_failed_bitmap_sync_fails_the_write);
  suite_add_tcase (s, tc);

  tc = tcase_create ("clearing");
  tcase_add_test (tc, test_chunk_with_a_write_in_flight_is_not_cleared);
  tcase_add_test (tc, test_completed_chunk_is_cleared_only_after_a_whole_idle_pass);
  tcase_add_test (tc, test_written_chunk_survives_the_first_pass_after_its_write);
  tcase_add_test (tc, test_pass_with_nothing_to_clear_does_not_sync_the_members);
  tcase_add_test (tc, test_clear_pass_makes_events_cleared_durable_before_the_cleared_page);
  tcase_add_test (tc, test_members_are_synced_before_anything_is_cleared);
  tcase_add_test (tc, test_failing_member_sync_clears_nothing);
  tcase_add_test (tc, test_no_clearing_while_clearing_is_not_allowed);
  tcase_add_test (tc, test_failed_bitmap_clears_nothing);
  suite_add_tcase (s, tc);

  tc = tcase_create ("resync");
  tcase_add_test (tc, test_set_all_sets_every_chunk_durably_and_no_padding);
  tcase_add_test (tc, test_clear_range_clears_idle_chunks_durably_and_keeps_busy_ones);
  tcase_add_test (tc, test_next_dirty_finds_the_next_set_chunk);
  tcase_add_test (tc, test_loaded_bits_count_and_padding_bits_are_dropped);
  tcase_add_test (tc, test_write_header_makes_the_header_durable);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (bitmap_suite ());
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
