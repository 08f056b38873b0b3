#!/usr/bin/env bash
# FLUSH (a close) and FSYNC return only after a member sync that began
# after their writes has completed (SPEC §4: FLUSH with data = fdatasync).
#
# Claim tested, with the members on faultfs, their fsyncs slowed to 2 s:
# program B writes through its descriptor and keeps it open; program A
# writes and closes (its FLUSH starts a member sync that covers B's write
# too); B closes while that sync runs.  B's close returns only once that
# sync is done: not at once because "a sync is already running".  (The
# kernel holds the inode lock across an FSYNC, so only two FLUSHes can
# overlap like this.)  The lower bound of B's close is the only timing
# asserted.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires perl

make_tmpdir
cd "$tmpdir" || exit 1
make_array --faultfs
# Every bit the test's writes need, set once and durable: no bitmap flush
# in the timed part.
dd if=/dev/zero of=mnt/volume bs=1M count=16 oflag=direct conv=notrunc,fsync status=none

faultfs_ctl m delay '*' fsync 2000000
syncs0=$(($(faultfs_stat m fsync:m0) + $(faultfs_stat m fsync:m1)))

head -c 4096 /dev/urandom >first.bin
# B: one descriptor, one write, one close (a dd writing to a shell's
# descriptor would close its own copy, which is a FLUSH of its own).
perl -e '
    use Fcntl;
    sysopen (my $fh, $ARGV[0], O_RDWR) or die "open: $!";
    open (my $in, "<", $ARGV[1]) or die "$ARGV[1]: $!";
    binmode $in;
    read ($in, my $buf, 4096) == 4096 or die "short read";
    syswrite ($fh, $buf) == 4096 or die "write: $!";
    open (my $w, ">", "b-written") and close $w;
    select (undef, undef, undef, 0.02) until -e "go";
    close ($fh) or die "close: $!";
    open ($w, ">", "b-closed") and close $w;
' mnt/volume first.bin &
b=$!
for _ in $(seq 500); do [[ -e b-written ]] && break; sleep 0.02; done
[[ -e b-written ]] || fail "program B did not write"
# A: a write and a close; its FLUSH syncs the members (2 s).
dd if=/dev/urandom of=mnt/volume bs=4k count=1 seek=1000 oflag=direct \
    conv=notrunc status=none &
a=$!
for _ in $(seq 250); do
    [[ $(($(faultfs_stat m fsync:m0) + $(faultfs_stat m fsync:m1))) -gt $syncs0 ]] && break
    sleep 0.02
done
[[ $(($(faultfs_stat m fsync:m0) + $(faultfs_stat m fsync:m1))) -gt $syncs0 ]] ||
    fail "program A's close never synced the members"
t0=$(date +%s%N)
touch go
for _ in $(seq 500); do [[ -e b-closed ]] && break; sleep 0.01; done
t1=$(date +%s%N)
wait "$b" || fail "program B failed"
wait "$a" || fail "program A's write and close failed"
ms=$(((t1 - t0) / 1000000))
info "B's close returned after $ms ms (member syncs take 2000 ms)"
[[ $ms -ge 1000 ]] ||
    fail "B's close returned after $ms ms, before the member sync covering its write ended"
faultfs_ctl m clear
stop_mdfuse
cmp -s -n 4096 first.bin back/m0 || fail "m0 does not hold the first program's write"
cmp -s -n 4096 first.bin back/m1 || fail "m1 does not hold the first program's write"
