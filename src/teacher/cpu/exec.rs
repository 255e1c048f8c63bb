//! Runs a `Plan`: each planned op reads views of its inputs (initializers,
//! graph inputs, arena regions) and writes its output region in place;
//! other ops run the allocating kernels on copies and their results are
//! copied back. Output regions never overlap a live input (the plan's
//! invariant), so the arena splits into one mutable and a few shared parts.

use std::collections::BTreeMap;
use std::ops::Range;

use super::plan::{Plan, Slot, is_alias};
use super::{attention, conv, elementwise, eval, linear, movement, norm};
use crate::teacher::graph::{Node, Op, Unary, ValueId};
use crate::teacher::tensor::{Tensor, View};

/// Op name → (seconds, calls).
pub type Profile = BTreeMap<String, (f64, usize)>;

/// The arena around the regions a node writes: shared slices of the rest.
struct Reads<'a> {
    gaps: [(usize, &'a [f32]); 3],
}

impl<'a> Reads<'a> {
    fn get(&self, r: &Range<usize>) -> Option<&'a [f32]> {
        self.gaps.iter().find_map(|&(start, s)| {
            (r.start >= start && r.end <= start + s.len())
                .then(|| &s[r.start - start..r.end - start])
        })
    }
}

/// Splits `arena` into the output region `w`, an optional scratch region
/// and shared slices of everything else.
fn carve(
    arena: &mut [f32],
    w: Range<usize>,
    scratch: Option<Range<usize>>,
) -> (Reads<'_>, &mut [f32], Option<&mut [f32]>) {
    let (mut regions, swap) = match &scratch {
        Some(s) if s.start < w.start => ([s.clone(), w.clone()], true),
        Some(s) => ([w.clone(), s.clone()], false),
        None => ([w.clone(), w.end..w.end], false),
    };
    if regions[1].start < regions[0].end {
        regions[1] = regions[0].end..regions[0].end; // never for a valid plan
    }
    let (g0, rest) = arena.split_at_mut(regions[0].start);
    let (m0, rest) = rest.split_at_mut(regions[0].len());
    let (g1, rest) = rest.split_at_mut(regions[1].start - regions[0].end);
    let (m1, g2) = rest.split_at_mut(regions[1].len());
    let reads = Reads {
        gaps: [(0, &*g0), (regions[0].end, &*g1), (regions[1].end, &*g2)],
    };
    match (scratch.is_some(), swap) {
        (false, _) => (reads, m0, None),
        (true, false) => (reads, m0, Some(m1)),
        (true, true) => (reads, m1, Some(m0)),
    }
}

