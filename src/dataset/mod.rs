//! Reading the dataset: decoding images to RGB exactly as ml-dr's loader
//! (`Image.open(f).convert("RGB")`) sees them.

pub mod decode;
pub mod listing;
