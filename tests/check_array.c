/* The array over in-memory files: the write-intent ordering, resync,
 * clean shutdown and the fault rules of SPEC §4-6. */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bitmap/bitmap_format.h"
#include "core/array.h"
#include "core/create.h"
#include "common/log.h"
#include "core/member.h"
#include "core/superblock.h"
#include "tests/io_mem.h"

#define VOL (16ull << 20)
#define CHUNK (1ull << 20)
#define NCHUNKS (VOL / CHUNK)

struct fixture {
  size_t n;
  struct io_file *mem[4];       /* the test's own handles on the buffers */
  struct io_file *bmem;
  struct io_log *log;           /* with fx_log: the files' writes, syncs */
  int log_m[4], log_bm;         /* their indices in it */
};

/* N members and a bitmap, as mdfusectl create makes them; WM (or NULL)
 * says which are write-mostly, WB is the bitmap's write_behind. */
static void
fx_create_wm (struct fixture *fx, size_t n, const bool *wm, uint32_t wb)
{
  memset (fx, 0, sizeof *fx);
  fx->n = n;
  for (size_t i = 0; i < n; i++) {
    char name[8];
    snprintf (name, sizeof name, "m%zu", i);
    fx->mem[i] = io_mem_new (name);
  }
  fx->bmem = io_mem_new ("bm");
  struct create_options o = { .volume_bytes = VOL, .chunk = CHUNK,
                              .daemon_sleep = 5, .write_mostly = wm,
                              .write_behind = wb };
  ck_assert_int_eq (create_array_on (&o, fx->mem, n, fx->bmem), 0);
}

static void
fx_create (struct fixture *fx, size_t n)
{
  fx_create_wm (fx, n, NULL, 0);
}

static struct array *
fx_assemble (struct fixture *fx, const struct array_options *opts)
{
  struct io_file *m[4];
  for (size_t i = 0; i < fx->n; i++)
    m[i] = io_mem_reopen (fx->mem[i]);
  struct array_options none = { 0 };
  if (fx->log)
    io_log_reset (fx->log);
  return array_assemble (m, fx->n, io_mem_reopen (fx->bmem),
                         opts ? opts : &none);
}

/* Log the files' writes and syncs from now on (into fx->log). */
static void
fx_log (struct fixture *fx)
{
  fx->log = io_log_new (false);
  for (size_t i = 0; i < fx->n; i++)
    fx->log_m[i] = io_log_attach (fx->log, fx->mem[i]);
  fx->log_bm = io_log_attach (fx->log, fx->bmem);
}

static void
fx_free (struct fixture *fx)
{
  io_log_free (fx->log);
  for (size_t i = 0; i < fx->n; i++)
    io_close (fx->mem[i]);
  io_close (fx->bmem);
}

static struct md_sb
member_sb (struct fixture *fx, size_t i)
{
  struct member_probe p;
  ck_assert_int_eq (member_probe (fx->mem[i], &p), 0);
  ck_assert_int_eq (p.status, SB_VALID);
  return p.sb;
}

static struct bitmap_header
disk_header (struct fixture *fx)
{
  size_t len;
  uint8_t *d = io_mem_data (fx->bmem, &len);
  struct bitmap_header h;
  char why[200];
  ck_assert_int_eq (bitmap_header_decode (d, &h, why, sizeof why),
                    BITMAP_HEADER_OK);
  return h;
}

static bool
disk_bit (struct fixture *fx, uint64_t chunk)
{
  size_t len;
  uint8_t *d = io_mem_data (fx->bmem, &len);
  return d[bitmap_bit_byte (chunk)] & bitmap_bit_mask (chunk);
}

static uint64_t
disk_dirty (struct fixture *fx)
{
  size_t len;
  uint8_t *d = io_mem_data (fx->bmem, &len);
  return bitmap_count_dirty (d, NCHUNKS);
}

static bool
members_identical (struct fixture *fx)
{
  size_t l0;
  uint8_t *d0 = io_mem_data (fx->mem[0], &l0);
  for (size_t i = 1; i < fx->n; i++) {
    size_t li;
    uint8_t *di = io_mem_data (fx->mem[i], &li);
    if (memcmp (d0, di, VOL) != 0)
      return false;
  }
  return true;
}

static void
fill (uint8_t *buf, size_t len, uint8_t seed)
{
  for (size_t i = 0; i < len; i++)
    buf[i] = (uint8_t) (seed + i * 7);
}

START_TEST (test_bit_durable_before_any_member_data_write)
{
  struct fixture fx;
  fx_create (&fx, 2);
  fx_log (&fx);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  io_log_reset (fx.log);

  /* Straddles chunks 3 and 4. */
  static uint8_t buf[8192];
  fill (buf, sizeof buf, 1);
  uint64_t off = 4 * CHUNK - 4096;
  ck_assert_int_eq (array_write (a, buf, sizeof buf, off), (ssize_t) sizeof buf);

  /* Find the first data write to a member; before it there must be a
   * bitmap write covering both bits, then a bitmap fdatasync. */
  size_t first_data = SIZE_MAX, bits_written = SIZE_MAX, bits_synced = SIZE_MAX;
  for (size_t i = 0; i < io_log_count (fx.log); i++) {
    const struct io_log_entry *e = io_log_get (fx.log, i);
    bool member = e->file == fx.log_m[0] || e->file == fx.log_m[1];
    if (member && e->kind == IO_LOG_WRITE && e->off < VOL) {
      first_data = i;
      break;
    }
    if (e->file == fx.log_bm && e->kind == IO_LOG_WRITE
        && e->off <= bitmap_bit_byte (3) && e->off + e->len > bitmap_bit_byte (4))
      bits_written = i;
    if (e->file == fx.log_bm && e->kind == IO_LOG_SYNC && bits_written != SIZE_MAX)
      bits_synced = i;
  }
  ck_assert_uint_ne (first_data, SIZE_MAX);
  ck_assert_uint_lt (bits_written, first_data);
  ck_assert_uint_lt (bits_synced, first_data);
  ck_assert (bits_written < bits_synced);
  ck_assert (disk_bit (&fx, 3) && disk_bit (&fx, 4));
  ck_assert (!disk_bit (&fx, 2) && !disk_bit (&fx, 5));

  /* And the superblocks said "active" (resync_offset 0) before that. */
  ck_assert_uint_eq (member_sb (&fx, 0).resync_offset, 0);

  ck_assert_int_eq (array_close (a, true), 0);
  fx_free (&fx);
}
END_TEST

