//! Tensor-core convolution (kernels/conv.cu): NHWC bf16, fp32 accumulation,
//! groups in one launch, `act(conv + bias + residual)` fused. The host turns
//! an IR Conv and its input shape into `ConvParams`, packs the ONNX weight
//! once into the kernel's [groups][Ng][K_pad] bf16 layout (k = (kh, kw, c),
//! matching the NHWC gather), and picks the variant whose output-channel
//! tile fits the group. The CPU twin sums the same bf16 products in f64 and
//! is checked against the CPU executor's f32 convolution.

use crate::cuda::kernels::Kernel;
use crate::cuda::kernels::conv::{
    BK, BM, CONV_BF16_128X8_V8, CONV_BF16_128X16_V8, CONV_BF16_128X32_V8, CONV_BF16_128X64_V1,
    CONV_BF16_128X64_V8, CONV_DEPTHWISE_BF16_NHWC, CONV_TC_128X48_CHUNKS_ANY,
    CONV_TC_128X48_CHUNKS_RELU, CONV_TC_128X64_ANY, CONV_TC_128X64_CHUNKS_ANY, CONV_TC_128X64_NONE,
    CONV_TC_128X64_RELU, CONV_TC_128X64_RELU_RES, CONV_TC_128X128_ANY, CONV_TC_128X128_NONE,
    CONV_TC_128X128_RELU, CONV_TC_128X128_RELU_RES, ConvParams, ConvSig, THREADS,
};
use crate::cuda::kernels::conv_grouped::{
    CHANNELS as GROUPED_CHANNELS, CONV_GROUPED_S1_4X32_ANY, CONV_GROUPED_S1_4X32_RELU,
    CONV_GROUPED_S1_7X16_ANY, CONV_GROUPED_S1_7X16_RELU, CONV_GROUPED_S2_3X16_ANY,
    CONV_GROUPED_S2_3X16_RELU, THREADS as GROUPED_THREADS,
};
use crate::cuda::{CudaError, DevBuf, LaunchShape, Region, Result, Stream};
use crate::teacher::cpu::conv::{conv_shape, resolve_pads};
use crate::teacher::graph::{Activation, ConvAttrs};

/// float32 → bf16 bits, nearest even (NaN stays NaN), as the kernels round.
pub fn bf16(v: f32) -> u16 {
    half::bf16::from_f32(v).to_bits()
}

pub fn f32_of(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// The kernel's activation code.
pub fn act_code(a: Activation) -> u32 {
    match a {
        Activation::None => 0,
        Activation::Relu => 1,
    }
}

/// `ConvParams` of `attrs` on an NCHW input of `x` with an ONNX weight of
/// `w` ([Cout][Cin_g][KH][KW]); pads resolved, sizes checked to fit u32.
pub fn conv_params(
    attrs: &ConvAttrs,
    x: [usize; 4],
    w: [usize; 4],
    has_residual: bool,
) -> std::result::Result<ConvParams, String> {
    let mut c = attrs.clone();
    c.pads = resolve_pads(
        c.auto_pad,
        c.pads,
        [x[2], x[3]],
        c.kernel,
        c.strides,
        c.dilations,
    );
    c.auto_pad = crate::teacher::graph::AutoPad::Explicit;
    let out = conv_shape(&c, &x, &w)?;
    let (cin_g, ng) = (w[1], w[0] / c.group);
    let k = w[2] * w[3] * cin_g;
    let u = |v: usize, what: &str| {
        u32::try_from(v)
            .map_err(|_| format!("Conv: {what} = {v} does not fit the GPU kernel's 32 bits"))
    };
    let m = out[0] * out[2] * out[3];
    if m.checked_mul(out[1]).is_none_or(|e| e > u32::MAX as usize) {
        return Err(format!(
            "Conv output {out:?} has over 2^32 elements: lower the batch size"
        ));
    }
    Ok(ConvParams {
        n: u(x[0], "batch")?,
        h: u(x[2], "height")?,
        w: u(x[3], "width")?,
        cin: u(x[1], "input channels")?,
        oh: u(out[2], "output height")?,
        ow: u(out[3], "output width")?,
        cout: u(out[1], "output channels")?,
        groups: u(c.group, "groups")?,
        cin_g: u(cin_g, "channels per group")?,
        ng: u(ng, "output channels per group")?,
        kh: u(w[2], "kernel height")?,
        kw: u(w[3], "kernel width")?,
        sh: u(c.strides[0], "stride")?,
        sw: u(c.strides[1], "stride")?,
        ph: u(c.pads[0], "pad")?,
        pw: u(c.pads[1], "pad")?,
        dh: u(c.dilations[0], "dilation")?,
        dw: u(c.dilations[1], "dilation")?,
        k: u(k, "reduction size")?,
        k_pad: u(k.div_ceil(BK) * BK, "reduction size")?,
        m: u(m, "output pixels")?,
        act: act_code(c.act),
        has_bias: 1,
        has_residual: has_residual as u32,
    })
}

/// ONNX weight [Cout][Cin_g][KH][KW] (f32) → [groups][Ng][K_pad] bf16 with
/// k = (kh, kw, c) and zeros past K.
pub fn pack_weights(w: &[f32], p: &ConvParams) -> Vec<u16> {
    let (kh, kw, cin_g, k_pad) = (
        p.kh as usize,
        p.kw as usize,
        p.cin_g as usize,
        p.k_pad as usize,
    );
    let mut out = vec![0u16; p.cout as usize * k_pad];
    // Output channel o = g*Ng + n sits at row o either way: [groups][Ng] is [Cout].
    for o in 0..p.cout as usize {
        for c in 0..cin_g {
            for y in 0..kh {
                for x in 0..kw {
                    let k = (y * kw + x) * cin_g + c;
                    out[o * k_pad + k] = bf16(w[((o * cin_g + c) * kh + y) * kw + x]);
                }
            }
        }
    }
    out
}

/// One entry point of kernels/conv.cu or kernels/conv_grouped.cu and how
/// it is launched.
#[derive(Clone, Copy)]
pub struct Variant {
    pub kernel: &'static Kernel<ConvSig>,
    pub tile: Tile,
}

/// How a variant tiles the output, which fixes its grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tile {
    /// The depthwise kernel: one thread per output.
    Depthwise,
    /// The older `conv_bf16_*` kernels: 128 pixels x `bn` output channels.
    Old { bn: u32 },
    /// The pipelined `conv_tc_*` kernels: 128 pixels x `bn` channels, blocks
    /// rastered with the output-channel tiles fastest, 16-byte epilogue.
    Tc { bn: u32 },
    /// kernels/conv_grouped.cu: `rows` x `cols` output pixels x 64 channels.
    Grouped { rows: u32, cols: u32 },
}

