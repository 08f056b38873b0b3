/* mdfuse: the daemon.  FUSE glue only: main parses the options, opens
 * the array (open.c), resyncs it, mounts, and serves the operations of
 * ops.c and control.c until an unmount or a stop (stop.c), then shuts the
 * array down cleanly.  No on-disk logic lives in fuse/. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/array.h"
#include "common/io_nbd.h"
#include "common/log.h"
#include "common/progress.h"
#include "common/util.h"
#include "fuse/loop.h"
#include "fuse/mdfuse.h"
#include "fuse/ring.h"
#include "fuse/wire.h"

/* The transport when -o transport is not given (docs/performance.md). */
#define DEFAULT_TRANSPORT "auto"

#define OPT(t, p) { t, offsetof (struct mdfuse_config, p), 1 }
static const struct fuse_opt mdfuse_opts[] = {
  { "bitmap=%s", offsetof (struct mdfuse_config, bitmap), 0 },
  OPT ("nobitmap", nobitmap),
  OPT ("degraded", degraded),
  OPT ("force", force),
  OPT ("auto_readd", auto_readd),
  OPT ("bitmap_same_device", bitmap_same_device),
  OPT ("nouring", nouring),
  { "parallel_writes", offsetof (struct mdfuse_config, parallel_writes), 1 },
  { "noparallel_writes", offsetof (struct mdfuse_config, parallel_writes), 0 },
  OPT ("writeback_cache", writeback_cache),
  OPT ("resync_first", resync_first),
  { "resync_min=%s", offsetof (struct mdfuse_config, resync_min), 0 },
  { "resync_max=%s", offsetof (struct mdfuse_config, resync_max), 0 },
  { "member_timeout=%s", offsetof (struct mdfuse_config, member_timeout), 0 },
  { "transport=%s", offsetof (struct mdfuse_config, transport), 0 },
  FUSE_OPT_END
};

static int
opt_proc (void *data, const char *arg, int key, struct fuse_args *outargs)
{
  struct mdfuse_config *conf = data;
  if (key != FUSE_OPT_KEY_NONOPT)
    return 1;
  if (conf->nwords < (int) (sizeof conf->words / sizeof conf->words[0]))
    conf->words[conf->nwords] = arg;
  conf->nwords++;
  if (!conf->members) {
    conf->members = strdup (arg);
    return 0;
  }
  return conf->nwords == 2 ? 1 : 0;     /* the mount point, for FUSE */
}

/* The usual slips: members given as separate arguments (mdadm's habit),
 * or the mount point first.  Says the right form; false when the
 * arguments look right. */
static bool
explain_arguments (const struct mdfuse_config *conf)
{
  int n = conf->nwords < 8 ? conf->nwords : 8;
  if (n > 2) {
    char members[1024] = "";
    size_t used = 0;
    for (int i = 0; i < n - 1 && used < sizeof members; i++)
      used += (size_t) snprintf (members + used, sizeof members - used,
                                 "%s%s", i ? ":" : "", conf->words[i]);
    log_error ("%d arguments after the options, where mdfuse takes two: the "
               "members joined by ':', then the mount point; did you mean "
               "'%s %s'?", conf->nwords, members, conf->words[n - 1]);
    return true;
  }
  struct stat st;
  if (n == 2 && stat (conf->words[0], &st) == 0 && S_ISDIR (st.st_mode)) {
    log_error ("%s is a directory: the members come first, then the mount "
               "point; did you mean '%s %s'?", conf->words[0],
               conf->words[1], conf->words[0]);
    return true;
  }
  return false;
}

/* Whether this process may use io_uring, which the ring and the session
 * loop both need: sysctl kernel.io_uring_disabled (2: nobody; 1: only
 * CAP_SYS_ADMIN and kernel.io_uring_group), a container's seccomp filter
 * or a kernel without it may forbid it.  When not, says why in WHY (LEN
 * bytes). */
static bool
uring_usable (char *why, size_t len)
{
  struct io_uring probe;
  int r = io_uring_queue_init (1, &probe, 0);
  if (r == 0) {
    io_uring_queue_exit (&probe);
    return true;
  }
  int disabled = 0;
  FILE *f = fopen ("/proc/sys/kernel/io_uring_disabled", "r");
  if (f) {
    if (fscanf (f, "%d", &disabled) != 1)
      disabled = 0;
    fclose (f);
  }
  if (r == -EPERM && disabled == 2)
    snprintf (why, len, "io_uring_setup: %s: sysctl kernel.io_uring_disabled "
              "is 2", strerror (-r));
  else if (r == -EPERM && disabled == 1)
    snprintf (why, len, "io_uring_setup: %s: sysctl kernel.io_uring_disabled "
              "is 1 (root or kernel.io_uring_group only)", strerror (-r));
  else
    snprintf (why, len, "io_uring_setup: %s", strerror (-r));
  return false;
}

