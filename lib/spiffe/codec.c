/* Decoding and encoding of certificates and keys: PEM via BoringSSL's PEM reader, DER via CBS. */
#include "lib/spiffe/x509svid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "lib/base/mem.h"

struct pem_block {
    char *name;
    char *header;
    uint8_t *data;
    long len;
};

static int looks_like_pem(const uint8_t *data, size_t len);
static int next_pem_block(BIO *bio, struct pem_block *out, struct spiffe_why *why, int *out_done);
static void pem_block_cleanup(struct pem_block *b);
static int copy_bio(char **out, size_t *out_len, BIO *bio);

static int looks_like_pem(const uint8_t *data, size_t len)
{
    static const char begin[] = "-----BEGIN ";
    size_t n = sizeof(begin) - 1;
    for (size_t i = 0; i + n <= len; i++) {
        if (memcmp(data + i, begin, n) == 0) {
            return 1;
        }
    }
    return 0;
}

static void pem_block_cleanup(struct pem_block *b)
{
    OPENSSL_free(b->name);
    OPENSSL_free(b->header);
    OPENSSL_free(b->data);
    memset(b, 0, sizeof(*b));
}

/* next_pem_block reads the next block; at the end of input it sets |*out_done|. */
static int next_pem_block(BIO *bio, struct pem_block *out, struct spiffe_why *why, int *out_done)
{
    memset(out, 0, sizeof(*out));
    *out_done = 0;
    ERR_clear_error();
    if (PEM_read_bio(bio, &out->name, &out->header, &out->data, &out->len)) {
        return WEFT_OK;
    }
    uint32_t e = ERR_peek_last_error();
    ERR_clear_error();
    if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
        *out_done = 1;
        return WEFT_OK;
    }
    spiffe_why_set(why, SPIFFE_RULE_SVID_DECODE, -1, "a PEM block is damaged: %s",
                   ERR_reason_error_string(e) != NULL ? ERR_reason_error_string(e) : "bad PEM");
    return WEFT_EINVAL;
}

static int parse_der_cert(X509 **out, CBS *in, size_t index, struct spiffe_why *why)
{
    CBS cert;
    if (!CBS_get_asn1_element(in, &cert, CBS_ASN1_SEQUENCE)) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_DECODE, (int)index,
                       "certificate %zu is not DER: malformed ASN.1", index);
        return WEFT_EINVAL;
    }
    const uint8_t *p = CBS_data(&cert);
    X509 *x = d2i_X509(NULL, &p, (long)CBS_len(&cert));
    if (x == NULL || p != CBS_data(&cert) + CBS_len(&cert)) {
        X509_free(x);
        ERR_clear_error();
        spiffe_why_set(why, SPIFFE_RULE_SVID_DECODE, (int)index,
                       "certificate %zu cannot be parsed (malformed X.509)", index);
        return WEFT_EINVAL;
    }
    *out = x;
    return WEFT_OK;
}

