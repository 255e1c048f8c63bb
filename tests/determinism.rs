//! The headline promise: a reinforced dataset's bytes depend on the data,
//! the config, the seed and the teachers, never on `--batch-size`. Checked
//! with a real-size teacher (ResNet-18, random weights, written at test time
//! by `dr::teacher::onnx::synth`), alone and as an ensemble of two, at every
//! batch size from 1 to 9 and at 16 and 32, on the CPU and on the GPU
//! backend. `--topk 1000` stores every class's probability in f16, and
//! `--temperature 20` keeps the softmax of these random-weight logits (of
//! order 100) from saturating, so that a one-ulp change in logits moves some
//! of the 18,000 stored probabilities across an f16 rounding: a
//! batch-dependent sum anywhere shows in the shard bytes (the executor's
//! logits themselves are compared bit for bit by
//! `teacher::onnx::synth::batch_invariance`).

mod common;

use std::path::{Path, PathBuf};

use common::{fresh_dir, repo_root, text};

const BATCHES: &[usize] = &[1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 32];

/// ml-dr's randaug_mixing augmentation at `size` px, 2 samples an image.
fn config(size: usize) -> String {
    format!(
        "reinforce:
  num_samples: 2
  topk: 1000
  image_augmentation:
    uint8: {{enable: true}}
    random_resized_crop: {{enable: true, size: {size}}}
    random_horizontal_flip: {{enable: true, p: 0.5}}
    to_tensor: {{enable: true}}
    normalize: {{mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}}
    rand_augment: {{enable: true, p: 1.0}}
    random_erase: {{enable: true, p: 0.25}}
    mixup: {{enable: true, alpha: 1.0, div_by: 2.0, p: 0.5}}
    cutmix: {{enable: true, alpha: 1.0, p: 0.5}}
"
    )
}

/// 9 images of the augment fixtures in 3 classes, the config, and
/// `members` ResNet-18s of `width` channels in the first stage (64 is
/// torchvision's) taking `size` px.
fn job(tag: &str, width: usize, size: usize, members: u64) -> (PathBuf, Vec<PathBuf>) {
    let root = fresh_dir(tag);
    let src = repo_root().join("tests/fixtures/augment/images");
    for (i, name) in [
        "photo.png",
        "jpeg.jpg",
        "pair.png",
        "ra_in_224.png",
        "tall.png",
        "bmp.bmp",
        "webp.webp",
        "gray.png",
        "palette.png",
    ]
    .iter()
    .enumerate()
    {
        let class = root.join(format!("data/c{}", i % 3));
        std::fs::create_dir_all(&class).unwrap();
        std::fs::copy(src.join(name), class.join(name)).unwrap();
    }
    std::fs::write(root.join("c.yaml"), config(size)).unwrap();
    let teachers = (1..=members)
        .map(|seed| {
            let p = root.join(format!("resnet18-{seed}.onnx"));
            let model = dr::teacher::onnx::synth::resnet([2, 2, 2, 2], width, 1000, size, seed);
            std::fs::write(&p, model).unwrap();
            p
        })
        .collect();
    (root, teachers)
}

/// The SHA-256 of every shard of a run at `batch` on `device`.
fn shard_hashes(root: &Path, teachers: &[PathBuf], batch: usize, device: &str) -> Vec<String> {
    shard_hashes_tuned(root, teachers, batch, device, None)
}

/// `shard_hashes` with the kernel tuning files of `tuning` (DR_TUNING_DIR).
fn shard_hashes_tuned(
    root: &Path,
    teachers: &[PathBuf],
    batch: usize,
    device: &str,
    tuning: Option<&Path>,
) -> Vec<String> {
    let tag = if tuning.is_some() { "-tuned" } else { "" };
    let out = root.join(format!("out-{device}-{batch}{tag}"));
    let mut args = vec![
        "reinforce".to_string(),
        "--data".into(),
        root.join("data").display().to_string(),
        "--config".into(),
        root.join("c.yaml").display().to_string(),
        "--seed".into(),
        "3".into(),
        "--temperature".into(),
        "20".into(),
        "--batch-size".into(),
        batch.to_string(),
        "--device".into(),
        device.into(),
        "--out".into(),
        out.display().to_string(),
        "--quiet".into(),
    ];
    for t in teachers {
        args.push("--teacher".into());
        args.push(t.display().to_string());
    }
    let mut cmd = std::process::Command::new(common::dr_bin());
    cmd.args(&args);
    if let Some(t) = tuning {
        cmd.env("DR_TUNING_DIR", t);
    }
    let o = cmd.output().expect("running dr");
    assert!(o.status.success(), "batch {batch}: {}", text(&o.stderr));
    if tuning.is_some() {
        assert!(
            text(&o.stdout).contains("kernel choices tuned by"),
            "{}",
            text(&o.stdout)
        );
    }
    let mut shards: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    shards.sort();
    assert!(!shards.is_empty());
    shards
        .iter()
        .map(|p| {
            let (_, sha) = dr::store::images::hash_file(p).unwrap();
            sha
        })
        .collect()
}

