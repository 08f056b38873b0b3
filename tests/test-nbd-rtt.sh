#!/usr/bin/env bash
# mdfuse: status shows an NBD member's round-trip time (issue 16).
#
# Claims tested: with the member's server behind nbdkit's delay filter
# (20 ms per read and write), status --json gives that member an rtt_ms
# of the order of the delay (5 to 500 ms: flushes, which the filter does
# not delay, count too), the local member none (null); the text status
# says "round trip" on the NBD member's line only.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
require_nbdkit delay
requires jq

make_tmpdir
cd "$tmpdir" || exit 1
mkdir -p export
truncate -s $((17 * 1024 * 1024)) export/m1.img
start_nbdkit m1 --filter=delay file "$tmpdir/export/m1.img" delay-read=20ms delay-write=20ms
uri=$NBD_URI
make_array --size 16M --chunk 1M --nbd "$uri" "$tmpdir/export/m1.img"
mnt=$ARRAY_MNT
for i in $(seq 0 9); do
    dd if=/dev/urandom of="$mnt/volume" bs=4k seek=$((i * 7)) count=1 oflag=direct conv=notrunc status=none ||
        fail "a 4 KiB write failed"
done
js=$(status_json "$mnt")
rtt=$(jq -r '.members[1].rtt_ms' <<<"$js")
info "the NBD member's round trip: $rtt ms"
jq -e '.members[0].rtt_ms == null and (.members[1].rtt_ms | type) == "number"
       and .members[1].rtt_ms >= 5 and .members[1].rtt_ms <= 500' <<<"$js" >/dev/null ||
    fail "status: rtt_ms $(jq -c '[.members[].rtt_ms]' <<<"$js"), expected null for the file and about 20 for $uri"
"$MDFUSECTL" status "$mnt" >status.txt || fail "status failed"
grep -E "^ *1: active +$(re_escape "$uri") .*round trip [0-9.]+ ms" status.txt >/dev/null ||
    { cat status.txt >&2; fail "the text status shows no round trip for $uri"; }
if grep -E "^ *0: .*round trip" status.txt >/dev/null; then
    fail "the text status shows a round trip for the local member"
fi
stop_mdfuse
stop_nbdkit m1
info "PASS"
