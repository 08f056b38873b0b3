#!/usr/bin/env bash
# The command line as an operator meets it: --version and --help
# everywhere, usage errors that exit 2 with a message on stderr and nothing
# on stdout, sizes as people type them (1.5G) and range errors that say the
# limit, arguments swapped or a member file for a mount point named as
# such, the array's UUID and name in status, a degraded start that says
# so, and output that comes line by line in a pipe.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires jq

make_tmpdir
cd "$tmpdir" || exit 1
make_bitmap_mount bm
mkdir -p m mnt

# --version: alone and after a command, exit 0, stdout.
for args in "--version" "status --version" "create --version"; do
    # shellcheck disable=SC2086 # the words of args
    out=$("$MDFUSECTL" $args) || fail "mdfusectl $args exited non-zero"
    [[ $out =~ ^mdfusectl\ \(mdfuse\)\ [0-9] ]] || fail "mdfusectl $args printed '$out'"
done
"$MDFUSE" --version 2>&1 | grep '^mdfuse [0-9]' >/dev/null || fail "mdfuse --version does not say its version"

# --help on every command: the usage on stdout, exit 0, nothing on stderr.
commands="create new-member add-bitmap examine examine-bitmap status fail re-add check wait resync-rate remove-bitmap monitor"
for c in $commands; do
    out=$("$MDFUSECTL" "$c" --help 2>"$tmpdir/err") || fail "mdfusectl $c --help exited $?"
    [[ $out == "Usage:"*"mdfusectl $c "* ]] || fail "mdfusectl $c --help printed '$out'"
    [[ ! -s $tmpdir/err ]] || fail "mdfusectl $c --help wrote to stderr: $(cat "$tmpdir/err")"
done
"$MDFUSECTL" --help | grep "mdfusectl remove-bitmap" >/dev/null || fail "mdfusectl --help does not list every command"
"$MDFUSE" --help 2>/dev/null | grep "^Usage: .*mdfuse" >/dev/null || fail "mdfuse --help shows no usage"

# Usage errors: exit 2, a message and a pointer to --help on stderr,
# nothing on stdout.
usage_error() {
    local want=$1 st=0
    shift
    "$@" >"$tmpdir/out" 2>"$tmpdir/err" || st=$?
    [[ $st -eq 2 ]] || fail "$* exited $st, expected 2 (a usage error): $(cat "$tmpdir/err")"
    [[ ! -s $tmpdir/out ]] || fail "$* wrote to stdout on a usage error: $(cat "$tmpdir/out")"
    grep -qF -- "$want" "$tmpdir/err" || fail "$*: '$(cat "$tmpdir/err")' does not say '$want'"
    grep -qE -- "Try '(mdfusectl|mdfuse)( [a-z-]+)? --help'" "$tmpdir/err" || fail "$*: no pointer to --help: $(cat "$tmpdir/err")"
}
for c in $commands; do
    usage_error "unrecognized option '--bogus'" "$MDFUSECTL" "$c" --bogus
done
usage_error "no command given" "$MDFUSECTL"
usage_error "unknown command 'frobnicate'" "$MDFUSECTL" frobnicate
usage_error "missing operand: expected MOUNTPOINT" "$MDFUSECTL" status
usage_error "extra operand 'b' (expected MOUNTPOINT)" "$MDFUSECTL" status a b
usage_error "too few operands: expected MOUNTPOINT MEMBER" "$MDFUSECTL" fail mnt
usage_error "missing operand: expected MEMBER..." "$MDFUSECTL" examine
usage_error "--size SIZE is required" "$MDFUSECTL" create --bitmap bm/x m/x0 m/x1
usage_error "--rate 1Q: not a size" "$MDFUSECTL" check --rate 1Q mnt
usage_error "no members and no mount point given" "$MDFUSE"
usage_error "unknown option" "$MDFUSE" -f -o bitmap=bm/x,frobnicate m/x0:m/x1 mnt
usage_error "-o transport=bogus: not loop, ring or auto" "$MDFUSE" -f -o bitmap=bm/x,transport=bogus m/x0:m/x1 mnt
# transport=ring where the kernel does not allow it: refused before any
# file is touched, never served through the loop instead.
if [[ -e $ring_switch ]]; then
    ring_was=$(cat "$ring_switch")
    cleanup_fn _ring_switch_restore "$ring_was"
    echo N >"$ring_switch"
    st=0
    "$MDFUSE" -f -o bitmap=bm/x,transport=ring m/x0:m/x1 mnt 2>"$tmpdir/err" || st=$?
    [[ $st -eq 1 ]] || fail "transport=ring with $ring_switch N exited $st, expected 1"
    grep -qF "enable_uring is N" "$tmpdir/err" || fail "transport=ring refused without saying why: $(cat "$tmpdir/err")"
    echo "$ring_was" >"$ring_switch"
