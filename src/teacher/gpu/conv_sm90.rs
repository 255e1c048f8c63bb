//! The Hopper path of the convolutions and linear layers
//! (kernels/conv_sm90.cu), over the same `ConvParams`, packed weights and
//! `ConvIo` as the conv_tc kernels, with the same fused epilogue and the
//! same CPU twin (`conv::cpu::conv2d`), on compute capability 9.0 only:
//! - `conv1x1_sm90`, a warp-specialized wgmma + TMA GEMM, takes stride-1
//!   unpadded ungrouped 1x1 layers with K and Cout multiples of 8 whose Cout
//!   a 128-wide tile pads by a quarter at most (`refusal`);
//! - `conv_gather_sm90`, the same consumers fed by producer threads that
//!   gather each tap's pixels with cp.async, takes the others whose Cin_g
//!   and Cout_g are multiples of 8, whose 64-channel chunks are at least
//!   3/4 full and whose Cout_g a gather tile divides (`gather_refusal`):
//!   the 3x3 layers of ResNet and ResNeXt (grouped at 48 to 384 channels a
//!   group), strided and dilated ones, strided 1x1 downsamples.
//!
//! What either refuses stays on the mma.sync kernels.

use crate::cuda::kernels::Kernel;
use crate::cuda::kernels::conv::ConvParams;
use crate::cuda::kernels::conv_sm90::{
    BK, BM, CONV_SM90_128X128_ANY, CONV_SM90_128X128_NONE, CONV_SM90_128X128_RELU,
    CONV_SM90_128X128_RELU_RES, CONV_SM90_128X256_ANY, CONV_SM90_128X256_NONE,
    CONV_SM90_128X256_RELU, CONV_SM90_128X256_RELU_RES, GATHER, Sm90GatherSig, Sm90Sig, THREADS,
    gather_shared_bytes, shared_bytes,
};
use crate::cuda::{CudaError, LaunchShape, Result, Stream, TensorMap};
use crate::teacher::gpu::conv::ConvIo;

/// Why the sm_90a kernels do not compute `p`, or `None` when they do.
pub fn refusal(p: &ConvParams) -> Option<String> {
    let one_by_one = (p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.groups) == (1, 1, 1, 1, 0, 0, 1);
    if !one_by_one {
        Some(format!(
            "a {}x{} stride {} pad {} conv in {} groups: the sm_90a GEMM takes stride-1 unpadded ungrouped 1x1 layers only",
            p.kh, p.kw, p.sh, p.ph, p.groups
        ))
    } else if !p.k.is_multiple_of(8) || p.k == 0 {
        Some(format!(
            "Cin {}: the sm_90a GEMM's tensor maps take rows of a multiple of 16 bytes (8 channels)",
            p.k
        ))
    } else if !p.cout.is_multiple_of(8) || p.cout * 4 < p.cout.div_ceil(128) * 128 * 3 {
        Some(format!(
            "Cout {}: the sm_90a GEMM takes a multiple of 8 that 128-wide tiles pad by a quarter at most (the mma.sync kernels' narrower tiles waste less)",
            p.cout
        ))
    } else if p.has_bias != 1 {
        Some("no bias region: the sm_90a GEMM always adds one (zeros for none)".into())
    } else {
        None
    }
}

/// Output channels a block computes: 256 (half the x traffic, twice the
/// tensor time per loop trip) where Cout allows, else 128.
pub fn tile_n(p: &ConvParams) -> u32 {
    if p.cout.is_multiple_of(256) { 256 } else { 128 }
}

/// The entry point of tile `bn` with `p`'s epilogue: conv (+BN), +ReLU and
/// +residual+ReLU fixed at compile time, `_any` otherwise.
pub fn kernel(p: &ConvParams, bn: u32) -> &'static Kernel<Sm90Sig> {
    let wide = bn == 256;
    match (p.act, p.has_residual) {
        (0, 0) if wide => &CONV_SM90_128X256_NONE,
        (1, 0) if wide => &CONV_SM90_128X256_RELU,
        (1, 1) if wide => &CONV_SM90_128X256_RELU_RES,
        _ if wide => &CONV_SM90_128X256_ANY,
        (0, 0) => &CONV_SM90_128X128_NONE,
        (1, 0) => &CONV_SM90_128X128_RELU,
        (1, 1) => &CONV_SM90_128X128_RELU_RES,
        _ => &CONV_SM90_128X128_ANY,
    }
}

