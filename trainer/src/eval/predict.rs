//! `trainer predict`'s work on one photograph: its faces, each one's fused distribution and each
//! stream's, in words and as an annotated picture.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use dldl::{
    DldlError,
    burn::tensor::Device,
    face::pipeline::{Estimator, FaceEstimate},
};
use serde::Serialize;

use crate::{data, files, render::annotate};

/// One photograph's result.
#[derive(Debug, Serialize)]
pub struct ImageResult {
    pub image: PathBuf,
    pub width: u32,
    pub height: u32,
    pub faces: Vec<FaceEstimate>,
    /// Why the image could not be processed; `faces` is then empty.
    pub error: Option<String>,
    /// The annotated picture written for it.
    pub annotated: Option<PathBuf>,
}

/// Estimates the faces of one photograph, writing its annotated picture into `out`.
pub fn predict_image(
    estimator: &Estimator,
    path: &Path,
    out: Option<&Path>,
    device: &Device,
) -> ImageResult {
    let mut result = ImageResult {
        image: path.to_path_buf(),
        width: 0,
        height: 0,
        faces: Vec::new(),
        error: None,
        annotated: None,
    };
    let outcome = (|| -> Result<()> {
        let photo = data::images::decode_image(path)?.to_rgb8();
        (result.width, result.height) = photo.dimensions();
        result.faces = match estimator.estimate(&photo, device) {
            // Too small to hold a face is an answer about the image, not a failure.
            Err(DldlError::ImageTooSmall { .. }) => Vec::new(),
            other => other.with_context(|| format!("{}: estimation failed", path.display()))?,
        };
        if let Some(out) = out {
            let file = annotated_name(out, path);
            let picture = annotate::annotate(&photo, &result.faces)?;
            let mut png = Vec::new();
            picture
                .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .context("cannot encode the annotated picture")?;
            files::write(&file, &png)?;
            result.annotated = Some(file);
        }
        Ok(())
    })();
    if let Err(error) = outcome {
        result.error = Some(crate::progress::one_line(
            error.chain().map(|e| e.to_string()),
        ));
    }
    result
}

/// `OUT/<file name>.png`: the whole name, so `a.jpg` and `a.png` do not overwrite each other.
fn annotated_name(out: &Path, image: &Path) -> PathBuf {
    let name = image
        .file_name()
        .map_or_else(|| "image".into(), |n| n.to_string_lossy().into_owned());
    out.join(format!("{name}.png"))
}

/// The human-readable report of one image.
pub fn describe(result: &ImageResult) -> String {
    let image = result.image.display();
    if let Some(error) = &result.error {
        return format!("{image}: error: {error}\n");
    }
    if result.faces.is_empty() {
        return format!("{image}: no face found\n");
    }
    let mut text = format!(
        "{image}: {} face{}\n",
        result.faces.len(),
        if result.faces.len() == 1 { "" } else { "s" }
    );
    for (i, face) in result.faces.iter().enumerate() {
        let [x0, y0, x1, y1] = face.bbox;
        let top: Vec<String> = face
            .top_ages
            .iter()
            .map(|(age, p)| format!("{age} ({:.0}%)", p * 100.0))
            .collect();
        text += &format!(
            "  face {} at ({x0:.0}, {y0:.0})–({x1:.0}, {y1:.0}), detector score {:.2}: {:.1} ± {:.1} years; most likely {}\n",
            i + 1,
            face.score,
            face.expected_age,
            face.sigma,
            top.join(", ")
        );
        if let dldl::face::pipeline::Alignment::Eyes { reason } = &face.alignment {
            text += &format!("    aligned on the eyes alone, less reliable: {reason}\n");
        }
        for stream in &face.streams {
            text += &format!(
                "    {}: {:.1} ± {:.1}\n",
                stream.name, stream.expected_age, stream.sigma
            );
        }
    }
    if let Some(file) = &result.annotated {
        text += &format!("  annotated: {}\n", file.display());
    }
    text
}
