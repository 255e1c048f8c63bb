//! The Hopper path of the 1x1 convolutions and linear layers
//! (kernels/conv_sm90.cu): a warp-specialized wgmma + TMA GEMM over the same
//! `ConvParams`, packed weights and `ConvIo` as the conv_tc kernels, with the
//! same fused epilogue and the same CPU twin (`conv::cpu::conv2d`). It runs
//! on compute capability 9.0 only, and takes stride-1 unpadded ungrouped 1x1
//! layers with K and Cout multiples of 8 whose Cout a 128-wide tile pads by
//! a quarter at most; `refusal` names what else keeps a layer on the
//! mma.sync kernels.

use crate::cuda::kernels::Kernel;
use crate::cuda::kernels::conv::ConvParams;
use crate::cuda::kernels::conv_sm90::{
    BK, BM, CONV_SM90_128X128_ANY, CONV_SM90_128X128_NONE, CONV_SM90_128X128_RELU,
    CONV_SM90_128X128_RELU_RES, CONV_SM90_128X256_ANY, CONV_SM90_128X256_NONE,
    CONV_SM90_128X256_RELU, CONV_SM90_128X256_RELU_RES, Sm90Sig, THREADS, shared_bytes,
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
    let info = stream.gpu().info();
    if info.compute_capability != (9, 0) {
        return bad(format!(
            "device {} is {}, the wgmma kernels need compute capability 9.0 (sm_90a)",
            info.name,
            info.arch()
        ));
    }
    if let Some(why) = refusal(p) {
        return bad(why);
    }
    if !(bn == 128 || bn == 256 && tile_n(p) == 256) {
        return bad(format!("tile of {bn} output channels for Cout {}", p.cout));
    }
    let (m, k, n) = (p.m as u64, p.k as u64, p.cout as u64);
    // The weights' packed columns past K are zeros: the map reads all of them.
    let k_pad = p.k_pad as u64;
    let ConvIo {
        x,
        w,
        bias,
        residual,
        y,
        ..
    } = io;
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
    // The tensor maps check x and w against M x K and N x K_pad.
    let map_x = TensorMap::bf16_2d_swizzle128(x, m, k, BM, BK)?;
    let map_w = TensorMap::bf16_2d_swizzle128(w, n, k_pad, bn, BK)?;
    let blocks = p
        .m
        .div_ceil(BM)
        .checked_mul(p.cout.div_ceil(bn))
        .filter(|&b| b < i32::MAX as u32)
        .ok_or_else(|| {
            CudaError::Invalid(format!(
                "conv1x1_sm90: {p:?} needs more blocks than one launch takes: lower the batch size"
            ))
        })?;
    let shape = LaunchShape {
        grid: (blocks, 1, 1),
        block: (THREADS, 1, 1),
        shared_bytes: shared_bytes(bn),
    };
    stream.launch(
        kernel(p, bn),
        shape,
        (map_x, map_w, bias, residual.unwrap_or(x), y, *p),
    )
}

#[cfg(test)]
mod tests;
