#!/usr/bin/env python3
"""Golden fixtures for dr's CPU augmentation reference (src/augment).

Runs the real reference -- Pillow, torchvision's tensor ops, and ml-dr's own
`dr.transforms` classes -- on a few small images and writes what they
produce, so `tests/augment_golden.rs` can check dr bit for bit.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch torchvision \
        pillow numpy timm joblib scikit-image
    git clone https://github.com/apple/ml-dr /tmp/ml-dr        # or any copy
    /tmp/ref/bin/python tools/make_augment_fixtures.py --ml-dr /tmp/ml-dr
    # the Pillow-12 resize rule, into its own file:
    /tmp/ref/bin/pip install pillow==12.3.0
    /tmp/ref/bin/python tools/make_augment_fixtures.py --ml-dr /tmp/ml-dr --resize-only

Outputs (tests/fixtures/augment/):
  images/*.png      inputs: two public-domain/CC0 photos from scikit-image
                    (chelsea, CC0 Stefan van der Walt; coffee, CC0 Rachel
                    Michetti, downscaled) and synthetic edge cases
  cases-pillow<N>.json   every case: op, parameters, input, and the sha256 of
                    the expected bytes (uint8 HWC for PIL results, CHW for
                    tensors, float32 little-endian for float tensors); small
                    float results are also stored in full for tolerance checks.
The versions that produced a file are recorded in it.
"""

import argparse
import hashlib
import json
import os
import random
import sys

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F
from torchvision.transforms.autoaugment import _apply_op

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "augment")


def sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def save_png(img, name):
    path = os.path.join(OUT, "images", name)
    img.save(path, optimize=True)
    return name


def make_images():
    import skimage.data as d

    os.makedirs(os.path.join(OUT, "images"), exist_ok=True)
    rng = np.random.default_rng(0)
    imgs = {}
    imgs["photo"] = Image.fromarray(d.chelsea())  # 451x300, an ImageNet-like size
    imgs["pair"] = Image.fromarray(d.coffee()).resize((300, 200), Image.LANCZOS)
    imgs["line"] = Image.fromarray(rng.integers(0, 256, (40, 1, 3), dtype=np.uint8))
    imgs["flat"] = Image.fromarray(rng.integers(0, 256, (3, 200, 3), dtype=np.uint8))
    imgs["tall"] = Image.fromarray(d.chelsea()[:, 100:160])  # 60x300
    gray = (np.arange(23 * 37).reshape(23, 37) * 7 % 256).astype(np.uint8)
    imgs["gray"] = Image.fromarray(gray)
    rgba = rng.integers(0, 256, (29, 31, 4), dtype=np.uint8)
    imgs["rgba"] = Image.fromarray(rgba)
    pal = Image.fromarray(rng.integers(0, 256, (17, 19, 3), dtype=np.uint8)).quantize(16)
    imgs["palette"] = pal
    g16 = (np.arange(13 * 11).reshape(13, 11) * 997 % 65536).astype(np.uint16)
    imgs["gray16"] = Image.fromarray(g16)
    files = {k: save_png(v, f"{k}.png") for k, v in imgs.items()}
    # JPEGs: decoding must match libjpeg-turbo as Pillow drives it.
    with open(os.path.join(os.path.dirname(d.__file__), "rocket.jpg"), "rb") as src:
        small = Image.open(src).convert("RGB").resize((160, 107), Image.LANCZOS)
    for key, img in [("jpeg", small), ("jpeg_gray", small.convert("L")), ("jpeg_cmyk", small.convert("CMYK"))]:
        img.save(os.path.join(OUT, "images", f"{key}.jpg"), quality=90)
        files[key] = f"{key}.jpg"
    # The other formats ImageFolder accepts.
    for key, ext, opts in [("bmp", "bmp", {}), ("tiff", "tiff", {}), ("ppm", "ppm", {}),
                           ("webp_lossless", "webp", {"lossless": True}), ("webp", "webp", {"quality": 80})]:
        imgs["photo"].crop((150, 90, 246, 154)).save(os.path.join(OUT, "images", f"{key}.{ext}"), **opts)
        files[key] = f"{key}.{ext}"
    return files


def load_rgb(name):
    return Image.open(os.path.join(OUT, "images", name)).convert("RGB")


def versions():
    return {
        "pillow": PIL.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
    }


def decode_cases(files):
    cases = []
    for key, name in sorted(files.items()):
        im = Image.open(os.path.join(OUT, "images", name))
        arr = np.asarray(im.convert("RGB"))
        cases.append({"name": f"decode/{key}", "mode": im.mode, "input": name, "size": [arr.shape[1], arr.shape[0]],
                      "sha256": sha(arr)})
    return cases


