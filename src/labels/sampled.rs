//! Sampled labels: k classes drawn i.i.d. with replacement from the teacher's
//! distribution p (or from a flattened proposal q ∝ p^(1/t) with importance
//! weights p/q), kept as distinct ids with counts. The estimator
//! `sum_c count_c * w_c / k * e_c` (w_c = 1 without a proposal) has expectation
//! p, where top-k renormalised or smoothed does not (Sparse Logit Sampling,
//! arXiv 2503.16870).
//!
//! The draw is a pure function of (seed, image, sample, p, k, t): Philox on its
//! own stream (counter = image, sample, [`S_LABELS`], block), so batch size,
//! device count, thread count and restarts cannot change it.
//!
//! Inverse CDF over integers, so no summation order can matter: each value x_c
//! (p_c, or p_c^(1/t)) becomes the integer `floor(x_c * 2^(S - e))`, where
//! 2^(e-1) <= max_c x_c < 2^e and S = min(62, 64 - ceil(log2 C)). Scaling by a
//! power of two is exact and the sum cannot overflow u64, so the cumulative
//! sum is exact and the same in any order (a GPU scan gives the same bits).
//! The draw's target is these integers over their sum (the weighted mode's
//! too): p / sum(p) but for truncation. Every p_c >= 2^(e-S+23) scales to an
//! exact integer (its f32 ulp is a whole unit); smaller p_c lose under one
//! unit 2^(e-S) <= 2 max 2^-S each, at most 2^(2 ceil(log2 C) - 63) of the
//! mass in all (2^-43 at 1000 classes, 2^-33 at 21841), far below f32's own
//! rounding of p. Each draw takes one integer r uniform in [0, W) with
//! Lemire's rejection (exactly uniform) and picks the first class whose
//! inclusive cumulative sum exceeds r: class c with probability w_c / W.

use crate::rng::Philox;

/// Philox counter word 2 of the label draw ("LABL"): apart from every
/// augmentation stream (0..8, 16..24) and the listing permutation's.
pub const S_LABELS: u32 = 0x4C41_424C;

/// Version of this sampler's bytes (what the manifest will record, so a
/// reader refuses a dataset drawn by a sampler it does not know).
pub const SAMPLER_VERSION: u32 = 1;

/// One sample's draw: distinct class ids in ascending order, how often each
/// was drawn (summing to k), and with a proposal the importance weight p/q of
/// each id.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledLabels {
    pub ids: Vec<u32>,
    pub counts: Vec<u16>,
    /// `Some` exactly when the draw used a proposal (t given).
    pub weights: Option<Vec<f32>>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LabelError {
    #[error("sampled labels: the teacher gave no classes")]
    NoClasses,
    #[error(
        "sampled labels: class {class} has probability {value}; a draw needs finite, non-negative probabilities. Fix: check the teacher's output (NaN logits?) and that labels are drawn from probabilities, not logits"
    )]
    NotAProbability { class: usize, value: f32 },
    #[error(
        "sampled labels: every class has probability 0, so there is nothing to draw. Fix: check the teacher's output"
    )]
    NoMass,
    #[error("sampled labels: k = 0 draws nothing. Fix: --topk 1 or more")]
    ZeroK,
    #[error(
        "sampled labels: proposal temperature {0} is not a finite number >= 1 (q ∝ p^(1/t) must flatten p, not sharpen it). Fix: t = 1, 2 or 4"
    )]
    Temperature(f32),
}

/// Where the draw's generator lives: one (seed, image, sample) counter line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrawKey {
    pub seed: u64,
    pub image: u32,
    pub sample: u32,
}

