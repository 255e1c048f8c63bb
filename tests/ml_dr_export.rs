//! `dr export --format ml-dr`, read back with Python's standard library (the
//! structure torch.load and ml-dr's loader need; tools/check_ml_dr_export.py
//! runs torch and ml-dr's own ReinforcedDataset on the same output).

mod common;

use common::{dr, fresh_dir, repo_root, text};

#[test]
fn export_reads_back_with_zipfile_and_pickle() {
    let root = fresh_dir("ml-dr-export");
    let src = repo_root().join("tests/fixtures/augment/images");
    for (i, f) in ["photo.png", "jpeg.jpg", "pair.png", "tall.png", "rgba.png"]
        .iter()
        .enumerate()
    {
        let class = root.join(format!("data/c{}", i % 2));
        std::fs::create_dir_all(&class).unwrap();
        std::fs::copy(src.join(f), class.join(f)).unwrap();
    }
    std::fs::write(root.join("data/c1/empty.png"), b"").unwrap();
    std::fs::write(
        root.join("c.yaml"),
        "reinforce:
  num_samples: 3
  topk: 4
  mixing_group: 3
  image_augmentation:
    uint8: {}
    random_resized_crop: {size: 32}
    random_horizontal_flip: {p: 0.5}
    rand_augment: {p: 1.0}
    to_tensor: {}
    random_erase: {p: 0.5}
    normalize: {mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]}
    mixup: {alpha: 1.0, p: 0.5}
    cutmix: {alpha: 1.0, p: 0.5}
",
    )
    .unwrap();
    let out = root.join("out");
    let teacher = repo_root().join("tests/fixtures/teacher/resnet-legacy17.onnx");
    let o = dr(&[
        "reinforce",
        "--data",
        root.join("data").to_str().unwrap(),
        "--teacher",
        teacher.to_str().unwrap(),
        "--config",
        root.join("c.yaml").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let to = root.join("ml-dr");
    let bundle = root.join("reinforced_data.tar.gz");
    let o = dr(&[
        "export",
        out.to_str().unwrap(),
        "--format",
        "ml-dr",
        "--to",
        to.to_str().unwrap(),
        "--bundle",
        bundle.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let s = text(&o.stdout);
    assert!(
        s.contains("5 image files") && s.contains("1 bad images have no file"),
        "{s}"
    );
    let script = repo_root().join("tests/python/check_ml_dr_files.py");
    match std::process::Command::new("python3")
        .args([script.to_str().unwrap(), to.to_str().unwrap(), "3", "4"])
        .output()
    {
        Err(_) => println!("skipped: python3 not found (the export itself was checked above)"),
        Ok(p) => {
            assert!(
                p.status.success(),
                "{}\n{}",
                text(&p.stdout),
                text(&p.stderr)
            );
            assert!(text(&p.stdout).contains("ok: config and 5 image files"));
        }
    }
    // Round trip: export, then import, gives the same records.
    let back = root.join("back");
    let o = dr(&[
        "import",
        to.to_str().unwrap(),
        "--format",
        "ml-dr",
        "--data",
        root.join("data").to_str().unwrap(),
        "--out",
        back.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("(1 without a record"),
        "{}",
        text(&o.stdout)
    );
    // ... and so does the bundle.
    let back2 = root.join("back2");
    let o = dr(&[
        "import",
        bundle.to_str().unwrap(),
        "--format",
        "ml-dr",
        "--data",
        root.join("data").to_str().unwrap(),
        "--out",
        back2.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for id in 0..6 {
        let show = |d: &std::path::Path| {
            let s = dr(&[
                "show",
                d.to_str().unwrap(),
                "--id",
                &id.to_string(),
                "--json",
            ]);
            assert!(s.status.success(), "{}", text(&s.stderr));
            let mut v = serde_json::from_slice::<serde_json::Value>(&s.stdout).unwrap();
            // ml-dr's format has no bad-image reason: an imported bad image
            // says only that its file is missing from the release.
            let bad = v["bad_image"].take();
            v["bad_image"] = serde_json::Value::Bool(!bad.is_null());
            v
        };
        assert_eq!(show(&out), show(&back), "image {id}");
        assert_eq!(show(&out), show(&back2), "image {id} (bundle)");
    }
    // python/dr_reader reads the same parameters and top-k from OUT itself.
    let Some(py) = common::python_with_numpy() else {
        println!(
            "skipped: no Python with numpy (run scripts/setup-python.sh) for python/dr_reader"
        );
        return;
    };
    let check = repo_root().join("tests/python/check_reader.py");
    let p = std::process::Command::new(py)
        .args([
            check.to_str().unwrap(),
            out.to_str().unwrap(),
            to.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        p.status.success(),
        "{}\n{}",
        text(&p.stdout),
        text(&p.stderr)
    );
    assert!(
        text(&p.stdout).contains("ok: 15 samples of 6 images"),
        "{}",
        text(&p.stdout)
    );
}