START_TEST (test_clean_close_leaves_no_dirty_bit_and_clean_superblocks)
{
  struct fixture fx;
  fx_create (&fx, 2);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  static uint8_t buf[65536];
  fill (buf, sizeof buf, 3);
  for (uint64_t c = 0; c < NCHUNKS; c += 3)
    ck_assert_int_eq (array_write (a, buf, sizeof buf, c * CHUNK + 512),
                      (ssize_t) sizeof buf);
  ck_assert_uint_gt (disk_dirty (&fx), 0);
  ck_assert_int_eq (array_close (a, true), 0);

  ck_assert_uint_eq (disk_dirty (&fx), 0);
  struct md_sb s0 = member_sb (&fx, 0), s1 = member_sb (&fx, 1);
  struct bitmap_header h = disk_header (&fx);
  ck_assert_uint_eq (s0.events, s1.events);
  ck_assert_uint_eq (h.events, s0.events);
  ck_assert_uint_eq (h.events_cleared, s0.events);
  ck_assert_uint_eq (s0.resync_offset, SB_RESYNC_CLEAN);
  ck_assert (members_identical (&fx));

  /* The next mount copies nothing. */
  a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  struct array_resync_stats st;
  ck_assert_int_eq (array_resync (a, &st), 0);
  ck_assert_uint_eq (st.chunks_copied, 0);
  ck_assert_int_eq (array_close (a, true), 0);
  fx_free (&fx);
}
END_TEST

START_TEST (test_resync_copies_only_dirty_chunks)
{
  struct fixture fx;
  fx_create (&fx, 3);
  /* A crash left chunk 5 different on m2 and chunk 9 on m1; both bits set. */
  size_t len;
  io_mem_data (fx.mem[2], &len)[5 * CHUNK + 17] = 0x5a;
  io_mem_data (fx.mem[1], &len)[9 * CHUNK + 4095] = 0xa5;
  uint8_t *b = io_mem_data (fx.bmem, &len);
  b[bitmap_bit_byte (5)] |= bitmap_bit_mask (5);
  b[bitmap_bit_byte (9)] |= bitmap_bit_mask (9);
  ck_assert (!members_identical (&fx));

  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  struct array_resync_stats st;
  ck_assert_int_eq (array_resync (a, &st), 0);
  ck_assert_uint_eq (st.chunks_copied, 2);
  ck_assert_uint_eq (st.chunks_total, NCHUNKS);
  ck_assert_uint_eq (st.bytes_copied, 2 * CHUNK);
  ck_assert (members_identical (&fx));
  ck_assert_uint_eq (disk_dirty (&fx), 0);
  ck_assert_int_eq (array_close (a, true), 0);
  fx_free (&fx);
}
END_TEST

START_TEST (test_stale_bitmap_gives_full_resync)
{
  struct fixture fx;
  fx_create (&fx, 2);
  /* Members moved on (events 7) without the bitmap (events 1). */
  for (size_t i = 0; i < 2; i++) {
    struct md_sb s = member_sb (&fx, i);
    s.events = 7;
    ck_assert_int_eq (member_write_sb (fx.mem[i], &s), 0);
  }
  size_t len;
  io_mem_data (fx.mem[1], &len)[3 * CHUNK] = 0x77;

  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  /* Before resync, every bit is durably set and the header is not stale. */
  ck_assert_uint_eq (disk_dirty (&fx), NCHUNKS);
  ck_assert_uint_eq (disk_header (&fx).state, 0);
  struct array_resync_stats st;
  ck_assert_int_eq (array_resync (a, &st), 0);
  ck_assert_uint_eq (st.chunks_copied, NCHUNKS);
  ck_assert (st.full);
  ck_assert (members_identical (&fx));
  ck_assert_int_eq (array_close (a, true), 0);
  fx_free (&fx);
}
END_TEST

START_TEST (test_bitmap_failure_keeps_writes_and_makes_next_mount_full)
{
  struct fixture fx;
  fx_create (&fx, 2);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  static uint8_t buf[4096];
  fill (buf, sizeof buf, 9);
  ck_assert_int_eq (array_write (a, buf, sizeof buf, 0), 4096);

  io_mem_stats (fx.bmem)->fail_pwrite = -EIO;
  fill (buf, sizeof buf, 10);
  ck_assert_int_eq (array_write (a, buf, sizeof buf, 7 * CHUNK), 4096);
  /* The data is on both members. */
  size_t len;
  ck_assert_mem_eq (io_mem_data (fx.mem[0], &len) + 7 * CHUNK, buf, 4096);
  ck_assert_mem_eq (io_mem_data (fx.mem[1], &len) + 7 * CHUNK, buf, 4096);
  /* The members are ahead of the bitmap: stale by the events rule. */
  ck_assert_uint_gt (member_sb (&fx, 0).events, disk_header (&fx).events);
  ck_assert_int_eq (array_close (a, true), 0);
  ck_assert_uint_gt (member_sb (&fx, 0).events, disk_header (&fx).events);

  io_mem_stats (fx.bmem)->fail_pwrite = 0;
  a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  struct array_resync_stats st;
  ck_assert_int_eq (array_resync (a, &st), 0);
  ck_assert (st.full);
  ck_assert_uint_eq (st.chunks_copied, NCHUNKS);
  ck_assert_int_eq (array_close (a, true), 0);
  fx_free (&fx);
}
END_TEST

START_TEST (test_member_write_error_marks_it_faulty_and_bits_stay)
{
  struct fixture fx;
  fx_create (&fx, 2);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  io_mem_stats (fx.mem[1])->fail_pwrite = -EIO;
  static uint8_t buf[4096];
  fill (buf, sizeof buf, 11);
  ck_assert_int_eq (array_write (a, buf, sizeof buf, 2 * CHUNK), 4096);
  ck_assert_int_eq (array_member_state (a, 1), MEMBER_FAULTY);
  /* The survivor's superblock says so, durably, before the reply. */
  struct md_sb s0 = member_sb (&fx, 0);
  ck_assert_uint_eq (s0.dev_roles[1], SB_ROLE_FAULTY);
  ck_assert_uint_eq (s0.dev_roles[0], 0);
  /* Degraded: clearing passes clear nothing. */
  array_clear_pass (a);
  array_clear_pass (a);
  array_clear_pass (a);
  ck_assert (disk_bit (&fx, 2));
  ck_assert_int_eq (array_close (a, true), 0);
  ck_assert (disk_bit (&fx, 2));

  /* Next mount: m1 is behind and recovers the set bits only. */
  io_mem_stats (fx.mem[1])->fail_pwrite = 0;
  a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  ck_assert_int_eq (array_member_state (a, 1), MEMBER_RECOVERING);
  struct array_resync_stats st;
  ck_assert_int_eq (array_resync (a, &st), 0);
  ck_assert_uint_eq (st.chunks_copied, 1);
  ck_assert_int_eq (array_member_state (a, 1), MEMBER_ACTIVE);
  ck_assert (members_identical (&fx));
  ck_assert_int_eq (array_close (a, true), 0);
  ck_assert_uint_eq (disk_dirty (&fx), 0);
  ck_assert_uint_eq (member_sb (&fx, 1).events, member_sb (&fx, 0).events);
  fx_free (&fx);
}
END_TEST

START_TEST (test_last_member_error_is_eio_and_never_marked_faulty)
{
  struct fixture fx;
  fx_create (&fx, 2);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  static uint8_t buf[4096];
  io_mem_stats (fx.mem[1])->fail_pwrite = -EIO;
  ck_assert_int_eq (array_write (a, buf, sizeof buf, 0), 4096);
  io_mem_stats (fx.mem[0])->fail_pwrite = -EIO;
  ck_assert_int_eq (array_write (a, buf, sizeof buf, 0), -EIO);
  ck_assert_int_eq (array_member_state (a, 0), MEMBER_ACTIVE);
  io_mem_stats (fx.mem[0])->fail_pwrite = 0;
  ck_assert_int_eq (array_close (a, true), 0);
  fx_free (&fx);
}
END_TEST

