//! End to end: `trainer predict` on the fetched public-domain portraits, on damaged and odd images,
//! with missing or wrong weights, and with a second (test-trained) stream fused in.
//!
//! Needs `cargo xtask fetch-models` and `cargo xtask fetch-portraits` (run by `cargo xtask test`).

mod support;

use std::path::{Path, PathBuf};

use image::{DynamicImage, Rgb, RgbImage};
use serde_json::Value;
use support::{
    repo::{model, portrait, root, s},
    trainer::{no_panic, synthetic_stream, trainer},
};

/// `trainer predict --json` on the CPU; the parsed results, stderr and whether it succeeded.
fn predict(images: &[&Path], extra: &[&str]) -> (Vec<Value>, String, bool) {
    let mut args = vec!["predict", "--json", "--device", "cpu"];
    args.extend_from_slice(extra);
    args.extend(images.iter().map(|p| s(p)));
    let out = trainer(&args);
    let stderr = no_panic(&out);
    let results: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("trainer {args:?} printed no JSON ({e}):\n{stderr}"));
    (
        results.as_array().unwrap().clone(),
        stderr,
        out.status.success(),
    )
}

fn faces(result: &Value) -> &Vec<Value> {
    result["faces"].as_array().unwrap()
}

fn bbox(face: &Value) -> Vec<f64> {
    face["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// A JPEG with an EXIF APP1 segment holding only an orientation tag.
fn jpeg_with_orientation(image: &RgbImage, orientation: u16) -> Vec<u8> {
    let mut jpeg = Vec::new();
    DynamicImage::ImageRgb8(image.clone())
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    // TIFF header (little endian), one IFD entry: tag 0x0112 SHORT count 1 = orientation.
    let mut tiff = b"II*\0\x08\0\0\0\x01\0".to_vec();
    tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0]);
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let length = (app1.len() + 2) as u16;
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn finds_one_face_per_portrait_and_reports_the_rest_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let astronaut = image::open(portrait("astronaut.png")).unwrap().to_rgb8();

    let corrupt = d.join("corrupt.jpg");
    std::fs::write(&corrupt, b"this is not a JPEG").unwrap();
    let truncated = d.join("truncated.png");
    let png = std::fs::read(portrait("astronaut.png")).unwrap();
    std::fs::write(&truncated, &png[..png.len() / 3]).unwrap();
    let tiny = d.join("tiny.png");
    RgbImage::from_pixel(1, 1, Rgb([9, 9, 9]))
        .save(&tiny)
        .unwrap();
    let huge = d.join("huge.png");
    RgbImage::from_pixel(10_000, 10_000, Rgb([120, 110, 100]))
        .save(&huge)
        .unwrap();
    let cmyk = d.join("cmyk.jpg");
    let cmyk_pixels: Vec<u8> = astronaut
        .pixels()
        .flat_map(|p| {
            let [c, m, y] = p.0.map(|v| 255 - v); // no black ink: C = 1 − R, …
            [c, m, y, 0]
        })
        .collect();
    jpeg_encoder::Encoder::new_file(&cmyk, 95)
        .unwrap()
        .encode(&cmyk_pixels, 512, 512, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    // Stored turned a quarter to the left; orientation 6 says to turn it back right.
    let rotated = d.join("rotated.jpg");
    std::fs::write(
        &rotated,
        jpeg_with_orientation(&image::imageops::rotate270(&astronaut), 6),
    )
    .unwrap();

    let astronaut_path = portrait("astronaut.png");
    let grace = portrait("grace_hopper_512x512.jpg");
    let grace_crop = portrait("grace_hopper.jpg");
    let coffee = portrait("coffee.png");
    let camera = portrait("camera.png");
    let out = d.join("annotated");
    let images: Vec<&Path> = vec![
        &astronaut_path,
        &corrupt,
        &grace,
        &truncated,
        &grace_crop,
        &coffee,
        &tiny,
        &huge,
        &cmyk,
        &rotated,
        &camera,
    ];
    let (results, stderr, success) = predict(&images, &["--out", s(&out)]);
    assert!(!success, "some inputs failed, so the status must say so");
    assert_eq!(results.len(), images.len());

    // One face per portrait, with a plausible estimate, and the picture written.
    for i in [0, 2, 4] {
        let result = &results[i];
        assert!(result["error"].is_null(), "{result}");
        assert_eq!(
            faces(result).len(),
            1,
            "{}: {:?}",
            images[i].display(),
            faces(result)
        );
        let age = faces(result)[0]["expected_age"].as_f64().unwrap();
        assert!((1.0..=100.0).contains(&age), "{age}");
        let picture = PathBuf::from(result["annotated"].as_str().unwrap());
        assert!(image::open(&picture).is_ok(), "{}", picture.display());
    }
    // By default the shipped streams (trained on UTKFace) run, fused; the astronaut was in his
    // thirties or forties in the portrait, Grace Hopper 78.
    for i in [0, 2, 4] {
        let names: Vec<&str> = faces(&results[i])[0]["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        for shipped in ["resnet-utkface", "tiny-utkface"] {
            assert!(names.contains(&shipped), "{shipped} did not run: {names:?}");
        }
    }
    let astronaut_age = faces(&results[0])[0]["expected_age"].as_f64().unwrap();
    assert!(
        (20.0..=70.0).contains(&astronaut_age),
        "the astronaut estimated at {astronaut_age}"
    );
    for i in [2, 4] {
        let age = faces(&results[i])[0]["expected_age"].as_f64().unwrap();
        assert!(age > 60.0, "Grace Hopper estimated at {age}");
    }
    // The damaged files: one line each, naming the file.
    for (i, name) in [(1, "corrupt.jpg"), (3, "truncated.png")] {
        let error = results[i]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{} should fail", name));
        assert!(error.contains(name), "{error}");
        assert_eq!(
            stderr
                .lines()
                .filter(|l| l.starts_with("error: ") && l.contains(name))
                .count(),
            1,
            "{stderr}"
        );
    }
    // No face: an answer, not a failure.
    for i in [5, 6, 7] {
        assert!(results[i]["error"].is_null(), "{}", results[i]);
        assert!(faces(&results[i]).is_empty(), "{}", results[i]);
    }
    // CMYK and EXIF-rotated copies of the astronaut find her where the original does.
    let original = bbox(&faces(&results[0])[0]);
    for i in [8, 9] {
        assert!(results[i]["error"].is_null(), "{}", results[i]);
        assert_eq!(faces(&results[i]).len(), 1, "{}", results[i]);
        let found = bbox(&faces(&results[i])[0]);
        let worst = original
            .iter()
            .zip(&found)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < 6.0,
            "{}: box {found:?} vs {original:?}",
            images[i].display()
        );
    }
    assert_eq!(
        (results[9]["width"].as_u64(), results[9]["height"].as_u64()),
        (Some(512), Some(512))
    );
    // Grayscale is read as RGB.
    assert!(results[10]["error"].is_null(), "{}", results[10]);
}

