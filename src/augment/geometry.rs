//! The PIL-stage geometry of ml-dr's before-collate transforms: torchvision's
//! `resize` size rule, `crop` (zero outside the image, as PIL's crop),
//! `center_crop`, `pad` (RandomCrop's four padding modes) and the horizontal flip.

use super::image::{Rgb8, U8Chw};
use super::resample::resize_bilinear;
use crate::config::{PaddingMode, PassOrder, ResizeSize};

/// torchvision `_compute_resized_output_size` → (h, w).
pub fn resized_size(h: usize, w: usize, size: ResizeSize, max_size: Option<u32>) -> (usize, usize) {
    match size {
        ResizeSize::Exact { h, w } => (h as usize, w as usize),
        ResizeSize::Shorter(s) => {
            let (short, long) = if w <= h { (w, h) } else { (h, w) };
            let mut new_short = s as usize;
            // Python: int(requested_new_short * long / short), true division.
            let mut new_long = (s as f64 * long as f64 / short as f64) as usize;
            if let Some(m) = max_size {
                let m = m as usize;
                if new_long > m {
                    new_short = (m as f64 * new_short as f64 / new_long as f64) as usize;
                    new_long = m;
                }
            }
            if w <= h {
                (new_long, new_short)
            } else {
                (new_short, new_long)
            }
        }
    }
}

/// torchvision `F.resize` on a PIL image: unchanged when the size is.
pub fn resize(img: &Rgb8, size: ResizeSize, max_size: Option<u32>, order: PassOrder) -> Rgb8 {
    let (h, w) = resized_size(img.height, img.width, size, max_size);
    if (h, w) == (img.height, img.width) {
        return img.clone();
    }
    resize_bilinear(img, w, h, order)
}

/// PIL `img.crop((left, top, left + w, top + h))`: pixels outside are 0.
pub fn crop(img: &Rgb8, top: i64, left: i64, h: usize, w: usize) -> Rgb8 {
    let mut out = Rgb8::new(w, h);
    for y in 0..h {
        let sy = top + y as i64;
        if sy < 0 || sy >= img.height as i64 {
            continue;
        }
        let x0 = left.max(0);
        let x1 = (left + w as i64).min(img.width as i64);
        if x1 <= x0 {
            continue;
        }
        let src = &img.data[(sy as usize * img.width + x0 as usize) * 3
            ..(sy as usize * img.width + x1 as usize) * 3];
        let dst_x = (x0 - left) as usize;
        out.data[(y * w + dst_x) * 3..(y * w + dst_x) * 3 + src.len()].copy_from_slice(src);
    }
    out
}

/// torchvision `F.center_crop` on PIL: pads with 0 when the crop is larger,
/// offsets `int(round((in - crop) / 2))` with Python's round-half-even.
pub fn center_crop(img: &Rgb8, h: usize, w: usize) -> Rgb8 {
    let mut img = img.clone();
    if w > img.width || h > img.height {
        let pl = (w.saturating_sub(img.width)) / 2;
        let pt = (h.saturating_sub(img.height)) / 2;
        let pr = w.saturating_sub(img.width).div_ceil(2);
        let pb = h.saturating_sub(img.height).div_ceil(2);
        img = pad(&img, [pl, pt, pr, pb], 0, PaddingMode::Constant);
        if (img.width, img.height) == (w, h) {
            return img;
        }
    }
    let top = ((img.height - h) as f64 / 2.0).round_ties_even() as i64;
    let left = ((img.width - w) as f64 / 2.0).round_ties_even() as i64;
    crop(&img, top, left, h, w)
}

/// Source index for an output index `i` in `[-pad, n + pad)` under numpy's
/// pad modes (reflect: no edge repeat; symmetric: edge repeated).
fn pad_index(i: i64, n: i64, mode: PaddingMode) -> Option<usize> {
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    match mode {
        PaddingMode::Constant => None,
        PaddingMode::Edge => Some(i.clamp(0, n - 1) as usize),
        PaddingMode::Reflect | PaddingMode::Symmetric => {
            if n == 1 {
                return Some(0);
            }
            let (period, sym) = match mode {
                PaddingMode::Reflect => (2 * (n - 1), false),
                _ => (2 * n, true),
            };
            let m = i.rem_euclid(period);
            Some(if sym {
                if m < n { m } else { period - 1 - m }
            } else if m < n {
                m
            } else {
                period - m
            } as usize)
        }
    }
}

/// torchvision `F.pad` on PIL with padding [left, top, right, bottom].
pub fn pad(img: &Rgb8, p: [usize; 4], fill: u8, mode: PaddingMode) -> Rgb8 {
    let [l, t, r, b] = p;
    let (w, h) = (img.width + l + r, img.height + t + b);
    let mut out = Rgb8::from_raw(w, h, vec![fill; w * h * 3]);
    for y in 0..h {
        let Some(sy) = pad_index(y as i64 - t as i64, img.height as i64, mode) else {
            continue;
        };
        for x in 0..w {
            if let Some(sx) = pad_index(x as i64 - l as i64, img.width as i64, mode) {
                let px = img.px(sx, sy);
                out.data[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&px);
            }
        }
    }
    out
}

/// `F.hflip` on a CHW tensor: `img.flip(-1)`.
pub fn hflip(img: &mut U8Chw) {
    let w = img.width;
    for row in img.data.chunks_exact_mut(w) {
        row.reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_size_rule() {
        let s = ResizeSize::Shorter(224);
        assert_eq!(resized_size(375, 500, s, None), (224, 298)); // int(224*500/375)=298
        assert_eq!(resized_size(500, 375, s, None), (298, 224));
        assert_eq!(resized_size(500, 375, s, Some(256)), (256, 192));
        assert_eq!(
            resized_size(1, 1, ResizeSize::Exact { h: 3, w: 5 }, None),
            (3, 5)
        );
    }

    #[test]
    fn pad_modes_match_numpy() {
        // numpy.pad([1,2,3], 2, mode) along one axis.
        let idx = |mode| (-2..5).map(|i| pad_index(i, 3, mode)).collect::<Vec<_>>();
        let s = |v: &[usize]| v.iter().map(|&i| Some(i)).collect::<Vec<_>>();
        assert_eq!(idx(PaddingMode::Reflect), s(&[2, 1, 0, 1, 2, 1, 0])); // 3 2 1 2 3 2 1
        assert_eq!(idx(PaddingMode::Symmetric), s(&[1, 0, 0, 1, 2, 2, 1])); // 2 1 1 2 3 3 2
        assert_eq!(idx(PaddingMode::Edge), s(&[0, 0, 0, 1, 2, 2, 2]));
        assert_eq!(idx(PaddingMode::Constant)[0], None);
    }

    #[test]
    fn crop_outside_is_zero_and_center_crop_rounds_half_even() {
        let img = Rgb8::from_raw(2, 1, vec![1, 2, 3, 4, 5, 6]);
        let c = crop(&img, 0, -1, 1, 4);
        assert_eq!(c.data, vec![0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0]);
        // (5 - 2)/2 = 1.5 rounds to 2; (7 - 2)/2 = 2.5 rounds to 2.
        let row: Vec<u8> = (0..7).flat_map(|x| [x as u8; 3]).collect();
        let img = Rgb8::from_raw(7, 1, row);
        assert_eq!(center_crop(&img, 1, 2).px(0, 0), [2; 3]);
        let img5 = crop(&img, 0, 0, 1, 5);
        assert_eq!(center_crop(&img5, 1, 2).px(0, 0), [2; 3]);
    }
}
