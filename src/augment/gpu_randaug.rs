//! The GPU augmentation, stage 2 (kernels/randaug.cu `randaug_u8`):
//! RandAugment on the uint8 crops of stage 1, one block per crop. The host
//! encodes each crop's stored (op, magnitude) list into kernel ops: the
//! geometric ops as their inverse matrix, the factor ops as their float32
//! blend ratios, Posterize as its mask and Solarize as its threshold. The
//! CPU twin runs the same program with the kernel's arithmetic and is checked
//! against the CPU reference (`randaug::apply_op`) op by op.

use super::randaug::{OP_NAMES, affine_matrix, blend_ratios, posterize_mask};
use crate::cuda::kernels::randaug::{DESC, OP_WORDS, RANDAUG_U8, THREADS};
use crate::cuda::{CudaError, DevBuf, LaunchShape, Result, Stream};

/// Op codes of the .cu's enum.
const OP_AFFINE: u32 = 1;
const OP_BRIGHTNESS: u32 = 2;
const OP_COLOR: u32 = 3;
const OP_CONTRAST: u32 = 4;
const OP_SHARPNESS: u32 = 5;
const OP_POSTERIZE: u32 = 6;
const OP_SOLARIZE: u32 = 7;
const OP_AUTOCONTRAST: u32 = 8;
const OP_EQUALIZE: u32 = 9;

/// Solarize inverts `v` when `v as f64 >= mag`: the smallest such `v` in
/// 0..=256 (256: none; a NaN magnitude compares false everywhere).
fn solarize_threshold(mag: f64) -> u32 {
    (0..=256u32).find(|&v| v as f64 >= mag).unwrap_or(256)
}

/// One stored op as kernel words, or `None` where it leaves every image of
/// `w`×`h` as it is (Identity, Sharpness on an image without an interior).
fn encode(op: usize, mag: f64, w: usize, h: usize) -> Option<[u32; OP_WORDS]> {
    let mut words = [0u32; OP_WORDS];
    if let Some(m) = affine_matrix(op, mag, w, h) {
        words[0] = OP_AFFINE;
        for (i, v) in m.iter().enumerate() {
            let bits = v.to_bits();
            words[1 + 2 * i] = bits as u32;
            words[2 + 2 * i] = (bits >> 32) as u32;
        }
        return Some(words);
    }
    let ratios = |code: u32, words: &mut [u32; OP_WORDS]| {
        let (r, r1) = blend_ratios(1.0 + mag);
        words[..3].copy_from_slice(&[code, r.to_bits(), r1.to_bits()]);
    };
    match OP_NAMES[op] {
        "Identity" => return None,
        "Sharpness" if w <= 2 || h <= 2 => return None,
        "Brightness" => ratios(OP_BRIGHTNESS, &mut words),
        "Color" => ratios(OP_COLOR, &mut words),
        "Contrast" => ratios(OP_CONTRAST, &mut words),
        "Sharpness" => ratios(OP_SHARPNESS, &mut words),
        "Posterize" => words[..2].copy_from_slice(&[OP_POSTERIZE, posterize_mask(mag) as u32]),
        "Solarize" => words[..2].copy_from_slice(&[OP_SOLARIZE, solarize_threshold(mag)]),
        "AutoContrast" => words[0] = OP_AUTOCONTRAST,
        "Equalize" => words[0] = OP_EQUALIZE,
        other => unreachable!("op {other}"),
    }
    Some(words)
}

/// Stage 2's tables for a batch: a descriptor for every crop with ops.
#[derive(Debug, Default, Clone)]
pub struct RandaugPlan {
    pub desc: Vec<u32>,
    pub prog: Vec<u32>,
}

impl RandaugPlan {
    /// Adds crop `crop`'s stored ops for a `w`×`h` crop; an op index outside
    /// RandAugment's 14 is an error naming it.
    pub fn push(
        &mut self,
        crop: usize,
        ops: &[(u8, f64)],
        (w, h): (usize, usize),
    ) -> std::result::Result<(), String> {
        let first = self.prog.len();
        for &(op, mag) in ops {
            if op as usize >= OP_NAMES.len() {
                return Err(format!(
                    "RandAugment op {op} (there are {})",
                    OP_NAMES.len()
                ));
            }
            if let Some(words) = encode(op as usize, mag, w, h) {
                self.prog.extend_from_slice(&words);
            }
        }
        let n = (self.prog.len() - first) / OP_WORDS;
        if n > 0 {
            self.desc.extend([crop as u32, first as u32, n as u32]);
        }
        Ok(())
    }

    /// Crops with at least one op: the launch's blocks.
    pub fn blocks(&self) -> usize {
        self.desc.len() / DESC
    }
}

