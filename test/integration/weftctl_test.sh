#!/usr/bin/env bash
# weftctl end to end: exit codes and verdicts of `id check`, `svid inspect` and `svid mint`,
# exactly as an operator (or another implementation's conformance run) calls them.
set -uo pipefail

W=$(realpath "$1")
DATA=test/testdata/go-spiffe
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

# expect CODE DESCRIPTION -- COMMAND...: runs COMMAND, compares its exit code.
expect() {
    local want=$1 what=$2
    shift 3
    "$@" >"$tmp/out" 2>"$tmp/err"
    local got=$?
    if [[ $got -eq $want ]]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: $what: exit $got, want $want" >&2
        sed 's/^/    /' "$tmp/out" "$tmp/err" >&2
    fi
}

# expect_text PATTERN FILE DESCRIPTION: the last command's stdout/stderr matches PATTERN.
expect_text() {
    if grep -qE -- "$1" "$tmp/$2"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: $3: no match for /$1/ in $2:" >&2
        sed 's/^/    /' "$tmp/$2" >&2
    fi
}

## id check
expect 0 "valid IDs" -- "$W" id check spiffe://example.org spiffe://example.org/ns/a/sa/b \
    spiffe://1.2.3.4/.a/..a/... spiffe://a_b-c.d/UPPER/Path
expect 1 "uppercase trust domain" -- "$W" id check spiffe://Example.org/x
expect_text 'Example.org/x.*lowercase.*A4' err "reason names the rule"
expect 1 "one bad among good" -- "$W" id check spiffe://ok.org/x spiffe://td/a//b spiffe://ok.org/y
[[ $(wc -l <"$tmp/err") -eq 1 ]] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: one line per invalid ID" >&2; }
for bad in 'spiffe:/x' 'spiffe://' 'spiffe:///path' 'spiffe://u@td/p' 'spiffe://@td/p' \
    'spiffe://td:8080/p' 'spiffe://td:/p' 'spiffe://[::1]/p' 'spiffe://td/%61' 'spiffe://td/.' \
    'spiffe://td/..' 'spiffe://td/' 'spiffe://td/p?' 'spiffe://td/p#' 'http://td/p' \
    'xspiffe://td/p' 'spiffe://td/a b' ''; do
    expect 1 "invalid ID '$bad'" -- "$W" id check "$bad"
done
long_td=$(printf 'a%.0s' $(seq 256))
expect 1 "256-byte trust domain" -- "$W" id check "spiffe://$long_td"
expect 0 "255-byte trust domain" -- "$W" id check "spiffe://${long_td:1}"
path=$(printf '/%.0s' $(seq 1))$(printf 'x%.0s' $(seq 2027))   # 9 + 12 + 2027 = 2048 bytes
expect 0 "2048-byte ID" -- "$W" id check "spiffe://example.org$path"
expect 1 "2049-byte ID" -- "$W" id check "spiffe://example.org${path}x"
printf 'spiffe://a.org/x\nspiffe://A.org/x\n' >"$tmp/ids"
expect 1 "IDs from stdin" -- bash -c "\"$W\" id check - <\"$tmp/ids\""
expect 1 "an ID with a NUL byte on stdin is judged whole" -- bash -c "printf 'spiffe://td/a\\0b\\n' | \"$W\" id check -"
expect_text 'x00' err "the NUL is shown escaped"
expect 0 "CRLF line ends on stdin" -- bash -c "printf 'spiffe://td/a\\r\\nspiffe://td/b\\r\\n' | \"$W\" id check -"
expect 2 "no IDs on stdin is a usage error" -- bash -c "\"$W\" id check - </dev/null"
expect 2 "no IDs is a usage error" -- "$W" id check

