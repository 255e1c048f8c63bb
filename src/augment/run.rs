//! `dr augment` and `dr preview`: one image (and its pair) through the CPU
//! reference, with sampled or replayed parameters.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::image::Rgb8;
use super::params::{Draw, SampleParams};
use super::pipeline::{Augmented, augment};
use super::record::{compress, decompress, dict_form};
use crate::config::{PassOrder, ReinforceConfig};
use crate::dataset::decode::decode_rgb;

/// What to augment and how.
pub struct Request {
    pub config: PathBuf,
    pub ml_dr_compat: bool,
    pub pass_order: Option<PassOrder>,
    pub image: PathBuf,
    pub pair: Option<PathBuf>,
    pub seed: u64,
    pub index: u32,
    pub samples: Option<u32>,
    /// Replay these records (our params.json, or a JSON list of ml-dr
    /// compressed records) instead of sampling.
    pub params: Option<PathBuf>,
}

pub struct Outcome {
    pub config: ReinforceConfig,
    pub params: Vec<SampleParams>,
    pub samples: Vec<Augmented>,
    /// Ids of the main and pair image (the pair is `index + 1` when given).
    pub ids: (u32, u32),
}

impl Request {
    pub fn run(&self) -> Result<Outcome> {
        let mut config = ReinforceConfig::load(&self.config, self.ml_dr_compat)?;
        for w in &config.warnings {
            eprintln!("warning: {w}");
        }
        if let Some(order) = self.pass_order {
            config.augment.pass_order = order;
        }
        let aug = &config.augment;
        let img = decode_rgb(&self.image)?;
        let pair_img = self.pair.as_deref().map(decode_rgb).transpose()?;
        let pair_id = match &self.pair {
            Some(_) => self
                .index
                .checked_add(1)
                .context("--index too large to give the pair its own id")?,
            None => self.index,
        };
        let size_of = |id: u32| -> (usize, usize) {
            let im = if id == self.index {
                &img
            } else {
                pair_img.as_ref().unwrap_or(&img)
            };
            (im.width, im.height)
        };
        let params: Vec<SampleParams> = match &self.params {
            Some(file) => read_params(file, &config)?,
            None => {
                let n = self.samples.unwrap_or(config.num_samples);
                if n == 0 {
                    bail!("--samples must be at least 1");
                }
                if aug.mixing() && self.pair.is_none() {
                    eprintln!(
                        "note: the config mixes images; with no --pair each sample is paired with the image itself"
                    );
                }
                let draw = Draw {
                    aug,
                    seed: self.seed,
                    num_samples: config.num_samples.max(n),
                    size_of: &size_of,
                };
                (0..n)
                    .map(|s| draw.sample(self.index, s, &[pair_id]))
                    .collect()
            }
        };
        let samples = params
            .iter()
            .map(|p| {
                let pair = p.pair.as_ref().map(|q| {
                    if q.id2 == self.index {
                        &img
                    } else {
                        pair_img.as_ref().unwrap_or(&img)
                    }
                });
                augment(aug, &img, p, pair)
            })
            .collect();
        Ok(Outcome {
            params,
            samples,
            config,
            ids: (self.index, pair_id),
        })
    }
}

fn read_params(file: &Path, config: &ReinforceConfig) -> Result<Vec<SampleParams>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", file.display()))?;
    let list = v
        .as_array()
        .with_context(|| format!("{}: expected a JSON list of records", file.display()))?;
    list.iter()
        .enumerate()
        .map(|(i, entry)| {
            // Our params.json entries carry "compressed"; a bare record is ml-dr's list.
            let rec = entry.get("compressed").unwrap_or(entry);
            decompress(&config.augment, rec)
                .with_context(|| format!("{}: entry {i}", file.display()))
        })
        .collect()
}

impl Outcome {
    /// Writes samples.npy, uint8.npy and params.json into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let first = &self.samples[0].tensor;
        let shape = [
            self.samples.len(),
            first.channels,
            first.height,
            first.width,
        ];
        let floats: Vec<f32> = self
            .samples
            .iter()
            .flat_map(|s| s.tensor.data.iter().copied())
            .collect();
        crate::npy::write(&dir.join("samples.npy"), &shape, &floats)?;
        let bytes: Vec<u8> = self
            .samples
            .iter()
            .flat_map(|s| s.uint8.data.iter().copied())
            .collect();
        crate::npy::write(&dir.join("uint8.npy"), &shape, &bytes)?;
        let aug = &self.config.augment;
        let entries: Vec<Value> = self
            .params
            .iter()
            .map(|p| json!({"params": dict_form(aug, p), "compressed": compress(aug, p)}))
            .collect();
        let text = serde_json::to_string_pretty(&entries)?;
        std::fs::write(dir.join("params.json"), text + "\n")
            .with_context(|| format!("writing {}/params.json", dir.display()))
    }

    /// The final tensor shown as an image: normalisation undone, clamped.
    pub fn display_image(&self, i: usize) -> Rgb8 {
        let t = &self.samples[i].tensor;
        let (mean, std) = self
            .config
            .augment
            .normalize
            .as_ref()
            .map_or(([0.0; 3], [1.0; 3]), |n| (n.mean, n.std));
        let plane = t.plane();
        let mut out = Rgb8::new(t.width, t.height);
        for p in 0..plane {
            for c in 0..3.min(t.channels) {
                let v = (t.data[c * plane + p] * std[c] + mean[c]) * 255.0;
                out.data[p * 3 + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
        out
    }
}

/// `Outcome::write` is all of `dr augment`; tests call it through here.
pub fn augment_to_dir(req: &Request, out: &Path) -> Result<Outcome> {
    let o = req.run()?;
    o.write(out)?;
    Ok(o)
}
