//! One fixed computation through the face pipeline — the detector's input, its raw output and
//! decoded faces, the five landmarks, the aligned chip, each stream's input and distribution —
//! recorded so that two backends can be compared value by value.
//!
//! The native CPU backend's results on a public-domain portrait are kept in
//! `tests/fixtures/reference/conformance.json` (written and re-checked by
//! `dldl/tests/conformance.rs`); the browser's CPU and WebGPU backends must reproduce them
//! (`web/tests/browser.rs`, run by wasm-bindgen-test in headless Chromium).
//!
//! The streams are the pretrained network and the two DLDL-v2 networks the trainer exports for
//! the page (ThinAgeNet, TinyAgeNet) at 64 px. Those two get [`fixed_weights`], a deterministic
//! formula that every platform evaluates alike: they check the forward pass, not an estimate.
//! The streams that ship in `models/streams/` ([`SHIPPED`], trained on UTKFace) run with their
//! real weights, and the default pipeline's estimate (those streams fused, as the page runs them)
//! is recorded too. Every stream runs on the reference's chip when one is given, so a chip that differs by a
//! rounding step does not blur the comparison of the networks.
//!
//! Test support, not part of the shipped library: both tests include this file (`#[path]`).

use burn::{
    module::{Module, ModuleMapper, Param},
    tensor::{Device, Tensor, TensorData},
};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use dldl::{
    DldlError,
    distribution::expected_age,
    distribution::fusion::FusionRule,
    face::detector::{self, BlazeFace},
    face::landmarks::ShapePredictor,
    face::pipeline::{Alignment, Estimator, Stream, aligned_chip, alignment},
    networks::preprocess::{Normalization, images_to_tensor},
    networks::pretrained::{self, PretrainedAgeNet},
    networks::vgg::{AgeNet, AgeNetConfig, Architecture},
    read_async,
    weights::exported::{self, ExportedStream, StreamIndex},
};

/// The portrait, the model files and the recorded results, relative to the repository's root.
pub const PORTRAIT: &str = "tests/fixtures/portraits/astronaut.png";
pub const DETECTOR: &str = "models/blazeface/face_detection_short_range.onnx";
pub const AGE_NETWORK: &str = "models/age-v1.onnx";
pub const LANDMARKS: &str = "models/face_landmarks_5.bin";
pub const FIXTURE: &str = "tests/fixtures/reference/conformance.json";

/// The streams that ship in `models/streams/` (trained on UTKFace), in the index's order: their
/// real weights run here too, on the CPU backend and on WebGPU, beside the fixed-weight ones.
pub const SHIPPED: [&str; 2] = ["resnet-utkface", "tiny-utkface"];
/// The shipped streams' list.
pub const SHIPPED_INDEX: &str = "models/streams/index.json";

/// Side of every stream's chip here (the pretrained network's size; small enough for a
/// software GPU).
pub const CHIP_SIZE: usize = pretrained::CHIP_SIZE;
/// The DLDL networks checked besides the pretrained one.
pub const DLDL_STREAMS: [Architecture; 2] = [Architecture::ThinAgeNet, Architecture::TinyAgeNet];

/// The larger of two differences, where a NaN (a backend that produced NaN) counts as infinitely
/// large instead of being skipped as `f32::max` and `f64::max` skip it.
fn worst(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::INFINITY
    } else {
        a.max(b)
    }
}

/// A long vector summarised: its length, mean, mean absolute value and every `every`-th value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Values {
    pub len: usize,
    pub mean: f64,
    pub mean_abs: f64,
    pub every: usize,
    pub samples: Vec<f32>,
}

impl Values {
    pub fn of(values: &[f32], every: usize) -> Self {
        let n = values.len().max(1) as f64;
        Values {
            len: values.len(),
            mean: values.iter().map(|&v| f64::from(v)).sum::<f64>() / n,
            mean_abs: values.iter().map(|&v| f64::from(v).abs()).sum::<f64>() / n,
            every,
            samples: values.iter().step_by(every).copied().collect(),
        }
    }

