#!/usr/bin/env python3
"""ONNX teacher fixtures: small models of each family, exported by
torch.onnx (legacy TorchScript exporter at opsets 13 and 17, and the dynamo
exporter), with onnxruntime's outputs recorded for tests/teacher_golden.rs.

    /tmp/ref/bin/pip install torch torchvision onnx onnxruntime onnxscript numpy
    /tmp/ref/bin/python tools/make_teacher_fixtures.py            # small, committed
    /tmp/ref/bin/python tools/make_teacher_fixtures.py --full /tmp/full   # real widths, local only

Each model: random weights, eval mode, BatchNorm with non-trivial running
statistics. Writes tests/fixtures/teacher/<family>-<exporter>.onnx, the input
(<family>.input.npy, float32 NCHW) and onnxruntime's output
(<family>-<exporter>.ort.npy), plus cases.json listing them with versions.
"""

import argparse
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "teacher")


def randomize_bn(model, gen):
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model.eval()


class Block(nn.Module):
    """ResNet basic block / ResNeXt bottleneck (groups) with optional downsample."""

    def __init__(self, cin, cout, stride, groups=1, bottleneck=False):
        super().__init__()
        mid = cout // 2 if bottleneck else cout
        if bottleneck:
            self.body = nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                nn.Conv2d(mid, mid, 3, stride, 1, groups=groups, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        else:
            self.body = nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        return self.relu(self.body(x) + idt)


class TinyResNet(nn.Module):
    """The ops of ResNet/ResNeXt/Wide-ResNet/ig_resnext: 7x7 stem, BN, ReLU,
    max pool, basic and grouped bottleneck blocks, global pool, FC."""

    def __init__(self, classes=37):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 7, 2, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        self.layers = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2, groups=8, bottleneck=True),
                                    Block(64, 64, 1, groups=8, bottleneck=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.pool(self.layers(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


FAMILIES = {
    "resnet": (TinyResNet, (3, 64, 64)),
}


def export(model, x, path, kind):
    if kind == "legacy13":
        torch.onnx.export(model, x, path, opset_version=13, dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    elif kind == "legacy17":
        torch.onnx.export(model, x, path, opset_version=17, dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    else:
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.onnx.export(model, (x,), path, dynamo=True, input_names=["input"], output_names=["logits"],
                          dynamic_shapes={"x": {0: batch}}, external_data=False)
    onnx.checker.check_model(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=OUT)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    cases = []
    for fam, (ctor, shape) in FAMILIES.items():
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        model = randomize_bn(ctor(), gen)
        x = torch.randn((3,) + shape, generator=gen)
        np.save(os.path.join(a.out, f"{fam}.input.npy"), x.numpy())
        with torch.no_grad():
            ref = model(x).numpy()
        for kind in ["legacy13", "legacy17", "dynamo"]:
            path = os.path.join(a.out, f"{fam}-{kind}.onnx")
            export(model, x, path, kind)
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            y = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
            np.save(os.path.join(a.out, f"{fam}-{kind}.ort.npy"), y)
            m = onnx.load(path)
            ops = sorted({n.op_type for n in m.graph.node})
            opset = max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
            err = float(np.abs(y - ref).max() / (np.abs(ref).max() + 1e-12))
            print(f"{fam}-{kind}: opset {opset}, {len(m.graph.node)} nodes, ops {ops}, ort vs torch rel {err:.2e}")
            cases.append({"family": fam, "exporter": kind, "model": os.path.basename(path), "opset": opset,
                          "input": f"{fam}.input.npy", "output": os.path.basename(path)[:-5] + ".ort.npy",
                          "ops": ops})
    meta = {"versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
            "cases": cases}
    with open(os.path.join(a.out, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()
