//! What lowering produces: kernel steps over regions of one bf16 arena,
//! packed weights and constants, and the plan run through the kernels' CPU
//! twins (`GpuPlan::run_cpu`), which the device executor (`model`) must match.

use std::ops::Range;

use crate::cuda::kernels::conv::ConvParams;
use crate::cuda::kernels::pool::PoolParams;
use crate::teacher::gpu::attention::{AttnDims, Strides};
use crate::teacher::gpu::conv::{bf16, f32_of};
use crate::teacher::gpu::eltwise::{BinaryOp, Broadcast, UnaryOp};
use crate::teacher::gpu::layout::Strided;

#[derive(Debug, Clone)]
pub enum Step {
    Conv {
        p: ConvParams,
        weights: usize,
        x: Range<usize>,
        residual: Option<Range<usize>>,
        y: Range<usize>,
    },
    Pool {
        p: PoolParams,
        x: Range<usize>,
        y: Range<usize>,
    },
    GlobalAvg {
        /// (N, H*W, C)
        dims: (usize, usize, usize),
        x: Range<usize>,
        y: Range<usize>,
    },
    Unary {
        op: UnaryOp,
        x: Range<usize>,
        y: Range<usize>,
    },
    Binary {
        op: BinaryOp,
        bc: Broadcast,
        a: Range<usize>,
        b: Operand,
        y: Range<usize>,
        /// Channels (the last NHWC axis).
        c: usize,
    },
    /// `y = x * scale[c] + shift[c]`: a BatchNorm the passes could not fold.
    Affine {
        /// Index into `GpuPlan::f32_consts` of scale then shift.
        consts: (usize, usize),
        x: Range<usize>,
        y: Range<usize>,
        c: usize,
    },
    /// LayerNorm over the last axis of rows of `c` (stored innermost).
    LayerNorm {
        /// Index into `GpuPlan::f32_consts` of gamma then beta.
        consts: (usize, usize),
        x: Range<usize>,
        y: Range<usize>,
        c: usize,
        eps: f32,
    },
    /// Elements moved between layouts (`layout.cu`): x and y start at
    /// their views' first element.
    Copy {
        x: Operand,
        y: Range<usize>,
        copy: Strided,
    },
    /// softmax(q kᵀ scale + bias) v (`attention.cu`); q, k, v and y start
    /// at their views' first element, `strides` theirs in that order.
    Attention {
        q: Range<usize>,
        k: Range<usize>,
        v: Range<usize>,
        /// Index into `GpuPlan::f32_consts`: [bias_batch][heads][n_q][n_kv].
        bias: Option<usize>,
        y: Range<usize>,
        strides: [Strides; 4],
        dims: AttnDims,
    },
    /// Softmax over the last axis, rows of `c` stored innermost (one the
    /// attention fusion did not absorb).
    Softmax {
        x: Range<usize>,
        y: Range<usize>,
        c: usize,
    },
    /// One input of a channel Concat into its columns of the output.
    Concat {
        x: Range<usize>,
        y: Range<usize>,
        /// (c_in, c_out, offset)
        cols: (usize, usize, usize),
    },
}

/// A binary op's second operand: an activation or a constant (bf16).
#[derive(Debug, Clone)]
pub enum Operand {
    Arena(Range<usize>),
    Const(usize),
}

