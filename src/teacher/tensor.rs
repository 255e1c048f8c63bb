//! Host tensors of the teacher path: float32 for activations and weights
//! (fp16/bf16/f64 initializers are widened at load), int64 and bool for the
//! shape arithmetic exporters emit. Row-major (C order).

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    I64,
    Bool,
}

#[derive(Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

#[derive(Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({:?} {:?}", self.dtype(), self.shape)?;
        if self.len() <= 8 {
            match &self.data {
                Data::F32(v) => write!(f, " {v:?}")?,
                Data::I64(v) => write!(f, " {v:?}")?,
                Data::Bool(v) => write!(f, " {v:?}")?,
            }
        }
        write!(f, ")")
    }
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(numel(&shape), data.len(), "f32 tensor {shape:?}");
        Tensor {
            shape,
            data: Data::F32(data),
        }
    }

    pub fn i64(shape: Vec<usize>, data: Vec<i64>) -> Self {
        assert_eq!(numel(&shape), data.len(), "i64 tensor {shape:?}");
        Tensor {
            shape,
            data: Data::I64(data),
        }
    }

    pub fn bool(shape: Vec<usize>, data: Vec<bool>) -> Self {
        assert_eq!(numel(&shape), data.len(), "bool tensor {shape:?}");
        Tensor {
            shape,
            data: Data::Bool(data),
        }
    }

    pub fn scalar_f32(v: f32) -> Self {
        Tensor::f32(vec![], vec![v])
    }

    pub fn dtype(&self) -> DType {
        match self.data {
            Data::F32(_) => DType::F32,
            Data::I64(_) => DType::I64,
            Data::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        numel(&self.shape)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            Data::I64(v) => Some(v),
            _ => None,
        }
    }

    /// Values as i64 (shape tensors); floats are truncated, bools are 0/1.
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I64(v) => v.clone(),
            Data::Bool(v) => v.iter().map(|&b| b as i64).collect(),
        }
    }

    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
            Data::Bool(v) => v.iter().map(|&b| b as u8 as f32).collect(),
        }
    }

    /// The float32 data with its shape, for the kernels that write into
    /// preallocated outputs.
    pub fn view(&self) -> Option<View<'_>> {
        self.as_f32().map(|data| View {
            data,
            shape: &self.shape,
        })
    }

    pub fn reshaped(mut self, shape: Vec<usize>) -> Self {
        assert_eq!(numel(&shape), self.len());
        self.shape = shape;
        self
    }
}

/// A borrowed float32 tensor: an initializer, a graph input or a region of
/// the executor's arena.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub shape: &'a [usize],
}

impl<'a> View<'a> {
    pub fn new(data: &'a [f32], shape: &'a [usize]) -> Self {
        View { data, shape }
    }
}
