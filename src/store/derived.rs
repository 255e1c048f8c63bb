//! `--params derived`: records hold no augmentation parameters, only the
//! flags word (INVALID for a bad image). A reader regenerates each sample's
//! parameters exactly as `dr reinforce` drew them: `augment::params::Draw`
//! from (seed, listing size, image, sample), the pair from the image's
//! mixing group (its usable images, in work order, as `pipeline::shard`
//! offers them) and the crops from the decoded sizes that images.tsv keeps
//! for such datasets. The manifest records `PARAMS_SAMPLER_VERSION`; a
//! reader of another version refuses the dataset (`Settings::coding`).
//!
//! `python/dr_reader/sampler.py` is the same sampler in Python (the same
//! libm functions through ctypes: the f32 `ln`/`exp` of the crop boxes, the
//! f64 `ln`/`cos`/`powf` of the Beta draws), checked bit for bit against
//! this one by tests/derived_params.rs.

use crate::augment::params::{Draw, MixingGroups, SampleParams};
use crate::config::ReinforceConfig;
use crate::store::images::ImageRow;
use crate::store::layout::Layout;

/// Regenerates the parameters of a derived dataset's samples.
pub struct Deriver {
    config: ReinforceConfig,
    seed: u64,
    groups: MixingGroups,
    /// Decoded (w, h) of each usable image (None: bad, or not yet read).
    sizes: Vec<Option<(usize, usize)>>,
    /// A stored-parameter layout: its `stored_form` rounds as storage would.
    layout: Layout,
}

impl Deriver {
    /// For a dataset of `rows` (images.tsv with sizes) made with `config`
    /// and `seed`; `output_wh` is the augmented tensor size.
    pub fn new(
        config: &ReinforceConfig,
        seed: u64,
        rows: &[ImageRow],
        output_wh: (usize, usize),
    ) -> Self {
        let n = rows.len() as u32;
        Deriver {
            config: config.clone(),
            seed,
            groups: MixingGroups::new(seed, n, config.mixing_group),
            sizes: rows
                .iter()
                .map(|r| r.size.map(|(w, h)| (w as usize, h as usize)))
                .collect(),
            layout: Layout::new(&config.augment, 0, 2, output_wh),
        }
    }

    /// The parameters of (image, sample) as a stored record of them reads
    /// back (`Layout::stored_form`); `Err` says why they cannot be drawn.
    pub fn params(&self, image: u32, sample: u32) -> Result<SampleParams, String> {
        let cfg = &self.config;
        if sample >= cfg.num_samples {
            return Err(format!(
                "sample {sample} of image {image}: the dataset has {} samples an image",
                cfg.num_samples
            ));
        }
        let Some(Some(_)) = self.sizes.get(image as usize) else {
            return Err(format!(
                "image {image} has no decoded size in images.tsv, which derived parameters need. Fix: run `dr verify` on the dataset; restore images.tsv from the run that made it"
            ));
        };
        let candidates: Vec<u32> = self
            .groups
            .group_of(image)
            .iter()
            .copied()
            .filter(|&id| self.sizes[id as usize].is_some())
            .collect();
        let size_of = |id: u32| self.sizes[id as usize].expect("candidates have sizes");
        let draw = Draw {
            aug: &cfg.augment,
            seed: self.seed,
            num_samples: cfg.num_samples,
            size_of: &size_of,
        };
        Ok(self
            .layout
            .stored_form(&draw.sample(image, sample, &candidates)))
    }
}

#[cfg(test)]
mod tests;
