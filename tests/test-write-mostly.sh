#!/usr/bin/env bash
# mdfuse: a write-mostly member (md's WriteMostly1, SPEC §8).
#
# Claim tested: three members on faultfs, slot 0 write-mostly (created with
# --write-mostly, and slow: 20 ms per pwrite).  mdadm --examine and
# mdfusectl examine show "Flags : write-mostly" on it and on no other;
# status (JSON and text) says so.  Reads of the whole volume (sequential
# O_DIRECT, and random ones from fio) never reach it — faultfs counts 0
# preads of it while both other members serve reads — and the data read is
# the data written.  A repair of a chunk where all three members differ
# takes it from a member that is not write-mostly (slot 1), and the
# resync after a crash copies from one too (the log names m1 as the
# source; a byte planted in the write-mostly member's dirty chunk is
# overwritten, not spread).  mdfusectl write-mostly clears and sets the
# flag offline and refuses a member in use.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires fio
requires jq
requires mdadm
[[ -x $FAULTFS ]] || fail "faultfs binary not found: $FAULTFS (set FAULTFS)"

make_tmpdir
work=$tmpdir/work
mkdir "$work"

v=$((64 * 1024 * 1024))
c=$((1024 * 1024))
make_array --members 3 --size 64M --chunk 1M --faultfs --write-mostly 0
m0=${ARRAY_MEMBERS[0]} m1=${ARRAY_MEMBERS[1]} m2=${ARRAY_MEMBERS[2]}
b0=${ARRAY_BACK[0]}
mnt=$ARRAY_MNT FM=$tmpdir/m
faultfs_ctl "$FM" delay m0 pwrite 20000

info "the flag on disk: mdadm --examine and mdfusectl examine"
mdadm --examine "$b0" >"$work/ex0" 2>&1 || fail "mdadm --examine $b0 failed: $(cat "$work/ex0")"
[[ $(field Flags <"$work/ex0") == write-mostly ]] ||
    fail "mdadm --examine $b0: no 'Flags : write-mostly': $(cat "$work/ex0")"
for m in "${ARRAY_BACK[1]}" "${ARRAY_BACK[2]}"; do
    mdadm --examine "$m" >"$work/ex" 2>&1 || fail "mdadm --examine $m failed"
    ! grep -q "Flags" "$work/ex" || fail "mdadm --examine $m shows flags: $(grep Flags "$work/ex")"
done
[[ $(examine "$m0" Flags) == write-mostly ]] || fail "mdfusectl examine $m0: no write-mostly flag"

info "status shows it"
assert_status "$mnt" '.members[0].write_mostly == true and .members[1].write_mostly == false
    and .members[2].write_mostly == false and .write_behind.max == 0' "status --json write_mostly"
assert_status_text "$mnt" "^ *0: active +$(re_escape "$m0") \\(write-mostly\\)" \
    "^ *1: active +$(re_escape "$m1")  \\("

info "fill, then read everything: the write-mostly member serves no read"
model=$work/model
head -c "$v" /dev/urandom >"$model"
dd if="$model" of="$mnt/volume" bs=1M oflag=direct conv=notrunc,fsync status=none ||
    fail "filling the volume failed"
r0=$(faultfs_stat "$FM" "pread:m0") r1=$(faultfs_stat "$FM" "pread:m1") r2=$(faultfs_stat "$FM" "pread:m2")
assert_volume_is "$mnt/volume" "sequential O_DIRECT read" "$model"
fio --name=randread --filename="$mnt/volume" --rw=randread --bs=4k --direct=1 \
    --ioengine=psync --numjobs=2 --size=$v --io_size=8M --randrepeat=0 \
    --output="$work/fio.out" >/dev/null 2>&1 || fail "fio randread failed: $(cat "$work/fio.out")"
d0=$(($(faultfs_stat "$FM" "pread:m0") - r0))
d1=$(($(faultfs_stat "$FM" "pread:m1") - r1))
d2=$(($(faultfs_stat "$FM" "pread:m2") - r2))
info "reads served: m0 (write-mostly) $d0, m1 $d1, m2 $d2"
[[ $d0 -eq 0 ]] || fail "the write-mostly member served $d0 reads"
[[ $d1 -gt 0 && $d2 -gt 0 ]] || fail "the other members should share the reads (m1 $d1, m2 $d2)"

info "repair: a chunk where all three differ is taken from m1, not the write-mostly m0"
off=$((7 * c + 1234))
printf 'A' | dd of="${ARRAY_BACK[0]}" bs=1 seek=$off conv=notrunc status=none
printf 'B' | dd of="${ARRAY_BACK[2]}" bs=1 seek=$off conv=notrunc status=none
"$MDFUSECTL" check --repair "$mnt" >"$work/out" 2>&1 || fail "check --repair failed: $(cat "$work/out")"
grep -q "1 mismatched chunk rewritten" "$work/out" ||
    fail "check --repair: expected 1 chunk rewritten: $(cat "$work/out")"
"$MDFUSECTL" check "$mnt" >"$work/out" 2>&1 || fail "check after repair found mismatches: $(cat "$work/out")"
assert_members_identical "$v" "$c" "${ARRAY_BACK[@]}"
assert_volume_is "$mnt/volume" "after the repair" "$model"

info "crash: the resync copies from m1 (not write-mostly) over m0"
head -c $((2 * c)) /dev/urandom >"$work/piece"
dd if="$work/piece" of="$mnt/volume" bs=1M seek=20 oflag=direct conv=notrunc,fsync status=none ||
    fail "write before the crash failed"
dd if="$work/piece" of="$model" bs=1M seek=20 conv=notrunc status=none
kill_mdfuse
dirty=$(checked_dirty_chunks "$ARRAY_BITMAP")
grep -qx 20 <<<"$dirty" || fail "chunk 20 should be dirty after the crash: $(tr '\n' ' ' <<<"$dirty")"
# m0 now holds something else there: copied from m0, it would spread.
printf 'Z' | dd of="${ARRAY_BACK[0]}" bs=1 seek=$((20 * c + 99)) conv=notrunc status=none
mount_array
"$MDFUSECTL" wait "$mnt" >/dev/null || fail "mdfusectl wait after the remount failed"
grep -q "chunks to copy, from $(re_escape "$m1")," "$MDFUSE_LOG" ||
    fail "the resync should copy from $m1: $(grep 'chunks to copy' "$MDFUSE_LOG")"
info "log: $(grep 'chunks to copy' "$MDFUSE_LOG" | tail -n 1)"
assert_volume_is "$mnt/volume" "after the resync" "$model"
stop_mdfuse
assert_members_identical "$v" "$c" "${ARRAY_BACK[@]}"

info "mdfusectl write-mostly: refused while mounted, clears and sets offline"
mount_array
expect_fail "in use" "$MDFUSECTL" write-mostly --clear "$m0"
stop_mdfuse
"$MDFUSECTL" write-mostly --clear "$m0" >/dev/null || fail "write-mostly --clear failed"
mdadm --examine "$b0" >"$work/ex0" 2>&1
! grep -q Flags "$work/ex0" || fail "the flag is still there after --clear"
"$MDFUSECTL" write-mostly --set "$m2" >/dev/null || fail "write-mostly --set failed"
mount_array
assert_status "$mnt" '.members[0].write_mostly == false and .members[2].write_mostly == true' \
    "status after moving the flag"
stop_mdfuse
[[ $(examine "$m2" Flags) == write-mostly ]] || fail "the flag on m2 did not survive a mount"

info "PASS"
