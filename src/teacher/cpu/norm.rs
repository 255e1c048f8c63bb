//! Softmax, LayerNorm and GELU: row-wise float32 ops, each with a version
//! that writes into a preallocated output (the planned executor's) and one
//! that allocates (constant folding and the reference interpreter).

use rayon::prelude::*;

use super::elementwise::{PAR_CHUNK, norm_axis};
use crate::teacher::tensor::{Tensor, View};

pub fn softmax(x: &Tensor, axis: i64) -> Result<Tensor, String> {
    let v = x.to_f32_vec();
    let mut out = vec![0f32; v.len()];
    softmax_into(
        View {
            data: &v,
            shape: &x.shape,
        },
        axis,
        &mut out,
    )?;
    Ok(Tensor::f32(x.shape.clone(), out))
}

/// Softmax along `axis`: max-subtracted exponentials over their f32 sum.
pub fn softmax_into(x: View, axis: i64, out: &mut [f32]) -> Result<(), String> {
    let a = norm_axis(axis, x.shape.len())?;
    let (len, inner) = (x.shape[a], x.shape[a + 1..].iter().product::<usize>());
    if out.len() != x.data.len() {
        return Err(format!("Softmax output is not {:?}", x.shape));
    }
    if len == 0 || inner == 0 {
        return Ok(());
    }
    // Each block [len, inner] is independent.
    out.par_chunks_mut(len * inner)
        .zip(x.data.par_chunks(len * inner))
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
    Ok(())
}

/// LayerNormalization over the axes `axis..rank`: `(x - mean)/sqrt(var + eps)·scale + bias`.
pub fn layer_norm(
    x: &Tensor,
    scale: &Tensor,
    bias: Option<&Tensor>,
    axis: i64,
    eps: f32,
) -> Result<Tensor, String> {
    let v = x.to_f32_vec();
    let (s, b) = (scale.to_f32_vec(), bias.map(|b| b.to_f32_vec()));
    let mut out = vec![0f32; v.len()];
    layer_norm_into(
        View {
            data: &v,
            shape: &x.shape,
        },
        &s,
        b.as_deref(),
        axis,
        eps,
        &mut out,
    )?;
    Ok(Tensor::f32(x.shape.clone(), out))
}

/// `layer_norm` writing into `out`; statistics in f64.
pub fn layer_norm_into(
    x: View,
    s: &[f32],
    b: Option<&[f32]>,
    axis: i64,
    eps: f32,
    out: &mut [f32],
) -> Result<(), String> {
    let a = norm_axis(axis, x.shape.len())?;
    let inner: usize = x.shape[a..].iter().product();
    if s.len() != inner || b.is_some_and(|b| b.len() != inner) {
        return Err(format!("LayerNorm scale/bias sizes do not match {inner}"));
    }
    if out.len() != x.data.len() {
        return Err(format!("LayerNorm output is not {:?}", x.shape));
    }
    out.par_chunks_mut(inner.max(1))
        .zip(x.data.par_chunks(inner.max(1)))
        .for_each(|(dst, row)| {
            let mean = row.iter().map(|&t| t as f64).sum::<f64>() / inner as f64;
            let var = row.iter().map(|&t| (t as f64 - mean).powi(2)).sum::<f64>() / inner as f64;
            let inv = 1.0 / (var + eps as f64).sqrt();
            for (k, (d, &t)) in dst.iter_mut().zip(row).enumerate() {
                *d = ((t as f64 - mean) * inv) as f32 * s[k] + b.map_or(0.0, |b| b[k]);
            }
        });
    Ok(())
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
    let v = x.to_f32_vec();
    let mut out = vec![0f32; v.len()];
    gelu_into(&v, tanh, &mut out);
    Tensor::f32(x.shape.clone(), out)
}

pub fn gelu_into(x: &[f32], tanh: bool, out: &mut [f32]) {
    let f = |p: f32| {
        if tanh {
            let inner = 0.797_884_6 * (p + 0.044_715 * p * p * p);
            0.5 * p * (1.0 + inner.tanh())
        } else {
            0.5 * p * (1.0 + erf_f32(p * std::f32::consts::FRAC_1_SQRT_2))
        }
    };
    out.par_chunks_mut(PAR_CHUNK)
        .zip(x.par_chunks(PAR_CHUNK))
        .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, &p)| *d = f(p)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_f32_is_accurate() {
        for i in -400..=400 {
            let x = i as f64 / 100.0;
            let e = (erf_f32(x as f32) as f64 - super::super::elementwise::erf(x)).abs();
            assert!(e < 5e-7, "erf_f32({x}): {e}");
        }
    }
}
