//! `OUT/manifest.json`: what a reinforced dataset is (settings, record
//! layout) and how far it got (complete shards with their hashes, status).
//! Replaced atomically after every shard, so it never names a shard that is
//! not complete on disk.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::augment::params::PARAMS_SAMPLER_VERSION;
use crate::labels::sampled::SAMPLER_VERSION;
use crate::labels::{Coding, IdFormat, LabelMode, ParamsFormat, ProbFormat};

pub const FORMAT: &str = "dr-reinforced";
pub const VERSION: u32 = 1;
pub const FILE: &str = "manifest.json";

/// Everything that decides the bytes of the output. A rerun into the same
/// OUT must match it exactly (otherwise it is refused, naming what differs);
/// tasks of one `--shard` job must match each other to be merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// `ReinforceConfig::to_json`: ml-dr's reinforce mapping, spelled out.
    pub config: Value,
    pub seed: u64,
    pub teachers: Vec<TeacherFile>,
    pub temperature: f64,
    pub num_classes: u32,
    /// Images in the listing and the SHA-256 of its (index, path, label) lines.
    pub images: u32,
    pub listing_sha256: String,
    pub images_per_shard: u32,
    /// The teacher's input size (w, h) the augmentation produces.
    pub input_size: [u32; 2],
    /// What computed the teachers' probabilities: the CPU executor (f32) or
    /// the GPU one (bf16, per architecture). Their records differ within
    /// bf16 parity, so a resume must not mix them.
    #[serde(default = "cpu_executor")]
    pub executor: String,
    /// How records hold the soft labels; `None` is top-k, the format of
    /// every manifest written before label modes (so theirs keep their bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// `--prob-format`: "u8log", or `None` for f16 (every manifest written
    /// before the option, which so keeps its bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prob_format: Option<String>,
    /// `--class-ids`: "packed", or `None` for whole bytes (u16 / u32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_ids: Option<String>,
    /// `--params derived`: records hold no parameters, readers regenerate
    /// them with this sampler version; `None` for stored parameters (every
    /// manifest written before the option, which so keeps its bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<ParamsSetting>,
}

/// `Settings::params` of a derived-parameter dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamsSetting {
    /// "derived".
    pub mode: String,
    /// `augment::params::PARAMS_SAMPLER_VERSION` of the dr that wrote it.
    pub sampler_version: u32,
}

impl ParamsSetting {
    /// The entry `dr reinforce` writes for `params` (none when stored).
    pub fn of(params: ParamsFormat) -> Option<ParamsSetting> {
        (params == ParamsFormat::Derived).then(|| ParamsSetting {
            mode: params.name().into(),
            sampler_version: PARAMS_SAMPLER_VERSION,
        })
    }
}

/// `Settings::labels` of a mode other than top-k (`crate::labels`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Labels {
    pub mode: String,
    /// The draw's version (`labels::sampled::SAMPLER_VERSION`): a reader
    /// refuses one it does not know rather than misread the records.
    pub sampler_version: u32,
    pub k: u32,
    /// The proposal's temperature t (q ∝ p^(1/t), weights stored), or none.
    pub proposal_t: Option<f64>,
}

impl Labels {
    /// The entry `dr reinforce` writes for `mode` at `k` (none for top-k).
    pub fn of(mode: LabelMode, k: u32) -> Option<Labels> {
        match mode {
            LabelMode::TopK => None,
            LabelMode::Sampled => Some(Labels {
                mode: mode.name().into(),
                sampler_version: SAMPLER_VERSION,
                k,
                proposal_t: None,
            }),
        }
    }
}

/// `Settings::prob_format` and `class_ids` for `coding`: absent for the defaults.
pub fn coding_names(coding: Coding) -> (Option<String>, Option<String>) {
    (
        (coding.probs != ProbFormat::default()).then(|| coding.probs.name().into()),
        (coding.ids != IdFormat::default()).then(|| coding.ids.name().into()),
    )
}

impl Settings {
    /// How the label fields are encoded, or why this dr cannot read them.
    pub fn coding(&self) -> Result<Coding, String> {
        let upgrade = "Fix: read it with the dr that wrote it (manifest `writer`) or a newer one";
        let probs = match &self.prob_format {
            None => ProbFormat::default(),
            Some(n) => ProbFormat::from_name(n).ok_or_else(|| {
                format!("prob_format {n:?} is not one this dr knows (f16, u8log). {upgrade}")
            })?,
        };
        let ids = match &self.class_ids {
            None => IdFormat::default(),
            Some(n) => IdFormat::from_name(n).ok_or_else(|| {
                format!("class_ids {n:?} is not one this dr knows (bytes, packed). {upgrade}")
            })?,
        };
        let params = match &self.params {
            None => ParamsFormat::Stored,
            Some(p) if p.mode != ParamsFormat::Derived.name() => {
                return Err(format!(
                    "params mode {:?} is not one this dr knows (stored, derived). {upgrade}",
                    p.mode
                ));
            }
            Some(p) if p.sampler_version != PARAMS_SAMPLER_VERSION => {
                return Err(format!(
                    "its augmentation parameters are derived from the seed by params sampler version {}, but this dr has params sampler version {PARAMS_SAMPLER_VERSION}, which draws other values: reading them would give other parameters than the teachers saw. Fix: read it with a dr of params sampler version {} (the manifest's `writer` is one), or rerun `dr reinforce --params stored` (or `--params derived` with this dr) into a new --out",
                    p.sampler_version, p.sampler_version
                ));
            }
            Some(_) => ParamsFormat::Derived,
        };
        Ok(Coding { probs, ids, params })
    }

