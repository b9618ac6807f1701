//! The age networks: the trainable VGG family ([`vgg`]: VGG-16, VGG-16-BN, ThinAgeNet,
//! TinyAgeNet), the pretrained dlib network ([`pretrained`]), and how pixels become their input
//! ([`preprocess`]).

pub mod conv_grad;
pub mod preprocess;
pub mod pretrained;
pub mod vgg;
