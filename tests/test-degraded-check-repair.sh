#!/usr/bin/env bash
# mdfuse: check and repair (mdfusectl check [--repair]).
#
# Claim tested: check finds a one-byte corruption in a member (exit 3, the
# chunk named in the log, status --json says so) and changes nothing;
# --repair fixes it from the first member, after which check finds
# nothing; with three members the majority wins, even against the first
# member.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires jq

make_tmpdir
work=$tmpdir/work
mkdir "$work"

k64=65536
v=$((256 * 1024 * 1024))
c=$((1024 * 1024))
make_array --size 256M --chunk 1M --daemon-sleep 1
m0=${ARRAY_MEMBERS[0]} m1=${ARRAY_MEMBERS[1]} mnt=$ARRAY_MNT
main_log=$MDFUSE_LOG
model=$work/model
head -c "$v" /dev/urandom >"$model"
dd if="$model" of="$mnt/volume" bs=1M conv=notrunc,fsync status=none || fail "filling the volume failed"
wait_status "$mnt" '.bitmap.dirty == 0' 20 "bits cleared after the fill"

info "check finds a one-byte corruption, repair fixes it"
flip_byte "$m1" $((77 * c + 12345))
st=0
"$MDFUSECTL" check "$mnt" >"$work/out" 2>&1 || st=$?
info "check: exit $st: $(tail -n 1 "$work/out")"
[[ $st -eq 3 ]] || fail "check with one mismatched chunk exited $st, expected 3"
grep -q "check finished: 1 mismatched chunk" "$work/out" || fail "check output: $(cat "$work/out")"
assert_status "$mnt" ".check.finished == true and .check.running == false and .check.repair == false
    and .check.mismatches == 1 and .check.done_bytes == $v and .check.total_bytes == $v" "status after check"
grep -qE "chunk 77 \(bytes $((77 * c))\.\.$((78 * c - 1))\) differs" "$main_log" ||
    { _show_log "$main_log"; fail "the log does not name chunk 77 as mismatched"; }
[[ $(differing_chunks "$v" "$c" "$m0" "$m1") == 77 ]] || fail "check (without --repair) changed the members"
st=0
"$MDFUSECTL" check --repair "$mnt" >"$work/out" 2>&1 || st=$?
info "repair: exit $st: $(tail -n 1 "$work/out")"
[[ $st -eq 0 ]] || fail "check --repair exited $st"
assert_status "$mnt" '.check.finished == true and .check.repair == true and .check.mismatches == 1
    and .check.repaired == 1' "status after repair"
assert_members_identical "$v" "$c" "$m0" "$m1"
assert_volume_is "$mnt/volume" "repair" "$model"
st=0
"$MDFUSECTL" check "$mnt" >"$work/out" 2>&1 || st=$?
[[ $st -eq 0 ]] || fail "check after repair exited $st: $(cat "$work/out")"
grep -q "check finished: 0 mismatched chunks" "$work/out" || fail "check output: $(cat "$work/out")"
stop_mdfuse

info "with three members, repair takes the majority, even against the first"
vt=$((16 * 1024 * 1024))
make_array --as three --members 3 --size 16M --chunk 64K
t0=${ARRAY_MEMBERS[0]} t1=${ARRAY_MEMBERS[1]} t2=${ARRAY_MEMBERS[2]} mnt=$ARRAY_MNT
head -c "$vt" /dev/urandom >"$work/model3"
dd if="$work/model3" of="$mnt/volume" bs=1M conv=notrunc,fsync status=none || fail "filling the volume failed"
assert_status_text "$mnt" '\[3/3\] \[UUU\]'
flip_byte "$t0" $((9 * k64 + 5))
st=0
"$MDFUSECTL" check "$mnt" >"$work/out" 2>&1 || st=$?
[[ $st -eq 3 ]] || fail "check (3 members, one corrupt byte) exited $st, expected 3"
grep -q "check finished: 1 mismatched chunk" "$work/out" || fail "check output: $(cat "$work/out")"
st=0
"$MDFUSECTL" check --repair "$mnt" >"$work/out" 2>&1 || st=$?
[[ $st -eq 0 ]] || fail "check --repair exited $st"
assert_status "$mnt" '.check.repaired == 1' "status after the 3-member repair"
info "repair source: $(status_get "$mnt" .check.source)"
cmp -n "$vt" "$t0" "$work/model3" || fail "$t0 (the corrupt first member) was not repaired from the majority"
assert_members_identical "$vt" "$k64" "$t0" "$t1" "$t2"
assert_volume_is "$mnt/volume" "repair (3 members)" "$work/model3"
stop_mdfuse

info "PASS"