    /// The label mode of these records, or why this dr cannot read them.
    pub fn label_mode(&self, topk: u32) -> Result<LabelMode, String> {
        let Some(l) = &self.labels else {
            return Ok(LabelMode::TopK);
        };
        let upgrade = "Fix: read it with the dr that wrote it (manifest `writer`) or a newer one";
        match LabelMode::from_name(&l.mode) {
            Some(LabelMode::Sampled) => {}
            _ => {
                return Err(format!(
                    "label mode {:?} is not one this dr knows (topk, sampled). {upgrade}",
                    l.mode
                ));
            }
        }
        if l.sampler_version != SAMPLER_VERSION {
            return Err(format!(
                "sampled labels of sampler version {}; this dr has version {SAMPLER_VERSION}. {upgrade}",
                l.sampler_version
            ));
        }
        if let Some(t) = l.proposal_t {
            return Err(format!(
                "sampled labels drawn from a proposal (proposal_t {t}, importance weights stored); this dr writes and reads only unweighted draws. {upgrade}"
            ));
        }
        if l.k != topk {
            return Err(format!("labels.k {} is not record.topk {topk}", l.k));
        }
        Ok(LabelMode::Sampled)
    }
}

/// `Settings::executor` of the CPU backend (and of manifests written before the field).
pub const CPU_EXECUTOR: &str = "cpu-f32";

