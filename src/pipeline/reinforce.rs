//! `dr reinforce`: listing → images.tsv → order.npy → shards (each written
//! whole, then named in the manifest) → status complete. A rerun of the same
//! command continues where the last one stopped; a rerun with other
//! settings is refused, naming what differs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::shard::{ShardContext, ShardError, run_shard};
use crate::augment::params::{MixingGroups, stage_sizes};
use crate::config::ReinforceConfig;
use crate::dataset::listing::{self, Listing};
use crate::labels::{Coding, LabelMode, ParamsFormat, ProbFormat};
use crate::store::images;
use crate::store::layout::{Layout, MAX_SAMPLES};
use crate::store::manifest::{
    self, Manifest, RecordInfo, Settings, ShardInfo, Status, Task, TeacherFile, shard_file,
};
use crate::teacher::ensemble::Ensemble;

/// Bad images the summary names (the rest are in bad-images.tsv).
pub const SUMMARY_BAD_IMAGES: usize = 10;

/// Default images per shard file (rounded up to whole mixing groups).
pub const DEFAULT_IMAGES_PER_SHARD: u32 = 512;

pub enum Source {
    Folder(PathBuf),
    List(PathBuf),
}

pub struct Options {
    pub source: Source,
    pub teachers: Vec<PathBuf>,
    pub out: PathBuf,
    pub config: ReinforceConfig,
    pub seed: u64,
    /// Samples per teacher call; None: 32 on the CPU, on GPUs the most that
    /// fits their free memory (`gpu::batch_from_memory`).
    pub batch_size: Option<usize>,
    pub temperature: f32,
    /// `Some((i, n))`: this process is task i of n.
    pub task: Option<(u32, u32)>,
    pub fail_on_bad: bool,
    pub images_per_shard: u32,
    /// Mixing groups each worker decodes ahead of the one it runs; None:
    /// from host memory (`decode_ahead::choose`), said at start.
    pub decode_ahead: Option<usize>,
    /// CUDA devices for augmentation, teachers and top-k, one worker each
    /// (shards go to whichever worker is free); empty: the CPU backend.
    pub devices: Vec<usize>,
    /// What records keep of the teachers' distribution (k = the config's topk).
    pub label_mode: LabelMode,
    /// How records encode probabilities and class ids (`--prob-format`,
    /// `--class-ids`).
    pub coding: Coding,
}

/// Samples per teacher call on the CPU when --batch-size is not given.
pub const DEFAULT_CPU_BATCH: usize = 32;

/// Counters the progress display reads while the job runs.
#[derive(Default)]
pub struct Progress {
    pub images_total: AtomicU64,
    pub images_done: AtomicU64,
    pub samples_done: AtomicU64,
    pub teacher_nanos: AtomicU64,
}

#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub out: PathBuf,
    pub status: &'static str,
    pub images: u64,
    pub samples_per_image: u32,
    /// Shards written by this run, and those kept from an earlier one.
    pub shards_written: u32,
    pub shards_kept: u32,
    pub records_written: u64,
    pub bad_images: usize,
    /// The first bad images by id (`path: reason`); all are in bad-images.tsv.
    pub bad_images_first: Vec<String>,
    /// Wall time in all, and of the shard work alone (after listing,
    /// hashing and loading the teachers).
    pub seconds: f64,
    pub work_seconds: f64,
    /// Samples (decode + augment + teacher + top-k + write) per second in this run.
    pub samples_per_second: f64,
    /// Samples per second of the teacher calls alone, in the same run (per
    /// worker: with several GPUs their teacher times add up).
    pub teacher_samples_per_second: f64,
    pub record_bytes: usize,
    /// Set when the GPU was the CPU stand-in: the rates are emulation's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emulated: Option<&'static str>,
    /// Kernel tuning files the GPU teachers applied (speed only: the bytes
    /// are those of an untuned run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kernel_tuning: Vec<PathBuf>,
}

