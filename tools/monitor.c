/* mdfusectl monitor (mdadm --monitor): follow mounted volumes and tell
 * the operator what happens to them, in syslog, on stdout and through a
 * program of theirs.
 *
 * The daemon keeps its latest notices, numbered, in the status
 * (core/notice.c); the monitor reads the status every --delay seconds and
 * reports each notice it has not reported yet, so nothing that happened
 * between two looks is missed.  A volume seen for the first time when the
 * monitor starts is reported by its state (DegradedArray), not by its
 * history; one mounted while the monitor runs is reported as NewArray and
 * then by everything it noticed since its mount.  --oneshot reports the
 * state of each volume once, for cron. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "tools/mdfusectl.h"

struct watch {
  char *mnt;                    /* as given, or from /proc/self/mountinfo */
  bool present;                 /* mounted at the last look */
  bool seen;                    /* its instance is known */
  uint64_t instance, next;      /* notices reported: seq < next */
  bool given;                   /* named on the command line */
  bool warned;                  /* its status could not be followed */
};

struct monitor {
  struct watch *w;
  size_t n, cap;
  const char *program;
  bool use_syslog;
  bool scan_all;
};

static volatile sig_atomic_t stop;

static void
on_signal (int sig)
{
  (void) sig;
  stop = 1;
}

static int
priority_of (const char *event)
{
  static const char *const critical[] = {
    "Fail", "DegradedArray", "BitmapFailed", "ResyncFailed", NULL,
  };
  static const char *const warning[] = {
    "CheckMismatches", "BitmapRemoved", "DeviceDisappeared", NULL,
  };
  for (int i = 0; critical[i]; i++)
    if (strcmp (event, critical[i]) == 0)
      return LOG_CRIT;
  for (int i = 0; warning[i]; i++)
    if (strcmp (event, warning[i]) == 0)
      return LOG_WARNING;
  return LOG_INFO;
}

/* Tell of EVENT on volume MNT: a line on stdout, syslog, the program
 * (EVENT MOUNTPOINT [SUBJECT], MDFUSE_EVENT_VALUE in its environment). */
static void
report (struct monitor *m, const char *event, const char *mnt,
        const char *subject, uint64_t value, bool has_value)
{
  char val[64] = "";
  if (has_value)
    snprintf (val, sizeof val, " (%" PRIu64 ")", value);
  bool subj = subject && *subject;
  printf ("%s %s%s%s%s\n", event, mnt, subj ? " " : "", subj ? subject : "",
          val);
  if (m->use_syslog)
    syslog (LOG_DAEMON | priority_of (event), "%s event on %s%s%s%s", event,
            mnt, subj ? ": " : "", subj ? subject : "", val);
  if (!m->program)
    return;
  fflush (stdout);
  pid_t pid = fork ();
  if (pid < 0) {
    log_error ("%s: cannot run it: %s", m->program, strerror (errno));
    return;
  }
  if (pid == 0) {
    char v[32];
    snprintf (v, sizeof v, "%" PRIu64, value);
    if (has_value)
      setenv ("MDFUSE_EVENT_VALUE", v, 1);
    else
      unsetenv ("MDFUSE_EVENT_VALUE");
    if (!freopen ("/dev/null", "r", stdin))
      _exit (127);
    if (subj)
      execl (m->program, m->program, event, mnt, subject, (char *) NULL);
    else
      execl (m->program, m->program, event, mnt, (char *) NULL);
    log_error ("%s: cannot run it: %s", m->program, strerror (errno));
    _exit (127);
  }
  int st;
  while (waitpid (pid, &st, 0) < 0 && errno == EINTR)
    ;
}

/* The members that are not active, "m1 faulty, slot 2 missing". */
static void
not_active (const char *mnt, struct json_object *j, char *out, size_t len)
{
  struct json_object *members;
  out[0] = '\0';
  if (json_field (mnt, j, NULL, "members", json_type_array, false,
                  &members) < 0)
    return;
  size_t used = 0;
  for (size_t k = 0; k < json_object_array_length (members); k++) {
    struct json_object *mo = json_object_array_get_idx (members, k);
    const char *state, *path;
    if (json_field_string (mnt, mo, "members[]", "state", &state) < 0
        || json_field_string (mnt, mo, "members[]", "path", &path) < 0
        || strcmp (state, "active") == 0)
      continue;
    int w = strcmp (state, "missing") == 0
      ? snprintf (out + used, len - used, "%sslot %zu missing",
                  used ? ", " : "", k)
      : snprintf (out + used, len - used, "%s%s %s", used ? ", " : "", path,
                  state);
    if (w < 0 || (size_t) w >= len - used)
      break;
    used += (size_t) w;
  }
}

