"""Shared by the GPU peer scripts (gpu_bench_topk.py, gpu_bench_augment.py,
bench_torch.py, check_gpu_parity.py): CUDA-event timing, and result files
named as dr's own benches name theirs (src/bench/report.rs: `path_in`,
`slug`), so a peer's JSON lands beside dr's under bench-results/.
"""

import datetime
import json
import os


def slug(name):
    """Lower-case ASCII letters and digits, other runs as one '-' (report.rs `slug`)."""
    out = ""
    for c in name:
        if c.isascii() and c.isalnum():
            out += c.lower()
        elif not out.endswith("-"):
            out += "-"
    return out.strip("-")


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def write_result(out_dir, device, bench, report):
    """Writes `report` to <out_dir>/<UTC date>-<device slug>-<bench>.json; returns the path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{utc_now():%Y-%m-%d}-{slug(device)}-{bench}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print("wrote", path)
    return path


def cuda_times_ms(fn, iters, warmup=3):
    """Milliseconds of each of `iters` calls of `fn`, CUDA events around each, after `warmup` calls."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        out.append(s.elapsed_time(e))
    return out


def median(xs):
    return sorted(xs)[len(xs) // 2]