static void
usage (const char *prog)
{
  printf ("Usage: %s [-f] [-d] -o bitmap=FILE[,OPTIONS] MEMBER[:MEMBER...] "
          "MOUNTPOINT\n\n"
          "A MEMBER is a file, or an NBD export: nbd://HOST[:PORT]/EXPORT, "
          "nbds://... (TLS),\nnbd+unix:///EXPORT?socket=PATH.\n\n"
          "mdfuse options:\n"
          "    -o bitmap=FILE         the write-intent bitmap file (on another "
          "filesystem)\n"
          "    -o nobitmap            run without a bitmap (full resync after a "
          "crash)\n"
          "    -o degraded            start even if a member is missing\n"
          "    -o force               accept a bitmap newer than every member\n"
          "    -o bitmap_same_device  allow the bitmap beside a member (tests "
          "only)\n"
          "    -o nouring             libfuse's loop, no io_uring: every "
          "read in a FUSE thread\n"
          "    -o member_timeout=S    an NBD member that takes longer than S "
          "seconds\n"
          "                           to answer is faulty (default %d)\n"
          "    -o auto_readd          re-add a failed NBD member when its "
          "server is back\n"
          "    -o noparallel_writes   direct writes through one open file "
          "of the volume one at a\n"
          "                           time (by default side by side, Linux "
          "6.2 and later)\n"
          "    -o writeback_cache     buffered writes to the volume wait in "
          "the kernel's page\n"
          "                           cache until written back or fsynced "
          "(for a plain\n"
          "                           losetup); a crash loses what was not "
          "fsynced\n"
          "    -o transport=T         how requests reach mdfuse: loop "
          "(/dev/fuse), ring (FUSE\n"
          "                           over io_uring, Linux 6.14 and later, "
          "enable_uring=Y) or\n"
          "                           auto (the ring when the kernel allows "
          "it; default %s)\n\n",
          prog, IO_NBD_DEFAULT_TIMEOUT, DEFAULT_TRANSPORT);
}

