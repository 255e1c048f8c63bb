//! ml-dr's parameter records: `Compose.compress`'s list form (what ml-dr
//! stores per sample and replays with `Compose.decompress`/`reapply`) and the
//! uncompressed dict form, as JSON values (lists stand for tuples).
//!
//! Compressed: `[id2 or null]` when mixup/cutmix is configured, then one
//! entry per configured transform outside {uint8, center_crop, to_tensor,
//! normalize}, in pipeline order. Without a pair each entry is the image's
//! record; with one (a mixing was drawn) each non-mixing entry is
//! `[record, pair_record]`. Records: resize `[size...]`, random_crop
//! `[top, left]`, random_resized_crop `[i, j, h, w]`, flip bool,
//! rand_augment `[[op_index, signed_magnitude], ...]` or null, random_erase
//! `[x, y, h, w]` or null, mixup lam or null, cutmix `[lam, x1, y1, x2, y2]`
//! or null (FACTS.md §7).

use serde_json::{Value, json};

use super::params::{CropRecord, PairParams, SampleParams, SideParams};
use super::randaug::OP_NAMES;
use crate::config::{Augmentation, ResizeSize};

/// The configured transforms that carry a record, in pipeline order.
fn with_params(aug: &Augmentation) -> Vec<&'static str> {
    let mut v = Vec::new();
    let mut push = |on: bool, name| {
        if on {
            v.push(name);
        }
    };
    push(aug.resize.is_some(), "resize");
    push(aug.random_crop.is_some(), "random_crop");
    push(aug.random_resized_crop.is_some(), "random_resized_crop");
    push(
        aug.random_horizontal_flip.is_some(),
        "random_horizontal_flip",
    );
    push(aug.rand_augment.is_some(), "rand_augment");
    push(aug.random_erase.is_some(), "random_erase");
    push(aug.mixup.is_some(), "mixup");
    push(aug.cutmix.is_some(), "cutmix");
    v
}

fn resize_record(aug: &Augmentation) -> Value {
    // ml-dr's Resize records its `size`; as a list, since an int size makes
    // ml-dr's own generation loop fail (it calls tuple() on the record).
    match aug.resize.as_ref().map(|r| r.size) {
        Some(ResizeSize::Shorter(s)) => json!([s]),
        Some(ResizeSize::Exact { h, w }) => json!([h, w]),
        None => Value::Null,
    }
}

fn side_record(aug: &Augmentation, name: &str, crop: &CropRecord, side: &SideParams) -> Value {
    match name {
        "resize" => resize_record(aug),
        "random_crop" => crop.random_crop.map_or(Value::Null, |(i, j)| json!([i, j])),
        "random_resized_crop" => crop.rrc.map_or(Value::Null, |r| json!(r)),
        "random_horizontal_flip" => side.flip.map_or(Value::Null, Value::Bool),
        "rand_augment" => match &side.rand_augment {
            Some(Some(ops)) => json!(
                ops.iter()
                    .map(|&(op, m)| json!([op, m]))
                    .collect::<Vec<_>>()
            ),
            _ => Value::Null,
        },
        "random_erase" => match side.erase {
            Some(Some(r)) => json!(r),
            _ => Value::Null,
        },
        _ => unreachable!("{name}"),
    }
}

fn mix_record(p: &SampleParams, name: &str) -> Value {
    match name {
        "mixup" => match p.mixup {
            Some(Some(lam)) => json!(lam),
            _ => Value::Null,
        },
        _ => match p.cutmix {
            Some(Some((lam, b))) => json!([lam, b[0], b[1], b[2], b[3]]),
            _ => Value::Null,
        },
    }
}

fn mixed(p: &SampleParams) -> bool {
    matches!(p.mixup, Some(Some(_))) || matches!(p.cutmix, Some(Some(_)))
}

