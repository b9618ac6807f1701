//! The browser's backends against the native one, in headless Chromium (wasm-bindgen-test; run
//! by `cargo xtask test`): the face pipeline's preprocessing, the detector, and each stream's
//! forward pass on a fixed portrait must reproduce the native CPU backend's recorded results
//! (`tests/fixtures/reference/conformance.json`) within `Tolerances::BROWSER`, on burn's CPU
//! backend and on WebGPU; and the page's entry point, fed the portrait as RGBA like a canvas,
//! must give the recorded pipeline's estimate.
#![cfg(target_family = "wasm")]

// Its file paths serve the native test; this one includes the files themselves, below.
#[allow(dead_code)]
#[path = "../../tests/support/conformance.rs"]
mod conformance;

use conformance::{Results, Tolerances};
use dldl::{
    burn::tensor::Device, face::detector::BlazeFace, face::landmarks::ShapePredictor,
    networks::pretrained::PretrainedAgeNet,
};
use image::RgbImage;
use wasm_bindgen::{JsValue, prelude::wasm_bindgen};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

// The same files as `conformance::{PORTRAIT, DETECTOR, AGE_NETWORK, LANDMARKS, FIXTURE}`.
const PORTRAIT: &[u8] = include_bytes!("../../tests/fixtures/portraits/astronaut.png");
const DETECTOR: &[u8] = include_bytes!("../../models/blazeface/face_detection_short_range.onnx");
const AGE_NETWORK: &[u8] = include_bytes!("../../models/age-v1.onnx");
const LANDMARKS: &[u8] = include_bytes!("../../models/face_landmarks_5.bin");
const FIXTURE: &str = include_str!("../../tests/fixtures/reference/conformance.json");
// The shipped streams (`conformance::SHIPPED`, in its order) and their list.
const SHIPPED_INDEX: &str = include_str!("../../models/streams/index.json");
const SHIPPED: [(&str, &str, &[u8]); 2] = [
    (
        "resnet-utkface",
        include_str!("../../models/streams/resnet-utkface/stream.json"),
        include_bytes!("../../models/streams/resnet-utkface/weights.bpk"),
    ),
    (
        "tiny-utkface",
        include_str!("../../models/streams/tiny-utkface/stream.json"),
        include_bytes!("../../models/streams/tiny-utkface/weights.bpk"),
    ),
];

fn shipped() -> conformance::Shipped {
    assert_eq!(SHIPPED.map(|(name, _, _)| name), conformance::SHIPPED);
    let files: Vec<(&str, &[u8])> = SHIPPED.iter().map(|(_, card, w)| (*card, *w)).collect();
    conformance::Shipped::parse(SHIPPED_INDEX, &files).unwrap()
}

/// The shipped streams as the page hands them to the estimator: `{folder, card, weights}`.
fn shipped_entries() -> Vec<JsValue> {
    SHIPPED
        .iter()
        .map(|(folder, card, weights)| {
            let entry = js_sys::Object::new();
            let set = |key: &str, value: &JsValue| {
                js_sys::Reflect::set(&entry, &JsValue::from_str(key), value).unwrap();
            };
            set("folder", &JsValue::from_str(folder));
            set("card", &js_sys::JSON::parse(card).unwrap());
            set("weights", &js_sys::Uint8Array::from(*weights).into());
            entry.into()
        })
        .collect()
}

