//! ONNX op import: one function per op type, registered by name in its
//! family's table (`conv`, `math`, `shape`). Attribute defaults are the ONNX
//! spec's. An op or attribute value dr cannot run is an error (the caller
//! names the node, op, opset and file), never an approximation.

mod conv;
mod math;
mod shape;

use super::proto::{AttributeProto, NodeProto, attribute_type};
use crate::teacher::graph::{Graph, Op, ValueId};
use crate::teacher::tensor::DType;

pub type ImportFn = fn(&NodeCtx) -> Result<Op, String>;

/// What an import function sees of its node.
pub struct NodeCtx<'a> {
    pub node: &'a NodeProto,
    pub opset: i64,
    pub inputs: &'a [Option<ValueId>],
    pub graph: &'a Graph,
}

/// Lowest opset dr reads (the range starts at 13).
pub const MIN_OPSET: i64 = 13;

pub fn import(op_type: &str, ctx: &NodeCtx) -> Result<Op, String> {
    if ctx.opset < MIN_OPSET {
        return Err(format!(
            "opset {} is older than {MIN_OPSET}, the oldest dr reads. Fix: re-export with opset_version >= {MIN_OPSET}",
            ctx.opset
        ));
    }
    let f = [conv::TABLE, math::TABLE, shape::TABLE]
        .iter()
        .flat_map(|t| t.iter())
        .find(|(name, _)| *name == op_type)
        .map(|(_, f)| *f)
        .ok_or_else(|| format!("the op `{op_type}` is not supported"))?;
    f(ctx)
}

/// The element type of an op's outputs.
pub fn output_dtype(op: &Op, inputs: &[Option<ValueId>], g: &Graph) -> DType {
    match op {
        Op::Shape { .. } => DType::I64,
        Op::Cast { to } => *to,
        Op::Constant(t) => t.dtype(),
        Op::Conv(_)
        | Op::Gemm { .. }
        | Op::MatMul
        | Op::BatchNorm { .. }
        | Op::Pool(_)
        | Op::GlobalAveragePool
        | Op::Softmax { .. } => DType::F32,
        _ => inputs
            .first()
            .copied()
            .flatten()
            .map_or(DType::F32, |i| g.values[i].dtype),
    }
}

impl NodeCtx<'_> {
    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64, String> {
        match self.attr(name) {
            None => Ok(default),
            Some(a) if a.r#type == Some(attribute_type::INT) || a.i.is_some() => {
                Ok(a.i.unwrap_or(0))
            }
            Some(_) => Err(format!("attribute `{name}` is not an integer")),
        }
    }

    pub fn float(&self, name: &str, default: f32) -> Result<f32, String> {
        match self.attr(name) {
            None => Ok(default),
            Some(a) if a.r#type == Some(attribute_type::FLOAT) || a.f.is_some() => {
                Ok(a.f.unwrap_or(0.0))
            }
            Some(_) => Err(format!("attribute `{name}` is not a float")),
        }
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, String> {
        match self.attr(name) {
            None => Ok(None),
            Some(a)
                if a.r#type == Some(attribute_type::INTS)
                    || !a.ints.is_empty()
                    || a.r#type.is_none() =>
            {
                Ok(Some(a.ints.clone()))
            }
            Some(_) => Err(format!("attribute `{name}` is not a list of integers")),
        }
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, String> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) => {
                a.s.as_ref()
                    .map(|s| Some(String::from_utf8_lossy(s).into_owned()))
                    .ok_or_else(|| format!("attribute `{name}` is not a string"))
            }
        }
    }

    pub fn tensor_attr(&self, name: &str) -> Option<&super::proto::TensorProto> {
        self.attr(name).and_then(|a| a.t.as_ref())
    }

    pub fn has_attr(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }

    /// Fails on attributes this import does not handle.
    pub fn only_attrs(&self, known: &[&str]) -> Result<(), String> {
        for a in &self.node.attribute {
            let n = a.name.as_deref().unwrap_or("");
            if !known.contains(&n) {
                return Err(format!("attribute `{n}` is not supported"));
            }
        }
        Ok(())
    }

    pub fn n_inputs(&self) -> usize {
        self.inputs.len()
    }

    pub fn n_outputs(&self) -> usize {
        self.node.output.iter().filter(|o| !o.is_empty()).count()
    }
}

/// ints attribute → fixed-size array of usize, with a default.
/// `usize_array` for kernel sizes, strides and dilations: each 1 to 65536
/// (a zero would divide by zero or underflow in the window arithmetic).
fn window_array<const N: usize>(
    v: Option<Vec<i64>>,
    default: [usize; N],
    what: &str,
) -> Result<[usize; N], String> {
    let a = usize_array(v, default, what)?;
    if let Some(x) = a.iter().find(|&&x| !(1..=1 << 16).contains(&x)) {
        return Err(format!(
            "`{what}` = {a:?}: {x} is not a window size from 1 to 65536"
        ));
    }
    Ok(a)
}

fn usize_array<const N: usize>(
    v: Option<Vec<i64>>,
    default: [usize; N],
    what: &str,
) -> Result<[usize; N], String> {
    match v {
        None => Ok(default),
        // Above 2^16 no image window makes sense, and sums of such values
        // could overflow.
        Some(v) if v.len() == N && v.iter().all(|&x| (0..=1 << 16).contains(&x)) => {
            let mut out = [0usize; N];
            for (o, x) in out.iter_mut().zip(v) {
                *o = x as usize;
            }
            Ok(out)
        }
        Some(v) => Err(format!(
            "`{what}` = {v:?}: expected {N} values from 0 to 65536 (only 2-D NCHW windows are supported)"
        )),
    }
}
