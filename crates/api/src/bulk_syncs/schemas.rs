//! The schemas (source objects) of a bulk sync (spec §5.5):
//! `GET/PATCH /api/bulk/syncs/{id}/schemas`, `GET/PUT /api/bulk/syncs/{id}/schemas/{schema_id}`.
//!
//! A schema row says whether the object is synced, its destination name override, its data
//! cutoff, and its field selection: an empty field list means every field; a listed field
//! carries its `enabled` flag, and fields not listed follow the sync's
//! `automatically_add_new_fields` (included unless `none`). Schema and field ids are checked
//! against the source's objects (the `bulksync/source` catalog and the object's describe).
//! Options Ferry cannot honour (filters, partition keys, obfuscation, column renames, a
//! tracking field other than `SystemModstamp`) answer 422 naming the field.

use axum::Json;
use axum::extract::State;
use axum::routing::{get, patch};
use ferry_connectors::salesforce::describe_error;
use ferry_connectors::salesforce_catalog::{CatalogObject, TOOLING_PREFIX, list_objects};
use ferry_core::FieldError;
use ferry_core::time::rfc3339;
use ferry_store::{BulkSchema, BulkSync};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Source, load_source, opt_bool, opt_string, option_text, parse_time};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::middleware::Caller;
use crate::routes::{ApiRoutes, Operation};

/// The field Ferry tracks changes by.
pub const TRACKING_FIELD: &str = "SystemModstamp";

/// Routes of this module.
pub fn routes() -> ApiRoutes {
    ApiRoutes::new()
        .add(
            Operation::new(
                "get",
                "/api/bulk/syncs/{id}/schemas",
                "bulk syncs",
                "The schemas of a bulk sync",
            )
            .query(
                "filters[enabled]",
                "only enabled (true) or disabled (false) schemas",
            ),
            get(list),
        )
        .add(
            Operation::new(
                "patch",
                "/api/bulk/syncs/{id}/schemas",
                "bulk syncs",
                "Update the listed schemas (matched by id); omitted fields enable every field",
            ),
            patch(patch_schemas),
        )
        .add(
            Operation::new(
                "get",
                "/api/bulk/syncs/{id}/schemas/{schema_id}",
                "bulk syncs",
                "One schema with its fields",
            ),
            get(fetch),
        )
        .add(
            Operation::new(
                "put",
                "/api/bulk/syncs/{id}/schemas/{schema_id}",
                "bulk syncs",
                "Replace one schema's configuration",
            ),
            axum::routing::put(replace),
        )
}

fn field_error(error: FieldError) -> ApiError {
    ApiError::field(error)
}

/// The objects of a source connection.
pub(crate) struct Catalog {
    objects: Vec<CatalogObject>,
}

impl Catalog {
    /// Lists the source's objects (one describe-global call, two with Tooling).
    pub(crate) async fn load(source: &Source) -> ApiResult<Catalog> {
        let objects = list_objects(&source.client, &source.config, false)
            .await
            .map_err(|error| {
                ApiError::unprocessable(format!(
                    "could not list Salesforce objects: {}",
                    describe_error(&source.config, &error)
                ))
                .with_metadata("reason", "salesforce")
            })?;
        Ok(Catalog { objects })
    }

    /// Every schema id.
    pub(crate) fn ids(&self) -> impl Iterator<Item = &str> {
        self.objects.iter().map(|o| o.id.as_str())
    }

    fn contains(&self, id: &str) -> bool {
        self.objects.iter().any(|o| o.id == id)
    }

    /// Checks a schema against the source: the object exists, and so does every field it
    /// lists. Errors name `path` (`schemas[2]`, `schemas[2].fields[0]`).
    pub(crate) async fn check(
        &self,
        source: &Source,
        path: &str,
        schema: &BulkSchema,
    ) -> ApiResult<()> {
        if !self.contains(&schema.schema_id) {
            return Err(field_error(FieldError::new(
                format!("{path}.id"),
                format!(
                    "'{}' is not an object of the source connection (see \
                     GET /api/connections/{{id}}/bulksync/source)",
                    schema.schema_id
                ),
            )));
        }
        let listed = field_configs(&schema.fields);
        if listed.is_empty() {
            return Ok(());
        }
        let described = describe_fields(source, &schema.schema_id).await?;
        for (index, (id, _)) in listed.iter().enumerate() {
            if !described.iter().any(|name| name == id) {
                return Err(field_error(FieldError::new(
                    format!("{path}.fields[{index}]"),
                    format!("'{id}' is not a field of {}", schema.schema_id),
                )));
            }
        }
        Ok(())
    }
}

