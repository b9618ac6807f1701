//! Drawing on RGB images: rectangles, lines and text in an 8×8 bitmap font, so that pictures
//! need no system fonts or plotting libraries.

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

pub fn fill(canvas: &mut RgbImage, x: i64, y: i64, w: u32, h: u32, colour: Rgb<u8>) {
    let (cw, ch) = (i64::from(canvas.width()), i64::from(canvas.height()));
    for py in y.max(0)..(y + i64::from(h)).min(ch) {
        for px in x.max(0)..(x + i64::from(w)).min(cw) {
            canvas.put_pixel(px as u32, py as u32, colour);
        }
    }
}

pub fn rectangle(canvas: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, colour: Rgb<u8>) {
    let (w, h) = ((x1 - x0).max(0) as u32 + 1, (y1 - y0).max(0) as u32 + 1);
    fill(canvas, x0, y0, w, 1, colour);
    fill(canvas, x0, y1, w, 1, colour);
    fill(canvas, x0, y0, 1, h, colour);
    fill(canvas, x1, y0, 1, h, colour);
}

/// Bresenham's line.
pub fn line(
    canvas: &mut RgbImage,
    (mut x0, mut y0): (i64, i64),
    (x1, y1): (i64, i64),
    colour: Rgb<u8>,
) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let mut error = dx + dy;
    loop {
        fill(canvas, x0, y0, 1, 1, colour);
        if x0 == x1 && y0 == y1 {
            return;
        }
        let e2 = 2 * error;
        if e2 >= dy {
            error += dy;
            x0 += sx;
        }
        if e2 <= dx {
            error += dx;
            y0 += sy;
        }
    }
}

pub fn text_width(text: &str, scale: u32) -> i64 {
    (text.chars().count() as i64) * 8 * i64::from(scale)
}

/// Draws `text` in an 8×8 bitmap font magnified `scale` times.
pub fn text(canvas: &mut RgbImage, x: i64, y: i64, text: &str, scale: u32, colour: Rgb<u8>) {
    for (i, c) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS
            .get(c)
            .or_else(|| font8x8::LATIN_FONTS.get(c))
            .unwrap_or([0xff; 8]);
        let gx = x + i as i64 * 8 * i64::from(scale);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits >> col & 1 == 1 {
                    let s = i64::from(scale);
                    fill(
                        canvas,
                        gx + col * s,
                        y + row as i64 * s,
                        scale,
                        scale,
                        colour,
                    );
                }
            }
        }
    }
}
