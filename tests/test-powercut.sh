#!/usr/bin/env bash
# mdfuse survives power cuts: the real daemon, its members and its bitmap
# on faultfs (tests/faultfs.c) with volatile write caches, cut at random
# moments under a verifying writer, over and over.
#
# The member files live on one faultfs instance, the bitmap file on a
# second one (its backing directory on a small tmpfs of its own, so every
# file is on another st_dev); both keep every write since the file's last
# fsync in a volatile cache, and a `cut K` keeps each unsynced 512-byte
# sector with probability K% (seeded), tearing writes.  A cut hits both
# instances, one right after the other; the daemon is then SIGKILLed, both
# faultfs unmounted, and the backing files are "the disks after the power
# loss".  On them, before anything mounts again:
#   - invariant I: every chunk where two current members differ has its
#     bit set in the bitmap file, unless the bitmap is stale (out-of-date
#     flag, bad checksum, or events behind the members'); a member that is
#     behind (marked faulty, or carrying a recovery offset) differs from
#     the reference only in chunks its next recovery will copy; the bitmap
#     is never newer than every member (the next mount would refuse);
# then, remounted (faultfs with the cache on again, then mdfuse):
#   - the mount-time resync copies exactly the chunks predicted from the
#     files: the dirty ones with a current bitmap, all of them ("(full)")
#     with a stale one, plus what a behind member's recovery needs;
#   - the members are identical afterwards;
#   - every write fio saw complete (O_SYNC: acknowledged means durable)
#     reads back intact through the volume (fio --verify=crc32c headers,
#     its completion log, tests/fio_blocks).
#
# Which instance is cut first alternates, because each order opens its own
# window: cutting the members first leaves the bitmap writable for a
# moment while every member write and sync fails, which exposes a daemon
# that still clears (or otherwise lowers) bits after a member sync it did
# not check; cutting the bitmap first leaves the members writable while
# every bitmap write fails, which exposes a daemon that goes on writing
# members on bits that were never durable (not waiting for the bitmap
# flush, or not bumping the members' events before going on without the
# bitmap).
#
# Three parts:
#   1. POWERCUT_CYCLES (default 20) cycles of a verifying fio writer (4k,
#      O_SYNC, O_DIRECT, libaio or psync, bounded rate, a seed per cycle)
#      on one half of the volume, cut at a random moment after its first
#      write.  Its pattern alternates: dense (random writes all over the
#      half, most chunks written many times) or sparse (one write per
#      chunk, each into a chunk whose bit is clear, so each must wait for
#      its bit to be durable).  In four cycles of every eight (5-8,
#      13-16, ...) the verifying writer only writes a burst, after a
#      second, unverified writer began writing the other half slowly, one
#      write per chunk, never syncing; the cut comes 2.5-3.1 s later, when
#      the clearing passes (daemon_sleep is 1 s) have cleared that
#      writer's first chunks behind it, which is only right if they
#      synced the members first.  The disks' flushes are slowed (a random
#      fsync delay of up to 3 ms on each instance) so that writes wait for
#      their sync and a cut finds something unsynced to tear; the cut may
#      also wait (up to 300 ms) until the members, or the members and the
#      bitmap, hold unsynced sectors.  The other half (written two cycles
#      ago, verified last cycle) is zeroed while nothing is mounted, so
#      that a lost write can never pass for an intact older block.
#   2. POWERCUT_RESYNC_CYCLES (default 3): a cut during the mount-time
#      resync.  Many chunks are made dirty (fio all over the volume, then
#      a SIGKILL or a cut), bytes are planted in some dirty chunks of m1 (a
#      legal state: those may differ), and mdfuse is mounted with a delay
#      on m1's writes so the resync takes seconds; both instances are cut
#      after a random number of its copy writes (in odd cycles after its
#      first checkpoint, which syncs the copies and clears their bits).
#   3. POWERCUT_READD_CYCLES (default 3): a cut during a re-add recovery.
#      fio writes, `mdfusectl fail` m1, fio writes more, m1 is re-added
#      (every third cycle replaced by `mdfusectl new-member` instead: a
#      full recovery with recovery-offset checkpoints) with a delay on its
#      writes while fio goes on writing, and both instances are cut after
#      a random number of recovered chunks.  The recovering member is not
#      current on the files; the next mount recovers it.
# POWERCUT_SEED (default: from the clock, printed) replays the random
# choices (moments, keep percentages, fio and faultfs seeds; the timing of
# the daemon is not replayed).

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires fio
requires jq
[[ -x $FAULTFS ]] || fail "faultfs binary not found: $FAULTFS (set FAULTFS)"
: "${FIO_BLOCKS:=$top_builddir/tests/fio_blocks}"
[[ -x $FIO_BLOCKS ]] || fail "$FIO_BLOCKS is missing (make check builds it)"

