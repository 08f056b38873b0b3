/* The write-intent bitmap in memory and its protocol (SPEC §4).
 *
 * struct bitmap holds the whole bitmap file in one buffer (header
 * included), a counter of writes in flight per chunk, and per 4 KiB page a
 * set_seq and a durable_seq.  One lock guards them all.  Only one thread at
 * a time (the "flusher") writes the file, so a page image copied later
 * always lands later: this is what keeps a lazily cleared page from
 * overwriting a bit that a writer has just set.
 */
#ifndef MDFUSE_BITMAP_H
#define MDFUSE_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

#include "bitmap/bitmap_format.h"
#include "common/io.h"

struct bitmap;

/* Takes ownership of FILEBUF (the file's contents, bitmap_file_size bytes,
 * its header is replaced by H) but not of IO. */
struct bitmap *bitmap_new (struct io_file *io, const struct bitmap_header *h,
                           uint8_t *filebuf, uint64_t volume_bytes);
void bitmap_free (struct bitmap *bm);

uint64_t bitmap_nchunks (const struct bitmap *bm);
uint64_t bitmap_chunk_size (const struct bitmap *bm);
const char *bitmap_name (const struct bitmap *bm);

/* Steps 1-2 of a volume write of [OFF, OFF+LEN): count it in flight, set
 * its bits in memory and wait until they are durable (sharing one flush
 * with concurrent writers).  Returns 0, or the negative errno with which
 * the bitmap file failed (the write is still counted: call
 * bitmap_end_write either way). */
int bitmap_start_write (struct bitmap *bm, uint64_t off, uint64_t len);
/* Step 5: the write is done on every member. */
void bitmap_end_write (struct bitmap *bm, uint64_t off, uint64_t len);

/* Header fields in memory; written by bitmap_write_header. */
void bitmap_set_events (struct bitmap *bm, uint64_t events);
void bitmap_set_events_cleared (struct bitmap *bm, uint64_t events_cleared);
void bitmap_set_stale (struct bitmap *bm, bool stale);
void bitmap_get_header (struct bitmap *bm, struct bitmap_header *h);
/* Write the 256-byte header and fdatasync it. */
int bitmap_write_header (struct bitmap *bm);

/* Set every bit and make it durable (a full resync). */
int bitmap_set_all (struct bitmap *bm);
/* Clear chunks [FIRST, FIRST+N) whose counter is 0 and make that durable.
 * Only for copies already durable on every member, with no user write
 * since (a resync before the volume is served). */
int bitmap_clear_range (struct bitmap *bm, uint64_t first, uint64_t n);
/* For a resync while users write: a new epoch begins, and writes that
 * complete from now on carry it.  Call before the member sync that is to
 * cover the copies; then bitmap_clear_synced with what this returned
 * clears only chunks whose last write completed before, so that sync
 * covered it. */
uint32_t bitmap_next_epoch (struct bitmap *bm);
int bitmap_clear_synced (struct bitmap *bm, uint64_t first, uint64_t n,
                         uint32_t epoch);

bool bitmap_test (struct bitmap *bm, uint64_t chunk);
/* The first set bit at or after FROM, or bitmap_nchunks if none. */
uint64_t bitmap_next_dirty (struct bitmap *bm, uint64_t from);
uint64_t bitmap_dirty_count (struct bitmap *bm);

/* Whether the lazy clearing may clear bits; false while any member is
 * faulty, behind or recovering (md's NEEDED bits stay set). */
void bitmap_allow_clearing (struct bitmap *bm, bool allowed);

/* One lazy clearing pass.  SYNC_MEMBERS must fdatasync every active member
 * (returning 0 or a negative errno); only chunks idle for a whole pass and
 * whose last write completed before that sync began are cleared.  Then the
 * header gets events_cleared = events and is made durable, and only then
 * the cleared pages are written.  Returns the number of chunks cleared, or
 * a negative errno. */
int64_t bitmap_clear_pass (struct bitmap *bm,
                           int (*sync_members) (void *arg), void *arg);

/* Negative errno with which the bitmap file failed, or 0. */
int bitmap_failed (struct bitmap *bm);

/* Statistics: flushes (fdatasyncs of the bitmap file) so far. */
uint64_t bitmap_flush_count (struct bitmap *bm);

#endif
