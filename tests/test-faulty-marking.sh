#!/usr/bin/env bash
# A write or fsync that leaves a member out replies only once that member
# is durably faulty in the survivor's superblock (SPEC §8, md's
# MD_SB_CHANGE_PENDING); if that cannot be made durable, EIO.
#
# Claims tested, members on faultfs with a volatile write cache, each
# followed by a power cut that keeps no unsynced write:
#   - m0 (the member a mount copies from when both look current) fails its
#     writes; the writes and fsyncs after it succeed on m1, and after the
#     cut m1's superblock marks m0 faulty: the next mount recovers m0 from
#     m1 and every fsynced write reads back;
#   - the same, but m1's superblock cannot be made durable (its fsync
#     fails): then every later fsync answers EIO -- none answers 0 for a
#     write that the cut and the next mount's resync from m0 would undo.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env

make_tmpdir
cd "$tmpdir" || exit 1
C=$((1024 * 1024))

# scenario NAME M1_FSYNC_FAILS: see above.  Leaves the result in acked.
scenario() {
    local name=$1 m1_fsync_fails=$2 i rc
    rm -f back/* bm/b
    make_array --faultfs=volatile
    head -c $((16 * C)) /dev/urandom >a.bin
    dd if=a.bin of=mnt/volume bs=1M oflag=direct conv=notrunc,fsync status=none

    faultfs_ctl m fail m0 pwrite EIO always
    if [[ $m1_fsync_fails == yes ]]; then
        faultfs_ctl m fail m1 fsync EIO once
    fi
    # One write per chunk 2..9, each fsynced; note which were acknowledged.
    : >acked
    for i in 2 3 4 5 6 7 8 9; do
        head -c 4096 /dev/urandom >"w$i"
        rc=0
        dd if="w$i" of=mnt/volume bs=4k seek=$((i * 256)) oflag=direct \
            conv=notrunc,fsync status=none 2>/dev/null || rc=$?
        [[ $rc -ne 0 ]] || echo "$i" >>acked
    done
    info "$name: $(wc -l <acked) of 8 fsynced writes acknowledged"
    faultfs_ctl m cut 0
    kill_mdfuse
    faultfs_unmount m
    # The disks as the power cut left them.  Every acknowledged write is
    # on m1, and m1 marks m0 faulty, else the next mount may copy m0 over it.
    for i in $(cat acked); do
        cmp -s -i 0:$((i * C)) -n 4096 "w$i" back/m1 ||
            fail "$name: acknowledged write $i is not on m1 after the power cut"
    done
    if [[ -s acked ]]; then
        [[ $(sb_role back/m1 0) -eq 65534 ]] ||
            fail "$name: writes were acknowledged, but m1's superblock does not mark m0 faulty"
    fi
    mount_array back/m0 back/m1
    for i in $(cat acked); do
        cmp -s <(dd if=mnt/volume bs=4k skip=$((i * 256)) count=1 status=none) "w$i" ||
            fail "$name: acknowledged write $i lost after the power cut and the next mount"
    done
    stop_mdfuse
    assert_members_identical $((16 * C)) "$C" back/m0 back/m1
}

scenario "m0 fails" no
[[ $(wc -l <acked) -eq 8 ]] || fail "with m1 healthy, only $(wc -l <acked) of 8 writes were acknowledged"
scenario "m0 fails, m1's superblock cannot be synced" yes
[[ ! -s acked ]] || fail "writes acknowledged although m0's faulty role could not be made durable"
info "writes that leave a member out reply only once it is durably faulty"
