//! `dr reinforce` end to end on the CPU: output bytes independent of batch
//! size, threads, task count and restarts (SIGKILL included); resume,
//! refusal of other settings, merge, bad images, verify.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::reinforce::{assert_same, dataset, files, ok, reinforce, reinforce_cmd};
use common::{dr, fresh_dir, repo_root, text};

#[test]
fn bytes_do_not_depend_on_batch_size_threads_or_tasks() {
    let root = dataset("reinforce-determinism", false);
    let s = ok(reinforce(&root, "a", &["--batch-size", "32"]));
    assert!(s.contains("0 bad images"), "{s}");
    ok(reinforce(
        &root,
        "b",
        &["--batch-size", "1", "--threads", "1"],
    ));
    ok(reinforce(
        &root,
        "c",
        &["--batch-size", "5", "--threads", "2"],
    ));
    assert_same(&root.join("a"), &root.join("b"));
    assert_same(&root.join("a"), &root.join("c"));
    // Three tasks, merged: the same bytes as one task.
    let mut parts = Vec::new();
    for i in 0..3 {
        let out = format!("t{i}");
        ok(reinforce(
            &root,
            &out,
            &["--shard", &format!("{i}/3"), "--batch-size", "7"],
        ));
        parts.push(root.join(out).display().to_string());
    }
    let merged = root.join("merged").display().to_string();
    let mut args = vec!["merge"];
    args.extend(parts.iter().map(String::as_str));
    args.extend(["--out", &merged]);
    let m = ok(dr(&args));
    assert!(m.contains("3 tasks"), "{m}");
    assert_same(&root.join("a"), &root.join("merged"));
    let v = ok(dr(&[
        "verify",
        &merged,
        "--images",
        root.join("data").to_str().unwrap(),
    ]));
    assert!(
        v.contains(": 0 problems") && v.contains("0 missing, 0 changed"),
        "{v}"
    );
}

/// Mixing groups decoded 1 or 4 ahead (one shard of 5 groups, so the queue
/// fills; 4 on one CPU thread): the same bytes; without the flag the choice
/// is said at start.
#[test]
fn bytes_do_not_depend_on_how_many_groups_are_decoded_ahead() {
    let root = dataset("reinforce-decode-ahead", false);
    let run = |out: &str, extra: &[&str]| {
        Command::new(common::dr_bin())
            .arg("reinforce")
            .arg("--data")
            .arg(root.join("data"))
            .args(["--teacher", &common::reinforce::teacher(), "--config"])
            .arg(root.join("c.yaml"))
            .arg("--out")
            .arg(root.join(out))
            .args(["--images-per-shard", "20", "--batch-size", "7", "--quiet"])
            .args(extra)
            .output()
            .expect("running dr")
    };
    let one = run("d1", &["--decode-ahead", "1"]);
    assert!(
        !text(&one.stderr).contains("decoding"),
        "{}",
        text(&one.stderr)
    );
    ok(one);
    // One CPU thread: the decoder's and the teacher's work share it.
    ok(run("d4", &["--decode-ahead", "4", "--threads", "1"]));
    assert_same(&root.join("d1"), &root.join("d4"));
    let auto = run("auto", &[]);
    let said = text(&auto.stderr);
    ok(auto);
    assert!(
        said.contains("dr reinforce: decoding ") && said.contains("--decode-ahead sets it"),
        "{said}"
    );
    assert_same(&root.join("d1"), &root.join("auto"));
}