// The browser decodes the portrait and a canvas gives its RGBA pixels, as on the page (PNG is
// lossless and the portrait carries no colour profile, so these are the file's own values).
#[wasm_bindgen(inline_js = "
export async function canvas_rgba(bytes) {
  const bitmap = await createImageBitmap(new Blob([bytes], { type: 'image/png' }),
    { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext('2d');
  context.drawImage(bitmap, 0, 0);
  const pixels = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  return [bitmap.width, bitmap.height, new Uint8Array(pixels.buffer)];
}")]
extern "C" {
    async fn canvas_rgba(bytes: &[u8]) -> JsValue;
}

/// The portrait as the page gets a frame: width, height and RGBA bytes.
async fn portrait_rgba() -> (u32, u32, Vec<u8>) {
    let decoded = js_sys::Array::from(&canvas_rgba(PORTRAIT).await);
    let width = decoded.get(0).as_f64().unwrap() as u32;
    let height = decoded.get(1).as_f64().unwrap() as u32;
    let rgba = js_sys::Uint8Array::new(&decoded.get(2)).to_vec();
    assert_eq!(rgba.len(), (width * height * 4) as usize);
    (width, height, rgba)
}

async fn portrait_rgb() -> RgbImage {
    let (width, height, rgba) = portrait_rgba().await;
    web::rgba_to_rgb(rgba, width, height).unwrap()
}

fn reference() -> Results {
    serde_json::from_str(FIXTURE).expect("the recorded conformance results parse")
}

async fn matches_the_native_results(device: Device, backend: &str) {
    let image = portrait_rgb().await;
    let detector = BlazeFace::from_onnx(DETECTOR, &device).unwrap();
    let age = PretrainedAgeNet::from_onnx(AGE_NETWORK, &device).unwrap();
    let landmarks = ShapePredictor::from_bytes(LANDMARKS).unwrap();
    let reference = reference();
    let results = conformance::run(
        &image,
        &detector,
        &landmarks,
        &age,
        &shipped(),
        Some(&reference),
        &device,
    )
    .await
    .unwrap();
    let (differences, failures) = results.compare(&reference, &Tolerances::BROWSER);
    console_log!("{backend} against the native CPU backend: {differences:?}");
    assert!(
        failures.is_empty(),
        "{backend} differs from the native results:\n{}",
        failures.join("\n")
    );
}

#[wasm_bindgen_test]
async fn a_frame_packed_in_place_keeps_every_pixel() {
    let (width, height, rgba) = portrait_rgba().await;
    let expected: Vec<u8> = rgba
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    let packed = web::rgba_to_rgb(rgba.clone(), width, height).unwrap();
    assert_eq!((packed.width(), packed.height()), (width, height));
    assert_eq!(packed.into_raw(), expected);
    let short = rgba[..rgba.len() - 4].to_vec();
    assert!(web::rgba_to_rgb(short, width, height).is_none());
    assert!(web::rgba_to_rgb(rgba, width, height + 1).is_none());
}

#[wasm_bindgen_test]
async fn the_cpu_backend_reproduces_the_native_results() {
    matches_the_native_results(Device::flex(), "CPU").await;
}

#[wasm_bindgen_test]
async fn webgpu_reproduces_the_native_results() {
    let device = Device::wgpu_options().init_async().await.expect(
        "Chromium runs with --enable-unsafe-webgpu (web/webdriver.json), so an adapter exists",
    );
    matches_the_native_results(device, "WebGPU").await;
}

fn get(value: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(value, &JsValue::from_str(key)).unwrap()
}

#[wasm_bindgen_test]
async fn the_page_entry_point_gives_the_recorded_estimate() {
    let (width, height, rgba) = portrait_rgba().await;
    let estimator = web::AgeEstimator::create(
        DETECTOR.to_vec(),
        LANDMARKS.to_vec(),
        Some(AGE_NETWORK.to_vec()),
        Vec::new(),
        false,
        None,
        None,
    )
    .await
    .map_err(JsValue::from)
    .unwrap();
    assert_eq!(estimator.backend(), "CPU");
    assert_eq!(estimator.streams(), vec!["pretrained".to_string()]);
    let faces = JsFuture::from(estimator.estimate(rgba, width, height, false))
        .await
        .unwrap();
    let faces = js_sys::Array::from(&faces);
    assert_eq!(faces.length(), 1);
    let age = get(&get(&faces.get(0), "face"), "expected_age")
        .as_f64()
        .unwrap() as f32;
    let recorded = reference().pipeline_expected_age;
    console_log!("the page's estimate: {age:.4}, recorded natively: {recorded:.4}");
    assert!(
        (age - recorded).abs() <= Tolerances::BROWSER.years,
        "the page estimates {age}, the native pipeline {recorded}"
    );

    // A frame of the wrong size is refused with a message, not a crash.
    let refused = JsFuture::from(estimator.estimate(vec![0; 12], 4, 4, false)).await;
    let message = format!("{:?}", refused.unwrap_err());
    assert!(message.contains("needs 64 bytes"), "{message}");
}

/// By default the page runs the shipped streams, fused by their weights (and the published
/// network by the index's weight for it), and gives the default pipeline's recorded estimate.
#[wasm_bindgen_test]
async fn the_page_entry_point_runs_the_shipped_streams() {
    let (width, height, rgba) = portrait_rgba().await;
    let index: dldl::weights::exported::StreamIndex = serde_json::from_str(SHIPPED_INDEX).unwrap();
    // As the page does: the published network's file only when the fusion gives it weight.
    let estimator = web::AgeEstimator::create(
        DETECTOR.to_vec(),
        LANDMARKS.to_vec(),
        (index.published_weight() > 0.0).then(|| AGE_NETWORK.to_vec()),
        shipped_entries(),
        false,
        None,
        index.pretrained_weight,
    )
    .await
    .map_err(JsValue::from)
    .unwrap();
    assert!(
        estimator.warnings().is_empty(),
        "{:?}",
        estimator.warnings()
    );
    let mut expected: Vec<String> = Vec::new();
    if index.published_weight() > 0.0 {
        expected.push("pretrained".to_string());
    }
    expected.extend(conformance::SHIPPED.iter().map(|s| s.to_string()));
    assert_eq!(estimator.streams(), expected);
    let faces = js_sys::Array::from(
        &JsFuture::from(estimator.estimate(rgba, width, height, false))
            .await
            .unwrap(),
    );
    assert_eq!(faces.length(), 1);
    let age = get(&get(&faces.get(0), "face"), "expected_age")
        .as_f64()
        .unwrap() as f32;
    let recorded = reference().default_expected_age;
    console_log!("the page's default estimate: {age:.4}, recorded natively: {recorded:.4}");
    assert!(
        (age - recorded).abs() <= Tolerances::BROWSER.years,
        "the page estimates {age}, the native default pipeline {recorded}"
    );
}

/// The digests the page's browser computes are held to the files this build was made for, as
/// the bytes are when it computes none.
#[wasm_bindgen_test]
async fn digests_from_the_browser_are_checked_like_the_bytes() {
    let create = |digests: Option<Vec<String>>| {
        web::AgeEstimator::create(
            DETECTOR.to_vec(),
            LANDMARKS.to_vec(),
            Some(AGE_NETWORK.to_vec()),
            Vec::new(),
            false,
            digests,
            None,
        )
    };
    let right: Vec<String> = [DETECTOR, LANDMARKS, AGE_NETWORK]
        .iter()
        .map(|b| dldl::weights::files::sha256_hex(b))
        .collect();
    assert!(create(Some(right.clone())).await.is_ok());
    let mut wrong = right;
    wrong[2] = "0".repeat(64);
    let refused = create(Some(wrong)).await.map(|_| ()).map_err(JsValue::from);
    let message = format!("{:?}", refused.unwrap_err());
    assert!(
        message.contains("models/age-v1.onnx is not the file this build was made for"),
        "{message}"
    );
}

/// Without the published network's file and with no exported stream to run, the estimator asks
/// for that file in the words the page waits for; the two other files' digests are still checked.
#[wasm_bindgen_test]
async fn the_published_network_is_asked_for_only_when_it_must_run() {
    let digests: Vec<String> = [DETECTOR, LANDMARKS]
        .iter()
        .map(|b| dldl::weights::files::sha256_hex(b))
        .collect();
    // What `create` without the published network's file says, as the page reads it.
    let refusal = |streams: Vec<JsValue>, digests: Vec<String>| async move {
        let refused = web::AgeEstimator::create(
            DETECTOR.to_vec(),
            LANDMARKS.to_vec(),
            None,
            streams,
            false,
            Some(digests),
            Some(0.0),
        )
        .await
        .map(|_| ())
        .map_err(JsValue::from);
        format!("{:?}", refused.unwrap_err())
    };
    let message = refusal(Vec::new(), digests.clone()).await;
    assert!(
        message.contains(&web::published_network_wanted()),
        "{message}"
    );
    let mut wrong = digests;
    wrong[1] = "0".repeat(64);
    let message = refusal(shipped_entries(), wrong).await;
    assert!(
        message.contains("models/face_landmarks_5.bin is not the file this build was made for"),
        "{message}"
    );
}
