#!/usr/bin/env python3
"""End-to-end `dr reinforce` throughput against the teacher alone, CPU backend.

    python3 tools/bench_reinforce_cpu.py --model /tmp/dr-bench-models/resnet50.onnx \
        [--dr target/release/dr] [--rounds 3] [--out-dir bench-results]

Builds an ImageFolder from the augment fixture images (two classes of the 20
files: every decoder, 32 to 400 px), then alternates, `--rounds` times:
`dr bench model` (teacher only, same batch) and `dr reinforce --json` with
configs/imagenet-randaug_mixing.yaml (RandAugment + erasing + MixUp + CutMix,
224 px) into a fresh folder. Writes <out-dir>/<date>-cpu-reinforce-vs-teacher.json
with every raw figure and the ratio of the medians.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--dr", default="target/release/dr")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--out-dir", default="bench-results")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="dr-bench-reinforce-")
    src = "tests/fixtures/augment/images"
    for c in ("c0", "c1"):
        shutil.copytree(src, os.path.join(tmp, "data", c))
    teacher, e2e, summaries = [], [], []
    for r in range(args.rounds):
        b = run_json([args.dr, "bench", "model", "--teacher", args.model, "--device", "cpu",
                      "--batch-size", str(args.batch_size), "--json"])
        teacher.append(b["img_per_s"])
        out = os.path.join(tmp, f"out{r}")
        s = run_json([args.dr, "reinforce", "--data", os.path.join(tmp, "data"), "--teacher", args.model,
                      "--config", "configs/imagenet-randaug_mixing.yaml", "--samples", str(args.samples),
                      "--batch-size", str(args.batch_size), "--out", out, "--quiet", "--json"])
        e2e.append(s["samples_per_second"])
        summaries.append(s)
        print(f"round {r}: teacher {teacher[-1]:.2f} img/s, end to end {e2e[-1]:.2f} samples/s")
    ratio = statistics.median(e2e) / statistics.median(teacher)
    print(f"end to end / teacher only (medians): {100 * ratio:.1f}%")
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {
        "bench": "reinforce-vs-teacher-cpu",
        "date": datetime.date.today().isoformat(),
        "commit": commit,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()},
        "model": os.path.basename(args.model),
        "config": "configs/imagenet-randaug_mixing.yaml",
        "images": summaries[0]["images"],
        "samples_per_image": args.samples,
        "batch_size": args.batch_size,
        "teacher_img_per_s": teacher,
        "end_to_end_samples_per_s": e2e,
        "ratio_of_medians": ratio,
        "summaries": summaries,
    }
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, f"{result['date']}-cpu-reinforce-vs-teacher.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
