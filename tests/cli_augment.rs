//! `dr augment` and `dr preview` as a user runs them, bad input included.

mod common;

use std::path::Path;

use common::{dr, repo_root, text};

fn photo(name: &str) -> String {
    repo_root()
        .join("tests/fixtures/augment/images")
        .join(name)
        .display()
        .to_string()
}

const CONFIG: &str = "parameters:
  reinforce:
    num_samples: 6
    image_augmentation:
      uint8: {enable: true}
      random_resized_crop: {enable: true, size: 96}
      random_horizontal_flip: {enable: true, p: 0.5}
      rand_augment: {enable: true, p: 1.0}
      to_tensor: {enable: true}
      normalize: {mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
      random_erase: {enable: true, p: 0.25}
      mixup: {enable: true, alpha: 1.0, div_by: 2.0, p: 0.5}
      cutmix: {enable: true, alpha: 1.0, p: 0.5}
";

fn write_config(dir: &Path, body: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("c.yaml");
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

fn npy_shape(path: &Path) -> Vec<usize> {
    let (shape, _): (Vec<usize>, Vec<u8>) = match dr::npy::read::<u8>(path) {
        Ok(v) => v,
        Err(_) => {
            let (s, _) = dr::npy::read::<f32>(path).unwrap();
            (s, vec![])
        }
    };
    shape
}

#[test]
fn augment_writes_samples_and_replays_them_exactly() {
    let dir = common::fresh_dir("cli-augment-replay");
    let cfg = write_config(&dir, CONFIG);
    let out = dir.join("a");
    let o = dr(&[
        "augment",
        "--config",
        &cfg,
        "--image",
        &photo("photo.png"),
        "--pair",
        &photo("pair.png"),
        "--seed",
        "11",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(npy_shape(&out.join("samples.npy")), [6, 3, 96, 96]);
    assert_eq!(npy_shape(&out.join("uint8.npy")), [6, 3, 96, 96]);
    let params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("params.json")).unwrap()).unwrap();
    assert_eq!(params.as_array().unwrap().len(), 6);
    assert!(params[0]["compressed"].is_array() && params[0]["params"].is_object());

    // --params replays the stored records to the same bytes.
    let again = dir.join("b");
    let o = dr(&[
        "augment",
        "--config",
        &cfg,
        "--image",
        &photo("photo.png"),
        "--pair",
        &photo("pair.png"),
        "--params",
        out.join("params.json").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        std::fs::read(out.join("samples.npy")).unwrap(),
        std::fs::read(again.join("samples.npy")).unwrap()
    );

    // Another seed draws other parameters.
    let other = dir.join("c");
    let o = dr(&[
        "augment",
        "--config",
        &cfg,
        "--image",
        &photo("photo.png"),
        "--pair",
        &photo("pair.png"),
        "--seed",
        "12",
        "--out",
        other.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert_ne!(
        std::fs::read(out.join("params.json")).unwrap(),
        std::fs::read(other.join("params.json")).unwrap()
    );
}

#[test]
fn preview_draws_a_contact_sheet() {
    let dir = common::fresh_dir("cli-augment-preview");
    let cfg = write_config(&dir, CONFIG);
    let png = dir.join("sheet.png");
    let o = dr(&[
        "preview",
        "--config",
        &cfg,
        "--image",
        &photo("jpeg.jpg"),
        "--samples",
        "5",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let img = image::open(&png).unwrap();
    assert!(
        img.width() > 3 * 96 && img.height() > 2 * 96,
        "{}x{}",
        img.width(),
        img.height()
    );
}

#[test]
fn bad_input_says_file_problem_and_fix() {
    let dir = common::fresh_dir("cli-augment-bad");
    let cfg = write_config(&dir, CONFIG);
    let out = dir.join("o");
    let run = |args: &[&str]| {
        let o = dr(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = text(&o.stderr);
        assert!(!e.contains("panicked"), "{e}");
        e
    };
    // Missing image.
    let e = run(&[
        "augment",
        "--config",
        &cfg,
        "--image",
        "/nonexistent.jpg",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        e.contains("/nonexistent.jpg") && e.contains("cannot read"),
        "{e}"
    );
    // Not an image.
    let junk = dir.join("junk.jpg");
    std::fs::write(&junk, b"\xFF\xD8\xFFjunk").unwrap();
    let e = run(&[
        "augment",
        "--config",
        &cfg,
        "--image",
        junk.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        e.contains("junk.jpg") && e.contains("not a decodable image") && e.contains("Fix:"),
        "{e}"
    );
    // A truncated JPEG (Pillow refuses it; libjpeg alone would pad with gray).
    let bytes = std::fs::read(photo("jpeg.jpg")).unwrap();
    let cut = dir.join("cut.jpg");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = run(&[
        "augment",
        "--config",
        &cfg,
        "--image",
        cut.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(e.contains("cut.jpg") && e.contains("truncated"), "{e}");
    // Misspelled transform, with ml-dr's own flowers102 typo.
    let typo = write_config(
        &dir.join("t"),
        &CONFIG.replace("random_resized_crop", "random_resize_crop"),
    );
    let e = run(&[
        "augment",
        "--config",
        &typo,
        "--image",
        &photo("photo.png"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        e.contains("random_resize_crop") && e.contains("Did you mean `random_resized_crop`?"),
        "{e}"
    );
    // Replay records that do not fit the config.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "[[1, 2, 3]]").unwrap();
    let e = run(&[
        "augment",
        "--config",
        &cfg,
        "--image",
        &photo("photo.png"),
        "--params",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(e.contains("bad.json") && e.contains("entry 0"), "{e}");
    assert!(!out.exists(), "nothing is written for bad input");
}
