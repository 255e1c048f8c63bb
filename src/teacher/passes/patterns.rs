//! Decomposed GELU and LayerNorm recognised as the single ops the legacy
//! exporter could not emit, so the executors run one fused op (one pass over
//! memory) whatever the opset.

use super::consumers;
use crate::teacher::graph::{Binary, Graph, Node, Op, Unary, ValueId};

/// The scalar value of a constant input, if it is one.
pub(super) fn scalar(g: &Graph, v: Option<ValueId>) -> Option<f32> {
    let t = g.constant(v)?;
    (t.len() == 1).then(|| t.to_f32_vec()[0])
}

pub(super) fn near(a: Option<f32>, b: f32) -> bool {
    a.is_some_and(|a| (a - b).abs() <= 1e-4 * b.abs().max(1.0))
}

/// The node producing `v`.
pub(super) fn producer(g: &Graph, v: ValueId) -> Option<usize> {
    g.nodes.iter().position(|n| n.outputs.contains(&v))
}

/// For a binary op node: (the non-constant input, the scalar constant).
pub(super) fn with_scalar(g: &Graph, n: &Node, op: Binary) -> Option<(ValueId, f32)> {
    if n.op != Op::Binary(op) || n.inputs.len() != 2 {
        return None;
    }
    let (a, b) = (n.inputs[0]?, n.inputs[1]?);
    match (scalar(g, Some(a)), scalar(g, Some(b))) {
        (None, Some(c)) => Some((a, c)),
        (Some(c), None) if matches!(op, Binary::Add | Binary::Mul) => Some((b, c)),
        _ => None,
    }
}

/// Removes nodes `dead` (indices) and rewires: the op at `at` becomes `node`.
pub(super) fn replace(g: &mut Graph, at: usize, node: Node, dead: &[usize]) {
    g.nodes[at] = node;
    let mut dead = dead.to_vec();
    dead.sort_unstable();
    for &d in dead.iter().rev() {
        if d != at {
            g.nodes.remove(d);
        }
    }
}

/// `x · 0.5 · (1 + erf(x / √2))` (in any of the exporters' orders) → Gelu.
pub fn fuse_gelu(g: &mut Graph) -> bool {
    let uses = consumers(g);
    let only = |v: ValueId| uses.get(&v).map_or(0, Vec::len) == 1 && !g.outputs.contains(&v);
    for ei in 0..g.nodes.len() {
        if g.nodes[ei].op != Op::Unary(Unary::Erf) {
            continue;
        }
        let Some(e_in) = g.nodes[ei].inputs[0] else {
            continue;
        };
        let e_out = g.nodes[ei].outputs[0];
        // erf's input: x / √2 or x · (1/√2)
        let Some(di) = producer(g, e_in) else {
            continue;
        };
        let x = match (
            with_scalar(g, &g.nodes[di], Binary::Div),
            with_scalar(g, &g.nodes[di], Binary::Mul),
        ) {
            (Some((x, c)), _) if near(Some(c), std::f32::consts::SQRT_2) => x,
            (_, Some((x, c))) if near(Some(c), std::f32::consts::FRAC_1_SQRT_2) => x,
            _ => continue,
        };
        if !only(e_in) {
            continue;
        }
        let Some((out, tail)) = gelu_tail(g, &uses, e_out, x) else {
            continue;
        };
        let name = g.nodes[ei].name.clone();
        let mut dead = vec![di, ei];
        dead.extend(tail);
        // The fused node takes the place of the last node of the pattern.
        let last = *dead.iter().max().unwrap();
        replace(
            g,
            last,
            Node {
                name,
                op: Op::Gelu { tanh: false },
                inputs: vec![Some(x)],
                outputs: vec![out],
            },
            &dead,
        );
        return true;
    }
    false
}

