//! `dr reinforce --prob-format u8log --class-ids packed` end to end on the
//! CPU: reinforce -> verify -> the Rust reader (against an f16 run of the
//! same job, within u8log's stated bound) -> show, preview --from ->
//! `dr export --format ml-dr` -> python/dr_reader (the same f32 values as
//! Rust, the decode table bit for bit); sampled draws with packed ids equal
//! to whole-byte ones; merge and resume refusing other encodings; damaged
//! packed ids and codes reported, not panicked on.

mod common;

use common::reinforce::{assert_same, dataset, export_ml_dr, ok, preview_from, reinforce};
use common::{dr, repo_root, text};
use dr::labels::u8log;
use dr::store::reader::Reinforced;

const COMPACT: &[&str] = &["--prob-format", "u8log", "--class-ids", "packed"];

fn manifest(out: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn u8log_packed_topk_round_trips_within_the_bound() {
    let root = dataset("u8log-topk", true);
    ok(reinforce(&root, "f16", &[]));
    ok(reinforce(&root, "q8", COMPACT));
    let out = root.join("q8");
    let m = manifest(&out);
    assert_eq!(m["settings"]["prob_format"], "u8log");
    assert_eq!(m["settings"]["class_ids"], "packed");
    // 37 classes: 6-bit ids, 5 of them in 4 bytes; 5 codes of 1 byte.
    assert_eq!(m["record"]["class_id_bits"], 6);
    let descr = m["record"]["dtype"].as_array().unwrap();
    assert_eq!(
        descr[descr.len() - 2..],
        [
            serde_json::json!(["prob_codes", "|u1", [5]]),
            serde_json::json!(["classes_packed", "|u1", [4]])
        ]
    );
    // The default run's manifest has none of the new fields (older readers
    // and `dr merge` with older tasks see the same settings).
    let f16_text = std::fs::read_to_string(root.join("f16/manifest.json")).unwrap();
    for field in [
        "prob_format",
        "class_ids",
        "class_id_bits",
        "prob_codes",
        "_packed",
    ] {
        assert!(!f16_text.contains(field), "{field}");
    }
    let f16_size = manifest(&root.join("f16"))["record"]["size"]
        .as_u64()
        .unwrap();
    assert_eq!(m["record"]["size"].as_u64().unwrap(), f16_size - 11);
    let v = ok(dr(&["verify", out.to_str().unwrap()]));
    assert!(v.contains(": 0 problems"), "{v}");

    // The same job in f16: the same parameters and classes, each
    // probability within u8log's bound of the f16 one (plus f16's own
    // 2^-11), or 0 / the floor below it.
    let (a, b) = (
        Reinforced::open(&root.join("f16")).unwrap(),
        Reinforced::open(&out).unwrap(),
    );
    let (mut n, mut worst) = (0, 0f64);
    let mut expected = serde_json::Map::new();
    for id in 0..a.rows.len() as u32 {
        let (ra, rb) = (a.records(id).unwrap(), b.records(id).unwrap());
        for (x, y) in ra.iter().zip(&rb) {
            assert_eq!(x.params, y.params, "image {id}");
            assert_eq!(x.classes, y.classes, "image {id}");
            for (&p, &q) in x.probs.iter().zip(&y.probs) {
                let (p, q) = (p as f64, q as f64);
                if p >= u8log::FLOOR as f64 * 1.001 {
                    let err = (q - p).abs() / p;
                    assert!(
                        err <= u8log::MAX_REL_ERROR + 2f64.powi(-11),
                        "image {id}: f16 {p} u8log {q}"
                    );
                    worst = worst.max(err);
                    n += 1;
                } else {
                    assert!(q <= u8log::FLOOR as f64 && (q - p).abs() <= 2f64.powi(-16));
                }
            }
        }
        let recs: Vec<serde_json::Value> = rb
            .iter()
            .map(|r| serde_json::json!([r.probs, r.classes]))
            .collect();
        expected.insert(id.to_string(), recs.into());
    }
    println!("{n} probabilities above the floor: u8log within {worst:.5} of f16");
    assert!(n > 100, "{n}");

    let show = ok(dr(&["show", out.to_str().unwrap(), "--id", "0"]));
    assert!(show.contains("top-5"), "{show}");
    let png = root.join("sheet.png");
    preview_from(&out, &png);
    let to = root.join("ml-dr");
    ok(export_ml_dr(&out, &to));
    let Some(py) = common::python_with_numpy() else {
        println!(
            "skipped: no Python with numpy (run scripts/setup-python.sh) for python/dr_reader"
        );
        return;
    };
    let table: Vec<u32> = u8log::table().iter().map(|v| v.to_bits()).collect();
    let want = root.join("expected.json");
    std::fs::write(
        &want,
        serde_json::json!({"table_bits": table, "records": expected}).to_string(),
    )
    .unwrap();
    let check = repo_root().join("tests/python/check_u8log.py");
    let said = common::run_python(
        &py,
        &[
            check.as_os_str(),
            out.as_os_str(),
            to.as_os_str(),
            want.as_os_str(),
        ],
    );
    // 21 usable images x 3 samples.
    assert!(said.contains("ok: 63 u8log records of 21 images"), "{said}");
}

#[test]
fn sampled_draws_with_packed_ids_are_the_whole_byte_draws() {
    let root = dataset("u8log-sampled", false);
    ok(reinforce(&root, "bytes", &["--label-mode", "sampled"]));
    ok(reinforce(
        &root,
        "packed",
        &["--label-mode", "sampled", "--class-ids", "packed"],
    ));
    let out = root.join("packed");
    let m = manifest(&out);
    let descr = m["record"]["dtype"].as_array().unwrap();
    assert_eq!(
        descr.last().unwrap(),
        &serde_json::json!(["draws_packed", "|u1", [4]])
    );
    let v = ok(dr(&["verify", out.to_str().unwrap()]));
    assert!(v.contains(": 0 problems"), "{v}");
    let (a, b) = (
        Reinforced::open(&root.join("bytes")).unwrap(),
        Reinforced::open(&out).unwrap(),
    );
    for id in 0..a.rows.len() as u32 {
        assert_eq!(a.records(id).unwrap(), b.records(id).unwrap(), "image {id}");
    }
    let show = ok(dr(&["show", out.to_str().unwrap(), "--id", "0"]));
    assert!(show.contains("sampled 5 draws"), "{show}");
    let to = root.join("ml-dr");
    ok(export_ml_dr(&out, &to));
    // Sampled records hold no probabilities to quantise.
    let o = reinforce(
        &root,
        "refused",
        &["--label-mode", "sampled", "--prob-format", "u8log"],
    );
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("sampled records store no probabilities") && err.contains("Fix:"),
        "{err}"
    );
    assert!(!root.join("refused").exists());
    if let Some(py) = common::python_with_numpy() {
        let bytes = root.join("bytes");
        let said = common::run_reader_code(
            &py,
            "import numpy as np\n\
             a, b = dr_reader.open(sys.argv[2]), dr_reader.open(sys.argv[3])\n\
             n = 0\n\
             for i in a.usable():\n\
             \x20   for s in range(a.num_samples):\n\
             \x20       assert np.array_equal(a.probs(i, s, dense=True), b.probs(i, s, dense=True))\n\
             \x20       assert a.probs(i, s) == b.probs(i, s)\n\
             \x20       assert b.class_ids(i, s).tolist() == a.record(i, s)['draws'].tolist()\n\
             \x20       n += 1\n\
             print('ok', n)",
            &[bytes.as_os_str(), out.as_os_str()],
        );
        assert!(said.contains("ok 60"), "{said}");
    }
}

