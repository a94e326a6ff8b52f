//! The sync definition: Polytomic's `SyncRequest` document ([`SyncDocument`]), the typed
//! Salesforce target configuration ([`TargetConfig`], spec `salesforce-connection.md` §3) and
//! the compiled form the pipeline runs ([`CompiledSync`]).
//!
//! Everything here is pure: validation names the offending field (`target.configuration.
//! rest_batch_size`, `fields[2].source.field`, ...) and says what is accepted. Checks that
//! need IO (target fields exist on the Salesforce object, source fields exist on the model)
//! take their inputs as arguments.

use std::collections::{BTreeMap, HashSet};

use ferry_core::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::filter::{FilterFunction, FilterLogic};

/// The Lead-or-Contact target object.
pub const LEAD_OR_CONTACT: &str = "multi:leadOrContact";

/// Largest `rest_batch_size` (records per sObject Collections call).
pub const MAX_REST_BATCH_SIZE: usize = 200;
/// Largest `bulk_batch_size` (records per Bulk API 1.0 batch).
pub const MAX_BULK_BATCH_SIZE: usize = 10_000;
/// `ingestion_api: automatic` uses REST when a run has fewer changed rows in a window than
/// this, and Bulk otherwise.
pub const AUTOMATIC_BULK_THRESHOLD: usize = 2_000;

/// A source field reference (`{model_id, field}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SourceRef {
    /// The model.
    pub model_id: Uuid,
    /// The model field name.
    pub field: String,
}

/// `target` of a sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TargetDoc {
    /// Destination connection.
    pub connection_id: Uuid,
    /// Target object.
    #[serde(default)]
    pub object: Option<String>,
    /// Create a new target object (not supported for Salesforce).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<BTreeMap<String, String>>,
    /// Name of a new target object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    /// Values that locate a new target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_values: Option<Value>,
    /// Target-specific options (§3).
    #[serde(default)]
    pub configuration: Option<Value>,
    /// Logic over target filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_logic: Option<String>,
}

/// `identity` of a sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IdentityDoc {
    /// The model field whose value identifies a record.
    pub source: SourceRef,
    /// The target field matched against it.
    pub target: String,
    /// Matching function (`Equality`).
    pub function: String,
    /// Create the target identity field (not supported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_field: Option<bool>,
    /// Read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_field_type_id: Option<String>,
}

/// One field mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncFieldDoc {
    /// Target field, or `Relationship.ExternalIdField` to reference a parent record by an
    /// external id (e.g. `Account.Ext__c`).
    pub target: String,
    /// Source field.
    #[serde(default)]
    pub source: Option<SourceRef>,
    /// A constant; when set, `source` is ignored.
    #[serde(default)]
    pub override_value: Option<String>,
    /// Create the target field (not supported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<bool>,
    /// `updateOrCreate` (default) or `create` (write only when the target value is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_mode: Option<String>,
    /// Field encryption (not supported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_enabled: Option<bool>,
}

/// One filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FilterDoc {
    /// Source field; wins over `field_id`.
    #[serde(default)]
    pub field: Option<SourceRef>,
    /// Model field id (or name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_id: Option<String>,
    /// `Model` (default) or `Target`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_type: Option<String>,
    /// Filter function.
    pub function: String,
    /// Comparison value.
    #[serde(default)]
    pub value: Option<Value>,
    /// Label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// One conditional override.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OverrideDoc {
    /// Source field (ignored when `field_id` is present).
    #[serde(default)]
    pub field: Option<SourceRef>,
    /// Model field id (or name); wins over `field`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_id: Option<String>,
    /// Condition function.
    #[serde(default)]
    pub function: Option<String>,
    /// Condition value.
    #[serde(default)]
    pub value: Option<Value>,
    /// Replacement value.
    #[serde(default, rename = "override")]
    pub replacement: Option<Value>,
}

/// `schedule` of a sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ScheduleDoc {
    /// `manual`, `hourly`, ...
    pub frequency: String,
    /// The other schedule keys, kept as given.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// Polytomic's `SyncRequest` (create and update body; also what the store keeps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncDocument {
    /// Display name.
    pub name: String,
    /// Sync mode.
    pub mode: String,
    /// Destination.
    pub target: TargetDoc,
    /// How records are matched.
    #[serde(default)]
    pub identity: Option<IdentityDoc>,
    /// Field mappings.
    pub fields: Vec<SyncFieldDoc>,
    /// Values always written.
    #[serde(default)]
    pub override_fields: Option<Vec<SyncFieldDoc>>,
    /// Source filters.
    #[serde(default)]
    pub filters: Option<Vec<FilterDoc>>,
    /// Logic over the filters (`1 AND (2 OR 3)`).
    #[serde(default)]
    pub filter_logic: Option<String>,
    /// Conditional overrides.
    #[serde(default)]
    pub overrides: Option<Vec<OverrideDoc>>,
    /// When it runs.
    pub schedule: ScheduleDoc,
    /// Enabled.
    #[serde(default)]
    pub active: Option<bool>,
    /// Push every record on every run.
    #[serde(default)]
    pub sync_all_records: Option<bool>,
    /// The first run records the baseline only.
    #[serde(default)]
    pub skip_initial_backfill: Option<bool>,
    /// Enrichment option (no enrichment in Ferry: must be absent or false).
    #[serde(default)]
    pub only_enrich_updates: Option<bool>,
    /// Field encryption passphrase (not supported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_passphrase: Option<String>,
    /// Policy ids.
    #[serde(default)]
    pub policies: Option<Vec<String>>,
    /// Partner callers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<Uuid>,
}

/// Sync modes Ferry runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Insert only.
    Create,
    /// Update existing records only.
    Update,
    /// Update matches, create the rest.
    UpdateOrCreate,
    /// Delete matching records.
    Remove,
}

impl Mode {
    /// Parses the API spelling, or names `mode` with the accepted values.
    pub fn parse(mode: &str) -> Result<Mode, FieldError> {
        match mode {
            "create" => Ok(Mode::Create),
            "update" => Ok(Mode::Update),
            "updateOrCreate" => Ok(Mode::UpdateOrCreate),
            "remove" => Ok(Mode::Remove),
            "replace" | "append" | "snapshot" | "enrich" => Err(FieldError::new(
                "mode",
                format!(
                    "mode '{mode}' is not supported yet for Salesforce targets (supported: \
                     create, update, updateOrCreate, remove)"
                ),
            )),
            other => Err(FieldError::new(
                "mode",
                format!(
                    "'{other}' is not a sync mode (accepted: create, update, updateOrCreate, \
                     remove)"
                ),
            )),
        }
    }

    /// Whether the mode needs an identity.
    pub fn requires_identity(self) -> bool {
        !matches!(self, Mode::Create)
    }

    /// Whether the mode takes target filters on `object` (`update` only, where every row
    /// written matches an existing record whose current values are tested; not for
    /// `multi:leadOrContact`).
    pub fn supports_target_filters(self, object: &str) -> bool {
        self == Mode::Update && object != LEAD_OR_CONTACT
    }

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Create => "create",
            Mode::Update => "update",
            Mode::UpdateOrCreate => "updateOrCreate",
            Mode::Remove => "remove",
        }
    }
}

/// `ingestion_api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestionApi {
    /// REST below [`AUTOMATIC_BULK_THRESHOLD`] changed rows per window, Bulk above.
    Automatic,
    /// Bulk API 1.0 jobs.
    Bulk,
    /// sObject Collections.
    Rest,
}

/// `concurrency_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConcurrencyMode {
    /// Several batches at a time.
    Parallel,
    /// One batch at a time.
    Serial,
}

/// `invalid_relationships`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidRelationships {
    /// The row fails with Salesforce's reason.
    Error,
    /// The invalid reference is dropped, the rest written, with a warning.
    OmitValues,
    /// The row is skipped with a warning and not retried.
    OmitRecords,
}

/// `create_records_as` (Lead or Contact).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateRecordsAs {
    /// Create Contacts.
    Contact,
    /// Create Leads.
    Lead,
    /// A Contact when the row maps an AccountId, else a Lead.
    ContactIfAccountId,
}

