//! Convolution, batch norm and pooling.

use super::{ImportFn, NodeCtx, usize_array, window_array};
use crate::teacher::graph::{Activation, AutoPad, ConvAttrs, Op, PoolAttrs, PoolKind};

pub const TABLE: &[(&str, ImportFn)] = &[
    ("Conv", conv),
    ("BatchNormalization", batch_norm),
    ("MaxPool", max_pool),
    ("AveragePool", average_pool),
    ("GlobalAveragePool", global_average_pool),
];

/// ONNX pads are [x1_begin, x2_begin, x1_end, x2_end] = top, left, bottom,
/// right; SAME_* pads are found by shape inference once the input size is
/// known.
fn pads(ctx: &NodeCtx) -> Result<([usize; 4], AutoPad), String> {
    let explicit = |p| Ok((p, AutoPad::Explicit));
    match ctx.string("auto_pad")?.as_deref() {
        None | Some("NOTSET") => explicit(usize_array(ctx.ints("pads")?, [0; 4], "pads")?),
        Some("VALID") => explicit([0; 4]),
        Some("SAME_UPPER") => Ok(([0; 4], AutoPad::SameUpper)),
        Some("SAME_LOWER") => Ok(([0; 4], AutoPad::SameLower)),
        Some(other) => Err(format!("auto_pad={other} is not an ONNX auto_pad value")),
    }
}

fn conv(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&[
        "auto_pad",
        "dilations",
        "group",
        "kernel_shape",
        "pads",
        "strides",
    ])?;
    let kernel = match ctx.ints("kernel_shape")? {
        Some(k) => window_array(Some(k), [1, 1], "kernel_shape")?,
        None => {
            let w = ctx
                .inputs
                .get(1)
                .copied()
                .flatten()
                .and_then(|i| ctx.graph.values[i].constant.clone());
            let w = w.ok_or("kernel_shape is absent and the weight is not a constant")?;
            if w.shape.len() != 4 {
                return Err(format!(
                    "weight of rank {}: only 2-D convolution is supported",
                    w.shape.len()
                ));
            }
            window_array(
                Some(vec![w.shape[2] as i64, w.shape[3] as i64]),
                [1, 1],
                "the weight's kernel size",
            )?
        }
    };
    let group = ctx.int("group", 1)?;
    if group < 1 {
        return Err(format!("group = {group}"));
    }
    let (pads, auto_pad) = pads(ctx)?;
    Ok(Op::Conv(ConvAttrs {
        kernel,
        strides: window_array(ctx.ints("strides")?, [1, 1], "strides")?,
        pads,
        dilations: window_array(ctx.ints("dilations")?, [1, 1], "dilations")?,
        group: group as usize,
        auto_pad,
        act: Activation::None,
    }))
}

fn batch_norm(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["epsilon", "momentum", "spatial", "training_mode"])?;
    if ctx.int("training_mode", 0)? != 0 || ctx.n_outputs() > 1 {
        return Err("training-mode batch norm (running statistics as outputs) is not supported; export in eval mode".into());
    }
    Ok(Op::BatchNorm {
        eps: ctx.float("epsilon", 1e-5)?,
    })
}

fn pool(ctx: &NodeCtx, kind: PoolKind) -> Result<Op, String> {
    ctx.only_attrs(&[
        "auto_pad",
        "ceil_mode",
        "dilations",
        "kernel_shape",
        "pads",
        "strides",
        "storage_order",
        "count_include_pad",
    ])?;
    if ctx.n_outputs() > 1 {
        return Err("the Indices output of MaxPool is not supported".into());
    }
    let kernel = window_array(
        ctx.ints("kernel_shape")?
            .map(Some)
            .ok_or("kernel_shape is required")?,
        [1, 1],
        "kernel_shape",
    )?;
    let (pads, auto_pad) = pads(ctx)?;
    Ok(Op::Pool(PoolAttrs {
        kind,
        kernel,
        strides: window_array(ctx.ints("strides")?, [1, 1], "strides")?,
        pads,
        dilations: window_array(ctx.ints("dilations")?, [1, 1], "dilations")?,
        ceil_mode: ctx.int("ceil_mode", 0)? != 0,
        auto_pad,
    }))
}

fn max_pool(ctx: &NodeCtx) -> Result<Op, String> {
    pool(ctx, PoolKind::Max)
}

fn average_pool(ctx: &NodeCtx) -> Result<Op, String> {
    let count_include_pad = ctx.int("count_include_pad", 0)? != 0;
    pool(ctx, PoolKind::Average { count_include_pad })
}

fn global_average_pool(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&[])?;
    Ok(Op::GlobalAveragePool)
}
