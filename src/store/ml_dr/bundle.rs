//! ml-dr's release bundle (`reinforced_data.tar` or `.tar.gz`): its members
//! streamed without unpacking — `config.pth.tar` and the `{id}.pth.tar`
//! files, wherever they sit in the archive's folders.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Whether `path` is a bundle rather than a folder of files.
pub fn is_bundle(path: &Path) -> bool {
    let name = path.to_string_lossy();
    path.is_file()
        && (name.ends_with(".tar") || name.ends_with(".tar.gz") || name.ends_with(".tgz"))
}

fn open(path: &Path) -> Result<tar::Archive<Box<dyn Read>>> {
    let f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let name = path.to_string_lossy();
    let r: Box<dyn Read> = if name.ends_with(".gz") || name.ends_with(".tgz") {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)))
    } else {
        Box::new(std::io::BufReader::new(f))
    };
    Ok(tar::Archive::new(r))
}

/// What a member holds: the config, image `id`'s records, or neither.
enum Member {
    Config,
    Image(u32),
    Other,
}

fn classify(name: &str) -> Member {
    let base = name.rsplit('/').next().unwrap_or(name);
    match base.strip_suffix(".pth.tar") {
        Some("config") => Member::Config,
        Some(stem) => stem.parse().map_or(Member::Other, Member::Image),
        None => Member::Other,
    }
}

/// Calls `config` with the config's bytes and `image` with each image
/// file's (id, member name, bytes), in archive order.
pub fn read(
    path: &Path,
    mut config: impl FnMut(&str, Vec<u8>) -> Result<()>,
    mut image: impl FnMut(u32, String, Vec<u8>) -> Result<()>,
) -> Result<()> {
    let mut archive = open(path)?;
    let entries = archive
        .entries()
        .with_context(|| format!("{}: not a readable tar archive", path.display()))?;
    for e in entries {
        let mut e = e.with_context(|| format!("{}: a damaged tar member", path.display()))?;
        if !e.header().entry_type().is_file() {
            continue;
        }
        let name = e.path()?.to_string_lossy().into_owned();
        let kind = classify(&name);
        if matches!(kind, Member::Other) {
            continue;
        }
        let mut bytes = Vec::with_capacity(e.size() as usize);
        e.read_to_end(&mut bytes)
            .with_context(|| format!("{}: member {name} is truncated", path.display()))?;
        let label = format!("{}:{name}", path.display());
        match kind {
            Member::Config => config(&label, bytes)?,
            Member::Image(id) => image(id, label, bytes)?,
            Member::Other => {}
        }
    }
    Ok(())
}

/// The config's bytes (one pass over the archive, stopping at it).
pub fn config(path: &Path) -> Result<(String, Vec<u8>)> {
    let mut archive = open(path)?;
    for e in archive
        .entries()
        .with_context(|| format!("{}: not a readable tar archive", path.display()))?
    {
        let mut e = e?;
        let name = e.path()?.to_string_lossy().into_owned();
        if matches!(classify(&name), Member::Config) {
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes)?;
            return Ok((format!("{}:{name}", path.display()), bytes));
        }
    }
    bail!("{}: no config.pth.tar in the archive", path.display())
}

/// Writes the files of an export folder (`config.pth.tar` first, then
/// `{id}.pth.tar` by id) into `path` under `reinforced_data/`, gzipped when
/// the name ends in `.gz`/`.tgz`.
pub fn write(folder: &Path, path: &Path) -> Result<usize> {
    let mut ids: Vec<u32> = std::fs::read_dir(folder)?
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".pth.tar")?
                .parse()
                .ok()
        })
        .collect();
    ids.sort_unstable();
    let f = std::fs::File::create(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    let name = path.to_string_lossy();
    let w: Box<dyn std::io::Write> = if name.ends_with(".gz") || name.ends_with(".tgz") {
        Box::new(flate2::write::GzEncoder::new(
            f,
            flate2::Compression::default(),
        ))
    } else {
        Box::new(f)
    };
    let mut tar = tar::Builder::new(w);
    let mut add = |file: String| -> Result<()> {
        tar.append_path_with_name(folder.join(&file), format!("reinforced_data/{file}"))
            .with_context(|| format!("{}: adding {file}", path.display()))
    };
    add("config.pth.tar".into())?;
    for id in &ids {
        add(format!("{id}.pth.tar"))?;
    }
    tar.into_inner()?.flush()?;
    Ok(ids.len())
}
