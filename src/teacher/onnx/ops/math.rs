//! Matrix products, elementwise math, activations, softmax and reductions.

use super::{ImportFn, NodeCtx};
use crate::teacher::graph::{Binary, Op, ReduceKind, Unary};

pub const TABLE: &[(&str, ImportFn)] = &[
    ("Gemm", gemm),
    ("MatMul", |c| plain(c, Op::MatMul)),
    ("Relu", |c| plain(c, Op::Unary(Unary::Relu))),
    ("Sigmoid", |c| plain(c, Op::Unary(Unary::Sigmoid))),
    ("Tanh", |c| plain(c, Op::Unary(Unary::Tanh))),
    ("Erf", |c| plain(c, Op::Unary(Unary::Erf))),
    ("Sqrt", |c| plain(c, Op::Unary(Unary::Sqrt))),
    ("Exp", |c| plain(c, Op::Unary(Unary::Exp))),
    ("Neg", |c| plain(c, Op::Unary(Unary::Neg))),
    ("Abs", |c| plain(c, Op::Unary(Unary::Abs))),
    ("Reciprocal", |c| plain(c, Op::Unary(Unary::Reciprocal))),
    ("HardSwish", |c| plain(c, Op::Unary(Unary::HardSwish))),
    ("Add", |c| plain(c, Op::Binary(Binary::Add))),
    ("Sub", |c| plain(c, Op::Binary(Binary::Sub))),
    ("Mul", |c| plain(c, Op::Binary(Binary::Mul))),
    ("Div", |c| plain(c, Op::Binary(Binary::Div))),
    ("Pow", |c| plain(c, Op::Binary(Binary::Pow))),
    ("Mod", modulo),
    ("Clip", |c| plain(c, Op::Clip)),
    ("HardSigmoid", hard_sigmoid),
    ("Softmax", softmax),
    ("ReduceMean", |c| reduce(c, ReduceKind::Mean)),
    ("ReduceSum", |c| reduce(c, ReduceKind::Sum)),
    ("ReduceMax", |c| reduce(c, ReduceKind::Max)),
    ("LayerNormalization", layer_norm),
    ("Gelu", gelu),
    ("Equal", |c| plain(c, Op::Equal)),
    ("Where", |c| plain(c, Op::Where)),
];

fn layer_norm(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["axis", "epsilon", "stash_type"])?;
    if ctx.n_outputs() > 1 {
        return Err("the Mean/InvStdDev outputs of LayerNormalization are not supported".into());
    }
    Ok(Op::LayerNorm {
        axis: ctx.int("axis", -1)?,
        eps: ctx.float("epsilon", 1e-5)?,
    })
}

fn gelu(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["approximate"])?;
    let tanh = match ctx.string("approximate")?.as_deref() {
        None | Some("none") => false,
        Some("tanh") => true,
        Some(other) => return Err(format!("Gelu approximate={other}")),
    };
    Ok(Op::Gelu { tanh })
}

fn plain(ctx: &NodeCtx, op: Op) -> Result<Op, String> {
    ctx.only_attrs(&[])?;
    Ok(op)
}

fn modulo(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["fmod"])?;
    Ok(Op::Binary(if ctx.int("fmod", 0)? != 0 {
        Binary::Fmod
    } else {
        Binary::Mod
    }))
}

fn gemm(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["alpha", "beta", "transA", "transB"])?;
    Ok(Op::Gemm {
        alpha: ctx.float("alpha", 1.0)?,
        beta: ctx.float("beta", 1.0)?,
        trans_a: ctx.int("transA", 0)? != 0,
        trans_b: ctx.int("transB", 0)? != 0,
    })
}

fn hard_sigmoid(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["alpha", "beta"])?;
    Ok(Op::HardSigmoid {
        alpha: ctx.float("alpha", 0.2)?,
        beta: ctx.float("beta", 0.5)?,
    })
}

fn softmax(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["axis"])?;
    Ok(Op::Softmax {
        axis: ctx.int("axis", -1)?,
    })
}

fn reduce(ctx: &NodeCtx, kind: ReduceKind) -> Result<Op, String> {
    ctx.only_attrs(&["axes", "keepdims", "noop_with_empty_axes"])?;
    Ok(Op::Reduce {
        kind,
        axes: ctx.ints("axes")?,
        keepdims: ctx.int("keepdims", 1)? != 0,
        noop_with_empty_axes: ctx.int("noop_with_empty_axes", 0)? != 0,
    })
}