## svid inspect on go-spiffe's data (go-spiffe Parse semantics; time pinned inside the window)
at=2020-03-24T14:30:00Z
x=$DATA/x509svid
expect 0 "leaf+intermediate with its key" -- "$W" svid inspect --cert $x/good-leaf-and-intermediate.pem --key $x/key-pkcs8-ecdsa.pem --at $at
expect 0 "cert then key in one file" -- "$W" svid inspect --cert $x/good-cert-and-key.pem --key $x/good-cert-and-key.pem --at 2020-03-24T15:00:00Z
expect 0 "key then cert in one file" -- "$W" svid inspect --cert $x/good-key-and-cert.pem --key $x/good-key-and-cert.pem --at 2020-03-24T15:00:00Z
expect 0 "RSA leaf only" -- "$W" svid inspect --cert $x/good-leaf-only.pem --key $x/key-pkcs8-rsa.pem --at 2021-01-01T00:00:00Z
expect 1 "same leaf, now expired" -- "$W" svid inspect --cert $x/good-leaf-only.pem --key $x/key-pkcs8-rsa.pem
expect_text 'expired' out "expiry is the reason"
expect 1 "key mismatch" -- "$W" svid inspect --cert $x/good-leaf-and-intermediate.pem --key $x/key-pkcs8-rsa.pem --at $at
expect_text 'does not match private key' out "mismatch reason"
expect 1 "no cert in cert file" -- "$W" svid inspect --cert $x/key-pkcs8-rsa.pem --at $at
expect 1 "no key in key file" -- "$W" svid inspect --cert $x/good-leaf-only.pem --key $x/good-leaf-only.pem --at 2021-01-01T00:00:00Z
expect 1 "key not PEM" -- "$W" svid inspect --cert $x/good-leaf-only.pem --key $x/not-pem --at 2021-01-01T00:00:00Z
expect 1 "cert not PEM" -- "$W" svid inspect --cert $x/not-pem --at $at
expect 1 "corrupt key" -- "$W" svid inspect --cert $x/good-leaf-only.pem --key $x/corrupt-key.pem --at 2021-01-01T00:00:00Z
expect 1 "corrupt cert" -- "$W" svid inspect --cert $x/corrupt-cert.pem --at $at
for f in wrong-leaf-empty-id wrong-leaf-ca-true wrong-leaf-no-digital-signature wrong-leaf-cert-sign \
    wrong-leaf-crl-sign wrong-intermediate-no-ca wrong-intermediate-no-key-cert-sign; do
    expect 1 "$f" -- "$W" svid inspect --cert $x/$f.pem --key $x/key-pkcs8-rsa.pem --at $at
done
expect_text "keyCertSign" out "signing-cert reason"
expect 2 "missing file is unreadable input" -- "$W" svid inspect --cert "$tmp/absent.pem"
expect 2 "bad --at" -- "$W" svid inspect --cert $x/good-leaf-only.pem --at yesterday
expect 2 "no --cert" -- "$W" svid inspect

