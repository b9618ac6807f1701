//! Decoding images: upright as their EXIF orientation says, whatever their colour model, and
//! resized to a network's square input.

use std::path::Path;

use anyhow::{Context, Result, bail};
use image::imageops::FilterType;

/// Decodes an image file, turned upright as its EXIF orientation says.
pub fn decode_image(path: &Path) -> Result<image::DynamicImage> {
    let mut decoder = image::ImageReader::open(path)
        .with_context(|| format!("cannot open the image {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read the image {}", path.display()))?
        .into_decoder()
        .with_context(|| {
            format!(
                "{} is not an image in a format this build reads (PNG, JPEG)",
                path.display()
            )
        })?;
    let orientation = image::ImageDecoder::orientation(&mut decoder)
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = image::DynamicImage::from_decoder(decoder).with_context(|| {
        format!(
            "cannot decode the image {} (truncated or damaged?)",
            path.display()
        )
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
