//! Stored samples replayed: the records of a reinforced dataset decoded and
//! run through the CPU augmentation again, for `dr preview --from` and the
//! demo's sheet (what the teacher saw, captioned with what it said).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::augment::image::Rgb8;
use crate::augment::pipeline::augment;
use crate::augment::run::Outcome;
use crate::dataset::decode::decode_rgb;
use crate::store::reader::Reinforced;

/// Samples `(image, sample)` of `d` replayed from the images under `root`,
/// with one caption line of the top-3 per sample (`names` for class names).
pub fn replay(
    d: &Reinforced,
    root: &Path,
    picks: &[(u32, usize)],
    names: Option<&[String]>,
) -> Result<(Outcome, Vec<Vec<String>>)> {
    let mut decoded: HashMap<u32, Rgb8> = HashMap::new();
    let mut load = |id: u32| -> Result<()> {
        if let std::collections::hash_map::Entry::Vacant(e) = decoded.entry(id) {
            let row = &d.rows[id as usize];
            let img = decode_rgb(&root.join(&row.path))
                .with_context(|| format!("image {id} ({})", row.path))?;
            e.insert(img);
        }
        Ok(())
    };
    let mut params = Vec::new();
    let mut captions = Vec::new();
    for &(id, s) in picks {
        let recs = d.records(id)?;
        let Some(r) = recs.get(s) else {
            bail!("image {id} has {} samples, not {}", recs.len(), s + 1);
        };
        let Some(p) = &r.params else {
            // A bad image has nothing to show: said once, with its reason.
            if s == 0 {
                eprintln!(
                    "image {id} ({}) is a bad image, not shown: {}",
                    d.rows[id as usize].path,
                    d.bad_reason(id).unwrap_or("no reason recorded")
                );
            }
            continue;
        };
        load(id)?;
        if let Some(q) = &p.pair {
            load(q.id2)?;
        }
        let name = |c: u32| {
            names
                .and_then(|n| n.get(c as usize))
                .cloned()
                .unwrap_or_else(|| c.to_string())
        };
        // Top-k probabilities, or the most drawn classes at count / k.
        let top: Vec<String> = r
            .label_values()
            .into_iter()
            .take(3)
            .map(|(c, v)| format!("{} {:.0}%", name(c), 100.0 * v))
            .collect();
        captions.push(vec![format!("[{id}.{s}] {}", top.join(" "))]);
        params.push((id, p.clone()));
    }
    if params.is_empty() {
        bail!("none of the chosen samples is valid (all from bad images)");
    }
    let aug = &d.config.augment;
    let samples = params
        .iter()
        .map(|(id, p)| {
            let pair = p.pair.as_ref().map(|q| &decoded[&q.id2]);
            augment(aug, &decoded[id], p, pair)
        })
        .collect();
    Ok((
        Outcome {
            config: d.config.clone(),
            params: params.into_iter().map(|(_, p)| p).collect(),
            samples,
            ids: (picks[0].0, picks[0].0),
        },
        captions,
    ))
}
