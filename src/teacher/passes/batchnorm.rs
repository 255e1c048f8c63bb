//! BatchNorm folded into the convolution before it.

use std::sync::Arc;

use super::consumers;
use crate::teacher::graph::{Graph, Op};
use crate::teacher::tensor::Tensor;

/// `BN(conv(x, w) + b)` → `conv(x, w·k) + (b − mean)·k + beta`, with
/// `k = gamma / sqrt(var + eps)` per output channel, when the conv's output
/// feeds only the BatchNorm and every parameter is constant.
pub fn fold_batchnorm(g: &mut Graph) -> bool {
    let uses = consumers(g);
    for bi in 0..g.nodes.len() {
        let Op::BatchNorm { eps } = g.nodes[bi].op else {
            continue;
        };
        let Some(x) = g.nodes[bi].inputs[0] else {
            continue;
        };
        let Some(ci) = g.nodes[..bi].iter().position(|n| n.outputs.contains(&x) && matches!(n.op, Op::Conv(ref c) if c.act == crate::teacher::graph::Activation::None) && n.inputs.len() <= 3) else { continue };
        if uses.get(&x).map_or(0, Vec::len) != 1 || g.outputs.contains(&x) {
            continue;
        }
        let params: Option<Vec<Vec<f32>>> = (1..5)
            .map(|k| {
                g.constant(g.nodes[bi].inputs.get(k).copied().flatten())
                    .map(Tensor::to_f32_vec)
            })
            .collect();
        let Some(params) = params else { continue };
        let [gamma, beta, mean, var] = [&params[0], &params[1], &params[2], &params[3]];
        let Some(w) = g.constant(g.nodes[ci].inputs[1]).cloned() else {
            continue;
        };
        let m = w.shape[0];
        if gamma.len() != m {
            continue;
        }
        let bias = match g.nodes[ci].inputs.get(2).copied().flatten() {
            Some(b) => match g.constant(Some(b)) {
                Some(t) => t.to_f32_vec(),
                None => continue,
            },
            None => vec![0.0; m],
        };
        let k: Vec<f32> = (0..m).map(|c| gamma[c] / (var[c] + eps).sqrt()).collect();
        let per = w.len() / m;
        let wv: Vec<f32> = w
            .to_f32_vec()
            .iter()
            .enumerate()
            .map(|(i, &v)| v * k[i / per])
            .collect();
        let bv: Vec<f32> = (0..m)
            .map(|c| (bias[c] - mean[c]) * k[c] + beta[c])
            .collect();
        let conv_name = g.nodes[ci].name.clone();
        let wid = g.add_value(
            format!("{conv_name}.folded_weight"),
            crate::teacher::tensor::DType::F32,
        );
        g.values[wid].shape = Some(w.shape.clone());
        g.values[wid].constant = Some(Arc::new(Tensor::f32(w.shape.clone(), wv)));
        let bid = g.add_value(
            format!("{conv_name}.folded_bias"),
            crate::teacher::tensor::DType::F32,
        );
        g.values[bid].shape = Some(vec![m]);
        g.values[bid].constant = Some(Arc::new(Tensor::f32(vec![m], bv)));
        let out = g.nodes[bi].outputs[0];
        let conv = &mut g.nodes[ci];
        conv.inputs.truncate(1);
        conv.inputs.extend([Some(wid), Some(bid)]);
        conv.outputs = vec![out];
        g.nodes.remove(bi);
        return true;
    }
    false
}
