//! The SOQL abstract syntax tree produced by [`crate::parse`] and printed back by the
//! `Display` impls in [`crate::printer`].
//!
//! Conventions the executor can rely on for trees built by the parser:
//! - names (objects, fields, aliases) keep the casing the user wrote; compare them
//!   case-insensitively;
//! - [`Condition::And`] and [`Condition::Or`] always hold at least two children, and a
//!   parenthesised group becomes its own nested node (`(A AND B) AND C` is
//!   `And[And[A, B], C]`);
//! - `X NOT LIKE 'p'` is represented as `Not(Comparison { op: Like, .. })`;
//! - source positions ([`Position`]) are informational and ignored by `PartialEq`/`Hash`,
//!   so a printed and re-parsed query compares equal to the original.

use std::hash::{Hash, Hasher};

use chrono::{DateTime, NaiveDate, Utc};

pub use crate::date_literal::DateLiteral;

/// A 1-based line (`row`) and column (in characters) inside the query text, as Salesforce
/// reports them in `ERROR at Row:1:Column:29`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// 1-based line number.
    pub row: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
}

/// A complete `SELECT` statement; also used for child-relationship subqueries in the select
/// list and for semi-join subqueries in `IN (...)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query {
    /// The select list, in the order written. Never empty.
    pub select: Vec<SelectItem>,
    /// The `FROM` object (or child relationship name, for a subquery in the select list).
    pub from: FromClause,
    /// The `WHERE` condition.
    pub where_: Option<Condition>,
    /// `WITH SECURITY_ENFORCED` / `WITH USER_MODE` / `WITH SYSTEM_MODE`: accepted and ignored.
    pub with: Option<WithClause>,
    /// `GROUP BY` fields, empty when there is no `GROUP BY`.
    pub group_by: Vec<FieldPath>,
    /// `HAVING` condition; only present together with a non-empty `group_by`. Its operands
    /// may be aggregates ([`Operand::Aggregate`]).
    pub having: Option<Condition>,
    /// `ORDER BY` items, empty when there is no `ORDER BY`.
    pub order_by: Vec<OrderItem>,
    /// `LIMIT n`.
    pub limit: Option<u64>,
    /// `OFFSET n` (Salesforce caps it at 2000; that check is the executor's job).
    pub offset: Option<u64>,
    /// `FOR VIEW` / `FOR REFERENCE`: accepted, no-op. (`FOR UPDATE` is rejected.)
    pub for_clause: Option<ForClause>,
}

impl Query {
    /// A `SELECT ... FROM object` query with no other clauses, for query builders.
    pub fn new(select: Vec<SelectItem>, from: FromClause) -> Self {
        Self {
            select,
            from,
            where_: None,
            with: None,
            group_by: Vec::new(),
            having: None,
            order_by: Vec::new(),
            limit: None,
            offset: None,
            for_clause: None,
        }
    }

    /// Whether this is an aggregate query (it has `GROUP BY` or selects an aggregate
    /// function), whose rows are `AggregateResult`s. `COUNT()` alone is not: it only
    /// yields `totalSize`.
    pub fn is_aggregate(&self) -> bool {
        !self.group_by.is_empty()
            || self
                .select
                .iter()
                .any(|item| matches!(item, SelectItem::Aggregate { .. }))
    }

    /// Whether the select list is exactly `COUNT()`.
    pub fn is_count_only(&self) -> bool {
        matches!(self.select.as_slice(), [SelectItem::CountAll])
    }

    /// The first object, field or alias name (in this query or a nested one) that is not
    /// a valid identifier, or that is a reserved word used as an alias. Query builders
    /// that put caller-supplied names into an AST must check that this is `None` before
    /// printing it: literals are always escaped by the printer, names cannot be.
    pub fn invalid_name(&self) -> Option<&str> {
        use crate::escape::is_valid_identifier;
        use crate::parser::is_reserved_word;

        fn bad_path(path: &FieldPath) -> Option<&str> {
            path.parts
                .iter()
                .map(String::as_str)
                .find(|part| !is_valid_identifier(part))
                .or(path.parts.is_empty().then_some(""))
        }
        fn bad_alias(alias: Option<&String>) -> Option<&str> {
            alias
                .map(String::as_str)
                .filter(|alias| !is_valid_identifier(alias) || is_reserved_word(alias))
        }
        fn bad_operand(operand: &Operand) -> Option<&str> {
            bad_path(operand.field())
        }
        fn bad_condition(condition: &Condition) -> Option<&str> {
            match condition {
                Condition::And(items) | Condition::Or(items) => {
                    items.iter().find_map(bad_condition)
                }
                Condition::Not(inner) => bad_condition(inner),
                Condition::Comparison { field, .. } => bad_operand(field),
                Condition::In { field, values, .. } => bad_operand(field).or(match values {
                    InValues::List(_) => None,
                    InValues::Subquery(query) => query.invalid_name(),
                }),
                Condition::Includes { field, .. } | Condition::Excludes { field, .. } => {
                    bad_path(field)
                }
            }
        }

        if !is_valid_identifier(&self.from.object) {
            return Some(&self.from.object);
        }
        bad_alias(self.from.alias.as_ref())
            .or_else(|| {
                self.select.iter().find_map(|item| match item {
                    SelectItem::Field(field) => bad_path(field),
                    SelectItem::Fields(_) | SelectItem::CountAll => None,
                    SelectItem::Aggregate { field, alias, .. }
                    | SelectItem::ConvertCurrency { field, alias }
                    | SelectItem::ToLabel { field, alias }
                    | SelectItem::Format { field, alias } => {
                        bad_path(field).or(bad_alias(alias.as_ref()))
                    }
                    SelectItem::Subquery(query) => query.invalid_name(),
                })
            })
            .or_else(|| self.where_.as_ref().and_then(bad_condition))
            .or_else(|| self.group_by.iter().find_map(bad_path))
            .or_else(|| self.having.as_ref().and_then(bad_condition))
            .or_else(|| {
                self.order_by
                    .iter()
                    .find_map(|item| bad_operand(&item.field))
            })
    }
}

