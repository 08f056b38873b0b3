#!/usr/bin/env bash
# The source of a background resync fails (SPEC §8): the next current
# member becomes the source, the log says so, and reads stay consistent.
#
# A crash state is built as in test-bg-resync-reads.sh (members on faultfs:
# every chunk dirty, three chunks planted with different data on m0 and
# m1).  During the slow resync the planted chunks read as m0's data; then
# m0's reads fail (faultfs: pread EIO): the next read marks m0 faulty and
# is served by m1, which is the source from then on, so every later read
# returns m1's data.  mdfusectl wait ends, but exits non-zero: the volume
# cannot get back in sync without m0.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires jq

make_tmpdir
cd "$tmpdir" || exit 1
C=$((1024 * 1024))
make_array --size 32M --chunk 1M --faultfs --daemon-sleep 1
dd if=/dev/urandom of=mnt/volume bs=1M count=32 oflag=direct conv=notrunc status=none ||
    fail "the first write failed"
kill_mdfuse

planted=(3 10 20)
plant_differing $C "${planted[@]}"
a_sum=$PLANT_SUM0 b_sum=$PLANT_SUM1

MDFUSE_NO_WAIT=1 mount_array -o resync_min=1M,resync_max=1M
"$MDFUSECTL" status --json mnt | jq -e '.resync != null' >/dev/null ||
    fail "no background resync is running"
for c in "${planted[@]}"; do
    [[ $(chunk_sha mnt/volume $C "$c") == "$a_sum" ]] || fail "before the fault, chunk $c does not read as the source (m0)"
done

# m0 fails every read from now on.
faultfs_ctl "$tmpdir/m" fail m0 pread EIO always
for round in 1 2 3; do
    for c in "${planted[@]}"; do
        s=$(chunk_sha mnt/volume $C "$c")
        [[ $s == "$b_sum" ]] || fail "round $round: chunk $c does not read as the new source (m1)"
    done
done
grep -q "m0: the resync's source failed; .*m1 is the source now" "$MDFUSE_LOG" ||
    { cat "$MDFUSE_LOG" >&2; fail "the log does not say that the source changed"; }
"$MDFUSECTL" status --json mnt |
    jq -e '.members[0].state == "faulty" and .members[1].state == "active"' >/dev/null ||
    fail "m0 is not faulty after its reads failed"

"$MDFUSECTL" resync-rate --max 0 mnt >/dev/null || fail "mdfusectl resync-rate failed"
st=0
"$MDFUSECTL" wait mnt >"$tmpdir/wait.out" 2>&1 || st=$?
[[ $st -ne 0 ]] || fail "mdfusectl wait succeeded on a volume that lost a member"
grep -q "not whole" "$tmpdir/wait.out" || fail "mdfusectl wait did not say why: $(cat "$tmpdir/wait.out")"
for c in "${planted[@]}"; do
    [[ $(chunk_sha mnt/volume $C "$c") == "$b_sum" ]] || fail "after the resync, chunk $c changed again"
done
faultfs_ctl "$tmpdir/m" clear
stop_mdfuse
info "the source failed mid-resync: m1 took over, reads consistent, wait exits $st"
