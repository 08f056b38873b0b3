#!/usr/bin/env bash
# mdfuse: member failure, degraded I/O, re-add, check and repair
# (SPEC §6, mdfusectl fail / re-add / status / check).
#
# A member on a file system that goes away: the member file is the `volume`
# of an inner mdfuse, whose daemon is SIGKILLed (its FUSE connection aborts:
# ENOTCONN, or ECONNABORTED for requests in flight).
# 1. Read error: the dead member is slot 0; O_DIRECT reads (4 KiB ones by
#    four readers, through the daemon's io_uring, then large ones) all
#    return the right data (retried on the other member); the member is
#    counted and marked faulty in the survivor's superblock.
# 2. Write load: three writers write the outer volume while the inner daemon
#    is killed.  Every write and fsync succeeds; the member is faulty in the
#    survivor's superblock (events bumped, dev_roles = 0xfffe); the chunks
#    written after the kill stay dirty through several clearing passes and
#    a clean unmount, and no chunk that was not written is dirty; the data
#    read back is what was written.  The member comes back (inner daemon
#    restarted): the mount copies the dirty chunks only, and the members
#    are identical.
# Plain member files:
# 3. fail + writes + re-add: the bitmap holds exactly the written chunks,
#    the re-add copies exactly those (a byte planted in a clean chunk of the
#    faulty member survives the recovery) and the members end identical.
# 4. A stale copy of a member, older than events_cleared, comes back after
#    a degraded mount (-o degraded): re-add copies everything, writes go on
#    during the recovery, the members end identical.
# 5. check finds a one-byte corruption (exit 2, the chunk named in the log)
#    and changes nothing; --repair fixes it from the first member; with
#    three members the majority wins, even against the first member.
# And last, on the array of case 2:
# 6. No member left: the last active member cannot be failed; once its file
#    system dies, writes, fsync and reads fail with EIO and the faulty
#    member's file is not written.
# Status text and --json are checked along the way.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires jq
requires comm

make_tmpdir
make_bitmap_mount "$tmpdir/bm"
mkdir "$tmpdir/members" "$tmpdir/inner" "$tmpdir/imnt" "$tmpdir/omnt" \
    "$tmpdir/mnt" "$tmpdir/work"
bm=$tmpdir/bm
d=$tmpdir/members
work=$tmpdir/work
imnt=$tmpdir/imnt
omnt=$tmpdir/omnt
mnt=$tmpdir/mnt
cleanup_fn unmount_if_mounted "$imnt"
cleanup_fn unmount_if_mounted "$omnt"
cleanup_fn unmount_if_mounted "$mnt"

k64=65536

# Background jobs started by this test (bg_pids), killed by pid at exit.
cleanup_fn kill_bg_jobs

# wait_bg_jobs: wait for the background jobs; fails if one failed.
wait_bg_jobs() {
    local p st=0
    for p in "${bg_pids[@]}"; do
        wait "$p" || st=1
    done
    bg_pids=()
    [[ $st -eq 0 ]] || fail "a background job failed"
}

# write_at VOLUME MODEL OFFSET LENGTH: write LENGTH random bytes at OFFSET
# of the volume (fsynced) and of its model file.
write_at() {
    local vol=$1 model=$2 off=$3 len=$4
    head -c "$len" /dev/urandom >"$work/piece"
    dd if="$work/piece" of="$vol" bs="$len" seek="$off" oflag=seek_bytes \
        conv=notrunc,fsync status=none || fail "write of $len bytes at $off failed"
    dd if="$work/piece" of="$model" bs="$len" seek="$off" oflag=seek_bytes \
        conv=notrunc status=none
}

# volume_sha VOLUME: sha256 of the volume read with O_DIRECT, so that every
# byte comes from the daemon, not from the page cache.
volume_sha() {
    local s
    s=$(dd if="$1" bs=1M iflag=direct status=none | sha256sum) ||
        fail "reading $1 failed"
    printf '%s\n' "${s%% *}"
}

assert_volume_is() { # VOLUME MODEL WHAT
    [[ $(volume_sha "$1") == "$(sha256_of "$3")" ]] ||
        fail "$2: the volume does not hold the data written"
}

