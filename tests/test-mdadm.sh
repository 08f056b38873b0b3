#!/usr/bin/env bash
# mdfuse: the on-disk formats are md's (SPEC §2, §3).  mdadm --examine reads
# a member's v1.0 superblock (checksum "correct") and mdadm --examine-bitmap
# reads the bitmap file, and their figures agree with mdfusectl's: UUID,
# events, chunk size, volume size, bits and dirty bits, state.  Checked on a
# cleanly unmounted array and on one whose daemon was SIGKILLed mid-write.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires mdadm

size=$((64 * 1024 * 1024))
chunk=$((1024 * 1024))
nchunks=$((size / chunk))

make_tmpdir

# mdadm_examine MEMBER: mdadm --examine output.  mdadm 4.2 reads a plain
# file; should it want a block device, a read-only loop device stands in.
mdadm_examine() {
    local out
    if out=$(mdadm --examine "$1" 2>"$tmpdir/mdadm.err") &&
        field Magic <<<"$out" >/dev/null; then
        printf '%s\n' "$out"
        return 0
    fi
    info "mdadm --examine $1 failed on the plain file ($(head -n 1 "$tmpdir/mdadm.err")); retrying on a read-only loop device"
    local dev
    dev=$(losetup -r -f --show "$1") || fail "losetup -r $1 failed"
    out=$(mdadm --examine "$dev") || {
        losetup -d "$dev"
        fail "mdadm --examine $1 (on $dev) failed"
    }
    losetup -d "$dev"
    printf '%s\n' "$out"
}

# get KEY TEXT: the value of KEY in TEXT, which must be there.
get() {
    field "$1" <<<"$2" || {
        printf '%s\n' "$2" >&2
        fail "no '$1' line in the output above"
    }
}

# first_number TEXT: the leading number of TEXT ("65536 KiB (...)" -> 65536).
first_number() {
    local n=${1%%[!0-9]*}
    [[ -n $n ]] || fail "no number at the start of '$1'"
    printf '%s\n' "$n"
}

# mdadm_chunk_bytes "1 MB": mdadm's human_chunksize (powers of 1024) in bytes.
mdadm_chunk_bytes() {
    local n unit
    read -r n unit <<<"$1"
    case $unit in
    B) echo "$n" ;;
    KB) echo $((n << 10)) ;;
    MB) echo $((n << 20)) ;;
    GB) echo $((n << 30)) ;;
    TB) echo $((n << 40)) ;;
    *) fail "unknown mdadm chunk size unit in '$1'" ;;
    esac
}

same() { # WHAT A B
    [[ $2 == "$3" ]] || fail "$1: mdadm says '$2', mdfusectl says '$3'"
}

# check_member MEMBER SLOT STATE
check_member() {
    local m=$1 slot=$2 want_state=$3 md ours fsize dsize super
    md=$(mdadm_examine "$m")
    ours=$("$MDFUSECTL" examine "$m")
    info "mdadm --examine $m:"
    printf '%s\n' "$md" >&2

    same "$m: Magic" "$(get Magic "$md")" a92b4efc
    same "$m: Version" "$(get Version "$md")" 1.0
    same "$m: Feature Map" "$(get "Feature Map" "$md")" 0x0
    same "$m: Raid Level" "$(get "Raid Level" "$md")" raid1
    same "$m: Raid Devices" "$(get "Raid Devices" "$md")" "$(get "Raid Devices" "$ours")"
    same "$m: Array UUID" "$(get "Array UUID" "$md")" "$(get "Array UUID" "$ours")"
    same "$m: Events" "$(get Events "$md")" "$(get Events "$ours")"
    same "$m: State" "$(get State "$md")" "$(get State "$ours")"
    same "$m: State" "$(get State "$md")" "$want_state"
    same "$m: Device Role" "$(get "Device Role" "$md")" "$(get "Device Role" "$ours")"
    same "$m: Device Role" "$(get "Device Role" "$md")" "Active device $slot"
    [[ $(get Name "$md") == mdadmtest* ]] || fail "$m: Name '$(get Name "$md")', expected mdadmtest"
    [[ $(get Checksum "$md") == *"- correct" ]] ||
        fail "$m: mdadm finds the superblock checksum wrong: $(get Checksum "$md")"
    [[ $(get "Array State" "$md") == AA* ]] ||
        fail "$m: Array State '$(get "Array State" "$md")', expected AA"

    # Sizes: mdadm in KiB and sectors, mdfusectl in bytes.
    same "$m: Array Size (bytes)" "$(($(first_number "$(get "Array Size" "$md")") * 1024))" \
        "$(get "Volume Size" "$ours")"
    same "$m: Avail Dev Size (bytes)" "$(($(first_number "$(get "Avail Dev Size" "$md")") * 512))" "$size"
    # mdadm prints Data Offset only when it is not 0.
    if field "Data Offset" <<<"$md" >/dev/null; then
        same "$m: Data Offset" "$(first_number "$(get "Data Offset" "$md")")" 0
    fi
    fsize=$(stat -c %s "$m")
    dsize=$((fsize / 512))
    super=$(((dsize - 16) & ~7))
    same "$m: Super Offset (sectors)" "$(first_number "$(get "Super Offset" "$md")")" "$super"
}

