#!/usr/bin/env bash
# mdfuse: -o auto_readd, a failed NBD member re-added when its server is
# back (issue 16).
#
# Claims tested:
#   - the member's server killed: the member is faulty, writes go on, the
#     bits of what it missed are set; while the server is away the daemon
#     keeps trying (and says so), the volume serves;
#   - the server started again: with no command from anyone the member is
#     re-added within the backoff, only the chunks the bitmap marks are
#     copied, the array is whole and the members identical;
#   - a member failed by `mdfusectl fail` is left alone: no automatic
#     re-add undoes an operator's decision.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
require_nbdkit
requires jq

make_tmpdir
cd "$tmpdir" || exit 1
V=$((64 * 1024 * 1024)) C=$((1024 * 1024))
mkdir -p export
truncate -s $((V + C)) export/m1.img
start_nbdkit m1 file "$tmpdir/export/m1.img"
uri=$NBD_URI
make_array --size 64M --chunk 1M --daemon-sleep 1 -o auto_readd,member_timeout=3 \
    --nbd "$uri" "$tmpdir/export/m1.img"
m0=${ARRAY_MEMBERS[0]} mnt=$ARRAY_MNT

info "the server dies; writes go on"
stop_nbdkit m1 KILL
dd if=/dev/urandom of="$mnt/volume" bs=1M seek=3 count=2 conv=notrunc,fsync status=none ||
    fail "a write after the server died failed"
wait_status "$mnt" '.members[1].state == "faulty" and .active == 1' 20 "the NBD member faulty"
dd if=/dev/urandom of="$mnt/volume" bs=1M seek=20 count=1 conv=notrunc,fsync status=none ||
    fail "a write while degraded failed"
dirty=$(checked_dirty_chunks "$ARRAY_BITMAP")
D=$(count_lines "$dirty")
[[ $D -ge 3 ]] || fail "only $D dirty chunks after the writes the member missed"
sleep 4 # a few tries while the server is away
grep -q "auto re-add of slot 1 failed" "$MDFUSE_LOG" ||
    { cat "$MDFUSE_LOG" >&2; fail "no failed auto re-add while the server was away"; }
assert_status "$mnt" '.members[1].state == "faulty"' "still faulty while the server is away"

info "the server is back: re-added with no command"
start_nbdkit m1 file "$tmpdir/export/m1.img"
wait_status "$mnt" '.recovery == null and .active == 2 and .state == "active"' 90 \
    "the automatic re-add"
grep -q "auto re-add: .*recovering the chunks the bitmap marks ($D chunk" "$MDFUSE_LOG" ||
    { cat "$MDFUSE_LOG" >&2; fail "the automatic re-add did not copy the $D marked chunks"; }
stop_mdfuse
assert_members_identical "$V" "$C" "$m0" export/m1.img

info "a member failed by the operator stays out"
mount_array
"$MDFUSECTL" fail "$mnt" "$uri" >/dev/null || fail "mdfusectl fail $uri failed"
sleep 5
assert_status "$mnt" '.members[1].state == "faulty"' "an operator's fail undone by auto_readd"
if grep -q "auto re-add" "$MDFUSE_LOG"; then
    fail "auto_readd touched a member failed by the operator: $(grep 'auto re-add' "$MDFUSE_LOG")"
fi
"$MDFUSECTL" re-add "$mnt" "$uri" >/dev/null || fail "re-add by the operator failed"
assert_status "$mnt" '.state == "active"' "whole after the operator's re-add"
stop_mdfuse
stop_nbdkit m1
info "PASS"
