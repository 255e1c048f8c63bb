//! `dr bench attention`: the fused attention kernel alone on the
//! transformer teachers' shapes (ViT-B/16 and DeiT-S at 197 tokens, head
//! dim 64; Swin-T's 49-token windows at head dim 32 with its bias), q, k
//! and v as the views of one qkv projection [b][n][3][h][d] as the executor
//! runs them, in TFLOPS (4 n_q n_kv d FLOP a head) against the device's
//! dense bf16 peak. tools/gpu_bench_attention.py times PyTorch's SDPA on
//! the same shapes in the same run (scripts/gpu-check.sh).

use anyhow::Result;
use serde::Serialize;

use super::report::{Meta, median, time};
use crate::cuda::Gpu;
use crate::teacher::gpu::attention::{AttnDims, attention};

#[derive(Debug, Serialize)]
pub struct Case {
    pub name: &'static str,
    pub dims: AttnDimsJson,
    pub samples_ms: Vec<f64>,
    pub tflops: f64,
    pub pct_of_bf16_peak: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct AttnDimsJson {
    pub batch: usize,
    pub heads: usize,
    pub tokens: usize,
    pub head_dim: usize,
    pub bias_batch: usize,
}

#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub meta: Meta,
    pub cases: Vec<Case>,
}

/// (name, problems, heads, tokens, head dim, bias images) at `batch` images.
fn shapes(batch: usize) -> [(&'static str, usize, usize, usize, usize, usize); 3] {
    [
        ("vit_b_16", batch, 12, 197, 64, 0),
        ("deit_small", batch, 6, 197, 64, 0),
        // 56x56 tokens in 7x7 windows: 64 a image, the shift mask per window.
        ("swin_t stage 1", batch * 64, 3, 49, 32, 64),
    ]
}

pub fn run(device: usize, batch: usize, iters: usize) -> Result<Report> {
    let gpu = Gpu::open(device)?;
    let s = gpu.stream(0);
    let mut cases = Vec::new();
    for (name, b, h, n, d, bias_batch) in shapes(batch) {
        let mut r = crate::rng::Philox::new(3, n as u32, d as u32, 0);
        let qkv: Vec<u16> = (0..b * n * 3 * h * d)
            .map(|_| crate::teacher::gpu::conv::bf16(r.uniform_f32() * 2.0 - 1.0))
            .collect();
        let dq = s.to_device(&qkv)?;
        let dy = gpu.alloc_zeros::<u16>(b * n * h * d)?;
        let bias: Vec<f32> = (0..bias_batch * h * n * n)
            .map(|_| r.uniform_f32())
            .collect();
        let db = if bias_batch > 0 {
            Some(s.to_device(&bias)?)
        } else {
            None
        };
        let hd = h * d;
        let qkv_st = [n * 3 * hd, d, 3 * hd];
        let st = [qkv_st, qkv_st, qkv_st, [n * hd, d, hd]];
        let dims = AttnDims {
            batch: b,
            heads: h,
            n_q: n,
            n_kv: n,
            d,
            scale: 1.0 / (d as f32).sqrt(),
            bias_batch,
        };
        let regions = [
            dq.region(&s, 0..qkv.len())?,
            dq.region(&s, hd..qkv.len())?,
            dq.region(&s, 2 * hd..qkv.len())?,
        ];
        let y = dy.region(&s, 0..dy.len())?;
        let bias_r = match &db {
            Some(b) => Some(b.region(&s, 0..b.len())?),
            None => None,
        };
        let samples_ms = time(&s, 3, iters, || attention(&s, regions, bias_r, y, st, dims))?;
        let ms = median(&samples_ms);
        let tflops = 4.0 * (b * h * n * n * d) as f64 / (ms * 1e-3) / 1e12;
        cases.push(Case {
            name,
            dims: AttnDimsJson {
                batch: b,
                heads: h,
                tokens: n,
                head_dim: d,
                bias_batch,
            },
            pct_of_bf16_peak: gpu.info().peak_bf16_tflops.map(|p| 100.0 * tflops / p),
            tflops,
            samples_ms,
        });
    }
    Ok(Report {
        meta: Meta::new("attention", &gpu),
        cases,
    })
}

impl Report {
    pub fn render(&self) -> String {
        self.cases
            .iter()
            .map(|c| {
                format!(
                    "{:<15} {:>6} x {:>2} heads, {:>3} tokens, d {:>3}{}: {:>7.3} ms, {:>6.1} TFLOPS{}\n",
                    c.name,
                    c.dims.batch,
                    c.dims.heads,
                    c.dims.tokens,
                    c.dims.head_dim,
                    if c.dims.bias_batch > 0 { " + bias" } else { "" },
                    median(&c.samples_ms),
                    c.tflops,
                    c.pct_of_bf16_peak
                        .map(|p| format!(" ({p:.0}% of the bf16 dense peak)"))
                        .unwrap_or_default()
                )
            })
            .collect()
    }
}
