//! A lowered teacher on one device: weights uploaded once, one arena for
//! every activation, each step a launch over regions of it on one stream,
//! and the whole forward captured as a CUDA graph and replayed per batch.

use super::conv::{ConvIo, Variant, candidates_on, conv2d_variant, f32_of, variant_on};
use super::eltwise;
use super::lower::{GpuPlan, Operand, Step};
use super::pool::{global_avgpool_regions, pool2d_regions};
use crate::cuda::{DevBuf, Gpu, Graph, Region, Result, Stream};

pub struct GpuModel {
    pub plan: GpuPlan,
    stream: Stream,
    arena: DevBuf<u16>,
    /// Split-K layers' fp32 partial sums (`GpuPlan::workspace_len`).
    _workspace: DevBuf<f32>,
    /// Owned for the regions below, which point into them.
    _weights: Vec<(DevBuf<u16>, DevBuf<f32>)>,
    _bf16_consts: Vec<DevBuf<u16>>,
    _f32_consts: Vec<DevBuf<f32>>,
    /// The buffers above as regions, made once: launches only do address
    /// arithmetic on them (nothing cudarc tracks, so they can be captured).
    arena_r: Region<u16>,
    workspace_r: Region<f32>,
    weights_r: Vec<(Region<u16>, Region<f32>)>,
    bf16_consts_r: Vec<Region<u16>>,
    f32_consts_r: Vec<Region<f32>>,
    /// Per step, a tuned kernel in place of the shape rule's (`tuning`).
    variants: Vec<Option<Variant>>,
    graph: Option<Graph>,
}

impl GpuModel {
    /// Uploads the plan's weights and allocates its arena (zeroed, so a
    /// region no step writes reads as zeros, never as stale data). The
    /// plan's `conv_path` must run on `gpu`.
    pub fn new(gpu: &Gpu, plan: GpuPlan) -> Result<Self> {
        plan.conv_path.check(gpu.info())?;
        let stream = gpu.stream(0);
        let weights = plan
            .weights
            .iter()
            .map(|w| Ok((stream.to_device(&w.packed)?, stream.to_device(&w.bias)?)))
            .collect::<Result<Vec<_>>>()?;
        let bf16_consts = plan
            .bf16_consts
            .iter()
            .map(|c| stream.to_device(c))
            .collect::<Result<Vec<_>>>()?;
        let f32_consts = plan
            .f32_consts
            .iter()
            .map(|c| stream.to_device(c))
            .collect::<Result<Vec<_>>>()?;
        let arena = gpu.alloc_zeros::<u16>(plan.arena_len.max(1))?;
        let all = |d: &DevBuf<u16>| d.region(&stream, 0..d.len());
        let all_f = |d: &DevBuf<f32>| d.region(&stream, 0..d.len());
        let arena_r = all(&arena)?;
        let workspace = gpu.alloc::<f32>(plan.workspace_len.max(1))?;
        let workspace_r = all_f(&workspace)?;
        let weights_r = weights
            .iter()
            .map(|(w, b)| Ok((all(w)?, all_f(b)?)))
            .collect::<Result<Vec<_>>>()?;
        let bf16_consts_r = bf16_consts.iter().map(all).collect::<Result<Vec<_>>>()?;
        let f32_consts_r = f32_consts.iter().map(all_f).collect::<Result<Vec<_>>>()?;
        stream.synchronize()?;
        Ok(GpuModel {
            variants: vec![None; plan.steps.len()],
            arena_r,
            workspace_r,
            _workspace: workspace,
            weights_r,
            bf16_consts_r,
            f32_consts_r,
            plan,
            stream,
            arena,
            _weights: weights,
            _bf16_consts: bf16_consts,
            _f32_consts: f32_consts,
            graph: None,
        })
    }

    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Kernels per step in place of the shape rule's (a tuning file's
    /// choices, `None` keeping the rule's); a captured forward is dropped
    /// so that the next capture takes them.
    pub fn set_variants(&mut self, variants: Vec<Option<Variant>>) -> Result<()> {
        if variants.len() != self.plan.steps.len() {
            return Err(crate::cuda::CudaError::Invalid(format!(
                "set_variants: {} choices for {} steps",
                variants.len(),
                self.plan.steps.len()
            )));
        }
        for (i, v) in variants.iter().enumerate() {
            let ok = match (v, &self.plan.steps[i]) {
                (None, _) => true,
                (Some(v), Step::Conv { p, .. }) => {
                    candidates_on(p, self.plan.conv_path).contains(v)
                }
                (Some(_), _) => false,
            };
            if !ok {
                return Err(crate::cuda::CudaError::Invalid(format!(
                    "set_variants: step {i} ({}) has no kernel {:?}",
                    self.plan.steps[i].describe(),
                    v
                )));
            }
        }
        self.variants = variants;
        self.graph = None;
        Ok(())
    }

