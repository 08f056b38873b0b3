#!/usr/bin/env bash
# mdfuse -o writeback_cache: buffered writes to `volume` wait in the
# kernel's page cache, and every write that was fsynced survives a SIGKILL
# of the daemon followed by a power cut of the members' disk.
#
# The members are on faultfs with its volatile write cache
# (tests/faultfs.c): a write is durable only once the daemon fdatasyncs
# that member, and `cut 0` gives back every sector written since.  So a
# daemon whose FSYNC does not make the members durable fails here, as
# does one that loses a write the kernel's writeback sent it.  The bitmap
# is on its own small tmpfs; its clearing pass sleeps 600 s, so no member
# sync but the FSYNCs runs under the test.
#
# Claims tested:
#   - the daemon says it runs with the writeback cache (its log), on
#     whichever transport MDFUSE_TEST_OPTS names;
#   - writes past the end of the volume fail: a buffered one at fsync
#     (ENOSPC) or, without fsync, at close (the kernel took it into its
#     page cache), a direct one at once; the part of a buffered write that
#     lies inside the volume is written;
#   - each of WBC_CYCLES cycles (default 3):
#     (a) one buffered descriptor pwrites ranges of random offsets and
#         lengths, fsyncs, then writes more without fsync, the last of it
#         while the daemon is stopped (SIGSTOP): that write returns, so it
#         went no further than the page cache.  SIGKILL of the daemon, a
#         cut of the members' disk keeping nothing unsynced.  Then every
#         chunk where the members differ has its bit set (invariant I),
#         the next mount copies exactly the dirty chunks, every fsynced
#         byte (of this cycle and the ones before) reads back, and the
#         members are identical;
#     (b) ext4 on a plain (buffered) loop device over the volume: files
#         fsynced one by one, files made durable by `sync -f`, files never
#         synced, and a writer that fsyncs each new file; SIGKILL at a
#         random moment, the same cut, detach.  Then invariant I, the
#         resync of exactly the dirty chunks, identical members; ext4
#         mounts (replaying its journal), every file whose fsync or
#         syncfs returned has its checksum, and e2fsck -fn is clean after
#         the unmount.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires mkfs.ext4
requires e2fsck
[[ -x $FAULTFS ]] || fail "faultfs binary not found: $FAULTFS (set FAULTFS)"
: "${MMAP_VOLUME:=$top_builddir/tests/mmap_volume}"
[[ -x $MMAP_VOLUME ]] || fail "$MMAP_VOLUME is missing (make check builds it)"

cycles=${WBC_CYCLES:-3}
# The resync of a killed daemon goes through faultfs on a loaded machine.
: "${MDFUSE_START_TIMEOUT:=60}"

make_tmpdir
cd "$tmpdir" || exit 1
mib=$((1024 * 1024))
V=$((64 * mib))
C=$((256 * 1024))
# ext4 in the first half (the loop device shows only that); fsynced pwrites
# in [32 MiB, 48 MiB), model.bin their model; unsynced ones above.
export LOOP_SIZELIMIT=$((32 * mib))
SYNC_BASE=$((32 * mib)) SYNC_LEN=$((16 * mib))
UNSYNC_BASE=$((48 * mib)) UNSYNC_LEN=$((16 * mib))
truncate -s "$SYNC_LEN" model.bin
: >sums
mkdir ext

make_array --faultfs=volatile --size 64M --chunk 256K --daemon-sleep 600 \
    -o writeback_cache --no-mount
[[ $ARRAY_SIZE -eq $V ]] || fail "Volume Size $ARRAY_SIZE, expected $V"
vol=$ARRAY_MNT/volume

# mount_wbc: mount the array; its daemon must say it runs with the
# writeback cache.
mount_wbc() {
    mount_array
    grep -q "writeback cache on" "$MDFUSE_LOG" || {
        _show_log "$MDFUSE_LOG"
        fail "-o writeback_cache: $MDFUSE_LOG does not say 'writeback cache on'"
    }
}

# The daemon stopped by the test (SIGSTOP), until it is killed.  It is
# continued before anything else at exit: a writer waiting for its answer
# cannot be killed (a FUSE request the daemon has taken is waited for),
# and its cleanup could not stop it either.
stopped_pid=
_continue_stopped() {
    if [[ -n $stopped_pid ]]; then
        kill -CONT "$stopped_pid" 2>/dev/null || true
        stopped_pid=
    fi
}

# await_mark FILE PID WHAT: wait until FILE exists; fail if PID (the
# writer) died first, or after 60 s.
await_mark() {
    local file=$1 pid=$2 what=$3 i
    for ((i = 0; i < 1200; i++)); do
        [[ -e $file ]] && return 0
        if ! _pid_running "$pid"; then
            _show_log "$tmpdir/holder.err"
            fail "$what: the writer exited first"
        fi
        sleep 0.05
    done
    _continue_stopped
    _show_log "$tmpdir/holder.err"
    fail "$what: not done within 60 s"
}

