/* The bitmap file format: md bitmap superblock version 4 (SPEC §3).
 *
 * The only file that knows what a byte of the bitmap file means.  The
 * header is 256 bytes; the bits start at byte 256, chunk i being bit i%8
 * (LSB first) of byte 256 + i/8; the file is padded to 4 KiB.
 */
#ifndef MDFUSE_BITMAP_FORMAT_H
#define MDFUSE_BITMAP_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BITMAP_MAGIC 0x6d746962         /* "bitm" */
#define BITMAP_VERSION 4
#define BITMAP_HEADER_SIZE 256
#define BITMAP_STATE_STALE 0x2
#define BITMAP_MIN_CHUNK 4096ULL
#define BITMAP_MAX_CHUNK (1ULL << 30)
#define BITMAP_DEFAULT_CHUNK (4ULL << 20)
#define BITMAP_MAX_BITS (1ULL << 21)
#define BITMAP_DEFAULT_DAEMON_SLEEP 5
#define BITMAP_MAX_WRITE_BEHIND 16383   /* md's COUNTER_MAX / 2 */
#define BITMAP_DEFAULT_WRITE_BEHIND 256 /* mdadm's default */

/* The on-disk header, little-endian.  Not in the UAPI headers. */
typedef struct bitmap_super_s {
  uint32_t magic;
  uint32_t version;
  uint8_t uuid[16];
  uint64_t events;
  uint64_t events_cleared;
  uint64_t sync_size;           /* sectors */
  uint32_t state;
  uint32_t chunksize;           /* bytes */
  uint32_t daemon_sleep;        /* seconds */
  uint32_t write_behind;
  uint32_t sectors_reserved;
  uint32_t nodes;
  uint8_t cluster_name[64];
  uint8_t pad[248 - 136];
  uint64_t xxh64;               /* XXH64 of bytes 0..247, seed 0 */
} __attribute__ ((packed)) bitmap_super_t;

_Static_assert (sizeof (bitmap_super_t) == BITMAP_HEADER_SIZE,
                "bitmap_super_t is 256 bytes");

/* Host-endian form of the header. */
struct bitmap_header {
  uint8_t uuid[16];
  uint64_t events;
  uint64_t events_cleared;
  uint64_t sync_size;           /* sectors */
  uint32_t state;
  uint32_t chunksize;
  uint32_t daemon_sleep;
  /* Writes the write-mostly members may get behind the others (md's
   * write-behind, SPEC §8); 0: every write is synchronous. */
  uint32_t write_behind;
};

enum bitmap_header_status {
  BITMAP_HEADER_OK = 0,
  BITMAP_HEADER_FOREIGN,        /* not a v4 md bitmap */
  BITMAP_HEADER_BAD_CHECKSUM,   /* decoded, but xxh64 does not match */
  BITMAP_HEADER_INVALID,        /* checksum fine, a field out of range */
};

void bitmap_header_encode (const struct bitmap_header *h,
                           uint8_t out[BITMAP_HEADER_SIZE]);
enum bitmap_header_status bitmap_header_decode (const uint8_t *in,
                                                struct bitmap_header *h,
                                                char *why, size_t whylen);

/* Number of chunks (bits) for a volume of V bytes with chunk C. */
uint64_t bitmap_chunks (uint64_t volume_bytes, uint64_t chunk);
/* Bytes of the file: header + bits, padded to 4 KiB. */
uint64_t bitmap_file_size (uint64_t chunks);
/* The default chunk for a volume: 4 MiB, doubled until <= 2^21 bits. */
uint64_t bitmap_default_chunk (uint64_t volume_bytes);
/* True when C is a power of two in [4 KiB, 1 GiB]. */
bool bitmap_chunk_valid (uint64_t chunk);

/* Bit addressing within the bits area (which starts at byte 256). */
static inline uint64_t
bitmap_bit_byte (uint64_t chunk_index)
{
  return BITMAP_HEADER_SIZE + chunk_index / 8;
}

static inline uint8_t
bitmap_bit_mask (uint64_t chunk_index)
{
  return (uint8_t) (1u << (chunk_index % 8));
}

/* Whether chunk CHUNK_INDEX's bit is set in a whole-file buffer. */
static inline bool
bitmap_bit_test (const uint8_t *file, uint64_t chunk_index)
{
  return (file[bitmap_bit_byte (chunk_index)] & bitmap_bit_mask (chunk_index))
    != 0;
}

/* Bytes of the file that hold the header and the bits of NCHUNKS chunks
 * (without the padding): what must be read to see every bit. */
uint64_t bitmap_bits_end (uint64_t chunks);

/* The header's state as mdadm --examine-bitmap names it: "OK", or
 * "Out of date" when BITMAP_STATE_STALE is set. */
const char *bitmap_state_name (uint32_t state);

/* Count the set bits among the first NCHUNKS in a whole-file buffer. */
uint64_t bitmap_count_dirty (const uint8_t *file, uint64_t nchunks);

#endif
