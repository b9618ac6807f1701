//! Weights on disk: the ONNX reader the pretrained network and the detector load through
//! ([`onnx`]), and the streams the trainer exports for the demo ([`exported`]).

pub mod exported;
pub mod onnx;
