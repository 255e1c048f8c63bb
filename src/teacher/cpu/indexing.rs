//! Ops that build tensors by index rather than arithmetic: Pad, Range,
//! ScatterND. Exporters emit them around windowed attention (Swin pads its
//! windows and builds its shifted-window mask with Range/ScatterND, folded
//! at load).

use super::elementwise::norm_axis;
use crate::teacher::graph::PadMode;
use crate::teacher::tensor::{Data, Tensor};

/// Per-axis (begin, end) pads of an ONNX Pad: `pads` holds the begins then
/// the ends, for every axis or for `axes` (opset 18). Negative pads crop.
pub fn pad_amounts(
    rank: usize,
    pads: &[i64],
    axes: Option<&[i64]>,
) -> Result<Vec<(i64, i64)>, String> {
    let axes: Vec<usize> = match axes {
        Some(a) => a
            .iter()
            .map(|&a| norm_axis(a, rank))
            .collect::<Result<_, _>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!(
            "Pad pads {pads:?} do not give a begin and an end for each of {} axes",
            axes.len()
        ));
    }
    let mut out = vec![(0, 0); rank];
    for (k, &a) in axes.iter().enumerate() {
        out[a] = (pads[k], pads[k + axes.len()]);
    }
    Ok(out)
}

pub fn pad_shape(shape: &[usize], amounts: &[(i64, i64)]) -> Result<Vec<usize>, String> {
    shape
        .iter()
        .zip(amounts)
        .map(|(&d, &(b, e))| {
            let n = d as i64 + b + e;
            if n < 0 {
                Err(format!(
                    "Pad {amounts:?} crops more than the shape {shape:?} holds"
                ))
            } else {
                Ok(n as usize)
            }
        })
        .collect()
}

/// ONNX Pad on a float tensor.
pub fn pad(
    x: &Tensor,
    amounts: &[(i64, i64)],
    value: f32,
    mode: PadMode,
) -> Result<Tensor, String> {
    let v = x.as_f32().ok_or("Pad is supported on float tensors")?;
    let out_shape = pad_shape(&x.shape, amounts)?;
    let r = x.shape.len();
    if mode != PadMode::Constant
        && x.shape
            .iter()
            .zip(amounts)
            .any(|(&d, &(b, e))| d == 0 && b + e > 0)
    {
        return Err("Pad: reflect/edge padding of an empty axis".into());
    }
    if mode == PadMode::Reflect
        && x.shape
            .iter()
            .zip(amounts)
            .any(|(&d, &(b, e))| b.max(e) >= d as i64 && (b > 0 || e > 0))
    {
        return Err(format!(
            "Pad: reflect pads {amounts:?} reach past the shape {:?}",
            x.shape
        ));
    }
    // Source index along one axis, or None for the constant.
    let source = |axis: usize, o: usize| -> Option<usize> {
        let d = x.shape[axis] as i64;
        let i = o as i64 - amounts[axis].0;
        if (0..d).contains(&i) {
            return Some(i as usize);
        }
        match mode {
            PadMode::Constant => None,
            PadMode::Edge => Some(i.clamp(0, d - 1) as usize),
            PadMode::Reflect => Some(if i < 0 { -i } else { 2 * (d - 1) - i } as usize),
        }
    };
    let maps: Vec<Vec<Option<usize>>> = (0..r)
        .map(|a| (0..out_shape[a]).map(|o| source(a, o)).collect())
        .collect();
    let mut strides = vec![1usize; r];
    for a in (0..r.saturating_sub(1)).rev() {
        strides[a] = strides[a + 1] * x.shape[a + 1];
    }
    let n: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; r];
    for _ in 0..n {
        let mut off = Some(0usize);
        for a in 0..r {
            off = off.and_then(|o| maps[a][idx[a]].map(|s| o + s * strides[a]));
        }
        out.push(off.map_or(value, |o| v[o]));
        for a in (0..r).rev() {
            idx[a] += 1;
            if idx[a] < out_shape[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    Ok(Tensor::f32(out_shape, out))
}

/// ONNX Range: `start, start + delta, ...` while below `limit` (above, for a
/// negative delta), in the inputs' type.
pub fn range(start: &Tensor, limit: &Tensor, delta: &Tensor) -> Result<Tensor, String> {
    if start.len() != 1 || limit.len() != 1 || delta.len() != 1 {
        return Err("Range takes scalar start, limit and delta".into());
    }
    let count = |s: f64, l: f64, d: f64| -> Result<usize, String> {
        if d == 0.0 {
            return Err("Range delta 0".into());
        }
        let n = ((l - s) / d).ceil().max(0.0);
        if n > 1e8 {
            return Err(format!("Range of {n} elements"));
        }
        Ok(n as usize)
    };
    match (start.as_i64(), limit.as_i64(), delta.as_i64()) {
        (Some(s), Some(l), Some(d)) => {
            let n = count(s[0] as f64, l[0] as f64, d[0] as f64)?;
            Ok(Tensor::i64(
                vec![n],
                (0..n as i64).map(|k| s[0] + k * d[0]).collect(),
            ))
        }
        _ => {
            let (s, l, d) = (
                start.to_f32_vec()[0],
                limit.to_f32_vec()[0],
                delta.to_f32_vec()[0],
            );
            let n = count(s as f64, l as f64, d as f64)?;
            Ok(Tensor::f32(
                vec![n],
                (0..n).map(|k| s + k as f32 * d).collect(),
            ))
        }
    }
}

/// ONNX ScatterND without reduction: `indices [..., k]` address slices of
/// the first k axes of `data`; each is replaced by the matching `updates`.
pub fn scatter_nd(data: &Tensor, indices: &Tensor, updates: &Tensor) -> Result<Tensor, String> {
    let idx = indices.as_i64().ok_or("ScatterND indices must be int64")?;
    let k = *indices
        .shape
        .last()
        .ok_or("ScatterND indices need a last axis")?;
    let r = data.shape.len();
    if k > r {
        return Err(format!("ScatterND index length {k} for rank {r}"));
    }
    let slice: usize = data.shape[k..].iter().product();
    let n = idx.len().checked_div(k).unwrap_or(0);
    if updates.len() != n * slice {
        return Err(format!(
            "ScatterND updates {:?} do not match {n} slices of {slice}",
            updates.shape
        ));
    }
    let mut offsets = Vec::with_capacity(n);
    for t in idx.chunks(k.max(1)).take(n) {
        let mut off = 0usize;
        for (a, &i) in t.iter().enumerate() {
            let d = data.shape[a] as i64;
            let i = if i < 0 { i + d } else { i };
            if !(0..d).contains(&i) {
                return Err(format!("ScatterND index {t:?} outside {:?}", data.shape));
            }
            off = off * data.shape[a] + i as usize;
        }
        offsets.push(off * slice);
    }
    let mut out = data.clone();
    macro_rules! scatter {
        ($dst:expr, $src:expr) => {{
            for (j, &o) in offsets.iter().enumerate() {
                $dst[o..o + slice].copy_from_slice(&$src[j * slice..(j + 1) * slice]);
            }
        }};
    }
    match (&mut out.data, &updates.data) {
        (Data::F32(d), Data::F32(u)) => {
            scatter!(d, u)
        }
        (Data::I64(d), Data::I64(u)) => {
            scatter!(d, u)
        }
        (Data::Bool(d), Data::Bool(u)) => {
            scatter!(d, u)
        }
        _ => return Err("ScatterND data and updates differ in type".into()),
    }
    Ok(out)
}
