/* Logging: one message per error, where it is first known. */
#ifndef MDFUSE_LOG_H
#define MDFUSE_LOG_H

#include <stdbool.h>

/* Program name used as a prefix ("mdfuse", "mdfusectl"). */
void log_set_program (const char *name);
/* After daemonizing: send messages to syslog instead of stderr. */
void log_use_syslog (bool on);

void log_error (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
void log_warn (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
void log_info (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
/* A warning an operator must not miss: to stderr and to syslog both,
 * whichever is in use. */
void log_error_loud (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));
void log_warn_loud (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

#endif
