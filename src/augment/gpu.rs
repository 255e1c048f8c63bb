//! The GPU augmentation, stage 1: RandomResizedCrop's resampling for a whole
//! batch of crops in two launches of kernels/augment.cu. The host plans each
//! crop's two separable passes (Pillow's taps, Pillow's pass order) into
//! descriptor tables; the CPU twin runs the same tables and is checked
//! against the CPU reference (`before_collate`), so the plan is tested on
//! any machine and the kernel against the twin on a GPU.

use super::resample::{Taps, taps};
use crate::config::PassOrder;
use crate::cuda::kernels::augment::{RESAMPLE_DESC, RESAMPLE_PASS_U8, RESAMPLE_THREADS};
use crate::cuda::{CudaError, DevBuf, LaunchShape, Result, Stream};

/// A decoded image in the batch's upload buffer (HWC RGB).
#[derive(Debug, Clone, Copy)]
pub struct ImageSlot {
    pub offset: usize,
    pub width: usize,
    pub height: usize,
}

/// One crop: the image it comes from, RRC's (top, left, height, width), and
/// whether it is flipped afterwards.
#[derive(Debug, Clone, Copy)]
pub struct CropJob {
    pub image: usize,
    pub rect: [usize; 4],
    pub flip: bool,
}

/// Descriptor tables of both passes and the buffer sizes they need.
#[derive(Debug, Default)]
pub struct ResamplePlan {
    pub pass_a: Vec<u32>,
    pub pass_b: Vec<u32>,
    pub first: Vec<u32>,
    pub count: Vec<u32>,
    pub weights: Vec<i32>,
    pub scratch_bytes: usize,
    pub out_bytes: usize,
    /// Largest output of a pass (pixels): the grid's x extent.
    pub max_pixels: [usize; 2],
    pub samples: usize,
}

/// Taps of a `n`-pixel axis resampled to `out`; one weight-2^22 tap per
/// index when the size is kept (Pillow skips that pass: a copy).
fn axis_taps(n: usize, out: usize) -> Taps {
    if n == out {
        return Taps {
            first: (0..n).collect(),
            count: vec![1; n],
            weights: vec![1 << 22; n],
            ksize: 1,
        };
    }
    taps(n, 0.0, n as f32, out)
}

impl ResamplePlan {
    fn push_taps(&mut self, t: &Taps) -> (u32, u32, u32) {
        let at = (
            self.first.len() as u32,
            self.weights.len() as u32,
            t.ksize as u32,
        );
        self.first.extend(t.first.iter().map(|&f| f as u32));
        self.count.extend(t.count.iter().map(|&c| c as u32));
        self.weights.extend_from_slice(&t.weights);
        at
    }
}

