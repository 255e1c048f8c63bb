#!/usr/bin/env bash
# The one-call GPU verification, in two halves, because the lent GPU machine
# has CUDA, PyTorch and Python but no Rust toolchain and no network, and only
# 64 MiB travel with a call.
#
#   scripts/gpu-check.sh pack   # here: build for sm_90a, bundle the binary, the
#                               # test executables and fixtures in .gpu-bundle/
#   scripts/gpu-check.sh run    # there, from the repo root: every test executable
#                               # (GPU tests required, not skipped), the GPU
#                               # benchmarks and the tools/gpu_bench_*.py peers; writes
#                               # gpu-check.json, gpu-check.log and bench results
#                               # under $OUT (or ./gpu-check-out)
#
# With the device tool: pack here, then
#   run(command="scripts/gpu-check.sh run", carry=[".gpu-bundle"])
# and copy $OUT/bench-results/*.json into bench-results/ and commit them.
# DR_CUDA_ARCHS overrides the bundle's target (default sm_90a: H100/H200).
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=.gpu-bundle
LIMIT_MIB=60

pack() {
  local nvcc
  nvcc="$(scripts/setup-cuda.sh)"
  export NVCC="$nvcc" DR_CUDA_ARCHS="${DR_CUDA_ARCHS:-sm_90a}"
  cargo build --release --bin dr
  local list
  list="$(scripts/test-executables.sh --release)"
  rm -rf "$BUNDLE"
  mkdir -p "$BUNDLE/bin" "$BUNDLE/tests"
  cp target/release/dr "$BUNDLE/bin/dr"
  while read -r name path; do cp "$path" "$BUNDLE/tests/$name"; done <<<"$list"
  strip "$BUNDLE"/bin/* "$BUNDLE"/tests/*
  if [[ -d tests/fixtures ]]; then cp -r tests/fixtures "$BUNDLE/fixtures"; fi
  {
    echo "commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo -dirty)"
    echo "archs=$DR_CUDA_ARCHS"
    echo "packed=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } >"$BUNDLE/MANIFEST"
  local mib
  mib=$(( $(du -sb "$BUNDLE" | cut -f1) / 1048576 ))
  ls -la "$BUNDLE/bin" "$BUNDLE/tests"
  if (( mib > LIMIT_MIB )); then
    echo "gpu-check pack: bundle is $mib MiB, over the $LIMIT_MIB MiB budget" >&2
    exit 1
  fi
  echo "gpu-check pack: $BUNDLE is $mib MiB ($(cat "$BUNDLE/MANIFEST" | tr '\n' ' '))"
}

run() {
  [[ -x "$BUNDLE/bin/dr" ]] || { echo "gpu-check run: no $BUNDLE (run 'scripts/gpu-check.sh pack' first and carry it)" >&2; exit 1; }
  local out="${OUT:-$PWD/gpu-check-out}"
  mkdir -p "$out/bench-results"
  local log="$out/gpu-check.log" steps="$out/.steps.tsv"
  : >"$log"; : >"$steps"
  # GPU tests must run here, not skip; tests find the binary and fixtures here.
  export DR_REQUIRE_GPU=1 DR_BIN="$PWD/$BUNDLE/bin/dr" DR_REPO_ROOT="$PWD"
  [[ -d "$BUNDLE/fixtures" ]] && export DR_FIXTURES="$PWD/$BUNDLE/fixtures"

  step() { # step NAME CMD...
    local name="$1"; shift
    local t0 rc=0
    t0=$EPOCHREALTIME
    echo "=== $name: $*" | tee -a "$log"
    "$@" >>"$log" 2>&1 || rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.2f", b - a}')" >>"$steps"
    echo "=== $name: rc=$rc" | tee -a "$log"
  }

  step nvidia-smi nvidia-smi
  step version "$BUNDLE/bin/dr" --version
  step devices sh -c "'$BUNDLE/bin/dr' devices --json | tee '$out/devices.json'"
  for t in "$BUNDLE"/tests/*; do
    step "test:$(basename "$t")" "$t" --test-threads=4 --nocapture
  done
  step bench-bandwidth "$BUNDLE/bin/dr" bench bandwidth --out-dir "$out/bench-results"
  step bench-topk "$BUNDLE/bin/dr" bench topk --out-dir "$out/bench-results"
  step bench-attention "$BUNDLE/bin/dr" bench attention --out-dir "$out/bench-results"
  step bench-augment "$BUNDLE/bin/dr" bench augment --out-dir "$out/bench-results"
  # [gpu-cnn]: PyTorch+cuDNN on ResNet-50 (eager) exporting the same network,
  # then dr's executor on that ONNX (DR_MODELS / DR_TORCH_FLAGS widen it).
  local onnx=/tmp/dr-gpu-check-onnx models="${DR_MODELS:-resnet50}"
  step peer:bench_torch.py python3 tools/bench_torch.py --models "$models" --export-dir "$onnx" \
    --out-dir "$out/bench-results" ${DR_TORCH_FLAGS:-}
  # [gpu-conv-speed]: the shape rule's kernels, then --autotune (each
  # layer's candidates timed, the rule's forward timed again beside the
  # tuned one); its tuning files land in $out/tuning and every later step
  # (reinforce, parity) runs with them.
  export DR_TUNING_DIR="$out/tuning"
  for m in ${models//,/ }; do
    step "bench-model:$m" "$BUNDLE/bin/dr" bench model --device cuda --teacher "$onnx/$m.onnx" \
      --batch-size "${DR_BATCH:-256}" --iters 20 --out-dir "$out/bench-results"
    # [gpu-hopper]: the same forward on the mma.sync kernels alone (on
    # sm_90a the line above ran the wgmma ones for the 1x1 layers).
    step "bench-model-mma-sync:$m" env DR_CONV_KERNELS=mma-sync "$BUNDLE/bin/dr" bench model --device cuda \
      --teacher "$onnx/$m.onnx" --batch-size "${DR_BATCH:-256}" --iters 20 --out-dir "$out/bench-results"
    step "bench-model-autotune:$m" "$BUNDLE/bin/dr" bench model --device cuda --teacher "$onnx/$m.onnx" \
      --batch-size "${DR_BATCH:-256}" --iters 20 --autotune --out-dir "$out/bench-results"
  done
  # [gpu-pipeline]: the demo and a photo folder end to end on the GPU; each
  # summary has end-to-end and teacher-only samples/s from the same run.
  step demo-gpu sh -c "'$BUNDLE/bin/dr' demo --device cuda --out /tmp/dr-demo-gpu --quiet"
  step photos python3 tools/make_photo_folder.py /tmp/dr-photos --images "${DR_PHOTOS:-512}"
  for m in ${models//,/ }; do
    step "reinforce-gpu:$m" sh -c "'$BUNDLE/bin/dr' reinforce --data /tmp/dr-photos --teacher '$onnx/$m.onnx' \
      --config configs/imagenet-randaug_mixing.yaml --samples 8 --batch-size '${DR_BATCH:-256}' --device cuda \
      --out /tmp/dr-reinforce-$m --json > '$out/bench-results/reinforce-gpu-$m.json'"
  done
  step gpu-parity python3 tools/check_gpu_parity.py --dr "$BUNDLE/bin/dr" --n "${DR_PARITY_N:-1000}" \
    --models $(for m in ${models//,/ }; do echo "$onnx/$m.onnx"; done) --out-dir "$out/bench-results"
  # GPU peer scripts (PyTorch on the same device); CPU peers run at home.
  for py in tools/gpu_bench_*.py; do
    [[ -e "$py" ]] || continue
    step "peer:$(basename "$py")" python3 "$py" --out-dir "$out/bench-results"
  done

  python3 - "$steps" "$BUNDLE/MANIFEST" "$out/gpu-check.json" <<'EOF'
import json, sys
steps = [dict(zip(("name", "rc", "seconds"), l.rstrip("\n").split("\t"))) for l in open(sys.argv[1])]
for s in steps:
    s["rc"] = int(s["rc"]); s["seconds"] = round(float(s["seconds"] or 0), 2)
manifest = dict(l.strip().split("=", 1) for l in open(sys.argv[2]) if "=" in l)
failed = [s["name"] for s in steps if s["rc"] != 0]
json.dump({"bundle": manifest, "steps": steps, "failed": failed, "ok": not failed},
          open(sys.argv[3], "w"), indent=2)
print(f"gpu-check: {len(steps) - len(failed)} passed, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
EOF
  rm -f "$steps"
  tail -n 40 "$log" | grep -E "^(test result|===|copy kernel|h2d|d2h|d2d)" || true
  [[ "$(python3 -c "import json;print(json.load(open('$out/gpu-check.json'))['ok'])")" == True ]]
}

case "${1:-}" in
  pack) pack ;;
  run) run ;;
  *) echo "usage: $0 pack|run" >&2; exit 2 ;;
esac
