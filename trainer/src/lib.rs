//! The trainer as a library: everything the `trainer` command does, by concern. Each folder uses
//! only the ones listed before it:
//!
//! - [`device`], [`progress`], [`files`]: picking a backend, progress bars, atomic writes;
//! - [`render`]: charts and annotated pictures;
//! - [`artifacts`]: what runs and training leave on disk: model cards, the model folder and
//!   loading the detector and the pretrained network, exported streams;
//! - [`data`]: samples and loaded sets, the data-set readers (`formats/`), images, the chip
//!   cache, augmentation, the batch loader, the synthetic set;
//! - [`eval`]: metrics reports, fitting fusion weights, predicting photographs;
//! - [`train`]: the run spec, the training loop and its checkpoints, pipeline stages, distillation,
//!   throughput benchmarks;
//! - [`cli`]: the subcommands.

pub mod artifacts;
pub mod cli;
pub mod data;
pub mod device;
pub mod eval;
pub mod files;
pub mod progress;
pub mod render;
pub mod train;

/// The trainer crate's folder in the clone that runs it: `CARGO_MANIFEST_DIR` as `cargo run`
/// and `cargo test` set it, else the folder it was built in. (A build folder shared by several
/// clones may hand one clone a binary built in another, with the other's path compiled in.)
pub fn crate_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        std::path::PathBuf::from,
    )
}
