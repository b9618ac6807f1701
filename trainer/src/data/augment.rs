//! Training-time augmentation as DLDL-v2 trains: horizontal flip, grayscale, random rescale,
//! rotation, random crop and colour jitter (brightness, contrast, saturation). The geometric
//! parts are one affine warp with bilinear sampling (edges replicated), so a chip is resampled
//! once whatever is switched on.

use rand::{Rng, rngs::StdRng};
use serde::{Deserialize, Serialize};

/// Which augmentations run, and how strongly. The default is a horizontal flip alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augmentation {
    /// Mirror left–right with probability ½.
    pub flip: bool,
    /// Probability of turning the image grey.
    pub grayscale: f32,
    /// Range of the random zoom factor; `[1, 1]` is off.
    pub scale: [f32; 2],
    /// Largest rotation in degrees, either way.
    pub rotation: f32,
    /// Side of the random crop as a fraction of the image (resized back to the input); 1 is off.
    pub crop: f32,
    /// Largest relative change of brightness, contrast and saturation.
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
}

impl Default for Augmentation {
    fn default() -> Self {
        Augmentation {
            flip: true,
            grayscale: 0.0,
            scale: [1.0, 1.0],
            rotation: 0.0,
            crop: 1.0,
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
        }
    }
}

impl Augmentation {
    /// DLDL-v2's augmentation: flip, 10 % grayscale, zoom 0.9–1.1, ±15°, a 90 % crop, ±20 %
    /// brightness, contrast and saturation. The default for distillation.
    pub fn dldl_v2() -> Self {
        Augmentation {
            flip: true,
            grayscale: 0.1,
            scale: [0.9, 1.1],
            rotation: 15.0,
            crop: 0.9,
            brightness: 0.2,
            contrast: 0.2,
            saturation: 0.2,
        }
    }

    /// No augmentation at all (validation and evaluation).
    pub fn none() -> Self {
        Augmentation {
            flip: false,
            ..Augmentation::default()
        }
    }

    /// Checks the ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let unit = |name: &str, v: f32| {
            (0.0..=1.0)
                .contains(&v)
                .then_some(())
                .ok_or(format!("augment.{name} = {v} must lie in 0..=1"))
        };
        unit("grayscale", self.grayscale)?;
        unit("brightness", self.brightness)?;
        unit("contrast", self.contrast)?;
        unit("saturation", self.saturation)?;
        if !(self.crop > 0.0 && self.crop <= 1.0) {
            return Err(format!("augment.crop = {} must lie in (0, 1]", self.crop));
        }
        let [a, b] = self.scale;
        if !(a > 0.0 && a <= b && b.is_finite()) {
            return Err(format!("augment.scale = [{a}, {b}] must be 0 < low ≤ high"));
        }
        if !(0.0..=180.0).contains(&self.rotation) {
            return Err(format!(
                "augment.rotation = {} must lie in 0..=180 degrees",
                self.rotation
            ));
        }
        Ok(())
    }

    /// A short description for the model card.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.flip {
            parts.push("horizontal flip".to_string());
        }
        if self.grayscale > 0.0 {
            parts.push(format!("grayscale p={}", self.grayscale));
        }
        if self.scale != [1.0, 1.0] {
            parts.push(format!("scale {}–{}", self.scale[0], self.scale[1]));
        }
        if self.rotation > 0.0 {
            parts.push(format!("rotation ±{}°", self.rotation));
        }
        if self.crop < 1.0 {
            parts.push(format!("random crop {}", self.crop));
        }
        for (name, v) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ] {
            if v > 0.0 {
                parts.push(format!("{name} ±{v}"));
            }
        }
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// Whether [`apply`](Self::apply) returns every image unchanged (and draws nothing).
    pub fn is_identity(&self) -> bool {
        !self.flip
            && !self.geometric()
            && self.grayscale == 0.0
            && [self.brightness, self.contrast, self.saturation] == [0.0; 3]
    }

    fn geometric(&self) -> bool {
        self.scale != [1.0, 1.0] || self.rotation > 0.0 || self.crop < 1.0
    }

    /// Augments one square interleaved RGB image of side `size`.
    pub fn apply(&self, rgb: &[u8], size: usize, rng: &mut StdRng) -> Vec<u8> {
        let mut out = if self.geometric() {
            let zoom = rng.random_range(self.scale[0]..=self.scale[1]);
            let angle = rng
                .random_range(-self.rotation..=self.rotation)
                .to_radians();
            // The source window the output shows, and where its centre lies.
            let window = size as f32 * self.crop / zoom;
            let slack = ((size as f32 - window) / 2.0).max(0.0);
            let shift = [
                rng.random_range(-slack..=slack),
                rng.random_range(-slack..=slack),
            ];
            warp(rgb, size, window / size as f32, angle, shift)
        } else {
            rgb.to_vec()
        };
        let gray = |p: &[f32]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
        let jitter = |rng: &mut StdRng, v: f32| {
            if v > 0.0 {
                rng.random_range(1.0 - v..=1.0 + v)
            } else {
                1.0
            }
        };
        let brightness = jitter(rng, self.brightness);
        let contrast = jitter(rng, self.contrast);
        let saturation = jitter(rng, self.saturation);
        let to_gray = self.grayscale > 0.0 && rng.random_bool(f64::from(self.grayscale));
        if brightness != 1.0 || contrast != 1.0 || saturation != 1.0 || to_gray {
            let mut pixels: Vec<f32> = out.iter().map(|&b| f32::from(b)).collect();
            let mean = pixels.chunks_exact(3).map(gray).sum::<f32>() / (size * size) as f32;
            for p in pixels.chunks_exact_mut(3) {
                for c in p.iter_mut() {
                    *c *= brightness;
                }
                for c in p.iter_mut() {
                    *c = (*c - mean * brightness) * contrast + mean * brightness;
                }
                let g = gray(p);
                let s = if to_gray { 0.0 } else { saturation };
                for c in p.iter_mut() {
                    *c = (*c - g) * s + g;
                }
            }
            out = pixels
                .iter()
                .map(|v| v.round().clamp(0.0, 255.0) as u8)
                .collect();
        }
        if self.flip && rng.random_bool(0.5) {
            out = mirror(&out, size);
        }
        out
    }
}

