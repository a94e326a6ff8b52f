//! Tooling API (`/services/data/vXX.X/tooling/...`), spec §8.
//!
//! The Tooling objects live in a separate, read-only org built on demand: ApexClass,
//! ApexTrigger, ValidationRule and FlowDefinitionView carry a few demo rows; CustomObject,
//! CustomField, EntityDefinition and FieldDefinition are generated from the main org's
//! describe metadata. Queries run through the same SOQL executor as `/query`, so filters,
//! ordering, `LIMIT` and relationship paths such as
//! `EntityDefinition.QualifiedApiName` behave the same.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Map, Value as Json, json};

use crate::http::Reply;
use crate::ids;
use crate::schema::{FieldDef, Kind, ObjectDef, Schema};
use crate::state::AppState;
use crate::store::{Org, WriteCtx};
use crate::value::{Val, parse_datetime};

/// Rows per Tooling query page.
pub const PAGE: usize = 2000;

/// Objects that refuse `queryMore` (spec §8).
const NO_QUERY_MORE: [&str; 2] = ["EntityDefinition", "FieldDefinition"];

struct ToolingCursor {
    entity: String,
    records: Arc<Vec<Json>>,
    batch: usize,
}

fn cursors() -> &'static Mutex<HashMap<String, ToolingCursor>> {
    static C: OnceLock<Mutex<HashMap<String, ToolingCursor>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

fn fd(name: &str, t: &str) -> FieldDef {
    let label = name
        .trim_end_matches("__c")
        .trim_end_matches("Id")
        .to_string();
    FieldDef {
        name: name.into(),
        label: if label.is_empty() { name.into() } else { label },
        field_type: t.into(),
        soap_type: match t {
            "id" | "reference" => "tns:ID",
            "boolean" => "xsd:boolean",
            "int" => "xsd:int",
            "double" => "xsd:double",
            "datetime" => "xsd:dateTime",
            "date" => "xsd:date",
            _ => "xsd:string",
        }
        .into(),
        length: if matches!(t, "string" | "picklist" | "id" | "reference") {
            255
        } else if t == "textarea" {
            131_072
        } else {
            0
        },
        nillable: t != "id" && t != "boolean",
        filterable: t != "textarea",
        sortable: t != "textarea",
        groupable: !matches!(t, "textarea" | "double" | "datetime"),
        createable: t != "id",
        updateable: t != "id",
        default_value: Json::Null,
        filtered_lookup_info: Json::Null,
        id_lookup: t == "id",
        ..FieldDef::default()
    }
}

fn reference(name: &str, rel: &str, target: &str) -> FieldDef {
    let mut f = fd(name, "reference");
    f.reference_to = vec![target.into()];
    f.relationship_name = Some(rel.into());
    f
}

fn audit() -> Vec<FieldDef> {
    vec![
        fd("CreatedDate", "datetime"),
        fd("CreatedById", "reference"),
        fd("LastModifiedDate", "datetime"),
        fd("LastModifiedById", "reference"),
        fd("SystemModstamp", "datetime"),
    ]
}

fn object(name: &str, plural: &str, prefix: &str, fields: Vec<FieldDef>) -> ObjectDef {
    let mut all = vec![fd("Id", "id")];
    all.extend(fields);
    let mut o = ObjectDef::new(name, name, plural, prefix, false, all);
    o.createable = false;
    o
}

