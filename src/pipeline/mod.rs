//! Orchestration: the reinforce job over shards, on the CPU backend or the
//! GPU one (`gpu`); both share the shards, manifest and resume.

pub mod decode_ahead;
pub mod gpu;
pub mod gpu_worker;
pub mod interrupt;
pub mod reinforce;
pub mod replay;
pub mod shard;
