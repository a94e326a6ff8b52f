//! Object and field metadata: the standard objects (generated from recorded describes into
//! `metadata/standard.json`), custom objects and fields, and the lookup indexes the store,
//! the query executor and describe share.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::formula::Formula;

/// A picklist entry as describe shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PicklistValue {
    /// Usable for new values.
    pub active: bool,
    /// Default for new records.
    pub default_value: bool,
    /// Display label.
    pub label: String,
    /// Dependent picklist bitmap (always null here).
    pub valid_for: Option<String>,
    /// API value.
    pub value: String,
}

impl Default for PicklistValue {
    fn default() -> Self {
        PicklistValue {
            active: true,
            default_value: false,
            label: String::new(),
            valid_for: None,
            value: String::new(),
        }
    }
}

/// One field as describe shows it: exactly the 57 keys of a real describe (spec §3.4).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct FieldDef {
    pub aggregatable: bool,
    pub ai_prediction_field: bool,
    pub auto_number: bool,
    pub byte_length: i64,
    pub calculated: bool,
    pub calculated_formula: Option<String>,
    pub cascade_delete: bool,
    pub case_sensitive: bool,
    pub compound_field_name: Option<String>,
    pub controller_name: Option<String>,
    pub createable: bool,
    pub custom: bool,
    pub default_value: Json,
    pub default_value_formula: Option<String>,
    pub defaulted_on_create: bool,
    pub dependent_picklist: bool,
    pub deprecated_and_hidden: bool,
    pub digits: i64,
    pub display_location_in_decimal: bool,
    pub encrypted: bool,
    pub external_id: bool,
    pub extra_type_info: Option<String>,
    pub filterable: bool,
    pub filtered_lookup_info: Json,
    pub formula_treat_null_number_as_zero: bool,
    pub groupable: bool,
    pub high_scale_number: bool,
    pub html_formatted: bool,
    pub id_lookup: bool,
    pub inline_help_text: Option<String>,
    pub label: String,
    pub length: i64,
    pub mask: Option<String>,
    pub mask_type: Option<String>,
    pub name: String,
    pub name_field: bool,
    pub name_pointing: bool,
    pub nillable: bool,
    pub permissionable: bool,
    pub picklist_values: Vec<PicklistValue>,
    pub polymorphic_foreign_key: bool,
    pub precision: i64,
    pub query_by_distance: bool,
    pub reference_target_field: Option<String>,
    pub reference_to: Vec<String>,
    pub relationship_name: Option<String>,
    pub relationship_order: Option<i64>,
    pub restricted_delete: bool,
    pub restricted_picklist: bool,
    pub scale: i64,
    pub search_prefilterable: bool,
    pub soap_type: String,
    pub sortable: bool,
    #[serde(rename = "type")]
    pub field_type: String,
    pub unique: bool,
    pub updateable: bool,
    pub write_requires_master_read: bool,
}

/// Storage/semantic class of a field, derived from its describe `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The record id.
    Id,
    /// Lookup / master-detail.
    Reference,
    /// string, textarea, email, phone, url, combobox, encryptedstring.
    Text,
    /// Single-select picklist.
    Picklist,
    /// Multi-select picklist (`A;B`).
    MultiPicklist,
    /// boolean.
    Bool,
    /// int.
    Int,
    /// double, percent.
    Double,
    /// currency.
    Currency,
    /// date.
    Date,
    /// datetime.
    DateTime,
    /// time (stored as text).
    Time,
    /// Compound address, computed from its components.
    Address,
    /// Compound location.
    Location,
}

impl Kind {
    /// Kind for a describe `type` value.
    pub fn of(t: &str) -> Kind {
        match t {
            "id" => Kind::Id,
            "reference" => Kind::Reference,
            "picklist" => Kind::Picklist,
            "multipicklist" => Kind::MultiPicklist,
            "boolean" => Kind::Bool,
            "int" | "long" => Kind::Int,
            "double" | "percent" => Kind::Double,
            "currency" => Kind::Currency,
            "date" => Kind::Date,
            "datetime" => Kind::DateTime,
            "time" => Kind::Time,
            "address" => Kind::Address,
            "location" => Kind::Location,
            _ => Kind::Text,
        }
    }

