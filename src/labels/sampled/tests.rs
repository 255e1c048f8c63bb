use super::*;
use crate::teacher::infer::topk;
use crate::teacher::tensor::Tensor;

const SEED: u64 = 0x5EED_1AB5;
const CLASSES: usize = 1000;
const K: u16 = 10;
/// Draws per statistical test: N * K = 200k class draws, so the rarest Zipf
/// class (p = 1.3e-4) expects 27 hits and the normal approximation holds.
const N: u32 = 20_000;
/// Chi-square as a z-score ((X² - df) / √(2 df)), as `rng::stats` uses it:
/// above 4.5 the false-alarm rate is far below 1e-4.
const CHI_Z_MAX: f64 = 4.5;
/// Largest per-class |z| over 1000 classes: two-sided 5.7e-7 each, 6e-4 for
/// all 1000 together (Bonferroni).
const CLASS_Z_MAX: f64 = 5.0;

fn key(image: u32, sample: u32) -> DrawKey {
    DrawKey {
        seed: SEED,
        image,
        sample,
    }
}

/// A heavy-tailed teacher: Zipf p_c ∝ 1/(c+1) over 1000 classes. The top 10
/// hold 39% of the mass, the tail of 990 classes 61%.
fn zipf() -> Vec<f32> {
    let h: f64 = (1..=CLASSES).map(|c| 1.0 / c as f64).sum();
    (1..=CLASSES)
        .map(|c| (1.0 / (c as f64 * h)) as f32)
        .collect()
}

/// p as the test's reference, normalised in f64 (the f32 vector sums to 1
/// only up to rounding).
fn reference(p: &[f32]) -> Vec<f64> {
    let s: f64 = p.iter().map(|&v| v as f64).sum();
    p.iter().map(|&v| v as f64 / s).collect()
}

/// Probabilities drawn from a Dirichlet(1/2) with some classes set to 0.
fn random_p(classes: usize, seed: u64) -> Vec<f32> {
    let mut r = Philox::new(seed, classes as u32, 0, 0);
    let mut g: Vec<f64> = (0..classes).map(|_| r.gamma(0.5)).collect();
    for c in (0..classes).step_by(3).skip(1) {
        g[c] = 0.0;
    }
    let s: f64 = g.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    g.iter().map(|&v| (v / s) as f32).collect()
}

/// Mean over `n` draws of the dense estimator, accumulated in f64.
fn mean_estimate(p: &[f32], t: Option<f32>, n: u32) -> (Vec<f64>, Vec<u64>) {
    let (mut mean, mut hits) = (vec![0f64; p.len()], vec![0u64; p.len()]);
    for s in 0..n {
        let d = draw(p, K, t, key(7, s)).unwrap();
        for (c, v) in d.dense(p.len()).iter().enumerate() {
            mean[c] += *v as f64 / n as f64;
        }
        for (&id, &c) in d.ids.iter().zip(&d.counts) {
            hits[id as usize] += c as u64;
        }
    }
    (mean, hits)
}

/// Pearson's X² of `mean` against `p` for `m` class draws, as a z-score
/// (df = C - 1). For the sampled estimator without a proposal, m * mean is
/// exactly the multinomial count vector, so this is the classical test.
fn pearson_z(mean: &[f64], p: &[f64], m: f64) -> f64 {
    let x2: f64 = mean
        .iter()
        .zip(p)
        .map(|(&o, &e)| m * (o - e).powi(2) / e)
        .sum();
    let df = (p.len() - 1) as f64;
    (x2 - df) / (2.0 * df).sqrt()
}

/// Largest |z| of mean_c - p_c, each over its standard error.
fn max_class_z(mean: &[f64], p: &[f64], se: &[f64]) -> (f64, usize) {
    (0..p.len())
        .map(|c| ((mean[c] - p[c]).abs() / se[c], c))
        .fold((0.0, 0), |a, b| if b.0 > a.0 { b } else { a })
}

/// The sampled estimator's standard error at class c over n draws of k:
/// Var(count_c / k) = p_c (1 - p_c) / k.
fn sampled_se(p: &[f64], n: u32) -> Vec<f64> {
    let m = n as f64 * K as f64;
    p.iter().map(|&v| (v * (1.0 - v) / m).sqrt()).collect()
}

