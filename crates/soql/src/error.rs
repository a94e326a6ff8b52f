//! [`SoqlError`]: a Salesforce-style query error (`MALFORMED_QUERY`, `INVALID_FIELD`,
//! `INVALID_TYPE`) with the message wording and caret diagram Salesforce uses:
//!
//! ```text
//! SELECT Id FROM Account WHERE
//!                             ^
//! ERROR at Row:1:Column:29
//! unexpected token: <EOF>
//! ```
//!
//! The parser only produces `MALFORMED_QUERY`. The schema checks (unknown object or field)
//! belong to the executor, which builds its errors with [`SoqlError::invalid_type`],
//! [`SoqlError::invalid_field`] and [`SoqlError::invalid_relationship`] so the wording
//! matches Salesforce's.

use crate::ast::Position;

/// The Salesforce `errorCode` of a query error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `MALFORMED_QUERY`: a syntax error or an unsupported construct.
    MalformedQuery,
    /// `INVALID_FIELD`: an unknown field or relationship.
    InvalidField,
    /// `INVALID_TYPE`: an unknown object in `FROM`.
    InvalidType,
}

impl ErrorKind {
    /// The Salesforce error code string (`MALFORMED_QUERY`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::MalformedQuery => "MALFORMED_QUERY",
            ErrorKind::InvalidField => "INVALID_FIELD",
            ErrorKind::InvalidType => "INVALID_TYPE",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A query error, ready to be returned as `{"errorCode": .., "message": ..}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SoqlError {
    /// The error class; [`SoqlError::error_code`] gives its Salesforce string.
    pub code: ErrorKind,
    /// The full Salesforce-style message: the offending query line, a caret line and
    /// `ERROR at Row:r:Column:c` before the detail when the position is known, otherwise
    /// just the detail.
    pub message: String,
    /// The last line of `message` (`unexpected token: <EOF>`).
    pub detail: String,
    /// 1-based row of the offending token, when known.
    pub row: Option<u32>,
    /// 1-based column (in characters) of the offending token, when known.
    pub column: Option<u32>,
}

impl SoqlError {
    /// An error of any kind. `query` is the full query text, used for the diagram when
    /// `position` is given.
    pub fn new(
        code: ErrorKind,
        query: &str,
        position: Option<Position>,
        detail: impl Into<String>,
    ) -> Self {
        let detail = detail.into();
        Self {
            code,
            message: format_message(query, position, &detail),
            detail,
            row: position.map(|position| position.row),
            column: position.map(|position| position.column),
        }
    }

    /// A `MALFORMED_QUERY` error with the given detail.
    pub fn malformed(query: &str, position: Option<Position>, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::MalformedQuery, query, position, detail)
    }

    /// `MALFORMED_QUERY` `unexpected token: 'X'`, or `unexpected token: <EOF>` when `token`
    /// is `None`.
    pub fn unexpected_token(query: &str, position: Option<Position>, token: Option<&str>) -> Self {
        let detail = match token {
            Some(token) => format!("unexpected token: '{token}'"),
            None => "unexpected token: <EOF>".to_owned(),
        };
        Self::malformed(query, position, detail)
    }

    /// `INVALID_TYPE` for an unknown object in `FROM` (use [`crate::ast::FromClause::position`]).
    pub fn invalid_type(query: &str, position: Option<Position>, object: &str) -> Self {
        Self::new(
            ErrorKind::InvalidType,
            query,
            position,
            invalid_type_message(object),
        )
    }

    /// `INVALID_FIELD` for an unknown field (use [`crate::ast::FieldPath::position`]).
    pub fn invalid_field(
        query: &str,
        position: Option<Position>,
        field: &str,
        entity: &str,
    ) -> Self {
        Self::new(
            ErrorKind::InvalidField,
            query,
            position,
            invalid_field_message(field, entity),
        )
    }

    /// `INVALID_FIELD` for an unknown relationship in a field path.
    pub fn invalid_relationship(
        query: &str,
        position: Option<Position>,
        relationship: &str,
    ) -> Self {
        Self::new(
            ErrorKind::InvalidField,
            query,
            position,
            invalid_relationship_message(relationship),
        )
    }

    /// The Salesforce `errorCode` string (`MALFORMED_QUERY`, `INVALID_FIELD`, ...).
    pub fn error_code(&self) -> &'static str {
        self.code.as_str()
    }

    /// The position, when known.
    pub fn position(&self) -> Option<Position> {
        Some(Position {
            row: self.row?,
            column: self.column?,
        })
    }
}

/// Salesforce's INVALID_TYPE wording for an unknown object.
pub fn invalid_type_message(object: &str) -> String {
    format!(
        "sObject type '{object}' is not supported. If you are attempting to use a custom \
         object, be sure to append the '__c' after the entity name. Please reference your \
         WSDL or the describe call for the appropriate names."
    )
}

/// Salesforce's INVALID_FIELD wording for an unknown field in a query.
pub fn invalid_field_message(field: &str, entity: &str) -> String {
    format!(
        "No such column '{field}' on entity '{entity}'. If you are attempting to use a \
         custom field, be sure to append the '__c' after the custom field name. Please \
         reference your WSDL or the describe call for the appropriate names."
    )
}

/// Salesforce's INVALID_FIELD wording for an unknown relationship in a field path.
pub fn invalid_relationship_message(relationship: &str) -> String {
    format!(
        "Didn't understand relationship '{relationship}' in field path. If you are \
         attempting to use a custom relationship, be sure to append the '__r' after the \
         custom relationship name. Please reference your WSDL or the describe call for the \
         appropriate names."
    )
}

/// Formats `detail` with the query line, caret and `ERROR at Row:r:Column:c` header when
/// `position` is known (the caret sits under column `c`, which may be one past the end of
/// the line for `<EOF>`).
pub fn format_message(query: &str, position: Option<Position>, detail: &str) -> String {
    let Some(position) = position else {
        return detail.to_owned();
    };
    let row_index = usize::try_from(position.row.saturating_sub(1)).unwrap_or(usize::MAX);
    let line = query
        .split('\n')
        .nth(row_index)
        .unwrap_or("")
        .trim_end_matches('\r');
    let padding = usize::try_from(position.column.saturating_sub(1)).unwrap_or(0);
    format!(
        "{line}\n{caret:>width$}\nERROR at Row:{row}:Column:{column}\n{detail}",
        caret = "^",
        width = padding + 1,
        row = position.row,
        column = position.column,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagram_matches_salesforce_layout() {
        let query = "SELECT Id FROM Account WHERE";
        let error = SoqlError::unexpected_token(query, Some(Position { row: 1, column: 29 }), None);
        assert_eq!(error.error_code(), "MALFORMED_QUERY");
        assert_eq!(
            error.message,
            format!(
                "{query}\n{}^\nERROR at Row:1:Column:29\nunexpected token: <EOF>",
                " ".repeat(28)
            )
        );
        assert_eq!(error.detail, "unexpected token: <EOF>");
        assert_eq!(error.to_string(), error.message);
        assert_eq!(error.position(), Some(Position { row: 1, column: 29 }));
    }

    #[test]
    fn diagram_uses_the_offending_line() {
        let query = "SELECT Id\r\nFROM Account\nWHERE Name = 'x' OR";
        let error = SoqlError::unexpected_token(
            query,
            Some(Position { row: 2, column: 6 }),
            Some("Account"),
        );
        assert_eq!(
            error.message,
            "FROM Account\n     ^\nERROR at Row:2:Column:6\nunexpected token: 'Account'"
        );
    }

    #[test]
    fn schema_errors_use_salesforce_wording() {
        let query = "SELECT Id FROM Foo";
        let error = SoqlError::invalid_type(query, Some(Position { row: 1, column: 16 }), "Foo");
        assert_eq!(error.error_code(), "INVALID_TYPE");
        assert!(error.message.starts_with("SELECT Id FROM Foo\n               ^\nERROR at Row:1:Column:16\nsObject type 'Foo' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."));

        let error = SoqlError::invalid_field("SELECT Foo FROM Account", None, "Foo", "Account");
        assert_eq!(error.error_code(), "INVALID_FIELD");
        assert_eq!(error.row, None);
        assert_eq!(
            error.message,
            "No such column 'Foo' on entity 'Account'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names."
        );

        let error = SoqlError::invalid_relationship("q", None, "Acount");
        assert_eq!(error.code, ErrorKind::InvalidField);
        assert!(
            error
                .detail
                .starts_with("Didn't understand relationship 'Acount' in field path.")
        );
    }
}
