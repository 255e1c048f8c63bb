//! The config written out: ml-dr's `reinforce` mapping with every option
//! spelled out (defaults made explicit), as JSON. It is what the manifest
//! records and what `dr export` hands to ml-dr; since YAML reads JSON,
//! `ReinforceConfig::parse` reads it back to the same config (tested).

use serde_json::{Map, Value, json};

use super::{Augmentation, PaddingMode, ReinforceConfig, ResizeSize};

/// An f32 written with its shortest decimal form (0.485, not 0.4850000143).
fn f32_json(v: f32) -> Value {
    json!(v.to_string().parse::<f64>().unwrap_or(v as f64))
}

impl ReinforceConfig {
    /// `{"num_samples", "topk", "mixing_group", "resize_pass_order",
    /// "image_augmentation": {...}}` in ml-dr's key names.
    pub fn to_json(&self) -> Value {
        json!({
            "num_samples": self.num_samples,
            "topk": self.topk,
            "mixing_group": self.mixing_group,
            "resize_pass_order": self.augment.pass_order.name(),
            "image_augmentation": self.augment.to_json(),
        })
    }
}

impl Augmentation {
    /// `image_augmentation` in ml-dr's pipeline order, each transform with
    /// `enable: true` and all its options.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |name: &str, mut v: Value| {
            v.as_object_mut()
                .expect("options are a mapping")
                .insert("enable".into(), json!(true));
            m.insert(name.into(), v);
        };
        if self.uint8 {
            put("uint8", json!({}));
        }
        if let Some(r) = &self.resize {
            let size = match r.size {
                ResizeSize::Shorter(s) => json!(s),
                ResizeSize::Exact { h, w } => json!([h, w]),
            };
            let mut v = json!({"size": size, "interpolation": "bilinear"});
            if let Some(m) = r.max_size {
                v["max_size"] = json!(m);
            }
            put("resize", v);
        }
        if let Some(c) = self.center_crop {
            put("center_crop", json!({"size": [c.h, c.w]}));
        }
        if let Some(rc) = &self.random_crop {
            let mode = match rc.padding_mode {
                PaddingMode::Constant => "constant",
                PaddingMode::Edge => "edge",
                PaddingMode::Reflect => "reflect",
                PaddingMode::Symmetric => "symmetric",
            };
            put(
                "random_crop",
                json!({
                    "size": [rc.size.h, rc.size.w],
                    "padding": rc.padding,
                    "pad_if_needed": rc.pad_if_needed,
                    "fill": rc.fill,
                    "padding_mode": mode,
                }),
            );
        }
        if let Some(r) = &self.random_resized_crop {
            put(
                "random_resized_crop",
                json!({
                    "size": [r.size.h, r.size.w],
                    "scale": [r.scale.0, r.scale.1],
                    "ratio": [r.ratio.0, r.ratio.1],
                    "interpolation": "bilinear",
                }),
            );
        }
        if let Some(p) = self.random_horizontal_flip {
            put("random_horizontal_flip", json!({ "p": p }));
        }
        if let Some(r) = &self.rand_augment {
            put(
                "rand_augment",
                json!({
                    "p": r.p,
                    "num_ops": r.num_ops,
                    "magnitude": r.magnitude,
                    "num_magnitude_bins": r.num_magnitude_bins,
                    "interpolation": "nearest",
                }),
            );
        }
        if self.to_tensor {
            put("to_tensor", json!({}));
        }
        if let Some(e) = &self.random_erase {
            put(
                "random_erase",
                json!({"p": e.p, "scale": [e.scale.0, e.scale.1], "ratio": [e.ratio.0, e.ratio.1]}),
            );
        }
        if let Some(n) = &self.normalize {
            put(
                "normalize",
                json!({
                    "mean": n.mean.map(f32_json),
                    "std": n.std.map(f32_json),
                }),
            );
        }
        if let Some(x) = &self.mixup {
            put(
                "mixup",
                json!({"alpha": x.alpha, "p": x.p, "div_by": x.div_by}),
            );
        }
        if let Some(x) = &self.cutmix {
            put("cutmix", json!({"alpha": x.alpha, "p": x.p}));
        }
        Value::Object(m)
    }
}
