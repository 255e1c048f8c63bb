//! The `dr` command line. Each subcommand calls the library; nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::LazyLock;

use anyhow::Result;
use clap::{Parser, Subcommand};
use dr::bench::{bandwidth, report};
use dr::{build_info, cuda};

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
    /// Microbenchmarks on a GPU; results go to bench-results/.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
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
