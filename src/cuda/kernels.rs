//! The kernels this build embeds, as data: families (one `kernels/<family>.cu`
//! and one CUDA module each) and their entry points with Rust signatures.
//!
//! A `Kernel<S>` names an `extern "C"` entry point and states its C signature
//! as a tuple of argument kinds (`In<T>` = `const T*`, `Out<T>` = `T*`,
//! scalars by value), so a launcher can only pass arguments of those types in
//! that order. The signature written here is the contract with the `.cu`;
//! a mismatch is caught by the kernel's CPU-vs-GPU test, and the names are
//! checked against the ptxas report at build-test time (no GPU needed) and by
//! loading every one of them in the GPU smoke test.

use std::marker::PhantomData;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}

/// Targets the embedded fatbins hold, e.g. "sm_80 sm_86 sm_89 sm_90a compute_80";
/// `None` when built without nvcc.
pub const KERNEL_TARGETS: Option<&str> = embedded::KERNEL_TARGETS;
/// The nvcc release that built them, e.g. "13.0".
pub const NVCC_VERSION: Option<&str> = embedded::NVCC_VERSION;

/// `const T*` argument: the kernel reads this buffer.
pub struct In<T>(PhantomData<T>);
/// `T*` argument: the kernel writes (and may read) this buffer.
pub struct Out<T>(PhantomData<T>);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Memops,
    Topk,
    Augment,
    Randaug,
}

impl Family {
    pub const ALL: &'static [Family] = &[
        Family::Memops,
        Family::Topk,
        Family::Augment,
        Family::Randaug,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Family::Memops => "memops",
            Family::Topk => "topk",
            Family::Augment => "augment",
            Family::Randaug => "randaug",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }

    /// Every entry point declared for this family.
    pub fn entry_points(self) -> &'static [&'static str] {
        match self {
            Family::Memops => memops::ALL,
            Family::Topk => topk::ALL,
            Family::Augment => augment::ALL,
            Family::Randaug => randaug::ALL,
        }
    }

    /// The embedded fatbin, or `None` when built without nvcc.
    pub fn fatbin(self) -> Option<&'static [u8]> {
        embedded::FATBINS
            .iter()
            .find(|(name, _, _)| *name == self.name())
            .map(|(_, bin, _)| *bin)
    }

    /// ptxas's `-v` resource report for this family (registers, spills).
    pub fn ptxas_report(self) -> Option<&'static str> {
        embedded::FATBINS
            .iter()
            .find(|(name, _, _)| *name == self.name())
            .map(|(_, _, report)| *report)
    }
}

/// Families compiled into this build (all of them, or none without nvcc).
pub fn built_families() -> Vec<&'static str> {
    embedded::FATBINS.iter().map(|(name, _, _)| *name).collect()
}

/// An entry point with its signature `S`.
pub struct Kernel<S> {
    pub family: Family,
    pub name: &'static str,
    signature: PhantomData<fn(S)>,
}

impl<S> Kernel<S> {
    pub const fn new(family: Family, name: &'static str) -> Self {
        Kernel {
            family,
            name,
            signature: PhantomData,
        }
    }
}

/// kernels/memops.cu
pub mod memops {
    use super::*;
    pub const COPY_BYTES: Kernel<(In<u8>, Out<u8>, u64)> =
        Kernel::new(Family::Memops, "copy_bytes");
    pub const FILL_U32: Kernel<(Out<u32>, u32, u64)> = Kernel::new(Family::Memops, "fill_u32");
    pub const ALL: &[&str] = &[COPY_BYTES.name, FILL_U32.name];
    /// Threads a block, `MEMOPS_THREADS` in the .cu.
    pub const THREADS: u32 = 256;
}