START_TEST (test_write_past_end_is_enospc_and_reads_stop_at_end)
{
  struct fixture fx;
  fx_create (&fx, 2);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  static uint8_t buf[8192];
  ck_assert_int_eq (array_write (a, buf, 4096, VOL), -ENOSPC);
  ck_assert_int_eq (array_write (a, buf, 8192, VOL - 4096), 4096);
  ck_assert_int_eq (array_read (a, buf, 8192, VOL - 4096), 4096);
  ck_assert_int_eq (array_read (a, buf, 4096, VOL), 0);
  ck_assert_uint_eq (array_size (a), VOL);
  ck_assert_int_eq (array_close (a, true), 0);
  fx_free (&fx);
}
END_TEST

START_TEST (test_read_error_is_served_by_another_member)
{
  struct fixture fx;
  fx_create (&fx, 2);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  static uint8_t buf[4096], got[4096];
  fill (buf, sizeof buf, 42);
  ck_assert_int_eq (array_write (a, buf, sizeof buf, CHUNK), 4096);
  io_mem_stats (fx.mem[0])->fail_pread = -EIO;
  for (int i = 0; i < 4; i++) {
    memset (got, 0, sizeof got);
    ck_assert_int_eq (array_read (a, got, sizeof got, CHUNK), 4096);
    ck_assert_mem_eq (got, buf, sizeof buf);
  }
  io_mem_stats (fx.mem[0])->fail_pread = 0;
  ck_assert_int_eq (array_close (a, true), 0);
  fx_free (&fx);
}
END_TEST

START_TEST (test_sequential_reads_stay_on_one_member_others_take_turns)
{
  struct fixture fx;
  fx_create (&fx, 2);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  static uint8_t buf[4096];
  unsigned long before[2], after[2];
  for (int i = 0; i < 2; i++)
    before[i] = io_mem_stats (fx.mem[i])->preads;
  /* A stream: every read starts where the one before ended. */
  for (uint64_t k = 0; k < 8; k++)
    ck_assert_int_eq (array_read (a, buf, sizeof buf, CHUNK + k * 4096), 4096);
  for (int i = 0; i < 2; i++)
    after[i] = io_mem_stats (fx.mem[i])->preads - before[i];
  ck_assert_msg ((after[0] == 8 && after[1] == 0) || (after[0] == 0 && after[1] == 8),
                 "a sequential stream read %lu and %lu times from the members",
                 after[0], after[1]);
  /* Scattered reads are spread over both. */
  for (int i = 0; i < 2; i++)
    before[i] = io_mem_stats (fx.mem[i])->preads;
  for (uint64_t k = 0; k < 8; k++)
    ck_assert_int_eq (array_read (a, buf, sizeof buf, (k % 2 ? 3 : 1) * CHUNK
                                  + (7 - k) * 8192), 4096);
  for (int i = 0; i < 2; i++)
    after[i] = io_mem_stats (fx.mem[i])->preads - before[i];
  ck_assert_msg (after[0] >= 2 && after[1] >= 2,
                 "scattered reads went %lu and %lu times to the members",
                 after[0], after[1]);
  ck_assert_int_eq (array_close (a, true), 0);
  fx_free (&fx);
}
END_TEST

/* With the member threads running (array_start_daemon), a large write
 * and a flush go to the members at once; their errors are handled as when
 * the calls run one after the other. */
START_TEST (test_parallel_member_writes_and_syncs_handle_errors)
{
  struct fixture fx;
  fx_create (&fx, 3);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  ck_assert_int_eq (array_start_daemon (a), 0);
  static uint8_t buf[256 << 10], got[256 << 10];
  fill (buf, sizeof buf, 77);
  io_mem_stats (fx.mem[2])->fail_pwrite = -EIO;
  ck_assert_int_eq (array_write (a, buf, sizeof buf, CHUNK), (ssize_t) sizeof buf);
  ck_assert_int_eq (array_member_state (a, 2), MEMBER_FAULTY);
  ck_assert_int_eq (array_member_state (a, 0), MEMBER_ACTIVE);
  ck_assert_int_eq (array_member_state (a, 1), MEMBER_ACTIVE);
  for (size_t i = 0; i < 2; i++) {
    size_t len;
    uint8_t *d = io_mem_data (fx.mem[i], &len);
    ck_assert_mem_eq (d + CHUNK, buf, sizeof buf);
  }
  unsigned long s0 = io_mem_stats (fx.mem[0])->syncs;
  io_mem_stats (fx.mem[1])->fail_fdatasync = -EIO;
  ck_assert_int_eq (array_flush (a), 0);
  ck_assert_uint_gt (io_mem_stats (fx.mem[0])->syncs, s0);
  ck_assert_int_eq (array_member_state (a, 1), MEMBER_FAULTY);
  ck_assert_int_eq (array_member_state (a, 0), MEMBER_ACTIVE);
  ck_assert_int_eq (array_read (a, got, sizeof got, CHUNK), (ssize_t) sizeof got);
  ck_assert_mem_eq (got, buf, sizeof buf);
  io_mem_stats (fx.mem[0])->fail_fdatasync = -EIO;
  /* The last member's error is the caller's. */
  ck_assert_int_eq (array_flush (a), -EIO);
  ck_assert_int_eq (array_member_state (a, 0), MEMBER_ACTIVE);
  /* The kernel reports a lost write once: a later sync that succeeds
   * does not bring it back, so the volume's syncs keep failing and the
   * shutdown is not clean. */
  io_mem_stats (fx.mem[0])->fail_fdatasync = 0;
  ck_assert_int_eq (array_flush (a), -EIO);
  ck_assert_int_eq (array_close (a, true), -EIO);
  ck_assert_uint_eq (member_sb (&fx, 0).resync_offset, 0);
  fx_free (&fx);
}
END_TEST

START_TEST (test_refused_mount_writes_nothing)
{
  struct fixture fx;
  fx_create (&fx, 2);
  /* Give fx the bitmap of an array with another uuid. */
  struct bitmap_header h = disk_header (&fx);
  h.uuid[0] ^= 1;
  uint8_t hdr[BITMAP_HEADER_SIZE];
  bitmap_header_encode (&h, hdr);
  ck_assert_int_eq (io_pwrite_full (fx.bmem, hdr, sizeof hdr, 0), 0);
  unsigned long w0 = io_mem_stats (fx.mem[0])->pwrites;
  unsigned long wb = io_mem_stats (fx.bmem)->pwrites;

  ck_assert_ptr_null (fx_assemble (&fx, NULL));
  ck_assert_uint_eq (io_mem_stats (fx.mem[0])->pwrites, w0);
  ck_assert_uint_eq (io_mem_stats (fx.bmem)->pwrites, wb);
  fx_free (&fx);
}
END_TEST

