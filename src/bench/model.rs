//! `dr bench model`: teacher throughput. The CPU executor here; the GPU
//! executor joins when [gpu-cnn] lands. Peer: tools/bench_onnxruntime_cpu.py.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::teacher::ensemble::Member;
use crate::teacher::infer::macs;
use crate::teacher::tensor::Tensor;

#[derive(Debug, Serialize)]
pub struct ModelBench {
    pub model: PathBuf,
    pub device: String,
    pub batch: usize,
    pub threads: usize,
    pub gmacs_per_image: f64,
    pub samples_s: Vec<f64>,
    pub median_s: f64,
    pub img_per_s: f64,
    pub gflops: f64,
    /// Share of time per op over the timed runs: (op, seconds, calls).
    pub per_op: Vec<(String, f64, usize)>,
}

pub fn run_cpu(model: &std::path::Path, batch: usize, iters: usize) -> Result<ModelBench> {
    if batch == 0 || iters == 0 {
        bail!("--batch-size and --iters must be at least 1");
    }
    let m = Member::load(model)?;
    let chw = m.input_chw()?;
    let plan = m.plan(batch)?;
    let g = plan.graph.clone();
    let per_image = macs(&g) as f64 / batch as f64;
    let n: usize = batch * chw.iter().product::<usize>();
    // Fixed pseudo-random input (not zeros: nothing may shortcut on it).
    let data: Vec<f32> = (0..n)
        .map(|i| ((i.wrapping_mul(2_654_435_761) >> 7) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let x = Tensor::f32([vec![batch], chw].concat(), data);
    m.logits(x.clone())?; // warm-up (and the prepared graph is cached)
    let mut samples = Vec::with_capacity(iters);
    let mut profile = std::collections::BTreeMap::new();
    for _ in 0..iters {
        let t = Instant::now();
        plan.run_profiled(vec![x.clone()], Some(&mut profile))
            .map_err(anyhow::Error::msg)?;
        samples.push(t.elapsed().as_secs_f64());
    }
    let mut per_op: Vec<(String, f64, usize)> =
        profile.into_iter().map(|(k, (t, n))| (k, t, n)).collect();
    per_op.sort_by(|a, b| b.1.total_cmp(&a.1));
    let median_s = super::report::median(&samples);
    Ok(ModelBench {
        model: model.to_path_buf(),
        device: "cpu".into(),
        batch,
        threads: rayon::current_num_threads(),
        gmacs_per_image: per_image / 1e9,
        img_per_s: batch as f64 / median_s,
        gflops: 2.0 * per_image * batch as f64 / median_s / 1e9,
        samples_s: samples,
        median_s,
        per_op,
    })
}
