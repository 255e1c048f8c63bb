//! LayerNorm and softmax over bf16 rows (kernels/norm.cu): fp32
//! statistics in a fixed order, so a row's output depends on its values
//! alone. The CPU twins compute the same functions in f64 and are checked
//! against the CPU executor's `layer_norm` and `softmax`.

use super::conv::{bf16, f32_of};
use crate::cuda::kernels::norm::{
    LAYERNORM_BF16, LAYERNORM_BF16_V8, ROWS, SOFTMAX_BF16, SOFTMAX_BF16_V8,
};
use crate::cuda::{CudaError, LaunchShape, Region, Result, Stream};

/// `y = (x - mean) / sqrt(var + eps) * gamma + beta` over each row of `c`
/// values of `x` [rows][c]; `gamma`, `beta` [c] (beta zeros when the op
/// has none).
pub fn layer_norm(
    s: &Stream,
    x: Region<u16>,
    gamma: Region<f32>,
    beta: Region<f32>,
    y: Region<u16>,
    c: usize,
    eps: f32,
) -> Result<()> {
    let (rows, cc) = rows_of(x, y, c, "layer_norm")?;
    if gamma.len() < c || beta.len() < c {
        return Err(CudaError::Invalid(format!(
            "layer_norm: gamma and beta need {c} values"
        )));
    }
    // The vector kernel reads and writes 16 bytes a chunk: rows of a
    // multiple of 8 values on 16-byte boundaries. Same bits either way.
    let vector = c.is_multiple_of(8) && x.is_aligned(16) && y.is_aligned(16);
    let kernel = if vector {
        &LAYERNORM_BF16_V8
    } else {
        &LAYERNORM_BF16
    };
    let shape = row_warps(rows);
    s.launch(kernel, shape, (x, gamma, beta, y, rows, cc, eps))
}

/// `y = exp(x - max) / sum(exp(x - max))` over each row of `c` values of
/// `x` [rows][c].
pub fn softmax(s: &Stream, x: Region<u16>, y: Region<u16>, c: usize) -> Result<()> {
    let (rows, cc) = rows_of(x, y, c, "softmax")?;
    let vector = c.is_multiple_of(8) && x.is_aligned(16) && y.is_aligned(16);
    let kernel = if vector {
        &SOFTMAX_BF16_V8
    } else {
        &SOFTMAX_BF16
    };
    s.launch(kernel, row_warps(rows), (x, y, rows, cc))
}

/// (rows, c) of `x` [rows][c] and `y` as large, as the kernels take them.
fn rows_of(x: Region<u16>, y: Region<u16>, c: usize, what: &str) -> Result<(u32, u32)> {
    if c == 0 || !x.len().is_multiple_of(c) || y.len() < x.len() {
        return Err(CudaError::Invalid(format!(
            "{what}: {} inputs and {} outputs are not rows of {c}",
            x.len(),
            y.len()
        )));
    }
    let rows = x.len() / c;
    match (u32::try_from(rows), u32::try_from(c)) {
        (Ok(r), Ok(cc)) => Ok((r, cc)),
        _ => Err(CudaError::Invalid(format!(
            "{what}: {rows} rows of {c} do not fit 32 bits"
        ))),
    }
}

/// One warp a row, `ROWS` rows a block.
fn row_warps(rows: u32) -> LaunchShape {
    LaunchShape {
        grid: (rows.div_ceil(ROWS).max(1), 1, 1),
        block: (32 * ROWS, 1, 1),
        shared_bytes: 0,
    }
}

/// CPU twins: statistics in f64.
pub mod cpu {
    use super::*;

    /// `layer_norm` on the host: (y before rounding to bf16, and per output
    /// the sum of |terms| behind it, for `Tol::Bf16Accum { k: c }`).
    pub fn layer_norm(
        x: &[u16],
        gamma: &[f32],
        beta: &[f32],
        c: usize,
        eps: f32,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut y = Vec::with_capacity(x.len());
        let mut mag = Vec::with_capacity(x.len());
        for row in x.chunks(c) {
            let v: Vec<f64> = row.iter().map(|&b| f32_of(b) as f64).collect();
            let mean = v.iter().sum::<f64>() / c as f64;
            let var = v.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / c as f64;
            let inv = 1.0 / (var + eps as f64).sqrt();
            for (k, t) in v.iter().enumerate() {
                let n = (t - mean) * inv;
                y.push((n * gamma[k] as f64 + beta[k] as f64) as f32);
                mag.push((n.abs() * (gamma[k] as f64).abs() + (beta[k] as f64).abs()) as f32);
            }
        }
        (y, mag)
    }

