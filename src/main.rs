//! The `dr` command line. Each subcommand calls the library; nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::LazyLock;

use anyhow::Result;
use clap::{Parser, Subcommand};
use dr::bench::{bandwidth, report};
use dr::config::PassOrder;
use dr::{augment, build_info, cuda};

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
    Devices {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Augment one image as ml-dr would: writes samples.npy, uint8.npy, params.json.
    Augment {
        #[command(flatten)]
        input: AugmentArgs,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// A contact sheet of augmentations with their parameters captioned.
    Preview {
        #[command(flatten)]
        input: AugmentArgs,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
    },
    /// Microbenchmarks on a GPU; results go to bench-results/.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
}

#[derive(clap::Args)]
struct AugmentArgs {
    /// ml-dr reinforce YAML (parameters.reinforce...) or dr's short form.
    #[arg(long)]
    config: PathBuf,
    /// Reproduce ml-dr's handling of unknown transform names (ignored, with warnings).
    #[arg(long)]
    ml_dr_compat: bool,
    /// Pillow release whose resize pass order to reproduce (overrides the config).
    #[arg(long, value_parser = ["pillow13", "pillow12"])]
    resize_pass_order: Option<String>,
    /// The image.
    #[arg(long)]
    image: PathBuf,
    /// Pair image for MixUp/CutMix (id = index + 1); default: the image itself.
    #[arg(long)]
    pair: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The image's dataset index (parameters depend on it).
    #[arg(long, default_value_t = 0)]
    index: u32,
    /// Number of samples (default: the config's num_samples; preview: 16).
    #[arg(long)]
    samples: Option<u32>,
    /// Replay these records (a params.json, or a JSON list of ml-dr compressed records).
    #[arg(long)]
    params: Option<PathBuf>,
}

impl AugmentArgs {
    fn request(self, default_samples: Option<u32>) -> augment::run::Request {
        augment::run::Request {
            config: self.config,
            ml_dr_compat: self.ml_dr_compat,
            pass_order: self.resize_pass_order.map(|o| {
                if o == "pillow12" {
                    PassOrder::Pillow12
                } else {
                    PassOrder::Pillow13
                }
            }),
            image: self.image,
            pair: self.pair,
            seed: self.seed,
            index: self.index,
            samples: self.samples.or(default_samples),
            params: self.params,
        }
    }
}

#[derive(Subcommand)]
enum Bench {
    /// Host<->device (pinned, pageable) and device copy bandwidth vs the peaks.
    Bandwidth {
        /// CUDA device ordinal.
        #[arg(long, default_value_t = 0)]
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
        #[arg(long, default_value_t = 20)]
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
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                print!("{}", p.render());
            }
        }
        Command::Augment { input, out } => {
            let o = augment::run::augment_to_dir(&input.request(None), &out)?;
            let t = &o.samples[0].tensor;
            eprintln!(
                "wrote {} samples of 3x{}x{} to {}/{{samples.npy,uint8.npy,params.json}}",
                o.samples.len(),
                t.height,
                t.width,
                out.display()
            );
        }
        Command::Preview { input, out } => {
            let o = input.request(Some(16)).run()?;
            augment::preview::write_png(&augment::preview::contact_sheet(&o), &out)?;
            eprintln!("wrote {} ({} samples)", out.display(), o.samples.len());
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
            anyhow::ensure!(iters > 0, "--iters must be at least 1");
            let opts = bandwidth::Options {
                device,
                host_bytes: host_mib << 20,
                device_bytes: device_mib << 20,
                iters,
                ..Default::default()
            };
            let r = bandwidth::run(&opts)?;
            let path = r.meta.path_in(&out_dir);
            report::write_json(&path, &r)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", r.render());
            }
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