# kill_and_cut [CMD...]: SIGKILL the daemon (then run CMD), cut the
# members' disk keeping no unsynced sector, and check invariant I on the
# files; sets expect_copied.  faultfs is mounted again for the next mount.
kill_and_cut() {
    local differ dirty
    kill_mdfuse "$@"
    stopped_pid=
    faultfs_ctl m cut 0
    info "cut: $(faultfs_stat m cut_lost_sectors) unsynced sectors of the members lost"
    differ=$(differing_chunks "$V" "$C" "${ARRAY_BACK[0]}" "${ARRAY_BACK[1]}")
    dirty=$(checked_dirty_chunks "$ARRAY_BITMAP")
    assert_subset "$differ" "$dirty" "cycle $cycle: chunks that differ but have no bit"
    expect_copied=$(count_lines "$dirty")
    info "after the kill: $expect_copied chunks dirty, $(count_lines "$differ") differ"
    faultfs_unmount m
    faultfs_mount back m volatile
}

# mount_after_kill: mount again; the resync copies exactly the dirty
# chunks.
mount_after_kill() {
    local copied chunks
    mount_wbc
    read -r copied chunks < <(resync_counts "$MDFUSE_LOG")
    [[ $copied -eq $expect_copied ]] ||
        fail "cycle $cycle: the resync copied $copied of $chunks chunks, the bitmap had $expect_copied dirty"
}

# stop_and_compare: clean unmount; the members are identical.
stop_and_compare() {
    stop_mdfuse
    assert_members_identical "$V" "$C" "${ARRAY_BACK[@]}"
}

# ---------------------------------------------------------------------------
# Writes past the end, and ext4 made once.
# ---------------------------------------------------------------------------

mount_wbc
random_file page.bin 4096
random_file two.bin 8192
expect_fail "No space left on device" \
    dd if=page.bin of="$vol" bs=4096 seek=$((V / 4096)) conv=notrunc,fsync status=none
expect_fail "No space left on device" \
    dd if=page.bin of="$vol" bs=4096 seek=$((V / 4096 + 2)) conv=notrunc status=none
expect_fail "No space left on device" \
    dd if=page.bin of="$vol" bs=4096 seek=$((V / 4096 + 4)) oflag=direct conv=notrunc status=none
# A buffered write across the end: its first page lands, fsync fails.
expect_fail "No space left on device" \
    dd if=two.bin of="$vol" bs=8192 seek=$((V - 4096)) oflag=seek_bytes conv=notrunc,fsync status=none
dd if="$vol" bs=4096 skip=$((V / 4096 - 1)) count=1 iflag=direct status=none >last.back ||
    fail "reading the last page of $vol failed"
cmp -s -n 4096 two.bin last.back ||
    fail "$vol: the part of a buffered write across the end that lies inside the volume was not written"
info "writes past the end failed; the kernel's size of $vol is now $(stat -c %s "$vol") (V = $V) until it is unmounted"
stop_and_compare

mount_wbc
attach_loop "$vol"
[[ $(losetup -n -O DIO "$loop_dev" | tr -d ' ') == 0 ]] ||
    fail "$loop_dev: a plain losetup should not be in direct-I/O mode"
mkfs.ext4 -q -F -b 4096 -E nodiscard "$loop_dev" || fail "mkfs.ext4 on $loop_dev failed"
detach_loop "$loop_dev"
stop_and_compare

# Writes new files under ext/w; a file's sha256 is recorded only once its
# fsync (and its directory's) returned.
writer_ext4() {
    local i=0 f sum
    mkdir -p ext/w && sync ext/w || return 0
    while :; do
        i=$((i + 1))
        f=ext/w/f$i
        head -c $((4096 + RANDOM)) /dev/urandom >"$f" 2>/dev/null || return 0
        sum=$(sha256sum <"$f" | cut -d' ' -f1)
        sync "$f" 2>/dev/null || return 0
        sync ext/w 2>/dev/null || return 0
        echo "$sum $f" >>"$tmpdir/writer.sums"
    done
}

# add_file PATH SIZE: a new file of random bytes in ext4, its checksum
# kept in new.sums (recorded in sums once it is durable).
add_file() {
    random_file "$tmpdir/piece" "$2"
    cp "$tmpdir/piece" "$1" || fail "writing $1 failed"
    echo "$(sha256_of "$tmpdir/piece") $1" >>"$tmpdir/new.sums"
}