int
main (int argc, char **argv)
{
  log_set_program ("mdfuse");
  struct fuse_args args = FUSE_ARGS_INIT (argc, argv);
  struct mdfuse_config conf = { .parallel_writes = 1 };
  struct fuse_cmdline_opts opts = { 0 };
  int rc = 1;
  struct fuse_session *se = NULL;
  struct mdfuse mf = { 0 };
  struct ring *ring = NULL;

  /* Usage errors exit 2, with a pointer to --help (GNU's convention). */
  if (fuse_opt_parse (&args, &conf, mdfuse_opts, opt_proc) < 0
      || explain_arguments (&conf) || fuse_parse_cmdline (&args, &opts) != 0) {
    rc = 2;
    goto out;
  }
  if (opts.show_help) {
    usage (argv[0]);
    fuse_cmdline_help ();
    fuse_lowlevel_help ();
    rc = 0;
    goto out;
  }
  if (opts.show_version) {
    printf ("mdfuse %s\n", PACKAGE_VERSION);
    fuse_lowlevel_version ();
    rc = 0;
    goto out;
  }
  if (!conf.members || !opts.mountpoint) {
    log_error ("%s", !conf.members ? "no members and no mount point given"
               : "no mount point given");
    rc = 2;
    goto out;
  }
  const char *transport = conf.transport ? conf.transport
    : DEFAULT_TRANSPORT;
  if (strcmp (transport, "loop") != 0 && strcmp (transport, "ring") != 0
      && strcmp (transport, "auto") != 0) {
    log_error ("-o transport=%s: not loop, ring or auto", transport);
    rc = 2;
    goto out;
  }
  /* The ring only where the kernel allows it and io_uring may be used;
   * asked for by name, it must be had: refused here, before any file is
   * touched.  Without io_uring, libfuse's loop serves (slower: every read
   * a pread in a FUSE thread). */
  char uring_why[200] = "";
  bool have_uring = uring_usable (uring_why, sizeof uring_why);
  char ring_why[256] = "";
  bool want_ring = strcmp (transport, "loop") != 0
    && ring_enabled (ring_why, sizeof ring_why);
  if (want_ring && !have_uring) {
    snprintf (ring_why, sizeof ring_why, "%s", uring_why);
    want_ring = false;
  }
  if (strcmp (transport, "ring") == 0 && !want_ring) {
    log_error ("-o transport=ring: FUSE over io_uring is not available: %s",
               ring_why);
    goto out;
  }
  if (access ("/dev/fuse", R_OK | W_OK) != 0) {
    log_error ("/dev/fuse: %s; load the fuse module (modprobe fuse) and "
               "install fuse3", strerror (errno));
    goto out;
  }

  /* The session first: a mistyped option is refused before any file is
   * touched.  The volume holds raw data: the kernel enforces its mode
   * (owner only) even with allow_other; the source shows the members. */
  char extra[PATH_MAX + 128];
  snprintf (extra, sizeof extra, "default_permissions,subtype=mdfuse,fsname=%s",
            conf.members);
  for (char *c = extra + strlen ("default_permissions,subtype=mdfuse,fsname=");
       *c; c++)
    if (*c == ',')
      *c = ';';                 /* a comma would split the option */
  if (fuse_opt_add_arg (&args, "-o") != 0 || fuse_opt_add_arg (&args, extra) != 0)
    goto out;
  pthread_mutex_init (&mf.msg_lock, NULL);
  pthread_mutex_init (&mf.sync_lock, NULL);
  pthread_cond_init (&mf.sync_cond, NULL);
  mf.uid = getuid ();
  mf.gid = getgid ();
  mf.mount_time = time (NULL);
  se = fuse_session_new (&args, &mdfuse_ops, sizeof mdfuse_ops, &mf);
  if (!se) {
    rc = 2;                     /* an option neither FUSE nor we know */
    goto out;
  }

  if (stop_init (&mf) < 0)
    goto out_session;

  uint64_t rate_min = ARRAY_RESYNC_RATE_MIN, rate_max = ARRAY_RESYNC_RATE_MAX;
  if ((conf.resync_min && parse_size (conf.resync_min, &rate_min) < 0)
      || (conf.resync_max && parse_size (conf.resync_max, &rate_max) < 0)
      || (rate_max && rate_min > rate_max)) {
    log_error ("-o resync_min=%s,resync_max=%s: not sizes per second, or "
               "the minimum is above the maximum",
               conf.resync_min ? conf.resync_min : "",
               conf.resync_max ? conf.resync_max : "");
    rc = 2;
    goto out_session;
  }
  if (conf.member_timeout) {
    char *end;
    unsigned long t = strtoul (conf.member_timeout, &end, 10);
    if (*end || end == conf.member_timeout || t < 1 || t > 3600) {
      log_error ("-o member_timeout=%s: not a number of seconds in 1..3600",
                 conf.member_timeout);
      goto out_session;
    }
    io_nbd_set_timeout ((unsigned) t);
  }
  mf.array = mdfuse_open_array (&conf, opts.mountpoint);
  if (!mf.array)
    goto out_session;
  stop_set_array (mf.array);
  if (conf.force)
    log_warn ("-o force: going on although a newer member may be missing");

  array_set_resync_rate (mf.array, rate_min, rate_max);
  if (conf.resync_first) {
    /* -o resync_first: the mount returns once the members are in sync
     * (the resync in this thread, with a progress bar on a terminal). */
    struct array_resync_stats rs;
    struct progress prog;
    progress_init (&prog, stderr, "resync");
    array_set_resync_progress (mf.array, &prog);
    int r = array_resync (mf.array, &rs);
    array_set_resync_progress (mf.array, NULL);
    if (r < 0) {
      log_error ("resync %s; not mounting (the next mount resumes it)",
                 r == -ECANCELED ? "interrupted" : "failed");
      /* Not a clean shutdown: the bits of what was not copied stay set. */
      stop_close ();
      array_close (mf.array, false);
      mf.array = NULL;
      goto out_session;
    }
  }
  if (stop_was_requested ())
    goto out_array;

  if (fuse_session_mount (se, opts.mountpoint) != 0) {
    log_error ("%s: cannot mount", opts.mountpoint);
    goto out_array;
  }
  /* The flags libfuse cannot send (wire.c), before the first request. */
  mf.parallel_writes = wire_install (se) == 0 && conf.parallel_writes;
  mf.want_writeback_cache = conf.writeback_cache;
  if (conf.writeback_cache)
    wire_want_cached_opens ();
  fuse_daemonize (opts.foreground);
  if (!opts.foreground)
    log_use_syslog (true);
  /* After daemonizing: a fork keeps no threads. */
  if (!opts.foreground && stop_start_watcher () < 0)
    goto out_unmount;
  if (array_start_daemon (mf.array) < 0)
    goto out_unmount;
  /* The resync runs in the background while the volume is served: reads
   * of chunks it has not copied yet go to the source (SPEC §8). */
  if (!conf.resync_first && array_resync_start (mf.array) < 0)
    goto out_unmount;
  /* The session loop (loop.c), or libfuse's with -o nouring or -s, or
   * without io_uring. */
  bool want_loop = !conf.nouring && !opts.singlethread;
  if (want_loop && have_uring)
    mf.loop = loop_new (se, mf.array, opts.max_threads ? opts.max_threads
                        : 10);
  /* FUSE over io_uring (ring.c): its queues register once INIT is
   * answered, by the loop below. */
  char ring_failed_why[256] = "";
  if (want_ring && !(ring = ring_new (se, mf.array, mf.loop,
                                      opts.max_threads ? opts.max_threads
                                      : 10, strcmp (transport, "ring") == 0,
                                      ring_failed_why,
                                      sizeof ring_failed_why))
      && strcmp (transport, "ring") == 0) {
    log_error ("-o transport=ring: FUSE io_uring queues: %s",
               ring_failed_why);
    goto out_unmount;
  }
  stop_serving (se);
  log_info ("%s: serving %s (%" PRIu64 " bytes)", opts.mountpoint,
            VOLUME_NAME, array_size (mf.array));
  /* One line says which transport serves, and why (with the ring, ring.c
   * says it once its queues are registered, or refused). */
  if (!ring) {
    const char *how = mf.loop ? "the session loop" : "libfuse's loop";
    if (ring_failed_why[0])
      log_warn ("serving through %s (FUSE io_uring queues: %s)", how,
                ring_failed_why);
    else if (want_loop && !have_uring)
      log_warn ("serving through libfuse's loop, every read in a FUSE "
                "thread: no io_uring (%s)", uring_why);
    else
      log_info ("serving through %s%s%s%s", how, ring_why[0] ? " (" : "",
                ring_why, ring_why[0] ? ")" : "");
  }

  int lr;
  if (mf.loop)
    lr = loop_run (mf.loop);
  else {
    struct fuse_loop_config *lc = fuse_loop_cfg_create ();
    if (lc) {
      fuse_loop_cfg_set_clone_fd (lc, opts.clone_fd);
      fuse_loop_cfg_set_max_threads (lc, opts.max_threads);
      fuse_loop_cfg_set_idle_threads (lc, opts.max_idle_threads == UINT_MAX
                                      ? 8 : opts.max_idle_threads);
      lr = opts.singlethread ? fuse_session_loop (se)
        : fuse_session_loop_mt (se, lc);
      fuse_loop_cfg_destroy (lc);
    }
    else
      lr = fuse_session_loop (se);
  }
  /* An unmount or a stop: both end the loop normally. */
  rc = lr < 0 || ring_failed (ring) ? 1 : 0;

out_unmount:
  /* The stop watcher leaves the loop alone from here on; the loop's
   * workers finish what they hold before the members close. */
  stop_close ();
  ring_stop (ring);
  loop_free (mf.loop);
  mf.loop = NULL;
  fuse_session_unmount (se);
  ring_free (ring);
  ring = NULL;
out_array:
  /* Every request has been answered: shut down cleanly (SPEC §5). */
  stop_close ();
  if (mf.array) {
    if (array_close (mf.array, true) < 0)
      rc = 1;
    else if (rc == 0)
      log_info ("clean shutdown");
    mf.array = NULL;
  }
out_session:
  fuse_session_destroy (se);
out:
  if (rc == 2)
    fprintf (stderr, "Try 'mdfuse --help' for more information.\n");
  free (opts.mountpoint);
  free (conf.members);
  free (conf.bitmap);
  free (conf.resync_min);
  free (conf.resync_max);
  free (conf.member_timeout);
  free (conf.transport);
  fuse_opt_free_args (&args);
  return rc;
}
