//! ONNX model files to the IR: protobuf decoding (prost, messages declared
//! in `proto`), initializers in every float and integer encoding including
//! external data files, and one import function per op (`ops`).

mod functions;
pub mod ops;
pub mod proto;
pub mod synth;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use proto::{TensorProto, data_type};

use super::graph::{Graph, Node, Value, ValueId};
use super::tensor::{DType, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum TeacherError {
    /// The reason is said once (not also as a source: it would print twice).
    #[error("{file}: cannot read the model: {reason}")]
    Io { file: String, reason: String },
    #[error(
        "{file}: not an ONNX model ({detail}). Fix: check the file is complete (not truncated) and is an .onnx export"
    )]
    Protobuf { file: String, detail: String },
    #[error("{file}: initializer `{tensor}`: {detail}")]
    Tensor {
        file: String,
        tensor: String,
        detail: String,
    },
    #[error(
        "{file}: node `{node}` ({op}, opset {opset}): {detail}. dr does not run this model rather than risk a wrong answer"
    )]
    Unsupported {
        file: String,
        node: String,
        op: String,
        opset: i64,
        detail: String,
    },
    #[error("{file}: {detail}")]
    Invalid { file: String, detail: String },
}

pub type Result<T> = std::result::Result<T, TeacherError>;

/// A dimension of a declared graph input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    Symbolic(String),
}

/// A loaded model: the IR before shapes are fixed, and its declared inputs.
#[derive(Clone, Debug)]
pub struct Model {
    pub graph: Graph,
    pub input_dims: Vec<Vec<Dim>>,
    pub producer: String,
}

/// Reads and converts `path` (external data is read from beside it).
pub fn load(path: &Path) -> Result<Model> {
    let bytes = std::fs::read(path).map_err(|e| TeacherError::Io {
        file: path.display().to_string(),
        reason: crate::io_reason(&e),
    })?;
    load_bytes(&bytes, path)
}

/// Converts the bytes of an .onnx file; `path` names it in errors and is
/// where external data is looked for.
pub fn load_bytes(bytes: &[u8], path: &Path) -> Result<Model> {
    let file = path.display().to_string();
    let model = proto::ModelProto::decode(bytes).map_err(|e| TeacherError::Protobuf {
        file: file.clone(),
        detail: e.to_string(),
    })?;
    convert(model, path, None)
}

/// Every node dr cannot import, each as the error `load` would give.
pub fn unsupported_nodes(path: &Path) -> Result<Vec<String>> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| TeacherError::Io {
        file: file.clone(),
        reason: crate::io_reason(&e),
    })?;
    let model =
        proto::ModelProto::decode(bytes.as_slice()).map_err(|e| TeacherError::Protobuf {
            file: file.clone(),
            detail: e.to_string(),
        })?;
    let mut found = Vec::new();
    convert(model, path, Some(&mut found))?;
    Ok(found)
}

fn invalid(file: &str, detail: impl Into<String>) -> TeacherError {
    TeacherError::Invalid {
        file: file.into(),
        detail: detail.into(),
    }
}

