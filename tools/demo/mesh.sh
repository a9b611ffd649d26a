#!/usr/bin/env bash
# tools/demo/mesh.sh --bin BAZEL_BIN [--keep]: the body of ./demo.sh (which checks for root,
# installs the Debian packages and builds the binaries first, then runs this).
#
# A real mesh on this machine, then five steps that show it at work, each checked:
#   the node   weft-ca (weftctl ca init; intermediates of DEMO_INTERMEDIATE_TTL, which cap the
#              SVIDs) and weft-agent (--claim-cidr 198.18.0.0/15) in the root namespace
#   the pods   frontend, backend, intruder: network namespaces on a bridge, each with
#              `weftctl iptables install`, its weft-proxy under a uid of its own (the entry
#              that uid gets), and an app nobody here wrote: python3 -m http.server (backend),
#              curl (frontend, intruder)
#   the steps  1 identities; 2 frontend -> backend over mTLS, seen on the wire; 3 intruder
#              refused and why; 4 a download that spans a rotation of the SVIDs; 5 weftctl
#              scan reads what the proxies present, then flags the renewal loop (the agent,
#              frozen) as stuck, then sees it recover
# Everything it makes is named after its PID and removed on exit, Ctrl-C or error (the trap
# below); a run killed with SIGKILL is cleaned up by the next run. Exit 0 only if every check
# passed.
set -uo pipefail
# Debian's programs (python3 and curl run as the pods' uids: no shims under /root)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

BIN='' KEEP=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --bin) BIN=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "tools/demo/mesh.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -n $BIN && -x $BIN/ca/weft-ca ]] || { echo "tools/demo/mesh.sh: --bin BAZEL_BIN (with ca/weft-ca in it) is required" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "tools/demo/mesh.sh: needs root (network namespaces, a bridge, iptables)" >&2; exit 1; }
HERE=$(cd "$(dirname "$0")" && pwd)

# --- the demo's settings ----------------------------------------------------------------------
TD=cluster.local
NODE=demo-node
# Each intermediate lives 40 s and is replaced at half its life; an SVID never outlives the
# intermediate that signed it, so the SVIDs live 20-40 s and the agent renews each at half its
# life: a rotation every 10-20 s, so that step 4 sees one in well under a minute.
DEMO_INTERMEDIATE_TTL=${DEMO_INTERMEDIATE_TTL:-40s}
PORT=8080
ID=$$
PODS=(frontend backend intruder)
declare -A OCTET=([frontend]=11 [backend]=12 [intruder]=13)
declare -A PROXY_UID=([frontend]=1401 [backend]=1402 [intruder]=1403)
APP_UID=1500 # the apps: no entry names it, so they have no identity of their own
NS_PREFIX=weft-demo-$ID
BR=wdbr$ID

# --- output -------------------------------------------------------------------------------------
if [[ -t 1 ]]; then
    B=$'\033[1m' G=$'\033[32m' R=$'\033[31m' D=$'\033[2m' N=$'\033[0m'
else
    B='' G='' R='' D='' N=''
