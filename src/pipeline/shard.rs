//! One shard's work on the CPU backend: decode each image of a mixing group
//! once, draw every (image, sample)'s parameters, augment, run the teacher in
//! batches, keep the top-k, encode the records in work order.
//!
//! Nothing here depends on the batch size or thread count: parameters are a
//! function of (seed, image, sample), pairs come from the mixing group, and
//! the executor computes each image of a batch independently of the others
//! (tests in tests/reinforce.rs check the bytes).

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::augment::image::Rgb8;
use crate::augment::params::{Draw, SampleParams};
use crate::augment::pipeline::augment;
use crate::dataset::decode::decode_rgb_bytes;
use crate::labels::LabelMode;
use crate::labels::sampled::{DrawKey, draw};
use crate::store::images::ImageRow;
use crate::store::layout::{Layout, MAX_SIDE, Record};
use crate::store::manifest::BadImage;
use crate::teacher::ensemble::{Ensemble, mean_softmax};
use crate::teacher::infer::topk;
use crate::teacher::tensor::Tensor;

/// What a shard needs from the job.
#[derive(Clone)]
pub struct ShardContext<'a> {
    pub root: &'a std::path::Path,
    pub rows: &'a [ImageRow],
    pub order: &'a [u32],
    pub config: &'a crate::config::ReinforceConfig,
    pub seed: u64,
    pub teachers: &'a Ensemble,
    pub temperature: f32,
    pub layout: &'a Layout,
    /// Samples per teacher call on the CPU backend (a GPU worker keeps its
    /// own, which an out-of-memory lowers).
    pub batch_size: usize,
    /// Mixing groups decoded ahead of the one running (at least 1).
    pub decode_ahead: usize,
    /// (w, h) the teachers take.
    pub input_wh: (usize, usize),
    pub fail_on_bad: bool,
    /// For a `--list` source: each image's line in the list (for reports).
    pub list_lines: Option<&'a [u32]>,
    /// Time spent in the teachers (for teacher-only throughput).
    pub teacher_nanos: &'a std::sync::atomic::AtomicU64,
    /// The GPU backend (augmentation, teachers and top-k on a device, at
    /// the worker's own batch size), or `None` for the CPU one.
    pub gpu: Option<&'a std::sync::Mutex<super::gpu_worker::GpuWorker>>,
}

/// Why the run stopped inside a shard.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// `--on-bad-image fail`: every bad image of the mixing group where the
    /// first was met, each with its path and reason.
    #[error("{}", bad_images_message(.0))]
    BadImage(Vec<(String, String)>),
    #[error("{0}")]
    Teacher(String),
    /// A signal asked the job to stop (`pipeline::interrupt`): the shard in
    /// progress is dropped, the complete ones are kept.
    #[error("interrupted")]
    Interrupted,
}

fn bad_images_message(bad: &[(String, String)]) -> String {
    let list: Vec<String> = bad.iter().map(|(p, r)| format!("  {p}: {r}")).collect();
    format!(
        "{} bad image{} (stopped by --on-bad-image fail; complete shards are kept):\n{}\nFix: repair or remove {}, then rerun the same command (or use --on-bad-image skip to record them as invalid)",
        bad.len(),
        if bad.len() == 1 { "" } else { "s" },
        list.join("\n"),
        if bad.len() == 1 { "it" } else { "them" }
    )
}

pub(super) fn check_interrupt() -> Result<(), ShardError> {
    match super::interrupt::requested() {
        Some(_) => Err(ShardError::Interrupted),
        None => Ok(()),
    }
}

/// A listed image as read: its size and SHA-256 when the file could be read
/// (they go to images.tsv), and the decoded pixels or why it is bad.
pub struct Loaded {
    pub hash: Option<(u64, String)>,
    pub image: Result<Rgb8, String>,
}

/// Reads, hashes, checks and decodes one listed image (one read of the
/// file: the hash is taken from the same bytes that are decoded). A row
/// that already has a hash (a shard redone in a finished dataset) must
/// still match it.
pub fn load_image(root: &std::path::Path, row: &ImageRow) -> Loaded {
    let path = root.join(&row.path);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            return Loaded {
                hash: None,
                image: Err(format!("cannot read the file: {}", crate::io_reason(&e))),
            };
        }
    };
    let sha = format!("{:x}", Sha256::digest(&bytes));
    let image = match &row.sha256 {
        Some(want) if *want != sha => Err(format!(
            "the file changed since the dataset was made (SHA-256 {sha}, images.tsv has {want})"
        )),
        _ => decode_checked(&bytes, &row.path),
    };
    Loaded {
        hash: Some((bytes.len() as u64, sha)),
        image,
    }
}

/// Decodes `bytes` of the listed file `path` within the sizes records can
/// address; `Err` is the reason it is bad (`DecodeError::reason`'s wording,
/// as in `dr infer --image`).
pub fn decode_checked(bytes: &[u8], path: &str) -> Result<Rgb8, String> {
    let img = decode_rgb_bytes(bytes, path).map_err(|e| e.reason())?;
    if img.width > MAX_SIDE || img.height > MAX_SIDE {
        return Err(format!(
            "{}x{} has a side above {MAX_SIDE} px, which records cannot address",
            img.width, img.height
        ));
    }
    Ok(img)
}

