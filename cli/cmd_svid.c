/* weftctl svid inspect | mint: look at an X509-SVID the way a verifier would, and make test
 * certificates with the same minting code the CA uses. */
#include <getopt.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/x509v3.h>

#include "cli/internal.h"
#include "lib/base/file.h"
#include "lib/base/mem.h"
#include "lib/base/timefmt.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/x509svid.h"

static const char inspect_usage[] =
    "usage: weftctl svid inspect --cert CHAIN [--key KEY] [--bundle BUNDLE [--bundle-td TD]]\n"
    "                            [--at RFC3339]\n"
    "\n"
    "  --cert CHAIN   the SVID: PEM CERTIFICATE blocks or concatenated DER, leaf first, then\n"
    "                 the intermediates it carries (other PEM blocks are skipped)\n"
    "  --key KEY      its private key, unencrypted PKCS#8 (PEM \"PRIVATE KEY\" or DER); checked\n"
    "                 against the leaf\n"
    "  --bundle FILE  trust bundle: PEM/DER certificates, a SPIFFE bundle (JWK Set JSON) or a\n"
    "                 bundle map {\"trust_domains\": {...}}. With it the chain is verified\n"
    "                 (signatures, validity, CA flags, no SHA-1/MD5) to the authorities of the\n"
    "                 leaf's own trust domain; without it only the SVID rules and the validity\n"
    "                 windows are checked, and the verdict says so.\n"
    "  --bundle-td TD the trust domain a PEM or JSON bundle belongs to. Default: the one its\n"
    "                 authorities name in their SPIFFE ID; if they carry none, the leaf's\n"
    "                 (and the output says so).\n"
    "  --at TIME      check validity at this RFC 3339 time instead of now\n"
    "\n"
    "Checks, in order: the leaf's SPIFFE rules (one URI SAN holding a valid ID with a path,\n"
    "cA=false, key usage critical with digitalSignature and without keyCertSign/cRLSign, EKU\n"
    "with serverAuth+clientAuth if present), each further certificate as a signing CA (cA=true,\n"
    "keyCertSign, critical key usage, no ID path), the key, the validity windows, the chain.\n"
    "Exit: 0 valid, 1 invalid (the verdict line says why), 2 usage or a file that cannot be read\n"
    "(also a --bundle whose contents cannot be decoded).\n";

static const char mint_usage[] =
    "usage: weftctl svid mint root --td TD --cert OUT --key OUT [common flags]\n"
    "       weftctl svid mint intermediate --td TD --ca-cert F --ca-key F --cert OUT --key OUT\n"
    "       weftctl svid mint leaf --id ID --ca-cert F --ca-key F --cert OUT\n"
    "                              (--key OUT | --csr F) [--chain]\n"
    "\n"
    "  --td TD           trust domain (example.org or spiffe://example.org)\n"
    "  --id ID           the leaf's SPIFFE ID (a path is required)\n"
    "  --ca-cert F       the issuing CA's certificate (first certificate of F)\n"
    "  --ca-key F        the issuing CA's PKCS#8 private key\n"
    "  --cert OUT        where to write the certificate (PEM)\n"
    "  --key OUT         where to write a new private key (PKCS#8 PEM, mode 0600)\n"
    "  --csr F           sign the public key of this PKCS#10 request instead of making a key;\n"
    "                    only its key is used, never the names it asks for\n"
    "  --chain           leaf only: append the issuer (if it is not self-signed) to --cert\n"
    "common flags:\n"
    "  --ttl DUR         lifetime, e.g. 1h, 30m, 7d (defaults: root 8760h, intermediate 168h,\n"
    "                    leaf 1h); clamped to the issuer's notAfter\n"
    "  --not-before T    RFC 3339 start (default: now minus 60 s, for clock skew)\n"
    "  --serial HEX      serial number, up to 20 bytes (default: 16 random bytes)\n"
    "  --key-type T      ec-p256 (default) or ed25519\n";

/* --- printing ----------------------------------------------------------------------------- */

