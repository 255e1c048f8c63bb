//! Kernel choices measured per layer on a device (`dr bench model
//! --autotune`), kept in a file per (device, model) that the executor reads
//! when it builds a teacher. Without one, each layer takes `conv::variant`,
//! a shape rule; with one, the kernel that ran fastest there. Every
//! candidate of a layer computes the same bits (`conv::candidates`), so a
//! choice changes speed only: records stay byte-identical to an untuned run.
//!
//! File: `<dir>/<device>-sm<major><minor>/<architecture>[-wgmma].json`
//! (`-wgmma` for a plan of the wgmma kernels, `conv::ConvPath`), where `dir`
//! is `$DR_TUNING_DIR`, else `$XDG_CACHE_HOME/dr/tuning`, else
//! `~/.cache/dr/tuning`, and `architecture` is 16 hex digits of the SHA-256
//! of the model's convolution shapes (weights do not change timings, so two
//! checkpoints of one architecture share a file). A file that no longer
//! matches the model's layers is refused with the fix, never half applied.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::conv::{ConvPath, Variant, candidates_on, variant_on};
use super::lower::{GpuPlan, Step};
use crate::cuda::DeviceInfo;
use crate::cuda::kernels::conv::ConvParams;

pub const FORMAT: &str = "dr-kernel-tuning-1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tuning {
    pub format: String,
    pub device: String,
    pub compute_capability: (u32, u32),
    /// The model file it was measured on (for people: the key is the
    /// architecture).
    pub model: PathBuf,
    pub architecture: String,
    /// The batch the layers were timed at.
    pub batch: usize,
    /// Set when measured on the CPU stand-in: the choices then follow
    /// emulation time, not a device's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulated: Option<String>,
    pub layers: Vec<TunedLayer>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TunedLayer {
    /// Index of the step in the lowered plan.
    pub step: usize,
    /// `layer_key` of its convolution.
    pub layer: String,
    pub kernel: String,
    /// What the shape rule takes.
    pub rule: String,
    /// Median milliseconds of each candidate, in `candidates` order.
    pub candidates_ms: Vec<(String, f64)>,
}

/// A convolution's shape without the batch: what a choice is for.
pub fn layer_key(p: &ConvParams) -> String {
    format!(
        "{}x{} s{}x{} p{}x{} d{}x{} g{} {}x{}x{} -> {}x{}x{} act{} res{}",
        p.kh,
        p.kw,
        p.sh,
        p.sw,
        p.ph,
        p.pw,
        p.dh,
        p.dw,
        p.groups,
        p.h,
        p.w,
        p.cin,
        p.oh,
        p.ow,
        p.cout,
        p.act,
        p.has_residual
    )
}

/// The plan's convolution steps, `(step index, params)`.
pub fn conv_steps(plan: &GpuPlan) -> impl Iterator<Item = (usize, &ConvParams)> {
    plan.steps.iter().enumerate().filter_map(|(i, s)| match s {
        Step::Conv { p, .. } => Some((i, p)),
        _ => None,
    })
}

/// 16 hex digits naming the plan's architecture (its convolution shapes in
/// order, batch excluded).
pub fn architecture(plan: &GpuPlan) -> String {
    let mut h = Sha256::new();
    for (i, p) in conv_steps(plan) {
        h.update(format!("{i}: {}\n", layer_key(p)));
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where tuning files live (see the module comment).
pub fn dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("DR_TUNING_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("dr/tuning")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/dr/tuning")))
        .unwrap_or_else(|| PathBuf::from(".dr-tuning"))
}

/// The file for `plan` on `device`.
pub fn file_for(device: &DeviceInfo, plan: &GpuPlan) -> PathBuf {
    file_in(&dir(), device, plan)
}

/// `file_for` under another tuning folder.
pub fn file_in(dir: &Path, device: &DeviceInfo, plan: &GpuPlan) -> PathBuf {
    let (major, minor) = device.compute_capability;
    // The wgmma kernels' choices apart: a DR_CONV_KERNELS=mma-sync run on
    // the same device reads its own.
    let path = match plan.conv_path {
        ConvPath::MmaSync => String::new(),
        other => format!("-{}", other.name()),
    };
    dir.join(format!(
        "{}-sm{major}{minor}",
        crate::bench::report::slug(&device.name)
    ))
    .join(format!("{}{path}.json", architecture(plan)))
}

