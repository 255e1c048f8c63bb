//! Reshapes moved across transposes so that the GPU's views cover them:
//! splitting an axis after a transpose is splitting it before.

use std::sync::Arc;

use super::consumers;
use super::patterns::producer;
use crate::teacher::cpu::plan::is_alias;
use crate::teacher::graph::{Graph, Node, Op, ValueId};
use crate::teacher::tensor::{DType, Tensor};

/// For `out`, a reshape of `shape` that only splits its axes: how many
/// axes of `out` each axis of `shape` becomes (axes of one go to the
/// axis before them, or to the first).
fn splits(shape: &[usize], out: &[usize]) -> Option<Vec<usize>> {
    let mut groups = vec![0; shape.len()];
    let mut k = 0;
    for (a, &d) in shape.iter().enumerate() {
        let mut p = 1;
        while k < out.len() && (p < d || (p == d && out[k] == 1 && a == 0)) {
            p *= out[k];
            groups[a] += 1;
            k += 1;
        }
        if p != d {
            return None;
        }
    }
    // Trailing axes of one belong to the last axis.
    while k < out.len() && out[k] == 1 {
        *groups.last_mut()? += 1;
        k += 1;
    }
    (k == out.len()).then_some(groups)
}

/// Reshape(Transpose(z)) where the reshape only splits axes →
/// Transpose(Reshape(z)), the split first (and z's own reshape, if it is
/// one, read through). nn.MultiheadAttention's heads, [M, B·H, d]
/// transposed and split into [B, H, M, d], become a split of the
/// projection's [M, B, H·d] and a transpose: views, where the merged B·H
/// axis (whose strides do not chain) needed a copy on the GPU.
pub fn split_before_transpose(g: &mut Graph) -> bool {
    let uses = consumers(g);
    let only = |v: ValueId| uses.get(&v).map_or(0, Vec::len) == 1 && !g.outputs.contains(&v);
    let shape = |v: ValueId| g.values[v].shape.clone().unwrap_or_default();
    for wi in 0..g.nodes.len() {
        let w = &g.nodes[wi];
        let (Some(y), out) = (w.inputs[0], w.outputs[0]) else {
            continue;
        };
        let Some(ti) = producer(g, y).filter(|_| is_alias(&w.op) && only(y)) else {
            continue;
        };
        let Op::Transpose { perm: Some(perm) } = &g.nodes[ti].op else {
            continue;
        };
        let Some(z) = g.nodes[ti].inputs[0] else {
            continue;
        };
        let (ys, os) = (shape(y), shape(out));
        // A strictly longer shape: each rewrite lengthens a transpose, so
        // the pass ends.
        let Some(groups) = splits(&ys, &os).filter(|_| os.len() > ys.len()) else {
            continue;
        };
        // Axis a of y is axis perm[a] of z, and becomes out's axes from
        // first[a]; z's axes split the same way, in z's order.
        let first: Vec<usize> = groups
            .iter()
            .scan(0, |at, &n| {
                *at += n;
                Some(*at - n)
            })
            .collect();
        let mut split = Vec::with_capacity(os.len());
        let mut starts = vec![0; perm.len()];
        for (j, start) in starts.iter_mut().enumerate() {
            let Some(a) = perm.iter().position(|&p| p == j) else {
                break;
            };
            *start = split.len();
            split.extend_from_slice(&os[first[a]..first[a] + groups[a]]);
        }
        if split.len() != os.len() {
            continue;
        }
        let new_perm: Vec<usize> = (0..perm.len())
            .flat_map(|a| starts[perm[a]]..starts[perm[a]] + groups[a])
            .collect();
        let mut dead = vec![ti];
        let src = match producer(g, z) {
            Some(zi) if is_alias(&g.nodes[zi].op) && g.nodes[zi].inputs[0].is_some() => {
                if only(z) {
                    dead.push(zi);
                }
                g.nodes[zi].inputs[0].unwrap()
            }
            _ => z,
        };
        let name = g.nodes[wi].name.clone();
        let mut fresh = Vec::new();
        let split_v = if shape(src) == split {
            src
        } else {
            let dims = g.add_value(format!("{name}.split_shape"), DType::I64);
            let d: Vec<i64> = split.iter().map(|&x| x as i64).collect();
            g.values[dims].shape = Some(vec![d.len()]);
            g.values[dims].constant = Some(Arc::new(Tensor::i64(vec![d.len()], d)));
            let v = g.add_value(format!("{name}.split"), g.values[src].dtype);
            g.values[v].shape = Some(split);
            fresh.push(Node {
                name: format!("{name}.split"),
                op: Op::Reshape { allowzero: false },
                inputs: vec![Some(src), Some(dims)],
                outputs: vec![v],
            });
            v
        };
        g.nodes[wi] = Node {
            name,
            op: Op::Transpose {
                perm: Some(new_perm),
            },
            inputs: vec![Some(split_v)],
            outputs: vec![out],
        };
        g.nodes.splice(wi..wi, fresh);
        // Every dead node comes before wi, so the insertion moved none.
        dead.sort_unstable();
        for &d in dead.iter().rev() {
            g.nodes.remove(d);
        }
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::super::build::{Build, filled};
    use super::*;
    use crate::teacher::cpu;

    #[test]
    fn splits_group_the_new_axes() {
        assert_eq!(
            splits(&[24, 197, 64], &[2, 12, 197, 64]),
            Some(vec![2, 1, 1])
        );
        assert_eq!(splits(&[6, 4], &[1, 6, 2, 2, 1]), Some(vec![2, 3]));
        assert_eq!(splits(&[1, 6], &[6]), Some(vec![0, 1]));
        // A merge, and a split across two axes.
        assert_eq!(splits(&[2, 3], &[6]), None);
        assert_eq!(splits(&[4, 6], &[8, 3]), None);
    }

    #[test]
    fn mha_heads_split_before_their_transpose() {
        let (m, b, h, d) = (5, 2, 3, 4);
        let mut t = Build::new();
        let x = t.input(&[m, b, h * d]);
        let q = t.mha_heads(x, h);
        // A merge after a transpose stays as it is.
        let t2 = t.transpose(x, &[1, 0, 2]);
        let merged = t.reshape(t2, &[b * m, h * d]);
        t.0.outputs = vec![q, merged];
        let g = t.0;
        let input = vec![filled(&[m, b, h * d], 1, 1.0)];
        let want = cpu::interpret(&g, input.clone()).unwrap();
        let mut f = g.clone();
        while split_before_transpose(&mut f) {}
        f.verify().unwrap();
        // x split into [M, B, H, d], transposed to [B, H, M, d]; the merge's
        // transpose and reshape untouched.
        let ops: Vec<String> = f.nodes.iter().map(|n| n.op.name()).collect();
        assert_eq!(ops, ["Reshape", "Transpose", "Transpose", "Reshape"]);
        assert_eq!(f.nodes[0].inputs[0], Some(x));
        assert_eq!(
            f.values[f.nodes[0].outputs[0]].shape,
            Some(vec![m, b, h, d])
        );
        assert_eq!(
            f.nodes[1].op,
            Op::Transpose {
                perm: Some(vec![1, 2, 0, 3])
            }
        );
        assert_eq!(cpu::interpret(&f, input.clone()).unwrap(), want);
        assert_eq!(cpu::run(&f, input).unwrap(), want);
    }
}