fn tooling_schema() -> Schema {
    let strs = |names: &[&str]| names.iter().map(|n| fd(n, "string")).collect::<Vec<_>>();
    let mut apex_class = strs(&["Name", "NamespacePrefix", "Status", "ManageableState"]);
    apex_class.extend([
        fd("ApiVersion", "double"),
        fd("IsValid", "boolean"),
        fd("Body", "textarea"),
        fd("BodyCrc", "double"),
        fd("LengthWithoutComments", "int"),
    ]);
    apex_class.extend(audit());
    let mut trigger = strs(&[
        "Name",
        "TableEnumOrId",
        "NamespacePrefix",
        "Status",
        "ManageableState",
    ]);
    trigger.extend([
        fd("ApiVersion", "double"),
        fd("IsValid", "boolean"),
        fd("Body", "textarea"),
        fd("LengthWithoutComments", "int"),
        fd("UsageBeforeInsert", "boolean"),
        fd("UsageAfterInsert", "boolean"),
        fd("UsageBeforeUpdate", "boolean"),
        fd("UsageAfterUpdate", "boolean"),
        fd("UsageBeforeDelete", "boolean"),
        fd("UsageAfterDelete", "boolean"),
        fd("UsageAfterUndelete", "boolean"),
        fd("UsageIsBulk", "boolean"),
    ]);
    trigger.extend(audit());
    let mut custom_object = strs(&[
        "DeveloperName",
        "NamespacePrefix",
        "ManageableState",
        "SharingModel",
        "ExternalSharingModel",
        "Description",
    ]);
    custom_object.extend(audit());
    let mut custom_field = strs(&[
        "DeveloperName",
        "TableEnumOrId",
        "NamespacePrefix",
        "ManageableState",
        "Description",
        "InlineHelpText",
    ]);
    custom_field.extend(audit());
    let mut rule = strs(&[
        "ValidationName",
        "EntityDefinitionId",
        "NamespacePrefix",
        "ManageableState",
        "Description",
        "ErrorDisplayField",
        "ErrorMessage",
    ]);
    rule.push(fd("Active", "boolean"));
    rule.extend(audit());
    let mut flow = strs(&[
        "ApiName",
        "DurableId",
        "Label",
        "Description",
        "ProcessType",
        "TriggerType",
        "TriggerObjectOrEventId",
        "ActiveVersionId",
        "LatestVersionId",
        "NamespacePrefix",
        "ManageableState",
    ]);
    flow.extend([
        fd("IsActive", "boolean"),
        fd("IsTemplate", "boolean"),
        fd("LastModifiedDate", "datetime"),
        fd("LastModifiedBy", "string"),
    ]);
    let mut entity = strs(&[
        "DurableId",
        "QualifiedApiName",
        "DeveloperName",
        "Label",
        "PluralLabel",
        "KeyPrefix",
        "NamespacePrefix",
        "MasterLabel",
    ]);
    entity.extend([
        fd("IsCustomizable", "boolean"),
        fd("IsQueryable", "boolean"),
        fd("IsCustomSetting", "boolean"),
        fd("IsApexTriggerable", "boolean"),
        fd("IsEverCreatable", "boolean"),
        fd("IsEverUpdatable", "boolean"),
        fd("IsEverDeletable", "boolean"),
    ]);
    let mut field = strs(&[
        "DurableId",
        "QualifiedApiName",
        "DeveloperName",
        "Label",
        "MasterLabel",
        "DataType",
        "ValueTypeId",
        "NamespacePrefix",
        "RelationshipName",
        "ReferenceTo",
    ]);
    field.extend([
        reference("EntityDefinitionId", "EntityDefinition", "EntityDefinition"),
        fd("Length", "int"),
        fd("Precision", "int"),
        fd("Scale", "int"),
        fd("IsNillable", "boolean"),
        fd("IsIndexed", "boolean"),
        fd("IsCalculated", "boolean"),
        fd("IsApiFilterable", "boolean"),
        fd("IsApiSortable", "boolean"),
        fd("IsNameField", "boolean"),
    ]);
    let objs = vec![
        object("ApexClass", "Apex Classes", "01p", apex_class),
        object("ApexTrigger", "Apex Triggers", "01q", trigger),
        object("CustomObject", "Custom Objects", "01I", custom_object),
        object("CustomField", "Custom Fields", "00N", custom_field),
        object("ValidationRule", "Validation Rules", "03d", rule),
        object("FlowDefinitionView", "Flow Definitions", "300", flow),
        object("EntityDefinition", "Entity Definitions", "0Ed", entity),
        object("FieldDefinition", "Field Definitions", "0Fd", field),
    ];
    let mut s = Schema::standard();
    s.objects.clear();
    s.by_name.clear();
    s.by_prefix.clear();
    for o in objs {
        s.by_name
            .insert(o.name.to_ascii_lowercase(), s.objects.len());
        s.by_prefix.insert(o.key_prefix.clone(), s.objects.len());
        s.objects.push(o);
    }
    s
}

