//! Static shapes for a batch size, with constant folding on the way: a node
//! whose inputs are all known is evaluated (the Shape/Gather/Concat/Reshape
//! subgraphs exporters emit), `Shape` of a value with a known shape is a
//! constant, and every other node gets its output shape inferred.

use std::sync::Arc;

use super::cpu::{conv, elementwise, eval, layout};
use super::graph::{AutoPad, Graph, Op};
use super::onnx::{Dim, Model, TeacherError};
use super::tensor::Tensor;

/// Largest tensor (elements) constant folding will materialise.
const FOLD_LIMIT: usize = 1 << 24;

/// How many leading inputs `op` must have for its shape to be known.
fn min_inputs(op: &Op) -> usize {
    match op {
        Op::Constant(_) => 0,
        Op::Where | Op::Attention { .. } => 3,
        Op::Conv(_)
        | Op::Gemm { .. }
        | Op::MatMul
        | Op::Binary(_)
        | Op::Equal
        | Op::Gather { .. } => 2,
        _ => 1,
    }
}

fn unsupported(g: &Graph, node: usize, detail: String) -> TeacherError {
    let n = &g.nodes[node];
    TeacherError::Unsupported {
        file: g.source.display().to_string(),
        node: n.name.clone(),
        op: n.op.name(),
        opset: g.opset,
        detail,
    }
}

