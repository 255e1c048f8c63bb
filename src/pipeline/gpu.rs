//! The shard loop's GPU backend: a mixing group's decoded images uploaded
//! once (augment/gpu_run.rs), each batch augmented on the device straight
//! into the first teacher's bf16 NHWC input (copied to the others'), the teachers' captured forwards
//! (teacher/gpu), their logits gathered as f32 and reduced by the ensemble
//! softmax + top-k kernel; only the top-k values and ids come back.
//!
//! Every step computes each sample independently of the others in its batch
//! (the convolutions' accumulation order depends on the output element
//! only), so the records do not depend on the batch size; rows of a short
//! last batch past its samples hold stale inputs whose outputs are ignored.
//! The kernels of a batch run in order on one stream; its top-k come back on
//! another, from one of two result buffers, so the host plans and queues
//! batch i + 1 while batch i computes and is read back (`enqueue` then
//! `collect`, at most two in flight). cudarc's per-buffer events order the
//! read-back after the top-k and the next write of a buffer after its read.

use anyhow::{Context, Result, anyhow};

use crate::augment::gpu_batch::plan_batch;
use crate::augment::gpu_finish::FinishOut;
use crate::augment::gpu_run::{GpuAugment, Staged};
use crate::augment::image::Rgb8;
use crate::augment::params::SampleParams;
use crate::config::Augmentation;
use crate::cuda::{DevBuf, Event, Gpu, Stream, memops};
use crate::teacher::ensemble::Ensemble;
use crate::teacher::gpu::conv::ConvPath;
use crate::teacher::gpu::eltwise::to_f32;
use crate::teacher::gpu::lower::lower;
use crate::teacher::gpu::model::GpuModel;
use crate::teacher::gpu::topk::ensemble_topk;

pub struct GpuTeacher {
    /// The kernel tuning files applied (teacher/gpu/tuning.rs), if any.
    pub tuning: Vec<std::path::PathBuf>,
    /// The convolution kernels its members run (`ConvPath::for_device`).
    pub conv_path: ConvPath,
    aug: GpuAugment,
    members: Vec<GpuModel>,
    batch: usize,
    classes: usize,
    topk: usize,
    temperature: f32,
    logits: DevBuf<f32>,
    work: DevBuf<f32>,
    /// Two result buffers, alternating per batch.
    vals: [DevBuf<f32>; 2],
    ids: [DevBuf<u32>; 2],
    next: usize,
    /// The stream the top-k come back on.
    readback: Stream,
}

/// A batch queued on the device; `collect` it for its top-k.
pub struct InFlight {
    n: usize,
    buffer: usize,
    start: Event,
    end: Event,
}

/// The manifest's name for what computed the records on `gpu` with the
/// convolution kernels `path` (named when wgmma: the mma.sync kernels
/// compute what they did before the wgmma ones existed, under the same
/// name). The CPU stand-in computes the same kernels with another summation
/// order in its tensor-core emulation and the host's expf, so its bytes are
/// its own.
pub fn executor_name(gpu: &Gpu, path: ConvPath) -> String {
    let kernels = match path {
        ConvPath::MmaSync => String::new(),
        other => format!(" {}", other.name()),
    };
    let arch = gpu.info().arch();
    if gpu.info().stand_in {
        format!("cuda-bf16 {arch}{kernels} (CPU stand-in)")
    } else {
        format!("cuda-bf16 {arch}{kernels}")
    }
}

/// The most samples a batch `dr reinforce --device cuda` chooses for
/// itself: past a few hundred a batch fills an H100 (the throughput stops
/// growing) while the first batch's latency and the memory keep growing.
pub const MAX_AUTO_BATCH: usize = 512;

