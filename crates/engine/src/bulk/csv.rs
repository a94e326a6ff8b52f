//! Byte-level handling of Bulk 2.0 CSV result pages (RFC 4180, comma-separated, `"`
//! quoting, LF or CRLF line ends).
//!
//! Two uses: [`page_rows`] splits a page into rows of cells in a given field order (the
//! general path), and [`page_to_copy`] re-encodes a page as PostgreSQL `COPY ... (FORMAT
//! csv)` input without materializing cells: a quoted cell whose text is already in the
//! form PostgreSQL reads for its column type is copied through byte for byte, so most cells
//! cost one scan and one copy. Other cells go through [`encode`], exactly as rows of the
//! general path do. Bulk CSV cannot tell null from the empty string; both become `NULL`.

use super::destination::{Dialect, encode};
use super::run::BulkError;
use super::schema::SqlType;
use super::source::Row;

/// One cell as it appears in the page.
#[derive(Debug, Clone, Copy)]
struct Cell<'a> {
    /// The bytes between the quotes (doubled quotes still doubled), or the bare cell.
    raw: &'a [u8],
    /// The cell was quoted.
    quoted: bool,
    /// The quoted cell holds doubled quotes.
    escapes: bool,
}

impl Cell<'_> {
    fn text(&self) -> String {
        let text = String::from_utf8_lossy(self.raw);
        if self.escapes {
            text.replace("\"\"", "\"")
        } else {
            text.into_owned()
        }
    }
}

/// Reads cells off a page.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

