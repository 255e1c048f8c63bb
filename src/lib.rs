//! dr: builds reinforced datasets (Dataset Reinforcement, ml-dr compatible)
//! with hand-written CUDA kernels and a CPU reference path.
//!
//! Data flows one way: dataset → augment → teacher → store (see DESIGN.md).
//! `cuda` is the only module that touches the driver.

pub mod augment;
pub mod bench;
pub mod build_info;
pub mod config;
pub mod cuda;
pub mod dataset;
pub mod demo;
pub mod labels;
pub mod npy;
pub mod pipeline;
pub mod rng;
pub mod store;
pub mod teacher;

/// An OS error as one short reason, said once (`std::io::Error`'s text
/// repeats itself when wrapped: "No such file or directory (os error 2)").
pub fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => "no such file".into(),
        K::PermissionDenied => "permission denied".into(),
        K::IsADirectory => "it is a folder, not a file".into(),
        K::StorageFull => "no space left on the device (ENOSPC)".into(),
        K::QuotaExceeded => "disk quota exceeded (EDQUOT)".into(),
        _ => e.to_string(),
    }
}