/// `collect`: record unsupported nodes there and go on (with an Identity in
/// their place) instead of failing at the first.
fn convert(
    model: proto::ModelProto,
    path: &Path,
    mut collect: Option<&mut Vec<String>>,
) -> Result<Model> {
    let file = path.display().to_string();
    let graph = model
        .graph
        .ok_or_else(|| invalid(&file, "the model has no graph (is it an ONNX model?)"))?;
    let opset = model
        .opset_import
        .iter()
        .filter(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .filter_map(|o| o.version)
        .max()
        .ok_or_else(|| invalid(&file, "no default-domain opset is imported"))?;
    let mut g = Graph {
        values: Vec::new(),
        nodes: Vec::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        opset,
        source: path.to_path_buf(),
    };
    let mut by_name: HashMap<String, ValueId> = HashMap::new();
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    for t in &graph.initializer {
        let name = t.name.clone().unwrap_or_default();
        let tensor = decode_tensor(t, &dir, &file)?;
        g.values.push(Value {
            name: name.clone(),
            dtype: tensor.dtype(),
            shape: Some(tensor.shape.clone()),
            constant: Some(Arc::new(tensor)),
        });
        by_name.insert(name, g.values.len() - 1);
    }
    if !graph.sparse_initializer.is_empty() {
        return Err(invalid(&file, "sparse initializers are not supported"));
    }
    let mut input_dims = Vec::new();
    for vi in &graph.input {
        let name = vi.name.clone().unwrap_or_default();
        if by_name.contains_key(&name) {
            continue; // IR < 4 lists initializers as inputs too
        }
        let tt = vi.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
        let elem = tt.and_then(|t| t.elem_type).unwrap_or(data_type::FLOAT);
        if elem != data_type::FLOAT {
            return Err(invalid(
                &file,
                format!(
                    "input `{name}` is {}; dr feeds float32 images",
                    data_type::name(elem)
                ),
            ));
        }
        let dims = tt
            .and_then(|t| t.shape.as_ref())
            .map(|s| {
                s.dim
                    .iter()
                    .enumerate()
                    .map(|(i, d)| match (d.dim_value, &d.dim_param) {
                        (Some(v), _) if v > 0 => Dim::Fixed(v as usize),
                        (_, Some(p)) if !p.is_empty() => Dim::Symbolic(p.clone()),
                        _ => Dim::Symbolic(format!("dim{i}")),
                    })
                    .collect()
            })
            .ok_or_else(|| invalid(&file, format!("input `{name}` has no shape")))?;
        input_dims.push(dims);
        let id = g.add_value(name.clone(), DType::F32);
        g.inputs.push(id);
        by_name.insert(name, id);
    }
    let mut taken: std::collections::HashSet<String> = by_name.keys().cloned().collect();
    taken.extend(graph.node.iter().flat_map(|n| n.output.iter().cloned()));
    let nodes = functions::inline(&graph.node, &model.functions, &mut taken)
        .map_err(|e| invalid(&file, format!("model-local functions: {e}")))?;
    for n in &nodes {
        let node = match (
            import_node(n, &mut g, &mut by_name, &file, opset),
            collect.as_deref_mut(),
        ) {
            (Ok(node), _) => node,
            (Err(e @ TeacherError::Unsupported { .. }), Some(found)) => {
                found.push(e.to_string());
                placeholder(n, &mut g, &mut by_name)
            }
            (Err(e), _) => return Err(e),
        };
        g.nodes.push(node);
    }
    for vi in &graph.output {
        let name = vi.name.clone().unwrap_or_default();
        let id = *by_name.get(&name).ok_or_else(|| {
            invalid(
                &file,
                format!("graph output `{name}` is produced by no node"),
            )
        })?;
        g.outputs.push(id);
    }
    Ok(Model {
        graph: g,
        input_dims,
        producer: format!(
            "{} {}",
            model.producer_name.unwrap_or_default(),
            model.producer_version.unwrap_or_default()
        )
        .trim()
        .to_owned(),
    })
}

/// Stands in for an unsupported node while scanning a whole model.
fn placeholder(
    n: &proto::NodeProto,
    g: &mut Graph,
    by_name: &mut HashMap<String, ValueId>,
) -> Node {
    let inputs = n.input.iter().map(|i| by_name.get(i).copied()).collect();
    let outputs = n
        .output
        .iter()
        .map(|o| {
            let id = g.add_value(o.clone(), DType::F32);
            by_name.insert(o.clone(), id);
            id
        })
        .collect();
    Node {
        name: n.name.clone().unwrap_or_default(),
        op: super::graph::Op::Unary(super::graph::Unary::Identity),
        inputs,
        outputs,
    }
}

fn import_node(
    n: &proto::NodeProto,
    g: &mut Graph,
    by_name: &mut HashMap<String, ValueId>,
    file: &str,
    opset: i64,
) -> Result<Node> {
    let op_type = n.op_type.clone().unwrap_or_default();
    let name = n.name.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| {
        format!(
            "{op_type} -> {}",
            n.output.first().cloned().unwrap_or_default()
        )
    });
    let unsupported = |detail: String| TeacherError::Unsupported {
        file: file.into(),
        node: name.clone(),
        op: op_type.clone(),
        opset,
        detail,
    };
    let domain = n.domain.as_deref().unwrap_or("");
    if !matches!(domain, "" | "ai.onnx") {
        // Model-local functions were inlined before this.
        return Err(unsupported(format!(
            "domain `{domain}`: an operator of another domain"
        )));
    }
    let mut inputs = Vec::new();
    for i in &n.input {
        if i.is_empty() {
            inputs.push(None);
        } else {
            let id = *by_name.get(i).ok_or_else(|| {
                unsupported(format!("input `{i}` is produced by no earlier node"))
            })?;
            inputs.push(Some(id));
        }
    }
    let ctx = ops::NodeCtx {
        node: n,
        opset,
        inputs: &inputs,
        graph: g,
    };
    let op = ops::import(&op_type, &ctx).map_err(unsupported)?;
    let mut outputs = Vec::new();
    for o in &n.output {
        let id = g.add_value(o.clone(), ops::output_dtype(&op, &inputs, g));
        if !o.is_empty() {
            by_name.insert(o.clone(), id);
        }
        outputs.push(id);
    }
    Ok(Node {
        name,
        op,
        inputs,
        outputs,
    })
}

