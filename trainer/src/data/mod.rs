//! Data: labelled samples ([`Sample`]) and how their images reach the network ([`FaceMode`]);
//! in the modules, the loaded sets training and evaluation run on (`loaded`), how sets are read (`sets`, `formats/`, `csv`, `images`),
//! cut into chips through a cache (`chips`), loaded (`load`), augmented (`augment`), batched
//! (`loader`), and the synthetic set (`synth`).

pub mod augment;
pub mod chips;
pub mod csv;
pub mod formats;
pub mod images;
pub mod load;
pub mod loaded;
pub mod loader;
pub mod sets;
pub mod synth;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How images reach the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FaceMode {
    /// Find the face with the detector and cut the aligned chip the demo cuts.
    #[default]
    Align,
    /// The images are face crops already: take the centre square, resized.
    AsIs,
}

/// One labelled image.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub path: PathBuf,
    pub mu: f32,
    pub sigma: f32,
}
