#!/usr/bin/env bash
# A member under recovery carries md's recovery offset (SPEC §8).
#
# Claims tested, a new member recovered in full while the volume is in
# use, the daemon killed half way:
#   - the member's own superblock says it is being recovered, with a
#     recovery offset that mdadm --examine reads too, past the first
#     checkpoint (64 MiB);
#   - mounted alone, even with -o degraded,force, it is refused: it is not
#     a whole copy of the volume;
#   - mounted with the others, its recovery resumes at that offset: fewer
#     chunks are copied than a full recovery, the members end identical and
#     every write made before the kill reads back.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires mdadm

make_tmpdir
cd "$tmpdir" || exit 1
mkdir -p alone
V=$((256 * 1024 * 1024))
C=$((1024 * 1024))
nchunks=$((V / C))
make_array --faultfs --size 256M
head -c $((8 * C)) /dev/urandom >a.bin
dd if=a.bin of=mnt/volume bs=1M seek=10 oflag=direct conv=notrunc,fsync status=none

# m1's disk is replaced by a new, empty member: a full recovery, slowed
# down so that the kill lands in its middle.
"$MDFUSECTL" fail mnt "$tmpdir/m/m1" >/dev/null || fail "fail m1 failed"
"$MDFUSECTL" new-member --like m/m0 --slot 1 m/m1new >/dev/null
faultfs_ctl m delay m1new pwrite 3000
"$MDFUSECTL" re-add --no-wait mnt m/m1new >readd || fail "re-add failed"
grep -q "recovering everything" readd || fail "not a full recovery: $(cat readd)"
[[ $(examine m/m1new "Feature Map") == 0x2 ]] ||
    fail "the re-added member's superblock does not say it is being recovered"
head -c $((4 * C)) /dev/urandom >b.bin
dd if=b.bin of=mnt/volume bs=1M seek=200 oflag=direct conv=notrunc,fsync status=none ||
    fail "a write during the recovery failed"
wait_status mnt '.recovery != null and .recovery.done_chunks >= 100' 120 \
    "the recovery passes its first checkpoint"
assert_status mnt '.recovery.done_chunks < 200' "the recovery ended too soon for the test"
kill_mdfuse
faultfs_ctl m clear

offset=$(examine m/m1new "Recovery Offset")
offset=${offset%% *}
info "killed with m1new's recovery offset at $offset sectors"
[[ $offset -ge $((64 * C / 512)) && $offset -lt $((V / 512)) ]] ||
    fail "recovery offset $offset sectors: not past the first checkpoint"
mdadm --examine m/m1new >mdadm.out 2>&1 || fail "mdadm --examine rejects m1new: $(cat mdadm.out)"
grep -q "Recovery Offset : $offset sectors" mdadm.out ||
    fail "mdadm --examine does not show the recovery offset: $(cat mdadm.out)"

expect_mount_refused m1new -o "bitmap=$tmpdir/bm/b,degraded,force" m/m1new alone

mount_array m/m0 m/m1new
grep -q "resuming its recovery at sector $offset" "$MDFUSE_LOG" ||
    fail "the mount does not resume the recovery at $offset"
read -r copied chunks < <(resync_counts "$MDFUSE_LOG")
[[ $copied -lt $nchunks && $copied -ge $((nchunks - offset * 512 / C)) ]] ||
    fail "the resumed recovery copied $copied of $chunks chunks"
cmp -s <(dd if=mnt/volume bs=1M skip=10 count=8 status=none) a.bin || fail "data before the kill lost"
cmp -s <(dd if=mnt/volume bs=1M skip=200 count=4 status=none) b.bin || fail "data written during the recovery lost"
[[ $(examine m/m1new "Feature Map") == 0x0 ]] || fail "m1new still says it is being recovered"
stop_mdfuse
assert_members_identical "$V" "$C" m/m0 m/m1new
info "the recovery resumed at sector $offset: $copied of $nchunks chunks copied"
