//! `dr import --format ml-dr`: ml-dr's released metadata (config.pth.tar and
//! one `{id}.pth.tar` per image, as its `reinforce.py` writes them: pickle
//! protocol 4, numpy scalars in CutMix boxes; a folder of them or the
//! release's tar bundle, streamed) converted into a dr dataset,
//! so `dr verify`, `dr show`, `dr preview --from` and python/dr_reader work
//! on Apple's ImageNet+ release.
//!
//! What cannot be kept: ml-dr stores no pair record unless a mixing
//! happened and not which of the pair's samples lent its crop (flags
//! PAIR_ABSENT / PAIR_SAMPLE_UNKNOWN); its pairs come from its batches, not
//! dr's mixing groups (manifest `origin`). Probabilities become f16 and are
//! sorted (ml-dr's argpartition order is not). Every record is encoded,
//! decoded and compared with the original before it is accepted.

use std::path::Path;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use serde_json::{Value as Json, json};
use serde_pickle::{HashableValue, Value};

use super::torch_file;
use crate::augment::params::stage_sizes;
use crate::augment::record::{compress, decompress};
use crate::config::ReinforceConfig;
use crate::dataset::listing::Listing;
use crate::store::images;
use crate::store::layout::{Layout, Record};
use crate::store::manifest::{
    self, BadImage, Manifest, RecordInfo, Settings, ShardInfo, Status, shard_file,
};

/// Images per shard of an imported dataset.
const IMAGES_PER_SHARD: u32 = 512;

pub struct Imported {
    pub images: usize,
    pub missing: usize,
}

fn hashable_json(k: &HashableValue) -> Result<String> {
    match k {
        HashableValue::String(s) => Ok(s.clone()),
        HashableValue::I64(i) => Ok(i.to_string()),
        other => bail!("a dict key {other:?} that is not a string"),
    }
}

/// Python objects as JSON. A numpy scalar (unpickled as the tuple of its
/// constructor's arguments: dtype state, raw bytes) becomes the number its
/// 8 little-endian bytes hold: int64, the only kind ml-dr's records carry.
pub fn to_json(v: &Value) -> Result<Json> {
    Ok(match v {
        Value::None => Json::Null,
        Value::Bool(b) => json!(b),
        Value::I64(i) => json!(i),
        Value::F64(f) => json!(f),
        Value::String(s) => json!(s),
        Value::Int(i) => bail!("integer {i} out of range"),
        Value::Tuple(items) if numpy_scalar(items).is_some() => json!(numpy_scalar(items).unwrap()),
        Value::List(items) | Value::Tuple(items) => {
            Json::Array(items.iter().map(to_json).collect::<Result<_>>()?)
        }
        Value::Dict(m) => Json::Object(
            m.iter()
                .map(|(k, v)| Ok((hashable_json(k)?, to_json(v)?)))
                .collect::<Result<_>>()?,
        ),
        other => bail!("unexpected Python object {other:?}"),
    })
}

fn numpy_scalar(items: &[Value]) -> Option<i64> {
    match items {
        [Value::Tuple(_), Value::Bytes(b)] if b.len() == 8 => {
            Some(i64::from_le_bytes(b.as_slice().try_into().ok()?))
        }
        _ => None,
    }
}

fn read_value(bytes: &[u8], name: &str) -> Result<Value> {
    torch_file::unpickle(&torch_file::data_pkl(bytes, name)?, name)
}

/// The reinforce config inside ml-dr's `config.pth.tar` (and its class count).
fn read_config(bytes: &[u8], name: &str) -> Result<(ReinforceConfig, Option<u32>, Json)> {
    let v = to_json(&read_value(bytes, name)?).with_context(|| name.to_owned())?;
    let r = v
        .get("reinforce")
        .with_context(|| format!("{name}: no `reinforce` mapping"))?;
    let text = json!({ "reinforce": r }).to_string();
    let cfg = ReinforceConfig::parse(&text, name, true)?;
    let classes = v
        .get("num_classes")
        .and_then(Json::as_u64)
        .map(|c| c as u32);
    Ok((cfg, classes, v))
}

