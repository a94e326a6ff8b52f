//! JSON Schema for connection configurations, and the schema-driven first pass of validation.
//!
//! Every configuration struct derives `schemars::JsonSchema`. [`json_schema_for`] turns the
//! derived schema into the bare document served at `GET /api/connection_types/{id}`, reshaped
//! for what Polytomic's SDKs can parse (their `JsonschemaSchema` model, spec §2.5):
//!
//! - `type` is a single string: `["string", "null"]` (an `Option`) becomes `"string"`;
//! - `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` and `multipleOf` are strings
//!   (`"minimum": "1"`), because the SDK types them as strings;
//! - `additionalProperties` and `items` are schema objects or absent, never booleans or arrays;
//! - no `$ref`/`$defs`: nested types are inlined;
//! - `anyOf`/`oneOf` used only to say "or null", or to list unit enum variants, are flattened
//!   into the plain schema / an `enum`;
//! - Rust-specific `format`s (`uint16`, `int64`, ...) and `default: null` are dropped.
//!
//! The same schema then drives [`ConfigSpec::parse`], the first pass of every `validate`: it
//! rejects unknown keys, wrong JSON types, values outside an `enum` and out-of-range integers
//! with a [`FieldError`] naming the key, before serde turns the object into the typed struct.
//! Secret and read-only keys are read back from the schema ([`sensitive_and_read_only_keys`]),
//! so the struct's attributes are the single source of truth for masking as well.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::FieldError;

/// The meta-schema every configuration schema declares.
pub const META_SCHEMA: &str = "https://json-schema.org/draft/2020-12/schema";

/// Keywords the SDK types as strings.
const NUMERIC_KEYWORDS: &[&str] = &[
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
];

/// `format` values schemars derives from Rust number types; meaningless to JSON Schema users.
const RUST_NUMBER_FORMATS: &[&str] = &[
    "int", "int8", "int16", "int32", "int64", "int128", "uint", "uint8", "uint16", "uint32",
    "uint64", "uint128", "float", "double",
];

/// How deep `$ref`s are followed when inlining (guards against recursive types).
const MAX_REF_DEPTH: usize = 16;

/// The bare, SDK-compatible JSON Schema of configuration type `T` for connection type
/// `type_id`: `{"$schema", "$id", "title", "type": "object", "required", "properties"}`.
///
/// Mark secrets with `#[schemars(extend("sensitive" = true, "password" = true))]` and
/// server-set properties with `#[schemars(extend("readOnly" = true))]`.
pub fn json_schema_for<T: JsonSchema>(type_id: &str) -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|settings| {
            settings.inline_subschemas = true;
            settings.meta_schema = None;
        })
        .into_generator();
    let mut raw = generator.into_root_schema_for::<T>().to_value();
    let defs = match raw.as_object_mut() {
        Some(root) => root
            .remove("$defs")
            .or_else(|| root.remove("definitions"))
            .and_then(|defs| match defs {
                Value::Object(map) => Some(map),
                _ => None,
            })
            .unwrap_or_default(),
        None => Map::new(),
    };
    inline_refs(&mut raw, &defs, 0);
    make_sdk_compatible(&mut raw);

    let mut root = match raw {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let mut out = Map::new();
    out.insert("$schema".into(), Value::String(META_SCHEMA.into()));
    out.insert(
        "$id".into(),
        Value::String(format!("/api/connection_types/{type_id}")),
    );
    if let Some(title) = root.remove("title") {
        out.insert("title".into(), title);
    }
    if let Some(description) = root.remove("description") {
        out.insert("description".into(), description);
    }
    out.insert("type".into(), Value::String("object".into()));
    out.insert(
        "required".into(),
        root.remove("required")
            .unwrap_or_else(|| Value::Array(Vec::new())),
    );
    out.insert(
        "properties".into(),
        root.remove("properties")
            .unwrap_or_else(|| Value::Object(Map::new())),
    );
    // Whatever else schemars said about the root (nothing today) is kept, minus keywords the
    // SDK cannot parse or that `make_sdk_compatible` already handled.
    root.remove("$schema");
    root.remove("type");
    for (key, value) in root {
        out.entry(key).or_insert(value);
    }
    Value::Object(out)
}