/// ml-dr `Compose.compress`.
pub fn compress(aug: &Augmentation, p: &SampleParams) -> Value {
    let mut out = Vec::new();
    let pair = p.pair.as_ref().filter(|_| mixed(p));
    if aug.mixing() {
        out.push(pair.map_or(Value::Null, |q| json!(q.id2)));
    }
    for name in with_params(aug) {
        out.push(match (name, pair) {
            ("mixup" | "cutmix", _) => mix_record(p, name),
            (_, None) => side_record(aug, name, &p.crop, &p.side),
            (_, Some(q)) => json!([
                side_record(aug, name, &p.crop, &p.side),
                side_record(aug, name, &q.crop, &q.side)
            ]),
        });
    }
    Value::Array(out)
}

/// The uncompressed dict ml-dr's `Compose` returns (op names, not indices;
/// `[image, pair]` per transform when a pair is mixed).
pub fn dict_form(aug: &Augmentation, p: &SampleParams) -> Value {
    let mut m = serde_json::Map::new();
    let pair = p.pair.as_ref().filter(|_| mixed(p));
    let named = |v: Value, name: &str| -> Value {
        if name != "rand_augment" {
            return v;
        }
        match v {
            Value::Array(ops) => Value::Array(
                ops.into_iter()
                    .map(|o| json!([OP_NAMES[o[0].as_u64().unwrap_or(0) as usize], o[1]]))
                    .collect(),
            ),
            other => other,
        }
    };
    for name in with_params(aug) {
        let v = match (name, pair) {
            ("mixup" | "cutmix", _) => mix_record(p, name),
            (_, None) => json!([named(side_record(aug, name, &p.crop, &p.side), name)]),
            (_, Some(q)) => json!([
                named(side_record(aug, name, &p.crop, &p.side), name),
                named(side_record(aug, name, &q.crop, &q.side), name)
            ]),
        };
        m.insert(name.into(), v);
    }
    if let Some(q) = pair {
        m.insert("id2".into(), json!(q.id2));
    }
    Value::Object(m)
}

#[derive(Debug, thiserror::Error)]
#[error("parameter record {record}: {problem}")]
pub struct RecordError {
    pub record: String,
    pub problem: String,
}

fn bad(v: &Value, problem: impl Into<String>) -> RecordError {
    RecordError {
        record: v.to_string(),
        problem: problem.into(),
    }
}

fn ints<const N: usize>(v: &Value, what: &str) -> Result<[i64; N], RecordError> {
    let a = v
        .as_array()
        .filter(|a| a.len() == N)
        .ok_or_else(|| bad(v, format!("{what}: expected {N} integers")))?;
    let mut out = [0i64; N];
    for (o, x) in out.iter_mut().zip(a) {
        *o = x
            .as_i64()
            .ok_or_else(|| bad(v, format!("{what}: expected integers")))?;
    }
    Ok(out)
}

