//! The fixed-width record of one (image, sample): the fields of the enabled
//! transforms only, packed little-endian with no padding, described in the
//! manifest as a numpy dtype so `np.memmap(shard, dtype)` reads a shard.
//!
//! What is stored and what is rebuilt: Resize's record is its configured
//! size, and a RandAugment magnitude is a function of (op, config, output
//! size), so neither is stored; an op is one byte `(index << 1) | negated`.
//! Whether flip/RandAugment/erase/MixUp/CutMix happened is a flag bit. The
//! pair's own sample (`pair_sample`) is kept so the pair's crop can be
//! checked against that sample's record. Coordinates are u16: an image side
//! above 65535 px is refused as a bad image ([`MAX_SIDE`]).
//!
//! Size for ml-dr's ImageNet configs at k = 10: 50 B (crop+flip) to 104 B
//! (RandAugment+erase+MixUp+CutMix), against ml-dr's released metadata at
//! about 104 B per sample gzipped (test `imagenet_records_stay_compact`).
//! The label fields' encodings ([`Coding`]: `--prob-format u8log`,
//! `--class-ids packed`) take randaug_mixing's 104 B to 87 B (test
//! `compact_label_records_at_k_10`).

use half::f16;
use serde_json::{Value, json};

use crate::augment::params::{PairParams, SampleParams};
use crate::config::Augmentation;
use crate::labels::packed::{id_bits, packed_bytes, padding_is_zero};
use crate::labels::{Coding, IdFormat, LabelMode, ParamsFormat, ProbFormat, u8log};

/// Largest image side the u16 coordinates can hold.
pub const MAX_SIDE: usize = u16::MAX as usize;
/// Largest NS the u16 `pair_sample` can hold.
pub const MAX_SAMPLES: u32 = u16::MAX as u32 + 1;
/// `pair` of a record without a pair (bad image).
pub const NO_PAIR: u32 = u32::MAX;

pub mod flag {
    /// The image could not be used: params and probabilities are zero.
    pub const INVALID: u16 = 1 << 0;
    pub const FLIP: u16 = 1 << 1;
    pub const PAIR_FLIP: u16 = 1 << 2;
    pub const RAND_AUGMENT: u16 = 1 << 3;
    pub const PAIR_RAND_AUGMENT: u16 = 1 << 4;
    pub const ERASE: u16 = 1 << 5;
    pub const PAIR_ERASE: u16 = 1 << 6;
    pub const MIXUP: u16 = 1 << 7;
    pub const CUTMIX: u16 = 1 << 8;
    /// No pair record (imported from ml-dr, which stores none unless mixed).
    pub const PAIR_ABSENT: u16 = 1 << 9;
    /// The pair's own sample is not known (imported from ml-dr).
    pub const PAIR_SAMPLE_UNKNOWN: u16 = 1 << 10;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    U8,
    U16,
    U32,
    F16,
    F32,
    F64,
}

impl Kind {
    fn size(self) -> usize {
        match self {
            Kind::U8 => 1,
            Kind::U16 | Kind::F16 => 2,
            Kind::U32 | Kind::F32 => 4,
            Kind::F64 => 8,
        }
    }

    fn numpy(self) -> &'static str {
        match self {
            Kind::U8 => "|u1",
            Kind::U16 => "<u2",
            Kind::U32 => "<u4",
            Kind::F16 => "<f2",
            Kind::F32 => "<f4",
            Kind::F64 => "<f8",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    /// Elements (1 = scalar).
    pub count: usize,
    pub offset: usize,
}

/// One (image, sample) as stored: its parameters and the teacher's soft
/// label, top-k (`probs`, `classes`) or sampled (`draws`) by the layout's
/// mode; the other mode's fields are empty.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// `None` for a bad image (flag INVALID).
    pub params: Option<SampleParams>,
    /// Top-k probabilities, largest first (rounded to f16 when stored).
    pub probs: Vec<f32>,
    pub classes: Vec<u32>,
    /// Sampled: the k drawn class ids, ascending, repeats kept.
    pub draws: Vec<u32>,
}

