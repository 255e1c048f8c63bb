//! Attention recognised as one op (the CPU twin runs it composed; the GPU
//! executor's fused kernel will take its place): manual attention, the
//! legacy exporter's SDPA decomposition and dynamo's 3-D form.

use std::sync::Arc;

use super::consumers;
use super::patterns::{producer, replace, with_scalar};
use crate::teacher::graph::{Binary, Graph, Node, Op, ValueId};
use crate::teacher::tensor::{DType, Tensor};

/// A permutation that swaps the last two axes and keeps the others.
fn swaps_last_two(perm: &[usize]) -> bool {
    let r = perm.len();
    r >= 2
        && perm[r - 2] == r - 1
        && perm[r - 1] == r - 2
        && perm[..r - 2].iter().enumerate().all(|(i, &p)| p == i)
}

/// `softmax(a·b [+ bias])·v` where `a` is `q` (times a scalar) and `b` is
/// `kᵀ` (a transpose of the last two axes, possibly reshaped to itself and
/// times a scalar) → Attention(q, k, v, bias) with the scalars' product as
/// the scale. Covers manual attention and the exporters' SDPA decompositions.
pub fn fuse_attention(g: &mut Graph) -> bool {
    let uses = consumers(g);
    let only = |v: ValueId| uses.get(&v).map_or(0, Vec::len) == 1 && !g.outputs.contains(&v);
    // Strips `· scalar` from v: (value, scale, node).
    let unscale = |v: ValueId| -> (ValueId, f32, Option<usize>) {
        match producer(g, v)
            .and_then(|i| with_scalar(g, &g.nodes[i], Binary::Mul).map(|(x, c)| (x, c, i)))
        {
            Some((x, c, i)) if only(v) => (x, c, Some(i)),
            _ => (v, 1.0, None),
        }
    };
    for si in 0..g.nodes.len() {
        let Op::Softmax { axis } = g.nodes[si].op else {
            continue;
        };
        let Some(s_in) = g.nodes[si].inputs[0] else {
            continue;
        };
        let rank = g.values[s_in].shape.as_ref().map_or(0, Vec::len);
        if !(axis == -1 || axis == rank as i64 - 1) || rank < 2 || !only(s_in) {
            continue;
        }
        let p = g.nodes[si].outputs[0];
        let Some(&[pv]) = uses.get(&p).map(Vec::as_slice) else {
            continue;
        };
        if g.nodes[pv].op != Op::MatMul
            || g.nodes[pv].inputs.len() != 2
            || g.nodes[pv].inputs[0] != Some(p)
            || g.outputs.contains(&p)
        {
            continue;
        }
        let Some(v) = g.nodes[pv].inputs[1] else {
            continue;
        };
        // scores [+ bias]
        let Some(mut qi) = producer(g, s_in) else {
            continue;
        };
        let (mut bias, mut dead) = (None, vec![si, pv]);
        let mut window = None;
        if g.nodes[qi].op == Op::Binary(Binary::Add) {
            let add = &g.nodes[qi];
            let mm = add
                .inputs
                .iter()
                .flatten()
                .copied()
                .find(|&x| producer(g, x).is_some_and(|i| g.nodes[i].op == Op::MatMul));
            let Some(mm) = mm.filter(|&m| only(m)) else {
                continue;
            };
            bias = add.inputs.iter().flatten().copied().find(|&x| x != mm);
            dead.push(qi);
            qi = producer(g, mm).unwrap();
        } else if matches!(g.nodes[qi].op, Op::Reshape { .. })
            && let Some((mm, b, nodes)) = window_bias(g, &only, s_in)
        {
            window = Some(b);
            dead.extend(nodes);
            qi = producer(g, mm).unwrap();
        }
        let mm = &g.nodes[qi];
        if mm.op != Op::MatMul || mm.inputs.len() != 2 {
            continue;
        }
        let (Some(a), Some(b)) = (mm.inputs[0], mm.inputs[1]) else {
            continue;
        };
        dead.push(qi);
        let (q, s1, n1) = unscale(a);
        let (mut kt, s2, n2) = unscale(b);
        // A reshape between the transpose and the scale: the identity, or
        // dynamo's 3-D form, kᵀ = Reshape(Transpose(k3), [.., d, M]) with
        // k3 [B·H, M, d]: restoring the leading axes around a transpose of
        // the last two is that transpose of k3 reshaped to [.., M, d]. The
        // key is that reshape: an existing Reshape of a 4-D k, or (when k3
        // is not one, as for nn.MultiheadAttention's [M, B·H, d] layout)
        // a new one.
        let shape = |v: ValueId| g.values[v].shape.clone().unwrap_or_default();
        let mut collapsed = None;
        let mut new_key = None;
        if let Some(ri) = producer(g, kt)
            && matches!(g.nodes[ri].op, Op::Reshape { .. })
            && only(kt)
            && let Some(src) = g.nodes[ri].inputs[0]
        {
            if shape(src) == shape(kt) {
                dead.push(ri);
                kt = src;
            } else if let Some(ti) = producer(g, src)
                && matches!(&g.nodes[ti].op, Op::Transpose { perm: Some(p) } if swaps_last_two(p))
                && only(src)
                && let Some(c) = g.nodes[ti].inputs[0]
            {
                let (cs, mut want) = (shape(c), shape(kt));
                let r = want.len();
                let fits = r >= 2
                    && cs.len() >= 2
                    && want[r - 2..] == [cs[cs.len() - 1], cs[cs.len() - 2]]
                    && want[..r - 2].iter().product::<usize>()
                        == cs[..cs.len() - 2].iter().product::<usize>();
                if fits {
                    want.swap(r - 2, r - 1);
                    match producer(g, c) {
                        Some(ci)
                            if matches!(g.nodes[ci].op, Op::Reshape { .. })
                                && only(c)
                                && g.nodes[ci].inputs[0].is_some_and(|k4| shape(k4) == want) =>
                        {
                            dead.extend([ri, ti, ci]);
                            collapsed = g.nodes[ci].inputs[0];
                        }
                        _ => {
                            // The transpose becomes the new reshape, in place.
                            dead.push(ri);
                            new_key = Some((ti, c, want));
                        }
                    }
                }
            }
        }
        let k = match (collapsed, &new_key) {
            (Some(k), _) => k,
            // Stands in for the new key until it exists (both are ready there).
            (None, Some((ti, _, _))) => g.nodes[*ti].outputs[0],
            (None, None) => {
                let Some(ti) = producer(g, kt) else { continue };
                let Op::Transpose {
                    perm: Some(ref perm),
                } = g.nodes[ti].op
                else {
                    continue;
                };
                let Some(k) = g.nodes[ti].inputs[0] else {
                    continue;
                };
                if !swaps_last_two(perm) || !only(kt) {
                    continue;
                }
                dead.push(ti);
                k
            }
        };
        dead.extend(n1);
        dead.extend(n2);
        let out = g.nodes[pv].outputs[0];
        let last = *dead.iter().max().unwrap();
        // Every input must exist by the fused node's position.
        let ready = |x: ValueId| {
            g.values[x].constant.is_some()
                || g.inputs.contains(&x)
                || g.nodes[..last].iter().any(|n| n.outputs.contains(&x))
        };
        if ![q, k, v].iter().chain(bias.iter()).all(|&x| ready(x)) {
            continue;
        }
        let name = g.nodes[si].name.clone();
        if let Some(t) = window {
            let b = g.add_value(format!("{name}.window_bias"), DType::F32);
            g.values[b].shape = Some(t.shape.clone());
            g.values[b].constant = Some(Arc::new(t));
            bias = Some(b);
        }
        let mut k = k;
        if let Some((ti, c, want)) = new_key {
            // Reshape(k3, [.., M, d]) in the transpose's place.
            let dims = g.add_value(format!("{name}.key_shape"), DType::I64);
            let d: Vec<i64> = want.iter().map(|&x| x as i64).collect();
            g.values[dims].shape = Some(vec![d.len()]);
            g.values[dims].constant = Some(Arc::new(Tensor::i64(vec![d.len()], d)));
            k = g.add_value(format!("{name}.key"), g.values[c].dtype);
            g.values[k].shape = Some(want);
            g.nodes[ti] = Node {
                name: format!("{name}.key"),
                op: Op::Reshape { allowzero: false },
                inputs: vec![Some(c), Some(dims)],
                outputs: vec![k],
            };
        }
        replace(
            g,
            last,
            Node {
                name,
                op: Op::Attention { scale: s1 * s2 },
                inputs: vec![Some(q), Some(k), Some(v), bias],
                outputs: vec![out],
            },
            &dead,
        );
        return true;
    }
    false
}

