/* faultfs: a passthrough FUSE file system that injects faults, for the
 * shell tests.  Not installed.
 *
 *     faultfs [-f] BACKDIR MOUNTPOINT [-o seed=N] [-o volatile]
 *
 * MOUNTPOINT shows the regular files of BACKDIR (a flat directory: no
 * subdirectories, links or special files) and passes create, open, read,
 * write, fsync/fdatasync, truncate, fallocate, unlink, rename, chmod,
 * chown, utimens and statfs through to them.  Every open is direct_io, so
 * every read and write a program makes reaches faultfs (no page cache in
 * between) and O_DIRECT opens work.  Locks (fcntl, flock, OFD locks) are
 * left to the kernel, which keeps them locally; copy_file_range is not
 * implemented, so the kernel falls back to reads and writes.  The mount is
 * "fuse.faultfs" (fsname and subtype faultfs).
 *
 * Control: the file MOUNTPOINT/.faultfs (not listed by readdir).
 *
 *   echo 'COMMAND' > MNT/.faultfs   applies a command; the write fails with
 *                                   EINVAL if it is not a valid one.  A
 *                                   write may hold several lines: they are
 *                                   applied in order up to the first bad one.
 *   cat MNT/.faultfs                prints the state, one "key value" line
 *                                   each (see ctl_text for the keys).
 *
 * Commands (FILE is a name in the mount root, or '*' for every file; OP is
 * pwrite, pread or fsync, where fsync covers fsync and fdatasync; ERRNO is
 * EIO, ENOSPC or EROFS):
 *
 *   fail FILE OP ERRNO [once|always|COUNT] [after N]
 *       The next COUNT calls (default once = 1; always: until cleared) of
 *       OP on FILE fail with ERRNO, after N more calls (default 0) have
 *       succeeded: "fail m0 pwrite EIO once after 4" fails the 5th write
 *       (of a '*' rule: the 5th on any file that has no rule of its own).
 *       A failed call does nothing: a failed pwrite writes nothing and a
 *       failed fsync, with the cache on, loses the file's writes since
 *       its last sync (they get back their synced contents, as after a
 *       cut that keeps nothing): Linux too marks the pages of a failed
 *       writeback clean, and a later fsync that succeeds does not bring
 *       them back.  One fail rule per FILE and OP: a new one replaces the old.
 *       A rule for the file itself is used instead of the '*' rule, which
 *       then does not see (or count) that call.  The rule goes when its
 *       COUNT is used up.
 *   delay FILE OP USEC
 *       Every OP call on FILE first sleeps USEC microseconds (at most 60 s);
 *       0 drops the rule.  Precedence as for fail.
 *   clear [FILE]
 *       Drops every rule, or those whose FILE is exactly FILE ('*' names
 *       the wildcard rules).
 *   cache on|off
 *       The volatile write cache (below).  When "cache on" returns, every
 *       write in flight has finished: the writes after it are cached.
 *       "cache off" makes everything written so far durable.
 *   cut [KEEP_PERCENT]
 *       A power cut (below); KEEP_PERCENT defaults to 50.
 *   seed N
 *       Restarts the random generator (the only random choice is which
 *       sectors a cut keeps) from N, like -o seed=N (default 1).  The same
 *       seed and the same unsynced sectors give the same cut.
 *
 * The volatile write cache (cache on, or -o volatile).  A write reaches the
 * backing file at once, so reads always see the latest data, but it is not
 * durable until the next fsync or fdatasync of that file, through any of
 * its open files (a close, FUSE FLUSH, makes nothing durable).  Until then
 * faultfs keeps, for every 512-byte sector written, the contents the
 * sector had at that file's last sync (bytes beyond the end of the file
 * then count as zeros).  An fsync drops these undo records and fdatasyncs
 * the backing file.  Changes of size (create, truncate, a write past the
 * end, fallocate) and of names (unlink, rename) are durable at once;
 * punching or zeroing a range with fallocate is durable at once too.
 *
 * The cut.  Every unsynced sector of every file keeps its new contents with
 * probability KEEP_PERCENT% (seeded) and otherwise gets back its contents
 * of the last sync, so a write is torn at 512-byte sectors and any subset
 * of them survives; files keep their sizes.  The backing files are then
 * fdatasynced and hold "the disk after the power loss".  From then on every
 * operation that reads or changes a file (open, create, read, write, fsync,
 * truncate, fallocate, unlink, rename) fails with EIO, while getattr,
 * readdir, statfs, flush, release and the control file keep working, so
 * that the program using the files can be killed and faultfs unmounted.
 *
 * Counters count FUSE requests: a large read or write may arrive as
 * several (up to the connection's max_write, normally 1 MiB).  The kernel
 * sends the writes to one file one at a time (libfuse 3.14 cannot ask for
 * parallel direct writes); reads and fsyncs run in parallel.
 *
 * Do not change BACKDIR behind faultfs's back while it is mounted: a file
 * replaced there is noticed at the next open (its undo records are
 * dropped), but not in between.  Names with white space cannot be named in
 * commands or told apart in the counters. */
#include <config.h>

#define FUSE_USE_VERSION 312

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define CTL_NAME ".faultfs"
#define SECTOR 512
#define MAX_DELAY_USEC 60000000ull
/* Sectors per block of undo storage: 128 KiB at a time, freed together. */
#define UNDO_BLOCK_SECTORS 256

enum op { OP_PWRITE, OP_PREAD, OP_FSYNC, OP_COUNT };
static const char *const op_names[OP_COUNT] = { "pwrite", "pread", "fsync" };

static const struct {
  const char *name;
  int err;
} errno_names[] = {
  { "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EROFS", EROFS },
};

/* ---------------------------------------------------------------------
 * Undo records: sector -> its contents at the file's last sync.  An
 * open-addressing hash table (linear probing) over contents kept in
 * blocks, all freed at once by the next sync.
 * --------------------------------------------------------------------- */

struct undo_block {
  struct undo_block *next;
  size_t used;
  uint8_t data[UNDO_BLOCK_SECTORS][SECTOR];
};

struct undo_map {
  uint64_t *keys;               /* sector + 1; 0 marks an empty slot */
  uint8_t **old;                /* that sector's contents at the last sync */
  size_t cap;                   /* slots: 0 or a power of two */
  size_t count;
  struct undo_block *blocks;
};

struct undo_entry {
  uint64_t sector;
  uint8_t *old;
};

static size_t
undo_slot (uint64_t sector, size_t cap)
{
  uint64_t h = sector * 0x9e3779b97f4a7c15ull;
  return (size_t) (h ^ (h >> 29)) & (cap - 1);
}

static uint8_t *
undo_find (const struct undo_map *m, uint64_t sector)
{
  if (m->cap == 0)
    return NULL;
  for (size_t i = undo_slot (sector, m->cap);; i = (i + 1) & (m->cap - 1)) {
    if (m->keys[i] == 0)
      return NULL;
    if (m->keys[i] == sector + 1)
      return m->old[i];
  }
}

