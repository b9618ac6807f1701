//! Speed of the face pipeline on burn's CPU backend: the pretrained stream's forward pass at batch
//! 1, 6 (three faces and their mirror images) and 32, the detector and the whole pipeline per
//! 640×480 frame, and the landmark step per face. Prints one JSON object;
//! `cargo xtask bench` runs this beside ONNX Runtime on the same ONNX file and records both.
//!
//! Reads `models/` (run `cargo xtask fetch-models`) and the astronaut portrait (`cargo xtask
//! fetch-portraits`), which is placed in a 640×480 frame.

use std::time::Duration;

use dldl::{
    burn::tensor::{Device, Tensor},
    distribution::fusion::FusionRule,
    face::detector::BlazeFace,
    face::landmarks::{self, ShapePredictor},
    face::pipeline::{self, Estimator, Stream},
    networks::pretrained::{CHIP_SIZE, PretrainedAgeNet},
};
use image::{Rgb, RgbImage};

mod support;
use support::median_seconds;

// Where the repository's fetched files are, as the tests find them.
#[path = "../../tests/support/repo.rs"]
#[allow(dead_code)]
mod repo;

fn main() {
    let device = Device::flex();
    let budget = Duration::from_secs(3);
    let age = repo::read(&repo::model("age-v1.onnx"), "fetch-models");
    let net = PretrainedAgeNet::from_onnx(&age, &device).unwrap();
    let mut forward = Vec::new();
    // As published, with its affine layers folded into its convs, and as the page and `trainer
    // predict` run it (`Stream::pretrained`): folded, and its convs lowered to matrix products.
    for (form, network, as_run) in [
        ("as published", net.clone(), false),
        ("affine layers folded", net.clone().fold_affine(), false),
        (
            "as run: folded, convs lowered to matrix products",
            net.clone().lower_convs(),
            true,
        ),
    ] {
        for batch in [1usize, 6, 32] {
            let x: Tensor<4> = Tensor::random(
                [batch, 3, CHIP_SIZE, CHIP_SIZE],
                dldl::burn::tensor::Distribution::Uniform(-0.5, 0.5),
                &device,
            );
            let seconds = median_seconds(budget, || {
                let _: Vec<f32> = network.distribution(x.clone()).try_into_vec_as().unwrap();
            });
            forward.push(serde_json::json!({
                "form": form,
                "as_run": as_run,
                "batch": batch,
                "ms_per_batch": seconds * 1e3,
                "images_per_s": batch as f64 / seconds,
            }));
        }
    }

    let detector_bytes = repo::read(
        &repo::model("blazeface/face_detection_short_range.onnx"),
        "fetch-models",
    );
    let detector = BlazeFace::from_onnx(&detector_bytes, &device).unwrap();
    let portrait = repo::portrait_rgb("astronaut.png");
    let mut frame = RgbImage::from_pixel(640, 480, Rgb([90, 90, 90]));
    let small = image::imageops::resize(&portrait, 480, 480, image::imageops::FilterType::Triangle);
    image::imageops::replace(&mut frame, &small, 80, 0);
    let faces = detector.detect(&frame, &device).unwrap().len();
    let detect = median_seconds(budget, || {
        detector.detect(&frame, &device).unwrap();
    });
    let predictor = ShapePredictor::from_bytes(&repo::read(
        &repo::model(landmarks::COMPACT_FILE),
        "fetch-models",
    ))
    .unwrap();
    let detections = detector.detect(&frame, &device).unwrap();
    let first = detections.first().expect("a face in the benchmark's frame");
    let landmark_step = median_seconds(budget, || {
        pipeline::landmarks(&frame, first, &predictor).unwrap();
    });
    let estimator = Estimator {
        detector,
        landmarks: Some(predictor),
        streams: vec![Stream::pretrained(net)],
        fusion: FusionRule::Arithmetic,
        flip: true,
    };
    let pipeline = median_seconds(budget, || {
        estimator.estimate(&frame, &device).unwrap();
    });
    let report = serde_json::json!({
        "backend": "burn flex (CPU)",
        "pretrained_forward": forward,
        "frame": "640x480",
        "faces_in_frame": faces,
        "detector_ms_per_frame": detect * 1e3,
        "landmarks_ms_per_face": landmark_step * 1e3,
        "pipeline_ms_per_frame": pipeline * 1e3,
        "pipeline_includes": "detection, five landmarks, alignment, pretrained stream on the chip and its mirror image, fusion",
    });
    println!("{report}");
}
