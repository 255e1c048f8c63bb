//! The `dr` command line. Each subcommand calls the library; nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::LazyLock;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use dr::bench::{bandwidth, report};
use dr::config::PassOrder;
use dr::{augment, build_info, cuda};

/// println! that ends the program quietly when stdout is closed (`dr ... | head`)
/// instead of panicking on the broken pipe.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($t)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// print! counterpart of `out!`.
macro_rules! out_str {
    ($s:expr) => {{
        use std::io::Write as _;
        if write!(std::io::stdout(), "{}", $s).is_err() {
            std::process::exit(0);
        }
    }};
}

// After the macros, so the subcommand modules can use them.
mod cli;

static LONG_VERSION: LazyLock<String> = LazyLock::new(build_info::long_version);

#[derive(Parser)]
#[command(name = "dr", version = LONG_VERSION.as_str(), about = "Builds reinforced datasets (Dataset Reinforcement) with hand-written CUDA kernels")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List CUDA devices (or say why there are none; exits 0 either way).
    #[command(after_help = "Example: dr devices --json")]
    Devices {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Augment one image as ml-dr would: writes samples.npy, uint8.npy, params.json.
    #[command(
        after_help = "Example: dr augment --config configs/imagenet-randaug_mixing.yaml --image cat.jpg --index 17 --seed 0 --out aug/"
    )]
    Augment {
        #[command(flatten)]
        input: AugmentArgs,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// A contact sheet of augmentations with their parameters captioned
    /// (sampled from --config and --image, or stored ones with --from OUT).
    #[command(
        after_help = "Examples:\n  dr preview --config configs/imagenet-randaug.yaml --image cat.jpg --out sheet.png\n  dr preview --from imagenet-plus/ --ids 0,5,9 --out stored.png"
    )]
    Preview {
        #[command(flatten)]
        input: AugmentArgs,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
        /// Draw samples stored in this reinforced dataset, captioned with their top-k (sampled labels: the most drawn classes at count / k).
        #[arg(long, conflicts_with_all = ["config", "image", "pair", "params"])]
        from: Option<PathBuf>,
        /// With --from: image ids to show (default: the first 8 in work order).
        #[arg(long, value_delimiter = ',')]
        ids: Vec<u32>,
        /// With --from: where the images are (default: where they were read from).
        #[arg(long)]
        images: Option<PathBuf>,
        /// With --from: class names, one per line.
        #[arg(long)]
        labels: Option<PathBuf>,
    },
    /// The main job on a generated shape set with a small trained teacher (no network needed).
    #[command(after_help = "Example: dr demo --out dr-demo --device cpu")]
    Demo(cli::demo::DemoArgs),
    /// Build a reinforced dataset: NS augmentations per image, teacher top-k (or sampled) labels, shards + manifest.
    #[command(after_help = cli::reinforce::AFTER_HELP)]
    Reinforce(cli::reinforce::ReinforceArgs),
    /// Run a teacher (or an ensemble) on images: logits, probabilities, top-k.
    #[command(
        after_help = "Examples:\n  dr infer --teacher resnet50.onnx --image photos/ --labels classes.txt\n  dr infer --teacher a.onnx --teacher b.onnx --input x.npy --output p.npy --device cuda"
    )]
    Infer {
        /// ONNX teacher; repeat for an ensemble (mean of softmax(logits / T)).
        #[arg(long = "teacher", alias = "model", required = true)]
        models: Vec<PathBuf>,
        /// float32 NCHW .npy input.
        #[arg(long, conflicts_with = "image")]
        input: Option<PathBuf>,
        /// An image file or a folder of them (its files only; --recursive for
        /// sub-folders), with the eval preprocessing; bad files are reported
        /// and skipped.
        #[arg(long)]
        image: Option<PathBuf>,
        /// With a folder --image: also the images in its sub-folders.
        #[arg(long)]
        recursive: bool,
        /// Output .npy: logits [N, C] (one model), probabilities (ensemble or --probs),
        /// or with --topk the top-k values (and Y.idx.npy, int64 ids).
        #[arg(long)]
        output: Option<PathBuf>,
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Images per teacher call (does not change the output).
        #[arg(long, default_value_t = 32, value_parser = cli::values::at_least_one)]
        batch_size: usize,
        /// Softmax probabilities instead of logits for one model.
        #[arg(long)]
        probs: bool,
        /// Softmax temperature (probabilities are softmax(logits / T)).
        #[arg(long, default_value_t = 1.0, value_parser = cli::values::temperature)]
        temperature: f32,
        /// With --output: write the top k values (probabilities or logits)
        /// and their class ids (Y.idx.npy) instead of every class.
        #[arg(long, value_parser = cli::values::at_least_one)]
        topk: Option<usize>,
        /// Class names, one per line, for the printed top-5.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// --image preprocessing: the shorter side is resized to this...
        #[arg(long, default_value_t = 256, value_parser = cli::values::at_least_one_u32)]
        resize: u32,
        /// ...then the center crop of this side is taken (the teacher's input size).
        #[arg(long, default_value_t = 224, value_parser = cli::values::at_least_one_u32)]
        crop: u32,
    },
    /// Check a reinforced dataset: shard hashes and every record's invariants;
    /// with --images, re-hash the source images and name every file missing or changed.
    #[command(
        after_help = "Exit codes: 0 complete and valid; 1 problems found (or not a dataset); 2 usage error; \
4 valid so far but unfinished (status running: rerun the `dr reinforce` command).\n\n\
Example: dr verify imagenet-plus/ --images imagenet/train"
    )]
    Verify {
        /// The reinforced dataset folder.
        out: PathBuf,
        /// Where the images are now.
        #[arg(long)]
        images: Option<PathBuf>,
    },
    /// Print an image's stored samples: ml-dr's compressed parameters and the top-k (or the sampled draws).
    #[command(
        after_help = "Example: dr show imagenet-plus/ --id 17 --sample 3 --labels classes.txt"
    )]
    Show {
        /// The reinforced dataset folder.
        out: PathBuf,
        /// Image id: its row in images.tsv (0-based), as in bad-images.tsv.
        #[arg(long = "id", alias = "image")]
        image: u32,
        /// Only this sample (0-based; default: every sample of the image).
        #[arg(long)]
        sample: Option<u32>,
        /// Class names, one per line.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Print JSON: path, label and each sample's compressed parameters and top-k (probs, classes), or draws for sampled labels.
        #[arg(long)]
        json: bool,
    },
    /// Write a reinforced dataset in another tool's format (ml-dr's per-image .pth.tar files).
    #[command(
        after_help = "Example: dr export imagenet-plus/ --format ml-dr --to mldr/ --bundle mldr.tar.gz"
    )]
    Export {
        /// The reinforced dataset folder.
        out: PathBuf,
        /// The format to write: ml-dr (its per-image {id}.pth.tar files and config.pth.tar).
        #[arg(long, value_parser = ["ml-dr"])]
        format: String,
        /// Folder to write into.
        #[arg(long)]
        to: PathBuf,
        /// Also pack the files into this .tar or .tar.gz (the bundle form of ml-dr's release).
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Export an unfinished dataset's images (status running) instead of refusing it.
        #[arg(long)]
        allow_incomplete: bool,
    },
    /// Convert another tool's reinforced data into a dr dataset (ml-dr's released .pth.tar files).
    #[command(
        after_help = "Example: dr import imagenet_plus_rrc_mixup.tar.gz --format ml-dr --data imagenet/train --out imagenet-plus/"
    )]
    Import {
        /// Folder holding config.pth.tar and {id}.pth.tar, or the release's .tar/.tar.gz bundle.
        dir: PathBuf,
        /// The format to read: ml-dr (its released .pth.tar files).
        #[arg(long, value_parser = ["ml-dr"])]
        format: String,
        /// The ImageFolder the release was made from (ids are its rows).
        #[arg(long)]
        data: PathBuf,
        /// Folder for the dr dataset (new or empty).
        #[arg(long)]
        out: PathBuf,
    },
    /// Join the outputs of every task of a `--shard i/N` job into one dataset.
    #[command(
        after_help = "Example: dr merge part-0/ part-1/ part-2/ part-3/ --out imagenet-plus/"
    )]
    Merge {
        /// Task output folders.
        #[arg(required = true)]
        parts: Vec<PathBuf>,
        /// Folder for the merged dataset (new or empty; shards are hard-linked where possible).
        #[arg(long)]
        out: PathBuf,
    },
    /// Inputs, outputs, op histogram, parameters, GMACs and what the passes
    /// fused; exits 1 naming every node dr cannot run.
    #[command(after_help = "Example: dr inspect resnet50.onnx")]
    Inspect {
        /// The ONNX model.
        model: PathBuf,
        /// Also list every node after the passes (op, input and output
        /// shapes) and, when the model lowers, every GPU kernel step.
        #[arg(long)]
        nodes: bool,
        /// Prepare the model at this batch (default: the export's fixed
        /// batch, else 1): which views need a copy can depend on it.
        #[arg(long)]
        batch_size: Option<usize>,
    },
    /// Microbenchmarks on a GPU; results go to bench-results/.
    #[command(
        after_help = "Example: dr bench model --teacher resnet50.onnx --device cuda --batch-size 256"
    )]
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
}