    /// Number-valued kinds.
    pub fn is_numeric(self) -> bool {
        matches!(self, Kind::Int | Kind::Double | Kind::Currency)
    }
}

/// A child relationship of a parent object.
#[derive(Debug, Clone)]
pub struct ChildRel {
    /// Child object name.
    pub child: String,
    /// Lookup field on the child.
    pub field: String,
    /// SOQL name (`Contacts`), if any.
    pub name: Option<String>,
    /// Deleting the parent deletes children.
    pub cascade_delete: bool,
    /// Deleting the parent is blocked by children.
    pub restricted_delete: bool,
}

/// An object and its fields.
#[derive(Debug, Clone)]
pub struct ObjectDef {
    /// API name.
    pub name: String,
    /// Singular label.
    pub label: String,
    /// Plural label.
    pub label_plural: String,
    /// 3-char id prefix.
    pub key_prefix: String,
    /// `__c` object.
    pub custom: bool,
    /// Records can be created through the API.
    pub createable: bool,
    /// Field metadata, in describe order.
    pub fields: Vec<FieldDef>,
    /// Kind per field (parallel to `fields`).
    pub kinds: Vec<Kind>,
    /// Parsed formula per field (parallel to `fields`).
    pub formulas: Vec<Option<Formula>>,
    /// Lower-cased field name → index.
    pub by_name: HashMap<String, usize>,
    /// Exact field name → index (fast path, no allocation).
    pub by_exact: HashMap<String, usize>,
    /// Lower-cased relationship name → lookup field index.
    pub by_rel: HashMap<String, usize>,
    /// Child relationships (filled by [`Schema::link`]).
    pub children: Vec<ChildRel>,
}

impl ObjectDef {
    /// Builds the indexes from the field list.
    pub fn new(
        name: &str,
        label: &str,
        label_plural: &str,
        key_prefix: &str,
        custom: bool,
        fields: Vec<FieldDef>,
    ) -> ObjectDef {
        let mut o = ObjectDef {
            name: name.into(),
            label: label.into(),
            label_plural: label_plural.into(),
            key_prefix: key_prefix.into(),
            custom,
            createable: true,
            fields: Vec::new(),
            kinds: Vec::new(),
            formulas: Vec::new(),
            by_name: HashMap::new(),
            by_exact: HashMap::new(),
            by_rel: HashMap::new(),
            children: Vec::new(),
        };
        for f in fields {
            o.push_field(f);
        }
        o
    }

    /// Appends a field (new columns read as null in existing rows).
    pub fn push_field(&mut self, f: FieldDef) {
        let idx = self.fields.len();
        self.by_name.insert(f.name.to_ascii_lowercase(), idx);
        self.by_exact.insert(f.name.clone(), idx);
        if let Some(rel) = &f.relationship_name {
            self.by_rel.insert(rel.to_ascii_lowercase(), idx);
        }
        self.kinds.push(Kind::of(&f.field_type));
        self.formulas.push(
            f.calculated_formula
                .as_deref()
                .and_then(|src| Formula::parse(src).ok()),
        );
        self.fields.push(f);
    }

    /// The `SystemModstamp` column, when the object has one (a stored datetime).
    pub fn modstamp_col(&self) -> Option<usize> {
        let col = *self.by_exact.get("SystemModstamp")?;
        (self.kinds.get(col) == Some(&Kind::DateTime)
            && self.formulas.get(col).is_some_and(Option::is_none))
        .then_some(col)
    }

    /// Lookup field index by case-insensitive name.
    pub fn field(&self, name: &str) -> Option<usize> {
        if let Some(i) = self.by_exact.get(name) {
            return Some(*i);
        }
        self.by_name.get(&name.to_ascii_lowercase()).copied()
    }