/// Draws `k` classes i.i.d. from `p` (`t = None`), or from q ∝ p^(1/t) with
/// weights p/q (`t = Some(t)`, t >= 1). `p` need not sum to 1 exactly: the
/// target is p / sum(p), as the ensemble's f32 rounding leaves it.
pub fn draw(p: &[f32], k: u16, t: Option<f32>, key: DrawKey) -> Result<SampledLabels, LabelError> {
    check(p, k, t)?;
    let x: Vec<f64> = p.iter().map(|&v| v as f64).collect();
    let target = fixed_point(&x);
    let (sampling, weights) = match t {
        None => (target, None),
        Some(t) => {
            let flat: Vec<f64> = x.iter().map(|&v| flatten(v, t)).collect();
            let mut q = fixed_point(&flat);
            // Importance sampling needs q > 0 wherever the target is > 0.
            for (qc, &pc) in q.iter_mut().zip(&target) {
                *qc = (*qc).max((pc > 0) as u64);
            }
            let w = importance_weights(&target, &q);
            (q, Some(w))
        }
    };
    let cum = cumulative(&sampling);
    let total = *cum.last().unwrap();
    let mut rng = Philox::new(key.seed, key.image, key.sample, S_LABELS);
    let mut picks: Vec<u32> = (0..k)
        .map(|_| {
            let r = below_u64(&mut rng, total);
            class_of(&cum, r)
        })
        .collect();
    picks.sort_unstable();
    let (mut ids, mut counts) = (Vec::new(), Vec::<u16>::new());
    for id in picks {
        if ids.last() == Some(&id) {
            *counts.last_mut().unwrap() += 1;
        } else {
            ids.push(id);
            counts.push(1);
        }
    }
    let weights = weights.map(|w| ids.iter().map(|&c| w[c as usize]).collect());
    Ok(SampledLabels {
        ids,
        counts,
        weights,
    })
}

impl SampledLabels {
    /// The number of draws, k.
    pub fn k(&self) -> u32 {
        self.counts.iter().map(|&c| c as u32).sum()
    }

    /// The unbiased dense target over `classes`: count_c * w_c / k at each id
    /// (w_c = 1 without a proposal), 0 elsewhere.
    pub fn dense(&self, classes: usize) -> Vec<f32> {
        let k = self.k() as f64;
        let mut out = vec![0f32; classes];
        for (i, (&id, &n)) in self.ids.iter().zip(&self.counts).enumerate() {
            let w = self.weights.as_ref().map_or(1.0, |w| w[i] as f64);
            out[id as usize] = (n as f64 * w / k) as f32;
        }
        out
    }
}

/// The values `dr export --format ml-dr` writes for a draw with these
/// `counts` (of k): count/k rounded toward zero in f32, so that ml-dr's
/// `densify` ("smooth", its default: r = 1 - the f32 sum of the values,
/// spread over the other classes) gives back count/k. A sum above 1 would
/// make it take its softmax branch instead, so when the values' exact sum
/// is within the worst rounding of an n-term f32 sum (n 2^-24, in any
/// order: torch's is not sequential) of 1, the largest is lowered by that
/// margin. Values that are exact (k a power of two) sum exactly and stay.
/// The cost is a bias under n 2^-24 in all, far below one draw's 1/k.
pub fn ml_dr_values(counts: &[u16]) -> Vec<f32> {
    let k = counts.iter().map(|&c| c as u64).sum::<u64>() as f64;
    // v * k against c is exact in f64 (24-bit v times a <= 32-bit k).
    let mut v: Vec<f32> = counts
        .iter()
        .map(|&c| {
            let f = (c as f64 / k) as f32;
            if f as f64 * k > c as f64 {
                f.next_down()
            } else {
                f
            }
        })
        .collect();
    if v.iter()
        .zip(counts)
        .all(|(&f, &c)| f as f64 * k == c as f64)
    {
        return v;
    }
    fit_under_one(&mut v);
    v
}