def resize_cases(files):
    """RandomResizedCrop (crop, then Pillow bilinear to 224) and Resize."""
    cases = []
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    rrc = torchvision.transforms.RandomResizedCrop(224)
    for key in ["photo", "pair", "line", "flat", "tall"]:
        img = load_rgb(files[key])
        n = 40 if key == "photo" else 8
        for t in range(n):
            i, j, h, w = rrc.get_params(img, rrc.scale, rrc.ratio)
            if key == "photo" and t == 0:
                i, j, h, w = 0, 0, img.height, img.width  # the whole image
            if key == "photo" and t == 1:
                i, j, h, w = 100, 200, 3, 2  # a tiny crop, upscaled
            out = np.asarray(F.resized_crop(img, i, j, h, w, [224, 224], InterpolationMode.BILINEAR))
            case = {"name": f"rrc/{key}/{t}", "input": files[key], "rrc": [i, j, h, w],
                    "size": [224, 224], "sha256": sha(out)}
            cases.append(case)
        for size in [224, 57]:
            out = np.asarray(F.resize(img, size, InterpolationMode.BILINEAR))
            cases.append({"name": f"resize/{key}/{size}", "input": files[key], "resize": size,
                          "out_hw": list(out.shape[:2]), "sha256": sha(out)})
    return cases


def geometry_cases(files):
    """center_crop (pads when larger), pad in each mode, RandomCrop with pad_if_needed."""
    cases = []
    for key in ["photo", "line", "flat", "gray"]:
        img = load_rgb(files[key])
        for size in [[224, 224], [7, 5], [64, 301]]:
            out = np.asarray(F.center_crop(img, size))
            cases.append({"name": f"geometry/center_crop/{key}/{size[0]}x{size[1]}", "input": files[key],
                          "center_crop": size, "out_hw": list(out.shape[:2]), "sha256": sha(out)})
        for mode in ["constant", "edge", "reflect", "symmetric"]:
            pad = [3, 1, 2, 4]  # left, top, right, bottom
            if min(img.size) <= max(pad) and mode == "reflect":
                continue  # numpy's reflect needs more pixels than the pad
            out = np.asarray(F.pad(img, pad, fill=7, padding_mode=mode))
            cases.append({"name": f"geometry/pad/{key}/{mode}", "input": files[key], "pad": pad, "fill": 7,
                          "padding_mode": mode, "out_hw": list(out.shape[:2]), "sha256": sha(out)})
    return cases


def randaug_inputs(files):
    photo = load_rgb(files["photo"])
    ins = {
        "224": F.resized_crop(photo, 20, 60, 250, 300, [224, 224], InterpolationMode.BILINEAR),
        "32": photo.crop((200, 120, 232, 152)),
        "160x200": photo.crop((100, 50, 300, 210)),  # h=160, w=200
    }
    return {k: save_png(v, f"ra_in_{k}.png") for k, v in ins.items()}


def randaug_cases(ins):
    import dr.transforms as T_dr

    names = T_dr.RandAugment.op_names
    cases = []
    for key, name in ins.items():
        img = F.pil_to_tensor(load_rgb(name))  # uint8 CHW
        h, w = img.shape[-2:]
        ra = torchvision.transforms.RandAugment()
        space = ra._augmentation_space(31, (h, w))
        for op, opname in enumerate(names):
            mags, signed = space[opname]
            mag = float(mags[9].item()) if mags.ndim > 0 else 0.0
            for sign in ([1.0, -1.0] if signed else [1.0]):
                out = _apply_op(img, opname, mag * sign, interpolation=InterpolationMode.NEAREST, fill=None)
                cases.append({"name": f"ra/{key}/{opname}/{'+' if sign > 0 else '-'}", "input": name,
                              "op": op, "magnitude": mag * sign, "sha256": sha(out.numpy())})
        # Two ops in sequence, as RandAugment applies them.
        out = _apply_op(img, "Rotate", -9.0, interpolation=InterpolationMode.NEAREST, fill=None)
        out = _apply_op(out, "Equalize", 0.0, interpolation=InterpolationMode.NEAREST, fill=None)
        cases.append({"name": f"ra/{key}/Rotate-Equalize", "input": name, "ops": [[5, -9.0], [13, 0.0]],
                      "sha256": sha(out.numpy())})
    return cases


def transform_batch(ids, images, coords, transforms, num_samples):
    """ml-dr reinforce.transform_batch (generation loop), without the teacher."""
    out, params_all = [], []
    for i in range(images.shape[0]):
        for j in range(num_samples):
            img = images[i, j]
            index = random.randint(0, images.shape[0] - 1)
            j2 = random.randint(0, images.shape[1] - 1)
            img2 = images[index, j2]
            id2 = int(ids[index])
            img, params = transforms(img, img2, after_collate=True)
            params.update({k: (tuple(v[i, j].tolist()), tuple(v[index, j2].tolist())) for k, v in coords.items()})
            if "mixup" in params or "cutmix" in params:
                params["id2"] = id2
            params = transforms.compress(params)
            out.append((i, j, img))
            params_all.append(params)
    return out, params_all