#[test]
fn a_draw_is_a_pure_function_of_its_counter_and_p() {
    let p = zipf();
    for t in [None, Some(2.0), Some(3.0)] {
        let a = draw(&p, K, t, key(3, 5)).unwrap();
        assert_eq!(a, draw(&p, K, t, key(3, 5)).unwrap(), "t = {t:?}");
        for other in [
            key(3, 6),
            key(4, 5),
            DrawKey {
                seed: 1,
                ..key(3, 5)
            },
        ] {
            assert_ne!(a, draw(&p, K, t, other).unwrap(), "{other:?}, t = {t:?}");
        }
    }
    // Over 1000 samples of one image, almost every multiset is new: a draw
    // that ignored the sample index would give one.
    let mut seen: Vec<_> = (0..1000)
        .map(|s| draw(&p, K, None, key(0, s)).unwrap())
        .map(|d| (d.ids, d.counts))
        .collect();
    seen.sort();
    seen.dedup();
    assert!(seen.len() > 990, "{} distinct draws of 1000", seen.len());
}

#[test]
fn counts_sum_to_k_and_ids_are_distinct_ascending_and_drawable() {
    for classes in [1usize, 2, 7, 100, 1000] {
        let p = random_p(classes, 11);
        for k in [1u16, 3, 10, 255, 1000] {
            for t in [None, Some(1.0), Some(2.0), Some(3.0)] {
                let d = draw(&p, k, t, key(classes as u32, k as u32)).unwrap();
                let ctx = format!("C = {classes}, k = {k}, t = {t:?}: {d:?}");
                assert_eq!(d.k(), k as u32, "{ctx}");
                assert!(d.counts.iter().all(|&c| c > 0), "{ctx}");
                assert!(d.ids.windows(2).all(|w| w[0] < w[1]), "{ctx}");
                assert!(
                    d.ids.iter().all(|&c| p[c as usize] > 0.0),
                    "a class of probability 0 was drawn: {ctx}"
                );
                assert_eq!(d.ids.len(), d.counts.len(), "{ctx}");
                match (&d.weights, t) {
                    (None, None) => {}
                    (Some(w), Some(_)) => {
                        assert_eq!(w.len(), d.ids.len(), "{ctx}");
                        assert!(w.iter().all(|w| w.is_finite() && *w > 0.0), "{ctx}");
                    }
                    _ => panic!("weights exactly when a proposal is used: {ctx}"),
                }
                let dense = d.dense(classes);
                let s: f64 = dense.iter().map(|&v| v as f64).sum();
                if t.is_none() {
                    assert!((s - 1.0).abs() < 1e-6, "dense sums to {s}: {ctx}");
                }
            }
        }
    }
}

#[test]
fn t_one_draws_as_no_proposal_with_unit_weights() {
    let p = random_p(100, 5);
    for s in 0..50 {
        let plain = draw(&p, K, None, key(1, s)).unwrap();
        let one = draw(&p, K, Some(1.0), key(1, s)).unwrap();
        assert_eq!((&plain.ids, &plain.counts), (&one.ids, &one.counts));
        let w = one.weights.unwrap();
        assert!(w.iter().all(|&w| (w - 1.0).abs() < 1e-6), "{w:?}");
    }
}

#[test]
fn bad_inputs_are_refused_with_the_reason() {
    let k = key(0, 0);
    assert_eq!(draw(&[], 1, None, k), Err(LabelError::NoClasses));
    let bad = draw(&[0.5, f32::NAN], 1, None, k).unwrap_err();
    assert!(matches!(bad, LabelError::NotAProbability { class: 1, .. }));
    assert_eq!(
        draw(&[0.5, -0.1], 1, None, k),
        Err(LabelError::NotAProbability {
            class: 1,
            value: -0.1
        })
    );
    assert_eq!(draw(&[0.0, 0.0], 1, None, k), Err(LabelError::NoMass));
    assert_eq!(draw(&[1.0], 0, None, k), Err(LabelError::ZeroK));
    for t in [0.5, f32::NAN, f32::INFINITY] {
        let e = draw(&[1.0], 1, Some(t), k).unwrap_err();
        assert!(matches!(e, LabelError::Temperature(_)), "t = {t}: {e}");
    }
}

