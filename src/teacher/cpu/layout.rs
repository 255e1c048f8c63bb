//! Shape and layout ops: flatten, reshape, transpose, concat, gather,
//! shape, (un)squeeze, slice, cast.

use super::elementwise::norm_axis;
use crate::teacher::tensor::{DType, Data, Tensor, numel};

/// Applies `f` to the tensor's data whatever its element type.
macro_rules! map_data {
    ($t:expr, |$v:ident| $body:expr) => {
        match &$t.data {
            Data::F32($v) => Data::F32($body),
            Data::I64($v) => Data::I64($body),
            Data::Bool($v) => Data::Bool($body),
        }
    };
}

pub fn flatten_shape(shape: &[usize], axis: i64) -> Result<Vec<usize>, String> {
    let r = shape.len();
    let a = if axis < 0 { axis + r as i64 } else { axis };
    if a < 0 || a as usize > r {
        return Err(format!("Flatten axis {axis} for rank {r}"));
    }
    let a = a as usize;
    Ok(vec![shape[..a].iter().product(), numel(&shape[a..])])
}

pub fn flatten(x: &Tensor, axis: i64) -> Result<Tensor, String> {
    Ok(x.clone().reshaped(flatten_shape(&x.shape, axis)?))
}

/// ONNX Reshape: 0 copies the input dimension (unless allowzero), -1 infers.
pub fn reshape_shape(input: &[usize], spec: &[i64], allowzero: bool) -> Result<Vec<usize>, String> {
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &s) in spec.iter().enumerate() {
        match s {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(
                *input
                    .get(i)
                    .ok_or_else(|| format!("Reshape {spec:?}: no input dimension {i} to copy"))?,
            ),
            s if s >= 0 => out.push(s as usize),
            _ => return Err(format!("Reshape to {spec:?} is invalid")),
        }
    }
    let total = numel(input);
    if let Some(i) = infer {
        let rest: usize = out.iter().product();
        if rest == 0 || !total.is_multiple_of(rest) {
            return Err(format!(
                "Reshape {input:?} to {spec:?}: sizes do not divide"
            ));
        }
        out[i] = total / rest;
    }
    if numel(&out) != total {
        return Err(format!("Reshape {input:?} ({total} elements) to {out:?}"));
    }
    Ok(out)
}

pub fn transpose(x: &Tensor, perm: &[usize]) -> Result<Tensor, String> {
    let shape = super::movement::transpose_shape(&x.shape, perm)?;
    fn go<T: Copy + Send + Sync + Default>(
        v: &[T],
        shape: &[usize],
        perm: &[usize],
    ) -> Result<Vec<T>, String> {
        let mut out = vec![T::default(); v.len()];
        super::movement::transpose_into(v, shape, perm, &mut out)?;
        Ok(out)
    }
    let data = match &x.data {
        Data::F32(v) => Data::F32(go(v, &x.shape, perm)?),
        Data::I64(v) => Data::I64(go(v, &x.shape, perm)?),
        Data::Bool(v) => Data::Bool(go(v, &x.shape, perm)?),
    };
    Ok(Tensor { shape, data })
}