impl Record {
    /// The soft label as (class, value) pairs, largest first: the top-k
    /// probabilities, or each drawn class with count / k (the unbiased
    /// estimate of its probability). For display.
    pub fn label_values(&self) -> Vec<(u32, f32)> {
        if self.draws.is_empty() {
            return self
                .classes
                .iter()
                .copied()
                .zip(self.probs.iter().copied())
                .collect();
        }
        let k = self.draws.len() as f32;
        let mut v: Vec<(u32, f32)> = Vec::new();
        for &c in &self.draws {
            match v.last_mut() {
                Some((id, n)) if *id == c => *n += 1.0,
                _ => v.push((c, 1.0)),
            }
        }
        // Stable: equal counts stay in class order.
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v.into_iter().map(|(c, n)| (c, n / k)).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub fields: Vec<Field>,
    pub size: usize,
    /// k: probabilities kept (top-k) or classes drawn (sampled).
    pub topk: usize,
    pub labels: LabelMode,
    /// How probabilities and class ids are encoded.
    pub coding: Coding,
    /// Bits of a packed class id (`labels::packed::id_bits` of the classes).
    pub id_bits: u32,
    aug: Augmentation,
    output_wh: (usize, usize),
}

impl Layout {
    /// The layout for `aug`, top-`k` and `classes` classes; `output_wh` is
    /// the augmented tensor size (RandAugment magnitudes depend on it).
    pub fn new(aug: &Augmentation, topk: usize, classes: usize, output_wh: (usize, usize)) -> Self {
        Self::with_labels(aug, LabelMode::TopK, topk, classes, output_wh)
    }

    /// [`Layout::new`] for the label mode `labels` (k = `topk`): top-k's
    /// `probs` and `classes`, or sampled's `draws` (`crate::labels`).
    pub fn with_labels(
        aug: &Augmentation,
        labels: LabelMode,
        topk: usize,
        classes: usize,
        output_wh: (usize, usize),
    ) -> Self {
        Self::coded(aug, labels, Coding::default(), topk, classes, output_wh)
    }

    /// [`Layout::with_labels`] with the label fields encoded as `coding`
    /// says: `prob_codes` (`|u1`, `labels::u8log`) for f16 `probs`, and
    /// `classes_packed` / `draws_packed` (`|u1`, `labels::packed`) for
    /// whole-byte `classes` / `draws`. New names, so a reader that knows only
    /// the old ones fails rather than misreads. `--params derived`
    /// (`coding.params`) keeps only `flags` of the parameter fields (its
    /// INVALID bit); the parameters are regenerated (`store::derived`).
    pub fn coded(
        aug: &Augmentation,
        labels: LabelMode,
        coding: Coding,
        topk: usize,
        classes: usize,
        output_wh: (usize, usize),
    ) -> Self {
        let mut fields = Vec::new();
        let mut add = |name, kind, count| fields.push((name, kind, count));
        let stored = coding.params == ParamsFormat::Stored;
        let mixing = aug.mixing() && stored;
        if mixing {
            add("pair", Kind::U32, 1);
            add("pair_sample", Kind::U16, 1);
        }
        add("flags", Kind::U16, 1);
        let sides: &[&str] = if mixing { &["", "pair_"] } else { &[""] };
        let name = |side: &str, base: &'static str| -> &'static str {
            match (side, base) {
                ("", b) => b,
                (_, "random_crop") => "pair_random_crop",
                (_, "rrc") => "pair_rrc",
                (_, "ra_ops") => "pair_ra_ops",
                (_, "erase") => "pair_erase",
                _ => unreachable!(),
            }
        };
        let sides: &[&str] = if stored { sides } else { &[] };
        for s in sides {
            if aug.random_crop.is_some() {
                add(name(s, "random_crop"), Kind::U16, 2);
            }
        }
        for s in sides {
            if aug.random_resized_crop.is_some() {
                add(name(s, "rrc"), Kind::U16, 4);
            }
        }
        for s in sides {
            if let Some(ra) = &aug.rand_augment {
                add(name(s, "ra_ops"), Kind::U8, ra.num_ops as usize);
            }
        }
        for s in sides {
            if aug.random_erase.is_some() {
                add(name(s, "erase"), Kind::U16, 4);
            }
        }
        if aug.mixup.is_some() && stored {
            add("mixup_lam", Kind::F64, 1);
        }
        if aug.cutmix.is_some() && stored {
            // The box decides the image; lam is kept for the record only.
            add("cutmix_lam", Kind::F32, 1);
            add("cutmix_box", Kind::U16, 4);
        }
        let id = if classes > 1 << 16 {
            Kind::U32
        } else {
            Kind::U16
        };
        let bits = id_bits(classes);
        let ids = |add: &mut dyn FnMut(&'static str, Kind, usize), name, packed| match coding.ids {
            IdFormat::Bytes => add(name, id, topk),
            IdFormat::Packed => add(packed, Kind::U8, packed_bytes(topk, bits)),
        };
        match labels {
            LabelMode::TopK => {
                match coding.probs {
                    ProbFormat::F16 => add("probs", Kind::F16, topk),
                    ProbFormat::U8Log => add("prob_codes", Kind::U8, topk),
                }
                ids(&mut add, "classes", "classes_packed");
            }
            LabelMode::Sampled => ids(&mut add, "draws", "draws_packed"),
        }
        let mut offset = 0;
        let fields: Vec<Field> = fields
            .into_iter()
            .map(|(name, kind, count)| {
                let f = Field {
                    name,
                    kind,
                    count,
                    offset,
                };
                offset += kind.size() * count;
                f
            })
            .collect();
        Layout {
            fields,
            size: offset,
            topk,
            labels,
            coding,
            id_bits: bits,
            aug: aug.clone(),
            output_wh,
        }
    }

