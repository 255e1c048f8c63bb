//! `dr reinforce`: flags → pipeline options, task from the scheduler's
//! environment, progress on stderr, summary on stdout.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Result, bail};
use dr::config::{PassOrder, ReinforceConfig};
use dr::pipeline::reinforce::{self, DEFAULT_IMAGES_PER_SHARD, Options, Progress, Source, Summary};

pub const AFTER_HELP: &str = "Examples:\n  \
dr reinforce --data imagenet/train --teacher resnet50.onnx --config configs/imagenet-randaug_mixing.yaml --samples 50 --out imagenet-plus/ --device cuda\n  \
dr reinforce --list files.tsv --teacher a.onnx --teacher b.onnx --config c.yaml --shard 0/8 --out part-0/\n\n\
Exit codes: 0 done (bad images skipped are listed in OUT/bad-images.tsv); \
1 error (message on stderr; complete shards are kept, rerun to resume); \
2 usage error; 3 stopped at a bad image (--on-bad-image fail); \
130 / 143 stopped by Ctrl-C / SIGTERM at a batch boundary (complete shards are kept, rerun to resume; \
a second signal stops at once).";

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("images").required(true).args(["data", "list"])))]
pub struct ReinforceArgs {
    /// ImageFolder root (class sub-folders); or give --list.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// File list: `path<TAB>label` per line, relative to the list's folder;
    /// or give --data.
    #[arg(long)]
    pub list: Option<PathBuf>,
    /// ONNX teacher; repeat for an ensemble (mean of softmax(logits / T)).
    #[arg(long = "teacher", alias = "model", required = true)]
    pub teachers: Vec<PathBuf>,
    /// Output folder (created; rerun the same command to resume).
    #[arg(long)]
    pub out: PathBuf,
    /// ml-dr reinforce YAML or dr's short form (configs/*.yaml).
    #[arg(long)]
    pub config: PathBuf,
    /// Reproduce ml-dr's handling of unknown transform names.
    #[arg(long)]
    pub ml_dr_compat: bool,
    /// Samples per image (overrides num_samples).
    #[arg(long, value_parser = crate::cli::values::at_least_one_u32)]
    pub samples: Option<u32>,
    /// What records keep of the teachers' distribution: `topk` (the k
    /// largest probabilities, as ml-dr) or `sampled` (k classes drawn from
    /// the whole distribution: unbiased, 2 B a draw; CPU backend only).
    #[arg(long, default_value = "topk", value_parser = ["topk", "sampled"])]
    pub label_mode: String,
    /// How top-k probabilities are stored: `f16` (2 B, 0.05% relative
    /// error) or `u8log` (1 B, a code of log p: within 2.183% of p from
    /// 2^-16 to 1, 0 at or below half of that).
    #[arg(long, default_value = "f16", value_parser = ["f16", "u8log"])]
    pub prob_format: String,
    /// How class ids (top-k classes, sampled draws) are stored: `bytes`
    /// (u16, u32 past 65536 classes) or `packed` (ceil(log2 classes) bits
    /// each: 10 for 1000 classes).
    #[arg(long, default_value = "bytes", value_parser = ["bytes", "packed"])]
    pub class_ids: String,
    /// Augmentation parameters in the records (`stored`, as ml-dr) or
    /// `derived`: none stored, readers regenerate them from the seed with
    /// the same sampler version (randaug_mixing: 62 B less a record).
    #[arg(long, default_value = "stored", value_parser = ["stored", "derived"])]
    pub params: String,
    /// Probabilities kept per sample, or classes drawn with --label-mode
    /// sampled (overrides topk).
    #[arg(long, value_parser = crate::cli::values::at_least_one_u32)]
    pub topk: Option<u32>,
    /// Seed of the augmentation parameters and the work order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples per teacher call (does not change the output). Default: 32
    /// on the CPU; on GPUs the most that fits their free memory (at most
    /// 512), said at start. An out-of-memory while the teachers load or in
    /// a batch halves it, said too.
    #[arg(long, value_parser = crate::cli::values::at_least_one)]
    pub batch_size: Option<usize>,
    /// Mixing groups each worker decodes ahead of the one it runs (does not
    /// change the output). Default: an eighth of the available host memory
    /// over the workers and a group of 12 MiB images, from 1 to 8, said at start.
    #[arg(long, value_parser = crate::cli::values::at_least_one)]
    pub decode_ahead: Option<usize>,
    /// Softmax temperature of the teachers.
    #[arg(long, default_value_t = 1.0, value_parser = crate::cli::values::temperature)]
    pub temperature: f32,
    /// cpu, or cuda / cuda:N / cuda:N,M,...: augmentation, teachers and top-k
    /// on those GPUs, one worker each (bf16 teachers; the manifest records
    /// the executor, and a resume must match).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// This process's part of a multi-task job, `i/N` (default: from
    /// SLURM_ARRAY_TASK_ID/COUNT, JOB_COMPLETION_INDEX with DR_SHARD_COUNT,
    /// or RANK/WORLD_SIZE; otherwise the whole job). Join parts with `dr merge`.
    #[arg(long)]
    pub shard: Option<String>,
    /// Images per shard file (rounded up to whole mixing groups).
    #[arg(long, default_value_t = DEFAULT_IMAGES_PER_SHARD, value_parser = crate::cli::values::at_least_one_u32)]
    pub images_per_shard: u32,
    /// What to do with an image that cannot be used: `skip` writes its
    /// records flagged invalid and lists it in OUT/bad-images.tsv.
    #[arg(long, default_value = "skip", value_parser = ["skip", "fail"])]
    pub on_bad_image: String,
    /// Pillow release whose resize pass order to reproduce (overrides the config).
    #[arg(long, value_parser = ["pillow13", "pillow12"])]
    pub resize_pass_order: Option<String>,
    /// CPU threads (default: all cores).
    #[arg(long, value_parser = crate::cli::values::at_least_one)]
    pub threads: Option<usize>,
    /// Print the final summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress display.
    #[arg(long)]
    pub quiet: bool,
}

