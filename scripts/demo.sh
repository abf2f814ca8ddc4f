#!/usr/bin/env bash
# The seed-004 experiment: BN-LeNet on Fashion-MNIST with and without BatchNorm, 10 epochs each.
set -euo pipefail
bin=${1:-build/normnet}
out=${2:-runs/demo}
epochs=${EPOCHS:-10}
mkdir -p "$out"
"$bin" train --model lenet --norm batch --epochs "$epochs" --out "$out/lenet-bn"
"$bin" train --model lenet --norm none --epochs "$epochs" --out "$out/lenet-nobn"
echo
echo "BN-LeNet on Fashion-MNIST, SGD lr 0.1, batch 128 (seed 004): test accuracy per epoch"
printf "%-6s %12s %12s\n" epoch "with BN" "without BN"
paste -d, "$out/lenet-bn/history.csv" "$out/lenet-nobn/history.csv" | tail -n +2 |
  awk -F, '{ printf "%-6s %12.4f %12.4f\n", $1, $5, $12 }'