/// Runs the plan on `crops` (HWC `w`×`h`, one after another) in place;
/// `scratch` is as large as `crops`.
pub fn randaug(
    stream: &Stream,
    blocks: usize,
    desc: &DevBuf<u32>,
    prog: &DevBuf<u32>,
    crops: &mut DevBuf<u8>,
    scratch: &mut DevBuf<u8>,
    (w, h): (usize, usize),
) -> Result<()> {
    if blocks == 0 {
        return Ok(());
    }
    if scratch.len() < crops.len() || desc.len() < blocks * DESC || w * h * 3 > u32::MAX as usize {
        return Err(CudaError::Invalid(format!(
            "randaug: {blocks} crops of {w}x{h}: scratch {} < crops {} or descriptors short",
            scratch.len(),
            crops.len()
        )));
    }
    let shape = LaunchShape {
        grid: (blocks as u32, 1, 1),
        block: (THREADS, 1, 1),
        shared_bytes: 0,
    };
    stream.launch(
        &RANDAUG_U8,
        shape,
        (crops, scratch, desc, prog, w as u32, h as u32),
    )
}

/// CPU twin of `randaug_u8`: the same program with the kernel's arithmetic.
pub mod cpu {
    use super::*;

    fn blend(r: f32, r1: f32, x: f32, other: f32) -> u8 {
        (r * x + r1 * other).clamp(0.0, 255.0) as u8
    }

    fn gray(p: &[u8]) -> u32 {
        let v = 0.2989f32 * p[0] as f32 + 0.587f32 * p[1] as f32;
        (v + 0.114f32 * p[2] as f32) as u32
    }

    fn affine(src: &[u8], dst: &mut [u8], op: &[u32], w: usize, h: usize) {
        let m: [f64; 6] = std::array::from_fn(|i| {
            f64::from_bits(op[1 + 2 * i] as u64 | (op[2 + 2 * i] as u64) << 32)
        });
        let (hw, hh) = (w as f64 * 0.5, h as f64 * 0.5);
        for y in 0..h {
            for x in 0..w {
                let xc = (x as f64 + 0.5) - hw;
                let yc = (y as f64 + 0.5) - hh;
                let sx = m[0] * xc + m[1] * yc + m[2];
                let sy = m[3] * xc + m[4] * yc + m[5];
                let ix = super::super::randaug::round_half_even(sx + hw - 0.5);
                let iy = super::super::randaug::round_half_even(sy + hh - 0.5);
                let inside = ix >= 0.0 && iy >= 0.0 && ix < w as f64 && iy < h as f64;
                for c in 0..3 {
                    dst[(y * w + x) * 3 + c] = if inside {
                        src[(iy as usize * w + ix as usize) * 3 + c]
                    } else {
                        0
                    };
                }
            }
        }
    }

    fn sharpness(src: &[u8], dst: &mut [u8], r: f32, r1: f32, w: usize, h: usize) {
        for y in 0..h {
            for x in 0..w {
                let border = x == 0 || y == 0 || x == w - 1 || y == h - 1;
                for c in 0..3 {
                    let v = src[(y * w + x) * 3 + c] as u32;
                    let mut other = v;
                    if !border {
                        let mut s = 4 * v;
                        for yy in y - 1..=y + 1 {
                            for xx in x - 1..=x + 1 {
                                s += src[(yy * w + xx) * 3 + c] as u32;
                            }
                        }
                        other = (2 * s + 13) / 26;
                    }
                    dst[(y * w + x) * 3 + c] = blend(r, r1, v as f32, other as f32);
                }
            }
        }
    }

    /// Per channel (min, max).
    fn channel_range(img: &[u8]) -> [(u32, u32); 3] {
        let mut r = [(255u32, 0u32); 3];
        for p in img.chunks(3) {
            for c in 0..3 {
                r[c] = (r[c].0.min(p[c] as u32), r[c].1.max(p[c] as u32));
            }
        }
        r
    }

    fn equalize(img: &mut [u8]) {
        let n = (img.len() / 3) as u32;
        let range = channel_range(img);
        let mut hist = [[0u32; 256]; 3];
        for p in img.chunks(3) {
            for c in 0..3 {
                hist[c][p[c] as usize] += 1;
            }
        }
        let step: [u32; 3] = std::array::from_fn(|c| (n - hist[c][range[c].1 as usize]) / 255);
        let mut scan = hist;
        for s in &mut scan {
            for v in 1..256 {
                s[v] += s[v - 1];
            }
        }
        for (i, v) in img.iter_mut().enumerate() {
            let (c, s) = (i % 3, step[i % 3]);
            if s == 0 || *v == 0 {
                continue;
            }
            *v = ((scan[c][*v as usize - 1] + s / 2) / s).min(255) as u8;
        }
    }

