//! Ensemble softmax + top-k (kernels/topk.cu): from the members' logits to
//! the top-k of mean(softmax(logits / T)), largest first, ties to the lower
//! class id, for any k up to the class count (beyond `MAX_K` a second
//! launch ranks the probabilities: correct, not fast). The CPU twin below is
//! the specification and computes the same bits: our own `exp`, no fused multiply-adds beyond the explicit ones, and
//! the kernel's reduction order (256 strided partial sums, then a tree).

use crate::cuda::kernels::topk::{ENSEMBLE_TOPK_F32, MAX_K, THREADS, TOPK_RANK_F32};
use crate::cuda::{CudaError, DevBuf, LaunchShape, Result, Stream};

/// Launches the kernel: `logits` [members][rows][classes], `probs` a
/// workspace of rows*classes, outputs [rows][k].
#[allow(clippy::too_many_arguments)]
pub fn ensemble_topk(
    stream: &Stream,
    logits: &DevBuf<f32>,
    members: usize,
    rows: usize,
    classes: usize,
    temperature: f32,
    k: usize,
    probs: &mut DevBuf<f32>,
    out_vals: &mut DevBuf<f32>,
    out_ids: &mut DevBuf<u32>,
) -> Result<()> {
    let bad = |d: String| Err(CudaError::Invalid(format!("ensemble_topk: {d}")));
    if members == 0 || rows == 0 || classes == 0 {
        return bad(format!("{members} members, {rows} rows, {classes} classes"));
    }
    if k == 0 || k > classes {
        return bad(format!("k = {k}: must be 1 to classes = {classes}"));
    }
    if temperature.is_nan() || temperature <= 0.0 {
        return bad(format!("temperature {temperature} must be positive"));
    }
    let (need, work, out) = (members * rows * classes, rows * classes, rows * k);
    if logits.len() < need || probs.len() < work || out_vals.len() < out || out_ids.len() < out {
        return bad("a buffer is smaller than the shapes need".into());
    }
    let to_u32 = |v: usize| {
        u32::try_from(v).map_err(|_| CudaError::Invalid(format!("ensemble_topk: {v} too large")))
    };
    let shape = LaunchShape {
        grid: (to_u32(rows)?, 1, 1),
        block: (THREADS, 1, 1),
        shared_bytes: 0,
    };
    let large = k > MAX_K;
    stream.launch(
        &ENSEMBLE_TOPK_F32,
        shape,
        (
            logits,
            to_u32(members)?,
            to_u32(rows)?,
            to_u32(classes)?,
            1.0f32 / temperature,
            if large { 0 } else { to_u32(k)? },
            &mut *probs,
            &mut *out_vals,
            &mut *out_ids,
        ),
    )?;
    if !large {
        return Ok(());
    }
    let shape = LaunchShape {
        grid: (
            to_u32(classes.div_ceil(THREADS as usize))?,
            to_u32(rows)?,
            1,
        ),
        block: (THREADS, 1, 1),
        shared_bytes: 0,
    };
    stream.launch(
        &TOPK_RANK_F32,
        shape,
        (&*probs, to_u32(classes)?, to_u32(k)?, out_vals, out_ids),
    )
}

/// CPU twins: the specification of the kernel, bit for bit.
pub mod cpu {
    use super::THREADS;

    /// `dr_exp`'s constants, exactly the .cu's literals (a test reads them
    /// from the source): below `-EXP_UNDERFLOW` the result is 0; ln 2 split
    /// high/low for the range reduction; the degree-6 polynomial, highest
    /// coefficient first (1.38888889e-3f, 8.33333333e-3f, 4.16666667e-2f,
    /// 1.66666667e-1f as bits: the same floats, not merely close).
    pub const EXP_UNDERFLOW: f32 = 87.33654;
    pub const LN2_HI: f32 = 0.693_145_75;
    pub const LN2_LO: f32 = 1.428_606_8e-6;
    pub const EXP_POLY: [f32; 7] = [
        f32::from_bits(0x3ab6_0b61),
        f32::from_bits(0x3c08_8889),
        f32::from_bits(0x3d2a_aaab),
        f32::from_bits(0x3e2a_aaab),
        0.5,
        1.0,
        1.0,
    ];

