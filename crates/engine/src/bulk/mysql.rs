//! MySQL / MariaDB loading: multi-row `INSERT ... ON DUPLICATE KEY UPDATE` into the
//! staging table (the last row per key wins), values bound as text.

use sqlx::mysql::MySqlConnection;

use super::destination::{Destination, multi_row_insert, rows_per_insert};
use super::run::BulkError;
use super::source::Row;

/// MySQL's prepared-statement placeholder limit.
const MAX_PLACEHOLDERS: usize = 65_535;

pub(crate) fn insert_rows<'a>(
    conn: &'a mut MySqlConnection,
    destination: &'a Destination,
    table: &'a str,
    columns: &'a [String],
    rows: &'a [Row],
) -> super::run::SendFuture<'a, Result<(), BulkError>> {
    Box::pin(async move {
        let per = rows_per_insert(columns.len(), MAX_PLACEHOLDERS);
        let updates: Vec<String> = columns
            .iter()
            .skip(1)
            .map(|c| {
                let q = destination.quote(c);
                format!("{q} = VALUES({q})")
            })
            .collect();
        let tail = if updates.is_empty() {
            String::new()
        } else {
            format!(" ON DUPLICATE KEY UPDATE {}", updates.join(", "))
        };
        let head = if updates.is_empty() {
            "INSERT IGNORE INTO"
        } else {
            "INSERT INTO"
        };
        let full = multi_row_insert(destination, table, columns, per, head, &tail);
        for chunk in rows.chunks(per) {
            let partial;
            let sql = if chunk.len() == per {
                full.as_str()
            } else {
                partial = multi_row_insert(destination, table, columns, chunk.len(), head, &tail);
                partial.as_str()
            };
            let mut query = sqlx::query(sql);
            for row in chunk {
                for index in 0..columns.len() {
                    query = query.bind(row.get(index).cloned().flatten());
                }
            }
            sqlx::Executor::execute(&mut *conn, query)
                .await
                .map_err(|source| BulkError::database("INSERT INTO staging", source))?;
        }
        Ok(())
    })
}
