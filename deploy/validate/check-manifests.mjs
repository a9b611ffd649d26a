#!/usr/bin/env node
// check-manifests.mjs: the rules weft's rendered manifests must keep, which no schema says:
//   - each workload's selector picks its own pod template (kubectl's decode does not check),
//     each Service and PodDisruptionBudget selects a workload of the stream;
//   - every container: allowPrivilegeEscalation false, readOnlyRootFilesystem true,
//     capabilities drop ALL and add nothing, resource requests (cpu, memory) and a memory
//     limit; every pod: seccompProfile RuntimeDefault; runAsNonRoot true except in the
//     workloads named by --root-ok KIND/NAME (the agent: see deploy/base/agent.yaml);
//   - one image for all containers;
//   - a MutatingWebhookConfiguration with failurePolicy Fail has a namespaceSelector that
//     excludes weft-system and kube-system;
//   - every --flag in the args of a container whose image command is one of our binaries is
//     one that binary's --help lists (--help-of NAME=PATH runs PATH --help; a container
//     without `command` runs the binary named like the container).
// Usage: node check-manifests.mjs [--root-ok KIND/NAME]... [--help-of NAME=PATH]... FILE.yaml
// Prints each violation as "FILE: KIND NAME: what", then "check-manifests: N objects, E
// errors". Exit 0 without errors, 1 with, 2 on bad usage or input.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';

function usage(msg) {
  process.stderr.write(`check-manifests: ${msg}\n`);
  process.exit(2);
}

