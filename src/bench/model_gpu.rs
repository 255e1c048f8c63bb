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
use crate::teacher::gpu::conv::{ConvPath, candidates_on};
use crate::teacher::gpu::lower::{lower, to_nhwc_bf16};
use crate::teacher::gpu::model::GpuModel;
use crate::teacher::gpu::tuning::{self, TunedLayer, Tuning, conv_steps, file_for, layer_key};

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
    /// The convolution kernel set (`conv::ConvPath`): `wgmma` on sm_90a by
    /// default, `mma-sync` elsewhere or with DR_CONV_KERNELS=mma-sync.
    pub conv_kernels: String,
    pub gmacs_per_image: f64,
    pub arena_mib: f64,
    pub samples_ms: Vec<f64>,
    pub img_per_s: f64,
    pub tflops: f64,
    pub pct_of_bf16_peak: Option<f64>,
    /// Eager forward, step by step (includes launch gaps the graph hides).
    pub eager_profile_ms: f64,
    pub top_kernels: Vec<KernelRow>,
    /// The kernel tuning file the forward ran with (teacher/gpu/tuning.rs).
    pub tuning: Option<PathBuf>,
    /// With `--autotune`: the layers whose kernel the timing changed, and
    /// the shape rule's forward timed in the same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autotune: Option<Autotune>,
}

#[derive(Debug, Serialize)]
pub struct Autotune {
    pub layers_timed: usize,
    pub changed: Vec<TunedLayer>,
    pub rule_samples_ms: Vec<f64>,
    pub rule_img_per_s: f64,
}

/// A candidate replaces the shape rule's kernel only when at least this
/// much faster: closer medians are within timing noise.
const SWITCH_GAIN: f64 = 0.03;

/// Times every candidate kernel of each convolution step alone (the
/// activations an eager forward left in the arena as its input) and keeps
/// the fastest per layer.
fn tune_layers(gm: &GpuModel, iters: usize) -> Result<Vec<TunedLayer>> {
    let mut out = Vec::new();
    for (i, p) in conv_steps(&gm.plan) {
        let cands = candidates_on(p, gm.plan.conv_path);
        if cands.len() < 2 {
            continue;
        }
        let mut ms = Vec::new();
        for &v in &cands {
            let samples = time(gm.stream(), 2, iters, || gm.launch_step(i, Some(v)))?;
            ms.push((v.name().to_string(), median(&samples)));
        }
        let rule = ms[0].1; // candidates()[0] is the rule's
        let best = (0..ms.len())
            .min_by(|&a, &b| ms[a].1.total_cmp(&ms[b].1))
            .filter(|&b| ms[b].1 < rule * (1.0 - SWITCH_GAIN))
            .unwrap_or(0);
        out.push(TunedLayer {
            step: i,
            layer: layer_key(p),
            kernel: ms[best].0.clone(),
            rule: ms[0].0.clone(),
            candidates_ms: ms,
        });
    }
    Ok(out)
}

