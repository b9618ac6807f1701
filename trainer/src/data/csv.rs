//! The one reader of delimited text the data sets use (the `csv` crate): quoted fields, doubled
//! quotes, a byte-order mark, CRLF line ends and rows of any length are handled alike for the
//! `path,mean[,std]` CSVs and every published format.

use std::path::Path;

use anyhow::{Context, Result};

/// One row: its 1-based line number in the file and its fields, trimmed.
pub type Row = (usize, Vec<String>);

/// The rows of a delimited text file, blank ones left out.
pub fn rows(path: &Path, delimiter: u8) -> Result<Vec<Row>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    // The reader gives where it began looking for each record, before any blank lines; the
    // record's line is that of its first byte.
    let newlines: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter_map(|(i, &b)| (b == b'\n').then_some(i))
        .collect();
    let line_at = |position: Option<&::csv::Position>| {
        let mut at = position.map_or(0, |p| p.byte() as usize);
        while at < bytes.len() && matches!(bytes[at], b'\r' | b'\n') {
            at += 1;
        }
        1 + newlines.partition_point(|&n| n < at)
    };
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(bytes.as_slice());
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|error| {
            let line = line_at(error.position());
            anyhow::anyhow!("{}:{line}: {error}", path.display())
        })?;
        // Trimmed here: the reader's own trimming drops the record's position.
        let fields: Vec<String> = record.iter().map(|f| f.trim().to_string()).collect();
        if fields.iter().all(String::is_empty) {
            continue;
        }
        rows.push((line_at(record.position()), fields));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_a_byte_order_mark_and_blank_lines_are_handled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("set.csv");
        std::fs::write(
            &path,
            "\u{feff}path,mean\r\n\r\n\"a, b.jpg\", 31.5 \r\n\"say \"\"cheese\"\".png\",20,2\n",
        )
        .unwrap();
        let rows = rows(&path, b',').unwrap();
        assert_eq!(rows[0], (1, vec!["path".to_string(), "mean".to_string()]));
        assert_eq!(
            rows[1],
            (3, vec!["a, b.jpg".to_string(), "31.5".to_string()])
        );
        assert_eq!(rows[2].0, 4);
        assert_eq!(rows[2].1, ["say \"cheese\".png", "20", "2"]);
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn text_that_is_not_utf8_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("set.csv");
        std::fs::write(&path, b"a.jpg,20\nb\xff.jpg,30\n").unwrap();
        let error = rows(&path, b',').unwrap_err().to_string();
        assert!(error.contains("set.csv:2"), "{error}");
    }
}
