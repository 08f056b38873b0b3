/* Worker threads: see workers.h. */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "fuse/workers.h"

struct workers {
  work_fn fn;
  void *arg;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct work *head, *tail;
  unsigned jobs;                /* queued or being run */
  bool stopping;
  unsigned nthreads;
  pthread_t *threads;
};

static void *
worker_main (void *p)
{
  struct workers *ws = p;
  pthread_mutex_lock (&ws->lock);
  for (;;) {
    while (!ws->head && !ws->stopping)
      pthread_cond_wait (&ws->cond, &ws->lock);
    struct work *w = ws->head;
    if (!w)
      break;                    /* stopping, and nothing left to do */
    ws->head = w->next;
    if (!ws->head)
      ws->tail = NULL;
    pthread_mutex_unlock (&ws->lock);
    ws->fn (ws->arg, w);
    pthread_mutex_lock (&ws->lock);
    assert (ws->jobs > 0);
    ws->jobs--;
  }
  pthread_mutex_unlock (&ws->lock);
  return NULL;
}

struct workers *
workers_new (unsigned n, work_fn fn, void *arg, const char **why)
{
  if (n == 0)
    n = 1;
  struct workers *ws = calloc (1, sizeof *ws);
  if (ws)
    ws->threads = calloc (n, sizeof *ws->threads);
  if (!ws || !ws->threads) {
    free (ws);
    *why = "out of memory";
    errno = ENOMEM;
    return NULL;
  }
  ws->fn = fn;
  ws->arg = arg;
  pthread_mutex_init (&ws->lock, NULL);
  pthread_cond_init (&ws->cond, NULL);
  for (; ws->nthreads < n; ws->nthreads++) {
    int err = pthread_create (&ws->threads[ws->nthreads], NULL, worker_main,
                              ws);
    if (err) {
      workers_free (ws);
      *why = "cannot start the worker threads";
      errno = err;
      return NULL;
    }
  }
  return ws;
}

void
workers_push (struct workers *ws, struct work *w)
{
  w->next = NULL;
  pthread_mutex_lock (&ws->lock);
  if (ws->tail)
    ws->tail->next = w;
  else
    ws->head = w;
  ws->tail = w;
  ws->jobs++;
  pthread_cond_signal (&ws->cond);
  pthread_mutex_unlock (&ws->lock);
}

bool
workers_idle (struct workers *ws)
{
  pthread_mutex_lock (&ws->lock);
  bool idle = ws->jobs == 0;
  pthread_mutex_unlock (&ws->lock);
  return idle;
}

void
workers_stop (struct workers *ws)
{
  if (!ws)
    return;
  pthread_mutex_lock (&ws->lock);
  ws->stopping = true;
  pthread_cond_broadcast (&ws->cond);
  pthread_mutex_unlock (&ws->lock);
  for (unsigned i = 0; i < ws->nthreads; i++)
    pthread_join (ws->threads[i], NULL);
  ws->nthreads = 0;
}

void
workers_free (struct workers *ws)
{
  if (!ws)
    return;
  workers_stop (ws);
  pthread_cond_destroy (&ws->cond);
  pthread_mutex_destroy (&ws->lock);
  free (ws->threads);
  free (ws);
}
