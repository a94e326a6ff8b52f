//! describeGlobal and describe (spec §3.3, §3.4), REST and Tooling, cached per client.
//!
//! Results are cached until [`SalesforceClient::invalidate_describe`] is called or any call
//! fails with `INVALID_FIELD`/`INVALID_TYPE` (the schema changed under us). Unknown keys
//! are ignored and missing ones default, so new API versions do not break parsing.

use std::sync::Arc;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::client::{Call, SalesforceClient};
use crate::error::{ApiErrorItem, Result, SalesforceError};

/// Sub-requests per `composite/batch` call.
pub const COMPOSITE_BATCH_LIMIT: usize = 25;

/// `GET /sobjects` (or `/tooling/sobjects`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GlobalDescribe {
    /// Character encoding (`UTF-8`).
    pub encoding: Option<String>,
    /// Maximum records per collections call (200).
    pub max_batch_size: Option<u32>,
    /// Every object.
    pub sobjects: Vec<SObjectSummary>,
}

/// One entry of the global describe.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SObjectSummary {
    /// API name.
    pub name: String,
    /// Label.
    pub label: String,
    /// Plural label.
    pub label_plural: String,
    /// 3-char id prefix.
    pub key_prefix: Option<String>,
    /// Custom object.
    pub custom: bool,
    /// Custom setting.
    pub custom_setting: bool,
    /// Can be queried.
    pub queryable: bool,
    /// Can be created.
    pub createable: bool,
    /// Can be updated.
    pub updateable: bool,
    /// Can be deleted.
    pub deletable: bool,
    /// Can be undeleted.
    pub undeletable: bool,
    /// Supports getUpdated/getDeleted.
    pub replicateable: bool,
    /// Can be retrieved by id.
    pub retrieveable: bool,
    /// Searchable.
    pub searchable: bool,
    /// Triggerable.
    pub triggerable: bool,
    /// Deprecated and hidden.
    pub deprecated_and_hidden: bool,
    /// Related resource URLs.
    pub urls: serde_json::Map<String, Json>,
}

/// `GET /sobjects/{Type}/describe`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SObjectDescribe {
    /// API name.
    pub name: String,
    /// Label.
    pub label: String,
    /// Plural label.
    pub label_plural: String,
    /// 3-char id prefix.
    pub key_prefix: Option<String>,
    /// Custom object.
    pub custom: bool,
    /// Can be queried.
    pub queryable: bool,
    /// Can be created.
    pub createable: bool,
    /// Can be updated.
    pub updateable: bool,
    /// Can be deleted.
    pub deletable: bool,
    /// Supports getUpdated/getDeleted.
    pub replicateable: bool,
    /// Can be retrieved by id.
    pub retrieveable: bool,
    /// Fields.
    pub fields: Vec<FieldDescribe>,
    /// Child relationships.
    pub child_relationships: Vec<ChildRelationship>,
    /// Record types.
    pub record_type_infos: Vec<RecordTypeInfo>,
    /// Related resource URLs.
    pub urls: serde_json::Map<String, Json>,
}

impl SObjectDescribe {
    /// A field by API name (case-insensitive).
    pub fn field(&self, name: &str) -> Option<&FieldDescribe> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// Fields usable as upsert keys (`externalId`, plus `Id`).
    pub fn external_id_fields(&self) -> impl Iterator<Item = &FieldDescribe> {
        self.fields
            .iter()
            .filter(|f| f.external_id || f.name == "Id")
    }
}

/// One field of a describe (the keys the engine relies on; spec §3.4).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FieldDescribe {
    /// API name.
    pub name: String,
    /// Label.
    pub label: String,
    /// Type (`string`, `reference`, `datetime`, ...).
    #[serde(rename = "type")]
    pub field_type: String,
    /// SOAP type (`xsd:string`, `tns:ID`, ...).
    pub soap_type: Option<String>,
    /// Max length for text types.
    pub length: u32,
    /// Bytes (3× length).
    pub byte_length: u32,
    /// Precision for numbers.
    pub precision: u32,
    /// Scale for numbers.
    pub scale: u32,
    /// Digits for integers.
    pub digits: u32,
    /// Accepts null.
    pub nillable: bool,
    /// Can be set on insert.
    pub createable: bool,
    /// Can be set on update.
    pub updateable: bool,
    /// Formula or rollup.
    pub calculated: bool,
    /// Formula text.
    pub calculated_formula: Option<String>,
    /// Usable as an upsert key.
    pub external_id: bool,
    /// Can identify a record in references.
    pub id_lookup: bool,
    /// Unique.
    pub unique: bool,
    /// Case-sensitive uniqueness.
    pub case_sensitive: bool,
    /// Salesforce fills it on create when missing.
    pub defaulted_on_create: bool,
    /// Default value.
    pub default_value: Option<Json>,
    /// Referenced objects.
    pub reference_to: Vec<String>,
    /// Relationship name (`Account`, `Parent__r`).
    pub relationship_name: Option<String>,
    /// Polymorphic reference.
    pub polymorphic_foreign_key: bool,
    /// Picklist values.
    pub picklist_values: Vec<PicklistValue>,
    /// Restricted picklist.
    pub restricted_picklist: bool,
    /// Parent compound field (`BillingAddress`).
    pub compound_field_name: Option<String>,
    /// The record's display name field.
    pub name_field: bool,
    /// Usable in WHERE.
    pub filterable: bool,
    /// Usable in ORDER BY.
    pub sortable: bool,
    /// Usable in GROUP BY.
    pub groupable: bool,
    /// Auto number.
    pub auto_number: bool,
    /// Custom field.
    pub custom: bool,
    /// Deprecated and hidden.
    pub deprecated_and_hidden: bool,
    /// Encrypted.
    pub encrypted: bool,
    /// HTML formatted text.
    pub html_formatted: bool,
    /// Help text.
    pub inline_help_text: Option<String>,
}

