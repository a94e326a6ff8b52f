//! Type mapping (Salesforce → destination column types), name normalization, the column
//! plan of one object, and schema drift (which columns to add or widen).
//!
//! The mapping table is in `README.md` beside this file.

use ferry_salesforce::FieldDescribe;

use super::destination::Dialect;

/// The column types Ferry creates. Ordered loosely by how much they can hold; [`widen`]
/// decides changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SqlType {
    /// `id` and `reference`: 18 characters.
    Id,
    /// Text of at most `max_chars` characters.
    Text {
        max_chars: u32,
    },
    Bool,
    BigInt,
    /// `double`, `currency`, `percent`: exact decimals.
    Numeric,
    Date,
    DateTime,
    Time,
}

/// Text of this many characters or fewer fits MySQL's `TEXT` (65,535 bytes of utf8mb4).
const MYSQL_TEXT_CHARS: u32 = 16_383;

impl SqlType {
    /// The type of a Salesforce field (`type` from describe).
    pub(crate) fn of(field: &FieldDescribe) -> SqlType {
        match field.field_type.as_str() {
            "id" | "reference" => SqlType::Id,
            "boolean" => SqlType::Bool,
            "int" | "long" => SqlType::BigInt,
            "double" | "currency" | "percent" => SqlType::Numeric,
            "date" => SqlType::Date,
            "datetime" => SqlType::DateTime,
            "time" => SqlType::Time,
            _ => SqlType::Text {
                // Salesforce reports 0 for types without a length (anyType, json): the
                // longest text it stores (131,072) is then assumed.
                max_chars: if field.length == 0 {
                    131_072
                } else {
                    field.length
                },
            },
        }
    }

    /// The column type in a dialect's DDL.
    pub(crate) fn ddl(self, dialect: Dialect) -> String {
        match dialect {
            Dialect::Postgres => match self {
                SqlType::Id | SqlType::Text { .. } => "text".into(),
                SqlType::Bool => "boolean".into(),
                SqlType::BigInt => "bigint".into(),
                SqlType::Numeric => "numeric".into(),
                SqlType::Date => "date".into(),
                SqlType::DateTime => "timestamptz".into(),
                SqlType::Time => "time".into(),
            },
            Dialect::Mysql => match self {
                SqlType::Id => "VARCHAR(18)".into(),
                SqlType::Text { max_chars } if max_chars <= MYSQL_TEXT_CHARS => "TEXT".into(),
                SqlType::Text { .. } => "MEDIUMTEXT".into(),
                SqlType::Bool => "BOOLEAN".into(),
                SqlType::BigInt => "BIGINT".into(),
                SqlType::Numeric => "DECIMAL(38,18)".into(),
                SqlType::Date => "DATE".into(),
                SqlType::DateTime => "DATETIME(3)".into(),
                SqlType::Time => "TIME(3)".into(),
            },
            Dialect::Sqlite => match self {
                SqlType::Id | SqlType::Text { .. } => "TEXT".into(),
                SqlType::Bool | SqlType::BigInt => "INTEGER".into(),
                SqlType::Numeric => "REAL".into(),
                SqlType::Date | SqlType::DateTime | SqlType::Time => "TEXT".into(),
            },
        }
    }