/// The shared end of both GELU forms: `gate` (erf(..) or tanh(..)) read
/// only by `+ 1`, then `· x` and `· 0.5` in either order. Returns the final
/// output and the nodes of this tail.
fn gelu_tail(
    g: &Graph,
    uses: &std::collections::HashMap<ValueId, Vec<usize>>,
    gate: ValueId,
    x: ValueId,
) -> Option<(ValueId, Vec<usize>)> {
    let only = |v: ValueId| uses.get(&v).map_or(0, Vec::len) == 1 && !g.outputs.contains(&v);
    if !only(gate) {
        return None;
    }
    let ai = uses[&gate][0];
    let (_, one) = with_scalar(g, &g.nodes[ai], Binary::Add)?;
    let a_out = g.nodes[ai].outputs[0];
    if !near(Some(one), 1.0) || !only(a_out) {
        return None;
    }
    let mi = uses[&a_out][0];
    let m = &g.nodes[mi];
    if m.op != Op::Binary(Binary::Mul) || m.inputs.len() != 2 {
        return None;
    }
    let other = m.inputs.iter().flatten().copied().find(|&v| v != a_out)?;
    let m_out = m.outputs[0];
    if other == x && only(m_out) {
        // (x · (1 + gate)) · 0.5
        let hi = uses[&m_out][0];
        let (_, h) = with_scalar(g, &g.nodes[hi], Binary::Mul)?;
        near(Some(h), 0.5).then(|| (g.nodes[hi].outputs[0], vec![ai, mi, hi]))
    } else {
        // (x · 0.5) · (1 + gate)
        let hi = producer(g, other)?;
        let (v, h) = with_scalar(g, &g.nodes[hi], Binary::Mul)?;
        (v == x && near(Some(h), 0.5) && only(other)).then(|| (m_out, vec![ai, mi, hi]))
    }
}

/// `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))` → Gelu (tanh form);
/// x³ as `x · (x · x)` or `Pow(x, 3)`.
pub fn fuse_gelu_tanh(g: &mut Graph) -> bool {
    let uses = consumers(g);
    let only = |v: ValueId| uses.get(&v).map_or(0, Vec::len) == 1 && !g.outputs.contains(&v);
    for ti in 0..g.nodes.len() {
        if g.nodes[ti].op != Op::Unary(Unary::Tanh) {
            continue;
        }
        let Some(t_in) = g.nodes[ti].inputs[0] else {
            continue;
        };
        // √(2/π) · inner
        let Some(si) = producer(g, t_in) else {
            continue;
        };
        let Some((inner, c)) = with_scalar(g, &g.nodes[si], Binary::Mul) else {
            continue;
        };
        if !near(Some(c), (2.0 / std::f32::consts::PI).sqrt()) || !only(t_in) || !only(inner) {
            continue;
        }
        // inner = x + 0.044715 · cube
        let Some(ai) = producer(g, inner) else {
            continue;
        };
        let a = &g.nodes[ai];
        if a.op != Op::Binary(Binary::Add) || a.inputs.len() != 2 {
            continue;
        }
        let mut found = None;
        for (k, v) in a.inputs.iter().enumerate() {
            let (Some(v), Some(x)) = (*v, a.inputs[1 - k]) else {
                continue;
            };
            let Some(ci) = producer(g, v) else { continue };
            if let Some((cube, c)) = with_scalar(g, &g.nodes[ci], Binary::Mul)
                && near(Some(c), 0.044_715)
                && only(v)
            {
                found = Some((x, ci, cube));
            }
        }
        let Some((x, ci, cube)) = found else { continue };
        // cube = x · (x · x) or Pow(x, 3)
        let Some(qi) = producer(g, cube) else {
            continue;
        };
        let q = &g.nodes[qi];
        let cube_nodes = match q.op {
            Op::Binary(Binary::Pow)
                if q.inputs[0] == Some(x) && near(scalar(g, q.inputs[1]), 3.0) =>
            {
                vec![qi]
            }
            Op::Binary(Binary::Mul) => {
                let sq = q.inputs.iter().flatten().copied().find(|&v| v != x);
                let Some(sq) = sq.filter(|_| q.inputs.contains(&Some(x))) else {
                    continue;
                };
                let Some(pi) = producer(g, sq) else { continue };
                if g.nodes[pi].op != Op::Binary(Binary::Mul)
                    || g.nodes[pi].inputs != [Some(x), Some(x)]
                    || !only(sq)
                {
                    continue;
                }
                vec![qi, pi]
            }
            _ => continue,
        };
        if !only(cube) {
            continue;
        }
        let t_out = g.nodes[ti].outputs[0];
        let Some((out, tail)) = gelu_tail(g, &uses, t_out, x) else {
            continue;
        };
        let mut dead = vec![ti, si, ai, ci];
        dead.extend(cube_nodes);
        dead.extend(tail);
        let last = *dead.iter().max().unwrap();
        let name = g.nodes[ti].name.clone();
        replace(
            g,
            last,
            Node {
                name,
                op: Op::Gelu { tanh: true },
                inputs: vec![Some(x)],
                outputs: vec![out],
            },
            &dead,
        );
        return true;
    }
    false
}

