#!/usr/bin/env bash
# weftctl inject end to end: files in, files out, compared byte for byte with the golden files
# that k8s/inject_test.c also checks through the JSON Patch path.
set -uo pipefail

W=$(realpath "$1")
D=k8s/testdata/inject
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    echo "FAIL: $*" >&2
}

# golden IN GOLDEN [FLAGS...]: inject IN to a file and to stdout; both are GOLDEN exactly.
golden() {
    local in=$1 want=$2
    shift 2
    if "$W" inject -f "$D/$in" -o "$tmp/out.yaml" "$@" 2>"$tmp/err" &&
        cmp -s "$tmp/out.yaml" "$D/$want"; then ok; else
        bad "inject $in $*: differs from $want"
        diff "$D/$want" "$tmp/out.yaml" | head -20 >&2
        cat "$tmp/err" >&2
    fi
    if "$W" inject -f - "$@" <"$D/$in" >"$tmp/stdout.yaml" 2>/dev/null &&
        cmp -s "$tmp/stdout.yaml" "$D/$want"; then ok; else bad "inject -f - <$in $*"; fi
    # injecting the result again changes nothing
    if "$W" inject -f "$D/$want" "$@" >"$tmp/again.yaml" 2>/dev/null &&
        cmp -s "$tmp/again.yaml" "$D/$want"; then ok; else bad "inject $want $*: not idempotent"; fi
}

golden deployment.yaml deployment.golden.yaml
golden deployment.yaml deployment.classic.golden.yaml --native-sidecar=false
golden pod.yaml pod.golden.yaml
golden multi.yaml multi.golden.yaml
golden jobs.yaml jobs.golden.yaml --native-sidecar=true
golden jobs.yaml jobs.classic.golden.yaml --native-sidecar=false
golden untouched.yaml untouched.golden.yaml

# what was left alone is said, with the reason
"$W" inject -f "$D/untouched.yaml" >/dev/null 2>"$tmp/err"
if grep -q "Pod node-exporter: left alone: hostNetwork" "$tmp/err" &&
    grep -q "Deployment coredns: left alone: namespace kube-system" "$tmp/err" &&
    grep -q "0 object(s) injected" "$tmp/err"; then ok; else bad "skip reasons"; cat "$tmp/err" >&2; fi

# --image
"$W" inject -f "$D/pod.yaml" --image registry.example.com/weft:dev >"$tmp/out.yaml" 2>/dev/null
if [[ $(grep -c "image: registry.example.com/weft:dev" "$tmp/out.yaml") -eq 2 ]]; then ok; else
    bad "--image"; fi

# a v1 List (what `kubectl get -o yaml` writes): its items are injected
cat >"$tmp/list.yaml" <<'YAML'
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web}
  spec: {ports: [{port: 80}]}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web, namespace: shop}
  spec:
    template:
      spec:
        containers: [{name: web, image: web:1}]
YAML
"$W" inject -f "$tmp/list.yaml" >"$tmp/out.yaml" 2>"$tmp/err"
if grep -q "1 object(s) injected" "$tmp/err" && grep -q "name: weft-proxy" "$tmp/out.yaml" &&
    [[ $(grep -c "weft.dev/status" "$tmp/out.yaml") -eq 1 ]]; then ok; else
    bad "v1 List"; cat "$tmp/err" >&2; fi

# an object that cannot be injected: exit 1, the reason, no output file
cat >"$tmp/bad.yaml" <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata: {name: fine}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    metadata:
      annotations: {weft.dev/exclude-inbound-ports: "8080,99999"}
    spec:
      containers: [{name: web, image: web:1}]
YAML
"$W" inject -f "$tmp/bad.yaml" -o "$tmp/bad-out.yaml" 2>"$tmp/err"
rc=$?
if [[ $rc -eq 1 && ! -e "$tmp/bad-out.yaml" ]] &&
    grep -q 'document 2: Deployment shop/web: annotation weft.dev/exclude-inbound-ports: "99999"' \
        "$tmp/err"; then ok; else bad "bad annotation: exit $rc"; cat "$tmp/err" >&2; fi

# YAML errors say where
printf 'kind: Pod\nmetadata: [a, b\n' >"$tmp/broken.yaml"
"$W" inject -f "$tmp/broken.yaml" >/dev/null 2>"$tmp/err"
rc=$?
if [[ $rc -eq 1 ]] && grep -q "broken.yaml: line " "$tmp/err"; then ok; else
    bad "broken YAML: exit $rc"; cat "$tmp/err" >&2; fi

# usage
for args in "" "-f" "-f $D/pod.yaml --native-sidecar=maybe" "-f $D/pod.yaml extra" \
    "-f $tmp/missing.yaml"; do
    # shellcheck disable=SC2086
    "$W" inject $args >/dev/null 2>&1
    rc=$?
    if [[ $rc -eq 2 ]]; then ok; else bad "inject $args: exit $rc, want 2"; fi
done
"$W" inject --help >"$tmp/help" 2>&1
if [[ $? -eq 0 ]] && grep -q "quitquitquit" "$tmp/help" && grep -q "comments" "$tmp/help"; then ok
else bad "--help"; fi
"$W" --help | grep -q "inject -f" && ok || bad "weftctl --help lists inject"

echo "inject_cli_test: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
