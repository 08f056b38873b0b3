#!/usr/bin/env bash
# mdfuse: the bitmap's whole life (mdadm --grow --bitmap=FILE / none).
#
# Claims tested:
# - A lost bitmap: the mount refuses, naming 'mdfusectl add-bitmap', and
#   changes nothing.
# - add-bitmap makes a bitmap of the array (its uuid, size, events) that
#   mdadm reads, with every chunk marked and "Out of date"; it refuses an
#   existing file (naming the array it belongs to), a bitmap on a member's
#   filesystem, members of two arrays; usage errors exit 2.
# - The first mount with the new bitmap copies every chunk: chunks planted
#   to differ end identical; the next clean mount copies nothing.
# - remove-bitmap on a running volume: refused while a member is faulty
#   (unless --force), then the volume runs without it (status says so)
#   and writes go on; the next mount with -o nobitmap copies nothing; the
#   old bitmap, given again, is out of date and everything is copied.
# - A corrupt bitmap header: the refusal names add-bitmap --force.

# shellcheck source=tests/functions.sh
. "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

require_mdfuse_env
requires jq
requires mdadm

make_tmpdir
work=$tmpdir/work
mkdir "$work"

make_array --size 64M --chunk 1M --name life --no-mount
m0=${ARRAY_MEMBERS[0]} m1=${ARRAY_MEMBERS[1]} bm=$ARRAY_BITMAP mnt=$ARRAY_MNT
v=$ARRAY_SIZE c=$ARRAY_CHUNK nc=$ARRAY_CHUNKS
members=$m0:$m1

mount_array
head -c $((8 * c)) /dev/urandom >"$work/data"
dd if="$work/data" of="$mnt/volume" bs=1M seek=2 conv=notrunc,fsync status=none ||
    fail "writing the volume failed"
stop_mdfuse

info "a lost bitmap: the mount refuses, naming add-bitmap; nothing changes"
rm -f "$bm"
snapshot_files "$work/sums" "$m0" "$m1"
expect_mount_refused "mdfusectl add-bitmap" -o "bitmap=$bm" "$members" "$mnt"
assert_files_unchanged "$work/sums"
[[ ! -e $bm ]] || fail "the refused mount created $bm"

info "add-bitmap: usage errors exit 2"
st=0
"$MDFUSECTL" add-bitmap "$m0" "$m1" >/dev/null 2>"$work/err" || st=$?
[[ $st -eq 2 ]] || fail "add-bitmap without --bitmap exited $st, expected 2"
grep -q -- "--bitmap FILE is required" "$work/err" || fail "add-bitmap without --bitmap: $(cat "$work/err")"
grep -q -- "Try 'mdfusectl add-bitmap --help'" "$work/err" || fail "add-bitmap usage error: no pointer to --help: $(cat "$work/err")"
st=0
"$MDFUSECTL" add-bitmap --bitmap "$bm" >/dev/null 2>"$work/err" || st=$?
[[ $st -eq 2 ]] || fail "add-bitmap without members exited $st, expected 2"
[[ ! -e $bm ]] || fail "a refused add-bitmap created $bm"

info "add-bitmap: refusals that change nothing"
expect_fail "same filesystem as member" "$MDFUSECTL" add-bitmap --bitmap "$tmpdir/m/new.bitmap" "$m0" "$m1"
[[ ! -e $tmpdir/m/new.bitmap ]] || fail "a refused add-bitmap created the bitmap"
"$MDFUSECTL" create --size 16M --bitmap "$bm.other" "$work/o0" "$work/o1" >/dev/null ||
    fail "creating a second array failed"
expect_fail "member of another array" "$MDFUSECTL" add-bitmap --bitmap "$bm" "$m0" "$work/o0"
[[ ! -e $bm ]] || fail "a refused add-bitmap created $bm"
snapshot_files "$work/other" "$bm.other"
expect_fail "already exists: it appears to be the bitmap of an md raid array" \
    "$MDFUSECTL" add-bitmap --bitmap "$bm.other" "$m0" "$m1"
assert_files_unchanged "$work/other"

info "add-bitmap: the array's uuid, size and events, every chunk marked"
"$MDFUSECTL" add-bitmap --chunk 1M --bitmap "$bm" "$m0" "$m1" >"$work/out" 2>&1 ||
    { cat "$work/out" >&2; fail "add-bitmap failed"; }
grep -qF "mount with -o bitmap=$bm" "$work/out" || fail "add-bitmap: unexpected output: $(cat "$work/out")"
assert_files_unchanged "$work/sums"
mdadm --examine-bitmap "$bm" >"$work/mdadm" 2>&1 || { cat "$work/mdadm" >&2; fail "mdadm --examine-bitmap of the new bitmap failed"; }
uuid=$(examine "$m0" "Array UUID")
[[ $(field UUID <"$work/mdadm" | tr -d ':') == "$(tr -d -- '-:' <<<"$uuid")" ]] ||
    fail "mdadm sees another uuid in the new bitmap: $(field UUID <"$work/mdadm"), members have $uuid"
