//! Graph passes, run in order after shapes are fixed. Each is small, named,
//! returns whether it changed anything, and leaves a graph `verify` accepts;
//! none may change the model's outputs beyond float rounding (the golden
//! tests run every fixture with and without them).

mod attention;
mod batchnorm;
#[cfg(test)]
pub(crate) mod build;
mod dead;
mod epilogue;
mod patterns;
mod transpose;

use std::collections::HashMap;

use super::graph::{Graph, ValueId};
use super::onnx::TeacherError;

pub type Pass = fn(&mut Graph) -> bool;

/// The pipeline, in order.
pub const PIPELINE: &[(&str, Pass)] = &[
    ("remove_folded", dead::remove_folded),
    ("fuse_gelu", patterns::fuse_gelu),
    ("fuse_gelu_tanh", patterns::fuse_gelu_tanh),
    ("fuse_layer_norm", patterns::fuse_layer_norm),
    ("fuse_gated_activations", patterns::fuse_gated_activations),
    ("fuse_attention", attention::fuse_attention),
    ("split_before_transpose", transpose::split_before_transpose),
    ("fold_batchnorm", batchnorm::fold_batchnorm),
    ("fuse_conv_epilogue", epilogue::fuse_conv_epilogue),
    ("fuse_matmul_bias", epilogue::fuse_matmul_bias),
    ("remove_dead", dead::remove_dead),
];

/// What the passes did: (pass, nodes before, nodes after).
pub type Report = Vec<(&'static str, usize, usize)>;

pub fn optimize(g: &mut Graph) -> Result<Report, TeacherError> {
    let mut report = Vec::new();
    for (name, pass) in PIPELINE {
        let before = g.nodes.len();
        while pass(g) {}
        g.verify().map_err(|detail| TeacherError::Invalid {
            file: g.source.display().to_string(),
            detail: format!("internal: pass {name} left an invalid graph: {detail}"),
        })?;
        report.push((*name, before, g.nodes.len()));
    }
    Ok(report)
}

/// For each value, the nodes that read it.
pub(crate) fn consumers(g: &Graph) -> HashMap<ValueId, Vec<usize>> {
    let mut m: HashMap<ValueId, Vec<usize>> = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        for &v in n.inputs.iter().flatten() {
            m.entry(v).or_default().push(i);
        }
    }
    m
}

impl Graph {
    /// Structural checks: every node input is a graph input, a constant or
    /// an earlier node's output; every value read has a shape.
    pub fn verify(&self) -> Result<(), String> {
        let mut ready = vec![false; self.values.len()];
        for &i in &self.inputs {
            ready[i] = true;
        }
        for (i, v) in self.values.iter().enumerate() {
            if v.constant.is_some() {
                ready[i] = true;
            }
        }
        for n in &self.nodes {
            for &v in n.inputs.iter().flatten() {
                if !ready[v] {
                    return Err(format!(
                        "node `{}` reads `{}` before it is produced",
                        n.name, self.values[v].name
                    ));
                }
                if self.values[v].shape.is_none() {
                    return Err(format!("`{}` has no shape", self.values[v].name));
                }
            }
            for &o in &n.outputs {
                ready[o] = true;
            }
        }
        for &o in &self.outputs {
            if !ready[o] {
                return Err(format!(
                    "output `{}` is never produced",
                    self.values[o].name
                ));
            }
        }
        Ok(())
    }
}