def plain(x):
    """Compressed params as JSON: tuples to lists, numpy scalars to Python."""
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


CONFIGS = {
    "imagenet-cropflip": ["rrc", "flip"],
    "imagenet-mixing": ["rrc", "flip", "mixup", "cutmix"],
    "imagenet-randaug": ["rrc", "flip", "ra", "erase"],
    "imagenet-randaug_mixing": ["rrc", "flip", "ra", "erase", "mixup", "cutmix"],
    "cifar100": ["resize", "random_crop", "flip", "ra", "erase"],
    # flowers102/food101 as meant (ml-dr's files misspell the crop key).
    "flowers102-food101": ["rrc", "flip", "ra", "erase"],
}


def aug_config(parts, size):
    c = {"uint8": {"enable": True}}
    if "resize" in parts:
        # A list: with an int, ml-dr's own generation loop fails (Resize records
        # the int, and transform_batch calls tuple() on it), so ml-dr's
        # cifar100 reinforce config cannot run as written.
        c["resize"] = {"size": [size]}
    if "random_crop" in parts:
        c["random_crop"] = {"size": size, "padding": 16}
    if "rrc" in parts:
        c["random_resized_crop"] = {"enable": True, "size": size}
    c["random_horizontal_flip"] = {"enable": True, "p": 0.5}
    if "ra" in parts:
        c["rand_augment"] = {"enable": True, "p": 1.0}
    c["to_tensor"] = {"enable": True}
    c["normalize"] = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    if "erase" in parts:
        c["random_erase"] = {"enable": True, "p": 0.25}
    if "mixup" in parts:
        c["mixup"] = {"enable": True, "alpha": 1.0, "div_by": 2.0, "p": 0.5}
    if "cutmix" in parts:
        c["cutmix"] = {"enable": True, "alpha": 1.0, "p": 0.5}
    return c


def pipeline_cases(files):
    import dr.transforms as T_dr

    cases = []
    for cname, parts in CONFIGS.items():
        for size in [224, 64]:
            torch.manual_seed(7)
            random.seed(7)
            np.random.seed(7)
            aug = aug_config(parts, size)
            before = T_dr.compose_from_config(T_dr.before_collate_config(aug))
            transforms = T_dr.compose_from_config(aug)
            ns = 3
            keys = ["photo", "pair"]
            crops, coords = [], {}
            for k in keys:
                s, p = T_dr.before_collate_apply(load_rgb(files[k]), before, ns)
                crops.append(s)
                for t, v in p.items():
                    coords.setdefault(t, []).append(v)
            images = torch.stack(crops)
            coords = {t: torch.stack(v) for t, v in coords.items()}
            ids = torch.tensor([0, 1])
            outs, params = transform_batch(ids, images, coords, transforms, ns)
            for (i, j, img), p in zip(outs, params):
                arr = img.numpy().astype(np.float32)
                case = {"name": f"pipeline/{cname}/{size}/{i}/{j}", "config": aug, "image": files[keys[i]],
                        "images_by_id": [files[k] for k in keys], "params": plain(p),
                        "shape": list(arr.shape), "sha256": sha(arr)}
                if size == 64 and i == 0 and j == 0:
                    case["data"] = f"{cname}-64.npy"
                    np.save(os.path.join(OUT, case["data"]), arr)
                cases.append(case)
    return cases


def main():
    global OUT
    ap = argparse.ArgumentParser()
    ap.add_argument("--ml-dr", required=True, help="path to a copy of apple/ml-dr")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--resize-only", action="store_true", help="only the Pillow-version-dependent cases")
    a = ap.parse_args()
    OUT = a.out
    sys.path.insert(0, a.ml_dr)
    files = make_images() if not a.resize_only else {
        k: f"{k}.png" for k in ["photo", "pair", "line", "flat", "tall"]}
    cases = resize_cases(files)
    if not a.resize_only:
        cases += decode_cases(files)
        cases += geometry_cases(files)
        cases += randaug_cases(randaug_inputs(files))
        cases += pipeline_cases(files)
    major = PIL.__version__.split(".")[0]
    path = os.path.join(OUT, f"cases-pillow{major}.json")
    with open(path, "w") as f:
        head = json.dumps({"versions": versions(), "pass_order": f"pillow{major}"})
        f.write(head[:-1] + ',\n"cases": [\n')
        f.write(",\n".join(json.dumps(c, separators=(",", ":")) for c in cases))
        f.write("\n]}\n")
    print(f"wrote {len(cases)} cases to {path}")


if __name__ == "__main__":
    main()
