//! `OUT/images.tsv`: the listing the record ids refer to, with each file's
//! size and SHA-256 as read, so `dr verify` can tell when a copy of the
//! dataset has drifted (re-downloaded web datasets lose or change files).
//!
//! One header line, then `index<TAB>path<TAB>label<TAB>bytes<TAB>sha256`.

use std::io::Read;
use std::path::Path;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::dataset::listing::Listing;

pub const HEADER: &str = "index\tpath\tlabel\tbytes\tsha256";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    pub index: u32,
    pub path: String,
    pub label: u32,
    /// Size and hash; `None` (written `-`) for rows another `--shard` task
    /// hashes (`dr merge` fills them in).
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error("{path}: {detail}")]
    File { path: String, detail: String },
}

/// "PATH: cannot read: no such file" (or write): an OS error on `path`.
fn io_err(path: &Path, verb: &str, e: &std::io::Error) -> ImagesError {
    file_err(path, format!("cannot {verb}: {}", crate::io_reason(e)))
}

fn file_err(path: &Path, detail: impl Into<String>) -> ImagesError {
    ImagesError::File {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

/// (size, hex SHA-256) of a file.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, format!("{:x}", h.finalize())))
}

/// Hashes every listed file (in parallel); rows in listing order (`dr
/// import`, which reads no image otherwise).
pub fn rows(listing: &Listing) -> Result<Vec<ImageRow>, ImagesError> {
    let mut rows = unhashed_rows(listing)?;
    rows.par_iter_mut().try_for_each(|row| {
        let p = listing.root.join(&row.path);
        let (bytes, sha256) = hash_file(&p).map_err(|err| io_err(&p, "read", &err))?;
        (row.bytes, row.sha256) = (Some(bytes), Some(sha256));
        Ok(())
    })?;
    Ok(rows)
}

/// Rows of every listed file, not yet hashed: `dr reinforce` hashes each
/// file from the bytes it decodes (one read), shard by shard.
pub fn unhashed_rows(listing: &Listing) -> Result<Vec<ImageRow>, ImagesError> {
    listing
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            if e.path.contains(['\t', '\n', '\r']) {
                return Err(file_err(
                    Path::new(&e.path),
                    "tabs and line breaks in file names cannot be listed; rename the file",
                ));
            }
            Ok(ImageRow {
                index: i as u32,
                path: e.path.clone(),
                label: e.label,
                bytes: None,
                sha256: None,
            })
        })
        .collect()
}

/// The hashes of one shard's images while the job runs,
/// `OUT/shard-NNNNN.sha256.tsv`: written before the shard file, folded into
/// images.tsv (and removed) when the job completes.
pub fn shard_hashes_file(shard_file: &str) -> String {
    format!("{}.sha256.tsv", shard_file.trim_end_matches(".bin"))
}

const HASHES_HEADER: &str = "index\tbytes\tsha256";

/// (image id, size, SHA-256) of each image of a shard that could be read.
pub type Hashes = [(u32, u64, String)];

pub fn write_hashes(path: &Path, hashes: &Hashes) -> Result<(), ImagesError> {
    let mut s = String::with_capacity(hashes.len() * 80 + 20);
    s.push_str(HASHES_HEADER);
    s.push('\n');
    for (i, n, sha) in hashes {
        s.push_str(&format!("{i}\t{n}\t{sha}\n"));
    }
    super::atomic_write(path, s.as_bytes()).map_err(|e| io_err(path, "write", &e))
}

/// Fills `rows` from the hashes files of `shard_files` (those of complete
/// shards; a missing one leaves its rows as they are).
pub fn fill_from_shards(
    rows: &mut [ImageRow],
    dir: &Path,
    shard_files: &[&str],
) -> Result<(), ImagesError> {
    for f in shard_files {
        let path = dir.join(shard_hashes_file(f));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&path, "read", &e)),
        };
        let mut lines = text.lines();
        if lines.next() != Some(HASHES_HEADER) {
            return Err(file_err(
                &path,
                format!(
                    "not a dr hashes file (the first line must be `{HASHES_HEADER}`). Fix: delete it and the shard file beside it, then rerun the same command"
                ),
            ));
        }
        for (k, line) in lines.enumerate() {
            let bad = || {
                file_err(
                    &path,
                    format!(
                        "line {}: expected `index<TAB>bytes<TAB>sha256` of a listed image. Fix: delete it and the shard file beside it, then rerun the same command",
                        k + 2
                    ),
                )
            };
            let f: Vec<&str> = line.split('\t').collect();
            let [i, n, sha] = f[..] else {
                return Err(bad());
            };
            let i: usize = i.parse().map_err(|_| bad())?;
            let row = rows.get_mut(i).ok_or_else(bad)?;
            (row.bytes, row.sha256) = (Some(n.parse().map_err(|_| bad())?), Some(sha.to_owned()));
        }
    }
    Ok(())
}

