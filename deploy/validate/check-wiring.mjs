#!/usr/bin/env node
// check-wiring.mjs: what the binaries expect of each other in a rendering, which neither a
// schema nor a --help check sees:
//   - node attestation, --mode psat (the default): weft-agent's --psat-token-file is a file of
//     a mounted projected volume whose serviceAccountToken has the audience weft-ca accepts
//     (--psat-audience, default weft-ca) and an expirationSeconds of 600 (the API server's
//     minimum) to 3600; the agent's service account is one weft-ca allows (--psat-allowed-sa,
//     default weft-system:weft-agent); no join token; weft-ca has an https --psat-issuer and a
//     --psat-jwks file mounted from ConfigMap weft-ca-psat-jwks;
//     --mode join-tokens: weft-agent's --join-token-file lies in a mount of Secret
//     weft-agent-join-tokens, no --psat-token-file, no projected token for weft-ca; weft-ca
//     has no --psat-* flag;
//   - policy from the API server: weft-ca has --policy-source=kubernetes and no --policy-dir,
//     and its service account is bound to a ClusterRole that grants list and watch on
//     authorizationpolicies, peerauthentications and meshconfigs of security.weft.dev and
//     nothing else (no get, no writes, no other resource);
//   - weft-injector: GET /ready (readiness) over HTTPS on its webhook port 8443, and --image
//     naming its own image (the image of the containers it injects).
// Usage: node check-wiring.mjs [--mode psat|join-tokens] FILE.yaml
// Prints each violation as "FILE: KIND NAME: what", then "check-wiring: N objects, E errors".
// Exit 0 without errors, 1 with, 2 on bad usage or input.
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';

function usage(msg) {
  process.stderr.write(`check-wiring: ${msg}\nusage: node check-wiring.mjs [--mode psat|join-tokens] FILE.yaml\n`);
  process.exit(2);
}

let mode = 'psat';
let file;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--mode' && i + 1 < argv.length) {
    mode = argv[++i];
    if (mode !== 'psat' && mode !== 'join-tokens') {
      usage(`--mode ${mode}: psat or join-tokens`);
    }
  } else if (argv[i].startsWith('-') || file !== undefined) {
    usage(`unexpected argument ${argv[i]}`);
  } else {
    file = argv[i];
  }
}
if (file === undefined) {
  usage('no FILE');
}

const MAX_FILE_BYTES = 4 << 20;
let text;
try {
  text = readFileSync(file, 'utf8');
} catch (e) {
  usage(`${file}: ${e.message}`);
}
if (text.length > MAX_FILE_BYTES) {
  usage(`${file}: over ${MAX_FILE_BYTES} bytes`);
}
const objs = [];
for (const [i, d] of parseAllDocuments(text, { uniqueKeys: true }).entries()) {
  if (d.errors.length > 0) {
    usage(`${file}: document ${i + 1}: ${d.errors[0].message}`);
  }
  const v = d.toJS();
  if (v !== null && v !== undefined) {
    objs.push(v);
  }
}

let errors = 0;
function bad(kind, name, msg) {
  process.stdout.write(`${file}: ${kind} ${name}: ${msg}\n`);
  errors++;
}

const find = (kind, name) => objs.find((o) => o.kind === kind && o.metadata?.name === name);

// flagValues(args, flag): the values of --flag=V and --flag V in a container's arguments.
function flagValues(c, flag) {
  const args = [...(c.command ?? []).slice(1), ...(c.args ?? [])].map(String);
  const out = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === flag && i + 1 < args.length) {
      out.push(args[++i]);
    } else if (args[i].startsWith(`${flag}=`)) {
      out.push(args[i].slice(flag.length + 1));
    }
  }
  return out;
}

// mountOf(pod, c, path): the volume mount of container c that holds path, with the path
// relative to it and the pod's volume of that name.
function mountOf(pod, c, path) {
  for (const m of c.volumeMounts ?? []) {
    const dir = String(m.mountPath ?? '').replace(/\/+$/, '');
    if (dir !== '' && path.startsWith(`${dir}/`)) {
      const vol = (pod.volumes ?? []).find((v) => v.name === m.name);
      return { mount: m, rel: path.slice(dir.length + 1), vol };
    }
  }
  return undefined;
}

