#!/usr/bin/env bash
# Installs the Debian packages weft builds and tests with, when any is missing; says nothing
# and takes well under a second when all are there. Usage: tools/install-deps.sh [--test]
# (--test adds what the test command needs beyond the build: clang and libFuzzer, and for the
# SPIFFE interop test node (Debian's nodejs and npm, unless a node is already on PATH) and
# test/interop/node_modules, from `npm ci` of its package-lock.json when missing or older).
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
)
test_pkgs=(
    clang libclang-rt-14-dev libfuzzer-14-dev   # --config=fuzz
    clang-format                                # the format check
)

pkgs=("${build_pkgs[@]}")
if [[ "${1:-}" == "--test" ]]; then
    pkgs+=("${test_pkgs[@]}")
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [[ "${1:-}" == "--test" ]]; then
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
fi

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

# The interop test's client libraries (@grpc/grpc-js, @grpc/proto-loader), pinned by
# test/interop/package-lock.json; the test itself never reaches the network. npm writes
# node_modules/.package-lock.json last, so it is the install's date.
if [[ "${1:-}" == "--test" ]]; then
    interop=test/interop
    if [[ ! "$interop/node_modules/.package-lock.json" -nt "$interop/package-lock.json" ]]; then
        echo "install-deps: npm ci in $interop" >&2
        (cd "$interop" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
    fi
fi
