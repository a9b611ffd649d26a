#!/usr/bin/env bash
# weftctl policy check / explain end to end: the example policies validate, every scenario of
# deploy/examples/SCENARIOS.md gets its documented answer, and broken policies are refused with
# FILE:LINE:COLUMN and the field path.
set -uo pipefail

W=$(realpath "$1")
EX=deploy/examples
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

"$W" policy check -f $EX/policies >"$tmp/out" 2>&1 && ok || bad "examples do not validate: $(cat "$tmp/out")"
"$W" policy check -f $EX >"$tmp/out" 2>&1 && ok || bad "examples with the MeshConfig do not validate"
grep -q '1 MeshConfig' "$tmp/out" && ok || bad "the MeshConfig was not read"

# Each table row: | N | --from | --to-workload | --port | decision | policy | rule | reason | ... |
rows=0
while IFS='|' read -r _ n from workload port decision policy rule reason _; do
    n=$(echo $n)
    [[ "$n" =~ ^[0-9]+$ ]] || continue
    rows=$((rows + 1))
    dir=$EX/policies
    if [[ "$from" == *'**mesh**'* ]]; then dir=$EX; fi
    from=$(echo "$from" | sed 's/\*\*mesh\*\*//; s/`//g' | xargs)
    workload=$(echo "$workload" | tr -d '`' | xargs)
    policy=$(echo "$policy" | tr -d '`' | xargs)
    want="decision=$(echo $decision) policy=$policy rule=$(echo $rule) reason=$(echo $reason)"
    got=$("$W" policy explain -f "$dir" --from "$from" --to-workload "$workload" --port $(echo $port) | head -n 1)
    rc=${PIPESTATUS[0]}
    want_rc=1
    [[ "$(echo $decision)" == allow ]] && want_rc=0
    if [[ "$got" == "$want"* && $rc -eq $want_rc ]]; then ok; else bad "scenario $n: got '$got' (exit $rc), want '$want' (exit $want_rc)"; fi
done < <(cat $EX/SCENARIOS.md; sed -n '/^## Policy/,/^## Layout/p' README.md)
[[ $rows -ge 30 ]] && ok || bad "only $rows scenarios found in SCENARIOS.md and the README"

# One broken policy per kind of mistake: exit 1, FILE:LINE:COLUMN: PATH: reason.
refuse() { # refuse NAME EXPECTED_REGEX  (policy text on stdin)
    local f="$tmp/$1.yaml"
    cat >"$f"
    "$W" policy check -f "$f" >"$tmp/out" 2>&1
    local rc=$?
    if [[ $rc -eq 1 ]] && grep -qE "^$f:[0-9]+:[0-9]+: $2" "$tmp/out"; then ok; else bad "$1: exit $rc, output: $(cat "$tmp/out")"; fi
}
head='apiVersion: security.weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: p, namespace: shop}'
refuse typo 'spec.rules\[0\].form: unknown field "form" \(did you mean "from"\?\)' <<POLICY
$head
spec:
  action: ALLOW
  rules:
  - form:
    - principals: ["*"]
POLICY
refuse bad-id 'spec.rules\[0\].from\[0\].principals\[1\]: not a SPIFFE ID' <<POLICY
$head
spec:
  action: ALLOW
  rules:
  - from:
    - principals: ["spiffe://cluster.local/ns/a/sa/b", "spiffe://Cluster.local/ns/a/sa/b"]
POLICY
refuse bad-port 'spec.rules\[0\].to\[0\].ports\[0\]: not a port: "70000"' <<POLICY
$head
spec:
  action: ALLOW
  rules:
  - to:
    - ports: ["70000"]
POLICY
refuse bad-range 'spec.rules\[0\].to\[0\].notPorts\[0\]: port range "9100-9000" is reversed' <<POLICY
$head
spec:
  action: ALLOW
  rules:
  - to:
    - notPorts: ["9100-9000"]
POLICY
refuse bad-action 'spec.action: "allow" is not one of ALLOW, DENY, AUDIT' <<POLICY
$head
spec:
  action: allow
POLICY
refuse wildcard 'spec.rules\[0\].from\[0\].principals\[0\]: misplaced wildcard' <<POLICY
$head
spec:
  action: DENY
  rules:
  - from:
    - principals: ["spiffe://cluster.local/ns/*/sa/x"]
POLICY
refuse duplicate 'metadata.name: AuthorizationPolicy shop/p is defined twice' <<POLICY
$head
spec: {action: ALLOW}
---
$head
spec: {action: DENY}
POLICY
refuse broken-yaml 'broken YAML' <<POLICY
$head
spec: {action: ALLOW
POLICY
"$W" policy explain -f "$tmp/typo.yaml" --from unauthenticated --to-workload shop/x --port 80 >/dev/null 2>&1
[[ $? -eq 2 ]] && ok || bad "explain on an invalid set must exit 2"
"$W" policy explain -f $EX/policies --from spiffe://Bad/x --to-workload shop/x --port 80 >/dev/null 2>&1
[[ $? -eq 2 ]] && ok || bad "explain with a bad --from must exit 2"
"$W" policy explain -f $EX/policies --from unauthenticated --to-workload shop --port 80 >/dev/null 2>&1
[[ $? -eq 2 ]] && ok || bad "explain with a bad --to-workload must exit 2"

echo "policy_test: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
