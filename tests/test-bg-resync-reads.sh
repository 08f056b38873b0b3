#!/usr/bin/env bash
# After a crash the volume is served at once, while the resync runs in the
# background (SPEC §8), and reads stay consistent meanwhile.
#
# A crash state is built on purpose: the daemon is killed after writes, so
# bits are set, and then, in three of the dirty chunks, the members are
# given different data directly (m0 one pattern, m1 another), as a crash
# between the members' writes could leave them.  Remounted with a slow
# resync:
#   - `volume` is served while the resync still runs (status says so);
#   - every read of a planted chunk, before and after its copy, returns the
#     source's data (m0, the first current member), never m1's;
#   - a writer that verifies its own data (fio --verify) during the resync
#     sees its data;
#   - mdfusectl wait ends with the volume in sync, the members identical
#     and, once the clearing passes ran, no bit dirty.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires fio
requires jq

make_tmpdir
cd "$tmpdir" || exit 1
C=$((1024 * 1024))
make_array --size 64M --chunk 1M --daemon-sleep 1

# Bits set on every chunk: write the whole volume, then SIGKILL (the
# clearing pass, every second, has no idle chunk yet to clear).
dd if=/dev/urandom of=mnt/volume bs=1M count=64 oflag=direct conv=notrunc status=none ||
    fail "the first write failed"
kill_mdfuse
ndirty=$(count_lines "$(dirty_chunks bm/b)")
[[ $ndirty -ge 60 ]] || fail "only $ndirty of 64 bits are set after the kill"

# Plant: chunks 5, 20 and 40 differ between the members.
planted=(5 20 40)
plant_differing $C "${planted[@]}"
a_sum=$PLANT_SUM0 b_sum=$PLANT_SUM1
[[ $(count_lines "$(differing_chunks $((64 * C)) $C "${ARRAY_BACK[0]}" "${ARRAY_BACK[1]}")") -ge 3 ]] ||
    fail "the planted chunks do not differ"

# Slow resync: 2 MiB/s at most, 1 MiB/s while users do I/O.
MDFUSE_NO_WAIT=1 mount_array -o resync_min=1M,resync_max=2M
st=$("$MDFUSECTL" status --json mnt) || fail "status failed"
jq -e '.resync != null and .resync.differ_chunks > 0' <<<"$st" >/dev/null ||
    fail "the volume was served only after the resync: $st"
info "served at once: $(jq -c .resync <<<"$st")"
"$MDFUSECTL" status mnt | grep '^resync : running' >/dev/null ||
    fail "status text does not show the running resync"

# A verifying writer on chunks 48..63 during the resync.
(exec fio --name=bg --filename="$tmpdir/mnt/volume" --offset=48M --size=16M \
    --rw=randwrite --bs=4k --ioengine=libaio --direct=1 --iodepth=8 \
    --verify=crc32c --do_verify=1 --verify_fatal=1 \
    --randrepeat=0 --randseed=42 >"$tmpdir/fio.log" 2>&1) &
writer=$!
bg_pids+=("$writer")

# Reads of the planted chunks, many times while the resync runs: always
# the source's data.
reads=0
for round in $(seq 10); do
    for c in "${planted[@]}"; do
        s=$(chunk_sha mnt/volume $C "$c")
        [[ $s != "$b_sum" ]] || fail "round $round: chunk $c read m1's data, not the source's"
        [[ $s == "$a_sum" ]] || fail "round $round: chunk $c read neither member's data"
        reads=$((reads + 1))
    done
done
running=$("$MDFUSECTL" status --json mnt | jq '.resync != null')
info "$reads reads of the planted chunks returned the source's data (resync still running: $running)"

wait "$writer" || { cat "$tmpdir/fio.log" >&2; fail "fio's verifying writer failed during the resync"; }
bg_pids=()

# Let it finish: no limit, then mdfusectl wait.
"$MDFUSECTL" resync-rate --max 0 mnt >/dev/null || fail "mdfusectl resync-rate failed"
"$MDFUSECTL" wait mnt >"$tmpdir/wait.out" || { cat "$tmpdir/wait.out" >&2; fail "mdfusectl wait failed"; }
for c in "${planted[@]}"; do
    [[ $(chunk_sha mnt/volume $C "$c") == "$a_sum" ]] || fail "after the resync, chunk $c does not hold the source's data"
done
grep -q "resync: copied" "$MDFUSE_LOG" || fail "no resync line in the daemon's log"

# The clearing passes (every second) take the bits of the writer's chunks.
for _ in $(seq 100); do
    [[ $(count_lines "$(dirty_chunks bm/b)") -eq 0 ]] && break
    sleep 0.1
done
left=$(count_lines "$(dirty_chunks bm/b)")
[[ $left -eq 0 ]] || fail "$left bits still dirty 10 s after the resync"
stop_mdfuse
assert_members_identical $((64 * C)) $C "${ARRAY_BACK[0]}" "${ARRAY_BACK[1]}"
info "resync in the background: reads consistent, writer verified, members identical, no dirty bit"
