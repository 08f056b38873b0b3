#!/usr/bin/env bash
# mdfuse: a mirror of a local file and an NBD member (issue 16).
#
# Claims tested:
#   - `mdfusectl create` writes the v1.0 superblock at the end of an NBD
#     export (nbdkit's file plugin over a Unix socket), where mdadm
#     --examine finds it in the file behind the server; `mdfusectl
#     examine URI` reads it over NBD;
#   - mdfuse serves a volume of a file and an NBD URI given in one member
#     list (the URI's ':' kept); status, text and JSON, names the member by
#     its URI;
#   - ext4 on a loop device over `volume`: fsynced files intact after a
#     clean unmount and a new mount, e2fsck clean; the file behind nbdkit
#     and the local member identical;
#   - the same member list mounts through `mount -t fuse.mdfuse` and from
#     an fstab line;
#   - an nbds:// member (TLS with a pre-shared key, nbdkit --tls=require):
#     served and mirrored; a plain connection to that server is refused;
#   - refusals name the URI: a bitmap on NBD, a server that is not there,
#     a bad member_timeout; a plain nbd:// member on this machine's own
#     network address is warned about, one on 127.0.0.1 is not.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
require_nbdkit
requires jq
requires mdadm
requires mkfs.ext4
requires e2fsck

make_tmpdir
cd "$tmpdir" || exit 1
V=$((64 * 1024 * 1024)) C=$((1024 * 1024))
mkdir -p export
# The export is larger than a member needs: the superblock goes at its end.
truncate -s $((V + 3 * C)) export/m1.img
start_nbdkit m1 file "$tmpdir/export/m1.img"
uri=$NBD_URI
make_array --size 64M --chunk 1M --daemon-sleep 1 --nbd "$uri" "$tmpdir/export/m1.img"
m0=${ARRAY_MEMBERS[0]}
[[ ${ARRAY_MEMBERS[1]} == "$uri" ]] || fail "make_array did not take the URI"

info "the superblock on the export, read by mdadm and over NBD"
uuid=$(mdadm --examine "$m0" | awk '/Array UUID/ { print $4 }')
mdadm --examine export/m1.img >"$tmpdir/mdadm.out" 2>&1 ||
    { cat "$tmpdir/mdadm.out" >&2; fail "mdadm --examine of the file behind nbdkit failed"; }
grep -q "Array UUID : $uuid" "$tmpdir/mdadm.out" ||
    { cat "$tmpdir/mdadm.out" >&2; fail "mdadm --examine: not the array's UUID $uuid"; }
grep -qE "Super Offset : $(((V + 3 * C) / 512 - 16)) sectors" "$tmpdir/mdadm.out" ||
    { cat "$tmpdir/mdadm.out" >&2; fail "mdadm --examine: the superblock is not at the end of the export"; }
"$MDFUSECTL" examine "$uri" >"$tmpdir/examine.out" ||
    fail "mdfusectl examine $uri failed"
grep -qF "$uri:" "$tmpdir/examine.out" || fail "examine does not name $uri"
grep -q "Device Role : Active device 1" "$tmpdir/examine.out" ||
    { cat "$tmpdir/examine.out" >&2; fail "examine $uri: not active device 1"; }

info "status names the NBD member by its URI"
assert_status "$ARRAY_MNT" ".state == \"active\" and .active == 2
    and .members[1].path == \"$uri\" and .members[1].state == \"active\"" \
    "status of a mirror with an NBD member"
assert_status_text "$ARRAY_MNT" "^ *1: active +$(re_escape "$uri")( |$)" '\[2/2\] \[UU\]'

info "ext4 over the volume: fsynced files"
attach_loop "$ARRAY_MNT/volume"
mkfs.ext4 -q -F "$loop_dev" || fail "mkfs.ext4 failed"
mkdir -p ext
mount_ext4 "$loop_dev" ext
: >sums
for i in $(seq 1 40); do
    head -c $((100 * 1024 + RANDOM)) /dev/urandom >"ext/f$i"
    sync "ext/f$i"
    echo "$(sha256_of "ext/f$i") f$i" >>sums
done
sync ext
umount_ext4 ext
e2fsck -fn "$loop_dev" >fsck.log 2>&1 || { cat fsck.log >&2; fail "e2fsck -fn not clean"; }
detach_loop "$loop_dev"
stop_mdfuse
assert_members_identical "$V" "$C" "$m0" export/m1.img
[[ $(examine "$uri" State) == clean && $(examine "$m0" State) == clean ]] ||
    fail "the members are not clean after the unmount"
[[ $(examine "$uri" Events) == "$(examine "$m0" Events)" ]] ||
    fail "the members' events differ after a clean unmount"
info "members identical after a clean unmount (the file behind nbdkit and $m0)"

# --- mount.fuse3 and fstab, the URI in the member list ----------------------
if ! command -v mdfuse >/dev/null || [[ $(command -v mdfuse) == /usr/local/sbin/mdfuse && -L /usr/local/sbin/mdfuse ]]; then
    if [[ ! -e /usr/local/sbin/mdfuse ]]; then
        mkdir -p /usr/local/sbin
        ln -s "$MDFUSE" /usr/local/sbin/mdfuse
        cleanup_fn rm -f /usr/local/sbin/mdfuse
    fi
fi
members="$m0:$uri"
mount -t fuse.mdfuse "$members" "$ARRAY_MNT" -o "bitmap=$ARRAY_BITMAP" 2>mount.err ||
    { cat mount.err >&2; fail "mount -t fuse.mdfuse $members failed"; }
