# shellcheck shell=bash
# mdfuse: functions shared by the shell tests (and tools/demo).
#
# Source it first thing:
#     . "$(dirname "${BASH_SOURCE[0]}")/functions.sh"
#
# It sets `set -euo pipefail` and installs ONE exit trap that runs every
# cleanup registered with cleanup_fn, newest first, whatever the exit status.
# The helpers below register their own undo (umount, losetup -d, killing the
# daemon they started, by pid), so a failing test leaves nothing mounted or
# attached.
#
# Helpers that register a cleanup must not run in a subshell (no $(...)
# around them): a registration made in a subshell is lost.  They return
# their results in global variables instead (tmpdir, loop_dev, MDFUSE_PID,
# MDFUSE_MNT, MDFUSE_LOG, the ARRAY_* of make_array).
#
# A test's array: make_array (see there) creates and mounts it, the caller
# naming only what differs (members, size, chunk, faultfs, mount options).

set -euo pipefail
shopt -s inherit_errexit

test_name=$(basename "$0" .sh)

# Results of the helpers (see above).
# shellcheck disable=SC2034
{
    tmpdir=
    loop_dev=
    MDFUSE_PID=
    MDFUSE_MNT=
    MDFUSE_LOG=
}

# ---------------------------------------------------------------------------
# Binaries under test.
# ---------------------------------------------------------------------------

_functions_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${top_srcdir:=$(cd "$_functions_dir/.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
top_builddir=$(cd "$top_builddir" && pwd)
: "${MDFUSE:=$top_builddir/fuse/mdfuse}"
: "${MDFUSECTL:=$top_builddir/tools/mdfusectl}"

# A relative path to a binary would break as soon as a helper changes
# directory; a bare name is looked up on PATH and left alone.
_abspath() {
    case $1 in
    /*) printf '%s\n' "$1" ;;
    */*) printf '%s/%s\n' "$PWD" "$1" ;;
    *) printf '%s\n' "$1" ;;
    esac
}
MDFUSE=$(_abspath "$MDFUSE")
MDFUSECTL=$(_abspath "$MDFUSECTL")

# ---------------------------------------------------------------------------
# Messages.
# ---------------------------------------------------------------------------

info() { printf '%s: %s\n' "$test_name" "$*" >&2; }

# fail MSG: report and exit 1.  While the cleanup hooks run it only reports
# (and returns 1), so that one failed undo does not skip the others.
fail() {
    printf '%s: FAIL: %s\n' "$test_name" "$*" >&2
    if [[ -n ${_in_cleanup:-} ]]; then
        return 1
    fi
    exit 1
}

# ---------------------------------------------------------------------------
# Cleanup stack.
# ---------------------------------------------------------------------------

_cleanup_hooks=()

