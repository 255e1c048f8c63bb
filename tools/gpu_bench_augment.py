#!/usr/bin/env python3
"""Peer for `dr bench augment`: torchvision doing ml-dr's generation-time
augmentation for the four ImageNet configs (configs/imagenet-*.yaml) at
224 px, in two ways, on the same photo-like images as the Rust bench
(ImageNet's common sizes, `--images` distinct images, `--samples` samples a
batch):

  cpu_per_core  PIL RandomResizedCrop (bilinear, antialiased), then uint8
                tensor flip and RandAugment (nearest), to float, RandomErasing,
                Normalize, batch MixUp/CutMix: ml-dr's DataLoader path, one
                thread (torch.set_num_threads(1)), samples/s per core.
  gpu_tensor    the same ops as torchvision tensor ops on CUDA uint8 images
                uploaded once a batch (resized_crop with antialias), output
                bf16 channels_last; samples/s, timed with CUDA events.

torchvision draws its own parameters (the cost does not depend on which);
dr replays stored ones. Writes <out-dir>/<date>-<gpu>-torchvision-augment.json
with the raw samples. Run by scripts/gpu-check.sh beside `dr bench augment`.
"""

import argparse
import math
import os
import time

import torch

from peer_results import cuda_times_ms, median, utc_now, write_result

CONFIGS = {
    # name: (rand_augment p, random_erase p, mixup p, cutmix p)
    "cropflip": (0.0, 0.0, 0.0, 0.0),
    "mixing": (0.0, 0.0, 0.5, 0.5),
    "randaug": (1.0, 0.25, 0.0, 0.0),
    "randaug_mixing": (1.0, 0.25, 0.5, 0.5),
}
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
DIMS = [(500, 375), (375, 500), (500, 333), (640, 480), (333, 500)]


def photo_like(w, h, seed):
    """Smooth gradients and blobs with mild noise (as src/bench/augment.rs)."""
    g = torch.Generator().manual_seed(seed)
    f = seed * 0.37
    x = torch.linspace(0, 1, w + 1)[:w].view(1, 1, w)
    y = torch.linspace(0, 1, h + 1)[:h].view(1, h, 1)
    c = torch.arange(3, dtype=torch.float32).view(3, 1, 1)
    v = 110 + 70 * torch.sin(6 * x + f + c) * torch.cos(4 * y - f) + 40 * torch.sin(9 * (x - 0.5) * (y - 0.4) + c)
    v = v + torch.randint(0, 16, (3, h, w), generator=g) - 8
    return v.clamp(0, 255).to(torch.uint8)


def mix(batch, mixup_p, cutmix_p):
    """ml-dr's batch MixUp then CutMix with a rolled partner."""
    if mixup_p and torch.rand(1).item() < mixup_p:
        lam = float(torch.distributions.Beta(1.0, 1.0).sample())
        batch = lam * batch + (1 - lam) * batch.roll(1, 0)
    if cutmix_p and torch.rand(1).item() < cutmix_p:
        lam = float(torch.distributions.Beta(1.0, 1.0).sample())
        h, w = batch.shape[-2:]
        r = math.sqrt(1 - lam)
        ch, cw = int(h * r), int(w * r)
        cy, cx = int(torch.randint(h, (1,))), int(torch.randint(w, (1,)))
        y1, y2 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x1, x2 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        batch = batch.clone()
        batch[..., y1:y2, x1:x2] = batch.roll(1, 0)[..., y1:y2, x1:x2]
    return batch


def pipeline(T, ra_p, erase_p, size=224):
    crop = T.RandomResizedCrop(size, antialias=True)
    flip = T.RandomHorizontalFlip(0.5)
    ra = T.RandAugment(interpolation=T.InterpolationMode.NEAREST)
    erase = T.RandomErasing(p=erase_p) if erase_p else None
    norm = T.Normalize(MEAN, STD)

    def one(img):  # uint8 CHW tensor (or PIL image for the crop)
        x = crop(img)
        if not torch.is_tensor(x):
            x = T.functional.pil_to_tensor(x)
        x = flip(x)
        if ra_p and torch.rand(1).item() < ra_p:
            x = ra(x)
        x = x.float() / 255
        if erase is not None:
            x = erase(x)
        return norm(x)

    return one


def cpu_per_core(T, name, images, samples):
    from PIL import Image

    torch.set_num_threads(1)
    ra_p, erase_p, mixup_p, cutmix_p = CONFIGS[name]
    one = pipeline(T, ra_p, erase_p)
    pils = [Image.fromarray(i.permute(1, 2, 0).numpy()) for i in images]
    per = max(1, samples // len(pils))
    out = []
    t = time.perf_counter()
    for k in range(samples):
        out.append(one(pils[min(k // per, len(pils) - 1)]))
    mix(torch.stack(out), mixup_p, cutmix_p)
    return time.perf_counter() - t


def gpu_tensor(T, name, images, samples, dev):
    ra_p, erase_p, mixup_p, cutmix_p = CONFIGS[name]
    one = pipeline(T, ra_p, erase_p)
    host = [i.pin_memory() if dev.type == "cuda" else i for i in images]
    per = max(1, samples // len(host))

    def batch():
        imgs = [h.to(dev, non_blocking=True) for h in host]
        x = torch.stack([one(imgs[min(k // per, len(imgs) - 1)]) for k in range(samples)])
        return mix(x, mixup_p, cutmix_p).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)

    return batch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--cpu-samples", type=int, default=64, help="samples a round on one CPU core (3 rounds, median)")
    ap.add_argument("--out-dir", default="bench-results")
    a = ap.parse_args()
    try:
        import torchvision
        import torchvision.transforms as T
    except ImportError:
        print("skipped: torchvision is not installed")
        return
    images = [photo_like(*DIMS[i % len(DIMS)], i) for i in range(a.images)]
    cases = []
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda") if cuda else None
    for name in CONFIGS:
        case = {"config": f"configs/imagenet-{name}.yaml", "samples": a.samples, "images": a.images}
        torch.manual_seed(1)
        cpu_per_core(T, name, images, 8)  # warm-up
        secs = [cpu_per_core(T, name, images, a.cpu_samples) for _ in range(3)]
        rate = a.cpu_samples / sorted(secs)[1]
        case["cpu_per_core"] = {"samples": a.cpu_samples, "seconds_per_round": secs, "samples_per_s": rate}
        if cuda:
            torch.set_num_threads(os.cpu_count() or 1)
            batch = gpu_tensor(T, name, images, a.samples, dev)
            ms = cuda_times_ms(batch, a.iters, warmup=2)
            case["gpu_tensor"] = {"samples_ms": ms, "samples_per_s": a.samples / (median(ms) * 1e-3)}
        cases.append(case)
        print(name, {k: round(v["samples_per_s"]) for k, v in case.items() if isinstance(v, dict)})
    gpu = torch.cuda.get_device_name(0) if cuda else "cpu"
    report = {
        "bench": "torchvision-augment",
        "date_utc": utc_now().isoformat(),
        "device": gpu,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cpu": os.uname().machine,
        "cases": cases,
    }
    write_result(a.out_dir, gpu, "torchvision-augment", report)


if __name__ == "__main__":
    main()
