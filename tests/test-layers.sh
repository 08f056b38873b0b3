#!/usr/bin/env bash
# The source folders are layers (docs/architecture.md): a file includes
# only from its own folder and the folders below it, and no header
# includes itself through others.  Bottom up:
#   common/ < bitmap/ < core/ < fuse/, tools/
# (tests/ may include anything; nothing includes tests/.)
set -euo pipefail
cd "${top_srcdir:-$(dirname "$0")/..}"

rank() {
    case $1 in
    common) echo 0 ;;
    bitmap) echo 1 ;;
    core) echo 2 ;;
    fuse | tools) echo 3 ;;
    tests) echo 4 ;;
    *) echo 99 ;;
    esac
}

bad=0
for f in common/*.[ch] bitmap/*.[ch] core/*.[ch] fuse/*.[ch] tools/*.c; do
    dir=${f%%/*}
    while IFS= read -r inc; do
        idir=${inc%%/*}
        if [[ $idir == "$dir" ]]; then
            continue
        fi
        if [[ $(rank "$idir") -ge $(rank "$dir") ]]; then
            echo "test-layers: $f includes $inc: $idir/ is not below $dir/" >&2
            bad=1
        fi
    done < <(sed -n 's/^#include "\([a-z]*\/[^"]*\)".*/\1/p' "$f")
done

# Header cycles: follow each header's project includes depth first.
declare -A state=()
visit() {
    local h=$1 inc
    case ${state[$h]:-} in
    done) return 0 ;;
    open)
        echo "test-layers: include cycle through $h" >&2
        bad=1
        return 0
        ;;
    esac
    state[$h]=open
    while IFS= read -r inc; do
        [[ -f $inc ]] && visit "$inc"
    done < <(sed -n 's/^#include "\([a-z]*\/[^"]*\.h\)".*/\1/p' "$h")
    state[$h]=done
}
for h in common/*.h bitmap/*.h core/*.h fuse/*.h; do
    visit "$h"
done

if [[ $bad -ne 0 ]]; then
    exit 1
fi
echo "test-layers: every include points down the layers; no header cycle"
