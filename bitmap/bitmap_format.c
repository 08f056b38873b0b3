#include <config.h>

#include <endian.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <xxhash.h>

#include "bitmap/bitmap_format.h"

#define XXH_COVERED offsetof (bitmap_super_t, xxh64)

void
bitmap_header_encode (const struct bitmap_header *h,
                      uint8_t out[BITMAP_HEADER_SIZE])
{
  bitmap_super_t s;
  memset (&s, 0, sizeof s);
  s.magic = htole32 (BITMAP_MAGIC);
  s.version = htole32 (BITMAP_VERSION);
  memcpy (s.uuid, h->uuid, 16);
  s.events = htole64 (h->events);
  s.events_cleared = htole64 (h->events_cleared);
  s.sync_size = htole64 (h->sync_size);
  s.state = htole32 (h->state);
  s.chunksize = htole32 (h->chunksize);
  s.daemon_sleep = htole32 (h->daemon_sleep);
  s.write_behind = htole32 (h->write_behind);
  memcpy (out, &s, sizeof s);
  uint64_t x = XXH64 (out, XXH_COVERED, 0);
  x = htole64 (x);
  memcpy (out + XXH_COVERED, &x, 8);
}

enum bitmap_header_status
bitmap_header_decode (const uint8_t *in, struct bitmap_header *h,
                      char *why, size_t whylen)
{
  bitmap_super_t s;
  memcpy (&s, in, sizeof s);
  memset (h, 0, sizeof *h);

  uint32_t magic = le32toh (s.magic), version = le32toh (s.version);
  if (magic != BITMAP_MAGIC) {
    snprintf (why, whylen, "not an md bitmap (magic 0x%08" PRIx32
              ", expected 0x%08x)", magic, BITMAP_MAGIC);
    return BITMAP_HEADER_FOREIGN;
  }
  if (version != BITMAP_VERSION) {
    snprintf (why, whylen, "bitmap version %" PRIu32 ", expected %d",
              version, BITMAP_VERSION);
    return BITMAP_HEADER_FOREIGN;
  }
  memcpy (h->uuid, s.uuid, 16);
  h->events = le64toh (s.events);
  h->events_cleared = le64toh (s.events_cleared);
  h->sync_size = le64toh (s.sync_size);
  h->state = le32toh (s.state);
  h->chunksize = le32toh (s.chunksize);
  h->daemon_sleep = le32toh (s.daemon_sleep);
  h->write_behind = le32toh (s.write_behind);

  uint64_t want = XXH64 (in, XXH_COVERED, 0);
  uint64_t have = le64toh (s.xxh64);
  if (want != have) {
    snprintf (why, whylen, "header checksum 0x%016" PRIx64 " != 0x%016"
              PRIx64, have, want);
    return BITMAP_HEADER_BAD_CHECKSUM;
  }
  if (!bitmap_chunk_valid (h->chunksize)) {
    snprintf (why, whylen, "chunk size %" PRIu32
              " is not a power of two from 4 KiB to 1 GiB", h->chunksize);
    return BITMAP_HEADER_INVALID;
  }
  if (h->state != 0 && h->state != BITMAP_STATE_STALE) {
    snprintf (why, whylen, "unknown state 0x%" PRIx32, h->state);
    return BITMAP_HEADER_INVALID;
  }
  if (h->daemon_sleep == 0 || h->daemon_sleep > 3600) {
    snprintf (why, whylen, "daemon_sleep %" PRIu32 " s is out of range",
              h->daemon_sleep);
    return BITMAP_HEADER_INVALID;
  }
  if (h->write_behind > BITMAP_MAX_WRITE_BEHIND) {
    snprintf (why, whylen, "write_behind %" PRIu32 " is out of range "
              "(0..%d)", h->write_behind, BITMAP_MAX_WRITE_BEHIND);
    return BITMAP_HEADER_INVALID;
  }
  return BITMAP_HEADER_OK;
}

uint64_t
bitmap_chunks (uint64_t volume_bytes, uint64_t chunk)
{
  return (volume_bytes + chunk - 1) / chunk;
}

uint64_t
bitmap_bits_end (uint64_t chunks)
{
  return BITMAP_HEADER_SIZE + (chunks + 7) / 8;
}

uint64_t
bitmap_file_size (uint64_t chunks)
{
  return (bitmap_bits_end (chunks) + 4095) & ~(uint64_t) 4095;
}

const char *
bitmap_state_name (uint32_t state)
{
  return (state & BITMAP_STATE_STALE) ? "Out of date" : "OK";
}

bool
bitmap_chunk_valid (uint64_t chunk)
{
  return chunk >= BITMAP_MIN_CHUNK && chunk <= BITMAP_MAX_CHUNK
    && (chunk & (chunk - 1)) == 0;
}

uint64_t
bitmap_default_chunk (uint64_t volume_bytes)
{
  uint64_t c = BITMAP_DEFAULT_CHUNK;
  while (c < BITMAP_MAX_CHUNK && bitmap_chunks (volume_bytes, c) > BITMAP_MAX_BITS)
    c *= 2;
  return c;
}

uint64_t
bitmap_count_dirty (const uint8_t *file, uint64_t nchunks)
{
  uint64_t n = 0;
  const uint8_t *bits = file + BITMAP_HEADER_SIZE;
  uint64_t full = nchunks / 8;
  for (uint64_t i = 0; i < full; i++)
    n += (uint64_t) __builtin_popcount (bits[i]);
  for (uint64_t i = full * 8; i < nchunks; i++)
    if (bitmap_bit_test (file, i))
      n++;
  return n;
}