/// The keys of a configuration schema's top-level `properties` marked `sensitive: true`, and
/// those marked `readOnly: true`, each in schema order.
pub fn sensitive_and_read_only_keys(schema: &Value) -> (Vec<String>, Vec<String>) {
    let mut sensitive = Vec::new();
    let mut read_only = Vec::new();
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (key, property) in properties {
            if flag(property, "sensitive") {
                sensitive.push(key.clone());
            }
            if flag(property, "readOnly") {
                read_only.push(key.clone());
            }
        }
    }
    (sensitive, read_only)
}

fn flag(property: &Value, keyword: &str) -> bool {
    property.get(keyword).and_then(Value::as_bool) == Some(true)
}

/// Replaces every `{"$ref": "#/$defs/X", ...}` by the definition of `X` (sibling keywords
/// win over the definition's).
fn inline_refs(schema: &mut Value, defs: &Map<String, Value>, depth: usize) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                let name = reference
                    .strip_prefix("#/$defs/")
                    .or_else(|| reference.strip_prefix("#/definitions/"));
                let target = name
                    .and_then(|name| defs.get(name))
                    .filter(|_| depth < MAX_REF_DEPTH);
                if let Some(target) = target {
                    let mut target = target.clone();
                    inline_refs(&mut target, defs, depth + 1);
                    map.remove("$ref");
                    if let Value::Object(target) = target {
                        for (key, value) in target {
                            map.entry(key).or_insert(value);
                        }
                    }
                } else {
                    // An unresolvable reference: the SDK could not follow it either.
                    map.remove("$ref");
                }
            }
            for value in map.values_mut() {
                inline_refs(value, defs, depth);
            }
        }
        Value::Array(items) => {
            for item in items {
                inline_refs(item, defs, depth);
            }
        }
        _ => {}
    }
}

/// Schema-valued keywords whose value is one subschema.
const SUBSCHEMA_KEYWORDS: &[&str] = &[
    "additionalProperties",
    "items",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "propertyNames",
    "contentSchema",
];

/// Keywords whose value is an array of subschemas.
const SUBSCHEMA_LIST_KEYWORDS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];

/// Keywords whose value maps names to subschemas.
const SUBSCHEMA_MAP_KEYWORDS: &[&str] = &[
    "properties",
    "patternProperties",
    "dependentSchemas",
    "$defs",
];

/// Rewrites one schema (recursively) into the shape the SDK's `JsonschemaSchema` accepts.
fn make_sdk_compatible(schema: &mut Value) {
    let Value::Object(map) = schema else {
        return;
    };

    flatten_nullable_alternatives(map, "anyOf");
    flatten_nullable_alternatives(map, "oneOf");
    collapse_const_alternatives(map);

    // `type`: one string.
    if let Some(Value::Array(types)) = map.get("type") {
        let chosen = types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .or_else(|| types.iter().filter_map(Value::as_str).next())
            .map(str::to_owned);
        match chosen {
            Some(single) => {
                map.insert("type".into(), Value::String(single));
            }
            None => {
                map.remove("type");
            }
        }
    }
    // Nullability is expressed by not listing the key in `required`; a `null` in an `enum`
    // would be a value the SDK and UIs offer.
    if let Some(Value::Array(values)) = map.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }

    for keyword in NUMERIC_KEYWORDS {
        if let Some(value) = map.get(*keyword) {
            match value {
                Value::Number(number) => {
                    let text = number.to_string();
                    map.insert((*keyword).into(), Value::String(text));
                }
                Value::String(_) => {}
                _ => {
                    map.remove(*keyword);
                }
            }
        }
    }

    let rust_format = map
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|format| RUST_NUMBER_FORMATS.contains(&format));
    if rust_format {
        map.remove("format");
    }
    for keyword in ["description", "title"] {
        if let Some(Value::String(text)) = map.get_mut(keyword) {
            *text = unwrap_lines(text);
        }
    }
    if map.get("default") == Some(&Value::Null) {
        map.remove("default");
    }

    for keyword in ["additionalProperties", "items"] {
        if map.get(keyword).is_some_and(|v| !v.is_object()) {
            map.remove(keyword);
        }
    }

    for keyword in SUBSCHEMA_KEYWORDS {
        if let Some(sub) = map.get_mut(*keyword) {
            make_sdk_compatible(sub);
        }
    }
    for keyword in SUBSCHEMA_LIST_KEYWORDS {
        if let Some(Value::Array(subs)) = map.get_mut(*keyword) {
            subs.iter_mut().for_each(make_sdk_compatible);
        }
    }
    for keyword in SUBSCHEMA_MAP_KEYWORDS {
        if let Some(Value::Object(subs)) = map.get_mut(*keyword) {
            subs.values_mut().for_each(make_sdk_compatible);
        }
    }
}

