//! The native CPU backend against the recorded conformance results
//! (`tests/fixtures/reference/conformance.json`), which the browser's backends are checked
//! against too (`web/tests/browser.rs`). `DLDL_WRITE_CONFORMANCE=1` rewrites the file from this
//! machine instead (after a deliberate change to the pipeline or the networks).
//!
//! Needs `cargo xtask fetch-models` and `cargo xtask fetch-portraits` (run by `cargo xtask test`).

#[path = "../../tests/support/mod.rs"]
mod support;

#[path = "../../tests/support/conformance.rs"]
mod conformance;

use conformance::{Results, Tolerances};
use dldl::{
    burn::tensor::Device, face::detector::BlazeFace, face::landmarks::ShapePredictor,
    networks::pretrained::PretrainedAgeNet,
};
use support::repo::{read, root};

#[test]
fn the_native_cpu_backend_reproduces_the_recorded_conformance_results() {
    let device = Device::flex();
    let image = image::load_from_memory(&read(
        &root().join(conformance::PORTRAIT),
        "fetch-portraits",
    ))
    .unwrap()
    .to_rgb8();
    let detector = BlazeFace::from_onnx(
        &read(&root().join(conformance::DETECTOR), "fetch-models"),
        &device,
    )
    .unwrap();
    let age = PretrainedAgeNet::from_onnx(
        &read(&root().join(conformance::AGE_NETWORK), "fetch-models"),
        &device,
    )
    .unwrap();
    let landmarks =
        ShapePredictor::from_bytes(&read(&root().join(conformance::LANDMARKS), "fetch-models"))
            .unwrap();
    let fixture = root().join(conformance::FIXTURE);
    let shipped = shipped();

    if std::env::var_os("DLDL_WRITE_CONFORMANCE").is_some() {
        let results = futures_lite::future::block_on(conformance::run(
            &image, &detector, &landmarks, &age, &shipped, None, &device,
        ))
        .unwrap();
        let json = serde_json::to_string(&results).unwrap();
        std::fs::write(&fixture, json + "\n").unwrap();
        eprintln!("wrote {}", fixture.display());
        return;
    }

    let reference: Results = serde_json::from_slice(&std::fs::read(&fixture).unwrap()).unwrap();
    assert_eq!(reference.detections.len(), 1, "the portrait shows one face");
    assert_eq!(
        reference.landmarks.len(),
        5,
        "its five landmarks are trusted"
    );
    assert_eq!(
        reference.streams.len(),
        1 + conformance::DLDL_STREAMS.len() + conformance::SHIPPED.len()
    );
    // The shipped streams read the astronaut (aged about 50 in the portrait) as an adult.
    assert!(
        (25.0..=75.0).contains(&reference.default_expected_age),
        "the default pipeline reads the portrait as {}",
        reference.default_expected_age
    );
    let results = futures_lite::future::block_on(conformance::run(
        &image,
        &detector,
        &landmarks,
        &age,
        &shipped,
        Some(&reference),
        &device,
    ))
    .unwrap();
    let (differences, failures) = results.compare(&reference, &Tolerances::BROWSER);
    eprintln!("native CPU against the recorded results: {differences:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The networks' outputs are not degenerate: the fixed weights give each DLDL stream a
    // distribution that is neither one-hot nor flat.
    for stream in &results.streams {
        let top = stream.distribution.iter().copied().fold(0.0f32, f32::max);
        assert!(
            top > 1.5 / 101.0 && top < 0.99,
            "{}: largest bin {top}",
            stream.name
        );
    }
}

/// The shipped streams, read from the repository as the page fetches them.
fn shipped() -> conformance::Shipped {
    let bytes = |path: &str| {
        std::fs::read(root().join(path)).unwrap_or_else(|e| {
            panic!(
                "{path}: {e}; the shipped streams are committed: `git checkout -- models/streams`"
            )
        })
    };
    let text = |path: &str| String::from_utf8(bytes(path)).unwrap();
    let index = text(conformance::SHIPPED_INDEX);
    let files: Vec<(String, Vec<u8>)> = conformance::SHIPPED
        .iter()
        .map(|name| {
            (
                text(&format!("models/streams/{name}/stream.json")),
                bytes(&format!("models/streams/{name}/weights.bpk")),
            )
        })
        .collect();
    let borrowed: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(card, weights)| (card.as_str(), weights.as_slice()))
        .collect();
    conformance::Shipped::parse(&index, &borrowed).unwrap()
}

#[test]
fn a_changed_result_is_caught() {
    let reference: Results =
        serde_json::from_slice(&std::fs::read(root().join(conformance::FIXTURE)).unwrap()).unwrap();
    let mut changed = reference.clone();
    changed.streams[1].distribution[40] += 2e-4;
    changed.chip[100] = changed.chip[100].wrapping_add(3);
    changed.regressions.samples[5] *= 1.01;
    let (_, failures) = changed.compare(&reference, &Tolerances::BROWSER);
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert!(failures.iter().any(|f| f.contains("thin-age-net")));
    assert!(failures.iter().any(|f| f.contains("chip")));
    assert!(failures.iter().any(|f| f.contains("regressions")));
    // A backend that produces NaN fails rather than slipping past the maxima.
    let mut nan = reference.clone();
    nan.streams[0].distribution[3] = f32::NAN;
    nan.detections[0].bbox[0] = f32::NAN;
    let (_, failures) = nan.compare(&reference, &Tolerances::BROWSER);
    assert_eq!(failures.len(), 2, "{failures:?}");
    let (_, none) = reference.compare(&reference, &Tolerances::BROWSER);
    assert!(none.is_empty(), "{none:?}");
}
