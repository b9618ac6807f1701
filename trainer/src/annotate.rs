//! The annotated picture `trainer predict --out` writes: the photograph with a box, keypoints and
//! the estimate over each face, and below it one chart per face: the fused distribution as bars,
//! ±σ shaded, the mean marked, and each stream's distribution as a curve over it.

use dldl::{AGE_BINS, face::pipeline::FaceEstimate};
use image::{Rgb, RgbImage, imageops::FilterType};

use crate::raster::{fill, line, rectangle, text, text_width};

const WIDTH: u32 = 800;
const CHART_HEIGHT: u32 = 230;
const MARGIN: u32 = 40;
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([20, 20, 20]);
const GREY: Rgb<u8> = Rgb([150, 150, 150]);
const BAND: Rgb<u8> = Rgb([222, 232, 245]);
const BARS: Rgb<u8> = Rgb([95, 130, 190]);
/// Face boxes, then stream curves, cycle through these.
const PALETTE: [Rgb<u8>; 6] = [
    Rgb([230, 60, 40]),
    Rgb([40, 170, 70]),
    Rgb([240, 160, 0]),
    Rgb([150, 60, 200]),
    Rgb([0, 160, 190]),
    Rgb([200, 40, 140]),
];

/// The annotated picture for one photograph and its faces.
pub fn annotate(photo: &RgbImage, faces: &[FaceEstimate]) -> RgbImage {
    let scale = WIDTH as f32 / photo.width() as f32;
    let photo_height = ((photo.height() as f32 * scale).round() as u32).max(1);
    let shown = image::imageops::resize(photo, WIDTH, photo_height, FilterType::Triangle);
    let charts = faces.len().max(1) as u32;
    let mut canvas = RgbImage::from_pixel(WIDTH, photo_height + charts * CHART_HEIGHT, WHITE);
    image::imageops::replace(&mut canvas, &shown, 0, 0);
    let thickness = 2 + WIDTH / 400;
    for (i, face) in faces.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let [x0, y0, x1, y1] = face.bbox.map(|v| (v * scale) as i64);
        for t in 0..i64::from(thickness) {
            rectangle(&mut canvas, x0 - t, y0 - t, x1 + t, y1 + t, colour);
        }
        for [x, y] in face.keypoints {
            fill(
                &mut canvas,
                (x * scale) as i64 - 2,
                (y * scale) as i64 - 2,
                5,
                5,
                colour,
            );
        }
        let label = format!("{}: {:.1}\u{b1}{:.1}", i + 1, face.expected_age, face.sigma);
        let label_y = (y0 - 22).max(0);
        fill(
            &mut canvas,
            x0,
            label_y,
            (text_width(&label, 2) + 6) as u32,
            20,
            colour,
        );
        text(&mut canvas, x0 + 3, label_y + 2, &label, 2, WHITE);
        chart(&mut canvas, photo_height + i as u32 * CHART_HEIGHT, i, face);
    }
    if faces.is_empty() {
        text(
            &mut canvas,
            20,
            i64::from(photo_height) + 20,
            "no face found",
            2,
            BLACK,
        );
    }
    canvas
}