fn put(org: &mut Org, obj: &str, vals: &[(&str, Val)], ctx: WriteCtx) -> Option<String> {
    let o = org.obj(obj)?;
    let def = org.def(o);
    let pairs: Vec<(usize, Val)> = vals
        .iter()
        .filter_map(|(k, v)| def.field(k).map(|c| (c, v.clone())))
        .collect();
    org.insert_prepared(o, pairs, ctx).ok()
}

fn s(v: &str) -> Val {
    Val::str(v)
}

fn data_type(f: &FieldDef, kind: Kind) -> String {
    match kind {
        Kind::Id => "Lookup()".into(),
        Kind::Reference => format!("Lookup({})", f.reference_to.join(",")),
        Kind::Text if f.field_type == "textarea" => format!("Text Area({})", f.length),
        Kind::Text => format!("Text({})", f.length),
        Kind::Picklist => "Picklist".into(),
        Kind::MultiPicklist => "Picklist (Multi-Select)".into(),
        Kind::Bool => "Checkbox".into(),
        Kind::Int => format!("Number({}, 0)", f.digits.max(9)),
        Kind::Double if f.field_type == "percent" => {
            format!("Percent({}, {})", f.precision - f.scale, f.scale)
        }
        Kind::Double => format!("Number({}, {})", f.precision - f.scale, f.scale),
        Kind::Currency => format!("Currency({}, {})", f.precision - f.scale, f.scale),
        Kind::Date => "Date".into(),
        Kind::DateTime => "Date/Time".into(),
        Kind::Time => "Time".into(),
        Kind::Address => "Address".into(),
        Kind::Location => "Geolocation".into(),
    }
}

