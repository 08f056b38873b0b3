#!/usr/bin/env bash
# mdfuse: bad input is refused, with a message naming the offending file,
# and changes nothing (SPEC §5: "refuses with a clear message, changing
# nothing").  Also: the volume never changes size (SPEC §7), a bitmap whose
# only fault is its checksum means a full resync (SPEC §3), and a bitmap on
# the members' file system needs -o bitmap_same_device.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires truncate
requires fallocate

make_tmpdir
make_bitmap_mount "$tmpdir/bm"
mkdir "$tmpdir/members" "$tmpdir/mnt" "$tmpdir/mnt2"
d=$tmpdir/members
b=$tmpdir/bm
mnt=$tmpdir/mnt
cleanup_fn unmount_if_mounted "$mnt"
cleanup_fn unmount_if_mounted "$tmpdir/mnt2"

size=$((16 * 1024 * 1024))
nchunks=16 # chunk 1M

create() { # BITMAP MEMBER...
    local bitmap=$1
    shift
    "$MDFUSECTL" create --chunk 1M --size 16M --bitmap "$bitmap" "$@"
}

# Two arrays, A and B.
create "$b/a.bitmap" "$d/a0.img" "$d/a1.img"
create "$b/b.bitmap" "$d/b0.img" "$d/b1.img"
uuid_a=$(examine "$d/a0.img" "Array UUID")
uuid_b=$(examine "$d/b0.img" "Array UUID")
[[ $uuid_a != "$uuid_b" ]] || fail "two creates gave the same UUID $uuid_a"
[[ $(examine_bitmap "$b/a.bitmap" UUID) == "$uuid_a" ]] || fail "a.bitmap UUID != members' Array UUID"

# ---------------------------------------------------------------------------
info "the volume never changes size"
start_mdfuse -o "bitmap=$b/a.bitmap" "$d/a0.img:$d/a1.img" "$mnt"
v=$(stat -c %s "$mnt/volume")
[[ $v -eq $size ]] || fail "volume size $v != $size"

info "a file in use by another mdfuse is refused"
expect_mount_refused "a0.img" -o "bitmap=$b/a.bitmap" "$d/a0.img:$d/a1.img" "$tmpdir/mnt2"

info "write at V fails with ENOSPC"
expect_fail "No space left on device" \
    dd if=/dev/zero of="$mnt/volume" bs=4096 seek=$((v / 4096)) count=1 conv=notrunc,fsync
info "write across V fails with ENOSPC"
expect_fail "No space left on device" \
    dd if=/dev/zero of="$mnt/volume" bs=4096 seek=$((v / 4096 - 1)) count=2 conv=notrunc,fsync
[[ $(stat -c %s "$mnt/volume") -eq $v ]] || fail "volume size changed by a write past its end"

info "truncate and fallocate that change V fail"
expect_fail "Invalid argument|not supported" truncate -s $((v / 2)) "$mnt/volume"
expect_fail "Invalid argument|not supported" truncate -s $((v + 4096)) "$mnt/volume"
expect_fail "Invalid argument|not supported" truncate -s 0 "$mnt/volume"
expect_fail "Invalid argument|not supported|No space left" fallocate -l $((v + 4096)) "$mnt/volume"
[[ $(stat -c %s "$mnt/volume") -eq $v ]] || fail "volume size changed by truncate/fallocate"
stop_mdfuse

# From here on, A and B must come out of every refusal unchanged.
snapshot_files "$tmpdir/sums" "$d"/a0.img "$d"/a1.img "$d"/b0.img "$d"/b1.img \
    "$b"/a.bitmap "$b"/b.bitmap

# ---------------------------------------------------------------------------
info "bitmap of another array"
expect_mount_refused "b.bitmap" -o "bitmap=$b/b.bitmap" "$d/a0.img:$d/a1.img" "$mnt"
assert_files_unchanged "$tmpdir/sums"

info "bitmap with a corrupt magic"
cp "$b/a.bitmap" "$b/bad-magic.bitmap"
flip_byte "$b/bad-magic.bitmap" 0
snapshot_files "$tmpdir/sums.1" "$b/bad-magic.bitmap"
expect_mount_refused "bad-magic.bitmap" -o "bitmap=$b/bad-magic.bitmap" "$d/a0.img:$d/a1.img" "$mnt"
assert_files_unchanged "$tmpdir/sums"
assert_files_unchanged "$tmpdir/sums.1"

