/* Unit tests of common/util: sizes as users type them. */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/io.h"
#include "common/io_nbd.h"
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

/* Member lists (SPEC §7): names joined by ':', an NBD URI's own ':'
 * (port, IPv6 address, user's password) kept in it. */
static const struct {
  const char *list;
  const char *names[5];
} lists[] = {
  { "/a:/b", { "/a", "/b" } },
  { "a::b:", { "a", "b" } },
  { "/m0:nbd://host:10809/exp", { "/m0", "nbd://host:10809/exp" } },
  { "nbd://host:10809/exp:/m1", { "nbd://host:10809/exp", "/m1" } },
  { "nbd://host:10809:/m1", { "nbd://host:10809", "/m1" } },
  { "nbd://host/exp:/m1", { "nbd://host/exp", "/m1" } },
  { "nbd://host:/m1", { "nbd://host", "/m1" } },
  { "nbds://[::1]:10809/e?tls-psk-file=/k.psk:/m1",
    { "nbds://[::1]:10809/e?tls-psk-file=/k.psk", "/m1" } },
  { "nbds://alice:pw@host:99/e:m1", { "nbds://alice:pw@host:99/e", "m1" } },
  { "nbd+unix:///e?socket=/run/s.sock:/m1:nbd+unix:///?socket=/t.sock",
    { "nbd+unix:///e?socket=/run/s.sock", "/m1", "nbd+unix:///?socket=/t.sock" } },
  { "/x/nbd://y:/z", { "/x/nbd", "//y", "/z" } },
};

START_TEST (test_member_lists)
{
  char buf[256];
  snprintf (buf, sizeof buf, "%s", lists[_i].list);
  char *out[8];
  int n = io_split_list (buf, out, 8);
  int want = 0;
  while (want < 5 && lists[_i].names[want])
    want++;
  ck_assert_int_eq (n, want);
  for (int k = 0; k < n; k++)
    ck_assert_str_eq (out[k], lists[_i].names[k]);
}
END_TEST

START_TEST (test_member_list_too_long)
{
  char buf[] = "a:b:c";
  char *out[2];
  ck_assert_int_eq (io_split_list (buf, out, 2), -1);
}
END_TEST

START_TEST (test_uri_names)
{
  char buf[128];
  io_nbd_display_name ("nbds://alice:secret@host:99/e", buf, sizeof buf);
  ck_assert_str_eq (buf, "nbds://alice@host:99/e");
  io_nbd_display_name ("nbd://host:99/e", buf, sizeof buf);
  ck_assert_str_eq (buf, "nbd://host:99/e");
  io_nbd_display_name ("nbd+unix:///e?socket=/a@b:c", buf, sizeof buf);
  ck_assert_str_eq (buf, "nbd+unix:///e?socket=/a@b:c");
  ck_assert (io_is_uri ("nbd+unix:///?socket=/s"));
  ck_assert (io_is_uri ("nbds://h/e"));
  ck_assert (!io_is_uri ("/data/nbd://x"));
  ck_assert (!io_is_uri ("http://h/e"));
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
  TCase *tl = tcase_create ("member lists");
  tcase_add_loop_test (tl, test_member_lists, 0,
                       (int) (sizeof lists / sizeof lists[0]));
  tcase_add_test (tl, test_member_list_too_long);
  tcase_add_test (tl, test_uri_names);
  suite_add_tcase (s, tl);
  SRunner *sr = srunner_create (s);
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
