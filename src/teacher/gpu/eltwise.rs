//! Elementwise steps of the GPU teacher (kernels/eltwise.cu): activations,
//! broadcast binary ops, per-channel affine and channel concatenation on
//! NHWC bf16. Launchers over regions, CPU twins, and the GPU test.

use super::conv::{bf16, f32_of};
use crate::cuda::kernels::eltwise::{
    AFFINE_BF16_NHWC, BF16_TO_F32, BINARY_BF16_NHWC, CONCAT_CHANNELS_BF16, THREADS, UNARY_BF16,
};
use crate::cuda::{CudaError, DevBuf, LaunchShape, Region, Result, Stream};

/// The kernel's unary codes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    Relu,
    Clip(f32, f32),
    Silu,
    HardSwish,
    Sigmoid,
    /// clip(alpha * x + beta, 0, 1)
    HardSigmoid(f32, f32),
    Tanh,
    GeluErf,
    /// GELU's tanh approximation (ONNX Gelu approximate="tanh").
    GeluTanh,
}

impl UnaryOp {
    fn code(self) -> (u32, f32, f32) {
        match self {
            UnaryOp::Relu => (0, 0.0, 0.0),
            UnaryOp::Clip(a, b) => (1, a, b),
            UnaryOp::Silu => (2, 0.0, 0.0),
            UnaryOp::HardSwish => (3, 0.0, 0.0),
            UnaryOp::Sigmoid => (4, 0.0, 0.0),
            UnaryOp::HardSigmoid(a, b) => (5, a, b),
            UnaryOp::Tanh => (6, 0.0, 0.0),
            UnaryOp::GeluErf => (7, 0.0, 0.0),
            UnaryOp::GeluTanh => (8, 0.0, 0.0),
        }
    }

    /// fp32, as the kernel (CUDA's expf/erff/tanhf are within 2 ulp of these).
    pub fn apply(self, v: f32) -> f32 {
        match self {
            UnaryOp::Relu => v.max(0.0),
            UnaryOp::Clip(a, b) => v.max(a).min(b),
            UnaryOp::Silu => v / (1.0 + (-v).exp()),
            UnaryOp::HardSwish => v * (v + 3.0).clamp(0.0, 6.0) / 6.0,
            UnaryOp::Sigmoid => 1.0 / (1.0 + (-v).exp()),
            UnaryOp::HardSigmoid(a, b) => (a * v + b).clamp(0.0, 1.0),
            UnaryOp::Tanh => v.tanh(),
            UnaryOp::GeluErf => {
                0.5 * v
                    * (1.0
                        + crate::teacher::cpu::norm::erf_f32(v * std::f32::consts::FRAC_1_SQRT_2))
            }
            UnaryOp::GeluTanh => {
                0.5 * v * (1.0 + (0.797_884_6 * (v + 0.044_715 * v * v * v)).tanh())
            }
        }
    }
}

/// The binary op and how `b` broadcasts over `a` [rows][c].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broadcast {
    Same,
    /// One value per (image, channel), `hw` rows an image.
    PerImageChannel {
        hw: usize,
    },
    PerChannel,
    Scalar,
}

fn grid(n: usize) -> Result<LaunchShape> {
    LaunchShape::per_item(n, THREADS, "eltwise")
}

fn check(what: &str, ok: bool) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(CudaError::Invalid(format!("{what}: regions too small")))
    }
}

pub fn unary(s: &Stream, op: UnaryOp, x: Region<u16>, y: Region<u16>) -> Result<()> {
    check("unary", y.len() >= x.len())?;
    let (code, a, b) = op.code();
    s.launch(
        &UNARY_BF16,
        grid(x.len())?,
        (x, y, x.len() as u64, code, a, b),
    )
}

/// `y = a op b` over `a`'s [rows][c]; `b` sized for `bc`.
pub fn binary(
    s: &Stream,
    op: BinaryOp,
    bc: Broadcast,
    a: Region<u16>,
    b: Region<u16>,
    y: Region<u16>,
    c: usize,
) -> Result<()> {
    let n = a.len();
    let (mode, hw, need) = match bc {
        Broadcast::Same => (0, 1, n),
        Broadcast::PerImageChannel { hw } => (1, hw, n / hw.max(1)),
        Broadcast::PerChannel => (2, 1, c),
        Broadcast::Scalar => (3, 1, 1),
    };
    check(
        "binary",
        y.len() >= n && b.len() >= need && c > 0 && n.is_multiple_of(c),
    )?;
    let code = match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
    };
    let u = |v: usize| {
        u32::try_from(v).map_err(|_| CudaError::Invalid(format!("binary: {v} too large")))
    };
    s.launch(
        &BINARY_BF16_NHWC,
        grid(n)?,
        (a, b, y, n as u64, code, mode, u(c)?, u(hw)?),
    )
}

