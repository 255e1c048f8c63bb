//! One (image, sample) through ml-dr's generation path on the CPU:
//! before collate on the PIL image (resize, center crop, random crop, random
//! resized crop), then on tensors: ToUint8, flip, RandAugment (uint8),
//! ToTensor, erase, normalize, MixUp, CutMix. The pair image, when mixing is
//! configured, goes through the same steps with its own records.

use super::geometry::{center_crop, crop, hflip, pad, resize};
use super::image::{F32Chw, Rgb8, U8Chw};
use super::params::{CropRecord, SampleParams, SideParams};
use super::randaug::apply_op;
use super::resample::resize_bilinear;
use super::tensor;
use crate::config::Augmentation;

/// What the teacher sees, and the uint8 stage before the float ops.
#[derive(Debug, Clone)]
pub struct Augmented {
    pub uint8: U8Chw,
    pub tensor: F32Chw,
}

/// The PIL-stage transforms (DataLoader workers in ml-dr).
pub fn before_collate(aug: &Augmentation, img: &Rgb8, rec: &CropRecord) -> Rgb8 {
    let mut img = img.clone();
    if let Some(r) = &aug.resize {
        img = resize(&img, r.size, r.max_size, aug.pass_order);
    }
    if let Some(c) = aug.center_crop {
        img = center_crop(&img, c.h as usize, c.w as usize);
    }
    if let (Some(rc), Some((i, j))) = (&aug.random_crop, rec.random_crop) {
        if rc.padding != [0; 4] {
            img = pad(
                &img,
                rc.padding.map(|p| p as usize),
                rc.fill,
                rc.padding_mode,
            );
        }
        if rc.pad_if_needed && img.width < rc.size.w as usize {
            let d = rc.size.w as usize - img.width;
            img = pad(&img, [d, 0, d, 0], rc.fill, rc.padding_mode);
        }
        if rc.pad_if_needed && img.height < rc.size.h as usize {
            let d = rc.size.h as usize - img.height;
            img = pad(&img, [0, d, 0, d], rc.fill, rc.padding_mode);
        }
        img = crop(&img, i, j, rc.size.h as usize, rc.size.w as usize);
    }
    if let (Some(rrc), Some([i, j, h, w])) = (&aug.random_resized_crop, rec.rrc) {
        let c = crop(&img, i, j, h as usize, w as usize);
        img = resize_bilinear(&c, rrc.size.w as usize, rrc.size.h as usize, aug.pass_order);
    }
    img
}

/// ToUint8 (lossless after to_tensor), flip and RandAugment on the uint8 tensor.
pub fn uint8_stage(img: &Rgb8, side: &SideParams) -> U8Chw {
    let mut t = img.to_chw();
    if side.flip == Some(true) {
        hflip(&mut t);
    }
    if let Some(Some(ops)) = &side.rand_augment {
        for &(op, mag) in ops {
            apply_op(&mut t, op as usize, mag);
        }
    }
    t
}

/// ToTensor, erase, normalize.
pub fn float_stage(aug: &Augmentation, img: &U8Chw, side: &SideParams) -> F32Chw {
    let mut t = tensor::to_float(img);
    if let Some(Some(rec)) = side.erase {
        tensor::erase(&mut t, rec);
    }
    if let Some(n) = &aug.normalize {
        tensor::normalize(&mut t, n.mean, n.std);
    }
    t
}

/// The whole path for one sample; `pair_img` is the decoded pair image
/// (needed when `p.pair` is set).
pub fn augment(
    aug: &Augmentation,
    img: &Rgb8,
    p: &SampleParams,
    pair_img: Option<&Rgb8>,
) -> Augmented {
    let uint8 = uint8_stage(&before_collate(aug, img, &p.crop), &p.side);
    let mut x = float_stage(aug, &uint8, &p.side);
    if let (Some(pair), Some(img2)) = (&p.pair, pair_img) {
        let mixing = matches!(p.mixup, Some(Some(_))) || matches!(p.cutmix, Some(Some(_)));
        if mixing {
            let u2 = uint8_stage(&before_collate(aug, img2, &pair.crop), &pair.side);
            let x2 = float_stage(aug, &u2, &pair.side);
            if let Some(Some(lam)) = p.mixup {
                tensor::mixup(&mut x, &x2, lam);
            }
            if let Some(Some((_, bbox))) = p.cutmix {
                tensor::cutmix(&mut x, &x2, bbox);
            }
        }
    }
    Augmented { uint8, tensor: x }
}
