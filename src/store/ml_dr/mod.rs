//! Interop with apple/ml-dr's files: `torch.save` containers and the
//! per-image records its training code reads.

pub mod bundle;
pub mod export;
pub mod import;
pub mod torch_file;
