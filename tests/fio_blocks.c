/* fio_blocks FILE BLOCKSIZE < OFFSETS: every block at the given offsets
 * holds an intact fio write of that offset -- fio's verify header (magic
 * 0xacca, its own offset) and a matching crc32c of the block, as fio
 * --verify=crc32c writes it.  Used by tests/test-kill-loop.sh to check that
 * every write fio saw complete survived the crash and the resync.  Prints
 * the bad offsets; exits 1 if any. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fio_verify_header {
  uint16_t magic;
  uint16_t verify_type;
  uint32_t len;
  uint64_t rand_seed;
  uint64_t offset;
  uint32_t time_sec;
  uint32_t time_nsec;
  uint16_t thread;
  uint16_t numberio;
  uint32_t crc32;
};

/* crc32c (Castagnoli), bitwise, as fio computes it: initial value ~0 and
 * no final inversion.  Small and plenty fast for a test. */
static uint32_t
crc32c (uint32_t crc, const uint8_t *p, size_t n)
{
  crc = ~crc;
  while (n--) {
    crc ^= *p++;
    for (int k = 0; k < 8; k++)
      crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
  }
  return crc;
}

int
main (int argc, char **argv)
{
  if (argc != 3) {
    fprintf (stderr, "usage: fio_blocks FILE BLOCKSIZE < OFFSETS\n");
    return 2;
  }
  int fd = open (argv[1], O_RDONLY);
  if (fd < 0) {
    fprintf (stderr, "%s: %s\n", argv[1], strerror (errno));
    return 2;
  }
  size_t bs = (size_t) strtoul (argv[2], NULL, 10);
  uint8_t *buf = malloc (bs);
  if (!buf || bs < 64) {
    fprintf (stderr, "fio_blocks: bad block size %s\n", argv[2]);
    return 2;
  }
  unsigned long checked = 0, bad = 0;
  unsigned long long off;
  while (scanf ("%llu", &off) == 1) {
    checked++;
    if (pread (fd, buf, bs, (off_t) off) != (ssize_t) bs) {
      printf ("%llu short read\n", off);
      bad++;
      continue;
    }
    /* fio's layout: the header (with a crc32c of itself), then the
     * crc32c of the data, then the data. */
    struct fio_verify_header h;
    uint32_t data_crc;
    memcpy (&h, buf, sizeof h);
    memcpy (&data_crc, buf + sizeof h, 4);
    uint32_t hcrc = crc32c (0, buf, offsetof (struct fio_verify_header, crc32));
    uint32_t dcrc = crc32c (0, buf + sizeof h + 4, bs - sizeof h - 4);
    if (h.magic != 0xacca || h.offset != off || h.len != bs
        || h.crc32 != hcrc || data_crc != dcrc) {
      printf ("%llu bad (magic %#x offset %" PRIu64 " len %" PRIu32
              " header crc %#x/%#x data crc %#x/%#x)\n", off, h.magic,
              h.offset, h.len, h.crc32, hcrc, data_crc, dcrc);
      bad++;
    }
  }
  fprintf (stderr, "fio_blocks: %lu blocks checked, %lu bad\n", checked, bad);
  free (buf);
  close (fd);
  return bad ? 1 : 0;
}
