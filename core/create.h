/* Creating a new array: member files and the bitmap file (SPEC §7). */
#ifndef MDFUSE_CREATE_H
#define MDFUSE_CREATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct create_options {
  uint64_t volume_bytes;
  uint64_t chunk;               /* 0: the default for the size */
  const char *name;             /* set_name, at most 32 bytes */
  const char *bitmap;           /* path, or NULL for none */
  unsigned daemon_sleep;        /* 0: default */
  bool force;                   /* overwrite existing files */
  /* Per member (NULL: none): flagged write-mostly (md's WriteMostly1):
   * read only when no other member can serve (SPEC §8). */
  const bool *write_mostly;
  /* The bitmap's write_behind: how many writes the write-mostly members
   * may get behind the others (0: none, every write synchronous). */
  uint32_t write_behind;
};

/* Check OPTS without touching any file; -EINVAL with a message logged. */
int create_check (const struct create_options *opts, size_t nmembers);
/* Create the files.  Returns 0, or a negative errno with a message naming
 * the file logged (and the files created so far removed). */
int create_array (const struct create_options *opts,
                  const char *const *members, size_t nmembers);

struct io_file;
/* What create_array writes, onto open files: each of MEMBERS sized and
 * given its superblock, BITMAP (NULL: none; OPTS->bitmap is not looked at)
 * its header.  Returns 0, or a negative errno with a message naming the
 * file (the files then half written, for the caller to remove). */
int create_array_on (const struct create_options *opts,
                     struct io_file *const *members, size_t nmembers,
                     struct io_file *bitmap);

/* A new, empty member for SLOT of the array LIKE belongs to (a replacement
 * for a lost member): the array's superblock with a fresh device uuid and
 * events 0, so that re-adding it copies everything.  0, or a negative
 * errno with a message logged. */
int create_member_like (const char *like, uint32_t slot, const char *path,
                        bool force);

/* A new bitmap file for the array MEMBERS belong to (one lost or never
 * made): the array's uuid, size and events, every bit set and marked out
 * of date, so that the first mount that uses it copies every chunk.  The
 * members are only read; the array may be running without a bitmap.  0, or
 * a negative errno with a message naming the file. */
struct create_bitmap_options {
  const char *bitmap;           /* path */
  uint64_t chunk;               /* 0: the default for the size */
  unsigned daemon_sleep;        /* 0: default */
  bool force;                   /* replace an existing file */
};
int create_bitmap_for (const struct create_bitmap_options *opts,
                       const char *const *members, size_t nmembers);

/* Set (SET) or clear the write-mostly flag in the superblock of the
 * member file PATH, which no running mdfuse may hold (it is locked while
 * it is changed).  Its events are left alone: the flag is the member's
 * own.  0, or a negative errno with a message logged. */
int member_set_write_mostly (const char *path, bool set);

#endif
