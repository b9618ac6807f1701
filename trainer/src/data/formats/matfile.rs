//! A reader for MATLAB level-5 MAT-files (what MATLAB writes with `save -v7`, the default, and
//! `-v6`; what `scipy.io.savemat` writes), enough for IMDB-WIKI's metadata: numeric arrays, char
//! arrays, cell arrays and structs, compressed or not. Version 7.3 files are HDF5 and are refused
//! with a message saying how to re-save them.
//!
//! Hand-written rather than the `matfile` crate, which cannot read IMDB-WIKI's struct of cells.

use std::{collections::BTreeMap, io::Read};

use anyhow::{Context, Result, bail};

/// One MATLAB value. Arrays are stored column-major, as MATLAB stores them.
#[derive(Debug, Clone, PartialEq)]
pub enum MatValue {
    /// Any numeric or logical class, widened to f64.
    Numeric { dims: Vec<usize>, data: Vec<f64> },
    /// A char array; a 1×n or n×1 array is one string, an m×n array m strings (its rows).
    Char { dims: Vec<usize>, text: Vec<char> },
    Cell {
        dims: Vec<usize>,
        items: Vec<MatValue>,
    },
    /// A struct array: for each field, one value per element.
    Struct {
        dims: Vec<usize>,
        fields: BTreeMap<String, Vec<MatValue>>,
    },
}

impl MatValue {
    pub fn dims(&self) -> &[usize] {
        match self {
            MatValue::Numeric { dims, .. }
            | MatValue::Char { dims, .. }
            | MatValue::Cell { dims, .. }
            | MatValue::Struct { dims, .. } => dims,
        }
    }

    /// What the value is, for error messages: `1×3 double`, `1×1 struct`, …
    pub fn describe(&self) -> String {
        let dims: Vec<String> = self.dims().iter().map(ToString::to_string).collect();
        let class = match self {
            MatValue::Numeric { .. } => "numeric array",
            MatValue::Char { .. } => "char array",
            MatValue::Cell { .. } => "cell array",
            MatValue::Struct { .. } => "struct",
        };
        format!("{} {class}", dims.join("×"))
    }

