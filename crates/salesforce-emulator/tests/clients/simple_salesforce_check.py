"""simple-salesforce (unpatched) against the emulator's self-signed TLS listener.

Usage: python simple_salesforce_check.py https://127.0.0.1:PORT
Trust comes from REQUESTS_CA_BUNDLE=<emulator DIR>/ca.pem.
"""
import sys

import requests
from simple_salesforce import Salesforce, SalesforceResourceNotFound

base = sys.argv[1]
port = base.rsplit(":", 1)[1]

# session login (token obtained with the OAuth password grant)
tok = requests.post(f"{base}/services/oauth2/token", data={
    "grant_type": "password", "client_id": "ferry-emulator", "client_secret": "ferry-emulator-secret",
    "username": "admin@ferry.local", "password": "ferry"}).json()
assert tok["instance_url"] == base, tok
sf = Salesforce(instance_url=base, session_id=tok["access_token"], version="59.0")

# describe
assert sf.Account.describe()["name"] == "Account"
names = [o["name"] for o in sf.describe()["sobjects"]]
assert "Contact" in names, names

# CRUD
r = sf.Account.create({"Name": "From Python"})
assert r["success"] and r["id"].startswith("001"), r
acc = sf.Account.get(r["id"])
assert acc["Name"] == "From Python"
assert sf.Account.update(r["id"], {"Name": "Renamed"}) == 204
assert sf.Account.get(r["id"])["Name"] == "Renamed"
assert sf.Account.delete(r["id"]) == 204
try:
    sf.Account.get(r["id"])
    raise AssertionError("deleted record still readable")
except SalesforceResourceNotFound as e:
    assert e.content[0]["errorCode"] == "ENTITY_IS_DELETED", e.content

# upsert by external id (201 then 200)
requests.post(f"{base}/__emulator/objects/Account/fields", json={"name": "Ext__c", "type": "text", "externalId": True, "unique": True})
assert sf.Account.upsert("Ext__c/PY-1", {"Name": "Upserted"}) == 201
assert sf.Account.upsert("Ext__c/PY-1", {"Name": "Upserted again"}) == 200
assert sf.Account.get_by_custom_id("Ext__c", "PY-1")["Name"] == "Upserted again"

# query with paging (2,500 rows > one 2,000-row page), query_all sees deleted rows
requests.post(f"{base}/__emulator/generate/Account", json={"count": 2500, "fields": {"Name": "Gen {n}"}})
first = sf.query("SELECT Id, Name FROM Account")
assert first["done"] is False and len(first["records"]) == 2000, (first["done"], len(first["records"]))
page2 = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
assert page2["done"] is True and len(page2["records"]) == 501
everything = sf.query_all("SELECT Id FROM Account")
assert everything["totalSize"] == 2501 and len(everything["records"]) == 2501
with_deleted = sf.query_all("SELECT Id FROM Account", include_deleted=True)
assert with_deleted["totalSize"] == 2502, with_deleted["totalSize"]
assert sf.api_usage["api-usage"].used > 0

# sObject Collections through restful()
res = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": [
    {"attributes": {"type": "Contact"}, "LastName": "One"},
    {"attributes": {"type": "Contact"}, "LastName": "Two"}]})
assert all(x["success"] for x in res), res
ids = ",".join(x["id"] for x in res)
got = sf.restful("composite/sobjects/Contact", params={"ids": ids, "fields": "LastName"})
assert [g["LastName"] for g in got] == ["One", "Two"], got
deleted = sf.restful("composite/sobjects", method="DELETE", params={"ids": ids})
assert all(x["success"] for x in deleted), deleted

# OAuth client-credentials login (HTTP Basic) through simple-salesforce's own login code
sf2 = Salesforce(consumer_key="ferry-emulator", consumer_secret="ferry-emulator-secret",
                 domain=f"127.0.0.1:{port}/services/oauth2/token?x=", version="59.0")
assert sf2.query("SELECT Id FROM User")["totalSize"] == 1
# username/password login (SOAP login() with the security token appended)
sf3 = Salesforce(username="admin@ferry.local", password="ferry", security_token="TOKEN",
                 domain=f"127.0.0.1:{port}/services/Soap/u/59.0?x=", version="59.0")
assert sf3.query("SELECT Id FROM Organization")["totalSize"] == 1
print("simple-salesforce OK")
