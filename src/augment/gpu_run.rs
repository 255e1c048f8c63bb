//! The GPU augmentation of whole batches on a device. Decoded images are
//! packed into pinned, write-combined staging and uploaded on the copy
//! stream, each image once for all its samples; the three stages then run on
//! the compute stream from a `BatchPlan` into the teacher's input. Two image
//! slots alternate, so the next batch's upload overlaps this batch's kernels;
//! cudarc's per-buffer events order each slot's reuse after the kernels that
//! read it. Device buffers grow to the largest batch seen and are reused, and
//! pinned staging comes from the context's pool: no allocation per batch in
//! the steady state.

use super::gpu::{DevicePlan, ImageSlot, resample};
use super::gpu_batch::BatchPlan;
use super::gpu_finish::{FinishOut, finish};
use super::gpu_randaug::randaug;
use super::image::Rgb8;
use crate::cuda::{CudaError, DevBuf, DeviceElem, Gpu, PinnedBuf, PinnedKind, Result, Stream};

/// `data` into `buf`, grown to fit.
fn upload<T: DeviceElem>(s: &Stream, buf: &mut Option<DevBuf<T>>, data: &[T]) -> Result<()> {
    let dst = s.gpu().ensure(buf, data.len())?;
    s.upload(data, dst)
}

#[derive(Default)]
struct ImageBuffers {
    staging: Option<PinnedBuf>,
    images: Option<DevBuf<u8>>,
}

/// Images uploaded into one slot, ready for a plan made with `slots`.
pub struct Staged {
    slot: usize,
    pub slots: Vec<ImageSlot>,
}

pub struct GpuAugment {
    gpu: Gpu,
    copy: Stream,
    compute: Stream,
    slots: [ImageBuffers; 2],
    next_slot: usize,
    resample_scratch: Option<DevBuf<u8>>,
    crops: Option<DevBuf<u8>>,
    randaug_scratch: Option<DevBuf<u8>>,
    tables: Option<DevicePlan>,
    randaug_desc: Option<DevBuf<u32>>,
    randaug_prog: Option<DevBuf<u32>>,
    finish_desc: Option<DevBuf<u32>>,
    norm: Option<DevBuf<f32>>,
}

impl GpuAugment {
    /// Uses stream 0 for the kernels and stream 1 for the uploads.
    pub fn new(gpu: &Gpu) -> Self {
        GpuAugment {
            gpu: gpu.clone(),
            copy: gpu.stream(1),
            compute: gpu.stream(0),
            slots: Default::default(),
            next_slot: 0,
            resample_scratch: None,
            crops: None,
            randaug_scratch: None,
            tables: None,
            randaug_desc: None,
            randaug_prog: None,
            finish_desc: None,
            norm: None,
        }
    }

    /// The stream the kernels run on (the caller's output is ready on it).
    pub fn stream(&self) -> &Stream {
        &self.compute
    }

    /// Packs `images` into the next slot's staging and queues their upload.
    pub fn upload(&mut self, images: &[&Rgb8]) -> Result<Staged> {
        let slot = self.next_slot;
        self.next_slot = 1 - slot;
        let mut slots = Vec::with_capacity(images.len());
        let mut total = 0;
        for img in images {
            slots.push(ImageSlot {
                offset: total,
                width: img.width,
                height: img.height,
            });
            total += img.data.len();
        }
        if total > u32::MAX as usize {
            return Err(CudaError::Invalid(format!(
                "a batch of {} images holds {total} bytes (at most 4 GiB); split it",
                images.len()
            )));
        }
        let b = &mut self.slots[slot];
        // Dropping the old staging returns it to the pool once its copy is done.
        b.staging = None;
        let mut staging = self.gpu.pinned().take(PinnedKind::Upload, total.max(1))?;
        {
            let host = staging.as_mut_slice()?;
            for (img, s) in images.iter().zip(&slots) {
                host[s.offset..s.offset + img.data.len()].copy_from_slice(&img.data);
            }
        }
        let images = self.gpu.ensure(&mut b.images, total.max(1))?;
        self.copy.upload_pinned(&mut staging, images)?;
        b.staging = Some(staging);
        Ok(Staged { slot, slots })
    }

