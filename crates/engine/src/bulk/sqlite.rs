//! SQLite loading: multi-row `INSERT OR REPLACE` into the staging table (the last row per
//! key wins), values bound as text.

use sqlx::sqlite::SqliteConnection;

use super::destination::{Destination, multi_row_insert, rows_per_insert};
use super::run::BulkError;
use super::source::Row;

/// SQLite's default `SQLITE_MAX_VARIABLE_NUMBER` (3.32 and later).
const MAX_PLACEHOLDERS: usize = 32_766;

pub(crate) fn insert_rows<'a>(
    conn: &'a mut SqliteConnection,
    destination: &'a Destination,
    table: &'a str,
    columns: &'a [String],
    rows: &'a [Row],
) -> super::run::SendFuture<'a, Result<(), BulkError>> {
    Box::pin(async move {
        let per = rows_per_insert(columns.len(), MAX_PLACEHOLDERS);
        let head = "INSERT OR REPLACE INTO";
        let full = multi_row_insert(destination, table, columns, per, head, "");
        for chunk in rows.chunks(per) {
            let partial;
            let sql = if chunk.len() == per {
                full.as_str()
            } else {
                partial = multi_row_insert(destination, table, columns, chunk.len(), head, "");
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
