//! The GPU augmentation, stage 3 (kernels/augment.cu `finish_f32_nchw`,
//! `finish_bf16_nhwc`): ToTensor, erase, normalize, MixUp and CutMix on the
//! augmented uint8 crops, written as the teacher's float32 NCHW batch (the
//! parity layout) or its bf16 NHWC batch (what the GPU teacher reads). Descriptors come from
//! the sample parameters; the CPU twin runs them and is checked against the
//! CPU reference (`tensor.rs`).

use super::params::SampleParams;
use crate::config::Augmentation;
use crate::cuda::kernels::augment::{
    FINISH_BF16_NHWC, FINISH_DESC, FINISH_F32_NCHW, RESAMPLE_THREADS,
};
use crate::cuda::{CudaError, DevBuf, LaunchShape, Region, Result, Stream};

/// Offsets of F_* in the .cu's descriptor.
const F_SRC: usize = 0;
const F_ERASE: usize = 1;
const F_PAIR_SRC: usize = 5;
const F_PAIR_ERASE: usize = 6;
const F_MIX: usize = 10;
const F_MIXUP_A: usize = 11;
const F_MIXUP_B: usize = 12;
const F_CUTMIX: usize = 13;

/// An erase record `[top, left, h, w]` clamped to a `w`×`h` tensor, as
/// Python's slicing clamps it; `None` → an empty box.
fn erase_box(rec: Option<[i64; 4]>, w: usize, h: usize) -> [u32; 4] {
    match rec {
        Some([x, y, eh, ew]) if x != -1 => {
            let (r0, r1) = (x.clamp(0, h as i64), (x + eh).clamp(0, h as i64));
            let (c0, c1) = (y.clamp(0, w as i64), (y + ew).clamp(0, w as i64));
            [r0 as u32, c0 as u32, (r1 - r0) as u32, (c1 - c0) as u32]
        }
        _ => [0; 4],
    }
}

/// The descriptor of one sample whose crop (and pair's) sit at the given
/// byte offsets of the crop buffer (HWC, `w`×`h`).
pub fn finish_desc(
    aug: &Augmentation,
    p: &SampleParams,
    src: usize,
    pair_src: usize,
    w: usize,
    h: usize,
) -> [u32; FINISH_DESC] {
    let mut d = [0u32; FINISH_DESC];
    d[F_SRC] = src as u32;
    d[F_ERASE..F_ERASE + 4].copy_from_slice(&erase_box(p.side.erase.flatten(), w, h));
    let mut mix = if aug.normalize.is_some() { 4 } else { 0 };
    if let Some(q) = &p.pair {
        d[F_PAIR_SRC] = pair_src as u32;
        d[F_PAIR_ERASE..F_PAIR_ERASE + 4].copy_from_slice(&erase_box(q.side.erase.flatten(), w, h));
        if let Some(Some(lam)) = p.mixup {
            mix |= 1;
            d[F_MIXUP_A] = (lam as f32).to_bits();
            d[F_MIXUP_B] = ((1.0 - lam) as f32).to_bits();
        }
        if let Some(Some((_, b))) = p.cutmix {
            mix |= 2;
            let [x1, y1, x2, y2] = b.map(|v| v.max(0) as usize);
            d[F_CUTMIX..F_CUTMIX + 4].copy_from_slice(&[
                x1 as u32,
                y1 as u32,
                x2.min(h) as u32,
                y2.min(w) as u32,
            ]);
        }
    }
    d[F_MIX] = mix;
    d
}

/// `{mean[3], std[3]}` for the kernel (ones and zeros without Normalize).
pub fn norm_table(aug: &Augmentation) -> [f32; 6] {
    match &aug.normalize {
        Some(n) => [
            n.mean[0], n.mean[1], n.mean[2], n.std[0], n.std[1], n.std[2],
        ],
        None => [0.0, 0.0, 0.0, 1.0, 1.0, 1.0],
    }
}

