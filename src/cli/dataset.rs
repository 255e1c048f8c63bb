//! Commands on a finished (or partial) reinforced dataset: verify, show, merge.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use dr::augment::record;
use dr::store::reader::Reinforced;

/// `dr verify` found an unfinished dataset: not an error in the data, but
/// not a dataset to train on either (exit code 4).
#[derive(Debug, thiserror::Error)]
#[error(
    "{out} is incomplete: {done} of {total} shards written (status running). Fix: rerun the same `dr reinforce` command to finish it"
)]
pub struct Incomplete {
    pub out: String,
    pub done: usize,
    pub total: u32,
}

/// A folder `dr reinforce` wrote, or why `out` is not one.
fn dataset_dir(out: &Path) -> Result<()> {
    if !out.exists() {
        bail!(
            "{}: no such folder. Fix: give the folder `dr reinforce --out` wrote",
            out.display()
        );
    }
    if !out.join("manifest.json").is_file() {
        bail!(
            "{}: no manifest.json, so not a reinforced dataset. Fix: give the folder `dr reinforce --out` wrote",
            out.display()
        );
    }
    Ok(())
}

pub fn verify(out: &Path, images: Option<&Path>) -> Result<()> {
    dataset_dir(out)?;
    let d = Reinforced::open(out)?;
    let r = dr::store::verify::verify(&d);
    for p in r.problems.iter().take(50) {
        out!("problem  {p}");
    }
    if r.problems.len() > 50 {
        out!("... and {} more", r.problems.len() - 50);
    }
    let m = &d.manifest;
    let scope = match &m.task {
        Some(t) => format!(
            "task {} of {}: shards {}..{} of the job's {}",
            t.index, t.count, t.shards[0], t.shards[1], m.shard_count
        ),
        None => format!("the whole job: {} shards", m.shard_count),
    };
    out!(
        "{} shards, {} records checked ({scope}; status {}): {} problems",
        r.shards,
        r.records,
        match m.status {
            dr::store::manifest::Status::Complete => "complete",
            dr::store::manifest::Status::Running => "running",
        },
        r.problems.len()
    );
    if let Some(images) = images {
        if !images.is_dir() {
            bail!(
                "--images {}: no such folder. Fix: give the image folder the dataset was made from",
                images.display()
            );
        }
        let drift = dr::store::images::verify(&d.rows, images);
        for p in &drift.missing {
            out!("missing  {p}");
        }
        for p in &drift.changed {
            out!("changed  {p}");
        }
        out!(
            "{} files checked: {} missing, {} changed{}",
            drift.checked,
            drift.missing.len(),
            drift.changed.len(),
            unhashed_note(&d)
        );
        if !drift.missing.is_empty() || !drift.changed.is_empty() {
            bail!(
                "{} no longer matches {}/images.tsv: soft labels would go to the wrong images. Fix: restore the files, or regenerate",
                images.display(),
                out.display()
            );
        }
    }
    if !r.problems.is_empty() {
        bail!(
            "{} failed verification (problems above). Fix: delete the named shards and rerun the same `dr reinforce` command to redo them",
            out.display()
        );
    }
    if m.status == dr::store::manifest::Status::Running {
        return Err(Incomplete {
            out: out.display().to_string(),
            done: m.shards.len(),
            total: m.own_shard_count(),
        }
        .into());
    }
    Ok(())
}

/// Why some rows of images.tsv have no hash to check, by cause: a file
/// that could not be read (a bad image), one in another task's shards, or
/// one in a shard this job has not written yet.
fn unhashed_note(d: &Reinforced) -> String {
    let m = &d.manifest;
    let bad: std::collections::HashSet<u32> = m.bad_images().map(|b| b.index).collect();
    let mine = m.own_shards();
    let per = m.settings.images_per_shard.max(1);
    let (mut unreadable, mut other_task, mut not_yet) = (0, 0, 0);
    for r in d.rows.iter().filter(|r| r.sha256.is_none()) {
        let shard = d.position[r.index as usize] / per;
        if bad.contains(&r.index) {
            unreadable += 1;
        } else if shard < mine[0] || shard >= mine[1] {
            other_task += 1;
        } else {
            not_yet += 1;
        }
    }
    let parts: Vec<String> = [
        (unreadable, "unreadable (bad images)"),
        (other_task, "in other tasks' shards (merge first)"),
        (not_yet, "in shards not yet written (finish the job)"),
    ]
    .iter()
    .filter(|(k, _)| *k > 0)
    .map(|(k, what)| format!("{k} {what}"))
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("; not checked: {}", parts.join(", "))
    }
}

