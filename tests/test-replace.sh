#!/usr/bin/env bash
# A lost member is replaced by a new file while the volume stays in use.
#
# Claims tested:
#   - `mdfusectl new-member --like M --slot N NEW` makes a member for slot N
#     of M's array (same uuid, events 0) that mdadm --examine reads;
#   - `re-add` of it copies everything (its events are behind
#     events_cleared), the volume is served meanwhile, and it becomes active;
#   - afterwards the members are identical and a clean unmount leaves the
#     bitmap empty; a new member for a slot that is active is refused.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires jq
requires mdadm

make_tmpdir
cd "$tmpdir" || exit 1
V=$((64 * 1024 * 1024))
C=$((1024 * 1024))
make_array --size 64M
head -c $((8 * C)) /dev/urandom >data1
dd if=data1 of=mnt/volume bs=1M seek=3 conv=notrunc,fsync status=none

# The disk under m1 is lost.
"$MDFUSECTL" fail mnt "$tmpdir/m/m1" >/dev/null || fail "fail m1 failed"
rm -f m/m1
head -c $((4 * C)) /dev/urandom >data2
dd if=data2 of=mnt/volume bs=1M seek=40 conv=notrunc,fsync status=none

expect_fail "slot 0 .*already active|already active" bash -c \
    "'$MDFUSECTL' new-member --like m/m0 --slot 0 m/bad && '$MDFUSECTL' re-add mnt m/bad"
rm -f m/bad
"$MDFUSECTL" new-member --like m/m0 --slot 1 m/m1new >/dev/null ||
    fail "new-member failed"
mdadm --examine m/m1new >"$tmpdir/examine" 2>&1 || fail "mdadm --examine rejects the new member"
grep -q "Device Role : Active device 1" "$tmpdir/examine" ||
    fail "new member is not for slot 1: $(cat "$tmpdir/examine")"
[[ $(examine m/m1new "Array UUID") == $(examine m/m0 "Array UUID") ]] ||
    fail "new member has another array uuid"
expect_fail "already exists" "$MDFUSECTL" new-member --like m/m0 --slot 1 m/m1new

"$MDFUSECTL" re-add --no-wait mnt m/m1new >"$tmpdir/readd" || fail "re-add of the new member failed"
grep -q "recovering everything" "$tmpdir/readd" ||
    fail "a new member must be recovered in full: $(cat "$tmpdir/readd")"
# The volume is in use meanwhile.
dd if=data1 of=mnt/volume bs=1M seek=20 conv=notrunc status=none ||
    fail "a write during the recovery failed"
wait_status mnt '.active == 2' 60 "the new member becomes active"
grep -q "recovered (64 of 64 chunks copied, full)" "$MDFUSE_LOG" ||
    fail "the log does not show a full recovery: $(grep recovered "$MDFUSE_LOG")"
cmp -s <(dd if=mnt/volume bs=1M skip=40 count=4 status=none) data2 ||
    fail "data written while degraded is gone"
stop_mdfuse
assert_members_identical "$V" "$C" m/m0 m/m1new
[[ $(dirty_chunks bm/b | wc -l) -eq 0 ]] || fail "dirty bits after a clean unmount"
[[ $(examine m/m1new Events) -eq $(examine m/m0 Events) ]] ||
    fail "the new member's events are not the array's"

# The array now mounts with the new file in slot 1 and copies nothing.
mount_array m/m0 m/m1new
read -r copied _ < <(resync_counts "$MDFUSE_LOG")
[[ $copied -eq 0 ]] || fail "the mount after the replacement copied $copied chunks"
stop_mdfuse
info "replacement: full recovery of a new member while in use, then a clean array"
