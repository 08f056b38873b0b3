#!/usr/bin/env bash
# Resync, recovery and re-add keep member files as sparse as the source:
# where the source has a hole, the target gets a hole (it reads as zeros),
# not megabytes of written zeros.
#
#   - a new member re-added to a 256 MiB volume holding 12 MiB of data
#     takes about 12 MiB on disk, not 256, and is identical to the other;
#   - a full resync punches holes where the source has them, even over data
#     the target held there (it reads as zeros afterwards).

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env

make_tmpdir
cd "$tmpdir" || exit 1
V=$((256 * 1024 * 1024))
C=$((1024 * 1024))
make_array --size 256M
for at in 3 100 200; do
    head -c $((4 * C)) /dev/urandom | dd of=mnt/volume bs=1M seek=$at conv=notrunc,fsync status=none ||
        fail "write at $at MiB failed"
done

# Re-add a new member: a full recovery.
"$MDFUSECTL" fail mnt 1 >/dev/null || fail "fail m1 failed"
rm -f m/m1
"$MDFUSECTL" new-member --like m/m0 --slot 1 m/m1 >/dev/null || fail "new-member failed"
"$MDFUSECTL" re-add mnt m/m1 >"$tmpdir/readd" || { cat "$tmpdir/readd" >&2; fail "re-add failed"; }
grep -q "recovered (256 of 256 chunks copied, full)" "$MDFUSE_LOG" ||
    fail "no full recovery: $(grep recovered "$MDFUSE_LOG")"
used=$(du -k m/m1 | cut -f1)
info "the new member: $((used / 1024)) MiB on disk for 12 MiB of data in a 256 MiB volume"
[[ $used -lt $((32 * 1024)) ]] || fail "the recovered member takes $((used / 1024)) MiB on disk: not sparse"
stop_mdfuse
assert_members_identical "$V" "$C" m/m0 m/m1

# m1 holds data where m0 has a hole; a full resync (a crash without the
# bitmap makes it stale) must leave zeros there, and a hole.
head -c $((8 * C)) /dev/urandom | dd of=m/m1 bs=1M seek=50 conv=notrunc status=none
mount_array -o nobitmap
dd if=/dev/urandom of=mnt/volume bs=4k count=1 seek=10 conv=notrunc,fsync status=none
kill_mdfuse
mount_array
grep -q "resync: copied 256 of 256 chunks.*(full)" "$MDFUSE_LOG" ||
    fail "no full resync: $(grep 'resync:' "$MDFUSE_LOG")"
[[ $(dd if=mnt/volume bs=1M skip=50 count=8 iflag=direct status=none | tr -d '\0' | wc -c) -eq 0 ]] ||
    fail "the volume does not read zeros where the source has a hole"
stop_mdfuse
assert_members_identical "$V" "$C" m/m0 m/m1
used=$(du -k m/m1 | cut -f1)
[[ $used -lt $((32 * 1024)) ]] || fail "after the full resync m1 takes $((used / 1024)) MiB on disk: the hole was filled"
info "full resync: holes punched over the target's stale data; m1 $((used / 1024)) MiB on disk"