/// `i/N` from the flag or the scheduler's environment; the source is named.
fn task(flag: &Option<String>) -> Result<Option<(u32, u32, String)>> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let parse = |i: &str, n: &str, from: &str| -> Result<(u32, u32, String)> {
        match (i.trim().parse::<u32>(), n.trim().parse::<u32>()) {
            (Ok(i), Ok(n)) if n > 0 && i < n => Ok((i, n, from.to_owned())),
            _ => bail!("{from}: `{i}/{n}` is not a task i/N with 0 <= i < N"),
        }
    };
    if let Some(s) = flag {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("--shard {s}: expected i/N, e.g. 0/8"))?;
        return parse(i, n, "--shard").map(Some);
    }
    if let (Some(i), Some(n)) = (env("SLURM_ARRAY_TASK_ID"), env("SLURM_ARRAY_TASK_COUNT")) {
        let min = env("SLURM_ARRAY_TASK_MIN").and_then(|m| m.parse::<u32>().ok());
        let i = match (i.parse::<u32>(), min) {
            (Ok(i), Some(m)) if i >= m => (i - m).to_string(),
            _ => i,
        };
        return parse(&i, &n, "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT").map(Some);
    }
    if let Some(i) = env("JOB_COMPLETION_INDEX") {
        let Some(n) = env("DR_SHARD_COUNT") else {
            bail!(
                "JOB_COMPLETION_INDEX is set but DR_SHARD_COUNT is not. Fix: set DR_SHARD_COUNT to the Job's completions, or pass --shard i/N"
            );
        };
        return parse(&i, &n, "JOB_COMPLETION_INDEX/DR_SHARD_COUNT").map(Some);
    }
    if let (Some(i), Some(n)) = (env("RANK"), env("WORLD_SIZE")) {
        return parse(&i, &n, "RANK/WORLD_SIZE").map(Some);
    }
    Ok(None)
}

pub fn config(
    path: &std::path::Path,
    compat: bool,
    samples: Option<u32>,
    topk: Option<u32>,
    pass_order: Option<&str>,
) -> Result<ReinforceConfig> {
    let mut c = ReinforceConfig::load(path, compat)?;
    for w in &c.warnings {
        eprintln!("warning: {w}");
    }
    // (--samples and --topk are at least 1: their value parsers say so.)
    if let Some(s) = samples {
        c.num_samples = s;
    }
    if let Some(k) = topk {
        c.topk = k;
    }
    if let Some(o) = pass_order {
        c.augment.pass_order = PassOrder::from_name(o)
            .ok_or_else(|| anyhow::anyhow!("--resize-pass-order {o}: pillow13 or pillow12"))?;
    }
    Ok(c)
}

pub fn options(a: &ReinforceArgs) -> Result<Options> {
    let devices = dr::teacher::infer::parse_devices(&a.device)?;
    let task = task(&a.shard)?;
    if let Some((i, n, from)) = &task
        && !a.quiet
    {
        eprintln!("task {i} of {n} (from {from})");
    }
    Ok(Options {
        source: match (&a.data, &a.list) {
            (Some(d), _) => Source::Folder(d.clone()),
            (None, Some(l)) => Source::List(l.clone()),
            (None, None) => bail!("give --data DIR or --list FILE"),
        },
        teachers: a.teachers.clone(),
        out: a.out.clone(),
        config: config(
            &a.config,
            a.ml_dr_compat,
            a.samples,
            a.topk,
            a.resize_pass_order.as_deref(),
        )?,
        seed: a.seed,
        batch_size: a.batch_size,
        decode_ahead: a.decode_ahead,
        temperature: a.temperature,
        task: task.map(|(i, n, _)| (i, n)),
        fail_on_bad: a.on_bad_image == "fail",
        images_per_shard: a.images_per_shard,
        devices,
        label_mode: dr::labels::LabelMode::from_name(&a.label_mode)
            .expect("clap admits only the known names"),
        coding: dr::labels::Coding {
            probs: dr::labels::ProbFormat::from_name(&a.prob_format)
                .expect("clap admits only the known names"),
            ids: dr::labels::IdFormat::from_name(&a.class_ids)
                .expect("clap admits only the known names"),
            params: dr::labels::ParamsFormat::from_name(&a.params)
                .expect("clap admits only the known names"),
        },
    })
}

