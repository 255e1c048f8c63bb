//! `dr bench topk`: the ensemble softmax + top-k kernel in rows per second,
//! over the shapes ml-dr's jobs use (1000 and 21841 classes, k = 5, 10, 64,
//! one member and an ensemble of four), with the bytes it reads against the
//! device's DRAM peak. tools/gpu_bench_topk.py times torch.softmax +
//! torch.topk on the same shapes in the same run (scripts/gpu-check.sh).

use anyhow::Result;
use serde::Serialize;

use super::report::{Meta, median, time};
use crate::cuda::Gpu;
use crate::teacher::gpu::topk::ensemble_topk;

#[derive(Debug, Serialize)]
pub struct Case {
    pub members: usize,
    pub rows: usize,
    pub classes: usize,
    pub k: usize,
    pub samples_ms: Vec<f64>,
    pub rows_per_s: f64,
    /// Logits read once per pass (3 passes) plus the workspace, over the median time.
    pub gbps: f64,
    pub pct_of_dram_peak: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub meta: Meta,
    pub cases: Vec<Case>,
}

pub fn run(device: usize, rows: usize, iters: usize) -> Result<Report> {
    let gpu = Gpu::open(device)?;
    let s = gpu.stream(0);
    let mut cases = Vec::new();
    for &classes in &[1000usize, 21841] {
        for &members in &[1usize, 4] {
            for &k in &[5usize, 10, 64] {
                let mut r = crate::rng::Philox::new(7, classes as u32, members as u32, 1);
                let x: Vec<f32> = (0..members * rows * classes)
                    .map(|_| (r.uniform_f32() - 0.5) * 16.0)
                    .collect();
                let mut dx = gpu.alloc::<f32>(x.len())?;
                s.upload(&x, &mut dx)?;
                let mut work = gpu.alloc::<f32>(rows * classes)?;
                let mut dv = gpu.alloc::<f32>(rows * k)?;
                let mut di = gpu.alloc::<u32>(rows * k)?;
                let samples_ms = time(&s, 3, iters, || {
                    ensemble_topk(
                        &s, &dx, members, rows, classes, 1.0, k, &mut work, &mut dv, &mut di,
                    )
                })?;
                let ms = median(&samples_ms);
                // Three passes over the logits (max, sum, accumulate); the
                // workspace written once per member and read by 5 more passes.
                let bytes =
                    4.0 * (3 * members * rows * classes + (members + 5) * rows * classes) as f64;
                let gbps = bytes / (ms * 1e-3) / 1e9;
                let peak = gpu.info().peak_dram_gbps;
                cases.push(Case {
                    members,
                    rows,
                    classes,
                    k,
                    rows_per_s: rows as f64 / (ms * 1e-3),
                    gbps,
                    pct_of_dram_peak: peak.map(|p| 100.0 * gbps / p),
                    samples_ms,
                });
            }
        }
    }
    Ok(Report {
        meta: Meta::new("topk", &gpu),
        cases,
    })
}

impl Report {
    pub fn render(&self) -> String {
        self.cases
            .iter()
            .map(|c| {
                format!(
                    "members {} classes {:>5} k {:>2}: {:>10.0} rows/s, {:>6.1} GB/s\n",
                    c.members, c.classes, c.k, c.rows_per_s, c.gbps
                )
            })
            .collect()
    }
}
