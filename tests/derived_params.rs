//! `dr reinforce --params derived` end to end on the CPU: records without
//! parameters (62 B less for ml-dr's randaug_mixing transforms), which
//! verify, the Rust reader, show, preview --from, export --format ml-dr,
//! merge and import handle as the same job with stored parameters;
//! python/dr_reader's port of the sampler regenerates dr's draws bit for
//! bit; another sampler version or params mode is refused by name.

mod common;

use std::ffi::OsStr;

use common::reinforce::{assert_same, dataset, export_ml_dr, ok, preview_from, reinforce};
use common::{dr, repo_root, text};
use dr::augment::params::{Draw, MixingGroups, SampleParams};
use dr::config::ReinforceConfig;
use dr::store::reader::Reinforced;
use serde_json::{Value, json};

const DERIVED: &[&str] = &["--params", "derived"];

fn manifest(out: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap()
}

/// `dr show OUT --id ID --json` with the dataset's path taken out.
fn show(out: &std::path::Path, id: &str) -> String {
    let s = ok(dr(&["show", out.to_str().unwrap(), "--id", id, "--json"]));
    s.replace(out.to_str().unwrap(), "OUT")
}

#[test]
fn derived_params_read_as_the_stored_ones() {
    let root = dataset("derived", true);
    ok(reinforce(&root, "stored", &[]));
    ok(reinforce(&root, "derived", DERIVED));
    let (stored, derived) = (root.join("stored"), root.join("derived"));
    let (ms, md) = (manifest(&stored), manifest(&derived));
    // Only a derived manifest has the field (older readers see the same
    // settings for stored datasets, and read them as stored).
    assert!(ms["settings"].get("params").is_none());
    assert_eq!(
        md["settings"]["params"],
        json!({"mode": "derived", "sampler_version": 1})
    );
    // Pair, pair sample, 2 x (rrc 8 B, 2 ops, erase 8 B), MixUp's and
    // CutMix's lam and box: 64 B of parameters become the 2 B flags word.
    let size = |m: &Value| m["record"]["size"].as_u64().unwrap();
    assert_eq!(size(&md), size(&ms) - 62);
    assert_eq!(md["record"]["dtype"][0], json!(["flags", "<u2"]));
    let tsv = std::fs::read_to_string(derived.join("images.tsv")).unwrap();
    assert!(tsv.starts_with("index\tpath\tlabel\tbytes\tsha256\twidth\theight\n"));
    let v = ok(dr(&["verify", derived.to_str().unwrap()]));
    assert!(v.contains(": 0 problems"), "{v}");

    // The Rust reader: the same parameters and labels, record by record.
    let (a, b) = (
        Reinforced::open(&stored).unwrap(),
        Reinforced::open(&derived).unwrap(),
    );
    let mut usable = 0;
    for id in 0..a.rows.len() as u32 {
        let (ra, rb) = (a.records(id).unwrap(), b.records(id).unwrap());
        assert_eq!(format!("{ra:?}"), format!("{rb:?}"), "image {id}");
        usable += ra[0].params.is_some() as u32;
        assert_eq!(
            show(&stored, &id.to_string()),
            show(&derived, &id.to_string())
        );
    }
    assert_eq!(usable, 21);
    preview_from(&derived, &root.join("sheet.png"));
    // ml-dr's files hold the regenerated parameters: byte for byte the
    // stored job's.
    let (xs, xd) = (root.join("ml-dr-stored"), root.join("ml-dr-derived"));
    ok(export_ml_dr(&stored, &xs));
    ok(export_ml_dr(&derived, &xd));
    assert_same(&xs, &xd);
    // Import takes them back as a stored dataset with the same records.
    let imported = root.join("imported");
    ok(dr(&[
        "import",
        xd.to_str().unwrap(),
        "--format",
        "ml-dr",
        "--data",
        root.join("data").to_str().unwrap(),
        "--out",
        imported.to_str().unwrap(),
    ]));
    let c = Reinforced::open(&imported).unwrap();
    // Stored, as every manifest without `params` reads.
    assert!(a.derived.is_none() && c.derived.is_none() && b.derived.is_some());
    let v = ok(dr(&["verify", imported.to_str().unwrap()]));
    assert!(v.contains(": 0 problems"), "{v}");
    for id in 0..a.rows.len() as u32 {
        let (ra, rc) = (a.records(id).unwrap(), c.records(id).unwrap());
        for (x, y) in ra.iter().zip(&rc) {
            let crop = |r: &dr::store::layout::Record| r.params.as_ref().map(|p| p.crop);
            assert_eq!(crop(x), crop(y), "image {id}");
        }
    }

    let Some(py) = common::python_with_numpy() else {
        println!(
            "skipped: no Python with numpy (run scripts/setup-python.sh) for python/dr_reader"
        );
        return;
    };
    let check = repo_root().join("tests/python/check_derived.py");
    let said = common::run_python(
        &py,
        &[
            check.as_os_str(),
            OsStr::new("dataset"),
            stored.as_os_str(),
            derived.as_os_str(),
        ],
    );
    // 21 usable images x 3 samples.
    assert!(
        said.contains("ok: 63 derived records of 21 images equal the stored ones"),
        "{said}"
    );
}

