//! A synthetic apparent-age data set whose images really encode their label.
//!
//! Each image is a drawn face whose traits change smoothly with the age μ it was drawn for:
//! - proportions: a child's face is rounder, its eyes larger and lower in the face (0–18);
//! - the nose lengthens and the ears grow over the whole life (0–100);
//! - the hair greys from 30 to 75 and the hairline recedes after 40;
//! - forehead lines, crow's feet and nasolabial folds deepen after 30.
//!
//! Nuisance factors are random: position, scale, rotation, skin, hair and background colours,
//! lighting and pixel noise. Every image gets its own σ, growing with age as the spread of human
//! guesses does in ChaLearn LAP. The whole set is a pure function of the seed.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

/// What `trainer synth` writes beside the CSVs, so that models trained on it say so in their card.
pub const DATASET_MANIFEST: &str = "dataset.json";

#[derive(Debug, Clone, Serialize)]
pub struct SynthConfig {
    pub train: usize,
    pub valid: usize,
    pub test: usize,
    pub image_size: u32,
    pub seed: u64,
}

/// One face's parameters; `age` is the label μ, everything else is nuisance.
#[derive(Debug, Clone)]
pub struct FaceParams {
    pub age: f32,
    pub sigma: f32,
    center: (f32, f32),
    scale: f32,
    rotation: f32,
    skin: [f32; 3],
    hair: [f32; 3],
    background: [[f32; 3]; 2],
    light: f32,
    noise: f32,
    noise_seed: u64,
}

fn smoothstep(edge0: f32, edge1: f32, x: f32) -> f32 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

fn lerp3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [0, 1, 2].map(|i| a[i] + (b[i] - a[i]) * t)
}

impl FaceParams {
    pub fn random(rng: &mut StdRng) -> Self {
        let age: f32 = rng.random_range(0.0..=100.0);
        // The spread of apparent-age guesses grows with age (ChaLearn LAP: ≈2 for children,
        // ≈6–8 for the elderly), with a per-image factor.
        let sigma = (1.0 + 0.06 * age) * rng.random_range(0.6..1.6f32);
        let skin_tone: f32 = rng.random_range(0.0..1.0);
        let skin = lerp3([0.96, 0.80, 0.69], [0.45, 0.30, 0.22], skin_tone);
        let hair = match rng.random_range(0..4) {
            0 => [0.10, 0.07, 0.05],
            1 => [0.35, 0.22, 0.12],
            2 => [0.75, 0.60, 0.35],
            _ => [0.50, 0.20, 0.08],
        };
        let bg = |rng: &mut StdRng| [0, 1, 2].map(|_| rng.random_range(0.1..0.9f32));
        Self {
            age,
            sigma,
            center: (rng.random_range(-0.08..0.08), rng.random_range(-0.08..0.08)),
            scale: rng.random_range(0.72..0.92),
            rotation: rng.random_range(-0.26..0.26), // ±15°
            skin,
            hair,
            background: [bg(rng), bg(rng)],
            light: rng.random_range(0.75..1.2),
            noise: rng.random_range(0.0..0.06),
            noise_seed: rng.random(),
        }
    }