    /// Reads back a column type from the database's catalog (`data_type` in
    /// `information_schema.columns`, or SQLite's declared type). `None`: a type Ferry did
    /// not create (left alone).
    pub(crate) fn from_catalog(dialect: Dialect, data_type: &str) -> Option<SqlType> {
        let t = data_type.trim().to_ascii_lowercase();
        let base = t.split('(').next().unwrap_or("").trim();
        Some(match dialect {
            Dialect::Postgres => match base {
                "text" | "character varying" => SqlType::Text {
                    max_chars: u32::MAX,
                },
                "boolean" => SqlType::Bool,
                "bigint" | "integer" | "smallint" => SqlType::BigInt,
                "numeric" | "double precision" | "real" => SqlType::Numeric,
                "date" => SqlType::Date,
                "timestamp with time zone" | "timestamp without time zone" => SqlType::DateTime,
                "time without time zone" | "time with time zone" => SqlType::Time,
                _ => return None,
            },
            Dialect::Mysql => match base {
                "varchar" | "char" => SqlType::Id,
                "tinytext" => SqlType::Text { max_chars: 63 },
                "text" => SqlType::Text {
                    max_chars: MYSQL_TEXT_CHARS,
                },
                "mediumtext" | "longtext" => SqlType::Text {
                    max_chars: u32::MAX,
                },
                "tinyint" | "boolean" | "bool" => SqlType::Bool,
                "bigint" | "int" | "smallint" | "mediumint" => SqlType::BigInt,
                "decimal" | "double" | "float" => SqlType::Numeric,
                "date" => SqlType::Date,
                "datetime" | "timestamp" => SqlType::DateTime,
                "time" => SqlType::Time,
                _ => return None,
            },
            // SQLite columns take any value; nothing ever needs widening.
            Dialect::Sqlite => return None,
        })
    }
}

/// What to do with an existing column of type `existing` that should now hold `wanted`.
/// `None`: it can already hold every value (narrowing never happens: a column keeps its
/// wider type, so no data is lost).
pub(crate) fn widen(dialect: Dialect, existing: SqlType, wanted: SqlType) -> Option<SqlType> {
    let same_ddl = existing.ddl(dialect) == wanted.ddl(dialect);
    match (existing, wanted) {
        _ if existing == wanted || same_ddl => None,
        (SqlType::Text { max_chars: have }, SqlType::Text { max_chars: want }) => {
            (want > have && wanted.ddl(dialect) != existing.ddl(dialect)).then_some(wanted)
        }
        (SqlType::Text { .. }, _) => None,
        (SqlType::Id, SqlType::Text { .. }) => Some(wanted),
        (SqlType::Id, _) => Some(SqlType::Text {
            max_chars: u32::MAX,
        }),
        (SqlType::BigInt | SqlType::Bool, SqlType::Numeric) => Some(SqlType::Numeric),
        (SqlType::Bool, SqlType::BigInt) => Some(SqlType::BigInt),
        (SqlType::Numeric, SqlType::BigInt | SqlType::Bool) => None,
        (SqlType::BigInt, SqlType::Bool) => None,
        (SqlType::DateTime, SqlType::Date) => None,
        (SqlType::Date, SqlType::DateTime) => Some(SqlType::DateTime),
        // Anything else (a number becoming a date, a date becoming text): text holds all.
        (_, SqlType::Text { .. }) => Some(wanted),
        _ => Some(SqlType::Text {
            max_chars: u32::MAX,
        }),
    }
}

/// `lower_snake_case`: an underscore goes before an upper-case letter that follows a
/// lower-case letter or digit, and before the last upper-case letter of a run that is
/// followed by a lower-case one (`HTMLBody` → `html_body`); every character other than
/// ASCII letters and digits becomes `_`; existing underscores are kept as they are (so
/// `Region__c` → `region__c` stays distinct from `Region_c`).
pub(crate) fn normalize_name(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                out.push('_');
            }
        }
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.push('_');
        }
    }
    out
}

/// How a source field's value is turned into a column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ColumnSource {
    /// The field's own value.
    Field,
    /// A currency formula converted to the corporate currency (multicurrency lookup): the
    /// index of the converted field in the plan's columns.
    Converted { field: usize },
}

/// One destination column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    /// Salesforce API name (for converted columns: the source field's name).
    pub field: String,
    /// Destination column name.
    pub name: String,
    pub sql_type: SqlType,
    /// Formula (or roll-up) field: changes without touching `SystemModstamp`.
    pub formula: bool,
    pub source: ColumnSource,
}

/// The columns of one object for this run, in read order: the first `read_fields` columns
/// are read from Salesforce, the rest are computed.
#[derive(Debug, Clone)]
pub(crate) struct ObjectPlan {
    pub columns: Vec<Column>,
    /// Fields selected in SOQL (the first columns, same order).
    pub read_fields: usize,
    pub id: usize,
    pub system_modstamp: Option<usize>,
    pub is_deleted: Option<usize>,
    pub currency_iso_code: Option<usize>,
    /// The date whose dated conversion rate applies (`CloseDate` when the object has it).
    pub rate_date: Option<usize>,
    /// Selected fields the object no longer has (their columns keep their data).
    pub missing_fields: Vec<String>,
}

