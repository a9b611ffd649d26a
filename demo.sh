#!/usr/bin/env bash
# The main command: starts a real weft mesh on this machine and shows it doing its job.
#   the node   weft-ca and weft-agent in this machine's network namespace
#   the pods   frontend, backend, intruder: network namespaces on a bridge, each with
#              `weftctl iptables install`, its own weft-proxy and an app nobody here wrote
#              (python3 -m http.server in backend, curl in frontend and intruder)
#   the steps  1 the identities minted; 2 frontend -> backend over mTLS, with the access-log
#              lines and a capture on the bridge (TLS 1.3, the body not visible); 3 intruder
#              refused, with the deny line and `weftctl policy explain`; 4 a slow download
#              that spans a rotation of the SVIDs and arrives intact; 5 `weftctl scan`, the
#              independent check, catching a renewal loop that stopped (the agent frozen)
# Every step is checked: exit 0 only if all behaved. Needs root. With a terminal on stdin it
# waits for Enter between steps; without one (CI, `./demo.sh </dev/null`) it runs straight
# through. --keep leaves the mesh running until Ctrl-C. Ctrl-C, an error or the end removes
# every namespace, bridge, rule and process it made. The body is tools/demo/mesh.sh.
set -euo pipefail
cd "$(dirname "$0")"

usage() {
    cat <<'EOF'
usage: ./demo.sh [--keep]

Starts a real weft mesh on this machine (a CA, a node agent, three pods as network
namespaces on a bridge, each with its sidecar proxy and an ordinary app) and shows it at
work: identities, an allowed call over mutual TLS seen on the wire, a refused one and why,
a certificate rotation under a long download, and weftctl scan catching a renewal loop that
stopped. Exit 0 only if every step behaved.

  --keep   leave the mesh running at the end and print how to poke at it; Ctrl-C cleans up

Needs root (network namespaces, a bridge, iptables). Installs the Debian packages it needs
(tools/install-deps.sh --demo) and builds weft with Bazel (-c opt) first.
EOF
}

for a in "$@"; do
    case $a in
    --keep) ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done

if [[ $(id -u) -ne 0 ]]; then
    echo "demo.sh: needs root: it makes network namespaces, a bridge, veths and iptables rules," >&2
    echo "and runs each pod's proxy and app under uids of their own. Run: sudo ./demo.sh" >&2
    exit 1
fi

tools/install-deps.sh --demo
targets=(//ca:weft-ca //agent:weft-agent //proxy:weft-proxy //cli:weftctl)
echo "building weft: bazel build -c opt ${targets[*]}" >&2
log=$(mktemp "${TMPDIR:-/tmp}/weft-demo-build.XXXXXX")
if ! bazel build -c opt "${targets[@]}" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    rm -f "$log"
    echo "demo.sh: the build failed" >&2
    exit 1
fi
rm -f "$log"
# the output tree of this configuration, whatever the bazel-bin link points at meanwhile
bin=$(bazel info -c opt bazel-bin 2>/dev/null)
exec tools/demo/mesh.sh --bin "$bin" "$@"
