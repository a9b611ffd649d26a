/* weftctl ca init: an offline root and a first intermediate for a new trust domain. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/internal.h"
#include "lib/base/file.h"
#include "lib/base/timefmt.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/x509svid.h"

static const char usage[] =
    "usage: weftctl ca init --trust-domain TD --out DIR [--root-ttl DUR]\n"
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

/* write_new writes |data| to DIR/NAME, refusing to replace a file that exists. */
static int write_new(const char *dir, const char *name, const char *data, size_t len, mode_t mode)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (access(path, F_OK) == 0) {
        fprintf(stderr, "weftctl: %s exists: refusing to overwrite CA material\n", path);
        return EXIT_INVALID;
    }
    if (weft_file_write_atomic(path, data, len, mode) != WEFT_OK) {
        fprintf(stderr, "weftctl: %s: %s\n", path, strerror(errno));
        return EXIT_INVALID;
    }
    return EXIT_VALID;
}

static int write_cert(const char *dir, const char *name, X509 *cert)
{
    STACK_OF(X509) *one = sk_X509_new_null();
    char *pem = NULL;
    size_t len;
    int rc = EXIT_INVALID;
    if (one != NULL && sk_X509_push(one, cert) && spiffe_certs_to_pem(&pem, &len, one) == WEFT_OK) {
        rc = write_new(dir, name, pem, len, 0644);
    }
    free(pem);
    sk_X509_free(one);
    return rc;
}

static int write_key(const char *dir, const char *name, EVP_PKEY *key)
{
    char *pem = NULL;
    size_t len = 0;
    int rc = EXIT_INVALID;
    if (spiffe_key_to_pem(&pem, &len, key) == WEFT_OK) {
        rc = write_new(dir, name, pem, len, 0600);
    }
    if (pem != NULL) {
        memset(pem, 0, len);
    }
    free(pem);
    return rc;
}

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
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "weftctl: --out %s: %s\n", dir, strerror(errno));
        return EXIT_INVALID;
    }
    int64_t now = cli_now() - 60; /* a minute back, for clock skew */
    struct spiffe_mint_params rp = {.not_before = now, .ttl_s = root_ttl};
    struct spiffe_mint_params ip = {.not_before = now, .ttl_s = int_ttl};
    EVP_PKEY *root_key = spiffe_key_generate(type), *int_key = spiffe_key_generate(type);
    X509 *root = NULL, *inter = NULL;
    struct spiffe_bundle *bundle = NULL;
    char *json = NULL;
    size_t json_len;
    int rc = EXIT_INVALID;
    if (root_key == NULL || int_key == NULL ||
        spiffe_mint_root(&root, root_key, &td, &rp, &why) != WEFT_OK ||
        spiffe_mint_signing_ca(&inter, root, root_key, int_key, &td, &ip, &why) != WEFT_OK) {
        fprintf(stderr, "weftctl: ca init: %s\n", why.msg);
        goto out;
    }
    bundle = spiffe_bundle_new(&td);
    bundle->has_sequence = true;
    bundle->sequence = 1;
    if (spiffe_bundle_add_x509(bundle, root) != WEFT_OK ||
        spiffe_bundle_to_json(&json, &json_len, bundle) != WEFT_OK) {
        goto out;
    }
    if (write_key(dir, "root.key", root_key) != EXIT_VALID ||
        write_cert(dir, "root.pem", root) != EXIT_VALID ||
        write_key(dir, "intermediate.key", int_key) != EXIT_VALID ||
        write_cert(dir, "intermediate.pem", inter) != EXIT_VALID ||
        write_cert(dir, "bundle.pem", root) != EXIT_VALID ||
        write_new(dir, "bundle.json", json, json_len, 0644) != EXIT_VALID) {
        goto out;
    }
    char r_s[WEFT_RFC3339_LEN], i_s[WEFT_RFC3339_LEN];
    weft_time_format_rfc3339(r_s, now + root_ttl);
    weft_time_format_rfc3339(i_s, now + int_ttl);
    printf("trust domain %s: root valid until %s, intermediate until %s, in %s\n", td.str, r_s, i_s,
           dir);
    rc = EXIT_VALID;
out:
    free(json);
    spiffe_bundle_free(bundle);
    X509_free(root);
    X509_free(inter);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(int_key);
    return rc;
}

int cmd_ca(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "init") == 0) {
        return init(argc - 1, argv + 1);
    }
    int help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
    fputs(usage, help ? stdout : stderr);
    return help ? EXIT_VALID : EXIT_USAGE;
}
