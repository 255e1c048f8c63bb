//! Commands on a finished (or partial) reinforced dataset: verify, show, merge.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use dr::augment::record;
use dr::store::reader::Reinforced;

pub fn verify(out: &Path, images: Option<&Path>) -> Result<()> {
    let mut failed = false;
    if out.join("manifest.json").exists() {
        let d = Reinforced::open(out)?;
        let r = dr::store::verify::verify(&d);
        for p in r.problems.iter().take(50) {
            out!("problem  {p}");
        }
        if r.problems.len() > 50 {
            out!("... and {} more", r.problems.len() - 50);
        }
        out!(
            "{} shards, {} records checked ({} of {} shards of the job, status {:?}): {} problems",
            r.shards,
            r.records,
            r.shards,
            d.manifest.shard_count,
            d.manifest.status,
            r.problems.len()
        );
        failed |= !r.problems.is_empty();
    }
    if let Some(images) = images {
        let rows = dr::store::images::read(&out.join("images.tsv"))?;
        let d = dr::store::images::verify(&rows, images);
        for p in &d.missing {
            out!("missing  {p}");
        }
        for p in &d.changed {
            out!("changed  {p}");
        }
        out!(
            "{} files checked: {} missing, {} changed{}",
            d.checked,
            d.missing.len(),
            d.changed.len(),
            if d.unhashed > 0 {
                format!(" ({} rows hashed by other tasks; merge first)", d.unhashed)
            } else {
                String::new()
            }
        );
        if !d.missing.is_empty() || !d.changed.is_empty() {
            bail!(
                "{} no longer matches {}/images.tsv: soft labels would go to the wrong images. Fix: restore the files, or regenerate",
                images.display(),
                out.display()
            );
        }
    }
    if failed {
        bail!(
            "{} failed verification (problems above). Fix: delete the named shards and rerun the same `dr reinforce` command to redo them",
            out.display()
        );
    }
    Ok(())
}

/// Class names, one per line (`--labels`).
pub fn labels(path: Option<&Path>) -> Result<Option<Vec<String>>> {
    path.map(|l| {
        std::fs::read_to_string(l)
            .map(|t| t.lines().map(str::to_owned).collect())
            .map_err(|e| anyhow::anyhow!("{}: {e}", l.display()))
    })
    .transpose()
}

pub fn show(
    out: &Path,
    image: u32,
    sample: Option<u32>,
    labels_file: Option<&Path>,
    json: bool,
) -> Result<()> {
    let d = Reinforced::open(out)?;
    let names = labels(labels_file)?;
    let recs = d.records(image)?;
    let row = &d.rows[image as usize];
    if json {
        let samples: Vec<serde_json::Value> = recs
            .iter()
            .enumerate()
            .filter(|(s, _)| sample.is_none_or(|j| j as usize == *s))
            .map(|(_, r)| {
                serde_json::json!({
                    "compressed": r.params.as_ref().map(|p| record::compress(&d.config.augment, p)),
                    "probs": r.probs,
                    "classes": r.classes,
                })
            })
            .collect();
        out!(
            "{}",
            serde_json::json!({"id": image, "path": row.path, "label": row.label, "samples": samples})
        );
        return Ok(());
    }
    out!("image {image}: {} (label {})", row.path, row.label);
    let name = |c: u32| {
        names
            .as_ref()
            .and_then(|n| n.get(c as usize))
            .map_or(String::new(), |n| format!(" {n}"))
    };
    for (s, r) in recs.iter().enumerate() {
        if sample.is_some_and(|j| j as usize != s) {
            continue;
        }
        match &r.params {
            None => out!("  sample {s}: invalid (bad image)"),
            Some(p) => {
                out!("  sample {s}: {}", record::compress(&d.config.augment, p));
                let top: Vec<String> = r
                    .probs
                    .iter()
                    .zip(&r.classes)
                    .map(|(v, c)| format!("{c}{} {:.1}%", name(*c), 100.0 * v))
                    .collect();
                out!("    top-{}: {}", top.len(), top.join(", "));
            }
        }
    }
    if let Some(j) = sample
        && j as usize >= recs.len()
    {
        bail!(
            "sample {j} does not exist ({} samples per image)",
            recs.len()
        );
    }
    Ok(())
}

pub fn merge(parts: &[PathBuf], out: &Path) -> Result<()> {
    let m = dr::store::merge::merge(parts, out)?;
    out!(
        "{}: {} shards from {} tasks ({} hard-linked, {} copied)",
        out.display(),
        m.shards,
        parts.len(),
        m.linked,
        m.copied
    );
    Ok(())
}

pub fn preview_from(
    out: &Path,
    ids: &[u32],
    samples: u32,
    images: Option<&Path>,
    labels_file: Option<&Path>,
    png: &Path,
) -> Result<()> {
    let d = Reinforced::open(out)?;
    let ids: Vec<u32> = if ids.is_empty() {
        d.order.iter().copied().take(8).collect()
    } else {
        ids.to_vec()
    };
    let ns = d.num_samples();
    let picks: Vec<(u32, usize)> = ids
        .iter()
        .flat_map(|&id| (0..(samples as usize).min(ns)).map(move |s| (id, s)))
        .collect();
    let root = images.map_or_else(|| PathBuf::from(&d.manifest.source), Path::to_path_buf);
    let names = labels(labels_file)?;
    let (o, captions) = dr::pipeline::replay::replay(&d, &root, &picks, names.as_deref())?;
    let sheet = dr::augment::preview::contact_sheet(&o, &captions);
    dr::augment::preview::write_png(&sheet, png)?;
    eprintln!(
        "wrote {} ({} stored samples)",
        png.display(),
        o.samples.len()
    );
    Ok(())
}

pub fn export_ml_dr(out: &Path, to: &Path, bundle: Option<&Path>) -> Result<()> {
    let d = Reinforced::open(out)?;
    let e = dr::store::ml_dr::export::export(&d, to)?;
    if let Some(b) = bundle {
        let n = dr::store::ml_dr::bundle::write(to, b)?;
        out!(
            "{}: config.pth.tar and {n} image files under reinforced_data/",
            b.display()
        );
    }
    out!(
        "{}: config.pth.tar and {} image files ({} samples each) for ml-dr's ReinforcedDataset",
        to.display(),
        e.files,
        d.num_samples()
    );
    out!(
        "note: the records assume Pillow's {} resize pass order (resize_pass_order); a student replaying with {} sees crops differ by a level on some pixels",
        d.config.augment.pass_order.name(),
        match d.config.augment.pass_order {
            dr::config::PassOrder::Pillow13 => "Pillow <= 12.3",
            dr::config::PassOrder::Pillow12 => "Pillow >= 13",
        }
    );
    if !e.skipped.is_empty() {
        out!(
            "{} bad images have no file (ml-dr has no invalid record): leave them out of the training set (see {}/bad-images.tsv)",
            e.skipped.len(),
            out.display()
        );
    }
    Ok(())
}

pub fn import_ml_dr(dir: &Path, data: &Path, out: &Path) -> Result<()> {
    let listing = dr::dataset::listing::image_folder(data)?;
    let r = dr::store::ml_dr::import::import(dir, &listing, out)?;
    out!(
        "{}: {} images imported from {}{}",
        out.display(),
        r.images,
        dir.display(),
        if r.missing > 0 {
            format!(" ({} without a record, flagged invalid)", r.missing)
        } else {
            String::new()
        }
    );
    Ok(())
}
