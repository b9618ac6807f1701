//! Weights on disk: the ONNX reader the pretrained network and the detector load through
//! ([`onnx`]), the streams the trainer exports for the demo ([`exported`]), and the model
//! files' pinned digests ([`files`]).

pub mod exported;
pub mod files;
pub mod onnx;