START_TEST (test_nobitmap_dirty_shutdown_resyncs_everything_from_offset)
{
  struct fixture fx;
  fx_create (&fx, 2);
  for (size_t i = 0; i < 2; i++) {
    struct md_sb s = member_sb (&fx, i);
    s.resync_offset = 8 * CHUNK / 512;   /* a resync stopped half way */
    ck_assert_int_eq (member_write_sb (fx.mem[i], &s), 0);
  }
  size_t len;
  io_mem_data (fx.mem[1], &len)[12 * CHUNK] = 0x33;
  struct array_options o = { .nobitmap = true };
  struct array *a = fx_assemble (&fx, &o);
  ck_assert_ptr_nonnull (a);
  struct array_resync_stats st;
  ck_assert_int_eq (array_resync (a, &st), 0);
  ck_assert_uint_eq (st.bytes_copied, VOL / 2);
  ck_assert (members_identical (&fx));
  ck_assert_uint_eq (member_sb (&fx, 0).resync_offset, SB_RESYNC_CLEAN);
  ck_assert_int_eq (array_close (a, true), 0);
  fx_free (&fx);
}
END_TEST

START_TEST (test_clear_pass_clears_only_idle_chunks_after_member_sync)
{
  struct fixture fx;
  fx_create (&fx, 2);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  static uint8_t buf[4096];
  ck_assert_int_eq (array_write (a, buf, sizeof buf, 0), 4096);
  ck_assert (disk_bit (&fx, 0));
  /* First pass: the chunk has not been idle for a whole pass. */
  array_clear_pass (a);
  ck_assert (disk_bit (&fx, 0));
  unsigned long s0 = io_mem_stats (fx.mem[0])->syncs;
  array_clear_pass (a);
  ck_assert (!disk_bit (&fx, 0));
  ck_assert_uint_gt (io_mem_stats (fx.mem[0])->syncs, s0);
  ck_assert_uint_eq (disk_header (&fx).events_cleared, disk_header (&fx).events);
  ck_assert_int_eq (array_close (a, true), 0);
  fx_free (&fx);
}
END_TEST


START_TEST (test_degraded_mount_resync_keeps_the_missing_members_bits)
{
  struct fixture fx;
  fx_create (&fx, 3);
  /* A crash left chunk 3 dirty; m2 differs there. */
  size_t len;
  io_mem_data (fx.mem[2], &len)[3 * CHUNK + 5] = 0x42;
  uint8_t *b = io_mem_data (fx.bmem, &len);
  b[bitmap_bit_byte (3)] |= bitmap_bit_mask (3);
  /* Mount m0 and m1 only. */
  struct io_file *m[2];
  for (size_t i = 0; i < 2; i++)
    m[i] = io_mem_reopen (fx.mem[i]);
  struct array_options o = { .degraded = true };
  struct array *a = array_assemble (m, 2, io_mem_reopen (fx.bmem), &o);
  ck_assert_ptr_nonnull (a);
  struct array_resync_stats st;
  ck_assert_int_eq (array_resync (a, &st), 0);
  ck_assert_uint_eq (st.chunks_copied, 1);
  /* m2 still needs chunk 3: its bit stays, on disk too. */
  ck_assert (disk_bit (&fx, 3));
  array_clear_pass (a);
  array_clear_pass (a);
  ck_assert (disk_bit (&fx, 3));
  ck_assert_int_eq (array_close (a, true), 0);
  ck_assert (disk_bit (&fx, 3));
  fx_free (&fx);
}
END_TEST

START_TEST (test_resync_target_failing_keeps_its_bits)
{
  struct fixture fx;
  fx_create (&fx, 2);
  size_t len;
  uint8_t *b = io_mem_data (fx.bmem, &len);
  b[bitmap_bit_byte (3)] |= bitmap_bit_mask (3);
  io_mem_data (fx.mem[1], &len)[3 * CHUNK] = 0x17;
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  io_mem_stats (fx.mem[1])->fail_pwrite = -EIO;
  struct array_resync_stats st;
  ck_assert_int_eq (array_resync (a, &st), 0);
  ck_assert_int_eq (array_member_state (a, 1), MEMBER_FAULTY);
  ck_assert (disk_bit (&fx, 3));
  ck_assert_int_eq (array_close (a, true), 0);
  ck_assert (disk_bit (&fx, 3));
  fx_free (&fx);
}
END_TEST

START_TEST (test_stale_bitmap_that_cannot_be_rebuilt_still_copies_everything)
{
  struct fixture fx;
  fx_create (&fx, 2);
  for (size_t i = 0; i < 2; i++) {
    struct md_sb sb = member_sb (&fx, i);
    sb.events = 5;
    ck_assert_int_eq (member_write_sb (fx.mem[i], &sb), 0);
  }
  size_t len;
  io_mem_data (fx.mem[1], &len)[6 * CHUNK] = 0x99;     /* bit 6 is clear */
  io_mem_stats (fx.bmem)->fail_pwrite = -EIO;
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  struct array_resync_stats st;
  ck_assert_int_eq (array_resync (a, &st), 0);
  ck_assert_uint_eq (st.chunks_copied, NCHUNKS);
  ck_assert (members_identical (&fx));
  ck_assert_int_eq (array_close (a, true), 0);
  fx_free (&fx);
}
END_TEST

/* Issue 13, bug 1.  The bitmap header's pwrite inside an events bump
 * lands but its fdatasync fails: the header on disk may carry the
 * members' events.  Before any write goes on without the bitmap, the
 * members move past it, so the next mount finds it stale and copies
 * everything. */
START_TEST (test_bitmap_header_sync_failure_in_a_bump_leaves_the_members_ahead)
{
  struct fixture fx;
  fx_create (&fx, 2);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  /* The first write marks the array active: an events bump. */
  io_mem_stats (fx.bmem)->fail_fdatasync = -EIO;
  static uint8_t buf[4096];
  fill (buf, sizeof buf, 21);
  ck_assert_int_eq (array_write (a, buf, sizeof buf, 5 * CHUNK), 4096);
  ck_assert_uint_gt (member_sb (&fx, 0).events, disk_header (&fx).events);
  ck_assert_uint_gt (member_sb (&fx, 1).events, disk_header (&fx).events);
  /* Written without the bitmap: bit 5 is clear on disk.  Make the
   * members differ there, as a crash between the two member writes
   * would, then crash. */
  ck_assert (!disk_bit (&fx, 5));
  size_t len;
  io_mem_data (fx.mem[1], &len)[5 * CHUNK] ^= 0xff;
  array_close (a, false);

  io_mem_stats (fx.bmem)->fail_fdatasync = 0;
  a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  struct array_resync_stats st;
  ck_assert_int_eq (array_resync (a, &st), 0);
  ck_assert (st.full);
  ck_assert (members_identical (&fx));
  ck_assert_int_eq (array_close (a, true), 0);
  fx_free (&fx);
}
END_TEST

/* Issue 13, bug 2.  A write that skips a member whose faulty marking is
 * not durable (the bump that marked it could not write the survivor's
 * superblock) may reply only once the survivor's superblock says so: a
 * power cut would otherwise bring both back as current. */
