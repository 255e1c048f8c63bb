//! Elementwise math with numpy broadcasting, activations, softmax and
//! reductions.

use rayon::prelude::*;

use crate::teacher::graph::{Binary, ReduceKind, Unary};

/// Elements per parallel task of elementwise ops.
const PAR_CHUNK: usize = 1 << 14;
use crate::teacher::tensor::{Data, Tensor, numel};

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
fn zip_broadcast<T: Copy + Send + Sync, U: Send>(
    a: &[T],
    ash: &[usize],
    b: &[T],
    bsh: &[usize],
    f: impl Fn(T, T) -> U + Send + Sync,
) -> Result<(Vec<usize>, Vec<U>), String> {
    let out = broadcast_shape(ash, bsh)?;
    if ash == bsh {
        return Ok((
            out,
            a.par_iter()
                .zip(b.par_iter())
                .with_min_len(PAR_CHUNK)
                .map(|(&x, &y)| f(x, y))
                .collect(),
        ));
    }
    if b.len() == 1 {
        return Ok((
            out,
            a.par_iter()
                .with_min_len(PAR_CHUNK)
                .map(|&x| f(x, b[0]))
                .collect(),
        ));
    }
    // One operand broadcast along the other's leading axes (a bias [C] over [..., C]).
    let trailing = |long: &[usize], short: &[usize]| {
        let s: Vec<usize> = short.iter().copied().skip_while(|&d| d == 1).collect();
        !s.is_empty() && long.len() >= s.len() && long[long.len() - s.len()..] == s[..]
    };
    if out == ash && trailing(ash, bsh) {
        let mut res = Vec::with_capacity(a.len());
        res.par_extend(
            a.par_chunks(b.len())
                .flat_map_iter(|row| row.iter().zip(b).map(|(&x, &y)| f(x, y))),
        );
        return Ok((out, res));
    }
    if out == bsh && trailing(bsh, ash) {
        let mut res = Vec::with_capacity(b.len());
        res.par_extend(
            b.par_chunks(a.len())
                .flat_map_iter(|row| a.iter().zip(row).map(|(&x, &y)| f(x, y))),
        );
        return Ok((out, res));
    }
    let (sa, sb) = (broadcast_strides(ash, &out), broadcast_strides(bsh, &out));
    let n = numel(&out);
    let mut idx = vec![0usize; out.len()];
    let (mut oa, mut ob) = (0usize, 0usize);
    let mut res = Vec::with_capacity(n);
    for _ in 0..n {
        res.push(f(a[oa], b[ob]));
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
    Ok((out, res))
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
            let f = |p: f32, q: f32| match op {
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
            };
            let (shape, v) = zip_broadcast(&x, &a.shape, &y, &b.shape, f)?;
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
    let mut v = x.to_f32_vec();
    v.par_chunks_mut(PAR_CHUNK)
        .for_each(|c| c.iter_mut().for_each(|p| *p = f(*p)));
    Ok(Tensor::f32(x.shape.clone(), v))
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

pub fn softmax(x: &Tensor, axis: i64) -> Result<Tensor, String> {
    let a = norm_axis(axis, x.shape.len())?;
    let v = x.to_f32_vec();
    let (len, inner) = (x.shape[a], x.shape[a + 1..].iter().product::<usize>());
    let mut out = v.clone();
    if len == 0 {
        return Ok(Tensor::f32(x.shape.clone(), out));
    }
    // Each block [len, inner] is independent.
    out.par_chunks_mut(len * inner)
        .zip(v.par_chunks(len * inner))
        .for_each(|(dst, src)| {
            for i in 0..inner {
                let m = (0..len)
                    .map(|k| src[k * inner + i])
                    .fold(f32::NEG_INFINITY, f32::max);
                let mut s = 0f32;
                for k in 0..len {
                    let e = (src[k * inner + i] - m).exp();
                    dst[k * inner + i] = e;
                    s += e;
                }
                for k in 0..len {
                    dst[k * inner + i] /= s;
                }
            }
        });
    Ok(Tensor::f32(x.shape.clone(), out))
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

/// LayerNormalization over the axes `axis..rank`: `(x - mean)/sqrt(var + eps)·scale + bias`.
pub fn layer_norm(
    x: &Tensor,
    scale: &Tensor,
    bias: Option<&Tensor>,
    axis: i64,
    eps: f32,
) -> Result<Tensor, String> {
    let a = norm_axis(axis, x.shape.len())?;
    let inner: usize = x.shape[a..].iter().product();
    let v = x.to_f32_vec();
    let (s, b) = (scale.to_f32_vec(), bias.map(|b| b.to_f32_vec()));
    if s.len() != inner || b.as_ref().is_some_and(|b| b.len() != inner) {
        return Err(format!("LayerNorm scale/bias sizes do not match {inner}"));
    }
    let mut out = vec![0f32; v.len()];
    out.par_chunks_mut(inner.max(1))
        .zip(v.par_chunks(inner.max(1)))
        .for_each(|(dst, row)| {
            let mean = row.iter().map(|&t| t as f64).sum::<f64>() / inner as f64;
            let var = row.iter().map(|&t| (t as f64 - mean).powi(2)).sum::<f64>() / inner as f64;
            let inv = 1.0 / (var + eps as f64).sqrt();
            for (k, (d, &t)) in dst.iter_mut().zip(row).enumerate() {
                *d = ((t as f64 - mean) * inv) as f32 * s[k] + b.as_ref().map_or(0.0, |b| b[k]);
            }
        });
    Ok(Tensor::f32(x.shape.clone(), out))
}

/// erf in float32 (Abramowitz & Stegun 7.1.26; |error| < 5e-7 in float32): GELU's hot path.
#[inline]
pub fn erf_f32(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * (-z * z).exp();
    if x < 0.0 { -y } else { y }
}

/// GELU, exact (erf) or the tanh approximation.
pub fn gelu(x: &Tensor, tanh: bool) -> Tensor {
    let f = |p: f32| {
        if tanh {
            let inner = 0.797_884_6 * (p + 0.044_715 * p * p * p);
            0.5 * p * (1.0 + inner.tanh())
        } else {
            0.5 * p * (1.0 + erf_f32(p * std::f32::consts::FRAC_1_SQRT_2))
        }
    };
    let mut v = x.to_f32_vec();
    v.par_chunks_mut(PAR_CHUNK)
        .for_each(|c| c.iter_mut().for_each(|p| *p = f(*p)));
    Tensor::f32(x.shape.clone(), v)
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
    fn erf_f32_is_accurate() {
        for i in -400..=400 {
            let x = i as f64 / 100.0;
            let e = (erf_f32(x as f32) as f64 - erf(x)).abs();
            assert!(e < 5e-7, "erf_f32({x}): {e}");
        }
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
