#!/usr/bin/env python3
"""Trains the demo teacher (assets/demo-teacher.onnx) on `dr demo`'s shapes.

The images come from dr itself (`dr demo --write-data`), so the teacher
learns exactly the distribution `dr demo` draws: 400 images per class with
data seed 1000 for training, 50 per class with seed 2000 held out (the demo
uses seed 7). Training augments as configs/demo.yaml does (RandomResizedCrop
32 px, flip, RandAugment, erasing) with torchvision. The export is checked
against onnxruntime, and held-out accuracy is printed.

    python tools/train_demo_teacher.py --dr target/release/dr

Needs torch, torchvision, onnx, onnxruntime, pillow. Deterministic given the
same torch version (single thread, fixed seeds). After it writes the ONNX,
rebuild dr (the teacher is embedded in the binary).
"""

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision import datasets, transforms

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def net():
    def block(cin, cout, stride):
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(3, 24, 1),
        *block(24, 32, 2),
        *block(32, 48, 1),
        *block(48, 64, 2),
        *block(64, 96, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(96, 10),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dr", default="target/release/dr")
    ap.add_argument("--out", default="assets/demo-teacher.onnx")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="dr-demo-train-"))
    for name, seed, n in [("train", 1000, 400), ("heldout", 2000, 50)]:
        subprocess.run(
            [args.dr, "demo", "--write-data", str(tmp / name), "--data-seed", str(seed),
             "--images-per-class", str(n)],
            check=True,
        )
    train_tf = transforms.Compose([
        transforms.RandomResizedCrop(32, scale=(0.35, 1.0)),
        transforms.RandomHorizontalFlip(),
        transforms.RandAugment(num_ops=2, magnitude=5),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
        transforms.RandomErasing(p=0.25),
    ])
    eval_tf = transforms.Compose([
        transforms.Resize((32, 32)),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    train = datasets.ImageFolder(tmp / "train", train_tf)
    held = datasets.ImageFolder(tmp / "heldout", eval_tf)
    g = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True, generator=g)
    model = net()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=args.epochs * len(loader))
    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(y)
        model.eval()
        with torch.no_grad():
            xs = torch.stack([held[i][0] for i in range(len(held))])
            ys = torch.tensor([held[i][1] for i in range(len(held))])
            acc = (model(xs).argmax(1) == ys).float().mean().item()
        print(f"epoch {epoch + 1}: loss {total / len(train):.3f}, held-out top-1 {100 * acc:.1f}%")
    assert train.classes == sorted(train.classes)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.onnx.export(
        model, (x,), args.out, input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
        dynamo=False,
    )
    import onnxruntime as ort

    sess = ort.InferenceSession(args.out, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": xs[:64].numpy()})[0]
    with torch.no_grad():
        want = model(xs[:64]).numpy()
    err = float(np.abs(got - want).max())
    print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes); onnxruntime max abs diff {err:.2e}")
    print(f"classes: {train.classes}")
    assert err < 1e-4


if __name__ == "__main__":
    main()