/// `autotune`: time each layer's candidate kernels first, write the
/// choices to the model's tuning file and run with them; otherwise the
/// forward runs as the executor would (with the tuning file if one exists).
pub fn run(
    model: &Path,
    device: usize,
    batch: usize,
    iters: usize,
    autotune: bool,
) -> Result<Report> {
    if batch == 0 || iters == 0 {
        bail!("--batch-size and --iters must be at least 1");
    }
    let gpu = Gpu::open(device).context("`dr bench model --device cuda` needs a CUDA GPU")?;
    let m = Member::load(model)?;
    let mut plan =
        lower(&*m.graph(batch)?).map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
    plan.conv_path = ConvPath::for_device(gpu.info())?;
    let n = plan.input_nchw.iter().product::<usize>();
    // Fixed pseudo-random input (not zeros: nothing may shortcut on it).
    let x: Vec<f32> = (0..n)
        .map(|i| ((i.wrapping_mul(2_654_435_761) >> 7) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let input = to_nhwc_bf16(&x, plan.input_nchw, plan.input_channels);
    let macs = plan.macs() as f64;
    let arena_mib = plan.arena_len as f64 * 2.0 / (1 << 20) as f64;
    let mut gm = GpuModel::new(&gpu, plan)?;
    gm.run(&input)?; // eager warm-up: modules loaded, input in place
    let (tuning, autotune) = if autotune {
        gm.capture()?;
        let rule_samples_ms = time(gm.stream(), 3, iters, || gm.forward())?;
        let layers = tune_layers(&gm, iters)?;
        let file = file_for(gpu.info(), &gm.plan);
        let t = Tuning::new(gpu.info(), model, &gm.plan, batch, layers);
        gm.set_variants(t.choices(&gm.plan, &file)?)?;
        t.save(&file)?;
        let changed = t.layers.iter().filter(|l| l.kernel != l.rule).cloned();
        let a = Autotune {
            layers_timed: t.layers.len(),
            changed: changed.collect(),
            rule_img_per_s: batch as f64 / (median(&rule_samples_ms) * 1e-3),
            rule_samples_ms,
        };
        (Some(file), Some(a))
    } else {
        (tuning::apply(&mut gm, gpu.info())?, None)
    };
    let per_step = gm.profile()?;
    gm.capture()?;
    let samples_ms = time(gm.stream(), 3, iters, || gm.forward())?;
    let ms = median(&samples_ms);
    let tflops = 2.0 * macs / (ms * 1e-3) / 1e12;

    let mut rows: BTreeMap<String, (usize, f64, f64, f64)> = BTreeMap::new();
    for (i, (step, &t)) in gm.plan.steps.iter().zip(&per_step).enumerate() {
        let e = rows.entry(gm.describe_step(i)).or_default();
        e.0 += 1;
        e.1 += t;
        e.2 += gm.plan.step_flops(i);
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
                "model-{}-b{batch}-{}{}",
                model.file_stem().unwrap_or_default().to_string_lossy(),
                gm.plan.conv_path.name(),
                if autotune.is_some() { "-autotune" } else { "" }
            ),
            &gpu,
        ),
        model: model.to_path_buf(),
        batch,
        conv_kernels: gm.plan.conv_path.name().into(),
        gmacs_per_image: macs / batch as f64 / 1e9,
        arena_mib,
        img_per_s: batch as f64 / (ms * 1e-3),
        pct_of_bf16_peak: gpu.info().peak_bf16_tflops.map(|p| 100.0 * tflops / p),
        tflops,
        samples_ms,
        eager_profile_ms: total,
        top_kernels: top,
        tuning,
        autotune,
    })
}

impl Report {
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} on {}: batch {}, {} kernels, {:.1} img/s, {:.1} TFLOPS{} ({:.2} GMAC/img, arena {:.0} MiB)\n",
            self.model.display(),
            self.meta.device.name,
            self.batch,
            self.conv_kernels,
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
        match (&self.autotune, &self.tuning) {
            (Some(a), Some(f)) => {
                out += &format!(
                    "autotuned {} layers into {}: {} changed from the shape rule; the rule's forward {:.1} img/s in this run ({:.2}x)\n",
                    a.layers_timed,
                    f.display(),
                    a.changed.len(),
                    a.rule_img_per_s,
                    self.img_per_s / a.rule_img_per_s
                );
                for l in &a.changed {
                    let ms = |k: &str| {
                        l.candidates_ms
                            .iter()
                            .find(|c| c.0 == k)
                            .map_or(f64::NAN, |c| c.1)
                    };
                    out += &format!(
                        "  step {:>3} {}: {} {:.3} ms (rule: {} {:.3} ms)\n",
                        l.step,
                        l.layer,
                        l.kernel,
                        ms(&l.kernel),
                        l.rule,
                        ms(&l.rule)
                    );
                }
            }
            (None, Some(f)) => out += &format!("kernel choices tuned by {}\n", f.display()),
            _ => {}
        }
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
