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

/// Hashes every listed file (in parallel); rows in listing order.
pub fn rows(listing: &Listing) -> Result<Vec<ImageRow>, ImagesError> {
    rows_where(listing, |_| true)
}

/// Rows of every listed file, hashing those `hash(index)` selects.
pub fn rows_where(
    listing: &Listing,
    hash: impl Fn(u32) -> bool + Sync,
) -> Result<Vec<ImageRow>, ImagesError> {
    listing
        .entries
        .par_iter()
        .enumerate()
        .map(|(i, e)| {
            if e.path.contains(['\t', '\n', '\r']) {
                return Err(file_err(
                    Path::new(&e.path),
                    "tabs and line breaks in file names cannot be listed; rename the file",
                ));
            }
            let mut row = ImageRow {
                index: i as u32,
                path: e.path.clone(),
                label: e.label,
                bytes: None,
                sha256: None,
            };
            if hash(i as u32) {
                let p = listing.root.join(&e.path);
                let (bytes, sha256) =
                    hash_file(&p).map_err(|err| file_err(&p, format!("cannot read: {err}")))?;
                (row.bytes, row.sha256) = (Some(bytes), Some(sha256));
            }
            Ok(row)
        })
        .collect()
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
    super::atomic_write(path, s.as_bytes())
        .map_err(|e| file_err(path, format!("cannot write: {e}")))
}

pub fn read(path: &Path) -> Result<Vec<ImageRow>, ImagesError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
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
