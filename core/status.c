/* The array's state for people (like /proc/mdstat) and for scripts (JSON). */
#include <config.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/array_impl.h"
#include "common/util.h"

struct outbuf {
  char *p;
  size_t len, used;
};

static void __attribute__ ((format (printf, 2, 3)))
out (struct outbuf *o, const char *fmt, ...)
{
  if (o->used >= o->len)
    return;
  va_list ap;
  va_start (ap, fmt);
  int n = vsnprintf (o->p + o->used, o->len - o->used, fmt, ap);
  va_end (ap);
  if (n > 0)
    o->used += (size_t) n < o->len - o->used ? (size_t) n : o->len - o->used - 1;
}

/* A JSON string: member paths may hold quotes or backslashes. */
static void
out_json_string (struct outbuf *o, const char *s)
{
  out (o, "\"");
  for (; s && *s; s++) {
    unsigned char c = (unsigned char) *s;
    if (c == '"' || c == '\\')
      out (o, "\\%c", c);
    else if (c < 0x20)
      out (o, "\\u%04x", c);
    else
      out (o, "%c", c);
  }
  out (o, "\"");
}

struct snapshot {
  uint64_t events;
  enum member_state state[ASSEMBLE_MAX_SLOTS];
  const char *name[ASSEMBLE_MAX_SLOTS];
  uint64_t rerr[ASSEMBLE_MAX_SLOTS], werr[ASSEMBLE_MAX_SLOTS];
  uint32_t active;
  bool bitmap, bitmap_ok;
  uint64_t dirty, chunks, chunk;
  bool recovering;
  uint32_t rslot;
  bool rfull;
  uint64_t rpos, rtotal;
  double relapsed;
  bool checking, check_done, repair;
  uint64_t cpos, ctotal, mismatches, repaired;
  double celapsed;
  const char *csource;
};

static void
take_snapshot (struct array *a, struct snapshot *s)
{
  memset (s, 0, sizeof *s);
  pthread_mutex_lock (&a->sb_lock);
  s->events = a->events;
  for (uint32_t k = 0; k < a->nslots; k++) {
    s->state[k] = (enum member_state) state_of (a, k);
    s->name[k] = a->m[k].io ? a->m[k].io->name : "(missing)";
    s->rerr[k] = __atomic_load_n (&a->m[k].read_errors, __ATOMIC_RELAXED);
    s->werr[k] = a->m[k].write_errors;
    if (s->state[k] == MEMBER_ACTIVE)
      s->active++;
  }
  s->bitmap = a->bitmap.bm != NULL;
  s->bitmap_ok = bitmap_guards_writes (a);
  if (a->bitmap.bm) {
    s->dirty = bitmap_dirty_count (a->bitmap.bm);
    s->chunks = bitmap_nchunks (a->bitmap.bm);
    s->chunk = bitmap_chunk_size (a->bitmap.bm);
  }
  s->recovering = a->recovery.running;
  s->rslot = a->recovery.slot;
  s->rfull = a->recovery.full;
  s->rpos = __atomic_load_n (&a->recovery.pos, __ATOMIC_RELAXED);
  s->rtotal = a->recovery.total;
  if (s->rpos > s->rtotal)
    s->rtotal = s->rpos;
  s->relapsed = now_seconds () - a->recovery.start;
  s->checking = a->check.running;
  s->check_done = a->check.done_once;
  s->repair = a->check.repair;
  s->cpos = __atomic_load_n (&a->check.pos, __ATOMIC_RELAXED);
  s->ctotal = a->check.total;
  s->mismatches = __atomic_load_n (&a->check.mismatches, __ATOMIC_RELAXED);
  s->repaired = __atomic_load_n (&a->check.repaired, __ATOMIC_RELAXED);
  s->celapsed = now_seconds () - a->check.start;
  s->csource = a->check.source;
  pthread_mutex_unlock (&a->sb_lock);
}

static void
progress (struct outbuf *o, const char *what, uint64_t pos, uint64_t total,
          double elapsed, uint64_t unit)
{
  double frac = total ? (double) pos / (double) total : 1.0;
  double rate = elapsed > 0 ? (double) pos * (double) unit / elapsed : 0;
  double left = rate > 0 ? (double) (total - pos) * (double) unit / rate : 0;
  char rs[32];
  format_bytes ((uint64_t) rate, rs, sizeof rs);
  out (o, "      %s = %5.1f%% (%" PRIu64 "/%" PRIu64 ") %s/s, %.0f s left\n",
       what, 100.0 * frac, pos, total, rs, left);
}