# cleanup_fn CMD [ARG...]: run CMD ARG... at exit.  Sets CLEANUP_ID, which
# cleanup_cancel takes to drop the hook once its work is done by hand.
cleanup_fn() {
    _cleanup_hooks+=("$(printf '%q ' "$@")")
    CLEANUP_ID=$((${#_cleanup_hooks[@]} - 1))
}

cleanup_cancel() {
    _cleanup_hooks[$1]=""
}

_run_cleanup_hooks() {
    local status=$? i
    trap - EXIT
    trap '' INT TERM HUP
    set +e
    _in_cleanup=1
    for ((i = ${#_cleanup_hooks[@]} - 1; i >= 0; i--)); do
        if [[ -n ${_cleanup_hooks[i]} ]]; then
            eval "${_cleanup_hooks[i]}"
        fi
    done
    if [[ $status -ne 0 && $status -ne 77 ]]; then
        printf '%s: exit status %d\n' "$test_name" "$status" >&2
    fi
    exit "$status"
}

trap _run_cleanup_hooks EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# Requirements.  A missing tool skips (77) on a developer's machine; under CI
# it fails, so that CI never passes by skipping.
# ---------------------------------------------------------------------------

_in_ci() {
    case ${CI:-} in
    '' | false | 0) return 1 ;;
    *) return 0 ;;
    esac
}

_skip_or_fail() {
    if _in_ci; then
        printf '%s: FAIL: %s (CI=%s: a missing requirement is a failure)\n' \
            "$test_name" "$1" "$CI" >&2
        exit 1
    fi
    printf '%s: SKIP: %s\n' "$test_name" "$1" >&2
    exit 77
}

# requires CMD: CMD must be on PATH.
# requires CMD ARG...: running CMD ARG... must succeed.
requires() {
    if [[ $# -eq 1 ]]; then
        command -v "$1" >/dev/null 2>&1 ||
            _skip_or_fail "required command '$1' not found"
    else
        "$@" </dev/null >/dev/null 2>&1 ||
            _skip_or_fail "required command '$*' failed"
    fi
}

# require_kernel MAJOR MINOR WHAT: the running kernel is MAJOR.MINOR or
# later (WHAT: the feature that needs it, for the message).
require_kernel() {
    local rel major minor
    rel=$(uname -r)
    major=${rel%%.*}
    minor=${rel#*.}
    minor=${minor%%[!0-9]*}
    if [[ ! $major =~ ^[0-9]+$ || ! $minor =~ ^[0-9]+$ ]] ||
        ((major < $1 || (major == $1 && minor < $2))); then
        _skip_or_fail "$3 needs Linux $1.$2 or later (this is $rel)"
    fi
}

require_root() {
    [[ $(id -u) -eq 0 ]] || _skip_or_fail "this test must run as root"
}

require_fuse() {
    [[ -c /dev/fuse ]] || _skip_or_fail "/dev/fuse is missing"
    requires fusermount3
}

# The binaries under test are never skipped for: if they are missing the
# build is broken.
require_binaries() {
    [[ -x $MDFUSE ]] || command -v "$MDFUSE" >/dev/null 2>&1 ||
        fail "mdfuse binary not found: $MDFUSE (set MDFUSE)"
    [[ -x $MDFUSECTL ]] || command -v "$MDFUSECTL" >/dev/null 2>&1 ||
        fail "mdfusectl binary not found: $MDFUSECTL (set MDFUSECTL)"
}

# FUSE over io_uring (mdfuse -o transport=ring, fuse/ring.c): the kernel
# allows it only while root has written Y to this switch.
ring_switch=/sys/module/fuse/parameters/enable_uring

# True when MDFUSE_TEST_OPTS asks every daemon for the ring.
ring_wanted() {
    [[ ,${MDFUSE_TEST_OPTS:-}, == *,transport=ring,* ]]
}

_ring_switch_restore() {
    printf '%s\n' "$1" >"$ring_switch" ||
        printf '%s: cannot put %s back to %s\n' "$test_name" "$ring_switch" "$1" >&2
}

# require_ring: turn the kernel's switch on for this test and put it back
# as it was at exit.  The ring asked for and not to be had is a failure,
# never a skip: a test that says it ran on the ring must have.
require_ring() {
    local was
    [[ -e $ring_switch ]] ||
        fail "transport=ring: $ring_switch is missing: this kernel ($(uname -r)) has no FUSE over io_uring (Linux 6.14 and later, CONFIG_FUSE_IO_URING)"
    was=$(cat "$ring_switch") || fail "transport=ring: cannot read $ring_switch"
    if [[ $was != Y ]]; then
        printf 'Y\n' >"$ring_switch" || fail "transport=ring: cannot write Y to $ring_switch"
        cleanup_fn _ring_switch_restore "$was"
    fi
}

# The common requirements of the FUSE tests.
require_mdfuse_env() {
    require_root
    require_fuse
    if ring_wanted; then
        require_ring
    fi
    requires findmnt
    requires losetup
    requires mountpoint
    requires cmp
    requires od
    requires awk
    requires sha256sum
    requires timeout
    require_binaries
}

# ---------------------------------------------------------------------------
# Temporary directory.
# ---------------------------------------------------------------------------

# make_tmpdir: sets tmpdir (absolute, canonical).  Removed at exit without
# crossing into anything still mounted below it.
make_tmpdir() {
    tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/mdfuse-$test_name.XXXXXX")
    tmpdir=$(realpath "$tmpdir")
    cleanup_fn rm -rf --one-file-system "$tmpdir"
}

# ---------------------------------------------------------------------------
# Mounts.  They are looked up in /proc/self/mountinfo, never by stat(): a
# dead FUSE mount answers stat() with ENOTCONN.
# ---------------------------------------------------------------------------

# is_mounted DIR: DIR (canonical path) is a mount point.
is_mounted() {
    awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' \
        /proc/self/mountinfo
}

# mount_fstype DIR: prints the type of the topmost mount on DIR.
mount_fstype() {
    awk -v m="$1" '
        $5 == m { for (i = 7; i <= NF; i++) if ($i == "-") { t = $(i + 1); break } }
        END { if (t == "") exit 1; print t }' /proc/self/mountinfo
}

# unmount_if_mounted DIR: unmount everything stacked on DIR, lazily when a
# plain unmount is refused.  Quiet when nothing is mounted.
unmount_if_mounted() {
    local dir=$1 n=0 type
    while is_mounted "$dir" && [[ $n -lt 8 ]]; do
        n=$((n + 1))
        type=$(mount_fstype "$dir") || type=
        case $type in
        fuse | fuse.*)
            fusermount3 -u -z "$dir" 2>/dev/null || umount -l "$dir" || true
            ;;
        *)
            umount "$dir" 2>/dev/null || umount -l "$dir" || true
            ;;
        esac
    done
}

# make_bitmap_mount DIR: a small tmpfs on DIR, so that the bitmap file is on
# another file system than the members (SPEC §3).
make_bitmap_mount() {
    local dir=$1
    mkdir -p "$dir"
    dir=$(realpath "$dir")
    mount -t tmpfs -o size=16M,mode=0700 mdfuse-test-bitmap "$dir" ||
        fail "cannot mount a tmpfs on $dir"
    cleanup_fn unmount_if_mounted "$dir"
}

declare -A _ext4_dev=()

# mount_ext4 DEV DIR [OPTIONS]
mount_ext4() {
    local dev=$1 dir=$2 opts=${3:-}
    mkdir -p "$dir"
    dir=$(realpath "$dir")
    mount -t ext4 ${opts:+-o "$opts"} "$dev" "$dir" ||
        fail "mount -t ext4 $dev $dir failed"
    _ext4_dev[$dir]=$dev
    cleanup_fn unmount_if_mounted "$dir"
}

# umount_ext4 DIR: a plain unmount, which must succeed.
umount_ext4() {
    local dir
    dir=$(realpath "$1")
    umount "$dir" || fail "umount $dir failed"
    unset '_ext4_dev[$dir]'
}

# ---------------------------------------------------------------------------
# Loop devices.
# ---------------------------------------------------------------------------

declare -A _loop_backing=() _loop_cleanup_id=()

# attach_loop FILE [VAR]: attach FILE to a free loop device; its name goes
# into VAR (default loop_dev).  Detached at exit.
# LOOP_SIZELIMIT (bytes): expose only the first part of FILE.
# LOOP_DIRECT_IO=1: the loop device reads and writes FILE with O_DIRECT
# (losetup --direct-io=on), checked.
attach_loop() {
    local file=$1 var=${2:-loop_dev} dev dio=()
    [[ ${LOOP_DIRECT_IO:-0} == 1 ]] && dio=(--direct-io=on)
    dev=$(losetup -f --show ${LOOP_SIZELIMIT:+--sizelimit "$LOOP_SIZELIMIT"} "${dio[@]}" "$file") ||
        fail "losetup -f --show ${dio[*]} $file failed"
    _loop_backing[$dev]=$file
    cleanup_fn _detach_loop_cleanup "$dev"
    _loop_cleanup_id[$dev]=$CLEANUP_ID
    if [[ ${#dio[@]} -gt 0 && $(losetup -n -O DIO "$dev" | tr -d ' ') != 1 ]]; then
        fail "losetup --direct-io=on $file: $dev is not in direct-I/O mode"
    fi
    printf -v "$var" '%s' "$dev"
}

# _loop_in_use DEV FILE: DEV still has FILE as its backing file.
_loop_in_use() {
    local back
    back=$(losetup -n -O BACK-FILE "$1" 2>/dev/null) || return 1
    back=${back%% (deleted)}
    [[ -n $back && $back == "$2" ]]
}

# detach_loop DEV: losetup -d, then wait until the kernel has let go of the
# backing file (a deferred detach completes on the last close).
detach_loop() {
    local dev=$1 file i
    file=${_loop_backing[$dev]:-}
    [[ -n $file ]] || fail "detach_loop: $dev was not attached by this test"
    losetup -d "$dev" || fail "losetup -d $dev failed"
    for ((i = 0; i < 100; i++)); do
        _loop_in_use "$dev" "$file" || break
        sleep 0.1
    done
    ! _loop_in_use "$dev" "$file" || fail "$dev still holds $file after losetup -d"
    cleanup_cancel "${_loop_cleanup_id[$dev]}"
    unset '_loop_backing[$dev]' '_loop_cleanup_id[$dev]'
}

_detach_loop_cleanup() {
    local dev=$1 file i
    file=${_loop_backing[$dev]:-}
    [[ -n $file ]] || return 0
    for ((i = 0; i < 20; i++)); do
        _loop_in_use "$dev" "$file" || break
        losetup -d "$dev" 2>/dev/null || true
        sleep 0.2
    done
    unset '_loop_backing[$dev]' '_loop_cleanup_id[$dev]'
}

# ---------------------------------------------------------------------------
# The daemon.
# ---------------------------------------------------------------------------

declare -A _mdfuse_mnt=() _mdfuse_log=() _mdfuse_reaped=()
_mdfuse_seq=0

# _pid_running PID: PID exists and is not a zombie.
_pid_running() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# _wait_pid_exit PID SECONDS
_wait_pid_exit() {
    local pid=$1 deadline=$((SECONDS + $2))
    while _pid_running "$pid"; do
        [[ $SECONDS -lt $deadline ]] || return 1
        sleep 0.1
    done
}

_show_log() {
    if [[ -s $1 ]]; then
        printf '%s: --- %s ---\n' "$test_name" "$1" >&2
        cat "$1" >&2
        printf '%s: --- end of log ---\n' "$test_name" >&2
    fi
}

# start_mdfuse ARG... MOUNTPOINT: run "$MDFUSE -f ARG... MOUNTPOINT" in the
# background, its output in a log file, and wait until MOUNTPOINT is a FUSE
# mount holding `volume`, then (unless MDFUSE_NO_WAIT is set) until its
# background resync has ended.  Sets MDFUSE_PID, MDFUSE_MNT (canonical) and
# MDFUSE_LOG.  At exit the daemon (that pid only) is stopped and its mount
# removed.
start_mdfuse() {
    local mnt=${!#} log pid type deadline status
    [[ -d $mnt ]] || fail "start_mdfuse: mount point $mnt is not a directory"
    mnt=$(realpath "$mnt")
    _mdfuse_seq=$((_mdfuse_seq + 1))
    log=${tmpdir:-/tmp}/mdfuse.$_mdfuse_seq.log
    # MDFUSE_TEST_OPTS: more -o options for every daemon a test starts
    # (to run the suite with a mount option on, e.g. parallel_writes).
    if [[ -n ${MDFUSE_TEST_OPTS:-} ]]; then
        set -- -o "$MDFUSE_TEST_OPTS" "$@"
    fi
    info "starting: mdfuse -f $*"
    "$MDFUSE" -f "$@" </dev/null >"$log" 2>&1 &
    pid=$!
    _mdfuse_mnt[$pid]=$mnt
    _mdfuse_log[$pid]=$log
    cleanup_fn _mdfuse_cleanup "$pid"
    # shellcheck disable=SC2034
    MDFUSE_PID=$pid MDFUSE_MNT=$mnt MDFUSE_LOG=$log

    deadline=$((SECONDS + ${MDFUSE_START_TIMEOUT:-20}))
    while :; do
        if ! _pid_running "$pid"; then
            status=0
            wait "$pid" || status=$?
            unset '_mdfuse_mnt[$pid]' '_mdfuse_log[$pid]'
            _show_log "$log"
            fail "mdfuse exited with status $status before mounting $mnt"
        fi
        type=$(mount_fstype "$mnt") || type=
        case $type in
        fuse | fuse.*)
            if [[ -f $mnt/volume ]]; then
                break
            fi
            ;;
        esac
        if [[ $SECONDS -ge $deadline ]]; then
            _show_log "$log"
            fail "mdfuse did not mount $mnt within ${MDFUSE_START_TIMEOUT:-20} s"
        fi
        sleep 0.1
    done
    # With the ring asked for, it must be what serves (the first request,
    # the lookup of volume above, came only once every queue was ready).
    if ring_wanted && ! grep -q "serving through FUSE io_uring queues" "$log"; then
        _show_log "$log"
        fail "transport=ring asked for, but $log does not say the FUSE io_uring queues serve"
    fi
    # The volume is served at once; the resync runs in the background.
    # Unless MDFUSE_NO_WAIT is set, wait for it to end (mdfusectl wait),
    # so that a test sees the members as the resync leaves them.  wait
    # fails on a volume that is not whole (a degraded mount): that is for
    # the test to judge.
    if [[ -z ${MDFUSE_NO_WAIT:-} ]]; then
        "$MDFUSECTL" wait "$mnt" >/dev/null 2>&1 || true
    fi
}

# stop_mdfuse: clean unmount (fusermount3 -u) of the daemon started last,
# which must then exit with status 0.
stop_mdfuse() {
    local pid=$MDFUSE_PID mnt log i status=0
    mnt=${_mdfuse_mnt[$pid]:-}
    log=${_mdfuse_log[$pid]:-}
    [[ -n $mnt ]] || fail "stop_mdfuse: no running mdfuse with pid $pid"
    # A loop device detached a moment ago may still hold `volume` open
    # for a little while (deferred detach): retry on EBUSY.
    for ((i = 0; ; i++)); do
        if fusermount3 -u "$mnt"; then
            break
        fi
        if [[ $i -ge 20 ]]; then
            fail "fusermount3 -u $mnt failed"
        fi
        sleep 0.5
    done
    if ! _wait_pid_exit "$pid" "${MDFUSE_STOP_TIMEOUT:-60}"; then
        _show_log "$log"
        fail "mdfuse (pid $pid) still running ${MDFUSE_STOP_TIMEOUT:-60} s after fusermount3 -u"
    fi
    wait "$pid" || status=$?
    unset '_mdfuse_mnt[$pid]' '_mdfuse_log[$pid]'
    if [[ $status -ne 0 ]]; then
        _show_log "$log"
        fail "mdfuse exited with status $status after a clean unmount"
    fi
    ! is_mounted "$mnt" || fail "$mnt still mounted after mdfuse exited"
}

# _teardown_users MNT: undo what sits on MNT: the ext4 mounts on loop
# devices backed by MNT/*, then those loop devices.
_teardown_users() {
    local mnt=$1 dir dev
    for dir in "${!_ext4_dev[@]}"; do
        dev=${_ext4_dev[$dir]}
        if [[ ${_loop_backing[$dev]:-} == "$mnt"/* ]]; then
            umount "$dir" 2>/dev/null || umount -l "$dir" || true
            unset '_ext4_dev[$dir]'
        fi
    done
    for dev in "${!_loop_backing[@]}"; do
        if [[ ${_loop_backing[$dev]} == "$mnt"/* ]]; then
            detach_loop "$dev"
        fi
    done
}

# _teardown_over MNT: after the daemon serving MNT died, undo what sits on
# it, then the dead FUSE mount itself.
_teardown_over() {
    local mnt=$1
    _teardown_users "$mnt"
    if is_mounted "$mnt"; then
        fusermount3 -u -z "$mnt" || umount -l "$mnt" || true
    fi
    ! is_mounted "$mnt" || fail "$mnt still mounted after lazy unmount"
}

# kill_mdfuse [CMD...]: SIGKILL the daemon started last, run CMD (e.g. stop
# the writers) once it is dead, then tear down the dead mount stack.
kill_mdfuse() {
    local pid=$MDFUSE_PID mnt
    mnt=${_mdfuse_mnt[$pid]:-}
    [[ -n $mnt ]] || fail "kill_mdfuse: no running mdfuse with pid $pid"
    info "SIGKILL mdfuse (pid $pid)"
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
    _mdfuse_reaped[$pid]=1
    # The mount stays registered until it is torn down: if CMD fails (and
    # set -e ends the test), the exit hooks still find it.
    if [[ $# -gt 0 ]]; then
        "$@" || info "kill_mdfuse: '$*' failed (status $?)"
    fi
    _teardown_over "$mnt"
    unset '_mdfuse_mnt[$pid]' '_mdfuse_log[$pid]'
}

_mdfuse_cleanup() {
    local pid=$1 mnt
    mnt=${_mdfuse_mnt[$pid]:-}
    [[ -n $mnt ]] || return 0 # stopped or killed by the test already
    if [[ -z ${_mdfuse_reaped[$pid]:-} ]]; then
        # Our own child, not reaped yet: its pid cannot have been reused.
        # Its users go first: mdfuse refuses to stop while the volume is
        # open.
        _teardown_users "$mnt"
        kill -TERM "$pid" 2>/dev/null || true
        if ! _wait_pid_exit "$pid" 10; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    fi
    unset '_mdfuse_mnt[$pid]' '_mdfuse_log[$pid]'
    _teardown_over "$mnt"
}

# expect_mount_refused NEEDLE ARG... MOUNTPOINT: mdfuse must refuse to mount
# (non-zero exit, before mounting) with NEEDLE (a file name) on stderr.  A
# daemon that mounts anyway is stopped by timeout.
expect_mount_refused() {
    local needle=$1 mnt=${!#} status=0 err
    shift
    err=$tmpdir/refused.err
    info "expect refusal naming '$needle': mdfuse -f $*"
    timeout -k 5 "${MDFUSE_REFUSE_TIMEOUT:-20}" "$MDFUSE" -f "$@" \
        </dev/null >"$err" 2>&1 || status=$?
    unmount_if_mounted "$(realpath "$mnt")"
    if [[ $status -eq 0 || $status -eq 124 || $status -eq 137 ]]; then
        _show_log "$err"
        fail "mdfuse accepted: mdfuse -f $* (status $status)"
    fi
    if ! grep -qF -- "$needle" "$err"; then
        _show_log "$err"
        fail "mdfuse refused (status $status) without naming '$needle'"
    fi
    info "refused (status $status): $(head -n 3 "$err" | tr '\n' ' ')"
}

# expect_fail NEEDLE CMD...: CMD must exit non-zero with NEEDLE on stderr
# (grep -i -E pattern).
expect_fail() {
    local needle=$1 status=0 err
    shift
    err=$tmpdir/expect_fail.err
    "$@" </dev/null >/dev/null 2>"$err" || status=$?
    if [[ $status -eq 0 ]]; then
        _show_log "$err"
        fail "succeeded but should have failed: $*"
    fi
    if ! grep -qiE -- "$needle" "$err"; then
        _show_log "$err"
        fail "failed (status $status) without a message matching '$needle': $*"
    fi
    info "refused as expected (status $status): $(head -n 2 "$err" | tr '\n' ' ')"
}

# resync_counts LOG: prints "X Y" from the last line
# "resync: copied X of Y chunks" of a daemon log; fails if there is none.
resync_counts() {
    local line
    line=$(sed -n 's/.*resync: copied \([0-9][0-9]*\) of \([0-9][0-9]*\) chunks.*/\1 \2/p' "$1" | tail -n 1)
    if [[ -z $line ]]; then
        _show_log "$1"
        fail "no 'resync: copied X of Y chunks' line in $1"
    fi
    printf '%s\n' "$line"
}

# ---------------------------------------------------------------------------
# Reading the on-disk state.
# ---------------------------------------------------------------------------

# field KEY: from "Key : value" lines on stdin (mdadm and mdfusectl style,
# keys right-aligned), print the value of the first line whose key is KEY.
field() {
    awk -v k="$1" '
        {
            i = index($0, " : ")
            if (i == 0) next
            key = substr($0, 1, i - 1)
            gsub(/^[ \t]+|[ \t]+$/, "", key)
            if (key == k) { print substr($0, i + 3); found = 1; exit }
        }
        END { exit !found }'
}

# examine MEMBER KEY / examine_bitmap BITMAP KEY: one value of mdfusectl's
# report.
examine() {
    local out
    out=$("$MDFUSECTL" examine "$1") || fail "mdfusectl examine $1 failed"
    field "$2" <<<"$out" || fail "mdfusectl examine $1: no '$2' line"
}

examine_bitmap() {
    local out
    out=$("$MDFUSECTL" examine-bitmap "$1") || fail "mdfusectl examine-bitmap $1 failed"
    field "$2" <<<"$out" || fail "mdfusectl examine-bitmap $1: no '$2' line"
}

# volume_size MEMBER: V in bytes.
volume_size() { examine "$1" "Volume Size"; }

# chunk_size BITMAP: C in bytes.
chunk_size() { examine_bitmap "$1" "Chunksize"; }

# dirty_chunks BITMAP: the dirty chunk numbers, one per line, as mdfusectl
# reports them.
dirty_chunks() {
    "$MDFUSECTL" examine-bitmap --dirty "$1" ||
        fail "mdfusectl examine-bitmap --dirty $1 failed"
}

# raw_dirty_chunks BITMAP: the same, decoded here from the file itself
# (SPEC §3: chunksize u32 at 52, sync_size u64 at 40, bits from byte 256,
# LSB first), as an independent check of mdfusectl.
raw_dirty_chunks() {
    local f=$1 chunk sync_sectors nbits nbytes
    chunk=$(od -An -t u4 -j 52 -N 4 "$f" | tr -d ' \n')
    sync_sectors=$(od -An -t u8 -j 40 -N 8 "$f" | tr -d ' \n')
    [[ $chunk -gt 0 ]] || fail "$f: chunksize 0"
    nbits=$(((sync_sectors * 512 + chunk - 1) / chunk))
    nbytes=$(((nbits + 7) / 8))
    od -An -v -t u1 -j 256 -N "$nbytes" "$f" | awk -v n="$nbits" '
        BEGIN { k = 0 }
        {
            for (i = 1; i <= NF; i++) {
                b = $i
                for (j = 0; j < 8; j++) {
                    if (b % 2 == 1 && k < n) print k
                    b = int(b / 2)
                    k++
                }
            }
        }'
}

# checked_dirty_chunks BITMAP: dirty_chunks, after checking that it agrees
# with raw_dirty_chunks.
checked_dirty_chunks() {
    local a b
    a=$(dirty_chunks "$1")
    b=$(raw_dirty_chunks "$1")
    if [[ $a != "$b" ]]; then
        printf 'mdfusectl: %s\nraw: %s\n' "$(tr '\n' ' ' <<<"$a")" "$(tr '\n' ' ' <<<"$b")" >&2
        fail "$1: mdfusectl examine-bitmap --dirty disagrees with the bits in the file"
    fi
    if [[ -n $a ]]; then
        printf '%s\n' "$a"
    fi
}

# count_lines TEXT: number of non-empty lines.
count_lines() {
    if [[ -z $1 ]]; then
        echo 0
    else
        grep -c . <<<"$1"
    fi
}

# differing_chunks V C FILE1 FILE2: the chunk numbers (C bytes each) in which
# the first V bytes of the two files differ, one per line.
differing_chunks() {
    local v=$1 c=$2 a=$3 b=$4
    { cmp -l -n "$v" -- "$a" "$b" || [[ $? -eq 1 ]]; } |
        awk -v c="$c" '{ k = int(($1 - 1) / c); if (!(k in seen)) { seen[k] = 1; print k } }'
}

# assert_members_identical V C MEMBER...: the data regions (first V bytes)
# of all members are byte-identical.
assert_members_identical() {
    local v=$1 c=$2 first=$3 m d
    shift 3
    for m in "$@"; do
        d=$(differing_chunks "$v" "$c" "$first" "$m")
        if [[ -n $d ]]; then
            fail "$first and $m differ in chunks: $(tr '\n' ' ' <<<"$d")"
        fi
    done
}

# assert_subset A B WHAT: every line of A is a line of B.
assert_subset() {
    local missing
    missing=$(comm -23 <(sort -u <<<"$1" | sed '/^$/d') <(sort -u <<<"$2" | sed '/^$/d'))
    if [[ -n $missing ]]; then
        fail "$3: $(tr '\n' ' ' <<<"$missing")"
    fi
}

# sha256_of FILE
sha256_of() {
    local s
    s=$(sha256sum <"$1")
    printf '%s\n' "${s%% *}"
}

# snapshot_files OUT FILE...: record the files' sha256 in OUT;
# assert_files_unchanged OUT checks them again.
snapshot_files() {
    local out=$1
    shift
    sha256sum -- "$@" >"$out"
}

assert_files_unchanged() {
    if ! sha256sum --quiet -c "$1" >&2; then
        fail "files changed: see above"
    fi
}

# flip_byte FILE OFFSET: invert every bit of one byte, in place.
flip_byte() {
    local f=$1 off=$2 b
    b=$(od -An -t u1 -j "$off" -N 1 "$f" | tr -d ' \n')
    printf '%b' "\\0$(printf '%03o' $((b ^ 255)))" |
        dd of="$f" bs=1 seek="$off" count=1 conv=notrunc status=none
}

# random_file FILE BYTES
random_file() {
    head -c "$2" /dev/urandom >"$1"
}

# ---------------------------------------------------------------------------
# Stacked daemons: a member file inside another mdfuse's volume.
# ---------------------------------------------------------------------------

# kill_mdfuse_pid PID: SIGKILL the daemon PID (started by start_mdfuse), but
# leave its dead mount in place: a member file of another daemon may sit on
# it, and that daemon must go first.  teardown_mdfuse_pid PID removes the
# mount; so does the exit cleanup, at the place of the daemon's own cleanup
# (so a daemon started later on top of it is torn down first).
declare -A _mdfuse_dead=()
kill_mdfuse_pid() {
    local pid=$1 mnt hook i
    mnt=${_mdfuse_mnt[$pid]:-}
    [[ -n $mnt ]] || fail "kill_mdfuse_pid: no running mdfuse with pid $pid"
    info "SIGKILL mdfuse (pid $pid), leaving its mount $mnt"
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
    unset '_mdfuse_mnt[$pid]' '_mdfuse_log[$pid]'
    _mdfuse_dead[$pid]=$mnt
    hook=$(printf '%q ' _mdfuse_cleanup "$pid")
    for i in "${!_cleanup_hooks[@]}"; do
        if [[ ${_cleanup_hooks[i]} == "$hook" ]]; then
            _cleanup_hooks[i]=$(printf '%q ' teardown_mdfuse_pid "$pid")
        fi
    done
}

# teardown_mdfuse_pid PID: for a daemon killed by kill_mdfuse_pid, tear down
# its dead mount stack; for one still running, stop it (SIGTERM, SIGKILL
# after 10 s; its exit status is not checked) and tear down its mount.
teardown_mdfuse_pid() {
    local pid=$1 mnt
    mnt=${_mdfuse_dead[$pid]:-}
    if [[ -n $mnt ]]; then
        unset '_mdfuse_dead[$pid]'
        _teardown_over "$mnt"
    else
        _mdfuse_cleanup "$pid"
    fi
}

# ---------------------------------------------------------------------------
# Raw md superblock fields (SPEC §2: struct mdp_superblock_1 at sector
# (S/512 - 16) & ~7), read from the member file itself, as an independent
# check of mdfusectl examine.
# ---------------------------------------------------------------------------

# sb_offset MEMBER: byte offset of the superblock.
sb_offset() {
    local s
    s=$(stat -c %s "$1") || fail "stat $1 failed"
    echo $((((s / 512 - 16) & ~7) * 512))
}

# _sb_uint MEMBER FIELD_OFFSET BYTES: an unsigned little-endian field.
_sb_uint() {
    local off v
    off=$(sb_offset "$1")
    v=$(od -An -t "u$3" -j $((off + $2)) -N "$3" "$1" | tr -d ' \n')
    [[ -n $v ]] || fail "$1: cannot read $3 bytes at superblock offset $2"
    echo "$v"
}

# sb_events MEMBER: events (u64 at 200).
sb_events() { _sb_uint "$1" 200 8; }

# sb_dev_number MEMBER: dev_number (u32 at 160), the member's slot.
sb_dev_number() { _sb_uint "$1" 160 4; }

# sb_role MEMBER DEV: dev_roles[DEV] (u16 at 256 + 2*DEV) in MEMBER's
# superblock: DEV's slot if active, 65534 (0xfffe) if faulty.
sb_role() { _sb_uint "$1" $((256 + 2 * $2)) 2; }

# ---------------------------------------------------------------------------
# mdfusectl status --json.
# ---------------------------------------------------------------------------

# status_json MNT: the JSON status, checked to parse as one JSON object.
status_json() {
    local out
    out=$("$MDFUSECTL" status --json "$1") || fail "mdfusectl status --json $1 failed"
    jq -e 'type == "object"' >/dev/null <<<"$out" ||
        fail "mdfusectl status --json $1: not a JSON object: $out"
    printf '%s\n' "$out"
}

# status_get MNT FILTER: jq -r FILTER applied to the JSON status.
status_get() {
    local out
    out=$(status_json "$1")
    jq -r "$2" <<<"$out" || fail "jq '$2' failed on: $out"
}

# assert_status MNT JQ_EXPR WHAT: the JSON status satisfies JQ_EXPR.
assert_status() {
    local out
    out=$(status_json "$1")
    if ! jq -e "$2" >/dev/null <<<"$out"; then
        printf '%s\n' "$out" >&2
        fail "$3 (status --json does not satisfy: $2)"
    fi
}

# wait_status MNT JQ_EXPR SECONDS WHAT: poll the JSON status until it
# satisfies JQ_EXPR.
wait_status() {
    local mnt=$1 expr=$2 deadline=$((SECONDS + $3)) out
    while :; do
        out=$(status_json "$mnt")
        if jq -e "$expr" >/dev/null <<<"$out"; then
            return 0
        fi
        if [[ $SECONDS -ge $deadline ]]; then
            printf '%s\n' "$out" >&2
            fail "$4: not reached within $3 s ($expr)"
        fi
        sleep 0.1
    done
}

# ---------------------------------------------------------------------------
# Background jobs of a test (writers, readers, probes), killed by pid.
# ---------------------------------------------------------------------------

# A test appends the pid of each job it starts to bg_pids and registers
# `cleanup_fn kill_bg_jobs` (again after a start_mdfuse whose cleanup must
# run after the jobs are gone: hooks run newest first).
bg_pids=()

# kill_bg_jobs: SIGKILL and reap every job in bg_pids.
kill_bg_jobs() {
    local p
    for p in ${bg_pids[@]+"${bg_pids[@]}"}; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    bg_pids=()
}

# stop_fio PID...: wait up to 30 s for these fio runs to exit on their I/O
# errors (they must write their logs: no SIGKILL), SIGTERM them then.
stop_fio() {
    local pid i
    for pid in "$@"; do
        for ((i = 0; i < 300; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
}

# ---------------------------------------------------------------------------
# faultfs: a passthrough FUSE file system that injects faults (I/O errors,
# delays, a volatile write cache and power cuts); its commands are in the
# comment at the top of tests/faultfs.c.  Several instances may be mounted
# at once (members on one, the bitmap on another: they have different
# st_dev); their state is kept by mount point.
# ---------------------------------------------------------------------------

: "${FAULTFS:=$top_builddir/tests/faultfs}"
FAULTFS=$(_abspath "$FAULTFS")

# Results of faultfs_mount.
# shellcheck disable=SC2034
{
    FAULTFS_PID=
    FAULTFS_MNT=
    FAULTFS_LOG=
}

declare -A _faultfs_pid=() _faultfs_log=() _faultfs_cleanup_id=()
_faultfs_seq=0

# _faultfs_canon MNT: the canonical path of a mount point of this test.
_faultfs_canon() {
    local mnt
    mnt=$(realpath -m "$1")
    [[ -n ${_faultfs_pid[$mnt]:-} ]] || fail "no faultfs mounted by this test on $1"
    printf '%s\n' "$mnt"
}

# faultfs_mount BACKDIR MNT [OPTIONS]: mount faultfs (in the background,
# with -f, its output in a log file) showing BACKDIR on MNT, with
# "-o OPTIONS" if given (e.g. "seed=3,volatile"); wait until it is mounted.
# Sets FAULTFS_PID, FAULTFS_MNT (canonical) and FAULTFS_LOG.  At exit it is
# unmounted (lazily if busy) and that pid, only, is stopped.
faultfs_mount() {
    local back=$1 mnt=$2 opts=${3:-} pid log deadline status
    [[ -x $FAULTFS ]] || fail "faultfs binary not found: $FAULTFS (set FAULTFS)"
    [[ -d $back ]] || fail "faultfs_mount: $back is not a directory"
    mkdir -p "$mnt"
    back=$(realpath "$back")
    mnt=$(realpath "$mnt")
    [[ -z ${_faultfs_pid[$mnt]:-} ]] || fail "faultfs_mount: $mnt is already a faultfs of this test"
    ! is_mounted "$mnt" || fail "faultfs_mount: $mnt is already a mount point"
    _faultfs_seq=$((_faultfs_seq + 1))
    log=${tmpdir:-/tmp}/faultfs.$_faultfs_seq.log
    info "starting: faultfs -f $back $mnt${opts:+ -o $opts}"
    "$FAULTFS" -f "$back" "$mnt" ${opts:+-o "$opts"} </dev/null >"$log" 2>&1 &
    pid=$!
    _faultfs_pid[$mnt]=$pid
    _faultfs_log[$mnt]=$log
    cleanup_fn _faultfs_cleanup "$mnt"
    _faultfs_cleanup_id[$mnt]=$CLEANUP_ID
    # shellcheck disable=SC2034
    FAULTFS_PID=$pid FAULTFS_MNT=$mnt FAULTFS_LOG=$log

    deadline=$((SECONDS + 20))
    while [[ $(mount_fstype "$mnt" 2>/dev/null) != fuse.faultfs || ! -e $mnt/.faultfs ]]; do
        if ! _pid_running "$pid"; then
            status=0
            wait "$pid" || status=$?
            _show_log "$log"
            fail "faultfs exited with status $status before mounting $mnt"
        fi
        if [[ $SECONDS -ge $deadline ]]; then
            _show_log "$log"
            fail "faultfs did not mount $mnt within 20 s"
        fi
        sleep 0.05
    done
}

# _faultfs_cleanup MNT: at exit, whatever the state.
_faultfs_cleanup() {
    local mnt=$1 pid
    pid=${_faultfs_pid[$mnt]:-}
    [[ -n $pid ]] || return 0
    if is_mounted "$mnt"; then
        fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" 2>/dev/null ||
            umount -l "$mnt" || true
    fi
    # Our own child, not reaped yet: its pid cannot have been reused.
    if ! _wait_pid_exit "$pid" 10; then
        kill -TERM "$pid" 2>/dev/null || true
        if ! _wait_pid_exit "$pid" 5; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    unset '_faultfs_pid[$mnt]' '_faultfs_log[$mnt]' '_faultfs_cleanup_id[$mnt]'
    ! is_mounted "$mnt" || fail "$mnt (faultfs) still mounted at exit"
}

# faultfs_unmount MNT: a clean unmount (retried while busy); faultfs must
# then exit with status 0.
faultfs_unmount() {
    local mnt pid log i status=0
    mnt=$(_faultfs_canon "$1")
    pid=${_faultfs_pid[$mnt]}
    log=${_faultfs_log[$mnt]}
    for ((i = 0; ; i++)); do
        if fusermount3 -u "$mnt" 2>/dev/null; then
            break
        fi
        if [[ $i -ge 20 ]]; then
            fusermount3 -u "$mnt" || fail "fusermount3 -u $mnt (faultfs) failed"
            break
        fi
        sleep 0.5
    done
    if ! _wait_pid_exit "$pid" 30; then
        _show_log "$log"
        fail "faultfs (pid $pid) still running 30 s after fusermount3 -u $mnt"
    fi
    wait "$pid" || status=$?
    cleanup_cancel "${_faultfs_cleanup_id[$mnt]}"
    unset '_faultfs_pid[$mnt]' '_faultfs_log[$mnt]' '_faultfs_cleanup_id[$mnt]'
    if [[ $status -ne 0 ]]; then
        _show_log "$log"
        fail "faultfs exited with status $status after a clean unmount of $mnt"
    fi
    ! is_mounted "$mnt" || fail "$mnt still mounted after faultfs exited"
}

# faultfs_ctl MNT CMD...: apply one command (its words joined by spaces:
# quote a '*'); fails the test if faultfs refuses it.
faultfs_ctl() {
    local mnt=$1
    shift
    if ! printf '%s\n' "$*" >"$mnt/.faultfs"; then
        fail "faultfs on $mnt refused: $*"
    fi
}

# faultfs_stat MNT KEY: print the value of one line of MNT/.faultfs
# (e.g. held_sectors, injected_errors, pwrite:FILE); fails if there is none.
faultfs_stat() {
    local out
    out=$(cat "$1/.faultfs") || fail "cannot read $1/.faultfs"
    awk -v k="$2" '$1 == k { sub(/^[^ ]* /, ""); print; found = 1; exit }
        END { exit !found }' <<<"$out" ||
        fail "faultfs on $1: no '$2' in its state"
}

# ---------------------------------------------------------------------------
# The array of a test: one helper for the setup most tests share.
# ---------------------------------------------------------------------------

# make_array [OPTION...]: create an array under $tmpdir (make_tmpdir first)
# and mount it.  The caller states only what differs from the defaults:
#   --members N        N members (default 2)
#   --size SIZE        the volume size, as mdfusectl create takes it (16M)
#   --chunk SIZE       the bitmap chunk (1M)
#   --daemon-sleep S   mdfusectl create --daemon-sleep S
#   --name NAME        mdfusectl create --name NAME
#   --write-mostly K   member K (0-based; repeatable) is write-mostly
#   --write-behind N   mdfusectl create --write-behind N
#   --faultfs[=OPTS]   the members on faultfs: their files in $tmpdir/back,
#                      seen through a faultfs on $tmpdir/m (mounted with
#                      OPTS, e.g. volatile, unless this test has it mounted
#                      already)
#   --bitmap-faultfs[=OPTS]  the bitmap on faultfs: its file on the tmpfs
#                      $tmpdir/bmback, seen through a faultfs on $tmpdir/bm
#   -o OPTS            extra mount options, after bitmap=...
#   --nbd URI FILE     the last member is the NBD export URI (its server
#                      started by the test: start_nbdkit), FILE the file
#                      behind it (ARRAY_BACK)
#   --as ID            another array of the same test: members m/ID0...,
#                      bitmap bm/ID, mount point $tmpdir/ID.mnt (default:
#                      members m/m0..., bitmap bm/b, mount point mnt)
#   --no-mount         create it only (mount_array mounts it)
# The bitmap is always on its own small tmpfs ($tmpdir/bm, or
# $tmpdir/bmback under faultfs), mounted by the first make_array of the test
# (SPEC §3: not on the members' file system).
# Results, for the array made last (the paths are absolute):
#   ARRAY_MEMBERS (array) the member paths mdfuse is given;
#   ARRAY_BACK (array)    their files (under back/ with --faultfs, else the
#                         same);
#   ARRAY_BITMAP, ARRAY_BITMAP_BACK  likewise for the bitmap;
#   ARRAY_MNT             the mount point; ARRAY_OPTS its -o options;
#   ARRAY_SIZE, ARRAY_CHUNK (bytes, as mdfusectl examine reads them) and
#   ARRAY_CHUNKS (ARRAY_SIZE / ARRAY_CHUNK);
#   MDFUSE_PID, MDFUSE_MNT, MDFUSE_LOG from start_mdfuse (if mounted).
# Like the other helpers that register cleanups, never call it in $(...).
# shellcheck disable=SC2034
{
    ARRAY_MEMBERS=()
    ARRAY_BACK=()
    ARRAY_BITMAP=
    ARRAY_BITMAP_BACK=
    ARRAY_MNT=
    ARRAY_OPTS=
    ARRAY_SIZE=
    ARRAY_CHUNK=
    ARRAY_CHUNKS=
}

make_array() {
    local n=2 size=16M chunk=1M id='' extra='' mount=1 ffs=0 ffs_opts='' bffs=0 bffs_opts=''
    local nbd_uri='' nbd_back=''
    local create_args=() mdir mback bdir bback prefix bname mnt i out
    local -A wm=()
    local member_args=()
    [[ -n $tmpdir ]] || fail "make_array: make_tmpdir first"
    while [[ $# -gt 0 ]]; do
        case $1 in
        --members) n=$2; shift ;;
        --size) size=$2; shift ;;
        --chunk) chunk=$2; shift ;;
        --daemon-sleep | --name | --write-behind) create_args+=("$1" "$2"); shift ;;
        --write-mostly) wm[$2]=1; shift ;;
        --faultfs) ffs=1 ;;
        --faultfs=*) ffs=1 ffs_opts=${1#*=} ;;
        --bitmap-faultfs) bffs=1 ;;
        --bitmap-faultfs=*) bffs=1 bffs_opts=${1#*=} ;;
        -o) extra=$2; shift ;;
        --as) id=$2; shift ;;
        --nbd) nbd_uri=$2 nbd_back=$3; shift 2 ;;
        --no-mount) mount=0 ;;
        *) fail "make_array: unknown option '$1'" ;;
        esac
        shift
    done
    if [[ -n $id ]]; then
        prefix=$id bname=$id mnt=$tmpdir/$id.mnt
    else
        prefix=m bname=b mnt=$tmpdir/mnt
    fi

    # The bitmap's own small file system, and faultfs on it if asked.
    if [[ $bffs -eq 1 ]]; then
        bback=$tmpdir/bmback bdir=$tmpdir/bm
        is_mounted "$bback" || make_bitmap_mount "$bback"
        [[ -n ${_faultfs_pid[$bdir]:-} ]] || faultfs_mount "$bback" "$bdir" "$bffs_opts"
    else
        bdir=$tmpdir/bm bback=$tmpdir/bm
        is_mounted "$bdir" || make_bitmap_mount "$bdir"
    fi
    # The members' directory, and faultfs over it if asked.
    if [[ $ffs -eq 1 ]]; then
        mback=$tmpdir/back mdir=$tmpdir/m
        mkdir -p "$mback"
        [[ -n ${_faultfs_pid[$mdir]:-} ]] || faultfs_mount "$mback" "$mdir" "$ffs_opts"
    else
        mdir=$tmpdir/m mback=$tmpdir/m
        mkdir -p "$mdir"
    fi
    mkdir -p "$mnt"

    ARRAY_MEMBERS=() ARRAY_BACK=()
    for ((i = 0; i < n; i++)); do
        ARRAY_MEMBERS+=("$mdir/$prefix$i")
        ARRAY_BACK+=("$mback/$prefix$i")
    done
    if [[ -n $nbd_uri ]]; then
        ARRAY_MEMBERS[n - 1]=$nbd_uri
        ARRAY_BACK[n - 1]=$nbd_back
    fi
    for ((i = 0; i < n; i++)); do
        if [[ -n ${wm[$i]:-} ]]; then
            member_args+=(--write-mostly "${ARRAY_MEMBERS[i]}" --readwrite)
        else
            member_args+=("${ARRAY_MEMBERS[i]}")
        fi
    done
    # shellcheck disable=SC2034
    ARRAY_BITMAP=$bdir/$bname ARRAY_BITMAP_BACK=$bback/$bname
    ARRAY_MNT=$mnt
    ARRAY_OPTS=bitmap=$ARRAY_BITMAP${extra:+,$extra}
    out=$tmpdir/create.${id:-array}.out
    "$MDFUSECTL" create ${create_args[@]+"${create_args[@]}"} --chunk "$chunk" \
        --size "$size" --bitmap "$ARRAY_BITMAP" "${member_args[@]}" >"$out" 2>&1 || {
        _show_log "$out"
        fail "mdfusectl create --chunk $chunk --size $size ($n members${id:+, $id}) failed"
    }
    ARRAY_SIZE=$(volume_size "${ARRAY_MEMBERS[0]}")
    ARRAY_CHUNK=$(chunk_size "$ARRAY_BITMAP")
    # shellcheck disable=SC2034
    ARRAY_CHUNKS=$((ARRAY_SIZE / ARRAY_CHUNK))
    info "array${id:+ $id}: $n members of $size, chunk $chunk, in $mdir${extra:+, -o $extra}"
    if [[ $mount -eq 1 ]]; then
        mount_array
    fi
}

# mount_array [-o EXTRA] [MEMBER...]: mount the array made last again, on
# its mount point with its options (and EXTRA), from its members or the
# MEMBERs given (a replaced member, a degraded mount).
mount_array() {
    local opts=$ARRAY_OPTS members
    if [[ ${1:-} == -o ]]; then
        opts+=,$2
        shift 2
    fi
    if [[ $# -eq 0 ]]; then
        set -- "${ARRAY_MEMBERS[@]}"
    fi
    members=$(IFS=:; printf '%s' "$*")
    start_mdfuse -o "$opts" "$members" "$ARRAY_MNT"
}

# make_array_over_inner SLOT [OPTION...]: make_array OPTION..., but member
# SLOT is the `volume` of an inner array (make_array --as inner, chunk 64K,
# 8 KiB larger than the outer volume, served by its own mdfuse): a member on
# a FUSE file system whose server the test can kill (kill_mdfuse_pid
# $INNER_PID; its I/O then fails with ENOTCONN, or ECONNABORTED (ECANCELED on the ring) for a
# request in flight).  The outer member is created as a file, copied into
# the inner volume and removed.  Sets INNER_PID and INNER_VOL, and the
# ARRAY_* results of the outer array; mount_inner mounts the inner array
# again after a kill.
INNER_PID=
INNER_VOL=
_inner_opts=
_inner_members=
# shellcheck disable=SC2034
make_array_over_inner() {
    local slot=$1 mount=1 a src saved
    shift
    for a in "$@"; do
        [[ $a != --no-mount ]] || mount=0
    done
    make_array "$@" --no-mount
    # The outer array's results, kept across the inner make_array.
    saved=$(declare -p ARRAY_MEMBERS ARRAY_BACK ARRAY_BITMAP ARRAY_BITMAP_BACK \
        ARRAY_MNT ARRAY_OPTS ARRAY_SIZE ARRAY_CHUNK ARRAY_CHUNKS)
    make_array --as inner --size $((ARRAY_SIZE + 8192)) --chunk 64K
    _inner_opts=$ARRAY_OPTS
    _inner_members=$(IFS=:; printf '%s' "${ARRAY_MEMBERS[*]}")
    INNER_PID=$MDFUSE_PID
    INNER_VOL=$ARRAY_MNT/volume
    saved=${saved//declare -a /declare -ga }
    eval "${saved//declare -- /declare -g }"
    src=${ARRAY_MEMBERS[slot]}
    dd if="$src" of="$INNER_VOL" bs=1M conv=notrunc,fsync status=none ||
        fail "copying $src into $INNER_VOL failed"
    rm -f "$src"
    ARRAY_MEMBERS[slot]=$INNER_VOL
    ARRAY_BACK[slot]=$INNER_VOL
    if [[ $mount -eq 1 ]]; then
        mount_array
    fi
}

# mount_inner: mount the inner array of make_array_over_inner again (after
# its daemon was killed and torn down); sets INNER_PID.
# shellcheck disable=SC2034
mount_inner() {
    start_mdfuse -o "$_inner_opts" "$_inner_members" "$tmpdir/inner.mnt"
    INNER_PID=$MDFUSE_PID
}

# ---------------------------------------------------------------------------
# Degraded arrays: data written through the volume and its model, the
# failed member's marks, the status text.
# ---------------------------------------------------------------------------

# wait_bg_jobs: wait for the jobs in bg_pids; fails if one failed.
wait_bg_jobs() {
    local p st=0
    for p in ${bg_pids[@]+"${bg_pids[@]}"}; do
        wait "$p" || st=1
    done
    bg_pids=()
    [[ $st -eq 0 ]] || fail "a background job failed"
}

# write_at VOLUME MODEL OFFSET LENGTH: write LENGTH random bytes at OFFSET
# of the volume (fsynced) and of its model file.
write_at() {
    local vol=$1 model=$2 off=$3 len=$4
    head -c "$len" /dev/urandom >"$tmpdir/piece"
    dd if="$tmpdir/piece" of="$vol" bs="$len" seek="$off" oflag=seek_bytes \
        conv=notrunc,fsync status=none || fail "write of $len bytes at $off failed"
    dd if="$tmpdir/piece" of="$model" bs="$len" seek="$off" oflag=seek_bytes \
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

# assert_volume_is VOLUME WHAT MODEL: the volume holds MODEL.
assert_volume_is() {
    [[ $(volume_sha "$1") == "$(sha256_of "$3")" ]] ||
        fail "$2: the volume does not hold the data written"
}

# Chunk lists: lines "a b c" and sorted TEXT give sorted lines.
lines() { tr ' ' '\n' <<<"$*" | sed '/^$/d' | sort -n; }
sorted() { sort -n <<<"$1" | sed '/^$/d'; }

# assert_marked_faulty SURVIVOR DEV EV_BEFORE: DEV's role is 0xfffe in
# SURVIVOR's superblock and SURVIVOR's events went past EV_BEFORE.
assert_marked_faulty() {
    local survivor=$1 dev=$2 ev_before=$3 role ev
    role=$(sb_role "$survivor" "$dev")
    ev=$(sb_events "$survivor")
    [[ $role -eq 65534 ]] ||
        fail "$survivor: dev_roles[$dev] = $role, expected 65534 (0xfffe, faulty)"
    [[ $ev -gt $ev_before ]] ||
        fail "$survivor: events $ev, not bumped past $ev_before by the failure"
    info "$survivor: dev_roles[$dev] = 0xfffe, events $ev_before -> $ev"
}

# assert_status_text MNT REGEX...: every ERE matches a line of the text
# status.
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

# re_escape TEXT: TEXT as a literal ERE.
re_escape() { sed 's/[][\.*^$+?(){}|/]/\\&/g' <<<"$1"; }

# plant_differing CHUNK_BYTES CHUNK...: a crash state built on purpose: in
# each CHUNK, member 0 (ARRAY_BACK[0]) gets one random pattern and member 1
# another, written straight into the files.  Sets PLANT_SUM0 and PLANT_SUM1,
# the sha256 of a chunk of each pattern.
plant_differing() {
    local size=$1 c
    shift
    head -c "$size" /dev/urandom >"$tmpdir/plant0.bin"
    head -c "$size" /dev/urandom >"$tmpdir/plant1.bin"
    for c in "$@"; do
        dd if="$tmpdir/plant0.bin" of="${ARRAY_BACK[0]}" bs="$size" seek="$c" conv=notrunc status=none
        dd if="$tmpdir/plant1.bin" of="${ARRAY_BACK[1]}" bs="$size" seek="$c" conv=notrunc status=none
    done
    PLANT_SUM0=$(sha256_of "$tmpdir/plant0.bin")
    PLANT_SUM1=$(sha256_of "$tmpdir/plant1.bin")
}

# chunk_sha VOLUME CHUNK_BYTES CHUNK: sha256 of that chunk of the volume,
# read with O_DIRECT (every byte from the daemon).
chunk_sha() {
    local s
    s=$(dd if="$1" bs="$2" skip="$3" count=1 iflag=direct status=none | sha256sum) ||
        fail "reading chunk $3 of $1 failed"
    printf '%s\n' "${s%% *}"
}


# ---------------------------------------------------------------------------
# NBD servers for NBD members: nbdkit on Unix sockets under $tmpdir, each
# known by a name; killed at exit by pid (continued first, should the test
# have stopped it).
# ---------------------------------------------------------------------------

# Results of start_nbdkit.
# shellcheck disable=SC2034
{
    NBD_PID=
    NBD_SOCK=
    NBD_URI=
}

declare -A _nbdkit_pid=() _nbdkit_log=()

# require_nbdkit FILTER...: nbdkit with its file plugin and these filters.
require_nbdkit() {
    local f args=()
    requires nbdkit
    for f in "$@"; do
        args+=(--filter="$f")
    done
    requires nbdkit ${args[@]+"${args[@]}"} file --version
}

# start_nbdkit NAME [--tcp ADDR PORT] ARG...: run "nbdkit -f -U
# $tmpdir/NAME.sock ARG..." (e.g. --filter=log file FILE logfile=LOG), or
# with --tcp listening on ADDR:PORT instead, in the background, its output
# in $tmpdir/nbdkit.NAME.log, and wait until it serves.  Sets NBD_PID,
# NBD_SOCK and NBD_URI (nbd+unix:///?socket=NBD_SOCK, or nbd://ADDR:PORT).
start_nbdkit() {
    local name=$1 sock log pid deadline where addr='' port='' uri
    shift
    if [[ ${1:-} == --tcp ]]; then
        addr=$2 port=$3
        shift 3
    fi
    sock=$tmpdir/$name.sock
    log=$tmpdir/nbdkit.$name.log
    [[ -z ${_nbdkit_pid[$name]:-} ]] || fail "start_nbdkit: $name runs already"
    if [[ -n $addr ]]; then
        where=(-i "$addr" -p "$port") uri=nbd://$addr:$port sock=
    else
        rm -f "$sock"
        where=(-U "$sock") uri="nbd+unix:///?socket=$sock"
    fi
    info "starting: nbdkit -f ${where[*]} $*"
    nbdkit -f "${where[@]}" "$@" </dev/null >>"$log" 2>&1 &
    pid=$!
    _nbdkit_pid[$name]=$pid
    _nbdkit_log[$name]=$log
    cleanup_fn _nbdkit_cleanup "$name"
    deadline=$((SECONDS + 20))
    while :; do
        if [[ -n $sock ]]; then
            [[ -S $sock ]] && break
        elif (exec 3<>"/dev/tcp/$addr/$port") 2>/dev/null; then
            break
        fi
        if ! _pid_running "$pid"; then
            _show_log "$log"
            fail "nbdkit exited before serving ${sock:-$addr:$port}"
        fi
        if [[ $SECONDS -ge $deadline ]]; then
            _show_log "$log"
            fail "nbdkit did not serve ${sock:-$addr:$port} within 20 s"
        fi
        sleep 0.05
    done
    # shellcheck disable=SC2034
    NBD_PID=$pid NBD_SOCK=$sock NBD_URI=$uri
}

# stop_nbdkit NAME [SIGNAL]: send SIGNAL (TERM) to that nbdkit (continued
# first if stopped) and reap it.
stop_nbdkit() {
    local name=$1 sig=${2:-TERM} pid
    pid=${_nbdkit_pid[$name]:-}
    [[ -n $pid ]] || fail "stop_nbdkit: no nbdkit $name started by this test"
    info "SIG$sig nbdkit $name (pid $pid)"
    kill -"$sig" "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true
    if ! _wait_pid_exit "$pid" 20; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    unset '_nbdkit_pid[$name]'
}

_nbdkit_cleanup() {
    local name=$1 pid
    pid=${_nbdkit_pid[$name]:-}
    [[ -n $pid ]] || return 0
    # Our own child, not reaped yet: its pid cannot have been reused.
    kill -TERM "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true
    if ! _wait_pid_exit "$pid" 5; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    unset '_nbdkit_pid[$name]'
}

# nbd_writes LOG V C: the chunks (C bytes) of the first V bytes that the
# nbdkit log filter's LOG shows written (Write or Zero), one per line, then
# a last line "bytes N": the bytes those requests carried.
nbd_writes() {
    awk -v v="$2" -v c="$3" '
        function hex(s,   i, n) {
            n = 0
            for (i = 3; i <= length(s); i++)
                n = n * 16 + index("0123456789abcdef", tolower(substr(s, i, 1))) - 1
            return n
        }
        / (Write|Zero) id=[0-9]+ offset=/ {
            off = 0; cnt = 0
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^offset=0x/) off = hex(substr($i, 8))
                if ($i ~ /^count=0x/) cnt = hex(substr($i, 7))
            }
            if (off >= v) next
            bytes += cnt
            for (k = int(off / c); k * c < off + cnt; k++) seen[k] = 1
        }
        END { for (k in seen) print k; print "bytes " bytes + 0 }' "$1"
}
