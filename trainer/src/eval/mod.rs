//! Measuring streams and running them: metrics reports ([`report`]), fitting fusion weights
//! ([`fusion`]), predicting the ages of the faces in photographs ([`predict`]).

pub mod fusion;
pub mod predict;
pub mod report;
