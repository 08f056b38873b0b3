/* mmap_volume: a helper of tests/test-mmap.sh and
 * tests/test-writeback-cache.sh, not a test.  Maps part of an mdfuse
 * `volume` with MAP_SHARED, or writes it through one buffered descriptor
 * kept open.
 *
 *   mmap_volume write VOLUME OFFSET DATAFILE READYFILE
 *     copies DATAFILE into the volume at OFFSET through the mapping,
 *     msync(MS_SYNC)s it, creates READYFILE, and then waits, the mapping
 *     still in place, until it is killed: whatever the volume holds after
 *     that came through the msync, not through a close.
 *
 *   mmap_volume pwrite VOLUME OFFSET DATAFILE
 *     maps the range and reads it (its pages now in the kernel's cache),
 *     pwrite()s DATAFILE there through another descriptor, and checks
 *     that the mapping shows what pwrite wrote.
 *
 *   Their OFFSET is a multiple of the page size.
 *
 *   mmap_volume hold VOLUME
 *     opens VOLUME for reading and writing (no O_DIRECT: through the
 *     kernel's page cache when mdfuse runs with -o writeback_cache) and
 *     runs the commands read from its standard input, one a line, in
 *     order, on that one descriptor:
 *       pwrite OFFSET DATAFILE   writes DATAFILE's bytes at OFFSET (any
 *                                offset);
 *       fsync                    fsync()s it;
 *       mark FILE                creates FILE, for the test to wait on;
 *       await FILE               waits until FILE exists (the test's
 *                                signal to go on).
 *     At the end of its input it waits, the descriptor still open, until
 *     it is killed: what it wrote after its last fsync was never made
 *     durable by a close.
 *
 * Exits 0 on success, 1 with a message naming the file and the problem
 * otherwise (2 for a bad command line or command). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *prog = "mmap_volume";

static void
die (const char *file, const char *what, int err)
{
  fprintf (stderr, "%s: %s: %s%s%s\n", prog, file, what, err ? ": " : "",
           err ? strerror (err) : "");
  exit (1);
}

/* DATAFILE's contents, in *LEN bytes. */
static char *
slurp (const char *path, size_t *len)
{
  int fd = open (path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat (fd, &st) < 0)
    die (path, "open", errno);
  if (st.st_size <= 0)
    die (path, "empty: nothing to write", 0);
  char *buf = malloc ((size_t) st.st_size);
  if (!buf)
    die (path, "out of memory", ENOMEM);
  size_t done = 0;
  while (done < (size_t) st.st_size) {
    ssize_t r = read (fd, buf + done, (size_t) st.st_size - done);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      die (path, "read", r < 0 ? errno : EIO);
    done += (size_t) r;
  }
  close (fd);
  *len = done;
  return buf;
}

static char *
map_range (const char *volume, int fd, uint64_t off, size_t len)
{
  void *p = mmap (NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                  (off_t) off);
  if (p == MAP_FAILED)
    die (volume, "mmap(MAP_SHARED)", errno);
  return p;
}

static void
create_mark (const char *path)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0)
    die (path, "create", errno);
  close (fd);
}

static _Noreturn void
do_write (const char *volume, uint64_t off, const char *data,
          const char *ready)
{
  size_t len;
  char *buf = slurp (data, &len);
  int fd = open (volume, O_RDWR);
  if (fd < 0)
    die (volume, "open", errno);
  char *map = map_range (volume, fd, off, len);
  memcpy (map, buf, len);
  if (msync (map, len, MS_SYNC) < 0)
    die (volume, "msync(MS_SYNC)", errno);
  create_mark (ready);
  for (;;)
    pause ();                   /* the mapping stays until we are killed */
}

static int
do_pwrite (const char *volume, uint64_t off, const char *data)
{
  size_t len;
  char *buf = slurp (data, &len);
  int fd = open (volume, O_RDWR);
  int wfd = open (volume, O_RDWR);
  if (fd < 0 || wfd < 0)
    die (volume, "open", errno);
  char *map = map_range (volume, fd, off, len);
  /* Read every page through the mapping first: the kernel now caches
   * them, and the pwrite below must not leave the old bytes there. */
  volatile unsigned sum = 0;
  for (size_t i = 0; i < len; i += 512)
    sum += (unsigned char) map[i];
  (void) sum;
  size_t done = 0;
  while (done < len) {
    ssize_t w = pwrite (wfd, buf + done, len - done, (off_t) (off + done));
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      die (volume, "pwrite", w < 0 ? errno : EIO);
    done += (size_t) w;
  }
  for (size_t i = 0; i < len; i++)
    if (map[i] != buf[i]) {
      fprintf (stderr, "%s: %s: the mapping shows old data at offset "
               "%" PRIu64 " after a pwrite there\n", prog, volume,
               off + i);
      return 1;
    }
  munmap (map, len);
  close (fd);
  close (wfd);
  free (buf);
  return 0;
}

static _Noreturn void
do_hold (const char *volume)
{
  int fd = open (volume, O_RDWR);
  if (fd < 0)
    die (volume, "open", errno);
  char line[4096];
  while (fgets (line, sizeof line, stdin)) {
    line[strcspn (line, "\n")] = '\0';
    char path[4000];
    uint64_t off;
    if (sscanf (line, "pwrite %" SCNu64 " %3999s", &off, path) == 2) {
      size_t len;
      char *buf = slurp (path, &len);
      size_t done = 0;
      while (done < len) {
        ssize_t w = pwrite (fd, buf + done, len - done,
                            (off_t) (off + done));
        if (w < 0 && errno == EINTR)
          continue;
        if (w <= 0)
          die (volume, "pwrite", w < 0 ? errno : EIO);
        done += (size_t) w;
      }
      free (buf);
    }
    else if (strcmp (line, "fsync") == 0) {
      if (fsync (fd) < 0)
        die (volume, "fsync", errno);
    }
    else if (sscanf (line, "mark %3999s", path) == 1)
      create_mark (path);
    else if (sscanf (line, "await %3999s", path) == 1) {
      struct timespec ts = { 0, 10 * 1000 * 1000 };
      while (access (path, F_OK) != 0)
        nanosleep (&ts, NULL);
    }
    else if (line[0]) {
      fprintf (stderr, "%s: not a command: '%s'\n", prog, line);
      exit (2);
    }
  }
  for (;;)
    pause ();                   /* the descriptor stays until we are killed */
}

int
main (int argc, char **argv)
{
  char *end;
  if (argc == 6 && strcmp (argv[1], "write") == 0) {
    uint64_t off = strtoull (argv[3], &end, 10);
    if (*end)
      die (argv[3], "not an offset", 0);
    do_write (argv[2], off, argv[4], argv[5]);
  }
  if (argc == 5 && strcmp (argv[1], "pwrite") == 0) {
    uint64_t off = strtoull (argv[3], &end, 10);
    if (*end)
      die (argv[3], "not an offset", 0);
    return do_pwrite (argv[2], off, argv[4]);
  }
  if (argc == 3 && strcmp (argv[1], "hold") == 0)
    do_hold (argv[2]);
  fprintf (stderr, "usage: %s write VOLUME OFFSET DATAFILE READYFILE\n"
           "       %s pwrite VOLUME OFFSET DATAFILE\n"
           "       %s hold VOLUME < COMMANDS\n", prog, prog, prog);
  return 2;
}