    /// The largest difference from `reference`, relative to `1 + |reference|` for each sample
    /// (and for the two means); an error when the shapes differ.
    pub fn max_difference(&self, reference: &Values) -> Result<f64, String> {
        if self.len != reference.len
            || self.every != reference.every
            || self.samples.len() != reference.samples.len()
        {
            return Err(format!(
                "{} values (every {}th kept) against the reference's {} (every {}th)",
                self.len, self.every, reference.len, reference.every
            ));
        }
        let relative = |a: f64, b: f64| (a - b).abs() / (1.0 + b.abs());
        let samples = self
            .samples
            .iter()
            .zip(&reference.samples)
            .map(|(&a, &b)| relative(f64::from(a), f64::from(b)));
        Ok(samples
            .chain([
                relative(self.mean, reference.mean),
                relative(self.mean_abs, reference.mean_abs),
            ])
            .fold(0.0, worst))
    }
}

/// One detected face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub score: f32,
    pub bbox: [f32; 4],
    pub keypoints: [[f32; 2]; 6],
}

/// One stream's input and output on the chip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamResult {
    pub name: String,
    pub input: Values,
    pub distribution: Vec<f32>,
    pub expected_age: f32,
}

/// Everything recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// The letterboxed 128×128 detector input.
    pub detector_input: Values,
    /// The detector's 896 raw scores.
    pub scores: Values,
    /// The detector's 896 × 16 raw regressions.
    pub regressions: Values,
    pub detections: Vec<Detection>,
    /// The strongest face's five landmarks (image pixels); empty when they were not trusted.
    #[serde(default)]
    pub landmarks: Vec<[f32; 2]>,
    /// The strongest face's aligned 64×64 RGB chip.
    pub chip: Vec<u8>,
    pub streams: Vec<StreamResult>,
    /// The pipeline as the page runs it by default (the shipped streams fused by their weights,
    /// the published network by the index's weight for it): the strongest face's expected age.
    pub default_expected_age: f32,
    /// The rest of the pipeline as the page runs it by default on the faces found (alignment, the
    /// pretrained stream on the chip and its mirror image, fusion): the strongest face's
    /// expected age.
    pub pipeline_expected_age: f32,
}

/// How far another backend may be from the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    /// Detector input and stream inputs: relative difference (pure CPU arithmetic).
    pub input: f64,
    /// The detector's raw outputs: relative difference.
    pub raw: f64,
    /// Boxes and keypoints, in pixels.
    pub pixels: f32,
    /// Detection scores.
    pub score: f32,
    /// Chip pixels: the largest difference in levels, and the share of pixels that differ.
    pub chip_levels: u8,
    pub chip_share: f64,
    /// Each bin of each distribution.
    pub probability: f32,
    /// Each stream's expected age, in years.
    pub years: f32,
}

impl Tolerances {
    /// What the browser's backends are held to against the native CPU backend. Arithmetic
    /// order differs between x86 and WebAssembly SIMD and between CPU and GPU kernels; the
    /// image code's rounding may move a chip pixel by one level.
    pub const BROWSER: Tolerances = Tolerances {
        input: 1e-6,
        raw: 1e-3,
        pixels: 0.05,
        score: 1e-4,
        chip_levels: 1,
        chip_share: 0.01,
        probability: 1e-4,
        years: 0.01,
    };
}

/// The largest differences found by [`Results::compare`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Differences {
    pub detector_input: f64,
    pub scores: f64,
    pub regressions: f64,
    pub pixels: f32,
    pub score: f32,
    pub chip_levels: u8,
    pub chip_share: f64,
    pub stream_input: f64,
    pub probability: f32,
    pub years: f32,
    pub pipeline_years: f32,
}