    /// Lookup field index by case-insensitive relationship name.
    pub fn rel(&self, name: &str) -> Option<usize> {
        self.by_rel.get(&name.to_ascii_lowercase()).copied()
    }

    /// Index of a system field every object has.
    pub fn sys(&self, name: &str) -> Option<usize> {
        self.field(name)
    }
}

/// Errors defining objects and fields.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Bad name, type or option.
    #[error("{0}")]
    Invalid(String),
}

/// A custom field definition, as accepted by the schema file and the admin API.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct CustomFieldSpec {
    /// API name ending in `__c`.
    pub name: String,
    /// text, textarea, longtextarea, email, phone, url, number, currency, percent, date,
    /// datetime, checkbox, picklist, multipicklist, lookup, formula.
    #[serde(rename = "type")]
    pub field_type: String,
    /// Label (defaults to the name without `__c`).
    pub label: Option<String>,
    /// Text length (default 255).
    pub length: Option<i64>,
    /// Number precision (default 18).
    pub precision: Option<i64>,
    /// Number scale (default 0; currency 2).
    pub scale: Option<i64>,
    /// Required on insert.
    pub required: bool,
    /// Unique values.
    pub unique: bool,
    /// External id (implies idLookup, indexed).
    pub external_id: bool,
    /// Case-sensitive uniqueness.
    pub case_sensitive: bool,
    /// Picklist values.
    pub values: Vec<String>,
    /// Restricted picklist.
    pub restricted: bool,
    /// Lookup target object.
    pub reference_to: Option<String>,
    /// Child relationship name on the parent (default `<ChildObject>s`-style `__r`).
    pub child_relationship_name: Option<String>,
    /// Formula text (type `formula`).
    pub formula: Option<String>,
    /// Formula result type: text, number, currency, percent, date, datetime, checkbox.
    pub return_type: Option<String>,
    /// Default value for new records.
    pub default_value: Option<Json>,
    /// Deleting the parent deletes this record (master-detail-like).
    pub cascade_delete: bool,
}

/// A custom object definition.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct CustomObjectSpec {
    /// API name ending in `__c`.
    pub name: String,
    /// Singular label.
    pub label: Option<String>,
    /// Plural label.
    pub label_plural: Option<String>,
    /// Fields to create with the object.
    pub fields: Vec<CustomFieldSpec>,
}

const SOAP: &[(&str, &str)] = &[
    ("id", "tns:ID"),
    ("reference", "tns:ID"),
    ("boolean", "xsd:boolean"),
    ("int", "xsd:int"),
    ("double", "xsd:double"),
    ("currency", "xsd:double"),
    ("percent", "xsd:double"),
    ("date", "xsd:date"),
    ("datetime", "xsd:dateTime"),
    ("time", "xsd:time"),
    ("address", "urn:address"),
];

fn soap_type(t: &str) -> String {
    SOAP.iter()
        .find(|(k, _)| *k == t)
        .map_or("xsd:string", |(_, v)| v)
        .to_string()
}

fn base_field(name: &str, label: &str, t: &str) -> FieldDef {
    FieldDef {
        name: name.into(),
        label: label.into(),
        field_type: t.into(),
        soap_type: soap_type(t),
        filterable: true,
        sortable: !matches!(t, "textarea" | "multipicklist"),
        groupable: !matches!(
            t,
            "textarea" | "multipicklist" | "double" | "currency" | "percent" | "datetime"
        ),
        aggregatable: t != "textarea",
        nillable: true,
        createable: true,
        updateable: true,
        permissionable: true,
        default_value: Json::Null,
        filtered_lookup_info: Json::Null,
        ..FieldDef::default()
    }
}

fn describe_type(spec_type: &str) -> Option<&'static str> {
    Some(match spec_type.to_ascii_lowercase().as_str() {
        "text" | "string" => "string",
        "textarea" | "longtextarea" => "textarea",
        "email" => "email",
        "phone" => "phone",
        "url" => "url",
        "number" | "double" => "double",
        "int" => "int",
        "currency" => "currency",
        "percent" => "percent",
        "date" => "date",
        "datetime" => "datetime",
        "checkbox" | "boolean" => "boolean",
        "picklist" => "picklist",
        "multipicklist" => "multipicklist",
        "lookup" | "reference" | "masterdetail" => "reference",
        _ => return None,
    })
}

