//! Decoding images: upright as their EXIF orientation says, whatever their colour model, and
//! resized to a network's square input.

use std::path::Path;

use anyhow::{Context, Result, bail};
use image::imageops::FilterType;

/// The largest width or height decoded: larger images are refused before any pixel is read.
pub const MAX_SIDE: u32 = 16_384;
/// The most memory an image's pixels may take once decoded (1 GiB: 16 384 × 16 384 RGBA).
pub const MAX_BYTES: u64 = 1 << 30;

/// Decodes an image file, turned upright as its EXIF orientation says, within [`MAX_SIDE`] and
/// [`MAX_BYTES`]: a file that declares more is an error for that file alone, whatever it holds.
pub fn decode_image(path: &Path) -> Result<image::DynamicImage> {
    let mut reader = image::ImageReader::open(path)
        .with_context(|| format!("cannot open the image {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read the image {}", path.display()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_BYTES);
    reader.limits(limits);
    let over_limits = |error: &image::ImageError| {
        matches!(error, image::ImageError::Limits(_)).then(|| {
            anyhow::anyhow!(
                "{} is over the decoding limits ({MAX_SIDE} pixels a side, {} MiB decoded): \
                 {error}; scale it down first",
                path.display(),
                MAX_BYTES >> 20
            )
        })
    };
    let mut decoder = reader.into_decoder().map_err(|error| {
        over_limits(&error).unwrap_or_else(|| {
            anyhow::anyhow!(
                "{} is not an image in a format this build reads (PNG, JPEG): {error}",
                path.display()
            )
        })
    })?;
    let (width, height) = image::ImageDecoder::dimensions(&decoder);
    let bytes = image::ImageDecoder::total_bytes(&decoder);
    if width > MAX_SIDE || height > MAX_SIDE || bytes > MAX_BYTES {
        bail!(
            "{} declares {width}×{height} pixels ({} MiB decoded), over the decoding limits \
             ({MAX_SIDE} pixels a side, {} MiB); scale it down first",
            path.display(),
            bytes >> 20,
            MAX_BYTES >> 20
        );
    }
    let orientation = image::ImageDecoder::orientation(&mut decoder)
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = image::DynamicImage::from_decoder(decoder).map_err(|error| {
        over_limits(&error).unwrap_or_else(|| {
            anyhow::anyhow!(
                "cannot decode the image {} (truncated or damaged?): {error}",
                path.display()
            )
        })
    })?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Decodes an image, crops its centre square and resizes it to `size`×`size` RGB.
pub fn load_image(path: &Path, size: u32) -> Result<Vec<u8>> {
    let image = decode_image(path)?;
    square_resize(&image, size)
        .map(image::RgbImage::into_raw)
        .with_context(|| path.display().to_string())
}

/// The centre square of `image`, resized to `size`×`size` RGB.
pub fn square_resize(image: &image::DynamicImage, size: u32) -> Result<image::RgbImage> {
    let side = image.width().min(image.height());
    if side == 0 {
        bail!("the image is empty");
    }
    let square = image.crop_imm(
        (image.width() - side) / 2,
        (image.height() - side) / 2,
        side,
        side,
    );
    Ok(square
        .resize_exact(size, size, FilterType::Triangle)
        .to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid PNG header that declares `width`×`height` pixels and holds no pixel data.
    fn declared_png(width: u32, height: u32) -> Vec<u8> {
        let mut chunk = b"IHDR".to_vec();
        chunk.extend(width.to_be_bytes());
        chunk.extend(height.to_be_bytes());
        chunk.extend([8, 2, 0, 0, 0]); // 8-bit RGB
        let crc = {
            let mut crc = !0u32;
            for &byte in &chunk {
                crc ^= u32::from(byte);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ 0xEDB8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        };
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(13u32.to_be_bytes());
        png.extend(&chunk);
        png.extend(crc.to_be_bytes());
        png
    }

    #[test]
    fn an_image_declaring_too_many_pixels_is_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let huge = dir.path().join("huge.png");
        std::fs::write(&huge, declared_png(100_000, 100_000)).unwrap();
        let message = format!("{:#}", decode_image(&huge).unwrap_err());
        assert!(
            message.contains("huge.png") && message.contains("limit"),
            "{message}"
        );
        let wide = dir.path().join("wide.png");
        std::fs::write(&wide, declared_png(MAX_SIDE + 1, 1)).unwrap();
        assert!(decode_image(&wide).is_err());
    }
}
