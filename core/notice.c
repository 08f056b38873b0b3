/* Notices: what happened to the array that an operator is told about
 * (mdfusectl monitor, mdadm --monitor's events).  A ring of the latest,
 * numbered, shown in the status; the monitor follows the numbers, so a
 * member that fails and is re-added between two looks is still seen. */
#include <config.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/array_impl.h"

void
array_notice (struct array *a, enum array_notice_kind kind,
              const char *subject, uint64_t value)
{
  pthread_mutex_lock (&a->notices.lock);
  struct array_notice *n = &a->notices.ring[a->notices.next % ARRAY_NOTICES];
  n->seq = a->notices.next++;
  n->time = (uint64_t) time (NULL);
  n->kind = kind;
  snprintf (n->subject, sizeof n->subject, "%s", subject ? subject : "");
  n->value = value;
  pthread_mutex_unlock (&a->notices.lock);
}

void
array_notices_copy (struct array *a, struct array_status *st)
{
  pthread_mutex_lock (&a->notices.lock);
  st->notices.instance = a->notices.instance;
  st->notices.next = a->notices.next;
  uint64_t first = a->notices.next > ARRAY_NOTICES
    ? a->notices.next - ARRAY_NOTICES : 0;
  st->notices.count = (uint32_t) (a->notices.next - first);
  for (uint64_t s = first; s < a->notices.next; s++)
    st->notices.items[s - first] = a->notices.ring[s % ARRAY_NOTICES];
  pthread_mutex_unlock (&a->notices.lock);
}

const char *
array_notice_name (enum array_notice_kind kind)
{
  static const char *const names[] = {
    [NOTICE_DEGRADED_ARRAY] = "DegradedArray",
    [NOTICE_FAIL] = "Fail",
    [NOTICE_RESYNC_FINISHED] = "ResyncFinished",
    [NOTICE_RESYNC_FAILED] = "ResyncFailed",
    [NOTICE_RECOVERY_FINISHED] = "RecoveryFinished",
    [NOTICE_CHECK_FINISHED] = "CheckFinished",
    [NOTICE_CHECK_MISMATCHES] = "CheckMismatches",
    [NOTICE_BITMAP_FAILED] = "BitmapFailed",
    [NOTICE_BITMAP_REMOVED] = "BitmapRemoved",
  };
  return (unsigned) kind < sizeof names / sizeof names[0] && names[kind]
    ? names[kind] : "Unknown";
}
