#!/usr/bin/env bash
# mdfuse: SIGKILL of the daemon in the middle of ext4 writes loses nothing
# that was fsynced, and the next mount copies only the dirty chunks.
#
# Each cycle (CRASH_CYCLES, default 3):
#   - a writer creates files on ext4 over the volume, some fsynced (dd
#     conv=fsync, or cp + `sync FILE`), their sha256 recorded only after
#     the fsync returned, others never synced;
#   - the daemon is SIGKILLed while it writes; the dead mounts are torn down;
#   - before remounting: every chunk in which the members differ has its
#     bit set in the bitmap file (invariant I, SPEC §4), some bit is set,
#     mdfusectl agrees with the raw bits, members say State active;
#   - remount: the log says "resync: copied X of Y chunks" with X = the
#     number of dirty bits found and X < Y; the members are then identical;
#   - ext4 mounts (journal replay), every fsynced file has its sha256,
#     e2fsck -fn is clean.
# At the end a clean unmount leaves 0 dirty bits.
# Then RAW_CRASH_CYCLES (default 5) crashes under parallel O_DIRECT writes
# straight to the volume check the same, plus: no bit is set for a chunk
# that was not written.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires mkfs.ext4
requires e2fsck
requires setsid

cycles=${CRASH_CYCLES:-3}
size=$((64 * 1024 * 1024))
chunk=$((256 * 1024))

make_tmpdir
mkdir "$tmpdir/fs" "$tmpdir/work"
fs=$tmpdir/fs
manifest=$tmpdir/work/manifest # "sha256  name" of every fsynced file
: >"$manifest"

# crash_writer FSDIR MANIFEST STOPFILE WORKDIR CYCLE: runs in its own
# process group (setsid) until STOPFILE exists.  Keeps at most 24 of its
# files, so the file system never fills: a file leaves the manifest
# before it is deleted.
crash_writer() {
    local fsdir=$1 manifest=$2 stop=$3 work=$4 cycle=$5 i=0 name old sha
    echo $$ >"$work/writer.pid"
    while [[ ! -e $stop ]]; do
        i=$((i + 1))
        name=c$cycle-$i
        head -c $(((RANDOM % 8 + 1) * 65536 + RANDOM)) /dev/urandom >"$work/src"
        sha=$(sha256sum <"$work/src")
        sha=${sha%% *}
        case $((i % 3)) in
        0)
            if dd if="$work/src" of="$fsdir/$name" bs=64K conv=fsync status=none 2>/dev/null; then
                echo "$sha  $name" >>"$manifest"
            fi
            ;;
        1)
            if cp "$work/src" "$fsdir/$name" 2>/dev/null &&
                sync "$fsdir/$name" 2>/dev/null; then
                echo "$sha  $name" >>"$manifest"
            fi
            ;;
        2)
            cp "$work/src" "$fsdir/$name.unsynced" 2>/dev/null || true
            ;;
        esac
        if [[ $i -gt 24 ]]; then
            old=c$cycle-$((i - 24))
            awk -v n="$old" '$2 != n' "$manifest" >"$manifest.new"
            mv "$manifest.new" "$manifest"
            rm -f "$fsdir/$old" "$fsdir/$old.unsynced" 2>/dev/null || true
        fi
        sleep 0.05
    done
}
export -f crash_writer

writer_job='' writer_pgid=''
start_writer() {
    local i
    rm -f "$tmpdir/work/stop" "$tmpdir/work/writer.pid"
    setsid bash -c 'crash_writer "$@"' crash_writer \
        "$fs" "$manifest" "$tmpdir/work/stop" "$tmpdir/work" "$1" \
        </dev/null >/dev/null 2>"$tmpdir/work/writer.err" &
    writer_job=$!
    cleanup_fn kill_writer
    for ((i = 0; i < 100; i++)); do
        [[ -s $tmpdir/work/writer.pid ]] && break
        sleep 0.05
    done
    writer_pgid=$(cat "$tmpdir/work/writer.pid") || fail "the writer did not start"
}