pub fn concat(xs: &[&Tensor], axis: i64) -> Result<Tensor, String> {
    let first = xs.first().ok_or("Concat of nothing")?;
    let a = norm_axis(axis, first.shape.len())?;
    let mut shape = first.shape.clone();
    shape[a] = 0;
    for x in xs {
        if x.shape.len() != first.shape.len()
            || x.shape
                .iter()
                .enumerate()
                .any(|(i, &d)| i != a && d != first.shape[i])
        {
            return Err(format!(
                "Concat of {:?} and {:?} along {a}",
                first.shape, x.shape
            ));
        }
        shape[a] += x.shape[a];
    }
    let outer: usize = shape[..a].iter().product();
    let inner: usize = shape[a + 1..].iter().product();
    // Every input contributes `len(axis) · inner` elements per outer index.
    fn join<T: Clone>(parts: &[(&[T], usize)], outer: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(parts.iter().map(|(v, _)| v.len()).sum());
        for o in 0..outer {
            for (v, run) in parts {
                out.extend_from_slice(&v[o * run..(o + 1) * run]);
            }
        }
        out
    }
    let run = |x: &Tensor| x.shape[a] * inner;
    let data = match first.dtype() {
        DType::I64 => {
            let vs: Vec<Vec<i64>> = xs.iter().map(|x| x.to_i64_vec()).collect();
            Data::I64(join(
                &vs.iter()
                    .zip(xs)
                    .map(|(v, x)| (&v[..], run(x)))
                    .collect::<Vec<_>>(),
                outer,
            ))
        }
        DType::Bool => {
            let vs: Vec<Vec<bool>> = xs
                .iter()
                .map(|x| x.to_i64_vec().into_iter().map(|v| v != 0).collect())
                .collect();
            Data::Bool(join(
                &vs.iter()
                    .zip(xs)
                    .map(|(v, x)| (&v[..], run(x)))
                    .collect::<Vec<_>>(),
                outer,
            ))
        }
        DType::F32 => {
            let vs: Vec<Vec<f32>> = xs.iter().map(|x| x.to_f32_vec()).collect();
            Data::F32(join(
                &vs.iter()
                    .zip(xs)
                    .map(|(v, x)| (&v[..], run(x)))
                    .collect::<Vec<_>>(),
                outer,
            ))
        }
    };
    Ok(Tensor { shape, data })
}

pub fn gather(x: &Tensor, idx: &Tensor, axis: i64) -> Result<Tensor, String> {
    let a = norm_axis(axis, x.shape.len())?;
    let dim = x.shape[a] as i64;
    let ids: Vec<usize> = idx
        .to_i64_vec()
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + dim } else { i };
            if j < 0 || j >= dim {
                Err(format!("Gather index {i} out of range {dim}"))
            } else {
                Ok(j as usize)
            }
        })
        .collect::<Result<_, _>>()?;
    let outer: usize = x.shape[..a].iter().product();
    let inner: usize = x.shape[a + 1..].iter().product();
    let mut shape = x.shape[..a].to_vec();
    shape.extend_from_slice(&idx.shape);
    shape.extend_from_slice(&x.shape[a + 1..]);
    let src: Vec<usize> = (0..outer)
        .flat_map(|o| {
            ids.iter()
                .flat_map(move |&i| (0..inner).map(move |k| (o * x.shape[a] + i) * inner + k))
        })
        .collect();
    let data = map_data!(x, |v| src.iter().map(|&i| v[i]).collect());
    Ok(Tensor { shape, data })
}

pub fn shape_of(x: &[usize], start: i64, end: Option<i64>) -> Tensor {
    let r = x.len() as i64;
    let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (s, e) = (clampi(start), clampi(end.unwrap_or(r)));
    let dims: Vec<i64> = x[s..e.max(s)].iter().map(|&d| d as i64).collect();
    Tensor::i64(vec![dims.len()], dims)
}

pub fn unsqueeze_shape(x: &[usize], axes: &[i64]) -> Result<Vec<usize>, String> {
    let r = x.len() + axes.len();
    let mut ax: Vec<usize> = axes
        .iter()
        .map(|&a| norm_axis(a, r))
        .collect::<Result<_, _>>()?;
    ax.sort_unstable();
    let mut out = Vec::with_capacity(r);
    let mut it = x.iter();
    for i in 0..r {
        out.push(if ax.contains(&i) {
            1
        } else {
            *it.next().ok_or("Unsqueeze axes")?
        });
    }
    Ok(out)
}

