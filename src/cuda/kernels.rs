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
    Conv,
    ConvGrouped,
    Pool,
    Eltwise,
    Norm,
    Attention,
    Layout,
    ConvSm90,
}

impl Family {
    pub const ALL: &'static [Family] = &[
        Family::Memops,
        Family::Topk,
        Family::Augment,
        Family::Randaug,
        Family::Conv,
        Family::ConvGrouped,
        Family::Pool,
        Family::Eltwise,
        Family::Norm,
        Family::Attention,
        Family::Layout,
        Family::ConvSm90,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Family::Memops => "memops",
            Family::Topk => "topk",
            Family::Augment => "augment",
            Family::Randaug => "randaug",
            Family::Conv => "conv",
            Family::ConvGrouped => "conv_grouped",
            Family::Pool => "pool",
            Family::Eltwise => "eltwise",
            Family::Norm => "norm",
            Family::Attention => "attention",
            Family::Layout => "layout",
            Family::ConvSm90 => "conv_sm90",
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
            Family::Conv => conv::ALL,
            Family::ConvGrouped => conv_grouped::ALL,
            Family::Pool => pool::ALL,
            Family::Eltwise => eltwise::ALL,
            Family::Norm => norm::ALL,
            Family::Attention => attention::ALL,
            Family::Layout => layout::ALL,
            Family::ConvSm90 => conv_sm90::ALL,
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
    /// As FINISH_F32_NCHW, into bf16 bits NHWC with the last argument's
    /// channels a pixel (3, or 8 with five zeros: 16-byte aligned `out`).
    #[allow(clippy::type_complexity)]
    pub const FINISH_BF16_NHWC: Kernel<(In<u8>, In<u32>, In<f32>, Out<u16>, u32, u32, u32)> =
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

/// kernels/conv.cu
pub mod conv {
    use super::*;

    /// `ConvParams` of the .cu, passed by value (96 bytes on both sides).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct ConvParams {
        pub n: u32,
        pub h: u32,
        pub w: u32,
        pub cin: u32,
        pub oh: u32,
        pub ow: u32,
        pub cout: u32,
        pub groups: u32,
        pub cin_g: u32,
        pub ng: u32,
        pub kh: u32,
        pub kw: u32,
        pub sh: u32,
        pub sw: u32,
        pub ph: u32,
        pub pw: u32,
        pub dh: u32,
        pub dw: u32,
        /// KH*KW*Cin_g, and that rounded up to a multiple of `BK`.
        pub k: u32,
        pub k_pad: u32,
        /// N*OH*OW.
        pub m: u32,
        /// 0 none, 1 ReLU, 2 SiLU, 3 HardSwish, 4 sigmoid, 5 GELU (erf),
        /// 6 GELU (tanh form).
        pub act: u32,
        pub has_bias: u32,
        pub has_residual: u32,
    }
    const _: () = assert!(size_of::<ConvParams>() == 96);

