/* lib/transport/svidtls.c: see svidtls.h. */
#include "lib/transport/svidtls.h"

#include "lib/spiffe/x509svid.h"

int svidtls_peer_chain(STACK_OF(X509) * *out, const SSL *ssl)
{
    *out = NULL;
    const STACK_OF(CRYPTO_BUFFER) *bufs = SSL_get0_peer_certificates(ssl);
    size_t n = bufs != NULL ? sk_CRYPTO_BUFFER_num(bufs) : 0;
    ENSURE(n > 0, WEFT_ENOTFOUND);
    ENSURE(n <= SPIFFE_MAX_CHAIN, WEFT_ELIMIT);
    STACK_OF(X509) *chain = sk_X509_new_null();
    ENSURE(chain != NULL, WEFT_ECRYPTO);
    for (size_t i = 0; i < n; i++) {
        X509 *cert = X509_parse_from_buffer(sk_CRYPTO_BUFFER_value(bufs, i));
        if (cert == NULL || !sk_X509_push(chain, cert)) {
            X509_free(cert);
            sk_X509_pop_free(chain, X509_free);
            return WEFT_EINVAL;
        }
    }
    *out = chain;
    return WEFT_OK;
}

uint8_t svidtls_alert_for(enum spiffe_rule rule)
{
    switch (rule) {
    case SPIFFE_RULE_SVID_NO_BUNDLE:
    case SPIFFE_RULE_SVID_CHAIN:
        return SSL_AD_UNKNOWN_CA;
    case SPIFFE_RULE_SVID_EXPIRED:
    case SPIFFE_RULE_SVID_NOT_YET_VALID:
        return SSL_AD_CERTIFICATE_EXPIRED;
    default:
        return SSL_AD_BAD_CERTIFICATE;
    }
}

bool svidtls_is_certificate_alert(int alert)
{
    switch (alert) {
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_ACCESS_DENIED:
    case SSL_AD_CERTIFICATE_REQUIRED:
        return true;
    default:
        return false;
    }
}
