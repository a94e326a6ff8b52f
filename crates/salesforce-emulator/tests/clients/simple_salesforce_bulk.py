"""simple-salesforce (unpatched) Bulk 1.0 (`sf.bulk`) and Bulk 2.0 (`sf.bulk2`) against the
emulator's self-signed TLS listener.

Usage: python simple_salesforce_bulk.py https://127.0.0.1:PORT
Trust comes from REQUESTS_CA_BUNDLE=<emulator DIR>/ca.pem.
"""
import csv
import io
import sys

import requests
from simple_salesforce import Salesforce

base = sys.argv[1]
tok = requests.post(f"{base}/services/oauth2/token", data={
    "grant_type": "password", "client_id": "ferry-emulator", "client_secret": "ferry-emulator-secret",
    "username": "admin@ferry.local", "password": "ferry"}).json()
sf = Salesforce(instance_url=base, session_id=tok["access_token"], version="59.0")
r = requests.post(f"{base}/__emulator/objects/Account/fields",
                  json={"name": "Ext__c", "type": "text", "externalId": True, "unique": True})
assert r.status_code == 201, r.text
# the client polls batch state right after creating a batch and then sleeps 5 s between
# polls: let batches start at once so most calls find them finished
r = requests.put(f"{base}/__emulator/bulk", json={"gatherMs": 0, "startDelayMs": 0})
assert r.status_code == 200, r.text

# ---- Bulk 1.0: JSON jobs, integer concurrencyMode, JSON batches and results
res = sf.bulk.Account.insert([{"Name": f"Bulk1 {i}", "NumberOfEmployees": i} for i in range(50)],
                             batch_size=20)
assert len(res) == 50 and all(x["success"] and x["created"] for x in res), res[:3]
res = sf.bulk.Account.insert([{"Name": "Serial A"}, {"Phone": "1"}], use_serial=True)
assert res[0]["success"] and not res[1]["success"], res
assert res[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING", res
rows = sf.bulk.Account.query("SELECT Id, Name, CreatedDate FROM Account WHERE Name LIKE 'Bulk1%'",
                            wait=0.05)
rows = list(rows)
assert len(rows) == 50, len(rows)
assert isinstance(rows[0]["CreatedDate"], int), rows[0]
upd = sf.bulk.Account.update([{"Id": x["Id"], "Phone": "555"} for x in rows[:5]])
assert all(u["success"] for u in upd), upd
ups = sf.bulk.Account.upsert([{"Ext__c": "E1", "Name": "Up 1"}, {"Ext__c": "E2", "Name": "Up 2"}],
                             "Ext__c")
assert all(u["success"] and u["created"] for u in ups), ups
gone = sf.bulk.Account.delete([{"Id": x["Id"]} for x in rows[:5]])
assert all(d["success"] for d in gone), gone
left = list(sf.bulk.Account.query("SELECT Id FROM Account WHERE Name LIKE 'Bulk1%'", wait=0.05))
assert len(left) == 45, len(left)
every = list(sf.bulk.Account.query_all("SELECT Id FROM Account WHERE Name LIKE 'Bulk1%'",
                                       wait=0.05))
assert len(every) == 50, len(every)

# ---- Bulk 2.0: insert, upsert, query with locator paging
res = sf.bulk2.Contact.insert(records=[{"LastName": f"B2 {i}", "Email": f"b2{i}@example.com"}
                                       for i in range(120)], batch_size=50, wait=0.05)
assert sum(x["numberRecordsProcessed"] for x in res) == 120, res
assert sum(x["numberRecordsFailed"] for x in res) == 0, res
res = sf.bulk2.Account.upsert(records=[{"Ext__c": "E1", "Name": "Up 1 again"},
                                       {"Ext__c": "E3", "Name": "Up 3"}],
                              external_id_field="Ext__c", wait=0.05)
assert sum(x["numberRecordsProcessed"] for x in res) == 2, res
job = res[0]["job_id"]
ok = sf.bulk2.Account.get_successful_records(job)
head = ok.splitlines()[0]
assert head.startswith('"sf__Id","sf__Created",') and sorted(head.split(",")[2:]) == ["Ext__c", "Name"], ok
pages = list(sf.bulk2.Contact.query("SELECT Id, LastName, Email FROM Contact ORDER BY LastName",
                                    max_records=50))
assert len(pages) == 3, len(pages)
total = 0
for p in pages:
    rdr = list(csv.reader(io.StringIO(p)))
    assert rdr[0] == ["Id", "LastName", "Email"], rdr[0]
    total += len(rdr) - 1
assert total == 120, total
print("simple-salesforce bulk OK")
