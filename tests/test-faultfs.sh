#!/usr/bin/env bash
# faultfs (tests/faultfs.c), the fault injector of the other tests, does
# what it is told: a fail rule fails exactly the calls it names with the
# errno it names, and nothing else; a delay slows the call; with the
# volatile cache on, reads see the latest data and a cut loses exactly the
# sectors written since the file's last fsync, keeping any subset of them
# (torn at 512 bytes), as the seed decides; after the cut, I/O fails with
# EIO.  The other tests' verdicts are only as good as this.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_root
require_fuse
requires findmnt
requires cmp
requires od
requires awk
requires dd
requires sync
requires stat
[[ -x $FAULTFS ]] || fail "faultfs binary not found: $FAULTFS (set FAULTFS)"

make_tmpdir
cd "$tmpdir" || exit 1
mkdir -p b1 b2 b3

S=$((128 * 1024)) # the cut scenarios' file: 256 sectors
NS=$((S / 512))
head -c $S /dev/urandom >A
head -c $S /dev/urandom >B
head -c $((1024 * 1024)) /dev/urandom >data

# must_eio WHAT CMD...: CMD, with the caller's redirections, fails with EIO.
must_eio() {
    local what=$1 err=$tmpdir/eio.err
    shift
    if "$@" 2>"$err"; then
        fail "$what succeeded; it should have failed with EIO"
    fi
    if ! grep -q 'Input/output error' "$err"; then
        _show_log "$err"
        fail "$what failed, but not with EIO"
    fi
}

# dd_ok ARG...: one dd, quiet, which must succeed.
dd_ok() {
    dd status=none "$@" </dev/null || fail "dd $* failed"
}

now_us() { echo $(($(date +%s%N) / 1000)); }

# ---------------------------------------------------------------------------
# Two instances at once, on different devices; a plain passthrough.
# ---------------------------------------------------------------------------

faultfs_mount b1 m1
faultfs_mount b2 m2
[[ $(findmnt -n -o FSTYPE "$tmpdir/m1") == fuse.faultfs ]] ||
    fail "m1 is not a fuse.faultfs mount"
[[ $(stat -c %d m1) != "$(stat -c %d m2)" ]] ||
    fail "two faultfs mounts share st_dev"

dd_ok if=data of=m1/f bs=64k oflag=direct conv=fdatasync
cmp -s data m1/f || fail "m1/f does not read back what was written (O_DIRECT)"
cmp -s data b1/f || fail "b1/f does not hold what was written through m1"
echo small >m2/g
[[ $(cat b2/g) == small ]] || fail "b2/g does not hold what was written through m2"
listed=$(find m1 -mindepth 1 -printf '%f ')
[[ $listed == 'f ' ]] || fail "m1 should list just its file, not: $listed"
[[ $(faultfs_stat m1 cache) == 0 && $(faultfs_stat m1 seed) == 1 ]] ||
    fail "unexpected initial state: $(tr '\n' ' ' <m1/.faultfs)"

# ---------------------------------------------------------------------------
# Fail rules.
# ---------------------------------------------------------------------------

# fail once: the next write fails and writes nothing, the one after works.
w0=$(faultfs_stat m1 pwrite:f)
faultfs_ctl m1 fail f pwrite EIO
expect_fail 'Input/output error' dd if=B of=m1/f bs=4k count=1 conv=notrunc oflag=direct
cmp -s data b1/f || fail "a failed write changed the file"
[[ $(faultfs_stat m1 pwrite:f) -eq $((w0 + 1)) ]] ||
    fail "one dd block should be one write request: pwrite:f $w0 -> $(faultfs_stat m1 pwrite:f)"
[[ $(faultfs_stat m1 injected_errors) -eq 1 && $(faultfs_stat m1 rules) -eq 0 ]] ||
    fail "after one 'once' failure: injected_errors $(faultfs_stat m1 injected_errors), rules $(faultfs_stat m1 rules)"
dd_ok if=B of=m1/f bs=4k count=1 conv=notrunc oflag=direct
cmp -s -n 4096 B b1/f || fail "the write after the failed one did not land"

# COUNT and after N: calls 4 and 5 fail, with ENOSPC; the others succeed.
faultfs_ctl m1 fail f pwrite ENOSPC 2 after 3
got=
for k in 1 2 3 4 5 6; do
    if dd if=B of=m1/f bs=512 count=1 seek=$k conv=notrunc oflag=direct status=none \
        2>"$tmpdir/dd.err"; then
        got+=ok,
    elif grep -q 'No space left on device' "$tmpdir/dd.err"; then
        got+=ENOSPC,
    else
        got+=other,
    fi