    /// The colour of the face at canonical coordinates (x right, y down; the head spans about
    /// ±0.6 wide and ±0.8 high), or `None` outside the face and hair.
    fn shade(&self, x: f32, y: f32) -> Option<[f32; 3]> {
        let age = self.age;
        let growth = smoothstep(0.0, 18.0, age); // 0 for a newborn, 1 for an adult
        let grey = smoothstep(30.0, 75.0, age);
        let lines = smoothstep(30.0, 85.0, age);
        let recession = smoothstep(40.0, 90.0, age);

        let head_w = 0.62 - 0.06 * growth;
        let head_h = 0.66 + 0.14 * growth;
        let hair_color = lerp3(self.hair, [0.88, 0.88, 0.9], grey);

        // Ears, growing through life.
        let ear_r = 0.09 + 0.06 * (age / 100.0);
        for side in [-1.0f32, 1.0] {
            let (ex, ey) = (x - side * (head_w + 0.01), y - 0.02);
            if ex * ex + (ey * ey) / 1.8 < ear_r * ear_r {
                return Some(self.skin.map(|c| c * 0.9));
            }
        }

        let head = (x / head_w).powi(2) + (y / head_h).powi(2);
        let hair_outline = (x / (head_w + 0.06)).powi(2) + ((y + 0.04) / (head_h + 0.08)).powi(2);
        let hairline = -head_h * (0.55 - 0.45 * recession);
        if head > 1.0 {
            // Hair around the top of the head.
            return (hair_outline <= 1.0 && y < -0.1 * head_h).then_some(hair_color);
        }
        if y < hairline {
            return Some(hair_color);
        }

        let mut c = self.skin;
        let darken = |c: &mut [f32; 3], amount: f32| c.iter_mut().for_each(|v| *v *= 1.0 - amount);

        // Eyes: larger and lower in a child's face.
        let eye_y = head_h * (0.18 - 0.22 * growth);
        let eye_r = 0.12 - 0.04 * growth;
        let eye_dx = head_w * 0.42;
        for side in [-1.0f32, 1.0] {
            let (dx, dy) = (x - side * eye_dx, y - eye_y);
            let d = (dx * dx + 2.2 * dy * dy).sqrt();
            if d < eye_r {
                return Some(if d < eye_r * 0.45 {
                    [0.08, 0.06, 0.05]
                } else {
                    [0.95, 0.95, 0.95]
                });
            }
            // Crow's feet: short lines fanning out from the outer corner.
            let ox = x - side * (eye_dx + eye_r * 1.25);
            if ox * side > 0.0 && ox.abs() < 0.12 {
                for k in [-1.0f32, 0.0, 1.0] {
                    let line_y = eye_y + k * 0.5 * ox.abs() * 1.2;
                    if (y - line_y).abs() < 0.012 {
                        darken(&mut c, 0.45 * lines);
                    }
                }
            }
        }
        // Eyebrows, greying with the hair.
        let brow_y = eye_y - eye_r - 0.06;
        if (y - brow_y).abs() < 0.03 && (x.abs() - eye_dx).abs() < eye_r * 1.2 {
            return Some(hair_color);
        }
        // Forehead lines: more and deeper with age.
        let n_lines = (1.0 + 3.0 * lines).floor() as i32;
        for k in 0..n_lines {
            let line_y = brow_y - 0.09 - 0.07 * k as f32;
            if line_y > hairline + 0.03 && (y - line_y).abs() < 0.011 && x.abs() < head_w * 0.6 {
                darken(&mut c, 0.5 * lines);
            }
        }
        // Nose: lengthens through life.
        let nose_top = eye_y;
        let nose_len = 0.16 + 0.22 * (age / 100.0);
        let nose_y = nose_top + nose_len;
        if y > nose_top && y < nose_y && x.abs() < 0.025 + 0.06 * (y - nose_top) / nose_len {
            darken(&mut c, 0.12);
        }
        if (y - nose_y).abs() < 0.025 && x.abs() < 0.09 {
            darken(&mut c, 0.3);
        }
        // Mouth below the nose.
        let mouth_y = nose_y + 0.1 + 0.05 * growth;
        let mouth_w = 0.16 + 0.06 * growth;
        if (y - mouth_y).abs() < 0.025 && x.abs() < mouth_w {
            return Some([0.65, 0.25, 0.25].map(|v| v * (1.0 - 0.3 * grey)));
        }
        // Nasolabial folds from the nose wings to the mouth corners.
        for side in [-1.0f32, 1.0] {
            let t = (y - nose_y) / (mouth_y - nose_y);
            if (0.0..=1.2).contains(&t) {
                let fold_x = side * (0.1 + (mouth_w + 0.03 - 0.1) * t);
                if (x - fold_x).abs() < 0.012 {
                    darken(&mut c, 0.4 * smoothstep(35.0, 80.0, age));
                }
            }
        }
        Some(c)
    }

