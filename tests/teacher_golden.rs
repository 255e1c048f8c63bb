//! dr's CPU teacher executor against onnxruntime on models exported by
//! torch.onnx (legacy at opsets 13 and 17, and dynamo), recorded by
//! tools/make_teacher_fixtures.py. Goal: logits max relative error <= 1e-4
//! and identical top-10 class ids.

mod common;

use std::path::PathBuf;

use dr::teacher::tensor::Tensor;
use dr::teacher::{cpu, onnx, passes, shape};
use serde_json::Value;

fn fixtures() -> PathBuf {
    std::env::var_os("DR_FIXTURES")
        .map(|f| PathBuf::from(f).join("teacher"))
        .unwrap_or_else(|| common::repo_root().join("tests/fixtures/teacher"))
}

fn npy(name: &str) -> Tensor {
    let (shape, data): (Vec<usize>, Vec<f32>) = dr::npy::read(&fixtures().join(name)).unwrap();
    Tensor::f32(shape, data)
}

fn topk(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

#[test]
fn every_fixture_model_matches_onnxruntime() {
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap())
            .unwrap();
    println!("fixtures from {}", meta["versions"]);
    let mut failures = Vec::new();
    let cases = meta["cases"].as_array().unwrap();
    for c in cases {
        let name = c["model"].as_str().unwrap();
        let model = onnx::load(&fixtures().join(name)).unwrap();
        let x = npy(c["input"].as_str().unwrap());
        let want = npy(c["output"].as_str().unwrap());
        let g = shape::with_batch(&model, x.shape[0]).unwrap();
        let plain = cpu::run(&g, vec![x.clone()]).unwrap().remove(0);
        let mut g = g;
        let report = passes::optimize(&mut g).unwrap();
        let got = cpu::run(&g, vec![x]).unwrap().remove(0);
        let drift = plain
            .as_f32()
            .unwrap()
            .iter()
            .zip(got.as_f32().unwrap())
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            drift < 1e-4,
            "{name}: the passes changed the output by {drift}: {report:?}"
        );
        assert_eq!(got.shape, want.shape, "{name}");
        let (gv, wv) = (got.as_f32().unwrap(), want.as_f32().unwrap());
        let scale = wv.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = gv
            .iter()
            .zip(wv)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
            / scale;
        let classes = *want.shape.last().unwrap();
        let k = classes.min(10);
        let same_top = gv
            .chunks(classes)
            .zip(wv.chunks(classes))
            .all(|(a, b)| topk(a, k) == topk(b, k));
        println!(
            "{name}: opset {}, {} nodes after passes, max rel error {err:.2e}, top-{k} identical: {same_top}",
            c["opset"],
            g.nodes.len()
        );
        if err > 1e-4 || !same_top {
            failures.push(format!(
                "{name}: rel error {err:.2e}, top-{k} identical {same_top}"
            ));
        }
    }
    assert!(!cases.is_empty());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Shapes for a large batch come from shape rules alone (no tensor of that
/// size is built to find them).
#[test]
fn large_batches_prepare() {
    let model = onnx::load(&fixtures().join("vit-legacy13.onnx")).unwrap();
    let g = shape::with_batch(&model, 50_000).unwrap();
    assert_eq!(
        g.values[g.outputs[0]].shape.as_deref(),
        Some(&[50_000, 37][..])
    );
}

/// The planned executor (one arena, ops writing in place, reshapes as
/// aliases) gives the reference interpreter's output bit for bit, also on
/// a second run over the stale arena, and its arena is smaller than the
/// intermediates it holds.
#[test]
fn planned_execution_matches_the_interpreter_bit_for_bit() {
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap())
            .unwrap();
    for c in meta["cases"].as_array().unwrap() {
        let name = c["model"].as_str().unwrap();
        let model = onnx::load(&fixtures().join(name)).unwrap();
        let x = npy(c["input"].as_str().unwrap());
        let mut g = shape::with_batch(&model, x.shape[0]).unwrap();
        passes::optimize(&mut g).unwrap();
        let want = cpu::interpret(&g, vec![x.clone()]).unwrap().remove(0);
        let intermediates: usize = g
            .nodes
            .iter()
            .flat_map(|n| &n.outputs)
            .filter_map(|&o| g.values[o].shape.as_ref())
            .map(|s| s.iter().product::<usize>())
            .sum();
        let plan = cpu::Plan::new(std::sync::Arc::new(g)).unwrap();
        for run in 0..2 {
            let got = plan.run(vec![x.clone()]).unwrap().remove(0);
            let bits = |t: &Tensor| -> Vec<u32> {
                t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect()
            };
            assert_eq!(got.shape, want.shape, "{name}");
            assert!(bits(&got) == bits(&want), "{name}: run {run} differs");
        }
        println!(
            "{name}: arena {} floats for {intermediates} of intermediates",
            plan.arena_len
        );
        assert!(plan.arena_len < intermediates, "{name}");
    }
}

/// Every attention of the transformer fixtures is recognised, whatever the
/// exporter wrote (manual, the legacy exporter's SDPA decomposition, and
/// dynamo's form that reshapes k to 3-D around its transpose): no Softmax
/// is left, one Attention per Softmax exported. Parity with onnxruntime is
/// checked on the same graphs above.
#[test]
fn attention_is_recognised_in_every_exporter_form() {
    for name in [
        "vit-legacy13.onnx",
        "vit-dynamo.onnx",
        "vit_sdpa-legacy17.onnx",
        "vit_sdpa-dynamo.onnx",
        "swin-legacy17.onnx",
        "swin-dynamo.onnx",
    ] {
        let model = onnx::load(&fixtures().join(name)).unwrap();
        let count = |g: &dr::teacher::graph::Graph, op: &str| {
            g.nodes.iter().filter(|n| n.op.name() == op).count()
        };
        let mut g = shape::with_batch(&model, 2).unwrap();
        let softmax = count(&g, "Softmax");
        passes::optimize(&mut g).unwrap();
        assert!(softmax > 0, "{name}");
        assert_eq!(
            (count(&g, "Attention"), count(&g, "Softmax")),
            (softmax, 0),
            "{name}"
        );
    }
}

/// The resize `dr infer --input` applies for members of another size:
/// onnxruntime's Resize(linear, antialias=1, half_pixel, exclude_outside=1),
/// down and up.
#[test]
fn resize_matches_onnxruntime_antialiased_bilinear() {
    let x = npy("resize.input.npy");
    for tag in ["down", "up"] {
        let want = npy(&format!("resize-{tag}.ort.npy"));
        let got =
            dr::teacher::resize::resize_bilinear_aa(&x, want.shape[2], want.shape[3]).unwrap();
        assert_eq!(got.shape, want.shape);
        let err = got
            .as_f32()
            .unwrap()
            .iter()
            .zip(want.as_f32().unwrap())
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        println!("resize {tag} {:?}: max abs error {err:.2e}", want.shape);
        assert!(err < 1e-5, "{tag}: {err}");
    }
}
