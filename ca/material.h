/* ca/material.h: a trust domain's CA files in one directory, as `weftctl ca init` writes them
 * and weft-ca reads them (weft-ca --self-signed writes them itself on a first start):
 *
 *   root.pem, root.key                  the root; keep root.key offline in production
 *   intermediate.pem, intermediate.key  the signing CA, signed by the root
 *   bundle.pem, bundle.json             the trust bundle (the roots), for agents to bootstrap
 *
 * weft-ca keeps root keys in two slots, root.key and root-2.key (an empty file: no key, the
 * root is offline), and rewrites bundle.pem and bundle.json when a root rotation changes the
 * bundle. With the signing root's key in its slot it mints its own intermediates, whose keys
 * stay in its signer's memory; intermediate.pem and .key are then unused.
 *
 * Keys are PKCS#8 PEM written mode 0600, certificates 0644; nothing existing is overwritten. */
#ifndef WEFT_CA_MATERIAL_H
#define WEFT_CA_MATERIAL_H

#include <stddef.h>
#include <stdint.h>

#include "lib/base/err.h"
#include "lib/spiffe/id.h"
#include "lib/spiffe/x509svid.h"

#define CA_FILE_ROOT_CERT "root.pem"
#define CA_FILE_ROOT_KEY "root.key"
#define CA_FILE_ROOT_KEY_2 "root-2.key" /* weft-ca's second root key slot (root rotation) */
#define CA_FILE_INT_CERT "intermediate.pem"
#define CA_FILE_INT_KEY "intermediate.key"
#define CA_FILE_BUNDLE_PEM "bundle.pem"
#define CA_FILE_BUNDLE_JSON "bundle.json"

struct ca_material_params {
    const struct spiffe_id *td;
    int64_t not_before;
    int64_t root_ttl_s;
    int64_t intermediate_ttl_s;
    enum spiffe_key_type key_type;
};

/* ca_material_init mints a root and a first intermediate and writes the files above into |dir|
 * (created 0700 if missing). Refuses, writing nothing more, when any of them exists
 * (WEFT_EINVAL) or an intermediate would outlive the root; |err| says which and where. */
WEFT_MUST_USE int ca_material_init(const char *dir, const struct ca_material_params *p, char *err,
                                   size_t err_len);

/* ca_material_exists reports whether |dir| holds an intermediate certificate. */
int ca_material_exists(const char *dir);

#endif