    fn autocontrast(img: &mut [u8]) {
        let range = channel_range(img);
        for (i, v) in img.iter_mut().enumerate() {
            let (lo, hi) = range[i % 3];
            if lo == hi {
                continue;
            }
            let scale = (1.0f32 / (hi as f32 - lo as f32)) * 255.0f32;
            *v = ((*v as f32 - lo as f32) * scale).clamp(0.0, 255.0) as u8;
        }
    }

    /// One crop's ops, ping-ponging through `alt` as the kernel does.
    fn run_crop(home: &mut [u8], alt: &mut [u8], ops: &[u32], (w, h): (usize, usize)) {
        let mut in_alt = false;
        for op in ops.chunks(OP_WORDS) {
            let (cur, other) = if in_alt {
                (&mut *alt, &mut *home)
            } else {
                (&mut *home, &mut *alt)
            };
            let (r, r1) = (f32::from_bits(op[1]), f32::from_bits(op[2]));
            match op[0] {
                OP_AFFINE | OP_SHARPNESS => {
                    if op[0] == OP_AFFINE {
                        affine(cur, other, op, w, h);
                    } else {
                        sharpness(cur, other, r, r1, w, h);
                    }
                    in_alt = !in_alt;
                }
                OP_BRIGHTNESS => cur
                    .iter_mut()
                    .for_each(|v| *v = blend(r, r1, *v as f32, 0.0)),
                OP_COLOR => {
                    for p in cur.chunks_mut(3) {
                        let g = gray(p) as f32;
                        p.iter_mut().for_each(|v| *v = blend(r, r1, *v as f32, g));
                    }
                }
                OP_CONTRAST => {
                    let sum: u64 = cur.chunks(3).map(|p| gray(p) as u64).sum();
                    let mean = sum as f32 / (w * h) as f32;
                    cur.iter_mut()
                        .for_each(|v| *v = blend(r, r1, *v as f32, mean));
                }
                OP_POSTERIZE => cur.iter_mut().for_each(|v| *v &= op[1] as u8),
                OP_SOLARIZE => cur.iter_mut().for_each(|v| {
                    if *v as u32 >= op[1] {
                        *v = 255 - *v
                    }
                }),
                OP_AUTOCONTRAST => autocontrast(cur),
                OP_EQUALIZE => equalize(cur),
                code => unreachable!("op code {code}"),
            }
        }
        if in_alt {
            home.copy_from_slice(alt);
        }
    }

