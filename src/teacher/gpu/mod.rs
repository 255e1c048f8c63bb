//! The teacher on the GPU: launchers of the teacher-side kernels beside their
//! CPU twins (convolution, pooling, LayerNorm, ensemble softmax + top-k), the lowering
//! of a convolutional teacher's IR (CNNs and ConvNeXt) to kernel steps over
//! one arena (`lower`), and its execution on a device as a CUDA graph
//! (`model`). ViT, DeiT and Swin ([gpu-transformer]) are refused by the
//! lowering, by op name.

pub mod attention;
pub mod conv;
pub mod eltwise;
pub mod layout;
pub mod lower;
pub mod model;
pub mod norm;
pub mod pool;
pub mod topk;
pub mod tuning;
