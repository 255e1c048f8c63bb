//! `dr infer` and `dr inspect`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::ensemble::{Ensemble, mean_softmax, softmax_rows};
use super::graph::{Graph, Op};
use super::onnx;
use super::tensor::Tensor;
use crate::augment::geometry::{center_crop, resize};
use crate::augment::image::Rgb8;
use crate::config::{PassOrder, ResizeSize};
use crate::dataset::decode::decode_rgb;
use crate::dataset::listing::IMG_EXTENSIONS;

/// Evaluation preprocessing for `--image`: resize the shorter side,
/// center-crop, to_tensor, normalize (torchvision's standard eval transform).
#[derive(Debug, Clone)]
pub struct Preprocess {
    pub resize: u32,
    pub crop: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            resize: 256,
            crop: 224,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

impl Preprocess {
    pub fn image(&self, img: &Rgb8) -> Vec<f32> {
        let img = resize(
            img,
            ResizeSize::Shorter(self.resize),
            None,
            PassOrder::Pillow13,
        );
        let img = center_crop(&img, self.crop as usize, self.crop as usize);
        let t = img.to_chw();
        let plane = t.plane();
        t.data
            .iter()
            .enumerate()
            .map(|(i, &v)| (v as f32 / 255.0 - self.mean[i / plane]) / self.std[i / plane])
            .collect()
    }
}

/// The files `--image` names, and the sub-folders it did not search.
pub struct ImageFiles {
    pub files: Vec<PathBuf>,
    pub folders_not_searched: usize,
}

/// Image files (by extension) of a folder, sorted by path, with its
/// sub-folders' when `recursive`; or the file itself.
pub fn image_files(path: &Path, recursive: bool) -> Result<ImageFiles> {
    if path.is_file() {
        return Ok(ImageFiles {
            files: vec![path.to_path_buf()],
            folders_not_searched: 0,
        });
    }
    // torchvision's IMG_EXTENSIONS, as the ImageFolder listing uses.
    let exts: Vec<&str> = IMG_EXTENSIONS.iter().map(|e| &e[1..]).collect();
    let mut found = ImageFiles {
        files: Vec::new(),
        folders_not_searched: 0,
    };
    let mut todo = vec![path.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| anyhow::anyhow!("--image {}: {}", dir.display(), crate::io_reason(&e)))?;
        for p in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if p.is_dir() {
                if recursive {
                    todo.push(p);
                } else {
                    found.folders_not_searched += 1;
                }
            } else if p
                .extension()
                .is_some_and(|e| exts.contains(&e.to_string_lossy().to_lowercase().as_str()))
            {
                found.files.push(p);
            }
        }
    }
    found.files.sort();
    if found.files.is_empty() {
        let hint = match found.folders_not_searched {
            0 => String::new(),
            n => format!("; its {n} sub-folder(s) were not searched. Fix: add --recursive"),
        };
        bail!(
            "--image {}: no image files ({}){hint}",
            path.display(),
            exts.join(", ")
        );
    }
    Ok(found)
}

/// Decodes each file (in parallel): the image, or why it is not usable
/// (`DecodeError::reason`, the wording `dr reinforce` uses).
pub fn decode_files(files: &[PathBuf]) -> Vec<std::result::Result<Rgb8, String>> {
    use rayon::prelude::*;
    files
        .par_iter()
        .map(|f| decode_rgb(f).map_err(|e| e.reason()))
        .collect()
}

/// What to run the teacher on.
pub enum Input {
    /// float32 NCHW. A member that takes another height and width gets the
    /// batch resized to its size (bilinear with antialiasing, as
    /// torchvision's `F.resize(tensor, antialias=True)`; see `resize`). The
    /// channel count must match.
    Tensor(Tensor),
    /// Image files, preprocessed for each member at its own input size (the
    /// resize scales with it: 256 for 224, as in torchvision's eval transform).
    Images { images: Vec<Rgb8>, pre: Preprocess },
}

pub struct InferRequest {
    pub models: Vec<PathBuf>,
    pub input: Input,
    /// `None`: the CPU executor; `Some(i)`: the GPU executor on CUDA device i.
    pub device: Option<usize>,
    pub batch_size: usize,
    pub probs: bool,
    pub temperature: f32,
}

