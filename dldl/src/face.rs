//! From a photograph to per-face age distributions: detect (BlazeFace), align each face onto
//! dlib's template, run every stream on its own chip (and on the chip's mirror image, averaged
//! in), and fuse the streams' distributions.
//!
//! The trainer and the browser demo both call this module, so they run the very same code.

use burn::tensor::{Device, Tensor};
use image::RgbImage;
use serde::Serialize;

use crate::{
    AGE_BINS, DldlError,
    align::{self, Point},
    blazeface::{BlazeFace, FaceDetection, keypoint},
    distribution::{expected_age, std_dev, top_ages},
    fusion::{FusionRule, fuse},
    model::AgeNet,
    preprocess::{Normalization, images_to_tensor},
    pretrained::{self, PretrainedAgeNet},
};

/// The network of one stream. (A handful exist at a time, so their sizes do not matter.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Network {
    /// The pretrained dlib age network on 64×64 chips.
    Pretrained(PretrainedAgeNet),
    /// A VGG-style DLDL stream trained by the trainer.
    Dldl(AgeNet),
}

/// One stream: a named network with its input size, normalisation and fusion weight.
#[derive(Debug)]
pub struct Stream {
    pub name: String,
    pub network: Network,
    pub input_size: usize,
    pub normalization: Normalization,
    pub weight: f32,
}

impl Stream {
    /// The pretrained stream, named `pretrained`, with weight 1.
    pub fn pretrained(network: PretrainedAgeNet) -> Self {
        Stream {
            name: "pretrained".to_string(),
            network: Network::Pretrained(network),
            input_size: pretrained::CHIP_SIZE,
            normalization: pretrained::NORMALIZATION,
            weight: 1.0,
        }
    }

    /// The `[batch, 101]` distributions of a batch of this stream's chips.
    pub fn distributions(&self, chips: &[&[u8]], device: &Device) -> Tensor<2> {
        let input = images_to_tensor(chips, self.input_size, &self.normalization, device);
        match &self.network {
            Network::Pretrained(net) => net.distribution(input),
            Network::Dldl(net) => net.distribution(input),
        }
    }
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
}

/// The detector, the streams and how to fuse them.
#[derive(Debug)]
pub struct Estimator {
    pub detector: BlazeFace,
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

/// The aligned chip of side `size` for `detection`.
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
        // per_stream[s][f] = stream s's distribution for face f.
        let mut per_stream = Vec::with_capacity(self.streams.len());
        for stream in &self.streams {
            let chips: Vec<RgbImage> = detections
                .iter()
                .map(|d| chip(image, d, stream.input_size))
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