/// Joins the lines of a wrapped doc comment into paragraphs: single line breaks become
/// spaces, blank lines stay paragraph breaks.
fn unwrap_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            paragraph
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|paragraph| !paragraph.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// `{"anyOf": [X, {"type": "null"}], ...}` → `X` merged with the siblings.
fn flatten_nullable_alternatives(map: &mut Map<String, Value>, keyword: &str) {
    let Some(Value::Array(alternatives)) = map.get(keyword) else {
        return;
    };
    let is_null = |v: &Value| v.get("type").and_then(Value::as_str) == Some("null");
    let non_null: Vec<&Value> = alternatives.iter().filter(|v| !is_null(v)).collect();
    let [kept] = non_null.as_slice() else {
        return;
    };
    if alternatives.len() == 1 {
        return;
    }
    let kept = (*kept).clone();
    map.remove(keyword);
    if let Value::Object(kept) = kept {
        for (key, value) in kept {
            map.entry(key).or_insert(value);
        }
    }
}

/// `{"oneOf": [{"const": "a", "description": ...}, ...]}` (unit enum variants with doc
/// comments) → `{"type": "string", "enum": ["a", ...]}`.
fn collapse_const_alternatives(map: &mut Map<String, Value>) {
    for keyword in ["oneOf", "anyOf"] {
        let Some(Value::Array(alternatives)) = map.get(keyword) else {
            continue;
        };
        let consts: Option<Vec<Value>> = alternatives
            .iter()
            .map(|alternative| {
                alternative
                    .get("const")
                    .cloned()
                    .or_else(|| match alternative.get("enum") {
                        Some(Value::Array(values)) if values.len() == 1 => values.first().cloned(),
                        _ => None,
                    })
            })
            .collect();
        let Some(consts) = consts else {
            continue;
        };
        if consts.is_empty() {
            continue;
        }
        let all_strings = consts.iter().all(Value::is_string);
        map.remove(keyword);
        if all_strings {
            map.entry("type").or_insert(Value::String("string".into()));
        }
        map.insert("enum".into(), Value::Array(consts));
    }
}

/// The JSON type a property accepts, as its schema says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Boolean,
    Integer,
    Number,
    Object,
    Array,
    Any,
}

impl Kind {
    fn from_schema(property: &Value) -> Kind {
        match property.get("type").and_then(Value::as_str) {
            Some("string") => Kind::String,
            Some("boolean") => Kind::Boolean,
            Some("integer") => Kind::Integer,
            Some("number") => Kind::Number,
            Some("object") => Kind::Object,
            Some("array") => Kind::Array,
            _ => Kind::Any,
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::String => "expected a string",
            Kind::Boolean => "expected a boolean (true or false)",
            Kind::Integer => "expected an integer",
            Kind::Number => "expected a number",
            Kind::Object => "expected an object",
            Kind::Array => "expected an array",
            Kind::Any => "expected a value",
        }
    }

    fn accepts(self, value: &Value) -> bool {
        match self {
            Kind::String => value.is_string(),
            Kind::Boolean => value.is_boolean(),
            Kind::Integer => value.is_i64() || value.is_u64(),
            Kind::Number => value.is_number(),
            Kind::Object => value.is_object(),
            Kind::Array => value.is_array(),
            Kind::Any => true,
        }
    }
}

