//! From RGB pixels to the networks' input tensors.

use burn::tensor::{DType, Device, Int, Tensor, TensorCreationOptions, TensorData};
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

/// A batch of square interleaved RGB images of side `size`, stored back to back (`[batch, size,
/// size, 3]` bytes), as a `[batch, 3, size, size]` tensor normalised on the device.
///
/// The bytes go to the device as they are, 8-bit, where the device holds 8-bit integers (burn's
/// CPU backend, CUDA, Vulkan with `shaderInt8`), else as f32 (four times the bytes); the
/// channel reordering and the normalisation run on the device either way. Equal to
/// [`images_to_tensor`] on the same images.
///
/// # Panics
/// When `pixels` does not hold whole images of side `size`: callers build it at that size.
pub fn pixels_to_tensor(
    pixels: Vec<u8>,
    size: usize,
    normalization: &Normalization,
    device: &Device,
) -> Tensor<4> {
    let image = size * size * 3;
    assert!(
        image > 0 && pixels.len().is_multiple_of(image),
        "the pixels are not whole {size}×{size} RGB images"
    );
    let shape = [pixels.len() / image, size, size, 3];
    let hwc = if device.supports_dtype(DType::U8) {
        let options = TensorCreationOptions::new(device.clone()).with_dtype(DType::U8);
        Tensor::<4, Int>::from_data(TensorData::new(pixels, shape), options).float()
    } else {
        let values: Vec<f32> = pixels.into_iter().map(f32::from).collect();
        Tensor::<4>::from_data(TensorData::new(values, shape), device)
    };
    let per_channel = |v: [f32; 3]| Tensor::<1>::from_floats(v, device).reshape([1, 3, 1, 1]);
    let chw = hwc.permute([0, 3, 1, 2]) / 255.0;
    (chw - per_channel(normalization.mean)) / per_channel(normalization.std)
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

    #[test]
    fn pixels_normalised_on_the_device_equal_the_host_path() {
        let device = Device::flex();
        let size = 5;
        let images: Vec<Vec<u8>> = (0..3)
            .map(|i| {
                (0..size * size * 3)
                    .map(|j| ((j * 37 + i * 101) % 256) as u8)
                    .collect()
            })
            .collect();
        let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
        let host: Vec<f32> = images_to_tensor(&refs, size, &Normalization::IMAGENET, &device)
            .try_into_vec_as()
            .unwrap();
        let on_device = pixels_to_tensor(images.concat(), size, &Normalization::IMAGENET, &device);
        assert_eq!(on_device.dims(), [3, 3, size, size]);
        let on_device: Vec<f32> = on_device.try_into_vec_as().unwrap();
        assert_eq!(host.len(), on_device.len());
        for (h, d) in host.iter().zip(&on_device) {
            assert!((h - d).abs() < 1e-5, "{h} against {d}");
        }
    }
}