/// Class names, one per line (`--labels`), exactly one per class of the
/// teacher or dataset (`classes`): a list that is longer or shorter names
/// classes wrongly, so it is refused.
pub fn labels(path: Option<&Path>, classes: usize) -> Result<Option<Vec<String>>> {
    let Some(l) = path else { return Ok(None) };
    let text =
        std::fs::read_to_string(l).map_err(|e| anyhow::anyhow!("--labels {}: {e}", l.display()))?;
    let names: Vec<String> = text.lines().map(str::to_owned).collect();
    if names.len() != classes {
        bail!(
            "--labels {}: {} names for {classes} classes. Fix: one name per line for each class, in class-id order",
            l.display(),
            names.len()
        );
    }
    Ok(Some(names))
}

pub fn show(
    out: &Path,
    image: u32,
    sample: Option<u32>,
    labels_file: Option<&Path>,
    json: bool,
) -> Result<()> {
    let d = Reinforced::open(out)?;
    let names = labels(labels_file, d.manifest.settings.num_classes as usize)?;
    let recs = d.records(image)?;
    let row = &d.rows[image as usize];
    if let Some(j) = sample
        && j as usize >= recs.len()
    {
        bail!(
            "--sample {j}: image {image} has samples 0 to {} ({} per image)",
            recs.len() - 1,
            recs.len()
        );
    }
    let bad = d.bad_reason(image);
    let sampled = d.layout.labels == dr::labels::LabelMode::Sampled;
    if json {
        let samples: Vec<serde_json::Value> = recs
            .iter()
            .enumerate()
            .filter(|(s, _)| sample.is_none_or(|j| j as usize == *s))
            .map(|(_, r)| {
                let compressed = r
                    .params
                    .as_ref()
                    .map(|p| record::compress(&d.config.augment, p));
                if sampled {
                    serde_json::json!({"compressed": compressed, "draws": r.draws})
                } else {
                    serde_json::json!({"compressed": compressed, "probs": r.probs, "classes": r.classes})
                }
            })
            .collect();
        out!(
            "{}",
            serde_json::json!({"id": image, "path": row.path, "label": row.label, "bad_image": bad, "samples": samples})
        );
        return Ok(());
    }
    out!("image {image}: {} (label {})", row.path, row.label);
    if let Some(why) = bad {
        out!("  bad image: {why}");
    }
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
                let k = d.layout.topk;
                let labels: Vec<String> = r
                    .label_values()
                    .iter()
                    .map(|&(c, v)| {
                        if sampled {
                            // count/k: the unbiased estimate, not a probability.
                            let n = (v * k as f32).round();
                            format!("{c}{} x{n}", name(c))
                        } else {
                            format!("{c}{} {:.1}%", name(c), 100.0 * v)
                        }
                    })
                    .collect();
                if sampled {
                    out!(
                        "    sampled {k} draws, {} classes: {}",
                        labels.len(),
                        labels.join(", ")
                    );
                } else {
                    out!("    top-{}: {}", labels.len(), labels.join(", "));
                }
            }
        }
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
    if let Some(&id) = ids.iter().find(|&&id| id as usize >= d.rows.len()) {
        bail!(
            "--ids {id}: the dataset has {} images (ids 0 to {})",
            d.rows.len(),
            d.rows.len().saturating_sub(1)
        );
    }
    let ns = d.num_samples();
    let picks: Vec<(u32, usize)> = ids
        .iter()
        .flat_map(|&id| (0..(samples as usize).min(ns)).map(move |s| (id, s)))
        .collect();
    let root = images.map_or_else(|| PathBuf::from(&d.manifest.source), Path::to_path_buf);
    let names = labels(labels_file, d.manifest.settings.num_classes as usize)?;
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

pub fn export_ml_dr(
    out: &Path,
    to: &Path,
    bundle: Option<&Path>,
    allow_incomplete: bool,
) -> Result<()> {
    dataset_dir(out)?;
    // Before `open`, which refuses weighted labels without the ml-dr reason.
    if let Some(m) = dr::store::manifest::Manifest::read(out)? {
        dr::store::ml_dr::export::refuse_weighted(&m, &out.join("manifest.json"))?;
    }
    let d = Reinforced::open(out)?;
    let m = &d.manifest;
    if m.status == dr::store::manifest::Status::Running && !allow_incomplete {
        bail!(
            "{} is incomplete ({} of {} shards written): its export would miss images. Fix: rerun the `dr reinforce` command to finish it, or pass --allow-incomplete to export what is there",
            out.display(),
            m.shards.len(),
            m.own_shard_count()
        );
    }
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