/// Which §3 table applies to a target object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// §3a `multi:leadOrContact`.
    LeadOrContact,
    /// §3b `Lead`.
    Lead,
    /// §3c every other object.
    Other,
}

impl TargetKind {
    /// The kind of a target object name.
    pub fn of(object: &str) -> TargetKind {
        if object == LEAD_OR_CONTACT {
            TargetKind::LeadOrContact
        } else if object.eq_ignore_ascii_case("Lead") {
            TargetKind::Lead
        } else {
            TargetKind::Other
        }
    }

    fn keys(self) -> &'static [&'static str] {
        match self {
            TargetKind::LeadOrContact => &[
                "bulk_batch_size",
                "concurrency_mode",
                "create_records_as",
                "ingestion_api",
                "rest_batch_size",
            ],
            TargetKind::Lead => &[
                "bulk_batch_size",
                "concurrency_mode",
                "ignore_invalid_references",
                "ingestion_api",
                "insert_null_values",
                "invalid_relationships",
                "only_sync_different",
                "rest_batch_size",
                "skip_converted",
                "sort_batches_by",
            ],
            TargetKind::Other => &[
                "bulk_batch_size",
                "concurrency_mode",
                "ingestion_api",
                "insert_null_values",
                "invalid_relationships",
                "only_sync_different",
                "rest_batch_size",
                "sort_batches_by",
            ],
        }
    }
}

/// The Salesforce target configuration (§3), defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetConfig {
    /// Which write API.
    pub ingestion_api: IngestionApi,
    /// Records per sObject Collections call (1–200, default 200).
    pub rest_batch_size: usize,
    /// Records per Bulk batch (1–10,000, default 10,000).
    pub bulk_batch_size: usize,
    /// Batch concurrency (default Parallel).
    pub concurrency_mode: ConcurrencyMode,
    /// Send nulls (clear fields) instead of leaving them untouched.
    pub insert_null_values: bool,
    /// What to do with invalid references (default Error).
    pub invalid_relationships: InvalidRelationships,
    /// Skip rows whose Salesforce values already equal the mapped values.
    pub only_sync_different: bool,
    /// Target field to sort rows by before batching.
    pub sort_batches_by: Option<String>,
    /// Lead: ignore invalid external-id references.
    pub ignore_invalid_references: bool,
    /// Lead: skip converted and duplicate Leads.
    pub skip_converted: bool,
    /// Lead or Contact: what to create.
    pub create_records_as: CreateRecordsAs,
}

impl Default for TargetConfig {
    fn default() -> Self {
        TargetConfig {
            ingestion_api: IngestionApi::Automatic,
            rest_batch_size: MAX_REST_BATCH_SIZE,
            bulk_batch_size: MAX_BULK_BATCH_SIZE,
            concurrency_mode: ConcurrencyMode::Parallel,
            insert_null_values: false,
            invalid_relationships: InvalidRelationships::Error,
            only_sync_different: false,
            sort_batches_by: None,
            ignore_invalid_references: false,
            skip_converted: false,
            create_records_as: CreateRecordsAs::ContactIfAccountId,
        }
    }
}

fn config_field(key: &str) -> String {
    format!("target.configuration.{key}")
}

/// A string option: `None` for absent, null or `""` (the default).
fn string_option(key: &str, value: &Value) -> Result<Option<String>, FieldError> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) if text.trim().is_empty() => Ok(None),
        Value::String(text) => Ok(Some(text.trim().to_string())),
        _ => Err(FieldError::new(config_field(key), "must be a string")),
    }
}

fn enum_option<T: Copy>(
    key: &str,
    value: &Value,
    accepted: &[(&str, T)],
) -> Result<Option<T>, FieldError> {
    let Some(text) = string_option(key, value)? else {
        return Ok(None);
    };
    accepted
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, v)| Some(*v))
        .ok_or_else(|| {
            let names: Vec<&str> = accepted.iter().map(|(name, _)| *name).collect();
            FieldError::new(
                config_field(key),
                format!("'{text}' is not accepted (accepted: {})", names.join(", ")),
            )
        })
}

fn bool_option(key: &str, value: &Value) -> Result<Option<bool>, FieldError> {
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::String(text) if text.is_empty() => Ok(None),
        Value::String(text) if text == "true" || text == "false" => Ok(Some(text == "true")),
        _ => Err(FieldError::new(
            config_field(key),
            "must be a boolean (true or false)",
        )),
    }
}

fn size_option(key: &str, value: &Value, max: usize) -> Result<Option<usize>, FieldError> {
    let out_of_range = || {
        FieldError::new(
            config_field(key),
            format!("must be an integer from 1 to {max} (Salesforce's limit)"),
        )
    };
    match value {
        Value::Null => Ok(None),
        Value::String(text) if text.is_empty() => Ok(None),
        Value::String(text) => match text.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
            _ => Err(out_of_range()),
        },
        Value::Number(number) => match number.as_u64() {
            Some(n) if n >= 1 && n <= max as u64 => Ok(Some(n as usize)),
            _ => Err(out_of_range()),
        },
        _ => Err(out_of_range()),
    }
}

impl TargetConfig {
    /// Parses and validates `target.configuration` for a target object. Absent, null and
    /// `""` values mean "the default"; unknown keys are rejected with the accepted list.
    pub fn parse(object: &str, configuration: Option<&Value>) -> Result<TargetConfig, FieldError> {
        let kind = TargetKind::of(object);
        let mut config = TargetConfig::default();
        let empty = serde_json::Map::new();
        let map = match configuration {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(map)) => map,
            Some(_) => {
                return Err(FieldError::new("target.configuration", "must be an object"));
            }
        };
        for (key, value) in map {
            if !kind.keys().contains(&key.as_str()) {
                return Err(FieldError::new(
                    config_field(key),
                    format!(
                        "unknown option for target '{object}' (accepted: {})",
                        kind.keys().join(", ")
                    ),
                ));
            }
            match key.as_str() {
                "ingestion_api" => {
                    if let Some(api) = enum_option(
                        key,
                        value,
                        &[
                            ("automatic", IngestionApi::Automatic),
                            ("bulk", IngestionApi::Bulk),
                            ("rest", IngestionApi::Rest),
                        ],
                    )? {
                        config.ingestion_api = api;
                    }
                }
                "rest_batch_size" => {
                    if let Some(n) = size_option(key, value, MAX_REST_BATCH_SIZE)? {
                        config.rest_batch_size = n;
                    }
                }
                "bulk_batch_size" => {
                    if let Some(n) = size_option(key, value, MAX_BULK_BATCH_SIZE)? {
                        config.bulk_batch_size = n;
                    }
                }
                "concurrency_mode" => {
                    if let Some(mode) = enum_option(
                        key,
                        value,
                        &[
                            ("Parallel", ConcurrencyMode::Parallel),
                            ("Serial", ConcurrencyMode::Serial),
                        ],
                    )? {
                        config.concurrency_mode = mode;
                    }
                }
                "insert_null_values" => {
                    if let Some(b) = bool_option(key, value)? {
                        config.insert_null_values = b;
                    }
                }
                "invalid_relationships" => {
                    if let Some(choice) = enum_option(
                        key,
                        value,
                        &[
                            ("error", InvalidRelationships::Error),
                            ("omit_values", InvalidRelationships::OmitValues),
                            ("omit_records", InvalidRelationships::OmitRecords),
                        ],
                    )? {
                        config.invalid_relationships = choice;
                    }
                }
                "only_sync_different" => {
                    if let Some(b) = bool_option(key, value)? {
                        config.only_sync_different = b;
                    }
                }
                "sort_batches_by" => {
                    config.sort_batches_by = string_option(key, value)?;
                }
                "ignore_invalid_references" => {
                    if let Some(b) = bool_option(key, value)? {
                        config.ignore_invalid_references = b;
                    }
                }
                "skip_converted" => {
                    if let Some(b) = bool_option(key, value)? {
                        config.skip_converted = b;
                    }
                }
                "create_records_as" => {
                    if let Some(choice) = enum_option(
                        key,
                        value,
                        &[
                            ("Contact", CreateRecordsAs::Contact),
                            ("Lead", CreateRecordsAs::Lead),
                            ("ContactIfAccountId", CreateRecordsAs::ContactIfAccountId),
                        ],
                    )? {
                        config.create_records_as = choice;
                    }
                }
                _ => {}
            }
        }
        Ok(config)
    }
}

