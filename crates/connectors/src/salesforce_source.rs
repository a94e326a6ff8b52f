//! Salesforce as a model source (spec `salesforce-connection.md` §2): a model reads an
//! object (`table`: every field of it) or a SOQL `query`, optionally with `include_deleted`
//! (`queryAll`: deleted and merged records too, each with its `IsDeleted`).
//!
//! Unlike the database sources, this one is built per use around a ready
//! [`SalesforceClient`] (the API keeps one per saved connection, budgeted), so the
//! `config` argument of the [`ModelSource`] methods is not read.
//!
//! - **Fields.** A table model has every field of the object except the compound
//!   `address`/`location` fields, whose components (`BillingStreet`, `BillingCity`, ...) are
//!   fields of their own. A query model has the fields of its select list, named by their
//!   API names from the object's describe (`select name from account` gives `Name`):
//!   parent-relationship paths are flattened into one field named by the dotted path
//!   (`Account.Name`, `Account.Owner.Email`; a missing parent gives `null`), aggregates are
//!   named by their alias or Salesforce's `expr0`, `expr1`, ... (in aggregate queries a
//!   grouped field is named by its last part, as Salesforce returns it), `toLabel`/
//!   `convertCurrency`/`FORMAT` by their alias or the field, `FIELDS(...)` expands to the
//!   object's fields and a child subquery becomes one `array` field of the child records.
//!   `COUNT()` alone returns no rows and is refused. Types use Polytomic's vocabulary
//!   through [`crate::salesforce_catalog::field_type`]; `remote_type` is Salesforce's type.
//! - **Validation.** Describing a query runs it once with `LIMIT 1`, so a query Salesforce
//!   refuses fails with Salesforce's own code and message (`MALFORMED_QUERY`,
//!   `INVALID_FIELD`, `INVALID_TYPE`) as [`SourceError::Query`].
//! - **Values**, converted here and nowhere else: booleans and numbers stay JSON booleans
//!   and numbers (numeric strings become numbers when exact), datetimes become RFC 3339 UTC
//!   (`2024-01-02T03:04:05Z`), dates stay `YYYY-MM-DD`, times stay as Salesforce gives them,
//!   compound values and subqueries stay JSON (without Salesforce's `attributes`).
//! - **Reading** streams REST query pages ([`SalesforceClient::query_pages`]): at most one
//!   page plus [`READ_AHEAD`](crate::source::READ_AHEAD) batches are held, however many
//!   records the model has. Every page is one metered API call against the connection's
//!   budget.

use std::sync::Arc;

use ferry_salesforce::{
    FieldDescribe, QueryScope, SObjectDescribe, SalesforceClient, SalesforceError,
};
use ferry_soql::{AggregateFunction, FieldPath, FieldsKind, FromClause, Query, SelectItem};
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde_json::{Map, Value};

use crate::salesforce_catalog::field_type;
use crate::source::{
    self, Batcher, FieldType, ModelSource, Relation, RelationKind, RowBatch, Selection,
    SourceError, SourceField,
};

/// A Salesforce connection as a model source, around a ready client.
#[derive(Debug, Clone)]
pub struct SalesforceModelSource {
    client: SalesforceClient,
    include_deleted: bool,
}

impl SalesforceModelSource {
    /// A source reading through `client`; with `include_deleted`, reads use `queryAll`.
    pub fn new(client: SalesforceClient, include_deleted: bool) -> Self {
        SalesforceModelSource {
            client,
            include_deleted,
        }
    }

    fn scope(&self) -> QueryScope {
        if self.include_deleted {
            QueryScope::All
        } else {
            QueryScope::Live
        }
    }
}

/// How one model field is taken out of a query record.
#[derive(Debug, Clone, PartialEq)]
enum Column {
    /// A value at a key path (parent relationships first), keys compared case-insensitively.
    Path(Vec<String>),
    /// The records of a child-relationship subquery.
    Children(String),
}

/// What a selection reads: the query, its fields and how to extract them.
#[derive(Debug, Clone)]
struct Plan {
    query: Query,
    fields: Vec<SourceField>,
    columns: Vec<Column>,
}

