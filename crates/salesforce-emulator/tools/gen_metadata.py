#!/usr/bin/env python3
"""Generate src/metadata/standard.json from the recorded describes.

Usage: python3 tools/gen_metadata.py /path/to/salesforce-recordings > src/metadata/standard.json

Recorded objects (Account, Contact, Lead) keep every standard field of the real describe;
org-specific custom fields of the recording org (`__c`) are dropped. Objects without a
recording (Opportunity, User, Organization, CurrencyType, DatedConversionRate) are written
by hand below in the same compact shape. Only keys whose value is not false/null/0/[] are
stored; the emulator fills the rest with those defaults.
"""
import json, sys, yaml

SRC = sys.argv[1]

def compact(f):
    out = {}
    for k, v in f.items():
        if v in (None, False, 0, [], ""):
            continue
        if k == "picklistValues":
            v = [{kk: vv for kk, vv in p.items() if kk in ("active", "defaultValue", "label", "value")} for p in v]
        out[k] = v
    return out

def load(name):
    d = yaml.safe_load(open(f"{SRC}/GET_sobjects_{name}_describe.yaml"))
    return json.loads(d["response"]["body"]["string"])

objects = []
for name in ["Account", "Contact", "Lead"]:
    b = load(name)
    fields = [compact(f) for f in b["fields"] if not f["name"].endswith("__c")]
    # recording-org specifics: record types other than Master are not modelled
    objects.append({"name": name, "label": b["label"], "labelPlural": b["labelPlural"],
                    "keyPrefix": b["keyPrefix"], "fields": fields})

acct = {f["name"]: f for f in objects[0]["fields"]}

SOAP = {"id": "tns:ID", "reference": "tns:ID", "string": "xsd:string", "textarea": "xsd:string",
        "picklist": "xsd:string", "multipicklist": "xsd:string", "email": "xsd:string",
        "phone": "xsd:string", "url": "xsd:string", "combobox": "xsd:string",
        "boolean": "xsd:boolean", "int": "xsd:int", "double": "xsd:double",
        "currency": "xsd:double", "percent": "xsd:double", "date": "xsd:date",
        "datetime": "xsd:dateTime", "time": "xsd:time", "address": "urn:address"}

def fld(name, typ, label, **kw):
    f = {"name": name, "type": typ, "label": label, "soapType": SOAP[typ], "filterable": True,
         "nillable": True, "createable": True, "updateable": True, "permissionable": True}
    if typ not in ("textarea", "multipicklist", "address"):
        f["sortable"] = True
        f["groupable"] = typ not in ("double", "currency", "percent", "datetime")
    if typ in ("string", "picklist", "email", "phone", "url", "textarea", "multipicklist", "combobox"):
        f["length"] = kw.pop("length", 255)
        f["byteLength"] = f["length"] * 3
    if typ in ("id", "reference"):
        f["length"] = 18
        f["byteLength"] = 18
    if typ in ("double", "currency", "percent"):
        f["precision"] = kw.pop("precision", 18)
        f["scale"] = kw.pop("scale", 2)
    if typ == "int":
        f["digits"] = kw.pop("digits", 9)
    if typ != "textarea":
        f["aggregatable"] = True
    if typ == "picklist" or typ == "multipicklist":
        vals = kw.pop("values", [])
        default = kw.pop("default", None)
        f["picklistValues"] = [dict({"active": True, "label": v, "value": v}, **({"defaultValue": True} if v == default else {})) for v in vals]
    if typ == "address":
        f["filterable"] = False; f["createable"] = False; f["updateable"] = False
        f["groupable"] = False; f["permissionable"] = False
    f.update(kw)
    return {k: v for k, v in f.items() if v not in (None, False, 0, [], "")}

def system(label_id):
    out = []
    for n in ["Id", "IsDeleted"]:
        f = dict(acct[n]); 
        if n == "Id": f["label"] = label_id
        out.append(f)
    return out

def audit():
    return [dict(acct[n]) for n in ["CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp"]]

def owner():
    return [dict(acct["OwnerId"])]

CUR = fld("CurrencyIsoCode", "picklist", "Currency ISO Code", length=3, restrictedPicklist=True,
          defaultedOnCreate=True, values=["USD"], default="USD")

