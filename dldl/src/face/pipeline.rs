//! From a photograph to per-face age distributions: detect (BlazeFace), find each face's five
//! landmarks (dlib's shape predictor, from a box derived from BlazeFace's keypoints), cut the
//! chip dlib cuts from them, run every stream on its own chip (and on the chip's mirror image,
//! averaged in), and fuse the streams' distributions. A face whose landmarks cannot be found or
//! trusted is aligned on BlazeFace's eyes instead, and marked so ([`Alignment::Eyes`]).
//!
//! The trainer and the browser demo both call this module, so they run the very same code.

use burn::tensor::{Device, Tensor};
use image::RgbImage;
use serde::Serialize;

use crate::{
    AGE_BINS, DldlError,
    distribution::fusion::{FusionRule, fuse},
    distribution::{expected_age, std_dev, top_ages},
    face::align::{self, Point},
    face::detector::{BlazeFace, FaceDetection, keypoint},
    face::landmarks::{FaceBox, Pixels, ShapePredictor},
    networks::preprocess::{Normalization, images_to_tensor},
    networks::pretrained::{self, PretrainedAgeNet},
    networks::vgg::AgeNet,
};

/// One stream: a named network with its input size, normalisation and fusion weight.
#[derive(Debug)]
pub struct Stream {
    pub name: String,
    /// The pretrained network ([`AgeNet::Pretrained`]) or a trained DLDL stream.
    pub network: AgeNet,
    pub input_size: usize,
    pub normalization: Normalization,
    pub weight: f32,
}

impl Stream {
    /// The pretrained stream, named `pretrained`, with weight 1; for inference, so with its
    /// affine layers folded into its convs and, on the CPU backend, its convs lowered to
    /// matrix products ([`PretrainedAgeNet::lower_convs`]).
    pub fn pretrained(network: PretrainedAgeNet) -> Self {
        Stream {
            name: "pretrained".to_string(),
            network: AgeNet::Pretrained(network.lower_convs()),
            input_size: pretrained::CHIP_SIZE,
            normalization: pretrained::NORMALIZATION,
            weight: 1.0,
        }
    }

    /// The `[batch, 101]` distributions of a batch of this stream's chips.
    pub fn distributions(&self, chips: &[&[u8]], device: &Device) -> Tensor<2> {
        let input = images_to_tensor(chips, self.input_size, &self.normalization, device);
        self.network.distribution(input)
    }
}

/// The streams to run: `streams` (the exported ones that loaded), with the published network
/// ahead of them where the fusion gives it `weight` (the streams' index says; see
/// [`published_weight`](crate::weights::exported::published_weight)), and alone, at weight 1,
/// when no other stream would run. `published` gives the network only when it is needed.
pub fn with_published<E>(
    mut streams: Vec<Stream>,
    weight: f32,
    published: impl FnOnce() -> Result<PretrainedAgeNet, E>,
) -> Result<Vec<Stream>, E> {
    if weight > 0.0 || streams.is_empty() {
        let mut stream = Stream::pretrained(published()?);
        stream.weight = if streams.is_empty() { 1.0 } else { weight };
        streams.insert(0, stream);
    }
    Ok(streams)
}

/// One stream's answer for one face.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamEstimate {
    pub name: String,
    pub expected_age: f32,
    pub sigma: f32,
    pub distribution: Vec<f32>,
}

/// Everything estimated about one face.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaceEstimate {
    pub score: f32,
    /// xmin, ymin, xmax, ymax in image pixels.
    pub bbox: [f32; 4],
    pub keypoints: [[f32; 2]; 6],
    /// The fused distribution over ages 0..=100.
    pub distribution: Vec<f32>,
    pub expected_age: f32,
    pub sigma: f32,
    /// The five most probable ages with their probabilities.
    pub top_ages: Vec<(usize, f32)>,
    pub streams: Vec<StreamEstimate>,
    /// How the chips were cut: from the five landmarks, or from the eyes alone and why.
    pub alignment: Alignment,
}

/// How a face's chips were cut.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Alignment {
    /// From the five landmarks (image pixels, in the order of [`align::TEMPLATE`]), as dlib
    /// cuts the chips the pretrained network was trained on.
    Landmarks { points: [[f32; 2]; 5] },
    /// From BlazeFace's eye centres alone, because the landmarks could not be found or trusted
    /// (`reason`): the estimate is less reliable.
    Eyes { reason: String },
}