/// Turns a custom field spec into describe metadata.
pub fn custom_field(object: &str, spec: &CustomFieldSpec) -> Result<FieldDef, SchemaError> {
    let name = spec.name.trim();
    if !name.ends_with("__c")
        || name.len() <= 3
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(SchemaError::Invalid(format!(
            "custom field name must be alphanumeric and end in __c: {name}"
        )));
    }
    let label = spec
        .label
        .clone()
        .unwrap_or_else(|| name.trim_end_matches("__c").replace('_', " "));
    let is_formula = spec.field_type.eq_ignore_ascii_case("formula");
    let t_src = if is_formula {
        spec.return_type.as_deref().unwrap_or("text")
    } else {
        spec.field_type.as_str()
    };
    let t = describe_type(t_src)
        .ok_or_else(|| SchemaError::Invalid(format!("unsupported field type: {t_src}")))?;
    let mut f = base_field(name, &label, t);
    f.custom = true;
    match t {
        "string" | "email" | "phone" | "url" | "picklist" | "multipicklist" => {
            let len = spec
                .length
                .unwrap_or(if t == "multipicklist" { 4099 } else { 255 });
            if !(1..=131_072).contains(&len) {
                return Err(SchemaError::Invalid(format!(
                    "invalid length {len} for {name}"
                )));
            }
            f.length = len;
            f.byte_length = len * 3;
        }
        "textarea" => {
            f.length =
                spec.length
                    .unwrap_or(if spec.field_type.eq_ignore_ascii_case("longtextarea") {
                        32_768
                    } else {
                        255
                    });
            f.byte_length = f.length * 3;
            f.extra_type_info = Some("plaintextarea".into());
        }
        "double" | "currency" | "percent" => {
            f.precision = spec.precision.unwrap_or(18);
            f.scale = spec.scale.unwrap_or(if t == "currency" { 2 } else { 0 });
        }
        "reference" => {
            let target = spec
                .reference_to
                .clone()
                .ok_or_else(|| SchemaError::Invalid(format!("lookup {name} needs referenceTo")))?;
            f.reference_to = vec![target];
            f.relationship_name = Some(format!("{}__r", name.trim_end_matches("__c")));
            f.length = 18;
            f.byte_length = 18;
            f.cascade_delete = spec.cascade_delete;
        }
        "boolean" => {
            f.nillable = false;
            f.defaulted_on_create = true;
            f.default_value = Json::Bool(
                spec.default_value
                    .as_ref()
                    .and_then(Json::as_bool)
                    .unwrap_or(false),
            );
        }
        _ => {}
    }
    if matches!(t, "picklist" | "multipicklist") {
        f.restricted_picklist = spec.restricted;
        f.picklist_values = spec
            .values
            .iter()
            .map(|v| PicklistValue {
                label: v.clone(),
                value: v.clone(),
                ..PicklistValue::default()
            })
            .collect();
    }
    if spec.required && !is_formula && t != "boolean" {
        f.nillable = false;
    }
    if spec.unique || spec.external_id {
        f.unique = spec.unique;
        f.case_sensitive = spec.case_sensitive;
    }
    if spec.external_id {
        f.external_id = true;
        f.id_lookup = true;
        f.filterable = true;
    }
    if let Some(d) = &spec.default_value
        && t != "boolean"
    {
        f.default_value = d.clone();
        f.defaulted_on_create = true;
    }
    if is_formula {
        let src = spec
            .formula
            .clone()
            .ok_or_else(|| SchemaError::Invalid(format!("formula field {name} needs formula")))?;
        Formula::parse(&src)
            .map_err(|e| SchemaError::Invalid(format!("formula {name} on {object}: {e}")))?;
        f.calculated = true;
        f.calculated_formula = Some(src);
        f.createable = false;
        f.updateable = false;
        f.nillable = true;
        f.defaulted_on_create = false;
        f.unique = false;
        f.external_id = false;
        f.id_lookup = false;
        f.formula_treat_null_number_as_zero = false;
    }
    Ok(f)
}