fn hash_teacher(path: &Path) -> Result<TeacherFile> {
    let (_, sha256) =
        images::hash_file(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(TeacherFile {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sha256,
    })
}

/// `--out` must be a new folder, an empty one, or one a `dr reinforce` wrote
/// (to resume it): not an unrelated folder's contents, and not inside the
/// ImageFolder `data` (it would become one of its classes).
fn check_out_folder(out: &Path, data: Option<&Path>) -> Result<()> {
    let abs = |p: &Path| {
        std::fs::canonicalize(p)
            .unwrap_or_else(|_| std::path::absolute(p).unwrap_or(p.to_path_buf()))
    };
    if let Some(data) = data
        && abs(out).starts_with(abs(data))
    {
        bail!(
            "--out {} is inside the images (--data {}): it would be listed as a class. Fix: put the output elsewhere",
            out.display(),
            data.display()
        );
    }
    if out.is_file() {
        bail!(
            "--out {} is a file. Fix: give a folder (new, empty, or a dataset to resume)",
            out.display()
        );
    }
    let non_empty = std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some());
    if non_empty && !out.join("manifest.json").exists() {
        bail!(
            "--out {} is not empty and holds no reinforced dataset (no manifest.json): refusing to write into it. Fix: give a new or empty folder, or the --out of a `dr reinforce` to resume",
            out.display()
        );
    }
    Ok(())
}

/// Removes a folder on drop unless `dir` was taken (the job got far enough
/// to leave something worth keeping).
struct RemoveUnlessKept {
    dir: Option<PathBuf>,
}

