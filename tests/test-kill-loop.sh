#!/usr/bin/env bash
# mdfuse survives being killed at random moments, over and over.
#
# Each cycle mounts the volume, runs a verifying writer, and SIGKILLs the
# daemon at a random moment.  Then, before remounting:
#   - invariant I: every chunk where the members differ has its bit set;
# and after remounting:
#   - the resync copied exactly the dirty chunks, the members are identical;
#   - every write fio had completed reads back with its checksum (fio
#     --verify=crc32c and its log of completed writes), or, through ext4 on a loop
#     device, every fsynced file is intact and e2fsck -fn is clean after the
#     journal replay.
# Odd cycles drive the second half of the volume with fio (libaio,
# O_DIRECT, iodepth 16, one random pass over 64 MiB at a bounded rate so
# the kill lands inside the pass), even cycles ext4 on a loop device over
# the first half (every other one a loop device in direct-I/O mode, as
# docs/ advise, the others buffered, as plain losetup).  KILL_CYCLES sets the number of cycles
# (default 20).

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires fio
requires mkfs.ext4
requires e2fsck

cycles=${KILL_CYCLES:-20}
make_tmpdir
cd "$tmpdir" || exit 1
mkdir -p ext
V=$((128 * 1024 * 1024))
C=$((256 * 1024))
export LOOP_SIZELIMIT=$((64 * 1024 * 1024))   # ext4 in the first half
# ext4 once, on a first mount, for the ext4 cycles.
make_array --size 128M --chunk 256K
attach_loop mnt/volume
mkfs.ext4 -q -F "$loop_dev" || fail "mkfs.ext4 failed"
detach_loop "$loop_dev"
stop_mdfuse

# fio stamps every block with its verify header (offset, crc32c) and logs
# the offset of every write it saw complete (its latency log); writes that
# failed when the daemon died are not logged.  One pass at a bounded rate:
# every block is written at most once.
fio_job=(--name=kill --filename="$tmpdir/mnt/volume" --offset=64M --size=64M
    --rw=randwrite --bs=4k --ioengine=libaio --direct=1 --iodepth=16
    --rate_iops=6000 --verify=crc32c --do_verify=0 --randseed=1234
    --write_lat_log="$tmpdir/done" --log_offset=1)
: "${FIO_BLOCKS:=$top_builddir/tests/fio_blocks}"
[[ -x $FIO_BLOCKS ]] || fail "$FIO_BLOCKS is missing (make check builds it)"

total_copied=0 total_chunks=0

# Writes new files under ext/d; a file's sha256 is recorded only once its
# fsync (and its directory's) returned.
writer_ext4() {
    local i=0 f sum
    mkdir -p ext/d && sync ext
    while :; do
        i=$((i + 1))
        f=ext/d/f$i
        head -c $((16 * 1024 + RANDOM)) /dev/urandom >"$f" 2>/dev/null || return 0
        sum=$(sha256sum <"$f" | cut -d' ' -f1)
        sync "$f" 2>/dev/null || return 0
        sync ext/d 2>/dev/null || return 0
        echo "$sum $f" >>"$tmpdir/synced"
    done
}

