//! Faults tested for real: the output disk filling up mid-job (a small
//! tmpfs as OUT; root only, skipped with a line saying so elsewhere).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::reinforce::{assert_same, dataset, ok, reinforce, reinforce_cmd};
use common::text;

/// A tmpfs of `kib` KiB mounted at a fresh folder, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(tag: &str, kib: u32) -> Result<Tmpfs, String> {
        let dir = common::fresh_dir(tag);
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("no mount command: {e}"))?;
        if !o.status.success() {
            return Err(text(&o.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

const PAGE: usize = 4096;
const KIB: u32 = 256;

/// Fills the tmpfs but `free_pages` pages with one file.
fn fill(fs: &Path, free_pages: usize) {
    let filler = fs.join("filler");
    std::fs::write(&filler, vec![0u8; KIB as usize * 1024 - free_pages * PAGE]).unwrap();
}

fn shards_in_manifest(out: &Path) -> usize {
    std::fs::read_to_string(out.join("manifest.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|m| m["shards"].as_array().map(|s| s.len()))
        .unwrap_or(0)
}

#[test]
fn a_full_disk_stops_cleanly_and_a_rerun_gives_the_same_bytes() {
    let root = dataset("faults-enospc", false);
    ok(reinforce(&root, "reference", &[]));
    let fs = match Tmpfs::mount("faults-enospc-fs", KIB) {
        Ok(fs) => fs,
        Err(why) => {
            println!(
                "skipped: cannot mount a tmpfs to fill ({why}); run the tests as root to check a full disk"
            );
            return;
        }
    };
    let out = fs.0.join("out");
    // The least free space that lets the job write its manifest and at
    // least one shard before the disk is full.
    let mut found = None;
    for free in 1..48 {
        let _ = std::fs::remove_dir_all(&out);
        fill(&fs.0, free);
        // (root.join of an absolute path is that path: OUT on the tmpfs.)
        let o = reinforce_cmd(&root, out.to_str().unwrap(), &["--quiet"])
            .output()
            .unwrap();
        if !o.status.success() && shards_in_manifest(&out) >= 1 {
            found = Some((free, o));
            break;
        }
        std::fs::remove_file(fs.0.join("filler")).unwrap();
    }
    let Some((free, o)) = found else {
        panic!("no amount of free space between 1 and 47 pages stopped the job after a shard");
    };
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    println!("{free} pages free: {e}");
    assert!(
        e.contains("no space left on the device (ENOSPC)"),
        "{free} pages free: {e}"
    );
    assert!(
        e.contains(out.to_str().unwrap()),
        "the error names no file of OUT: {e}"
    );
    assert!(!e.contains("os error"), "{e}");
    // What is there is intact: complete shards verify, the job is unfinished.
    let v = common::dr(&["verify", out.to_str().unwrap()]);
    assert_eq!(
        v.status.code(),
        Some(4),
        "{}\n{}",
        text(&v.stdout),
        text(&v.stderr)
    );
    assert!(
        text(&v.stdout).contains(": 0 problems"),
        "{}",
        text(&v.stdout)
    );
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(
        left.is_empty(),
        "temporary files left on the full disk: {left:?}"
    );
    // Space freed, the same command finishes to the bytes of an
    // uninterrupted run.
    std::fs::remove_file(fs.0.join("filler")).unwrap();
    let o = reinforce_cmd(&root, out.to_str().unwrap(), &["--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_same(&root.join("reference"), &out);
}

/// A GPU worker whose kernel faults mid-job (the stand-in's
/// DR_EMU_FAIL_KERNEL: the 100th kernel of the process fails as a faulting
/// kernel does, its context unusable after) on two devices: the job stops
/// with an error naming the device and the fix, the other worker stops
/// after its shard, the complete shards verify, and rerunning the same
/// command finishes to the bytes of an uninterrupted run.
#[test]
fn a_gpu_worker_failing_mid_job_stops_cleanly_and_a_rerun_gives_the_same_bytes() {
    let Some(gpu) = dr::cuda::testing::gpu_or_skip() else {
        return;
    };
    if !gpu.info().stand_in {
        println!("skipped: a kernel fault is planted only under the CPU stand-in");
        return;
    }
    let root = dataset("faults-gpu-worker", false);
    let args = ["--device", "cuda:0,1", "--batch-size", "16", "--quiet"];
    let run = |out: &str, fail: Option<&str>| {
        let mut c = reinforce_cmd(&root, out, &args);
        c.env("DR_EMU_DEVICES", "2");
        if let Some(n) = fail {
            c.env("DR_EMU_FAIL_KERNEL", n);
        }
        c.output().unwrap()
    };
    let clean = run("reference", None);
    assert!(clean.status.success(), "{}", text(&clean.stderr));
    let out = root.join("faulted");
    let o = run("faulted", Some("100"));
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("teacher on cuda:") && e.contains("CUDA_ERROR_LAUNCH_FAILED"),
        "{e}"
    );
    assert!(
        e.contains("complete shards are kept") && e.contains("rerun the same command"),
        "{e}"
    );
    let kept = shards_in_manifest(&out);
    let v = common::dr(&["verify", out.to_str().unwrap()]);
    assert!(
        text(&v.stdout).contains(": 0 problems"),
        "{}",
        text(&v.stdout)
    );
    let again = run("faulted", None);
    assert!(again.status.success(), "{}", text(&again.stderr));
    println!("{kept} shards kept after the fault: {e}");
    assert_same(&root.join("reference"), &out);
}

/// An out-of-memory in the first batch, not at load: the stand-in's device
/// memory capped (DR_EMU_MEMORY_KB) at what the teachers take at
/// --batch-size 64 plus half of a mixing group's staged images, both
/// measured here on the same stand-in. The teachers load at 64, then the
/// first batch's allocations (the group's images, the augmentation's
/// buffers) do not fit beside them, and fit beside the teachers at 32. The
/// job says it lowers 64 to 32 and writes the bytes of --batch-size 32.
#[test]
fn an_out_of_memory_in_the_first_batch_halves_it_to_the_same_bytes() {
    let Some(gpu) = dr::cuda::testing::gpu_or_skip() else {
        return;
    };
    if !gpu.info().stand_in {
        println!("skipped: the device memory cap is the CPU stand-in's");
        return;
    }
    // 8 images of 64x64 in 2 classes: 2 shards of one mixing group of 4.
    const SIDE: usize = 64;
    let root = common::fresh_dir("faults-gpu-oom");
    for i in 0..8 {
        let data = (0..SIDE * SIDE * 3)
            .map(|j| ((j * (7 + i) + i * 31) % 251) as u8)
            .collect();
        let img = dr::augment::image::Rgb8::from_raw(SIDE, SIDE, data);
        let png = root.join(format!("data/c{}/{i}.png", i % 2));
        dr::augment::preview::write_png(&img, &png).unwrap();
    }
    std::fs::write(root.join("c.yaml"), common::reinforce::CONFIG).unwrap();

    let teachers =
        dr::teacher::ensemble::Ensemble::load(&[PathBuf::from(common::reinforce::teacher())])
            .unwrap();
    let loaded = |b: usize| {
        let free = || gpu.memory().unwrap().0;
        let before = free();
        let t = dr::pipeline::gpu::GpuTeacher::new(&gpu, &teachers, b, 5, 1.0).unwrap();
        let used = before - free();
        drop(t);
        gpu.synchronize().unwrap();
        used
    };
    let (at64, at32) = (loaded(64), loaded(32));
    // A group's 4 images, staged as one allocation with 25% headroom.
    let staged = 4 * SIDE * SIDE * 3 * 5 / 4;
    let cap_kib = (at64 + staged / 2) / 1024;
    println!(
        "teachers {at64} B at batch 64, {at32} B at 32; a group's images {staged} B; cap {cap_kib} KiB"
    );
    assert!(
        at64 - at32 > staged,
        "halving the batch must free more than the staged images take"
    );

    let args = ["--device", "cuda", "--quiet"];
    let b32 = reinforce_cmd(&root, "b32", &[&args[..], &["--batch-size", "32"]].concat())
        .output()
        .unwrap();
    assert!(b32.status.success(), "{}", text(&b32.stderr));
    let o = reinforce_cmd(
        &root,
        "capped",
        &[&args[..], &["--batch-size", "64"]].concat(),
    )
    .env("DR_EMU_MEMORY_KB", cap_kib.to_string())
    .env_remove("DR_EMU_MEMORY_MB")
    .output()
    .unwrap();
    let e = text(&o.stderr);
    assert!(o.status.success(), "{e}");
    println!("{e}");
    assert!(
        e.contains("out of device memory in a batch on cuda:0 at batch size 64: lowering it to 32"),
        "{e}"
    );
    assert!(
        !e.contains("at batch size 32: lowering"),
        "one halving should have been enough: {e}"
    );
    assert!(
        !e.contains("loading the teachers"),
        "the teachers did not load at 64 under the cap: {e}"
    );
    assert_same(&root.join("b32"), &root.join("capped"));
}