/// For an Add of an activation and a constant: (the activation, the constant).
fn const_add(g: &Graph, i: usize) -> Option<(ValueId, &Tensor)> {
    let n = &g.nodes[i];
    if n.op != Op::Binary(Binary::Add) || n.inputs.len() != 2 {
        return None;
    }
    let (a, b) = (n.inputs[0]?, n.inputs[1]?);
    match (g.constant(Some(a)), g.constant(Some(b))) {
        (None, Some(t)) => Some((a, t)),
        (Some(t), None) => Some((b, t)),
        _ => None,
    }
}

/// Swin's shifted windows: the scores s = q·kᵀ [B·W, H, n, m] (plus a
/// constant, the relative positions), reshaped to [B, W, H, n, m] to add
/// each window's mask (a constant), reshaped back. The reshapes only give
/// the mask its per-window axis, so both constants fold into one bias over
/// the problems: bias[p] = rel[p] + mask[p / W][p % W], each broadcast.
/// When neither constant has one value per image the bias repeats every W
/// problems and is kept as [W, H, n, m] (Attention's periodic bias), so it
/// does not grow with the batch. Returns (s, the bias, the nodes from s to
/// the softmax's input).
fn window_bias(
    g: &Graph,
    only: &dyn Fn(ValueId) -> bool,
    s_in: ValueId,
) -> Option<(ValueId, Tensor, Vec<usize>)> {
    let shape = |v: ValueId| g.values[v].shape.clone().unwrap_or_default();
    let is_reshape = |i: usize| matches!(g.nodes[i].op, Op::Reshape { .. });
    let back = producer(g, s_in)?;
    let masked = g.nodes[back].inputs[0]?;
    let mi = producer(g, masked)?;
    let (windows, mask) = const_add(g, mi)?;
    let split = producer(g, windows)?;
    let a = g.nodes[split].inputs[0]?;
    if !is_reshape(back) || !is_reshape(split) || !only(masked) || !only(windows) || !only(a) {
        return None;
    }
    let (ss, ws) = (shape(s_in), shape(windows));
    if ss.len() != 4
        || ws.len() != 5
        || ws[0] * ws[1] != ss[0]
        || ws[2..] != ss[1..]
        || shape(a) != ss
    {
        return None;
    }
    let mut dead = vec![back, mi, split];
    let ai = producer(g, a)?;
    let (s, rel) = if g.nodes[ai].op == Op::MatMul {
        (a, None)
    } else {
        let (s, rel) = const_add(g, ai)?;
        dead.push(ai);
        (s, Some(rel))
    };
    if producer(g, s).is_none_or(|i| g.nodes[i].op != Op::MatMul) || !only(s) {
        return None;
    }
    // Both constants padded to their operand's rank; every axis 1 or full.
    let pad = |t: &Tensor, full: &[usize]| -> Option<Vec<usize>> {
        let r = t.shape.len();
        if r > full.len() {
            return None;
        }
        let mut p = vec![1; full.len() - r];
        p.extend_from_slice(&t.shape);
        p.iter()
            .zip(full)
            .all(|(&d, &f)| d == 1 || d == f)
            .then_some(p)
    };
    let rs = match rel {
        Some(t) => pad(t, &ss)?,
        None => vec![1; 4],
    };
    let ms = pad(mask, &ws)?;
    let (n_win, per_image) = (ws[1], rs[0] > 1 || ms[0] > 1);
    let lead = if per_image {
        ss[0]
    } else if ms[1] > 1 {
        n_win
    } else {
        1
    };
    // Row-major index of `at` in a tensor of shape `dims` broadcast.
    let index = |dims: &[usize], at: &[usize]| {
        dims.iter()
            .zip(at)
            .fold(0, |i, (&d, &x)| i * d + if d == 1 { 0 } else { x })
    };
    let (rv, mv) = (rel.map(Tensor::to_f32_vec), mask.to_f32_vec());
    let out_shape = vec![lead, ss[1], ss[2], ss[3]];
    let mut out = Vec::with_capacity(out_shape.iter().product());
    for p in 0..lead {
        for h in 0..ss[1] {
            for i in 0..ss[2] {
                for j in 0..ss[3] {
                    let r = rv.as_ref().map_or(0.0, |v| v[index(&rs, &[p, h, i, j])]);
                    let m = mv[index(&ms, &[p / n_win, p % n_win, h, i, j])];
                    out.push(r + m);
                }
            }
        }
    }
    Some((s, Tensor::f32(out_shape, out), dead))
}

