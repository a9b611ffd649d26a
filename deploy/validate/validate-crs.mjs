#!/usr/bin/env node
// validate-crs.mjs: checks custom resources against the CustomResourceDefinitions that define
// them, offline, roughly as an API server would on create:
//   1. the CRD's openAPIV3Schema for the object's served version (ajv 8), with the API
//      server's structural-schema rules: an unknown field is an error (the API server prunes
//      it, or refuses it under kubectl's default --validate=strict) unless the subtree has
//      x-kubernetes-preserve-unknown-fields; x-kubernetes-int-or-string; defaults applied
//      before CEL runs, as the API server defaults before it validates;
//   2. every x-kubernetes-validations CEL rule, with `self` bound to the value at the rule's
//      node, for each element of lists and maps below it (@marcbachmann/cel-js);
//   3. metadata.name present and a DNS subdomain, metadata.namespace set only on namespaced
//      kinds.
// Not done (no API server here): oldSelf transition rules are skipped, no CEL cost budget,
// no check that the CRD itself is structural, no admission (webhooks, quotas).
//
// Usage: node validate-crs.mjs --crd CRD.yaml [--crd ...] FILE.yaml...
// Objects of a group that no --crd defines are skipped (built-in kinds are checked by kubectl
// in validate_test.sh). Prints one line per error, "FILE: doc N KIND NAMESPACE/NAME: PATH:
// message", then "validate-crs: N objects checked, M skipped, E errors". Exit 0 when there
// was no error, 1 when there was, 2 on bad usage or an unreadable or unparsable file.
import { readFileSync } from 'node:fs';
import Ajv from 'ajv';
import { parse as celParse } from '@marcbachmann/cel-js';
import { parseAllDocuments } from 'yaml';

const MAX_FILE_BYTES = 4 << 20; // our manifests are a few KiB; refuse anything absurd
const MAX_DOCS = 1000;

function usage(msg) {
  process.stderr.write(`validate-crs: ${msg}\nusage: node validate-crs.mjs --crd CRD.yaml [--crd ...] FILE.yaml...\n`);
  process.exit(2);
}

// readDocs returns the YAML documents of |file| as plain JS values (nulls dropped).
function readDocs(file) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    usage(`${file}: cannot read: ${e.message}`);
  }
  if (text.length > MAX_FILE_BYTES) {
    usage(`${file}: larger than ${MAX_FILE_BYTES} bytes`);
  }
  const docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true });
  if (!Array.isArray(docs)) {
    return []; // an empty stream
  }
  if (docs.length > MAX_DOCS) {
    usage(`${file}: more than ${MAX_DOCS} YAML documents`);
  }
  const out = [];
  docs.forEach((d, i) => {
    if (d.errors.length > 0) {
      usage(`${file}: document ${i + 1}: ${d.errors[0].message}`);
    }
    const v = d.toJS({ maxAliasCount: 100 });
    if (v !== null && v !== undefined) {
      out.push({ index: i + 1, value: v });
    }
  });
  return out;
}

// toAjv rewrites one node of a structural schema into the JSON Schema ajv checks.
function toAjv(node) {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) {
    return node;
  }
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if (k.startsWith('x-kubernetes-') || k === 'description' || k === 'example' || k === 'externalDocs') {
      continue;
    }
    if (k === 'properties' || k === 'patternProperties' || k === 'definitions') {
      out[k] = Object.fromEntries(Object.entries(v).map(([pk, pv]) => [pk, toAjv(pv)]));
    } else if (k === 'items' || k === 'additionalProperties' || k === 'not') {
      out[k] = typeof v === 'object' ? toAjv(v) : v;
    } else if (k === 'allOf' || k === 'anyOf' || k === 'oneOf') {
      out[k] = v.map(toAjv);
    } else {
      out[k] = v;
    }
  }
  if (node['x-kubernetes-int-or-string'] === true) {
    delete out.type;
    out.anyOf = [{ type: 'integer' }, { type: 'string' }];
  }
  // metadata is the API server's to check, whatever the schema says of it
  const preserve = node['x-kubernetes-preserve-unknown-fields'] === true;
  if (out.type === 'object' && out.properties !== undefined && out.additionalProperties === undefined && !preserve) {
    out.additionalProperties = false;
  }
  return out;
}