# chunk list helpers: "a b c" -> sorted lines.
lines() { tr ' ' '\n' <<<"$*" | sed '/^$/d' | sort -n; }
sorted() { sort -n <<<"$1" | sed '/^$/d'; }

# assert_faulty_in SURVIVOR FAILED EV_BEFORE: FAILED's role is 0xfffe in
# SURVIVOR's superblock and SURVIVOR's events went past EV_BEFORE.
assert_faulty_in() {
    local survivor=$1 dev=$2 ev_before=$3 role ev
    role=$(sb_role "$survivor" "$dev")
    ev=$(sb_events "$survivor")
    [[ $role -eq 65534 ]] ||
        fail "$survivor: dev_roles[$dev] = $role, expected 65534 (0xfffe, faulty)"
    [[ $ev -gt $ev_before ]] ||
        fail "$survivor: events $ev, not bumped past $ev_before by the failure"
    info "$survivor: dev_roles[$dev] = 0xfffe, events $ev_before -> $ev"
}

# assert_status_text MNT REGEX...: every ERE matches a line of the text status.
assert_status_text() {
    local mnt=$1 out re
    shift
    out=$("$MDFUSECTL" status "$mnt") || fail "mdfusectl status $mnt failed"
    for re in "$@"; do
        grep -qE -- "$re" <<<"$out" || {
            printf '%s\n' "$out" >&2
            fail "mdfusectl status $mnt: no line matching '$re'"
        }
    done
}

re_escape() { sed 's/[][\.*^$+?(){}|/]/\\&/g' <<<"$1"; }

# ===========================================================================
# Cases 1, 2 and 6: a member file on a FUSE file system whose server dies.
# ===========================================================================
vo=$((16 * 1024 * 1024))        # outer volume
co=$k64                         # its chunk
no=$((vo / co))                 # its chunks
ibm=$bm/inner.bitmap
inner_vol=$imnt/volume
"$MDFUSECTL" create --chunk 64K --size $((vo + 8192)) --bitmap "$ibm" \
    "$tmpdir/inner/i0.img" "$tmpdir/inner/i1.img" >/dev/null

inner_pid=
start_inner() {
    start_mdfuse -o "bitmap=$ibm" "$tmpdir/inner/i0.img:$tmpdir/inner/i1.img" "$imnt"
    inner_pid=$MDFUSE_PID
    [[ $(stat -c %s "$inner_vol") -eq $((vo + 8192)) ]] || fail "inner volume size"
}

# make_outer BITMAP INNER_SLOT MEMBER0 MEMBER1: create an outer array whose
# member INNER_SLOT is then copied into the inner volume, which replaces it.
make_outer() {
    local b=$1 slot=$2 m0=$3 m1=$4 src
    "$MDFUSECTL" create --daemon-sleep 1 --chunk 64K --size "$vo" --bitmap "$b" \
        "$m0" "$m1" >/dev/null
    if [[ $slot -eq 0 ]]; then src=$m0; else src=$m1; fi
    dd if="$src" of="$inner_vol" bs=1M conv=notrunc,fsync status=none ||
        fail "copying $src into $inner_vol failed"
    rm -f "$src"
}

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

# ---------------------------------------------------------------------------
info "case 1: a read error on a dead member is retried on the other one"
rbm=$bm/read.bitmap
r1=$d/r1.img
start_inner
make_outer "$rbm" 0 "$d/r0.img" "$r1"
start_mdfuse -o "bitmap=$rbm" "$inner_vol:$r1" "$omnt"
outer_pid=$MDFUSE_PID
dd if="$work/src" of="$omnt/volume" bs=1M conv=notrunc,fsync status=none || fail "filling the volume failed"
dd if="$inner_vol" iflag=nocache count=0 status=none # drop its page cache
src_sha=$(sha256_of "$work/src")
ev0=$(sb_events "$r1")
dev0=$(sb_dev_number "$inner_vol")
kill_mdfuse_pid "$inner_pid"
# 4 KiB reads first, four readers at once: the daemon's io_uring takes
# them, many at a time, and a failed read must be served again from the
# other member; then large reads, which go through the ring as well.
q=$((vo / 4 / 4096))
for i in 0 1 2 3; do
    dd if="$omnt/volume" of="$work/part$i" bs=4K iflag=direct skip=$((i * q)) count=$q \
        status=none &
    bg_pids+=("$!")