#[test]
fn sampled_mean_is_p_and_topk_is_not() {
    let p = zipf();
    let pr = reference(&p);
    let m = N as f64 * K as f64;
    let se = sampled_se(&pr, N);
    let (mean, hits) = mean_estimate(&p, None, N);
    // The estimator's mean is the hit frequency (count / k averaged), up to
    // the f32 rounding of each count / k.
    let freq: Vec<f64> = hits.iter().map(|&h| h as f64 / m).collect();
    assert!(
        mean.iter()
            .zip(&freq)
            .all(|(a, b)| (a - b).abs() <= 1e-7 * b)
    );
    let chi = pearson_z(&mean, &pr, m);
    let (zc, at) = max_class_z(&mean, &pr, &se);
    println!(
        "sampled k={K}, {N} draws: chi-square z = {chi:.2}, max class |z| = {zc:.2} (class {at})"
    );
    assert!(chi < CHI_Z_MAX, "sampled: chi-square z = {chi}");
    assert!(zc < CLASS_Z_MAX, "sampled: class {at} |z| = {zc}");

    // Today's records: the top-k probabilities and ids of the same p, made
    // dense as renormalised top-k and as the reader's "smooth" spread.
    let (vals, ids) = topk(&Tensor::f32(vec![1, CLASSES], p.clone()), K as usize);
    let kept: f64 = vals.iter().map(|&v| v as f64).sum();
    let mut renorm = vec![0f64; CLASSES];
    let mut smooth = vec![(1.0 - kept) / (CLASSES - K as usize) as f64; CLASSES];
    for (&v, &c) in vals.iter().zip(&ids) {
        renorm[c as usize] = v as f64 / kept;
        smooth[c as usize] = v as f64;
    }
    for (name, target) in [("renormalised", &renorm), ("smooth", &smooth)] {
        let chi = pearson_z(target, &pr, m);
        let (zc, at) = max_class_z(target, &pr, &se);
        println!("top-{K} {name}: chi-square z = {chi:.3e}, max class |z| = {zc:.1} (class {at})");
        assert!(chi > CHI_Z_MAX, "top-k {name} passed: chi-square z = {chi}");
        assert!(zc > CLASS_Z_MAX, "top-k {name} passed: |z| = {zc}");
    }
}

#[test]
fn proposal_draws_follow_q_and_its_weighted_mean_is_p() {
    let p = zipf();
    let pr = reference(&p);
    let m = N as f64 * K as f64;
    for t in [2.0f32, 3.0] {
        let q = reference(&p.iter().map(|&v| v.powf(1.0 / t)).collect::<Vec<_>>());
        let (mean, hits) = mean_estimate(&p, Some(t), N);
        // The classes come from q, not p: the flattening happened.
        let freq: Vec<f64> = hits.iter().map(|&h| h as f64 / m).collect();
        let chi_q = pearson_z(&freq, &q, m);
        let chi_p = pearson_z(&freq, &pr, m);
        // Var(count_c w_c / k) = w_c² q_c (1 - q_c) / k with w_c = p_c / q_c.
        let se: Vec<f64> = (0..CLASSES)
            .map(|c| (pr[c] * pr[c] * (1.0 - q[c]) / (q[c] * m)).sqrt())
            .collect();
        let (zc, at) = max_class_z(&mean, &pr, &se);
        let zs: Vec<f64> = (0..CLASSES).map(|c| (mean[c] - pr[c]) / se[c]).collect();
        let sum_z2 = zs.iter().map(|z| z * z).sum::<f64>();
        let chi = (sum_z2 - CLASSES as f64) / (2.0 * CLASSES as f64).sqrt();
        println!(
            "proposal t={t}: hits vs q chi z = {chi_q:.2} (vs p: {chi_p:.3e}); mean vs p: sum z² as z = {chi:.2}, max class |z| = {zc:.2} (class {at})"
        );
        assert!(chi_q < CHI_Z_MAX, "t = {t}: hits do not follow q: {chi_q}");
        assert!(chi_p > CHI_Z_MAX, "t = {t}: hits follow p, not q: {chi_p}");
        assert!(chi < CHI_Z_MAX, "t = {t}: weighted mean vs p: {chi}");
        assert!(zc < CLASS_Z_MAX, "t = {t}: class {at} |z| = {zc}");
    }
}

#[test]
fn each_class_owns_exactly_its_weight_of_the_integers() {
    // With r uniform on [0, W) this makes P(c) = w_c / W exactly, a bias no
    // sampling test could see (one unit in 2^54).
    let mut r = Philox::new(SEED, 0, 0, 1);
    for len in [1usize, 2, 5, 40] {
        let w: Vec<u64> = (0..len)
            .map(|i| if i % 3 == 1 { 0 } else { r.below(9) as u64 })
            .collect();
        let cum = cumulative(&w);
        let total = *cum.last().unwrap();
        let mut owned = vec![0u64; len];
        for x in 0..total {
            owned[class_of(&cum, x) as usize] += 1;
        }
        assert_eq!(owned, w, "cumulative {cum:?}");
    }
}

