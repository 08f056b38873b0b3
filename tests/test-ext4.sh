#!/usr/bin/env bash
# mdfuse: an ext4 file system on the volume keeps its files, both members
# hold the same bytes, and a clean unmount leaves no dirty bit, so the next
# mount resyncs nothing.
#
# Claims tested:
#   - `volume` has size V; data written to it lands at offset 0 of every
#     member (SPEC §2: data_offset 0);
#   - ext4 (mkfs, file copies, umount) works through a loop device on it
#     in direct-I/O mode, and reads back through a buffered one;
#   - after a clean unmount: members byte-identical in the data region,
#     0 dirty bits (mdfusectl and the raw bits agree), bitmap State OK,
#     members State clean, same events everywhere;
#   - the next mount copies 0 of Y chunks; the files' sha256 are intact;
#     e2fsck -fn is clean on the volume and on a member read directly.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires mkfs.ext4
requires e2fsck

size=$((64 * 1024 * 1024))
chunk=$((1024 * 1024))

make_tmpdir
mkdir "$tmpdir/fs" "$tmpdir/src"

info "create: 2 members of 64M, chunk 1M"
make_array --name ext4test --size 64M --no-mount
m0=${ARRAY_MEMBERS[0]} m1=${ARRAY_MEMBERS[1]} bm=$ARRAY_BITMAP mnt=$ARRAY_MNT
v=$(volume_size "$m0")
[[ $v -eq $size ]] || fail "Volume Size $v != $size"
c=$(chunk_size "$bm")
[[ $c -eq $chunk ]] || fail "Chunksize $c != $chunk"
nchunks=$(((v + c - 1) / c))

mount_array
x_y=$(resync_counts "$MDFUSE_LOG")
[[ $x_y == "0 $nchunks" ]] || fail "first mount of a new array: resync '$x_y', expected '0 $nchunks'"

vsize=$(stat -c %s "$mnt/volume")
[[ $vsize -eq $v ]] || fail "volume size $vsize != $v"

# Raw data lands at the same offset in every member (SPEC §2).
info "raw write at offset 5M, read back from the members"
random_file "$tmpdir/src/raw" $((1024 * 1024))
dd if="$tmpdir/src/raw" of="$mnt/volume" bs=64K seek=80 conv=notrunc,fsync status=none
raw_sha=$(sha256_of "$tmpdir/src/raw")
for m in "$m0" "$m1"; do
    got=$(dd if="$m" bs=64K skip=80 count=16 status=none | sha256sum)
    [[ ${got%% *} == "$raw_sha" ]] || fail "$m: bytes at 5M are not what was written to volume"
done
got=$(dd if="$mnt/volume" bs=64K skip=80 count=16 status=none | sha256sum)
[[ ${got%% *} == "$raw_sha" ]] || fail "volume: read back differs from what was written"

# The loop device as docs/ advise (direct I/O); the second mount below
# reads back through a plain, buffered one.
info "mkfs.ext4 on a loop device (losetup --direct-io=on) over volume"
LOOP_DIRECT_IO=1 attach_loop "$mnt/volume"
mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 "$loop_dev"
mount_ext4 "$loop_dev" "$tmpdir/fs"

info "copy files in"
sizes=(1 4096 65536 1048576 3145728 5242883)
for i in "${!sizes[@]}"; do
    random_file "$tmpdir/src/f$i" "${sizes[i]}"
done
mkdir "$tmpdir/fs/dir"
cp "$tmpdir"/src/f* "$tmpdir/fs/dir/"
(cd "$tmpdir/src" && sha256sum f*) >"$tmpdir/sums"
(cd "$tmpdir/fs/dir" && sha256sum --quiet -c "$tmpdir/sums") ||
    fail "files read back wrong while mounted"

info "umount ext4, detach, clean unmount"
umount_ext4 "$tmpdir/fs"
detach_loop "$loop_dev"
stop_mdfuse

info "check the members and the bitmap after a clean unmount"
assert_members_identical "$v" "$c" "$m0" "$m1"
dirty=$(checked_dirty_chunks "$bm")
[[ -z $dirty ]] || fail "dirty bits after a clean unmount: $(tr '\n' ' ' <<<"$dirty")"
bits=$(examine_bitmap "$bm" Bitmap)
[[ $bits == "$nchunks bits (chunks), 0 dirty"* ]] ||
    fail "examine-bitmap: Bitmap '$bits', expected '$nchunks bits (chunks), 0 dirty ...'"
state=$(examine_bitmap "$bm" State)
[[ $state == OK ]] || fail "bitmap State '$state' after a clean unmount"
ev_bm=$(examine_bitmap "$bm" Events)
for m in "$m0" "$m1"; do
    state=$(examine "$m" State)
    [[ $state == clean ]] || fail "$m: State '$state' after a clean unmount"
    ev=$(examine "$m" Events)
    [[ $ev == "$ev_bm" ]] || fail "$m: Events $ev != bitmap Events $ev_bm"
done
e2fsck -fn "$m0" >"$tmpdir/fsck.m0" 2>&1 || {
    cat "$tmpdir/fsck.m0" >&2
    fail "e2fsck -fn on member $m0 (the volume at offset 0) is not clean"
}

# This mount is served by libfuse's loop (-o nouring): the requests above
# went through mdfuse's own loop and its io_uring.
info "remount (-o nouring): nothing to resync, files intact"
mount_array -o nouring
x_y=$(resync_counts "$MDFUSE_LOG")
[[ $x_y == "0 $nchunks" ]] || fail "mount after a clean unmount: resync '$x_y', expected '0 $nchunks'"
attach_loop "$mnt/volume"
e2fsck -fn "$loop_dev" >"$tmpdir/fsck.vol" 2>&1 || {
    cat "$tmpdir/fsck.vol" >&2
    fail "e2fsck -fn on the volume is not clean"
}
mount_ext4 "$loop_dev" "$tmpdir/fs" ro
(cd "$tmpdir/fs/dir" && sha256sum --quiet -c "$tmpdir/sums") ||
    fail "files changed across a clean unmount and remount"
umount_ext4 "$tmpdir/fs"
detach_loop "$loop_dev"
stop_mdfuse

dirty=$(checked_dirty_chunks "$bm")
[[ -z $dirty ]] || fail "dirty bits after a read-only session: $(tr '\n' ' ' <<<"$dirty")"
assert_members_identical "$v" "$c" "$m0" "$m1"
info "PASS"
