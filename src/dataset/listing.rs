//! The dataset listing, fixed once: image ids are row numbers, exactly
//! torchvision ImageFolder's sample indices (ml-dr's ids) for a folder, or
//! the lines of a file list (FACTS.md §9).
//!
//! ImageFolder: classes are the root's sub-folders (symlinks followed,
//! hidden ones included) sorted by code point; within a class, every folder
//! below it (symlinks followed) sorted by its full path *string* (so
//! `a-b` < `a.b` < `a/x`, as Python sorts `os.walk`'s tuples), and each
//! folder's files sorted; a file counts when its lower-cased path ends in one
//! of torchvision's image extensions.

use std::path::{Path, PathBuf};

impl Listing {
    /// SHA-256 over `index<TAB>path<TAB>label<LF>` lines: the listing's identity.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (i, e) in self.entries.iter().enumerate() {
            h.update(format!("{i}\t{}\t{}\n", e.path, e.label).as_bytes());
        }
        format!("{:x}", h.finalize())
    }
}

/// torchvision `IMG_EXTENSIONS`.
pub const IMG_EXTENSIONS: &[&str] = &[
    ".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the dataset root (or the list's folder), `/`-separated.
    pub path: String,
    pub label: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub entries: Vec<Entry>,
    /// For a file list: each entry's line in it (1-based, for reports);
    /// empty for a folder.
    pub list_lines: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    /// The reason is said once (not also as a source: it would print twice).
    #[error("{path}: cannot read: {reason}")]
    Io { path: String, reason: String },
    #[error("{path}: {detail}")]
    Invalid { path: String, detail: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ListingError + '_ {
    move |e| ListingError::Io {
        path: path.display().to_string(),
        reason: crate::io_reason(&e),
    }
}

fn name_of(p: &Path) -> Result<String, ListingError> {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| ListingError::Invalid {
            path: p.display().to_string(),
            detail: "the name is not valid UTF-8; rename it (dr orders names as Python does only for Unicode names)".into(),
        })
}

pub fn is_image(path: &str) -> bool {
    let lower = path.to_lowercase();
    IMG_EXTENSIONS.iter().any(|e| lower.ends_with(e))
}

/// Every folder at or below `dir`, following symlinks, as (path string, path).
fn walk_dirs(
    dir: &Path,
    out: &mut Vec<(String, PathBuf)>,
    seen: &mut Vec<PathBuf>,
) -> Result<(), ListingError> {
    let canon = std::fs::canonicalize(dir).map_err(io(dir))?;
    if seen.contains(&canon) {
        return Err(ListingError::Invalid {
            path: dir.display().to_string(),
            detail: "a symlink loop: this folder contains itself. Fix: remove the link".into(),
        });
    }
    seen.push(canon);
    out.push((
        dir.to_str().map(str::to_owned).unwrap_or_default(),
        dir.to_path_buf(),
    ));
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let p = e.map_err(io(dir))?.path();
        if p.is_dir() {
            name_of(&p)?;
            walk_dirs(&p, out, seen)?;
        }
    }
    seen.pop();
    Ok(())
}

/// torchvision `ImageFolder(root)`'s classes and samples.
pub fn image_folder(root: &Path) -> Result<Listing, ListingError> {
    let mut classes = Vec::new();
    for e in std::fs::read_dir(root).map_err(io(root))? {
        let p = e.map_err(io(root))?.path();
        if p.is_dir() {
            classes.push(name_of(&p)?);
        }
    }
    classes.sort();
    if classes.is_empty() {
        return Err(ListingError::Invalid {
            path: root.display().to_string(),
            detail: "no class folders: an ImageFolder dataset is root/<class>/<image>. Fix: point --data at that root, or use --list".into(),
        });
    }
    let mut entries = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let mut dirs = Vec::new();
        walk_dirs(&root.join(class), &mut dirs, &mut Vec::new())?;
        dirs.sort_by(|a, b| a.0.cmp(&b.0));
        let before = entries.len();
        for (_, dir) in &dirs {
            let mut files = Vec::new();
            for e in std::fs::read_dir(dir).map_err(io(dir))? {
                let p = e.map_err(io(dir))?.path();
                if !p.is_dir() {
                    files.push(name_of(&p)?);
                }
            }
            files.sort();
            for f in files {
                let rel = dir.join(&f);
                let rel = rel.strip_prefix(root).unwrap_or(&rel);
                let path = rel
                    .to_str()
                    .unwrap_or_default()
                    .replace(std::path::MAIN_SEPARATOR, "/");
                if is_image(&path) {
                    entries.push(Entry {
                        path,
                        label: label as u32,
                    });
                }
            }
        }
        if entries.len() == before {
            return Err(ListingError::Invalid {
                path: root.join(class).display().to_string(),
                detail: format!(
                    "class `{class}` has no image files ({}). torchvision refuses such a dataset too. Fix: remove the folder or add images",
                    IMG_EXTENSIONS.join(" ")
                ),
            });
        }
    }
    Ok(Listing {
        root: root.to_path_buf(),
        classes,
        entries,
        list_lines: Vec::new(),
    })
}

/// A file list: `path<TAB>label` per line, paths relative to the list's
/// folder; blank lines and `#` comments skipped.
pub fn file_list(list: &Path) -> Result<Listing, ListingError> {
    let text = std::fs::read_to_string(list).map_err(io(list))?;
    let bad = |n: usize, detail: String| ListingError::Invalid {
        path: format!("{}:{n}", list.display()),
        detail,
    };
    let mut entries = Vec::new();
    let mut list_lines = Vec::new();
    let mut max_label = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (path, label) = line
            .rsplit_once('\t')
            .ok_or_else(|| bad(i + 1, "expected `path<TAB>label`".into()))?;
        let label: u32 = label.trim().parse().map_err(|_| {
            bad(
                i + 1,
                format!("label `{label}` is not a non-negative integer"),
            )
        })?;
        if path.is_empty() || Path::new(path).is_absolute() {
            return Err(bad(
                i + 1,
                format!("`{path}` must be a path relative to the list's folder"),
            ));
        }
        if Path::new(path)
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(bad(
                i + 1,
                format!("`{path}` leaves the list's folder (`..`); list only files below it"),
            ));
        }
        max_label = max_label.max(Some(label));
        entries.push(Entry {
            path: path.to_owned(),
            label,
        });
        list_lines.push(i as u32 + 1);
    }
    if entries.is_empty() {
        return Err(bad(0, "the list has no entries".into()));
    }
    Ok(Listing {
        root: list.parent().map(Path::to_path_buf).unwrap_or_default(),
        classes: (0..=max_label.unwrap_or(0))
            .map(|c| c.to_string())
            .collect(),
        entries,
        list_lines,
    })
}
