//! Attention recognised as one op (the CPU twin runs it composed; the GPU
//! executor's fused kernel will take its place): manual attention, the
//! legacy exporter's SDPA decomposition and dynamo's 3-D form.

use super::consumers;
use super::patterns::{producer, replace, with_scalar};
use crate::teacher::graph::{Binary, Graph, Node, Op, ValueId};

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
        // dynamo's 3-D form, kᵀ = Reshape(Transpose(Reshape(k, [B·H, M, d])),
        // [.., d, M]): collapsing the leading axes and restoring them around
        // a transpose of the last two is itself that transpose.
        let shape = |v: ValueId| g.values[v].shape.clone().unwrap_or_default();
        let mut collapsed = None;
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
                && let Some(ci) = producer(g, c)
                && matches!(g.nodes[ci].op, Op::Reshape { .. })
                && only(c)
                && let Some(k4) = g.nodes[ci].inputs[0]
            {
                let (ks, cs) = (shape(k4), shape(c));
                let mut want = ks.clone();
                let r = want.len();
                if r >= 2 && cs.len() >= 2 {
                    want.swap(r - 2, r - 1);
                }
                if r >= 2 && cs.len() >= 2 && want == shape(kt) && cs[cs.len() - 2..] == ks[r - 2..]
                {
                    dead.extend([ri, ti, ci]);
                    collapsed = Some(k4);
                }
            }
        }
        let k = match collapsed {
            Some(k) => k,
            None => {
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
