#!/usr/bin/env python3
"""PyTorch + cuDNN peer for `dr bench model --device cuda` ([gpu-cnn]).

For each model (random weights, seed 0): channels_last, bf16 autocast,
eval, no grad; eager and, with --compile, torch.compile(mode="max-autotune");
images/s at --batch, timed with CUDA events (median of --iters after
warm-up), TFLOPS from the convolutions' and linear layers' multiply-adds
(counted with forward hooks, 2 FLOP each). With --export-dir each model is
also written as ONNX (opset 17, dynamic batch, the same random weights) so
that `dr bench model --device cuda --model DIR/NAME.onnx` measures dr on the
very same network in the same run. Writes
<out-dir>/<date>-<gpu>-torch-models.json with the raw samples.

Models: resnet50, resnext101_32x8d, and resnext101_32x48d (the widest
IG-ResNeXt shape: torchvision's ResNet with Bottleneck [3, 4, 23, 3],
32 groups, width 48 per group); any other torchvision classifier by name
([gpu-transformer]: vit_b_16, convnext_tiny, swin_t; PyTorch runs their
attention through SDPA), and timm's deit_small_patch16_224 when timm is
installed. TFLOPS count convolutions and linear layers only (attention's
two products add about 5% to ViT-B/16 at 197 tokens).
"""

import argparse
import os
import time

import torch

from peer_results import cuda_times_ms, median, utc_now, write_result


def build(name):
    import torchvision.models as tvm
    from torchvision.models.resnet import Bottleneck, ResNet

    torch.manual_seed(0)
    if name.startswith("deit_"):
        import timm  # not part of the device's base image everywhere

        return timm.create_model(name, pretrained=False).eval()
    if name == "resnext101_32x48d":
        m = ResNet(Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=48)
    else:
        m = getattr(tvm, name)(weights=None)
    # Non-trivial BatchNorm statistics, as a trained network has.
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


def count_macs(m, x):
    macs = [0]

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            macs[0] += out.numel() * k
        elif isinstance(mod, torch.nn.Linear):
            macs[0] += out.numel() * mod.in_features

    hs = [mod.register_forward_hook(hook) for mod in m.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        m(x)
    for h in hs:
        h.remove()
    return macs[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet50,resnext101_32x8d,resnext101_32x48d")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--compile", action="store_true", help="also torch.compile(mode='max-autotune') (minutes per model)")
    ap.add_argument("--export-dir", help="write NAME.onnx here for dr bench model")
    ap.add_argument("--out-dir", default="bench-results")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("skipped: no CUDA device")
        return
    dev = torch.device("cuda")
    results = []
    for name in a.models.split(","):
        m = build(name)
        if a.export_dir:
            os.makedirs(a.export_dir, exist_ok=True)
            path = os.path.join(a.export_dir, f"{name}.onnx")
            t = time.time()
            torch.onnx.export(
                m, torch.randn(1, 3, 224, 224), path, opset_version=17, dynamo=False,
                input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
            print(f"exported {path} in {time.time() - t:.0f} s")
        x = torch.randn(a.batch, 3, 224, 224, device=dev).to(memory_format=torch.channels_last)
        m = m.to(dev).to(memory_format=torch.channels_last)
        macs = count_macs(m, x[:1]) * a.batch
        r = {"model": name, "batch": a.batch, "gmacs_per_image": macs / a.batch / 1e9}

        def run(f):
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                return f(x)

        for mode in ["eager"] + (["max-autotune"] if a.compile else []):
            f = m if mode == "eager" else torch.compile(m, mode="max-autotune")
            t = time.time()
            try:
                run(f)
            except Exception as e:  # compile failures are reported, not fatal
                r[mode] = {"error": str(e)[:500]}
                continue
            ms = cuda_times_ms(lambda: run(f), a.iters)
            med = median(ms)
            r[mode] = {
                "samples_ms": ms,
                "img_per_s": a.batch / (med * 1e-3),
                "tflops": 2 * macs / (med * 1e-3) / 1e12,
                "first_call_s": time.time() - t,
            }
            print(f"{name} {mode}: {r[mode]['img_per_s']:.0f} img/s, {r[mode]['tflops']:.1f} TFLOPS")
        results.append(r)
        del m
        torch.cuda.empty_cache()
    gpu = torch.cuda.get_device_name(0)
    write_result(
        a.out_dir,
        gpu,
        "torch-models",
        {
            "bench": "torch-models",
            "date_utc": utc_now().isoformat(),
            "device": gpu,
            "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version(),
            "settings": "channels_last, bf16 autocast, eval, no_grad",
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
