//! RandAugment's 14 operations on uint8 CHW tensors, exactly as torchvision's
//! tensor `_apply_op` computes them with ml-dr's settings (nearest
//! interpolation, no fill): FACTS.md §4. Every float32 rounding and every
//! truncation of the reference is reproduced, in the reference's order.

use std::f64::consts::PI;

use super::image::U8Chw;

/// ml-dr's `RandAugment.op_names`: a stored op index points into this list.
pub const OP_NAMES: [&str; 14] = [
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
];

/// Whether the op's magnitude may be negated (torchvision `_augmentation_space`).
pub const SIGNED: [bool; 14] = [
    false, true, true, true, true, true, true, true, true, true, false, false, false, false,
];

/// torch.linspace(start, end, steps)[i] in float32: the first half counts up
/// from `start`, the second half down from `end`.
fn linspace_f32(start: f32, end: f32, steps: u32, i: u32) -> f32 {
    let step = (end - start) / (steps - 1) as f32;
    if i < steps / 2 {
        start + step * i as f32
    } else {
        end - step * (steps - 1 - i) as f32
    }
}

/// The unsigned magnitude of op `op` at bin `magnitude` of `bins`, for an
/// image of `h`×`w`, as the Python float ml-dr records.
pub fn magnitude(op: usize, magnitude: u32, bins: u32, h: usize, w: usize) -> f64 {
    let lin = |end: f32| linspace_f32(0.0, end, bins, magnitude) as f64;
    match OP_NAMES[op] {
        "ShearX" | "ShearY" => lin(0.3),
        "TranslateX" => lin((150.0 / 331.0 * w as f64) as f32),
        "TranslateY" => lin((150.0 / 331.0 * h as f64) as f32),
        "Rotate" => lin(30.0),
        "Brightness" | "Color" | "Contrast" | "Sharpness" => lin(0.9),
        // 8 - (arange(bins) / ((bins - 1) / 4)).round().int()
        "Posterize" => {
            let v = (magnitude as f32 / ((bins - 1) as f32 / 4.0)).round_ties_even();
            (8 - v as i32) as f64
        }
        "Solarize" => linspace_f32(255.0, 0.0, bins, magnitude) as f64,
        _ => 0.0, // Identity, AutoContrast, Equalize
    }
}

/// The unsigned magnitude of every op for `cfg` on a `w`×`h` tensor.
pub fn magnitude_table(cfg: &crate::config::RandAugment, (w, h): (usize, usize)) -> Vec<f64> {
    (0..OP_NAMES.len())
        .map(|op| magnitude(op, cfg.magnitude, cfg.num_magnitude_bins, h, w))
        .collect()
}

/// The inverse matrix of a geometric op (ShearX, ShearY, TranslateX,
/// TranslateY, Rotate) with the signed magnitude `mag` on a `w`×`h` image;
/// `None` for the other ops.
pub fn affine_matrix(op: usize, mag: f64, w: usize, h: usize) -> Option<[f64; 6]> {
    let rad_to_deg = 180.0 / PI;
    let (w, h) = (w as f64, h as f64);
    let center = (-w * 0.5, -h * 0.5);
    Some(match OP_NAMES[op] {
        "ShearX" => inverse_affine(center, 0.0, (0.0, 0.0), (mag.atan() * rad_to_deg, 0.0)),
        "ShearY" => inverse_affine(center, 0.0, (0.0, 0.0), (0.0, mag.atan() * rad_to_deg)),
        "TranslateX" => inverse_affine((0.0, 0.0), 0.0, ((mag as i64) as f64, 0.0), (0.0, 0.0)),
        "TranslateY" => inverse_affine((0.0, 0.0), 0.0, (0.0, (mag as i64) as f64), (0.0, 0.0)),
        // F.rotate builds the inverse matrix for -angle.
        "Rotate" => inverse_affine((0.0, 0.0), -mag, (0.0, 0.0), (0.0, 0.0)),
        _ => return None,
    })
}