# check_sums LIST WHAT: every file of LIST has its checksum.
check_sums() {
    local sum f n=0
    while read -r sum f; do
        [[ -f $f ]] || fail "cycle $cycle: $2 file $f is gone"
        [[ $(sha256_of "$f") == "$sum" ]] || fail "cycle $cycle: $2 file $f lost its content"
        n=$((n + 1))
    done <"$1"
    info "cycle $cycle: $n $2 files intact"
}

for ((cycle = 1; cycle <= cycles; cycle++)); do
    # -----------------------------------------------------------------------
    # (a) pwrite, fsync, more writes, SIGKILL.
    # -----------------------------------------------------------------------
    mount_wbc
    rm -f synced ready go
    : >cmds
    for ((i = 0; i < 8; i++)); do
        len=$((1 + (RANDOM * 32768 + RANDOM) % (192 * 1024)))
        off=$(((RANDOM * 32768 + RANDOM) % (SYNC_LEN - len)))
        random_file "sync.$i.bin" "$len"
        echo "pwrite $((SYNC_BASE + off)) sync.$i.bin" >>cmds
        dd if="sync.$i.bin" of=model.bin bs="$len" seek="$off" oflag=seek_bytes \
            conv=notrunc status=none
    done
    for i in 0 1; do
        random_file "unsync.$i.bin" $((64 * 1024))
        uoff[i]=$((UNSYNC_BASE + (RANDOM % (UNSYNC_LEN / 4096 - 16)) * 4096))
    done
    cat >>cmds <<EOF
fsync
pwrite ${uoff[0]} unsync.0.bin
mark $tmpdir/synced
await $tmpdir/go
pwrite ${uoff[1]} unsync.1.bin
mark $tmpdir/ready
EOF
    "$MMAP_VOLUME" hold "$vol" <cmds 2>holder.err &
    holder=$!
    bg_pids+=("$holder")
    cleanup_fn kill_bg_jobs
    await_mark synced "$holder" "cycle $cycle: 8 pwrites, fsync and a pwrite"
    # Stopped, the daemon answers nothing: a write that returns now went
    # no further than the kernel's page cache.
    kill -STOP "$MDFUSE_PID"
    stopped_pid=$MDFUSE_PID
    cleanup_fn _continue_stopped
    touch go
    await_mark ready "$holder" "cycle $cycle: a buffered pwrite while the daemon is stopped (is the page cache in use?)"
    info "cycle $cycle: 8 pwrites fsynced, 2 not; the last returned while the daemon was stopped"
    kill_and_cut kill_bg_jobs
    mount_after_kill
    dd if="$vol" bs=1M skip=$((SYNC_BASE / mib)) count=$((SYNC_LEN / mib)) iflag=direct \
        status=none >sync.back || fail "reading back $vol failed"
    cmp -s model.bin sync.back ||
        fail "cycle $cycle: $vol does not hold every fsynced byte after the SIGKILL and cut ($(cmp model.bin sync.back 2>&1 | head -n 1))"
    info "cycle $cycle: every byte fsynced so far is there"
    stop_and_compare

    # -----------------------------------------------------------------------
    # (b) ext4 on a plain loop device, SIGKILL.
    # -----------------------------------------------------------------------
    mount_wbc
    attach_loop "$vol"
    mount_ext4 "$loop_dev" ext
    mkdir -p "ext/c$cycle"
    : >new.sums
    for i in 1 2 3 4; do
        add_file "ext/c$cycle/f$i" $((RANDOM * 4 + 1))
        sync "ext/c$cycle/f$i" "ext/c$cycle" || fail "fsync of ext/c$cycle/f$i failed"
    done
    for i in 1 2 3; do
        add_file "ext/c$cycle/g$i" $((RANDOM * 4 + 1))
    done
    sync -f ext || fail "sync -f ext failed"
    cat new.sums >>sums
    for i in 1 2 3; do
        head -c $((RANDOM * 4 + 1)) /dev/urandom >"ext/c$cycle/h$i"
    done
    : >writer.sums
    writer_ext4 &
    writer=$!
    bg_pids+=("$writer")
    cleanup_fn kill_bg_jobs
    sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.3 + (r % 100) / 100 }')"
    info "cycle $cycle: ext4: 4 files fsynced, 3 synced by sync -f, 3 never; SIGKILL under the writer"
    kill_and_cut kill_bg_jobs
    mount_after_kill
    attach_loop "$vol"
    mount_ext4 "$loop_dev" ext
    check_sums sums "fsynced or syncfs'd"
    check_sums writer.sums "fsynced (writer)"
    rm -rf ext/w
    umount_ext4 ext
    e2fsck -fn "$loop_dev" >fsck.log 2>&1 || {
        cat fsck.log >&2
        fail "cycle $cycle: e2fsck -fn is not clean"
    }
    detach_loop "$loop_dev"
    stop_and_compare
    info "cycle $cycle/$cycles done"
done
