/* The fan-out pool: every call runs exactly once, the calls of one run
 * overlap in time, and many callers at once neither lose nor repeat a
 * call (a caller takes back what the pool has not started). */
#include <config.h>

#include <check.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "common/fanout.h"

struct counts {
  int hits[32];
};

static void
count_call (void *arg, unsigned i)
{
  struct counts *c = arg;
  __atomic_add_fetch (&c->hits[i], 1, __ATOMIC_RELAXED);
}

START_TEST (test_every_call_runs_once_with_or_without_a_pool)
{
  struct fanout *pools[] = { NULL, fanout_new (1), fanout_new (3) };
  ck_assert_ptr_nonnull (pools[1]);
  ck_assert_ptr_nonnull (pools[2]);
  for (size_t p = 0; p < 3; p++)
    for (unsigned n = 0; n <= 6; n++) {
      struct counts c = { 0 };
      fanout_run (pools[p], n, count_call, &c);
      for (unsigned i = 0; i < 32; i++)
        ck_assert_int_eq (c.hits[i], i < n ? 1 : 0);
    }
  fanout_free (pools[1]);
  fanout_free (pools[2]);
  fanout_free (NULL);
}
END_TEST

/* Call 0 waits (up to 5 s) for call 1 to have started: only true
 * concurrency lets it see that. */
struct rendezvous {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool one_started;
  bool zero_saw_one;
};

static void
rendezvous_call (void *arg, unsigned i)
{
  struct rendezvous *r = arg;
  pthread_mutex_lock (&r->lock);
  if (i == 1) {
    r->one_started = true;
    pthread_cond_broadcast (&r->cond);
  }
  else {
    struct timespec until;
    clock_gettime (CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    while (!r->one_started
           && pthread_cond_timedwait (&r->cond, &r->lock, &until) == 0)
      ;
    r->zero_saw_one = r->one_started;
  }
  pthread_mutex_unlock (&r->lock);
}

START_TEST (test_the_calls_of_one_run_overlap)
{
  struct fanout *f = fanout_new (1);
  ck_assert_ptr_nonnull (f);
  for (int k = 0; k < 20; k++) {
    struct rendezvous r = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                            false, false };
    fanout_run (f, 2, rendezvous_call, &r);
    ck_assert_msg (r.zero_saw_one, "call 1 had not started while call 0 ran");
  }
  fanout_free (f);
}
END_TEST

enum { CALLERS = 8, RUNS = 2000, WIDTH = 3 };

static struct fanout *shared_pool;

static void *
caller_main (void *arg)
{
  struct counts *c = arg;
  for (int k = 0; k < RUNS; k++)
    fanout_run (shared_pool, WIDTH, count_call, c);
  return NULL;
}

START_TEST (test_many_callers_at_once_lose_no_call)
{
  shared_pool = fanout_new (1);
  ck_assert_ptr_nonnull (shared_pool);
  pthread_t t[CALLERS];
  struct counts c[CALLERS] = { 0 };
  for (int i = 0; i < CALLERS; i++)
    ck_assert_int_eq (pthread_create (&t[i], NULL, caller_main, &c[i]), 0);
  for (int i = 0; i < CALLERS; i++)
    pthread_join (t[i], NULL);
  for (int i = 0; i < CALLERS; i++)
    for (unsigned j = 0; j < WIDTH; j++)
      ck_assert_int_eq (c[i].hits[j], RUNS);
  fanout_free (shared_pool);
}
END_TEST

static Suite *
fanout_suite (void)
{
  Suite *s = suite_create ("fanout");
  TCase *tc = tcase_create ("core");
  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_every_call_runs_once_with_or_without_a_pool);
  tcase_add_test (tc, test_the_calls_of_one_run_overlap);
  tcase_add_test (tc, test_many_callers_at_once_lose_no_call);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (fanout_suite ());
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
