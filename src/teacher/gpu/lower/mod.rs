//! A teacher's optimised IR lowered for the GPU: each node becomes a kernel
//! step over regions of one bf16 arena, or a view of another value's
//! memory (`view`); weights are packed once, and memory is planned from
//! the values' lifetimes (`teacher::arena`). Convolutions, pooling and
//! channel ops read and write NCHW values stored NHWC; matrix products over
//! the last axis (Gemm / MatMul with a constant weight, as 1x1 convolutions
//! with their bias, GELU, layer scale and residual folded in), LayerNorm
//! and elementwise ops take any dense layout and keep it; Transpose,
//! Reshape, Slice, Split, Squeeze, Unsqueeze, a one-index Gather and Expand
//! are views; attention reads q, k and v through their strides; a view a
//! kernel cannot read becomes a strided copy, as do Concat's inputs outside
//! the channel axis. That covers the CNN families, ConvNeXt, ViT, DeiT
//! and Swin. Anything else is refused with the node's and op's names;
//! `GpuPlan::run_cpu` runs the plan through the kernels' CPU twins.

use std::collections::HashMap;

use super::attention::{AttnDims, Strides};
use super::conv::{bf16, conv_params, pack_weights};
use super::eltwise::{BinaryOp, Broadcast, UnaryOp};
use super::layout::Strided;
use crate::cuda::kernels::conv::ConvParams;
use crate::cuda::kernels::pool::PoolParams;
use crate::teacher::arena::{Lifetime, place};
use crate::teacher::graph::{ConvAttrs, Graph, Node, Op, ValueId};
use crate::teacher::tensor::{Tensor, numel};
use view::{View, is_dense, nhwc, row_major};

mod movement;
mod ops;
mod plan;
mod view;
pub use plan::*;

/// Arena offsets are multiples of this many bf16 (256 bytes: 16-byte
/// vector loads and cp.async need 16).
const ALIGN: usize = 128;

fn shape4(s: &[usize]) -> Option<[usize; 4]> {
    s.try_into().ok()
}

/// Lowers `g` (prepared for one batch size). Errors name the node and op.
pub fn lower(g: &Graph) -> Result<GpuPlan, String> {
    let mut l = Lowering::new(g)?;
    for (i, node) in g.nodes.iter().enumerate() {
        l.at = i;
        l.node(node)
            .map_err(|e| format!("node {} ({}): {e}", node.name, node.op.name()))?;
    }
    l.finish()
}

/// Part of a value's root: from its view's first element, `len` elements
/// (a dense use) or to the root's end (a strided one: the launcher checks
/// the strides stay inside).
#[derive(Clone, Debug)]
struct Span {
    root: ValueId,
    offset: usize,
    len: Option<usize>,
}

/// A copy's source: an activation or a bf16 constant.
#[derive(Clone, Debug)]
enum Src {
    Arena(Span),
    Const(usize),
}

/// A step whose regions are known once memory is placed.
enum Pending {
    Conv(ConvParams, usize, Span, Option<Span>, Span),
    Pool(PoolParams, Span, Span),
    GlobalAvg((usize, usize, usize), Span, Span),
    Unary(UnaryOp, Span, Span),
    Binary(BinaryOp, Broadcast, Span, Src, Span, usize),
    Affine((usize, usize), Span, Span, usize),
    LayerNorm((usize, usize), Span, Span, usize, f32),
    Softmax(Span, Span, usize),
    Concat(Span, Span, (usize, usize, usize)),
    Copy(Src, Span, Strided),
    Attention([Span; 3], Option<usize>, Span, [Strides; 4], AttnDims),
}

struct Lowering<'g> {
    g: &'g Graph,
    input: ValueId,
    input_nchw: [usize; 4],
    input_channels: usize,
    padded_stems: Vec<usize>,
    /// Per value, then per temporary a copy adds (ids past the graph's).
    shapes: Vec<Vec<usize>>,
    views: Vec<Option<View>>,
    /// Node of a root's definition and of its last use.
    def: Vec<usize>,
    last: Vec<usize>,
    /// Readers of each graph value, and the pending conv that computes a
    /// root: an activation that is a conv output's only reader folds into
    /// its epilogue.
    readers: Vec<usize>,
    conv_of: HashMap<ValueId, usize>,
    pending: Vec<Pending>,
    weights: Vec<Weights>,
    bf16_consts: Vec<Vec<u16>>,
    f32_consts: Vec<Vec<f32>>,
    /// The node being lowered.
    at: usize,
}