    /// (x, packed weights, bias, residual, y, params); bf16 as u16 bits.
    pub type ConvSig = (In<u16>, In<u16>, In<f32>, In<u16>, Out<u16>, ConvParams);
    pub const CONV_BF16_128X64_V8: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_bf16_128x64_v8");
    pub const CONV_BF16_128X32_V8: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_bf16_128x32_v8");
    pub const CONV_BF16_128X16_V8: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_bf16_128x16_v8");
    pub const CONV_BF16_128X8_V8: Kernel<ConvSig> = Kernel::new(Family::Conv, "conv_bf16_128x8_v8");
    pub const CONV_BF16_128X64_V1: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_bf16_128x64_v1");
    pub const CONV_DEPTHWISE_BF16_NHWC: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_depthwise_bf16_nhwc");
    /// The pipelined tensor-core kernels: tile, gather (rows: Cin_g % 32 == 0;
    /// chunks: Cin_g % 8 == 0, and >= 32 in the 48-wide tile) and the epilogue fixed at compile time
    /// (`_any`: the activation and residual read from the parameters).
    pub const CONV_TC_128X128_NONE: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_tc_128x128_none");
    pub const CONV_TC_128X128_RELU: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_tc_128x128_relu");
    pub const CONV_TC_128X128_RELU_RES: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_tc_128x128_relu_res");
    pub const CONV_TC_128X128_ANY: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_tc_128x128_any");
    pub const CONV_TC_128X64_NONE: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_tc_128x64_none");
    pub const CONV_TC_128X64_RELU: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_tc_128x64_relu");
    pub const CONV_TC_128X64_RELU_RES: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_tc_128x64_relu_res");
    pub const CONV_TC_128X64_ANY: Kernel<ConvSig> = Kernel::new(Family::Conv, "conv_tc_128x64_any");
    pub const CONV_TC_128X64_CHUNKS_ANY: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_tc_128x64_chunks_any");
    pub const CONV_TC_128X48_CHUNKS_RELU: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_tc_128x48_chunks_relu");
    pub const CONV_TC_128X48_CHUNKS_ANY: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_tc_128x48_chunks_any");
    /// 256x128 tiles: 8 warps (`TC8_THREADS`), `TC8_SHARED` bytes of
    /// dynamic shared memory; the row gather (Cin_g % 32 == 0).
    pub const CONV_TC_256X128_NONE: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_tc_256x128_none");
    pub const CONV_TC_256X128_RELU: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_tc_256x128_relu");
    pub const CONV_TC_256X128_RELU_RES: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_tc_256x128_relu_res");
    pub const CONV_TC_256X128_ANY: Kernel<ConvSig> =
        Kernel::new(Family::Conv, "conv_tc_256x128_any");
    /// Split K (`conv_split_reduce` after): (x, packed weights, fp32
    /// workspace [slices][M][Cout], params); grid y = slice.
    pub type ConvSplitSig = (In<u16>, In<u16>, Out<f32>, ConvParams);
    pub const CONV_TC_128X128_SPLIT: Kernel<ConvSplitSig> =
        Kernel::new(Family::Conv, "conv_tc_128x128_split");
    pub const CONV_TC_128X64_SPLIT: Kernel<ConvSplitSig> =
        Kernel::new(Family::Conv, "conv_tc_128x64_split");
    pub const CONV_TC_128X64_CHUNKS_SPLIT: Kernel<ConvSplitSig> =
        Kernel::new(Family::Conv, "conv_tc_128x64_chunks_split");
    /// (workspace, bias, residual, y, params, slices).
    pub type ConvReduceSig = (In<f32>, In<f32>, In<u16>, Out<u16>, ConvParams, u32);
    pub const CONV_SPLIT_REDUCE: Kernel<ConvReduceSig> =
        Kernel::new(Family::Conv, "conv_split_reduce");
    pub const ALL: &[&str] = &[
        CONV_BF16_128X64_V8.name,
        CONV_BF16_128X32_V8.name,
        CONV_BF16_128X16_V8.name,
        CONV_BF16_128X8_V8.name,
        CONV_BF16_128X64_V1.name,
        CONV_DEPTHWISE_BF16_NHWC.name,
        CONV_TC_128X128_NONE.name,
        CONV_TC_128X128_RELU.name,
        CONV_TC_128X128_RELU_RES.name,
        CONV_TC_128X128_ANY.name,
        CONV_TC_128X64_NONE.name,
        CONV_TC_128X64_RELU.name,
        CONV_TC_128X64_RELU_RES.name,
        CONV_TC_128X64_ANY.name,
        CONV_TC_128X64_CHUNKS_ANY.name,
        CONV_TC_128X48_CHUNKS_RELU.name,
        CONV_TC_128X48_CHUNKS_ANY.name,
        CONV_TC_256X128_NONE.name,
        CONV_TC_256X128_RELU.name,
        CONV_TC_256X128_RELU_RES.name,
        CONV_TC_256X128_ANY.name,
        CONV_TC_128X128_SPLIT.name,
        CONV_TC_128X64_SPLIT.name,
        CONV_TC_128X64_CHUNKS_SPLIT.name,
        CONV_SPLIT_REDUCE.name,
    ];
    /// `CONV_THREADS` and `CONV_BK` in the .cu; every variant's BM.
    pub const THREADS: u32 = 128;
    pub const BK: usize = 32;
    pub const BM: usize = 128;
    /// The 256x128 tile's block (2 x `CONV_THREADS`) and dynamic shared
    /// memory (`CONV_TC_256_SMEM`: three stages of 384 rows of 64 bytes,
    /// and 128 to align them).
    pub const TC8_THREADS: u32 = 256;
    pub const TC8_SHARED: u32 = 3 * (256 + 128) * 64 + 128;
    /// `CONV_SPLIT_TILES`: k-tiles of BK a split-K slice sums.
    pub const SPLIT_TILES: usize = 8;
}

