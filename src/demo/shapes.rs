//! The demo's procedurally generated images: ten shape classes drawn at a
//! random place, size, rotation and colour on a noisy background of another
//! colour. Every image is a pure function of (seed, class, index), so the
//! training script (`tools/train_demo_teacher.py`, which calls `dr demo
//! --write-data`) and `dr demo` draw from the same distribution.

use std::f64::consts::PI;

use crate::augment::image::Rgb8;
use crate::rng::Philox;

/// Sorted, so a class's index is its ImageFolder label.
pub const CLASSES: [&str; 10] = [
    "checker", "circle", "diamond", "hstripes", "plus", "ring", "square", "triangle", "vstripes",
    "x",
];

/// Philox stream of the demo images (counter word 2).
const STREAM: u32 = 0xDE30;

/// Whether (u, v), in shape coordinates (unit radius), is inside `class`.
fn inside(class: usize, u: f64, v: f64) -> bool {
    let r = (u * u + v * v).sqrt();
    let in_square = u.abs() <= 0.9 && v.abs() <= 0.9;
    let band = |t: f64, per_unit: f64| ((t + 1.0) * per_unit).floor() as i64 % 2 == 0;
    match CLASSES[class] {
        "checker" => in_square && (band(u, 2.0) == band(v, 2.0)),
        "circle" => r <= 1.0,
        "diamond" => u.abs() + v.abs() <= 1.0,
        "hstripes" => in_square && band(v, 2.5),
        "plus" => (u.abs() <= 0.3 && v.abs() <= 1.0) || (v.abs() <= 0.3 && u.abs() <= 1.0),
        "ring" => (0.6..=1.0).contains(&r),
        "square" => u.abs() <= 0.8 && v.abs() <= 0.8,
        // Vertices (0, -1), (±0.87, 0.5).
        "triangle" => v <= 0.5 && v >= -1.0 + 1.724 * u.abs(),
        "vstripes" => in_square && band(u, 2.5),
        "x" => ((u - v).abs() <= 0.35 || (u + v).abs() <= 0.35) && r <= 1.0,
        _ => unreachable!(),
    }
}

fn colour(r: &mut Philox) -> [f64; 3] {
    [r.uniform_f64(), r.uniform_f64(), r.uniform_f64()].map(|c| 40.0 + 200.0 * c)
}

/// Image `index` of `class`: side 56 to 88 px, 2x2 supersampled edges.
pub fn draw(seed: u64, class: usize, index: u32) -> Rgb8 {
    let mut r = Philox::new(seed, class as u32, index, STREAM);
    let w = 56 + r.below(33) as usize;
    let h = 56 + r.below(33) as usize;
    let bg = colour(&mut r);
    let mut fg = colour(&mut r);
    // Keep the shape visible: push the foreground away from the background.
    let dist: f64 = bg.iter().zip(&fg).map(|(a, b)| (a - b).abs()).sum();
    if dist < 150.0 {
        fg = bg.map(|c| if c > 140.0 { c - 110.0 } else { c + 110.0 });
    }
    let side = w.min(h) as f64;
    let radius = side * (0.25 + 0.15 * r.uniform_f64());
    let cx = radius + (w as f64 - 2.0 * radius) * r.uniform_f64();
    let cy = radius + (h as f64 - 2.0 * radius) * r.uniform_f64();
    // Round shapes and triangles turn freely; the rest keep their axis
    // within ±0.2 rad (a square turned 45° would be a diamond, a plus an x).
    let angle = match CLASSES[class] {
        "circle" | "ring" | "triangle" => r.uniform_f64() * 2.0 * PI,
        _ => (r.uniform_f64() - 0.5) * 0.4,
    };
    let (sin, cos) = angle.sin_cos();
    let mut img = Rgb8::new(w, h);
    for y in 0..h {
        for x in 0..w {
            let mut cover = 0.0;
            for (dx, dy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                let (px, py) = ((x as f64 + dx - cx) / radius, (y as f64 + dy - cy) / radius);
                let (u, v) = (cos * px + sin * py, -sin * px + cos * py);
                if inside(class, u, v) {
                    cover += 0.25;
                }
            }
            let noise = (r.uniform_f64() - 0.5) * 40.0;
            for c in 0..3 {
                let v = bg[c] * (1.0 - cover) + fg[c] * cover + noise;
                img.data[(y * w + x) * 3 + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_deterministic_and_differ_by_class() {
        let a = draw(3, 2, 7);
        assert_eq!(a, draw(3, 2, 7));
        assert_ne!(a, draw(3, 2, 8));
        assert_ne!(a.data, draw(4, 2, 7).data);
        assert!((56..=88).contains(&a.width) && (56..=88).contains(&a.height));
    }

    #[test]
    fn classes_are_in_image_folder_order() {
        let mut sorted = CLASSES;
        sorted.sort();
        assert_eq!(sorted, CLASSES);
    }

    #[test]
    fn every_class_covers_part_of_the_image() {
        // Shape pixels drawn without noise: between 3% and 70% of the image.
        for (class, name) in CLASSES.iter().enumerate() {
            let mut count = 0;
            let n = 41;
            for i in 0..n {
                for j in 0..n {
                    let (u, v) = (
                        -1.5 + 3.0 * i as f64 / (n - 1) as f64,
                        -1.5 + 3.0 * j as f64 / (n - 1) as f64,
                    );
                    count += inside(class, u, v) as usize;
                }
            }
            let share = count as f64 / (n * n) as f64;
            assert!((0.03..0.7).contains(&share), "{name}: {share}");
        }
    }
}