impl<'g> Lowering<'g> {
    fn new(g: &'g Graph) -> Result<Self, String> {
        let [input] = g.inputs[..] else {
            return Err("the GPU executor takes one image input".into());
        };
        let shapes: Vec<Vec<usize>> = g
            .values
            .iter()
            .map(|v| v.shape.clone().unwrap_or_default())
            .collect();
        let input_nchw = shape4(&shapes[input])
            .ok_or_else(|| format!("the input is {:?}, not [N, C, H, W]", shapes[input]))?;
        let input_channels = stored_input_channels(g, input, input_nchw[1]);
        let nv = g.values.len();
        let mut readers = vec![0usize; nv];
        for n in &g.nodes {
            n.inputs.iter().flatten().for_each(|&v| readers[v] += 1);
        }
        g.outputs.iter().for_each(|&v| readers[v] += 1);
        let mut views = vec![None; nv];
        views[input] = Some(View {
            root: input,
            offset: 0,
            strides: nhwc(&input_nchw, input_channels),
        });
        Ok(Lowering {
            g,
            input,
            input_nchw,
            input_channels,
            padded_stems: vec![],
            shapes,
            views,
            def: vec![0; nv],
            last: vec![0; nv],
            readers,
            conv_of: HashMap::new(),
            pending: vec![],
            weights: vec![],
            bf16_consts: vec![],
            f32_consts: vec![],
            at: 0,
        })
    }

    fn view(&self, v: ValueId) -> Result<&View, String> {
        self.views[v]
            .as_ref()
            .ok_or_else(|| "an input is not an activation the GPU computed".to_string())
    }

    /// Input `k` of `node`, which must be an activation the GPU computes.
    fn act_in(&self, node: &Node, k: usize) -> Result<ValueId, String> {
        let v = node
            .inputs
            .get(k)
            .copied()
            .flatten()
            .ok_or_else(|| format!("input {k} missing"))?;
        if self.views[v].is_none() {
            return Err(format!("input {k} is not an activation the GPU computed"));
        }
        Ok(v)
    }