opp = system("Opportunity ID") + [
    fld("AccountId", "reference", "Account ID", referenceTo=["Account"], relationshipName="Account"),
    fld("IsPrivate", "boolean", "Private", nillable=False, defaultedOnCreate=True, groupable=True),
    fld("Name", "string", "Name", length=120, nillable=False, nameField=True, idLookup=True),
    fld("Description", "textarea", "Description", length=32000, extraTypeInfo="plaintextarea"),
    fld("StageName", "picklist", "Stage", nillable=False, values=["Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Id. Decision Makers", "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review", "Closed Won", "Closed Lost"]),
    fld("Amount", "currency", "Amount", precision=18, scale=2),
    fld("Probability", "percent", "Probability (%)", precision=3, scale=0),
    fld("ExpectedRevenue", "currency", "Expected Amount", precision=18, scale=2, createable=False, updateable=False, calculated=True),
    fld("TotalOpportunityQuantity", "double", "Quantity", precision=18, scale=2),
    fld("CloseDate", "date", "Close Date", nillable=False),
    fld("Type", "picklist", "Opportunity Type", values=["Existing Customer - Upgrade", "Existing Customer - Replacement", "Existing Customer - Downgrade", "New Customer"]),
    fld("NextStep", "string", "Next Step"),
    fld("LeadSource", "picklist", "Lead Source", values=["Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"]),
    fld("IsClosed", "boolean", "Closed", createable=False, updateable=False, nillable=False, defaultedOnCreate=True),
    fld("IsWon", "boolean", "Won", createable=False, updateable=False, nillable=False, defaultedOnCreate=True),
    fld("ForecastCategory", "picklist", "Forecast Category", createable=False, updateable=False, nillable=False, defaultedOnCreate=True, values=["Omitted", "Pipeline", "BestCase", "Forecast", "Closed"]),
    fld("ForecastCategoryName", "picklist", "Forecast Category", values=["Omitted", "Pipeline", "Best Case", "Commit", "Closed"]),
    CUR,
    fld("CampaignId", "reference", "Campaign ID", referenceTo=["Campaign"], relationshipName="Campaign"),
    fld("HasOpportunityLineItem", "boolean", "Has Line Item", createable=False, updateable=False, nillable=False, defaultedOnCreate=True),
    fld("Pricebook2Id", "reference", "Price Book ID", referenceTo=["Pricebook2"], relationshipName="Pricebook2"),
] + owner() + audit() + [
    fld("LastActivityDate", "date", "Last Activity", createable=False, updateable=False),
    fld("FiscalQuarter", "int", "Fiscal Quarter", createable=False, updateable=False, digits=1),
    fld("FiscalYear", "int", "Fiscal Year", createable=False, updateable=False, digits=4),
    fld("Fiscal", "string", "Fiscal Period", length=6, createable=False, updateable=False),
    fld("ContactId", "reference", "Contact ID", referenceTo=["Contact"], relationshipName="Contact"),
    fld("LastViewedDate", "datetime", "Last Viewed Date", createable=False, updateable=False),
    fld("LastReferencedDate", "datetime", "Last Referenced Date", createable=False, updateable=False),
]
for f in opp:
    if f["name"] == "OwnerId":
        f = f  # owner is User/Group in the Account recording; keep
objects.append({"name": "Opportunity", "label": "Opportunity", "labelPlural": "Opportunities", "keyPrefix": "006", "fields": opp})

user = [dict(acct["Id"], label="User ID"),
    fld("Username", "string", "Username", length=80, nillable=False, unique=True, idLookup=True),
    fld("LastName", "string", "Last Name", length=80, nillable=False, compoundFieldName="Name"),
    fld("FirstName", "string", "First Name", length=40, compoundFieldName="Name"),
    fld("Name", "string", "Full Name", length=121, createable=False, updateable=False, nameField=True, idLookup=True),
    fld("CompanyName", "string", "Company Name", length=80),
    fld("Email", "email", "Email", length=128, nillable=False, idLookup=True),
    fld("Alias", "string", "Alias", length=8, nillable=False),
    fld("IsActive", "boolean", "Active", nillable=False, defaultedOnCreate=True),
    fld("TimeZoneSidKey", "picklist", "Time Zone", length=40, nillable=False, restrictedPicklist=True, values=["GMT", "America/Los_Angeles", "America/New_York", "Europe/London", "Europe/Paris"]),
    fld("LocaleSidKey", "picklist", "Locale", length=40, nillable=False, restrictedPicklist=True, values=["en_US", "en_GB", "fr_FR", "de_DE"]),
    fld("EmailEncodingKey", "picklist", "Email Encoding", length=40, nillable=False, restrictedPicklist=True, values=["UTF-8", "ISO-8859-1"]),
    fld("LanguageLocaleKey", "picklist", "Language", length=40, nillable=False, restrictedPicklist=True, values=["en_US", "fr", "de"]),
    fld("UserType", "picklist", "User Type", length=40, createable=False, updateable=False, values=["Standard", "AutomatedProcess"]),
    fld("DefaultCurrencyIsoCode", "picklist", "User Currency", length=3, restrictedPicklist=True, defaultedOnCreate=True, values=["USD"], default="USD"),
    CUR,
    fld("Title", "string", "Title", length=80),
    fld("Department", "string", "Department", length=80),
    fld("ManagerId", "reference", "Manager ID", referenceTo=["User"], relationshipName="Manager"),
] + audit() + [
    fld("LastLoginDate", "datetime", "Last Login", createable=False, updateable=False),
]
objects.append({"name": "User", "label": "User", "labelPlural": "Users", "keyPrefix": "005", "fields": user})

