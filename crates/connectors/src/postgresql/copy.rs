//! PostgreSQL's COPY text format, as `COPY (SELECT …) TO STDOUT` sends it: one line per
//! row, columns separated by tabs, `\N` for null, and backslash escapes for backslash,
//! tab, newline, carriage return, backspace, form feed and vertical tab. Model reads
//! stream rows this way: the row protocol's per-row decoding cost several times more than
//! splitting these lines.
//!
//! Each column is read as its [`PgRead`] says, from the text the select list gives it
//! (`pg_select_expression`): the same values as the typed reads they replace.

use serde_json::Value;

use super::PgRead;
use crate::source;

/// Cuts COPY data into windows of whole lines, `size` lines each (the last one may be
/// shorter, and may end without a line end, which [`CopyRows::read`] then reports).
#[derive(Debug)]
pub(super) struct CopyWindows {
    size: usize,
    /// The lines of the window being filled.
    data: Vec<u8>,
    /// How many lines `data` holds.
    lines: usize,
}

impl CopyWindows {
    pub(super) fn new(size: usize) -> Self {
        CopyWindows {
            size: size.max(1),
            data: Vec::new(),
            lines: 0,
        }
    }

    /// Adds `chunk`; each window it completes goes to `full` with its line count.
    pub(super) fn feed(&mut self, mut chunk: &[u8], full: &mut Vec<(Vec<u8>, usize)>) {
        while !chunk.is_empty() {
            let wanted = self.size - self.lines;
            let mut found = 0;
            let end = memchr::memchr_iter(b'\n', chunk).find(|_| {
                found += 1;
                found == wanted
            });
            match end {
                Some(at) => {
                    self.data.extend_from_slice(&chunk[..=at]);
                    let capacity = self.data.capacity();
                    let data = std::mem::replace(&mut self.data, Vec::with_capacity(capacity));
                    full.push((data, self.size));
                    self.lines = 0;
                    chunk = &chunk[at + 1..];
                }
                None => {
                    self.data.extend_from_slice(chunk);
                    self.lines += found;
                    return;
                }
            }
        }
    }

    /// The last window, unless the data ended with a full one; a line without its end
    /// counts as a row.
    pub(super) fn finish(self) -> Option<(Vec<u8>, usize)> {
        if self.data.is_empty() {
            return None;
        }
        let unfinished = usize::from(self.data.last() != Some(&b'\n'));
        Some((self.data, self.lines + unfinished))
    }
}

/// Turns windows of whole COPY lines ([`CopyWindows`]) into rows.
#[derive(Debug)]
pub(super) struct CopyRows {
    reads: Vec<PgRead>,
    /// Rows read so far (for error messages).
    rows: u64,
}

impl CopyRows {
    pub(super) fn new(reads: Vec<PgRead>) -> Self {
        CopyRows { reads, rows: 0 }
    }

    /// Reads the lines of `window` into `out`; a window ending inside a line (only the
    /// data's last one can) is an error.
    pub(super) fn read(&mut self, window: &[u8], out: &mut Vec<Vec<Value>>) -> Result<(), String> {
        let mut rest = window;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            out.push(self.row(&rest[..end])?);
            rest = &rest[end + 1..];
        }
        if rest.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the COPY data ended inside row {} ({} bytes without a line end)",
                self.rows + 1,
                rest.len()
            ))
        }
    }

    fn row(&mut self, line: &[u8]) -> Result<Vec<Value>, String> {
        self.rows += 1;
        // One UTF-8 check for the whole line; its fields are then slices of it (a tab is
        // ASCII, so every field boundary is a character boundary). A line that fails is
        // checked field by field, so the error names the column.
        let text = std::str::from_utf8(line).ok();
        let mut values = Vec::with_capacity(self.reads.len());
        // One scan of the line finds every tab and backslash.
        let mut specials = memchr::memchr2_iter(b'\t', b'\\', line);
        let mut start = 0;
        // Whether the line's last field (the one no tab follows) was read.
        let mut last = false;
        for (index, read) in self.reads.iter().enumerate() {
            if last {
                return Err(format!(
                    "row {} has {index} columns, {} expected",
                    self.rows,
                    self.reads.len()
                ));
            }
            let mut escaped = false;
            // The byte after a backslash is escaped, never a delimiter.
            let mut escaped_until = 0;
            let end = loop {
                match specials.next() {
                    Some(at) if at < escaped_until => {}
                    Some(at) if line.get(at) == Some(&b'\t') => break at,
                    Some(at) => {
                        escaped = true;
                        escaped_until = at + 2;
                    }
                    None => {
                        last = true;
                        break line.len();
                    }
                }
            };
            let field = line.get(start..end).unwrap_or_default();
            let field_text = if escaped {
                None
            } else {
                text.and_then(|text| text.get(start..end))
            };
            let value = field_value(field, field_text, escaped, *read)
                .map_err(|error| format!("row {}, column {}: {error}", self.rows, index + 1))?;
            values.push(value);
            start = end + 1;
        }
        if !last {
            return Err(format!(
                "row {} has more than the {} expected columns",
                self.rows,
                self.reads.len()
            ));
        }
        Ok(values)
    }
}

