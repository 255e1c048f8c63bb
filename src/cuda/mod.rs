//! The CUDA host layer: the only module that talks to cudarc.
//!
//! `probe` finds the driver and devices without binding anything that could
//! panic; `Gpu` owns a context, streams, loaded kernel modules and a pinned
//! pool; launchers elsewhere reach the device only through `Stream::launch`
//! with the typed entry points declared in `kernels`; `TensorMap` encodes
//! the Hopper copy engine's tensor maps those launches may take.

mod error;
mod gpu;
pub mod kernels;
mod launch;
pub mod memops;
mod pinned;
mod probe;
pub mod ptxas;
mod region;
pub mod testing;
mod tma;

pub use error::{CudaError, Result};
pub use gpu::{DevBuf, DeviceElem, Event, Gpu, Stream, build_runs_on};
pub use launch::LaunchShape;
pub use pinned::{PinnedBuf, PinnedKind, PinnedPool};
pub use probe::{
    DeviceInfo, EMULATED, NO_DRIVER, PcieLink, Probe, STAND_IN_NAME, driver_version_string, probe,
};
pub use region::{Graph, Region};
pub use tma::TensorMap;
