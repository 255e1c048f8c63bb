//! The reinforcement config: ml-dr's reinforce YAML as it is
//! (`parameters.reinforce.{num_samples, topk, image_augmentation{...}}`), or
//! our short form (the `reinforce` mapping at top level). Defaults are
//! torchvision's (or ml-dr's where it overrides them) wherever a file is
//! silent. Which transforms run follows ml-dr's `clean_config`: a transform
//! is on when its key is present and `enable` is not false.
//!
//! ml-dr ignores transform names it does not know: its flowers102 and
//! food101 configs spell `random_resize_crop`, so ml-dr ran them with no crop
//! at all. We refuse unknown names (with a did-you-mean) unless
//! `ml_dr_compat` is set, which reproduces ml-dr and lists what it ignored.

mod json;
mod transforms;
pub mod yaml;

use std::path::Path;

pub use transforms::*;
use yaml::{ConfigError, Node, Result};
use yaml_rust2::YamlLoader;

/// Default mixing-group size: ml-dr's ImageNet batch size.
pub const DEFAULT_MIXING_GROUP: u32 = 32;

#[derive(Debug, Clone, PartialEq)]
pub struct ReinforceConfig {
    pub num_samples: u32,
    pub topk: u32,
    /// Images per mixing group (pairs for MixUp/CutMix come from the group).
    pub mixing_group: u32,
    pub augment: Augmentation,
    /// Keys ml-dr would ignore, reported in compat mode.
    pub warnings: Vec<String>,
}

/// Keys of `parameters.reinforce` (ml-dr) or of the short form.
const REINFORCE_KEYS: &[&str] = &[
    "num_samples",
    "num_candidates",
    "topk",
    "compress",
    "joblib",
    "gzip",
    "image_augmentation",
    "mixing_group",
    "resize_pass_order",
];

impl ReinforceConfig {
    pub fn load(path: &Path, ml_dr_compat: bool) -> std::result::Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: String::new(),
            message: format!("cannot read the config: {}", crate::io_reason(&e)),
        })?;
        Self::parse(&text, &file, ml_dr_compat)
    }

    /// Parses YAML text; `file` names it in errors.
    pub fn parse(text: &str, file: &str, ml_dr_compat: bool) -> Result<Self> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| ConfigError {
            file: file.to_owned(),
            key: String::new(),
            message: format!("not valid YAML: {e}"),
        })?;
        let Some(doc) = docs.first() else {
            return Err(ConfigError {
                file: file.to_owned(),
                key: String::new(),
                message: "the file is empty".into(),
            });
        };
        let root = Node::root(file, doc);
        // ml-dr form: parameters.reinforce; the rest of `parameters` is
        // ml-dr's runtime settings (workers, dist_url, ...), not ours to judge.
        let reinforce = match root.get("parameters")? {
            Some(params) => params.require("reinforce")?,
            None => match root.get("reinforce")? {
                Some(r) => r,
                None => {
                    return Err(root.error(
                        "no `parameters.reinforce` (ml-dr form) or `reinforce` (short form) mapping",
                    ));
                }
            },
        };
        Self::from_node(&reinforce, ml_dr_compat)
    }

    fn from_node(r: &Node, compat: bool) -> Result<Self> {
        let num_samples = r.require("num_samples")?.int_in(1, 1 << 20)? as u32;
        let topk = match r.get("topk")? {
            Some(n) => n.int_in(1, 1 << 20)? as u32,
            None => 10,
        };
        if let Some(n) = r.get("num_candidates")?
            && !n.is_null()
        {
            return Err(n.error(
                "candidate selection (num_candidates) is not supported: every sample is stored. Remove it or set it to null",
            ));
        }
        if let Some(c) = r.get("compress")?
            && !c.bool()?
        {
            return Err(c.error(
                "dr always stores ml-dr's compressed parameter form; set `compress: true`",
            ));
        }
        // Storage options of ml-dr's writer; dr's store and `dr export` decide these.
        for k in ["joblib", "gzip"] {
            if let Some(n) = r.get(k)? {
                n.bool()?;
            }
        }
        let mixing_group = match r.get("mixing_group")? {
            Some(n) => n.int_in(1, 1 << 20)? as u32,
            None => DEFAULT_MIXING_GROUP,
        };
        let pass_order = match r.get("resize_pass_order")? {
            Some(n) => PassOrder::parse(&n)?,
            None => PassOrder::default(),
        };
        let mut warnings = Vec::new();
        let augment = Augmentation::from_node(
            &r.require("image_augmentation")?,
            pass_order,
            compat,
            &mut warnings,
        )?;
        r.deny_unknown(REINFORCE_KEYS)?;
        Ok(ReinforceConfig {
            num_samples,
            topk,
            mixing_group,
            augment,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests;
