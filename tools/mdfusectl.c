/* mdfusectl: create an mdfuse array, examine its files, and administer a
 * mounted volume.  This file dispatches to the commands and knows their
 * usage; offline.c and client.c implement them. */
#include <config.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "tools/mdfusectl.h"

static const struct command {
  const char *name;
  command_fn *fn;
  const char *synopsis;         /* after "mdfusectl NAME " */
} commands[] = {
  { "create", cmd_create,
    "[--force] [--chunk SIZE] [--name NAME]\n"
    "                   [--daemon-sleep SECONDS] [--write-behind N]\n"
    "                   --size SIZE --bitmap FILE\n"
    "                   MEMBER... [--write-mostly MEMBER... [--readwrite "
    "MEMBER...]]" },
  { "new-member", cmd_new_member, "[--force] --like MEMBER --slot N NEWFILE" },
  { "add-bitmap", cmd_add_bitmap,
    "[--force] [--chunk SIZE] [--daemon-sleep SECONDS]\n"
    "                   --bitmap FILE MEMBER..." },
  { "write-mostly", cmd_write_mostly, "--set|--clear MEMBER..." },
  { "examine", cmd_examine, "MEMBER..." },
  { "examine-bitmap", cmd_examine_bitmap, "[--dirty] [--map] FILE" },
  { "status", cmd_status, "[--json] [--map] [--test] MOUNTPOINT" },
  { "fail", cmd_fail, "MOUNTPOINT MEMBER" },
  { "re-add", cmd_readd, "[--no-wait] MOUNTPOINT MEMBER" },
  { "check", cmd_check, "[--repair] [--rate SIZE] [--no-wait] MOUNTPOINT" },
  { "wait", cmd_wait, "MOUNTPOINT" },
  { "resync-rate", cmd_resync_rate, "[--min SIZE] [--max SIZE] MOUNTPOINT" },
  { "remove-bitmap", cmd_remove_bitmap, "[--force] MOUNTPOINT" },
  { "monitor", cmd_monitor, "[--program PROGRAM] [--delay SECONDS] "
    "[--oneshot]\n                   [--no-syslog] [MOUNTPOINT...]" },
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

void
usage (const char *name)
{
  FILE *f = stdout;
  bool sizes = false;
  fprintf (f, "Usage:\n");
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (!name || strcmp (name, commands[i].name) == 0) {
      fprintf (f, "  mdfusectl %s %s\n", commands[i].name,
               commands[i].synopsis);
      sizes |= strstr (commands[i].synopsis, "SIZE") != NULL;
    }
  if (sizes)
    fprintf (f, "\nSIZE is in bytes, or with a K, M, G, T, P or E suffix "
             "(powers of 1024); \"1.5G\" works.\n");
}

int
usage_error (const char *name, const char *fmt, ...)
{
  if (fmt) {
    char msg[512];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (msg, sizeof msg, fmt, ap);
    va_end (ap);
    log_error ("%s%s%s", name ? name : "", name ? ": " : "", msg);
  }
  fprintf (stderr, "Try 'mdfusectl %s%s--help' for more information.\n",
           name ? name : "", name ? " " : "");
  return EXIT_USAGE;
}

int
check_operands (const char *name, int argc, char **argv, int first,
                int min, int max, const char *what)
{
  int n = argc - first;
  if (n < min)
    return usage_error (name, "%s: expected %s", n ? "too few operands"
                        : "missing operand", what);
  if (max >= 0 && n > max)
    return usage_error (name, "extra operand '%s' (expected %s)",
                        argv[first + max], what);
  return 0;
}

int
main (int argc, char **argv)
{
  log_set_program ("mdfusectl");
  /* In a pipe or a log, each line as it comes ("check started" when it
   * starts), as on a terminal. */
  setvbuf (stdout, NULL, _IOLBF, 0);
  /* --version, alone or after any command. */
  for (int i = 1; i < argc && strcmp (argv[i], "--") != 0; i++)
    if (strcmp (argv[i], "--version") == 0) {
      printf ("mdfusectl (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
      return 0;
    }
  if (argc < 2)
    return usage_error (NULL, "no command given");
  const char *cmd = argv[1];
  if (strcmp (cmd, "-h") == 0 || strcmp (cmd, "--help") == 0
      || strcmp (cmd, "help") == 0) {
    usage (NULL);
    return 0;
  }
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (strcmp (cmd, commands[i].name) == 0) {
      /* getopt_long names the command in its messages. */
      char prog[64];
      snprintf (prog, sizeof prog, "mdfusectl %s", cmd);
      argv[1] = prog;
      return commands[i].fn (argc - 1, argv + 1);
    }
  return usage_error (NULL, "unknown command '%s'", cmd);
}
