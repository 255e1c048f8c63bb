//! What `dr reinforce` does when its inputs change or fail: every bad image
//! of the stopping group named, the documented recovery paths, missing
//! `--list` files, hashes taken while decoding (images.tsv complete at the
//! end, `dr verify --images` still seeing drift), OS errors said once.

mod common;

use std::path::Path;

use common::reinforce::{CONFIG, dataset, ok, reinforce, reinforce_cmd};
use common::{dr, repo_root, text};

/// The job's config (`root/c.yaml`) set to one mixing group of 32: every
/// image of the test dataset (20, or 25 with the bad ones) is decoded
/// before anything runs.
fn one_group(root: &Path) {
    let c = CONFIG.replace("mixing_group: 4", "mixing_group: 32");
    std::fs::write(root.join("c.yaml"), c).unwrap();
}

fn good_jpeg() -> Vec<u8> {
    std::fs::read(repo_root().join("tests/fixtures/augment/images/jpeg.jpg")).unwrap()
}

#[test]
fn a_failed_run_names_every_bad_image_and_recovers_once_fixed() {
    let root = dataset("inputs-fail", true);
    one_group(&root);
    let run = || {
        reinforce_cmd(&root, "out", &["--on-bad-image", "fail", "--quiet"])
            .output()
            .unwrap()
    };
    let o = run();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    for name in [
        "c0/zero.jpg",
        "c1/truncated.jpg",
        "c2/text.png",
        "c0/huge.png",
    ] {
        assert!(e.contains(name), "{name} not named:\n{e}");
    }
    assert!(e.contains("4 bad images") && e.contains("Fix:"), "{e}");
    // The documented fix: repair the files, rerun the same command.
    for name in [
        "c0/zero.jpg",
        "c1/truncated.jpg",
        "c2/text.png",
        "c0/huge.png",
    ] {
        std::fs::write(root.join("data").join(name), good_jpeg()).unwrap();
    }
    let o = run();
    assert!(o.status.success(), "{}", text(&o.stderr));
    ok(dr(&["verify", root.join("out").to_str().unwrap()]));
}