fn cpu_executor() -> String {
    CPU_EXECUTOR.into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeacherFile {
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordInfo {
    /// Bytes per record.
    pub size: usize,
    /// numpy `dtype.descr`: `np.dtype([tuple(f) for f in dtype])`.
    pub dtype: Value,
    pub num_samples: u32,
    pub topk: u32,
    /// RandAugment's unsigned magnitude of each op index (a record stores
    /// only the op and the sign), for readers without dr's formula.
    #[serde(default)]
    pub rand_augment_magnitudes: Vec<f64>,
    /// Bits of each packed class id (`--class-ids packed`; absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_id_bits: Option<u32>,
}

impl RecordInfo {
    /// The record description of `layout` for `cfg` at the tensor size `out_wh`.
    pub fn new(
        layout: &super::layout::Layout,
        cfg: &crate::config::ReinforceConfig,
        out_wh: (usize, usize),
    ) -> Self {
        RecordInfo {
            size: layout.size,
            dtype: layout.numpy_descr(),
            num_samples: cfg.num_samples,
            topk: cfg.topk,
            rand_augment_magnitudes: cfg
                .augment
                .rand_augment
                .as_ref()
                .map_or_else(Vec::new, |ra| {
                    crate::augment::randaug::magnitude_table(ra, out_wh)
                }),
            class_id_bits: (layout.coding.ids == IdFormat::Packed).then_some(layout.id_bits),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BadImage {
    pub index: u32,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub index: u32,
    pub file: String,
    /// Work-order positions [start, end): `order.npy[start..end]` are its images.
    pub positions: [u32; 2],
    pub records: u64,
    pub bytes: u64,
    pub sha256: String,
    pub bad_images: Vec<BadImage>,
}

impl ShardInfo {
    /// The entry of shard `index` holding `bytes` (records of `record_size`).
    pub fn new(
        index: u32,
        positions: [u32; 2],
        bytes: &[u8],
        record_size: usize,
        bad_images: Vec<BadImage>,
    ) -> Self {
        use sha2::{Digest, Sha256};
        ShardInfo {
            index,
            file: shard_file(index),
            positions,
            records: (bytes.len() / record_size) as u64,
            bytes: bytes.len() as u64,
            sha256: format!("{:x}", Sha256::digest(bytes)),
            bad_images,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub index: u32,
    pub count: u32,
    /// Shard indices [first, end) this task writes.
    pub shards: [u32; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Some of this task's shards are not written yet.
    Running,
    /// Every shard of this task (of the whole job when `task` is null).
    Complete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// dr version and commit that wrote it.
    pub writer: String,
    /// Where the images were read from (absolute), for `dr preview --from`.
    pub source: String,
    /// `None` for `dr reinforce` output; what it was converted from
    /// otherwise (e.g. "ml-dr import": pairs were drawn by ml-dr's batches,
    /// not dr's mixing groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Class names by label (ImageFolder's sorted folders; a list's numbers).
    #[serde(default)]
    pub classes: Vec<String>,
    pub status: Status,
    pub settings: Settings,
    pub record: RecordInfo,
    /// Shards of the whole job (all tasks).
    pub shard_count: u32,
    /// `Some` for one task of a `--shard i/N` job, `None` when whole.
    pub task: Option<Task>,
    /// Complete shards, by index.
    pub shards: Vec<ShardInfo>,
}

impl Manifest {
    pub fn read(dir: &Path) -> anyhow::Result<Option<Manifest>> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => anyhow::bail!("{}: cannot read: {}", path.display(), crate::io_reason(&e)),
        };
        let m: Manifest = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: not a dr manifest ({e}). Fix: point --out at a new folder",
                path.display()
            )
        })?;
        if m.format != FORMAT || m.version != VERSION {
            anyhow::bail!(
                "{}: format {} version {} is not {FORMAT} version {VERSION}; this dr cannot continue it. Fix: use a new --out",
                path.display(),
                m.format,
                m.version
            );
        }
        m.check().map_err(|why| {
            anyhow::anyhow!(
                "{}: {why}; the file was damaged or edited. Fix: restore it, or rerun the `dr reinforce` command into a new --out",
                path.display()
            )
        })?;
        Ok(Some(m))
    }

    /// The structure every reader relies on: shards inside the listing, in
    /// their own files, not overlapping; bad images that exist.
    fn check(&self) -> Result<(), String> {
        let n = self.settings.images;
        let mut spans: Vec<[u32; 2]> = Vec::with_capacity(self.shards.len());
        for s in &self.shards {
            let [a, b] = s.positions;
            if a > b || b > n {
                return Err(format!(
                    "shard {} covers positions {a}..{b} of a listing of {n} images",
                    s.index
                ));
            }
            if s.index >= self.shard_count || s.file != shard_file(s.index) {
                return Err(format!(
                    "shard {} (file {}) is not one of the job's {} shards",
                    s.index, s.file, self.shard_count
                ));
            }
            if let Some(b) = s.bad_images.iter().find(|b| b.index >= n) {
                return Err(format!("bad image {} is past the {n} images", b.index));
            }
            spans.push([a, b]);
        }
        spans.sort_unstable();
        if spans.windows(2).any(|w| w[1][0] < w[0][1]) {
            return Err("two shards cover the same images".into());
        }
        Ok(())
    }

    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).expect("manifest serialises");
        super::atomic_write(&dir.join(FILE), text.as_bytes())
    }

    pub fn bad_images(&self) -> impl Iterator<Item = &BadImage> {
        self.shards.iter().flat_map(|s| &s.bad_images)
    }

    /// The bad images by image id (shards hold them in work order).
    pub fn bad_images_by_id(&self) -> Vec<&BadImage> {
        let mut bad: Vec<&BadImage> = self.bad_images().collect();
        bad.sort_by_key(|b| b.index);
        bad
    }

    /// The files of the complete shards.
    pub fn shard_files(&self) -> Vec<&str> {
        self.shards.iter().map(|s| s.file.as_str()).collect()
    }

    /// Shard indices [first, end) this dataset writes: its task's, or the
    /// whole job's.
    pub fn own_shards(&self) -> [u32; 2] {
        self.task
            .as_ref()
            .map_or([0, self.shard_count], |t| t.shards)
    }

    /// How many shards this dataset writes (`own_shards`' length).
    pub fn own_shard_count(&self) -> u32 {
        let [a, b] = self.own_shards();
        b - a
    }

    /// `OUT/bad-images.tsv` (index, path, reason) by image id, from the manifest.
    pub fn write_bad_images(
        &self,
        out: &Path,
        rows: &[super::images::ImageRow],
    ) -> anyhow::Result<()> {
        let mut s = String::from("index\tpath\treason\n");
        for b in self.bad_images_by_id() {
            let reason = b.reason.replace(['\t', '\n', '\r'], " ");
            s.push_str(&format!(
                "{}\t{}\t{reason}\n",
                b.index, rows[b.index as usize].path
            ));
        }
        super::atomic_write(&out.join("bad-images.tsv"), s.as_bytes()).map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot write bad-images.tsv: {}",
                out.display(),
                crate::io_reason(&e)
            )
        })
    }

    pub fn records(&self) -> u64 {
        self.shards.iter().map(|s| s.records).sum()
    }
}

/// Names of the top-level settings that differ, with both values, for
/// "this OUT was made with other settings" messages.
pub fn differences(a: &Settings, b: &Settings) -> Vec<String> {
    let (va, vb) = (
        serde_json::to_value(a).unwrap(),
        serde_json::to_value(b).unwrap(),
    );
    let mut out = Vec::new();
    diff("", &va, &vb, &mut out);
    out
}

fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff(&p, u, v, out),
                    (u, v) => out.push(format!("{p}: {} vs {}", show(u), show(v))),
                }
            }
        }
        _ if a != b => out.push(format!("{path}: {a} vs {b}")),
        _ => {}
    }
}

fn show(v: Option<&Value>) -> String {
    v.map_or("absent".into(), |v| v.to_string())
}

pub fn shard_file(index: u32) -> String {
    format!("shard-{index:05}.bin")
}
