/* weftctl iptables install | uninstall | check: the nat rules that send a pod's TCP through its
 * weft proxy (issue 6). The rules live in weft's own chains (WEFT_*), reached by one jump from
 * PREROUTING and one from OUTPUT, and are written as one iptables-restore --noflush payload per
 * address family, so that a half-installed rule set never exists. Rules are written in the form
 * iptables-save prints them, which lets `check` compare the two line by line. External programs
 * run through posix_spawn, without a shell; iptables-restore reads its payload on stdin.
 * `check --self-test` sends real connections through the rules: outbound from a child under
 * another uid, inbound through a veth pair it makes and deletes (see "inbound self-test"). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cli/internal.h"
#include "lib/base/mem.h"

extern char **environ;

/* <linux/netfilter_ipv4.h> SO_ORIGINAL_DST and <linux/netfilter_ipv6/ip6_tables.h>
 * IP6T_SO_ORIGINAL_DST, both 80; the kernel headers clash with <netinet/in.h>. */
#define ORIGINAL_DST_OPT 80

#define MAX_PORTS 64     /* entries of one port list */
#define MAX_CIDRS 64     /* --exclude-outbound-cidrs entries */
#define MULTIPORT_MAX 15 /* xt_multiport: at most 15 ports per rule, a range counts 2 */
#define EXEC_TIMEOUT_MS 30000
#define EXEC_MAX_OUTPUT (4 << 20)
#define SELF_TEST_MS 3000
#define CHAIN_PREFIX "WEFT_"
/* The inbound self-test's veth pair and addresses (see "inbound self-test" below): from the
 * benchmarking ranges of RFC 2544 and RFC 5180, which no pod network routes. */
#define PROBE_TX "weftst-tx"
#define PROBE_RX "weftst-rx"
#define PROBE_V4 "198.19.255.253" /* PROBE_RX's, in a /30 */
#define PROBE_V4_PEER "198.19.255.254"
#define PROBE_V6 "2001:2::ff:1" /* PROBE_RX's, in a /126 */
#define PROBE_V6_PEER "2001:2::ff:2"
#define PROBE_RESEND_MS 500

static const char usage[] =
    "usage: weftctl iptables install|uninstall|check [flags]\n"
    "\n"
    "Writes, removes or verifies the nat rules that send a pod's TCP through its weft proxy:\n"
    "chains WEFT_INBOUND, WEFT_REDIRECT_IN, WEFT_OUTPUT and WEFT_REDIRECT_OUT, reached from\n"
    "PREROUTING and OUTPUT (IPv4 with iptables, IPv6 with ip6tables). The proxy's own traffic\n"
    "(--proxy-uid, --proxy-gid), all loopback traffic and the admin port are never "
    "redirected.\n"
    "Each family's rules are applied as one `iptables-restore --noflush` transaction; install\n"
    "replaces any earlier weft rules and leaves everyone else's alone; uninstall removes "
    "weft's\n"
    "chains and jumps only. Needs root (or CAP_NET_ADMIN) and the Debian package iptables.\n"
    "\n"
    "Flags (uninstall needs only --ipv6/--no-ipv6 and --dry-run, and ignores the others):\n"
    "  --proxy-uid UID                 the proxy's uid, never redirected (default 1337)\n"
    "  --proxy-gid GID                 also exempt this gid (default: none)\n"
    "  --outbound-port PORT            outbound capture port (default 15001)\n"
    "  --inbound-port PORT             inbound capture port (default 15006)\n"
    "  --admin-port PORT               admin port, never redirected inbound (default 15000)\n"
    "  --inbound-ports '*'|PORTS       inbound ports to capture (default '*': all)\n"
    "  --exclude-inbound-ports PORTS   inbound ports left alone\n"
    "  --exclude-outbound-ports PORTS  outbound destination ports left alone\n"
    "  --exclude-outbound-cidrs CIDRS  outbound destinations left alone (IPv4 and IPv6)\n"
    "  --ipv6 | --no-ipv6              IPv6 rules too (default: when ip6tables works here)\n"
    "  --dry-run                       print the iptables-restore payloads, change nothing\n"
    "  --self-test                     (check) also send a real connection each way through\n"
    "                                  the rules, per family, each within 3 s. Outbound: from\n"
    "                                  a uid other than the proxy's, to an address that is\n"
    "                                  redirected; it must reach the outbound port. Inbound: a\n"
    "                                  SYN to a captured port (9 when it can), written into a\n"
    "                                  veth pair made for the test (" PROBE_TX " -> " PROBE_RX ",\n"
    "                                  the latter holding " PROBE_V4 "/30 and\n"
    "                                  " PROBE_V6 "/126), so that it enters through PREROUTING as\n"
    "                                  a pod's inbound traffic does; it must reach the inbound\n"
    "                                  port. weftctl listens on each port when it is free and\n"
    "                                  checks the connection's original destination (when the\n"
    "                                  port is taken, an answer from its listener counts). The\n"
    "                                  pair is deleted afterwards (one a killed weftctl left, by\n"
    "                                  the next self-test). Needs root (setuid, CAP_NET_ADMIN,\n"
    "                                  CAP_NET_RAW) and the kernel's veth driver\n"
    "  --self-test-to IP               (check) the outbound self-test's destination, one per\n"
    "                                  family (default 192.0.2.1 and 2001:db8::1, routed off\n"
    "                                  host)\n"
    "PORTS is a comma-separated list of ports and ranges (8000-8100); CIDRS of A.B.C.D[/N]\n"
    "and IPV6[/N]; an empty list means none.\n"
    "Exit: 0 done / rules match, 1 failed / rules differ, 2 usage.\n";

struct port_range {
    unsigned lo, hi;
};

struct port_list {
    struct port_range r[MAX_PORTS];
    size_t num;
};

struct cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    unsigned prefix;
};

struct options {
    long proxy_uid, proxy_gid; /* proxy_gid -1: none */
    unsigned outbound_port, inbound_port, admin_port;
    bool inbound_all;
    struct port_list inbound, excl_in, excl_out;
    struct cidr cidrs[MAX_CIDRS];
    size_t num_cidrs;
    int ipv6; /* -1 auto, 0 off, 1 on */
    bool dry_run, self_test;
    struct cidr self_test_to[2]; /* [0] IPv4, [1] IPv6; prefix 0: not given */
};

/* struct lines is a growable list of owned strings. */
struct lines {
    char **v;
    size_t num, cap;
};

/* struct nat_state is weft's part of one family's nat table: its chains, the rules in them in
 * iptables-save form ("-A WEFT_OUTPUT ..."), and the jumps into them from other chains. */
struct nat_state {
    struct lines chains, rules, jumps;
};

/* struct family names one address family's tools. */
struct family {
    const char *name; /* "IPv4" */
    int af;
    const char *save, *restore; /* program names */
};

static const struct family families[2] = {
    {"IPv4", AF_INET, "iptables-save", "iptables-restore"},
    {"IPv6", AF_INET6, "ip6tables-save", "ip6tables-restore"},
};

static void lines_add(struct lines *l, const char *s)
{
    if (l->num == l->cap) {
        l->cap = l->cap == 0 ? 16 : l->cap * 2;
        l->v = weft_xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->num++] = weft_xstrndup(s, strlen(s));
}

static void lines_addf(struct lines *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lines_addf(struct lines *l, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    lines_add(l, buf);
}

static bool lines_has(const struct lines *l, const char *s)
{
    for (size_t i = 0; i < l->num; i++) {
        if (strcmp(l->v[i], s) == 0) {
            return true;
        }
    }
    return false;
}

static void lines_cleanup(struct lines *l)
{
    for (size_t i = 0; i < l->num; i++) {
        free(l->v[i]);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static void nat_state_cleanup(struct nat_state *s)
{
    lines_cleanup(&s->chains);
    lines_cleanup(&s->rules);
    lines_cleanup(&s->jumps);
}

/* ---- parsing flags ---- */

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    if (*s < '0' || *s > '9') {
        return false;
    }
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max) {
        return false;
    }
    *out = v;
    return true;
}

static bool parse_port(const char *s, unsigned *out)
{
    unsigned long v;
    if (!parse_uint(s, 65535, &v) || v == 0) {
        return false;
    }
    *out = (unsigned)v;
    return true;
}

/* parse_ports reads "80,443,8000-8100" (also "8000:8100"); "" is the empty list. */
static bool parse_ports(struct port_list *out, const char *flag, const char *arg)
{
    char buf[1024];
    out->num = 0;
    if (strlen(arg) >= sizeof(buf)) {
        fprintf(stderr, "weftctl: %s: list too long\n", flag);
        return false;
    }
    strcpy(buf, arg);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        struct port_range r;
        char *dash = strpbrk(tok, "-:");
        if (dash != NULL) {
            *dash = '\0';
        }
        if (!parse_port(tok, &r.lo) || (dash != NULL && !parse_port(dash + 1, &r.hi))) {
            fprintf(stderr, "weftctl: %s %s: \"%s%s%s\" is not a port 1-65535 or a range A-B\n",
                    flag, arg, tok, dash != NULL ? "-" : "", dash != NULL ? dash + 1 : "");
            return false;
        }
        if (dash == NULL) {
            r.hi = r.lo;
        }
        if (r.hi < r.lo) {
            fprintf(stderr, "weftctl: %s %s: range %u-%u is reversed\n", flag, arg, r.lo, r.hi);
            return false;
        }
        if (out->num == MAX_PORTS) {
            fprintf(stderr, "weftctl: %s: more than %d entries\n", flag, MAX_PORTS);
            return false;
        }
        bool dup = false;
        for (size_t i = 0; i < out->num; i++) {
            dup = dup || (out->r[i].lo == r.lo && out->r[i].hi == r.hi);
        }
        if (!dup) {
            out->r[out->num++] = r;
        }
    }
    return true;
}

