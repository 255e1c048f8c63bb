//! `dr merge`: the task outputs of one `--shard i/N` job joined into one
//! dataset, byte-identical to what a single task would have written. Shard
//! files are hard-linked (copied only across filesystems); every task must
//! be complete and made with the same settings.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::images::{self, ImageRow};
use super::manifest::{self, Manifest, Status};

pub struct Merged {
    pub shards: usize,
    pub linked: usize,
    pub copied: usize,
}

pub fn merge(parts: &[PathBuf], out: &Path) -> Result<Merged> {
    let mut manifests = Vec::new();
    for p in parts {
        let m = Manifest::read(p)?.with_context(|| {
            format!(
                "{}: no manifest.json; not a dr reinforce output",
                p.display()
            )
        })?;
        manifests.push(m);
    }
    let first = &manifests[0];
    let Some(t0) = &first.task else {
        bail!(
            "{}: not a task of a --shard job; nothing to merge",
            parts[0].display()
        );
    };
    let mut seen = vec![None; t0.count as usize];
    for (p, m) in parts.iter().zip(&manifests) {
        let diffs = manifest::differences(&first.settings, &m.settings);
        if !diffs.is_empty() {
            bail!(
                "{} was made with other settings than {}:\n  {}",
                p.display(),
                parts[0].display(),
                diffs.join("\n  ")
            );
        }
        let Some(t) = &m.task else {
            bail!("{}: not a task of a --shard job", p.display());
        };
        if t.count != t0.count {
            bail!(
                "{} is task {}/{}, but {} is of {} tasks",
                p.display(),
                t.index,
                t.count,
                parts[0].display(),
                t0.count
            );
        }
        if m.status != Status::Complete {
            bail!(
                "{}: task {}/{} is not complete. Fix: rerun its command to finish it",
                p.display(),
                t.index,
                t.count
            );
        }
        if let Some(other) = seen[t.index as usize].replace(p) {
            bail!(
                "{} and {} are both task {}",
                other.display(),
                p.display(),
                t.index
            );
        }
    }
    if let Some(i) = seen.iter().position(Option::is_none) {
        bail!(
            "task {i}/{} is missing. Fix: pass every task's output",
            t0.count
        );
    }
    let order0 = std::fs::read(parts[0].join("order.npy"))?;
    let mut rows: Vec<ImageRow> = images::read(&parts[0].join("images.tsv"))?;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    if Manifest::read(out)?.is_some() {
        bail!(
            "{} already holds a dataset. Fix: merge into a new folder",
            out.display()
        );
    }
    let mut merged = Merged {
        shards: 0,
        linked: 0,
        copied: 0,
    };
    let mut shards = Vec::new();
    for (p, m) in parts.iter().zip(&manifests) {
        if std::fs::read(p.join("order.npy"))? != order0 {
            bail!(
                "{}: order.npy differs from {}'s",
                p.display(),
                parts[0].display()
            );
        }
        for (r, o) in rows.iter_mut().zip(images::read(&p.join("images.tsv"))?) {
            if r.sha256.is_none() {
                (r.bytes, r.sha256, r.size) = (o.bytes, o.sha256, o.size);
            }
        }
        for s in &m.shards {
            let (src, dst) = (p.join(&s.file), out.join(&s.file));
            let _ = std::fs::remove_file(&dst);
            if std::fs::hard_link(&src, &dst).is_ok() {
                merged.linked += 1;
            } else {
                std::fs::copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
                merged.copied += 1;
            }
            shards.push(s.clone());
        }
    }
    shards.sort_by_key(|s| s.index);
    if shards.len() != first.shard_count as usize {
        bail!(
            "the tasks hold {} shards; the job has {}",
            shards.len(),
            first.shard_count
        );
    }
    merged.shards = shards.len();
    let sized = first.settings.params.is_some();
    images::write(&out.join("images.tsv"), &rows, sized)?;
    super::atomic_write(&out.join("order.npy"), &order0)?;
    let m = Manifest {
        status: Status::Complete,
        task: None,
        shards,
        ..first.clone()
    };
    m.write_bad_images(out, &rows)?;
    m.write(out)?;
    Ok(merged)
}
