//! The transforms of ml-dr's `image_augmentation`, with the options their
//! torchvision (or ml-dr) constructors accept and those constructors'
//! defaults. Options dr cannot reproduce exactly are refused with the reason,
//! never approximated.

use super::yaml::{Node, Result};

/// Transform names in ml-dr's pipeline order (`TRANSFORMATION_TO_NAME`).
pub const TRANSFORM_NAMES: &[&str] = &[
    "uint8",
    "resize",
    "center_crop",
    "random_crop",
    "random_resized_crop",
    "random_horizontal_flip",
    "rand_augment",
    "to_tensor",
    "random_erase",
    "normalize",
    "mixup",
    "cutmix",
];

/// Which Pillow release's resize pass order to reproduce (FACTS.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PassOrder {
    /// Pillow >= 13: vertical first when the height shrinks more than twice
    /// as much as the width.
    #[default]
    Pillow13,
    /// Pillow <= 12.3: always horizontal first (for RRC crops).
    Pillow12,
}

impl PassOrder {
    pub fn parse(n: &Node) -> Result<Self> {
        let name = n.str()?;
        Self::from_name(name).ok_or_else(|| {
            n.error(format!(
                "`{name}` is not a pass order: allowed pillow13 (default), pillow12"
            ))
        })
    }

    /// `pillow13` or `pillow12` (what `name` returns).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "pillow13" => Some(PassOrder::Pillow13),
            "pillow12" => Some(PassOrder::Pillow12),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PassOrder::Pillow13 => "pillow13",
            PassOrder::Pillow12 => "pillow12",
        }
    }
}