/// `FROM Object [alias]`.
#[derive(Debug, Clone)]
pub struct FromClause {
    /// Object API name (`Account`, `My_Object__c`) or, in a select-list subquery, the child
    /// relationship name (`Contacts`).
    pub object: String,
    /// Optional alias (`FROM Account a`). Field paths may then start with the alias; see
    /// [`FieldPath::strip_alias`].
    pub alias: Option<String>,
    /// Where the object name starts in the query text, when parsed (for INVALID_TYPE
    /// diagrams). Ignored by equality.
    pub position: Option<Position>,
}

impl FromClause {
    /// A `FROM` clause without alias or position.
    pub fn new(object: impl Into<String>) -> Self {
        Self {
            object: object.into(),
            alias: None,
            position: None,
        }
    }
}

impl PartialEq for FromClause {
    fn eq(&self, other: &Self) -> bool {
        self.object == other.object && self.alias == other.alias
    }
}

impl Eq for FromClause {}

impl Hash for FromClause {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.object.hash(state);
        self.alias.hash(state);
    }
}

/// A dotted field reference: `Name`, `Account.Owner.Name`, or `a.Name` with an object
/// alias `a`. Parts keep the user's casing.
#[derive(Debug, Clone)]
pub struct FieldPath {
    /// The dot-separated parts, never empty.
    pub parts: Vec<String>,
    /// Where the path starts in the query text, when parsed (for INVALID_FIELD diagrams).
    /// Ignored by equality.
    pub position: Option<Position>,
}

impl FieldPath {
    /// A path from its parts, without position.
    pub fn new<S: Into<String>>(parts: impl IntoIterator<Item = S>) -> Self {
        Self {
            parts: parts.into_iter().map(Into::into).collect(),
            position: None,
        }
    }

    /// Parses `"Account.Owner.Name"` into a path (no validation of the parts).
    pub fn from_dotted(path: &str) -> Self {
        Self::new(path.split('.'))
    }

    /// The parts after removing a leading object alias (compared case-insensitively), so
    /// `a.Name` with alias `a` becomes `["Name"]`. A path that consists only of the alias is
    /// returned unchanged.
    pub fn strip_alias(&self, alias: Option<&str>) -> &[String] {
        match (alias, self.parts.split_first()) {
            (Some(alias), Some((first, rest)))
                if !rest.is_empty() && first.eq_ignore_ascii_case(alias) =>
            {
                rest
            }
            _ => &self.parts,
        }
    }

    /// The last part (the field name on the final object).
    pub fn last(&self) -> &str {
        self.parts.last().map(String::as_str).unwrap_or("")
    }
}

impl PartialEq for FieldPath {
    fn eq(&self, other: &Self) -> bool {
        self.parts == other.parts
    }
}

impl Eq for FieldPath {}

impl Hash for FieldPath {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts.hash(state);
    }
}

