//! The CPU executor: f32 NCHW, ops parallelised with rayon, GEMM through the
//! `gemm` crate. It is the oracle of every GPU kernel and a real backend.
//! `Plan` runs a prepared graph out of one arena planned ahead; `interpret`
//! (one allocation per op) is the reference it is checked against.

pub mod attention;
pub mod conv;
pub mod elementwise;
mod exec;
mod gemm;
pub mod indexing;
pub mod layout;
pub mod linear;
pub mod movement;
pub mod norm;
pub mod plan;

pub use exec::Profile;
pub use plan::Plan;

use std::sync::Arc;

use crate::teacher::graph::{Graph, Op};
use crate::teacher::tensor::Tensor;

/// Runs one op on its inputs (`None` = omitted optional input); `batch` is
/// the images the graph runs, by which products split their rows
/// (`linear::rows_per_product`; 1 for constants).
pub fn eval(
    op: &Op,
    inputs: &[Option<&Tensor>],
    outputs: usize,
    batch: usize,
) -> Result<Vec<Tensor>, String> {
    let get = |i: usize| -> Result<&Tensor, String> {
        inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| format!("input {i} is missing"))
    };
    let opt = |i: usize| inputs.get(i).copied().flatten();
    let ints = |i: usize| opt(i).map(|t| t.to_i64_vec());
    let one = |t: Tensor| Ok(vec![t]);
    match op {
        Op::Conv(c) => one(conv::conv2d(c, get(0)?, get(1)?, opt(2), opt(3))?),
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => one(linear::gemm_op(
            get(0)?,
            get(1)?,
            opt(2),
            *alpha,
            *beta,
            *trans_a,
            *trans_b,
            batch,
        )?),
        Op::MatMul => one(linear::matmul_op(get(0)?, get(1)?, opt(2), batch)?),
        Op::BatchNorm { eps } => {
            let f = |i| get(i).map(|t| t.to_f32_vec());
            one(conv::batch_norm(
                get(0)?,
                &f(1)?,
                &f(2)?,
                &f(3)?,
                &f(4)?,
                *eps,
            )?)
        }
        Op::Unary(u) => one(elementwise::unary(*u, get(0)?)?),
        Op::Binary(b) => one(elementwise::binary(*b, get(0)?, get(1)?)?),
        Op::Clip => one(elementwise::clip(get(0)?, opt(1), opt(2))?),
        Op::HardSigmoid { alpha, beta } => one(elementwise::hard_sigmoid(get(0)?, *alpha, *beta)?),
        Op::Pool(p) => one(conv::pool2d(p, get(0)?)?),
        Op::GlobalAveragePool => one(conv::global_average_pool(get(0)?)?),
        Op::Reduce {
            kind,
            axes,
            keepdims,
            noop_with_empty_axes,
        } => {
            let x = get(0)?;
            let axes = axes.clone().or_else(|| ints(1)).unwrap_or_default();
            if axes.is_empty() && *noop_with_empty_axes {
                return one(x.clone());
            }
            let ax: Vec<usize> = if axes.is_empty() {
                (0..x.shape.len()).collect()
            } else {
                axes.iter()
                    .map(|&a| elementwise::norm_axis(a, x.shape.len()))
                    .collect::<Result<_, _>>()?
            };
            one(elementwise::reduce(*kind, x, &ax, *keepdims)?)
        }
        Op::Softmax { axis } => one(norm::softmax(get(0)?, *axis)?),
        Op::Flatten { axis } => one(layout::flatten(get(0)?, *axis)?),
        Op::Reshape { allowzero } => {
            let x = get(0)?;
            let shape = layout::reshape_shape(&x.shape, &get(1)?.to_i64_vec(), *allowzero)?;
            one(x.clone().reshaped(shape))
        }
        Op::Transpose { perm } => {
            let x = get(0)?;
            let p = perm
                .clone()
                .unwrap_or_else(|| (0..x.shape.len()).rev().collect());
            one(layout::transpose(x, &p)?)
        }
        Op::Concat { axis } => {
            let xs: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
            one(layout::concat(&xs, *axis)?)
        }
        Op::Gather { axis } => one(layout::gather(get(0)?, get(1)?, *axis)?),
        Op::Shape { start, end } => one(layout::shape_of(&get(0)?.shape, *start, *end)),
        Op::Unsqueeze { axes } => {
            let x = get(0)?;
            let axes = axes
                .clone()
                .or_else(|| ints(1))
                .ok_or("Unsqueeze without axes")?;
            one(x
                .clone()
                .reshaped(layout::unsqueeze_shape(&x.shape, &axes)?))
        }
        Op::Squeeze { axes } => {
            let x = get(0)?;
            let axes = axes.clone().or_else(|| ints(1));
            one(x
                .clone()
                .reshaped(layout::squeeze_shape(&x.shape, axes.as_deref())?))
        }
        Op::Slice => {
            let (s, e) = (get(1)?.to_i64_vec(), get(2)?.to_i64_vec());
            one(layout::slice(
                get(0)?,
                &s,
                &e,
                ints(3).as_deref(),
                ints(4).as_deref(),
            )?)
        }
        Op::Cast { to } => one(layout::cast(get(0)?, *to)),
        Op::Constant(t) => one((**t).clone()),
        Op::LayerNorm { axis, eps } => {
            one(norm::layer_norm(get(0)?, get(1)?, opt(2), *axis, *eps)?)
        }
        Op::Gelu { tanh } => one(norm::gelu(get(0)?, *tanh)),
        Op::ConstantOfShape(v) => one(layout::constant_of_shape(get(0)?, v)?),
        Op::Equal => one(elementwise::equal(get(0)?, get(1)?)?),
        Op::Where => one(elementwise::where_op(get(0)?, get(1)?, get(2)?)?),
        Op::Expand => {
            let shape: Vec<usize> = get(1)?
                .to_i64_vec()
                .into_iter()
                .map(|d| d.max(0) as usize)
                .collect();
            one(layout::expand(get(0)?, &shape)?)
        }
        Op::Tile => one(layout::tile(get(0)?, &get(1)?.to_i64_vec())?),
        Op::Range => one(indexing::range(get(0)?, get(1)?, get(2)?)?),
        Op::Not => match &get(0)?.data {
            crate::teacher::tensor::Data::Bool(b) => one(Tensor::bool(
                get(0)?.shape.clone(),
                b.iter().map(|v| !v).collect(),
            )),
            _ => Err("Not takes a bool tensor".into()),
        },
        Op::ScatterNd => one(indexing::scatter_nd(get(0)?, get(1)?, get(2)?)?),
        Op::Pad { mode } => {
            let x = get(0)?;
            let amounts =
                indexing::pad_amounts(x.shape.len(), &get(1)?.to_i64_vec(), ints(3).as_deref())?;
            let value = opt(2).map_or(0.0, |t| t.to_f32_vec().first().copied().unwrap_or(0.0));
            one(indexing::pad(x, &amounts, value, *mode)?)
        }
        Op::Attention { scale } => one(attention::attention(
            get(0)?,
            get(1)?,
            get(2)?,
            opt(3),
            *scale,
        )?),
        Op::Split { axis, sizes } => {
            let x = get(0)?;
            let a = elementwise::norm_axis(*axis, x.shape.len())?;
            let sizes =
                layout::split_sizes(x.shape[a], sizes.clone().or_else(|| ints(1)), outputs)?;
            layout::split(x, *axis, &sizes)
        }
    }
}

