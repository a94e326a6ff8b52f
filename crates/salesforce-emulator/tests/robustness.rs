//! External input never panics the emulator: arbitrary record bodies through the write
//! path, arbitrary paths, methods and bodies through the router.

mod common;

use common::Emu;
use ferry_salesforce_emulator::Seed;
use ferry_salesforce_emulator::seed::base_org;
use ferry_salesforce_emulator::store::WriteCtx;
use proptest::prelude::*;
use serde_json::{Map, Value as Json};

fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)),
        "[ -~]{0,300}".prop_map(Json::String),
        "(2024-0[1-9]-[0-3][0-9](T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](Z|[+-][0-9]{2}:?[0-9]{2})?)?)"
            .prop_map(Json::String),
        "(001|003|00Q|005)[A-Za-z0-9]{12,15}".prop_map(Json::String),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Json::Array),
            prop::collection::btree_map("[A-Za-z_]{1,12}", inner, 0..3)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: &[&str] = &[
    "Name",
    "LastName",
    "FirstName",
    "Company",
    "AccountId",
    "Account",
    "ReportsToId",
    "Email",
    "Birthdate",
    "AnnualRevenue",
    "NumberOfEmployees",
    "Industry",
    "Status",
    "IsConverted",
    "CreatedDate",
    "CurrencyIsoCode",
    "Id",
    "Bogus__c",
    "Description",
    "BillingAddress",
    "OwnerId",
    "StageName",
    "CloseDate",
    "Amount",
    "Probability",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_records_never_panic(
        object in prop::sample::select(vec!["Account", "Contact", "Lead", "Opportunity", "User", "Organization", "CurrencyType"]),
        fields in prop::collection::vec((prop::sample::select(FIELDS.to_vec()), json_value()), 0..8),
    ) {
        let mut org = base_org("admin@ferry.local", 1_700_000_000_000);
        let obj = org.obj(object).unwrap_or(0);
        let body: Map<String, Json> = fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let ctx = WriteCtx { now: 1_700_000_000_000 };
        if let Ok(id) = org.insert(obj, &body, ctx) {
            let row = org.find(obj, &id).unwrap_or(0);
            let _ = org.update(obj, row, &body, ctx);
            let _ = org.delete(obj, row, ctx);
        }
        let _ = org.upsert(obj, 0, &Json::Null, &body, ctx);
    }
}

#[tokio::test]
async fn arbitrary_requests_never_panic() {
    let e = Emu::new(Seed::Demo).await;
    let paths = [
        "/services/data/v59.0/sobjects/Account/",
        "/services/data/v59.0/sobjects/Account/Name/x",
        "/services/data/v59.0/sobjects/Account/001/",
        "/services/data/v59.0/sobjects/Account/deleted/?start=x&end=y",
        "/services/data/v59.0/query/?q=SELECT",
        "/services/data/v59.0/query/01gXXXX-99999999999999999999",
        "/services/data/v59.0/composite/sobjects?ids=,,,&allOrNone=maybe",
        "/services/data/v59.0/composite/sobjects/Account/Name",
        "/services/data/v59.0/composite/batch",
        "/services/data/v59.0/composite",
        "/services/data/v9999999999999999999.0/",
        "/services/oauth2/token?grant_type=authorization_code&code=",
        "/services/oauth2/authorize?redirect_uri=%zz",
        "/services/Soap/u/59.0",
        "/id/x/y/z",
        "/__emulator/records/Nope",
        "/__emulator/generate/Account",
        "/__emulator/clock",
        "/__emulator/faults",
        "/%ff%fe",
    ];
    let bodies: [&[u8]; 6] = [b"", b"{", b"[]", b"null", b"{\"records\":[{\"attributes\":{}}],\"batchRequests\":[{\"url\":\"//\"}],\"compositeRequest\":[{\"url\":\"@{x.y}\"}]}", b"\xff\xfe<"];
    for p in paths {
        for m in ["GET", "POST", "PATCH", "DELETE", "PUT"] {
            for b in bodies {
                let auth = format!("Bearer {}", e.token);
                let r = e
                    .send(
                        m,
                        p,
                        &[
                            ("authorization", &auth),
                            ("content-type", "application/json"),
                        ],
                        b.to_vec(),
                    )
                    .await;
                assert!(r.status.as_u16() >= 200, "{m} {p}");
            }
        }
    }
}