/// Turns a client failure into a source failure. API errors about the query or the object
/// keep Salesforce's code and message.
fn source_error(error: SalesforceError) -> SourceError {
    match &error {
        SalesforceError::Api(api) => match api.error_code.as_str() {
            "MALFORMED_QUERY"
            | "INVALID_FIELD"
            | "INVALID_TYPE"
            | "INVALID_QUERY_FILTER_OPERATOR"
            | "INVALID_QUERY_LOCATOR"
            | "QUERY_TIMEOUT"
            | "EXCEEDED_ID_LIMIT"
            | "INVALID_OPERATION"
            | "MALFORMED_ID" => SourceError::Query(format!("{}: {}", api.error_code, api.message)),
            "NOT_FOUND" => {
                SourceError::UnknownRelation(format!("{}: {}", api.error_code, api.message))
            }
            _ => SourceError::Read(error.to_string()),
        },
        SalesforceError::InvalidInput(message) => SourceError::UnknownRelation(message.clone()),
        SalesforceError::OAuth { .. } | SalesforceError::SessionExpired => {
            SourceError::Connect(error.to_string())
        }
        SalesforceError::Transport { .. } => SourceError::Connect(error.to_string()),
        SalesforceError::Config(message) => SourceError::Configuration(message.clone()),
        _ => SourceError::Read(error.to_string()),
    }
}

/// The object's describe, or `UnknownRelation` naming it.
async fn describe_object(
    client: &SalesforceClient,
    object: &str,
) -> Result<Arc<SObjectDescribe>, SourceError> {
    match client.describe(object).await {
        Ok(describe) => Ok(describe),
        Err(error) if error.status() == Some(404) || error.error_code() == Some("NOT_FOUND") => {
            Err(SourceError::UnknownRelation(format!(
                "'{object}' is not an object of this Salesforce org"
            )))
        }
        Err(error) => Err(source_error(error)),
    }
}

/// Whether a field is one of a table model's fields (compound fields are left out: their
/// components are fields of their own).
fn readable(field: &FieldDescribe) -> bool {
    !field.deprecated_and_hidden && !matches!(field.field_type.as_str(), "address" | "location")
}

/// The Polytomic type of a Salesforce type.
fn polytomic(salesforce_type: &str) -> FieldType {
    match field_type(salesforce_type) {
        "string" => FieldType::String,
        "number" => FieldType::Number,
        "boolean" => FieldType::Boolean,
        "datetime" => FieldType::Datetime,
        "object" => FieldType::Object,
        "binary" => FieldType::Binary,
        _ => FieldType::Unknown,
    }
}

fn source_field(name: String, salesforce_type: &str) -> SourceField {
    SourceField {
        name,
        field_type: polytomic(salesforce_type),
        remote_type: salesforce_type.to_string(),
    }
}

fn find_field<'a>(describe: &'a SObjectDescribe, name: &str) -> Option<&'a FieldDescribe> {
    describe
        .fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name))
}

/// Resolves a field path on `root`: parent relationships by relationship name (the first
/// object a polymorphic reference points to), the last part by field name. Returns the
/// canonical parts and the final field's Salesforce type; `None` when Ferry cannot follow
/// it (Salesforce decides whether the query is valid).
async fn resolve_path(
    client: &SalesforceClient,
    root: &Arc<SObjectDescribe>,
    parts: &[String],
) -> Result<Option<(Vec<String>, String)>, SourceError> {
    let Some((last, parents)) = parts.split_last() else {
        return Ok(None);
    };
    let mut object = root.clone();
    let mut canonical = Vec::with_capacity(parts.len());
    for relationship in parents {
        let Some(reference) = object.fields.iter().find(|f| {
            f.relationship_name
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(relationship))
        }) else {
            return Ok(None);
        };
        let (Some(name), Some(parent)) =
            (&reference.relationship_name, reference.reference_to.first())
        else {
            return Ok(None);
        };
        canonical.push(name.clone());
        object = describe_object(client, parent).await?;
    }
    match find_field(&object, last) {
        Some(field) => {
            canonical.push(field.name.clone());
            Ok(Some((canonical, field.field_type.clone())))
        }
        None => Ok(None),
    }
}