#[test]
fn missing_or_wrong_weights_are_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let astronaut = portrait("astronaut.png");
    let out = trainer(&["predict", "--models", s(dir.path()), s(&astronaut)]);
    let stderr = no_panic(&out);
    assert!(!out.status.success());
    assert!(
        stderr.starts_with("error: ")
            && stderr.contains("fetch-models")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    // The detector's file where the age network belongs.
    let models = dir.path();
    std::fs::create_dir_all(models.join("blazeface")).unwrap();
    let detector = root().join("models/blazeface/face_detection_short_range.onnx");
    std::fs::copy(
        &detector,
        models.join("blazeface/face_detection_short_range.onnx"),
    )
    .unwrap();
    std::fs::copy(&detector, models.join("age-v1.onnx")).unwrap();
    std::fs::copy(
        model("face_landmarks_5.bin"),
        models.join("face_landmarks_5.bin"),
    )
    .unwrap();
    let refused = |what: &str| {
        let out = trainer(&["predict", "--models", s(models), s(&astronaut)]);
        let stderr = no_panic(&out);
        assert!(!out.status.success(), "{what}");
        assert!(
            stderr.contains("age-v1.onnx")
                && stderr.contains("not the file this build was made for")
                && stderr.contains("cargo xtask fetch-models")
                && stderr.lines().count() == 1,
            "{what}: {stderr}"
        );
    };
    refused("the detector's file as the age network");
    // One byte changed in the age network, and the file cut short: its sha256 says so before
    // anything is parsed.
    let mut age = std::fs::read(model("age-v1.onnx")).unwrap();
    let middle = age.len() / 2;
    age[middle] ^= 1;
    std::fs::write(models.join("age-v1.onnx"), &age).unwrap();
    refused("a changed byte");
    std::fs::write(models.join("age-v1.onnx"), &age[..age.len() - 7]).unwrap();
    refused("a truncated file");
}

#[test]
fn a_trained_stream_is_fused_with_the_pretrained_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = synthetic_stream(dir.path(), 64, 16, 1, &["--batch-size", "16"]);
    let astronaut = portrait("astronaut.png");
    // A model folder without exported streams: the published network and the given stream.
    let models = dir.path().join("models");
    std::fs::create_dir_all(models.join("blazeface")).unwrap();
    for file in [
        "age-v1.onnx",
        "face_landmarks_5.bin",
        "blazeface/face_detection_short_range.onnx",
    ] {
        std::fs::copy(model(file), models.join(file)).unwrap();
    }
    let (results, stderr, success) = predict(
        &[&astronaut],
        &["--stream", s(&run), "--models", s(&models)],
    );
    assert!(success, "{stderr}");
    assert!(
        stderr.contains("synthetic"),
        "a synthetic-trained stream must be flagged:\n{stderr}"
    );
    let face = &faces(&results[0])[0];
    let streams = face["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[0]["name"], "pretrained");
    // Equal weights: the fused distribution is the mean of the two.
    let fused: Vec<f64> = face["distribution"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let mean: Vec<f64> = (0..101)
        .map(|a| {
            (streams[0]["distribution"][a].as_f64().unwrap()
                + streams[1]["distribution"][a].as_f64().unwrap())
                / 2.0
        })
        .collect();
    let worst = fused
        .iter()
        .zip(&mean)
        .map(|(f, m)| (f - m).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < 1e-5,
        "fused differs from the streams' mean by {worst}"
    );
}
