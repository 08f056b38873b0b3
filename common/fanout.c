/* Fan-out of per-member calls onto a small thread pool (see fanout.h). */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/fanout.h"

enum { FANOUT_MAX_CALLS = 32 };

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

struct job {
  void (*fn) (void *arg, unsigned i);
  void *arg;
  unsigned i;
  enum job_state state;         /* under fanout.lock */
  struct job *next;             /* in the queue */
  struct job_group *group;
};

/* The calls of one fanout_run. */
struct job_group {
  unsigned left;                /* calls not yet done (under fanout.lock) */
  pthread_cond_t done;
};

struct fanout {
  pthread_mutex_t lock;
  pthread_cond_t work;
  struct job *head, *tail;
  bool stop;
  unsigned nthreads;
  pthread_t threads[];
};

static void
queue_remove (struct fanout *f, struct job *j)
{
  struct job **pp = &f->head, *prev = NULL;
  while (*pp && *pp != j) {
    prev = *pp;
    pp = &(*pp)->next;
  }
  if (!*pp)
    return;
  *pp = j->next;
  if (f->tail == j)
    f->tail = prev;
}

/* Under fanout.lock. */
static void
finish (struct job *j)
{
  j->state = JOB_DONE;
  if (--j->group->left == 0)
    pthread_cond_signal (&j->group->done);
}

static void *
worker (void *arg)
{
  struct fanout *f = arg;
  pthread_mutex_lock (&f->lock);
  for (;;) {
    while (!f->head && !f->stop)
      pthread_cond_wait (&f->work, &f->lock);
    if (!f->head)
      break;                    /* stopping, and nothing left */
    struct job *j = f->head;
    f->head = j->next;
    if (!f->head)
      f->tail = NULL;
    j->state = JOB_RUNNING;
    pthread_mutex_unlock (&f->lock);
    j->fn (j->arg, j->i);
    pthread_mutex_lock (&f->lock);
    finish (j);
  }
  pthread_mutex_unlock (&f->lock);
  return NULL;
}

struct fanout *
fanout_new (unsigned nthreads)
{
  struct fanout *f = calloc (1, sizeof *f + nthreads * sizeof f->threads[0]);
  if (!f)
    return NULL;
  pthread_mutex_init (&f->lock, NULL);
  pthread_cond_init (&f->work, NULL);
  for (; f->nthreads < nthreads; f->nthreads++) {
    int e = pthread_create (&f->threads[f->nthreads], NULL, worker, f);
    if (e != 0) {
      fanout_free (f);
      errno = e;
      return NULL;
    }
  }
  return f;
}

void
fanout_free (struct fanout *f)
{
  if (!f)
    return;
  pthread_mutex_lock (&f->lock);
  f->stop = true;
  pthread_cond_broadcast (&f->work);
  pthread_mutex_unlock (&f->lock);
  for (unsigned t = 0; t < f->nthreads; t++)
    pthread_join (f->threads[t], NULL);
  pthread_cond_destroy (&f->work);
  pthread_mutex_destroy (&f->lock);
  free (f);
}

void
fanout_run (struct fanout *f, unsigned n, void (*fn) (void *arg, unsigned i),
            void *arg)
{
  if (!f || f->nthreads == 0 || n < 2 || n > FANOUT_MAX_CALLS) {
    for (unsigned i = 0; i < n; i++)
      fn (arg, i);
    return;
  }
  struct job jobs[FANOUT_MAX_CALLS];
  struct job_group g = { .left = n - 1 };
  pthread_cond_init (&g.done, NULL);

  pthread_mutex_lock (&f->lock);
  for (unsigned i = 1; i < n; i++) {
    struct job *j = &jobs[i];
    *j = (struct job) { .fn = fn, .arg = arg, .i = i, .state = JOB_QUEUED,
                        .group = &g };
    if (f->tail)
      f->tail->next = j;
    else
      f->head = j;
    f->tail = j;
  }
  if (n - 1 == 1)
    pthread_cond_signal (&f->work);
  else
    pthread_cond_broadcast (&f->work);
  pthread_mutex_unlock (&f->lock);

  fn (arg, 0);

  pthread_mutex_lock (&f->lock);
  /* What no pool thread has taken yet, the caller does itself. */
  for (unsigned i = 1; i < n; i++) {
    struct job *j = &jobs[i];
    if (j->state != JOB_QUEUED)
      continue;
    queue_remove (f, j);
    j->state = JOB_RUNNING;
    pthread_mutex_unlock (&f->lock);
    fn (arg, i);
    pthread_mutex_lock (&f->lock);
    finish (j);
  }
  while (g.left > 0)
    pthread_cond_wait (&g.done, &f->lock);
  pthread_mutex_unlock (&f->lock);
  pthread_cond_destroy (&g.done);
}