impl Step {
    /// What the step computes, e.g. "conv 3x3/2 g32 256->256 @28x28 (128x8_v8)".
    pub fn describe(&self) -> String {
        match self {
            // The mma.sync rule's kernel: a step alone knows no path (`GpuPlan::describe_step`).
            Step::Conv { p, .. } => conv_label(p, crate::teacher::gpu::conv::variant(p)),
            Step::Pool { p, .. } => format!(
                "{} pool {}x{}/{} {}ch @{}x{}",
                if p.kind == 0 { "max" } else { "avg" },
                p.kh,
                p.kw,
                p.sh,
                p.c,
                p.oh,
                p.ow
            ),
            Step::GlobalAvg { dims, .. } => format!("global avg pool {}ch over {}", dims.2, dims.1),
            Step::Unary { op, x, .. } => format!("{op:?} x{}", x.len()),
            Step::Binary { op, bc, a, .. } => format!("{op:?} {bc:?} x{}", a.len()),
            Step::Affine { x, c, .. } => format!("affine {c}ch x{}", x.len()),
            Step::LayerNorm { x, c, .. } => format!("layernorm {c}ch x{}", x.len() / c),
            Step::Concat { x, cols, .. } => format!("concat {}->{} x{}", cols.0, cols.1, x.len()),
            Step::Copy { copy, .. } => format!("copy {:?}", copy.shape),
            Step::Softmax { x, c, .. } => format!("softmax {c} x{}", x.len() / c),
            Step::Attention { dims, bias, .. } => format!(
                "attention {}x{} heads, {}x{} tokens, d {}{}",
                dims.batch,
                dims.heads,
                dims.n_q,
                dims.n_kv,
                dims.d,
                if bias.is_some() { " + bias" } else { "" }
            ),
        }
    }

    /// Floating-point operations (2 per multiply-add; convolutions,
    /// linear layers and attention's two products).
    pub fn flops(&self) -> f64 {
        match self {
            Step::Conv { p, .. } => 2.0 * p.m as f64 * p.cout as f64 * p.k as f64,
            Step::Attention { dims: d, .. } => {
                4.0 * (d.batch * d.heads * d.n_q * d.n_kv * d.d) as f64
            }
            _ => 0.0,
        }
    }

    /// Bytes the step must move at the least: its input and output once,
    /// and a convolution's weights.
    pub fn min_bytes(&self, weights: &[Weights]) -> f64 {
        let r = |x: &Range<usize>| 2.0 * x.len() as f64;
        match self {
            Step::Conv {
                x,
                y,
                residual,
                weights: w,
                ..
            } => {
                r(x) + r(y)
                    + residual.as_ref().map_or(0.0, r)
                    + 2.0 * weights[*w].packed.len() as f64
            }
            Step::Pool { x, y, .. }
            | Step::GlobalAvg { x, y, .. }
            | Step::Unary { x, y, .. }
            | Step::Affine { x, y, .. }
            | Step::LayerNorm { x, y, .. }
            | Step::Softmax { x, y, .. } => r(x) + r(y),
            Step::Binary { a, y, .. } => 2.0 * r(a) + r(y),
            Step::Concat { x, .. } => 2.0 * r(x),
            Step::Copy { copy, .. } => 4.0 * copy.numel() as f64,
            Step::Attention { dims: d, .. } => {
                2.0 * (d.batch * d.heads * (2 * d.n_q + 2 * d.n_kv) * d.d) as f64
            }
        }
    }
}

