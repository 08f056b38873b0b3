#!/usr/bin/env bash
# FUSE over io_uring that cannot serve although the kernel allows it
# (enable_uring Y), and what each transport does then.
#
# Claims tested:
#   (a) io_uring forbidden to every process (sysctl
#       kernel.io_uring_disabled=2, as containers and hardened hosts have
#       it):
#       - transport=auto serves, through libfuse's loop: what is written
#         reads back, and both members hold it after the unmount; the log
#         has one line saying which transport serves and why (the sysctl),
#         a warning, and no error;
#       - transport=loop serves likewise;
#       - transport=ring is refused at start: exit status 1, a message
#         naming the sysctl, nothing mounted, no file changed.
#   (b) a queue's registration refused by the kernel after INIT granted
#       FUSE_OVER_IO_URING (forced with the test-only
#       MDFUSE_FAULT_RING_REGISTER of fuse/ring.c: one queue offers the
#       kernel a payload buffer below its minimum, which the kernel
#       refuses with EINVAL):
#       - transport=auto goes on serving through /dev/fuse with the
#         session loop (the kernel uses the ring only once every queue has
#         registered): data as above, one warning naming the queue, the
#         kernel's refusal and the session loop, and no error;
#       - transport=ring stops with an error: exit status 1, nothing left
#         mounted.
#
# It changes two machine-wide switches, /proc/sys/kernel/io_uring_disabled
# and /sys/module/fuse/parameters/enable_uring, and puts them back as found
# at exit, on failure too.  While io_uring_disabled is 2 no process on the
# machine can set up an io_uring: never run this test beside another one
# (make check runs them one at a time).

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

# This test chooses each daemon's transport itself (the ring pass of
# tools/test asks every daemon for the ring).
unset MDFUSE_TEST_OPTS MDFUSE_FAULT_RING_REGISTER

require_mdfuse_env

uring_sysctl=/proc/sys/kernel/io_uring_disabled
[[ -e $ring_switch ]] ||
    _skip_or_fail "$ring_switch is missing: this kernel ($(uname -r)) has no FUSE over io_uring (Linux 6.14 and later, CONFIG_FUSE_IO_URING)"
[[ -e $uring_sysctl ]] ||
    _skip_or_fail "$uring_sysctl is missing (Linux 6.6 and later)"

# _put_back FILE VALUE: a kernel switch as it was found.
_put_back() {
    printf '%s\n' "$2" >"$1" ||
        printf '%s: cannot put %s back to %s\n' "$test_name" "$1" "$2" >&2
}

uring_was=$(cat "$uring_sysctl")
ring_was=$(cat "$ring_switch")
# Registered before any daemon starts: put back after every daemon is
# stopped (the cleanups run newest first).
cleanup_fn _put_back "$uring_sysctl" "$uring_was"
cleanup_fn _ring_switch_restore "$ring_was"
printf 'Y\n' >"$ring_switch" || _skip_or_fail "cannot write Y to $ring_switch"

make_tmpdir
cd "$tmpdir" || exit 1
make_array --size 16M --no-mount
V=$ARRAY_SIZE
members=$(IFS=:; printf '%s' "${ARRAY_MEMBERS[*]}")
random_file model "$V"

# expect_transport_line WHAT PATTERN: the daemon started last logged
# exactly one line saying which transport serves (or naming one that
# would: libfuse's loop, the session loop, the ring), and that line
# matches PATTERN (grep -E); it logged no error.
expect_transport_line() {
    local what=$1 pattern=$2 said n
    said=$(grep -E "serving through|serves the volume" "$MDFUSE_LOG" || true)
    n=$(count_lines "$said")
    if [[ $n -ne 1 ]] || ! grep -qE -- "$pattern" <<<"$said"; then
        _show_log "$MDFUSE_LOG"
        fail "$what: $n lines say which transport serves; expected one, matching '$pattern'"
    fi
    if grep -F "mdfuse: error:" "$MDFUSE_LOG" >&2; then
        _show_log "$MDFUSE_LOG"
        fail "$what: an error was logged (above)"
    fi
    info "$what: $said"
}

# write_and_check WHAT OFFSET LENGTH: LENGTH bytes of model at OFFSET
# written through the volume (O_DIRECT), then the whole volume read back
# (O_DIRECT: from the daemon) must be model.
write_and_check() {
    local what=$1 off=$2 len=$3
    dd if=model of=mnt/volume bs=64K skip=$((off / 65536)) seek=$((off / 65536)) \
        count=$((len / 65536)) oflag=direct conv=notrunc,fsync status=none ||
        fail "$what: writing the volume failed"
    assert_volume_is mnt/volume "$what" model
}

