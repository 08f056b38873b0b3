#!/usr/bin/env bash
# mmap(MAP_SHARED) of `volume` (FUSE_DIRECT_IO_ALLOW_MMAP, fuse/wire.c).
#
# Claims tested:
#   - a mapping shows what pwrite() wrote to its range, even when its
#     pages were read (and cached) before;
#   - data written through a mapping and msync(MS_SYNC)ed survives a
#     SIGKILL of the daemon taken while the mapping is still in place (so
#     it came through the msync, not through a close), and is then on both
#     members alike;
#   - the kernel writes the mapped pages back as ordinary writes: the bits
#     of their chunks are set in the bitmap file (invariant I, SPEC §4)
#     once the msync has returned, and the next mount copies exactly those
#     chunks.
# The bitmap's lazy clearing sleeps 600 s here, so that no bit is cleared
# under the test.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
require_kernel 6 6 "mmap(MAP_SHARED) of a FUSE direct_io file"
: "${MMAP_VOLUME:=$top_builddir/tests/mmap_volume}"
[[ -x $MMAP_VOLUME ]] || fail "$MMAP_VOLUME is missing (make check builds it)"

make_tmpdir
cd "$tmpdir" || exit 1
make_array --size 16M --chunk 1M --daemon-sleep 600
vol=$ARRAY_MNT/volume
mib=$((1024 * 1024))

# 1. A mapped read sees what pwrite wrote.
random_file pw.bin $((256 * 1024))
off=$((3 * mib))
"$MMAP_VOLUME" pwrite "$vol" "$off" pw.bin ||
    fail "$vol: a mapping of [$off, +256K) does not show what pwrite wrote there"
info "a mapping shows what pwrite wrote, its pages read before"
# And the pwrite reached the volume (read back with O_DIRECT).
dd if="$vol" bs=64K skip=$((off / 65536)) count=4 iflag=direct status=none >pw.back ||
    fail "reading back $vol at $off failed"
cmp -s pw.bin pw.back || fail "$vol at $off: not what pwrite wrote"

# 2. Written through a mapping, msynced, SIGKILL, remount.  The range
# spans chunks 5 and 6 (1 MiB + 8 KiB from 5 MiB + 4 KiB).
random_file map.bin $((mib + 8192))
off=$((5 * mib + 4096))
rm -f ready
"$MMAP_VOLUME" write "$vol" "$off" map.bin ready &
holder=$!
bg_pids+=("$holder")
cleanup_fn kill_bg_jobs
for _ in $(seq 300); do
    [[ -e ready ]] && break
    _pid_running "$holder" || break
    sleep 0.05
done
[[ -e ready ]] || fail "$vol: the write through the mapping and its msync did not finish"
info "written through the mapping and msynced; the mapping stays"

# The writeback of the mapped pages came as writes: their bits are set.
dirty=$(checked_dirty_chunks "$ARRAY_BITMAP")
assert_subset "$(lines 5 6)" "$dirty" \
    "chunks written through the mapping without their bit set in $ARRAY_BITMAP"
info "bits set after the msync: $(tr '\n' ' ' <<<"$dirty")"

kill_mdfuse kill_bg_jobs
dirty=$(checked_dirty_chunks "$ARRAY_BITMAP")
assert_subset "$(lines 5 6)" "$dirty" \
    "after the SIGKILL: chunks written through the mapping without their bit in $ARRAY_BITMAP"

mount_array
read -r copied total <<<"$(resync_counts "$MDFUSE_LOG")"
[[ $copied -eq $(count_lines "$dirty") ]] ||
    fail "the remount copied $copied of $total chunks, where $(count_lines "$dirty") bits were set"
dd if="$vol" bs=4096 skip=$((off / 4096)) count=$(((mib + 8192) / 4096)) iflag=direct \
    status=none >map.back || fail "reading back $vol at $off failed"
cmp -s map.bin map.back || fail "$vol at $off: the msynced data did not survive the SIGKILL"
info "after SIGKILL and remount (resync of $copied of $total chunks) the volume holds the msynced data"
stop_mdfuse

for m in "${ARRAY_MEMBERS[@]}"; do
    cmp -s -n $((mib + 8192)) map.bin <(tail -c +$((off + 1)) "$m") ||
        fail "$m at $off: not the data msynced through the mapping"
done
assert_members_identical "$ARRAY_SIZE" "$ARRAY_CHUNK" "${ARRAY_MEMBERS[@]}"
info "both members hold the msynced data and are identical"