#[test]
fn removing_files_relists_when_no_shard_is_kept_and_is_named_otherwise() {
    let root = dataset("inputs-remove", true);
    one_group(&root);
    let o = reinforce_cmd(&root, "out", &["--on-bad-image", "fail", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    for name in [
        "c0/zero.jpg",
        "c1/truncated.jpg",
        "c2/text.png",
        "c0/huge.png",
    ] {
        std::fs::remove_file(root.join("data").join(name)).unwrap();
    }
    // No shard was complete: the rerun lists the folder again.
    let o = reinforce_cmd(&root, "out", &["--on-bad-image", "fail", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (j["images"].as_u64(), j["bad_images"].as_u64()),
        (Some(21), Some(0))
    );
    ok(dr(&["verify", root.join("out").to_str().unwrap()]));

    // With complete shards kept, a changed listing is refused by name.
    ok(reinforce(&root, "small", &[]));
    std::fs::remove_file(root.join("data/c1/tiny.png")).unwrap();
    let o = reinforce(&root, "small", &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(
        e.contains("1 file gone: c1/tiny.png") && e.contains("rm -r") && e.contains("Fix:"),
        "{e}"
    );
}

#[test]
fn a_missing_list_file_is_a_bad_image_named_by_its_line() {
    let root = dataset("inputs-list", false);
    let mut list = String::from("# images of the test dataset\n");
    let mut n = 0;
    for class in 0..3 {
        let dir = root.join(format!("data/c{class}"));
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for f in names {
            list.push_str(&format!("data/c{class}/{f}\t{class}\n"));
            n += 1;
        }
    }
    list.push_str("data/c1/gone.jpg\t1\n");
    let line = n + 2;
    std::fs::write(root.join("list.tsv"), list).unwrap();
    let run = |out: &str, extra: &[&str]| {
        std::process::Command::new(common::dr_bin())
            .arg("reinforce")
            .arg("--list")
            .arg(root.join("list.tsv"))
            .args(["--teacher", &common::reinforce::teacher(), "--config"])
            .arg(root.join("c.yaml"))
            .arg("--out")
            .arg(root.join(out))
            .args(["--images-per-shard", "4", "--quiet"])
            .args(extra)
            .output()
            .unwrap()
    };
    let s = ok(run("out", &[]));
    assert!(s.contains("1 bad image"), "{s}");
    let tsv = std::fs::read_to_string(root.join("out/bad-images.tsv")).unwrap();
    let want = format!("data/c1/gone.jpg\tcannot read the file: no such file (--list line {line})");
    assert!(tsv.contains(&want), "{tsv}");
    ok(dr(&["verify", root.join("out").to_str().unwrap()]));
    // Under `fail` the run stops naming the line, keeping a resumable folder.
    let o = run("fail", &["--on-bad-image", "fail"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o.stderr).contains(&format!("--list line {line}")),
        "{}",
        text(&o.stderr)
    );
    assert!(root.join("fail/manifest.json").exists());
}

#[test]
fn images_tsv_is_hashed_while_decoding_and_verify_sees_drift() {
    let root = dataset("inputs-hash", false);
    let out = root.join("out");
    ok(reinforce(&root, "out", &[]));
    let tsv = std::fs::read_to_string(out.join("images.tsv")).unwrap();
    assert_eq!(tsv.lines().count(), 21, "{tsv}");
    for l in tsv.lines().skip(1) {
        let sha = l.rsplit('\t').next().unwrap();
        assert_eq!(sha.len(), 64, "unhashed row: {l}");
    }
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sha256.tsv"))
        .collect();
    assert!(left.is_empty(), "hashes files left: {left:?}");
    // The hashes are the files' own.
    let one = tsv.lines().nth(1).unwrap();
    let f: Vec<&str> = one.split('\t').collect();
    let (bytes, sha) = dr::store::images::hash_file(&root.join("data").join(f[1])).unwrap();
    assert_eq!(
        (bytes.to_string(), sha),
        (f[3].to_string(), f[4].to_string())
    );

    let data = root.join("data");
    let verify = || {
        dr(&[
            "verify",
            out.to_str().unwrap(),
            "--images",
            data.to_str().unwrap(),
        ])
    };
    let o = verify();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("20 files checked: 0 missing, 0 changed"),
        "{}",
        text(&o.stdout)
    );
    let rows: Vec<Vec<&str>> = tsv
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    std::fs::write(data.join(rows[0][1]), good_jpeg()).unwrap();
    std::fs::remove_file(data.join(rows[1][1])).unwrap();
    let o = verify();
    assert_eq!(o.status.code(), Some(1));
    let s = text(&o.stdout);
    assert!(
        s.contains(&format!("changed  {}", rows[0][1]))
            && s.contains(&format!("missing  {}", rows[1][1])),
        "{s}"
    );
    assert!(text(&o.stderr).contains("Fix:"));

    // A task's own dataset: the other task's rows are said to be elsewhere.
    let root = dataset("inputs-hash-task", false);
    ok(reinforce(&root, "t0", &["--shard", "0/2"]));
    let o = dr(&[
        "verify",
        root.join("t0").to_str().unwrap(),
        "--images",
        root.join("data").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("in other tasks' shards (merge first)"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn os_errors_are_said_once() {
    let root = dataset("inputs-os", false);
    let run = |source: &[&str]| {
        let mut args = vec!["reinforce"];
        args.extend_from_slice(source);
        let (teacher, config, out) = (
            common::reinforce::teacher(),
            root.join("c.yaml").display().to_string(),
            root.join("out").display().to_string(),
        );
        args.extend_from_slice(&["--teacher", &teacher, "--config", &config, "--out", &out]);
        dr(&args)
    };
    let nothere = root.join("nothere").display().to_string();
    for flag in ["--data", "--list"] {
        let o = run(&[flag, &nothere]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
        let e = text(&o.stderr);
        assert_eq!(e.matches("no such file").count(), 1, "{e}");
        assert!(!e.contains("os error"), "{e}");
        assert!(!root.join("out").exists());
    }
    // Neither source given: the usage error names both.
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(2));
    let e = text(&o.stderr);
    assert!(e.contains("--data") && e.contains("--list"), "{e}");
}