/// The field names of an object (Tooling objects through the Tooling API), from the
/// client's describe cache.
pub(crate) async fn describe_fields(source: &Source, schema_id: &str) -> ApiResult<Vec<String>> {
    let described = match schema_id.strip_prefix(TOOLING_PREFIX) {
        Some(name) => source.client.tooling_describe(name).await,
        None => source.client.describe(schema_id).await,
    };
    let described = described.map_err(|error| {
        ApiError::unprocessable(format!(
            "could not describe {schema_id} in Salesforce: {}",
            describe_error(&source.config, &error)
        ))
        .with_metadata("reason", "salesforce")
    })?;
    Ok(described
        .fields
        .iter()
        .filter(|f| !f.deprecated_and_hidden)
        .map(|f| f.name.clone())
        .collect())
}

/// `(field id, enabled)` of a stored field list.
pub(crate) fn field_configs(fields: &Value) -> Vec<(String, bool)> {
    fields
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            let id = f.get("id").and_then(Value::as_str)?;
            let enabled = f.get("enabled").and_then(Value::as_bool).unwrap_or(true);
            Some((id.to_string(), enabled))
        })
        .collect()
}

/// A schema selected with every default.
pub(crate) fn default_schema(id: &str, enabled: bool) -> BulkSchema {
    BulkSchema {
        schema_id: id.to_string(),
        enabled,
        user_output_name: None,
        partition_key: None,
        tracking_field: None,
        data_cutoff_timestamp: None,
        disable_data_cutoff: false,
        fields: json!([]),
        filters: json!([]),
    }
}

/// The destination name of a schema before prefix and normalization: the user's override,
/// else the object's name (`tooling_<name>` for Tooling objects, which may share a name with
/// a standard object).
pub fn output_name(schema: &BulkSchema) -> String {
    if let Some(name) = schema.user_output_name.as_deref().filter(|n| !n.is_empty()) {
        return name.to_string();
    }
    match schema.schema_id.strip_prefix(TOOLING_PREFIX) {
        Some(name) => format!("tooling_{name}"),
        None => schema.schema_id.clone(),
    }
}

fn check_output_name(path: &str, name: &str) -> Result<(), FieldError> {
    if name.len() > 63 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(FieldError::new(
            format!("{path}.user_output_name"),
            "may hold at most 63 letters, digits and underscores",
        ));
    }
    Ok(())
}

/// Parses one field item: an id string, or `{id, enabled?, obfuscate?/obfuscated?,
/// user_output_name?}`.
fn parse_field_item(path: &str, item: &Value) -> ApiResult<Value> {
    match item {
        Value::String(id) if !id.trim().is_empty() => Ok(json!({"id": id.trim(), "enabled": true})),
        Value::Object(object) => {
            let id = opt_string(object, "id", &format!("{path}.id"))?
                .filter(|id| !id.is_empty())
                .ok_or_else(|| field_error(FieldError::new(format!("{path}.id"), "is required")))?;
            let enabled = opt_bool(object, "enabled", &format!("{path}.enabled"))?.unwrap_or(true);
            for key in ["obfuscate", "obfuscated"] {
                if opt_bool(object, key, &format!("{path}.{key}"))? == Some(true) {
                    return Err(field_error(FieldError::new(
                        format!("{path}.{key}"),
                        "field obfuscation is not supported",
                    )));
                }
            }
            if opt_string(
                object,
                "user_output_name",
                &format!("{path}.user_output_name"),
            )?
            .is_some_and(|n| !n.is_empty())
            {
                return Err(field_error(FieldError::new(
                    format!("{path}.user_output_name"),
                    "renaming columns is not supported; columns take the field's name",
                )));
            }
            Ok(json!({"id": id, "enabled": enabled}))
        }
        _ => Err(field_error(FieldError::new(
            path,
            "must be a field id or {id, enabled}",
        ))),
    }
}

