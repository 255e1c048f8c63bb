//! Conv + residual add + ReLU recognised as one node with a fused epilogue.

use super::consumers;
use crate::teacher::graph::{Activation, Binary, Graph, Op, Unary};

/// `relu(conv(x) + r)`, `conv(x) + r` and `relu(conv(x))` become one Conv
/// with a residual input and/or a ReLU, when each intermediate value has no
/// other reader. The residual must have the conv output's exact shape.
pub fn fuse_conv_epilogue(g: &mut Graph) -> bool {
    let uses = consumers(g);
    let single_use = |v: usize| uses.get(&v).map_or(0, Vec::len) == 1 && !g.outputs.contains(&v);
    for ci in 0..g.nodes.len() {
        let Op::Conv(ref c) = g.nodes[ci].op else {
            continue;
        };
        if c.act != Activation::None {
            continue;
        }
        let out = g.nodes[ci].outputs[0];
        if !single_use(out) {
            continue;
        }
        let ni = uses[&out][0];
        let next = &g.nodes[ni];
        match next.op {
            Op::Binary(Binary::Add) if g.nodes[ci].inputs.len() <= 3 => {
                let other = next.inputs.iter().flatten().copied().find(|&v| v != out);
                let Some(r) = other else { continue };
                if g.values[r].shape != g.values[out].shape || g.values[r].constant.is_some() {
                    continue;
                }
                // The residual must already exist when the conv runs.
                let ready =
                    g.inputs.contains(&r) || g.nodes[..ci].iter().any(|n| n.outputs.contains(&r));
                if !ready {
                    continue;
                }
                let new_out = next.outputs[0];
                let conv = &mut g.nodes[ci];
                while conv.inputs.len() < 3 {
                    conv.inputs.push(None);
                }
                conv.inputs.push(Some(r));
                conv.outputs = vec![new_out];
                g.nodes.remove(ni);
                return true;
            }
            Op::Unary(Unary::Relu) => {
                let new_out = next.outputs[0];
                let conv = &mut g.nodes[ci];
                if let Op::Conv(ref mut c) = conv.op {
                    c.act = Activation::Relu;
                }
                conv.outputs = vec![new_out];
                g.nodes.remove(ni);
                return true;
            }
            _ => {}
        }
    }
    false
}

/// `matmul(x, W) + b` with a constant 2-D `W` and a constant `b` over the
/// last axis → one MatMul that starts its accumulators at `b`.
pub fn fuse_matmul_bias(g: &mut Graph) -> bool {
    let uses = consumers(g);
    for mi in 0..g.nodes.len() {
        let n = &g.nodes[mi];
        if n.op != Op::MatMul || n.inputs.len() != 2 {
            continue;
        }
        let Some(w) = g.constant(n.inputs[1]) else {
            continue;
        };
        if w.shape.len() != 2 {
            continue;
        }
        let cols = w.shape[1];
        let out = n.outputs[0];
        let readers = uses.get(&out).map_or(&[][..], Vec::as_slice);
        let &[ai] = readers else { continue };
        if g.outputs.contains(&out) || g.nodes[ai].op != Op::Binary(Binary::Add) {
            continue;
        }
        let bias = g.nodes[ai]
            .inputs
            .iter()
            .flatten()
            .copied()
            .find(|&v| v != out);
        let Some(bias) = bias else { continue };
        let ok = g.values[bias]
            .constant
            .as_ref()
            .is_some_and(|t| t.len() == cols && t.shape.last() == Some(&cols))
            && g.values[g.nodes[ai].outputs[0]].shape == g.values[out].shape;
        if !ok {
            continue;
        }
        let new_out = g.nodes[ai].outputs[0];
        let m = &mut g.nodes[mi];
        m.inputs.push(Some(bias));
        m.outputs = vec![new_out];
        g.nodes.remove(ai);
        return true;
    }
    false
}
