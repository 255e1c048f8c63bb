//! Hand-built graphs with fixed shapes, for the passes' and the
//! lowering's tests.

use std::path::PathBuf;
use std::sync::Arc;

use crate::teacher::graph::{Binary, Graph, Node, Op, ValueId};
use crate::teacher::tensor::{DType, Tensor, numel};

/// A hand-built graph with fixed shapes.
pub(crate) struct Build(pub(crate) Graph);

impl Build {
    pub(crate) fn new() -> Self {
        Build(Graph {
            values: vec![],
            nodes: vec![],
            inputs: vec![],
            outputs: vec![],
            opset: 17,
            source: PathBuf::from("hand-built"),
        })
    }
    pub(crate) fn value(&mut self, shape: &[usize], constant: Option<Tensor>) -> ValueId {
        let dtype = constant.as_ref().map_or(DType::F32, Tensor::dtype);
        let v = self.0.add_value(format!("v{}", self.0.values.len()), dtype);
        self.0.values[v].shape = Some(shape.to_vec());
        self.0.values[v].constant = constant.map(Arc::new);
        v
    }
    pub(crate) fn input(&mut self, shape: &[usize]) -> ValueId {
        let v = self.value(shape, None);
        self.0.inputs.push(v);
        v
    }
    pub(crate) fn constant(&mut self, t: Tensor) -> ValueId {
        let s = t.shape.clone();
        self.value(&s, Some(t))
    }
    pub(crate) fn node(&mut self, op: Op, inputs: &[ValueId], shape: &[usize]) -> ValueId {
        let y = self.value(shape, None);
        self.0.nodes.push(Node {
            name: format!("n{}", self.0.nodes.len()),
            op,
            inputs: inputs.iter().map(|&v| Some(v)).collect(),
            outputs: vec![y],
        });
        y
    }
    pub(crate) fn reshape(&mut self, x: ValueId, shape: &[usize]) -> ValueId {
        let d = shape.iter().map(|&s| s as i64).collect();
        let c = self.constant(Tensor::i64(vec![shape.len()], d));
        self.node(Op::Reshape { allowzero: false }, &[x, c], shape)
    }
    pub(crate) fn transpose(&mut self, x: ValueId, perm: &[usize]) -> ValueId {
        let s = self.0.values[x].shape.clone().unwrap();
        let shape: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
        let op = Op::Transpose {
            perm: Some(perm.to_vec()),
        };
        self.node(op, &[x], &shape)
    }
    /// Index `i` of `axis` (a one-index Gather).
    pub(crate) fn select(&mut self, x: ValueId, axis: usize, i: i64) -> ValueId {
        let mut shape = self.0.values[x].shape.clone().unwrap();
        shape.remove(axis);
        let c = self.constant(Tensor::i64(vec![], vec![i]));
        let op = Op::Gather { axis: axis as i64 };
        self.node(op, &[x, c], &shape)
    }
    /// nn.MultiheadAttention's heads: tokens-major [M, B, H·d] reshaped to
    /// [M, B·H, d], transposed, split into [B, H, M, d].
    pub(crate) fn mha_heads(&mut self, x: ValueId, heads: usize) -> ValueId {
        let [m, b, e] = self.0.values[x].shape.clone().unwrap()[..] else {
            panic!("tokens-major x is [M, B, E]")
        };
        let merged = self.reshape(x, &[m, b * heads, e / heads]);
        let t = self.transpose(merged, &[1, 0, 2]);
        self.reshape(t, &[b, heads, m, e / heads])
    }
    pub(crate) fn binary(
        &mut self,
        op: Binary,
        a: ValueId,
        b: ValueId,
        shape: &[usize],
    ) -> ValueId {
        self.node(Op::Binary(op), &[a, b], shape)
    }
}

/// Deterministic values in [-scale, scale).
pub(crate) fn filled(shape: &[usize], seed: u64, scale: f32) -> Tensor {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data = (0..numel(shape))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::f32(shape.to_vec(), data)
}