done
wait_bg_jobs || fail "4 KiB reads with a dead member failed"
s=$(cat "$work"/part{0,1,2,3} | sha256sum)
[[ ${s%% *} == "$src_sha" ]] || fail "4 KiB reads with a dead member returned wrong data"
rm -f "$work"/part{0,1,2,3}
for w in 1 2; do
    (
        s=$(dd if="$omnt/volume" bs=$((w * 128))K iflag=direct status=none | sha256sum)
        [[ ${s%% *} == "$src_sha" ]]
    ) &
    bg_pids+=("$!")
done
wait_bg_jobs
assert_status "$omnt" \
    '.state == "degraded" and .members[0].state == "faulty" and .members[0].read_errors >= 1
     and .members[1].state == "active"' "the member with a read error"
assert_faulty_in "$r1" "$dev0" "$ev0"
assert_volume_is "$omnt/volume" "case 1" "$work/src"
MDFUSE_PID=$outer_pid stop_mdfuse
teardown_mdfuse_pid "$inner_pid"

# ---------------------------------------------------------------------------
info "case 2: a member on a FUSE file system whose server dies under write load"
obm=$bm/outer.bitmap
o0=$d/o0.img
start_inner
make_outer "$obm" 1 "$o0" "$d/o1.img"
start_mdfuse -o "bitmap=$obm" "$o0:$inner_vol" "$omnt"
outer_pid=$MDFUSE_PID
outer_log=$MDFUSE_LOG
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
kill_mdfuse_pid "$inner_pid"
wait_bg_jobs

errors=$(cat "$work"/err.*)
[[ -z $errors ]] || fail "writes failed after the member's file system died: $errors"
written=$(sort -un "$work"/done.* | wc -l)
[[ $written -eq $nblk ]] || fail "$written of $nblk blocks written"
after_kill=$(awk -v t="$t_kill" '$2 > t { print $1 }' "$work"/start.* | sort -un)
n_after=$(count_lines "$after_kill")
info "$n_after of $nblk writes started after the kill, none failed"
[[ $n_after -gt 0 ]] || fail "the writers finished before the inner daemon was killed"

# ENOTCONN, or ECONNABORTED for a request in flight when the server died.
if ! grep -F "$inner_vol" "$outer_log" |
    grep -qE "Transport endpoint is not connected|Software caused connection abort"; then
    _show_log "$outer_log"
    fail "the daemon log does not report ENOTCONN or ECONNABORTED on $inner_vol"
fi
assert_status "$omnt" \
    '.state == "degraded" and .raid_disks == 2 and .active == 1
     and .members[0].state == "active" and .members[1].state == "faulty"
     and (.members[1].read_errors + .members[1].write_errors) >= 1
     and .members[0].read_errors == 0 and .members[0].write_errors == 0' \
    "the dead member is not reported faulty"
assert_status_text "$omnt" '^volume : degraded raid1' '\[2/1\] \[U_\]' \
    "^ *1: faulty +$(re_escape "$inner_vol")( |$)" "^ *0: active +$(re_escape "$o0")( |$)"
assert_faulty_in "$o0" "$dev1" "$ev0"
[[ $(examine "$o0" "Array State") == A.* ]] || fail "$o0: Array State is not 'A.'"

info "case 2: writes while degraded keep their bits through clearing passes"
sleep 3.5 # daemon_sleep 1: three passes
dirty=$(checked_dirty_chunks "$obm")
assert_subset "$after_kill" "$dirty" "chunks written while degraded lost their bits"
outside=$(awk -v n="$nblk" '$1 >= n' <<<"$dirty")
[[ -z $outside ]] || fail "dirty bits for chunks no one wrote: $(tr '\n' ' ' <<<"$outside")"
assert_status "$omnt" ".bitmap.dirty == $(count_lines "$dirty")" "status: bitmap.dirty"
info "dirty chunks after 3 passes: $(count_lines "$dirty") of $no"

