//! The output of `dr reinforce` (OUT/): listing with hashes (`images`);
//! records, shards and manifest follow with [reinforce]. Knows nothing of GPUs.

pub mod images;
