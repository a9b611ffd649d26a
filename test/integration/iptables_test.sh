#!/usr/bin/env bash
# weftctl iptables install / uninstall / check end to end, against the real iptables (Debian
# package iptables). Every case runs in a network namespace of its own (`unshare --net`), so the
# host's rules are never read or touched; a namespace and everything in it go when its case ends.
# Needs root (CI runs as root). Usage: iptables_test.sh WEFTCTL [CASE...]
set -uo pipefail

W=$(realpath "$1")
shift

# ---- one case, inside its own namespace ----
if [[ "${1:-}" == "--case" ]]; then
    case_name=$2
    tmp=$3
    export PATH="$tmp/bin:/usr/sbin:/sbin:$PATH"
    fails=0
    bad() { fails=$((fails + 1)); echo "FAIL [$case_name]: $*" >&2; }
    # nat table as iptables-save prints it, without comments and counters.
    save4() { iptables-save -t nat | grep -v '^#' | sed 's/ \[[0-9]*:[0-9]*\]$//'; }
    save6() { ip6tables-save -t nat | grep -v '^#' | sed 's/ \[[0-9]*:[0-9]*\]$//'; }
    all() { { iptables-save; ip6tables-save; } | grep -v '^#' | sed 's/ \[[0-9]*:[0-9]*\]$//'; }
    # run EXPECTED_EXIT WHAT -- ARGS...: weftctl with ARGS, output in $tmp/out and $tmp/err.
    run() {
        local want=$1 what=$2
        shift 3
        "$W" "$@" >"$tmp/out" 2>"$tmp/err"
        local got=$?
        if [[ $got -ne $want ]]; then
            bad "$what: exit $got, want $want"
            sed 's/^/    /' "$tmp/out" "$tmp/err" >&2
        fi
    }
    # has FILE REGEX WHAT
    has() { grep -qE -- "$2" "$tmp/$1" || { bad "$3: no /$2/ in $1:"; sed 's/^/    /' "$tmp/$1" >&2; }; }
    same() { # same WHAT FILE_A FILE_B
        diff -u "$2" "$3" >"$tmp/diff" || { bad "$1:"; sed 's/^/    /' "$tmp/diff" >&2; }
    }

    # A namespace with a route off the host (a TUN device nobody reads), so that connections to
    # 192.0.2.1 and 2001:db8::1 leave through it unless the rules redirect them.
    ip link set lo up
    ip tuntap add dev weft0 mode tun
    ip link set weft0 up
    ip addr add 198.18.0.1/15 dev weft0
    ip route add default dev weft0
    ip -6 addr add 2001:db8:1::1/64 dev weft0 nodad
    ip -6 route add default dev weft0

    OPTS=(--proxy-uid 1337 --exclude-inbound-ports 22,8000-8010
        --exclude-outbound-ports 5432 --exclude-outbound-cidrs 10.1.2.3/16,fd00::/8)
    expected() { # expected FAMILY: the nat table install writes for OPTS in an empty namespace
        local cidr=10.1.0.0/16
        [[ $1 == 6 ]] && cidr=fd00::/8
        cat <<EOF
*nat
:PREROUTING ACCEPT
:INPUT ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
:WEFT_INBOUND -
:WEFT_OUTPUT -
:WEFT_REDIRECT_IN -
:WEFT_REDIRECT_OUT -
-A PREROUTING -p tcp -j WEFT_INBOUND
-A OUTPUT -p tcp -j WEFT_OUTPUT
-A WEFT_INBOUND -p tcp -m multiport --dports 15000,22,8000:8010 -j RETURN
-A WEFT_INBOUND -p tcp -j WEFT_REDIRECT_IN
-A WEFT_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A WEFT_OUTPUT -o lo -j RETURN
-A WEFT_OUTPUT -p tcp -m multiport --dports 5432 -j RETURN
-A WEFT_OUTPUT -d $cidr -j RETURN
-A WEFT_OUTPUT -j WEFT_REDIRECT_OUT
-A WEFT_REDIRECT_IN -p tcp -j REDIRECT --to-ports 15006
-A WEFT_REDIRECT_OUT -p tcp -j REDIRECT --to-ports 15001
COMMIT
EOF
    }

    case $case_name in
    install_exact)
        run 0 "install" -- iptables install "${OPTS[@]}"
        has out '^IPv4: installed 9 rules in 4 chains, 2 jumps' "install says what it did"
        has out '^IPv6: installed 9 rules' "IPv6 is on by default here"
        save4 >"$tmp/got4"
        expected 4 >"$tmp/want4"
        same "IPv4 rules after install" "$tmp/want4" "$tmp/got4"
        save6 >"$tmp/got6"
        expected 6 >"$tmp/want6"
        same "IPv6 rules after install" "$tmp/want6" "$tmp/got6"
        ;;
    install_twice)
        run 0 "first install" -- iptables install "${OPTS[@]}"
        all >"$tmp/first"
        run 0 "second install" -- iptables install "${OPTS[@]}"
        all >"$tmp/second"
        same "install twice" "$tmp/first" "$tmp/second"
        ;;
    install_replaces)
        # Older weft rules, a stale weft chain and a duplicate jump: install replaces them all.
        run 0 "install with other options" -- iptables install --proxy-uid 999 --proxy-gid 999 \
            --inbound-ports 80,443 --outbound-port 16001 --exclude-outbound-cidrs 192.168.0.0/16
        iptables -t nat -N WEFT_OLD
        iptables -t nat -A WEFT_OLD -j RETURN
        iptables -t nat -A OUTPUT -j WEFT_OLD
        iptables -t nat -A OUTPUT -p tcp -j WEFT_OUTPUT
        run 0 "install" -- iptables install "${OPTS[@]}"
        save4 >"$tmp/got4"
        expected 4 >"$tmp/want4"
        same "IPv4 rules replaced" "$tmp/want4" "$tmp/got4"
        save6 >"$tmp/got6"
        expected 6 >"$tmp/want6"
        same "IPv6 rules replaced" "$tmp/want6" "$tmp/got6"
        ;;
    uninstall_keeps_others)
        # Someone else's rules in nat (a chain, a jump, a rule) and in filter, v4 and v6.
        for t in iptables ip6tables; do
            $t -t nat -N FOREIGN
            $t -t nat -A FOREIGN -p tcp --dport 9999 -j RETURN
            $t -t nat -A PREROUTING -j FOREIGN
            $t -t nat -A OUTPUT -p udp -j RETURN
            $t -A INPUT -p tcp --dport 9999 -j ACCEPT
        done
        all >"$tmp/before"
        run 0 "install" -- iptables install "${OPTS[@]}"
        iptables -t nat -A OUTPUT -p udp --dport 53 -j RETURN # added after ours
        all >"$tmp/before2"
        run 0 "install again" -- iptables install "${OPTS[@]}"
        all >"$tmp/after2"
        same "install again keeps the order of others' rules" "$tmp/before2" "$tmp/after2"
        iptables -t nat -D OUTPUT -p udp --dport 53 -j RETURN
        run 0 "uninstall" -- iptables uninstall
        has out '^IPv4: removed 4 weft chains and 2 jumps' "uninstall says what it removed"
        all >"$tmp/after"
        same "uninstall leaves exactly the others' rules" "$tmp/before" "$tmp/after"
        grep -q WEFT "$tmp/after" && bad "a WEFT chain or jump is left"
        run 0 "uninstall when nothing is installed" -- iptables uninstall
        all >"$tmp/after"
        same "a second uninstall changes nothing" "$tmp/before" "$tmp/after"
        ;;
    check)
        run 1 "check before install" -- iptables check "${OPTS[@]}"
        has err 'IPv4: weft.s nat rules are not installed' "check before install says so"
        run 0 "install" -- iptables install "${OPTS[@]}"
        run 0 "check after install" -- iptables check "${OPTS[@]}"
        has out '^ok: IPv4: 9 rules in 4 chains and 2 jumps' "check says ok (IPv4)"
        has out '^ok: IPv6: 9 rules' "check says ok (IPv6)"
        run 1 "check with other options" -- iptables check "${OPTS[@]}" --proxy-uid 1000
        has err 'missing: +-A WEFT_OUTPUT -m owner --uid-owner 1000 -j RETURN' "the wanted uid rule"
        has err 'unexpected: -A WEFT_OUTPUT -m owner --uid-owner 1337 -j RETURN' "the installed one"
        iptables -t nat -D WEFT_OUTPUT -o lo -j RETURN
        run 1 "check after a rule was deleted" -- iptables check "${OPTS[@]}"
        has err '^weftctl: IPv4 nat rules differ' "check names the family"
        has err 'missing: +-A WEFT_OUTPUT -o lo -j RETURN' "check names the missing rule"
        grep -q 'IPv6 nat rules differ' "$tmp/err" && bad "IPv6 reported though intact"
        run 0 "install repairs" -- iptables install "${OPTS[@]}"
        ip6tables -t nat -D OUTPUT -p tcp -j WEFT_OUTPUT
        ip6tables -t nat -A WEFT_INBOUND -j RETURN
        run 1 "check after IPv6 changes" -- iptables check "${OPTS[@]}"
        has err 'IPv6 nat rules differ' "IPv6 named"
        has err 'missing: +-A OUTPUT -p tcp -j WEFT_OUTPUT' "the missing jump"
        has err 'unexpected: -A WEFT_INBOUND -j RETURN' "the extra rule"
        run 0 "check --no-ipv6 ignores IPv6" -- iptables check "${OPTS[@]}" --no-ipv6
        ;;
    self_test)
        run 0 "install" -- iptables install "${OPTS[@]}"
        run 0 "check --self-test" -- iptables check --self-test "${OPTS[@]}"
        has out '^ok: self-test IPv4 outbound: a connection from uid 65534 to 192\.0\.2\.1:9 reached port 15001' "IPv4 redirect proven"
        has out '^ok: self-test IPv6 outbound: a connection from uid 65534 to \[2001:db8::1\]:9 reached port 15001' "IPv6 redirect proven"
        # The redirect goes to 15001, where nothing listens; weftctl listens on 15002.
        run 1 "self-test with nothing on the redirect port" -- \
            iptables check --self-test "${OPTS[@]}" --outbound-port 15002
        has err 'self-test IPv4 outbound FAILED: .*did not reach port 15002 within 3 s: connect: Connection refused' "refused"
        run 0 "uninstall" -- iptables uninstall
        run 1 "self-test without rules" -- iptables check --self-test "${OPTS[@]}" --no-ipv6
        has err 'self-test IPv4 outbound FAILED: .*192\.0\.2\.1:9 did not reach port 15001 within 3 s' "not redirected"
        has err 'self-test IPv4 inbound FAILED: ' "inbound not redirected either"
        ;;
    self_test_inbound)
        # The inbound half of --self-test: a SYN written into a veth pair weftctl makes here
        # (weftst-tx -> weftst-rx), so that it crosses PREROUTING, must reach the inbound port.
        # After every run, pass or fail, nothing of it may be left.
        probe4='from 198\.19\.255\.254 to 198\.19\.255\.253:9, entering through weftst-rx'
        probe6='from 2001:2::ff:2 to \[2001:2::ff:1\]:9, entering through weftst-rx'
        clean() { # clean WHAT: no probe interface, address or connection is left
            ip -o link show | grep weftst >/dev/null && bad "$1: the probe veth pair is left"
            ip -o addr show | grep -E '198\.19\.255\.|2001:2::ff:' >/dev/null && bad "$1: a probe address is left"
            ss -Htan | grep -v '^LISTEN' | grep . >/dev/null && {
                bad "$1: connections are left:"
                ss -tan >&2
            }
        }
        run 0 "install" -- iptables install "${OPTS[@]}"
        run 0 "check --self-test" -- iptables check --self-test "${OPTS[@]}"
        has out "^ok: self-test IPv4 inbound: a connection $probe4, reached port 15006 \\(weftctl listening there, original destination checked\\)" "IPv4 inbound redirect proven"
        has out "^ok: self-test IPv6 inbound: a connection $probe6, reached port 15006 \\(weftctl listening" "IPv6 inbound redirect proven"
        clean "a passing self-test"

        # No jump from PREROUTING (IPv4 only): the SYN meets no redirect and is refused.
        iptables -t nat -D PREROUTING -p tcp -j WEFT_INBOUND
        run 1 "self-test without the IPv4 inbound jump" -- iptables check --self-test "${OPTS[@]}"
        has err "^weftctl: self-test IPv4 inbound FAILED: a connection $probe4, did not reach port 15006 within 3 s: answered with a reset" "IPv4 inbound named"
        has out '^ok: self-test IPv4 outbound' "outbound still proven"
        has out '^ok: self-test IPv6 inbound' "IPv6 inbound still proven"
        clean "a failing self-test"
        run 0 "install repairs" -- iptables install "${OPTS[@]}"

        # The IPv6 inbound redirect emptied: only IPv6 inbound fails.
        ip6tables -t nat -F WEFT_REDIRECT_IN
        run 1 "self-test without the IPv6 inbound redirect" -- iptables check --self-test "${OPTS[@]}"
        has err "^weftctl: self-test IPv6 inbound FAILED: a connection $probe6, did not reach port 15006" "IPv6 inbound named"
        grep -q 'IPv4 inbound FAILED' "$tmp/err" && bad "IPv4 inbound reported though intact"
        clean "a failing IPv6 self-test"
        run 0 "install repairs" -- iptables install "${OPTS[@]}"

        # Redirected elsewhere, where nothing listens: refused.
        iptables -t nat -R WEFT_REDIRECT_IN 1 -p tcp -j REDIRECT --to-ports 15007
        run 1 "self-test redirected to 15007" -- iptables check --self-test "${OPTS[@]}" --no-ipv6
        has err "self-test IPv4 inbound FAILED: .*did not reach port 15006 within 3 s: answered with a reset: nothing listened where the rules sent it" "redirect elsewhere"
        # ... and where something listens: answered, but not at weftctl's listener.
        perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalPort => 15007, Listen => 5,
            ReuseAddr => 1) or die "listen: $!"; print "ready\n"; $| = 1; sleep 30' >"$tmp/l7" &
        l7=$!
        for _ in $(seq 300); do [[ -s $tmp/l7 ]] && break; sleep 0.1; done
        run 1 "self-test redirected to a listener on 15007" -- iptables check --self-test "${OPTS[@]}" --no-ipv6
        has err "self-test IPv4 inbound FAILED: .*: a listener answered, but not weftctl's on port 15006: the rules sent it to another port" "answered elsewhere"
        kill $l7
        wait $l7 2>/dev/null
        clean "a self-test answered elsewhere"
        run 0 "install repairs" -- iptables install "${OPTS[@]}"

        # The inbound port taken (as by the proxy): an answer from its listener counts, and the
        # half-open connection is reset before that listener could accept it.
        perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalPort => 15006, Listen => 5,
            ReuseAddr => 1) or die "listen: $!"; print "ready\n"; $| = 1; sleep 30' >"$tmp/l6" &
        l6=$!
        for _ in $(seq 300); do [[ -s $tmp/l6 ]] && break; sleep 0.1; done
        run 0 "self-test with the inbound port taken" -- iptables check --self-test "${OPTS[@]}" --no-ipv6
        has out "^ok: self-test IPv4 inbound: .*reached port 15006 \\(port already in use, the connection was answered there\\)" "answered by the port's listener"
        clean "a self-test with the port taken"
        kill $l6
        wait $l6 2>/dev/null

        # A pair left by an earlier weftctl (killed with SIGKILL) is deleted first.
        ip link add weftst-tx type veth peer name weftst-rx
        run 0 "self-test with a stale pair" -- iptables check --self-test "${OPTS[@]}" --no-ipv6
        has err 'note: deleted weftst-tx, left by an earlier self-test' "stale pair named"
        clean "a self-test after a stale pair"

        # Nothing answers (the probe dropped): bounded by 3 s, and SIGTERM meanwhile waits for
        # the pair to be deleted.
        iptables -I INPUT -i weftst-rx -j DROP
        run 1 "self-test with the probe dropped" -- iptables check --self-test "${OPTS[@]}" --no-ipv6
        has err "self-test IPv4 inbound FAILED: .*within 3 s: no answer" "no answer"
        clean "a self-test nobody answered"
        "$W" iptables check --self-test "${OPTS[@]}" --no-ipv6 >"$tmp/out" 2>"$tmp/err" &
        w=$!
        # (grep without -q reads all of ip's output: with pipefail, grep -q exiting at the
        # first match can fail the pipeline with ip's SIGPIPE when there are many links, as
        # when the e2e tests run beside this one; up to 30 s, for a loaded machine)
        for _ in $(seq 300); do ip -o link show | grep weftst >/dev/null && break; sleep 0.1; done
        ip -o link show | grep weftst >/dev/null || bad "the probe pair never appeared within 30 s"
        kill -TERM $w
        wait $w
        rc=$?
        [[ $rc -eq 143 ]] || bad "SIGTERM during the self-test: exit $rc, want 143 (the signal, once the pair was gone)"
        clean "a self-test stopped by SIGTERM"
        iptables -D INPUT -i weftst-rx -j DROP

        # Listed inbound ports: the probe goes to one of them.
        run 0 "install listed" -- iptables install --inbound-ports 80,443 --no-ipv6
        run 0 "self-test listed" -- iptables check --self-test --inbound-ports 80,443 --no-ipv6
        has out '^ok: self-test IPv4 inbound: a connection from 198\.19\.255\.254 to 198\.19\.255\.253:80,' "a listed port"
        clean "a self-test of listed ports"
        ;;
    listed_ports)
        # Listed inbound ports, a gid, other capture ports, and more ports than one multiport
        # rule holds (15, a range counting 2): split over two rules.
        many=1,2,3,4,5,6,7,8,9,10,11,12,13,14,100-200,16,17
        run 0 "install" -- iptables install --proxy-uid 2102 --proxy-gid 2103 --no-ipv6 \
            --inbound-ports 80,443 --outbound-port 4140 --inbound-port 4143 --admin-port 4191 \
            --exclude-outbound-ports $many
        save4 | grep -E '^-A (WEFT|PREROUTING|OUTPUT)' >"$tmp/got4"
        cat >"$tmp/want4" <<'EOF'
