//! Elementwise math with numpy broadcasting, activations, softmax and
//! reductions.

use rayon::prelude::*;

use crate::teacher::graph::{Binary, ReduceKind, Unary};

use crate::teacher::tensor::{Data, Tensor, View, numel};

/// Elements per parallel task of elementwise ops.
pub(crate) const PAR_CHUNK: usize = 1 << 14;

/// numpy's broadcast of two shapes.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let da = if i + a.len() >= n {
                a[i + a.len() - n]
            } else {
                1
            };
            let db = if i + b.len() >= n {
                b[i + b.len() - n]
            } else {
                1
            };
            match (da, db) {
                (x, y) if x == y => Ok(x),
                (1, y) => Ok(y),
                (x, 1) => Ok(x),
                _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
            }
        })
        .collect()
}

/// Element strides of `shape` read as `out` (0 along broadcast axes).
pub(crate) fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; out.len()];
    let mut s = 1;
    for i in (0..shape.len()).rev() {
        let o = i + out.len() - shape.len();
        strides[o] = if shape[i] == 1 { 0 } else { s };
        s *= shape[i];
    }
    strides
}

/// Visits output positions with the matching input offsets.
fn zip_broadcast<T: Copy + Send + Sync, U: Send + Default + Clone>(
    a: &[T],
    ash: &[usize],
    b: &[T],
    bsh: &[usize],
    f: impl Fn(T, T) -> U + Send + Sync,
) -> Result<(Vec<usize>, Vec<U>), String> {
    let out = broadcast_shape(ash, bsh)?;
    let mut res = vec![U::default(); numel(&out)];
    zip_broadcast_into(a, ash, b, bsh, f, &mut res)?;
    Ok((out, res))
}

/// `zip_broadcast` writing into `res` (every element is written).
fn zip_broadcast_into<T: Copy + Send + Sync, U: Send>(
    a: &[T],
    ash: &[usize],
    b: &[T],
    bsh: &[usize],
    f: impl Fn(T, T) -> U + Send + Sync,
    res: &mut [U],
) -> Result<(), String> {
    let out = broadcast_shape(ash, bsh)?;
    if res.len() != numel(&out) {
        return Err(format!("output of {} for shape {out:?}", res.len()));
    }
    if ash == bsh {
        res.par_chunks_mut(PAR_CHUNK)
            .zip(a.par_chunks(PAR_CHUNK).zip(b.par_chunks(PAR_CHUNK)))
            .for_each(|(d, (x, y))| {
                for (d, (&x, &y)) in d.iter_mut().zip(x.iter().zip(y)) {
                    *d = f(x, y);
                }
            });
        return Ok(());
    }
    if b.len() == 1 {
        res.par_chunks_mut(PAR_CHUNK)
            .zip(a.par_chunks(PAR_CHUNK))
            .for_each(|(d, x)| {
                for (d, &x) in d.iter_mut().zip(x) {
                    *d = f(x, b[0]);
                }
            });
        return Ok(());
    }
    // One operand broadcast along the other's leading axes (a bias [C] over [..., C]).
    let trailing = |long: &[usize], short: &[usize]| {
        let s: Vec<usize> = short.iter().copied().skip_while(|&d| d == 1).collect();
        !s.is_empty() && long.len() >= s.len() && long[long.len() - s.len()..] == s[..]
    };
    if out == ash && trailing(ash, bsh) {
        res.par_chunks_mut(b.len())
            .zip(a.par_chunks(b.len()))
            .for_each(|(d, row)| {
                for (d, (&x, &y)) in d.iter_mut().zip(row.iter().zip(b)) {
                    *d = f(x, y);
                }
            });
        return Ok(());
    }
    if out == bsh && trailing(bsh, ash) {
        res.par_chunks_mut(a.len())
            .zip(b.par_chunks(a.len()))
            .for_each(|(d, row)| {
                for (d, (&x, &y)) in d.iter_mut().zip(a.iter().zip(row)) {
                    *d = f(x, y);
                }
            });
        return Ok(());
    }
    let (sa, sb) = (broadcast_strides(ash, &out), broadcast_strides(bsh, &out));
    let mut idx = vec![0usize; out.len()];
    let (mut oa, mut ob) = (0usize, 0usize);
    for r in res.iter_mut() {
        *r = f(a[oa], b[ob]);
        for d in (0..out.len()).rev() {
            idx[d] += 1;
            oa += sa[d];
            ob += sb[d];
            if idx[d] < out[d] {
                break;
            }
            oa -= sa[d] * out[d];
            ob -= sb[d] * out[d];
            idx[d] = 0;
        }
    }
    Ok(())
}

/// One float binary op on a pair of elements.
#[inline]
fn binary_f32(op: Binary, p: f32, q: f32) -> f32 {
    match op {
        Binary::Add => p + q,
        Binary::Sub => p - q,
        Binary::Mul => p * q,
        Binary::Div => p / q,
        Binary::Pow => p.powf(q),
        Binary::Mod => {
            let r = p % q;
            if r != 0.0 && (r < 0.0) != (q < 0.0) {
                r + q
            } else {
                r
            }
        }
        Binary::Fmod => p % q,
    }
}