# check_bitmap BITMAP
check_bitmap() {
    local f=$1 md ours bits dirty ndirty
    md=$(mdadm --examine-bitmap "$f") || fail "mdadm --examine-bitmap $f failed"
    ours=$("$MDFUSECTL" examine-bitmap "$f")
    info "mdadm --examine-bitmap $f:"
    printf '%s\n' "$md" >&2

    same "$f: Magic" "$(get Magic "$md")" 6d746962
    same "$f: Version" "$(get Version "$md")" 4
    same "$f: UUID" "$(get UUID "$md")" "$(get UUID "$ours")"
    same "$f: UUID vs member Array UUID" "$(get UUID "$md")" "$(examine "$m0" "Array UUID")"
    same "$f: Events" "$(get Events "$md")" "$(get Events "$ours")"
    same "$f: Events Cleared" "$(get "Events Cleared" "$md")" "$(get "Events Cleared" "$ours")"
    same "$f: State" "$(get State "$md")" "$(get State "$ours")"
    same "$f: State" "$(get State "$md")" OK
    same "$f: Chunksize (bytes)" "$(mdadm_chunk_bytes "$(get Chunksize "$md")")" "$(get Chunksize "$ours")"
    same "$f: Chunksize (bytes)" "$(mdadm_chunk_bytes "$(get Chunksize "$md")")" "$chunk"
    same "$f: Sync Size (bytes)" "$(($(first_number "$(get "Sync Size" "$md")") * 1024))" "$(get "Sync Size" "$ours")"
    same "$f: Sync Size (bytes)" "$(($(first_number "$(get "Sync Size" "$md")") * 1024))" "$size"
    same "$f: Daemon" "$(get Daemon "$md")" "5s flush period"

    bits=$(get Bitmap "$md")
    [[ $bits =~ ^([0-9]+)\ bits\ \(chunks\),\ ([0-9]+)\ dirty ]] ||
        fail "$f: cannot parse mdadm's Bitmap line '$bits'"
    same "$f: bits" "${BASH_REMATCH[1]}" "$nchunks"
    dirty=$(checked_dirty_chunks "$f")
    ndirty=$(count_lines "$dirty")
    same "$f: dirty bits (vs examine-bitmap --dirty)" "${BASH_REMATCH[2]}" "$ndirty"
    same "$f: Bitmap line" "${bits%% (*}" "$(get Bitmap "$ours" | sed 's/ (.*//')"
    printf '%s\n' "$ndirty"
}

make_array --name mdadmtest --size 64M --no-mount
m0=${ARRAY_MEMBERS[0]} m1=${ARRAY_MEMBERS[1]} bm=$ARRAY_BITMAP mnt=$ARRAY_MNT

info "a clean array, after some writes and a clean unmount"
mount_array
random_file "$tmpdir/data" $((3 * 1024 * 1024))
dd if="$tmpdir/data" of="$mnt/volume" bs=64K seek=100 conv=notrunc,fsync status=none
stop_mdfuse
check_member "$m0" 0 clean
check_member "$m1" 1 clean
ndirty=$(check_bitmap "$bm")
[[ $ndirty -eq 0 ]] || fail "clean array: $ndirty dirty bits"
same "events: member vs bitmap" "$(examine "$m0" Events)" "$(examine_bitmap "$bm" Events)"

info "an array whose daemon was SIGKILLed during writes"
mount_array
stop=$tmpdir/writer.stop
# The writer stays in the first half of the volume, so that some bits
# stay clear.
(
    i=0
    while [[ ! -e $stop ]]; do
        dd if="$tmpdir/data" of="$mnt/volume" bs=64K count=8 \
            seek=$(((i * 131) % (size / 65536 / 2 - 8))) conv=notrunc,fsync status=none 2>/dev/null || true
        i=$((i + 1))
    done
) &
writer=$!
stop_writer() {
    touch "$stop"
    _wait_pid_exit "$writer" 30 || fail "the writer did not stop"
    wait "$writer" || true
    writer=
}
writer_cleanup() {
    if [[ -n $writer ]]; then
        touch "$stop"
        wait "$writer" || true
    fi
}
cleanup_fn writer_cleanup
sleep 1.5
kill_mdfuse stop_writer
check_member "$m0" 0 active
check_member "$m1" 1 active
ndirty=$(check_bitmap "$bm")
[[ $ndirty -gt 0 ]] || fail "no dirty bit after a SIGKILL during writes"
[[ $ndirty -le $((nchunks / 2 + 1)) ]] ||
    fail "$ndirty dirty bits, but only the first $((nchunks / 2)) chunks were written"
same "events: member vs bitmap" "$(examine "$m0" Events)" "$(examine_bitmap "$bm" Events)"

info "remount: resync of the dirty chunks, then clean again"
mount_array
xy=$(resync_counts "$MDFUSE_LOG")
[[ $xy == "$ndirty $nchunks" ]] || fail "resync '$xy', expected '$ndirty $nchunks'"
stop_mdfuse
check_member "$m0" 0 clean
check_member "$m1" 1 clean
ndirty=$(check_bitmap "$bm")
[[ $ndirty -eq 0 ]] || fail "after resync and clean unmount: $ndirty dirty bits"
info "PASS"