    /// The kernel a convolution step launches (`None` for other steps).
    pub fn variant_of(&self, i: usize) -> Option<Variant> {
        match &self.plan.steps[i] {
            Step::Conv { p, .. } => {
                Some(self.variants[i].unwrap_or_else(|| variant_on(p, self.plan.conv_path)))
            }
            _ => None,
        }
    }

    /// Step `i`'s table label, naming the kernel it launches.
    pub fn describe_step(&self, i: usize) -> String {
        match (&self.plan.steps[i], self.variant_of(i)) {
            (Step::Conv { p, .. }, Some(v)) => super::lower::conv_label(p, v),
            (s, _) => s.describe(),
        }
    }

    /// Queues step `i` alone on the model's stream, a convolution through
    /// `v` when given: what the autotuner times.
    pub fn launch_step(&self, i: usize, v: Option<Variant>) -> Result<()> {
        self.enqueue_step_with(&self.stream, i, v.or(self.variants[i]))
    }

    /// The arena region the next forward reads its NHWC bf16 input from
    /// (the augmentation can write there directly).
    pub fn input(&self) -> Result<Region<u16>> {
        self.arena_r.sub(self.plan.input.clone())
    }

    /// Where the logits [N][classes] (bf16) are after a forward.
    pub fn output(&self) -> Result<Region<u16>> {
        self.arena_r.sub(self.plan.output.clone())
    }

    /// Queues every step on the model's stream.
    fn enqueue(&self, s: &Stream) -> Result<()> {
        (0..self.plan.steps.len()).try_for_each(|i| self.enqueue_step(s, i))
    }

    /// Milliseconds of each step, from events around it, in an eager forward.
    pub fn profile(&self) -> Result<Vec<f64>> {
        let s = &self.stream;
        let mut marks = vec![s.record()?];
        for i in 0..self.plan.steps.len() {
            self.enqueue_step(s, i)?;
            marks.push(s.record()?);
        }
        s.synchronize()?;
        marks
            .windows(2)
            .map(|w| Ok(w[0].elapsed_ms(&w[1])? as f64))
            .collect()
    }

    fn enqueue_step(&self, s: &Stream, i: usize) -> Result<()> {
        self.enqueue_step_with(s, i, self.variants[i])
    }

