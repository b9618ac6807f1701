//! The picture `trainer eval --plots` writes: predicted against true age, the error by true age,
//! and σ calibration (is the predicted spread as large as the errors?), as one PNG.

use dldl::distribution::std_dev;
use image::{Rgb, RgbImage};

use crate::raster::{fill, line, rectangle, text, text_width};

const PANEL: u32 = 420;
const LEFT: i64 = 56;
const RIGHT: i64 = 16;
const TOP: i64 = 36;
const BOTTOM: i64 = 44;
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([20, 20, 20]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const POINTS: Rgb<u8> = Rgb([31, 119, 180]);
const IDEAL: Rgb<u8> = Rgb([214, 39, 40]);
const BARS: Rgb<u8> = Rgb([95, 130, 190]);

/// One panel's axes: data ranges and the pixel box they map to.
struct Axes {
    x: (f64, f64),
    y: (f64, f64),
    origin: (i64, i64),
    size: (i64, i64),
}

impl Axes {
    fn px(&self, x: f64, y: f64) -> (i64, i64) {
        let fx = (x - self.x.0) / (self.x.1 - self.x.0);
        let fy = (y - self.y.0) / (self.y.1 - self.y.0);
        (
            self.origin.0 + (fx * self.size.0 as f64).round() as i64,
            self.origin.1 + self.size.1 - (fy * self.size.1 as f64).round() as i64,
        )
    }
}

fn nice_step(span: f64) -> f64 {
    let raw = (span / 5.0).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// Draws the frame, grid, tick labels and titles of panel `index`; returns its axes.
fn panel(
    canvas: &mut RgbImage,
    index: u32,
    title: &str,
    x_label: &str,
    y_label: &str,
    x: (f64, f64),
    y: (f64, f64),
) -> Axes {
    let left = i64::from(index * PANEL);
    let axes = Axes {
        x,
        y,
        origin: (left + LEFT, TOP),
        size: (
            i64::from(PANEL) - LEFT - RIGHT,
            i64::from(PANEL) - TOP - BOTTOM,
        ),
    };
    text(canvas, left + LEFT, 4, title, 2, BLACK);
    for (axis, range) in [(0, x), (1, y)] {
        let step = nice_step(range.1 - range.0);
        let mut v = (range.0 / step).ceil() * step;
        while v <= range.1 + 1e-9 {
            let label = if step >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            };
            if axis == 0 {
                let (px, _) = axes.px(v, y.0);
                line(canvas, (px, TOP), (px, TOP + axes.size.1), GRID);
                text(
                    canvas,
                    px - text_width(&label, 1) / 2,
                    TOP + axes.size.1 + 6,
                    &label,
                    1,
                    BLACK,
                );
            } else {
                let (_, py) = axes.px(x.0, v);
                line(
                    canvas,
                    (axes.origin.0, py),
                    (axes.origin.0 + axes.size.0, py),
                    GRID,
                );
                text(
                    canvas,
                    axes.origin.0 - text_width(&label, 1) - 6,
                    py - 4,
                    &label,
                    1,
                    BLACK,
                );
            }
            v += step;
        }
    }
    rectangle(
        canvas,
        axes.origin.0,
        TOP,
        axes.origin.0 + axes.size.0,
        TOP + axes.size.1,
        BLACK,
    );
    text(
        canvas,
        axes.origin.0 + axes.size.0 / 2 - text_width(x_label, 1) / 2,
        i64::from(PANEL) - 16,
        x_label,
        1,
        BLACK,
    );
    text(canvas, left + 4, TOP - 11, y_label, 1, BLACK);
    axes
}

/// The three panels for a set's true ages `mu`, predictions and predicted distributions.
pub fn draw(mu: &[f32], predicted: &[f32], distributions: &[Vec<f32>]) -> RgbImage {
    let mut canvas = RgbImage::from_pixel(3 * PANEL, PANEL, WHITE);

    // Predicted against true age, with the diagonal.
    let axes = panel(
        &mut canvas,
        0,
        "predicted vs true",
        "true age",
        "predicted",
        (0.0, 100.0),
        (0.0, 100.0),
    );
    line(&mut canvas, axes.px(0.0, 0.0), axes.px(100.0, 100.0), IDEAL);
    for (&m, &p) in mu.iter().zip(predicted) {
        let (x, y) = axes.px(f64::from(m), f64::from(p));
        fill(&mut canvas, x - 1, y - 1, 3, 3, POINTS);
    }

    // Mean absolute error per 5-year bin of true age.
    let mut bins = [(0usize, 0.0f64); 21];
    for (&m, &p) in mu.iter().zip(predicted) {
        let b = ((m / 5.0) as usize).min(20);
        bins[b].0 += 1;
        bins[b].1 += f64::from((p - m).abs());
    }
    let worst = bins
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, e)| e / *n as f64)
        .fold(1.0f64, f64::max);
    let axes = panel(
        &mut canvas,
        1,
        "error by age",
        "true age",
        "MAE (years)",
        (0.0, 105.0),
        (0.0, worst * 1.1),
    );
    for (b, &(n, e)) in bins.iter().enumerate() {
        if n > 0 {
            let (x0, y0) = axes.px(b as f64 * 5.0 + 0.5, e / n as f64);
            let (x1, y1) = axes.px(b as f64 * 5.0 + 4.5, 0.0);
            fill(
                &mut canvas,
                x0,
                y0,
                (x1 - x0).max(1) as u32,
                (y1 - y0).max(1) as u32,
                BARS,
            );
        }
    }

    // σ calibration: images grouped by predicted σ; each group's RMS error against its mean σ.
    let mut pairs: Vec<(f64, f64)> = distributions
        .iter()
        .zip(mu.iter().zip(predicted))
        .filter_map(|(p, (&m, &e))| Some((f64::from(std_dev(p).ok()?), f64::from(e - m))))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let groups = pairs.len().clamp(1, 10);
    let points: Vec<(f64, f64)> = pairs
        .chunks(pairs.len().div_ceil(groups).max(1))
        .map(|chunk| {
            let n = chunk.len() as f64;
            let sigma = chunk.iter().map(|c| c.0).sum::<f64>() / n;
            let rms = (chunk.iter().map(|c| c.1 * c.1).sum::<f64>() / n).sqrt();
            (sigma, rms)
        })
        .collect();
    let top = points
        .iter()
        .flat_map(|&(s, r)| [s, r])
        .fold(1.0f64, f64::max)
        * 1.1;
    let axes = panel(
        &mut canvas,
        2,
        "sigma calibration",
        "predicted sigma",
        "RMS error",
        (0.0, top),
        (0.0, top),
    );
    line(&mut canvas, axes.px(0.0, 0.0), axes.px(top, top), IDEAL);
    for pair in points.windows(2) {
        line(
            &mut canvas,
            axes.px(pair[0].0, pair[0].1),
            axes.px(pair[1].0, pair[1].1),
            POINTS,
        );
    }
    for &(s, r) in &points {
        let (x, y) = axes.px(s, r);
        fill(&mut canvas, x - 3, y - 3, 7, 7, POINTS);
    }
    canvas
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
        let picture = draw(&mu, &predicted, &distributions);
        assert_eq!(picture.dimensions(), (3 * PANEL, PANEL));
        let count = |c: Rgb<u8>, panel: u32| {
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
