#!/usr/bin/env bash
# A member found behind at mount is recovered in the background, never
# with a blocking copy, and is not read until it is recovered (SPEC §8).
#
# m1 is failed, the whole volume is rewritten while it is out, and the
# volume is unmounted cleanly: m1 holds none of that data.  At the next
# mount (slow resync) the volume is served at once with m1 recovering;
# every read of the volume meanwhile returns the data written, never m1's
# old contents; mdfusectl wait ends with the members identical.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires jq

make_tmpdir
cd "$tmpdir" || exit 1
V=$((32 * 1024 * 1024))
C=$((1024 * 1024))
make_array --size 32M --chunk 1M
"$MDFUSECTL" fail mnt 1 >/dev/null || fail "mdfusectl fail failed"
dd if=/dev/urandom of="$tmpdir/data" bs=1M count=32 status=none
dd if="$tmpdir/data" of=mnt/volume bs=1M oflag=direct conv=notrunc status=none ||
    fail "writing the volume while degraded failed"
stop_mdfuse
want=$(sha256_of "$tmpdir/data")
[[ $(sha256_of "${ARRAY_BACK[1]}" | head -c 64) != "$want" ]] || fail "m1 has the new data already"

MDFUSE_NO_WAIT=1 mount_array -o resync_min=1M,resync_max=2M
st=$("$MDFUSECTL" status --json mnt) || fail "status failed"
jq -e '.resync != null and .members[1].state == "recovering"' <<<"$st" >/dev/null ||
    fail "m1 is not being recovered in the background at the mount: $st"
for round in 1 2 3; do
    [[ $(volume_sha mnt/volume) == "$want" ]] ||
        fail "round $round: a read of the volume returned data m1 does not have yet"
done
running=$("$MDFUSECTL" status --json mnt | jq '.resync != null')
info "3 whole-volume reads during the recovery returned the data written (still running: $running)"
[[ $running == true ]] || fail "the recovery ended before the reads did: slow it down"

"$MDFUSECTL" resync-rate --max 0 mnt >/dev/null || fail "mdfusectl resync-rate failed"
"$MDFUSECTL" wait mnt >"$tmpdir/wait.out" || { cat "$tmpdir/wait.out" >&2; fail "mdfusectl wait failed"; }
"$MDFUSECTL" status --json mnt | jq -e '.members[1].state == "active"' >/dev/null ||
    fail "m1 is not active after the recovery"
stop_mdfuse
assert_members_identical "$V" "$C" "${ARRAY_BACK[0]}" "${ARRAY_BACK[1]}"
info "a behind member was recovered in the background and never read before"
