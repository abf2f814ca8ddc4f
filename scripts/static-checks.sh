#!/usr/bin/env bash
# CI: static analysis of the C sources, on the compile database of a configured build.
#   clang-format  every tracked C file formatted as .clang-format says
#   cppcheck    warning, performance and portability checks (inline suppressions carry a reason)
#   clang-tidy  the checks chosen in .clang-tidy, two files at a time
# Usage: scripts/static-checks.sh [BUILD_DIR]   (default build; configured by `make build`)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
db=$build/compile_commands.json
[ -f "$db" ] || { echo "static-checks: $db missing (configure $build first)" >&2; exit 1; }
src='(src|cli|tests|bench)/'

echo "static-checks: clang-format"
git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror

echo "static-checks: cppcheck"
cppcheck --project="$db" -j2 --quiet --error-exitcode=1 --inline-suppr \
  --enable=warning,performance,portability --suppress=missingIncludeSystem \
  --template='{file}:{line}: {severity} [{id}] {message}'

echo "static-checks: clang-tidy"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
run-clang-tidy -p "$build" -j2 -quiet "$PWD/$src" 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' >"$out" || true
if grep -qE '(warning|error): ' "$out"; then
  grep -E -A3 '(warning|error): ' "$out" >&2
  echo "static-checks: clang-tidy found the problems above" >&2
  exit 1
fi
echo "static-checks: ok"