/// The graph with every shape fixed for `batch`, constants folded.
pub fn with_batch(model: &Model, batch: usize) -> Result<Graph, TeacherError> {
    let mut g = model.graph.clone();
    let file = g.source.display().to_string();
    for (&id, dims) in g.inputs.clone().iter().zip(&model.input_dims) {
        let shape = dims
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Dim::Fixed(n) if i == 0 && *n != batch => Err(TeacherError::Invalid {
                    file: file.clone(),
                    detail: format!(
                        "input `{}` has a fixed batch of {n}; run it with --batch-size {n}, or re-export with a dynamic batch axis",
                        g.values[id].name
                    ),
                }),
                Dim::Fixed(n) => Ok(*n),
                Dim::Symbolic(_) if i == 0 => Ok(batch),
                Dim::Symbolic(name) => Err(TeacherError::Invalid {
                    file: file.clone(),
                    detail: format!(
                        "input `{}` dimension {i} is dynamic (`{name}`): dr needs a fixed image size. Fix: re-export with a fixed height and width (only the batch axis may be dynamic)",
                        g.values[id].name
                    ),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        g.values[id].shape = Some(shape);
    }
    for i in 0..g.nodes.len() {
        infer_node(&mut g, i)?;
    }
    for &o in &g.outputs {
        if g.values[o].shape.is_none() {
            return Err(TeacherError::Invalid {
                file: file.clone(),
                detail: format!("output `{}` has no inferred shape", g.values[o].name),
            });
        }
    }
    Ok(g)
}

/// SAME auto_pad turned into explicit pads now that the input size is known.
fn resolve_auto_pad(g: &mut Graph, i: usize) {
    let hw = g.nodes[i]
        .inputs
        .first()
        .copied()
        .flatten()
        .and_then(|v| g.values[v].shape.clone())
        .filter(|s| s.len() == 4)
        .map(|s| [s[2], s[3]]);
    let Some(hw) = hw else { return };
    match &mut g.nodes[i].op {
        Op::Conv(c) => {
            c.pads = conv::resolve_pads(c.auto_pad, c.pads, hw, c.kernel, c.strides, c.dilations);
            c.auto_pad = AutoPad::Explicit;
        }
        Op::Pool(p) => {
            p.pads = conv::resolve_pads(p.auto_pad, p.pads, hw, p.kernel, p.strides, p.dilations);
            p.auto_pad = AutoPad::Explicit;
        }
        _ => {}
    }
}

fn infer_node(g: &mut Graph, i: usize) -> Result<(), TeacherError> {
    resolve_auto_pad(g, i);
    let node = g.nodes[i].clone();
    // Inputs the shape rules below read, present (a damaged or hand-made
    // file can name fewer).
    let need = min_inputs(&node.op);
    if node.inputs.len() < need || node.inputs[..need].iter().any(Option::is_none) {
        return Err(unsupported(
            g,
            i,
            format!(
                "{} of its {need} required inputs given",
                node.inputs[..need.min(node.inputs.len())]
                    .iter()
                    .filter(|v| v.is_some())
                    .count()
            ),
        ));
    }
    let shape_of = |v: Option<usize>| v.and_then(|v| g.values[v].shape.clone());
    let consts: Vec<Option<Arc<Tensor>>> = node
        .inputs
        .iter()
        .map(|v| v.and_then(|v| g.values[v].constant.clone()))
        .collect();
    let all_const = node
        .inputs
        .iter()
        .zip(&consts)
        .all(|(v, c)| v.is_none() || c.is_some());
    // Fold: every input known (and not a weight-sized computation).
    let folded: Option<Vec<Tensor>> = if let Op::Shape { start, end } = &node.op {
        let s = shape_of(node.inputs[0])
            .ok_or_else(|| unsupported(g, i, "input shape unknown".into()))?;
        Some(vec![layout::shape_of(&s, *start, *end)])
    } else if all_const && !matches!(node.op, Op::Conv(_) | Op::Gemm { .. } | Op::MatMul) {
        let ins: Vec<Option<&Tensor>> = consts.iter().map(|c| c.as_deref()).collect();
        let size: usize = ins.iter().flatten().map(|t| t.len()).sum();
        if size <= FOLD_LIMIT {
            // Constants: no batch to split by.
            Some(eval(&node.op, &ins, node.outputs.len(), 1).map_err(|e| unsupported(g, i, e))?)
        } else {
            None
        }
    } else {
        None
    };
    if let Some(outs) = folded {
        for (&o, t) in node.outputs.iter().zip(outs) {
            g.values[o].shape = Some(t.shape.clone());
            g.values[o].dtype = t.dtype();
            g.values[o].constant = Some(Arc::new(t));
        }
        return Ok(());
    }
    let ins: Vec<Vec<usize>> = node
        .inputs
        .iter()
        .map(|v| match v {
            Some(v) => g.values[*v].shape.clone().ok_or_else(|| {
                unsupported(g, i, format!("shape of `{}` unknown", g.values[*v].name))
            }),
            None => Ok(vec![]),
        })
        .collect::<Result<_, _>>()?;
    let c = |k: usize| consts.get(k).cloned().flatten();
    let need_const = |k: usize, what: &str| {
        c(k).ok_or_else(|| unsupported(g, i, format!("{what} is computed at run time; dr needs it constant once the batch size is fixed")))
    };
    if let Op::Split { axis, sizes } = &node.op {
        let a = elementwise::norm_axis(*axis, ins[0].len()).map_err(|e| unsupported(g, i, e))?;
        let sizes = match sizes {
            Some(s) => Some(s.clone()),
            None if node.inputs.len() > 1 && node.inputs[1].is_some() => {
                Some(need_const(1, "the Split sizes")?.to_i64_vec())
            }
            None => None,
        };
        let sizes = layout::split_sizes(ins[0][a], sizes, node.outputs.len())
            .map_err(|e| unsupported(g, i, e))?;
        for (&o, s) in node.outputs.iter().zip(sizes) {
            let mut shape = ins[0].clone();
            shape[a] = s;
            g.values[o].shape = Some(shape);
        }
        return Ok(());
    }
    let out: Vec<usize> = match &node.op {
        Op::Conv(a) => conv::conv_shape(a, &ins[0], &ins[1]).map_err(|e| unsupported(g, i, e))?,
        Op::Gemm {
            trans_a, trans_b, ..
        } => {
            let m = if *trans_a {
                ins[0].get(1)
            } else {
                ins[0].first()
            };
            let n = if *trans_b {
                ins[1].first()
            } else {
                ins[1].get(1)
            };
            vec![*m.unwrap_or(&0), *n.unwrap_or(&0)]
        }
        Op::MatMul => {
            super::cpu::linear::matmul_dims(&ins[0], &ins[1])
                .map_err(|e| unsupported(g, i, e))?
                .out
        }
        Op::BatchNorm { .. }
        | Op::Unary(_)
        | Op::Clip
        | Op::HardSigmoid { .. }
        | Op::Softmax { .. }
        | Op::Cast { .. }
        | Op::LayerNorm { .. }
        | Op::Gelu { .. } => ins[0].clone(),
        Op::Binary(_) | Op::Equal => {
            elementwise::broadcast_shape(&ins[0], &ins[1]).map_err(|e| unsupported(g, i, e))?
        }
        Op::Where => elementwise::broadcast_shape(&ins[0], &ins[1])
            .and_then(|s| elementwise::broadcast_shape(&s, &ins[2]))
            .map_err(|e| unsupported(g, i, e))?,
        Op::Expand => {
            let target: Vec<usize> = need_const(1, "the Expand shape")?
                .to_i64_vec()
                .into_iter()
                .map(|d| d.max(0) as usize)
                .collect();
            elementwise::broadcast_shape(&ins[0], &target).map_err(|e| unsupported(g, i, e))?
        }
        Op::Pad { .. } => {
            let pads = need_const(1, "the Pad pads")?.to_i64_vec();
            let axes = match node.inputs.get(3).copied().flatten() {
                Some(_) => Some(need_const(3, "the Pad axes")?.to_i64_vec()),
                None => None,
            };
            crate::teacher::cpu::indexing::pad_amounts(ins[0].len(), &pads, axes.as_deref())
                .and_then(|a| crate::teacher::cpu::indexing::pad_shape(&ins[0], &a))
                .map_err(|e| unsupported(g, i, e))?
        }
        Op::Tile => {
            let reps = need_const(1, "the Tile repeats")?.to_i64_vec();
            if reps.len() != ins[0].len() {
                return Err(unsupported(
                    g,
                    i,
                    format!("Tile repeats {reps:?} for shape {:?}", ins[0]),
                ));
            }
            ins[0]
                .iter()
                .zip(&reps)
                .map(|(&d, &r)| d * r.max(0) as usize)
                .collect()
        }
        Op::Attention { .. } => {
            let mut s = ins[0].clone();
            if let (Some(last), Some(&e)) = (s.last_mut(), ins[2].last()) {
                *last = e;
            }
            s
        }
        Op::ScatterNd | Op::Not => ins[0].clone(),
        Op::ConstantOfShape(_) | Op::Range => {
            return Err(unsupported(
                g,
                i,
                "the shape is computed at run time".into(),
            ));
        }
        Op::Pool(p) => conv::pool_shape(p, &ins[0]).map_err(|e| unsupported(g, i, e))?,
        Op::GlobalAveragePool => {
            let mut s = ins[0].clone();
            s[2..].iter_mut().for_each(|d| *d = 1);
            s
        }
        Op::Reduce {
            axes,
            keepdims,
            noop_with_empty_axes,
            ..
        } => {
            let axes = match axes {
                Some(a) => a.clone(),
                None if node.inputs.len() > 1 && node.inputs[1].is_some() => {
                    need_const(1, "the reduction axes")?.to_i64_vec()
                }
                None => vec![],
            };
            if axes.is_empty() && *noop_with_empty_axes {
                ins[0].clone()
            } else {
                let ax: Vec<usize> = if axes.is_empty() {
                    (0..ins[0].len()).collect()
                } else {
                    axes.iter()
                        .map(|&a| elementwise::norm_axis(a, ins[0].len()))
                        .collect::<Result<_, _>>()
                        .map_err(|e| unsupported(g, i, e))?
                };
                elementwise::reduce_shape(&ins[0], &ax, *keepdims)
            }
        }
        Op::Flatten { axis } => {
            layout::flatten_shape(&ins[0], *axis).map_err(|e| unsupported(g, i, e))?
        }
        Op::Reshape { allowzero } => layout::reshape_shape(
            &ins[0],
            &need_const(1, "the target shape")?.to_i64_vec(),
            *allowzero,
        )
        .map_err(|e| unsupported(g, i, e))?,
        Op::Transpose { perm } => {
            let p = perm
                .clone()
                .unwrap_or_else(|| (0..ins[0].len()).rev().collect());
            if p.len() != ins[0].len() || p.iter().any(|&x| x >= ins[0].len()) {
                return Err(unsupported(
                    g,
                    i,
                    format!("perm {p:?} for shape {:?}", ins[0]),
                ));
            }
            p.iter().map(|&k| ins[0][k]).collect()
        }
        Op::Concat { axis } => {
            let present: Vec<&Vec<usize>> = node
                .inputs
                .iter()
                .zip(&ins)
                .filter(|(v, _)| v.is_some())
                .map(|(_, s)| s)
                .collect();
            let a = elementwise::norm_axis(*axis, present[0].len())
                .map_err(|e| unsupported(g, i, e))?;
            let mut s = present[0].clone();
            s[a] = present.iter().map(|p| p.get(a).copied().unwrap_or(0)).sum();
            s
        }
        Op::Gather { axis } => {
            let a =
                elementwise::norm_axis(*axis, ins[0].len()).map_err(|e| unsupported(g, i, e))?;
            let mut s = ins[0][..a].to_vec();
            s.extend_from_slice(&ins[1]);
            s.extend_from_slice(&ins[0][a + 1..]);
            s
        }
        Op::Unsqueeze { axes } => {
            let axes = match axes {
                Some(a) => a.clone(),
                None => need_const(1, "the Unsqueeze axes")?.to_i64_vec(),
            };
            layout::unsqueeze_shape(&ins[0], &axes).map_err(|e| unsupported(g, i, e))?
        }
        Op::Squeeze { axes } => {
            let axes = match axes {
                Some(a) => Some(a.clone()),
                None if node.inputs.len() > 1 && node.inputs[1].is_some() => {
                    Some(need_const(1, "the Squeeze axes")?.to_i64_vec())
                }
                None => None,
            };
            layout::squeeze_shape(&ins[0], axes.as_deref()).map_err(|e| unsupported(g, i, e))?
        }
        Op::Slice => {
            let v = |k: usize, what: &str| -> Result<Option<Vec<i64>>, TeacherError> {
                if node.inputs.get(k).copied().flatten().is_none() {
                    return Ok(None);
                }
                Ok(Some(need_const(k, what)?.to_i64_vec()))
            };
            let (s, e) = (
                v(1, "Slice starts")?.unwrap_or_default(),
                v(2, "Slice ends")?.unwrap_or_default(),
            );
            let plan = layout::slice_plan(
                &ins[0],
                &s,
                &e,
                v(3, "Slice axes")?.as_deref(),
                v(4, "Slice steps")?.as_deref(),
            )
            .map_err(|e| unsupported(g, i, e))?;
            plan.iter().map(|p| p.2).collect()
        }
        Op::Shape { .. } | Op::Constant(_) => unreachable!("folded above"),
        Op::Split { .. } => unreachable!("handled above"),
    };
    g.values[node.outputs[0]].shape = Some(out);
    Ok(())
}
