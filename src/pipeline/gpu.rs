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
use crate::teacher::gpu::eltwise::to_f32;
use crate::teacher::gpu::lower::lower;
use crate::teacher::gpu::model::GpuModel;
use crate::teacher::gpu::topk::ensemble_topk;

pub struct GpuTeacher {
    /// The kernel tuning files applied (teacher/gpu/tuning.rs), if any.
    pub tuning: Vec<std::path::PathBuf>,
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

/// The manifest's name for what computed the records on `gpu`. The CPU
/// stand-in computes the same kernels with another summation order in its
/// tensor-core emulation and the host's expf, so its bytes are its own.
pub fn executor_name(gpu: &Gpu) -> String {
    if gpu.info().stand_in {
        format!("cuda-bf16 {} (CPU stand-in)", gpu.info().arch())
    } else {
        format!("cuda-bf16 {}", gpu.info().arch())
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
        for m in &teachers.members {
            let b = m.fixed_batch().unwrap_or(batch);
            if b != batch {
                anyhow::bail!(
                    "{} has a fixed batch of {b}: run it with --batch-size {b} on the GPU",
                    m.path.display()
                );
            }
            let plan =
                lower(&*m.graph(batch)?).map_err(|e| anyhow!("{}: {e}", m.path.display()))?;
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
