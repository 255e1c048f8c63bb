#!/usr/bin/env bash
# Every test with the CPU stand-in as the CUDA driver (standin/README.md) and
# GPU tests required (DR_REQUIRE_GPU=1), as a lent device would run them, in
# two passes with different ways of running the same work:
#   1. every test of every test executable (but the minutes-long CPU-only
#      ones of scripts/emu-skip.txt), streams lazy (work runs only when
#      something waits for it: missing stream ordering shows);
#   2. the GPU tests pass 1 ran (but the minutes-long whole-pipeline ones of
#      scripts/emu-race-skip.txt), with the warp-ahead schedule, blocks in
#      reverse order and the shared-memory race detector.
# First the stand-in's own self-test (its PTX emulations and planted bugs).
# Prints "N passed, M failed" per pass and "GPU tests: N ran, 0 skipped";
# exits non-zero on any failure, any skipped GPU test, or none run.
# Logs: target/emu-test/.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
logs="$root/target/emu-test"
rm -rf "$logs"; mkdir -p "$logs"

lib="$(scripts/emu-build.sh)"
echo "=== stand-in self-test"
if ! target/standin/selftest >"$logs/selftest.log" 2>&1; then
  cat "$logs/selftest.log"; echo "emu-test: the stand-in's self-test failed" >&2; exit 1
fi
tail -n 1 "$logs/selftest.log"

# The kernels must be embedded (a build without nvcc has none to test):
# setup-cuda.sh installs the pinned nvcc where build.rs looks by itself.
# NVCC is not exported: a variable the README's `cargo test` ran without
# would rerun build.rs and rebuild every test executable.
scripts/setup-cuda.sh >/dev/null
scripts/test-executables.sh >"$logs/executables.txt" 2>"$logs/build.log" || { cat "$logs/build.log" >&2; exit 1; }
mapfile -t bins < <(cut -d' ' -f2 "$logs/executables.txt")

failed_total=0
# run_pass NAME FILTER_LOG ENV... : runs every binary (with only the GPU tests
# FILTER_LOG lists, when given), sums the results.
run_pass() {
  local name="$1" filter="$2"; shift 2
  local dir="$logs/$name" passed=0 failed=0 bin base args rc skipped_cpu=0 skipped_race=0
  mkdir -p "$dir"
  echo "=== pass $name: $*"
  for bin in "${bins[@]}"; do
    base="$(basename "$bin")"
    args=()
    if [[ -n "$filter" ]]; then
      # Pass 1's GPU tests, but those scripts/emu-race-skip.txt lists.
      mapfile -t args < <(awk -v b="$base" -v e="${base%-*}" '
        FILENAME ~ /emu-race-skip/ { if ($1 == e) skip[$2] = 1; next }
        $1 == "ran" && $2 == b && !($3 in skip) { print $3 }' scripts/emu-race-skip.txt "$filter" | sort -u)
      skipped_race=$((skipped_race + $(awk -v e="${base%-*}" '$1 == e' scripts/emu-race-skip.txt | wc -l)))
      (( ${#args[@]} )) || continue
      args=(--exact "${args[@]}")
    else
      # CPU-only tests listed in scripts/emu-skip.txt (the README test
      # command runs them; here they would only cost minutes).
      local exe="${base%-*}" t
      while read -r t; do
        args+=(--skip "$t"); skipped_cpu=$((skipped_cpu + 1))
      done < <(awk -v b="$exe" '$1 == b { print $2 }' scripts/emu-skip.txt)
    fi
    rc=0
    env LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" DR_REQUIRE_GPU=1 \
      DR_GPU_TEST_LOG="$dir/gpu-tests.log" DR_EMU_ENTRY_POINTS="$root/target/standin/entry-points.txt" "$@" \
      "$bin" "${args[@]}" >"$dir/$base.log" 2>&1 || rc=$?
    local p f
    p=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^passed/) s += $i } END { print s + 0 }' "$dir/$base.log")
    f=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^failed/) s += $i } END { print s + 0 }' "$dir/$base.log")
    if (( rc != 0 && f == 0 )); then f=1; fi  # crashed before its summary
    passed=$((passed + p)); failed=$((failed + f))
    if (( rc != 0 )); then
      echo "--- $base failed (log: $dir/$base.log):"
      grep -E "^test .* FAILED|^dr stand-in:|panicked at" "$dir/$base.log" | head -n 40 || true
    fi
  done
  local ran skipped
  ran=$(awk '$1 == "ran" { print $2, $3 }' "$dir/gpu-tests.log" 2>/dev/null | sort -u | wc -l)
  skipped=$(awk '$1 == "skipped" { print $2, $3 }' "$dir/gpu-tests.log" 2>/dev/null | sort -u | wc -l)
  local note=""
  (( skipped_cpu == 0 )) || note="; CPU-only tests not rerun (scripts/emu-skip.txt): $skipped_cpu"
  (( skipped_race == 0 )) || note="; pipeline tests not rerun here (scripts/emu-race-skip.txt): $skipped_race"
  echo "pass $name: $passed passed, $failed failed; GPU tests: $ran ran, $skipped skipped$note"
  if (( failed > 0 || skipped > 0 || ran == 0 )); then failed_total=$((failed_total + 1)); fi
}

run_pass lazy "" DR_EMU_STREAMS=lazy
run_pass race "$logs/lazy/gpu-tests.log" DR_EMU_SCHEDULE=warp-ahead DR_EMU_BLOCK_ORDER=reverse DR_EMU_RACECHECK=1
if (( failed_total > 0 )); then
  echo "emu-test: failed (logs in $logs)" >&2
  exit 1
fi
echo "emu-test: ok"
