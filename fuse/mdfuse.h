/* The mdfuse daemon's shared declarations: FUSE glue only (SPEC §7). */
#ifndef MDFUSE_FUSE_MDFUSE_H
#define MDFUSE_FUSE_MDFUSE_H

#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct array;

#define ROOT_INO FUSE_ROOT_ID
#define VOLUME_INO 2
#define VOLUME_NAME "volume"
#define MAX_WRITE (1u << 20)

struct mdfuse_config {
  char *members;                /* "a:b:c"; NBD URIs among them */
  char *bitmap;
  int nobitmap;
  int degraded;
  int force;
  int auto_readd;               /* re-add a failed NBD member when it is back */
  int bitmap_same_device;
  int nouring;
  int parallel_writes;          /* FOPEN_PARALLEL_DIRECT_WRITES (wire.c) */
  int writeback_cache;          /* the kernel's page cache above volume */
  char *transport;              /* loop, ring or auto (ring.c) */
  char *resync_min, *resync_max;        /* sizes per second */
  int resync_first;             /* copy before serving, as md does not */
  char *member_timeout;         /* seconds an NBD member's request may take */
  /* Every argument that is not an option, in order (the members, the
   * mount point, and any too many), for a helpful message. */
  const char *words[8];
  int nwords;
};

struct loop;

struct mdfuse {
  struct array *array;
  struct loop *loop;            /* the session loop (loop.c), or NULL:
                                   libfuse's own */
  uid_t uid;
  gid_t gid;
  time_t mount_time;
  /* FSYNC and FLUSH by generation (ops.c, sync_volume): every completed
   * write bumps write_gen; a member sync covers the writes completed
   * before it began.  sync_lock guards the rest. */
  uint64_t write_gen;
  pthread_mutex_t sync_lock;
  pthread_cond_t sync_cond;
  uint64_t synced_gen;          /* begun by the last sync that succeeded */
  bool sync_running;
  uint64_t sync_running_gen;    /* write_gen when the running sync began */
  uint64_t syncs_started;       /* the running one's number, when running */
  uint64_t syncs_done;          /* completions, to wait for the next one */
  int sync_done_err;            /* the result of the last one */
  /* Direct writes to `volume` through one open file may run side by
   * side (on unless -o noparallel_writes; wire.c, docs/performance.md). */
  bool parallel_writes;
  /* -o writeback_cache: asked for, and granted at INIT (ops.c): the opens
   * without O_DIRECT then go through the kernel's page cache. */
  bool want_writeback_cache;
  bool writeback_cache;
  /* Opens of `volume`: a stop is refused while it is in use. */
  int open_count;
  /* The answer to the last administrative command, for mdfusectl. */
  pthread_mutex_t msg_lock;
  char last_msg[512];
};

/* ops.c: the FUSE operations on the mount point and `volume`. */
extern const struct fuse_lowlevel_ops mdfuse_ops;
/* control.c: the control channel, extended attributes on `volume`. */
void op_getxattr (fuse_req_t req, fuse_ino_t ino, const char *name,
                  size_t size);
void op_listxattr (fuse_req_t req, fuse_ino_t ino, size_t size);
void op_setxattr (fuse_req_t req, fuse_ino_t ino, const char *name,
                  const char *value, size_t size, int flags);

/* open.c: check the paths, open and lock the files, assemble. */
struct array *mdfuse_open_array (struct mdfuse_config *conf,
                                 const char *mountpoint);

/* stop.c: SIGTERM, SIGINT and SIGHUP. */
int stop_init (struct mdfuse *mf);
int stop_start_watcher (void);
/* The array a stop before serving stops (NULL: none). */
void stop_set_array (struct array *a);
/* The session a stop ends, once serving. */
void stop_serving (struct fuse_session *se);
/* The last open of `volume` closed: a stop held meanwhile goes ahead. */
void stop_volume_closed (void);
/* Shutting down: the watcher touches nothing from now on. */
void stop_close (void);
bool stop_was_requested (void);

#endif
