//! Soft labels from the teacher's probabilities (issue 32). Today's records
//! hold top-k probabilities (`teacher::infer::topk`); `sampled` draws k classes
//! from the whole distribution, so the stored target is unbiased.

pub mod sampled;
