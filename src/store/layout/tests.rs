use super::*;
use crate::augment::params::{Draw, MixingGroups};
use crate::augment::record;
use crate::config::ReinforceConfig;
use crate::labels::{Coding, IdFormat, LabelMode, ParamsFormat, ProbFormat};

pub const CONFIGS: [(&str, &str); 4] = [
    (
        "cropflip",
        include_str!("../../../configs/imagenet-cropflip.yaml"),
    ),
    (
        "mixing",
        include_str!("../../../configs/imagenet-mixing.yaml"),
    ),
    (
        "randaug",
        include_str!("../../../configs/imagenet-randaug.yaml"),
    ),
    (
        "randaug_mixing",
        include_str!("../../../configs/imagenet-randaug_mixing.yaml"),
    ),
];

fn config(text: &str) -> ReinforceConfig {
    ReinforceConfig::parse(text, "test.yaml", false).unwrap()
}

#[test]
fn imagenet_records_stay_compact() {
    // ml-dr's ImageNet+ metadata: 53.3 GB gzipped for 1.28 M images x 400.
    let ml_dr = 53.3e9 / (1_281_167.0 * 400.0);
    let sizes: Vec<(&str, usize)> = CONFIGS
        .iter()
        .map(|(name, text)| {
            let c = config(text);
            (*name, Layout::new(&c.augment, 10, 1000, (224, 224)).size)
        })
        .collect();
    assert_eq!(
        sizes,
        [
            ("cropflip", 50),
            ("mixing", 84),
            ("randaug", 60),
            ("randaug_mixing", 104)
        ]
    );
    assert!(sizes.iter().all(|&(_, s)| s as f64 <= ml_dr), "{ml_dr}");
}

#[test]
fn sampled_records_are_20_bytes_smaller_at_k_10() {
    // k = 10 draws of 1000 classes: 10 u16 ids (20 B) where top-k keeps 10
    // f16 probabilities and 10 u16 ids (40 B).
    let sizes: Vec<(&str, usize, usize)> = CONFIGS
        .iter()
        .map(|(name, text)| {
            let c = config(text);
            let size = |m| Layout::with_labels(&c.augment, m, 10, 1000, (224, 224)).size;
            (*name, size(LabelMode::TopK), size(LabelMode::Sampled))
        })
        .collect();
    for (name, topk, sampled) in &sizes {
        println!("{name}: {sampled} B per record sampled, {topk} B top-k (k = 10, 1000 classes)");
    }
    assert_eq!(
        sizes,
        [
            ("cropflip", 50, 30),
            ("mixing", 84, 64),
            ("randaug", 60, 40),
            ("randaug_mixing", 104, 84)
        ]
    );
    let l = Layout::with_labels(
        &config(CONFIGS[0].1).augment,
        LabelMode::Sampled,
        10,
        1000,
        (224, 224),
    );
    assert_eq!(l.field("draws").unwrap().kind, Kind::U16);
    assert!(l.field("probs").is_none() && l.field("classes").is_none());
}

#[test]
fn compact_label_records_at_k_10() {
    // k = 10 of 1000 classes: u8log probabilities (10 B for 20 B of f16)
    // and 10-bit class ids (13 B for 20 B of u16).
    let u8log = Coding {
        probs: ProbFormat::U8Log,
        ..Coding::default()
    };
    let packed = Coding {
        ids: IdFormat::Packed,
        ..Coding::default()
    };
    let both = Coding {
        probs: ProbFormat::U8Log,
        ids: IdFormat::Packed,
        ..Coding::default()
    };
    let sizes: Vec<[usize; 6]> = CONFIGS
        .iter()
        .map(|(_, text)| {
            let c = config(text);
            let size = |m, coding| Layout::coded(&c.augment, m, coding, 10, 1000, (224, 224)).size;
            [
                size(LabelMode::TopK, Coding::default()),
                size(LabelMode::TopK, u8log),
                size(LabelMode::TopK, packed),
                size(LabelMode::TopK, both),
                size(LabelMode::Sampled, Coding::default()),
                size(LabelMode::Sampled, packed),
            ]
        })
        .collect();
    for ((name, _), s) in CONFIGS.iter().zip(&sizes) {
        println!(
            "{name}: B per record at k = 10, 1000 classes: top-k f16 + u16 {}, u8log + u16 {}, f16 + packed {}, u8log + packed {}; sampled u16 {}, packed {}",
            s[0], s[1], s[2], s[3], s[4], s[5]
        );
    }
    assert_eq!(
        sizes,
        [
            [50, 40, 43, 33, 30, 23],
            [84, 74, 77, 67, 64, 57],
            [60, 50, 53, 43, 40, 33],
            [104, 94, 97, 87, 84, 77],
        ]
    );
    let c = config(CONFIGS[3].1);
    let l = Layout::coded(&c.augment, LabelMode::TopK, both, 10, 1000, (224, 224));
    let tail: Vec<_> = l.numpy_descr().as_array().unwrap()[12..].to_vec();
    assert_eq!(
        tail,
        [
            json!(["prob_codes", "|u1", [10]]),
            json!(["classes_packed", "|u1", [13]])
        ]
    );
    assert_eq!(l.id_bits, 10);
}

