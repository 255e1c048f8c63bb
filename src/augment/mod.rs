//! Augmentation as ml-dr generates it: parameter sampling (`params`) and the
//! CPU reference ops (`geometry`, `resample`, `randaug`, `tensor`), the
//! executable specification the GPU kernels are tested against.

pub mod geometry;
pub mod gpu;
pub mod gpu_batch;
pub mod gpu_finish;
pub mod gpu_randaug;
pub mod gpu_run;
pub mod image;
pub mod params;
pub mod pipeline;
pub mod preview;
pub mod randaug;
pub mod record;
pub mod resample;
pub mod run;
pub mod tensor;
