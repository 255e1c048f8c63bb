//! Reading a reinforced dataset back: manifest, listing, work order, and the
//! NS records of any image (found through `order.npy` and the shard ranges).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::derived::Deriver;
use super::images::{self, ImageRow};
use super::layout::{Layout, Record};
use super::manifest::{Manifest, ShardInfo};
use crate::config::ReinforceConfig;

pub struct Reinforced {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub config: ReinforceConfig,
    pub layout: Layout,
    pub rows: Vec<ImageRow>,
    /// Image ids in work order, and each image's position in it.
    pub order: Vec<u32>,
    pub position: Vec<u32>,
    /// `--params derived`: what regenerates the parameters records omit.
    pub derived: Option<Deriver>,
}

impl Reinforced {
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::read(dir)?.with_context(|| {
            format!(
                "{}: no manifest.json; not a reinforced dataset (made by `dr reinforce`)",
                dir.display()
            )
        })?;
        let text = serde_json::json!({ "reinforce": manifest.settings.config }).to_string();
        let config =
            ReinforceConfig::parse(&text, &format!("{}/manifest.json", dir.display()), false)?;
        let [w, h] = manifest.settings.input_size;
        let at = |why| anyhow::anyhow!("{}: {why}", dir.join("manifest.json").display());
        let labels = manifest
            .settings
            .label_mode(manifest.record.topk)
            .map_err(at)?;
        let coding = manifest.settings.coding().map_err(at)?;
        let layout = Layout::coded(
            &config.augment,
            labels,
            coding,
            manifest.record.topk as usize,
            manifest.settings.num_classes as usize,
            (w as usize, h as usize),
        );
        let bits = (coding.ids == crate::labels::IdFormat::Packed).then_some(layout.id_bits);
        if layout.size != manifest.record.size
            || layout.numpy_descr() != manifest.record.dtype
            || bits != manifest.record.class_id_bits
        {
            bail!(
                "{}: the record layout in it is not the one its config gives; the file was edited or written by another dr",
                dir.join("manifest.json").display()
            );
        }
        let mut rows = images::read(&dir.join("images.tsv"))?;
        // While the job runs, hashes wait beside their shards.
        images::fill_from_shards(&mut rows, dir, &manifest.shard_files())?;
        let (shape, order): (Vec<usize>, Vec<u32>) = crate::npy::read(&dir.join("order.npy"))?;
        let n = manifest.settings.images as usize;
        if shape != [n] || rows.len() != n {
            bail!(
                "{}: order.npy {shape:?} and images.tsv ({} rows) do not match the {n} images of manifest.json",
                dir.display(),
                rows.len()
            );
        }
        let mut position = vec![u32::MAX; n];
        for (p, &id) in order.iter().enumerate() {
            if (id as usize) < n {
                position[id as usize] = p as u32;
            }
        }
        if position.contains(&u32::MAX) {
            bail!(
                "{}: order.npy is not a permutation of the image ids",
                dir.display()
            );
        }
        let derived = (!layout.stores_params()).then(|| {
            Deriver::new(
                &config,
                manifest.settings.seed,
                &rows,
                (w as usize, h as usize),
            )
        });
        Ok(Reinforced {
            dir: dir.to_path_buf(),
            manifest,
            config,
            layout,
            rows,
            order,
            position,
            derived,
        })
    }

    /// Why image `id` is a bad image (records flagged invalid), if it is one.
    pub fn bad_reason(&self, id: u32) -> Option<&str> {
        self.manifest
            .bad_images()
            .find(|b| b.index == id)
            .map(|b| b.reason.as_str())
    }

    pub fn num_samples(&self) -> usize {
        self.manifest.record.num_samples as usize
    }

    /// The complete shard holding work-order position `pos`.
    pub fn shard_of(&self, pos: u32) -> Option<&ShardInfo> {
        self.manifest
            .shards
            .iter()
            .find(|s| s.positions[0] <= pos && pos < s.positions[1])
    }

    /// The raw bytes of image `id`'s NS records.
    pub fn raw(&self, id: u32) -> Result<Vec<u8>> {
        let n = self.rows.len();
        if id as usize >= n {
            bail!(
                "image {id} does not exist (the dataset has {n} images, ids 0 to {})",
                n.saturating_sub(1)
            );
        }
        let pos = self.position[id as usize];
        let shard = self.shard_of(pos).with_context(|| {
            format!(
                "image {id} is in a shard not written yet (status {:?})",
                self.manifest.status
            )
        })?;
        let per_image = self.num_samples() * self.layout.size;
        let offset = (pos - shard.positions[0]) as u64 * per_image as u64;
        let path = self.dir.join(&shard.file);
        let mut f = std::fs::File::open(&path).with_context(|| format!("{}", path.display()))?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0u8; per_image];
        f.read_exact(&mut buf)
            .with_context(|| format!("{}: shorter than the manifest says", path.display()))?;
        Ok(buf)
    }

    /// Record `sample` of image `id` from its bytes: as stored, or with the
    /// parameters regenerated (`--params derived`) when it is usable.
    pub fn decode(&self, id: u32, sample: u32, bytes: &[u8]) -> Result<Record> {
        let mut r = self.layout.decode(bytes);
        if let Some(d) = &self.derived
            && self.layout.flags(bytes) & super::layout::flag::INVALID == 0
        {
            r.params = Some(
                d.params(id, sample)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", self.dir.display()))?,
            );
        }
        Ok(r)
    }

    /// Image `id`'s NS records. A class id past the class count (a damaged
    /// shard: packed ids have room up to 2^bits - 1) is an error naming it,
    /// so no consumer indexes past the classes; `dr verify` lists them all.
    pub fn records(&self, id: u32) -> Result<Vec<Record>> {
        let classes = self.manifest.settings.num_classes;
        self.raw(id)?
            .chunks(self.layout.size)
            .enumerate()
            .map(|(j, b)| {
                let r = self.decode(id, j as u32, b)?;
                if let Some(c) = r.classes.iter().chain(&r.draws).find(|&&c| c >= classes) {
                    bail!(
                        "{}: image {id} sample {j} holds class {c} of {classes}; the shard is damaged. Fix: run `dr verify {}`",
                        self.dir.display(),
                        self.dir.display()
                    );
                }
                Ok(r)
            })
            .collect()
    }
}
