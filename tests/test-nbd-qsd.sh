#!/usr/bin/env bash
# mdfuse: an NBD member served by qemu-storage-daemon, a second NBD server
# implementation beside nbdkit (issue 16).
#
# Claims tested, on a three-member volume (two local files, one export of
# qemu-storage-daemon over a Unix socket, write-mostly, written behind):
#   - create writes the superblock at the end of the export (mdadm reads it
#     in the file behind the server: active device 2 of 3);
#   - writes reach all three; after a clean unmount the three data areas
#     are identical;
#   - the server killed under a writer: no error reaches the writer, the
#     member is faulty, the others go on; the server back, re-add by URI
#     recovers it and the three end identical.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires qemu-storage-daemon
requires jq
requires mdadm

make_tmpdir
cd "$tmpdir" || exit 1
V=$((64 * 1024 * 1024)) C=$((1024 * 1024))
mkdir -p export
truncate -s $((V + C)) export/m2.img
sock=$tmpdir/qsd.sock
uri="nbd+unix:///m2?socket=$sock"
qsd_pid=

start_qsd() {
    rm -f "$sock"
    info "starting: qemu-storage-daemon, export m2 of export/m2.img on $sock"
    qemu-storage-daemon \
        --blockdev "driver=file,node-name=f,filename=$tmpdir/export/m2.img,cache.direct=off" \
        --nbd-server "addr.type=unix,addr.path=$sock" \
        --export "type=nbd,id=e,node-name=f,name=m2,writable=on" \
        </dev/null >>"$tmpdir/qsd.log" 2>&1 &
    qsd_pid=$!
    local i
    for ((i = 0; i < 200; i++)); do
        [[ -S $sock ]] && return 0
        _pid_running "$qsd_pid" || { cat "$tmpdir/qsd.log" >&2; fail "qemu-storage-daemon exited"; }
        sleep 0.05
    done
    cat "$tmpdir/qsd.log" >&2
    fail "qemu-storage-daemon did not serve $sock within 10 s"
}
stop_qsd() {
    [[ -n $qsd_pid ]] || return 0
    kill -"${1:-TERM}" "$qsd_pid" 2>/dev/null || true
    wait "$qsd_pid" 2>/dev/null || true
    qsd_pid=
}
cleanup_fn stop_qsd KILL

start_qsd
make_array --members 3 --size 64M --chunk 1M --daemon-sleep 1 --write-mostly 2 --write-behind 64 \
    --nbd "$uri" "$tmpdir/export/m2.img"
m0=${ARRAY_MEMBERS[0]} m1=${ARRAY_MEMBERS[1]} mnt=$ARRAY_MNT

info "the superblock at the end of the export"
mdadm --examine export/m2.img >mdadm.out 2>&1 || { cat mdadm.out >&2; fail "mdadm --examine of the export failed"; }
grep -q "Raid Devices : 3" mdadm.out || { cat mdadm.out >&2; fail "mdadm: not a 3-member array"; }
grep -q "Device Role : Active device 2" mdadm.out || { cat mdadm.out >&2; fail "mdadm: the export is not active device 2"; }
assert_status "$mnt" ".state == \"active\" and .active == 3 and .members[2].path == \"$uri\"
    and .members[2].write_mostly and (.members[0].write_mostly | not)" \
    "a 3-member volume with the qemu-storage-daemon export, write-mostly"

info "writes reach all three"
head -c $((16 * C)) /dev/urandom >data
dd if=data of="$mnt/volume" bs=1M seek=5 conv=notrunc,fsync status=none || fail "writing the volume failed"
cmp -n $((16 * C)) data <(dd if="$mnt/volume" bs=1M skip=5 count=16 iflag=direct status=none) ||
    fail "the volume does not read back what was written"
stop_mdfuse
assert_members_identical "$V" "$C" "$m0" "$m1" export/m2.img

info "the server killed under a writer"
mount_array
(
    for i in $(seq 0 59); do
        dd if=/dev/urandom of="$mnt/volume" bs=64K seek=$((i * 16)) count=16 conv=notrunc,fsync status=none || exit 1
        sleep 0.05
    done
) &
writer=$!
sleep 0.8
stop_qsd KILL
wait "$writer" || fail "the writer saw an error after the server was killed"
wait_status "$mnt" '.members[2].state == "faulty" and .active == 2' 30 "the NBD member faulty"
dd if=/dev/urandom of="$mnt/volume" bs=1M seek=40 count=2 conv=notrunc,fsync status=none ||
    fail "a write with the member faulty failed"

info "the server back: re-add by URI"
start_qsd
"$MDFUSECTL" re-add "$mnt" "$uri" >readd.out 2>&1 || { cat readd.out >&2; fail "re-add of $uri failed"; }
grep -q "recovering the chunks the bitmap marks" readd.out || fail "re-add did not use the bitmap: $(cat readd.out)"
assert_status "$mnt" '.state == "active" and .active == 3' "whole again after the re-add"
stop_mdfuse
assert_members_identical "$V" "$C" "$m0" "$m1" export/m2.img
stop_qsd
info "PASS"
