//! The output of `dr reinforce` (OUT/): the listing with hashes (`images`),
//! the record layout (`layout`), shard files and the manifest. Knows nothing
//! of GPUs.

pub mod derived;
pub mod images;
pub mod layout;
pub mod manifest;
pub mod merge;
pub mod ml_dr;
pub mod reader;
pub mod verify;

use std::io::Write;
use std::path::Path;

/// Writes `path` so that it is either absent/old or complete and durable:
/// a temporary file beside it, fsynced, renamed over it, the folder fsynced.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("no file name"))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// fsync of a folder, so a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::File::open(dir)?.sync_all()
}