/// `_blend`'s two float32 factors for the Python double `ratio`:
/// `fl32(ratio)` and `fl32(1.0 - ratio)`.
pub fn blend_ratios(ratio: f64) -> (f32, f32) {
    (ratio as f32, (1.0 - ratio) as f32)
}

/// Posterize's bit mask for the stored number of bits `mag` (0 to 8).
pub fn posterize_mask(mag: f64) -> u8 {
    let bits = (mag as i32).clamp(0, 8);
    (-(1i32 << (8 - bits))) as u8
}

/// Applies op `op` with the signed magnitude `mag` (the stored float).
pub fn apply_op(img: &mut U8Chw, op: usize, mag: f64) {
    if let Some(m) = affine_matrix(op, mag, img.width, img.height) {
        affine(img, m);
        return;
    }
    match OP_NAMES[op] {
        "Identity" => {}
        "Brightness" => {
            let lut = blend_const_lut(1.0 + mag, 0.0);
            apply_lut(img, |_| lut);
        }
        "Color" => {
            if img.channels == 3 {
                let gray = grayscale(img);
                blend_each(img, 1.0 + mag, |_, i| gray[i] as f32);
            }
        }
        "Contrast" => {
            let mean = if img.channels == 3 {
                let gray = grayscale(img);
                gray.iter().map(|&g| g as f64).sum::<f64>() as f32 / gray.len() as f32
            } else {
                img.data.iter().map(|&g| g as f64).sum::<f64>() as f32 / img.data.len() as f32
            };
            let lut = blend_const_lut(1.0 + mag, mean);
            apply_lut(img, |_| lut);
        }
        "Sharpness" => sharpness(img, 1.0 + mag),
        "Posterize" => {
            let mask = posterize_mask(mag);
            img.data.iter_mut().for_each(|v| *v &= mask);
        }
        "Solarize" => {
            let lut: [u8; 256] = std::array::from_fn(|v| {
                if v as f64 >= mag {
                    255 - v as u8
                } else {
                    v as u8
                }
            });
            apply_lut(img, |_| lut);
        }
        "AutoContrast" => autocontrast(img),
        "Equalize" => equalize(img),
        other => unreachable!("op {other}"),
    }
}

/// torchvision `_get_inverse_affine_matrix` (scale 1), in double precision.
fn inverse_affine(
    center: (f64, f64),
    angle: f64,
    translate: (f64, f64),
    shear: (f64, f64),
) -> [f64; 6] {
    let deg_to_rad = PI / 180.0;
    let rot = angle * deg_to_rad;
    let sx = shear.0 * deg_to_rad;
    let sy = shear.1 * deg_to_rad;
    let (cx, cy) = center;
    let (tx, ty) = translate;
    let a = (rot - sy).cos() / sy.cos();
    let b = -(rot - sy).cos() * sx.tan() / sy.cos() - rot.sin();
    let c = (rot - sy).sin() / sy.cos();
    let d = -(rot - sy).sin() * sx.tan() / sy.cos() + rot.cos();
    let mut m = [d, -b, 0.0, -c, a, 0.0];
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
    m[2] += cx;
    m[5] += cy;
    m
}

/// Nearest-neighbour affine with zero padding (grid_sample, align_corners
/// False): output pixel (x, y) reads source
/// `nearbyint(M·(x + 0.5 - W/2, y + 0.5 - H/2, 1) + (W/2 - 0.5, H/2 - 0.5))`.
fn affine(img: &mut U8Chw, m: [f64; 6]) {
    let (w, h) = (img.width, img.height);
    let (hw, hh) = (w as f64 * 0.5, h as f64 * 0.5);
    let src = img.clone();
    let plane = w * h;
    for y in 0..h {
        let yc = y as f64 + 0.5 - hh;
        for x in 0..w {
            let xc = x as f64 + 0.5 - hw;
            let sx = m[0] * xc + m[1] * yc + m[2];
            let sy = m[3] * xc + m[4] * yc + m[5];
            let ix = round_half_even(sx + hw - 0.5);
            let iy = round_half_even(sy + hh - 0.5);
            let inside = ix >= 0.0 && iy >= 0.0 && ix < w as f64 && iy < h as f64;
            for c in 0..img.channels {
                img.data[c * plane + y * w + x] = if inside {
                    src.data[c * plane + iy as usize * w + ix as usize]
                } else {
                    0
                };
            }
        }
    }
}