#[cfg(test)]
mod tests {
    use super::super::build::{Build, filled};
    use super::*;
    use crate::teacher::cpu;

    /// Fuses `g`, checks one Attention replaced the softmax, and that the
    /// planned executor and the interpreter give the unfused outputs.
    fn fuse_and_compare(g: Graph) -> Graph {
        let inputs: Vec<Tensor> = g
            .inputs
            .iter()
            .enumerate()
            .map(|(i, &v)| filled(g.values[v].shape.as_ref().unwrap(), i as u64 + 1, 1.0))
            .collect();
        g.verify().unwrap();
        let want = cpu::interpret(&g, inputs.clone()).unwrap();
        let mut f = g.clone();
        assert!(fuse_attention(&mut f));
        f.verify().unwrap();
        let ops: Vec<String> = f.nodes.iter().map(|n| n.op.name()).collect();
        assert!(!ops.contains(&"Softmax".to_string()), "{ops:?}");
        assert_eq!(ops.iter().filter(|o| *o == "Attention").count(), 1);
        for got in [
            cpu::run(&f, inputs.clone()).unwrap(),
            cpu::interpret(&f, inputs.clone()).unwrap(),
        ] {
            let (a, b) = (got[0].to_f32_vec(), want[0].to_f32_vec());
            assert_eq!(got[0].shape, want[0].shape);
            let err = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(err < 1e-5, "max abs error {err}");
        }
        f
    }