    /// exp(x) for x <= 0, as `dr_exp` in kernels/topk.cu.
    pub fn dr_exp(x: f32) -> f32 {
        if x < -EXP_UNDERFLOW {
            return 0.0;
        }
        let n = (x * std::f32::consts::LOG2_E).round_ties_even();
        let r = (-n).mul_add(LN2_HI, x);
        let r = (-n).mul_add(LN2_LO, r);
        let mut p = EXP_POLY[0];
        for c in &EXP_POLY[1..] {
            p = p.mul_add(r, *c);
        }
        p * f32::from_bits((((n as i32) + 127) << 23) as u32)
    }

    /// The kernel's reduction: strided partials per thread, then a tree.
    fn block_reduce(vals: impl Fn(usize) -> f32, n: usize, is_max: bool) -> f32 {
        let t = THREADS as usize;
        let mut red: Vec<f32> = (0..t)
            .map(|i| {
                let mut acc = if is_max { f32::NEG_INFINITY } else { 0.0 };
                for c in (i..n).step_by(t) {
                    acc = if is_max {
                        acc.max(vals(c))
                    } else {
                        acc + vals(c)
                    };
                }
                acc
            })
            .collect();
        let mut s = t / 2;
        while s > 0 {
            for i in 0..s {
                red[i] = if is_max {
                    red[i].max(red[i + s])
                } else {
                    red[i] + red[i + s]
                };
            }
            s /= 2;
        }
        red[0]
    }

    /// Mean of the members' softmax(logits / T) for one row, as the kernel
    /// computes it (`logits` holds each member's row).
    pub fn mean_softmax_row(member_rows: &[&[f32]], temperature: f32) -> Vec<f32> {
        let inv_t = 1.0f32 / temperature;
        let classes = member_rows[0].len();
        let mut p = vec![0f32; classes];
        for x in member_rows {
            let mx = block_reduce(|c| x[c] * inv_t, classes, true);
            let s = block_reduce(|c| dr_exp(x[c] * inv_t - mx), classes, false);
            let inv = 1.0f32 / s;
            for (pc, &xc) in p.iter_mut().zip(x.iter()) {
                *pc += dr_exp(xc * inv_t - mx) * inv;
            }
        }
        let m = member_rows.len() as f32;
        p.iter_mut().for_each(|v| *v /= m);
        p
    }

