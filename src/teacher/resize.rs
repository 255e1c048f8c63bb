//! Resizing a float NCHW batch for ensemble members that take another input
//! size than the one given (`dr infer --input`): separable bilinear with
//! antialiasing, as torchvision's `F.resize(tensor, size, antialias=True)`
//! (PyTorch's `_upsample_bilinear2d_aa`, which is Pillow's filter in float):
//! per output index, `scale = in/out`, `support = max(scale, 1)`, `center =
//! (i + 0.5)·scale`, taps from `max(trunc(center - support + 0.5), 0)` to
//! `min(trunc(center + support + 0.5), in)`, weights `tri((j - center +
//! 0.5)/max(scale, 1))` normalised to sum 1. Linear, so it commutes with the
//! per-channel normalisation already applied to the tensor. Taps outside the
//! image are dropped and the rest renormalised (torchvision's and Pillow's
//! edge rule). Checked against onnxruntime's Resize(linear, antialias=1,
//! half_pixel, exclude_outside=1) (tools/make_teacher_fixtures.py).

use rayon::prelude::*;

use super::tensor::Tensor;

/// (first tap, weights) per output index of one axis.
fn taps(input: usize, output: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = input as f64 / output as f64;
    let support = scale.max(1.0);
    (0..output)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let w: Vec<f64> = (lo..hi.max(lo))
                .map(|j| {
                    let x = ((j as f64 - center + 0.5) / support).abs();
                    if x < 1.0 { 1.0 - x } else { 0.0 }
                })
                .collect();
            let sum: f64 = w.iter().sum();
            let w = w
                .into_iter()
                .map(|v| (if sum != 0.0 { v / sum } else { v }) as f32)
                .collect();
            (lo, w)
        })
        .collect()
}

/// `x` [N, C, H, W] resized to [N, C, oh, ow] (width first, then height).
pub fn resize_bilinear_aa(x: &Tensor, oh: usize, ow: usize) -> Result<Tensor, String> {
    let xs = x.as_f32().ok_or("resize: the input is not float")?;
    let [n, c, h, w] = x.shape[..] else {
        return Err(format!("resize: the input is {:?}, not NCHW", x.shape));
    };
    if oh == 0 || ow == 0 || h == 0 || w == 0 {
        return Err(format!("resize from {h}x{w} to {oh}x{ow}"));
    }
    let (tw, th) = (taps(w, ow), taps(h, oh));
    let mut out = vec![0f32; n * c * oh * ow];
    out.par_chunks_mut(oh * ow)
        .zip(xs.par_chunks(h * w))
        .for_each(|(dst, src)| {
            let mut mid = vec![0f32; h * ow];
            for y in 0..h {
                let row = &src[y * w..(y + 1) * w];
                for (o, (lo, k)) in mid[y * ow..(y + 1) * ow].iter_mut().zip(&tw) {
                    *o = k.iter().zip(&row[*lo..]).map(|(a, b)| a * b).sum();
                }
            }
            for (yy, (lo, k)) in th.iter().enumerate() {
                let d = &mut dst[yy * ow..(yy + 1) * ow];
                d.fill(0.0);
                for (i, &ki) in k.iter().enumerate() {
                    let r = &mid[(lo + i) * ow..(lo + i + 1) * ow];
                    d.iter_mut().zip(r).for_each(|(o, &v)| *o += ki * v);
                }
            }
        });
    Ok(Tensor::f32(vec![n, c, oh, ow], out))
}