START_TEST (test_write_skipping_a_member_replies_only_once_it_is_durably_faulty)
{
  struct fixture fx;
  fx_create (&fx, 2);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  static uint8_t buf[4096];
  fill (buf, sizeof buf, 31);
  ck_assert_int_eq (array_write (a, buf, sizeof buf, 0), 4096);
  /* m1's write fails; m0 takes the data but not its superblock. */
  io_mem_stats (fx.mem[1])->fail_pwrite = -EIO;
  io_mem_stats (fx.mem[0])->fail_pwrite = -EIO;
  io_mem_stats (fx.mem[0])->fail_pwrite_after = 1;
  io_mem_stats (fx.mem[0])->fail_pwrite_times = 1;
  ck_assert_int_eq (array_write (a, buf, sizeof buf, 2 * CHUNK), -EIO);
  ck_assert_uint_eq (member_sb (&fx, 0).dev_roles[1], 1);
  /* m1 is out in memory only.  The next write goes to m0 alone: it may
   * succeed only with m1's faulty role durable on m0. */
  fill (buf, sizeof buf, 32);
  ssize_t w = array_write (a, buf, sizeof buf, 3 * CHUNK);
  ck_assert (w == -EIO || w == 4096);
  if (w == 4096)
    ck_assert_uint_eq (member_sb (&fx, 0).dev_roles[1], SB_ROLE_FAULTY);
  ck_assert_int_eq (w, 4096);   /* the fault was passing: it was retried */
  ck_assert_int_eq (array_close (a, true), 0);
  fx_free (&fx);
}
END_TEST

/* Issue 13, bug 3.  An fsync whose member sync failed on one member
 * answers 0 only once that member is durably faulty in the survivors'
 * superblocks; while that cannot be written, EIO. */
START_TEST (test_fsync_is_eio_while_a_faulty_marking_cannot_be_made_durable)
{
  struct fixture fx;
  fx_create (&fx, 2);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  static uint8_t buf[4096];
  ck_assert_int_eq (array_write (a, buf, sizeof buf, 0), 4096);
  io_mem_stats (fx.mem[1])->fail_fdatasync = -EIO;
  io_mem_stats (fx.mem[0])->fail_pwrite = -EIO;         /* its superblock */
  ck_assert_int_eq (array_flush (a), -EIO);
  ck_assert_int_eq (array_member_state (a, 1), MEMBER_FAULTY);
  ck_assert_uint_eq (member_sb (&fx, 0).dev_roles[1], 1);
  /* Once the survivor's superblock can be written, the marking is
   * made durable and the sync is whole again. */
  io_mem_stats (fx.mem[0])->fail_pwrite = 0;
  ck_assert_int_eq (array_flush (a), 0);
  ck_assert_uint_eq (member_sb (&fx, 0).dev_roles[1], SB_ROLE_FAULTY);
  ck_assert_int_eq (array_close (a, true), 0);
  fx_free (&fx);
}
END_TEST

/* Issue 13, bug 2 (second part).  The fdatasync inside a superblock write
 * may be the one that reports a lost data write: the member is then out,
 * and no later sync counts it as synced. */
START_TEST (test_superblock_sync_error_is_not_lost_to_later_syncs)
{
  struct fixture fx;
  fx_create (&fx, 3);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  static uint8_t buf[4096];
  ck_assert_int_eq (array_write (a, buf, sizeof buf, 0), 4096);
  /* m2 fails a write: the bump that marks it writes m0 and m1, and m1's
   * fdatasync fails once. */
  io_mem_stats (fx.mem[2])->fail_pwrite = -EIO;
  io_mem_stats (fx.mem[1])->fail_fdatasync = -EIO;
  io_mem_stats (fx.mem[1])->fail_fdatasync_times = 1;
  ck_assert_int_eq (array_write (a, buf, sizeof buf, CHUNK), 4096);
  ck_assert_int_eq (array_member_state (a, 2), MEMBER_FAULTY);
  ck_assert_int_eq (array_member_state (a, 1), MEMBER_FAULTY);
  struct md_sb s0 = member_sb (&fx, 0);
  ck_assert_uint_eq (s0.dev_roles[1], SB_ROLE_FAULTY);
  ck_assert_uint_eq (s0.dev_roles[2], SB_ROLE_FAULTY);
  unsigned long syncs1 = io_mem_stats (fx.mem[1])->syncs;
  ck_assert_int_eq (array_flush (a), 0);
  ck_assert_uint_eq (io_mem_stats (fx.mem[1])->syncs, syncs1);
  array_close (a, true);
  fx_free (&fx);
}
END_TEST

/* Issue 13, bug 5.  The bitmap fails while the mount-time resync clears
 * bits: the mount goes on without it (members ahead of it), the resync
 * completes, and the next mount copies everything. */
START_TEST (test_bitmap_failure_during_mount_resync_goes_on_without_it)
{
  struct fixture fx;
  fx_create (&fx, 2);
  size_t len;
  uint8_t *b = io_mem_data (fx.bmem, &len);
  b[bitmap_bit_byte (4)] |= bitmap_bit_mask (4);
  io_mem_data (fx.mem[1], &len)[4 * CHUNK] = 0x44;
  /* The assembly's header write lands; the checkpoint's page write does
   * not. */
  io_mem_stats (fx.bmem)->fail_pwrite = -EIO;
  io_mem_stats (fx.bmem)->fail_pwrite_after = 1;
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  struct array_resync_stats st;
  ck_assert_int_eq (array_resync (a, &st), 0);
  ck_assert (members_identical (&fx));
  ck_assert_uint_gt (member_sb (&fx, 0).events, disk_header (&fx).events);
  static uint8_t buf[4096];
  ck_assert_int_eq (array_write (a, buf, sizeof buf, 9 * CHUNK), 4096);
  array_close (a, false);

  io_mem_stats (fx.bmem)->fail_pwrite = 0;
  a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  ck_assert_int_eq (array_resync (a, &st), 0);
  ck_assert (st.full);
  ck_assert_int_eq (array_close (a, true), 0);
  fx_free (&fx);
}
END_TEST

/* The array's status (the struct is large: not on the stack). */
static struct array_status *
status_of (struct array *a)
{
  static struct array_status st;
  ck_assert_int_eq (array_get_status (a, &st), 0);
  return &st;
}

static void
wait_check (struct array *a)
{
  for (int i = 0; i < 5000; i++) {
    if (!status_of (a)->check.running)
      return;
    struct timespec ts = { 0, 1000000 };
    nanosleep (&ts, NULL);
  }
  ck_abort_msg ("the check did not end");
}

/* Issue 13, bug 7.  A repair that cannot make its bits durable, nor
 * durably abandon the bitmap, writes nothing. */