// compileRules attaches the compiled CEL rules of every node (in place, under a symbol).
const RULES = Symbol('rules');
function compileRules(node, where) {
  if (node === null || typeof node !== 'object') {
    return;
  }
  const rules = node['x-kubernetes-validations'];
  if (Array.isArray(rules)) {
    node[RULES] = rules.map((r, i) => {
      if (typeof r.rule !== 'string') {
        usage(`${where}: x-kubernetes-validations[${i}] has no rule`);
      }
      let fn;
      try {
        fn = celParse(r.rule);
      } catch (e) {
        usage(`${where}: x-kubernetes-validations[${i}]: the rule does not compile: ${e.message}`);
      }
      return { ...r, fn, transition: /\boldSelf\b/.test(r.rule) };
    });
  }
  for (const k of ['properties', 'patternProperties']) {
    if (node[k]) {
      for (const [pk, pv] of Object.entries(node[k])) {
        compileRules(pv, `${where}.${pk}`);
      }
    }
  }
  if (node.items && typeof node.items === 'object') {
    compileRules(node.items, `${where}[*]`);
  }
  if (node.additionalProperties && typeof node.additionalProperties === 'object') {
    compileRules(node.additionalProperties, `${where}[*]`);
  }
}

// celValue converts JSON to CEL values: integers become BigInt (CEL int).
function celValue(v) {
  if (typeof v === 'number' && Number.isInteger(v)) {
    return BigInt(v);
  }
  if (Array.isArray(v)) {
    return v.map(celValue);
  }
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, celValue(x)]));
  }
  return v;
}

// runRules evaluates the CEL rules of |node| and below against |value|; errors go to |errs|.
function runRules(node, value, path, errs) {
  if (value === undefined || value === null || node === null || typeof node !== 'object') {
    return;
  }
  for (const r of node[RULES] ?? []) {
    if (r.transition) {
      continue; // needs the old object: update only
    }
    let ok;
    try {
      ok = r.fn({ self: celValue(value) });
    } catch (e) {
      errs.push(`${path}${r.fieldPath ?? ''}: rule ${JSON.stringify(r.rule)} failed to evaluate: ${e.message}`);
      continue;
    }
    if (ok !== true) {
      errs.push(`${path}${r.fieldPath ?? ''}: ${r.message ?? `failed rule: ${r.rule}`}`);
    }
  }
  if (typeof value !== 'object') {
    return;
  }
  if (Array.isArray(value)) {
    if (node.items && typeof node.items === 'object') {
      value.forEach((x, i) => runRules(node.items, x, `${path}[${i}]`, errs));
    }
    return;
  }
  for (const [k, x] of Object.entries(value)) {
    if (node.properties && node.properties[k]) {
      runRules(node.properties[k], x, `${path}.${k}`, errs);
    } else if (node.additionalProperties && typeof node.additionalProperties === 'object') {
      runRules(node.additionalProperties, x, `${path}[${JSON.stringify(k)}]`, errs);
    }
  }
}

