#!/usr/bin/env bash
# mdfuse: write-behind (md's, DRBD's protocol A; SPEC §8).
#
# Two members on faultfs: m0, and m1 write-mostly and slow (DELAY_US per
# pwrite, 50 ms by default, standing in for a remote member); the bitmap
# says write_behind 256 (mdfusectl examine-bitmap and mdadm
# --examine-bitmap show "Write Mode : Allow write behind, max 256").
#
# 1. Acknowledged ahead.  QD1 4 KiB O_DIRECT writes are all answered
#    while at least half of them are still behind (status), and QD1 writes
#    each followed by fdatasync complete; their latencies are printed
#    (tools/bench-remote is where latency is judged).  After a clean unmount (which waits for them) the members are
#    identical and the bitmap clean.
# 2. Overlapping writes.  One 4 KiB block rewritten 60 times, each time
#    with other data, then four fio jobs writing 4-16 KiB blocks at random
#    over 64 KiB at once: after a clean unmount the write-mostly member
#    holds the last data (the model's, for the rewritten block) and the
#    members are identical: no write reached it before an earlier one to
#    the same bytes.
# 3. Crash.  SIGKILL while 256 writes are behind and three lazy clearing
#    passes (daemon_sleep 1) have run since the writer stopped: on the
#    files left behind, every chunk where m1 differs from m0 has its bit
#    set (invariant I: a behind write holds its chunk's count), and some
#    do differ (the writes were really behind); the next mount resyncs
#    them from m0, not from the write-mostly m1: the volume then holds
#    m0's data and the members end identical.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires fio
requires jq
requires mdadm
[[ -x $FAULTFS ]] || fail "faultfs binary not found: $FAULTFS (set FAULTFS)"

: "${DELAY_US:=50000}"
make_tmpdir
work=$tmpdir/work
mkdir "$work"

v=$((64 * 1024 * 1024))
c=$((1024 * 1024))
make_array --size 64M --chunk 1M --faultfs --write-mostly 1 --write-behind 256 --daemon-sleep 1
m0=${ARRAY_MEMBERS[0]} m1=${ARRAY_MEMBERS[1]}
b0=${ARRAY_BACK[0]} b1=${ARRAY_BACK[1]}
mnt=$ARRAY_MNT FM=$tmpdir/m bm=$ARRAY_BITMAP

[[ $(examine_bitmap "$bm" "Write Mode") == "Allow write behind, max 256" ]] ||
    fail "mdfusectl examine-bitmap: no 'Write Mode : Allow write behind, max 256'"
mdadm --examine-bitmap "$bm" >"$work/xb" 2>&1 || fail "mdadm --examine-bitmap failed: $(cat "$work/xb")"
[[ $(field "Write Mode" <"$work/xb") == "Allow write behind, max 256" ]] ||
    fail "mdadm --examine-bitmap: $(grep -i write "$work/xb")"
assert_status "$mnt" '.write_behind.max == 256 and .members[1].write_mostly == true' "status write_behind"
faultfs_ctl "$FM" delay m1 pwrite "$DELAY_US"

# fio_qd1 NAME EXTRA...: 4 KiB QD1 O_DIRECT random writes; its JSON in
# $work/NAME.json.
fio_qd1() {
    local name=$1
    shift
    fio --name="$name" --filename="$mnt/volume" --rw=randwrite --bs=4k --direct=1 \
        --ioengine=psync --iodepth=1 --size=$v --randrepeat=0 "$@" \
        --output-format=json --output="$work/$name.json" >/dev/null 2>&1 ||
        fail "fio $name failed: $(cat "$work/$name.json")"
}

info "1. QD1 writes are acknowledged at local speed"
fio_qd1 plain --number_ios=100
behind=$(status_get "$mnt" '.write_behind.outstanding')
fio_qd1 fsynced --number_ios=30 --fdatasync=1
half_ms=$((DELAY_US / 2000))
for name in plain fsynced; do
    lat=$(jq '.jobs[0].write.lat_ns.mean / 1000000' "$work/$name.json")
    sync=$(jq '(.jobs[0].sync.lat_ns.mean // 0) / 1000000' "$work/$name.json")
    info "$name: mean write latency $(printf '%.3f' "$lat") ms, fdatasync $(printf '%.3f' "$sync") ms (member delay $((DELAY_US / 1000)) ms)"