/// What `dr import` stores for image `id` of a release, from the bytes of
/// the release's `config.pth.tar` and of its `{id}.pth.tar`: for checking
/// one file at a time (and for fuzzing the reader).
pub fn read_release_image(config: &[u8], image: &[u8], id: u32) -> Result<Vec<u8>> {
    let (cfg, classes, _) = read_config(config, "config.pth.tar")?;
    let classes = classes.context("config.pth.tar has no num_classes; dr needs the class count")?;
    let layout = Layout::new(
        &cfg.augment,
        cfg.topk as usize,
        classes as usize,
        stage_sizes(&cfg.augment, 1, 1).output,
    );
    parse_image(image, &format!("{id}.pth.tar"), id, &cfg, &layout)
}

/// One image's records from the bytes of its `{id}.pth.tar`, encoded.
fn parse_image(
    bytes: &[u8],
    name: &str,
    id: u32,
    cfg: &ReinforceConfig,
    layout: &Layout,
) -> Result<Vec<u8>> {
    let v = to_json(&read_value(bytes, name)?).with_context(|| name.to_owned())?;
    let (Some(file_id), Some(samples)) = (
        v.get(0).and_then(Json::as_u64),
        v.get(1).and_then(Json::as_array),
    ) else {
        bail!("{name}: expected (id, [samples])");
    };
    if file_id != id as u64 || samples.len() != cfg.num_samples as usize {
        bail!(
            "{name}: holds id {file_id} with {} samples; expected id {id} with {}",
            samples.len(),
            cfg.num_samples
        );
    }
    let k = cfg.topk as usize;
    samples
        .iter()
        .enumerate()
        .map(|(s, sample)| {
            let at = || format!("{name}: sample {s}");
            let p = decompress(&cfg.augment, &sample["params"]).with_context(at)?;
            let (vals, ids) = (&sample["prob"][0], &sample["prob"][1]);
            let pairs: Option<Vec<(f32, u32)>> =
                vals.as_array().zip(ids.as_array()).map(|(v, i)| {
                    v.iter()
                        .zip(i)
                        .filter_map(|(v, i)| Some((v.as_f64()? as f32, i.as_u64()? as u32)))
                        .collect()
                });
            let Some(mut pairs) = pairs.filter(|p| p.len() == k) else {
                bail!("{}: `prob` is not ([{k} values], [{k} class ids])", at());
            };
            pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let rec = Record {
                params: Some(p),
                probs: pairs.iter().map(|p| p.0).collect(),
                classes: pairs.iter().map(|p| p.1).collect(),
                draws: Vec::new(),
            };
            // Representable exactly? (RandAugment magnitudes are rebuilt
            // from the config; boxes must fit u16.)
            let mut buf = vec![0u8; layout.size];
            layout.encode(&rec, &mut buf);
            let back = layout.decode(&buf);
            // Compared in what storage keeps (CutMix's lam as f32).
            let want = compress(
                &cfg.augment,
                &layout.stored_form(rec.params.as_ref().unwrap()),
            );
            let got = compress(&cfg.augment, back.params.as_ref().unwrap());
            if want != got {
                bail!(
                    "{}: the record {want} does not survive dr's layout (read back as {got})",
                    at()
                );
            }
            Ok(buf)
        })
        .collect::<Result<Vec<_>>>()
        .map(|recs| recs.concat())
}