/// Formula functions whose value moves with the clock.
const CLOCK_FUNCTIONS: [&str; 3] = ["now", "today", "timenow"];

/// The calculated fields (lower-cased names) whose value can change while their record's
/// `SystemModstamp` stays put, so incremental windows cannot see the change: roll-ups and
/// calculated fields without a formula text, formulas that reference another record
/// (`Account.Name`), a global (`$User`, `$Organization`, ...) or the clock (`NOW()`,
/// `TODAY()`, `TIMENOW()`), and formulas over such fields. A formula over its own record's
/// stored fields only (`Amount * 2`) changes only when the record does, which moves
/// `SystemModstamp`.
pub(crate) fn volatile_fields(fields: &[FieldDescribe]) -> std::collections::HashSet<String> {
    let mut volatile = std::collections::HashSet::new();
    let mut references: Vec<(String, Vec<String>)> = Vec::new();
    for field in fields.iter().filter(|f| f.calculated) {
        let name = field.name.to_ascii_lowercase();
        match field.calculated_formula.as_deref().map(str::trim) {
            Some(text) if !text.is_empty() => match formula_references(text) {
                Some(own) => references.push((name, own)),
                None => {
                    volatile.insert(name);
                }
            },
            _ => {
                volatile.insert(name);
            }
        }
    }
    // Formulas over volatile fields are volatile too (to a fixed point).
    loop {
        let before = volatile.len();
        for (name, own) in &references {
            if !volatile.contains(name) && own.iter().any(|r| volatile.contains(r)) {
                volatile.insert(name.clone());
            }
        }
        if volatile.len() == before {
            break;
        }
    }
    volatile
}

/// The lower-cased own-record field names a formula reads, or `None` when it reads
/// something outside its record (a relationship path, a `$` global, the clock).
fn formula_references(text: &str) -> Option<Vec<String>> {
    let bytes = text.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        match byte {
            b'"' | b'\'' => {
                // A string literal (backslash escapes the next character).
                i += 1;
                while i < bytes.len() && bytes[i] != byte {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'$' => return None,
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = text[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |e| i + 2 + e + 2);
                i = end;
            }
            b'0'..=b'9' => {
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = text[start..i].to_ascii_lowercase();
                if bytes.get(i) == Some(&b'.') {
                    return None;
                }
                let mut next = i;
                while next < bytes.len() && bytes[next].is_ascii_whitespace() {
                    next += 1;
                }
                if bytes.get(next) == Some(&b'(') {
                    if CLOCK_FUNCTIONS.contains(&word.as_str()) {
                        return None;
                    }
                } else if !matches!(
                    word.as_str(),
                    "true" | "false" | "null" | "and" | "or" | "not"
                ) {
                    names.push(word);
                }
            }
            _ => i += 1,
        }
    }
    Some(names)
}

/// Field types Bulk 2.0 cannot read (compound fields are read through their components).
fn readable(field: &FieldDescribe) -> bool {
    !matches!(
        field.field_type.as_str(),
        "address" | "location" | "base64" | "complexvalue"
    )
}

