//! Shared helpers for integration tests.
#![allow(dead_code)]

pub mod reinforce;

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

/// A Python with numpy for the reader tests: `DR_PYTHON`, or the venv
/// `scripts/setup-python.sh` makes. `None` (the caller prints "skipped")
/// when neither exists.
pub fn python_with_numpy() -> Option<PathBuf> {
    let cached = || {
        let cache = std::env::var_os("DR_PY_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                    .map(|c| c.join("dr/pyenv"))
            })?;
        Some(cache.join("bin/python"))
    };
    let py = std::env::var_os("DR_PYTHON")
        .map(PathBuf::from)
        .or_else(cached)?;
    let ok = Command::new(&py)
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(py)
}

/// Runs `py` on `args` (a script and its arguments, or `-c` and code):
/// asserts that it succeeds and returns what it printed.
pub fn run_python(py: &std::path::Path, args: &[&std::ffi::OsStr]) -> String {
    let o = Command::new(py)
        .args(args)
        .output()
        .expect("running python");
    let said = text(&o.stdout);
    assert!(o.status.success(), "{said}\n{}", text(&o.stderr));
    said
}

/// [`run_python`] of `code` with python/dr_reader imported (`sys.argv[1]`
/// is its folder) and `args` as `sys.argv[2:]`.
pub fn run_reader_code(py: &std::path::Path, code: &str, args: &[&std::ffi::OsStr]) -> String {
    use std::ffi::OsStr;
    let code = format!("import sys; sys.path.insert(0, sys.argv[1]); import dr_reader\n{code}");
    let python = repo_root().join("python");
    let mut all = vec![OsStr::new("-c"), OsStr::new(&code), python.as_os_str()];
    all.extend(args);
    run_python(py, &all)
}