impl Plan {
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
        self.run_profiled(inputs, None)
    }

    /// `run`, adding each node's wall time to `profile`.
    pub fn run_profiled(
        &self,
        inputs: Vec<Tensor>,
        mut profile: Option<&mut Profile>,
    ) -> Result<Vec<Tensor>, String> {
        let g = &*self.graph;
        if inputs.len() != g.inputs.len() {
            return Err(format!(
                "{} inputs given, the model takes {}",
                inputs.len(),
                g.inputs.len()
            ));
        }
        for (&id, t) in g.inputs.iter().zip(&inputs) {
            if let Some(want) = &g.values[id].shape
                && *want != t.shape
            {
                return Err(format!(
                    "input `{}` has shape {:?}, the model was prepared for {want:?}",
                    g.values[id].name, t.shape
                ));
            }
            if t.as_f32().is_none() {
                return Err(format!("input `{}` is not float32", g.values[id].name));
            }
        }
        // One arena per plan, reused run after run; a concurrent run of the
        // same plan gets its own.
        let mut own = Vec::new();
        let mut guard = self.arena.try_lock().ok();
        let arena = guard.as_deref_mut().unwrap_or(&mut own);
        if arena.len() < self.arena_len {
            arena.resize(self.arena_len, 0.0);
        }
        let mut heap: Vec<Option<Tensor>> = vec![None; g.values.len()];
        for (i, n) in g.nodes.iter().enumerate() {
            let t0 = std::time::Instant::now();
            self.step(i, n, &inputs, arena, &mut heap)
                .map_err(|e| format!("node `{}` ({}): {e}", n.name, n.op.name()))?;
            if let Some(p) = profile.as_deref_mut() {
                let e = p.entry(n.op.name()).or_default();
                e.0 += t0.elapsed().as_secs_f64();
                e.1 += 1;
            }
            for &v in n.inputs.iter().flatten() {
                if self.last_use[v] == i {
                    heap[v] = None;
                }
            }
        }
        g.outputs
            .iter()
            .map(|&o| {
                self.tensor(o, &inputs, arena, &heap)
                    .ok_or_else(|| format!("output `{}` was not computed", g.values[o].name))
            })
            .collect()
    }

    /// The value as an owned tensor (outputs and the fallback's inputs).
    fn tensor(
        &self,
        v: ValueId,
        inputs: &[Tensor],
        arena: &[f32],
        heap: &[Option<Tensor>],
    ) -> Option<Tensor> {
        let g = &*self.graph;
        if let Some(t) = &heap[v] {
            return Some(t.clone());
        }
        if let Some(t) = &g.values[v].constant {
            return Some((**t).clone());
        }
        let r = match &self.slots[v] {
            Slot::Alias(r) => *r,
            _ => v,
        };
        let data = match &self.slots[r] {
            _ if heap[r].is_some() => heap[r].as_ref()?.as_f32()?,
            Slot::Input(k) => inputs[*k].as_f32()?,
            Slot::Arena(range) => &arena[range.clone()],
            _ => return None,
        };
        Some(Tensor::f32(g.values[v].shape.clone()?, data.to_vec()))
    }

    fn step(
        &self,
        i: usize,
        n: &Node,
        inputs: &[Tensor],
        arena: &mut [f32],
        heap: &mut [Option<Tensor>],
    ) -> Result<(), String> {
        let g = &*self.graph;
        let out = n.outputs[0];
        let planned = n.outputs.len() == 1;
        match (&self.slots[out], planned) {
            (Slot::Alias(r), true) if heap[*r].is_none() => return Ok(()),
            (Slot::Arena(w), true) if !is_alias(&n.op) => {
                let (reads, dst, scratch) = carve(arena, w.clone(), self.scratch[i].clone());
                let view = |v: Option<ValueId>| -> Option<View> {
                    let v = v?;
                    let shape = g.values[v].shape.as_deref()?;
                    if let Some(t) = &heap[v] {
                        return t.view();
                    }
                    if let Some(t) = &g.values[v].constant {
                        return t.view();
                    }
                    let r = match self.slots[v] {
                        Slot::Alias(r) => r,
                        _ => v,
                    };
                    let data = match &self.slots[r] {
                        _ if heap[r].is_some() => heap[r].as_ref()?.as_f32()?,
                        Slot::Input(k) => inputs[*k].as_f32()?,
                        Slot::Arena(range) => reads.get(range)?,
                        _ => return None,
                    };
                    Some(View { data, shape })
                };
                if run_into(n, &view, dst, scratch, super::graph_batch(g))? {
                    return Ok(());
                }
            }
            _ => {}
        }
        // Fallback: the allocating kernel on owned copies.
        let owned: Vec<Option<Tensor>> = n
            .inputs
            .iter()
            .map(|v| v.and_then(|v| self.tensor(v, inputs, arena, heap)))
            .collect();
        let refs: Vec<Option<&Tensor>> = owned.iter().map(Option::as_ref).collect();
        let outs = eval(&n.op, &refs, n.outputs.len(), super::graph_batch(g))?;
        for (&o, t) in n.outputs.iter().zip(outs) {
            match (&self.slots[o], t.as_f32()) {
                (Slot::Arena(w), Some(data)) if data.len() == w.len() => {
                    arena[w.clone()].copy_from_slice(data);
                    heap[o] = None;
                }
                _ => heap[o] = Some(t),
            }
        }
        Ok(())
    }
}

