/* Power-loss simulation of the real array code (SPEC §4-5).
 *
 * A seeded workload (random and overlapping writes, fsyncs, clearing
 * passes, a crash and its resync, a clean unmount) runs over in-memory
 * files whose log keeps every pwrite and fdatasync.  Then, at every I/O boundary of that
 * log, the disk is rebuilt as a power loss would leave it -- the durable
 * state plus all, none, or (sampled) a random subset of the unsynced
 * writes, some torn at 4 KiB -- and each such crash state is checked:
 *
 *  1. Invariant I: every chunk where two members differ has its bit set in
 *     the bitmap file, whenever that bitmap is current (a stale one means a
 *     full resync, which needs no bits).
 *  2. Recovery (assemble + resync) succeeds and leaves the members
 *     identical.
 *  3. Every block holds a value written no earlier than the last write
 *     covered by an fsync that had returned before the crash.
 *  4. (Sampled) a second crash at every boundary of that recovery still
 *     recovers to the same guarantees.
 *
 * In the background variant the mounts after the first crash resync in
 * the background (array_resync_start, slowed down) while the workload's
 * writes, fsyncs and clearing passes go on, and the last unmount may come
 * before that resync ends (SPEC §8).
 */
#include <config.h>

#include <check.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "bitmap/bitmap_format.h"
#include "core/array.h"
#include "core/create.h"
#include "common/log.h"
#include "core/member.h"
#include "core/superblock.h"
#include "tests/io_mem.h"

#define VOL (512ull << 10)
#define CHUNK (32ull << 10)
#define NCHUNKS (VOL / CHUNK)
#define NBLOCKS (VOL / SIM_BLOCK)
#define MAXM 3

enum { MARK_WRITE = 1, MARK_FLUSH_START, MARK_FLUSH_DONE };

static unsigned long states_checked, second_crash_states, invariant_checks;

/* ---- the model of acknowledged data ---- */

struct model {
  uint64_t *hist[NBLOCKS];      /* hashes of the values written, in order */
  size_t hlen[NBLOCKS], hcap[NBLOCKS];
  size_t floor[NBLOCKS];        /* first value that may still be seen */
  size_t cand[NBLOCKS];         /* floor once the running fsync returns */
};

static uint64_t
block_hash (const uint8_t *p)
{
  return XXH64 (p, SIM_BLOCK, 0);
}

static void
model_push (struct model *m, size_t b, uint64_t h)
{
  if (m->hlen[b] == m->hcap[b]) {
    m->hcap[b] = m->hcap[b] ? 2 * m->hcap[b] : 8;
    m->hist[b] = realloc (m->hist[b], m->hcap[b] * sizeof *m->hist[b]);
    ck_assert_ptr_nonnull (m->hist[b]);
  }
  m->hist[b][m->hlen[b]++] = h;
}

static void
model_init (struct model *m)
{
  memset (m, 0, sizeof *m);
  static const uint8_t zero[SIM_BLOCK];
  for (size_t b = 0; b < NBLOCKS; b++)
    model_push (m, b, block_hash (zero));
}

static void
model_copy (struct model *dst, const struct model *src)
{
  memcpy (dst, src, sizeof *dst);
  for (size_t b = 0; b < NBLOCKS; b++) {
    dst->hist[b] = malloc (src->hcap[b] * sizeof *dst->hist[b]);
    memcpy (dst->hist[b], src->hist[b], src->hlen[b] * sizeof *dst->hist[b]);
  }
}

static void
model_free (struct model *m)
{
  for (size_t b = 0; b < NBLOCKS; b++)
    free (m->hist[b]);
}

static void
model_apply (struct model *m, const struct io_log_entry *op)
{
  if (op->kind != IO_LOG_MARK)
    return;
  switch (op->mark) {
  case MARK_WRITE:
    for (uint64_t o = 0; o < op->len; o += SIM_BLOCK)
      model_push (m, (op->off + o) / SIM_BLOCK, block_hash (op->data + o));
    break;
  case MARK_FLUSH_START:
    for (size_t b = 0; b < NBLOCKS; b++)
      m->cand[b] = m->hlen[b] - 1;
    break;
  case MARK_FLUSH_DONE:
    for (size_t b = 0; b < NBLOCKS; b++)
      if (m->cand[b] > m->floor[b])
        m->floor[b] = m->cand[b];
    break;
  }
}