[[ $(field Events <"$work/mdadm") == "$(examine "$m0" Events)" ]] ||
    fail "the new bitmap's events are not the members'"
grep -qE "Bitmap : $nc bits \(chunks\), $nc dirty \(100.0%\)" "$work/mdadm" ||
    fail "mdadm does not see every chunk dirty: $(grep Bitmap "$work/mdadm")"
[[ $(examine_bitmap "$bm" State) == "Out of date" ]] || fail "the new bitmap is not marked out of date"

info "add-bitmap over an existing bitmap needs --force"
expect_fail "already exists: it appears to be the bitmap of an md raid array \(uuid $uuid" \
    "$MDFUSECTL" add-bitmap --bitmap "$bm" "$m0" "$m1"
"$MDFUSECTL" add-bitmap --force --chunk 1M --bitmap "$bm" "$m0" "$m1" >/dev/null 2>&1 ||
    fail "add-bitmap --force over the array's own bitmap failed"

info "the first mount copies every chunk; planted differences are gone"
plant_differing "$c" 5 40
mount_array
stop_mdfuse
counts=$(resync_counts "$MDFUSE_LOG")
[[ $counts == "$nc $nc" ]] || fail "the first mount with the new bitmap copied '$counts' chunks, expected $nc of $nc"
assert_members_identical "$v" "$c" "$m0" "$m1"
mount_array
counts=$(resync_counts "$MDFUSE_LOG")
[[ $counts == "0 $nc" ]] || fail "a clean mount after the full copy copied '$counts' chunks"

info "remove-bitmap: refused while a member is faulty, unless --force"
st=0
"$MDFUSECTL" remove-bitmap --bogus "$mnt" >/dev/null 2>&1 || st=$?
[[ $st -eq 2 ]] || fail "remove-bitmap --bogus exited $st, expected 2"
"$MDFUSECTL" fail "$mnt" "$m1" >/dev/null || fail "mdfusectl fail $m1 failed"
expect_fail "is what lets its re-add copy only the changed chunks" "$MDFUSECTL" remove-bitmap "$mnt"
assert_status "$mnt" '.bitmap.in_use == true' "the bitmap still in use after a refused remove"
"$MDFUSECTL" re-add "$mnt" "$m1" >/dev/null || fail "re-add of $m1 failed"
assert_status "$mnt" '.state == "active"' "active after the re-add"

info "remove-bitmap: the volume runs without it"
ev=$(sb_events "$m0")
"$MDFUSECTL" remove-bitmap "$mnt" >"$work/out" 2>&1 || { cat "$work/out" >&2; fail "remove-bitmap failed"; }
grep -qF -- "-o nobitmap" "$work/out" || fail "remove-bitmap: unexpected output: $(cat "$work/out")"
[[ $(sb_events "$m0") -gt $ev ]] || fail "remove-bitmap did not bump the members' events"
assert_status "$mnt" '.bitmap.in_use == false and .state == "active"' "the bitmap out of use after remove-bitmap"
expect_fail "no bitmap in use" "$MDFUSECTL" remove-bitmap "$mnt"
bm_sum=$(sha256_of "$bm")
dd if=/dev/urandom of="$mnt/volume" bs=4K seek=300 count=4 conv=notrunc,fsync status=none ||
    fail "writing after remove-bitmap failed"
[[ $(sha256_of "$bm") == "$bm_sum" ]] || fail "the removed bitmap was written after remove-bitmap"
want=$(chunk_sha "$mnt/volume" "$c" 1)
stop_mdfuse

info "-o nobitmap after a clean unmount copies nothing; the old bitmap is out of date"
start_mdfuse -o nobitmap "$members" "$mnt"
[[ $(chunk_sha "$mnt/volume" "$c" 1) == "$want" ]] || fail "the data written without a bitmap is not there"
if grep "resync: copied" "$MDFUSE_LOG" | grep -vq "copied 0 of"; then
    fail "a clean -o nobitmap mount resynced: $(grep 'resync:' "$MDFUSE_LOG")"
fi
stop_mdfuse
mount_array
counts=$(resync_counts "$MDFUSE_LOG")
[[ $counts == "$nc $nc" ]] || fail "the removed bitmap, given again, copied '$counts' chunks, expected all $nc"
stop_mdfuse

info "a corrupt bitmap header: the refusal names add-bitmap --force"
printf 'garbage!' | dd of="$bm" bs=1 seek=40 conv=notrunc status=none
expect_mount_refused "mdfusectl add-bitmap --force" -o "bitmap=$bm" "$members" "$mnt"
"$MDFUSECTL" add-bitmap --force --chunk 1M --bitmap "$bm" "$m0" "$m1" >/dev/null 2>&1 ||
    fail "add-bitmap --force over a corrupt bitmap failed"
mount_array
[[ $(resync_counts "$MDFUSE_LOG") == "$nc $nc" ]] || fail "the replaced bitmap did not copy every chunk"
stop_mdfuse
info "ok"