/// Plans `jobs` into `out_w`×`out_h` crops as Pillow of `order` resizes them.
/// Descriptors hold 32-bit offsets: a batch's buffers stay under 4 GiB.
pub fn plan(
    images: &[ImageSlot],
    jobs: &[CropJob],
    out_w: usize,
    out_h: usize,
    order: PassOrder,
) -> std::result::Result<ResamplePlan, String> {
    let image_bytes = images
        .iter()
        .map(|s| s.offset + s.width * s.height * 3)
        .max()
        .unwrap_or(0);
    let scratch_bound: usize = jobs
        .iter()
        .map(|j| j.rect[2].max(out_h) * j.rect[3].max(out_w) * 3)
        .sum();
    if [image_bytes, scratch_bound, jobs.len() * out_w * out_h * 3]
        .iter()
        .any(|&b| b > u32::MAX as usize)
    {
        return Err(format!(
            "a batch of {} crops needs buffers over 4 GiB; split it",
            jobs.len()
        ));
    }
    for j in jobs {
        let s = images[j.image];
        let [top, left, h, w] = j.rect;
        if h == 0 || w == 0 || top + h > s.height || left + w > s.width {
            return Err(format!(
                "crop {:?} outside a {}x{} image",
                j.rect, s.width, s.height
            ));
        }
    }
    let mut p = ResamplePlan {
        samples: jobs.len(),
        out_bytes: jobs.len() * out_w * out_h * 3,
        ..Default::default()
    };
    for (n, job) in jobs.iter().enumerate() {
        let img = images[job.image];
        let [top, left, h, w] = job.rect;
        let (dh, dw) = (h as i64 - out_h as i64, w as i64 - out_w as i64);
        let horizontal_first = match order {
            PassOrder::Pillow12 => true,
            PassOrder::Pillow13 => !(dh > 0 && dh > dw * 2),
        };
        let th = axis_taps(w, out_w);
        let tv = axis_taps(h, out_h);
        let (th_at, tv_at) = (p.push_taps(&th), p.push_taps(&tv));
        let crop_off = img.offset + (top * img.width + left) * 3;
        let dst_off = n * out_w * out_h * 3;
        let scratch_off = p.scratch_bytes;
        // Pass A from the crop into scratch, pass B from scratch to the output.
        let (a_taps, a_vertical, mid_w, mid_h, b_taps) = if horizontal_first {
            (th_at, 0, out_w, h, tv_at)
        } else {
            (tv_at, 1, w, out_h, th_at)
        };
        let desc = |src_off: usize,
                    stride: usize,
                    ow: usize,
                    oh: usize,
                    dst: usize,
                    t: (u32, u32, u32),
                    vertical: u32,
                    flip: bool| {
            [
                src_off as u32,
                stride as u32,
                ow as u32,
                oh as u32,
                dst as u32,
                t.0,
                t.1,
                t.2,
                vertical,
                flip as u32,
            ]
        };
        p.pass_a.extend(desc(
            crop_off,
            img.width * 3,
            mid_w,
            mid_h,
            scratch_off,
            a_taps,
            a_vertical,
            false,
        ));
        p.pass_b.extend(desc(
            scratch_off,
            mid_w * 3,
            out_w,
            out_h,
            dst_off,
            b_taps,
            1 - a_vertical,
            job.flip,
        ));
        p.scratch_bytes += mid_w * mid_h * 3;
        p.max_pixels[0] = p.max_pixels[0].max(mid_w * mid_h);
        p.max_pixels[1] = p.max_pixels[1].max(out_w * out_h);
    }
    debug_assert_eq!(p.pass_a.len(), jobs.len() * RESAMPLE_DESC);
    Ok(p)
}

/// Device copies of a plan's tables.
pub struct DevicePlan {
    pub pass_a: DevBuf<u32>,
    pub pass_b: DevBuf<u32>,
    pub first: DevBuf<u32>,
    pub count: DevBuf<u32>,
    pub weights: DevBuf<i32>,
}

impl DevicePlan {
    pub fn upload(s: &Stream, p: &ResamplePlan) -> Result<Self> {
        Ok(DevicePlan {
            pass_a: s.to_device(&p.pass_a)?,
            pass_b: s.to_device(&p.pass_b)?,
            first: s.to_device(&p.first)?,
            count: s.to_device(&p.count)?,
            weights: s.to_device(&p.weights)?,
        })
    }

    /// Uploads another plan's tables, growing a buffer only when it is too
    /// small (a pipeline reuses one `DevicePlan` for every batch).
    pub fn refill(&mut self, s: &Stream, p: &ResamplePlan) -> Result<()> {
        s.refill(&p.pass_a, &mut self.pass_a)?;
        s.refill(&p.pass_b, &mut self.pass_b)?;
        s.refill(&p.first, &mut self.first)?;
        s.refill(&p.count, &mut self.count)?;
        s.refill(&p.weights, &mut self.weights)
    }
}

