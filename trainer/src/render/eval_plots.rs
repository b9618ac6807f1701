//! The picture `trainer eval --plots` writes: predicted against true age, the error by true age,
//! and σ calibration (is the predicted spread as large as the errors?), side by side; PNG, or SVG
//! when the file name ends in `.svg`.

use std::path::Path;

use anyhow::Result;
use dldl::distribution::std_dev;
use image::RgbImage;
use plotters::{coord::Shift, prelude::*};

use crate::render::{BLUE, RED, axes, drawn, legend, tick};

/// The side of each square panel, in pixels.
const PANEL: u32 = 480;
const POINTS: RGBColor = BLUE;
const IDEAL: RGBColor = RED;
const BARS: RGBColor = RGBColor(95, 130, 190);

/// The three panels' data.
struct Panels {
    scatter: Vec<(f64, f64)>,
    /// Per 5-year bin of true age: its first age and its mean absolute error.
    bins: Vec<(f64, f64)>,
    /// Images grouped by predicted σ: each group's mean σ and RMS error.
    calibration: Vec<(f64, f64)>,
}

impl Panels {
    fn new(mu: &[f32], predicted: &[f32], distributions: &[Vec<f32>]) -> Self {
        let scatter = mu
            .iter()
            .zip(predicted)
            .map(|(&m, &p)| (f64::from(m), f64::from(p)))
            .collect();
        let mut sums = [(0usize, 0.0f64); 21];
        for (&m, &p) in mu.iter().zip(predicted) {
            let b = ((m / 5.0) as usize).min(20);
            sums[b].0 += 1;
            sums[b].1 += f64::from((p - m).abs());
        }
        let bins = sums
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| *n > 0)
            .map(|(b, (n, e))| (b as f64 * 5.0, e / *n as f64))
            .collect();
        let mut pairs: Vec<(f64, f64)> = distributions
            .iter()
            .zip(mu.iter().zip(predicted))
            .filter_map(|(p, (&m, &e))| Some((f64::from(std_dev(p).ok()?), f64::from(e - m))))
            .collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let groups = pairs.len().clamp(1, 10);
        let calibration = pairs
            .chunks(pairs.len().div_ceil(groups).max(1))
            .map(|chunk| {
                let n = chunk.len() as f64;
                let sigma = chunk.iter().map(|c| c.0).sum::<f64>() / n;
                let rms = (chunk.iter().map(|c| c.1 * c.1).sum::<f64>() / n).sqrt();
                (sigma, rms)
            })
            .collect();
        Panels {
            scatter,
            bins,
            calibration,
        }
    }
}

