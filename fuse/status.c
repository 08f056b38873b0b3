/* The status for people (like /proc/mdstat) and for scripts (JSON, one
 * line): the keys and the words are an interface (mdfusectl, the shell
 * tests and mdfusectl(8) depend on them). */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <json.h>

#include "common/util.h"
#include "core/superblock.h"
#include "fuse/status.h"

/* ---- text ---- */

struct outbuf {
  char *p;
  size_t len, used;
};

static void __attribute__ ((format (printf, 2, 3)))
out (struct outbuf *o, const char *fmt, ...)
{
  if (o->used + 1 >= o->len)
    return;
  va_list ap;
  va_start (ap, fmt);
  int n = vsnprintf (o->p + o->used, o->len - o->used, fmt, ap);
  va_end (ap);
  if (n > 0)
    o->used += (size_t) n < o->len - o->used ? (size_t) n : o->len - o->used - 1;
}

/* "      what =  42.0% (pos/total) 12.00 MiB/s, 3 s left": POS and TOTAL
 * in units of UNIT bytes, RATE in bytes/s. */
static void
progress_line (struct outbuf *o, const char *what, uint64_t pos,
               uint64_t total, uint64_t unit, uint64_t rate)
{
  double frac = total ? (double) pos / (double) total : 1.0;
  double left = rate > 0 ? (double) (total - pos) * (double) unit
    / (double) rate : 0;
  char rs[32];
  format_bytes (rate, rs, sizeof rs);
  out (o, "      %s = %5.1f%% (%" PRIu64 "/%" PRIu64 ") %s/s, %.0f s left\n",
       what, 100.0 * frac, pos, total, rs, left);
}

int
status_render_text (const struct array_status *st, char *buf, size_t len)
{
  if (len == 0)
    return -EINVAL;
  buf[0] = '\0';
  struct outbuf o = { buf, len, 0 };
  char vs[32];
  format_bytes (st->size, vs, sizeof vs);
  char uuid[36];
  sb_format_uuid (st->uuid, uuid);
  out (&o, "volume : %s raid1, %" PRIu64 " bytes (%s), events %" PRIu64 "\n",
       array_state_name (st->state), st->size, vs, st->events);
  out (&o, "      uuid %s, name %s\n", uuid, st->name[0] ? st->name : "(none)");
  out (&o, "      [%" PRIu32 "/%" PRIu32 "] [", st->raid_disks, st->active);
  for (uint32_t k = 0; k < st->raid_disks; k++)
    out (&o, "%c", st->members[k].state == MEMBER_ACTIVE ? 'U' : '_');
  out (&o, "]\n");
  for (uint32_t k = 0; k < st->raid_disks; k++) {
    const struct array_member_status *m = &st->members[k];
    char rtt[48] = "";
    if (m->networked && m->rtt_ns)
      snprintf (rtt, sizeof rtt, ", round trip %.2f ms",
                (double) m->rtt_ns / 1e6);
    out (&o, "      %" PRIu32 ": %-10s %s%s  (read errors %" PRIu64
         ", write errors %" PRIu64 "%s)\n", k, member_state_name (m->state),
         m->path, m->write_mostly ? " (write-mostly)" : "", m->read_errors,
         m->write_errors, rtt);
  }
  if (!st->bitmap.present)
    out (&o, "bitmap : none (-o nobitmap)\n");
  else {
    char cs[32];
    format_bytes (st->bitmap.chunk_size, cs, sizeof cs);
    out (&o, "bitmap : %s, %" PRIu64 "/%" PRIu64 " chunks dirty, chunk %s%s\n",
         st->bitmap.path, st->bitmap.dirty, st->bitmap.chunks, cs,
         st->bitmap.in_use ? "" : " (abandoned after an error: the next "
         "mount resyncs everything)");
  }
  if (st->write_behind.max)
    out (&o, "write-behind : at most %" PRIu32 ", %" PRIu32 " behind now, %"
         PRIu64 " done\n", st->write_behind.max,
         st->write_behind.outstanding, st->write_behind.done);
  if (st->recovery.running) {
    out (&o, "recovery : %s (%s)\n", st->members[st->recovery.slot].path,
         st->recovery.mode == RECOVER_FULL ? "full" : "bitmap");
    progress_line (&o, "recovery", st->recovery.done_chunks,
                   st->recovery.total_chunks, st->recovery.chunk_size,
                   st->recovery.rate);
  }
  if (st->resync.running) {
    char mn[32], mx[32];
    format_bytes (st->resync.rate_min, mn, sizeof mn);
    format_bytes (st->resync.rate_max, mx, sizeof mx);
    out (&o, "resync : running%s, %" PRIu64 " chunk%s still read from the "
         "source alone (rate min %s/s, max %s%s)\n",
         st->resync.full ? " (full)" : "", st->resync.differ_chunks,
         plural (st->resync.differ_chunks), mn,
         st->resync.rate_max ? mx : "unlimited",
         st->resync.rate_max ? "/s" : "");
    progress_line (&o, "resync", st->resync.done_chunks,
                   st->resync.total_chunks, st->resync.chunk_size,
                   st->resync.rate);
  }
  else if (st->resync_error)
    out (&o, "resync : not finished (%s); the next mount resumes it\n",
         strerror (-st->resync_error));
  const char *check = st->check.repair ? "repair" : "check";
  if (st->check.running) {
    out (&o, "%s : running, %" PRIu64 " mismatched chunks so far\n", check,
         st->check.mismatches);
    progress_line (&o, check, st->check.done_bytes >> 20,
                   st->check.total_bytes >> 20, 1u << 20, st->check.rate);
  }
  else if (st->check.finished) {
    bool rewritten = st->check.repair && st->check.mismatches;
    out (&o, "%s : done, %" PRIu64 " mismatched chunks%s%s\n", check,
         st->check.mismatches, rewritten ? ", rewritten from the " : "",
         rewritten ? st->check.source : "");
  }
  if (!st->resync.running)
    out (&o, "resync at mount : copied %" PRIu64 " of %" PRIu64
         " chunks (%" PRIu64 " bytes) in %.3f s\n",
         st->last_resync.chunks_copied, st->last_resync.chunks_total,
         st->last_resync.bytes_copied, st->last_resync.seconds);
  return (int) o.used;
}