#[test]
fn derived_params_records_at_k_10() {
    // `--params derived`: the 2 B flags word is all a record keeps of the
    // parameters, whatever the transforms. ml-dr's randaug_mixing ImageNet
    // config at k = 10 of 1000 classes, bytes per (image, sample): the
    // issue's goal is at most 32.
    let derived = |probs, ids| Coding {
        probs,
        ids,
        params: ParamsFormat::Derived,
    };
    let c = config(CONFIGS[3].1);
    let size = |m, coding| Layout::coded(&c.augment, m, coding, 10, 1000, (224, 224)).size;
    let topk_f16 = size(LabelMode::TopK, derived(ProbFormat::F16, IdFormat::Bytes));
    let topk_small = size(
        LabelMode::TopK,
        derived(ProbFormat::U8Log, IdFormat::Packed),
    );
    let sampled = size(
        LabelMode::Sampled,
        derived(ProbFormat::F16, IdFormat::Bytes),
    );
    let sampled_packed = size(
        LabelMode::Sampled,
        derived(ProbFormat::F16, IdFormat::Packed),
    );
    println!(
        "randaug_mixing, derived params, k = 10: top-k f16 + u16 {topk_f16} B, u8log + packed {topk_small} B; sampled u16 {sampled} B, packed {sampled_packed} B"
    );
    // flags 2 + u8log codes 10 + packed ids 13; sampled: 2 + 13.
    assert_eq!(
        [topk_f16, topk_small, sampled, sampled_packed],
        [42, 25, 22, 15]
    );
    assert!(topk_small <= 32 && sampled_packed <= 32);
    // Every config: 2 B of parameters.
    for (name, text) in CONFIGS {
        let c = config(text);
        let l = Layout::coded(
            &c.augment,
            LabelMode::TopK,
            derived(ProbFormat::U8Log, IdFormat::Packed),
            10,
            1000,
            (224, 224),
        );
        assert_eq!(l.size, 25, "{name}");
        assert_eq!(l.numpy_descr()[0], json!(["flags", "<u2"]), "{name}");
        assert_eq!(l.allowed_flags(), flag::INVALID, "{name}");
    }
}

#[test]
fn derived_records_keep_only_the_invalid_flag() {
    let c = config(CONFIGS[3].1);
    let coding = Coding {
        params: ParamsFormat::Derived,
        ..Coding::default()
    };
    let l = Layout::coded(&c.augment, LabelMode::TopK, coding, 3, 1000, (224, 224));
    let groups = MixingGroups::new(3, 8, 8);
    let size = |_| (300, 200);
    let d = Draw {
        aug: &c.augment,
        seed: 3,
        num_samples: 4,
        size_of: &size,
    };
    let rec = Record {
        params: Some(d.sample(2, 1, groups.group_of(2))),
        probs: vec![0.5, 0.25, 0.125],
        classes: vec![7, 999, 0],
        draws: vec![],
    };
    let mut b = vec![0u8; l.size];
    l.encode(&rec, &mut b);
    assert_eq!(l.flags(&b), 0);
    // The parameters come back from the reader (`store::derived`), not the bytes.
    let back = l.decode(&b);
    assert_eq!((back.params, &back.classes), (None, &rec.classes));
    l.encode(&l.invalid_record(), &mut b);
    assert_eq!(l.flags(&b), flag::INVALID);
}

