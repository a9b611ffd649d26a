#!/usr/bin/env node
// select-builtin.mjs: copies the objects of a multi-document YAML stream (stdin) that kubectl's
// typed decode knows (built-in kinds) to stdout, leaving out CustomResourceDefinitions and
// objects of the groups listed as arguments (our custom resources): `kubectl ... --local`
// refuses those ("no kind is registered"), so validate_test.sh checks them with
// validate-crs.mjs instead. Prints the number of objects kept and left out on stderr.
// Exit 2 when the input does not parse.
import { readFileSync } from 'node:fs';
import { parseAllDocuments, stringify } from 'yaml';

const skipGroups = new Set(process.argv.slice(2));
const docs = parseAllDocuments(readFileSync(0, 'utf8'), { uniqueKeys: true });
let kept = 0;
let left = 0;
const out = [];
for (const [i, d] of (Array.isArray(docs) ? docs : []).entries()) {
  if (d.errors.length > 0) {
    process.stderr.write(`select-builtin: document ${i + 1}: ${d.errors[0].message}\n`);
    process.exit(2);
  }
  const v = d.toJS();
  if (v === null || v === undefined) {
    continue;
  }
  const api = String(v.apiVersion ?? '');
  const group = api.includes('/') ? api.split('/')[0] : '';
  if (v.kind === 'CustomResourceDefinition' || skipGroups.has(group)) {
    left++;
    continue;
  }
  kept++;
  out.push(stringify(v));
}
process.stdout.write(out.join('---\n'));
process.stderr.write(`select-builtin: ${kept} built-in objects kept, ${left} left out\n`);
