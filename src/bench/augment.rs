//! `dr bench augment`: the GPU augmentation (augment/gpu_run.rs) in samples
//! per second for ml-dr's four ImageNet configs at 224 px, written as the
//! GPU teacher's bf16 NHWC input. Each batch holds `images` decoded images of
//! ImageNet's typical sizes with `samples / images` samples each (each image
//! uploaded once for all its samples), drawn with the config's own sampler.
//!
//! Two timings per config: `kernels` (the three stages and their descriptor
//! uploads, images already on the device) and `with_upload` (packing into
//! pinned staging, the H2D copy, then the kernels). Bytes are counted as the
//! augmentation's unavoidable traffic, the images read once plus the output
//! written once, and set against the device-to-device copy rate measured in
//! the same run (which counts its buffer read plus written), the goal being
//! at least 50% of it. The host's planning (`plan_batch`) is timed too: the
//! pipeline's CPU side must keep up with it. tools/gpu_bench_augment.py
//! times torchvision on the same configs as the peer.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::report::{Meta, median, time};
use crate::augment::gpu_batch::plan_batch;
use crate::augment::gpu_finish::FinishOut;
use crate::augment::gpu_run::GpuAugment;
use crate::augment::image::Rgb8;
use crate::augment::params::{Draw, SampleParams};
use crate::config::ReinforceConfig;
use crate::cuda::{DevBuf, Gpu};

#[derive(Debug, Clone, Serialize)]
pub struct Options {
    pub device: usize,
    pub configs: Vec<PathBuf>,
    /// Samples per batch.
    pub samples: usize,
    /// Distinct images per batch.
    pub images: usize,
    pub warmup: usize,
    pub iters: usize,
}

#[derive(Debug, Serialize)]
pub struct Timing {
    pub samples_ms: Vec<f64>,
    pub samples_per_s: f64,
    pub gbps: f64,
    pub pct_of_device_copy: f64,
}

#[derive(Debug, Serialize)]
pub struct Case {
    pub config: String,
    pub out_wh: (usize, usize),
    pub samples: usize,
    pub images: usize,
    pub image_bytes: usize,
    pub output_bytes: usize,
    /// Crops RandAugment ran on (main and pair crops with at least one op).
    pub randaug_crops: usize,
    pub kernels: Timing,
    pub with_upload: Timing,
    /// Host time of `plan_batch` for one batch, ms (median), and the samples
    /// per second one core plans at.
    pub plan_ms: Vec<f64>,
    pub plan_samples_per_s_one_core: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub meta: Meta,
    pub options: Options,
    /// cuMemcpyDtoD of 1 GiB, read + write counted, GB/s (median).
    pub device_copy_gbps: f64,
    pub device_copy_samples_ms: Vec<f64>,
    pub cases: Vec<Case>,
}

/// A photo-like image: smooth gradients and blobs with mild noise, so the
/// histogram ops see realistic, concentrated value distributions.
fn photo_like(w: usize, h: usize, seed: u64) -> Rgb8 {
    let mut r = crate::rng::Philox::new(seed, 0, 0, 17);
    let f = seed as f32 * 0.37;
    let data = (0..w * h * 3)
        .map(|i| {
            let (px, c) = (i / 3, i % 3);
            let (x, y) = ((px % w) as f32 / w as f32, (px / w) as f32 / h as f32);
            let v = 110.0
                + 70.0 * (6.0 * x + f + c as f32).sin() * (4.0 * y - f).cos()
                + 40.0 * (9.0 * (x - 0.5) * (y - 0.4) + c as f32).sin();
            (v + r.below(16) as f32 - 8.0).clamp(0.0, 255.0) as u8
        })
        .collect();
    Rgb8::from_raw(w, h, data)
}

fn timing(samples_ms: Vec<f64>, samples: usize, bytes: usize, copy_gbps: f64) -> Timing {
    let ms = median(&samples_ms);
    let gbps = bytes as f64 / (ms * 1e-3) / 1e9;
    Timing {
        samples_per_s: samples as f64 / (ms * 1e-3),
        gbps,
        pct_of_device_copy: 100.0 * gbps / copy_gbps,
        samples_ms,
    }
}

