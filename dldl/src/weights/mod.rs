//! Weights on disk: the streams the trainer exports for the demo ([`exported`]) and the model
//! files' pinned digests ([`files`]). The ONNX reader the published network and the detector
//! load through is [`crate::onnx`], below the networks: `weights` reads `networks`, never the
//! other way round.

pub mod exported;
pub mod files;
