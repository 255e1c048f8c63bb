//! `dr reinforce --label-mode sampled` end to end on the CPU: reinforce ->
//! verify -> python/dr_reader -> `dr export --format ml-dr`, the bytes
//! independent of batch size and threads, the invariants verify checks, and
//! the refusals (GPU backend, unknown sampler, weighted labels for ml-dr),
//! and that each sample's draws follow that sample's teacher distribution.

mod common;

use common::reinforce::{assert_same, dataset, export_ml_dr, ok, preview_from, reinforce};
use common::{dr, repo_root, text};

const SAMPLED: &[&str] = &["--label-mode", "sampled"];

fn with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    [SAMPLED, extra].concat()
}

#[test]
fn sampled_labels_round_trip_and_do_not_depend_on_batch_or_threads() {
    let root = dataset("sampled-round-trip", true);
    let s = ok(reinforce(&root, "a", &with(&["--batch-size", "32"])));
    assert!(s.contains("4 bad images"), "{s}");
    ok(reinforce(
        &root,
        "b",
        &with(&["--batch-size", "1", "--threads", "1"]),
    ));
    ok(reinforce(
        &root,
        "c",
        &with(&["--batch-size", "5", "--threads", "2"]),
    ));
    assert_same(&root.join("a"), &root.join("b"));
    assert_same(&root.join("a"), &root.join("c"));
    // Two tasks, merged: the same bytes as one.
    let mut args = vec!["merge".to_string()];
    for i in 0..2 {
        let part = format!("t{i}");
        ok(reinforce(
            &root,
            &part,
            &with(&["--shard", &format!("{i}/2")]),
        ));
        args.push(root.join(part).display().to_string());
    }
    args.extend(["--out".into(), root.join("merged").display().to_string()]);
    ok(dr(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_same(&root.join("a"), &root.join("merged"));
    // A rerun into it in the other mode is refused as other settings.
    let o = reinforce(&root, "a", &[]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("labels: {"), "{}", text(&o.stderr));
    let out = root.join("a");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        m["settings"]["labels"],
        serde_json::json!({"mode": "sampled", "sampler_version": 1, "k": 5, "proposal_t": null})
    );
    let descr = m["record"]["dtype"].as_array().unwrap();
    let last = descr.last().unwrap();
    assert_eq!(last, &serde_json::json!(["draws", "<u2", [5]]));
    assert!(!descr.iter().any(|f| f[0] == "probs" || f[0] == "classes"));
    let v = ok(dr(&["verify", out.to_str().unwrap()]));
    assert!(v.contains(": 0 problems"), "{v}");
    // Draws differ between samples (the stream is keyed by the sample).
    let show = ok(dr(&["show", out.to_str().unwrap(), "--id", "0", "--json"]));
    let j: serde_json::Value = serde_json::from_str(&show).unwrap();
    let draws: Vec<&serde_json::Value> = j["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["draws"])
        .collect();
    assert_eq!(draws.len(), 3);
    assert!(draws[0] != draws[1] || draws[1] != draws[2], "{draws:?}");
    let text_show = ok(dr(&["show", out.to_str().unwrap(), "--id", "0"]));
    assert!(text_show.contains("sampled 5 draws"), "{text_show}");
    // The contact sheet captions stored samples with their most drawn classes.
    let png = root.join("sheet.png");
    preview_from(&out, &png);

    let to = root.join("ml-dr");
    let e = ok(export_ml_dr(&out, &to));
    assert!(e.contains("4 bad images have no file"), "{e}");
    let Some(py) = common::python_with_numpy() else {
        println!(
            "skipped: no Python with numpy (run scripts/setup-python.sh) for python/dr_reader"
        );
        return;
    };
    let check = repo_root().join("tests/python/check_sampled.py");
    let said = common::run_python(&py, &[check.as_os_str(), out.as_os_str(), to.as_os_str()]);
    // 21 usable images (tiny.png is one) x 3 samples.
    assert!(
        said.contains("ok: 63 sampled records of 21 images"),
        "{said}"
    );
}

#[test]
fn default_label_mode_is_topk_and_unchanged() {
    let root = dataset("sampled-default", false);
    ok(reinforce(&root, "default", &[]));
    ok(reinforce(&root, "topk", &["--label-mode", "topk"]));
    assert_same(&root.join("default"), &root.join("topk"));
    let m = std::fs::read_to_string(root.join("default/manifest.json")).unwrap();
    assert!(!m.contains("\"labels\""), "{m}");
    assert!(m.contains("\"probs\""), "{m}");
}

#[test]
fn verify_and_readers_check_sampled_records() {
    let root = dataset("sampled-verify", false);
    ok(reinforce(&root, "out", SAMPLED));
    let out = root.join("out");
    let manifest = out.join("manifest.json");
    let original = std::fs::read_to_string(&manifest).unwrap();
    let m: serde_json::Value = serde_json::from_str(&original).unwrap();
    // Swap the first record's first and last draws: no longer ascending.
    let size = m["record"]["size"].as_u64().unwrap() as usize;
    let shard = out.join(m["shards"][0]["file"].as_str().unwrap());
    let mut b = std::fs::read(&shard).unwrap();
    let (first, last) = (size - 10, size - 2);
    let (x, y) = ([b[first], b[first + 1]], [b[last], b[last + 1]]);
    assert_ne!(x, y, "the test needs two different draws");
    b[first..first + 2].copy_from_slice(&y);
    b[last..last + 2].copy_from_slice(&x);
    // The second record's last draw past the 37 classes (still ascending).
    b[2 * size - 2..2 * size].copy_from_slice(&40u16.to_le_bytes());
    std::fs::write(&shard, &b).unwrap();
    let o = dr(&["verify", out.to_str().unwrap()]);
    assert!(!o.status.success());
    let said = text(&o.stdout);
    assert!(said.contains("sample 0: draws"), "{said}");
    assert!(
        said.contains("sample 1: draws")
            && said.contains(", 40] are not ascending class ids below 37"),
        "{said}"
    );
    // dr_reader refuses the out-of-range draw rather than return a longer target.
    if let Some(py) = common::python_with_numpy() {
        let said = common::run_reader_code(
            &py,
            "ds = dr_reader.open(sys.argv[2]); i = int(ds.order[0])\n\
             assert len(ds.probs(i, 0, dense=True)) == 37\n\
             try:\n    ds.probs(i, 1, dense=True)\nexcept ValueError as e:\n    print(e)",
            &[out.as_os_str()],
        );
        assert!(
            said.contains("draws class 40 of 37") && said.contains("Fix: run `dr verify"),
            "{said}"
        );
    }

    // A sampler this dr does not know, and weighted labels, are refused by
    // name; ml-dr export says why weighted labels cannot go there.
    let edit = |from: &str, to: &str| {
        std::fs::write(&manifest, original.replace(from, to)).unwrap();
    };
    edit("\"sampler_version\": 1", "\"sampler_version\": 2");
    let o = dr(&["verify", out.to_str().unwrap()]);
    assert!(
        text(&o.stderr).contains("sampler version 2; this dr has version 1"),
        "{}",
        text(&o.stderr)
    );
    edit("\"proposal_t\": null", "\"proposal_t\": 2.0");
    let to = root.join("ml-dr");
    let o = export_ml_dr(&out, &to);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("manifest.json") && err.contains("importance weights") && err.contains("Fix:"),
        "{err}"
    );
    assert!(!to.exists());
}

#[test]
fn sampled_labels_on_the_gpu_are_refused_not_drawn_on_the_cpu() {
    let root = dataset("sampled-gpu", false);
    let o = reinforce(&root, "out", &with(&["--device", "cuda"]));
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("GPU draw kernel is not written yet") && err.contains("Fix: --device cpu"),
        "{err}"
    );
    assert!(!root.join("out").exists());
}