pub fn affine(
    s: &Stream,
    x: Region<u16>,
    scale: Region<f32>,
    shift: Region<f32>,
    y: Region<u16>,
    c: usize,
) -> Result<()> {
    check(
        "affine",
        y.len() >= x.len() && scale.len() >= c && shift.len() >= c && c > 0,
    )?;
    s.launch(
        &AFFINE_BF16_NHWC,
        grid(x.len())?,
        (x, scale, shift, y, x.len() as u64, c as u32),
    )
}

/// `x` [rows][c_in] into columns `offset..offset + c_in` of `y` [rows][c_out].
pub fn concat_channels(
    s: &Stream,
    x: Region<u16>,
    y: Region<u16>,
    (c_in, c_out, offset): (usize, usize, usize),
) -> Result<()> {
    let rows = x.len() / c_in.max(1);
    check(
        "concat",
        c_in > 0 && offset + c_in <= c_out && y.len() >= rows * c_out,
    )?;
    s.launch(
        &CONCAT_CHANNELS_BF16,
        grid(x.len())?,
        (x, y, rows as u64, c_in as u32, c_out as u32, offset as u32),
    )
}

/// `x` (bf16) into `y[at..at + x.len()]` as f32 (exact).
pub fn to_f32(s: &Stream, x: Region<u16>, y: &mut DevBuf<f32>, at: usize) -> Result<()> {
    check("bf16_to_f32", at + x.len() <= y.len())?;
    s.launch(
        &BF16_TO_F32,
        grid(x.len())?,
        (x, y, x.len() as u64, at as u64),
    )
}

/// CPU twins.
pub mod cpu {
    use super::*;

    pub fn unary(op: UnaryOp, x: &[u16]) -> Vec<u16> {
        x.iter().map(|&v| bf16(op.apply(f32_of(v)))).collect()
    }

    pub fn binary(op: BinaryOp, bc: Broadcast, a: &[u16], b: &[u16], c: usize) -> Vec<u16> {
        (0..a.len())
            .map(|i| {
                let j = match bc {
                    Broadcast::Same => i,
                    Broadcast::PerImageChannel { hw } => (i / (hw * c)) * c + i % c,
                    Broadcast::PerChannel => i % c,
                    Broadcast::Scalar => 0,
                };
                let (u, v) = (f32_of(a[i]), f32_of(b[j]));
                bf16(match op {
                    BinaryOp::Add => u + v,
                    BinaryOp::Sub => u - v,
                    BinaryOp::Mul => u * v,
                    BinaryOp::Div => u / v,
                })
            })
            .collect()
    }

    pub fn affine(x: &[u16], scale: &[f32], shift: &[f32], c: usize) -> Vec<u16> {
        x.iter()
            .enumerate()
            .map(|(i, &v)| bf16(f32_of(v) * scale[i % c] + shift[i % c]))
            .collect()
    }