/// Runs a planned op into `dst`; `Ok(false)` when it has no in-place
/// kernel or an input is not float (the caller falls back).
fn run_into<'a>(
    n: &Node,
    view: &dyn Fn(Option<ValueId>) -> Option<View<'a>>,
    dst: &mut [f32],
    scratch: Option<&mut [f32]>,
    batch: usize,
) -> Result<bool, String> {
    let arg = |k: usize| view(n.inputs.get(k).copied().flatten());
    let has = |k: usize| n.inputs.get(k).copied().flatten().is_some();
    // Optional input k: absent, or present and float.
    let opt = |k: usize| -> Option<Option<View<'a>>> {
        if has(k) { arg(k).map(Some) } else { Some(None) }
    };
    macro_rules! need {
        ($e:expr) => {
            match $e {
                Some(v) => v,
                None => return Ok(false),
            }
        };
    }
    let x = need!(arg(0));
    match &n.op {
        Op::Conv(c) => {
            let (w, b, r) = (need!(arg(1)), need!(opt(2)), need!(opt(3)));
            conv::conv2d_into(c, x, w, b.map(|b| b.data), r.map(|r| r.data), dst)?;
        }
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => {
            let (b, c) = (need!(arg(1)), need!(opt(2)));
            linear::gemm_into(x, b, c, *alpha, *beta, *trans_a, *trans_b, batch, dst)?;
        }
        Op::MatMul => {
            let (b, bias) = (need!(arg(1)), need!(opt(2)));
            linear::matmul_into(x, b, bias.map(|b| b.data), batch, dst)?;
        }
        Op::Unary(u) if *u != Unary::Identity => elementwise::unary_into(*u, x.data, dst),
        Op::Binary(b) => elementwise::binary_into(*b, x, need!(arg(1)), dst)?,
        Op::Clip => {
            let (lo, hi) = (need!(opt(1)), need!(opt(2)));
            let first =
                |t: Option<View>, d: f32| t.and_then(|t| t.data.first().copied()).unwrap_or(d);
            elementwise::clip_into(
                x.data,
                first(lo, f32::NEG_INFINITY),
                first(hi, f32::INFINITY),
                dst,
            );
        }
        Op::HardSigmoid { alpha, beta } => {
            elementwise::hard_sigmoid_into(x.data, *alpha, *beta, dst)
        }
        Op::Pool(p) => conv::pool2d_into(p, x, dst)?,
        Op::GlobalAveragePool => conv::global_average_pool_into(x, dst)?,
        Op::Softmax { axis } => norm::softmax_into(x, *axis, dst)?,
        Op::LayerNorm { axis, eps } => {
            let (s, b) = (need!(arg(1)), need!(opt(2)));
            norm::layer_norm_into(x, s.data, b.map(|b| b.data), *axis, *eps, dst)?;
        }
        Op::Gelu { tanh } => norm::gelu_into(x.data, *tanh, dst),
        Op::Transpose { perm } => {
            let p = perm
                .clone()
                .unwrap_or_else(|| (0..x.shape.len()).rev().collect());
            movement::transpose_into(x.data, x.shape, &p, dst)?;
        }
        Op::Concat { axis } => {
            let mut xs = Vec::with_capacity(n.inputs.len());
            for &v in n.inputs.iter().flatten() {
                xs.push(need!(view(Some(v))));
            }
            let a = elementwise::norm_axis(*axis, x.shape.len())?;
            movement::concat_into(&xs, a, dst)?;
        }
        Op::Attention { scale } => {
            let (k, v, b) = (need!(arg(1)), need!(arg(2)), need!(opt(3)));
            let scratch = scratch.ok_or("internal: attention without scratch")?;
            attention::attention_into(x, k, v, b, *scale, scratch, dst)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}
