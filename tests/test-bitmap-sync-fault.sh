#!/usr/bin/env bash
# The bitmap's own writes fail, and the members' events still move past
# it before anything is written without it (SPEC §6, §8).
#
# Claims tested, with the bitmap file on faultfs:
#   - the bitmap header's fdatasync fails inside an events bump (its pwrite
#     landed, so the header on disk carries the members' events): the
#     members are bumped past it before the volume goes on without it; after
#     a SIGKILL the next mount copies everything, so members that differ
#     in a chunk written meanwhile (its bit clear) are made identical;
#   - the bitmap's page write fails during the mount-time resync: the mount
#     goes on without the bitmap instead of refusing, the resync completes,
#     and the next mount copies everything.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env

make_tmpdir
cd "$tmpdir" || exit 1
V=$((32 * 1024 * 1024))
C=$((1024 * 1024))

# --- a header fdatasync fails inside the first write's events bump ---------
make_array --bitmap-faultfs --size 32M
faultfs_ctl bm fail b fsync EIO once
head -c $((4 * C)) /dev/urandom >a.bin
dd if=a.bin of=mnt/volume bs=1M seek=5 oflag=direct conv=notrunc,fsync status=none ||
    fail "the write after the bitmap failed was refused"
[[ $(faultfs_stat bm injected_errors) -eq 1 ]] || fail "the fault was not hit"
grep -q "goes on without its bitmap.*the next mount resyncs everything" "$MDFUSE_LOG" ||
    fail "no 'goes on without its bitmap' in the log"
ev_members=$(examine m/m0 Events)
ev_bitmap=$(examine_bitmap bm/b Events)
[[ $ev_members -gt $ev_bitmap ]] ||
    fail "members at events $ev_members, bitmap at $ev_bitmap: the bitmap still looks current"
kill_mdfuse
# The chunks written without the bitmap have their bits clear; a crash in
# the middle of a mirrored write leaves them different.
[[ -z $(dirty_chunks bm/b | grep -x 6) ]] || fail "chunk 6 has its bit: the test proves nothing"
flip_byte m/m1 $((6 * C + 100))

mount_array
read -r copied chunks < <(resync_counts "$MDFUSE_LOG")
[[ $copied -eq $chunks && $chunks -eq $((V / C)) ]] ||
    fail "the mount after the bitmap failed copied $copied of $chunks chunks, not all"
cmp -s <(dd if=mnt/volume bs=1M skip=5 count=4 status=none) a.bin ||
    fail "the data written without the bitmap is lost"
stop_mdfuse
assert_members_identical "$V" "$C" m/m0 m/m1
info "header sync failure: members bumped past the bitmap, next mount copied all $chunks chunks"

# --- the bitmap fails during the mount-time resync ----------------------------
mount_array
head -c $((3 * C)) /dev/urandom >b.bin
dd if=b.bin of=mnt/volume bs=1M seek=20 oflag=direct conv=notrunc,fsync status=none
kill_mdfuse
ndirty=$(dirty_chunks bm/b | wc -l)
[[ $ndirty -gt 0 ]] || fail "no dirty chunk after the kill"
# The mount's header write lands; the first page write of the resync fails.
faultfs_ctl bm fail b pwrite EIO once after 1
mount_array
[[ $(faultfs_stat bm injected_errors) -eq 2 ]] || fail "the resync's bitmap write was not hit"
grep -q "goes on without its bitmap" "$MDFUSE_LOG" ||
    fail "no 'goes on without its bitmap' in the log"
[[ $(examine m/m0 Events) -gt $(examine_bitmap bm/b Events) ]] ||
    fail "the members are not past the bitmap after its failure during the resync"
assert_status mnt '.bitmap.in_use == false' "the bitmap is still in use"
cmp -s <(dd if=mnt/volume bs=1M skip=20 count=3 status=none) b.bin ||
    fail "data lost across the resync"
stop_mdfuse
assert_members_identical "$V" "$C" m/m0 m/m1
mount_array
read -r copied chunks < <(resync_counts "$MDFUSE_LOG")
[[ $copied -eq $chunks ]] || fail "the mount after copied $copied of $chunks chunks, not all"
stop_mdfuse
[[ $(dirty_chunks bm/b | wc -l) -eq 0 ]] || fail "dirty bits left after a clean unmount"
info "bitmap failure during the resync: mounted without it, then a full resync"
