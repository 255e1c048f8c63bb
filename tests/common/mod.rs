//! Shared helpers for integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `dr` binary under test: `DR_BIN` when set (the GPU bundle runs tests
/// on another machine, where cargo's compiled-in path does not exist).
pub fn dr_bin() -> PathBuf {
    std::env::var_os("DR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dr")))
}

/// The repository root (for fixtures): `DR_REPO_ROOT` when set.
pub fn repo_root() -> PathBuf {
    std::env::var_os("DR_REPO_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// An empty scratch folder for one test: `<tmp>/dr-<tag>-<pid>`, cleared first.
pub fn fresh_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dr-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("creating a scratch folder");
    d
}

pub fn dr(args: &[&str]) -> Output {
    Command::new(dr_bin())
        .args(args)
        .output()
        .expect("running dr")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
