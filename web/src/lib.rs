//! The browser side of apparent-age. It only converts between JavaScript values and the shared
//! `dldl` crate; detection, alignment, the streams, fusion and tracking all live there.

use std::{cell::RefCell, rc::Rc};

use dldl::{
    burn::tensor::Device,
    distribution::fusion::FusionRule,
    face::detector::BlazeFace,
    face::landmarks::ShapePredictor,
    face::pipeline::{Estimator, Stream, with_published},
    face::tracking::Tracker,
    networks::pretrained::PretrainedAgeNet,
    networks::vgg::AgeNet,
    weights::exported::{self, ExportedStream},
    weights::files,
};
use image::RgbImage;
use wasm_bindgen::{JsCast, prelude::*};

/// `initThreadPool(n)` in the threaded build: starts rayon's pool of `n` web workers, which
/// burn's CPU backend then spreads its kernels over. The page calls it once, before the
/// estimator is built.
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

fn js_error(error: impl std::fmt::Display) -> JsError {
    JsError::new(&error.to_string())
}

/// What [`AgeEstimator::create`] answers when it needs the published network and was not given
/// its weights: the page fetches `models/age-v1.onnx` only then, and builds again with it.
const PUBLISHED_WANTED: &str = "models/age-v1.onnx is needed: no exported stream loaded, or the \
                                fusion gives the published network weight";

/// The message [`AgeEstimator::create`] fails with when it needs `models/age-v1.onnx` and was
/// not given it (the page then fetches the file and builds again).
#[wasm_bindgen(js_name = publishedNetworkWanted)]
pub fn published_network_wanted() -> String {
    PUBLISHED_WANTED.to_string()
}

