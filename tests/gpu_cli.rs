//! The host side of `scripts/gpu-check.sh run`, at sizes the CPU stand-in
//! runs in seconds: `dr devices`, every `dr bench` subcommand, `dr demo`,
//! `dr infer` and `dr reinforce` on the GPU backend. Under the stand-in
//! (`scripts/emu-test.sh`) they prove a first device run cannot stop on a
//! host-side bug; on a device they run as they are. On the stand-in every
//! timing figure must be labelled as emulated and no bench result written.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{dr_bin, fresh_dir, repo_root, text};

/// `dr ARGS` from the repository root (configs/ are found there).
fn dr(args: &[&str]) -> Output {
    Command::new(dr_bin())
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("running dr")
}

fn ok(args: &[&str]) -> String {
    let o = dr(args);
    assert!(
        o.status.success(),
        "dr {}: {}\n{}",
        args.join(" "),
        text(&o.stderr),
        text(&o.stdout)
    );
    text(&o.stdout)
}

/// Checks a bench's output against where it ran: on the stand-in every line
/// labelled and nothing written; on a GPU a result file naming the device.
fn check_published(stdout: &str, out_dir: &Path, gpu: &dr::cuda::Gpu) {
    let files: Vec<_> = std::fs::read_dir(out_dir)
        .map(|d| d.filter_map(|e| e.ok()).collect())
        .unwrap_or_default();
    if gpu.info().stand_in {
        assert!(!stdout.trim().is_empty());
        for line in stdout.lines() {
            assert!(
                line.starts_with(&format!("({})", dr::cuda::EMULATED)),
                "unlabelled line on the stand-in: {line}"
            );
        }
        assert!(
            files.is_empty(),
            "the stand-in wrote bench results: {files:?}"
        );
    } else {
        assert_eq!(files.len(), 1, "{files:?}");
        let json = std::fs::read_to_string(files[0].path()).unwrap();
        assert!(json.contains(&gpu.info().name), "{json}");
    }
}

#[test]
fn devices_name_the_device_plainly() {
    let Some(gpu) = dr::cuda::testing::gpu_or_skip() else {
        return;
    };
    let table = ok(&["devices"]);
    assert!(table.contains(&gpu.info().name), "{table}");
    if gpu.info().stand_in {
        assert!(
            table.contains("CPU stand-in for the CUDA driver")
                && table.contains("nothing it times is a GPU measurement"),
            "{table}"
        );
    }
    let json: serde_json::Value = serde_json::from_str(&ok(&["devices", "--json"])).unwrap();
    assert_eq!(json["status"], "ready");
    assert_eq!(json["devices"][0]["stand_in"], gpu.info().stand_in);
}