fi
FAILED=() PASSED=0
title() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
say() { printf '%s\n' "$*" | fold -s -w 100; }
indent() { sed 's/^/    /'; }
cmdline() { printf '%s$ %s%s\n' "$D" "$*" "$N"; }
pass() { PASSED=$((PASSED + 1)); printf '  %sok%s    %s\n' "$G" "$N" "$*"; }
fail() { FAILED+=("$*"); printf '  %sFAILED%s %s\n' "$R" "$N" "$*"; }
check() { # check WHAT COMMAND...: passes when COMMAND exits 0
    local what=$1; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
die() { printf '%sdemo: %s%s\n' "$R" "$*" "$N" >&2; FAILED+=("setup: $*"); exit 1; }

# --- what we make, so that cleanup removes exactly that ------------------------------------------
RUN='' PIDS=() NSES=() MADE_BR=0 FWD_RULE=() KEEP_SLEEP=


stop_pids() { # SIGTERM every process we started (newest first), SIGKILL what is left after 5 s
    local i pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null; done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${PIDS[@]}"; do
            if [[ -e /proc/$pid && $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
                alive=1
            fi
        done
        [[ $alive -eq 0 ]] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    PIDS=()
}

cleanup() {
    local rc=$?
    trap '' INT TERM HUP PIPE # nothing stops the cleanup (a closed terminal or pipe included)
    trap - EXIT
    set +e
    if [[ ${#FAILED[@]} -gt 0 && -n $RUN && -d $RUN/logs ]]; then
        printf '\n%sThe logs, as they were (last lines):%s\n' "$B" "$N" >&2
        for f in "$RUN"/logs/*.log; do
            printf -- '--- %s\n' "$(basename "$f")" >&2
            tail -n 15 "$f" >&2
        done
    fi
    printf '\n%scleaning up:%s stopping %d processes, removing %d namespaces, the bridge %s...\n' \
        "$D" "$N" "${#PIDS[@]}" "${#NSES[@]}" "$BR"
    [[ -n $KEEP_SLEEP ]] && kill "$KEEP_SLEEP" 2>/dev/null
    stop_pids
    for ns in "${NSES[@]}"; do # the pod's veth end and its iptables rules go with it
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    [[ $MADE_BR -eq 1 ]] && ip link del "$BR" 2>/dev/null
    [[ ${#FWD_RULE[@]} -gt 0 ]] && iptables -D FORWARD "${FWD_RULE[@]}" 2>/dev/null
    if [[ -n $RUN && -n ${WEFT_DEMO_LOGS:-} ]]; then
        mkdir -p "$WEFT_DEMO_LOGS" && cp -r "$RUN/logs" "$RUN/policy" "$WEFT_DEMO_LOGS/" &&
            printf 'the logs are kept in %s\n' "$WEFT_DEMO_LOGS"
    fi
    [[ -n $RUN ]] && rm -rf "$RUN"
    printf '%scleaned up.%s\n' "$D" "$N"
    exit "$rc"
}
trap cleanup EXIT
trap 'printf "\ninterrupted\n"; exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP  # the terminal went away
trap 'exit 141' PIPE # so did whatever read our output (| head)

# reap_stale removes what a demo killed with SIGKILL left (its PID is gone): the CA and agent
# (named by their run directory), its namespaces and bridge.
reap_stale() {
    local d pid
    for d in /tmp/weft-demo-*.??????; do
        [[ -d $d ]] || continue
        pid=${d#/tmp/weft-demo-}; pid=${pid%%.*}
        [[ $pid =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null || continue
        for p in $(cat "$d/pids" 2>/dev/null); do
            grep -qF "$d" "/proc/$p/cmdline" 2>/dev/null && kill -KILL "$p" 2>/dev/null
        done
        rm -rf "$d"
    done
    for ns in $(ip netns list | awk '{print $1}'); do
        [[ $ns =~ ^weft-demo-([0-9]+)- ]] && ! kill -0 "${BASH_REMATCH[1]}" 2>/dev/null || continue
        for p in $(ip netns pids "$ns"); do kill -KILL "$p" 2>/dev/null; done
        ip netns del "$ns"
    done
    for br in $(ip -o link show type bridge | awk -F': ' '{print $2}' | cut -d@ -f1); do
        [[ $br =~ ^wdbr([0-9]+)$ ]] && ! kill -0 "${BASH_REMATCH[1]}" 2>/dev/null || continue
        ip link del "$br"
    done
}

# --- helpers ------------------------------------------------------------------------------------
weftctl() { "$BIN/cli/weftctl" "$@"; }
export WEFT_CA_SOCKET # set below: weftctl's admin commands find the CA by it

# start LOG COMMAND...: runs COMMAND in the background, its output appended to LOG; its PID
# goes in PIDS (cleanup stops it) and in RUN/pids (for the next run, should this one be killed).
start() {
    local log=$1; shift
    "$@" >>"$log" 2>&1 </dev/null &
    PIDS+=($!)
    echo $! >>"$RUN/pids"
}

# in_pod POD UID COMMAND...: runs COMMAND in POD's namespace as UID (and gid), no other groups.
# pod_cmd POD UID: the same as a command prefix, in POD_CMD, for start (which must run a
# program, not a function, so that $! is the program's PID: ip and setpriv exec it).
in_pod() {
    local pod=$1 uid=$2; shift 2
    ip netns exec "$NS_PREFIX-$pod" setpriv --reuid "$uid" --regid "$uid" --clear-groups "$@"
}
pod_cmd() {
    POD_CMD=(ip netns exec "$NS_PREFIX-$1" setpriv --reuid "$2" --regid "$2" --clear-groups
        --pdeathsig KILL)
}

# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 0.2 s until it exits 0; dies after SECONDS.
wait_for() {
    local secs=$1 what=$2; shift 2
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || die "$what: not within $secs s"
        sleep 0.2
    done
}

alive() { [[ -e /proc/$1 && $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

admin() { # admin POD PATH: GET on the pod's proxy admin socket
    curl -sS --max-time 5 --unix-socket "$RUN/pods/$1/admin.sock" "http://proxy$2"
}

# certs POD: "SERIAL NOT_AFTER SPIFFE_ID ISSUER_SERIAL ISSUER_NOT_AFTER" of the SVID the proxy
# presents now and of the intermediate that signed it ("- 0 - - 0" when it cannot tell)
certs() {
    admin "$1" /certs 2>/dev/null | python3 -c 'import json, sys
try:
    c = json.load(sys.stdin)
    i = c["chain"][1] if len(c.get("chain", [])) > 1 else {}
    print(c["serial"], c["not_after"], c["spiffe_id"], i.get("serial", "-"), i.get("not_after", 0))
except Exception:
    print("- 0 - - 0")'
}

utc() { date -u -d "@$1" +%H:%M:%SZ; }

pause() { # between steps, only when a person is at the keyboard
    if [[ -t 0 ]]; then
        read -r -p "${D}[Enter: next step]${N} " _ || true
    fi
}

ip_of() { echo "$NET.${OCTET[$1]}"; }

# --- 0. the node and the pods --------------------------------------------------------------------
reap_stale
# a /24 of 198.18.0.0/15 no route of this host uses yet (another demo may be running)
NET=''
for o in $(seq 10 99); do
    if [[ -z $(ip -4 route show to match "198.18.$o.1" | grep -v '^default') ]]; then NET=198.18.$o; break; fi
done
[[ -n $NET ]] || die "no free /24 in 198.18.10.0-198.18.99.255"
RUN=$(mktemp -d "/tmp/weft-demo-$ID.XXXXXX")
chmod 755 "$RUN"
mkdir -p "$RUN/logs" "$RUN/bin" "$RUN/policy" "$RUN/pods" "$RUN/www" "$RUN/downloads"
install -m 755 "$BIN/proxy/weft-proxy" "$BIN/cli/weftctl" "$RUN/bin/" # other uids run the proxy
WEFT_CA_SOCKET=$RUN/ca/admin.sock

title "weft demo: a real mesh on this machine"
say "The node: weft-ca, the private CA, and weft-agent, the node agent, running in this machine's own network namespace. Three pods, each a network namespace on the bridge $BR: frontend ($(ip_of frontend)), backend ($(ip_of backend)) and intruder ($(ip_of intruder)). Each pod has its iptables rules from weftctl, its weft-proxy running under a uid of its own, and an app that knows nothing about weft: Python's http.server in backend, curl in frontend and intruder. Files and logs: $RUN"

title "Setting up the node"
say "A new trust domain: its root, and intermediates of $DEMO_INTERMEDIATE_TTL (the default is 7 days): weft-ca makes a fresh one at start and the next at each half-life, and no SVID outlives the intermediate that signed it."
cmdline "weftctl ca init --trust-domain $TD --intermediate-ttl $DEMO_INTERMEDIATE_TTL --out $RUN/ca"
weftctl ca init --trust-domain "$TD" --intermediate-ttl "$DEMO_INTERMEDIATE_TTL" --out "$RUN/ca" | indent ||
    die "weftctl ca init failed"

say "The policy the CA hands out (it reads $RUN/policy as nobody, so the files are world-readable):"
cat >"$RUN/policy/backend-allow-frontend.yaml" <<EOF
apiVersion: security.weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: backend-allow-frontend, namespace: demo}
spec:
  selector: {serviceAccounts: [backend]}   # the backend workload
  action: ALLOW                            # once an ALLOW applies, the rest is denied
  rules:
  - from: [{principals: ["spiffe://$TD/ns/demo/sa/frontend"]}]
    to: [{ports: ["$PORT"]}]
EOF
chmod 644 "$RUN/policy/backend-allow-frontend.yaml"
indent <"$RUN/policy/backend-allow-frontend.yaml"
weftctl policy check -f "$RUN/policy" | indent || die "the demo's policy does not validate"

CA_LISTEN=127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ca_cmd=("$BIN/ca/weft-ca" --data-dir "$RUN/ca" --listen "$CA_LISTEN" --http "unix:$RUN/ca-http.sock"
    --policy-dir "$RUN/policy" --intermediate-ttl "$DEMO_INTERMEDIATE_TTL")
cmdline "weft-ca --data-dir $RUN/ca --listen $CA_LISTEN --policy-dir $RUN/policy --intermediate-ttl $DEMO_INTERMEDIATE_TTL ...  (log: logs/ca.log)"
start "$RUN/logs/ca.log" "${ca_cmd[@]}"
wait_for 20 "weft-ca answering on its admin socket" weftctl ca status

cmdline "weftctl token create --node $NODE --ttl 10m"
token=$(weftctl token create --node "$NODE" --ttl 10m) || die "weftctl token create failed"
# its first line is the token, then a comment the agent's --join-token-file does not skip
(umask 077 && head -n 1 <<<"$token" >"$RUN/join-token")
tail -n +2 <<<"$token" | indent
echo "    (the token itself went to $RUN/join-token, mode 0600, for the agent)"

for pod in "${PODS[@]}"; do
    cmdline "weftctl entry create --id spiffe://$TD/ns/demo/sa/$pod --node $NODE --selector unix:uid:${PROXY_UID[$pod]}"
    weftctl entry create --id "spiffe://$TD/ns/demo/sa/$pod" --node "$NODE" \
        --selector "unix:uid:${PROXY_UID[$pod]}" | indent || die "weftctl entry create failed"
done

agent_cmd=("$BIN/agent/weft-agent" --ca "$CA_LISTEN" --trust-domain "$TD"
    --bootstrap-bundle "$RUN/ca/bundle.pem" --join-token-file "$RUN/join-token"
    --state-dir "$RUN/agent-state" --socket "$RUN/agent/agent.sock"
    --http "unix:$RUN/agent-http.sock" --claim-cidr 198.18.0.0/15)
cmdline "weft-agent --ca $CA_LISTEN --trust-domain $TD --join-token-file ... --socket $RUN/agent/agent.sock --claim-cidr 198.18.0.0/15 ...  (log: logs/agent.log)"
start "$RUN/logs/agent.log" "${agent_cmd[@]}"
AGENT_PID=${PIDS[-1]}
agent_holds() {
    local m
    m=$(curl -sf --max-time 2 --unix-socket "$RUN/agent-http.sock" http://agent/metrics) || return 1
    awk -v want="$1" '$1 == "weft_agent_svids_held" && $2 >= want {found=1} END {exit !found}' <<<"$m"
}
wait_for 30 "weft-agent holding the 3 SVIDs" agent_holds 3
echo "    the agent joined the CA and holds the three workload SVIDs"

title "Setting up the pods"
cmdline "ip link add $BR type bridge; ip addr add $NET.1/24 dev $BR"
ip link add "$BR" type bridge || die "cannot make the bridge $BR"
MADE_BR=1
ip addr add "$NET.1/24" dev "$BR" && ip link set "$BR" up || die "cannot set up $BR"
# With br_netfilter loaded, bridged frames cross this host's FORWARD chain: let ours through
# when that chain would not (Docker's DROP policy), and remove the rule at the end.
if [[ $(sysctl -n net.bridge.bridge-nf-call-iptables 2>/dev/null) == 1 &&
    $(iptables -S FORWARD 2>/dev/null) != "-P FORWARD ACCEPT" ]]; then
    FWD_RULE=(-i "$BR" -o "$BR" -m comment --comment "weft-demo-$ID" -j ACCEPT)
    iptables -I FORWARD 1 "${FWD_RULE[@]}" || die "cannot let the bridge's traffic through FORWARD"
fi
for pod in "${PODS[@]}"; do
    ns=$NS_PREFIX-$pod
    veth=wd${ID}${pod:0:1}
    cmdline "ip netns add $ns; veth $veth <-> eth0 $(ip_of "$pod")/24; weftctl iptables install --proxy-uid ${PROXY_UID[$pod]}"
    ip netns add "$ns" || die "cannot make the namespace $ns"
    NSES+=("$ns")
    ip link add "$veth" type veth peer name eth0 netns "$ns" || die "cannot make the veth $veth"
    ip link set "$veth" master "$BR" up &&
        ip -n "$ns" addr add "$(ip_of "$pod")/24" dev eth0 &&
        ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up || die "cannot set up $ns"
    ip netns exec "$ns" "$BIN/cli/weftctl" iptables install --proxy-uid "${PROXY_UID[$pod]}" \
        --no-ipv6 >/dev/null || die "weftctl iptables install failed in $ns"
    install -d -o "${PROXY_UID[$pod]}" -g "${PROXY_UID[$pod]}" -m 755 "$RUN/pods/$pod"
    proxy_cmd=("$RUN/bin/weft-proxy" --agent-socket "$RUN/agent/agent.sock"
        --admin "unix:$RUN/pods/$pod/admin.sock" --claim "$(ip_of "$pod")" --drain-s 2)
    cmdline "[$pod, uid ${PROXY_UID[$pod]}] weft-proxy --agent-socket $RUN/agent/agent.sock --admin unix:$RUN/pods/$pod/admin.sock --claim $(ip_of "$pod")  (log: logs/$pod-proxy.log)"
    pod_cmd "$pod" "${PROXY_UID[$pod]}"
    start "$RUN/logs/$pod-proxy.log" "${POD_CMD[@]}" "${proxy_cmd[@]}"
done
proxy_ready() { # every proxy ready and knowing the 3 pods' addresses
    local pod
    for pod in "${PODS[@]}"; do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
            --unix-socket "$RUN/pods/$pod/admin.sock" http://proxy/ready) == 200 ]] || return 1
        admin "$pod" /config | grep -q '"directory_entries":3,' || return 1
    done
}
wait_for 30 "the three proxies ready, each with the 3 pods in its directory" proxy_ready
echo "    the three proxies are ready: each has its SVID, its policy and the mesh directory"

# backend's content: an index with a marker that must never show on the wire, and a large file
MARKER="weft-demo-secret-$ID-$RANDOM$RANDOM"
printf '<html><body><h1>backend</h1><p>%s</p></body></html>\n' "$MARKER" >"$RUN/www/index.html"
head -c $((8 << 20)) /dev/urandom >"$RUN/www/big.bin"
chmod 755 "$RUN/www" && chmod 644 "$RUN/www"/*
chown "$APP_UID:$APP_UID" "$RUN/downloads" && chmod 755 "$RUN/downloads"
cmdline "[backend, uid $APP_UID] python3 -m http.server $PORT --directory $RUN/www  (log: logs/backend-app.log)"
pod_cmd backend "$APP_UID"
start "$RUN/logs/backend-app.log" "${POD_CMD[@]}" python3 -u -m http.server "$PORT" --directory "$RUN/www"
app_up() { ip netns exec "$NS_PREFIX-backend" bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT"; }
wait_for 15 "http.server listening in backend" app_up

# --- the steps -------------------------------------------------------------------------------------
step1() {
    title "Step 1: the identities the mesh minted"
    say "Each proxy asked the agent for its identity; the agent knew it by its uid (from the kernel) and handed it an X.509-SVID signed by the CA's current intermediate. What each proxy presents now (its admin /certs):"
    local pod serial na id iserial ina
    for pod in "${PODS[@]}"; do
        read -r serial na id iserial ina < <(certs "$pod")
        printf '    %-9s %s\n              serial %s, notAfter %s (in %d s), signed by intermediate %s (notAfter %s)\n' \
            "$pod" "$id" "$serial" "$(utc "$na")" $((na - $(date +%s))) "$iserial" "$(utc "$ina")"
        check "$pod holds spiffe://$TD/ns/demo/sa/$pod, valid now" \
            test "$id" = "spiffe://$TD/ns/demo/sa/$pod" -a "$na" -gt "$(date +%s)"
    done
    say "The CA records every certificate it issues (here too the node's own SVID, which the agent holds to talk to the CA):"
    cmdline "weftctl certs list"
    weftctl certs list | awk '/^#/ {print; next} {printf "%-34s %-22s %s\n", $1, $2, $4}' | indent
    say "Short lifetimes are the point: for the demo no SVID outlives the CA's $DEMO_INTERMEDIATE_TTL intermediates (by default an SVID lives an hour), and the agent renews each at half the life it has left."
}

step2() {
    title "Step 2: frontend calls backend, over mutual TLS"
    say "curl in frontend asks for http://$(ip_of backend):$PORT/ in plain HTTP. iptables hands the connection to frontend's proxy, which dials backend with TLS 1.3 and its SVID and checks that backend presents spiffe://$TD/ns/demo/sa/backend; backend's proxy checks frontend's SVID, asks its policy, and only then hands the bytes to http.server. Meanwhile tcpdump records what the bridge carries."
    local pcap=$RUN/step2.pcap out rc
    start "$RUN/logs/tcpdump.log" tcpdump -Z root --immediate-mode -i "$BR" -U -n -s 0 -w "$pcap" \
        "tcp and host $(ip_of frontend) and host $(ip_of backend)"
    local tpid=${PIDS[-1]}
    wait_for 10 "tcpdump listening on $BR" grep -q "listening on" "$RUN/logs/tcpdump.log"
    local app_lines; app_lines=$(wc -l <"$RUN/logs/backend-app.log")
    cmdline "[frontend, uid $APP_UID] curl -sS http://$(ip_of backend):$PORT/"
    out=$(in_pod frontend "$APP_UID" curl -sS --max-time 10 "http://$(ip_of backend):$PORT/" 2>&1)
    rc=$?
    printf '%s\n' "$out" | indent
    check "curl succeeded and got backend's page" test "$rc" -eq 0 -a -n "$(grep -F "$MARKER" <<<"$out")"
    sleep 1
    kill -INT "$tpid" 2>/dev/null
    for _ in $(seq 50); do alive "$tpid" || break; sleep 0.1; done
    say "frontend's proxy, the outbound side (the peer is who answered, verified):"
    grep 'direction=outbound' "$RUN/logs/frontend-proxy.log" | tail -n 1 | fold -w 96 | indent
    check "frontend's access log: outbound, peer backend, TLS 1.3" grep -q \
        "direction=outbound .*peer=spiffe://$TD/ns/demo/sa/backend .*tls=TLSv1.3" "$RUN/logs/frontend-proxy.log"
    say "backend's proxy, the inbound side (the decision, the policy and rule that made it):"
    grep 'direction=inbound' "$RUN/logs/backend-proxy.log" | tail -n 1 | fold -w 96 | indent
    check "backend's access log: peer frontend, allowed by demo/backend-allow-frontend rule 0" grep -q \
        "direction=inbound .*peer=spiffe://$TD/ns/demo/sa/frontend decision=allow policy=demo/backend-allow-frontend rule=0 reason=allow-matched .*tls=TLSv1.3" \
        "$RUN/logs/backend-proxy.log"
    say "http.server's own log (the app got the request, in plain HTTP, from its proxy):"
    tail -n +"$((app_lines + 1))" "$RUN/logs/backend-app.log" | indent
    say "What the bridge carried, from tcpdump's capture (read by tools/demo/tlsview.py): each TLS record's 5-byte header (type: 16 handshake, 14 change cipher spec, 17 application data; then the legacy version 03 01 or 03 03, which TLS 1.3 keeps for middleboxes, and the length), what the two hellos say in the clear, then a search of the capture for plaintext:"
    python3 "$HERE/tlsview.py" "$pcap" --marker "$MARKER" --port "$PORT" \
        --name "$(ip_of frontend)=frontend" --name "$(ip_of backend)=backend" | indent
    rc=${PIPESTATUS[0]}
    check "on the wire: TLS 1.3 only, no HTTP and no marker \"$MARKER\" in $(stat -c %s "$pcap") captured bytes" \
        test "$rc" -eq 0
}

step3() {
    title "Step 3: intruder calls backend, and is refused"
    say "intruder is in the mesh too: it has a valid SVID (spiffe://$TD/ns/demo/sa/intruder), so the TLS handshake succeeds. But backend's policy allows only frontend: backend's proxy closes the connection before a single byte reaches http.server."
    local app_lines out rc
    app_lines=$(wc -l <"$RUN/logs/backend-app.log")
    cmdline "[intruder, uid $APP_UID] curl -sS http://$(ip_of backend):$PORT/"
    out=$(in_pod intruder "$APP_UID" curl -sS --max-time 10 "http://$(ip_of backend):$PORT/" 2>&1)
    rc=$?
    printf '%s\n' "$out" | indent
    check "curl failed (exit $rc) and got nothing of backend's page" \
        test "$rc" -ne 0 -a -z "$(grep -F "$MARKER" <<<"$out")"
    sleep 0.3
    say "backend's proxy:"
    grep "peer=spiffe://$TD/ns/demo/sa/intruder" "$RUN/logs/backend-proxy.log" | tail -n 1 | fold -w 96 | indent
    check "backend's access log: intruder denied, policy demo/backend-allow-frontend, no rule matched" grep -q \
        "direction=inbound .*peer=spiffe://$TD/ns/demo/sa/intruder decision=deny policy=demo/backend-allow-frontend rule=- reason=no-allow-matched" \
        "$RUN/logs/backend-proxy.log"
    say "intruder's proxy (told why by a TLS alert):"
    grep 'direction=outbound' "$RUN/logs/intruder-proxy.log" | tail -n 1 | fold -w 96 | indent
    say "Why, as weftctl explains it from the same policy files:"
    cmdline "weftctl policy explain -f $RUN/policy --from spiffe://$TD/ns/demo/sa/intruder --to-workload demo/backend --port $PORT"
    weftctl policy explain -f "$RUN/policy" --from "spiffe://$TD/ns/demo/sa/intruder" \
        --to-workload demo/backend --port "$PORT" >"$RUN/explain.txt"
    rc=$?
    indent <"$RUN/explain.txt"
    check "weftctl policy explain: deny (exit $rc), by demo/backend-allow-frontend, no-allow-matched" \
        test "$rc" -eq 1 -a -n "$(grep -F 'decision=deny policy=demo/backend-allow-frontend rule=- reason=no-allow-matched' "$RUN/explain.txt")"
    say "http.server's log since the call:"
    local new; new=$(tail -n +"$((app_lines + 1))" "$RUN/logs/backend-app.log")
    printf '%s\n' "${new:-(nothing: the request never reached it)}" | indent
    check "http.server saw no request from the intruder" test -z "$new"
}

# renews_by RECEIVED NOT_AFTER: the latest time the agent renews an SVID it got at RECEIVED:
# at half the life it had then, +-10 % (agent/svids.c; notBefore is backdated a minute, so it
# says nothing here)
renews_by() { echo $(($1 + ($2 - $1) * 55 / 100 + 1)); }

# sent_bytes: what backend's proxy has relayed to the callers of its inbound connections so far
# (into their TLS connections; counted each second)
sent_bytes() {
    admin backend /metrics | awk '$1 == "weft_proxy_bytes_total{direction=\"inbound\",way=\"out\"}" {
        printf "%d\n", $2; found = 1 } END { if (!found) print 0 }'
}

step4() {
    title "Step 4: certificates rotate under a long download, which does not break"
    say "The SVIDs here live well under a minute, so the agent keeps renewing them, at half the life they have left, and each proxy switches to its new SVID for new handshakes. A connection already open keeps the certificates of its own handshake: a rotation never cuts it, but it may not outlive them (no certificate is accepted past its notAfter). So the download starts just after a rotation, and at a rate that makes it end after both proxies have rotated again but before its own certificates expire."
    # Watch both proxies' serials; once each has rotated under our eyes, we know when it got its
    # SVID, hence when it renews next. Start when both will have renewed (+2 s) well before the
    # first of the two SVIDs expires (-4 s).
    local f b fna bna frecv=0 brecv=0 s na now left next secs start_f start_b
    read -r f fna _ < <(certs frontend)
    read -r b bna _ < <(certs backend)
    [[ $f != - && $b != - ]] || { fail "cannot read the proxies' /certs"; return; }
    local end=$((SECONDS + 60))
    printf '    waiting for a fresh rotation of both SVIDs (frontend %s, backend %s now) ...\n' "$f" "$b"
    while :; do
        now=$(date +%s)
        read -r s na _ < <(certs frontend)
        if [[ $s != "$f" && $s != - ]]; then f=$s fna=$na frecv=$now; fi
        read -r s na _ < <(certs backend)
        if [[ $s != "$b" && $s != - ]]; then b=$s bna=$na brecv=$now; fi
        if ((frecv > 0 && brecv > 0)); then
            left=$(((fna < bna ? fna : bna) - now))
            next=$(renews_by "$frecv" "$fna")
            s=$(renews_by "$brecv" "$bna")
            next=$(((next > s ? next : s) - now))
            if ((next + 3 + 4 <= left - 4)); then break; fi
        fi
        ((SECONDS < end)) || { fail "no moment in 60 s when both SVIDs would rotate well before either expired"; return; }
        sleep 0.2
    done
    secs=$(((next + 3 + left - 4) / 2)) # midway in the window
    local size rate
    size=$(stat -c %s "$RUN/www/big.bin")
    rate=$((size / secs))
    start_f=$f start_b=$b
    printf '    now: frontend presents %s (until %s), backend %s (until %s);\n' "$f" "$(utc "$fna")" "$b" "$(utc "$bna")"
    printf '    both renew within %d s, and the first expires in %d s: %d MiB at %d KiB/s takes about %d s.\n' \
        "$next" "$left" $((size >> 20)) $((rate >> 10)) "$secs"
    say "curl reads at that rate, and backend's link is shaped to it too (tc, in backend's namespace), so that the bytes keep crossing the bridge all along instead of waiting in socket buffers; the progress below is what curl has written and what backend's proxy has sent into the TLS connection (its weft_proxy_bytes_total metric)."
    local wire=$(((rate * 8 * 9 / 8) / 1000))kbit # a little above curl's rate, for the headers
    cmdline "ip netns exec $NS_PREFIX-backend tc qdisc add dev eth0 root tbf rate $wire burst 32kb latency 1s"
    ip netns exec "$NS_PREFIX-backend" tc qdisc add dev eth0 root tbf rate "$wire" burst 32kb latency 1s ||
        say "(tc failed: the download is paced by curl alone)"
    cmdline "[frontend, uid $APP_UID] curl --limit-rate $((rate >> 10))K -o downloads/big.bin http://$(ip_of backend):$PORT/big.bin"
    local base; base=$(sent_bytes)
    pod_cmd frontend "$APP_UID"
    start "$RUN/logs/download.log" "${POD_CMD[@]}" curl -sS --max-time $((left + 10)) \
        --limit-rate "$rate" -o "$RUN/downloads/big.bin" "http://$(ip_of backend):$PORT/big.bin"
    local dpid=${PIDS[-1]} t0=$SECONDS last=-5 rotated=0 wire_left=1 sent got
    progress() { # progress WHAT: one line of the download's state
        got=$(stat -c %s "$RUN/downloads/big.bin" 2>/dev/null || echo 0)
        sent=$(($(sent_bytes) - base))
        printf '    %3d s  curl has %3d%%, backend'"'"'s proxy has sent %3d%%  %s\n' \
            $((SECONDS - t0)) $((got * 100 / size)) $((sent * 100 / size)) "$1"
        last=$SECONDS
    }
    while alive "$dpid"; do
        read -r s na _ < <(certs frontend)
        if [[ $s != "$f" && $s != - ]]; then
            progress "frontend rotated: new handshakes get $s (until $(utc "$na"))"
            f=$s rotated=$((rotated + 1))
            ((sent < size)) || wire_left=0
        fi
        read -r s na _ < <(certs backend)
        if [[ $s != "$b" && $s != - ]]; then
            progress "backend rotated:  new handshakes get $s (until $(utc "$na"))"
            b=$s rotated=$((rotated + 1))
            ((sent < size)) || wire_left=0
        fi
        ((SECONDS - last < 5)) || progress ""
        ((SECONDS - t0 <= left + 15)) || break
        sleep 0.3
    done
    wait "$dpid"
    local rc=$?
    progress "curl exited $rc"
    ip netns exec "$NS_PREFIX-backend" tc qdisc del dev eth0 root 2>/dev/null
    indent <"$RUN/logs/download.log"
    check "both SVIDs rotated during the download, with bytes still to cross the mesh (frontend $start_f -> $f, backend $start_b -> $b)" \
        test "$f" != "$start_f" -a "$b" != "$start_b" -a "$wire_left" -eq 1
    check "curl completed the download (exit $rc)" test "$rc" -eq 0
    local want got
    want=$(sha256sum <"$RUN/www/big.bin" | cut -c1-16)
    got=$(sha256sum <"$RUN/downloads/big.bin" 2>/dev/null | cut -c1-16)
    check "intact: $(stat -c %s "$RUN/downloads/big.bin" 2>/dev/null || echo 0) of $size bytes, sha256 $got... = $want..." \
        test "$got" = "$want"
    say "backend's access-log line for it, written when it closed (one connection from start to end):"
    local line; line=$(grep "direction=inbound" "$RUN/logs/backend-proxy.log" | tail -n 1)
    fold -w 96 <<<"$line" | indent
    local sent=0
    [[ $line =~ bytes_out=([0-9]+) ]] && sent=${BASH_REMATCH[1]}
    check "backend's proxy: the whole file ($sent bytes with the headers) in one connection, closed as done, not cut" \
        test "$sent" -ge "$size" -a -n "$(grep "peer=spiffe://$TD/ns/demo/sa/frontend decision=allow .*close=done" <<<"$line")"
}

# weftctl scan's flags for this mesh: its ALPN, the bundle (to name the root), the CA's one
# minute of notBefore backdating (SVIDs here live well under a minute, so it would otherwise be
# most of their life) and a critical floor fit for such lifetimes (2 minutes by default)
SCAN_FLAGS=(--alpn weft/1 --bundle "$RUN/ca/bundle.pem" --backdate 1m --critical-floor 3s --timeout 3s)

# scan_json ARGS...: weftctl scan of the three pods' ports, as JSON; its exit code in SCAN_RC
scan_json() {
    local eps=() pod
    for pod in "${PODS[@]}"; do eps+=("$(ip_of "$pod"):$PORT"); done
    SCAN_RC=0
    weftctl scan --format json "${SCAN_FLAGS[@]}" "$@" "${eps[@]}" || SCAN_RC=$?
}

step5() {
    title "Step 5: the independent check that catches a dead renewal loop"
    say "Renewal can stop quietly while every certificate is still valid, and nothing fails until they expire. weftctl scan is a second system that would notice. It shares no code with renewal: it connects to each pod's port like any client (its own TLS client, offering ALPN weft/1), reads the chain the proxy presents and judges each certificate by the share of its own lifetime left, and a leaf by whether it is past the point where it should have been renewed."
    local eps="$(ip_of frontend):$PORT $(ip_of backend):$PORT $(ip_of intruder):$PORT"
    cmdline "weftctl scan ${SCAN_FLAGS[*]} $eps"
    weftctl scan "${SCAN_FLAGS[@]}" $eps | indent || true
    scan_json >"$RUN/scan1.json"
    check "each pod's proxy presents its own SVID and the CA's intermediate, the chain ending at the bundle's root" \
        python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
ep = {e["endpoint"].rsplit(":", 1)[0]: e for e in d["endpoints"]}
sys.exit(0 if all(ep[ip]["reached"] and ep[ip]["chain"][0]["spiffe_id"] == "spiffe://" + sys.argv[2] + "/ns/demo/sa/" + pod
                  and ep[ip]["root_found"] for ip, pod in zip(sys.argv[3:6], ["frontend", "backend", "intruder"])) else 1)' \
        "$RUN/scan1.json" "$TD" "$(ip_of frontend)" "$(ip_of backend)" "$(ip_of intruder)"
    check "TLS 1.3 only, mTLS required, no plaintext, no leaf past its renewal point" \
        python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if all(f["code"] == "leaf-expiring" or f["code"] == "intermediate-expiring" for e in d["endpoints"] for f in e["findings"]) else 1)' \
        "$RUN/scan1.json"
    say "The scanner can also ask the CA for every address its directory knows, so that nothing that exists escapes the scan, and checks each presents the ID the directory names there:"
    cmdline "weftctl scan --from-ca --format json ${SCAN_FLAGS[*]}"
    local from_ca_rc=0
    weftctl scan --from-ca --format json "${SCAN_FLAGS[@]}" >"$RUN/scan-ca.json" || from_ca_rc=$?
    check "weftctl scan --from-ca: the directory's three pods, each presenting the ID expected there (exit $from_ca_rc)" \
        python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
eps = d["endpoints"]
sys.exit(0 if len(eps) == 3 and all(e["reached"] and "unexpected-id" not in {f["code"] for f in e["findings"]} for e in eps) else 1)' \
        "$RUN/scan-ca.json"
    say "(Intermediates here live 40 s and SVIDs under a minute, so \"expiring\" findings can show up in a healthy run: the tiers are shares of each certificate's own life, meant for hours and years.)"

    say "Now the renewal loop dies: the agent is frozen (SIGSTOP). The proxies keep serving their SVIDs, which are still valid, and every call still works. Wait until backend's leaf is 70 % through its life, then scan again:"
    cmdline "kill -STOP $AGENT_PID   # weft-agent"
    kill -STOP "$AGENT_PID"
    local wait_s
    wait_s=$(python3 -c 'import json, sys, time
d = json.load(open(sys.argv[1]))
e = [e for e in d["endpoints"] if e["endpoint"].startswith(sys.argv[2] + ":")][0]
nb, na = e["chain"][0]["not_before_epoch"], e["chain"][0]["not_after_epoch"]
nb += 60 if na - nb > 60 else 0  # the backdating, as --backdate 1m counts it
print(max(0, int(nb + 0.7 * (na - nb) - time.time()) + 1))' "$RUN/scan1.json" "$(ip_of backend)")
    echo "    waiting ${wait_s}s"
    sleep "$wait_s"
    cmdline "weftctl scan ${SCAN_FLAGS[*]} $eps"
    weftctl scan "${SCAN_FLAGS[@]}" $eps | indent || true
    scan_json >"$RUN/scan2.json"
    check "the scan says backend's leaf is past its renewal point (renewal loop stuck?), exit code $SCAN_RC" \
        python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
e = [e for e in d["endpoints"] if e["endpoint"].startswith(sys.argv[2] + ":")][0]
sys.exit(0 if "leaf-renewal-overdue" in {f["code"] for f in e["findings"]} else 1)' \
        "$RUN/scan2.json" "$(ip_of backend)"
    cmdline "kill -CONT $AGENT_PID"
    kill -CONT "$AGENT_PID"
    renewed() {
        scan_json >"$RUN/scan3.json" 2>/dev/null
        python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if all("leaf-renewal-overdue" not in {f["code"] for f in e["findings"]} and e["reached"] for e in d["endpoints"]) else 1)' "$RUN/scan3.json"
    }
    local end=$((SECONDS + 30))
    until renewed || ((SECONDS >= end)); do sleep 1; done
    check "the agent back: every leaf renewed, the scan finds nothing overdue" renewed
}

for s in step1 step2 step3 step4 step5; do
    pause
    "$s"
done

title "Summary"
if [[ ${#FAILED[@]} -eq 0 ]]; then
    printf '%severy check passed (%d)%s\n' "$G" "$PASSED" "$N"
else
    printf '%s%d of %d checks failed:%s\n' "$R" "${#FAILED[@]}" $((PASSED + ${#FAILED[@]})) "$N"
    printf '  - %s\n' "${FAILED[@]}"
fi

if [[ $KEEP -eq 1 ]]; then
    title "Still running (--keep): poke at it, then Ctrl-C here to clean up"
    app="setpriv --reuid $APP_UID --regid $APP_UID --clear-groups"
    cat <<EOF
  Calls, as the apps' uid (frontend is let in, intruder refused):
    ip netns exec $NS_PREFIX-frontend $app curl -sS http://$(ip_of backend):$PORT/
    ip netns exec $NS_PREFIX-intruder $app curl -sS http://$(ip_of backend):$PORT/
  A shell in a pod (its connections go through the pod's proxy, as the app's do):
    ip netns exec $NS_PREFIX-backend bash
    ip netns exec $NS_PREFIX-frontend iptables -t nat -S
  The proxies' admin sockets (/certs /config /metrics /ready), the agent's and the CA's metrics:
    curl -s --unix-socket $RUN/pods/frontend/admin.sock http://proxy/certs
    curl -s --unix-socket $RUN/agent-http.sock http://agent/metrics
    curl -s --unix-socket $RUN/ca-http.sock http://ca/metrics
  weftctl against this CA:
    export WEFT_CA_SOCKET=$WEFT_CA_SOCKET
    $RUN/bin/weftctl ca status
    $RUN/bin/weftctl certs list
    $RUN/bin/weftctl revoke --id spiffe://$TD/ns/demo/sa/frontend   # then frontend is cut off
  weftctl scan, the independent check, on the pods' ports, or on every address the CA knows:
    $RUN/bin/weftctl scan ${SCAN_FLAGS[*]} $(ip_of frontend):$PORT $(ip_of backend):$PORT $(ip_of intruder):$PORT
    $RUN/bin/weftctl scan --from-ca ${SCAN_FLAGS[*]}
  The policy: $RUN/policy/ (the CA reloads it when it changes; keep the files world-readable)
  The logs:   tail -f $RUN/logs/*.log
EOF
    while :; do
        sleep 3600 &
        KEEP_SLEEP=$!
        wait "$KEEP_SLEEP" # Ctrl-C ends the wait at once, and the trap cleans up
    done
fi
[[ ${#FAILED[@]} -eq 0 ]]
