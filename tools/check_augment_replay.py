#!/usr/bin/env python3
"""Replays `dr augment` output with ml-dr's own code and compares.

    dr augment --config C.yaml --image A.jpg --pair B.jpg --samples 32 --out /tmp/aug
    python3 tools/check_augment_replay.py --ml-dr /path/to/ml-dr \\
        --config C.yaml --image A.jpg --pair B.jpg --dir /tmp/aug

For every sample in params.json: ml-dr's `Compose.decompress` reads the
compressed record; the before-collate transforms (random_resized_crop, ...,
to_tensor) are reapplied on the PIL image, then the after-collate ones
(uint8, flip, RandAugment, to_tensor, erase, normalize, mixup, cutmix) with
`Compose.reapply` on tensors, as ml-dr's generation path runs them. Prints the
max abs difference against samples.npy; exits 1 above --tol (default 1e-6).
Needs torch, torchvision, Pillow, numpy, pyyaml and ml-dr's imports (timm, joblib).
"""

import argparse
import json
import os
import sys

import numpy as np
import yaml
from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ml-dr", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--pair")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--tol", type=float, default=1e-6)
    a = ap.parse_args()
    sys.path.insert(0, a.ml_dr)
    import dr.transforms as T

    cfg = yaml.safe_load(open(a.config))
    r = cfg["parameters"]["reinforce"] if "parameters" in cfg else cfg["reinforce"]
    aug = r["image_augmentation"]
    full = T.compose_from_config(aug)
    before = T.compose_from_config(T.before_collate_config(aug))
    keep = {"uint8", "to_tensor"}
    after = T.Compose([(n, t) for n, t in full.transforms if n not in T.BEFORE_COLLATE_TRANSFORMS or n in keep])

    img = Image.open(a.image).convert("RGB")
    img2 = Image.open(a.pair).convert("RGB") if a.pair else img
    ours = np.load(os.path.join(a.dir, "samples.npy"))
    entries = json.load(open(os.path.join(a.dir, "params.json")))
    worst = 0.0
    for k, e in enumerate(entries):
        p = full.decompress(e["compressed"])
        side = lambda i: {n: (v[i] if len(v) > i else None,) for n, v in p.items()
                          if n not in ("mixup", "cutmix", "id2")}
        x, _ = before.reapply(img, side(0))
        x2 = None
        if "id2" in p:
            x2, _ = before.reapply(img2 if a.pair else img, side(1))
        x, _ = after.reapply(x, p, x2)
        d = float(np.abs(x.numpy() - ours[k]).max())
        worst = max(worst, d)
        print(f"sample {k}: max abs diff {d:.3g}")
    print(f"{len(entries)} samples replayed by ml-dr; worst max abs diff {worst:.3g} (tolerance {a.tol})")
    sys.exit(0 if worst <= a.tol else 1)


if __name__ == "__main__":
    main()
