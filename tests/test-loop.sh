#!/usr/bin/env bash
# The session loop (fuse/loop.c): one thread receives every request and
# serves the reads through an io_uring; workers serve the rest.
#
# Claims tested:
#   - mixed I/O at once (4 KiB and 1 MiB O_DIRECT reads and writes from
#     several processes, buffered 4 KiB writes one at a time, fsyncs)
#     leaves the volume holding exactly what was written, on both members;
#   - SIGTERM and SIGINT stop a serving daemon cleanly, whether it sleeps
#     (idle for a while) or is just back from serving a request: it exits
#     with status 0 within seconds, the mount is gone, the bitmap is empty
#     and the next mount copies nothing;
#   - SIGTERM while `volume` is open is held (the daemon goes on
#     serving) and carried out, without another signal, when the last
#     open closes -- so a signal that overtakes the RELEASE of a file
#     just closed is never lost;
#   - -o nouring (libfuse's loop) serves the same data.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires fio

make_tmpdir
cd "$tmpdir" || exit 1
V=$((64 * 1024 * 1024))
make_array --size 64M --no-mount
nchunks=64

# signal_stop SIGNAL: send SIGNAL to the daemon started last; it must exit
# with status 0 within 10 s, unmounted, after a clean shutdown.
signal_stop() {
    kill "-$1" "$MDFUSE_PID"
    expect_stopped "$1"
}

# expect_stopped SIGNAL: the daemon started last, sent SIGNAL before,
# exits as signal_stop says.
expect_stopped() {
    local sig=$1 pid=$MDFUSE_PID status=0
    _wait_pid_exit "$pid" 10 || {
        _show_log "$MDFUSE_LOG"
        fail "mdfuse still running 10 s after SIG$sig"
    }
    wait "$pid" || status=$?
    unset '_mdfuse_mnt[$pid]' '_mdfuse_log[$pid]'
    [[ $status -eq 0 ]] || { _show_log "$MDFUSE_LOG"; fail "mdfuse exited with status $status after SIG$sig"; }
    ! is_mounted mnt || fail "mnt still mounted after SIG$sig"
    grep -q "clean shutdown" "$MDFUSE_LOG" || fail "no 'clean shutdown' after SIG$sig"
    [[ $(dirty_chunks bm/b | wc -l) -eq 0 ]] || fail "dirty bits left after SIG$sig"
    [[ $(examine m/m0 State) == clean ]] || fail "m0 not clean after SIG$sig"
}

# remount_clean [OPTS]: mount again; nothing may be copied.
remount_clean() {
    mount_array ${1:+-o "$1"}
    [[ $(resync_counts "$MDFUSE_LOG") == "0 $nchunks" ]] ||
        fail "mount after a clean stop copied something: $(resync_counts "$MDFUSE_LOG")"
}

# --- mixed I/O, checked against a model file -------------------------------
mount_array
random_file "$tmpdir/model" $V
dd if=model of=mnt/volume bs=1M conv=notrunc,fsync status=none
# Writers on disjoint quarters, each verifying what it wrote (fio's
# crc32c headers, read back once it is done), readers all over meanwhile:
#  quarter 0: 4 KiB O_DIRECT random writes, queue depth 16;
#  quarter 1: 1 MiB O_DIRECT writes, queue depth 4;
#  quarter 2: 4 KiB buffered writes one at a time, fsync every 8;
#  quarter 3: left alone; everything is read meanwhile, 4 KiB and 1 MiB.
q=$((V / 4))
common=(--filename=mnt/volume --size=$q --output=/dev/null)
verify=(--verify=crc32c --verify_fatal=1)
pids=()
fio --name=a "${common[@]}" "${verify[@]}" --offset=0 --rw=randwrite --bs=4k \
    --ioengine=libaio --iodepth=16 --direct=1 --number_ios=3000 &
pids+=("$!")
fio --name=b "${common[@]}" "${verify[@]}" --offset=$q --rw=write --bs=1M \
    --ioengine=libaio --iodepth=4 --direct=1 &
pids+=("$!")
fio --name=c "${common[@]}" "${verify[@]}" --offset=$((2 * q)) --rw=randwrite \
    --bs=4k --ioengine=psync --fsync=8 --number_ios=1000 &
pids+=("$!")
fio --name=r "${common[@]}" --size=$V --rw=randread --bs=4k --ioengine=libaio \
    --iodepth=32 --direct=1 --number_ios=20000 &
pids+=("$!")
fio --name=s "${common[@]}" --size=$V --rw=read --bs=1M --ioengine=psync \
    --direct=1 --loops=2 &
pids+=("$!")
for p in "${pids[@]}"; do
    wait "$p" || fail "a fio job on the volume failed (or found data it did not write)"
done
cmp -s <(tail -c $q model) <(dd if=mnt/volume bs=1M skip=48 status=none) ||
    fail "the quarter nobody wrote changed"
sum_vol=$(sha256_of mnt/volume)

# --- SIGTERM when idle ------------------------------------------------------
sleep 1 # the dispatcher has long stopped polling and sleeps in read()
signal_stop TERM
assert_members_identical $V $((1 << 20)) m/m0 m/m1
[[ $(head -c $V m/m0 | sha256sum) == "$sum_vol  -" ]] ||
    fail "member 0 does not hold what the volume showed"

# --- SIGINT just after a request ---------------------------------------------
remount_clean
for _ in 1 2 3; do
    dd if=mnt/volume of=/dev/null bs=4k count=1 iflag=direct status=none
done
signal_stop INT

# --- SIGTERM held while open, carried out by the last close ---------------------
remount_clean
exec {vfd}<mnt/volume
kill -TERM "$MDFUSE_PID"
for _ in $(seq 50); do
    grep -q "stop held" "$MDFUSE_LOG" && break
    sleep 0.1
done
grep -q "stop held" "$MDFUSE_LOG" || fail "SIGTERM with the volume open: no 'stop held'"
sleep 0.5
_pid_running "$MDFUSE_PID" || fail "mdfuse exited on SIGTERM although the volume was open"
[[ $(sha256_of mnt/volume) == "$sum_vol" ]] || fail "the volume changed while a stop was held"
exec {vfd}<&-
expect_stopped TERM

# --- libfuse's loop serves the same data ----------------------------------------
remount_clean nouring
[[ $(sha256_of mnt/volume) == "$sum_vol" ]] || fail "-o nouring reads other data"
stop_mdfuse
info "ok"