    /// Renders the face as interleaved RGB bytes, `size`×`size`, with 2×2 supersampling.
    pub fn render(&self, size: u32) -> Vec<u8> {
        let mut rng = StdRng::seed_from_u64(self.noise_seed);
        let (sin, cos) = self.rotation.sin_cos();
        let mut out = Vec::with_capacity((size * size * 3) as usize);
        for py in 0..size {
            for px in 0..size {
                let mut acc = [0.0f32; 3];
                for (sx, sy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                    // Pixel → image coordinates in [-1, 1] → canonical face coordinates.
                    let u = (px as f32 + sx) / size as f32 * 2.0 - 1.0 - self.center.0;
                    let v = (py as f32 + sy) / size as f32 * 2.0 - 1.0 - self.center.1;
                    let (u, v) = (u / self.scale, v / self.scale);
                    let (x, y) = (cos * u + sin * v, -sin * u + cos * v);
                    let t = (py as f32 + sy) / size as f32;
                    let colour = self
                        .shade(x, y)
                        .unwrap_or_else(|| lerp3(self.background[0], self.background[1], t));
                    acc.iter_mut().zip(colour).for_each(|(a, c)| *a += c / 4.0);
                }
                for a in acc {
                    let noisy = a * self.light + rng.random_range(-1.0..1.0f32) * self.noise;
                    out.push((noisy.clamp(0.0, 1.0) * 255.0).round() as u8);
                }
            }
        }
        out
    }
}

/// Writes `images/NNNNNN.png`, `train.csv`, `valid.csv`, `test.csv` (each `path,mean,std`)
/// and `dataset.json` under `out`.
pub fn write_dataset(out: &Path, config: &SynthConfig, progress: &ProgressBar) -> Result<()> {
    let images_dir = out.join("images");
    fs::create_dir_all(&images_dir)
        .with_context(|| format!("cannot create {}", images_dir.display()))?;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let total = config.train + config.valid + config.test;
    progress.set_length(total as u64);
    let mut index = 0;
    for (split, count) in [
        ("train", config.train),
        ("valid", config.valid),
        ("test", config.test),
    ] {
        let mut csv = String::from("path,mean,std\n");
        for _ in 0..count {
            index += 1;
            let face = FaceParams::random(&mut rng);
            let name = format!("images/{index:06}.png");
            let path: PathBuf = out.join(&name);
            let rgb = face.render(config.image_size);
            image::save_buffer(
                &path,
                &rgb,
                config.image_size,
                config.image_size,
                image::ExtendedColorType::Rgb8,
            )
            .with_context(|| format!("cannot write {}", path.display()))?;
            csv.push_str(&format!("{name},{:.2},{:.2}\n", face.age, face.sigma));
            progress.inc(1);
        }
        crate::files::write(&out.join(format!("{split}.csv")), csv.as_bytes())?;
    }
    let manifest = serde_json::json!({
        "kind": "synthetic",
        "generator": "trainer synth (drawn faces whose traits encode the age)",
        "config": config,
    });
    let mut bytes = serde_json::to_vec_pretty(&manifest)?;
    bytes.write_all(b"\n")?;
    crate::files::write(&out.join(DATASET_MANIFEST), &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_image() {
        let a = FaceParams::random(&mut StdRng::seed_from_u64(7)).render(32);
        let b = FaceParams::random(&mut StdRng::seed_from_u64(7)).render(32);
        assert_eq!(a, b);
        assert_eq!(a.len(), 32 * 32 * 3);
    }

    #[test]
    fn the_image_changes_with_age_alone() {
        // Same nuisance, different ages: the traits must show in the pixels.
        let mut face = FaceParams::random(&mut StdRng::seed_from_u64(3));
        face.noise = 0.0;
        let render = |age: f32, face: &mut FaceParams| {
            face.age = age;
            face.render(64)
        };
        let young = render(5.0, &mut face);
        let adult = render(35.0, &mut face);
        let old = render(85.0, &mut face);
        let diff = |a: &[u8], b: &[u8]| a.iter().zip(b).filter(|(x, y)| x != y).count();
        assert!(diff(&young, &adult) > 200, "child vs adult differ little");
        assert!(diff(&adult, &old) > 200, "adult vs elderly differ little");
    }
}
