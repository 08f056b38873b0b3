/* Unit tests of common/util: sizes as users type them. */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static const struct {
  const char *in;
  int r;
  uint64_t v;
} sizes[] = {
  { "0", 0, 0 },
  { "4096", 0, 4096 },
  { "4K", 0, 4096 },
  { "4k", 0, 4096 },
  { "4KiB", 0, 4096 },
  { "4KB", 0, 4096 },
  { "1M", 0, 1ull << 20 },
  { "1.5G", 0, 3ull << 29 },
  { "1.5K", 0, 1536 },
  { "0.5M", 0, 1ull << 19 },
  { "2T", 0, 2ull << 40 },
  { "1P", 0, 1ull << 50 },
  { "15E", 0, 15ull << 60 },
  { "15.5E", 0, 31ull << 59 },
  { "16E", -ERANGE, 0 },
  { "18446744073709551615", 0, UINT64_MAX },
  { "18446744073709551616", -ERANGE, 0 },
  { "99999999999999999999999", -ERANGE, 0 },
  { "0.1K", -EINVAL, 0 },      /* 102.4 bytes */
  { "1.5", -EINVAL, 0 },       /* half a byte */
  { "", -EINVAL, 0 },
  { "K", -EINVAL, 0 },
  { "-1", -EINVAL, 0 },
  { "1.", -EINVAL, 0 },
  { "1.2.3", -EINVAL, 0 },
  { "4X", -EINVAL, 0 },
  { "4 K", -EINVAL, 0 },
  { "4Ki", 0, 4096 },
  { "4iB", -EINVAL, 0 },
};

START_TEST (test_parse_size)
{
  uint64_t v = 12345;
  int r = parse_size (sizes[_i].in, &v);
  ck_assert_msg (r == sizes[_i].r, "\"%s\": %d, not %d", sizes[_i].in, r,
                 sizes[_i].r);
  if (r == 0)
    ck_assert_msg (v == sizes[_i].v, "\"%s\": %llu, not %llu", sizes[_i].in,
                   (unsigned long long) v, (unsigned long long) sizes[_i].v);
  else
    ck_assert_msg (v == 12345, "\"%s\": the result changed on error",
                   sizes[_i].in);
}
END_TEST

START_TEST (test_size_error_says_why)
{
  ck_assert_ptr_nonnull (strstr (size_error (-ERANGE), "16 EiB"));
  ck_assert_ptr_nonnull (strstr (size_error (-EINVAL), "not a size"));
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("util");
  TCase *tc = tcase_create ("sizes");
  tcase_add_loop_test (tc, test_parse_size, 0,
                       (int) (sizeof sizes / sizeof sizes[0]));
  tcase_add_test (tc, test_size_error_says_why);
  suite_add_tcase (s, tc);
  SRunner *sr = srunner_create (s);
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