impl FieldDescribe {
    /// Whether the field must be given on insert (not nillable, not defaulted, createable).
    pub fn required_on_create(&self) -> bool {
        self.createable && !self.nillable && !self.defaulted_on_create
    }
}

/// A picklist entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PicklistValue {
    /// Active.
    pub active: bool,
    /// The default value.
    pub default_value: bool,
    /// Label.
    pub label: Option<String>,
    /// API value.
    pub value: String,
}

/// A child relationship.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChildRelationship {
    /// Child object.
    #[serde(rename = "childSObject")]
    pub child_sobject: String,
    /// Lookup field on the child.
    pub field: String,
    /// Relationship name for subqueries (`Contacts`), if any.
    pub relationship_name: Option<String>,
    /// Deleting the parent deletes the children.
    pub cascade_delete: bool,
    /// Deleting the parent is blocked by children.
    pub restricted_delete: bool,
}

/// A record type.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RecordTypeInfo {
    /// Id (`012...`).
    pub record_type_id: Option<String>,
    /// Label.
    pub name: String,
    /// API name.
    pub developer_name: Option<String>,
    /// Active.
    pub active: bool,
    /// Available to the user.
    pub available: bool,
    /// Master record type.
    pub master: bool,
    /// User's default.
    pub default_record_type_mapping: bool,
}

/// Refuses names that cannot be object or field API names (they go into URLs and SOQL).
pub(crate) fn check_name(kind: &str, name: &str) -> Result<()> {
    if ferry_soql::is_valid_identifier(name) {
        Ok(())
    } else {
        Err(SalesforceError::InvalidInput(format!(
            "{name:?} is not a valid {kind} API name"
        )))
    }
}

impl SalesforceClient {
    fn describe_prefix(&self, tooling: bool) -> String {
        if tooling {
            self.data_path("/tooling/sobjects")
        } else {
            self.data_path("/sobjects")
        }
    }

    async fn global_impl(&self, tooling: bool) -> Result<Arc<GlobalDescribe>> {
        if let Some(cached) = self.cached_global(tooling) {
            return Ok(cached);
        }
        let call = Call::new(
            Method::GET,
            self.describe_prefix(tooling),
            if tooling {
                "tooling describeGlobal"
            } else {
                "describeGlobal"
            },
        );
        let global: GlobalDescribe = self.send_json(call).await?;
        let global = Arc::new(global);
        self.cache_global(tooling, global.clone());
        Ok(global)
    }

    async fn describe_impl(&self, tooling: bool, sobject: &str) -> Result<Arc<SObjectDescribe>> {
        check_name("object", sobject)?;
        if let Some(cached) = self.cached_object(tooling, sobject) {
            return Ok(cached);
        }
        let path = format!("{}/{sobject}/describe", self.describe_prefix(tooling));
        let call = Call::new(
            Method::GET,
            path,
            if tooling {
                "tooling describe"
            } else {
                "describe"
            },
        );
        let describe: SObjectDescribe = self.send_json(call).await?;
        let describe = Arc::new(describe);
        self.cache_object(tooling, sobject, describe.clone());
        Ok(describe)
    }

    /// describeGlobal (`GET /sobjects`), cached.
    pub async fn describe_global(&self) -> Result<Arc<GlobalDescribe>> {
        self.global_impl(false).await
    }

    /// describe (`GET /sobjects/{Type}/describe`), cached.
    pub async fn describe(&self, sobject: &str) -> Result<Arc<SObjectDescribe>> {
        self.describe_impl(false, sobject).await
    }

