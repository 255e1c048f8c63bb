#!/usr/bin/env python3
"""Peer timings for `cargo bench --bench augment_cpu`: the same CPU ops with
Pillow/torchvision, one thread, same inputs (tests/fixtures/augment/images).

    python3 tools/bench_torchvision_cpu.py [--out-dir bench-results]

Prints microseconds per call (median of repeats) and writes
<out-dir>/<date>-cpu-torchvision-augment.json with the raw samples.
Needs torch, torchvision, Pillow, numpy.
"""

import argparse
import datetime
import json
import os
import platform
import time

import PIL
import torch
import torchvision
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F
from torchvision.transforms.autoaugment import _apply_op

IMAGES = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "augment", "images")
OPS = ["Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
       "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize"]


def timeit(fn, repeat=30, number=20):
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number * 1e6)
    samples.sort()
    return samples[len(samples) // 2], samples


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default="bench-results")
    a = ap.parse_args()
    torch.set_num_threads(1)
    photo = Image.open(os.path.join(IMAGES, "photo.png")).convert("RGB")
    pair = Image.open(os.path.join(IMAGES, "pair.png")).convert("RGB")
    jpeg_path = os.path.join(IMAGES, "jpeg.jpg")
    res = {}

    def record(name, fn, **kw):
        med, samples = timeit(fn, **kw)
        res[name] = {"median_us": med, "samples_us": samples}
        print(f"{name:40s} {med:10.1f} us")

    record("decode_jpeg_160x107", lambda: Image.open(jpeg_path).convert("RGB"))
    record("rrc_resize_205x244_to_224",
           lambda: F.resized_crop(photo, 17, 70, 244, 205, [224, 224], InterpolationMode.BILINEAR))
    record("rrc_resize_451x300_to_224",
           lambda: F.resized_crop(photo, 0, 0, 300, 451, [224, 224], InterpolationMode.BILINEAR))
    t224 = F.pil_to_tensor(F.resized_crop(photo, 17, 70, 244, 205, [224, 224], InterpolationMode.BILINEAR))
    space = torchvision.transforms.RandAugment()._augmentation_space(31, (224, 224))
    for op in OPS:
        mags, _ = space[op]
        m = float(mags[9].item()) if mags.ndim > 0 else 0.0
        record(f"randaug_224/{op}",
               lambda op=op, m=m: _apply_op(t224, op, m, interpolation=InterpolationMode.NEAREST, fill=None))
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    record("float_stage_224", lambda: F.normalize((t224 / 255.0).to(torch.float32), mean, std))

    def sample():
        # ml-dr's generation path for one randaug_mixing sample (both images).
        outs = []
        for img, box in ((photo, (17, 70, 244, 205)), (pair, (10, 20, 150, 180))):
            x = F.to_tensor(F.resized_crop(img, *box, [224, 224], InterpolationMode.BILINEAR))
            x = (x * 255).to(torch.uint8)
            x = F.hflip(x)
            x = _apply_op(x, "Rotate", 9.0, interpolation=InterpolationMode.NEAREST, fill=None)
            x = _apply_op(x, "Contrast", 0.27, interpolation=InterpolationMode.NEAREST, fill=None)
            x = (x / 255.0).to(torch.float32)
            x[:, 10:50, 20:60] = 0
            outs.append(F.normalize(x, mean, std))
        x = 0.3 * outs[0] + 0.7 * outs[1]
        x = x.clone()
        x[:, 30:120, 40:150] = outs[1][:, 30:120, 40:150]
        return x

    record("full_sample_randaug_mixing_224", sample, repeat=20, number=10)
    meta = {"bench": "cpu-torchvision-augment", "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "host": platform.node(), "cpu": platform.processor() or platform.machine(), "threads": 1,
            "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "pillow": PIL.__version__},
            "results": res}
    os.makedirs(a.out_dir, exist_ok=True)
    path = os.path.join(a.out_dir, f"{datetime.date.today().isoformat()}-cpu-torchvision-augment.json")
    with open(path, "w") as f:
        json.dump(meta, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