    /// `softmax` on the host: y before rounding (also its own magnitude).
    pub fn softmax(x: &[u16], c: usize) -> Vec<f32> {
        let mut y = Vec::with_capacity(x.len());
        for row in x.chunks(c) {
            let v: Vec<f64> = row.iter().map(|&b| f32_of(b) as f64).collect();
            let m = v.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let s: f64 = v.iter().map(|t| (t - m).exp()).sum();
            y.extend(v.iter().map(|t| ((t - m).exp() / s) as f32));
        }
        y
    }

    /// The twin rounded to bf16, as the kernel stores.
    pub fn layer_norm_bf16(x: &[u16], gamma: &[f32], beta: &[f32], c: usize, eps: f32) -> Vec<u16> {
        layer_norm(x, gamma, beta, c, eps)
            .0
            .into_iter()
            .map(bf16)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::DevBuf;
    use crate::cuda::testing::{Tol, gpu_or_skip};
    use crate::rng::Philox;
    use crate::teacher::tensor::View;

    /// (rows, channels, eps): ViT-B/DeiT-S/Swin/ConvNeXt widths, a width
    /// past 32 chunks (lanes loop), odd widths (the scalar kernel), rows
    /// not a multiple of a block's 4, and a row of one value.
    const CASES: [(usize, usize, f32); 7] = [
        (197, 768, 1e-6),
        (5, 384, 1e-6),
        (49, 96, 1e-5),
        (3, 2056, 1e-5),
        (7, 100, 1e-5),
        (6, 13, 1e-5),
        (2, 1, 1e-5),
    ];

    /// Rows with an offset (a mean far from zero: the two-pass variance
    /// must not cancel), gamma and beta random.
    fn inputs(rows: usize, c: usize, seed: u64) -> (Vec<u16>, Vec<f32>, Vec<f32>) {
        let mut r = Philox::new(seed, 3, 1, 4);
        let mut u = |scale: f32| (r.uniform_f32() - 0.5) * 2.0 * scale;
        let x = (0..rows * c).map(|_| bf16(3.0 + u(2.0))).collect();
        let gamma = (0..c).map(|_| u(1.5)).collect();
        let beta = (0..c).map(|_| u(0.5)).collect();
        (x, gamma, beta)
    }

    #[test]
    fn twin_equals_the_cpu_executor() {
        for (i, &(rows, c, eps)) in CASES.iter().enumerate() {
            let (x, gamma, beta) = inputs(rows, c, i as u64);
            let (got, mag) = cpu::layer_norm(&x, &gamma, &beta, c, eps);
            let xf: Vec<f32> = x.iter().map(|&b| f32_of(b)).collect();
            let mut want = vec![0f32; xf.len()];
            crate::teacher::cpu::norm::layer_norm_into(
                View {
                    data: &xf,
                    shape: &[rows, c],
                },
                &gamma,
                Some(&beta),
                -1,
                eps,
                &mut want,
            )
            .unwrap();
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-6 * (1.0 + mag[k]),
                    "rows {rows} x {c}, value {k}: twin {g}, executor {w}"
                );
            }
        }
    }

    /// Both kernels against the twin, the same bits as each other, over a
    /// poisoned output; a shape that is not rows of C is refused.
    #[test]
    fn kernel_matches_cpu_twin() {
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(0);
        for (i, &(rows, c, eps)) in CASES.iter().enumerate() {
            let (x, gamma, beta) = inputs(rows, c, 10 + i as u64);
            let (want, mag) = cpu::layer_norm(&x, &gamma, &beta, c, eps);
            let dx = s.to_device(&x).unwrap();
            let (dg, db) = (s.to_device(&gamma).unwrap(), s.to_device(&beta).unwrap());
            let r16 = |b: &DevBuf<u16>| b.region(&s, 0..b.len()).unwrap();
            let r32 = |b: &DevBuf<f32>| b.region(&s, 0..b.len()).unwrap();
            let run = |x: Region<u16>| -> Vec<u16> {
                let dy = s.to_device(&vec![0x7FC1u16; x.len()]).unwrap();
                layer_norm(&s, x, r32(&dg), r32(&db), r16(&dy), c, eps).unwrap();
                s.to_host(&dy).unwrap()
            };
            let bits = run(r16(&dx));
            let got: Vec<f32> = bits.iter().map(|&b| f32_of(b)).collect();
            let report = Tol::Bf16Accum { k: c }
                .check(&got, &want, &mag)
                .unwrap_or_else(|e| panic!("{rows} x {c}: {e}"));
            println!("layer_norm {rows} x {c}: {report}");
            // The same rows one element off a 16-byte boundary take the
            // scalar kernel: the same bits.
            if c.is_multiple_of(8) {
                let mut shifted = vec![0u16; 1];
                shifted.extend_from_slice(&x);
                let ds = s.to_device(&shifted).unwrap();
                let off = ds.region(&s, 1..shifted.len()).unwrap();
                assert_eq!(run(off), bits, "{rows} x {c}: scalar vs vector kernel");
            }
        }
        let dx = s.to_device(&[0u16; 10]).unwrap();
        let dg = s.to_device(&[1f32; 4]).unwrap();
        let r = |b: &DevBuf<f32>| b.region(&s, 0..b.len()).unwrap();
        let x = dx.region(&s, 0..10).unwrap();
        let e = layer_norm(&s, x, r(&dg), r(&dg), x, 4, 1e-5).unwrap_err();
        assert!(e.to_string().contains("rows of 4"), "{e}");
    }

    /// Softmax: the twin against the CPU executor's, the kernels against
    /// the twin (attention-like rows of 197 and Swin's 49, odd widths, a
    /// row of one), the vector and scalar kernels the same bits.
    #[test]
    fn softmax_matches_the_executor_and_the_kernel_its_twin() {
        for (i, &(rows, c, _)) in CASES.iter().enumerate() {
            let (x, _, _) = inputs(rows, c, 40 + i as u64);
            let twin = cpu::softmax(&x, c);
            let xf: Vec<f32> = x.iter().map(|&b| f32_of(b)).collect();
            let want = crate::teacher::cpu::norm::softmax(
                &crate::teacher::tensor::Tensor::f32(vec![rows, c], xf),
                -1,
            )
            .unwrap()
            .to_f32_vec();
            for (k, (g, w)) in twin.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * w.abs() + 1e-9,
                    "{rows} x {c}, {k}: {g} vs {w}"
                );
            }
        }
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(0);
        for (i, &(rows, c)) in [(197, 197), (49, 49), (3, 2056), (7, 100), (2, 1), (4, 64)]
            .iter()
            .enumerate()
        {
            let (x, _, _) = inputs(rows, c, 60 + i as u64);
            let want = cpu::softmax(&x, c);
            let run = |at: usize| -> Vec<u16> {
                let mut padded = vec![0u16; at];
                padded.extend_from_slice(&x);
                let dx = s.to_device(&padded).unwrap();
                let dy = s.to_device(&vec![0x7FC1u16; x.len()]).unwrap();
                let xr = dx.region(&s, at..padded.len()).unwrap();
                softmax(&s, xr, dy.region(&s, 0..x.len()).unwrap(), c).unwrap();
                s.to_host(&dy).unwrap()
            };
            let bits = run(0);
            let got: Vec<f32> = bits.iter().map(|&b| f32_of(b)).collect();
            let report = Tol::Bf16Accum { k: c }
                .check(&got, &want, &want)
                .unwrap_or_else(|e| panic!("softmax {rows} x {c}: {e}"));
            println!("softmax {rows} x {c}: {report}");
            assert_eq!(run(1), bits, "{rows} x {c}: scalar vs vector kernel");
        }
    }

    /// A row's output is the same bits whatever rows share its launch.
    #[test]
    fn rows_do_not_depend_on_the_batch() {
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(0);
        let (rows, c) = (37, 768);
        let (x, gamma, beta) = inputs(rows, c, 99);
        let (dg, db) = (s.to_device(&gamma).unwrap(), s.to_device(&beta).unwrap());
        let run = |x: &[u16]| -> Vec<u16> {
            let dx = s.to_device(x).unwrap();
            let dy = s.to_device(&vec![0u16; x.len()]).unwrap();
            let r16 = |b: &DevBuf<u16>| b.region(&s, 0..b.len()).unwrap();
            let r32 = |b: &DevBuf<f32>| b.region(&s, 0..b.len()).unwrap();
            layer_norm(&s, r16(&dx), r32(&dg), r32(&db), r16(&dy), c, 1e-6).unwrap();
            s.to_host(&dy).unwrap()
        };
        let all = run(&x);
        let last = run(&x[(rows - 1) * c..]);
        assert_eq!(last, all[(rows - 1) * c..], "the last row alone");
    }
}