info "case 2: nothing lost"
cmp -n "$vo" "$o0" "$work/src" || fail "$o0 does not hold the data written"
assert_volume_is "$omnt/volume" "case 2" "$work/src"

MDFUSE_PID=$outer_pid stop_mdfuse
teardown_mdfuse_pid "$inner_pid"
dirty2=$(checked_dirty_chunks "$obm")
assert_subset "$dirty" "$dirty2" "a clean unmount with a faulty member cleared bits"
ndirty=$(count_lines "$dirty2")

info "case 2: the member comes back: the mount copies only the dirty chunks"
start_inner
start_mdfuse -o "bitmap=$obm" "$o0:$inner_vol" "$omnt"
outer_pid=$MDFUSE_PID
read -r x y <<<"$(resync_counts "$MDFUSE_LOG")"
info "mount recovery copied $x of $y chunks ($ndirty dirty)"
[[ $x -eq $ndirty && $y -eq $no ]] || fail "mount recovery copied $x of $y chunks, expected $ndirty of $no"
[[ $x -lt $y ]] || fail "mount recovery copied every chunk: the bitmap was not used"
assert_status "$omnt" '.state == "active" and .active == 2' "outer array not active after recovery"
assert_members_identical "$vo" "$co" "$o0" "$inner_vol"

# The array of case 2 stays mounted, for case 6.

# ===========================================================================
# Cases 3-5: plain member files.
# ===========================================================================
v=$((256 * 1024 * 1024))
c=$((1024 * 1024))
nc=$((v / c))
mbm=$bm/main.bitmap
m0=$d/m0.img
m1=$d/m1.img
model=$work/model
"$MDFUSECTL" create --daemon-sleep 1 --chunk 1M --size 256M --bitmap "$mbm" "$m0" "$m1" >/dev/null
start_mdfuse -o "bitmap=$mbm" "$m0:$m1" "$mnt"
main_log=$MDFUSE_LOG
head -c "$v" /dev/urandom >"$model"
dd if="$model" of="$mnt/volume" bs=1M conv=notrunc,fsync status=none || fail "filling the volume failed"
wait_status "$mnt" '.bitmap.dirty == 0' 20 "bits cleared after the fill"

# ---------------------------------------------------------------------------
info "case 3: fail, write while degraded, re-add: only the dirty chunks are copied"
ev0=$(sb_events "$m0")
"$MDFUSECTL" fail "$mnt" "$m1" >"$work/out" || fail "mdfusectl fail $m1 failed"
grep -qF "$m1: marked faulty" "$work/out" || fail "mdfusectl fail: unexpected output: $(cat "$work/out")"
cp --sparse=always "$m1" "$work/m1.stale" # for case 4
assert_faulty_in "$m0" "$(sb_dev_number "$m1")" "$ev0"
write_at "$mnt/volume" "$model" $((3 * c + 100)) 5000
write_at "$mnt/volume" "$model" $((4 * c)) "$c"
write_at "$mnt/volume" "$model" $((51 * c - 4096)) 8192
write_at "$mnt/volume" "$model" $((100 * c)) 4096
write_at "$mnt/volume" "$model" $((200 * c + c / 2)) 65536
write_at "$mnt/volume" "$model" $((v - 4096)) 4096
expected=$(lines 3 4 50 51 100 200 255)
sleep 3.5 # three clearing passes: the bits must stay
dirty=$(checked_dirty_chunks "$mbm")
[[ $(sorted "$dirty") == "$expected" ]] ||
    fail "dirty chunks while degraded: $(tr '\n' ' ' <<<"$dirty"), expected $(tr '\n' ' ' <<<"$expected")"

