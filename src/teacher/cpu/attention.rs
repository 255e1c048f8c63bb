//! softmax(q·kᵀ·scale + bias)·v composed from the other kernels: the CPU
//! twin of a fused attention kernel. Its temporaries (kᵀ, the scaled q, the
//! scores twice) live in one scratch buffer the planned executor reserves.

use super::elementwise::binary_into;
use super::linear::{matmul_dims, matmul_into};
use super::movement::transpose_into;
use super::norm::softmax_into;
use crate::teacher::graph::Binary;
use crate::teacher::tensor::{Tensor, View, numel};

/// Shapes of the scores and of the output.
fn shapes(q: &[usize], k: &[usize], v: &[usize]) -> Result<(Vec<usize>, Vec<usize>), String> {
    let r = k.len();
    if r < 2 {
        return Err(format!("Attention key of shape {k:?}"));
    }
    let mut kt = k.to_vec();
    kt.swap(r - 2, r - 1);
    let s = matmul_dims(q, &kt)?.out;
    let out = matmul_dims(&s, v)?.out;
    Ok((s, out))
}

/// Scratch elements `attention_into` needs for these shapes.
pub fn scratch_len(q: &[usize], k: &[usize], v: &[usize]) -> Result<usize, String> {
    let (s, _) = shapes(q, k, v)?;
    Ok(numel(k) + numel(q) + 2 * numel(&s))
}

pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    scale: f32,
) -> Result<Tensor, String> {
    let f = |t: &Tensor| t.to_f32_vec();
    let (qv, kv, vv, bv) = (f(q), f(k), f(v), bias.map(f));
    let (_, out_shape) = shapes(&q.shape, &k.shape, &v.shape)?;
    let mut scratch = vec![0f32; scratch_len(&q.shape, &k.shape, &v.shape)?];
    let mut out = vec![0f32; numel(&out_shape)];
    attention_into(
        View::new(&qv, &q.shape),
        View::new(&kv, &k.shape),
        View::new(&vv, &v.shape),
        bias.zip(bv.as_deref()).map(|(b, d)| View::new(d, &b.shape)),
        scale,
        &mut scratch,
        &mut out,
    )?;
    Ok(Tensor::f32(out_shape, out))
}

/// `attention` writing into `out`, its temporaries in `scratch`
/// (`scratch_len` elements).
pub fn attention_into(
    q: View,
    k: View,
    v: View,
    bias: Option<View>,
    scale: f32,
    scratch: &mut [f32],
    out: &mut [f32],
) -> Result<(), String> {
    let (s_shape, _) = shapes(q.shape, k.shape, v.shape)?;
    if scratch.len() < scratch_len(q.shape, k.shape, v.shape)? {
        return Err("Attention scratch is too small".into());
    }
    let r = k.shape.len();
    let mut perm: Vec<usize> = (0..r).collect();
    perm.swap(r - 2, r - 1);
    let kt_shape: Vec<usize> = perm.iter().map(|&p| k.shape[p]).collect();
    let ns = numel(&s_shape);
    let (kt, rest) = scratch.split_at_mut(k.data.len());
    let (qs, rest) = rest.split_at_mut(q.data.len());
    let (s1, rest) = rest.split_at_mut(ns);
    let s2 = &mut rest[..ns];
    transpose_into(k.data, k.shape, &perm, kt)?;
    // Scale q (N·d elements) rather than the scores (N·M).
    let q = if scale != 1.0 {
        let one = [scale];
        binary_into(
            Binary::Mul,
            q,
            View {
                data: &one,
                shape: &[],
            },
            qs,
        )?;
        View {
            data: qs,
            shape: q.shape,
        }
    } else {
        q
    };
    let kt = View {
        data: kt,
        shape: &kt_shape,
    };
    // Both operands are batched ([B, H, ..]): one product per (image, head).
    let images = q.shape.first().copied().unwrap_or(1);
    matmul_into(q, kt, None, images, s1)?;
    let probs = match bias {
        Some(b) => {
            let s = View {
                data: s1,
                shape: &s_shape,
            };
            binary_into(Binary::Add, s, b, s2)?;
            let s = View {
                data: s2,
                shape: &s_shape,
            };
            softmax_into(s, -1, s1)?;
            &*s1
        }
        None => {
            let s = View {
                data: s1,
                shape: &s_shape,
            };
            softmax_into(s, -1, s2)?;
            &*s2
        }
    };
    let p = View {
        data: probs,
        shape: &s_shape,
    };
    matmul_into(p, v, None, images, out)
}