// jsonPointerToPath turns ajv's "/spec/rules/0/form" into "spec.rules[0].form".
function jsonPointerToPath(ptr) {
  let out = '';
  for (const raw of ptr.split('/').slice(1)) {
    const seg = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    out += /^[0-9]+$/.test(seg) ? `[${seg}]` : `${out === '' ? '' : '.'}${seg}`;
  }
  return out;
}

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function main(argv) {
  const crdFiles = [];
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--crd') {
      if (i + 1 >= argv.length) {
        usage('--crd needs a file');
      }
      crdFiles.push(argv[++i]);
    } else if (argv[i].startsWith('-')) {
      usage(`unknown option ${argv[i]}`);
    } else {
      files.push(argv[i]);
    }
  }
  if (crdFiles.length === 0 || files.length === 0) {
    usage('need at least one --crd and one file');
  }

  const ajv = new Ajv({ strict: false, allErrors: true, useDefaults: true, validateFormats: false });
  const kinds = new Map(); // "group/Kind" -> { scope, versions: Map(name -> {validate, schema}) }
  const groups = new Set();
  for (const f of crdFiles) {
    for (const { index, value: crd } of readDocs(f)) {
      if (crd.kind !== 'CustomResourceDefinition') {
        continue;
      }
      const where = `${f}: doc ${index} ${crd.metadata?.name}`;
      const spec = crd.spec ?? {};
      const versions = new Map();
      for (const v of spec.versions ?? []) {
        const schema = v.schema?.openAPIV3Schema;
        if (!v.served || !schema) {
          continue;
        }
        let validate;
        try {
          validate = ajv.compile(toAjv(schema));
        } catch (e) {
          usage(`${where}: version ${v.name}: the schema does not compile: ${e.message}`);
        }
        compileRules(schema, `${where} ${v.name}`);
        versions.set(v.name, { validate, schema });
      }
      kinds.set(`${spec.group}/${spec.names?.kind}`, { scope: spec.scope, versions });
      groups.add(spec.group);
    }
  }
  if (kinds.size === 0) {
    usage('no CustomResourceDefinition in the --crd files');
  }

  let checked = 0;
  let skipped = 0;
  let errors = 0;
  for (const f of files) {
    for (const { index, value: obj } of readDocs(f)) {
      const [group, version] = String(obj.apiVersion ?? '').includes('/') ? obj.apiVersion.split('/') : ['', obj.apiVersion];
      if (!groups.has(group)) {
        skipped++;
        continue;
      }
      checked++;
      const md = obj.metadata ?? {};
      const label = `${f}: doc ${index} ${obj.kind} ${md.namespace ? md.namespace + '/' : ''}${md.name ?? '(no name)'}`;
      const errs = [];
      const def = kinds.get(`${group}/${obj.kind}`);
      const ver = def?.versions.get(version);
      if (!def) {
        errs.push(`kind: no CustomResourceDefinition defines ${obj.kind} in group ${group}`);
      } else if (!ver) {
        errs.push(`apiVersion: ${obj.apiVersion} is not a served version of ${obj.kind}`);
      } else {
        if (typeof md.name !== 'string' || md.name.length > 253 || !DNS1123_SUBDOMAIN.test(md.name)) {
          errs.push(`metadata.name: ${JSON.stringify(md.name)} is not a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253)`);
        }
        if (def.scope === 'Cluster' && md.namespace !== undefined) {
          errs.push(`metadata.namespace: ${obj.kind} is cluster-scoped and takes no namespace`);
        }
        const copy = structuredClone(obj);
        if (!ver.validate(copy)) {
          for (const e of ver.validate.errors) {
            const p = jsonPointerToPath(e.instancePath) || '(root)';
            const extra = e.params?.additionalProperty !== undefined ? ` "${e.params.additionalProperty}"`
              : e.params?.allowedValues !== undefined ? ` (${e.params.allowedValues.join(', ')})` : '';
            errs.push(`${p}: ${e.message}${extra}`);
          }
        } else {
          runRules(ver.schema, copy, '', errs); // on the defaulted copy, as the API server does
        }
      }
      for (const e of errs) {
        process.stdout.write(`${label}: ${e.replace(/^\./, '')}\n`);
      }
      errors += errs.length;
    }
  }
  process.stdout.write(`validate-crs: ${checked} objects checked, ${skipped} skipped, ${errors} errors\n`);
  return errors === 0 ? 0 : 1;
}

process.exit(main(process.argv.slice(2)));