/// Removes every `shard-NNNNN.sha256.tsv` of `dir` (once images.tsv holds
/// their hashes); one that cannot be removed is only left behind.
pub fn remove_hashes_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("shard-") && name.ends_with(".sha256.tsv") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// What differs between the listing a dataset was made from (`old`) and
/// today's (`new`): files gone, files added, labels changed, a few of each
/// by name.
pub fn changes(old: &[ImageRow], new: &[ImageRow]) -> Vec<String> {
    use std::collections::HashMap;
    let label_of = |rows: &[ImageRow]| -> HashMap<String, u32> {
        rows.iter().map(|r| (r.path.clone(), r.label)).collect()
    };
    let (a, b) = (label_of(old), label_of(new));
    let mut removed: Vec<&str> = old
        .iter()
        .filter(|r| !b.contains_key(&r.path))
        .map(|r| r.path.as_str())
        .collect();
    let mut added: Vec<&str> = new
        .iter()
        .filter(|r| !a.contains_key(&r.path))
        .map(|r| r.path.as_str())
        .collect();
    let mut relabelled: Vec<&str> = new
        .iter()
        .filter(|r| a.get(&r.path).is_some_and(|&l| l != r.label))
        .map(|r| r.path.as_str())
        .collect();
    let mut out = Vec::new();
    for (what, list) in [
        ("gone", &mut removed),
        ("new", &mut added),
        ("with another label", &mut relabelled),
    ] {
        if list.is_empty() {
            continue;
        }
        list.sort_unstable();
        let shown: Vec<&str> = list.iter().take(5).copied().collect();
        let more = if list.len() > 5 {
            format!(" and {} more", list.len() - 5)
        } else {
            String::new()
        };
        out.push(format!(
            "{} file{} {what}: {}{more}",
            list.len(),
            if list.len() == 1 { "" } else { "s" },
            shown.join(", ")
        ));
    }
    if out.is_empty() {
        out.push(format!("the same {} files in another order", new.len()));
    }
    out
}

pub fn write(path: &Path, rows: &[ImageRow]) -> Result<(), ImagesError> {
    let mut s = String::with_capacity(rows.len() * 100);
    s.push_str(HEADER);
    s.push('\n');
    for r in rows {
        let bytes = r.bytes.map_or("-".to_string(), |b| b.to_string());
        let sha = r.sha256.as_deref().unwrap_or("-");
        s.push_str(&format!(
            "{}\t{}\t{}\t{bytes}\t{sha}\n",
            r.index, r.path, r.label
        ));
    }
    super::atomic_write(path, s.as_bytes()).map_err(|e| io_err(path, "write", &e))
}

pub fn read(path: &Path) -> Result<Vec<ImageRow>, ImagesError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, "read", &e))?;
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(file_err(
            path,
            format!("not a dr images.tsv (the first line must be `{HEADER}`)"),
        ));
    }
    lines
        .enumerate()
        .map(|(i, line)| {
            let bad = || {
                file_err(
                    path,
                    format!("line {}: expected 5 tab-separated fields", i + 2),
                )
            };
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != 5 {
                return Err(bad());
            }
            Ok(ImageRow {
                index: f[0].parse().map_err(|_| bad())?,
                path: f[1].to_owned(),
                label: f[2].parse().map_err(|_| bad())?,
                bytes: match f[3] {
                    "-" => None,
                    b => Some(b.parse().map_err(|_| bad())?),
                },
                sha256: (f[4] != "-").then(|| f[4].to_owned()),
            })
        })
        .collect()
}

/// What `dr verify` found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Drift {
    pub missing: Vec<String>,
    pub changed: Vec<String>,
    pub checked: usize,
    /// Rows without a hash (another task's share before `dr merge`).
    pub unhashed: usize,
}

/// Re-hashes the files under `images` and names every one missing or changed.
pub fn verify(rows: &[ImageRow], images: &Path) -> Drift {
    let hashed: Vec<&ImageRow> = rows.iter().filter(|r| r.sha256.is_some()).collect();
    let results: Vec<(usize, Option<bool>)> = hashed
        .par_iter()
        .enumerate()
        .map(|(i, r)| match hash_file(&images.join(&r.path)) {
            Ok((bytes, sha)) => (
                i,
                Some(Some(bytes) == r.bytes && r.sha256.as_ref() == Some(&sha)),
            ),
            Err(_) => (i, None),
        })
        .collect();
    let mut d = Drift {
        checked: hashed.len(),
        unhashed: rows.len() - hashed.len(),
        ..Default::default()
    };
    for (i, ok) in results {
        match ok {
            None => d.missing.push(hashed[i].path.clone()),
            Some(false) => d.changed.push(hashed[i].path.clone()),
            Some(true) => {}
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::listing::image_folder;

    #[test]
    fn write_read_verify() {
        let root = std::env::temp_dir().join(format!("dr-images-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (p, body) in [("a/1.jpg", "one"), ("a/2.jpg", "two"), ("b/3.png", "three")] {
            std::fs::create_dir_all(root.join(p).parent().unwrap()).unwrap();
            std::fs::write(root.join(p), body).unwrap();
        }
        let rows = rows(&image_folder(&root).unwrap()).unwrap();
        assert_eq!(
            rows[0].sha256,
            Some(format!("{:x}", Sha256::digest(b"one")))
        );
        let tsv = root.join("images.tsv");
        write(&tsv, &rows).unwrap();
        assert_eq!(read(&tsv).unwrap(), rows);
        assert_eq!(
            verify(&rows, &root),
            Drift {
                checked: 3,
                ..Default::default()
            }
        );
        std::fs::write(root.join("a/2.jpg"), "TWO").unwrap();
        std::fs::remove_file(root.join("b/3.png")).unwrap();
        let d = verify(&rows, &root);
        assert_eq!(
            (d.missing, d.changed),
            (vec!["b/3.png".to_string()], vec!["a/2.jpg".to_string()])
        );
        // Rows of another task's share are written as `-` and not checked.
        let mut partial = rows.clone();
        (partial[2].bytes, partial[2].sha256) = (None, None);
        write(&tsv, &partial).unwrap();
        assert_eq!(read(&tsv).unwrap(), partial);
        let d = verify(&partial, &root);
        assert_eq!((d.checked, d.unhashed, d.missing.len()), (2, 1, 0));
        std::fs::write(&tsv, "junk\n").unwrap();
        assert!(
            read(&tsv)
                .unwrap_err()
                .to_string()
                .contains("not a dr images.tsv")
        );
    }
}
