//! `dr import --format ml-dr` on a fake release written by ml-dr's own code
//! (tools/make_ml_dr_release.py: protocol-4 pickles, numpy scalars in CutMix
//! boxes, unsorted argpartition top-k): every record reads back as ml-dr
//! wrote it, and the dataset verifies.

mod common;

use common::{dr, fresh_dir, repo_root, text};
use serde_json::Value;

fn close(a: &Value, b: &Value, tol: f64) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(u, v)| close(u, v, tol))
        }
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() <= tol
        }
        _ => a == b,
    }
}

#[test]
fn imports_ml_drs_files_exactly() {
    let release = repo_root().join("tests/fixtures/ml-dr-release");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(release.join("expected.json")).unwrap())
            .unwrap();
    let root = fresh_dir("ml-dr-import");
    let images = repo_root().join("tests/fixtures/augment/images");
    for (i, f) in expected["files"].as_array().unwrap().iter().enumerate() {
        let class = root.join(format!("data/c{}", i % 2));
        std::fs::create_dir_all(&class).unwrap();
        let f = f.as_str().unwrap();
        std::fs::copy(images.join(f), class.join(f)).unwrap();
    }
    let (data, out) = (root.join("data"), root.join("out"));
    let import = |from: &std::path::Path, to: &std::path::Path| {
        dr(&[
            "import",
            from.to_str().unwrap(),
            "--format",
            "ml-dr",
            "--data",
            data.to_str().unwrap(),
            "--out",
            to.to_str().unwrap(),
        ])
    };
    let o = import(&release, &out);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v = dr(&[
        "verify",
        out.to_str().unwrap(),
        "--images",
        data.to_str().unwrap(),
    ]);
    assert!(v.status.success(), "{}{}", text(&v.stdout), text(&v.stderr));
    for img in expected["images"].as_array().unwrap() {
        let id = img["id"].to_string();
        let s = dr(&["show", out.to_str().unwrap(), "--id", &id, "--json"]);
        assert!(s.status.success(), "{}", text(&s.stderr));
        let got: Value = serde_json::from_slice(&s.stdout).unwrap();
        assert_eq!(got["path"], img["path"]);
        for (g, w) in got["samples"]
            .as_array()
            .unwrap()
            .iter()
            .zip(img["samples"].as_array().unwrap())
        {
            // CutMix's lam is kept as f32; everything else exactly.
            assert!(close(&g["compressed"], &w["compressed"], 1e-7), "{g}\n{w}");
            // ml-dr's top-k is unsorted: compare as sorted (value, id) pairs, f16 values.
            let mut want: Vec<(f64, u64)> = w["probs"]
                .as_array()
                .unwrap()
                .iter()
                .zip(w["classes"].as_array().unwrap())
                .map(|(p, c)| (p.as_f64().unwrap(), c.as_u64().unwrap()))
                .collect();
            want.sort_by(|a, b| b.0.total_cmp(&a.0));
            let ids: Vec<u64> = want.iter().map(|p| p.1).collect();
            assert_eq!(g["classes"], serde_json::json!(ids));
            for (gp, wp) in g["probs"].as_array().unwrap().iter().zip(&want) {
                assert!(
                    (gp.as_f64().unwrap() - wp.0).abs() <= wp.0 * 1e-3,
                    "{gp} vs {}",
                    wp.0
                );
            }
        }
    }
    // The release as a gzipped tar bundle (members in a folder, in an order
    // that is not the ids') gives the same dataset.
    let bundle = root.join("reinforced_data.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&bundle).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        let mut names: Vec<String> = std::fs::read_dir(&release)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".pth.tar"))
            .collect();
        names.sort();
        names.reverse();
        for n in names {
            tar.append_path_with_name(release.join(&n), format!("reinforced_data/{n}"))
                .unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }
    let from_bundle = root.join("from-bundle");
    let o = import(&bundle, &from_bundle);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for img in expected["images"].as_array().unwrap() {
        let id = img["id"].to_string();
        let show = |d: &std::path::Path| {
            dr(&["show", d.to_str().unwrap(), "--image", &id, "--json"]).stdout
        };
        assert_eq!(show(&out), show(&from_bundle), "image {id}");
    }
    assert!(!from_bundle.join(".ml-dr-records.tmp").exists());
    // A stored sample replays on the images (pairs included).
    let sheet = root.join("sheet.png");
    let p = dr(&[
        "preview",
        "--from",
        out.to_str().unwrap(),
        "--out",
        sheet.to_str().unwrap(),
    ]);
    assert!(p.status.success(), "{}", text(&p.stderr));
    // Re-import into the same folder is refused; a broken file is named.
    let again = import(&release, &out);
    assert!(text(&again.stderr).contains("already holds a dataset"));
    let broken = root.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for f in std::fs::read_dir(&release).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, broken.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(broken.join("2.pth.tar"), b"PK\x03\x04 truncated").unwrap();
    let e = import(&broken, &root.join("out2"));
    assert_eq!(e.status.code(), Some(1));
    assert!(text(&e.stderr).contains("2.pth.tar"), "{}", text(&e.stderr));
}