    /// Describes several objects with `POST /composite/batch` (25 describes per API call,
    /// saving daily budget), using and filling the cache. Each entry is the object's
    /// describe or the error Salesforce gave for it (e.g. `NOT_FOUND`), in input order.
    pub async fn describe_many(
        &self,
        sobjects: &[&str],
    ) -> Result<Vec<std::result::Result<Arc<SObjectDescribe>, ApiErrorItem>>> {
        for name in sobjects {
            check_name("object", name)?;
        }
        let mut out: Vec<Option<std::result::Result<Arc<SObjectDescribe>, ApiErrorItem>>> =
            sobjects
                .iter()
                .map(|name| self.cached_object(false, name).map(Ok))
                .collect();
        let missing: Vec<usize> = out
            .iter()
            .enumerate()
            .filter(|(_, entry)| entry.is_none())
            .map(|(index, _)| index)
            .collect();
        for chunk in missing.chunks(COMPOSITE_BATCH_LIMIT) {
            let requests: Vec<Json> = chunk
                .iter()
                .map(|index| json!({"method": "GET", "url": format!("v{}/sobjects/{}/describe", self.api_version(), sobjects[*index])}))
                .collect();
            let call = Call::new(
                Method::POST,
                self.data_path("/composite/batch"),
                "composite batch describe",
            )
            .json_body(&json!({"haltOnError": false, "batchRequests": requests}))?;
            let reply: Json = self.send_json(call).await?;
            let results = reply
                .get("results")
                .and_then(Json::as_array)
                .ok_or_else(|| {
                    SalesforceError::parse("composite batch describe", "no results array")
                })?;
            if results.len() != chunk.len() {
                return Err(SalesforceError::parse(
                    "composite batch describe",
                    format!("{} results for {} requests", results.len(), chunk.len()),
                ));
            }
            for (index, result) in chunk.iter().zip(results) {
                let status = result.get("statusCode").and_then(Json::as_u64).unwrap_or(0);
                let body = result.get("result").cloned().unwrap_or(Json::Null);
                let entry = if (200..300).contains(&status) {
                    let describe: SObjectDescribe = serde_json::from_value(body).map_err(|e| {
                        SalesforceError::parse("composite batch describe", e.to_string())
                    })?;
                    let describe = Arc::new(describe);
                    self.cache_object(false, sobjects[*index], describe.clone());
                    Ok(describe)
                } else {
                    let first = body
                        .as_array()
                        .and_then(|items| items.iter().find_map(ApiErrorItem::from_json))
                        .or_else(|| ApiErrorItem::from_json(&body));
                    Err(first.unwrap_or_else(|| {
                        ApiErrorItem::new(format!("HTTP_{status}"), "describe failed", Vec::new())
                    }))
                };
                out[*index] = Some(entry);
            }
        }
        out.into_iter()
            .map(|entry| {
                entry.ok_or_else(|| {
                    SalesforceError::parse(
                        "composite batch describe",
                        "an object was left undescribed",
                    )
                })
            })
            .collect()
    }

    /// Tooling describeGlobal (`GET /tooling/sobjects`), cached.
    pub async fn tooling_describe_global(&self) -> Result<Arc<GlobalDescribe>> {
        self.global_impl(true).await
    }

    /// Tooling describe (`GET /tooling/sobjects/{Type}/describe`), cached.
    pub async fn tooling_describe(&self, sobject: &str) -> Result<Arc<SObjectDescribe>> {
        self.describe_impl(true, sobject).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_describe_tolerantly() {
        let body = r#"{"name":"Lead","label":"Lead","keyPrefix":"00Q","createable":true,"unknownKey":[1,2],
            "fields":[{"name":"Id","type":"id","nillable":false,"createable":false,"soapType":"tns:ID","length":18},
                      {"name":"LastName","type":"string","nillable":false,"createable":true,"defaultedOnCreate":false,"length":80},
                      {"name":"Ext__c","type":"string","externalId":true,"idLookup":true,"unique":true,"nillable":true,"createable":true},
                      {"name":"Status","type":"picklist","picklistValues":[{"active":true,"defaultValue":true,"label":"Open","value":"Open","validFor":null}],"defaultValue":null},
                      {"name":"OwnerId","type":"reference","referenceTo":["Group","User"],"relationshipName":"Owner","polymorphicForeignKey":true}],
            "childRelationships":[{"childSObject":"Task","field":"WhoId","relationshipName":"Tasks","cascadeDelete":true}],
            "recordTypeInfos":[{"recordTypeId":"012000000000000AAA","name":"Master","developerName":"Master","master":true}]}"#;
        let describe: SObjectDescribe = serde_json::from_str(body).expect("parses");
        assert_eq!(describe.key_prefix.as_deref(), Some("00Q"));
        assert!(
            describe
                .field("lastname")
                .is_some_and(FieldDescribe::required_on_create)
        );
        assert!(
            !describe
                .field("Id")
                .is_some_and(FieldDescribe::required_on_create)
        );
        let keys: Vec<&str> = describe
            .external_id_fields()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(keys, vec!["Id", "Ext__c"]);
        assert_eq!(
            describe.field("OwnerId").map(|f| f.reference_to.len()),
            Some(2)
        );
        assert_eq!(describe.child_relationships[0].child_sobject, "Task");
        assert!(describe.record_type_infos[0].master);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("object", "Custom__c").is_ok());
        assert!(check_name("object", "Account/../x").is_err());
        assert!(check_name("object", "").is_err());
    }
}