#[test]
fn merge_and_resume_refuse_other_label_encodings() {
    let root = dataset("u8log-merge", false);
    let mut args = vec!["merge".to_string()];
    for i in 0..2 {
        let part = format!("t{i}");
        ok(reinforce(
            &root,
            &part,
            &[COMPACT, &["--shard", &format!("{i}/2")]].concat(),
        ));
        args.push(root.join(part).display().to_string());
    }
    ok(reinforce(&root, "t1-f16", &["--shard", "1/2"]));
    let merged = root.join("merged");
    args.extend(["--out".into(), merged.display().to_string()]);
    ok(dr(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    ok(reinforce(&root, "whole", COMPACT));
    assert_same(&root.join("whole"), &merged);
    // Task 1 in f16 beside task 0 in u8log + packed: refused, named.
    let o = dr(&[
        "merge",
        root.join("t0").to_str().unwrap(),
        root.join("t1-f16").to_str().unwrap(),
        "--out",
        root.join("mixed").to_str().unwrap(),
    ]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("prob_format: \"u8log\" vs absent")
            && err.contains("class_ids: \"packed\" vs absent"),
        "{err}"
    );
    // A rerun into the u8log output without the options: other settings.
    let o = reinforce(&root, "whole", &[]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("prob_format"), "{err}");
    // An unknown encoding in the manifest is refused by name.
    let path = root.join("whole/manifest.json");
    let m = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, m.replace("\"u8log\"", "\"u4log\"")).unwrap();
    let o = dr(&["verify", root.join("whole").to_str().unwrap()]);
    let err = text(&o.stderr);
    assert!(
        err.contains("prob_format \"u4log\" is not one this dr knows"),
        "{err}"
    );
}

#[test]
fn damaged_packed_ids_and_codes_are_reported_not_panicked_on() {
    let root = dataset("u8log-damaged", false);
    ok(reinforce(&root, "out", COMPACT));
    let out = root.join("out");
    let m = manifest(&out);
    let size = m["record"]["size"].as_u64().unwrap() as usize;
    let shard = out.join(m["shards"][0]["file"].as_str().unwrap());
    let first = m["shards"][0]["positions"][0].as_u64().unwrap() as usize;
    let order: Vec<u32> = {
        let d = Reinforced::open(&out).unwrap();
        d.order.clone()
    };
    let image = order[first];
    let mut b = std::fs::read(&shard).unwrap();
    // Record 0: its first id set to 63 (6 bits hold it; 37 classes do not).
    let ids = size - 4;
    b[ids] |= 0b11_1111;
    // Record 1: a bit after the 30 bits of ids.
    b[2 * size - 1] |= 0x80;
    // Record 2: its codes reversed (probabilities no longer sorted).
    b[2 * size + ids - 5..2 * size + ids].reverse();
    std::fs::write(&shard, &b).unwrap();
    let o = dr(&["verify", out.to_str().unwrap()]);
    assert!(!o.status.success());
    let said = text(&o.stdout);
    assert!(
        said.contains(&format!("image {image} sample 0: class ids [63,")),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "image {image} sample 1: bits after the 5 packed class ids are set"
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!("image {image} sample 2: probabilities"))
            && said.contains("are not sorted"),
        "{said}"
    );
    // The readers name the damage and the fix; none panics.
    let want = format!("image {image} sample 0 holds class 63 of 37");
    let id = image.to_string();
    for (what, o) in [
        ("show", dr(&["show", out.to_str().unwrap(), "--id", &id])),
        ("export", export_ml_dr(&out, &root.join("ml-dr"))),
    ] {
        let err = text(&o.stderr);
        assert!(!o.status.success(), "{what}");
        assert!(
            err.contains(&want) && err.contains("Fix: run `dr verify") && !err.contains("panicked"),
            "{what}: {err}"
        );
    }
    if let Some(py) = common::python_with_numpy() {
        let said = common::run_reader_code(
            &py,
            "ds = dr_reader.open(sys.argv[2]); i = int(sys.argv[3])\n\
             ds.probs(i, 1)\n\
             try:\n    ds.probs(i, 0, dense=True)\nexcept ValueError as e:\n    print(e)",
            &[out.as_os_str(), std::ffi::OsStr::new(&id)],
        );
        assert!(
            said.contains("holds class 63 of 37") && said.contains("Fix: run `dr verify"),
            "{said}"
        );
    }
}
