//! Compact row encoding: one heap allocation per record holding only its non-null cells,
//! sorted by column: `[col u16][tag u8][payload]…`. A million 20-field Accounts take a few
//! hundred MB instead of gigabytes of 24-byte `Val`s per column of the object.

use crate::value::Val;

/// How long deleted records stay in the recycle bin before they are purged.
pub const RECYCLE_BIN_MS: i64 = 15 * 86_400_000;

const T_FALSE: u8 = 0;
const T_TRUE: u8 = 1;
const T_INT: u8 = 2;
const T_NUM: u8 = 3;
const T_STR8: u8 = 4;
const T_STR32: u8 = 5;
const T_DATE: u8 = 6;
const T_DATETIME: u8 = 7;

/// A stored record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    data: Box<[u8]>,
    /// When it went to the recycle bin.
    pub deleted_ms: Option<i64>,
}

fn payload_len(tag: u8, rest: &[u8]) -> usize {
    match tag {
        T_FALSE | T_TRUE => 0,
        T_INT | T_NUM | T_DATETIME => 8,
        T_DATE => 4,
        T_STR8 => 1 + rest.first().copied().unwrap_or(0) as usize,
        T_STR32 => {
            4 + rest
                .get(..4)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        }
        _ => rest.len(),
    }
}

fn arr8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

impl Row {
    /// Encodes cells (index = column); nulls are not stored.
    pub fn from_vals(vals: &[Val], deleted_ms: Option<i64>) -> Row {
        let mut out: Vec<u8> = Vec::with_capacity(vals.len() * 12);
        for (col, v) in vals.iter().enumerate() {
            if v.is_null() {
                continue;
            }
            out.extend_from_slice(&(col as u16).to_le_bytes());
            match v {
                Val::Null => {}
                Val::Bool(false) => out.push(T_FALSE),
                Val::Bool(true) => out.push(T_TRUE),
                Val::Int(i) => {
                    out.push(T_INT);
                    out.extend_from_slice(&i.to_le_bytes());
                }
                Val::Num(n) => {
                    out.push(T_NUM);
                    out.extend_from_slice(&n.to_le_bytes());
                }
                Val::Str(s) => {
                    if s.len() < 256 {
                        out.push(T_STR8);
                        out.push(s.len() as u8);
                    } else {
                        out.push(T_STR32);
                        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    }
                    out.extend_from_slice(s.as_bytes());
                }
                Val::Date(d) => {
                    out.push(T_DATE);
                    out.extend_from_slice(&d.to_le_bytes());
                }
                Val::DateTime(ms) => {
                    out.push(T_DATETIME);
                    out.extend_from_slice(&ms.to_le_bytes());
                }
            }
        }
        Row {
            data: out.into_boxed_slice(),
            deleted_ms,
        }
    }

    /// Finds a column's (tag, payload).
    fn cell(&self, col: usize) -> Option<(u8, &[u8])> {
        let d = &self.data;
        let mut i = 0;
        while i + 3 <= d.len() {
            let c = u16::from_le_bytes([d[i], d[i + 1]]) as usize;
            let tag = d[i + 2];
            let len = payload_len(tag, &d[i + 3..]);
            let end = (i + 3 + len).min(d.len());
            if c == col {
                return Some((tag, &d[i + 3..end]));
            }
            if c > col {
                return None;
            }
            i = end;
        }
        None
    }

    /// Borrowed text of a column, when it holds a string.
    pub fn get_str(&self, col: usize) -> Option<&str> {
        match self.cell(col)? {
            (T_STR8, p) => std::str::from_utf8(p.get(1..)?).ok(),
            (T_STR32, p) => std::str::from_utf8(p.get(4..)?).ok(),
            _ => None,
        }
    }

    /// The record id (column 0), when present.
    pub fn id_opt(&self) -> Option<&str> {
        self.get_str(0)
    }

    /// The record id (column 0), 15-char form.
    pub fn id(&self) -> &str {
        self.get_str(0).unwrap_or("")
    }

    /// Whether a boolean column is true.
    pub fn is_true(&self, col: usize) -> bool {
        matches!(self.cell(col), Some((T_TRUE, _)))
    }

    /// Decoded value of a column (Null when absent).
    pub fn get(&self, col: usize) -> Val {
        match self.cell(col) {
            None => Val::Null,
            Some((T_FALSE, _)) => Val::Bool(false),
            Some((T_TRUE, _)) => Val::Bool(true),
            Some((T_INT, p)) if p.len() >= 8 => Val::Int(i64::from_le_bytes(arr8(p))),
            Some((T_NUM, p)) if p.len() >= 8 => Val::Num(f64::from_le_bytes(arr8(p))),
            Some((T_DATETIME, p)) if p.len() >= 8 => Val::DateTime(i64::from_le_bytes(arr8(p))),
            Some((T_DATE, p)) if p.len() >= 4 => {
                Val::Date(i32::from_le_bytes([p[0], p[1], p[2], p[3]]))
            }
            Some((T_STR8 | T_STR32, _)) => self.get_str(col).map_or(Val::Null, Val::str),
            Some(_) => Val::Null,
        }
    }

    /// All cells as a dense vector of `ncols`.
    pub fn to_vals(&self, ncols: usize) -> Vec<Val> {
        let mut out = vec![Val::Null; ncols];
        let d = &self.data;
        let mut i = 0;
        while i + 3 <= d.len() {
            let c = u16::from_le_bytes([d[i], d[i + 1]]) as usize;
            let len = payload_len(d[i + 2], &d[i + 3..]);
            if c < ncols {
                out[c] = self.get(c);
            }
            i = (i + 3 + len).min(d.len());
        }
        out
    }

    /// Visible to `queryAll`: live, or in the recycle bin for less than 15 days at `now`.
    pub fn in_query_all(&self, now: i64) -> bool {
        self.deleted_ms.is_none_or(|d| now - d < RECYCLE_BIN_MS)
    }

    /// Heap bytes used by the encoding.
    pub fn encoded_len(&self) -> usize {
        self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let long = "x".repeat(300);
        let vals = vec![
            Val::str("001A"),
            Val::Null,
            Val::Bool(true),
            Val::Bool(false),
            Val::Int(-5),
            Val::Num(2.5),
            Val::str(&long),
            Val::Date(19_000),
            Val::DateTime(1_700_000_000_123),
            Val::str(""),
        ];
        let r = Row::from_vals(&vals, None);
        assert_eq!(r.to_vals(vals.len()), vals);
        assert_eq!(r.id(), "001A");
        assert!(r.is_true(2));
        assert!(!r.is_true(3));
        assert_eq!(r.get(1), Val::Null);
        assert_eq!(r.get(99), Val::Null);
        assert_eq!(r.get_str(6).map(str::len), Some(300));
    }
}