/// kernels/conv_grouped.cu: ResNeXt's narrow-group 3x3 convolutions, same
/// signature and parameters as kernels/conv.cu.
pub mod conv_grouped {
    use super::*;
    use conv::ConvSig;

    /// Stride, output rows x columns a block, epilogue (`_any`: p.act).
    pub const CONV_GROUPED_S1_4X32_RELU: Kernel<ConvSig> =
        Kernel::new(Family::ConvGrouped, "conv_grouped_s1_4x32_relu");
    pub const CONV_GROUPED_S1_4X32_ANY: Kernel<ConvSig> =
        Kernel::new(Family::ConvGrouped, "conv_grouped_s1_4x32_any");
    pub const CONV_GROUPED_S1_7X16_RELU: Kernel<ConvSig> =
        Kernel::new(Family::ConvGrouped, "conv_grouped_s1_7x16_relu");
    pub const CONV_GROUPED_S1_7X16_ANY: Kernel<ConvSig> =
        Kernel::new(Family::ConvGrouped, "conv_grouped_s1_7x16_any");
    pub const CONV_GROUPED_S2_3X16_RELU: Kernel<ConvSig> =
        Kernel::new(Family::ConvGrouped, "conv_grouped_s2_3x16_relu");
    pub const CONV_GROUPED_S2_3X16_ANY: Kernel<ConvSig> =
        Kernel::new(Family::ConvGrouped, "conv_grouped_s2_3x16_any");
    pub const ALL: &[&str] = &[
        CONV_GROUPED_S1_4X32_RELU.name,
        CONV_GROUPED_S1_4X32_ANY.name,
        CONV_GROUPED_S1_7X16_RELU.name,
        CONV_GROUPED_S1_7X16_ANY.name,
        CONV_GROUPED_S2_3X16_RELU.name,
        CONV_GROUPED_S2_3X16_ANY.name,
    ];
    /// `CONV_GROUPED_THREADS` and `CONV_GROUPED_CH` in the .cu.
    pub const THREADS: u32 = 128;
    pub const CHANNELS: u32 = 64;
}

/// kernels/pool.cu
pub mod pool {
    use super::*;

    /// `PoolParams` of the .cu, passed by value (80 bytes on both sides).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct PoolParams {
        pub n: u32,
        pub h: u32,
        pub w: u32,
        pub c: u32,
        pub oh: u32,
        pub ow: u32,
        pub kh: u32,
        pub kw: u32,
        pub sh: u32,
        pub sw: u32,
        /// Top and left pads.
        pub ph: u32,
        pub pw: u32,
        /// Bottom and right pads.
        pub pb: u32,
        pub pr: u32,
        pub dh: u32,
        pub dw: u32,
        /// 0 max, 1 average counting pads, 2 average over in-image taps.
        pub kind: u32,
        pub unused: [u32; 3],
    }
    const _: () = assert!(size_of::<PoolParams>() == 80);

    pub const POOL2D_BF16_NHWC: Kernel<(In<u16>, Out<u16>, PoolParams)> =
        Kernel::new(Family::Pool, "pool2d_bf16_nhwc");
    /// (x, y, n, h*w, c)
    #[allow(clippy::type_complexity)]
    pub const GLOBAL_AVGPOOL_BF16_NHWC: Kernel<(In<u16>, Out<u16>, u32, u32, u32)> =
        Kernel::new(Family::Pool, "global_avgpool_bf16_nhwc");
    pub const ALL: &[&str] = &[POOL2D_BF16_NHWC.name, GLOBAL_AVGPOOL_BF16_NHWC.name];
    /// `POOL_THREADS` in the .cu.
    pub const THREADS: u32 = 256;
}