/// Parses a schema item of a request (`schemas[i]` of a sync, a PATCH item, or — with
/// `id` given — a PUT body). Keys the item omits come from `base` when given (PATCH keeps
/// the stored values), else take their defaults; `fields` omitted always means every field.
pub(crate) fn parse_schema_item(
    path: &str,
    item: &Value,
    base: Option<&BulkSchema>,
) -> ApiResult<BulkSchema> {
    let object = match item {
        Value::String(id) if !id.trim().is_empty() => {
            return Ok(default_schema(id.trim(), true));
        }
        Value::Object(object) => object,
        _ => {
            return Err(field_error(FieldError::new(
                path,
                "must be a schema id or a schema object",
            )));
        }
    };
    let id = match (opt_string(object, "id", &format!("{path}.id"))?, base) {
        (Some(id), _) if !id.is_empty() => id,
        (_, Some(base)) => base.schema_id.clone(),
        _ => {
            return Err(field_error(FieldError::new(
                format!("{path}.id"),
                "is required",
            )));
        }
    };
    let mut schema = match base {
        Some(base) => BulkSchema {
            schema_id: id.clone(),
            fields: json!([]),
            ..base.clone()
        },
        None => default_schema(&id, true),
    };
    if let Some(enabled) = opt_bool(object, "enabled", &format!("{path}.enabled"))? {
        schema.enabled = enabled;
    }
    if object.contains_key("user_output_name") {
        schema.user_output_name = opt_string(
            object,
            "user_output_name",
            &format!("{path}.user_output_name"),
        )?
        .filter(|n| !n.is_empty());
        if let Some(name) = &schema.user_output_name {
            check_output_name(path, name).map_err(field_error)?;
        }
    }
    if let Some(key) = opt_string(object, "partition_key", &format!("{path}.partition_key"))?
        .filter(|k| !k.is_empty())
    {
        return Err(field_error(FieldError::new(
            format!("{path}.partition_key"),
            format!("'{key}': partitioning is not supported for Salesforce objects"),
        )));
    }
    if let Some(field) = opt_string(object, "tracking_field", &format!("{path}.tracking_field"))?
        .filter(|k| !k.is_empty())
    {
        if field != TRACKING_FIELD {
            return Err(field_error(FieldError::new(
                format!("{path}.tracking_field"),
                format!("'{field}': Salesforce objects are tracked by {TRACKING_FIELD}"),
            )));
        }
        schema.tracking_field = Some(field);
    }
    if object.contains_key("data_cutoff_timestamp") {
        schema.data_cutoff_timestamp = parse_time(
            &format!("{path}.data_cutoff_timestamp"),
            object.get("data_cutoff_timestamp"),
        )?;
    }
    if let Some(disable) = opt_bool(
        object,
        "disable_data_cutoff",
        &format!("{path}.disable_data_cutoff"),
    )? {
        schema.disable_data_cutoff = disable;
    }
    match object.get("filters") {
        None | Some(Value::Null) => {}
        Some(Value::Array(filters)) if filters.is_empty() => {}
        Some(_) => {
            return Err(field_error(FieldError::new(
                format!("{path}.filters"),
                "row filters are not supported for bulk syncs",
            )));
        }
    }
    schema.filters = json!([]);
    match object.get("fields") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            let mut fields = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let field = parse_field_item(&format!("{path}.fields[{index}]"), item)?;
                if fields.iter().any(|f: &Value| f["id"] == field["id"]) {
                    return Err(field_error(FieldError::new(
                        format!("{path}.fields[{index}]"),
                        "is listed twice",
                    )));
                }
                fields.push(field);
            }
            schema.fields = Value::Array(fields);
        }
        Some(_) => {
            return Err(field_error(FieldError::new(
                format!("{path}.fields"),
                "must be a list of field ids or field objects",
            )));
        }
    }
    Ok(schema)
}

/// The fields of a schema as the API shows them: every described field with whether runs
/// include it.
fn fields_body(schema: &BulkSchema, described: &[String], auto_add_fields: bool) -> Vec<Value> {
    let listed = field_configs(&schema.fields);
    described
        .iter()
        .map(|name| {
            let enabled = if listed.is_empty() {
                true
            } else {
                listed
                    .iter()
                    .find(|(id, _)| id == name)
                    .map_or(auto_add_fields, |(_, enabled)| *enabled)
            };
            json!({"id": name, "enabled": enabled, "obfuscated": false,
                   "output_name": name, "user_output_name": ""})
        })
        .collect()
}

/// A `BulkSchemaListItem`, or with `fields` a full `BulkSchema`.
pub(crate) fn schema_body(schema: &BulkSchema, fields: Option<Vec<Value>>) -> Value {
    let mut body = json!({
        "id": schema.schema_id,
        "enabled": schema.enabled,
        "output_name": output_name(schema),
        "user_output_name": schema.user_output_name.clone().unwrap_or_default(),
        "partition_key": "",
        "tracking_field": schema.tracking_field.clone().unwrap_or_else(|| TRACKING_FIELD.to_string()),
        "data_cutoff_timestamp": schema.data_cutoff_timestamp.map(rfc3339),
        "disable_data_cutoff": schema.disable_data_cutoff,
    });
    if let Some(fields) = fields {
        body["fields"] = Value::Array(fields);
        body["filters"] = json!([]);
    }
    body
}