/// Where a mapped value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A model field (its position in the model's rows is resolved per read).
    Source(String),
    /// A constant.
    Constant(Value),
}

/// One compiled mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMap {
    /// Target field.
    pub target: String,
    /// Value.
    pub value: FieldValue,
    /// Write only when the Salesforce value is empty (`sync_mode: create`).
    pub create_only: bool,
}

/// What a filter reads (`filters[].field_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterFieldType {
    /// A model field, tested as rows are read (the default).
    Model,
    /// A field of the target record the row's identity matches, tested on its current
    /// value once the target has been read (mode `update` only: every row written is
    /// matched to an existing record, so "the record's current value" always exists).
    Target,
}

impl FilterFieldType {
    /// Parses `filters[index].field_type` (absent or empty: `Model`; case-insensitive).
    pub fn parse(field_type: Option<&str>, index: usize) -> Result<FilterFieldType, FieldError> {
        match field_type.map(str::trim) {
            None | Some("") => Ok(FilterFieldType::Model),
            Some(text) if text.eq_ignore_ascii_case("Model") => Ok(FilterFieldType::Model),
            Some(text) if text.eq_ignore_ascii_case("Target") => Ok(FilterFieldType::Target),
            Some(other) => Err(FieldError::new(
                format!("filters[{index}].field_type"),
                format!("'{other}' is not accepted (accepted: Model, Target)"),
            )),
        }
    }
}

/// A compiled filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The model field, or for a target filter the target field (a Salesforce field or a
    /// table column).
    pub field: String,
    /// What `field` names.
    pub field_type: FilterFieldType,
    /// Function.
    pub function: FilterFunction,
    /// Comparison value.
    pub value: Option<Value>,
}

/// A compiled override: when `field`'s value satisfies the condition, every mapping of
/// that field writes `replacement` instead.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Model field.
    pub field: String,
    /// Condition (`None`: always).
    pub function: Option<FilterFunction>,
    /// Condition value.
    pub value: Option<Value>,
    /// Replacement.
    pub replacement: Value,
}

/// What the pipeline runs.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledSync {
    /// Mode.
    pub mode: Mode,
    /// Target object (`Contact`, `multi:leadOrContact`, ...).
    pub object: String,
    /// The model read.
    pub model_id: Uuid,
    /// The model field whose value keys the ledger (the identity's source field, else the
    /// model's identifier).
    pub key_field: String,
    /// The identity's target field (absent for `create` without identity).
    pub identity_target: Option<String>,
    /// Mappings (fields, then override_fields).
    pub fields: Vec<FieldMap>,
    /// Filters, model and target ones in the document's order (`filter_logic` numbers
    /// them from 1).
    pub filters: Vec<Filter>,
    /// Logic over the filters (default: all must hold).
    pub filter_logic: Option<FilterLogic>,
    /// Overrides.
    pub overrides: Vec<Override>,
    /// Target configuration.
    pub config: TargetConfig,
    /// Push every row each run.
    pub sync_all_records: bool,
    /// First run records the baseline only.
    pub skip_initial_backfill: bool,
}

impl CompiledSync {
    /// Whether a filter tests the target record's current values (which the run then reads
    /// for every row it may write).
    pub fn has_target_filters(&self) -> bool {
        self.filters
            .iter()
            .any(|f| f.field_type == FilterFieldType::Target)
    }

    /// The target fields the target filters test, each once (as first written).
    pub fn target_filter_fields(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for filter in &self.filters {
            if filter.field_type == FilterFieldType::Target
                && !names.iter().any(|n| n.eq_ignore_ascii_case(&filter.field))
            {
                names.push(&filter.field);
            }
        }
        names
    }
}

/// A model field the sync may reference: its stable id and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFieldRef {
    /// Stable field id.
    pub id: String,
    /// Field name (the column).
    pub name: String,
}

/// What validation needs to know about the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Model id.
    pub id: Uuid,
    /// Enabled fields.
    pub fields: Vec<ModelFieldRef>,
    /// The model's unique-key field.
    pub identifier: Option<String>,
}

/// Frequencies Ferry runs: `manual` (started through the API) and, when the scheduler
/// runs, the time-based ones, `continuous` and `runafter`.
pub const SCHEDULED_FREQUENCIES: [&str; 6] = [
    "continuous",
    "hourly",
    "daily",
    "weekly",
    "custom",
    "runafter",
];

/// The model syncs a `runafter` schedule waits for.
pub fn run_after_syncs(schedule: &ferry_core::schedule::Schedule) -> Result<Vec<Uuid>, FieldError> {
    let Some(run_after) = &schedule.run_after else {
        return Ok(Vec::new());
    };
    run_after
        .sync_ids
        .iter()
        .enumerate()
        .map(|(index, id)| {
            Uuid::parse_str(id.trim()).map_err(|_| {
                FieldError::new(
                    format!("schedule.run_after.sync_ids[{index}]"),
                    format!("'{id}' is not a sync id"),
                )
            })
        })
        .collect()
}

/// The document's schedule, validated (errors name `schedule.<field>`). `runafter` waits
/// for model syncs only (bulk syncs are not supported yet).
pub fn schedule_of(document: &SyncDocument) -> Result<ferry_core::schedule::Schedule, FieldError> {
    let value = serde_json::to_value(&document.schedule)
        .map_err(|e| FieldError::new("schedule", e.to_string()))?;
    let schedule: ferry_core::schedule::Schedule = serde_json::from_value(value).map_err(|e| {
        FieldError::new(
            "schedule",
            format!("{e} (minute, hour, day_of_week, day_of_month and month are strings)"),
        )
    })?;
    schedule.validate().map_err(|e| e.prefixed("schedule"))?;
    if schedule.frequency == "runafter" {
        if schedule
            .run_after
            .as_ref()
            .is_some_and(|r| !r.bulk_sync_ids.is_empty())
        {
            return Err(FieldError::new(
                "schedule.run_after.bulk_sync_ids",
                "running after bulk syncs is not supported yet (give model sync_ids)",
            ));
        }
        run_after_syncs(&schedule)?;
    }
    Ok(schedule)
}