/// Where stage 3 writes: [samples][3][h][w] float32 or [samples][h][w][3]
/// bf16 bits.
pub enum FinishOut<'a> {
    F32Nchw(&'a mut DevBuf<f32>),
    Bf16Nhwc(&'a mut DevBuf<u16>),
    /// Straight into a region, [samples][h][w][channels] with zeros after
    /// RGB: the GPU teacher's input in its arena (`GpuPlan::input_channels`:
    /// 3, or 8 for a stem that reads 8 channels at a time).
    Bf16NhwcRegion {
        out: Region<u16>,
        channels: usize,
    },
}

/// float32 → bf16 bits, round to nearest even (finite values), as the .cu.
pub fn bf16_bits(f: f32) -> u16 {
    let u = f.to_bits();
    ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) as u16
}

/// Launches stage 3 for `samples` descriptors into `out`.
pub fn finish(
    stream: &Stream,
    crops: &DevBuf<u8>,
    desc: &DevBuf<u32>,
    norm: &DevBuf<f32>,
    out: FinishOut,
    samples: usize,
    (w, h): (usize, usize),
) -> Result<()> {
    if samples == 0 {
        return Ok(());
    }
    let (out_len, channels) = match &out {
        FinishOut::F32Nchw(o) => (o.len(), 3),
        FinishOut::Bf16Nhwc(o) => (o.len(), 3),
        FinishOut::Bf16NhwcRegion { out, channels } => (out.len(), *channels),
    };
    if desc.len() < samples * FINISH_DESC || out_len < samples * channels * w * h || norm.len() < 6
    {
        return Err(CudaError::Invalid(format!(
            "finish: buffers too small for {samples} samples of {w}x{h}x{channels}"
        )));
    }
    if let FinishOut::Bf16NhwcRegion { out, channels } = &out
        && (*channels < 3 || *channels > 64 || (*channels == 8 && !out.is_aligned(16)))
    {
        return Err(CudaError::Invalid(format!(
            "finish: {channels} channels a pixel (3 to 64; 8 needs a 16-byte aligned region)"
        )));
    }
    if samples > 65535 || w * h > u32::MAX as usize {
        return Err(CudaError::Invalid(format!(
            "finish: {samples} samples of {w}x{h} in one launch (at most 65535)"
        )));
    }
    let shape = LaunchShape {
        grid: (
            ((w * h) as u32).div_ceil(RESAMPLE_THREADS),
            samples as u32,
            1,
        ),
        block: (RESAMPLE_THREADS, 1, 1),
        shared_bytes: 0,
    };
    let (w, h, c) = (w as u32, h as u32, channels as u32);
    match out {
        FinishOut::F32Nchw(o) => {
            stream.launch(&FINISH_F32_NCHW, shape, (crops, desc, norm, o, w, h))
        }
        FinishOut::Bf16Nhwc(o) => {
            stream.launch(&FINISH_BF16_NHWC, shape, (crops, desc, norm, o, w, h, c))
        }
        FinishOut::Bf16NhwcRegion { out, .. } => {
            stream.launch(&FINISH_BF16_NHWC, shape, (crops, desc, norm, out, w, h, c))
        }
    }
}

/// CPU twins of `finish_f32_nchw` and `finish_bf16_nhwc`.
pub mod cpu {
    use super::*;

