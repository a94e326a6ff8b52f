//! Initial data: the base org (Organization record, API user, corporate currency), the
//! `demo` seed, and seed files.

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use crate::schema::{CustomFieldSpec, CustomObjectSpec, Schema};
use crate::store::{ConvertLead, Org, WriteCtx, WriteError};
use crate::value::{Val, format_date, ms_to_days};

/// Errors loading seed data.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// File could not be read.
    #[error("cannot read seed file {path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// File is not valid JSON of the expected shape.
    #[error("invalid seed file: {0}")]
    Json(#[from] serde_json::Error),
    /// A schema definition failed.
    #[error("seed schema: {0}")]
    Schema(#[from] crate::schema::SchemaError),
    /// A record failed to insert.
    #[error("seed record {object}[{index}]: {code}: {message}")]
    Record {
        /// Object.
        object: String,
        /// Position in the file.
        index: usize,
        /// Error code.
        code: String,
        /// Message.
        message: String,
    },
}

fn set(org: &Org, obj: usize, vals: &[(&str, Val)]) -> Vec<(usize, Val)> {
    vals.iter()
        .filter_map(|(n, v)| org.def(obj).field(n).map(|c| (c, v.clone())))
        .collect()
}

/// A fresh org: standard objects, the Organization row, the API user and USD.
pub fn base_org(username: &str, now: i64) -> Org {
    let mut org = Org::new(Schema::standard(), 'A');
    let ctx = WriteCtx { now };
    if let Some(o) = org.obj("Organization") {
        let p = set(
            &org,
            o,
            &[
                ("Name", Val::str("Ferry Emulator")),
                ("Country", Val::str("US")),
                ("DefaultLocaleSidKey", Val::str("en_US")),
                ("TimeZoneSidKey", Val::str("GMT")),
                ("LanguageLocaleKey", Val::str("en_US")),
                ("FiscalYearStartMonth", Val::Int(1)),
                ("OrganizationType", Val::str("Developer Edition")),
                ("InstanceName", Val::str("EMU1")),
                ("IsSandbox", Val::Bool(false)),
                ("DefaultCurrencyIsoCode", Val::str("USD")),
            ],
        );
        let _ = org.insert_prepared(o, p, ctx);
    }
    if let Some(c) = org.obj("CurrencyType") {
        let p = set(
            &org,
            c,
            &[
                ("IsoCode", Val::str("USD")),
                ("ConversionRate", Val::Num(1.0)),
                ("DecimalPlaces", Val::Int(2)),
                ("IsActive", Val::Bool(true)),
                ("IsCorporate", Val::Bool(true)),
            ],
        );
        let _ = org.insert_prepared(c, p, ctx);
    }
    if let Some(u) = org.obj("User") {
        let p = set(
            &org,
            u,
            &[
                ("Username", Val::str(username)),
                ("FirstName", Val::str("Admin")),
                ("LastName", Val::str("User")),
                (
                    "Email",
                    Val::str(if username.contains('@') {
                        username
                    } else {
                        "admin@ferry.local"
                    }),
                ),
                ("Alias", Val::str("admin")),
                ("IsActive", Val::Bool(true)),
                ("TimeZoneSidKey", Val::str("GMT")),
                ("LocaleSidKey", Val::str("en_US")),
                ("EmailEncodingKey", Val::str("UTF-8")),
                ("LanguageLocaleKey", Val::str("en_US")),
                ("UserType", Val::str("Standard")),
            ],
        );
        let _ = org.insert_prepared(u, p, ctx);
    }
    refresh_currencies(&mut org);
    org
}

/// Copies the active currencies into the `CurrencyIsoCode` picklists.
pub fn refresh_currencies(org: &mut Org) {
    let codes = org.active_currencies();
    let corp = codes.first().cloned().unwrap_or_default();
    let list: Vec<(String, bool)> = codes.into_iter().map(|c| (c.clone(), c == corp)).collect();
    org.schema.set_currencies(&list);
}

/// A seed file: custom schema plus records per object, inserted in file order through the
/// normal write path (so relationship references by external id work).
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct SeedFile {
    /// Custom objects to define.
    pub objects: Vec<CustomObjectSpec>,
    /// Custom fields to add to existing objects, by object name.
    pub fields: Map<String, Json>,
    /// Records by object name.
    pub records: Map<String, Json>,
}

/// Applies a seed file to an org.
pub fn apply_file(org: &mut Org, file: &SeedFile, ctx: WriteCtx) -> Result<usize, SeedError> {
    for o in &file.objects {
        org.schema.define_object(o)?;
    }
    for (obj, specs) in &file.fields {
        let specs: Vec<CustomFieldSpec> = serde_json::from_value(specs.clone())?;
        for s in &specs {
            org.schema.define_field(obj, s)?;
        }
    }
    org.sync_tables();
    refresh_currencies(org);
    let mut n = 0;
    for (obj_name, recs) in &file.records {
        let Some(obj) = org.obj(obj_name) else {
            return Err(SeedError::Record {
                object: obj_name.clone(),
                index: 0,
                code: "INVALID_TYPE".into(),
                message: format!("sObject type '{obj_name}' is not supported"),
            });
        };
        let list = recs.as_array().cloned().unwrap_or_default();
        for (i, r) in list.iter().enumerate() {
            let body = r.as_object().cloned().unwrap_or_default();
            org.insert(obj, &body, ctx).map_err(|e| {
                let first = e
                    .into_iter()
                    .next()
                    .unwrap_or(WriteError::new("UNKNOWN", "", vec![]));
                SeedError::Record {
                    object: obj_name.clone(),
                    index: i,
                    code: first.code.into(),
                    message: first.message,
                }
            })?;
            n += 1;
        }
        if obj_name.eq_ignore_ascii_case("CurrencyType") {
            refresh_currencies(org);
        }
    }
    Ok(n)
}

/// Small deterministic generator (xorshift) so the demo org is the same every time.
struct Gen(u64);
impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

const COMPANY_A: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Wonka",
    "Soylent",
    "Hooli",
    "Vandelay",
    "Cyberdyne",
    "Tyrell",
    "Aperture",
    "Massive",
    "Oscorp",
    "Pied Piper",
    "Gringotts",
    "Monarch",
    "Nakatomi",
    "Dunder",
];
const COMPANY_B: &[&str] = &[
    "Industries",
    "Corp",
    "Labs",
    "Systems",
    "Holdings",
    "Logistics",
    "Foods",
    "Energy",
    "Analytics",
    "Partners",
];
const FIRST: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "John",
    "Katherine",
    "Tim",
    "Radia",
    "Guido",
    "Anita",
    "Donald",
    "Edsger",
    "Hedy",
    "Niklaus",
    "Sophie",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "McCarthy",
    "Johnson",
    "Berners-Lee",
    "Perlman",
    "van Rossum",
    "Borg",
    "Knuth",
    "Dijkstra",
    "Lamarr",
    "Wirth",
    "Wilson",
];
const INDUSTRY: &[&str] = &[
    "Technology",
    "Manufacturing",
    "Finance",
    "Healthcare",
    "Retail",
    "Energy",
    "Education",
    "Media",
    "Transportation",
    "Hospitality",
];
const CITY: &[(&str, &str, &str)] = &[
    ("San Francisco", "CA", "USA"),
    ("New York", "NY", "USA"),
    ("Austin", "TX", "USA"),
    ("Chicago", "IL", "USA"),
    ("Paris", "", "France"),
    ("Berlin", "", "Germany"),
    ("London", "", "United Kingdom"),
    ("Madrid", "", "Spain"),
];
const STAGES: &[&str] = &[
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
];