/// One shard's output: its records, the bad images met, and the size and
/// SHA-256 of every image of it that could be read (id, bytes, sha256, and
/// for derived parameters the decoded size).
pub struct ShardOutput {
    pub records: Vec<u8>,
    pub bad: Vec<BadImage>,
    pub hashes: Vec<crate::store::images::Hash>,
}

/// Progress callback: (images, samples) finished since the last call.
pub type Tick<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// Records for work-order positions `[start, end)`, the bad images met and
/// the hashes of what was read.
pub fn run_shard(
    cx: &ShardContext,
    start: usize,
    end: usize,
    tick: Tick,
) -> Result<ShardOutput, ShardError> {
    let ns = cx.config.num_samples as usize;
    let group = cx.config.mixing_group as usize;
    let rec = cx.layout.size;
    let mut out = vec![0u8; (end - start) * ns * rec];
    let mut bad = Vec::new();
    let mut hashes = Vec::with_capacity(end - start);
    let starts: Vec<usize> = (start..end).step_by(group).collect();
    let ids_at = |g0: usize| &cx.order[g0..(g0 + group).min(end)];
    let decode = |g0: usize| -> Vec<Loaded> {
        ids_at(g0)
            .par_iter()
            .map(|&id| load_image(cx.root, &cx.rows[id as usize]))
            .collect()
    };
    // Up to `decode_ahead` groups are read and decoded while this one is
    // augmented and run through the teachers.
    let run_group = |g0: usize, loaded: Vec<Loaded>| -> Result<(), ShardError> {
        let ids = ids_at(g0);
        let group_bad = bad.len();
        for (&id, l) in ids.iter().zip(&loaded) {
            if let Some((n, sha)) = &l.hash {
                // Derived parameters are drawn from the decoded size: keep it.
                let size = l
                    .image
                    .as_ref()
                    .ok()
                    .filter(|_| !cx.layout.stores_params())
                    .map(|i| (i.width as u32, i.height as u32));
                hashes.push((id, *n, sha.clone(), size));
            }
            if let Err(reason) = &l.image {
                let reason = match cx.list_lines {
                    Some(lines) => format!("{reason} (--list line {})", lines[id as usize]),
                    None => reason.clone(),
                };
                bad.push(BadImage { index: id, reason });
            }
        }
        if cx.fail_on_bad && bad.len() > group_bad {
            let path = |id: u32| {
                cx.root
                    .join(&cx.rows[id as usize].path)
                    .display()
                    .to_string()
            };
            return Err(ShardError::BadImage(
                bad[group_bad..]
                    .iter()
                    .map(|b| (path(b.index), b.reason.clone()))
                    .collect(),
            ));
        }
        let image_of = |id: u32| -> Option<&Rgb8> {
            ids.iter()
                .position(|&x| x == id)
                .and_then(|i| loaded[i].image.as_ref().ok())
        };
        // Pairs come from the group's usable images (in work order).
        let candidates: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&id| image_of(id).is_some())
            .collect();
        let size_of = |id: u32| {
            let img = image_of(id).expect("pairs are drawn among decoded images");
            (img.width, img.height)
        };
        let draw = Draw {
            aug: &cx.config.augment,
            seed: cx.seed,
            num_samples: cx.config.num_samples,
            size_of: &size_of,
        };
        // (record slot within the shard, image, params) of every usable sample.
        let mut work: Vec<(usize, u32, SampleParams)> = Vec::new();
        for (k, &id) in ids.iter().enumerate() {
            let slot0 = (g0 - start + k) * ns;
            if image_of(id).is_none() {
                for s in 0..ns {
                    let r = cx.layout.invalid_record();
                    let o = (slot0 + s) * rec;
                    cx.layout.encode(&r, &mut out[o..o + rec]);
                }
                continue;
            }
            for s in 0..ns {
                let p = draw.sample(id, s as u32, &candidates);
                work.push((slot0 + s, id, p));
            }
        }
        process_group(cx, &work, &candidates, &image_of, &mut out, tick)?;
        tick(ids.len() as u64, 0);
        Ok(())
    };
    super::decode_ahead::pipelined(&starts, cx.decode_ahead, decode, run_group)?;
    Ok(ShardOutput {
        records: out,
        bad,
        hashes,
    })
}

