#!/usr/bin/env python3
"""An ImageFolder of photo-like JPEGs at ImageNet's common sizes, for timing
`dr reinforce` end to end where no dataset can be fetched (the lent GPU
machines). Smooth gradients, blobs and noise, quality 90, seeded.

    python3 tools/make_photo_folder.py OUT --images 512 --classes 8
"""

import argparse
import os

import numpy as np
from PIL import Image

DIMS = [(500, 375), (375, 500), (500, 333), (640, 480), (333, 500)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    r = np.random.default_rng(a.seed)
    for i in range(a.images):
        w, h = DIMS[i % len(DIMS)]
        y, x = np.mgrid[0:h, 0:w] / max(w, h)
        f = r.uniform(2, 14, 6)
        img = np.stack(
            [110 + 70 * np.sin(f[c] * x + f[c + 3]) * np.cos(f[(c + 1) % 3] * y) for c in range(3)], -1
        )
        img += r.normal(0, 6, img.shape)
        d = os.path.join(a.out, f"class{i % a.classes:02d}")
        os.makedirs(d, exist_ok=True)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(os.path.join(d, f"{i:05d}.jpg"), quality=90)
    print(f"wrote {a.images} images in {a.classes} classes to {a.out}")


if __name__ == "__main__":
    main()
