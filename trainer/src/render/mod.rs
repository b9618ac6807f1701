//! Charts and annotated pictures, drawn with `plotters`: SVG where a browser opens the file (the
//! learning curves, `eval --plots x.svg`), PNG otherwise, with DejaVu Sans embedded so that text
//! looks the same on every machine and needs no system fonts. The demo page draws its own charts
//! in the browser's canvas.

pub mod annotate;
pub mod curves;
pub mod eval_plots;

use std::{path::Path, sync::OnceLock};

use anyhow::{Context, Result};
use image::RgbImage;
use plotters::{
    coord::{Shift, types::RangedCoordf64},
    prelude::*,
    style::{FontStyle, register_font},
};

use crate::files;

/// The family every chart's text uses (DejaVu Sans, registered by [`fonts`]).
pub const FONT: &str = "sans-serif";

pub const INK: RGBColor = RGBColor(20, 20, 20);
pub const GRID: RGBColor = RGBColor(225, 225, 225);
pub const BLUE: RGBColor = RGBColor(31, 119, 180);
pub const RED: RGBColor = RGBColor(214, 39, 40);

/// A tick label: whole numbers without decimals, others with at most two.
pub fn tick(value: &f64) -> String {
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

/// A tick label on an axis of whole numbers (epochs, ages): none between them.
pub fn whole_tick(value: &f64) -> String {
    if (value - value.round()).abs() < 1e-6 {
        format!("{value:.0}")
    } else {
        String::new()
    }
}

/// Registers DejaVu Sans (regular and bold; from the `dejavu` crate, under the Bitstream Vera
/// licence, free to embed) as [`FONT`], once per process.
pub fn fonts() -> Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
                .and_then(|()| register_font(FONT, FontStyle::Bold, dejavu::sans::bold()))
                .map_err(|_| "the embedded font DejaVu Sans cannot be read".to_string())
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A chart's data area with its axes.
pub type Plot<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A titled chart over `x`×`y` in `area`, with axis titles, light grid lines and tick labels
/// (`x_tick` writes the x axis's).
pub fn axes<'a, DB: DrawingBackend + 'a>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    (x_desc, y_desc): (&str, &str),
    x_tick: fn(&f64) -> String,
) -> Result<Plot<'a, DB>>
where
    DB::ErrorType: 'static,
{
    let mut plot = ChartBuilder::on(area)
        .caption(title, (FONT, 20).into_font().color(&INK))
        .margin(14)
        .x_label_area_size(46)
        .y_label_area_size(62)
        .build_cartesian_2d(x, y)
        .map_err(|e| anyhow::anyhow!("cannot draw the chart: {e}"))?;
    drawn(
        plot.configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&x_tick)
            .y_label_formatter(&tick)
            .axis_desc_style((FONT, 15).into_font().color(&INK))
            .label_style((FONT, 13).into_font().color(&INK))
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .draw(),
    )?;
    Ok(plot)
}

/// The chart's legend: a line per labelled series, on a light box at `position`.
pub fn legend<'a, DB: DrawingBackend + 'a>(
    plot: &mut Plot<'a, DB>,
    position: SeriesLabelPosition,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    drawn(
        plot.configure_series_labels()
            .position(position)
            .label_font((FONT, 13).into_font().color(&INK))
            .background_style(WHITE.mix(0.9))
            .border_style(GRID)
            .draw(),
    )
}

/// A drawing error as an `anyhow` error.
pub fn drawn<E: std::error::Error + Send + Sync + 'static>(
    result: Result<(), DrawingAreaErrorKind<E>>,
) -> Result<()> {
    result.map_err(|e| anyhow::anyhow!("cannot draw the chart: {e}"))
}

/// Draws `width`×`height` pixels with `draw` into an RGB image.
pub fn bitmap<F>(width: u32, height: u32, draw: F) -> Result<RgbImage>
where
    F: FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
{
    bitmap_over(RgbImage::new(width, height), draw)
}

/// Draws with `draw` over `picture`.
pub fn bitmap_over<F>(picture: RgbImage, draw: F) -> Result<RgbImage>
where
    F: FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
{
    fonts()?;
    let (width, height) = picture.dimensions();
    let mut buffer = picture.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        draw(&root)?;
        drawn(root.present())?;
    }
    RgbImage::from_raw(width, height, buffer).context("the chart's buffer changed size")
}

/// Draws `width`×`height` pixels with `draw` into an SVG document.
pub fn svg<F>(width: u32, height: u32, draw: F) -> Result<String>
where
    F: FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>,
{
    fonts()?;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (width, height)).into_drawing_area();
        draw(&root)?;
        drawn(root.present())?;
    }
    Ok(text)
}

/// Writes a picture atomically: SVG when `path` ends in `.svg`, else PNG.
pub fn save(
    path: &Path,
    svg: impl FnOnce() -> Result<String>,
    png: impl FnOnce() -> Result<RgbImage>,
) -> Result<()> {
    let is_svg = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if is_svg {
        files::write(path, svg()?.as_bytes())
    } else {
        let picture = png()?;
        files::write_with(path, |tmp| {
            picture
                .save_with_format(tmp, image::ImageFormat::Png)
                .with_context(|| format!("cannot write {}", path.display()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(&20.0), "20");
        assert_eq!(tick(&2.5), "2.5");
        assert_eq!(tick(&0.25), "0.25");
        assert_eq!(tick(&-0.0001), "0");
        assert_eq!(whole_tick(&3.0), "3");
        assert_eq!(whole_tick(&2.5), "");
    }
}
