//! The browser side of apparent-age. It only converts between JavaScript values and the shared
//! `dldl` crate; all numerical work lives there.

use wasm_bindgen::prelude::*;

/// The label distribution N(μ, σ) over the ages 0..=100, as the trainer builds it.
#[wasm_bindgen(js_name = labelDistribution)]
pub fn label_distribution(mu: f32, sigma: f32) -> Result<Vec<f32>, JsError> {
    dldl::label::label_distribution(mu, sigma).map_err(|e| JsError::new(&e.to_string()))
}

/// The expectation of a distribution over the ages 0..=100.
#[wasm_bindgen(js_name = expectedAge)]
pub fn expected_age(distribution: Vec<f32>) -> Result<f32, JsError> {
    dldl::distribution::expected_age(&distribution).map_err(|e| JsError::new(&e.to_string()))
}

/// The standard deviation of a distribution over the ages 0..=100.
#[wasm_bindgen(js_name = stdDev)]
pub fn std_dev(distribution: Vec<f32>) -> Result<f32, JsError> {
    dldl::distribution::std_dev(&distribution).map_err(|e| JsError::new(&e.to_string()))
}
