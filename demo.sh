#!/usr/bin/env bash
# The main command. Until the mesh's daemons exist it runs what is real: weft's CA-side minting
# and verifier-side checks, end to end, through weftctl:
#   a root for trust domain cluster.local -> an intermediate -> a workload SVID,
#   inspected against the bundle (valid), then the three ways it goes wrong in production:
#   an expired certificate, a root filed under another trust domain, a key that does not match;
#   then the example policies: validated, and two decisions explained policy by policy.
set -euo pipefail
cd "$(dirname "$0")"

tools/install-deps.sh
bazel build -c opt //cli:weftctl >/dev/null 2>&1 || bazel build -c opt //cli:weftctl
W=$PWD/bazel-bin/cli/weftctl

dir=$(mktemp -d "${TMPDIR:-/tmp}/weft-demo.XXXXXX")
trap 'rm -rf "$dir"' EXIT
repo=$PWD
cd "$dir"

bold='' plain=''
if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; fi
# step TITLE COMMAND...: shows the command, runs it, goes on whatever its verdict.
step() { printf '\n%s== %s%s\n$ %s\n' "$bold" "$1" "$plain" "${*:2}"; "${@:2}" || true; }

step "1. a root CA for trust domain cluster.local (1 year, ECDSA P-256)" \
    "$W" svid mint root --td cluster.local --cert root.pem --key root.key --ttl 8760h
step "2. an intermediate signing CA (7 days)" \
    "$W" svid mint intermediate --td cluster.local --ca-cert root.pem --ca-key root.key \
    --cert ca.pem --key ca.key --ttl 168h
step "3. a workload SVID for ns/shop sa/frontend (1 hour), chain included" \
    "$W" svid mint leaf --id spiffe://cluster.local/ns/shop/sa/frontend --ca-cert ca.pem \
    --ca-key ca.key --cert frontend.pem --key frontend.key --ttl 1h --chain
step "4. inspect it as a peer would: rules, key, chain to the bundle" \
    "$W" svid inspect --cert frontend.pem --key frontend.key --bundle root.pem
step "5. the same SVID two hours from now: expired, refused (fail closed)" \
    "$W" svid inspect --cert frontend.pem --bundle root.pem \
    --at "$(date -u -d '+2 hours' +%Y-%m-%dT%H:%M:%SZ)"
step "6. the root as a SPIFFE trust bundle (JWK Set), as agents will receive it" \
    "$W" bundle convert --td cluster.local --in root.pem --sequence 1 --refresh-hint 5m
"$W" bundle convert --td cluster.local --in root.pem >root.json
printf '{"trust_domains": {"partner.example": %s}}\n' "$(cat root.json)" >filed-wrong.json
step "   the same root filed under another trust domain never vouches for cluster.local" \
    "$W" svid inspect --cert frontend.pem --bundle filed-wrong.json
step "7. presented with the wrong private key: refused" \
    "$W" svid inspect --cert frontend.pem --key ca.key
step "8. SPIFFE IDs, strictly: one valid, three invalid, each with the rule it breaks" \
    "$W" id check spiffe://cluster.local/ns/shop/sa/frontend spiffe://Cluster.local/ns/shop \
    spiffe://cluster.local/ns/../sa spiffe://cluster.local:443/ns/shop

ex=$repo/deploy/examples
step "9. policy: the example policies validate" \
    "$W" policy check -f "$ex"
step "10. who may call whom: frontend -> backend:9101, and every policy's say in it" \
    "$W" policy explain -f "$ex/policies" --from spiffe://cluster.local/ns/shop/sa/frontend \
    --to-workload shop/backend,app=backend --port 9101
step "11. a plaintext peer against a STRICT namespace: refused before authorization" \
    "$W" policy explain -f "$ex/policies" --from unauthenticated \
    --to-workload shop/backend,app=backend --port 8080

printf '\nweftctl is at %s; try `%s --help`.\n' "$W" "$W"