static bool ports_contain(const struct port_list *l, unsigned port)
{
    for (size_t i = 0; i < l->num; i++) {
        if (port >= l->r[i].lo && port <= l->r[i].hi) {
            return true;
        }
    }
    return false;
}

/* parse_cidr reads an address with an optional /prefix and clears the host bits, so that the
 * rule reads as iptables-save prints it (10.1.2.3/8 becomes 10.0.0.0/8). */
static bool parse_cidr(struct cidr *out, const char *s)
{
    char buf[INET6_ADDRSTRLEN + 8];
    if (strlen(s) >= sizeof(buf)) {
        return false;
    }
    strcpy(buf, s);
    char *slash = strchr(buf, '/');
    if (slash != NULL) {
        *slash = '\0';
    }
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
    } else {
        return false;
    }
    unsigned bits = out->family == AF_INET ? 32 : 128;
    unsigned long prefix = bits;
    if (slash != NULL && !parse_uint(slash + 1, bits, &prefix)) {
        return false;
    }
    out->prefix = (unsigned)prefix;
    for (unsigned i = out->prefix; i < bits; i++) {
        out->addr[i / 8] &= (unsigned char)~(0x80u >> (i % 8));
    }
    return true;
}

static void cidr_format(char *out, size_t out_len, const struct cidr *c)
{
    char a[INET6_ADDRSTRLEN];
    inet_ntop(c->family, c->addr, a, sizeof(a));
    snprintf(out, out_len, "%s/%u", a, c->prefix);
}

static bool cidr_contains(const struct cidr *c, int family, const unsigned char *addr)
{
    if (c->family != family) {
        return false;
    }
    for (unsigned i = 0; i < c->prefix; i++) {
        unsigned char m = (unsigned char)(0x80u >> (i % 8));
        if ((c->addr[i / 8] & m) != (addr[i / 8] & m)) {
            return false;
        }
    }
    return true;
}

static bool parse_cidrs(struct options *o, const char *arg)
{
    char buf[4096];
    o->num_cidrs = 0;
    if (strlen(arg) >= sizeof(buf)) {
        fprintf(stderr, "weftctl: --exclude-outbound-cidrs: list too long\n");
        return false;
    }
    strcpy(buf, arg);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (o->num_cidrs == MAX_CIDRS) {
            fprintf(stderr, "weftctl: --exclude-outbound-cidrs: more than %d entries\n", MAX_CIDRS);
            return false;
        }
        if (!parse_cidr(&o->cidrs[o->num_cidrs], tok)) {
            fprintf(stderr,
                    "weftctl: --exclude-outbound-cidrs %s: \"%s\" is not an IPv4 or IPv6 address "
                    "with an optional /prefix\n",
                    arg, tok);
            return false;
        }
        o->num_cidrs++;
    }
    return true;
}

/* ---- the rules ---- */

/* add_multiport adds "-A CHAIN -p tcp -m multiport --dports LIST -j TARGET" rules for |l|,
 * split so that no rule holds more than xt_multiport's 15 ports. */
static void add_multiport(struct lines *out, const char *chain, const struct port_list *l,
                          const char *target)
{
    char list[256];
    size_t len = 0, weight = 0;
    for (size_t i = 0; i <= l->num; i++) {
        size_t w = i < l->num ? (l->r[i].lo == l->r[i].hi ? 1 : 2) : 0;
        if (len > 0 && (i == l->num || weight + w > MULTIPORT_MAX)) {
            lines_addf(out, "-A %s -p tcp -m multiport --dports %s -j %s", chain, list, target);
            len = 0;
            weight = 0;
        }
        if (i == l->num) {
            break;
        }
        if (l->r[i].lo == l->r[i].hi) {
            len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%u", len ? "," : "",
                                    l->r[i].lo);
        } else {
            len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%u:%u", len ? "," : "",
                                    l->r[i].lo, l->r[i].hi);
        }
        weight += w;
    }
}

/* build_rules writes the nat state install makes for |fam|. */
static void build_rules(struct nat_state *out, const struct options *o, int af)
{
    static const char *const chains[] = {"WEFT_INBOUND", "WEFT_OUTPUT", "WEFT_REDIRECT_IN",
                                         "WEFT_REDIRECT_OUT"};
    for (size_t i = 0; i < sizeof(chains) / sizeof(chains[0]); i++) {
        lines_add(&out->chains, chains[i]);
    }
    struct lines *r = &out->rules;
    /* Inbound: the admin port and the excluded ports first, then capture. */
    struct port_list in_excl = {.num = 0};
    in_excl.r[in_excl.num++] = (struct port_range){o->admin_port, o->admin_port};
    for (size_t i = 0; i < o->excl_in.num; i++) {
        if (o->excl_in.r[i].lo != o->admin_port || o->excl_in.r[i].hi != o->admin_port) {
            in_excl.r[in_excl.num++] = o->excl_in.r[i];
        }
    }
    add_multiport(r, "WEFT_INBOUND", &in_excl, "RETURN");
    if (o->inbound_all) {
        lines_add(r, "-A WEFT_INBOUND -p tcp -j WEFT_REDIRECT_IN");
    } else {
        add_multiport(r, "WEFT_INBOUND", &o->inbound, "WEFT_REDIRECT_IN");
    }
    /* Outbound: the proxy's own connections (the loop breaker), loopback (the app's own
     * localhost traffic, and the proxy's admin port), then excluded ports and destinations. */
    lines_addf(r, "-A WEFT_OUTPUT -m owner --uid-owner %ld -j RETURN", o->proxy_uid);
    if (o->proxy_gid >= 0) {
        lines_addf(r, "-A WEFT_OUTPUT -m owner --gid-owner %ld -j RETURN", o->proxy_gid);
    }
    lines_add(r, "-A WEFT_OUTPUT -o lo -j RETURN");
    add_multiport(r, "WEFT_OUTPUT", &o->excl_out, "RETURN");
    for (size_t i = 0; i < o->num_cidrs; i++) {
        if (o->cidrs[i].family == af) {
            char c[INET6_ADDRSTRLEN + 8];
            cidr_format(c, sizeof(c), &o->cidrs[i]);
            lines_addf(r, "-A WEFT_OUTPUT -d %s -j RETURN", c);
        }
    }
    lines_add(r, "-A WEFT_OUTPUT -j WEFT_REDIRECT_OUT");
    lines_addf(r, "-A WEFT_REDIRECT_IN -p tcp -j REDIRECT --to-ports %u", o->inbound_port);
    lines_addf(r, "-A WEFT_REDIRECT_OUT -p tcp -j REDIRECT --to-ports %u", o->outbound_port);
    lines_add(&out->jumps, "-A PREROUTING -p tcp -j WEFT_INBOUND");
    lines_add(&out->jumps, "-A OUTPUT -p tcp -j WEFT_OUTPUT");
}

/* rule_chain copies the chain name of "-A CHAIN ..." into |out|. */
static void rule_chain(char *out, size_t out_len, const char *rule)
{
    const char *p = rule + 3, *sp = strchr(p, ' ');
    size_t n = sp != NULL ? (size_t)(sp - p) : strlen(p);
    if (n >= out_len) {
        n = out_len - 1;
    }
    memcpy(out, p, n);
    out[n] = '\0';
}

static bool jumps_to_weft(const char *rule)
{
    return strstr(rule, " -j " CHAIN_PREFIX) != NULL || strstr(rule, " -g " CHAIN_PREFIX) != NULL;
}

/* parse_save reads weft's part out of `iptables-save -t nat` output. */
static void parse_save(struct nat_state *out, char *text)
{
    bool in_nat = false;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '*') {
            in_nat = strcmp(line, "*nat") == 0;
        } else if (!in_nat) {
            continue;
        } else if (strncmp(line, ":" CHAIN_PREFIX, 1 + strlen(CHAIN_PREFIX)) == 0) {
            char *sp = strchr(line, ' ');
            if (sp != NULL) {
                *sp = '\0';
            }
            lines_add(&out->chains, line + 1);
        } else if (strncmp(line, "-A " CHAIN_PREFIX, 3 + strlen(CHAIN_PREFIX)) == 0) {
            lines_add(&out->rules, line);
        } else if (strncmp(line, "-A ", 3) == 0 && jumps_to_weft(line)) {
            lines_add(&out->jumps, line);
        }
    }
}

/* build_payload writes the iptables-restore --noflush input that takes the nat table from |cur|
 * to |want|, touching nothing but weft's chains and the jumps into them. Declaring a chain
 * flushes it; jumps already in place stay where they are, so installing twice changes nothing.
 */
