//! Pooling on NHWC bf16 (kernels/pool.cu): windowed max / average and
//! global average, for the GPU teacher. The CPU twins run the kernels' loops
//! in the same order and are checked against the CPU executor.

use super::conv::{bf16, f32_of};
use crate::cuda::kernels::pool::{GLOBAL_AVGPOOL_BF16_NHWC, POOL2D_BF16_NHWC, PoolParams, THREADS};
use crate::cuda::{CudaError, DevBuf, LaunchShape, Region, Result, Stream};
use crate::teacher::cpu::conv::pool_shape;
use crate::teacher::graph::{AutoPad, PoolAttrs, PoolKind};

/// `PoolParams` of `attrs` on an NCHW input of shape `x` (pads resolved by
/// shape inference before this).
pub fn pool_params(attrs: &PoolAttrs, x: [usize; 4]) -> std::result::Result<PoolParams, String> {
    if attrs.auto_pad != AutoPad::Explicit {
        return Err("internal: pooling auto_pad reached the GPU unresolved".into());
    }
    let out = pool_shape(attrs, &x)?;
    let v = [
        x[0],
        x[2],
        x[3],
        x[1],
        out[2],
        out[3],
        attrs.kernel[0],
        attrs.kernel[1],
        attrs.strides[0],
        attrs.strides[1],
        attrs.pads[0],
        attrs.pads[1],
        attrs.pads[2],
        attrs.pads[3],
        attrs.dilations[0],
        attrs.dilations[1],
    ];
    if v.iter().any(|&d| d > u32::MAX as usize) || out.iter().product::<usize>() > u32::MAX as usize
    {
        return Err(format!(
            "pooling {x:?} is too large for the GPU kernel: lower the batch size"
        ));
    }
    let [n, h, w, c, oh, ow, kh, kw, sh, sw, ph, pw, pb, pr, dh, dw] = v.map(|d| d as u32);
    Ok(PoolParams {
        n,
        h,
        w,
        c,
        oh,
        ow,
        kh,
        kw,
        sh,
        sw,
        ph,
        pw,
        pb,
        pr,
        dh,
        dw,
        kind: match attrs.kind {
            PoolKind::Max => 0,
            PoolKind::Average {
                count_include_pad: true,
            } => 1,
            PoolKind::Average {
                count_include_pad: false,
            } => 2,
        },
        unused: [0; 3],
    })
}

fn grid(n: usize) -> Result<LaunchShape> {
    LaunchShape::per_item(n, THREADS, "pooling")
}

pub fn pool2d(stream: &Stream, p: &PoolParams, x: &DevBuf<u16>, y: &mut DevBuf<u16>) -> Result<()> {
    let s = stream;
    pool2d_regions(s, p, x.region(s, 0..x.len())?, y.region(s, 0..y.len())?)
}

/// `pool2d` over regions.
pub fn pool2d_regions(
    stream: &Stream,
    p: &PoolParams,
    x: Region<u16>,
    y: Region<u16>,
) -> Result<()> {
    let (xs, ys) = (
        (p.n * p.h * p.w) as usize * p.c as usize,
        (p.n * p.oh * p.ow) as usize * p.c as usize,
    );
    if x.len() < xs || y.len() < ys {
        return Err(CudaError::Invalid(format!(
            "pool2d: regions too small for {p:?}"
        )));
    }
    stream.launch(&POOL2D_BF16_NHWC, grid(ys)?, (x, y, *p))
}

/// [N][H*W][C] → [N][C].
pub fn global_avgpool(
    stream: &Stream,
    x: &DevBuf<u16>,
    y: &mut DevBuf<u16>,
    dims: (usize, usize, usize),
) -> Result<()> {
    let s = stream;
    global_avgpool_regions(s, x.region(s, 0..x.len())?, y.region(s, 0..y.len())?, dims)
}