static void print_name(const char *label, X509_NAME *name)
{
    BIO *bio = BIO_new(BIO_s_mem());
    const uint8_t *data;
    size_t len = 0;
    if (bio != NULL && X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0) {
        BIO_mem_contents(bio, &data, &len);
    }
    printf("%s\"%.*s\"", label, (int)len, len ? (const char *)data : "");
    BIO_free(bio);
}

static const char *key_desc(const X509 *cert, char *buf, size_t len)
{
    EVP_PKEY *pub = X509_get_pubkey((X509 *)cert);
    if (pub == NULL) {
        ERR_clear_error();
        return "unknown key";
    }
    switch (EVP_PKEY_id(pub)) {
    case EVP_PKEY_EC:
        snprintf(buf, len, "EC P-%d", EVP_PKEY_bits(pub));
        break;
    case EVP_PKEY_RSA:
        snprintf(buf, len, "RSA %d", EVP_PKEY_bits(pub));
        break;
    case EVP_PKEY_ED25519:
        snprintf(buf, len, "Ed25519");
        break;
    default:
        snprintf(buf, len, "key type %d", EVP_PKEY_id(pub));
    }
    EVP_PKEY_free(pub);
    return buf;
}

static void print_serial(const X509 *cert)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    printf("%s", hex != NULL ? hex : "?");
    OPENSSL_free(hex);
    BN_free(bn);
}

static void print_cert(size_t i, X509 *cert)
{
    char kb[32], nb_s[WEFT_RFC3339_LEN], na_s[WEFT_RFC3339_LEN];
    int64_t nb = 0, na = 0;
    struct spiffe_id id;
    struct spiffe_why why;
    int ca = (X509_get_extension_flags(cert) & EXFLAG_CA) != 0;
    if (spiffe_cert_validity(&nb, &na, cert) != WEFT_OK) {
        nb = na = 0;
    }
    weft_time_format_rfc3339(nb_s, nb);
    weft_time_format_rfc3339(na_s, na);
    printf("  [%zu] %-4s ", i, ca ? "CA" : "leaf");
    int rc = spiffe_cert_uri_id(&id, cert, &why);
    printf("id=%s", rc == WEFT_OK ? id.str : "(none)");
    printf(" key=\"%s\" serial=", key_desc(cert, kb, sizeof(kb)));
    print_serial(cert);
    printf("\n       ");
    print_name("subject=", X509_get_subject_name(cert));
    print_name(" issuer=", X509_get_issuer_name(cert));
    printf("\n       valid %s .. %s\n", nb_s, na_s);
}

/* --- inspect ------------------------------------------------------------------------------ */

/* load_bundle reads --bundle into |set|. The bundle's trust domain is |bundle_td| when the
 * operator named it, else the one its authorities name; when they name none, it is taken to be
 * the leaf's |leaf_td| (if the leaf has an ID), and the output says so. */
static int load_bundle(struct spiffe_bundle_set *set, const char *path,
                       const struct spiffe_id *bundle_td, const struct spiffe_id *leaf_td)
{
    uint8_t *data;
    size_t len;
    struct spiffe_why why;
    int rc = cli_read(&data, &len, "--bundle", path);
    if (rc != EXIT_VALID) {
        return rc;
    }
    rc = spiffe_bundle_decode(set, data, len, bundle_td, &why);
    if (rc == WEFT_ENOTFOUND && leaf_td != NULL) {
        printf("bundle:     its authorities carry no SPIFFE ID; taken as the bundle of the leaf's "
               "trust domain (--bundle-td states it)\n");
        rc = spiffe_bundle_decode(set, data, len, leaf_td, &why);
    }
    free(data);
    if (rc != WEFT_OK) {
        fprintf(stderr, "weftctl: --bundle %s: %s\n", path,
                why.msg[0] ? why.msg : weft_strerror(rc));
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < set->num_bundles; i++) {
        int n = (int)sk_X509_num(set->bundles[i]->x509);
        printf("bundle:     %d X.509 authorit%s for %s\n", n, n == 1 ? "y" : "ies",
               set->bundles[i]->td.str);
    }
    return EXIT_VALID;
}