-A PREROUTING -p tcp -j WEFT_INBOUND
-A OUTPUT -p tcp -j WEFT_OUTPUT
-A WEFT_INBOUND -p tcp -m multiport --dports 4191 -j RETURN
-A WEFT_INBOUND -p tcp -m multiport --dports 80,443 -j WEFT_REDIRECT_IN
-A WEFT_OUTPUT -m owner --uid-owner 2102 -j RETURN
-A WEFT_OUTPUT -m owner --gid-owner 2103 -j RETURN
-A WEFT_OUTPUT -o lo -j RETURN
-A WEFT_OUTPUT -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14 -j RETURN
-A WEFT_OUTPUT -p tcp -m multiport --dports 100:200,16,17 -j RETURN
-A WEFT_OUTPUT -j WEFT_REDIRECT_OUT
-A WEFT_REDIRECT_IN -p tcp -j REDIRECT --to-ports 4143
-A WEFT_REDIRECT_OUT -p tcp -j REDIRECT --to-ports 4140
EOF
        same "listed ports, gid, split multiport" "$tmp/want4" "$tmp/got4"
        ip6tables-save -t nat 2>/dev/null | grep WEFT >/dev/null && bad "--no-ipv6 wrote IPv6 rules"
        run 0 "check" -- iptables check --proxy-uid 2102 --proxy-gid 2103 --no-ipv6 \
            --inbound-ports 80,443 --outbound-port 4140 --inbound-port 4143 --admin-port 4191 \
            --exclude-outbound-ports $many
        ;;
    dry_run)
        all >"$tmp/before"
        run 0 "install --dry-run" -- iptables install --dry-run "${OPTS[@]}"
        has out '^# IPv4: iptables-restore --noflush' "the IPv4 payload"
        has out '^# IPv6: ip6tables-restore --noflush' "the IPv6 payload"
        has out '^-A WEFT_OUTPUT -m owner --uid-owner 1337 -j RETURN$' "a rule"
        has out '^COMMIT$' "the commit"
        all >"$tmp/after"
        same "install --dry-run changes nothing" "$tmp/before" "$tmp/after"
        run 0 "install" -- iptables install "${OPTS[@]}"
        all >"$tmp/before"
        run 0 "uninstall --dry-run" -- iptables uninstall --dry-run
        has out '^-D PREROUTING -p tcp -j WEFT_INBOUND$' "uninstall deletes the jump"
        has out '^-X WEFT_OUTPUT$' "uninstall deletes the chain"
        all >"$tmp/after"
        same "uninstall --dry-run changes nothing" "$tmp/before" "$tmp/after"
        ;;
    errors)
        # iptables' own refusal is shown with the payload line; with IPv6 refused at commit
        # after IPv4 went in, IPv4 is put back.
        mkdir -p "$tmp/bin"
        cat >"$tmp/bin/ip6tables-restore" <<'EOF'