    /// `logits` [members][rows][classes] → (values, ids), each [rows][k].
    pub fn ensemble_topk(
        logits: &[f32],
        members: usize,
        rows: usize,
        classes: usize,
        temperature: f32,
        k: usize,
    ) -> (Vec<f32>, Vec<u32>) {
        let (mut vals, mut ids) = (Vec::with_capacity(rows * k), Vec::with_capacity(rows * k));
        for r in 0..rows {
            let member_rows: Vec<&[f32]> = (0..members)
                .map(|m| &logits[(m * rows + r) * classes..][..classes])
                .collect();
            let p = mean_softmax_row(&member_rows, temperature);
            let mut order: Vec<u32> = (0..classes as u32).collect();
            order.sort_by(|&a, &b| p[b as usize].total_cmp(&p[a as usize]).then(a.cmp(&b)));
            for &c in &order[..k] {
                vals.push(p[c as usize]);
                ids.push(c);
            }
        }
        (vals, ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::testing::gpu_or_skip;
    use crate::rng::Philox;

    fn logits(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut r = Philox::new(seed, 0, 0, 99);
        (0..n).map(|_| (r.uniform_f32() - 0.5) * scale).collect()
    }

    #[test]
    fn dr_exp_is_within_three_ulp_of_exp() {
        let mut worst = 0u32;
        for i in 0..200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let (a, b) = (cpu::dr_exp(x), x.exp());
            worst = worst.max((a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32);
        }
        assert!(worst <= 3, "{worst} ulp");
        assert_eq!(cpu::dr_exp(0.0), 1.0);
        assert_eq!(cpu::dr_exp(-100.0), 0.0);
    }

    /// The twin's constants are the .cu's literals (a one-ulp drift would
    /// break the exact agreement only on a GPU run).
    #[test]
    fn exp_constants_match_the_kernel_source() {
        let src = include_str!("../../../kernels/topk.cu");
        let body = src
            .split("float dr_exp(float x) {")
            .nth(1)
            .and_then(|b| b.split("\n}").next())
            .expect("dr_exp in kernels/topk.cu");
        let lits: Vec<f32> = body
            .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '-'))
            .filter(|w| {
                w.contains('.')
                    && w.chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_digit() || c == '-')
            })
            .map(|w| w.trim_start_matches('-').parse::<f32>().unwrap())
            .collect();
        let mut want = vec![
            cpu::EXP_UNDERFLOW,
            0.0,
            std::f32::consts::LOG2_E,
            cpu::LN2_HI,
            cpu::LN2_LO,
        ];
        want.extend(cpu::EXP_POLY);
        assert_eq!(lits, want, "{body}");
    }

    #[test]
    fn twin_agrees_with_the_f64_ensemble_and_breaks_ties_to_the_lower_id() {
        let (members, rows, classes, k) = (3, 5, 1000, 10);
        let x = logits(members * rows * classes, 1, 20.0);
        let (vals, ids) = cpu::ensemble_topk(&x, members, rows, classes, 1.5, k);
        // Against the CPU pipeline's own softmax (f64 sums): same top-k ids.
        let per: Vec<crate::teacher::tensor::Tensor> = (0..members)
            .map(|m| {
                crate::teacher::tensor::Tensor::f32(
                    vec![rows, classes],
                    x[m * rows * classes..(m + 1) * rows * classes].to_vec(),
                )
            })
            .collect();
        let p = crate::teacher::ensemble::mean_softmax(&per, 1.5).unwrap();
        let (v2, i2) = crate::teacher::infer::topk(&p, k);
        for j in 0..rows * k {
            assert_eq!(ids[j] as i64, i2[j], "row {} rank {}", j / k, j % k);
            assert!(
                (vals[j] - v2[j]).abs() <= 1e-6 * v2[j].max(1e-3),
                "{} vs {}",
                vals[j],
                v2[j]
            );
        }
        // Equal logits: every class ties; the lowest ids win, in order.
        let flat = vec![0.25f32; 2 * 37];
        let (v, i) = cpu::ensemble_topk(&flat, 2, 1, 37, 1.0, 5);
        assert_eq!(i, [0, 1, 2, 3, 4]);
        assert!(v.iter().all(|&p| (p - 1.0 / 37.0).abs() < 1e-7));
    }

    #[test]
    fn kernel_matches_cpu_twin_exactly() {
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(0);
        // Class counts around the block size and ImageNet/ImageNet-21k; k
        // from 1 to the most the kernel keeps; ties from quantised logits.
        let cases = [
            (1, 1, 1, 1, 1.0),
            (1, 3, 255, 5, 1.0),
            (2, 7, 257, 10, 2.0),
            (4, 33, 1000, 10, 1.0),
            (4, 9, 1000, 64, 0.5),
            (1, 4, 21841, 64, 1.0),
            (3, 2, 5000, 1024, 1.0),
            (2, 3, 3000, 1025, 1.0),
            (1, 2, 2100, 2100, 1.0),
        ];
        for (n, &(members, rows, classes, k, t)) in cases.iter().enumerate() {
            let mut x = logits(members * rows * classes, 100 + n as u64, 16.0);
            if n % 2 == 1 {
                x.iter_mut().for_each(|v| *v = (*v * 2.0).round() / 2.0);
            }
            let (want_v, want_i) = cpu::ensemble_topk(&x, members, rows, classes, t, k);
            let dx = s.to_device(&x).unwrap();
            let mut work = gpu.alloc::<f32>(rows * classes).unwrap();
            let mut dv = s.to_device(&vec![f32::NAN; rows * k]).unwrap();
            let mut di = gpu.alloc::<u32>(rows * k).unwrap();
            ensemble_topk(
                &s, &dx, members, rows, classes, t, k, &mut work, &mut dv, &mut di,
            )
            .unwrap();
            let (gv, gi) = (s.to_host(&dv).unwrap(), s.to_host(&di).unwrap());
            assert_eq!(gi, want_i, "ids, case {n} (tolerance: exact)");
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&gv),
                bits(&want_v),
                "values, case {n} (tolerance: exact)"
            );
        }
    }

    #[test]
    fn launcher_refuses_bad_shapes() {
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(0);
        let x = gpu.alloc::<f32>(10).unwrap();
        let mut w = gpu.alloc::<f32>(10).unwrap();
        let mut v = gpu.alloc::<f32>(2000).unwrap();
        let mut i = gpu.alloc::<u32>(2000).unwrap();
        let e = ensemble_topk(&s, &x, 1, 1, 10, 1.0, 11, &mut w, &mut v, &mut i).unwrap_err();
        assert!(e.to_string().contains("k = 11"), "{e}");
        let e = ensemble_topk(&s, &x, 1, 1, 10, 1.0, 0, &mut w, &mut v, &mut i).unwrap_err();
        assert!(e.to_string().contains("k = 0"), "{e}");
    }
}