static void
undo_put (struct undo_map *m, uint64_t sector, uint8_t *old)
{
  size_t i = undo_slot (sector, m->cap);
  while (m->keys[i] != 0)
    i = (i + 1) & (m->cap - 1);
  m->keys[i] = sector + 1;
  m->old[i] = old;
  m->count++;
}

/* Rebuilds the table with CAP slots, keeping only the sectors below
 * LIMIT (their contents stay where they are, in the blocks). */
static int
undo_rehash (struct undo_map *m, size_t cap, uint64_t limit)
{
  uint64_t *keys = calloc (cap, sizeof *keys);
  uint8_t **old = calloc (cap, sizeof *old);
  if (!keys || !old) {
    free (keys);
    free (old);
    return -ENOMEM;
  }
  struct undo_map n = { .keys = keys, .old = old, .cap = cap,
                        .blocks = m->blocks };
  for (size_t i = 0; i < m->cap; i++)
    if (m->keys[i] != 0 && m->keys[i] - 1 < limit)
      undo_put (&n, m->keys[i] - 1, m->old[i]);
  free (m->keys);
  free (m->old);
  *m = n;
  return 0;
}

/* Room for SECTOR's old contents, which the caller fills; NULL if out of
 * memory.  SECTOR must not be in the table yet. */
static uint8_t *
undo_add (struct undo_map *m, uint64_t sector)
{
  /* At most half full, so probe runs stay short. */
  if ((m->count + 1) * 2 > m->cap
      && undo_rehash (m, m->cap ? m->cap * 2 : 1024, UINT64_MAX) < 0)
    return NULL;
  struct undo_block *b = m->blocks;
  if (!b || b->used == UNDO_BLOCK_SECTORS) {
    b = malloc (sizeof *b);
    if (!b)
      return NULL;
    b->next = m->blocks;
    b->used = 0;
    m->blocks = b;
  }
  uint8_t *old = b->data[b->used++];
  undo_put (m, sector, old);
  return old;
}

static void
undo_free (struct undo_map *m)
{
  while (m->blocks) {
    struct undo_block *b = m->blocks;
    m->blocks = b->next;
    free (b);
  }
  free (m->keys);
  free (m->old);
  memset (m, 0, sizeof *m);
}

/* The file was cut to SIZE bytes, durably: what lay beyond is zeros now. */
static void
undo_truncate (struct undo_map *m, uint64_t size)
{
  if (m->count == 0)
    return;
  uint8_t *edge = size % SECTOR ? undo_find (m, size / SECTOR) : NULL;
  if (edge)
    memset (edge + size % SECTOR, 0, SECTOR - size % SECTOR);
  uint64_t limit = (size + SECTOR - 1) / SECTOR;
  if (undo_rehash (m, m->cap, limit) < 0) {
    /* Out of memory: drop the records in place instead (a deletion in a
     * linear-probing table needs the rebuild; an emptied sector is as
     * good, as no one reads past the end). */
    for (size_t i = 0; i < m->cap; i++)
      if (m->keys[i] != 0 && m->keys[i] - 1 >= limit)
        memset (m->old[i], 0, SECTOR);
  }
}

/* [OFF, OFF + LEN) became zeros, durably (fallocate punch or zero). */
static void
undo_zero (struct undo_map *m, uint64_t off, uint64_t len)
{
  for (size_t i = 0; i < m->cap; i++) {
    if (m->keys[i] == 0)
      continue;
    uint64_t start = (m->keys[i] - 1) * SECTOR, end = start + SECTOR;
    uint64_t a = off > start ? off : start;
    uint64_t b = off + len < end ? off + len : end;
    if (a < b)
      memset (m->old[i] + (a - start), 0, b - a);
  }
}

static int
entry_cmp (const void *a, const void *b)
{
  const struct undo_entry *x = a, *y = b;
  return x->sector < y->sector ? -1 : x->sector > y->sector;
}

/* The records in sector order (a cut must not depend on the hash). */
static struct undo_entry *
undo_sorted (const struct undo_map *m)
{
  struct undo_entry *e = malloc ((m->count ? m->count : 1) * sizeof *e);
  if (!e)
    return NULL;
  size_t k = 0;
  for (size_t i = 0; i < m->cap; i++)
    if (m->keys[i] != 0)
      e[k++] = (struct undo_entry) { m->keys[i] - 1, m->old[i] };
  qsort (e, k, sizeof *e, entry_cmp);
  return e;
}

/* ---------------------------------------------------------------------
 * State.
 * --------------------------------------------------------------------- */

/* One backing file, as long as its name exists or it is open.  All I/O
 * goes through the node's own descriptor (pread and pwrite need no
 * per-open position), so that an fsync through any open file covers the
 * writes through all of them. */
struct node {
  struct node *next;            /* in fs.nodes while it has a name */
  char *name;                   /* NULL once unlinked or replaced */
  unsigned refs;                /* fs.nodes', handles', callers' (fs.lock) */
  int fd;
  dev_t dev;
  ino_t ino;
  /* Shared by writes, exclusive for what must not race with them: sync,
   * truncate, fallocate, the cut, switching the cache.  A write takes it
   * around both the capture of the old contents and the pwrite, so that
   * no write lands after the sync that dropped its undo record. */
  pthread_rwlock_t rw;
  pthread_mutex_t undo_lock;    /* the undo map, between writers */
  struct undo_map undo;
  _Atomic uint64_t calls[OP_COUNT];
  _Atomic uint64_t held_writes; /* cached writes since the last sync */
  _Atomic uint64_t held_sectors;        /* = undo.count */
};

/* An open file: of a node, or of the control file (node NULL). */
struct handle {
  struct handle *prev, *next;   /* in fs.handles, to free them at exit */
  struct node *node;
  pthread_mutex_t lock;         /* control: text */
  char *text;                   /* control: the state, made at offset 0 */
  size_t len;
};

struct rule {
  struct rule *next;
  char *file;                   /* a name or "*" */
  enum op op;
  bool delay;                   /* a delay rule, else a fail rule */
  uint64_t usec;                /* delay */
  int err;                      /* fail: the errno */
  uint64_t skip;                /* fail: calls still to let through */
  uint64_t count;               /* fail: calls still to fail */
  bool always;                  /* fail: count does not run out */
};

static struct {
  int dirfd;
  time_t start;
  /* The nodes' table, rules, handles, the generator, cut statistics.
   * Taken before a node's rw, never while holding one. */
  pthread_mutex_t lock;
  struct node *nodes;
  struct rule *rules;
  struct handle *handles;
  atomic_uint nrules;           /* lets I/O skip the lock when 0 */
  atomic_bool cache;
  atomic_bool cut;
  uint64_t seed, rng;
  uint64_t cut_kept, cut_lost;
  _Atomic uint64_t injected, cut_errors;
} fs = { .dirfd = -1, .lock = PTHREAD_MUTEX_INITIALIZER, .seed = 1, .rng = 1 };