static void build_payload(struct lines *out, const struct nat_state *cur,
                          const struct nat_state *want)
{
    lines_add(out, "*nat");
    for (size_t i = 0; i < want->chains.num; i++) {
        lines_addf(out, ":%s - [0:0]", want->chains.v[i]);
    }
    for (size_t i = 0; i < cur->chains.num; i++) {
        if (!lines_has(&want->chains, cur->chains.v[i])) {
            lines_addf(out, ":%s - [0:0]", cur->chains.v[i]);
        }
    }
    /* A wanted jump that exists is kept (its first copy); every other jump goes. */
    bool *kept = weft_xcalloc(cur->jumps.num + 1, sizeof(bool));
    bool *have = weft_xcalloc(want->jumps.num + 1, sizeof(bool));
    for (size_t w = 0; w < want->jumps.num; w++) {
        for (size_t c = 0; c < cur->jumps.num && !have[w]; c++) {
            if (!kept[c] && strcmp(cur->jumps.v[c], want->jumps.v[w]) == 0) {
                kept[c] = have[w] = true;
            }
        }
    }
    for (size_t c = 0; c < cur->jumps.num; c++) {
        if (!kept[c]) {
            lines_addf(out, "-D%s", cur->jumps.v[c] + 2);
        }
    }
    for (size_t i = 0; i < want->rules.num; i++) {
        lines_add(out, want->rules.v[i]);
    }
    for (size_t w = 0; w < want->jumps.num; w++) {
        if (!have[w]) {
            lines_add(out, want->jumps.v[w]);
        }
    }
    for (size_t i = 0; i < cur->chains.num; i++) {
        if (!lines_has(&want->chains, cur->chains.v[i])) {
            lines_addf(out, "-X %s", cur->chains.v[i]);
        }
    }
    lines_add(out, "COMMIT");
    free(kept);
    free(have);
}

/* ---- running iptables ---- */

/* find_program looks |name| up in PATH and then in the sbin directories, which a non-login
 * root shell or a test runner often leaves out of PATH. */
static bool find_program(char *out, size_t out_len, const char *name)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof(dirs), "%s:/usr/sbin:/sbin:/usr/local/sbin", path != NULL ? path : "");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d != NULL;
         d = strtok_r(NULL, ":", &save)) {
        struct stat st;
        snprintf(out, out_len, "%s/%s", d, name);
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0) {
            return true;
        }
    }
    return false;
}

struct run_result {
    int status; /* exit code, or 128 + signal, or -1 when it could not run */
    char *out, *err;
};

static void run_result_cleanup(struct run_result *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof(*r));
}