info "bitmap with a wrong version"
cp "$b/a.bitmap" "$b/bad-version.bitmap"
flip_byte "$b/bad-version.bitmap" 4
snapshot_files "$tmpdir/sums.1" "$b/bad-version.bitmap"
expect_mount_refused "bad-version.bitmap" -o "bitmap=$b/bad-version.bitmap" "$d/a0.img:$d/a1.img" "$mnt"
assert_files_unchanged "$tmpdir/sums"
assert_files_unchanged "$tmpdir/sums.1"

info "bitmap whose volume size byte is corrupt (its checksum fails): refused as corrupt"
cp "$b/a.bitmap" "$b/bad-size.bitmap"
flip_byte "$b/bad-size.bitmap" 41 # sync_size
snapshot_files "$tmpdir/sums.1" "$b/bad-size.bitmap"
expect_mount_refused "bad-size.bitmap: corrupt bitmap header" -o "bitmap=$b/bad-size.bitmap" "$d/a0.img:$d/a1.img" "$mnt"
assert_files_unchanged "$tmpdir/sums"
assert_files_unchanged "$tmpdir/sums.1"

info "bitmap truncated after its header, before its bits"
cp "$b/a.bitmap" "$b/short.bitmap"
truncate -s 256 "$b/short.bitmap"
snapshot_files "$tmpdir/sums.1" "$b/short.bitmap"
expect_mount_refused "short.bitmap" -o "bitmap=$b/short.bitmap" "$d/a0.img:$d/a1.img" "$mnt"
assert_files_unchanged "$tmpdir/sums"
assert_files_unchanged "$tmpdir/sums.1"

info "truncated member"
cp --sparse=always "$d/a0.img" "$d/trunc.img"
truncate -s $(($(stat -c %s "$d/a0.img") / 2)) "$d/trunc.img"
snapshot_files "$tmpdir/sums.1" "$d/trunc.img"
expect_mount_refused "trunc.img" -o "bitmap=$b/a.bitmap" "$d/trunc.img:$d/a1.img" "$mnt"
assert_files_unchanged "$tmpdir/sums"
assert_files_unchanged "$tmpdir/sums.1"

info "member of another array"
expect_mount_refused "b1.img" -o "bitmap=$b/a.bitmap" "$d/a0.img:$d/b1.img" "$mnt"
assert_files_unchanged "$tmpdir/sums"

info "the same member twice"
expect_mount_refused "a0.img" -o "bitmap=$b/a.bitmap" "$d/a0.img:$d/a0.img" "$mnt"
assert_files_unchanged "$tmpdir/sums"

info "nonexistent member"
expect_mount_refused "nonexistent.img" -o "bitmap=$b/a.bitmap" "$d/a0.img:$d/nonexistent.img" "$mnt"
assert_files_unchanged "$tmpdir/sums"
[[ ! -e $d/nonexistent.img ]] || fail "mdfuse created the missing member"

info "nonexistent bitmap"
expect_mount_refused "nonexistent.bitmap" -o "bitmap=$b/nonexistent.bitmap" "$d/a0.img:$d/a1.img" "$mnt"
assert_files_unchanged "$tmpdir/sums"
[[ ! -e $b/nonexistent.bitmap ]] || fail "mdfuse created the missing bitmap"

# ---------------------------------------------------------------------------
info "bitmap on the same file system as the members"
create "$b/s.bitmap" "$d/s0.img" "$d/s1.img"
mv "$b/s.bitmap" "$d/same-fs.bitmap"
snapshot_files "$tmpdir/sums.1" "$d/s0.img" "$d/s1.img" "$d/same-fs.bitmap"
expect_mount_refused "same-fs.bitmap" -o "bitmap=$d/same-fs.bitmap" "$d/s0.img:$d/s1.img" "$mnt"
assert_files_unchanged "$tmpdir/sums.1"
info "... accepted with -o bitmap_same_device, with a warning"
start_mdfuse -o "bitmap=$d/same-fs.bitmap,bitmap_same_device" "$d/s0.img:$d/s1.img" "$mnt"
grep -v 'resync: copied' "$MDFUSE_LOG" | grep -qiE 'warn|same' || {
    _show_log "$MDFUSE_LOG"
    fail "no warning for a bitmap on the members' file system"
}
stop_mdfuse

