//! A convolutional teacher's optimised IR lowered for the GPU: each node
//! becomes a kernel step over regions of one bf16 arena (NHWC activations),
//! weights are packed once, and memory is planned from the values'
//! lifetimes (`teacher::arena`). Covered: Conv with its fused epilogue,
//! Gemm / MatMul with a constant weight (as 1x1 convolutions over the rows
//! of the last axis, a GELU folded in), max and average pooling, global
//! average pooling, LayerNorm over the last axis, the Transposes that move
//! channels last and back (aliases: `Layout`), and the reshapes that keep
//! NHWC and NCHW orders equal (flattening a 1x1 map): the CNN families and
//! ConvNeXt. Anything else is refused with the op's name; `run_cpu` runs the
//! plan through the kernels' CPU twins.

use super::conv::{bf16, conv_params, f32_of, pack_weights};
use super::eltwise::{BinaryOp, Broadcast, UnaryOp};
use super::pool::pool_params;
use crate::cuda::kernels::conv::ConvParams;
use crate::cuda::kernels::pool::PoolParams;
use crate::teacher::arena::{Lifetime, place};
use crate::teacher::cpu::plan::is_alias;
use crate::teacher::graph::{
    Activation, AutoPad, Binary, ConvAttrs, Graph, Op, ReduceKind, Unary, ValueId,
};
use crate::teacher::tensor::{Tensor, numel};

/// Arena offsets are multiples of this many bf16 (256 bytes: 16-byte
/// vector loads and cp.async need 16).
const ALIGN: usize = 128;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    None,
    Own,
    Alias(ValueId),
}

/// How a 4-D value's logical axes sit in memory. Every 4-D activation is
/// stored channels-last: a value of NCHW shape (what convolutions read
/// and write) as NHWC, and a value of NHWC shape (a Transpose (0, 2, 3, 1)
/// of one: ConvNeXt's LayerNorm and MLP) row-major, which is the same
/// bytes, so both Transposes are aliases. Other ranks are row-major.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Layout {
    Nchw,
    Nhwc,
}

fn shape4(s: &[usize]) -> Option<[usize; 4]> {
    s.try_into().ok()
}

