//! Convolution (im2col + GEMM per image and group), batch norm and pooling
//! on NCHW float32.

use rayon::prelude::*;

use super::gemm::matmul;
use crate::teacher::graph::{Activation, AutoPad, ConvAttrs, PoolAttrs, PoolKind};
use crate::teacher::tensor::{Tensor, View, numel};

/// Output extent of a window op along one axis (ONNX/PyTorch rule: with
/// ceil_mode the last window must start inside the input or its begin pad).
pub fn out_size(
    input: usize,
    kernel: usize,
    stride: usize,
    pad_begin: usize,
    pad_end: usize,
    dilation: usize,
    ceil: bool,
) -> usize {
    let span = (kernel - 1) * dilation + 1;
    let padded = input + pad_begin + pad_end;
    if padded < span {
        return 0;
    }
    let num = padded - span;
    let mut out = if ceil {
        num.div_ceil(stride)
    } else {
        num / stride
    } + 1;
    if ceil && (out - 1) * stride >= input + pad_begin {
        out -= 1;
    }
    out
}

/// ONNX SAME padding of one axis: (begin, end) for an output of
/// `ceil(input / stride)`; an odd total goes to the end (SameUpper) or the
/// beginning (SameLower).
pub fn same_pad(
    mode: AutoPad,
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> (usize, usize) {
    let out = input.div_ceil(stride.max(1));
    let need =
        (out.saturating_sub(1) * stride + (kernel.max(1) - 1) * dilation + 1).saturating_sub(input);
    match mode {
        AutoPad::SameLower => (need - need / 2, need / 2),
        _ => (need / 2, need - need / 2),
    }
}

/// Explicit pads [top, left, bottom, right] for an `auto_pad` mode and an
/// input of `hw` (the given pads when explicit).
pub fn resolve_pads(
    mode: AutoPad,
    pads: [usize; 4],
    hw: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
) -> [usize; 4] {
    if mode == AutoPad::Explicit {
        return pads;
    }
    let (t, b) = same_pad(mode, hw[0], kernel[0], strides[0], dilations[0]);
    let (l, r) = same_pad(mode, hw[1], kernel[1], strides[1], dilations[1]);
    [t, l, b, r]
}

fn unresolved(auto_pad: AutoPad) -> Result<(), String> {
    match auto_pad {
        AutoPad::Explicit => Ok(()),
        other => Err(format!(
            "internal: auto_pad {other:?} reached the executor unresolved"
        )),
    }
}

fn conv_out(c: &ConvAttrs, h: usize, w: usize) -> (usize, usize) {
    (
        out_size(
            h,
            c.kernel[0],
            c.strides[0],
            c.pads[0],
            c.pads[2],
            c.dilations[0],
            false,
        ),
        out_size(
            w,
            c.kernel[1],
            c.strides[1],
            c.pads[1],
            c.pads[3],
            c.dilations[1],
            false,
        ),
    )
}

/// Output shape of a convolution, or why the shapes do not fit.
pub fn conv_shape(c: &ConvAttrs, x: &[usize], w: &[usize]) -> Result<Vec<usize>, String> {
    if x.len() != 4 || w.len() != 4 {
        return Err(format!(
            "Conv on input {x:?} with weight {w:?}: only 2-D NCHW convolution is supported"
        ));
    }
    if x[1] != w[1] * c.group || !w[0].is_multiple_of(c.group) {
        return Err(format!(
            "Conv: input channels {} do not match weight {w:?} with {} groups",
            x[1], c.group
        ));
    }
    unresolved(c.auto_pad)?;
    if [w[2], w[3]] != c.kernel {
        return Err(format!(
            "Conv: kernel_shape {:?} but weight {w:?}",
            c.kernel
        ));
    }
    let (oh, ow) = conv_out(c, x[2], x[3]);
    Ok(vec![x[0], w[0], oh, ow])
}

/// `act(conv(x, w) + bias + residual)`.
pub fn conv2d(
    c: &ConvAttrs,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
) -> Result<Tensor, String> {
    let shape = conv_shape(c, &x.shape, &w.shape)?;
    if residual.is_some_and(|r| r.shape != shape) {
        return Err(format!(
            "residual {:?} does not match conv output {shape:?}",
            residual.unwrap().shape
        ));
    }
    fn float<'a>(t: &'a Tensor, what: &str) -> Result<View<'a>, String> {
        t.view().ok_or(format!("{what} is not float"))
    }
    let bs = bias.map(|b| float(b, "Conv bias")).transpose()?;
    let rs = residual.map(|r| float(r, "residual")).transpose()?;
    let mut out = vec![0f32; numel(&shape)];
    conv2d_into(
        c,
        float(x, "Conv input")?,
        float(w, "Conv weight")?,
        bs.map(|b| b.data),
        rs.map(|r| r.data),
        &mut out,
    )?;
    Ok(Tensor::f32(shape, out))
}

