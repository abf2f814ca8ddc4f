#!/usr/bin/env bash
# The seed-004 experiment: BN-LeNet on Fashion-MNIST with and without BatchNorm, 10 epochs
# each, side by side; writes runs/demo/{history.csv,curves.png,curves.svg}.
set -euo pipefail
bin=${1:-build/normnet}
out=${2:-runs/demo}
mkdir -p "$(dirname "$out")"
"$bin" compare --model lenet --norm batch,none --epochs "${EPOCHS:-10}" --out "$out"