/// A layer's packed weight and its bias (zeros when the layer has none).
#[derive(Debug, Clone)]
pub struct Weights {
    pub packed: Vec<u16>,
    pub bias: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct GpuPlan {
    pub batch: usize,
    pub steps: Vec<Step>,
    pub weights: Vec<Weights>,
    /// Constant operands of binary steps, in bf16.
    pub bf16_consts: Vec<Vec<u16>>,
    /// Per-channel scales and shifts of affine steps.
    pub f32_consts: Vec<Vec<f32>>,
    /// bf16 elements.
    pub arena_len: usize,
    pub input: Range<usize>,
    /// [N, C, H, W] of the model's input (stored NHWC).
    pub input_nchw: [usize; 4],
    /// Channels the input is stored with: C, or C rounded up to 8 with the
    /// extra channels zero (see `stored_input_channels`).
    pub input_channels: usize,
    /// The steps that read the padded input (its convolutions), none when
    /// the input is stored as it is.
    pub padded_stems: Vec<usize>,
    pub output: Range<usize>,
    pub classes: usize,
    /// fp32 elements of the split-K workspace: the most any split layer
    /// needs (`conv::workspace_len`), one buffer beside the arena that the
    /// split layers take in turn (steps run in order on one stream).
    pub workspace_len: usize,
    /// The kernels the convolutions take (`conv::ConvPath`): mma.sync as
    /// lowered; whoever builds a model for a device sets the device's
    /// (`ConvPath::for_device`) before kernels are chosen or tuned.
    pub conv_path: crate::teacher::gpu::conv::ConvPath,
}

impl GpuPlan {
    /// Device bytes `GpuModel::new` allocates for this plan: (weights and
    /// constants, which do not grow with the batch; the arena and the
    /// split-K workspace, which do).
    pub fn device_bytes(&self) -> (usize, usize) {
        let fixed = self
            .weights
            .iter()
            .map(|w| w.packed.len() * 2 + w.bias.len() * 4)
            .sum::<usize>()
            + self.bf16_consts.iter().map(|c| c.len() * 2).sum::<usize>()
            + self.f32_consts.iter().map(|c| c.len() * 4).sum::<usize>();
        (
            fixed,
            self.arena_len.max(1) * 2 + self.workspace_len.max(1) * 4,
        )
    }
}

/// A convolution step's table label with the kernel `v` it runs.
pub fn conv_label(p: &ConvParams, v: crate::teacher::gpu::conv::Variant) -> String {
    format!(
        "conv {}x{}/{}{} {}->{} @{}x{} ({})",
        p.kh,
        p.kw,
        p.sh,
        if p.groups > 1 {
            format!(" g{}", p.groups)
        } else {
            String::new()
        },
        p.cin,
        p.cout,
        p.oh,
        p.ow,
        v.name()
            .trim_start_matches("conv_bf16_")
            .trim_start_matches("conv_")
    )
}

/// NCHW float32 → NHWC bf16 bits, the GPU input layout: `x` of shape
/// `[n, c, h, w]` with
/// `channels` (>= c) channels a pixel, the extra ones zero: a plan's input
/// is `to_nhwc_bf16(x, plan.input_nchw, plan.input_channels)`.
pub fn to_nhwc_bf16(x: &[f32], [n, c, h, w]: [usize; 4], channels: usize) -> Vec<u16> {
    assert!(channels >= c && x.len() == n * c * h * w);
    let mut out = vec![0u16; n * h * w * channels];
    for img in 0..n {
        for ch in 0..c {
            for px in 0..h * w {
                out[(img * h * w + px) * channels + ch] = bf16(x[(img * c + ch) * h * w + px]);
            }
        }
    }
    out
}

impl GpuPlan {
    /// Multiply-adds of one forward (convolutions and FC layers).
    pub fn macs(&self) -> u64 {
        (0..self.steps.len())
            .map(|i| self.step_flops(i))
            .sum::<f64>() as u64
            / 2
    }

    /// `Step::flops` of step `i`, counting only the model's own input
    /// channels in a stem that reads the padded input.
    pub fn step_flops(&self, i: usize) -> f64 {
        let step = &self.steps[i];
        match step {
            Step::Conv { p, .. } if self.padded_stems.contains(&i) => {
                step.flops() * self.input_nchw[1] as f64 / p.cin as f64
            }
            _ => step.flops(),
        }
    }

