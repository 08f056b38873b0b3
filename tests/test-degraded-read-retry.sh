#!/usr/bin/env bash
# mdfuse: a read error on a member is retried on the other one (SPEC §6).
#
# Claim tested: the member in slot 0 is the `volume` of an inner mdfuse,
# whose daemon is SIGKILLed (its FUSE connection aborts: ENOTCONN, or
# ECONNABORTED for requests in flight).  O_DIRECT reads (4 KiB ones by four
# readers, through the daemon's io_uring, then large ones) all return the
# right data (retried on the other member); the member is counted (a read
# error) and marked faulty in the survivor's superblock; status --json says
# so.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires jq

make_tmpdir
work=$tmpdir/work
mkdir "$work"
cleanup_fn kill_bg_jobs

vo=$((16 * 1024 * 1024))
make_array_over_inner 0 --size 16M --chunk 64K --daemon-sleep 1
omnt=$ARRAY_MNT
r1=${ARRAY_MEMBERS[1]}

# The first three quarters random, the last one zero.
head -c $((vo * 3 / 4)) /dev/urandom >"$work/src"
truncate -s "$vo" "$work/src"
dd if="$work/src" of="$omnt/volume" bs=1M conv=notrunc,fsync status=none || fail "filling the volume failed"
dd if="$INNER_VOL" iflag=nocache count=0 status=none # drop its page cache
src_sha=$(sha256_of "$work/src")
ev0=$(sb_events "$r1")
dev0=$(sb_dev_number "$INNER_VOL")
kill_mdfuse_pid "$INNER_PID"

# 4 KiB reads first, four readers at once: the daemon's io_uring takes
# them, many at a time, and a failed read must be served again from the
# other member; then large reads, which go through the ring as well.
q=$((vo / 4 / 4096))
for i in 0 1 2 3; do
    dd if="$omnt/volume" of="$work/part$i" bs=4K iflag=direct skip=$((i * q)) count=$q \
        status=none &
    bg_pids+=("$!")
done
wait_bg_jobs || fail "4 KiB reads with a dead member failed"
s=$(cat "$work"/part{0,1,2,3} | sha256sum)
[[ ${s%% *} == "$src_sha" ]] || fail "4 KiB reads with a dead member returned wrong data"
rm -f "$work"/part{0,1,2,3}
for w in 1 2; do
    (
        s=$(dd if="$omnt/volume" bs=$((w * 128))K iflag=direct status=none | sha256sum)
        [[ ${s%% *} == "$src_sha" ]]
    ) &
    bg_pids+=("$!")
done
wait_bg_jobs
assert_status "$omnt" \
    '.state == "degraded" and .members[0].state == "faulty" and .members[0].read_errors >= 1
     and .members[1].state == "active"' "the member with a read error"
assert_marked_faulty "$r1" "$dev0" "$ev0"
assert_volume_is "$omnt/volume" "read retry" "$work/src"
stop_mdfuse
teardown_mdfuse_pid "$INNER_PID"

info "PASS"