/// `conv2d` writing into `out` (every element is written).
pub fn conv2d_into(
    c: &ConvAttrs,
    x: View,
    w: View,
    bs: Option<&[f32]>,
    rs: Option<&[f32]>,
    out: &mut [f32],
) -> Result<(), String> {
    let shape = conv_shape(c, x.shape, w.shape)?;
    let (n, cin, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (m, oh, ow) = (shape[1], shape[2], shape[3]);
    let (g, cg, mg) = (c.group, cin / c.group, m / c.group);
    let (kh, kw) = (c.kernel[0], c.kernel[1]);
    let kdim = cg * kh * kw;
    let (xs, ws) = (x.data, w.data);
    if bs.is_some_and(|b| b.len() != m) {
        return Err(format!(
            "Conv bias has {} values for {m} channels",
            bs.unwrap().len()
        ));
    }
    let plane = oh * ow;
    if out.len() != n * m * plane || rs.is_some_and(|r| r.len() != out.len()) {
        return Err(format!("Conv output or residual is not {shape:?}"));
    }
    let pointwise = kh == 1 && kw == 1 && c.strides == [1, 1] && c.pads == [0; 4];
    out.par_chunks_mut((mg * plane).max(1))
        .enumerate()
        .for_each(|(idx, dst)| {
            let (b, gi) = (idx / g, idx % g);
            let xg = &xs[(b * cin + gi * cg) * h * wd..(b * cin + (gi + 1) * cg) * h * wd];
            let wg = &ws[gi * mg * kdim..(gi + 1) * mg * kdim];
            if pointwise {
                matmul(mg, plane, kdim, wg, false, xg, false, dst, false);
            } else {
                COLS.with(|cols| {
                    let mut col = cols.borrow_mut();
                    im2col(xg, cg, h, wd, c, oh, ow, &mut col);
                    matmul(mg, plane, kdim, wg, false, &col, false, dst, false);
                });
            }
            for (mi, row) in dst.chunks_mut(plane).enumerate() {
                let ch = gi * mg + mi;
                let bias = bs.map_or(0.0, |b| b[ch]);
                let res = rs.map(|r| &r[(b * m + ch) * plane..(b * m + ch + 1) * plane]);
                for (j, v) in row.iter_mut().enumerate() {
                    let mut y = *v + bias;
                    if let Some(r) = res {
                        y += r[j];
                    }
                    if c.act == Activation::Relu {
                        y = y.max(0.0);
                    }
                    *v = y;
                }
            }
        });
    Ok(())
}

thread_local! {
    /// im2col scratch, reused across convolutions on this thread.
    static COLS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Unfolds one image's `cg` channels into `col` as [cg·kh·kw, oh·ow]
/// (zeros where the window reads padding).
#[allow(clippy::too_many_arguments)]
fn im2col(
    x: &[f32],
    cg: usize,
    h: usize,
    w: usize,
    c: &ConvAttrs,
    oh: usize,
    ow: usize,
    col: &mut Vec<f32>,
) {
    let (kh, kw) = (c.kernel[0], c.kernel[1]);
    col.clear();
    col.resize(cg * kh * kw * oh * ow, 0.0);
    let unit = c.strides[1] == 1;
    for ci in 0..cg {
        let src = &x[ci * h * w..(ci + 1) * h * w];
        for ky in 0..kh {
            for kx in 0..kw {
                let row = ((ci * kh + ky) * kw + kx) * oh * ow;
                let x0 = (kx * c.dilations[1]) as isize - c.pads[1] as isize;
                for oy in 0..oh {
                    let iy =
                        (oy * c.strides[0] + ky * c.dilations[0]) as isize - c.pads[0] as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let srow = &src[iy as usize * w..(iy as usize + 1) * w];
                    let drow = &mut col[row + oy * ow..row + (oy + 1) * ow];
                    if unit {
                        // Output columns whose input column x0 + ox is inside.
                        let lo = (-x0).max(0) as usize;
                        let hi = ((w as isize - x0).max(0) as usize).min(ow);
                        if lo < hi {
                            let s0 = (x0 + lo as isize) as usize;
                            drow[lo..hi].copy_from_slice(&srow[s0..s0 + (hi - lo)]);
                        }
                    } else {
                        for (ox, d) in drow.iter_mut().enumerate() {
                            let ix = x0 + (ox * c.strides[1]) as isize;
                            if ix >= 0 && ix < w as isize {
                                *d = srow[ix as usize];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Inference batch norm: `(x - mean) / sqrt(var + eps) * scale + bias` per channel.
pub fn batch_norm(
    x: &Tensor,
    scale: &[f32],
    bias: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> Result<Tensor, String> {
    let xs = x.as_f32().ok_or("BatchNorm input is not float")?;
    let c = *x
        .shape
        .get(1)
        .ok_or("BatchNorm input has no channel axis")?;
    if [scale.len(), bias.len(), mean.len(), var.len()] != [c; 4] {
        return Err(format!("BatchNorm parameters do not have {c} channels"));
    }
    let inner: usize = x.shape[2..].iter().product();
    let mut out = xs.to_vec();
    for (i, chunk) in out.chunks_mut(inner.max(1)).enumerate() {
        let ch = i % c;
        let k = scale[ch] / (var[ch] + eps).sqrt();
        let b = bias[ch] - mean[ch] * k;
        chunk.iter_mut().for_each(|v| *v = *v * k + b);
    }
    Ok(Tensor::f32(x.shape.clone(), out))
}

pub fn pool_shape(p: &PoolAttrs, x: &[usize]) -> Result<Vec<usize>, String> {
    if x.len() != 4 {
        return Err(format!(
            "pooling on input {x:?}: only 2-D NCHW pooling is supported"
        ));
    }
    unresolved(p.auto_pad)?;
    Ok(vec![
        x[0],
        x[1],
        out_size(
            x[2],
            p.kernel[0],
            p.strides[0],
            p.pads[0],
            p.pads[2],
            p.dilations[0],
            p.ceil_mode,
        ),
        out_size(
            x[3],
            p.kernel[1],
            p.strides[1],
            p.pads[1],
            p.pads[3],
            p.dilations[1],
            p.ceil_mode,
        ),
    ])
}

/// Max or average pooling (PyTorch's divisor rules for average).
pub fn pool2d(p: &PoolAttrs, x: &Tensor) -> Result<Tensor, String> {
    let shape = pool_shape(p, &x.shape)?;
    let mut out = vec![0f32; numel(&shape)];
    pool2d_into(p, x.view().ok_or("pooling input is not float")?, &mut out)?;
    Ok(Tensor::f32(shape, out))
}

/// `pool2d` writing into `out`.
pub fn pool2d_into(p: &PoolAttrs, x: View, out: &mut [f32]) -> Result<(), String> {
    let shape = pool_shape(p, x.shape)?;
    let (h, w) = (x.shape[2], x.shape[3]);
    let (oh, ow) = (shape[2], shape[3]);
    let xs = x.data;
    if out.len() != numel(&shape) {
        return Err(format!("pooling output is not {shape:?}"));
    }
    out.par_chunks_mut((oh * ow).max(1))
        .enumerate()
        .for_each(|(plane, dst)| {
            let src = &xs[plane * h * w..(plane + 1) * h * w];
            for oy in 0..oh {
                for ox in 0..ow {
                    let y0 = (oy * p.strides[0]) as isize - p.pads[0] as isize;
                    let x0 = (ox * p.strides[1]) as isize - p.pads[1] as isize;
                    let (mut acc, mut count) = (
                        if p.kind == PoolKind::Max {
                            f32::NEG_INFINITY
                        } else {
                            0.0
                        },
                        0usize,
                    );
                    for ky in 0..p.kernel[0] {
                        let iy = y0 + (ky * p.dilations[0]) as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..p.kernel[1] {
                            let ix = x0 + (kx * p.dilations[1]) as isize;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            let v = src[iy as usize * w + ix as usize];
                            match p.kind {
                                PoolKind::Max => acc = acc.max(v),
                                PoolKind::Average { .. } => acc += v,
                            }
                            count += 1;
                        }
                    }
                    dst[oy * ow + ox] = match p.kind {
                        PoolKind::Max => acc,
                        PoolKind::Average { count_include_pad } => {
                            let div = if count_include_pad {
                                let ye = (y0 + p.kernel[0] as isize).min((h + p.pads[2]) as isize);
                                let xe = (x0 + p.kernel[1] as isize).min((w + p.pads[3]) as isize);
                                ((ye - y0) * (xe - x0)) as usize
                            } else {
                                count
                            };
                            acc / div.max(1) as f32
                        }
                    };
                }
            }
        });
    Ok(())
}

pub fn global_average_pool(x: &Tensor) -> Result<Tensor, String> {
    let mut shape = x.shape.clone();
    shape.iter_mut().skip(2).for_each(|d| *d = 1);
    let mut out = vec![0f32; numel(&shape)];
    global_average_pool_into(
        x.view().ok_or("GlobalAveragePool input is not float")?,
        &mut out,
    )?;
    Ok(Tensor::f32(shape, out))
}

/// Mean over the spatial axes of each (image, channel), summed in f64.
pub fn global_average_pool_into(x: View, out: &mut [f32]) -> Result<(), String> {
    if x.shape.len() < 3 || out.len() != x.shape[0] * x.shape[1] {
        return Err(format!("GlobalAveragePool on {:?}", x.shape));
    }
    let inner: usize = x.shape[2..].iter().product();
    for (o, c) in out.iter_mut().zip(x.data.chunks(inner.max(1))) {
        *o = (c.iter().map(|&v| v as f64).sum::<f64>() / inner as f64) as f32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ONNX's rule: total = max((ceil(in/s) - 1)·s + (k - 1)·d + 1 - in, 0).
    #[test]
    fn same_padding_follows_the_spec() {
        // in 10, k 3, s 2: out 5, total 1 → upper (0, 1), lower (1, 0).
        assert_eq!(same_pad(AutoPad::SameUpper, 10, 3, 2, 1), (0, 1));
        assert_eq!(same_pad(AutoPad::SameLower, 10, 3, 2, 1), (1, 0));
        // in 5, k 3, s 1, d 2: total 4, split evenly.
        assert_eq!(same_pad(AutoPad::SameUpper, 5, 3, 1, 2), (2, 2));
        // No padding needed: in 5, k 1, s 2.
        assert_eq!(same_pad(AutoPad::SameLower, 5, 1, 2, 1), (0, 0));
        for (inp, k, s, d) in [(10, 3, 2, 1), (7, 4, 3, 1), (9, 3, 1, 2), (1, 5, 2, 1)] {
            let (b, e) = same_pad(AutoPad::SameUpper, inp, k, s, d);
            assert_eq!(
                out_size(inp, k, s, b, e, d, false),
                inp.div_ceil(s),
                "{inp} {k} {s} {d}"
            );
        }
    }
}
