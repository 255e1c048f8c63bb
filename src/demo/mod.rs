//! `dr demo`: a labelled image set drawn on the spot (no network), a small
//! teacher really trained on that distribution (`tools/train_demo_teacher.py`,
//! embedded in the binary), reinforced end to end.

pub mod shapes;

use std::path::Path;

use anyhow::{Context, Result};
use rayon::prelude::*;

use crate::store::layout::flag;
use crate::store::reader::Reinforced;

/// The demo teacher: ONNX, input [batch, 3, 32, 32], 10 classes.
pub const TEACHER: &[u8] = include_bytes!("../../assets/demo-teacher.onnx");
/// The demo's reinforce config (configs/demo.yaml).
pub const CONFIG: &str = include_str!("../../configs/demo.yaml");

/// Writes `per_class` PNGs of every class as an ImageFolder under `dir`
/// (`dir/<class>/<class>_NNNN.png`).
pub fn write_data(dir: &Path, seed: u64, per_class: u32) -> Result<()> {
    for class in shapes::CLASSES {
        std::fs::create_dir_all(dir.join(class))
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    let jobs: Vec<(usize, u32)> = (0..shapes::CLASSES.len())
        .flat_map(|c| (0..per_class).map(move |i| (c, i)))
        .collect();
    jobs.par_iter().try_for_each(|&(c, i)| {
        let name = shapes::CLASSES[c];
        let path = dir.join(name).join(format!("{name}_{i:04}.png"));
        crate::augment::preview::write_png(&shapes::draw(seed, c, i), &path)
    })
}

/// Teacher top-1/top-5 agreement with the true labels.
#[derive(Debug, Default, serde::Serialize)]
pub struct Accuracy {
    /// Samples counted: valid and not mixed (a mixed sample has two labels).
    pub samples: u64,
    pub top1: f64,
    pub top5: f64,
}

pub fn accuracy(d: &Reinforced) -> Result<Accuracy> {
    let (mut n, mut t1, mut t5) = (0u64, 0u64, 0u64);
    for id in 0..d.rows.len() as u32 {
        let label = d.rows[id as usize].label;
        for (j, raw) in d.raw(id)?.chunks(d.layout.size).enumerate() {
            if d.layout.flags(raw) & flag::INVALID != 0 {
                continue;
            }
            // Derived parameters (`--params derived`) are in no flag: decode them.
            let r = d.decode(id, j as u32, raw)?;
            let p = r.params.as_ref().expect("a usable record has parameters");
            if matches!(p.mixup, Some(Some(_))) || matches!(p.cutmix, Some(Some(_))) {
                continue;
            }
            n += 1;
            t1 += (r.classes.first() == Some(&label)) as u64;
            t5 += r.classes.iter().take(5).any(|&c| c == label) as u64;
        }
    }
    let share = |k: u64| k as f64 / n.max(1) as f64;
    Ok(Accuracy {
        samples: n,
        top1: share(t1),
        top5: share(t5),
    })
}
