#!/usr/bin/env bash
# The source folders are layers (docs/architecture.md): a file includes
# only from its own folder and the folders below it, no header includes
# itself through others, and no two files of the library call each other
# (directly or around a loop).  Bottom up:
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

# Calls between the files of the library: no cycle (a file that calls
# another is never called back by it, directly or around a loop).  Read
# off the built objects: each one's defined and undefined symbols.
objs=("${top_builddir:-.}"/libmdcore_a-*.o)
if [[ ! -f ${objs[0]} ]]; then
    objs=("${top_builddir:-.}"/*/libmdcore_a-*.o)
fi
[[ -f ${objs[0]} ]] || { echo "test-layers: no libmdcore objects under ${top_builddir:-.}" >&2; exit 1; }
declare -A defined_in=() calls=()
# Only the objects of sources that exist (a tree built before a file
# moved may keep its old object).
live=()
for o in "${objs[@]}"; do
    f=${o##*/libmdcore_a-}
    f=${o%/*}/${f%.o}
    f=${f#"${top_builddir:-.}/"}
    [[ -f ${top_srcdir:-.}/$f.c ]] && live+=("$o")
done
objs=("${live[@]}")
for o in "${objs[@]}"; do
    f=${o##*/libmdcore_a-}
    f=${o%/*}/${f%.o}
    f=${f#"${top_builddir:-.}/"}
    while read -r sym; do defined_in[$sym]=$f; done < <(nm -g --defined-only "$o" | awk '{ print $3 }')
done
for o in "${objs[@]}"; do
    f=${o##*/libmdcore_a-}
    f=${o%/*}/${f%.o}
    f=${f#"${top_builddir:-.}/"}
    while read -r sym; do
        g=${defined_in[$sym]:-}
        if [[ -n $g && $g != "$f" && " ${calls[$f]:-} " != *" $g "* ]]; then
            calls[$f]+=" $g"
        fi
    done < <(nm -u "$o" | awk '{ print $2 }')
done
declare -A cstate=()
cvisit() {
    local f=$1 g
    case ${cstate[$f]:-} in
    done) return 0 ;;
    open)
        echo "test-layers: a cycle of calls between files goes through $f" >&2
        bad=1
        return 0
        ;;
    esac
    cstate[$f]=open
    for g in ${calls[$f]:-}; do
        cvisit "$g"
    done
    cstate[$f]=done
}
for f in "${!calls[@]}"; do
    cvisit "$f"
done

if [[ $bad -ne 0 ]]; then
    for f in "${!calls[@]}"; do
        echo "test-layers: $f calls${calls[$f]}" >&2
    done
    exit 1
fi
echo "test-layers: every include points down the layers; no header cycle; no cycle of calls between the ${#objs[@]} files of libmdcore"