/// `(x − mean(x)) / sqrt(mean((x − mean(x))²) + eps) · γ + β` over the last
/// axis → LayerNorm.
pub fn fuse_layer_norm(g: &mut Graph) -> bool {
    let uses = consumers(g);
    let only =
        |v: ValueId, n: usize| uses.get(&v).map_or(0, Vec::len) == n && !g.outputs.contains(&v);
    let last_axis_mean = |n: &Node, rank: usize| match &n.op {
        Op::Reduce {
            kind: crate::teacher::graph::ReduceKind::Mean,
            axes,
            keepdims: true,
            ..
        } => {
            let ax = axes.clone().or_else(|| {
                g.constant(n.inputs.get(1).copied().flatten())
                    .map(|t| t.to_i64_vec())
            });
            ax.is_some_and(|a| a.len() == 1 && (a[0] == -1 || a[0] == rank as i64 - 1))
        }
        _ => false,
    };
    for ri in 0..g.nodes.len() {
        let Some(x) = g.nodes[ri].inputs.first().copied().flatten() else {
            continue;
        };
        let Some(rank) = g.values[x].shape.as_ref().map(Vec::len) else {
            continue;
        };
        if !last_axis_mean(&g.nodes[ri], rank) {
            continue;
        }
        let mean = g.nodes[ri].outputs[0];
        // d = x − mean, read by Pow and Div
        let Some(&si) = uses.get(&mean).and_then(|u| u.first()) else {
            continue;
        };
        let s = &g.nodes[si];
        if s.op != Op::Binary(Binary::Sub) || s.inputs != [Some(x), Some(mean)] || !only(mean, 1) {
            continue;
        }
        let d = s.outputs[0];
        if !only(d, 2) {
            continue;
        }
        let (mut pi, mut vi) = (None, None);
        for &u in &uses[&d] {
            match g.nodes[u].op {
                Op::Binary(Binary::Pow) if near(scalar(g, g.nodes[u].inputs[1]), 2.0) => {
                    pi = Some(u)
                }
                Op::Binary(Binary::Div) if g.nodes[u].inputs[0] == Some(d) => vi = Some(u),
                _ => {}
            }
        }
        let (Some(pi), Some(vi)) = (pi, vi) else {
            continue;
        };
        // var = mean(d²); std = sqrt(var + eps)
        let sq = g.nodes[pi].outputs[0];
        let Some(&r2) = uses.get(&sq).and_then(|u| u.first()) else {
            continue;
        };
        if !only(sq, 1) || !last_axis_mean(&g.nodes[r2], rank) {
            continue;
        }
        let var = g.nodes[r2].outputs[0];
        let Some(&ei) = uses.get(&var).and_then(|u| u.first()) else {
            continue;
        };
        let Some((_, eps)) = with_scalar(g, &g.nodes[ei], Binary::Add) else {
            continue;
        };
        let ve = g.nodes[ei].outputs[0];
        let Some(&qi) = uses.get(&ve).and_then(|u| u.first()) else {
            continue;
        };
        if !only(var, 1) || !only(ve, 1) || g.nodes[qi].op != Op::Unary(Unary::Sqrt) {
            continue;
        }
        let sd = g.nodes[qi].outputs[0];
        if !only(sd, 1) || g.nodes[vi].inputs[1] != Some(sd) {
            continue;
        }
        // · γ + β (γ, β constants over the last axis)
        let norm = g.nodes[vi].outputs[0];
        let Some(&gi) = uses.get(&norm).and_then(|u| u.first()) else {
            continue;
        };
        let gm = &g.nodes[gi];
        let gamma = gm
            .inputs
            .iter()
            .flatten()
            .copied()
            .find(|&v| v != norm && g.values[v].constant.is_some());
        if gm.op != Op::Binary(Binary::Mul) || gamma.is_none() || !only(norm, 1) {
            continue;
        }
        let scaled = gm.outputs[0];
        let (beta, bi) = match uses.get(&scaled).map(Vec::as_slice) {
            Some(&[bi])
                if g.nodes[bi].op == Op::Binary(Binary::Add) && !g.outputs.contains(&scaled) =>
            {
                let b = g.nodes[bi]
                    .inputs
                    .iter()
                    .flatten()
                    .copied()
                    .find(|&v| v != scaled && g.values[v].constant.is_some());
                (b, b.map(|_| bi))
            }
            _ => (None, None),
        };
        let last_dim = g.values[x]
            .shape
            .as_ref()
            .and_then(|s| s.last().copied())
            .unwrap_or(0);
        let per_channel = |v: Option<ValueId>| {
            v.is_none_or(|v| {
                g.values[v]
                    .constant
                    .as_ref()
                    .is_some_and(|t| t.len() == last_dim)
            })
        };
        if !per_channel(gamma) || !per_channel(beta) {
            continue;
        }
        let out = bi.map_or(scaled, |b| g.nodes[b].outputs[0]);
        let name = g.nodes[ri].name.clone();
        let mut dead = vec![ri, si, pi, r2, ei, qi, vi, gi];
        dead.extend(bi);
        let last = *dead.iter().max().unwrap();
        replace(
            g,
            last,
            Node {
                name,
                op: Op::LayerNorm { axis: -1, eps },
                inputs: vec![Some(x), gamma, beta],
                outputs: vec![out],
            },
            &dead,
        );
        return true;
    }
    false
}