/// Device memory the teachers need at batch B: (fixed, per sample) bytes,
/// from their plans at batch 2 (weights and constants; arena, split-K
/// workspace, logits and top-k buffers). Batch 2, not 1: a plan at batch 1
/// may fuse away copies a larger batch needs (a [B*H, ...] reshape is a view
/// only when B is 1), so batch 1 would underestimate.
pub fn teacher_bytes(teachers: &Ensemble, topk: usize) -> Result<(usize, usize)> {
    let (mut fixed, mut per) = (0, 0);
    let mut classes = 0;
    for m in &teachers.members {
        let plan = lower(&*m.graph(2)?).map_err(|e| anyhow!("{}: {e}", m.path.display()))?;
        let (f, p) = plan.device_bytes();
        fixed += f;
        per += p.div_ceil(2);
        classes = plan.classes;
    }
    let k = topk.min(classes);
    per += (teachers.members.len() + 1) * classes * 4 + 4 * k * 4;
    Ok((fixed, per))
}

/// The batch that fits `free` bytes of a device of `total`: the teachers'
/// `fixed` and `per_sample` bytes within free less a headroom (a tenth of
/// the device, at least 256 MiB, at most half of what is free) for what
/// grows with the images rather than the batch (the augmentation's staged
/// images and scratch) and for CUDA graphs and the driver. A multiple of 8
/// from 8 up, at most MAX_AUTO_BATCH; None when not even one sample fits.
pub fn batch_for(free: usize, total: usize, fixed: usize, per_sample: usize) -> Option<usize> {
    let headroom = (total / 10).max(256 << 20).min(free / 2);
    let budget = free.checked_sub(headroom)?.checked_sub(fixed)?;
    match budget / per_sample.max(1) {
        0 => None,
        b if b < 8 => Some(b),
        b => Some((b / 8 * 8).min(MAX_AUTO_BATCH)),
    }
}

/// `batch_for` on `gpu` now for the teachers' `(fixed, per sample)` bytes
/// (`teacher_bytes`, the same on every device), at most `most` (a batch
/// never spans mixing groups, so samples past a group's would be padding),
/// with a line saying how it was chosen; an error naming the sizes when not
/// one sample fits.
pub fn batch_from_memory(
    gpu: &Gpu,
    (fixed, per): (usize, usize),
    most: usize,
) -> Result<(usize, String)> {
    let (free, total) = gpu.memory()?;
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    let fits = batch_for(free, total, fixed, per).ok_or_else(|| {
        anyhow!(
            "cuda:{}: the teachers need {:.0} MiB for weights and {:.1} MiB a sample; {:.0} MiB of {:.0} MiB are free. Fix: free the device, or run on a larger one (--device cpu runs anywhere)",
            gpu.ordinal(),
            mib(fixed),
            mib(per),
            mib(free),
            mib(total)
        )
    })?;
    let b = fits.min(most.max(1));
    Ok((
        b,
        format!(
            "batch size {b} on cuda:{} ({:.0} MiB free of {:.0} MiB; teachers {:.0} MiB + {:.2} MiB a sample: {fits} fit, at most {MAX_AUTO_BATCH}, at most {most} a mixing group; --batch-size sets it, the records are the same)",
            gpu.ordinal(),
            mib(free),
            mib(total),
            mib(fixed),
            mib(per)
        ),
    ))
}

/// `build(batch)`, halving the batch while it fails for want of device
/// memory (`say` tells each step: the records do not depend on the batch
/// size, the speed may); any other error, or one at batch 1, is returned.
pub fn with_batch_backoff<T>(
    mut batch: usize,
    mut build: impl FnMut(usize) -> Result<T>,
    mut say: impl FnMut(String),
) -> Result<(T, usize)> {
    loop {
        match build(batch) {
            Err(e) if batch > 1 && crate::cuda::CudaError::in_chain_is_out_of_memory(&e) => {
                say(format!(
                    "out of device memory loading the teachers at batch size {batch}: retrying at {} (the records are the same at any batch size)",
                    batch / 2
                ));
                batch /= 2;
            }
            Err(e) => return Err(e),
            Ok(t) => return Ok((t, batch)),
        }
    }
}