    /// numpy's `dtype.descr` form: `[[name, type], [name, type, [n]], ...]`.
    pub fn numpy_descr(&self) -> Value {
        Value::Array(
            self.fields
                .iter()
                .map(|f| {
                    if f.count == 1 {
                        json!([f.name, f.kind.numpy()])
                    } else {
                        json!([f.name, f.kind.numpy(), [f.count]])
                    }
                })
                .collect(),
        )
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Writes `rec` into `out` (`self.size` bytes). Values that do not fit
    /// the layout are a bug of the caller (the pipeline refuses such images).
    pub fn encode(&self, rec: &Record, out: &mut [u8]) {
        assert_eq!(out.len(), self.size);
        out.fill(0);
        let mut w = Writer { l: self, out };
        for (i, &p) in rec.probs.iter().enumerate() {
            match self.coding.probs {
                ProbFormat::F16 => w.at("probs", i, &f16::from_f32(p).to_le_bytes()),
                ProbFormat::U8Log => w.at("prob_codes", i, &[u8log::encode(p)]),
            }
        }
        w.ids("classes", &rec.classes);
        w.ids("draws", &rec.draws);
        let Some(p) = &rec.params else {
            w.uint("flags", 0, flag::INVALID as u64);
            if self.stores_params() && self.aug.mixing() {
                w.uint("pair", 0, NO_PAIR as u64);
            }
            return;
        };
        if !self.stores_params() {
            return; // flags 0: usable, parameters regenerated by readers
        }
        let mut flags = 0u16;
        w.side(
            "",
            &p.crop,
            &p.side,
            &mut flags,
            [flag::FLIP, flag::RAND_AUGMENT, flag::ERASE],
        );
        if self.aug.mixing() && p.pair.is_none() {
            flags |= flag::PAIR_ABSENT;
        }
        if let Some(q) = &p.pair {
            w.uint("pair", 0, q.id2 as u64);
            w.uint("pair_sample", 0, q.sample2.unwrap_or(0) as u64);
            if q.sample2.is_none() {
                flags |= flag::PAIR_SAMPLE_UNKNOWN;
            }
            w.side(
                "pair_",
                &q.crop,
                &q.side,
                &mut flags,
                [flag::PAIR_FLIP, flag::PAIR_RAND_AUGMENT, flag::PAIR_ERASE],
            );
        }
        if let Some(Some(lam)) = p.mixup {
            flags |= flag::MIXUP;
            w.at("mixup_lam", 0, &lam.to_le_bytes());
        }
        if let Some(Some((lam, b))) = p.cutmix {
            flags |= flag::CUTMIX;
            w.at("cutmix_lam", 0, &(lam as f32).to_le_bytes());
            for (i, v) in b.iter().enumerate() {
                w.uint("cutmix_box", i, *v as u64);
            }
        }
        w.uint("flags", 0, flags as u64);
    }

    /// Whether records hold the parameters (`--params stored`).
    pub fn stores_params(&self) -> bool {
        self.coding.params == ParamsFormat::Stored
    }

    /// Reads a record written by [`Layout::encode`]. Derived parameters
    /// read as `None` here whatever the flags say: `store::reader`
    /// regenerates them for a usable record (`Reinforced::decode`).
    pub fn decode(&self, bytes: &[u8]) -> Record {
        let r = Reader { l: self, b: bytes };
        let k = self.topk;
        let (k_top, k_drawn) = match self.labels {
            LabelMode::TopK => (k, 0),
            LabelMode::Sampled => (0, k),
        };
        let probs = (0..k_top)
            .map(|i| match self.coding.probs {
                ProbFormat::F16 => {
                    f16::from_le_bytes(r.bytes("probs", i).try_into().unwrap()).to_f32()
                }
                ProbFormat::U8Log => u8log::decode(r.bytes("prob_codes", i)[0]),
            })
            .collect();
        let classes = r.ids("classes", k_top);
        let draws = r.ids("draws", k_drawn);
        let flags = r.uint("flags", 0) as u16;
        if flags & flag::INVALID != 0 || !self.stores_params() {
            return Record {
                params: None,
                probs,
                classes,
                draws,
            };
        }
        let aug = &self.aug;
        let (crop, side) = r.side(
            "",
            flags,
            [flag::FLIP, flag::RAND_AUGMENT, flag::ERASE],
            self.output_wh,
        );
        let pair = (aug.mixing() && flags & flag::PAIR_ABSENT == 0).then(|| {
            let (crop, side) = r.side(
                "pair_",
                flags,
                [flag::PAIR_FLIP, flag::PAIR_RAND_AUGMENT, flag::PAIR_ERASE],
                self.output_wh,
            );
            PairParams {
                id2: r.uint("pair", 0) as u32,
                sample2: (flags & flag::PAIR_SAMPLE_UNKNOWN == 0)
                    .then(|| r.uint("pair_sample", 0) as u32),
                crop,
                side,
            }
        });
        let mixup = aug.mixup.as_ref().map(|_| {
            (flags & flag::MIXUP != 0)
                .then(|| f64::from_le_bytes(r.bytes("mixup_lam", 0).try_into().unwrap()))
        });
        let cutmix = aug.cutmix.as_ref().map(|_| {
            (flags & flag::CUTMIX != 0).then(|| {
                let lam = f32::from_le_bytes(r.bytes("cutmix_lam", 0).try_into().unwrap());
                (
                    lam as f64,
                    [0, 1, 2, 3].map(|i| r.uint("cutmix_box", i) as i64),
                )
            })
        });
        Record {
            params: Some(SampleParams {
                crop,
                side,
                pair,
                mixup,
                cutmix,
            }),
            probs,
            classes,
            draws,
        }
    }

    /// The record of a bad image: flag INVALID, every label field zero.
    pub fn invalid_record(&self) -> Record {
        let k = self.topk;
        match self.labels {
            LabelMode::TopK => Record {
                probs: vec![0.0; k],
                classes: vec![0; k],
                ..Record::default()
            },
            LabelMode::Sampled => Record {
                draws: vec![0; k],
                ..Record::default()
            },
        }
    }

    /// Whether the bits after the packed class ids of an encoded record are
    /// zero, as `encode` leaves them (always true for whole-byte ids).
    pub fn id_padding_is_zero(&self, bytes: &[u8]) -> bool {
        ["classes_packed", "draws_packed"].iter().all(|name| {
            self.field(name).is_none_or(|f| {
                padding_is_zero(
                    &bytes[f.offset..f.offset + f.count],
                    self.topk,
                    self.id_bits,
                )
            })
        })
    }

    /// The flags field of an encoded record.
    pub fn flags(&self, bytes: &[u8]) -> u16 {
        let o = self.field("flags").expect("every layout has flags").offset;
        u16::from_le_bytes([bytes[o], bytes[o + 1]])
    }

    /// Flag bits the configured transforms can set.
    pub fn allowed_flags(&self) -> u16 {
        let a = &self.aug;
        let pair = a.mixing();
        let mut f = flag::INVALID;
        if !self.stores_params() {
            return f;
        }
        let mut on = |c: bool, bits: u16| {
            if c {
                f |= bits;
            }
        };
        on(a.random_horizontal_flip.is_some(), flag::FLIP);
        on(a.random_horizontal_flip.is_some() && pair, flag::PAIR_FLIP);
        on(a.rand_augment.is_some(), flag::RAND_AUGMENT);
        on(a.rand_augment.is_some() && pair, flag::PAIR_RAND_AUGMENT);
        on(a.random_erase.is_some(), flag::ERASE);
        on(a.random_erase.is_some() && pair, flag::PAIR_ERASE);
        on(a.mixup.is_some(), flag::MIXUP);
        on(a.cutmix.is_some(), flag::CUTMIX);
        on(pair, flag::PAIR_ABSENT | flag::PAIR_SAMPLE_UNKNOWN);
        f
    }

    /// `p` as it will read back: what storage rounds (CutMix's lam to f32).
    pub fn stored_form(&self, p: &SampleParams) -> SampleParams {
        let mut q = p.clone();
        if let Some(Some((lam, _))) = &mut q.cutmix {
            *lam = *lam as f32 as f64;
        }
        q
    }
}

mod fields;
use fields::{Reader, Writer};

#[cfg(test)]
mod tests;