/// A float binary op with broadcasting, writing into `out`.
pub fn binary_into(op: Binary, a: View, b: View, out: &mut [f32]) -> Result<(), String> {
    zip_broadcast_into(
        a.data,
        a.shape,
        b.data,
        b.shape,
        |p, q| binary_f32(op, p, q),
        out,
    )
}

pub fn binary(op: Binary, a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    match (&a.data, &b.data) {
        (Data::I64(x), Data::I64(y)) => {
            let f = |p: i64, q: i64| match op {
                Binary::Add => p.wrapping_add(q),
                Binary::Sub => p.wrapping_sub(q),
                Binary::Mul => p.wrapping_mul(q),
                Binary::Div => p.checked_div(q).unwrap_or(0), // C truncation, as onnxruntime
                Binary::Pow => p.pow(q.clamp(0, 63) as u32),
                Binary::Mod => p.checked_rem(q).map_or(0, |r| {
                    if r != 0 && (r < 0) != (q < 0) {
                        r + q
                    } else {
                        r
                    }
                }),
                Binary::Fmod => p.checked_rem(q).unwrap_or(0),
            };
            let (shape, v) = zip_broadcast(x, &a.shape, y, &b.shape, f)?;
            Ok(Tensor::i64(shape, v))
        }
        _ => {
            let (x, y) = (a.to_f32_vec(), b.to_f32_vec());
            let (shape, v) =
                zip_broadcast(&x, &a.shape, &y, &b.shape, |p, q| binary_f32(op, p, q))?;
            Ok(Tensor::f32(shape, v))
        }
    }
}

/// erf with |error| < 1.2e-7 (Numerical Recipes' erfc Chebyshev fit), in f64.
pub fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { 1.0 - r } else { r - 1.0 }
}

pub fn unary(op: Unary, x: &Tensor) -> Result<Tensor, String> {
    if op == Unary::Identity {
        return Ok(x.clone());
    }
    if let (Data::I64(v), Unary::Neg | Unary::Abs | Unary::Relu) = (&x.data, op) {
        let f = |p: i64| match op {
            Unary::Neg => -p,
            Unary::Abs => p.abs(),
            _ => p.max(0),
        };
        return Ok(Tensor::i64(
            x.shape.clone(),
            v.iter().map(|&p| f(p)).collect(),
        ));
    }
    let v = x.to_f32_vec();
    let mut out = vec![0f32; v.len()];
    unary_into(op, &v, &mut out);
    Ok(Tensor::f32(x.shape.clone(), out))
}

/// A float unary op writing into `out`.
pub fn unary_into(op: Unary, x: &[f32], out: &mut [f32]) {
    let f = |p: f32| match op {
        Unary::Relu => p.max(0.0),
        Unary::Sigmoid => 1.0 / (1.0 + (-p).exp()),
        Unary::Tanh => p.tanh(),
        Unary::Erf => erf(p as f64) as f32,
        Unary::Sqrt => p.sqrt(),
        Unary::Exp => p.exp(),
        Unary::Neg => -p,
        Unary::Abs => p.abs(),
        Unary::Reciprocal => 1.0 / p,
        // ONNX HardSwish: x · max(0, min(1, x/6 + 1/2))
        Unary::HardSwish => p * (p * (1.0 / 6.0) + 0.5).clamp(0.0, 1.0),
        Unary::Silu => p / (1.0 + (-p).exp()),
        Unary::Identity => p,
    };
    map_into(x, out, f);
}

/// Clip to [lo, hi], writing into `out`.
pub fn clip_into(x: &[f32], lo: f32, hi: f32, out: &mut [f32]) {
    map_into(x, out, |v| v.max(lo).min(hi));
}

/// HardSigmoid `clamp(alpha·x + beta, 0, 1)`, writing into `out`.
pub fn hard_sigmoid_into(x: &[f32], alpha: f32, beta: f32, out: &mut [f32]) {
    map_into(x, out, |v| (alpha * v + beta).clamp(0.0, 1.0));
}

fn map_into(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    out.par_chunks_mut(PAR_CHUNK)
        .zip(x.par_chunks(PAR_CHUNK))
        .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, &p)| *d = f(p)));
}

pub fn clip(x: &Tensor, min: Option<&Tensor>, max: Option<&Tensor>) -> Result<Tensor, String> {
    let lo = min.map_or(f32::NEG_INFINITY, |t| t.to_f32_vec()[0]);
    let hi = max.map_or(f32::INFINITY, |t| t.to_f32_vec()[0]);
    Ok(Tensor::f32(
        x.shape.clone(),
        x.to_f32_vec()
            .into_iter()
            .map(|v| v.max(lo).min(hi))
            .collect(),
    ))
}

pub fn hard_sigmoid(x: &Tensor, alpha: f32, beta: f32) -> Result<Tensor, String> {
    Ok(Tensor::f32(
        x.shape.clone(),
        x.to_f32_vec()
            .into_iter()
            .map(|v| (alpha * v + beta).clamp(0.0, 1.0))
            .collect(),
    ))
}

pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a as usize >= rank.max(1) {
        return Err(format!("axis {axis} out of range for rank {rank}"));
    }
    Ok(a as usize)
}

pub fn reduce_shape(shape: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| match (axes.contains(&i), keepdims) {
            (true, true) => Some(1),
            (true, false) => None,
            _ => Some(d),
        })
        .collect()
}

pub fn reduce(
    kind: ReduceKind,
    x: &Tensor,
    axes: &[usize],
    keepdims: bool,
) -> Result<Tensor, String> {
    let v = x.to_f32_vec();
    let out_shape = reduce_shape(&x.shape, axes, true);
    let n = numel(&out_shape);
    let mut acc = vec![
        if kind == ReduceKind::Max {
            f64::NEG_INFINITY
        } else {
            0.0
        };
        n
    ];
    let strides = broadcast_strides(&out_shape, &x.shape);
    let mut idx = vec![0usize; x.shape.len()];
    let mut o = 0usize;
    for &val in &v {
        match kind {
            ReduceKind::Max => acc[o] = acc[o].max(val as f64),
            _ => acc[o] += val as f64,
        }
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            o += strides[d];
            if idx[d] < x.shape[d] {
                break;
            }
            o -= strides[d] * x.shape[d];
            idx[d] = 0;
        }
    }
    let count = (v.len() / n.max(1)) as f64;
    let data = acc.into_iter().map(|a| if kind == ReduceKind::Mean { a / count } else { a } as f32).collect();
    Ok(Tensor::f32(reduce_shape(&x.shape, axes, keepdims), data))
}

pub fn equal(a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    let (shape, v) = match (&a.data, &b.data) {
        (Data::I64(x), Data::I64(y)) => zip_broadcast(x, &a.shape, y, &b.shape, |p, q| p == q)?,
        _ => zip_broadcast(
            &a.to_f32_vec(),
            &a.shape,
            &b.to_f32_vec(),
            &b.shape,
            |p, q| p == q,
        )?,
    };
    Ok(Tensor::bool(shape, v))
}

/// `cond ? x : y` with three-way broadcasting.
pub fn where_op(cond: &Tensor, x: &Tensor, y: &Tensor) -> Result<Tensor, String> {
    let shape = broadcast_shape(&broadcast_shape(&cond.shape, &x.shape)?, &y.shape)?;
    let c = super::layout::expand(cond, &shape)?.to_i64_vec();
    let (xe, ye) = (
        super::layout::expand(x, &shape)?,
        super::layout::expand(y, &shape)?,
    );
    Ok(match (&xe.data, &ye.data) {
        (Data::I64(p), Data::I64(q)) => Tensor::i64(
            shape,
            c.iter()
                .zip(p.iter().zip(q))
                .map(|(&k, (&p, &q))| if k != 0 { p } else { q })
                .collect(),
        ),
        _ => {
            let (p, q) = (xe.to_f32_vec(), ye.to_f32_vec());
            Tensor::f32(
                shape,
                c.iter()
                    .zip(p.iter().zip(&q))
                    .map(|(&k, (&p, &q))| if k != 0 { p } else { q })
                    .collect(),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting() {
        let a = Tensor::f32(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]);
        let b = Tensor::f32(vec![3], vec![10., 20., 30.]);
        assert_eq!(
            binary(Binary::Add, &a, &b).unwrap().as_f32().unwrap(),
            &[11., 22., 33., 14., 25., 36.]
        );
        let c = Tensor::f32(vec![2, 1], vec![1., 2.]);
        assert_eq!(
            binary(Binary::Mul, &a, &c).unwrap().as_f32().unwrap(),
            &[1., 2., 3., 8., 10., 12.]
        );
        assert!(broadcast_shape(&[2, 3], &[4]).is_err());
    }

    #[test]
    fn modulo_signs() {
        let a = Tensor::i64(vec![4], vec![7, -7, 7, -7]);
        let b = Tensor::i64(vec![4], vec![3, 3, -3, -3]);
        assert_eq!(
            binary(Binary::Mod, &a, &b).unwrap().to_i64_vec(),
            [1, 2, -2, -1]
        );
        assert_eq!(
            binary(Binary::Fmod, &a, &b).unwrap().to_i64_vec(),
            [1, -1, 1, -1]
        );
    }

    #[test]
    fn erf_is_accurate() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (-2.0, -0.995_322_265),
        ] {
            assert!((erf(x) - want).abs() < 2e-7, "erf({x})");
        }
    }

    #[test]
    fn reduce_mean_over_spatial() {
        let x = Tensor::f32(vec![1, 2, 2, 2], (0..8).map(|v| v as f32).collect());
        let r = reduce(ReduceKind::Mean, &x, &[2, 3], true).unwrap();
        assert_eq!(r.shape, [1, 2, 1, 1]);
        assert_eq!(r.as_f32().unwrap(), &[1.5, 5.5]);
    }
}
