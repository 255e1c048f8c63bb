//! Microbenchmarks (`dr bench ...`): CUDA-event timing, medians of raw
//! samples, each figure set against the device's peak, results written to
//! `bench-results/*.json` with device, driver and commit.

pub mod attention;
pub mod augment;
pub mod bandwidth;
pub mod model;
pub mod model_gpu;
pub mod report;
pub mod topk;