info "case 3: status while degraded"
assert_status "$mnt" \
    ".level == \"raid1\" and .size == $v and .state == \"degraded\" and .raid_disks == 2
     and .active == 1 and .events == $(sb_events "$m0")
     and (.members | length) == 2
     and .members[0].slot == 0 and .members[0].path == \"$m0\" and .members[0].state == \"active\"
     and .members[1].slot == 1 and .members[1].path == \"$m1\" and .members[1].state == \"faulty\"
     and (.members[1].read_errors | type) == \"number\" and (.members[1].write_errors | type) == \"number\"
     and .bitmap.path == \"$mbm\" and .bitmap.chunk_size == $c and .bitmap.chunks == $nc
     and .bitmap.dirty == 7 and .bitmap.in_use == true and .recovery == null
     and (.check | type) == \"object\" and (.last_resync | type) == \"object\"" \
    "status --json while degraded"
assert_status_text "$mnt" "^volume : degraded raid1, $v bytes" '\[2/1\] \[U_\]' \
    "^ *0: active +$(re_escape "$m0")( |$)" "^ *1: faulty +$(re_escape "$m1")( |$)" \
    "^bitmap : $(re_escape "$mbm"), 7/$nc chunks dirty"

# A byte planted in a clean chunk of the faulty member: a recovery that
# copies only the dirty chunks leaves it there.
flip_byte "$m1" $((10 * c + 777))
differ=$(differing_chunks "$v" "$c" "$m0" "$m1")
[[ $(sorted "$differ") == "$(lines 3 4 10 50 51 100 200 255)" ]] ||
    fail "the faulty member was written while faulty: chunks differing: $(tr '\n' ' ' <<<"$differ")"

"$MDFUSECTL" re-add "$mnt" "$m1" >"$work/out" || fail "mdfusectl re-add $m1 failed"
info "re-add: $(cat "$work/out")"
grep -q "recovering the chunks the bitmap marks (7 chunks)" "$work/out" ||
    fail "re-add: expected a bitmap recovery of 7 chunks: $(cat "$work/out")"
wait_status "$mnt" '.recovery == null and .members[1].state == "active" and .active == 2' 60 "re-add of $m1"
line=$(grep -F "$m1: recovered (" "$main_log" | tail -n 1)
info "log: $line"
[[ $line == *"recovered (7 of $nc chunks copied, from the bitmap)"* ]] ||
    fail "recovery log: '$line', expected 7 of $nc chunks from the bitmap"
differ=$(differing_chunks "$v" "$c" "$m0" "$m1")
[[ $(sorted "$differ") == 10 ]] ||
    fail "after the bitmap recovery the members differ in chunks '$(tr '\n' ' ' <<<"$differ")', expected only the planted 10"
flip_byte "$m1" $((10 * c + 777))
assert_members_identical "$v" "$c" "$m0" "$m1"
assert_volume_is "$mnt/volume" "case 3" "$model"
assert_status "$mnt" '.state == "active" and .active == 2' "array active after re-add"
assert_status_text "$mnt" '^volume : active raid1' '\[2/2\] \[UU\]'
wait_status "$mnt" '.bitmap.dirty == 0' 15 "bits cleared once every member is active again"

# ---------------------------------------------------------------------------
info "case 4: a stale member older than events_cleared gets a full copy"
ec=$(examine_bitmap "$mbm" "Events Cleared")
es=$(examine "$work/m1.stale" Events)
info "events_cleared $ec, stale member's events $es"
[[ $ec -gt $es ]] || fail "events_cleared ($ec) did not move past the stale member's events ($es)"
stop_mdfuse
cp --sparse=always "$work/m1.stale" "$m1"
start_mdfuse -o "bitmap=$mbm,degraded" "$m0" "$mnt"
main_log=$MDFUSE_LOG
assert_status "$mnt" '.state == "degraded" and .active == 1 and .members[0].state == "active"
    and .members[1].state != "active"' "degraded mount without $m1"
assert_status_text "$mnt" '\[2/1\] \[U_\]'
write_at "$mnt/volume" "$model" $((20 * c)) 8192