/// Builds the Tooling org for the main org's current metadata.
fn build(main: &Org, now: i64) -> Org {
    let mut org = Org::new(tooling_schema(), main.pod);
    org.user_id = main.user_id.clone();
    org.org_id = main.org_id.clone();
    let demo_ts = parse_datetime("2024-01-15T10:30:00.000Z").unwrap_or(now);
    let ctx = WriteCtx { now: demo_ts };
    let classes = [
        (
            "AccountService",
            "public with sharing class AccountService {\n    public static List<Account> byIndustry(String industry) {\n        return [SELECT Id, Name FROM Account WHERE Industry = :industry];\n    }\n}",
        ),
        (
            "ContactTriggerHandler",
            "public class ContactTriggerHandler {\n    public static void beforeInsert(List<Contact> contacts) {\n        for (Contact c : contacts) {\n            if (c.LeadSource == null) c.LeadSource = 'Web';\n        }\n    }\n}",
        ),
        (
            "AccountServiceTest",
            "@IsTest\nprivate class AccountServiceTest {\n    @IsTest static void byIndustry() {\n        insert new Account(Name = 'Acme', Industry = 'Energy');\n        System.assertEquals(1, AccountService.byIndustry('Energy').size());\n    }\n}",
        ),
    ];
    for (name, body) in classes {
        put(
            &mut org,
            "ApexClass",
            &[
                ("Name", s(name)),
                ("Status", s("Active")),
                ("ManageableState", s("unmanaged")),
                ("ApiVersion", Val::Num(59.0)),
                ("IsValid", Val::Bool(true)),
                ("Body", s(body)),
                ("BodyCrc", Val::Num(f64::from(crc(body)))),
                ("LengthWithoutComments", Val::Int(body.len() as i64)),
            ],
            ctx,
        );
    }
    let trigger = "trigger ContactTrigger on Contact (before insert) {\n    ContactTriggerHandler.beforeInsert(Trigger.new);\n}";
    put(
        &mut org,
        "ApexTrigger",
        &[
            ("Name", s("ContactTrigger")),
            ("TableEnumOrId", s("Contact")),
            ("Status", s("Active")),
            ("ManageableState", s("unmanaged")),
            ("ApiVersion", Val::Num(59.0)),
            ("IsValid", Val::Bool(true)),
            ("Body", s(trigger)),
            ("LengthWithoutComments", Val::Int(trigger.len() as i64)),
            ("UsageBeforeInsert", Val::Bool(true)),
            ("UsageAfterInsert", Val::Bool(false)),
            ("UsageBeforeUpdate", Val::Bool(false)),
            ("UsageAfterUpdate", Val::Bool(false)),
            ("UsageBeforeDelete", Val::Bool(false)),
            ("UsageAfterDelete", Val::Bool(false)),
            ("UsageAfterUndelete", Val::Bool(false)),
            ("UsageIsBulk", Val::Bool(true)),
        ],
        ctx,
    );
    let rules = [
        (
            "Account_Name_Not_Test",
            "Account",
            "Name",
            "Account names may not start with TEST",
        ),
        (
            "Contact_Email_Or_Phone",
            "Contact",
            "",
            "A contact needs an email address or a phone number",
        ),
    ];
    for (name, entity, field, msg) in rules {
        put(
            &mut org,
            "ValidationRule",
            &[
                ("ValidationName", s(name)),
                ("EntityDefinitionId", s(entity)),
                ("ManageableState", s("unmanaged")),
                ("Active", Val::Bool(true)),
                (
                    "ErrorDisplayField",
                    if field.is_empty() {
                        Val::Null
                    } else {
                        s(field)
                    },
                ),
                ("ErrorMessage", s(msg)),
            ],
            ctx,
        );
    }
    let flows = [
        (
            "Opportunity_Close_Notification",
            "Opportunity Close Notification",
            "AutoLaunchedFlow",
            "RecordAfterSave",
            "Opportunity",
            true,
        ),
        (
            "Lead_Assignment",
            "Lead Assignment",
            "AutoLaunchedFlow",
            "RecordBeforeSave",
            "Lead",
            true,
        ),
        (
            "Case_Intake_Screen",
            "Case Intake Screen",
            "Flow",
            "",
            "",
            false,
        ),
    ];
    for (i, (api, label, ptype, trig, on, active)) in flows.into_iter().enumerate() {
        let vid = ids::to18(&ids::make15("301", main.pod, i as u64 + 1));
        let did = ids::to18(&ids::make15("300", main.pod, i as u64 + 1));
        put(
            &mut org,
            "FlowDefinitionView",
            &[
                ("ApiName", s(api)),
                ("DurableId", s(&did)),
                ("Label", s(label)),
                ("ProcessType", s(ptype)),
                (
                    "TriggerType",
                    if trig.is_empty() { Val::Null } else { s(trig) },
                ),
                (
                    "TriggerObjectOrEventId",
                    if on.is_empty() { Val::Null } else { s(on) },
                ),
                ("ActiveVersionId", if active { s(&vid) } else { Val::Null }),
                ("LatestVersionId", s(&vid)),
                ("ManageableState", s("unmanaged")),
                ("IsActive", Val::Bool(active)),
                ("IsTemplate", Val::Bool(false)),
                ("LastModifiedDate", Val::DateTime(demo_ts)),
                ("LastModifiedBy", s("Admin User")),
            ],
            ctx,
        );
    }
    let ctx = WriteCtx { now };
    let mut custom_ids: HashMap<String, String> = HashMap::new();
    for o in main.schema.objects.iter().filter(|o| o.custom) {
        if let Some(id) = put(
            &mut org,
            "CustomObject",
            &[
                ("DeveloperName", s(o.name.trim_end_matches("__c"))),
                ("ManageableState", s("unmanaged")),
                ("SharingModel", s("ReadWrite")),
                ("ExternalSharingModel", s("Private")),
            ],
            ctx,
        ) {
            custom_ids.insert(o.name.clone(), id);
        }
    }
    for o in &main.schema.objects {
        let entity_id = put(
            &mut org,
            "EntityDefinition",
            &[
                ("DurableId", s(&o.name)),
                ("QualifiedApiName", s(&o.name)),
                ("DeveloperName", s(o.name.trim_end_matches("__c"))),
                ("Label", s(&o.label)),
                ("MasterLabel", s(&o.label)),
                ("PluralLabel", s(&o.label_plural)),
                ("KeyPrefix", s(&o.key_prefix)),
                ("IsCustomizable", Val::Bool(true)),
                ("IsQueryable", Val::Bool(true)),
                ("IsCustomSetting", Val::Bool(false)),
                ("IsApexTriggerable", Val::Bool(o.createable)),
                ("IsEverCreatable", Val::Bool(o.createable)),
                ("IsEverUpdatable", Val::Bool(o.createable)),
                ("IsEverDeletable", Val::Bool(o.createable)),
            ],
            ctx,
        );
        for (i, f) in o.fields.iter().enumerate() {
            let kind = o.kinds[i];
            if let Some(eid) = &entity_id {
                put(
                    &mut org,
                    "FieldDefinition",
                    &[
                        ("DurableId", s(&format!("{}.{}", o.name, f.name))),
                        ("QualifiedApiName", s(&f.name)),
                        ("DeveloperName", s(f.name.trim_end_matches("__c"))),
                        ("Label", s(&f.label)),
                        ("MasterLabel", s(&f.label)),
                        ("DataType", s(&data_type(f, kind))),
                        ("ValueTypeId", s(&f.field_type)),
                        (
                            "RelationshipName",
                            f.relationship_name.as_deref().map_or(Val::Null, s),
                        ),
                        (
                            "ReferenceTo",
                            if f.reference_to.is_empty() {
                                Val::Null
                            } else {
                                s(&f.reference_to.join(","))
                            },
                        ),
                        (
                            "EntityDefinitionId",
                            Val::Str(ids::to15(eid).unwrap_or_default().into()),
                        ),
                        ("Length", Val::Int(f.length)),
                        ("Precision", Val::Int(f.precision)),
                        ("Scale", Val::Int(f.scale)),
                        ("IsNillable", Val::Bool(f.nillable)),
                        ("IsIndexed", Val::Bool(f.external_id || f.unique || i == 0)),
                        ("IsCalculated", Val::Bool(f.calculated)),
                        ("IsApiFilterable", Val::Bool(f.filterable)),
                        ("IsApiSortable", Val::Bool(f.sortable)),
                        ("IsNameField", Val::Bool(f.name_field)),
                    ],
                    ctx,
                );
            }
            if f.custom {
                let table = custom_ids
                    .get(&o.name)
                    .cloned()
                    .unwrap_or_else(|| o.name.clone());
                put(
                    &mut org,
                    "CustomField",
                    &[
                        ("DeveloperName", s(f.name.trim_end_matches("__c"))),
                        ("TableEnumOrId", s(&table)),
                        ("ManageableState", s("unmanaged")),
                        (
                            "InlineHelpText",
                            f.inline_help_text.as_deref().map_or(Val::Null, s),
                        ),
                    ],
                    ctx,
                );
            }
        }
    }
    org
}