#[derive(clap::Args)]
struct AugmentArgs {
    /// ml-dr reinforce YAML (parameters.reinforce...) or dr's short form.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Reproduce ml-dr's handling of unknown transform names (ignored, with warnings).
    #[arg(long)]
    ml_dr_compat: bool,
    /// Pillow release whose resize pass order to reproduce (overrides the config).
    #[arg(long, value_parser = ["pillow13", "pillow12"])]
    resize_pass_order: Option<String>,
    /// The image.
    #[arg(long)]
    image: Option<PathBuf>,
    /// Pair image for MixUp/CutMix (id = index + 1); default: the image itself.
    #[arg(long)]
    pair: Option<PathBuf>,
    /// The job's seed (parameters depend on it).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The image's dataset index (parameters depend on it).
    #[arg(long, default_value_t = 0)]
    index: u32,
    /// Number of samples (default: the config's num_samples; preview: 16).
    #[arg(long, value_parser = cli::values::at_least_one_u32)]
    samples: Option<u32>,
    /// Replay these records (a params.json, or a JSON list of ml-dr compressed records).
    #[arg(long)]
    params: Option<PathBuf>,
}

impl AugmentArgs {
    fn request(self, default_samples: Option<u32>) -> Result<augment::run::Request> {
        Ok(augment::run::Request {
            config: self
                .config
                .context("give --config C.yaml (the augmentation config)")?,
            ml_dr_compat: self.ml_dr_compat,
            pass_order: self
                .resize_pass_order
                .map(|o| {
                    PassOrder::from_name(&o).context("--resize-pass-order: pillow13 or pillow12")
                })
                .transpose()?,
            image: self.image.context("give --image FILE")?,
            pair: self.pair,
            seed: self.seed,
            index: self.index,
            samples: self.samples.or(default_samples),
            params: self.params,
        })
    }
}

