#include <config.h>

#include <unistd.h>

#include "common/progress.h"
#include "common/util.h"

#define PIPE_LINE_SECONDS 10.0

void
progress_init (struct progress *p, FILE *out, const char *what)
{
  p->out = out;
  p->what = what;
  p->tty = isatty (fileno (out));
  p->start = p->last = now_seconds ();
  p->last_line_pct = -1;
  p->drawn = false;
}

void
progress_update (struct progress *p, uint64_t done, uint64_t total)
{
  double now = now_seconds ();
  double elapsed = now - p->start;
  int pct = total ? (int) (100.0 * (double) done / (double) total) : 100;
  double rate = elapsed > 0 ? (double) done / elapsed : 0;
  double left = rate > 0 ? (double) (total - done) / rate : 0;
  char rs[32];
  format_bytes ((uint64_t) rate, rs, sizeof rs);

  if (p->tty) {
    if (now - p->last < 0.2 && done < total)
      return;
    p->last = now;
    const int width = 30;
    int fill = total ? (int) ((double) width * (double) done / (double) total)
      : width;
    fprintf (p->out, "\r%s [", p->what);
    for (int i = 0; i < width; i++)
      fputc (i < fill ? '=' : (i == fill ? '>' : ' '), p->out);
    fprintf (p->out, "] %3d%% %s/s %4.0fs left ", pct, rs, left);
    fflush (p->out);
    p->drawn = true;
  }
  else if (now - p->last >= PIPE_LINE_SECONDS && pct != p->last_line_pct) {
    /* A pipe or a log: an occasional line, never a bar. */
    p->last = now;
    p->last_line_pct = pct;
    fprintf (p->out, "%s: %d%% done, %s/s, %.0f s left\n", p->what, pct, rs,
             left);
    fflush (p->out);
  }
}

void
progress_end (struct progress *p)
{
  if (p->tty && p->drawn) {
    fprintf (p->out, "\r%*s\r", 78, "");
    fflush (p->out);
  }
}