/// A group's samples through the teachers, their records into `out`: on
/// the GPU backend when there is one, else augmentation of batch i + 1 on
/// the CPU while the teacher runs on batch i.
fn process_group<'a>(
    cx: &ShardContext,
    work: &[Work],
    candidates: &[u32],
    image_of: &(dyn Fn(u32) -> Option<&'a Rgb8> + Sync),
    out: &mut [u8],
    tick: Tick,
) -> Result<(), ShardError> {
    if let Some(gpu) = cx.gpu {
        let mut w = gpu.lock().unwrap_or_else(|e| e.into_inner());
        return w.run_group(cx, work, candidates, image_of, out, tick);
    }
    // Two stages in flight: the teacher on batch i while batch i + 1 is
    // augmented (the executor alone does not keep every core busy).
    let chunks: Vec<&[(usize, u32, SampleParams)]> = work.chunks(cx.batch_size.max(1)).collect();
    let mut next = chunks.first().map(|c| augment_batch(cx, c, &image_of));
    for (i, chunk) in chunks.iter().enumerate() {
        check_interrupt()?;
        let x = next.take().expect("augmented ahead");
        let (probs, ahead) = rayon::join(
            || run_teachers(cx, x),
            || chunks.get(i + 1).map(|c| augment_batch(cx, c, &image_of)),
        );
        next = ahead;
        let probs = probs?;
        match cx.layout.labels {
            LabelMode::TopK => {
                let (vals, classes) = topk(&probs, cx.layout.topk);
                let classes: Vec<u32> = classes.into_iter().map(|c| c as u32).collect();
                write_records(cx, chunk, &vals, &classes, out);
            }
            LabelMode::Sampled => write_sampled(cx, chunk, &probs, out)?,
        }
        tick(0, chunk.len() as u64);
    }
    Ok(())
}

/// A sample's (record slot within the shard, image id, parameters).
pub(super) type Work = (usize, u32, SampleParams);

/// Encodes `chunk`'s records from their top-k (`vals`, `classes`: [n][k],
/// k at most the layout's; shorter rows are padded with zeros).
pub(super) fn write_records(
    cx: &ShardContext,
    chunk: &[(usize, u32, SampleParams)],
    vals: &[f32],
    classes: &[u32],
    out: &mut [u8],
) {
    let k = vals.len() / chunk.len().max(1);
    let rec = cx.layout.size;
    for (i, (slot, _, p)) in chunk.iter().enumerate() {
        let mut r = Record {
            params: Some(p.clone()),
            probs: vals[i * k..(i + 1) * k].to_vec(),
            classes: classes[i * k..(i + 1) * k].to_vec(),
            draws: Vec::new(),
        };
        r.probs.resize(cx.layout.topk, 0.0);
        r.classes.resize(cx.layout.topk, 0);
        let o = slot * rec;
        cx.layout.encode(&r, &mut out[o..o + rec]);
    }
}

/// Encodes `chunk`'s records with k classes drawn from each row of `probs`
/// ([n, classes]): the draw's own counter line (seed, image, sample), so
/// neither the batch nor the thread that ran it can change a draw.
fn write_sampled(
    cx: &ShardContext,
    chunk: &[(usize, u32, SampleParams)],
    probs: &Tensor,
    out: &mut [u8],
) -> Result<(), ShardError> {
    let ns = cx.config.num_samples as usize;
    let rec = cx.layout.size;
    let rows = probs
        .as_f32()
        .expect("the ensemble gives f32 probabilities")
        .chunks(probs.shape[1]);
    for ((slot, id, p), row) in chunk.iter().zip(rows) {
        let key = DrawKey {
            seed: cx.seed,
            image: *id,
            sample: (slot % ns) as u32,
        };
        // k fits u16: `reinforce::run` refuses larger k for this mode.
        let d = draw(row, cx.layout.topk as u16, None, key)
            .map_err(|e| ShardError::Teacher(format!("image {id} sample {}: {e}", key.sample)))?;
        let draws = d
            .ids
            .iter()
            .zip(&d.counts)
            .flat_map(|(&c, &n)| std::iter::repeat_n(c, n as usize))
            .collect();
        let r = Record {
            params: Some(p.clone()),
            draws,
            ..Record::default()
        };
        let o = slot * rec;
        cx.layout.encode(&r, &mut out[o..o + rec]);
    }
    Ok(())
}

/// The batch of `chunk`'s augmented samples, [n, 3, h, w].
fn augment_batch<'a>(
    cx: &ShardContext,
    chunk: &[(usize, u32, SampleParams)],
    image_of: &(dyn Fn(u32) -> Option<&'a Rgb8> + Sync),
) -> Tensor {
    let (w, h) = cx.input_wh;
    let per = 3 * w * h;
    let mut x = vec![0f32; chunk.len() * per];
    x.par_chunks_mut(per)
        .zip(chunk)
        .for_each(|(dst, (_, id, p))| {
            let img = image_of(*id).expect("usable image");
            let pair = p.pair.as_ref().and_then(|q| image_of(q.id2));
            let a = augment(&cx.config.augment, img, p, pair);
            dst.copy_from_slice(&a.tensor.data);
        });
    Tensor::f32(vec![chunk.len(), 3, h, w], x)
}

/// The ensemble's probabilities for a batch, one row per sample.
fn run_teachers(cx: &ShardContext, x: Tensor) -> Result<Tensor, ShardError> {
    let t0 = std::time::Instant::now();
    let logits = cx
        .teachers
        .members
        .iter()
        .map(|m| m.logits(x.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ShardError::Teacher(e.to_string()))?;
    cx.teacher_nanos.fetch_add(
        t0.elapsed().as_nanos() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    mean_softmax(&logits, cx.temperature).map_err(ShardError::Teacher)
}
