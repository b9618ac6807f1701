//! The face pipeline, from a photograph to each face's age distribution: the detector
//! ([`detector`], BlazeFace), the five landmarks ([`landmarks`], dlib's shape predictor), the
//! chip cut from them ([`align`]), the estimator that runs these and every stream and fuses them
//! ([`pipeline`]), and the tracking of faces over video frames ([`tracking`]).

pub mod align;
pub mod detector;
pub mod landmarks;
pub mod pipeline;
pub mod tracking;