START_TEST (test_repair_writes_nothing_while_the_bitmap_is_unsafe)
{
  struct fixture fx;
  fx_create (&fx, 2);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  static uint8_t buf[4096];
  ck_assert_int_eq (array_write (a, buf, sizeof buf, 0), 4096);
  size_t len;
  io_mem_data (fx.mem[1], &len)[3 * CHUNK] = 0x5a;
  /* The bitmap fails; so does every superblock write that would make it
   * stale; m1's next write (the repair's) would land. */
  io_mem_stats (fx.bmem)->fail_pwrite = -EIO;
  io_mem_stats (fx.mem[0])->fail_pwrite = -EIO;
  io_mem_stats (fx.mem[1])->fail_pwrite = -EIO;
  io_mem_stats (fx.mem[1])->fail_pwrite_times = 1;
  char msg[256];
  ck_assert_int_eq (array_check_start (a, true, 0, msg, sizeof msg), 0);
  wait_check (a);
  ck_assert_uint_eq (io_mem_data (fx.mem[1], &len)[3 * CHUNK], 0x5a);
  io_mem_stats (fx.mem[0])->fail_pwrite = 0;
  array_close (a, false);
  fx_free (&fx);
}
END_TEST

/* Issue 13, bug 7 (second part).  A failed check read counts as a read
 * error, a failed repair write as a write error. */
START_TEST (test_check_errors_are_counted_by_kind)
{
  struct fixture fx;
  fx_create (&fx, 3);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  static uint8_t buf[4096];
  ck_assert_int_eq (array_write (a, buf, sizeof buf, 0), 4096);
  io_mem_stats (fx.mem[2])->fail_pread = -EIO;
  char msg[256];
  ck_assert_int_eq (array_check_start (a, false, 0, msg, sizeof msg), 0);
  wait_check (a);
  struct array_status *st = status_of (a);
  ck_assert_uint_eq (st->members[2].read_errors, 1);
  ck_assert_uint_eq (st->members[2].write_errors, 0);
  size_t len;
  io_mem_data (fx.mem[1], &len)[3 * CHUNK] = 0x5a;
  io_mem_stats (fx.mem[1])->fail_pwrite = -EIO;
  ck_assert_int_eq (array_check_start (a, true, 0, msg, sizeof msg), 0);
  wait_check (a);
  st = status_of (a);
  ck_assert_uint_eq (st->members[1].read_errors, 0);
  ck_assert_uint_eq (st->members[1].write_errors, 1);
  io_mem_stats (fx.mem[1])->fail_pwrite = 0;
  array_close (a, true);
  fx_free (&fx);
}
END_TEST

static void
wait_recovery (struct array *a)
{
  for (int i = 0; i < 5000; i++) {
    if (!status_of (a)->recovery.running)
      return;
    struct timespec ts = { 0, 1000000 };
    nanosleep (&ts, NULL);
  }
  ck_abort_msg ("the recovery did not end");
}

/* array_get_status: the figures status shows, from one snapshot. */
START_TEST (test_status_snapshot_has_the_volume_members_and_bitmap)
{
  struct fixture fx;
  fx_create (&fx, 2);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  static uint8_t buf[4096];
  ck_assert_int_eq (array_write (a, buf, sizeof buf, 3 * CHUNK), 4096);
  struct array_status *st = status_of (a);
  ck_assert_uint_eq (st->size, VOL);
  ck_assert_int_eq (st->state, ARRAY_ACTIVE);
  ck_assert_str_eq (array_state_name (st->state), "active");
  ck_assert_uint_eq (st->raid_disks, 2);
  ck_assert_uint_eq (st->active, 2);
  ck_assert_str_eq (st->members[0].path, "m0");
  ck_assert_int_eq (st->members[1].state, MEMBER_ACTIVE);
  ck_assert (st->bitmap.present && st->bitmap.in_use);
  ck_assert_str_eq (st->bitmap.path, "bm");
  ck_assert_uint_eq (st->bitmap.chunk_size, CHUNK);
  ck_assert_uint_eq (st->bitmap.chunks, NCHUNKS);
  ck_assert_uint_eq (st->bitmap.dirty, 1);
  ck_assert (!st->recovery.running && !st->check.running);
  uint64_t events = st->events;
  char msg[256];
  ck_assert_int_eq (array_fail_member (a, 1, msg, sizeof msg), 0);
  st = status_of (a);
  ck_assert_int_eq (st->state, ARRAY_DEGRADED);
  ck_assert_str_eq (array_state_name (st->state), "degraded");
  ck_assert_uint_eq (st->active, 1);
  ck_assert_int_eq (st->members[1].state, MEMBER_FAULTY);
  ck_assert_uint_gt (st->events, events);
  array_close (a, true);
  fx_free (&fx);
}
END_TEST

/* Issue 13, bug 6.  A re-added member's own superblock says it is being
 * recovered before its first copy: when the recovery stops half way
 * (here its write fails), that member alone is refused, even with
 * -o degraded, instead of being served as the volume. */
START_TEST (test_readd_marks_the_member_recovering_before_it_copies)
{
  struct fixture fx;
  fx_create (&fx, 2);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  char msg[256];
  ck_assert_int_eq (array_fail_member (a, 1, msg, sizeof msg), 0);
  static uint8_t buf[4096];
  fill (buf, sizeof buf, 41);
  ck_assert_int_eq (array_write (a, buf, sizeof buf, 6 * CHUNK), 4096);
  ck_assert_int_eq (array_write (a, buf, sizeof buf, 9 * CHUNK), 4096);
  /* One write lands on m1 (its superblock; or, were it not written, the
   * first chunk's copy), then the recovery fails half way. */
  io_mem_stats (fx.mem[1])->fail_pwrite = -EIO;
  io_mem_stats (fx.mem[1])->fail_pwrite_after = 1;
  ck_assert_int_eq (array_readd_member (a, NULL, 1, msg, sizeof msg), 0);
  wait_recovery (a);
  ck_assert_int_eq (array_member_state (a, 1), MEMBER_FAULTY);
  struct md_sb s1 = member_sb (&fx, 1);
  ck_assert (s1.recovering);
  array_close (a, false);
  io_mem_stats (fx.mem[1])->fail_pwrite = 0;

  struct io_file *m1 = io_mem_reopen (fx.mem[1]);
  /* Even forced past the bitmap that is newer than it. */
  struct array_options deg = { .degraded = true, .force = true };
  unsigned long w1 = io_mem_stats (fx.mem[1])->pwrites;
  ck_assert_ptr_null (array_assemble (&m1, 1, io_mem_reopen (fx.bmem), &deg));
  ck_assert_uint_eq (io_mem_stats (fx.mem[1])->pwrites, w1);
  fx_free (&fx);
}
END_TEST

/* Issue 13, bug 6.  A full recovery interrupted at its recovery offset
 * resumes there: the next mount copies the chunks from the offset on and
 * the set bits below it (what it missed meanwhile), no more. */
