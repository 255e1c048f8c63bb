//! `dr bench model --device cuda`: a convolutional teacher on the GPU
//! executor (teacher/gpu): images/s of the captured forward, TFLOPS and the
//! share of the device's dense bf16 peak, and a per-kernel table from an
//! eager forward timed step by step (the ten costliest layer shapes with
//! their share of the time and achieved TFLOPS or GB/s). The peer is
//! tools/bench_torch.py (PyTorch + cuDNN, eager and compiled) in the same run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::report::{Meta, median, time};
use crate::cuda::Gpu;
use crate::teacher::ensemble::Member;
use crate::teacher::gpu::lower::{lower, to_nhwc_bf16};
use crate::teacher::gpu::model::GpuModel;

#[derive(Debug, Serialize)]
pub struct KernelRow {
    pub layer: String,
    pub calls: usize,
    pub ms: f64,
    pub share_pct: f64,
    pub tflops: f64,
    pub gbps: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub meta: Meta,
    pub model: PathBuf,
    pub batch: usize,
    pub gmacs_per_image: f64,
    pub arena_mib: f64,
    pub samples_ms: Vec<f64>,
    pub img_per_s: f64,
    pub tflops: f64,
    pub pct_of_bf16_peak: Option<f64>,
    /// Eager forward, step by step (includes launch gaps the graph hides).
    pub eager_profile_ms: f64,
    pub top_kernels: Vec<KernelRow>,
}

pub fn run(model: &Path, device: usize, batch: usize, iters: usize) -> Result<Report> {
    if batch == 0 || iters == 0 {
        bail!("--batch-size and --iters must be at least 1");
    }
    let gpu = Gpu::open(device).context("`dr bench model --device cuda` needs a CUDA GPU")?;
    let m = Member::load(model)?;
    let plan = lower(&*m.graph(batch)?).map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
    let n = plan.input.len();
    // Fixed pseudo-random input (not zeros: nothing may shortcut on it).
    let x: Vec<f32> = (0..n)
        .map(|i| ((i.wrapping_mul(2_654_435_761) >> 7) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let input = to_nhwc_bf16(&x, plan.input_nchw);
    let macs = plan.macs() as f64;
    let arena_mib = plan.arena_len as f64 * 2.0 / (1 << 20) as f64;
    let mut gm = GpuModel::new(&gpu, plan)?;
    gm.run(&input)?; // eager warm-up: modules loaded, input in place
    let per_step = gm.profile()?;
    gm.capture()?;
    let samples_ms = time(gm.stream(), 3, iters, || gm.forward())?;
    let ms = median(&samples_ms);
    let tflops = 2.0 * macs / (ms * 1e-3) / 1e12;

    let mut rows: BTreeMap<String, (usize, f64, f64, f64)> = BTreeMap::new();
    for (step, &t) in gm.plan.steps.iter().zip(&per_step) {
        let e = rows.entry(step.describe()).or_default();
        e.0 += 1;
        e.1 += t;
        e.2 += step.flops();
        e.3 += step.min_bytes(&gm.plan.weights);
    }
    let total: f64 = per_step.iter().sum();
    let mut top: Vec<KernelRow> = rows
        .into_iter()
        .map(|(layer, (calls, t, flops, bytes))| KernelRow {
            layer,
            calls,
            share_pct: 100.0 * t / total,
            tflops: flops / (t * 1e-3) / 1e12,
            gbps: bytes / (t * 1e-3) / 1e9,
            ms: t,
        })
        .collect();
    top.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    top.truncate(10);
    Ok(Report {
        meta: Meta::new(
            &format!(
                "model-{}-b{batch}",
                model.file_stem().unwrap_or_default().to_string_lossy()
            ),
            &gpu,
        ),
        model: model.to_path_buf(),
        batch,
        gmacs_per_image: macs / batch as f64 / 1e9,
        arena_mib,
        img_per_s: batch as f64 / (ms * 1e-3),
        pct_of_bf16_peak: gpu.info().peak_bf16_tflops.map(|p| 100.0 * tflops / p),
        tflops,
        samples_ms,
        eager_profile_ms: total,
        top_kernels: top,
    })
}

impl Report {
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} on {}: batch {}, {:.1} img/s, {:.1} TFLOPS{} ({:.2} GMAC/img, arena {:.0} MiB)\n",
            self.model.display(),
            self.meta.device.name,
            self.batch,
            self.img_per_s,
            self.tflops,
            self.pct_of_bf16_peak
                .map(|p| format!(
                    " = {p:.1}% of the bf16 dense peak ({:.0} TFLOPS: {})",
                    self.meta.device.peak_bf16_tflops.unwrap_or_default(),
                    self.meta.device.peak_bf16_basis.as_deref().unwrap_or("?")
                ))
                .unwrap_or_default(),
            self.gmacs_per_image,
            self.arena_mib
        );
        out += &format!(
            "top kernels (eager forward {:.2} ms):\n",
            self.eager_profile_ms
        );
        for r in &self.top_kernels {
            out += &format!(
                "  {:>5.1}%  {:>8.3} ms  {:>3}x  {:>7.1} TFLOPS {:>7.0} GB/s  {}\n",
                r.share_pct, r.ms, r.calls, r.tflops, r.gbps, r.layer
            );
        }
        out
    }
}