done
[[ $got == ok,ok,ok,ENOSPC,ENOSPC,ok, ]] ||
    fail "'fail f pwrite ENOSPC 2 after 3' gave $got"

# pread, and the wildcard with its precedence: a file's own rule wins.
faultfs_ctl m1 fail f pread EIO
must_eio "a read with a pread rule" dd if=m1/f of=/dev/null bs=4k count=1 iflag=direct status=none
dd_ok if=m1/f of=/dev/null bs=4k count=1 iflag=direct
faultfs_ctl m2 fail '*' pread EROFS always
faultfs_ctl m2 delay g pread 1
expect_fail 'Read-only file system' cat m2/g
expect_fail 'Read-only file system' cat m2/g
faultfs_ctl m2 fail g pread EIO once
expect_fail 'Input/output error' cat m2/g
expect_fail 'Read-only file system' cat m2/g
faultfs_ctl m2 clear '*'
[[ $(faultfs_stat m2 rules) -eq 1 ]] || fail "'clear *' did not leave g's delay rule alone"
[[ $(cat m2/g) == small ]] || fail "m2/g unreadable after clear '*'"
faultfs_ctl m2 clear
[[ $(faultfs_stat m2 rules) -eq 0 ]] || fail "'clear' left rules"
faultfs_unmount m2

# fsync: fails once, then works.  (dd conv=fdatasync follows a failed
# fdatasync with an fsync, which the 'once' rule lets through: dd still
# reports the failure.)
s0=$(faultfs_stat m1 fsync:f)
faultfs_ctl m1 fail f fsync EIO
expect_fail 'Input/output error' sync --data m1/f
sync --data m1/f || fail "sync --data after the failed one"
[[ $(faultfs_stat m1 fsync:f) -eq $((s0 + 2)) ]] ||
    fail "two fdatasyncs counted as $(($(faultfs_stat m1 fsync:f) - s0))"
faultfs_ctl m1 fail f fsync EIO
expect_fail 'Input/output error' dd if=data of=m1/f bs=64k count=1 conv=notrunc,fdatasync
dd_ok if=data of=m1/f bs=64k count=1 conv=notrunc,fdatasync

# Bad commands are refused with EINVAL and change nothing.
for cmd in 'bogus' 'fail f pwrite EBADF' 'fail f write EIO' 'fail f pwrite EIO 0' \
    'fail a/b pwrite EIO' 'fail f pwrite EIO once after' 'fail f pwrite EIO x' \
    'delay f pwrite x' 'delay f pwrite 60000001' 'cut 101' 'cut -1' 'cache maybe' \
    'seed' 'clear a b'; do
    if printf '%s\n' "$cmd" >m1/.faultfs 2>"$tmpdir/ctl.err"; then
        fail "faultfs accepted '$cmd'"
    fi
    grep -q 'Invalid argument' "$tmpdir/ctl.err" || fail "'$cmd' refused, but not with EINVAL"
done
[[ $(faultfs_stat m1 rules) -eq 0 && $(faultfs_stat m1 cut) -eq 0 ]] ||
    fail "a refused command changed the state"

# ---------------------------------------------------------------------------
# Delays.
# ---------------------------------------------------------------------------

for op in pread pwrite fsync; do
    faultfs_ctl m1 delay f $op 300000
    t0=$(now_us)
    case $op in
    pread) dd_ok if=m1/f of=/dev/null bs=4k count=1 iflag=direct ;;
    pwrite) dd_ok if=data of=m1/f bs=4k count=1 conv=notrunc oflag=direct ;;
    fsync) sync --data m1/f ;;
    esac
    t=$(($(now_us) - t0))
    [[ $t -ge 300000 ]] || fail "a $op with a 300 ms delay took $t us"
    faultfs_ctl m1 delay f $op 0
done
[[ $(faultfs_stat m1 rules) -eq 0 ]] || fail "delay 0 did not drop the delay rules"
info "fail rules, wildcard, after/count, fsync and delays: as told"
faultfs_unmount m1

# ---------------------------------------------------------------------------
# The volatile cache and the cut.
# ---------------------------------------------------------------------------

