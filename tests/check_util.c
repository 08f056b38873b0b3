/* Unit tests of common/util (sizes as users type them, member lists) and
 * of the POSIX member backend's writes. */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

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

/* A write larger than the backend's piece (posix_pwrite writes members
 * in pieces of at most 256 KiB) lands whole, in place, and is counted
 * whole: 1 MiB + 4 KiB + 3 bytes at an odd offset. */
START_TEST (test_posix_large_write_lands_whole)
{
  char path[] = "/tmp/mdfuse-check-util.XXXXXX";
  int fd = mkstemp (path);
  ck_assert_int_ge (fd, 0);
  close (fd);
  struct io_file *f = io_posix_open (path, O_RDWR);
  ck_assert_ptr_nonnull (f);
  size_t len = (1u << 20) + 4096 + 3;
  uint64_t off = 12345;
  unsigned char *w = malloc (len), *r = malloc (len + 2);
  ck_assert_ptr_nonnull (w);
  ck_assert_ptr_nonnull (r);
  for (size_t i = 0; i < len; i++)
    w[i] = (unsigned char) (i * 2654435761u >> 13);
  ck_assert_int_eq (f->ops->pwrite (f, w, len, off), (ssize_t) len);
  ck_assert_int_eq (io_size (f), (int64_t) (off + len));
  memset (r, 0xa5, len + 2);
  ck_assert_int_eq (io_pread_full (f, r, len, off), 0);
  ck_assert_int_eq (memcmp (r, w, len), 0);
  /* Nothing before the write's offset was touched. */
  ck_assert_int_eq (io_pread_full (f, r, 2, off - 2), 0);
  ck_assert_int_eq (r[0], 0);
  ck_assert_int_eq (r[1], 0);
  io_close (f);
  unlink (path);
  free (w);
  free (r);
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
  TCase *tp = tcase_create ("posix backend");
  tcase_add_test (tp, test_posix_large_write_lands_whole);
  suite_add_tcase (s, tp);
  SRunner *sr = srunner_create (s);
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