/// One entry of the select list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SelectItem {
    /// A plain or parent-relationship field: `Name`, `Account.Owner.Name`.
    Field(FieldPath),
    /// `FIELDS(ALL|STANDARD|CUSTOM)`.
    Fields(FieldsKind),
    /// `COUNT()`: the result is only `totalSize`, with no records.
    CountAll,
    /// `COUNT(Id)`, `SUM(Amount) total`, ...
    Aggregate {
        /// The aggregate function.
        function: AggregateFunction,
        /// Its argument.
        field: FieldPath,
        /// Optional alias; unaliased aggregates are named `expr0`, `expr1`, ... by position.
        alias: Option<String>,
    },
    /// `convertCurrency(Amount) [alias]`: the key stays `Amount` unless aliased.
    ConvertCurrency {
        /// The converted field.
        field: FieldPath,
        /// Optional alias.
        alias: Option<String>,
    },
    /// `toLabel(Status) [alias]`: picklist label instead of API value.
    ToLabel {
        /// The translated field.
        field: FieldPath,
        /// Optional alias.
        alias: Option<String>,
    },
    /// `FORMAT(Amount) [alias]`: locale-formatted value.
    Format {
        /// The formatted field.
        field: FieldPath,
        /// Optional alias.
        alias: Option<String>,
    },
    /// A child-relationship subquery `(SELECT Id FROM Contacts)`; `from.object` is the
    /// relationship name, not an object name.
    Subquery(Box<Query>),
}

/// The argument of `FIELDS(...)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldsKind {
    /// `FIELDS(ALL)`: needs `LIMIT` ≤ 200 (checked by the parser).
    All,
    /// `FIELDS(STANDARD)`.
    Standard,
    /// `FIELDS(CUSTOM)`: needs `LIMIT` ≤ 200 (checked by the parser).
    Custom,
}

impl FieldsKind {
    /// The keyword as printed (`ALL`, `STANDARD`, `CUSTOM`).
    pub fn as_str(self) -> &'static str {
        match self {
            FieldsKind::All => "ALL",
            FieldsKind::Standard => "STANDARD",
            FieldsKind::Custom => "CUSTOM",
        }
    }
}

/// Aggregate functions usable in the select list, `HAVING` and `ORDER BY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregateFunction {
    /// `COUNT(field)`: non-null values.
    Count,
    /// `COUNT_DISTINCT(field)`: distinct non-null values.
    CountDistinct,
    /// `SUM(field)`.
    Sum,
    /// `AVG(field)`.
    Avg,
    /// `MIN(field)`.
    Min,
    /// `MAX(field)`.
    Max,
}

impl AggregateFunction {
    /// The function name as printed (`COUNT`, `COUNT_DISTINCT`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateFunction::Count => "COUNT",
            AggregateFunction::CountDistinct => "COUNT_DISTINCT",
            AggregateFunction::Sum => "SUM",
            AggregateFunction::Avg => "AVG",
            AggregateFunction::Min => "MIN",
            AggregateFunction::Max => "MAX",
        }
    }

    /// Looks a function name up, case-insensitively.
    pub fn from_name(name: &str) -> Option<Self> {
        const ALL: [AggregateFunction; 6] = [
            AggregateFunction::Count,
            AggregateFunction::CountDistinct,
            AggregateFunction::Sum,
            AggregateFunction::Avg,
            AggregateFunction::Min,
            AggregateFunction::Max,
        ];
        ALL.into_iter()
            .find(|function| function.as_str().eq_ignore_ascii_case(name))
    }
}

/// `WITH ...` security clause (accepted, no effect in the emulator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WithClause {
    /// `WITH SECURITY_ENFORCED`.
    SecurityEnforced,
    /// `WITH USER_MODE`.
    UserMode,
    /// `WITH SYSTEM_MODE`.
    SystemMode,
}

impl WithClause {
    /// The keyword as printed after `WITH`.
    pub fn as_str(self) -> &'static str {
        match self {
            WithClause::SecurityEnforced => "SECURITY_ENFORCED",
            WithClause::UserMode => "USER_MODE",
            WithClause::SystemMode => "SYSTEM_MODE",
        }
    }
}

/// `FOR VIEW` / `FOR REFERENCE` (accepted, no-op). `FOR UPDATE` is a parse error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForClause {
    /// `FOR VIEW`.
    View,
    /// `FOR REFERENCE`.
    Reference,
}

impl ForClause {
    /// The keyword as printed after `FOR`.
    pub fn as_str(self) -> &'static str {
        match self {
            ForClause::View => "VIEW",
            ForClause::Reference => "REFERENCE",
        }
    }
}

/// The left-hand side of a comparison or an `ORDER BY` item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Operand {
    /// A field path.
    Field(FieldPath),
    /// An aggregate such as `COUNT(Id)`; only allowed in `HAVING` and `ORDER BY` (the
    /// parser rejects it in `WHERE`).
    Aggregate {
        /// The aggregate function.
        function: AggregateFunction,
        /// Its argument.
        field: FieldPath,
    },
}

impl Operand {
    /// The field path inside the operand (the argument, for an aggregate).
    pub fn field(&self) -> &FieldPath {
        match self {
            Operand::Field(field) | Operand::Aggregate { field, .. } => field,
        }
    }
}