# Writes go on during the recovery: blocks of wsrc to the volume, each
# completion logged with its time.
head -c $((64 * 1024 * 1024)) /dev/urandom >"$work/wsrc"
: >"$work/wdone"
(
    i=0
    while [[ ! -e $work/wstop ]]; do
        k=$((i % 1024))
        dd if="$work/wsrc" of="$mnt/volume" bs=64K skip="$k" seek=$((k * 3)) count=1 \
            conv=notrunc oflag=direct status=none || exit 1
        echo "$k $EPOCHREALTIME" >>"$work/wdone"
        i=$((i + 1))
    done
) &
bg_pids+=("$!")
sleep 0.2
"$MDFUSECTL" re-add --no-wait "$mnt" "$m1" >"$work/out" || fail "mdfusectl re-add $m1 failed"
t_first=$EPOCHREALTIME # the recovery runs from here (at least) ...
info "re-add: $(cat "$work/out")"
grep -q "recovering everything ($nc chunks)" "$work/out" ||
    fail "re-add of a stale member: expected a full recovery of $nc chunks: $(cat "$work/out")"
t_last='' # ... to the last time status showed it running
deadline=$((SECONDS + 60))
while :; do
    js=$(status_json "$mnt")
    if jq -e '.recovery != null' >/dev/null <<<"$js"; then
        jq -e ".recovery.slot == 1 and .recovery.mode == \"full\" and .recovery.total_chunks == $nc
               and .members[1].state != \"active\"" >/dev/null <<<"$js" ||
            fail "status during the recovery: $js"
        t_last=$EPOCHREALTIME
    elif jq -e '.members[1].state == "active" and .active == 2' >/dev/null <<<"$js"; then
        break
    fi
    [[ $SECONDS -lt $deadline ]] || fail "recovery not finished in 60 s: $js"
    sleep 0.02
done
sleep 0.2
touch "$work/wstop"
wait_bg_jobs
line=$(grep -F "$m1: recovered (" "$main_log" | tail -n 1)
info "log: $line"
[[ $line == *"recovered ($nc of $nc chunks copied, full)"* ]] ||
    fail "recovery log: '$line', expected $nc of $nc chunks, full"
while read -r k _; do
    dd if="$work/wsrc" of="$model" bs=64K skip="$k" seek=$((k * 3)) count=1 conv=notrunc status=none
done <"$work/wdone"
if [[ -n $t_last ]]; then
    during=$(awk -v a="$t_first" -v b="$t_last" '$2 > a && $2 < b' "$work/wdone" | wc -l)
    info "recovery seen running for $(awk -v a="$t_first" -v b="$t_last" 'BEGIN { printf "%.2f", b - a }') s; $during writes completed meanwhile, $(wc -l <"$work/wdone") in all"
    if awk -v a="$t_first" -v b="$t_last" 'BEGIN { exit !(b - a >= 0.2) }'; then
        [[ $during -gt 0 ]] || fail "no write completed during the recovery"
    fi
else
    info "the recovery ended before status could see it"
fi
assert_members_identical "$v" "$c" "$m0" "$m1"
assert_volume_is "$mnt/volume" "case 4" "$model"

# ---------------------------------------------------------------------------
info "case 5: check finds a one-byte corruption, repair fixes it"
flip_byte "$m1" $((77 * c + 12345))
st=0
"$MDFUSECTL" check "$mnt" >"$work/out" 2>&1 || st=$?
info "check: exit $st: $(tail -n 1 "$work/out")"
[[ $st -eq 2 ]] || fail "check with one mismatched chunk exited $st, expected 2"
grep -q "check finished: 1 mismatched chunk" "$work/out" || fail "check output: $(cat "$work/out")"
assert_status "$mnt" ".check.finished == true and .check.running == false and .check.repair == false
    and .check.mismatches == 1 and .check.done_bytes == $v and .check.total_bytes == $v" "status after check"
grep -qE "chunk 77 \(bytes $((77 * c))\.\.$((78 * c - 1))\) differs" "$main_log" ||
    { _show_log "$main_log"; fail "the log does not name chunk 77 as mismatched"; }
[[ $(differing_chunks "$v" "$c" "$m0" "$m1") == 77 ]] || fail "check (without --repair) changed the members"
st=0
"$MDFUSECTL" check --repair "$mnt" >"$work/out" 2>&1 || st=$?
info "repair: exit $st: $(tail -n 1 "$work/out")"
[[ $st -eq 0 || $st -eq 2 ]] || fail "check --repair exited $st"
assert_status "$mnt" '.check.finished == true and .check.repair == true and .check.mismatches == 1
    and .check.repaired == 1' "status after repair"