START_TEST (test_interrupted_full_recovery_resumes_at_its_recovery_offset)
{
  struct fixture fx;
  fx_create (&fx, 2);
  struct md_sb s0 = member_sb (&fx, 0), s1 = member_sb (&fx, 1);
  s0.events = s1.events = 5;
  s0.dev_roles[1] = SB_ROLE_FAULTY;
  s1.recovering = true;
  s1.recovery_offset = 8 * CHUNK / 512;
  ck_assert_int_eq (member_write_sb (fx.mem[0], &s0), 0);
  ck_assert_int_eq (member_write_sb (fx.mem[1], &s1), 0);
  struct bitmap_header h = disk_header (&fx);
  h.events = 5;
  h.events_cleared = 3;
  uint8_t hdr[BITMAP_HEADER_SIZE];
  bitmap_header_encode (&h, hdr);
  ck_assert_int_eq (io_pwrite_full (fx.bmem, hdr, sizeof hdr, 0), 0);
  size_t len;
  uint8_t *b = io_mem_data (fx.bmem, &len);
  b[bitmap_bit_byte (2)] |= bitmap_bit_mask (2);
  uint8_t *d0 = io_mem_data (fx.mem[0], &len);
  d0[2 * CHUNK] = 0x22;
  d0[10 * CHUNK] = 0x10;
  d0[15 * CHUNK + 7] = 0x15;

  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  ck_assert_int_eq (array_member_state (a, 1), MEMBER_RECOVERING);
  struct array_resync_stats st;
  ck_assert_int_eq (array_resync (a, &st), 0);
  ck_assert_uint_eq (st.chunks_copied, 1 + (NCHUNKS - 8));
  ck_assert (members_identical (&fx));
  ck_assert_int_eq (array_member_state (a, 1), MEMBER_ACTIVE);
  ck_assert (!member_sb (&fx, 1).recovering);
  ck_assert_int_eq (array_close (a, true), 0);
  ck_assert_uint_eq (member_sb (&fx, 1).events, member_sb (&fx, 0).events);
  fx_free (&fx);
}
END_TEST


/* ---- write-mostly and write-behind (SPEC §8) ---- */

static unsigned long
preads_of (struct fixture *fx, size_t i)
{
  return io_mem_stats_now (fx->mem[i]).preads;
}

/* A write-mostly member serves no read while another member is active,
 * and is the resync's source only when it is the last one. */
START_TEST (test_write_mostly_member_is_read_only_when_no_other_can_be)
{
  struct fixture fx;
  bool wm[3] = { true, false, false };
  fx_create_wm (&fx, 3, wm, 0);
  struct md_sb sb = member_sb (&fx, 0);
  ck_assert_uint_eq (sb.devflags, SB_DEVFLAG_WRITE_MOSTLY);
  ck_assert_uint_eq (member_sb (&fx, 1).devflags, 0);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  static uint8_t buf[8192], got[8192];
  fill (buf, sizeof buf, 9);
  ck_assert_int_eq (array_write (a, buf, sizeof buf, 2 * CHUNK), 8192);
  unsigned long r0 = preads_of (&fx, 0), r1 = preads_of (&fx, 1),
    r2 = preads_of (&fx, 2);
  for (uint64_t k = 0; k < 40; k++) {
    ck_assert_int_eq (array_read (a, got, 4096, (k * 5 % NCHUNKS) * CHUNK
                                  + (k % 3) * 8192), 4096);
  }
  ck_assert_uint_eq (preads_of (&fx, 0) - r0, 0);
  ck_assert_uint_gt (preads_of (&fx, 1) - r1, 0);
  ck_assert_uint_gt (preads_of (&fx, 2) - r2, 0);
  struct array_status *st = status_of (a);
  ck_assert (st->members[0].write_mostly && !st->members[1].write_mostly);
  /* Survives the events bumps: each member keeps its own flag. */
  char msg[256];
  ck_assert_int_eq (array_fail_member (a, 1, msg, sizeof msg), 0);
  ck_assert_uint_eq (member_sb (&fx, 0).devflags, SB_DEVFLAG_WRITE_MOSTLY);
  ck_assert_uint_eq (member_sb (&fx, 2).devflags, 0);
  /* A read error on the last member that is not write-mostly: then, and
   * only then, the write-mostly member serves. */
  io_mem_stats (fx.mem[2])->fail_pread = -EIO;
  ck_assert_int_eq (array_read (a, got, 8192, 2 * CHUNK), 8192);
  ck_assert_mem_eq (got, buf, 8192);
  ck_assert_uint_gt (preads_of (&fx, 0) - r0, 0);
  io_mem_stats (fx.mem[2])->fail_pread = 0;
  array_close (a, true);
  fx_free (&fx);
}
END_TEST

static void sleep_ms (unsigned ms);

/* Until no write is behind (at most 5 s). */
static void
behind_idle (struct array *a)
{
  for (int i = 0; i < 1000 && status_of (a)->write_behind.outstanding; i++)
    sleep_ms (5);
  ck_assert_uint_eq (status_of (a)->write_behind.outstanding, 0);
}

struct writer {
  struct array *a;
  const uint8_t *buf;
  size_t len;
  uint64_t off;
  ssize_t r;
  bool done;
};

static void *
writer_main (void *arg)
{
  struct writer *w = arg;
  w->r = array_write (w->a, w->buf, w->len, w->off);
  __atomic_store_n (&w->done, true, __ATOMIC_RELEASE);
  return NULL;
}

static void
sleep_ms (unsigned ms)
{
  struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
  while (nanosleep (&ts, &ts) != 0)
    ;
}

/* With write_behind 2, a write returns while the write-mostly member's
 * pwrites are held: its bit stays set, on disk too, through a clearing
 * pass; an overlapping write waits for the write behind; reads are the
 * new data; a third write waits for room; the clean close waits for
 * every write behind and leaves the members identical and clean. */
START_TEST (test_write_behind_returns_before_the_write_mostly_member_has_it)
{
  struct fixture fx;
  bool wm[2] = { false, true };
  fx_create_wm (&fx, 2, wm, 2);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  ck_assert_int_eq (array_start_daemon (a), 0);
  static uint8_t b1[4096], b2[4096], b3[4096], got[4096];
  fill (b1, sizeof b1, 1);
  fill (b2, sizeof b2, 2);
  fill (b3, sizeof b3, 3);
  /* The first write marks the superblocks active: not held. */
  ck_assert_int_eq (array_write (a, b3, 4096, 9 * CHUNK), 4096);
  behind_idle (a);

  io_mem_hold_pwrites (fx.mem[1], true);
  ck_assert_int_eq (array_write (a, b1, 4096, 3 * CHUNK), 4096);
  ck_assert_int_eq (array_write (a, b3, 4096, 7 * CHUNK), 4096);
  ck_assert_uint_eq (status_of (a)->write_behind.outstanding, 2);
  ck_assert (disk_bit (&fx, 3) && disk_bit (&fx, 7));
  /* Two passes: chunk 9, whose write is done everywhere, is cleared;
   * 3 and 7 are not. */
  array_clear_pass (a);
  array_clear_pass (a);
  ck_assert (!disk_bit (&fx, 9));
  ck_assert (disk_bit (&fx, 3) && disk_bit (&fx, 7));
  /* fsync does not wait for them (protocol A). */
  ck_assert_int_eq (array_flush (a), 0);
  ck_assert_int_eq (array_read (a, got, 4096, 3 * CHUNK), 4096);
  ck_assert_mem_eq (got, b1, 4096);

  /* Overlapping: waits for the write behind (its range lock). */
  struct writer w = { .a = a, .buf = b2, .len = 4096, .off = 3 * CHUNK };
  pthread_t t;
  ck_assert_int_eq (pthread_create (&t, NULL, writer_main, &w), 0);
  sleep_ms (100);
  ck_assert (!__atomic_load_n (&w.done, __ATOMIC_ACQUIRE));
  io_mem_hold_pwrites (fx.mem[1], false);
  pthread_join (t, NULL);
  ck_assert_int_eq (w.r, 4096);

  /* Closed cleanly: every write behind is on the member, in order. */
  ck_assert_int_eq (array_close (a, true), 0);
  size_t len;
  ck_assert_mem_eq (io_mem_data (fx.mem[1], &len) + 3 * CHUNK, b2, 4096);
  ck_assert_mem_eq (io_mem_data (fx.mem[1], &len) + 7 * CHUNK, b3, 4096);
  ck_assert (members_identical (&fx));
  ck_assert_uint_eq (disk_dirty (&fx), 0);
  fx_free (&fx);
}
END_TEST

