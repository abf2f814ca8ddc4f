#!/usr/bin/env bash
# Install the Debian packages normnet needs; does nothing when all are present.
# Usage: scripts/install-deps.sh [--with-torch]   (python3-torch only for regenerating fixtures / bench)
set -euo pipefail
pkgs=(build-essential cmake pkg-config libdnnl-dev zlib1g-dev libjansson-dev libpng-dev libcairo2-dev fonts-dejavu-core libcmocka-dev
      clang-format clang-tidy cppcheck
      dataset-fashion-mnist libhdf5-dev libzip-dev)
pkgs+=(clang libclang-rt-14-dev libomp-dev valgrind) # make fuzz (libFuzzer), make valgrind
pkgs+=(chromium) # the HTML report test opens the page in headless Chromium
pkgs+=(openmpi-bin libopenmpi-dev) # mpirun -np K normnet train, test_dist
[ "${1:-}" = "--with-torch" ] && pkgs+=(python3-torch)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
