//! Tensor-core convolution (kernels/conv.cu): NHWC bf16, fp32 accumulation,
//! groups in one launch, `act(conv + bias + residual)` fused. The host turns
//! an IR Conv and its input shape into `ConvParams`, packs the ONNX weight
//! once into the kernel's [groups][Ng][K_pad] bf16 layout (k = (kh, kw, c),
//! matching the NHWC gather), and picks the variant whose output-channel
//! tile fits the group. The CPU twin sums the same bf16 products in f64 and
//! is checked against the CPU executor's f32 convolution.

use crate::cuda::kernels::conv::{
    BK, BM, CONV_BF16_128X8_V8, CONV_BF16_128X16_V8, CONV_BF16_128X32_V8, CONV_BF16_128X64_V1,
    CONV_BF16_128X64_V8, CONV_DEPTHWISE_BF16_NHWC, CONV_SPLIT_REDUCE, CONV_TC_128X48_CHUNKS_ANY,
    CONV_TC_128X48_CHUNKS_RELU, CONV_TC_128X64_ANY, CONV_TC_128X64_CHUNKS_ANY,
    CONV_TC_128X64_CHUNKS_SPLIT, CONV_TC_128X64_NONE, CONV_TC_128X64_RELU, CONV_TC_128X64_RELU_RES,
    CONV_TC_128X64_SPLIT, CONV_TC_128X128_ANY, CONV_TC_128X128_NONE, CONV_TC_128X128_RELU,
    CONV_TC_128X128_RELU_RES, CONV_TC_128X128_SPLIT, CONV_TC_256X128_ANY, CONV_TC_256X128_NONE,
    CONV_TC_256X128_RELU, CONV_TC_256X128_RELU_RES, ConvParams, ConvSig, ConvSplitSig, SPLIT_TILES,
    TC8_SHARED, TC8_THREADS, THREADS,
};
use crate::cuda::kernels::conv_grouped::{
    CHANNELS as GROUPED_CHANNELS, CONV_GROUPED_S1_4X32_ANY, CONV_GROUPED_S1_4X32_RELU,
    CONV_GROUPED_S1_7X16_ANY, CONV_GROUPED_S1_7X16_RELU, CONV_GROUPED_S2_3X16_ANY,
    CONV_GROUPED_S2_3X16_RELU, THREADS as GROUPED_THREADS,
};
use crate::cuda::kernels::conv_sm90::{Sm90GatherSig, Sm90Sig};
use crate::cuda::kernels::{Family, Kernel};
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
    pub entry: Entry,
    pub tile: Tile,
}

