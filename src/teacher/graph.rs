//! The teacher IR: values (with static shapes once a batch size is fixed,
//! and constant data where known) and nodes with typed ops, in topological
//! order. Built from ONNX by `onnx`, simplified by `passes`, run by `cpu`
//! (and later `gpu`).

use std::path::PathBuf;
use std::sync::Arc;

use super::tensor::{DType, Tensor};

pub type ValueId = usize;

/// ONNX Pad's modes (wrap, opset 19, is refused at import).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
}

#[derive(Clone, Debug)]
pub struct Value {
    pub name: String,
    pub dtype: DType,
    /// Known after shape inference.
    pub shape: Option<Vec<usize>>,
    /// Initializers, Constant outputs and folded values.
    pub constant: Option<Arc<Tensor>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
}

/// ONNX `auto_pad`: explicit `pads` (VALID is all zero), or SAME padding,
/// which depends on the input size and is turned into explicit `pads` by
/// shape inference (the executors only see explicit pads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoPad {
    Explicit,
    /// Output `ceil(in / stride)`; an odd total pad puts the extra at the end.
    SameUpper,
    /// As SameUpper with the extra at the beginning.
    SameLower,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConvAttrs {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    /// top, left, bottom, right
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    pub group: usize,
    pub auto_pad: AutoPad,
    /// Fused epilogue: `act(conv + bias + residual)`; the residual is input 3.
    pub act: Activation,
}

impl ConvAttrs {
    /// A 1x1 convolution of stride 1 with no epilogue: a linear layer over
    /// the channels.
    pub fn pointwise() -> Self {
        ConvAttrs {
            kernel: [1, 1],
            strides: [1, 1],
            pads: [0; 4],
            dilations: [1, 1],
            group: 1,
            auto_pad: AutoPad::Explicit,
            act: Activation::None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Average { count_include_pad: bool },
}

#[derive(Clone, Debug, PartialEq)]
pub struct PoolAttrs {
    pub kind: PoolKind,
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    pub ceil_mode: bool,
    pub auto_pad: AutoPad,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    Relu,
    Sigmoid,
    Tanh,
    Erf,
    Sqrt,
    Exp,
    Neg,
    Abs,
    Reciprocal,
    HardSwish,
    /// x · sigmoid(x), recognised from its decomposition.
    Silu,
    Identity,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    /// Integer modulo with the divisor's sign (ONNX Mod, fmod = 0).
    Mod,
    /// C fmod: the dividend's sign (ONNX Mod, fmod = 1).
    Fmod,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    Mean,
    Sum,
    Max,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// x, w, [bias], [residual]
    Conv(ConvAttrs),
    /// a, b, [c]
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
    },
    /// a, b, [bias over the last axis: fused by `fuse_matmul_bias`]
    MatMul,
    /// x, scale, bias, mean, var
    BatchNorm {
        eps: f32,
    },
    Unary(Unary),
    Binary(Binary),
    /// x, [min], [max]
    Clip,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    Pool(PoolAttrs),
    GlobalAveragePool,
    /// data, [axes] (axes from the attribute before opset 18)
    Reduce {
        kind: ReduceKind,
        axes: Option<Vec<i64>>,
        keepdims: bool,
        noop_with_empty_axes: bool,
    },
    Softmax {
        axis: i64,
    },
    Flatten {
        axis: i64,
    },
    /// data, shape
    Reshape {
        allowzero: bool,
    },
    Transpose {
        perm: Option<Vec<usize>>,
    },
    Concat {
        axis: i64,
    },
    Gather {
        axis: i64,
    },
    Shape {
        start: i64,
        end: Option<i64>,
    },
    /// data, [axes]
    Unsqueeze {
        axes: Option<Vec<i64>>,
    },
    Squeeze {
        axes: Option<Vec<i64>>,
    },
    /// data, starts, ends, [axes], [steps]
    Slice,
    Cast {
        to: DType,
    },
    Constant(Arc<Tensor>),
    /// x, scale, [bias]: normalise over axes `axis..rank`
    LayerNorm {
        axis: i64,
        eps: f32,
    },
    Gelu {
        tanh: bool,
    },
    /// shape → filled with `value`
    ConstantOfShape(Arc<Tensor>),
    Equal,
    /// cond, x, y
    Where,
    /// data, shape
    Expand,
    /// data, [split sizes]
    Split {
        axis: i64,
        sizes: Option<Vec<i64>>,
    },
    /// data, repeats
    Tile,
    /// Logical not of a bool tensor.
    Not,
    /// start, limit, delta (scalars) → 1-D; folded when they are constant
    Range,
    /// data, indices [..., k], updates: copies of data with slices replaced
    /// (reduction none). Exporters emit it for masks built from shapes.
    ScatterNd,
    /// data, pads, [constant_value], [axes]
    Pad {
        mode: PadMode,
    },
    /// q [.., N, d], k [.., M, d], v [.., M, e], [bias broadcast to [.., N, M]]:
    /// softmax(q·kᵀ·scale + bias)·v, recognised from its decomposition.
    /// The bias broadcasts as in ONNX except that, at q's rank, its leading
    /// axis may be any divisor of the problems' (q's first axis): problem b
    /// reads bias[b % bias_batch], which is broadcasting when that axis is
    /// 1 or equal. Swin's window masks repeat so, every image's windows.
    Attention {
        scale: f32,
    },
}

impl Op {
    /// The ONNX-style name, for messages and `dr inspect`.
    pub fn name(&self) -> String {
        match self {
            Op::Conv(c) if c.act != Activation::None => "Conv+Relu".into(),
            Op::Unary(u) => format!("{u:?}"),
            Op::Binary(b) => format!("{b:?}"),
            Op::Pool(p) => match p.kind {
                PoolKind::Max => "MaxPool".into(),
                PoolKind::Average { .. } => "AveragePool".into(),
            },
            Op::Reduce { kind, .. } => format!("Reduce{kind:?}"),
            other => {
                let s = format!("{other:?}");
                s.split([' ', '(', '{'])
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op: Op,
    /// `None` for an omitted optional input.
    pub inputs: Vec<Option<ValueId>>,
    pub outputs: Vec<ValueId>,
}

#[derive(Clone, Debug)]
pub struct Graph {
    pub values: Vec<Value>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// Default-domain opset the model was exported at.
    pub opset: i64,
    pub source: PathBuf,
}

impl Graph {
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id]
    }

    pub fn constant(&self, id: Option<ValueId>) -> Option<&Tensor> {
        id.and_then(|i| self.values[i].constant.as_deref())
    }

    pub fn add_value(&mut self, name: String, dtype: DType) -> ValueId {
        self.values.push(Value {
            name,
            dtype,
            shape: None,
            constant: None,
        });
        self.values.len() - 1
    }

    /// Parameters: elements of every constant feeding a node.
    pub fn parameter_count(&self) -> usize {
        let mut seen = vec![false; self.values.len()];
        let mut n = 0;
        for node in &self.nodes {
            for &i in node.inputs.iter().flatten() {
                if let Some(t) = &self.values[i].constant
                    && !seen[i]
                {
                    seen[i] = true;
                    n += t.len();
                }
            }
        }
        n
    }
}
