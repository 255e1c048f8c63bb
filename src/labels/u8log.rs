//! `--prob-format u8log`: a probability in one byte, a code of its log.
//!
//! Code q = 0 is the probability 0; q in 1..=255 is
//! `v(q) = 2^(-16 (255 - q) / 254)`, evenly spaced in log p from the floor
//! `v(1) = 2^-16` (1.5e-5) to `v(255) = 1`, each level `r = 2^(16/254)`
//! times the one below. Decoding is this table ([`table`]); dr_reader
//! computes the same 256 f32 values (tested bit for bit).
//!
//! Why geometric levels: the error that matters for a soft label is
//! relative (a KL term weighs log p), and for a fixed number of levels over
//! [p_min, 1] the largest relative error is smallest when every level
//! covers the same ratio, so evenly in log p. 255 levels keep 1 and the
//! floor exact (both round-trip) and leave 0 for "below the floor".
//!
//! The bound. [`encode`] takes the nearest level (ties to the lower): for
//! p between levels a < b = r a it picks a below the arithmetic midpoint
//! m = (a + b) / 2 and b above, so its relative error |v - p| / p is
//! largest at p = m: (m - a) / m = (b - a) / (a + b) = (r - 1) / (r + 1)
//! = tanh(ln r / 2) = tanh(8 ln 2 / 254) = 0.021828 (the f32 rounding of
//! the levels adds under 1e-7). So every p in [2^-16, 1] decodes within
//! [`MAX_REL_ERROR`] = 2.183% of itself. Below the floor the error is
//! absolute: p at or below 2^-17 stores 0, p above it the floor, an error
//! of at most 2^-17 either way (at k = 10, at most 8e-5 of mass a record).
//! f16 keeps 2^-11 = 0.05% (normal values) in twice the bytes.
//!
//! Why 2^-16: at k = 10 of 1000 classes the 10th probability of a
//! confident teacher is about 1e-4 to 1e-3, inside the range; a lower floor
//! costs accuracy everywhere (2^-24, f16's smallest value: 3.3%).
//! Relative to the record's top probability instead would need that
//! probability stored too, and the bound would not change for the range.

use std::sync::OnceLock;

/// log2 of the floor: the smallest nonzero level is 2^-FLOOR_LOG2.
pub const FLOOR_LOG2: u32 = 16;

/// The smallest nonzero probability a code holds, `v(1)` (exact in f32).
pub const FLOOR: f32 = 1.0 / (1u32 << FLOOR_LOG2) as f32;

/// Largest relative error `|decode(encode(p)) - p| / p` for p in
/// [`FLOOR`, 1]: tanh(8 ln 2 / 254) = 0.0218279..., rounded up (module
/// comment for the derivation; `tests` checks it on a dense sweep).
pub const MAX_REL_ERROR: f64 = 0.02183;

/// Level q (1..=255) before rounding to f32: 2^(-16 (255 - q) / 254), in
/// the operation order dr_reader uses (`-16.0 * (255 - q) / 254.0`).
fn level_f64(q: u8) -> f64 {
    (-(FLOOR_LOG2 as f64) * (255 - q as u32) as f64 / 254.0).exp2()
}

/// The 256 decoded values: `table()[q]` is what code q stores (0 for q = 0).
pub fn table() -> &'static [f32; 256] {
    static TABLE: OnceLock<[f32; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0f32; 256];
        for q in 1..=255u8 {
            t[q as usize] = level_f64(q) as f32;
        }
        t
    })
}

/// The probability code q stores.
pub fn decode(q: u8) -> f32 {
    table()[q as usize]
}

/// The code of p: the nearest level, ties to the lower one; 0 for p at or
/// below 0 (and NaN), 255 for p at or above 1.
pub fn encode(p: f32) -> u8 {
    if p.is_nan() || p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return 255;
    }
    let t = table();
    // t[i - 1] <= p < t[i], 1 <= i <= 255 (t[0] = 0 < p < 1 = t[255]).
    let i = t.partition_point(|&v| v <= p);
    // Exact in f64: differences of f32 values in [2^-17, 1].
    let (a, b, x) = (t[i - 1] as f64, t[i] as f64, p as f64);
    if b - x < x - a {
        i as u8
    } else {
        (i - 1) as u8
    }
}

#[cfg(test)]
mod tests;