static bool
model_allows (const struct model *m, size_t b, const uint8_t *data)
{
  uint64_t h = block_hash (data);
  for (size_t j = m->floor[b]; j < m->hlen[b]; j++)
    if (m->hist[b][j] == h)
      return true;
  return false;
}

/* ---- building files ---- */

static const char *const names[] = { "m0", "m1", "m2", "m3" };
static int nmembers;            /* files 0..nmembers-1; the bitmap is last */

/* The images of a new array, as mdfusectl create makes it. */
static void
initial_images (uint8_t **img, size_t *len)
{
  struct io_file *f[MAXM + 1];
  for (int i = 0; i <= nmembers; i++)
    f[i] = io_mem_new (i < nmembers ? names[i] : "bm");
  struct create_options o = { .volume_bytes = VOL, .chunk = CHUNK,
                              .daemon_sleep = 5 };
  ck_assert_int_eq (create_array_on (&o, f, (size_t) nmembers, f[nmembers]),
                    0);
  for (int i = 0; i <= nmembers; i++) {
    size_t l;
    uint8_t *d = io_mem_data (f[i], &l);
    img[i] = malloc (l);
    memcpy (img[i], d, l);
    len[i] = l;
    io_close (f[i]);
  }
}

/* In-memory files holding IMG (FILES[0..nmembers]), attached in that order
 * to a new log that keeps data. */
static struct io_log *
logged_files (uint8_t *const *img, const size_t *len, struct io_file **files)
{
  struct io_log *log = io_log_new (true);
  for (int i = 0; i <= nmembers; i++) {
    files[i] = io_mem_new (i < nmembers ? names[i] : "bm");
    ck_assert_int_eq (io_pwrite_full (files[i], img[i], len[i], 0), 0);
    ck_assert_int_eq (io_log_attach (log, files[i]), i);
  }
  return log;
}

static void
close_files (struct io_file **files)
{
  for (int i = 0; i <= nmembers; i++)
    io_close (files[i]);
}

static struct array *
assemble_on (struct io_file **files)
{
  struct array_options o = { 0 };
  return array_assemble (files, (size_t) nmembers, files[nmembers], &o);
}

/* ---- the workload ---- */

static bool
resync_running (struct array *a)
{
  static struct array_status st;
  array_get_status (a, &st);
  return st.resync.running;
}

static bool background;         /* the resync after a crash runs behind */
static unsigned long writes_during_resync, closes_during_resync;

static void
workload (struct io_log *w, struct io_file **files, uint64_t seed, int mounts,
          int ops_per_mount)
{
  static uint8_t buf[12 * SIM_BLOCK];
  for (int mount = 0; mount < mounts; mount++) {
    struct io_file *f[MAXM + 1];
    for (int i = 0; i <= nmembers; i++)
      f[i] = io_mem_reopen (files[i]);
    struct array *a = assemble_on (f);
    ck_assert_ptr_nonnull (a);
    struct array_resync_stats st;
    if (background && mount > 0) {
      /* 32 KiB chunks at 2 MiB/s: one every 16 ms, while the writes below
       * come every 4 ms. */
      array_set_resync_rate (a, 2u << 20, 2u << 20);
      ck_assert_int_eq (array_resync_start (a), 0);
    }
    else
      ck_assert_int_eq (array_resync (a, &st), 0);
    for (int k = 0; k < ops_per_mount; k++) {
      if (background && mount > 0) {
        nanosleep (&(struct timespec) { 0, 4000000 }, NULL);
        writes_during_resync += resync_running (a);
      }
      uint64_t r = sim_rand (&seed) % 100;
      if (r < 65) {
        uint64_t blk = sim_rand (&seed) % NBLOCKS;
        uint64_t nb = 1 + sim_rand (&seed) % 12;
        if (blk + nb > NBLOCKS)
          nb = NBLOCKS - blk;
        for (size_t i = 0; i < nb * SIM_BLOCK; i += 8) {
          uint64_t v = sim_rand (&seed);
          memcpy (buf + i, &v, 8);
        }
        io_log_mark (w, MARK_WRITE, blk * SIM_BLOCK, nb * SIM_BLOCK, buf);
        ck_assert_int_eq (array_write (a, buf, nb * SIM_BLOCK, blk * SIM_BLOCK),
                          (ssize_t) (nb * SIM_BLOCK));
      }
      else if (r < 82) {
        io_log_mark (w, MARK_FLUSH_START, 0, 0, NULL);
        ck_assert_int_eq (array_flush (a), 0);
        io_log_mark (w, MARK_FLUSH_DONE, 0, 0, NULL);
      }
      else
        array_clear_pass (a);
    }
    if (background && mount > 0)
      closes_during_resync += resync_running (a);
    /* Mount 0 ends in a crash (the next mount resyncs, inside the log);
     * the others unmount cleanly. */
    array_close (a, mount != 0);
  }
}

