//! `dr export --format ml-dr`: what ml-dr's `reinforce.py` writes and its
//! `dr/data.py` reads — `config.pth.tar` and one `{id}.pth.tar` per image
//! holding `(id, [{"params": <compressed>, "prob": ([values], [ids])}] * NS)`
//! (FACTS.md §7) — as plain Python objects in protocol 2, so current
//! PyTorch's default `torch.load(weights_only=True)` opens them.
//!
//! Tuples where ml-dr has tuples: a record that is a list of 2 or 4 numbers
//! (crop boxes, erase boxes, RandAugment `(op, magnitude)`) is a tuple;
//! CutMix's `[lam, x1, y1, x2, y2]`, pair entries and the record are lists.
//! Probabilities are the stored f16 values (ml-dr keeps float32), largest
//! first (ml-dr's argpartition order is unsorted; its loader does not care);
//! u8log values are decoded, and divided by their sum when it passes 1
//! (`u8log_prob`).
//! Sampled labels go as their distinct ids with count/k, which ml-dr's
//! default `densify(..., "smooth")` returns as they are (`sampled_prob`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde_json::Value as Json;
use serde_pickle::{HashableValue, Value};

use super::torch_file;
use crate::augment::record::compress;
use crate::labels::sampled::{fit_under_one, ml_dr_values};
use crate::labels::{LabelMode, ProbFormat};
use crate::store::manifest::Manifest;
use crate::store::reader::Reinforced;

pub struct Exported {
    pub files: usize,
    /// Bad images: no file is written for them (ml-dr has no invalid record).
    pub skipped: Vec<u32>,
}

fn key(s: &str) -> HashableValue {
    HashableValue::String(s.to_owned())
}