int spiffe_certs_decode(STACK_OF(X509) * *out, const uint8_t *data, size_t len, size_t max_certs,
                        int allow_empty, struct spiffe_why *why)
{
    int rc = WEFT_EINVAL;
    STACK_OF(X509) *certs = sk_X509_new_null();
    BIO *bio = NULL;
    struct pem_block b = {0};
    *out = NULL;
    spiffe_why_clear(why);
    if (certs == NULL) {
        return WEFT_ECRYPTO;
    }
    if (len > SPIFFE_MAX_PEM_INPUT) {
        spiffe_why_set(why, SPIFFE_RULE_BUNDLE_LIMIT, -1, "input is %zu bytes, over the %d limit",
                       len, SPIFFE_MAX_PEM_INPUT);
        rc = WEFT_ELIMIT;
        goto out;
    }
    if (len == 0) {
        if (!allow_empty) {
            spiffe_why_set(why, SPIFFE_RULE_SVID_NO_CERT, -1,
                           "no certificates found (empty input)");
        }
        rc = allow_empty ? WEFT_OK : WEFT_EINVAL;
        goto out;
    }
    if (looks_like_pem(data, len)) {
        if ((bio = BIO_new_mem_buf(data, (int)len)) == NULL) {
            rc = WEFT_ECRYPTO;
            goto out;
        }
        for (;;) {
            int done;
            if ((rc = next_pem_block(bio, &b, why, &done)) != WEFT_OK) {
                goto out;
            }
            if (done) {
                break;
            }
            if (strcmp(b.name, "CERTIFICATE") == 0) {
                if (sk_X509_num(certs) >= max_certs) {
                    spiffe_why_set(why, SPIFFE_RULE_SVID_CHAIN_TOO_LONG, -1,
                                   "more than %zu certificates", max_certs);
                    rc = WEFT_ELIMIT;
                    goto out;
                }
                CBS der;
                X509 *x = NULL;
                CBS_init(&der, b.data, (size_t)b.len);
                size_t index = sk_X509_num(certs);
                if ((rc = parse_der_cert(&x, &der, index, why)) != WEFT_OK) {
                    goto out;
                }
                if (CBS_len(&der) != 0) {
                    X509_free(x);
                    spiffe_why_set(why, SPIFFE_RULE_SVID_DECODE, (int)index,
                                   "certificate %zu has trailing bytes in its PEM block", index);
                    rc = WEFT_EINVAL;
                    goto out;
                }
                if (!sk_X509_push(certs, x)) {
                    X509_free(x);
                    rc = WEFT_ECRYPTO;
                    goto out;
                }
            }
            pem_block_cleanup(&b);
        }
    } else {
        /* No PEM: DER certificates back to back, or nothing we can read. */
        CBS in;
        CBS_init(&in, data, len);
        if (data[0] != 0x30 /* DER SEQUENCE */) {
            spiffe_why_set(why, SPIFFE_RULE_SVID_DECODE, -1,
                           "input is neither PEM (no PEM blocks found) nor DER");
            rc = WEFT_EINVAL;
            goto out;
        }
        while (CBS_len(&in) > 0) {
            if (sk_X509_num(certs) >= max_certs) {
                spiffe_why_set(why, SPIFFE_RULE_SVID_CHAIN_TOO_LONG, -1,
                               "more than %zu certificates", max_certs);
                rc = WEFT_ELIMIT;
                goto out;
            }
            X509 *x = NULL;
            if ((rc = parse_der_cert(&x, &in, sk_X509_num(certs), why)) != WEFT_OK) {
                goto out;
            }
            if (!sk_X509_push(certs, x)) {
                X509_free(x);
                rc = WEFT_ECRYPTO;
                goto out;
            }
        }
    }
    if (sk_X509_num(certs) == 0 && !allow_empty) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_NO_CERT, -1, "no certificates found");
        rc = WEFT_EINVAL;
        goto out;
    }
    rc = WEFT_OK;
out:
    pem_block_cleanup(&b);
    BIO_free(bio);
    if (rc == WEFT_OK) {
        *out = certs;
    } else {
        sk_X509_pop_free(certs, X509_free);
    }
    return rc;
}

static int parse_pkcs8(EVP_PKEY **out, const uint8_t *der, size_t len, struct spiffe_why *why)
{
    CBS cbs;
    CBS_init(&cbs, der, len);
    EVP_PKEY *key = EVP_parse_private_key(&cbs);
    ERR_clear_error();
    if (key == NULL || CBS_len(&cbs) != 0) {
        EVP_PKEY_free(key);
        spiffe_why_set(why, SPIFFE_RULE_SVID_KEY, -1,
                       "private key is not a valid unencrypted PKCS#8 key (ASN.1 structure error)");
        return WEFT_EINVAL;
    }
    *out = key;
    return WEFT_OK;
}

