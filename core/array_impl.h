/* The array's insides, shared by the files of core/ that implement it:
 * array.c (assembly, clearing thread, shutdown), events.c (superblocks,
 * events, fault marking), datapath.c (read, write, flush), copy.c (range
 * copies), resync.c, recovery.c, check.c, status.c.  Not for anyone else.
 *
 * Lock order: a range lock (rl), then sb_lock, then a member's sync_lock,
 * then the bitmap's own lock; notices.lock and behind.lock are taken last,
 * alone.  Member states are read without a lock
 * (atomic loads) and changed under sb_lock. */
#ifndef MDFUSE_ARRAY_IMPL_H
#define MDFUSE_ARRAY_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bitmap/bitmap.h"
#include "core/array.h"
#include "core/assemble.h"
#include "common/fanout.h"
#include "common/progress.h"
#include "common/rangelock.h"
#include "common/throttle.h"
#include "core/superblock.h"

#define COPY_BUF_SIZE (4u << 20)
#define RESYNC_CHECKPOINT_BYTES (64ull << 20)

struct array_member {
  struct io_file *io;           /* NULL when missing */
  struct md_sb sb;              /* this member's superblock as last written */
  int state;                    /* enum member_state; atomic loads */
  enum recovery_mode recovery;  /* MEMBER_RECOVERING: how */
  uint64_t recover_from;        /* RECOVER_FULL: copied below (sectors) */
  bool just_recovered;          /* its superblock is written after the others' */
  /* Its superblock's WriteMostly1 flag: read only when no other current
   * member can serve (SPEC §8); set at assembly and re-add (atomic). */
  bool write_mostly;
  uint64_t read_errors, write_errors;
  /* Where the last read from this member ended: a read that starts there
   * goes to this member again, so its readahead keeps working. */
  uint64_t read_next;
  /* Held across every fdatasync of the member, a superblock write's
   * included.  The kernel reports a lost write to one fdatasync only:
   * whichever caller sees it records it in sync_err, and from then on no
   * caller counts the member as synced (SPEC §8). */
  pthread_mutex_t sync_lock;
  int sync_err;                 /* negative errno, sticky (sync_lock) */
  /* Every survivor's superblock says this slot is faulty, as the last
   * completed events bump wrote them (atomic loads).  A write or sync
   * that left the slot out replies only once this holds (SPEC §8). */
  bool out_on_disk;
  /* Failed by mdfusectl fail: -o auto_readd leaves it alone (sb_lock). */
  bool failed_by_admin;
};

/* What the array does with its bitmap: one state, changed under sb_lock,
 * read with atomic loads.  It only moves forward. */
enum bitmap_use {
  BITMAP_NONE,                  /* -o nobitmap: bitmap.bm is NULL */
  BITMAP_IN_USE,                /* bits guard every write; every events
                                 * bump writes its header */
  BITMAP_FAILING,               /* it failed: bumps stop writing its header,
                                 * but writers still set bits (and fail)
                                 * until the bump past it is durable */
  BITMAP_ABANDONED,             /* that bump is durable: writers go on
                                 * without it (SPEC §6, §8); nothing is
                                 * cleared; the next mount copies all */
};

/* An online recovery (re-add), one at a time. */
struct recovery_job {
  pthread_t thread;
  bool running;
  uint32_t slot;
  bool full;
  uint64_t pos, total;          /* chunks */
  double start;
};

/* A background check or repair, one at a time. */
struct check_job {
  pthread_t thread;
  bool running, repair;
  uint64_t pos, total, mismatches, repaired;
  uint64_t rate;                /* bytes/s, 0 = unlimited */
  struct throttle throttle;
  double start;
  bool done_once;
  char source[64];
};

/* What the resync copies, decided before the first copy (resync.c). */
struct resync_plan {
  uint64_t chunk, nchunks;
  /* Per slot: copy the set bits; copy everything from full_from on (and
   * the set bits below it: a recovery resumed at its recovery offset);
   * copy everything from from_chunk on (no bitmap, dirty shutdown). */
  bool bits_target[ASSEMBLE_MAX_SLOTS];
  bool full_target[ASSEMBLE_MAX_SLOTS];
  uint64_t full_from[ASSEMBLE_MAX_SLOTS];
  bool current_target[ASSEMBLE_MAX_SLOTS];
  uint64_t from_chunk;
  bool any_behind, any_target;
  bool bits_only;               /* only set bits anywhere: skip clean runs */
  uint64_t total;               /* chunks to copy */
};