/// Builds the plan: `Id`, `SystemModstamp` and `IsDeleted` always; then the selected fields
/// (all readable fields when `selected` is `None`) in describe order; then, with
/// multicurrency lookup, one `<field>_converted` column per currency formula field.
pub(crate) fn plan_object(
    fields: &[FieldDescribe],
    selected: Option<&[String]>,
    normalize: bool,
    multicurrency: bool,
) -> Result<ObjectPlan, String> {
    let find = |name: &str| fields.iter().find(|f| f.name.eq_ignore_ascii_case(name));
    let Some(id_field) = find("Id") else {
        return Err("the object has no Id field".into());
    };
    let column_name = |name: &str| {
        if normalize {
            normalize_name(name)
        } else {
            name.to_string()
        }
    };
    let mut chosen: Vec<&FieldDescribe> = vec![id_field];
    for system in ["SystemModstamp", "IsDeleted"] {
        if let Some(field) = find(system) {
            chosen.push(field);
        }
    }
    let mut missing_fields = Vec::new();
    match selected {
        None => {
            for field in fields.iter().filter(|f| readable(f)) {
                if !chosen.iter().any(|c| c.name == field.name) {
                    chosen.push(field);
                }
            }
        }
        Some(list) => {
            for name in list {
                match find(name) {
                    Some(field) if readable(field) => {
                        if !chosen.iter().any(|c| c.name == field.name) {
                            chosen.push(field);
                        }
                    }
                    Some(_) => {}
                    None => missing_fields.push(name.clone()),
                }
            }
        }
    }
    let currency_formulas: Vec<String> = if multicurrency {
        chosen
            .iter()
            .filter(|f| f.calculated && f.field_type == "currency")
            .map(|f| f.name.clone())
            .collect()
    } else {
        Vec::new()
    };
    // Conversion needs the record's currency and date even when they were not selected.
    if !currency_formulas.is_empty() {
        for helper in ["CurrencyIsoCode", "CloseDate"] {
            if let Some(field) = find(helper)
                && !chosen.iter().any(|c| c.name == field.name)
            {
                chosen.push(field);
            }
        }
    }
    let volatile = volatile_fields(fields);
    let mut columns: Vec<Column> = chosen
        .iter()
        .map(|f| Column {
            field: f.name.clone(),
            name: column_name(&f.name),
            sql_type: SqlType::of(f),
            formula: f.calculated && volatile.contains(&f.name.to_ascii_lowercase()),
            source: ColumnSource::Field,
        })
        .collect();
    let read_fields = columns.len();
    for name in &currency_formulas {
        let Some(index) = columns.iter().position(|c| &c.field == name) else {
            continue;
        };
        columns.push(Column {
            field: name.clone(),
            name: column_name(&format!("{name}_converted")),
            sql_type: SqlType::Numeric,
            formula: true,
            source: ColumnSource::Converted { field: index },
        });
    }
    let position = |name: &str| {
        columns[..read_fields]
            .iter()
            .position(|c| c.field.eq_ignore_ascii_case(name))
    };
    let mut seen = std::collections::HashSet::new();
    for column in &columns {
        if !seen.insert(column.name.to_ascii_lowercase()) {
            return Err(format!(
                "two fields map to the column name {:?}",
                column.name
            ));
        }
    }
    Ok(ObjectPlan {
        id: 0,
        system_modstamp: position("SystemModstamp"),
        is_deleted: position("IsDeleted"),
        currency_iso_code: position("CurrencyIsoCode"),
        rate_date: position("CloseDate"),
        read_fields,
        columns,
        missing_fields,
    })
}

