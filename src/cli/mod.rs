//! Subcommands with more than a call's worth of flag handling.

pub mod dataset;
pub mod demo;
pub mod reinforce;