/* At most write_behind writes are behind: the next writer waits. */
START_TEST (test_write_behind_waits_when_the_most_are_behind)
{
  struct fixture fx;
  bool wm[2] = { false, true };
  fx_create_wm (&fx, 2, wm, 2);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  ck_assert_int_eq (array_start_daemon (a), 0);
  static uint8_t buf[4096];
  fill (buf, sizeof buf, 4);
  ck_assert_int_eq (array_write (a, buf, 4096, 9 * CHUNK), 4096);
  behind_idle (a);
  io_mem_hold_pwrites (fx.mem[1], true);
  ck_assert_int_eq (array_write (a, buf, 4096, 0), 4096);
  ck_assert_int_eq (array_write (a, buf, 4096, CHUNK), 4096);
  struct writer w = { .a = a, .buf = buf, .len = 4096, .off = 2 * CHUNK };
  pthread_t t;
  ck_assert_int_eq (pthread_create (&t, NULL, writer_main, &w), 0);
  sleep_ms (100);
  ck_assert (!__atomic_load_n (&w.done, __ATOMIC_ACQUIRE));
  ck_assert_uint_eq (status_of (a)->write_behind.outstanding, 2);
  io_mem_hold_pwrites (fx.mem[1], false);
  pthread_join (t, NULL);
  ck_assert_int_eq (w.r, 4096);
  ck_assert_int_eq (array_close (a, true), 0);
  ck_assert (members_identical (&fx));
  fx_free (&fx);
}
END_TEST

/* A write behind that fails marks its member faulty (SPEC §6), durably
 * in the survivor's superblock, and the chunk's bit stays set. */
START_TEST (test_failed_write_behind_marks_the_member_faulty_and_keeps_the_bit)
{
  struct fixture fx;
  bool wm[2] = { false, true };
  fx_create_wm (&fx, 2, wm, 16);
  struct array *a = fx_assemble (&fx, NULL);
  ck_assert_ptr_nonnull (a);
  ck_assert_int_eq (array_start_daemon (a), 0);
  static uint8_t buf[4096];
  fill (buf, sizeof buf, 5);
  ck_assert_int_eq (array_write (a, buf, 4096, 9 * CHUNK), 4096);
  behind_idle (a);
  ck_assert_int_eq (array_member_state (a, 1), MEMBER_ACTIVE);
  io_mem_stats (fx.mem[1])->fail_pwrite = -EIO;
  ck_assert_int_eq (array_write (a, buf, 4096, 5 * CHUNK), 4096);
  behind_idle (a);
  io_mem_stats (fx.mem[1])->fail_pwrite = 0;
  ck_assert_int_eq (array_member_state (a, 1), MEMBER_FAULTY);
  ck_assert_uint_eq (member_sb (&fx, 0).dev_roles[1], SB_ROLE_FAULTY);
  ck_assert_int_eq (array_clear_pass (a), 0);
  ck_assert (disk_bit (&fx, 5));
  array_close (a, true);
  ck_assert (disk_bit (&fx, 5));
  fx_free (&fx);
}
END_TEST

static Suite *
array_suite (void)
{
  Suite *s = suite_create ("array");
  TCase *tc = tcase_create ("core");
  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_bit_durable_before_any_member_data_write);
  tcase_add_test (tc, test_clean_close_leaves_no_dirty_bit_and_clean_superblocks);
  tcase_add_test (tc, test_resync_copies_only_dirty_chunks);
  tcase_add_test (tc, test_stale_bitmap_gives_full_resync);
  tcase_add_test (tc, test_bitmap_failure_keeps_writes_and_makes_next_mount_full);
  tcase_add_test (tc, test_member_write_error_marks_it_faulty_and_bits_stay);
  tcase_add_test (tc, test_last_member_error_is_eio_and_never_marked_faulty);
  tcase_add_test (tc, test_write_past_end_is_enospc_and_reads_stop_at_end);
  tcase_add_test (tc, test_read_error_is_served_by_another_member);
  tcase_add_test (tc, test_refused_mount_writes_nothing);
  tcase_add_test (tc, test_nobitmap_dirty_shutdown_resyncs_everything_from_offset);
  tcase_add_test (tc, test_clear_pass_clears_only_idle_chunks_after_member_sync);
  tcase_add_test (tc, test_degraded_mount_resync_keeps_the_missing_members_bits);
  tcase_add_test (tc, test_resync_target_failing_keeps_its_bits);
  tcase_add_test (tc, test_stale_bitmap_that_cannot_be_rebuilt_still_copies_everything);
  tcase_add_test (tc, test_sequential_reads_stay_on_one_member_others_take_turns);
  tcase_add_test (tc, test_parallel_member_writes_and_syncs_handle_errors);
  tcase_add_test (tc, test_bitmap_header_sync_failure_in_a_bump_leaves_the_members_ahead);
  tcase_add_test (tc, test_write_skipping_a_member_replies_only_once_it_is_durably_faulty);
  tcase_add_test (tc, test_fsync_is_eio_while_a_faulty_marking_cannot_be_made_durable);
  tcase_add_test (tc, test_superblock_sync_error_is_not_lost_to_later_syncs);
  tcase_add_test (tc, test_bitmap_failure_during_mount_resync_goes_on_without_it);
  tcase_add_test (tc, test_repair_writes_nothing_while_the_bitmap_is_unsafe);
  tcase_add_test (tc, test_check_errors_are_counted_by_kind);
  tcase_add_test (tc, test_status_snapshot_has_the_volume_members_and_bitmap);
  tcase_add_test (tc, test_readd_marks_the_member_recovering_before_it_copies);
  tcase_add_test (tc, test_interrupted_full_recovery_resumes_at_its_recovery_offset);
  tcase_add_test (tc, test_write_mostly_member_is_read_only_when_no_other_can_be);
  tcase_add_test (tc, test_write_behind_returns_before_the_write_mostly_member_has_it);
  tcase_add_test (tc, test_write_behind_waits_when_the_most_are_behind);
  tcase_add_test (tc, test_failed_write_behind_marks_the_member_faulty_and_keeps_the_bit);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  log_set_program ("check_array");
  SRunner *sr = srunner_create (array_suite ());
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
