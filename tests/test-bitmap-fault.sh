#!/usr/bin/env bash
# The bitmap file fails (its file system goes away: ENOTCONN) while the
# volume is in use.  SPEC §6: the volume keeps working without the bitmap,
# the members' events move past the bitmap's so it is stale even though its
# STALE flag could not be written, the next mount copies everything, and no
# acknowledged write is lost.
#
# The bitmap lives on the `volume` of a second mdfuse (a FUSE file system
# we can kill), on its own device as the rule wants.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env

make_tmpdir
cd "$tmpdir" || exit 1
V=$((32 * 1024 * 1024))
C=$((1024 * 1024))

# The inner volume, 64 KiB, holds the outer array's bitmap file.
make_array --as inner --size 64K --chunk 4K
inner_pid=$MDFUSE_PID
inner_opts=$ARRAY_OPTS inner_members=$(IFS=:; printf '%s' "${ARRAY_MEMBERS[*]}")
make_array --size 32M --no-mount
dd if=bm/b of=inner.mnt/volume bs=4k conv=notrunc,fsync status=none
bitmap=$tmpdir/inner.mnt/volume

start_mdfuse -o "bitmap=$bitmap" m/m0:m/m1 mnt
outer_pid=$MDFUSE_PID
head -c $((4 * C)) /dev/urandom >a.bin
dd if=a.bin of=mnt/volume bs=1M seek=2 conv=notrunc,fsync status=none
[[ $("$MDFUSECTL" status --json mnt | grep -c '"in_use":true') -eq 1 ]] ||
    fail "the bitmap is not in use before the fault"

# The bitmap's file system dies.
info "SIGKILL the inner mdfuse: the bitmap file is gone"
MDFUSE_PID=$inner_pid
kill_mdfuse

# Writes to new chunks need new bits: the flush fails, the volume goes on.
head -c $((6 * C)) /dev/urandom >b.bin
dd if=b.bin of=mnt/volume bs=1M seek=20 conv=notrunc,fsync status=none ||
    fail "a write failed after the bitmap file failed"
cmp -s <(dd if=mnt/volume bs=1M skip=20 count=6 status=none) b.bin ||
    fail "data written after the bitmap failed does not read back"
status=$("$MDFUSECTL" status --json mnt)
grep -q '"in_use":false' <<<"$status" || fail "status does not say the bitmap was abandoned: $status"
grep -q "bitmap .*failed" "$MDFUSE_LOG" || fail "the daemon did not log the bitmap failure"
ev_members=$(examine m/m0 Events)

MDFUSE_PID=$outer_pid
stop_mdfuse

# Bring the inner file system back: the bitmap file is as the fault left it.
start_mdfuse -o "$inner_opts" "$inner_members" inner.mnt
ev_bitmap=$(examine_bitmap "$bitmap" Events)
[[ $(examine m/m0 Events) -gt $ev_bitmap ]] ||
    fail "members' events ($(examine m/m0 Events)) not past the bitmap's ($ev_bitmap): it would look current"
[[ $ev_members -gt $ev_bitmap ]] ||
    fail "events were not bumped when the bitmap failed ($ev_members vs $ev_bitmap)"

# Next mount: stale, full resync, nothing lost.
start_mdfuse -o "bitmap=$bitmap" m/m0:m/m1 mnt
read -r copied chunks < <(resync_counts "$MDFUSE_LOG")
[[ $copied -eq $chunks && $chunks -eq $((V / C)) ]] ||
    fail "after a bitmap failure the resync copied $copied of $chunks chunks, not all"
grep -q "stale" "$MDFUSE_LOG" || fail "the daemon did not say the bitmap is stale"
cmp -s <(dd if=mnt/volume bs=1M skip=2 count=4 status=none) a.bin ||
    fail "data written before the fault was lost"
cmp -s <(dd if=mnt/volume bs=1M skip=20 count=6 status=none) b.bin ||
    fail "data written after the fault was lost"
stop_mdfuse
assert_members_identical "$V" "$C" m/m0 m/m1
[[ $(examine_bitmap "$bitmap" State) == OK ]] || fail "bitmap not OK after the full resync"
[[ $(dirty_chunks "$bitmap" | wc -l) -eq 0 ]] || fail "dirty bits left after a clean unmount"
info "bitmap fault: volume kept working, next mount copied $copied of $chunks chunks, nothing lost"
