//! Ops that move elements without computing: views of their input
//! (Transpose, Reshape and its kin, Slice, Split, a one-index Gather,
//! Expand, Pad by zero) and Concat and Pad, whose inputs are copied into
//! their places.

use super::view::{dense_like, reshaped, row_major};
use super::{Lowering, Pending, Src};
use crate::teacher::cpu::elementwise::norm_axis;
use crate::teacher::cpu::indexing::pad_amounts;
use crate::teacher::cpu::layout::slice_plan;
use crate::teacher::cpu::plan::is_alias;
use crate::teacher::gpu::conv::bf16;
use crate::teacher::gpu::layout::Strided;
use crate::teacher::graph::{Node, Op, PadMode};

impl Lowering<'_> {
    /// Lowers `node` if it moves elements; false for a computing op.
    pub(super) fn movement(&mut self, node: &Node) -> Result<bool, String> {
        let out = node.outputs[0];
        let os = self.shapes[out].clone();
        match &node.op {
            Op::Transpose { perm } => {
                let x = self.act_in(node, 0)?;
                let v = self.view(x)?.clone();
                let perm = perm
                    .clone()
                    .unwrap_or_else(|| (0..v.strides.len()).rev().collect());
                let strides = perm.iter().map(|&a| v.strides[a]).collect();
                self.alias(out, &v, v.offset, strides);
            }
            op if is_alias(op) => {
                let x = self.act_in(node, 0)?;
                let v = self.view(x)?.clone();
                match reshaped(&self.shapes[x], &v.strides, &os) {
                    Some(strides) => self.alias(out, &v, v.offset, strides),
                    None => {
                        // Not expressible as a view: the elements in
                        // row-major order first.
                        let t = self.materialize(x, row_major(&self.shapes[x]))?;
                        let tv = self.view(t)?.clone();
                        self.alias(out, &tv, 0, row_major(&os));
                    }
                }
            }
            Op::Slice => {
                let x = self.act_in(node, 0)?;
                let v = self.view(x)?.clone();
                let ints = |k: usize| self.constant(node, k).map(|t| t.to_i64_vec());
                let (Some(starts), Some(ends)) = (ints(1), ints(2)) else {
                    return Err("Slice bounds that are not constants".into());
                };
                let (axes, steps) = (ints(3), ints(4));
                if node.inputs.len() > 3 && node.inputs[3].is_some() && axes.is_none()
                    || node.inputs.len() > 4 && node.inputs[4].is_some() && steps.is_none()
                {
                    return Err("Slice axes or steps that are not constants".into());
                }
                let plan = slice_plan(
                    &self.shapes[x],
                    &starts,
                    &ends,
                    axes.as_deref(),
                    steps.as_deref(),
                )?;
                let (mut offset, mut strides) = (v.offset, v.strides.clone());
                for (a, &(begin, step, n)) in plan.iter().enumerate() {
                    if n == 0 {
                        continue;
                    }
                    if step < 0 {
                        return Err("a Slice with a negative step is not on the GPU yet".into());
                    }
                    offset += begin as usize * v.strides[a];
                    strides[a] = v.strides[a] * step as usize;
                }
                self.alias(out, &v, offset, strides);
            }
            Op::Split { axis, .. } => {
                let x = self.act_in(node, 0)?;
                let v = self.view(x)?.clone();
                let a = norm_axis(*axis, self.shapes[x].len())?;
                let mut offset = v.offset;
                for &o in &node.outputs {
                    self.alias(o, &v, offset, v.strides.clone());
                    offset += self.shapes[o][a] * v.strides[a];
                }
            }
            Op::Gather { axis } => {
                let x = self.act_in(node, 0)?;
                let v = self.view(x)?.clone();
                let xs = self.shapes[x].clone();
                let a = norm_axis(*axis, xs.len())?;
                let idx = self
                    .constant(node, 1)
                    .ok_or("a Gather of computed indices is not on the GPU yet")?;
                // Indices that step evenly along each of their axes (one
                // index; the dynamo exporter's as_strided) are a view.
                let (base, steps) = affine_indices(&idx.to_i64_vec(), &idx.shape, xs[a])
                    .ok_or("a Gather of indices that do not step evenly is not on the GPU yet")?;
                let mut strides = v.strides[..a].to_vec();
                strides.extend(steps.iter().map(|&st| st * v.strides[a]));
                strides.extend_from_slice(&v.strides[a + 1..]);
                self.alias(out, &v, v.offset + base * v.strides[a], strides);
            }
            Op::Expand => {
                let x = self.act_in(node, 0)?;
                let v = self.view(x)?.clone();
                let strides = broadcast_strides(&self.shapes[x], &v.strides, &os);
                self.alias(out, &v, v.offset, strides);
            }
            Op::Concat { axis } => self.concat(node, *axis)?,
            Op::Pad { mode } => self.pad(node, *mode)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Constant padding (Swin's to a multiple of its window): nothing when
    /// every amount is zero, else the pad value everywhere and the input
    /// copied inside.
    fn pad(&mut self, node: &Node, mode: PadMode) -> Result<(), String> {
        let out = node.outputs[0];
        let os = self.shapes[out].clone();
        let x = self.act_in(node, 0)?;
        let v = self.view(x)?.clone();
        let ints = |k: usize| self.constant(node, k).map(|t| t.to_i64_vec());
        let pads = ints(1).ok_or("Pad amounts that are not constants")?;
        if node.inputs.get(3).copied().flatten().is_some() && ints(3).is_none() {
            return Err("Pad axes that are not constants".into());
        }
        let amounts = pad_amounts(os.len(), &pads, ints(3).as_deref())?;
        if amounts.iter().all(|&(b, e)| b == 0 && e == 0) {
            self.alias(out, &v, v.offset, v.strides.clone());
            return Ok(());
        }
        if mode != PadMode::Constant || amounts.iter().any(|&(b, e)| b < 0 || e < 0) {
            return Err(format!(
                "{mode:?} padding by {amounts:?} is not on the GPU yet (constant padding only)"
            ));
        }
        let value = match node.inputs.get(2).copied().flatten() {
            None => 0.0,
            Some(_) => self
                .constant(node, 2)
                .and_then(|t| t.to_f32_vec().first().copied())
                .ok_or("a Pad value that is not a constant")?,
        };
        let strides = dense_like(&os, &self.shapes[x], &v.strides);
        self.own(out, strides.clone());
        self.bf16_consts.push(vec![bf16(value)]);
        let fill = Src::Const(self.bf16_consts.len() - 1);
        let all = self.span_of(out, false);
        let fill_copy = Strided {
            shape: os.clone(),
            src: vec![0; os.len()],
            dst: strides.clone(),
        };
        self.pending.push(Pending::Copy(fill, all, fill_copy));
        let (src, mut dst) = (self.span_of(x, false), self.span_of(out, false));
        dst.offset = amounts
            .iter()
            .zip(&strides)
            .map(|(&(b, _), &st)| b as usize * st)
            .sum();
        let inside = Strided {
            shape: self.shapes[x].clone(),
            src: v.strides,
            dst: strides,
        };
        self.pending
            .push(Pending::Copy(Src::Arena(src), dst, inside));
        Ok(())
    }

    /// Channel concatenation of NHWC maps takes the concat kernel;
    /// along any other axis each input is copied into its place, the
    /// output laid out as its first computed input.
    fn concat(&mut self, node: &Node, axis: i64) -> Result<(), String> {
        let out = node.outputs[0];
        let os = self.shapes[out].clone();
        let a = norm_axis(axis, os.len())?;
        let computed = |l: &Self, k: usize| node.inputs[k].is_some_and(|v| l.views[v].is_some());
        // NCHW maps stored NHWC (DenseNet's): the channel concat kernel.
        let stored_nhwc = |l: &Self, k: usize| {
            node.inputs[k].is_some_and(|v| {
                let s = &l.shapes[v];
                l.views[v].as_ref().is_some_and(|w| {
                    w.offset == 0
                        && super::shape4(s).is_some_and(|s4| {
                            let want = super::nhwc(&s4, s4[1]);
                            (0..4).all(|ax| s[ax] == 1 || w.strides[ax] == want[ax])
                        })
                })
            })
        };
        if os.len() == 4 && a == 1 && (0..node.inputs.len()).all(|k| stored_nhwc(self, k)) {
            let xs = (0..node.inputs.len())
                .map(|k| self.nhwc_in(node, k))
                .collect::<Result<Vec<_>, _>>()?;
            let o4 = super::shape4(&os).ok_or("output not 4-D")?;
            self.own(out, super::nhwc(&o4, os[1]));
            let mut offset = 0;
            for x in xs {
                let c_in = self.shapes[x][1];
                let (xs, ys) = (self.span(x), self.span(out));
                self.pending
                    .push(Pending::Concat(xs, ys, (c_in, os[1], offset)));
                offset += c_in;
            }
            return Ok(());
        }
        let strides = match (0..node.inputs.len()).find(|&k| computed(self, k)) {
            Some(k) => {
                let x = node.inputs[k].unwrap();
                dense_like(&os, &self.shapes[x], &self.view(x)?.strides)
            }
            None => return Err("no input is an activation".into()),
        };
        self.own(out, strides.clone());
        let mut at = 0;
        for k in 0..node.inputs.len() {
            let Some(x) = node.inputs[k] else { continue };
            let (xs, src) = match self.views[x].clone() {
                Some(v) => (
                    self.shapes[x].clone(),
                    (Src::Arena(self.span_of(x, false)), v.strides),
                ),
                None => {
                    let t = self
                        .constant(node, k)
                        .ok_or_else(|| format!("input {k} is neither computed nor constant"))?;
                    (
                        t.shape.clone(),
                        (Src::Const(self.const_bf16(t)), row_major(&t.shape)),
                    )
                }
            };
            let mut dst = self.span_of(out, false);
            dst.offset = at * strides[a];
            let copy = Strided {
                shape: xs.clone(),
                src: src.1,
                dst: strides.clone(),
            };
            self.pending.push(Pending::Copy(src.0, dst, copy));
            at += xs[a];
        }
        Ok(())
    }
}

/// Strides of a view of `shape` (with `strides`) broadcast to `to` as
/// ONNX broadcasts: right-aligned, axes of one repeated (stride 0).
pub(super) fn broadcast_strides(shape: &[usize], strides: &[usize], to: &[usize]) -> Vec<usize> {
    let lead = to.len() - shape.len();
    (0..to.len())
        .map(|a| match a.checked_sub(lead) {
            Some(i) if shape[i] == to[a] => strides[i],
            _ => 0,
        })
        .collect()
}

/// Constant Gather indices into an axis of `dim` as (first, step per index
/// axis) when index [i, j, ..] is first + i step_0 + j step_1 + ..., every
/// index in range and every step >= 0 (negative ones counted from the end).
pub(super) fn affine_indices(
    idx: &[i64],
    shape: &[usize],
    dim: usize,
) -> Option<(usize, Vec<usize>)> {
    let norm: Vec<i64> = idx
        .iter()
        .map(|&i| if i < 0 { i + dim as i64 } else { i })
        .collect();
    if norm.is_empty() || norm.iter().any(|&i| i < 0 || i >= dim as i64) {
        return None;
    }
    let base = norm[0];
    let rm = super::view::row_major(shape);
    let steps: Vec<i64> = (0..shape.len())
        .map(|k| if shape[k] > 1 { norm[rm[k]] - base } else { 0 })
        .collect();
    if steps.iter().any(|&st| st < 0) {
        return None;
    }
    let mut coord = vec![0usize; shape.len()];
    for &got in &norm {
        let want = base
            + coord
                .iter()
                .zip(&steps)
                .map(|(&c, &st)| c as i64 * st)
                .sum::<i64>();
        if got != want {
            return None;
        }
        for k in (0..shape.len()).rev() {
            coord[k] += 1;
            if coord[k] < shape[k] {
                break;
            }
            coord[k] = 0;
        }
    }
    Some((
        base as usize,
        steps.into_iter().map(|st| st as usize).collect(),
    ))
}