/// Every layer that has a choice on its last candidate, never the shape
/// rule's: a tuning that moves all it can, what tests use to show that a
/// choice changes no bits.
pub fn off_the_rule(plan: &GpuPlan) -> Vec<TunedLayer> {
    conv_steps(plan)
        .filter_map(|(i, p)| {
            let c = candidates_on(p, plan.conv_path);
            (c.len() > 1).then(|| TunedLayer {
                step: i,
                layer: layer_key(p),
                kernel: c[c.len() - 1].name().into(),
                rule: c[0].name().into(),
                candidates_ms: vec![],
            })
        })
        .collect()
}

impl Tuning {
    /// `layers` of `plan` measured at `batch` on `device` from `model`.
    pub fn new(
        device: &DeviceInfo,
        model: &Path,
        plan: &GpuPlan,
        batch: usize,
        layers: Vec<TunedLayer>,
    ) -> Self {
        Tuning {
            format: FORMAT.into(),
            device: device.name.clone(),
            compute_capability: device.compute_capability,
            model: model.to_path_buf(),
            architecture: architecture(plan),
            batch,
            emulated: device.stand_in.then(|| crate::cuda::EMULATED.to_string()),
            layers,
        }
    }

    /// Per step, the tuned kernel (`None`: the shape rule's), checked
    /// against the plan: a step that is no longer the tuned layer, or a
    /// kernel that does not compute it, refuses the whole file.
    pub fn choices(&self, plan: &GpuPlan, file: &Path) -> Result<Vec<Option<Variant>>> {
        let stale = |what: String| -> Result<Vec<Option<Variant>>> {
            bail!(
                "{}: {what}. The tuning is for another version of this model or of dr. Fix: rerun `dr bench model --autotune` or delete the file",
                file.display()
            )
        };
        if self.format != FORMAT {
            return stale(format!(
                "format {:?}, this dr reads {FORMAT:?}",
                self.format
            ));
        }
        let mut out = vec![None; plan.steps.len()];
        for l in &self.layers {
            let Some(Step::Conv { p, .. }) = plan.steps.get(l.step) else {
                return stale(format!("step {} is not a convolution", l.step));
            };
            if layer_key(p) != l.layer {
                return stale(format!(
                    "step {} is {}, not the tuned {}",
                    l.step,
                    layer_key(p),
                    l.layer
                ));
            }
            let Some(v) = candidates_on(p, plan.conv_path)
                .into_iter()
                .find(|v| v.name() == l.kernel)
            else {
                return stale(format!(
                    "{} does not compute step {} ({})",
                    l.kernel, l.step, l.layer
                ));
            };
            out[l.step] = (v != variant_on(p, plan.conv_path)).then_some(v);
        }
        Ok(out)
    }

    pub fn save(&self, file: &Path) -> Result<()> {
        if let Some(d) = file.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let tmp = file.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, file).with_context(|| format!("writing {}", file.display()))
    }

    pub fn load(file: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a kernel tuning file. Fix: rerun `dr bench model --autotune` or delete it",
                file.display()
            )
        })
    }
}

/// The tuned choices for `plan` on `device` when its file exists, with
/// the file: what every executor applies before capturing a forward.
pub fn load_for(
    device: &DeviceInfo,
    plan: &GpuPlan,
) -> Result<Option<(PathBuf, Vec<Option<Variant>>)>> {
    let file = file_for(device, plan);
    if !file.exists() {
        return Ok(None);
    }
    let t = Tuning::load(&file)?;
    let choices = t.choices(plan, &file)?;
    Ok(Some((file, choices)))
}

