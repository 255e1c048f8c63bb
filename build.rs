//! Compiles every `kernels/*.cu` with nvcc into a fatbin embedded in the binary,
//! and records what the binary needs to say about itself (`dr --version`).
//!
//! One fatbin per kernel family (`kernels/<family>.cu` → one CUDA module), so
//! families compile in parallel and name clashes between families are
//! impossible. Targets: SASS for sm_80 sm_86 sm_89 sm_90a plus compute_80 PTX
//! (JIT for anything newer), overridden by `DR_CUDA_ARCHS` ("sm_90a" for quick
//! device builds). Each target is spelled `-gencode=arch=compute_XX,code=...`:
//! the `-arch=sm_90a` shorthand also runs a plain sm_90 pass that rejects wgmma.
//!
//! Without nvcc the build succeeds with one warning; the binary then has no
//! kernels and says so, with the fix, whenever a GPU is asked for.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const DEFAULT_ARCHS: &str = "sm_80 sm_86 sm_89 sm_90a compute_80";
const ENV_VARS: &[&str] = &[
    "NVCC",
    "CUDA_HOME",
    "CUDA_PATH",
    "PATH",
    "DR_CUDA_ARCHS",
    "DR_CUDA_CACHE",
    "XDG_CACHE_HOME",
    "HOME",
    "NVCC_CCBIN",
    "DR_GIT_COMMIT",
];

fn main() {
    for var in ENV_VARS {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=kernels");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());

    let kernels = list_kernel_sources(&manifest.join("kernels"));
    for k in &kernels {
        println!("cargo:rerun-if-changed={}", k.path.display());
    }
    for h in list_files(&manifest.join("kernels/common"), "cuh") {
        println!("cargo:rerun-if-changed={}", h.display());
    }

    let archs = parse_archs(&env::var("DR_CUDA_ARCHS").unwrap_or_else(|_| DEFAULT_ARCHS.into()));
    let built = match find_nvcc() {
        Some(nvcc) => Some(compile_all(&nvcc, &kernels, &archs, &manifest, &out)),
        None => {
            println!(
                "cargo:warning=nvcc not found (NVCC, CUDA_HOME/CUDA_PATH, PATH, setup-cuda cache): \
                 building without GPU kernels. Run scripts/setup-cuda.sh and rebuild to embed them."
            );
            None
        }
    };
    write_generated(&out, &kernels, &archs, built.as_ref());
    write_commit(&manifest);
}

struct KernelSource {
    family: String,
    path: PathBuf,
}

struct Built {
    nvcc_version: String,
}

fn list_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == ext))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn list_kernel_sources(dir: &Path) -> Vec<KernelSource> {
    list_files(dir, "cu")
        .into_iter()
        .map(|path| KernelSource {
            family: path.file_stem().unwrap().to_string_lossy().into_owned(),
            path,
        })
        .collect()
}

/// "sm_80 sm_90a,compute_80" → gencode flags. Anything else stops the build
/// with the accepted spelling, rather than producing a binary with no kernels.
fn parse_archs(spec: &str) -> Vec<String> {
    let archs: Vec<String> = spec
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    for a in &archs {
        let digits = a.strip_prefix("sm_").or_else(|| a.strip_prefix("compute_"));
        let ok = digits.is_some_and(|d| {
            let num = d.trim_end_matches(['a', 'f']);
            num.len() >= 2 && num.chars().all(|c| c.is_ascii_digit())
        });
        if !ok {
            panic!(
                "DR_CUDA_ARCHS: `{a}` is not a CUDA target. Use sm_XX (machine code) or \
                 compute_XX (PTX) separated by spaces or commas, e.g. DR_CUDA_ARCHS=\"sm_90a\" \
                 or \"{DEFAULT_ARCHS}\"."
            );
        }
    }
    if archs.is_empty() {
        panic!("DR_CUDA_ARCHS is empty. Unset it for the default ({DEFAULT_ARCHS}).");
    }
    archs
}

fn gencode(arch: &str) -> String {
    match arch.strip_prefix("sm_") {
        Some(n) => format!("-gencode=arch=compute_{n},code=sm_{n}"),
        None => {
            let n = arch.strip_prefix("compute_").unwrap();
            format!("-gencode=arch=compute_{n},code=compute_{n}")
        }
    }
}

fn is_exe(p: &Path) -> bool {
    p.is_file()
}

fn find_nvcc() -> Option<PathBuf> {
    if let Some(p) = env::var_os("NVCC") {
        let p = PathBuf::from(p);
        if is_exe(&p) {
            return Some(p);
        }
        println!(
            "cargo:warning=NVCC={} does not exist; looking elsewhere",
            p.display()
        );
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(root) = env::var_os(var) {
            let p = PathBuf::from(root).join("bin/nvcc");
            if is_exe(&p) {
                return Some(p);
            }
        }
    }
    if let Some(path) = env::var_os("PATH") {
        for dir in env::split_paths(&path) {
            let p = dir.join("nvcc");
            if is_exe(&p) {
                return Some(p);
            }
        }
    }
    let cache = env::var_os("DR_CUDA_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|c| c.join("dr/cuda-13.0"))
        })?;
    let p = cache.join("pkgs/nvidia/cu13/bin/nvcc");
    // Rebuild once setup-cuda.sh installs it (a missing path reruns this
    // script on every build, which costs nothing without nvcc).
    println!("cargo:rerun-if-changed={}", p.display());
    is_exe(&p).then_some(p)
}

