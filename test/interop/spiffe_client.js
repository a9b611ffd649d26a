#!/usr/bin/env node
// test/interop/spiffe_client.js: a SPIFFE Workload API client that shares nothing with weft's
// C code: the gRPC stack is @grpc/grpc-js (pure JavaScript HTTP/2), the messages come from the
// standard's proto loaded at run time by @grpc/proto-loader, and every certificate, key and
// signature check is node's own crypto (OpenSSL inside node). It fetches and validates what a
// workload gets from an agent's socket, as the SPIFFE standards say a client must, and prints
// one line per check:
//
//   ok   <check>
//   FAIL <check>: <why>
//
// then "spiffe_client: N checks, M failed". Exit 0 when every check passed, 1 when any failed,
// 2 on a usage error.
//
// Usage: node spiffe_client.js --socket /abs/agent.sock --id spiffe://td/path
//            [--proto DIR] [--include DIR] [--jwt AUDIENCE] [--timeout-ms N]
//   --proto DIR    where workload.proto is (default: ../../proto from this file)
//   --include DIR  where google/protobuf/struct.proto is (default /usr/include, libprotobuf-dev)
//   --jwt AUD      also the JWT-SVID profile: FetchJWTSVID, FetchJWTBundles, ValidateJWTSVID
//   --timeout-ms N the whole run, after which it fails (default 30000)
'use strict';

const crypto = require('crypto');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const HEADER = 'workload.spiffe.io';
const CALL_MS = 10000;

// --- arguments ---------------------------------------------------------------------------------

function usage(msg) {
  process.stderr.write(`spiffe_client: ${msg}\n` +
    'usage: node spiffe_client.js --socket /abs/agent.sock --id spiffe://td/path ' +
    '[--proto DIR] [--include DIR] [--jwt AUDIENCE] [--timeout-ms N]\n');
  process.exit(2);
}

const opts = {
  socket: null,
  id: null,
  proto: path.join(__dirname, '..', '..', 'proto'),
  include: '/usr/include',
  jwt: null,
  timeoutMs: 30000,
};
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  const v = process.argv[i + 1];
  const take = () => {
    if (v === undefined) usage(`${a} needs a value`);
    i++;
    return v;
  };
  if (a === '--socket') opts.socket = take();
  else if (a === '--id') opts.id = take();
  else if (a === '--proto') opts.proto = take();
  else if (a === '--include') opts.include = take();
  else if (a === '--jwt') opts.jwt = take();
  else if (a === '--timeout-ms') opts.timeoutMs = Number(take());
  else usage(`unknown argument ${a}`);
}
if (!opts.socket || !path.isAbsolute(opts.socket)) usage('--socket needs an absolute path');
const idMatch = /^spiffe:\/\/([a-z0-9._-]+)(\/.+)$/.exec(opts.id || '');
if (!idMatch) usage('--id needs a SPIFFE ID with a path');
const tdId = `spiffe://${idMatch[1]}`;

// --- reporting ---------------------------------------------------------------------------------

let checks = 0;
let failed = 0;

function report(name, ok, why) {
  checks++;
  if (ok) {
    process.stdout.write(`ok   ${name}\n`);
  } else {
    failed++;
    process.stdout.write(`FAIL ${name}: ${why}\n`);
  }
  return ok;
}

// check runs |fn| (which returns nothing or throws with the reason) as one check.
function check(name, fn) {
  try {
    fn();
    return report(name, true);
  } catch (e) {
    return report(name, false, e && e.message ? e.message : String(e));
  }
}

function must(cond, why) {
  if (!cond) throw new Error(why);
}

function finish() {
  process.stdout.write(`spiffe_client: ${checks} checks, ${failed} failed\n`);
  process.exit(failed === 0 && checks > 0 ? 0 : 1);
}

// The whole run is bounded, whatever the agent does.
setTimeout(() => {
  report('the run ends in time', false, `still running after ${opts.timeoutMs} ms`);
  finish();
}, opts.timeoutMs).unref();

