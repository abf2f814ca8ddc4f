#!/bin/sh
# shellcheck disable=SC2086 # $flags and $args are word lists
# In-process A/B of one kernel source file, for differences smaller than this shared host's
# noise between processes (10-30 %):
#
#     sh bench/ab_objects.sh REV SRC DRIVER [BUILD]
#
# compiles SRC (e.g. src/kernels/pool.c) as it is at git revision REV and as it is in the
# working tree, each against its own tree's headers, with the same flags (the library's
# optimization, -march=native, OpenMP's simd loops but no threads: one thread; the entry
# points under their generic variant's name), renames every symbol each object defines to
# old_NAME / new_NAME, links DRIVER (a program under bench/ab_objects/ that calls both,
# alternating, keeps each one's minimum and prints the ratios) with BUILD's libnormnet.a
# (default: build; with oneDNN) and runs it. Unchanged entry points measure 1.00-1.02 here,
# where two processes differ by 10-30 %.
set -eu
[ $# -ge 3 ] || { echo "usage: sh bench/ab_objects.sh REV SRC DRIVER [BUILD]" >&2; exit 2; }
rev=$1 src=$2 driver=$3 build=${4:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git archive "$rev" src include | tar -x -C "$tmp"
flags="-O2 -std=c11 -march=native -DNDEBUG -fno-math-errno -fopenmp-simd -D_POSIX_C_SOURCE=200809L"
cc $flags -I"$tmp/src" -I"$tmp/include" -c "$tmp/$src" -o "$tmp/old.o"
cc $flags -Isrc -Iinclude -c "$src" -o "$tmp/new.o"
for v in old new; do
  args=""
  for s in $(nm "$tmp/$v.o" | awk '$2 == "T" || $2 == "t" || $2 == "D" || $2 == "d" || $2 == "R" || $2 == "r" || $2 == "B" || $2 == "b" {print $3}'); do
    case $s in .*) ;; *) args="$args --redefine-sym $s=${v}_$s" ;; esac
  done
  objcopy $args "$tmp/$v.o" "$tmp/${v}_r.o"
done
cc $flags -Isrc -Iinclude "$driver" "$tmp/old_r.o" "$tmp/new_r.o" "$build/libnormnet.a" -ldnnl -fopenmp -lm -o "$tmp/ab"
"$tmp/ab"
