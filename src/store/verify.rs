//! `dr verify OUT`: every shard's size and SHA-256 against the manifest, and
//! every record's invariants: flags only of configured transforms, boxes
//! inside the tensor, op indices valid, pairs from the image's own mixing
//! group with the crop of the pair's own sample, top-k sorted, in range and
//! summing to at most 1 (sampled: draws ascending and in range; packed
//! class ids below the class count with the bits after them zero), invalid
//! records all zero and listed as bad. `--params derived`: records hold
//! flags alone (INVALID or 0), usable images and only they have a decoded
//! size in images.tsv, and the regenerated parameters pass the same checks.

use std::collections::HashSet;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::layout::Record;
use super::manifest::ShardInfo;
use super::reader::Reinforced;
use crate::augment::params::{CropRecord, MixingGroups, SampleParams};
use crate::augment::randaug::OP_NAMES;
use crate::labels::{LabelMode, ProbFormat, u8log};

/// What was checked and every problem found (file or image, sample, what).
#[derive(Debug, Default)]
pub struct Report {
    pub shards: usize,
    pub records: u64,
    pub problems: Vec<String>,
}

pub fn verify(d: &Reinforced) -> Report {
    let m = &d.manifest;
    let groups = MixingGroups::new(m.settings.seed, m.settings.images, d.config.mixing_group);
    let bad: HashSet<u32> = m.bad_images().map(|b| b.index).collect();
    // One read of each shard serves its hash and all its records (pairs
    // come from the image's mixing group, so from the same shard).
    let mut problems: Vec<String> = m
        .shards
        .par_iter()
        .flat_map_iter(|s| check_shard(d, s, &groups, &bad))
        .collect();
    if let Ok(text) = std::fs::read_to_string(d.dir.join("bad-images.tsv")) {
        let listed = text.lines().skip(1).count();
        if listed != bad.len() {
            problems.push(format!(
                "bad-images.tsv lists {listed} images; the manifest {}",
                bad.len()
            ));
        }
    }
    Report {
        shards: m.shards.len(),
        records: m.records(),
        problems,
    }
}

fn check_shard(
    d: &Reinforced,
    s: &ShardInfo,
    groups: &MixingGroups,
    bad: &HashSet<u32>,
) -> Vec<String> {
    let mut p = Vec::new();
    let images = (s.positions[1] - s.positions[0]) as u64;
    if s.records != images * d.num_samples() as u64 || s.bytes != s.records * d.layout.size as u64 {
        p.push(format!(
            "{}: {} records for {images} images of {} samples",
            s.file,
            s.records,
            d.num_samples()
        ));
    }
    let bytes = match std::fs::read(d.dir.join(&s.file)) {
        Ok(b) => b,
        Err(e) => {
            p.push(format!("{}: cannot read: {}", s.file, crate::io_reason(&e)));
            return p;
        }
    };
    let sha = format!("{:x}", Sha256::digest(&bytes));
    if bytes.len() as u64 != s.bytes || sha != s.sha256 {
        p.push(format!(
            "{}: {} bytes, SHA-256 {sha}; the manifest says {} bytes, {}",
            s.file,
            bytes.len(),
            s.bytes,
            s.sha256
        ));
    }
    let per_image = d.num_samples() * d.layout.size;
    let image_bytes = |pos: u32| {
        let o = (pos - s.positions[0]) as usize * per_image;
        bytes.get(o..o + per_image)
    };
    // The crop of (image, sample), from this shard when it holds the image.
    let crop_of = |id: u32, sample: u32| -> Result<Option<CropRecord>, String> {
        let pos = d.position[id as usize];
        let r = if (s.positions[0]..s.positions[1]).contains(&pos) {
            image_bytes(pos)
                .and_then(|b| b.chunks(d.layout.size).nth(sample as usize))
                .map(|r| d.decode(id, sample, r))
                .transpose()
                .map_err(|e| format!("{e:#}"))?
        } else {
            d.records(id)
                .map_err(|e| format!("{e:#}"))?
                .into_iter()
                .nth(sample as usize)
        };
        Ok(r.and_then(|r| r.params).map(|p| p.crop))
    };
    for pos in s.positions[0]..s.positions[1] {
        let id = d.order[pos as usize];
        let Some(raw) = image_bytes(pos) else {
            p.push(format!(
                "image {id}: {} is shorter than the manifest says",
                s.file
            ));
            continue;
        };
        if d.derived.is_some() && bad.contains(&id) == d.rows[id as usize].size.is_some() {
            p.push(format!(
                "image {id}: images.tsv {} a decoded size, but the image is {}listed as bad (derived parameters draw from the sizes of the usable images)",
                if bad.contains(&id) { "has" } else { "lacks" },
                if bad.contains(&id) { "" } else { "not " }
            ));
        }
        for (j, b) in raw.chunks(d.layout.size).enumerate() {
            let extra = d.layout.flags(b) & !d.layout.allowed_flags();
            if extra != 0 {
                p.push(format!(
                    "image {id} sample {j}: flags {extra:#x} of transforms not configured"
                ));
            }
            if !d.layout.id_padding_is_zero(b) {
                p.push(format!(
                    "image {id} sample {j}: bits after the {} packed class ids are set",
                    d.layout.topk
                ));
            }
            let r = match d.decode(id, j as u32, b) {
                Ok(r) => r,
                Err(e) => {
                    p.push(format!("image {id} sample {j}: {e:#}"));
                    continue;
                }
            };
            for why in check_record(d, groups, bad, id, &r, &crop_of) {
                p.push(format!("image {id} sample {j}: {why}"));
            }
        }
    }
    p
}