cleanup_fn unmount_if_mounted "$ARRAY_MNT"
[[ $(mount_fstype "$ARRAY_MNT") == fuse.mdfuse ]] || fail "not a fuse.mdfuse mount"
attach_loop "$ARRAY_MNT/volume"
mount_ext4 "$loop_dev" ext
(cd ext && sha256sum --quiet -c <(awk '{ print $1 "  " $2 }' "$tmpdir/sums")) ||
    fail "fsynced files changed after a new mount"
umount_ext4 ext
detach_loop "$loop_dev"
umount "$ARRAY_MNT" || fail "umount $ARRAY_MNT failed"
for _ in $(seq 100); do
    [[ $(examine "$uri" State) == clean ]] && break
    sleep 0.1
done
[[ $(examine "$uri" State) == clean ]] || fail "umount (mount.fuse3) was not clean"
info "mount -t fuse.mdfuse '$members': ok, files intact"

printf '%s %s fuse.mdfuse bitmap=%s,nofail 0 0\n' "$members" "$ARRAY_MNT" \
    "$ARRAY_BITMAP" >fstab
mount -T "$tmpdir/fstab" "$ARRAY_MNT" 2>mount.err ||
    { cat mount.err >&2; fail "mount from an fstab line with a URI failed"; }
[[ -f $ARRAY_MNT/volume ]] || fail "fstab mount shows no volume"
assert_status "$ARRAY_MNT" ".members[1].path == \"$uri\" and .active == 2" "fstab mount"
umount "$ARRAY_MNT" || fail "umount (fstab) failed"
for _ in $(seq 100); do
    [[ $(examine "$uri" State) == clean ]] && break
    sleep 0.1
done
[[ $(examine "$uri" State) == clean ]] || fail "umount (fstab) was not clean"
info "fstab line: ok"

# --- TLS (nbds://, a pre-shared key) -----------------------------------------
stop_nbdkit m1
printf 'alice:%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >keys.psk
chmod 600 keys.psk
start_nbdkit tls --tls=require --tls-psk="$tmpdir/keys.psk" file "$tmpdir/export/m1.img"
tls_uri="nbds+unix://alice@/?socket=$NBD_SOCK&tls-psk-file=$tmpdir/keys.psk"
expect_fail "$(re_escape "$NBD_URI"): cannot connect: .*TLS" "$MDFUSECTL" examine "$NBD_URI"
mount_array "$m0" "$tls_uri"
assert_status "$ARRAY_MNT" ".members[1].path == \"$tls_uri\" and .active == 2" "a TLS member"
dd if=/dev/urandom of="$ARRAY_MNT/volume" bs=1M count=4 seek=8 conv=notrunc,fsync status=none ||
    fail "writing through a TLS member failed"
stop_mdfuse
assert_members_identical "$V" "$C" "$m0" export/m1.img
stop_nbdkit tls
start_nbdkit m1 file "$tmpdir/export/m1.img"
info "nbds:// with a pre-shared key: ok"

# --- refusals and warnings ---------------------------------------------------
expect_mount_refused "nbd+unix:///?socket=$tmpdir/none.sock" \
    -o "bitmap=$ARRAY_BITMAP" "$m0:nbd+unix:///?socket=$tmpdir/none.sock" "$ARRAY_MNT"
expect_mount_refused "member_timeout=soon" \
    -o "bitmap=$ARRAY_BITMAP,member_timeout=soon" "$members" "$ARRAY_MNT"
expect_mount_refused "must be a local file" \
    -o "bitmap=$uri" "$m0:$uri" "$ARRAY_MNT"
expect_fail "nbd\\+unix:///\\?socket=$tmpdir/none.sock.*cannot connect" \
    "$MDFUSECTL" examine "nbd+unix:///?socket=$tmpdir/none.sock"
expect_fail "holds an md member superblock" \
    "$MDFUSECTL" new-member --like "$m0" --slot 1 "$uri"
expect_fail "already in use: it appears to be member 1" \
    "$MDFUSECTL" create --size 64M --bitmap "$tmpdir/bm/other" "$tmpdir/m/x0" "$uri"

# TCP: on 127.0.0.1 no warning; on this machine's own network address, a
# warning that the data travels in clear.
port=$((20000 + RANDOM % 20000))
start_nbdkit tcp --tcp 127.0.0.1 "$port" file "$tmpdir/export/m1.img"
"$MDFUSECTL" examine "nbd://127.0.0.1:$port" >/dev/null 2>examine.err ||
    { cat examine.err >&2; fail "examine nbd://127.0.0.1:$port failed"; }
! grep -q "not encrypted" examine.err || fail "a warning for a member on 127.0.0.1: $(cat examine.err)"
stop_nbdkit tcp
addr=$(ip -4 -o addr show scope global 2>/dev/null | awk '{ sub(/\/.*/, "", $4); print $4; exit }')
if [[ -n $addr ]]; then
    start_nbdkit tcp2 --tcp "$addr" "$port" file "$tmpdir/export/m1.img"
    "$MDFUSECTL" examine "nbd://$addr:$port" >/dev/null 2>examine.err ||
        { cat examine.err >&2; fail "examine nbd://$addr:$port failed"; }
    grep -q "nbd://$addr:$port: plain NBD to $addr, not encrypted" examine.err ||
        fail "no warning for a plain NBD member at $addr: $(cat examine.err)"
    stop_nbdkit tcp2
    info "plain NBD to $addr: warned"
else
    info "no global IPv4 address here: the warning for a plain remote member is not exercised"
fi

info "PASS"
