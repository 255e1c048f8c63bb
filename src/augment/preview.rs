//! `dr preview`: a contact sheet of augmentations, each tile the final
//! tensor (normalisation undone) with its parameters captioned, so a person
//! can see what a config does.

use std::path::Path;

use anyhow::{Context, Result};
use font8x8::UnicodeFonts;

use super::image::Rgb8;
use super::params::SampleParams;
use super::randaug::OP_NAMES;
use super::run::Outcome;

const CAPTION_LINES: usize = 6;
const LINE_H: usize = 10;
const PAD: usize = 6;

/// One short line per transform that did something.
pub fn caption(index: usize, p: &SampleParams) -> Vec<String> {
    let mut lines = vec![];
    let mut head = format!("#{index}");
    if let Some([i, j, h, w]) = p.crop.rrc {
        head += &format!(" crop {w}x{h}@{j},{i}");
    }
    if let Some((i, j)) = p.crop.random_crop {
        head += &format!(" crop@{j},{i}");
    }
    if p.side.flip == Some(true) {
        head += " flip";
    }
    lines.push(head);
    if let Some(Some(ops)) = &p.side.rand_augment {
        let ops: Vec<String> = ops
            .iter()
            .map(|&(op, m)| {
                if m == 0.0 {
                    OP_NAMES[op as usize].to_string()
                } else {
                    format!("{} {m:.2}", OP_NAMES[op as usize])
                }
            })
            .collect();
        lines.push(ops.join(", "));
    }
    if let Some(Some([x, y, h, w])) = p.side.erase {
        lines.push(format!("erase {w}x{h}@{y},{x}"));
    }
    if let Some(q) = &p.pair {
        let mut mix = String::new();
        if let Some(Some(l)) = p.mixup {
            mix += &format!("mixup {l:.2} ");
        }
        if let Some(Some((l, b))) = p.cutmix {
            mix += &format!("cutmix {l:.2} [{},{},{},{}] ", b[0], b[1], b[2], b[3]);
        }
        if !mix.is_empty() {
            lines.push(format!("{mix}with {}", q.id2));
        }
    }
    lines
}

/// Breaks a caption line at spaces to fit `width` characters.
fn wrap(line: &str, width: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    for word in line.split(' ') {
        let cur = out.last_mut().unwrap();
        if !cur.is_empty() && cur.len() + 1 + word.len() > width {
            out.push(word.to_owned());
        } else {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(word);
        }
    }
    out
}

fn draw_text(img: &mut Rgb8, x0: usize, y0: usize, text: &str, max_chars: usize) {
    for (k, ch) in text.chars().take(max_chars).enumerate() {
        let glyph = font8x8::BASIC_FONTS
            .get(ch)
            .or_else(|| font8x8::BASIC_FONTS.get('?'))
            .unwrap_or([0; 8]);
        for (gy, row) in glyph.iter().enumerate() {
            for gx in 0..8 {
                if row >> gx & 1 == 1 {
                    let (x, y) = (x0 + k * 8 + gx, y0 + gy);
                    if x < img.width && y < img.height {
                        img.data[(y * img.width + x) * 3..][..3].copy_from_slice(&[20, 20, 20]);
                    }
                }
            }
        }
    }
}

/// Nearest-neighbour enlargement by an integer factor (small tensors).
fn enlarge(img: &Rgb8, k: usize) -> Rgb8 {
    let mut out = Rgb8::new(img.width * k, img.height * k);
    for y in 0..out.height {
        for x in 0..out.width {
            let px = img.px(x / k, y / k);
            out.data[(y * out.width + x) * 3..][..3].copy_from_slice(&px);
        }
    }
    out
}

/// Lays the samples out in a grid with captions; `extra[i]` lines (e.g. the
/// teacher's top-k) go first under sample i.
pub fn contact_sheet(o: &Outcome, extra: &[Vec<String>]) -> Rgb8 {
    let n = o.samples.len();
    let t = &o.samples[0].tensor;
    // Tensors under 96 px are shown enlarged so a person can see them.
    let k = (96 / t.width.max(1)).max(1);
    let (tw, th) = (
        (t.width * k).max(160),
        t.height * k + CAPTION_LINES * LINE_H + 4,
    );
    let cols = (n as f64).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let (w, h) = (PAD + cols * (tw + PAD), PAD + rows * (th + PAD));
    let mut sheet = Rgb8::from_raw(w, h, vec![245; w * h * 3]);
    for i in 0..n {
        let (x0, y0) = (PAD + (i % cols) * (tw + PAD), PAD + (i / cols) * (th + PAD));
        let img = enlarge(&o.display_image(i), k);
        for y in 0..img.height {
            let src = &img.data[y * img.width * 3..(y + 1) * img.width * 3];
            sheet.data[((y0 + y) * w + x0) * 3..][..src.len()].copy_from_slice(src);
        }
        let head = extra.get(i).cloned().unwrap_or_default();
        let lines: Vec<String> = head
            .iter()
            .chain(&caption(i, &o.params[i]))
            .flat_map(|l| wrap(l, tw / 8))
            .collect();
        for (l, line) in lines.iter().take(CAPTION_LINES).enumerate() {
            draw_text(
                &mut sheet,
                x0,
                y0 + img.height + 3 + l * LINE_H,
                line,
                tw / 8,
            );
        }
    }
    sheet
}

pub fn write_png(img: &Rgb8, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    image::save_buffer(
        path,
        &img.data,
        img.width as u32,
        img.height as u32,
        image::ExtendedColorType::Rgb8,
    )
    .with_context(|| format!("writing {}", path.display()))
}
