/* Little-endian fields written and read byte by byte, independently of
 * the code under test: for tests that build on-disk structures by hand. */
#ifndef MDFUSE_TEST_LE_BYTES_H
#define MDFUSE_TEST_LE_BYTES_H

#include <stddef.h>
#include <stdint.h>

static inline void
put16 (uint8_t *b, size_t off, uint16_t v)
{
  b[off] = (uint8_t) v;
  b[off + 1] = (uint8_t) (v >> 8);
}

static inline void
put32 (uint8_t *b, size_t off, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    b[off + i] = (uint8_t) (v >> (8 * i));
}

static inline void
put64 (uint8_t *b, size_t off, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    b[off + i] = (uint8_t) (v >> (8 * i));
}

static inline uint32_t
get32 (const uint8_t *b, size_t off)
{
  return (uint32_t) b[off] | (uint32_t) b[off + 1] << 8
    | (uint32_t) b[off + 2] << 16 | (uint32_t) b[off + 3] << 24;
}

static inline uint64_t
get64 (const uint8_t *b, size_t off)
{
  return (uint64_t) get32 (b, off) | (uint64_t) get32 (b, off + 4) << 32;
}

#endif
