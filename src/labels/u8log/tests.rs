use super::*;

/// The bound from the levels as stored: for each pair of neighbours a < b
/// the worst relative error of nearest rounding, (b - a) / (a + b).
fn bound_from_steps() -> f64 {
    let t = table();
    (1..255)
        .map(|q| {
            let (a, b) = (t[q] as f64, t[q + 1] as f64);
            (b - a) / (a + b)
        })
        .fold(0.0, f64::max)
}

#[test]
fn stated_bound_is_the_steps_bound() {
    let from_steps = bound_from_steps();
    let exact = (8.0 * std::f64::consts::LN_2 / 254.0).tanh();
    println!(
        "u8log: max relative error {from_steps:.7} from the stored steps, tanh(8 ln 2 / 254) = {exact:.7}, stated {MAX_REL_ERROR}"
    );
    assert!(from_steps <= MAX_REL_ERROR, "{from_steps}");
    assert!((from_steps - exact).abs() < 1e-6, "{from_steps} vs {exact}");
    // Stated tightly: rounded up by less than 1e-5.
    assert!(MAX_REL_ERROR - from_steps < 1e-5, "{from_steps}");
}

#[test]
fn every_probability_above_the_floor_decodes_within_the_bound() {
    // A dense sweep of [2^-16, 1]: 2^20 points evenly in log p, plus every
    // level, its f32 neighbours and the f32 neighbours of each midpoint
    // between levels (where nearest rounding is at its worst).
    let t = table();
    let n = 1 << 20;
    let mut ps: Vec<f32> = (0..=n)
        .map(|i| (-(FLOOR_LOG2 as f64) * i as f64 / n as f64).exp2() as f32)
        .collect();
    for q in 1..=255 {
        let v = t[q];
        ps.extend([v, v.next_up(), v.next_down()]);
        if q < 255 {
            let m = ((t[q] as f64 + t[q + 1] as f64) / 2.0) as f32;
            ps.extend([m.next_down(), m, m.next_up()]);
        }
    }
    ps.retain(|&p| (FLOOR..=1.0).contains(&p));
    ps.sort_by(f32::total_cmp);
    let mut worst = (0.0f64, 0.0f32);
    let mut last = 0u8;
    for &p in &ps {
        let q = encode(p);
        let v = decode(q) as f64;
        let err = (v - p as f64).abs() / p as f64;
        assert!(
            err <= MAX_REL_ERROR,
            "p {p:e}: code {q} decodes to {v:e}, relative error {err:.7} > {MAX_REL_ERROR}"
        );
        if err > worst.0 {
            worst = (err, p);
        }
        // Monotone: a larger p never gets a smaller code.
        assert!(q >= last, "p {p:e}: code {q} after {last}");
        last = q;
    }
    println!(
        "u8log: {} probabilities in [2^-16, 1], max relative error {:.7} (at p = {:e})",
        ps.len(),
        worst.0,
        worst.1
    );
    // The bound is reached, so it is the maximum, not only a bound.
    assert!(worst.0 > 0.999 * bound_from_steps(), "{worst:?}");
}

#[test]
fn levels_are_increasing_and_the_ends_round_trip() {
    let t = table();
    assert_eq!(t[0], 0.0);
    assert!(t.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(decode(255), 1.0);
    assert_eq!(decode(1), FLOOR);
    assert_eq!(FLOOR, 2f32.powi(-16));
    assert_eq!(encode(1.0), 255);
    assert_eq!(encode(FLOOR), 1);
    for q in 0..=255u8 {
        assert_eq!(encode(decode(q)), q, "level {q} round-trips");
    }
    // Below the floor: 0 up to half of it (a tie goes to the lower code).
    assert_eq!(encode(FLOOR / 2.0), 0);
    assert_eq!(encode((FLOOR / 2.0).next_up()), 1);
    assert_eq!(encode(1e-9), 0);
    for p in [0.0, -0.0, -1.0, f32::NAN, f32::NEG_INFINITY] {
        assert_eq!(encode(p), 0, "{p}");
    }
    assert_eq!(encode(1.0000001), 255);
    assert_eq!(encode(f32::INFINITY), 255);
}

#[test]
fn the_table_does_not_depend_on_the_last_bit_of_exp2() {
    // dr_reader computes the levels with its own exp2; any result within
    // 2^-44 relative of the true one (far more than 1 ulp of f64) rounds to
    // the same f32, because no level is that close to an f32 rounding
    // boundary (the midpoint between two neighbouring f32 values).
    let mut closest = f64::MAX;
    for q in 1..=254u8 {
        let x = level_f64(q);
        let f = x as f32;
        let mid_up = (f as f64 + f.next_up() as f64) / 2.0;
        let mid_down = (f as f64 + f.next_down() as f64) / 2.0;
        let gap = (mid_up - x).abs().min((x - mid_down).abs()) / x;
        closest = closest.min(gap);
    }
    println!("u8log: closest level to an f32 rounding boundary: {closest:e} relative");
    assert!(closest > 2f64.powi(-44), "{closest:e}");
}