fn same_bytes_at_every_batch(tag: &str, width: usize, size: usize, members: u64, device: &str) {
    let (root, teachers) = job(tag, width, size, members);
    let want = shard_hashes(&root, &teachers, BATCHES[0], device);
    for &b in &BATCHES[1..] {
        let got = shard_hashes(&root, &teachers, b, device);
        assert_eq!(
            got, want,
            "{device}, {members} member(s): batch {b} differs from batch 1"
        );
    }
    if device == "cuda" {
        // Every layer that has a choice on its last candidate kernel, as a
        // tuning file would set it: the same bytes.
        let tuning = root.join("tuning");
        let gpu = dr::cuda::Gpu::open(0).unwrap();
        for t in &teachers {
            last_candidates(t, gpu.info(), &tuning);
        }
        let got = shard_hashes_tuned(&root, &teachers, 4, device, Some(&tuning));
        assert_eq!(
            got, want,
            "{device}, {members} member(s): tuned kernels differ"
        );
    }
    println!(
        "{device}: ResNet-18 (width {width}) x{members} at {size} px, batch sizes {BATCHES:?}{}: one shard hash {}",
        if device == "cuda" {
            " and tuned kernels"
        } else {
            ""
        },
        &want[0][..16]
    );
    let _ = std::fs::remove_dir_all(root);
}

/// Writes `teacher`'s tuning file under `dir` with every layer that has a
/// choice on its last candidate (never the shape rule's).
fn last_candidates(teacher: &Path, device: &dr::cuda::DeviceInfo, dir: &Path) {
    use dr::teacher::gpu::tuning::{self, Tuning};
    let m = dr::teacher::ensemble::Member::load(teacher).unwrap();
    let mut plan = dr::teacher::gpu::lower::lower(&m.graph(1).unwrap()).unwrap();
    // The kernel set `dr reinforce` takes on this device (its tuning file's name).
    plan.conv_path = dr::teacher::gpu::conv::ConvPath::for_device(device).unwrap();
    let layers = tuning::off_the_rule(&plan);
    // On the wgmma path (compute capability 9.0) only the GEMM layers (the
    // stride-1 1x1s and the fc) have two tiles to choose from: the gather
    // kernels, which take ResNet-18's other convolutions, offer one tile a
    // layer.
    let least = match plan.conv_path {
        dr::teacher::gpu::conv::ConvPath::Wgmma => 2,
        _ => 4,
    };
    assert!(
        layers.len() >= least,
        "{} layers with a choice",
        layers.len()
    );
    let t = Tuning::new(device, teacher, &plan, 1, layers);
    t.save(&tuning::file_in(dir, device, &plan)).unwrap();
}

#[test]
fn cpu_bytes_do_not_depend_on_the_batch_size() {
    same_bytes_at_every_batch("determinism-cpu", 64, 224, 1, "cpu");
}

#[test]
fn cpu_ensemble_bytes_do_not_depend_on_the_batch_size() {
    same_bytes_at_every_batch("determinism-cpu-ensemble", 64, 224, 2, "cpu");
}

/// The GPU backend: a kernel variant, split or grid chosen by the batch
/// would show here. ResNet-18's depth and layers at a quarter of its width
/// (16 to 128 channels, which takes the 128x16, x32 and x64 conv tiles) and
/// 64 px: under the CPU stand-in, which emulates every padded row of a tile,
/// the full width at small batches takes minutes a run.
#[test]
fn gpu_bytes_do_not_depend_on_the_batch_size() {
    if dr::cuda::testing::gpu_or_skip().is_none() {
        return;
    }
    same_bytes_at_every_batch("determinism-gpu", 16, 64, 1, "cuda");
    same_bytes_at_every_batch("determinism-gpu-ensemble", 16, 64, 2, "cuda");
}