/// kernels/topk.cu
pub mod topk {
    use super::*;
    /// (logits, members, rows, classes, inv_t, k, probs workspace, out_vals, out_ids)
    #[allow(clippy::type_complexity)]
    pub const ENSEMBLE_TOPK_F32: Kernel<(
        In<f32>,
        u32,
        u32,
        u32,
        f32,
        u32,
        Out<f32>,
        Out<f32>,
        Out<u32>,
    )> = Kernel::new(Family::Topk, "ensemble_topk_f32");
    /// (probs, classes, k, out_vals, out_ids)
    #[allow(clippy::type_complexity)]
    pub const TOPK_RANK_F32: Kernel<(In<f32>, u32, u32, Out<f32>, Out<u32>)> =
        Kernel::new(Family::Topk, "topk_rank_f32");
    pub const ALL: &[&str] = &[ENSEMBLE_TOPK_F32.name, TOPK_RANK_F32.name];
    /// `TOPK_THREADS` and `TOPK_MAX_K` in the .cu.
    pub const THREADS: u32 = 256;
    pub const MAX_K: usize = 1024;
}

/// kernels/augment.cu
pub mod augment {
    use super::*;
    /// (src, dst, descriptors, first, count, weights)
    #[allow(clippy::type_complexity)]
    pub const RESAMPLE_PASS_U8: Kernel<(In<u8>, Out<u8>, In<u32>, In<u32>, In<u32>, In<i32>)> =
        Kernel::new(Family::Augment, "resample_pass_u8");
    /// (crops, descriptors, norm {mean[3], std[3]}, out, width, height)
    #[allow(clippy::type_complexity)]
    pub const FINISH_F32_NCHW: Kernel<(In<u8>, In<u32>, In<f32>, Out<f32>, u32, u32)> =
        Kernel::new(Family::Augment, "finish_f32_nchw");
    /// As FINISH_F32_NCHW, into bf16 bits NHWC.
    #[allow(clippy::type_complexity)]
    pub const FINISH_BF16_NHWC: Kernel<(In<u8>, In<u32>, In<f32>, Out<u16>, u32, u32)> =
        Kernel::new(Family::Augment, "finish_bf16_nhwc");
    pub const ALL: &[&str] = &[
        RESAMPLE_PASS_U8.name,
        FINISH_F32_NCHW.name,
        FINISH_BF16_NHWC.name,
    ];
    /// `RESAMPLE_THREADS`, `RESAMPLE_DESC` and `FINISH_DESC` in the .cu.
    pub const RESAMPLE_THREADS: u32 = 256;
    pub const RESAMPLE_DESC: usize = 10;
    pub const FINISH_DESC: usize = 17;
}

/// kernels/randaug.cu
pub mod randaug {
    use super::*;
    /// (crops, scratch, descriptors, program, width, height)
    #[allow(clippy::type_complexity)]
    pub const RANDAUG_U8: Kernel<(Out<u8>, Out<u8>, In<u32>, In<u32>, u32, u32)> =
        Kernel::new(Family::Randaug, "randaug_u8");
    pub const ALL: &[&str] = &[RANDAUG_U8.name];
    /// `RANDAUG_THREADS`, `RANDAUG_DESC` and `RANDAUG_OP_WORDS` in the .cu.
    pub const THREADS: u32 = 512;
    pub const DESC: usize = 3;
    pub const OP_WORDS: usize = 13;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::ptxas;

    #[test]
    fn declared_entry_points_match_the_compiled_ones() {
        if KERNEL_TARGETS.is_none() {
            println!("skipped: built without nvcc (no ptxas report to check names against)");
            return;
        }
        assert_eq!(
            built_families().len(),
            Family::ALL.len(),
            "a kernels/*.cu has no Family"
        );
        for f in Family::ALL {
            let report = ptxas::parse(f.ptxas_report().expect("report embedded"));
            let mut compiled: Vec<&str> = report.iter().map(|k| k.name.as_str()).collect();
            compiled.sort_unstable();
            compiled.dedup();
            let mut declared = f.entry_points().to_vec();
            declared.sort_unstable();
            assert_eq!(
                compiled,
                declared,
                "family {}: compiled vs declared entry points",
                f.name()
            );
        }
    }
}
