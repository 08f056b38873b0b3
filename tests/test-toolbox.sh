#!/usr/bin/env bash
# mdfuse behaves like the tools people know.
#
# Claims tested:
#   - `mount -t fuse.mdfuse MEMBERS MNT -o bitmap=...` and the same line in an
#     fstab (mount -T FILE MNT) mount through mount.fuse3; `umount MNT` is a
#     clean shutdown (members clean, 0 dirty bits);
#   - the man pages render without warnings;
#   - progress in a pipe is plain lines: no carriage returns, no bar;
#   - `examine-bitmap --map` draws a known bitmap cell for cell, and
#     `status --map` shows the dirty chunks of a mounted volume;
#   - the usual mistakes get a message that says what is wrong and what to
#     do: mount point not a directory, not empty, a dead mount, /dev/fuse
#     missing, permission denied, a member below the mount point.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires mount.fuse3
requires man
requires setpriv
requires unshare

make_tmpdir
cd "$tmpdir" || exit 1
V=$((32 * 1024 * 1024))
make_array --size 32M --no-mount

# --- mount.fuse3 and fstab ------------------------------------------------
# mount(8) runs helpers with a fixed PATH; give it our binary there for the
# length of this test (only if no mdfuse is installed already).
if ! command -v mdfuse >/dev/null || [[ $(command -v mdfuse) == /usr/local/sbin/mdfuse && -L /usr/local/sbin/mdfuse ]]; then
    if [[ ! -e /usr/local/sbin/mdfuse ]]; then
        mkdir -p /usr/local/sbin
        ln -s "$MDFUSE" /usr/local/sbin/mdfuse
        cleanup_fn rm -f /usr/local/sbin/mdfuse
    fi
fi

mount -t fuse.mdfuse "$tmpdir/m/m0:$tmpdir/m/m1" "$tmpdir/mnt" \
    -o "bitmap=$tmpdir/bm/b" 2>"$tmpdir/mount.err" ||
    { cat "$tmpdir/mount.err" >&2; fail "mount -t fuse.mdfuse failed"; }
cleanup_fn unmount_if_mounted "$tmpdir/mnt"
[[ $(mount_fstype "$tmpdir/mnt") == fuse.mdfuse ]] ||
    fail "mount type is $(mount_fstype "$tmpdir/mnt"), not fuse.mdfuse"
[[ $(stat -c %s mnt/volume) -eq $V ]] || fail "volume is not $V bytes"
dd if=/dev/urandom of=mnt/volume bs=1M count=3 seek=4 conv=notrunc,fsync status=none
[[ $(dirty_chunks bm/b | wc -l) -ge 3 ]] || fail "writes through mount(8) set no bits"
# The volume is served before the resync (in the background, after the
# daemon detached): a mount with nothing to resync says nothing.
[[ ! -s $tmpdir/mount.err ]] ||
    fail "mount(8) printed something for a clean mount: $(cat "$tmpdir/mount.err")"
umount "$tmpdir/mnt" || fail "umount failed"
# umount returns before the daemon has written its last superblocks.
for _ in $(seq 50); do
    [[ $(examine m/m0 State) == clean ]] && break
    sleep 0.1
done
[[ $(examine m/m0 State) == clean ]] || fail "umount was not a clean shutdown"
[[ $(examine m/m1 State) == clean ]] || fail "m1 not clean after umount"
[[ $(dirty_chunks bm/b | wc -l) -eq 0 ]] || fail "dirty bits left after umount"
assert_members_identical "$V" $((1024 * 1024)) m/m0 m/m1
info "mount -t fuse.mdfuse / umount: ok"

cat >"$tmpdir/fstab" <<EOF
$tmpdir/m/m0:$tmpdir/m/m1 $tmpdir/mnt fuse.mdfuse bitmap=$tmpdir/bm/b,nofail 0 0
EOF
mount -T "$tmpdir/fstab" "$tmpdir/mnt" 2>"$tmpdir/mount.err" ||
    { cat "$tmpdir/mount.err" >&2; fail "mount from an fstab line failed"; }
[[ -f mnt/volume ]] || fail "fstab mount shows no volume"
umount "$tmpdir/mnt" || fail "umount (fstab) failed"
for _ in $(seq 50); do
    [[ $(examine m/m0 State) == clean ]] && break
    sleep 0.1
done
[[ $(examine m/m0 State) == clean ]] || fail "fstab umount was not clean"
info "fstab line: ok"

