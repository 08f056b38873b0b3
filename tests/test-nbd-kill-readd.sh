#!/usr/bin/env bash
# mdfuse: the NBD server of a member dies under a writer; re-add copies
# only what the bitmap marks (issue 16, SPEC §6).
#
# Claims tested:
#   - nbdkit (the member's server) SIGKILLed while fio writes the volume
#     with verification: fio sees no error and every block verifies; the
#     NBD member is faulty (status, text and JSON, names its URI), the
#     survivor's superblock says so, and the bits of the writes it missed
#     are set and stay set;
#   - the server started again (the same export, the same socket),
#     `mdfusectl re-add MNT URI` connects anew and copies exactly the dirty
#     chunks: nbdkit's log filter shows writes to exactly those chunks,
#     dirty count x chunk size bytes, nothing else of the data area;
#   - after the recovery the members are identical and the array whole.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
require_nbdkit log
requires jq
requires fio

make_tmpdir
cd "$tmpdir" || exit 1
V=$((64 * 1024 * 1024)) C=$((256 * 1024))
mkdir -p export
truncate -s $((V + 1024 * 1024)) export/m1.img
start_nbdkit m1 file "$tmpdir/export/m1.img"
uri=$NBD_URI
make_array --size 64M --chunk 256K --daemon-sleep 1 --nbd "$uri" "$tmpdir/export/m1.img"
m0=${ARRAY_MEMBERS[0]} mnt=$ARRAY_MNT
# Data everywhere (no holes: a recovery then writes whole chunks).
dd if=/dev/urandom of="$mnt/volume" bs=1M count=64 oflag=direct conv=notrunc,fsync status=none ||
    fail "filling the volume failed"
wait_status "$mnt" '.bitmap.dirty == 0' 20 "bits cleared after the fill"

info "fio writes, nbdkit is killed under it"
fio --name=nbdkill --filename="$mnt/volume" --size=32M --rw=write --bs=4k \
    --ioengine=libaio --direct=1 --iodepth=8 --rate_iops=2500 --randseed=42 \
    --verify=crc32c --do_verify=1 --output-format=json --output="$tmpdir/fio.json" \
    >"$tmpdir/fio.log" 2>&1 &
fio_pid=$!
bg_pids+=("$fio_pid")
cleanup_fn kill_bg_jobs
ev0=$(sb_events "$m0")
# The kill once fio is well into its pass (it takes a while to start on a
# loaded machine): its bit for chunk 48 (12 MiB in) is the sign.
for _ in $(seq 400); do
    [[ -n $(awk '$1 >= 48' < <(dirty_chunks "$ARRAY_BITMAP")) ]] && break
    sleep 0.05
done
stop_nbdkit m1 KILL
wait_status "$mnt" '.members[1].state == "faulty" and .state == "degraded"' 20 \
    "the NBD member faulty once its server is gone"
fio_status=0
wait "$fio_pid" || fio_status=$?
bg_pids=()
[[ $fio_status -eq 0 ]] || { cat "$tmpdir/fio.log" "$tmpdir/fio.json" >&2; fail "fio failed (status $fio_status)"; }
errs=$(jq '[.jobs[] | .error] | add' "$tmpdir/fio.json")
[[ $errs -eq 0 ]] || fail "fio saw errors: $errs"
info "fio: no error, every block verified"

assert_marked_faulty "$m0" 1 "$ev0"
assert_status "$mnt" ".members[1].path == \"$uri\" and .members[1].state == \"faulty\"
    and .active == 1" "status after the server died"
assert_status_text "$mnt" "^ *1: faulty +$(re_escape "$uri")( |$)" '\[2/1\] \[U_\]'
grep -qF "$uri" "$MDFUSE_LOG" || fail "the daemon's log does not name $uri"
grep -F "$uri" "$MDFUSE_LOG" | head -n 3 >&2
sleep 2.5 # clearing passes: the bits must stay while degraded
dirty=$(checked_dirty_chunks "$ARRAY_BITMAP")
D=$(count_lines "$dirty")
[[ $D -gt 0 ]] || fail "no dirty chunk after writes while degraded"
info "$D of $((V / C)) chunks dirty while degraded"

info "the server again, re-add over NBD: only the dirty chunks travel"
start_nbdkit m1 --filter=log file "$tmpdir/export/m1.img" logfile="$tmpdir/readd.log"
"$MDFUSECTL" re-add "$mnt" "$uri" >"$tmpdir/readd.out" 2>&1 ||
    { cat "$tmpdir/readd.out" >&2; fail "mdfusectl re-add $uri failed"; }
grep -q "recovering the chunks the bitmap marks ($D chunks)" "$tmpdir/readd.out" ||
    fail "re-add: expected a bitmap recovery of $D chunks: $(cat "$tmpdir/readd.out")"
wait_status "$mnt" '.recovery == null and .members[1].state == "active" and .active == 2' 60 "re-add of $uri"
writes=$(nbd_writes "$tmpdir/readd.log" "$V" "$C")
bytes=$(sed -n 's/^bytes //p' <<<"$writes")
written=$(grep -v '^bytes' <<<"$writes")
info "re-add: $D dirty chunks x $C bytes = $((D * C)); nbdkit saw $bytes bytes written to $(count_lines "$written") chunks of the data area"
[[ $(sorted "$written") == "$(sorted "$dirty")" ]] ||
    fail "the chunks written over NBD ($(tr '\n' ' ' <<<"$(sorted "$written")")) are not the dirty ones ($(tr '\n' ' ' <<<"$(sorted "$dirty")"))"
[[ $bytes -eq $((D * C)) ]] || fail "re-add sent $bytes bytes, the dirty chunks are $((D * C))"
assert_status "$mnt" '.state == "active" and .active == 2' "array whole after re-add"
stop_mdfuse
assert_members_identical "$V" "$C" "$m0" export/m1.img
info "PASS"
