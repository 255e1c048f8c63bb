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
            add_bias(s, b, s2)?;
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

/// `s + bias` into `out`, where the bias's leading axis may also be any
/// divisor of the problems' (`s`'s first axis): problem p reads
/// bias[p % bias_batch] (Swin's window masks, which repeat every image).
/// With a leading axis of 1 or the problems' count it is ONNX broadcasting.
fn add_bias(s: View, bias: View, out: &mut [f32]) -> Result<(), String> {
    let (ss, bs) = (s.shape, bias.shape);
    let period = match (ss.first(), bs.first()) {
        (Some(&n), Some(&b)) if bs.len() == ss.len() && b > 1 && b < n && n % b == 0 => b,
        _ => return binary_into(Binary::Add, s, bias, out),
    };
    let mut chunk = ss.to_vec();
    chunk[0] = period;
    let len = numel(&chunk);
    for (x, y) in s.data.chunks(len).zip(out.chunks_mut(len)) {
        let x = View {
            data: x,
            shape: &chunk,
        };
        binary_into(Binary::Add, x, bias, y)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(shape: &[usize], seed: usize) -> Tensor {
        let data = (0..numel(shape))
            .map(|i| (((i * 7919 + seed * 104_729) % 211) as f32 / 211.0 - 0.5) * 3.0)
            .collect();
        Tensor::f32(shape.to_vec(), data)
    }

    #[test]
    fn a_bias_repeating_every_few_problems_is_read_periodically() {
        // 6 problems, the bias given for 3 of them: problem p reads bias[p % 3].
        let shape = [6, 2, 5, 4];
        let (q, k, v) = (filled(&shape, 1), filled(&shape, 2), filled(&shape, 3));
        let bias = filled(&[3, 2, 5, 5], 4);
        let mut whole = bias.to_f32_vec();
        whole.extend(bias.to_f32_vec());
        let whole = Tensor::f32(vec![6, 2, 5, 5], whole);
        let got = attention(&q, &k, &v, Some(&bias), 0.5).unwrap();
        let want = attention(&q, &k, &v, Some(&whole), 0.5).unwrap();
        assert_eq!(got, want);
        let none = attention(&q, &k, &v, None, 0.5).unwrap();
        assert_ne!(got, none);
    }
}