    fn constant(&self, node: &Node, k: usize) -> Option<&'g Tensor> {
        node.inputs
            .get(k)
            .copied()
            .flatten()
            .and_then(|v| self.g.values[v].constant.as_deref())
    }

    /// `v` computed by the current node into its own region, laid out by `strides`.
    fn own(&mut self, v: ValueId, strides: Vec<usize>) {
        self.views[v] = Some(View {
            root: v,
            offset: 0,
            strides,
        });
        self.def[v] = self.at;
        self.last[v] = self.last[v].max(self.at);
    }

    /// `v` as a view of `x`'s root.
    fn alias(&mut self, v: ValueId, x: &View, offset: usize, strides: Vec<usize>) {
        self.views[v] = Some(View {
            root: x.root,
            offset,
            strides,
        });
    }

    /// A value no graph node names: a copy's destination.
    fn temp(&mut self, shape: Vec<usize>, strides: Vec<usize>) -> ValueId {
        let v = self.shapes.len();
        self.shapes.push(shape);
        self.views.push(None);
        self.def.push(0);
        self.last.push(0);
        self.readers.push(1);
        self.own(v, strides);
        v
    }

    /// A use of `v` by the current node's step: keeps its root alive.
    fn span_of(&mut self, v: ValueId, dense: bool) -> Span {
        let view = self.views[v].clone().expect("an activation");
        self.last[view.root] = self.last[view.root].max(self.at);
        Span {
            root: view.root,
            offset: view.offset,
            len: dense.then(|| {
                let n = numel(&self.shapes[v]);
                // The input holds `input_channels` a pixel.
                if v == self.input {
                    n / self.input_nchw[1] * self.input_channels
                } else {
                    n
                }
            }),
        }
    }

    fn span(&mut self, v: ValueId) -> Span {
        self.span_of(v, true)
    }

    fn const_bf16(&mut self, t: &Tensor) -> usize {
        self.bf16_consts
            .push(t.to_f32_vec().into_iter().map(bf16).collect());
        self.bf16_consts.len() - 1
    }

    /// `v` with `strides` from its first element: itself when its view
    /// already is that (axes of one aside), else a copy into a temporary.
    fn materialize(&mut self, v: ValueId, strides: Vec<usize>) -> Result<ValueId, String> {
        let shape = self.shapes[v].clone();
        let view = self.view(v)?.clone();
        let same = (0..shape.len()).all(|a| shape[a] == 1 || view.strides[a] == strides[a]);
        if view.offset == 0 && same {
            return Ok(v);
        }
        let t = self.temp(shape.clone(), strides.clone());
        let (src, dst) = (self.span_of(v, false), self.span_of(t, false));
        let copy = Strided {
            shape,
            src: view.strides,
            dst: strides,
        };
        self.pending.push(Pending::Copy(Src::Arena(src), dst, copy));
        Ok(t)
    }

    /// Input `k` as an NCHW value stored NHWC (convolutions, pooling,
    /// channel ops).
    fn nhwc_in(&mut self, node: &Node, k: usize) -> Result<ValueId, String> {
        let v = self.act_in(node, k)?;
        let s = shape4(&self.shapes[v])
            .ok_or_else(|| format!("input {k} is {:?}, not 4-D", self.shapes[v]))?;
        if v == self.input {
            return Ok(v); // stored NHWC, with `input_channels` a pixel
        }
        self.materialize(v, nhwc(&s, s[1]))
    }

    /// Input `k` dense from offset 0 (any order of its axes).
    fn dense_in(&mut self, node: &Node, k: usize) -> Result<ValueId, String> {
        let v = self.act_in(node, k)?;
        self.dense(v)
    }

    fn dense(&mut self, v: ValueId) -> Result<ValueId, String> {
        let view = self.view(v)?;
        if view.offset == 0 && is_dense(&self.shapes[v], &view.strides) {
            return Ok(v);
        }
        self.materialize(v, row_major(&self.shapes[v]))
    }

    /// Input `k` as rows of its last axis, each contiguous, the rows in
    /// any order (matrix products over the last axis, LayerNorm).
    fn rows_in(&mut self, node: &Node, k: usize) -> Result<ValueId, String> {
        let v = self.dense_in(node, k)?;
        let s = &self.shapes[v];
        let st = &self.view(v)?.strides;
        if s.last().is_none_or(|&c| c == 1) || st.last() == Some(&1) {
            return Ok(v);
        }
        self.materialize(v, row_major(&self.shapes[v]))
    }

    /// The strides of `v`'s view (a dense one: `dense`, `rows_in`).
    fn strides(&self, v: ValueId) -> Vec<usize> {
        self.views[v]
            .as_ref()
            .map(|w| w.strides.clone())
            .unwrap_or_default()
    }

    /// The pending convolution (or linear layer) computing `x` when `x` is
    /// its root and only reader and it has no activation yet: where an
    /// activation of `x` folds (the conv writes act(...) where x was).
    fn unactivated_conv(&mut self, x: ValueId) -> Option<&mut ConvParams> {
        if x >= self.g.values.len() || self.readers[x] != 1 || self.views[x].as_ref()?.root != x {
            return None;
        }
        match self.pending.get_mut(*self.conv_of.get(&x)?)? {
            Pending::Conv(p, ..) if p.act == 0 => Some(p),
            _ => None,
        }
    }

    fn node(&mut self, node: &Node) -> Result<(), String> {
        for &v in node.inputs.iter().flatten() {
            if let Some(w) = &self.views[v] {
                let r = w.root;
                self.last[r] = self.last[r].max(self.at);
            }
        }
        if self.movement(node)? {
            return Ok(());
        }
        self.compute(node)
    }

    fn finish(mut self) -> Result<GpuPlan, String> {
        let g = self.g;
        let [output] = g.outputs[..] else {
            return Err("the GPU executor gives one logits output".into());
        };
        let os = self.shapes[output].clone();
        if self.views[output].is_none() || os.len() < 2 || os[2..].iter().any(|&d| d != 1) {
            return Err(format!(
                "the output {os:?} is not [N, classes] computed on the GPU"
            ));
        }
        self.at = g.nodes.len();
        let output = self.materialize(output, row_major(&os))?;
        let out_root = self.views[output]
            .as_ref()
            .map(|v| v.root)
            .unwrap_or(output);
        self.last[out_root] = usize::MAX;
        let owners: Vec<ValueId> = (0..self.shapes.len())
            .filter(|&v| self.views[v].as_ref().is_some_and(|w| w.root == v))
            .collect();
        let input = self.input;
        let lifetimes: Vec<Lifetime> = owners
            .iter()
            .map(|&v| Lifetime {
                size: if v == input {
                    numel(&self.shapes[v]) / self.input_nchw[1] * self.input_channels
                } else {
                    numel(&self.shapes[v])
                },
                live: (self.def[v], self.last[v].min(g.nodes.len())),
            })
            .collect();
        let (ranges, arena_len) = place(&lifetimes, ALIGN);
        let mut region = vec![0..0; self.shapes.len()];
        for (&v, r) in owners.iter().zip(ranges) {
            region[v] = r;
        }
        let at = |s: &Span| {
            let r = &region[s.root];
            let start = r.start + s.offset;
            start..s.len.map_or(r.end, |n| start + n)
        };
        let src = |s: &Src| match s {
            Src::Arena(s) => Operand::Arena(at(s)),
            Src::Const(k) => Operand::Const(*k),
        };
        let steps: Vec<Step> = self
            .pending
            .iter()
            .map(|s| match s {
                Pending::Conv(p, w, x, r, y) => Step::Conv {
                    p: *p,
                    weights: *w,
                    x: at(x),
                    residual: r.as_ref().map(at),
                    y: at(y),
                },
                Pending::Pool(p, x, y) => Step::Pool {
                    p: *p,
                    x: at(x),
                    y: at(y),
                },
                Pending::GlobalAvg(dims, x, y) => Step::GlobalAvg {
                    dims: *dims,
                    x: at(x),
                    y: at(y),
                },
                Pending::Unary(op, x, y) => Step::Unary {
                    op: *op,
                    x: at(x),
                    y: at(y),
                },
                Pending::Binary(op, bc, a, b, y, c) => Step::Binary {
                    op: *op,
                    bc: *bc,
                    a: at(a),
                    b: src(b),
                    y: at(y),
                    c: *c,
                },
                Pending::Affine(consts, x, y, c) => Step::Affine {
                    consts: *consts,
                    x: at(x),
                    y: at(y),
                    c: *c,
                },
                Pending::LayerNorm(consts, x, y, c, eps) => Step::LayerNorm {
                    consts: *consts,
                    x: at(x),
                    y: at(y),
                    c: *c,
                    eps: *eps,
                },
                Pending::Softmax(x, y, c) => Step::Softmax {
                    x: at(x),
                    y: at(y),
                    c: *c,
                },
                Pending::Concat(x, y, cols) => Step::Concat {
                    x: at(x),
                    y: at(y),
                    cols: *cols,
                },
                Pending::Copy(x, y, copy) => Step::Copy {
                    x: src(x),
                    y: at(y),
                    copy: copy.clone(),
                },
                Pending::Attention([q, k, v], bias, y, strides, dims) => Step::Attention {
                    q: at(q),
                    k: at(k),
                    v: at(v),
                    bias: *bias,
                    y: at(y),
                    strides: *strides,
                    dims: *dims,
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
            conv_path: super::conv::ConvPath::MmaSync,
            batch: self.input_nchw[0],
            steps,
            weights: self.weights,
            bf16_consts: self.bf16_consts,
            f32_consts: self.f32_consts,
            arena_len,
            input: region[input].clone(),
            input_nchw: self.input_nchw,
            input_channels: self.input_channels,
            padded_stems: self.padded_stems,
            output: region[out_root].start..region[out_root].start + numel(&os),
            classes: os[1],
        })
    }
}

