//! Deep label distribution learning (DLDL) for apparent age.
//!
//! The shared crate of the trainer and the browser demo, in layers; each reads only those above
//! it (`tests/layers.rs` holds them to it):
//!
//! - [`distribution`]: the maths over the 101-bin age grid: label distributions, summaries,
//!   the DLDL / DLDL-v2 losses, the ChaLearn metrics, the fusion of several streams.
//! - [`onnx`]: the ONNX reader the pretrained network and the detector load through.
//! - [`networks`]: the age networks (the VGG family, the pretrained network) and their input.
//! - [`weights`]: weights on disk: the exported streams of the demo (a VGG-family network with
//!   its card) and the model files' pinned digests.
//! - [`face`]: the face pipeline: detector, five landmarks, alignment, the estimator that puts
//!   them together, tracking over frames. Nothing in the crate uses it.
//!
//! [`error`] and the few items at the top are shared by all.
//!
//! Everything here compiles for native targets and for `wasm32-unknown-unknown`.

pub mod distribution;
pub mod error;
pub mod face;
pub mod networks;
pub mod onnx;
pub mod weights;

pub use burn;
pub use error::DldlError;

/// Reads a tensor's values without blocking (the only way a browser may read a GPU tensor).
pub async fn read_async<const D: usize>(
    tensor: burn::tensor::Tensor<D>,
) -> Result<Vec<f32>, DldlError> {
    tensor
        .into_data_async()
        .await
        .map_err(DldlError::backend)?
        .try_into_vec_as::<f32>()
        .map_err(DldlError::backend)
}

/// The oldest age on the grid; ages are the integers `0..=MAX_AGE`.
pub const MAX_AGE: usize = 100;
/// The number of bins of every age distribution: one per integer age `0..=100`.
pub const AGE_BINS: usize = MAX_AGE + 1;
