//! `dr demo`: generate a labelled shape set, reinforce it with the embedded
//! teacher, print the summary and the teacher's accuracy, write a preview.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use dr::config::ReinforceConfig;
use dr::demo;
use dr::pipeline::reinforce::{Options, Source};
use dr::store::reader::Reinforced;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Folder for everything the demo writes.
    #[arg(long, default_value = "dr-demo")]
    pub out: PathBuf,
    /// Generated images per class (10 classes).
    #[arg(long, default_value_t = 30, value_parser = crate::cli::values::at_least_one_u32)]
    pub images_per_class: u32,
    /// Samples per image (default: configs/demo.yaml's 8).
    #[arg(long, value_parser = crate::cli::values::at_least_one_u32)]
    pub samples: Option<u32>,
    /// Seed of the generated images (the teacher was trained on seed 1000).
    #[arg(long, default_value_t = 7)]
    pub data_seed: u64,
    /// Samples per teacher call (does not change the output).
    #[arg(long, default_value_t = 64, value_parser = crate::cli::values::at_least_one)]
    pub batch_size: usize,
    /// auto (CUDA device 0 when one can be used, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Only write the labelled images to this folder (for training the teacher).
    #[arg(long)]
    pub write_data: Option<PathBuf>,
    /// No progress display.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(a: &DemoArgs) -> Result<()> {
    if let Some(dir) = &a.write_data {
        demo::write_data(dir, a.data_seed, a.images_per_class)?;
        eprintln!(
            "wrote {} images in {} classes to {}",
            a.images_per_class as usize * demo::shapes::CLASSES.len(),
            demo::shapes::CLASSES.len(),
            dir.display()
        );
        return Ok(());
    }
    let device = match a.device.as_str() {
        // A usable device: a driver, a GPU, and kernels built for it.
        "auto" => dr::cuda::Gpu::open(0).is_ok().then_some(0),
        d => dr::teacher::infer::parse_device(d)?,
    };
    // An asked-for GPU that cannot be used stops the demo before it writes
    // anything (or announces a backend it will not run).
    if let Some(d) = device
        && a.device != "auto"
    {
        dr::cuda::Gpu::open(d).with_context(|| format!("--device {}", a.device))?;
    }
    if demo::TEACHER.is_empty() {
        bail!(
            "this dr was built without the demo teacher. Fix: run tools/train_demo_teacher.py and rebuild"
        );
    }
    let out = &a.out;
    let data = out.join("data");
    if !data.exists() {
        demo::write_data(&data, a.data_seed, a.images_per_class)?;
    }
    let teacher = out.join("teacher.onnx");
    let config = out.join("config.yaml");
    let labels = out.join("labels.txt");
    std::fs::write(&teacher, demo::TEACHER)
        .with_context(|| format!("writing {}", teacher.display()))?;
    std::fs::write(&config, demo::CONFIG)
        .with_context(|| format!("writing {}", config.display()))?;
    std::fs::write(&labels, demo::shapes::CLASSES.join("\n") + "\n")?;
    let mut cfg = ReinforceConfig::parse(demo::CONFIG, "configs/demo.yaml", false)?;
    if let Some(s) = a.samples {
        cfg.num_samples = s;
    }
    let reinforced = out.join("reinforced");
    let opt = Options {
        source: Source::Folder(data.clone()),
        teachers: vec![teacher],
        out: reinforced.clone(),
        config: cfg,
        seed: 0,
        batch_size: Some(a.batch_size),
        decode_ahead: None,
        temperature: 1.0,
        task: None,
        fail_on_bad: false,
        images_per_shard: 64,
        devices: device.into_iter().collect(),
        label_mode: Default::default(),
        coding: Default::default(),
    };
    eprintln!(
        "dr demo: {} images of {} shapes in {}, teacher {} ({} KB), {} backend",
        a.images_per_class as usize * demo::shapes::CLASSES.len(),
        demo::shapes::CLASSES.len(),
        data.display(),
        out.join("teacher.onnx").display(),
        demo::TEACHER.len() / 1024,
        match device {
            Some(d) => format!("GPU (cuda:{d})"),
            None => "CPU".into(),
        }
    );
    let s = super::reinforce::run_with_progress(&opt, a.quiet)?;
    super::reinforce::print_summary(&s, false)?;
    let d = Reinforced::open(&reinforced)?;
    let acc = demo::accuracy(&d)?;
    out!(
        "teacher accuracy against the true labels: top-1 {:.1}%, top-5 {:.1}% ({} unmixed samples)",
        100.0 * acc.top1,
        100.0 * acc.top5,
        acc.samples
    );
    let sheet = out.join("preview.png");
    super::dataset::preview_from(&reinforced, &[], 4, None, Some(&labels), &sheet)?;
    out!(
        "next: dr show {} --id 0 --labels {}   dr verify {}",
        reinforced.display(),
        labels.display(),
        reinforced.display()
    );
    Ok(())
}