/// kernels/eltwise.cu
#[allow(clippy::type_complexity)]
pub mod eltwise {
    use super::*;
    /// (x, y, n, op, a, b)
    pub const UNARY_BF16: Kernel<(In<u16>, Out<u16>, u64, u32, f32, f32)> =
        Kernel::new(Family::Eltwise, "unary_bf16");
    /// (a, b, y, n, op, broadcast mode, c, hw)
    pub const BINARY_BF16_NHWC: Kernel<(In<u16>, In<u16>, Out<u16>, u64, u32, u32, u32, u32)> =
        Kernel::new(Family::Eltwise, "binary_bf16_nhwc");
    /// (x, scale, shift, y, n, c)
    pub const AFFINE_BF16_NHWC: Kernel<(In<u16>, In<f32>, In<f32>, Out<u16>, u64, u32)> =
        Kernel::new(Family::Eltwise, "affine_bf16_nhwc");
    /// (x, y, rows, c_in, c_out, offset)
    pub const CONCAT_CHANNELS_BF16: Kernel<(In<u16>, Out<u16>, u64, u32, u32, u32)> =
        Kernel::new(Family::Eltwise, "concat_channels_bf16");
    /// (x, y, n, y_offset)
    pub const BF16_TO_F32: Kernel<(In<u16>, Out<f32>, u64, u64)> =
        Kernel::new(Family::Eltwise, "bf16_to_f32");
    pub const ALL: &[&str] = &[
        BF16_TO_F32.name,
        UNARY_BF16.name,
        BINARY_BF16_NHWC.name,
        AFFINE_BF16_NHWC.name,
        CONCAT_CHANNELS_BF16.name,
    ];
    /// `ELT_THREADS` in the .cu.
    pub const THREADS: u32 = 256;
}

/// kernels/norm.cu
#[allow(clippy::type_complexity)]
pub mod norm {
    use super::*;
    /// (x, gamma, beta, y, rows, c, eps)
    pub type LayerNormSig = (In<u16>, In<f32>, In<f32>, Out<u16>, u32, u32, f32);
    /// C % 8 == 0 and 16-byte aligned rows.
    pub const LAYERNORM_BF16_V8: Kernel<LayerNormSig> =
        Kernel::new(Family::Norm, "layernorm_bf16_v8");
    /// Any C.
    pub const LAYERNORM_BF16: Kernel<LayerNormSig> = Kernel::new(Family::Norm, "layernorm_bf16");
    /// (x, y, rows, c)
    pub type SoftmaxSig = (In<u16>, Out<u16>, u32, u32);
    pub const SOFTMAX_BF16_V8: Kernel<SoftmaxSig> = Kernel::new(Family::Norm, "softmax_bf16_v8");
    pub const SOFTMAX_BF16: Kernel<SoftmaxSig> = Kernel::new(Family::Norm, "softmax_bf16");
    pub const ALL: &[&str] = &[
        LAYERNORM_BF16_V8.name,
        LAYERNORM_BF16.name,
        SOFTMAX_BF16_V8.name,
        SOFTMAX_BF16.name,
    ];
    /// `NORM_ROWS` in the .cu: rows (warps) a block.
    pub const ROWS: u32 = 4;
}

/// kernels/attention.cu
#[allow(clippy::type_complexity)]
pub mod attention {
    use super::*;

