//! Ops that compute: each becomes a kernel step (or folds into the
//! convolution before it) reading its inputs in a layout the kernel takes.

use super::movement::broadcast_strides;
use super::view::{dense_like, memory_order, nhwc, row_major};
use super::{Lowering, Pending, Src, Weights, linear, pad_input_channels, shape4};
use crate::teacher::gpu::attention::{AttnDims, Strides};
use crate::teacher::gpu::conv::{bf16, conv_params, f32_of, pack_weights};
use crate::teacher::gpu::eltwise::{BinaryOp, Broadcast, UnaryOp};
use crate::teacher::gpu::layout::{Strided, cpu::copy_strided};
use crate::teacher::gpu::pool::pool_params;
use crate::teacher::graph::{Binary, Node, Op, ReduceKind, Unary, ValueId};
use crate::teacher::tensor::{Tensor, numel};

impl Lowering<'_> {
    pub(super) fn compute(&mut self, node: &Node) -> Result<(), String> {
        let out = node.outputs[0];
        match &node.op {
            Op::Conv(a) => {
                let x = self.nhwc_in(node, 0)?;
                let w = self
                    .constant(node, 1)
                    .ok_or("the weight is not a constant")?;
                let residual = match node.inputs.get(3).copied().flatten() {
                    Some(_) => Some(self.nhwc_in(node, 3)?),
                    None => None,
                };
                let mut xs = shape4(&self.shapes[x]).ok_or("input not 4-D")?;
                let mut ws = shape4(&w.shape).ok_or("weight not 4-D")?;
                let mut wv = w.to_f32_vec();
                if x == self.input && self.input_channels != xs[1] {
                    // The stem reads the padded input: zero weights for the
                    // zero channels, so the sums are the model's own.
                    wv = pad_input_channels(&wv, ws, self.input_channels);
                    (xs[1], ws[1]) = (self.input_channels, self.input_channels);
                    self.padded_stems.push(self.pending.len()); // its step's index
                }
                let p = conv_params(a, xs, ws, residual.is_some())?;
                let bias = match (
                    node.inputs.get(2).copied().flatten(),
                    self.constant(node, 2),
                ) {
                    (None, _) => vec![0.0; ws[0]],
                    (Some(_), Some(b)) => b.to_f32_vec(),
                    (Some(_), None) => return Err("the bias is not a constant".into()),
                };
                self.weights.push(Weights {
                    packed: pack_weights(&wv, &p),
                    bias,
                });
                let os = shape4(&self.shapes[out]).ok_or("output not 4-D")?;
                self.own(out, nhwc(&os, os[1]));
                let (xv, rv, yv) = (self.span(x), residual.map(|r| self.span(r)), self.span(out));
                self.conv_of.insert(out, self.pending.len());
                let w = self.weights.len() - 1;
                self.pending.push(Pending::Conv(p, w, xv, rv, yv));
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
                            return Err("only alpha = beta = 1 without transA is on the GPU".into());
                        }
                        trans_b
                    }
                    _ => false, // MatMul: B is [K, out]
                };
                let x = self.rows_in(node, 0)?;
                let b = self.constant(node, 1).ok_or(
                    "B is not a constant (a product of two activations outside attention is not on the GPU yet)",
                )?;
                let xs = self.shapes[x].clone();
                let (p, w) = linear(
                    self.g,
                    &xs,
                    self.input_nchw[0],
                    b,
                    trans_b,
                    node.inputs.get(2).copied().flatten(),
                )?;
                self.weights.push(w);
                // The rows keep their order: strides scaled from K to out.
                let (k, n_out) = (p.cin as usize, p.cout as usize);
                let xst = self.strides(x);
                let r = xs.len();
                let strides = (0..r)
                    .map(|a| if a + 1 == r { 1 } else { xst[a] / k * n_out })
                    .collect();
                self.own(out, strides);
                let (xv, yv) = (self.span(x), self.span(out));
                self.conv_of.insert(out, self.pending.len()); // its activation may fold
                let w = self.weights.len() - 1;
                self.pending.push(Pending::Conv(p, w, xv, None, yv));
            }
            Op::Pool(a) => {
                let x = self.nhwc_in(node, 0)?;
                let xs = shape4(&self.shapes[x]).ok_or("input not 4-D")?;
                let p = pool_params(a, xs)?;
                let os = shape4(&self.shapes[out]).ok_or("output not 4-D")?;
                self.own(out, nhwc(&os, os[1]));
                let (xv, yv) = (self.span(x), self.span(out));
                self.pending.push(Pending::Pool(p, xv, yv));
            }
            Op::GlobalAveragePool => self.global_avg(node, 4)?,
            Op::Reduce {
                kind: ReduceKind::Mean,
                axes,
                ..
            } => {
                let given = axes
                    .clone()
                    .or_else(|| self.constant(node, 1).map(|t| t.to_i64_vec()))
                    .unwrap_or_default();
                let x = node
                    .inputs
                    .first()
                    .copied()
                    .flatten()
                    .ok_or("input 0 missing")?;
                let r = self.shapes[x].len() as i64;
                let mut a: Vec<i64> = given
                    .iter()
                    .map(|&d| if d < 0 { d + r } else { d })
                    .collect();
                a.sort_unstable();
                // The mean over H and W is global average pooling (the
                // dynamo exporter's adaptive_avg_pool2d(1)); over the
                // tokens of [N, T, C], a transformer's mean pooling.
                match (r, &a[..]) {
                    (4, [2, 3]) => self.global_avg(node, 4)?,
                    (3, [1]) => self.global_avg(node, 3)?,
                    _ => {
                        return Err(format!(
                            "ReduceMean over axes {given:?} of a rank-{r} value is not on the GPU yet"
                        ));
                    }
                }
            }
            Op::Unary(u) => {
                let op = match u {
                    Unary::Relu => UnaryOp::Relu,
                    Unary::Sigmoid => UnaryOp::Sigmoid,
                    Unary::Silu => UnaryOp::Silu,
                    Unary::HardSwish => UnaryOp::HardSwish,
                    Unary::Tanh => UnaryOp::Tanh,
                    other => {
                        return Err(format!(
                            "{other:?} is not on the GPU yet. Fix: run this teacher with --device cpu"
                        ));
                    }
                };
                let code = match op {
                    UnaryOp::Relu => 1,
                    UnaryOp::Silu => 2,
                    UnaryOp::HardSwish => 3,
                    UnaryOp::Sigmoid => 4,
                    _ => 0,
                };
                self.unary(node, op, code)?;
            }
            Op::Clip => {
                let bound = |k: usize, dflt: f32| -> Result<f32, String> {
                    match node.inputs.get(k).copied().flatten() {
                        None => Ok(dflt),
                        Some(_) => self
                            .constant(node, k)
                            .and_then(|t| t.to_f32_vec().first().copied())
                            .ok_or_else(|| "a Clip bound is not a constant".into()),
                    }
                };
                let op = UnaryOp::Clip(bound(1, f32::NEG_INFINITY)?, bound(2, f32::INFINITY)?);
                self.unary(node, op, 0)?;
            }
            Op::HardSigmoid { alpha, beta } => {
                self.unary(node, UnaryOp::HardSigmoid(*alpha, *beta), 0)?
            }
            Op::Gelu { tanh } => {
                // Folded into the convolution (or linear layer) computing x
                // when it is x's only reader: kernels/common/gelu.cuh, the
                // same operations as the standalone op.
                let op = if *tanh {
                    UnaryOp::GeluTanh
                } else {
                    UnaryOp::GeluErf
                };
                self.unary(node, op, if *tanh { 6 } else { 5 })?;
            }
            Op::Binary(b @ (Binary::Add | Binary::Sub | Binary::Mul | Binary::Div)) => {
                let op = match b {
                    Binary::Add => BinaryOp::Add,
                    Binary::Sub => BinaryOp::Sub,
                    Binary::Mul => BinaryOp::Mul,
                    _ => BinaryOp::Div,
                };
                self.binary(node, op)?;
            }
            Op::BatchNorm { eps } => {
                let x = self.nhwc_in(node, 0)?;
                let c = self.shapes[x].get(1).copied().unwrap_or(1);
                let f = |k: usize| -> Result<Vec<f32>, String> {
                    self.constant(node, k)
                        .map(|t| t.to_f32_vec())
                        .filter(|v| v.len() == c)
                        .ok_or_else(|| format!("BatchNorm input {k} is not a constant of {c}"))
                };
                let (scale, bias, mean, var) = (f(1)?, f(2)?, f(3)?, f(4)?);
                // As the CPU executor: k = scale / sqrt(var + eps), b = bias - mean k.
                let k: Vec<f32> = (0..c).map(|i| scale[i] / (var[i] + eps).sqrt()).collect();
                let sh: Vec<f32> = (0..c).map(|i| bias[i] - mean[i] * k[i]).collect();
                self.f32_consts.push(k);
                self.f32_consts.push(sh);
                let n = self.f32_consts.len();
                self.own(out, self.strides(x));
                let (xv, yv) = (self.span(x), self.span(out));
                self.pending
                    .push(Pending::Affine((n - 2, n - 1), xv, yv, c));
            }
            Op::LayerNorm { axis, eps } => {
                let x0 = self.act_in(node, 0)?;
                let rank = self.shapes[x0].len() as i64;
                if !(*axis == -1 || *axis == rank - 1) {
                    return Err(format!(
                        "LayerNorm from axis {axis} of a {:?} value is not on the GPU yet (the last axis only)",
                        self.shapes[x0]
                    ));
                }
                let x = self.rows_in(node, 0)?;
                let c = self.shapes[x].last().copied().unwrap_or(1);
                let gamma = self
                    .constant(node, 1)
                    .map(|t| t.to_f32_vec())
                    .filter(|v| v.len() == c)
                    .ok_or_else(|| format!("the scale is not a constant of {c}"))?;
                let beta = match (
                    node.inputs.get(2).copied().flatten(),
                    self.constant(node, 2),
                ) {
                    (None, _) => vec![0.0; c],
                    (Some(_), Some(t)) if t.len() == c => t.to_f32_vec(),
                    _ => return Err(format!("the bias is not a constant of {c}")),
                };
                self.f32_consts.push(gamma);
                self.f32_consts.push(beta);
                let n = self.f32_consts.len();
                self.own(out, self.strides(x));
                let (xv, yv) = (self.span(x), self.span(out));
                self.pending
                    .push(Pending::LayerNorm((n - 2, n - 1), xv, yv, c, *eps));
            }
            Op::Attention { scale } => self.attention(node, *scale)?,
            Op::Softmax { axis } => {
                let x0 = self.act_in(node, 0)?;
                let rank = self.shapes[x0].len() as i64;
                if !(*axis == -1 || *axis == rank - 1) {
                    return Err(format!(
                        "Softmax over axis {axis} of a rank-{rank} value is not on the GPU yet (the last axis only)"
                    ));
                }
                let x = self.rows_in(node, 0)?;
                let c = self.shapes[x].last().copied().unwrap_or(1);
                self.own(out, self.strides(x));
                let (xv, yv) = (self.span(x), self.span(out));
                self.pending.push(Pending::Softmax(xv, yv, c));
            }
            other => {
                return Err(format!(
                    "{} is not on the GPU yet (the GPU runs CNNs, ConvNeXt, ViT, DeiT and Swin). Fix: run this teacher with --device cpu",
                    other.name()
                ));
            }
        }
        Ok(())
    }

    /// Mean over the middle of a dense [N, M, C] (NCHW maps stored NHWC:
    /// M = H*W; tokens: M = T).
    fn global_avg(&mut self, node: &Node, rank: usize) -> Result<(), String> {
        let out = node.outputs[0];
        let (x, dims) = if rank == 4 {
            let x = self.nhwc_in(node, 0)?;
            let [n, c, h, w] = shape4(&self.shapes[x]).ok_or("input not 4-D")?;
            (x, (n, h * w, c))
        } else {
            let x0 = self.act_in(node, 0)?;
            let x = self.materialize(x0, row_major(&self.shapes[x0]))?;
            let &[n, t, c] = &self.shapes[x][..] else {
                return Err("input not 3-D".into());
            };
            (x, (n, t, c))
        };
        // [N, C] or [N, C, 1, 1] (or [N, 1, C]): the same bytes.
        let os = self.shapes[out].clone();
        let strides = match shape4(&os) {
            Some(s) => nhwc(&s, s[1]),
            None => row_major(&os),
        };
        self.own(out, strides);
        let (xv, yv) = (self.span(x), self.span(out));
        self.pending.push(Pending::GlobalAvg(dims, xv, yv));
        Ok(())
    }

    /// An elementwise op on x; `code` is its conv epilogue activation (0:
    /// none), under which it folds into the convolution computing x.
    fn unary(&mut self, node: &Node, op: UnaryOp, code: u32) -> Result<(), String> {
        let out = node.outputs[0];
        let x0 = self.act_in(node, 0)?;
        if code != 0
            && let Some(p) = self.unactivated_conv(x0)
            && (code < 5 || crate::teacher::gpu::conv::gelu_fits(p))
        {
            p.act = code;
            let v = self.view(x0)?.clone();
            self.alias(out, &v, v.offset, v.strides.clone());
            return Ok(());
        }
        let x = self.dense(x0)?;
        self.own(out, self.strides(x));
        let (xv, yv) = (self.span(x), self.span(out));
        self.pending.push(Pending::Unary(op, xv, yv));
        Ok(())
    }

    fn binary(&mut self, node: &Node, op: BinaryOp) -> Result<(), String> {
        let out = node.outputs[0];
        let os = self.shapes[out].clone();
        let ids = [0, 1].map(|k| node.inputs.get(k).copied().flatten());
        let [Some(a0), Some(b0)] = ids else {
            return Err("an operand is missing".into());
        };
        let computed = |l: &Self, v: ValueId| l.views[v].is_some();
        let full = |l: &Self, v: ValueId| computed(l, v) && l.shapes[v] == os;
        let commutes = matches!(op, BinaryOp::Add | BinaryOp::Mul);
        // The full-shape activation goes first (commutative ops may swap);
        // otherwise the first operand is broadcast into a temporary.
        let (a, b) = if full(self, a0) {
            (a0, b0)
        } else if full(self, b0) && commutes {
            (b0, a0)
        } else {
            let like = full(self, b0).then_some(b0);
            (self.expanded(node, 0, a0, &os, like)?, b0)
        };
        let a = self.dense(a)?;
        let astr = self.strides(a);
        if self.fold_binary(node, op, a, b, &astr)? {
            return Ok(());
        }
        // b right-aligned against the output, as ONNX broadcasts.
        let bs = self.shapes.get(b).cloned().unwrap_or_default();
        if bs.len() > os.len() {
            return Err(format!("operand {bs:?} has more axes than {os:?}"));
        }
        let lead = os.len() - bs.len();
        let varies = |ax: usize| ax >= lead && bs[ax - lead] != 1;
        let mem = memory_order(&os, &astr);
        let vary: Vec<bool> = mem.iter().map(|&ax| varies(ax)).collect();
        let inner = mem.last().map_or(1, |&ax| os[ax]);
        let suffix = vary.iter().position(|&v| v).unwrap_or(vary.len());
        let (bc, c, kept): (Broadcast, usize, Vec<usize>) = if vary.iter().all(|&v| !v) {
            (Broadcast::Scalar, inner, vec![])
        } else if numel(&bs) == numel(&os) {
            (Broadcast::Same, inner, mem.clone())
        } else if vary[suffix..].iter().all(|&v| v) {
            // b varies over the innermost axes only: it repeats every c
            // (one value a channel; a position embedding over tokens).
            let kept = mem[suffix..].to_vec();
            (
                Broadcast::PerChannel,
                kept.iter().map(|&ax| os[ax]).product(),
                kept,
            )
        } else if vary.len() >= 2
            && vary[0]
            && vary[vary.len() - 1]
            && vary[1..vary.len() - 1].iter().all(|&v| !v)
        {
            // One value per (image, channel): squeeze-excite's scale.
            let hw = mem[1..mem.len() - 1].iter().map(|&ax| os[ax]).product();
            (
                Broadcast::PerImageChannel { hw },
                inner,
                vec![mem[0], mem[mem.len() - 1]],
            )
        } else {
            let b2 = self.expanded(node, 1, b, &os, Some(a))?;
            return self.binary_step(op, Broadcast::Same, a, Ok(b2), out, inner, &astr);
        };
        // b's elements in the order the kernel indexes them: over the axes
        // it varies along, in a's memory order.
        let mut want = vec![0usize; bs.len()];
        let mut stride = 1;
        for &ax in kept.iter().rev() {
            want[ax - lead] = stride;
            stride *= os[ax];
        }
        let b_src = if computed(self, b) {
            Ok(self.materialize(b, want)?)
        } else {
            let t = self
                .g
                .values
                .get(b)
                .and_then(|v| v.constant.as_deref())
                .ok_or("an operand is neither computed nor constant")?;
            let vals: Vec<u16> = t.to_f32_vec().into_iter().map(bf16).collect();
            let mut laid = vec![0u16; vals.len()];
            copy_strided(
                &vals,
                &mut laid,
                &Strided {
                    shape: bs.clone(),
                    src: row_major(&bs),
                    dst: want,
                },
            );
            self.bf16_consts.push(laid);
            Err(self.bf16_consts.len() - 1)
        };
        self.binary_step(op, bc, a, b_src, out, c, &astr)
    }

    #[allow(clippy::too_many_arguments)]
    fn binary_step(
        &mut self,
        op: BinaryOp,
        bc: Broadcast,
        a: ValueId,
        b: Result<ValueId, usize>,
        out: ValueId,
        c: usize,
        astr: &[usize],
    ) -> Result<(), String> {
        self.own(out, astr.to_vec());
        let av = self.span(a);
        let bv = match b {
            Ok(v) => Src::Arena(self.span(v)),
            Err(k) => Src::Const(k),
        };
        let yv = self.span(out);
        self.pending.push(Pending::Binary(op, bc, av, bv, yv, c));
        Ok(())
    }

    /// Operand `k` (`v`) broadcast to `shape` in a temporary laid out as
    /// `like` (row-major without one).
    fn expanded(
        &mut self,
        node: &Node,
        k: usize,
        v: ValueId,
        shape: &[usize],
        like: Option<ValueId>,
    ) -> Result<ValueId, String> {
        let strides = match like {
            Some(l) => dense_like(shape, &self.shapes[l], &self.strides(l)),
            None => row_major(shape),
        };
        let (vs, src, src_strides) = match self.views.get(v).cloned().flatten() {
            Some(view) => (
                self.shapes[v].clone(),
                Src::Arena(self.span_of(v, false)),
                view.strides,
            ),
            None => {
                let t = self
                    .constant(node, k)
                    .ok_or("an operand is neither computed nor constant")?;
                (
                    t.shape.clone(),
                    Src::Const(self.const_bf16(t)),
                    row_major(&t.shape),
                )
            }
        };
        if vs.len() > shape.len() {
            return Err(format!("operand {vs:?} has more axes than {shape:?}"));
        }
        let t = self.temp(shape.to_vec(), strides.clone());
        let dst = self.span_of(t, false);
        let copy = Strided {
            shape: shape.to_vec(),
            src: broadcast_strides(&vs, &src_strides, shape),
            dst: strides,
        };
        self.pending.push(Pending::Copy(src, dst, copy));
        Ok(t)
    }

    /// Right after a convolution or linear layer that has no activation or
    /// residual yet and whose output only this op reads (through views at
    /// most): a per-channel constant Mul (ConvNeXt's layer scale) scales
    /// its weights and bias, and an Add of an activation computed before
    /// it, laid out as its output, becomes its residual. Either way the op
    /// is gone (true).
    fn fold_binary(
        &mut self,
        node: &Node,
        op: BinaryOp,
        a: ValueId,
        b: ValueId,
        astr: &[usize],
    ) -> Result<bool, String> {
        let out = node.outputs[0];
        let os = self.shapes[out].clone();
        let graph_value = |v: ValueId| v < self.g.values.len();
        let sole_conv = |l: &Self, v: ValueId| -> Option<usize> {
            let view = l.views[v].as_ref()?;
            let r = view.root;
            let &pi = l.conv_of.get(&r)?;
            let Pending::Conv(p, ..) = &l.pending[pi] else {
                return None;
            };
            (graph_value(v)
                && view.offset == 0
                && l.readers[v] == 1
                && l.readers[r] == 1
                && p.act == 0
                && p.has_residual == 0)
                .then_some(pi)
        };
        // Layer scale: b a constant varying along the innermost axis only,
        // which is the conv's output channels.
        let gamma = self
            .g
            .values
            .get(b)
            .and_then(|v| v.constant.as_deref())
            .filter(|_| op == BinaryOp::Mul)
            .map(|t| (t.shape.clone(), t.to_f32_vec()));
        if let (Some((gs, gamma)), Some(pi)) = (&gamma, sole_conv(self, a))
            && let Pending::Conv(p, w, ..) = &self.pending[pi]
            && gamma.len() == p.cout as usize
            && gs.last() == Some(&gamma.len())
            && astr.last() == Some(&1)
            && os.last() == Some(&gamma.len())
        {
            let (k_pad, w) = (p.k_pad as usize, &mut self.weights[*w]);
            for (o, &s) in gamma.iter().enumerate() {
                for v in &mut w.packed[o * k_pad..(o + 1) * k_pad] {
                    *v = bf16(f32_of(*v) * s);
                }
                w.bias[o] *= s;
            }
            let v = self.view(a)?.clone();
            self.alias(out, &v, v.offset, v.strides.clone());
            return Ok(true);
        }
        if op == BinaryOp::Add
            && self.views.get(b).is_some_and(Option::is_some)
            && self.shapes[b] == os
        {
            let same_layout = |l: &Self, v: ValueId| {
                l.views[v].as_ref().is_some_and(|w| {
                    w.offset == 0
                        && (0..os.len()).all(|ax| os[ax] == 1 || w.strides[ax] == astr[ax])
                })
            };
            let root = |l: &Self, v: ValueId| l.views[v].as_ref().map_or(v, |w| w.root);
            let fold = [(a, b), (b, a)].into_iter().find_map(|(y, r)| {
                let pi = sole_conv(self, y)?;
                (same_layout(self, y)
                    && same_layout(self, r)
                    && self.def[root(self, r)] < self.def[root(self, y)])
                .then_some((y, r, pi))
            });
            if let Some((y, r, pi)) = fold {
                let rv = self.span(r);
                if let Pending::Conv(p, _, _, residual, _) = &mut self.pending[pi] {
                    p.has_residual = 1;
                    *residual = Some(rv);
                }
                let v = self.view(y)?.clone();
                self.alias(out, &v, v.offset, v.strides.clone());
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Attention(q, k, v, [bias]) on the fused kernel: q, k and v read
    /// through their views ([batch, heads, rows, d] or [heads, rows, d],
    /// d contiguous), the output written tokens-major ([b][i][h][d], or
    /// [i][b][h][d] when a transpose to that order reads it) so the heads
    /// merge back into [b, i, h*d] (or [i·b, h*d]) as a view.
    fn attention(&mut self, node: &Node, scale: f32) -> Result<(), String> {
        let out = node.outputs[0];
        let qs = self.shapes[self.act_in(node, 0)?].clone();
        let r = qs.len();
        if r != 3 && r != 4 {
            return Err(format!(
                "attention over a rank-{r} q {qs:?} (3 or 4 on the GPU)"
            ));
        }
        let lead = &qs[..r - 2];
        let mut ids = [0usize; 3];
        let mut strides: [Strides; 4] = [[0; 3]; 4];
        for k in 0..3 {
            let v0 = self.act_in(node, k)?;
            let s = self.shapes[v0].clone();
            if s.len() != r || s[..r - 2] != *lead {
                return Err(format!(
                    "attention inputs {qs:?} and {s:?} (no broadcasting on the GPU)"
                ));
            }
            // The kernel reads rows of d contiguous, 16 bytes at a time.
            let view = self.view(v0)?;
            let aligned = view.offset.is_multiple_of(8)
                && view.strides[r - 1] == 1
                && view.strides[..r - 1].iter().all(|s| s.is_multiple_of(8));
            let v = if aligned {
                v0
            } else {
                self.materialize(v0, row_major(&s))?
            };
            let st = self.strides(v);
            strides[k] = if r == 4 {
                [st[0], st[1], st[2]]
            } else {
                [0, st[0], st[1]]
            };
            ids[k] = v;
        }
        let (ks, vs) = (&self.shapes[ids[1]], &self.shapes[ids[2]]);
        let (n_q, n_kv, d) = (qs[r - 2], ks[r - 2], qs[r - 1]);
        if vs[r - 2] != n_kv || vs[r - 1] != d || ks[r - 1] != d {
            return Err(format!(
                "attention with q {qs:?}, k {ks:?}, v {vs:?}: the GPU takes one head dimension"
            ));
        }
        let (batch, heads) = if r == 4 { (qs[0], qs[1]) } else { (1, qs[0]) };
        // The output [.., n_q, d] stored [b][i][h][d], or in the order its
        // only reader, a transpose keeping d innermost, puts the axes
        // (nn.MultiheadAttention's [i][b][h][d], which its out-projection
        // reads as [i·b, h·d]): that transpose is then row-major, and a
        // reshape of it a view rather than a copy.
        let reader = (self.readers[out] == 1)
            .then(|| {
                self.g.nodes[self.at + 1..]
                    .iter()
                    .find(|n| n.inputs.contains(&Some(out)))
            })
            .flatten();
        let ys = match reader.map(|n| &n.op) {
            Some(Op::Transpose { perm: Some(p) }) if p.len() == r && p[r - 1] == r - 1 => {
                let moved = row_major(&p.iter().map(|&a| self.shapes[out][a]).collect::<Vec<_>>());
                let mut ys = vec![0; r];
                p.iter().zip(moved).for_each(|(&a, st)| ys[a] = st);
                ys
            }
            _ if r == 4 => vec![n_q * heads * d, d, heads * d, 1],
            _ => vec![n_q * d, d, 1],
        };
        strides[3] = if r == 4 {
            [ys[0], ys[1], ys[2]]
        } else {
            [0, ys[0], ys[1]]
        };
        let (bias, bias_batch) = match node.inputs.get(3).copied().flatten() {
            None => (None, 0),
            Some(_) => {
                let t = self
                    .constant(node, 3)
                    .ok_or("an attention bias that is not a constant is not on the GPU yet")?;
                let (b, laid) = attention_bias(t, batch, heads, n_q, n_kv)?;
                self.f32_consts.push(laid);
                (Some(self.f32_consts.len() - 1), b)
            }
        };
        let dims = AttnDims {
            batch,
            heads,
            n_q,
            n_kv,
            d,
            scale,
            bias_batch,
        };
        if let Some(why) = dims.refusal(strides) {
            return Err(format!("attention: {why}"));
        }
        self.own(out, ys);
        let spans = ids.map(|v| self.span_of(v, false));
        let yv = self.span_of(out, false);
        self.pending
            .push(Pending::Attention(spans, bias, yv, strides, dims));
        Ok(())
    }
}

/// A constant attention bias broadcast to [B', heads, n_q, n_kv] in f32,
/// B' its own batch (1, or the problems' when it has one per problem; Swin's
/// window masks repeat every B' problems): (B', values).
fn attention_bias(
    t: &Tensor,
    batch: usize,
    heads: usize,
    n_q: usize,
    n_kv: usize,
) -> Result<(usize, Vec<f32>), String> {
    let s = &t.shape;
    if s.len() > 4 || s.len() < 2 {
        return Err(format!("attention bias {s:?}"));
    }
    let mut p = vec![1usize; 4 - s.len()];
    p.extend_from_slice(s);
    // A rank-3 attention's problems are its heads (batch 1).
    if batch == 1 && p[0] == 1 && p[1] != 1 && p[1] != heads {
        return Err(format!("attention bias {s:?} for {heads} heads"));
    }
    let ok = |d: usize, full: usize| d == 1 || d == full;
    let b2 = p[0];
    if !(ok(p[1], heads) && ok(p[2], n_q) && ok(p[3], n_kv) && batch.is_multiple_of(b2)) {
        return Err(format!(
            "attention bias {s:?} does not broadcast over {batch} x {heads} x {n_q} x {n_kv}"
        ));
    }
    let shape = [b2, heads, n_q, n_kv];
    let src = broadcast_strides(&p, &row_major(&p), &shape);
    let vals = t.to_f32_vec();
    let mut out = Vec::with_capacity(numel(&shape));
    for bi in 0..b2 {
        for h in 0..heads {
            for i in 0..n_q {
                for j in 0..n_kv {
                    out.push(vals[bi * src[0] + h * src[1] + i * src[2] + j * src[3]]);
                }
            }
        }
    }
    Ok((b2, out))
}
