//! From RGB pixels to the networks' input tensors.

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Per-channel normalisation: x = (pixel / 255 − mean) / std.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    /// The ImageNet statistics VGG-style networks are usually trained with.
    pub const IMAGENET: Normalization = Normalization {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };

    /// Appends one interleaved RGB image (`width·height·3` bytes) to `out` in CHW order.
    pub fn push_chw(&self, rgb: &[u8], out: &mut Vec<f32>) {
        let pixels = rgb.len() / 3;
        for channel in 0..3 {
            let (mean, std) = (self.mean[channel], self.std[channel]);
            out.extend((0..pixels).map(|i| (f32::from(rgb[i * 3 + channel]) / 255.0 - mean) / std));
        }
    }
}

/// A batch of square interleaved RGB images of side `size` as a `[batch, 3, size, size]` tensor.
///
/// # Panics
/// When an image does not hold `size·size·3` bytes: callers resize before this point.
pub fn images_to_tensor(
    images: &[&[u8]],
    size: usize,
    normalization: &Normalization,
    device: &Device,
) -> Tensor<4> {
    let mut values = Vec::with_capacity(images.len() * 3 * size * size);
    for rgb in images {
        assert_eq!(rgb.len(), size * size * 3, "image is not {size}×{size} RGB");
        normalization.push_chw(rgb, &mut values);
    }
    Tensor::from_data(
        TensorData::new(values, [images.len(), 3, size, size]),
        device,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chw_order_and_normalisation() {
        // 1×2 image: red pixel then white pixel; identity-like normalisation.
        let norm = Normalization {
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        let mut out = Vec::new();
        norm.push_chw(&[255, 0, 0, 255, 255, 255], &mut out);
        assert_eq!(out, vec![1.0, 1.0, 0.0, 1.0, 0.0, 1.0]);

        let t = images_to_tensor(
            &[&[255u8; 12]],
            2,
            &Normalization::IMAGENET,
            &Device::flex(),
        );
        assert_eq!(t.dims(), [1, 3, 2, 2]);
        let v: Vec<f32> = t.try_into_vec_as().unwrap();
        assert!((v[0] - (1.0 - 0.485) / 0.229).abs() < 1e-6);
        assert!((v[11] - (1.0 - 0.406) / 0.225).abs() < 1e-6);
    }
}
