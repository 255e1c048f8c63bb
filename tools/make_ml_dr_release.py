#!/usr/bin/env python3
"""A small fake ml-dr release, written by ml-dr's own code, for `dr import`.

    python3 tools/make_ml_dr_release.py --ml-dr /tmp/ml-dr [--out tests/fixtures/ml-dr-release]

The images are an ImageFolder of augment fixtures (FILES below, class c{i%2};
tests/ml_dr_import.rs builds the same folder). Parameters come from ml-dr's
`compose_from_config`, `before_collate_apply` and its generation loop's
`transform_batch` (via tools/make_augment_fixtures.py) with RandAugment,
erasing, MixUp and CutMix at 32 px; probabilities are a random distribution
cut to the top-k by ml-dr's `sparsify` (argpartition order, unsorted).
Files are written as ml-dr writes them: `torch.save(..., pickle_protocol=4)`
per image (numpy scalars in CutMix records included) and `torch.save(config)`.
`expected.json` holds the records as plain JSON for the test.
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile

import numpy as np
import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = ["photo.png", "jpeg.jpg", "pair.png", "tall.png", "rgba.png", "palette.png"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ml-dr", required=True)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "tests", "fixtures", "ml-dr-release"))
    a = ap.parse_args()
    sys.path.insert(0, a.ml_dr)
    sys.path.insert(0, HERE)
    import dr.transforms as T_dr
    from dr.utils import sparsify
    from make_augment_fixtures import aug_config, plain, transform_batch

    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    root = tempfile.mkdtemp(prefix="dr-fake-release-")
    src = os.path.join(HERE, "..", "tests", "fixtures", "augment", "images")
    for i, f in enumerate(FILES):
        os.makedirs(os.path.join(root, f"c{i % 2}"), exist_ok=True)
        shutil.copy(os.path.join(src, f), os.path.join(root, f"c{i % 2}", f))
    ds = torchvision.datasets.ImageFolder(root)
    ns, k, classes = 3, 4, 10
    aug = aug_config(["rrc", "flip", "ra", "erase", "mixup", "cutmix"], 32)
    before = T_dr.compose_from_config(T_dr.before_collate_config(aug))
    transforms = T_dr.compose_from_config(aug)
    crops, coords = [], {}
    for i in range(len(ds)):
        img, _ = ds[i]
        s, p = T_dr.before_collate_apply(img, before, ns)
        crops.append(s)
        for t, v in p.items():
            coords.setdefault(t, []).append(v)
    images = torch.stack(crops)
    coords = {t: torch.stack(v) for t, v in coords.items()}
    outs, params = transform_batch(torch.arange(len(ds)), images, coords, transforms, ns)
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)
    config = {"dataset": "fake", "num_classes": classes, "distributed": False,
              "reinforce": {"num_samples": ns, "num_candidates": None, "topk": k, "compress": True,
                            "joblib": False, "gzip": False, "image_augmentation": aug}}
    torch.save(config, os.path.join(a.out, "config.pth.tar"))
    expected = []
    for i in range(len(ds)):
        samples = []
        for j in range(ns):
            p = params[i * ns + j]
            dense = torch.distributions.Dirichlet(torch.full((classes,), 0.5)).sample()
            samples.append({"params": p, "prob": sparsify(dense.numpy(), k)})
        torch.save((i, samples), os.path.join(a.out, f"{i}.pth.tar"), pickle_protocol=4)
        expected.append({"id": i, "path": ds.samples[i][0][len(root) + 1:],
                         "samples": [{"compressed": plain(s["params"]),
                                      "probs": [float(v) for v in s["prob"][0]],
                                      "classes": [int(c) for c in s["prob"][1]]} for s in samples]})
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump({"files": FILES, "images": expected}, f, indent=1)
    print(f"wrote {len(ds)} image files, config and expected.json to {a.out}")


if __name__ == "__main__":
    main()
