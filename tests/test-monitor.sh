#!/usr/bin/env bash
# mdfuse: mdfusectl monitor (mdadm --monitor), on real events.
#
# Claims tested: a running monitor reports, through its --program (EVENT
# MOUNTPOINT [SUBJECT], MDFUSE_EVENT_VALUE), on stdout and in syslog:
# a member failed (Fail), a re-add that ended (RecoveryFinished), a check
# that found a planted mismatch (CheckMismatches, 1), a daemon killed
# (DeviceDisappeared), the resync of the next mount (NewArray,
# ResyncFinished), a degraded mount (DegradedArray naming the missing
# slot), the bitmap removed (BitmapRemoved).  --oneshot reports the state
# of each volume once (for cron); SIGTERM stops the monitor with status 0;
# the daemon's own loud messages reach syslog too.  Usage errors exit 2.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires jq

make_tmpdir
make_array --size 64M --chunk 1M
m0=${ARRAY_MEMBERS[0]} m1=${ARRAY_MEMBERS[1]} mnt=$ARRAY_MNT

# syslog: when no syslog daemon owns /dev/log (this machine, CI), catch
# what is sent there.
syslog=$tmpdir/syslog
: >"$syslog"
catch_syslog=0
if [[ ! -e /dev/log ]]; then
    requires socat
    socat -u UNIX-RECV:/dev/log OPEN:"$syslog",creat,append &
    syslog_pid=$!
    cleanup_fn eval "kill $syslog_pid 2>/dev/null; wait $syslog_pid 2>/dev/null; rm -f /dev/log"
    for _ in $(seq 50); do [[ -S /dev/log ]] && break; sleep 0.1; done
    [[ -S /dev/log ]] || fail "socat did not make /dev/log"
    catch_syslog=1
else
    info "a syslog daemon owns /dev/log: the syslog lines are not checked here"
fi

events=$tmpdir/events
cat >"$tmpdir/prog" <<EOF
#!/bin/sh
printf '%s|%s|%s|%s\n' "\$1" "\$2" "\${3:-}" "\${MDFUSE_EVENT_VALUE:-}" >>"$events"
EOF
chmod +x "$tmpdir/prog"
: >"$events"

info "usage errors"
st=0
"$MDFUSECTL" monitor --delay 0 "$mnt" >/dev/null 2>&1 || st=$?
[[ $st -eq 2 ]] || fail "monitor --delay 0 exited $st, expected 2"
expect_fail "--program $tmpdir/nope: No such file" "$MDFUSECTL" monitor --program "$tmpdir/nope" "$mnt"

"$MDFUSECTL" monitor --delay 0.2 --program "$tmpdir/prog" "$mnt" >"$tmpdir/mon.out" 2>"$tmpdir/mon.err" &
monitor=$!
cleanup_fn eval "kill $monitor 2>/dev/null; wait $monitor 2>/dev/null"

# expect_event LINE [N]: the program was called (N times in all, 1 by
# default) with these arguments (EVENT|MOUNTPOINT|SUBJECT|VALUE) within
# 20 s.
expect_event() {
    local i n=${2:-1}
    for ((i = 0; i < 200; i++)); do
        if [[ $(grep -cxF -- "$1" "$events") -ge $n ]]; then
            info "event: $1"
            return 0
        fi
        sleep 0.1
    done
    cat "$events" "$tmpdir/mon.err" >&2
    fail "no event '$1' (the ${n}th) within 20 s"
}
sleep 0.5
[[ ! -s $events ]] || fail "a whole volume gave events at the start: $(cat "$events")"

info "a member fails, and comes back"
"$MDFUSECTL" fail "$mnt" "$m1" >/dev/null || fail "mdfusectl fail failed"
expect_event "Fail|$mnt|$m1|"
dd if=/dev/urandom of="$mnt/volume" bs=1M seek=3 count=2 conv=notrunc,fsync status=none
"$MDFUSECTL" re-add "$mnt" "$m1" >/dev/null || fail "re-add failed"
expect_event "RecoveryFinished|$mnt|$m1|2"