#[test]
fn below_u64_is_uniform_and_in_range() {
    use crate::rng::stats::chi_square_z;
    let mut r = Philox::new(SEED, 0, 0, 2);
    for n in [1u64, 3, 7, 224, (1 << 40) + 3, u64::MAX / 3 * 2] {
        // 16 equal bins of [0, n) (n itself for small n).
        let bins = n.min(16);
        let mut counts = vec![0u64; bins as usize];
        for _ in 0..20_000 {
            let x = below_u64(&mut r, n);
            assert!(x < n, "{x} >= {n}");
            counts[(x as u128 * bins as u128 / n as u128) as usize] += 1;
        }
        if bins > 1 {
            let e = vec![20_000.0 / bins as f64; bins as usize];
            let z = chi_square_z(&counts, &e);
            assert!(z < CHI_Z_MAX, "n = {n}: chi-square z = {z}");
        }
    }
}

#[test]
fn dense_is_count_times_weight_over_k() {
    let d = SampledLabels {
        ids: vec![1, 4],
        counts: vec![3, 1],
        weights: None,
    };
    assert_eq!(d.dense(5), vec![0.0, 0.75, 0.0, 0.0, 0.25]);
    let w = SampledLabels {
        weights: Some(vec![0.5, 2.0]),
        ..d
    };
    assert_eq!(w.dense(5), vec![0.0, 0.375, 0.0, 0.0, 0.5]);
}

#[test]
fn fixed_point_is_exact_for_f32_probabilities_and_cannot_overflow() {
    // Every f32 in [2^(e-S+23), max] is an integer after scaling, so the
    // integers keep p's ratios exactly.
    let p = [0.5f32, 0.25, 0.125, 0.1, 3e-3];
    let w = fixed_point(&p.map(|v| v as f64));
    let s = 64 - 3; // S = min(62, 64 - log2 8) for C = 5; max 0.5 has e = 0
    for (&v, &i) in p.iter().zip(&w) {
        assert_eq!(i as f64, v as f64 * 2f64.powi(s), "{v}");
    }
    // 2^16 classes all at the maximum: the sum still fits.
    let flat = vec![1.0f64; 1 << 16];
    let total = fixed_point(&flat)
        .iter()
        .try_fold(0u64, |a, &b| a.checked_add(b));
    assert!(total.is_some());
}

/// f32 sums of `v` in three orders: sequential, reversed, pairwise (torch's
/// CPU sum is neither sequential nor fixed across versions).
fn f32_sums(v: &[f32]) -> [f32; 3] {
    fn pairwise(v: &[f32]) -> f32 {
        match v.len() {
            0 => 0.0,
            1 => v[0],
            n => pairwise(&v[..n / 2]) + pairwise(&v[n / 2..]),
        }
    }
    [v.iter().sum(), v.iter().rev().sum(), pairwise(v)]
}

#[test]
fn ml_dr_values_are_count_over_k_rounded_down_and_sum_to_at_most_one() {
    let mut rng = Philox::new(SEED, 7, 7, 7);
    let mut exact_powers = 0;
    for k in (1..=64u16).chain([100, 1000, 4096, 10_000]) {
        for _ in 0..50 {
            // k split into a random number of positive counts.
            let mut counts = Vec::new();
            let mut left = k;
            while left > 0 {
                let c = 1 + below_u64(&mut rng, left as u64) as u16;
                counts.push(c);
                left -= c;
            }
            let v = ml_dr_values(&counts);
            let n = counts.len() as f64;
            for (&f, &c) in v.iter().zip(&counts) {
                let exact = c as f64 / k as f64;
                assert!(f as f64 <= exact, "{f} > {c}/{k}");
                assert!(
                    exact - f as f64 <= n * 2f64.powi(-24) + 2f64.powi(-23),
                    "{f} is too far below {c}/{k}"
                );
            }
            for s in f32_sums(&v) {
                assert!(s <= 1.0, "{counts:?} / {k}: f32 sum {s}");
            }
            if k.is_power_of_two() {
                // Exact fractions are written as they are.
                assert!(
                    v.iter()
                        .zip(&counts)
                        .all(|(&f, &c)| f as f64 * k as f64 == c as f64)
                );
                exact_powers += 1;
            }
        }
    }
    assert!(exact_powers > 0);
}
