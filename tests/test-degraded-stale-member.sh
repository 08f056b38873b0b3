#!/usr/bin/env bash
# mdfuse: a stale member comes back (SPEC §6: the events rule).
#
# Claim tested: a copy of a member taken when it was failed, older than the
# bitmap's events_cleared once the array was whole and clean again, comes
# back after a degraded mount (-o degraded): re-add copies everything (a
# full recovery, in status and in the log), writes go on during the
# recovery, the members end identical and the volume holds what was
# written.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires jq

make_tmpdir
work=$tmpdir/work
mkdir "$work"
cleanup_fn kill_bg_jobs

v=$((256 * 1024 * 1024))
c=$((1024 * 1024))
nc=$((v / c))
make_array --size 256M --chunk 1M --daemon-sleep 1
m0=${ARRAY_MEMBERS[0]} m1=${ARRAY_MEMBERS[1]} mbm=$ARRAY_BITMAP mnt=$ARRAY_MNT
model=$work/model
head -c "$v" /dev/urandom >"$model"
dd if="$model" of="$mnt/volume" bs=1M conv=notrunc,fsync status=none || fail "filling the volume failed"
wait_status "$mnt" '.bitmap.dirty == 0' 20 "bits cleared after the fill"

# The stale copy: m1 as it was when failed; the array then moves on (a
# write while degraded, a re-add, its bits cleared).
"$MDFUSECTL" fail "$mnt" "$m1" >"$work/out" || fail "mdfusectl fail $m1 failed"
cp --sparse=always "$m1" "$work/m1.stale"
write_at "$mnt/volume" "$model" $((4 * c)) "$c"
"$MDFUSECTL" re-add "$mnt" "$m1" >"$work/out" || fail "mdfusectl re-add $m1 failed"
wait_status "$mnt" '.recovery == null and .members[1].state == "active" and .active == 2' 60 "re-add of $m1"
wait_status "$mnt" '.bitmap.dirty == 0' 15 "bits cleared once every member is active again"

info "a stale member older than events_cleared gets a full copy"
ec=$(examine_bitmap "$mbm" "Events Cleared")
es=$(examine "$work/m1.stale" Events)
info "events_cleared $ec, stale member's events $es"
[[ $ec -gt $es ]] || fail "events_cleared ($ec) did not move past the stale member's events ($es)"
stop_mdfuse
cp --sparse=always "$work/m1.stale" "$m1"
mount_array -o degraded "$m0"
main_log=$MDFUSE_LOG
assert_status "$mnt" '.state == "degraded" and .active == 1 and .members[0].state == "active"
    and .members[1].state != "active"' "degraded mount without $m1"
assert_status_text "$mnt" '\[2/1\] \[U_\]'
write_at "$mnt/volume" "$model" $((20 * c)) 8192

# Writes go on during the recovery: blocks of wsrc to the volume, each
# completion logged with its time.
head -c $((64 * 1024 * 1024)) /dev/urandom >"$work/wsrc"
: >"$work/wdone"
(
    i=0
    while [[ ! -e $work/wstop ]]; do
        k=$((i % 1024))
        dd if="$work/wsrc" of="$mnt/volume" bs=64K skip="$k" seek=$((k * 3)) count=1 \
            conv=notrunc oflag=direct status=none || exit 1
        echo "$k $EPOCHREALTIME" >>"$work/wdone"
        i=$((i + 1))
    done
) &
bg_pids+=("$!")
sleep 0.2
"$MDFUSECTL" re-add --no-wait "$mnt" "$m1" >"$work/out" || fail "mdfusectl re-add $m1 failed"
t_first=$EPOCHREALTIME # the recovery runs from here (at least) ...
info "re-add: $(cat "$work/out")"
grep -q "recovering everything ($nc chunks)" "$work/out" ||
    fail "re-add of a stale member: expected a full recovery of $nc chunks: $(cat "$work/out")"
t_last='' # ... to the last time status showed it running
deadline=$((SECONDS + 60))
while :; do
    js=$(status_json "$mnt")
    if jq -e '.recovery != null' >/dev/null <<<"$js"; then
        jq -e ".recovery.slot == 1 and .recovery.mode == \"full\" and .recovery.total_chunks == $nc
               and .members[1].state != \"active\"" >/dev/null <<<"$js" ||
            fail "status during the recovery: $js"
        t_last=$EPOCHREALTIME
    elif jq -e '.members[1].state == "active" and .active == 2' >/dev/null <<<"$js"; then
        break
    fi
    [[ $SECONDS -lt $deadline ]] || fail "recovery not finished in 60 s: $js"
    sleep 0.02
done
sleep 0.2
touch "$work/wstop"
wait_bg_jobs
line=$(grep -F "$m1: recovered (" "$main_log" | tail -n 1)
info "log: $line"
[[ $line == *"recovered ($nc of $nc chunks copied, full)"* ]] ||
    fail "recovery log: '$line', expected $nc of $nc chunks, full"
while read -r k _; do
    dd if="$work/wsrc" of="$model" bs=64K skip="$k" seek=$((k * 3)) count=1 conv=notrunc status=none
done <"$work/wdone"
if [[ -n $t_last ]]; then
    during=$(awk -v a="$t_first" -v b="$t_last" '$2 > a && $2 < b' "$work/wdone" | wc -l)
    info "recovery seen running for $(awk -v a="$t_first" -v b="$t_last" 'BEGIN { printf "%.2f", b - a }') s; $during writes completed meanwhile, $(wc -l <"$work/wdone") in all"
    if awk -v a="$t_first" -v b="$t_last" 'BEGIN { exit !(b - a >= 0.2) }'; then
        [[ $during -gt 0 ]] || fail "no write completed during the recovery"
    fi
else
    info "the recovery ended before status could see it"
fi
assert_members_identical "$v" "$c" "$m0" "$m1"
assert_volume_is "$mnt/volume" "stale member" "$model"
stop_mdfuse

info "PASS"