fi
[[ ! -e m/x0 && ! -e bm/x ]] || fail "a usage error left files behind"

# Sizes: a fraction, and errors that say why; nothing is created then.
"$MDFUSECTL" create --size 1.5G --name cli-test --bitmap bm/b m/m0 m/m1 >"$tmpdir/create.out" ||
    fail "create --size 1.5G failed"
"$MDFUSECTL" examine m/m0 | grep "Volume Size : 1610612736$" >/dev/null ||
    fail "create --size 1.5G did not make a 1.5 GiB volume: $("$MDFUSECTL" examine m/m0 | grep 'Volume Size')"
for bad in "20E:16 EiB" "0.1K:not a size" "1.2.3:not a size"; do
    st=0
    "$MDFUSECTL" create --size "${bad%%:*}" --bitmap bm/x m/x0 m/x1 2>"$tmpdir/err" || st=$?
    [[ $st -eq 2 ]] || fail "create --size ${bad%%:*} exited $st, expected 2"
    grep -qF "${bad#*:}" "$tmpdir/err" || fail "create --size ${bad%%:*}: '$(cat "$tmpdir/err")' does not say '${bad#*:}'"
    [[ ! -e m/x0 && ! -e bm/x ]] || fail "create --size ${bad%%:*} left files behind"
done

# Members as separate arguments, or the mount point first: the right form.
st=0
"$MDFUSE" -f -o bitmap=bm/b m/m0 m/m1 mnt 2>"$tmpdir/err" || st=$?
[[ $st -eq 2 ]] || fail "mdfuse with the members as separate arguments exited $st, expected 2"
grep -qF "did you mean 'm/m0:m/m1 mnt'?" "$tmpdir/err" ||
    fail "members as separate arguments: $(cat "$tmpdir/err")"
st=0
"$MDFUSE" -f -o bitmap=bm/b mnt m/m0:m/m1 2>"$tmpdir/err" || st=$?
[[ $st -eq 2 ]] || fail "mdfuse with the mount point first exited $st, expected 2"
grep -qF "mnt is a directory: the members come first, then the mount point; did you mean 'm/m0:m/m1 mnt'?" "$tmpdir/err" ||
    fail "mount point first: $(cat "$tmpdir/err")"
is_mounted "$tmpdir/mnt" && fail "a refused mdfuse left a mount"

# The UUID and the name, as examine reads them, in status.
uuid=$("$MDFUSECTL" examine m/m0 | sed -n 's/^ *Array UUID : //p')
[[ -n $uuid ]] || fail "examine shows no Array UUID"
start_mdfuse -o bitmap=bm/b m/m0:m/m1 mnt
# A clean mount of a new array has nothing to say that is an error.
if grep -E "error|warning" "$MDFUSE_LOG" >&2; then
    fail "a clean mount logged an error or a warning (above)"
fi
"$MDFUSECTL" status mnt | grep -F "uuid $uuid, name cli-test" >/dev/null ||
    fail "status does not show the uuid and name: $("$MDFUSECTL" status mnt)"
"$MDFUSECTL" status --json mnt | jq -e --arg u "$uuid" '.uuid == $u and .name == "cli-test"' >/dev/null ||
    fail "status --json has no uuid/name"
# status --test (mdadm --detail --test): 0 whole and in sync; the volume
# file serves as well as its mount point.
"$MDFUSECTL" status --test mnt/volume >/dev/null || fail "status --test of a whole volume exited $?"