#!/bin/sh
cat >/dev/null
case " $* " in *" --test "*) exit 0 ;; esac
echo "ip6tables-restore v1.8.9 (nf_tables): RULE_APPEND failed (No such file or directory): rule in chain OUTPUT" >&2
echo "Error occurred at line: 2" >&2
exit 4
EOF
        chmod +x "$tmp/bin/ip6tables-restore"
        iptables -t nat -A OUTPUT -p udp -j RETURN
        ip6tables -t nat -A OUTPUT -p udp -j RETURN
        all >"$tmp/before"
        run 1 "install with IPv6 refused" -- iptables install "${OPTS[@]}"
        has err 'IPv6 rules refused by ip6tables-restore --noflush \(exit 4\): .*RULE_APPEND failed' "iptables' message"
        has err 'line 2 of the payload: :WEFT_INBOUND - \[0:0\]' "the payload line"
        has err 'IPv4 put back as it was' "IPv4 rolled back"
        all >"$tmp/after"
        same "a refused install leaves nothing" "$tmp/before" "$tmp/after"
        rm "$tmp/bin/ip6tables-restore"
        # Not root (weftctl copied where uid 65534 can run it).
        nr=$(mktemp -d /tmp/weftctl_nr.XXXXXX)
        chmod 755 "$nr"
        cp "$W" "$nr/weftctl"
        setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps=-all "$nr/weftctl" iptables install \
            >"$tmp/out" 2>"$tmp/err"
        rc=$?
        [[ $rc -eq 1 ]] || bad "install as uid 65534: exit $rc, want 1"
        rm -rf "$nr"
        has err 'needs root or CAP_NET_ADMIN \(running as uid 65534\)' "not root"
        # Bad flags: exit 2 with the usage.
        while IFS= read -r args; do
            read -ra a <<<"$args"
            run 2 "iptables $args" -- iptables "${a[@]}"
            has err '^usage: weftctl iptables' "usage for: $args"
        done <<'EOF'