fn nvcc_version(nvcc: &Path) -> String {
    let out = Command::new(nvcc).arg("--version").output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => panic!(
            "{} --version failed: {}",
            nvcc.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run {}: {e}", nvcc.display()),
    };
    // "Cuda compilation tools, release 13.0, V13.0.88"
    text.lines()
        .find_map(|l| l.split("release ").nth(1))
        .and_then(|r| r.split(',').next())
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| {
            panic!(
                "cannot read the release from `{} --version`:\n{text}",
                nvcc.display()
            )
        })
}

fn compile_all(
    nvcc: &Path,
    kernels: &[KernelSource],
    archs: &[String],
    manifest: &Path,
    out: &Path,
) -> Built {
    let version = nvcc_version(nvcc);
    let (major, minor) = version.split_once('.').unwrap_or((&version, "0"));
    let (major, minor): (u32, u32) = (major.parse().unwrap_or(0), minor.parse().unwrap_or(0));
    if (major, minor) < (12, 4) {
        panic!(
            "{} is CUDA {version}; dr needs nvcc >= 12.4. Run scripts/setup-cuda.sh (pinned 13.0) \
             and point NVCC at it, or unset NVCC/CUDA_HOME to use its cache.",
            nvcc.display()
        );
    }
    // Families compile in parallel; nvcc parallelises the targets of one file.
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = kernels
            .iter()
            .map(|k| s.spawn(|| compile_one(nvcc, k, archs, manifest, out)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if !errors.is_empty() {
        panic!("kernel compilation failed:\n{}", errors.join("\n"));
    }
    Built {
        nvcc_version: version,
    }
}

fn compile_one(
    nvcc: &Path,
    k: &KernelSource,
    archs: &[String],
    manifest: &Path,
    out: &Path,
) -> Result<(), String> {
    let fatbin = out.join(format!("{}.fatbin", k.family));
    let mut cmd = Command::new(nvcc);
    cmd.arg("--fatbin")
        .args(archs.iter().map(|a| gencode(a)))
        .args([
            "-O3",
            "-std=c++17",
            "--threads",
            "0",
            "-Xptxas",
            "-v",
            "-lineinfo",
        ])
        .arg("-I")
        .arg(manifest.join("kernels"))
        .arg("-o")
        .arg(&fatbin)
        .arg(&k.path);
    if let Some(ccbin) = env::var_os("NVCC_CCBIN") {
        cmd.arg("-ccbin").arg(ccbin);
    }
    let o = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", nvcc.display()))?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() {
        return Err(format!("{}:\n{stderr}", k.path.display()));
    }
    // ptxas -v writes its resource report to stderr; keep it beside the fatbin
    // so the library can embed it and a test can refuse spills.
    fs::write(
        out.join(format!("{}.ptxas.txt", k.family)),
        stderr.as_bytes(),
    )
    .map_err(|e| format!("writing the ptxas report of {}: {e}", k.family))?;
    Ok(())
}

fn write_generated(out: &Path, kernels: &[KernelSource], archs: &[String], built: Option<&Built>) {
    let mut s = String::from("// Generated by build.rs: the embedded kernels of this build.\n");
    match built {
        Some(b) => {
            writeln!(
                s,
                "pub const KERNEL_TARGETS: Option<&str> = Some({:?});",
                archs.join(" ")
            )
            .unwrap();
            writeln!(
                s,
                "pub const NVCC_VERSION: Option<&str> = Some({:?});",
                b.nvcc_version
            )
            .unwrap();
            s.push_str("pub const FATBINS: &[(&str, &[u8], &str)] = &[\n");
            for k in kernels {
                let fatbin = out.join(format!("{}.fatbin", k.family));
                let report = out.join(format!("{}.ptxas.txt", k.family));
                writeln!(
                    s,
                    "    ({:?}, include_bytes!({:?}), include_str!({:?})),",
                    k.family, fatbin, report
                )
                .unwrap();
            }
            s.push_str("];\n");
        }
        None => {
            s.push_str("pub const KERNEL_TARGETS: Option<&str> = None;\n");
            s.push_str("pub const NVCC_VERSION: Option<&str> = None;\n");
            s.push_str("pub const FATBINS: &[(&str, &[u8], &str)] = &[];\n");
        }
    }
    fs::write(out.join("kernels.rs"), s).unwrap();
}

/// The commit the binary was built from, "-dirty" when the tree had changes.
/// DR_GIT_COMMIT overrides (builds from a tarball have no .git).
fn write_commit(manifest: &Path) {
    // Rebuild the stamp when HEAD moves: HEAD itself, the branch it names,
    // packed refs, and the index (for "-dirty").
    let git_dir = manifest.join(".git");
    let mut watch = vec![
        "HEAD".to_owned(),
        "index".to_owned(),
        "packed-refs".to_owned(),
    ];
    if let Ok(head) = fs::read_to_string(git_dir.join("HEAD"))
        && let Some(r) = head.strip_prefix("ref: ")
    {
        watch.push(r.trim().to_owned());
    }
    for f in watch {
        if git_dir.join(&f).exists() {
            println!("cargo:rerun-if-changed={}", git_dir.join(f).display());
        }
    }
    let commit = env::var("DR_GIT_COMMIT").ok().unwrap_or_else(|| {
        let git = |args: &[&str]| {
            Command::new("git")
                .arg("-C")
                .arg(manifest)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        match git(&["rev-parse", "--short=12", "HEAD"]) {
            Some(hash) => {
                let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                    .is_some_and(|s| !s.is_empty());
                if dirty { format!("{hash}-dirty") } else { hash }
            }
            None => "unknown".into(),
        }
    });
    println!("cargo:rustc-env=DR_GIT_COMMIT={commit}");
}