    /// Runs `plan` (made from `staged.slots`) into `out` on the compute stream.
    pub fn run(&mut self, staged: &Staged, plan: &BatchPlan, out: FinishOut) -> Result<()> {
        let s = &self.compute;
        let gpu = &self.gpu;
        let r = &plan.resample;
        let tables = match &mut self.tables {
            Some(t) => {
                t.refill(s, r)?;
                t
            }
            None => self.tables.insert(DevicePlan::upload(s, r)?),
        };
        let scratch = gpu.ensure(&mut self.resample_scratch, r.scratch_bytes.max(1))?;
        let crops = gpu.ensure(&mut self.crops, r.out_bytes.max(1))?;
        let images = self.slots[staged.slot].images.as_ref().ok_or_else(|| {
            CudaError::Invalid("run: the staged images' slot holds no upload".into())
        })?;
        resample(s, r, tables, images, scratch, crops)?;

        let blocks = plan.randaug.blocks();
        if blocks > 0 {
            let scratch = gpu.ensure(&mut self.randaug_scratch, crops.len())?;
            upload(s, &mut self.randaug_desc, &plan.randaug.desc)?;
            upload(s, &mut self.randaug_prog, &plan.randaug.prog)?;
            randaug(
                s,
                blocks,
                self.randaug_desc.as_ref().expect("uploaded"),
                self.randaug_prog.as_ref().expect("uploaded"),
                crops,
                scratch,
                plan.out_wh,
            )?;
        }

        upload(s, &mut self.finish_desc, &plan.finish)?;
        upload(s, &mut self.norm, &plan.norm)?;
        self.finish_again(plan, out)
    }

    /// Stage 3 of the plan `run` last ran, again from its crops, into
    /// another output (a teacher that stores its input with other channels).
    pub fn finish_again(&self, plan: &BatchPlan, out: FinishOut) -> Result<()> {
        let (Some(crops), Some(desc), Some(norm)) = (&self.crops, &self.finish_desc, &self.norm)
        else {
            return Err(CudaError::Invalid(
                "finish_again: no batch has run on this augmentation".into(),
            ));
        };
        finish(
            &self.compute,
            crops,
            desc,
            norm,
            out,
            plan.samples,
            plan.out_wh,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::gpu_batch::{plan_batch, run_cpu};
    use crate::augment::gpu_finish::cpu::to_bf16_nhwc;
    use crate::augment::params::{Draw, SampleParams};
    use crate::config::ReinforceConfig;
    use crate::cuda::testing::{gpu_or_skip, random_bytes};

    /// Every ml-dr ImageNet config at 224 px on fresh random images: the
    /// device's batch equals the batch twin (which equals the CPU pipeline,
    /// gpu_batch's test), in both output layouts, over two alternating slots.
    #[test]
    fn device_batches_match_the_twin() {
        let Some(gpu) = gpu_or_skip() else { return };
        let mut aug = GpuAugment::new(&gpu);
        for (round, name) in ["cropflip", "mixing", "randaug", "randaug_mixing"]
            .iter()
            .enumerate()
        {
            let path = format!(
                "{}/configs/imagenet-{name}.yaml",
                env!("CARGO_MANIFEST_DIR")
            );
            let cfg = ReinforceConfig::load(std::path::Path::new(&path), false).unwrap();
            let dims = [(500usize, 375usize), (333, 500), (224, 224), (640, 480)];
            let imgs: Vec<Rgb8> = dims
                .iter()
                .enumerate()
                .map(|(i, &(w, h))| {
                    Rgb8::from_raw(w, h, random_bytes(w * h * 3, 100 * round as u64 + i as u64))
                })
                .collect();
            let size = |id: u32| dims[id as usize];
            let draw = Draw {
                aug: &cfg.augment,
                seed: 5 + round as u64,
                num_samples: 8,
                size_of: &size,
            };
            let params: Vec<(usize, SampleParams)> = (0..32u32)
                .map(|k| ((k % 4) as usize, draw.sample(k % 4, k / 4, &[0, 1, 2, 3])))
                .collect();
            let refs: Vec<(usize, &SampleParams)> = params.iter().map(|(s, p)| (*s, p)).collect();
            let staged = aug.upload(&imgs.iter().collect::<Vec<_>>()).unwrap();
            let plan = plan_batch(&cfg.augment, &staged.slots, &|id| id as usize, &refs).unwrap();
            let data: Vec<u8> = imgs.iter().flat_map(|i| i.data.iter().copied()).collect();
            let want = run_cpu(&plan, &data);
            let mut out = gpu.alloc::<f32>(want.len()).unwrap();
            aug.run(&staged, &plan, FinishOut::F32Nchw(&mut out))
                .unwrap();
            let mut out16 = gpu.alloc::<u16>(want.len()).unwrap();
            aug.run(&staged, &plan, FinishOut::Bf16Nhwc(&mut out16))
                .unwrap();
            let s = aug.stream();
            let mut got = vec![0f32; want.len()];
            s.download(&out, &mut got).unwrap();
            let mut got16 = vec![0u16; want.len()];
            s.download(&out16, &mut got16).unwrap();
            s.synchronize().unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert!(
                bits(&got) == bits(&want),
                "{name}: f32 NCHW batch, device vs twin (tolerance: exact)"
            );
            assert!(
                got16 == to_bf16_nhwc(&want, plan.out_wh, 3),
                "{name}: bf16 NHWC batch, device vs twin (tolerance: exact)"
            );
        }
    }
}
