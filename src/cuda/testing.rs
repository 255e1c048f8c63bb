//! Helpers for GPU tests: open device 0 or say plainly why the test is skipped.

use super::gpu::Gpu;
use super::probe::{Probe, probe};

/// Device 0, or `None` after printing `skipped: no CUDA device (...)`.
/// With `DR_REQUIRE_GPU=1` (set by `scripts/gpu-check.sh run`) a missing
/// device is a failure instead, so GPU tests cannot skip silently on a GPU
/// machine.
pub fn gpu_or_skip() -> Option<Gpu> {
    let required = std::env::var("DR_REQUIRE_GPU").is_ok_and(|v| v == "1");
    match probe() {
        Probe::Unavailable { reason, .. } => {
            assert!(!required, "DR_REQUIRE_GPU=1 but no device: {reason}");
            println!("skipped: no CUDA device ({reason})");
            None
        }
        Probe::Ready { .. } => match Gpu::open(0) {
            Ok(gpu) => Some(gpu),
            Err(super::CudaError::NoKernels) if !required => {
                println!("skipped: built without nvcc (no kernels to test)");
                None
            }
            Err(e) => panic!("a CUDA device is present but cannot be used: {e}"),
        },
    }
}

/// Deterministic pseudo-random bytes (splitmix64) for test inputs.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(n);
    out
}
