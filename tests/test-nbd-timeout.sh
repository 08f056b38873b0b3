#!/usr/bin/env bash
# mdfuse: a hung NBD server does not hang the volume (issue 16, SPEC §6).
#
# Claims tested:
#   - with -o member_timeout=2, the member's server stopped (SIGSTOP, a
#     server that accepts the connection and never answers) under a
#     writer: the member is faulty within the timeout (plus the time to
#     mark it), the daemon's log says which URI did not answer in time,
#     and the writer goes on: fio sees no error, no write waits much
#     longer than the timeout, every block verifies;
#   - the server continued, `mdfusectl re-add MNT 1` (the slot: the same
#     member) connects anew, recovers the member from the bitmap, and the
#     members end identical.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
require_nbdkit
requires jq
requires fio

T=2
make_tmpdir
cd "$tmpdir" || exit 1
V=$((64 * 1024 * 1024)) C=$((256 * 1024))
mkdir -p export
truncate -s $((V + 1024 * 1024)) export/m1.img
# One thread: nbdkit 1.32 aborts (raw_send_socket: Assertion `sock >= 0')
# when a client closes its connection while two of its threads still
# have replies to send, which is what giving up on a hung server does
# with several requests in flight.  The server's survival is what this
# test needs, not its parallelism.
start_nbdkit m1 -t 1 file "$tmpdir/export/m1.img"
uri=$NBD_URI nbd_pid=$NBD_PID
make_array --size 64M --chunk 256K --daemon-sleep 1 --nbd "$uri" "$tmpdir/export/m1.img" \
    -o "member_timeout=$T"
m0=${ARRAY_MEMBERS[0]} mnt=$ARRAY_MNT

info "fio writes; the NBD server stops answering (SIGSTOP)"
fio --name=nbdhang --filename="$mnt/volume" --size=32M --rw=randwrite --bs=4k \
    --ioengine=libaio --direct=1 --iodepth=8 --rate_iops=1500 --randseed=7 \
    --verify=crc32c --do_verify=1 --output-format=json --output="$tmpdir/fio.json" \
    >"$tmpdir/fio.log" 2>&1 &
fio_pid=$!
bg_pids+=("$fio_pid")
cleanup_fn kill_bg_jobs
for _ in $(seq 200); do
    [[ $(count_lines "$(dirty_chunks "$ARRAY_BITMAP")") -gt 0 ]] && break
    sleep 0.05
done
sleep 0.5
kill -STOP "$nbd_pid"
t0=$(date +%s.%N)
wait_status "$mnt" '.members[1].state == "faulty"' 30 "the member of a hung server faulty"
t1=$(date +%s.%N)
took=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
info "faulty $took s after the server stopped (member_timeout=$T)"
awk -v t="$took" -v lim=$((T + 4)) 'BEGIN { exit !(t <= lim) }' ||
    fail "the member became faulty $took s after its server stopped, the timeout is $T s"
grep -qF "$uri: no answer to a" "$MDFUSE_LOG" ||
    { _show_log "$MDFUSE_LOG"; fail "the log does not say $uri did not answer in time"; }
grep -F "$uri" "$MDFUSE_LOG" | head -n 3 >&2

fio_status=0
wait "$fio_pid" || fio_status=$?
bg_pids=()
[[ $fio_status -eq 0 ]] || { cat "$tmpdir/fio.log" "$tmpdir/fio.json" >&2; fail "fio failed (status $fio_status)"; }
errs=$(jq '[.jobs[] | .error] | add' "$tmpdir/fio.json")
[[ $errs -eq 0 ]] || fail "fio saw errors: $errs"
max_ms=$(jq '[.jobs[] | .write.clat_ns.max] | max / 1000000 | floor' "$tmpdir/fio.json")
info "fio: no error, every block verified; the slowest write took $max_ms ms"
[[ $max_ms -le $(((T + 4) * 1000)) ]] ||
    fail "a write waited $max_ms ms, past the member timeout of $T s"
assert_status "$mnt" ".state == \"degraded\" and .members[1].path == \"$uri\"" "degraded"

info "the server answers again; re-add of slot 1 connects anew"
kill -CONT "$nbd_pid"
dirty=$(checked_dirty_chunks "$ARRAY_BITMAP")
D=$(count_lines "$dirty")
"$MDFUSECTL" re-add "$mnt" 1 >"$tmpdir/readd.out" 2>&1 ||
    { cat "$tmpdir/readd.out" >&2; fail "mdfusectl re-add $mnt 1 failed"; }
grep -q "recovering the chunks the bitmap marks ($D chunks)" "$tmpdir/readd.out" ||
    fail "re-add: expected a bitmap recovery of $D chunks: $(cat "$tmpdir/readd.out")"
wait_status "$mnt" '.recovery == null and .members[1].state == "active" and .active == 2' 60 "re-add of slot 1"
stop_mdfuse
assert_members_identical "$V" "$C" "$m0" export/m1.img
info "PASS"