# stop_writer: ask the writer to stop after its current file (its writes
# fail fast once the daemon is dead), wait for it and reap it.
stop_writer() {
    local i
    touch "$tmpdir/work/stop"
    for ((i = 0; i < 300; i++)); do
        _pid_running "$writer_job" || break
        sleep 0.1
    done
    _pid_running "$writer_job" || {
        wait "$writer_job" 2>/dev/null || true
        writer_job=
    }
    if [[ -n $writer_job ]] || kill -0 -- "-$writer_pgid" 2>/dev/null; then
        fail "the writer did not stop within 30 s after the crash"
    fi
    writer_pgid=
}

# kill_writer: at exit, if the writer still runs: its process group only.
kill_writer() {
    if [[ -n $writer_pgid ]]; then
        kill -KILL -- "-$writer_pgid" 2>/dev/null || true
        writer_pgid=
    fi
    if [[ -n $writer_job ]]; then
        wait "$writer_job" 2>/dev/null || true
        writer_job=
    fi
}

# check_fsynced_files: every file of the manifest is there with its sha256.
check_fsynced_files() {
    local n
    n=$(count_lines "$(cat "$manifest")")
    (cd "$fs" && sha256sum --quiet -c "$manifest") >&2 ||
        fail "fsynced files lost or changed by the crash (see above)"
    info "$n fsynced files intact"
}

fsck_clean() {
    e2fsck -fn "$1" >"$tmpdir/work/fsck" 2>&1 || {
        cat "$tmpdir/work/fsck" >&2
        fail "e2fsck -fn $1 is not clean"
    }
}

make_array --chunk 256K --name crashtest --size 64M --no-mount
m0=${ARRAY_MEMBERS[0]} m1=${ARRAY_MEMBERS[1]} bm=$ARRAY_BITMAP mnt=$ARRAY_MNT
v=$(volume_size "$m0")
c=$(chunk_size "$bm")
[[ $v -eq $size && $c -eq $chunk ]] || fail "create: V=$v C=$c, expected $size $chunk"
nchunks=$(((v + c - 1) / c))

mount_array
attach_loop "$mnt/volume"
mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 "$loop_dev"
mount_ext4 "$loop_dev" "$fs"

for ((cycle = 1; cycle <= cycles; cycle++)); do
    info "cycle $cycle/$cycles: write, then SIGKILL the daemon mid-write"
    start_writer "$cycle"
    sleep "$((1 + RANDOM % 2)).$((RANDOM % 10))"
    written=$(find "$fs" -maxdepth 1 -name "c$cycle-*" 2>/dev/null | wc -l)
    [[ $written -gt 0 ]] || fail "the writer wrote nothing before the kill"
    kill_mdfuse stop_writer

    info "cycle $cycle: check invariant I on the files left by the dead daemon"
    dirty=$(checked_dirty_chunks "$bm")
    ndirty=$(count_lines "$dirty")
    differ=$(differing_chunks "$v" "$c" "$m0" "$m1")
    info "dirty chunks: $ndirty of $nchunks; chunks where the members differ: $(count_lines "$differ")"
    assert_subset "$differ" "$dirty" "chunks differ between members but have no dirty bit"
    [[ $ndirty -gt 0 ]] || fail "no dirty bit after a SIGKILL during writes"
    for m in "$m0" "$m1"; do
        state=$(examine "$m" State)
        [[ $state == active ]] || fail "$m: State '$state' after a crash during writes, expected active"
    done

    info "cycle $cycle: remount, resync only the dirty chunks"
    mount_array
    xy=$(resync_counts "$MDFUSE_LOG")
    read -r x y <<<"$xy"
    info "resync copied $x of $y chunks"
    [[ $y -eq $nchunks ]] || fail "resync: Y=$y, expected $nchunks chunks"
    [[ $x -eq $ndirty ]] || fail "resync copied $x chunks, but $ndirty bits were dirty"
    [[ $x -lt $y ]] || fail "resync copied every chunk ($x of $y): the bitmap was not used"
    assert_members_identical "$v" "$c" "$m0" "$m1"

    info "cycle $cycle: ext4 journal replay, fsynced files, e2fsck"
    attach_loop "$mnt/volume"
    mount_ext4 "$loop_dev" "$fs"
    check_fsynced_files
    umount_ext4 "$fs"
    fsck_clean "$loop_dev"
    mount_ext4 "$loop_dev" "$fs"
