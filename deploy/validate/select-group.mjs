#!/usr/bin/env node
// select-group.mjs GROUP: copies the objects of API group GROUP in a multi-document YAML stream
// (stdin) to stdout, CustomResourceDefinitions left out: the policy objects of a rendering, for
// `weftctl policy check`, as weft-ca (--policy-source kubernetes) would read them from the API
// server. Prints the number of objects kept on stderr. Exit 1 when none is kept, 2 when the
// input does not parse.
import { readFileSync } from 'node:fs';
import { parseAllDocuments, stringify } from 'yaml';

const group = process.argv[2];
if (!group || process.argv.length !== 3) {
  process.stderr.write('usage: select-group.mjs GROUP < stream.yaml\n');
  process.exit(2);
}
const out = [];
for (const [i, d] of parseAllDocuments(readFileSync(0, 'utf8'), { uniqueKeys: true }).entries()) {
  if (d.errors.length > 0) {
    process.stderr.write(`select-group: document ${i + 1}: ${d.errors[0].message}\n`);
    process.exit(2);
  }
  const v = d.toJS();
  const api = String(v?.apiVersion ?? '');
  if (v?.kind !== 'CustomResourceDefinition' && api.includes('/') && api.split('/')[0] === group) {
    out.push(stringify(v));
  }
}
process.stdout.write(out.join('---\n'));
process.stderr.write(`select-group: ${out.length} objects of ${group}\n`);
process.exit(out.length > 0 ? 0 : 1);
