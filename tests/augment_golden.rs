//! dr's CPU augmentation against the real reference: Pillow, torchvision's
//! tensor ops and ml-dr's own transforms, recorded by
//! `tools/make_augment_fixtures.py` into tests/fixtures/augment/.
//! Tolerance: exact (sha256 of the bytes) for every uint8 result and for the
//! final float tensors; the stored float tensors are also compared within
//! 1e-6 so a failure says by how much.

mod common;

use std::path::{Path, PathBuf};

use dr::augment::geometry::{center_crop, crop, pad, resize};
use dr::augment::image::Rgb8;
use dr::augment::pipeline::augment;
use dr::augment::randaug::apply_op;
use dr::augment::record::decompress;
use dr::augment::resample::resize_bilinear;
use dr::config::{PaddingMode, PassOrder, ReinforceConfig, ResizeSize};
use dr::dataset::decode::decode_rgb;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    std::env::var_os("DR_FIXTURES")
        .map(|f| PathBuf::from(f).join("augment"))
        .unwrap_or_else(|| common::repo_root().join("tests/fixtures/augment"))
}

fn sha(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn load(name: &str) -> Rgb8 {
    decode_rgb(&fixtures().join("images").join(name)).unwrap()
}

struct Cases {
    order: PassOrder,
    cases: Vec<Value>,
}

fn cases(file: &str) -> Cases {
    let text = std::fs::read_to_string(fixtures().join(file)).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let order = match v["pass_order"].as_str().unwrap() {
        "pillow12" => PassOrder::Pillow12,
        _ => PassOrder::Pillow13,
    };
    println!("{file}: {}", v["versions"]);
    Cases {
        order,
        cases: v["cases"].as_array().unwrap().clone(),
    }
}

/// Runs `check` on every case whose name starts with `prefix`; fails listing
/// every mismatch.
fn run(file: &str, prefix: &str, check: impl Fn(&Value, PassOrder) -> Result<(), String>) {
    let c = cases(file);
    let mut failed = Vec::new();
    let mut n = 0;
    for case in c
        .cases
        .iter()
        .filter(|c| c["name"].as_str().unwrap().starts_with(prefix))
    {
        n += 1;
        if let Err(e) = check(case, c.order) {
            failed.push(format!("{}: {e}", case["name"].as_str().unwrap()));
        }
    }
    println!("{file} {prefix}: {} of {n} cases exact", n - failed.len());
    assert!(n > 0, "no {prefix} cases in {file}");
    assert!(
        failed.is_empty(),
        "{} of {n} differ:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

fn expect(case: &Value, got: &[u8]) -> Result<(), String> {
    let want = case["sha256"].as_str().unwrap();
    let g = sha(got);
    if g == want {
        Ok(())
    } else {
        Err(format!("sha256 {g}, reference {want}"))
    }
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn check_rrc(case: &Value, order: PassOrder) -> Result<(), String> {
    let img = load(case["input"].as_str().unwrap());
    let r = ints(&case["rrc"]);
    let c = crop(&img, r[0], r[1], r[2] as usize, r[3] as usize);
    expect(case, &resize_bilinear(&c, 224, 224, order).data)
}

fn check_resize(case: &Value, order: PassOrder) -> Result<(), String> {
    let img = load(case["input"].as_str().unwrap());
    let size = ResizeSize::Shorter(case["resize"].as_u64().unwrap() as u32);
    let out = resize(&img, size, None, order);
    let hw = ints(&case["out_hw"]);
    if [out.height as i64, out.width as i64] != hw[..] {
        return Err(format!(
            "size {}x{}, reference {hw:?}",
            out.height, out.width
        ));
    }
    expect(case, &out.data)
}

#[test]
fn decode_matches_pillow_convert_rgb() {
    run("cases-pillow13.json", "decode/", |case, _| {
        let img = load(case["input"].as_str().unwrap());
        expect(case, &img.data)
    });
}

#[test]
fn rrc_matches_pillow13() {
    run("cases-pillow13.json", "rrc/", check_rrc);
}

#[test]
fn rrc_matches_pillow12() {
    run("cases-pillow12.json", "rrc/", check_rrc);
}

#[test]
fn resize_matches_torchvision_pil() {
    run("cases-pillow13.json", "resize/", check_resize);
    run("cases-pillow12.json", "resize/", check_resize);
}

#[test]
fn center_crop_and_pad_match_torchvision_pil() {
    run("cases-pillow13.json", "geometry/", |case, _| {
        let img = load(case["input"].as_str().unwrap());
        let out = if let Some(size) = case.get("center_crop") {
            let s = ints(size);
            center_crop(&img, s[0] as usize, s[1] as usize)
        } else {
            let p = ints(&case["pad"]);
            let mode = match case["padding_mode"].as_str().unwrap() {
                "constant" => PaddingMode::Constant,
                "edge" => PaddingMode::Edge,
                "reflect" => PaddingMode::Reflect,
                _ => PaddingMode::Symmetric,
            };
            let fill = case["fill"].as_u64().unwrap() as u8;
            pad(
                &img,
                [p[0], p[1], p[2], p[3]].map(|v| v as usize),
                fill,
                mode,
            )
        };
        let hw = ints(&case["out_hw"]);
        if [out.height as i64, out.width as i64] != hw[..] {
            return Err(format!(
                "size {}x{}, reference {hw:?}",
                out.height, out.width
            ));
        }
        expect(case, &out.data)
    });
}

#[test]
fn randaug_ops_match_torchvision() {
    run("cases-pillow13.json", "ra/", |case, _| {
        let mut t = load(case["input"].as_str().unwrap()).to_chw();
        let ops: Vec<(usize, f64)> = match case.get("ops") {
            Some(list) => list
                .as_array()
                .unwrap()
                .iter()
                .map(|o| (o[0].as_u64().unwrap() as usize, o[1].as_f64().unwrap()))
                .collect(),
            None => vec![(
                case["op"].as_u64().unwrap() as usize,
                case["magnitude"].as_f64().unwrap(),
            )],
        };
        for (op, m) in ops {
            apply_op(&mut t, op, m);
        }
        expect(case, &t.data)
    });
}

fn check_pipeline(case: &Value, order: PassOrder) -> Result<(), String> {
    let yaml = format!(
        "reinforce:\n  num_samples: 3\n  resize_pass_order: {}\n  image_augmentation: {}\n",
        order.name(),
        case["config"]
    );
    let cfg = ReinforceConfig::parse(&yaml, "fixture", false).map_err(|e| e.to_string())?;
    let p = decompress(&cfg.augment, &case["params"]).map_err(|e| e.to_string())?;
    let by_id: Vec<Rgb8> = case["images_by_id"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| load(n.as_str().unwrap()))
        .collect();
    let img = load(case["image"].as_str().unwrap());
    let pair = p.pair.as_ref().map(|q| &by_id[q.id2 as usize]);
    let out = augment(&cfg.augment, &img, &p, pair);
    let shape = ints(&case["shape"]);
    let got_shape = [
        out.tensor.channels as i64,
        out.tensor.height as i64,
        out.tensor.width as i64,
    ];
    if got_shape[..] != shape[..] {
        return Err(format!("shape {got_shape:?}, reference {shape:?}"));
    }
    if let Some(file) = case.get("data").and_then(Value::as_str) {
        let (_, want): (_, Vec<f32>) =
            dr::npy::read(&fixtures().join(file)).map_err(|e| e.to_string())?;
        let max = want
            .iter()
            .zip(&out.tensor.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        if max > 1e-6 {
            return Err(format!("max abs error {max} > 1e-6 against {file}"));
        }
    }
    expect(case, bytemuck::cast_slice(&out.tensor.data))
}

#[test]
fn ml_dr_generation_replays_exactly() {
    run("cases-pillow13.json", "pipeline/", check_pipeline);
}

/// The same cases through the GPU augmentation (augment/gpu_run.rs), one
/// batch per case, float32 NCHW: the reference's bytes exactly.
#[test]
fn ml_dr_generation_replays_exactly_on_the_gpu() {
    use dr::augment::gpu_batch::{plan_batch, unsupported};
    use dr::augment::gpu_finish::FinishOut;
    use dr::augment::gpu_run::GpuAugment;
    let Some(gpu) = dr::cuda::testing::gpu_or_skip() else {
        return;
    };
    let aug = std::cell::RefCell::new(GpuAugment::new(&gpu));
    let ran = std::cell::Cell::new(0);
    run("cases-pillow13.json", "pipeline/", |case, order| {
        let yaml = format!(
            "reinforce:\n  num_samples: 3\n  resize_pass_order: {}\n  image_augmentation: {}\n",
            order.name(),
            case["config"]
        );
        let cfg = ReinforceConfig::parse(&yaml, "fixture", false).map_err(|e| e.to_string())?;
        if unsupported(&cfg.augment).is_some() {
            return Ok(()); // counted as passing; the count of GPU runs is checked below
        }
        let p = decompress(&cfg.augment, &case["params"]).map_err(|e| e.to_string())?;
        let mut imgs = vec![load(case["image"].as_str().unwrap())];
        for n in case["images_by_id"].as_array().unwrap() {
            imgs.push(load(n.as_str().unwrap()));
        }
        let mut aug = aug.borrow_mut();
        let staged = aug
            .upload(&imgs.iter().collect::<Vec<_>>())
            .map_err(|e| e.to_string())?;
        let plan = plan_batch(
            &cfg.augment,
            &staged.slots,
            &|id| 1 + id as usize,
            &[(0, &p)],
        )?;
        let (w, h) = plan.out_wh;
        let mut out = gpu.alloc::<f32>(3 * w * h).map_err(|e| e.to_string())?;
        aug.run(&staged, &plan, FinishOut::F32Nchw(&mut out))
            .map_err(|e| e.to_string())?;
        let mut got = vec![0f32; 3 * w * h];
        aug.stream()
            .download(&out, &mut got)
            .map_err(|e| e.to_string())?;
        aug.stream().synchronize().map_err(|e| e.to_string())?;
        ran.set(ran.get() + 1);
        expect(case, bytemuck::cast_slice(&got))
    });
    println!("{} pipeline cases ran on the GPU", ran.get());
    assert!(ran.get() >= 48, "only {} cases ran on the GPU", ran.get());
}

#[test]
fn fixtures_are_present() {
    assert!(
        Path::new(&fixtures()).join("images/photo.png").exists(),
        "{}",
        fixtures().display()
    );
}
