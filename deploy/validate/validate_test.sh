#!/usr/bin/env bash
# //deploy:validate_test: weft's Kubernetes manifests, checked offline (no API server here).
#   1. every kustomization under deploy/ renders: KUBECONFIG=/dev/null kubectl kustomize;
#   2. every built-in object of each rendering survives kubectl's typed decode
#      (`kubectl set image --local`: a type error such as replicas: "three" fails it);
#   3. the rules of check-manifests.mjs hold for each rendering (selectors, securityContext,
#      resources, one image, the webhook's namespaceSelector, every flag in the binaries' --help),
#      and those of check-wiring.mjs (node attestation with a projected service account token,
#      or join tokens in overlays/join-tokens; the policy from the API server with list+watch
#      RBAC only; the injector's HTTPS /ready probe and --image);
#   4. every custom resource (deploy/examples/**, the policy objects of each rendering)
#      validates against the CRD schemas and CEL rules (validate-crs.mjs), `weftctl policy
#      check` accepts the policy objects of each rendering, and `weftctl policy explain` decides
#      as each overlay promises (STRICT refuses plaintext mesh-wide, PERMISSIVE does not);
#   5. negative cases (validate/testdata/bad-*.yaml) fail each check with the expected message,
#      so none of the above can pass vacuously.
# Needs kubectl (1.32 here) and the npm packages of validate/package-lock.json, installed by
# `tools/install-deps.sh --test` into ${XDG_CACHE_HOME:-$HOME/.cache}/weft/deploy-validate.
# Args: WEFT_CA WEFT_AGENT WEFTCTL WEFT_INJECTOR (paths of the binaries). Ends with "validate: N passed, M failed".
set -uo pipefail

ca_bin=$(realpath "$1")
agent_bin=$(realpath "$2")
weftctl=$(realpath "$3")
injector_bin=$(realpath "$4")

pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    echo "FAIL: $*" >&2
}
die() {
    echo "validate_test: $*" >&2
    echo "validate: $pass passed, $((fail + 1)) failed"
    exit 1
}

command -v kubectl >/dev/null || die "kubectl not found on PATH (this test needs kubectl >= 1.27 for kustomize and --local decodes)"
command -v node >/dev/null || die "node not found: run tools/install-deps.sh --test"

# The npm packages: installed by tools/install-deps.sh --test, never fetched here.
home=${HOME:-}
if [[ -z "$home" || "$home" == "${TEST_TMPDIR:-/nonexistent}"* || ! -d "$home" ]]; then
    home=$(getent passwd "$(id -u)" | cut -d: -f6)
fi
cache=${XDG_CACHE_HOME:-$home/.cache}/weft/deploy-validate
want=$(cat deploy/validate/package.json deploy/validate/package-lock.json | sha256sum | cut -d' ' -f1)
[[ -d "$cache/node_modules/ajv" && -d "$cache/node_modules/@marcbachmann/cel-js" &&
    -d "$cache/node_modules/yaml" ]] ||
    die "$cache/node_modules is missing ajv, @marcbachmann/cel-js or yaml: run tools/install-deps.sh --test"
[[ "$(cat "$cache/stamp" 2>/dev/null)" == "$want" ]] ||
    die "$cache was installed from another deploy/validate/package-lock.json: run tools/install-deps.sh --test"