#[derive(Subcommand)]
enum Bench {
    /// Teacher throughput: img/s and FLOP/s on the CPU executor, or with
    /// --device cuda[:N] on the GPU executor (% of the bf16 peak, top kernels).
    #[command(
        after_help = "Example: dr bench model --teacher resnet50.onnx --device cuda:0 --batch-size 256"
    )]
    Model {
        /// The ONNX teacher to time.
        #[arg(long = "teacher", alias = "model")]
        model: PathBuf,
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Images per call.
        #[arg(long, default_value_t = 8, value_parser = cli::values::at_least_one)]
        batch_size: usize,
        /// Timed calls (after a warm-up).
        #[arg(long, default_value_t = 5, value_parser = cli::values::at_least_one)]
        iters: usize,
        /// Print JSON instead of a line.
        #[arg(long)]
        json: bool,
        /// Folder for the JSON result of a GPU run.
        #[arg(long, default_value = "bench-results")]
        out_dir: PathBuf,
        /// GPU only: time every candidate kernel of each convolution at this
        /// batch, keep the fastest per layer in the model's tuning file
        /// (DR_TUNING_DIR, else ~/.cache/dr/tuning), which `dr reinforce`,
        /// `dr infer` and `dr bench model` then read on this device. The
        /// candidates compute the same bits: the choice changes speed only.
        #[arg(long)]
        autotune: bool,
    },
    /// Ensemble softmax + top-k kernel: rows/s over 1000/21841 classes, k 5/10/64.
    #[command(after_help = "Example: dr bench topk --device cuda:0")]
    Topk {
        /// cuda or cuda:N (a bare N is accepted too).
        #[arg(long, default_value = "cuda:0", value_parser = cli::values::cuda_device)]
        device: usize,
        /// Rows per launch.
        #[arg(long, default_value_t = 4096, value_parser = cli::values::at_least_one)]
        rows: usize,
        /// Timed launches per case.
        #[arg(long, default_value_t = 20, value_parser = cli::values::at_least_one)]
        iters: usize,
        /// Folder for the JSON result file.
        #[arg(long, default_value = "bench-results")]
        out_dir: PathBuf,
    },
    /// Fused attention alone on ViT-B/16, DeiT-S and Swin-T shapes: TFLOPS vs the bf16 dense peak.
    #[command(after_help = "Example: dr bench attention --device cuda:0 --batch 256")]
    Attention {
        /// cuda or cuda:N (a bare N is accepted too).
        #[arg(long, default_value = "cuda:0", value_parser = cli::values::cuda_device)]
        device: usize,
        /// Images (Swin: 64 windows an image).
        #[arg(long, default_value_t = 256, value_parser = cli::values::at_least_one)]
        batch: usize,
        /// Timed launches per case.
        #[arg(long, default_value_t = 20, value_parser = cli::values::at_least_one)]
        iters: usize,
        /// Folder for the JSON result file.
        #[arg(long, default_value = "bench-results")]
        out_dir: PathBuf,
    },
    /// GPU augmentation (bf16 NHWC, 224 px) for ml-dr's ImageNet configs vs the device copy rate.
    #[command(
        after_help = "Example: dr bench augment --device cuda:0 --config configs/imagenet-randaug_mixing.yaml"
    )]
    Augment {
        /// cuda or cuda:N (a bare N is accepted too).
        #[arg(long, default_value = "cuda:0", value_parser = cli::values::cuda_device)]
        device: usize,
        /// Configs to run (default: configs/imagenet-{cropflip,mixing,randaug,randaug_mixing}.yaml).
        #[arg(long = "config")]
        configs: Vec<PathBuf>,
        /// Samples per batch.
        #[arg(long, default_value_t = 256, value_parser = cli::values::at_least_one)]
        samples: usize,
        /// Distinct images per batch (each uploaded once for its samples).
        #[arg(long, default_value_t = 32, value_parser = cli::values::at_least_one)]
        images: usize,
        /// Timed batches per config (after 3 warm-ups).
        #[arg(long, default_value_t = 20, value_parser = cli::values::at_least_one)]
        iters: usize,
        /// Print the JSON report instead of the table.
        #[arg(long)]
        json: bool,
        /// Folder for the JSON result file.
        #[arg(long, default_value = "bench-results")]
        out_dir: PathBuf,
    },
    /// Host<->device (pinned, pageable) and device copy bandwidth vs the peaks.
    #[command(after_help = "Example: dr bench bandwidth --device cuda:0 --json")]
    Bandwidth {
        /// cuda or cuda:N (a bare N is accepted too).
        #[arg(long, default_value = "cuda:0", value_parser = cli::values::cuda_device)]
        device: usize,
        /// Print the JSON report instead of the table.
        #[arg(long)]
        json: bool,
        /// Host<->device buffer size in MiB.
        #[arg(long, default_value_t = 256)]
        host_mib: usize,
        /// Device copy buffer size in MiB (source and destination each).
        #[arg(long, default_value_t = 1024)]
        device_mib: usize,
        /// Timed repetitions per test (after 3 warm-ups).
        #[arg(long, default_value_t = 20, value_parser = cli::values::at_least_one)]
        iters: usize,
        /// Folder for the JSON result file.
        #[arg(long, default_value = "bench-results")]
        out_dir: PathBuf,
    },
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Devices { json } => {
            let p = cuda::probe();
            if json {
                out!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                out_str!(p.render());
            }
        }
        Command::Demo(a) => {
            dr::pipeline::interrupt::install()?;
            cli::demo::run(&a)?
        }
        Command::Reinforce(a) => {
            dr::pipeline::interrupt::install()?;
            cli::reinforce::set_threads(a.threads)?;
            let opt = cli::reinforce::options(&a)?;
            let s = cli::reinforce::run_with_progress(&opt, a.quiet)?;
            cli::reinforce::print_summary(&s, a.json)?;
        }
        Command::Augment { input, out } => {
            let o = augment::run::augment_to_dir(&input.request(None)?, &out)?;
            let t = &o.samples[0].tensor;
            eprintln!(
                "wrote {} samples of 3x{}x{} to {}/{{samples.npy,uint8.npy,params.json}}",
                o.samples.len(),
                t.height,
                t.width,
                out.display()
            );
        }
        Command::Preview {
            input,
            out,
            from: Some(from),
            ids,
            images,
            labels,
        } => cli::dataset::preview_from(
            &from,
            &ids,
            input.samples.unwrap_or(4),
            images.as_deref(),
            labels.as_deref(),
            &out,
        )?,
        Command::Preview { input, out, .. } => {
            let o = input.request(Some(16))?.run()?;
            augment::preview::write_png(&augment::preview::contact_sheet(&o, &[]), &out)?;
            eprintln!("wrote {} ({} samples)", out.display(), o.samples.len());
        }
        Command::Infer {
            models,
            input,
            image,
            recursive,
            output,
            device,
            batch_size,
            probs,
            temperature,
            topk,
            labels,
            resize,
            crop,
        } => {
            use dr::teacher::infer;
            use dr::teacher::tensor::Tensor;
            let device = infer::parse_device(&device)?;
            let (x, names) = match (&input, &image) {
                (Some(p), _) => {
                    let (shape, data): (Vec<usize>, Vec<f32>) = dr::npy::read(p)?;
                    (infer::Input::Tensor(Tensor::f32(shape, data)), None)
                }
                (None, Some(p)) => {
                    let (images, files) = cli::infer::usable_images(p, recursive)?;
                    let pre = infer::Preprocess {
                        resize,
                        crop,
                        ..Default::default()
                    };
                    (infer::Input::Images { images, pre }, Some(files))
                }
                (None, None) => anyhow::bail!("give --input X.npy or --image FILE|DIR"),
            };
            let req = infer::InferRequest {
                models: models.clone(),
                input: x,
                device,
                batch_size,
                probs,
                temperature,
            };
            let y = infer::infer(&req)?;
            let are_probs = probs || models.len() > 1;
            if let Some(out) = &output {
                match topk {
                    Some(k) => {
                        anyhow::ensure!(
                            (1..=y.shape[1]).contains(&k),
                            "--topk {k}: the model gives {} classes. Fix: --topk 1 to {}",
                            y.shape[1],
                            y.shape[1]
                        );
                        let (vals, ids) = infer::topk(&y, k);
                        dr::npy::write(out, &[y.shape[0], k], &vals)?;
                        let idx = out.with_extension("idx.npy");
                        dr::npy::write(&idx, &[y.shape[0], k], &ids)?;
                        eprintln!("wrote {} and {}", out.display(), idx.display());
                    }
                    None => {
                        dr::npy::write(out, &y.shape, y.as_f32().unwrap())?;
                        eprintln!(
                            "wrote {} {:?} ({})",
                            out.display(),
                            y.shape,
                            if are_probs { "probabilities" } else { "logits" }
                        );
                    }
                }
                if let Some(files) = &names {
                    cli::infer::write_file_names(out, files)?;
                }
            }
            if let Some(files) = names {
                let labels = cli::dataset::labels(labels.as_deref(), y.shape[1])?;
                let p = infer::as_probs(&y, are_probs);
                let (vals, ids) = infer::topk(&p, 5);
                let k = vals.len() / files.len().max(1);
                for (i, f) in files.iter().enumerate() {
                    out!("{}", f.display());
                    for j in 0..k {
                        let id = ids[i * k + j] as usize;
                        let name = labels
                            .as_ref()
                            .and_then(|l| l.get(id))
                            .map_or(String::new(), |n| format!(" {n}"));
                        out!("  {:>6.2}%  {id}{name}", 100.0 * vals[i * k + j]);
                    }
                }
            } else if output.is_none() {
                anyhow::bail!("--input needs --output Y.npy");
            }
        }
        Command::Bench {
            bench:
                Bench::Model {
                    model,
                    device,
                    batch_size,
                    iters,
                    json,
                    out_dir,
                    autotune,
                },
        } => {
            if let Some(d) = dr::teacher::infer::parse_device(&device)? {
                let r = dr::bench::model_gpu::run(&model, d, batch_size, iters, autotune)?;
                return publish(&r, &r.meta, &out_dir, json, r.render());
            }
            if autotune {
                anyhow::bail!(
                    "--autotune times GPU kernels; the CPU executor has none to choose. Fix: --device cuda"
                );
            }
            let r = dr::bench::model::run_cpu(&model, batch_size, iters)?;
            if json {
                out!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                out!(
                    "{}: batch {}, {} threads: {:.2} img/s, {:.1} GFLOP/s ({:.2} GMACs/image)",
                    model.display(),
                    r.batch,
                    r.threads,
                    r.img_per_s,
                    r.gflops,
                    r.gmacs_per_image
                );
                let total: f64 = r.per_op.iter().map(|p| p.1).sum();
                for (op, t, n) in r.per_op.iter().take(10) {
                    out!("  {op:<16} {:>5.1}%  {n} calls", 100.0 * t / total);
                }
            }
        }
        Command::Bench {
            bench:
                Bench::Topk {
                    device,
                    rows,
                    iters,
                    out_dir,
                },
        } => {
            let r = dr::bench::topk::run(device, rows, iters)?;
            publish(&r, &r.meta, &out_dir, false, r.render())?;
        }
        Command::Bench {
            bench:
                Bench::Attention {
                    device,
                    batch,
                    iters,
                    out_dir,
                },
        } => {
            let r = dr::bench::attention::run(device, batch, iters)?;
            publish(&r, &r.meta, &out_dir, false, r.render())?;
        }
        Command::Bench {
            bench:
                Bench::Augment {
                    device,
                    configs,
                    samples,
                    images,
                    iters,
                    json,
                    out_dir,
                },
        } => {
            let configs = if configs.is_empty() {
                ["cropflip", "mixing", "randaug", "randaug_mixing"]
                    .iter()
                    .map(|n| PathBuf::from(format!("configs/imagenet-{n}.yaml")))
                    .collect()
            } else {
                configs
            };
            let opts = dr::bench::augment::Options {
                device,
                configs,
                samples,
                images,
                warmup: 3,
                iters,
            };
            let r = dr::bench::augment::run(&opts)?;
            publish(&r, &r.meta, &out_dir, json, r.render())?;
        }
        Command::Verify { out, images } => cli::dataset::verify(&out, images.as_deref())?,
        Command::Show {
            out,
            image,
            sample,
            labels,
            json,
        } => cli::dataset::show(&out, image, sample, labels.as_deref(), json)?,
        Command::Merge { parts, out } => cli::dataset::merge(&parts, &out)?,
        Command::Export {
            out,
            format: _,
            to,
            bundle,
            allow_incomplete,
        } => cli::dataset::export_ml_dr(&out, &to, bundle.as_deref(), allow_incomplete)?,
        Command::Import {
            dir,
            format: _,
            data,
            out,
        } => cli::dataset::import_ml_dr(&dir, &data, &out)?,
        Command::Inspect {
            model,
            nodes,
            batch_size,
        } => {
            let (report, unsupported) = dr::teacher::infer::inspect(&model, nodes, batch_size)?;
            out_str!(report);
            if unsupported > 0 {
                anyhow::bail!(
                    "{}: {unsupported} node(s) dr cannot run (listed above)",
                    model.display()
                );
            }
        }
        Command::Bench {
            bench:
                Bench::Bandwidth {
                    device,
                    json,
                    host_mib,
                    device_mib,
                    iters,
                    out_dir,
                },
        } => {
            let opts = bandwidth::Options {
                device,
                host_bytes: host_mib << 20,
                device_bytes: device_mib << 20,
                iters,
                ..Default::default()
            };
            let r = bandwidth::run(&opts)?;
            publish(&r, &r.meta, &out_dir, json, r.render())?;
        }
    }
    Ok(())
}

