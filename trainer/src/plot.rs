//! Small SVG line charts, written beside a run so that its progress can be looked at in any
//! browser without extra tools.

use std::fmt::Write;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub colour: &'static str,
    pub points: Vec<(f64, f64)>,
}

/// One chart: its title, axis labels and lines.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

const WIDTH: f64 = 420.0;
const HEIGHT: f64 = 260.0;
const MARGIN: (f64, f64, f64, f64) = (56.0, 16.0, 34.0, 44.0); // left, right, top, bottom

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A step of 1, 2 or 5 × 10ⁿ giving about five ticks over `span`.
fn tick_step(span: f64) -> f64 {
    let raw = (span / 5.0).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

fn chart_svg(chart: &Chart, x_offset: f64) -> String {
    let points = chart.series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::MAX, f64::MIN, 0.0f64, f64::MIN);
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if x_max < x_min {
        (x_min, x_max, y_max) = (0.0, 1.0, 1.0);
    }
    if x_max == x_min {
        x_max = x_min + 1.0;
    }
    let y_step = tick_step(y_max - y_min);
    let y_max = (y_max / y_step).ceil().max(1.0) * y_step;
    let (left, right, top, bottom) = MARGIN;
    let plot_w = WIDTH - left - right;
    let plot_h = HEIGHT - top - bottom;
    let sx = |x: f64| x_offset + left + (x - x_min) / (x_max - x_min) * plot_w;
    let sy = |y: f64| top + plot_h - (y - y_min) / (y_max - y_min) * plot_h;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="20" font-size="14" font-weight="bold">{}</text>"#,
        x_offset + left,
        escape(&chart.title)
    );
    let mut y = y_min;
    while y <= y_max + y_step * 1e-6 {
        let _ = write!(
            svg,
            r##"<line x1="{:.1}" x2="{:.1}" y1="{2:.1}" y2="{2:.1}" stroke="#ddd"/><text x="{3:.1}" y="{4:.1}" font-size="11" text-anchor="end">{5}</text>"##,
            sx(x_min),
            sx(x_max),
            sy(y),
            sx(x_min) - 6.0,
            sy(y) + 4.0,
            format_tick(y, y_step)
        );
        y += y_step;
    }
    let x_step = tick_step(x_max - x_min).max(1.0);
    let mut x = x_min.ceil();
    while x <= x_max + 1e-9 {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            sx(x),
            top + plot_h + 16.0,
            format_tick(x, x_step)
        );
        x += x_step;
    }
    let _ = write!(
        svg,
        r##"<rect x="{:.1}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text><text transform="translate({:.1},{:.1}) rotate(-90)" font-size="12" text-anchor="middle">{}</text>"##,
        x_offset + left,
        x_offset + left + plot_w / 2.0,
        HEIGHT - 6.0,
        escape(&chart.x_label),
        x_offset + 14.0,
        top + plot_h / 2.0,
        escape(&chart.y_label)
    );
    for (i, series) in chart.series.iter().enumerate() {
        let path: Vec<String> = series
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
            path.join(" "),
            series.colour
        );
        for &(x, y) in &series.points {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}"/>"#,
                sx(x),
                sy(y),
                series.colour
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" fill="{}" text-anchor="end">{}</text>"#,
            x_offset + left + plot_w - 6.0,
            top + 14.0 + 14.0 * i as f64,
            series.colour,
            escape(&series.name)
        );
    }
    svg
}

fn format_tick(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil() as usize
    };
    format!("{value:.decimals$}")
}

/// Charts side by side in one SVG document.
pub fn svg(charts: &[Chart]) -> String {
    let width = WIDTH * charts.len().max(1) as f64;
    let mut body = String::new();
    for (i, chart) in charts.iter().enumerate() {
        body.push_str(&chart_svg(chart, WIDTH * i as f64));
    }
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" viewBox="0 0 {width} {HEIGHT}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>{body}</svg>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(10.0), 2.0);
        assert_eq!(tick_step(0.7), 0.2);
        assert_eq!(tick_step(23.0), 5.0);
    }

    #[test]
    fn draws_every_series_and_label() {
        let chart = Chart {
            title: "loss <train>".into(),
            x_label: "epoch".into(),
            y_label: "nats".into(),
            series: vec![Series {
                name: "train".into(),
                colour: "#1f77b4",
                points: vec![(1.0, 3.0), (2.0, 2.0), (3.0, 1.5)],
            }],
        };
        let svg = svg(&[chart]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("loss &lt;train&gt;"));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains(">epoch<") && svg.contains(">nats<"));
    }
}