impl Alignment {
    /// The landmarks, in image pixels, when they were used.
    pub fn points(&self) -> Option<[Point; 5]> {
        match self {
            Alignment::Landmarks { points } => {
                Some(points.map(|[x, y]| [f64::from(x), f64::from(y)]))
            }
            Alignment::Eyes { .. } => None,
        }
    }
}

/// The smallest face (side of its box, in pixels) whose landmarks are looked for.
pub const MIN_LANDMARK_FACE: f64 = 20.0;
/// Landmarks whose eye centres lie further than this (times the eye distance) from
/// BlazeFace's, or that fit dlib's template worse than [`MAX_TEMPLATE_RESIDUAL`], are not
/// trusted.
pub const MAX_EYE_DISAGREEMENT: f64 = 0.35;
/// The largest root-mean-square distance of the landmarks from dlib's template fitted to them,
/// relative to the template's eye distance.
pub const MAX_TEMPLATE_RESIDUAL: f64 = 0.12;
/// A nose tip further than this from the eyes' midline, along the eyes and relative to the
/// eye distance, is a face turned too far for the landmarks (in profile).
pub const MAX_NOSE_OFFSET: f64 = 0.6;

fn point(p: [f32; 2]) -> Point {
    [f64::from(p[0]), f64::from(p[1])]
}

fn distance(a: Point, b: Point) -> f64 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

/// The five landmarks of a detected face, or why they cannot be had or trusted: the face is
/// too small, cut by the image's border, in profile, or the landmarks found disagree with the
/// detector's eyes or with the shape of a face.
pub fn landmarks(
    image: &RgbImage,
    detection: &FaceDetection,
    predictor: &ShapePredictor,
) -> Result<[Point; 5], String> {
    if predictor.parts() != 5 {
        return Err(format!(
            "the landmark predictor finds {} points, not 5",
            predictor.parts()
        ));
    }
    let [right_eye, left_eye] = eyes(detection);
    let mouth = point(detection.keypoints[keypoint::MOUTH]);
    let nose = point(detection.keypoints[keypoint::NOSE_TIP]);
    let eye_distance = distance(right_eye, left_eye);
    let (Some(face), Some(upright)) = (
        FaceBox::from_keypoints(right_eye, left_eye, mouth, true),
        FaceBox::from_keypoints(right_eye, left_eye, mouth, false),
    ) else {
        return Err("the detector's eyes coincide".to_string());
    };
    if face.side().is_nan() || face.side() < MIN_LANDMARK_FACE {
        return Err(format!(
            "the face is {:.0} px, under {MIN_LANDMARK_FACE} px: too small for landmarks",
            face.side()
        ));
    }
    let (width, height) = (f64::from(image.width()), f64::from(image.height()));
    let [cx, cy] = face.centre;
    if !(0.0..width).contains(&cx) || !(0.0..height).contains(&cy) {
        return Err("the face's centre lies outside the image".to_string());
    }
    let along = [
        (left_eye[0] - right_eye[0]) / eye_distance,
        (left_eye[1] - right_eye[1]) / eye_distance,
    ];
    let mid = [
        (right_eye[0] + left_eye[0]) / 2.0,
        (right_eye[1] + left_eye[1]) / 2.0,
    ];
    let nose_offset = ((nose[0] - mid[0]) * along[0] + (nose[1] - mid[1]) * along[1]).abs();
    if nose_offset > MAX_NOSE_OFFSET * eye_distance {
        return Err("the face is turned too far to the side (in profile)".to_string());
    }
    // A flat or burnt-out region gives the trees nothing to read: they would return the mean
    // face wherever the box is.
    if region_spread(image, &face) < MIN_DETAIL {
        return Err("the face region has no detail (flat, dark or overexposed)".to_string());
    }
    let pixels = Pixels {
        rgb: image.as_raw(),
        width: image.width() as usize,
        height: image.height() as usize,
    };
    // The trees were trained on upright boxes of dlib's detector; a box turned by the face's
    // roll shows them an upright face. Either alone moves the landmarks by about a pixel as the
    // face turns; their mean is steadier (measured on the portraits turned by ±15° and ±30°
    // with PIL: the expected age moved by up to 2.3 years with the mean, 3.2 with the turned box
    // alone; `dldl/tests/landmarks.rs` holds 3).
    let turned = predictor.predict(pixels, &face);
    let found = if face.angle == 0.0 {
        turned
    } else {
        let straight = predictor.predict(pixels, &upright);
        turned
            .iter()
            .zip(&straight)
            .map(|(a, b)| [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0])
            .collect()
    };
    let points: [Point; 5] = std::array::from_fn(|i| found[i]);
    if !points.iter().flatten().all(|v| v.is_finite()) {
        return Err("the landmark predictor gave a number that is not finite".to_string());
    }
    // A margin of a quarter of the box: landmarks further out are guesses.
    let margin = face.side() / 4.0;
    if points.iter().any(|[x, y]| {
        *x < -margin || *y < -margin || *x > width - 1.0 + margin || *y > height - 1.0 + margin
    }) {
        return Err("the face is cut by the image's border".to_string());
    }
    // The template's corners 0, 1 are the subject's left eye, 2, 3 the right eye.
    let centre = |a: Point, b: Point| [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0];
    let (left, right) = (centre(points[0], points[1]), centre(points[2], points[3]));
    let disagreement = distance(left, left_eye).max(distance(right, right_eye)) / eye_distance;
    if disagreement > MAX_EYE_DISAGREEMENT {
        return Err(format!(
            "the landmarks' eyes lie {disagreement:.2} eye distances from the detector's: not \
             trusted"
        ));
    }
    let template = align::TEMPLATE;
    if let Some((m, t)) = crate::face::landmarks::similarity(&template, &points) {
        let scale = m[0][0].hypot(m[1][0]);
        let template_eyes = distance(
            centre(template[0], template[1]),
            centre(template[2], template[3]),
        ) * scale;
        let residual = (template
            .iter()
            .zip(&points)
            .map(|(p, q)| {
                let x = m[0][0] * p[0] + m[0][1] * p[1] + t[0];
                let y = m[1][0] * p[0] + m[1][1] * p[1] + t[1];
                (x - q[0]).powi(2) + (y - q[1]).powi(2)
            })
            .sum::<f64>()
            / 5.0)
            .sqrt()
            / template_eyes;
        if residual > MAX_TEMPLATE_RESIDUAL {
            return Err(format!(
                "the landmarks do not have the shape of a face (residual {residual:.2}): not \
                 trusted"
            ));
        }
    } else {
        return Err("the landmarks coincide".to_string());
    }
    Ok(points)
}

