#!/usr/bin/env bash
# Builds the CPU stand-in for the CUDA driver (standin/, see its README) into
# target/standin: lib/libcuda.so.1 (and libcuda.so), the self-test, and
# entry-points.txt. Incremental: only what changed in kernels/ or standin/ is
# rebuilt. Prints the folder to put on LD_LIBRARY_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${DR_STANDIN_OUT:-$PWD/target/standin}"
jobs="$(nproc 2>/dev/null || echo 2)"
if ! log="$(make -s -C standin -j"$jobs" OUT="$out" 2>&1)"; then
  echo "$log" >&2
  echo "emu-build: building the stand-in failed (needs g++ with C++17, make, python3)" >&2
  exit 1
fi
echo "$out/lib"