/// A 2-D `x` [N, K] times a constant `b` ([K, out], or [out, K] with
/// `trans_b`) plus an optional constant bias, as a 1x1 convolution.
fn linear(
    g: &Graph,
    xs: &[usize],
    images: usize,
    b: &Tensor,
    trans_b: bool,
    bias: Option<ValueId>,
) -> Result<(ConvParams, Weights), String> {
    // [N, ..., K]: N images of `rows` rows each (1 for an FC layer; tokens
    // or pixels for a transformer's or ConvNeXt's linear layers), as a 1x1
    // convolution over a rows x 1 map, so a layer's output is one pixel an
    // image only where it is one row (`conv::split_slices`).
    let (mut n, k) = match xs[..] {
        [n, .., k] if xs.len() >= 2 => (n, k),
        _ => return Err(format!("the input is {xs:?}, not [N, ..., K]")),
    };
    let mut rows: usize = xs[1..xs.len() - 1].iter().product();
    // A 2-D input whose rows are not the images (nn.MultiheadAttention's
    // out-projection over [tokens x images, C]) is one map of that many
    // rows: not an FC layer, so never split along K (whose fp32 workspace
    // would grow with the tokens).
    if xs.len() == 2 && n != images {
        (n, rows) = (1, n);
    }
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
    let attrs = ConvAttrs::pointwise();
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

#[cfg(test)]
pub(crate) mod tests;
