#!/usr/bin/env python3
"""[gpu-cnn] parity: dr's GPU executor against dr's CPU executor on the same
inputs, model by model, through the CLI (`dr infer --device cuda|cpu`).

Inputs: --n images [N, 3, 224, 224] float32, half smooth photo-like fields
and half noise (seeded), plus every image file under --photos if given,
normalised as ImageNet's eval transform would. Reports per model the top-1
agreement, the max |difference| of the softmax probabilities (top-5 of the
CPU side), and the logits' max relative error; exits 1 when top-1 agreement
is under 99.5% or a probability differs by more than 0.01 (the issue's bars).
Writes <out-dir>/<date>-<gpu>-gpu-parity.json.

    python3 tools/check_gpu_parity.py --dr .gpu-bundle/bin/dr --models DIR/resnet50.onnx ...
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from peer_results import write_result


def inputs(n, seed):
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:224, 0:224] / 224.0
    out = np.empty((n, 3, 224, 224), np.float32)
    for i in range(n):
        if i % 2:
            out[i] = r.standard_normal((3, 224, 224))
        else:
            f = r.uniform(1, 12, 3)
            for c in range(3):
                out[i, c] = np.sin(f[c] * x + r.uniform(0, 6)) * np.cos(f[(c + 1) % 3] * y) * 2
    return out


def softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dr", default="target/release/dr")
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--out-dir", default="bench-results")
    a = ap.parse_args()
    x = inputs(a.n, 0)
    tmp = tempfile.mkdtemp()
    xp = os.path.join(tmp, "x.npy")
    np.save(xp, x)
    results, ok = [], True
    for model in a.models:
        out = {}
        for dev in ("cpu", "cuda"):
            yp = os.path.join(tmp, f"y-{dev}.npy")
            cmd = [a.dr, "infer", "--model", model, "--input", xp, "--output", yp, "--device", dev, "--batch-size", str(a.batch)]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                print(p.stderr, file=sys.stderr)
                ok = False
                break
            out[dev] = np.load(yp).astype(np.float64)
        if len(out) < 2:
            results.append({"model": model, "error": "a dr infer run failed"})
            continue
        c, g = out["cpu"], out["cuda"]
        pc, pg = softmax(c), softmax(g)
        top5 = np.argsort(-pc, 1)[:, :5]
        prob_err = float(np.abs(np.take_along_axis(pc, top5, 1) - np.take_along_axis(pg, top5, 1)).max())
        agree = float((c.argmax(1) == g.argmax(1)).mean())
        rel = float(np.abs(c - g).max() / np.abs(c).max())
        r = {"model": model, "inputs": a.n, "top1_agreement": agree, "top5_prob_max_abs_err": prob_err, "logits_max_rel_err": rel}
        print(json.dumps(r))
        ok &= agree >= 0.995 and prob_err <= 0.01
        results.append(r)
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip().splitlines()[0]
    except Exception:
        gpu = "unknown"
    write_result(a.out_dir, gpu, "gpu-parity", {"bench": "gpu-parity", "device": gpu, "results": results, "ok": bool(ok)})
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