impl SalesforceModelSource {
    /// The plan of a selection, from describes only (the query is not run).
    async fn plan(&self, selection: &Selection) -> Result<Plan, SourceError> {
        match selection {
            Selection::Table(object) | Selection::View(object) => self.table_plan(object).await,
            Selection::Query(text) => self.query_plan(text).await,
        }
    }

    async fn table_plan(&self, object: &str) -> Result<Plan, SourceError> {
        let object = object.trim();
        if !ferry_soql::is_valid_identifier(object) {
            return Err(SourceError::UnknownRelation(format!(
                "'{object}' is not an object name"
            )));
        }
        let describe = describe_object(&self.client, object).await?;
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        let mut select = Vec::new();
        for field in describe.fields.iter().filter(|f| readable(f)) {
            if !ferry_soql::is_valid_identifier(&field.name) {
                continue;
            }
            fields.push(source_field(field.name.clone(), &field.field_type));
            columns.push(Column::Path(vec![field.name.clone()]));
            select.push(SelectItem::Field(FieldPath::new([field.name.clone()])));
        }
        if select.is_empty() {
            return Err(SourceError::Unsupported(format!(
                "{} has no readable fields",
                describe.name
            )));
        }
        Ok(Plan {
            query: Query::new(select, FromClause::new(describe.name.clone())),
            fields,
            columns,
        })
    }

    async fn query_plan(&self, text: &str) -> Result<Plan, SourceError> {
        let text = source::query_text(text)?;
        let query = match ferry_soql::parse(text) {
            Ok(query) => query,
            Err(parse_error) => {
                // Salesforce's verdict first: its message is the one users know.
                let mut pages = self.client.query_pages(text, self.scope());
                return match pages.next().await {
                    Some(Err(error)) => Err(source_error(error)),
                    _ => Err(SourceError::Unsupported(format!(
                        "Ferry cannot read this query: {}",
                        parse_error.message
                    ))),
                };
            }
        };
        if query.is_count_only() {
            return Err(SourceError::Unsupported(
                "SELECT COUNT() returns no rows; select COUNT(Id) with an alias instead"
                    .to_string(),
            ));
        }
        let root = describe_object(&self.client, &query.from.object).await?;
        let alias = query.from.alias.clone();
        let aggregate = query.is_aggregate();
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        let mut select = Vec::new();
        let mut expr = 0usize;
        for item in &query.select {
            match item {
                SelectItem::Field(path) => {
                    let parts = path.strip_alias(alias.as_deref());
                    let (canonical, remote) = resolve_path(&self.client, &root, parts)
                        .await?
                        .unwrap_or_else(|| (parts.to_vec(), "unknown".to_string()));
                    let key = if aggregate {
                        vec![canonical.last().cloned().unwrap_or_default()]
                    } else {
                        canonical
                    };
                    fields.push(source_field(key.join("."), &remote));
                    columns.push(Column::Path(key));
                    select.push(item.clone());
                }
                SelectItem::Fields(kind) => {
                    for field in root.fields.iter().filter(|f| readable(f)) {
                        let custom = field.custom;
                        let wanted = match kind {
                            FieldsKind::All => true,
                            FieldsKind::Standard => !custom,
                            FieldsKind::Custom => custom,
                        };
                        if wanted && ferry_soql::is_valid_identifier(&field.name) {
                            fields.push(source_field(field.name.clone(), &field.field_type));
                            columns.push(Column::Path(vec![field.name.clone()]));
                            select.push(SelectItem::Field(FieldPath::new([field.name.clone()])));
                        }
                    }
                }
                SelectItem::CountAll => {
                    return Err(SourceError::Unsupported(
                        "COUNT() cannot be combined with other fields".to_string(),
                    ));
                }
                SelectItem::Aggregate {
                    function,
                    field,
                    alias: name,
                } => {
                    let key = match name {
                        Some(name) => name.clone(),
                        None => {
                            let key = format!("expr{expr}");
                            expr += 1;
                            key
                        }
                    };
                    let remote = match function {
                        AggregateFunction::Count | AggregateFunction::CountDistinct => {
                            "int".to_string()
                        }
                        AggregateFunction::Sum | AggregateFunction::Avg => "double".to_string(),
                        AggregateFunction::Min | AggregateFunction::Max => {
                            resolve_path(&self.client, &root, field.strip_alias(alias.as_deref()))
                                .await?
                                .map_or_else(|| "unknown".to_string(), |(_, remote)| remote)
                        }
                    };
                    fields.push(source_field(key.clone(), &remote));
                    columns.push(Column::Path(vec![key]));
                    select.push(item.clone());
                }
                SelectItem::ConvertCurrency { field, alias: name }
                | SelectItem::ToLabel { field, alias: name }
                | SelectItem::Format { field, alias: name } => {
                    let parts = field.strip_alias(alias.as_deref());
                    let resolved = resolve_path(&self.client, &root, parts).await?;
                    let remote = match item {
                        SelectItem::ConvertCurrency { .. } => "currency".to_string(),
                        _ => "string".to_string(),
                    };
                    let key = match name {
                        Some(name) => vec![name.clone()],
                        None => resolved.map_or_else(|| parts.to_vec(), |(canonical, _)| canonical),
                    };
                    fields.push(source_field(key.join("."), &remote));
                    columns.push(Column::Path(key));
                    select.push(item.clone());
                }
                SelectItem::Subquery(child) => {
                    let name = root
                        .child_relationships
                        .iter()
                        .filter_map(|r| r.relationship_name.as_deref())
                        .find(|r| r.eq_ignore_ascii_case(&child.from.object))
                        .unwrap_or(&child.from.object)
                        .to_string();
                    fields.push(SourceField {
                        name: name.clone(),
                        field_type: FieldType::Array,
                        remote_type: "subquery".to_string(),
                    });
                    columns.push(Column::Children(name));
                    select.push(item.clone());
                }
            }
        }
        source::check_unique_names(&fields)?;
        let mut query = query;
        query.select = select;
        Ok(Plan {
            query,
            fields,
            columns,
        })
    }
}