/// Reads one side's record of transform `name` into `crop`/`side`.
fn read_side(
    name: &str,
    v: &Value,
    crop: &mut CropRecord,
    side: &mut SideParams,
) -> Result<(), RecordError> {
    match name {
        "resize" => {}
        "random_crop" => {
            let [i, j] = ints::<2>(v, "random_crop")?;
            crop.random_crop = Some((i, j));
        }
        "random_resized_crop" => crop.rrc = Some(ints::<4>(v, "random_resized_crop")?),
        "random_horizontal_flip" => {
            side.flip = Some(
                v.as_bool()
                    .ok_or_else(|| bad(v, "random_horizontal_flip: expected true or false"))?,
            )
        }
        "rand_augment" => {
            let ops = match v {
                Value::Null => None,
                Value::Array(a) => Some(
                    a.iter()
                        .map(|o| {
                            let op = o[0].as_u64().filter(|&i| (i as usize) < OP_NAMES.len());
                            match (op, o[1].as_f64()) {
                                (Some(op), Some(m)) => Ok((op as u8, m)),
                                _ => Err(bad(
                                    o,
                                    "rand_augment: expected [op index 0..13, magnitude]",
                                )),
                            }
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                _ => return Err(bad(v, "rand_augment: expected a list of ops or null")),
            };
            side.rand_augment = Some(ops);
        }
        "random_erase" => {
            side.erase = Some(match v {
                Value::Null => None,
                _ => Some(ints::<4>(v, "random_erase")?),
            })
        }
        _ => unreachable!("{name}"),
    }
    Ok(())
}

/// ml-dr `Compose.decompress`, into dr's parameters.
pub fn decompress(aug: &Augmentation, v: &Value) -> Result<SampleParams, RecordError> {
    let items = v.as_array().ok_or_else(|| bad(v, "expected a list"))?;
    let (id2, items) = if aug.mixing() {
        let first = items.first().ok_or_else(|| bad(v, "empty record"))?;
        let id2 = match first {
            Value::Null => None,
            x => Some(
                x.as_u64()
                    .ok_or_else(|| bad(x, "id2: expected an image index"))? as u32,
            ),
        };
        (id2, &items[1..])
    } else {
        (None, &items[..])
    };
    let names = with_params(aug);
    if items.len() != names.len() {
        return Err(bad(
            v,
            format!(
                "expected {} entries for this config ({})",
                names.len(),
                names.join(", ")
            ),
        ));
    }
    let mut p = SampleParams {
        crop: CropRecord::default(),
        side: SideParams::default(),
        pair: None,
        mixup: aug.mixup.as_ref().map(|_| None),
        cutmix: aug.cutmix.as_ref().map(|_| None),
    };
    // Transforms configured but drawn as skipped read as Some(None).
    if aug.rand_augment.is_some() {
        p.side.rand_augment = Some(None);
    }
    if aug.random_erase.is_some() {
        p.side.erase = Some(None);
    }
    let mut pair = id2.map(|id2| PairParams {
        id2,
        sample2: None,
        crop: CropRecord::default(),
        side: p.side.clone(),
    });
    for (name, rec) in names.iter().zip(items) {
        match *name {
            "mixup" => p.mixup = Some(rec.as_f64()),
            "cutmix" => {
                p.cutmix = Some(match rec {
                    Value::Null => None,
                    _ => {
                        let a = rec
                            .as_array()
                            .filter(|a| a.len() == 5)
                            .ok_or_else(|| bad(rec, "cutmix: expected [lam, x1, y1, x2, y2]"))?;
                        let lam = a[0].as_f64().ok_or_else(|| bad(rec, "cutmix: lam"))?;
                        Some((
                            lam,
                            ints::<4>(&Value::Array(a[1..].to_vec()), "cutmix box")?,
                        ))
                    }
                })
            }
            _ if rec.is_null() => {}
            _ => match &mut pair {
                Some(q) => {
                    let a = rec.as_array().filter(|a| a.len() == 2).ok_or_else(|| {
                        bad(rec, format!("{name}: expected [record, pair record]"))
                    })?;
                    read_side(name, &a[0], &mut p.crop, &mut p.side)?;
                    read_side(name, &a[1], &mut q.crop, &mut q.side)?;
                }
                None => read_side(name, rec, &mut p.crop, &mut p.side)?,
            },
        }
    }
    p.pair = pair;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::params::Draw;
    use crate::config::ReinforceConfig;

    fn aug(extra: &str) -> Augmentation {
        let text = format!(
            "reinforce:\n  num_samples: 4\n  image_augmentation:\n    uint8: {{}}\n    random_resized_crop: {{size: 224}}\n    random_horizontal_flip: {{}}\n    rand_augment: {{}}\n    to_tensor: {{}}\n    random_erase: {{p: 0.5}}\n{extra}"
        );
        ReinforceConfig::parse(&text, "t", false).unwrap().augment
    }

    #[test]
    fn compress_matches_ml_drs_example_shape_and_round_trips() {
        // FACTS.md §7 example (no pair): [None, (14,3,70,82), False, [(4,-8.70),(12,0.0)], (18,12,26,32), None, None]
        let a = aug("    mixup: {alpha: 1.0, p: 0.5}\n    cutmix: {alpha: 1.0, p: 0.5}\n");
        let example: Value = serde_json::from_str(
            "[null, [14,3,70,82], false, [[4,-8.70],[12,0.0]], [18,12,26,32], null, null]",
        )
        .unwrap();
        let p = decompress(&a, &example).unwrap();
        assert_eq!(p.crop.rrc, Some([14, 3, 70, 82]));
        assert_eq!(p.side.rand_augment, Some(Some(vec![(4, -8.70), (12, 0.0)])));
        assert!(p.pair.is_none());
        assert_eq!(compress(&a, &p), example);
        // Sampled records, pair or not, survive the round trip.
        let size = |_| (500usize, 375usize);
        let d = Draw {
            aug: &a,
            seed: 3,
            num_samples: 4,
            size_of: &size,
        };
        let mut pairs = 0;
        for s in 0..64 {
            let p = d.sample(s % 4, s / 4, &[0, 1, 2, 3]);
            let v = compress(&a, &p);
            let back = decompress(&a, &v).unwrap();
            assert_eq!(compress(&a, &back), v);
            pairs += usize::from(v[0] != Value::Null);
        }
        assert!(pairs > 10, "mixing drawn about 3/4 of the time");
    }

    #[test]
    fn bad_records_are_errors() {
        let a = aug("");
        for bad in [
            "{}",
            "[[1,2,3], true, null, null]",
            "[[1,2,3,4], 1, null, null]",
            "[[1,2,3,4], true, [[99, 1.0]], null]",
        ] {
            let v: Value = serde_json::from_str(bad).unwrap();
            assert!(decompress(&a, &v).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod stability {
    use super::*;
    use crate::augment::params::Draw;
    use crate::config::ReinforceConfig;

    /// Parameters are part of the output format: a change to sampling must
    /// show up here (and bump the format version), never silently.
    #[test]
    fn sampled_records_are_pinned() {
        let text = "reinforce:\n  num_samples: 8\n  image_augmentation:\n    uint8: {}\n    random_resized_crop: {size: 224}\n    random_horizontal_flip: {}\n    rand_augment: {}\n    to_tensor: {}\n    random_erase: {p: 0.25}\n    mixup: {alpha: 1.0, div_by: 2.0, p: 0.5}\n    cutmix: {alpha: 1.0, p: 0.5}\n";
        let aug = ReinforceConfig::parse(text, "t", false).unwrap().augment;
        let size = |i: u32| (500 + 10 * i as usize, 375);
        let d = Draw {
            aug: &aug,
            seed: 2024,
            num_samples: 8,
            size_of: &size,
        };
        let got: Vec<String> = (0..4)
            .map(|s| compress(&aug, &d.sample(3, s, &[1, 2, 3, 4])).to_string())
            .collect();
        println!("{}", got.join("\n"));
        assert_eq!(got, PINNED);
    }

    const PINNED: [&str; 4] = [
        "[4,[[0,40,373,369],[52,183,299,249]],[true,false],[[[13,0.0],[4,30.45317268371582]],[[9,0.26999998092651367],[4,30.45317268371582]]],[null,null],0.47448173562243484,null]",
        "[null,[16,132,353,380],false,[[9,0.26999998092651367],[2,-0.09000000357627869]],null,null,null]",
        "[3,[[0,134,375,346],[0,31,370,447]],[true,false],[[[0,0.0],[11,178.5]],[[1,-0.09000000357627869],[9,0.26999998092651367]]],[null,null],0.4819787652131659,null]",
        "[null,[15,23,336,320],true,[[1,-0.09000000357627869],[7,0.26999998092651367]],null,null,null]",
    ];
}