fn crc(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// `/services/data/vXX.X/sobjects/` → `/services/data/vXX.X/tooling/sobjects/` in urls.
fn tooling_urls(j: &mut Json, v: &str) {
    let from = format!("/services/data/v{v}/sobjects");
    let to = format!("/services/data/v{v}/tooling/sobjects");
    match j {
        Json::String(s) if s.starts_with(&from) => *s = s.replacen(&from, &to, 1),
        Json::Array(a) => a.iter_mut().for_each(|x| tooling_urls(x, v)),
        Json::Object(m) => m.values_mut().for_each(|x| tooling_urls(x, v)),
        _ => {}
    }
}

/// Handles `/tooling/...` (segments after `tooling`).
pub fn handle(
    st: &Arc<AppState>,
    method: &Method,
    segs: &[&str],
    v: &str,
    query: &str,
    headers: &HeaderMap,
) -> Reply {
    if *method != Method::GET && *method != Method::HEAD {
        return Reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            &format!("HTTP Method '{method}' not allowed. Allowed are GET,HEAD"),
        );
    }
    match segs {
        [] => Reply::json(
            StatusCode::OK,
            json!({
                "sobjects": format!("/services/data/v{v}/tooling/sobjects"),
                "query": format!("/services/data/v{v}/tooling/query"),
            }),
        ),
        ["sobjects"] => {
            let org = build(&st.org(), st.clock.now_ms());
            let mut j = crate::describe::global(&org, v);
            tooling_urls(&mut j, v);
            Reply::json(StatusCode::OK, j)
        }
        ["sobjects", name, "describe"] | ["sobjects", name] => {
            let org = build(&st.org(), st.clock.now_ms());
            let Some(obj) = org.obj(name) else {
                return Reply::error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "The requested resource does not exist",
                );
            };
            let mut j = if segs.len() == 3 {
                crate::describe::describe(&org, obj, v)
            } else {
                json!({"objectDescribe": crate::describe::global_entry(&org, org.def(obj), v), "recentItems": []})
            };
            tooling_urls(&mut j, v);
            Reply::json(StatusCode::OK, j)
        }
        ["sobjects", name, id] => {
            let org = build(&st.org(), st.clock.now_ms());
            let Some(obj) = org.obj(name) else {
                return crate::http::not_found();
            };
            let Some(row) = org.find(obj, id) else {
                return crate::http::not_found();
            };
            let def = org.def(obj);
            let now = st.clock.now_ms();
            let id18 = org
                .row(obj, row)
                .id_opt()
                .map(ids::to18)
                .unwrap_or_default();
            let mut m = Map::new();
            m.insert(
                "attributes".into(),
                json!({"type": def.name, "url": format!("/services/data/v{v}/tooling/sobjects/{}/{id18}", def.name)}),
            );
            for (c, f) in def.fields.iter().enumerate() {
                m.insert(
                    f.name.clone(),
                    crate::query::render_val(&org.value(obj, row, c, now), def.kinds[c]),
                );
            }
            Reply::json(StatusCode::OK, Json::Object(m))
        }
        ["query"] => run(st, query, v, page_size(headers)),
        ["query", locator] => more(locator, v),
        _ => crate::http::not_found(),
    }
}