#[test]
fn u8log_and_packed_records_round_trip() {
    let c = config(CONFIGS[3].1);
    let both = Coding {
        probs: ProbFormat::U8Log,
        ids: IdFormat::Packed,
        ..Coding::default()
    };
    let l = Layout::coded(&c.augment, LabelMode::TopK, both, 5, 1000, (224, 224));
    let p = [0.6f32, 0.25, 0.1, 1e-4, 1e-6];
    let rec = Record {
        params: None,
        probs: p.to_vec(),
        classes: vec![999, 0, 512, 7, 998],
        draws: Vec::new(),
    };
    let mut b = vec![0xAA; l.size];
    l.encode(&rec, &mut b);
    let back = l.decode(&b);
    assert_eq!(back.classes, rec.classes);
    assert!(l.id_padding_is_zero(&b));
    // Each probability as its code decodes it: within the bound above the
    // floor, 0 below half of it.
    for (&v, &p) in back.probs.iter().zip(&p) {
        assert_eq!(v, u8log::decode(u8log::encode(p)));
        if p >= u8log::FLOOR {
            assert!(
                ((v - p) / p).abs() as f64 <= u8log::MAX_REL_ERROR,
                "{p} -> {v}"
            );
        }
    }
    assert_eq!(back.probs[4], 0.0);
    // Decoded values are levels, so they round-trip exactly.
    let mut again = vec![0; l.size];
    l.encode(&back, &mut again);
    assert_eq!(again, b);
}

#[test]
fn sampled_records_round_trip() {
    let c = config(CONFIGS[3].1);
    // Whole-byte ids (u32 past 65536 classes), and packed in 17 bits.
    for ids in [IdFormat::Bytes, IdFormat::Packed] {
        let coding = Coding {
            ids,
            ..Coding::default()
        };
        let l = Layout::coded(
            &c.augment,
            LabelMode::Sampled,
            coding,
            4,
            70_000,
            (224, 224),
        );
        let rec = Record {
            draws: vec![3, 3, 65_536, 69_999],
            ..l.invalid_record()
        };
        let mut b = vec![0xAA; l.size];
        l.encode(&rec, &mut b);
        assert_eq!(l.decode(&b), rec);
        match ids {
            IdFormat::Bytes => assert_eq!(l.field("draws").unwrap().kind, Kind::U32),
            IdFormat::Packed => {
                let f = l.field("draws_packed").unwrap();
                assert_eq!((f.kind, f.count), (Kind::U8, 9));
                assert!(l.id_padding_is_zero(&b));
                b[f.offset + f.count - 1] |= 0x80;
                assert!(!l.id_padding_is_zero(&b));
            }
        }
    }
    let rec = Record {
        draws: vec![3, 3, 65_536, 69_999],
        ..Record::default()
    };
    assert_eq!(
        rec.label_values(),
        [(3, 0.5), (65_536, 0.25), (69_999, 0.25)]
    );
}

#[test]
fn class_ids_widen_past_u16() {
    let c = config(CONFIGS[0].1);
    let narrow = Layout::new(&c.augment, 5, 65536, (224, 224));
    let wide = Layout::new(&c.augment, 5, 65537, (224, 224));
    assert_eq!(narrow.field("classes").unwrap().kind, Kind::U16);
    assert_eq!(wide.field("classes").unwrap().kind, Kind::U32);
    let rec = Record {
        params: None,
        probs: vec![0.5, 0.25, 0.0, 0.0, 0.0],
        classes: vec![65536, 7, 0, 0, 0],
        draws: Vec::new(),
    };
    let mut b = vec![0; wide.size];
    wide.encode(&rec, &mut b);
    assert_eq!(wide.decode(&b), rec);
}