    /// `finish`'s [samples][3][h][w] float32 as `finish_bf16_nhwc` writes
    /// it with `channels` a pixel.
    pub fn to_bf16_nhwc(nchw: &[f32], (w, h): (usize, usize), channels: usize) -> Vec<u16> {
        let plane = w * h;
        (0..nchw.len() / 3 * channels)
            .map(|i| {
                let (s, px, c) = (i / (channels * plane), (i / channels) % plane, i % channels);
                if c < 3 {
                    bf16_bits(nchw[(s * 3 + c) * plane + px])
                } else {
                    0
                }
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)] // mirrors the kernel's side_value
    fn side(
        crops: &[u8],
        src: usize,
        erase: &[u32],
        w: usize,
        x: usize,
        y: usize,
        c: usize,
        norm: &[f32; 6],
        normalize: bool,
    ) -> f32 {
        let mut v = crops[src + (y * w + x) * 3 + c] as f32 / 255.0;
        let [t, l, eh, ew] = [0, 1, 2, 3].map(|i| erase[i] as usize);
        if y >= t && y < t + eh && x >= l && x < l + ew {
            v = 0.0;
        }
        if normalize {
            v = (v - norm[c]) / norm[3 + c];
        }
        v
    }

    pub fn finish(crops: &[u8], desc: &[u32], norm: &[f32; 6], (w, h): (usize, usize)) -> Vec<f32> {
        let n = desc.len() / FINISH_DESC;
        let mut out = vec![0f32; n * 3 * w * h];
        for (s, d) in desc.chunks(FINISH_DESC).enumerate() {
            let mix = d[F_MIX];
            let normalize = mix & 4 != 0;
            let (a, b) = (f32::from_bits(d[F_MIXUP_A]), f32::from_bits(d[F_MIXUP_B]));
            let cm = &d[F_CUTMIX..F_CUTMIX + 4];
            for y in 0..h {
                for x in 0..w {
                    let in_box = mix & 2 != 0
                        && (y as u32) >= cm[0]
                        && (y as u32) < cm[2]
                        && (x as u32) >= cm[1]
                        && (x as u32) < cm[3];
                    for c in 0..3 {
                        let mut v = side(
                            crops,
                            d[F_SRC] as usize,
                            &d[F_ERASE..],
                            w,
                            x,
                            y,
                            c,
                            norm,
                            normalize,
                        );
                        if mix & 3 != 0 {
                            let v2 = side(
                                crops,
                                d[F_PAIR_SRC] as usize,
                                &d[F_PAIR_ERASE..],
                                w,
                                x,
                                y,
                                c,
                                norm,
                                normalize,
                            );
                            if mix & 1 != 0 {
                                v = a * v + b * v2;
                            }
                            if in_box {
                                v = v2;
                            }
                        }
                        out[((s * 3 + c) * h + y) * w + x] = v;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::image::Rgb8;
    use crate::augment::params::Draw;
    use crate::augment::pipeline::float_stage;
    use crate::augment::tensor;
    use crate::config::ReinforceConfig;
    use crate::cuda::testing::{gpu_or_skip, random_bytes};

    const CONFIG: &str = "reinforce:
  num_samples: 64
  image_augmentation:
    uint8: {}
    random_resized_crop: {size: 24}
    to_tensor: {}
    random_erase: {p: 0.7}
    normalize: {mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
    mixup: {alpha: 1.0, p: 0.6}
    cutmix: {alpha: 1.0, p: 0.6}
";

    /// Crops (HWC) of 4 images, the drawn parameters of 64 samples, their
    /// descriptors (image i's crop at i * 24*24*3, the pair's likewise).
    fn case() -> (ReinforceConfig, Vec<u8>, Vec<SampleParams>, Vec<u32>) {
        let cfg = ReinforceConfig::parse(CONFIG, "t.yaml", false).unwrap();
        let (w, h) = (24, 24);
        let crops = random_bytes(4 * w * h * 3, 9);
        let size = |_: u32| (100usize, 80usize);
        let draw = Draw {
            aug: &cfg.augment,
            seed: 3,
            num_samples: 64,
            size_of: &size,
        };
        let params: Vec<SampleParams> = (0..64)
            .map(|s| draw.sample(s % 4, s, &[0, 1, 2, 3]))
            .collect();
        let desc: Vec<u32> = params
            .iter()
            .enumerate()
            .flat_map(|(s, p)| {
                let pair = p.pair.as_ref().map_or(0, |q| q.id2 as usize);
                finish_desc(&cfg.augment, p, (s % 4) * w * h * 3, pair * w * h * 3, w, h)
            })
            .collect();
        (cfg, crops, params, desc)
    }

    #[test]
    fn twin_equals_the_cpu_reference() {
        let (cfg, crops, params, desc) = case();
        let (w, h) = (24, 24);
        let got = cpu::finish(&crops, &desc, &norm_table(&cfg.augment), (w, h));
        let chw = |i: usize| {
            Rgb8::from_raw(w, h, crops[i * w * h * 3..(i + 1) * w * h * 3].to_vec()).to_chw()
        };
        let mut mixed = 0;
        for (s, p) in params.iter().enumerate() {
            let mut x = float_stage(&cfg.augment, &chw(s % 4), &p.side);
            if let Some(q) = &p.pair {
                let x2 = float_stage(&cfg.augment, &chw(q.id2 as usize), &q.side);
                if let Some(Some(lam)) = p.mixup {
                    tensor::mixup(&mut x, &x2, lam);
                    mixed += 1;
                }
                if let Some(Some((_, b))) = p.cutmix {
                    tensor::cutmix(&mut x, &x2, b);
                    mixed += 1;
                }
            }
            let g = &got[s * 3 * w * h..(s + 1) * 3 * w * h];
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(g), bits(&x.data), "sample {s} {p:?}");
        }
        assert!(mixed > 10, "the draws exercised mixing only {mixed} times");
    }

    #[test]
    fn kernel_matches_cpu_twin() {
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(0);
        let (cfg, crops, params, desc) = case();
        let (w, h) = (24, 24);
        let norm = norm_table(&cfg.augment);
        let want = cpu::finish(&crops, &desc, &norm, (w, h));
        let dc = s.to_device(&crops).unwrap();
        let dd = s.to_device(&desc).unwrap();
        let dn = s.to_device(&norm).unwrap();
        let mut out = gpu.alloc::<f32>(want.len()).unwrap();
        let o = FinishOut::F32Nchw(&mut out);
        finish(&s, &dc, &dd, &dn, o, params.len(), (w, h)).unwrap();
        let got = s.to_host(&out).unwrap();
        let mut out16 = gpu.alloc::<u16>(want.len()).unwrap();
        let o = FinishOut::Bf16Nhwc(&mut out16);
        finish(&s, &dc, &dd, &dn, o, params.len(), (w, h)).unwrap();
        let got16 = s.to_host(&out16).unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&got),
            bits(&want),
            "f32 NCHW: kernel vs twin (tolerance: exact)"
        );
        assert!(
            got16 == cpu::to_bf16_nhwc(&want, (w, h), 3),
            "bf16 NHWC: kernel vs twin (tolerance: exact)"
        );
        // A padded teacher input: 8 channels (the 16-byte store) and 5 (the
        // loop), over stale bytes that the zero channels must overwrite.
        for channels in [8, 5] {
            let len = want.len() / 3 * channels;
            let padded = s.to_device(&vec![0xFFFFu16; len]).unwrap();
            let o = FinishOut::Bf16NhwcRegion {
                out: padded.region(&s, 0..len).unwrap(),
                channels,
            };
            finish(&s, &dc, &dd, &dn, o, params.len(), (w, h)).unwrap();
            assert!(
                s.to_host(&padded).unwrap() == cpu::to_bf16_nhwc(&want, (w, h), channels),
                "bf16 NHWC, {channels} channels: kernel vs twin (tolerance: exact)"
            );
        }
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even (1) wins; just
        // above it rounds up; 1 + 3*2^-8 ties up to the even 1 + 2^-6.
        assert_eq!(bf16_bits(1.0), 0x3F80);
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3F80);
        assert_eq!(bf16_bits(f32::from_bits(0x3F80_8001)), 0x3F81);
        assert_eq!(bf16_bits(1.0 + 3.0 / 256.0), 0x3F82);
        assert_eq!(bf16_bits(-2.5), 0xC020);
        assert_eq!(bf16_bits(f32::MAX), 0x7F80); // rounds to infinity, as the .cu
        // Every float32 from a random walk against f64 nearest-even rounding.
        let mut r = crate::rng::Philox::new(1, 2, 3, 4);
        for _ in 0..10_000 {
            let f = (r.uniform_f32() - 0.5) * 20.0;
            let b = f32::from_bits((bf16_bits(f) as u32) << 16);
            let (lo, hi) = (
                f32::from_bits(f.to_bits() & 0xFFFF_0000),
                f32::from_bits((f.to_bits() & 0xFFFF_0000) + 0x1_0000),
            );
            let (dl, dh) = ((f - lo).abs(), (hi - f).abs());
            assert!(b == lo || b == hi, "{f}");
            assert!(
                if dl < dh {
                    b == lo
                } else if dh < dl {
                    b == hi
                } else {
                    b.to_bits() & 0x1_0000 == 0
                },
                "{f}"
            );
        }
    }
}
