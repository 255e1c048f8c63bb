#!/usr/bin/env python3
"""Peer for `dr bench attention`: PyTorch's scaled_dot_product_attention
(bf16, the backend it picks: flash or memory-efficient) on the same GPU and
shapes, q, k and v as views of one qkv projection [b, n, 3, h, d] as
torchvision's blocks give them (Swin: its bias as attn_mask, which takes
the memory-efficient backend); timed with CUDA events, TFLOPS as 4 n^2 d a
head. Writes <out-dir>/<date>-<gpu>-torch-attention.json with the raw
samples. Run by scripts/gpu-check.sh beside `dr bench attention`.
"""

import argparse

import torch
import torch.nn.functional as F

from peer_results import cuda_times_ms, median, utc_now, write_result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--out-dir", default="bench-results")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("skipped: no CUDA device")
        return
    dev = torch.device("cuda")
    shapes = [("vit_b_16", a.batch, 12, 197, 64, 0), ("deit_small", a.batch, 6, 197, 64, 0),
              ("swin_t stage 1", a.batch * 64, 3, 49, 32, 64)]
    cases = []
    for name, b, h, n, d, bias_batch in shapes:
        g = torch.Generator(device=dev).manual_seed(3)
        qkv = (torch.rand(b, n, 3, h, d, device=dev, generator=g) * 2 - 1).to(torch.bfloat16)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
        mask = None
        if bias_batch:
            bias = torch.rand(bias_batch, h, n, n, device=dev, generator=g).to(torch.bfloat16)
            mask = bias.repeat(b // bias_batch, 1, 1, 1)

        def op():
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

        samples = cuda_times_ms(op, a.iters)
        med = median(samples)
        tflops = 4 * b * h * n * n * d / (med * 1e-3) / 1e12
        cases.append({"name": name, "batch": b, "heads": h, "tokens": n, "head_dim": d, "bias_batch": bias_batch,
                      "samples_ms": samples, "tflops": tflops})
        print(f"torch {name:<15} {b:>6} x {h:>2} heads, {n:>3} tokens, d {d:>3}: {med:.3f} ms, {tflops:.1f} TFLOPS")
    gpu = torch.cuda.get_device_name()
    out = {"bench": "torch-attention", "date_utc": utc_now().isoformat(), "device": gpu,
           "torch": torch.__version__, "cuda": torch.version.cuda, "cases": cases}
    write_result(a.out_dir, gpu, "torch-attention", out)


if __name__ == "__main__":
    main()
