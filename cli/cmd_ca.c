/* weftctl ca init: an offline root and a first intermediate for a new trust domain. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca/material.h"
#include "cli/internal.h"
#include "lib/base/file.h"
#include "lib/base/timefmt.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/x509svid.h"

static const char usage[] =
    "usage: weftctl ca status [--socket PATH]\n"
    "       weftctl ca rotate-root [--socket PATH]\n"
    "       weftctl ca init --trust-domain TD --out DIR [--root-ttl DUR]\n"
    "                       [--intermediate-ttl DUR] [--key-type ec-p256|ed25519]\n"
    "\n"
    "Makes the CA material of a new trust domain in DIR (created mode 0700; existing files are\n"
    "never overwritten):\n"
    "  root.pem, root.key                  the root (default 1 year); keep root.key offline\n"
    "  intermediate.pem, intermediate.key  the first signing CA (default 7 days), signed by the\n"
    "                                      root; weft-ca signs SVIDs with it\n"
    "  bundle.pem, bundle.json             the trust bundle (the root) as PEM and as a SPIFFE\n"
    "                                      bundle, for agents to bootstrap from\n"
    "Keys are PKCS#8 PEM, mode 0600.\n"
    "Exit: 0 done, 1 failed, 2 usage.\n";

static int init(int argc, char **argv)
{
    static const struct option opts[] = {
        {"trust-domain", required_argument, NULL, 't'},
        {"out", required_argument, NULL, 'o'},
        {"root-ttl", required_argument, NULL, 'r'},
        {"intermediate-ttl", required_argument, NULL, 'i'},
        {"key-type", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *td_s = NULL, *dir = NULL;
    int64_t root_ttl = 8760 * 3600, int_ttl = 168 * 3600;
    enum spiffe_key_type type = SPIFFE_KEY_EC_P256;
    int c, key_type;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            td_s = optarg;
            break;
        case 'o':
            dir = optarg;
            break;
        case 'r':
        case 'i':
            if (weft_duration_parse(c == 'r' ? &root_ttl : &int_ttl, optarg) != WEFT_OK) {
                fprintf(stderr, "weftctl: %s: not a duration such as 168h\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'k':
            if (cli_key_type(&key_type, optarg) != EXIT_VALID) {
                return EXIT_USAGE;
            }
            type = (enum spiffe_key_type)key_type;
            break;
        case 'h':
            fputs(usage, stdout);
            return EXIT_VALID;
        default:
            fputs(usage, stderr);
            return EXIT_USAGE;
        }
    }
    if (td_s == NULL || dir == NULL || optind != argc) {
        fprintf(stderr, "weftctl: ca init needs --trust-domain and --out\n\n%s", usage);
        return EXIT_USAGE;
    }
    struct spiffe_id td;
    struct spiffe_why why;
    if (spiffe_td_parse(&td, td_s, strlen(td_s), &why) != WEFT_OK) {
        fprintf(stderr, "weftctl: --trust-domain %s: %s\n", td_s, why.msg);
        return EXIT_USAGE;
    }
    if (int_ttl > root_ttl) {
        fprintf(stderr, "weftctl: the intermediate cannot outlive the root\n");
        return EXIT_USAGE;
    }
    int64_t now = cli_now() - 60; /* a minute back, for clock skew */
    struct ca_material_params p = {
        .td = &td,
        .not_before = now,
        .root_ttl_s = root_ttl,
        .intermediate_ttl_s = int_ttl,
        .key_type = type,
    };
    char err[512];
    if (ca_material_init(dir, &p, err, sizeof(err)) != WEFT_OK) {
        fprintf(stderr, "weftctl: ca init: %s\n", err);
        return EXIT_INVALID;
    }
    char r_s[WEFT_RFC3339_LEN], i_s[WEFT_RFC3339_LEN];
    weft_time_format_rfc3339(r_s, now + root_ttl);
    weft_time_format_rfc3339(i_s, now + int_ttl);
    printf("trust domain %s: root valid until %s, intermediate until %s, in %s\n", td.str, r_s, i_s,
           dir);
    return EXIT_VALID;
}

int cmd_ca(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "init") == 0) {
        return init(argc - 1, argv + 1);
    }
    if (argc >= 2 && (strcmp(argv[1], "status") == 0 || strcmp(argv[1], "rotate-root") == 0)) {
        return cli_ca_status(argc - 1, argv + 1, strcmp(argv[1], "rotate-root") == 0);
    }
    int help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
    fputs(usage, help ? stdout : stderr);
    return help ? EXIT_VALID : EXIT_USAGE;
}