/// Loads the demo data set: USD (corporate) and EUR with dated rates, 200 Accounts,
/// ~400 Contacts, 150 Leads (30 converted) and ~250 Opportunities.
pub fn demo(org: &mut Org, now: i64) -> Result<(), SeedError> {
    let ctx = WriteCtx { now };
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    let err = |object: &str| {
        let object = object.to_string();
        move |e: Vec<WriteError>| {
            let first = e
                .into_iter()
                .next()
                .unwrap_or(WriteError::new("UNKNOWN", "", vec![]));
            SeedError::Record {
                object: object.clone(),
                index: 0,
                code: first.code.into(),
                message: first.message,
            }
        }
    };
    if let Some(c) = org.obj("CurrencyType") {
        let p = set(
            org,
            c,
            &[
                ("IsoCode", Val::str("EUR")),
                ("ConversionRate", Val::Num(0.92)),
                ("DecimalPlaces", Val::Int(2)),
                ("IsActive", Val::Bool(true)),
                ("IsCorporate", Val::Bool(false)),
            ],
        );
        org.insert_prepared(c, p, ctx)
            .map_err(err("CurrencyType"))?;
    }
    refresh_currencies(org);
    let today = ms_to_days(now);
    if let Some(d) = org.obj("DatedConversionRate") {
        let periods = [
            (today - 3650, today - 180, 0.95),
            (today - 180, i32::MAX, 0.92),
        ];
        for (start, next, rate) in periods {
            let mut vals = vec![
                ("IsoCode", Val::str("EUR")),
                ("ConversionRate", Val::Num(rate)),
                ("StartDate", Val::Date(start)),
            ];
            if next != i32::MAX {
                vals.push(("NextStartDate", Val::Date(next)));
            }
            let p = set(org, d, &vals);
            org.insert_prepared(d, p, ctx)
                .map_err(err("DatedConversionRate"))?;
        }
    }
    let (Some(a), Some(c), Some(l), Some(o)) = (
        org.obj("Account"),
        org.obj("Contact"),
        org.obj("Lead"),
        org.obj("Opportunity"),
    ) else {
        return Ok(());
    };
    let mut accounts = Vec::new();
    for i in 0..200 {
        let (city, state, country) = CITY[(g.next() % CITY.len() as u64) as usize];
        let eur = country != "USA";
        let name = format!("{} {} {}", g.pick(COMPANY_A), g.pick(COMPANY_B), i + 1);
        let body = json!({
            "Name": name,
            "Industry": g.pick(INDUSTRY),
            "Type": g.pick(&["Prospect", "Customer - Direct", "Customer - Channel", "Partner"]),
            "AnnualRevenue": (g.range(5, 500) * 100_000) as f64,
            "NumberOfEmployees": g.range(5, 20_000),
            "BillingCity": city,
            "BillingState": if state.is_empty() { Json::Null } else { Json::String(state.into()) },
            "BillingCountry": country,
            "Phone": format!("+1 415 555 {:04}", g.range(0, 9999)),
            "Website": format!("https://www.{}.example", name.split(' ').next().unwrap_or("acme").to_lowercase()),
            "CurrencyIsoCode": if eur { "EUR" } else { "USD" },
            "Rating": g.pick(&["Hot", "Warm", "Cold"]),
        });
        let id = org
            .insert(a, body.as_object().unwrap_or(&Map::new()), ctx)
            .map_err(err("Account"))?;
        accounts.push((id, eur));
    }
    for (i, (acct, _)) in accounts.iter().enumerate() {
        for j in 0..(1 + (g.next() % 3)) {
            let first = g.pick(FIRST);
            let last = g.pick(LAST);
            let body = json!({
                "FirstName": first,
                "LastName": last,
                "AccountId": acct,
                "Email": format!("{}.{}{}{}@example.com", first.to_lowercase(), last.to_lowercase().replace(' ', ""), i, j),
                "Title": g.pick(&["CEO", "CTO", "VP Sales", "Buyer", "Engineer", "Analyst"]),
                "Phone": format!("+1 212 555 {:04}", g.range(0, 9999)),
                "LeadSource": g.pick(&["Web", "Phone Inquiry", "Partner Referral", "Other"]),
            });
            org.insert(c, body.as_object().unwrap_or(&Map::new()), ctx)
                .map_err(err("Contact"))?;
        }
        let n_opps = if i % 4 == 0 { 0 } else { 1 + g.next() % 2 };
        for k in 0..n_opps {
            let stage = g.pick(STAGES);
            let body = json!({
                "Name": format!("Deal {}-{}", i + 1, k + 1),
                "AccountId": acct,
                "StageName": stage,
                "Amount": (g.range(1, 250) * 1000) as f64,
                "Probability": match stage { "Closed Won" => 100, "Closed Lost" => 0, _ => g.range(10, 90) },
                "CloseDate": format_date(today + g.range(0, 240) as i32 - 120),
                "CurrencyIsoCode": if accounts[i].1 { "EUR" } else { "USD" },
                "LeadSource": g.pick(&["Web", "Phone Inquiry", "Partner Referral", "Other"]),
            });
            org.insert(o, body.as_object().unwrap_or(&Map::new()), ctx)
                .map_err(err("Opportunity"))?;
        }
    }
    let mut leads = Vec::new();
    for i in 0..150 {
        let first = g.pick(FIRST);
        let last = g.pick(LAST);
        let (city, _, country) = CITY[(g.next() % CITY.len() as u64) as usize];
        let body = json!({
            "FirstName": first,
            "LastName": last,
            "Company": format!("{} {}", g.pick(COMPANY_A), g.pick(COMPANY_B)),
            "Email": format!("{}.{}.lead{}@example.org", first.to_lowercase(), last.to_lowercase().replace(' ', ""), i),
            "Status": g.pick(&["Open - Not Contacted", "Working - Contacted", "Closed - Not Converted"]),
            "LeadSource": g.pick(&["Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"]),
            "Industry": g.pick(INDUSTRY),
            "City": city,
            "Country": country,
        });
        leads.push(
            org.insert(l, body.as_object().unwrap_or(&Map::new()), ctx)
                .map_err(err("Lead"))?,
        );
    }
    for (i, lead) in leads.iter().enumerate().filter(|(i, _)| i % 5 == 0) {
        let req = ConvertLead {
            lead_id: lead.clone(),
            do_not_create_opportunity: i % 10 == 0,
            ..ConvertLead::default()
        };
        org.convert_lead(&req, ctx).map_err(|e| SeedError::Record {
            object: "Lead".into(),
            index: i,
            code: e.code.into(),
            message: e.message,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_deterministic_and_complete() {
        let now = 1_900_000_000_000;
        let mut a = base_org("admin@ferry.local", now);
        let mut b = base_org("admin@ferry.local", now);
        assert!(demo(&mut a, now).is_ok());
        assert!(demo(&mut b, now).is_ok());
        for name in [
            "Account",
            "Contact",
            "Lead",
            "Opportunity",
            "CurrencyType",
            "DatedConversionRate",
        ] {
            let o = a.obj(name).unwrap_or(0);
            assert!(!a.tables[o].rows.is_empty(), "{name}");
            assert_eq!(a.tables[o].rows.len(), b.tables[o].rows.len(), "{name}");
        }
        assert_eq!(
            a.active_currencies(),
            vec!["USD".to_string(), "EUR".to_string()]
        );
        let lead = a.obj("Lead").unwrap_or(0);
        let conv = a.def(lead).field("IsConverted").unwrap_or(0);
        assert_eq!(
            a.tables[lead]
                .rows
                .iter()
                .filter(|r| r.is_true(conv))
                .count(),
            30
        );
    }

    #[test]
    fn seed_file_errors_name_the_record() {
        let mut org = base_org("admin@ferry.local", 0);
        let file: SeedFile =
            serde_json::from_value(json!({"records": {"Account": [{"Name": "ok"}, {"Bogus": 1}]}}))
                .unwrap_or_default();
        let err = apply_file(&mut org, &file, WriteCtx { now: 0 })
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("Account[1]") && err.contains("INVALID_FIELD"),
            "{err}"
        );
    }
}