/// The query text of a plan, with `LIMIT` lowered to `limit` when given.
fn soql(plan: &Plan, limit: Option<u64>) -> String {
    let mut query = plan.query.clone();
    if let Some(limit) = limit {
        query.limit = Some(query.limit.map_or(limit, |own| own.min(limit)));
    }
    query.to_string()
}

/// The value of `key` in a record, compared case-insensitively.
fn get_key<'a>(record: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    record.get(key).or_else(|| {
        record
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Removes Salesforce's `attributes` from a record and its nested parents.
fn strip_attributes(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| k != "attributes")
                .map(|(k, v)| (k, strip_attributes(v)))
                .collect(),
        ),
        other => other,
    }
}

/// One field's value as a model value (see the module docs).
fn convert(value: Value, remote_type: &str) -> Value {
    match (remote_type, value) {
        (_, Value::Null) => Value::Null,
        ("datetime", Value::String(text)) => source::text_timestamp(&text),
        ("int" | "long" | "double" | "currency" | "percent", Value::String(text)) => {
            source::decimal(&text)
        }
        ("boolean", Value::String(text)) if text == "true" || text == "false" => {
            Value::Bool(text == "true")
        }
        (_, other) => strip_attributes(other),
    }
}

/// Extracts one row of a query record.
fn row_of(record: &Map<String, Value>, plan: &Plan) -> Vec<Value> {
    plan.columns
        .iter()
        .zip(plan.fields.iter())
        .map(|(column, field)| match column {
            Column::Path(parts) => {
                let mut current = record;
                let Some((last, parents)) = parts.split_last() else {
                    return Value::Null;
                };
                for part in parents {
                    match get_key(current, part) {
                        Some(Value::Object(parent)) => current = parent,
                        _ => return Value::Null,
                    }
                }
                let value = get_key(current, last).cloned().unwrap_or(Value::Null);
                convert(value, &field.remote_type)
            }
            Column::Children(name) => match get_key(record, name) {
                Some(Value::Object(result)) => {
                    let records = result
                        .get("records")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    Value::Array(records.into_iter().map(strip_attributes).collect())
                }
                _ => Value::Array(Vec::new()),
            },
        })
        .collect()
}

