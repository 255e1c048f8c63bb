//! A GPU worker: the teachers on its device at its batch size, and a mixing
//! group's batches through them.
//!
//! An out-of-memory in a batch halves the batch: the teachers are freed,
//! built again at half the batch (halving on while that runs out of memory
//! too), a line names the old and new sizes, and the group's samples whose
//! records are not yet written are redone. Any batch, not only the first:
//! the augmentation's buffers grow lazily with the largest group and crops
//! met, so a later group can need more than the first. Nothing is lost or
//! written twice: a batch's records are written only once it has been read
//! back whole, batches are written in work order (so what is done is a
//! prefix of the group's work), each record to its own slot, and progress
//! is counted on writing. Records do not depend on the batch size, so the
//! output is that of a run at the lower size from the start.

use super::gpu::{GpuTeacher, InFlight, with_batch_backoff};
use super::shard::{ShardContext, ShardError, Tick, Work, check_interrupt, write_records};
use crate::augment::image::Rgb8;
use crate::augment::params::SampleParams;
use crate::cuda::{CudaError, Gpu};
use crate::teacher::ensemble::Ensemble;

pub struct GpuWorker {
    gpu: Gpu,
    /// None only after building the teachers again failed.
    teacher: Option<GpuTeacher>,
    topk: usize,
    temperature: f32,
}

/// Why a group's batches stopped short.
enum Stop {
    Interrupted,
    Device(anyhow::Error),
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::Device(e)
    }
}

impl GpuWorker {
    /// `teacher`, built on `gpu` with `topk` and `temperature`.
    pub fn new(gpu: &Gpu, teacher: GpuTeacher, topk: usize, temperature: f32) -> Self {
        GpuWorker {
            gpu: gpu.clone(),
            teacher: Some(teacher),
            topk,
            temperature,
        }
    }

    /// Samples per batch now (0 when the teachers could not be rebuilt).
    pub fn batch(&self) -> usize {
        self.teacher.as_ref().map_or(0, |t| t.batch())
    }

    /// The teachers freed, then built again at half the batch; the new size.
    fn halve(&mut self, teachers: &Ensemble, say: &dyn Fn(String)) -> anyhow::Result<usize> {
        let old = self.batch();
        // Freed before the smaller batch allocates: after the work queued
        // so far (a batch in flight, its captured graphs) has run, then
        // synchronized again so the stream-ordered frees have happened (a
        // memory pool returns them then).
        self.gpu.synchronize()?;
        self.teacher = None;
        self.gpu.synchronize()?;
        let (gpu, topk, temperature) = (&self.gpu, self.topk, self.temperature);
        let (t, b) = with_batch_backoff(
            old / 2,
            |b| GpuTeacher::new(gpu, teachers, b, topk, temperature),
            say,
        )?;
        self.teacher = Some(t);
        Ok(b)
    }

    /// A group's samples `work` (drawn among `candidates`, the group's
    /// usable images) through the teachers, their records into `out`.
    pub fn run_group<'a>(
        &mut self,
        cx: &ShardContext,
        work: &[Work],
        candidates: &[u32],
        image_of: &(dyn Fn(u32) -> Option<&'a Rgb8> + Sync),
        out: &mut [u8],
        tick: Tick,
    ) -> Result<(), ShardError> {
        let fail = |e: anyhow::Error| ShardError::Teacher(format!("{e:#}"));
        let say = |m: String| eprintln!("dr reinforce: {m}");
        let mut written = 0;
        loop {
            let Some(t) = self.teacher.as_mut() else {
                return Err(ShardError::Teacher(
                    "the teachers could not be built again after an out-of-memory".into(),
                ));
            };
            let rest = &work[written..];
            let e = match batches(t, cx, rest, candidates, image_of, out, tick, &mut written) {
                Ok(()) => return Ok(()),
                Err(Stop::Interrupted) => return Err(ShardError::Interrupted),
                Err(Stop::Device(e)) => e,
            };
            let old = t.batch();
            if !CudaError::in_chain_is_out_of_memory(&e) {
                return Err(fail(e));
            }
            if old == 1 {
                return Err(ShardError::Teacher(format!(
                    "{e:#}: out of device memory at batch size 1 (the teachers and this mixing group's images do not fit together). Fix: free the device, or run on a larger one (--device cpu runs anywhere)"
                )));
            }
            say(format!(
                "out of device memory in a batch on cuda:{} at batch size {old}: lowering it to {} and redoing the {} samples of this mixing group not yet written (the records are the same at any batch size; --batch-size sets it)",
                self.gpu.ordinal(),
                old / 2,
                work.len() - written
            ));
            self.halve(cx.teachers, &say).map_err(fail)?;
        }
    }
}

/// `work` in batches on `t`, batch i + 1 queued before batch i's top-k are
/// read back; `written` counts the samples whose records are in `out`.
#[allow(clippy::too_many_arguments)]
fn batches<'a>(
    t: &mut GpuTeacher,
    cx: &ShardContext,
    work: &[Work],
    candidates: &[u32],
    image_of: &(dyn Fn(u32) -> Option<&'a Rgb8> + Sync),
    out: &mut [u8],
    tick: Tick,
    written: &mut usize,
) -> Result<(), Stop> {
    // Pairs are drawn among the group's usable images: stage those.
    let imgs: Vec<&Rgb8> = candidates
        .iter()
        .map(|&id| image_of(id).expect("usable"))
        .collect();
    let staged = t.stage(&imgs)?;
    let slot_of = |id: u32| {
        candidates
            .iter()
            .position(|&c| c == id)
            .expect("a usable image")
    };
    let mut queued: Option<(InFlight, &[Work])> = None;
    for chunk in work.chunks(t.batch().max(1)).map(Some).chain([None]) {
        if check_interrupt().is_err() {
            return Err(Stop::Interrupted);
        }
        let next = match chunk {
            Some(chunk) => {
                let samples: Vec<(usize, &SampleParams)> =
                    chunk.iter().map(|(_, id, p)| (slot_of(*id), p)).collect();
                let b = t.enqueue(&cx.config.augment, &staged, &slot_of, &samples)?;
                Some((b, chunk))
            }
            None => None,
        };
        if let Some((b, done)) = queued.take() {
            let (vals, classes, ms) = t.collect(b)?;
            cx.teacher_nanos
                .fetch_add((ms * 1e6) as u64, std::sync::atomic::Ordering::Relaxed);
            write_records(cx, done, &vals, &classes, out);
            *written += done.len();
            tick(0, done.len() as u64);
        }
        queued = next;
    }
    Ok(())
}