for ((cycle = 1; cycle <= cycles; cycle++)); do
    mount_array
    read -r copied chunks < <(resync_counts "$MDFUSE_LOG")
    if [[ $cycle -gt 1 ]]; then
        [[ $copied -eq $expect_copied ]] ||
            fail "cycle $cycle: resync copied $copied chunks, the bitmap had $expect_copied dirty"
        total_copied=$((total_copied + copied)) total_chunks=$((total_chunks + chunks))
        assert_members_identical "$V" "$C" m/m0 m/m1
        # Every write fio saw complete in the previous cycle is intact.
        if [[ $((cycle % 2)) -eq 0 ]]; then
            nacked=$(wc -l <"$tmpdir/done_clat.1.log")
            [[ $nacked -gt 0 ]] || fail "cycle $((cycle - 1)): fio completed no write before the kill"
            awk -F, '{ print $5 + 0 }' "$tmpdir/done_clat.1.log" |
                "$FIO_BLOCKS" "$tmpdir/mnt/volume" 4096 >"$tmpdir/verify.log" 2>&1 ||
                { cat "$tmpdir/verify.log" >&2; fail "cycle $cycle: writes fio saw complete are lost or corrupt"; }
            info "cycle $cycle: all $nacked writes fio saw complete are intact"
        fi
    fi

    kill_after=$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.3 + (r % 150) / 100 }')
    if [[ $((cycle % 2)) -eq 1 ]]; then
        rm -f "$tmpdir"/done_*.log
        (cd "$tmpdir" && exec fio "${fio_job[@]}" >"$tmpdir/fio.log" 2>&1) &
        writer=$!
        # Kill only once fio is writing (it takes a while to start on a
        # loaded machine): its first bit in the second half is the sign.
        for _ in $(seq 200); do
            [[ -n $(awk -v h=$(((V / 2) / C)) '$1 >= h' < <(dirty_chunks bm/b)) ]] && break
            sleep 0.05
        done
    else
        # Every other ext4 cycle with the loop device in direct-I/O mode.
        LOOP_DIRECT_IO=$((cycle % 4 == 2 ? 1 : 0)) attach_loop "$tmpdir/mnt/volume"
        info "cycle $cycle: ext4 writer on $loop_dev (direct I/O: $(losetup -n -O DIO "$loop_dev" | tr -d ' '))"
        mount_ext4 "$loop_dev" ext
        : >"$tmpdir/synced"
        writer_ext4 &
        writer=$!
    fi
    sleep "$kill_after"
    if [[ $((cycle % 2)) -eq 1 ]]; then
        # fio must see its I/O fail and write its log (a SIGKILL would lose
        # it): let it end by itself, SIGTERM it if it hangs.
        kill_mdfuse stop_fio "$writer"
        [[ -f $tmpdir/done_clat.1.log ]] ||
            { cat "$tmpdir/fio.log" >&2; fail "cycle $cycle: fio wrote no completion log"; }
    else
        kill_mdfuse kill -KILL "$writer"
        wait "$writer" 2>/dev/null || true
    fi

    # Invariant I, read off the files before anything touches them.
    differ=$(differing_chunks "$V" "$C" m/m0 m/m1)
    dirty=$(dirty_chunks bm/b)
    assert_subset "$differ" "$dirty" "cycle $cycle: chunks that differ but have no bit"
    expect_copied=$(count_lines "$dirty")

    if [[ $((cycle % 2)) -eq 0 ]]; then
        # Remount, replay the journal, check every fsynced file, clear them
        # out, and check the file system.
        mount_array
        read -r copied chunks < <(resync_counts "$MDFUSE_LOG")
        [[ $copied -eq $expect_copied ]] ||
            fail "cycle $cycle: resync copied $copied chunks, the bitmap had $expect_copied dirty"
        total_copied=$((total_copied + copied)) total_chunks=$((total_chunks + chunks))
        assert_members_identical "$V" "$C" m/m0 m/m1
        attach_loop "$tmpdir/mnt/volume"
        mount_ext4 "$loop_dev" ext
        nfiles=0
        while read -r sum f; do
            [[ $sum =~ ^[0-9a-f]{64}$ && -n $f ]] || continue
            [[ -f $f ]] || fail "cycle $cycle: fsynced file $f is gone"
            [[ $(sha256sum <"$f" | cut -d' ' -f1) == "$sum" ]] ||
                fail "cycle $cycle: fsynced file $f lost its content"
            nfiles=$((nfiles + 1))
        done <"$tmpdir/synced"
        info "cycle $cycle: $nfiles fsynced files intact"
        rm -rf ext/d
        umount_ext4 ext
        e2fsck -fn "$loop_dev" >"$tmpdir/fsck.log" 2>&1 ||
            { cat "$tmpdir/fsck.log" >&2; fail "cycle $cycle: e2fsck -fn is not clean"; }
        detach_loop "$loop_dev"
        stop_mdfuse
        expect_copied=0
    fi
    info "cycle $cycle/$cycles: killed after ${kill_after}s, $(count_lines "$dirty") dirty, $(count_lines "$differ") differing"
done

mount_array
stop_mdfuse
assert_members_identical "$V" "$C" m/m0 m/m1
echo "kill cycles: $cycles (resyncs copied $total_copied of $total_chunks chunks)"