/// Ferry's own columns.
pub(crate) const SYNCED_AT: &str = "_ferry_synced_at";
pub(crate) const DELETED_AT: &str = "_ferry_deleted_at";
pub(crate) const SNAPSHOT_EXECUTION: &str = "_ferry_execution_id";
pub(crate) const SNAPSHOT_AT: &str = "_ferry_snapshot_at";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_formulas_are_the_ones_windows_miss() {
        let field = |name: &str, formula: Option<&str>| FieldDescribe {
            name: name.into(),
            calculated: true,
            calculated_formula: formula.map(str::to_string),
            ..FieldDescribe::default()
        };
        let fields = vec![
            FieldDescribe {
                name: "Amount".into(),
                ..FieldDescribe::default()
            },
            field("Doubled__c", Some("Amount * 2")),
            field(
                "Label__c",
                Some("\"a.b\" & TEXT(Amount) /* Account.Name */"),
            ),
            field("Parent__c", Some("Account.Name")),
            field("Chained__c", Some("Parent__c & 'x'")),
            field("Age__c", Some("TODAY() - CloseDate")),
            field("User__c", Some("$User.Id")),
            field("Rollup__c", None),
            field("Decimal__c", Some("Amount * 1.5")),
        ];
        let volatile = volatile_fields(&fields);
        let mut names: Vec<&str> = volatile.iter().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["age__c", "chained__c", "parent__c", "rollup__c", "user__c"]
        );
    }

    fn field(name: &str, field_type: &str, length: u32, calculated: bool) -> FieldDescribe {
        FieldDescribe {
            name: name.into(),
            field_type: field_type.into(),
            length,
            calculated,
            ..FieldDescribe::default()
        }
    }

    #[test]
    fn normalizes_names() {
        assert_eq!(normalize_name("AccountId"), "account_id");
        assert_eq!(normalize_name("SystemModstamp"), "system_modstamp");
        assert_eq!(normalize_name("Region__c"), "region__c");
        assert_eq!(normalize_name("HTMLBody"), "html_body");
        assert_eq!(normalize_name("Address2Line"), "address2_line");
        assert_eq!(normalize_name("Id"), "id");
        assert_eq!(normalize_name("tooling:ApexClass"), "tooling_apex_class");
        assert_eq!(normalize_name("My Table"), "my_table");
    }

    #[test]
    fn maps_types_per_dialect() {
        let name = field("Name", "string", 255, false);
        assert_eq!(SqlType::of(&name).ddl(Dialect::Postgres), "text");
        assert_eq!(SqlType::of(&name).ddl(Dialect::Mysql), "TEXT");
        let long = field("Notes__c", "textarea", 131_072, false);
        assert_eq!(SqlType::of(&long).ddl(Dialect::Mysql), "MEDIUMTEXT");
        let amount = field("Amount", "currency", 0, false);
        assert_eq!(SqlType::of(&amount).ddl(Dialect::Postgres), "numeric");
        assert_eq!(SqlType::of(&amount).ddl(Dialect::Sqlite), "REAL");
        let stamp = field("SystemModstamp", "datetime", 0, false);
        assert_eq!(SqlType::of(&stamp).ddl(Dialect::Mysql), "DATETIME(3)");
    }

    #[test]
    fn widens_but_never_narrows() {
        let short = SqlType::Text { max_chars: 80 };
        let long = SqlType::Text { max_chars: 20_000 };
        assert_eq!(widen(Dialect::Mysql, short, long), Some(long));
        assert_eq!(widen(Dialect::Mysql, long, short), None);
        assert_eq!(widen(Dialect::Postgres, short, long), None);
        assert_eq!(
            widen(Dialect::Postgres, SqlType::BigInt, SqlType::Numeric),
            Some(SqlType::Numeric)
        );
        assert_eq!(
            widen(Dialect::Postgres, SqlType::Numeric, SqlType::BigInt),
            None
        );
        assert!(matches!(
            widen(Dialect::Postgres, SqlType::Numeric, SqlType::Date),
            Some(SqlType::Text { .. })
        ));
        let back = SqlType::from_catalog(Dialect::Mysql, "mediumtext").expect("known");
        assert_eq!(widen(Dialect::Mysql, back, long), None);
    }

    #[test]
    fn plans_columns() {
        let fields = vec![
            field("Id", "id", 18, false),
            field("Name", "string", 120, false),
            field("IsDeleted", "boolean", 0, false),
            field("SystemModstamp", "datetime", 0, false),
            field("BillingAddress", "address", 0, false),
            field("Total__c", "currency", 0, true),
            field("CurrencyIsoCode", "picklist", 3, false),
        ];
        let plan = plan_object(&fields, None, true, true).expect("plan");
        let names: Vec<&str> = plan.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "id",
                "system_modstamp",
                "is_deleted",
                "name",
                "total__c",
                "currency_iso_code",
                "total__c_converted"
            ]
        );
        assert_eq!(plan.read_fields, 6);
        assert_eq!(plan.currency_iso_code, Some(5));
        let only = vec!["Name".to_string(), "Gone__c".to_string()];
        let plan = plan_object(&fields, Some(&only), false, false).expect("plan");
        assert_eq!(plan.columns.len(), 4);
        assert_eq!(plan.missing_fields, vec!["Gone__c"]);
    }
}