/// `global_avgpool` over regions.
pub fn global_avgpool_regions(
    stream: &Stream,
    x: Region<u16>,
    y: Region<u16>,
    (n, hw, c): (usize, usize, usize),
) -> Result<()> {
    if x.len() < n * hw * c || y.len() < n * c || hw == 0 {
        return Err(CudaError::Invalid(format!(
            "global_avgpool: regions too small for {n}x{hw}x{c}"
        )));
    }
    let u = |v: usize| {
        u32::try_from(v).map_err(|_| CudaError::Invalid(format!("global_avgpool: {v} too large")))
    };
    stream.launch(
        &GLOBAL_AVGPOOL_BF16_NHWC,
        grid(n * c)?,
        (x, y, u(n)?, u(hw)?, u(c)?),
    )
}

/// CPU twins: the kernels' loops, same order, same roundings.
pub mod cpu {
    use super::*;

    pub fn pool2d(p: &PoolParams, x: &[u16]) -> Vec<u16> {
        let [n, h, w, c, oh, ow, kh, kw, sh, sw, ph, pw, pb, pr, dh, dw] = [
            p.n, p.h, p.w, p.c, p.oh, p.ow, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.pb, p.pr, p.dh,
            p.dw,
        ]
        .map(|v| v as isize);
        let mut y = Vec::with_capacity((n * oh * ow * c) as usize);
        for img in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ch in 0..c {
                        let (mut best, mut sum, mut taps) = (f32::NEG_INFINITY, 0f32, 0u32);
                        for ky in 0..kh {
                            let iy = oy * sh + ky * dh - ph;
                            if iy < 0 || iy >= h {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = ox * sw + kx * dw - pw;
                                if ix < 0 || ix >= w {
                                    continue;
                                }
                                let v = f32_of(x[(((img * h + iy) * w + ix) * c + ch) as usize]);
                                best = best.max(v);
                                sum += v;
                                taps += 1;
                            }
                        }
                        let out = match p.kind {
                            0 => best,
                            kind => {
                                let div = if kind == 1 {
                                    let (y0, x0) = (oy * sh - ph, ox * sw - pw);
                                    ((y0 + kh).min(h + pb) - y0) * ((x0 + kw).min(w + pr) - x0)
                                } else {
                                    taps as isize
                                };
                                sum / div.max(1) as f32
                            }
                        };
                        y.push(bf16(out));
                    }
                }
            }
        }
        y
    }

    pub fn global_avgpool(x: &[u16], (n, hw, c): (usize, usize, usize)) -> Vec<u16> {
        let mut y = Vec::with_capacity(n * c);
        for img in 0..n {
            for ch in 0..c {
                let mut sum = 0f32;
                for j in 0..hw {
                    sum += f32_of(x[(img * hw + j) * c + ch]);
                }
                y.push(bf16(sum / hw as f32));
            }
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::testing::{gpu_or_skip, random_bytes};
    use crate::teacher::tensor::Tensor;

    fn attrs(kind: PoolKind, k: usize, s: usize, pads: [usize; 4], ceil: bool) -> PoolAttrs {
        PoolAttrs {
            kind,
            kernel: [k, k],
            strides: [s, s],
            pads,
            dilations: [1, 1],
            ceil_mode: ceil,
            auto_pad: AutoPad::Explicit,
        }
    }

    fn cases() -> Vec<(PoolAttrs, [usize; 4])> {
        let avg = |count_include_pad| PoolKind::Average { count_include_pad };
        vec![
            (attrs(PoolKind::Max, 3, 2, [1; 4], false), [2, 64, 17, 15]),
            (attrs(PoolKind::Max, 2, 2, [0; 4], true), [1, 8, 7, 9]),
            (attrs(avg(true), 3, 2, [1, 1, 0, 2], true), [2, 16, 9, 8]),
            (attrs(avg(false), 3, 1, [1; 4], false), [1, 24, 6, 7]),
        ]
    }

    /// bf16 NHWC bits and the same values as NCHW f32.
    fn input(xs: [usize; 4], seed: u64) -> (Vec<u16>, Vec<f32>) {
        let [n, c, h, w] = xs;
        let bytes = random_bytes(n * c * h * w * 2, seed);
        let nhwc: Vec<u16> = bytes
            .chunks(2)
            .map(|b| bf16((u16::from_le_bytes([b[0], b[1]]) as f32 - 32768.0) / 4096.0))
            .collect();
        let nchw = (0..nhwc.len())
            .map(|i| {
                let (img, r) = (i / (c * h * w), i % (c * h * w));
                let (ch, px) = (r / (h * w), r % (h * w));
                f32_of(nhwc[(img * h * w + px) * c + ch])
            })
            .collect();
        (nhwc, nchw)
    }

    #[test]
    fn twins_equal_the_cpu_executor() {
        for (i, (a, xs)) in cases().into_iter().enumerate() {
            let (nhwc, nchw) = input(xs, i as u64);
            let p = pool_params(&a, xs).unwrap();
            let got = cpu::pool2d(&p, &nhwc);
            let want =
                crate::teacher::cpu::conv::pool2d(&a, &Tensor::f32(xs.to_vec(), nchw)).unwrap();
            let (c, oh, ow) = (xs[1], p.oh as usize, p.ow as usize);
            let want = want.view().unwrap().data;
            for (j, &g) in got.iter().enumerate() {
                let (img, r) = (j / (oh * ow * c), j % (oh * ow * c));
                let (px, ch) = (r / c, r % c);
                let w = want[(img * c + ch) * oh * ow + px];
                assert_eq!(g, bf16(w), "case {i} output {j}: {} vs {w}", f32_of(g));
            }
        }
        let (nhwc, nchw) = input([3, 40, 7, 7], 9);
        let got = cpu::global_avgpool(&nhwc, (3, 49, 40));
        let want =
            crate::teacher::cpu::conv::global_average_pool(&Tensor::f32(vec![3, 40, 7, 7], nchw))
                .unwrap();
        let want: Vec<u16> = want.view().unwrap().data.iter().map(|&v| bf16(v)).collect();
        let close = got.iter().zip(&want).filter(|(a, b)| a == b).count();
        // The executor sums in its own order: allow a rounding flip, never more.
        assert!(
            close * 100 >= got.len() * 95,
            "{close} of {} equal",
            got.len()
        );
        for (g, w) in got.iter().zip(&want) {
            assert!((f32_of(*g) - f32_of(*w)).abs() <= f32_of(*w).abs() / 128.0 + 1e-6);
        }
    }

    #[test]
    fn kernels_match_cpu_twins() {
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(0);
        let up = |v: &[u16]| s.to_device(v).unwrap();
        for (i, (a, xs)) in cases().into_iter().enumerate() {
            let (nhwc, _) = input(xs, 50 + i as u64);
            let p = pool_params(&a, xs).unwrap();
            let want = cpu::pool2d(&p, &nhwc);
            let dx = up(&nhwc);
            let mut dy = up(&vec![0x7FC1; want.len()]);
            pool2d(&s, &p, &dx, &mut dy).unwrap();
            assert!(
                s.to_host(&dy).unwrap() == want,
                "pool case {i}: kernel vs twin (tolerance: exact)"
            );
        }
        let (nhwc, _) = input([5, 2048, 7, 7], 77);
        let want = cpu::global_avgpool(&nhwc, (5, 49, 2048));
        let dx = up(&nhwc);
        let mut dy = up(&vec![0x7FC1; want.len()]);
        global_avgpool(&s, &dx, &mut dy, (5, 49, 2048)).unwrap();
        assert!(
            s.to_host(&dy).unwrap() == want,
            "global average pool: kernel vs twin (tolerance: exact)"
        );
    }
}
