//! `dr infer` and `dr inspect` as a user runs them.

mod common;

use std::path::PathBuf;

use common::{dr, repo_root, text};

fn fx(name: &str) -> String {
    repo_root()
        .join("tests/fixtures/teacher")
        .join(name)
        .display()
        .to_string()
}

fn read(p: &std::path::Path) -> (Vec<usize>, Vec<f32>) {
    dr::npy::read(p).unwrap()
}

#[test]
fn inspect_reports_ops_passes_and_size() {
    let o = dr(&["inspect", &fx("vit-legacy13.onnx")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let s = text(&o.stdout);
    for want in [
        "opset 13",
        "input  input [batch, 3, 32, 32]",
        "GMACs at batch 1",
        "fuse_gelu",
        "fuse_layer_norm",
        "LayerNorm",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
    let o = dr(&["inspect", &fx("unsupported-cumsum.onnx")]);
    let s = text(&o.stdout);
    assert!(
        s.contains("1 unsupported node") && s.contains("CumSum"),
        "{s}"
    );
    // A model dr cannot run is a failure, not a report with exit 0.
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("cannot run"),
        "{}",
        text(&o.stderr)
    );
}

/// `--image FOLDER`: bad files are skipped with the reason `dr reinforce`
/// gives, sub-folders are searched only with --recursive (and said so),
/// and `--output` names the file of each row.
#[test]
fn infer_on_a_folder_skips_bad_files_and_says_what_it_searched() {
    let d = common::fresh_dir("cli-teacher-folder");
    let photo = repo_root().join("tests/fixtures/augment/images/photo.png");
    std::fs::copy(&photo, d.join("a.png")).unwrap();
    std::fs::write(d.join("b.jpg"), b"").unwrap();
    std::fs::write(d.join("c.png"), b"not an image").unwrap();
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::copy(&photo, d.join("sub/d.png")).unwrap();
    let out = d.join("y.npy");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "infer",
            "--teacher",
            &*Box::leak(fx("resnet-dynamo.onnx").into_boxed_str()),
            "--image",
            d.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        dr(&args)
    };
    let o = run(&[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(e.contains("b.jpg: the file is empty"), "{e}");
    assert!(e.contains("c.png: not a decodable image"), "{e}");
    assert!(
        e.contains("1 sub-folder(s)") && e.contains("--recursive"),
        "{e}"
    );
    let (shape, _) = read(&out);
    assert_eq!(shape[0], 1);
    let names = std::fs::read_to_string(d.join("y.files.txt")).unwrap();
    assert!(
        names.trim_end().ends_with("a.png") && names.lines().count() == 1,
        "{names}"
    );
    let o = run(&["--recursive"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(read(&out).0[0], 2);
    let names = std::fs::read_to_string(d.join("y.files.txt")).unwrap();
    assert!(names.contains("sub/d.png"), "{names}");
    // The empty file reads the same in reinforce and infer.
    let r = dr::pipeline::shard::decode_checked(b"", "b.jpg").unwrap_err();
    assert_eq!(r, "the file is empty");
}

#[test]
fn infer_logits_probs_topk_and_ensemble() {
    let dir = common::fresh_dir("cli-teacher-infer");
    let tmp = |name: &str| dir.join(name);
    let out = tmp("logits.npy");
    let o = dr(&[
        "infer",
        "--model",
        &fx("resnet-dynamo.onnx"),
        "--input",
        &fx("resnet.input.npy"),
        "--output",
        out.to_str().unwrap(),
        "--batch-size",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let (shape, got) = read(&out);
    let (_, want) = read(&PathBuf::from(fx("resnet-dynamo.ort.npy")));
    assert_eq!(shape, [2, 37]);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(
        got.iter()
            .zip(&want)
            .all(|(a, b)| (a - b).abs() <= 1e-4 * scale)
    );

    // Ensemble of two members: mean of their softmaxes.
    let ens = tmp("ens.npy");
    let o = dr(&[
        "infer",
        "--model",
        &fx("resnet-dynamo.onnx"),
        "--model",
        &fx("mobilenet-dynamo.onnx"),
        "--input",
        &fx("resnet.input.npy"),
        "--output",
        ens.to_str().unwrap(),
        "--temperature",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let (_, p) = read(&ens);
    let mob = tmp("mob.npy");
    assert!(
        dr(&[
            "infer",
            "--model",
            &fx("mobilenet-dynamo.onnx"),
            "--input",
            &fx("resnet.input.npy"),
            "--output",
            mob.to_str().unwrap()
        ])
        .status
        .success()
    );
    let (_, m) = read(&mob);
    let soft = |row: &[f32]| {
        let e: Vec<f64> = row.iter().map(|&v| (v as f64 / 2.0).exp()).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(move |v| v / s).collect::<Vec<f64>>()
    };
    for r in 0..2 {
        let (a, b) = (
            soft(&got[r * 37..(r + 1) * 37]),
            soft(&m[r * 37..(r + 1) * 37]),
        );
        for c in 0..37 {
            assert!((p[r * 37 + c] as f64 - (a[c] + b[c]) / 2.0).abs() < 1e-5);
        }
    }

    let top = tmp("top.npy");
    let o = dr(&[
        "infer",
        "--model",
        &fx("resnet-dynamo.onnx"),
        "--input",
        &fx("resnet.input.npy"),
        "--output",
        top.to_str().unwrap(),
        "--topk",
        "5",
    ]);
    assert!(o.status.success());
    assert_eq!(read(&top).0, [2, 5]);
    let (ishape, ids): (Vec<usize>, Vec<i64>) =
        dr::npy::read(&top.with_extension("idx.npy")).unwrap();
    assert_eq!(ishape, [2, 5]);
    let best = (0..37).max_by(|&a, &b| got[a].total_cmp(&got[b])).unwrap();
    assert_eq!(ids[0], best as i64);
}

#[test]
fn infer_images_and_bad_requests() {
    let dir = common::fresh_dir("cli-teacher-images");
    let tmp = |name: &str| dir.join(name);
    let img = repo_root()
        .join("tests/fixtures/augment/images/photo.png")
        .display()
        .to_string();
    let o = dr(&[
        "infer",
        "--model",
        &fx("resnet-dynamo.onnx"),
        "--image",
        &img,
        "--resize",
        "32",
        "--crop",
        "32",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let s = text(&o.stdout);
    assert!(
        s.contains("photo.png") && s.matches('%').count() == 5,
        "{s}"
    );

    // The GPU executor: the same top-5 lines on a device; without one, an
    // error that says what is missing and what to do.
    let o = dr(&[
        "infer",
        "--model",
        &fx("resnet-dynamo.onnx"),
        "--image",
        &img,
        "--device",
        "cuda",
    ]);
    if o.status.success() {
        assert_eq!(text(&o.stdout).matches('%').count(), 5);
    } else {
        let e = text(&o.stderr);
        assert!(e.contains("--device cuda") && e.contains("Fix:"), "{e}");
    }
    let e = text(
        &dr(&[
            "infer",
            "--model",
            &fx("resnet-dynamo.onnx"),
            "--image",
            &img,
            "--device",
            "tpu",
        ])
        .stderr,
    );
    assert!(e.contains("cpu, cuda or cuda:N"), "{e}");
    // Without --resize/--crop each member gets the eval transform scaled to
    // its own input size (32 px here: resize 37, crop 32).
    let o = dr(&[
        "infer",
        "--model",
        &fx("resnet-dynamo.onnx"),
        "--model",
        &fx("vit-dynamo.onnx"),
        "--image",
        &img,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).matches('%').count(), 5);
    // A tensor input with the wrong channel count is explained.
    let bad = tmp("bad.npy");
    dr::npy::write(&bad, &[1, 1, 8, 8], &[0.0f32; 64]).unwrap();
    let out = tmp("o.npy");
    let e = text(
        &dr(&[
            "infer",
            "--model",
            &fx("resnet-dynamo.onnx"),
            "--input",
            bad.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ])
        .stderr,
    );
    assert!(
        e.contains("[1, 1, 8, 8]") && e.contains("3, 32, 32") && e.contains("channel count"),
        "{e}"
    );
    let e = text(
        &dr(&[
            "infer",
            "--model",
            &fx("unsupported-cumsum.onnx"),
            "--image",
            &img,
        ])
        .stderr,
    );
    assert!(e.contains("CumSum"), "{e}");
}

/// `--input` with members of different input sizes: each member whose size
/// differs gets the batch resized (bilinear, antialiased) to its own; the
/// output is the mean of the members' softmax as computed one by one.
#[test]
fn infer_resizes_tensor_input_per_member() {
    use dr::teacher::ensemble::{Member, mean_softmax};
    use dr::teacher::resize::resize_bilinear_aa;
    use dr::teacher::tensor::Tensor;
    let out = common::fresh_dir("cli-teacher-resize").join("p.npy");
    let o = dr(&[
        "infer",
        "--model",
        &fx("resnet-dynamo.onnx"),
        "--model",
        &fx("autopad-helper.onnx"),
        "--input",
        &fx("resnet.input.npy"),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let (shape, got) = read(&out);
    let (xs, xd) = read(std::path::Path::new(&fx("resnet.input.npy")));
    let x = Tensor::f32(xs, xd);
    let big = Member::load(std::path::Path::new(&fx("resnet-dynamo.onnx"))).unwrap();
    let small = Member::load(std::path::Path::new(&fx("autopad-helper.onnx"))).unwrap();
    assert_eq!(small.input_chw().unwrap(), [3, 10, 10]);
    let want = mean_softmax(
        &[
            big.logits(x.clone()).unwrap(),
            small
                .logits(resize_bilinear_aa(&x, 10, 10).unwrap())
                .unwrap(),
        ],
        1.0,
    )
    .unwrap();
    assert_eq!(shape, want.shape);
    for (a, b) in got.iter().zip(want.as_f32().unwrap()) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}

/// A model exported with a fixed batch (the dynamo exporter's default) runs
/// any number of images: chunks of its batch, the last one padded.
#[test]
fn fixed_batch_models_run_any_batch() {
    let fx = common::repo_root().join("tests/fixtures/teacher");
    let d = common::fresh_dir("fixed-batch");
    let (shape, x): (Vec<usize>, Vec<f32>) =
        dr::npy::read(&fx.join("fixedbatch.input.npy")).unwrap();
    let per: usize = shape[1..].iter().product();
    // Three images: the two of the fixture and the first again.
    let x3: Vec<f32> = [&x[..], &x[..per]].concat();
    let input = d.join("x3.npy");
    dr::npy::write(&input, &[3, shape[1], shape[2], shape[3]], &x3).unwrap();
    let out = d.join("y.npy");
    let o = common::dr(&[
        "infer",
        "--model",
        fx.join("fixedbatch-helper.onnx").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", common::text(&o.stderr));
    let (ys, y): (Vec<usize>, Vec<f32>) = dr::npy::read(&out).unwrap();
    let (_, want): (Vec<usize>, Vec<f32>) =
        dr::npy::read(&fx.join("fixedbatch-helper.ort.npy")).unwrap();
    assert_eq!(ys, [3, 37]);
    let c = 37;
    for (i, row) in [0usize, 1, 0].iter().enumerate() {
        for k in 0..c {
            let (a, b) = (y[i * c + k], want[row * c + k]);
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{i},{k}: {a} vs {b}"
            );
        }
    }
}