fn dict(items: Vec<(&str, Value)>) -> Value {
    Value::Dict(
        items
            .into_iter()
            .map(|(k, v)| (key(k), v))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// JSON (our compressed record, or the config) as Python objects.
pub fn to_pickle(v: &Json, tuples: bool) -> Value {
    match v {
        Json::Null => Value::None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::I64(i),
            None => Value::F64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => {
            let items: Vec<Value> = a.iter().map(|x| to_pickle(x, tuples)).collect();
            let numbers = a.iter().all(Json::is_number);
            if tuples && numbers && (a.len() == 2 || a.len() == 4) {
                Value::Tuple(items)
            } else {
                Value::List(items)
            }
        }
        Json::Object(m) => Value::Dict(
            m.iter()
                .map(|(k, x)| (key(k), to_pickle(x, tuples)))
                .collect(),
        ),
    }
}

/// ml-dr's `config.pth.tar`: the `parameters` mapping of its YAML.
fn config_value(d: &Reinforced) -> Value {
    let mut reinforce = d.config.to_json();
    // ml-dr builds each transform as `Class(**options)`: torchvision wants
    // an InterpolationMode there, not our string, and ml-dr's defaults are ours.
    if let Some(aug) = reinforce["image_augmentation"].as_object_mut() {
        for t in aug.values_mut() {
            if let Some(o) = t.as_object_mut() {
                o.remove("interpolation");
            }
        }
    }
    reinforce["compress"] = Json::Bool(true);
    reinforce["num_candidates"] = Json::Null;
    dict(vec![
        ("reinforce", to_pickle(&reinforce, false)),
        (
            "num_classes",
            Value::I64(d.manifest.settings.num_classes as i64),
        ),
        ("distributed", Value::Bool(false)),
        ("seed", Value::I64(d.manifest.settings.seed as i64)),
    ])
}

/// One image's `(id, samples)`, or `None` for a bad image.
pub fn image_value(d: &Reinforced, id: u32) -> Result<Option<Value>> {
    let mut samples = Vec::new();
    for r in d.records(id)? {
        let Some(p) = &r.params else {
            return Ok(None);
        };
        let params = to_pickle(&compress(&d.config.augment, p), true);
        let (values, ids) = match d.layout.labels {
            LabelMode::TopK if d.layout.coding.probs == ProbFormat::U8Log => {
                (u8log_prob(&r.probs), r.classes.clone())
            }
            LabelMode::TopK => (r.probs.clone(), r.classes.clone()),
            LabelMode::Sampled => sampled_prob(&r.draws),
        };
        let prob = Value::Tuple(vec![
            Value::List(values.iter().map(|&v| Value::F64(v as f64)).collect()),
            Value::List(ids.iter().map(|&c| Value::I64(c as i64)).collect()),
        ]);
        samples.push(dict(vec![("params", params), ("prob", prob)]));
    }
    Ok(Some(Value::Tuple(vec![
        Value::I64(id as i64),
        Value::List(samples),
    ])))
}

/// Decoded u8log values as ml-dr's `densify` keeps them: each is within
/// 2.183% of p, so their sum can pass 1 (a top-1 of 0.98 rounds to 1.0),
/// and densify would then take the softmax of the values. Such values are
/// divided by their exact sum, rounded toward zero in f32: each then within
/// 2e / (1 + e) = 4.3% of p. Either way the largest is lowered by n 2^-24
/// when the sum is that close to 1, so that no f32 summation order passes 1
/// (`labels::sampled::fit_under_one`).
fn u8log_prob(v: &[f32]) -> Vec<f32> {
    let sum: f64 = v.iter().map(|&x| x as f64).sum();
    let mut out: Vec<f32> = if sum <= 1.0 {
        v.to_vec()
    } else {
        v.iter()
            .map(|&x| {
                let share = x as f64 / sum;
                let f = share as f32;
                if f as f64 > share { f.next_down() } else { f }
            })
            .collect()
    };
    fit_under_one(&mut out);
    out
}

/// Sampled draws as ml-dr's sparse `([values], [ids])`: each distinct id
/// once, with count/k as `labels::sampled::ml_dr_values` rounds it.
fn sampled_prob(draws: &[u32]) -> (Vec<f32>, Vec<u32>) {
    let (mut ids, mut counts) = (Vec::new(), Vec::<u16>::new());
    for &c in draws {
        if ids.last() == Some(&c) {
            *counts.last_mut().unwrap() += 1;
        } else {
            ids.push(c);
            counts.push(1);
        }
    }
    (ml_dr_values(&counts), ids)
}

/// Refuses labels ml-dr cannot read unbiased: importance-weighted draws
/// (their values do not sum to 1, and `densify` either spreads 1 - sum over
/// the other classes or takes a softmax). `manifest` is OUT/manifest.json.
pub fn refuse_weighted(m: &Manifest, manifest: &Path) -> Result<()> {
    if let Some(t) = m.settings.labels.as_ref().and_then(|l| l.proposal_t) {
        anyhow::bail!(
            "{}: sampled labels with importance weights (proposal_t {t}) cannot be exported for ml-dr: its densify returns neither smooth nor zeros targets unbiased from weighted values. Fix: draw without a proposal (dr reinforce --label-mode sampled) for ml-dr, or read the weighted labels with dr_reader",
            manifest.display()
        );
    }
    Ok(())
}

pub fn export(d: &Reinforced, to: &Path) -> Result<Exported> {
    std::fs::create_dir_all(to).with_context(|| format!("{}: cannot create", to.display()))?;
    let write = |name: &str, v: &Value| -> Result<()> {
        let prefix = name.rsplit_once('.').map_or(name, |(p, _)| p);
        let bytes = torch_file::to_bytes(prefix, v)?;
        let path = to.join(name);
        let tmp = to.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    };
    write("config.pth.tar", &config_value(d))?;
    let ids: Vec<u32> = d
        .manifest
        .shards
        .iter()
        .flat_map(|s| d.order[s.positions[0] as usize..s.positions[1] as usize].to_vec())
        .collect();
    let skipped: Vec<u32> = ids
        .par_iter()
        .map(|&id| -> Result<Option<u32>> {
            match image_value(d, id)? {
                Some(v) => write(&format!("{id}.pth.tar"), &v).map(|_| None),
                None => Ok(Some(id)),
            }
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    Ok(Exported {
        files: ids.len() - skipped.len(),
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::u8log_prob;
    use crate::labels::u8log::{decode, encode};

    #[test]
    fn u8log_values_reach_ml_dr_summing_to_at_most_one() {
        // A top-1 of 0.98 decodes to 1.0: the sum passes 1.
        let p = [0.98f32, 0.012, 0.004, 0.002, 0.001];
        let v: Vec<f32> = p.iter().map(|&x| decode(encode(x))).collect();
        assert_eq!(v[0], 1.0);
        let out = u8log_prob(&v);
        let sum: f64 = v.iter().map(|&x| x as f64).sum();
        for order in [out.clone(), out.iter().rev().copied().collect()] {
            let s = order.iter().fold(0f32, |a, &b| a + b);
            assert!(s <= 1.0, "{order:?} sums to {s}");
        }
        for ((&o, &x), &p) in out.iter().zip(&v).zip(&p) {
            // Divided by the sum (to 1e-6), and within 4.3% of p.
            assert!((o as f64 - x as f64 / sum).abs() <= 1e-6, "{o} {x}");
            assert!(((o - p) / p).abs() <= 0.043, "{o} {p}");
        }
        // Values well under 1 stay as decoded.
        let small = [decode(200), decode(150), decode(3)];
        assert_eq!(u8log_prob(&small), small);
    }
}