size_t
array_status_text (struct array *a, char *buf, size_t len)
{
  struct outbuf o = { buf, len, 0 };
  struct snapshot s;
  take_snapshot (a, &s);
  char vs[32];
  format_bytes (a->volume_bytes, vs, sizeof vs);
  out (&o, "volume : %s raid1, %" PRIu64 " bytes (%s), events %" PRIu64 "\n",
       s.active == a->nslots ? "active" : s.active ? "degraded" : "failed",
       a->volume_bytes, vs, s.events);
  out (&o, "      [%" PRIu32 "/%" PRIu32 "] [", a->nslots, s.active);
  for (uint32_t k = 0; k < a->nslots; k++)
    out (&o, "%c", s.state[k] == MEMBER_ACTIVE ? 'U' : '_');
  out (&o, "]\n");
  for (uint32_t k = 0; k < a->nslots; k++)
    out (&o, "      %" PRIu32 ": %-10s %s  (read errors %" PRIu64
         ", write errors %" PRIu64 ")\n", k, member_state_name (s.state[k]),
         s.name[k], s.rerr[k], s.werr[k]);
  if (!s.bitmap)
    out (&o, "bitmap : none (-o nobitmap)\n");
  else {
    char cs[32];
    format_bytes (s.chunk, cs, sizeof cs);
    out (&o, "bitmap : %s, %" PRIu64 "/%" PRIu64 " chunks dirty, chunk %s%s\n",
         bitmap_name (a->bitmap.bm), s.dirty, s.chunks, cs,
         s.bitmap_ok ? "" : " (abandoned after an error: the next mount "
         "resyncs everything)");
  }
  if (s.recovering) {
    out (&o, "recovery : %s (%s)\n", s.name[s.rslot],
         s.rfull ? "full" : "bitmap");
    progress (&o, "recovery", s.rpos, s.rtotal, s.relapsed,
              array_copy_unit (a));
  }
  if (s.checking) {
    out (&o, "%s : running, %" PRIu64 " mismatched chunks so far\n",
         s.repair ? "repair" : "check", s.mismatches);
    progress (&o, s.repair ? "repair" : "check", s.cpos >> 20, s.ctotal >> 20,
              s.celapsed, 1u << 20);
  }
  else if (s.check_done)
    out (&o, "%s : done, %" PRIu64 " mismatched chunks%s%s%s\n",
         s.repair ? "repair" : "check", s.mismatches,
         s.repair && s.mismatches ? ", rewritten from the " : "",
         s.repair && s.mismatches ? s.csource : "", "");
  out (&o, "resync at mount : copied %" PRIu64 " of %" PRIu64
       " chunks (%" PRIu64 " bytes) in %.3f s\n", a->last_resync.chunks_copied,
       a->last_resync.chunks_total, a->last_resync.bytes_copied,
       a->last_resync.seconds);
  return o.used;
}

size_t
array_status_json (struct array *a, char *buf, size_t len)
{
  struct outbuf o = { buf, len, 0 };
  struct snapshot s;
  take_snapshot (a, &s);
  out (&o, "{\"level\":\"raid1\",\"size\":%" PRIu64 ",\"events\":%" PRIu64
       ",\"state\":\"%s\",\"raid_disks\":%" PRIu32 ",\"active\":%" PRIu32
       ",\"members\":[", a->volume_bytes, s.events,
       s.active == a->nslots ? "active" : s.active ? "degraded" : "failed",
       a->nslots, s.active);
  for (uint32_t k = 0; k < a->nslots; k++) {
    out (&o, "%s{\"slot\":%" PRIu32 ",\"path\":", k ? "," : "", k);
    out_json_string (&o, s.name[k]);
    out (&o, ",\"state\":\"%s\",\"read_errors\":%" PRIu64
         ",\"write_errors\":%" PRIu64 "}", member_state_name (s.state[k]), s.rerr[k],
         s.werr[k]);
  }
  out (&o, "],\"bitmap\":");
  if (!s.bitmap)
    out (&o, "null");
  else {
    out (&o, "{\"path\":");
    out_json_string (&o, bitmap_name (a->bitmap.bm));
    out (&o, ",\"chunk_size\":%" PRIu64 ",\"chunks\":%" PRIu64
         ",\"dirty\":%" PRIu64 ",\"in_use\":%s}", s.chunk, s.chunks, s.dirty,
         s.bitmap_ok ? "true" : "false");
  }
  out (&o, ",\"recovery\":");
  if (!s.recovering)
    out (&o, "null");
  else {
    out (&o, "{\"slot\":%" PRIu32 ",\"mode\":\"%s\",\"done_chunks\":%" PRIu64
         ",\"total_chunks\":%" PRIu64 ",\"seconds\":%.1f}", s.rslot,
         s.rfull ? "full" : "bitmap", s.rpos, s.rtotal, s.relapsed);
  }
  out (&o, ",\"check\":{\"running\":%s,\"repair\":%s,\"done_bytes\":%" PRIu64
       ",\"total_bytes\":%" PRIu64 ",\"mismatches\":%" PRIu64
       ",\"repaired\":%" PRIu64 ",\"source\":", s.checking ? "true" : "false",
       s.repair ? "true" : "false", s.cpos, s.ctotal, s.mismatches,
       s.repaired);
  out_json_string (&o, s.csource);
  out (&o, ",\"finished\":%s}", s.check_done ? "true" : "false");
  out (&o, ",\"last_resync\":{\"chunks_copied\":%" PRIu64
       ",\"chunks_total\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"seconds\":%.3f}}\n",
       a->last_resync.chunks_copied, a->last_resync.chunks_total,
       a->last_resync.bytes_copied, a->last_resync.seconds);
  return o.used;
}