# sector_mix FILE: one letter per sector of the first S bytes of FILE: A or
# B for the file whose sector it equals, X for neither (random A and B
# differ in every sector).  Into the global mix.
sector_mix() {
    mix=$(awk -v n=$NS '
        FILENAME == ARGV[1] { da[int(($1 - 1) / 512)] = 1; next }
        { db[int(($1 - 1) / 512)] = 1 }
        END {
            for (i = 0; i < n; i++)
                printf "%s", !(i in da) ? "A" : !(i in db) ? "B" : "X"
            print ""
        }' <({ cmp -l -n $S "$1" A || [[ $? -eq 1 ]]; }) \
        <({ cmp -l -n $S "$1" B || [[ $? -eq 1 ]]; }))
}

all_of() { printf "%${NS}s" '' | tr ' ' "$1"; }

# cut_scenario KEEP SEED: a fresh file: A, fdatasynced; then B over it,
# in 4 KiB O_DIRECT writes, closed but not synced; then a cut keeping KEEP%
# of the unsynced sectors.  Checks that reads saw B and that I/O fails
# after the cut; sets mix (of the backing file, after the unmount), kept
# and lost.
cut_scenario() {
    local keep=$1 seed=$2
    rm -f b3/f
    faultfs_mount b3 m3 "seed=$seed,volatile"
    [[ $(faultfs_stat m3 cache) == 1 ]] || fail "-o volatile did not turn the cache on"
    dd_ok if=A of=m3/f bs=64k conv=fdatasync
    [[ $(faultfs_stat m3 held_sectors) -eq 0 ]] || fail "sectors held after an fdatasync"
    dd_ok if=B of=m3/f bs=4k conv=notrunc oflag=direct
    cmp -s B m3/f || fail "reads do not see the cached writes"
    [[ $(faultfs_stat m3 held_sectors:f) -eq $NS &&
        $(faultfs_stat m3 held_bytes) -eq $S &&
        $(faultfs_stat m3 held_writes) -eq $((S / 4096)) ]] ||
        fail "held after $((S / 4096)) writes of $S bytes: $(grep held m3/.faultfs | tr '\n' ' ')"

    exec 3<>m3/f
    faultfs_ctl m3 cut "$keep"
    must_eio "a read after the cut" dd of=/dev/null bs=512 count=1 status=none <&3
    must_eio "a write after the cut" dd if=A bs=512 count=1 status=none >&3
    must_eio "an open after the cut" cat m3/f
    must_eio "an fsync after the cut" sync --data m3/f
    exec 3>&-
    stat m3/f >/dev/null || fail "stat failed after the cut"
    [[ $(faultfs_stat m3 cut) == 1 && $(faultfs_stat m3 held_sectors) == 0 ]] ||
        fail "state after the cut: $(tr '\n' ' ' <m3/.faultfs)"
    kept=$(faultfs_stat m3 cut_kept_sectors)
    lost=$(faultfs_stat m3 cut_lost_sectors)
    [[ $((kept + lost)) -eq $NS ]] || fail "the cut saw $((kept + lost)) sectors, not $NS"
    faultfs_unmount m3
    [[ $(stat -c %s b3/f) -eq $S ]] || fail "the cut changed the file's size"
    sector_mix b3/f
}

cut_scenario 0 1
[[ $mix == "$(all_of A)" ]] || fail "cut 0: not A everywhere: $mix"
cut_scenario 100 1
[[ $mix == "$(all_of B)" ]] || fail "cut 100: not B everywhere: $mix"

cut_scenario 50 7
[[ $mix != *X* ]] || fail "cut 50: a sector is neither A nor B: $mix"
nb=$(tr -cd B <<<"$mix" | wc -c)
[[ $nb -eq $kept && $((NS - nb)) -eq $lost ]] ||
    fail "cut 50: $nb sectors of B, but faultfs says it kept $kept and lost $lost"
[[ $nb -gt 0 && $nb -lt $NS ]] || fail "cut 50 kept $nb of $NS sectors"
# Torn inside one 4 KiB write: some group of 8 sectors has both.
torn=$(fold -w 8 <<<"$mix" | grep -c 'AB\|BA' || true)
[[ $torn -gt 0 ]] || fail "cut 50: no 4 KiB write was torn: $mix"
info "cut 50 (seed 7): kept $kept of $NS sectors, $torn of $((NS / 8)) writes torn: $mix"
cp b3/f cut7

# The seed replays a cut; another seed makes another one.
cut_scenario 50 7
cmp -s b3/f cut7 || fail "cut 50 with seed 7 twice gave two different files"
cut_scenario 50 8
! cmp -s b3/f cut7 || fail "seeds 7 and 8 gave the same cut"

# An fsync through another descriptor covers the writes through the first;
# "cache off" makes everything durable.
rm -f b3/f
faultfs_mount b3 m3
faultfs_ctl m3 cache on
dd_ok if=A of=m3/f bs=64k conv=fdatasync
exec 3<>m3/f
dd if=B bs=4k status=none >&3 || fail "writing B through fd 3"
sync --data m3/f || fail "sync --data m3/f"
[[ $(faultfs_stat m3 held_sectors) -eq 0 ]] || fail "an fsync on another fd left sectors held"
exec 3>&-
dd_ok if=A of=m3/f bs=4k count=4 conv=notrunc oflag=direct
faultfs_ctl m3 cache off
faultfs_ctl m3 cut 0
faultfs_unmount m3
cmp -s -n 16384 A b3/f || fail "writes before 'cache off' were lost by a cut"
cmp -s -i 16384 B b3/f || fail "writes synced through another fd were lost by a cut"

# A failed fsync loses the writes it was to make durable (as a failed
# writeback does): the disk has A again, and the next fsync, which works,
# does not bring B back.
rm -f b3/f
faultfs_mount b3 m3 volatile
dd_ok if=A of=m3/f bs=64k conv=fdatasync
dd_ok if=B of=m3/f bs=4k conv=notrunc oflag=direct
faultfs_ctl m3 fail f fsync EIO
! sync --data m3/f 2>/dev/null || fail "the injected fsync error did not reach sync"
sync --data m3/f || fail "the fsync after the failed one failed"
faultfs_ctl m3 cut 100
faultfs_unmount m3
cmp -s A b3/f || fail "the writes of a failed fsync survived it"

# Sizes are durable; the part of a sector past the synced end comes back as
# zeros; a write of part of a sector restores the whole sector.
L=$((S - 300))
rm -f b3/f
faultfs_mount b3 m3 volatile
dd_ok if=A of=m3/f bs=$L count=1 conv=fdatasync
dd_ok if=B of=m3/f bs=100 count=1 seek=10 conv=notrunc
dd_ok if=B of=m3/f bs=700 count=1 seek=$((L - 100)) oflag=seek_bytes conv=notrunc
end=$((L + 600))
[[ $(stat -c %s m3/f) -eq $end ]] || fail "size after the extending write: $(stat -c %s m3/f)"
faultfs_ctl m3 cut 0
faultfs_unmount m3
[[ $(stat -c %s b3/f) -eq $end ]] || fail "the cut did not keep the size ($(stat -c %s b3/f), not $end)"
cmp -s -n $L A b3/f || fail "cut 0 did not restore A after unaligned writes"
cmp -s -i $L -n $((end - L)) b3/f /dev/zero || fail "past the synced end: not zeros after cut 0"

# Writers in parallel on several files, nothing synced: cut 0 gives back
# A everywhere (every write's old contents were captured before it landed).
rm -f b3/*
faultfs_mount b3 m3 volatile
for i in 1 2 3 4; do
    dd_ok if=A of=m3/p$i bs=64k conv=fdatasync
done
pids=()
for i in 1 2 3 4; do
    for half in 0 1; do
        dd if=B of=m3/p$i bs=512 skip=$((half * NS / 2)) seek=$((half * NS / 2)) \
            count=$((NS / 2)) conv=notrunc oflag=direct status=none &
        pids+=($!)
    done
    dd if=m3/p$i of=/dev/null bs=4k iflag=direct status=none &
    pids+=($!)
done
for p in "${pids[@]}"; do
    wait "$p" || fail "a parallel dd failed"
done
for i in 1 2 3 4; do
    cmp -s B m3/p$i || fail "m3/p$i does not read B after the parallel writes"
done
[[ $(faultfs_stat m3 held_sectors) -eq $((4 * NS)) ]] ||
    fail "held_sectors $(faultfs_stat m3 held_sectors) after the parallel writes, not $((4 * NS))"
faultfs_ctl m3 cut 0
faultfs_unmount m3
for i in 1 2 3 4; do
    cmp -s A b3/p$i || fail "b3/p$i is not A after cut 0 of parallel writes"
done

! findmnt -t fuse.faultfs -n -o TARGET | grep -qF "$tmpdir" ||
    fail "a faultfs mount is left"
info "cut: 0 keeps none, 100 all, 50 a seeded torn mix; fsync and cache off make durable"
