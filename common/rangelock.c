#include <config.h>

#include "common/rangelock.h"

void
rangelock_init (struct rangelock *rl)
{
  pthread_mutex_init (&rl->lock, NULL);
  pthread_cond_init (&rl->cond, NULL);
  rl->held = NULL;
}

void
rangelock_destroy (struct rangelock *rl)
{
  pthread_mutex_destroy (&rl->lock);
  pthread_cond_destroy (&rl->cond);
}

static int
overlaps (const struct rangelock *rl, uint64_t start, uint64_t end)
{
  for (const struct rangelock_entry *e = rl->held; e; e = e->next)
    if (e->start < end && start < e->end)
      return 1;
  return 0;
}

void
rangelock_acquire (struct rangelock *rl, struct rangelock_entry *e,
                   uint64_t start, uint64_t end)
{
  pthread_mutex_lock (&rl->lock);
  while (overlaps (rl, start, end))
    pthread_cond_wait (&rl->cond, &rl->lock);
  e->start = start;
  e->end = end;
  e->next = rl->held;
  rl->held = e;
  pthread_mutex_unlock (&rl->lock);
}

void
rangelock_release (struct rangelock *rl, struct rangelock_entry *e)
{
  pthread_mutex_lock (&rl->lock);
  for (struct rangelock_entry **p = &rl->held; *p; p = &(*p)->next)
    if (*p == e) {
      *p = e->next;
      break;
    }
  pthread_cond_broadcast (&rl->cond);
  pthread_mutex_unlock (&rl->lock);
}

void
rangelock_move (struct rangelock *rl, struct rangelock_entry *from,
                struct rangelock_entry *to)
{
  pthread_mutex_lock (&rl->lock);
  *to = *from;
  for (struct rangelock_entry **p = &rl->held; *p; p = &(*p)->next)
    if (*p == from) {
      *p = to;
      break;
    }
  pthread_mutex_unlock (&rl->lock);
}