    pub fn concat_channels(x: &[u16], y: &mut [u16], (c_in, c_out, offset): (usize, usize, usize)) {
        for (i, &v) in x.iter().enumerate() {
            y[(i / c_in) * c_out + offset + i % c_in] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::testing::{Tol, gpu_or_skip};
    use crate::rng::Philox;

    fn random(n: usize, seed: u64, scale: f32) -> Vec<u16> {
        let mut r = Philox::new(seed, 0, 0, 1);
        (0..n)
            .map(|_| bf16((r.uniform_f32() - 0.5) * 2.0 * scale))
            .collect()
    }

    const UNARY: [UnaryOp; 9] = [
        UnaryOp::Relu,
        UnaryOp::Clip(0.0, 6.0),
        UnaryOp::Silu,
        UnaryOp::HardSwish,
        UnaryOp::Sigmoid,
        UnaryOp::HardSigmoid(0.2, 0.5),
        UnaryOp::Tanh,
        UnaryOp::GeluErf,
        UnaryOp::GeluTanh,
    ];

    #[test]
    fn unary_twins_match_the_cpu_executor_formulas() {
        // The CPU executor's HardSwish is x*clip(x/6 + 1/2, 0, 1): the same
        // function, another rounding; the twins must agree within one bf16 step.
        let x = random(5000, 1, 8.0);
        for op in UNARY {
            let y = cpu::unary(op, &x);
            for (&xi, &yi) in x.iter().zip(&y) {
                let v = f32_of(xi) as f64;
                let want = match op {
                    UnaryOp::Relu => v.max(0.0),
                    UnaryOp::Clip(a, b) => v.clamp(a as f64, b as f64),
                    UnaryOp::Silu => v / (1.0 + (-v).exp()),
                    UnaryOp::HardSwish => v * (v / 6.0 + 0.5).clamp(0.0, 1.0),
                    UnaryOp::Sigmoid => 1.0 / (1.0 + (-v).exp()),
                    UnaryOp::HardSigmoid(a, b) => (a as f64 * v + b as f64).clamp(0.0, 1.0),
                    UnaryOp::Tanh => v.tanh(),
                    UnaryOp::GeluErf => crate::teacher::gpu::conv::cpu::activate(v, 5),
                    UnaryOp::GeluTanh => crate::teacher::gpu::conv::cpu::activate(v, 6),
                };
                let d = (f32_of(yi) as f64 - want).abs();
                assert!(
                    d <= want.abs() / 128.0 + 1e-6,
                    "{op:?}({v}) = {}, want {want}",
                    f32_of(yi)
                );
            }
        }
    }

    #[test]
    fn broadcasts_index_nhwc() {
        // 2 images, 3x1 pixels, 2 channels; per (image, channel) scale.
        let a: Vec<u16> = (1..=12).map(|v| bf16(v as f32)).collect();
        let b: Vec<u16> = [10.0, 20.0, 30.0, 40.0].map(bf16).to_vec();
        let y = cpu::binary(
            BinaryOp::Mul,
            Broadcast::PerImageChannel { hw: 3 },
            &a,
            &b,
            2,
        );
        let y: Vec<f32> = y.into_iter().map(f32_of).collect();
        assert_eq!(
            y,
            [
                10.0, 40.0, 30.0, 80.0, 50.0, 120.0, 210.0, 320.0, 270.0, 400.0, 330.0, 480.0
            ]
        );
        let mut out = vec![0u16; 6];
        cpu::concat_channels(&[1, 2, 3], &mut out, (1, 2, 1));
        assert_eq!(out, [0, 1, 0, 2, 0, 3]);
    }

    #[test]
    fn kernels_match_cpu_twins() {
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(0);
        let up = |v: &[u16]| s.to_device(v).unwrap();
        let (rows, c, hw) = (2 * 7 * 5, 24, 35);
        let x = random(rows * c, 3, 6.0);
        let dx = up(&x);
        let dy = up(&vec![0x7FC1; rows * c]);
        let reg = |d: &crate::cuda::DevBuf<u16>| d.region(&s, 0..d.len()).unwrap();
        let down = |d: &crate::cuda::DevBuf<u16>| s.to_host(d).unwrap();
        let tol = |got: &[u16], want: &[u16], what: String| {
            let g: Vec<f32> = got.iter().map(|&b| f32_of(b)).collect();
            let w: Vec<f32> = want.iter().map(|&b| f32_of(b)).collect();
            Tol::Bf16Accum { k: 0 }
                .check(&g, &w, &[])
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        };
        for op in UNARY {
            unary(&s, op, reg(&dx), reg(&dy)).unwrap();
            tol(&down(&dy), &cpu::unary(op, &x), format!("{op:?}"));
        }
        for (bc, blen) in [
            (Broadcast::Same, rows * c),
            (Broadcast::PerImageChannel { hw }, 2 * c),
            (Broadcast::PerChannel, c),
            (Broadcast::Scalar, 1),
        ] {
            let b = random(blen, 4, 3.0);
            let db = up(&b);
            for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
                binary(&s, op, bc, reg(&dx), reg(&db), reg(&dy), c).unwrap();
                assert!(
                    down(&dy) == cpu::binary(op, bc, &x, &b, c),
                    "{op:?} {bc:?} (exact)"
                );
            }
        }
        let scale: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 * 0.1).collect();
        let shift: Vec<f32> = (0..c).map(|i| i as f32 * -0.05).collect();
        let (dsc, dsh) = (s.to_device(&scale).unwrap(), s.to_device(&shift).unwrap());
        affine(
            &s,
            reg(&dx),
            dsc.region(&s, 0..c).unwrap(),
            dsh.region(&s, 0..c).unwrap(),
            reg(&dy),
            c,
        )
        .unwrap();
        assert!(
            down(&dy) == cpu::affine(&x, &scale, &shift, c),
            "affine (exact)"
        );
        let wide = up(&vec![0u16; rows * (c + 8)]);
        concat_channels(&s, reg(&dx), reg(&wide), (c, c + 8, 8)).unwrap();
        let mut want = vec![0u16; rows * (c + 8)];
        cpu::concat_channels(&x, &mut want, (c, c + 8, 8));
        assert!(down(&wide) == want, "concat (exact)");
        let mut f = gpu.alloc::<f32>(x.len() + 5).unwrap();
        to_f32(&s, reg(&dx), &mut f, 5).unwrap();
        let got = s.to_host(&f).unwrap();
        let want: Vec<f32> = x.iter().map(|&b| f32_of(b)).collect();
        assert!(got[5..] == want[..], "bf16_to_f32 (exact)");
    }
}