/// Resamples a square image: output pixel p shows the source at
/// centre + shift + R(angle)·(p − centre)·scale.
fn warp(rgb: &[u8], size: usize, scale: f32, angle: f32, shift: [f32; 2]) -> Vec<u8> {
    let centre = (size as f32 - 1.0) / 2.0;
    let (sin, cos) = angle.sin_cos();
    let last = size as f32 - 1.0;
    let at = |x: usize, y: usize, c: usize| f32::from(rgb[(y * size + x) * 3 + c]);
    let mut out = Vec::with_capacity(rgb.len());
    for v in 0..size {
        for u in 0..size {
            let (dx, dy) = ((u as f32 - centre) * scale, (v as f32 - centre) * scale);
            let sx = (centre + shift[0] + cos * dx - sin * dy).clamp(0.0, last);
            let sy = (centre + shift[1] + sin * dx + cos * dy).clamp(0.0, last);
            let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(size - 1), (y0 + 1).min(size - 1));
            let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
            for c in 0..3 {
                let top = at(x0, y0, c) * (1.0 - fx) + at(x1, y0, c) * fx;
                let bottom = at(x0, y1, c) * (1.0 - fx) + at(x1, y1, c) * fx;
                out.push((top * (1.0 - fy) + bottom * fy).round() as u8);
            }
        }
    }
    out
}

/// Mirrors a square interleaved RGB image left–right.
pub fn mirror(rgb: &[u8], size: usize) -> Vec<u8> {
    let side = size as u32;
    let image = image::RgbImage::from_raw(side, side, rgb.to_vec())
        .expect("a square RGB image of the stated size");
    image::imageops::flip_horizontal(&image).into_raw()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn gradient(size: usize) -> Vec<u8> {
        (0..size * size)
            .flat_map(|i| {
                let (x, y) = (i % size, i / size);
                [
                    (x * 255 / (size - 1)) as u8,
                    (y * 255 / (size - 1)) as u8,
                    128,
                ]
            })
            .collect()
    }

    #[test]
    fn identity_settings_change_nothing() {
        let image = gradient(16);
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(Augmentation::none().apply(&image, 16, &mut rng), image);
        // A warp with no rotation, zoom or shift reproduces the image exactly.
        assert_eq!(warp(&image, 16, 1.0, 0.0, [0.0, 0.0]), image);
    }

    #[test]
    fn rotation_by_a_right_angle_turns_the_gradient() {
        let image = gradient(9);
        let turned = warp(&image, 9, 1.0, std::f32::consts::FRAC_PI_2, [0.0, 0.0]);
        // Output (u, v) shows source (x, y) = (8 − v, u): red now falls from top to bottom and
        // green grows from left to right.
        for v in 0..9 {
            for u in 0..9 {
                let source = (u * 9 + (8 - v)) * 3;
                assert_eq!(turned[(v * 9 + u) * 3], image[source]);
                assert_eq!(turned[(v * 9 + u) * 3 + 1], image[source + 1]);
            }
        }
        assert!(turned[0] > turned[8 * 9 * 3]);
    }

    #[test]
    fn grayscale_removes_colour_and_jitter_stays_in_range() {
        let image = gradient(12);
        let gray = Augmentation {
            flip: false,
            grayscale: 1.0,
            ..Augmentation::default()
        };
        let out = gray.apply(&image, 12, &mut StdRng::seed_from_u64(2));
        assert!(out.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]));
        let all = Augmentation {
            flip: true,
            grayscale: 0.2,
            scale: [0.8, 1.2],
            rotation: 15.0,
            crop: 0.9,
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
        };
        all.validate().unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let outputs: Vec<Vec<u8>> = (0..4).map(|_| all.apply(&image, 12, &mut rng)).collect();
        assert!(outputs.iter().all(|o| o.len() == image.len()));
        assert!(
            outputs.windows(2).all(|w| w[0] != w[1]),
            "each draw differs"
        );
        // Same seed, same result: augmentation is reproducible on resume.
        let again = all.apply(&image, 12, &mut StdRng::seed_from_u64(3));
        assert_eq!(again, outputs[0]);
    }

    #[test]
    fn bad_ranges_name_the_key() {
        let bad = Augmentation {
            crop: 1.5,
            ..Augmentation::default()
        };
        assert!(bad.validate().unwrap_err().contains("augment.crop"));
        let bad = Augmentation {
            scale: [1.2, 0.8],
            ..Augmentation::default()
        };
        assert!(bad.validate().unwrap_err().contains("augment.scale"));
    }

    #[test]
    fn mirror_reverses_pixels_in_each_row() {
        let rgb = [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4];
        assert_eq!(mirror(&rgb, 2), vec![2, 2, 2, 1, 1, 1, 4, 4, 4, 3, 3, 3]);
    }
}