fn plot<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &Panels) -> Result<()>
where
    DB::ErrorType: 'static,
{
    drawn(root.fill(&WHITE))?;
    let areas = root.split_evenly((1, 3));

    // Predicted against true age, with the diagonal.
    let mut scatter = axes(
        &areas[0],
        "Predicted against true age",
        0.0..100.0,
        0.0..100.0,
        ("true age (years)", "predicted age (years)"),
        tick,
    )?;
    drawn(
        scatter
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (100.0, 100.0)],
                IDEAL.stroke_width(2),
            ))
            .map(|s| {
                s.label("prediction = truth").legend(|(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], IDEAL.stroke_width(2))
                });
            }),
    )?;
    drawn(
        scatter
            .draw_series(
                data.scatter
                    .iter()
                    .map(|&p| Circle::new(p, 2, POINTS.filled())),
            )
            .map(|s| {
                s.label("one image")
                    .legend(|(x, y)| Circle::new((x + 10, y), 3, POINTS.filled()));
            }),
    )?;
    legend(&mut scatter, SeriesLabelPosition::UpperLeft)?;

    // Mean absolute error per 5-year bin of true age.
    let worst = data.bins.iter().map(|b| b.1).fold(1.0f64, f64::max);
    let mut bars = axes(
        &areas[1],
        "Error by true age",
        0.0..105.0,
        0.0..worst * 1.1,
        (
            "true age (years, 5-year bins)",
            "mean absolute error (years)",
        ),
        tick,
    )?;
    drawn(
        bars.draw_series(data.bins.iter().map(|&(age, mae)| {
            Rectangle::new([(age + 0.5, 0.0), (age + 4.5, mae)], BARS.filled())
        }))
        .map(|_| ()),
    )?;

    // σ calibration: the groups' RMS error against their mean σ.
    let top = data
        .calibration
        .iter()
        .flat_map(|&(s, r)| [s, r])
        .fold(1.0f64, f64::max)
        * 1.1;
    let mut calibration = axes(
        &areas[2],
        "Spread against error",
        0.0..top,
        0.0..top,
        ("predicted σ (years)", "RMS error (years)"),
        tick,
    )?;
    drawn(
        calibration
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (top, top)],
                IDEAL.stroke_width(2),
            ))
            .map(|s| {
                s.label("σ = error").legend(|(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], IDEAL.stroke_width(2))
                });
            }),
    )?;
    drawn(
        calibration
            .draw_series(LineSeries::new(
                data.calibration.iter().copied(),
                POINTS.stroke_width(2),
            ))
            .map(|_| ()),
    )?;
    drawn(
        calibration
            .draw_series(
                data.calibration
                    .iter()
                    .map(|&p| Circle::new(p, 4, POINTS.filled())),
            )
            .map(|s| {
                s.label("a tenth of the images")
                    .legend(|(x, y)| Circle::new((x + 10, y), 4, POINTS.filled()));
            }),
    )?;
    legend(&mut calibration, SeriesLabelPosition::UpperLeft)
}

/// The three panels for a set's true ages `mu`, predictions and predicted distributions.
pub fn draw(mu: &[f32], predicted: &[f32], distributions: &[Vec<f32>]) -> Result<RgbImage> {
    let data = Panels::new(mu, predicted, distributions);
    crate::render::bitmap(3 * PANEL, PANEL, |root| plot(root, &data))
}

/// The same panels as an SVG document.
pub fn svg(mu: &[f32], predicted: &[f32], distributions: &[Vec<f32>]) -> Result<String> {
    let data = Panels::new(mu, predicted, distributions);
    crate::render::svg(3 * PANEL, PANEL, |root| plot(root, &data))
}

/// Writes the panels to `path`: SVG when it ends in `.svg`, else PNG.
pub fn save(path: &Path, mu: &[f32], predicted: &[f32], distributions: &[Vec<f32>]) -> Result<()> {
    crate::render::save(
        path,
        || svg(mu, predicted, distributions),
        || draw(mu, predicted, distributions),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use dldl::distribution::label::label_distribution;

    #[test]
    fn draws_points_bars_and_the_calibration_curve() {
        let mu: Vec<f32> = (0..50).map(|i| i as f32 * 2.0).collect();
        let predicted: Vec<f32> = mu.iter().map(|m| m + 3.0).collect();
        let distributions: Vec<Vec<f32>> = predicted
            .iter()
            .map(|&p| label_distribution(p.min(100.0), 4.0).unwrap())
            .collect();
        let picture = draw(&mu, &predicted, &distributions).unwrap();
        assert_eq!(picture.dimensions(), (3 * PANEL, PANEL));
        let count = |c: RGBColor, panel: u32| {
            let c = image::Rgb([c.0, c.1, c.2]);
            picture
                .enumerate_pixels()
                .filter(|(x, _, p)| *x / PANEL == panel && **p == c)
                .count()
        };
        assert!(count(POINTS, 0) >= 50 * 5, "one dot per image");
        assert!(count(BARS, 1) > 1000, "error bars");
        assert!(count(POINTS, 2) > 49, "calibration points");
        assert!(count(IDEAL, 0) > 200 && count(IDEAL, 2) > 200, "diagonals");
    }
}
