#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>

#include "common/log.h"

static const char *program = "mdfuse";
static bool use_syslog;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void
log_set_program (const char *name)
{
  program = name;
}

void
log_use_syslog (bool on)
{
  if (on && !use_syslog)
    openlog (program, LOG_PID, LOG_DAEMON);
  use_syslog = on;
}

/* To syslog once in use, else to stderr; LOUD: to both. */
static void
vlog_to (int prio, const char *level, bool loud, const char *fmt, va_list ap)
{
  int saved = errno;
  va_list ap2;
  va_copy (ap2, ap);
  if (use_syslog || loud)
    vsyslog (LOG_DAEMON | prio, fmt, ap2);
  va_end (ap2);
  if (!use_syslog || loud) {
    pthread_mutex_lock (&log_lock);
    fprintf (stderr, "%s: %s", program, level);
    vfprintf (stderr, fmt, ap);
    fputc ('\n', stderr);
    pthread_mutex_unlock (&log_lock);
  }
  errno = saved;
}

static void
vlog (int prio, const char *level, const char *fmt, va_list ap)
{
  vlog_to (prio, level, false, fmt, ap);
}

void
log_error (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  vlog (LOG_ERR, "error: ", fmt, ap);
  va_end (ap);
}

void
log_warn (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  vlog (LOG_WARNING, "warning: ", fmt, ap);
  va_end (ap);
}

void
log_error_loud (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  vlog_to (LOG_ERR, "error: ", true, fmt, ap);
  va_end (ap);
}

void
log_warn_loud (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  vlog_to (LOG_WARNING, "warning: ", true, fmt, ap);
  va_end (ap);
}

void
log_info (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  vlog (LOG_INFO, "", fmt, ap);
  va_end (ap);
}