/* The resync after a mount, in the background (resync.c). */
struct resync_job {
  struct resync_plan plan;
  pthread_t thread;
  bool running;                 /* its thread has not ended (sb_lock) */
  bool started;                 /* its thread is still to be joined */
  bool done;                    /* every copy is durable */
  int result;
  /* One byte per chunk: the current members may differ there, and the
   * copy is not durable yet.  Reads touching one go to the source alone.
   * need_count: how many are set (atomic), 0 for the fast path. */
  uint8_t *need;
  uint64_t need_count;
  uint64_t chunk, nchunks;
  uint64_t pos, copied;         /* chunks walked, chunks copied (atomic) */
  double start;
  uint64_t rate_min, rate_max;  /* bytes/s (md's speed_limit_min/max) */
  struct array_resync_stats stats;
};

/* Write-behind (behind.c): the writes the write-mostly members get
 * behind the others. */
struct behind_write;
#define BEHIND_THREADS_MAX 8
struct array_behind {
  uint32_t max;                 /* the bitmap's write_behind; 0: none */
  bool running;                 /* its threads run (atomic) */
  pthread_mutex_t lock;
  pthread_cond_t work;          /* a write was queued, or stop */
  pthread_cond_t idle;          /* one completed */
  struct behind_write *head, *tail;
  uint32_t outstanding;         /* queued or being written (lock) */
  uint64_t done;                /* completed since the mount (lock) */
  bool stop;
  pthread_t threads[BEHIND_THREADS_MAX];
  unsigned nthreads;
};

struct array {
  /* The members and their superblocks (sb_lock). */
  uint32_t nslots;
  struct array_member m[ASSEMBLE_MAX_SLOTS];
  uint32_t reference;           /* the source: the first current member
                                 * (atomic; the next one if it fails) */
  struct md_sb tmpl;            /* array-wide superblock fields */
  uint64_t volume_bytes;
  uint64_t events;              /* guarded by sb_lock */
  uint64_t resync_offset;       /* sectors; written in every superblock */
  uint64_t resync_from;         /* -o nobitmap dirty shutdown: resync from */
  int marked_active;            /* superblocks say resync_offset = 0 */
  pthread_mutex_t sb_lock;      /* superblocks, events, member states */

  struct {
    struct bitmap *bm;          /* NULL with -o nobitmap */
    struct io_file *io;
    int use;                    /* enum bitmap_use; bitmap_use() */
    bool stale_at_mount;        /* the mount set every bit: full resync */
  } bitmap;

  /* The data path. */
  struct fanout *fan;           /* member writes and syncs at once (or NULL) */
  struct rangelock rl;
  unsigned read_rr;
  struct array_behind behind;

  /* Background work: recovery, check/repair, the clearing thread. */
  struct recovery_job recovery;
  struct check_job check;
  struct {
    pthread_t thread;
    bool running, stop;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned sleep;             /* s between passes (daemon_sleep) */
  } clearer;
  bool stopping;                /* shutdown: background work ends */
  pthread_cond_t bg_cond;       /* recovery or check ended (sb_lock) */
  /* Files of members that failed and were replaced by a re-add: a writer
   * may still be inside a pwrite on them, so they close at shutdown. */
  struct io_file *retired[ASSEMBLE_MAX_SLOTS * 4];
  size_t nretired;

  /* The resync after the mount. */
  struct resync_job resync;
  struct array_resync_stats last_resync;
  struct progress *resync_progress;
  uint64_t user_io;             /* user reads and writes so far (atomic) */

  /* -o auto_readd (recovery.c). */
  struct {
    bool enabled, running, stop;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
  } auto_readd;

  /* What an operator is told about (notice.c). */
  struct {
    pthread_mutex_t lock;
    uint64_t instance;          /* random, per mount */
    uint64_t next;              /* seq of the next notice */
    struct array_notice ring[ARRAY_NOTICES];
  } notices;
};

static inline enum bitmap_use
bitmap_use (struct array *a)
{
  return (enum bitmap_use) __atomic_load_n (&a->bitmap.use, __ATOMIC_ACQUIRE);
}

