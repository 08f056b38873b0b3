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

# A graph is an associative array: node -> its successors, space separated.
# find_cycles GRAPH WHAT: depth first from every node; a node met again
# while still open closes a cycle, reported once.
declare -A _state=()
_visit() {
    local -n _g=$1
    local n=$3 m
    case ${_state[$n]:-} in
    'done') return 0 ;;
    open)
        echo "test-layers: a cycle of $2 goes through $n" >&2
        bad=1
        return 0
        ;;
    esac
    _state[$n]=open
    for m in ${_g[$n]:-}; do
        _visit "$1" "$2" "$m"
    done
    _state[$n]='done'
}
find_cycles() {
    local -n _graph=$1
    local n
    _state=()
    for n in "${!_graph[@]}"; do
        _visit "$1" "$2" "$n"
    done
}

# Headers: each one's project includes.
declare -A includes=()
# shellcheck disable=SC2034 # read by find_cycles through a nameref
for h in common/*.h bitmap/*.h core/*.h fuse/*.h; do
    includes[$h]=$(sed -n 's/^#include "\([a-z]*\/[^"]*\.h\)".*/\1/p' "$h" | tr '\n' ' ')
done
find_cycles includes includes

# Calls between the files of the library: no cycle (a file that calls
# another is never called back by it, directly or around a loop).  Read
# off the built objects: each one's defined and undefined symbols.
objs=("${top_builddir:-.}"/libmdcore_a-*.o)
if [[ ! -f ${objs[0]} ]]; then
    objs=("${top_builddir:-.}"/*/libmdcore_a-*.o)
fi
[[ -f ${objs[0]} ]] || { echo "test-layers: no libmdcore objects under ${top_builddir:-.}" >&2; exit 1; }
# source_of OBJECT: the source it was built from, "core/array" for
# .../core/libmdcore_a-array.o.
source_of() {
    local o=$1 f
    f=${o##*/libmdcore_a-}
    f=${o%/*}/${f%.o}
    printf '%s\n' "${f#"${top_builddir:-.}/"}"
}
# Only the objects of sources that exist (a tree built before a file
# moved may keep its old object).
declare -A src=() defined_in=() calls=()
live=()
for o in "${objs[@]}"; do
    src[$o]=$(source_of "$o")
    [[ -f ${top_srcdir:-.}/${src[$o]}.c ]] && live+=("$o")
done
objs=("${live[@]}")
for o in "${objs[@]}"; do
    while read -r sym; do defined_in[$sym]=${src[$o]}; done < <(nm -g --defined-only "$o" | awk '{ print $3 }')
done
for o in "${objs[@]}"; do
    f=${src[$o]}
    calls[$f]=
    while read -r sym; do
        g=${defined_in[$sym]:-}
        if [[ -n $g && $g != "$f" && " ${calls[$f]} " != *" $g "* ]]; then
            calls[$f]+=" $g"
        fi
    done < <(nm -u "$o" | awk '{ print $2 }')
done
find_cycles calls "calls between files"

if [[ $bad -ne 0 ]]; then
    for f in "${!calls[@]}"; do
        echo "test-layers: $f calls${calls[$f]}" >&2
    done
    exit 1
fi
echo "test-layers: every include points down the layers; no header cycle; no cycle of calls between the ${#objs[@]} files of libmdcore"