pub fn run(opts: &Options) -> Result<Report> {
    anyhow::ensure!(
        opts.images > 0 && opts.samples >= opts.images && opts.iters > 0,
        "--samples must be at least --images, both and --iters at least 1"
    );
    let gpu = Gpu::open(opts.device).context("`dr bench augment` measures a CUDA GPU")?;
    let s = gpu.stream(0);

    let copy_bytes = 1usize << 30;
    let src: DevBuf<u8> = gpu.alloc(copy_bytes)?;
    let mut dst: DevBuf<u8> = gpu.alloc(copy_bytes)?;
    let device_copy_samples_ms = time(&s, 3, opts.iters, || s.copy_driver(&src, &mut dst))?;
    let device_copy_gbps = 2.0 * copy_bytes as f64 / (median(&device_copy_samples_ms) * 1e-3) / 1e9;
    drop((src, dst));

    // ImageNet's common decoded sizes (its mean is about 400x350).
    let dims = [
        (500usize, 375usize),
        (375, 500),
        (500, 333),
        (640, 480),
        (333, 500),
    ];
    let imgs: Vec<Rgb8> = (0..opts.images)
        .map(|i| {
            let (w, h) = dims[i % dims.len()];
            photo_like(w, h, i as u64)
        })
        .collect();
    let image_bytes: usize = imgs.iter().map(|i| i.data.len()).sum();
    let ids: Vec<u32> = (0..opts.images as u32).collect();
    let per_image = opts.samples.div_ceil(opts.images);

    let mut aug = GpuAugment::new(&gpu);
    let mut cases = Vec::new();
    for path in &opts.configs {
        let cfg = ReinforceConfig::load(path, false)?;
        let size = |id: u32| (imgs[id as usize].width, imgs[id as usize].height);
        let draw = Draw {
            aug: &cfg.augment,
            seed: 1,
            num_samples: per_image as u32,
            size_of: &size,
        };
        let params: Vec<(usize, SampleParams)> = (0..opts.samples)
            .map(|k| {
                let id = (k / per_image) as u32;
                (id as usize, draw.sample(id, (k % per_image) as u32, &ids))
            })
            .collect();
        let refs: Vec<(usize, &SampleParams)> = params.iter().map(|(i, p)| (*i, p)).collect();
        let img_refs: Vec<&Rgb8> = imgs.iter().collect();
        let staged = aug.upload(&img_refs)?;
        let slot_of = |id: u32| id as usize;
        let mut plan_ms = Vec::new();
        let mut plan = None;
        for _ in 0..opts.iters.max(3) {
            let t = Instant::now();
            plan = Some(
                plan_batch(&cfg.augment, &staged.slots, &slot_of, &refs)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            );
            plan_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let plan = plan.expect("planned at least once");
        let (w, h) = plan.out_wh;
        let output_bytes = opts.samples * w * h * 3 * 2;
        let mut out: DevBuf<u16> = gpu.alloc(opts.samples * w * h * 3)?;
        let bytes = image_bytes + output_bytes;

        let st = aug.stream().clone();
        let kernels = time(&st, opts.warmup, opts.iters, || {
            aug.run(&staged, &plan, FinishOut::Bf16Nhwc(&mut out))
        })?;
        let with_upload = time(&st, opts.warmup, opts.iters, || {
            let staged = aug.upload(&img_refs)?;
            aug.run(&staged, &plan, FinishOut::Bf16Nhwc(&mut out))
        })?;
        cases.push(Case {
            config: path.display().to_string(),
            out_wh: (w, h),
            samples: opts.samples,
            images: opts.images,
            image_bytes,
            output_bytes,
            randaug_crops: plan.randaug.blocks(),
            kernels: timing(kernels, opts.samples, bytes, device_copy_gbps),
            with_upload: timing(with_upload, opts.samples, bytes, device_copy_gbps),
            plan_samples_per_s_one_core: opts.samples as f64 / (median(&plan_ms) * 1e-3),
            plan_ms,
        });
    }
    Ok(Report {
        meta: Meta::new("augment", &gpu),
        options: opts.clone(),
        device_copy_gbps,
        device_copy_samples_ms,
        cases,
    })
}

impl Report {
    pub fn render(&self) -> String {
        let mut out = format!(
            "{}: device copy {:.0} GB/s (read + write)\n",
            self.meta.device.name, self.device_copy_gbps
        );
        for c in &self.cases {
            out += &format!(
                "{:<40} kernels {:>8.0} samples/s ({:>5.1}% of copy)  with upload {:>8.0} samples/s ({:>5.1}%)  plan {:>7.0} samples/s/core\n",
                c.config,
                c.kernels.samples_per_s,
                c.kernels.pct_of_device_copy,
                c.with_upload.samples_per_s,
                c.with_upload.pct_of_device_copy,
                c.plan_samples_per_s_one_core
            );
        }
        out
    }
}