// workload(kind, name): [object, pod spec, the container named like the workload]
function workload(kind, name) {
  const w = find(kind, name);
  if (!w) {
    bad(kind, name, 'missing from the rendering');
    return [];
  }
  const pod = w.spec?.template?.spec ?? {};
  const c = (pod.containers ?? []).find((x) => x.name === name);
  if (!c) {
    bad(kind, name, `no container named ${name}`);
    return [];
  }
  return [w, pod, c];
}

const [ca, caPod, caC] = workload('Deployment', 'weft-ca');
const [agent, agentPod, agentC] = workload('DaemonSet', 'weft-agent');
const [inj, , injC] = workload('Deployment', 'weft-injector');

if (ca && agent) {
  const issuers = flagValues(caC, '--psat-issuer');
  const jwks = flagValues(caC, '--psat-jwks');
  const psatFiles = flagValues(agentC, '--psat-token-file');
  const joinFiles = [...flagValues(agentC, '--join-token-file'), ...flagValues(agentC, '--join-token')];
  const tokenVols = (agentPod.volumes ?? []).filter((v) =>
    (v.projected?.sources ?? []).some((s) => s.serviceAccountToken !== undefined));
  if (mode === 'psat') {
    if (issuers.length !== 1 || !/^https:\/\/[^/\s]+/.test(issuers[0])) {
      bad('Deployment', 'weft-ca', `wants one --psat-issuer with an https:// URL, has ${JSON.stringify(issuers)}`);
    }
    if (jwks.length !== 1) {
      bad('Deployment', 'weft-ca', `wants one --psat-jwks, has ${JSON.stringify(jwks)}`);
    } else {
      const m = mountOf(caPod, caC, jwks[0]);
      if (!m || m.vol?.configMap?.name !== 'weft-ca-psat-jwks') {
        bad('Deployment', 'weft-ca', `--psat-jwks ${jwks[0]} is not in a mount of ConfigMap weft-ca-psat-jwks`);
      } else if (m.rel.includes('/')) {
        bad('Deployment', 'weft-ca', `--psat-jwks ${jwks[0]}: a key of ConfigMap weft-ca-psat-jwks is a plain file name`);
      }
    }
    const audiences = flagValues(caC, '--psat-audience');
    const audience = audiences.length > 0 ? audiences[0] : 'weft-ca';
    const allowed = flagValues(caC, '--psat-allowed-sa');
    if (allowed.length === 0) {
      allowed.push('weft-system:weft-agent');
    }
    const sa = `${agent.metadata?.namespace}:${agentPod.serviceAccountName ?? 'default'}`;
    if (!allowed.includes(sa)) {
      bad('DaemonSet', 'weft-agent', `runs as service account ${sa}, which weft-ca does not allow (${allowed.join(', ')})`);
    }
    if (joinFiles.length > 0) {
      bad('DaemonSet', 'weft-agent', 'has a join token (--join-token or --join-token-file): it joins with --psat-token-file alone');
    }
    if (psatFiles.length !== 1) {
      bad('DaemonSet', 'weft-agent', `wants one --psat-token-file, has ${JSON.stringify(psatFiles)}`);
    } else {
      const m = mountOf(agentPod, agentC, psatFiles[0]);
      const src = (m?.vol?.projected?.sources ?? []).find((s) => s.serviceAccountToken?.path === m.rel);
      const t = src?.serviceAccountToken;
      if (!t) {
        bad('DaemonSet', 'weft-agent',
          `--psat-token-file ${psatFiles[0]} is not the path of a projected serviceAccountToken in a mounted volume`);
      } else {
        if (t.audience !== audience) {
          bad('DaemonSet', 'weft-agent',
            `the projected token's audience is ${JSON.stringify(t.audience)}, weft-ca accepts ${JSON.stringify(audience)}`);
        }
        const exp = t.expirationSeconds;
        if (!Number.isInteger(exp) || exp < 600 || exp > 3600) {
          bad('DaemonSet', 'weft-agent',
            `the projected token's expirationSeconds is ${exp}, want 600 to 3600 (the replay binding lasts its life)`);
        }
      }
    }
  } else {
    if (issuers.length > 0 || jwks.length > 0) {
      bad('Deployment', 'weft-ca', 'has --psat-issuer or --psat-jwks with join tokens');
    }
    if (psatFiles.length > 0) {
      bad('DaemonSet', 'weft-agent', 'has --psat-token-file with join tokens');
    }
    if (tokenVols.length > 0) {
      bad('DaemonSet', 'weft-agent', `mounts a projected token (${tokenVols.map((v) => v.name).join(', ')}) it does not use`);
    }
    const files = flagValues(agentC, '--join-token-file');
    if (files.length !== 1) {
      bad('DaemonSet', 'weft-agent', `wants one --join-token-file, has ${JSON.stringify(files)}`);
    } else {
      const m = mountOf(agentPod, agentC, files[0]);
      if (m?.vol?.secret?.secretName !== 'weft-agent-join-tokens') {
        bad('DaemonSet', 'weft-agent', `--join-token-file ${files[0]} is not in a mount of Secret weft-agent-join-tokens`);
      }
    }
  }

  // the policy from the API server, and exactly the RBAC it needs
  const sources = flagValues(caC, '--policy-source');
  if (sources.length !== 1 || sources[0] !== 'kubernetes') {
    bad('Deployment', 'weft-ca', `wants --policy-source=kubernetes, has ${JSON.stringify(sources)}`);
  }
  if (flagValues(caC, '--policy-dir').length > 0) {
    bad('Deployment', 'weft-ca', 'has --policy-dir (its policy comes from the API server)');
  }
  const caSa = caPod.serviceAccountName ?? 'default';
  const caNs = ca.metadata?.namespace;
  const bindings = objs.filter((o) => o.kind === 'ClusterRoleBinding' && o.roleRef?.kind === 'ClusterRole' &&
    (o.subjects ?? []).some((s) => s.kind === 'ServiceAccount' && s.name === caSa && s.namespace === caNs));
  const roles = bindings.map((b) => find('ClusterRole', b.roleRef.name)).filter((r) => r !== undefined);
  const granted = new Map(); // "group/resource" -> Set of verbs
  for (const r of roles) {
    for (const rule of r.rules ?? []) {
      for (const g of rule.apiGroups ?? []) {
        for (const res of rule.resources ?? []) {
          const k = `${g}/${res}`;
          const s = granted.get(k) ?? new Set();
          for (const v of rule.verbs ?? []) {
            s.add(v);
          }
          granted.set(k, s);
        }
      }
    }
  }
  const want = ['authorizationpolicies', 'peerauthentications', 'meshconfigs'].map((r) => `security.weft.dev/${r}`);
  for (const k of want) {
    const verbs = [...(granted.get(k) ?? [])].sort();
    if (verbs.join(',') !== 'list,watch') {
      bad('ClusterRole', roles.map((r) => r.metadata?.name).join(',') || '(none bound)',
        `service account ${caNs}/${caSa} wants list and watch on ${k}, exactly; has ${JSON.stringify(verbs)}`);
    }
  }
  for (const [k, verbs] of granted) {
    if (!want.includes(k)) {
      bad('ClusterRole', roles.map((r) => r.metadata?.name).join(','),
        `service account ${caNs}/${caSa} is granted ${[...verbs].join(',')} on ${k}, which weft-ca never uses`);
    }
  }
}

if (inj) {
  const port = (injC.ports ?? []).find((p) => p.containerPort === 8443);
  const p = injC.readinessProbe?.httpGet;
  if (!port) {
    bad('Deployment', 'weft-injector', 'no container port 8443 (its --listen)');
  } else if (!p || p.path !== '/ready' || p.scheme !== 'HTTPS' || (p.port !== 8443 && p.port !== port.name)) {
    bad('Deployment', 'weft-injector', `readinessProbe is not GET /ready on port 8443 with scheme HTTPS: ${JSON.stringify(injC.readinessProbe)}`);
  }
  const lp = injC.livenessProbe?.httpGet;
  if (lp && lp.scheme !== 'HTTPS') {
    bad('Deployment', 'weft-injector', 'livenessProbe httpGet without scheme HTTPS (the port speaks TLS only)');
  }
  const images = flagValues(injC, '--image');
  if (images.length !== 1 || images[0] !== injC.image) {
    bad('Deployment', 'weft-injector', `--image ${JSON.stringify(images)} is not its own image ${injC.image}`);
  }
}

process.stdout.write(`check-wiring: ${objs.length} objects, ${errors} errors\n`);
process.exit(errors === 0 ? 0 : 1);