/* ---- checking one crash state ---- */

static void
check_invariant (uint8_t **img, size_t *len)
{
  struct md_sb sb[MAXM];
  uint64_t maxev = 0;
  for (int i = 0; i < nmembers; i++) {
    uint64_t off = sb_super_offset_for (len[i]) * 512;
    char why[160];
    ck_assert_uint_ge (len[i], off + SB_BLOCK_SIZE);
    enum sb_status s = sb_decode (img[i] + off, &sb[i], why, sizeof why);
    ck_assert_msg (s == SB_VALID, "member %d superblock: %s", i, why);
    if (sb[i].events > maxev)
      maxev = sb[i].events;
  }
  struct bitmap_header h;
  char why[200];
  const uint8_t *bm = img[nmembers];
  if (bitmap_header_decode (bm, &h, why, sizeof why) != BITMAP_HEADER_OK
      || (h.state & BITMAP_STATE_STALE) || h.events < maxev)
    return;                     /* stale: the next mount copies everything */
  invariant_checks++;
  for (uint64_t c = 0; c < NCHUNKS; c++) {
    if (bm[bitmap_bit_byte (c)] & bitmap_bit_mask (c))
      continue;
    for (int i = 1; i < nmembers; i++) {
      /* Members recovered in full need no bits. */
      if (sb[i].events < h.events_cleared && sb[i].events < maxev)
        continue;
      ck_assert_msg (memcmp (img[0] + c * CHUNK, img[i] + c * CHUNK, CHUNK) == 0,
                     "invariant broken: chunk %llu differs between m0 and m%d "
                     "but its bit is clear", (unsigned long long) c, i);
    }
  }
}

static void
verify_recovered (const struct model *m, struct io_file **files)
{
  size_t l0;
  uint8_t *d0 = io_mem_data (files[0], &l0);
  for (int i = 1; i < nmembers; i++) {
    size_t li;
    uint8_t *di = io_mem_data (files[i], &li);
    ck_assert_msg (memcmp (d0, di, VOL) == 0,
                   "members differ after recovery");
  }
  for (size_t b = 0; b < NBLOCKS; b++)
    ck_assert_msg (model_allows (m, b, d0 + b * SIM_BLOCK),
                   "block %zu lost an acknowledged, fsynced write", b);
}

static void
free_images (uint8_t **img)
{
  for (int i = 0; i <= nmembers; i++)
    free (img[i]);
}

/* Recover from IMG on in-memory files and check it. */
static void
recover_and_check (const struct model *m, uint8_t **img, size_t *len)
{
  struct io_file *mem[MAXM + 1], *f[MAXM + 1];
  for (int i = 0; i <= nmembers; i++) {
    mem[i] = io_mem_new (i < nmembers ? names[i] : "bm");
    ck_assert_int_eq (io_pwrite_full (mem[i], img[i], len[i], 0), 0);
    f[i] = io_mem_reopen (mem[i]);
  }
  struct array *a = assemble_on (f);
  ck_assert_msg (a != NULL, "a crash state could not be assembled");
  struct array_resync_stats st;
  ck_assert_int_eq (array_resync (a, &st), 0);
  verify_recovered (m, mem);
  ck_assert_int_eq (array_close (a, true), 0);
  for (int i = 0; i <= nmembers; i++)
    io_close (mem[i]);
  states_checked++;
}

/* Recover from IMG while recording, then crash at every boundary of that
 * recovery and recover again. */