org_fields = [dict(acct["Id"], label="Organization ID"),
    fld("Name", "string", "Name", length=80, nillable=False, nameField=True, createable=False, updateable=False),
    fld("Division", "string", "Division", length=80, createable=False, updateable=False),
    fld("Country", "string", "Country", length=80, createable=False, updateable=False),
    fld("Phone", "phone", "Phone", length=40, createable=False, updateable=False),
    fld("DefaultLocaleSidKey", "picklist", "Locale", length=40, createable=False, updateable=False, values=["en_US"]),
    fld("TimeZoneSidKey", "picklist", "Time Zone", length=40, createable=False, updateable=False, values=["GMT"]),
    fld("LanguageLocaleKey", "picklist", "Language", length=40, createable=False, updateable=False, values=["en_US"]),
    fld("FiscalYearStartMonth", "int", "Fiscal Year Starts In", createable=False, updateable=False, digits=2),
    fld("OrganizationType", "picklist", "Edition", length=40, createable=False, updateable=False, values=["Developer Edition", "Enterprise Edition"]),
    fld("InstanceName", "string", "Instance Name", length=5, createable=False, updateable=False),
    fld("IsSandbox", "boolean", "Is Sandbox", createable=False, updateable=False, nillable=False, defaultedOnCreate=True),
    fld("NamespacePrefix", "string", "Namespace Prefix", length=15, createable=False, updateable=False),
    fld("DefaultCurrencyIsoCode", "picklist", "Currency", length=3, createable=False, updateable=False, values=["USD"]),
] + audit()
for f in org_fields:
    f["createable"] = False; f.pop("createable"); f.pop("updateable", None)
objects.append({"name": "Organization", "label": "Organization", "labelPlural": "Organizations", "keyPrefix": "00D", "fields": org_fields, "createable": False})

ct = [dict(acct["Id"], label="Currency Type ID"),
    fld("IsoCode", "picklist", "Currency ISO Code", length=3, nillable=False, restrictedPicklist=False, updateable=False, idLookup=True, values=["USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF"]),
    fld("ConversionRate", "double", "Conversion Rate", precision=15, scale=6, nillable=False),
    fld("DecimalPlaces", "int", "Decimal Places", digits=1, defaultedOnCreate=True, nillable=False),
    fld("IsActive", "boolean", "Active", nillable=False, defaultedOnCreate=True),
    fld("IsCorporate", "boolean", "Corporate", nillable=False, defaultedOnCreate=True, createable=False, updateable=False),
] + audit()
objects.append({"name": "CurrencyType", "label": "Currency Type", "labelPlural": "Currency Types", "keyPrefix": "02c", "fields": ct})
dcr = [dict(acct["Id"], label="Dated Conversion Rate ID"),
    fld("IsoCode", "picklist", "Currency ISO Code", length=3, nillable=False, updateable=False, values=["USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF"]),
    fld("ConversionRate", "double", "Conversion Rate", precision=15, scale=6, nillable=False),
    fld("StartDate", "date", "Start Date", nillable=False),
    fld("NextStartDate", "date", "Next Start Date", createable=False, updateable=False),
] + audit()
objects.append({"name": "DatedConversionRate", "label": "Dated Conversion Rate", "labelPlural": "Dated Conversion Rates", "keyPrefix": "04w", "fields": dct if False else dcr})

# multicurrency on the recorded objects too
for o in objects[:3]:
    names = [f["name"] for f in o["fields"]]
    if "CurrencyIsoCode" not in names:
        o["fields"].insert(names.index("OwnerId"), dict(CUR))

# child relationship names, keyed "Child.Field", from the recorded parents
ours = {o["name"] for o in objects}
children = {}
for name in ["Account", "Contact", "Lead"]:
    for c in load(name)["childRelationships"]:
        if c["childSObject"] in ours and not c["field"].endswith("__c"):
            children[c["childSObject"] + "." + c["field"]] = {
                "relationshipName": c["relationshipName"], "cascadeDelete": c["cascadeDelete"],
                "restrictedDelete": c["restrictedDelete"]}
children.setdefault("Opportunity.AccountId", {"relationshipName": "Opportunities", "cascadeDelete": True, "restrictedDelete": False})
json.dump({"objects": objects, "children": children}, sys.stdout, separators=(",", ":"))