#[test]
fn resumes_to_the_same_bytes_after_sigkill() {
    let root = dataset("reinforce-kill", false);
    // Kill times are fractions of a whole run's duration, so the test means
    // the same with a debug binary and a fast release one.
    let t0 = std::time::Instant::now();
    ok(reinforce(&root, "reference", &["--samples", "6"]));
    let whole = t0.elapsed().as_micros() as u64;
    let out = root.join("killed");
    // Kill at spread-out points (a fixed LCG, so a failure reproduces).
    let mut state = 12345u64;
    let (mut kills, mut mid_run) = (0, 0);
    let total = files(&root.join("reference"))
        .iter()
        .filter(|f| f.0.starts_with("shard-"))
        .count();
    for round in 0..30u64 {
        if round >= 6 && mid_run > 0 {
            break;
        }
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let micros = whole * (5 + (state >> 33) % 90) / 100;
        let mut child = reinforce_cmd(
            &root,
            "killed",
            &["--quiet", "--batch-size", "2", "--samples", "6"],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(micros));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let killed = child.wait().unwrap().code().is_none();
        // Whatever the manifest names is complete and correct: verify passes
        // (0), or says the dataset is unfinished (4) with no problem.
        if out.join("manifest.json").exists() {
            let v = dr(&["verify", out.to_str().unwrap()]);
            assert!(
                matches!(v.status.code(), Some(0 | 4)) && text(&v.stdout).contains(": 0 problems"),
                "{}\n{}",
                text(&v.stdout),
                text(&v.stderr)
            );
            let m = std::fs::read_to_string(out.join("manifest.json")).unwrap();
            let done = m.matches("\"sha256\": \"").count() - 1; // minus the teacher's
            if killed && done > 0 && done < total {
                mid_run += 1;
            }
        }
        // A run that finished before its kill leaves nothing for the next
        // rounds to resume (they would finish at once, never killed): start
        // them afresh.
        if !killed {
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
    assert!(
        kills > 0 && mid_run > 0,
        "no kill landed between shards ({kills} kills)"
    );
    ok(reinforce(&root, "killed", &["--samples", "6"]));
    assert_same(&root.join("reference"), &out);
}

/// Ctrl-C and SIGTERM: the job stops at a batch, keeps its complete shards,
/// says how far it got and exits 130 / 143; verify then calls the dataset
/// unfinished (exit 4), export refuses it, and a rerun finishes it to the
/// bytes of an uninterrupted run.
#[test]
fn a_signal_stops_the_job_and_a_rerun_finishes_it() {
    let root = dataset("reinforce-signal", false);
    ok(reinforce(&root, "reference", &["--samples", "6"]));
    let total = files(&root.join("reference"))
        .iter()
        .filter(|f| f.0.starts_with("shard-"))
        .count();
    for (sig, code) in [("INT", 130), ("TERM", 143)] {
        let name = format!("signal-{sig}");
        let out = root.join(&name);
        let mut child = reinforce_cmd(
            &root,
            &name,
            &["--quiet", "--batch-size", "1", "--samples", "6"],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        // Signal once the first shard is in the manifest.
        let started = std::time::Instant::now();
        loop {
            let m = std::fs::read_to_string(out.join("manifest.json")).unwrap_or_default();
            if m.contains("shard-00000.bin") {
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "the job ended before its first shard was seen"
            );
            assert!(
                started.elapsed().as_secs() < 120,
                "no shard after 2 minutes"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{sig}"), &pid])
                .status()
                .unwrap()
                .success()
        );
        let o = child.wait_with_output().unwrap();
        let e = text(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "SIG{sig}: {e}");
        assert!(
            e.contains("interrupted: ")
                && e.contains(&format!(
                    " of {total} shards complete; rerun the same command to resume"
                )),
            "{e}"
        );
        let v = dr(&["verify", out.to_str().unwrap()]);
        assert_eq!(v.status.code(), Some(4), "{}", text(&v.stderr));
        assert!(
            text(&v.stdout).contains(": 0 problems") && text(&v.stdout).contains("status running")
        );
        assert!(
            text(&v.stderr).contains("incomplete"),
            "{}",
            text(&v.stderr)
        );
        let x = root.join(format!("export-{sig}"));
        let ex = dr(&[
            "export",
            out.to_str().unwrap(),
            "--format",
            "ml-dr",
            "--to",
            x.to_str().unwrap(),
        ]);
        assert_eq!(ex.status.code(), Some(1));
        assert!(
            text(&ex.stderr).contains("--allow-incomplete"),
            "{}",
            text(&ex.stderr)
        );
        ok(reinforce(&root, &name, &["--samples", "6"]));
        assert_same(&root.join("reference"), &out);
        ok(dr(&["verify", out.to_str().unwrap()]));
    }
}

/// Requests that cannot give a sound dataset are refused before anything is
/// written, and leave no folder behind: k above the class count, an output
/// folder inside the images or holding something else; `--labels` of
/// another length than the classes is refused where it is read.
#[test]
fn unsound_requests_are_refused_before_anything_is_written() {
    let root = dataset("reinforce-refusals", false);
    let o = reinforce(&root, "topk", &["--topk", "5000"]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(
        e.contains("topk 5000") && e.contains("37 classes") && e.contains("Fix:"),
        "{e}"
    );
    assert!(
        !root.join("topk").exists(),
        "a refused run left its --out behind"
    );
    for out in ["data", "data/c0/out"] {
        let o = reinforce(&root, out, &[]);
        assert_eq!(o.status.code(), Some(1), "--out {out}");
        assert!(
            text(&o.stderr).contains("inside the images"),
            "{}",
            text(&o.stderr)
        );
    }
    assert!(!root.join("data/c0/out").exists());
    std::fs::create_dir_all(root.join("other")).unwrap();
    std::fs::write(root.join("other/notes.txt"), "mine").unwrap();
    let o = reinforce(&root, "other", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("not empty and holds no reinforced dataset"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(std::fs::read_dir(root.join("other")).unwrap().count(), 1);

    ok(reinforce(&root, "out", &[]));
    std::fs::write(root.join("labels.txt"), "a\nb\nc\n").unwrap();
    let o = dr(&[
        "show",
        root.join("out").to_str().unwrap(),
        "--image",
        "0",
        "--labels",
        root.join("labels.txt").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("3 names for 37 classes"),
        "{}",
        text(&o.stderr)
    );
    assert!(
        text(&o.stdout).is_empty(),
        "show printed before refusing: {}",
        text(&o.stdout)
    );
    // --image is the old spelling of --id; a sample out of range is
    // refused before anything is printed.
    let o = dr(&[
        "show",
        root.join("out").to_str().unwrap(),
        "--image",
        "0",
        "--sample",
        "9",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("--sample 9: image 0 has samples 0 to 2"),
        "{}",
        text(&o.stderr)
    );
    assert!(text(&o.stdout).is_empty(), "{}", text(&o.stdout));
    // Values no run can use are usage errors (exit 2) naming the flag.
    for (flag, v) in [
        ("--samples", "0"),
        ("--batch-size", "0"),
        ("--topk", "0"),
        ("--temperature", "0"),
    ] {
        let o = reinforce(&root, "usage", &[flag, v]);
        assert_eq!(o.status.code(), Some(2), "{flag} {v}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains(flag), "{}", text(&o.stderr));
    }
    assert!(!root.join("usage").exists());
}

/// `dr verify` on what is not a dataset fails, naming what is missing;
/// `--images` naming no folder says so instead of a line per image.
#[test]
fn verify_refuses_what_is_not_a_dataset() {
    let root = dataset("reinforce-verify-not", false);
    for (dir, want) in [
        (root.join("nothere"), "no such folder"),
        (root.join("data"), "no manifest.json"),
        (PathBuf::from("/"), "no manifest.json"),
    ] {
        let o = dr(&["verify", dir.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}", dir.display());
        let e = text(&o.stderr);
        assert!(e.contains(want) && e.contains("Fix:"), "{e}");
        let x = dr(&[
            "export",
            dir.to_str().unwrap(),
            "--format",
            "ml-dr",
            "--to",
            root.join("x").to_str().unwrap(),
        ]);
        assert_eq!(x.status.code(), Some(1));
        assert!(text(&x.stderr).contains(want), "{}", text(&x.stderr));
    }
    ok(reinforce(&root, "out", &[]));
    let o = dr(&[
        "verify",
        root.join("out").to_str().unwrap(),
        "--images",
        "/nonexistent",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        !text(&o.stdout).contains("missing  "),
        "{}",
        text(&o.stdout)
    );
    assert!(
        text(&o.stderr).contains("--images /nonexistent: no such folder"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn other_settings_are_refused_and_reruns_resume() {
    let root = dataset("reinforce-settings", false);
    ok(reinforce(&root, "out", &[]));
    let again = ok(reinforce(&root, "out", &[]));
    assert!(again.contains("0 shards written"), "{again}");
    let o = reinforce(&root, "out", &["--seed", "1"]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(e.contains("seed: 0 vs 1") && e.contains("Fix:"), "{e}");
    let o = reinforce(&root, "out", &["--samples", "2"]);
    assert!(
        text(&o.stderr).contains("num_samples: 3 vs 2"),
        "{}",
        text(&o.stderr)
    );
    // A deleted shard is redone, to the same bytes.
    let shard = root.join("out/shard-00001.bin");
    let before = std::fs::read(&shard).unwrap();
    std::fs::remove_file(&shard).unwrap();
    let s = ok(reinforce(&root, "out", &[]));
    assert!(s.contains("1 shards written"), "{s}");
    assert_eq!(std::fs::read(&shard).unwrap(), before);
}

#[test]
fn bad_images_are_flagged_or_stop_the_run() {
    let root = dataset("reinforce-bad", true);
    let s = ok(reinforce(&root, "skip", &[]));
    assert!(s.contains("4 bad images"), "{s}");
    let tsv = std::fs::read_to_string(root.join("skip/bad-images.tsv")).unwrap();
    for (name, why) in [
        ("c0/zero.jpg", "empty"),
        ("c1/truncated.jpg", "truncated"),
        ("c2/text.png", "not a decodable image"),
        ("c0/huge.png", "decompression-bomb limit"),
    ] {
        let line = tsv
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{tsv}"));
        assert!(line.contains(why), "{line}");
        let id = line.split('\t').next().unwrap();
        let shown = ok(dr(&[
            "show",
            root.join("skip").to_str().unwrap(),
            "--id",
            id,
        ]));
        assert!(shown.contains("sample 2: invalid (bad image)"), "{shown}");
        assert!(
            shown.contains("bad image: ") && shown.contains(why),
            "{shown}"
        );
        // The stored samples of a bad image: preview names it and its reason.
        let p = dr(&[
            "preview",
            "--from",
            root.join("skip").to_str().unwrap(),
            "--ids",
            id,
            "--out",
            root.join("p.png").to_str().unwrap(),
        ]);
        assert_eq!(p.status.code(), Some(1));
        assert!(
            text(&p.stderr).contains("is a bad image, not shown") && text(&p.stderr).contains(why),
            "{}",
            text(&p.stderr)
        );
    }
    ok(dr(&["verify", root.join("skip").to_str().unwrap()]));
    let manifest = std::fs::read_to_string(root.join("skip/manifest.json")).unwrap();
    assert_eq!(manifest.matches("\"reason\"").count(), 4, "{manifest}");
    assert!(!tsv.contains("tiny.png"), "{tsv}");
    // By image id, whatever order the shards met them in.
    let ids: Vec<u32> = tsv
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{tsv}");
    // Ids past the end are refused by name, not dropped.
    let p = dr(&[
        "preview",
        "--from",
        root.join("skip").to_str().unwrap(),
        "--ids",
        "0,999",
        "--out",
        root.join("p.png").to_str().unwrap(),
    ]);
    assert_eq!(p.status.code(), Some(1));
    assert!(
        text(&p.stderr).contains("--ids 999: the dataset has 25 images"),
        "{}",
        text(&p.stderr)
    );

    let o = reinforce(&root, "fail", &["--on-bad-image", "fail"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(
        e.contains("data/c") && e.contains("complete shards are kept"),
        "{e}"
    );
    // What was finished before the stop is complete and verifiable.
    // The complete shards verify; the dataset is unfinished (exit 4).
    let v = dr(&["verify", root.join("fail").to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(4), "{}", text(&v.stderr));
    assert!(
        text(&v.stdout).contains(": 0 problems"),
        "{}",
        text(&v.stdout)
    );
}

#[test]
fn unusable_output_folder_is_a_clear_error() {
    let root = dataset("reinforce-outfile", false);
    std::fs::write(root.join("file"), b"x").unwrap();
    let o = reinforce(&root, "file", &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(e.contains("is a file") && e.contains("Fix:"), "{e}");
    let o = reinforce(&root, "out", &["--json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["images"], 20);
    assert_eq!(j["status"], "complete");
}

#[test]
fn verify_names_a_corrupt_shard() {
    let root = dataset("reinforce-corrupt", false);
    ok(reinforce(&root, "out", &[]));
    let shard = root.join("out/shard-00002.bin");
    let mut b = std::fs::read(&shard).unwrap();
    b[10] ^= 0x40;
    std::fs::write(&shard, &b).unwrap();
    let o = dr(&["verify", root.join("out").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stdout).contains("shard-00002.bin"),
        "{}",
        text(&o.stdout)
    );
    assert!(text(&o.stderr).contains("Fix:"));
}

#[test]
fn task_from_the_scheduler_environment_and_merge_checks() {
    let root = dataset("reinforce-tasks", false);
    let run = |out: &str, env: &[(&str, &str)]| {
        let mut c = reinforce_cmd(&root, out, &[]);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let o = run(
        "s1",
        &[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ],
    );
    assert!(
        text(&o.stderr).contains("task 1 of 2 (from SLURM_ARRAY_TASK_ID"),
        "{}",
        text(&o.stderr)
    );
    let m = std::fs::read_to_string(root.join("s1/manifest.json")).unwrap();
    assert!(m.contains("\"count\": 2"), "{m}");
    let s1 = root.join("s1").display().to_string();
    let out = root.join("m").display().to_string();
    // One task of two is not a whole dataset.
    let e = dr(&["merge", &s1, "--out", &out]);
    assert!(
        text(&e.stderr).contains("task 0/2 is missing"),
        "{}",
        text(&e.stderr)
    );
    let o = run("k0", &[("JOB_COMPLETION_INDEX", "0")]);
    assert!(
        text(&o.stderr).contains("DR_SHARD_COUNT"),
        "{}",
        text(&o.stderr)
    );
    ok(run(
        "k0",
        &[("JOB_COMPLETION_INDEX", "0"), ("DR_SHARD_COUNT", "2")],
    ));
    let k0 = root.join("k0").display().to_string();
    ok(dr(&["merge", &k0, &s1, "--out", &out]));
    ok(dr(&["verify", &out]));
}

#[test]
fn demo_runs_end_to_end_with_a_trained_teacher() {
    let d = fresh_dir("demo");
    let out = d.join("demo");
    let o = dr(&[
        "demo",
        "--out",
        out.to_str().unwrap(),
        "--images-per-class",
        "12",
        "--quiet",
    ]);
    let s = ok(o);
    assert!(s.contains("120 images x 8 samples"), "{s}");
    // The teacher was trained on this distribution: it must mostly agree
    // with the true labels (99.6% held-out top-1 on clean images).
    let line = s
        .lines()
        .find(|l| l.starts_with("teacher accuracy"))
        .unwrap_or_else(|| panic!("{s}"));
    let top1: f64 = line
        .split("top-1 ")
        .nth(1)
        .and_then(|t| t.split('%').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(top1 > 75.0, "{line}");
    assert!(out.join("preview.png").exists());
    let v = ok(dr(&["verify", out.join("reinforced").to_str().unwrap()]));
    assert!(v.contains(": 0 problems"), "{v}");
    let shown = ok(dr(&[
        "show",
        out.join("reinforced").to_str().unwrap(),
        "--id",
        "0",
        "--sample",
        "1",
        "--labels",
        out.join("labels.txt").to_str().unwrap(),
    ]));
    assert!(
        shown.contains("image 0: checker/checker_0000.png (label 0)"),
        "{shown}"
    );
    assert!(
        shown.contains("sample 1: [") && !shown.contains("sample 2"),
        "{shown}"
    );
    // A second run keeps everything.
    let again = ok(dr(&[
        "demo",
        "--out",
        out.to_str().unwrap(),
        "--images-per-class",
        "12",
        "--quiet",
    ]));
    assert!(again.contains("0 shards written"), "{again}");
}

/// The GPU backend (`--device cuda`): the same bytes at batch sizes 32, 5
/// and with two workers, the same parameters as the CPU backend on the same job, and the
/// teacher's probabilities within bf16 parity of it; a resume on the other
/// backend is refused, naming the executor.
#[test]
fn gpu_backend_is_batch_independent_and_tracks_the_cpu() {
    if dr::cuda::testing::gpu_or_skip().is_none() {
        return;
    }
    let root = dataset("reinforce-gpu", false);
    ok(reinforce(&root, "cpu", &["--batch-size", "32"]));
    ok(reinforce(
        &root,
        "g32",
        &["--batch-size", "32", "--device", "cuda"],
    ));
    ok(reinforce(
        &root,
        "g5",
        &["--batch-size", "5", "--device", "cuda"],
    ));
    assert_same(&root.join("g32"), &root.join("g5"));
    let e = text(&reinforce(&root, "g32", &["--batch-size", "32"]).stderr);
    assert!(e.contains("executor"), "{e}");

    let c = dr::store::reader::Reinforced::open(&root.join("cpu")).unwrap();
    let g = dr::store::reader::Reinforced::open(&root.join("g32")).unwrap();
    let (mut n, mut top1, mut worst) = (0, 0, 0f32);
    for id in 0..c.manifest.settings.images {
        for (rc, rg) in c.records(id).unwrap().iter().zip(g.records(id).unwrap()) {
            assert_eq!(
                format!("{:?}", rc.params),
                format!("{:?}", rg.params),
                "image {id}"
            );
            n += 1;
            top1 += (rc.classes[0] == rg.classes[0]) as usize;
            worst = worst.max((rc.probs[0] - rg.probs[0]).abs());
        }
    }
    println!("GPU vs CPU backend: top-1 {top1}/{n}, max |top-1 probability difference| {worst:.4}");
    assert!(
        top1 * 100 >= n * 95 && worst <= 0.02,
        "top-1 {top1}/{n}, worst {worst}"
    );
}

/// `--device cuda` without --batch-size: the batch comes from the device's
/// free memory (at most a mixing group's samples) and is said at start; the
/// records are those of --batch-size 32. (The halving on an out-of-memory
/// is tested in pipeline::gpu, against a fake and a real driver error, and
/// in a batch in tests/faults.rs.)
#[test]
fn gpu_batch_size_comes_from_memory() {
    if dr::cuda::testing::gpu_or_skip().is_none() {
        return;
    }
    let root = dataset("reinforce-gpu-memory", false);
    ok(reinforce(
        &root,
        "g32",
        &["--batch-size", "32", "--device", "cuda"],
    ));
    let auto = reinforce(&root, "auto", &["--device", "cuda"]);
    let said = text(&auto.stderr);
    ok(auto);
    assert!(
        said.contains("dr reinforce: batch size ") && said.contains("MiB free of"),
        "{said}"
    );
    assert_same(&root.join("g32"), &root.join("auto"));
}

/// The transformer families on the GPU backend ([gpu-transformer]): ViT
/// (class token, attention), Swin (windows, shifted masks, patch merging)
/// and ConvNeXt, each the same bytes at batch sizes 32 and 5 and within
/// bf16 parity of the CPU backend.
#[test]
fn transformer_teachers_reinforce_on_the_gpu() {
    if dr::cuda::testing::gpu_or_skip().is_none() {
        return;
    }
    let root = dataset("reinforce-gpu-transformers", false);
    for family in ["vit-dynamo", "swin-legacy17", "convnext-legacy17"] {
        let teacher = repo_root()
            .join(format!("tests/fixtures/teacher/{family}.onnx"))
            .display()
            .to_string();
        let run = |out: &str, extra: &[&str]| {
            let mut c = common::reinforce::reinforce_cmd_with(&root, &teacher, out, extra);
            ok(c.arg("--quiet").output().expect("running dr"))
        };
        let (cpu, g32, g5) = (
            format!("{family}-cpu"),
            format!("{family}-g32"),
            format!("{family}-g5"),
        );
        run(&cpu, &["--batch-size", "32"]);
        run(&g32, &["--batch-size", "32", "--device", "cuda"]);
        run(&g5, &["--batch-size", "5", "--device", "cuda"]);
        assert_same(&root.join(&g32), &root.join(&g5));
        let c = dr::store::reader::Reinforced::open(&root.join(&cpu)).unwrap();
        let g = dr::store::reader::Reinforced::open(&root.join(&g32)).unwrap();
        let (mut n, mut top1, mut worst) = (0, 0, 0f32);
        for id in 0..c.manifest.settings.images {
            for (rc, rg) in c.records(id).unwrap().iter().zip(g.records(id).unwrap()) {
                n += 1;
                top1 += (rc.classes[0] == rg.classes[0]) as usize;
                worst = worst.max((rc.probs[0] - rg.probs[0]).abs());
            }
        }
        println!(
            "{family}: GPU vs CPU backend: top-1 {top1}/{n}, max |top-1 probability difference| {worst:.4}"
        );
        assert!(
            top1 * 100 >= n * 95 && worst <= 0.02,
            "{family}: top-1 {top1}/{n}, worst {worst}"
        );
    }
}
