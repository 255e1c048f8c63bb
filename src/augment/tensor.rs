//! The float stage of ml-dr's generation path, in float32 exactly as torch
//! computes it on the CPU: ToTensor `x / 255`, RandomErasing (to 0, before
//! Normalize), Normalize `(x - mean) / std`, MixUp `fl32(lam)·x +
//! fl32(1 - lam)·x2` and CutMix's box paste (FACTS.md §3, §5, §6).

use super::image::{F32Chw, U8Chw};

/// ml-dr ToTensor on a uint8 tensor: `(img / 255.0)`, correctly rounded.
pub fn to_float(img: &U8Chw) -> F32Chw {
    F32Chw {
        channels: img.channels,
        height: img.height,
        width: img.width,
        data: img.data.iter().map(|&v| v as f32 / 255.0).collect(),
    }
}

/// ml-dr RandomErasing: `img[:, x:x+h, y:y+w] = 0` (x = top row); a record
/// with x = -1 erases nothing.
pub fn erase(img: &mut F32Chw, rec: [i64; 4]) {
    let [x, y, h, w] = rec;
    if x == -1 {
        return;
    }
    let (h0, w0) = (img.height as i64, img.width as i64);
    // Python slicing clamps to the tensor.
    let (r0, r1) = (x.clamp(0, h0), (x + h).clamp(0, h0));
    let (c0, c1) = (y.clamp(0, w0), (y + w).clamp(0, w0));
    let plane = img.plane();
    for c in 0..img.channels {
        for r in r0..r1 {
            let row = c * plane + r as usize * img.width;
            img.data[row + c0 as usize..row + c1 as usize].fill(0.0);
        }
    }
}

/// torchvision Normalize: `(x - mean[c]) / std[c]` in float32.
pub fn normalize(img: &mut F32Chw, mean: [f32; 3], std: [f32; 3]) {
    let plane = img.plane();
    for c in 0..img.channels {
        for v in &mut img.data[c * plane..(c + 1) * plane] {
            *v = (*v - mean[c]) / std[c];
        }
    }
}

/// MixUp: `lam·x + (1 − lam)·x2`, the Python-float lam and 1 − lam each
/// rounded to float32, products and sum in float32.
pub fn mixup(x: &mut F32Chw, x2: &F32Chw, lam: f64) {
    let a = lam as f32;
    let b = (1.0 - lam) as f32;
    for (v, &v2) in x.data.iter_mut().zip(&x2.data) {
        *v = a * *v + b * v2;
    }
}

/// CutMix: rows bbx1..bbx2 and columns bby1..bby2 of x2 pasted into x.
pub fn cutmix(x: &mut F32Chw, x2: &F32Chw, bbox: [i64; 4]) {
    let [x1, y1, x2r, y2] = bbox.map(|v| v.max(0) as usize);
    let (r1, c1) = (x2r.min(x.height), y2.min(x.width));
    let plane = x.plane();
    for c in 0..x.channels {
        for r in x1..r1.max(x1) {
            let row = c * plane + r * x.width;
            if y1 < c1 {
                x.data[row + y1..row + c1].copy_from_slice(&x2.data[row + y1..row + c1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_float_round_trips_through_ml_drs_uint8() {
        // ToUint8 (x*255 truncated) after to_tensor gives back every value.
        for k in 0..=255u8 {
            let f = k as f32 / 255.0;
            assert_eq!((f * 255.0) as u8, k);
        }
    }

    #[test]
    fn erase_and_cutmix_boxes() {
        let mut x = F32Chw {
            channels: 1,
            height: 3,
            width: 4,
            data: vec![1.0; 12],
        };
        erase(&mut x, [1, 2, 5, 5]); // clipped to the image
        assert_eq!(x.data, [1., 1., 1., 1., 1., 1., 0., 0., 1., 1., 0., 0.]);
        erase(&mut x, [-1, 0, 3, 4]);
        assert_eq!(x.data[0], 1.0);
        let x2 = F32Chw {
            data: vec![7.0; 12],
            ..x.clone()
        };
        cutmix(&mut x, &x2, [0, 0, 1, 2]);
        assert_eq!(&x.data[..4], &[7., 7., 1., 1.]);
    }
}