/// `nearbyint` for |x| < 2^51: adding and subtracting 1.5·2^52 rounds to
/// an integer in the FPU's round-half-to-even mode (exact; `f64::round_ties_even`
/// is a library call on baseline x86-64).
#[inline]
pub fn round_half_even(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    if x.abs() < 2_251_799_813_685_248.0 {
        (x + MAGIC) - MAGIC
    } else {
        x.round_ties_even()
    }
}

/// Applies a per-channel 256-entry table (exact for every point op).
fn apply_lut(img: &mut U8Chw, lut_for: impl Fn(usize) -> [u8; 256]) {
    for c in 0..img.channels {
        let lut = lut_for(c);
        img.channel_mut(c)
            .iter_mut()
            .for_each(|v| *v = lut[*v as usize]);
    }
}

/// `_blend` of each value with a constant, as a table.
fn blend_const_lut(ratio: f64, other: f32) -> [u8; 256] {
    let (r, r1) = blend_ratios(ratio);
    std::array::from_fn(|v| (r * v as f32 + r1 * other).clamp(0.0, 255.0) as u8)
}

/// uint8 `rgb_to_grayscale`: `(0.2989 r + 0.587 g + 0.114 b)` in float32,
/// left to right, truncated.
pub fn grayscale(img: &U8Chw) -> Vec<u8> {
    let (r, g, b) = (img.channel(0), img.channel(1), img.channel(2));
    (0..img.plane())
        .map(|i| {
            let v = 0.2989f32 * r[i] as f32 + 0.587f32 * g[i] as f32;
            (v + 0.114f32 * b[i] as f32) as u8
        })
        .collect()
}

/// `_blend(img, other, ratio)`: `fl32(r)·x + fl32(1 − r)·other` in float32,
/// clamped to [0, 255] and truncated. `other(c, i)` gives the second image at
/// channel c, pixel i (already a float32 value).
fn blend_each(img: &mut U8Chw, ratio: f64, other: impl Fn(usize, usize) -> f32) {
    let (r, r1) = blend_ratios(ratio);
    let plane = img.plane();
    for c in 0..img.channels {
        for (i, v) in img.data[c * plane..(c + 1) * plane].iter_mut().enumerate() {
            let x = r * *v as f32 + r1 * other(c, i);
            *v = x.clamp(0.0, 255.0) as u8;
        }
    }
}

/// `adjust_sharpness`: blend with the 3×3 (1,1,1;1,5,1;1,1,1)/13 blur, whose
/// border rows and columns are the original pixels.
fn sharpness(img: &mut U8Chw, factor: f64) {
    let (w, h) = (img.width, img.height);
    if w <= 2 || h <= 2 {
        return;
    }
    let mut blurred = img.clone();
    for c in 0..img.channels {
        let src = img.channel(c);
        let dst = blurred.channel_mut(c);
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let mut s = 4 * src[y * w + x] as u32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        s += src[(y + dy - 1) * w + x + dx - 1] as u32;
                    }
                }
                // round(conv/13) with no exact tie possible = (2S + 13) // 26
                dst[y * w + x] = ((2 * s + 13) / 26) as u8;
            }
        }
    }
    let plane = img.plane();
    blend_each(img, factor, |c, i| blurred.data[c * plane + i] as f32);
}

