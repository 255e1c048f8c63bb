//! `OUT/images.tsv`: the listing the record ids refer to, with each file's
//! size and SHA-256 as read, so `dr verify` can tell when a copy of the
//! dataset has drifted (re-downloaded web datasets lose or change files).
//!
//! One header line, then `index<TAB>path<TAB>label<TAB>bytes<TAB>sha256`;
//! a `--params derived` dataset adds `<TAB>width<TAB>height`, each usable
//! image's decoded size (`-` for a bad one), which the regenerated crops
//! depend on (`store::derived`).

use std::io::Read;
use std::path::Path;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::dataset::listing::Listing;

pub const HEADER: &str = "index\tpath\tlabel\tbytes\tsha256";
/// [`HEADER`] of a dataset whose rows carry the decoded size.
pub const HEADER_SIZED: &str = "index\tpath\tlabel\tbytes\tsha256\twidth\theight";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    pub index: u32,
    pub path: String,
    pub label: u32,
    /// Size and hash; `None` (written `-`) for rows another `--shard` task
    /// hashes (`dr merge` fills them in).
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
    /// Decoded (width, height), kept only by `--params derived` datasets
    /// (and only for usable images).
    pub size: Option<(u32, u32)>,
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
                size: None,
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
const HASHES_HEADER_SIZED: &str = "index\tbytes\tsha256\twidth\theight";

/// One image of a shard that could be read: its id, file size, SHA-256 and,
/// for `--params derived` datasets, its decoded (width, height) when usable.
pub type Hash = (u32, u64, String, Option<(u32, u32)>);
pub type Hashes = [Hash];

/// `-` or the number.
fn dash<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// `-` as `None`, else the number (`Err` when it is neither).
fn undash<T: std::str::FromStr>(s: &str) -> Result<Option<T>, ()> {
    match s {
        "-" => Ok(None),
        v => v.parse().map(Some).map_err(|_| ()),
    }
}

/// Both or neither of (width, height).
fn size_cols(w: &str, h: &str) -> Result<Option<(u32, u32)>, ()> {
    match (undash(w)?, undash(h)?) {
        (Some(w), Some(h)) => Ok(Some((w, h))),
        (None, None) => Ok(None),
        _ => Err(()),
    }
}

pub fn write_hashes(path: &Path, hashes: &Hashes, sized: bool) -> Result<(), ImagesError> {
    let mut s = String::with_capacity(hashes.len() * 80 + 20);
    s.push_str(if sized {
        HASHES_HEADER_SIZED
    } else {
        HASHES_HEADER
    });
    s.push('\n');
    for (i, n, sha, size) in hashes {
        s.push_str(&format!("{i}\t{n}\t{sha}"));
        if sized {
            let (w, h) = (dash(size.map(|s| s.0)), dash(size.map(|s| s.1)));
            s.push_str(&format!("\t{w}\t{h}"));
        }
        s.push('\n');
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
        let head = lines.next();
        if head != Some(HASHES_HEADER) && head != Some(HASHES_HEADER_SIZED) {
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
            let (i, n, sha, size) = match f[..] {
                [i, n, sha] => (i, n, sha, None),
                [i, n, sha, w, h] => (i, n, sha, size_cols(w, h).map_err(|_| bad())?),
                _ => return Err(bad()),
            };
            let i: usize = i.parse().map_err(|_| bad())?;
            let row = rows.get_mut(i).ok_or_else(bad)?;
            (row.bytes, row.sha256) = (Some(n.parse().map_err(|_| bad())?), Some(sha.to_owned()));
            row.size = size;
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

/// Writes the rows; `sized` (a `--params derived` dataset) adds the
/// width and height columns.
pub fn write(path: &Path, rows: &[ImageRow], sized: bool) -> Result<(), ImagesError> {
    let mut s = String::with_capacity(rows.len() * 100);
    s.push_str(if sized { HEADER_SIZED } else { HEADER });
    s.push('\n');
    for r in rows {
        let bytes = dash(r.bytes);
        let sha = r.sha256.as_deref().unwrap_or("-");
        s.push_str(&format!(
            "{}\t{}\t{}\t{bytes}\t{sha}",
            r.index, r.path, r.label
        ));
        if sized {
            let (w, h) = (dash(r.size.map(|s| s.0)), dash(r.size.map(|s| s.1)));
            s.push_str(&format!("\t{w}\t{h}"));
        }
        s.push('\n');
    }
    super::atomic_write(path, s.as_bytes()).map_err(|e| io_err(path, "write", &e))
}

pub fn read(path: &Path) -> Result<Vec<ImageRow>, ImagesError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, "read", &e))?;
    let mut lines = text.lines();
    let cols = match lines.next() {
        Some(HEADER) => 5,
        Some(HEADER_SIZED) => 7,
        _ => {
            return Err(file_err(
                path,
                format!("not a dr images.tsv (the first line must be `{HEADER}`)"),
            ));
        }
    };
    lines
        .enumerate()
        .map(|(i, line)| {
            let bad = || {
                file_err(
                    path,
                    format!("line {}: expected {cols} tab-separated fields", i + 2),
                )
            };
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != cols {
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
                size: if cols == 7 {
                    size_cols(f[5], f[6]).map_err(|_| bad())?
                } else {
                    None
                },
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
        write(&tsv, &rows, false).unwrap();
        assert_eq!(read(&tsv).unwrap(), rows);
        // A derived-parameter dataset's rows carry the decoded size.
        let mut sized = rows.clone();
        sized[0].size = Some((640, 480));
        write(&tsv, &sized, true).unwrap();
        assert_eq!(read(&tsv).unwrap(), sized);
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
        write(&tsv, &partial, false).unwrap();
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