/// The images a prepared graph runs: its first input's leading axis.
pub fn graph_batch(g: &Graph) -> usize {
    g.inputs
        .first()
        .and_then(|&i| g.values[i].shape.as_ref())
        .and_then(|s| s.first().copied())
        .unwrap_or(1)
}

/// Runs a graph whose shapes are fixed: inputs in graph order, outputs in
/// graph order, through a plan made for this call (callers that run a graph
/// repeatedly keep a `Plan`).
pub fn run(g: &Graph, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
    Plan::new(Arc::new(g.clone()))?.run(inputs)
}

/// The reference interpreter: every op allocates its outputs; intermediate
/// values are dropped after their last use. `Plan` must match it bit for bit.
pub fn interpret(g: &Graph, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
    if inputs.len() != g.inputs.len() {
        return Err(format!(
            "{} inputs given, the model takes {}",
            inputs.len(),
            g.inputs.len()
        ));
    }
    let mut vals: Vec<Option<Arc<Tensor>>> = g.values.iter().map(|v| v.constant.clone()).collect();
    let mut last_use = vec![usize::MAX; g.values.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        for &v in n.inputs.iter().flatten() {
            last_use[v] = i;
        }
    }
    for &o in &g.outputs {
        last_use[o] = usize::MAX;
    }
    for (&id, t) in g.inputs.iter().zip(inputs) {
        if let Some(want) = &g.values[id].shape
            && *want != t.shape
        {
            return Err(format!(
                "input `{}` has shape {:?}, the model was prepared for {want:?}",
                g.values[id].name, t.shape
            ));
        }
        vals[id] = Some(Arc::new(t));
    }
    for (i, n) in g.nodes.iter().enumerate() {
        let ins: Vec<Option<&Tensor>> = n
            .inputs
            .iter()
            .map(|v| v.and_then(|v| vals[v].as_deref()))
            .collect();
        let outs = eval(&n.op, &ins, n.outputs.len(), graph_batch(g))
            .map_err(|e| format!("node `{}` ({}): {e}", n.name, n.op.name()))?;
        for (&o, t) in n.outputs.iter().zip(outs) {
            vals[o] = Some(Arc::new(t));
        }
        for &v in n.inputs.iter().flatten() {
            if last_use[v] == i && g.values[v].constant.is_none() {
                vals[v] = None;
            }
        }
    }
    g.outputs
        .iter()
        .map(|&o| {
            vals[o]
                .as_deref()
                .cloned()
                .ok_or_else(|| format!("output `{}` was not computed", g.values[o].name))
        })
        .collect()
}
