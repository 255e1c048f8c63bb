//! CPU twin of the convolution kernels: the same bf16 products summed in
//! f64, then the kernels' fp32 epilogue.

use super::*;

/// The activation of code `act` in f64, as the kernels apply it (in f32):
/// the reference the conv and eltwise twins' tests hold the kernels to.
pub fn activate(v: f64, act: u32) -> f64 {
    match act {
        1 => v.max(0.0),
        2 => v / (1.0 + (-v).exp()),
        3 => v * (v + 3.0).clamp(0.0, 6.0) / 6.0,
        4 => 1.0 / (1.0 + (-v).exp()),
        5 => 0.5 * v * (1.0 + crate::teacher::cpu::elementwise::erf(v / 2f64.sqrt())),
        6 => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())
        }
        _ => v,
    }
}

/// NHWC bf16 `x`, packed `w` → (y before rounding to bf16, and per output
/// the sum of |terms| that bounds the accumulation error).
pub fn conv2d(
    p: &ConvParams,
    x: &[u16],
    w: &[u16],
    bias: &[f32],
    residual: Option<&[u16]>,
) -> (Vec<f32>, Vec<f32>) {
    let [
        n,
        h,
        wd,
        cin,
        oh,
        ow,
        cout,
        _groups,
        cin_g,
        ng,
        kh,
        kw,
        sh,
        sw,
        ph,
        pw,
        dh,
        dw,
    ] = [
        p.n, p.h, p.w, p.cin, p.oh, p.ow, p.cout, p.groups, p.cin_g, p.ng, p.kh, p.kw, p.sh, p.sw,
        p.ph, p.pw, p.dh, p.dw,
    ]
    .map(|v| v as usize);
    let k_pad = p.k_pad as usize;
    let mut y = vec![0f32; n * oh * ow * cout];
    let mut mag = vec![0f32; y.len()];
    for img in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let m = (img * oh + oy) * ow + ox;
                for o in 0..cout {
                    let g = o / ng;
                    let (mut s, mut a) = (bias[o] as f64, (bias[o] as f64).abs());
                    for ky in 0..kh {
                        let iy = (oy * sh + ky * dh) as isize - ph as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = (ox * sw + kx * dw) as isize - pw as isize;
                            if ix < 0 || ix >= wd as isize {
                                continue;
                            }
                            let px = ((img * h + iy as usize) * wd + ix as usize) * cin;
                            for c in 0..cin_g {
                                let xv = f32_of(x[px + g * cin_g + c]) as f64;
                                let k = (ky * kw + kx) * cin_g + c;
                                let t = xv * f32_of(w[o * k_pad + k]) as f64;
                                s += t;
                                a += t.abs();
                            }
                        }
                    }
                    if let Some(r) = residual {
                        let rv = f32_of(r[m * cout + o]) as f64;
                        s += rv;
                        a += rv.abs();
                    }
                    y[m * cout + o] = activate(s, p.act) as f32;
                    mag[m * cout + o] = a as f32;
                }
            }
        }
    }
    (y, mag)
}
