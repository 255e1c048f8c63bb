use super::*;
use crate::teacher::ensemble::Member;
use crate::teacher::graph::Unary;
use std::ops::Range;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/teacher")
        .join(name)
}

/// Rows of `got` and `want` [rows][classes]: the largest |difference|
/// over the largest |logit|, and how many rows agree on the top class.
pub(crate) fn compare(got: &[f32], want: &[f32], classes: usize) -> (f32, usize) {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    let argmax = |r: &[f32]| (0..r.len()).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap();
    let agree = got
        .chunks(classes)
        .zip(want.chunks(classes))
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    (diff / scale, agree)
}

/// The kernel of the plan's stem (the convolution reading its input).
fn stem_variant(plan: &GpuPlan) -> crate::teacher::gpu::conv::Variant {
    let [i] = plan.padded_stems[..] else {
        panic!("stems {:?}, not one", plan.padded_stems)
    };
    let Step::Conv { p, x, .. } = &plan.steps[i] else {
        panic!("step {i} is not a convolution")
    };
    assert_eq!((p.cin as usize, x), (plan.input_channels, &plan.input));
    crate::teacher::gpu::conv::variant(p)
}

/// A real-size RGB stem (ResNet-18's 7x7/2 to 64 channels) on the
/// tensor-core kernel, its MACs counted over the 3 real channels only.
#[test]
fn a_full_width_stem_takes_the_tensor_cores() {
    let onnx = crate::teacher::onnx::synth::resnet([1, 1, 1, 1], 64, 10, 64, 1);
    let dir = std::env::temp_dir().join(format!("dr-stem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("resnet.onnx");
    std::fs::write(&path, onnx).unwrap();
    let m = Member::load(&path).unwrap();
    let g = m.graph(2).unwrap();
    let plan = lower(&g).unwrap();
    assert_eq!(plan.input_channels, 8);
    assert_eq!(plan.macs(), crate::teacher::infer::macs(&g));
    let v = stem_variant(&plan);
    assert!(
        matches!(v.tile, crate::teacher::gpu::conv::Tile::Tc { .. }),
        "the stem's kernel is {}",
        v.name()
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The input is padded only where every reader is an ungrouped
/// convolution taking it as its data input, and only up to 8's multiple.
#[test]
fn the_input_is_padded_only_for_plain_convolutions() {
    let m = Member::load(&fixture("resnet-legacy17.onnx")).unwrap();
    let mut g = (*m.graph(1).unwrap()).clone();
    let input = g.inputs[0];
    assert_eq!(stored_input_channels(&g, input, 3), 8);
    assert_eq!(stored_input_channels(&g, input, 8), 8);
    assert_eq!(stored_input_channels(&g, input, 13), 16);
    let mut v = g.values[input].clone();
    v.name = "relu_of_input".into();
    g.values.push(v);
    g.nodes.push(crate::teacher::graph::Node {
        name: "relu".into(),
        op: Op::Unary(Unary::Relu),
        inputs: vec![Some(input)],
        outputs: vec![g.values.len() - 1],
    });
    assert_eq!(stored_input_channels(&g, input, 3), 3);
}

/// The small fixtures of the CNN families ([teacher-cpu]'s, random
/// weights): ResNet (stem, max pool, residual blocks, FC), MobileNetV3
/// (depthwise, HardSwish, squeeze-excite with hard sigmoid), EfficientNet
/// (SiLU, sigmoid squeeze-excite), DenseNet (unfolded BatchNorm, concat,
/// average pool), the dynamo exports of ResNet and MobileNet (their
/// global pooling is a ReduceMean over H and W), and the demo teacher,
/// lowered and run through the twins in bf16, against the f32 CPU executor.
#[test]
fn lowered_plans_track_the_cpu_executor() {
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo-teacher.onnx");
    let family = |f: &str| {
        (
            fixture(&format!("{f}-legacy17.onnx")),
            Some(fixture(&format!("{f}.input.npy"))),
        )
    };
    let dynamo = |f: &str| {
        (
            fixture(&format!("{f}-dynamo.onnx")),
            Some(fixture(&format!("{f}.input.npy"))),
        )
    };
    for (model, input) in [
        family("resnet"),
        dynamo("resnet"),
        family("mobilenet"),
        dynamo("mobilenet"),
        family("efficientnet"),
        family("densenet"),
        family("convnext"),
        dynamo("convnext"),
        family("vit"),
        dynamo("vit"),
        (fixture("vit-legacy13.onnx"), Some(fixture("vit.input.npy"))),
        family("vit_sdpa"),
        dynamo("vit_sdpa"),
        family("swin"),
        dynamo("swin"),
        (
            fixture("swin-legacy13.onnx"),
            Some(fixture("swin.input.npy")),
        ),
        (demo, None),
    ] {
        let m = Member::load(&model).unwrap();
        let (shape, x): (Vec<usize>, Vec<f32>) = match input {
            Some(p) => crate::npy::read(&p).unwrap(),
            None => {
                let mut r = crate::rng::Philox::new(5, 0, 0, 0);
                let s = vec![6, 3, 32, 32];
                let x = (0..s.iter().product())
                    .map(|_| r.uniform_f32() * 4.0 - 2.0)
                    .collect();
                (s, x)
            }
        };
        let g = m.graph(shape[0]).unwrap();
        let plan = lower(&g).unwrap();
        assert_eq!(
            plan.macs(),
            crate::teacher::infer::macs(&g),
            "{}",
            model.display()
        );
        // Each RGB stem reads the input padded to 8 channels, through a
        // 16-byte gather (zero weights where the zeros are).
        assert_eq!(plan.input_channels, 8, "{}", model.display());
        let stem = stem_variant(&plan);
        assert!(
            !stem.name().ends_with("_v1"),
            "{}: the stem's kernel is {}",
            model.display(),
            stem.name()
        );
        let want = m.logits(Tensor::f32(shape.clone(), x.clone())).unwrap();
        let want = want.view().unwrap().data.to_vec();
        if model.to_string_lossy().contains("convnext") {
            // Every LayerNorm (stem, blocks, downsampling, head) and
            // GELU (folded into the first linear layer of each MLP)
            // on the GPU; the Transposes are aliases.
            let count = |f: &dyn Fn(&Step) -> bool| plan.steps.iter().filter(|s| f(s)).count();
            assert_eq!(count(&|s| matches!(s, Step::LayerNorm { .. })), 6);
            assert_eq!(
                count(&|s| matches!(s, Step::Conv { p, .. } if p.act == 5)),
                3
            );
            assert_eq!(count(&|s| matches!(s, Step::Unary { .. })), 0);
            // Layer scale folded into the second linear layer's weights,
            // the residual Add into its epilogue: no eltwise step left.
            assert_eq!(count(&|s| matches!(s, Step::Binary { .. })), 0);
            assert_eq!(
                count(&|s| matches!(s, Step::Conv { p, .. } if p.has_residual == 1)),
                3
            );
        }
        let nchw: [usize; 4] = shape[..].try_into().unwrap();
        let got = plan.run_cpu(&to_nhwc_bf16(&x, nchw, plan.input_channels));
        let (err, agree) = compare(&got, &want, plan.classes);
        println!(
            "{}: {} steps, arena {} KB, {:.1} MMAC; bf16 twin vs f32: max |diff| / max |logit| = {err:.2e}, top-1 {agree}/{}",
            model.display(),
            plan.steps.len(),
            plan.arena_len * 2 / 1024,
            plan.macs() as f64 / 1e6,
            shape[0]
        );
        assert!(err < 0.03, "{}: relative error {err}", model.display());
        assert_eq!(agree, shape[0], "{}: top-1 differs", model.display());
    }
}

#[test]
fn ops_beyond_the_gpu_kernels_are_refused_by_name() {
    let m = Member::load(&fixture("resnet-legacy17.onnx")).unwrap();
    let mut g = (*m.graph(1).unwrap()).clone();
    let logits = g.outputs[0];
    let mut v = g.values[logits].clone();
    v.name = "exp_of_logits".into();
    g.values.push(v);
    let out = g.values.len() - 1;
    g.nodes.push(crate::teacher::graph::Node {
        name: "exp".into(),
        op: Op::Unary(Unary::Exp),
        inputs: vec![Some(logits)],
        outputs: vec![out],
    });
    g.outputs = vec![out];
    let e = lower(&g).unwrap_err();
    assert!(
        e.contains("node exp (Exp)") && e.contains("not on the GPU yet"),
        "{e}"
    );
}

#[test]
fn plans_reuse_memory_across_layers() {
    let m = Member::load(&fixture("resnet-legacy17.onnx")).unwrap();
    let g = m.graph(4).unwrap();
    let plan = lower(&g).unwrap();
    let all: usize = g
        .values
        .iter()
        .filter(|v| v.constant.is_none())
        .map(|v| numel(v.shape.as_deref().unwrap_or(&[])))
        .sum();
    assert!(
        plan.arena_len < all,
        "arena {} vs every activation {all}",
        plan.arena_len
    );
    for s in &plan.steps {
        if let Step::Conv { x, y, residual, .. } = s {
            let overlap = |a: &Range<usize>, b: &Range<usize>| a.start < b.end && b.start < a.end;
            assert!(
                !overlap(x, y) && !residual.as_ref().is_some_and(|r| overlap(r, y)),
                "{s:?}"
            );
        }
    }
}

/// A hand-built graph of the movement ops the small fixtures lack, as the
/// real exports have them: Swin's constant Pad (to a window multiple), the
/// dynamo exporter's as_strided Gather (evenly stepping indices), and a
/// Softmax outside attention, lowered and run through the twins against
/// the CPU executor; an unevenly stepping Gather is refused by name.
#[test]
fn pad_gather_and_softmax_track_the_cpu_executor() {
    use crate::teacher::graph::{ConvAttrs, Graph, Node, PadMode, ReduceKind, Value};
    use crate::teacher::tensor::DType;
    let (n, c) = (3usize, 8usize);
    let mut g = crate::teacher::passes::build::Build::new().0;
    let value = |g: &mut Graph, shape: Vec<usize>, constant: Option<Tensor>| {
        g.values.push(Value {
            name: format!("v{}", g.values.len()),
            dtype: constant.as_ref().map_or(DType::F32, |t| t.dtype()),
            shape: Some(shape),
            constant: constant.map(std::sync::Arc::new),
        });
        g.values.len() - 1
    };
    let mut r = crate::rng::Philox::new(9, 1, 2, 3);
    let mut rnd = |k: usize| (0..k).map(|_| r.uniform_f32() - 0.5).collect::<Vec<f32>>();
    let x = value(&mut g, vec![n, 3, 6, 6], None);
    let w = value(
        &mut g,
        vec![c, 3, 1, 1],
        Some(Tensor::f32(vec![c, 3, 1, 1], rnd(c * 3))),
    );
    let conv = value(&mut g, vec![n, c, 6, 6], None);
    let pads = value(
        &mut g,
        vec![8],
        Some(Tensor::i64(vec![8], vec![0, 0, 1, 0, 0, 0, 1, 2])),
    );
    let padded = value(&mut g, vec![n, c, 8, 8], None);
    let soft = value(&mut g, vec![n, c, 8, 8], None);
    // Every other column from 1: [1, 3, 5, 7] as a [2, 2] grid.
    let idx = value(
        &mut g,
        vec![2, 2],
        Some(Tensor::i64(vec![2, 2], vec![1, 3, 5, 7])),
    );
    let gathered = value(&mut g, vec![n, c, 8, 2, 2], None);
    let mean = value(&mut g, vec![n, c], None);
    let attrs = ConvAttrs::pointwise();
    let node = |name: &str, op: Op, inputs: Vec<usize>, out: usize| Node {
        name: name.into(),
        op,
        inputs: inputs.into_iter().map(Some).collect(),
        outputs: vec![out],
    };
    g.nodes = vec![
        node("conv", Op::Conv(attrs), vec![x, w], conv),
        node(
            "pad",
            Op::Pad {
                mode: PadMode::Constant,
            },
            vec![conv, pads],
            padded,
        ),
        node("softmax", Op::Softmax { axis: -1 }, vec![padded], soft),
        node("gather", Op::Gather { axis: 3 }, vec![soft, idx], gathered),
    ];
    g.inputs = vec![x];
    g.outputs = vec![mean];
    // Then the mean over the 32 gathered values of each channel, as tokens.
    let flat_shape = value(
        &mut g,
        vec![3],
        Some(Tensor::i64(vec![3], vec![n as i64, c as i64, 32])),
    );
    let flat = value(&mut g, vec![n, c, 32], None);
    let tr = value(&mut g, vec![n, 32, c], None);
    let one = value(&mut g, vec![1], Some(Tensor::i64(vec![1], vec![1])));
    g.nodes.extend([
        node(
            "flat",
            Op::Reshape { allowzero: false },
            vec![gathered, flat_shape],
            flat,
        ),
        node(
            "tr",
            Op::Transpose {
                perm: Some(vec![0, 2, 1]),
            },
            vec![flat],
            tr,
        ),
        node(
            "mean",
            Op::Reduce {
                kind: ReduceKind::Mean,
                axes: None,
                keepdims: false,
                noop_with_empty_axes: false,
            },
            vec![tr, one],
            mean,
        ),
    ]);
    let plan = lower(&g).unwrap();
    let xs: Vec<f32> = rnd(n * 3 * 36).iter().map(|v| v * 6.0).collect();
    let want = crate::teacher::cpu::run(&g, vec![Tensor::f32(vec![n, 3, 6, 6], xs.clone())])
        .unwrap()
        .remove(0)
        .to_f32_vec();
    let got = plan.run_cpu(&to_nhwc_bf16(&xs, [n, 3, 6, 6], plan.input_channels));
    let (err, agree) = compare(&got, &want, c);
    let steps: Vec<String> = plan.steps.iter().map(Step::describe).collect();
    println!("{steps:?}: bf16 twin vs f32 {err:.2e}, top-1 {agree}/{n}");
    assert!(err < 0.02 && agree == n, "{err} {agree}");
    assert!(
        steps.iter().any(|s| s.starts_with("softmax 8")),
        "{steps:?}"
    );
    // Indices that do not step evenly.
    let bad = Tensor::i64(vec![2, 2], vec![1, 3, 5, 6]);
    g.values[idx].constant = Some(std::sync::Arc::new(bad));
    let e = lower(&g).unwrap_err();
    assert!(
        e.contains("node gather (Gather)") && e.contains("step evenly"),
        "{e}"
    );
}

/// The full-size transformers (torchvision vit_b_16, swin_t, convnext_tiny,
/// timm deit_small; random weights; both exporters) as
/// tools/check_real_families.py exports them, in the folder named by
/// DR_REAL_MODELS with its input-224.npy ([2, 3, 224, 224]): each lowers,
/// and its bf16 plan through the twins tracks the f32 CPU executor (top-1
/// equal, max |diff| within 3% of the largest logit). Too large to commit;
/// without the folder the test says it is skipped. A few minutes in release:
///     DR_REAL_MODELS=/tmp/dr-real-models cargo test --release real_transformers -- --nocapture
#[test]
fn real_transformers_track_the_cpu_executor() {
    let Some(dir) = std::env::var_os("DR_REAL_MODELS").map(PathBuf::from) else {
        println!(
            "skipped: DR_REAL_MODELS is not set (tools/check_real_families.py writes the models)"
        );
        return;
    };
    let (shape, x): (Vec<usize>, Vec<f32>) = crate::npy::read(&dir.join("input-224.npy")).unwrap();
    for name in [
        "vit_b_16",
        "deit_small_patch16_224",
        "swin_t",
        "convnext_tiny",
    ] {
        for exporter in ["legacy17", "dynamo"] {
            let path = dir.join(format!("{name}-{exporter}.onnx"));
            let m = Member::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let g = m.graph(shape[0]).unwrap();
            let plan = lower(&g).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let want = m.logits(Tensor::f32(shape.clone(), x.clone())).unwrap();
            let want = want.view().unwrap().data.to_vec();
            let nchw: [usize; 4] = shape[..].try_into().unwrap();
            let got = plan.run_cpu(&to_nhwc_bf16(&x, nchw, plan.input_channels));
            let (err, agree) = compare(&got, &want, plan.classes);
            let count = |p: &dyn Fn(&Step) -> bool| plan.steps.iter().filter(|s| p(s)).count();
            println!(
                "{name} ({exporter}): {} steps ({} attention, {} copies), arena {:.1} MiB, {:.2} GMAC an image; bf16 twin vs f32: {err:.2e}, top-1 {agree}/{}",
                plan.steps.len(),
                count(&|s| matches!(s, Step::Attention { .. })),
                count(&|s| matches!(s, Step::Copy { .. })),
                plan.arena_len as f64 * 2.0 / (1 << 20) as f64,
                plan.macs() as f64 / shape[0] as f64 / 1e9,
                shape[0]
            );
            assert!(err < 0.03, "{name} ({exporter}): relative error {err}");
            assert_eq!(agree, shape[0], "{name} ({exporter}): top-1 differs");
        }
    }
}

/// torchvision's ViT attention (nn.MultiheadAttention: tokens-major, the
/// heads merged with the images into one axis whose strides do not chain)
/// as the legacy exporter writes it, hand-built at batch `n` with 6
/// tokens, 2 heads of 16: a 1x1 convolution's pixels as the tokens, one
/// attention block, the first token's logits over 10 classes.
pub(crate) fn multihead_attention(n: usize) -> Graph {
    use crate::teacher::graph::{Binary, ConvAttrs};
    use crate::teacher::passes::build::{Build, filled};
    let (m, h, d, classes) = (6, 2, 16, 10);
    let e = h * d;
    let mut t = Build::new();
    let x = t.input(&[n, 3, 2, 3]);
    let w = t.constant(filled(&[e, 3, 1, 1], 1, 0.5));
    let attrs = ConvAttrs::pointwise();
    let conv = t.node(Op::Conv(attrs), &[x, w], &[n, e, 2, 3]);
    let flat = t.reshape(conv, &[n, e, m]);
    let tokens = t.transpose(flat, &[2, 0, 1]);
    let w_qkv = t.constant(filled(&[e, 3 * e], 2, 0.5));
    let qkv = t.node(Op::MatMul, &[tokens, w_qkv], &[m, n, 3 * e]);
    let qkv = t.reshape(qkv, &[m, n, 3, e]);
    let [q, k, v] = [0, 1, 2].map(|i| {
        let x = t.select(qkv, 2, i);
        t.mha_heads(x, h)
    });
    let scale = t.constant(Tensor::scalar_f32(0.5));
    let q = t.binary(Binary::Mul, q, scale, &[n, h, m, d]);
    let kt = t.transpose(k, &[0, 1, 3, 2]);
    let kt = t.binary(Binary::Mul, kt, scale, &[n, h, d, m]);
    let s = t.node(Op::MatMul, &[q, kt], &[n, h, m, m]);
    let p = t.node(Op::Softmax { axis: -1 }, &[s], &[n, h, m, m]);
    let y = t.node(Op::MatMul, &[p, v], &[n, h, m, d]);
    let y = t.transpose(y, &[2, 0, 1, 3]);
    let y = t.reshape(y, &[m * n, e]);
    let w_out = t.constant(filled(&[e, e], 3, 0.5));
    let y = t.node(Op::MatMul, &[y, w_out], &[m * n, e]);
    let y = t.reshape(y, &[m, n, e]);
    let y = t.transpose(y, &[1, 0, 2]);
    let cls = t.select(y, 1, 0);
    let w_head = t.constant(filled(&[e, classes], 4, 0.5));
    let logits = t.node(Op::MatMul, &[cls, w_head], &[n, classes]);
    t.0.outputs.push(logits);
    t.0
}

/// After the passes, nn.MultiheadAttention's q, k and v are views of the
/// projection and the attention writes the layout the out-projection
/// reads, so no step copies; the plan tracks the CPU executor through the
/// twins.
#[test]
fn multihead_attention_lowers_without_copies() {
    let n = 2;
    let g = multihead_attention(n);
    let mut opt = g.clone();
    crate::teacher::passes::optimize(&mut opt).unwrap();
    let plan = lower(&opt).unwrap();
    let steps: Vec<String> = plan.steps.iter().map(Step::describe).collect();
    let count = |p: &dyn Fn(&Step) -> bool| plan.steps.iter().filter(|s| p(s)).count();
    assert_eq!(
        count(&|s| matches!(s, Step::Attention { .. })),
        1,
        "{steps:?}"
    );
    assert_eq!(count(&|s| matches!(s, Step::Copy { .. })), 0, "{steps:?}");
    let xs = crate::teacher::passes::build::filled(&[n, 3, 2, 3], 5, 2.0).to_f32_vec();
    let want = crate::teacher::cpu::run(&g, vec![Tensor::f32(vec![n, 3, 2, 3], xs.clone())])
        .unwrap()
        .remove(0)
        .to_f32_vec();
    let got = plan.run_cpu(&to_nhwc_bf16(&xs, [n, 3, 2, 3], plan.input_channels));
    let (err, agree) = compare(&got, &want, plan.classes);
    println!("{steps:?}: bf16 twin vs f32 {err:.2e}, top-1 {agree}/{n}");
    assert!(err < 0.02 && agree == n, "{err} {agree}");
}
