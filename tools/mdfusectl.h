/* mdfusectl's parts, private to tools/: the dispatch and usage
 * (mdfusectl.c), the commands that work on files (offline.c) and the
 * client of a running daemon (client.c). */
#ifndef MDFUSE_MDFUSECTL_H
#define MDFUSE_MDFUSECTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <json.h>

/* Every command is called with ARGV[0] "mdfusectl NAME" (for getopt's
 * messages), parses its options with getopt_long, accepts --help, and
 * returns the exit status: */
enum {
  EXIT_FAIL = 1,                /* an error, with a message */
  EXIT_USAGE = 2,               /* bad usage (GNU's convention) */
  EXIT_FOUND = 3,               /* check: mismatches; examine: bad checksum */
};
typedef int command_fn (int argc, char **argv);

/* The usage of command NAME on stdout (of every command with NAME NULL),
 * for --help. */
void usage (const char *name);
/* A usage error of command NAME (NULL: of mdfusectl itself): FMT, if not
 * NULL, and a pointer to --help, on stderr.  Returns EXIT_USAGE. */
int usage_error (const char *name, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* The operands ARGV[FIRST..ARGC) of command NAME number MIN to MAX (-1:
 * no limit): 0, else a usage error naming WHAT ("MOUNTPOINT MEMBER") and
 * EXIT_USAGE. */
int check_operands (const char *name, int argc, char **argv, int first,
                    int min, int max, const char *what);

/* offline.c */
command_fn cmd_create, cmd_new_member, cmd_add_bitmap, cmd_examine, cmd_examine_bitmap,
  cmd_write_mostly;
/* Draw the first NCHUNKS bits of FILE (a whole bitmap file, header
 * included) as a grid: '.' clean, DIRTY_CHAR dirty ('#', or 'R' while
 * those chunks are being recovered). */
void draw_map (const uint8_t *file, uint64_t nchunks, uint64_t chunk,
               char dirty_char);

/* client.c */
command_fn cmd_status, cmd_fail, cmd_readd, cmd_check, cmd_wait,
  cmd_resync_rate, cmd_remove_bitmap;
/* The status of the volume at MNT (its mount point or `volume` file),
 * parsed; NULL with a message (none about an absent volume when QUIET).
 * json_object_put it. */
struct json_object *client_status (const char *mnt);
struct json_object *client_status_q (const char *mnt, bool quiet);
/* Member KEY of object O (WHERE names O, NULL for the top) of a type;
 * 0, or -EPROTO with a message naming the key. */
int json_field (const char *mnt, struct json_object *o, const char *where,
                const char *key, enum json_type type, bool null_ok,
                struct json_object **v);
int json_field_u64 (const char *mnt, struct json_object *o, const char *where,
                    const char *key, uint64_t *v);
int json_field_bool (const char *mnt, struct json_object *o,
                     const char *where, const char *key, bool *v);
int json_field_string (const char *mnt, struct json_object *o,
                       const char *where, const char *key, const char **v);

/* monitor.c */
command_fn cmd_monitor;

#endif