## mint, then inspect against bundles
cd "$tmp"
expect 0 "mint root" -- "$W" svid mint root --td example.org --cert root.pem --key root.key
expect 0 "mint intermediate" -- "$W" svid mint intermediate --td example.org --ca-cert root.pem --ca-key root.key --cert int.pem --key int.key
expect 0 "mint leaf with chain" -- "$W" svid mint leaf --id spiffe://example.org/ns/shop/sa/web --ca-cert int.pem --ca-key int.key --cert leaf.pem --key leaf.key --chain --ttl 1h
[[ $(stat -c %a leaf.key) == 600 ]] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: key mode" >&2; }
expect 0 "minted chain verifies to its root" -- "$W" svid inspect --cert leaf.pem --key leaf.key --bundle root.pem
expect_text 'chain verified' out "verdict says the chain was verified"
expect_text '^spiffe_id: +spiffe://example.org/ns/shop/sa/web$' out "ID printed"
expect 1 "expired at --at + 2h" -- "$W" svid inspect --cert leaf.pem --bundle root.pem --at "$(date -u -d '+2 hours' +%Y-%m-%dT%H:%M:%SZ)"
expect 1 "not valid yet" -- "$W" svid inspect --cert leaf.pem --at 2001-01-01T00:00:00Z
expect 0 "mint other trust domain" -- "$W" svid mint root --td other.org --cert other.pem --key other.key
expect 1 "another trust domain's root (it names other.org)" -- "$W" svid inspect --cert leaf.pem --bundle other.pem
expect_text 'untrusted' out "B9: no bundle for example.org"
expect 2 "a bundle said to be example.org's whose root names other.org" -- "$W" svid inspect --cert leaf.pem --bundle other.pem --bundle-td example.org
expect_text 'authorities name spiffe://other.org' err "mismatch reason"
expect 0 "mint a second example.org root" -- "$W" svid mint root --td example.org --cert root2.pem --key root2.key
expect 1 "the other example.org root" -- "$W" svid inspect --cert leaf.pem --bundle root2.pem
expect_text 'does not verify' out "chain failure reason"
cat root2.pem root.pem >both.pem
expect 0 "bundle holding two roots (rotation overlap)" -- "$W" svid inspect --cert leaf.pem --bundle both.pem
expect 1 "a bundle whose authority has no SPIFFE ID is taken as the leaf's" -- "$W" svid inspect --cert leaf.pem --bundle "$OLDPWD/$DATA/x509bundle/cert.pem"
expect_text 'carry no SPIFFE ID; taken as the bundle of the leaf' out "the assumption is printed"
expect_text '1 X.509 authority for spiffe://example.org' out "and used for example.org"
cat other.pem root.pem >mixed.pem
expect 2 "a PEM bundle mixing two trust domains" -- "$W" svid inspect --cert leaf.pem --bundle mixed.pem
head -n "$(grep -c '' leaf.pem | awk '{print int($1/2)}')" leaf.pem >leaf-only.pem
expect 1 "leaf without its intermediate" -- "$W" svid inspect --cert leaf-only.pem --bundle root.pem
expect 2 "a certificate is not a CSR" -- "$W" svid mint leaf --id spiffe://example.org/csr --ca-cert root.pem --ca-key root.key --cert csr-leaf.pem --csr leaf.pem
expect_text 'not a PKCS#10' err "CSR reason"
expect 2 "mint leaf without a path" -- "$W" svid mint leaf --id spiffe://example.org --ca-cert root.pem --ca-key root.key --cert x.pem --key x.key
expect 2 "mint leaf in another trust domain's CA" -- "$W" svid mint leaf --id spiffe://example.org/x --ca-cert other.pem --ca-key root.key --cert x.pem --key x.key
expect 1 "mint leaf for a trust domain the CA does not hold" -- "$W" svid mint leaf --id spiffe://other.org/x --ca-cert root.pem --ca-key root.key --cert x.pem --key x.key
expect 0 "ed25519 root" -- "$W" svid mint root --td ed.org --key-type ed25519 --cert ed.pem --key ed.key
expect 0 "ed25519 leaf" -- "$W" svid mint leaf --id spiffe://ed.org/w --key-type ed25519 --ca-cert ed.pem --ca-key ed.key --cert edl.pem --key edl.key
expect 0 "ed25519 chain verifies" -- "$W" svid inspect --cert edl.pem --key edl.key --bundle ed.pem
sb="$OLDPWD/$DATA/spiffebundle"
expect 1 "go-spiffe's bundle (its authority names spiffe://local)" -- "$W" svid inspect --cert edl.pem --bundle "$sb/spiffebundle_valid_1.json"
expect_text 'for spiffe://local$' out "the bundle's trust domain comes from its authority"
expect_text 'untrusted' out "and it does not vouch for ed.org"
expect 2 "SPIFFE bundle JSON with a jwt-svid key without kid" -- "$W" svid inspect --cert edl.pem --bundle "$sb/spiffebundle_missing_kid.json"
expect_text 'kid' err "bundle reason"
printf '{"trust_domains": {"other.org": {"keys": []}}}' >map.json
expect 1 "bundle map without the leaf's trust domain" -- "$W" svid inspect --cert edl.pem --bundle map.json
expect_text 'no X.509 authorities for trust domain "ed.org"' out "untrusted trust domain reason"
expect 0 "bundle to JSON" -- "$W" bundle convert --td example.org --in both.pem --sequence 7 --refresh-hint 5m
cp "$tmp/out" both.json
expect_text '"spiffe_sequence": 7' out "sequence written"
expect_text '"spiffe_refresh_hint": 300' out "refresh hint written in seconds"
expect_text '"use": "x509-svid"' out "x509-svid JWKs"
expect 0 "JSON bundle verifies the chain" -- "$W" svid inspect --cert leaf.pem --bundle both.json
expect 0 "JSON back to PEM" -- "$W" bundle convert --td example.org --in both.json --format pem
cmp -s "$tmp/out" both.pem && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: PEM -> JSON -> PEM is not byte-identical" >&2; }
printf '{"trust_domains": {"other.org": %s}}' "$(cat both.json)" >filed-wrong.json
expect 1 "a root filed under another trust domain does not vouch (B9)" -- "$W" svid inspect --cert leaf.pem --bundle filed-wrong.json
expect_text 'no X.509 authorities for trust domain "example.org"' out "B9 reason"
printf '{"trust_domains": {"example.org": %s, "other.org": {"keys": []}}}' "$(cat both.json)" >map.json
expect 0 "bundle map with the right trust domain" -- "$W" svid inspect --cert leaf.pem --bundle map.json
expect 0 "bundle convert infers the trust domain from the root" -- "$W" bundle convert --in root.pem
expect 0 "and reads it back" -- bash -c "\"$W\" bundle convert --in root.pem >r.json && \"$W\" bundle convert --in r.json --format pem"
cmp -s "$tmp/out" root.pem && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: inferred round trip" >&2; }
expect 2 "bundle convert needs --td when no authority names one" -- "$W" bundle convert --in "$OLDPWD/$DATA/x509bundle/cert.pem"
expect_text 'name it with --td' err "the reason says what to do"
expect 0 "bundle convert picks one trust domain out of a map" -- "$W" bundle convert --in map.json --td example.org --format pem
cmp -s "$tmp/out" both.pem && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: map pick" >&2; }
expect 2 "bundle convert of a two-domain map without --td" -- "$W" bundle convert --in map.json
expect 1 "bundle convert of a damaged bundle" -- "$W" bundle convert --td example.org --in "$sb/spiffebundle_missing_kid.json"
expect 2 "bundle convert with a bad trust domain" -- "$W" bundle convert --td Example.org --in both.pem
expect 0 "ca init" -- "$W" ca init --trust-domain mesh.example --out ca-dir
[[ $(stat -c %a ca-dir) == 700 && $(stat -c %a ca-dir/root.key) == 600 && $(stat -c %a ca-dir/intermediate.key) == 600 ]] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: ca init modes" >&2; }
expect 0 "a leaf from the new intermediate verifies to the new bundle" -- bash -c "\"$W\" svid mint leaf --id spiffe://mesh.example/ns/a/sa/b --ca-cert ca-dir/intermediate.pem --ca-key ca-dir/intermediate.key --cert ci-leaf.pem --key ci-leaf.key --chain && \"$W\" svid inspect --cert ci-leaf.pem --bundle ca-dir/bundle.json"
expect 1 "ca init never overwrites" -- "$W" ca init --trust-domain mesh.example --out ca-dir
expect_text 'refusing to overwrite' err "the reason"
expect 2 "ca init with an intermediate outliving the root" -- "$W" ca init --trust-domain x.example --out ca2 --root-ttl 1h --intermediate-ttl 2h
expect 0 "help" -- "$W" --help
expect 0 "svid inspect --help" -- "$W" svid inspect --help
expect 2 "unknown command" -- "$W" frobnicate

echo "weftctl_test: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
