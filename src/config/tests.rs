use super::*;

/// The shape of ml-dr's configs/imagenet/reinforce/*.yaml (runtime keys of
/// `parameters` abbreviated): `extra` is spliced into image_augmentation.
fn imagenet(extra: &str) -> String {
    format!(
        "parameters:
  dataset: imagenet
  batch_size: 32
  workers: 88
  seed: NULL
  reinforce:
    num_samples: 50
    num_candidates: NULL
    topk: 10
    compress: true
    joblib: false
    gzip: true
    image_augmentation:
      uint8:
        enable: true
      random_resized_crop:
        enable: true
        size: 224
      random_horizontal_flip:
        enable: true
        p: 0.5
      to_tensor:
        enable: true
      normalize:
        mean: [0.485, 0.456, 0.406]
        std: [0.229, 0.224, 0.225]
{extra}"
    )
}

const RANDAUG: &str = "      rand_augment:
        enable: true
        p: 1.0
      random_erase:
        enable: true
        p: 0.25
";
const MIXING: &str = "      mixup:
        enable: true
        alpha: 1.0
        div_by: 2.0
        p: 0.5
      cutmix:
        enable: true
        alpha: 1.0
        p: 0.5
";

fn parse(text: &str) -> Result<ReinforceConfig> {
    ReinforceConfig::parse(text, "test.yaml", false)
}

#[test]
fn imagenet_cropflip() {
    let c = parse(&imagenet("")).unwrap();
    assert_eq!((c.num_samples, c.topk, c.mixing_group), (50, 10, 32));
    let a = &c.augment;
    assert!(a.uint8 && a.to_tensor && !a.mixing());
    let rrc = a.random_resized_crop.as_ref().unwrap();
    assert_eq!(rrc.size, CropSize { h: 224, w: 224 });
    assert_eq!(rrc.scale, (0.08, 1.0));
    assert_eq!(rrc.ratio, (0.75, 4.0 / 3.0));
    assert_eq!(a.random_horizontal_flip, Some(0.5));
    assert!(a.rand_augment.is_none() && a.random_erase.is_none());
    assert_eq!(a.normalize.as_ref().unwrap().std, [0.229, 0.224, 0.225]);
    assert_eq!(a.pass_order, PassOrder::Pillow13);
}

#[test]
fn imagenet_randaug_mixing() {
    let c = parse(&imagenet(&format!("{RANDAUG}{MIXING}"))).unwrap();
    let a = &c.augment;
    assert_eq!(
        a.rand_augment,
        Some(RandAugment {
            p: 1.0,
            num_ops: 2,
            magnitude: 9,
            num_magnitude_bins: 31
        })
    );
    assert_eq!(
        a.random_erase,
        Some(RandomErase {
            p: 0.25,
            scale: (0.02, 0.33),
            ratio: (0.3, 3.3)
        })
    );
    assert_eq!(
        a.mixup,
        Some(MixUp {
            alpha: 1.0,
            p: 0.5,
            div_by: 2.0
        })
    );
    assert_eq!(a.cutmix, Some(CutMix { alpha: 1.0, p: 0.5 }));
    assert!(a.mixing());
    // The other two ImageNet configs are subsets of this one.
    assert!(
        parse(&imagenet(RANDAUG))
            .unwrap()
            .augment
            .rand_augment
            .is_some()
    );
    assert!(parse(&imagenet(MIXING)).unwrap().augment.mixing());
}