/// Compiles a document against its model. Checks everything that does not need the
/// target's describe (see [`check_target_fields`]).
pub fn compile(document: &SyncDocument, model: &ModelInfo) -> Result<CompiledSync, FieldError> {
    let mode = Mode::parse(&document.mode)?;
    if document.name.trim().is_empty() {
        return Err(FieldError::new("name", "must not be empty"));
    }
    schedule_of(document)?;
    let Some(object) = document
        .target
        .object
        .as_deref()
        .map(str::trim)
        .filter(|o| !o.is_empty())
    else {
        return Err(FieldError::new(
            "target.object",
            "is required (a Salesforce object such as Contact, or multi:leadOrContact)",
        ));
    };
    for (present, field) in [
        (document.target.create.is_some(), "target.create"),
        (document.target.new_name.is_some(), "target.new_name"),
        (
            document.target.search_values.is_some(),
            "target.search_values",
        ),
        (
            document.encryption_passphrase.is_some(),
            "encryption_passphrase",
        ),
        (
            document.only_enrich_updates == Some(true),
            "only_enrich_updates",
        ),
    ] {
        if present {
            return Err(FieldError::new(
                field,
                "is not supported yet for Salesforce targets",
            ));
        }
    }
    if document
        .target
        .filter_logic
        .as_deref()
        .is_some_and(|logic| !logic.trim().is_empty())
    {
        return Err(FieldError::new(
            "target.filter_logic",
            "is not supported: give the expression in filter_logic, whose numbers may refer \
             to model and target filters alike (e.g. \"1 AND 2\")",
        ));
    }
    if object == LEAD_OR_CONTACT && mode == Mode::Remove {
        return Err(FieldError::new(
            "mode",
            "remove is not supported yet for multi:leadOrContact (supported: create, update, \
             updateOrCreate)",
        ));
    }
    let config = TargetConfig::parse(object, document.target.configuration.as_ref())?;

    let field_names: HashSet<&str> = model.fields.iter().map(|f| f.name.as_str()).collect();
    let check_source = |source: &SourceRef, path: &str| -> Result<String, FieldError> {
        if source.model_id != model.id {
            return Err(FieldError::new(
                format!("{path}.model_id"),
                "every mapping must read the same model (several models are not supported yet)",
            ));
        }
        if !field_names.contains(source.field.as_str()) {
            return Err(FieldError::new(
                format!("{path}.field"),
                format!("'{}' is not an enabled field of the model", source.field),
            ));
        }
        Ok(source.field.clone())
    };
    let resolve_field_id = |id: &str, path: &str| -> Result<String, FieldError> {
        model
            .fields
            .iter()
            .find(|f| f.id == id || f.name == id)
            .map(|f| f.name.clone())
            .ok_or_else(|| FieldError::new(path, format!("'{id}' is not a field of the model")))
    };

    let (key_field, identity_target) = match &document.identity {
        Some(identity) => {
            if identity.function != "Equality" {
                return Err(FieldError::new(
                    "identity.function",
                    format!(
                        "'{}' is not supported yet (supported: Equality)",
                        identity.function
                    ),
                ));
            }
            if identity.new_field == Some(true) {
                return Err(FieldError::new(
                    "identity.new_field",
                    "creating the identity field is not supported yet",
                ));
            }
            if identity.target.trim().is_empty() {
                return Err(FieldError::new(
                    "identity.target",
                    "must name a target field",
                ));
            }
            let field = check_source(&identity.source, "identity.source")?;
            (field, Some(identity.target.clone()))
        }
        None if mode.requires_identity() || object == LEAD_OR_CONTACT => {
            return Err(FieldError::new(
                "identity",
                format!("is required for mode {}", mode.as_str()),
            ));
        }
        None => match &model.identifier {
            Some(identifier) if field_names.contains(identifier.as_str()) => {
                (identifier.clone(), None)
            }
            _ => {
                return Err(FieldError::new(
                    "identity",
                    "is required when the model has no identifier (Ferry tracks each record \
                     by it so a row is never created twice)",
                ));
            }
        },
    };

    let mut fields = Vec::new();
    let mut targets = HashSet::new();
    let groups = [
        ("fields", document.fields.as_slice()),
        (
            "override_fields",
            document.override_fields.as_deref().unwrap_or_default(),
        ),
    ];
    if document.fields.is_empty() && mode != Mode::Remove {
        return Err(FieldError::new("fields", "map at least one field"));
    }
    for (group, docs) in groups {
        for (index, doc) in docs.iter().enumerate() {
            let path = format!("{group}[{index}]");
            if doc.target.trim().is_empty() {
                return Err(FieldError::new(
                    format!("{path}.target"),
                    "must not be empty",
                ));
            }
            if doc.new == Some(true) {
                return Err(FieldError::new(
                    format!("{path}.new"),
                    "creating target fields is not supported yet",
                ));
            }
            if doc.encryption_enabled == Some(true) {
                return Err(FieldError::new(
                    format!("{path}.encryption_enabled"),
                    "field encryption is not supported yet",
                ));
            }
            let create_only = match doc.sync_mode.as_deref() {
                None | Some("") | Some("updateOrCreate") => false,
                Some("create") => true,
                Some(other) => {
                    return Err(FieldError::new(
                        format!("{path}.sync_mode"),
                        format!("'{other}' is not accepted (accepted: updateOrCreate, create)"),
                    ));
                }
            };
            let value = match (&doc.override_value, &doc.source) {
                (Some(constant), _) => FieldValue::Constant(Value::String(constant.clone())),
                (None, Some(source)) => {
                    FieldValue::Source(check_source(source, &format!("{path}.source"))?)
                }
                (None, None) => {
                    return Err(FieldError::new(
                        format!("{path}.source"),
                        "give a source field or an override_value",
                    ));
                }
            };
            if !targets.insert(doc.target.to_ascii_lowercase()) {
                return Err(FieldError::new(
                    format!("{path}.target"),
                    format!("'{}' is mapped twice", doc.target),
                ));
            }
            fields.push(FieldMap {
                target: doc.target.clone(),
                value,
                create_only,
            });
        }
    }

    let mut filters = Vec::new();
    for (index, doc) in document.filters.iter().flatten().enumerate() {
        let path = format!("filters[{index}]");
        let field_type = FilterFieldType::parse(doc.field_type.as_deref(), index)?;
        let field = match field_type {
            FilterFieldType::Model => match (&doc.field, &doc.field_id) {
                (Some(source), _) => check_source(source, &format!("{path}.field"))?,
                (None, Some(id)) => resolve_field_id(id, &format!("{path}.field_id"))?,
                (None, None) => {
                    return Err(FieldError::new(
                        format!("{path}.field"),
                        "give a field or a field_id",
                    ));
                }
            },
            FilterFieldType::Target => target_filter_field(doc, &path, mode, object)?,
        };
        let function = FilterFunction::parse(&doc.function)
            .map_err(|message| FieldError::new(format!("{path}.function"), message))?;
        function
            .check_value(doc.value.as_ref())
            .map_err(|message| FieldError::new(format!("{path}.value"), message))?;
        filters.push(Filter {
            field,
            field_type,
            function,
            value: doc.value.clone(),
        });
    }
    let filter_logic = match document.filter_logic.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(
            FilterLogic::parse(text, filters.len())
                .map_err(|message| FieldError::new("filter_logic", message))?,
        ),
    };

    let mut overrides = Vec::new();
    for (index, doc) in document.overrides.iter().flatten().enumerate() {
        let path = format!("overrides[{index}]");
        let field = match (&doc.field_id, &doc.field) {
            (Some(id), _) => resolve_field_id(id, &format!("{path}.field_id"))?,
            (None, Some(source)) => check_source(source, &format!("{path}.field"))?,
            (None, None) => {
                return Err(FieldError::new(
                    format!("{path}.field"),
                    "give a field or a field_id",
                ));
            }
        };
        let function = match doc.function.as_deref() {
            None | Some("") => None,
            Some(name) => {
                let function = FilterFunction::parse(name)
                    .map_err(|message| FieldError::new(format!("{path}.function"), message))?;
                function
                    .check_value(doc.value.as_ref())
                    .map_err(|message| FieldError::new(format!("{path}.value"), message))?;
                Some(function)
            }
        };
        overrides.push(Override {
            field,
            function,
            value: doc.value.clone(),
            replacement: doc.replacement.clone().unwrap_or(Value::Null),
        });
    }

    Ok(CompiledSync {
        mode,
        object: object.to_string(),
        model_id: model.id,
        key_field,
        identity_target,
        fields,
        filters,
        filter_logic,
        overrides,
        config,
        sync_all_records: document.sync_all_records.unwrap_or(false),
        skip_initial_backfill: document.skip_initial_backfill.unwrap_or(false),
    })
}

/// The target field a `field_type: Target` filter names, after checking the sync can run
/// it: mode `update` only (each row written matches an existing record whose current value
/// is tested; in `updateOrCreate` a row may match nothing, and `create` and `remove` do not
/// write over existing values), and not for `multi:leadOrContact`.
fn target_filter_field(
    doc: &FilterDoc,
    path: &str,
    mode: Mode,
    object: &str,
) -> Result<String, FieldError> {
    if object == LEAD_OR_CONTACT {
        return Err(FieldError::new(
            format!("{path}.field_type"),
            "target filters are not supported for multi:leadOrContact (accepted: Model)",
        ));
    }
    if !mode.supports_target_filters(object) {
        return Err(FieldError::new(
            format!("{path}.field_type"),
            format!(
                "target filters need mode update, where each row written matches an existing \
                 record whose current value is tested (accepted in mode {}: Model)",
                mode.as_str()
            ),
        ));
    }
    if doc.field.is_some() {
        return Err(FieldError::new(
            format!("{path}.field"),
            "a target filter names the target field in field_id (field refers to a model \
             field)",
        ));
    }
    match doc.field_id.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(FieldError::new(
            format!("{path}.field_id"),
            "name the target field the filter tests (e.g. LeadSource, or a column of the \
             table)",
        )),
    }
}