static inline void
set_bitmap_use (struct array *a, enum bitmap_use u)
{
  __atomic_store_n (&a->bitmap.use, (int) u, __ATOMIC_RELEASE);
}

/* Events bumps write the bitmap header, and bits may be cleared. */
static inline bool
bitmap_in_use (struct array *a)
{
  return bitmap_use (a) == BITMAP_IN_USE;
}

/* Writers must set (and wait for) the bits of what they write. */
static inline bool
bitmap_guards_writes (struct array *a)
{
  enum bitmap_use u = bitmap_use (a);
  return u == BITMAP_IN_USE || u == BITMAP_FAILING;
}

static inline int
state_of (struct array *a, uint32_t s)
{
  return __atomic_load_n (&a->m[s].state, __ATOMIC_ACQUIRE);
}

static inline void
set_state (struct array *a, uint32_t s, int st)
{
  __atomic_store_n (&a->m[s].state, st, __ATOMIC_RELEASE);
}

static inline uint32_t
active_count (struct array *a)
{
  uint32_t n = 0;
  for (uint32_t s = 0; s < a->nslots; s++)
    if (state_of (a, s) == MEMBER_ACTIVE)
      n++;
  return n;
}

static inline bool
write_mostly_of (struct array *a, uint32_t s)
{
  return __atomic_load_n (&a->m[s].write_mostly, __ATOMIC_ACQUIRE);
}

/* Active and not write-mostly: a member reads prefer. */
static inline bool
preferred_reader (struct array *a, uint32_t s)
{
  return state_of (a, s) == MEMBER_ACTIVE && !write_mostly_of (a, s);
}

/* The first active member from FIRST on (in turn) that is not
 * write-mostly, else the first active one at all, else nslots. */
static inline uint32_t
first_reader (struct array *a, uint32_t first)
{
  uint32_t any = a->nslots;
  for (uint32_t k = 0; k < a->nslots; k++) {
    uint32_t s = (first + k) % a->nslots;
    if (state_of (a, s) != MEMBER_ACTIVE)
      continue;
    if (!write_mostly_of (a, s))
      return s;
    if (any == a->nslots)
      any = s;
  }
  return any;
}

static inline bool
all_active (struct array *a)
{
  return active_count (a) == a->nslots;
}

/* The unit resync, recovery and check walk the volume in: the bitmap's
 * chunk, or 4 MiB without a bitmap. */
static inline uint64_t
array_copy_unit (const struct array *a)
{
  return a->bitmap.bm ? bitmap_chunk_size (a->bitmap.bm) : 4ull << 20;
}

/* What a member failed at: for its error counters and the log. */
enum member_io {
  MEMBER_IO_READ,
  MEMBER_IO_WRITE,
  MEMBER_IO_SYNC,
  MEMBER_IO_RESYNC_WRITE,
  MEMBER_IO_RECOVERY_WRITE,
  MEMBER_IO_CHECK_READ,
  MEMBER_IO_REPAIR_WRITE,
  MEMBER_IO_BEHIND_WRITE,
};

/* Member SLOT failed an I/O: mark it faulty, durably, before returning
 * (SPEC §6).  0 when the slot is out of the array on disk (now or
 * before); ERR when it is the last active member (the error is the
 * caller's to report); -EIO when its faulty role could not be made
 * durable.  LEN bytes at OFF: the range that failed, for the one message
 * logged about it (LEN 0: none, as for a sync). */
int array_member_failed (struct array *a, uint32_t slot, int err,
                         enum member_io what, uint64_t off, uint64_t len);
/* A write or sync that left SLOT out (it was not active, or failed) may
 * reply only once SLOT is out of the array on disk (SPEC §8, md's
 * MD_SB_CHANGE_PENDING).  Waits for a marking in progress; 0, or -EIO when
 * the marking could not be made durable. */
int array_member_left_out (struct array *a, uint32_t slot);
/* Write member SLOT's own superblock as a member under recovery (SPEC
 * §8, md's recovery offset): the array's events and roles, its own role
 * its slot, and OFFSET sectors copied (the copies below it durable
 * already), or BITMAP_GUIDED.  Assembled alone, it is then refused as not
 * current; assembled with the others, its recovery resumes.  On error the
 * member is failed.  0 or a negative errno; _locked with sb_lock held. */
int array_write_recovery_sb (struct array *a, uint32_t slot, uint64_t offset,
                             bool bitmap_guided);
