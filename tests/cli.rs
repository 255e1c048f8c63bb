//! The command line as a user meets it, on whatever machine runs the tests.

mod common;

use common::{dr, text};
use dr::cuda::{Probe, probe};

#[test]
fn version_names_commit_and_kernels() {
    let out = dr(&["--version"]);
    assert!(out.status.success());
    let s = text(&out.stdout);
    assert!(
        s.starts_with(&format!("dr {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{s}"
    );
    let kernels = s.lines().nth(1).unwrap_or_default();
    match dr::cuda::kernels::KERNEL_TARGETS {
        Some(t) => assert!(kernels.starts_with(&format!("kernels: {t}")), "{s}"),
        None => assert_eq!(
            kernels,
            "kernels: none (built without nvcc; run scripts/setup-cuda.sh and rebuild)"
        ),
    }
}

#[test]
fn devices_exits_zero_and_says_what_it_found() {
    let out = dr(&["devices"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    match probe() {
        Probe::Unavailable { .. } => assert!(s.contains(": using the CPU backend"), "{s}"),
        Probe::Ready { devices, .. } => {
            assert!(s.starts_with("CUDA driver "), "{s}");
            for d in devices {
                assert!(s.contains(&d.name), "{s}");
            }
        }
    }
}

#[test]
fn devices_json_is_machine_readable() {
    let out = dr(&["devices", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let status = v["status"].as_str().unwrap();
    assert!(status == "ready" || status == "unavailable", "{v}");
    if status == "ready" {
        assert!(
            v["devices"].as_array().is_some_and(|d| !d.is_empty()),
            "{v}"
        );
    }
}

#[test]
fn no_driver_line_is_exact() {
    if !matches!(probe(), Probe::Unavailable { ref reason, .. } if reason == dr::cuda::NO_DRIVER) {
        println!("skipped: this machine has a CUDA driver");
        return;
    }
    let out = dr(&["devices"]);
    assert_eq!(
        text(&out.stdout),
        "no CUDA driver found: using the CPU backend\n"
    );
}

#[test]
fn gpu_bench_without_gpu_fails_cleanly() {
    if matches!(probe(), Probe::Ready { .. }) {
        println!("skipped: this machine has a CUDA device (the GPU suite runs the bench)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("dr-bench-{}", std::process::id()));
    let out = dr(&["bench", "bandwidth", "--out-dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("Fix:") || err.contains("setup-cuda.sh"),
        "{err}"
    );
    assert!(!dir.exists(), "no result file without a measurement");
}

/// `dr demo --device cuda:N` with no usable device N (none here, or past
/// the devices present) fails before it writes or announces anything.
#[test]
fn demo_on_a_device_that_cannot_be_used_writes_nothing() {
    let out = common::fresh_dir("cli-demo-nodevice").join("demo");
    let o = dr(&[
        "demo",
        "--device",
        "cuda:63",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(
        e.contains("--device cuda:63") && !e.contains("backend"),
        "{e}"
    );
    assert!(!out.exists(), "the demo wrote {}", out.display());
}