fn malformed(what: &str) -> BulkError {
    BulkError::Source(format!("bulk 2.0 results are not valid CSV: {what}"))
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next cell and whether it ended its record.
    fn cell(&mut self) -> Result<(Cell<'a>, bool), BulkError> {
        let data = self.data;
        let mut cell = Cell {
            raw: &[],
            quoted: false,
            escapes: false,
        };
        if data.get(self.pos) == Some(&b'"') {
            let start = self.pos + 1;
            let mut i = start;
            loop {
                let Some(offset) = data[i..].iter().position(|b| *b == b'"') else {
                    return Err(malformed("a quoted cell is not closed"));
                };
                i += offset;
                if data.get(i + 1) == Some(&b'"') {
                    cell.escapes = true;
                    i += 2;
                } else {
                    break;
                }
            }
            cell.raw = &data[start..i];
            cell.quoted = true;
            self.pos = i + 1;
        } else {
            let start = self.pos;
            let end = data[start..]
                .iter()
                .position(|b| matches!(b, b',' | b'\n' | b'\r'))
                .map_or(data.len(), |offset| start + offset);
            cell.raw = &data[start..end];
            self.pos = end;
        }
        match data.get(self.pos) {
            None => Ok((cell, true)),
            Some(b',') => {
                self.pos += 1;
                Ok((cell, false))
            }
            Some(b'\n') => {
                self.pos += 1;
                Ok((cell, true))
            }
            Some(b'\r') if data.get(self.pos + 1) == Some(&b'\n') => {
                self.pos += 2;
                Ok((cell, true))
            }
            Some(_) => Err(malformed("text after a closing quote")),
        }
    }

    /// Skips blank lines between records.
    fn skip_blank_lines(&mut self) {
        while let Some(b'\n' | b'\r') = self.data.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The cells of the next record.
    fn record(&mut self, out: &mut Vec<Cell<'a>>) -> Result<(), BulkError> {
        out.clear();
        loop {
            let (cell, end) = self.cell()?;
            out.push(cell);
            if end {
                return Ok(());
            }
        }
    }
}

/// The header of a page (`None` for an empty page) and a cursor after it.
fn header(body: &[u8]) -> Result<Option<(Vec<String>, Cursor<'_>)>, BulkError> {
    let mut cursor = Cursor { data: body, pos: 0 };
    cursor.skip_blank_lines();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let mut cells = Vec::new();
    cursor.record(&mut cells)?;
    Ok(Some((cells.iter().map(Cell::text).collect(), cursor)))
}

/// Whether the page's columns are exactly `fields`, in order (case-insensitively).
fn columns_match(columns: &[String], fields: &[String]) -> bool {
    columns.len() == fields.len()
        && columns
            .iter()
            .zip(fields)
            .all(|(c, f)| c.eq_ignore_ascii_case(f))
}

fn ragged(got: usize, want: usize) -> BulkError {
    malformed(&format!("a row has {got} cells for {want} columns"))
}

/// Rows of a page in `fields` order (cells located by header name).
pub(crate) fn page_rows(fields: &[String], body: &[u8]) -> Result<Vec<Row>, BulkError> {
    let Some((columns, mut cursor)) = header(body)? else {
        return Ok(Vec::new());
    };
    let positions: Vec<usize> = fields
        .iter()
        .map(|field| {
            columns
                .iter()
                .position(|c| c.eq_ignore_ascii_case(field))
                .ok_or_else(|| {
                    BulkError::Source(format!(
                        "bulk 2.0 results have no column {field:?} (columns: {columns:?})"
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    let mut rows = Vec::new();
    let mut cells = Vec::with_capacity(columns.len());
    loop {
        cursor.skip_blank_lines();
        if cursor.at_end() {
            break;
        }
        cursor.record(&mut cells)?;
        if cells.len() != columns.len() {
            return Err(ragged(cells.len(), columns.len()));
        }
        rows.push(
            positions
                .iter()
                .map(|&i| {
                    let cell = cells[i];
                    (!cell.raw.is_empty()).then(|| cell.text())
                })
                .collect(),
        );
    }
    Ok(rows)
}

/// Whether a cell's bytes are already what PostgreSQL reads for the type (and what
/// [`encode`] would produce), so the cell can be copied through.
fn passes_through(sql_type: SqlType, raw: &[u8]) -> bool {
    let digits = |b: &[u8]| !b.is_empty() && b.iter().all(u8::is_ascii_digit);
    match sql_type {
        SqlType::Id | SqlType::Text { .. } => true,
        SqlType::Bool => raw == b"true" || raw == b"false",
        SqlType::BigInt | SqlType::Numeric => {
            let unsigned = raw.strip_prefix(b"-").unwrap_or(raw);
            match unsigned.iter().position(|b| *b == b'.') {
                Some(dot) => digits(&unsigned[..dot]) && digits(&unsigned[dot + 1..]),
                None => digits(unsigned),
            }
        }
        // 2024-01-31
        SqlType::Date => {
            raw.len() == 10
                && raw.iter().enumerate().all(|(i, b)| {
                    if i == 4 || i == 7 {
                        *b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                })
        }
        // 2024-01-31T10:00:00.000Z
        SqlType::DateTime => {
            raw.len() == 24
                && raw.iter().enumerate().all(|(i, b)| match i {
                    4 | 7 => *b == b'-',
                    10 => *b == b'T',
                    13 | 16 => *b == b':',
                    19 => *b == b'.',
                    23 => *b == b'Z',
                    _ => b.is_ascii_digit(),
                })
        }
        SqlType::Time => false,
    }
}

/// Appends `text` as a quoted CSV cell.
fn push_quoted(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    for byte in text {
        if *byte == b'"' {
            out.push(b'"');
        }
        out.push(*byte);
    }
    out.push(b'"');
}

/// Re-encodes a page as PostgreSQL COPY CSV rows (no header) for columns of `types`,
/// when the page's columns are `fields` in that order; `None` when they are not. Returns
/// the bytes and the number of rows.
pub(crate) fn page_to_copy(
    fields: &[String],
    types: &[SqlType],
    body: &[u8],
) -> Result<Option<(Vec<u8>, u64)>, BulkError> {
    let Some((columns, mut cursor)) = header(body)? else {
        return Ok(Some((Vec::new(), 0)));
    };
    if columns.len() != types.len() || !columns_match(&columns, fields) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(body.len() + body.len() / 8);
    let mut rows = 0u64;
    loop {
        cursor.skip_blank_lines();
        if cursor.at_end() {
            break;
        }
        let mut index = 0;
        loop {
            let (cell, end) = cursor.cell()?;
            let Some(&sql_type) = types.get(index) else {
                return Err(ragged(index + 1, types.len()));
            };
            if index > 0 {
                out.push(b',');
            }
            if !cell.raw.is_empty() {
                if passes_through(sql_type, cell.raw) {
                    if cell.quoted {
                        // Doubled quotes inside are already COPY's escaping.
                        out.push(b'"');
                        out.extend_from_slice(cell.raw);
                        out.push(b'"');
                    } else {
                        push_quoted(&mut out, cell.raw);
                    }
                } else if let Some(value) = encode(Dialect::Postgres, sql_type, cell.text()) {
                    push_quoted(&mut out, value.as_bytes());
                }
            }
            index += 1;
            if end {
                break;
            }
        }
        if index != types.len() {
            return Err(ragged(index, types.len()));
        }
        out.push(b'\n');
        rows += 1;
    }
    Ok(Some((out, rows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &[u8] =
        b"\"Id\",\"Name\",\"IsDeleted\",\"Amount\",\"SystemModstamp\",\"CloseDate\"\n\
\"001A\",\"say \"\"hi\"\", ok\",\"false\",\"12.50\",\"2024-01-31T10:00:00.000Z\",\"2024-01-31\"\n\
\"001B\",\"\",\"true\",\"\",\"2024-01-31T10:00:00Z\",\"\"\r\n\
\"001C\",\"two\nlines\",\"TRUE\",\"1e3\",\"\",\"2024-02-01\"\n";

    fn types() -> Vec<SqlType> {
        vec![
            SqlType::Id,
            SqlType::Text { max_chars: 80 },
            SqlType::Bool,
            SqlType::Numeric,
            SqlType::DateTime,
            SqlType::Date,
        ]
    }

    #[test]
    fn rows_follow_the_field_order() {
        let fields: Vec<String> = ["Name", "Id"].iter().map(|s| s.to_string()).collect();
        let rows = page_rows(&fields, PAGE).expect("rows");
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            vec![Some("say \"hi\", ok".into()), Some("001A".into())]
        );
        assert_eq!(rows[1], vec![None, Some("001B".into())]);
        assert_eq!(rows[2][0].as_deref(), Some("two\nlines"));
        assert!(page_rows(&fields, b"").expect("empty").is_empty());
        let missing = vec!["Nope".to_string()];
        assert!(page_rows(&missing, PAGE).is_err());
        assert!(page_rows(&fields, b"\"Id\",\"Name\"\n\"a\"\n").is_err());
        assert!(page_rows(&fields, b"\"Id\",\"Name\"\n\"a,\"b\"\n").is_err());
    }

    #[test]
    fn copy_output_matches_the_general_path() {
        let fields: Vec<String> = [
            "id",
            "Name",
            "IsDeleted",
            "Amount",
            "SystemModstamp",
            "CloseDate",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (copy, rows) = page_to_copy(&fields, &types(), PAGE)
            .expect("copy")
            .expect("columns");
        assert_eq!(rows, 3);
        let text = String::from_utf8(copy).expect("utf8");
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        assert_eq!(
            lines[0],
            "\"001A\",\"say \"\"hi\"\", ok\",\"false\",\"12.50\",\"2024-01-31T10:00:00.000Z\",\"2024-01-31\"\n"
        );
        // Empty cells are NULL; a datetime without milliseconds is normalized by `encode`.
        assert_eq!(
            lines[1],
            "\"001B\",,\"true\",,\"2024-01-31T10:00:00.000Z\",\n"
        );
        // `TRUE` and `1e3` are not in canonical form: `encode` decides.
        assert!(
            text.ends_with("\"001C\",\"two\nlines\",\"true\",\"1e3\",,\"2024-02-01\"\n"),
            "{text}"
        );
        assert_eq!(
            page_to_copy(&fields[..2], &types()[..2], PAGE).expect("ok"),
            None
        );
        let mut swapped = fields.clone();
        swapped.swap(0, 1);
        assert_eq!(page_to_copy(&swapped, &types(), PAGE).expect("ok"), None);
        assert_eq!(
            page_to_copy(&fields, &types(), b"\n").expect("ok"),
            Some((Vec::new(), 0))
        );
    }
}