/// Both passes: `images` → `scratch` → `out` (HWC crops, one after another).
pub fn resample(
    stream: &Stream,
    p: &ResamplePlan,
    d: &DevicePlan,
    images: &DevBuf<u8>,
    scratch: &mut DevBuf<u8>,
    out: &mut DevBuf<u8>,
) -> Result<()> {
    if p.samples == 0 {
        return Ok(());
    }
    if scratch.len() < p.scratch_bytes || out.len() < p.out_bytes {
        return Err(CudaError::Invalid(format!(
            "resample: scratch {} / output {} bytes, the plan needs {} / {}",
            scratch.len(),
            out.len(),
            p.scratch_bytes,
            p.out_bytes
        )));
    }
    let samples = u32::try_from(p.samples)
        .ok()
        .filter(|&s| s <= 65535)
        .ok_or_else(|| {
            CudaError::Invalid(format!(
                "resample: {} crops in one launch (at most 65535)",
                p.samples
            ))
        })?;
    let shape = |pixels: usize| LaunchShape {
        grid: ((pixels as u32).div_ceil(RESAMPLE_THREADS), samples, 1),
        block: (RESAMPLE_THREADS, 1, 1),
        shared_bytes: 0,
    };
    stream.launch(
        &RESAMPLE_PASS_U8,
        shape(p.max_pixels[0]),
        (
            images,
            &mut *scratch,
            &d.pass_a,
            &d.first,
            &d.count,
            &d.weights,
        ),
    )?;
    stream.launch(
        &RESAMPLE_PASS_U8,
        shape(p.max_pixels[1]),
        (&*scratch, out, &d.pass_b, &d.first, &d.count, &d.weights),
    )
}

/// CPU twin: the kernel's loops over the same tables.
pub mod cpu {
    use super::RESAMPLE_DESC;

    pub fn resample_pass(
        src: &[u8],
        dst: &mut [u8],
        desc: &[u32],
        first: &[u32],
        count: &[u32],
        weights: &[i32],
    ) {
        for d in desc.chunks(RESAMPLE_DESC) {
            let [
                src_off,
                stride,
                out_w,
                out_h,
                dst_off,
                taps,
                wts,
                ksize,
                vertical,
                flip,
            ] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map(|i| d[i] as usize);
            for y in 0..out_h {
                for x in 0..out_w {
                    let o = if vertical == 1 { y } else { x };
                    let (f, n) = (first[taps + o] as usize, count[taps + o] as usize);
                    let k = &weights[wts + o * ksize..];
                    let mut acc = [1i64 << 21; 3];
                    for (i, &w) in k[..n].iter().enumerate() {
                        let p = if vertical == 1 {
                            src_off + (f + i) * stride + x * 3
                        } else {
                            src_off + y * stride + (f + i) * 3
                        };
                        for c in 0..3 {
                            acc[c] += src[p + c] as i64 * w as i64;
                        }
                    }
                    let xo = if flip == 1 { out_w - 1 - x } else { x };
                    let q = dst_off + (y * out_w + xo) * 3;
                    for c in 0..3 {
                        dst[q + c] = (acc[c] >> 22).clamp(0, 255) as u8;
                    }
                }
            }
        }
    }