/* ---- JSON ---- */

/* A number shown with a fixed count of decimals, as before json-c. */
static struct json_object *
fixed (double d, int decimals)
{
  char s[64];
  snprintf (s, sizeof s, "%.*f", decimals, d);
  return json_object_new_double_s (d, s);
}

static void
add (struct json_object *o, const char *key, struct json_object *v)
{
  json_object_object_add (o, key, v);
}

static struct json_object *
u64 (uint64_t n)
{
  return json_object_new_uint64 (n);
}

static struct json_object *
json_status (const struct array_status *st)
{
  struct json_object *o = json_object_new_object ();
  add (o, "level", json_object_new_string ("raid1"));
  add (o, "size", u64 (st->size));
  add (o, "events", u64 (st->events));
  char uuid[36];
  sb_format_uuid (st->uuid, uuid);
  add (o, "uuid", json_object_new_string (uuid));
  add (o, "name", json_object_new_string (st->name));
  add (o, "state", json_object_new_string (array_state_name (st->state)));
  add (o, "raid_disks", u64 (st->raid_disks));
  add (o, "active", u64 (st->active));
  struct json_object *members = json_object_new_array ();
  for (uint32_t k = 0; k < st->raid_disks; k++) {
    const struct array_member_status *m = &st->members[k];
    struct json_object *j = json_object_new_object ();
    add (j, "slot", u64 (k));
    add (j, "path", json_object_new_string (m->path));
    add (j, "state", json_object_new_string (member_state_name (m->state)));
    add (j, "write_mostly", json_object_new_boolean (m->write_mostly));
    add (j, "read_errors", u64 (m->read_errors));
    add (j, "write_errors", u64 (m->write_errors));
    add (j, "rtt_ms", m->networked && m->rtt_ns
         ? fixed ((double) m->rtt_ns / 1e6, 3) : NULL);
    json_object_array_add (members, j);
  }
  add (o, "members", members);

  struct json_object *bitmap = NULL;
  if (st->bitmap.present) {
    bitmap = json_object_new_object ();
    add (bitmap, "path", json_object_new_string (st->bitmap.path));
    add (bitmap, "chunk_size", u64 (st->bitmap.chunk_size));
    add (bitmap, "chunks", u64 (st->bitmap.chunks));
    add (bitmap, "dirty", u64 (st->bitmap.dirty));
    add (bitmap, "in_use", json_object_new_boolean (st->bitmap.in_use));
  }
  add (o, "bitmap", bitmap);

  struct json_object *behind = json_object_new_object ();
  add (behind, "max", u64 (st->write_behind.max));
  add (behind, "outstanding", u64 (st->write_behind.outstanding));
  add (behind, "done", u64 (st->write_behind.done));
  add (o, "write_behind", behind);

  struct json_object *recovery = NULL;
  if (st->recovery.running) {
    recovery = json_object_new_object ();
    add (recovery, "slot", u64 (st->recovery.slot));
    add (recovery, "mode", json_object_new_string
         (st->recovery.mode == RECOVER_FULL ? "full" : "bitmap"));
    add (recovery, "done_chunks", u64 (st->recovery.done_chunks));
    add (recovery, "total_chunks", u64 (st->recovery.total_chunks));
    add (recovery, "chunk_size", u64 (st->recovery.chunk_size));
    add (recovery, "seconds", fixed (st->recovery.seconds, 1));
  }
  add (o, "recovery", recovery);

  struct json_object *resyncing = NULL;
  if (st->resync.running) {
    resyncing = json_object_new_object ();
    add (resyncing, "full", json_object_new_boolean (st->resync.full));
    add (resyncing, "done_chunks", u64 (st->resync.done_chunks));
    add (resyncing, "total_chunks", u64 (st->resync.total_chunks));
    add (resyncing, "chunk_size", u64 (st->resync.chunk_size));
    add (resyncing, "differ_chunks", u64 (st->resync.differ_chunks));
    add (resyncing, "seconds", fixed (st->resync.seconds, 1));
    add (resyncing, "rate", u64 (st->resync.rate));
  }
  add (o, "resync", resyncing);
  add (o, "resync_error", st->resync_error
       ? json_object_new_string (strerror (-st->resync_error)) : NULL);
  add (o, "resync_rate_min", u64 (st->resync.rate_min));
  add (o, "resync_rate_max", u64 (st->resync.rate_max));

  struct json_object *check = json_object_new_object ();
  add (check, "running", json_object_new_boolean (st->check.running));
  add (check, "repair", json_object_new_boolean (st->check.repair));
  add (check, "done_bytes", u64 (st->check.done_bytes));
  add (check, "total_bytes", u64 (st->check.total_bytes));
  add (check, "mismatches", u64 (st->check.mismatches));
  add (check, "repaired", u64 (st->check.repaired));
  add (check, "source", json_object_new_string (st->check.source));
  add (check, "finished", json_object_new_boolean (st->check.finished));
  add (o, "check", check);

  struct json_object *resync = json_object_new_object ();
  add (resync, "chunks_copied", u64 (st->last_resync.chunks_copied));
  add (resync, "chunks_total", u64 (st->last_resync.chunks_total));
  add (resync, "bytes", u64 (st->last_resync.bytes_copied));
  add (resync, "seconds", fixed (st->last_resync.seconds, 3));
  add (o, "last_resync", resync);

  struct json_object *notices = json_object_new_object ();
  add (notices, "instance", u64 (st->notices.instance));
  add (notices, "next", u64 (st->notices.next));
  struct json_object *items = json_object_new_array ();
  for (uint32_t k = 0; k < st->notices.count; k++) {
    const struct array_notice *n = &st->notices.items[k];
    struct json_object *j = json_object_new_object ();
    add (j, "seq", u64 (n->seq));
    add (j, "time", u64 (n->time));
    add (j, "event", json_object_new_string (array_notice_name (n->kind)));
    add (j, "subject", json_object_new_string (n->subject));
    add (j, "value", u64 (n->value));
    json_object_array_add (items, j);
  }
  add (notices, "items", items);
  add (o, "notices", notices);
  return o;
}

int
status_render_json (const struct array_status *st, char *buf, size_t len)
{
  if (len == 0)
    return -EINVAL;
  struct json_object *o = json_status (st);
  if (!o)
    return -ENOMEM;
  const char *s = json_object_to_json_string_ext
    (o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
  int r = s ? snprintf (buf, len, "%s\n", s) : -ENOMEM;
  json_object_put (o);
  if (r >= 0 && (size_t) r >= len)
    r = (int) len - 1;
  return r;
}