    /// The plan through the kernels' CPU twins: input NHWC bf16 → logits.
    pub fn run_cpu(&self, input: &[u16]) -> Vec<f32> {
        let mut arena = vec![0u16; self.arena_len];
        arena[self.input.clone()].copy_from_slice(input);
        for s in &self.steps {
            match s {
                Step::Conv {
                    p,
                    weights,
                    x,
                    residual,
                    y,
                } => {
                    let w = &self.weights[*weights];
                    let (out, _) = crate::teacher::gpu::conv::cpu::conv2d(
                        p,
                        &arena[x.clone()],
                        &w.packed,
                        &w.bias,
                        residual.as_ref().map(|r| &arena[r.clone()]),
                    );
                    let out: Vec<u16> = out.into_iter().map(bf16).collect();
                    arena[y.clone()].copy_from_slice(&out);
                }
                Step::Pool { p, x, y } => {
                    let out = crate::teacher::gpu::pool::cpu::pool2d(p, &arena[x.clone()]);
                    arena[y.clone()].copy_from_slice(&out);
                }
                Step::GlobalAvg { dims, x, y } => {
                    let out =
                        crate::teacher::gpu::pool::cpu::global_avgpool(&arena[x.clone()], *dims);
                    arena[y.clone()].copy_from_slice(&out);
                }
                Step::Unary { op, x, y } => {
                    let out = crate::teacher::gpu::eltwise::cpu::unary(*op, &arena[x.clone()]);
                    arena[y.clone()].copy_from_slice(&out);
                }
                Step::Binary { op, bc, a, b, y, c } => {
                    let bv = match b {
                        Operand::Arena(r) => arena[r.clone()].to_vec(),
                        Operand::Const(k) => self.bf16_consts[*k].clone(),
                    };
                    let out = crate::teacher::gpu::eltwise::cpu::binary(
                        *op,
                        *bc,
                        &arena[a.clone()],
                        &bv,
                        *c,
                    );
                    arena[y.clone()].copy_from_slice(&out);
                }
                Step::Affine { consts, x, y, c } => {
                    let (k, sh) = (&self.f32_consts[consts.0], &self.f32_consts[consts.1]);
                    let out =
                        crate::teacher::gpu::eltwise::cpu::affine(&arena[x.clone()], k, sh, *c);
                    arena[y.clone()].copy_from_slice(&out);
                }
                Step::LayerNorm {
                    consts,
                    x,
                    y,
                    c,
                    eps,
                } => {
                    let (gamma, beta) = (&self.f32_consts[consts.0], &self.f32_consts[consts.1]);
                    let out = crate::teacher::gpu::norm::cpu::layer_norm_bf16(
                        &arena[x.clone()],
                        gamma,
                        beta,
                        *c,
                        *eps,
                    );
                    arena[y.clone()].copy_from_slice(&out);
                }
                Step::Concat { x, y, cols } => {
                    let xv = arena[x.clone()].to_vec();
                    crate::teacher::gpu::eltwise::cpu::concat_channels(
                        &xv,
                        &mut arena[y.clone()],
                        *cols,
                    );
                }
                Step::Softmax { x, y, c } => {
                    let out: Vec<u16> =
                        crate::teacher::gpu::norm::cpu::softmax(&arena[x.clone()], *c)
                            .into_iter()
                            .map(bf16)
                            .collect();
                    arena[y.clone()].copy_from_slice(&out);
                }
                Step::Copy { x, y, copy } => {
                    let xv = match x {
                        Operand::Arena(r) => arena[r.clone()].to_vec(),
                        Operand::Const(k) => self.bf16_consts[*k].clone(),
                    };
                    crate::teacher::gpu::layout::cpu::copy_strided(
                        &xv,
                        &mut arena[y.clone()],
                        copy,
                    );
                }
                Step::Attention {
                    q,
                    k,
                    v,
                    bias,
                    y,
                    strides,
                    dims,
                } => {
                    let [qv, kv, vv] = [q, k, v].map(|r| arena[r.clone()].to_vec());
                    crate::teacher::gpu::attention::cpu::attention_into(
                        [&qv, &kv, &vv],
                        bias.map(|b| &self.f32_consts[b][..]),
                        *strides,
                        *dims,
                        &mut arena[y.clone()],
                    );
                }
            }
        }
        arena[self.output.clone()]
            .iter()
            .map(|&b| f32_of(b))
            .collect()
    }
}
