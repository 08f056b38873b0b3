#!/usr/bin/env bash
# mdfuse: fail, writes while degraded, re-add (SPEC §6, mdfusectl fail /
# re-add / status).
#
# Claim tested: after `mdfusectl fail` of a member (marked faulty in the
# survivor's superblock), the bitmap holds exactly the chunks written while
# degraded, through several clearing passes; status (--json and text) says
# degraded; the faulty member is not written; re-add copies exactly those
# chunks (a byte planted in a clean chunk of the faulty member survives the
# recovery), the members end identical, the array is active again and its
# bits are cleared.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires jq

make_tmpdir
work=$tmpdir/work
mkdir "$work"

v=$((256 * 1024 * 1024))
c=$((1024 * 1024))
nc=$((v / c))
make_array --size 256M --chunk 1M --daemon-sleep 1
m0=${ARRAY_MEMBERS[0]} m1=${ARRAY_MEMBERS[1]} mbm=$ARRAY_BITMAP mnt=$ARRAY_MNT
main_log=$MDFUSE_LOG
model=$work/model
head -c "$v" /dev/urandom >"$model"
dd if="$model" of="$mnt/volume" bs=1M conv=notrunc,fsync status=none || fail "filling the volume failed"
wait_status "$mnt" '.bitmap.dirty == 0' 20 "bits cleared after the fill"

info "fail, write while degraded, re-add: only the dirty chunks are copied"
ev0=$(sb_events "$m0")
"$MDFUSECTL" fail "$mnt" "$m1" >"$work/out" || fail "mdfusectl fail $m1 failed"
grep -qF "$m1: marked faulty" "$work/out" || fail "mdfusectl fail: unexpected output: $(cat "$work/out")"
assert_marked_faulty "$m0" "$(sb_dev_number "$m1")" "$ev0"
write_at "$mnt/volume" "$model" $((3 * c + 100)) 5000
write_at "$mnt/volume" "$model" $((4 * c)) "$c"
write_at "$mnt/volume" "$model" $((51 * c - 4096)) 8192
write_at "$mnt/volume" "$model" $((100 * c)) 4096
write_at "$mnt/volume" "$model" $((200 * c + c / 2)) 65536
write_at "$mnt/volume" "$model" $((v - 4096)) 4096
expected=$(lines 3 4 50 51 100 200 255)
sleep 3.5 # three clearing passes: the bits must stay
dirty=$(checked_dirty_chunks "$mbm")
[[ $(sorted "$dirty") == "$expected" ]] ||
    fail "dirty chunks while degraded: $(tr '\n' ' ' <<<"$dirty"), expected $(tr '\n' ' ' <<<"$expected")"

info "status while degraded"
assert_status "$mnt" \
    ".level == \"raid1\" and .size == $v and .state == \"degraded\" and .raid_disks == 2
     and .active == 1 and .events == $(sb_events "$m0")
     and (.members | length) == 2
     and .members[0].slot == 0 and .members[0].path == \"$m0\" and .members[0].state == \"active\"
     and .members[1].slot == 1 and .members[1].path == \"$m1\" and .members[1].state == \"faulty\"
     and (.members[1].read_errors | type) == \"number\" and (.members[1].write_errors | type) == \"number\"
     and .bitmap.path == \"$mbm\" and .bitmap.chunk_size == $c and .bitmap.chunks == $nc
     and .bitmap.dirty == 7 and .bitmap.in_use == true and .recovery == null
     and (.check | type) == \"object\" and (.last_resync | type) == \"object\"" \
    "status --json while degraded"
assert_status_text "$mnt" "^volume : degraded raid1, $v bytes" '\[2/1\] \[U_\]' \
    "^ *0: active +$(re_escape "$m0")( |$)" "^ *1: faulty +$(re_escape "$m1")( |$)" \
    "^bitmap : $(re_escape "$mbm"), 7/$nc chunks dirty"

# A byte planted in a clean chunk of the faulty member: a recovery that
# copies only the dirty chunks leaves it there.
flip_byte "$m1" $((10 * c + 777))
differ=$(differing_chunks "$v" "$c" "$m0" "$m1")
[[ $(sorted "$differ") == "$(lines 3 4 10 50 51 100 200 255)" ]] ||
    fail "the faulty member was written while faulty: chunks differing: $(tr '\n' ' ' <<<"$differ")"

"$MDFUSECTL" re-add "$mnt" "$m1" >"$work/out" || fail "mdfusectl re-add $m1 failed"
info "re-add: $(cat "$work/out")"
grep -q "recovering the chunks the bitmap marks (7 chunks)" "$work/out" ||
    fail "re-add: expected a bitmap recovery of 7 chunks: $(cat "$work/out")"
wait_status "$mnt" '.recovery == null and .members[1].state == "active" and .active == 2' 60 "re-add of $m1"
line=$(grep -F "$m1: recovered (" "$main_log" | tail -n 1)
info "log: $line"
[[ $line == *"recovered (7 of $nc chunks copied, from the bitmap)"* ]] ||
    fail "recovery log: '$line', expected 7 of $nc chunks from the bitmap"
differ=$(differing_chunks "$v" "$c" "$m0" "$m1")
[[ $(sorted "$differ") == 10 ]] ||
    fail "after the bitmap recovery the members differ in chunks '$(tr '\n' ' ' <<<"$differ")', expected only the planted 10"
flip_byte "$m1" $((10 * c + 777))
assert_members_identical "$v" "$c" "$m0" "$m1"
assert_volume_is "$mnt/volume" "re-add" "$model"
assert_status "$mnt" '.state == "active" and .active == 2' "array active after re-add"
assert_status_text "$mnt" '^volume : active raid1' '\[2/2\] \[UU\]'
wait_status "$mnt" '.bitmap.dirty == 0' 15 "bits cleared once every member is active again"
stop_mdfuse

info "PASS"