impl Variant {
    /// Output channels a block computes (0: one thread per output).
    pub fn bn(&self) -> u32 {
        match self.tile {
            Tile::Depthwise => 0,
            Tile::Old { bn } | Tile::Tc { bn } => bn,
            Tile::Grouped { .. } => GROUPED_CHANNELS,
        }
    }

    /// Whether the kernel needs 16-byte aligned regions (every kernel but
    /// the older ones and the depthwise one).
    fn vector(&self) -> bool {
        matches!(self.tile, Tile::Tc { .. } | Tile::Grouped { .. })
    }
}

impl PartialEq for Variant {
    fn eq(&self, o: &Self) -> bool {
        (self.kernel.name, self.tile) == (o.kernel.name, o.tile)
    }
}
impl Eq for Variant {}

impl std::fmt::Debug for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kernel.name)
    }
}

const fn old(kernel: &'static Kernel<ConvSig>, bn: u32) -> Variant {
    Variant {
        kernel,
        tile: Tile::Old { bn },
    }
}

const fn tc(kernel: &'static Kernel<ConvSig>, bn: u32) -> Variant {
    Variant {
        kernel,
        tile: Tile::Tc { bn },
    }
}

const fn grouped(kernel: &'static Kernel<ConvSig>, rows: u32, cols: u32) -> Variant {
    Variant {
        kernel,
        tile: Tile::Grouped { rows, cols },
    }
}

/// One input channel per group: the depthwise kernel's case.
pub fn is_depthwise(p: &ConvParams) -> bool {
    p.cin_g == 1 && p.groups > 1
}

/// Whether `p` meets the `conv_tc_*` kernels' shape conditions (the
/// launcher checks the 16-byte alignment of the regions besides).
fn tc_fits(p: &ConvParams) -> bool {
    p.cin_g.is_multiple_of(8)
        && p.ng.is_multiple_of(8)
        && p.cout.is_multiple_of(8)
        && p.has_bias == 1
        && p.ng > 32
}

/// The `conv_tc_*` kernel with output tile `bn` (128, 64 or 48) and the
/// epilogue `p` needs: fixed at compile time for conv (+BN), +ReLU and
/// +residual+ReLU, `_any` otherwise; `_chunks_any` (128x64) when Cin_g is
/// not a multiple of 32; the 48-wide tile always gathers by chunks
/// (`tile_48_fits`).
fn tc_variant(p: &ConvParams, bn: u32) -> Variant {
    if bn == 48 {
        let relu = (p.act, p.has_residual) == (1, 0);
        let k = if relu {
            &CONV_TC_128X48_CHUNKS_RELU
        } else {
            &CONV_TC_128X48_CHUNKS_ANY
        };
        return tc(k, 48);
    }
    if !p.cin_g.is_multiple_of(32) {
        return tc(&CONV_TC_128X64_CHUNKS_ANY, 64);
    }
    let wide = bn == 128;
    let k = match (p.act, p.has_residual) {
        (0, 0) if wide => &CONV_TC_128X128_NONE,
        (1, 0) if wide => &CONV_TC_128X128_RELU,
        (1, 1) if wide => &CONV_TC_128X128_RELU_RES,
        _ if wide => &CONV_TC_128X128_ANY,
        (0, 0) => &CONV_TC_128X64_NONE,
        (1, 0) => &CONV_TC_128X64_RELU,
        (1, 1) => &CONV_TC_128X64_RELU_RES,
        _ => &CONV_TC_128X64_ANY,
    };
    tc(k, bn)
}

/// Whether the 48-wide `conv_tc_128x48_chunks_*` tile computes `p` without
/// padding: Ng a multiple of 48 and Cin_g >= 32 (its one-wrap chunk gather),
/// on top of `tc_fits`.
fn tile_48_fits(p: &ConvParams) -> bool {
    tc_fits(p) && p.ng.is_multiple_of(48) && p.cin_g >= 32
}

/// Whether `p` is one of ResNeXt's narrow-group 3x3 convolutions that
/// kernels/conv_grouped.cu computes: 3x3, pad 1, dilation 1, as many input
/// as output channels (a multiple of 64), 8, 16 or 32 of them a group, a
/// bias and no residual; stride 1, or 2 with 16 or 32 channels a group
/// (ResNeXt's strided 3x3 opens a stage, where Ng is 16 and up: Ng 8 at
/// stride 2 would pair half-empty block-diagonal tiles with the stride's
/// lower reuse, tools/sass_report.py's narrow-group goal).
fn grouped_fits(p: &ConvParams) -> bool {
    (p.kh, p.kw, p.ph, p.pw, p.dh, p.dw) == (3, 3, 1, 1, 1, 1)
        && p.sh == p.sw
        && (p.sh == 1 || (p.sh == 2 && p.ng >= 16))
        && p.groups > 1
        && p.cin == p.cout
        && p.cin.is_multiple_of(GROUPED_CHANNELS)
        && p.cin_g == p.ng
        && matches!(p.ng, 8 | 16 | 32)
        && p.has_bias == 1
        && p.has_residual == 0
}