static void append(char **buf, size_t *len, const char *data, size_t n)
{
    if (*len + n > EXEC_MAX_OUTPUT) {
        n = EXEC_MAX_OUTPUT - *len;
    }
    *buf = weft_xrealloc(*buf, *len + n + 1);
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* run starts |argv| (argv[0] an absolute path) with |input| on its stdin and collects its
 * stdout and stderr; a program still running after 30 s is killed. Returns false when it could
 * not be started, with errno set. */
static bool run(struct run_result *r, char *const argv[], const char *input)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    pid_t pid;
    memset(r, 0, sizeof(*r));
    r->status = -1;
    r->out = weft_xstrndup("", 0);
    r->err = weft_xstrndup("", 0);
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
        goto fail;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    /* weftctl ignores SIGPIPE (an iptables-restore that exits early must not kill it); the
     * program gets the default back. */
    posix_spawnattr_t attr;
    sigset_t def;
    posix_spawnattr_init(&attr);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    posix_spawnattr_setsigdefault(&attr, &def);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
    int rc = posix_spawn(&pid, argv[0], &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        errno = rc;
        goto fail;
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    in[0] = out[1] = err[1] = -1;
    size_t in_len = input != NULL ? strlen(input) : 0, in_off = 0, out_len = 0, err_len = 0;
    if (in_len == 0) {
        close(in[1]);
        in[1] = -1;
    } else {
        fcntl(in[1], F_SETFL, O_NONBLOCK);
    }
    int64_t deadline = now_ms() + EXEC_TIMEOUT_MS;
    bool killed = false;
    while (out[0] >= 0 || err[0] >= 0) {
        struct pollfd p[3] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {in[1], POLLOUT, 0}};
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            kill(pid, SIGKILL);
            killed = true;
            break;
        }
        if (poll(p, 3, (int)left) < 0 && errno != EINTR) {
            break;
        }
        for (int i = 0; i < 2; i++) {
            int *fd = i == 0 ? &out[0] : &err[0];
            if (*fd >= 0 && (p[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
                char buf[8192];
                ssize_t n = read(*fd, buf, sizeof(buf));
                if (n > 0) {
                    append(i == 0 ? &r->out : &r->err, i == 0 ? &out_len : &err_len, buf,
                           (size_t)n);
                } else if (n == 0 || errno != EINTR) {
                    close(*fd);
                    *fd = -1;
                }
            }
        }
        if (in[1] >= 0 && (p[2].revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
            ssize_t n = write(in[1], input + in_off, in_len - in_off);
            if (n > 0) {
                in_off += (size_t)n;
            }
            if ((n < 0 && errno != EAGAIN && errno != EINTR) || in_off == in_len) {
                close(in[1]);
                in[1] = -1;
            }
        }
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    r->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (killed) {
        append(&r->err, &err_len, "(killed after 30 s)", 19);
    }
    for (int i = 0; i < 2; i++) {
        int fds[3] = {in[i], out[i], err[i]};
        for (int j = 0; j < 3; j++) {
            if (fds[j] >= 0) {
                close(fds[j]);
            }
        }
    }
    return true;
fail : {
    int saved = errno;
    for (int i = 0; i < 2; i++) {
        int fds[3] = {in[i], out[i], err[i]};
        for (int j = 0; j < 3; j++) {
            if (fds[j] >= 0) {
                close(fds[j]);
            }
        }
    }
    errno = saved;
    return false;
}
}

/* trim_newline drops trailing newlines so that a program's message fits one line of ours. */
static const char *trim_newline(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r')) {
        s[--n] = '\0';
    }
    return s;
}

/* tool runs |prog| (looked up as find_program does); on failure it prints what failed, where
 * and why, and returns false. |quiet| leaves the printing to the caller. */
static bool tool(struct run_result *r, const char *prog, const char *arg1, const char *arg2,
                 const char *arg3, const char *input, bool quiet)
{
    char path[512];
    memset(r, 0, sizeof(*r));
    r->status = -1;
    if (!find_program(path, sizeof(path), prog)) {
        if (!quiet) {
            fprintf(stderr,
                    "weftctl: %s not found (in PATH, /usr/sbin, /sbin): install the Debian "
                    "package iptables\n",
                    prog);
        }
        r->out = weft_xstrndup("", 0);
        r->err = weft_xstrndup("not found", 9);
        return false;
    }
    char *argv[] = {path, (char *)arg1, (char *)arg2, (char *)arg3, NULL};
    if (!run(r, argv, input)) {
        if (!quiet) {
            fprintf(stderr, "weftctl: cannot run %s: %s\n", path, strerror(errno));
        }
        return false;
    }
    if (r->status != 0) {
        if (!quiet) {
            fprintf(stderr, "weftctl: %s %s%s%s failed (exit %d): %s\n", path, arg1 ? arg1 : "",
                    arg2 ? " " : "", arg2 ? arg2 : "", r->status, trim_newline(r->err));
        }
        return false;
    }
    return true;
}

/* read_state reads weft's part of |fam|'s nat table. */
static bool read_state(struct nat_state *out, const struct family *fam, bool quiet)
{
    struct run_result r;
    bool ok = tool(&r, fam->save, "-t", "nat", NULL, NULL, quiet);
    if (ok) {
        parse_save(out, r.out);
    }
    run_result_cleanup(&r);
    return ok;
}

static char *join(const struct lines *l)
{
    size_t n = 1;
    for (size_t i = 0; i < l->num; i++) {
        n += strlen(l->v[i]) + 1;
    }
    char *s = weft_xmalloc(n), *p = s;
    for (size_t i = 0; i < l->num; i++) {
        size_t len = strlen(l->v[i]);
        memcpy(p, l->v[i], len);
        p[len] = '\n';
        p += len + 1;
    }
    *p = '\0';
    return s;
}

/* apply feeds |payload| to iptables-restore --noflush (with --test: parse and build only).
 * On failure it prints iptables' own message and the payload line it names. */
static bool apply(const struct family *fam, const struct lines *payload, bool test)
{
    struct run_result r;
    char *text = join(payload);
    bool ok = tool(&r, fam->restore, "--noflush", test ? "--test" : NULL, NULL, text, true);
    if (!ok) {
        if (r.status < 0) {
            fprintf(stderr, "weftctl: %s: %s: install the Debian package iptables\n", fam->restore,
                    strcmp(r.err, "not found") == 0 ? "not found" : strerror(errno));
        } else {
            fprintf(stderr, "weftctl: %s rules refused by %s --noflush%s (exit %d): %s\n",
                    fam->name, fam->restore, test ? " --test" : "", r.status, trim_newline(r.err));
            const char *at = strstr(r.err, "line: ");
            unsigned long line;
            char num[16];
            if (at != NULL) {
                size_t k = 0;
                for (at += 6; k + 1 < sizeof(num) && at[k] >= '0' && at[k] <= '9'; k++) {
                    num[k] = at[k];
                }
                num[k] = '\0';
                if (parse_uint(num, payload->num, &line) && line >= 1) {
                    fprintf(stderr, "weftctl: line %lu of the payload: %s\n", line,
                            payload->v[line - 1]);
                }
            }
        }
    }
    run_result_cleanup(&r);
    free(text);
    return ok;
}

/* ---- privileges and IPv6 ---- */

/* has_net_admin says whether the process may change the nat table: root, or CAP_NET_ADMIN
 * (bit 12) in its effective set, as in an init container that is not root. */
static bool has_net_admin(void)
{
    if (geteuid() == 0) {
        return true;
    }
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    bool ok = false;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        unsigned long long caps;
        if (sscanf(line, "CapEff: %llx", &caps) == 1) {
            ok = (caps >> 12) & 1;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return ok;
}

/* resolve_ipv6 settles "auto": IPv6 rules when ip6tables can read the IPv6 nat table here. */
static bool resolve_ipv6(struct options *o)
{
    if (o->ipv6 >= 0) {
        return true;
    }
    struct nat_state s = {0};
    o->ipv6 = read_state(&s, &families[1], true) ? 1 : 0;
    nat_state_cleanup(&s);
    if (!o->ipv6) {
        fprintf(stderr, "weftctl: note: ip6tables-save -t nat does not work here; IPv6 rules "
                        "skipped (--ipv6 to insist)\n");
    }
    return true;
}

/* ---- check ---- */

/* diff_state prints how |have| differs from |want| and says whether they are the same. Rules
 * are compared chain by chain, in order; jumps as a list. */
static bool diff_state(const struct family *fam, const struct nat_state *have,
                       const struct nat_state *want)
{
    struct lines missing = {0}, extra = {0};
    for (size_t i = 0; i < want->chains.num; i++) {
        if (!lines_has(&have->chains, want->chains.v[i])) {
            lines_addf(&missing, ":%s (chain)", want->chains.v[i]);
        }
    }
    for (size_t i = 0; i < have->chains.num; i++) {
        if (!lines_has(&want->chains, have->chains.v[i])) {
            lines_addf(&extra, ":%s (chain)", have->chains.v[i]);
        }
    }
    const struct lines *pairs[2][2] = {{&want->rules, &have->rules}, {&want->jumps, &have->jumps}};
    bool order = false;
    for (int k = 0; k < 2; k++) {
        const struct lines *w = pairs[k][0], *h = pairs[k][1];
        bool *used = weft_xcalloc(h->num + 1, sizeof(bool));
        for (size_t i = 0; i < w->num; i++) {
            bool found = false;
            for (size_t j = 0; j < h->num && !found; j++) {
                if (!used[j] && strcmp(w->v[i], h->v[j]) == 0) {
                    used[j] = found = true;
                }
            }
            if (!found) {
                lines_add(&missing, w->v[i]);
            }
        }
        for (size_t j = 0; j < h->num; j++) {
            if (!used[j]) {
                lines_add(&extra, h->v[j]);
            }
        }
        free(used);
        /* Same rules, other order: compare each chain's sequence. */
        if (k == 0 && missing.num == 0 && extra.num == 0) {
            for (size_t i = 0; i < w->num; i++) {
                char chain[64];
                rule_chain(chain, sizeof(chain), w->v[i]);
                size_t wi = 0, hi = 0;
                for (size_t a = 0; a < w->num; a++) {
                    char c2[64];
                    rule_chain(c2, sizeof(c2), w->v[a]);
                    if (strcmp(c2, chain) != 0) {
                        continue;
                    }
                    wi++;
                    if (a == i) {
                        break;
                    }
                }
                for (size_t b = 0; b < h->num; b++) {
                    char c2[64];
                    rule_chain(c2, sizeof(c2), h->v[b]);
                    if (strcmp(c2, chain) == 0 && ++hi == wi) {
                        if (strcmp(h->v[b], w->v[i]) != 0 && !order) {
                            order = true;
                            fprintf(stderr, "weftctl: %s: the rules of %s are in another order\n",
                                    fam->name, chain);
                        }
                        break;
                    }
                }
            }
        }
    }
    bool same = missing.num == 0 && extra.num == 0 && !order;
    if (have->chains.num == 0 && have->jumps.num == 0 && have->rules.num == 0) {
        fprintf(stderr, "weftctl: %s: weft's nat rules are not installed (no WEFT_* chain)\n",
                fam->name);
    } else if (missing.num > 0 || extra.num > 0) {
        fprintf(stderr, "weftctl: %s nat rules differ from what install would write:\n", fam->name);
        for (size_t i = 0; i < missing.num; i++) {
            fprintf(stderr, "  missing:    %s\n", missing.v[i]);
        }
        for (size_t i = 0; i < extra.num; i++) {
            fprintf(stderr, "  unexpected: %s\n", extra.v[i]);
        }
    }
    lines_cleanup(&missing);
    lines_cleanup(&extra);
    return same;
}

/* ---- self-test ---- */

static void sockaddr_of(struct sockaddr_storage *ss, socklen_t *len, int af,
                        const unsigned char *addr, unsigned port)
{
    memset(ss, 0, sizeof(*ss));
    if (af == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        memcpy(&in->sin_addr, addr, 4);
        *len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        memcpy(&in6->sin6_addr, addr, 16);
        *len = sizeof(*in6);
    }
}

/* connect_as runs in a child: it becomes |uid|/|gid|, connects to |dst| and exits 0 when the
 * connection is established, else with the errno (ETIMEDOUT after |ms|). */
static void connect_as(uid_t uid, gid_t gid, const struct sockaddr_storage *dst, socklen_t len,
                       int ms)
{
    if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
        _exit(EPERM);
    }
    int fd = socket(dst->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        _exit(errno);
    }
    if (connect(fd, (const struct sockaddr *)dst, len) != 0 && errno != EINPROGRESS) {
        _exit(errno);
    }
    struct pollfd p = {fd, POLLOUT, 0};
    if (poll(&p, 1, ms) != 1) {
        _exit(ETIMEDOUT);
    }
    int err = 0;
    socklen_t elen = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
    /* Hold the connection open until the parent has looked at its end. */
    if (err == 0) {
        char b;
        struct pollfd q = {fd, POLLIN, 0};
        if (poll(&q, 1, ms) == 1 && read(fd, &b, 1) < 0) {
            err = 0; /* the parent closing its end is all we wait for */
        }
    }
    _exit(err);
}

static void format_addr(char *out, size_t out_len, int af, const void *addr, unsigned port)
{
    char a[INET6_ADDRSTRLEN];
    inet_ntop(af, addr, a, sizeof(a));
    snprintf(out, out_len, af == AF_INET ? "%s:%u" : "[%s]:%u", a, port);
}

/* listen_any listens on |port| of every address of family |af|. Returns the socket, or -1:
 * with |*out_in_use| set when another socket holds the port, else with errno saying why. */
static int listen_any(int af, unsigned port, bool *out_in_use)
{
    struct sockaddr_storage any;
    socklen_t any_len;
    unsigned char zero[16] = {0};
    int one = 1, fd = socket(af, SOCK_STREAM | SOCK_CLOEXEC, 0);
    *out_in_use = false;
    if (fd < 0) {
        return -1;
    }
    sockaddr_of(&any, &any_len, af, zero, port);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (af == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, (struct sockaddr *)&any, any_len) == 0 && listen(fd, 4) == 0) {
        return fd;
    }
    int saved = errno;
    close(fd);
    *out_in_use = saved == EADDRINUSE;
    errno = saved;
    return -1;
}

/* original_dst formats the destination a redirected connection |fd| of family |af| was sent
 * to, before the redirect (SO_ORIGINAL_DST), as format_addr does; false with errno when the
 * kernel has none. */
static bool original_dst(char *out, size_t out_len, int fd, int af)
{
    struct sockaddr_storage orig;
    socklen_t olen = sizeof(orig);
    memset(&orig, 0, sizeof(orig));
    if (getsockopt(fd, af == AF_INET ? SOL_IP : SOL_IPV6, ORIGINAL_DST_OPT, &orig, &olen) != 0) {
        return false;
    }
    if (af == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&orig;
        format_addr(out, out_len, af, &in->sin_addr, ntohs(in->sin_port));
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&orig;
        format_addr(out, out_len, af, &in6->sin6_addr, ntohs(in6->sin6_port));
    }
    return true;
}

/* self_test_family proves, for one family, that a redirected connection reaches the outbound
 * port: it listens there (unless something else does, the proxy presumably), connects from a
 * child running as a uid other than the proxy's to an address and port the rules redirect, and
 * waits for the connection, whose original destination (SO_ORIGINAL_DST) must be that address.
 */
static bool self_test_family(const struct options *o, const struct family *fam)
{
    static const char *const v4[] = {"192.0.2.1", "198.51.100.1", "203.0.113.1"};
    static const char *const v6[] = {"2001:db8::1", "2001:db8:ffff::1", "100::1"};
    int af = fam->af, idx = af == AF_INET ? 0 : 1;
    struct cidr target = o->self_test_to[idx];
    bool found = target.prefix != 0;
    for (size_t i = 0; i < 3 && !found; i++) {
        found = parse_cidr(&target, idx == 0 ? v4[i] : v6[i]);
        for (size_t c = 0; c < o->num_cidrs && found; c++) {
            found = !cidr_contains(&o->cidrs[c], af, target.addr);
        }
    }
    if (!found) {
        fprintf(stderr,
                "weftctl: self-test %s outbound: every default target address is excluded; name "
                "one with --self-test-to\n",
                fam->name);
        return false;
    }
    unsigned port = 9;
    while (ports_contain(&o->excl_out, port) && port < 65535) {
        port = port == 9 ? 10000 : port + 1;
    }
    uid_t uid = o->proxy_uid == 65534 ? 65533 : 65534;
    gid_t gid = o->proxy_gid == 65534 ? 65533 : 65534;
    char where[INET6_ADDRSTRLEN + 16];
    format_addr(where, sizeof(where), af, target.addr, port);

    bool in_use = false;
    int lfd = listen_any(af, o->outbound_port, &in_use);
    if (lfd < 0 && !in_use) {
        fprintf(stderr, "weftctl: self-test %s outbound: cannot listen on port %u: %s\n", fam->name,
                o->outbound_port, strerror(errno));
        return false;
    }
    bool own = lfd >= 0;
    struct sockaddr_storage dst;
    socklen_t dst_len;
    sockaddr_of(&dst, &dst_len, af, target.addr, port);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "weftctl: self-test: fork: %s\n", strerror(errno));
        if (lfd >= 0) {
            close(lfd);
        }
        return false;
    }
    if (pid == 0) {
        if (lfd >= 0) {
            close(lfd);
        }
        connect_as(uid, gid, &dst, dst_len, SELF_TEST_MS);
    }
    bool ok = false;
    char why[256] = "";
    if (own) {
        struct pollfd p = {lfd, POLLIN, 0};
        if (poll(&p, 1, SELF_TEST_MS) == 1) {
            int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            char got[INET6_ADDRSTRLEN + 16];
            if (cfd < 0) {
                snprintf(why, sizeof(why), "accept: %s", strerror(errno));
            } else if (!original_dst(got, sizeof(got), cfd, af)) {
                snprintf(why, sizeof(why),
                         "a connection arrived but has no original destination (%s)",
                         strerror(errno));
            } else {
                ok = strcmp(got, where) == 0;
                if (!ok) {
                    snprintf(why, sizeof(why),
                             "a connection arrived, but for original destination %s", got);
                }
            }
            if (cfd >= 0) {
                /* A reset, not a FIN: no TIME_WAIT is left on the outbound port. */
                struct linger l = {1, 0};
                setsockopt(cfd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
                close(cfd);
            }
        }
    }
    /* The child has given up by SELF_TEST_MS; kill it anyway if it lingers. */
    int status = 0;
    int64_t deadline = now_ms() + SELF_TEST_MS + 1000;
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() < deadline) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    int child_err = WIFEXITED(status) ? WEXITSTATUS(status) : ETIMEDOUT;
    if (!own) {
        ok = child_err == 0;
    }
    if (!ok && why[0] == '\0') {
        if (child_err == ENETUNREACH || child_err == EHOSTUNREACH) {
            snprintf(why, sizeof(why),
                     "connect: %s (no route to it here: give --self-test-to an address routed "
                     "off this host)",
                     strerror(child_err));
        } else if (child_err != 0) {
            snprintf(why, sizeof(why), "connect: %s", strerror(child_err));
        } else {
            snprintf(why, sizeof(why), "the connection went somewhere else");
        }
    }
    if (lfd >= 0) {
        close(lfd);
    }
    if (ok) {
        printf("ok: self-test %s outbound: a connection from uid %u to %s reached port %u (%s)\n",
               fam->name, (unsigned)uid, where, o->outbound_port,
               own ? "weftctl listening there, original destination checked"
                   : "port already in use, the connection was accepted there");
    } else {
        fprintf(
            stderr,
            "weftctl: self-test %s outbound FAILED: a connection from uid %u to %s did not reach "
            "port %u within %d s: %s%s\n",
            fam->name, (unsigned)uid, where, o->outbound_port, SELF_TEST_MS / 1000, why,
            own ? "" : " (port in use by another listener)");
    }
    return ok;
}