/// Lowers the largest of `v` (values at or below their exact share, summing
/// to at most 1) by the worst rounding of an n-term f32 sum, n 2^-24, when
/// their sum is within that of 1, so that no summation order of the f32
/// values passes 1 ([`ml_dr_values`]; u8log export, `store::ml_dr::export`).
pub fn fit_under_one(v: &mut [f32]) {
    // Exact in f64 for values that are multiples of 2^-40 at or below 1.
    let sum: f64 = v.iter().map(|&f| f as f64).sum();
    let over = sum + v.len() as f64 * 2f64.powi(-24) - 1.0;
    if over > 0.0 {
        let i = (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
        let lowered = (v[i] as f64 - over) as f32;
        v[i] = if lowered as f64 > v[i] as f64 - over {
            lowered.next_down()
        } else {
            lowered
        };
    }
}

fn check(p: &[f32], k: u16, t: Option<f32>) -> Result<(), LabelError> {
    if p.is_empty() {
        return Err(LabelError::NoClasses);
    }
    assert!(p.len() <= u32::MAX as usize, "class ids are u32");
    if let Some((class, &value)) = p
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
    {
        return Err(LabelError::NotAProbability { class, value });
    }
    if p.iter().all(|&v| v == 0.0) {
        return Err(LabelError::NoMass);
    }
    if k == 0 {
        return Err(LabelError::ZeroK);
    }
    match t {
        Some(t) if !(t.is_finite() && t >= 1.0) => Err(LabelError::Temperature(t)),
        _ => Ok(()),
    }
}

/// x^(1/t). For t a power of two this is repeated square roots, correctly
/// rounded in IEEE arithmetic on every CPU and GPU; other t go through the
/// host's `pow`, whose last bit a GPU twin may not match.
fn flatten(x: f64, t: f32) -> f64 {
    let bits = t.to_bits();
    if bits & 0x7f_ffff == 0 {
        let halvings = (bits >> 23) as i32 - 127;
        (0..halvings).fold(x, |v, _| v.sqrt())
    } else {
        x.powf(1.0 / t as f64)
    }
}

/// Non-negative finite values (not all 0) as integers on a common power-of-two
/// scale whose sum fits in u64 (see the module comment).
fn fixed_point(x: &[f64]) -> Vec<u64> {
    let max = x.iter().fold(0f64, |a, &b| a.max(b));
    // max comes from an f32 (or a root of one), so it is a normal f64:
    // 2^(e-1) <= max < 2^e with e read from the exponent field.
    let e = ((max.to_bits() >> 52) & 0x7ff) as i32 - 1022;
    let s = 62.min(64 - x.len().next_power_of_two().trailing_zeros() as i32);
    let scale = f64::from_bits(((1023 + s - e) as u64) << 52);
    x.iter().map(|&v| (v * scale) as u64).collect()
}

/// Inclusive prefix sums, exact (module comment: no overflow).
fn cumulative(w: &[u64]) -> Vec<u64> {
    w.iter()
        .scan(0u64, |acc, &v| {
            *acc += v;
            Some(*acc)
        })
        .collect()
}

/// The class whose integer range holds r: the first inclusive cumulative sum
/// above r. Class c owns w_c of the W integers, none if w_c = 0.
fn class_of(cum: &[u64], r: u64) -> u32 {
    cum.partition_point(|&c| c <= r) as u32
}

/// p_c / q_c with both read from the integers the draw used, so the
/// estimator's expectation is the target up to the f32 rounding of w.
fn importance_weights(target: &[u64], q: &[u64]) -> Vec<f32> {
    let (pt, qt) = (
        target.iter().sum::<u64>() as f64,
        q.iter().sum::<u64>() as f64,
    );
    target
        .iter()
        .zip(q)
        .map(|(&p, &q)| {
            if q == 0 {
                0.0
            } else {
                ((p as f64 / pt) / (q as f64 / qt)) as f32
            }
        })
        .collect()
}

/// Uniform integer in [0, n), n > 0, exactly (Lemire's method on 64 bits).
fn below_u64(r: &mut Philox, n: u64) -> u64 {
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = r.next_u64() as u128 * n as u128;
        if m as u64 >= threshold {
            return (m >> 64) as u64;
        }
    }
}

#[cfg(test)]
mod tests;
