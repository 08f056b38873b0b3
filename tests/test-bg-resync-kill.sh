#!/usr/bin/env bash
# The daemon killed while a background resync runs under a verifying
# writer, over and over (SPEC §8).
#
# Each cycle remounts at once (the resync of the previous kill's dirty
# chunks runs in the background, slowed down so that it lasts), checks
# through the volume, while that resync runs, that every write fio saw
# complete in the previous cycle is intact, runs fio again (random 4 KiB
# O_DIRECT writes stamped with their offset and a crc32c, completions
# logged) and SIGKILLs the daemon in the middle of it all.  Before each
# remount invariant I is checked on the files: every chunk where the
# members differ has its bit set.  At the end the resync runs to its end
# and the members are identical.  BG_KILL_CYCLES sets the number of cycles
# (default 20).

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires fio
requires jq

cycles=${BG_KILL_CYCLES:-20}
make_tmpdir
cd "$tmpdir" || exit 1
V=$((64 * 1024 * 1024))
C=$((256 * 1024))
# The members on faultfs, m1's writes delayed: a kill then leaves chunks
# where m0 has a write that m1 has not, for the resync to make the same.
make_array --size 64M --chunk 256K --faultfs
faultfs_ctl "$tmpdir/m" delay m1 pwrite 3000
: "${FIO_BLOCKS:=$top_builddir/tests/fio_blocks}"
[[ -x $FIO_BLOCKS ]] || fail "$FIO_BLOCKS is missing (make check builds it)"

# One random pass over the volume at a bounded rate: every block is
# written at most once a cycle, and the kill lands inside the pass.
run_fio() { # SEED
    rm -f "$tmpdir"/done_*.log
    (cd "$tmpdir" && exec fio --name=kill --filename="$tmpdir/mnt/volume" \
        --size=64M --rw=randwrite --bs=4k --ioengine=libaio --direct=1 \
        --iodepth=16 --rate_iops=4000 --verify=crc32c --do_verify=0 \
        --randrepeat=0 --randseed="$1" \
        --write_lat_log="$tmpdir/done" --log_offset=1 >"$tmpdir/fio.log" 2>&1) &
    writer=$!
}

# Wait until fio is under way (on a loaded machine it takes a while to
# start): 64 of its writes have reached m0, which the resync does not
# write (it copies m0 to m1).
fio_under_way() {
    local i w0=$1
    for ((i = 0; i < 300; i++)); do
        [[ $(faultfs_stat "$tmpdir/m" pwrite:m0) -ge $((w0 + 64)) ]] && return 0
        sleep 0.1
    done
    fail "fio did not get 64 writes to m0 in 30 s"
}

# Every write fio saw complete in the last cycle reads back intact.
verify_acked() { # WHAT
    local n
    [[ -f $tmpdir/done_clat.1.log ]] ||
        { cat "$tmpdir/fio.log" >&2; fail "$1: fio wrote no completion log"; }
    n=$(wc -l <"$tmpdir/done_clat.1.log")
    [[ $n -gt 0 ]] || fail "$1: fio completed no write before the kill"
    awk -F, '{ print $5 + 0 }' "$tmpdir/done_clat.1.log" |
        "$FIO_BLOCKS" "$tmpdir/mnt/volume" 4096 >"$tmpdir/verify.log" 2>&1 ||
        { cat "$tmpdir/verify.log" >&2; fail "$1: writes fio saw complete are lost or corrupt"; }
    info "$1: all $n writes fio saw complete are intact"
}

# Cycle 0: dirty the volume under fio and kill.
w0=$(faultfs_stat "$tmpdir/m" pwrite:m0)
run_fio 1
fio_under_way "$w0"
sleep 0.5
kill_mdfuse stop_fio "$writer"

in_resync=0 with_differ=0
for ((cycle = 1; cycle <= cycles; cycle++)); do
    # Invariant I, read off the files before anything touches them.
    differ=$(differing_chunks "$V" "$C" "${ARRAY_BACK[0]}" "${ARRAY_BACK[1]}")
    dirty=$(dirty_chunks "$ARRAY_BITMAP_BACK")
    assert_subset "$differ" "$dirty" "cycle $cycle: chunks that differ but have no bit"
    [[ -z $differ ]] || with_differ=$((with_differ + 1))

    MDFUSE_NO_WAIT=1 mount_array -o resync_min=2M,resync_max=6M
    verify_acked "cycle $cycle (previous writes, read during the resync)"
    w0=$(faultfs_stat "$tmpdir/m" pwrite:m0)
    run_fio $((cycle + 1))
    fio_under_way "$w0"
    sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.3 + (r % 90) / 100 }')"
    if "$MDFUSECTL" status --json mnt | jq -e '.resync != null' >/dev/null; then
        in_resync=$((in_resync + 1))
    fi
    kill_mdfuse stop_fio "$writer"
    info "cycle $cycle/$cycles: $(count_lines "$dirty") dirty and $(count_lines "$differ") differing at the mount"
done
# Most kills must land inside a resync, and some must leave the members
# different, or this proves nothing.
[[ $in_resync -ge $((cycles * 3 / 4)) ]] ||
    fail "only $in_resync of $cycles kills came during a background resync"
[[ $with_differ -gt 0 ]] || fail "no kill left the members different"

differ=$(differing_chunks "$V" "$C" "${ARRAY_BACK[0]}" "${ARRAY_BACK[1]}")
dirty=$(dirty_chunks "$ARRAY_BITMAP_BACK")
assert_subset "$differ" "$dirty" "after the last kill: chunks that differ but have no bit"
mount_array
verify_acked "the end (after mdfusectl wait)"
stop_mdfuse
assert_members_identical "$V" "$C" "${ARRAY_BACK[0]}" "${ARRAY_BACK[1]}"
echo "kills during a background resync: $in_resync of $cycles cycles ($with_differ left the members different)"
