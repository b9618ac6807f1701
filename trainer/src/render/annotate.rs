//! The annotated picture `trainer predict --out` writes: the photograph with a box, keypoints and
//! the estimate over each face, and below it one chart per face: the fused distribution as bars,
//! ±σ shaded, the mean marked, and each stream's distribution as a curve over it.

use anyhow::Result;
use dldl::{AGE_BINS, face::pipeline::FaceEstimate};
use image::{Rgb, RgbImage, imageops::FilterType};
use plotters::{coord::Shift, prelude::*};

use crate::render::{FONT, GRID, INK, drawn, whole_tick};

const WIDTH: u32 = 800;
const CHART_HEIGHT: u32 = 250;
const BAND: RGBColor = RGBColor(222, 232, 245);
const BARS: RGBColor = RGBColor(95, 130, 190);
/// Face boxes, then stream curves, cycle through these.
const PALETTE: [RGBColor; 6] = [
    RGBColor(230, 60, 40),
    RGBColor(40, 170, 70),
    RGBColor(240, 160, 0),
    RGBColor(150, 60, 200),
    RGBColor(0, 160, 190),
    RGBColor(200, 40, 140),
];

/// The annotated picture for one photograph and its faces.
pub fn annotate(photo: &RgbImage, faces: &[FaceEstimate]) -> Result<RgbImage> {
    let scale = WIDTH as f32 / photo.width() as f32;
    let photo_height = ((photo.height() as f32 * scale).round() as u32).max(1);
    let shown = image::imageops::resize(photo, WIDTH, photo_height, FilterType::Triangle);
    let charts = faces.len().max(1) as u32;
    let mut canvas =
        RgbImage::from_pixel(WIDTH, photo_height + charts * CHART_HEIGHT, Rgb([255; 3]));
    image::imageops::replace(&mut canvas, &shown, 0, 0);
    crate::render::bitmap_over(canvas, |root| {
        let (picture, below) = root.split_vertically(photo_height);
        let thickness = 2 + WIDTH / 400;
        let label_font: TextStyle = (FONT, 18).into_font().into();
        for (i, face) in faces.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let [x0, y0, x1, y1] = face.bbox.map(|v| (v * scale) as i32);
            drawn(picture.draw(&Rectangle::new(
                [(x0, y0), (x1, y1)],
                colour.stroke_width(thickness),
            )))?;
            for [x, y] in face.keypoints {
                drawn(picture.draw(&Circle::new(
                    ((x * scale) as i32, (y * scale) as i32),
                    3,
                    colour.filled(),
                )))?;
            }
            let label = format!("{}: {:.1} ± {:.1}", i + 1, face.expected_age, face.sigma);
            let (w, h) = picture
                .estimate_text_size(&label, &label_font)
                .map_err(|e| anyhow::anyhow!("cannot draw the chart: {e}"))?;
            let (w, h) = (w as i32, h as i32);
            let label_y = (y0 - h - 8).max(0);
            drawn(picture.draw(&Rectangle::new(
                [(x0, label_y), (x0 + w + 10, label_y + h + 8)],
                colour.filled(),
            )))?;
            drawn(picture.draw(&Text::new(
                label,
                (x0 + 5, label_y + 4),
                label_font.color(&WHITE),
            )))?;
        }
        if faces.is_empty() {
            drawn(below.draw(&Text::new(
                "no face found",
                (20, 20),
                (FONT, 22).into_font().color(&INK),
            )))?;
        }
        for (i, (area, face)) in below
            .split_evenly((charts as usize, 1))
            .iter()
            .zip(faces)
            .enumerate()
        {
            chart(area, i, face)?;
        }
        Ok(())
    })
}

fn chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    index: usize,
    face: &FaceEstimate,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let peak = face
        .streams
        .iter()
        .flat_map(|s| s.distribution.iter())
        .chain(&face.distribution)
        .fold(1e-6f32, |m, &p| m.max(p));
    let top = f64::from(peak) * 1.12;
    let title = format!(
        "face {}: {:.1} ± {:.1} years (fused)",
        index + 1,
        face.expected_age,
        face.sigma
    );
    let mut plot = ChartBuilder::on(area)
        .caption(
            title,
            (FONT, 18)
                .into_font()
                .color(&PALETTE[index % PALETTE.len()]),
        )
        .margin_left(16)
        .margin_right(16)
        .margin_top(6)
        .x_label_area_size(40)
        .build_cartesian_2d(0.0..AGE_BINS as f64, 0.0..top)
        .map_err(|e| anyhow::anyhow!("cannot draw the chart: {e}"))?;
    drawn(
        plot.configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_labels(11)
            .x_label_formatter(&whole_tick)
            .x_desc("age (years)")
            .axis_desc_style((FONT, 14).into_font().color(&INK))
            .label_style((FONT, 13).into_font().color(&INK))
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .draw(),
    )?;
    // ±σ band, bars, mean.
    let mean = f64::from(face.expected_age) + 0.5;
    let sigma = f64::from(face.sigma);
    drawn(
        plot.draw_series([Rectangle::new(
            [
                ((mean - sigma).max(0.0), 0.0),
                ((mean + sigma).min(AGE_BINS as f64), top),
            ],
            BAND.filled(),
        )])
        .map(|s| {
            s.label("± σ")
                .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], BAND.filled()));
        }),
    )?;
    drawn(
        plot.draw_series(face.distribution.iter().enumerate().map(|(age, &p)| {
            Rectangle::new(
                [(age as f64 + 0.1, 0.0), (age as f64 + 0.9, f64::from(p))],
                BARS.filled(),
            )
        }))
        .map(|s| {
            s.label("fused")
                .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], BARS.filled()));
        }),
    )?;
    drawn(
        plot.draw_series(LineSeries::new(
            [(mean, 0.0), (mean, top)],
            INK.stroke_width(2),
        ))
        .map(|s| {
            s.label("expected age")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], INK.stroke_width(2)));
        }),
    )?;
    // Each stream's curve, with its own estimate in the legend.
    for (s, stream) in face.streams.iter().enumerate() {
        let colour = PALETTE[(s + 1) % PALETTE.len()];
        drawn(
            plot.draw_series(LineSeries::new(
                stream
                    .distribution
                    .iter()
                    .enumerate()
                    .map(|(age, &p)| (age as f64 + 0.5, f64::from(p))),
                colour.stroke_width(2),
            ))
            .map(|series| {
                series
                    .label(format!("{} {:.1}", stream.name, stream.expected_age))
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2))
                    });
            }),
        )?;
    }
    drawn(
        plot.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 13).into_font().color(&INK))
            .background_style(WHITE.mix(0.9))
            .border_style(GRID)
            .draw(),
    )
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
        let canvas = annotate(&photo, &[face()]).unwrap();
        assert_eq!(canvas.dimensions(), (WIDTH, WIDTH + CHART_HEIGHT));
        let count = |c: RGBColor| {
            let c = Rgb([c.0, c.1, c.2]);
            canvas.pixels().filter(|p| **p == c).count()
        };
        assert!(count(PALETTE[0]) > 1000, "box and label");
        assert!(count(BARS) > 500, "bars");
        assert!(count(PALETTE[1]) > 100, "the stream's curve");
    }

    #[test]
    fn says_when_there_is_no_face() {
        let photo = RgbImage::from_pixel(40, 20, Rgb([128, 128, 128]));
        let canvas = annotate(&photo, &[]).unwrap();
        assert_eq!(canvas.height(), 400 + CHART_HEIGHT);
        let ink = Rgb([INK.0, INK.1, INK.2]);
        assert!(canvas.pixels().any(|p| *p == ink));
    }
}
