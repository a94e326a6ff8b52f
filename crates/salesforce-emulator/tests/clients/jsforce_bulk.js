// jsforce (unpatched) Bulk 1.0 and Bulk 2.0 against the emulator over plain http.
// Usage: node jsforce_bulk.js http://127.0.0.1:PORT /path/to/node_modules
const assert = require('assert');
const base = process.argv[2];
const jsforce = require(require('path').join(process.argv[3], 'jsforce'));

const creds = { clientId: 'ferry-emulator', clientSecret: 'ferry-emulator-secret', loginUrl: base };

function collect(stream) {
  return new Promise((resolve, reject) => {
    const out = [];
    stream.on('record', (r) => out.push(r));
    stream.on('end', () => resolve(out));
    stream.on('error', reject);
  });
}

async function main() {
  const conn = new jsforce.Connection({ loginUrl: base, oauth2: creds, version: '59.0' });
  await conn.login('admin@ferry.local', 'ferry');
  conn.bulk.pollInterval = 50;
  conn.bulk2.pollInterval = 50;

  // Bulk 1.0: XML job, CSV batch, CSV results
  const recs = Array.from({ length: 30 }, (_, i) => ({ Name: `JS Bulk ${i}`, NumberOfEmployees: i }));
  recs.push({ Phone: 'no name' });
  const r1 = await conn.bulk.load('Account', 'insert', recs);
  assert.strictEqual(r1.length, 31);
  assert.ok(r1.slice(0, 30).every((r) => r.success && r.id.startsWith('001')), JSON.stringify(r1[0]));
  assert.ok(!r1[30].success, JSON.stringify(r1[30]));
  const q1 = await collect(await conn.bulk.query("SELECT Id, Name FROM Account WHERE Name LIKE 'JS Bulk%'"));
  assert.strictEqual(q1.length, 30);

  // Bulk 2.0: ingest and query. jsforce 3.6.2 pipes every result page into one stream
  // that the first page already ends (upstream issues jsforce#1546 and #1693: "write after
  // end" on multi-page results, against real Salesforce too), so the query stays within the
  // emulator's default page; locator paging is exercised by simple-salesforce and the raw
  // protocol tests.
  const many = Array.from({ length: 250 }, (_, i) => ({ LastName: `JS2 ${i}` }));
  const r2 = await conn.bulk2.loadAndWaitForResults({ object: 'Contact', operation: 'insert', input: many });
  assert.strictEqual(r2.successfulResults.length, 250, JSON.stringify(r2.failedResults.slice(0, 2)));
  assert.strictEqual(r2.failedResults.length, 0);
  const q2 = await collect(await conn.bulk2.query("SELECT Id, LastName, Account.Name FROM Contact"));
  assert.strictEqual(q2.length, 250);
  assert.ok(q2[0].Id.startsWith('003'));
  console.log('jsforce bulk OK');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