int spiffe_key_decode(EVP_PKEY **out, const uint8_t *data, size_t len, struct spiffe_why *why)
{
    *out = NULL;
    spiffe_why_clear(why);
    if (len > SPIFFE_MAX_PEM_INPUT) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_KEY, -1, "key input is over %d bytes",
                       SPIFFE_MAX_PEM_INPUT);
        return WEFT_ELIMIT;
    }
    if (!looks_like_pem(data, len)) {
        if (len == 0 || data[0] != 0x30 /* DER SEQUENCE */) {
            spiffe_why_set(why, SPIFFE_RULE_SVID_KEY, -1,
                           "key input is neither PEM (no PEM blocks found) nor DER");
            return WEFT_EINVAL;
        }
        return parse_pkcs8(out, data, len, why);
    }
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    if (bio == NULL) {
        return WEFT_ECRYPTO;
    }
    int rc = WEFT_EINVAL;
    struct pem_block b;
    char other_key[32] = ""; /* the first key block of a type we do not take */
    for (;;) {
        int done;
        if ((rc = next_pem_block(bio, &b, why, &done)) != WEFT_OK) {
            if (why != NULL) {
                why->rule = SPIFFE_RULE_SVID_KEY;
            }
            break;
        }
        if (done) {
            if (other_key[0] != '\0') {
                spiffe_why_set(why, SPIFFE_RULE_SVID_KEY, -1,
                               "no PKCS#8 private key found, only a \"%s\" block; the key must "
                               "be unencrypted PKCS#8 (\"PRIVATE KEY\"): convert it with "
                               "`openssl pkcs8 -topk8 -nocrypt`",
                               other_key);
            } else {
                spiffe_why_set(why, SPIFFE_RULE_SVID_KEY, -1,
                               "no private key found (no PRIVATE KEY block)");
            }
            rc = WEFT_EINVAL;
            break;
        }
        int is_key = strcmp(b.name, "PRIVATE KEY") == 0;
        if (is_key) {
            rc = parse_pkcs8(out, b.data, (size_t)b.len, why);
        } else if (other_key[0] == '\0' && strstr(b.name, "PRIVATE KEY") != NULL) {
            snprintf(other_key, sizeof(other_key), "%s", b.name);
        }
        if (strstr(b.name, "PRIVATE KEY") != NULL) {
            OPENSSL_cleanse(b.data, (size_t)b.len);
        }
        pem_block_cleanup(&b);
        if (is_key) {
            break;
        }
    }
    BIO_free(bio);
    return rc;
}

static int copy_bio(char **out, size_t *out_len, BIO *bio)
{
    const uint8_t *contents;
    size_t n;
    if (!BIO_mem_contents(bio, &contents, &n)) {
        return WEFT_ECRYPTO;
    }
    *out = weft_xstrndup((const char *)contents, n);
    *out_len = n;
    return WEFT_OK;
}

int spiffe_certs_to_pem(char **out, size_t *out_len, const STACK_OF(X509) * certs)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int rc = WEFT_ECRYPTO;
    if (bio == NULL) {
        return rc;
    }
    for (size_t i = 0; i < sk_X509_num(certs); i++) {
        if (!PEM_write_bio_X509(bio, sk_X509_value(certs, i))) {
            goto out;
        }
    }
    rc = copy_bio(out, out_len, bio);
out:
    BIO_free(bio);
    return rc;
}

int spiffe_key_to_pem(char **out, size_t *out_len, const EVP_PKEY *key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int rc = WEFT_ECRYPTO;
    if (bio == NULL) {
        return rc;
    }
    if (PEM_write_bio_PKCS8PrivateKey(bio, (EVP_PKEY *)key, NULL, NULL, 0, NULL, NULL)) {
        rc = copy_bio(out, out_len, bio);
    }
    /* Wipe the key material left in the BIO before it is freed. */
    const uint8_t *contents;
    size_t n;
    if (BIO_mem_contents(bio, &contents, &n)) {
        OPENSSL_cleanse((void *)contents, n);
    }
    BIO_free(bio);
    return rc;
}

int spiffe_certs_to_der(uint8_t **out, size_t *out_len, const STACK_OF(X509) * certs)
{
    CBB cbb;
    if (!CBB_init(&cbb, 2048)) {
        return WEFT_ECRYPTO;
    }
    for (size_t i = 0; i < sk_X509_num(certs); i++) {
        uint8_t *der = NULL;
        int n = i2d_X509(sk_X509_value(certs, i), &der);
        if (n <= 0 || !CBB_add_bytes(&cbb, der, (size_t)n)) {
            OPENSSL_free(der);
            CBB_cleanup(&cbb);
            return WEFT_ECRYPTO;
        }
        OPENSSL_free(der);
    }
    uint8_t *buf;
    size_t n;
    if (!CBB_finish(&cbb, &buf, &n)) {
        CBB_cleanup(&cbb);
        return WEFT_ECRYPTO;
    }
    *out = weft_xmalloc(n);
    memcpy(*out, buf, n);
    *out_len = n;
    OPENSSL_free(buf);
    return WEFT_OK;
}