/// `x · sigmoid(x)` → SiLU and `x · hard_sigmoid(x)` (alpha 1/6, beta 1/2)
/// → HardSwish, when the gate is read only by the product.
pub fn fuse_gated_activations(g: &mut Graph) -> bool {
    let uses = consumers(g);
    for gi in 0..g.nodes.len() {
        let fused = match g.nodes[gi].op {
            Op::Unary(Unary::Sigmoid) => Unary::Silu,
            Op::HardSigmoid { alpha, beta }
                if near(Some(alpha), 1.0 / 6.0) && near(Some(beta), 0.5) =>
            {
                Unary::HardSwish
            }
            _ => continue,
        };
        let Some(x) = g.nodes[gi].inputs[0] else {
            continue;
        };
        let gate = g.nodes[gi].outputs[0];
        let readers = uses.get(&gate).map_or(&[][..], Vec::as_slice);
        let &[mi] = readers else { continue };
        let m = &g.nodes[mi];
        let mut ins: Vec<ValueId> = m.inputs.iter().flatten().copied().collect();
        ins.sort_unstable();
        let mut want = vec![x, gate];
        want.sort_unstable();
        if m.op != Op::Binary(Binary::Mul) || ins != want || g.outputs.contains(&gate) {
            continue;
        }
        let node = Node {
            name: g.nodes[gi].name.clone(),
            op: Op::Unary(fused),
            inputs: vec![Some(x)],
            outputs: m.outputs.clone(),
        };
        replace(g, mi.max(gi), node, &[gi, mi]);
        return true;
    }
    false
}
