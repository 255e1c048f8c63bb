//! Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11,
//! "Parallel random numbers: as easy as 1, 2, 3"; the generator of Random123
//! and cuRAND). Every augmentation parameter is a pure function of
//! (seed, image index, sample index, stream, draw), so batch size, device
//! count, shard count and restarts cannot change a byte of the output.
//!
//! Counter words: c0 = image index, c1 = sample index, c2 = stream (which
//! transform, and which side of a pair), c3 = block number within the stream.
//! Key = the 64-bit seed. Each block yields four u32 words, consumed in order.
//!
//! Reference for the known-answer vectors (Random123 `kat_vectors`,
//! `philox4x32 10`), reproducible with numpy-free Python:
//! ```text
//! M = (0xD2511F53, 0xCD9E8D57); W = (0x9E3779B9, 0xBB67AE85)
//! def philox(c, k):
//!     for r in range(10):
//!         if r: k = [(k[0]+W[0]) & 0xffffffff, (k[1]+W[1]) & 0xffffffff]
//!         p0, p1 = M[0]*c[0], M[1]*c[2]
//!         c = [(p1>>32)^c[1]^k[0], p1 & 0xffffffff, (p0>>32)^c[3]^k[1], p0 & 0xffffffff]
//!     return c
//! ```

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// One Philox4x32-10 block.
pub fn philox4x32_10(mut c: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let p0 = M0 as u64 * c[0] as u64;
        let p1 = M1 as u64 * c[2] as u64;
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// A sequential view of one (seed, c0, c1, stream) counter line.
#[derive(Debug, Clone)]
pub struct Philox {
    key: [u32; 2],
    counter: [u32; 4],
    block: [u32; 4],
    used: usize,
}

impl Philox {
    pub fn new(seed: u64, c0: u32, c1: u32, stream: u32) -> Self {
        Philox {
            key: [seed as u32, (seed >> 32) as u32],
            counter: [c0, c1, stream, 0],
            block: [0; 4],
            used: 4,
        }
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.used == 4 {
            self.block = philox4x32_10(self.counter, self.key);
            self.counter[3] = self.counter[3].wrapping_add(1);
            self.used = 0;
        }
        let v = self.block[self.used];
        self.used += 1;
        v
    }

    pub fn next_u64(&mut self) -> u64 {
        let lo = self.next_u32() as u64;
        (self.next_u32() as u64) << 32 | lo
    }

    /// Uniform in [0, 1) with 24 random bits (every float32 step equally likely).
    pub fn uniform_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform float32 in [lo, hi), computed as torch's `uniform_` does:
    /// `lo + u * (hi - lo)` in float32.
    pub fn uniform_range_f32(&mut self, lo: f32, hi: f32) -> f32 {
        let v = self.uniform_f32() * (hi - lo) + lo;
        // Rounding can land on hi; keep the half-open interval.
        if v >= hi && hi > lo {
            lo.max(hi.next_down())
        } else {
            v
        }
    }

    /// Uniform integer in [0, n) without modulo bias (Lemire's method).
    pub fn below(&mut self, n: u32) -> u32 {
        assert!(n > 0, "below(0)");
        loop {
            let m = self.next_u32() as u64 * n as u64;
            let low = m as u32;
            if low >= n || low >= n.wrapping_neg() % n {
                return (m >> 32) as u32;
            }
        }
    }

    /// Uniform integer in [lo, hi] inclusive.
    pub fn range_inclusive(&mut self, lo: i64, hi: i64) -> i64 {
        assert!(hi >= lo && hi - lo < u32::MAX as i64);
        lo + self.below((hi - lo + 1) as u32) as i64
    }

    /// Bernoulli draw shaped as torch's `torch.rand(1) < p`.
    pub fn chance_below(&mut self, p: f64) -> bool {
        (self.uniform_f32() as f64) < p
    }

    /// Bernoulli draw shaped as ml-dr's skip test `torch.rand(1) > p`
    /// (true = apply).
    pub fn chance_at_most(&mut self, p: f64) -> bool {
        (self.uniform_f32() as f64) <= p
    }

    /// Standard normal (Box-Muller, one of the pair).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform_f64(); // (0, 1]
        let u2 = self.uniform_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Gamma(shape, 1): Marsaglia and Tsang (2000); shape < 1 by the
    /// U^(1/shape) boost.
    pub fn gamma(&mut self, shape: f64) -> f64 {
        assert!(shape > 0.0);
        if shape < 1.0 {
            let u = 1.0 - self.uniform_f64();
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = 1.0 - self.uniform_f64();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    /// Beta(a, b) as X/(X+Y) with X ~ Gamma(a), Y ~ Gamma(b).
    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(b);
        if x + y == 0.0 { 0.5 } else { x / (x + y) }
    }
}

/// A seeded permutation of 0..n (Fisher-Yates driven by Philox on its own
/// counter line), a pure function of (seed, n).
pub fn permutation(seed: u64, n: u32, stream: u32) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n).collect();
    let mut rng = Philox::new(seed, u32::MAX, n, stream);
    for i in (1..n as usize).rev() {
        let j = rng.below(i as u32 + 1) as usize;
        p.swap(i, j);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers_random123() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn streams_are_pure_functions_of_their_counter() {
        let a: Vec<u32> = {
            let mut r = Philox::new(7, 3, 5, 2);
            (0..9).map(|_| r.next_u32()).collect()
        };
        let mut r = Philox::new(7, 3, 5, 2);
        let b: Vec<u32> = (0..9).map(|_| r.next_u32()).collect();
        assert_eq!(a, b);
        let mut other = Philox::new(7, 3, 5, 3);
        assert_ne!(a[0], other.next_u32());
        // Block 1 starts at the fifth word.
        assert_eq!(a[4], philox4x32_10([3, 5, 2, 1], [7, 0])[0]);
    }

    #[test]
    fn permutation_is_a_permutation() {
        let p = permutation(42, 1000, 0);
        let mut s = p.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
        assert_eq!(p, permutation(42, 1000, 0));
        assert_ne!(p, permutation(43, 1000, 0));
    }
}

/// Goodness-of-fit helpers for the distribution tests here and in `augment`.
#[cfg(test)]
pub(crate) mod stats {
    /// Kolmogorov-Smirnov statistic D of `samples` against `cdf`.
    pub fn ks(samples: &mut [f64], cdf: impl Fn(f64) -> f64) -> f64 {
        samples.sort_by(f64::total_cmp);
        let n = samples.len() as f64;
        samples.iter().enumerate().fold(0.0f64, |d, (i, &x)| {
            let f = cdf(x);
            d.max((i as f64 + 1.0) / n - f).max(f - i as f64 / n)
        })
    }

    /// KS critical value at significance 0.001.
    pub fn ks_critical(n: usize) -> f64 {
        1.95 / (n as f64).sqrt()
    }

    /// Chi-square statistic as a z-score: (X² − df)/√(2 df). Over 4.5 is a
    /// failure at far below 1e-4 false-alarm rate.
    pub fn chi_square_z(counts: &[u64], expected: &[f64]) -> f64 {
        let x2: f64 = counts
            .iter()
            .zip(expected)
            .map(|(&c, &e)| (c as f64 - e).powi(2) / e)
            .sum();
        let df = (counts.len() - 1) as f64;
        (x2 - df) / (2.0 * df).sqrt()
    }
}

#[cfg(test)]
mod distribution_tests {
    use super::stats::*;
    use super::*;

    const N: usize = 100_000;

    #[test]
    fn below_is_uniform() {
        for n in [2u32, 7, 14, 31, 224] {
            let mut r = Philox::new(1, n, 0, 0);
            let mut counts = vec![0u64; n as usize];
            for _ in 0..N {
                counts[r.below(n) as usize] += 1;
            }
            let z = chi_square_z(&counts, &vec![N as f64 / n as f64; n as usize]);
            assert!(z < 4.5, "below({n}): chi-square z = {z}");
        }
    }

    #[test]
    fn uniforms_pass_ks() {
        let mut r = Philox::new(2, 0, 0, 0);
        let mut s: Vec<f64> = (0..N).map(|_| r.uniform_f32() as f64).collect();
        let d = ks(&mut s, |x| x.clamp(0.0, 1.0));
        assert!(d < ks_critical(N), "uniform_f32 D = {d}");
        let mut s: Vec<f64> = (0..N)
            .map(|_| r.uniform_range_f32(0.08, 1.0) as f64)
            .collect();
        assert!(s.iter().all(|&x| (0.08..1.0).contains(&x)));
        let d = ks(&mut s, |x| ((x - 0.08) / 0.92).clamp(0.0, 1.0));
        assert!(d < ks_critical(N), "uniform_range_f32 D = {d}");
    }

    #[test]
    fn beta_passes_ks() {
        type Cdf = fn(f64) -> f64;
        let cases: [(f64, Cdf); 3] = [
            (1.0, |x| x),
            (2.0, |x| 3.0 * x * x - 2.0 * x * x * x),
            (0.5, |x| 2.0 / std::f64::consts::PI * x.sqrt().asin()),
        ];
        for (a, cdf) in cases {
            let mut r = Philox::new(3, 0, 0, a.to_bits() as u32);
            let mut s: Vec<f64> = (0..N).map(|_| r.beta(a, a)).collect();
            assert!(s.iter().all(|x| (0.0..=1.0).contains(x)));
            let d = ks(&mut s, |x| cdf(x.clamp(0.0, 1.0)));
            assert!(d < ks_critical(N), "Beta({a},{a}) D = {d}");
        }
    }

    #[test]
    fn gamma_and_normal_pass_ks() {
        let mut r = Philox::new(4, 0, 0, 0);
        let mut s: Vec<f64> = (0..N).map(|_| r.gamma(2.0)).collect();
        let d = ks(&mut s, |x| {
            if x <= 0.0 {
                0.0
            } else {
                1.0 - (-x).exp() * (1.0 + x)
            }
        });
        assert!(d < ks_critical(N), "Gamma(2) D = {d}");
        let mut s: Vec<f64> = (0..N).map(|_| r.gamma(1.0)).collect();
        let d = ks(&mut s, |x| if x <= 0.0 { 0.0 } else { 1.0 - (-x).exp() });
        assert!(d < ks_critical(N), "Gamma(1) D = {d}");
    }
}