/// Whether fields not listed in a schema are included (`automatically_add_new_fields`).
pub(crate) fn auto_add_fields(sync: &BulkSync) -> bool {
    option_text(sync, "automatically_add_new_fields", "all") != "none"
}

async fn full_schema_body(
    source: &Source,
    sync: &BulkSync,
    schema: &BulkSchema,
) -> ApiResult<Value> {
    let described = describe_fields(source, &schema.schema_id).await?;
    Ok(schema_body(
        schema,
        Some(fields_body(schema, &described, auto_add_fields(sync))),
    ))
}

/// Adds objects the source gained since the sync was written, per
/// `automatically_add_new_objects`: `all` and `onlyIncremental` add them enabled (every
/// Salesforce object is synced incrementally by `SystemModstamp`), `onlyNonIncremental` and
/// `none` add nothing. Returns how many were added.
pub(crate) async fn discover_new_objects(state: &AppState, sync: &BulkSync) -> ApiResult<usize> {
    let mode = option_text(sync, "automatically_add_new_objects", "none");
    if !matches!(mode, "all" | "onlyIncremental") {
        return Ok(0);
    }
    let source = load_source(
        state,
        sync.organization_id,
        sync.source_connection_id,
        "source_connection_id",
    )
    .await?;
    // Describes are cached per client; a refresh must see objects created since.
    source.client.invalidate_describe(None);
    let catalog = Catalog::load(&source).await?;
    let existing = state.store().bulk_schemas(sync.id).await?;
    let added: Vec<BulkSchema> = catalog
        .ids()
        .filter(|id| !existing.iter().any(|s| s.schema_id == *id))
        .map(|id| default_schema(id, true))
        .collect();
    state.store().put_bulk_schemas(sync.id, &added).await?;
    if !added.is_empty() {
        tracing::info!(bulk_sync_id = %sync.id, added = added.len(), "new source objects added");
    }
    Ok(added.len())
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(rename = "filters[enabled]")]
    filter_enabled: Option<bool>,
    enabled: Option<bool>,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    let wanted = query.filter_enabled.or(query.enabled);
    let data: Vec<Value> = state
        .store()
        .bulk_schemas(sync.id)
        .await?
        .iter()
        .filter(|s| wanted.is_none_or(|enabled| s.enabled == enabled))
        .map(|s| schema_body(s, None))
        .collect();
    Ok(Json(json!({ "data": data })))
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, schema_id)): ApiPath<(Uuid, String)>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    let schema = state
        .store()
        .bulk_schemas(sync.id)
        .await?
        .into_iter()
        .find(|s| s.schema_id == schema_id)
        .ok_or_else(|| ApiError::not_found("schema"))?;
    let source = load_source(
        &state,
        sync.organization_id,
        sync.source_connection_id,
        "source_connection_id",
    )
    .await?;
    Ok(Json(
        json!({"data": full_schema_body(&source, &sync, &schema).await?}),
    ))
}

async fn patch_schemas(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    let items = match body.get("schemas") {
        Some(Value::Array(items)) => items.clone(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            return Err(field_error(FieldError::new(
                "schemas",
                "must be a list of schemas",
            )));
        }
    };
    let existing = state.store().bulk_schemas(sync.id).await?;
    let source = load_source(
        &state,
        sync.organization_id,
        sync.source_connection_id,
        "source_connection_id",
    )
    .await?;
    let catalog = Catalog::load(&source).await?;
    let mut updated: Vec<BulkSchema> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let path = format!("schemas[{index}]");
        let id = item
            .get("id")
            .and_then(Value::as_str)
            .or_else(|| item.as_str())
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| field_error(FieldError::new(format!("{path}.id"), "is required")))?;
        let base = existing.iter().find(|s| s.schema_id == id);
        let schema = parse_schema_item(&path, item, base)?;
        if updated.iter().any(|s| s.schema_id == schema.schema_id) {
            return Err(field_error(FieldError::new(
                path,
                format!("schema '{}' is listed twice", schema.schema_id),
            )));
        }
        catalog.check(&source, &path, &schema).await?;
        updated.push(schema);
    }
    state.store().put_bulk_schemas(sync.id, &updated).await?;
    let mut data = Vec::with_capacity(updated.len());
    for schema in &updated {
        data.push(full_schema_body(&source, &sync, schema).await?);
    }
    Ok(Json(json!({ "data": data })))
}