/// Prints a bench report (JSON or its table) and says where it was written.
fn publish(
    r: &impl serde::Serialize,
    meta: &report::Meta,
    out_dir: &std::path::Path,
    json: bool,
    table: String,
) -> Result<()> {
    let (shown, path) = report::publish(r, meta, out_dir, json, table)?;
    out_str!(shown);
    match path {
        Some(p) => eprintln!("wrote {}", p.display()),
        None => eprintln!(
            "not written to {}: {} is the CPU stand-in, whose times are emulation, not a GPU's",
            out_dir.display(),
            meta.device.name
        ),
    }
    Ok(())
}

/// An error and its causes on one line, an OS error as its short reason
/// (`dr::io_reason`): "X: cannot create: no such file".
fn error_chain(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| match c.downcast_ref::<std::io::Error>() {
            Some(io) => dr::io_reason(io),
            None => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join(": ")
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(i) = e.downcast_ref::<dr::pipeline::interrupt::Interrupted>() {
                eprintln!("{i}");
                return ExitCode::from(i.exit_code());
            }
            eprintln!("error: {}", error_chain(&e));
            if e.downcast_ref::<cli::dataset::Incomplete>().is_some() {
                return ExitCode::from(4);
            }
            match e.downcast_ref::<dr::pipeline::shard::ShardError>() {
                Some(dr::pipeline::shard::ShardError::BadImage(_)) => ExitCode::from(3),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand shows an example, every flag and argument says what
    /// it is (`--help` is the manual of bare machines).
    #[test]
    fn help_has_examples_and_every_flag_a_description() {
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let name = format!("{path} {}", c.get_name());
            if c.get_subcommands().next().is_none() || c.get_name() == "bench" {
                let after = c
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                if c.get_name() != "help" && !after.contains("Example") {
                    missing.push(format!("{name}: no example"));
                }
            }
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if id != "help" && id != "version" && a.get_help().is_none() && !a.is_hide_set() {
                    missing.push(format!("{name} {id}: no description"));
                }
            }
            for s in c.get_subcommands() {
                walk(s, &name, missing);
            }
        }
        let mut missing = Vec::new();
        for s in super::Cli::command().get_subcommands() {
            walk(s, "dr", &mut missing);
        }
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