impl Results {
    /// The largest differences from `reference`, and a line for each that exceeds `tolerances`.
    pub fn compare(
        &self,
        reference: &Results,
        tolerances: &Tolerances,
    ) -> (Differences, Vec<String>) {
        let mut d = Differences::default();
        let mut failures = Vec::new();
        let mut values = |what: &str, ours: &Values, theirs: &Values, limit: f64| -> f64 {
            match ours.max_difference(theirs) {
                Ok(difference) => {
                    if difference > limit {
                        failures.push(format!(
                            "{what}: differs by {difference:.3e} (relative), allowed {limit:.0e}"
                        ));
                    }
                    difference
                }
                Err(e) => {
                    failures.push(format!("{what}: {e}"));
                    f64::INFINITY
                }
            }
        };
        d.detector_input = values(
            "detector input",
            &self.detector_input,
            &reference.detector_input,
            tolerances.input,
        );
        d.scores = values(
            "raw scores",
            &self.scores,
            &reference.scores,
            tolerances.raw,
        );
        d.regressions = values(
            "raw regressions",
            &self.regressions,
            &reference.regressions,
            tolerances.raw,
        );
        for stream in &self.streams {
            if let Some(theirs) = reference.streams.iter().find(|s| s.name == stream.name) {
                let difference = values(
                    &format!("{}'s input", stream.name),
                    &stream.input,
                    &theirs.input,
                    tolerances.input,
                );
                d.stream_input = worst(d.stream_input, difference);
            }
        }

        if self.detections.len() != reference.detections.len() {
            failures.push(format!(
                "{} faces detected, the reference {}",
                self.detections.len(),
                reference.detections.len()
            ));
        }
        for (ours, theirs) in self.detections.iter().zip(&reference.detections) {
            let coordinates = ours.bbox.iter().zip(&theirs.bbox).chain(
                ours.keypoints
                    .iter()
                    .flatten()
                    .zip(theirs.keypoints.iter().flatten()),
            );
            for (a, b) in coordinates {
                d.pixels = worst(f64::from(d.pixels), f64::from((a - b).abs())) as f32;
            }
            d.score = worst(
                f64::from(d.score),
                f64::from((ours.score - theirs.score).abs()),
            ) as f32;
        }
        if self.landmarks.len() != reference.landmarks.len() {
            failures.push(format!(
                "{} landmarks found, the reference {}",
                self.landmarks.len(),
                reference.landmarks.len()
            ));
        }
        for (a, b) in self
            .landmarks
            .iter()
            .flatten()
            .zip(reference.landmarks.iter().flatten())
        {
            d.pixels = worst(f64::from(d.pixels), f64::from((a - b).abs())) as f32;
        }
        if d.pixels > tolerances.pixels {
            failures.push(format!(
                "face boxes, keypoints or landmarks differ by {:.3} px, allowed {}",
                d.pixels, tolerances.pixels
            ));
        }
        if d.score > tolerances.score {
            failures.push(format!(
                "face scores differ by {:.2e}, allowed {:.0e}",
                d.score, tolerances.score
            ));
        }

        if self.chip.len() == reference.chip.len() && !self.chip.is_empty() {
            let mut differing = 0usize;
            for (&a, &b) in self.chip.iter().zip(&reference.chip) {
                let difference = a.abs_diff(b);
                d.chip_levels = d.chip_levels.max(difference);
                differing += usize::from(difference > 0);
            }
            d.chip_share = differing as f64 / self.chip.len() as f64;
            if d.chip_levels > tolerances.chip_levels || d.chip_share > tolerances.chip_share {
                failures.push(format!(
                    "the chip differs by up to {} levels in {:.2} % of its values, allowed {} levels in {:.2} %",
                    d.chip_levels,
                    100.0 * d.chip_share,
                    tolerances.chip_levels,
                    100.0 * tolerances.chip_share
                ));
            }
        } else {
            failures.push(format!(
                "the chip has {} values, the reference's {}",
                self.chip.len(),
                reference.chip.len()
            ));
        }

        for theirs in &reference.streams {
            let Some(ours) = self.streams.iter().find(|s| s.name == theirs.name) else {
                failures.push(format!("the stream `{}` did not run", theirs.name));
                continue;
            };
            let probability = ours
                .distribution
                .iter()
                .zip(&theirs.distribution)
                .map(|(a, b)| f64::from((a - b).abs()))
                .fold(0.0, worst) as f32;
            let years = (ours.expected_age - theirs.expected_age).abs();
            d.probability = worst(f64::from(d.probability), f64::from(probability)) as f32;
            d.years = worst(f64::from(d.years), f64::from(years)) as f32;
            if ours.distribution.len() != theirs.distribution.len()
                || probability > tolerances.probability
                || years > tolerances.years
            {
                failures.push(format!(
                    "the stream `{}`: bins differ by up to {probability:.2e} (allowed {:.0e}), E[age] by {years:.4} years (allowed {})",
                    theirs.name, tolerances.probability, tolerances.years
                ));
            }
        }
        let default_years = (self.default_expected_age - reference.default_expected_age).abs();
        if default_years.is_nan() || default_years > tolerances.years {
            failures.push(format!(
                "the default pipeline's expected age is {:.4}, the reference's {:.4} (allowed ± {})",
                self.default_expected_age, reference.default_expected_age, tolerances.years
            ));
        }
        d.pipeline_years = (self.pipeline_expected_age - reference.pipeline_expected_age).abs();
        if d.pipeline_years.is_nan() || d.pipeline_years > tolerances.years {
            failures.push(format!(
                "the pipeline's expected age is {:.4}, the reference's {:.4} (allowed ± {})",
                self.pipeline_expected_age, reference.pipeline_expected_age, tolerances.years
            ));
        }
        (d, failures)
    }
}