fn check_record(
    d: &Reinforced,
    groups: &MixingGroups,
    bad: &HashSet<u32>,
    id: u32,
    r: &Record,
    crop_of: &dyn Fn(u32, u32) -> Result<Option<CropRecord>, String>,
) -> Vec<String> {
    let mut p = Vec::new();
    let classes = d.manifest.settings.num_classes;
    let Some(params) = &r.params else {
        if !bad.contains(&id) {
            p.push("flagged invalid but not listed as a bad image".into());
        }
        if r.probs.iter().any(|&v| v != 0.0) || r.draws.iter().any(|&c| c != 0) {
            p.push("an invalid record holds a label".into());
        }
        return p;
    };
    if bad.contains(&id) {
        p.push("listed as a bad image but holds a valid record".into());
    }
    if d.layout.labels == LabelMode::Sampled {
        // The multiset of k draws: ascending (repeats kept), each a class.
        // (No weights: readers refuse the proposal mode that stores them.)
        if r.draws.windows(2).any(|w| w[0] > w[1]) || r.draws.iter().any(|&c| c >= classes) {
            p.push(format!(
                "draws {:?} are not ascending class ids below {classes}",
                r.draws
            ));
        }
    } else {
        p.extend(check_topk(r, classes, d.layout.coding.probs));
    }
    p.extend(check_params(d, groups, bad, id, params, crop_of));
    p
}

/// Top-k: sorted, in [0, 1], summing to at most 1, distinct in-range ids.
/// u8log rounds each value up by at most its bound, so the sum may pass 1
/// by that much.
fn check_topk(r: &Record, classes: u32, probs: ProbFormat) -> Vec<String> {
    let mut p = Vec::new();
    let sum: f32 = r.probs.iter().sum();
    let over = match probs {
        ProbFormat::F16 => 1e-2,
        ProbFormat::U8Log => 1e-2 + u8log::MAX_REL_ERROR as f32,
    };
    if r.probs.iter().any(|v| !(0.0..=1.0).contains(v)) || sum > 1.0 + over {
        p.push(format!(
            "probabilities {:?} are not a top-k of a distribution",
            r.probs
        ));
    }
    if r.probs.windows(2).any(|w| w[0] < w[1]) {
        p.push(format!("probabilities {:?} are not sorted", r.probs));
    }
    let k = r.classes.len().min(classes as usize);
    let distinct: HashSet<u32> = r.classes[..k].iter().copied().collect();
    if r.classes.iter().any(|&c| c >= classes) || distinct.len() != k {
        p.push(format!(
            "class ids {:?} are out of range or repeated",
            r.classes
        ));
    }
    p
}

fn check_params(
    d: &Reinforced,
    groups: &MixingGroups,
    bad: &HashSet<u32>,
    id: u32,
    params: &SampleParams,
    crop_of: &dyn Fn(u32, u32) -> Result<Option<CropRecord>, String>,
) -> Vec<String> {
    let mut p = Vec::new();
    let (w, h) = {
        let [w, h] = d.manifest.settings.input_size;
        (w as i64, h as i64)
    };
    let sides = std::iter::once(&params.side).chain(params.pair.as_ref().map(|q| &q.side));
    for side in sides {
        if let Some(Some(ops)) = &side.rand_augment
            && ops.iter().any(|&(op, _)| op as usize >= OP_NAMES.len())
        {
            p.push(format!("RandAugment op index out of range in {ops:?}"));
        }
        if let Some(Some([i, j, eh, ew])) = side.erase
            && (i + eh > h || j + ew > w)
        {
            p.push(format!(
                "erase box {:?} leaves the {w}x{h} tensor",
                [i, j, eh, ew]
            ));
        }
    }
    if let Some(Some((_, b))) = params.cutmix
        && (b[0] > b[2] || b[1] > b[3] || b[2] > h || b[3] > w)
    {
        p.push(format!("cutmix box {b:?} leaves the {w}x{h} tensor"));
    }
    if let Some(Some(lam)) = params.mixup
        && !(0.0..=1.0).contains(&lam)
    {
        p.push(format!("mixup lam {lam} is not in [0, 1]"));
    }
    if let Some(q) = &params.pair {
        if d.manifest.origin.is_none() && !groups.group_of(id).contains(&q.id2) {
            p.push(format!("pair {} is not in the image's mixing group", q.id2));
        } else if bad.contains(&q.id2) {
            p.push(format!("pair {} is a bad image", q.id2));
        } else if let Some(s2) = q.sample2 {
            match crop_of(q.id2, s2) {
                Ok(Some(c)) if c == q.crop => {}
                Ok(_) => p.push(format!(
                    "the pair's crop is not that of image {} sample {s2}",
                    q.id2
                )),
                Err(e) => p.push(format!("pair {}: {e}", q.id2)),
            }
        }
    }
    p
}