/// Converts an initializer or Constant tensor to f32/i64/bool.
pub fn decode_tensor(t: &TensorProto, dir: &Path, file: &str) -> Result<Tensor> {
    let name = t.name.clone().unwrap_or_default();
    let err = |detail: String| TeacherError::Tensor {
        file: file.into(),
        tensor: name.clone(),
        detail,
    };
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| err(format!("negative dimension {d}"))))
        .collect::<Result<_>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= 1 << 34)
        .ok_or_else(|| err(format!("shape {shape:?} is too large")))?;
    let dt = t.data_type.unwrap_or(0);
    let external;
    let raw: Option<&[u8]> = if t.data_location == Some(1) {
        external = read_external(t, dir).map_err(&err)?;
        Some(&external)
    } else {
        t.raw_data.as_deref()
    };
    let width = match dt {
        data_type::FLOAT | data_type::INT32 => 4,
        data_type::INT64 | data_type::DOUBLE => 8,
        data_type::FLOAT16 | data_type::BFLOAT16 => 2,
        data_type::UINT8 | data_type::INT8 | data_type::BOOL => 1,
        other => {
            return Err(err(format!(
                "element type {} is not supported",
                data_type::name(other)
            )));
        }
    };
    if let Some(raw) = raw
        && raw.len() != n * width
    {
        return Err(err(format!(
            "{} bytes of data for shape {shape:?} of {} ({} expected)",
            raw.len(),
            data_type::name(dt),
            n * width
        )));
    }
    // raw_data is little-endian, as are the hosts dr runs on (x86-64, aarch64).
    fn le<T: bytemuck::Pod>(raw: &[u8]) -> Vec<T> {
        bytemuck::pod_collect_to_vec(raw)
    }
    let f16_bits = |bits: u16| half::f16::from_bits(bits).to_f32();
    let bf16_bits = |bits: u16| half::bf16::from_bits(bits).to_f32();
    if raw.is_none() {
        let typed = match dt {
            data_type::FLOAT => t.float_data.len(),
            data_type::DOUBLE => t.double_data.len(),
            data_type::INT64 => t.int64_data.len(),
            _ => t.int32_data.len(),
        };
        if typed != n {
            return Err(err(format!(
                "{typed} values for shape {shape:?} ({n} expected)"
            )));
        }
    }
    let tensor = match (dt, raw) {
        (data_type::FLOAT, Some(r)) => Tensor::f32(shape, le(r)),
        (data_type::FLOAT, None) => Tensor::f32(shape, t.float_data.clone()),
        (data_type::DOUBLE, Some(r)) => {
            Tensor::f32(shape, le::<f64>(r).into_iter().map(|v| v as f32).collect())
        }
        (data_type::DOUBLE, None) => {
            Tensor::f32(shape, t.double_data.iter().map(|&v| v as f32).collect())
        }
        (data_type::FLOAT16, Some(r)) => {
            Tensor::f32(shape, le::<u16>(r).into_iter().map(f16_bits).collect())
        }
        (data_type::FLOAT16, None) => Tensor::f32(
            shape,
            t.int32_data.iter().map(|&v| f16_bits(v as u16)).collect(),
        ),
        (data_type::BFLOAT16, Some(r)) => {
            Tensor::f32(shape, le::<u16>(r).into_iter().map(bf16_bits).collect())
        }
        (data_type::BFLOAT16, None) => Tensor::f32(
            shape,
            t.int32_data.iter().map(|&v| bf16_bits(v as u16)).collect(),
        ),
        (data_type::INT64, Some(r)) => Tensor::i64(shape, le(r)),
        (data_type::INT64, None) => Tensor::i64(shape, t.int64_data.clone()),
        (data_type::INT32, Some(r)) => {
            Tensor::i64(shape, le::<i32>(r).into_iter().map(i64::from).collect())
        }
        (data_type::INT32, None) => {
            Tensor::i64(shape, t.int32_data.iter().map(|&v| v as i64).collect())
        }
        (data_type::UINT8, Some(r)) => Tensor::i64(shape, r.iter().map(|&v| v as i64).collect()),
        (data_type::INT8, Some(r)) => {
            Tensor::i64(shape, r.iter().map(|&v| v as i8 as i64).collect())
        }
        (data_type::UINT8 | data_type::INT8, None) => {
            Tensor::i64(shape, t.int32_data.iter().map(|&v| v as i64).collect())
        }
        (data_type::BOOL, Some(r)) => Tensor::bool(shape, r.iter().map(|&v| v != 0).collect()),
        (data_type::BOOL, None) => {
            Tensor::bool(shape, t.int32_data.iter().map(|&v| v != 0).collect())
        }
        _ => unreachable!(),
    };
    Ok(tensor)
}

