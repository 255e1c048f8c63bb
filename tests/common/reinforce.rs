//! A small reinforced-dataset job for the `dr reinforce` tests: an
//! ImageFolder of the augment fixtures, ml-dr's augmentation at 32 px, the
//! small ResNet fixture as teacher.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{dr_bin, fresh_dir, repo_root, text};

pub const CONFIG: &str = "reinforce:
  num_samples: 3
  topk: 5
  mixing_group: 4
  image_augmentation:
    uint8: {enable: true}
    random_resized_crop: {enable: true, size: 32}
    random_horizontal_flip: {enable: true, p: 0.5}
    rand_augment: {enable: true, p: 1.0}
    to_tensor: {enable: true}
    normalize: {mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
    random_erase: {enable: true, p: 0.25}
    mixup: {enable: true, alpha: 1.0, div_by: 2.0, p: 0.5}
    cutmix: {enable: true, alpha: 1.0, p: 0.5}
";

/// A small ImageFolder of the augment fixtures (every decoder) in 3 classes,
/// with `bad` adding a zero-byte, a truncated and a non-image file.
pub fn dataset(tag: &str, bad: bool) -> PathBuf {
    let root = fresh_dir(tag);
    let src = repo_root().join("tests/fixtures/augment/images");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for (i, f) in files.iter().enumerate() {
        let class = root.join(format!("data/c{}", i % 3));
        std::fs::create_dir_all(&class).unwrap();
        std::fs::copy(f, class.join(f.file_name().unwrap())).unwrap();
    }
    if bad {
        let jpeg = std::fs::read(src.join("jpeg.jpg")).unwrap();
        std::fs::write(root.join("data/c0/zero.jpg"), b"").unwrap();
        std::fs::write(root.join("data/c1/truncated.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
        std::fs::write(root.join("data/c2/text.png"), b"not an image").unwrap();
        std::fs::write(root.join("data/c0/huge.png"), png_header(20_000, 20_000)).unwrap();
        // 1x1 is a valid image (RandomResizedCrop enlarges it).
        let tiny = dr::augment::image::Rgb8::from_raw(1, 1, vec![200, 10, 10]);
        dr::augment::preview::write_png(&tiny, &root.join("data/c1/tiny.png")).unwrap();
    }
    std::fs::write(root.join("c.yaml"), CONFIG).unwrap();
    root
}

/// A PNG that claims `w`x`h` pixels and holds none (a decompression bomb's
/// header: decoding would allocate w*h*3 bytes).
pub fn png_header(w: u32, h: u32) -> Vec<u8> {
    let crc32 = |bytes: &[u8]| {
        let mut c = flate2::Crc::new();
        c.update(bytes);
        c.sum()
    };
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut v = (data.len() as u32).to_be_bytes().to_vec();
        let body = [kind, data].concat();
        v.extend_from_slice(&body);
        v.extend_from_slice(&crc32(&body).to_be_bytes());
        v
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    [
        b"\x89PNG\r\n\x1a\n".to_vec(),
        chunk(b"IHDR", &ihdr),
        // An empty zlib stream: the decoder reaches the pixels before failing.
        chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]),
        chunk(b"IEND", &[]),
    ]
    .concat()
}

pub fn teacher() -> String {
    repo_root()
        .join("tests/fixtures/teacher/resnet-legacy17.onnx")
        .display()
        .to_string()
}

/// `dr reinforce` of the test dataset under `root` into `root/out`.
pub fn reinforce_cmd(root: &Path, out: &str, extra: &[&str]) -> Command {
    reinforce_cmd_with(root, &teacher(), out, extra)
}

/// `reinforce_cmd` with another teacher.
pub fn reinforce_cmd_with(root: &Path, teacher: &str, out: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(dr_bin());
    c.arg("reinforce")
        .arg("--data")
        .arg(root.join("data"))
        .args(["--teacher", teacher, "--config"])
        .arg(root.join("c.yaml"))
        .arg("--out")
        .arg(root.join(out))
        .args(["--images-per-shard", "4"])
        .args(extra);
    c
}

pub fn reinforce(root: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    let mut c = reinforce_cmd(root, out, extra);
    c.arg("--quiet").output().expect("running dr")
}

pub fn ok(o: std::process::Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// Every file of a dataset folder, by name (temporary files excluded).
pub fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

pub fn assert_same(a: &Path, b: &Path) {
    let (fa, fb) = (files(a), files(b));
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&fa), names(&fb), "{} vs {}", a.display(), b.display());
    for ((n, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(
            x == y,
            "{n} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// `dr export OUT --format ml-dr --to TO`.
pub fn export_ml_dr(out: &Path, to: &Path) -> std::process::Output {
    super::dr(&[
        "export",
        out.to_str().unwrap(),
        "--format",
        "ml-dr",
        "--to",
        to.to_str().unwrap(),
    ])
}

/// `dr preview --from OUT --out PNG`: succeeds and writes the sheet.
pub fn preview_from(out: &Path, png: &Path) {
    ok(super::dr(&[
        "preview",
        "--from",
        out.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
    ]));
    assert!(std::fs::metadata(png).unwrap().len() > 0);
}