/// The input of one member, checked against its expected [C, H, W].
fn member_input(path: &Path, want: &[usize], input: &Input) -> Result<Tensor> {
    match input {
        Input::Tensor(x) => {
            if x.shape.len() == 4
                && want.len() == 3
                && x.shape[1] == want[0]
                && x.shape[2..] != want[1..]
            {
                return super::resize::resize_bilinear_aa(x, want[1], want[2])
                    .map_err(anyhow::Error::msg);
            }
            if x.shape.len() != 4 || x.shape[1..] != want[..] {
                bail!(
                    "the input is {:?} but {} takes [N, {}] (float32 NCHW; the channel count must match, another height and width is resized)",
                    x.shape,
                    path.display(),
                    want.iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(x.clone())
        }
        Input::Images { images, pre } => {
            if want.len() != 3 || want[0] != 3 || want[1] != want[2] {
                bail!(
                    "{} takes {want:?}; --image needs a square 3-channel input",
                    path.display()
                );
            }
            let crop = want[1] as u32;
            let pre = if crop == pre.crop {
                pre.clone()
            } else {
                Preprocess {
                    crop,
                    resize: (crop as f64 * pre.resize as f64 / pre.crop as f64).round() as u32,
                    ..pre.clone()
                }
            };
            let mut data = Vec::new();
            for img in images {
                data.extend(pre.image(img));
            }
            Ok(Tensor::f32(vec![images.len(), 3, want[1], want[2]], data))
        }
    }
}

/// `--device` of a one-device command: "cpu" → `None`, "cuda" → device 0,
/// "cuda:N" → N.
pub fn parse_device(s: &str) -> Result<Option<usize>> {
    match parse_devices(s).ok().as_deref() {
        Some([]) => Ok(None),
        Some([d]) => Ok(Some(*d)),
        _ => bail!("--device {s}: give cpu, cuda or cuda:N"),
    }
}

/// `--device` for a job that can use several GPUs: "cpu" → none, "cuda" →
/// [0], "cuda:0,2" → [0, 2] (a device may repeat: two workers on one GPU).
pub fn parse_devices(s: &str) -> Result<Vec<usize>> {
    match s {
        "cpu" => Ok(Vec::new()),
        "cuda" => Ok(vec![0]),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|l| {
                l.split(',')
                    .map(|n| n.trim().parse().ok())
                    .collect::<Option<Vec<usize>>>()
            })
            .filter(|v| !v.is_empty())
            .with_context(|| format!("--device {s}: give cpu, cuda, cuda:N or cuda:N,M,...")),
    }
}

/// One member's logits on the GPU executor: batches of `batch` (the last
/// padded with zeros and cut back), NHWC bf16 in, logits rounded from bf16.
fn gpu_logits(
    m: &super::ensemble::Member,
    gpu: &crate::cuda::Gpu,
    x: &Tensor,
    batch: usize,
) -> Result<Tensor> {
    use super::gpu::lower::{lower, to_nhwc_bf16};
    let batch = m.fixed_batch().unwrap_or(batch);
    let mut plan = lower(&*m.graph(batch)?)
        .map_err(|e| anyhow::anyhow!("--device cuda: {}: {e}", m.path.display()))?;
    plan.conv_path = super::gpu::conv::ConvPath::for_device(gpu.info())?;
    let (classes, channels) = (plan.classes, plan.input_channels);
    let mut gm = super::gpu::model::GpuModel::new(gpu, plan)?;
    if let Some(f) = super::gpu::tuning::apply(&mut gm, gpu.info())? {
        eprintln!(
            "{}: kernel choices tuned by {}",
            m.path.display(),
            f.display()
        );
    }
    gm.capture()?;
    let (n, per) = (x.shape[0], x.len() / x.shape[0].max(1));
    let xs = x.as_f32().context("input must be float32")?;
    let mut rows = Vec::with_capacity(n * classes);
    for start in (0..n).step_by(batch) {
        let b = batch.min(n - start);
        let mut chunk = xs[start * per..(start + b) * per].to_vec();
        chunk.resize(batch * per, 0.0);
        let shape = [batch, x.shape[1], x.shape[2], x.shape[3]];
        let y = gm.run(&to_nhwc_bf16(&chunk, shape, channels))?;
        rows.extend_from_slice(&y[..b * classes]);
    }
    Ok(Tensor::f32(vec![n, classes], rows))
}

/// Logits (one model, no `--probs`) or mean probabilities, [N, classes].
pub fn infer(req: &InferRequest) -> Result<Tensor> {
    let ens = Ensemble::load(&req.models)?;
    let gpu = req
        .device
        .map(|d| crate::cuda::Gpu::open(d).context("--device cuda"))
        .transpose()?;
    let mut all_logits = Vec::new();
    for m in &ens.members {
        let x = member_input(&m.path, &m.input_chw()?, &req.input)?;
        if let Some(gpu) = &gpu {
            all_logits.push(gpu_logits(m, gpu, &x, req.batch_size)?);
            continue;
        }
        let n = x.shape[0];
        let per = x.len() / n.max(1);
        let xs = x.as_f32().context("input must be float32")?;
        let (mut rows, mut classes) = (Vec::new(), 0);
        for start in (0..n).step_by(req.batch_size.max(1)) {
            let b = req.batch_size.min(n - start);
            let chunk = Tensor::f32(
                [vec![b], x.shape[1..].to_vec()].concat(),
                xs[start * per..(start + b) * per].to_vec(),
            );
            let y = m.logits(chunk)?;
            classes = y.shape[1];
            rows.extend_from_slice(y.as_f32().unwrap());
        }
        all_logits.push(Tensor::f32(vec![n, classes], rows));
    }
    if all_logits.len() == 1 && !req.probs {
        return Ok(all_logits.remove(0));
    }
    mean_softmax(&all_logits, req.temperature).map_err(anyhow::Error::msg)
}

/// Top-k per row: values and ids, largest first, ties to the lower id.
pub fn topk(y: &Tensor, k: usize) -> (Vec<f32>, Vec<i64>) {
    let c = y.shape[1];
    let k = k.min(c);
    let (mut vals, mut ids) = (Vec::new(), Vec::new());
    for row in y.as_f32().unwrap().chunks(c) {
        let mut idx: Vec<usize> = (0..c).collect();
        idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        for &i in &idx[..k] {
            vals.push(row[i]);
            ids.push(i as i64);
        }
    }
    (vals, ids)
}

/// Probabilities for display whatever `infer` returned.
pub fn as_probs(y: &Tensor, already: bool) -> Tensor {
    if already {
        y.clone()
    } else {
        softmax_rows(y, 1.0)
    }
}

/// Multiply-accumulates of the graph at its prepared batch size.
pub fn macs(g: &Graph) -> u64 {
    let shape = |v: Option<usize>| {
        v.and_then(|v| g.values[v].shape.clone())
            .unwrap_or_default()
    };
    g.nodes
        .iter()
        .map(|n| match &n.op {
            Op::Conv(_) => {
                let w = shape(n.inputs[1]);
                let o = shape(Some(n.outputs[0]));
                (o.iter().product::<usize>() * w[1..].iter().product::<usize>()) as u64
            }
            Op::Gemm { trans_a, .. } => {
                let a = shape(n.inputs[0]);
                let o = shape(Some(n.outputs[0]));
                let k = if *trans_a { a[0] } else { a[1] };
                (o.iter().product::<usize>() * k) as u64
            }
            Op::Attention { .. } => {
                let (q, k, v) = (shape(n.inputs[0]), shape(n.inputs[1]), shape(n.inputs[2]));
                let rows: usize = q[..q.len() - 1].iter().product();
                let m = k[k.len() - 2];
                (rows * m * (q[q.len() - 1] + v[v.len() - 1])) as u64
            }
            Op::MatMul => {
                let a = shape(n.inputs[0]);
                let o = shape(Some(n.outputs[0]));
                (o.iter().product::<usize>() * a.last().copied().unwrap_or(0)) as u64
            }
            _ => 0,
        })
        .sum()
}

/// `dr inspect`'s report, and how many nodes dr cannot run (the command
/// fails when there are any). `nodes` adds the IR after the passes and the
/// GPU steps; `batch` overrides the batch it is prepared at.
pub fn inspect(path: &Path, nodes: bool, batch: Option<usize>) -> Result<(String, usize)> {
    let mut s = String::new();
    let unsupported = onnx::unsupported_nodes(path)?;
    if !unsupported.is_empty() {
        writeln!(
            s,
            "{}: {} unsupported node(s):",
            path.display(),
            unsupported.len()
        )?;
        for u in &unsupported {
            writeln!(s, "  {u}")?;
        }
        return Ok((s, unsupported.len()));
    }
    let model = onnx::load(path)?;
    let g0 = &model.graph;
    writeln!(
        s,
        "{} (producer {}, opset {})",
        path.display(),
        model.producer,
        g0.opset
    )?;
    for (&i, dims) in g0.inputs.iter().zip(&model.input_dims) {
        let d: Vec<String> = dims
            .iter()
            .map(|d| match d {
                onnx::Dim::Fixed(n) => n.to_string(),
                onnx::Dim::Symbolic(p) => p.clone(),
            })
            .collect();
        writeln!(s, "input  {} [{}]", g0.values[i].name, d.join(", "))?;
    }
    let mut hist: BTreeMap<String, usize> = BTreeMap::new();
    for n in &g0.nodes {
        *hist.entry(n.op.name()).or_default() += 1;
    }
    // A model exported with a fixed batch is prepared at that batch.
    let batch = match (batch, model.input_dims.first().and_then(|d| d.first())) {
        (Some(b), _) => b,
        (None, Some(onnx::Dim::Fixed(n))) if *n > 0 => *n,
        _ => 1,
    };
    let mut g = super::shape::with_batch(&model, batch)?;
    let folded_nodes = g0.nodes.len();
    let report = super::passes::optimize(&mut g)?;
    for &o in &g.outputs {
        writeln!(
            s,
            "output {} {:?} at batch {batch}",
            g.values[o].name,
            g.values[o].shape.clone().unwrap_or_default()
        )?;
    }
    writeln!(s, "parameters {:.2} M", g.parameter_count() as f64 / 1e6)?;
    writeln!(
        s,
        "GMACs at batch 1: {:.3}",
        macs(&g) as f64 / batch as f64 / 1e9
    )?;
    writeln!(s, "ops as exported ({folded_nodes} nodes):")?;
    for (op, n) in &hist {
        writeln!(s, "  {op:<22} {n}")?;
    }
    writeln!(s, "passes:")?;
    for (name, before, after) in report {
        writeln!(s, "  {name:<22} {before} -> {after} nodes")?;
    }
    let mut fused: BTreeMap<String, usize> = BTreeMap::new();
    for n in &g.nodes {
        *fused.entry(n.op.name()).or_default() += 1;
    }
    writeln!(
        s,
        "ops after passes ({} nodes): {}",
        g.nodes.len(),
        fused
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    if nodes {
        let shape = |v: usize| format!("{:?}", g.values[v].shape.clone().unwrap_or_default());
        for n in &g.nodes {
            let ins: Vec<String> = n
                .inputs
                .iter()
                .map(|v| match v {
                    None => "-".into(),
                    Some(v) if g.values[*v].constant.is_some() => format!("const{}", shape(*v)),
                    Some(v) => shape(*v),
                })
                .collect();
            let outs: Vec<String> = n.outputs.iter().map(|&v| shape(v)).collect();
            writeln!(
                s,
                "  {:<12} {} -> {}  ({})",
                n.op.name(),
                ins.join(" "),
                outs.join(" "),
                n.name
            )?;
        }
    }
    match super::gpu::lower::lower(&g) {
        Ok(p) => {
            writeln!(
                s,
                "GPU executor: {} kernel steps, activation arena {:.1} MiB at batch {batch}",
                p.steps.len(),
                p.arena_len as f64 * 2.0 / (1 << 20) as f64
            )?;
            let (mut convs, mut wgmma, mut flops, mut wgmma_flops) = (0, 0, 0.0, 0.0);
            for (i, step) in p.steps.iter().enumerate() {
                if let super::gpu::lower::Step::Conv { p: c, .. } = step {
                    convs += 1;
                    flops += p.step_flops(i);
                    if !super::gpu::conv::wgmma_variants(c).is_empty() {
                        wgmma += 1;
                        wgmma_flops += p.step_flops(i);
                    }
                }
            }
            writeln!(
                s,
                "  on sm_90a: {wgmma} of {convs} convolutions ({:.0}% of their MACs) take the wgmma kernels, the rest mma.sync",
                100.0 * wgmma_flops / f64::max(flops, 1.0)
            )?;
            if nodes {
                for step in &p.steps {
                    writeln!(s, "  {}", step.describe())?;
                }
            }
        }
        Err(e) => writeln!(s, "GPU executor: not supported ({e})")?,
    }
    Ok((s, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_flags_parse() {
        assert_eq!(parse_device("cpu").unwrap(), None);
        assert_eq!(parse_device("cuda").unwrap(), Some(0));
        assert_eq!(parse_device("cuda:3").unwrap(), Some(3));
        assert!(parse_device("gpu").is_err());
        let e = parse_device("cuda:0,1").unwrap_err().to_string();
        assert!(e.contains("cpu, cuda or cuda:N"), "{e}");
        assert_eq!(parse_devices("cpu").unwrap(), Vec::<usize>::new());
        assert_eq!(parse_devices("cuda").unwrap(), [0]);
        assert_eq!(parse_devices("cuda:0,2").unwrap(), [0, 2]);
        assert_eq!(parse_devices("cuda:1, 1").unwrap(), [1, 1]);
        for bad in ["cuda:", "cuda:a", "cuda:0,,1", "tpu"] {
            let e = parse_devices(bad).unwrap_err().to_string();
            assert!(e.contains("cuda:N,M"), "{bad}: {e}");
        }
    }
}
