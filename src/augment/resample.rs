//! Pillow's bilinear resize of an 8-bit image (`Image.resize(size, BILINEAR)`),
//! bit-exact: the fixed-point separable passes of Pillow's
//! `libImaging/Resample.c`, as FACTS.md §1 states them.
//!
//! Per axis and output index `xx`: `scale = (in1 - in0)/out` (the subtraction
//! in float32), `fs = max(scale, 1)`, `support = fs`, `center = in0 +
//! (xx + 0.5) * scale`, taps `xmin = (int)(center - support + 0.5)` clamped at
//! 0 to `xmax = (int)(center + support + 0.5)` clamped at `in`, weights
//! `tri((xmin + i - center + 0.5)/fs)` divided by their sum, then rounded half
//! away from zero to 22-bit fixed point. A pass accumulates
//! `2^21 + Σ pixel·k` in integers, shifts right by 22 and clamps to 0..255;
//! each pass writes a uint8 image, so the pass order matters (`PassOrder`).

use super::image::Rgb8;
use crate::config::PassOrder;

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Taps of one output index: first source index and fixed-point weights.
#[derive(Debug, Clone)]
pub struct Taps {
    pub first: Vec<usize>,
    pub count: Vec<usize>,
    /// `ksize` weights per output index (unused tail zero).
    pub weights: Vec<i32>,
    pub ksize: usize,
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear
/// filter (support 1), over the source span `[in0, in1)` of an axis of
/// `in_size` pixels, resampled to `out_size`.
pub fn taps(in_size: usize, in0: f32, in1: f32, out_size: usize) -> Taps {
    let scale = (in1 - in0) as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support 1.0, widened when reducing
    let ksize = support.ceil() as usize * 2 + 1;
    let inv = 1.0 / filterscale;
    let mut first = Vec::with_capacity(out_size);
    let mut count = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = in0 as f64 + (xx as f64 + 0.5) * scale;
        // C's (int) truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut sum = 0.0;
        for (i, wi) in w.iter_mut().enumerate().take(n) {
            *wi = triangle((i as f64 + xmin as f64 - center + 0.5) * inv);
            sum += *wi;
        }
        let k = &mut weights[xx * ksize..(xx + 1) * ksize];
        for i in 0..n {
            let v = if sum != 0.0 { w[i] / sum } else { w[i] };
            let f = v * (1u32 << PRECISION_BITS) as f64;
            k[i] = if v < 0.0 {
                (f - 0.5) as i32
            } else {
                (f + 0.5) as i32
            };
        }
        first.push(xmin);
        count.push(n);
    }
    Taps {
        first,
        count,
        weights,
        ksize,
    }
}

#[inline]
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

fn horizontal(src: &Rgb8, t: &Taps) -> Rgb8 {
    let out_w = t.first.len();
    let mut out = Rgb8::new(out_w, src.height);
    for y in 0..src.height {
        let row = &src.data[y * src.width * 3..(y + 1) * src.width * 3];
        let orow = &mut out.data[y * out_w * 3..(y + 1) * out_w * 3];
        for xx in 0..out_w {
            let k = &t.weights[xx * t.ksize..];
            let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
            for (i, &ki) in k[..t.count[xx]].iter().enumerate() {
                let p = (t.first[xx] + i) * 3;
                for c in 0..3 {
                    acc[c] += row[p + c] as i64 * ki as i64;
                }
            }
            for c in 0..3 {
                orow[xx * 3 + c] = clip8(acc[c]);
            }
        }
    }
    out
}

fn vertical(src: &Rgb8, t: &Taps) -> Rgb8 {
    let out_h = t.first.len();
    let w3 = src.width * 3;
    let mut out = Rgb8::new(src.width, out_h);
    let mut acc = vec![0i64; w3];
    for yy in 0..out_h {
        acc.fill(1i64 << (PRECISION_BITS - 1));
        let k = &t.weights[yy * t.ksize..];
        for (i, &ki) in k[..t.count[yy]].iter().enumerate() {
            let row = &src.data[(t.first[yy] + i) * w3..(t.first[yy] + i + 1) * w3];
            let ki = ki as i64;
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += p as i64 * ki;
            }
        }
        for (o, &a) in out.data[yy * w3..(yy + 1) * w3].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// `img.resize((out_w, out_h), Image.BILINEAR)` on a whole image, as the
/// Pillow release selected by `order` computes it.
pub fn resize_bilinear(src: &Rgb8, out_w: usize, out_h: usize, order: PassOrder) -> Rgb8 {
    let (in_w, in_h) = (src.width, src.height);
    if (in_w, in_h) == (out_w, out_h) {
        return src.clone(); // Image.resize returns a copy
    }
    let need_h = out_w != in_w;
    let need_v = out_h != in_h;
    let th = taps(in_w, 0.0, in_w as f32, out_w);
    let tv = taps(in_h, 0.0, in_h as f32, out_h);
    let dh = in_h as i64 - out_h as i64;
    let dw = in_w as i64 - out_w as i64;
    let horizontal_first = match order {
        PassOrder::Pillow12 => true,
        PassOrder::Pillow13 => !(dh > 0 && dh > dw * 2),
    };
    match (need_h, need_v, horizontal_first) {
        (true, false, _) => horizontal(src, &th),
        (false, true, _) => vertical(src, &tv),
        (true, true, true) => vertical(&horizontal(src, &th), &tv),
        (true, true, false) => horizontal(&vertical(src, &tv), &th),
        (false, false, _) => src.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_sum_to_one_in_fixed_point() {
        for (i, o) in [
            (500usize, 224usize),
            (224, 224),
            (100, 224),
            (3, 224),
            (1000, 7),
        ] {
            let t = taps(i, 0.0, i as f32, o);
            for xx in 0..o {
                let s: i64 = t.weights[xx * t.ksize..xx * t.ksize + t.count[xx]]
                    .iter()
                    .map(|&k| k as i64)
                    .sum();
                assert!(
                    (s - (1 << 22)).abs() <= t.count[xx] as i64,
                    "{i}->{o} at {xx}: {s}"
                );
                assert!(t.first[xx] + t.count[xx] <= i);
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = Rgb8::from_raw(37, 23, [200u8, 17, 90].repeat(37 * 23));
        for order in [PassOrder::Pillow12, PassOrder::Pillow13] {
            let out = resize_bilinear(&src, 224, 224, order);
            assert!(out.data.chunks(3).all(|p| p == [200, 17, 90]));
        }
    }

    #[test]
    fn pass_order_rule() {
        // Tall crop shrinking in height only: Pillow 13 goes vertical first,
        // and the two orders differ somewhere on a textured image.
        let (w, h) = (200usize, 400usize);
        let data: Vec<u8> = (0..w * h * 3).map(|i| ((i * 7919) % 251) as u8).collect();
        let src = Rgb8::from_raw(w, h, data);
        let a = resize_bilinear(&src, 150, 224, PassOrder::Pillow12);
        let b = resize_bilinear(&src, 150, 224, PassOrder::Pillow13);
        assert_ne!(a, b);
        assert!(a.data.iter().zip(&b.data).all(|(x, y)| x.abs_diff(*y) <= 1));
    }
}
