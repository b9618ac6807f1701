//! Learning curves, written beside a run as SVG so that its progress can be looked at in any
//! browser without extra tools: one chart per quantity, side by side, a marker per epoch.

use anyhow::Result;
use plotters::{coord::Shift, prelude::*};

use crate::render::{axes, drawn, legend, whole_tick};

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub colour: RGBColor,
    pub points: Vec<(f64, f64)>,
}

/// One chart: its title, axis titles and lines.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

const WIDTH: u32 = 480;
const HEIGHT: u32 = 320;

/// The ranges a chart's axes cover: every point, from 0 up, with a little room above.
fn ranges(chart: &Chart) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let points = chart.series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max, mut y_max) = (f64::MAX, f64::MIN, f64::MIN);
    for &(x, y) in points.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_max = y_max.max(y);
    }
    if x_max < x_min {
        (x_min, x_max, y_max) = (0.0, 1.0, 1.0);
    }
    if x_max <= x_min {
        x_max = x_min + 1.0;
    }
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    (x_min..x_max, 0.0..y_max)
}

fn draw_chart<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, chart: &Chart) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (x, y) = ranges(chart);
    let mut plot = axes(
        area,
        &chart.title,
        x,
        y,
        (&chart.x_label, &chart.y_label),
        whole_tick,
    )?;
    for series in &chart.series {
        let colour = series.colour;
        drawn(
            plot.draw_series(LineSeries::new(
                series.points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map(|drawn| {
                drawn.label(&series.name).legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            }),
        )?;
        drawn(
            plot.draw_series(
                series
                    .points
                    .iter()
                    .map(|&point| Circle::new(point, 3, colour.filled())),
            )
            .map(|_| ()),
        )?;
    }
    legend(&mut plot, SeriesLabelPosition::UpperRight)
}

/// Charts side by side in one SVG document (epochs on the x axes).
pub fn svg(charts: &[Chart]) -> Result<String> {
    let columns = charts.len().max(1);
    crate::render::svg(WIDTH * columns as u32, HEIGHT, |root| {
        drawn(root.fill(&WHITE))?;
        for (area, chart) in root.split_evenly((1, columns)).iter().zip(charts) {
            draw_chart(area, chart)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_series_and_label() {
        let chart = Chart {
            title: "loss <train>".into(),
            x_label: "epoch".into(),
            y_label: "nats".into(),
            series: vec![Series {
                name: "train".into(),
                colour: RGBColor(31, 119, 180),
                points: vec![(1.0, 3.0), (2.0, 2.0), (3.0, 1.5)],
            }],
        };
        let svg = svg(&[chart]).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("loss &lt;train&gt;"));
        assert_eq!(svg.matches("<circle").count(), 3);
        // plotters writes each text on a line of its own inside its element.
        assert!(svg.contains(">\nepoch\n</text>") && svg.contains(">\nnats\n</text>"));
    }
}
