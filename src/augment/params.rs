//! Sampling augmentation parameters: a pure function of (seed, image index,
//! sample index), with ml-dr's/torchvision's distributions (FACTS.md §2, §4-6)
//! drawn from Philox streams instead of torch's global generator.
//!
//! Pairs for MixUp/CutMix: ml-dr draws the pair uniformly from the same
//! shuffled batch (itself included) and reuses one of its NS crops. dr cuts a
//! seeded permutation of the listing into mixing groups of G images and draws
//! the pair from the image's group, so no batch size, device count or shard
//! count can change a pair.

use super::randaug::{self, SIGNED};
use crate::config::{Augmentation, RandAugment, RandomErase, RandomResizedCrop};
use crate::rng::{Philox, permutation};

// Philox stream numbers (counter word 2). Pair-side draws add PAIR_SIDE.
const S_CROP: u32 = 0;
const S_FLIP: u32 = 1;
const S_RANDAUG: u32 = 2;
const S_ERASE: u32 = 3;
const S_MIXUP: u32 = 4;
const S_CUTMIX: u32 = 5;
const S_PAIR: u32 = 6;
const S_RANDOM_CROP: u32 = 7;
const PAIR_SIDE: u32 = 16;
/// Counter word 2 of the listing permutation (its own line: c0 = u32::MAX).
const S_GROUPS: u32 = 0x4752_5053;

/// The version of this sampler: what `Draw::sample` and `MixingGroups`
/// compute from (seed, listing size, image, sample, decoded sizes),
/// including `crate::rng`'s draws. `--params derived` datasets store no
/// parameters and record this number; a reader regenerates them only with
/// the same version (`store::derived`). Bump it with any change that can
/// alter a drawn value (a stream number, a draw's order or formula, a float
/// operation), never otherwise; `params::tests::sampler_version_pins_draws`
/// fails until it is bumped.
pub const PARAMS_SAMPLER_VERSION: u32 = 1;

/// The before-collate crop records of one (image, sample).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CropRecord {
    /// RandomCrop's (top, left).
    pub random_crop: Option<(i64, i64)>,
    /// RandomResizedCrop's (i, j, h, w): top, left, height, width.
    pub rrc: Option<[i64; 4]>,
}

/// The after-collate random transforms of one image of a pair. `None` in an
/// outer option: not configured; in the inner: drawn as skipped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SideParams {
    pub flip: Option<bool>,
    pub rand_augment: Option<Option<Vec<(u8, f64)>>>,
    pub erase: Option<Option<[i64; 4]>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PairParams {
    pub id2: u32,
    /// Which of the pair image's samples lent its crop (not in ml-dr's
    /// records, so `None` after reading one).
    pub sample2: Option<u32>,
    pub crop: CropRecord,
    pub side: SideParams,
}

/// Everything needed to replay one (image, sample).
#[derive(Debug, Clone, PartialEq)]
pub struct SampleParams {
    pub crop: CropRecord,
    pub side: SideParams,
    /// Present when mixing is configured (the pair is drawn and transformed
    /// even when both mixings are then skipped, as in ml-dr).
    pub pair: Option<PairParams>,
    pub mixup: Option<Option<f64>>,
    /// (lam, [bbx1, bby1, bbx2, bby2]): rows x1..x2, columns y1..y2.
    pub cutmix: Option<Option<(f64, [i64; 4])>>,
}