async fn produce(
    source: SalesforceModelSource,
    selection: Selection,
    limit: Option<u64>,
    mut batcher: Batcher,
) -> Result<(), SourceError> {
    let plan = source.plan(&selection).await?;
    batcher.set_fields(plan.fields.clone());
    if limit == Some(0) {
        let _ = batcher.finish().await;
        return Ok(());
    }
    let text = soql(&plan, limit);
    let mut pages = source.client.query_pages(&text, source.scope());
    let mut sent = 0u64;
    while let Some(page) = source::next_row(&batcher, &mut pages).await {
        let page = page.map_err(source_error)?;
        for record in &page.records {
            if limit.is_some_and(|limit| sent >= limit) {
                break;
            }
            if batcher.push(row_of(record, &plan)).await.is_err() {
                return Ok(());
            }
            sent += 1;
        }
        if limit.is_some_and(|limit| sent >= limit) {
            break;
        }
    }
    let _ = batcher.finish().await;
    Ok(())
}

impl ModelSource for SalesforceModelSource {
    fn list_relations<'a>(
        &'a self,
        _config: &'a Value,
    ) -> BoxFuture<'a, Result<Vec<Relation>, SourceError>> {
        Box::pin(async move {
            let global = self.client.describe_global().await.map_err(source_error)?;
            let mut relations: Vec<Relation> = global
                .sobjects
                .iter()
                .filter(|o| o.queryable && o.retrieveable && !o.deprecated_and_hidden)
                .map(|o| Relation {
                    name: o.name.clone(),
                    kind: RelationKind::Table,
                })
                .collect();
            relations.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(relations)
        })
    }

    fn describe<'a>(
        &'a self,
        _config: &'a Value,
        selection: &'a Selection,
    ) -> BoxFuture<'a, Result<Vec<SourceField>, SourceError>> {
        Box::pin(async move {
            // Salesforce checks a query (object, fields, filters, relationships) first, so
            // its own code and message answer a bad one.
            if let Selection::Query(text) = selection
                && let Ok(mut query) = ferry_soql::parse(source::query_text(text)?)
            {
                query.limit = Some(query.limit.map_or(1, |own| own.min(1)));
                let mut pages = self.client.query_pages(&query.to_string(), self.scope());
                if let Some(Err(error)) = pages.next().await {
                    return Err(source_error(error));
                }
            }
            Ok(self.plan(selection).await?.fields)
        })
    }

    fn read(
        &self,
        _config: &Value,
        selection: &Selection,
        limit: Option<u64>,
        batch_size: usize,
    ) -> BoxStream<'static, Result<RowBatch, SourceError>> {
        let source = self.clone();
        let selection = selection.clone();
        source::batched(batch_size, move |batcher| {
            produce(source, selection, limit, batcher)
        })
    }
}

/// A Salesforce model configuration (§2): what to read and whether deleted records count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesforceModelConfig {
    /// The selection: the `query` when one is given, else the `table`.
    pub selection: Selection,
    /// `include_deleted`.
    pub include_deleted: bool,
    /// The configuration as stored (`table`, `query`, `include_deleted`).
    pub normalized: Value,
}

