//! Decomposed GELU and LayerNorm recognised as the single ops the legacy
//! exporter could not emit, so the executors run one fused op (one pass over
//! memory) whatever the opset.

use super::consumers;
use crate::teacher::graph::{Binary, Graph, Node, Op, Unary, ValueId};

/// The scalar value of a constant input, if it is one.
fn scalar(g: &Graph, v: Option<ValueId>) -> Option<f32> {
    let t = g.constant(v)?;
    (t.len() == 1).then(|| t.to_f32_vec()[0])
}

fn near(a: Option<f32>, b: f32) -> bool {
    a.is_some_and(|a| (a - b).abs() <= 1e-4 * b.abs().max(1.0))
}

/// The node producing `v`.
fn producer(g: &Graph, v: ValueId) -> Option<usize> {
    g.nodes.iter().position(|n| n.outputs.contains(&v))
}

/// For a binary op node: (the non-constant input, the scalar constant).
fn with_scalar(g: &Graph, n: &Node, op: Binary) -> Option<(ValueId, f32)> {
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
fn replace(g: &mut Graph, at: usize, node: Node, dead: &[usize]) {
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
        // 1 + erf
        if !only(e_in) || !only(e_out) {
            continue;
        }
        let ai = uses[&e_out][0];
        let Some((_, one)) = with_scalar(g, &g.nodes[ai], Binary::Add) else {
            continue;
        };
        if !near(Some(one), 1.0) {
            continue;
        }
        let a_out = g.nodes[ai].outputs[0];
        if !only(a_out) {
            continue;
        }
        // (x · (1 + erf)) · 0.5, or (x · 0.5) · (1 + erf)
        let mi = uses[&a_out][0];
        let m = &g.nodes[mi];
        if m.op != Op::Binary(Binary::Mul) || m.inputs.len() != 2 {
            continue;
        }
        let other = m.inputs.iter().flatten().copied().find(|&v| v != a_out);
        let Some(other) = other else { continue };
        let m_out = m.outputs[0];
        let (out, extra) = if other == x && only(m_out) {
            let hi = uses[&m_out][0];
            match with_scalar(g, &g.nodes[hi], Binary::Mul) {
                Some((_, h)) if near(Some(h), 0.5) => (g.nodes[hi].outputs[0], vec![hi]),
                _ => continue,
            }
        } else {
            let Some(hi) = producer(g, other) else {
                continue;
            };
            match with_scalar(g, &g.nodes[hi], Binary::Mul) {
                Some((v, h)) if v == x && near(Some(h), 0.5) && only(other) => (m_out, vec![hi]),
                _ => continue,
            }
        };
        let name = g.nodes[ei].name.clone();
        let mut dead = vec![di, ei, ai, mi];
        dead.extend(extra);
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