bogus
install --proxy-uid abc
install --exclude-outbound-cidrs 10.0.0.0/33
install --exclude-outbound-cidrs 10.0.0.0,nope
install --inbound-ports 0
install --exclude-outbound-ports 90-80
install --outbound-port 70000
install --outbound-port 15006
install --self-test
install extra
check --self-test-to 10.0.0.0/8
check --frobnicate
EOF
        "$W" iptables >/dev/null 2>&1
        [[ $? -eq 2 ]] || bad "bare 'weftctl iptables' should exit 2"
        "$W" iptables --help >"$tmp/out" 2>&1 || bad "--help should exit 0"
        has out '--exclude-outbound-cidrs' "--help lists the flags"
        ;;
    *)
        bad "no such case"
        ;;
    esac
    exit $((fails > 0))
fi

# ---- the driver ----
if [[ $(id -u) -ne 0 ]]; then
    echo "iptables_test: needs root (it creates network namespaces and writes nat rules in them);" \
        "run it as root, as CI does" >&2
    exit 1
fi
for tool in unshare ip ss iptables-restore ip6tables-restore iptables-save setpriv timeout perl; do
    PATH="/usr/sbin:/sbin:$PATH" command -v $tool >/dev/null ||
        { echo "iptables_test: $tool not found (Debian packages iptables, iproute2, util-linux, perl-base)" >&2; exit 1; }
done
cases=("$@")
if [[ ${#cases[@]} -eq 0 ]]; then
    cases=(install_exact install_twice install_replaces uninstall_keeps_others check self_test
        self_test_inbound listed_ports dry_run errors)
fi
base=$(mktemp -d "${TEST_TMPDIR:-/tmp}/iptables_test.XXXXXX")
trap 'rm -rf "$base"' EXIT
failed=0
for c in "${cases[@]}"; do
    mkdir -p "$base/$c"
    # Bounded: the case and everything it started are killed after 90 s.
    if timeout -k 5 90 unshare --net --fork --pid --mount-proc --kill-child -- \
        bash "$0" "$W" --case "$c" "$base/$c"; then
        echo "PASS $c"
    else
        echo "FAIL $c" >&2
        failed=$((failed + 1))
    fi
done
echo "iptables_test: $((${#cases[@]} - failed)) of ${#cases[@]} cases passed"
[[ $failed -eq 0 ]]
