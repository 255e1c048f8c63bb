//! Real-size models with random weights, written as ONNX at test time: the
//! determinism tests need a network the size of a real teacher (so GEMM
//! blocking and reductions run at real sizes), and committing tens of
//! megabytes of weights, or needing PyTorch in CI, is not an option.
//!
//! `resnet` is torchvision's ResNet with BasicBlocks (ResNet-18 is
//! `[2, 2, 2, 2]` at width 64) as the legacy exporter writes it in eval mode:
//! BatchNorm folded into each Conv's bias, ReLU, the residual Add, a 3x3/2
//! MaxPool after the stem, GlobalAveragePool, Flatten and a Gemm head.
//! Weights are He-scaled uniform draws from Philox, so activations stay of
//! order one through the depth.

use prost::Message;

use super::proto::{
    AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto, attribute_type, data_type,
};
use crate::rng::Philox;

/// A ResNet of BasicBlocks: `depths` blocks in each of the four stages,
/// `width` channels in the first (doubling each stage), `classes` outputs,
/// input [N, 3, size, size] with N free. ONNX bytes, opset 17.
pub fn resnet(depths: [usize; 4], width: usize, classes: usize, size: usize, seed: u64) -> Vec<u8> {
    let mut b = Builder {
        rng: Philox::new(seed, 0x5e5, 18, 0),
        nodes: Vec::new(),
        inits: Vec::new(),
        n: 0,
    };
    let mut x = b.conv("input", 3, width, 7, 2, 3);
    x = b.node("Relu", &[&x], vec![]);
    x = b.node(
        "MaxPool",
        &[&x],
        vec![
            ints("kernel_shape", &[3, 3]),
            ints("strides", &[2, 2]),
            ints("pads", &[1; 4]),
        ],
    );
    let mut c = width;
    for (stage, &blocks) in depths.iter().enumerate() {
        let out = width << stage;
        for i in 0..blocks {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            let y = b.conv(&x, c, out, 3, stride, 1);
            let y = b.node("Relu", &[&y], vec![]);
            let y = b.conv(&y, out, out, 3, 1, 1);
            let skip = if stride != 1 || c != out {
                b.conv(&x, c, out, 1, stride, 0)
            } else {
                x.clone()
            };
            let y = b.node("Add", &[&y, &skip], vec![]);
            x = b.node("Relu", &[&y], vec![]);
            c = out;
        }
    }
    x = b.node("GlobalAveragePool", &[&x], vec![]);
    x = b.node("Flatten", &[&x], vec![int("axis", 1)]);
    let w = b.weight(&[classes, c], c);
    let bias = b.weight(&[classes], c);
    let logits = b.node(
        "Gemm",
        &[&x, &w, &bias],
        vec![float("alpha", 1.0), float("beta", 1.0), int("transB", 1)],
    );
    let value = |name: &str, dims: Vec<Dimension>| ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: Some(data_type::FLOAT),
                shape: Some(TensorShapeProto { dim: dims }),
            }),
        }),
    };
    let free = |p: &str| Dimension {
        dim_value: None,
        dim_param: Some(p.into()),
    };
    let fixed = |v: usize| Dimension {
        dim_value: Some(v as i64),
        dim_param: None,
    };
    let model = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        producer_name: Some("dr synth".into()),
        producer_version: None,
        graph: Some(GraphProto {
            node: b.nodes,
            name: Some("resnet".into()),
            initializer: b.inits,
            sparse_initializer: vec![],
            input: vec![value(
                "input",
                vec![free("N"), fixed(3), fixed(size), fixed(size)],
            )],
            output: vec![value(&logits, vec![free("N"), fixed(classes)])],
            value_info: vec![],
        }),
        functions: vec![],
    };
    model.encode_to_vec()
}

struct Builder {
    rng: Philox,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    n: usize,
}

impl Builder {
    fn fresh(&mut self, what: &str) -> String {
        self.n += 1;
        format!("{what}_{}", self.n)
    }

