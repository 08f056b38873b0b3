#!/usr/bin/env bash
# mdfuse: a member whose file system dies under write load (SPEC §6, §8).
#
# Claim tested: the member in slot 1 is the `volume` of an inner mdfuse,
# whose daemon is SIGKILLed while three writers write the outer volume
# (fsync, O_DIRECT and plain writes).  Every write and fsync succeeds; the
# daemon log names ENOTCONN, ECONNABORTED or ECANCELED; the member is faulty in the
# survivor's superblock (events bumped, dev_roles = 0xfffe) and in status
# (text and --json); the chunks written after the kill stay dirty through
# several clearing passes and a clean unmount, and no chunk that was not
# written is dirty; the data read back is what was written.  The member
# comes back (inner daemon restarted): the mount copies the dirty chunks
# only, and the members are identical.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires jq
requires comm

make_tmpdir
work=$tmpdir/work
mkdir "$work"
cleanup_fn kill_bg_jobs

k64=65536
vo=$((16 * 1024 * 1024)) # outer volume
co=$k64                  # its chunk
no=$((vo / co))          # its chunks
make_array_over_inner 1 --size 16M --chunk 64K --daemon-sleep 1
omnt=$ARRAY_MNT
obm=$ARRAY_BITMAP
o0=${ARRAY_MEMBERS[0]}
inner_vol=$INNER_VOL
outer_log=$MDFUSE_LOG

# The writers write the first three quarters; the last quarter stays zero,
# as created, and its chunks must never be dirty.
nblk=$((no * 3 / 4))
head -c $((nblk * k64)) /dev/urandom >"$work/src"
truncate -s "$vo" "$work/src"

# load_writer W NW: blocks W, W+NW, ... < nblk of src to the outer volume, 64 KiB
# each, mixing fsync, O_DIRECT and plain writes.  Logs "block start_time"
# before each write, "block" after it; failures to err.W.
load_writer() {
    local w=$1 nw=$2 k flags
    for ((k = w; k < nblk; k += nw)); do
        echo "$k $EPOCHREALTIME" >>"$work/start.$w"
        case $((k % 3)) in
        0) flags=("conv=notrunc,fsync") ;;
        1) flags=(conv=notrunc oflag=direct) ;;
        *) flags=(conv=notrunc) ;;
        esac
        dd if="$work/src" of="$omnt/volume" bs=64K skip="$k" seek="$k" count=1 \
            "${flags[@]}" status=none 2>>"$work/err.$w" ||
            echo "block $k: dd failed" >>"$work/err.$w"
        echo "$k" >>"$work/done.$w"
    done
}

assert_status "$omnt" '.state == "active" and .active == 2' "outer array not active at start"
dev1=$(sb_dev_number "$inner_vol")

nw=3
for ((w = 0; w < nw; w++)); do
    : >"$work/start.$w"
    : >"$work/done.$w"
    : >"$work/err.$w"
    load_writer "$w" "$nw" &
    bg_pids+=("$!")
done
deadline=$((SECONDS + 60))
while [[ $(cat "$work"/done.* | wc -l) -lt $((nblk / 4)) ]]; do
    [[ $SECONDS -lt $deadline ]] || fail "the writers did not write a quarter of the volume in 60 s"
    sleep 0.02
done
ev0=$(sb_events "$o0")
t_kill=$EPOCHREALTIME
kill_mdfuse_pid "$INNER_PID"
wait_bg_jobs

errors=$(cat "$work"/err.*)
[[ -z $errors ]] || fail "writes failed after the member's file system died: $errors"
written=$(sort -un "$work"/done.* | wc -l)
[[ $written -eq $nblk ]] || fail "$written of $nblk blocks written"
after_kill=$(awk -v t="$t_kill" '$2 > t { print $1 }' "$work"/start.* | sort -un)
n_after=$(count_lines "$after_kill")
info "$n_after of $nblk writes started after the kill, none failed"
[[ $n_after -gt 0 ]] || fail "the writers finished before the inner daemon was killed"

# ENOTCONN, or for a request in flight when the server died ECONNABORTED
# (through /dev/fuse) or ECANCELED (a FUSE io_uring queue's request, when
# the inner daemon served through the ring).
if ! grep -F "$inner_vol" "$outer_log" |
    grep -E "Transport endpoint is not connected|Software caused connection abort|Operation canceled" >/dev/null; then
    _show_log "$outer_log"
    fail "the daemon log does not report ENOTCONN, ECONNABORTED or ECANCELED on $inner_vol"
fi
assert_status "$omnt" \
    '.state == "degraded" and .raid_disks == 2 and .active == 1
     and .members[0].state == "active" and .members[1].state == "faulty"
     and (.members[1].read_errors + .members[1].write_errors) >= 1
     and .members[0].read_errors == 0 and .members[0].write_errors == 0' \
    "the dead member is not reported faulty"
assert_status_text "$omnt" '^volume : degraded raid1' '\[2/1\] \[U_\]' \
    "^ *1: faulty +$(re_escape "$inner_vol")( |$)" "^ *0: active +$(re_escape "$o0")( |$)"
assert_marked_faulty "$o0" "$dev1" "$ev0"
[[ $(examine "$o0" "Array State") == A.* ]] || fail "$o0: Array State is not 'A.'"

info "writes while degraded keep their bits through clearing passes"
sleep 3.5 # daemon_sleep 1: three passes
dirty=$(checked_dirty_chunks "$obm")
assert_subset "$after_kill" "$dirty" "chunks written while degraded lost their bits"
outside=$(awk -v n="$nblk" '$1 >= n' <<<"$dirty")
[[ -z $outside ]] || fail "dirty bits for chunks no one wrote: $(tr '\n' ' ' <<<"$outside")"
assert_status "$omnt" ".bitmap.dirty == $(count_lines "$dirty")" "status: bitmap.dirty"
info "dirty chunks after 3 passes: $(count_lines "$dirty") of $no"

info "nothing lost"
cmp -n "$vo" "$o0" "$work/src" || fail "$o0 does not hold the data written"
assert_volume_is "$omnt/volume" "write load" "$work/src"

stop_mdfuse
teardown_mdfuse_pid "$INNER_PID"
dirty2=$(checked_dirty_chunks "$obm")
assert_subset "$dirty" "$dirty2" "a clean unmount with a faulty member cleared bits"
ndirty=$(count_lines "$dirty2")

info "the member comes back: the mount copies only the dirty chunks"
mount_inner
mount_array
read -r x y <<<"$(resync_counts "$MDFUSE_LOG")"
info "mount recovery copied $x of $y chunks ($ndirty dirty)"
[[ $x -eq $ndirty && $y -eq $no ]] || fail "mount recovery copied $x of $y chunks, expected $ndirty of $no"
[[ $x -lt $y ]] || fail "mount recovery copied every chunk: the bitmap was not used"
assert_status "$omnt" '.state == "active" and .active == 2' "outer array not active after recovery"
assert_members_identical "$vo" "$co" "$o0" "$inner_vol"

info "PASS"
