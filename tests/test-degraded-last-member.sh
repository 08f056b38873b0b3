#!/usr/bin/env bash
# mdfuse: no member left (SPEC §6).
#
# Claim tested: the last active member cannot be failed (mdfusectl fail
# refuses it); once its file system dies (it is the `volume` of an inner
# mdfuse, SIGKILLed), writes, fsync and reads fail with EIO, and the
# faulty member's file is not written, before or after the teardown.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires jq

make_tmpdir
work=$tmpdir/work
mkdir "$work"

k64=65536
make_array_over_inner 1 --size 16M --chunk 64K --daemon-sleep 1
omnt=$ARRAY_MNT
o0=${ARRAY_MEMBERS[0]}
inner_vol=$INNER_VOL
outer_pid=$MDFUSE_PID
head -c $((4 * 1024 * 1024)) /dev/urandom >"$work/data"
dd if="$work/data" of="$omnt/volume" bs=1M conv=notrunc,fsync status=none || fail "writing the volume failed"
assert_status "$omnt" '.state == "active" and .active == 2' "array not active at start"

"$MDFUSECTL" fail "$omnt" "$o0" >"$work/out" || fail "mdfusectl fail $o0 failed"
grep -qF "$o0: marked faulty" "$work/out" || fail "mdfusectl fail: unexpected output: $(cat "$work/out")"
expect_fail "last" "$MDFUSECTL" fail "$omnt" "$inner_vol"
assert_status "$omnt" '.active == 1 and .members[0].state == "faulty" and .members[1].state == "active"' \
    "after failing $o0"
head -c "$k64" /dev/urandom >"$work/piece"
dd if="$work/piece" of="$omnt/volume" bs=64K seek=7 conv=notrunc,fsync status=none ||
    fail "a write with one active member left failed"
snapshot_files "$work/o0.sum" "$o0"
kill_mdfuse_pid "$INNER_PID"
expect_fail "Input/output error" \
    dd if="$work/piece" of="$omnt/volume" bs=64K seek=9 count=1 conv=notrunc oflag=direct status=none
expect_fail "fsync failed.*Input/output error" \
    dd if=/dev/null of="$omnt/volume" conv=notrunc,fsync status=none
expect_fail "Input/output error" \
    dd if="$omnt/volume" of=/dev/null bs=64K skip=13 count=1 iflag=direct status=none
expect_fail "Input/output error" \
    dd if="$work/piece" of="$omnt/volume" bs=64K seek=15 count=1 conv=notrunc oflag=direct status=none
assert_files_unchanged "$work/o0.sum"
status_json "$omnt" >/dev/null
teardown_mdfuse_pid "$outer_pid"
teardown_mdfuse_pid "$INNER_PID"
assert_files_unchanged "$work/o0.sum"

info "PASS"
