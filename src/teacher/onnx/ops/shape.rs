//! Shape and layout ops: what exporters use for flattening, reshaping and the
//! Shape/Gather/Concat subgraphs that constant folding removes.

use std::path::Path;
use std::sync::Arc;

use super::{ImportFn, NodeCtx};
use crate::teacher::graph::{Op, PadMode, Unary};
use crate::teacher::onnx::decode_tensor;
use crate::teacher::onnx::proto::data_type;
use crate::teacher::tensor::{DType, Tensor};

pub const TABLE: &[(&str, ImportFn)] = &[
    ("Flatten", flatten),
    ("Reshape", reshape),
    ("Transpose", transpose),
    ("Concat", concat),
    ("Gather", gather),
    ("Shape", shape),
    ("Unsqueeze", unsqueeze),
    ("Squeeze", squeeze),
    ("Slice", slice),
    ("Cast", cast),
    ("Constant", constant),
    ("Identity", identity),
    ("Dropout", dropout),
    ("ConstantOfShape", constant_of_shape),
    ("Expand", |c| plain(c, Op::Expand)),
    ("Tile", |c| plain(c, Op::Tile)),
    ("Split", split),
    ("Pad", pad),
    ("Range", |c| plain(c, Op::Range)),
    ("Not", |c| plain(c, Op::Not)),
    ("ScatterND", scatter_nd),
];

fn scatter_nd(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["reduction"])?;
    match ctx.string("reduction")?.as_deref() {
        None | Some("none") => Ok(Op::ScatterNd),
        Some(r) => Err(format!(
            "ScatterND reduction `{r}` is not supported (none is)"
        )),
    }
}

fn pad(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["mode"])?;
    let mode = match ctx.string("mode")?.as_deref().unwrap_or("constant") {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        m => {
            return Err(format!(
                "Pad mode `{m}` is not supported (constant, reflect, edge are)"
            ));
        }
    };
    Ok(Op::Pad { mode })
}

fn plain(ctx: &NodeCtx, op: Op) -> Result<Op, String> {
    ctx.only_attrs(&[])?;
    Ok(op)
}

fn constant_of_shape(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["value"])?;
    let value = match ctx.tensor_attr("value") {
        Some(t) => {
            let file = ctx.graph.source.display().to_string();
            decode_tensor(t, Path::new(""), &file).map_err(|e| e.to_string())?
        }
        None => Tensor::scalar_f32(0.0),
    };
    if value.len() != 1 {
        return Err("ConstantOfShape value must have one element".into());
    }
    Ok(Op::ConstantOfShape(Arc::new(value)))
}

fn split(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["axis", "split", "num_outputs"])?;
    Ok(Op::Split {
        axis: ctx.int("axis", 0)?,
        sizes: ctx.ints("split")?,
    })
}

fn flatten(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["axis"])?;
    Ok(Op::Flatten {
        axis: ctx.int("axis", 1)?,
    })
}

fn reshape(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["allowzero"])?;
    Ok(Op::Reshape {
        allowzero: ctx.int("allowzero", 0)? != 0,
    })
}

fn transpose(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["perm"])?;
    let perm = ctx
        .ints("perm")?
        .map(|p| {
            p.into_iter()
                .map(|x| usize::try_from(x).map_err(|_| format!("perm entry {x}")))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(Op::Transpose { perm })
}

fn concat(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["axis"])?;
    if !ctx.has_attr("axis") {
        return Err("Concat needs an axis".into());
    }
    Ok(Op::Concat {
        axis: ctx.int("axis", 0)?,
    })
}

fn gather(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["axis"])?;
    Ok(Op::Gather {
        axis: ctx.int("axis", 0)?,
    })
}

fn shape(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["start", "end"])?;
    Ok(Op::Shape {
        start: ctx.int("start", 0)?,
        end: if ctx.has_attr("end") {
            Some(ctx.int("end", 0)?)
        } else {
            None
        },
    })
}

fn unsqueeze(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["axes"])?;
    Ok(Op::Unsqueeze {
        axes: ctx.ints("axes")?,
    })
}

fn squeeze(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["axes"])?;
    Ok(Op::Squeeze {
        axes: ctx.ints("axes")?,
    })
}

fn slice(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&[])?;
    Ok(Op::Slice)
}

pub fn dtype_of(onnx_type: i32) -> Result<DType, String> {
    match onnx_type {
        data_type::FLOAT | data_type::DOUBLE | data_type::FLOAT16 | data_type::BFLOAT16 => {
            Ok(DType::F32)
        }
        data_type::INT64
        | data_type::INT32
        | data_type::INT8
        | data_type::UINT8
        | 4
        | 5
        | 12
        | 13 => Ok(DType::I64),
        data_type::BOOL => Ok(DType::Bool),
        t => Err(format!("cast to {} is not supported", data_type::name(t))),
    }
}

fn cast(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["to", "saturate", "round_mode"])?;
    Ok(Op::Cast {
        to: dtype_of(ctx.int("to", data_type::FLOAT as i64)? as i32)?,
    })
}

fn constant(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&[
        "value",
        "value_float",
        "value_floats",
        "value_int",
        "value_ints",
    ])?;
    let t = if let Some(t) = ctx.tensor_attr("value") {
        let file = ctx.graph.source.display().to_string();
        let dir = ctx
            .graph
            .source
            .parent()
            .unwrap_or(Path::new(""))
            .to_path_buf();
        decode_tensor(t, &dir, &file).map_err(|e| e.to_string())?
    } else if ctx.has_attr("value_float") {
        Tensor::scalar_f32(ctx.float("value_float", 0.0)?)
    } else if ctx.has_attr("value_int") {
        Tensor::i64(vec![], vec![ctx.int("value_int", 0)?])
    } else if let Some(v) = ctx.ints("value_ints")? {
        Tensor::i64(vec![v.len()], v)
    } else if let Some(a) = ctx
        .node
        .attribute
        .iter()
        .find(|a| a.name.as_deref() == Some("value_floats"))
    {
        Tensor::f32(vec![a.floats.len()], a.floats.clone())
    } else {
        return Err("Constant without a value".into());
    };
    Ok(Op::Constant(Arc::new(t)))
}

fn identity(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&[])?;
    Ok(Op::Unary(Unary::Identity))
}

fn dropout(ctx: &NodeCtx) -> Result<Op, String> {
    ctx.only_attrs(&["seed", "ratio"])?;
    if ctx.n_outputs() > 1 {
        return Err("the mask output of Dropout is not supported".into());
    }
    Ok(Op::Unary(Unary::Identity))
}