/* The state of a volume as events: what --oneshot says, and what the
 * monitor says of a volume it finds when it starts. */
static void
report_state (struct monitor *m, const char *mnt, struct json_object *j)
{
  const char *state;
  if (json_field_string (mnt, j, NULL, "state", &state) < 0)
    return;
  if (strcmp (state, "active") != 0) {
    char which[1024];
    not_active (mnt, j, which, sizeof which);
    report (m, "DegradedArray", mnt, which, 0, false);
  }
  struct json_object *bitmap, *err, *check;
  bool in_use;
  if (json_field (mnt, j, NULL, "bitmap", json_type_object, true,
                  &bitmap) == 0 && bitmap
      && json_field_bool (mnt, bitmap, "bitmap", "in_use", &in_use) == 0
      && !in_use) {
    const char *path = "";
    json_field_string (mnt, bitmap, "bitmap", "path", &path);
    report (m, "BitmapFailed", mnt, path, 0, false);
  }
  if (json_field (mnt, j, NULL, "resync_error", json_type_string, true,
                  &err) == 0 && err)
    report (m, "ResyncFailed", mnt, json_object_get_string (err), 0, false);
  bool finished, repair;
  uint64_t mismatches;
  if (json_field (mnt, j, NULL, "check", json_type_object, false,
                  &check) == 0
      && json_field_bool (mnt, check, "check", "finished", &finished) == 0
      && json_field_bool (mnt, check, "check", "repair", &repair) == 0
      && json_field_u64 (mnt, check, "check", "mismatches", &mismatches) == 0
      && finished && !repair && mismatches)
    report (m, "CheckMismatches", mnt, "", mismatches, true);
}

/* Report the notices of J numbered FROM on; the next number to report. */
static uint64_t
report_notices (struct monitor *m, const char *mnt, struct json_object *n,
                uint64_t from)
{
  struct json_object *items;
  uint64_t next = from;
  if (json_field (mnt, n, "notices", "items", json_type_array, false,
                  &items) < 0)
    return from;
  for (size_t k = 0; k < json_object_array_length (items); k++) {
    struct json_object *it = json_object_array_get_idx (items, k);
    uint64_t seq, value;
    const char *event, *subject;
    if (json_field_u64 (mnt, it, "notices.items[]", "seq", &seq) < 0
        || json_field_string (mnt, it, "notices.items[]", "event",
                              &event) < 0
        || json_field_string (mnt, it, "notices.items[]", "subject",
                              &subject) < 0
        || json_field_u64 (mnt, it, "notices.items[]", "value", &value) < 0)
      continue;
    if (seq < from)
      continue;
    if (seq > next)
      report (m, "NoticesLost", mnt, "", seq - next, true);
    bool counted = strcmp (event, "ResyncFinished") == 0
      || strcmp (event, "RecoveryFinished") == 0
      || strcmp (event, "CheckMismatches") == 0;
    report (m, event, mnt, subject, value, counted);
    next = seq + 1;
  }
  return next;
}

/* One look at W.  FIRST: the monitor's first look (report the state, not
 * the history). */
static void
look (struct monitor *m, struct watch *w, bool first, bool oneshot)
{
  struct json_object *j = client_status_q (w->mnt, !(w->given && first));
  if (!j) {
    if (w->present)
      report (m, "DeviceDisappeared", w->mnt, "", 0, false);
    w->present = false;
    return;
  }
  struct json_object *n;
  uint64_t instance, next;
  if (!json_object_object_get_ex (j, "notices", &n)) {
    /* An mdfuse older than the notices: say so once, and leave it. */
    if (!w->warned)
      log_warn ("%s: its mdfuse keeps no notices (an older version?); not "
                "following it", w->mnt);
    w->warned = true;
    json_object_put (j);
    return;
  }
  if (json_field (w->mnt, j, NULL, "notices", json_type_object, false,
                  &n) < 0
      || json_field_u64 (w->mnt, n, "notices", "instance", &instance) < 0
      || json_field_u64 (w->mnt, n, "notices", "next", &next) < 0) {
    json_object_put (j);
    return;
  }
  if (oneshot)
    report_state (m, w->mnt, j);
  else if (!w->seen && first) {
    /* There when we start: its state, not its history. */
    report_state (m, w->mnt, j);
    w->next = next;
  }
  else if (!w->seen || instance != w->instance) {
    /* Mounted while we watch: everything since its mount. */
    report (m, "NewArray", w->mnt, "", 0, false);
    w->next = report_notices (m, w->mnt, n, 0);
  }
  else
    w->next = report_notices (m, w->mnt, n, w->next);
  w->instance = instance;
  w->seen = true;
  w->present = true;
  json_object_put (j);
}

