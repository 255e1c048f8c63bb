use super::*;
use crate::config::ReinforceConfig;
use crate::rng::stats::{chi_square_z, ks, ks_critical};

const N: u32 = 100_000;

fn config(extra: &str) -> Augmentation {
    let text = format!(
        "reinforce:
  num_samples: 50
  image_augmentation:
    uint8: {{}}
    random_resized_crop: {{size: 224}}
    random_horizontal_flip: {{p: 0.5}}
    rand_augment: {{p: 1.0}}
    to_tensor: {{}}
    random_erase: {{p: 0.25}}
    normalize: {{mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}}
    mixup: {{alpha: 1.0, div_by: 2.0, p: 0.5}}
    cutmix: {{alpha: 1.0, p: 0.5}}
{extra}"
    );
    ReinforceConfig::parse(&text, "t.yaml", false)
        .unwrap()
        .augment
}

fn draws(aug: &Augmentation, w: usize, h: usize) -> Vec<SampleParams> {
    let size = move |_| (w, h);
    let d = Draw {
        aug,
        seed: 5,
        num_samples: 50,
        size_of: &size,
    };
    let group: Vec<u32> = (0..32).collect();
    (0..N).map(|i| d.sample(i % 32, i / 32, &group)).collect()
}

fn binomial_z(hits: usize, n: usize, p: f64) -> f64 {
    (hits as f64 - n as f64 * p) / (n as f64 * p * (1.0 - p)).sqrt()
}

#[test]
fn pure_function_of_seed_image_sample() {
    let aug = config("");
    let size = |i: u32| (300 + i as usize, 200);
    let d = Draw {
        aug: &aug,
        seed: 9,
        num_samples: 50,
        size_of: &size,
    };
    let g = [3u32, 4, 5];
    let a = d.sample(4, 7, &g);
    let _ = d.sample(5, 1, &g); // other draws in between change nothing
    assert_eq!(a, d.sample(4, 7, &g));
    let other = Draw { seed: 10, ..d };
    assert_ne!(a, other.sample(4, 7, &g));
}

#[test]
fn rrc_area_ratio_and_offsets() {
    let mut aug = config("");
    // A scale range every first try satisfies, so the drawn area and aspect
    // are the stated uniform and log-uniform (up to rounding to pixels).
    aug.random_resized_crop.as_mut().unwrap().scale = (0.08, 0.5);
    let (w, h) = (1000usize, 1000usize);
    let recs: Vec<[i64; 4]> = draws(&aug, w, h)
        .iter()
        .map(|s| s.crop.rrc.unwrap())
        .collect();
    let mut area: Vec<f64> = recs.iter().map(|r| (r[2] * r[3]) as f64 / 1e6).collect();
    let d = ks(&mut area, |x| ((x - 0.08) / 0.42).clamp(0.0, 1.0));
    assert!(d < ks_critical(N as usize) + 0.003, "area D = {d}");
    let (lo, hi) = ((0.75f64).ln(), (4.0f64 / 3.0).ln());
    let mut logr: Vec<f64> = recs
        .iter()
        .map(|r| (r[3] as f64 / r[2] as f64).ln())
        .collect();
    let d = ks(&mut logr, |x| ((x - lo) / (hi - lo)).clamp(0.0, 1.0));
    assert!(d < ks_critical(N as usize) + 0.005, "log ratio D = {d}");
    let mut top: Vec<f64> = recs
        .iter()
        .map(|r| (r[0] as f64 + 0.5) / (h as i64 - r[2] + 1) as f64)
        .collect();
    let d = ks(&mut top, |x| x.clamp(0.0, 1.0));
    assert!(d < ks_critical(N as usize) + 0.003, "top offset D = {d}");
    for r in &recs {
        assert!(r[0] >= 0 && r[1] >= 0 && r[0] + r[2] <= h as i64 && r[1] + r[3] <= w as i64);
    }
}

#[test]
fn rrc_fallback_centres_the_largest_allowed_crop() {
    let cfg = RandomResizedCrop {
        size: crate::config::CropSize { h: 224, w: 224 },
        scale: (2.0, 2.0), // never fits: always falls back
        ratio: (0.75, 4.0 / 3.0),
    };
    let mut r = Philox::new(1, 0, 0, 0);
    assert_eq!(
        sample_rrc(&mut r, &cfg, 100, 400),
        [(400 - 133) / 2, 0, 133, 100]
    );
    assert_eq!(
        sample_rrc(&mut r, &cfg, 400, 100),
        [0, (400 - 133) / 2, 100, 133]
    );
    assert_eq!(sample_rrc(&mut r, &cfg, 120, 100), [0, 0, 100, 120]);
}

