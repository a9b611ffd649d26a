#!/usr/bin/env bash
# tools/measure-injector.sh: the measurement behind weft-injector's resources in
# deploy/base/injector.yaml. Usage: tools/measure-injector.sh WEFT_INJECTOR [N]
# (WEFT_INJECTOR: a `-c opt` build of //k8s:weft-injector; N: reviews per phase, default 1000).
#
# It mints a throwaway CA and serving certificate (openssl, in a temp dir), starts the injector
# on 127.0.0.1, and prints VmRSS, RssAnon, VmHWM (/proc/PID/status) and utime+stime
# (/proc/PID/stat) when ready, after N sequential reviews (one keep-alive connection), after N
# reviews over 8 concurrent connections, 30 s later, and after the worst case its limits allow
# (below). The review is
# k8s/testdata/webhook/replicaset_pod.json, the one webhook_test uses; every answer must carry a
# patch. Each phase stops after 60 s. The injector is stopped by its PID and the temp dir
# removed on every exit.
set -euo pipefail

bin=$(realpath "${1:?usage: $0 WEFT_INJECTOR [N]}")
n=${2:-1000}
review=$(realpath "$(dirname "$0")/../k8s/testdata/webhook/replicaset_pod.json")
conc=8
tmp=$(mktemp -d)
pid=
cleanup() {
    if [[ -n $pid ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

cd "$tmp"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=measure-ca -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=weft-injector \
    -keyout tls.key -out tls.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >san.ext
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
    -extfile san.ext -out tls.crt 2>/dev/null
cp "$review" review.json

"$bin" --listen 127.0.0.1:0 --tls-cert tls.crt --tls-key tls.key 2>log &
pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -n 's/.* port=\([0-9]*\).*/\1/p' log | head -1)
    [[ -n $port ]] && break
    sleep 0.1
done
[[ -n $port ]] || { echo "weft-injector did not start:" >&2; cat log >&2; exit 1; }
url=https://127.0.0.1:$port
curl -sSf --max-time 5 --cacert ca.crt "$url/ready" >/dev/null

tck=$(getconf CLK_TCK)
last_cpu=
sample() { # sample LABEL REVIEWS: memory now, CPU since the previous sample
    local cpu
    # utime and stime: fields 14 and 15 of stat, 12 and 13 after the ") " ending the name
    cpu=$(sed 's/.*) //' "/proc/$pid/stat" | awk -v t="$tck" '{print ($12 + $13) * 1000 / t}')
    awk -v label="$1" -v n="$2" -v cpu="$cpu" -v last="${last_cpu:-$cpu}" '
        /^(VmRSS|RssAnon|VmHWM):/ {kib[substr($1, 1, length($1) - 1)] = $2}
        END {
            printf "%-26s VmRSS %5.1f MiB  RssAnon %5.1f MiB  VmHWM %5.1f MiB  CPU %5d ms",
                label, kib["VmRSS"] / 1024, kib["RssAnon"] / 1024, kib["VmHWM"] / 1024, cpu - last
            if (n > 0) printf "  (%.3f ms/review)", (cpu - last) / n
            printf "\n"
        }' "/proc/$pid/status"
    last_cpu=$cpu
}
rate() { # rate REVIEWS START
    awk -v n="$1" -v s="$2" -v e="$(date +%s.%N)" 'BEGIN {printf "  %.0f reviews/s\n", n / (e - s)}'
}
# reviews K: K reviews on one keep-alive connection; every answer must be a patch.
reviews() {
    local urls=urls.$BASHPID i
    for ((i = 0; i < $1; i++)); do echo "url = \"$url/inject\""; done >"$urls"
    timeout 60 curl -sSf --cacert ca.crt -H 'Content-Type: application/json' \
        --data-binary @review.json -K "$urls" | grep -o '"patchType":"JSONPatch"' | wc -l
}
check() { # check GOT WANT
    [[ $1 -eq $2 ]] || { echo "$1 of $2 reviews answered with a patch" >&2; exit 1; }
}

sleep 1
sample "idle, ready" 0
start=$(date +%s.%N)
check "$(reviews "$n")" "$n"
sample "$n sequential" "$n"
rate "$n" "$start"
start=$(date +%s.%N)
curls=()
for i in $(seq $conc); do
    reviews $((n / conc)) >"got.$i" &
    curls+=($!)
done
for c in "${curls[@]}"; do
    wait "$c" || true # a failed one answered fewer patches: check says how many
done
check "$(cat got.* | awk '{t += $1} END {print t}')" $((n / conc * conc))
sample "$((n / conc * conc)) over $conc connections" $((n / conc * conc))
rate $((n / conc * conc)) "$start"
sleep 30
sample "idle 30 s after" 0
# The worst case the injector's limits allow: 4 connections (16 MiB of bodies at once) each
# send a 4 MiB body holding the most JSON tokens allowed (K8S_WEBHOOK_MAX_JSON_TOKENS, as empty
# objects: the costliest tree per token) and a string for the rest, all but the last byte;
# then every last byte at once, so the reviews run back to back. VmHWM is the peak.
timeout 60 python3 - "$port" ca.crt <<'PY'
import socket, ssl, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
objs = 49990  # tokens: one '{' and one ',' each, under 100000 with the rest
head = '{"padding":[' + ','.join(['{}'] * objs) + '],"s":"'
body = (head + 'x' * ((4 << 20) - 16 - len(head)) + '"}').encode()
ctx = ssl.create_default_context(cafile=cafile)
conns = []
for _ in range(4):
    c = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=30),
                        server_hostname='127.0.0.1')
    c.sendall(b'POST /inject HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
              b'Content-Length: %d\r\n\r\n' % len(body) + body[:-1])
    conns.append(c)
for c in conns:
    c.sendall(body[-1:])
for c in conns:
    status = c.recv(64).split(b' ')[1]
    if status != b'400':  # parsed in full, then not an AdmissionReview
        sys.exit('worst case: HTTP %s, not 400' % status.decode())
    c.close()
PY
sample "worst case: 4 x 4 MiB" 0
kill "$pid"
wait "$pid" || { echo "weft-injector exited with $?" >&2; cat log >&2; exit 1; }
pid=
