#!/usr/bin/env python3
"""Checks `dr export --format ml-dr` output with torch and ml-dr's own loader.

    python3 tools/check_ml_dr_export.py --export DIR --images DATA_ROOT --ml-dr /tmp/ml-dr \
        [--out OUT --dr target/release/dr]

(`--ml-dr`: a copy of apple/ml-dr, e.g. `git archive` of a clone.) Every
file is opened with `torch.load` under its default `weights_only=True`
(PyTorch >= 2.6), then every image is drawn through ml-dr's
`ReinforcedDataset` (`Compose.decompress` + `reapply`, which asserts the
replayed parameters equal the stored ones) for every stored sample.
Images listed in the dataset's bad-images.tsv (no file) are skipped.

With --out (the dr dataset exported) and --dr: python/dr_reader's PyTorch
Dataset is drawn over every image, and for each image's first samples the
tensor ml-dr's student-side replay makes (RRC, flip, RandAugment on PIL) is
compared with `dr augment --params` (ml-dr's generation path, uint8 tensors)
on the same record: reported as max/mean absolute difference.
"""

import argparse
import os
import random
import sys

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--ml-dr", default="/tmp/ml-dr")
    ap.add_argument("--out", help="the dr dataset that was exported")
    ap.add_argument("--dr", default="target/release/dr")
    ap.add_argument("--images-to-compare", type=int, default=8)
    a = ap.parse_args()
    sys.path.insert(0, a.ml_dr)
    import torchvision
    from dr.data import ReinforcedDataset

    files = [f for f in os.listdir(a.export) if f.endswith(".pth.tar")]
    for f in files:
        torch.load(os.path.join(a.export, f), weights_only=True)
    print(f"torch.load(weights_only=True) opened {len(files)} files")
    cfg = torch.load(os.path.join(a.export, "config.pth.tar"))
    ds = torchvision.datasets.ImageFolder(a.images)
    rds = ReinforcedDataset(ds, a.export, {}, cfg["num_classes"])
    ns = cfg["reinforce"]["num_samples"]
    have = {int(f.split(".")[0]) for f in files if f != "config.pth.tar"}
    checked = 0
    for index in sorted(have):
        meta = torch.load(os.path.join(a.export, f"{index}.pth.tar"))
        assert meta[0] == index and len(meta[1]) == ns, (index, meta[0], len(meta[1]))
        for s in range(ns):
            # ReinforcedDataset picks a sample with random.randint(0, NS - 1):
            # steer it to each in turn.
            random.randint = lambda lo, hi, s=s: s if hi == ns - 1 else lo
            img, target = rds[index]
            assert img.shape[0] == 3 and abs(float(target.sum()) - 1.0) < 1e-2, (index, s)
            checked += 1
    print(f"ml-dr ReinforcedDataset replayed {checked} samples of {len(have)} images; "
          f"{len(ds) - len(have)} images without a file (bad images)")
    if a.out:
        compare(a, rds, ds, have, ns)


def compare(a, rds, ds, have, ns):
    import json
    import subprocess
    import tempfile

    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
    from dr_reader.torch import ReinforcedDataset as DrDataset

    dd = DrDataset(a.out, root=a.images, seed=0)
    for i in sorted(have):
        x, t = dd[i]
        assert x.shape[0] == 3 and abs(float(t.sum()) - 1.0) < 1e-3
    print(f"dr_reader.torch.ReinforcedDataset drew {len(have)} images")
    with open(os.path.join(a.out, "manifest.json")) as f:
        config = json.load(f)["settings"]["config"]
    tmp = tempfile.mkdtemp(prefix="dr-check-export-")
    cfg = os.path.join(tmp, "config.yaml")
    with open(cfg, "w") as f:
        json.dump({"reinforce": config}, f)
    diffs = []
    for i in sorted(have)[: a.images_to_compare]:
        meta = torch.load(os.path.join(a.export, f"{i}.pth.tar"))
        for s, sample in enumerate(meta[1][:2]):
            rec = sample["params"]
            params = rds.transforms.decompress(rec)
            img, _ = ds[i]
            img2 = ds[params["id2"]][0] if "id2" in params else None
            x_ml, _ = rds.transforms.reapply(img, params, img2)
            pf = os.path.join(tmp, "params.json")
            with open(pf, "w") as f:
                json.dump([rec], f, default=lambda o: o.item() if hasattr(o, "item") else o)
            pair = ds.samples[params["id2"]][0] if "id2" in params else ds.samples[i][0]
            o = os.path.join(tmp, f"{i}-{s}")
            subprocess.run([a.dr, "augment", "--config", cfg, "--image", ds.samples[i][0], "--pair", pair,
                            "--index", str(i), "--params", pf, "--out", o], check=True, capture_output=True)
            x_dr = np.load(os.path.join(o, "samples.npy"))[0]
            d = np.abs(x_dr - x_ml.numpy())
            ops = [op for op, _ in params.get("rand_augment", ([],))[0] or []]
            diffs.append((i, s, float(d.max()), float(d.mean()), ops))
    for i, s, mx, mean, ops in diffs:
        print(f"  image {i} sample {s}: max |dr - ml-dr replay| {mx:.4f}, mean {mean:.5f}  RandAugment {ops}")
    exact = sum(1 for d in diffs if d[2] < 1e-5)
    print(f"dr augment vs ml-dr's student-side replay: {exact}/{len(diffs)} samples identical (1e-5)")


if __name__ == "__main__":
    main()