/// `Sforce-Query-Options: batchSize=N` (200..2000, default 2000), as for `/query`.
fn page_size(headers: &HeaderMap) -> usize {
    headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split([';', ',']).find_map(|kv| {
                kv.trim()
                    .strip_prefix("batchSize=")
                    .and_then(|n| n.trim().parse::<usize>().ok())
            })
        })
        .map_or(PAGE, |n| n.clamp(200, PAGE))
}

fn run(st: &AppState, query: &str, v: &str, batch: usize) -> Reply {
    let p = crate::auth::params(query.as_bytes());
    let Some(q) = p
        .iter()
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.clone())
        .filter(|q| !q.trim().is_empty())
    else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "A query string has to be specified",
        );
    };
    let ast = match ferry_soql::parse(&q) {
        Ok(a) => a,
        Err(e) => return Reply::error(StatusCode::BAD_REQUEST, e.error_code(), &e.message),
    };
    if ast.from.object.eq_ignore_ascii_case("FieldDefinition") {
        let lower = q.to_ascii_lowercase();
        let filtered = lower
            .split_once(" where ")
            .is_some_and(|(_, w)| w.contains("entitydefinition") || w.contains("durableid"));
        if !filtered {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "MALFORMED_QUERY",
                "FieldDefinition: a filter on a reified column is required [EntityDefinitionId,DurableId]",
            );
        }
    }
    let now = st.clock.now_ms();
    let org = build(&st.org(), now);
    let outcome = match crate::query::run(&org, &ast, &q, false, now) {
        Ok(o) => o,
        Err(e) => return Reply::error(StatusCode::BAD_REQUEST, e.error_code(), &e.message),
    };
    let (entity, records): (String, Vec<Json>) = match outcome {
        crate::query::Outcome::Count(n) => {
            return Reply::json(
                StatusCode::OK,
                json!({"size": n, "totalSize": n, "done": true, "queryLocator": null, "entityTypeName": org.obj(&ast.from.object).map(|o| org.def(o).name.clone()), "records": []}),
            );
        }
        crate::query::Outcome::Aggregate(rows) => ("AggregateResult".into(), rows),
        crate::query::Outcome::Rows { obj, plan, rows } => (
            org.def(obj).name.clone(),
            rows.iter()
                .map(|r| {
                    let mut j = crate::query::render(&org, &plan, obj, *r, now, v);
                    tooling_urls(&mut j, v);
                    j
                })
                .collect(),
        ),
    };
    if records.len() > batch && NO_QUERY_MORE.contains(&entity.as_str()) {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "EXCEEDED_ID_LIMIT",
            &format!(
                "{entity} does not support queryMore(), use LIMIT to restrict the results to a single batch"
            ),
        );
    }
    let records = Arc::new(records);
    page(entity, records, 0, v, None, batch)
}