/// Size (w, h) of the image each stage sees, from the decoded size.
pub fn stage_sizes(aug: &Augmentation, w: usize, h: usize) -> StageSizes {
    let (mut w, mut h) = (w, h);
    if let Some(r) = &aug.resize {
        let (nh, nw) = super::geometry::resized_size(h, w, r.size, r.max_size);
        (w, h) = (nw, nh);
    }
    if let Some(c) = aug.center_crop {
        (w, h) = (c.w as usize, c.h as usize);
    }
    let before_random_crop = (w, h);
    if let Some(rc) = &aug.random_crop {
        let [l, t, r, b] = rc.padding.map(|p| p as usize);
        let (mut pw, mut ph) = (w + l + r, h + t + b);
        if rc.pad_if_needed {
            // torchvision pads both sides by the shortfall.
            if pw < rc.size.w as usize {
                pw += 2 * (rc.size.w as usize - pw);
            }
            if ph < rc.size.h as usize {
                ph += 2 * (rc.size.h as usize - ph);
            }
        }
        (w, h) = (pw, ph);
    }
    let padded = (w, h);
    if let Some(rc) = &aug.random_crop {
        (w, h) = (rc.size.w as usize, rc.size.h as usize);
    }
    let before_rrc = (w, h);
    if let Some(rrc) = &aug.random_resized_crop {
        (w, h) = (rrc.size.w as usize, rrc.size.h as usize);
    }
    StageSizes {
        before_random_crop,
        padded,
        before_rrc,
        output: (w, h),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageSizes {
    pub before_random_crop: (usize, usize),
    /// After RandomCrop's padding (the space its offsets index).
    pub padded: (usize, usize),
    pub before_rrc: (usize, usize),
    /// The tensor size after the before-collate stage (w, h).
    pub output: (usize, usize),
}

/// One try of torchvision's box draw (RandomResizedCrop, RandomErasing):
/// target area `A = area · U(scale)` and aspect `ar = exp(U(log ratio))` in
/// float32, returned as `(round(sqrt(A·ar)), round(sqrt(A/ar)))`.
fn draw_box(r: &mut Philox, scale: (f64, f64), ratio: (f64, f64), area: f64) -> (i64, i64) {
    let target = area * r.uniform_range_f32(scale.0 as f32, scale.1 as f32) as f64;
    let ar = r
        .uniform_range_f32((ratio.0 as f32).ln(), (ratio.1 as f32).ln())
        .exp() as f64;
    (
        (target * ar).sqrt().round_ties_even() as i64,
        (target / ar).sqrt().round_ties_even() as i64,
    )
}

/// torchvision `RandomResizedCrop.get_params` on an image of `w`×`h`.
pub fn sample_rrc(r: &mut Philox, cfg: &RandomResizedCrop, w: usize, h: usize) -> [i64; 4] {
    for _ in 0..10 {
        let (cw, ch) = draw_box(r, cfg.scale, cfg.ratio, (w * h) as f64);
        if 0 < cw && cw <= w as i64 && 0 < ch && ch <= h as i64 {
            let i = r.range_inclusive(0, h as i64 - ch);
            let j = r.range_inclusive(0, w as i64 - cw);
            return [i, j, ch, cw];
        }
    }
    let (w, h) = (w as i64, h as i64);
    let in_ratio = w as f64 / h as f64;
    let (min_r, max_r) = (cfg.ratio.0.min(cfg.ratio.1), cfg.ratio.0.max(cfg.ratio.1));
    let (cw, ch) = if in_ratio < min_r {
        (w, (w as f64 / min_r).round_ties_even() as i64)
    } else if in_ratio > max_r {
        ((h as f64 * max_r).round_ties_even() as i64, h)
    } else {
        (w, h)
    };
    [(h - ch) / 2, (w - cw) / 2, ch, cw]
}

/// ml-dr RandAugment: skip when U > p, else `num_ops` ops with replacement,
/// each signed op negated with probability 1/2.
pub fn sample_rand_augment(
    r: &mut Philox,
    cfg: &RandAugment,
    w: usize,
    h: usize,
) -> Option<Vec<(u8, f64)>> {
    if !r.chance_at_most(cfg.p) {
        return None;
    }
    let ops = (0..cfg.num_ops)
        .map(|_| {
            let op = r.below(randaug::OP_NAMES.len() as u32) as usize;
            let mut m = randaug::magnitude(op, cfg.magnitude, cfg.num_magnitude_bins, h, w);
            if SIGNED[op] && r.below(2) == 1 {
                m = -m;
            }
            (op as u8, m)
        })
        .collect();
    Some(ops)
}

/// ml-dr RandomErasing on a `w`×`h` tensor: (top, left, h, w), or the whole
/// image after ten failed tries (ml-dr then zeroes all of it).
pub fn sample_erase(r: &mut Philox, cfg: &RandomErase, w: usize, h: usize) -> Option<[i64; 4]> {
    if !r.chance_at_most(cfg.p) {
        return None;
    }
    for _ in 0..10 {
        // RandomErasing puts the aspect ratio on the height, RRC on the width.
        let (eh, ew) = draw_box(r, cfg.scale, cfg.ratio, (w * h) as f64);
        if !(eh < h as i64 && ew < w as i64) {
            continue;
        }
        let i = r.range_inclusive(0, h as i64 - eh);
        let j = r.range_inclusive(0, w as i64 - ew);
        return Some([i, j, eh, ew]);
    }
    Some([0, 0, h as i64, w as i64])
}

/// CutMix `rand_bbox` for a `w`×`h` tensor: rows from x, columns from y.
pub fn cutmix_box(r: &mut Philox, lam: f64, w: usize, h: usize) -> [i64; 4] {
    let cut_rat = (1.0 - lam).sqrt();
    let cut_h = (h as f64 * cut_rat) as i64;
    let cut_w = (w as f64 * cut_rat) as i64;
    let cx = r.below(h as u32) as i64;
    let cy = r.below(w as u32) as i64;
    let (h, w) = (h as i64, w as i64);
    [
        (cx - cut_h / 2).clamp(0, h),
        (cy - cut_w / 2).clamp(0, w),
        (cx + cut_h / 2).clamp(0, h),
        (cy + cut_w / 2).clamp(0, w),
    ]
}

/// Draws the crop records of (image, sample) for a decoded size of `w`×`h`.
pub fn sample_crop(
    aug: &Augmentation,
    seed: u64,
    image: u32,
    sample: u32,
    w: usize,
    h: usize,
) -> CropRecord {
    let sizes = stage_sizes(aug, w, h);
    let mut rec = CropRecord::default();
    if let Some(rc) = &aug.random_crop {
        let mut r = Philox::new(seed, image, sample, S_RANDOM_CROP);
        let (pw, ph) = sizes.padded;
        let (tw, th) = (rc.size.w as i64, rc.size.h as i64);
        // torchvision refuses a crop larger than the (padded) image.
        let i = if ph as i64 > th {
            r.range_inclusive(0, ph as i64 - th)
        } else {
            0
        };
        let j = if pw as i64 > tw {
            r.range_inclusive(0, pw as i64 - tw)
        } else {
            0
        };
        rec.random_crop = Some((i, j));
    }
    if let Some(rrc) = &aug.random_resized_crop {
        let mut r = Philox::new(seed, image, sample, S_CROP);
        let (bw, bh) = sizes.before_rrc;
        rec.rrc = Some(sample_rrc(&mut r, rrc, bw, bh));
    }
    rec
}

/// Draws the after-collate transforms of one side; `side` offsets the streams.
fn sample_side(
    aug: &Augmentation,
    seed: u64,
    image: u32,
    sample: u32,
    side: u32,
    w: usize,
    h: usize,
) -> SideParams {
    let stream = |s| Philox::new(seed, image, sample, s + side);
    SideParams {
        flip: aug
            .random_horizontal_flip
            .map(|p| stream(S_FLIP).chance_below(p)),
        rand_augment: aug
            .rand_augment
            .as_ref()
            .map(|c| sample_rand_augment(&mut stream(S_RANDAUG), c, w, h)),
        erase: aug
            .random_erase
            .as_ref()
            .map(|c| sample_erase(&mut stream(S_ERASE), c, w, h)),
    }
}

/// The listing's mixing groups: a seeded permutation cut into groups of `g`.
pub struct MixingGroups {
    order: Vec<u32>,
    position: Vec<u32>,
    group: u32,
}

impl MixingGroups {
    pub fn new(seed: u64, images: u32, group: u32) -> Self {
        let order = permutation(seed, images, S_GROUPS);
        let mut position = vec![0u32; images as usize];
        for (pos, &img) in order.iter().enumerate() {
            position[img as usize] = pos as u32;
        }
        MixingGroups {
            order,
            position,
            group: group.max(1),
        }
    }

    /// Image ids in work order (groups one after another).
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// The group holding `image`.
    pub fn group_of(&self, image: u32) -> &[u32] {
        let g = (self.position[image as usize] / self.group) as usize * self.group as usize;
        &self.order[g..(g + self.group as usize).min(self.order.len())]
    }
}

/// Inputs of `sample_params` that describe the dataset.
pub struct Draw<'a> {
    pub aug: &'a Augmentation,
    pub seed: u64,
    pub num_samples: u32,
    /// Decoded (w, h) of any image id.
    pub size_of: &'a dyn Fn(u32) -> (usize, usize),
}

impl Draw<'_> {
    /// All parameters of (image, sample), the pair drawn from `candidates`
    /// (its mixing group; for `dr augment`, the one image given with --pair).
    pub fn sample(&self, image: u32, sample: u32, candidates: &[u32]) -> SampleParams {
        let aug = self.aug;
        let (w, h) = (self.size_of)(image);
        let crop = sample_crop(aug, self.seed, image, sample, w, h);
        let (ow, oh) = stage_sizes(aug, w, h).output;
        let side = sample_side(aug, self.seed, image, sample, 0, ow, oh);
        let (mut pair, mut mixup, mut cutmix) = (None, None, None);
        if aug.mixing() {
            let mut r = Philox::new(self.seed, image, sample, S_PAIR);
            let id2 = candidates[r.below(candidates.len() as u32) as usize];
            let sample2 = r.below(self.num_samples);
            let (w2, h2) = (self.size_of)(id2);
            pair = Some(PairParams {
                id2,
                sample2: Some(sample2),
                crop: sample_crop(aug, self.seed, id2, sample2, w2, h2),
                side: sample_side(aug, self.seed, image, sample, PAIR_SIDE, ow, oh),
            });
            mixup = aug.mixup.as_ref().map(|m| {
                let mut r = Philox::new(self.seed, image, sample, S_MIXUP);
                (m.alpha != 0.0 && r.chance_at_most(m.p))
                    .then(|| r.beta(m.alpha, m.alpha) / m.div_by)
            });
            cutmix = aug.cutmix.as_ref().map(|c| {
                let mut r = Philox::new(self.seed, image, sample, S_CUTMIX);
                (c.alpha != 0.0 && r.chance_at_most(c.p)).then(|| {
                    let lam = r.beta(c.alpha, c.alpha);
                    (lam, cutmix_box(&mut r, lam, ow, oh))
                })
            });
        }
        SampleParams {
            crop,
            side,
            pair,
            mixup,
            cutmix,
        }
    }
}

#[cfg(test)]
mod tests;
