//! Teachers as the pipeline uses them: one model or an ensemble, each member
//! prepared (shapes fixed, passes run) once per batch size. An ensemble's
//! output is the mean over members of softmax(logits / T), as ml-dr's
//! `ClassificationEnsembleNet` computes it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::cpu::Plan;
use super::graph::Graph;
use super::onnx::{self, Model, TeacherError};
use super::passes;
use super::shape::with_batch;
use super::tensor::Tensor;

pub struct Member {
    pub path: PathBuf,
    pub model: Model,
    /// Per batch size: the optimised graph with its memory plan.
    prepared: Mutex<HashMap<usize, Arc<Plan>>>,
}

impl Member {
    pub fn load(path: &Path) -> Result<Self, TeacherError> {
        Self::from_model(path, onnx::load(path)?)
    }

    /// A loaded model as a teacher, checked: one input, one output, and
    /// shapes and passes that work.
    pub fn from_model(path: &Path, model: Model) -> Result<Self, TeacherError> {
        if model.graph.inputs.len() != 1 || model.graph.outputs.len() != 1 {
            return Err(TeacherError::Invalid {
                file: path.display().to_string(),
                detail: format!(
                    "a teacher takes one image input and gives one logits output; this model has {} inputs and {} outputs",
                    model.graph.inputs.len(),
                    model.graph.outputs.len()
                ),
            });
        }
        let m = Member {
            path: path.to_path_buf(),
            model,
            prepared: Mutex::new(HashMap::new()),
        };
        m.graph(m.probe_batch())?; // shapes and passes must work before we accept the model
        Ok(m)
    }

    /// The batch size fixed in the model's input (exports without a dynamic
    /// batch axis, e.g. the dynamo exporter's default), if any.
    pub fn fixed_batch(&self) -> Option<usize> {
        match self.model.input_dims.first().and_then(|d| d.first()) {
            Some(onnx::Dim::Fixed(n)) => Some(*n),
            _ => None,
        }
    }

    /// A batch size the model accepts, for questions about its shapes.
    pub fn probe_batch(&self) -> usize {
        self.fixed_batch().unwrap_or(1)
    }

    /// The graph prepared for `batch`: shapes fixed, passes run, memory
    /// planned (cached, so all of it happens once per batch size).
    pub fn plan(&self, batch: usize) -> Result<Arc<Plan>, TeacherError> {
        if let Some(p) = self.prepared.lock().unwrap().get(&batch) {
            return Ok(p.clone());
        }
        let mut g = with_batch(&self.model, batch)?;
        passes::optimize(&mut g)?;
        let plan = Plan::new(Arc::new(g)).map_err(|detail| TeacherError::Invalid {
            file: self.path.display().to_string(),
            detail,
        })?;
        let plan = Arc::new(plan);
        self.prepared.lock().unwrap().insert(batch, plan.clone());
        Ok(plan)
    }

    /// The optimised graph for `batch`.
    pub fn graph(&self, batch: usize) -> Result<Arc<Graph>, TeacherError> {
        Ok(self.plan(batch)?.graph.clone())
    }

    /// The input shape [C, H, W] the model expects.
    pub fn input_chw(&self) -> Result<Vec<usize>, TeacherError> {
        let g = self.graph(self.probe_batch())?;
        Ok(g.values[g.inputs[0]].shape.clone().unwrap_or_default()[1..].to_vec())
    }

    /// Logits for a batch [N, C, H, W] → [N, classes]. A model with a fixed
    /// batch runs in chunks of that size, the last one padded with zeros
    /// (each image's logits do not depend on the others in its batch).
    pub fn logits(&self, x: Tensor) -> Result<Tensor, TeacherError> {
        if let Some(n) = self.fixed_batch()
            && n != x.shape[0]
            && n > 0
        {
            let per = x.len() / x.shape[0].max(1);
            let xs = x.as_f32().ok_or_else(|| TeacherError::Invalid {
                file: self.path.display().to_string(),
                detail: "the input must be float32".into(),
            })?;
            let (mut rows, mut classes) = (Vec::new(), 0);
            for chunk in xs.chunks(n * per) {
                let mut data = chunk.to_vec();
                data.resize(n * per, 0.0);
                let y =
                    self.logits(Tensor::f32([vec![n], x.shape[1..].to_vec()].concat(), data))?;
                classes = y.shape[1];
                let real = chunk.len() / per;
                rows.extend_from_slice(&y.as_f32().unwrap()[..real * classes]);
            }
            return Ok(Tensor::f32(vec![x.shape[0], classes], rows));
        }
        let plan = self.plan(x.shape[0])?;
        let mut out = plan.run(vec![x]).map_err(|detail| TeacherError::Invalid {
            file: self.path.display().to_string(),
            detail,
        })?;
        let y = out.remove(0);
        if y.shape.len() != 2 {
            return Err(TeacherError::Invalid {
                file: self.path.display().to_string(),
                detail: format!(
                    "the output has shape {:?}; a teacher gives [batch, classes] logits",
                    y.shape
                ),
            });
        }
        Ok(y)
    }
}

/// Row-wise softmax of `logits / t`.
pub fn softmax_rows(logits: &Tensor, t: f32) -> Tensor {
    let c = logits.shape[1];
    let v = logits.as_f32().expect("logits are float");
    let mut out = vec![0f32; v.len()];
    for (row, dst) in v.chunks(c).zip(out.chunks_mut(c)) {
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b / t));
        let e: Vec<f64> = row.iter().map(|&x| ((x / t - m) as f64).exp()).collect();
        let s: f64 = e.iter().sum();
        for (d, x) in dst.iter_mut().zip(e) {
            *d = (x / s) as f32;
        }
    }
    Tensor::f32(logits.shape.clone(), out)
}

pub struct Ensemble {
    pub members: Vec<Member>,
}

impl Ensemble {
    pub fn load(paths: &[PathBuf]) -> Result<Self, TeacherError> {
        let members = paths
            .iter()
            .map(|p| Member::load(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Ensemble { members })
    }
}

/// Mean over members of softmax(logits / t); members must share the class
/// count (ml-dr's `ClassificationEnsembleNet` with `return_prob`).
pub fn mean_softmax(logits: &[Tensor], t: f32) -> Result<Tensor, String> {
    let first = logits.first().ok_or("an ensemble needs a member")?;
    let mut acc = vec![0f32; first.len()];
    for (i, l) in logits.iter().enumerate() {
        if l.shape != first.shape {
            return Err(format!(
                "member {i} gives {:?} but member 0 gives {:?}: ensemble members must share the class count",
                l.shape, first.shape
            ));
        }
        acc.iter_mut()
            .zip(softmax_rows(l, t).as_f32().unwrap())
            .for_each(|(a, v)| *a += v);
    }
    let n = logits.len() as f32;
    Ok(Tensor::f32(
        first.shape.clone(),
        acc.into_iter().map(|v| v / n).collect(),
    ))
}