/// Launches `y = act(x w^T + bias [+ residual])` for the 1x1 layer `p` with
/// `bn` (128, or 256 when Cout allows) output channels a block, or refuses
/// (device, shape, regions) with the reason, so that the caller takes the
/// mma.sync kernels instead.
pub fn conv1x1_sm90(stream: &Stream, p: &ConvParams, bn: u32, io: ConvIo) -> Result<()> {
    let bad = |d: String| Err(CudaError::Invalid(format!("conv1x1_sm90: {d}")));
    if let Some(why) = refusal(p) {
        return bad(why);
    }
    if !(bn == 128 || bn == 256 && tile_n(p) == 256) {
        return bad(format!("tile of {bn} output channels for Cout {}", p.cout));
    }
    let (m, k) = (p.m as u64, p.k as u64);
    let shape = launch_shape(stream, p, &io, BM, bn).map_err(|e| prefix("conv1x1_sm90", e))?;
    // The tensor map checks x against M x K.
    let map_x = TensorMap::bf16_2d_swizzle128(io.x, m, k, BM, BK)?;
    let map_w = weights_map(p, &io, bn)?;
    let ConvIo {
        x,
        bias,
        residual,
        y,
        ..
    } = io;
    stream.launch(
        kernel(p, bn),
        shape,
        (map_x, map_w, bias, residual.unwrap_or(x), y, *p),
    )
}

/// Why the gather kernels do not compute `p`, or `None` when they do.
pub fn gather_refusal(p: &ConvParams) -> Option<String> {
    let chunks = p.cin_g.div_ceil(BK);
    if !p.cin_g.is_multiple_of(8) || !p.ng.is_multiple_of(8) || p.cin_g == 0 {
        Some(format!(
            "Cin_g {} / Cout_g {}: the sm_90a gather copies 16 bytes (8 channels) at a time",
            p.cin_g, p.ng
        ))
    } else if p.cin_g * 4 < chunks * BK * 3 {
        Some(format!(
            "Cin_g {}: its 64-channel chunks are under 3/4 full (the mma.sync grouped kernels waste less)",
            p.cin_g
        ))
    } else if p.kh * p.kw > 32 {
        Some(format!(
            "a {}x{} kernel: the sm_90a gather keeps a row's taps in a 32-bit mask",
            p.kh, p.kw
        ))
    } else if gather_tile(p).is_none() {
        Some(format!(
            "Cout_g {}: no sm_90a gather tile (48, 64, 96, 128, 192, 256 channels) divides it",
            p.ng
        ))
    } else if p.has_bias != 1 {
        Some("no bias region: the sm_90a kernels always add one (zeros for none)".into())
    } else if image_elements(p) >= GATHER_ELEMENTS {
        Some(format!(
            "an input image of {}x{}x{}: the sm_90a gather's offsets are 32-bit",
            p.h, p.w, p.cin
        ))
    } else {
        None
    }
}

/// The gather tile (pixels, output channels) for `p`: the widest whose
/// channels divide Cout_g (a tile never spans two groups); an ungrouped
/// layer no tile divides takes 128 channels if that pads Cout by a quarter
/// at most.
pub fn gather_tile(p: &ConvParams) -> Option<(u32, u32)> {
    let fits = GATHER
        .iter()
        .rev()
        .find(|(_, bn, _)| p.ng.is_multiple_of(*bn))
        .map(|&(bm, bn, _)| (bm, bn));
    let ragged = p.groups == 1 && p.cout * 4 >= p.cout.div_ceil(128) * 128 * 3;
    fits.or(ragged.then_some((256, 128)))
}

/// The gather entry point of tile (`bm`, `bn`) with `p`'s epilogue.
pub fn gather_kernel(p: &ConvParams, bm: u32, bn: u32) -> Option<&'static Kernel<Sm90GatherSig>> {
    let relu = (p.act, p.has_residual) == (1, 0);
    GATHER
        .iter()
        .find(|(m, n, _)| (*m, *n) == (bm, bn))
        .map(|(_, _, k)| k[if relu { 0 } else { 1 }])
}

/// Elements of x a gather launch may span: its offsets are 32-bit signed.
const GATHER_ELEMENTS: u64 = 1 << 31;

fn image_elements(p: &ConvParams) -> u64 {
    p.h as u64 * p.w as u64 * p.cin as u64
}

/// Launches the convolution `p` on the gather kernels with tile
/// `gather_tile(p)`, or refuses (device, shape, regions) with the reason.
/// A batch whose input passes 2^31 elements runs as several launches of
/// whole images: the same bits, since no image's sums involve another's.
pub fn conv_gather_sm90(stream: &Stream, p: &ConvParams, io: ConvIo) -> Result<()> {
    gather_in_launches(stream, p, io, GATHER_ELEMENTS)
}