/// What a variant launches.
#[derive(Clone, Copy)]
pub enum Entry {
    /// One kernel computes the layer.
    Whole(&'static Kernel<ConvSig>),
    /// Split K: the slices' sums into the workspace, then
    /// `conv_split_reduce` (`split_slices`).
    Split(&'static Kernel<ConvSplitSig>),
    /// kernels/conv_sm90.cu's wgmma + TMA GEMM (`ConvPath::Wgmma` only).
    Sm90(&'static Kernel<Sm90Sig>),
    /// kernels/conv_sm90.cu's wgmma gather kernels (`ConvPath::Wgmma` only).
    Sm90Gather(&'static Kernel<Sm90GatherSig>),
}

/// How a variant tiles the output, which fixes its grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tile {
    /// The depthwise kernel: one thread per output.
    Depthwise,
    /// The older `conv_bf16_*` kernels: 128 pixels x `bn` output channels.
    Old { bn: u32 },
    /// The pipelined `conv_tc_*` kernels: `bm` pixels (128, or 256 with 8
    /// warps and 72 KB of dynamic shared memory) x `bn` channels, blocks
    /// rastered with the output-channel tiles fastest, 16-byte epilogue;
    /// with `Entry::Split`, one slice of K a block besides (grid y).
    Tc { bm: u32, bn: u32 },
    /// kernels/conv_grouped.cu: `rows` x `cols` output pixels x 64 channels.
    Grouped { rows: u32, cols: u32 },
    /// kernels/conv_sm90.cu: 128 pixels x `bn` (128 or 256) channels.
    Sm90 { bn: u32 },
    /// kernels/conv_sm90.cu's gather kernels: `bm` pixels x `bn` channels.
    Sm90Gather { bm: u32, bn: u32 },
}

impl Variant {
    /// Output channels a block computes (0: one thread per output).
    pub fn bn(&self) -> u32 {
        match self.tile {
            Tile::Depthwise => 0,
            Tile::Old { bn }
            | Tile::Tc { bn, .. }
            | Tile::Sm90 { bn }
            | Tile::Sm90Gather { bn, .. } => bn,
            Tile::Grouped { .. } => GROUPED_CHANNELS,
        }
    }

    /// The entry point's name (the first of the two of a split variant).
    pub fn name(&self) -> &'static str {
        match self.entry {
            Entry::Whole(k) => k.name,
            Entry::Split(k) => k.name,
            Entry::Sm90(k) => k.name,
            Entry::Sm90Gather(k) => k.name,
        }
    }

    /// The kernel family (the .cu file) of the entry point.
    pub fn family(&self) -> Family {
        match self.entry {
            Entry::Whole(k) => k.family,
            Entry::Split(k) => k.family,
            Entry::Sm90(k) => k.family,
            Entry::Sm90Gather(k) => k.family,
        }
    }

    /// Whether the kernel needs 16-byte aligned regions (every kernel but
    /// the older ones and the depthwise one).
    fn vector(&self) -> bool {
        matches!(
            self.tile,
            Tile::Tc { .. } | Tile::Grouped { .. } | Tile::Sm90 { .. } | Tile::Sm90Gather { .. }
        )
    }
}

impl PartialEq for Variant {
    fn eq(&self, o: &Self) -> bool {
        (self.name(), self.tile) == (o.name(), o.tile)
    }
}
impl Eq for Variant {}

impl std::fmt::Debug for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const fn old(kernel: &'static Kernel<ConvSig>, bn: u32) -> Variant {
    Variant {
        entry: Entry::Whole(kernel),
        tile: Tile::Old { bn },
    }
}

const fn tc(kernel: &'static Kernel<ConvSig>, bn: u32) -> Variant {
    Variant {
        entry: Entry::Whole(kernel),
        tile: Tile::Tc { bm: BM as u32, bn },
    }
}

const fn grouped(kernel: &'static Kernel<ConvSig>, rows: u32, cols: u32) -> Variant {
    Variant {
        entry: Entry::Whole(kernel),
        tile: Tile::Grouped { rows, cols },
    }
}

/// The split-K kernel with output tile `bn` (128 or 64); the chunk gather
/// (64 wide) when Cin_g is not a multiple of 32.
fn split_variant(p: &ConvParams, bn: u32) -> Variant {
    let (kernel, bn) = if !p.cin_g.is_multiple_of(32) {
        (&CONV_TC_128X64_CHUNKS_SPLIT, 64)
    } else if bn == 128 {
        (&CONV_TC_128X128_SPLIT, 128)
    } else {
        (&CONV_TC_128X64_SPLIT, 64)
    };
    Variant {
        entry: Entry::Split(kernel),
        tile: Tile::Tc { bm: BM as u32, bn },
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

/// Slices of K a layer is summed in: more than one for a layer whose output
/// is one pixel an image (the FC layers, and any convolution down to a 1x1
/// map: M = the batch, so at any batch few output tiles) with more than
/// `SPLIT_TILES` k-tiles, on the `conv_tc_*` conditions; each slice is
/// `SPLIT_TILES` k-tiles (the last may be shorter). A function of the layer
/// alone: the batch never changes it, nor so the bits. Layers over a map
/// stay whole: at the product batch they fill the device already, and a
/// slice's partial sums would cost more traffic than the split saves.
pub fn split_slices(p: &ConvParams) -> u32 {
    let k_tiles = p.k_pad / BK as u32;
    if tc_fits(p) && (p.oh, p.ow) == (1, 1) && k_tiles > SPLIT_TILES as u32 {
        k_tiles.div_ceil(SPLIT_TILES as u32)
    } else {
        1
    }
}

/// fp32 elements of the workspace a split layer needs ([slices][M][Cout]),
/// 0 for a layer computed whole.
pub fn workspace_len(p: &ConvParams) -> usize {
    match split_slices(p) {
        1 => 0,
        s => s as usize * p.m as usize * p.cout as usize,
    }
}

/// The 256x128 `conv_tc_*` kernel for `p` (the row gather: Cin_g % 32 ==
/// 0), the epilogue fixed as in `tc_variant`: a tuner's candidate, never
/// the rule's choice (its gain, a quarter less L2 traffic, against twice
/// the wave quantisation, is for a device to show).
fn tc8_variant(p: &ConvParams) -> Option<Variant> {
    if !tc_fits(p) || !p.cin_g.is_multiple_of(32) || split_slices(p) > 1 {
        return None;
    }
    let k = match (p.act, p.has_residual) {
        (0, 0) => &CONV_TC_256X128_NONE,
        (1, 0) => &CONV_TC_256X128_RELU,
        (1, 1) => &CONV_TC_256X128_RELU_RES,
        _ => &CONV_TC_256X128_ANY,
    };
    Some(Variant {
        entry: Entry::Whole(k),
        tile: Tile::Tc { bm: 256, bn: 128 },
    })
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
            entry: Entry::Whole(&CONV_DEPTHWISE_BF16_NHWC),
            tile: Tile::Depthwise,
        };
    }
    if grouped_fits(p) {
        return grouped_variants(p)[0];
    }
    if !tc_fits(p) {
        return old_variant(p);
    }
    let padded = |bn: u32| p.ng.div_ceil(bn) * bn;
    let bn = if padded(128) <= padded(64) { 128 } else { 64 };
    if split_slices(p) > 1 {
        return split_variant(p, bn);
    }
    // Cin_g not a multiple of 32: both tiles would be the 64-wide chunk gather.
    if !p.cin_g.is_multiple_of(32) && tile_48_fits(p) {
        return tc_variant(p, 48);
    }
    tc_variant(p, bn)
}

/// Whether a GELU (activation 5 or 6) can be fused into `p`'s epilogue:
/// every kernel but the older `conv_bf16_*` ones computes it (theirs would
/// spill); the lowering keeps a GELU after such a layer as its own step.
pub fn gelu_fits(p: &ConvParams) -> bool {
    let gelu = ConvParams { act: 5, ..*p };
    !matches!(variant(&gelu).tile, Tile::Old { .. })
}

/// Every kernel that computes `p` (the first is `variant(p)`), all giving
/// the same bits: what a test compares and what an autotuner chooses among.
pub fn candidates(p: &ConvParams) -> Vec<Variant> {
    if grouped_fits(p) {
        return grouped_variants(p);
    }
    let mut out = vec![variant(p)];
    if split_slices(p) > 1 {
        // A split layer is only ever computed split (its slices' order).
        let other = split_variant(p, if out[0].bn() == 128 { 64 } else { 128 });
        if other != out[0] {
            out.push(other);
        }
        return out;
    }
    if !is_depthwise(p) {
        // tile_48_fits implies tc_fits.
        let tiles = match (tc_fits(p), tile_48_fits(p)) {
            (true, true) => &[128, 64, 48][..],
            (true, false) => &[128, 64][..],
            (false, _) => &[],
        };
        let more = tiles.iter().map(|&bn| tc_variant(p, bn));
        // The older kernels have no GELU (`gelu_fits`).
        let old = (p.act < 5).then(|| old_variant(p));
        for v in more.chain(tc8_variant(p)).chain(old) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

/// A convolution's operands: input, packed weight, bias (Cout entries,
/// zeros for a conv without one), the residual (y's shape, when
/// `p.has_residual`), the output, and for a split layer the fp32 workspace
/// of `workspace_len(p)` elements (unused otherwise).
#[derive(Clone, Copy, Debug)]
pub struct ConvIo {
    pub x: Region<u16>,
    pub w: Region<u16>,
    pub bias: Region<f32>,
    pub residual: Option<Region<u16>>,
    pub y: Region<u16>,
    pub workspace: Option<Region<f32>>,
}

impl ConvIo {
    /// Whether the regions meet the tc, split and grouped kernels' 16-byte
    /// vector accesses.
    fn aligned(&self) -> bool {
        [self.x, self.w, self.y]
            .map(|r| r.is_aligned(16))
            .into_iter()
            .chain([self.bias.is_aligned(16)])
            .chain(self.residual.map(|r| r.is_aligned(16)))
            .chain(self.workspace.map(|r| r.is_aligned(16)))
            .all(|a| a)
    }
}

/// Launches `y = act(conv(x, w) + bias [+ residual])` on whole buffers;
/// `workspace` as in `ConvIo`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    stream: &Stream,
    p: &ConvParams,
    x: &DevBuf<u16>,
    w: &DevBuf<u16>,
    bias: &DevBuf<f32>,
    residual: Option<&DevBuf<u16>>,
    y: &mut DevBuf<u16>,
    workspace: Option<&DevBuf<f32>>,
) -> Result<()> {
    let s = stream;
    let io = ConvIo {
        x: x.region(s, 0..x.len())?,
        w: w.region(s, 0..w.len())?,
        bias: bias.region(s, 0..bias.len())?,
        residual: residual.map(|r| r.region(s, 0..r.len())).transpose()?,
        y: y.region(s, 0..y.len())?,
        workspace: workspace.map(|r| r.region(s, 0..r.len())).transpose()?,
    };
    conv2d_regions(s, p, io)
}

/// `conv2d` over regions (of the executor's arena and weights), through
/// the shape rule's kernel.
pub fn conv2d_regions(stream: &Stream, p: &ConvParams, io: ConvIo) -> Result<()> {
    let mut v = variant(p);
    // The executor's arena and weights are always aligned; elsewhere the
    // older kernel computes the same bits as a tc kernel (not as a grouped
    // or split one, which `launch` then refuses by name).
    if matches!((v.entry, v.tile), (Entry::Whole(_), Tile::Tc { .. })) && !io.aligned() {
        v = old_variant(p);
    }
    launch(stream, p, v, io)
}

/// `conv2d_regions` through a chosen variant, which must be one of
/// `candidates_on(p, path)` for a path (a plan's, a test's or a tuner's choice).
pub fn conv2d_variant(stream: &Stream, p: &ConvParams, v: Variant, io: ConvIo) -> Result<()> {
    if !candidates(p).contains(&v) && !wgmma_variants(p).contains(&v) {
        return Err(CudaError::Invalid(format!(
            "conv2d: {} does not compute {p:?}",
            v.name()
        )));
    }
    launch(stream, p, v, io)
}

/// Launches `v` on `p` after checking the regions' sizes against `p`.
fn launch(stream: &Stream, p: &ConvParams, v: Variant, io: ConvIo) -> Result<()> {
    let bad = |d: String| Err(CudaError::Invalid(format!("conv2d: {d}")));
    let ConvIo {
        x,
        w,
        bias,
        residual,
        y,
        workspace,
    } = io;
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
    if matches!(v.tile, Tile::Old { .. }) && p.act >= 5 {
        return bad(format!(
            "{} has no GELU epilogue (activation {}): the layer's GELU is a step of its own",
            v.name(),
            p.act
        ));
    }
    if v.vector() && !io.aligned() {
        return bad(format!(
            "{} needs x, w, y, bias, residual and workspace on 16-byte boundaries",
            v.name()
        ));
    }
    let (m_tiles, n_tiles) = (p.m.div_ceil(BM as u32), p.ng.div_ceil(v.bn().max(1)));
    let tc_blocks = |m_tiles: u32| {
        m_tiles
            .checked_mul(n_tiles)
            .filter(|&b| b < i32::MAX as u32)
            .ok_or_else(|| {
                CudaError::Invalid(format!(
                    "conv2d: {m_tiles} x {n_tiles} tiles are more blocks than one launch takes: lower the batch size"
                ))
            })
    };
    let shape = match v.tile {
        // Its own launcher builds the tensor maps (and checks the device).
        Tile::Sm90 { bn } => return super::conv_sm90::conv1x1_sm90(stream, p, bn, io),
        Tile::Sm90Gather { .. } => return super::conv_sm90::conv_gather_sm90(stream, p, io),
        Tile::Grouped { rows, cols } => {
            if p.n > u16::MAX as u32 {
                return bad(format!(
                    "{} takes at most 65535 images a launch (grid z), not {}: lower the batch size",
                    v.name(),
                    p.n
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
        }
        Tile::Depthwise => {
            LaunchShape::per_item(p.m as usize * p.cout as usize, THREADS, "depthwise conv2d")?
        }
        Tile::Tc { bm: 128, .. } => LaunchShape {
            grid: (tc_blocks(m_tiles)?, 1, p.groups),
            block: (THREADS, 1, 1),
            shared_bytes: 0,
        },
        Tile::Tc { bm, .. } => LaunchShape {
            grid: (tc_blocks(p.m.div_ceil(bm))?, 1, p.groups),
            block: (TC8_THREADS, 1, 1),
            shared_bytes: TC8_SHARED,
        },
        Tile::Old { .. } => LaunchShape {
            grid: (m_tiles, n_tiles, p.groups),
            block: (THREADS, 1, 1),
            shared_bytes: 0,
        },
    };
    match v.entry {
        Entry::Sm90(k) => bad(format!("{} with a {:?} tile", k.name, v.tile)),
        Entry::Sm90Gather(k) => bad(format!("{} with a {:?} tile", k.name, v.tile)),
        Entry::Whole(k) => stream.launch(k, shape, (x, w, bias, residual.unwrap_or(x), y, *p)),
        Entry::Split(k) => {
            let slices = split_slices(p);
            let Some(ws) = workspace.filter(|r| r.len() >= workspace_len(p)) else {
                return bad(format!(
                    "{} needs a workspace of {} fp32 elements ({slices} slices of K)",
                    k.name,
                    workspace_len(p)
                ));
            };
            let (blocks, _, groups) = shape.grid;
            let slices_shape = LaunchShape {
                grid: (blocks, slices, groups),
                ..shape
            };
            stream.launch(k, slices_shape, (x, w, ws, *p))?;
            let reduce = LaunchShape::per_item(y_len / 8, THREADS, "split-K reduce")?;
            stream.launch(
                &CONV_SPLIT_REDUCE,
                reduce,
                (ws, bias, residual.unwrap_or(x), y, *p, slices),
            )
        }
    }
}

/// CPU twin: the same bf16 products summed in f64.
pub mod cpu;
/// The kernel sets a device chooses from (mma.sync, or wgmma on sm_90a).
mod path;
pub use path::*;

#[cfg(test)]
pub(crate) mod tests;