impl GpuTeacher {
    /// Lowers and uploads every member at `batch`, captures their forwards.
    pub fn new(
        gpu: &Gpu,
        teachers: &Ensemble,
        batch: usize,
        topk: usize,
        temperature: f32,
    ) -> Result<Self> {
        let mut members = Vec::new();
        let mut tuning = Vec::new();
        let mut classes = 0;
        let conv_path = ConvPath::for_device(gpu.info())?;
        for m in &teachers.members {
            let b = m.fixed_batch().unwrap_or(batch);
            if b != batch {
                anyhow::bail!(
                    "{} has a fixed batch of {b}: run it with --batch-size {b} on the GPU",
                    m.path.display()
                );
            }
            let mut plan =
                lower(&*m.graph(batch)?).map_err(|e| anyhow!("{}: {e}", m.path.display()))?;
            plan.conv_path = conv_path;
            classes = plan.classes;
            let mut gm = GpuModel::new(gpu, plan)
                .with_context(|| format!("{}: loading on the GPU", m.path.display()))?;
            tuning.extend(crate::teacher::gpu::tuning::apply(&mut gm, gpu.info())?);
            gm.capture()?;
            members.push(gm);
        }
        let k = topk.min(classes);
        Ok(GpuTeacher {
            tuning,
            conv_path,
            aug: GpuAugment::new(gpu),
            logits: gpu.alloc(members.len() * batch * classes)?,
            work: gpu.alloc(batch * classes)?,
            vals: [gpu.alloc(batch * k)?, gpu.alloc(batch * k)?],
            ids: [gpu.alloc(batch * k)?, gpu.alloc(batch * k)?],
            next: 0,
            readback: gpu.stream(2),
            members,
            batch,
            classes,
            topk: k,
            temperature,
        })
    }

    /// Samples per batch (the teachers were built for it).
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Uploads a group's decoded images, once for all their samples.
    pub fn stage(&mut self, images: &[&Rgb8]) -> Result<Staged> {
        Ok(self.aug.upload(images)?)
    }