/// Replaces every float parameter with a deterministic pattern of He-like scale (1-D
/// parameters — biases, batch-norm scales, offsets and statistics — get `1 ± 0.1`).
struct FixedWeights {
    tensors: usize,
}

impl ModuleMapper for FixedWeights {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let k = self.tensors as f64;
        self.tensors += 1;
        param.map(|t| {
            let dims = t.dims();
            let len: usize = dims.iter().product();
            // burn's Linear weight is [inputs, outputs]; a conv's is [outputs, inputs, kh, kw].
            let fan_in = match D {
                1 => 0,
                2 => dims[0],
                _ => dims[1..].iter().product(),
            };
            let values: Vec<f32> = (0..len)
                .map(|i| {
                    let wave = (0.618_034 * i as f64 + 1.7 * k).sin() * (0.37 * i as f64).cos();
                    if fan_in == 0 {
                        (1.0 + 0.1 * wave) as f32
                    } else if D == 2 {
                        // The head: large enough for a distribution with a clear peak.
                        (wave * 40.0 / (fan_in as f64).sqrt()) as f32
                    } else {
                        (wave * 2.0 * (2.0 / fan_in as f64).sqrt()) as f32
                    }
                })
                .collect();
            Tensor::from_data(TensorData::new(values, dims), &t.device())
        })
    }
}

/// `network` with [`FixedWeights`]: the same values on every platform and backend.
pub fn fixed_weights(network: AgeNet) -> AgeNet {
    network.map(&mut FixedWeights { tensors: 0 })
}

async fn stream(
    name: &str,
    chip: &[u8],
    normalization: &Normalization,
    device: &Device,
    forward: impl FnOnce(Tensor<4>) -> Tensor<2>,
) -> Result<StreamResult, DldlError> {
    let input = images_to_tensor(&[chip], CHIP_SIZE, normalization, device);
    let input_values = read_async(input.clone()).await?;
    let distribution = read_async(forward(input)).await?;
    Ok(StreamResult {
        name: name.to_string(),
        input: Values::of(&input_values, 7),
        expected_age: expected_age(&distribution)?,
        distribution,
    })
}

/// The shipped streams as the page gets them: each card and its weights' bytes, and the
/// published network's weight from their index.
#[derive(Debug, Clone)]
pub struct Shipped {
    pub streams: Vec<(ExportedStream, Vec<u8>)>,
    pub published_weight: f32,
}

