use super::*;
use crate::augment::params::MixingGroups;
use crate::labels::{Coding, LabelMode};
use crate::rng::Philox;
use crate::store::layout::Record;

fn randaug_mixing() -> ReinforceConfig {
    let text = include_str!("../../../configs/imagenet-randaug_mixing.yaml");
    ReinforceConfig::parse(text, "randaug_mixing.yaml", false).unwrap()
}

/// `n` images of seeded sizes from 1 to 700 px a side, every 23rd bad (no size).
fn rows(n: u32) -> Vec<ImageRow> {
    let mut r = Philox::new(11, 0, 0, 0);
    (0..n)
        .map(|i| ImageRow {
            index: i,
            path: format!("{i}.jpg"),
            label: 0,
            bytes: None,
            sha256: None,
            size: (i % 23 != 5).then(|| (1 + r.below(700), 1 + r.below(700))),
        })
        .collect()
}

/// Every float by its bits: `Debug` prints the shortest form that reads
/// back to the same f64 (and `-0.0` as such).
fn bits(p: &SampleParams) -> String {
    format!("{p:?}")
}

#[test]
fn regenerated_params_equal_drawn_ones_over_1e5_samples() {
    // ml-dr's randaug_mixing (RRC, flip, RandAugment, erase, MixUp, CutMix)
    // at 10 samples x 10,000 images = 1e5 (image, sample) pairs.
    let mut cfg = randaug_mixing();
    cfg.num_samples = 10;
    let (n, seed) = (10_000u32, 0x5eed_0fd3_u64);
    let rows = rows(n);
    let deriver = Deriver::new(&cfg, seed, &rows, (224, 224));
    let stored = Layout::coded(
        &cfg.augment,
        LabelMode::TopK,
        Coding::default(),
        10,
        1000,
        (224, 224),
    );
    let mut buf = vec![0u8; stored.size];
    // `dr reinforce`'s path (`pipeline::shard::run_shard`): each mixing
    // group in work order, pairs among its decoded images, each sample
    // drawn, stored and read back.
    let groups = MixingGroups::new(seed, n, cfg.mixing_group);
    let g = cfg.mixing_group.max(1) as usize;
    let (mut compared, mut mixed, mut ra) = (0u32, 0u32, 0u32);
    for ids in groups.order().chunks(g) {
        let size = |id: u32| {
            rows[id as usize]
                .size
                .map(|(w, h)| (w as usize, h as usize))
        };
        let candidates: Vec<u32> = ids.iter().copied().filter(|&i| size(i).is_some()).collect();
        let size_of = |id: u32| size(id).expect("candidates are decoded");
        let draw = Draw {
            aug: &cfg.augment,
            seed,
            num_samples: cfg.num_samples,
            size_of: &size_of,
        };
        for &id in ids {
            if size(id).is_none() {
                assert!(
                    deriver
                        .params(id, 0)
                        .unwrap_err()
                        .contains("no decoded size")
                );
                continue;
            }
            for s in 0..cfg.num_samples {
                let rec = Record {
                    params: Some(draw.sample(id, s, &candidates)),
                    ..Record::default()
                };
                stored.encode(&rec, &mut buf);
                let back = stored.decode(&buf).params.unwrap();
                let again = deriver.params(id, s).unwrap();
                assert_eq!(bits(&again), bits(&back), "image {id} sample {s}");
                compared += 1;
                mixed += matches!(back.mixup, Some(Some(_))) as u32
                    + matches!(back.cutmix, Some(Some(_))) as u32;
                ra += matches!(back.side.rand_augment, Some(Some(_))) as u32;
            }
        }
    }
    println!("{compared} regenerated parameter sets equal the stored ones ({mixed} mixings)");
    assert!(compared >= 95_000, "{compared}");
    assert!(mixed > 40_000 && ra == compared, "{mixed} {ra}");
}

#[test]
fn regenerated_params_need_a_size_and_a_sample_in_range() {
    let cfg = randaug_mixing();
    let rows = rows(40);
    let d = Deriver::new(&cfg, 1, &rows, (224, 224));
    let e = d.params(5, 0).unwrap_err();
    assert!(e.contains("image 5") && e.contains("Fix:"), "{e}");
    let e = d.params(0, cfg.num_samples).unwrap_err();
    assert!(e.contains("50 samples"), "{e}");
    assert!(d.params(0, cfg.num_samples - 1).is_ok());
}