done
# The claim, without a clock (a timed assertion fails on a slow or
# sanitized build; tools/bench-remote measures the latency): fio's 100
# writes were all answered while most of them were still behind.
info "writes behind right after the first run: $behind (of 100; half the delay is $half_ms ms)"
[[ $behind -ge 50 ]] ||
    fail "only $behind of 100 writes were behind when fio had all its answers: they were not acknowledged before the write-mostly member had them"
[[ $behind -gt 0 ]] || fail "no write was behind after 100 writes at local speed"
t0=$SECONDS
stop_mdfuse
info "clean unmount took $((SECONDS - t0)) s (it waits for the writes behind)"
assert_members_identical "$v" "$c" "$b0" "$b1"
[[ -z $(checked_dirty_chunks "$bm") ]] || fail "dirty bits after a clean unmount"

info "2. overlapping writes reach the write-mostly member in order"
mount_array
faultfs_ctl "$FM" delay m1 pwrite $((DELAY_US / 5))
model=$work/block
blk=$((5 * c + 8192))
for ((i = 0; i < 60; i++)); do
    head -c 4096 /dev/urandom >"$model"
    dd if="$model" of="$mnt/volume" bs=4096 seek=$((blk / 4096)) oflag=direct \
        conv=notrunc status=none || fail "rewrite $i failed"
done
fio --name=overlap --filename="$mnt/volume" --rw=randwrite --bsrange=4k-16k --direct=1 \
    --ioengine=psync --numjobs=4 --offset=$((9 * c)) --size=64k --io_size=1m \
    --randrepeat=0 --output="$work/overlap.out" >/dev/null 2>&1 ||
    fail "fio overlap failed: $(cat "$work/overlap.out")"
info "writes behind before the unmount: $(status_get "$mnt" '.write_behind.outstanding')"
stop_mdfuse
cmp -s -n 4096 -i "$blk:0" "$b1" "$model" ||
    fail "the write-mostly member does not hold the last data written to the block"
assert_members_identical "$v" "$c" "$b0" "$b1"

info "3. crash with writes behind: the bits cover them, the resync copies from m0"
mount_array
faultfs_ctl "$FM" delay m1 pwrite "$DELAY_US"
# 300 writes into chunks 0-15: 256 of them go behind at once, then the
# writer waits for room; it ends with 256 behind, about 13 s of m1's
# time.  Three clearing passes (daemon_sleep 1) run while they are:
# none may clear a chunk whose write m1 does not have yet.
fio_qd1 crash --size=16m --number_ios=300
info "writes behind after the writer: $(status_get "$mnt" '.write_behind.outstanding')"
sleep 3.5
info "writes behind at the kill: $(status_get "$mnt" '.write_behind.outstanding')"
kill_mdfuse
# A pwrite faultfs was sleeping on when the daemon died still lands.
sleep 1
faultfs_ctl "$FM" clear
differ=$(differing_chunks "$v" "$c" "$b0" "$b1")
dirty=$(checked_dirty_chunks "$bm")
info "after the kill: $(count_lines "$differ") chunks differ between m0 and m1, $(count_lines "$dirty") bits set"
[[ -n $differ ]] || fail "no chunk differs: the writes were not behind"
assert_subset "$differ" "$dirty" "chunks that differ without their bit set (invariant I)"
assert_subset "$dirty" "$(seq 0 15)" "bits set outside the chunks written"
want=$(head -c "$v" "$b0" | sha256sum)
want=${want%% *}
mount_array
"$MDFUSECTL" wait "$mnt" >/dev/null || fail "mdfusectl wait after the remount failed"
grep -q "chunks to copy, from $(re_escape "$m0")," "$MDFUSE_LOG" ||
    fail "the resync should copy from $m0: $(grep 'chunks to copy' "$MDFUSE_LOG")"
info "resync: copied $(resync_counts "$MDFUSE_LOG" | awk '{ print $1 " of " $2 }') chunks"
[[ $(volume_sha "$mnt/volume") == "$want" ]] ||
    fail "after the resync the volume does not hold m0's data"
stop_mdfuse
assert_members_identical "$v" "$c" "$b0" "$b1"

info "PASS"