/* ---- inbound self-test ----
 *
 * A connection opened by a process in this namespace never crosses PREROUTING: it leaves
 * through OUTPUT, and one to a local address comes back through lo with its NAT already settled
 * at OUTPUT. A packet crosses PREROUTING only when it arrives on an interface. So weftctl makes
 * a veth pair in this namespace, PROBE_TX and PROBE_RX, gives PROBE_RX an address inside a
 * small prefix (PROBE_V4, PROBE_V6: replies to the rest of the prefix leave through it),
 * and writes a TCP SYN, from the prefix's other address, into PROBE_TX with a packet socket. It
 * arrives on PROBE_RX like any pod's inbound packet and meets PREROUTING and WEFT_INBOUND.
 * PROBE_RX does no ARP (IFF_NOARP), so its replies carry its own MAC: on PROBE_TX they are
 * another host's frames, which the IP stack drops and the packet socket reads. weftctl
 * completes the handshake by hand and, listening on the inbound port, checks the connection's
 * original destination.
 *
 * Deleting one end of a veth pair deletes both, with their addresses and routes. SIGINT,
 * SIGTERM, SIGHUP and SIGQUIT wait until the pair is gone; a pair left by a weftctl killed with
 * SIGKILL is deleted by the next self-test. What the kernel keeps of the probe connections,
 * their conntrack entries, expires on its own: 10 s after the reset that ends each (2 min for
 * a SYN nothing answered). */

/* [family][0] is PROBE_RX's address, [family][1] the probe's source; probe_prefix their
 * prefix length. */
static const char *const probe_addrs[2][2] = {{PROBE_V4, PROBE_V4_PEER}, {PROBE_V6, PROBE_V6_PEER}};
static const unsigned probe_prefix[2] = {30, 126};
static const unsigned char probe_mac_tx[6] = {0x02, 'w', 'e', 'f', 't', 0x01};
static const unsigned char probe_mac_rx[6] = {0x02, 'w', 'e', 'f', 't', 0x02};

/* struct nl_req is one rtnetlink request being built. */
struct nl_req {
    union {
        struct nlmsghdr h;
        char buf[1024];
    } u;
};

static void nl_req_init(struct nl_req *r, uint16_t type, uint16_t flags)
{
    memset(r, 0, sizeof(*r));
    r->u.h.nlmsg_len = NLMSG_LENGTH(0);
    r->u.h.nlmsg_type = type;
    r->u.h.nlmsg_flags = (uint16_t)(NLM_F_REQUEST | NLM_F_ACK | flags);
}

/* nl_put appends |len| zeroed bytes at the next aligned offset. The requests here are a few
 * hundred bytes at most: running past the buffer is a bug. */
static void *nl_put(struct nl_req *r, size_t len)
{
    size_t off = NLMSG_ALIGN(r->u.h.nlmsg_len);
    if (off + RTA_ALIGN(len) > sizeof(r->u.buf)) {
        abort();
    }
    memset(r->u.buf + off, 0, RTA_ALIGN(len));
    r->u.h.nlmsg_len = (uint32_t)(off + len);
    return r->u.buf + off;
}

static struct rtattr *nl_attr(struct nl_req *r, unsigned short type, const void *data, size_t len)
{
    struct rtattr *a = nl_put(r, RTA_LENGTH(len));
    a->rta_type = type;
    a->rta_len = (unsigned short)RTA_LENGTH(len);
    if (len > 0) {
        memcpy(RTA_DATA(a), data, len);
    }
    return a;
}

/* nl_nest_end closes the nested attribute |nest|, opened by nl_attr(r, type, NULL, 0). */
static void nl_nest_end(struct nl_req *r, struct rtattr *nest)
{
    nest->rta_len = (unsigned short)(r->u.buf + r->u.h.nlmsg_len - (char *)nest);
}

/* nl_talk sends |r| on |fd| and reads the kernel's answer: 0, or the errno it reports (or
 * EAGAIN when it said nothing within the socket's 2 s receive timeout). */
static int nl_talk(int fd, struct nl_req *r)
{
    static uint32_t seq;
    r->u.h.nlmsg_seq = ++seq;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(fd, r->u.buf, r->u.h.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        return errno;
    }
    for (;;) {
        union {
            struct nlmsghdr h;
            char buf[8192];
        } in;
        ssize_t got = recv(fd, in.buf, sizeof(in.buf), 0);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            return errno;
        }
        int n = (int)got;
        for (struct nlmsghdr *h = &in.h; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_seq == seq && h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);
                return -e->error;
            }
        }
    }
}

/* probe_link_del deletes the interface |name| (and so its veth peer): 0, or an errno (ENODEV
 * when there is none). */
static int probe_link_del(int fd, const char *name)
{
    struct nl_req r;
    nl_req_init(&r, RTM_DELLINK, 0);
    struct ifinfomsg *ifi = nl_put(&r, sizeof(*ifi));
    ifi->ifi_family = AF_UNSPEC;
    nl_attr(&r, IFLA_IFNAME, name, strlen(name) + 1);
    return nl_talk(fd, &r);
}