/// A boolean filter expression (`WHERE` / `HAVING`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Condition {
    /// All children hold (at least two children).
    And(Vec<Condition>),
    /// At least one child holds (at least two children).
    Or(Vec<Condition>),
    /// `NOT cond`.
    Not(Box<Condition>),
    /// `field op value`; for [`ComparisonOp::Like`] the value is a [`Literal::String`]
    /// holding a LIKE pattern in the form documented at [`crate::like`].
    Comparison {
        /// Left-hand side.
        field: Operand,
        /// Operator.
        op: ComparisonOp,
        /// Right-hand side.
        value: Literal,
    },
    /// `field [NOT] IN (values | subquery)`.
    In {
        /// Left-hand side.
        field: Operand,
        /// `true` for `NOT IN`.
        negated: bool,
        /// The literal list or semi-join subquery.
        values: InValues,
    },
    /// `field INCLUDES ('a;b', 'c')` on a multi-select picklist: each string is a
    /// `;`-separated set that must all be selected; the strings are OR-ed.
    Includes {
        /// The multi-select picklist field.
        field: FieldPath,
        /// The (unescaped) value sets.
        values: Vec<String>,
    },
    /// `field EXCLUDES (...)`: the negation of [`Condition::Includes`].
    Excludes {
        /// The multi-select picklist field.
        field: FieldPath,
        /// The (unescaped) value sets.
        values: Vec<String>,
    },
}

/// The right-hand side of `IN` / `NOT IN`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InValues {
    /// A literal list (never empty).
    List(Vec<Literal>),
    /// A semi-join (`IN`) or anti-join (`NOT IN`) subquery selecting one field.
    Subquery(Box<Query>),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComparisonOp {
    /// `=`.
    Eq,
    /// `!=` or `<>`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `LIKE` (case-insensitive, `%` any run, `_` one char).
    Like,
}

impl ComparisonOp {
    /// The operator as printed (`=`, `!=`, ..., `LIKE`).
    pub fn as_str(self) -> &'static str {
        match self {
            ComparisonOp::Eq => "=",
            ComparisonOp::Ne => "!=",
            ComparisonOp::Lt => "<",
            ComparisonOp::Le => "<=",
            ComparisonOp::Gt => ">",
            ComparisonOp::Ge => ">=",
            ComparisonOp::Like => "LIKE",
        }
    }
}

/// A literal value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Literal {
    /// `null` (any case).
    Null,
    /// `TRUE` / `FALSE` (any case).
    Boolean(bool),
    /// A quoted string, unescaped. For the right-hand side of `LIKE` it is a pattern in
    /// which `\\`, `\%` and `\_` stay escaped (see [`crate::like`]).
    String(String),
    /// An integer literal that fits in `i64` (`42`, `-7`).
    Integer(i64),
    /// Any other number, as written (`3.14`, `-0.5`, or an integer too large for `i64`).
    Decimal(String),
    /// An unquoted date `2024-01-31`.
    Date(NaiveDate),
    /// An unquoted datetime, normalised to UTC (`2024-01-31T10:00:00.000+02:00` becomes
    /// `2024-01-31T08:00:00Z`).
    DateTime(DateTime<Utc>),
    /// A relative date literal such as `TODAY` or `LAST_N_DAYS:30`.
    DateLiteral(DateLiteral),
    /// A currency-coded number (`USD5000`, `EUR12.50`); `iso_code` is upper-cased.
    Currency {
        /// ISO 4217 code, upper case.
        iso_code: String,
        /// The amount as written.
        amount: String,
    },
}

impl Literal {
    /// The numeric value of an integer, decimal or currency literal.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Literal::Integer(value) => Some(*value as f64),
            Literal::Decimal(text) | Literal::Currency { amount: text, .. } => text.parse().ok(),
            _ => None,
        }
    }
}

/// `ORDER BY` direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OrderDirection {
    /// `ASC` (the default).
    #[default]
    Asc,
    /// `DESC`.
    Desc,
}

/// `NULLS FIRST` / `NULLS LAST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NullsOrder {
    /// `NULLS FIRST`.
    First,
    /// `NULLS LAST`.
    Last,
}

/// One `ORDER BY` item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderItem {
    /// The sort key: a field, or an aggregate in an aggregate query.
    pub field: Operand,
    /// `ASC` (also when omitted) or `DESC`.
    pub direction: OrderDirection,
    /// Explicit null placement; when `None`, Salesforce puts nulls first for `ASC` and last
    /// for `DESC` (see [`OrderItem::nulls_first`]).
    pub nulls: Option<NullsOrder>,
}

impl OrderItem {
    /// Whether nulls sort first, applying Salesforce's default when `nulls` is `None`.
    pub fn nulls_first(&self) -> bool {
        match self.nulls {
            Some(NullsOrder::First) => true,
            Some(NullsOrder::Last) => false,
            None => self.direction == OrderDirection::Asc,
        }
    }
}
