//! The objects a Salesforce connection exposes as sources (bulk sync schemas, model
//! tables), with their fields mapped to Polytomic's field types.
//!
//! Tooling API objects appear only when the connection's `enable_tooling` is true; their ids
//! carry the [`TOOLING_PREFIX`] (`tooling:ApexClass`) so they never collide with a standard
//! object of the same name and are clearly marked, and their names say "(Tooling API)".

use ferry_salesforce::{FieldDescribe, SObjectDescribe, SalesforceClient, SalesforceError};

use crate::salesforce::SalesforceConfig;

/// Id prefix of Tooling API objects.
pub const TOOLING_PREFIX: &str = "tooling:";

/// One object.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogObject {
    /// Schema id (`Account`, `tooling:ApexClass`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// The object's API name.
    pub api_name: String,
    /// Whether it comes from the Tooling API.
    pub tooling: bool,
    /// Fields, when requested.
    pub fields: Option<Vec<CatalogField>>,
}

/// One field.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogField {
    /// API name.
    pub name: String,
    /// Label.
    pub label: String,
    /// Polytomic field type: `string`, `number`, `boolean`, `datetime`, `object`, `binary`,
    /// `unknown`.
    pub field_type: &'static str,
    /// Salesforce's type (`currency`, `reference`, ...).
    pub remote_type: String,
    /// Whether it is the primary key (`Id`).
    pub is_primary_key: bool,
    /// Picklist values `(label, value)`.
    pub values: Vec<(String, String)>,
    /// Objects a reference field points to.
    pub reference_to: Vec<String>,
    /// Relationship name of a reference field.
    pub relationship_name: Option<String>,
    /// Whether it is a formula (or roll-up) field.
    pub calculated: bool,
}

/// Maps a Salesforce field type to Polytomic's field type vocabulary.
pub fn field_type(salesforce_type: &str) -> &'static str {
    match salesforce_type {
        "id" | "reference" | "string" | "textarea" | "picklist" | "multipicklist" | "combobox"
        | "email" | "phone" | "url" | "encryptedstring" => "string",
        "boolean" => "boolean",
        "int" | "long" | "double" | "currency" | "percent" => "number",
        "date" | "datetime" | "time" => "datetime",
        "base64" => "binary",
        "address" | "location" | "complexvalue" | "json" => "object",
        _ => "unknown",
    }
}

fn catalog_field(field: &FieldDescribe) -> CatalogField {
    CatalogField {
        name: field.name.clone(),
        label: field.label.clone(),
        field_type: field_type(&field.field_type),
        remote_type: field.field_type.clone(),
        is_primary_key: field.field_type == "id",
        values: field
            .picklist_values
            .iter()
            .filter(|v| v.active)
            .map(|v| {
                (
                    v.label.clone().unwrap_or_else(|| v.value.clone()),
                    v.value.clone(),
                )
            })
            .collect(),
        reference_to: field.reference_to.clone(),
        relationship_name: field.relationship_name.clone(),
        calculated: field.calculated,
    }
}

fn fields_of(describe: &SObjectDescribe) -> Vec<CatalogField> {
    describe
        .fields
        .iter()
        .filter(|f| !f.deprecated_and_hidden)
        .map(catalog_field)
        .collect()
}

/// Lists the queryable objects of the connection (plus Tooling objects when enabled).
pub async fn list_objects(
    client: &SalesforceClient,
    config: &SalesforceConfig,
    include_fields: bool,
) -> Result<Vec<CatalogObject>, SalesforceError> {
    let mut objects = Vec::new();
    let global = client.describe_global().await?;
    for summary in global
        .sobjects
        .iter()
        .filter(|o| o.queryable && o.retrieveable && !o.deprecated_and_hidden)
    {
        let fields = if include_fields {
            Some(fields_of(&*client.describe(&summary.name).await?))
        } else {
            None
        };
        objects.push(CatalogObject {
            id: summary.name.clone(),
            name: summary.name.clone(),
            api_name: summary.name.clone(),
            tooling: false,
            fields,
        });
    }
    if config.enable_tooling {
        let tooling = client.tooling_describe_global().await?;
        for summary in tooling.sobjects.iter().filter(|o| o.queryable) {
            let fields = if include_fields {
                Some(fields_of(&*client.tooling_describe(&summary.name).await?))
            } else {
                None
            };
            objects.push(CatalogObject {
                id: format!("{TOOLING_PREFIX}{}", summary.name),
                name: format!("{} (Tooling API)", summary.name),
                api_name: summary.name.clone(),
                tooling: true,
                fields,
            });
        }
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salesforce_types_map_to_polytomic_types() {
        assert_eq!(field_type("currency"), "number");
        assert_eq!(field_type("reference"), "string");
        assert_eq!(field_type("datetime"), "datetime");
        assert_eq!(field_type("date"), "datetime");
        assert_eq!(field_type("boolean"), "boolean");
        assert_eq!(field_type("address"), "object");
        assert_eq!(field_type("base64"), "binary");
        assert_eq!(field_type("anyType"), "unknown");
    }
}