/// ml-dr's cifar100 reinforce config: resize then a padded random crop, no `enable` keys.
#[test]
fn cifar100() {
    let text = "parameters:
  dataset: cifar100
  reinforce:
    num_samples: 100
    topk: 10
    image_augmentation:
      uint8:
        enable: true
      resize:
        size: 224
      random_crop:
        size: 224
        padding: 16
      random_horizontal_flip:
        enable: true
        p: 0.5
      rand_augment:
        enable: true
        p: 1.0
      to_tensor:
        enable: true
      normalize:
        mean: [0.507075159237, 0.4865488733149, 0.440917843367]
        std: [0.267334285879, 0.2564384629170, 0.276150471325]
      random_erase:
        enable: true
        p: 0.25
";
    let a = parse(text).unwrap().augment;
    assert_eq!(
        a.resize,
        Some(Resize {
            size: ResizeSize::Shorter(224),
            max_size: None
        })
    );
    let rc = a.random_crop.unwrap();
    assert_eq!(rc.padding, [16; 4]);
    assert_eq!(rc.padding_mode, PaddingMode::Constant);
}

/// ml-dr's flowers102/food101 configs misspell the crop: refused by default,
/// ignored with a warning in compat mode as ml-dr's public code ignores it,
/// and then refused for what that leaves (samples of every size, which
/// ml-dr's own DataLoader cannot batch either).
#[test]
fn misspelled_crop() {
    let text = imagenet("").replace("random_resized_crop:", "random_resize_crop:");
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("random_resize_crop"), "{e}");
    assert!(e.contains("Did you mean `random_resized_crop`?"), "{e}");
    assert!(
        e.starts_with("test.yaml: `parameters.reinforce.image_augmentation.random_resize_crop`"),
        "{e}"
    );

    // Compat: no crop at all, which ml-dr cannot batch either unless images
    // share a size: dr says so.
    let e = ReinforceConfig::parse(&text, "t.yaml", true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("same size"), "{e}");
    assert!(
        e.contains("with `random_resize_crop` ignored")
            && e.contains("default collate")
            && e.contains("Fix:"),
        "{e}"
    );
    let with_center = text.replace(
        "      to_tensor:",
        "      center_crop:\n        size: 224\n      to_tensor:",
    );
    let c = ReinforceConfig::parse(&with_center, "t.yaml", true).unwrap();
    assert!(c.augment.random_resized_crop.is_none());
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0].contains("random_resize_crop") && c.warnings[0].contains("ignores"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn errors_name_key_value_and_what_is_allowed() {
    let cases = [
        (
            "p: 0.5",
            "p: 1.5",
            "random_horizontal_flip.p",
            "1.5 is out of range: allowed 0 to 1",
        ),
        (
            "size: 224",
            "size: -3",
            "random_resized_crop.size",
            "-3 is out of range",
        ),
        (
            "size: 224",
            "size: 224\n        scael: [0.1, 1.0]",
            "random_resized_crop.scael",
            "Did you mean `scale`?",
        ),
        (
            "size: 224",
            "size: 224\n        scale: [0.9, 0.1]",
            "random_resized_crop.scale",
            "not an increasing pair",
        ),
        (
            "size: 224",
            "size: 224\n        interpolation: bicubic",
            "interpolation",
            "only `bilinear`",
        ),
        (
            "std: [0.229, 0.224, 0.225]",
            "std: [0.229, 0.224]",
            "normalize.std",
            "expected 3 numbers",
        ),
        (
            "std: [0.229, 0.224, 0.225]",
            "std: [0.229, 0.0, 0.225]",
            "normalize.std",
            "positive",
        ),
        (
            "num_samples: 50",
            "num_samples: 0",
            "num_samples",
            "out of range",
        ),
        (
            "num_candidates: NULL",
            "num_candidates: 8",
            "num_candidates",
            "not supported",
        ),
        (
            "topk: 10",
            "topk: 10\n    topkk: 5",
            "reinforce.topkk",
            "Did you mean `topk`?",
        ),
    ];
    for (from, to, key, msg) in cases {
        let text = imagenet("").replacen(from, to, 1);
        assert_ne!(text, imagenet(""), "case {to} did not apply");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains(msg), "{to}: {e}");
    }
}