/* verdict prints the last line of `svid inspect` and returns its exit code. */
static int verdict(int ok, const char *why)
{
    printf("verdict:    %s%s\n", ok ? "valid " : "INVALID: ", why);
    return ok ? EXIT_VALID : EXIT_INVALID;
}

struct inspect_args {
    const char *cert_path, *key_path, *bundle_path;
    bool has_bundle_td;
    struct spiffe_id bundle_td;
    int64_t at;
};

/* parse_inspect_args reads the flags; it returns -1 to go on, or the exit code. */
static int parse_inspect_args(struct inspect_args *a, int argc, char **argv)
{
    static const struct option opts[] = {
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},
        {"bundle", required_argument, NULL, 'b'},
        {"at", required_argument, NULL, 't'},
        {"bundle-td", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct spiffe_why why;
    memset(a, 0, sizeof(*a));
    a->at = cli_now();
    int c;
    while ((c = getopt_long(argc, argv, "c:k:b:t:d:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            a->cert_path = optarg;
            break;
        case 'k':
            a->key_path = optarg;
            break;
        case 'b':
            a->bundle_path = optarg;
            break;
        case 'd':
            if (spiffe_td_parse(&a->bundle_td, optarg, strlen(optarg), &why) != WEFT_OK) {
                fprintf(stderr, "weftctl: --bundle-td %s: %s\n", optarg, why.msg);
                return EXIT_USAGE;
            }
            a->has_bundle_td = true;
            break;
        case 't':
            if (weft_time_parse_rfc3339(&a->at, optarg) != WEFT_OK) {
                fprintf(stderr,
                        "weftctl: --at %s: not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)\n",
                        optarg);
                return EXIT_USAGE;
            }
            break;
        case 'h':
            fputs(inspect_usage, stdout);
            return EXIT_VALID;
        default:
            fputs(inspect_usage, stderr);
            return EXIT_USAGE;
        }
    }
    if (a->cert_path == NULL || optind != argc) {
        fprintf(stderr, "weftctl: svid inspect needs --cert and takes no other arguments\n\n%s",
                inspect_usage);
        return EXIT_USAGE;
    }
    if (a->has_bundle_td && a->bundle_path == NULL) {
        fprintf(stderr, "weftctl: --bundle-td names the trust domain of a --bundle\n");
        return EXIT_USAGE;
    }
    return -1;
}

/* print_summary prints what a person looks for first: the leaf's ID, serial, validity and time
 * left at |at|, then every certificate of the chain. */
static void print_summary(const STACK_OF(X509) * chain, const struct spiffe_id *leaf_id, int64_t at)
{
    X509 *leaf = sk_X509_value(chain, 0);
    int64_t nb = 0, na = 0;
    char t1[WEFT_RFC3339_LEN], t2[WEFT_RFC3339_LEN], left[32], at_s[WEFT_RFC3339_LEN];
    if (spiffe_cert_validity(&nb, &na, leaf) != WEFT_OK) {
        nb = na = 0;
    }
    weft_time_format_rfc3339(t1, nb);
    weft_time_format_rfc3339(t2, na);
    weft_time_format_rfc3339(at_s, at);
    weft_duration_format(left, sizeof(left), na - at);
    printf("spiffe_id:  %s\n", leaf_id != NULL ? leaf_id->str : "(none)");
    printf("serial:     ");
    print_serial(leaf);
    printf("\nnot_before: %s\nnot_after:  %s\n", t1, t2);
    printf("time_left:  %s%s (at %s)\n", left, na < at ? " (expired)" : "", at_s);
    printf("chain:      %d certificate%s\n", (int)sk_X509_num(chain),
           sk_X509_num(chain) == 1 ? "" : "s");
    for (size_t i = 0; i < sk_X509_num(chain); i++) {
        print_cert(i, sk_X509_value(chain, i));
    }
}

/* judge gives the verdict, in go-spiffe's order (B11) -- the SVID rules, then the key -- then
 * the chain to the bundle (or, without one, the validity windows alone). */
static int judge(const STACK_OF(X509) * chain, const uint8_t *key_data, size_t key_len,
                 const struct spiffe_bundle_set *bundles, int64_t at)
{
    struct spiffe_why why;
    struct spiffe_id id;
    X509 *leaf = sk_X509_value(chain, 0);
    if (spiffe_x509svid_check(&id, chain, &why) != WEFT_OK) {
        return verdict(0, why.msg);
    }
    if (key_data != NULL) {
        EVP_PKEY *key = NULL;
        int rc = spiffe_key_decode(&key, key_data, key_len, &why);
        if (rc == WEFT_OK) {
            rc = spiffe_x509svid_check_key(leaf, key, &why);
        }
        EVP_PKEY_free(key);
        char kb[32];
        printf("key:        %s (%s)\n",
               rc == WEFT_OK                               ? "matches the leaf"
               : why.rule == SPIFFE_RULE_SVID_KEY_MISMATCH ? "does NOT match the leaf"
                                                           : "unreadable",
               key_desc(leaf, kb, sizeof(kb)));
        if (rc != WEFT_OK) {
            return verdict(0, why.msg);
        }
    }
    char at_s[WEFT_RFC3339_LEN], msg[128];
    weft_time_format_rfc3339(at_s, at);
    if (bundles != NULL) {
        if (spiffe_x509svid_verify(&id, chain, bundles, at, &why) != WEFT_OK) {
            return verdict(0, why.msg);
        }
        snprintf(msg, sizeof(msg), "(SVID rules, validity at %s, chain verified to the bundle)",
                 at_s);
        return verdict(1, msg);
    }
    if (spiffe_x509svid_check_time(chain, at, &why) != WEFT_OK) {
        return verdict(0, why.msg);
    }
    snprintf(msg, sizeof(msg), "(SVID rules and validity at %s; chain NOT verified: no --bundle)",
             at_s);
    return verdict(1, msg);
}

static int inspect(int argc, char **argv)
{
    struct inspect_args a;
    int rc = parse_inspect_args(&a, argc, argv);
    if (rc >= 0) {
        return rc;
    }
    uint8_t *data = NULL, *key_data = NULL;
    size_t len, key_len = 0;
    STACK_OF(X509) *chain = NULL;
    struct spiffe_bundle_set bundles;
    struct spiffe_why why;
    spiffe_bundle_set_init(&bundles);

    /* Read every file first, so that an unreadable one is a usage error, not a verdict. */
    if ((rc = cli_read(&data, &len, "--cert", a.cert_path)) != EXIT_VALID ||
        (a.key_path != NULL &&
         (rc = cli_read(&key_data, &key_len, "--key", a.key_path)) != EXIT_VALID)) {
        goto out;
    }
    if (spiffe_certs_decode(&chain, data, len, SPIFFE_MAX_CHAIN, 0, &why) != WEFT_OK) {
        rc = verdict(0, why.msg);
        goto out;
    }
    struct spiffe_id id, leaf_td;
    int has_id = spiffe_cert_uri_id(&id, sk_X509_value(chain, 0), NULL) == WEFT_OK;
    print_summary(chain, has_id ? &id : NULL, a.at);
    if (a.bundle_path != NULL) {
        if (has_id) {
            spiffe_id_td_id(&leaf_td, &id);
        }
        rc = load_bundle(&bundles, a.bundle_path, a.has_bundle_td ? &a.bundle_td : NULL,
                         has_id ? &leaf_td : NULL);
        if (rc != EXIT_VALID) {
            goto out;
        }
    }
    rc = judge(chain, key_data, key_len, a.bundle_path != NULL ? &bundles : NULL, a.at);
out:
    if (key_data != NULL) {
        OPENSSL_cleanse(key_data, key_len);
    }
    free(key_data);
    free(data);
    sk_X509_pop_free(chain, X509_free);
    spiffe_bundle_set_cleanup(&bundles);
    return rc;
}

/* --- mint --------------------------------------------------------------------------------- */

struct mint_flags {
    const char *td, *id, *ca_cert, *ca_key, *cert_out, *key_out, *csr;
    int chain;
    enum spiffe_key_type key_type;
    struct spiffe_mint_params params;
    int has_ttl;
};

static int parse_hex_serial(struct spiffe_mint_params *p, const char *hex)
{
    size_t n = strlen(hex);
    if (n == 0 || n > 2 * SPIFFE_SERIAL_MAX_LEN) {
        return 0;
    }
    size_t bytes = (n + 1) / 2;
    memset(p->serial, 0, sizeof(p->serial));
    for (size_t i = 0; i < n; i++) {
        char ch = hex[n - 1 - i];
        int v = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                         : -1;
        if (v < 0) {
            return 0;
        }
        p->serial[bytes - 1 - i / 2] |= (uint8_t)(i % 2 ? v << 4 : v);
    }
    p->serial_len = bytes;
    /* RFC 5280 §4.1.2.2: at most 20 octets once DER-encoded as a positive INTEGER, so a 20-byte
     * serial may not have its top bit set (it would need a leading zero octet). */
    return !(bytes == SPIFFE_SERIAL_MAX_LEN && (p->serial[0] & 0x80));
}

static int write_pem(const char *path, const char *pem, size_t len, mode_t mode)
{
    if (weft_file_write_atomic(path, pem, len, mode) != WEFT_OK) {
        perror(path);
        return EXIT_INVALID;
    }
    return EXIT_VALID;
}

static int load_issuer(X509 **out_cert, EVP_PKEY **out_key, const struct mint_flags *f)
{
    uint8_t *data;
    size_t len;
    struct spiffe_why why;
    STACK_OF(X509) *certs = NULL;
    int rc;
    if ((rc = cli_read(&data, &len, "--ca-cert", f->ca_cert)) != EXIT_VALID) {
        return rc;
    }
    int ok = spiffe_certs_decode(&certs, data, len, SPIFFE_MAX_CHAIN, 0, &why) == WEFT_OK;
    free(data);
    if (!ok) {
        fprintf(stderr, "weftctl: --ca-cert %s: %s\n", f->ca_cert, why.msg);
        return EXIT_USAGE;
    }
    *out_cert = sk_X509_shift(certs);
    sk_X509_pop_free(certs, X509_free);
    if ((rc = cli_read(&data, &len, "--ca-key", f->ca_key)) != EXIT_VALID) {
        return rc;
    }
    ok = spiffe_key_decode(out_key, data, len, &why) == WEFT_OK &&
         spiffe_x509svid_check_key(*out_cert, *out_key, &why) == WEFT_OK;
    OPENSSL_cleanse(data, len);
    free(data);
    if (!ok) {
        fprintf(stderr, "weftctl: --ca-key %s: %s\n", f->ca_key, why.msg);
        return EXIT_USAGE;
    }
    return EXIT_VALID;
}

static int mint(int argc, char **argv)
{
    static const struct option opts[] = {
        {"td", required_argument, NULL, 'T'},      {"id", required_argument, NULL, 'i'},
        {"ca-cert", required_argument, NULL, 'C'}, {"ca-key", required_argument, NULL, 'K'},
        {"cert", required_argument, NULL, 'c'},    {"key", required_argument, NULL, 'k'},
        {"csr", required_argument, NULL, 'r'},     {"chain", no_argument, NULL, 'a'},
        {"ttl", required_argument, NULL, 'l'},     {"not-before", required_argument, NULL, 'n'},
        {"serial", required_argument, NULL, 's'},  {"key-type", required_argument, NULL, 'y'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(mint_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_VALID;
    }
    const char *kind = argv[1];
    struct mint_flags f = {0};
    f.params.not_before = cli_now() - 60;
    int c, key_type;
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'T':
            f.td = optarg;
            break;
        case 'i':
            f.id = optarg;
            break;
        case 'C':
            f.ca_cert = optarg;
            break;
        case 'K':
            f.ca_key = optarg;
            break;
        case 'c':
            f.cert_out = optarg;
            break;
        case 'k':
            f.key_out = optarg;
            break;
        case 'r':
            f.csr = optarg;
            break;
        case 'a':
            f.chain = 1;
            break;
        case 'l':
            if (weft_duration_parse(&f.params.ttl_s, optarg) != WEFT_OK) {
                fprintf(stderr, "weftctl: --ttl %s: not a duration such as 1h, 30m or 7d\n",
                        optarg);
                return EXIT_USAGE;
            }
            f.has_ttl = 1;
            break;
        case 'n':
            if (weft_time_parse_rfc3339(&f.params.not_before, optarg) != WEFT_OK) {
                fprintf(stderr, "weftctl: --not-before %s: not an RFC 3339 time\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 's':
            if (!parse_hex_serial(&f.params, optarg)) {
                fprintf(stderr,
                        "weftctl: --serial %s: not 1 to 40 hex digits (at most 20 octets as a "
                        "positive DER INTEGER)\n",
                        optarg);
                return EXIT_USAGE;
            }
            break;
        case 'y':
            if (cli_key_type(&key_type, optarg) != EXIT_VALID) {
                return EXIT_USAGE;
            }
            f.key_type = (enum spiffe_key_type)key_type;
            break;
        case 'h':
            fputs(mint_usage, stdout);
            return EXIT_VALID;
        default:
            fputs(mint_usage, stderr);
            return EXIT_USAGE;
        }
    }
    int is_root = strcmp(kind, "root") == 0, is_int = strcmp(kind, "intermediate") == 0,
        is_leaf = strcmp(kind, "leaf") == 0;
    const char *missing = NULL;
    if (!is_root && !is_int && !is_leaf) {
        fprintf(stderr, "weftctl: svid mint: unknown kind \"%s\" (root, intermediate, leaf)\n",
                kind);
        return EXIT_USAGE;
    }
    if (optind != argc) {
        missing = "no positional arguments";
    } else if (f.cert_out == NULL) {
        missing = "--cert";
    } else if (is_leaf ? f.id == NULL : f.td == NULL) {
        missing = is_leaf ? "--id" : "--td";
    } else if (!is_root && (f.ca_cert == NULL || f.ca_key == NULL)) {
        missing = "--ca-cert and --ca-key";
    } else if (is_leaf ? (f.key_out == NULL) == (f.csr == NULL) : f.key_out == NULL) {
        missing = is_leaf ? "exactly one of --key and --csr" : "--key";
    } else if (f.csr != NULL && !is_leaf) {
        missing = "no --csr (only a leaf is minted from a CSR)";
    }
    if (missing != NULL) {
        fprintf(stderr, "weftctl: svid mint %s: needs %s\n\n%s", kind, missing, mint_usage);
        return EXIT_USAGE;
    }
    if (!f.has_ttl) {
        f.params.ttl_s = is_root ? 8760 * 3600 : is_int ? 168 * 3600 : 3600;
    }

    struct spiffe_id id;
    struct spiffe_why why;
    int rc = is_leaf ? spiffe_id_parse(&id, f.id, strlen(f.id), &why)
                     : spiffe_td_parse(&id, f.td, strlen(f.td), &why);
    if (rc != WEFT_OK) {
        fprintf(stderr, "weftctl: %s %s: %s\n", is_leaf ? "--id" : "--td", is_leaf ? f.id : f.td,
                why.msg);
        return EXIT_USAGE;
    }
    if (is_leaf && spiffe_id_is_td(&id)) {
        fprintf(stderr, "weftctl: --id %s: a leaf SVID needs a path (X509-SVID rule B2)\n", f.id);
        return EXIT_USAGE;
    }

    X509 *issuer = NULL, *cert = NULL;
    EVP_PKEY *issuer_key = NULL, *key = NULL;
    char *pem = NULL, *key_pem = NULL;
    size_t pem_len, key_pem_len = 0;
    STACK_OF(X509) *out_certs = sk_X509_new_null();
    rc = EXIT_INVALID;
    if (out_certs == NULL) {
        goto out;
    }
    if (!is_root && (rc = load_issuer(&issuer, &issuer_key, &f)) != EXIT_VALID) {
        goto out;
    }
    rc = EXIT_INVALID;
    if (f.csr != NULL) {
        uint8_t *data;
        size_t len;
        if ((rc = cli_read(&data, &len, "--csr", f.csr)) != EXIT_VALID) {
            goto out;
        }
        int ok = spiffe_csr_decode(&key, data, len, &why) == WEFT_OK;
        free(data);
        if (!ok) {
            fprintf(stderr, "weftctl: --csr %s: %s\n", f.csr, why.msg);
            rc = EXIT_USAGE;
            goto out;
        }
        rc = EXIT_INVALID;
    } else if ((key = spiffe_key_generate(f.key_type)) == NULL) {
        fprintf(stderr, "weftctl: key generation failed\n");
        goto out;
    }
    int mrc = is_root ? spiffe_mint_root(&cert, key, &id, &f.params, &why)
              : is_int
                  ? spiffe_mint_signing_ca(&cert, issuer, issuer_key, key, &id, &f.params, &why)
                  : spiffe_mint_leaf(&cert, issuer, issuer_key, key, &id, &f.params, &why);
    if (mrc != WEFT_OK) {
        fprintf(stderr, "weftctl: svid mint %s: %s\n", kind, why.msg);
        goto out;
    }
    if (!sk_X509_push(out_certs, cert)) {
        goto out;
    }
    X509_up_ref(cert);
    if (is_leaf && f.chain && X509_check_issued(issuer, issuer) != X509_V_OK) {
        if (!sk_X509_push(out_certs, issuer)) {
            goto out;
        }
        X509_up_ref(issuer);
    }
    if (spiffe_certs_to_pem(&pem, &pem_len, out_certs) != WEFT_OK ||
        (f.key_out != NULL && spiffe_key_to_pem(&key_pem, &key_pem_len, key) != WEFT_OK)) {
        fprintf(stderr, "weftctl: cannot encode PEM\n");
        goto out;
    }
    if ((f.key_out != NULL && write_pem(f.key_out, key_pem, key_pem_len, 0600) != EXIT_VALID) ||
        write_pem(f.cert_out, pem, pem_len, 0644) != EXIT_VALID) {
        goto out;
    }
    int64_t nb, na;
    char na_s[WEFT_RFC3339_LEN];
    if (spiffe_cert_validity(&nb, &na, cert) != WEFT_OK) {
        na = 0;
    }
    weft_time_format_rfc3339(na_s, na);
    fprintf(stderr, "weftctl: minted %s %s valid until %s -> %s\n", kind, id.str, na_s, f.cert_out);
    rc = EXIT_VALID;
out:
    if (key_pem != NULL) {
        OPENSSL_cleanse(key_pem, key_pem_len);
    }
    free(key_pem);
    free(pem);
    sk_X509_pop_free(out_certs, X509_free);
    X509_free(cert);
    X509_free(issuer);
    EVP_PKEY_free(issuer_key);
    EVP_PKEY_free(key);
    return rc;
}

int cmd_svid(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "inspect") == 0) {
        return inspect(argc - 1, argv + 1);
    }
    if (argc >= 2 && strcmp(argv[1], "mint") == 0) {
        return mint(argc - 1, argv + 1);
    }
    FILE *to = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) ? stdout
                                                                                           : stderr;
    fputs(inspect_usage, to);
    fputs("\n", to);
    fputs(mint_usage, to);
    return to == stdout ? EXIT_VALID : EXIT_USAGE;
}
