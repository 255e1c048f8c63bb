#!/usr/bin/env bash
# Runs one command with the CPU stand-in as its CUDA driver, building the
# stand-in first if needed:
#   scripts/emu-run.sh target/release/dr infer --device cuda --teacher m.onnx --image x.png
#   DR_EMU_STREAMS=lazy scripts/emu-run.sh cargo test --lib teacher::gpu
# The stand-in's knobs (DR_EMU_*) are in standin/README.md. Only this command
# sees the stand-in: it is not installed anywhere.
set -euo pipefail
[[ $# -gt 0 ]] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
lib="$("$(dirname "$0")/emu-build.sh")"
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$@"
