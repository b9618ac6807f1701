//! Training: what a run is ([`spec`]), the loop ([`run`]) and its checkpoints ([`checkpoint`]),
//! pipeline stages ([`stages`]),
//! distillation ([`distill`]), throughput benchmarks ([`bench`]).

pub mod bench;
pub mod checkpoint;
pub mod distill;
pub mod memory;
pub mod parallel;
pub mod run;
pub mod spec;
pub mod stages;
