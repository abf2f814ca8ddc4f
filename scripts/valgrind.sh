#!/usr/bin/env bash
# A short training of a preset (LeNet with BN by default; the Makefile also runs the Keras CNN,
# whose second convolution runs Winograd) under valgrind memcheck: any invalid read/write, use of
# uninitialised memory or definite leak fails (--error-exitcode=1). The build must be
# portable (-DNN_NATIVE=OFF: valgrind does not model AVX-512). The only suppressions are
# for oneDNN's JIT-generated GEMM code (scripts/valgrind.supp).
# Usage: scripts/valgrind.sh BUILD/normnet [PRESET]
set -euo pipefail
cli=$1
model=${2:-lenet}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src=/usr/share/datasets/fashion-mnist
mkdir -p "$tmp/d"
# 256 training and 64 test images of Fashion-MNIST, with their IDX headers rewritten
for set in train:256:'\x00\x00\x01\x00' t10k:64:'\x00\x00\x00\x40'; do
  IFS=: read -r name n count <<<"$set"
  { printf '\x00\x00\x08\x03'"$count"'\x00\x00\x00\x1c\x00\x00\x00\x1c'
    zcat "$src/$name-images-idx3-ubyte.gz" | tail -c +17 | head -c $((n * 784)) || true; } >"$tmp/d/$name-images-idx3-ubyte"
  { printf '\x00\x00\x08\x01'"$count"
    zcat "$src/$name-labels-idx1-ubyte.gz" | tail -c +9 | head -c "$n" || true; } >"$tmp/d/$name-labels-idx1-ubyte"
done
OMP_NUM_THREADS=2 valgrind ${VALGRIND_FLAGS:-} --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite --show-possibly-lost=no \
  --suppressions="$here/valgrind.supp" --quiet \
  "$cli" train --model "$model" --data "idx:$tmp/d" --epochs 1 --batch 32 --max-steps 3 --track-activations \
  --quiet --out "$tmp/run"
echo "valgrind: $model clean"
