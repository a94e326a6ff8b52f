//! describeGlobal, sObject describe and `/sobjects/X` basic info, with every key a real
//! describe carries (spec §3.3, §3.4).

use serde_json::{Value as Json, json};

use crate::schema::ObjectDef;
use crate::store::Org;

fn urls(o: &ObjectDef, v: &str, full: bool) -> Json {
    let base = format!("/services/data/v{v}/sobjects/{}", o.name);
    let mut m = json!({
        "compactLayouts": format!("{base}/describe/compactLayouts"),
        "rowTemplate": format!("{base}/{{ID}}"),
        "approvalLayouts": format!("{base}/describe/approvalLayouts"),
        "listviews": format!("{base}/listviews"),
        "describe": format!("{base}/describe"),
        "quickActions": format!("{base}/quickActions"),
        "layouts": format!("{base}/describe/layouts"),
        "sobject": base.clone(),
    });
    if full && let Some(obj) = m.as_object_mut() {
        obj.insert(
            "defaultValues".into(),
            Json::String(format!("{base}/defaultValues?recordTypeId&fields")),
        );
    }
    m
}

fn flags(org: &Org, o: &ObjectDef) -> (bool, bool, bool) {
    let writable = o.createable;
    let _ = org;
    (writable, writable && o.name != "Organization", writable)
}

/// One describeGlobal entry (also `objectDescribe` of `GET /sobjects/X`).
pub fn global_entry(org: &Org, o: &ObjectDef, v: &str) -> Json {
    let (createable, deletable, updateable) = flags(org, o);
    let replicateable = !matches!(o.name.as_str(), "CurrencyType" | "DatedConversionRate");
    json!({
        "activateable": false,
        "associateEntityType": null,
        "associateParentEntity": null,
        "createable": createable,
        "custom": o.custom,
        "customSetting": false,
        "deepCloneable": false,
        "deletable": deletable,
        "deprecatedAndHidden": false,
        "feedEnabled": !o.custom && matches!(o.name.as_str(), "Account" | "Contact" | "Lead" | "Opportunity" | "User"),
        "hasSubtypes": false,
        "isInterface": false,
        "isSubtype": false,
        "keyPrefix": o.key_prefix,
        "label": o.label,
        "labelPlural": o.label_plural,
        "layoutable": createable,
        "mergeable": matches!(o.name.as_str(), "Account" | "Contact" | "Lead"),
        "mruEnabled": createable,
        "name": o.name,
        "queryable": true,
        "replicateable": replicateable,
        "retrieveable": true,
        "searchable": createable,
        "triggerable": createable,
        "undeletable": deletable,
        "updateable": updateable,
        "urls": urls(o, v, false),
    })
}

/// `GET /sobjects` body.
pub fn global(org: &Org, v: &str) -> Json {
    let list: Vec<Json> = org
        .schema
        .objects
        .iter()
        .map(|o| global_entry(org, o, v))
        .collect();
    json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": list})
}

/// Full `GET /sobjects/X/describe` body.
pub fn describe(org: &Org, obj: usize, v: &str) -> Json {
    let o = org.def(obj);
    let (createable, deletable, updateable) = flags(org, o);
    let children: Vec<Json> = o
        .children
        .iter()
        .map(|c| {
            json!({
                "cascadeDelete": c.cascade_delete,
                "childSObject": c.child,
                "deprecatedAndHidden": false,
                "field": c.field,
                "junctionIdListNames": [],
                "junctionReferenceTo": [],
                "relationshipName": c.name,
                "restrictedDelete": c.restricted_delete,
            })
        })
        .collect();
    let fields: Vec<Json> = o
        .fields
        .iter()
        .map(|f| serde_json::to_value(f).unwrap_or(Json::Null))
        .collect();
    let scopes = if o.fields.iter().any(|f| f.name == "OwnerId") {
        json!([{"label": format!("All {}", o.label_plural.to_lowercase()), "name": "everything"}, {"label": format!("My {}", o.label_plural.to_lowercase()), "name": "mine"}])
    } else {
        json!([{"label": format!("All {}", o.label_plural.to_lowercase()), "name": "everything"}])
    };
    json!({
        "actionOverrides": [],
        "activateable": false,
        "associateEntityType": null,
        "associateParentEntity": null,
        "childRelationships": children,
        "compactLayoutable": createable,
        "createable": createable,
        "custom": o.custom,
        "customSetting": false,
        "deepCloneable": false,
        "defaultImplementation": null,
        "deletable": deletable,
        "deprecatedAndHidden": false,
        "extendedBy": null,
        "extendsInterfaces": null,
        "feedEnabled": !o.custom && matches!(o.name.as_str(), "Account" | "Contact" | "Lead" | "Opportunity" | "User"),
        "fields": fields,
        "hasSubtypes": false,
        "implementedBy": null,
        "implementsInterfaces": null,
        "isInterface": false,
        "isSubtype": false,
        "keyPrefix": o.key_prefix,
        "label": o.label,
        "labelPlural": o.label_plural,
        "layoutable": createable,
        "listviewable": null,
        "lookupLayoutable": null,
        "mergeable": matches!(o.name.as_str(), "Account" | "Contact" | "Lead"),
        "mruEnabled": createable,
        "name": o.name,
        "namedLayoutInfos": [],
        "networkScopeFieldName": null,
        "queryable": true,
        "recordTypeInfos": [{
            "active": true,
            "available": true,
            "defaultRecordTypeMapping": true,
            "developerName": "Master",
            "master": true,
            "name": "Master",
            "recordTypeId": "012000000000000AAA",
            "urls": {"layout": format!("/services/data/v{v}/sobjects/{}/describe/layouts/012000000000000AAA", o.name)}
        }],
        "replicateable": !matches!(o.name.as_str(), "CurrencyType" | "DatedConversionRate"),
        "retrieveable": true,
        "searchLayoutable": createable,
        "searchable": createable,
        "sobjectDescribeOption": "FULL",
        "supportedScopes": scopes,
        "triggerable": createable,
        "undeletable": deletable,
        "updateable": updateable,
        "urls": urls(o, v, true),
    })
}