# Arguments swapped, or a member file where the mount point goes: one
# clear error, and nothing done.
usage_error "the mount point comes first: mdfusectl re-add mnt m/m1" "$MDFUSECTL" re-add m/m1 mnt
usage_error "the mount point comes first: mdfusectl fail mnt m/m1" "$MDFUSECTL" fail m/m1 mnt
"$MDFUSECTL" status --test mnt >/dev/null || fail "a swapped fail changed the volume"
st=0
"$MDFUSECTL" status m/m0 >/dev/null 2>"$tmpdir/err" || st=$?
[[ $st -eq 1 ]] || fail "status of a member file exited $st, expected 1"
grep -qF "m/m0: a file, not the mount point of a running volume" "$tmpdir/err" ||
    fail "status of a member file: $(cat "$tmpdir/err")"

# Line by line in a pipe: "check started" while the check still runs.
"$MDFUSECTL" check --rate 512M mnt >"$tmpdir/check.out" 2>&1 &
checker=$!
bg_pids+=("$checker")
for _ in $(seq 100); do
    grep -q "check started" "$tmpdir/check.out" && break
    sleep 0.05
done
grep -q "check started" "$tmpdir/check.out" || fail "'check started' did not come while the check ran"
"$MDFUSECTL" status --json mnt | jq -e '.check.running' >/dev/null ||
    fail "the check had ended before its first line came: the test proves nothing"
wait_bg_jobs
grep -q "check finished: 0 mismatched chunks" "$tmpdir/check.out" || fail "check: $(cat "$tmpdir/check.out")"
stop_mdfuse

# A degraded start says so.
mv m/m1 m/m1.away
start_mdfuse -o bitmap=bm/b,degraded m/m0:m/m1 mnt
grep -q "warning: started degraded, with 1 of 2 members active (slot 1 missing)" "$MDFUSE_LOG" ||
    { cat "$MDFUSE_LOG" >&2; fail "a degraded start did not say so"; }
st=0
"$MDFUSECTL" status --test mnt >/dev/null || st=$?
[[ $st -eq 1 ]] || fail "status --test of a degraded volume exited $st, not 1"
stop_mdfuse
mv m/m1.away m/m1

# create over an array's files names the array; with --force it warns.
st=0
"$MDFUSECTL" create --size 16M --bitmap bm/y m/m0 m/y1 2>"$tmpdir/err" || st=$?
[[ $st -ne 0 ]] || fail "create over an existing member succeeded without --force"
grep -qF "m/m0: already exists: it appears to be member 0 of an md raid array (name 'cli-test', uuid $uuid" "$tmpdir/err" ||
    fail "create over a member did not name its array: $(cat "$tmpdir/err")"
[[ ! -e m/y1 && ! -e bm/y ]] || fail "a refused create left files behind"
"$MDFUSECTL" create --force --size 16M --bitmap bm/b m/m0 m/m1 >/dev/null 2>"$tmpdir/err" ||
    fail "create --force failed: $(cat "$tmpdir/err")"
grep -qF "m/m1: it appears to be member 1 of an md raid array (name 'cli-test'" "$tmpdir/err" ||
    fail "create --force did not say what it overwrote: $(cat "$tmpdir/err")"
grep -qF "bm/b: it appears to be the bitmap of an md raid array (uuid $uuid" "$tmpdir/err" ||
    fail "create --force did not say which bitmap it overwrote: $(cat "$tmpdir/err")"

# create checks what mount enforces: the bitmap on another filesystem.
st=0
"$MDFUSECTL" create --size 16M --bitmap m/z.bitmap m/z0 m/z1 2>"$tmpdir/err" || st=$?
[[ $st -ne 0 ]] || fail "create put the bitmap on the members' filesystem"
grep -qF "m/z.bitmap: on the same filesystem as member m/z0" "$tmpdir/err" ||
    fail "create did not say why it refused the bitmap: $(cat "$tmpdir/err")"
[[ ! -e m/z0 && ! -e m/z.bitmap ]] || fail "the refused create left files behind"

info "--version, sizes, uuid and name, line-buffered output, degraded start, create's checks: as an operator expects"