    fn enqueue_step_with(&self, s: &Stream, i: usize, v: Option<Variant>) -> Result<()> {
        let r = |range: &std::ops::Range<usize>| self.arena_r.sub(range.clone());
        {
            let step = &self.plan.steps[i];
            match step {
                Step::Conv {
                    p,
                    weights,
                    x,
                    residual,
                    y,
                } => {
                    let (w, bias) = self.weights_r[*weights];
                    let io = ConvIo {
                        x: r(x)?,
                        w,
                        bias,
                        residual: residual.as_ref().map(r).transpose()?,
                        y: r(y)?,
                        workspace: Some(self.workspace_r),
                    };
                    // The arena and the weights are 16-byte aligned, as every kernel needs.
                    let v = v.unwrap_or_else(|| variant_on(p, self.plan.conv_path));
                    conv2d_variant(s, p, v, io)?
                }
                Step::Pool { p, x, y } => pool2d_regions(s, p, r(x)?, r(y)?)?,
                Step::GlobalAvg { dims, x, y } => global_avgpool_regions(s, r(x)?, r(y)?, *dims)?,
                Step::Unary { op, x, y } => eltwise::unary(s, *op, r(x)?, r(y)?)?,
                Step::Binary { op, bc, a, b, y, c } => {
                    let b = match b {
                        Operand::Arena(range) => r(range)?,
                        Operand::Const(k) => self.bf16_consts_r[*k],
                    };
                    eltwise::binary(s, *op, *bc, r(a)?, b, r(y)?, *c)?
                }
                Step::Affine { consts, x, y, c } => {
                    let (k, sh) = (self.f32_consts_r[consts.0], self.f32_consts_r[consts.1]);
                    eltwise::affine(s, r(x)?, k, sh, r(y)?, *c)?
                }
                Step::LayerNorm {
                    consts,
                    x,
                    y,
                    c,
                    eps,
                } => {
                    let (gamma, beta) = (self.f32_consts_r[consts.0], self.f32_consts_r[consts.1]);
                    super::norm::layer_norm(s, r(x)?, gamma, beta, r(y)?, *c, *eps)?
                }
                Step::Concat { x, y, cols } => eltwise::concat_channels(s, r(x)?, r(y)?, *cols)?,
                Step::Softmax { x, y, c } => super::norm::softmax(s, r(x)?, r(y)?, *c)?,
                Step::Copy { x, y, copy } => {
                    let x = match x {
                        Operand::Arena(range) => r(range)?,
                        Operand::Const(k) => self.bf16_consts_r[*k],
                    };
                    super::layout::copy_strided(s, x, r(y)?, copy)?
                }
                Step::Attention {
                    q,
                    k,
                    v,
                    bias,
                    y,
                    strides,
                    dims,
                } => super::attention::attention(
                    s,
                    [r(q)?, r(k)?, r(v)?],
                    bias.map(|b| self.f32_consts_r[b]),
                    r(y)?,
                    *strides,
                    *dims,
                )?,
            }
        }
        Ok(())
    }

    /// Captures the forward as a CUDA graph; later forwards replay it. An
    /// eager forward first loads every kernel module outside the capture.
    pub fn capture(&mut self) -> Result<()> {
        self.enqueue(&self.stream)?;
        self.stream.synchronize()?;
        let graph = self.stream.capture(|s| self.enqueue(s))?;
        self.graph = Some(graph);
        Ok(())
    }

    /// Queues one forward over the input region (graph replay once captured).
    pub fn forward(&self) -> Result<()> {
        match &self.graph {
            Some(g) => g.launch(),
            None => self.enqueue(&self.stream),
        }
    }

