/* mdfusectl's parts, private to tools/: the dispatch and usage
 * (mdfusectl.c), the commands that work on files (offline.c) and the
 * client of a running daemon (client.c). */
#ifndef MDFUSE_MDFUSECTL_H
#define MDFUSE_MDFUSECTL_H

#include <stdint.h>
#include <stdio.h>

/* Every command is called with ARGV[0] "mdfusectl NAME" (for getopt's
 * messages), parses its options with getopt_long, accepts --help, and
 * returns the exit status: 0, 1 on error, 2 as documented per command. */
typedef int command_fn (int argc, char **argv);

/* The usage of command NAME on F (of every command with NAME NULL). */
void usage (FILE *f, const char *name);

/* offline.c */
command_fn cmd_create, cmd_new_member, cmd_examine, cmd_examine_bitmap;
/* Draw the first NCHUNKS bits of FILE (a whole bitmap file, header
 * included) as a grid: '.' clean, DIRTY_CHAR dirty ('#', or 'R' while
 * those chunks are being recovered). */
void draw_map (const uint8_t *file, uint64_t nchunks, uint64_t chunk,
               char dirty_char);

/* client.c */
command_fn cmd_status, cmd_fail, cmd_readd, cmd_check, cmd_wait,
  cmd_resync_rate;

#endif