/// The least spread of intensities (standard deviation, levels) in a face's box for its
/// landmarks to be looked for.
pub const MIN_DETAIL: f64 = 2.0;

/// The standard deviation of the intensity `(r + g + b) / 3` over a 16 × 16 grid inside `face`.
fn region_spread(image: &RgbImage, face: &FaceBox) -> f64 {
    let (mut sum, mut squares, mut n) = (0.0, 0.0, 0.0);
    let (width, height) = (image.width() as i64, image.height() as i64);
    for gy in 0..16 {
        for gx in 0..16 {
            let x = face.centre[0] + (f64::from(gx) / 15.0 - 0.5) * face.size[0];
            let y = face.centre[1] + (f64::from(gy) / 15.0 - 0.5) * face.size[1];
            let (x, y) = (x.round() as i64, y.round() as i64);
            if x < 0 || y < 0 || x >= width || y >= height {
                continue;
            }
            let p = image.get_pixel(x as u32, y as u32).0;
            let v = (f64::from(p[0]) + f64::from(p[1]) + f64::from(p[2])) / 3.0;
            sum += v;
            squares += v * v;
            n += 1.0;
        }
    }
    if n < 2.0 {
        return 0.0;
    }
    let mean = sum / n;
    (squares / n - mean * mean).max(0.0).sqrt()
}