fn chart(canvas: &mut RgbImage, top: u32, index: usize, face: &FaceEstimate) {
    let top = i64::from(top);
    let (left, right) = (i64::from(MARGIN), i64::from(WIDTH - 16));
    let (plot_top, plot_bottom) = (top + 40, top + i64::from(CHART_HEIGHT) - 30);
    let bin = (right - left) as f32 / AGE_BINS as f32;
    let x_of = |age: f32| left + ((age + 0.5) * bin) as i64;
    let peak = face
        .streams
        .iter()
        .flat_map(|s| s.distribution.iter())
        .chain(&face.distribution)
        .fold(1e-6f32, |m, &p| m.max(p));
    let y_of = |p: f32| plot_bottom - ((p / peak) * (plot_bottom - plot_top) as f32) as i64;
    let title = format!(
        "face {}: {:.1} \u{b1} {:.1} years (fused)",
        index + 1,
        face.expected_age,
        face.sigma
    );
    text(
        canvas,
        left,
        top + 8,
        &title,
        2,
        PALETTE[index % PALETTE.len()],
    );
    // ±σ band, bars, mean.
    let (low, high) = (
        face.expected_age - face.sigma,
        face.expected_age + face.sigma,
    );
    fill(
        canvas,
        x_of(low.max(0.0)),
        plot_top,
        (x_of(high.min(100.0)) - x_of(low.max(0.0))).max(1) as u32,
        (plot_bottom - plot_top) as u32,
        BAND,
    );
    for (age, &p) in face.distribution.iter().enumerate() {
        let x = left + (age as f32 * bin) as i64;
        let y = y_of(p);
        fill(
            canvas,
            x,
            y,
            (bin as u32).max(2) - 1,
            (plot_bottom - y).max(0) as u32,
            BARS,
        );
    }
    fill(
        canvas,
        x_of(face.expected_age),
        plot_top,
        2,
        (plot_bottom - plot_top) as u32,
        BLACK,
    );
    // Each stream's curve, and a legend.
    let mut legend_x = left + text_width(&title, 2) + 24;
    for (s, stream) in face.streams.iter().enumerate() {
        let colour = PALETTE[(s + 1) % PALETTE.len()];
        let points: Vec<(i64, i64)> = stream
            .distribution
            .iter()
            .enumerate()
            .map(|(age, &p)| (x_of(age as f32), y_of(p)))
            .collect();
        for pair in points.windows(2) {
            line(canvas, pair[0], pair[1], colour);
            line(
                canvas,
                (pair[0].0, pair[0].1 - 1),
                (pair[1].0, pair[1].1 - 1),
                colour,
            );
        }
        let label = format!("{} {:.1}", stream.name, stream.expected_age);
        fill(canvas, legend_x, top + 12, 14, 4, colour);
        text(canvas, legend_x + 18, top + 10, &label, 1, BLACK);
        legend_x += text_width(&label, 1) + 36;
    }
    // Axis with a label every ten years.
    fill(canvas, left, plot_bottom, (right - left) as u32, 1, GREY);
    for age in (0..=100).step_by(10) {
        let x = x_of(age as f32);
        fill(canvas, x, plot_bottom, 1, 5, GREY);
        let label = age.to_string();
        text(
            canvas,
            x - text_width(&label, 1) / 2,
            plot_bottom + 8,
            &label,
            1,
            BLACK,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dldl::face::pipeline::StreamEstimate;

    fn face() -> FaceEstimate {
        let distribution = dldl::distribution::label::label_distribution(30.0, 5.0).unwrap();
        FaceEstimate {
            score: 0.9,
            bbox: [10.0, 10.0, 60.0, 70.0],
            keypoints: [[20.0, 30.0]; 6],
            distribution: distribution.clone(),
            expected_age: 30.0,
            sigma: 5.0,
            top_ages: vec![(30, 0.08)],
            streams: vec![StreamEstimate {
                name: "pretrained".into(),
                expected_age: 30.0,
                sigma: 5.0,
                distribution,
            }],
            alignment: dldl::face::pipeline::Alignment::Eyes {
                reason: "a test face".into(),
            },
        }
    }

    #[test]
    fn draws_the_box_the_bars_and_the_curves() {
        let photo = RgbImage::from_pixel(100, 100, Rgb([128, 128, 128]));
        let canvas = annotate(&photo, &[face()]);
        assert_eq!(canvas.dimensions(), (WIDTH, WIDTH + CHART_HEIGHT));
        let count = |colour: Rgb<u8>| canvas.pixels().filter(|p| **p == colour).count();
        assert!(count(PALETTE[0]) > 1000, "box and label");
        assert!(count(BARS) > 500, "bars");
        assert!(count(PALETTE[1]) > 100, "the stream's curve");
    }

    #[test]
    fn says_when_there_is_no_face() {
        let photo = RgbImage::from_pixel(40, 20, Rgb([128, 128, 128]));
        let canvas = annotate(&photo, &[]);
        assert_eq!(canvas.height(), 400 + CHART_HEIGHT);
        assert!(canvas.pixels().any(|p| *p == BLACK));
    }
}