/// What validation needs from a Salesforce describe: each field's name and whether it can
/// be created, updated, used as an identity, and whether it is a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFieldInfo {
    /// API name.
    pub name: String,
    /// Settable on insert.
    pub createable: bool,
    /// Settable on update.
    pub updateable: bool,
    /// `Id`, an external id or an idLookup field.
    pub identity: bool,
    /// A lookup or master-detail field.
    pub reference: bool,
    /// Filterable in SOQL.
    pub filterable: bool,
    /// The relationship name of a reference field (`Account`, `Parent__r`), which mapping
    /// targets use as `Relationship.ExternalIdField` to reference a parent by external id.
    pub relationship: Option<String>,
}

/// Checks the mapped target fields, the identity and `sort_batches_by` against the target
/// object's fields.
pub fn check_target_fields(
    document: &SyncDocument,
    sync: &CompiledSync,
    fields: &[TargetFieldInfo],
) -> Result<(), FieldError> {
    let find = |name: &str| fields.iter().find(|f| f.name.eq_ignore_ascii_case(name));
    let object = &sync.object;
    for (group, docs) in [
        ("fields", document.fields.as_slice()),
        (
            "override_fields",
            document.override_fields.as_deref().unwrap_or_default(),
        ),
    ] {
        for (index, doc) in docs.iter().enumerate() {
            let path = format!("{group}[{index}].target");
            // `Relationship.ExternalIdField`: a parent referenced by its external id.
            let by_relationship = doc.target.split_once('.').and_then(|(relationship, key)| {
                (!key.is_empty() && !key.contains('.'))
                    .then(|| {
                        fields.iter().find(|f| {
                            f.reference
                                && f.relationship
                                    .as_deref()
                                    .is_some_and(|r| r.eq_ignore_ascii_case(relationship))
                        })
                    })
                    .flatten()
            });
            let Some(field) = by_relationship.or_else(|| find(&doc.target)) else {
                return Err(FieldError::new(
                    path,
                    format!("'{}' is not a field of {object}", doc.target),
                ));
            };
            let writable = match sync.mode {
                Mode::Create => field.createable,
                Mode::Update => field.updateable,
                Mode::UpdateOrCreate => field.createable || field.updateable,
                Mode::Remove => true,
            };
            if !writable {
                return Err(FieldError::new(
                    path,
                    format!(
                        "'{}' of {object} cannot be written in mode {}",
                        field.name,
                        sync.mode.as_str()
                    ),
                ));
            }
        }
    }
    if let Some(target) = &sync.identity_target {
        let Some(field) = find(target) else {
            return Err(FieldError::new(
                "identity.target",
                format!("'{target}' is not a field of {object}"),
            ));
        };
        if !field.identity || !field.filterable {
            let accepted: Vec<&str> = fields
                .iter()
                .filter(|f| f.identity && f.filterable)
                .map(|f| f.name.as_str())
                .collect();
            return Err(FieldError::new(
                "identity.target",
                format!(
                    "'{}' cannot identify {object} records (accepted: {})",
                    field.name,
                    accepted.join(", ")
                ),
            ));
        }
    }
    for (index, filter) in sync.filters.iter().enumerate() {
        if filter.field_type == FilterFieldType::Target && find(&filter.field).is_none() {
            return Err(FieldError::new(
                format!("filters[{index}].field_id"),
                format!(
                    "'{}' is not a field of {object} (a target filter tests a field of the \
                     target object)",
                    filter.field
                ),
            ));
        }
    }
    // `sort_batches_by` naming a field the object lacks is accepted (the published Lead
    // example names `AccountId`); each execution then reports a warning.
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Database targets (PostgreSQL, MySQL, SQLite tables)
// ---------------------------------------------------------------------------------------

/// Connection types a model sync can write tables of.
pub const DATABASE_TARGET_TYPES: [&str; 3] = ["postgresql", "mysql", "sqlite"];

/// The `target.object` Polytomic's clients send for a target that is being created.
pub const NEW_TARGET_PLACEHOLDER: &str = "__pt_new_target";

/// Options of `target.configuration` for database tables.
pub const DATABASE_TARGET_KEYS: [&str; 1] = ["preserve_table_on_resync"];

/// Sync modes of database targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseMode {
    /// Insert rows whose identity the table does not hold yet; existing rows are left alone.
    Create,
    /// Update rows whose identity the table holds; others are skipped (and retried).
    Update,
    /// Upsert by the identity column (needs a unique index on it).
    UpdateOrCreate,
    /// Delete the rows whose identity matches.
    Remove,
    /// Insert every new or changed model row as a new table row (no identity matching).
    Append,
    /// Make the table hold exactly the model's rows each run: rows are loaded into a
    /// staging table and swapped in with one transaction at the end (every run rewrites
    /// everything; change tracking does not apply).
    Replace,
    /// Append the model's complete contents each run as a new snapshot: every row is
    /// written with the run's time in the `_ferry_snapshot_at` column, earlier snapshots
    /// are kept (staged like `replace` and appended in one transaction at the end, so a
    /// failed or canceled run adds nothing; change tracking does not apply).
    Snapshot,
}

impl DatabaseMode {
    /// Every mode, in the order they are listed.
    pub const ALL: [DatabaseMode; 7] = [
        DatabaseMode::Create,
        DatabaseMode::Update,
        DatabaseMode::UpdateOrCreate,
        DatabaseMode::Remove,
        DatabaseMode::Append,
        DatabaseMode::Replace,
        DatabaseMode::Snapshot,
    ];

    /// Parses the API spelling, or names `mode` with the accepted values.
    pub fn parse(mode: &str) -> Result<DatabaseMode, FieldError> {
        DatabaseMode::ALL
            .into_iter()
            .find(|m| m.as_str() == mode)
            .ok_or_else(|| {
                let accepted: Vec<&str> = DatabaseMode::ALL.iter().map(|m| m.as_str()).collect();
                let reason = if mode == "enrich" {
                    format!("mode '{mode}' is not supported yet for database targets")
                } else {
                    format!("'{mode}' is not a sync mode for database targets")
                };
                FieldError::new(
                    "mode",
                    format!("{reason} (accepted: {})", accepted.join(", ")),
                )
            })
    }

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseMode::Create => "create",
            DatabaseMode::Update => "update",
            DatabaseMode::UpdateOrCreate => "updateOrCreate",
            DatabaseMode::Remove => "remove",
            DatabaseMode::Append => "append",
            DatabaseMode::Replace => "replace",
            DatabaseMode::Snapshot => "snapshot",
        }
    }

    /// Whether the mode matches rows by an identity (which the sync must then give).
    pub fn requires_identity(self) -> bool {
        matches!(
            self,
            DatabaseMode::Update | DatabaseMode::UpdateOrCreate | DatabaseMode::Remove
        )
    }

    /// Whether per-field `sync_mode: create` changes what is written (columns filled only
    /// where the existing row holds NULL); insert-only modes write every column anyway.
    pub fn supports_field_sync_mode(self) -> bool {
        matches!(self, DatabaseMode::Update | DatabaseMode::UpdateOrCreate)
    }

    /// Whether the mode takes target filters (`update` only: every row written matches an
    /// existing row whose current values are tested).
    pub fn supports_target_filters(self) -> bool {
        self == DatabaseMode::Update
    }

    /// Whether the identity column needs a unique index (upserts rely on it).
    pub fn requires_unique_identity(self) -> bool {
        matches!(self, DatabaseMode::Update | DatabaseMode::UpdateOrCreate)
    }

    /// A one-line description.
    pub fn description(self) -> &'static str {
        match self {
            DatabaseMode::Create => "Insert rows whose identity is not in the table yet",
            DatabaseMode::Update => "Update rows whose identity is in the table",
            DatabaseMode::UpdateOrCreate => "Upsert rows by the identity column",
            DatabaseMode::Remove => "Delete rows whose identity matches",
            DatabaseMode::Append => "Insert new and changed rows without matching",
            DatabaseMode::Replace => "Replace the table's rows with the model's rows each run",
            DatabaseMode::Snapshot => {
                "Append all of the model's rows each run, stamped with the run's time"
            }
        }
    }

    /// The Salesforce-path mode whose compile-time checks apply (identity, mappings).
    fn checked_as(self) -> Mode {
        match self {
            DatabaseMode::Create
            | DatabaseMode::Append
            | DatabaseMode::Replace
            | DatabaseMode::Snapshot => Mode::Create,
            DatabaseMode::Update => Mode::Update,
            DatabaseMode::UpdateOrCreate => Mode::UpdateOrCreate,
            DatabaseMode::Remove => Mode::Remove,
        }
    }
}