done

info "clean unmount"
umount_ext4 "$fs"
detach_loop "$loop_dev"
stop_mdfuse
dirty=$(checked_dirty_chunks "$bm")
[[ -z $dirty ]] || fail "dirty bits after a clean unmount: $(tr '\n' ' ' <<<"$dirty")"
assert_members_identical "$v" "$c" "$m0" "$m1"
fsck_clean "$m1"

# Part 2: the same crash with 3 writers hammering the volume directly with
# O_DIRECT 1 MiB writes, so that a SIGKILL is likelier to land between the
# writes of one request to the two members.  The writers stay in the first
# half of the volume: no chunk of the second half may be dirty.
raw_cycles=${RAW_CRASH_CYCLES:-5}
half=$((v / 2))
head -c $((1024 * 1024)) /dev/urandom >"$tmpdir/work/raw"
raw_pids=()
start_raw_writers() {
    local w
    rm -f "$tmpdir/work/raw.stop"
    for w in 1 2 3; do
        (
            i=$w
            while [[ ! -e $tmpdir/work/raw.stop ]]; do
                dd if="$tmpdir/work/raw" of="$mnt/volume" bs=1M count=1 \
                    oflag=direct,seek_bytes seek=$((((i * 997) % ((half - 1048576) / 4096)) * 4096)) \
                    conv=notrunc status=none 2>/dev/null || true
                i=$((i + 3))
            done
        ) &
        raw_pids+=("$!")
    done
}
stop_raw_writers() {
    local p
    touch "$tmpdir/work/raw.stop"
    for p in "${raw_pids[@]}"; do
        wait "$p" || true
    done
    raw_pids=()
}
cleanup_fn stop_raw_writers

differed=0
for ((cycle = 1; cycle <= raw_cycles; cycle++)); do
    info "raw cycle $cycle/$raw_cycles: O_DIRECT writers, SIGKILL"
    mount_array
    start_raw_writers
    # Kill only once writing has begun (a loaded machine may be slow to
    # start the writers): the first bit reaches the file before any data.
    for _ in $(seq 200); do
        [[ -n $("$MDFUSECTL" examine-bitmap --dirty "$bm") ]] && break
        sleep 0.05
    done
    sleep "0.$((3 + RANDOM % 7))"
    kill_mdfuse stop_raw_writers
    dirty=$(checked_dirty_chunks "$bm")
    ndirty=$(count_lines "$dirty")
    differ=$(differing_chunks "$v" "$c" "$m0" "$m1")
    info "dirty chunks: $ndirty of $nchunks; chunks where the members differ: $(count_lines "$differ")"
    if [[ -n $differ ]]; then
        differed=$((differed + 1))
    fi
    assert_subset "$differ" "$dirty" "chunks differ between members but have no dirty bit"
    [[ $ndirty -gt 0 ]] || fail "no dirty bit after a SIGKILL during writes"
    outside=$(awk -v h="$((half / c))" '$1 >= h' <<<"$dirty")
    [[ -z $outside ]] ||
        fail "dirty bits for chunks no one wrote (writes stayed below chunk $((half / c))): $(tr '\n' ' ' <<<"$outside")"

    mount_array
    xy=$(resync_counts "$MDFUSE_LOG")
    read -r x y <<<"$xy"
    [[ $x -eq $ndirty && $y -eq $nchunks ]] ||
        fail "resync copied $x of $y chunks; expected $ndirty of $nchunks"
    assert_members_identical "$v" "$c" "$m0" "$m1"
    stop_mdfuse
done
info "the members differed after $differed of $raw_cycles raw crashes (all inside dirty chunks)"

dirty=$(checked_dirty_chunks "$bm")
[[ -z $dirty ]] || fail "dirty bits after a clean unmount: $(tr '\n' ' ' <<<"$dirty")"
info "PASS"
