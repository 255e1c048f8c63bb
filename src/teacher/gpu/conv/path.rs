//! The two kernel sets a plan's convolutions are chosen from. The mma.sync
//! kernels (kernels/conv.cu, conv_grouped.cu) run on every device from
//! sm_80; on Hopper (compute capability 9.0, with an sm_90a build) the
//! layers that kernels/conv_sm90.cu takes run there instead (wgmma; the 1x1
//! ones fed by the TMA, the others by a cp.async gather), the others as
//! before. The two sets sum in different orders, so a plan's
//! bits depend on its path: the path is a function of the device (and of
//! `DR_CONV_KERNELS`), never of the batch, and it is part of the executor's
//! name in a manifest (pipeline/gpu.rs), so that a resume or a merge never
//! mixes records of the two.

use super::{Entry, Tile, Variant, candidates, split_slices, variant};
use crate::cuda::kernels::KERNEL_TARGETS;
use crate::cuda::kernels::conv::ConvParams;
use crate::cuda::{CudaError, DeviceInfo, Result};
use crate::teacher::gpu::conv_sm90;

/// Which kernels a plan's convolutions take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvPath {
    /// kernels/conv.cu and conv_grouped.cu only: any device from sm_80.
    #[default]
    MmaSync,
    /// The layers kernels/conv_sm90.cu computes (`wgmma_variants`) there,
    /// the rest as `MmaSync`: compute capability 9.0 only.
    Wgmma,
}

/// The environment variable that overrides the device's path: `auto` (the
/// default: wgmma wherever it runs), `mma-sync` (an H100 then computes the
/// bytes an A100 does) or `wgmma`.
pub const PATH_ENV: &str = "DR_CONV_KERNELS";

impl ConvPath {
    pub fn name(self) -> &'static str {
        match self {
            ConvPath::MmaSync => "mma-sync",
            ConvPath::Wgmma => "wgmma",
        }
    }

    /// The path `device` runs: `DR_CONV_KERNELS`, else the fastest it has.
    pub fn for_device(device: &DeviceInfo) -> Result<ConvPath> {
        let setting = std::env::var(PATH_ENV).unwrap_or_default();
        let runs = wgmma_runs_on(device);
        match setting.as_str() {
            "" | "auto" if runs => Ok(ConvPath::Wgmma),
            "" | "auto" | "mma-sync" => Ok(ConvPath::MmaSync),
            "wgmma" => ConvPath::Wgmma
                .check(device)
                .map(|()| ConvPath::Wgmma)
                .map_err(|e| {
                    CudaError::Unavailable(format!("{PATH_ENV}=wgmma: {e}. Fix: unset {PATH_ENV}"))
                }),
            other => Err(CudaError::Invalid(format!(
                "{PATH_ENV}={other:?}: not a kernel set. Fix: auto, mma-sync or wgmma"
            ))),
        }
    }

    /// Refuses a plan of this path on `device`.
    pub fn check(self, device: &DeviceInfo) -> Result<()> {
        if self == ConvPath::Wgmma && !wgmma_runs_on(device) {
            return Err(CudaError::Unavailable(format!(
                "device {} ({}) cannot run the wgmma kernels, which need compute capability 9.0 and a build for sm_90a (this one: `{}`)",
                device.name,
                device.arch(),
                KERNEL_TARGETS.unwrap_or("no kernels")
            )));
        }
        Ok(())
    }
}

/// Whether `device` can run kernels/conv_sm90.cu: compute capability 9.0
/// and this build's kernels include sm_90a machine code (other targets
/// compile it to a stub that traps).
pub fn wgmma_runs_on(device: &DeviceInfo) -> bool {
    device.compute_capability == (9, 0)
        && KERNEL_TARGETS.is_some_and(|t| t.split_whitespace().any(|a| a == "sm_90a"))
}

/// The wgmma kernels that compute `p`, the rule's first: for a 1x1 layer
/// the TMA GEMM takes, the wide tile where Cout allows, then the 128-wide
/// one (both give the same bits: a tile fixes which rows and columns a
/// block computes, not the order of an element's sum); else the gather
/// kernels' tile (`conv_sm90::gather_tile`). None for a layer both refuse
/// (`conv_sm90::refusal`, `gather_refusal`) or that is split along K (a
/// fully connected layer at a small batch: its slices fill the device, one
/// 128-row tile would not).
pub fn wgmma_variants(p: &ConvParams) -> Vec<Variant> {
    if split_slices(p) > 1 {
        return vec![];
    }
    if conv_sm90::refusal(p).is_some() {
        // The gather kernels: one tile (which fixes only the grid, as above).
        return conv_sm90::gather_tile(p)
            .filter(|_| conv_sm90::gather_refusal(p).is_none())
            .and_then(|(bm, bn)| {
                let k = conv_sm90::gather_kernel(p, bm, bn)?;
                Some(Variant {
                    entry: Entry::Sm90Gather(k),
                    tile: Tile::Sm90Gather { bm, bn },
                })
            })
            .into_iter()
            .collect();
    }
    let wide = conv_sm90::tile_n(p);
    let tiles: &[u32] = if wide == 128 { &[128] } else { &[wide, 128] };
    tiles
        .iter()
        .map(|&bn| Variant {
            entry: Entry::Sm90(conv_sm90::kernel(p, bn)),
            tile: Tile::Sm90 { bn },
        })
        .collect()
}

/// The kernel `path` takes for `p` (`variant` on the mma.sync path).
pub fn variant_on(p: &ConvParams, path: ConvPath) -> Variant {
    match path {
        ConvPath::Wgmma => wgmma_variants(p)
            .first()
            .copied()
            .unwrap_or_else(|| variant(p)),
        ConvPath::MmaSync => variant(p),
    }
}

/// Every kernel of `path` that computes `p`, all giving the same bits, the
/// first `variant_on(p, path)`: a layer the wgmma kernels take is never
/// offered the mma.sync ones (other bits), nor the reverse.
pub fn candidates_on(p: &ConvParams, path: ConvPath) -> Vec<Variant> {
    match (path, wgmma_variants(p)) {
        (ConvPath::Wgmma, w) if !w.is_empty() => w,
        _ => candidates(p),
    }
}