info "a check finds a planted mismatch"
flip_byte "$m1" $((7 * 1024 * 1024 + 5))
"$MDFUSECTL" check "$mnt" >/dev/null 2>&1 || true
expect_event "CheckMismatches|$mnt||1"
"$MDFUSECTL" check --repair "$mnt" >/dev/null 2>&1 || fail "repair failed"
expect_event "CheckMismatches|$mnt||1" 2 # found again, and rewritten

info "the daemon is killed; the next mount resyncs"
dd if=/dev/urandom of="$mnt/volume" bs=1M seek=10 count=3 conv=notrunc,fsync status=none
kill_mdfuse
expect_event "DeviceDisappeared|$mnt||"
mount_array
expect_event "NewArray|$mnt||"
read -r copied _ < <(resync_counts "$MDFUSE_LOG")
[[ $copied -ge 3 ]] || fail "the resync after the kill copied $copied chunks, expected at least 3"
expect_event "ResyncFinished|$mnt||$copied"

info "a degraded mount"
stop_mdfuse
mv "$m1" "$m1.away"
mount_array -o degraded
expect_event "DegradedArray|$mnt|slot 1 missing|"
"$MDFUSECTL" monitor --oneshot --no-syslog "$mnt" >"$tmpdir/oneshot" 2>&1 ||
    { cat "$tmpdir/oneshot" >&2; fail "monitor --oneshot failed"; }
grep -qxF "DegradedArray $mnt slot 1 missing" "$tmpdir/oneshot" ||
    fail "monitor --oneshot: $(cat "$tmpdir/oneshot")"
"$MDFUSECTL" monitor --oneshot --no-syslog >"$tmpdir/oneshot" 2>/dev/null ||
    fail "monitor --oneshot of every volume failed"
grep -qxF "DegradedArray $mnt slot 1 missing" "$tmpdir/oneshot" ||
    fail "monitor --oneshot without a mount point did not find $mnt: $(cat "$tmpdir/oneshot")"
stop_mdfuse
mv "$m1.away" "$m1"
mount_array # m1 is behind: the mount recovers it
assert_status "$mnt" '.state == "active"' "whole again after the mount with m1"
"$MDFUSECTL" monitor --oneshot --no-syslog "$mnt" >"$tmpdir/oneshot" 2>&1 || fail "monitor --oneshot failed"
[[ ! -s $tmpdir/oneshot ]] || fail "monitor --oneshot of a whole volume said: $(cat "$tmpdir/oneshot")"

info "the bitmap removed"
"$MDFUSECTL" remove-bitmap "$mnt" >/dev/null || fail "remove-bitmap failed"
expect_event "BitmapRemoved|$mnt|$ARRAY_BITMAP|"

info "stdout, syslog, and SIGTERM"
grep -qxF "Fail $mnt $m1" "$tmpdir/mon.out" || fail "the monitor's stdout has no Fail line: $(cat "$tmpdir/mon.out")"
grep -qxF "CheckMismatches $mnt (1)" "$tmpdir/mon.out" || fail "the monitor's stdout has no CheckMismatches line"
if [[ $catch_syslog -eq 1 ]]; then
    grep -qF "mdfusectl-monitor" "$syslog" && grep -qF "Fail event on $mnt: $m1" "$syslog" ||
        fail "syslog has no Fail event from the monitor: $(tr '\0' '\n' <"$syslog" | tail -n 5)"
    grep -qF "DegradedArray event on $mnt: slot 1 missing" "$syslog" ||
        fail "syslog has no DegradedArray event"
    grep -qF "$m1: failed by the administrator" "$syslog" ||
        fail "the daemon's loud message about the failed member is not in syslog"
fi
kill -TERM "$monitor"
st=0
wait "$monitor" || st=$?
[[ $st -eq 0 ]] || fail "the monitor exited $st after SIGTERM"
stop_mdfuse
info "ok"