#[test]
fn disabled_and_required_transforms() {
    let off = imagenet("").replace(
        "random_horizontal_flip:\n        enable: true",
        "random_horizontal_flip:\n        enable: false",
    );
    assert!(
        parse(&off)
            .unwrap()
            .augment
            .random_horizontal_flip
            .is_none()
    );
    let no_uint8 = imagenet("").replace(
        "uint8:\n        enable: true",
        "uint8:\n        enable: false",
    );
    assert!(
        parse(&no_uint8)
            .unwrap_err()
            .to_string()
            .contains("`uint8` is required")
    );
    let no_tensor = imagenet("").replace(
        "to_tensor:\n        enable: true",
        "to_tensor:\n        enable: false",
    );
    assert!(
        parse(&no_tensor)
            .unwrap_err()
            .to_string()
            .contains("`to_tensor` is required")
    );
}

#[test]
fn short_form_and_our_keys() {
    let text = "reinforce:
  num_samples: 4
  mixing_group: 8
  resize_pass_order: pillow12
  image_augmentation:
    uint8: {}
    random_resized_crop: {size: [160, 128], scale: [0.35, 1.0]}
    to_tensor: {}
    mixup: {alpha: 0.2}
";
    let c = parse(text).unwrap();
    assert_eq!((c.num_samples, c.topk, c.mixing_group), (4, 10, 8));
    assert_eq!(c.augment.pass_order, PassOrder::Pillow12);
    assert_eq!(
        c.augment.random_resized_crop.unwrap().size,
        CropSize { h: 160, w: 128 }
    );
    assert_eq!(
        c.augment.mixup,
        Some(MixUp {
            alpha: 0.2,
            p: 1.0,
            div_by: 1.0
        })
    );
    let bad = text.replace("pillow12", "pillow11");
    assert!(
        parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("allowed pillow13 (default), pillow12")
    );
}

#[test]
fn unreadable_files() {
    assert!(parse("").unwrap_err().to_string().contains("empty"));
    assert!(
        parse("a: [")
            .unwrap_err()
            .to_string()
            .contains("not valid YAML")
    );
    assert!(
        parse("foo: 1")
            .unwrap_err()
            .to_string()
            .contains("parameters.reinforce")
    );
    let e = ReinforceConfig::load(Path::new("/nonexistent/c.yaml"), false)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("/nonexistent/c.yaml: cannot read"), "{e}");
}

/// The written-out config reads back to the same config.
#[test]
fn json_form_reads_back() {
    let mut texts: Vec<String> = [
        include_str!("../../configs/imagenet-cropflip.yaml"),
        include_str!("../../configs/imagenet-randaug_mixing.yaml"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    texts.push(
        "reinforce:
  num_samples: 3
  topk: 4
  mixing_group: 5
  resize_pass_order: pillow12
  image_augmentation:
    uint8: {}
    resize: {size: [40, 50], max_size: 90}
    center_crop: {size: 36}
    random_crop: {size: [30, 32], padding: [1, 2, 3, 4], pad_if_needed: true, fill: 9, padding_mode: reflect}
    random_horizontal_flip: {p: 0.25}
    rand_augment: {p: 0.5, num_ops: 3, magnitude: 5, num_magnitude_bins: 11}
    to_tensor: {}
    random_erase: {p: 0.3, scale: [0.1, 0.2], ratio: [0.5, 2.0]}
    normalize: {mean: [0.5, 0.25, 0.125], std: [0.2, 0.3, 0.4]}
    cutmix: {alpha: 0.7, p: 0.9}
"
        .into(),
    );
    for text in texts {
        let c = parse(&text).unwrap();
        let json = serde_json::json!({ "reinforce": c.to_json() }).to_string();
        let back = parse(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
        assert_eq!(back, c, "{json}");
    }
    let c = parse(include_str!("../../configs/imagenet-randaug.yaml")).unwrap();
    assert_eq!(
        c.to_json()["image_augmentation"]["normalize"]["mean"],
        serde_json::json!([0.485, 0.456, 0.406])
    );
}