// --- DER and X.509 -----------------------------------------------------------------------------

// splitDer cuts concatenated DER SEQUENCEs apart by their lengths (definite form only).
function splitDer(buf, what) {
  const out = [];
  let off = 0;
  while (off < buf.length) {
    must(buf[off] === 0x30, `${what}: byte ${off} is 0x${buf[off].toString(16)}, not a SEQUENCE`);
    must(off + 2 <= buf.length, `${what}: truncated at byte ${off}`);
    let len = buf[off + 1];
    let hdr = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      must(n >= 1 && n <= 4, `${what}: bad length form at byte ${off}`);
      must(off + 2 + n <= buf.length, `${what}: truncated length at byte ${off}`);
      len = 0;
      for (let k = 0; k < n; k++) len = len * 256 + buf[off + 2 + k];
      hdr += n;
    }
    must(off + hdr + len <= buf.length, `${what}: a certificate runs past the end`);
    out.push(buf.subarray(off, off + hdr + len));
    off += hdr + len;
  }
  must(out.length > 0, `${what}: empty`);
  return out;
}

function parseCerts(buf, what) {
  return splitDer(buf, what).map((der, i) => {
    try {
      return new crypto.X509Certificate(der);
    } catch (e) {
      throw new Error(`${what}: certificate ${i} does not parse: ${e.message}`);
    }
  });
}

function validNow(cert, what) {
  const now = Date.now();
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  must(!Number.isNaN(from) && !Number.isNaN(to), `${what}: unreadable validity`);
  must(from <= now && now <= to, `${what}: not valid now (${cert.validFrom} .. ${cert.validTo})`);
}

function uriSans(cert) {
  if (!cert.subjectAltName) return [];
  return cert.subjectAltName.split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
}

// verifyChain walks from |leaf| through |intermediates| to a certificate of |roots|: each step's
// issuer name matches and its key verifies the signature; every certificate is valid now and
// every one above the leaf is a CA. Returns the path's length.
function verifyChain(leaf, intermediates, roots) {
  let cur = leaf;
  for (let depth = 0; depth < 8; depth++) {
    const root = roots.find((r) => cur.checkIssued(r) && cur.verify(r.publicKey));
    if (root) {
      validNow(root, 'the bundle certificate');
      must(root.ca, 'the bundle certificate is not a CA');
      return depth + 1;
    }
    const next = intermediates.find((c) => c !== cur && cur.checkIssued(c) && cur.verify(c.publicKey));
    must(next, `no issuer for the certificate issued by "${name(cur.issuer)}" (${
      intermediates.length} more in the chain, bundle: ${roots.map((r) => `"${name(r.subject)}"`).join(', ')})`);
    must(next.ca, 'an intermediate is not a CA');
    validNow(next, 'an intermediate');
    cur = next;
  }
  throw new Error('the chain is longer than 8');
}

function name(dn) {
  return (dn || '').replace(/\n/g, ', ');
}

function sameCerts(a, b) {
  const fa = a.map((c) => c.fingerprint256).sort();
  const fb = b.map((c) => c.fingerprint256).sort();
  return fa.length === fb.length && fa.every((f, i) => f === fb[i]);
}

// --- gRPC --------------------------------------------------------------------------------------

const def = protoLoader.loadSync('workload.proto', {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [opts.proto, opts.include],
});
const SpiffeWorkloadAPI = grpc.loadPackageDefinition(def).SpiffeWorkloadAPI;
const client = new SpiffeWorkloadAPI(`unix://${opts.socket}`, grpc.credentials.createInsecure());

function md(value) {
  const m = new grpc.Metadata();
  if (value !== undefined) m.set(HEADER, value);
  return m;
}

function deadline() {
  return new Date(Date.now() + CALL_MS);
}

