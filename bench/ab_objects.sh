#!/bin/sh
# shellcheck disable=SC2086 # $flags and $args are word lists
# In-process A/B, for differences smaller than this shared host's noise between processes
# (10-30 %): two versions of the code linked into one program under renamed symbols, timed in
# alternation, each one's minimum kept.
#
#     sh bench/ab_objects.sh REV SRC DRIVER [BUILD]
#
# One kernel source file: compiles SRC (e.g. src/kernels/pool.c) as it is at git revision REV
# and as it is in the working tree, each against its own tree's headers, with the same flags
# (the library's optimization, -march=native, OpenMP's simd loops but no threads: one thread;
# the entry points under their generic variant's name), renames every symbol each object
# defines to old_NAME / new_NAME, links DRIVER (bench/ab_objects/<file>.c) with BUILD's
# libnormnet.a (default: build; with oneDNN) and runs it. Unchanged entry points measure
# 1.00-1.02. With AB_COLD=1 in the environment, each timed call starts from a cold cache (64 MB
# of other memory read before it), as a layer's tensors are in a training step.
#
#     sh bench/ab_objects.sh --libs OLD_BUILD NEW_BUILD [DRIVER_ARGS...]
#
# Whole training steps: the two builds' libnormnet.a, every symbol renamed the same way,
# linked with bench/ab_objects/steps.c (its usage there: threads, rounds, steps, presets).
# Noisier than one kernel: the same library against itself measured 1.004 (LeNet) and 1.074
# (the CNN) at one thread, 15 rounds of 20 steps.
set -eu
usage="usage: sh bench/ab_objects.sh REV SRC DRIVER [BUILD] | --libs OLD_BUILD NEW_BUILD [ARGS...]"
[ $# -ge 3 ] || { echo "$usage" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flags="-O2 -std=c11 -march=native -DNDEBUG -fno-math-errno -fopenmp-simd -D_POSIX_C_SOURCE=200809L"

# rename IN's defined symbols to PREFIX_NAME into OUT (an object or an archive)
rename() {
  args=""
  for s in $(nm -A "$1" 2>/dev/null | awk '$(NF-1) ~ /^[TtDdRrBb]$/ {print $NF}' | sort -u); do
    case $s in .*) ;; *) args="$args --redefine-sym $s=${2}_$s" ;; esac
  done
  objcopy $args "$1" "$3"
}

if [ "$1" = --libs ]; then
  old=$2 new=$3
  shift 3
  rename "$old/libnormnet.a" old "$tmp/old.a"
  rename "$new/libnormnet.a" new "$tmp/new.a"
  cc $flags -Iinclude bench/ab_objects/steps.c "$tmp/old.a" "$tmp/new.a" -ldnnl -lz -ljansson -fopenmp -lm -o "$tmp/ab"
  "$tmp/ab" "$@"
  exit 0
fi
rev=$1 src=$2 driver=$3 build=${4:-build}
git archive "$rev" src include | tar -x -C "$tmp"
cc $flags -I"$tmp/src" -I"$tmp/include" -c "$tmp/$src" -o "$tmp/old.o"
cc $flags -Isrc -Iinclude -c "$src" -o "$tmp/new.o"
rename "$tmp/old.o" old "$tmp/old_r.o"
rename "$tmp/new.o" new "$tmp/new_r.o"
cc $flags -Isrc -Iinclude "$driver" "$tmp/old_r.o" "$tmp/new_r.o" "$build/libnormnet.a" -ldnnl -fopenmp -lm -o "$tmp/ab"
"$tmp/ab"
