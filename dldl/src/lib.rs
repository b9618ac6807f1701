//! Deep label distribution learning (DLDL) for apparent age.
//!
//! The shared crate of the trainer and the browser demo: label distributions over the integer
//! ages `0..=100`, the DLDL / DLDL-v2 losses, the ChaLearn metrics, the VGG-style age networks,
//! and the fusion of several streams' distributions. Everything here compiles for native targets
//! and for `wasm32-unknown-unknown`.

pub mod align;
pub mod blazeface;
pub mod conformance;
pub mod distribution;
pub mod error;
pub mod exported;
pub mod face;
pub mod fusion;
pub mod label;
pub mod landmarks;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod onnx;
pub mod preprocess;
pub mod pretrained;
pub mod tracking;

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
