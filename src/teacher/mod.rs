//! The teacher: ONNX models (`onnx`) as an IR (`graph`) with static shapes
//! (`shape`), simplified by `passes` and run by the CPU executor (`cpu`), the
//! oracle of the GPU executor.

pub mod arena;
pub mod cpu;
pub mod ensemble;
pub mod gpu;
pub mod graph;
pub mod infer;
pub mod onnx;
pub mod passes;
pub mod resize;
pub mod shape;
pub mod tensor;
