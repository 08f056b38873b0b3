/* Exclusion of overlapping byte ranges: writes that overlap in the volume
 * are applied one after the other, so every member sees them in the same
 * order; resync copies take the same lock (SPEC §4 step 3). */
#ifndef MDFUSE_RANGELOCK_H
#define MDFUSE_RANGELOCK_H

#include <pthread.h>
#include <stdint.h>

struct rangelock_entry {
  uint64_t start, end;          /* [start, end) */
  struct rangelock_entry *next;
};

struct rangelock {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct rangelock_entry *held;
};

void rangelock_init (struct rangelock *rl);
void rangelock_destroy (struct rangelock *rl);
/* Blocks until [START, END) overlaps nothing held, then holds it in E
 * (caller-provided storage, e.g. on the stack). */
void rangelock_acquire (struct rangelock *rl, struct rangelock_entry *e,
                        uint64_t start, uint64_t end);
void rangelock_release (struct rangelock *rl, struct rangelock_entry *e);
/* The range FROM holds is held by TO from now on (FROM's storage may go):
 * for a range whose holder outlives the caller's stack. */
void rangelock_move (struct rangelock *rl, struct rangelock_entry *from,
                     struct rangelock_entry *to);

#endif