    /// Queues `samples` (each: its image's index among the staged ones,
    /// its parameters; `slot_of` finds a pair image's staged index):
    /// augmentation into every teacher's input, the forwards, the top-k.
    pub fn enqueue(
        &mut self,
        aug: &Augmentation,
        staged: &Staged,
        slot_of: &dyn Fn(u32) -> usize,
        samples: &[(usize, &SampleParams)],
    ) -> Result<InFlight> {
        let n = samples.len();
        anyhow::ensure!(
            n <= self.batch,
            "a batch of {n} on teachers prepared for {}",
            self.batch
        );
        let plan = plan_batch(aug, &staged.slots, slot_of, samples)
            .map_err(|e| anyhow!("GPU augmentation: {e}"))?;
        let [_, _, h, w] = self.members[0].plan.input_nchw;
        anyhow::ensure!(
            plan.out_wh == (w, h),
            "the augmentation makes {:?} tensors but the teachers take {w}x{h}",
            plan.out_wh
        );
        // Augmented once, into the first teacher's input; copied to the
        // others' that store it with as many channels, stage 3 run again
        // for the others (a padded stem input against a plain one).
        let channels = |m: &GpuModel| m.plan.input_channels;
        let first = self.members[0].input()?;
        let into = |m: &GpuModel| -> Result<FinishOut<'static>> {
            Ok(FinishOut::Bf16NhwcRegion {
                out: m.input()?,
                channels: channels(m),
            })
        };
        self.aug.run(staged, &plan, into(&self.members[0])?)?;
        let s = self.members[0].stream().clone();
        let rows = first.prefix(n * channels(&self.members[0]) * w * h)?;
        for m in &self.members[1..] {
            if channels(m) == channels(&self.members[0]) {
                memops::copy_region(&s, rows, m.input()?)?;
            } else {
                self.aug.finish_again(&plan, into(m)?)?;
            }
        }
        let start = s.record()?;
        let per = n * self.classes;
        for (i, m) in self.members.iter().enumerate() {
            m.forward()?;
            let out = m.output()?;
            to_f32(&s, out.prefix(per)?, &mut self.logits, i * per)?;
        }
        let buffer = self.next;
        self.next = 1 - buffer;
        ensemble_topk(
            &s,
            &self.logits,
            self.members.len(),
            n,
            self.classes,
            self.temperature,
            self.topk,
            &mut self.work,
            &mut self.vals[buffer],
            &mut self.ids[buffer],
        )?;
        let end = s.record()?;
        Ok(InFlight {
            n,
            buffer,
            start,
            end,
        })
    }

    /// The top-k values and ids, [n][k] (k = min(topk, classes)), of a
    /// queued batch, and the milliseconds its teachers and top-k took.
    pub fn collect(&mut self, b: InFlight) -> Result<(Vec<f32>, Vec<u32>, f64)> {
        let mut vals = vec![0f32; b.n * self.topk];
        let mut ids = vec![0u32; b.n * self.topk];
        self.readback
            .download_at(&self.vals[b.buffer], 0, &mut vals)?;
        self.readback
            .download_at(&self.ids[b.buffer], 0, &mut ids)?;
        self.readback.synchronize()?;
        Ok((vals, ids, b.start.elapsed_ms(&b.end)? as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn the_batch_fits_free_memory_less_the_headroom() {
        // 80 GiB free of 80: 8 GiB headroom, 1 GiB of weights, 100 MiB a
        // sample -> 727 samples fit, capped.
        assert_eq!(
            batch_for(80 << 30, 80 << 30, 1 << 30, 100 * MIB),
            Some(MAX_AUTO_BATCH)
        );
        // 16 GiB: 1.6 GiB headroom, 13.4 GiB / 100 MiB = 137 -> 136.
        assert_eq!(batch_for(16 << 30, 16 << 30, 1 << 30, 100 * MIB), Some(136));
        // Under 8 samples: as many as fit, not rounded to 0.
        assert_eq!(batch_for(2 << 30, 4 << 30, 1 << 30, 100 * MIB), Some(6));
        // The headroom is at most half of what is free.
        assert_eq!(batch_for(600 * MIB, 64 << 30, 0, 10 * MIB), Some(24));
        // Not one sample, or not even the weights.
        assert_eq!(batch_for(2 << 30, 4 << 30, 1 << 30, 2 << 30), None);
        assert_eq!(batch_for(1 << 30, 4 << 30, 2 << 30, MIB), None);
    }

    fn out_of_memory() -> anyhow::Error {
        let source =
            cudarc::driver::DriverError(cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY);
        anyhow::Error::new(crate::cuda::CudaError::Driver {
            what: "allocating".into(),
            ordinal: 0,
            source,
        })
        .context("loading on the GPU")
    }

    #[test]
    fn out_of_memory_halves_the_batch_and_says_so() {
        let mut said = Vec::new();
        let (t, b) = with_batch_backoff(
            512,
            |b| {
                if b > 100 {
                    Err(out_of_memory())
                } else {
                    Ok(b * 10)
                }
            },
            |m| said.push(m),
        )
        .unwrap();
        assert_eq!((t, b), (640, 64));
        assert_eq!(said.len(), 3, "{said:?}");
        assert!(
            said[0].contains("at batch size 512: retrying at 256"),
            "{}",
            said[0]
        );
        // Other errors, and an out-of-memory at batch 1, stop.
        let e = with_batch_backoff(8, |_| -> Result<()> { Err(anyhow!("bad model")) }, |_| {});
        assert!(e.unwrap_err().to_string().contains("bad model"));
        let e = with_batch_backoff(1, |_| -> Result<()> { Err(out_of_memory()) }, |_| {});
        assert!(crate::cuda::CudaError::in_chain_is_out_of_memory(
            &e.unwrap_err()
        ));
    }

    /// The driver's (or the stand-in's) answer to an allocation past the
    /// device is recognised as out-of-memory.
    #[test]
    fn a_too_large_allocation_is_out_of_memory() {
        let Some(gpu) = crate::cuda::testing::gpu_or_skip() else {
            return;
        };
        let (_, total) = gpu.memory().unwrap();
        let e = gpu.alloc::<u8>(total * 2).map(|_| ()).unwrap_err();
        assert!(e.is_out_of_memory(), "{e}");
    }
}
