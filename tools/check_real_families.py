#!/usr/bin/env python3
"""Full-size teachers of every family [teacher-cpu] covers, checked against
onnxruntime: the real torchvision/timm architectures (random weights, eval
mode, BatchNorm statistics randomised so folding is exercised), not the small
stand-ins committed under tests/fixtures/teacher. Too large to commit; run
locally (a few minutes on 2 cores):

    python3 tools/check_real_families.py --dr target/release/dr [--exporter legacy17|legacy13|dynamo]
        [--only resnet50,vit_b_16] [--models-dir /tmp/dr-real-models] [--json out.json]

For each model: export at batch 2, run onnxruntime and `dr infer` on the same
input, report max relative logits error and whether the top-10 ids agree.
Exits 1 if any model fails (error > 1e-4 or different top-10).
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import torch

TORCHVISION = [
    "resnet50", "resnext101_32x8d", "wide_resnet50_2", "regnet_y_400mf", "mobilenet_v2",
    "mobilenet_v3_large", "efficientnet_b0", "densenet121", "convnext_tiny", "vit_b_16", "swin_t",
]
TIMM = ["deit_small_patch16_224", "ig_resnext101_32x8d"]


def build(name):
    torch.manual_seed(0)
    if name in TIMM:
        import timm
        m = timm.create_model(name, pretrained=False)
    else:
        import torchvision
        m = getattr(torchvision.models, name)()
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
        if isinstance(mod, torch.nn.Linear) and mod.weight.abs().sum() == 0:
            torch.nn.init.normal_(mod.weight, std=0.02)  # zero-initialised heads
    return m.eval()


def export(m, path, exporter):
    x = torch.randn(2, 3, 224, 224)
    kw = dict(input_names=["input"], output_names=["logits"])
    if exporter == "dynamo":
        # Static batch 2 (dr infer is run at that batch).
        torch.onnx.export(m, (x,), path, dynamo=True, **kw)
    else:
        torch.onnx.export(m, (x,), path, dynamo=False, opset_version=int(exporter[-2:]),
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dr", default="target/release/dr")
    ap.add_argument("--exporter", default="legacy17", choices=["legacy13", "legacy17", "dynamo"])
    ap.add_argument("--only")
    ap.add_argument("--models-dir", default="/tmp/dr-real-models")
    ap.add_argument("--json")
    a = ap.parse_args()
    os.makedirs(a.models_dir, exist_ok=True)
    names = a.only.split(",") if a.only else TORCHVISION + TIMM
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 224, 224), dtype=np.float32)
    xp = os.path.join(a.models_dir, "input.npy")
    np.save(xp, x)
    results, failed = {}, False
    for name in names:
        path = os.path.join(a.models_dir, f"{name}-{a.exporter}.onnx")
        if not os.path.exists(path):
            # Not under no_grad: nn.MultiheadAttention's inference fast path
            # (aten::_native_multi_head_attention) has no ONNX export.
            try:
                export(build(name), path, a.exporter)
            except Exception as e:  # torch's own limits (e.g. SDPA before opset 14)
                print(f"{name:28s} skipped: torch cannot export it ({a.exporter}): {str(e).splitlines()[0]}")
                results[name] = {"skipped": str(e).splitlines()[0]}
                continue
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        del sess
        yp = os.path.join(a.models_dir, f"{name}-{a.exporter}.dr.npy")
        r = subprocess.run([a.dr, "infer", "--model", path, "--input", xp, "--output", yp, "--batch-size", "2"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{name:28s} FAILED: {r.stderr.strip()}")
            results[name] = {"error": r.stderr.strip()}
            failed = True
            continue
        got = np.load(yp)
        rel = float(np.abs(got - want).max() / np.abs(want).max())
        top = all((np.argsort(-got[i], kind="stable")[:10] == np.argsort(-want[i], kind="stable")[:10]).all()
                  for i in range(len(x)))
        ok = rel <= 1e-4 and top
        failed |= not ok
        results[name] = {"max_rel_error": rel, "top10_equal": bool(top)}
        print(f"{name:28s} max rel error {rel:.2e}  top-10 {'same' if top else 'DIFFERENT'}  {'ok' if ok else 'FAIL'}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"exporter": a.exporter, "torch": torch.__version__, "onnxruntime": ort.__version__,
                       "results": results}, f, indent=1)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