/// torchvision's resize target: an int resizes the shorter side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeSize {
    Shorter(u32),
    Exact { h: u32, w: u32 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resize {
    pub size: ResizeSize,
    pub max_size: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropSize {
    pub h: u32,
    pub w: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaddingMode {
    Constant,
    Edge,
    Reflect,
    Symmetric,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RandomCrop {
    pub size: CropSize,
    /// left, top, right, bottom
    pub padding: [u32; 4],
    pub pad_if_needed: bool,
    pub fill: u8,
    pub padding_mode: PaddingMode,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RandomResizedCrop {
    pub size: CropSize,
    pub scale: (f64, f64),
    pub ratio: (f64, f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RandAugment {
    pub p: f64,
    pub num_ops: u32,
    pub magnitude: u32,
    pub num_magnitude_bins: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RandomErase {
    pub p: f64,
    pub scale: (f64, f64),
    pub ratio: (f64, f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

#[derive(Debug, Clone, PartialEq)]
pub struct MixUp {
    pub alpha: f64,
    pub p: f64,
    pub div_by: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CutMix {
    pub alpha: f64,
    pub p: f64,
}

/// The enabled transforms; `None` = not in the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Augmentation {
    pub uint8: bool,
    pub resize: Option<Resize>,
    pub center_crop: Option<CropSize>,
    pub random_crop: Option<RandomCrop>,
    pub random_resized_crop: Option<RandomResizedCrop>,
    /// Probability of a flip.
    pub random_horizontal_flip: Option<f64>,
    pub rand_augment: Option<RandAugment>,
    pub to_tensor: bool,
    pub random_erase: Option<RandomErase>,
    pub normalize: Option<Normalize>,
    pub mixup: Option<MixUp>,
    pub cutmix: Option<CutMix>,
    pub pass_order: PassOrder,
}

impl Augmentation {
    /// Whether a pair image is drawn (ml-dr: mixup or cutmix configured).
    pub fn mixing(&self) -> bool {
        self.mixup.is_some() || self.cutmix.is_some()
    }

    pub(super) fn from_node(
        n: &Node,
        pass_order: PassOrder,
        compat: bool,
        warnings: &mut Vec<String>,
    ) -> Result<Self> {
        // `enable: false` drops a transform; any other options are still checked.
        let on = |name: &str| -> Result<Option<Node>> {
            let Some(t) = n.get(name)? else {
                return Ok(None);
            };
            let enabled = match t.get("enable")? {
                Some(e) => e.bool()?,
                None => true,
            };
            Ok(enabled.then_some(t))
        };
        let flag = |name: &str| -> Result<bool> {
            match on(name)? {
                Some(t) => {
                    t.deny_unknown(&["enable"])?;
                    Ok(true)
                }
                None => Ok(false),
            }
        };
        let aug = Augmentation {
            uint8: flag("uint8")?,
            resize: on("resize")?.map(|t| parse_resize(&t)).transpose()?,
            center_crop: on("center_crop")?
                .map(|t| parse_center_crop(&t))
                .transpose()?,
            random_crop: on("random_crop")?
                .map(|t| parse_random_crop(&t))
                .transpose()?,
            random_resized_crop: on("random_resized_crop")?
                .map(|t| parse_rrc(&t))
                .transpose()?,
            random_horizontal_flip: on("random_horizontal_flip")?
                .map(|t| parse_flip(&t))
                .transpose()?,
            rand_augment: on("rand_augment")?
                .map(|t| parse_rand_augment(&t))
                .transpose()?,
            to_tensor: flag("to_tensor")?,
            random_erase: on("random_erase")?.map(|t| parse_erase(&t)).transpose()?,
            normalize: on("normalize")?.map(|t| parse_normalize(&t)).transpose()?,
            mixup: on("mixup")?.map(|t| parse_mixup(&t)).transpose()?,
            cutmix: on("cutmix")?.map(|t| parse_cutmix(&t)).transpose()?,
            pass_order,
        };
        for (key, hint) in n.unknown_keys(TRANSFORM_NAMES)? {
            if compat {
                warnings.push(format!(
                    "{}: `{}.{key}` is not a transform ml-dr knows; ml-dr ignores it and so does --ml-dr-compat.{hint}",
                    n.file, n.path
                ));
            } else {
                n.deny_unknown(TRANSFORM_NAMES)?;
            }
        }
        aug.check_pipeline(n, warnings)?;
        Ok(aug)
    }

    /// Combinations ml-dr would run but that make no sense or that dr does
    /// not reproduce.
    fn check_pipeline(&self, n: &Node, ignored: &[String]) -> Result<()> {
        if !self.to_tensor {
            return Err(n.error(
                "`to_tensor` is required: ml-dr collates tensors, so without it generation fails. Add `to_tensor: {enable: true}`",
            ));
        }
        if !self.uint8 {
            return Err(n.error(
                "`uint8` is required: without it ml-dr's ToTensor divides the already-scaled crop by 255 a second time \
                 and RandAugment takes torchvision's float path. Add `uint8: {enable: true}`",
            ));
        }
        let fixed = self.random_resized_crop.is_some()
            || self.random_crop.is_some()
            || self.center_crop.is_some()
            || matches!(
                self.resize,
                Some(Resize {
                    size: ResizeSize::Exact { .. },
                    ..
                })
            );
        if !fixed {
            // ml-dr's flowers102/food101 configs under --ml-dr-compat: what
            // the public code would do with them, and why dr does not.
            // The key of each warning: its first `...` names the path.
            let keys: Vec<&str> = ignored
                .iter()
                .filter_map(|w| w.split('`').nth(1))
                .map(|p| p.rsplit('.').next().unwrap_or(p))
                .collect();
            let why_not_ml_dr = if keys.is_empty() {
                String::new()
            } else {
                format!(
                    " (with `{}` ignored, as ml-dr's public code ignores it, every sample keeps its image's own size; \
                 ml-dr's DataLoader then cannot stack a batch of them either, as torch's default collate needs equal sizes, \
                 so that code cannot run this config on a dataset of varied image sizes). Fix: spell the crop `random_resized_crop`",
                    keys.join("`, `")
                )
            };
            return Err(n.error(format!(
                "no transform gives every sample the same size (random_resized_crop, random_crop, center_crop or resize to [h, w]), \
                 so samples cannot be batched for the teacher{why_not_ml_dr}"
            )));
        }
        Ok(())
    }
}

fn positive_u32(n: &Node) -> Result<u32> {
    Ok(n.int_in(1, 1 << 16)? as u32)
}

/// torchvision's crop size: int, [s] or [h, w].
fn crop_size(n: &Node) -> Result<CropSize> {
    if n.i64().is_ok() {
        let s = positive_u32(n)?;
        return Ok(CropSize { h: s, w: s });
    }
    let items = n.list()?;
    match items.as_slice() {
        [s] => {
            let s = positive_u32(s)?;
            Ok(CropSize { h: s, w: s })
        }
        [h, w] => Ok(CropSize {
            h: positive_u32(h)?,
            w: positive_u32(w)?,
        }),
        _ => Err(n.error("expected a size: an integer, [size] or [height, width]")),
    }
}

fn range_pair(n: &Node, lo: f64, hi: f64) -> Result<(f64, f64)> {
    let v = n.f64s(2)?;
    if !(lo..=hi).contains(&v[0]) || !(lo..=hi).contains(&v[1]) || v[0] > v[1] {
        return Err(n.error(format!(
            "[{}, {}] is not an increasing pair within {lo} to {hi}",
            v[0], v[1]
        )));
    }
    Ok((v[0], v[1]))
}

fn probability(t: &Node, default: f64) -> Result<f64> {
    t.get("p")?.map_or(Ok(default), |p| p.f64_in(0.0, 1.0))
}

/// Only the interpolation ml-dr uses is reproduced bit-exactly.
fn interpolation(t: &Node, only: &str) -> Result<()> {
    if let Some(i) = t.get("interpolation")? {
        let v = i.str().map(str::to_ascii_lowercase).unwrap_or_default();
        if v != only {
            return Err(i.error(format!(
                "only `{only}` interpolation is reproduced (ml-dr's setting); found {}",
                super::yaml::show(i.value)
            )));
        }
    }
    if let Some(a) = t.get("antialias")?
        && !a.bool()?
    {
        return Err(a.error(
            "antialias: false has no effect on PIL images (ml-dr resizes PIL images); remove it",
        ));
    }
    Ok(())
}

fn parse_resize(t: &Node) -> Result<Resize> {
    let s = t.require("size")?;
    let size = match crop_size(&s)? {
        c if s.i64().is_ok() || s.list().is_ok_and(|l| l.len() == 1) => ResizeSize::Shorter(c.h),
        c => ResizeSize::Exact { h: c.h, w: c.w },
    };
    let max_size = t.get("max_size")?.map(|m| positive_u32(&m)).transpose()?;
    interpolation(t, "bilinear")?;
    t.deny_unknown(&["enable", "size", "interpolation", "max_size", "antialias"])?;
    Ok(Resize { size, max_size })
}

fn parse_center_crop(t: &Node) -> Result<CropSize> {
    let size = crop_size(&t.require("size")?)?;
    t.deny_unknown(&["enable", "size"])?;
    Ok(size)
}

fn parse_random_crop(t: &Node) -> Result<RandomCrop> {
    let size = crop_size(&t.require("size")?)?;
    let padding = match t.get("padding")? {
        None => [0; 4],
        Some(p) if p.is_null() => [0; 4],
        Some(p) => {
            let pad = |n: &Node| Ok::<u32, _>(n.int_in(0, 1 << 16)? as u32);
            if p.i64().is_ok() {
                [pad(&p)?; 4]
            } else {
                let v = p.list()?;
                match v.as_slice() {
                    [a] => [pad(a)?; 4],
                    [lr, tb] => [pad(lr)?, pad(tb)?, pad(lr)?, pad(tb)?],
                    [l, tp, r, b] => [pad(l)?, pad(tp)?, pad(r)?, pad(b)?],
                    _ => {
                        return Err(
                            p.error("padding is an integer or a list of 1, 2 or 4 integers")
                        );
                    }
                }
            }
        }
    };
    let pad_if_needed = t.get("pad_if_needed")?.map_or(Ok(false), |n| n.bool())?;
    let fill = t.get("fill")?.map_or(Ok(0), |n| n.int_in(0, 255))? as u8;
    let padding_mode = match t.get("padding_mode")? {
        None => PaddingMode::Constant,
        Some(m) => match m.str()? {
            "constant" => PaddingMode::Constant,
            "edge" => PaddingMode::Edge,
            "reflect" => PaddingMode::Reflect,
            "symmetric" => PaddingMode::Symmetric,
            other => {
                return Err(m.error(format!(
                    "`{other}` is not a padding mode: allowed constant, edge, reflect, symmetric"
                )));
            }
        },
    };
    t.deny_unknown(&[
        "enable",
        "size",
        "padding",
        "pad_if_needed",
        "fill",
        "padding_mode",
    ])?;
    Ok(RandomCrop {
        size,
        padding,
        pad_if_needed,
        fill,
        padding_mode,
    })
}

fn parse_rrc(t: &Node) -> Result<RandomResizedCrop> {
    let size = crop_size(&t.require("size")?)?;
    let scale = t
        .get("scale")?
        .map_or(Ok((0.08, 1.0)), |n| range_pair(&n, 0.0, 1.0))?;
    let ratio = t
        .get("ratio")?
        .map_or(Ok((3.0 / 4.0, 4.0 / 3.0)), |n| range_pair(&n, 1e-6, 1e6))?;
    if scale.1 <= 0.0 {
        return Err(t.error("scale must allow a non-empty crop (upper bound > 0)"));
    }
    interpolation(t, "bilinear")?;
    t.deny_unknown(&[
        "enable",
        "size",
        "scale",
        "ratio",
        "interpolation",
        "antialias",
    ])?;
    Ok(RandomResizedCrop { size, scale, ratio })
}

fn parse_flip(t: &Node) -> Result<f64> {
    let p = probability(t, 0.5)?;
    t.deny_unknown(&["enable", "p"])?;
    Ok(p)
}

fn parse_rand_augment(t: &Node) -> Result<RandAugment> {
    // ml-dr's RandAugment defaults p to 1.0; the rest are torchvision's.
    let p = probability(t, 1.0)?;
    let num_ops = t.get("num_ops")?.map_or(Ok(2), |n| n.int_in(0, 64))? as u32;
    let num_magnitude_bins = t
        .get("num_magnitude_bins")?
        .map_or(Ok(31), |n| n.int_in(2, 1024))? as u32;
    let magnitude = match t.get("magnitude")? {
        None => 9,
        Some(m) => m.int_in(0, num_magnitude_bins as i64 - 1)? as u32,
    };
    interpolation(t, "nearest")?;
    if let Some(f) = t.get("fill")?
        && !f.is_null()
    {
        return Err(f.error(
            "a RandAugment fill is not reproduced (ml-dr uses none: areas outside the image are 0)",
        ));
    }
    t.deny_unknown(&[
        "enable",
        "p",
        "num_ops",
        "magnitude",
        "num_magnitude_bins",
        "interpolation",
        "fill",
    ])?;
    Ok(RandAugment {
        p,
        num_ops,
        magnitude,
        num_magnitude_bins,
    })
}

fn parse_erase(t: &Node) -> Result<RandomErase> {
    let p = probability(t, 0.5)?;
    let scale = t
        .get("scale")?
        .map_or(Ok((0.02, 0.33)), |n| range_pair(&n, 0.0, 1.0))?;
    let ratio = t
        .get("ratio")?
        .map_or(Ok((0.3, 3.3)), |n| range_pair(&n, 1e-6, 1e6))?;
    if let Some(v) = t.get("value")? {
        // ml-dr's RandomErasing ignores `value` and always writes 0.
        if v.f64().ok() != Some(0.0) {
            return Err(
                v.error("ml-dr erases to 0 whatever `value` says; only value: 0 is accepted")
            );
        }
    }
    if let Some(i) = t.get("inplace")? {
        i.bool()?;
    }
    t.deny_unknown(&["enable", "p", "scale", "ratio", "value", "inplace"])?;
    Ok(RandomErase { p, scale, ratio })
}

fn parse_normalize(t: &Node) -> Result<Normalize> {
    let three = |key: &str| -> Result<[f32; 3]> {
        let n = t.require(key)?;
        let v = n.f64s(3)?;
        Ok([v[0] as f32, v[1] as f32, v[2] as f32])
    };
    let mean = three("mean")?;
    let std = three("std")?;
    if std.iter().any(|s| *s <= 0.0) {
        return Err(t.require("std")?.error("every std must be positive"));
    }
    if let Some(i) = t.get("inplace")? {
        i.bool()?;
    }
    t.deny_unknown(&["enable", "mean", "std", "inplace"])?;
    Ok(Normalize { mean, std })
}

fn parse_mixup(t: &Node) -> Result<MixUp> {
    let alpha = t.get("alpha")?.map_or(Ok(1.0), |n| n.f64_in(0.0, 1e6))?;
    let p = probability(t, 1.0)?;
    let div_by = t.get("div_by")?.map_or(Ok(1.0), |n| n.f64_in(1.0, 1e6))?;
    t.deny_unknown(&["enable", "alpha", "p", "div_by"])?;
    Ok(MixUp { alpha, p, div_by })
}

fn parse_cutmix(t: &Node) -> Result<CutMix> {
    let alpha = t.get("alpha")?.map_or(Ok(1.0), |n| n.f64_in(0.0, 1e6))?;
    let p = probability(t, 1.0)?;
    t.deny_unknown(&["enable", "alpha", "p"])?;
    Ok(CutMix { alpha, p })
}
