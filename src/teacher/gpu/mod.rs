//! The teacher on the GPU: launchers of the teacher-side kernels beside their
//! CPU twins (convolution, pooling, LayerNorm and softmax, fused attention,
//! strided copies, ensemble softmax + top-k), the lowering of a teacher's IR
//! (CNNs, ConvNeXt, ViT, DeiT, Swin) to kernel steps and views over one
//! arena (`lower`), and its execution on a device as a CUDA graph (`model`).

pub mod attention;
pub mod conv;
pub mod conv_sm90;
pub mod eltwise;
pub mod layout;
pub mod lower;
pub mod model;
pub mod norm;
pub mod pool;
pub mod topk;
pub mod tuning;
