//! Removing nodes that no longer compute anything.

use crate::teacher::graph::Graph;

/// Drops nodes whose every output was constant-folded.
pub fn remove_folded(g: &mut Graph) -> bool {
    let before = g.nodes.len();
    let values = &g.values;
    g.nodes
        .retain(|n| !n.outputs.iter().all(|&o| values[o].constant.is_some()));
    g.nodes.len() != before
}

/// Drops nodes none of whose outputs is read or is a graph output.
pub fn remove_dead(g: &mut Graph) -> bool {
    let mut used = vec![false; g.values.len()];
    for &o in &g.outputs {
        used[o] = true;
    }
    let mut keep = vec![true; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate().rev() {
        if n.outputs.iter().any(|&o| used[o]) {
            for &v in n.inputs.iter().flatten() {
                used[v] = true;
            }
        } else {
            keep[i] = false;
        }
    }
    let before = g.nodes.len();
    let mut k = keep.into_iter();
    g.nodes.retain(|_| k.next().unwrap());
    g.nodes.len() != before
}
