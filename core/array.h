/* The mirrored volume: members, their superblocks, the write-intent
 * protocol around every write, resync and clean shutdown (SPEC §4-6). */
#ifndef MDFUSE_ARRAY_H
#define MDFUSE_ARRAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/io.h"
#include "core/assemble.h"
#include "core/member.h"

struct array;

struct array_options {
  bool nobitmap;                /* run without the write-intent bitmap */
  bool degraded;                /* start without missing members */
  bool force;                   /* accept a bitmap newer than the members */
  bool auto_readd;              /* re-add a failed network member when its
                                 * server answers again */
};

struct array_resync_stats {
  uint64_t chunks_copied;
  uint64_t chunks_total;
  uint64_t bytes_copied;
  double seconds;
  bool full;                    /* everything was copied (stale or no bitmap) */
};

/* Assemble (SPEC §5 steps 1-4).  MEMBERS[i] may be NULL for a member that
 * could not be opened (only with opts->degraded).  Takes ownership of every
 * io_file, also on failure.  Nothing is written unless every check passes;
 * on refusal a message naming the file has been logged and NULL returned. */
struct array *array_assemble (struct io_file **members, size_t n,
                              struct io_file *bitmap,
                              const struct array_options *opts);

struct progress;
/* Show the progress of array_resync on P (NULL: none). */
void array_set_resync_progress (struct array *a, struct progress *p);

/* Ask background work and a running array_resync to stop (the resync
 * returns -ECANCELED).  Async-signal-safe. */
void array_request_stop (struct array *a);

/* Step 5: resync the current members, recover the behind ones, in the
 * calling thread; 0, -ECANCELED after array_request_stop, or a negative
 * errno. */
int array_resync (struct array *a, struct array_resync_stats *stats);
/* The same in the background, while the volume is served (SPEC §8): call
 * after array_start_daemon.  Reads of chunks not yet copied go to the
 * source; writes go on under the range lock.  0 when it started (or there
 * was nothing to copy), or a negative errno. */
int array_resync_start (struct array *a);
/* Wait for the background resync to end; its result (as array_resync). */
int array_resync_wait (struct array *a, struct array_resync_stats *stats);
/* The resync's rates in bytes/s: it never goes faster than MAX (0: no
 * limit), nor faster than MIN while users do I/O (md's speed_limit_min
 * and speed_limit_max). */
void array_set_resync_rate (struct array *a, uint64_t min, uint64_t max);
#define ARRAY_RESYNC_RATE_MIN (1ull << 20)     /* md: 1000 KiB/s */
#define ARRAY_RESYNC_RATE_MAX (1ull << 30)     /* md: 200000 KiB/s */

/* I/O on the volume.  Return bytes transferred or a negative errno. */
ssize_t array_read (struct array *a, void *buf, size_t len, uint64_t off);
/* For a caller that reads the volume itself (asynchronously): the file
 * descriptor of the member to read [OFF, OFF+*LEN) from, chosen as
 * array_read chooses, with *LEN cut at the volume's end as array_read cuts
 * it; -1 when there is nothing to read or no active member on a POSIX
 * file.  If that read fails or comes up short, the caller serves the
 * request again through array_read, which handles the member's error. */
int array_read_fd (struct array *a, uint64_t off, size_t *len);
ssize_t array_write (struct array *a, const void *buf, size_t len,
                     uint64_t off);
/* fdatasync every active member; under write-behind (SPEC §8) only the
 * members that are not write-mostly, without waiting for the writes
 * behind (DRBD's protocol A). */
int array_flush (struct array *a);
/* Wait for every write behind, then fdatasync every active member. */
int array_flush_all (struct array *a);

/* One lazy clearing pass (normally run by the array's own thread). */
int64_t array_clear_pass (struct array *a);
/* Starts the array's threads: the one that runs a clearing pass every
 * daemon_sleep s (with a bitmap), and the member threads that let a write
 * or sync reach every member at once.  Call after any daemonizing fork;
 * until then, members are written one after the other. */
int array_start_daemon (struct array *a);

/* Clean shutdown (SPEC §5) when CLEAN, then free.  Returns 0 or a negative
 * errno (the array is freed either way). */
int array_close (struct array *a, bool clean);

/* Administration (SPEC §6, mdadm --fail / --re-add).  Each returns 0 or
 * a negative errno with a message for the user in MSG. */
int array_fail_member (struct array *a, uint32_t slot, char *msg,
                       size_t msglen);
/* Re-add IO (an opened, locked member file; ownership taken, also on
 * failure) and recover it in the background while I/O goes on.  With IO
 * NULL, re-add the file slot SAME_SLOT already has open. */
int array_readd_member (struct array *a, struct io_file *io,
                        uint32_t same_slot, char *msg, size_t msglen);
/* Stop using the bitmap (mdadm --grow --bitmap=none): the members' events
 * go past it durably, so it is stale wherever it is used again.  Refused
 * while a resync runs or a member is not active, unless FORCE. */
int array_remove_bitmap (struct array *a, bool force, char *msg,
                         size_t msglen);
/* Whether a write may wait on a member across a network (an NBD member
 * that is active or recovering, and not written behind): then the transports hand every write to
 * a worker, since serving one in the thread that receives requests would
 * hold the others back for a round trip. */
bool array_writes_cross_network (struct array *a);
/* The slot whose open file is the file (device, inode), or -1. */
int array_slot_of_file (struct array *a, uint64_t dev, uint64_t ino);
/* The slot whose member is NAME (an NBD URI, compared as messages show
 * it), or -1. */
int array_slot_of_name (struct array *a, const char *name);
/* Start a background check (or repair) of every chunk on every active
 * member; RATE in bytes/s, 0 for unlimited. */