# ---------------------------------------------------------------------------
info "bitmap whose header is ours but fails its checksum: full resync"
create "$b/k.bitmap" "$d/k0.img" "$d/k1.img"
flip_byte "$b/k.bitmap" 248 # a byte of the xxh64
start_mdfuse -o "bitmap=$b/k.bitmap" "$d/k0.img:$d/k1.img" "$mnt"
xy=$(resync_counts "$MDFUSE_LOG")
[[ $xy == "$nchunks $nchunks" ]] ||
    fail "bad bitmap checksum: resync '$xy', expected a full resync '$nchunks $nchunks'"
grep -v 'resync: copied' "$MDFUSE_LOG" | grep -qiE 'checksum|stale|xxh' || {
    _show_log "$MDFUSE_LOG"
    fail "no warning about the bitmap checksum"
}
stop_mdfuse
state=$(examine_bitmap "$b/k.bitmap" State)
[[ $state == OK ]] || fail "k.bitmap State '$state' after the full resync and a clean unmount"
dirty=$(checked_dirty_chunks "$b/k.bitmap")
[[ -z $dirty ]] || fail "k.bitmap: dirty bits after a clean unmount: $(tr '\n' ' ' <<<"$dirty")"
start_mdfuse -o "bitmap=$b/k.bitmap" "$d/k0.img:$d/k1.img" "$mnt"
xy=$(resync_counts "$MDFUSE_LOG")
[[ $xy == "0 $nchunks" ]] || fail "after the repair: resync '$xy', expected '0 $nchunks'"
stop_mdfuse

# ---------------------------------------------------------------------------
info "create: chunk not a power of two, or too small"
expect_fail "chunk|3000" "$MDFUSECTL" create --chunk 3000 --size 16M --bitmap "$b/n.bitmap" "$d/n0.img" "$d/n1.img"
expect_fail "chunk|2048|2K" "$MDFUSECTL" create --chunk 2K --size 16M --bitmap "$b/n.bitmap" "$d/n0.img" "$d/n1.img"
info "create: size too small, or not a multiple of 4096"
expect_fail "size|small|4K|4096" "$MDFUSECTL" create --size 4K --bitmap "$b/n.bitmap" "$d/n0.img" "$d/n1.img"
expect_fail "size|4096|multiple" "$MDFUSECTL" create --size $((size + 512)) --bitmap "$b/n.bitmap" "$d/n0.img" "$d/n1.img"
for f in "$b/n.bitmap" "$d/n0.img" "$d/n1.img"; do
    [[ ! -e $f ]] || fail "a refused create left $f behind"
done

info "create does not overwrite without --force"
echo "precious member" >"$d/e0.img"
echo "precious bitmap" >"$b/e.bitmap"
snapshot_files "$tmpdir/sums.1" "$d/e0.img" "$b/e.bitmap"
expect_fail "e0\.img" "$MDFUSECTL" create --size 16M --bitmap "$b/new.bitmap" "$d/e0.img" "$d/e1.img"
[[ ! -e $d/e1.img && ! -e $b/new.bitmap ]] || fail "a refused create left new files behind"
expect_fail "e\.bitmap" "$MDFUSECTL" create --size 16M --bitmap "$b/e.bitmap" "$d/new0.img" "$d/new1.img"
[[ ! -e $d/new0.img && ! -e $d/new1.img ]] || fail "a refused create left new members behind"
assert_files_unchanged "$tmpdir/sums.1"
info "... but does with --force"
"$MDFUSECTL" create --force --chunk 1M --size 16M --bitmap "$b/e.bitmap" "$d/e0.img" "$d/e1.img"
[[ $(examine "$d/e0.img" "Volume Size") -eq $size ]] || fail "create --force: wrong Volume Size"
[[ $(examine_bitmap "$b/e.bitmap" UUID) == "$(examine "$d/e0.img" "Array UUID")" ]] ||
    fail "create --force: bitmap UUID != member UUID"
start_mdfuse -o "bitmap=$b/e.bitmap" "$d/e0.img:$d/e1.img" "$mnt"
stop_mdfuse

assert_files_unchanged "$tmpdir/sums"
info "PASS"