tmp=$(mktemp -d "${TEST_TMPDIR:-/tmp}/validate.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# A real copy (runfiles are symlinks, which kustomize's load restrictor may refuse), with the
# installed packages beside the scripts for Node's module resolution.
cp -rL deploy "$tmp/deploy"
ln -s "$cache/node_modules" "$tmp/deploy/validate/node_modules"
cd "$tmp/deploy" || die "cannot enter $tmp/deploy"
V=validate

crd_args=()
for f in base/crds/*.yaml; do crd_args+=(--crd "$f"); done
[[ ${#crd_args[@]} -eq 6 ]] && ok || bad "expected 3 CRDs in base/crds, found $((${#crd_args[@]} / 2))"

# decode_builtin FILE: kubectl's typed decode of every built-in object of FILE. `set image`
# decodes each object into its Go type, then refuses those without a pod template: that
# refusal is the expected answer for them, a decode error is not.
decode_builtin() {
    node $V/select-builtin.mjs security.weft.dev <"$1" >"$tmp/builtin.yaml" 2>"$tmp/sel.err" ||
        { cat "$tmp/sel.err" >&2; return 1; }
    local kept
    kept=$(sed -n 's/^select-builtin: \([0-9]*\) built-in objects kept.*/\1/p' "$tmp/sel.err")
    KUBECONFIG=/dev/null kubectl set image --local -f "$tmp/builtin.yaml" '*=weft-decode-check' \
        -o name >"$tmp/dec.out" 2>"$tmp/dec.raw"
    # some messages break after the object's name: join a line that starts with a space
    tr '\n' '\001' <"$tmp/dec.raw" | sed 's/\x01 / /g' | tr '\001' '\n' >"$tmp/dec.err"
    local templated others decode_errs
    templated=$(grep -c . "$tmp/dec.out")
    others=$(grep -c 'the object is not a pod or does not have a pod template' "$tmp/dec.err")
    decode_errs=$(grep -v 'the object is not a pod or does not have a pod template' "$tmp/dec.err" |
        grep -c 'error:')
    if [[ $decode_errs -ne 0 || $((templated + others)) -ne $kept || $kept -eq 0 ]]; then
        echo "$1: $kept built-in objects, $templated decoded with pod templates, $others without, $decode_errs errors:" >&2
        grep 'error:' "$tmp/dec.err" | grep -v 'not a pod or does not have' >&2
        return 1
    fi
    return 0
}

# policy_of RENDERED DIR: the policy objects (group security.weft.dev) of RENDERED, the ones
# weft-ca reads from the API server once applied, written to DIR/policy.yaml.
policy_of() {
    rm -rf "$2" && mkdir -p "$2" && node $V/select-group.mjs security.weft.dev <"$1" >"$2/policy.yaml"
}

# explain DIR FROM PORT: the first line of `weftctl policy explain`'s answer for a connection
# from FROM to workload shop/backend (app=backend), a namespace no overlay names.
explain() {
    "$weftctl" policy explain -f "$1" --from "$2" --to-workload shop/backend,app=backend --port "$3" |
        head -1
}