pub fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(t) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .map_err(|e| anyhow::anyhow!("--threads: {e}"))?;
    }
    Ok(())
}

/// Runs the job with a progress display on stderr (a bar on a terminal,
/// a line every 10 s otherwise).
pub fn run_with_progress(opt: &Options, quiet: bool) -> Result<Summary> {
    let progress = Progress::default();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        if !quiet {
            s.spawn(|| show_progress(&progress, &done, opt.config.num_samples));
        }
        let r = reinforce::run(opt, &progress);
        done.store(true, Ordering::Relaxed);
        r
    })
}

fn show_progress(p: &Progress, done: &std::sync::atomic::AtomicBool, ns: u32) {
    let tty = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::with_draw_target(
        None,
        if tty {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        },
    );
    // A spinner until the work is known (listing, teachers loading), then
    // a bar of samples: they finish batch by batch, images only per group.
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("valid template"),
    );
    bar.set_message("starting: listing the images, loading the teachers");
    let mut first_sample = None;
    let mut last_line = std::time::Instant::now();
    let mut bar_shown = false;
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        let total = p.images_total.load(Ordering::Relaxed);
        if total == 0 {
            bar.tick();
            continue;
        }
        let images = p.images_done.load(Ordering::Relaxed);
        let samples = p.samples_done.load(Ordering::Relaxed);
        if samples > 0 && first_sample.is_none() {
            first_sample = Some((std::time::Instant::now(), samples));
        }
        let line = progress_line(
            total,
            images,
            total * ns as u64,
            samples,
            first_sample.map(|(t, s0)| (t.elapsed().as_secs_f64(), s0)),
        );
        if !bar_shown {
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {msg}").expect("valid template"),
            );
            bar.set_length(total * ns as u64);
            bar_shown = true;
        }
        bar.set_position(samples);
        bar.set_message(line.clone());
        if !tty && last_line.elapsed() >= Duration::from_secs(10) {
            last_line = std::time::Instant::now();
            eprintln!("{line}");
        }
    }
    bar.finish_and_clear();
}

/// "I/N images, S/T samples, R samples/s, ETA E": the rate and ETA from
/// the samples done since the first batch finished (`since_first`: seconds
/// since then and the samples done at that moment), "ETA after the first
/// batch" before it.
fn progress_line(
    images_total: u64,
    images: u64,
    samples_total: u64,
    samples: u64,
    since_first: Option<(f64, u64)>,
) -> String {
    let head = format!("{images}/{images_total} images, {samples}/{samples_total} samples");
    match since_first {
        Some((secs, s0)) if secs > 0.5 && samples > s0 => {
            let rate = (samples - s0) as f64 / secs;
            let left = samples_total.saturating_sub(samples) as f64 / rate;
            format!("{head}, {rate:.1} samples/s, ETA {}", duration(left))
        }
        _ => format!("{head}, ETA after the first batch"),
    }
}

/// Seconds as "42s", "7m05s" or "3h12m".
fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

pub fn print_summary(s: &Summary, json: bool) -> Result<()> {
    if json {
        out!("{}", serde_json::to_string_pretty(s)?);
        return Ok(());
    }
    out!(
        "{}: {} images x {} samples ({} shards written, {} kept from an earlier run), {} bad images",
        s.out.display(),
        s.images,
        s.samples_per_image,
        s.shards_written,
        s.shards_kept,
        s.bad_images
    );
    if s.records_written > 0 {
        let label = s.emulated.map_or(String::new(), |e| {
            format!(" (GPU on the CPU stand-in: {e})")
        });
        out!(
            "{:.1} samples/s end to end; the teacher alone ran at {:.1} samples/s in this run ({:.0}%){label}; {} B per record",
            s.samples_per_second,
            s.teacher_samples_per_second,
            100.0 * s.samples_per_second / s.teacher_samples_per_second.max(1e-9),
            s.record_bytes
        );
    }
    for f in &s.kernel_tuning {
        out!("kernel choices tuned by {}", f.display());
    }
    if s.bad_images > 0 {
        out!(
            "bad images: {} (recorded invalid; all in {}/bad-images.tsv)",
            s.bad_images,
            s.out.display()
        );
        for b in &s.bad_images_first {
            out!("  {b}");
        }
        if s.bad_images > s.bad_images_first.len() {
            out!("  ... and {} more", s.bad_images - s.bad_images_first.len());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_has_no_eta_before_the_first_batch_and_a_real_one_after() {
        assert_eq!(
            progress_line(55, 0, 330, 0, None),
            "0/55 images, 0/330 samples, ETA after the first batch"
        );
        // 60 samples in the 2 s after the first batch: 30/s, 240 left.
        assert_eq!(
            progress_line(55, 8, 330, 90, Some((2.0, 30))),
            "8/55 images, 90/330 samples, 30.0 samples/s, ETA 8s"
        );
        assert_eq!(duration(425.0), "7m05s");
        assert_eq!(duration(11_520.0), "3h12m");
    }
}
