//! PostgreSQL loading: `COPY <staging> FROM STDIN (FORMAT csv)`, streamed in chunks.

use sqlx::postgres::PgConnection;

use super::destination::Destination;
use super::run::BulkError;
use super::source::Row;

/// Bytes of CSV sent per `COPY` message.
const CHUNK_BYTES: usize = 1 << 20;

/// Appends one CSV line: every present value quoted (so an empty string stays an empty
/// string), `None` as an unquoted empty field (COPY's CSV null).
fn push_csv_line(out: &mut Vec<u8>, row: &Row, columns: usize) {
    for index in 0..columns {
        if index > 0 {
            out.push(b',');
        }
        if let Some(Some(value)) = row.get(index) {
            out.push(b'"');
            for byte in value.bytes() {
                if byte == b'"' {
                    out.push(b'"');
                }
                out.push(byte);
            }
            out.push(b'"');
        }
    }
    out.push(b'\n');
}

pub(crate) fn copy_rows<'a>(
    conn: &'a mut PgConnection,
    destination: &'a Destination,
    table: &'a str,
    columns: &'a [String],
    rows: &'a [Row],
) -> super::run::SendFuture<'a, Result<(), BulkError>> {
    Box::pin(async move {
        let names: Vec<String> = columns.iter().map(|c| destination.quote(c)).collect();
        let statement = format!(
            "COPY {} ({}) FROM STDIN WITH (FORMAT csv)",
            table,
            names.join(", ")
        );
        let map_error = |source| BulkError::database("COPY", source);
        let mut copy = conn.copy_in_raw(&statement).await.map_err(map_error)?;
        let mut buffer = Vec::with_capacity(CHUNK_BYTES + 4096);
        for row in rows {
            push_csv_line(&mut buffer, row, columns.len());
            if buffer.len() >= CHUNK_BYTES {
                if let Err(error) = copy.send(std::mem::take(&mut buffer)).await {
                    let _ = copy.abort("send failed").await;
                    return Err(map_error(error));
                }
                buffer.reserve(CHUNK_BYTES + 4096);
            }
        }
        if !buffer.is_empty()
            && let Err(error) = copy.send(buffer).await
        {
            let _ = copy.abort("send failed").await;
            return Err(map_error(error));
        }
        copy.finish().await.map_err(map_error)?;
        Ok(())
    })
}

/// `COPY <table> (<columns>) FROM STDIN (FORMAT csv)` of ready CSV rows, sent in
/// CopyData messages of at most [`CHUNK_BYTES`] (PostgreSQL reads them as one stream, so a
/// message may end mid-row).
pub(crate) fn copy_csv<'a>(
    conn: &'a mut PgConnection,
    destination: &'a Destination,
    table: &'a str,
    columns: &'a [String],
    csv: &'a [u8],
) -> super::run::SendFuture<'a, Result<(), BulkError>> {
    Box::pin(async move {
        let names: Vec<String> = columns.iter().map(|c| destination.quote(c)).collect();
        let statement = format!(
            "COPY {} ({}) FROM STDIN WITH (FORMAT csv)",
            table,
            names.join(", ")
        );
        let map_error = |source| BulkError::database("COPY", source);
        let mut copy = conn.copy_in_raw(&statement).await.map_err(map_error)?;
        for chunk in csv.chunks(CHUNK_BYTES) {
            if let Err(error) = copy.send(chunk).await {
                let _ = copy.abort("send failed").await;
                return Err(map_error(error));
            }
        }
        copy.finish().await.map_err(map_error)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_keep_null_and_empty_apart() {
        let mut out = Vec::new();
        push_csv_line(
            &mut out,
            &vec![
                Some("a\"b".into()),
                None,
                Some(String::new()),
                Some("x,\ny".into()),
            ],
            4,
        );
        assert_eq!(out, b"\"a\"\"b\",,\"\",\"x,\ny\"\n");
    }
}
