//! Orchestration: the reinforce job over shards (CPU backend today; the GPU
//! pipeline of [gpu-pipeline] reuses the same shards, manifest and resume).

pub mod reinforce;
pub mod replay;
pub mod shard;