const rootOk = new Set();
const helpOf = new Map();
let file;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--root-ok' && i + 1 < argv.length) {
    rootOk.add(argv[++i]);
  } else if (argv[i] === '--help-of' && i + 1 < argv.length) {
    const [name, path] = argv[++i].split('=', 2);
    if (!path) {
      usage(`--help-of ${argv[i]}: want NAME=PATH`);
    }
    let text;
    try {
      // usage goes to stdout with exit 0 for --help in every weft binary
      text = execFileSync(path, ['--help'], { encoding: 'utf8', timeout: 10000, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      usage(`${path} --help: ${e.message}`);
    }
    helpOf.set(name, new Set([...text.matchAll(/(?:^|\s)(--[a-z][-a-z0-9]*)/g)].map((m) => m[1])));
  } else if (argv[i].startsWith('-') || file !== undefined) {
    usage(`unexpected argument ${argv[i]}`);
  } else {
    file = argv[i];
  }
}
if (file === undefined) {
  usage('usage: node check-manifests.mjs [--root-ok KIND/NAME]... [--help-of NAME=PATH]... FILE.yaml');
}

const docs = parseAllDocuments(readFileSync(file, 'utf8'), { uniqueKeys: true });
const objs = [];
for (const [i, d] of (Array.isArray(docs) ? docs : []).entries()) {
  if (d.errors.length > 0) {
    usage(`${file}: document ${i + 1}: ${d.errors[0].message}`);
  }
  const v = d.toJS();
  if (v !== null && v !== undefined) {
    objs.push(v);
  }
}

let errors = 0;
function bad(o, msg) {
  process.stdout.write(`${file}: ${o.kind} ${o.metadata?.name}: ${msg}\n`);
  errors++;
}

const WORKLOADS = new Set(['Deployment', 'DaemonSet', 'StatefulSet', 'Job', 'ReplicaSet']);
const workloads = objs.filter((o) => WORKLOADS.has(o.kind));
const selects = (sel, labels) => Object.entries(sel ?? {}).every(([k, v]) => labels?.[k] === v);
const images = new Set();

for (const w of workloads) {
  const tpl = w.spec?.template ?? {};
  const labels = tpl.metadata?.labels ?? {};
  const ml = w.spec?.selector?.matchLabels;
  if (!ml || Object.keys(ml).length === 0 || !selects(ml, labels)) {
    bad(w, `spec.selector.matchLabels ${JSON.stringify(ml)} does not pick the pod template's labels ${JSON.stringify(labels)}`);
  }
  const pod = tpl.spec ?? {};
  const psc = pod.securityContext ?? {};
  if (psc.seccompProfile?.type !== 'RuntimeDefault') {
    bad(w, 'pod securityContext.seccompProfile.type is not RuntimeDefault');
  }
  const root = rootOk.has(`${w.kind}/${w.metadata?.name}`);
  const all = [...(pod.initContainers ?? []), ...(pod.containers ?? [])];
  if (all.length === 0) {
    bad(w, 'no containers');
  }
  for (const c of all) {
    const sc = c.securityContext ?? {};
    const where = `container ${c.name}`;
    if (sc.allowPrivilegeEscalation !== false) {
      bad(w, `${where}: allowPrivilegeEscalation is not false`);
    }
    if (sc.readOnlyRootFilesystem !== true) {
      bad(w, `${where}: readOnlyRootFilesystem is not true`);
    }
    if (!(sc.capabilities?.drop ?? []).includes('ALL')) {
      bad(w, `${where}: capabilities.drop does not include ALL`);
    }
    if ((sc.capabilities?.add ?? []).length > 0) {
      bad(w, `${where}: capabilities.add ${JSON.stringify(sc.capabilities.add)}`);
    }
    if (sc.privileged === true) {
      bad(w, `${where}: privileged`);
    }
    const nonRoot = sc.runAsNonRoot ?? psc.runAsNonRoot;
    if (nonRoot !== true && !root) {
      bad(w, `${where}: runAsNonRoot is not true (and ${w.kind}/${w.metadata?.name} is not a documented exception)`);
    }
    const req = c.resources?.requests ?? {};
    if (req.cpu === undefined || req.memory === undefined || c.resources?.limits?.memory === undefined) {
      bad(w, `${where}: needs resources.requests.cpu, requests.memory and limits.memory`);
    }
    images.add(c.image);
    const bin = (c.command ?? [])[0] ?? c.name;
    const flags = helpOf.get(bin);
    if (flags !== undefined) {
      for (const a of [...(c.command ?? []).slice(1), ...(c.args ?? [])]) {
        const m = /^(--[a-z][-a-z0-9]*)/.exec(String(a));
        if (m && !flags.has(m[1])) {
          bad(w, `${where}: ${bin} has no flag ${m[1]} (not in its --help)`);
        }
      }
    }
  }
}
if (images.size > 1) {
  process.stdout.write(`${file}: more than one image: ${[...images].join(', ')}\n`);
  errors++;
}

for (const o of objs) {
  if (o.kind === 'Service' || o.kind === 'PodDisruptionBudget') {
    const sel = o.kind === 'Service' ? o.spec?.selector : o.spec?.selector?.matchLabels;
    const ns = o.metadata?.namespace;
    const hit = workloads.some((w) => w.metadata?.namespace === ns && selects(sel, w.spec?.template?.metadata?.labels));
    if (!sel || Object.keys(sel).length === 0 || !hit) {
      bad(o, `selector ${JSON.stringify(sel)} picks no workload of namespace ${ns}`);
    }
  }
  if (o.kind === 'MutatingWebhookConfiguration' || o.kind === 'ValidatingWebhookConfiguration') {
    for (const h of o.webhooks ?? []) {
      if (h.failurePolicy !== 'Fail') {
        continue;
      }
      const ex = (h.namespaceSelector?.matchExpressions ?? []).find(
        (e) => e.key === 'kubernetes.io/metadata.name' && e.operator === 'NotIn');
      for (const ns of ['weft-system', 'kube-system']) {
        if (!ex || !ex.values.includes(ns)) {
          bad(o, `webhook ${h.name}: failurePolicy Fail without a namespaceSelector that excludes ${ns}`);
        }
      }
    }
  }
}

process.stdout.write(`check-manifests: ${objs.length} objects, ${errors} errors\n`);
process.exit(errors === 0 ? 0 : 1);
