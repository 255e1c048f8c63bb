//! Soft labels from the teacher's probabilities (issue 32). `topk` records
//! (the default) hold the top-k probabilities (`teacher::infer::topk`);
//! `sampled` draws k classes from the whole distribution, so the stored
//! target is unbiased.
//!
//! # Sampled records
//!
//! `dr reinforce --label-mode sampled` (CPU backend) writes these fields in
//! place of `probs` and `classes`, and the manifest's settings say
//! `"labels": {"mode": "sampled", "sampler_version": 1, "k": 10,
//! "proposal_t": null}` (absent for `topk`, so top-k manifests keep their
//! bytes). Written so far: the unweighted draw; the proposal (`weights`) is
//! designed here but not written, and readers refuse a manifest with a
//! `proposal_t`.
//!
//! - `draws`: k class ids in ascending order with repeats kept, the multiset
//!   of the k draws (count_c = the length of c's run). `<u2` when the class
//!   count is at most 65536, else `<u4`, the rule `classes` follows today.
//!   A fixed-width record must reserve k slots either way (a draw can give k
//!   distinct ids); ids with u8 counts would cost 3k bytes and a padding
//!   sentinel, the multiset 2k bytes and neither. [`sampled::SampledLabels`]
//!   is its run-length encoding, lossless both ways.
//! - `weights` (only with a proposal, `proposal_t` = t): k `<f2`, slot i the
//!   weight p/q of `draws[i]`'s class. Rounding to nearest f16 would bias
//!   each class by up to 2^-11 relative; rounding up or down at random with
//!   the chance that makes E(ŵ) = w (the uniform from the label stream, the
//!   block after the draws) keeps the target unbiased. f16 spans 6e-8 to
//!   65504; a weight outside (a large t on a long tail) makes the writer
//!   widen the field to `<f4`, recorded in the dtype.
//! - An unusable image (flag `INVALID`) stores zeros, as today.
//!
//! The dense target is then one numpy call:
//! `np.bincount(draws, weights=weights, minlength=C) / k`.
//! At k = 10 and 1000 classes: 20 B (weighted 40 B) against today's 40 B of
//! f16 probabilities and u16 ids; ids packed in ceil(log2 C) bits
//! (`--class-ids packed`, `draws_packed`), 13 B.
//! `dr verify` checks: draws non-decreasing and below C (and, once weights
//! are written, weights finite > 0).
//!
//! ml-dr export: ml-dr's `densify(..., "zeros")` puts the softmax of the
//! stored values on their ids, so count/k would not come back unbiased;
//! `"smooth"` (its default) spreads r = 1 - sum over the other classes and
//! returns count/k exactly when r = 0 (checked against apple/ml-dr
//! `dr/utils.py`: `r = 1.0 - sp.sum()`, softmax when `method == "zeros" or
//! r < 0.0`). Export therefore writes the distinct ids with count/k rounded
//! toward zero in f32. That alone does not keep the f32 sum at or below 1:
//! k = 10, counts 5,1,1,1,1,1 summed from the last gives 1.0000001 (the
//! five 0.1s round down, their partial sums round up), and r < 0 sends
//! densify to its softmax. So when the exact sum is within n 2^-24 of 1 (the
//! worst rounding of an n-term f32 sum in any order) the largest value is
//! lowered by the difference ([`sampled::ml_dr_values`]); r then stays in
//! [0, about 2n 2^-24], spread over the other classes. Weighted values do
//! not sum to 1, and ml-dr's densify cannot return them unbiased either
//! way: export refuses that mode and says to draw without a proposal.

pub mod packed;
pub mod sampled;
pub mod u8log;

/// What a record keeps of the teacher's distribution. Top-k is the peers'
/// format (biased: the tail is dropped); sampled is unbiased at the same k
/// and half the bytes, but each record is a noisier estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LabelMode {
    /// The k largest probabilities (f16) and their class ids.
    #[default]
    TopK,
    /// k classes drawn from the whole distribution (module comment).
    Sampled,
}

impl LabelMode {
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "topk" => Some(LabelMode::TopK),
            "sampled" => Some(LabelMode::Sampled),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LabelMode::TopK => "topk",
            LabelMode::Sampled => "sampled",
        }
    }
}

/// How a top-k record stores its probabilities (`--prob-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProbFormat {
    /// f16 (`probs`, `<f2`): 0.05% relative error, 2 B each.
    #[default]
    F16,
    /// One byte, a code of log p (`prob_codes`, `|u1`; [`u8log`]): within
    /// [`u8log::MAX_REL_ERROR`] above [`u8log::FLOOR`], 1 B each.
    U8Log,
}

/// How a record stores class ids (`--class-ids`): `classes` (top-k) or
/// `draws` (sampled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdFormat {
    /// Whole bytes: u16, u32 past 65536 classes.
    #[default]
    Bytes,
    /// ceil(log2 C) bits each (`classes_packed` / `draws_packed`, `|u1`;
    /// [`packed`]).
    Packed,
}

impl ProbFormat {
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "f16" => Some(ProbFormat::F16),
            "u8log" => Some(ProbFormat::U8Log),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProbFormat::F16 => "f16",
            ProbFormat::U8Log => "u8log",
        }
    }

    /// Largest relative error of a stored probability (above the floor for
    /// u8log; f16's for its normal range, 2^-11).
    pub fn max_rel_error(self) -> f64 {
        match self {
            ProbFormat::F16 => 2f64.powi(-11),
            ProbFormat::U8Log => u8log::MAX_REL_ERROR,
        }
    }
}

impl IdFormat {
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "bytes" => Some(IdFormat::Bytes),
            "packed" => Some(IdFormat::Packed),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            IdFormat::Bytes => "bytes",
            IdFormat::Packed => "packed",
        }
    }
}

/// Whether a record holds its augmentation parameters (`--params`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParamsFormat {
    /// Every enabled transform's fields, as ml-dr's records hold them.
    #[default]
    Stored,
    /// None but the flags word (whether the image was usable): readers
    /// regenerate the parameters from (seed, listing, image, sample) with
    /// the sampler of `augment::params::PARAMS_SAMPLER_VERSION`
    /// (`store::derived`).
    Derived,
}

impl ParamsFormat {
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "stored" => Some(ParamsFormat::Stored),
            "derived" => Some(ParamsFormat::Derived),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ParamsFormat::Stored => "stored",
            ParamsFormat::Derived => "derived",
        }
    }
}

/// The record's encodings (label fields, parameters): the defaults are the
/// format of every dataset written before these options (manifests without
/// the fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Coding {
    pub probs: ProbFormat,
    pub ids: IdFormat,
    pub params: ParamsFormat,
}
