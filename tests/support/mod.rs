//! What every end-to-end test shares: where the repository and its fetched files are
//! ([`repo`]), and running the `trainer` binary ([`trainer`]). The tests under `tests/` include
//! this folder as `mod support;`, the crates' own tests through `#[path]`. (`page.rs`, the
//! browser driver, and `conformance.rs`, the recorded backend comparison, are included by the
//! tests that need them.)

// Each test uses some of the helpers.
#![allow(dead_code)]

pub mod repo;
pub mod trainer;