int array_write_recovery_sb_locked (struct array *a, uint32_t slot,
                                    uint64_t offset, bool bitmap_guided);
/* Before the first write the superblocks say the members may differ
 * (resync_offset = 0, md's "active").  0 or a negative errno. */
int array_mark_active (struct array *a);
int array_bump_events_locked (struct array *a);
/* fdatasync member SLOT (active or behind); on error it is failed (SPEC
 * §6) before this returns.  0, or a negative errno when it is not synced
 * (failed now or before). */
int array_member_sync (struct array *a, uint32_t slot);
/* Read [OFF, OFF+LEN) from an active member, FIRST first, then each in
 * turn: a member that fails the read is failed (SPEC §6).  0, or the last
 * error when no member could supply it. */
int array_read_any (struct array *a, void *buf, size_t len, uint64_t off,
                    uint32_t first);

/* The chunks the current members may still differ in while a resync
 * runs (datapath.c): [OFF, OFF+LEN) touches one (read it from the source
 * alone); chunk C is one; chunks [FIRST, END) no longer are. */
bool array_range_needs_resync (struct array *a, uint64_t off, uint64_t len);
void array_need_set (struct array *a, uint64_t c);
void array_need_clear (struct array *a, uint64_t first, uint64_t end);

/* Write BUF to every slot in TARGETS that is active or recovering (copy.c).
 * A target that fails is failed (SPEC §6); WRITTEN[s] says which got it.
 * 0, or the error of an active target that could not be put out of the
 * array (array_member_failed's): the caller's to report.  A recovering
 * target that fails only drops out of WRITTEN. */
int array_write_targets (struct array *a, const bool *targets, const void *buf,
                         size_t len, uint64_t off, enum member_io what,
                         bool *written);
/* Copy [START, END) from SOURCE (an active member; if it fails, from
 * another) to every slot in TARGETS, as array_write_targets writes, in
 * pieces of BUFLEN through BUF when the backends cannot copy it
 * themselves; where SOURCE has a hole, a hole is punched in the targets.  WHAT: the kind of write of an active target (resync,
 * repair).  The caller keeps user writes off the range (the range lock,
 * or no user I/O yet).  0, or a negative errno: no member could supply
 * the data, or as array_write_targets. */
int array_copy_range (struct array *a, uint32_t source, const bool *targets,
                      uint64_t start, uint64_t end, void *buf, size_t buflen,
                      enum member_io what, bool *written);
/* The bitmap file failed: bump events durably so it is stale (SPEC §6).
 * 0, or a negative errno when no superblock could be written. */
/* -o auto_readd's thread (recovery.c): started by array_start_daemon,
 * stopped first thing by array_close. */
int array_auto_readd_start (struct array *a);
void array_auto_readd_stop (struct array *a);

/* Record a notice (notice.c); SUBJECT may be NULL.  Any lock may be
 * held. */
void array_notice (struct array *a, enum array_notice_kind kind,
                   const char *subject, uint64_t value);
void array_notices_copy (struct array *a, struct array_status *st);

int array_bitmap_failed (struct array *a);

/* Write-behind (behind.c, SPEC §8).  init: MAX writes at most behind (0:
 * none); start: its threads (array_start_daemon); stop: waits for every
 * write behind, then ends them; destroy frees what init made. */
void array_behind_init (struct array *a, uint32_t max);
int array_behind_start (struct array *a);
void array_behind_stop (struct array *a);
void array_behind_destroy (struct array *a);
/* Its threads run: writes may go behind. */
bool array_behind_active (struct array *a);
/* Queue BUF (copied) for SLOTS[0..N) (write-mostly members) at OFF; waits
 * while the most writes are behind.  The range lock LK (held) and, when
 * COUNTED, the write's bitmap count go with it: released when every slot
 * has it.  False when it could not be queued (no memory): the caller
 * still holds both and writes the slots itself. */
bool array_behind_queue (struct array *a, struct rangelock_entry *lk,
                         bool counted, const uint32_t *slots, uint32_t n,
                         const void *buf, size_t len, uint64_t off);
/* Writes behind now; wait until there are none. */
uint32_t array_behind_outstanding (struct array *a);
void array_behind_wait_idle (struct array *a);
int array_bitmap_failed_locked (struct array *a);

#endif