# 1-4 for each kustomization
mapfile -t kdirs < <(find . -name kustomization.yaml -not -path './validate/*' -printf '%h\n' | sort)
[[ ${#kdirs[@]} -ge 5 ]] && ok || bad "expected base and 4 overlays, found: ${kdirs[*]}"
for d in "${kdirs[@]}"; do
    name=${d#./}
    out="$tmp/${name//\//_}.yaml"
    if ! KUBECONFIG=/dev/null timeout 60 kubectl kustomize "$d" >"$out" 2>"$tmp/k.err"; then
        bad "$name: kubectl kustomize failed: $(cat "$tmp/k.err")"
        continue
    fi
    ok
    decode_builtin "$out" && ok || bad "$name: kubectl's typed decode refused an object"
    node $V/check-manifests.mjs --root-ok DaemonSet/weft-agent --help-of "weft-ca=$ca_bin" \
        --help-of "weft-agent=$agent_bin" --help-of "weft-injector=$injector_bin" "$out" >"$tmp/c.out" 2>&1 && ok ||
        bad "$name: $(cat "$tmp/c.out")"
    mode=psat
    [[ "$name" == overlays/join-tokens ]] && mode=join-tokens
    node $V/check-wiring.mjs --mode $mode "$out" >"$tmp/c.out" 2>&1 && ok ||
        bad "$name: $(cat "$tmp/c.out")"
    node $V/validate-crs.mjs "${crd_args[@]}" "$out" >"$tmp/v.out" 2>&1 && ok ||
        bad "$name: custom resources in the rendering: $(cat "$tmp/v.out")"
    if policy_of "$out" "$tmp/policy-${name//\//_}" 2>"$tmp/p.err"; then
        "$weftctl" policy check -f "$tmp/policy-${name//\//_}" >"$tmp/w.out" 2>&1 && ok ||
            bad "$name: weftctl policy check of its policy objects: $(cat "$tmp/w.out")"
    else
        bad "$name: no policy objects in the rendering: $(cat "$tmp/p.err")"
    fi
done

# The base joins nodes with PSAT: the projected token volume and the flags, in the rendering.
b="$tmp/base.yaml"
for want in 'audience: weft-ca' 'expirationSeconds: 3600' 'path: token' \
    'mountPath: /var/run/secrets/weft' '--psat-token-file=/var/run/secrets/weft/token' \
    '--psat-issuer=https://kubernetes.default.svc.cluster.local' '--psat-jwks=/etc/weft/psat/jwks.json' \
    'name: weft-ca-psat-jwks' '--policy-source=kubernetes'; do
    grep -qF -- "$want" "$b" && ok || bad "base: the rendering has no \"$want\""
done
for gone in 'weft-agent-join-tokens' '--join-token' '--policy-dir' 'name: weft-policy'; do
    grep -qF -- "$gone" "$b" && bad "base: the rendering still has \"$gone\"" || ok
done
jt="$tmp/overlays_join-tokens.yaml"
grep -qF -- '--join-token-file=/etc/weft/join/$(NODE_NAME)' "$jt" && ok ||
    bad "overlays/join-tokens: no --join-token-file"
grep -qF -- '--psat-' "$jt" && bad "overlays/join-tokens: a --psat- flag left" || ok

# What the overlays promise, in the rendered objects.
grep -q 'mode: STRICT' "$tmp/overlays_strict.yaml" && ok || bad "overlays/strict: no STRICT PeerAuthentication"
grep -q 'mode: STRICT' "$tmp/overlays_permissive.yaml" && bad "overlays/permissive: a STRICT mode" || ok
grep -q 'mode: PERMISSIVE' "$tmp/overlays_permissive.yaml" && ok || bad "overlays/permissive: no PERMISSIVE mode"
# ... and as weftctl decides with each rendering's policy objects (mesh-wide: shop is no
# namespace of theirs)
peer=spiffe://cluster.local/ns/shop/sa/frontend
for o in overlays_strict overlays_join-tokens; do
    got=$(explain "$tmp/policy-$o" unauthenticated 8080)
    [[ "$got" == 'decision=deny policy=weft-system/mesh-mtls rule=- reason=mtls-strict' ]] && ok ||
        bad "$o: a plaintext peer of shop/backend: $got"
done
got=$(explain "$tmp/policy-overlays_permissive" unauthenticated 8080)
[[ "$got" == 'decision=allow policy=- rule=- reason=default-allow' ]] && ok ||
    bad "overlays/permissive: a plaintext peer of shop/backend: $got"
got=$(explain "$tmp/policy-overlays_strict" "$peer" 8080)
[[ "$got" == 'decision=allow policy=- rule=- reason=default-allow' ]] && ok ||
    bad "overlays/strict: an mTLS peer of shop/backend: $got"
got=$(explain "$tmp/policy-overlays_example-org" "$peer" 8080)
[[ "$got" == 'decision=deny policy=- rule=- reason=default-deny' ]] && ok ||
    bad "overlays/example-org: an mTLS peer of shop/backend, default-deny: $got"
eo="$tmp/overlays_example-org.yaml"
[[ $(grep -c -- '--trust-domain=example.org' "$eo") -eq 2 ]] && ok ||
    bad "overlays/example-org: weft-ca and weft-agent must both get --trust-domain=example.org"
grep -q -- '--trust-domain=cluster.local' "$eo" && bad "overlays/example-org: cluster.local left" || ok
grep -q -- '--node-ttl=12h' "$eo" && ok || bad "overlays/example-org: --node-ttl not patched"
grep -q 'defaultAction: DENY' "$eo" && ok || bad "overlays/example-org: MeshConfig not default-deny"
[[ $(grep -c 'image: registry.example.org/weft:0.1.0-custom' "$eo") -eq 3 ]] && ok ||
    bad "overlays/example-org: the image is not replaced in all three workloads"
grep -q -- '--psat-issuer=https://oidc.example.org/k8s' "$eo" && ok || bad "overlays/example-org: --psat-issuer not patched"

# The examples, read-only input of this test.
mapfile -t examples < <(find examples -name '*.yaml' -o -name '*.yml' | sort)
node $V/validate-crs.mjs "${crd_args[@]}" "${examples[@]}" >"$tmp/v.out" 2>&1 && ok ||
    bad "deploy/examples: $(cat "$tmp/v.out")"
grep -Eq 'validate-crs: (1[0-9]|[2-9][0-9]) objects checked' "$tmp/v.out" && ok ||
    bad "deploy/examples: expected at least 10 custom resources checked: $(tail -1 "$tmp/v.out")"

# 5. negative cases: each must fail, with the message that says why.
expect_fail() { # FILE PATTERN COMMAND...
    local file=$1 pattern=$2
    shift 2
    if "$@" "$file" >"$tmp/n.out" 2>&1; then
        bad "$file: accepted, but it must fail"
    elif ! grep -q -- "$pattern" "$tmp/n.out"; then
        bad "$file: failed without \"$pattern\": $(cat "$tmp/n.out")"
    else
        ok
    fi
}
vcr=(node $V/validate-crs.mjs "${crd_args[@]}")
expect_fail $V/testdata/bad-enum.yaml 'spec.action: must be equal to one of the allowed values' "${vcr[@]}"
expect_fail $V/testdata/bad-unknown-field.yaml 'spec.rules\[0\]: must NOT have additional properties "form"' "${vcr[@]}"
expect_fail $V/testdata/bad-cel-range.yaml 'ports\[0\]: in a port range "N-M", N must not be greater than M' "${vcr[@]}"
expect_fail $V/testdata/bad-cel-portlevel.yaml 'spec.portLevelMtls: portLevelMtls requires a selector' "${vcr[@]}"
expect_fail $V/testdata/bad-cluster-scoped.yaml 'is cluster-scoped and takes no namespace' "${vcr[@]}"
expect_fail $V/testdata/bad-cluster-scoped.yaml 'additional properties "defaultActions"' "${vcr[@]}"
expect_fail $V/testdata/bad-builtin.yaml 'spec.replicas of type int32' decode_builtin
expect_fail $V/testdata/bad-builtin-port.yaml 'spec.ports.port of type int32' decode_builtin
chk=(node $V/check-manifests.mjs --help-of "weft-ca=$ca_bin")
for p in 'does not pick the pod template' 'readOnlyRootFilesystem is not true' \
    'capabilities.add \["NET_ADMIN"\]' 'weft-ca has no flag --svid-ttl' 'runAsNonRoot' \
    'without a namespaceSelector that excludes weft-system' 'without a namespaceSelector that excludes kube-system'; do
    expect_fail $V/testdata/bad-manifests.yaml "$p" "${chk[@]}"
done
cw=(node $V/check-wiring.mjs)
for p in 'wants one --psat-issuer with an https:// URL' 'is not in a mount of ConfigMap weft-ca-psat-jwks' \
    'runs as service account weft-system:default, which weft-ca does not allow' \
    'audience is "https://kubernetes.default.svc", weft-ca accepts "weft-ca"' 'expirationSeconds is 86400' \
    'wants --policy-source=kubernetes' 'has --policy-dir' \
    'wants list and watch on security.weft.dev/meshconfigs, exactly; has \["get","list","watch"\]' \
    'granted list on /secrets, which weft-ca never uses' 'readinessProbe is not GET /ready on port 8443 with scheme HTTPS' \
    'is not its own image'; do
    expect_fail $V/testdata/bad-wiring.yaml "$p" "${cw[@]}"
done
# the base rendering is no join-tokens deployment, nor is overlays/join-tokens a PSAT one
expect_fail "$tmp/base.yaml" 'has --psat-token-file with join tokens' "${cw[@]}" --mode join-tokens
expect_fail "$tmp/base.yaml" 'mounts a projected token (psat-token) it does not use' "${cw[@]}" --mode join-tokens
expect_fail "$jt" 'wants one --psat-token-file' "${cw[@]}"
# a kustomization that does not render (a resource outside its root) must fail too
mkdir -p "$tmp/deploy/validate/testdata/bad-kustomization"
printf 'resources:\n  - ../../../base/ca.yaml\n' >"$tmp/deploy/validate/testdata/bad-kustomization/kustomization.yaml"
KUBECONFIG=/dev/null kubectl kustomize "$tmp/deploy/validate/testdata/bad-kustomization" >/dev/null 2>&1 &&
    bad "a kustomization loading a file outside its root rendered" || ok

echo "validate: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