static struct watch *
add_watch (struct monitor *m, const char *mnt, bool given)
{
  for (size_t i = 0; i < m->n; i++)
    if (strcmp (m->w[i].mnt, mnt) == 0)
      return &m->w[i];
  if (m->n == m->cap) {
    size_t cap = m->cap ? 2 * m->cap : 8;
    struct watch *w = realloc (m->w, cap * sizeof *w);
    if (!w)
      return NULL;
    m->w = w;
    m->cap = cap;
  }
  struct watch *w = &m->w[m->n++];
  memset (w, 0, sizeof *w);
  w->mnt = strdup (mnt);
  w->given = given;
  return w->mnt ? w : (m->n--, NULL);
}

/* Unescape a mountinfo field in place ("\040" is a space). */
static void
unescape (char *s)
{
  char *o = s;
  for (; *s; s++) {
    if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0'
        && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
      *o++ = (char) ((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
      s += 3;
    }
    else
      *o++ = *s;
  }
  *o = '\0';
}

/* Add every mounted mdfuse volume. */
static void
scan_mounts (struct monitor *m)
{
  FILE *f = fopen ("/proc/self/mountinfo", "r");
  if (!f) {
    log_error ("/proc/self/mountinfo: %s", strerror (errno));
    return;
  }
  char *line = NULL;
  size_t cap = 0;
  while (getline (&line, &cap, f) > 0) {
    /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE ... */
    char *save = NULL, *mnt = NULL, *tok;
    int k = 0;
    bool dash = false;
    for (tok = strtok_r (line, " \n", &save); tok;
         tok = strtok_r (NULL, " \n", &save), k++) {
      if (k == 4)
        mnt = tok;
      else if (dash) {
        if (strcmp (tok, "fuse.mdfuse") == 0 && mnt) {
          unescape (mnt);
          add_watch (m, mnt, false);
        }
        break;
      }
      else if (k > 5 && strcmp (tok, "-") == 0)
        dash = true;
    }
  }
  free (line);
  fclose (f);
}

int
cmd_monitor (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "program", required_argument, NULL, 'p' },
    { "oneshot", no_argument, NULL, '1' },
    { "delay", required_argument, NULL, 'd' },
    { "no-syslog", no_argument, NULL, 'n' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct monitor m = { .use_syslog = true };
  bool oneshot = false;
  double delay = 5;
  int c;
  while ((c = getopt_long (argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 'p': m.program = optarg; break;
    case '1': oneshot = true; break;
    case 'n': m.use_syslog = false; break;
    case 'd': {
      char *end;
      delay = strtod (optarg, &end);
      if (*end || !(delay >= 0.1 && delay <= 86400))
        return usage_error ("monitor", "--delay %s: not a number of seconds "
                            "in 0.1..86400", optarg);
      break;
    }
    case 'h': usage ("monitor"); return 0;
    default: return usage_error ("monitor", NULL);
    }
  }
  if (m.program && access (m.program, X_OK) != 0) {
    log_error ("--program %s: %s (give the path of an executable)",
               m.program, strerror (errno));
    return EXIT_FAIL;
  }
  if (m.use_syslog)
    openlog ("mdfusectl-monitor", LOG_PID, LOG_DAEMON);
  m.scan_all = optind == argc;
  for (int i = optind; i < argc; i++)
    if (!add_watch (&m, argv[i], true)) {
      log_error ("out of memory");
      return EXIT_FAIL;
    }

  struct sigaction sa = { .sa_handler = on_signal };
  sigemptyset (&sa.sa_mask);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGHUP, &sa, NULL);

  int rc = 0;
  for (bool first = true; !stop; first = false) {
    if (m.scan_all)
      scan_mounts (&m);
    for (size_t i = 0; i < m.n; i++)
      look (&m, &m.w[i], first, oneshot);
    if (oneshot) {
      for (size_t i = 0; i < m.n; i++)
        if (m.w[i].given && !m.w[i].present)
          rc = EXIT_FAIL;       /* client_status said why */
      break;
    }
    struct timespec ts = { (time_t) delay,
                           (long) ((delay - (double) (time_t) delay) * 1e9) };
    while (!stop && nanosleep (&ts, &ts) < 0 && errno == EINTR)
      ;
  }
  for (size_t i = 0; i < m.n; i++)
    free (m.w[i].mnt);
  free (m.w);
  if (m.use_syslog)
    closelog ();
  return rc;
}
