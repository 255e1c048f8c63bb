#!/usr/bin/env python3
"""Checks `dr export --format ml-dr` output with torch and ml-dr's own loader.

    python3 tools/check_ml_dr_export.py --export DIR --images DATA_ROOT --ml-dr /tmp/ml-dr

(`--ml-dr`: a copy of apple/ml-dr, e.g. `git archive` of a clone.) Every
file is opened with `torch.load` under its default `weights_only=True`
(PyTorch >= 2.6), then every image is drawn through ml-dr's
`ReinforcedDataset` (`Compose.decompress` + `reapply`, which asserts the
replayed parameters equal the stored ones) for every stored sample.
Images listed in the dataset's bad-images.tsv (no file) are skipped.
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


if __name__ == "__main__":
    main()