    /// `AttnParams` of the .cu, passed by value (80 bytes on both sides):
    /// element strides of the batch, head and row axes of q, k, v and y.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq)]
    pub struct AttnParams {
        pub batch: u32,
        pub heads: u32,
        pub n_q: u32,
        pub n_kv: u32,
        pub d: u32,
        /// 0 without a bias.
        pub bias_batch: u32,
        pub q: [u32; 3],
        pub k: [u32; 3],
        pub v: [u32; 3],
        pub y: [u32; 3],
        /// scale * log2(e)
        pub scale_log2: f32,
        pub unused: u32,
    }
    const _: () = assert!(size_of::<AttnParams>() == 80);

    /// (q, k, v, bias, y, params)
    pub type AttnSig = (In<u16>, In<u16>, In<u16>, In<f32>, Out<u16>, AttnParams);
    macro_rules! head_dims {
        ($(($d:literal, $plain:ident, $bias:ident)),*) => {
            $(
                pub const $plain: Kernel<AttnSig> =
                    Kernel::new(Family::Attention, concat!("attention_bf16_d", $d));
                pub const $bias: Kernel<AttnSig> =
                    Kernel::new(Family::Attention, concat!("attention_bf16_d", $d, "_bias"));
            )*
            /// (padded head dim, without a bias, with one)
            pub const BY_HEAD_DIM: &[(usize, &Kernel<AttnSig>, &Kernel<AttnSig>)] =
                &[$(($d, &$plain, &$bias)),*];
            pub const ALL: &[&str] = &[$($plain.name, $bias.name,)* D32_X2.name, D64_X2.name];
        };
    }
    head_dims!(
        (16, D16, D16_BIAS),
        (32, D32, D32_BIAS),
        (64, D64, D64_BIAS),
        (96, D96, D96_BIAS),
        (128, D128, D128_BIAS)
    );
    /// The `_x2` entries (no bias): 32 query rows a warp, 128 a block.
    pub const D32_X2: Kernel<AttnSig> = Kernel::new(Family::Attention, "attention_bf16_d32_x2");
    pub const D64_X2: Kernel<AttnSig> = Kernel::new(Family::Attention, "attention_bf16_d64_x2");
    /// (padded head dim, its `_x2` entry)
    pub const WIDE: &[(usize, &Kernel<AttnSig>)] = &[(32, &D32_X2), (64, &D64_X2)];
    /// `ATT_THREADS` in the .cu.
    pub const THREADS: u32 = 128;
    /// Query rows a block, `64 * MT` (MT 2 for the `_x2` entries).
    pub const fn block_rows(wide: bool) -> usize {
        if wide { 128 } else { 64 }
    }
    /// `ATT_SHARED(D, MT)`: Q (64 MT rows) and two stages of K and V (64
    /// rows each), rows of D + 8 bf16.
    pub const fn shared_bytes(d: usize, wide: bool) -> usize {
        (block_rows(wide) + 4 * 64) * (d + 8) * 2
    }
}

/// kernels/layout.cu
pub mod layout {
    use super::*;

    /// `CopyParams` of the .cu, passed by value (88 bytes on both sides).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct CopyParams {
        /// Items (elements, or 8-element vectors when `vec` is 8).
        pub n: u64,
        pub rank: u32,
        pub vec: u32,
        /// Outermost axis first.
        pub shape: [u32; 6],
        /// Element strides of the source and destination.
        pub src: [u32; 6],
        pub dst: [u32; 6],
    }
    const _: () = assert!(size_of::<CopyParams>() == 88);
    pub const MAX_RANK: usize = 6;

    /// (x, y, params)
    pub const COPY_STRIDED_BF16: Kernel<(In<u16>, Out<u16>, CopyParams)> =
        Kernel::new(Family::Layout, "copy_strided_bf16");
    pub const ALL: &[&str] = &[COPY_STRIDED_BF16.name];
    /// `LAYOUT_THREADS` in the .cu.
    pub const THREADS: u32 = 256;
}

