//! `dr infer --image`: which files, which of them are usable, and which
//! file each output row is.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use dr::augment::image::Rgb8;
use dr::teacher::infer;

/// The decoded images of `--image` (a file, or a folder's files) and their
/// paths; a bad file is reported on stderr with its reason and left out.
pub fn usable_images(path: &Path, recursive: bool) -> Result<(Vec<Rgb8>, Vec<PathBuf>)> {
    let found = infer::image_files(path, recursive)?;
    if found.folders_not_searched > 0 {
        eprintln!(
            "note: {} sub-folder(s) of {} not searched (--recursive to include them)",
            found.folders_not_searched,
            path.display()
        );
    }
    let mut images = Vec::new();
    let mut files = Vec::new();
    let mut bad = 0;
    for (f, r) in found.files.iter().zip(infer::decode_files(&found.files)) {
        match r {
            Ok(img) => {
                images.push(img);
                files.push(f.clone());
            }
            Err(reason) => {
                bad += 1;
                eprintln!("skipped {}: {reason}", f.display());
            }
        }
    }
    if images.is_empty() {
        bail!(
            "--image {}: none of the {} file(s) is a usable image (reasons above)",
            path.display(),
            found.files.len()
        );
    }
    if bad > 0 {
        eprintln!("{bad} of {} files skipped as bad images", found.files.len());
    }
    Ok((images, files))
}

/// `Y.files.txt` beside `--output Y.npy`: the file of each row, one per line.
pub fn write_file_names(out: &Path, files: &[PathBuf]) -> Result<()> {
    let path = out.with_extension("files.txt");
    let text: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
    std::fs::write(&path, text)
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {}", path.display(), dr::io_reason(&e)))?;
    eprintln!("wrote {} (the file of each row)", path.display());
    Ok(())
}
