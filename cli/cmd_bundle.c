/* weftctl bundle convert: a trust bundle from PEM to SPIFFE bundle JSON (JWK Set) or back. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/internal.h"
#include "lib/base/timefmt.h"
#include "lib/spiffe/bundle.h"

static const char usage[] =
    "usage: weftctl bundle convert --in FILE [--td TD] [--format json|pem] [--sequence N]\n"
    "                              [--refresh-hint DUR]\n"
    "\n"
    "Reads a trust bundle (PEM/DER certificates, a SPIFFE bundle, or a bundle map) and writes\n"
    "it to standard output as a SPIFFE bundle (--format json, the default: one x509-svid JWK per\n"
    "authority, jwt-svid keys kept) or as PEM certificates (--format pem).\n"
    "  --td TD             the trust domain: needed when the authorities carry no SPIFFE ID,\n"
    "                      and to pick one bundle out of a bundle map; refused when the\n"
    "                      authorities name another\n"
    "  --sequence N        set spiffe_sequence (JSON output)\n"
    "  --refresh-hint DUR  set spiffe_refresh_hint, e.g. 5m (JSON output)\n"
    "Exit: 0 written, 1 the bundle is invalid (the reason is on stderr), 2 usage or unreadable.\n";

static int convert(int argc, char **argv)
{
    static const struct option opts[] = {
        {"td", required_argument, NULL, 't'},
        {"in", required_argument, NULL, 'i'},
        {"format", required_argument, NULL, 'f'},
        {"sequence", required_argument, NULL, 's'},
        {"refresh-hint", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *td_s = NULL, *in = NULL, *format = "json";
    long long seq = -1;
    int64_t refresh = -1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 't':
            td_s = optarg;
            break;
        case 'i':
            in = optarg;
            break;
        case 'f':
            format = optarg;
            break;
        case 's':
            errno = 0;
            seq = strtoll(optarg, &end, 10);
            if (!isdigit((unsigned char)*optarg) || *end != '\0' || errno == ERANGE) {
                fprintf(stderr, "weftctl: --sequence %s: not a non-negative integer\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'r':
            if (weft_duration_parse(&refresh, optarg) != WEFT_OK) {
                fprintf(stderr, "weftctl: --refresh-hint %s: not a duration such as 5m\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'h':
            fputs(usage, stdout);
            return EXIT_VALID;
        default:
            fputs(usage, stderr);
            return EXIT_USAGE;
        }
    }
    if (in == NULL || optind != argc ||
        (strcmp(format, "json") != 0 && strcmp(format, "pem") != 0)) {
        fprintf(stderr, "weftctl: bundle convert needs --in, and --format json or pem\n\n%s",
                usage);
        return EXIT_USAGE;
    }
    struct spiffe_id td;
    struct spiffe_why why;
    if (td_s != NULL && spiffe_td_parse(&td, td_s, strlen(td_s), &why) != WEFT_OK) {
        fprintf(stderr, "weftctl: --td %s: %s\n", td_s, why.msg);
        return EXIT_USAGE;
    }
    uint8_t *data;
    size_t len;
    int rc = cli_read(&data, &len, "--in", in);
    if (rc != EXIT_VALID) {
        return rc;
    }
    struct spiffe_bundle_set set;
    spiffe_bundle_set_init(&set);
    rc = spiffe_bundle_decode(&set, data, len, td_s != NULL ? &td : NULL, &why);
    free(data);
    if (rc != WEFT_OK) {
        fprintf(stderr, "weftctl: --in %s: %s%s\n", in, why.msg,
                rc == WEFT_ENOTFOUND ? "; name it with --td" : "");
        spiffe_bundle_set_cleanup(&set);
        return rc == WEFT_ENOTFOUND ? EXIT_USAGE : EXIT_INVALID;
    }
    /* A bundle map may hold several trust domains: --td picks one. */
    struct spiffe_bundle *b = NULL;
    if (td_s != NULL) {
        b = (struct spiffe_bundle *)spiffe_bundle_set_get0(&set, &td);
    } else if (set.num_bundles == 1) {
        b = set.bundles[0];
    }
    if (b == NULL) {
        fprintf(stderr, "weftctl: --in %s holds %zu trust domains%s; pick one with --td\n", in,
                set.num_bundles, td_s != NULL ? ", not --td's" : "");
        spiffe_bundle_set_cleanup(&set);
        return EXIT_USAGE;
    }
    if (seq >= 0) {
        b->has_sequence = true;
        b->sequence = (uint64_t)seq;
    }
    if (refresh > 0) {
        b->has_refresh_hint = true;
        b->refresh_hint_s = refresh;
    }
    char *out = NULL;
    size_t out_len;
    rc = strcmp(format, "json") == 0 ? spiffe_bundle_to_json(&out, &out_len, b)
                                     : spiffe_bundle_to_pem(&out, &out_len, b);
    spiffe_bundle_set_cleanup(&set);
    if (rc != WEFT_OK) {
        fprintf(stderr, "weftctl: cannot encode the bundle: %s\n", weft_strerror(rc));
        return EXIT_INVALID;
    }
    fwrite(out, 1, out_len, stdout);
    if (strcmp(format, "json") == 0) {
        fputc('\n', stdout);
    }
    free(out);
    return fflush(stdout) == 0 ? EXIT_VALID : EXIT_INVALID;
}

int cmd_bundle(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "convert") == 0) {
        return convert(argc - 1, argv + 1);
    }
    int help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
    fputs(usage, help ? stdout : stderr);
    return help ? EXIT_VALID : EXIT_USAGE;
}