/// The grouped kernels for `p`'s stride, ReLU fixed or read from `p`: the
/// stride-1 tiles (4 x 32, 7 x 16) give the same bits, the first is the one
/// padding the output least (4 x 32 on a tie).
fn grouped_variants(p: &ConvParams) -> Vec<Variant> {
    let relu = p.act == 1;
    let tiles: &[(u32, u32, &'static Kernel<ConvSig>)] = match (p.sh, relu) {
        (1, true) => &[
            (4, 32, &CONV_GROUPED_S1_4X32_RELU),
            (7, 16, &CONV_GROUPED_S1_7X16_RELU),
        ],
        (1, false) => &[
            (4, 32, &CONV_GROUPED_S1_4X32_ANY),
            (7, 16, &CONV_GROUPED_S1_7X16_ANY),
        ],
        (_, true) => &[(3, 16, &CONV_GROUPED_S2_3X16_RELU)],
        (_, false) => &[(3, 16, &CONV_GROUPED_S2_3X16_ANY)],
    };
    let padded = |&(rows, cols, _): &(u32, u32, _)| {
        p.oh.div_ceil(rows) as u64 * rows as u64 * (p.ow.div_ceil(cols) * cols) as u64
    };
    let mut tiles = tiles.to_vec();
    tiles.sort_by_key(padded); // stable: 4 x 32 stays first on a tie
    tiles
        .into_iter()
        .map(|(rows, cols, k)| grouped(k, rows, cols))
        .collect()
}

/// The older single-barrier kernel for `p`: the narrowest of 8, 16, 32, 64
/// output channels holding a group's channels (64 beyond), 16-byte gathers
/// when Cin_g is a multiple of 8, else the scalar-gather 64-wide tile.
fn old_variant(p: &ConvParams) -> Variant {
    if !p.cin_g.is_multiple_of(8) {
        return old(&CONV_BF16_128X64_V1, 64);
    }
    match p.ng {
        0..=8 => old(&CONV_BF16_128X8_V8, 8),
        9..=16 => old(&CONV_BF16_128X16_V8, 16),
        17..=32 => old(&CONV_BF16_128X32_V8, 32),
        _ => old(&CONV_BF16_128X64_V8, 64),
    }
}

/// The kernel for `p`, by a shape rule that depends on the layer only
/// (never on the batch: the variants of a layer give the same bits anyway,
/// see kernels/conv.cu). Depthwise layers take their own kernel; ResNeXt's
/// narrow-group 3x3 layers take kernels/conv_grouped.cu (whose k order
/// differs, so those layers never take conv.cu's kernels); layers that meet
/// the `conv_tc_*` conditions with more than 32 channels a group take the
/// tile of 128 or 64 output channels that pads Ng the least (128 on a tie:
/// fewer, larger blocks), except that where that is the 64-wide chunk
/// gather (Cin_g not a multiple of 32) and the 48-wide tile fits without
/// padding (Ng = 48: IG-ResNeXt-101 32x48d's first stage) the 48-wide one
/// is taken: both gather by chunks, and the static report puts the 48-wide
/// tile at 6.0 issued instructions per HMMA against the 64-wide one's 6.5
/// per HMMA, 8.7 per useful one at Ng 48 (sm_90a). The row-gather tiles
/// (2.3 to 3.5 per HMMA) stay ahead even with a quarter of padding, so
/// Ng = 96 keeps the 128-wide tile. Other narrow groups and channel counts
/// that are not multiples of 8 take the older kernels.
pub fn variant(p: &ConvParams) -> Variant {
    if is_depthwise(p) {
        return Variant {
            kernel: &CONV_DEPTHWISE_BF16_NHWC,
            tile: Tile::Depthwise,
        };
    }
    if grouped_fits(p) {
        return grouped_variants(p)[0];
    }
    if !tc_fits(p) {
        return old_variant(p);
    }
    // Cin_g not a multiple of 32: both tiles would be the 64-wide chunk gather.
    if !p.cin_g.is_multiple_of(32) && tile_48_fits(p) {
        return tc_variant(p, 48);
    }
    let padded = |bn: u32| p.ng.div_ceil(bn) * bn;
    let bn = if padded(128) <= padded(64) { 128 } else { 64 };
    tc_variant(p, bn)
}

/// Every kernel that computes `p` (the first is `variant(p)`), all giving
/// the same bits: what a test compares and what an autotuner chooses among.
pub fn candidates(p: &ConvParams) -> Vec<Variant> {
    if grouped_fits(p) {
        return grouped_variants(p);
    }
    let mut out = vec![variant(p)];
    if !is_depthwise(p) {
        // tile_48_fits implies tc_fits.
        let tiles = match (tc_fits(p), tile_48_fits(p)) {
            (true, true) => &[128, 64, 48][..],
            (true, false) => &[128, 64][..],
            (false, _) => &[],
        };
        let more = tiles.iter().map(|&bn| tc_variant(p, bn));
        for v in more.chain([old_variant(p)]) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

/// Launches `y = act(conv(x, w) + bias [+ residual])`. `bias` always has
/// Cout entries (zeros for a conv without one); `residual`, when
/// `p.has_residual`, has y's shape.
pub fn conv2d(
    stream: &Stream,
    p: &ConvParams,
    x: &DevBuf<u16>,
    w: &DevBuf<u16>,
    bias: &DevBuf<f32>,
    residual: Option<&DevBuf<u16>>,
    y: &mut DevBuf<u16>,
) -> Result<()> {
    let s = stream;
    conv2d_regions(
        s,
        p,
        x.region(s, 0..x.len())?,
        w.region(s, 0..w.len())?,
        bias.region(s, 0..bias.len())?,
        residual.map(|r| r.region(s, 0..r.len())).transpose()?,
        y.region(s, 0..y.len())?,
    )
}

/// `conv2d` over regions (of the executor's arena and weights).
pub fn conv2d_regions(
    stream: &Stream,
    p: &ConvParams,
    x: Region<u16>,
    w: Region<u16>,
    bias: Region<f32>,
    residual: Option<Region<u16>>,
    y: Region<u16>,
) -> Result<()> {
    let mut v = variant(p);
    // The executor's arena and weights are always aligned; elsewhere the
    // older kernel computes the same bits as a tc kernel (not as a grouped
    // one, which `launch` then refuses by name).
    if matches!(v.tile, Tile::Tc { .. }) && !aligned(x, w, bias, residual, y) {
        v = old_variant(p);
    }
    launch(stream, p, v, x, w, bias, residual, y)
}

/// Whether the regions meet the tc and grouped kernels' 16-byte vector
/// accesses.
fn aligned(
    x: Region<u16>,
    w: Region<u16>,
    bias: Region<f32>,
    residual: Option<Region<u16>>,
    y: Region<u16>,
) -> bool {
    [x, w, y]
        .map(|r| r.is_aligned(16))
        .into_iter()
        .chain([bias.is_aligned(16)])
        .chain(residual.map(|r| r.is_aligned(16)))
        .all(|a| a)
}

/// `conv2d_regions` through a chosen variant, which must be one of
/// `candidates(p)` (a test's or a tuner's choice).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_variant(
    stream: &Stream,
    p: &ConvParams,
    v: Variant,
    x: Region<u16>,
    w: Region<u16>,
    bias: Region<f32>,
    residual: Option<Region<u16>>,
    y: Region<u16>,
) -> Result<()> {
    if !candidates(p).contains(&v) {
        return Err(CudaError::Invalid(format!(
            "conv2d: {} does not compute {p:?}",
            v.kernel.name
        )));
    }
    launch(stream, p, v, x, w, bias, residual, y)
}

/// Launches `v` on `p` after checking the regions' sizes against `p`.
#[allow(clippy::too_many_arguments)]
fn launch(
    stream: &Stream,
    p: &ConvParams,
    v: Variant,
    x: Region<u16>,
    w: Region<u16>,
    bias: Region<f32>,
    residual: Option<Region<u16>>,
    y: Region<u16>,
) -> Result<()> {
    let bad = |d: String| Err(CudaError::Invalid(format!("conv2d: {d}")));
    let x_len = (p.n * p.h * p.w) as usize * p.cin as usize;
    let y_len = p.m as usize * p.cout as usize;
    if x.len() < x_len
        || w.len() < p.cout as usize * p.k_pad as usize
        || bias.len() < p.cout as usize
    {
        return bad(format!("input, weight or bias region too small for {p:?}"));
    }
    if y.len() < y_len || (p.has_residual == 1) != residual.is_some() {
        return bad("output too small or residual flag and region disagree".into());
    }
    if residual.is_some_and(|r| r.len() < y_len)
        || !(p.k_pad as usize).is_multiple_of(BK)
        || p.k == 0
    {
        return bad(format!(
            "residual short or reduction size {}/{} not padded",
            p.k, p.k_pad
        ));
    }
    if v.vector() && !aligned(x, w, bias, residual, y) {
        return bad(format!(
            "{} needs x, w, y, bias and residual on 16-byte boundaries",
            v.kernel.name
        ));
    }
    let (m_tiles, n_tiles) = (p.m.div_ceil(BM as u32), p.ng.div_ceil(v.bn().max(1)));
    let shape = if let Tile::Grouped { rows, cols } = v.tile {
        if p.n > u16::MAX as u32 {
            return bad(format!(
                "{} takes at most 65535 images a launch (grid z), not {}: lower the batch size",
                v.kernel.name, p.n
            ));
        }
        LaunchShape {
            grid: (
                p.oh.div_ceil(rows) * p.ow.div_ceil(cols),
                p.cout / GROUPED_CHANNELS,
                p.n,
            ),
            block: (GROUPED_THREADS, 1, 1),
            shared_bytes: 0,
        }
    } else if v.tile == Tile::Depthwise {
        LaunchShape::per_item(p.m as usize * p.cout as usize, THREADS, "depthwise conv2d")?
    } else if matches!(v.tile, Tile::Tc { .. }) {
        let blocks = m_tiles
            .checked_mul(n_tiles)
            .filter(|&b| b < i32::MAX as u32);
        let Some(blocks) = blocks else {
            return Err(CudaError::Invalid(format!(
                "conv2d: {m_tiles} x {n_tiles} tiles are more blocks than one launch takes: lower the batch size"
            )));
        };
        LaunchShape {
            grid: (blocks, 1, p.groups),
            block: (THREADS, 1, 1),
            shared_bytes: 0,
        }
    } else {
        LaunchShape {
            grid: (m_tiles, n_tiles, p.groups),
            block: (THREADS, 1, 1),
            shared_bytes: 0,
        }
    };
    stream.launch(v.kernel, shape, (x, w, bias, residual.unwrap_or(x), y, *p))
}

/// CPU twin: the same bf16 products summed in f64.
pub mod cpu {
    use super::*;

    /// The activation in f64, as the kernel applies it (in f32).
    fn activate(v: f64, act: u32) -> f64 {
        match act {
            1 => v.max(0.0),
            2 => v / (1.0 + (-v).exp()),
            3 => v * (v + 3.0).clamp(0.0, 6.0) / 6.0,
            4 => 1.0 / (1.0 + (-v).exp()),
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
            p.n, p.h, p.w, p.cin, p.oh, p.ow, p.cout, p.groups, p.cin_g, p.ng, p.kh, p.kw, p.sh,
            p.sw, p.ph, p.pw, p.dh, p.dw,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::testing::{Tol, gpu_or_skip};
    use crate::rng::Philox;
    use crate::teacher::graph::AutoPad;
    use crate::teacher::tensor::Tensor;

    fn attrs(k: usize, s: usize, p: usize, d: usize, group: usize, act: Activation) -> ConvAttrs {
        ConvAttrs {
            kernel: [k, k],
            strides: [s, s],
            pads: [p, p, p, p],
            dilations: [d, d],
            group,
            auto_pad: AutoPad::Explicit,
            act,
        }
    }

    /// (name, attrs, x NCHW, Cout, residual, epilogue activation code or 0
    /// for the attrs' own): the shapes ResNet/ResNeXt teachers have (7x7/2
    /// stem on RGB, 1x1, 3x3 grouped at 32 groups of 8 and of 16, strided,
    /// dilated, FC as 1x1 on 1x1), every tile width (8, 16, 32 and 64
    /// channels a group), the depthwise kernel (MobileNet's 3x3, ConvNeXt's
    /// 7x7, a channel multiplier of 2) and every fused activation (SiLU,
    /// HardSwish, sigmoid as MobileNet/EfficientNet fold them), at odd sizes
    /// and batches not a multiple of the tile.
    type ConvCase = (&'static str, ConvAttrs, [usize; 4], usize, bool, u32);

    fn cases() -> Vec<ConvCase> {
        use Activation::{None, Relu};
        vec![
            (
                "stem 7x7/2 rgb",
                attrs(7, 2, 3, 1, 1, Relu),
                [2, 3, 37, 29],
                64,
                false,
                0,
            ),
            (
                "1x1 residual",
                attrs(1, 1, 0, 1, 1, Relu),
                [3, 64, 9, 7],
                96,
                true,
                0,
            ),
            // kernels/conv_grouped.cu: Ng 8 (block-diagonal), 16 and 32,
            // both strides, ReLU fixed and read from p, both stride-1
            // tiles (candidates), sizes no tile divides.
            (
                "3x3 g32x8 (grouped s1 relu)",
                attrs(3, 1, 1, 1, 32, Relu),
                [2, 256, 11, 10],
                256,
                false,
                0,
            ),
            (
                "3x3/2 g32x16 (grouped s2 any)",
                attrs(3, 2, 1, 1, 32, None),
                [1, 512, 13, 13],
                512,
                false,
                0,
            ),
            (
                "3x3 g2x32 14x14 (grouped s1, two k chunks)",
                attrs(3, 1, 1, 1, 2, Relu),
                [2, 64, 14, 14],
                64,
                false,
                0,
            ),
            (
                "3x3/2 g4x32 (grouped s2 relu)",
                attrs(3, 2, 1, 1, 4, Relu),
                [1, 128, 15, 18],
                128,
                false,
                0,
            ),
            (
                "3x3 g16x8 SiLU (grouped s1 any)",
                attrs(3, 1, 1, 1, 16, None),
                [1, 128, 9, 37],
                128,
                false,
                2,
            ),
            // Narrow groups the grouped kernel does not take: the older kernels.
            (
                "3x3 g32x8 + residual (128x8)",
                attrs(3, 1, 1, 1, 32, Relu),
                [1, 256, 7, 6],
                256,
                true,
                0,
            ),
            (
                "1x1/2 g32x16 (128x16)",
                attrs(1, 2, 0, 1, 32, None),
                [1, 512, 9, 9],
                512,
                false,
                0,
            ),
            (
                "3x3 g16x24 (128x32 tile), SiLU",
                attrs(3, 1, 1, 1, 16, None),
                [2, 384, 7, 6],
                384,
                false,
                2,
            ),
            (
                "3x3 g8x48",
                attrs(3, 1, 1, 1, 8, Relu),
                [1, 384, 6, 5],
                384,
                true,
                0,
            ),
            (
                "3x3 dilated 2",
                attrs(3, 1, 2, 2, 1, None),
                [1, 24, 10, 12],
                40,
                false,
                0,
            ),
            (
                "1x1 HardSwish + residual",
                attrs(1, 1, 0, 1, 1, None),
                [2, 40, 7, 7],
                72,
                true,
                3,
            ),
            (
                "1x1 sigmoid",
                attrs(1, 1, 0, 1, 1, None),
                [1, 16, 5, 5],
                24,
                false,
                4,
            ),
            (
                "fc",
                attrs(1, 1, 0, 1, 1, None),
                [5, 200, 1, 1],
                1000,
                false,
                0,
            ),
            (
                "odd cin",
                attrs(3, 1, 1, 1, 1, Relu),
                [1, 5, 7, 9],
                12,
                false,
                0,
            ),
            (
                "depthwise 3x3/2",
                attrs(3, 2, 1, 1, 32, Relu),
                [2, 32, 9, 11],
                32,
                false,
                0,
            ),
            (
                "depthwise 7x7 + residual",
                attrs(7, 1, 3, 1, 24, None),
                [1, 24, 10, 10],
                24,
                true,
                0,
            ),
            (
                "depthwise 5x5 x2, HardSwish",
                attrs(5, 1, 2, 1, 16, None),
                [1, 16, 8, 7],
                32,
                false,
                3,
            ),
            // The conv_tc kernels: each tile and epilogue, two n tiles,
            // M not a multiple of 128, strides and 3x3 windows.
            (
                "1x1/2 downsample (128x128 none)",
                attrs(1, 2, 0, 1, 1, None),
                [2, 64, 25, 23],
                256,
                false,
                0,
            ),
            (
                "3x3 96->128 (128x128 relu)",
                attrs(3, 1, 1, 1, 1, Relu),
                [1, 96, 12, 13],
                128,
                false,
                0,
            ),
            (
                "1x1 SiLU (128x128 any)",
                attrs(1, 1, 0, 1, 1, None),
                [1, 64, 9, 9],
                256,
                false,
                2,
            ),
            (
                "3x3/2 128->192 (128x64 relu)",
                attrs(3, 2, 1, 1, 1, Relu),
                [1, 128, 13, 11],
                192,
                false,
                0,
            ),
            (
                "1x1 32->64 (128x64 none)",
                attrs(1, 1, 0, 1, 1, None),
                [1, 32, 10, 14],
                64,
                false,
                0,
            ),
            (
                "3x3 residual (128x64 relu_res)",
                attrs(3, 1, 1, 1, 1, Relu),
                [2, 64, 8, 9],
                64,
                true,
                0,
            ),
            (
                "1x1 add, no activation (128x64 any)",
                attrs(1, 1, 0, 1, 1, None),
                [1, 32, 7, 7],
                64,
                true,
                0,
            ),
            (
                "7x7/2 stem on 8 channels (chunks: four taps a k-tile)",
                attrs(7, 2, 3, 1, 1, Relu),
                [2, 8, 21, 19],
                64,
                false,
                0,
            ),
            // The 48-wide tile: Ng 48 (one-wrap chunk gather, ReLU fixed),
            // and Ng 96 strided and dilated, where it is a candidate beside
            // the row-gather tiles ("3x3 g8x48" above: its `_any`).
            (
                "3x3 g4x48 (128x48 relu)",
                attrs(3, 1, 1, 1, 4, Relu),
                [2, 192, 11, 9],
                192,
                false,
                0,
            ),
            (
                "3x3/2 g2x96 dilated (128x128 relu, 128x48 candidate)",
                attrs(3, 2, 2, 2, 2, Relu),
                [1, 192, 13, 12],
                192,
                false,
                0,
            ),
            (
                "3x3/2 grouped g2x64 dilated (128x64 relu)",
                attrs(3, 2, 2, 2, 2, Relu),
                [1, 128, 15, 14],
                128,
                false,
                0,
            ),
        ]
    }

    fn random(n: usize, r: &mut Philox, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| (r.uniform_f32() - 0.5) * 2.0 * scale)
            .collect()
    }

    struct Case {
        p: ConvParams,
        x_nchw: Vec<f32>,
        x: Vec<u16>,
        w_onnx: Vec<f32>,
        w: Vec<u16>,
        bias: Vec<f32>,
        residual: Option<Vec<u16>>,
    }

    fn build(
        attrs: &ConvAttrs,
        xs: [usize; 4],
        cout: usize,
        residual: bool,
        act: u32,
        seed: u64,
    ) -> Case {
        let mut r = Philox::new(seed, 1, 2, 3);
        let ws = [cout, xs[1] / attrs.group, attrs.kernel[0], attrs.kernel[1]];
        let mut p = conv_params(attrs, xs, ws, residual).unwrap();
        if act != 0 {
            p.act = act; // as the lowering folds a following activation
        }
        // Inputs exactly representable in bf16, so the f32 executor sees the same values.
        let round = |v: Vec<f32>| -> Vec<f32> { v.into_iter().map(|f| f32_of(bf16(f))).collect() };
        let x_nchw = round(random(xs.iter().product(), &mut r, 1.0));
        let w_onnx = round(random(ws.iter().product(), &mut r, 0.5));
        let bias = random(cout, &mut r, 0.2);
        let [n, c, h, w] = xs;
        let x: Vec<u16> = (0..n * h * w * c)
            .map(|i| {
                let (px, ch) = (i / c, i % c);
                let (img, rest) = (px / (h * w), px % (h * w));
                bf16(x_nchw[(img * c + ch) * h * w + rest])
            })
            .collect();
        let residual = residual.then(|| {
            random(p.m as usize * cout, &mut r, 1.0)
                .into_iter()
                .map(bf16)
                .collect::<Vec<u16>>()
        });
        let w = pack_weights(&w_onnx, &p);
        p.has_residual = residual.is_some() as u32;
        Case {
            p,
            x_nchw,
            x,
            w_onnx,
            w,
            bias,
            residual,
        }
    }

    #[test]
    fn twin_equals_the_cpu_executor() {
        for (i, (name, a, xs, cout, res, act)) in cases().into_iter().enumerate() {
            let c = build(&a, xs, cout, res, act, i as u64);
            let (y, _) = cpu::conv2d(&c.p, &c.x, &c.w, &c.bias, c.residual.as_deref());
            // The f32 executor on NCHW, residual NCHW too.
            let ws = [cout, xs[1] / a.group, a.kernel[0], a.kernel[1]];
            let (oh, ow) = (c.p.oh as usize, c.p.ow as usize);
            let to_nchw = |nhwc: &[f32]| -> Vec<f32> {
                (0..nhwc.len())
                    .map(|i| {
                        let (img, rest) = (i / (cout * oh * ow), i % (cout * oh * ow));
                        let (ch, px) = (rest / (oh * ow), rest % (oh * ow));
                        nhwc[(img * oh * ow + px) * cout + ch]
                    })
                    .collect()
            };
            let r = c.residual.as_ref().map(|r| {
                let f: Vec<f32> = r.iter().map(|&b| f32_of(b)).collect();
                Tensor::f32(vec![xs[0], cout, oh, ow], to_nchw(&f))
            });
            let want = crate::teacher::cpu::conv::conv2d(
                &a,
                &Tensor::f32(xs.to_vec(), c.x_nchw.clone()),
                &Tensor::f32(ws.to_vec(), c.w_onnx.clone()),
                Some(&Tensor::f32(vec![cout], c.bias.clone())),
                r.as_ref(),
            )
            .unwrap();
            let got = to_nchw(&y);
            // The folded activations, on the executor's f32 output.
            let want: Vec<f32> = want
                .view()
                .unwrap()
                .data
                .iter()
                .map(|&v| {
                    let v = v as f64;
                    (match act {
                        2 => v / (1.0 + (-v).exp()),
                        3 => v * (v + 3.0).clamp(0.0, 6.0) / 6.0,
                        4 => 1.0 / (1.0 + (-v).exp()),
                        _ => v,
                    }) as f32
                })
                .collect();
            let err = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs() / (1.0 + w.abs()))
                .fold(0f32, f32::max);
            assert!(
                err < 1e-4,
                "{name}: twin vs f32 executor, max rel error {err}"
            );
        }
    }

    #[test]
    fn packing_puts_each_tap_where_the_gather_reads_it() {
        let a = attrs(3, 1, 1, 1, 2, Activation::None);
        let p = conv_params(&a, [1, 16, 5, 5], [4, 8, 3, 3], false).unwrap();
        assert_eq!((p.k, p.k_pad, p.ng, p.cin_g), (72, 96, 2, 8));
        let w: Vec<f32> = (0..4 * 8 * 9).map(|i| i as f32).collect();
        let packed = pack_weights(&w, &p);
        // Output 3, channel 5, tap (2, 1): ONNX ((3*8 + 5)*3 + 2)*3 + 1 = 268.
        assert_eq!(f32_of(packed[3 * 96 + (2 * 3 + 1) * 8 + 5]), 268.0);
        assert!(
            packed[3 * 96 + 72..4 * 96].iter().all(|&b| b == 0),
            "zeros past K"
        );
    }

    #[test]
    fn variants_fit_the_group_width() {
        let p = |ng: u32, cin_g: u32, act: u32, res: u32| ConvParams {
            ng,
            cin_g,
            cout: ng,
            groups: 1,
            act,
            has_bias: 1,
            has_residual: res,
            ..Default::default()
        };
        let name = |q: ConvParams| variant(&q).kernel.name;
        assert_eq!(variant(&p(8, 8, 1, 0)).bn(), 8);
        assert_eq!(variant(&p(16, 16, 1, 0)).bn(), 16);
        assert_eq!(variant(&p(24, 24, 1, 0)).bn(), 32);
        // Cin_g 48 is not a multiple of 32: the chunk gather, 48 wide
        // where Ng is a multiple of 48, with the ReLU fixed where it can be.
        assert_eq!(name(p(48, 48, 1, 0)), "conv_tc_128x48_chunks_relu");
        assert_eq!(name(p(144, 48, 2, 0)), "conv_tc_128x48_chunks_any");
        assert_eq!(name(p(48, 48, 1, 1)), "conv_tc_128x48_chunks_any");
        assert_eq!(name(p(64, 48, 1, 0)), "conv_tc_128x64_chunks_any");
        assert_eq!(name(p(48, 16, 1, 0)), "conv_tc_128x64_chunks_any");
        // Ng 96 with a row gather: the 128-wide tile, the 48-wide one a candidate.
        assert_eq!(name(p(96, 96, 1, 0)), "conv_tc_128x128_relu");
        assert!(
            candidates(&p(96, 96, 1, 0))
                .iter()
                .any(|v| v.kernel.name == "conv_tc_128x48_chunks_relu")
        );
        assert_eq!(name(p(2048, 512, 0, 0)), "conv_tc_128x128_none");
        assert_eq!(name(p(256, 64, 1, 0)), "conv_tc_128x128_relu");
        assert_eq!(name(p(256, 64, 1, 1)), "conv_tc_128x128_relu_res");
        assert_eq!(name(p(256, 64, 2, 0)), "conv_tc_128x128_any");
        assert_eq!(name(p(256, 64, 0, 1)), "conv_tc_128x128_any");
        // 192 channels: three 64-wide tiles pad less than two 128-wide ones.
        assert_eq!(name(p(192, 64, 1, 0)), "conv_tc_128x64_relu");
        assert_eq!(name(p(64, 64, 1, 1)), "conv_tc_128x64_relu_res");
        assert_eq!(name(p(64, 3, 1, 0)), "conv_bf16_128x64_v1");
        // Ng not a multiple of 8 (no 16-byte stores): the older kernel.
        assert_eq!(name(p(100, 64, 1, 0)), "conv_bf16_128x64_v8");
        // ResNeXt's grouped 3x3: the grouped kernels, by stride and map size.
        let g = |ng: u32, s: u32, hw: u32, act: u32, res: u32| ConvParams {
            ng,
            cin_g: ng,
            cin: 32 * ng,
            cout: 32 * ng,
            groups: 32,
            kh: 3,
            kw: 3,
            sh: s,
            sw: s,
            ph: 1,
            pw: 1,
            dh: 1,
            dw: 1,
            oh: hw,
            ow: hw,
            act,
            has_bias: 1,
            has_residual: res,
            ..Default::default()
        };
        assert_eq!(name(g(8, 1, 56, 1, 0)), "conv_grouped_s1_4x32_relu");
        assert_eq!(name(g(16, 1, 28, 0, 0)), "conv_grouped_s1_4x32_any");
        assert_eq!(name(g(32, 1, 14, 1, 0)), "conv_grouped_s1_7x16_relu");
        assert_eq!(name(g(16, 2, 28, 1, 0)), "conv_grouped_s2_3x16_relu");
        assert_eq!(candidates(&g(32, 1, 14, 1, 0)).len(), 2);
        assert_eq!(candidates(&g(32, 2, 14, 1, 0)).len(), 1);
        assert_eq!(name(g(8, 2, 28, 1, 0)), "conv_bf16_128x8_v8");
        // Ng 64 (the last stage), a residual, a dilation: other kernels.
        assert_eq!(name(g(64, 1, 7, 1, 0)), "conv_tc_128x64_relu");
        assert_eq!(name(g(8, 1, 56, 1, 1)), "conv_bf16_128x8_v8");
        let dilated = ConvParams {
            dh: 2,
            dw: 2,
            ph: 2,
            pw: 2,
            ..g(8, 1, 56, 1, 0)
        };
        assert_eq!(name(dilated), "conv_bf16_128x8_v8");
        let dw = ConvParams {
            ng: 1,
            cin_g: 1,
            groups: 96,
            ..Default::default()
        };
        assert_eq!(variant(&dw).kernel.name, "conv_depthwise_bf16_nhwc");
        assert_eq!(candidates(&dw).len(), 1);
        let c = candidates(&p(256, 64, 1, 1));
        assert_eq!(c[0], variant(&p(256, 64, 1, 1)));
        assert_eq!(
            c.iter().map(|v| v.kernel.name).collect::<Vec<_>>(),
            [
                "conv_tc_128x128_relu_res",
                "conv_tc_128x64_relu_res",
                "conv_bf16_128x64_v8"
            ]
        );
    }

    #[test]
    fn kernel_matches_cpu_twin() {
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(0);
        let mut variants = std::collections::BTreeSet::new();
        for (i, (name, a, xs, cout, res, act)) in cases().into_iter().enumerate() {
            let c = build(&a, xs, cout, res, act, 100 + i as u64);
            let (want, mag) = cpu::conv2d(&c.p, &c.x, &c.w, &c.bias, c.residual.as_deref());
            let up = |v: &[u16]| s.to_device(v).unwrap();
            let (dx, dw) = (up(&c.x), up(&c.w));
            let dr = c.residual.as_deref().map(up);
            let db = s.to_device(&c.bias).unwrap();
            // Every kernel that computes the case: within the tolerance of
            // the twin, and bit for bit the same as each other.
            let mut first: Option<Vec<u16>> = None;
            for v in candidates(&c.p) {
                variants.insert(v.kernel.name);
                let dy = up(&vec![0x7FC1u16; want.len()]); // poisoned: NaN
                let r = |b: &DevBuf<u16>| b.region(&s, 0..b.len()).unwrap();
                let bias = db.region(&s, 0..db.len()).unwrap();
                let y = r(&dy);
                conv2d_variant(&s, &c.p, v, r(&dx), r(&dw), bias, dr.as_ref().map(r), y).unwrap();
                let bits = s.to_host(&dy).unwrap();
                let got: Vec<f32> = bits.iter().map(|&b| f32_of(b)).collect();
                let report = Tol::Bf16Accum { k: c.p.k as usize }
                    .check(&got, &want, &mag)
                    .unwrap_or_else(|e| panic!("{name} ({}): {e}", v.kernel.name));
                println!("{name} ({}): {report}", v.kernel.name);
                match &first {
                    None => first = Some(bits),
                    Some(f) => {
                        let differ = f.iter().zip(&bits).filter(|(a, b)| a != b).count();
                        assert_eq!(
                            differ,
                            0,
                            "{name}: {} differs from {} in {differ} outputs",
                            v.kernel.name,
                            variant(&c.p).kernel.name
                        );
                    }
                }
            }
            // A tc or grouped kernel on a region off a 16-byte boundary is
            // refused by name.
            if let Some(v) = candidates(&c.p).into_iter().find(|v| v.vector()) {
                let wide = up(&vec![0u16; want.len() + 8]);
                let off = wide.region(&s, 1..want.len() + 1).unwrap();
                let r = |b: &DevBuf<u16>| b.region(&s, 0..b.len()).unwrap();
                let bias = db.region(&s, 0..db.len()).unwrap();
                let e = conv2d_variant(&s, &c.p, v, r(&dx), r(&dw), bias, dr.as_ref().map(r), off)
                    .unwrap_err();
                assert!(e.to_string().contains("16-byte"), "{name}: {e}");
            }
            // The default path (alignment checked) is the first candidate.
            let mut dy = up(&vec![0x7FC1u16; want.len()]);
            conv2d(&s, &c.p, &dx, &dw, &db, dr.as_ref(), &mut dy).unwrap();
            assert_eq!(
                s.to_host(&dy).unwrap(),
                first.unwrap(),
                "{name}: conv2d differs from its variant"
            );
        }
        use crate::cuda::kernels::{conv, conv_grouped};
        assert_eq!(
            variants.len(),
            conv::ALL.len() + conv_grouped::ALL.len(),
            "every conv and conv_grouped entry point is exercised: {variants:?}"
        );
    }
}
