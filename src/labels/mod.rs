//! Soft labels from the teacher's probabilities (issue 32). Today's records
//! hold top-k probabilities (`teacher::infer::topk`); `sampled` draws k classes
//! from the whole distribution, so the stored target is unbiased.
//!
//! # Sampled records (design; not written yet)
//!
//! The record format, CLI and reader are unchanged by this module so far. The
//! planned fields, replacing `probs` and `classes` when the manifest says
//! `"labels": {"mode": "sampled", "sampler_version": 1, "k": 10,
//! "proposal_t": null}`:
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
//! f16 probabilities and u16 ids; ids packed in ceil(log2 C) bits, 13 B.
//! `dr verify` checks: draws non-decreasing and below C, weights finite > 0.
//!
//! ml-dr export: ml-dr's `densify(..., "zeros")` puts the softmax of the
//! stored values on their ids, so count/k would not come back unbiased;
//! `"smooth"` (its default) spreads r = 1 - sum over the other classes and
//! returns count/k exactly when r = 0. Export therefore writes the distinct
//! ids with count/k rounded toward zero in f32, so the f32 sum cannot pass 1
//! (r >= 0, at most k ulps). Weighted values do not sum to 1, and ml-dr's
//! densify cannot return them unbiased either way: export refuses that mode
//! and says to draw without a proposal for ml-dr.

pub mod sampled;