/// The org's schema: every object, in creation order.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Objects.
    pub objects: Vec<ObjectDef>,
    /// Lower-cased name → index.
    pub by_name: HashMap<String, usize>,
    /// Key prefix → index.
    pub by_prefix: HashMap<String, usize>,
    /// "Child.Field" → (relationshipName, cascadeDelete, restrictedDelete) for standard lookups.
    pub child_names: HashMap<String, (Option<String>, bool, bool)>,
    /// Custom objects and fields as defined (persisted and replayed).
    pub custom_specs: Vec<(String, CustomFieldSpec)>,
    /// Custom objects as defined.
    pub custom_objects: Vec<CustomObjectSpec>,
    next_custom_prefix: u32,
}

#[derive(Deserialize)]
struct StdFile {
    objects: Vec<StdObject>,
    children: HashMap<String, StdChild>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StdObject {
    name: String,
    label: String,
    label_plural: String,
    key_prefix: String,
    fields: Vec<FieldDef>,
    #[serde(default)]
    createable: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StdChild {
    relationship_name: Option<String>,
    cascade_delete: bool,
    restricted_delete: bool,
}

const STANDARD: &str = include_str!("metadata/standard.json");

impl Schema {
    /// The standard objects.
    pub fn standard() -> Schema {
        let file: StdFile = serde_json::from_str(STANDARD).unwrap_or(StdFile {
            objects: Vec::new(),
            children: HashMap::new(),
        });
        let mut s = Schema {
            objects: Vec::new(),
            by_name: HashMap::new(),
            by_prefix: HashMap::new(),
            child_names: file
                .children
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        (v.relationship_name, v.cascade_delete, v.restricted_delete),
                    )
                })
                .collect(),
            custom_specs: Vec::new(),
            custom_objects: Vec::new(),
            next_custom_prefix: 0,
        };
        for o in file.objects {
            let mut def = ObjectDef::new(
                &o.name,
                &o.label,
                &o.label_plural,
                &o.key_prefix,
                false,
                o.fields,
            );
            def.createable = o.createable.unwrap_or(true);
            s.add(def);
        }
        s.link();
        s
    }

    fn add(&mut self, o: ObjectDef) {
        let idx = self.objects.len();
        self.by_name.insert(o.name.to_ascii_lowercase(), idx);
        self.by_prefix.insert(o.key_prefix.clone(), idx);
        self.objects.push(o);
    }

    /// Object index by case-insensitive name.
    pub fn object(&self, name: &str) -> Option<usize> {
        self.by_name.get(&name.to_ascii_lowercase()).copied()
    }

    /// Object index for an id's key prefix.
    pub fn object_for_id(&self, id: &str) -> Option<usize> {
        self.by_prefix.get(crate::ids::prefix(id)).copied()
    }

    /// Recomputes child relationships from every lookup field.
    pub fn link(&mut self) {
        let mut rels: Vec<(usize, ChildRel)> = Vec::new();
        for o in &self.objects {
            for f in &o.fields {
                if f.field_type != "reference" {
                    continue;
                }
                for target in &f.reference_to {
                    let Some(p) = self.object(target) else {
                        continue;
                    };
                    let key = format!("{}.{}", o.name, f.name);
                    let (name, cascade, restricted) = match self.child_names.get(&key) {
                        Some(v) => v.clone(),
                        None if f.custom => (
                            Some(format!("{}__r", plural(&o.name))),
                            f.cascade_delete,
                            false,
                        ),
                        None => (None, false, false),
                    };
                    rels.push((
                        p,
                        ChildRel {
                            child: o.name.clone(),
                            field: f.name.clone(),
                            name,
                            cascade_delete: cascade,
                            restricted_delete: restricted,
                        },
                    ));
                }
            }
        }
        for o in &mut self.objects {
            o.children.clear();
        }
        for (p, r) in rels {
            self.objects[p].children.push(r);
        }
        for o in &mut self.objects {
            o.children
                .sort_by(|a, b| a.child.cmp(&b.child).then(a.field.cmp(&b.field)));
        }
    }

    /// Defines a custom object with the standard system fields plus `spec.fields`.
    pub fn define_object(&mut self, spec: &CustomObjectSpec) -> Result<usize, SchemaError> {
        let name = spec.name.trim();
        if !name.ends_with("__c")
            || name.len() <= 3
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(SchemaError::Invalid(format!(
                "custom object name must end in __c: {name}"
            )));
        }
        if let Some(idx) = self.object(name) {
            for f in &spec.fields {
                self.define_field(name, f)?;
            }
            return Ok(idx);
        }
        let label = spec
            .label
            .clone()
            .unwrap_or_else(|| name.trim_end_matches("__c").replace('_', " "));
        let plural_label = spec
            .label_plural
            .clone()
            .unwrap_or_else(|| format!("{label}s"));
        let prefix = self.alloc_prefix();
        let acct = self.object("Account").map(|i| self.objects[i].clone());
        let mut fields = Vec::new();
        let sys = |n: &str| {
            acct.as_ref()
                .and_then(|a| a.field(n).map(|i| a.fields[i].clone()))
        };
        if let Some(mut id) = sys("Id") {
            id.label = "Record ID".into();
            fields.push(id);
        }
        if let Some(mut f) = sys("OwnerId") {
            f.label = "Owner ID".into();
            fields.push(f);
        }
        if let Some(f) = sys("IsDeleted") {
            fields.push(f);
        }
        let mut nf = base_field("Name", &format!("{label} Name"), "string");
        nf.length = 80;
        nf.byte_length = 240;
        nf.name_field = true;
        nf.id_lookup = true;
        nf.nillable = true;
        nf.defaulted_on_create = true;
        fields.push(nf);
        let mut cur = sys("CurrencyIsoCode");
        if cur.is_none() {
            cur = self.object("Opportunity").and_then(|i| {
                let o = &self.objects[i];
                o.field("CurrencyIsoCode").map(|f| o.fields[f].clone())
            });
        }
        if let Some(f) = cur {
            fields.push(f);
        }
        for n in [
            "CreatedDate",
            "CreatedById",
            "LastModifiedDate",
            "LastModifiedById",
            "SystemModstamp",
            "LastViewedDate",
            "LastReferencedDate",
        ] {
            if let Some(f) = sys(n) {
                fields.push(f);
            }
        }
        let def = ObjectDef::new(name, &label, &plural_label, &prefix, true, fields);
        self.add(def);
        let mut stored = spec.clone();
        stored.fields.clear();
        self.custom_objects.push(stored);
        for f in &spec.fields {
            self.define_field(name, f)?;
        }
        self.link();
        self.object(name)
            .ok_or_else(|| SchemaError::Invalid("object vanished".into()))
    }

    /// Adds (or replaces the definition of) a custom field on any object.
    pub fn define_field(
        &mut self,
        object: &str,
        spec: &CustomFieldSpec,
    ) -> Result<usize, SchemaError> {
        let oi = self
            .object(object)
            .ok_or_else(|| SchemaError::Invalid(format!("unknown object {object}")))?;
        let def = custom_field(&self.objects[oi].name, spec)?;
        if let Some(target) = def.reference_to.first()
            && self.object(target).is_none()
        {
            return Err(SchemaError::Invalid(format!(
                "unknown lookup target {target}"
            )));
        }
        let oname = self.objects[oi].name.clone();
        if let Some(child_name) = &spec.child_relationship_name {
            self.child_names.insert(
                format!("{oname}.{}", def.name),
                (Some(child_name.clone()), def.cascade_delete, false),
            );
        }
        let o = &mut self.objects[oi];
        let idx = if let Some(existing) = o.field(&def.name) {
            if !o.fields[existing].custom {
                return Err(SchemaError::Invalid(format!(
                    "{} is a standard field",
                    def.name
                )));
            }
            o.fields[existing] = def.clone();
            o.kinds[existing] = Kind::of(&def.field_type);
            o.formulas[existing] = def
                .calculated_formula
                .as_deref()
                .and_then(|s| Formula::parse(s).ok());
            if let Some(rel) = &def.relationship_name {
                o.by_rel.insert(rel.to_ascii_lowercase(), existing);
            }
            existing
        } else {
            o.push_field(def);
            o.fields.len() - 1
        };
        self.custom_specs.retain(|(ob, s)| {
            !(ob.eq_ignore_ascii_case(&oname) && s.name.eq_ignore_ascii_case(&spec.name))
        });
        self.custom_specs.push((oname, spec.clone()));
        self.link();
        Ok(idx)
    }

    fn alloc_prefix(&mut self) -> String {
        const CH: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        loop {
            let n = self.next_custom_prefix as usize;
            self.next_custom_prefix += 1;
            let p = format!(
                "a{}{}",
                CH[(n / CH.len() + 1) % CH.len()] as char,
                CH[n % CH.len()] as char
            );
            if !self.by_prefix.contains_key(&p) {
                return p;
            }
        }
    }

    /// Sets the currency picklist values on every `CurrencyIsoCode`-style field.
    pub fn set_currencies(&mut self, codes: &[(String, bool)]) {
        for o in &mut self.objects {
            for f in &mut o.fields {
                if matches!(
                    f.name.as_str(),
                    "CurrencyIsoCode" | "DefaultCurrencyIsoCode"
                ) {
                    f.picklist_values = codes
                        .iter()
                        .map(|(c, corporate)| PicklistValue {
                            label: c.clone(),
                            value: c.clone(),
                            default_value: *corporate,
                            ..PicklistValue::default()
                        })
                        .collect();
                }
            }
        }
    }
}