/// `location`/`offset`/`length` of an external tensor, relative to the model.
fn read_external(t: &TensorProto, dir: &Path) -> std::result::Result<Vec<u8>, String> {
    use std::io::{Read, Seek, SeekFrom};
    let get = |k: &str| {
        t.external_data
            .iter()
            .find(|e| e.key.as_deref() == Some(k))
            .and_then(|e| e.value.clone())
    };
    let location = get("location").ok_or("external data without a `location`")?;
    let rel = PathBuf::from(&location);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "external data location `{location}` must be a file beside the model"
        ));
    }
    let path = dir.join(rel);
    let parse = |k: &str| {
        get(k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("external data {k} `{v}` is not a number"))
            })
            .transpose()
    };
    let offset = parse("offset")?.unwrap_or(0);
    let length = parse("length")?;
    let mut f = std::fs::File::open(&path).map_err(|e| {
        format!(
            "external data file {} cannot be opened ({e}). Fix: keep the data file beside the .onnx, under the name the model gives",
            path.display()
        )
    })?;
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    let length = length.unwrap_or(size.saturating_sub(offset));
    if offset + length > size {
        return Err(format!(
            "external data file {} has {size} bytes; the tensor needs {length} at offset {offset} (truncated file?)",
            path.display()
        ));
    }
    f.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; length as usize];
    f.read_exact(&mut buf).map_err(|e| e.to_string())?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(dt: i32, dims: Vec<i64>, bytes: Vec<u8>) -> TensorProto {
        TensorProto {
            dims,
            data_type: Some(dt),
            raw_data: Some(bytes),
            name: Some("t".into()),
            ..Default::default()
        }
    }

    #[test]
    fn every_initializer_encoding_decodes() {
        let d = |t: &TensorProto| decode_tensor(t, Path::new(""), "m.onnx").unwrap();
        let f16: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
            .collect();
        assert_eq!(
            d(&raw(data_type::FLOAT16, vec![2], f16)).to_f32_vec(),
            [1.5, -2.0]
        );
        let bf16: Vec<u8> = [0.25f32, 3.0]
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_bits().to_le_bytes())
            .collect();
        assert_eq!(
            d(&raw(data_type::BFLOAT16, vec![2], bf16)).to_f32_vec(),
            [0.25, 3.0]
        );
        let f64s: Vec<u8> = [0.5f64, -1.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            d(&raw(data_type::DOUBLE, vec![2], f64s)).to_f32_vec(),
            [0.5, -1.0]
        );
        let i32s: Vec<u8> = [-3i32, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            d(&raw(data_type::INT32, vec![1, 2], i32s)).to_i64_vec(),
            [-3, 7]
        );
        assert_eq!(
            d(&raw(data_type::INT8, vec![2], vec![0xFF, 5])).to_i64_vec(),
            [-1, 5]
        );
        // Typed fields: fp16 bits travel in int32_data.
        let typed = TensorProto {
            dims: vec![2],
            data_type: Some(data_type::FLOAT16),
            int32_data: vec![
                half::f16::from_f32(0.5).to_bits() as i32,
                half::f16::from_f32(4.0).to_bits() as i32,
            ],
            ..Default::default()
        };
        assert_eq!(d(&typed).to_f32_vec(), [0.5, 4.0]);
        // Wrong sizes and types are errors naming the tensor.
        let e = decode_tensor(
            &raw(data_type::FLOAT, vec![3], vec![0; 8]),
            Path::new(""),
            "m.onnx",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("m.onnx") && e.contains("`t`") && e.contains("8 bytes"),
            "{e}"
        );
        let e = decode_tensor(&raw(8, vec![1], vec![]), Path::new(""), "m.onnx")
            .unwrap_err()
            .to_string();
        assert!(e.contains("string is not supported"), "{e}");
    }
}