int array_check_start (struct array *a, bool repair, uint64_t rate,
                       char *msg, size_t msglen);

/* ---- status: a snapshot of the array for the daemon to show ----
 * Core gives the figures; how they are shown (text like /proc/mdstat,
 * JSON) is the daemon's business (fuse/status.c). */

/* The volume as a whole. */
enum array_state {
  ARRAY_ACTIVE,                 /* every member active */
  ARRAY_DEGRADED,               /* some, not all */
  ARRAY_FAILED,                 /* none */
};

/* "active", "degraded", "failed": as status shows them. */
const char *array_state_name (enum array_state st);

#define ARRAY_STATUS_PATH 4096  /* bytes of a path, NUL included */

struct array_member_status {
  enum member_state state;
  char path[ARRAY_STATUS_PATH]; /* "(missing)" when the slot has no file */
  bool write_mostly;            /* read only when no other member can */
  uint64_t read_errors, write_errors;
  bool networked;               /* on a connection (an NBD member) */
  uint64_t rtt_ns;              /* its round-trip time, 0 if not known */
};

/* What an operator is told about (mdadm --monitor's events), newest last;
 * the names are array_notice_name's. */
enum array_notice_kind {
  NOTICE_DEGRADED_ARRAY,        /* started without every member active */
  NOTICE_FAIL,                  /* a member was marked faulty */
  NOTICE_RESYNC_FINISHED,       /* the resync after the mount copied VALUE
                                 * chunks and ended */
  NOTICE_RESYNC_FAILED,         /* ... or stopped on an error */
  NOTICE_RECOVERY_FINISHED,     /* a re-added member is active again */
  NOTICE_CHECK_FINISHED,        /* a check or repair found nothing */
  NOTICE_CHECK_MISMATCHES,      /* ... or VALUE chunks that differed */
  NOTICE_BITMAP_FAILED,         /* the volume goes on without its bitmap */
  NOTICE_BITMAP_REMOVED,        /* mdfusectl remove-bitmap */
};
#define ARRAY_NOTICES 16        /* the newest kept */

struct array_notice {
  uint64_t seq;                 /* 0, 1, 2... since the mount */
  uint64_t time;                /* seconds since the epoch */
  enum array_notice_kind kind;
  char subject[256];            /* the member or bitmap concerned, or "" */
  uint64_t value;
};

const char *array_notice_name (enum array_notice_kind kind);

struct array_status {
  /* The volume. */
  uint8_t uuid[16];             /* the members' set_uuid */
  char name[33];                /* their set_name */
  uint64_t size;                /* bytes */
  uint64_t events;
  enum array_state state;
  uint32_t raid_disks;          /* slots: members[0 .. raid_disks) */
  uint32_t active;              /* members in state MEMBER_ACTIVE */
  struct array_member_status members[ASSEMBLE_MAX_SLOTS];

  /* The write-intent bitmap. */
  struct {
    bool present;               /* false with -o nobitmap (rest is zero) */
    bool in_use;                /* false once abandoned after an error: the
                                 * next mount resyncs everything */
    char path[ARRAY_STATUS_PATH];
    uint64_t chunk_size;        /* bytes */
    uint64_t chunks, dirty;
  } bitmap;

  /* Write-behind (SPEC §8): at most MAX writes behind on the
   * write-mostly members (0: none, every write synchronous). */
  struct {
    uint32_t max;
    uint32_t outstanding;       /* behind now */
    uint64_t done;              /* completed since the mount */
  } write_behind;

  /* An online recovery (re-add), when running. */
  struct {
    bool running;
    uint32_t slot;
    enum recovery_mode mode;
    uint64_t done_chunks, total_chunks;
    uint64_t chunk_size;        /* bytes per chunk (the bitmap's, or the
                                 * copy unit without a bitmap) */
    double seconds;             /* since it started */
    uint64_t rate;              /* bytes/s so far */
  } recovery;

  /* The running, or last, check or repair. */
  struct {
    bool running;
    bool finished;              /* one has ended since the mount */
    bool repair;
    uint64_t done_bytes, total_bytes;
    uint64_t mismatches;        /* chunks that differed */
    uint64_t repaired;          /* chunks rewritten */
    char source[64];            /* repair: what the chunks were rewritten
                                 * from ("first member", "majority") */
    double seconds;             /* since it started (while running) */
    uint64_t rate;              /* bytes/s so far (while running) */
    uint64_t rate_limit;        /* bytes/s asked for, 0 = unlimited */
  } check;

  /* The resync after the mount, while it runs in the background. */
  struct {
    bool running;
    bool full;                  /* everything is copied */
    uint64_t done_chunks, total_chunks;
    uint64_t chunk_size;        /* bytes */
    uint64_t differ_chunks;     /* not yet the same on every current
                                 * member: read from the source alone */
    double seconds;             /* since it started */
    uint64_t rate;              /* bytes/s so far */
    uint64_t rate_min, rate_max;        /* bytes/s; max 0: unlimited */
  } resync;
  /* The resync after the mount did not end well: it failed, or it was
   * stopped (the next mount resumes it).  0 while running or when done. */
  int resync_error;

  /* The resync at mount, once it ended. */
  struct array_resync_stats last_resync;

  /* The newest notices: items[0 .. count), seq next - count .. next - 1.
   * INSTANCE tells one mount of the volume from the next. */
  struct {
    uint64_t instance, next;
    uint32_t count;
    struct array_notice items[ARRAY_NOTICES];
  } notices;
};

/* Fill ST with the array's state at one moment (under the array's lock;
 * the counters that move without it are read atomically).  Returns 0. */
int array_get_status (struct array *a, struct array_status *st);

uint64_t array_size (const struct array *a);
uint32_t array_slots (const struct array *a);
enum member_state array_member_state (struct array *a, uint32_t slot);

#endif