fn plural(name: &str) -> String {
    let base = name.trim_end_matches("__c");
    if base.ends_with('s') {
        base.to_string()
    } else {
        format!("{base}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_objects_load() {
        let s = Schema::standard();
        for n in [
            "Account",
            "Contact",
            "Lead",
            "Opportunity",
            "User",
            "Organization",
            "CurrencyType",
            "DatedConversionRate",
        ] {
            assert!(s.object(n).is_some(), "{n}");
        }
        let acct = &s.objects[s.object("account").unwrap_or(0)];
        assert!(
            acct.children
                .iter()
                .any(|c| c.name.as_deref() == Some("Contacts"))
        );
        let con = &s.objects[s.object("Contact").unwrap_or(0)];
        assert!(con.rel("account").is_some());
    }

    #[test]
    fn custom_objects_and_fields() {
        let mut s = Schema::standard();
        let spec: CustomObjectSpec = serde_json::from_value(serde_json::json!({
            "name": "Invoice__c",
            "fields": [
                {"name": "Ext__c", "type": "text", "length": 20, "externalId": true, "unique": true},
                {"name": "Account__c", "type": "lookup", "referenceTo": "Account"},
                {"name": "Total__c", "type": "formula", "returnType": "currency", "formula": "Amount__c * 2"}
            ]
        }))
        .unwrap_or_default();
        assert!(s.define_object(&spec).is_ok());
        let o = &s.objects[s.object("invoice__c").unwrap_or(0)];
        assert!(o.key_prefix.starts_with('a'));
        assert!(o.rel("Account__r").is_some());
        let acct = &s.objects[s.object("Account").unwrap_or(0)];
        assert!(
            acct.children
                .iter()
                .any(|c| c.name.as_deref() == Some("Invoices__r"))
        );
        assert!(
            s.define_field(
                "Account",
                &CustomFieldSpec {
                    name: "Bad".into(),
                    field_type: "text".into(),
                    ..Default::default()
                }
            )
            .is_err()
        );
    }
}