# --- man pages ------------------------------------------------------------
for page in mdfuse mdfusectl; do
    src=$top_srcdir/man/$page.8
    [[ -f $src ]] || fail "$src is missing"
    warnings=$(MANWIDTH=80 man --warnings -l "$src" 2>&1 >/dev/null)
    [[ -z $warnings ]] || fail "man $page: $warnings"
    text=$(MANWIDTH=80 man -l "$src" 2>/dev/null)
    grep -q "SYNOPSIS" <<<"$text" || fail "man $page renders no SYNOPSIS"
    grep -q "mdadm" <<<"$text" || fail "man $page does not relate to mdadm"
done
info "man pages render: ok"

# --- progress in a pipe, and the map ------------------------------------
mount_array
dd if=/dev/urandom of=mnt/volume bs=1M count=2 seek=10 conv=notrunc,fsync status=none
"$MDFUSECTL" check mnt >"$tmpdir/check.out" 2>&1 || fail "check failed"
if grep -q $'\r' "$tmpdir/check.out" "$MDFUSE_LOG"; then
    fail "progress in a pipe drew a bar (carriage return found)"
fi
grep -q "check finished: 0 mismatched chunks" "$tmpdir/check.out" ||
    fail "check said: $(cat "$tmpdir/check.out")"
COLUMNS=40 "$MDFUSECTL" status --map mnt >"$tmpdir/status.map"
# 32 chunks on one row; chunks 10 and 11 dirty (maybe 4..6 too if the
# clearing pass has not run yet: only check those two and a clean one).
row=$(grep -E '^[.#R]{32}$' "$tmpdir/status.map") ||
    fail "status --map drew no 32-cell row: $(cat "$tmpdir/status.map")"
[[ ${row:10:1} == "#" && ${row:11:1} == "#" ]] ||
    fail "status --map: chunks 10 and 11 not dirty in '$row'"
[[ ${row:20:1} == "." ]] || fail "status --map: chunk 20 not clean in '$row'"
stop_mdfuse
info "progress in a pipe and status --map: ok"

# A known bitmap: 64 chunks with bits 0, 5, 40 and 63 set.
"$MDFUSECTL" create --size 64M --chunk 1M --bitmap bm/k m/k0 m/k1 >/dev/null
printf '\x21\x00\x00\x00\x00\x01\x00\x80' |
    dd of=bm/k bs=1 seek=256 conv=notrunc status=none
COLUMNS=34 "$MDFUSECTL" examine-bitmap --map bm/k >"$tmpdir/k.map"
grep -q "^map: 64 chunks, each cell 1 chunk" "$tmpdir/k.map" ||
    fail "map legend: $(cat "$tmpdir/k.map")"
expected=$'#....#..........................\n........#......................#'
got=$(grep -E '^[.#]+$' "$tmpdir/k.map")
[[ $got == "$expected" ]] || fail "map of a known bitmap: got
$got
expected
$expected"
info "examine-bitmap --map: ok"

# --- friendly errors ------------------------------------------------------
# (under timeout: a daemon that wrongly mounts would otherwise serve forever)
touch notadir
expect_fail "not a directory" timeout -k 5 30 "$MDFUSE" -f -o "bitmap=$tmpdir/bm/b" m/m0:m/m1 notadir
mkdir -p full && touch full/file
expect_fail "not empty" timeout -k 5 30 "$MDFUSE" -f -o "bitmap=$tmpdir/bm/b" m/m0:m/m1 full
# /dev/fuse missing: an empty /dev in a private mount namespace.
expect_fail "/dev/fuse.*(modprobe fuse|fuse3)" unshare -m sh -c \
    "mount -t tmpfs none /dev && exec '$MDFUSE' -f -o bitmap='$tmpdir/bm/b' '$tmpdir/m/m0:$tmpdir/m/m1' '$tmpdir/mnt'"
# Permission denied: an unprivileged user cannot open root's 0600 members.
chmod 0755 "$tmpdir"
expect_fail "m0.*permission denied.*run as root" setpriv --reuid=65534 \
    --regid=65534 --clear-groups "$MDFUSE" -f -o "bitmap=$tmpdir/bm/b" \
    "$tmpdir/m/m0:$tmpdir/m/m1" "$tmpdir/mnt"
# A dead mount left by a killed daemon: say so, and how to clear it.
mount_array
dead_pid=$MDFUSE_PID
kill_mdfuse_pid "$dead_pid"
expect_fail "dead FUSE mount.*fusermount3 -u -z" timeout -k 5 30 "$MDFUSE" -f -o "bitmap=$tmpdir/bm/b" \
    "$tmpdir/m/m0:$tmpdir/m/m1" "$tmpdir/mnt"
teardown_mdfuse_pid "$dead_pid"
# A member below the mount point would live on the volume itself.
expect_fail "below the mount point" timeout -k 5 30 "$MDFUSE" -f -o "bitmap=$tmpdir/bm/b" \
    "$tmpdir/mnt/m0:$tmpdir/m/m1" "$tmpdir/mnt"
info "friendly errors: ok"