/// A short name of a JSON value's type, for error messages.
pub(crate) fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a floating-point number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What the first validation pass knows about one property, read from the schema.
#[derive(Debug, Clone)]
struct PropertySpec {
    name: String,
    kind: Kind,
    allowed: Option<Vec<Value>>,
    minimum: Option<i128>,
    maximum: Option<i128>,
    non_empty: bool,
    /// `examples` from the schema, quoted in "is required" messages.
    examples: Vec<Value>,
    read_only: bool,
    required: bool,
}

impl PropertySpec {
    /// `; for example "a" or "b"` from the schema's `examples`, or nothing.
    fn example_hint(&self) -> String {
        if self.examples.is_empty() {
            return String::new();
        }
        let quoted: Vec<String> = self.examples.iter().map(Value::to_string).collect();
        format!("; for example {}", quoted.join(" or "))
    }
}

/// Whether read-only keys sent in a configuration are dropped (caller input) or kept (a
/// stored configuration, where Ferry set them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadOnlyKeys {
    /// Caller input: read-only keys are removed before anything else looks at them.
    Drop,
    /// Stored configuration: read-only keys are Ferry's own and are kept.
    Keep,
}

/// A configuration type's schema plus what validation derives from it. Built once per type.
#[derive(Debug, Clone)]
pub(crate) struct ConfigSpec {
    schema: Value,
    properties: Vec<PropertySpec>,
    sensitive: Vec<String>,
    read_only: Vec<String>,
    /// `(alias, canonical key)`: alternative spellings accepted on input and renamed.
    aliases: &'static [(&'static str, &'static str)],
}