    /// A uniform(-a, a) tensor with a = sqrt(6 / fan_in) (He, for ReLU).
    fn weight(&mut self, dims: &[usize], fan_in: usize) -> String {
        let name = self.fresh("w");
        let a = (6.0 / fan_in as f32).sqrt();
        let count: usize = dims.iter().product();
        let raw: Vec<u8> = (0..count)
            .flat_map(|_| ((self.rng.uniform_f32() * 2.0 - 1.0) * a).to_le_bytes())
            .collect();
        self.inits.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(data_type::FLOAT),
            name: Some(name.clone()),
            raw_data: Some(raw),
            ..Default::default()
        });
        name
    }

    fn node(&mut self, op: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> String {
        let out = self.fresh(op);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: Some(format!("{out}_node")),
            op_type: Some(op.into()),
            domain: None,
            attribute,
        });
        out
    }

    /// Conv with a bias (the folded BatchNorm), square kernel.
    fn conv(
        &mut self,
        x: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> String {
        let w = self.weight(&[cout, cin, k, k], cin * k * k);
        let bias = self.weight(&[cout], cin * k * k * 16);
        let k = k as i64;
        let (s, p) = (stride as i64, pad as i64);
        self.node(
            "Conv",
            &[x, &w, &bias],
            vec![
                ints("kernel_shape", &[k, k]),
                ints("strides", &[s, s]),
                ints("pads", &[p, p, p, p]),
                ints("dilations", &[1, 1]),
                int("group", 1),
            ],
        )
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_type::INTS),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_type::INT),
        i: Some(v),
        ..Default::default()
    }
}

fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_type::FLOAT),
        f: Some(v),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teacher::ensemble::Member;
    use crate::teacher::tensor::Tensor;

    /// ResNet-18's size (11.7 M parameters, 1.82 GMAC at 224 px) and a forward
    /// (at 64 px) whose logits are finite and not degenerate.
    #[test]
    fn resnet18_has_its_size_and_runs() {
        let dir = std::env::temp_dir().join(format!("dr-synth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("resnet18.onnx");
        std::fs::write(&path, resnet([2, 2, 2, 2], 64, 1000, 224, 1)).unwrap();
        let g = Member::load(&path).unwrap().graph(1).unwrap();
        let params: usize = g
            .values
            .iter()
            .filter_map(|v| v.constant.as_ref())
            .map(|t| t.len())
            .sum();
        // torchvision's 11,689,512, less the 4800 BatchNorm scales folded away
        // (each BatchNorm's shift became its conv's bias).
        assert_eq!(params, 11_689_512 - 4800);
        let gmacs = crate::teacher::infer::macs(&g) as f64 / 1e9;
        assert!((gmacs - 1.82).abs() < 0.01, "{gmacs} GMAC");
        std::fs::write(&path, resnet([2, 2, 2, 2], 64, 1000, 64, 1)).unwrap();
        let m = Member::load(&path).unwrap();
        let mut r = Philox::new(2, 0, 0, 0);
        let x: Vec<f32> = (0..3 * 64 * 64)
            .map(|_| r.uniform_f32() * 4.0 - 2.0)
            .collect();
        let y = m.logits(Tensor::f32(vec![1, 3, 64, 64], x)).unwrap();
        let y = y.view().unwrap().data.to_vec();
        assert_eq!(y.len(), 1000);
        let spread =
            y.iter().fold(f32::MIN, |a, &b| a.max(b)) - y.iter().fold(f32::MAX, |a, &b| a.min(b));
        assert!(
            y.iter().all(|v| v.is_finite()) && spread > 0.1,
            "spread {spread}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod batch_invariance {
    use crate::teacher::ensemble::Member;
    use crate::teacher::tensor::Tensor;

    /// The CPU executor's logits of an image are the same bits whatever the
    /// batch it is in and its place there (ResNet-18 at 64 px).
    #[test]
    fn cpu_logits_do_not_depend_on_the_batch() {
        let dir = std::env::temp_dir().join(format!("dr-synth-batch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("resnet18.onnx");
        std::fs::write(&path, super::resnet([2, 2, 2, 2], 64, 1000, 64, 7)).unwrap();
        let m = Member::load(&path).unwrap();
        let per = 3 * 64 * 64;
        let mut r = crate::rng::Philox::new(3, 0, 0, 0);
        let images: Vec<f32> = (0..9 * per).map(|_| r.uniform_f32() * 4.0 - 2.0).collect();
        let logits = |batch: usize, first: usize| {
            let x = Tensor::f32(
                vec![batch, 3, 64, 64],
                images[first * per..(first + batch) * per].to_vec(),
            );
            m.logits(x).unwrap().as_f32().unwrap().to_vec()
        };
        let alone: Vec<Vec<f32>> = (0..9).map(|i| logits(1, i)).collect();
        for batch in [2, 3, 4, 5, 8, 9] {
            for first in [0, 9 - batch] {
                let y = logits(batch, first);
                for j in 0..batch {
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
                    assert!(
                        bits(&y[j * 1000..(j + 1) * 1000]) == bits(&alone[first + j]),
                        "image {} at place {j} of a batch of {batch}: logits differ from its own",
                        first + j
                    );
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