#[test]
fn numpy_descr_matches_offsets() {
    let c = config(CONFIGS[3].1);
    let l = Layout::new(&c.augment, 10, 1000, (224, 224));
    let d = l.numpy_descr();
    let names: Vec<&str> = d
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f[0].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "pair",
            "pair_sample",
            "flags",
            "rrc",
            "pair_rrc",
            "ra_ops",
            "pair_ra_ops",
            "erase",
            "pair_erase",
            "mixup_lam",
            "cutmix_lam",
            "cutmix_box",
            "probs",
            "classes"
        ]
    );
    assert_eq!(d[5], json!(["ra_ops", "|u1", [2]]));
    // Packed: each field starts where the previous one ends.
    for w in l.fields.windows(2) {
        assert_eq!(w[1].offset, w[0].offset + w[0].kind.size() * w[0].count);
    }
}

/// Every drawn sample of every config reads back as drawn (CutMix's lam as
/// f32), and ml-dr's compressed form of the two is identical.
#[test]
fn drawn_params_round_trip() {
    let mut configs: Vec<String> = CONFIGS.iter().map(|c| c.1.to_string()).collect();
    configs.push(
        "reinforce:
  num_samples: 4
  image_augmentation:
    uint8: {}
    resize: {size: 40}
    random_crop: {size: 32, padding: 4}
    random_horizontal_flip: {p: 0.5}
    rand_augment: {p: 0.7, num_ops: 3}
    to_tensor: {}
    random_erase: {p: 0.5}
    mixup: {alpha: 0.2, p: 0.5}
"
        .into(),
    );
    for text in &configs {
        let c = config(text);
        let sizes = |i: u32| (100 + (i as usize * 37) % 400, 80 + (i as usize * 53) % 300);
        let draw = Draw {
            aug: &c.augment,
            seed: 7,
            num_samples: 8,
            size_of: &sizes,
        };
        let groups = MixingGroups::new(7, 40, 8);
        let out = crate::augment::params::stage_sizes(&c.augment, 10, 10).output;
        let l = Layout::new(&c.augment, 3, 1000, out);
        let mut seen_flags = 0u16;
        for image in 0..40 {
            for sample in 0..8 {
                let p = draw.sample(image, sample, groups.group_of(image));
                let rec = Record {
                    params: Some(p.clone()),
                    probs: vec![0.5, 0.25, 0.125],
                    classes: vec![3, 999, 0],
                    draws: Vec::new(),
                };
                let mut b = vec![0; l.size];
                l.encode(&rec, &mut b);
                seen_flags |= u16::from_le_bytes([
                    b[l.field("flags").unwrap().offset],
                    b[l.field("flags").unwrap().offset + 1],
                ]);
                let back = l.decode(&b);
                assert_eq!(
                    back.params.as_ref(),
                    Some(&l.stored_form(&p)),
                    "{image}/{sample}"
                );
                assert_eq!(back.probs, rec.probs);
                assert_eq!(back.classes, rec.classes);
                // ml-dr's compressed form of what storage keeps (CutMix's lam as f32).
                assert_eq!(
                    record::compress(&c.augment, back.params.as_ref().unwrap()),
                    record::compress(&c.augment, &l.stored_form(&p))
                );
            }
        }
        // Each configured flag was exercised by the draws.
        let aug = &c.augment;
        let want = [
            (aug.random_horizontal_flip.is_some(), flag::FLIP),
            (aug.rand_augment.is_some(), flag::RAND_AUGMENT),
            (aug.random_erase.is_some(), flag::ERASE),
            (aug.mixup.is_some(), flag::MIXUP),
            (aug.cutmix.is_some(), flag::CUTMIX),
        ];
        for (on, bit) in want {
            assert_eq!(seen_flags & bit != 0, on, "flag {bit:#x}");
        }
    }
}

#[test]
fn invalid_records_are_zero_but_flagged() {
    let c = config(CONFIGS[3].1);
    let l = Layout::new(&c.augment, 10, 1000, (224, 224));
    let rec = Record {
        params: None,
        probs: vec![0.0; 10],
        classes: vec![0; 10],
        draws: Vec::new(),
    };
    let mut b = vec![0xAA; l.size];
    l.encode(&rec, &mut b);
    assert_eq!(&b[..4], &NO_PAIR.to_le_bytes());
    assert_eq!(l.decode(&b), rec);
    let flags = l.field("flags").unwrap().offset;
    assert_eq!(b[flags], flag::INVALID as u8);
    assert!(b[4..flags].iter().chain(&b[flags + 2..]).all(|&v| v == 0));
}