    #[test]
    fn a_key_transposed_from_tokens_major_gets_its_own_reshape() {
        // nn.MultiheadAttention as dynamo exports it: k3 [B·H, M, d] is a
        // transpose of the tokens-major [M, B·H, d], not a reshape of a 4-D k.
        let (b, h, m, d) = (2, 3, 5, 4);
        let mut t = Build::new();
        let q = t.input(&[b, h, m, d]);
        let kin = t.input(&[m, b * h * d]);
        let v = t.input(&[b, h, m, d]);
        let half = t.constant(Tensor::scalar_f32(0.5));
        let k = t.reshape(kin, &[m, b * h, d]);
        let k3 = t.transpose(k, &[1, 0, 2]);
        let kt3 = t.transpose(k3, &[0, 2, 1]);
        let kt = t.reshape(kt3, &[b, h, d, m]);
        let kt = t.binary(Binary::Mul, kt, half, &[b, h, d, m]);
        let qs = t.binary(Binary::Mul, q, half, &[b, h, m, d]);
        let s = t.node(Op::MatMul, &[qs, kt], &[b, h, m, m]);
        let p = t.node(Op::Softmax { axis: -1 }, &[s], &[b, h, m, m]);
        let y = t.node(Op::MatMul, &[p, v], &[b, h, m, d]);
        t.0.outputs.push(y);
        let f = fuse_and_compare(t.0);
        let att = f.nodes.iter().find(|n| n.op.name() == "Attention").unwrap();
        assert_eq!(att.op, Op::Attention { scale: 0.25 });
        let key = att.inputs[1].unwrap();
        assert_eq!(f.values[key].shape, Some(vec![b, h, m, d]));
        let kp = producer(&f, key).unwrap();
        assert!(matches!(f.nodes[kp].op, Op::Reshape { .. }));
        assert_eq!(f.nodes[kp].inputs[0], Some(k3));
    }

    #[test]
    fn shifted_window_masks_fold_into_a_periodic_bias() {
        // Swin's shifted windows at batch 2: W windows per image, the mask
        // added per window between reshapes.
        let (b, w, h, n, d) = (2, 3, 2, 4, 4);
        let mut t = Build::new();
        let q = t.input(&[b * w, h, n, d]);
        let k = t.input(&[b * w, h, n, d]);
        let v = t.input(&[b * w, h, n, d]);
        let rel = t.constant(filled(&[1, h, n, n], 7, 2.0));
        // A -100 mask, different per window, as Swin's.
        let mut mask = filled(&[1, w, 1, n, n], 8, 1.0);
        if let crate::teacher::tensor::Data::F32(m) = &mut mask.data {
            m.iter_mut()
                .for_each(|x| *x = if *x > 0.0 { -100.0 } else { 0.0 });
        }
        let mask = t.constant(mask);
        let kt = t.transpose(k, &[0, 1, 3, 2]);
        let s = t.node(Op::MatMul, &[q, kt], &[b * w, h, n, n]);
        let a = t.binary(Binary::Add, s, rel, &[b * w, h, n, n]);
        let r = t.reshape(a, &[b, w, h, n, n]);
        let a2 = t.binary(Binary::Add, mask, r, &[b, w, h, n, n]);
        let r2 = t.reshape(a2, &[b * w, h, n, n]);
        let p = t.node(Op::Softmax { axis: -1 }, &[r2], &[b * w, h, n, n]);
        let y = t.node(Op::MatMul, &[p, v], &[b * w, h, n, d]);
        t.0.outputs.push(y);
        let f = fuse_and_compare(t.0);
        assert_eq!(f.nodes.len(), 1, "the attention alone");
        let att = &f.nodes[0];
        let bias = f.constant(att.inputs[3]).unwrap();
        assert_eq!(bias.shape, vec![w, h, n, n], "one period, not per image");
    }
}