/// Lowers `g` (prepared for one batch size). Errors name the node and op.
pub fn lower(g: &Graph) -> Result<GpuPlan, String> {
    let shape = |v: ValueId| g.values[v].shape.clone().unwrap_or_default();
    let [input] = g.inputs[..] else {
        return Err("the GPU executor takes one image input".into());
    };
    let input_nchw = shape4(&shape(input))
        .ok_or_else(|| format!("the input is {:?}, not [N, C, H, W]", shape(input)))?;
    let input_channels = stored_input_channels(g, input, input_nchw[1]);
    let mut padded_stems = Vec::new();
    let nv = g.values.len();
    let mut slot = vec![Slot::None; nv];
    slot[input] = Slot::Own;
    let root = |slot: &[Slot], v: ValueId| match slot[v] {
        Slot::Alias(r) => r,
        _ => v,
    };
    let mut def = vec![0usize; nv];
    let mut last = vec![0usize; nv];
    // (node, step template with value ids; regions filled after placement)
    enum Pending {
        Conv(ConvParams, usize, ValueId, Option<ValueId>, ValueId),
        Pool(PoolParams, ValueId, ValueId),
        GlobalAvg((usize, usize, usize), ValueId, ValueId),
        Unary(UnaryOp, ValueId, ValueId),
        Binary(
            BinaryOp,
            Broadcast,
            ValueId,
            Result<ValueId, usize>,
            ValueId,
            usize,
        ),
        Affine((usize, usize), ValueId, ValueId, usize),
        LayerNorm((usize, usize), ValueId, ValueId, usize, f32),
        Concat(ValueId, ValueId, (usize, usize, usize)),
    }
    /// The pending convolution (or linear layer) computing `x` when `x` is
    /// its only reader and it has no activation yet: where an activation
    /// of `x` folds (the conv writes act(...) where x was).
    fn unactivated_conv<'a>(
        pending: &'a mut [Pending],
        conv_of: &std::collections::HashMap<ValueId, usize>,
        readers: &[usize],
        x: ValueId,
    ) -> Option<&'a mut ConvParams> {
        if readers[x] != 1 {
            return None;
        }
        match pending.get_mut(*conv_of.get(&x)?)? {
            Pending::Conv(p, ..) if p.act == 0 => Some(p),
            _ => None,
        }
    }
    let mut layout = vec![Layout::Nchw; nv];
    // Whether v's last axis is stored innermost (rows of it contiguous):
    // what LayerNorm and a matrix product over the last axis need.
    let last_inner = |layout: &[Layout], v: ValueId| {
        let s = shape(v);
        s.len() != 4 || layout[v] == Layout::Nhwc || s[2..] == [1, 1]
    };
    let mut pending = Vec::new();
    // Readers of each value, and the pending conv that computes it: an
    // activation that is a conv output's only reader folds into its epilogue.
    let mut readers = vec![0usize; nv];
    for n in &g.nodes {
        n.inputs.iter().flatten().for_each(|&v| readers[v] += 1);
    }
    g.outputs.iter().for_each(|&v| readers[v] += 1);
    let mut conv_of: std::collections::HashMap<ValueId, usize> = Default::default();
    let mut weights = Vec::new();
    let mut bf16_consts: Vec<Vec<u16>> = Vec::new();
    let mut f32_consts: Vec<Vec<f32>> = Vec::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let what = || format!("node {} ({})", node.name, node.op.name());
        let act_in = |k: usize| -> Result<ValueId, String> {
            let v = node
                .inputs
                .get(k)
                .copied()
                .flatten()
                .ok_or_else(|| format!("{}: input {k} missing", what()))?;
            if slot[v] == Slot::None {
                return Err(format!(
                    "{}: input {k} is not an activation the GPU computed",
                    what()
                ));
            }
            Ok(v)
        };
        // An input read as NCHW (stored NHWC): convolutions, pooling,
        // channel ops.
        let nchw_in = |layout: &[Layout], k: usize| -> Result<ValueId, String> {
            let v = act_in(k)?;
            if layout[v] == Layout::Nhwc {
                return Err(format!(
                    "{}: input {k} is channels-last ({:?} after a Transpose); this op reads NCHW",
                    what(),
                    shape(v)
                ));
            }
            Ok(v)
        };
        let constant = |k: usize| -> Option<&Tensor> {
            node.inputs
                .get(k)
                .copied()
                .flatten()
                .and_then(|v| g.values[v].constant.as_deref())
        };
        for &v in node.inputs.iter().flatten() {
            let r = root(&slot, v);
            last[r] = last[r].max(i);
        }
        let out = node.outputs[0];
        def[out] = i;
        last[out] = last[out].max(i);
        // Elementwise ops and LayerNorm keep their input's layout.
        if matches!(
            node.op,
            Op::Unary(_)
                | Op::Clip
                | Op::HardSigmoid { .. }
                | Op::Gelu { .. }
                | Op::LayerNorm { .. }
        ) && let Some(x) = node.inputs.first().copied().flatten()
        {
            layout[out] = layout[x];
        }
        match &node.op {
            Op::Conv(a) => {
                let x = nchw_in(&layout, 0)?;
                let w = constant(1)
                    .ok_or_else(|| format!("{}: the weight is not a constant", what()))?;
                let residual = node
                    .inputs
                    .get(3)
                    .copied()
                    .flatten()
                    .map(|_| nchw_in(&layout, 3))
                    .transpose()?;
                let mut xs =
                    shape4(&shape(x)).ok_or_else(|| format!("{}: input not 4-D", what()))?;
                let mut ws =
                    shape4(&w.shape).ok_or_else(|| format!("{}: weight not 4-D", what()))?;
                let mut wv = w.to_f32_vec();
                if x == input && input_channels != xs[1] {
                    // The stem reads the padded input: zero weights for the
                    // zero channels, so the sums are the model's own.
                    wv = pad_input_channels(&wv, ws, input_channels);
                    (xs[1], ws[1]) = (input_channels, input_channels);
                    padded_stems.push(pending.len()); // its step's index
                }
                let p = conv_params(a, xs, ws, residual.is_some())
                    .map_err(|e| format!("{}: {e}", what()))?;
                let bias = match (node.inputs.get(2).copied().flatten(), constant(2)) {
                    (None, _) => vec![0.0; ws[0]],
                    (Some(_), Some(b)) => b.to_f32_vec(),
                    (Some(_), None) => {
                        return Err(format!("{}: the bias is not a constant", what()));
                    }
                };
                weights.push(Weights {
                    packed: pack_weights(&wv, &p),
                    bias,
                });
                slot[out] = Slot::Own;
                conv_of.insert(out, pending.len());
                pending.push(Pending::Conv(p, weights.len() - 1, x, residual, out));
            }
            op @ (Op::Gemm { .. } | Op::MatMul) => {
                let trans_b = match *op {
                    Op::Gemm {
                        alpha,
                        beta,
                        trans_a,
                        trans_b,
                    } => {
                        if alpha != 1.0 || beta != 1.0 || trans_a {
                            return Err(format!(
                                "{}: only alpha = beta = 1 without transA is on the GPU",
                                what()
                            ));
                        }
                        trans_b
                    }
                    _ => false, // MatMul: B is [K, out]
                };
                let x = act_in(0)?;
                if !last_inner(&layout, x) {
                    return Err(format!(
                        "{}: a product over the last axis of an NCHW {:?} value is not on the GPU yet",
                        what(),
                        shape(x)
                    ));
                }
                let b = constant(1).ok_or_else(|| format!("{}: B is not a constant", what()))?;
                let (p, w) = linear(g, x, b, trans_b, node.inputs.get(2).copied().flatten())
                    .map_err(|e| format!("{}: {e}", what()))?;
                weights.push(w);
                slot[out] = Slot::Own;
                layout[out] = layout[x];
                conv_of.insert(out, pending.len()); // its activation may fold
                pending.push(Pending::Conv(p, weights.len() - 1, x, None, out));
            }
            Op::Pool(a) => {
                let x = nchw_in(&layout, 0)?;
                let xs = shape4(&shape(x)).ok_or_else(|| format!("{}: input not 4-D", what()))?;
                let p = pool_params(a, xs).map_err(|e| format!("{}: {e}", what()))?;
                slot[out] = Slot::Own;
                pending.push(Pending::Pool(p, x, out));
            }
            Op::GlobalAveragePool => {
                let x = nchw_in(&layout, 0)?;
                let [n, c, h, w] =
                    shape4(&shape(x)).ok_or_else(|| format!("{}: input not 4-D", what()))?;
                slot[out] = Slot::Own;
                pending.push(Pending::GlobalAvg((n, h * w, c), x, out));
            }
            // The mean over H and W is global average pooling (the dynamo
            // exporter's form of adaptive_avg_pool2d(1)); the output is
            // [N, C] or [N, C, 1, 1], the same NHWC bytes either way.
            Op::Reduce {
                kind: ReduceKind::Mean,
                axes,
                ..
            } if {
                let given = axes
                    .clone()
                    .or_else(|| constant(1).map(|t| t.to_i64_vec()))
                    .unwrap_or_default();
                let mut a: Vec<i64> = given
                    .iter()
                    .map(|&d| if d < 0 { d + 4 } else { d })
                    .collect();
                a.sort_unstable();
                node.inputs
                    .first()
                    .copied()
                    .flatten()
                    .is_some_and(|x| shape(x).len() == 4)
                    && a == [2, 3]
            } =>
            {
                let x = nchw_in(&layout, 0)?;
                let [n, c, h, w] =
                    shape4(&shape(x)).ok_or_else(|| format!("{}: input not 4-D", what()))?;
                slot[out] = Slot::Own;
                pending.push(Pending::GlobalAvg((n, h * w, c), x, out));
            }
            Op::Unary(u) => {
                let op = match u {
                    Unary::Relu => UnaryOp::Relu,
                    Unary::Sigmoid => UnaryOp::Sigmoid,
                    Unary::Silu => UnaryOp::Silu,
                    Unary::HardSwish => UnaryOp::HardSwish,
                    Unary::Tanh => UnaryOp::Tanh,
                    Unary::Identity => {
                        slot[out] = Slot::Alias(root(&slot, act_in(0)?));
                        continue;
                    }
                    other => {
                        return Err(format!(
                            "{}: {other:?} is not on the GPU yet. Fix: run this teacher with --device cpu",
                            what()
                        ));
                    }
                };
                let x = act_in(0)?;
                let code = match op {
                    UnaryOp::Relu => 1,
                    UnaryOp::Silu => 2,
                    UnaryOp::HardSwish => 3,
                    UnaryOp::Sigmoid => 4,
                    _ => 0,
                };
                if code != 0
                    && let Some(p) = unactivated_conv(&mut pending, &conv_of, &readers, x)
                {
                    p.act = code;
                    slot[out] = Slot::Alias(root(&slot, x));
                    continue;
                }
                slot[out] = Slot::Own;
                pending.push(Pending::Unary(op, x, out));
            }
            Op::Clip => {
                let x = act_in(0)?;
                let bound = |k: usize, dflt: f32| -> Result<f32, String> {
                    match node.inputs.get(k).copied().flatten() {
                        None => Ok(dflt),
                        Some(_) => constant(k)
                            .and_then(|t| t.to_f32_vec().first().copied())
                            .ok_or_else(|| format!("{}: a Clip bound is not a constant", what())),
                    }
                };
                let op = UnaryOp::Clip(bound(1, f32::NEG_INFINITY)?, bound(2, f32::INFINITY)?);
                slot[out] = Slot::Own;
                pending.push(Pending::Unary(op, x, out));
            }
            Op::HardSigmoid { alpha, beta } => {
                let x = act_in(0)?;
                slot[out] = Slot::Own;
                pending.push(Pending::Unary(UnaryOp::HardSigmoid(*alpha, *beta), x, out));
            }
            Op::Gelu { tanh } => {
                let x = act_in(0)?;
                // Folded into the convolution (or FC) that computes x when
                // it is x's only reader: kernels/common/gelu.cuh, the
                // same operations as the standalone op.
                if let Some(p) = unactivated_conv(&mut pending, &conv_of, &readers, x)
                    && super::conv::gelu_fits(p)
                {
                    p.act = if *tanh { 6 } else { 5 };
                    slot[out] = Slot::Alias(root(&slot, x));
                    continue;
                }
                let op = if *tanh {
                    UnaryOp::GeluTanh
                } else {
                    UnaryOp::GeluErf
                };
                slot[out] = Slot::Own;
                pending.push(Pending::Unary(op, x, out));
            }
            Op::Binary(b @ (Binary::Add | Binary::Sub | Binary::Mul | Binary::Div)) => {
                let op = match b {
                    Binary::Add => BinaryOp::Add,
                    Binary::Sub => BinaryOp::Sub,
                    Binary::Mul => BinaryOp::Mul,
                    _ => BinaryOp::Div,
                };
                let os = shape(out);
                let ids = [0, 1].map(|k| node.inputs.get(k).copied().flatten());
                let [Some(a0), Some(b0)] = ids else {
                    return Err(format!("{}: an operand is missing", what()));
                };
                // The full-shape activation goes first (commutative ops may swap).
                let full = |v: ValueId| slot[v] != Slot::None && shape(v) == os;
                let (a, b) = if full(a0) {
                    (a0, b0)
                } else if full(b0) && matches!(op, BinaryOp::Add | BinaryOp::Mul) {
                    (b0, a0)
                } else {
                    return Err(format!(
                        "{}: neither operand has the output shape {os:?} on the GPU",
                        what()
                    ));
                };
                // The channels (stored innermost) are axis 1 of an NCHW
                // value, the last axis of a channels-last one.
                let channels_last = layout[a] == Layout::Nhwc;
                let c_axis = if channels_last { os.len() - 1 } else { 1 };
                let c = if os.len() >= 2 { os[c_axis] } else { 1 };
                let hw: usize = os.iter().skip(2).product();
                // b right-aligned against the output, as ONNX broadcasts.
                let bs = shape(b);
                if bs.len() > os.len() {
                    return Err(format!(
                        "{}: operand {bs:?} has more axes than {os:?}",
                        what()
                    ));
                }
                if slot[b] != Slot::None && bs == os && layout[b] != layout[a] {
                    return Err(format!(
                        "{}: operands of {os:?} stored in different layouts",
                        what()
                    ));
                }
                let mut padded = vec![1; os.len() - bs.len()];
                padded.extend_from_slice(&bs);
                let ones_after = |k: usize| padded.iter().skip(k).all(|&d| d == 1);
                let only_channels = padded
                    .iter()
                    .enumerate()
                    .all(|(k, &d)| d == 1 || (k == c_axis && d == c));
                let bc = if padded == os {
                    Broadcast::Same
                } else if numel(&bs) == 1 {
                    Broadcast::Scalar
                } else if os.len() >= 2 && only_channels {
                    Broadcast::PerChannel
                } else if !channels_last
                    && os.len() > 2
                    && padded[0] == os[0]
                    && padded[1] == c
                    && ones_after(2)
                {
                    Broadcast::PerImageChannel { hw }
                } else {
                    return Err(format!(
                        "{}: broadcasting {bs:?} over {os:?} is not on the GPU yet",
                        what()
                    ));
                };
                // Right after a convolution or linear layer that has no
                // activation or residual yet and whose output only this op
                // reads (through channel Transposes at most): a per-channel
                // constant Mul (ConvNeXt's layer scale) scales its weights
                // and bias, and an Add of an activation computed before it
                // becomes its residual. Either way the op is gone.
                let sole_conv = |v: ValueId| -> Option<usize> {
                    let r = root(&slot, v);
                    let &pi = conv_of.get(&r)?;
                    let Pending::Conv(p, ..) = &pending[pi] else {
                        return None;
                    };
                    (readers[v] == 1 && readers[r] == 1 && p.act == 0 && p.has_residual == 0)
                        .then_some(pi)
                };
                let gamma = g.values[b]
                    .constant
                    .as_deref()
                    .filter(|_| op == BinaryOp::Mul && bc == Broadcast::PerChannel)
                    .map(|t| t.to_f32_vec());
                if let (Some(gamma), Some(pi)) = (&gamma, sole_conv(a))
                    && let Pending::Conv(p, w, ..) = &pending[pi]
                    && gamma.len() == p.cout as usize
                {
                    let (k_pad, w) = (p.k_pad as usize, &mut weights[*w]);
                    for (o, &s) in gamma.iter().enumerate() {
                        for v in &mut w.packed[o * k_pad..(o + 1) * k_pad] {
                            *v = bf16(f32_of(*v) * s);
                        }
                        w.bias[o] *= s;
                    }
                    slot[out] = Slot::Alias(root(&slot, a));
                    layout[out] = layout[a];
                    continue;
                }
                if op == BinaryOp::Add && bc == Broadcast::Same && slot[b] != Slot::None {
                    let fold = [(a, b), (b, a)].into_iter().find_map(|(y, r)| {
                        let pi = sole_conv(y)?;
                        (def[root(&slot, r)] < def[root(&slot, y)]).then_some((y, r, pi))
                    });
                    if let Some((y, r, pi)) = fold
                        && let Pending::Conv(p, _, _, residual, _) = &mut pending[pi]
                    {
                        p.has_residual = 1;
                        *residual = Some(r);
                        slot[out] = Slot::Alias(root(&slot, y));
                        layout[out] = layout[y];
                        continue;
                    }
                }
                let operand = if slot[b] != Slot::None {
                    Ok(b)
                } else if let Some(t) = g.values[b].constant.as_deref() {
                    bf16_consts.push(t.to_f32_vec().into_iter().map(bf16).collect());
                    Err(bf16_consts.len() - 1)
                } else {
                    return Err(format!(
                        "{}: an operand is neither computed nor constant",
                        what()
                    ));
                };
                slot[out] = Slot::Own;
                layout[out] = layout[a];
                pending.push(Pending::Binary(op, bc, a, operand, out, c));
            }
            Op::BatchNorm { eps } => {
                let x = nchw_in(&layout, 0)?;
                let c = shape(x).get(1).copied().unwrap_or(1);
                let f = |k: usize| -> Result<Vec<f32>, String> {
                    constant(k)
                        .map(|t| t.to_f32_vec())
                        .filter(|v| v.len() == c)
                        .ok_or_else(|| {
                            format!("{}: BatchNorm input {k} is not a constant of {c}", what())
                        })
                };
                let (scale, bias, mean, var) = (f(1)?, f(2)?, f(3)?, f(4)?);
                // As the CPU executor: k = scale / sqrt(var + eps), b = bias - mean k.
                let k: Vec<f32> = (0..c).map(|i| scale[i] / (var[i] + eps).sqrt()).collect();
                let sh: Vec<f32> = (0..c).map(|i| bias[i] - mean[i] * k[i]).collect();
                f32_consts.push(k);
                f32_consts.push(sh);
                slot[out] = Slot::Own;
                let n = f32_consts.len();
                pending.push(Pending::Affine((n - 2, n - 1), x, out, c));
            }
            Op::Concat { axis } => {
                let os = shape(out);
                if *axis != 1 && *axis != -(os.len() as i64) + 1 {
                    return Err(format!(
                        "{}: only channel concatenation is on the GPU",
                        what()
                    ));
                }
                let xs = (0..node.inputs.len())
                    .map(|k| nchw_in(&layout, k))
                    .collect::<Result<Vec<_>, _>>()?;
                slot[out] = Slot::Own;
                let mut offset = 0;
                for x in xs {
                    let c_in = shape(x)[1];
                    pending.push(Pending::Concat(x, out, (c_in, os[1], offset)));
                    offset += c_in;
                }
            }
            // Channels moved last or back: the same bytes (`Layout`).
            Op::Transpose { perm } => {
                let x = act_in(0)?;
                let new = match (perm.as_deref(), layout[x], shape(x).len()) {
                    (Some([0, 2, 3, 1]), Layout::Nchw, 4) => Layout::Nhwc,
                    (Some([0, 3, 1, 2]), Layout::Nhwc, 4) => Layout::Nchw,
                    _ => {
                        return Err(format!(
                            "{}: Transpose {perm:?} of a {:?} value is not on the GPU yet (only channels to the last axis and back)",
                            what(),
                            shape(x)
                        ));
                    }
                };
                slot[out] = Slot::Alias(root(&slot, x));
                layout[out] = new;
            }
            Op::LayerNorm { axis, eps } => {
                let x = act_in(0)?;
                let xs = shape(x);
                let rank = xs.len() as i64;
                if !(*axis == -1 || *axis == rank - 1) || !last_inner(&layout, x) {
                    return Err(format!(
                        "{}: LayerNorm from axis {axis} of a {xs:?} value is not on the GPU yet (the last axis, stored innermost, only)",
                        what()
                    ));
                }
                let c = xs.last().copied().unwrap_or(1);
                let gamma = constant(1)
                    .map(|t| t.to_f32_vec())
                    .filter(|v| v.len() == c)
                    .ok_or_else(|| format!("{}: the scale is not a constant of {c}", what()))?;
                let beta = match (node.inputs.get(2).copied().flatten(), constant(2)) {
                    (None, _) => vec![0.0; c],
                    (Some(_), Some(t)) if t.len() == c => t.to_f32_vec(),
                    _ => return Err(format!("{}: the bias is not a constant of {c}", what())),
                };
                f32_consts.push(gamma);
                f32_consts.push(beta);
                let n = f32_consts.len();
                slot[out] = Slot::Own;
                pending.push(Pending::LayerNorm((n - 2, n - 1), x, out, c, *eps));
            }
            op if is_alias(op) => {
                let x = act_in(0)?;
                let s = shape(x);
                // NHWC and NCHW agree when everything after the channels is 1.
                if s.len() > 2 && s[2..].iter().any(|&d| d != 1) {
                    return Err(format!(
                        "{}: reshaping a {s:?} map (NHWC on the GPU) is not supported yet",
                        what()
                    ));
                }
                slot[out] = Slot::Alias(root(&slot, x));
            }
            other => {
                return Err(format!(
                    "{}: {} is not on the GPU yet (the GPU runs CNNs and ConvNeXt: Conv, Gemm/MatMul, pooling, LayerNorm, channels-last Transposes and flattening). Fix: run this teacher with --device cpu",
                    what(),
                    other.name()
                ));
            }
        }
    }
    let [output] = g.outputs[..] else {
        return Err("the GPU executor gives one logits output".into());
    };
    let os = shape(output);
    if slot[output] == Slot::None || os.len() < 2 || os[2..].iter().any(|&d| d != 1) {
        return Err(format!(
            "the output {os:?} is not [N, classes] computed on the GPU"
        ));
    }
    let out_root = root(&slot, output);
    last[out_root] = usize::MAX;
    // Aliases keep their root alive.
    for v in 0..nv {
        if let Slot::Alias(r) = slot[v] {
            last[r] = last[r].max(last[v]);
        }
    }
    let owners: Vec<ValueId> = (0..nv).filter(|&v| slot[v] == Slot::Own).collect();
    let lifetimes: Vec<Lifetime> = owners
        .iter()
        .map(|&v| Lifetime {
            size: if v == input {
                numel(&shape(v)) / input_nchw[1] * input_channels
            } else {
                numel(&shape(v))
            },
            live: (def[v], last[v].min(g.nodes.len())),
        })
        .collect();
    let (ranges, arena_len) = place(&lifetimes, ALIGN);
    let mut region = vec![0..0; nv];
    for (&v, r) in owners.iter().zip(ranges) {
        region[v] = r;
    }
    let at = |v: ValueId| region[root(&slot, v)].clone();
    let steps: Vec<Step> = pending
        .into_iter()
        .map(|s| match s {
            Pending::Conv(p, w, x, r, y) => Step::Conv {
                p,
                weights: w,
                x: at(x),
                residual: r.map(at),
                y: at(y),
            },
            Pending::Pool(p, x, y) => Step::Pool {
                p,
                x: at(x),
                y: at(y),
            },
            Pending::GlobalAvg(dims, x, y) => Step::GlobalAvg {
                dims,
                x: at(x),
                y: at(y),
            },
            Pending::Unary(op, x, y) => Step::Unary {
                op,
                x: at(x),
                y: at(y),
            },
            Pending::Binary(op, bc, a, b, y, c) => Step::Binary {
                op,
                bc,
                a: at(a),
                b: match b {
                    Ok(v) => Operand::Arena(at(v)),
                    Err(k) => Operand::Const(k),
                },
                y: at(y),
                c,
            },
            Pending::Affine(consts, x, y, c) => Step::Affine {
                consts,
                x: at(x),
                y: at(y),
                c,
            },
            Pending::LayerNorm(consts, x, y, c, eps) => Step::LayerNorm {
                consts,
                x: at(x),
                y: at(y),
                c,
                eps,
            },
            Pending::Concat(x, y, cols) => Step::Concat {
                x: at(x),
                y: at(y),
                cols,
            },
        })
        .collect();
    let workspace_len = steps
        .iter()
        .map(|s| match s {
            Step::Conv { p, .. } => super::conv::workspace_len(p),
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    Ok(GpuPlan {
        workspace_len,
        batch: input_nchw[0],
        steps,
        weights,
        bf16_consts,
        f32_consts,
        arena_len,
        input: at(input),
        input_nchw,
        input_channels,
        padded_stems,
        output: at(output),
        classes: os[1],
    })
}

/// A 2-D `x` [N, K] times a constant `b` ([K, out], or [out, K] with
/// `trans_b`) plus an optional constant bias, as a 1x1 convolution.
fn linear(
    g: &Graph,
    x: ValueId,
    b: &Tensor,
    trans_b: bool,
    bias: Option<ValueId>,
) -> Result<(ConvParams, Weights), String> {
    let xs = g.values[x].shape.clone().unwrap_or_default();
    // [N, ..., K]: N images of `rows` rows each (1 for an FC layer; tokens
    // or pixels for a transformer's or ConvNeXt's linear layers), as a 1x1
    // convolution over a rows x 1 map, so a layer's output is one pixel an
    // image only where it is one row (`conv::split_slices`).
    let (n, k) = match xs[..] {
        [n, .., k] if xs.len() >= 2 => (n, k),
        _ => return Err(format!("the input is {xs:?}, not [N, ..., K]")),
    };
    let rows: usize = xs[1..xs.len() - 1].iter().product();
    let [r, c] = b.shape[..] else {
        return Err(format!("the weight is {:?}, not 2-D", b.shape));
    };
    let bv = b.to_f32_vec();
    let (out, kk) = if trans_b { (r, c) } else { (c, r) };
    if kk != k {
        return Err(format!("input {xs:?} does not match weight {:?}", b.shape));
    }
    // [out][K], as a conv weight [out][K][1][1].
    let w: Vec<f32> = if trans_b {
        bv
    } else {
        (0..out * k).map(|i| bv[(i % k) * out + i / k]).collect()
    };
    let attrs = ConvAttrs {
        kernel: [1, 1],
        strides: [1, 1],
        pads: [0; 4],
        dilations: [1, 1],
        group: 1,
        auto_pad: AutoPad::Explicit,
        act: Activation::None,
    };
    let p = conv_params(&attrs, [n, k, rows, 1], [out, k, 1, 1], false)?;
    let bias = match bias.and_then(|v| g.values[v].constant.clone()) {
        Some(t) if t.len() == out => t.to_f32_vec(),
        Some(t) => return Err(format!("bias {:?} is not [{out}]", t.shape)),
        None if bias.is_some() => return Err("the bias is not a constant".into()),
        None => vec![0.0; out],
    };
    Ok((
        p,
        Weights {
            packed: pack_weights(&w, &p),
            bias,
        },
    ))
}

/// Channels an input of `c` channels is stored with. A stem convolution
/// gathers its im2col rows 8 channels (16 bytes) at a time only when its
/// input channels are a multiple of 8; an RGB stem would take the scalar
/// gather (two divides and a 2-byte load per element, 10-20% of a
/// ResNet-50 forward). So when every reader of the input is an ungrouped
/// convolution, the input is stored with `c` rounded up to 8, the writers
/// (`to_nhwc_bf16`, the augmentation's `finish_bf16_nhwc`) fill the extra
/// channels with zeros and the stem's weights are zero there: the same
/// products, 5 of every 8 of them zero.
fn stored_input_channels(g: &Graph, input: ValueId, c: usize) -> usize {
    let padded = c.next_multiple_of(8);
    let reads = |n: &crate::teacher::graph::Node| n.inputs.iter().flatten().any(|&v| v == input);
    let convs_only = g.nodes.iter().filter(|n| reads(n)).all(|n| {
        matches!(&n.op, Op::Conv(a) if a.group == 1)
            && n.inputs.iter().skip(1).flatten().all(|&v| v != input)
    });
    if padded != c && convs_only && !g.outputs.contains(&input) {
        padded
    } else {
        c
    }
}

/// An OIHW weight `[o, i, kh, kw]` with its input channels zero-extended to `ci`.
fn pad_input_channels(w: &[f32], [o, i, kh, kw]: [usize; 4], ci: usize) -> Vec<f32> {
    let taps = kh * kw;
    let mut out = vec![0.0; o * ci * taps];
    for oc in 0..o {
        let (from, to) = (oc * i * taps, oc * ci * taps);
        out[to..to + i * taps].copy_from_slice(&w[from..from + i * taps]);
    }
    out
}

mod plan;
pub use plan::*;

#[cfg(test)]
pub(crate) mod tests;
