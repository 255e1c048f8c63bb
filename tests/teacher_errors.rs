//! Bad teacher input: every failure is a clear error naming the file (and
//! the node, op and opset where there is one), never a panic or a wrong answer.

mod common;

use std::path::{Path, PathBuf};

use dr::teacher::tensor::Tensor;
use dr::teacher::{cpu, onnx, shape};

fn fixture(name: &str) -> PathBuf {
    std::env::var_os("DR_FIXTURES")
        .map(|f| PathBuf::from(f).join("teacher"))
        .unwrap_or_else(|| common::repo_root().join("tests/fixtures/teacher"))
        .join(name)
}

fn load_err(path: &Path) -> String {
    match onnx::load(path) {
        Ok(m) => match shape::with_batch(&m, 1) {
            Ok(_) => panic!("{} loaded", path.display()),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    }
}

#[test]
fn external_data_loads_and_matches_torch() {
    let m = onnx::load(&fixture("resnet-external.onnx")).unwrap();
    let (s, x): (Vec<usize>, Vec<f32>) =
        dr::npy::read(&fixture("resnet-external.input.npy")).unwrap();
    let (_, want): (Vec<usize>, Vec<f32>) =
        dr::npy::read(&fixture("resnet-external.torch.npy")).unwrap();
    let g = shape::with_batch(&m, 1).unwrap();
    let y = cpu::run(&g, vec![Tensor::f32(s, x)]).unwrap().remove(0);
    let err = y
        .as_f32()
        .unwrap()
        .iter()
        .zip(&want)
        .fold(0f32, |a, (p, q)| a.max((p - q).abs()));
    assert!(err < 1e-4, "{err}");
}

#[test]
fn missing_or_truncated_external_data() {
    let d = common::fresh_dir("teacher-ext");
    std::fs::copy(fixture("resnet-external.onnx"), d.join("m.onnx")).unwrap();
    // The data file is named inside the model: without it, say which file.
    let e = load_err(&d.join("m.onnx"));
    assert!(
        e.contains("m.onnx")
            && e.contains("resnet-external.onnx.data")
            && e.contains("cannot be opened"),
        "{e}"
    );
    let data = std::fs::read(fixture("resnet-external.onnx.data")).unwrap();
    std::fs::write(d.join("resnet-external.onnx.data"), &data[..data.len() / 2]).unwrap();
    let e = load_err(&d.join("m.onnx"));
    assert!(e.contains("truncated"), "{e}");
}

#[test]
fn malformed_and_truncated_models() {
    let d = common::fresh_dir("teacher-bad");
    std::fs::write(d.join("text.onnx"), "this is not a model").unwrap();
    let e = load_err(&d.join("text.onnx"));
    assert!(
        e.contains("text.onnx") && (e.contains("not an ONNX model") || e.contains("no graph")),
        "{e}"
    );
    let bytes = std::fs::read(fixture("resnet-legacy17.onnx")).unwrap();
    for cut in [10, 100, bytes.len() / 3, bytes.len() - 7] {
        std::fs::write(d.join("cut.onnx"), &bytes[..cut]).unwrap();
        let e = load_err(&d.join("cut.onnx"));
        assert!(e.contains("cut.onnx"), "{e}");
    }
    let e = onnx::load(&d.join("absent.onnx")).unwrap_err().to_string();
    assert!(
        e.contains("absent.onnx") && e.contains("cannot read"),
        "{e}"
    );
}

#[test]
fn dynamic_spatial_shapes_are_refused_with_the_fix() {
    let e = load_err(&fixture("resnet-dynamic-hw.onnx"));
    assert!(
        e.contains("dynamic") && e.contains("height") && e.contains("Fix:"),
        "{e}"
    );
}

#[test]
fn unsupported_ops_name_node_op_and_opset() {
    let e = load_err(&fixture("unsupported-cumsum.onnx"));
    assert!(
        e.contains("unsupported-cumsum.onnx") && e.contains("CumSum") && e.contains("opset 17"),
        "{e}"
    );
    let all = onnx::unsupported_nodes(&fixture("unsupported-cumsum.onnx")).unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
}

/// splitmix64 stream for the property tests.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed;
    move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[test]
fn random_bytes_and_mutated_models_never_panic() {
    let d = common::fresh_dir("teacher-fuzz");
    let path = d.join("f.onnx");
    let mut next = rng(42);
    let model = std::fs::read(fixture("mobilenet-legacy13.onnx")).unwrap();
    for i in 0..400 {
        let bytes: Vec<u8> = if i % 2 == 0 {
            (0..(next() % 4096) as usize)
                .map(|_| next() as u8)
                .collect()
        } else {
            let mut m = model.clone();
            for _ in 0..1 + next() % 8 {
                let at = (next() as usize) % m.len();
                m[at] = next() as u8;
            }
            m
        };
        std::fs::write(&path, &bytes).unwrap();
        // Any outcome but a panic; a model that loads must also prepare or fail cleanly.
        if let Ok(m) = onnx::load(&path)
            && let Ok(g) = shape::with_batch(&m, 2)
            && let Some(s) = g.values[g.inputs[0]].shape.clone()
            && s.iter().product::<usize>() < 1 << 20
        {
            let x = Tensor::f32(s.clone(), vec![0.5; s.iter().product()]);
            let _ = cpu::run(&g, vec![x]);
        }
    }
}