    /// Runs `plan` on `crops` in place.
    pub fn randaug(crops: &mut [u8], plan: &RandaugPlan, (w, h): (usize, usize)) {
        let bytes = w * h * 3;
        let mut alt = vec![0u8; bytes];
        for d in plan.desc.chunks(DESC) {
            let (crop, first, n) = (d[0] as usize, d[1] as usize, d[2] as usize);
            let home = &mut crops[crop * bytes..(crop + 1) * bytes];
            run_crop(
                home,
                &mut alt,
                &plan.prog[first..first + n * OP_WORDS],
                (w, h),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::image::{Rgb8, U8Chw};
    use crate::augment::randaug::{SIGNED, apply_op, magnitude};
    use crate::cuda::testing::{gpu_or_skip, random_bytes};
    use crate::rng::Philox;

    /// A crop (HWC) and its stored ops.
    type Case = (Vec<u8>, Vec<(u8, f64)>);

    /// Crops of every kind the ops care about: noise, few levels (Equalize's
    /// steps), a flat channel (AutoContrast, Equalize), sizes without an
    /// interior, odd shapes.
    fn crops(w: usize, h: usize, seed: u64) -> Vec<Vec<u8>> {
        let noise = random_bytes(w * h * 3, seed);
        let few: Vec<u8> = noise.iter().map(|v| 40 + (v % 5) * 30).collect();
        let flat: Vec<u8> = noise
            .iter()
            .enumerate()
            .map(|(i, &v)| if i % 3 == 1 { 77 } else { v / 2 + 60 })
            .collect();
        let dark: Vec<u8> = noise.iter().map(|v| v / 16).collect();
        vec![noise, few, flat, dark]
    }

    /// The reference: `apply_op` on the CHW tensor, back to HWC.
    fn reference(hwc: &[u8], w: usize, h: usize, ops: &[(u8, f64)]) -> Vec<u8> {
        let mut t: U8Chw = Rgb8::from_raw(w, h, hwc.to_vec()).to_chw();
        for &(op, mag) in ops {
            apply_op(&mut t, op as usize, mag);
        }
        let plane = w * h;
        (0..plane * 3)
            .map(|i| t.data[(i % 3) * plane + i / 3])
            .collect()
    }

    /// Every op at its drawn magnitude (both signs where signed) and at
    /// random magnitudes, one per crop, then random lists of 2 and 3 ops.
    fn cases(w: usize, h: usize, seed: u64) -> Vec<Case> {
        let mut r = Philox::new(seed, w as u32, h as u32, 9);
        let mut out = Vec::new();
        for img in crops(w, h, seed) {
            for op in 0..14u8 {
                let m = magnitude(op as usize, 9, 31, h, w);
                let wild = match OP_NAMES[op as usize] {
                    "Posterize" => r.below(9) as f64,
                    "Solarize" => r.uniform_f32() as f64 * 300.0 - 20.0,
                    "Rotate" => r.uniform_f32() as f64 * 360.0 - 180.0,
                    _ => r.uniform_f32() as f64 * 1.8 - 0.9,
                };
                out.push((img.clone(), vec![(op, m)]));
                out.push((img.clone(), vec![(op, wild)]));
                if SIGNED[op as usize] {
                    out.push((img.clone(), vec![(op, -m)]));
                }
            }
            for n in [2, 3, 2] {
                let ops = (0..n)
                    .map(|_| {
                        let op = r.below(14) as usize;
                        let m = magnitude(op, 1 + r.below(30), 31, h, w);
                        let sign = if SIGNED[op] && r.below(2) == 1 {
                            -1.0
                        } else {
                            1.0
                        };
                        (op as u8, sign * m)
                    })
                    .collect();
                out.push((img.clone(), ops));
            }
        }
        out
    }

    fn plan_of(cases: &[Case], wh: (usize, usize)) -> (Vec<u8>, RandaugPlan) {
        let mut plan = RandaugPlan::default();
        let mut data = Vec::new();
        for (i, (img, ops)) in cases.iter().enumerate() {
            data.extend_from_slice(img);
            plan.push(i, ops, wh).unwrap();
        }
        (data, plan)
    }

    #[test]
    fn twin_equals_the_cpu_reference_op_by_op() {
        for (w, h, seed) in [
            (24, 24, 1u64),
            (37, 19, 2),
            (2, 5, 3),
            (1, 1, 4),
            (64, 48, 5),
        ] {
            let cases = cases(w, h, seed);
            let (mut data, plan) = plan_of(&cases, (w, h));
            cpu::randaug(&mut data, &plan, (w, h));
            for (i, (img, ops)) in cases.iter().enumerate() {
                let want = reference(img, w, h, ops);
                let got = &data[i * w * h * 3..(i + 1) * w * h * 3];
                let names: Vec<_> = ops
                    .iter()
                    .map(|&(o, m)| (OP_NAMES[o as usize], m))
                    .collect();
                assert!(got == &want[..], "{w}x{h} case {i}: {names:?}");
            }
        }
    }

    #[test]
    fn solarize_threshold_matches_the_comparison() {
        for mag in [
            -1.0,
            0.0,
            0.5,
            1.0,
            178.5,
            255.0,
            255.5,
            256.0,
            1e9,
            f64::NAN,
        ] {
            let t = solarize_threshold(mag);
            for v in 0..=255u32 {
                assert_eq!(v >= t, v as f64 >= mag, "mag {mag} v {v}");
            }
        }
    }

    #[test]
    fn identity_is_not_launched_and_bad_ops_are_named() {
        let mut plan = RandaugPlan::default();
        plan.push(0, &[(0, 0.0), (0, 0.0)], (8, 8)).unwrap();
        plan.push(1, &[(9, 0.27)], (2, 8)).unwrap(); // Sharpness, no interior
        assert_eq!(plan.blocks(), 0);
        let e = plan.push(2, &[(14, 0.0)], (8, 8)).unwrap_err();
        assert!(e.contains("op 14"), "{e}");
    }

    #[test]
    fn kernel_matches_cpu_twin() {
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(0);
        for (w, h, seed) in [(224, 224, 6u64), (37, 19, 7), (2, 5, 8)] {
            let cases = cases(w, h, seed);
            let (data, plan) = plan_of(&cases, (w, h));
            let mut want = data.clone();
            cpu::randaug(&mut want, &plan, (w, h));
            let mut crops = s.to_device(&data).unwrap();
            let mut scratch = gpu.alloc::<u8>(data.len()).unwrap();
            let (desc, prog) = (
                s.to_device(&plan.desc).unwrap(),
                s.to_device(&plan.prog).unwrap(),
            );
            randaug(
                &s,
                plan.blocks(),
                &desc,
                &prog,
                &mut crops,
                &mut scratch,
                (w, h),
            )
            .unwrap();
            let got = s.to_host(&crops).unwrap();
            for (i, (_, ops)) in cases.iter().enumerate() {
                let r = i * w * h * 3..(i + 1) * w * h * 3;
                assert!(
                    got[r.clone()] == want[r],
                    "{w}x{h} case {i} {ops:?}: kernel vs twin (tolerance: exact)"
                );
            }
        }
    }
}
