#!/usr/bin/env node
// configmap-files.mjs NAME DIR: writes each data key of ConfigMap NAME, found in the
// multi-document YAML on stdin, to DIR/KEY (what a ConfigMap volume would show a container).
// Exit 1 when there is no such ConfigMap or a key is not a plain file name, 2 on bad input.
import { readFileSync, writeFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';

const [name, dir] = process.argv.slice(2);
if (!name || !dir) {
  process.stderr.write('usage: configmap-files.mjs NAME DIR < stream.yaml\n');
  process.exit(2);
}
let found = 0;
for (const [i, d] of parseAllDocuments(readFileSync(0, 'utf8')).entries()) {
  if (d.errors.length > 0) {
    process.stderr.write(`configmap-files: document ${i + 1}: ${d.errors[0].message}\n`);
    process.exit(2);
  }
  const o = d.toJS();
  if (o?.kind !== 'ConfigMap' || o.metadata?.name !== name) {
    continue;
  }
  for (const [k, v] of Object.entries(o.data ?? {})) {
    if (!/^[A-Za-z0-9][-._A-Za-z0-9]*$/.test(k)) {
      process.stderr.write(`configmap-files: ConfigMap ${name}: key ${JSON.stringify(k)} is not a plain file name\n`);
      process.exit(1);
    }
    writeFileSync(`${dir}/${k}`, v);
    found++;
  }
}
if (found === 0) {
  process.stderr.write(`configmap-files: no ConfigMap ${name} with data in the stream\n`);
  process.exit(1);
}