/// `conv_gather_sm90` with launches of at most `limit` elements of x.
fn gather_in_launches(stream: &Stream, p: &ConvParams, io: ConvIo, limit: u64) -> Result<()> {
    let bad = |d: String| Err(CudaError::Invalid(format!("conv_gather_sm90: {d}")));
    if let Some(why) = gather_refusal(p) {
        return bad(why);
    }
    let x_len = p.n as u64 * image_elements(p);
    if (io.x.len() as u64) < x_len {
        return bad(format!(
            "input region of {} for {x_len} elements",
            io.x.len()
        ));
    }
    let per_launch = ((limit - 1) / image_elements(p)).clamp(1, p.n as u64) as u32;
    let (x_image, y_image) = (image_elements(p) as usize, (p.oh * p.ow * p.cout) as usize);
    let mut first = 0;
    while first < p.n {
        let n = per_launch.min(p.n - first);
        let part = ConvParams {
            n,
            m: n * p.oh * p.ow,
            ..*p
        };
        let (xs, ys) = (first as usize * x_image, first as usize * y_image);
        let part_io = ConvIo {
            x: io.x.sub(xs..xs + n as usize * x_image)?,
            y: io.y.sub(ys..ys + n as usize * y_image)?,
            residual: io
                .residual
                .map(|r| r.sub(ys..ys + n as usize * y_image))
                .transpose()?,
            ..io
        };
        gather_launch(stream, &part, part_io)?;
        first += n;
    }
    Ok(())
}

/// One launch of `conv_gather_sm90`, x within 2^31 elements.
fn gather_launch(stream: &Stream, p: &ConvParams, io: ConvIo) -> Result<()> {
    let bad = |d: String| Err(CudaError::Invalid(format!("conv_gather_sm90: {d}")));
    let Some((bm, bn)) = gather_tile(p) else {
        return bad(format!("no tile for Cout_g {}", p.ng));
    };
    let mut shape =
        launch_shape(stream, p, &io, bm, bn).map_err(|e| prefix("conv_gather_sm90", e))?;
    shape.shared_bytes = gather_shared_bytes(bm, bn);
    let map_w = weights_map(p, &io, bn)?;
    let ConvIo {
        x,
        bias,
        residual,
        y,
        ..
    } = io;
    let Some(k) = gather_kernel(p, bm, bn) else {
        return bad(format!("no entry point of tile {bm}x{bn}"));
    };
    stream.launch(k, shape, (map_w, x, bias, residual.unwrap_or(x), y, *p))
}

fn prefix(who: &str, e: CudaError) -> CudaError {
    match e {
        CudaError::Invalid(d) => CudaError::Invalid(format!("{who}: {d}")),
        other => other,
    }
}

/// The checks both launchers share (the device, the output, bias and
/// residual regions, 16-byte alignment) and the launch over the `bm` x `bn`
/// tiles (the output-channel tiles fastest).
fn launch_shape(
    stream: &Stream,
    p: &ConvParams,
    io: &ConvIo,
    bm: u32,
    bn: u32,
) -> Result<LaunchShape> {
    let bad = |d: String| Err(CudaError::Invalid(d));
    let info = stream.gpu().info();
    if info.compute_capability != (9, 0) {
        return Err(CudaError::Invalid(format!(
            "device {} is {}, the wgmma kernels need compute capability 9.0 (sm_90a)",
            info.name,
            info.arch()
        )));
    }
    let (m, n) = (p.m as u64, p.cout as u64);
    let ConvIo {
        x,
        w,
        bias,
        residual,
        y,
        ..
    } = *io;
    if (y.len() as u64) < m * n || (bias.len() as u64) < n {
        return bad(format!("output or bias region too small for {p:?}"));
    }
    if (p.has_residual == 1) != residual.is_some()
        || residual.is_some_and(|r| (r.len() as u64) < m * n)
    {
        return bad("residual flag and region disagree, or the residual is short".into());
    }
    let aligned = [x, w, y].iter().all(|r| r.is_aligned(16))
        && bias.is_aligned(16)
        && residual.is_none_or(|r| r.is_aligned(16));
    if !aligned {
        return bad("x, w, y, bias and residual must start on 16-byte boundaries".into());
    }
    let blocks =
        p.m.div_ceil(bm)
            .checked_mul(p.cout.div_ceil(bn))
            .filter(|&b| b < i32::MAX as u32)
            .ok_or_else(|| {
                CudaError::Invalid(format!(
                    "{p:?} needs more blocks than one launch takes: lower the batch size"
                ))
            })?;
    // Persistent blocks, one an SM (their shared memory and 384 threads of
    // 168 registers take a whole SM), each looping over the tiles
    // blockIdx.x, + gridDim.x, ...: a block's next tile streams into the
    // ring while it stores the last, and no block pays the launch and the
    // pipeline's fill more than once.
    Ok(LaunchShape {
        grid: (blocks.min(info.sm_count.max(1)), 1, 1),
        block: (THREADS, 1, 1),
        shared_bytes: shared_bytes(bn),
    })
}

/// The packed weights [Cout][K_pad] in boxes of `bn` rows x 64 columns; the
/// columns past K_pad (a gather's last chunk) and rows past Cout load as zeros.
fn weights_map(p: &ConvParams, io: &ConvIo, bn: u32) -> Result<TensorMap> {
    TensorMap::bf16_2d_swizzle128(io.w, p.cout as u64, p.k_pad as u64, bn, BK)
}

#[cfg(test)]
mod tests;
