#!/usr/bin/env python3
"""Peer for `dr bench model --device cpu`: onnxruntime on the CPU, same
models, same batch, same machine.

    python3 tools/bench_onnxruntime_cpu.py --models-dir /tmp/dr-bench-models [--batch-size 8]
        [--out-dir bench-results]

Exports torchvision's ResNet-50 and ViT-B/16 (random weights, eval mode,
legacy exporter at opset 17; without torch, the same architectures from
tools/make_bench_models.py) into --models-dir if they are not there, times
onnxruntime (all cores, graph optimisations on) and prints img/s; writes
<out-dir>/<date>-cpu-onnxruntime-models.json with the raw samples. With
`--dr target/release/dr` it also runs `dr bench model --json` on each model
right after onnxruntime (same process tree, same inputs' shapes) and writes
<out-dir>/<date>-cpu-teacher-vs-onnxruntime.json with both sides and the ratio.
"""

import argparse
import datetime
import json
import os
import platform
import time

import numpy as np
import onnxruntime as ort


def export(models_dir):
    try:
        import torch
        import torchvision
    except ImportError:
        # No torch here: the same architectures built with onnx.helper.
        import make_bench_models
        print("torch is not installed: building the models with tools/make_bench_models.py")
        return make_bench_models.build(models_dir)
    os.makedirs(models_dir, exist_ok=True)
    paths = {}
    for name, ctor in [("resnet50", torchvision.models.resnet50), ("vit_b_16", torchvision.models.vit_b_16)]:
        path = os.path.join(models_dir, f"{name}.onnx")
        if not os.path.exists(path):
            torch.manual_seed(0)
            m = ctor().eval()
            if name == "vit_b_16":
                # torchvision zero-initialises the head: give it weights so
                # the logits (and a parity check on them) mean something.
                torch.nn.init.normal_(m.heads.head.weight, std=0.02)
            x = torch.randn(1, 3, 224, 224)
            torch.onnx.export(m, x, path, opset_version=17, dynamo=False, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        paths[name] = path
    return paths


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", default="/tmp/dr-bench-models")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--out-dir", default="bench-results")
    ap.add_argument("--dr", help="dr binary: also time `dr bench model` on each model")
    a = ap.parse_args()
    res = {}
    for name, path in export(a.models_dir).items():
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((a.batch_size, 3, 224, 224), dtype=np.float32)
        feed = {sess.get_inputs()[0].name: x}
        sess.run(None, feed)
        samples = []
        for _ in range(a.iters):
            t0 = time.perf_counter()
            sess.run(None, feed)
            samples.append(time.perf_counter() - t0)
        med = sorted(samples)[len(samples) // 2]
        res[name] = {"model": path, "batch": a.batch_size, "median_s": med, "img_per_s": a.batch_size / med,
                     "samples_s": samples}
        print(f"{name:10s} batch {a.batch_size}: {a.batch_size / med:8.2f} img/s (onnxruntime {ort.__version__}, "
              f"{os.cpu_count()} cores)")
        del sess
        if a.dr:
            import subprocess
            out = subprocess.run([a.dr, "bench", "model", "--teacher", path, "--device", "cpu", "--batch-size",
                                  str(a.batch_size), "--iters", str(a.iters), "--json"],
                                 check=True, capture_output=True, text=True).stdout
            d = json.loads(out)
            res[name].update({"dr_img_per_s": d["img_per_s"], "dr_samples_s": d["samples_s"],
                              "dr_gflops": d["gflops"], "dr_per_op": d["per_op"][:10],
                              "dr_over_onnxruntime": d["img_per_s"] / res[name]["img_per_s"]})
            print(f"{name:10s} batch {a.batch_size}: {d['img_per_s']:8.2f} img/s (dr, "
                  f"{d['img_per_s'] / res[name]['img_per_s']:.2f}x onnxruntime)")
    meta = {"bench": "cpu-onnxruntime-models", "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "onnxruntime": ort.__version__, "results": res}
    os.makedirs(a.out_dir, exist_ok=True)
    if a.dr:
        import subprocess
        meta["bench"] = "cpu-teacher-vs-onnxruntime"
        meta["commit"] = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                        text=True).stdout.strip()
    kind = "teacher-vs-onnxruntime" if a.dr else "onnxruntime-models"
    path = os.path.join(a.out_dir, f"{datetime.date.today().isoformat()}-cpu-{kind}.json")
    with open(path, "w") as f:
        json.dump(meta, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