/// Pearson's chi-square of `counts` (k draws) against `p` over its upper
/// bound at false-alarm rate e^-14 (Laurent & Massart 2000: P(X² - df >=
/// 2√(df t) + 2t) <= e^-t): below 1 unless the draws do not follow p.
/// Classes expecting fewer than 5 draws are pooled into one cell, kept when
/// it expects 5 or more; more than 20 draws in a pool expecting under 5
/// (Poisson tail below 1e-7) counts as infinitely far off.
fn chi_square_ratio(counts: &[u32], p: &[f64]) -> f64 {
    let k: u32 = counts.iter().sum();
    let (mut cells, mut pooled) = (Vec::new(), (0f64, 0f64));
    for (&f, &pc) in counts.iter().zip(p) {
        let e = k as f64 * pc;
        if e >= 5.0 {
            cells.push((f as f64, e));
        } else {
            pooled = (pooled.0 + f as f64, pooled.1 + e);
        }
    }
    if pooled.1 >= 5.0 {
        cells.push(pooled);
    } else if pooled.0 > 20.0 {
        return f64::INFINITY;
    }
    let x2: f64 = cells.iter().map(|(f, e)| (f - e) * (f - e) / e).sum();
    let (df, t) = ((cells.len() - 1).max(1) as f64, 14.0);
    x2 / (df + 2.0 * (df * t).sqrt() + 2.0 * t)
}
#[test]
fn sampled_draws_follow_the_teachers_distribution_of_the_same_sample() {
    // The demo's trained teacher (10 classes) gives peaked, varied p: the
    // fixture ResNet's near-uniform p could not tell one sample from another.
    let root = common::fresh_dir("sampled-demo");
    let demo = root.join("demo");
    ok(dr(&[
        "demo",
        "--out",
        demo.to_str().unwrap(),
        "--images-per-class",
        "2",
        "--samples",
        "4",
        "--device",
        "cpu",
        "--quiet",
    ]));
    let run = |out: &str, extra: &[&str]| {
        let o = std::process::Command::new(common::dr_bin())
            .arg("reinforce")
            .arg("--data")
            .arg(demo.join("data"))
            .arg("--teacher")
            .arg(demo.join("teacher.onnx"))
            .arg("--config")
            .arg(demo.join("config.yaml"))
            .arg("--out")
            .arg(root.join(out))
            .args(["--samples", "4", "--quiet"])
            .args(extra)
            .output()
            .unwrap();
        ok(o);
        dr::store::reader::Reinforced::open(&root.join(out)).unwrap()
    };
    // Top-10 of 10 classes: the whole p (f16); 2000 draws of the same samples.
    let dense = run("dense", &["--topk", "10"]);
    let drawn = run("drawn", &["--topk", "2000", "--label-mode", "sampled"]);
    let mut same = Vec::new();
    let mut shifted = Vec::new();
    let (mut ps, mut counts) = (Vec::new(), Vec::new());
    for id in 0..dense.rows.len() as u32 {
        for (a, b) in dense
            .records(id)
            .unwrap()
            .iter()
            .zip(drawn.records(id).unwrap())
        {
            assert_eq!(a.params, b.params, "image {id}: the same augmentation");
            let mut p = [0f64; 10];
            for (&c, &v) in a.classes.iter().zip(&a.probs) {
                p[c as usize] = v as f64;
            }
            let total: f64 = p.iter().sum();
            ps.push(p.iter().map(|v| v / total).collect::<Vec<_>>());
            let mut n = [0u32; 10];
            for &c in &b.draws {
                n[c as usize] += 1;
            }
            counts.push(n);
        }
    }
    for i in 0..ps.len() {
        same.push(chi_square_ratio(&counts[i], &ps[i]));
        shifted.push(chi_square_ratio(&counts[i], &ps[(i + 1) % ps.len()]));
    }
    let max_same = same.iter().cloned().fold(f64::MIN, f64::max);
    shifted.sort_by(f64::total_cmp);
    let median_shifted = shifted[shifted.len() / 2];
    println!(
        "{} samples: chi-square / its e^-14 bound against their own p max {max_same:.2}, against the next sample's p median {median_shifted:.1}",
        ps.len()
    );
    // 80 samples: one passes its bound with chance under 80 e^-14 = 7e-5.
    assert!(max_same < 1.0, "{same:?}");
    // The test can tell samples apart: another sample's p is far off.
    assert!(median_shifted > 10.0, "{shifted:?}");
}