/// One column's value; `text` is the field as text when the line was checked as UTF-8
/// and the field has no escape.
fn field_value(
    field: &[u8],
    text: Option<&str>,
    escaped: bool,
    read: PgRead,
) -> Result<Value, String> {
    if field == b"\\N" {
        return Ok(Value::Null);
    }
    let text = if escaped {
        unescape(field)?
    } else if let Some(text) = text {
        text.to_owned()
    } else {
        std::str::from_utf8(field)
            .map(str::to_owned)
            .map_err(|_| "the value is not valid UTF-8".to_string())?
    };
    let parsed = match read {
        PgRead::Text => Value::String(text),
        PgRead::Bool => match text.as_str() {
            "t" => Value::Bool(true),
            "f" => Value::Bool(false),
            other => return Err(format!("{other:?} is not a boolean (t or f)")),
        },
        PgRead::Int2 | PgRead::Int4 | PgRead::Int8 => text
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("{text:?} is not an integer"))?,
        PgRead::Float4 => text
            .parse::<f32>()
            .map(|value| source::float(f64::from(value)))
            .map_err(|_| format!("{text:?} is not a number"))?,
        PgRead::Float8 => text
            .parse::<f64>()
            .map(source::float)
            .map_err(|_| format!("{text:?} is not a number"))?,
        PgRead::Decimal => source::decimal(&text),
        PgRead::Timestamp => source::text_timestamp(&text),
        PgRead::Json | PgRead::Array => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        PgRead::Bytes => source::base64(&hex_bytes(&text)?),
    };
    Ok(parsed)
}

/// The text of a field with its backslash escapes resolved.
fn unescape(field: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(field.len());
    let mut bytes = field.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        let Some(escaped) = bytes.next() else {
            return Err("the value ends with a lone backslash".into());
        };
        let resolved = match escaped {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            // `\x` and one or two hex digits, `\` and one to three octal digits.
            b'x' if bytes.peek().is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u8;
                for _ in 0..2 {
                    match bytes.peek().and_then(|b| char::from(*b).to_digit(16)) {
                        Some(digit) => {
                            value = value.wrapping_mul(16).wrapping_add(digit as u8);
                            bytes.next();
                        }
                        None => break,
                    }
                }
                value
            }
            b'0'..=b'7' => {
                let mut value = escaped - b'0';
                for _ in 0..2 {
                    match bytes.peek() {
                        Some(digit @ b'0'..=b'7') => {
                            value = value.wrapping_mul(8).wrapping_add(digit - b'0');
                            bytes.next();
                        }
                        _ => break,
                    }
                }
                value
            }
            other => other,
        };
        out.push(resolved);
    }
    String::from_utf8(out).map_err(|_| "the value is not valid UTF-8".to_string())
}