cycles=${POWERCUT_CYCLES:-20}
# A full resync through both faultfs instances on a loaded machine.
: "${MDFUSE_START_TIMEOUT:=60}"
resync_cycles=${POWERCUT_RESYNC_CYCLES:-3}
readd_cycles=${POWERCUT_READD_CYCLES:-3}
seed=${POWERCUT_SEED:-$(($(date +%s%N) / 1000 % 1000000))}
info "seed $seed (POWERCUT_SEED=$seed replays the random choices)"

make_tmpdir
cd "$tmpdir" || exit 1
V=$((128 * 1024 * 1024))
C=$((256 * 1024))
N=$((V / C))
HALF=$((V / 2))
# The member files in back/, seen through faultfs on m/; the bitmap in the
# tmpfs bmback/, through faultfs on bm/.  Each cycle mounts both again.
make_array --faultfs --bitmap-faultfs --size 128M --chunk 256K --daemon-sleep 1 --no-mount
faultfs_unmount m
faultfs_unmount bm
members=(m0 m1) # the member files' names (in back/ and m/), slot order

t_start=$SECONDS
total_acked=0 total_copied=0 stale_cuts=0 behind_cuts=0
pw_sum=0 pw_chunks=0 # m1's writes per copied chunk, for part 2

# ---------------------------------------------------------------------------
# The two disks.
# ---------------------------------------------------------------------------

# disks_mount MSEED BSEED: both faultfs instances, cache on.
disks_mount() {
    faultfs_mount back m "volatile,seed=$1"
    faultfs_mount bmback bm "volatile,seed=$2"
}

disks_unmount() {
    faultfs_unmount m
    faultfs_unmount bm
}

mdfuse_members() {
    local IFS=:
    printf '%s\n' "${members[*]/#/m/}"
}

mount_volume() {
    start_mdfuse -o "bitmap=$tmpdir/bm/b" "$(mdfuse_members)" mnt
}

# power_cut WHAT FIRST KEEP_MEMBERS KEEP_BITMAP: cut both instances, FIRST
# (members or bitmap) first, one right after the other.
power_cut() {
    local what=$1 first=$2 km=$3 kb=$4
    if [[ $first == members ]]; then
        faultfs_ctl m cut "$km"
        faultfs_ctl bm cut "$kb"
    else
        faultfs_ctl bm cut "$kb"
        faultfs_ctl m cut "$km"
    fi
    info "$what: power cut, $first first: members keep $km% ($(cut_note m) unsynced sectors), bitmap keeps $kb% ($(cut_note bm))"
}

# cut_note MNT: "KEPT of ALL", the unsynced sectors the cut kept.
cut_note() {
    local kept lost
    kept=$(faultfs_stat "$1" cut_kept_sectors)
    lost=$(faultfs_stat "$1" cut_lost_sectors)
    printf '%s of %s\n' "$kept" $((kept + lost))
}

# random_cut WHAT FIRST: a power cut with random keep percentages.
random_cut() {
    power_cut "$1" "$2" $((RANDOM % 101)) $((RANDOM % 101))
}

# read_held: held_m and held_b, the unsynced sectors the two instances
# hold now (read without a fork: this is polled).
read_held() {
    local k v
    held_m=0 held_b=0
    while read -r k v; do
        if [[ $k == held_sectors ]]; then held_m=$v; fi
    done <"$tmpdir/m/.faultfs"
    while read -r k v; do
        if [[ $k == held_sectors ]]; then held_b=$v; fi
    done <"$tmpdir/bm/.faultfs"
}