#[test]
fn merged_derived_tasks_are_one_derived_run() {
    let root = dataset("derived-merge", true);
    let mut args = vec!["merge".to_string()];
    for i in 0..2 {
        let part = format!("t{i}");
        ok(reinforce(
            &root,
            &part,
            &[DERIVED, &["--shard", &format!("{i}/2")]].concat(),
        ));
        args.push(root.join(part).display().to_string());
    }
    let merged = root.join("merged");
    args.extend(["--out".into(), merged.display().to_string()]);
    ok(dr(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    ok(reinforce(&root, "whole", DERIVED));
    assert_same(&root.join("whole"), &merged);
    let v = ok(dr(&["verify", merged.to_str().unwrap()]));
    assert!(v.contains(": 0 problems"), "{v}");
    // A rerun into it with stored parameters: other settings, refused.
    let o = reinforce(&root, "whole", &[]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("params"), "{err}");
}

#[test]
fn another_sampler_version_or_params_mode_is_refused() {
    let root = dataset("derived-version", false);
    ok(reinforce(&root, "out", DERIVED));
    let out = root.join("out");
    let path = out.join("manifest.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let py = common::python_with_numpy();
    for (from, to, want, py_want) in [
        (
            "\"sampler_version\": 1",
            "\"sampler_version\": 2",
            "derived from the seed by params sampler version 2, but this dr has params sampler version 1",
            "params sampler version 2, but this reader has version 1",
        ),
        (
            "\"mode\": \"derived\"",
            "\"mode\": \"hashed\"",
            "params mode \"hashed\" is not one this dr knows (stored, derived)",
            "params mode 'hashed' is not one this reader knows (stored, derived)",
        ),
    ] {
        assert!(original.contains(from), "{original}");
        std::fs::write(&path, original.replace(from, to)).unwrap();
        for cmd in [
            vec!["verify", out.to_str().unwrap()],
            vec!["show", out.to_str().unwrap(), "--id", "0"],
        ] {
            let o = dr(&cmd);
            let err = text(&o.stderr);
            assert!(!o.status.success(), "{cmd:?}");
            assert!(
                err.contains(path.to_str().unwrap()) && err.contains(want) && err.contains("Fix:"),
                "{cmd:?}: {err}"
            );
        }
        assert!(!export_ml_dr(&out, &root.join("x")).status.success());
        if let Some(py) = &py {
            let said = common::run_reader_code(
                py,
                "try:\n    dr_reader.open(sys.argv[2])\nexcept ValueError as e:\n    print(e)",
                &[out.as_os_str()],
            );
            assert!(
                said.contains("manifest.json") && said.contains(py_want) && said.contains("Fix:"),
                "{said}"
            );
        }
    }
    std::fs::write(&path, original).unwrap();
    let v = ok(dr(&["verify", out.to_str().unwrap()]));
    assert!(v.contains(": 0 problems"), "{v}");
    // A usable image without its decoded size: named by verify and the reader.
    let tsv = out.join("images.tsv");
    let rows = std::fs::read_to_string(&tsv).unwrap();
    let mut lines: Vec<String> = rows.lines().map(String::from).collect();
    let mut cols: Vec<&str> = lines[1].split('\t').collect();
    (cols[5], cols[6]) = ("-", "-");
    lines[1] = cols.join("\t");
    std::fs::write(&tsv, lines.join("\n") + "\n").unwrap();
    let o = dr(&["verify", out.to_str().unwrap()]);
    let said = text(&o.stdout);
    assert!(!o.status.success());
    assert!(
        said.contains(
            "image 0: images.tsv lacks a decoded size, but the image is not listed as bad"
        ),
        "{said}"
    );
    let err = text(&dr(&["show", out.to_str().unwrap(), "--id", "0"]).stderr);
    assert!(
        err.contains("image 0 has no decoded size in images.tsv") && err.contains("Fix:"),
        "{err}"
    );
}

/// A draw as check_derived.py's `normal` writes the port's.
fn normal(p: &SampleParams) -> Value {
    let side = |c: &dr::augment::params::CropRecord, s: &dr::augment::params::SideParams| {
        let ra = s.rand_augment.clone().flatten().map(|ops| {
            ops.iter()
                .map(|&(op, m)| json!([op, m.is_sign_negative()]))
                .collect::<Vec<_>>()
        });
        vec![
            json!(c.random_crop.map(|(i, j)| [i, j])),
            json!(c.rrc),
            json!(s.flip),
            json!(ra),
            json!(s.erase.flatten()),
        ]
    };
    let mut v = side(&p.crop, &p.side);
    v.push(json!(p.pair.as_ref().map(|q| {
        let mut v = vec![json!(q.id2), json!(q.sample2.unwrap())];
        v.extend(side(&q.crop, &q.side));
        v
    })));
    v.push(json!(p.mixup.flatten()));
    v.push(json!(p.cutmix.flatten().map(|(lam, b)| json!([lam, b]))));
    Value::Array(v)
}

#[test]
fn python_sampler_draws_what_dr_draws() {
    let Some(py) = common::python_with_numpy() else {
        println!(
            "skipped: no Python with numpy (run scripts/setup-python.sh) for python/dr_reader"
        );
        return;
    };
    let configs = [
        (
            "randaug_mixing",
            include_str!("../configs/imagenet-randaug_mixing.yaml").to_string(),
        ),
        (
            "beta below 1, resize, random crop",
            "reinforce:
  num_samples: 7
  mixing_group: 5
  image_augmentation:
    uint8: {}
    resize: {size: 40, max_size: 60}
    random_crop: {size: 36, padding: 2, pad_if_needed: true}
    random_resized_crop: {size: 24, scale: [0.3, 0.9], ratio: [0.5, 2.0]}
    random_horizontal_flip: {p: 0.3}
    rand_augment: {p: 0.6, num_ops: 3}
    to_tensor: {}
    normalize: {mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]}
    random_erase: {p: 0.7}
    mixup: {alpha: 0.2, div_by: 1.0, p: 0.8}
    cutmix: {alpha: 0.4, p: 0.7}
"
            .to_string(),
        ),
    ];
    // DR_DERIVED_DRAWS=50000 for a long run (1e5 draws).
    let per_config: u32 = std::env::var("DR_DERIVED_DRAWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2500);
    let mut cases = Vec::new();
    let mut total = 0;
    for (k, (name, text)) in configs.iter().enumerate() {
        let cfg = ReinforceConfig::parse(text, name, false).unwrap();
        let n = (per_config / 8).max(300);
        // Sides from 1 to 900 px, every 17th image bad (no size).
        let sizes: Vec<Option<(usize, usize)>> = (0..n)
            .map(|i| {
                (i % 17 != 3).then(|| (1 + (i as usize * 7919) % 900, 1 + (i as usize * 613) % 900))
            })
            .collect();
        let seed = 77 + k as u64 * (1 << 40);
        let groups = MixingGroups::new(seed, n, cfg.mixing_group);
        let size_of = |id: u32| sizes[id as usize].unwrap();
        let d = Draw {
            aug: &cfg.augment,
            seed,
            num_samples: cfg.num_samples,
            size_of: &size_of,
        };
        let mut draws = Vec::new();
        for i in 0..per_config {
            let (image, s) = ((i * 131) % n, i % cfg.num_samples);
            if sizes[image as usize].is_none() {
                continue;
            }
            let group: Vec<u32> = groups
                .group_of(image)
                .iter()
                .copied()
                .filter(|&j| sizes[j as usize].is_some())
                .collect();
            draws.push(json!([image, s, normal(&d.sample(image, s, &group))]));
        }
        total += draws.len();
        cases.push(json!({
            "name": name,
            "aug": cfg.to_json()["image_augmentation"],
            "seed": seed,
            "num_samples": cfg.num_samples,
            "group": cfg.mixing_group,
            "sizes": sizes,
            "order": groups.order(),
            "draws": draws,
        }));
    }
    let dir = common::fresh_dir("derived-draws");
    let want = dir.join("draws.json");
    std::fs::write(&want, Value::Array(cases).to_string()).unwrap();
    let check = repo_root().join("tests/python/check_derived.py");
    let said = common::run_python(
        &py,
        &[check.as_os_str(), OsStr::new("draws"), want.as_os_str()],
    );
    assert!(
        said.contains(&format!("ok: {total} draws of 2 configs equal dr's")),
        "{said}"
    );
}