/// Per channel: stretch [min, max] to [0, 255] in float32, truncated;
/// a flat channel is unchanged. torchvision writes `255.0 / (max - min)`,
/// which torch evaluates as `reciprocal(max - min) * 255` (`__rtruediv__`),
/// one rounding more than a division.
fn autocontrast(img: &mut U8Chw) {
    for c in 0..img.channels {
        let ch = img.channel_mut(c);
        let (mn, mx) = ch
            .iter()
            .fold((255u8, 0u8), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let (mn, mx) = (mn as f32, mx as f32);
        let scale = (1.0f32 / (mx - mn)) * 255.0f32;
        let (mn, scale) = if scale.is_finite() {
            (mn, scale)
        } else {
            (0.0, 1.0)
        };
        for v in ch.iter_mut() {
            *v = ((*v as f32 - mn) * scale).clamp(0.0, 255.0) as u8;
        }
    }
}

/// torchvision `_scale_channel` per channel.
fn equalize(img: &mut U8Chw) {
    for c in 0..img.channels {
        let ch = img.channel_mut(c);
        let mut hist = [0u64; 256];
        for &v in ch.iter() {
            hist[v as usize] += 1;
        }
        let nonzero: Vec<u64> = hist.iter().copied().filter(|&n| n != 0).collect();
        let step = nonzero[..nonzero.len() - 1].iter().sum::<u64>() / 255;
        if step == 0 {
            continue;
        }
        let mut lut = [0u8; 256];
        let mut cum = 0u64;
        for v in 0..256 {
            lut[v] = if v == 0 {
                0
            } else {
                ((cum + step / 2) / step).min(255) as u8
            };
            cum += hist[v];
        }
        ch.iter_mut().for_each(|v| *v = lut[*v as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magnitudes_match_torchvision() {
        // FACTS.md §4 (torchvision, num_magnitude_bins=31, magnitude=9, 224×224).
        let m = |op: &str| {
            magnitude(
                OP_NAMES.iter().position(|n| *n == op).unwrap(),
                9,
                31,
                224,
                224,
            )
        };
        assert_eq!(m("ShearX"), 0.09000000357627869);
        assert_eq!(m("TranslateX"), 30.45317268371582);
        assert_eq!(m("Rotate"), 9.0);
        assert_eq!(m("Brightness"), 0.26999998092651367);
        assert_eq!(m("Posterize"), 7.0);
        assert_eq!(m("Solarize"), 178.5);
        assert_eq!(m("Equalize"), 0.0);
        assert_eq!(1.0 + m("Sharpness"), 1.2699999809265137);
    }

    #[test]
    fn self_blend_trap() {
        // Brightness-style blend of a pixel with itself at r = 1.27 lowers
        // exactly these twenty values by one (FACTS.md §4).
        let lowered: Vec<u8> = (0..=255u8)
            .filter(|&x| {
                let mut img = U8Chw {
                    channels: 1,
                    height: 1,
                    width: 1,
                    data: vec![x],
                };
                blend_each(&mut img, 1.2699999809265137, |_, _| x as f32);
                img.data[0] != x
            })
            .collect();
        assert_eq!(
            lowered,
            [
                7, 14, 28, 29, 56, 58, 105, 109, 112, 116, 123, 207, 210, 218, 221, 224, 232, 235,
                246, 249
            ]
        );
    }

    #[test]
    fn posterize_and_solarize() {
        let mut img = U8Chw {
            channels: 1,
            height: 1,
            width: 4,
            data: vec![0, 179, 178, 255],
        };
        apply_op(&mut img, 11, 178.5);
        assert_eq!(img.data, [0, 76, 178, 0]);
        apply_op(&mut img, 10, 7.0);
        assert_eq!(img.data, [0, 76, 178, 0]);
        let mut img = U8Chw {
            channels: 1,
            height: 1,
            width: 2,
            data: vec![3, 255],
        };
        apply_op(&mut img, 10, 7.0);
        assert_eq!(img.data, [2, 254]);
    }

    #[test]
    fn translate_moves_and_zero_fills() {
        let data: Vec<u8> = (1..=12).collect();
        let mut img = U8Chw {
            channels: 1,
            height: 3,
            width: 4,
            data,
        };
        apply_op(&mut img, 3, 1.7); // int(1.7) = 1: shift right by one
        assert_eq!(img.data, [0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11]);
        apply_op(&mut img, 4, -1.2); // up by one
        assert_eq!(img.data, [0, 5, 6, 7, 0, 9, 10, 11, 0, 0, 0, 0]);
    }
}