assert_members_identical "$v" "$c" "$m0" "$m1"
assert_volume_is "$mnt/volume" "case 5" "$model"
st=0
"$MDFUSECTL" check "$mnt" >"$work/out" 2>&1 || st=$?
[[ $st -eq 0 ]] || fail "check after repair exited $st: $(cat "$work/out")"
grep -q "check finished: 0 mismatched chunks" "$work/out" || fail "check output: $(cat "$work/out")"
stop_mdfuse

info "case 5: with three members, repair takes the majority, even against the first"
vt=$((16 * 1024 * 1024))
tbm=$bm/three.bitmap
t0=$d/t0.img t1=$d/t1.img t2=$d/t2.img
"$MDFUSECTL" create --chunk 64K --size 16M --bitmap "$tbm" "$t0" "$t1" "$t2" >/dev/null
start_mdfuse -o "bitmap=$tbm" "$t0:$t1:$t2" "$mnt"
head -c "$vt" /dev/urandom >"$work/model3"
dd if="$work/model3" of="$mnt/volume" bs=1M conv=notrunc,fsync status=none || fail "filling the volume failed"
assert_status_text "$mnt" '\[3/3\] \[UUU\]'
flip_byte "$t0" $((9 * k64 + 5))
st=0
"$MDFUSECTL" check "$mnt" >"$work/out" 2>&1 || st=$?
[[ $st -eq 2 ]] || fail "check (3 members, one corrupt byte) exited $st, expected 2"
grep -q "check finished: 1 mismatched chunk" "$work/out" || fail "check output: $(cat "$work/out")"
st=0
"$MDFUSECTL" check --repair "$mnt" >"$work/out" 2>&1 || st=$?
[[ $st -eq 0 || $st -eq 2 ]] || fail "check --repair exited $st"
assert_status "$mnt" '.check.repaired == 1' "status after the 3-member repair"
info "repair source: $(status_get "$mnt" .check.source)"
cmp -n "$vt" "$t0" "$work/model3" || fail "$t0 (the corrupt first member) was not repaired from the majority"
assert_members_identical "$vt" "$k64" "$t0" "$t1" "$t2"
assert_volume_is "$mnt/volume" "case 5 (3 members)" "$work/model3"
stop_mdfuse

# ---------------------------------------------------------------------------
# Last, because an early failure here would hide the other cases.
info "case 6: no member left: EIO, and nothing written"
"$MDFUSECTL" fail "$omnt" "$o0" >"$work/out" || fail "mdfusectl fail $o0 failed"
grep -qF "$o0: marked faulty" "$work/out" || fail "mdfusectl fail: unexpected output: $(cat "$work/out")"
expect_fail "last" "$MDFUSECTL" fail "$omnt" "$inner_vol"
assert_status "$omnt" '.active == 1 and .members[0].state == "faulty" and .members[1].state == "active"' \
    "after failing $o0"
head -c "$k64" /dev/urandom >"$work/piece"
dd if="$work/piece" of="$omnt/volume" bs=64K seek=7 conv=notrunc,fsync status=none ||
    fail "a write with one active member left failed"
snapshot_files "$work/o0.sum" "$o0"
kill_mdfuse_pid "$inner_pid"
expect_fail "Input/output error" \
    dd if="$work/piece" of="$omnt/volume" bs=64K seek=9 count=1 conv=notrunc oflag=direct status=none
expect_fail "fsync failed.*Input/output error" \
    dd if=/dev/null of="$omnt/volume" conv=notrunc,fsync status=none
expect_fail "Input/output error" \
    dd if="$omnt/volume" of=/dev/null bs=64K skip=13 count=1 iflag=direct status=none
expect_fail "Input/output error" \
    dd if="$work/piece" of="$omnt/volume" bs=64K seek=15 count=1 conv=notrunc oflag=direct status=none
assert_files_unchanged "$work/o0.sum"
status_json "$omnt" >/dev/null
teardown_mdfuse_pid "$outer_pid"
teardown_mdfuse_pid "$inner_pid"
assert_files_unchanged "$work/o0.sum"

info "PASS"
