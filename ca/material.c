/* ca/material.c: see material.h. */
#include "ca/material.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/file.h"
#include "lib/spiffe/bundle.h"

static const char *const all_files[] = {
    CA_FILE_ROOT_CERT, CA_FILE_ROOT_KEY,   CA_FILE_INT_CERT,
    CA_FILE_INT_KEY,   CA_FILE_BUNDLE_PEM, CA_FILE_BUNDLE_JSON,
};

static int write_file(const char *dir, const char *name, const void *data, size_t len, mode_t mode,
                      char *err, size_t err_len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (weft_file_write_atomic(path, data, len, mode) != WEFT_OK) {
        snprintf(err, err_len, "%.300s: %s", path, strerror(errno));
        return WEFT_EIO;
    }
    return WEFT_OK;
}

static int write_cert(const char *dir, const char *name, X509 *cert, char *err, size_t err_len)
{
    STACK_OF(X509) *one = sk_X509_new_null();
    char *pem = NULL;
    size_t len;
    int rc = WEFT_ECRYPTO;
    if (one != NULL && sk_X509_push(one, cert) && spiffe_certs_to_pem(&pem, &len, one) == WEFT_OK) {
        rc = write_file(dir, name, pem, len, 0644, err, err_len);
    } else {
        snprintf(err, err_len, "cannot encode %s", name);
    }
    free(pem);
    sk_X509_free(one);
    return rc;
}

static int write_key(const char *dir, const char *name, EVP_PKEY *key, char *err, size_t err_len)
{
    char *pem = NULL;
    size_t len = 0;
    int rc = WEFT_ECRYPTO;
    if (spiffe_key_to_pem(&pem, &len, key) == WEFT_OK) {
        rc = write_file(dir, name, pem, len, 0600, err, err_len);
        memset(pem, 0, len);
    } else {
        snprintf(err, err_len, "cannot encode %s", name);
    }
    free(pem);
    return rc;
}

int ca_material_exists(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, CA_FILE_INT_CERT);
    return access(path, F_OK) == 0;
}

int ca_material_init(const char *dir, const struct ca_material_params *p, char *err, size_t err_len)
{
    if (p->intermediate_ttl_s > p->root_ttl_s) {
        snprintf(err, err_len, "the intermediate cannot outlive the root");
        return WEFT_EINVAL;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, err_len, "%.300s: %s", dir, strerror(errno));
        return WEFT_EIO;
    }
    for (size_t i = 0; i < nitems(all_files); i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, all_files[i]);
        if (access(path, F_OK) == 0) {
            snprintf(err, err_len, "%.300s exists: refusing to overwrite CA material", path);
            return WEFT_EINVAL;
        }
    }
    struct spiffe_mint_params rp = {.not_before = p->not_before, .ttl_s = p->root_ttl_s};
    struct spiffe_mint_params ip = {.not_before = p->not_before, .ttl_s = p->intermediate_ttl_s};
    EVP_PKEY *root_key = spiffe_key_generate(p->key_type);
    EVP_PKEY *int_key = spiffe_key_generate(p->key_type);
    X509 *root = NULL, *inter = NULL;
    struct spiffe_bundle *bundle = NULL;
    struct spiffe_why why;
    spiffe_why_clear(&why);
    char *json = NULL;
    size_t json_len;
    int rc = WEFT_ECRYPTO;
    if (root_key == NULL || int_key == NULL ||
        spiffe_mint_root(&root, root_key, p->td, &rp, &why) != WEFT_OK ||
        spiffe_mint_signing_ca(&inter, root, root_key, int_key, p->td, &ip, &why) != WEFT_OK) {
        snprintf(err, err_len, "minting the CA: %s", why.msg);
        goto out;
    }
    bundle = spiffe_bundle_new(p->td);
    bundle->has_sequence = true;
    bundle->sequence = 1;
    if (spiffe_bundle_add_x509(bundle, root) != WEFT_OK ||
        spiffe_bundle_to_json(&json, &json_len, bundle) != WEFT_OK) {
        snprintf(err, err_len, "cannot encode the bundle");
        goto out;
    }
    if ((rc = write_key(dir, CA_FILE_ROOT_KEY, root_key, err, err_len)) != WEFT_OK ||
        (rc = write_cert(dir, CA_FILE_ROOT_CERT, root, err, err_len)) != WEFT_OK ||
        (rc = write_key(dir, CA_FILE_INT_KEY, int_key, err, err_len)) != WEFT_OK ||
        (rc = write_cert(dir, CA_FILE_INT_CERT, inter, err, err_len)) != WEFT_OK ||
        (rc = write_cert(dir, CA_FILE_BUNDLE_PEM, root, err, err_len)) != WEFT_OK ||
        (rc = write_file(dir, CA_FILE_BUNDLE_JSON, json, json_len, 0644, err, err_len)) !=
            WEFT_OK) {
        goto out;
    }
    rc = WEFT_OK;
out:
    free(json);
    spiffe_bundle_free(bundle);
    X509_free(root);
    X509_free(inter);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(int_key);
    return rc;
}