/// How to cut `detection`'s chips: from its landmarks when `predictor` finds trusted ones,
/// else from its eyes, saying why.
pub fn alignment(
    image: &RgbImage,
    detection: &FaceDetection,
    predictor: Option<&ShapePredictor>,
) -> Alignment {
    let Some(predictor) = predictor else {
        return Alignment::Eyes {
            reason: "no landmark predictor is loaded".to_string(),
        };
    };
    match landmarks(image, detection, predictor) {
        Ok(points) => Alignment::Landmarks {
            points: points.map(|p| p.map(|v| v as f32)),
        },
        Err(reason) => Alignment::Eyes { reason },
    }
}

/// The chip of side `size` for `detection` cut as `alignment` says.
pub fn aligned_chip(
    image: &RgbImage,
    detection: &FaceDetection,
    alignment: &Alignment,
    size: usize,
) -> RgbImage {
    match alignment.points() {
        Some(points) => align::align_landmarks(image, &points, size, align::CHIP_PADDING)
            .unwrap_or_else(|| chip(image, detection, size)),
        None => chip(image, detection, size),
    }
}

/// What finds faces and cuts their chips: the detector and the landmark predictor.
#[derive(Debug, Clone)]
pub struct FaceFinder {
    pub detector: BlazeFace,
    pub landmarks: ShapePredictor,
}

impl FaceFinder {
    /// The chip of side `size` for `detection`, and how it was cut.
    pub fn chip(
        &self,
        image: &RgbImage,
        detection: &FaceDetection,
        size: usize,
    ) -> (RgbImage, Alignment) {
        let how = alignment(image, detection, Some(&self.landmarks));
        (aligned_chip(image, detection, &how, size), how)
    }
}

/// The detector, the streams and how to fuse them.
#[derive(Debug)]
pub struct Estimator {
    pub detector: BlazeFace,
    /// dlib's five-point shape predictor; without it every face is aligned on its eyes.
    pub landmarks: Option<ShapePredictor>,
    pub streams: Vec<Stream>,
    pub fusion: FusionRule,
    /// Average each stream over the chip and its mirror image.
    pub flip: bool,
}

/// The subject's right and left eye centres of a detection, in image pixels.
pub fn eyes(detection: &FaceDetection) -> [Point; 2] {
    [keypoint::RIGHT_EYE, keypoint::LEFT_EYE].map(|k| {
        let [x, y] = detection.keypoints[k];
        [f64::from(x), f64::from(y)]
    })
}

/// The chip of side `size` for `detection` aligned on its eyes alone (the fallback).
pub fn chip(image: &RgbImage, detection: &FaceDetection, size: usize) -> RgbImage {
    align::align_face(image, eyes(detection), size, align::CHIP_PADDING)
        // Coinciding eyes cannot come out of the detector's decoding; a black chip is harmless.
        .unwrap_or_else(|| RgbImage::new(size as u32, size as u32))
}

impl Estimator {
    /// Detects the faces in `image` and estimates each one's age distribution.
    /// An empty list means no face was found.
    pub async fn estimate_async(
        &self,
        image: &RgbImage,
        device: &Device,
    ) -> Result<Vec<FaceEstimate>, DldlError> {
        let detections = self.detector.detect_async(image, device).await?;
        self.estimate_faces_async(image, &detections, device).await
    }

    /// [`Estimator::estimate_async`], blocking until done; never call it in a browser.
    pub fn estimate(
        &self,
        image: &RgbImage,
        device: &Device,
    ) -> Result<Vec<FaceEstimate>, DldlError> {
        futures_lite::future::block_on(self.estimate_async(image, device))
    }