    /// Both passes, as `super::resample` runs them.
    pub fn resample(p: &super::ResamplePlan, images: &[u8]) -> Vec<u8> {
        let mut scratch = vec![0u8; p.scratch_bytes];
        let mut out = vec![0u8; p.out_bytes];
        resample_pass(
            images,
            &mut scratch,
            &p.pass_a,
            &p.first,
            &p.count,
            &p.weights,
        );
        resample_pass(
            &scratch, &mut out, &p.pass_b, &p.first, &p.count, &p.weights,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::geometry::crop;
    use crate::augment::image::Rgb8;
    use crate::augment::resample::resize_bilinear;
    use crate::cuda::testing::{gpu_or_skip, random_bytes};
    use crate::rng::Philox;

    /// Random images and crops of every shape RRC makes: shrinking,
    /// enlarging, tall, wide, 1 px, the whole image, sizes kept.
    fn batch(seed: u64, out: usize) -> (Vec<u8>, Vec<ImageSlot>, Vec<CropJob>) {
        let mut r = Philox::new(seed, 0, 0, 5);
        let mut data = Vec::new();
        let mut slots = Vec::new();
        for i in 0..5 {
            let (w, h) = (1 + r.below(400) as usize, 1 + r.below(300) as usize);
            slots.push(ImageSlot {
                offset: data.len(),
                width: w,
                height: h,
            });
            data.extend(random_bytes(w * h * 3, seed * 10 + i));
        }
        let mut jobs = Vec::new();
        for k in 0..40 {
            let s = slots[k % slots.len()];
            let rect = match k {
                0 => [0, 0, s.height, s.width],
                1 => [0, 0, s.height.min(out), s.width.min(out)],
                _ => {
                    let h = 1 + r.below(s.height as u32) as usize;
                    let w = 1 + r.below(s.width as u32) as usize;
                    let top = r.below((s.height - h + 1) as u32) as usize;
                    let left = r.below((s.width - w + 1) as u32) as usize;
                    [top, left, h, w]
                }
            };
            jobs.push(CropJob {
                image: k % slots.len(),
                rect,
                flip: k % 3 == 1,
            });
        }
        (data, slots, jobs)
    }

    fn chw_to_hwc(t: &crate::augment::image::U8Chw) -> Vec<u8> {
        let plane = t.plane();
        (0..plane)
            .flat_map(|p| (0..3).map(move |c| (p, c)))
            .map(|(p, c)| t.data[c * plane + p])
            .collect()
    }

    #[test]
    fn planned_passes_equal_the_cpu_reference() {
        for order in [PassOrder::Pillow12, PassOrder::Pillow13] {
            for (seed, out) in [(1u64, 224usize), (2, 32), (3, 64)] {
                let (data, slots, jobs) = batch(seed, out);
                let p = plan(&slots, &jobs, out, out, order).unwrap();
                let got = cpu::resample(&p, &data);
                for (n, job) in jobs.iter().enumerate() {
                    let s = slots[job.image];
                    let img = Rgb8::from_raw(
                        s.width,
                        s.height,
                        data[s.offset..s.offset + s.width * s.height * 3].to_vec(),
                    );
                    let [top, left, h, w] = job.rect;
                    let mut want = resize_bilinear(
                        &crop(&img, top as i64, left as i64, h, w),
                        out,
                        out,
                        order,
                    )
                    .to_chw();
                    if job.flip {
                        crate::augment::geometry::hflip(&mut want);
                    }
                    let want = chw_to_hwc(&want);
                    let g = &got[n * out * out * 3..(n + 1) * out * out * 3];
                    assert!(
                        g == &want[..],
                        "{order:?} seed {seed} crop {n} {:?} of {}x{}",
                        job.rect,
                        s.width,
                        s.height
                    );
                }
            }
        }
    }

    #[test]
    fn plan_refuses_crops_outside_the_image() {
        let slots = [ImageSlot {
            offset: 0,
            width: 10,
            height: 8,
        }];
        let bad = [CropJob {
            image: 0,
            rect: [4, 0, 5, 10],
            flip: false,
        }];
        assert!(
            plan(&slots, &bad, 4, 4, PassOrder::Pillow13)
                .unwrap_err()
                .contains("outside")
        );
    }

    #[test]
    fn kernel_matches_cpu_twin() {
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(0);
        for order in [PassOrder::Pillow12, PassOrder::Pillow13] {
            for (seed, out) in [(4u64, 224usize), (5, 32)] {
                let (data, slots, jobs) = batch(seed, out);
                let p = plan(&slots, &jobs, out, out, order).unwrap();
                let want = cpu::resample(&p, &data);
                let d = DevicePlan::upload(&s, &p).unwrap();
                let images = s.to_device(&data).unwrap();
                let mut scratch = gpu.alloc::<u8>(p.scratch_bytes.max(1)).unwrap();
                let mut outb = s.to_device(&vec![0xA5u8; p.out_bytes]).unwrap();
                resample(&s, &p, &d, &images, &mut scratch, &mut outb).unwrap();
                assert!(
                    s.to_host(&outb).unwrap() == want,
                    "{order:?} seed {seed}: kernel vs twin (tolerance: exact)"
                );
            }
        }
    }
}