/* splitmix64: small and good enough to pick sectors; under fs.lock. */
static uint64_t
rng_next (void)
{
  uint64_t z = (fs.rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void
sleep_usec (uint64_t usec)
{
  struct timespec ts = { .tv_sec = (time_t) (usec / 1000000),
                         .tv_nsec = (long) (usec % 1000000) * 1000 };
  while (nanosleep (&ts, &ts) < 0 && errno == EINTR)
    continue;
}

static int
pread_all (int fd, void *buf, size_t len, off_t off, size_t *done)
{
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread (fd, (char *) buf + got, len - got, off + (off_t) got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    if (n == 0)
      break;
    got += (size_t) n;
  }
  *done = got;
  return 0;
}

static int
pwrite_all (int fd, const void *buf, size_t len, off_t off)
{
  size_t put = 0;
  while (put < len) {
    ssize_t n = pwrite (fd, (const char *) buf + put, len - put,
                        off + (off_t) put);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    put += (size_t) n;
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * Rules.  Under fs.lock.
 * --------------------------------------------------------------------- */

static struct rule *
rule_find (const char *file, enum op op, bool delay)
{
  for (struct rule *r = fs.rules; r; r = r->next)
    if (r->op == op && r->delay == delay && strcmp (r->file, file) == 0)
      return r;
  return NULL;
}

static void
rule_remove (struct rule *victim)
{
  for (struct rule **p = &fs.rules; *p; p = &(*p)->next)
    if (*p == victim) {
      *p = victim->next;
      free (victim->file);
      free (victim);
      atomic_fetch_sub (&fs.nrules, 1);
      return;
    }
}

/* The rule for NAME itself, else the '*' one (NAME NULL: the file was
 * unlinked, only '*' applies). */
static struct rule *
rule_for (const char *name, enum op op, bool delay)
{
  struct rule *r = name ? rule_find (name, op, delay) : NULL;
  return r ? r : rule_find ("*", op, delay);
}

/* One call of OP on NAME: sets *USEC to its delay and returns the errno to
 * inject, or 0. */
static int
rules_apply (const char *name, enum op op, uint64_t *usec)
{
  struct rule *d = rule_for (name, op, true);
  *usec = d ? d->usec : 0;
  struct rule *f = rule_for (name, op, false);
  if (!f)
    return 0;
  if (f->skip > 0) {
    f->skip--;
    return 0;
  }
  int err = f->err;
  if (!f->always && --f->count == 0)
    rule_remove (f);
  return err;
}

/* ---------------------------------------------------------------------
 * Nodes.
 * --------------------------------------------------------------------- */

/* "/name" -> "name"; NULL for anything but a file of the root. */
static const char *
file_name (const char *path)
{
  if (!path || path[0] != '/' || path[1] == '\0' || strchr (path + 1, '/'))
    return NULL;
  return path + 1;
}

static bool
is_ctl (const char *path)
{
  return path && strcmp (path, "/" CTL_NAME) == 0;
}

static void
node_unref_locked (struct node *n)
{
  if (--n->refs > 0)
    return;
  close (n->fd);
  undo_free (&n->undo);
  pthread_rwlock_destroy (&n->rw);
  pthread_mutex_destroy (&n->undo_lock);
  free (n->name);
  free (n);
}

static void
node_unref (struct node *n)
{
  pthread_mutex_lock (&fs.lock);
  node_unref_locked (n);
  pthread_mutex_unlock (&fs.lock);
}

static struct node *
node_lookup_locked (const char *name)
{
  for (struct node *n = fs.nodes; n; n = n->next)
    if (strcmp (n->name, name) == 0)
      return n;
  return NULL;
}

/* NAME is gone (unlinked, or renamed over, or replaced behind our back):
 * its node, if any, lives on nameless while it is open. */
static void
node_detach_locked (const char *name)
{
  for (struct node **p = &fs.nodes; *p; p = &(*p)->next)
    if (strcmp ((*p)->name, name) == 0) {
      struct node *n = *p;
      *p = n->next;
      n->next = NULL;
      free (n->name);
      n->name = NULL;
      node_unref_locked (n);
      return;
    }
}

/* The node of NAME with a reference for the caller, opening the backing
 * file with OFLAGS (O_CREAT, O_EXCL) and MODE. */
static int
node_get (const char *name, int oflags, mode_t mode, struct node **out)
{
  int base = O_CLOEXEC | O_NOFOLLOW | (oflags & (O_CREAT | O_EXCL));
  pthread_mutex_lock (&fs.lock);
  int fd = openat (fs.dirfd, name, O_RDWR | base, mode);
  if (fd < 0 && (errno == EACCES || errno == EROFS))
    fd = openat (fs.dirfd, name, O_RDONLY | base, mode);
  if (fd < 0) {
    int e = errno;
    pthread_mutex_unlock (&fs.lock);
    return e == ELOOP ? -ENOENT : -e;
  }
  struct stat st;
  int e = fstat (fd, &st) < 0 ? errno : S_ISREG (st.st_mode) ? 0 : EACCES;
  if (e != 0) {
    close (fd);
    pthread_mutex_unlock (&fs.lock);
    return -e;
  }
  struct node *n = node_lookup_locked (name);
  if (n && n->dev == st.st_dev && n->ino == st.st_ino) {
    close (fd);
    n->refs++;
    pthread_mutex_unlock (&fs.lock);
    *out = n;
    return 0;
  }
  if (n) {
    fprintf (stderr, "faultfs: %s was replaced behind faultfs's back; "
             "forgetting its unsynced writes\n", name);
    node_detach_locked (name);
  }
  n = calloc (1, sizeof *n);
  char *copy = strdup (name);
  if (!n || !copy) {
    free (n);
    free (copy);
    close (fd);
    pthread_mutex_unlock (&fs.lock);
    return -ENOMEM;
  }
  /* Writers must not starve a sync (glibc prefers readers by default). */
  pthread_rwlockattr_t ra;
  pthread_rwlockattr_init (&ra);
  pthread_rwlockattr_setkind_np (&ra,
                                 PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init (&n->rw, &ra);
  pthread_rwlockattr_destroy (&ra);
  pthread_mutex_init (&n->undo_lock, NULL);
  n->name = copy;
  n->fd = fd;
  n->dev = st.st_dev;
  n->ino = st.st_ino;
  n->refs = 2;                  /* the table's and the caller's */
  n->next = fs.nodes;
  fs.nodes = n;
  pthread_mutex_unlock (&fs.lock);
  *out = n;
  return 0;
}

/* Makes N's writes so far durable: drops its undo records, then
 * fdatasyncs (DATASYNC) or fsyncs the backing file. */
static int
node_sync (struct node *n, bool datasync)
{
  pthread_rwlock_wrlock (&n->rw);
  if (atomic_load (&fs.cut)) {
    pthread_rwlock_unlock (&n->rw);
    atomic_fetch_add (&fs.cut_errors, 1);
    return -EIO;
  }
  struct undo_map old = n->undo;
  memset (&n->undo, 0, sizeof n->undo);
  atomic_store (&n->held_writes, 0);
  atomic_store (&n->held_sectors, 0);
  pthread_rwlock_unlock (&n->rw);
  /* The backing file's page cache is "the disk" (the tests read BACKDIR
   * directly, after no real power loss); the fdatasync is for good
   * measure and may run outside the lock. */
  int r = (datasync ? fdatasync (n->fd) : fsync (n->fd)) < 0 ? -errno : 0;
  undo_free (&old);
  return r;
}

/* Before a cached write of [OFF, OFF + SIZE): records the old contents of
 * every sector it touches that has no record yet.  Under undo_lock, so
 * that of two writers of one sector the second cannot write before the
 * first has read what the sector held. */
static int
undo_capture (struct node *n, off_t off, size_t size)
{
  uint64_t first = (uint64_t) off / SECTOR;
  uint64_t last = ((uint64_t) off + size - 1) / SECTOR;
  int r = 0;
  pthread_mutex_lock (&n->undo_lock);
  while (first <= last && undo_find (&n->undo, first))
    first++;
  while (last >= first && undo_find (&n->undo, last))
    last--;
  if (first <= last) {
    size_t len = (size_t) (last - first + 1) * SECTOR;
    uint8_t *buf = malloc (len);
    size_t got = 0;
    if (!buf)
      r = -ENOMEM;
    else
      r = pread_all (n->fd, buf, len, (off_t) (first * SECTOR), &got);
    if (r == 0) {
      memset (buf + got, 0, len - got);        /* past the end: zeros */
      for (uint64_t s = first; s <= last && r == 0; s++) {
        if (undo_find (&n->undo, s))
          continue;
        uint8_t *old = undo_add (&n->undo, s);
        if (old)
          memcpy (old, buf + (s - first) * SECTOR, SECTOR);
        else
          r = -ENOMEM;
      }
      atomic_store (&n->held_sectors, n->undo.count);
    }
    free (buf);
  }
  pthread_mutex_unlock (&n->undo_lock);
  return r;
}

/* Every data call starts here: count it, refuse it after the cut, apply
 * the rules (a delay, then maybe an injected error). */
static int
io_prologue (struct node *n, enum op op)
{
  atomic_fetch_add (&n->calls[op], 1);
  if (atomic_load (&fs.cut)) {
    atomic_fetch_add (&fs.cut_errors, 1);
    return -EIO;
  }
  if (atomic_load (&fs.nrules) == 0)
    return 0;
  uint64_t usec = 0;
  int err = 0;
  pthread_mutex_lock (&fs.lock);
  err = rules_apply (n->name, op, &usec);
  pthread_mutex_unlock (&fs.lock);
  if (usec)
    sleep_usec (usec);
  if (err) {
    atomic_fetch_add (&fs.injected, 1);
    return -err;
  }
  return 0;
}

static int
node_write (struct node *n, const char *buf, size_t size, off_t off)
{
  int r = io_prologue (n, OP_PWRITE);
  if (r < 0)
    return r;
  pthread_rwlock_rdlock (&n->rw);
  bool cache = atomic_load (&fs.cache);
  if (atomic_load (&fs.cut)) {
    atomic_fetch_add (&fs.cut_errors, 1);
    r = -EIO;
  }
  else if (cache && size > 0)
    r = undo_capture (n, off, size);
  if (r == 0)
    r = pwrite_all (n->fd, buf, size, off);
  if (r == 0 && cache)
    atomic_fetch_add (&n->held_writes, 1);
  pthread_rwlock_unlock (&n->rw);
  return r < 0 ? r : (int) size;
}

static int
node_truncate (struct node *n, off_t size)
{
  int r = 0;
  pthread_rwlock_wrlock (&n->rw);
  if (atomic_load (&fs.cut)) {
    atomic_fetch_add (&fs.cut_errors, 1);
    r = -EIO;
  }
  else if (ftruncate (n->fd, size) < 0)
    r = -errno;
  else {
    undo_truncate (&n->undo, (uint64_t) size);
    atomic_store (&n->held_sectors, n->undo.count);
  }
  pthread_rwlock_unlock (&n->rw);
  return r;
}

/* ---------------------------------------------------------------------
 * The cut and the cache switch.  Under fs.lock.
 * --------------------------------------------------------------------- */

static int
node_name_cmp (const void *a, const void *b)
{
  return strcmp ((*(struct node *const *) a)->name,
                 (*(struct node *const *) b)->name);
}

/* Puts back the synced contents of N's unsynced sectors, each with
 * probability 1 - KEEP/100, and fdatasyncs the file.  WHY names the
 * event in the log ("cut", or a failed fsync). */
static void
cut_node (struct node *n, unsigned keep, const char *why)
{
  pthread_rwlock_wrlock (&n->rw);
  struct undo_map *m = &n->undo;
  struct undo_entry *e = undo_sorted (m);
  if (!e)
    fprintf (stderr, "faultfs: %s: %s: out of memory, sectors in hash "
             "order (the seed will not replay this cut)\n", why, n->name);
  struct stat st;
  uint64_t size = fstat (n->fd, &st) == 0 ? (uint64_t) st.st_size : 0;
  uint64_t kept = 0, lost = 0;
  for (size_t i = 0; i < (e ? m->count : m->cap); i++) {
    struct undo_entry x;
    if (e)
      x = e[i];
    else if (m->keys[i] != 0)
      x = (struct undo_entry) { m->keys[i] - 1, m->old[i] };
    else
      continue;
    if (rng_next () % 100 < keep) {
      kept++;
      continue;
    }
    lost++;
    /* Sizes are durable: restore only what is still inside the file. */
    uint64_t off = x.sector * SECTOR;
    if (off >= size)
      continue;
    size_t len = size - off < SECTOR ? (size_t) (size - off) : SECTOR;
    int r = pwrite_all (n->fd, x.old, len, (off_t) off);
    if (r < 0)
      fprintf (stderr, "faultfs: cut: %s: cannot restore sector %" PRIu64
               ": %s\n", n->name, x.sector, strerror (-r));
  }
  free (e);
  if (fdatasync (n->fd) < 0)
    fprintf (stderr, "faultfs: cut: %s: fdatasync: %s\n", n->name,
             strerror (errno));
  undo_free (m);
  atomic_store (&n->held_writes, 0);
  atomic_store (&n->held_sectors, 0);
  pthread_rwlock_unlock (&n->rw);
  fs.cut_kept += kept;
  fs.cut_lost += lost;
  fprintf (stderr, "faultfs: %s: %s: kept %" PRIu64 " of %" PRIu64
           " unsynced sectors\n", why, n->name, kept, kept + lost);
}

static int
cut_locked (unsigned keep)
{
  /* First refuse new I/O, then wait for what is in flight (each node's
   * rw): no write can land after its file was cut. */
  if (atomic_exchange (&fs.cut, true))
    return 0;                   /* cut already: nothing is unsynced */
  size_t count = 0;
  for (struct node *n = fs.nodes; n; n = n->next)
    count++;
  struct node **v = malloc ((count ? count : 1) * sizeof *v);
  if (!v)
    return -ENOMEM;
  count = 0;
  for (struct node *n = fs.nodes; n; n = n->next)
    v[count++] = n;
  /* By name: the draws of the generator must not depend on the order in
   * which the files were opened. */
  qsort (v, count, sizeof *v, node_name_cmp);
  for (size_t i = 0; i < count; i++)
    cut_node (v[i], keep, "cut");
  free (v);
  return 0;
}

static void
cache_switch_locked (bool on)
{
  atomic_store (&fs.cache, on);
  if (atomic_load (&fs.cut))
    return;                     /* nothing is unsynced any more */
  for (struct node *n = fs.nodes; n; n = n->next) {
    if (on) {
      /* Wait for the writes in flight, which may not have seen it. */
      pthread_rwlock_wrlock (&n->rw);
      pthread_rwlock_unlock (&n->rw);
    }
    else
      node_sync (n, true);
  }
}

/* ---------------------------------------------------------------------
 * The control file.
 * --------------------------------------------------------------------- */

static int
parse_u64 (const char *s, uint64_t *out)
{
  if (!s || *s < '0' || *s > '9')
    return -1;
  errno = 0;
  char *end;
  unsigned long long v = strtoull (s, &end, 10);
  if (errno || *end != '\0')
    return -1;
  *out = v;
  return 0;
}

static int
parse_op (const char *s, enum op *op)
{
  for (int i = 0; i < OP_COUNT; i++)
    if (strcmp (s, op_names[i]) == 0) {
      *op = (enum op) i;
      return 0;
    }
  return -1;
}

static int
parse_errno (const char *s, int *err)
{
  for (size_t i = 0; i < sizeof errno_names / sizeof errno_names[0]; i++)
    if (strcmp (s, errno_names[i].name) == 0) {
      *err = errno_names[i].err;
      return 0;
    }
  return -1;
}

static const char *
errno_name (int err)
{
  for (size_t i = 0; i < sizeof errno_names / sizeof errno_names[0]; i++)
    if (errno_names[i].err == err)
      return errno_names[i].name;
  return "?";
}

static bool
valid_file (const char *s)
{
  return strcmp (s, "*") == 0
    || (strchr (s, '/') == NULL && strlen (s) <= NAME_MAX
        && strcmp (s, ".") != 0 && strcmp (s, "..") != 0
        && strcmp (s, CTL_NAME) != 0);
}

/* Sets the rule of T's FILE, OP and kind, replacing the one there was. */
static int
rule_set_locked (const struct rule *t)
{
  struct rule *r = rule_find (t->file, t->op, t->delay);
  if (r) {
    char *file = r->file;
    struct rule *next = r->next;
    *r = *t;
    r->file = file;
    r->next = next;
    return 0;
  }
  r = malloc (sizeof *r);
  char *file = strdup (t->file);
  if (!r || !file) {
    free (r);
    free (file);
    return -ENOMEM;
  }
  *r = *t;
  r->file = file;
  r->next = fs.rules;
  fs.rules = r;
  atomic_fetch_add (&fs.nrules, 1);
  return 0;
}

/* One command line, split in place.  0, or -EINVAL (-ENOMEM). */
static int
ctl_command (char *line)
{
  char *tok[8], *save = NULL;
  int nt = 0;
  for (char *t = strtok_r (line, " \t\r", &save); t;
       t = strtok_r (NULL, " \t\r", &save)) {
    if (nt == 8)
      return -EINVAL;
    tok[nt++] = t;
  }
  if (nt == 0)
    return 0;                   /* a blank line */
  const char *cmd = tok[0];
  int r = 0;
  uint64_t v;

  if (strcmp (cmd, "fail") == 0) {
    struct rule t = { .count = 1 };
    if (nt < 4 || !valid_file (tok[1]) || parse_op (tok[2], &t.op) < 0
        || parse_errno (tok[3], &t.err) < 0)
      return -EINVAL;
    int i = 4;
    if (i < nt && strcmp (tok[i], "after") != 0) {
      if (strcmp (tok[i], "always") == 0)
        t.always = true;
      else if (strcmp (tok[i], "once") != 0
               && (parse_u64 (tok[i], &t.count) < 0 || t.count == 0))
        return -EINVAL;
      i++;
    }
    if (i < nt) {
      if (strcmp (tok[i], "after") != 0 || i + 1 >= nt
          || parse_u64 (tok[i + 1], &t.skip) < 0)
        return -EINVAL;
      i += 2;
    }
    if (i != nt)
      return -EINVAL;
    t.file = tok[1];
    pthread_mutex_lock (&fs.lock);
    r = rule_set_locked (&t);
    pthread_mutex_unlock (&fs.lock);
  }
  else if (strcmp (cmd, "delay") == 0) {
    struct rule t = { .delay = true };
    if (nt != 4 || !valid_file (tok[1]) || parse_op (tok[2], &t.op) < 0
        || parse_u64 (tok[3], &t.usec) < 0 || t.usec > MAX_DELAY_USEC)
      return -EINVAL;
    t.file = tok[1];
    pthread_mutex_lock (&fs.lock);
    if (t.usec > 0)
      r = rule_set_locked (&t);
    else {
      struct rule *old = rule_find (t.file, t.op, true);
      if (old)
        rule_remove (old);
    }
    pthread_mutex_unlock (&fs.lock);
  }
  else if (strcmp (cmd, "clear") == 0) {
    if (nt > 2)
      return -EINVAL;
    pthread_mutex_lock (&fs.lock);
    for (struct rule *x = fs.rules, *next; x; x = next) {
      next = x->next;
      if (nt == 1 || strcmp (x->file, tok[1]) == 0)
        rule_remove (x);
    }
    pthread_mutex_unlock (&fs.lock);
  }
  else if (strcmp (cmd, "cache") == 0) {
    if (nt != 2 || (strcmp (tok[1], "on") != 0 && strcmp (tok[1], "off") != 0))
      return -EINVAL;
    pthread_mutex_lock (&fs.lock);
    cache_switch_locked (strcmp (tok[1], "on") == 0);
    pthread_mutex_unlock (&fs.lock);
  }
  else if (strcmp (cmd, "cut") == 0) {
    v = 50;
    if (nt > 2 || (nt == 2 && (parse_u64 (tok[1], &v) < 0 || v > 100)))
      return -EINVAL;
    pthread_mutex_lock (&fs.lock);
    r = cut_locked ((unsigned) v);
    pthread_mutex_unlock (&fs.lock);
  }
  else if (strcmp (cmd, "seed") == 0) {
    if (nt != 2 || parse_u64 (tok[1], &v) < 0)
      return -EINVAL;
    pthread_mutex_lock (&fs.lock);
    fs.seed = fs.rng = v;
    pthread_mutex_unlock (&fs.lock);
  }
  else
    return -EINVAL;
  return r;
}

/* A write to the control file: one command a line. */
static int
ctl_write (const char *buf, size_t size)
{
  if (memchr (buf, '\0', size))
    return -EINVAL;
  char *text = strndup (buf, size);
  if (!text)
    return -ENOMEM;
  int r = 0;
  char *save = NULL;
  for (char *line = strtok_r (text, "\n", &save); line && r == 0;
       line = strtok_r (NULL, "\n", &save)) {
    char *shown = strdup (line);
    r = ctl_command (line);
    fprintf (stderr, "faultfs: %s%s%s%s\n", r == 0 ? "" : "refused: ",
             shown ? shown : "(command)", r == 0 ? "" : ": ",
             r == 0 ? "" : strerror (-r));
    free (shown);
  }
  free (text);
  return r < 0 ? r : (int) size;
}

/* The state, one "key value" a line:
 *   seed N, cache 0|1, cut 0|1, rules N
 *   held_writes    writes cached and not yet covered by an fsync
 *   held_sectors   512-byte sectors written since their file's last sync:
 *                  what a cut may lose
 *   held_bytes     held_sectors * 512, also the memory of the undo records
 *   injected_errors  errors returned by fail rules
 *   cut_errors     calls refused since the cut
 *   cut_kept_sectors, cut_lost_sectors  what the cut did
 *   pwrite:FILE, pread:FILE, fsync:FILE  calls (FUSE requests) on FILE,
 *                  failed or not, for every file opened since the mount
 *   held_writes:FILE, held_sectors:FILE  as above, for FILE
 *   rule.K         a rule, as the command that would set it */
static char *
ctl_text (size_t *len)
{
  char *text = NULL;
  size_t size = 0;
  FILE *f = open_memstream (&text, &size);
  if (!f)
    return NULL;
  pthread_mutex_lock (&fs.lock);
  uint64_t hw = 0, hs = 0;
  for (struct node *n = fs.nodes; n; n = n->next) {
    hw += atomic_load (&n->held_writes);
    hs += atomic_load (&n->held_sectors);
  }
  fprintf (f, "seed %" PRIu64 "\ncache %d\ncut %d\nrules %u\n", fs.seed,
           (int) atomic_load (&fs.cache), (int) atomic_load (&fs.cut),
           atomic_load (&fs.nrules));
  fprintf (f, "held_writes %" PRIu64 "\nheld_sectors %" PRIu64
           "\nheld_bytes %" PRIu64 "\n", hw, hs, hs * SECTOR);
  fprintf (f, "injected_errors %" PRIu64 "\ncut_errors %" PRIu64
           "\ncut_kept_sectors %" PRIu64 "\ncut_lost_sectors %" PRIu64 "\n",
           atomic_load (&fs.injected), atomic_load (&fs.cut_errors),
           fs.cut_kept, fs.cut_lost);
  for (struct node *n = fs.nodes; n; n = n->next) {
    for (int i = 0; i < OP_COUNT; i++)
      fprintf (f, "%s:%s %" PRIu64 "\n", op_names[i], n->name,
               atomic_load (&n->calls[i]));
    fprintf (f, "held_writes:%s %" PRIu64 "\nheld_sectors:%s %" PRIu64 "\n",
             n->name, atomic_load (&n->held_writes), n->name,
             atomic_load (&n->held_sectors));
  }
  unsigned k = 0;
  for (struct rule *r = fs.rules; r; r = r->next, k++) {
    if (r->delay)
      fprintf (f, "rule.%u delay %s %s %" PRIu64 "\n", k, r->file,
               op_names[r->op], r->usec);
    else if (r->always)
      fprintf (f, "rule.%u fail %s %s %s always after %" PRIu64 "\n", k,
               r->file, op_names[r->op], errno_name (r->err), r->skip);
    else
      fprintf (f, "rule.%u fail %s %s %s %" PRIu64 " after %" PRIu64 "\n",
               k, r->file, op_names[r->op], errno_name (r->err), r->count,
               r->skip);
  }
  pthread_mutex_unlock (&fs.lock);
  if (fclose (f) != 0) {
    free (text);
    return NULL;
  }
  *len = size;
  return text;
}

/* ---------------------------------------------------------------------
 * Open files.
 * --------------------------------------------------------------------- */

static struct handle *
handle_new (struct node *n)
{
  struct handle *h = calloc (1, sizeof *h);
  if (!h)
    return NULL;
  h->node = n;
  pthread_mutex_init (&h->lock, NULL);
  pthread_mutex_lock (&fs.lock);
  h->next = fs.handles;
  if (h->next)
    h->next->prev = h;
  fs.handles = h;
  pthread_mutex_unlock (&fs.lock);
  return h;
}

static void
handle_free_locked (struct handle *h)
{
  if (h->prev)
    h->prev->next = h->next;
  else
    fs.handles = h->next;
  if (h->next)
    h->next->prev = h->prev;
  if (h->node)
    node_unref_locked (h->node);
  pthread_mutex_destroy (&h->lock);
  free (h->text);
  free (h);
}

static struct handle *
handle_of (const struct fuse_file_info *fi)
{
  return fi ? (struct handle *) (uintptr_t) fi->fh : NULL;
}

static int
ctl_read (struct handle *h, char *buf, size_t size, off_t off)
{
  pthread_mutex_lock (&h->lock);
  if (off == 0 || !h->text) {
    /* A read from the start is a new look at the state. */
    free (h->text);
    h->text = ctl_text (&h->len);
    if (!h->text) {
      pthread_mutex_unlock (&h->lock);
      return -ENOMEM;
    }
  }
  size_t n = 0;
  if ((uint64_t) off < h->len) {
    n = h->len - (size_t) off;
    if (n > size)
      n = size;
    memcpy (buf, h->text + off, n);
  }
  pthread_mutex_unlock (&h->lock);
  return (int) n;
}

static int
refuse_after_cut (void)
{
  atomic_fetch_add (&fs.cut_errors, 1);
  return -EIO;
}

static int
open_common (const char *name, int oflags, mode_t mode,
             struct fuse_file_info *fi)
{
  struct node *n = NULL;
  if (name) {
    int r = node_get (name, oflags, mode, &n);
    if (r < 0)
      return r;
    if (fi->flags & O_TRUNC) {
      r = node_truncate (n, 0);
      if (r < 0) {
        node_unref (n);
        return r;
      }
    }
  }
  struct handle *h = handle_new (n);
  if (!h) {
    if (n)
      node_unref (n);
    return -ENOMEM;
  }
  fi->fh = (uintptr_t) h;
  /* Every read and write comes to us: no page cache to hide them. */
  fi->direct_io = 1;
  fi->keep_cache = 0;
  return 0;
}

/* ---------------------------------------------------------------------
 * FUSE operations.
 * --------------------------------------------------------------------- */

static void
ctl_stat (struct stat *st)
{
  memset (st, 0, sizeof *st);
  st->st_mode = S_IFREG | 0600;
  st->st_nlink = 1;
  st->st_uid = getuid ();
  st->st_gid = getgid ();
  st->st_atime = st->st_mtime = st->st_ctime = fs.start;
}

static int
ffs_getattr (const char *path, struct stat *st, struct fuse_file_info *fi)
{
  struct handle *h = handle_of (fi);
  if (h && h->node)
    return fstat (h->node->fd, st) < 0 ? -errno : 0;
  if (h || is_ctl (path)) {
    ctl_stat (st);
    return 0;
  }
  if (path && strcmp (path, "/") == 0)
    return fstat (fs.dirfd, st) < 0 ? -errno : 0;
  const char *name = file_name (path);
  if (!name)
    return -ENOENT;
  if (fstatat (fs.dirfd, name, st, AT_SYMLINK_NOFOLLOW) < 0)
    return -errno;
  return S_ISREG (st->st_mode) ? 0 : -ENOENT;
}

static int
ffs_readdir (const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
             struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
  /* The root is the only directory (nullpath_ok: its path may be NULL). */
  if (path && strcmp (path, "/") != 0)
    return -ENOTDIR;
  int fd = openat (fs.dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  DIR *d = fdopendir (fd);
  if (!d) {
    int e = errno;
    close (fd);
    return -e;
  }
  fill (buf, ".", NULL, 0, 0);
  fill (buf, "..", NULL, 0, 0);
  struct dirent *de;
  while ((de = readdir (d)) != NULL) {
    struct stat st;
    if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0
        || strcmp (de->d_name, CTL_NAME) == 0)
      continue;
    if (de->d_type != DT_REG
        && (de->d_type != DT_UNKNOWN
            || fstatat (fs.dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0
            || !S_ISREG (st.st_mode)))
      continue;
    memset (&st, 0, sizeof st);
    st.st_mode = S_IFREG;
    if (fill (buf, de->d_name, &st, 0, 0) != 0)
      break;
  }
  closedir (d);
  return 0;
}

static int
ffs_open (const char *path, struct fuse_file_info *fi)
{
  if (is_ctl (path))
    return open_common (NULL, 0, 0, fi);
  if (atomic_load (&fs.cut))
    return refuse_after_cut ();
  const char *name = file_name (path);
  return name ? open_common (name, 0, 0, fi) : -ENOENT;
}

static int
ffs_create (const char *path, mode_t mode, struct fuse_file_info *fi)
{
  if (is_ctl (path))
    return -EEXIST;
  if (atomic_load (&fs.cut))
    return refuse_after_cut ();
  const char *name = file_name (path);
  if (!name)
    return -ENOENT;
  return open_common (name, O_CREAT | (fi->flags & O_EXCL), mode, fi);
}

static int
ffs_read (const char *path, char *buf, size_t size, off_t off,
          struct fuse_file_info *fi)
{
  struct handle *h = handle_of (fi);
  if (!h->node)
    return ctl_read (h, buf, size, off);
  int r = io_prologue (h->node, OP_PREAD);
  if (r < 0)
    return r;
  size_t got = 0;
  r = pread_all (h->node->fd, buf, size, off, &got);
  return r < 0 ? r : (int) got;
}

static int
ffs_write (const char *path, const char *buf, size_t size, off_t off,
           struct fuse_file_info *fi)
{
  struct handle *h = handle_of (fi);
  if (!h->node)
    return ctl_write (buf, size);
  return node_write (h->node, buf, size, off);
}

static int
ffs_flush (const char *path, struct fuse_file_info *fi)
{
  return 0;                     /* a close makes nothing durable */
}

static int
ffs_release (const char *path, struct fuse_file_info *fi)
{
  pthread_mutex_lock (&fs.lock);
  handle_free_locked (handle_of (fi));
  pthread_mutex_unlock (&fs.lock);
  return 0;
}

static int
ffs_fsync (const char *path, int datasync, struct fuse_file_info *fi)
{
  struct handle *h = handle_of (fi);
  if (!h->node)
    return 0;
  int r = io_prologue (h->node, OP_FSYNC);
  if (r < 0 && !atomic_load (&fs.cut)) {
    /* A writeback error, as Linux has it: the writes since the last sync
     * are gone from the disk (their pages are no longer dirty), and a
     * later fsync that succeeds does not bring them back. */
    pthread_mutex_lock (&fs.lock);
    cut_node (h->node, 0, "failed fsync");
    pthread_mutex_unlock (&fs.lock);
  }
  return r < 0 ? r : node_sync (h->node, datasync != 0);
}

static int
ffs_truncate (const char *path, off_t size, struct fuse_file_info *fi)
{
  struct handle *h = handle_of (fi);
  if ((h && !h->node) || is_ctl (path))
    return 0;                   /* "> .faultfs" truncates it */
  if (atomic_load (&fs.cut))
    return refuse_after_cut ();
  if (h)
    return node_truncate (h->node, size);
  const char *name = file_name (path);
  if (!name)
    return -ENOENT;
  struct node *n;
  int r = node_get (name, 0, 0, &n);
  if (r == 0) {
    r = node_truncate (n, size);
    node_unref (n);
  }
  return r;
}

static int
ffs_fallocate (const char *path, int mode, off_t off, off_t len,
               struct fuse_file_info *fi)
{
  struct handle *h = handle_of (fi);
  if (!h || !h->node)
    return -EOPNOTSUPP;
  /* Modes that move data (collapse, insert) would move undo records too. */
  int zeroing = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
  if ((mode & ~(FALLOC_FL_KEEP_SIZE | zeroing)) != 0)
    return -EOPNOTSUPP;
  struct node *n = h->node;
  int r = 0;
  pthread_rwlock_wrlock (&n->rw);
  if (atomic_load (&fs.cut)) {
    atomic_fetch_add (&fs.cut_errors, 1);
    r = -EIO;
  }
  else if (fallocate (n->fd, mode, off, len) < 0)
    r = -errno;
  else if (mode & zeroing)
    undo_zero (&n->undo, (uint64_t) off, (uint64_t) len);
  pthread_rwlock_unlock (&n->rw);
  return r;
}

static int
ffs_unlink (const char *path)
{
  if (is_ctl (path))
    return -EPERM;
  if (atomic_load (&fs.cut))
    return refuse_after_cut ();
  const char *name = file_name (path);
  if (!name)
    return -ENOENT;
  int r = 0;
  pthread_mutex_lock (&fs.lock);
  if (unlinkat (fs.dirfd, name, 0) < 0)
    r = -errno;
  else
    node_detach_locked (name);
  pthread_mutex_unlock (&fs.lock);
  return r;
}

static int
ffs_rename (const char *from, const char *to, unsigned int flags)
{
  if (is_ctl (from) || is_ctl (to))
    return -EPERM;
  if (flags & RENAME_EXCHANGE)
    return -EINVAL;
  if (atomic_load (&fs.cut))
    return refuse_after_cut ();
  const char *a = file_name (from), *b = file_name (to);
  if (!a || !b)
    return -ENOENT;
  int r = 0;
  pthread_mutex_lock (&fs.lock);
  if (renameat2 (fs.dirfd, a, fs.dirfd, b, flags) < 0)
    r = -errno;
  else if (strcmp (a, b) != 0) {
    node_detach_locked (b);
    struct node *n = node_lookup_locked (a);
    char *copy = n ? strdup (b) : NULL;
    if (copy) {
      free (n->name);
      n->name = copy;
    }
    else if (n)
      node_detach_locked (a);   /* out of memory: forget it */
  }
  pthread_mutex_unlock (&fs.lock);
  return r;
}

static int
ffs_chmod (const char *path, mode_t mode, struct fuse_file_info *fi)
{
  struct handle *h = handle_of (fi);
  if ((h && !h->node) || is_ctl (path))
    return -EPERM;
  if (h)
    return fchmod (h->node->fd, mode) < 0 ? -errno : 0;
  const char *name = file_name (path);
  if (!name)
    return -ENOENT;
  return fchmodat (fs.dirfd, name, mode, 0) < 0 ? -errno : 0;
}

static int
ffs_chown (const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
  struct handle *h = handle_of (fi);
  if ((h && !h->node) || is_ctl (path))
    return -EPERM;
  if (h)
    return fchown (h->node->fd, uid, gid) < 0 ? -errno : 0;
  const char *name = file_name (path);
  if (!name)
    return -ENOENT;
  return fchownat (fs.dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0
    ? -errno : 0;
}

static int
ffs_utimens (const char *path, const struct timespec tv[2],
             struct fuse_file_info *fi)
{
  struct handle *h = handle_of (fi);
  if ((h && !h->node) || is_ctl (path))
    return 0;                   /* "touch .faultfs" is harmless */
  if (h)
    return futimens (h->node->fd, tv) < 0 ? -errno : 0;
  const char *name = file_name (path);
  if (!name)
    return -ENOENT;
  return utimensat (fs.dirfd, name, tv, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static int
ffs_statfs (const char *path, struct statvfs *st)
{
  return fstatvfs (fs.dirfd, st) < 0 ? -errno : 0;
}

static void *
ffs_init (struct fuse_conn_info *conn, struct fuse_config *cfg)
{
  cfg->direct_io = 1;
  /* An unlinked open file stays usable through its handle (no
   * .fuse_hidden files in BACKDIR), so the handle-based calls may come
   * without a path. */
  cfg->hard_remove = 1;
  cfg->nullpath_ok = 1;
  /* Nothing cached in the kernel: what the tests see is what is here. */
  cfg->entry_timeout = 0;
  cfg->attr_timeout = 0;
  cfg->negative_timeout = 0;
  conn->want &= ~(unsigned) FUSE_CAP_WRITEBACK_CACHE;
  return NULL;
}

static const struct fuse_operations ffs_ops = {
  .init = ffs_init,
  .getattr = ffs_getattr,
  .readdir = ffs_readdir,
  .open = ffs_open,
  .create = ffs_create,
  .read = ffs_read,
  .write = ffs_write,
  .flush = ffs_flush,
  .release = ffs_release,
  .fsync = ffs_fsync,
  .truncate = ffs_truncate,
  .fallocate = ffs_fallocate,
  .unlink = ffs_unlink,
  .rename = ffs_rename,
  .chmod = ffs_chmod,
  .chown = ffs_chown,
  .utimens = ffs_utimens,
  .statfs = ffs_statfs,
};

/* ---------------------------------------------------------------------
 * main.
 * --------------------------------------------------------------------- */

struct options {
  char *backdir;
  char *seed;
  int volatile_cache;
  int help;
};

enum { KEY_HELP };

static const struct fuse_opt faultfs_opts[] = {
  { "seed=%s", offsetof (struct options, seed), 0 },
  { "volatile", offsetof (struct options, volatile_cache), 1 },
  FUSE_OPT_KEY ("-h", KEY_HELP),
  FUSE_OPT_KEY ("--help", KEY_HELP),
  FUSE_OPT_END
};

static int
opt_proc (void *data, const char *arg, int key, struct fuse_args *outargs)
{
  struct options *o = data;
  if (key == KEY_HELP) {
    o->help = 1;
    return 0;
  }
  if (key == FUSE_OPT_KEY_NONOPT && !o->backdir) {
    o->backdir = strdup (arg);
    return o->backdir ? 0 : -1;
  }
  return 1;
}

static void
usage (FILE *f)
{
  fprintf (f, "Usage: faultfs [-f] BACKDIR MOUNTPOINT [-o seed=N] "
           "[-o volatile] [FUSE OPTIONS]\n"
           "A passthrough of BACKDIR that injects faults, driven through "
           "MOUNTPOINT/" CTL_NAME ";\nsee the comment at the top of "
           "tests/faultfs.c.\n");
}

static void
free_all (void)
{
  pthread_mutex_lock (&fs.lock);
  /* Handles first: they hold references to the nodes. */
  while (fs.handles)
    handle_free_locked (fs.handles);
  while (fs.nodes)
    node_detach_locked (fs.nodes->name);
  while (fs.rules)
    rule_remove (fs.rules);
  pthread_mutex_unlock (&fs.lock);
}

int
main (int argc, char **argv)
{
  struct fuse_args args = FUSE_ARGS_INIT (argc, argv);
  struct options o = { 0 };
  int rc = 1;

  if (fuse_opt_parse (&args, &o, faultfs_opts, opt_proc) < 0)
    goto out;
  if (o.help) {
    usage (stdout);
    rc = 0;
    goto out;
  }
  if (!o.backdir) {
    usage (stderr);
    goto out;
  }
  if (o.seed && parse_u64 (o.seed, &fs.seed) < 0) {
    fprintf (stderr, "faultfs: bad seed: %s\n", o.seed);
    goto out;
  }
  fs.rng = fs.seed;
  atomic_store (&fs.cache, o.volatile_cache != 0);
  fs.dirfd = open (o.backdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fs.dirfd < 0) {
    fprintf (stderr, "faultfs: %s: %s\n", o.backdir, strerror (errno));
    goto out;
  }
  fs.start = time (NULL);
  fprintf (stderr, "faultfs: %s, seed %" PRIu64 ", cache %s\n", o.backdir,
           fs.seed, o.volatile_cache ? "on" : "off");
  /* Before the caller's options, which may override them.  Threads: a
   * delay rule sleeps in one, and mdfuse keeps many requests in flight.
   * max_idle_threads: libfuse 3.14 complains when it is left unset. */
  if (fuse_opt_insert_arg (&args, 1, "-omax_threads=64,max_idle_threads=10,"
                           "fsname=faultfs,subtype=faultfs,"
                           "default_permissions") != 0)
    goto out;
  rc = fuse_main (args.argc, args.argv, &ffs_ops, NULL);
  free_all ();

out:
  if (fs.dirfd >= 0)
    close (fs.dirfd);
  free (o.backdir);
  free (o.seed);
  fuse_opt_free_args (&args);
  return rc;
}
