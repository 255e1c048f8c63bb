//! Helpers for GPU tests: open device 0 or say plainly why the test is skipped.

use super::gpu::Gpu;
use super::probe::{Probe, probe};

/// Device 0, or `None` after printing `skipped: no CUDA device (...)`.
/// With `DR_REQUIRE_GPU=1` (set by `scripts/gpu-check.sh run` and
/// `scripts/emu-test.sh`) a missing device is a failure instead, so GPU tests
/// cannot skip silently. With `DR_GPU_TEST_LOG=FILE` each call appends
/// "ran TEST" or "skipped TEST" to FILE, which is how those scripts count
/// the GPU tests that ran.
pub fn gpu_or_skip() -> Option<Gpu> {
    let required = std::env::var("DR_REQUIRE_GPU").is_ok_and(|v| v == "1");
    match probe() {
        Probe::Unavailable { reason, .. } => {
            assert!(!required, "DR_REQUIRE_GPU=1 but no device: {reason}");
            log_gpu_test("skipped");
            println!("skipped: no CUDA device ({reason})");
            None
        }
        Probe::Ready { .. } => match Gpu::open(0) {
            Ok(gpu) => {
                log_gpu_test("ran");
                Some(gpu)
            }
            Err(super::CudaError::NoKernels) if !required => {
                log_gpu_test("skipped");
                println!("skipped: built without nvcc (no kernels to test)");
                None
            }
            Err(e) => panic!("a CUDA device is present but cannot be used: {e}"),
        },
    }
}

/// Appends "<what> <test executable> <test name>" to `$DR_GPU_TEST_LOG`.
fn log_gpu_test(what: &str) {
    use std::io::Write;
    let Some(path) = std::env::var_os("DR_GPU_TEST_LOG") else {
        return;
    };
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let test = std::thread::current().name().unwrap_or("main").to_owned();
    let line = format!("{what} {exe} {test}\n");
    // One short O_APPEND write a line: lines from parallel tests do not mix.
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
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

/// The named tolerances GPU tests compare kernels with their CPU twins by.
#[derive(Debug, Clone, Copy)]
pub enum Tol {
    /// Bit-identical.
    Exact,
    /// A bf16 result of a `k`-term fp32 accumulation: |got - want| <=
    /// 2^-7 |want| (one bf16 rounding, either way) + k 2^-23 sum|terms|
    /// (fp32 summation in an unspecified order).
    Bf16Accum { k: usize },
    /// A bf16 result of a sum of terms that were each rounded to bf16
    /// (attention's probabilities), where each rounding may land one bf16
    /// step either way: |got - want| <= 2^-7 (|want| + sum|terms|).
    Bf16Terms,
}

impl Tol {
    /// Compares `got` with `want` (`mag[i]`: the sum of |terms| behind
    /// `want[i]`); `Ok` carries the max abs and rel errors, `Err` the worst
    /// offender. NaN never passes.
    pub fn check(self, got: &[f32], want: &[f32], mag: &[f32]) -> Result<String, String> {
        if got.len() != want.len() {
            return Err(format!("{} values, expected {}", got.len(), want.len()));
        }
        let (mut max_abs, mut max_rel) = (0f32, 0f32);
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let d = (g - w).abs();
            let bound = match self {
                Tol::Exact => 0.0,
                Tol::Bf16Accum { k } => {
                    w.abs() / 128.0 + k as f32 * mag.get(i).copied().unwrap_or(0.0) / 8_388_608.0
                }
                Tol::Bf16Terms => (w.abs() + mag.get(i).copied().unwrap_or(0.0)) / 128.0,
            };
            if d.is_nan() || d > bound || (matches!(self, Tol::Exact) && g.to_bits() != w.to_bits())
            {
                return Err(format!(
                    "element {i}: got {g}, want {w} (|diff| {d} > {bound}, {self:?})"
                ));
            }
            max_abs = max_abs.max(d);
            max_rel = max_rel.max(d / w.abs().max(1e-6));
        }
        Ok(format!(
            "{} values within {self:?}: max abs error {max_abs:.3e}, max rel error {max_rel:.3e}",
            got.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerances_fail_what_they_should() {
        assert!(Tol::Exact.check(&[1.0], &[1.0], &[]).is_ok());
        assert!(Tol::Exact.check(&[-0.0], &[0.0], &[]).is_err());
        let t = Tol::Bf16Accum { k: 64 };
        assert!(t.check(&[100.5], &[100.0], &[0.0]).is_ok());
        assert!(t.check(&[101.0], &[100.0], &[0.0]).is_err());
        assert!(t.check(&[f32::NAN], &[1.0], &[1.0]).is_err());
        assert!(t.check(&[1.0], &[1.0, 2.0], &[]).is_err());
        let t = Tol::Bf16Terms;
        assert!(t.check(&[1.01], &[1.0], &[1.0]).is_ok());
        assert!(t.check(&[1.02], &[1.0], &[1.0]).is_err());
    }
}