/* probe_link_add makes the veth pair PROBE_TX / PROBE_RX, both without ARP, PROBE_TX up. */
static int probe_link_add(int fd)
{
    struct nl_req r;
    nl_req_init(&r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    struct ifinfomsg *ifi = nl_put(&r, sizeof(*ifi));
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_flags = ifi->ifi_change = IFF_UP | IFF_NOARP;
    nl_attr(&r, IFLA_IFNAME, PROBE_TX, sizeof(PROBE_TX));
    nl_attr(&r, IFLA_ADDRESS, probe_mac_tx, sizeof(probe_mac_tx));
    struct rtattr *info = nl_attr(&r, IFLA_LINKINFO, NULL, 0);
    nl_attr(&r, IFLA_INFO_KIND, "veth", 4);
    struct rtattr *data = nl_attr(&r, IFLA_INFO_DATA, NULL, 0);
    struct rtattr *peer = nl_attr(&r, VETH_INFO_PEER, NULL, 0);
    struct ifinfomsg *pifi = nl_put(&r, sizeof(*pifi));
    pifi->ifi_family = AF_UNSPEC;
    /* Not up yet: veth brings the peer up before it links the pair, and refuses (ENOTCONN). */
    pifi->ifi_flags = pifi->ifi_change = IFF_NOARP;
    nl_attr(&r, IFLA_IFNAME, PROBE_RX, sizeof(PROBE_RX));
    nl_attr(&r, IFLA_ADDRESS, probe_mac_rx, sizeof(probe_mac_rx));
    nl_nest_end(&r, peer);
    nl_nest_end(&r, data);
    nl_nest_end(&r, info);
    return nl_talk(fd, &r);
}

/* probe_link_up brings interface |ifindex| up. */
static int probe_link_up(int fd, unsigned ifindex)
{
    struct nl_req r;
    nl_req_init(&r, RTM_NEWLINK, 0);
    struct ifinfomsg *ifi = nl_put(&r, sizeof(*ifi));
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = (int)ifindex;
    ifi->ifi_flags = ifi->ifi_change = IFF_UP;
    return nl_talk(fd, &r);
}

/* probe_addr_add gives interface |ifindex| the address |addr|/|prefix| of family |af| (IPv6:
 * without duplicate address detection, so that it is usable at once). */
static int probe_addr_add(int fd, int af, unsigned ifindex, const unsigned char *addr,
                          unsigned prefix)
{
    size_t alen = af == AF_INET ? 4 : 16;
    struct nl_req r;
    nl_req_init(&r, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    struct ifaddrmsg *ifa = nl_put(&r, sizeof(*ifa));
    ifa->ifa_family = (unsigned char)af;
    ifa->ifa_prefixlen = (unsigned char)prefix;
    ifa->ifa_flags = af == AF_INET6 ? IFA_F_NODAD : 0;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    ifa->ifa_index = ifindex;
    nl_attr(&r, IFA_LOCAL, addr, alen);
    nl_attr(&r, IFA_ADDRESS, addr, alen);
    return nl_talk(fd, &r);
}

/* struct probe is one family's probe connection: from |peer|:|sport| to |local|:|port|, where
 * |local| is PROBE_RX's address. */
struct probe {
    int af;
    unsigned char local[16], peer[16];
    unsigned port;
    uint16_t sport;
    uint32_t isn;
    unsigned tx_index; /* PROBE_TX's ifindex */
    int pfd;           /* packet socket on PROBE_TX */
};

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void put32(unsigned char *p, uint32_t v)
{
    put16(p, v >> 16);
    put16(p + 2, v & 0xffff);
}

static unsigned get16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }

static uint32_t get32(const unsigned char *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }

/* csum_add adds |data| as big-endian 16-bit words (RFC 1071). */
static uint32_t csum_add(uint32_t sum, const unsigned char *data, size_t len)
{
    for (size_t i = 0; i + 1 < len; i += 2) {
        sum += get16(data + i);
    }
    if (len % 2 != 0) {
        sum += (uint32_t)data[len - 1] << 8;
    }
    return sum;
}

static unsigned csum_fold(uint32_t sum)
{
    while (sum >> 16 != 0) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return ~sum & 0xffff;
}

/* probe_send writes one TCP segment without options or data, from the probe's address to
 * PROBE_RX's, into PROBE_TX. */
static bool probe_send(const struct probe *p, unsigned flags, uint32_t seq, uint32_t ack)
{
    unsigned char pkt[60];
    size_t alen = p->af == AF_INET ? 4 : 16, ip_len = p->af == AF_INET ? 20 : 40;
    unsigned char *tcp = pkt + ip_len;
    memset(pkt, 0, sizeof(pkt));
    put16(tcp, p->sport);
    put16(tcp + 2, p->port);
    put32(tcp + 4, seq);
    put32(tcp + 8, ack);
    tcp[12] = 5 << 4; /* data offset: 5 words, no options */
    tcp[13] = (unsigned char)flags;
    put16(tcp + 14, 65535);
    /* RFC 793 §3.1 and RFC 8200 §8.1: the pseudo-header is both addresses, the protocol and
     * the TCP length; as 16-bit words the sums agree for both families. */
    uint32_t sum = csum_add(0, p->peer, alen);
    sum = csum_add(sum, p->local, alen);
    sum += IPPROTO_TCP + 20;
    put16(tcp + 16, csum_fold(csum_add(sum, tcp, 20)));
    if (p->af == AF_INET) {
        pkt[0] = 0x45;
        put16(pkt + 2, 40);
        pkt[6] = 0x40; /* DF */
        pkt[8] = 64;
        pkt[9] = IPPROTO_TCP;
        memcpy(pkt + 12, p->peer, 4);
        memcpy(pkt + 16, p->local, 4);
        put16(pkt + 10, csum_fold(csum_add(0, pkt, 20)));
    } else {
        pkt[0] = 0x60;
        put16(pkt + 4, 20);
        pkt[6] = IPPROTO_TCP;
        pkt[7] = 64;
        memcpy(pkt + 8, p->peer, 16);
        memcpy(pkt + 24, p->local, 16);
    }
    struct sockaddr_ll to = {
        .sll_family = AF_PACKET,
        .sll_protocol = htons(p->af == AF_INET ? ETH_P_IP : ETH_P_IPV6),
        .sll_ifindex = (int)p->tx_index,
        .sll_halen = sizeof(probe_mac_rx),
    };
    memcpy(to.sll_addr, probe_mac_rx, sizeof(probe_mac_rx));
    return sendto(p->pfd, pkt, ip_len + 20, 0, (struct sockaddr *)&to, sizeof(to)) ==
           (ssize_t)(ip_len + 20);
}

/* probe_reply says whether |pkt| is TCP from PROBE_RX's address and the probe's port to the
 * probe's address and port, and if so gives its flags, sequence and acknowledgment numbers. */
static bool probe_reply(const struct probe *p, const unsigned char *pkt, size_t len,
                        unsigned *out_flags, uint32_t *out_seq, uint32_t *out_ack)
{
    size_t ip_len;
    if (p->af == AF_INET) {
        ip_len = (size_t)(pkt[0] & 0x0f) * 4;
        if (len < 20 || pkt[0] >> 4 != 4 || ip_len < 20 || pkt[9] != IPPROTO_TCP ||
            memcmp(pkt + 12, p->local, 4) != 0 || memcmp(pkt + 16, p->peer, 4) != 0) {
            return false;
        }
    } else {
        ip_len = 40;
        if (len < 40 || pkt[0] >> 4 != 6 || pkt[6] != IPPROTO_TCP ||
            memcmp(pkt + 8, p->local, 16) != 0 || memcmp(pkt + 24, p->peer, 16) != 0) {
            return false;
        }
    }
    const unsigned char *tcp = pkt + ip_len;
    if (len < ip_len + 20 || get16(tcp) != p->port || get16(tcp + 2) != p->sport) {
        return false;
    }
    *out_seq = get32(tcp + 4);
    *out_ack = get32(tcp + 8);
    *out_flags = tcp[13];
    return true;
}

/* probe_port picks the port the inbound probe is sent to: one the rules capture (not the admin
 * port, not excluded, and listed when --inbound-ports lists ports), 9 when it can, else the
 * lowest. Neither capture port: a redirect to where the probe already goes proves nothing. */
static bool probe_port(const struct options *o, unsigned *out)
{
    for (unsigned i = 0; i <= 65535; i++) {
        unsigned port = i == 0 ? 9 : i;
        if (port != 0 && port != o->admin_port && port != o->inbound_port &&
            port != o->outbound_port && !ports_contain(&o->excl_in, port) &&
            (o->inbound_all || ports_contain(&o->inbound, port))) {
            *out = port;
            return true;
        }
    }
    return false;
}

#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* self_test_inbound_family sends one family's probe connection in through the pair (PROBE_TX's
 * index |tx_index|) and says whether it reached the inbound port. |setup_err|, when not empty,
 * says why the pair or this family's address on it could not be made. */