/// A table named by the sync: `schema.table` (PostgreSQL), `database.table` (MySQL) or
/// `table` (SQLite; also unqualified names elsewhere, resolved in the connection's default
/// schema or database).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    /// Schema (PostgreSQL) or database (MySQL); `None` for SQLite or unqualified names.
    pub schema: Option<String>,
    /// The table.
    pub name: String,
}

impl TableName {
    /// Splits `schema.table` at the first dot (a SQLite name is never split).
    pub fn parse(text: &str, qualified: bool) -> TableName {
        let text = text.trim();
        match text.split_once('.') {
            Some((schema, name)) if qualified && !schema.is_empty() && !name.is_empty() => {
                TableName {
                    schema: Some(schema.to_string()),
                    name: name.to_string(),
                }
            }
            _ => TableName {
                schema: None,
                name: text.to_string(),
            },
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What a database-target sync writes, compiled from the document.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseSync {
    /// The mode.
    pub mode: DatabaseMode,
    /// The table (`target.object`, or the new table's name).
    pub table: TableName,
    /// Whether the document asks for a new table (`target.create` / `target.new_name`).
    pub create: bool,
    /// `preserve_table_on_resync` (default true): when false, a `resync` run empties the
    /// table before writing, so it holds exactly what the model maps.
    pub preserve_table_on_resync: bool,
}

fn valid_table_part(field: &str, part: &str) -> Result<(), FieldError> {
    if part.trim().is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if part.len() > 63 || part.contains('\0') || part != part.trim() {
        return Err(FieldError::new(
            field,
            format!(
                "'{part}' is not a usable table name (at most 63 characters, no NUL, no \
                 leading or trailing blanks)"
            ),
        ));
    }
    Ok(())
}

/// The table a document names for a database of type `type_id`: an existing one
/// (`target.object`) or a new one (`target.create` with `table` and, for PostgreSQL
/// `schema` / MySQL `database`; or `target.new_name` such as `public.accounts`).
fn database_table(document: &SyncDocument, type_id: &str) -> Result<(TableName, bool), FieldError> {
    let qualified = type_id != "sqlite";
    let schema_key = match type_id {
        "postgresql" => Some("schema"),
        "mysql" => Some("database"),
        _ => None,
    };
    let target = &document.target;
    let object = target
        .object
        .as_deref()
        .map(str::trim)
        .filter(|o| !o.is_empty() && *o != NEW_TARGET_PLACEHOLDER);
    let new_name = target
        .new_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if let Some(create) = &target.create {
        for key in create.keys() {
            if key != "table" && Some(key.as_str()) != schema_key {
                let accepted = match schema_key {
                    Some(schema) => format!("table, {schema}"),
                    None => "table".to_string(),
                };
                return Err(FieldError::new(
                    format!("target.create.{key}"),
                    format!("unknown property (accepted: {accepted})"),
                ));
            }
        }
    }
    let from_create = target.create.as_ref().and_then(|create| {
        let table = create
            .get("table")
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())?;
        let schema = schema_key
            .and_then(|key| create.get(key))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        Some(TableName {
            schema,
            name: table.to_string(),
        })
    });
    let new_table = match (from_create, new_name) {
        (Some(table), _) => Some((table, "target.create.table")),
        (None, Some(name)) => Some((TableName::parse(name, qualified), "target.new_name")),
        (None, None) if target.create.is_some() => {
            return Err(FieldError::new(
                "target.create.table",
                "name the new table (or give target.new_name)",
            ));
        }
        (None, None) => None,
    };
    match (new_table, object) {
        (Some(_), Some(_)) => Err(FieldError::new(
            "target.object",
            "give either an existing table in target.object or a new one in target.create / \
             target.new_name, not both",
        )),
        (Some((table, field)), None) => {
            valid_table_part(field, &table.name)?;
            if let Some(schema) = &table.schema {
                valid_table_part(field, schema)?;
            }
            Ok((table, true))
        }
        (None, Some(object)) => Ok((TableName::parse(object, qualified), false)),
        (None, None) => Err(FieldError::new(
            "target.object",
            "is required: an existing table (e.g. public.accounts), or create one with \
             target.create / target.new_name",
        )),
    }
}

/// Compiles a document whose target is a database table (`type_id` of
/// [`DATABASE_TARGET_TYPES`]): the mapping, filters and overrides as for every target
/// (through [`compile`]), plus the table, the database mode and the target configuration
/// (`preserve_table_on_resync`). The columns themselves are checked against the table
/// with IO (`db_target::check_table`).
pub fn compile_database(
    document: &SyncDocument,
    model: &ModelInfo,
    type_id: &str,
) -> Result<(CompiledSync, DatabaseSync), FieldError> {
    if !DATABASE_TARGET_TYPES.contains(&type_id) {
        return Err(FieldError::new(
            "target.connection_id",
            format!("'{type_id}' connections are not database targets"),
        ));
    }
    let mode = DatabaseMode::parse(&document.mode)?;
    for (index, filter) in document.filters.iter().flatten().enumerate() {
        let field_type = FilterFieldType::parse(filter.field_type.as_deref(), index)?;
        if field_type == FilterFieldType::Target && !mode.supports_target_filters() {
            return Err(FieldError::new(
                format!("filters[{index}].field_type"),
                format!(
                    "target filters need mode update, where each row written matches an \
                     existing row whose current value is tested (accepted in mode {}: Model)",
                    mode.as_str()
                ),
            ));
        }
    }
    let (table, create) = database_table(document, type_id)?;
    if document.target.search_values.is_some() {
        return Err(FieldError::new(
            "target.search_values",
            "is not used by database targets (name the table in target.create or \
             target.new_name)",
        ));
    }
    let mut preserve_table_on_resync = true;
    match &document.target.configuration {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (key, value) in map {
                match key.as_str() {
                    "preserve_table_on_resync" => {
                        if let Some(flag) = bool_option(key, value)? {
                            preserve_table_on_resync = flag;
                        }
                    }
                    _ => {
                        return Err(FieldError::new(
                            config_field(key),
                            format!(
                                "unknown option for database targets (accepted: {})",
                                DATABASE_TARGET_KEYS.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        Some(_) => return Err(FieldError::new("target.configuration", "must be an object")),
    }
    if mode.requires_identity() && document.identity.is_none() {
        return Err(FieldError::new(
            "identity",
            format!("is required for mode {}", mode.as_str()),
        ));
    }
    // The shared checks, on a copy without the database-only parts.
    let mut checked = document.clone();
    checked.mode = mode.checked_as().as_str().to_string();
    checked.target.object = Some(table.to_string());
    checked.target.create = None;
    checked.target.new_name = None;
    checked.target.configuration = None;
    let mut compiled = compile(&checked, model)?;
    compiled.config = TargetConfig::default();
    Ok((
        compiled,
        DatabaseSync {
            mode,
            table,
            create,
            preserve_table_on_resync,
        },
    ))
}

#[cfg(test)]
mod database_tests {
    use serde_json::json;

    use super::*;

    fn model() -> ModelInfo {
        ModelInfo {
            id: Uuid::nil(),
            fields: ["email", "name"]
                .iter()
                .map(|name| ModelFieldRef {
                    id: format!("id-{name}"),
                    name: (*name).to_string(),
                })
                .collect(),
            identifier: Some("email".into()),
        }
    }

    fn document(mode: &str, target: Value) -> SyncDocument {
        let source = |field: &str| json!({"model_id": Uuid::nil(), "field": field});
        serde_json::from_value(json!({
            "name": "people", "mode": mode, "target": target,
            "identity": {"source": source("email"), "target": "email", "function": "Equality"},
            "fields": [{"source": source("name"), "target": "name"}],
            "schedule": {"frequency": "manual"},
        }))
        .unwrap()
    }

    fn connection() -> String {
        Uuid::nil().to_string()
    }

    #[test]
    fn tables_existing_and_new() {
        let (sync, database) = compile_database(
            &document(
                "updateOrCreate",
                json!({"connection_id": connection(), "object": "crm.people"}),
            ),
            &model(),
            "postgresql",
        )
        .unwrap();
        assert_eq!(sync.identity_target.as_deref(), Some("email"));
        assert_eq!(database.mode, DatabaseMode::UpdateOrCreate);
        assert_eq!(
            database.table,
            TableName {
                schema: Some("crm".into()),
                name: "people".into()
            }
        );
        assert!(!database.create && database.preserve_table_on_resync);

        let (_, database) = compile_database(
            &document("create", json!({"connection_id": connection(),
                "object": NEW_TARGET_PLACEHOLDER, "create": {"schema": "public", "table": "new_people"}})),
            &model(),
            "postgresql",
        )
        .unwrap();
        assert!(database.create);
        assert_eq!(database.table.to_string(), "public.new_people");

        let (_, database) = compile_database(
            &document(
                "append",
                json!({"connection_id": connection(), "new_name": "my.table",
                "configuration": {"preserve_table_on_resync": false}}),
            ),
            &model(),
            "sqlite",
        )
        .unwrap();
        assert_eq!(database.table.schema, None, "SQLite names are never split");
        assert_eq!(database.table.name, "my.table");
        assert!(!database.preserve_table_on_resync);
    }

    #[test]
    fn rejections_name_the_field() {
        let cases = [
            (
                document(
                    "enrich",
                    json!({"connection_id": connection(), "object": "t"}),
                ),
                "mysql",
                "mode",
            ),
            (
                document("create", json!({"connection_id": connection()})),
                "sqlite",
                "target.object",
            ),
            (
                document(
                    "create",
                    json!({"connection_id": connection(), "object": "t",
                    "new_name": "u"}),
                ),
                "sqlite",
                "target.object",
            ),
            (
                document(
                    "create",
                    json!({"connection_id": connection(),
                    "create": {"schema": "public", "table": "t"}}),
                ),
                "mysql",
                "target.create.schema",
            ),
            (
                document(
                    "create",
                    json!({"connection_id": connection(), "object": "t",
                    "configuration": {"ingestion_api": "bulk"}}),
                ),
                "postgresql",
                "target.configuration.ingestion_api",
            ),
            (
                document(
                    "create",
                    json!({"connection_id": connection(),
                    "create": {"table": ""}}),
                ),
                "postgresql",
                "target.create.table",
            ),
        ];
        for (document, type_id, field) in cases {
            let error = compile_database(&document, &model(), type_id).unwrap_err();
            assert_eq!(error.field, field, "{error:?}");
        }
        // Target filters: mode update only, named with the database mode given.
        for (mode, accepted) in [
            ("update", true),
            ("updateOrCreate", false),
            ("append", false),
        ] {
            let mut value = document(mode, json!({"connection_id": connection(), "object": "t"}));
            value.filters = Some(vec![
                serde_json::from_value(json!({"field_id": "status", "field_type": "Target",
                    "function": "Equality", "value": "open"}))
                .unwrap(),
            ]);
            match compile_database(&value, &model(), "sqlite") {
                Ok((sync, database)) => {
                    assert!(accepted, "{mode}");
                    assert!(database.mode.supports_target_filters());
                    assert_eq!(sync.target_filter_fields(), vec!["status"]);
                }
                Err(error) => {
                    assert!(!accepted, "{mode}: {error:?}");
                    assert_eq!(error.field, "filters[0].field_type");
                    assert!(
                        error
                            .message
                            .contains(&format!("accepted in mode {mode}: Model")),
                        "{error:?}"
                    );
                }
            }
        }
        let mut without_identity = document(
            "remove",
            json!({"connection_id": connection(), "object": "t"}),
        );
        without_identity.identity = None;
        let error = compile_database(&without_identity, &model(), "mysql").unwrap_err();
        assert_eq!(error.field, "identity");
        let error = compile_database(
            &document(
                "updateOrCreate",
                json!({"connection_id": connection(), "object": "t"}),
            ),
            &model(),
            "salesforce",
        )
        .unwrap_err();
        assert_eq!(error.field, "target.connection_id");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn published_examples_are_accepted() {
        let other = json!({"bulk_batch_size": 100, "concurrency_mode": "Parallel", "ingestion_api": "bulk", "insert_null_values": false, "invalid_relationships": "", "only_sync_different": false, "rest_batch_size": 200, "sort_batches_by": "AccountId"});
        let config = TargetConfig::parse("Contact", Some(&other)).expect("3c example");
        assert_eq!(config.ingestion_api, IngestionApi::Bulk);
        assert_eq!(config.bulk_batch_size, 100);
        assert_eq!(config.invalid_relationships, InvalidRelationships::Error);
        assert_eq!(config.sort_batches_by.as_deref(), Some("AccountId"));
        let lead = json!({"bulk_batch_size": 100, "concurrency_mode": "Parallel", "ignore_invalid_references": false, "ingestion_api": "bulk", "insert_null_values": false, "invalid_relationships": "", "only_sync_different": false, "rest_batch_size": 200, "skip_converted": false, "sort_batches_by": "AccountId"});
        TargetConfig::parse("Lead", Some(&lead)).expect("3b example");
        let multi = json!({"bulk_batch_size": 100, "concurrency_mode": "Parallel", "create_records_as": "", "ingestion_api": "bulk", "rest_batch_size": 200});
        let config = TargetConfig::parse(LEAD_OR_CONTACT, Some(&multi)).expect("3a example");
        assert_eq!(
            config.create_records_as,
            CreateRecordsAs::ContactIfAccountId
        );
        assert_eq!(
            TargetConfig::parse("Account", None).unwrap(),
            TargetConfig::default()
        );
    }

    #[test]
    fn bad_values_name_the_field_and_list_accepted_values() {
        let error =
            TargetConfig::parse("Contact", Some(&json!({"ingestion_api": "soap"}))).unwrap_err();
        assert_eq!(error.field, "target.configuration.ingestion_api");
        assert!(error.message.contains("automatic, bulk, rest"), "{error:?}");
        let error =
            TargetConfig::parse("Contact", Some(&json!({"rest_batch_size": 201}))).unwrap_err();
        assert_eq!(error.field, "target.configuration.rest_batch_size");
        assert!(error.message.contains("1 to 200"));
        let error =
            TargetConfig::parse("Contact", Some(&json!({"bulk_batch_size": 0}))).unwrap_err();
        assert_eq!(error.field, "target.configuration.bulk_batch_size");
        let error =
            TargetConfig::parse("Contact", Some(&json!({"skip_converted": true}))).unwrap_err();
        assert_eq!(error.field, "target.configuration.skip_converted");
        assert!(error.message.contains("accepted:"));
        let error =
            TargetConfig::parse("Contact", Some(&json!({"invalid_relationships": "ignore"})))
                .unwrap_err();
        assert!(error.message.contains("error, omit_values, omit_records"));
        let error = TargetConfig::parse("Lead", Some(&json!({"concurrency_mode": "parallel"})))
            .unwrap_err();
        assert!(error.message.contains("Parallel, Serial"));
        let error =
            TargetConfig::parse("Lead", Some(&json!({"insert_null_values": 1}))).unwrap_err();
        assert_eq!(error.field, "target.configuration.insert_null_values");
    }

    fn model() -> ModelInfo {
        ModelInfo {
            id: Uuid::nil(),
            fields: ["email", "name", "age"]
                .iter()
                .map(|n| ModelFieldRef {
                    id: format!("id-{n}"),
                    name: n.to_string(),
                })
                .collect(),
            identifier: Some("email".into()),
        }
    }

    fn document(value: Value) -> SyncDocument {
        serde_json::from_value(value).expect("document")
    }

    fn base() -> Value {
        json!({
            "name": "people", "mode": "updateOrCreate",
            "target": {"connection_id": Uuid::nil(), "object": "Contact"},
            "identity": {"source": {"model_id": Uuid::nil(), "field": "email"}, "target": "Email", "function": "Equality"},
            "fields": [{"target": "LastName", "source": {"model_id": Uuid::nil(), "field": "name"}},
                       {"target": "LeadSource", "override_value": "Ferry"}],
            "filters": [{"field_id": "id-age", "function": "GreaterThan", "value": 17}],
            "overrides": [{"field_id": "id-name", "function": "IsNull", "override": "Unknown"}],
            "schedule": {"frequency": "manual"}
        })
    }

    #[test]
    fn compiles_a_sync() {
        let sync = compile(&document(base()), &model()).expect("compiles");
        assert_eq!(sync.mode, Mode::UpdateOrCreate);
        assert_eq!(sync.key_field, "email");
        assert_eq!(sync.identity_target.as_deref(), Some("Email"));
        assert_eq!(sync.fields.len(), 2);
        assert_eq!(sync.filters[0].field, "age");
        assert_eq!(sync.overrides[0].field, "name");
    }

    #[test]
    fn rejections_name_the_field() {
        let cases = [
            (json!({"mode": "replace"}), "mode"),
            (json!({"identity": null}), "identity"),
            (
                json!({"schedule": {"frequency": "runafter", "run_after": {"sync_ids": ["x"]}}}),
                "schedule.run_after.sync_ids[0]",
            ),
            (
                json!({"fields": [{"target": "LastName", "source": {"model_id": Uuid::nil(), "field": "nope"}}]}),
                "fields[0].source.field",
            ),
            (
                json!({"fields": [{"target": "LastName", "source": {"model_id": Uuid::nil(), "field": "name"}, "sync_mode": "x"}]}),
                "fields[0].sync_mode",
            ),
            (json!({"filter_logic": "1 AND 2"}), "filter_logic"),
            (
                json!({"target": {"connection_id": Uuid::nil(), "object": "Contact", "configuration": {"rest_batch_size": 500}}}),
                "target.configuration.rest_batch_size",
            ),
            (
                json!({"mode": "remove", "target": {"connection_id": Uuid::nil(), "object": "multi:leadOrContact"}}),
                "mode",
            ),
        ];
        for (patch, field) in cases {
            let mut value = base();
            for (key, v) in patch.as_object().unwrap() {
                value[key] = v.clone();
            }
            let error = compile(&document(value), &model()).unwrap_err();
            assert_eq!(error.field, field, "{error:?}");
        }
    }

    #[test]
    fn target_fields_are_checked() {
        let doc = document(base());
        let sync = compile(&doc, &model()).unwrap();
        let field = |name: &str, identity: bool| TargetFieldInfo {
            name: name.into(),
            createable: true,
            updateable: true,
            identity,
            reference: false,
            filterable: true,
            relationship: None,
        };
        let fields = vec![
            field("Email", true),
            field("LastName", false),
            field("LeadSource", false),
        ];
        check_target_fields(&doc, &sync, &fields).expect("valid");
        let error = check_target_fields(&doc, &sync, &fields[..2]).unwrap_err();
        assert_eq!(error.field, "fields[1].target");
        let fields = vec![
            field("Email", false),
            field("LastName", false),
            field("LeadSource", false),
        ];
        let error = check_target_fields(&doc, &sync, &fields).unwrap_err();
        assert_eq!(error.field, "identity.target");
    }

    /// `base()` in mode update with a model filter (1) and a target filter (2).
    fn with_target_filter() -> Value {
        let mut value = base();
        value["mode"] = json!("update");
        value["filters"] = json!([
            {"field_id": "id-age", "function": "GreaterThan", "value": 17},
            {"field_id": "Status__c", "field_type": "Target", "function": "Equality", "value": "Open"}
        ]);
        value["filter_logic"] = json!("1 OR 2");
        value
    }

    #[test]
    fn target_filters_compile_in_mode_update() {
        let sync = compile(&document(with_target_filter()), &model()).expect("compiles");
        assert_eq!(sync.filters.len(), 2);
        assert_eq!(sync.filters[0].field_type, FilterFieldType::Model);
        assert_eq!(sync.filters[1].field_type, FilterFieldType::Target);
        assert_eq!(sync.filters[1].field, "Status__c");
        assert!(sync.has_target_filters());
        assert_eq!(sync.target_filter_fields(), vec!["Status__c"]);
        // filter_logic numbers model and target filters alike.
        assert_eq!(
            sync.filter_logic,
            Some(FilterLogic::parse("1 OR 2", 2).unwrap())
        );
        // Spelled in any case; an empty field_type is a model filter.
        let mut value = with_target_filter();
        value["filters"][1]["field_type"] = json!("target");
        value["filters"][0]["field_type"] = json!("");
        let sync = compile(&document(value), &model()).expect("compiles");
        assert_eq!(sync.filters[0].field_type, FilterFieldType::Model);
        assert_eq!(sync.filters[1].field_type, FilterFieldType::Target);
        // No target filter: nothing changes.
        let sync = compile(&document(base()), &model()).unwrap();
        assert!(!sync.has_target_filters());
        assert!(sync.target_filter_fields().is_empty());
    }

    #[test]
    fn target_filters_are_refused_where_they_cannot_run() {
        for mode in ["updateOrCreate", "create", "remove"] {
            let mut value = with_target_filter();
            value["mode"] = json!(mode);
            let error = compile(&document(value), &model()).unwrap_err();
            assert_eq!(error.field, "filters[1].field_type", "{mode}: {error:?}");
            assert!(
                error.message.contains("mode update")
                    && error
                        .message
                        .contains(&format!("accepted in mode {mode}: Model")),
                "{error:?}"
            );
        }
        let mut value = with_target_filter();
        value["target"]["object"] = json!(LEAD_OR_CONTACT);
        let error = compile(&document(value), &model()).unwrap_err();
        assert_eq!(error.field, "filters[1].field_type");
        assert!(error.message.contains("multi:leadOrContact"));
        let cases = [
            (
                json!({"field_type": "Source"}),
                "filters[1].field_type",
                "Model, Target",
            ),
            (
                json!({"field": {"model_id": Uuid::nil(), "field": "age"}}),
                "filters[1].field",
                "field_id",
            ),
            (
                json!({"field_id": " "}),
                "filters[1].field_id",
                "target field",
            ),
            (json!({"value": null}), "filters[1].value", "required"),
            (
                json!({"function": "Sometimes"}),
                "filters[1].function",
                "supported",
            ),
        ];
        for (patch, field, says) in cases {
            let mut value = with_target_filter();
            for (key, v) in patch.as_object().unwrap() {
                value["filters"][1][key] = v.clone();
            }
            let error = compile(&document(value), &model()).unwrap_err();
            assert_eq!(error.field, field, "{error:?}");
            assert!(error.message.contains(says), "{error:?}");
        }
        let mut value = with_target_filter();
        value["filter_logic"] = json!("1 AND 3");
        let error = compile(&document(value), &model()).unwrap_err();
        assert_eq!(error.field, "filter_logic");
        // target.filter_logic: the expression belongs in filter_logic.
        let mut value = with_target_filter();
        value["target"]["filter_logic"] = json!("2");
        let error = compile(&document(value), &model()).unwrap_err();
        assert_eq!(error.field, "target.filter_logic");
        assert!(error.message.contains("filter_logic"));
        let mut value = with_target_filter();
        value["target"]["filter_logic"] = json!("");
        compile(&document(value), &model()).expect("an empty target.filter_logic is absent");
    }

    #[test]
    fn target_filter_fields_must_exist_on_the_object() {
        let doc = document(with_target_filter());
        let sync = compile(&doc, &model()).unwrap();
        let field = |name: &str, identity: bool| TargetFieldInfo {
            name: name.into(),
            createable: true,
            updateable: true,
            identity,
            reference: false,
            filterable: true,
            relationship: None,
        };
        let mut fields = vec![
            field("Email", true),
            field("LastName", false),
            field("LeadSource", false),
        ];
        let error = check_target_fields(&doc, &sync, &fields).unwrap_err();
        assert_eq!(error.field, "filters[1].field_id");
        assert!(
            error
                .message
                .contains("'Status__c' is not a field of Contact")
        );
        fields.push(field("status__c", false));
        check_target_fields(&doc, &sync, &fields).expect("matched case-insensitively");
    }
}