#[test]
fn bench_bandwidth_runs() {
    let Some(gpu) = dr::cuda::testing::gpu_or_skip() else {
        return;
    };
    let out = fresh_dir("gpu-cli-bandwidth");
    let s = ok(&[
        "bench",
        "bandwidth",
        "--host-mib",
        "1",
        "--device-mib",
        "2",
        "--iters",
        "2",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    for name in [
        "h2d_pinned",
        "d2h_pinned",
        "d2h_pageable",
        "d2d_copy_kernel",
        "d2d_fill_kernel",
    ] {
        assert!(s.contains(name), "{s}");
    }
    check_published(&s, &out, &gpu);
}

#[test]
fn bench_topk_runs() {
    let Some(gpu) = dr::cuda::testing::gpu_or_skip() else {
        return;
    };
    let out = fresh_dir("gpu-cli-topk");
    let s = ok(&[
        "bench",
        "topk",
        "--rows",
        "2",
        "--iters",
        "1",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(s.matches("rows/s").count(), 12, "{s}");
    check_published(&s, &out, &gpu);
}

#[test]
fn bench_attention_runs() {
    let Some(gpu) = dr::cuda::testing::gpu_or_skip() else {
        return;
    };
    let out = fresh_dir("gpu-cli-attention");
    let s = ok(&[
        "bench",
        "attention",
        "--batch",
        "1",
        "--iters",
        "1",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(s.matches("TFLOPS").count(), 3, "{s}");
    check_published(&s, &out, &gpu);
}

#[test]
fn bench_augment_runs() {
    let Some(gpu) = dr::cuda::testing::gpu_or_skip() else {
        return;
    };
    let out = fresh_dir("gpu-cli-augment");
    let s = ok(&[
        "bench",
        "augment",
        "--config",
        "configs/imagenet-randaug_mixing.yaml",
        "--samples",
        "4",
        "--images",
        "2",
        "--iters",
        "1",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(s.contains("randaug_mixing"), "{s}");
    check_published(&s, &out, &gpu);
}

/// `dr bench model` of `model` on the GPU at `batch`, one timed call.
fn bench_model_args<'a>(model: &'a Path, batch: &'a str, out: &'a Path) -> Vec<&'a str> {
    let (model, out) = (model.to_str().unwrap(), out.to_str().unwrap());
    vec![
        "bench",
        "model",
        "--device",
        "cuda",
        "--model",
        model,
        "--batch-size",
        batch,
        "--iters",
        "1",
        "--out-dir",
        out,
    ]
}

#[test]
fn bench_model_runs() {
    let Some(gpu) = dr::cuda::testing::gpu_or_skip() else {
        return;
    };
    let out = fresh_dir("gpu-cli-model");
    let model = repo_root().join("tests/fixtures/teacher/resnet-dynamo.onnx");
    let s = ok(&bench_model_args(&model, "2", &out));
    assert!(s.contains("img/s") && s.contains("top kernels"), "{s}");
    check_published(&s, &out, &gpu);
}

#[test]
fn demo_runs_on_the_gpu() {
    let Some(gpu) = dr::cuda::testing::gpu_or_skip() else {
        return;
    };
    let out = fresh_dir("gpu-cli-demo");
    let s = ok(&[
        "demo",
        "--device",
        "cuda",
        "--images-per-class",
        "3",
        "--samples",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(s.contains("teacher accuracy"), "{s}");
    if gpu.info().stand_in {
        assert!(s.contains(dr::cuda::EMULATED), "{s}");
    }
    ok(&["verify", out.join("reinforced").to_str().unwrap()]);
}

/// `dr infer` of `model` on the photo fixture on `device`, with
/// DR_TUNING_DIR=`tuning` when given: its stdout.
fn infer_photo(model: &Path, device: &str, tuning: Option<&Path>) -> String {
    let img = repo_root().join("tests/fixtures/augment/images/photo.png");
    let mut cmd = Command::new(dr_bin());
    cmd.args(["infer", "--model"])
        .arg(model)
        .arg("--image")
        .arg(img)
        .args(["--device", device])
        .current_dir(repo_root());
    if let Some(t) = tuning {
        cmd.env("DR_TUNING_DIR", t);
    }
    let o = cmd.output().expect("running dr");
    assert!(
        o.status.success(),
        "dr infer --device {device}: {}",
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// The GPU executor through the CLI on a real image gives the CPU's top-1:
/// a CNN, ConvNeXt (LayerNorm, GELU, channels-last transposes), ViT (class
/// token, fused attention; both exporters) and Swin (windows, shift masks).
#[test]
fn infer_on_the_gpu_agrees_with_the_cpu() {
    if dr::cuda::testing::gpu_or_skip().is_none() {
        return;
    }
    for name in [
        "resnet-dynamo.onnx",
        "convnext-legacy17.onnx",
        "vit-legacy17.onnx",
        "vit_sdpa-dynamo.onnx",
        "swin-dynamo.onnx",
    ] {
        let model = repo_root().join("tests/fixtures/teacher").join(name);
        let (cpu, gpu) = (
            infer_photo(&model, "cpu", None),
            infer_photo(&model, "cuda", None),
        );
        let top1 = |s: &str| {
            s.lines()
                .nth(1)
                .and_then(|l| l.split_whitespace().nth(1))
                .map(str::to_owned)
        };
        assert_eq!(gpu.matches('%').count(), 5, "{name}: {gpu}");
        assert_eq!(top1(&cpu), top1(&gpu), "{name}: cpu:\n{cpu}\ngpu:\n{gpu}");
    }
}

/// `dr bench model --autotune` writes the model's tuning file (in
/// DR_TUNING_DIR here, not the user's cache), the next `dr bench model`
/// runs with it and says so, and `dr infer` prints the same as without it
/// (every candidate computes the same bits).
#[test]
fn autotune_writes_choices_the_executor_reads() {
    let Some(gpu) = dr::cuda::testing::gpu_or_skip() else {
        return;
    };
    let root = fresh_dir("gpu-cli-autotune");
    let tuning = root.join("tuning");
    let model = repo_root().join("tests/fixtures/teacher/resnet-dynamo.onnx");
    let with_tuning = |dir: &Path, args: &[&str]| {
        let o = Command::new(dr_bin())
            .args(args)
            .current_dir(repo_root())
            .env("DR_TUNING_DIR", dir)
            .output()
            .expect("running dr");
        assert!(
            o.status.success(),
            "dr {}: {}",
            args.join(" "),
            text(&o.stderr)
        );
        text(&o.stdout)
    };
    let bench = |extra: &[&str]| {
        let out = root.join("bench");
        let mut args = bench_model_args(&model, "1", &out);
        args.extend_from_slice(extra);
        let s = with_tuning(&tuning, &args);
        check_published(&s, &out, &gpu);
        s
    };
    let s = bench(&["--autotune"]);
    assert!(
        s.contains("autotuned ") && s.contains("changed from the shape rule"),
        "{s}"
    );
    let files: Vec<_> = walk(&tuning);
    assert_eq!(files.len(), 1, "{files:?}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(json["format"], "dr-kernel-tuning-1");
    assert!(!json["layers"].as_array().unwrap().is_empty(), "{json}");
    let s = bench(&[]);
    assert!(
        s.contains(&format!("kernel choices tuned by {}", files[0].display())),
        "{s}"
    );
    assert_eq!(
        infer_photo(&model, "cuda", Some(&tuning)),
        infer_photo(&model, "cuda", Some(&root.join("none")))
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