pub fn squeeze_shape(x: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>, String> {
    let ax: Vec<usize> = match axes {
        Some(a) => a
            .iter()
            .map(|&a| norm_axis(a, x.len()))
            .collect::<Result<_, _>>()?,
        None => (0..x.len()).filter(|&i| x[i] == 1).collect(),
    };
    if ax.iter().any(|&a| x[a] != 1) {
        return Err(format!("Squeeze of a non-1 axis in {x:?}"));
    }
    Ok(x.iter()
        .enumerate()
        .filter(|(i, _)| !ax.contains(i))
        .map(|(_, &d)| d)
        .collect())
}

/// Per-axis (begin, step, count) of an ONNX Slice (negative and
/// out-of-range bounds clamp as the spec says).
pub fn slice_plan(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<Vec<(i64, i64, usize)>, String> {
    let r = shape.len();
    let axes: Vec<usize> = match axes {
        Some(a) => a
            .iter()
            .map(|&a| norm_axis(a, r))
            .collect::<Result<_, _>>()?,
        None => (0..starts.len()).collect(),
    };
    if starts.len() != axes.len() || ends.len() != axes.len() {
        return Err(format!(
            "Slice starts {starts:?} / ends {ends:?} / axes {axes:?} differ in length"
        ));
    }
    let mut plan: Vec<(i64, i64, usize)> = shape.iter().map(|&d| (0, 1, d)).collect();
    for (k, &a) in axes.iter().enumerate() {
        let d = shape[a] as i64;
        let st = steps.map_or(1, |s| s[k]);
        if st == 0 {
            return Err("Slice step 0".into());
        }
        let norm =
            |v: i64, lo: i64, hi: i64| (if v < 0 { v.saturating_add(d) } else { v }).clamp(lo, hi);
        let (b, e) = if st > 0 {
            (norm(starts[k], 0, d), norm(ends[k], 0, d))
        } else {
            (norm(starts[k], -1, d - 1), norm(ends[k], -1, d - 1))
        };
        let n = if st > 0 {
            (e - b + st - 1).max(0) / st
        } else {
            (b - e - st - 1).max(0) / -st
        };
        plan[a] = (b, st, n as usize);
    }
    Ok(plan)
}

pub fn slice(
    x: &Tensor,
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<Tensor, String> {
    let plan = slice_plan(&x.shape, starts, ends, axes, steps)?;
    let r = x.shape.len();
    let count: Vec<usize> = plan.iter().map(|p| p.2).collect();
    let mut strides = vec![1i64; r];
    for i in (0..r.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * x.shape[i + 1] as i64;
    }
    let n = numel(&count);
    let mut src = Vec::with_capacity(n);
    let mut idx = vec![0usize; r];
    for _ in 0..n {
        let off: i64 = (0..r)
            .map(|d| (plan[d].0 + idx[d] as i64 * plan[d].1) * strides[d])
            .sum();
        src.push(off as usize);
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < count[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    let data = map_data!(x, |v| src.iter().map(|&i| v[i]).collect());
    Ok(Tensor { shape: count, data })
}

pub fn cast(x: &Tensor, to: DType) -> Tensor {
    let data = match to {
        DType::F32 => Data::F32(x.to_f32_vec()),
        DType::I64 => Data::I64(x.to_i64_vec()),
        DType::Bool => Data::Bool(x.to_f32_vec().into_iter().map(|v| v != 0.0).collect()),
    };
    Tensor {
        shape: x.shape.clone(),
        data,
    }
}

/// Broadcasts `x` to `shape` (numpy rules; ONNX Expand's target is itself
/// broadcast with the input shape).
pub fn expand(x: &Tensor, shape: &[usize]) -> Result<Tensor, String> {
    let out = super::elementwise::broadcast_shape(&x.shape, shape)?;
    if out == x.shape {
        return Ok(x.clone());
    }
    let r = out.len();
    let strides = super::elementwise::broadcast_strides(&x.shape, &out);
    let n = numel(&out);
    let mut src = Vec::with_capacity(n);
    let mut idx = vec![0usize; r];
    let mut off = 0usize;
    for _ in 0..n {
        src.push(off);
        for d in (0..r).rev() {
            idx[d] += 1;
            off += strides[d];
            if idx[d] < out[d] {
                break;
            }
            off -= strides[d] * out[d];
            idx[d] = 0;
        }
    }
    let data = map_data!(x, |v| src.iter().map(|&i| v[i]).collect());
    Ok(Tensor { shape: out, data })
}

pub fn tile(x: &Tensor, repeats: &[i64]) -> Result<Tensor, String> {
    if repeats.len() != x.shape.len() || repeats.iter().any(|&r| r < 0) {
        return Err(format!("Tile repeats {repeats:?} for shape {:?}", x.shape));
    }
    let mut t = x.clone();
    for (axis, &rep) in repeats.iter().enumerate() {
        if rep != 1 {
            let copies: Vec<&Tensor> = std::iter::repeat_n(&t, rep as usize).collect();
            t = if copies.is_empty() {
                let mut shape = t.shape.clone();
                shape[axis] = 0;
                Tensor {
                    shape,
                    data: map_data!(t, |_v| Vec::new()),
                }
            } else {
                concat(&copies, axis as i64)?
            };
        }
    }
    Ok(t)
}

/// Split sizes along `axis`: given, or equal parts for `parts` outputs.
pub fn split_sizes(
    dim: usize,
    sizes: Option<Vec<i64>>,
    parts: usize,
) -> Result<Vec<usize>, String> {
    match sizes {
        Some(s) => {
            let s: Vec<usize> = s
                .into_iter()
                .map(|v| usize::try_from(v).map_err(|_| format!("Split size {v}")))
                .collect::<Result<_, _>>()?;
            if s.iter().sum::<usize>() != dim {
                return Err(format!("Split sizes {s:?} do not add up to {dim}"));
            }
            Ok(s)
        }
        None => {
            let each = dim.div_ceil(parts.max(1));
            Ok((0..parts)
                .map(|i| each.min(dim.saturating_sub(i * each)))
                .collect())
        }
    }
}

pub fn split(x: &Tensor, axis: i64, sizes: &[usize]) -> Result<Vec<Tensor>, String> {
    let a = norm_axis(axis, x.shape.len())?;
    let mut start = 0i64;
    sizes
        .iter()
        .map(|&s| {
            let t = slice(x, &[start], &[start + s as i64], Some(&[a as i64]), None);
            start += s as i64;
            t
        })
        .collect()
}

pub fn constant_of_shape(shape: &Tensor, value: &Tensor) -> Result<Tensor, String> {
    let dims: Vec<usize> = shape
        .to_i64_vec()
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| format!("ConstantOfShape dim {d}")))
        .collect::<Result<_, _>>()?;
    let n = numel(&dims);
    let data = map_data!(value, |v| vec![v[0]; n]);
    Ok(Tensor { shape: dims, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_rules() {
        assert_eq!(reshape_shape(&[2, 3, 4], &[0, -1], false).unwrap(), [2, 12]);
        assert_eq!(reshape_shape(&[2, 3, 4], &[-1], false).unwrap(), [24]);
        assert!(reshape_shape(&[2, 3, 4], &[5, -1], false).is_err());
    }

    #[test]
    fn transpose_gather_slice() {
        let x = Tensor::f32(vec![2, 3], vec![0., 1., 2., 3., 4., 5.]);
        assert_eq!(
            transpose(&x, &[1, 0]).unwrap().as_f32().unwrap(),
            &[0., 3., 1., 4., 2., 5.]
        );
        let g = gather(&x, &Tensor::i64(vec![2], vec![2, -3]), 1).unwrap();
        assert_eq!(
            (g.shape.clone(), g.to_f32_vec()),
            (vec![2, 2], vec![2., 0., 5., 3.])
        );
        let s = slice(&x, &[1], &[i64::MAX], Some(&[1]), None).unwrap();
        assert_eq!(s.to_f32_vec(), [1., 2., 4., 5.]);
        let s = slice(&x, &[-1], &[i64::MIN], Some(&[1]), Some(&[-1])).unwrap();
        assert_eq!(s.to_f32_vec(), [2., 1., 0., 5., 4., 3.]);
        let c = concat(&[&x, &x], 0).unwrap();
        assert_eq!(c.shape, [4, 3]);
    }
}