    /// Estimates the ages of already detected faces.
    pub async fn estimate_faces_async(
        &self,
        image: &RgbImage,
        detections: &[FaceDetection],
        device: &Device,
    ) -> Result<Vec<FaceEstimate>, DldlError> {
        if detections.is_empty() {
            return Ok(Vec::new());
        }
        if self.streams.is_empty() {
            return Err(DldlError::NoStreams);
        }
        let alignments: Vec<Alignment> = detections
            .iter()
            .map(|d| alignment(image, d, self.landmarks.as_ref()))
            .collect();
        // per_stream[s][f] = stream s's distribution for face f.
        let mut per_stream = Vec::with_capacity(self.streams.len());
        for stream in &self.streams {
            let chips: Vec<RgbImage> = detections
                .iter()
                .zip(&alignments)
                .map(|(d, a)| aligned_chip(image, d, a, stream.input_size))
                .collect();
            per_stream.push(self.run_stream_async(stream, &chips, device).await?);
        }
        let weights: Vec<f32> = self.streams.iter().map(|s| s.weight).collect();
        detections
            .iter()
            .enumerate()
            .map(|(f, detection)| {
                let distributions: Vec<&[f32]> =
                    per_stream.iter().map(|d| d[f].as_slice()).collect();
                let fused = fuse(&distributions, &weights, self.fusion)?;
                let streams = self
                    .streams
                    .iter()
                    .zip(&distributions)
                    .map(|(stream, p)| {
                        Ok(StreamEstimate {
                            name: stream.name.clone(),
                            expected_age: expected_age(p)?,
                            sigma: std_dev(p)?,
                            distribution: p.to_vec(),
                        })
                    })
                    .collect::<Result<_, DldlError>>()?;
                Ok(FaceEstimate {
                    score: detection.score,
                    bbox: detection.bbox,
                    keypoints: detection.keypoints,
                    top_ages: top_ages(&fused.distribution, 5),
                    expected_age: fused.expected_age,
                    sigma: fused.sigma,
                    distribution: fused.distribution,
                    streams,
                    alignment: alignments[f].clone(),
                })
            })
            .collect()
    }

    /// [`Estimator::run_stream_async`], blocking until done; never call it in a browser.
    pub fn run_stream(
        &self,
        stream: &Stream,
        chips: &[RgbImage],
        device: &Device,
    ) -> Result<Vec<Vec<f32>>, DldlError> {
        futures_lite::future::block_on(self.run_stream_async(stream, chips, device))
    }

    /// One stream's distributions for `chips`, averaged with their mirror images when `flip`.
    pub async fn run_stream_async(
        &self,
        stream: &Stream,
        chips: &[RgbImage],
        device: &Device,
    ) -> Result<Vec<Vec<f32>>, DldlError> {
        let mut batch: Vec<RgbImage> = chips.to_vec();
        if self.flip {
            batch.extend(chips.iter().map(image::imageops::flip_horizontal));
        }
        let raw: Vec<&[u8]> = batch.iter().map(|c| c.as_raw().as_slice()).collect();
        let values = crate::read_async(stream.distributions(&raw, device)).await?;
        check_output(&stream.name, &values, batch.len())?;
        let rows: Vec<&[f32]> = values.chunks(AGE_BINS).collect();
        Ok((0..chips.len())
            .map(|i| {
                if self.flip {
                    rows[i]
                        .iter()
                        .zip(rows[i + chips.len()])
                        .map(|(a, b)| (a + b) / 2.0)
                        .collect()
                } else {
                    rows[i].to_vec()
                }
            })
            .collect())
    }
}

/// A stream's softmax output for `chips` chips: one finite distribution per chip, or the line
/// saying that the backend misbehaved (a driver bug can hand back NaN, ±∞ or short buffers).
fn check_output(stream: &str, values: &[f32], chips: usize) -> Result<(), DldlError> {
    if values.len() != chips * AGE_BINS {
        return Err(DldlError::Backend(format!(
            "the `{stream}` stream returned {} values for {chips} faces, not {}",
            values.len(),
            chips * AGE_BINS
        )));
    }
    if let Some(bad) = values.iter().find(|v| !v.is_finite() || **v < 0.0) {
        return Err(DldlError::Backend(format!(
            "the `{stream}` stream returned {bad} as a probability: the backend misbehaves \
             (on a GPU, try the CPU backend)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod output_tests {
    use super::*;

    #[test]
    fn a_backend_handing_back_nan_or_short_output_is_named() {
        let good = vec![1.0 / AGE_BINS as f32; 2 * AGE_BINS];
        assert!(check_output("pretrained", &good, 2).is_ok());
        let short = check_output("pretrained", &good[..AGE_BINS], 2).unwrap_err();
        assert!(
            short.to_string().contains("101 values for 2 faces"),
            "{short}"
        );
        for bad in [f32::NAN, f32::INFINITY, -0.5] {
            let mut values = good.clone();
            values[7] = bad;
            let error = check_output("tiny", &values, 2).unwrap_err().to_string();
            assert!(
                error.contains("`tiny`") && error.contains("backend"),
                "{error}"
            );
        }
    }
}
