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
pub mod npy;
pub mod pipeline;
pub mod rng;
pub mod store;
pub mod teacher;