async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, schema_id)): ApiPath<(Uuid, String)>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    let Value::Object(mut object) = body else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    object.insert("id".into(), json!(schema_id));
    let schema = parse_schema_item("", &Value::Object(object), None).map_err(|mut error| {
        // Errors of a single-schema body name the field without a `.` prefix.
        if let Some(Value::String(field)) = error.metadata.get("field").cloned() {
            let trimmed = field.trim_start_matches('.').to_string();
            error.message = error.message.replacen(&field, &trimmed, 1);
            error
                .metadata
                .insert("field".into(), Value::String(trimmed));
        }
        error
    })?;
    let source = load_source(
        &state,
        sync.organization_id,
        sync.source_connection_id,
        "source_connection_id",
    )
    .await?;
    let catalog = Catalog::load(&source).await?;
    catalog
        .check(&source, "", &schema)
        .await
        .map_err(|mut error| {
            if let Some(Value::String(field)) = error.metadata.get("field").cloned() {
                let trimmed = field.trim_start_matches('.').to_string();
                error.message = error.message.replacen(&field, &trimmed, 1);
                error
                    .metadata
                    .insert("field".into(), Value::String(trimmed));
            }
            error
        })?;
    state
        .store()
        .put_bulk_schemas(sync.id, std::slice::from_ref(&schema))
        .await?;
    Ok(Json(
        json!({"data": full_schema_body(&source, &sync, &schema).await?}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_items_take_ids_or_objects() {
        let schema = parse_schema_item("schemas[0]", &json!("Account"), None).unwrap();
        assert_eq!(schema, default_schema("Account", true));
        let schema = parse_schema_item(
            "schemas[1]",
            &json!({"id": "Contact", "enabled": false, "fields": ["Email", {"id": "Name", "enabled": false}],
                    "data_cutoff_timestamp": "2024-01-01T00:00:00Z", "user_output_name": "people"}),
            None,
        )
        .unwrap();
        assert!(!schema.enabled);
        assert_eq!(
            field_configs(&schema.fields),
            [("Email".to_string(), true), ("Name".to_string(), false)]
        );
        assert_eq!(output_name(&schema), "people");
        assert!(schema.data_cutoff_timestamp.is_some());
    }

    #[test]
    fn patch_keeps_what_the_item_omits_but_resets_fields() {
        let mut base = default_schema("Account", false);
        base.user_output_name = Some("accounts".into());
        base.fields = json!([{"id": "Name", "enabled": true}]);
        let schema =
            parse_schema_item("schemas[0]", &json!({"id": "Account"}), Some(&base)).unwrap();
        assert!(!schema.enabled);
        assert_eq!(schema.user_output_name.as_deref(), Some("accounts"));
        assert_eq!(schema.fields, json!([]));
    }

    #[test]
    fn unsupported_options_name_the_field() {
        let field = |item: Value| {
            parse_schema_item("schemas[0]", &item, None)
                .unwrap_err()
                .metadata["field"]
                .clone()
        };
        assert_eq!(
            field(json!({"id": "A", "filters": [{"field_id": "Name", "function": "IsNull"}]})),
            "schemas[0].filters"
        );
        assert_eq!(
            field(json!({"id": "A", "partition_key": "Name"})),
            "schemas[0].partition_key"
        );
        assert_eq!(
            field(json!({"id": "A", "tracking_field": "CreatedDate"})),
            "schemas[0].tracking_field"
        );
        assert_eq!(
            field(json!({"id": "A", "fields": [{"id": "Name", "obfuscate": true}]})),
            "schemas[0].fields[0].obfuscate"
        );
        assert_eq!(
            field(json!({"id": "A", "user_output_name": "bad name"})),
            "schemas[0].user_output_name"
        );
        assert_eq!(field(json!({"enabled": true})), "schemas[0].id");
        assert_eq!(field(json!(5)), "schemas[0]");
    }

    #[test]
    fn tooling_objects_get_a_distinct_output_name() {
        assert_eq!(
            output_name(&default_schema("tooling:ApexClass", true)),
            "tooling_ApexClass"
        );
        assert_eq!(output_name(&default_schema("Account", true)), "Account");
    }

    #[test]
    fn field_bodies_follow_the_selection() {
        let described = vec!["Id".to_string(), "Name".to_string(), "New__c".to_string()];
        let mut schema = default_schema("Account", true);
        assert!(
            fields_body(&schema, &described, false)
                .iter()
                .all(|f| f["enabled"] == true)
        );
        schema.fields = json!([{"id": "Id", "enabled": true}, {"id": "Name", "enabled": false}]);
        let enabled = |auto: bool| {
            fields_body(&schema, &described, auto)
                .iter()
                .map(|f| f["enabled"].as_bool().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(enabled(true), [true, false, true]);
        assert_eq!(enabled(false), [true, false, false]);
    }
}
