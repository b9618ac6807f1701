//! The browser side of apparent-age. It only converts between JavaScript values and the shared
//! `dldl` crate; detection, alignment, the streams, fusion and tracking all live there.

use std::{cell::RefCell, rc::Rc};

use dldl::{
    blazeface::BlazeFace,
    burn::tensor::Device,
    exported::{self, ExportedStream},
    face::{Estimator, Network, Stream},
    fusion::FusionRule,
    pretrained::PretrainedAgeNet,
    tracking::Tracker,
};
use image::RgbImage;
use wasm_bindgen::prelude::*;

fn js_error(error: impl std::fmt::Display) -> JsError {
    JsError::new(&error.to_string())
}

/// The label distribution N(μ, σ) over the ages 0..=100, as the trainer builds it.
#[wasm_bindgen(js_name = labelDistribution)]
pub fn label_distribution(mu: f32, sigma: f32) -> Result<Vec<f32>, JsError> {
    dldl::label::label_distribution(mu, sigma).map_err(js_error)
}

/// The expectation of a distribution over the ages 0..=100.
#[wasm_bindgen(js_name = expectedAge)]
pub fn expected_age(distribution: Vec<f32>) -> Result<f32, JsError> {
    dldl::distribution::expected_age(&distribution).map_err(js_error)
}

/// The standard deviation of a distribution over the ages 0..=100.
#[wasm_bindgen(js_name = stdDev)]
pub fn std_dev(distribution: Vec<f32>) -> Result<f32, JsError> {
    dldl::distribution::std_dev(&distribution).map_err(js_error)
}

/// An RGBA frame as a canvas gives it (`width·height·4` bytes) as an RGB image; `None` when the
/// bytes do not fill it.
pub fn rgba_to_rgb(rgba: &[u8], width: u32, height: u32) -> Option<RgbImage> {
    let rgb = rgba
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    RgbImage::from_raw(width, height, rgb)
}

struct State {
    estimator: Estimator,
    device: Device,
    backend: String,
    tracker: RefCell<Tracker>,
}

/// The face pipeline in the page: BlazeFace, the pretrained stream, fusion and tracking.
#[wasm_bindgen]
pub struct AgeEstimator {
    state: Rc<State>,
}

/// The device to run on: WebGPU when asked for and an adapter exists, else burn's CPU backend.
async fn pick_device(webgpu: bool) -> (Device, String) {
    #[cfg(target_family = "wasm")]
    if webgpu {
        match Device::wgpu_options().init_async().await {
            Ok(device) => return (device, "WebGPU".to_string()),
            Err(error) => {
                return (
                    Device::flex(),
                    format!("CPU (WebGPU is unavailable: {error})"),
                );
            }
        }
    }
    let _ = webgpu;
    (Device::flex(), "CPU".to_string())
}

#[wasm_bindgen]
impl AgeEstimator {
    /// Builds the pipeline from the detector's and the age network's ONNX files, and the
    /// streams `trainer export` wrote: `cards` is the array of their parsed `stream.json`,
    /// `weights` their `weights.bpk` bytes in the same order. `webgpu` asks for the GPU; without
    /// an adapter the CPU backend runs and `backend` says why.
    pub async fn create(
        detector: Vec<u8>,
        age: Vec<u8>,
        cards: JsValue,
        weights: Vec<js_sys::Uint8Array>,
        webgpu: bool,
    ) -> Result<AgeEstimator, JsError> {
        let cards: Vec<ExportedStream> = serde_wasm_bindgen::from_value(cards)
            .map_err(|e| js_error(format!("an exported stream's stream.json: {e}")))?;
        if cards.len() != weights.len() {
            return Err(js_error(format!(
                "{} exported stream cards but {} weight files",
                cards.len(),
                weights.len()
            )));
        }
        let (device, backend) = pick_device(webgpu).await;
        let detector = BlazeFace::from_onnx(&detector, &device)
            .map_err(|e| js_error(format!("the face detector's weights: {e}")))?;
        let age = PretrainedAgeNet::from_onnx(&age, &device)
            .map_err(|e| js_error(format!("the age network's weights: {e}")))?;
        let mut streams = vec![Stream::pretrained(age)];
        for (card, bytes) in cards.into_iter().zip(weights) {
            let network = exported::load_stream(&card, bytes.to_vec(), &device)
                .map_err(|e| js_error(format!("the exported stream `{}`: {e}", card.name)))?;
            streams.push(Stream {
                name: card.name,
                network: Network::Dldl(network),
                input_size: card.model.input_size,
                normalization: card.model.normalization,
                weight: card.weight,
            });
        }
        let estimator = Estimator {
            detector,
            streams,
            fusion: FusionRule::Arithmetic,
            flip: true,
        };
        let state = State {
            estimator,
            device,
            backend,
            tracker: RefCell::new(Tracker::default()),
        };
        Ok(AgeEstimator {
            state: Rc::new(state),
        })
    }

    /// Which backend runs: "WebGPU", or "CPU" with the reason.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.state.backend.clone()
    }

    /// The names of the streams that run.
    #[wasm_bindgen(getter)]
    pub fn streams(&self) -> Vec<String> {
        self.state
            .estimator
            .streams
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }

    /// Estimates the faces of one RGBA frame (`width·height·4` bytes, as a canvas gives them).
    /// With `track`, each face continues its track from the previous frames and its distribution
    /// is smoothed over them. Resolves to an array of `{track, frames, face}`.
    pub fn estimate(&self, rgba: Vec<u8>, width: u32, height: u32, track: bool) -> js_sys::Promise {
        let state = Rc::clone(&self.state);
        wasm_bindgen_futures::future_to_promise(async move {
            let error = |e: String| JsValue::from(js_error(e));
            if rgba.len() != (width as usize) * (height as usize) * 4 {
                return Err(error(format!(
                    "a {width}×{height} RGBA frame needs {} bytes, got {}",
                    (width as usize) * (height as usize) * 4,
                    rgba.len()
                )));
            }
            let image = rgba_to_rgb(&rgba, width, height)
                .ok_or_else(|| error("the frame is empty".into()))?;
            let faces = state
                .estimator
                .estimate_async(&image, &state.device)
                .await
                .map_err(|e| error(e.to_string()))?;
            // A still photo gets a tracker of its own, so it neither joins nor ends a live track.
            let tracked = if track {
                state.tracker.borrow_mut().update(faces)
            } else {
                Tracker::default().update(faces)
            }
            .map_err(|e| error(e.to_string()))?;
            // One JSON string parsed by the browser: building the objects value by value from
            // Rust (serde-wasm-bindgen) took 230 ms a frame here, JSON about 1 ms.
            let json = serde_json::to_string(&tracked).map_err(|e| error(e.to_string()))?;
            js_sys::JSON::parse(&json)
        })
    }

    /// Forgets the tracked faces (for a new camera or a still photo).
    pub fn reset(&self) {
        self.state.tracker.borrow_mut().reset();
    }
}