// first resolves with the first message of a server stream (then cancels it), or rejects with
// the stream's error.
function first(method, req, meta) {
  return new Promise((resolve, reject) => {
    let done = false;
    const call = client[method](req, meta, { deadline: deadline() });
    call.on('data', (m) => {
      if (!done) {
        done = true;
        resolve(m);
        call.cancel();
      }
    });
    call.on('error', (e) => {
      if (!done) {
        done = true;
        reject(e);
      }
    });
    call.on('end', () => {
      if (!done) {
        done = true;
        reject(new Error('the stream ended without a message'));
      }
    });
  });
}

function unary(method, req, meta) {
  return new Promise((resolve, reject) => {
    client[method](req, meta, { deadline: deadline() }, (e, resp) => (e ? reject(e) : resolve(resp)));
  });
}

function why(e) {
  return e && e.code !== undefined ? `status ${e.code} (${e.details})` : String(e && e.message);
}

// refused checks that |p| fails with gRPC status |code| (any failure when |code| is null).
async function refused(name, p, code) {
  try {
    await p;
    report(name, false, 'the call succeeded');
  } catch (e) {
    const ok = e && e.code !== undefined && (code === null ? e.code !== grpc.status.OK : e.code === code);
    report(name, ok, why(e));
  }
}

// --- the X.509-SVID profile --------------------------------------------------------------------

async function x509() {
  let resp;
  try {
    resp = await first('FetchX509SVID', {}, md('true'));
    report('FetchX509SVID answers with the header', true);
  } catch (e) {
    report('FetchX509SVID answers with the header', false, why(e));
    return;
  }
  if (!check('x509: at least one SVID', () => must(resp.svids.length >= 1, 'svids is empty'))) {
    return;
  }
  const s = resp.svids[0];
  check(`x509: spiffe_id is ${opts.id}`, () => must(s.spiffe_id === opts.id, `got "${s.spiffe_id}"`));
  let chain = [];
  let roots = [];
  if (!check('x509: x509_svid is a DER chain of certificates that parse', () => {
    chain = parseCerts(s.x509_svid, 'x509_svid');
  })) {
    return;
  }
  const leaf = chain[0];
  check('x509: the leaf has exactly one URI SAN, the spiffe_id', () => {
    const uris = uriSans(leaf);
    must(uris.length === 1, `URI SANs: ${JSON.stringify(uris)}`);
    must(uris[0] === s.spiffe_id, `URI SAN ${uris[0]} is not ${s.spiffe_id}`);
  });
  check('x509: the leaf is not a CA', () => must(leaf.ca === false, 'basicConstraints cA is true'));
  check('x509: the leaf is valid now', () => validNow(leaf, 'the leaf'));
  check('x509: the leaf\'s EKU, if any, has serverAuth and clientAuth', () => {
    const eku = leaf.keyUsage; // node's name for extended key usage
    if (eku === undefined) return;
    must(eku.includes('1.3.6.1.5.5.7.3.1') && eku.includes('1.3.6.1.5.5.7.3.2'), `EKU ${eku}`);
  });
  if (check('x509: bundle holds DER CA certificates that parse', () => {
    roots = parseCerts(s.bundle, 'bundle');
    roots.forEach((r, i) => must(r.ca, `bundle certificate ${i} is not a CA`));
  })) {
    check('x509: the leaf verifies up to a certificate of the bundle', () => {
      const n = verifyChain(leaf, chain.slice(1), roots);
      must(n >= 1, 'no path');
    });
    check('x509: a leaf with a changed signature does not verify (the check can fail)', () => {
      const der = Buffer.from(chain[0].raw);
      der[der.length - 1] ^= 0x01; // the last byte of the signature
      let threw = false;
      try {
        verifyChain(new crypto.X509Certificate(der), chain.slice(1), roots);
      } catch (e) {
        threw = true;
      }
      must(threw, 'it verified');
    });
  }
  check('x509: x509_svid_key is a PKCS#8 key that matches the leaf', () => {
    const key = crypto.createPrivateKey({ key: s.x509_svid_key, format: 'der', type: 'pkcs8' });
    must(leaf.checkPrivateKey(key), 'checkPrivateKey says no');
    const data = crypto.randomBytes(32);
    const alg = ['ed25519', 'ed448'].includes(key.asymmetricKeyType) ? null : 'sha256';
    const sig = crypto.sign(alg, data, key);
    must(crypto.verify(alg, data, leaf.publicKey, sig), 'a signature by the key does not verify with the leaf');
  });

  try {
    const b = await first('FetchX509Bundles', {}, md('true'));
    report('FetchX509Bundles answers with the header', true);
    check(`x509 bundles: ${tdId} is there and its certificates parse`, () => {
      must(Object.prototype.hasOwnProperty.call(b.bundles, tdId),
        `keys: ${JSON.stringify(Object.keys(b.bundles))}`);
      const certs = parseCerts(b.bundles[tdId], `bundles[${tdId}]`);
      certs.forEach((c, i) => must(c.ca, `certificate ${i} is not a CA`));
      if (roots.length > 0) must(sameCerts(certs, roots), 'not the certificates of the SVID\'s bundle');
    });
  } catch (e) {
    report('FetchX509Bundles answers with the header', false, why(e));
  }

  await refused('FetchX509SVID without the header: INVALID_ARGUMENT',
    first('FetchX509SVID', {}, md()), grpc.status.INVALID_ARGUMENT);
  await refused('FetchX509SVID with "workload.spiffe.io: TRUE": INVALID_ARGUMENT',
    first('FetchX509SVID', {}, md('TRUE')), grpc.status.INVALID_ARGUMENT);
  await refused('FetchX509Bundles without the header: INVALID_ARGUMENT',
    first('FetchX509Bundles', {}, md()), grpc.status.INVALID_ARGUMENT);
}