/// Where the release is: a folder of files or a (gzipped) tar bundle.
enum Source<'a> {
    Folder(&'a Path),
    Bundle(&'a Path),
}

/// Encoded records of every image of a bundle, in a scratch file beside the
/// output (the archive's order is not the ids'; a release can exceed memory).
struct Spool {
    file: std::fs::File,
    path: std::path::PathBuf,
    present: Vec<bool>,
    per_image: usize,
}

impl Spool {
    fn fill(
        bundle: &Path,
        out: &Path,
        n: u32,
        cfg: &ReinforceConfig,
        layout: &Layout,
    ) -> Result<Spool> {
        use std::os::unix::fs::FileExt;
        let per_image = cfg.num_samples as usize * layout.size;
        let path = out.join(".ml-dr-records.tmp");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        file.set_len(n as u64 * per_image as u64)?;
        let mut present = vec![false; n as usize];
        let mut batch: Vec<(u32, String, Vec<u8>)> = Vec::new();
        let flush =
            |batch: &mut Vec<(u32, String, Vec<u8>)>, present: &mut Vec<bool>| -> Result<()> {
                let encoded: Vec<(u32, Vec<u8>)> = batch
                    .par_iter()
                    .map(|(id, name, bytes)| Ok((*id, parse_image(bytes, name, *id, cfg, layout)?)))
                    .collect::<Result<_>>()?;
                for (id, b) in encoded {
                    file.write_all_at(&b, id as u64 * per_image as u64)?;
                    present[id as usize] = true;
                }
                batch.clear();
                Ok(())
            };
        super::bundle::read(
            bundle,
            |_, _| Ok(()),
            |id, name, bytes| {
                if id >= n {
                    bail!(
                        "{name}: image {id}, but the listing has {n} images. Fix: --data must be the dataset the release was made from"
                    );
                }
                batch.push((id, name, bytes));
                if batch.len() >= 256 {
                    flush(&mut batch, &mut present)?;
                }
                Ok(())
            },
        )?;
        flush(&mut batch, &mut present)?;
        Ok(Spool {
            file,
            path,
            present,
            per_image,
        })
    }

    fn get(&self, id: u32) -> Result<Option<Vec<u8>>> {
        use std::os::unix::fs::FileExt;
        if !self.present[id as usize] {
            return Ok(None);
        }
        let mut b = vec![0u8; self.per_image];
        self.file
            .read_exact_at(&mut b, id as u64 * self.per_image as u64)?;
        Ok(Some(b))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn source_dir<'a>(s: &Source<'a>) -> Option<&'a Path> {
    match s {
        Source::Folder(d) => Some(d),
        Source::Bundle(_) => None,
    }
}

pub fn import(dir: &Path, listing: &Listing, out: &Path) -> Result<Imported> {
    let source = if super::bundle::is_bundle(dir) {
        Source::Bundle(dir)
    } else {
        Source::Folder(dir)
    };
    let (cfg, classes, raw_config) = match source {
        Source::Folder(d) => {
            let path = d.join("config.pth.tar");
            let bytes =
                std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            read_config(&bytes, &path.display().to_string())?
        }
        Source::Bundle(b) => {
            let (name, bytes) = super::bundle::config(b)?;
            read_config(&bytes, &name)?
        }
    };
    let n = listing.entries.len() as u32;
    let out_wh = stage_sizes(&cfg.augment, 1, 1).output;
    let num_classes = match classes {
        Some(c) => c,
        None => bail!(
            "{}/config.pth.tar has no num_classes; dr needs the class count",
            dir.display()
        ),
    };
    let layout = Layout::new(
        &cfg.augment,
        cfg.topk as usize,
        num_classes as usize,
        out_wh,
    );
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    if Manifest::read(out)?.is_some() {
        bail!(
            "{} already holds a dataset. Fix: import into a new folder",
            out.display()
        );
    }
    let beyond = match source {
        Source::Bundle(_) => None, // checked while reading
        Source::Folder(d) => std::fs::read_dir(d)
            .with_context(|| format!("{}: cannot list", d.display()))?
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(".pth.tar")?
                    .parse::<u32>()
                    .ok()
            })
            .filter(|&id| id >= n)
            .max(),
    };
    if let Some(id) = beyond {
        bail!(
            "{} holds records up to image {id}, but the listing has {n} images. Fix: --data must be the dataset the release was made from",
            dir.display()
        );
    }
    let rows = images::rows(listing)?;
    images::write(&out.join("images.tsv"), &rows, false)?;
    let order: Vec<u32> = (0..n).collect();
    crate::npy::write(&out.join("order.npy"), &[order.len()], &order)?;
    let ns = cfg.num_samples as usize;
    let spool = match source {
        Source::Bundle(b) => Some(Spool::fill(b, out, n, &cfg, &layout)?),
        Source::Folder(_) => None,
    };
    let encoded = |id: u32| -> Result<Option<Vec<u8>>> {
        match (&spool, source_dir(&source)) {
            (Some(sp), _) => sp.get(id),
            (None, Some(d)) => {
                let path = d.join(format!("{id}.pth.tar"));
                if !path.exists() {
                    return Ok(None);
                }
                let name = path.display().to_string();
                let bytes = std::fs::read(&path).with_context(|| format!("{name}: cannot read"))?;
                parse_image(&bytes, &name, id, &cfg, &layout).map(Some)
            }
            (None, None) => unreachable!("a bundle has a spool"),
        }
    };
    let mut invalid = vec![0u8; layout.size];
    layout.encode(
        &Record {
            params: None,
            probs: vec![0.0; layout.topk],
            classes: vec![0; layout.topk],
            draws: Vec::new(),
        },
        &mut invalid,
    );
    let mut shards = Vec::new();
    let mut missing = 0;
    for s in 0..n.div_ceil(IMAGES_PER_SHARD) {
        let (a, b) = (s * IMAGES_PER_SHARD, ((s + 1) * IMAGES_PER_SHARD).min(n));
        let recs: Vec<Option<Vec<u8>>> =
            (a..b).into_par_iter().map(encoded).collect::<Result<_>>()?;
        let mut bytes = Vec::with_capacity((b - a) as usize * ns * layout.size);
        let mut bad = Vec::new();
        for (k, r) in recs.into_iter().enumerate() {
            let id = a + k as u32;
            match r {
                Some(r) => bytes.extend_from_slice(&r),
                None => {
                    bad.push(BadImage {
                        index: id,
                        reason: format!("no {id}.pth.tar in the ml-dr release"),
                    });
                    for _ in 0..ns {
                        bytes.extend_from_slice(&invalid);
                    }
                }
            }
        }
        missing += bad.len();
        crate::store::atomic_write(&out.join(shard_file(s)), &bytes)?;
        shards.push(ShardInfo::new(s, [a, b], &bytes, layout.size, bad));
    }
    let m = Manifest {
        format: manifest::FORMAT.into(),
        version: manifest::VERSION,
        writer: crate::build_info::short_version(),
        status: Status::Complete,
        source: std::path::absolute(&listing.root)
            .unwrap_or_else(|_| listing.root.clone())
            .display()
            .to_string(),
        origin: Some(format!("ml-dr import of {}", dir.display())),
        classes: listing.classes.clone(),
        settings: Settings {
            config: cfg.to_json(),
            seed: 0,
            teachers: Vec::new(),
            temperature: 1.0,
            num_classes,
            images: n,
            listing_sha256: listing.digest(),
            images_per_shard: IMAGES_PER_SHARD,
            input_size: [out_wh.0 as u32, out_wh.1 as u32],
            executor: "imported from ml-dr (PyTorch teachers)".into(),
            labels: None,
            prob_format: None,
            class_ids: None,
            params: None,
        },
        record: RecordInfo::new(&layout, &cfg, out_wh),
        shard_count: shards.len() as u32,
        task: None,
        shards,
    };
    m.write_bad_images(out, &rows)?;
    m.write(out)?;
    std::fs::write(
        out.join("ml-dr-config.json"),
        serde_json::to_string_pretty(&raw_config)?,
    )?;
    Ok(Imported {
        images: n as usize,
        missing,
    })
}