#[test]
fn flip_randaug_erase_rates() {
    let aug = config("");
    let s = draws(&aug, 500, 375);
    let n = s.len();
    let flips = s.iter().filter(|p| p.side.flip == Some(true)).count();
    assert!(binomial_z(flips, n, 0.5).abs() < 4.5);
    // RandAugment p=1: always two ops; ops uniform over 14; signs fair.
    let mut counts = [0u64; 14];
    let (mut signed, mut negative) = (0, 0);
    for p in &s {
        let ops = p.side.rand_augment.clone().unwrap().unwrap();
        assert_eq!(ops.len(), 2);
        for (op, m) in ops {
            counts[op as usize] += 1;
            if SIGNED[op as usize] && m != 0.0 {
                signed += 1;
                negative += usize::from(m < 0.0);
            }
            assert_eq!(m.abs(), randaug::magnitude(op as usize, 9, 31, 224, 224));
        }
    }
    assert!(
        chi_square_z(&counts, &[2.0 * n as f64 / 14.0; 14]) < 4.5,
        "{counts:?}"
    );
    assert!(binomial_z(negative, signed, 0.5).abs() < 4.5);
    let erased: Vec<[i64; 4]> = s.iter().filter_map(|p| p.side.erase.unwrap()).collect();
    assert!(binomial_z(erased.len(), n, 0.25).abs() < 4.5);
    for e in &erased {
        assert!(
            e[0] >= 0 && e[1] >= 0 && e[0] + e[2] <= 224 && e[1] + e[3] <= 224,
            "{e:?}"
        );
        let frac = (e[2] * e[3]) as f64 / (224.0 * 224.0);
        assert!(frac <= 0.34 || *e == [0, 0, 224, 224], "{e:?}");
    }
}

#[test]
fn mixing_rates_lambda_and_pairs() {
    let aug = config("");
    let s = draws(&aug, 500, 375);
    let n = s.len();
    let mix: Vec<f64> = s.iter().filter_map(|p| p.mixup.unwrap()).collect();
    assert!(binomial_z(mix.len(), n, 0.5).abs() < 4.5);
    // lam = Beta(1,1)/2: 2·lam is uniform.
    let mut twice: Vec<f64> = mix.iter().map(|l| 2.0 * l).collect();
    assert!(ks(&mut twice, |x| x.clamp(0.0, 1.0)) < ks_critical(twice.len()));
    let cut: Vec<(f64, [i64; 4])> = s.iter().filter_map(|p| p.cutmix.unwrap()).collect();
    assert!(binomial_z(cut.len(), n, 0.5).abs() < 4.5);
    for (lam, b) in &cut {
        assert!((0.0..=1.0).contains(lam));
        assert!(
            0 <= b[0] && b[0] <= b[2] && b[2] <= 224 && 0 <= b[1] && b[1] <= b[3] && b[3] <= 224
        );
    }
    // Pair: uniform over the group (itself included) and over samples.
    let mut ids = vec![0u64; 32];
    let mut samples = vec![0u64; 50];
    for p in &s {
        let pair = p.pair.as_ref().unwrap();
        ids[pair.id2 as usize] += 1;
        samples[pair.sample2.unwrap() as usize] += 1;
        assert!(pair.crop.rrc.is_some());
    }
    assert!(chi_square_z(&ids, &[n as f64 / 32.0; 32]) < 4.5);
    assert!(chi_square_z(&samples, &[n as f64 / 50.0; 50]) < 4.5);
}

#[test]
fn pair_crop_is_the_pair_images_own_crop() {
    let aug = config("");
    let size = |i: u32| (200 + 10 * i as usize, 300);
    let d = Draw {
        aug: &aug,
        seed: 1,
        num_samples: 50,
        size_of: &size,
    };
    let group = [0u32, 1, 2, 3];
    let p = d.sample(2, 5, &group);
    let pair = p.pair.unwrap();
    let own = d.sample(pair.id2, pair.sample2.unwrap(), &group);
    assert_eq!(pair.crop, own.crop);
    assert_ne!(
        pair.side, own.side,
        "the pair gets fresh flip/RandAugment/erase draws"
    );
}

#[test]
fn mixing_groups_partition_the_listing() {
    let g = MixingGroups::new(3, 100, 32);
    let mut seen = [false; 100];
    for &img in g.order() {
        seen[img as usize] = true;
        let group = g.group_of(img);
        assert!(group.contains(&img));
        assert!(group.len() == 32 || group.len() == 4);
    }
    assert!(seen.iter().all(|&s| s));
    assert_eq!(g.group_of(g.order()[99]).len(), 4);
}

#[test]
fn sampler_version_pins_draws() {
    // A digest of draws over every transform (Beta below shape 1 too, and
    // the mixing groups): a change to any drawn value changes it. Then bump
    // PARAMS_SAMPLER_VERSION (derived-parameter datasets record it) and pin
    // the new digest with it.
    use sha2::{Digest, Sha256};
    let mut aug = config("    random_crop: {size: 256, padding: 4, pad_if_needed: true}\n");
    aug.mixup.as_mut().unwrap().alpha = 0.2;
    let groups = MixingGroups::new(21, 1000, 16);
    let size = |i: u32| {
        (
            1 + (i as usize * 7919) % 900,
            1 + (i as usize * 104_729) % 700,
        )
    };
    let d = Draw {
        aug: &aug,
        seed: 21,
        num_samples: 50,
        size_of: &size,
    };
    let mut h = Sha256::new();
    h.update(format!("{:?}", groups.order()));
    for i in 0..4000u32 {
        let id = (i * 37) % 1000;
        h.update(format!("{:?}", d.sample(id, i % 50, groups.group_of(id))));
    }
    let digest = format!("{:x}", h.finalize());
    assert_eq!(
        (PARAMS_SAMPLER_VERSION, &digest[..16]),
        (1, "2c8f743580d806b7"),
        "the sampler draws other values: bump PARAMS_SAMPLER_VERSION and pin this digest"
    );
}