static void
second_crash (const struct model *m, uint8_t **img, size_t *len,
              uint64_t *seed)
{
  struct io_file *files[MAXM + 1], *f[MAXM + 1];
  struct io_log *w = logged_files (img, len, files);
  for (int i = 0; i <= nmembers; i++)
    f[i] = io_mem_reopen (files[i]);
  struct array *a = assemble_on (f);
  ck_assert_ptr_nonnull (a);
  struct array_resync_stats st;
  ck_assert_int_eq (array_resync (a, &st), 0);
  ck_assert_int_eq (array_close (a, true), 0);

  struct sim_replay r;
  sim_replay_init (&r, w);
  const struct io_log_entry *op;
  while ((op = sim_replay_step (&r)) != NULL) {
    for (int keep = 0; keep < 3; keep++) {
      uint8_t *img2[MAXM + 1];
      size_t len2[MAXM + 1];
      sim_crash_images (&r, (enum sim_keep) keep, seed, img2, len2);
      recover_and_check (m, img2, len2);
      second_crash_states++;
      free_images (img2);
    }
  }
  sim_replay_free (&r);
  io_log_free (w);
  close_files (files);
}

static void
run_crash_simulation (int members, uint64_t seed, int mounts, int ops,
                      int random_every, int second_every)
{
  nmembers = members;
  uint8_t *img[MAXM + 1];
  size_t len[MAXM + 1];
  initial_images (img, len);
  struct io_file *files[MAXM + 1];
  struct io_log *w = logged_files (img, len, files);
  free_images (img);
  workload (w, files, seed, mounts, ops);

  struct model m;
  model_init (&m);
  struct sim_replay r;
  sim_replay_init (&r, w);
  uint64_t rs = seed ^ 0x5eed;
  size_t boundary = 0;
  const struct io_log_entry *op;
  while ((op = sim_replay_step (&r)) != NULL) {
    model_apply (&m, op);
    if (op->kind == IO_LOG_MARK)
      continue;
    boundary++;
    /* Every boundary: the cache kept everything (a process kill) and
     * nothing (a power loss before any unsynced write landed). */
    for (int keep = SIM_KEEP_ALL; keep <= SIM_KEEP_NONE; keep++) {
      sim_crash_images (&r, (enum sim_keep) keep, &rs, img, len);
      check_invariant (img, len);
      recover_and_check (&m, img, len);
      free_images (img);
    }
    if (boundary % (size_t) random_every == 0) {
      for (int k = 0; k < 2; k++) {
        sim_crash_images (&r, SIM_KEEP_RANDOM, &rs, img, len);
        check_invariant (img, len);
        recover_and_check (&m, img, len);
        if (k == 0 && boundary % (size_t) second_every == 0) {
          struct model m2;
          model_copy (&m2, &m);
          second_crash (&m2, img, len, &rs);
          model_free (&m2);
        }
        free_images (img);
      }
    }
  }
  sim_replay_free (&r);
  model_free (&m);
  io_log_free (w);
  close_files (files);
}

START_TEST (test_power_loss_at_every_boundary_two_members)
{
  run_crash_simulation (2, 0x1234 + (uint64_t) _i, 3, 40, 3, 40);
}
END_TEST

START_TEST (test_power_loss_at_every_boundary_three_members)
{
  run_crash_simulation (3, 0xabcd, 3, 30, 3, 60);
}
END_TEST

START_TEST (test_power_loss_during_a_background_resync)
{
  background = true;
  run_crash_simulation (2 + _i % 2, 0xb6 + (uint64_t) _i, 3, 40, 3, 40);
  background = false;
}
END_TEST

int
main (void)
{
  /* The array logs every stale bitmap and degraded start it meets; across
   * thousands of crash states that is noise. */
  if (!getenv ("CHECK_CRASH_VERBOSE"))
    freopen ("/dev/null", "w", stderr);
  log_set_program ("check_crash");
  Suite *s = suite_create ("crash");
  TCase *tc = tcase_create ("power-loss");
  tcase_set_timeout (tc, 600);
  tcase_add_loop_test (tc, test_power_loss_at_every_boundary_two_members, 0, 3);
  tcase_add_test (tc, test_power_loss_at_every_boundary_three_members);
  tcase_add_loop_test (tc, test_power_loss_during_a_background_resync, 0, 2);
  suite_add_tcase (s, tc);
  SRunner *sr = srunner_create (s);
  srunner_set_fork_status (sr, CK_NOFORK);
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  printf ("crash states checked: %lu recoveries (%lu after a second crash "
          "during resync), invariant checked on %lu states; background "
          "resync: %lu operations and %lu unmounts while it ran\n",
          states_checked, second_crash_states, invariant_checks,
          writes_during_resync, closes_during_resync);
  if (writes_during_resync == 0) {
    printf ("no operation ran during a background resync\n");
    failed = 1;
  }
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