/// Parses a Salesforce model configuration: `table` and/or `query` (the published example
/// sets both; the query then defines the model and the table is kept as given), and
/// `include_deleted`. Errors name the key relative to the configuration.
pub fn parse_model_config(
    configuration: &Value,
) -> Result<SalesforceModelConfig, ferry_core::FieldError> {
    use ferry_core::FieldError;
    let Some(object) = configuration.as_object() else {
        return Err(FieldError::new(
            "configuration",
            "must be a JSON object such as {\"table\": \"Contact\"} or {\"query\": \"SELECT Id FROM Contact\"}",
        ));
    };
    let mut table = None;
    let mut query = None;
    let mut include_deleted = false;
    for (key, value) in object {
        let path = format!("configuration.{key}");
        match (key.as_str(), value) {
            ("table" | "query", Value::Null) => {}
            ("table", Value::String(text)) => {
                table = Some(text.trim().to_string()).filter(|t| !t.is_empty());
            }
            ("query", Value::String(text)) => {
                query = Some(text.clone()).filter(|t| !t.trim().is_empty());
            }
            ("table" | "query", _) => {
                return Err(FieldError::new(path, "expected a string"));
            }
            ("include_deleted", Value::Bool(flag)) => include_deleted = *flag,
            ("include_deleted", Value::Null) => {}
            ("include_deleted", _) => {
                return Err(FieldError::new(path, "expected a boolean"));
            }
            _ => {
                return Err(FieldError::new(
                    path,
                    "unknown key; accepted keys: table, query, include_deleted",
                ));
            }
        }
    }
    let selection = match (&query, &table) {
        (Some(query), _) => Selection::Query(query.clone()),
        (None, Some(table)) => Selection::Table(table.clone()),
        (None, None) => {
            return Err(FieldError::new(
                "configuration",
                "one of table or query is required (e.g. {\"table\": \"Contact\"})",
            ));
        }
    };
    let mut normalized = Map::new();
    if let Some(table) = table {
        normalized.insert("table".into(), Value::String(table));
    }
    if let Some(query) = query {
        normalized.insert("query".into(), Value::String(query));
    }
    normalized.insert("include_deleted".into(), Value::Bool(include_deleted));
    Ok(SalesforceModelConfig {
        selection,
        include_deleted,
        normalized: Value::Object(normalized),
    })
}

/// The fields of an object a caller can choose from (names and types), for discovery.
pub fn object_fields(describe: &SObjectDescribe) -> Vec<SourceField> {
    describe
        .fields
        .iter()
        .filter(|f| readable(f))
        .map(|f| source_field(f.name.clone(), &f.field_type))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_converted_at_the_edge() {
        assert_eq!(
            convert(json!("2024-01-02T03:04:05.000+0000"), "datetime"),
            json!("2024-01-02T03:04:05Z")
        );
        assert_eq!(convert(json!("2024-01-02"), "date"), json!("2024-01-02"));
        assert_eq!(convert(json!("12.50"), "currency"), json!(12.5));
        assert_eq!(convert(json!(3), "int"), json!(3));
        assert_eq!(convert(json!("true"), "boolean"), json!(true));
        assert_eq!(convert(json!(null), "string"), json!(null));
        assert_eq!(
            convert(
                json!({"attributes": {"type": "Address"}, "city": "Paris"}),
                "address"
            ),
            json!({"city": "Paris"})
        );
    }

    #[test]
    fn relationship_paths_are_flattened() {
        let plan = Plan {
            query: ferry_soql::parse("SELECT Id, Account.Name, Account.Owner.Email FROM Contact")
                .unwrap(),
            fields: vec![
                source_field("Id".into(), "id"),
                source_field("Account.Name".into(), "string"),
                source_field("Account.Owner.Email".into(), "email"),
            ],
            columns: vec![
                Column::Path(vec!["Id".into()]),
                Column::Path(vec!["Account".into(), "Name".into()]),
                Column::Path(vec!["Account".into(), "Owner".into(), "Email".into()]),
            ],
        };
        let record = json!({"attributes": {}, "Id": "003A", "Account": {"attributes": {},
            "name": "Acme", "Owner": null}});
        assert_eq!(
            row_of(record.as_object().unwrap(), &plan),
            vec![json!("003A"), json!("Acme"), json!(null)]
        );
        assert_eq!(
            soql(&plan, Some(1)),
            "SELECT Id, Account.Name, Account.Owner.Email FROM Contact LIMIT 1"
        );
    }

    #[test]
    fn configurations_accept_the_published_example() {
        let parsed = parse_model_config(&json!({"include_deleted": false,
            "query": "select Id from Contact", "table": "Contact"}))
        .unwrap();
        assert_eq!(
            parsed.selection,
            Selection::Query("select Id from Contact".into())
        );
        let parsed =
            parse_model_config(&json!({"table": "Account", "include_deleted": true})).unwrap();
        assert_eq!(parsed.selection, Selection::Table("Account".into()));
        assert!(parsed.include_deleted);
        let error = parse_model_config(&json!({"view": "x"})).unwrap_err();
        assert_eq!(error.field, "configuration.view");
        let error =
            parse_model_config(&json!({"include_deleted": "yes", "table": "A"})).unwrap_err();
        assert_eq!(error.field, "configuration.include_deleted");
    }
}