fn page(
    entity: String,
    records: Arc<Vec<Json>>,
    offset: usize,
    v: &str,
    locator: Option<String>,
    batch: usize,
) -> Reply {
    let total = records.len();
    let end = (offset + batch).min(total);
    let slice: Vec<Json> = records[offset.min(total)..end].to_vec();
    let mut m = Map::new();
    m.insert("size".into(), json!(slice.len()));
    m.insert("totalSize".into(), json!(total));
    m.insert("done".into(), json!(end >= total));
    if end < total {
        let id = locator.unwrap_or_else(|| {
            let mut c = crate::bulk::lock(cursors());
            let id = ids::to18(&ids::make15("01g", 'T', c.len() as u64 + 1 + rand_seq()));
            if c.len() >= 200 {
                c.clear();
            }
            c.insert(
                id.clone(),
                ToolingCursor {
                    entity: entity.clone(),
                    records: records.clone(),
                    batch,
                },
            );
            id
        });
        let loc = format!("{id}-{end}");
        m.insert("queryLocator".into(), json!(loc));
        m.insert(
            "nextRecordsUrl".into(),
            json!(format!("/services/data/v{v}/tooling/query/{loc}")),
        );
    } else {
        m.insert("queryLocator".into(), Json::Null);
    }
    m.insert("entityTypeName".into(), json!(entity));
    m.insert("records".into(), Json::Array(slice));
    Reply::json(StatusCode::OK, Json::Object(m))
}

fn rand_seq() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(1);
    SEQ.fetch_add(1, Ordering::Relaxed) * 1000
}

fn more(locator: &str, v: &str) -> Reply {
    let bad = || {
        Reply::error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        )
    };
    let Some((id, off)) = locator.rsplit_once('-') else {
        return bad();
    };
    let Ok(off) = off.parse::<usize>() else {
        return bad();
    };
    let (entity, records, batch) = {
        let c = crate::bulk::lock(cursors());
        let Some(cur) = c.get(id) else { return bad() };
        (cur.entity.clone(), cur.records.clone(), cur.batch)
    };
    if off > records.len() {
        return bad();
    }
    page(entity, records, off, v, Some(id.to_string()), batch)
}