    /// The text of a char array (rows joined), trailing spaces and NULs removed.
    pub fn as_string(&self) -> Option<String> {
        match self {
            MatValue::Char { dims, text } => {
                let rows = dims.first().copied().unwrap_or(1).max(1);
                if rows == 1 || dims.get(1) == Some(&1) {
                    let s: String = text.iter().collect();
                    Some(s.trim_end_matches([' ', '\0']).to_string())
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

/// The named variables of a MAT-file.
pub type MatFile = BTreeMap<String, MatValue>;

const HEADER_LEN: usize = 128;
const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;
const MI_UTF32: u32 = 18;

const MX_CELL: u8 = 1;
const MX_STRUCT: u8 = 2;
const MX_OBJECT: u8 = 3;
const MX_CHAR: u8 = 4;
const MX_SPARSE: u8 = 5;

/// The most a compressed variable may inflate to (IMDB-WIKI's largest, `imdb.mat`, holds a few
/// hundred MB).
pub const MAX_INFLATED: u64 = 4 << 30;
/// How deeply cells and structs may nest (IMDB-WIKI's nest two deep).
pub const MAX_DEPTH: usize = 32;

/// Parses a whole MAT-file.
pub fn parse(bytes: &[u8]) -> Result<MatFile> {
    if bytes.starts_with(b"\x89HDF") || bytes.get(512..516) == Some(b"\x89HDF") {
        bail!(
            "it is a MATLAB v7.3 (HDF5) file, which this reader does not read; \
             re-save it in MATLAB with `save(file, '-struct', ..., '-v7')`"
        );
    }
    if bytes.len() < HEADER_LEN || !bytes.starts_with(b"MATLAB 5.0 MAT-file") {
        bail!("it is not a MATLAB level-5 MAT-file (no `MATLAB 5.0 MAT-file` header)");
    }
    match &bytes[126..128] {
        b"IM" => {}
        b"MI" => bail!("it is a big-endian MAT-file; re-save it on a little-endian machine"),
        _ => bail!("its header has no valid endian indicator"),
    }
    let mut file = MatFile::new();
    let mut at = HEADER_LEN;
    while at + 8 <= bytes.len() {
        let (kind, data, next) = element(bytes, at)?;
        at = next;
        let (name, value) = match kind {
            MI_MATRIX => matrix(data, 0)?,
            MI_COMPRESSED => {
                let mut inflated = Vec::new();
                flate2::read::ZlibDecoder::new(data)
                    .take(MAX_INFLATED + 1)
                    .read_to_end(&mut inflated)
                    .context("a compressed variable does not inflate (the file is damaged)")?;
                if inflated.len() as u64 > MAX_INFLATED {
                    bail!(
                        "a compressed variable inflates to more than {} GiB, over this reader's \
                         limit",
                        MAX_INFLATED >> 30
                    );
                }
                let (kind, data, _) = element(&inflated, 0)?;
                if kind != MI_MATRIX {
                    bail!("a compressed element holds type {kind}, not a matrix");
                }
                matrix(data, 0)?
            }
            other => bail!("unexpected top-level element of type {other}"),
        };
        file.insert(name, value);
    }
    Ok(file)
}

/// Reads the data element at `at`: its type, its data and where the next one starts.
fn element(bytes: &[u8], at: usize) -> Result<(u32, &[u8], usize)> {
    let word = |i: usize| -> Result<u32> {
        let b = bytes
            .get(i..i + 4)
            .context("the file ends inside an element tag (truncated?)")?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let first = word(at)?;
    if first >> 16 != 0 {
        // Small data element: type and size share the first word, data the second.
        let (kind, len) = (first & 0xffff, (first >> 16) as usize);
        if len > 4 {
            bail!("a small data element claims {len} bytes");
        }
        word(at + 4)?;
        return Ok((kind, &bytes[at + 4..at + 4 + len], at + 8));
    }
    let len = word(at + 4)? as usize;
    let start = at + 8;
    let end = start
        .checked_add(len)
        .filter(|&end| end <= bytes.len())
        .with_context(|| {
            format!("an element claims {len} bytes past the end of the file (truncated?)")
        })?;
    let next = if first == MI_COMPRESSED {
        end
    } else {
        end.div_ceil(8) * 8
    };
    Ok((first, &bytes[start..end], next))
}

/// The elements packed in a matrix's data, in order.
fn sub_elements(data: &[u8]) -> Result<Vec<(u32, &[u8])>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        let (kind, body, next) = element(data, at)?;
        out.push((kind, body));
        at = next;
    }
    Ok(out)
}

fn numbers(kind: u32, data: &[u8]) -> Result<Vec<f64>> {
    fn chunks<const N: usize>(data: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        data.chunks_exact(N)
            .map(|c| c.try_into().expect("chunk of N bytes"))
    }
    Ok(match kind {
        MI_INT8 => data.iter().map(|&b| f64::from(b as i8)).collect(),
        MI_UINT8 | MI_UTF8 => data.iter().map(|&b| f64::from(b)).collect(),
        MI_INT16 => chunks(data)
            .map(|c| f64::from(i16::from_le_bytes(c)))
            .collect(),
        MI_UINT16 | MI_UTF16 => chunks(data)
            .map(|c| f64::from(u16::from_le_bytes(c)))
            .collect(),
        MI_INT32 => chunks(data)
            .map(|c| f64::from(i32::from_le_bytes(c)))
            .collect(),
        MI_UINT32 | MI_UTF32 => chunks(data)
            .map(|c| f64::from(u32::from_le_bytes(c)))
            .collect(),
        MI_SINGLE => chunks(data)
            .map(|c| f64::from(f32::from_le_bytes(c)))
            .collect(),
        MI_DOUBLE => chunks(data).map(f64::from_le_bytes).collect(),
        MI_INT64 => chunks(data).map(|c| i64::from_le_bytes(c) as f64).collect(),
        MI_UINT64 => chunks(data).map(|c| u64::from_le_bytes(c) as f64).collect(),
        other => bail!("numeric data of unknown type {other}"),
    })
}

/// Parses a matrix element's data into its name and value; `depth` counts the cells and structs
/// around it.
fn matrix(data: &[u8], depth: usize) -> Result<(String, MatValue)> {
    if depth > MAX_DEPTH {
        bail!(
            "cells or structs nest more than {MAX_DEPTH} deep; the file is damaged or not a data set"
        );
    }
    if data.is_empty() {
        // An empty cell in a cell array is written as a matrix of no bytes.
        return Ok((
            String::new(),
            MatValue::Numeric {
                dims: vec![0, 0],
                data: Vec::new(),
            },
        ));
    }
    let parts = sub_elements(data)?;
    let [(_, flags), (_, dims_bytes), (_, name_bytes), rest @ ..] = parts.as_slice() else {
        bail!("a matrix lacks its flags, dimensions or name");
    };
    let class = *flags.first().context("a matrix has empty flags")?;
    let complex = flags.get(1).is_some_and(|f| f & 0x08 != 0);
    let dims: Vec<usize> = numbers(MI_INT32, dims_bytes)?
        .into_iter()
        .map(|d| d.max(0.0) as usize)
        .collect();
    let name = String::from_utf8_lossy(name_bytes).into_owned();
    let count = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .with_context(|| format!("the dimensions {dims:?} of `{name}` are too large"))?;
    let value = match class {
        MX_CELL => {
            if rest.len() != count {
                bail!(
                    "the cell array `{name}` holds {} items, its dimensions say {count}",
                    rest.len()
                );
            }
            let items = rest
                .iter()
                .map(|(kind, body)| {
                    if *kind != MI_MATRIX {
                        bail!("a cell of `{name}` is not a matrix");
                    }
                    Ok(matrix(body, depth + 1)?.1)
                })
                .collect::<Result<_>>()?;
            MatValue::Cell { dims, items }
        }
        MX_STRUCT => {
            let [(_, len_bytes), (_, names_bytes), values @ ..] = rest else {
                bail!("the struct `{name}` lacks its field names");
            };
            let field_len = numbers(MI_INT32, len_bytes)?
                .first()
                .copied()
                .unwrap_or(0.0) as usize;
            if field_len == 0 {
                bail!("the struct `{name}` has a zero field-name length");
            }
            let names: Vec<String> = names_bytes
                .chunks(field_len)
                .map(|chunk| {
                    let end = chunk.iter().position(|&b| b == 0).unwrap_or(chunk.len());
                    String::from_utf8_lossy(&chunk[..end]).into_owned()
                })
                .collect();
            if Some(values.len()) != names.len().checked_mul(count) {
                bail!(
                    "the struct `{name}` holds {} values for {} fields × {count} elements",
                    values.len(),
                    names.len()
                );
            }
            let mut fields: BTreeMap<String, Vec<MatValue>> =
                names.iter().map(|n| (n.clone(), Vec::new())).collect();
            for (i, (kind, body)) in values.iter().enumerate() {
                if *kind != MI_MATRIX {
                    bail!("a field of the struct `{name}` is not a matrix");
                }
                let field = &names[i % names.len()];
                fields
                    .get_mut(field)
                    .expect("every field was inserted")
                    .push(matrix(body, depth + 1)?.1);
            }
            MatValue::Struct { dims, fields }
        }
        MX_CHAR => {
            let (kind, body) = rest.first().copied().unwrap_or((MI_UINT16, &[]));
            let text: Vec<char> = if kind == MI_UTF8 || kind == MI_UINT8 || kind == MI_INT8 {
                String::from_utf8_lossy(body).chars().collect()
            } else {
                numbers(kind, body)?
                    .into_iter()
                    .map(|c| char::from_u32(c as u32).unwrap_or('\u{fffd}'))
                    .collect()
            };
            // Stored column-major: reorder an m×n array into rows.
            let text = match dims.as_slice() {
                [rows, cols] if *rows > 1 && *cols > 1 && text.len() == rows * cols => (0..*rows)
                    .flat_map(|r| (0..*cols).map(move |c| (r, c)))
                    .map(|(r, c)| text[c * rows + r])
                    .collect(),
                _ => text,
            };
            MatValue::Char { dims, text }
        }
        MX_OBJECT => bail!("`{name}` is a MATLAB object, which this reader does not read"),
        MX_SPARSE => bail!("`{name}` is a sparse matrix, which this reader does not read"),
        6..=15 => {
            let (kind, body) = rest.first().copied().unwrap_or((MI_DOUBLE, &[]));
            let data = numbers(kind, body)?;
            if data.len() != count {
                bail!(
                    "`{name}` holds {} numbers, its dimensions say {count}",
                    data.len()
                );
            }
            if complex {
                bail!("`{name}` is complex; only real numbers are read");
            }
            MatValue::Numeric { dims, data }
        }
        other => bail!("`{name}` has the unknown MATLAB class {other}"),
    };
    Ok((name, value))
}

/// Writes MAT-files; tests use it to make fixtures in the exact format the reader takes.
#[cfg(test)]
pub mod write {
    use super::*;
    use std::io::Write;

    fn tag(out: &mut Vec<u8>, kind: u32, data: &[u8]) {
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
    }

    fn matrix(name: &str, value: &MatValue) -> Vec<u8> {
        let mut body = Vec::new();
        let class: u8 = match value {
            MatValue::Numeric { .. } => 6,
            MatValue::Char { .. } => MX_CHAR,
            MatValue::Cell { .. } => MX_CELL,
            MatValue::Struct { .. } => MX_STRUCT,
        };
        tag(&mut body, MI_UINT32, &[class, 0, 0, 0, 0, 0, 0, 0]);
        let dims: Vec<u8> = value
            .dims()
            .iter()
            .flat_map(|&d| (d as i32).to_le_bytes())
            .collect();
        tag(&mut body, MI_INT32, &dims);
        tag(&mut body, MI_INT8, name.as_bytes());
        match value {
            MatValue::Numeric { data, .. } => {
                let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
                tag(&mut body, MI_DOUBLE, &bytes);
            }
            MatValue::Char { text, .. } => {
                let bytes: Vec<u8> = text
                    .iter()
                    .flat_map(|&c| (c as u16).to_le_bytes())
                    .collect();
                tag(&mut body, MI_UINT16, &bytes);
            }
            MatValue::Cell { items, .. } => {
                for item in items {
                    body.extend(matrix("", item));
                }
            }
            MatValue::Struct { fields, dims } => {
                let len = fields.keys().map(|k| k.len() + 1).max().unwrap_or(1);
                tag(&mut body, MI_INT32, &(len as i32).to_le_bytes());
                let mut names = Vec::new();
                for key in fields.keys() {
                    let mut padded = key.as_bytes().to_vec();
                    padded.resize(len, 0);
                    names.extend(padded);
                }
                tag(&mut body, MI_INT8, &names);
                for element in 0..dims.iter().product() {
                    for values in fields.values() {
                        body.extend(matrix("", &values[element]));
                    }
                }
            }
        }
        let mut out = Vec::new();
        tag(&mut out, MI_MATRIX, &body);
        out
    }

    /// A MAT-file holding `variables`, each zlib-compressed when `compress`.
    pub fn mat_file(variables: &[(&str, MatValue)], compress: bool) -> Vec<u8> {
        let mut out = b"MATLAB 5.0 MAT-file, written by apparent-age tests".to_vec();
        out.resize(116, b' ');
        out.extend([0u8; 8]);
        out.extend(0x0100u16.to_le_bytes());
        out.extend(b"IM");
        for (name, value) in variables {
            let element = matrix(name, value);
            if compress {
                let mut encoder =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(&element).unwrap();
                let packed = encoder.finish().unwrap();
                out.extend(MI_COMPRESSED.to_le_bytes());
                out.extend((packed.len() as u32).to_le_bytes());
                out.extend(packed);
            } else {
                out.extend(element);
            }
        }
        out
    }

    pub fn row(data: Vec<f64>) -> MatValue {
        MatValue::Numeric {
            dims: vec![1, data.len()],
            data,
        }
    }

    pub fn string(s: &str) -> MatValue {
        MatValue::Char {
            dims: vec![1, s.chars().count()],
            text: s.chars().collect(),
        }
    }

    pub fn cell_row(items: Vec<MatValue>) -> MatValue {
        MatValue::Cell {
            dims: vec![1, items.len()],
            items,
        }
    }

    pub fn scalar_struct(fields: Vec<(&str, MatValue)>) -> MatValue {
        MatValue::Struct {
            dims: vec![1, 1],
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), vec![v]))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{write::*, *};

    fn sample() -> MatValue {
        scalar_struct(vec![
            ("dob", row(vec![723671.0, 726000.5])),
            (
                "full_path",
                cell_row(vec![string("01/nm1_rm1.jpg"), string("02/nm2_rm2.jpg")]),
            ),
            ("name", cell_row(vec![string("Ann"), string("")])),
        ])
    }

    #[test]
    fn round_trips_compressed_and_plain() {
        for compress in [false, true] {
            let bytes = mat_file(&[("imdb", sample()), ("n", row(vec![2.0]))], compress);
            let file = parse(&bytes).unwrap();
            assert_eq!(file["imdb"], sample());
            assert_eq!(file["n"], row(vec![2.0]));
        }
    }

    #[test]
    fn char_matrices_are_read_by_rows() {
        let value = MatValue::Char {
            dims: vec![2, 3],
            text: "aebfcg".chars().collect(),
        };
        let file = parse(&mat_file(&[("m", value)], false)).unwrap();
        let MatValue::Char { text, .. } = &file["m"] else {
            panic!()
        };
        assert_eq!(text.iter().collect::<String>(), "abcefg");
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused() {
        let mut value = row(vec![1.0]);
        for _ in 0..MAX_DEPTH {
            value = cell_row(vec![value]);
        }
        assert!(parse(&mat_file(&[("ok", value.clone())], false)).is_ok());
        let deeper = cell_row(vec![value]);
        for compress in [false, true] {
            let message = parse(&mat_file(&[("deep", deeper.clone())], compress))
                .unwrap_err()
                .to_string();
            assert!(message.contains("nest more than 32"), "{message}");
        }
    }

    #[test]
    fn foreign_and_damaged_files_are_refused() {
        let mut hdf = b"\x89HDF\r\n\x1a\n".to_vec();
        hdf.resize(600, 0);
        let message = format!("{:#}", parse(&hdf).unwrap_err());
        assert!(message.contains("v7.3"), "{message}");
        assert!(parse(b"a,b,c\n").is_err());
        let bytes = mat_file(&[("imdb", sample())], true);
        let message = format!("{:#}", parse(&bytes[..bytes.len() - 20]).unwrap_err());
        assert!(message.contains("truncated"), "{message}");
        let bytes = mat_file(&[("imdb", sample())], false);
        let message = format!("{:#}", parse(&bytes[..bytes.len() - 20]).unwrap_err());
        assert!(message.contains("truncated"), "{message}");
    }
}
