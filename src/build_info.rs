//! What this binary is: version, commit and the kernels it embeds.

use crate::cuda::kernels::{KERNEL_TARGETS, NVCC_VERSION};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Short commit hash, "-dirty" when built from a modified tree.
pub const COMMIT: &str = env!("DR_GIT_COMMIT");

/// `kernels: sm_80 ... compute_80`, or how to get kernels when there are none.
pub fn kernels_line() -> String {
    match (KERNEL_TARGETS, NVCC_VERSION) {
        (Some(t), Some(v)) => format!("kernels: {t} (nvcc {v})"),
        _ => "kernels: none (built without nvcc; run scripts/setup-cuda.sh and rebuild)".into(),
    }
}

/// The text after `dr ` in `dr --version`.
pub fn long_version() -> String {
    format!("{VERSION} (commit {COMMIT})\n{}", kernels_line())
}

/// `dr 0.1.0 (abc1234)`: what wrote a file.
pub fn short_version() -> String {
    format!("dr {VERSION} ({COMMIT})")
}
