//! The teacher on the GPU: launchers of the teacher-side kernels beside their
//! CPU twins. Today the ensemble softmax + top-k ([gpu-augment]); the
//! convolution and attention executor of [gpu-cnn]/[gpu-transformer] follows.

pub mod conv;
pub mod pool;
pub mod topk;
