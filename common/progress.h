/* Progress of long operations (resync, recovery, check): a bar with rate
 * and time left on a terminal, a quiet line now and then in a pipe or log. */
#ifndef MDFUSE_PROGRESS_H
#define MDFUSE_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct progress {
  FILE *out;
  const char *what;
  bool tty;
  double start, last;
  int last_line_pct;
  bool drawn;
};

void progress_init (struct progress *p, FILE *out, const char *what);
/* DONE and TOTAL in bytes. */
void progress_update (struct progress *p, uint64_t done, uint64_t total);
/* Erase the bar (terminal); nothing in a pipe. */
void progress_end (struct progress *p);

#endif