/// kernels/conv_sm90.cu: the 1x1 convolutions as a wgmma + TMA GEMM and
/// the others as a wgmma implicit GEMM over gathered pixels, sm_90a only
/// (a trapping stub on the other targets).
pub mod conv_sm90 {
    use super::conv::ConvParams;
    use super::*;
    use crate::cuda::TensorMap;

    /// (map of x [M][K], map of w [N][K_pad], bias, residual, y, params)
    pub type Sm90Sig = (TensorMap, TensorMap, In<f32>, In<u16>, Out<u16>, ConvParams);
    const fn k(name: &'static str) -> Kernel<Sm90Sig> {
        Kernel::new(Family::ConvSm90, name)
    }
    pub const CONV_SM90_128X128_NONE: Kernel<Sm90Sig> = k("conv_sm90_128x128_none");
    pub const CONV_SM90_128X128_RELU: Kernel<Sm90Sig> = k("conv_sm90_128x128_relu");
    pub const CONV_SM90_128X128_RELU_RES: Kernel<Sm90Sig> = k("conv_sm90_128x128_relu_res");
    pub const CONV_SM90_128X128_ANY: Kernel<Sm90Sig> = k("conv_sm90_128x128_any");
    pub const CONV_SM90_128X256_NONE: Kernel<Sm90Sig> = k("conv_sm90_128x256_none");
    pub const CONV_SM90_128X256_RELU: Kernel<Sm90Sig> = k("conv_sm90_128x256_relu");
    pub const CONV_SM90_128X256_RELU_RES: Kernel<Sm90Sig> = k("conv_sm90_128x256_relu_res");
    pub const CONV_SM90_128X256_ANY: Kernel<Sm90Sig> = k("conv_sm90_128x256_any");
    /// (map of w [N][K_pad], x NHWC, bias, residual, y, params): the
    /// gather kernels, any convolution with Cin_g and Cout_g multiples of 8.
    pub type Sm90GatherSig = (TensorMap, In<u16>, In<f32>, In<u16>, Out<u16>, ConvParams);
    const fn g(name: &'static str) -> Kernel<Sm90GatherSig> {
        Kernel::new(Family::ConvSm90, name)
    }
    pub const CONV_SM90G_256X48_RELU: Kernel<Sm90GatherSig> = g("conv_sm90g_256x48_relu");
    pub const CONV_SM90G_256X48_ANY: Kernel<Sm90GatherSig> = g("conv_sm90g_256x48_any");
    pub const CONV_SM90G_256X64_RELU: Kernel<Sm90GatherSig> = g("conv_sm90g_256x64_relu");
    pub const CONV_SM90G_256X64_ANY: Kernel<Sm90GatherSig> = g("conv_sm90g_256x64_any");
    pub const CONV_SM90G_256X96_RELU: Kernel<Sm90GatherSig> = g("conv_sm90g_256x96_relu");
    pub const CONV_SM90G_256X96_ANY: Kernel<Sm90GatherSig> = g("conv_sm90g_256x96_any");
    pub const CONV_SM90G_256X128_RELU: Kernel<Sm90GatherSig> = g("conv_sm90g_256x128_relu");
    pub const CONV_SM90G_256X128_ANY: Kernel<Sm90GatherSig> = g("conv_sm90g_256x128_any");
    pub const CONV_SM90G_128X192_RELU: Kernel<Sm90GatherSig> = g("conv_sm90g_128x192_relu");
    pub const CONV_SM90G_128X192_ANY: Kernel<Sm90GatherSig> = g("conv_sm90g_128x192_any");
    pub const CONV_SM90G_128X256_RELU: Kernel<Sm90GatherSig> = g("conv_sm90g_128x256_relu");
    pub const CONV_SM90G_128X256_ANY: Kernel<Sm90GatherSig> = g("conv_sm90g_128x256_any");
    /// The gather tiles (pixels, channels), `(relu, any)` entry points each.
    pub const GATHER: &[(u32, u32, [&Kernel<Sm90GatherSig>; 2])] = &[
        (256, 48, [&CONV_SM90G_256X48_RELU, &CONV_SM90G_256X48_ANY]),
        (256, 64, [&CONV_SM90G_256X64_RELU, &CONV_SM90G_256X64_ANY]),
        (256, 96, [&CONV_SM90G_256X96_RELU, &CONV_SM90G_256X96_ANY]),
        (
            256,
            128,
            [&CONV_SM90G_256X128_RELU, &CONV_SM90G_256X128_ANY],
        ),
        (
            128,
            192,
            [&CONV_SM90G_128X192_RELU, &CONV_SM90G_128X192_ANY],
        ),
        (
            128,
            256,
            [&CONV_SM90G_128X256_RELU, &CONV_SM90G_128X256_ANY],
        ),
    ];
    pub const ALL: &[&str] = &[
        CONV_SM90_128X128_NONE.name,
        CONV_SM90_128X128_RELU.name,
        CONV_SM90_128X128_RELU_RES.name,
        CONV_SM90_128X128_ANY.name,
        CONV_SM90_128X256_NONE.name,
        CONV_SM90_128X256_RELU.name,
        CONV_SM90_128X256_RELU_RES.name,
        CONV_SM90_128X256_ANY.name,
        CONV_SM90G_256X48_RELU.name,
        CONV_SM90G_256X48_ANY.name,
        CONV_SM90G_256X64_RELU.name,
        CONV_SM90G_256X64_ANY.name,
        CONV_SM90G_256X96_RELU.name,
        CONV_SM90G_256X96_ANY.name,
        CONV_SM90G_256X128_RELU.name,
        CONV_SM90G_256X128_ANY.name,
        CONV_SM90G_128X192_RELU.name,
        CONV_SM90G_128X192_ANY.name,
        CONV_SM90G_128X256_RELU.name,
        CONV_SM90G_128X256_ANY.name,
    ];
    /// `SM90_THREADS`, `SM90_BM`, `SM90_BK`, `SM90_STAGES` in the .cu.
    pub const THREADS: u32 = 384;
    pub const BM: u32 = 128;
    pub const BK: u32 = 64;
    pub const STAGES: u32 = 4;
    /// Dynamic shared memory of a launch with `bn` output channels a block:
    /// the ring, plus 1 KB to align it to the 128B swizzle's 1024 bytes.
    pub const fn shared_bytes(bn: u32) -> u32 {
        gather_shared_bytes(BM, bn)
    }
    /// The same for a gather tile of `bm` pixels (128 or 256).
    pub const fn gather_shared_bytes(bm: u32, bn: u32) -> u32 {
        STAGES * (bm + bn) * BK * 2 + 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::ptxas;
    use crate::cuda::testing::gpu_or_skip;

    /// Under the CPU stand-in: the kernels it compiled from kernels/*.cu are
    /// exactly the declared ones, family by family (its list is written by
    /// its build: `DR_EMU_ENTRY_POINTS`, default target/standin/entry-points.txt).
    #[test]
    fn the_stand_in_has_exactly_the_declared_entry_points() {
        let Some(gpu) = gpu_or_skip() else { return };
        if !gpu.info().stand_in {
            println!("a GPU, not the stand-in: every_declared_kernel_loads checks its modules");
            return;
        }
        let path = std::env::var_os("DR_EMU_ENTRY_POINTS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("target/standin/entry-points.txt")
            });
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (scripts/emu-build.sh writes it)", path.display()));
        let mut have: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(f, n)| (f.to_owned(), n.to_owned()))
            .collect();
        let mut declared: Vec<(String, String)> = Family::ALL
            .iter()
            .flat_map(|f| {
                f.entry_points()
                    .iter()
                    .map(|n| (f.name().to_owned(), (*n).to_owned()))
            })
            .collect();
        have.sort();
        declared.sort();
        assert_eq!(have, declared, "the stand-in's entry points vs kernels.rs");
    }

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
