#!/usr/bin/env bash
# CI: normnet as its users consume it.
#  1. configure (no tests, no benchmarks, portable flags), build and install to a temporary prefix;
#  2. the worked example at the top of include/normnet.h, built with pkg-config and with
#     find_package(normnet), run for a few steps: both print the same test accuracy;
#  3. a find_package consumer of normnet::plot draws a PNG and checks nn_version();
#  4. ldd: the core library does not load cairo (the plot library does);
#  5. normnet built inside another project with add_subdirectory and NN_WITH_PLOT=OFF;
#  6. with Open MPI installed: the installed CLI under mpirun loads the installed MPI module,
#     with the build tree's gone (it loaded the build tree's, or the configured prefix's).
# Usage: scripts/check-install.sh [steps]   (steps of the worked example, default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
steps=${1:-200}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "check-install: $*" >&2; exit 1; }

echo "check-install: build and install to $prefix"
mpi=OFF
command -v mpirun >/dev/null && mpi=ON
cmake -S "$src" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DNN_BUILD_BENCH=OFF \
  -DNN_WERROR=ON -DNN_WITH_MPI=$mpi >"$tmp/configure.log" || { cat "$tmp/configure.log"; fail "configure failed"; }
cmake --build "$tmp/build" -j2 >"$tmp/build.log" || { cat "$tmp/build.log"; fail "build failed"; }
cmake --install "$tmp/build" --prefix "$prefix" >/dev/null

# The worked example, cut out of the header comment (" *     code" -> "code").
sed -n '/^ \*     #include <normnet.h>/,/^ \*     }$/p' include/normnet.h | sed -E 's/^ \* {0,5}//' >"$tmp/example.c"
grep -q 'nn_fit(' "$tmp/example.c" || fail "no worked example found in include/normnet.h"

# pkg-config
pcdir=$(dirname "$(find "$prefix" -name normnet.pc -print -quit)")
export PKG_CONFIG_PATH=$pcdir
[ "$(pkg-config --variable=prefix normnet)" = "$prefix" ] || fail "normnet.pc prefix is $(pkg-config --variable=prefix normnet), not $prefix"
libdir=$(pkg-config --variable=libdir normnet)
[ -f "$libdir/libnormnet.so" ] || fail "normnet.pc libdir $libdir has no libnormnet.so"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "$tmp/example.c" -o "$tmp/example_pc" $(pkg-config --cflags --libs normnet) \
  -Wl,-rpath,"$libdir"
acc_pc=$("$tmp/example_pc" "$steps")
echo "check-install: pkg-config consumer: $acc_pc"

# find_package
mkdir -p "$tmp/consumer"
cp "$tmp/example.c" "$tmp/consumer/"
cat >"$tmp/consumer/plot.c" <<'C'
#include <normnet_plot.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(nn_version(), NN_VERSION_STRING) != 0) {
    fprintf(stderr, "library %s, header %s\n", nn_version(), NN_VERSION_STRING);
    return 1;
  }
  double x[3] = {1, 2, 3}, y[3] = {0.5, 0.7, 0.8};
  nn_plot_line line = {.label = "acc", .x = x, .y = y, .n = 3};
  nn_plot_panel panel = {.title = "t", .xlabel = "epoch", .ylabel = "acc", .lines = &line, .nlines = 1};
  nn_error err = {0};
  if (nn_plot_write(&panel, 1, "consumer", 320, 240, argv[1], NULL, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  return 0;
}
C
# asks for this header's MAJOR.MINOR (the package accepts the same minor version only)
ver=$(sed -n 's/^#define NN_VERSION_\(MAJOR\|MINOR\) \([0-9]*\)$/\2/p' include/normnet.h | paste -sd.)
cat >"$tmp/consumer/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.16)
project(consumer LANGUAGES C)
find_package(normnet $ver REQUIRED COMPONENTS plot)
add_executable(example example.c)
target_link_libraries(example PRIVATE normnet::normnet)
add_executable(plot plot.c)
target_link_libraries(plot PRIVATE normnet::plot)
CM
cmake -S "$tmp/consumer" -B "$tmp/consumer/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_FLAGS="-Wall -Werror" \
  >/dev/null
cmake --build "$tmp/consumer/build" >/dev/null
acc_cm=$("$tmp/consumer/build/example" "$steps")
echo "check-install: find_package consumer: $acc_cm"
case "$acc_cm" in "test accuracy "*) ;; *) fail "unexpected output: $acc_cm" ;; esac
[ "$acc_pc" = "$acc_cm" ] || fail "the two consumers disagree: '$acc_pc' vs '$acc_cm'"
"$tmp/consumer/build/plot" "$tmp/plot.png"
[ "$(head -c 8 "$tmp/plot.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "plot.png is not a PNG"

# The core library must not pull in cairo; the plot library must (or this check proves nothing).
# (ldd's output read whole first: under pipefail, `ldd | grep -q` fails whenever grep stops
# reading before ldd has written its last line, SIGPIPE)
core_libs=$(ldd "$libdir/libnormnet.so")
plot_libs=$(ldd "$libdir/libnormnet_plot.so")
case "$core_libs" in *cairo*) fail "libnormnet.so links cairo: $(grep cairo <<<"$core_libs")" ;; esac
case "$plot_libs" in *cairo*) ;; *) fail "libnormnet_plot.so does not link cairo" ;; esac
echo "check-install: ldd libnormnet.so: no cairo"

# As a subproject, without the plot library.
mkdir -p "$tmp/sub"
cp "$tmp/example.c" "$tmp/sub/"
cat >"$tmp/sub/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.16)
project(sub LANGUAGES C)
set(NN_WITH_PLOT OFF CACHE BOOL "")
add_subdirectory("$src" normnet)
add_executable(example example.c)
target_link_libraries(example PRIVATE normnet::normnet)
CM
cmake -S "$tmp/sub" -B "$tmp/sub/build" -DCMAKE_BUILD_TYPE=Release >"$tmp/sub.log" || { cat "$tmp/sub.log"; fail "subproject configure failed"; }
cmake --build "$tmp/sub/build" -j2 --target example >>"$tmp/sub.log" || { cat "$tmp/sub.log"; fail "subproject build failed"; }
acc_sub=$("$tmp/sub/build/example" "$steps")
[ "$acc_sub" = "$acc_cm" ] || fail "the subproject build disagrees: '$acc_sub' vs '$acc_cm'"
echo "check-install: add_subdirectory consumer (NN_WITH_PLOT=OFF): $acc_sub"

if [ "$mpi" = ON ]; then
  find "$tmp/build" -name 'libnormnet_mpi.so*' -delete
  root=()
  [ "$(id -u)" = 0 ] && root=(--allow-run-as-root)
  out=$(mpirun "${root[@]}" -np 1 "$prefix/bin/normnet" summary --model lenet 2>&1) ||
    fail "the installed normnet under mpirun: $out"
  case "$out" in *'Model: "lenet"'*) ;; *) fail "the installed normnet under mpirun printed: $out" ;; esac
  echo "check-install: the installed CLI under mpirun loads the installed MPI module"
fi
echo "check-install: ok"