/// Applies the tuning file of `gm`'s plan on `device`, when there is one
/// (before the forward is captured); returns the file applied.
pub fn apply(gm: &mut super::model::GpuModel, device: &DeviceInfo) -> Result<Option<PathBuf>> {
    let Some((file, choices)) = load_for(device, &gm.plan)? else {
        return Ok(None);
    };
    gm.set_variants(choices)?;
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::testing::gpu_or_skip;
    use crate::teacher::ensemble::Member;
    use crate::teacher::gpu::conv::Tile;
    use crate::teacher::gpu::lower::{lower, to_nhwc_bf16};
    use crate::teacher::gpu::model::GpuModel;

    fn plan(batch: usize) -> GpuPlan {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let m = Member::load(&root.join("tests/fixtures/teacher/resnext-helper.onnx")).unwrap();
        lower(&m.graph(batch).unwrap()).unwrap()
    }

    /// Each layer with a choice, its last candidate (never the rule's).
    fn last_candidates(plan: &GpuPlan) -> Tuning {
        Tuning {
            format: FORMAT.into(),
            device: "test".into(),
            compute_capability: (9, 0),
            model: "resnext-helper.onnx".into(),
            architecture: architecture(plan),
            batch: 1,
            emulated: None,
            layers: off_the_rule(plan),
        }
    }

    /// A file applies to the architecture at any batch, round-trips, and
    /// refuses (naming the file and the fix) a layer or kernel it does not
    /// match, or another format.
    #[test]
    fn a_tuning_applies_at_any_batch_and_stale_ones_are_refused() {
        let (p1, p5) = (plan(1), plan(5));
        assert_eq!(architecture(&p1), architecture(&p5));
        let t = last_candidates(&p1);
        assert!(
            t.layers.len() >= 3,
            "{} layers with a choice",
            t.layers.len()
        );
        let dir = std::env::temp_dir().join(format!("dr-tuning-{}", std::process::id()));
        let file = dir.join("sub/t.json");
        t.save(&file).unwrap();
        let back = Tuning::load(&file).unwrap();
        let choices = back.choices(&p5, &file).unwrap();
        assert_eq!(choices.iter().flatten().count(), t.layers.len());
        for l in &t.layers {
            assert_eq!(choices[l.step].unwrap().name(), l.kernel);
        }

        let refused = |t: &Tuning, why: &str| {
            let e = t.choices(&p1, &file).unwrap_err().to_string();
            assert!(
                e.contains(why) && e.contains("t.json") && e.contains("--autotune"),
                "{e}"
            );
        };
        let mut bad = t.clone();
        bad.layers[0].layer = "7x7 something else".into();
        refused(&bad, "not the tuned");
        let mut bad = t.clone();
        bad.layers[0].kernel = "conv_depthwise_bf16_nhwc".into();
        refused(&bad, "does not compute");
        let mut bad = t.clone();
        bad.layers[0].step = p1.steps.len();
        refused(&bad, "not a convolution");
        let mut bad = t.clone();
        bad.format = "dr-kernel-tuning-0".into();
        refused(&bad, "format");
        std::fs::write(&file, "{").unwrap();
        let e = Tuning::load(&file).unwrap_err().to_string();
        assert!(e.contains("not a kernel tuning file"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Tuned kernels give the bytes of the shape rule's: the ResNeXt
    /// helper with every choice at its other candidate, eager and as a
    /// graph, equal to the untuned forward bit for bit.
    #[test]
    fn tuned_kernels_give_the_same_bytes() {
        let Some(gpu) = gpu_or_skip() else { return };
        let plan = plan(3);
        let t = last_candidates(&plan);
        let choices = t.choices(&plan, Path::new("t.json")).unwrap();
        let mut r = crate::rng::Philox::new(12, 0, 0, 0);
        let x: Vec<f32> = (0..plan.input_nchw.iter().product())
            .map(|_| r.uniform_f32() * 4.0 - 2.0)
            .collect();
        let input = to_nhwc_bf16(&x, plan.input_nchw, plan.input_channels);
        let mut gm = GpuModel::new(&gpu, plan).unwrap();
        let want = gm.run(&input).unwrap();
        gm.set_variants(choices).unwrap();
        for l in &t.layers {
            assert_eq!(gm.variant_of(l.step).unwrap().name(), l.kernel);
        }
        let eager = gm.run(&input).unwrap();
        gm.capture().unwrap();
        let graphed = gm.run(&input).unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&eager), bits(&want), "tuned eager vs the rule's");
        assert_eq!(bits(&graphed), bits(&want), "tuned graph vs the rule's");
        // Every layer that the 256x128 tile computes on it: 72 KB of
        // dynamic shared memory a block, opted into at each launch (in
        // the capture too).
        let wide = Tile::Tc { bm: 256, bn: 128 };
        let choices: Vec<Option<Variant>> = (0..gm.plan.steps.len())
            .map(|i| match &gm.plan.steps[i] {
                Step::Conv { p, .. } => candidates_on(p, gm.plan.conv_path)
                    .into_iter()
                    .find(|v| v.tile == wide),
                _ => None,
            })
            .collect();
        assert!(choices.iter().flatten().count() >= 2, "{choices:?}");
        gm.set_variants(choices).unwrap();
        assert_eq!(bits(&gm.run(&input).unwrap()), bits(&want), "256x128 eager");
        gm.capture().unwrap();
        assert_eq!(bits(&gm.run(&input).unwrap()), bits(&want), "256x128 graph");
        // A kernel that does not compute a step is refused: a grouped
        // layer's on an ungrouped one.
        let grouped = conv_steps(&gm.plan).find(|(_, p)| p.groups > 1).unwrap().1;
        let grouped = crate::teacher::gpu::conv::variant(grouped);
        let (plain, _) = conv_steps(&gm.plan).find(|(_, p)| p.groups == 1).unwrap();
        let mut wrong = vec![None; gm.plan.steps.len()];
        wrong[plain] = Some(grouped);
        assert!(gm.set_variants(wrong).is_err());
    }
}