static bool self_test_inbound_family(const struct options *o, const struct family *fam,
                                     unsigned tx_index, const char *setup_err)
{
    int af = fam->af, idx = af == AF_INET ? 0 : 1, ethp = af == AF_INET ? ETH_P_IP : ETH_P_IPV6;
    struct probe p = {.af = af, .tx_index = tx_index, .pfd = -1};
    int lfd = -1, cfd = -1;
    bool ok = false, own = false, in_use = false;
    char why[320] = "", from[INET6_ADDRSTRLEN], where[INET6_ADDRSTRLEN + 16];
    inet_pton(af, probe_addrs[idx][0], p.local);
    inet_pton(af, probe_addrs[idx][1], p.peer);
    inet_ntop(af, p.peer, from, sizeof(from));
    if (!probe_port(o, &p.port)) {
        fprintf(stderr,
                "weftctl: self-test %s inbound FAILED: no port is redirected inbound (every "
                "--inbound-ports entry is excluded)\n",
                fam->name);
        return false;
    }
    format_addr(where, sizeof(where), af, p.local, p.port);
    if (setup_err[0] != '\0') {
        fprintf(stderr, "weftctl: self-test %s inbound FAILED: %s\n", fam->name, setup_err);
        return false;
    }
    lfd = listen_any(af, o->inbound_port, &in_use);
    if (lfd < 0 && !in_use) {
        snprintf(why, sizeof(why), "cannot listen on port %u: %s", o->inbound_port,
                 strerror(errno));
        goto out;
    }
    own = lfd >= 0;
    p.pfd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons((uint16_t)ethp));
    struct sockaddr_ll at = {
        .sll_family = AF_PACKET,
        .sll_protocol = htons((uint16_t)ethp),
        .sll_ifindex = (int)tx_index,
    };
    if (p.pfd < 0 || bind(p.pfd, (struct sockaddr *)&at, sizeof(at)) != 0) {
        snprintf(why, sizeof(why), "packet socket on " PROBE_TX ": %s", strerror(errno));
        goto out;
    }
    uint32_t rnd[2] = {0, 0};
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        rnd[0] = (uint32_t)getpid();
        rnd[1] = (uint32_t)now_ms();
    }
    p.sport = (uint16_t)(32768 + rnd[0] % 28000);
    p.isn = rnd[1];

    /* The SYN, again every PROBE_RESEND_MS until something answers. */
    int64_t deadline = now_ms() + SELF_TEST_MS, resend = 0;
    bool answered = false, reset = false;
    uint32_t srv_seq = 0;
    while (!answered && !reset) {
        int64_t now = now_ms();
        if (now >= deadline) {
            break;
        }
        if (now >= resend) {
            if (!probe_send(&p, TCP_SYN, p.isn, 0)) {
                snprintf(why, sizeof(why), "cannot write into " PROBE_TX ": %s", strerror(errno));
                goto out;
            }
            resend = now + PROBE_RESEND_MS;
        }
        struct pollfd pf = {p.pfd, POLLIN, 0};
        if (poll(&pf, 1, (int)((resend < deadline ? resend : deadline) - now)) <= 0) {
            continue;
        }
        unsigned char pkt[2048];
        struct sockaddr_ll src;
        socklen_t src_len = sizeof(src);
        ssize_t n =
            recvfrom(p.pfd, pkt, sizeof(pkt), MSG_DONTWAIT, (struct sockaddr *)&src, &src_len);
        unsigned flags;
        uint32_t seq, ack;
        if (n <= 0 || src.sll_pkttype == PACKET_OUTGOING ||
            !probe_reply(&p, pkt, (size_t)n, &flags, &seq, &ack)) {
            continue;
        }
        if ((flags & TCP_RST) != 0) {
            reset = true;
        } else if ((flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK) && ack == p.isn + 1) {
            answered = true;
            srv_seq = seq;
        }
    }
    if (reset) {
        snprintf(why, sizeof(why),
                 "answered with a reset: nothing listened where the rules sent it (no inbound "
                 "redirect, or one to another port)");
        goto out;
    }
    if (!answered) {
        snprintf(why, sizeof(why), "no answer");
        goto out;
    }
    if (!own) {
        /* The port's listener (the proxy, presumably) answered: reset the half-open connection
         * so that it never reaches accept(). */
        (void)probe_send(&p, TCP_RST, p.isn + 1, 0);
        ok = true;
        goto out;
    }
    (void)probe_send(&p, TCP_ACK, p.isn + 1, srv_seq + 1);
    struct pollfd lp = {lfd, POLLIN, 0};
    int64_t left = deadline - now_ms();
    if (poll(&lp, 1, left > 0 ? (int)left : 0) != 1) {
        snprintf(why, sizeof(why),
                 "a listener answered, but not weftctl's on port %u: the rules sent it to "
                 "another port",
                 o->inbound_port);
        (void)probe_send(&p, TCP_RST, p.isn + 1, srv_seq + 1);
        goto out;
    }
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof(peer);
    cfd = accept4(lfd, (struct sockaddr *)&peer, &peer_len, SOCK_CLOEXEC);
    char got[INET6_ADDRSTRLEN + 16];
    if (cfd < 0) {
        snprintf(why, sizeof(why), "accept: %s", strerror(errno));
        (void)probe_send(&p, TCP_RST, p.isn + 1, srv_seq + 1);
    } else if (!original_dst(got, sizeof(got), cfd, af)) {
        snprintf(why, sizeof(why), "a connection arrived but has no original destination (%s)",
                 strerror(errno));
    } else if (strcmp(got, where) != 0) {
        snprintf(why, sizeof(why), "a connection arrived, but for original destination %s", got);
    } else {
        ok = true;
    }
out:
    if (cfd >= 0) {
        /* A reset, not a FIN: nothing waits in TIME_WAIT or FIN_WAIT afterwards. */
        struct linger l = {1, 0};
        setsockopt(cfd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
        close(cfd);
    }
    if (lfd >= 0) {
        close(lfd);
    }
    if (p.pfd >= 0) {
        close(p.pfd);
    }
    if (ok) {
        printf("ok: self-test %s inbound: a connection from %s to %s, entering through " PROBE_RX
               ", reached port %u (%s)\n",
               fam->name, from, where, o->inbound_port,
               own ? "weftctl listening there, original destination checked"
                   : "port already in use, the connection was answered there");
    } else {
        fprintf(stderr,
                "weftctl: self-test %s inbound FAILED: a connection from %s to %s, entering "
                "through " PROBE_RX ", did not reach port %u within %d s: %s%s\n",
                fam->name, from, where, o->inbound_port, SELF_TEST_MS / 1000, why,
                in_use ? " (port in use by another listener)" : "");
    }
    return ok;
}

/* self_test_inbound makes the veth pair, runs each family's inbound probe through it, and
 * deletes it again. */
static bool self_test_inbound(const struct options *o, int nfam)
{
    char setup_err[2][320] = {"", ""};
    sigset_t hold, saved;
    sigemptyset(&hold);
    sigaddset(&hold, SIGINT);
    sigaddset(&hold, SIGTERM);
    sigaddset(&hold, SIGHUP);
    sigaddset(&hold, SIGQUIT);
    sigprocmask(SIG_BLOCK, &hold, &saved);
    bool made = false, ok = true;
    unsigned tx = 0, rx = 0;
    int err = 0;
    struct timeval tv = {2, 0};
    int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (nl < 0 || setsockopt(nl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0) {
        snprintf(setup_err[0], sizeof(setup_err[0]), "rtnetlink: %s", strerror(errno));
        goto run;
    }
    for (int i = 0; i < 2; i++) {
        const char *name = i == 0 ? PROBE_TX : PROBE_RX;
        if (probe_link_del(nl, name) == 0) {
            fprintf(stderr, "weftctl: note: deleted %s, left by an earlier self-test\n", name);
        }
    }
    err = probe_link_add(nl);
    if (err != 0) {
        snprintf(setup_err[0], sizeof(setup_err[0]),
                 "cannot make the veth pair " PROBE_TX "/" PROBE_RX ": %s%s", strerror(err),
                 err == EOPNOTSUPP ? " (is the kernel's veth module loaded?)" : "");
        goto run;
    }
    made = true;
    tx = if_nametoindex(PROBE_TX);
    rx = if_nametoindex(PROBE_RX);
    if (tx == 0 || rx == 0) {
        snprintf(setup_err[0], sizeof(setup_err[0]),
                 "the veth pair " PROBE_TX "/" PROBE_RX " was made but is not there: %s",
                 strerror(errno));
        goto run;
    }
    if ((err = probe_link_up(nl, rx)) != 0) {
        snprintf(setup_err[0], sizeof(setup_err[0]), "cannot bring " PROBE_RX " up: %s",
                 strerror(err));
        rx = 0;
        goto run;
    }
    for (int f = 0; f < nfam; f++) {
        int af = families[f].af;
        unsigned char addr[16];
        inet_pton(af, probe_addrs[f][0], addr);
        err = probe_addr_add(nl, af, rx, addr, probe_prefix[f]);
        if (err != 0) {
            snprintf(setup_err[f], sizeof(setup_err[f]),
                     "cannot give " PROBE_RX " the address %s/%u: %s%s", probe_addrs[f][0],
                     probe_prefix[f], strerror(err),
                     af == AF_INET6 && err == EACCES
                         ? " (IPv6 is off on new interfaces: net.ipv6.conf.default.disable_ipv6)"
                         : "");
        }
    }
run:
    if (setup_err[0][0] != '\0' && (!made || tx == 0 || rx == 0)) {
        memcpy(setup_err[1], setup_err[0], sizeof(setup_err[1]));
    }
    for (int f = 0; f < nfam; f++) {
        ok = self_test_inbound_family(o, &families[f], tx, setup_err[f]) && ok;
    }
    if (made && (err = probe_link_del(nl, PROBE_TX)) != 0) {
        fprintf(stderr,
                "weftctl: self-test: COULD NOT delete the veth pair " PROBE_TX "/" PROBE_RX
                ": %s; `ip link del " PROBE_TX "` does\n",
                strerror(err));
        ok = false;
    }
    if (nl >= 0) {
        close(nl);
    }
    sigprocmask(SIG_SETMASK, &saved, NULL);
    return ok;
}

/* ---- the commands ---- */

static void print_payload(const struct family *fam, const struct lines *payload)
{
    printf("# %s: %s --noflush <<EOF\n", fam->name, fam->restore);
    for (size_t i = 0; i < payload->num; i++) {
        printf("%s\n", payload->v[i]);
    }
    printf("# EOF\n");
}

/* install (|uninstall| false) or uninstall. */
static int install(const struct options *o, bool uninstall)
{
    const char *verb = uninstall ? "uninstall" : "install";
    int nfam = o->ipv6 ? 2 : 1, rc = EXIT_INVALID;
    struct nat_state cur[2] = {0}, want[2] = {0};
    struct lines payload[2] = {0};
    bool readable = true;
    if (!has_net_admin()) {
        if (!o->dry_run) {
            fprintf(stderr,
                    "weftctl: iptables %s: needs root or CAP_NET_ADMIN (running as uid %u)\n", verb,
                    (unsigned)geteuid());
            return EXIT_INVALID;
        }
        readable = false;
        printf("# not root: the current rules are unreadable; shown as for a table without "
               "weft's rules\n");
    }
    for (int f = 0; f < nfam; f++) {
        if (readable && !read_state(&cur[f], &families[f], false)) {
            fprintf(stderr, "weftctl: iptables %s: cannot read the %s nat table\n", verb,
                    families[f].name);
            goto out;
        }
        if (!uninstall) {
            build_rules(&want[f], o, families[f].af);
        }
        build_payload(&payload[f], &cur[f], &want[f]);
    }
    if (o->dry_run) {
        for (int f = 0; f < nfam; f++) {
            print_payload(&families[f], &payload[f]);
        }
        rc = EXIT_VALID;
        goto out;
    }
    /* Both families are built and checked before either is committed, so that a rule one
     * family refuses leaves both as they were. */
    for (int f = 0; f < nfam; f++) {
        if (!apply(&families[f], &payload[f], true)) {
            fprintf(stderr, "weftctl: iptables %s: nothing changed\n", verb);
            goto out;
        }
    }
    for (int f = 0; f < nfam; f++) {
        if (apply(&families[f], &payload[f], false)) {
            continue;
        }
        if (f == 1) {
            /* Put IPv4 back as it was: from |want| (now in place) to |cur|. */
            struct lines back = {0};
            build_payload(&back, &want[0], &cur[0]);
            bool undone = apply(&families[0], &back, false);
            lines_cleanup(&back);
            fprintf(stderr, "weftctl: iptables %s: IPv4 %s\n", verb,
                    undone ? "put back as it was" : "COULD NOT be put back: check it by hand");
        } else {
            fprintf(stderr, "weftctl: iptables %s: nothing changed\n", verb);
        }
        goto out;
    }
    for (int f = 0; f < nfam; f++) {
        if (uninstall) {
            printf("%s: removed %zu weft chains and %zu jumps\n", families[f].name,
                   cur[f].chains.num, cur[f].jumps.num);
        } else {
            printf("%s: installed %zu rules in %zu chains, %zu jumps\n", families[f].name,
                   want[f].rules.num, want[f].chains.num, want[f].jumps.num);
        }
    }
    rc = EXIT_VALID;
out:
    for (int f = 0; f < 2; f++) {
        nat_state_cleanup(&cur[f]);
        nat_state_cleanup(&want[f]);
        lines_cleanup(&payload[f]);
    }
    return rc;
}

static int check(const struct options *o)
{
    int nfam = o->ipv6 ? 2 : 1;
    bool same = true;
    if (!has_net_admin()) {
        fprintf(stderr,
                "weftctl: iptables check: needs root or CAP_NET_ADMIN (running as uid %u)\n",
                (unsigned)geteuid());
        return EXIT_INVALID;
    }
    for (int f = 0; f < nfam; f++) {
        struct nat_state have = {0}, want = {0};
        if (!read_state(&have, &families[f], false)) {
            fprintf(stderr, "weftctl: iptables check: cannot read the %s nat table\n",
                    families[f].name);
            same = false;
        } else {
            build_rules(&want, o, families[f].af);
            if (diff_state(&families[f], &have, &want)) {
                printf("ok: %s: %zu rules in %zu chains and %zu jumps as install writes them\n",
                       families[f].name, want.rules.num, want.chains.num, want.jumps.num);
            } else {
                same = false;
            }
        }
        nat_state_cleanup(&have);
        nat_state_cleanup(&want);
    }
    if (o->self_test) {
        if (geteuid() != 0) {
            fprintf(stderr, "weftctl: self-test: needs root (to connect as another uid)\n");
            return EXIT_INVALID;
        }
        for (int f = 0; f < nfam; f++) {
            same = self_test_family(o, &families[f]) && same;
        }
        same = self_test_inbound(o, nfam) && same;
    }
    return same ? EXIT_VALID : EXIT_INVALID;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "weftctl: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n\n");
        va_end(ap);
    }
    fputs(usage, stderr);
    return EXIT_USAGE;
}

