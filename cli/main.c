/* weftctl: the operator's tool. This file dispatches to one file per command group. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/internal.h"
#include "lib/base/file.h"
#include "lib/base/timefmt.h"
#include "lib/spiffe/x509svid.h"

static const char usage[] =
    "usage: weftctl <command> [flags]\n"
    "\n"
    "Commands:\n"
    "  id check ID...          check SPIFFE IDs against every rule of SPIFFE-ID.md §2\n"
    "  svid inspect ...        show an X509-SVID and judge it (chain, key, bundle, time)\n"
    "  svid mint ...           make a root, an intermediate CA or a leaf SVID (for tests/demos)\n"
    "  bundle convert ...      a trust bundle from PEM to SPIFFE bundle JSON, or back\n"
    "  ca init ...             make a new trust domain's offline root and first intermediate\n"
    "  policy check ...        validate AuthorizationPolicy/PeerAuthentication/MeshConfig YAML\n"
    "  policy explain ...      decide a connection against policies and say why\n"
    "  iptables install|uninstall|check ...\n"
    "                          the nat rules that send a pod's TCP through its proxy\n"
    "  inject -f IN.yaml ...   add weft's sidecar to the Pods and workloads of a YAML file\n"
    "  wait-ready --addr HOST:PORT ...\n"
    "                          poll a daemon's /ready until 200 (a pod's postStart hook)\n"
    "  scan ENDPOINT... [--file FILE] ...\n"
    "                          read what endpoints present: certificates near expiry, a\n"
    "                          renewal loop stuck, TLS policy drift (its own exit codes)\n"
    "\n"
    "Run `weftctl <command> --help` for the flags of each command.\n"
    "\n"
    "Exit codes: 0 valid / done, 1 invalid / failed, 2 usage error or unreadable input file.\n"
    "Environment: WEFT_NOW=RFC3339 replaces the current time everywhere weftctl reads the clock.\n";

int cli_read(uint8_t **out, size_t *out_len, const char *what, const char *path)
{
    int rc = weft_file_read(out, out_len, path, CLI_MAX_INPUT);
    if (rc == WEFT_ELIMIT) {
        fprintf(stderr, "weftctl: %s %s: larger than %d bytes\n", what, path, CLI_MAX_INPUT);
        return EXIT_USAGE;
    }
    if (rc != WEFT_OK) {
        fprintf(stderr, "weftctl: %s %s: %s\n", what, path, strerror(errno));
        return EXIT_USAGE;
    }
    return EXIT_VALID;
}

int cli_key_type(int *out, const char *arg)
{
    enum spiffe_key_type type;
    if (spiffe_key_type_parse(&type, arg) != WEFT_OK) {
        fprintf(stderr, "weftctl: --key-type %s: use ec-p256 or ed25519\n", arg);
        return EXIT_USAGE;
    }
    *out = (int)type;
    return EXIT_VALID;
}

int64_t cli_now(void)
{
    const char *env = getenv("WEFT_NOW");
    int64_t t;
    if (env != NULL && *env != '\0') {
        if (weft_time_parse_rfc3339(&t, env) == WEFT_OK) {
            return t;
        }
        fprintf(stderr, "weftctl: ignoring WEFT_NOW=%s: not an RFC 3339 time\n", env);
    }
    return (int64_t)time(NULL);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return EXIT_VALID;
    }
    if (strcmp(cmd, "id") == 0) {
        return cmd_id(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "bundle") == 0) {
        return cmd_bundle(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "ca") == 0) {
        return cmd_ca(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "token") == 0) {
        return cmd_token(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "entry") == 0) {
        return cmd_entry(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "revoke") == 0) {
        return cmd_revoke(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "certs") == 0) {
        return cmd_certs(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "policy") == 0) {
        return cmd_policy(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "svid") == 0) {
        return cmd_svid(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "wait-ready") == 0) {
        return cmd_wait_ready(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "iptables") == 0) {
        return cmd_iptables(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "inject") == 0) {
        return cmd_inject(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "scan") == 0) {
        return cmd_scan(argc - 1, argv + 1);
    }
    fprintf(stderr, "weftctl: unknown command \"%s\"\n\n%s", cmd, usage);
    return EXIT_USAGE;
}
