//! `python/` as a package: it builds to a wheel without writing into the
//! source tree (no build/ or .egg-info beside the sources) and the wheel
//! imports.

mod common;

use std::process::Command;

use common::{repo_root, text};

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "__pycache__")
        .collect();
    v.sort();
    v
}

#[test]
fn the_wheel_builds_out_of_the_tree_and_imports() {
    let Some(py) = common::python_with_numpy() else {
        println!("skipped: no Python with numpy (run scripts/setup-python.sh)");
        return;
    };
    let has_flit = Command::new(&py)
        .args(["-c", "import flit_core"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_flit {
        println!("skipped: this Python has no flit_core (scripts/setup-python.sh installs it)");
        return;
    }
    let src = repo_root().join("python");
    let before = entries(&src);
    let tmp = common::fresh_dir("python-wheel");
    // Offline, as pip install ./python builds it (in place, with the backend
    // pyproject.toml names).
    let o = Command::new(&py)
        .args([
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
        ])
        .arg(&src)
        .arg("-w")
        .arg(tmp.join("wheels"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        entries(&src),
        before,
        "building the wheel wrote into {}",
        src.display()
    );
    let wheel = std::fs::read_dir(tmp.join("wheels"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("a wheel");
    let o = Command::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
        ])
        .arg(tmp.join("site"))
        .arg(&wheel)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = Command::new(&py)
        .arg("-c")
        .arg("import sys; sys.path.insert(0, sys.argv[1]); import dr_reader; print(dr_reader.__file__)")
        .arg(tmp.join("site"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("site/dr_reader"),
        "{}",
        text(&o.stdout)
    );
}
