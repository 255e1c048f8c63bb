#!/usr/bin/env bash
# Installs a pinned nvcc 13.0 (compiler only: no driver, no libraries we link)
# from PyPI into a per-user cache and prints the path of nvcc.
#
#   scripts/setup-cuda.sh            # install if missing, print nvcc's path
#   DR_CUDA_CACHE=/opt/dr-cuda scripts/setup-cuda.sh
#
# The five compiler wheels are pinned together: unpinned, pip mixes releases
# and ptxas rejects the PTX that a newer front end writes. The disassembler
# (cuobjdump + nvdisasm, for tools/sass_report.py) is the oldest release on
# PyPI, 13.2: there is no 13.0 wheel, and a newer disassembler reads older
# cubins. build.rs finds the result without any variable being set (it looks
# in the same cache), so after this script a plain `cargo build` embeds the
# kernels.
# Idempotent: a second run checks a stamp and returns in well under a second.
set -euo pipefail

PINS=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85
  nvidia-cuda-cuobjdump==13.2.51
  nvidia-cuda-nvdisasm==13.2.51
)
CACHE="${DR_CUDA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dr/cuda-13.0}"
NVCC="$CACHE/pkgs/nvidia/cu13/bin/nvcc"
STAMP="$CACHE/.installed"
WANT="${PINS[*]}"

log() { echo "setup-cuda: $*" >&2; }

if [[ -x "$NVCC" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  echo "$NVCC"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) log "only Linux x86-64 wheels are pinned here ($(uname -s)-$(uname -m) found)."
     log "Fix: install CUDA >= 12.4 yourself and set NVCC=/path/to/nvcc."
     exit 1 ;;
esac

PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null 2>&1 || ! "$PY" -m pip --version >/dev/null 2>&1; then
  log "needs python3 with pip to download the nvcc wheels (PYTHON=$PY)."
  log "Fix: install python3-pip, or set NVCC=/path/to/nvcc and skip this script."
  exit 1
fi

log "installing ${PINS[*]} into $CACHE"
mkdir -p "$CACHE"
tmp="$(mktemp -d "$CACHE/.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# --target into a fresh folder, then one rename: an interrupted run never
# leaves a half-installed toolkit behind the stamp.
PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
  "$PY" -m pip install --quiet --no-deps --only-binary=:all: \
  --target "$tmp/pkgs" "${PINS[@]}"
rm -rf "$CACHE/pkgs"
mv "$tmp/pkgs" "$CACHE/pkgs"

# Smoke test: compile a kernel for the oldest and newest targets we build.
cat > "$tmp/probe.cu" <<'EOF'
extern "C" __global__ void probe(float* p) { p[threadIdx.x] = 1.0f; }
EOF
if ! "$NVCC" --fatbin -gencode=arch=compute_80,code=sm_80 \
     -gencode=arch=compute_90a,code=sm_90a -o "$tmp/probe.fatbin" "$tmp/probe.cu" >&2; then
  log "nvcc was installed at $NVCC but cannot compile a probe kernel (see above)."
  log "Fix: nvcc 13.0 needs gcc <= 15 as host compiler; set NVCC_CCBIN=/path/to/g++ if yours is newer."
  exit 1
fi
for tool in cuobjdump nvdisasm; do
  if ! "$(dirname "$NVCC")/$tool" --version >/dev/null 2>&1; then
    log "$tool was installed beside $NVCC but does not run."
    exit 1
  fi
done
echo "$WANT" > "$STAMP"
log "ok: $("$NVCC" --version | tail -n 2 | head -n 1)"
echo "$NVCC"