impl ConfigSpec {
    /// Derives everything from the schema of `T`.
    pub(crate) fn new<T: JsonSchema>(
        type_id: &str,
        aliases: &'static [(&'static str, &'static str)],
    ) -> ConfigSpec {
        let schema = json_schema_for::<T>(type_id);
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|props| {
                props
                    .iter()
                    .map(|(name, property)| PropertySpec {
                        name: name.clone(),
                        kind: Kind::from_schema(property),
                        allowed: property.get("enum").and_then(Value::as_array).cloned(),
                        minimum: numeric_keyword(property, "minimum"),
                        maximum: numeric_keyword(property, "maximum"),
                        non_empty: property.get("minLength").and_then(Value::as_u64) >= Some(1),
                        examples: property
                            .get("examples")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default(),
                        read_only: flag(property, "readOnly"),
                        required: required.contains(&name.as_str()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (sensitive, read_only) = sensitive_and_read_only_keys(&schema);
        ConfigSpec {
            schema,
            properties,
            sensitive,
            read_only,
            aliases,
        }
    }

    /// The SDK-compatible schema.
    pub(crate) fn schema(&self) -> &Value {
        &self.schema
    }

    /// Keys marked `sensitive`.
    pub(crate) fn sensitive_keys(&self) -> Vec<String> {
        self.sensitive.clone()
    }

    /// Keys marked `readOnly`.
    pub(crate) fn read_only_keys(&self) -> Vec<String> {
        self.read_only.clone()
    }

    fn property(&self, name: &str) -> Option<&PropertySpec> {
        self.properties.iter().find(|p| p.name == name)
    }

    fn accepted_keys(&self) -> String {
        self.properties
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks `config` against the schema and deserializes it into `T`. Errors name the key.
    pub(crate) fn parse<T: DeserializeOwned>(
        &self,
        config: &Value,
        read_only: ReadOnlyKeys,
    ) -> Result<T, FieldError> {
        let object = self.check_object(config, read_only)?;
        serde_json::from_value(Value::Object(object)).map_err(|error| {
            // The schema pass above catches what serde would reject; reaching this means the
            // schema and the struct disagree. Say so without serde's position noise.
            FieldError::new("", format!("invalid configuration: {error}"))
        })
    }

    /// The schema pass: returns the object to hand to serde (aliases renamed, nulls and empty
    /// enum strings removed, read-only keys dropped when asked).
    fn check_object(
        &self,
        config: &Value,
        read_only: ReadOnlyKeys,
    ) -> Result<Map<String, Value>, FieldError> {
        let Value::Object(input) = config else {
            return Err(FieldError::new(
                "",
                format!(
                    "expected a JSON object of configuration keys, got {}",
                    json_type_name(config)
                ),
            ));
        };

        let mut object = Map::new();
        for (key, value) in input {
            let canonical = self
                .aliases
                .iter()
                .find(|(alias, _)| alias == key)
                .map(|(_, canonical)| *canonical);
            let target = match canonical {
                Some(canonical) => {
                    if input.contains_key(canonical) {
                        return Err(FieldError::new(
                            key.clone(),
                            format!(
                                "`{key}` is another name for `{canonical}`; send only one of them"
                            ),
                        ));
                    }
                    canonical.to_string()
                }
                None => key.clone(),
            };
            object.insert(target, value.clone());
        }

        let mut checked = Map::new();
        for (key, value) in object {
            let Some(property) = self.property(&key) else {
                return Err(FieldError::new(
                    key,
                    format!("unknown key; accepted keys: {}", self.accepted_keys()),
                ));
            };
            if property.read_only && read_only == ReadOnlyKeys::Drop {
                continue;
            }
            if value.is_null() {
                if property.required {
                    let message =
                        format!("is required and cannot be null{}", property.example_hint());
                    return Err(FieldError::new(key, message));
                }
                continue;
            }
            if !property.kind.accepts(&value) {
                return Err(FieldError::new(
                    key,
                    format!(
                        "{}, got {}",
                        property.kind.expected(),
                        json_type_name(&value)
                    ),
                ));
            }
            if let Some(allowed) = &property.allowed {
                if value.as_str() == Some("") && !property.required {
                    // An empty string in an optional choice means "use the default".
                    continue;
                }
                if !allowed.contains(&value) {
                    return Err(FieldError::new(
                        key,
                        format!(
                            "must be one of: {}; got {value}",
                            allowed
                                .iter()
                                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            if property.non_empty && value.as_str().is_some_and(|s| s.trim().is_empty()) {
                let message = format!("must not be empty{}", property.example_hint());
                return Err(FieldError::new(key, message));
            }
            if property.kind == Kind::Integer {
                let number = value
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| value.as_u64().map(i128::from));
                if let Some(number) = number {
                    check_range(&key, number, property.minimum, property.maximum)?;
                }
            }
            checked.insert(key, value);
        }

        if let Some(missing) = self
            .properties
            .iter()
            .find(|p| p.required && !checked.contains_key(&p.name))
        {
            // A required key that was dropped as read-only cannot happen: read-only keys are
            // never required.
            let message = format!("is required{}", missing.example_hint());
            return Err(FieldError::new(missing.name.clone(), message));
        }
        Ok(checked)
    }
}

fn numeric_keyword(property: &Value, keyword: &str) -> Option<i128> {
    match property.get(keyword)? {
        Value::String(text) => text.trim().parse::<i128>().ok(),
        Value::Number(number) => number
            .as_i64()
            .map(i128::from)
            .or_else(|| number.as_u64().map(i128::from)),
        _ => None,
    }
}

fn check_range(
    key: &str,
    number: i128,
    minimum: Option<i128>,
    maximum: Option<i128>,
) -> Result<(), FieldError> {
    // Every integer in a configuration fits 64 bits signed, whatever the schema says.
    let largest = i128::from(i64::MAX);
    if maximum.is_none() && number > largest {
        return Err(FieldError::new(
            key,
            format!("must be at most {largest}; got {number}"),
        ));
    }
    let out_of_range =
        minimum.is_some_and(|min| number < min) || maximum.is_some_and(|max| number > max);
    if !out_of_range {
        return Ok(());
    }
    let message = match (minimum, maximum) {
        (Some(min), Some(max)) => format!("must be between {min} and {max}; got {number}"),
        (Some(min), None) => format!("must be at least {min}; got {number}"),
        (None, Some(max)) => format!("must be at most {max}; got {number}"),
        (None, None) => return Ok(()),
    };
    Err(FieldError::new(key, message))
}

/// Walks a schema and returns the JSON pointers of everything the SDK cannot parse. Used by
/// tests of every connector.
/// The three [`crate::Connector`] methods every type derives from its [`ConfigSpec`]: the
/// JSON Schema, and the sensitive and read-only keys read back from it.
macro_rules! config_spec_methods {
    ($spec:ident) => {
        fn config_schema(&self) -> serde_json::Value {
            $spec().schema().clone()
        }

        fn sensitive_keys(&self) -> Vec<String> {
            $spec().sensitive_keys()
        }

        fn read_only_keys(&self) -> Vec<String> {
            $spec().read_only_keys()
        }
    };
}
pub(crate) use config_spec_methods;

#[cfg(test)]
pub(crate) fn sdk_violations(schema: &Value) -> Vec<String> {
    fn walk(value: &Value, path: String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let here = format!("{path}/{key}");
                    match key.as_str() {
                        "type" if !child.is_string() => out.push(here.clone()),
                        "items" | "additionalProperties" if !child.is_object() => {
                            out.push(here.clone())
                        }
                        "$ref" | "$defs" | "definitions" => out.push(here.clone()),
                        k if NUMERIC_KEYWORDS.contains(&k) && !child.is_string() => {
                            out.push(here.clone())
                        }
                        _ => {}
                    }
                    // `default`, `examples`, `enum` and `const` hold data, not schemas.
                    if !matches!(key.as_str(), "default" | "examples" | "enum" | "const") {
                        walk(child, here, out);
                    }
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    walk(item, format!("{path}/{index}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(schema, String::new(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    /// Mode of a test thing.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        /// The first mode.
        #[default]
        Alpha,
        /// The second mode.
        Beta,
    }

    /// An inner object.
    #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
    struct Inner {
        /// A flag.
        on: bool,
    }

    /// A test configuration.
    #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(title = "Test configuration")]
    struct TestConfig {
        /// Required name.
        #[schemars(length(min = 1))]
        name: String,
        /// A mode.
        #[serde(default)]
        mode: Mode,
        /// Optional mode.
        #[serde(default)]
        maybe_mode: Option<Mode>,
        /// A port.
        #[serde(default = "default_port")]
        #[schemars(range(min = 1, max = 65535))]
        port: u16,
        /// A count.
        #[serde(default)]
        #[schemars(range(min = 0))]
        count: Option<i64>,
        /// A secret.
        #[serde(default)]
        #[schemars(extend("sensitive" = true, "password" = true))]
        secret: Option<String>,
        /// Set by the server.
        #[serde(default)]
        #[schemars(extend("readOnly" = true))]
        server_set: Option<String>,
        /// Nested.
        #[serde(default)]
        inner: Option<Inner>,
        /// Free-form map.
        #[serde(default)]
        labels: std::collections::BTreeMap<String, String>,
        /// A list.
        #[serde(default)]
        tags: Vec<String>,
        /// Another name accepted.
        #[serde(default)]
        database: Option<String>,
        /// A doc comment that
        /// wraps over lines.
        ///
        /// Second paragraph.
        #[serde(default)]
        wrapped: bool,
    }

    fn default_port() -> u16 {
        5432
    }

    fn spec() -> ConfigSpec {
        ConfigSpec::new::<TestConfig>("test", &[("dbname", "database")])
    }

    #[test]
    fn schema_is_bare_and_sdk_compatible() {
        let schema = json_schema_for::<TestConfig>("test");
        assert_eq!(schema["$schema"], META_SCHEMA);
        assert_eq!(schema["$id"], "/api/connection_types/test");
        assert_eq!(schema["title"], "Test configuration");
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["required"], json!(["name"]));
        assert_eq!(sdk_violations(&schema), Vec::<String>::new(), "{schema:#}");
        let props = &schema["properties"];
        assert_eq!(props["name"]["type"], "string");
        assert_eq!(props["name"]["description"], "Required name.");
        assert_eq!(
            props["wrapped"]["description"],
            "A doc comment that wraps over lines.\n\nSecond paragraph."
        );
        assert_eq!(props["mode"]["enum"], json!(["alpha", "beta"]));
        assert_eq!(props["mode"]["type"], "string");
        assert_eq!(props["mode"]["default"], "alpha");
        assert_eq!(props["maybe_mode"]["enum"], json!(["alpha", "beta"]));
        assert_eq!(props["maybe_mode"]["type"], "string");
        assert_eq!(props["port"]["type"], "integer");
        assert_eq!(props["port"]["minimum"], "1");
        assert_eq!(props["port"]["maximum"], "65535");
        assert_eq!(props["port"]["default"], 5432);
        assert!(props["port"].get("format").is_none());
        assert_eq!(props["count"]["type"], "integer");
        assert_eq!(props["count"]["minimum"], "0");
        assert_eq!(props["secret"]["sensitive"], true);
        assert_eq!(props["secret"]["password"], true);
        assert_eq!(props["server_set"]["readOnly"], true);
        assert_eq!(props["inner"]["type"], "object");
        assert_eq!(props["inner"]["properties"]["on"]["type"], "boolean");
        assert_eq!(props["labels"]["additionalProperties"]["type"], "string");
        assert_eq!(props["tags"]["items"]["type"], "string");
    }

    #[test]
    fn post_processing_fixes_hand_written_violations() {
        let mut schema = json!({
            "type": ["null", "integer"],
            "minimum": 0,
            "exclusiveMaximum": 2.5,
            "multipleOf": 1,
            "additionalProperties": false,
            "items": [{"type": "string"}],
            "properties": {
                "a": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/A"}], "description": "kept"},
                "b": {"type": ["string", "null"], "default": null},
            },
            "$defs": {"A": {"type": "boolean", "description": "definition"}},
        });
        let defs = schema["$defs"].as_object().cloned().unwrap_or_default();
        if let Some(map) = schema.as_object_mut() {
            map.remove("$defs");
        }
        inline_refs(&mut schema, &defs, 0);
        make_sdk_compatible(&mut schema);
        assert_eq!(sdk_violations(&schema), Vec::<String>::new(), "{schema:#}");
        assert_eq!(schema["type"], "integer");
        assert_eq!(schema["minimum"], "0");
        assert_eq!(schema["exclusiveMaximum"], "2.5");
        assert!(schema.get("additionalProperties").is_none());
        assert!(schema.get("items").is_none());
        assert_eq!(schema["properties"]["a"]["type"], "boolean");
        assert_eq!(schema["properties"]["a"]["description"], "kept");
        assert_eq!(schema["properties"]["b"]["type"], "string");
        assert!(schema["properties"]["b"].get("default").is_none());
    }

    #[test]
    fn sensitive_and_read_only_keys_come_from_the_schema() {
        let schema = json_schema_for::<TestConfig>("test");
        let (sensitive, read_only) = sensitive_and_read_only_keys(&schema);
        assert_eq!(sensitive, vec!["secret"]);
        assert_eq!(read_only, vec!["server_set"]);
        let spec = spec();
        assert_eq!(spec.sensitive_keys(), sensitive);
        assert_eq!(spec.read_only_keys(), read_only);
    }

    fn parse(config: Value) -> Result<TestConfig, FieldError> {
        spec().parse(&config, ReadOnlyKeys::Drop)
    }

    fn error(config: Value) -> FieldError {
        match parse(config) {
            Ok(parsed) => panic!("expected an error, parsed {parsed:?}"),
            Err(error) => error,
        }
    }

    #[test]
    fn accepts_a_minimal_config_and_applies_defaults() {
        let parsed = parse(json!({"name": "x"})).expect("valid");
        assert_eq!(parsed.mode, Mode::Alpha);
        assert_eq!(parsed.port, 5432);
    }

    #[test]
    fn rejects_non_objects() {
        let e = error(json!(["name"]));
        assert_eq!(e.field, "");
        assert!(e.message.contains("got an array"), "{e}");
    }

    #[test]
    fn rejects_unknown_keys_listing_the_accepted_ones() {
        let e = error(json!({"name": "x", "colour": "red"}));
        assert_eq!(e.field, "colour");
        assert!(e.message.contains("unknown key"), "{e}");
        assert!(e.message.contains("name, mode, maybe_mode, port"), "{e}");
    }

    #[test]
    fn rejects_wrong_types_naming_the_field() {
        let e = error(json!({"name": "x", "port": "5432"}));
        assert_eq!(e.field, "port");
        assert_eq!(e.message, "expected an integer, got a string");
        let e = error(json!({"name": "x", "port": 5432.5}));
        assert_eq!(
            e.message,
            "expected an integer, got a floating-point number"
        );
        let e = error(json!({"name": 1}));
        assert_eq!(e.field, "name");
        assert_eq!(e.message, "expected a string, got an integer");
        let e = error(json!({"name": "x", "inner": {"on": "yes"}}));
        assert_eq!(e.field, "");
        assert!(e.message.contains("invalid configuration"), "{e}");
    }

    #[test]
    fn rejects_values_outside_the_enum() {
        let e = error(json!({"name": "x", "mode": "gamma"}));
        assert_eq!(e.field, "mode");
        assert_eq!(e.message, "must be one of: alpha, beta; got \"gamma\"");
    }

    #[test]
    fn empty_optional_enum_means_default() {
        let parsed = parse(json!({"name": "x", "mode": "", "maybe_mode": ""})).expect("valid");
        assert_eq!(parsed.mode, Mode::Alpha);
        assert_eq!(parsed.maybe_mode, None);
    }

    #[test]
    fn null_means_absent_for_optional_keys_and_missing_for_required_ones() {
        let parsed = parse(json!({"name": "x", "port": null, "secret": null})).expect("valid");
        assert_eq!(parsed.port, 5432);
        assert_eq!(parsed.secret, None);
        let e = error(json!({"name": null}));
        assert_eq!(e.field, "name");
    }

    #[test]
    fn enforces_required_and_non_empty() {
        let e = error(json!({}));
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("name", "is required")
        );
        let e = error(json!({"name": "  "}));
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("name", "must not be empty")
        );
    }

    #[test]
    fn enforces_integer_ranges() {
        let e = error(json!({"name": "x", "port": 0}));
        assert_eq!(e.field, "port");
        assert_eq!(e.message, "must be between 1 and 65535; got 0");
        let e = error(json!({"name": "x", "port": 70000}));
        assert_eq!(e.message, "must be between 1 and 65535; got 70000");
        let e = error(json!({"name": "x", "count": u64::MAX}));
        assert_eq!(e.field, "count");
        assert_eq!(
            e.message,
            format!("must be at most {}; got {}", i64::MAX, u64::MAX)
        );
        let e = error(json!({"name": "x", "count": -1}));
        assert_eq!(e.field, "count");
        assert_eq!(e.message, "must be at least 0; got -1");
    }

    #[test]
    fn drops_or_keeps_read_only_keys() {
        let parsed = parse(json!({"name": "x", "server_set": "caller"})).expect("valid");
        assert_eq!(parsed.server_set, None);
        // Even a wrongly typed read-only value is ignored, not reported.
        parse(json!({"name": "x", "server_set": 5})).expect("valid");
        let kept: TestConfig = spec()
            .parse(
                &json!({"name": "x", "server_set": "ferry"}),
                ReadOnlyKeys::Keep,
            )
            .expect("valid");
        assert_eq!(kept.server_set.as_deref(), Some("ferry"));
    }

    #[test]
    fn renames_aliases_and_rejects_both_spellings() {
        let parsed = parse(json!({"name": "x", "dbname": "d"})).expect("valid");
        assert_eq!(parsed.database.as_deref(), Some("d"));
        let e = error(json!({"name": "x", "dbname": "d", "database": "d"}));
        assert_eq!(e.field, "dbname");
        assert!(e.message.contains("only one"), "{e}");
    }
}