int cmd_iptables(int argc, char **argv)
{
    enum {
        O_UID = 256,
        O_GID,
        O_OUT,
        O_IN,
        O_ADMIN,
        O_IN_PORTS,
        O_EX_IN,
        O_EX_OUT,
        O_EX_CIDRS,
        O_V6,
        O_NO_V6,
        O_DRY,
        O_SELF,
        O_SELF_TO,
    };
    static const struct option opts[] = {
        {"proxy-uid", required_argument, NULL, O_UID},
        {"proxy-gid", required_argument, NULL, O_GID},
        {"outbound-port", required_argument, NULL, O_OUT},
        {"inbound-port", required_argument, NULL, O_IN},
        {"admin-port", required_argument, NULL, O_ADMIN},
        {"inbound-ports", required_argument, NULL, O_IN_PORTS},
        {"exclude-inbound-ports", required_argument, NULL, O_EX_IN},
        {"exclude-outbound-ports", required_argument, NULL, O_EX_OUT},
        {"exclude-outbound-cidrs", required_argument, NULL, O_EX_CIDRS},
        {"ipv6", no_argument, NULL, O_V6},
        {"no-ipv6", no_argument, NULL, O_NO_V6},
        {"dry-run", no_argument, NULL, O_DRY},
        {"self-test", no_argument, NULL, O_SELF},
        {"self-test-to", required_argument, NULL, O_SELF_TO},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        if (argc < 2) {
            return usage_error(NULL);
        }
        fputs(usage, stdout);
        return EXIT_VALID;
    }
    const char *sub = argv[1];
    bool is_install = strcmp(sub, "install") == 0, is_uninstall = strcmp(sub, "uninstall") == 0,
         is_check = strcmp(sub, "check") == 0;
    if (!is_install && !is_uninstall && !is_check) {
        return usage_error("iptables: unknown subcommand \"%s\"", sub);
    }
    signal(SIGPIPE, SIG_IGN);
    static struct options o;
    memset(&o, 0, sizeof(o));
    o.proxy_uid = 1337;
    o.proxy_gid = -1;
    o.outbound_port = 15001;
    o.inbound_port = 15006;
    o.admin_port = 15000;
    o.inbound_all = true;
    o.ipv6 = -1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc - 1, argv + 1, "h", opts, NULL)) != -1) {
        unsigned long v;
        switch (c) {
        case O_UID:
        case O_GID:
            if (!parse_uint(optarg, 0xfffffffeUL, &v)) {
                return usage_error("not a uid/gid: \"%s\"", optarg);
            }
            *(c == O_UID ? &o.proxy_uid : &o.proxy_gid) = (long)v;
            break;
        case O_OUT:
        case O_IN:
        case O_ADMIN: {
            unsigned p;
            if (!parse_port(optarg, &p)) {
                return usage_error("not a port 1-65535: \"%s\"", optarg);
            }
            *(c == O_OUT ? &o.outbound_port : c == O_IN ? &o.inbound_port : &o.admin_port) = p;
            break;
        }
        case O_IN_PORTS:
            o.inbound_all = strcmp(optarg, "*") == 0;
            if (!o.inbound_all && !parse_ports(&o.inbound, "--inbound-ports", optarg)) {
                return usage_error(NULL);
            }
            if (!o.inbound_all && o.inbound.num == 0) {
                return usage_error("--inbound-ports: empty (use '*' for all)%s", "");
            }
            break;
        case O_EX_IN:
            if (!parse_ports(&o.excl_in, "--exclude-inbound-ports", optarg)) {
                return usage_error(NULL);
            }
            break;
        case O_EX_OUT:
            if (!parse_ports(&o.excl_out, "--exclude-outbound-ports", optarg)) {
                return usage_error(NULL);
            }
            break;
        case O_EX_CIDRS:
            if (!parse_cidrs(&o, optarg)) {
                return usage_error(NULL);
            }
            break;
        case O_V6:
        case O_NO_V6:
            o.ipv6 = c == O_V6;
            break;
        case O_DRY:
            o.dry_run = true;
            break;
        case O_SELF:
            o.self_test = true;
            break;
        case O_SELF_TO: {
            struct cidr t;
            if (!parse_cidr(&t, optarg) || strchr(optarg, '/') != NULL) {
                return usage_error("--self-test-to: not an IP address: \"%s\"", optarg);
            }
            o.self_test_to[t.family == AF_INET ? 0 : 1] = t;
            break;
        }
        case 'h':
            fputs(usage, stdout);
            return EXIT_VALID;
        default:
            return usage_error(NULL);
        }
    }
    if (optind != argc - 1) {
        return usage_error("iptables %s: unexpected argument", sub);
    }
    if (!is_check && (o.self_test || o.self_test_to[0].prefix || o.self_test_to[1].prefix)) {
        return usage_error("iptables %s: --self-test and --self-test-to are for check", sub);
    }
    if (o.outbound_port == o.inbound_port) {
        return usage_error("--outbound-port and --inbound-port are both %s", "the same port");
    }
    if (o.ipv6 == 0) {
        for (size_t i = 0; i < o.num_cidrs; i++) {
            if (o.cidrs[i].family == AF_INET6) {
                fprintf(stderr, "weftctl: note: --no-ipv6: IPv6 entries of "
                                "--exclude-outbound-cidrs are unused\n");
                break;
            }
        }
    }
    if (o.ipv6 < 0 && !(o.dry_run && !has_net_admin()) && !resolve_ipv6(&o)) {
        return EXIT_INVALID;
    }
    if (o.ipv6 < 0) {
        o.ipv6 = 1; /* dry run without privileges: show both */
    }
    return is_check ? check(&o) : install(&o, is_uninstall);
}
