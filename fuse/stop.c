/* Stopping the daemon on a signal (see the comment below). */
#include <config.h>

#include <errno.h>
#include <semaphore.h>
#include <signal.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/array.h"
#include "common/log.h"
#include "fuse/loop.h"
#include "fuse/mdfuse.h"

/* Stopping.
 *
 * SIGTERM, SIGINT and SIGHUP ask for a clean shutdown.  The handler only
 * posts a semaphore; a watcher thread decides: before the volume is
 * served it stops the mount; while serving,
 * it holds the stop as long as `volume` is open (a loop device or a
 * program still uses it: stopping would fail their I/O) and carries it
 * out when the last open closes (stop_volume_closed); then it ends the
 * FUSE loop, after which main shuts the array down cleanly (a background
 * resync stops at its next chunk; the next mount resumes it).  A program
 * that closes the volume and signals at once is served either way: its
 * RELEASE may reach us after the signal. */

static sem_t stop_sem;
static struct mdfuse *stop_mf;
/* stop_lock guards what the watcher acts on: the array (before serving),
 * the session (while serving), and whether main is shutting
 * down (after which the watcher touches nothing). */
static pthread_mutex_t stop_lock = PTHREAD_MUTEX_INITIALIZER;
static struct array *stop_array;
static struct fuse_session *stop_se;   /* set once serving */
static bool stop_closing;
static pthread_t main_thread;
static int stop_requested;
/* A stop came while the volume was open: the last close carries it out. */
static int stop_pending;

static void
on_stop_signal (int sig)
{
  (void) sig;
  sem_post (&stop_sem);
}

static void
on_wake_signal (int sig)
{
  (void) sig;                   /* only interrupts the main thread's wait */
}

/* The loop must see the exit: it waits in read() on /dev/fuse or in its
 * ring, and the signal interrupts that wait only if the loop is already
 * in it.  So it is woken again every 20 ms until main says it is shutting
 * down.  Called with stop_lock held; returns with it released. */
static void
wake_main_until_closing (void)
{
  while (!stop_closing) {
    loop_wake (stop_mf->loop);
    pthread_kill (main_thread, SIGUSR2);
    pthread_mutex_unlock (&stop_lock);
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    nanosleep (&ts, NULL);
    pthread_mutex_lock (&stop_lock);
  }
  pthread_mutex_unlock (&stop_lock);
}

static void *
stop_watcher (void *arg)
{
  (void) arg;
  for (;;) {
    while (sem_wait (&stop_sem) < 0)
      ;
    pthread_mutex_lock (&stop_lock);
    struct fuse_session *se = stop_se;
    if (stop_closing) {
      /* Already shutting down: nothing more to do. */
    }
    else if (!se) {
      __atomic_store_n (&stop_requested, 1, __ATOMIC_RELEASE);
      if (stop_array)
        array_request_stop (stop_array);
      log_warn ("stop requested before the volume is served: not "
                "mounting");
    }
    else {
      /* Pending first, then the count: a close between the two either
       * is seen here or sees the pending stop (stop_volume_closed). */
      bool was_pending = __atomic_exchange_n (&stop_pending, 1,
                                              __ATOMIC_SEQ_CST);
      int opens = __atomic_load_n (&stop_mf->open_count, __ATOMIC_SEQ_CST);
      if (opens > 0) {
        if (!was_pending)
          log_warn ("stop held: the volume is open %d time%s (a loop "
                    "device or a program uses it); mdfuse stops when it "
                    "is closed (unmount and detach it)", opens,
                    opens == 1 ? "" : "s");
      }
      else {
        __atomic_store_n (&stop_requested, 1, __ATOMIC_RELEASE);
        fuse_session_exit (se);
        wake_main_until_closing ();
        continue;
      }
    }
    pthread_mutex_unlock (&stop_lock);
  }
  return NULL;
}

int
stop_start_watcher (void)
{
  main_thread = pthread_self ();
  pthread_t t;
  int e = pthread_create (&t, NULL, stop_watcher, NULL);
  if (e) {
    log_error ("cannot start the signal thread: %s", strerror (e));
    return -1;
  }
  pthread_detach (t);
  return 0;
}

static void
install_stop_signals (void)
{
  struct sigaction sa;
  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset (&sa.sa_mask);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGHUP, &sa, NULL);
  sa.sa_handler = on_wake_signal;       /* no SA_RESTART: EINTR wakes */
  sigaction (SIGUSR2, &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction (SIGPIPE, &sa, NULL);
}

int
stop_init (struct mdfuse *mf)
{
  sem_init (&stop_sem, 0, 0);
  stop_mf = mf;
  install_stop_signals ();
  return stop_start_watcher ();
}

void
stop_set_array (struct array *a)
{
  pthread_mutex_lock (&stop_lock);
  stop_array = a;
  pthread_mutex_unlock (&stop_lock);
}

void
stop_serving (struct fuse_session *se)
{
  pthread_mutex_lock (&stop_lock);
  stop_se = se;
  pthread_mutex_unlock (&stop_lock);
}

void
stop_close (void)
{
  pthread_mutex_lock (&stop_lock);
  stop_closing = true;
  stop_se = NULL;
  stop_array = NULL;
  pthread_mutex_unlock (&stop_lock);
}

void
stop_volume_closed (void)
{
  /* After the count went to 0 (see the watcher). */
  if (__atomic_load_n (&stop_pending, __ATOMIC_SEQ_CST)) {
    log_info ("the volume is closed: carrying out the stop held until now");
    sem_post (&stop_sem);
  }
}

bool
stop_was_requested (void)
{
  return __atomic_load_n (&stop_requested, __ATOMIC_ACQUIRE) != 0;
}