/// The bytes of `encode(…, 'hex')` text.
fn hex_bytes(text: &str) -> Result<Vec<u8>, String> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("{text:?} is not hex-encoded bytes"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let high = char::from(pair[0]).to_digit(16);
            let low = char::from(pair[1]).to_digit(16);
            match (high, low) {
                (Some(high), Some(low)) => Ok((high * 16 + low) as u8),
                _ => Err(format!("{text:?} is not hex-encoded bytes")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The rows of COPY data arriving as `chunks`, read window by window as the reader
    /// does.
    fn rows(reads: Vec<PgRead>, chunks: &[&[u8]]) -> Result<Vec<Vec<Value>>, String> {
        let mut split = CopyWindows::new(2);
        let mut windows = Vec::new();
        for chunk in chunks {
            split.feed(chunk, &mut windows);
        }
        windows.extend(split.finish());
        let mut parser = CopyRows::new(reads);
        let mut out = Vec::new();
        for (window, _) in windows {
            parser.read(&window, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn reads_every_kind_of_column() {
        let reads = vec![
            PgRead::Int4,
            PgRead::Text,
            PgRead::Bool,
            PgRead::Float8,
            PgRead::Float4,
            PgRead::Decimal,
            PgRead::Timestamp,
            PgRead::Json,
            PgRead::Array,
            PgRead::Bytes,
            PgRead::Int8,
        ];
        let line = b"7\tA\\tb\\\\c\\nd\tt\t0.5\t0.1\t12.50\t2024-01-02 01:04:05.25+00\t{\"a\": [1, 2]}\t[\"x\",\"y\"]\t0102ff\t-9007199254740993\n";
        let got = rows(reads.clone(), &[line]).unwrap();
        assert_eq!(
            Value::Array(got[0].clone()),
            json!([7, "A\tb\\c\nd", true, 0.5, f64::from(0.1f32), 12.5,
                   "2024-01-02T01:04:05.250Z", {"a": [1, 2]}, ["x", "y"], "AQL/",
                   -9_007_199_254_740_993i64])
        );
        let nulls = "\\N\t".repeat(reads.len() - 1) + "\\N\n";
        let got = rows(reads, &[nulls.as_bytes()]).unwrap();
        assert!(got[0].iter().all(Value::is_null));
    }

    #[test]
    fn special_floats_and_escapes() {
        let got = rows(
            vec![PgRead::Float8, PgRead::Float8, PgRead::Float8, PgRead::Text],
            &[b"Infinity\t-Infinity\tNaN\t\\b\\f\\v\\r\\101\\x42\\\\N\n"],
        )
        .unwrap();
        assert_eq!(got[0][0], json!("inf"));
        assert_eq!(got[0][1], json!("-inf"));
        assert_eq!(got[0][2], json!("NaN"));
        assert_eq!(got[0][3], json!("\u{8}\u{c}\u{b}\rAB\\N"));
    }

    #[test]
    fn empty_values_and_escapes_next_to_tabs() {
        // Line 2: an escaped backslash before a tab, an escaped tab, two escaped backslashes.
        let data = "\t\t\n".to_string() + r"a\\" + "\t" + r"b\t" + "\t" + r"\\\\" + "\n";
        let got = rows(
            vec![PgRead::Text, PgRead::Text, PgRead::Text],
            &[data.as_bytes()],
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                vec![json!(""), json!(""), json!("")],
                vec![json!(r"a\"), json!("b\t"), json!(r"\\")]
            ]
        );
    }

    #[test]
    fn rows_split_across_chunks() {
        let got = rows(
            vec![PgRead::Int4, PgRead::Text],
            // `é` is split between two chunks.
            &[b"1\t\xc3", b"\xa9lan\n2\t", b"", b"x\n3\t\\N\n"],
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                vec![json!(1), json!("élan")],
                vec![json!(2), json!("x")],
                vec![json!(3), Value::Null]
            ]
        );
    }

    /// The windows `size` cuts `chunks` into: (text, line count).
    fn windows(size: usize, chunks: &[&[u8]]) -> Vec<(String, usize)> {
        let mut split = CopyWindows::new(size);
        let mut full = Vec::new();
        for chunk in chunks {
            split.feed(chunk, &mut full);
        }
        full.extend(split.finish());
        full.into_iter()
            .map(|(data, lines)| (String::from_utf8(data).unwrap(), lines))
            .collect()
    }

    #[test]
    fn windows_hold_whole_lines() {
        let owned = |cuts: &[(&str, usize)]| -> Vec<(String, usize)> {
            cuts.iter().map(|(t, n)| (t.to_string(), *n)).collect()
        };
        // One line a chunk, as the server sends them; the last window is shorter.
        assert_eq!(
            windows(2, &[b"a\n", b"b\n", b"c\n"]),
            owned(&[("a\nb\n", 2), ("c\n", 1)])
        );
        // A chunk holding several lines across window ends, and a line split across
        // chunks; data ending on a window's end leaves no empty window.
        assert_eq!(
            windows(2, &[b"a\nb\nc\nd", b"d\ne", b"\n"]),
            owned(&[("a\nb\n", 2), ("c\ndd\n", 2), ("e\n", 1)])
        );
        assert_eq!(
            windows(3, &[b"a\nb\nc\nd\ne\nf\n"]),
            owned(&[("a\nb\nc\n", 3), ("d\ne\nf\n", 3)])
        );
        // An unfinished last line is a row of the last window (the parser reports it).
        assert_eq!(windows(5, &[b"a\nb"]), owned(&[("a\nb", 2)]));
        assert_eq!(windows(1, &[b"x\n"]), owned(&[("x\n", 1)]));
        assert!(windows(4, &[b"", b""]).is_empty());
    }

    #[test]
    fn malformed_data_is_an_error() {
        let text = || vec![PgRead::Int4, PgRead::Text];
        let cases: [(Vec<PgRead>, &[u8], &str); 7] = [
            (text(), b"1\n", "row 1 has 1 columns"),
            (text(), b"1\ta\tb\n", "more than"),
            (text(), b"x\ta\n", "not an integer"),
            (text(), b"1\ta", "ended inside row 1"),
            (
                text(),
                b"1\t\xff\n",
                "column 2: the value is not valid UTF-8",
            ),
            (vec![PgRead::Bytes], b"0g\n", "hex"),
            (vec![PgRead::Bool], b"yes\n", "boolean"),
        ];
        for (reads, data, expected) in cases {
            let error = rows(reads, &[data]).unwrap_err();
            assert!(
                error.contains(expected),
                "{error:?} should mention {expected:?}"
            );
        }
    }
}