# members_hold WHAT: after the unmount, both members hold model.
members_hold() {
    assert_members_identical "$V" "$ARRAY_CHUNK" "${ARRAY_MEMBERS[@]}"
    cmp -s <(head -c "$V" "${ARRAY_MEMBERS[0]}") model ||
        fail "$1: the members do not hold what was written"
}

# run_refused OUT ARG...: mdfuse -f ARG... must exit by itself (within
# 30 s) with status 1; its output goes to OUT.
run_refused() {
    local out=$1 st=0
    shift
    timeout -k 5 30 "$MDFUSE" -f "$@" </dev/null >"$out" 2>&1 || st=$?
    if [[ $st -ne 1 ]]; then
        _show_log "$out"
        unmount_if_mounted "$ARRAY_MNT"
        fail "mdfuse -f $* exited with status $st, expected 1"
    fi
}

# --- (a) io_uring forbidden to every process ---------------------------------
printf '2\n' >"$uring_sysctl" || _skip_or_fail "cannot write 2 to $uring_sysctl"
info "kernel.io_uring_disabled=2, enable_uring=Y"

mount_array -o transport=auto
expect_transport_line "auto without io_uring" \
    "warning: serving through .*io_uring_disabled is 2"
write_and_check "auto without io_uring" 0 "$V"
stop_mdfuse
members_hold "auto without io_uring"

mount_array -o transport=loop
assert_volume_is mnt/volume "loop without io_uring, after auto" model
expect_transport_line "loop without io_uring" \
    "warning: serving through .*io_uring_disabled is 2"
random_file piece $((4 << 20))
dd if=piece of=model bs=1M seek=4 conv=notrunc status=none
write_and_check "loop without io_uring" $((4 << 20)) $((4 << 20))
stop_mdfuse
members_hold "loop without io_uring"

snapshot_files sums "${ARRAY_MEMBERS[@]}" "$ARRAY_BITMAP"
run_refused refused.log -o "$ARRAY_OPTS,transport=ring" "$members" "$ARRAY_MNT"
grep -E "error: -o transport=ring: .*io_uring_disabled is 2" refused.log >/dev/null || {
    _show_log refused.log
    fail "transport=ring without io_uring: refused without saying why"
}
! is_mounted "$ARRAY_MNT" || fail "transport=ring without io_uring left $ARRAY_MNT mounted"
assert_files_unchanged sums
info "transport=ring without io_uring: $(cat refused.log)"

_put_back "$uring_sysctl" "$uring_was"

# --- (b) a queue's registration refused by the kernel --------------------------
info "kernel.io_uring_disabled=$uring_was, enable_uring=Y, MDFUSE_FAULT_RING_REGISTER=0"
export MDFUSE_FAULT_RING_REGISTER=0
mount_array -o transport=auto
grep -q "MDFUSE_FAULT_RING_REGISTER: queue 0" "$MDFUSE_LOG" ||
    fail "MDFUSE_FAULT_RING_REGISTER=0: the daemon does not say it took the fault"
assert_volume_is mnt/volume "auto with a queue refused, after loop" model
# The kernel lets requests through /dev/fuse as soon as it has refused the
# queue, maybe before the daemon has logged the refusal.
for _ in $(seq 50); do
    grep -q "cannot register with /dev/fuse" "$MDFUSE_LOG" && break
    sleep 0.1
done
expect_transport_line "auto with a queue refused" \
    "warning: FUSE io_uring queue 0: cannot register with /dev/fuse: Invalid argument; serving through the session loop"
random_file piece $((4 << 20))
dd if=piece of=model bs=1M seek=8 conv=notrunc status=none
write_and_check "auto with a queue refused" $((8 << 20)) $((4 << 20))
stop_mdfuse
if grep -q "FUSE io_uring queues: .* requests served" "$MDFUSE_LOG"; then
    fail "auto with a queue refused: the daemon says the ring served"
fi
members_hold "auto with a queue refused"

run_refused ring-refused.log -o "$ARRAY_OPTS,transport=ring" "$members" "$ARRAY_MNT"
grep -E "error: transport=ring: FUSE io_uring queue 0: cannot register with /dev/fuse: Invalid argument; stopping" \
    ring-refused.log >/dev/null || {
    _show_log ring-refused.log
    fail "transport=ring with a queue refused: no error saying so"
}
! is_mounted "$ARRAY_MNT" || fail "transport=ring with a queue refused left $ARRAY_MNT mounted"
unset MDFUSE_FAULT_RING_REGISTER

# The ring, once nothing stands in its way, serves the same data (so that
# this test cannot pass on a machine where the ring never works).
mount_array -o transport=ring
grep -q "serving through FUSE io_uring queues" "$MDFUSE_LOG" ||
    { _show_log "$MDFUSE_LOG"; fail "transport=ring does not serve with io_uring allowed"; }
assert_volume_is mnt/volume "the ring, after the fallbacks" model
stop_mdfuse

info "ok"
