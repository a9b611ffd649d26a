#!/usr/bin/env bash
# Installs the Debian packages weft builds and tests with, when any is missing; says nothing
# and takes well under a second when all are there. Usage:
# tools/install-deps.sh [--test] [--bench] [--demo]
# (--test adds what the test command needs beyond the build: clang and libFuzzer, clang-format,
# and for the SPIFFE interop test's independent client, test/interop/spiffe_client.go, Go and
# grpc-go, Go protobuf, protoc and protoc-gen-go; --demo what ./demo.sh runs beside weft; all
# Debian packages: nothing else is fetched).
set -euo pipefail
cd "$(dirname "$0")/.."

build_pkgs=(
    bazel-bootstrap            # Bazel 4.2.3, offline
    bazel-platforms            # @platforms, at /usr/share/bazel/tools/platforms
    gcc libc6-dev
    android-libboringssl-dev   # BoringSSL: all TLS and X.509
    libev-dev                  # event loop
    libprotobuf-c-dev protobuf-c-compiler
    libprotobuf-dev            # google/protobuf/struct.proto for the Workload API
    libgrpc-dev                # gRPC core (insecure credentials only; DESIGN.md §3)
    libcriterion-dev           # unit tests
    libjansson-dev             # JSON
    libyaml-dev                # YAML
    libhttp-parser-dev         # HTTP/1.1 admin endpoints
    libsqlite3-dev             # CA store
    libcurl4-gnutls-dev        # weft-ca's Kubernetes API client (GnuTLS: no OpenSSL symbols)
)
test_pkgs=(
    clang libclang-rt-14-dev libfuzzer-14-dev   # --config=fuzz
    clang-format                                # the format check
    # test/interop/spiffe_client.go, built offline in GOPATH mode from /usr/share/gocode
    golang-go                   # Go 1.19
    golang-google-grpc-dev      # grpc-go 1.33
    golang-google-protobuf-dev  # google.golang.org/protobuf 1.28
    protobuf-compiler           # protoc
    protoc-gen-go               # protoc's Go output
    iptables                    # weftctl iptables at run time; test/integration/iptables_test
    iproute2                    # ip tuntap in iptables_test's namespaces
    # test/e2e: the capture on a pod's veth, the Workload API client that is not weft's
    # (wlapi_client.py: gRPC, protobuf and stubs generated at test time), openssl s_client
    tcpdump
    python3-grpcio python3-protobuf python3-grpc-tools
    openssl
)
# //deploy:validate_test runs Node.js scripts (deploy/validate/) with npm packages; Node >= 14
# for ajv 8. Added to test_pkgs below only when no node/npm is on PATH: a machine may already
# have Node.js from elsewhere, whose nodejs package provides npm and conflicts with Debian's.
node_pkgs=(
    nodejs                      # deploy/validate/*.mjs
    npm                         # npm ci of deploy/validate/package-lock.json
)

# --bench: what //test/bench:mesh_bar (issue 7's performance bar) runs beside weft
bench_pkgs=(wrk haproxy iptables iproute2)

# --demo: what ./demo.sh (tools/demo/) runs beside weft
demo_pkgs=(
    python3                     # backend's app (python3 -m http.server), tools/demo/tlsview.py
    curl                        # frontend's and intruder's app; the proxies' admin sockets
    tcpdump                     # the capture on the bridge
    iproute2                    # namespaces, veths, the bridge; tc paces backend's link
    iptables                    # weftctl iptables in each pod
    util-linux                  # setpriv: each proxy and app under a uid of its own
)

pkgs=("${build_pkgs[@]}")
if [[ " $* " == *" --bench "* ]]; then
    pkgs+=("${bench_pkgs[@]}")
fi
if [[ " $* " == *" --demo "* ]]; then
    pkgs+=("${demo_pkgs[@]}")
fi
if [[ "${1:-}" == "--test" ]]; then
    pkgs+=("${test_pkgs[@]}")
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        pkgs+=("${node_pkgs[@]}")
    fi
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [[ ${#missing[@]} -gt 0 ]]; then
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
        sudo=(sudo)
    fi
    echo "install-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q >/dev/null
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# --test: the npm packages of //deploy:validate_test (exact versions, deploy/validate/
# package-lock.json), installed outside the tree where the test looks for them, again only
# when the lockfile changed (the stamp holds the hash of package.json + package-lock.json).
if [[ "${1:-}" == "--test" ]]; then
    dv_src=deploy/validate
    dv_dir=${XDG_CACHE_HOME:-$HOME/.cache}/weft/deploy-validate
    dv_want=$(cat "$dv_src/package.json" "$dv_src/package-lock.json" | sha256sum | cut -d' ' -f1)
    if [[ "$(cat "$dv_dir/stamp" 2>/dev/null)" != "$dv_want" || ! -d "$dv_dir/node_modules" ]]; then
        echo "install-deps: npm ci for $dv_src into $dv_dir" >&2
        mkdir -p "$dv_dir"
        rm -f "$dv_dir/stamp"
        cp "$dv_src/package.json" "$dv_src/package-lock.json" "$dv_dir/"
        (cd "$dv_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
        echo "$dv_want" >"$dv_dir/stamp"
    fi
fi