/// The label distribution N(μ, σ) over the ages 0..=100, as the trainer builds it.
#[wasm_bindgen(js_name = labelDistribution)]
pub fn label_distribution(mu: f32, sigma: f32) -> Result<Vec<f32>, JsError> {
    dldl::distribution::label::label_distribution(mu, sigma).map_err(js_error)
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

/// An RGBA frame as a canvas gives it (`width·height·4` bytes) as an RGB image, packed in place
/// in the frame's own buffer (a 640×480 frame is 1.2 MB, and the page sends one per video
/// frame); `None` when the bytes do not fill it.
pub fn rgba_to_rgb(mut rgba: Vec<u8>, width: u32, height: u32) -> Option<RgbImage> {
    let pixels = (width as usize).checked_mul(height as usize)?;
    if rgba.len() != pixels.checked_mul(4)? {
        return None;
    }
    for i in 0..pixels {
        rgba.copy_within(4 * i..4 * i + 3, 3 * i);
    }
    rgba.truncate(pixels * 3);
    RgbImage::from_raw(width, height, rgba)
}

struct State {
    estimator: Estimator,
    device: Device,
    backend: String,
    warnings: Vec<String>,
    tracker: RefCell<Tracker>,
    /// How long each step of building took ("sha256 12 ms", …), for the start-up timeline.
    steps: Vec<String>,
}

/// One exported stream from the page's `{folder, card, weights, digest}` (`digest`: the
/// weights' sha256 in hex as the browser computed it, when it could), or the line saying why it
/// cannot run. `step` is told when each part of the work ends, for the start-up timeline.
async fn exported_stream(
    entry: &JsValue,
    device: &Device,
    step: &mut impl FnMut(String),
) -> Result<Stream, String> {
    let field = |key: &str| js_sys::Reflect::get(entry, &JsValue::from_str(key)).ok();
    let folder = field("folder")
        .and_then(|f| f.as_string())
        .unwrap_or_else(|| "?".to_string());
    let again =
        format!("export it again with `trainer export --name {folder}`; the page runs without it");
    let card: ExportedStream = field("card")
        .ok_or_else(|| format!("models/streams/{folder}/stream.json is missing: {again}"))
        .and_then(|card| {
            serde_wasm_bindgen::from_value(card).map_err(|e| {
                format!("models/streams/{folder}/stream.json is not a stream card ({e}): {again}")
            })
        })?;
    let weights = field("weights")
        .filter(|w| w.is_instance_of::<js_sys::Uint8Array>())
        .map(|w| js_sys::Uint8Array::from(w).to_vec())
        .ok_or_else(|| format!("models/streams/{folder}/weights.bpk is missing: {again}"))?;
    // A stream that ships with the page is the one this build was made for.
    let relative = format!(
        "{}/{folder}/{}",
        exported::STREAMS_DIR,
        exported::WEIGHTS_FILE
    );
    let pin = files::shipped(&relative);
    if let Some(pin) = pin {
        let shown = format!("models/{relative}");
        let digest = field("digest").and_then(|d| d.as_string());
        pin.verify(&shown, &weights, digest.as_deref())?;
        step(format!("{folder}: sha256"));
    }
    let network = exported::load_stream(&card, weights, device).map_err(|e| {
        format!("models/streams/{folder}/weights.bpk cannot be loaded ({e}): {again}")
    })?;
    step(format!("{folder}: weights"));
    // Weights of a run that diverged load, then give NaN for every face. The pinned ones are
    // the shipped weights, whose values the trainer's tests check are all finite.
    if pin.is_some() {
        return Ok(stream(card, network, folder, step));
    }
    let checked = exported::non_finite_parameters_async(&network).await;
    step(format!("{folder}: finite"));
    match checked {
        Ok((0, _)) => {}
        Ok((bad, tensors)) => {
            return Err(format!(
                "models/streams/{folder}/weights.bpk holds NaN or infinite values in {bad} of \
                 {tensors} tensors (the run diverged): train it again, then {again}"
            ));
        }
        Err(e) => {
            return Err(format!(
                "models/streams/{folder}/weights.bpk cannot be read back ({e}): {again}"
            ));
        }
    }
    Ok(stream(card, network, folder, step))
}

/// The stream that runs: `network` made ready for inference (batch norm folded, convs
/// lowered where the backend gains from it).
fn stream(
    card: ExportedStream,
    network: AgeNet,
    folder: String,
    step: &mut impl FnMut(String),
) -> Stream {
    let network = network.for_inference();
    step(format!("{folder}: for inference"));
    Stream {
        name: card.name,
        network,
        input_size: card.model.input_size,
        normalization: card.model.normalization,
        weight: card.weight,
    }
}

/// The face pipeline in the page: BlazeFace, the pretrained stream, fusion and tracking.
#[wasm_bindgen]
pub struct AgeEstimator {
    state: Rc<State>,
}

/// Runs `work` to completion on a thread of rayon's pool in the threaded build, so that the
/// kernels it starts share out their work among the pool's threads directly. From this thread
/// (the page's worker, not one of the pool's), each kernel would otherwise be handed to the pool
/// and waited for on its own (measured here on a pool of one: a frame's compute took about 80 ms
/// that way, 67 ms this way). On the CPU backend the work's futures are ready at once, so
/// blocking on them never waits. Without threads it is `work.await`.
#[cfg(feature = "threads")]
async fn on_pool<T: Send>(work: impl std::future::Future<Output = T> + Send) -> T {
    let mut out = None;
    rayon::scope(|_| out = Some(futures_lite::future::block_on(work)));
    out.expect("rayon::scope runs its body")
}

#[cfg(not(feature = "threads"))]
async fn on_pool<T>(work: impl std::future::Future<Output = T>) -> T {
    work.await
}

/// The device to run on: WebGPU when asked for and an adapter exists, else burn's CPU backend.
async fn pick_device(webgpu: bool) -> (Device, String) {
    #[cfg(all(target_family = "wasm", feature = "webgpu"))]
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
    /// Builds the pipeline from the detector's ONNX file, the landmark predictor
    /// (`models/face_landmarks_5.bin`), the published age network's ONNX file (`age`: only
    /// needed when it runs, see below), and the
    /// streams `trainer export` wrote: `exported` is an array of `{folder, card, weights, digest}`
    /// (the stream's folder under `models/streams/`, its parsed `stream.json`, its `weights.bpk`
    /// bytes, their sha256 in hex when the browser computed it). An exported stream that cannot be loaded is left out and said in `warnings`; the
    /// others run. `pretrained_weight` is the published network's fusion weight from the
    /// streams' `index.json` (absent: 1; at 0 it runs only when no exported stream loaded).
    /// When it is to run and `age` was not given, this fails with
    /// [`published_network_wanted`]'s message. `webgpu` asks for the GPU; without an adapter
    /// the CPU backend runs and `backend` says why. `digests`, when given, are the files'
    /// sha256 in hex as the browser computed them (`crypto.subtle`, faster than hashing here),
    /// in the order detector, landmarks, age network (when given); either way each file is
    /// checked against the one this build was made for.
    pub async fn create(
        detector: Vec<u8>,
        landmarks: Vec<u8>,
        age: Option<Vec<u8>>,
        exported: Vec<JsValue>,
        webgpu: bool,
        digests: Option<Vec<String>>,
        pretrained_weight: Option<f32>,
    ) -> Result<AgeEstimator, JsError> {
        let mut steps = Vec::new();
        let mut clock = js_sys::Date::now();
        let mut timed = |name: String| {
            let now = js_sys::Date::now();
            steps.push((name, now - clock));
            clock = now;
        };
        // Each file is the one this build was made for, or the page says which is not and
        // what to run.
        let mut given = vec![
            (&files::DETECTOR, &detector),
            (&files::LANDMARKS, &landmarks),
        ];
        if let Some(age) = &age {
            given.push((&files::AGE_NETWORK, age));
        }
        let digests = digests.filter(|d| d.len() == given.len());
        for (i, (file, bytes)) in given.into_iter().enumerate() {
            let shown = format!("models/{}", file.path);
            let digest = digests.as_ref().map(|d| d[i].as_str());
            file.verify(&shown, bytes, digest).map_err(js_error)?;
        }
        timed("sha256".into());
        let landmarks = ShapePredictor::from_bytes(&landmarks)
            .map_err(|e| js_error(format!("the landmark predictor: {e}")))?;
        timed("landmarks".into());
        let (device, backend) = pick_device(webgpu).await;
        timed("device".into());
        let detector = BlazeFace::from_onnx(&detector, &device)
            .map_err(|e| js_error(format!("the face detector's weights: {e}")))?;
        timed("detector".into());
        let mut streams = Vec::new();
        let mut warnings = Vec::new();
        for entry in exported {
            match exported_stream(&entry, &device, &mut timed).await {
                Ok(stream) => streams.push(stream),
                Err(warning) => warnings.push(warning),
            }
        }
        // The published network runs where the fusion gives it weight (index.json's
        // `pretrained_weight`, 1 when absent), and alone when no exported stream loaded; it
        // is built only then.
        let streams = with_published(
            streams,
            exported::published_weight(pretrained_weight),
            || {
                let age = age.ok_or_else(|| js_error(PUBLISHED_WANTED))?;
                let age = PretrainedAgeNet::from_onnx(&age, &device)
                    .map_err(|e| js_error(format!("the age network's weights: {e}")));
                timed("age network".into());
                age
            },
        )?;
        let estimator = Estimator {
            detector,
            landmarks: Some(landmarks),
            streams,
            fusion: FusionRule::Arithmetic,
            flip: true,
        };
        let state = State {
            estimator,
            device,
            backend,
            warnings,
            tracker: RefCell::new(Tracker::default()),
            steps: steps
                .into_iter()
                .map(|(name, ms)| format!("{name} {ms:.0} ms"))
                .collect(),
        };
        Ok(AgeEstimator {
            state: Rc::new(state),
        })
    }

    /// The exported streams left out, one line each: the file, what is wrong, what to run.
    #[wasm_bindgen(getter)]
    pub fn warnings(&self) -> Vec<String> {
        self.state.warnings.clone()
    }

    /// How long each step of building the pipeline took: "sha256 12 ms", "landmarks 40 ms", …
    #[wasm_bindgen(getter)]
    pub fn steps(&self) -> Vec<String> {
        self.state.steps.clone()
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
            let image = rgba_to_rgb(rgba, width, height)
                .ok_or_else(|| error("the frame is empty".into()))?;
            let tracked = if track {
                // The settled-track rule (dldl::face::tracking): the network runs on the faces
                // the tracker asks for; the others keep their smoothed estimate.
                let detections =
                    on_pool(state.estimator.detector.detect_async(&image, &state.device))
                        .await
                        .map_err(|e| error(e.to_string()))?;
                let boxes: Vec<[f32; 4]> = detections.iter().map(|d| d.bbox).collect();
                let plan = state.tracker.borrow().plan(&boxes);
                let chosen: Vec<_> = detections
                    .iter()
                    .zip(&plan)
                    .filter(|(_, run)| **run)
                    .map(|(d, _)| d.clone())
                    .collect();
                let mut estimates = on_pool(state.estimator.estimate_faces_async(
                    &image,
                    &chosen,
                    &state.device,
                ))
                .await
                .map_err(|e| error(e.to_string()))?
                .into_iter();
                let estimates = plan
                    .iter()
                    .map(|&run| if run { estimates.next() } else { None });
                state
                    .tracker
                    .borrow_mut()
                    .update_partial(&detections, estimates.collect())
            } else {
                // A still photo gets a tracker of its own, so it neither joins nor ends a live
                // track.
                let faces = on_pool(state.estimator.estimate_async(&image, &state.device))
                    .await
                    .map_err(|e| error(e.to_string()))?;
                Tracker::default().update(faces)
            }
            .map_err(|e| error(e.to_string()))?;
            // One JSON string parsed by the browser: building the objects value by value from
            // Rust (serde-wasm-bindgen) took 230 ms a frame here, JSON about 1 ms.
            let json = serde_json::to_string(&tracked).map_err(|e| error(e.to_string()))?;
            js_sys::JSON::parse(&json)
        })
    }

    /// One warm-up frame, for choosing a backend by measurement: the detector on a blank
    /// 640×480 frame and every stream on a blank chip and its mirror image, as a face costs.
    /// Resolves to its milliseconds.
    #[wasm_bindgen(js_name = warmUp)]
    pub fn warm_up(&self) -> js_sys::Promise {
        let state = Rc::clone(&self.state);
        wasm_bindgen_futures::future_to_promise(async move {
            let error = |e: dldl::DldlError| JsValue::from(js_error(e));
            let started = js_sys::Date::now();
            let frame = RgbImage::from_pixel(640, 480, image::Rgb([128, 128, 128]));
            on_pool(state.estimator.detector.detect_async(&frame, &state.device))
                .await
                .map_err(error)?;
            for stream in &state.estimator.streams {
                let side = stream.input_size as u32;
                let chip = RgbImage::from_pixel(side, side, image::Rgb([128, 128, 128]));
                on_pool(
                    state
                        .estimator
                        .run_stream_async(stream, &[chip], &state.device),
                )
                .await
                .map_err(error)?;
            }
            Ok(JsValue::from_f64(js_sys::Date::now() - started))
        })
    }

    /// The settled-track rule: the settled faces get the age network on one frame in `every`,
    /// in turn (1 runs it on every face of every frame). See `dldl::face::tracking`.
    #[wasm_bindgen(js_name = setEvery)]
    pub fn set_every(&self, every: u32) {
        self.state.tracker.borrow_mut().every = every.max(1);
    }

    /// Forgets the tracked faces (for a new camera or a still photo).
    pub fn reset(&self) {
        self.state.tracker.borrow_mut().reset();
    }

    /// For the page's benchmark (`?time-landmarks=N`): resolves to the milliseconds per face of
    /// the landmark step (the predictor from the upright and the turned box, and its checks) on
    /// the first face of an RGBA frame, the mean of `runs` runs; `undefined` without a face.
    #[wasm_bindgen(js_name = timeLandmarks)]
    pub fn time_landmarks(
        &self,
        rgba: Vec<u8>,
        width: u32,
        height: u32,
        runs: u32,
    ) -> js_sys::Promise {
        let state = Rc::clone(&self.state);
        wasm_bindgen_futures::future_to_promise(async move {
            let nothing = Ok(JsValue::UNDEFINED);
            let (Some(image), Some(predictor)) = (
                rgba_to_rgb(rgba, width, height),
                state.estimator.landmarks.as_ref(),
            ) else {
                return nothing;
            };
            let detections = state
                .estimator
                .detector
                .detect_async(&image, &state.device)
                .await
                .map_err(|e| JsValue::from(js_error(e)))?;
            let Some(first) = detections.first() else {
                return nothing;
            };
            let runs = runs.max(1);
            let started = js_sys::Date::now();
            for _ in 0..runs {
                let _ = dldl::face::pipeline::landmarks(&image, first, predictor);
            }
            Ok(JsValue::from_f64(
                (js_sys::Date::now() - started) / f64::from(runs),
            ))
        })
    }
}
