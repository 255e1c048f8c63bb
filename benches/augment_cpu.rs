//! The CPU reference ops, per call on one core, at ml-dr's ImageNet sizes.
//! Peer: tools/bench_torchvision_cpu.py times torchvision/Pillow on the same
//! inputs (`torch.set_num_threads(1)`); compare the two on one machine.

use criterion::{Criterion, criterion_group, criterion_main};
use dr::augment::geometry::crop;
use dr::augment::image::Rgb8;
use dr::augment::params::Draw;
use dr::augment::pipeline::{augment, float_stage, uint8_stage};
use dr::augment::randaug::{OP_NAMES, apply_op, magnitude};
use dr::augment::resample::resize_bilinear;
use dr::config::{PassOrder, ReinforceConfig};
use dr::dataset::decode::{decode_rgb, decode_rgb_bytes};
use std::hint::black_box;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/augment/images")
        .join(name)
}

const CONFIG: &str = "reinforce:
  num_samples: 50
  image_augmentation:
    uint8: {}
    random_resized_crop: {size: 224}
    random_horizontal_flip: {p: 0.5}
    rand_augment: {p: 1.0}
    to_tensor: {}
    random_erase: {p: 0.25}
    normalize: {mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
    mixup: {alpha: 1.0, div_by: 2.0, p: 0.5}
    cutmix: {alpha: 1.0, p: 0.5}
";

fn bench(c: &mut Criterion) {
    let photo = decode_rgb(&fixture("photo.png")).unwrap(); // 451x300
    let pair = decode_rgb(&fixture("pair.png")).unwrap();
    let jpeg = std::fs::read(fixture("jpeg.jpg")).unwrap();
    c.bench_function("decode_jpeg_160x107", |b| {
        b.iter(|| decode_rgb_bytes(black_box(&jpeg), "bench").unwrap())
    });

    let cropped = crop(&photo, 17, 70, 244, 205);
    c.bench_function("rrc_resize_205x244_to_224", |b| {
        b.iter(|| resize_bilinear(black_box(&cropped), 224, 224, PassOrder::Pillow13))
    });
    let whole: Rgb8 = photo.clone();
    c.bench_function("rrc_resize_451x300_to_224", |b| {
        b.iter(|| resize_bilinear(black_box(&whole), 224, 224, PassOrder::Pillow13))
    });

    let t224 = resize_bilinear(&cropped, 224, 224, PassOrder::Pillow13).to_chw();
    let mut g = c.benchmark_group("randaug_224");
    for (op, name) in OP_NAMES.iter().enumerate() {
        let m = magnitude(op, 9, 31, 224, 224);
        g.bench_function(*name, |b| {
            b.iter_batched_ref(
                || t224.clone(),
                |t| apply_op(t, op, m),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    let cfg = ReinforceConfig::parse(CONFIG, "bench", false)
        .unwrap()
        .augment;
    let size = |i: u32| {
        if i == 0 {
            (photo.width, photo.height)
        } else {
            (pair.width, pair.height)
        }
    };
    let draw = Draw {
        aug: &cfg,
        seed: 1,
        num_samples: 50,
        size_of: &size,
    };
    let params: Vec<_> = (0..50).map(|s| draw.sample(0, s, &[0, 1])).collect();
    c.bench_function("float_stage_224", |b| {
        let side = &params[0].side;
        b.iter(|| float_stage(&cfg, black_box(&t224), side))
    });
    c.bench_function("uint8_stage_224_flip_randaug", |b| {
        let img = resize_bilinear(&cropped, 224, 224, PassOrder::Pillow13);
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) % params.len();
            uint8_stage(black_box(&img), &params[k].side)
        })
    });
    c.bench_function("sample_params_randaug_mixing", |b| {
        let mut s = 0u32;
        b.iter(|| {
            s = s.wrapping_add(1);
            draw.sample(0, s % 50, &[0, 1])
        })
    });
    c.bench_function("full_sample_randaug_mixing_224", |b| {
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) % params.len();
            let p = &params[k];
            let pi = p
                .pair
                .as_ref()
                .map(|q| if q.id2 == 0 { &photo } else { &pair });
            augment(&cfg, black_box(&photo), p, pi)
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);