impl Shipped {
    /// From the index's and the cards' text and the weights' bytes, in [`SHIPPED`]'s order.
    pub fn parse(index: &str, streams: &[(&str, &[u8])]) -> Result<Self, String> {
        let index: StreamIndex =
            serde_json::from_str(index).map_err(|e| format!("{SHIPPED_INDEX}: {e}"))?;
        let streams = streams
            .iter()
            .map(|(card, weights)| {
                serde_json::from_str::<ExportedStream>(card)
                    .map(|card| (card, weights.to_vec()))
                    .map_err(|e| format!("a shipped stream.json: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Shipped {
            streams,
            published_weight: index.published_weight(),
        })
    }
}

/// Runs the fixed computation on `device`. The streams run on `reference`'s chip when given,
/// else on the chip found here.
pub async fn run(
    image: &RgbImage,
    detector: &BlazeFace,
    landmarks: &ShapePredictor,
    age: &PretrainedAgeNet,
    shipped: &Shipped,
    reference: Option<&Results>,
    device: &Device,
) -> Result<Results, DldlError> {
    let (input, letterbox) = detector::input(image)?;
    let detector_input = Values::of(&input, 13);
    let (scores, regressions) = detector.raw_tensors(input, device);
    let scores = read_async(scores).await?;
    let regressions = read_async(regressions).await?;
    let faces = detector.decode(&scores, &regressions, &letterbox);
    let aligned = faces
        .first()
        .map(|face| (face, alignment(image, face, Some(landmarks))));
    let own_chip = aligned
        .as_ref()
        .map(|(face, how)| aligned_chip(image, face, how, CHIP_SIZE).into_raw())
        .unwrap_or_default();
    let found_landmarks = match aligned.map(|(_, how)| how) {
        Some(Alignment::Landmarks { points }) => points.to_vec(),
        _ => Vec::new(),
    };
    let stream_chip = match reference {
        Some(reference) => reference.chip.clone(),
        None => own_chip.clone(),
    };
    if stream_chip.len() != CHIP_SIZE * CHIP_SIZE * 3 {
        return Err(DldlError::Backend(
            "no face found in the conformance image".to_string(),
        ));
    }

    let mut streams = vec![
        stream(
            "pretrained",
            &stream_chip,
            &pretrained::NORMALIZATION,
            device,
            |x| age.distribution(x),
        )
        .await?,
    ];
    for architecture in DLDL_STREAMS {
        let config = AgeNetConfig::for_stream(architecture, CHIP_SIZE);
        let network = fixed_weights(config.init(device)?);
        streams.push(
            stream(
                architecture.name(),
                &stream_chip,
                &config.normalization,
                device,
                |x| network.distribution(x),
            )
            .await?,
        );
    }
    let mut defaults = Vec::new();
    if shipped.published_weight > 0.0 {
        let mut published = Stream::pretrained(age.clone());
        published.weight = shipped.published_weight;
        defaults.push(published);
    }
    for (card, weights) in &shipped.streams {
        let network = exported::load_stream(card, weights.clone(), device)?;
        let network = network.for_inference();
        if card.model.input_size != CHIP_SIZE {
            return Err(DldlError::Backend(format!(
                "the shipped stream `{}` reads {} px chips; the conformance check runs {CHIP_SIZE} px",
                card.name, card.model.input_size
            )));
        }
        streams.push(
            stream(
                &card.name,
                &stream_chip,
                &card.model.normalization,
                device,
                |x| network.distribution(x),
            )
            .await?,
        );
        defaults.push(Stream {
            name: card.name.clone(),
            network,
            input_size: card.model.input_size,
            normalization: card.model.normalization,
            weight: card.weight,
        });
    }
    let default_estimator = Estimator {
        detector: detector.clone(),
        landmarks: Some(landmarks.clone()),
        streams: defaults,
        fusion: FusionRule::Arithmetic,
        flip: true,
    };
    let default_expected_age = default_estimator
        .estimate_faces_async(image, &faces, device)
        .await?
        .first()
        .map_or(f32::NAN, |face| face.expected_age);
    let estimator = Estimator {
        detector: detector.clone(),
        landmarks: Some(landmarks.clone()),
        streams: vec![Stream::pretrained(age.clone())],
        fusion: FusionRule::Arithmetic,
        flip: true,
    };
    // The faces decoded above are the detector's; the pipeline takes them from there.
    let pipeline_expected_age = estimator
        .estimate_faces_async(image, &faces, device)
        .await?
        .first()
        .map_or(f32::NAN, |face| face.expected_age);
    Ok(Results {
        pipeline_expected_age,
        default_expected_age,
        detector_input,
        scores: Values::of(&scores, 1),
        regressions: Values::of(&regressions, 7),
        detections: faces
            .iter()
            .map(|f| Detection {
                score: f.score,
                bbox: f.bbox,
                keypoints: f.keypoints,
            })
            .collect(),
        landmarks: found_landmarks,
        chip: own_chip,
        streams,
    })
}