    /// Uploads `input` (NHWC bf16), runs a forward and returns the logits.
    pub fn run(&mut self, input: &[u16]) -> Result<Vec<f32>> {
        if input.len() != self.plan.input.len() {
            return Err(crate::cuda::CudaError::Invalid(format!(
                "run: {} input elements for a plan taking {} (NHWC with {} channels: lower::to_nhwc_bf16)",
                input.len(),
                self.plan.input.len(),
                self.plan.input_channels
            )));
        }
        let at = self.plan.input.start;
        self.stream.upload_at(input, &mut self.arena, at)?;
        self.forward()?;
        let mut out = vec![0u16; self.plan.output.len()];
        self.stream
            .download_at(&self.arena, self.plan.output.start, &mut out)?;
        self.stream.synchronize()?;
        Ok(out.into_iter().map(f32_of).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::testing::gpu_or_skip;
    use crate::teacher::ensemble::Member;
    use crate::teacher::gpu::conv::ConvPath;
    use crate::teacher::gpu::lower::{lower, to_nhwc_bf16};
    use std::path::PathBuf;

    /// A plan's input: uniform in [-2, 2), NHWC bf16 as it stores it.
    fn random_input(plan: &crate::teacher::gpu::lower::GpuPlan, seed: u64) -> Vec<u16> {
        let mut r = crate::rng::Philox::new(seed, 0, 0, 0);
        let x: Vec<f32> = (0..plan.input_nchw.iter().product())
            .map(|_| r.uniform_f32() * 4.0 - 2.0)
            .collect();
        to_nhwc_bf16(&x, plan.input_nchw, plan.input_channels)
    }

    /// The CNN, ConvNeXt, ViT and Swin fixtures and the demo teacher on the device, eager and
    /// as a graph, against the plan's CPU twin: every layer rounds to bf16 on
    /// both sides, so they differ only where an fp32 accumulation order
    /// flips a rounding; the logits must agree closely and on the top class.
    #[test]
    fn device_forward_matches_the_twin() {
        let Some(gpu) = gpu_or_skip() else { return };
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let fixture = |f: &str| root.join(format!("tests/fixtures/teacher/{f}-legacy17.onnx"));
        for model in [
            fixture("resnet"),
            fixture("mobilenet"),
            fixture("efficientnet"),
            fixture("densenet"),
            fixture("convnext"),
            fixture("vit"),
            fixture("swin"),
            root.join("tests/fixtures/teacher/vit_sdpa-dynamo.onnx"),
            root.join("tests/fixtures/teacher/swin-dynamo.onnx"),
            root.join("tests/fixtures/teacher/resnext-helper.onnx"),
            root.join("assets/demo-teacher.onnx"),
        ] {
            let m = Member::load(&model).unwrap();
            // Not a multiple of any tile. The ResNeXt helper at 7: its
            // grouped tiles are spatial (4x32 or 7x16 pixels of one image),
            // so more images add only stand-in minutes, no new tile edges.
            let batch = if model.ends_with("resnext-helper.onnx") {
                7
            } else {
                37
            };
            let plan = lower(&m.graph(batch).unwrap()).unwrap();
            if model.ends_with("resnext-helper.onnx") {
                // Its three grouped 3x3 layers (Ng 8, 16/2, 32) take conv_grouped.
                let grouped = plan
                    .steps
                    .iter()
                    .filter(|s| match s {
                        crate::teacher::gpu::lower::Step::Conv { p, .. } => {
                            crate::teacher::gpu::conv::variant(p).family()
                                == crate::cuda::kernels::Family::ConvGrouped
                        }
                        _ => false,
                    })
                    .count();
                assert_eq!(
                    grouped,
                    3,
                    "{}: grouped layers on conv_grouped",
                    model.display()
                );
            }
            let input = random_input(&plan, 11);
            let want = plan.run_cpu(&input);
            let classes = plan.classes;
            let mut gm = GpuModel::new(&gpu, plan).unwrap();
            let eager = gm.run(&input).unwrap();
            gm.capture().unwrap();
            let graphed = gm.run(&input).unwrap();
            assert!(
                eager == graphed,
                "{}: graph replay differs from eager",
                model.display()
            );
            let (err, agree) = crate::teacher::gpu::lower::tests::compare(&eager, &want, classes);
            println!(
                "{}: device vs twin max |diff| / max |logit| = {err:.2e}, top-1 {agree}/{batch}",
                model.display()
            );
            assert!(err < 0.02, "{}: {err}", model.display());
            assert!(
                agree * 100 >= batch * 95,
                "{}: top-1 {agree}/{batch}",
                model.display()
            );
        }
    }

    /// nn.MultiheadAttention's tokens-major q, k, v and output (strides no
    /// fixture's attention has) on the device, against the twin.
    #[test]
    fn multihead_attention_matches_the_twin() {
        let Some(gpu) = gpu_or_skip() else { return };
        let mut g = crate::teacher::gpu::lower::tests::multihead_attention(3);
        crate::teacher::passes::optimize(&mut g).unwrap();
        let plan = lower(&g).unwrap();
        let input = random_input(&plan, 13);
        let want = plan.run_cpu(&input);
        let classes = plan.classes;
        let got = GpuModel::new(&gpu, plan).unwrap().run(&input).unwrap();
        let (err, agree) = crate::teacher::gpu::lower::tests::compare(&got, &want, classes);
        println!("device vs twin max |diff| / max |logit| = {err:.2e}, top-1 {agree}/3");
        assert!(err < 0.02 && agree == 3, "{err} {agree}");
    }

    /// A transformer's logits for an image are the same bits whatever
    /// batch it runs in (ViT: token concat, attention over 17 tokens; Swin:
    /// windows, shift masks, patch merging), at 1, 3 and 8.
    #[test]
    fn transformer_logits_do_not_depend_on_the_batch() {
        let Some(gpu) = gpu_or_skip() else { return };
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        for f in ["vit-legacy17", "swin-dynamo"] {
            let m = Member::load(&root.join(format!("tests/fixtures/teacher/{f}.onnx"))).unwrap();
            let big = lower(&m.graph(8).unwrap()).unwrap();
            let input = random_input(&big, 21);
            let per = input.len() / 8;
            let mut runs = Vec::new();
            for batch in [8, 3, 1] {
                let plan = lower(&m.graph(batch).unwrap()).unwrap();
                let classes = plan.classes;
                let mut gm = GpuModel::new(&gpu, plan).unwrap();
                gm.capture().unwrap();
                let got = gm.run(&input[..batch * per]).unwrap();
                runs.push((batch, got[..classes].to_vec()));
            }
            for (batch, first) in &runs[1..] {
                assert!(
                    first
                        .iter()
                        .map(|v| v.to_bits())
                        .eq(runs[0].1.iter().map(|v| v.to_bits())),
                    "{f}: image 0 at batch {batch} differs from batch 8"
                );
            }
        }
    }

    /// A ResNet-18 of width 40 at 32 px, whose FC (320 -> 1000) and last
    /// stage's 3x3 convolutions (down to 1x1, one with the residual) are
    /// split along K: on the device as the twin, and the first image's
    /// logits the same bits at batch 1 as at batch 5.
    #[test]
    fn split_layers_match_the_twin_at_any_batch() {
        let Some(gpu) = gpu_or_skip() else { return };
        let dir = std::env::temp_dir().join(format!("dr-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("resnet-w40.onnx");
        std::fs::write(
            &path,
            crate::teacher::onnx::synth::resnet([1, 1, 1, 1], 40, 1000, 32, 5),
        )
        .unwrap();
        let m = Member::load(&path).unwrap();
        let mut logits = Vec::new();
        for batch in [5, 1] {
            let plan = lower(&m.graph(batch).unwrap()).unwrap();
            let split = plan
                .steps
                .iter()
                .filter(|s| matches!(s, Step::Conv { p, .. } if super::super::conv::split_slices(p) > 1))
                .count();
            assert_eq!(split, 3, "the FC and two 3x3 layers at 1x1 are split");
            assert!(plan.workspace_len > 0);
            let input = random_input(&plan, 12);
            let want = plan.run_cpu(&input);
            let classes = plan.classes;
            let mut gm = GpuModel::new(&gpu, plan).unwrap();
            gm.capture().unwrap();
            let got = gm.run(&input).unwrap();
            let (err, agree) = crate::teacher::gpu::lower::tests::compare(&got, &want, classes);
            let top = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let distinct = want
                .iter()
                .map(|v| v.to_bits())
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            println!(
                "resnet-w40 batch {batch}: device vs twin {err:.2e}, top-1 {agree}/{batch}, max {top} distinct {distinct}"
            );
            assert!(
                err < 0.02 && agree == batch,
                "batch {batch}: {err}, {agree}"
            );
            logits.push(got);
        }
        let classes = logits[1].len();
        assert!(
            logits[0][..classes] == logits[1][..],
            "the first image's logits differ between batch 5 and batch 1"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The kernels/conv_sm90.cu entry points the steps of `gm` launch, in order.
    fn on_conv_sm90(gm: &GpuModel) -> Vec<&'static str> {
        (0..gm.plan.steps.len())
            .filter_map(|i| gm.variant_of(i))
            .filter(|v| v.family() == crate::cuda::kernels::Family::ConvSm90)
            .map(|v| v.name())
            .collect()
    }

    /// The wgmma path (kernels/conv_sm90.cu for the layers it takes, the
    /// rest as mma.sync) on the ResNeXt helper, whose four bottleneck 1x1
    /// layers the TMA GEMM takes and two others the gather kernels (its
    /// narrow grouped 3x3s stay on mma.sync): each step's kernel is the path's, the forward
    /// matches the twin, the first image's logits are the same bits at
    /// batch 7 as at batch 2, and they differ from the mma.sync path's in
    /// no more than the accumulation order (the same tolerance).
    #[test]
    fn wgmma_path_matches_the_twin_at_any_batch() {
        let Some(gpu) = gpu_or_skip() else { return };
        if !super::super::conv::wgmma_runs_on(gpu.info()) {
            println!("{}: no wgmma kernels on this device", gpu.info().arch());
            return;
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let m = Member::load(&root.join("tests/fixtures/teacher/resnext-helper.onnx")).unwrap();
        let mut firsts = Vec::new();
        for batch in [7, 2] {
            let mut plan = lower(&m.graph(batch).unwrap()).unwrap();
            plan.conv_path = ConvPath::Wgmma;
            let input = random_input(&plan, 17);
            let want = plan.run_cpu(&input);
            let classes = plan.classes;
            let mut gm = GpuModel::new(&gpu, plan).unwrap();
            let sm90 = on_conv_sm90(&gm);
            println!("batch {batch}: on conv_sm90: {sm90:?}");
            let gathered = sm90.iter().filter(|n| n.starts_with("conv_sm90g_")).count();
            assert_eq!(
                (sm90.len() - gathered, gathered),
                (4, 2),
                "the helper's four 1x1 layers on the TMA GEMM, two others (no ReLU: `_any`) on the gather kernels"
            );
            let eager = gm.run(&input).unwrap();
            gm.capture().unwrap();
            assert!(gm.run(&input).unwrap() == eager, "graph replay differs");
            let (err, agree) = crate::teacher::gpu::lower::tests::compare(&eager, &want, classes);
            println!("wgmma path, batch {batch}: device vs twin {err:.2e}, top-1 {agree}/{batch}");
            assert!(
                err < 0.02 && agree == batch,
                "batch {batch}: {err}, {agree}"
            );
            if batch == 2 {
                let mut mma = lower(&m.graph(batch).unwrap()).unwrap();
                mma.conv_path = ConvPath::MmaSync;
                let other = GpuModel::new(&gpu, mma).unwrap().run(&input).unwrap();
                let (err, _) = crate::teacher::gpu::lower::tests::compare(&other, &eager, classes);
                println!("wgmma vs mma.sync path: {err:.2e}");
                assert!(err < 0.02, "{err}");
            }
            firsts.push(eager[..classes].to_vec());
        }
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&firsts[0]),
            bits(&firsts[1]),
            "image 0 at batch 7 vs 2"
        );
    }

    /// The full-size transformer exports (`DR_REAL_MODELS`, written by
    /// tools/check_real_families.py; skipped without it) on the device
    /// through the path it takes (wgmma on the stand-in and on Hopper: their
    /// linear layers are 1x1 layers of 768 to 3072 channels), against the
    /// twin at batch 2.
    #[test]
    fn real_transformers_on_the_device_match_the_twin() {
        let Some(gpu) = gpu_or_skip() else { return };
        let Some(dir) = std::env::var_os("DR_REAL_MODELS").map(PathBuf::from) else {
            println!("skipped: DR_REAL_MODELS is not set");
            return;
        };
        for name in [
            "vit_b_16",
            "deit_small_patch16_224",
            "swin_t",
            "convnext_tiny",
        ] {
            let path = dir.join(format!("{name}-legacy17.onnx"));
            let m = Member::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut plan = lower(&m.graph(2).unwrap()).unwrap();
            plan.conv_path = ConvPath::for_device(gpu.info()).unwrap();
            let input = random_input(&plan, 5);
            let want = plan.run_cpu(&input);
            let classes = plan.classes;
            let mut gm = GpuModel::new(&gpu, plan).unwrap();
            let sm90 = on_conv_sm90(&gm).len();
            gm.capture().unwrap();
            let got = gm.run(&input).unwrap();
            let (err, agree) = crate::teacher::gpu::lower::tests::compare(&got, &want, classes);
            // Random weights give nearly tied logits: the top class must
            // agree only where the twin's lead over the second is beyond
            // the error seen (twice the largest difference).
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let clear = want
                .chunks(classes)
                .zip(got.chunks(classes))
                .filter(|(w, _)| {
                    let mut r = w.to_vec();
                    r.sort_by(|a, b| b.total_cmp(a));
                    r[0] - r[1] > 2.0 * err * scale
                })
                .collect::<Vec<_>>();
            let argmax = |r: &[f32]| (0..r.len()).max_by(|&i, &j| r[i].total_cmp(&r[j]));
            let clear_agree = clear.iter().filter(|(w, g)| argmax(w) == argmax(g)).count();
            println!(
                "{name}: {} path, {sm90} layers on conv_sm90; device vs twin {err:.2e} of the largest logit, top-1 {agree}/2 ({clear_agree}/{} with a clear lead)",
                gm.plan.conv_path.name(),
                clear.len()
            );
            assert!(err < 0.02, "{name}: {err}");
            assert_eq!(clear_agree, clear.len(), "{name}: a clear top-1 differs");
        }
    }
}