impl Drop for RemoveUnlessKept {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Shard index range `[a, b)` of task i of n: contiguous, as even as can be.
pub fn task_shards(shards: u32, i: u32, n: u32) -> [u32; 2] {
    let f = |k: u32| (shards as u64 * k as u64 / n as u64) as u32;
    [f(i), f(i + 1)]
}

pub fn run(opt: &Options, progress: &Progress) -> Result<Summary> {
    let t0 = Instant::now();
    let cfg = &opt.config;
    if cfg.num_samples > MAX_SAMPLES {
        bail!(
            "{} samples per image: records hold at most {MAX_SAMPLES}. Fix: lower --samples",
            cfg.num_samples
        );
    }
    if opt.label_mode == LabelMode::Sampled && !opt.devices.is_empty() {
        // Not a silent CPU fallback: the user asked for the GPU's speed.
        bail!(
            "--label-mode sampled with --device {}: the GPU draw kernel is not written yet (issue 32), only the CPU backend draws sampled labels. Fix: --device cpu, or --label-mode topk on the GPU",
            opt.devices
                .iter()
                .map(|d| format!("cuda:{d}"))
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    if opt.label_mode == LabelMode::Sampled && opt.coding.probs != ProbFormat::F16 {
        bail!(
            "--prob-format {} with --label-mode sampled: sampled records store no probabilities (draws only). Fix: drop --prob-format, and pass --class-ids packed for smaller sampled records",
            opt.coding.probs.name()
        );
    }
    let listing: Listing = match &opt.source {
        Source::Folder(d) => listing::image_folder(d).map_err(|e| anyhow::anyhow!("--data {e}"))?,
        Source::List(f) => listing::file_list(f).map_err(|e| anyhow::anyhow!("--list {e}"))?,
    };
    let n = u32::try_from(listing.entries.len()).context("more than 2^32 images")?;
    let teachers = Ensemble::load(&opt.teachers)?;
    let chw = teachers.members[0].input_chw()?;
    for m in &teachers.members[1..] {
        if m.input_chw()? != chw {
            bail!(
                "{} takes {:?} but {} takes {:?}: ensemble members of `dr reinforce` must share the input size (each sample is augmented once, at the config's crop size, and every member sees those pixels, as in ml-dr; `dr infer` resizes per member because it only evaluates). Fix: export the members at one input size",
                m.path.display(),
                m.input_chw()?,
                teachers.members[0].path.display(),
                chw
            );
        }
    }
    let out_wh = stage_sizes(&cfg.augment, 1, 1).output;
    if chw.len() != 3 || chw[0] != 3 || (chw[2], chw[1]) != out_wh {
        bail!(
            "the teacher {} takes {:?} but the augmentation produces 3x{}x{}. Fix: set the crop size in the config to the teacher's input size",
            teachers.members[0].path.display(),
            chw,
            out_wh.1,
            out_wh.0
        );
    }
    let classes = num_classes(&teachers)?;
    if opt.label_mode == LabelMode::Sampled {
        // Draws are with replacement, so k may pass the class count.
        if cfg.topk > u16::MAX as u32 {
            bail!(
                "topk {} (--topk or the config): sampled labels draw at most {} classes a sample. Fix: --topk {} or fewer",
                cfg.topk,
                u16::MAX,
                u16::MAX
            );
        }
    } else if cfg.topk as usize > classes {
        bail!(
            "topk {} (--topk or the config) is more than the teachers' {classes} classes: records would hold padding. Fix: --topk {classes} or fewer",
            cfg.topk
        );
    }
    let layout = Layout::coded(
        &cfg.augment,
        opt.label_mode,
        opt.coding,
        cfg.topk as usize,
        classes,
        out_wh,
    );
    // The GPU backend, built before anything is written: a teacher or a
    // config it cannot run stops the job here, naming why.
    let mut gpus = Vec::new();
    let mut emulated = false;
    let mut kernel_tuning = Vec::new();
    if !opt.devices.is_empty()
        && let Some(why) = crate::augment::gpu_batch::unsupported(&cfg.augment)
    {
        bail!("--device cuda: {why}. Fix: --device cpu");
    }
    let opened = opt
        .devices
        .iter()
        .map(|&d| crate::cuda::Gpu::open(d).with_context(|| format!("--device cuda:{d}")))
        .collect::<Result<Vec<_>>>()?;
    let mut batch_size = opt.batch_size.unwrap_or(DEFAULT_CPU_BATCH);
    if opt.batch_size.is_none() && !opened.is_empty() {
        // One batch for every worker: the smallest any device fits.
        let per_group = (cfg.mixing_group as usize * cfg.num_samples as usize).div_ceil(8) * 8;
        // The plans are lowered once: their sizes do not depend on the device.
        let bytes = super::gpu::teacher_bytes(&teachers, cfg.topk as usize)?;
        let mut chosen: Option<(usize, String)> = None;
        for g in &opened {
            let c = super::gpu::batch_from_memory(g, bytes, per_group)?;
            if chosen.as_ref().is_none_or(|b| c.0 < b.0) {
                chosen = Some(c);
            }
        }
        let (b, why) = chosen.expect("a device");
        eprintln!("dr reinforce: {why}");
        batch_size = b;
    }
    let (decode_ahead, why) =
        super::decode_ahead::choose(opt.decode_ahead, cfg.mixing_group, opt.devices.len().max(1));
    if opt.decode_ahead.is_none() {
        eprintln!("dr reinforce: {why}");
    }
    if !opened.is_empty() {
        let build = |b: usize| {
            opened
                .iter()
                .map(|g| {
                    super::gpu::GpuTeacher::new(g, &teachers, b, cfg.topk as usize, opt.temperature)
                })
                .collect::<Result<Vec<_>>>()
        };
        let (built, b) =
            super::gpu::with_batch_backoff(batch_size, build, |m| eprintln!("dr reinforce: {m}"))?;
        batch_size = b;
        for (g, t) in opened.iter().zip(built) {
            emulated |= g.info().stand_in;
            for f in &t.tuning {
                if !kernel_tuning.contains(f) {
                    kernel_tuning.push(f.clone());
                }
            }
            let name = super::gpu::executor_name(g, t.conv_path);
            let w = super::gpu_worker::GpuWorker::new(g, t, cfg.topk as usize, opt.temperature);
            gpus.push((name, std::sync::Mutex::new(w)));
        }
    }
    if let Some((a, _)) = gpus.iter().find(|(e, _)| *e != gpus[0].0) {
        bail!(
            "--device: {} and {a} compute different bytes; run each architecture as its own task (--shard)",
            gpus[0].0
        );
    }
    let executor = gpus
        .first()
        .map_or_else(|| manifest::CPU_EXECUTOR.to_string(), |g| g.0.clone());
    let group = cfg.mixing_group;
    let per_shard = opt.images_per_shard.max(1).div_ceil(group) * group;
    let shard_count = n.div_ceil(per_shard);
    let (task, [first, last]) = match opt.task {
        Some((i, k)) => {
            if k == 0 || i >= k {
                bail!("--shard {i}/{k}: the task index must be below the task count");
            }
            let r = task_shards(shard_count, i, k);
            (
                Some(Task {
                    index: i,
                    count: k,
                    shards: r,
                }),
                r,
            )
        }
        None => (None, [0, shard_count]),
    };
    let groups = MixingGroups::new(opt.seed, n, group);
    let order = groups.order();
    let positions = |s: u32| -> [u32; 2] { [s * per_shard, ((s + 1) * per_shard).min(n)] };

    let data = match &opt.source {
        Source::Folder(d) => Some(d.as_path()),
        Source::List(_) => None,
    };
    check_out_folder(&opt.out, data)?;
    let created = !opt.out.exists();
    std::fs::create_dir_all(&opt.out)
        .with_context(|| format!("{}: cannot create the output folder", opt.out.display()))?;
    // Until the manifest exists, a failure leaves no folder this run made.
    let mut cleanup = RemoveUnlessKept {
        dir: created.then(|| opt.out.clone()),
    };
    let existing = Manifest::read(&opt.out)?;
    let tsv = opt.out.join("images.tsv");
    // Derived parameters depend on each image's decoded size: images.tsv keeps it.
    let sized = opt.coding.params == ParamsFormat::Derived;
    let listed = images::unhashed_rows(&listing)?;
    let settings = Settings {
        config: cfg.to_json(),
        seed: opt.seed,
        teachers: opt
            .teachers
            .iter()
            .map(|p| hash_teacher(p))
            .collect::<Result<_>>()?,
        temperature: opt.temperature as f64,
        num_classes: classes as u32,
        images: n,
        listing_sha256: listing.digest(),
        images_per_shard: per_shard,
        input_size: [out_wh.0 as u32, out_wh.1 as u32],
        executor,
        labels: manifest::Labels::of(opt.label_mode, cfg.topk),
        prob_format: manifest::coding_names(opt.coding).0,
        class_ids: manifest::coding_names(opt.coding).1,
        params: manifest::ParamsSetting::of(opt.coding.params),
    };
    let fresh = || Manifest {
        format: manifest::FORMAT.into(),
        version: manifest::VERSION,
        writer: crate::build_info::short_version(),
        classes: listing.classes.clone(),
        origin: None,
        source: std::path::absolute(&listing.root)
            .unwrap_or_else(|_| listing.root.clone())
            .display()
            .to_string(),
        status: Status::Running,
        settings: settings.clone(),
        record: RecordInfo::new(&layout, cfg, out_wh),
        shard_count,
        task: task.clone(),
        shards: Vec::new(),
    };
    // Rows are hashed as their shards read them (one read of each file):
    // images.tsv starts unhashed, each shard's hashes go beside it, and
    // the job folds them in when it completes.
    let (mut m, mut rows) = match existing {
        None => (fresh(), listed),
        Some(mut m) => {
            m.shards.retain(|s| shard_complete(&opt.out, s));
            let mut diffs = manifest::differences(&m.settings, &settings);
            if m.task != task {
                diffs.push(format!(
                    "task: {} vs {}",
                    serde_json::to_string(&m.task)?,
                    serde_json::to_string(&task)?
                ));
            }
            let listing_only = diffs
                .iter()
                .all(|d| d.starts_with("images:") || d.starts_with("listing_sha256:"));
            let old_rows = if tsv.exists() {
                images::read(&tsv)?
            } else {
                listed.clone()
            };
            if diffs.is_empty() {
                (m, old_rows)
            } else if listing_only && m.shards.is_empty() {
                // Nothing made from the old listing is kept: list again.
                (fresh(), listed)
            } else if listing_only {
                bail!(
                    "{}: the images changed since this dataset was started ({} of {} shards complete):\n  {}\nFix: restore them, or delete {} (rm -r {}) and rerun to start over",
                    opt.out.display(),
                    m.shards.len(),
                    last - first,
                    images::changes(&old_rows, &listed).join("\n  "),
                    opt.out.display(),
                    opt.out.display()
                );
            } else {
                bail!(
                    "{} holds a reinforced dataset made with other settings:\n  {}\nFix: rerun with the settings it was made with, or use a new --out",
                    opt.out.display(),
                    diffs.join("\n  ")
                );
            }
        }
    };
    images::fill_from_shards(&mut rows, &opt.out, &m.shard_files())?;
    images::write(&tsv, &rows, sized)?;
    if m.shards.len() < (last - first) as usize {
        m.status = Status::Running;
    }
    crate::npy::write(&opt.out.join("order.npy"), &[order.len()], order)?;
    m.write(&opt.out)
        .with_context(|| format!("{}: cannot write the manifest", opt.out.display()))?;
    cleanup.dir = None;

    let cx = ShardContext {
        root: &listing.root,
        rows: &rows,
        order,
        config: cfg,
        seed: opt.seed,
        teachers: &teachers,
        temperature: opt.temperature,
        layout: &layout,
        batch_size,
        decode_ahead,
        input_wh: out_wh,
        fail_on_bad: opt.fail_on_bad,
        list_lines: (!listing.list_lines.is_empty()).then_some(&listing.list_lines[..]),
        teacher_nanos: &progress.teacher_nanos,
        gpu: None,
    };
    let todo: Vec<u32> = (first..last)
        .filter(|s| !m.shards.iter().any(|i| i.index == *s))
        .collect();
    let kept = (last - first) - todo.len() as u32;
    let todo_images: u64 = todo
        .iter()
        .map(|&s| (positions(s)[1] - positions(s)[0]) as u64)
        .sum();
    progress.images_total.store(todo_images, Ordering::Relaxed);
    let tick = |i: u64, s: u64| {
        progress.images_done.fetch_add(i, Ordering::Relaxed);
        progress.samples_done.fetch_add(s, Ordering::Relaxed);
    };
    let t_work = Instant::now();
    // One worker per GPU (one for the CPU backend), each taking the next
    // shard to do; a shard's bytes do not depend on which worker made it.
    type Worker<'a> = (
        Option<&'a std::sync::Mutex<super::gpu_worker::GpuWorker>>,
        String,
    );
    let workers: Vec<Worker> = if gpus.is_empty() {
        vec![(None, "cpu".into())]
    } else {
        gpus.iter()
            .zip(&opt.devices)
            .map(|(g, d)| (Some(&g.1), format!("cuda:{d}")))
            .collect()
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let shared = std::sync::Mutex::new((m, 0u64, None::<anyhow::Error>));
    std::thread::scope(|scope| {
        for (w, device) in &workers {
            let cx = ShardContext {
                gpu: *w,
                ..cx.clone()
            };
            let (next, stop, shared, todo, out, rows, layout) =
                (&next, &stop, &shared, &todo, &opt.out, &rows, &layout);
            let tick = &tick;
            scope.spawn(move || {
                let failed = |e: anyhow::Error| {
                    stop.store(true, Ordering::Relaxed);
                    let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
                    g.2.get_or_insert(e);
                };
                while !stop.load(Ordering::Relaxed) {
                    let Some(&s) = todo.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    let [a, b] = positions(s);
                    let done = match run_shard(&cx, a as usize, b as usize, tick) {
                        Ok(r) => r,
                        Err(ShardError::Interrupted) => {
                            stop.store(true, Ordering::Relaxed);
                            break;
                        }
                        Err(e) => {
                            failed(match e {
                                ShardError::BadImage(_) => anyhow::Error::new(e),
                                ShardError::Teacher(t) => anyhow::anyhow!(
                                    "teacher on {device}, shard {s}: {t}\nThe other workers stopped after their shards; complete shards are kept. Fix: check the device (a faulting GPU kernel leaves its context unusable; `dr devices`), then rerun the same command to resume"
                                ),
                                ShardError::Interrupted => unreachable!("handled above"),
                            });
                            break;
                        }
                    };
                    let file = shard_file(s);
                    let bytes = done.records;
                    // The hashes first: a shard file on disk always has them.
                    let hashes = out.join(images::shard_hashes_file(&file));
                    if let Err(e) = images::write_hashes(&hashes, &done.hashes, sized)
                        .map_err(anyhow::Error::new)
                        .and_then(|_| {
                            crate::store::atomic_write(&out.join(&file), &bytes).map_err(|e| {
                                anyhow::anyhow!(
                                    "{}: cannot write {file}: {}",
                                    out.display(),
                                    crate::io_reason(&e)
                                )
                            })
                        })
                    {
                        failed(e);
                        break;
                    }
                    let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
                    let (m, records, _) = &mut *g;
                    m.shards
                        .push(ShardInfo::new(s, [a, b], &bytes, layout.size, done.bad));
                    m.shards.sort_by_key(|s| s.index);
                    *records += (bytes.len() / layout.size) as u64;
                    let written = m.write_bad_images(out, rows).and_then(|_| {
                        m.write(out).with_context(|| {
                            format!("{}: cannot write the manifest", out.display())
                        })
                    });
                    drop(g);
                    if let Err(e) = written {
                        failed(e);
                        break;
                    }
                }
            });
        }
    });
    let (mut m, records_written, error) = shared.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = error {
        return Err(e);
    }
    if let Some(signal) = super::interrupt::requested() {
        // Every complete shard is in the manifest already; its status stays
        // "running", which verify and export report.
        return Err(super::interrupt::Interrupted {
            done: m.shards.len(),
            total: (last - first) as usize,
            signal,
        }
        .into());
    }
    // Complete: every hash into images.tsv, then the status, then the
    // hashes files go (a crash between leaves them, harmlessly, for a rerun).
    images::fill_from_shards(&mut rows, &opt.out, &m.shard_files())?;
    images::write(&tsv, &rows, sized)?;
    m.status = Status::Complete;
    m.write_bad_images(&opt.out, &rows)?;
    m.write(&opt.out)
        .with_context(|| format!("{}: cannot write the manifest", opt.out.display()))?;
    images::remove_hashes_files(&opt.out);
    let seconds = t0.elapsed().as_secs_f64();
    let work_seconds = t_work.elapsed().as_secs_f64();
    let samples_run = progress.samples_done.load(Ordering::Relaxed);
    Ok(Summary {
        out: opt.out.clone(),
        status: "complete",
        images: m
            .shards
            .iter()
            .map(|s| (s.positions[1] - s.positions[0]) as u64)
            .sum(),
        samples_per_image: cfg.num_samples,
        shards_written: todo.len() as u32,
        shards_kept: kept,
        records_written,
        bad_images: m.bad_images().count(),
        bad_images_first: m
            .bad_images_by_id()
            .iter()
            .take(SUMMARY_BAD_IMAGES)
            .map(|b| format!("{}: {}", rows[b.index as usize].path, b.reason))
            .collect(),
        seconds,
        work_seconds,
        samples_per_second: samples_run as f64 / work_seconds.max(1e-9),
        teacher_samples_per_second: samples_run as f64
            / (progress.teacher_nanos.load(Ordering::Relaxed) as f64 * 1e-9).max(1e-9),
        record_bytes: layout.size,
        emulated: emulated.then_some(crate::cuda::EMULATED),
        kernel_tuning,
    })
}

/// The class count the members share (their output is [batch, classes]).
fn num_classes(teachers: &Ensemble) -> Result<usize> {
    let mut classes = None;
    for m in &teachers.members {
        let g = m.graph(m.probe_batch())?;
        let shape = g.values[g.outputs[0]].shape.clone().unwrap_or_default();
        let c = match shape.as_slice() {
            [_, c] => *c,
            s => bail!(
                "{}: the output has shape {s:?}; a teacher gives [batch, classes] logits",
                m.path.display()
            ),
        };
        if classes.is_some_and(|k| k != c) {
            bail!(
                "{} gives {c} classes but {} gives {}: ensemble members must share the class count",
                m.path.display(),
                teachers.members[0].path.display(),
                classes.unwrap()
            );
        }
        classes = Some(c);
    }
    classes.context("no teacher given")
}

/// A shard counts as complete when the manifest names it and the file has
/// the recorded size (`dr verify` checks the hashes).
fn shard_complete(out: &Path, info: &ShardInfo) -> bool {
    std::fs::metadata(out.join(&info.file)).is_ok_and(|md| md.len() == info.bytes)
}