// --- the JWT-SVID profile ----------------------------------------------------------------------

function b64url(s) {
  return Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

const JWS = {
  ES256: { hash: 'sha256', dsaEncoding: 'ieee-p1363' },
  ES384: { hash: 'sha384', dsaEncoding: 'ieee-p1363' },
  ES512: { hash: 'sha512', dsaEncoding: 'ieee-p1363' },
  RS256: { hash: 'sha256' },
  RS384: { hash: 'sha384' },
  RS512: { hash: 'sha512' },
  PS256: { hash: 'sha256', padding: crypto.constants.RSA_PKCS1_PSS_PADDING },
  PS384: { hash: 'sha384', padding: crypto.constants.RSA_PKCS1_PSS_PADDING },
  PS512: { hash: 'sha512', padding: crypto.constants.RSA_PKCS1_PSS_PADDING },
};

// jwsVerify checks |token|'s signature with the key of |jwks| its kid names; returns its claims.
function jwsVerify(token, jwks) {
  const parts = token.split('.');
  must(parts.length === 3, `${parts.length} parts, not 3`);
  const header = JSON.parse(b64url(parts[0]).toString('utf8'));
  const alg = JWS[header.alg];
  must(alg, `alg ${header.alg} is not a JWT-SVID algorithm`);
  must(header.typ === undefined || header.typ === 'JWT' || header.typ === 'JOSE', `typ ${header.typ}`);
  must(typeof header.kid === 'string' && header.kid !== '', 'no kid in the header');
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  must(jwk, `no key "${header.kid}" in the bundle`);
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const ok = crypto.verify(alg.hash, Buffer.from(`${parts[0]}.${parts[1]}`),
    { key, dsaEncoding: alg.dsaEncoding, padding: alg.padding }, b64url(parts[2]));
  must(ok, 'the signature does not verify');
  return JSON.parse(b64url(parts[1]).toString('utf8'));
}

async function jwt(aud) {
  let token = null;
  try {
    const r = await unary('FetchJWTSVID', { audience: [aud], spiffe_id: '' }, md('true'));
    report('FetchJWTSVID answers', true);
    if (check('jwt: at least one SVID, for the expected ID', () => {
      must(r.svids.length >= 1, 'svids is empty');
      must(r.svids[0].spiffe_id === opts.id, `spiffe_id "${r.svids[0].spiffe_id}"`);
      must(r.svids[0].svid, 'an empty token');
    })) {
      token = r.svids[0].svid;
    }
  } catch (e) {
    report('FetchJWTSVID answers', false, why(e));
  }

  let jwks = null;
  try {
    const b = await first('FetchJWTBundles', {}, md('true'));
    report('FetchJWTBundles answers', true);
    check(`jwt bundles: a JWKS for ${tdId} with jwt-svid keys that have a kid`, () => {
      must(Object.prototype.hasOwnProperty.call(b.bundles, tdId),
        `keys: ${JSON.stringify(Object.keys(b.bundles))}`);
      const set = JSON.parse(Buffer.from(b.bundles[tdId]).toString('utf8'));
      must(Array.isArray(set.keys), 'no "keys" array');
      const keys = set.keys.filter((k) => k.use === 'jwt-svid');
      must(keys.length > 0, 'no jwt-svid key');
      keys.forEach((k) => must(typeof k.kid === 'string' && k.kid !== '', 'a jwt-svid key without kid'));
      jwks = { keys };
    });
  } catch (e) {
    report('FetchJWTBundles answers', false, why(e));
  }

  if (token !== null && jwks !== null) {
    check('jwt: the token\'s signature verifies with the bundle\'s key, sub/aud/exp hold', () => {
      const c = jwsVerify(token, jwks);
      must(c.sub === opts.id, `sub "${c.sub}"`);
      const auds = Array.isArray(c.aud) ? c.aud : [c.aud];
      must(auds.includes(aud), `aud ${JSON.stringify(c.aud)}`);
      must(typeof c.exp === 'number' && c.exp * 1000 > Date.now(), `exp ${c.exp}`);
    });
    check('jwt: a token with a changed signature does not verify (the check can fail)', () => {
      const parts = token.split('.');
      const sig = b64url(parts[2]);
      sig[0] ^= 0x01;
      const bad = `${parts[0]}.${parts[1]}.${sig.toString('base64url')}`;
      let threw = false;
      try {
        jwsVerify(bad, jwks);
      } catch (e) {
        threw = true;
      }
      must(threw, 'it verified');
    });
  }

  if (token !== null) {
    try {
      const v = await unary('ValidateJWTSVID', { audience: aud, svid: token }, md('true'));
      report('ValidateJWTSVID accepts the token', true);
      check('jwt: ValidateJWTSVID returns the spiffe_id and the claims', () => {
        must(v.spiffe_id === opts.id, `spiffe_id "${v.spiffe_id}"`);
        const f = (v.claims && v.claims.fields) || {};
        must(f.sub && f.sub.stringValue === opts.id, `claims.sub ${JSON.stringify(f.sub)}`);
        must(f.aud, 'no aud claim');
        must(f.exp && typeof f.exp.numberValue === 'number', `claims.exp ${JSON.stringify(f.exp)}`);
      });
    } catch (e) {
      report('ValidateJWTSVID accepts the token', false, why(e));
    }
    await refused('ValidateJWTSVID refuses the token for another audience',
      unary('ValidateJWTSVID', { audience: `${aud}-not`, svid: token }, md('true')), null);
  }
  await refused('FetchJWTSVID with no audience: INVALID_ARGUMENT',
    unary('FetchJWTSVID', { audience: [], spiffe_id: '' }, md('true')), grpc.status.INVALID_ARGUMENT);
  await refused('FetchJWTSVID without the header: INVALID_ARGUMENT',
    unary('FetchJWTSVID', { audience: [aud], spiffe_id: '' }, md()), grpc.status.INVALID_ARGUMENT);
}

(async () => {
  await x509();
  if (opts.jwt !== null) await jwt(opts.jwt);
  client.close();
  finish();
})().catch((e) => {
  report('the client runs', false, e && e.stack ? e.stack : String(e));
  finish();
});