# wait_unsynced TRIGGER: for a cut that tears something.  TRIGGER now:
# return at once; members: until the members hold unsynced sectors;
# both: until the members and the bitmap both do (a write landing on the
# members while a bit is not durable yet looks like that).  At most
# 300 ms.  Sets trigger_note.
wait_unsynced() {
    local t0=${EPOCHREALTIME//[!0-9]/} i
    for ((i = 0; ; i++)); do
        read_held
        case $1 in
        now) break ;;
        members) if [[ $held_m -gt 0 ]]; then break; fi ;;
        both) if [[ $held_m -gt 0 && $held_b -gt 0 ]]; then break; fi ;;
        esac
        if ((${EPOCHREALTIME//[!0-9]/} - t0 > 300000)); then
            break
        fi
    done
    trigger_note="trigger $1: $i polls, members hold $held_m and bitmap $held_b unsynced sectors"
}

# zero_range OFFSET LENGTH: zeros in both members' backing files (nothing
# mounted, members identical there): no older fio block can pass for a
# lost write.
zero_range() {
    local m
    for m in "${members[@]}"; do
        fallocate --punch-hole --offset "$1" --length "$2" "back/$m" 2>/dev/null ||
            dd if=/dev/zero of="back/$m" bs=1M seek=$(($1 / 1048576)) \
                count=$(($2 / 1048576)) conv=notrunc status=none ||
            fail "cannot zero back/$m"
    done
}

# ---------------------------------------------------------------------------
# The disks after the power loss: invariant I and the resync it implies.
# ---------------------------------------------------------------------------

# chunks_that_differ V C FILE1 FILE2: differing_chunks (functions.sh) at a
# cost that grows with the number of differing chunks, not of differing
# bytes: a chunk copied over random data differs in every byte, and
# cmp -l lists each (300 such chunks take it 16 s).  One cmp per chunk
# found, from the start of the next.  Checked against differing_chunks
# when few chunks differ.
chunks_that_differ() {
    local v=$1 c=$2 pos=0 out st k found=
    while ((pos < v)); do
        st=0
        LC_ALL=C cmp -i "$pos" -n $((v - pos)) -- "$3" "$4" >"$tmpdir/cmp.out" 2>&1 || st=$?
        [[ $st -ne 0 ]] || break
        out=$(<"$tmpdir/cmp.out")
        [[ $st -eq 1 && $out =~ differ:\ (byte|char)\ ([0-9]+) ]] ||
            fail "cmp -i $pos $3 $4: $out"
        k=$(((pos + BASH_REMATCH[2] - 1) / c))
        found+=$k$'\n'
        pos=$(((k + 1) * c))
    done
    if [[ $(count_lines "$found") -le 8 &&
        $(differing_chunks "$v" "$c" "$3" "$4") != "${found%$'\n'}" ]]; then
        fail "chunks_that_differ and differing_chunks disagree on $3 and $4"
    fi
    printf '%s' "$found"
}

# _member_state I: reads back/${members[I]} into ev[I], valid[I],
# rec[I] (recovering), recoff[I] (sectors), guided[I].
_member_state() {
    local i=$1 f=back/${members[$1]} out st=0 line
    out=$("$MDFUSECTL" examine "$f" 2>&1) || st=$?
    [[ $st -eq 0 || $st -eq 3 ]] || { printf '%s\n' "$out" >&2; fail "mdfusectl examine $f failed"; }
    valid[i]=$((st == 0))
    ev[i]=$(field Events <<<"$out") || fail "$f: no Events"
    rec[i]=0 recoff[i]=0 guided[i]=0
    if line=$(field "Recovery Offset" <<<"$out"); then
        rec[i]=1
        recoff[i]=${line%% *}
        [[ $line == *"guided by the bitmap"* ]] && guided[i]=1
    fi
    return 0
}

# analyze WHAT: invariant I on the backing files; sets expect_copy (the
# chunks the next mount must copy) and expect_full (its log says "(full)").
analyze() {
    local what=$1 i j n=${#members[@]} maxev=0 ref=-1 out st=0 bev bec bstate
    local stale='' dirty='' d want='' full=0 bits_usable F summary
    behind_members=
    local -a ev valid rec recoff guided current
    for ((i = 0; i < n; i++)); do
        _member_state "$i"
        [[ ${valid[i]} -eq 1 && ${ev[i]} -gt $maxev ]] && maxev=${ev[i]}
    done
    for ((i = 0; i < n; i++)); do
        current[i]=0
        [[ ${valid[i]} -eq 1 && ${ev[i]} -eq $maxev && ${rec[i]} -eq 0 ]] || continue
        current[i]=1
        for ((j = 0; j < n; j++)); do
            if [[ ${valid[j]} -eq 1 && ${ev[j]} -eq $maxev &&
                $(sb_role "back/${members[j]}" "$i") -eq 65534 ]]; then
                current[i]=0
            fi
        done
        [[ ${current[i]} -eq 1 && $ref -lt 0 ]] && ref=$i
    done
    [[ $ref -ge 0 ]] ||
        fail "$what: no member is current after the power cut (events: ${ev[*]}," \
            "recovering: ${rec[*]}): the next mount would refuse"

    out=$("$MDFUSECTL" examine-bitmap bmback/b 2>&1) || st=$?
    [[ $st -eq 0 || $st -eq 3 ]] || { printf '%s\n' "$out" >&2; fail "$what: mdfusectl examine-bitmap failed"; }
    bev=$(field Events <<<"$out") || fail "$what: bitmap: no Events"
    bec=$(field "Events Cleared" <<<"$out") || fail "$what: bitmap: no Events Cleared"
    bstate=$(field State <<<"$out") || fail "$what: bitmap: no State"
    if [[ $st -eq 3 ]]; then
        stale="bad header checksum"
    else
        [[ $bev -le $maxev ]] ||
            fail "$what: bitmap events $bev are newer than every member's ($maxev): the next mount would refuse"
        if [[ $bstate != OK ]]; then
            stale="state $bstate"
        elif [[ $bev -lt $maxev ]]; then
            stale="events $bev < members' $maxev"
        fi
    fi
    if [[ -z $stale ]]; then
        dirty=$(checked_dirty_chunks bmback/b)
    fi

    summary="events ${ev[*]}, bitmap $bev/$bec${stale:+ (stale: $stale)}, $(count_lines "$dirty") dirty"
    for ((i = 0; i < n; i++)); do
        [[ $i -ne $ref ]] || continue
        d=$(chunks_that_differ "$V" "$C" "back/${members[ref]}" "back/${members[i]}")
        summary+=", ${members[i]}: $(count_lines "$d") differing"
        if [[ -n $stale ]]; then
            want=$(seq 0 $((N - 1)))
            full=1
            if [[ ${current[i]} -eq 1 ]]; then
                summary+=" (${members[i]} current)"
            else
                summary+=" (${members[i]} behind)"
                behind_members+=" ${members[i]}"
                behind_cuts=$((behind_cuts + 1))
            fi
            continue
        fi
        if [[ ${current[i]} -eq 1 ]]; then
            assert_subset "$d" "$dirty" \
                "$what: invariant I: chunks where current ${members[ref]} and ${members[i]} differ without their bit"
            want+=$'\n'$dirty
            continue
        fi
        behind_cuts=$((behind_cuts + 1))
        behind_members+=" ${members[i]}"
        bits_usable=$((valid[i] == 1 && ev[i] >= bec))
        if [[ $bits_usable -eq 1 && (${rec[i]} -eq 0 || ${guided[i]} -eq 1) ]]; then
            assert_subset "$d" "$dirty" \
                "$what: ${members[i]} is behind (recovered from the bitmap) but differs from ${members[ref]} in chunks without their bit"
            want+=$'\n'$dirty
            summary+=" (${members[i]} behind, from the bitmap)"
        elif [[ $bits_usable -eq 1 ]]; then
            F=$((recoff[i] * 512 / C))
            assert_subset "$(awk -v f="$F" '$1 < f' <<<"$d")" "$dirty" \
                "$what: ${members[i]} is behind (recovery offset chunk $F) but differs from ${members[ref]} below it in chunks without their bit"
            want+=$'\n'$dirty$'\n'$(seq "$F" $((N - 1)))
            full=1
            summary+=" (${members[i]} behind, full from chunk $F)"
        else
            want=$(seq 0 $((N - 1)))
            full=1
            summary+=" (${members[i]} behind, full)"
        fi
    done
    [[ -z $stale ]] || stale_cuts=$((stale_cuts + 1))
    expect_copy=$(sed "/^$/d" <<<"$want" | sort -un | wc -l)
    expect_full=$full
    info "$what: after the cut: $summary; the next mount must copy $expect_copy chunks"
}

# check_resync WHAT: the mount that just happened copied what analyze
# predicted, and left the members identical.
check_resync() {
    local what=$1 copied line
    read -r copied _ < <(resync_counts "$MDFUSE_LOG")
    line=$(grep 'resync: copied' "$MDFUSE_LOG" | tail -n 1)
    if [[ $copied -ne $expect_copy ]]; then
        _show_log "$MDFUSE_LOG"
        fail "$what: the resync copied $copied chunks, the files called for $expect_copy"
    fi
    if [[ $expect_full -eq 1 && $line != *"(full)"* ]] ||
        [[ $expect_full -eq 0 && $line == *"(full)"* ]]; then
        _show_log "$MDFUSE_LOG"
        fail "$what: expected a $([[ $expect_full -eq 1 ]] || echo "non-")full resync: $line"
    fi
    assert_members_identical "$V" "$C" "${members[@]/#/back/}"
    total_copied=$((total_copied + copied))
    resync_copied=$copied
}

# verify_acked WHAT LOG...: every write in fio's completion logs reads back
# intact through the volume.
verify_acked() {
    local what=$1 n
    shift
    n=$(cat "$@" | wc -l)
    awk -F, '{ print $5 + 0 }' "$@" |
        "$FIO_BLOCKS" "$tmpdir/mnt/volume" 4096 >"$tmpdir/verify.log" 2>&1 ||
        { head -n 20 "$tmpdir/verify.log" >&2; fail "$what: writes fio saw complete are lost or corrupt"; }
    total_acked=$((total_acked + n))
    info "$what: all $n writes fio saw complete are intact"
}

# ---------------------------------------------------------------------------
# The writer.
# ---------------------------------------------------------------------------

# start_fio NAME OFFSET SIZE ENGINE SEED [FIO_OPTION...]: fio in the
# background, every write O_SYNC and O_DIRECT, 4k, stamped for
# verification, its completions logged in $tmpdir/NAME_clat.1.log (one
# pass over the region at most: no block is written twice, so a write
# torn by the cut never overwrites an acknowledged one).  fio takes the
# seed only with randrepeat=0 (else every run writes the same offsets).
# Sets fio_pid.
start_fio() {
    local name=$1 off=$2 size=$3 engine=$4 fseed=$5
    shift 5
    rm -f "$tmpdir/${name}"_*.log
    (cd "$tmpdir" && exec fio --name="$name" --filename="$tmpdir/mnt/volume" \
        --offset="$off" --size="$size" --rw=randwrite --bs=4k \
        --ioengine="$engine" --iodepth=16 --direct=1 --sync=1 \
        --verify=crc32c --do_verify=0 --randrepeat=0 --randseed="$fseed" \
        --write_lat_log="$tmpdir/$name" --log_offset=1 "$@" \
        >"$tmpdir/$name.out" 2>&1) &
    fio_pid=$!
}


# fio_done NAME: fio ran to its end without error.
fio_done() {
    local status=0
    wait "$fio_pid" || status=$?
    [[ $status -eq 0 ]] || { cat "$tmpdir/$1.out" >&2; fail "fio $1 failed (status $status)"; }
    [[ -s $tmpdir/${1}_clat.1.log ]] || fail "fio $1 logged no completed write"
}

# pwrites FILE: the writes faultfs has seen to FILE on the members'
# instance since it was mounted (0 before the first).
pwrites() {
    awk -v k="pwrite:$1" '$1 == k { print $2; found = 1 } END { if (!found) print 0 }' \
        "$tmpdir/m/.faultfs" || fail "cannot read m/.faultfs"
}

# wait_pwrites FILE N WHAT: until faultfs has seen N writes to FILE on
# the members' instance.
wait_pwrites() {
    local deadline=$((SECONDS + 30))
    while [[ $(pwrites "$1") -lt $2 ]]; do
        [[ $SECONDS -lt $deadline ]] ||
            fail "$3: $1 got $(pwrites "$1") writes within 30 s, waiting for $2"
        sleep 0.02
    done
}

# ---------------------------------------------------------------------------
# 1. Power cuts under fio.
# ---------------------------------------------------------------------------

prev_log=
for ((cycle = 1; cycle <= cycles; cycle++)); do
    RANDOM=$((seed * 1000 + cycle))
    disks_mount $((RANDOM + 1)) $((RANDOM + 1))
    mount_volume
    if [[ -n $prev_log ]]; then
        check_resync "cycle $((cycle - 1))"
        pw=$(pwrites m1)
        if [[ $resync_copied -ge 8 ]]; then
            pw_sum=$((pw_sum + pw)) pw_chunks=$((pw_chunks + resync_copied))
        fi
        verify_acked "cycle $((cycle - 1))" "$prev_log"
    fi

    region=$((cycle % 2))
    first=members
    [[ $((cycle % 2)) -eq 0 ]] && first=bitmap
    engine=libaio
    [[ $((cycle % 3)) -eq 0 ]] && engine=psync
    fseed=$((RANDOM * 32768 + RANDOM))
    # Slow disk flushes: the writes wait longer for their fdatasync, so a
    # cut finds unsynced sectors (bits being set, data in flight) to tear.
    msync_us=$((RANDOM % 3001))
    if [[ $((((cycle - 1) / 2) % 2)) -eq 0 ]]; then
        # Dense: random writes all over the half, most chunks written
        # many times.
        pattern=dense
        cut_ms=$((RANDOM % 2001)) bsync_us=$((RANDOM % 2001))
        fio_args=(cut $((region * HALF)) "$HALF" "$engine" "$fseed" --rate_iops=2000)
    else
        # Sparse: one write per chunk, each one into a chunk whose bit is
        # clear, so each must wait for its bit to be durable.
        pattern=sparse
        cut_ms=$((RANDOM % 801)) bsync_us=$((1000 + RANDOM % 2001))
        at=$((RANDOM % (C / 4096) * 4096))
        fio_args=(cut $((region * HALF + at)) $((HALF - at)) "$engine" "$fseed"
            --rw=write:$((C / 1024 - 4))k --io_size=$((HALF * 4 / C))k --rate_iops=400)
    fi
    faultfs_ctl m delay '*' fsync "$msync_us"
    faultfs_ctl bm delay '*' fsync "$bsync_us"
    noise=
    w0=$(pwrites m0)
    if [[ $((((cycle - 1) / 4) % 2)) -eq 1 ]]; then
        # A second writer first, not verified, on the other half: one
        # write per chunk, not synced, slowly, for 3.2 s.  The verified
        # writer only writes a burst: after it, nothing syncs the members
        # but the clearing passes (every second), which clear the second
        # writer's chunks once they have been idle for a whole pass; the
        # cut comes then.
        at=$((RANDOM % (C / 4096) * 4096))
        (cd "$tmpdir" && exec fio --name=noise --filename="$tmpdir/mnt/volume" \
            --offset=$(((1 - region) * HALF + at)) --size=$((HALF - at)) \
            --io_size=$((HALF * 4 / C))k --rw=write:$((C / 1024 - 4))k --bs=4k \
            --ioengine=psync --direct=1 --rate_iops=80 \
            >"$tmpdir/noise.out" 2>&1) &
        noise=$!
        wait_pwrites m0 $((w0 + 1)) "cycle $cycle"
        fio_args+=(--io_size=256k)
        cut_ms=$((2500 + RANDOM % 601))
        pattern+=" burst (after an unsynced writer)"
    fi
    start_fio "${fio_args[@]}"
    writer=$fio_pid
    wait_pwrites m0 $((w0 + 1)) "cycle $cycle"
    triggers=(now members both)
    trigger=${triggers[RANDOM % 3]}
    sleep "$((cut_ms / 1000)).$(printf '%03d' $((cut_ms % 1000)))"
    wait_unsynced "$trigger"
    info "cycle $cycle/$cycles: fio $pattern $engine seed $fseed on half $region, fsync delays $msync_us us (members) and $bsync_us us (bitmap), cut ${cut_ms} ms after the first write ($trigger_note)"
    random_cut "cycle $cycle" "$first"
    kill_mdfuse stop_fio "$writer" $noise
    disks_unmount
    [[ -f $tmpdir/cut_clat.1.log ]] ||
        { cat "$tmpdir/cut.out" >&2; fail "cycle $cycle: fio wrote no completion log"; }
    mv "$tmpdir/cut_clat.1.log" "$tmpdir/acked.log"
    prev_log=$tmpdir/acked.log

    analyze "cycle $cycle"
    # The other half: verified above, written again next cycle.
    zero_range $(((1 - region) * HALF)) "$HALF"
done

if [[ -n $prev_log ]]; then
    disks_mount 1 2
    mount_volume
    check_resync "cycle $cycles"
    verify_acked "cycle $cycles" "$prev_log"
    stop_mdfuse
    disks_unmount
    [[ -z $(checked_dirty_chunks bmback/b) ]] || fail "dirty bits after a clean unmount"
    assert_members_identical "$V" "$C" "${members[@]/#/back/}"
fi
t_loop=$((SECONDS - t_start))
info "part 1: $cycles power cuts under fio in ${t_loop} s"

# ---------------------------------------------------------------------------
# 2. A power cut during the mount-time resync.
# ---------------------------------------------------------------------------

# m1's writes per copied chunk (the kernel's copy_file_range fallback
# splits a chunk into pieces), measured by the resyncs above.
wpc=4
if [[ $pw_chunks -gt 0 ]]; then
    wpc=$(((pw_sum + pw_chunks / 2) / pw_chunks))
    [[ $wpc -ge 1 ]] || wpc=1
fi

bg_seq=0 mid_resync_cuts=0
# start_mdfuse_bg: mdfuse in the background, not waiting for the mount
# (which comes only after the resync).  Sets bg_pid, bg_log.
start_mdfuse_bg() {
    bg_seq=$((bg_seq + 1))
    bg_log=$tmpdir/mdfuse.bg.$bg_seq.log
    info "starting in the background: mdfuse -f -o bitmap=$tmpdir/bm/b $(mdfuse_members) mnt"
    "$MDFUSE" -f -o "bitmap=$tmpdir/bm/b" "$(mdfuse_members)" "$tmpdir/mnt" \
        </dev/null >"$bg_log" 2>&1 &
    bg_pid=$!
    cleanup_fn kill_mdfuse_bg "$bg_pid"
    bg_cleanup=$CLEANUP_ID
}

# kill_mdfuse_bg PID: SIGKILL our background daemon (it may have exited by
# itself: the cut fails its resync) and remove its mount, if it got that
# far.
kill_mdfuse_bg() {
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    unmount_if_mounted "$tmpdir/mnt"
}

for ((k = 1; k <= resync_cycles; k++)); do
    RANDOM=$((seed * 1000 + 500 + k))
    what="resync cut $k"
    zero_range 0 "$V"
    disks_mount $((RANDOM + 1)) $((RANDOM + 1))
    mount_volume
    # Dirty most of the volume: one pass of O_SYNC writes all over it.
    start_fio dirty 0 "$V" libaio $((RANDOM * 32768 + RANDOM)) --io_size=3200k
    if [[ $((k % 2)) -eq 1 ]]; then
        fio_done dirty
        kill_mdfuse
        info "$what: first crash: SIGKILL after fio completed its 800 writes"
    else
        w0=$(pwrites m0)
        wait_pwrites m0 $((w0 + 600)) "$what"
        random_cut "$what: first crash" "$([[ $((k % 4)) -eq 0 ]] && echo bitmap || echo members)"
        kill_mdfuse stop_fio "$fio_pid"
    fi
    disks_unmount
    cp "$tmpdir/dirty_clat.1.log" "$tmpdir/acked.log"
    analyze "$what (first crash)"

    # Plant bytes in m1 in up to 24 dirty chunks: they may differ, and the
    # resync must make them equal again, keeping their bits until then.
    planted=0
    if [[ $expect_full -eq 0 ]]; then
        while read -r c; do
            head -c 512 /dev/urandom |
                dd of=back/m1 bs=512 seek=$((c * C / 512 + RANDOM % (C / 512))) \
                    conv=notrunc status=none || fail "planting in chunk $c"
            planted=$((planted + 1))
        done < <(checked_dirty_chunks bmback/b | shuf --random-source=<(yes "$seed$k") | head -n 24)
    fi
    to_copy=$expect_copy

    disks_mount $((RANDOM + 1)) $((RANDOM + 1))
    delay_us=$((1500 + RANDOM % 1501))
    faultfs_ctl m delay m1 pwrite "$delay_us"
    p0=$(pwrites m1)
    # The resync syncs its copies and clears their bits every 64 MiB
    # (core/array_impl.h): odd cycles cut after the first checkpoint.
    ck=$((64 * 1024 * 1024 / C))
    if [[ $((k % 2)) -eq 1 && $to_copy -ge $((ck + 24)) ]]; then
        target_chunk=$((ck + 8 + RANDOM % (to_copy - ck - 16)))
    else
        target_chunk=$((1 + RANDOM % (to_copy * 9 / 10 + 1)))
    fi
    target=$((target_chunk * wpc))
    start_mdfuse_bg
    info "$what: $planted chunks of m1 planted; $to_copy chunks to copy (a checkpoint every $ck), $delay_us us per write of m1; cut after $target copy writes (chunk $target_chunk, at about $wpc writes per chunk)"
    deadline=$((SECONDS + 60))
    while [[ $(pwrites m1) -lt $((p0 + target)) ]]; do
        _pid_running "$bg_pid" || { _show_log "$bg_log"; fail "$what: mdfuse exited before the cut"; }
        [[ $SECONDS -lt $deadline ]] || { _show_log "$bg_log"; fail "$what: the resync did not get to write $target times within 60 s"; }
        grep -q 'resync: copied' "$bg_log" && break
        sleep 0.01
    done
    if grep -q 'resync: copied' "$bg_log"; then
        info "$what: the resync was over before the cut ($(grep 'resync: copied' "$bg_log"))"
    else
        mid_resync_cuts=$((mid_resync_cuts + 1))
    fi
    random_cut "$what: during the resync" "$([[ $((k % 2)) -eq 1 ]] && echo members || echo bitmap)"
    kill_mdfuse_bg "$bg_pid"
    cleanup_cancel "$bg_cleanup"
    disks_unmount
    analyze "$what (during the resync)"

    disks_mount $((RANDOM + 1)) $((RANDOM + 1))
    mount_volume
    check_resync "$what"
    verify_acked "$what: writes acknowledged before the first crash" "$tmpdir/acked.log"
    stop_mdfuse
    disks_unmount
done
[[ $resync_cycles -eq 0 || $mid_resync_cuts -gt 0 ]] ||
    fail "no cut landed during a resync (the pacing is off: $wpc writes per chunk assumed)"
t_resync=$((SECONDS - t_start - t_loop))
info "part 2: $resync_cycles power cuts during the resync in ${t_resync} s"

# ---------------------------------------------------------------------------
# 3. A power cut during a re-add recovery.
# ---------------------------------------------------------------------------

for ((k = 1; k <= readd_cycles; k++)); do
    RANDOM=$((seed * 1000 + 800 + k))
    what="re-add cut $k"
    zero_range 0 "$V"
    disks_mount $((RANDOM + 1)) $((RANDOM + 1))
    mount_volume
    # Three fio phases on disjoint regions (an unacknowledged write in
    # flight at the cut must not tear an acknowledged one).
    start_fio p1 0 32M libaio $((RANDOM * 32768 + RANDOM)) --io_size=1200k
    fio_done p1
    "$MDFUSECTL" fail mnt "$tmpdir/m/m1" >"$tmpdir/fail.out" ||
        fail "$what: mdfusectl fail m1 failed: $(cat "$tmpdir/fail.out")"
    start_fio p2 32M 32M libaio $((RANDOM * 32768 + RANDOM)) --io_size=1200k
    fio_done p2
    target_file=m1
    if [[ $((k % 3)) -eq 0 ]]; then
        # The disk under m1 is replaced: a new member, recovered in full.
        "$MDFUSECTL" new-member --like m/m0 --slot 1 m/m1n >/dev/null ||
            fail "$what: mdfusectl new-member failed"
        target_file=m1n
    fi
    delay_us=$((1500 + RANDOM % 1501))
    faultfs_ctl m delay "$target_file" pwrite "$delay_us"
    "$MDFUSECTL" re-add --no-wait mnt "$tmpdir/m/$target_file" >"$tmpdir/readd.out" ||
        fail "$what: mdfusectl re-add failed: $(cat "$tmpdir/readd.out")"
    members=(m0 "$target_file")
    total=$(status_get mnt '.recovery.total_chunks // 0')
    start_fio p3 64M 64M libaio $((RANDOM * 32768 + RANDOM)) --rate_iops=100 --iodepth=4
    writer=$fio_pid
    target=$((RANDOM % (total > 1 ? total - 1 : 1)))
    info "$what: $(cat "$tmpdir/readd.out"); $delay_us us per write of $target_file; cut after $target recovered chunks"
    deadline=$((SECONDS + 60))
    while :; do
        js=$(status_json mnt)
        jq -e ".recovery == null or .recovery.done_chunks >= $target" >/dev/null <<<"$js" && break
        [[ $SECONDS -lt $deadline ]] || fail "$what: the recovery did not reach $target chunks within 60 s: $js"
        sleep 0.02
    done
    recovering=1
    if ! jq -e '.recovery != null' >/dev/null <<<"$js"; then
        info "$what: the recovery was over before the cut"
        recovering=0
    fi
    random_cut "$what: during the recovery" "$([[ $((k % 2)) -eq 1 ]] && echo bitmap || echo members)"
    kill_mdfuse stop_fio "$writer"
    disks_unmount
    [[ -f $tmpdir/p3_clat.1.log ]] || { cat "$tmpdir/p3.out" >&2; fail "$what: fio p3 wrote no completion log"; }
    analyze "$what"
    # SPEC §8: a member under recovery is not a whole copy; after the
    # cut it must not pass for current.
    if [[ $recovering -eq 1 && " $behind_members " != *" $target_file "* ]]; then
        fail "$what: $target_file was cut in the middle of its recovery but the files make it current"
    fi

    disks_mount $((RANDOM + 1)) $((RANDOM + 1))
    mount_volume
    check_resync "$what"
    verify_acked "$what" "$tmpdir/p1_clat.1.log" "$tmpdir/p2_clat.1.log" "$tmpdir/p3_clat.1.log"
    stop_mdfuse
    disks_unmount
    if [[ $target_file != m1 ]]; then
        mv back/m1n back/m1
        members=(m0 m1)
    fi
done
t_readd=$((SECONDS - t_start - t_loop - t_resync))
info "part 3: $readd_cycles power cuts during a recovery in ${t_readd} s"

! findmnt -t fuse.faultfs,fuse.mdfuse -n -o TARGET | grep -qF "$tmpdir" ||
    fail "a faultfs or mdfuse mount is left"
echo "power cuts: $cycles under fio, $resync_cycles during a resync, $readd_cycles during a recovery" \
    "(seed $seed; $total_acked acknowledged writes verified; resyncs copied $total_copied chunks;" \
    "$stale_cuts left a stale bitmap, $behind_cuts a member behind) in $((SECONDS - t_start)) s"
