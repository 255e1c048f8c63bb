#!/usr/bin/env python3
"""Peer for `dr bench topk`: torch.softmax + torch.topk on the same GPU and
shapes (mean of the members' softmax(logits / T), then top-k), timed with
CUDA events; writes <out-dir>/<date>-<gpu>-torch-topk.json with the raw
samples. Run by scripts/gpu-check.sh beside `dr bench topk`.
"""

import argparse

import torch

from peer_results import cuda_times_ms, median, utc_now, write_result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--out-dir", default="bench-results")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("skipped: no CUDA device")
        return
    dev = torch.device("cuda")
    cases = []
    for classes in (1000, 21841):
        for members in (1, 4):
            for k in (5, 10, 64):
                g = torch.Generator(device=dev).manual_seed(7)
                x = (torch.rand(members, a.rows, classes, device=dev, generator=g) - 0.5) * 16

                def op():
                    p = torch.softmax(x, dim=-1).mean(0)
                    return torch.topk(p, k, dim=-1)

                samples = cuda_times_ms(op, a.iters)
                med = median(samples)
                cases.append({"members": members, "rows": a.rows, "classes": classes, "k": k,
                              "samples_ms": samples, "rows_per_s": a.rows / (med * 1e-3)})
                print(f"torch members {members} classes {classes:>5} k {k:>2}: {a.rows / (med * 1e-3):>10.0} rows/s")
    gpu = torch.cuda.get_device_name()
    out = {"bench": "torch-topk", "date_utc": utc_now().isoformat(), "device": gpu,
           "torch": torch.__version__, "cuda": torch.version.cuda, "cases": cases}
    write_result(a.out_dir, gpu, "torch-topk", out)


if __name__ == "__main__":
    main()
