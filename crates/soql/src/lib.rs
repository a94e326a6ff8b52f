//! `ferry-soql`: the SOQL subset Ferry speaks (spec `salesforce-api.md` §5), shared by the
//! Salesforce client (which builds queries from data and must never allow injection) and
//! the Salesforce emulator (which executes queries against in-memory records).
//!
//! # Layout
//! - [`ast`]: the syntax tree ([`Query`], [`SelectItem`], [`Condition`], [`Literal`], ...).
//! - [`date_literal`]: relative date literals (`TODAY`, `LAST_N_DAYS:n`, ...) and their UTC
//!   ranges.
//! - [`lexer`]: text → tokens with 1-based row/column positions.
//! - [`parser`]: tokens → [`Query`]; entry point [`parse`].
//! - [`printer`]: `Display` for the AST, printing canonical SOQL that re-parses to an equal
//!   tree.
//! - [`escape`]: literal quoting and formatting for query builders ([`quote_string`],
//!   [`escape_like`], [`format_datetime`], [`format_date`], [`is_valid_identifier`]).
//! - [`like`]: LIKE pattern matching for the executor.
//! - [`error`]: [`SoqlError`] with Salesforce's error codes and message layout.
//!
//! # Example
//!
//! ```
//! use ferry_soql::{parse, quote_string, Condition, Literal};
//!
//! // Building a query from data: literals are quoted, names validated.
//! let name = "O'Brien";
//! let soql = format!("SELECT Id FROM Contact WHERE LastName = {}", quote_string(name));
//! let query = parse(&soql)?;
//! let Some(Condition::Comparison { value, .. }) = &query.where_ else { unreachable!() };
//! assert_eq!(value, &Literal::String(name.to_owned()));
//! assert_eq!(query.invalid_name(), None);
//!
//! // Errors carry Salesforce's code and caret diagram.
//! let error = parse("SELECT Id FROM Account WHERE").unwrap_err();
//! assert_eq!(error.error_code(), "MALFORMED_QUERY");
//! assert!(error.message.ends_with("ERROR at Row:1:Column:29\nunexpected token: <EOF>"));
//!
//! // Printing gives canonical SOQL.
//! assert_eq!(
//!     parse("select id from account where name like 'a%' limit 5")?.to_string(),
//!     "SELECT id FROM account WHERE name LIKE 'a%' LIMIT 5"
//! );
//! # Ok::<(), ferry_soql::SoqlError>(())
//! ```
//!
//! # Deliberately unsupported (MALFORMED_QUERY)
//! `TYPEOF`, `ALL ROWS`, `FOR UPDATE`, `USING SCOPE`, `WITH DATA CATEGORY`,
//! `GROUP BY ROLLUP/CUBE`, date functions (`CALENDAR_YEAR(...)`), aliases on plain fields,
//! and Apex bind variables (`:name`). Fiscal date literals use the calendar year (see
//! [`date_literal`]).

pub mod ast;
pub mod date_literal;
pub mod error;
pub mod escape;
pub mod lexer;
pub mod like;
pub mod parser;
pub mod printer;

pub use ast::{
    AggregateFunction, ComparisonOp, Condition, FieldPath, FieldsKind, ForClause, FromClause,
    InValues, Literal, NullsOrder, Operand, OrderDirection, OrderItem, Position, Query, SelectItem,
    WithClause,
};
pub use date_literal::DateLiteral;
pub use error::{ErrorKind, SoqlError};
pub use escape::{
    escape_like, escape_string, format_date, format_datetime, is_valid_field_path,
    is_valid_identifier, quote_string,
};
pub use like::like_matches;
pub use parser::{is_reserved_word, parse};
