/* lib/base/netaddr.c: see netaddr.h. */
#include "lib/base/netaddr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* parse_port reads a decimal port, 0 to 65535, that is the whole of |s|. */
static bool parse_port(const char *s, uint16_t *out)
{
    unsigned long v = 0;
    if (*s == '\0') {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9' || (v = v * 10 + (unsigned long)(*s - '0')) > 65535) {
            return false;
        }
    }
    *out = (uint16_t)v;
    return true;
}

int weft_sockaddr_parse(const char *s, bool allow_unix, union weft_sockaddr *out,
                        socklen_t *out_len, char *err, size_t err_len)
{
    memset(out, 0, sizeof(*out));
    if (allow_unix && strncmp(s, "unix:", 5) == 0) {
        const char *path = s + 5;
        size_t len = strlen(path);
        if (len == 0 || len >= sizeof(out->un.sun_path)) {
            snprintf(err, err_len, "a unix socket path is 1 to %zu bytes",
                     sizeof(out->un.sun_path) - 1);
            return WEFT_EINVAL;
        }
        out->un.sun_family = AF_UNIX;
        memcpy(out->un.sun_path, path, len + 1);
        *out_len = (socklen_t)sizeof(out->un);
        return WEFT_OK;
    }
    char host[INET6_ADDRSTRLEN];
    const char *port;
    bool v6 = s[0] == '[';
    if (v6) {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(host)) {
            goto bad;
        }
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        port = close + 2;
    } else {
        const char *colon = strchr(s, ':');
        if (colon == NULL || strchr(colon + 1, ':') != NULL ||
            (size_t)(colon - s) >= sizeof(host)) {
            goto bad;
        }
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
    }
    uint16_t p;
    if (!parse_port(port, &p)) {
        goto bad;
    }
    if (v6 && inet_pton(AF_INET6, host, &out->in6.sin6_addr) == 1) {
        out->in6.sin6_family = AF_INET6;
        out->in6.sin6_port = htons(p);
        *out_len = (socklen_t)sizeof(out->in6);
        return WEFT_OK;
    }
    if (!v6 && inet_pton(AF_INET, host, &out->in4.sin_addr) == 1) {
        out->in4.sin_family = AF_INET;
        out->in4.sin_port = htons(p);
        *out_len = (socklen_t)sizeof(out->in4);
        return WEFT_OK;
    }
bad:
    snprintf(err, err_len, "want IPV4:PORT%s [IPV6]:PORT%s, numeric, port 0 to 65535",
             allow_unix ? "," : " or", allow_unix ? " or unix:PATH" : "");
    return WEFT_EINVAL;
}

int weft_addr_canonical(char out[WEFT_ADDR_MAX], const char *address, struct weft_ip *ip)
{
    char host[WEFT_ADDR_MAX];
    const char *port = NULL;
    size_t len = strlen(address);
    if (len == 0 || len >= WEFT_ADDR_MAX) {
        return WEFT_EINVAL;
    }
    if (address[0] == '[') {
        const char *close = strchr(address, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':')) {
            return WEFT_EINVAL;
        }
        snprintf(host, sizeof(host), "%.*s", (int)(close - address - 1), address + 1);
        port = close[1] == ':' ? close + 2 : NULL;
    } else if (strchr(address, ':') != strrchr(address, ':')) {
        snprintf(host, sizeof(host), "%s", address); /* a bare IPv6 address */
    } else {
        const char *colon = strchr(address, ':');
        snprintf(host, sizeof(host), "%.*s", (int)(colon ? (size_t)(colon - address) : len),
                 address);
        port = colon ? colon + 1 : NULL;
    }
    unsigned char bin[16];
    char text[INET6_ADDRSTRLEN];
    bool v6 = inet_pton(AF_INET6, host, bin) == 1;
    if (!v6 && inet_pton(AF_INET, host, bin) != 1) {
        return WEFT_EINVAL;
    }
    static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (v6 && memcmp(bin, v4_mapped, sizeof(v4_mapped)) == 0) {
        /* ::ffff:a.b.c.d is a.b.c.d: a dual-stack socket reports IPv4 peers that way */
        memmove(bin, bin + 12, 4);
        v6 = false;
    }
    if (ip != NULL) {
        ip->v6 = v6;
        memset(ip->bytes, 0, sizeof(ip->bytes));
        memcpy(ip->bytes, bin, v6 ? 16 : 4);
    }
    inet_ntop(v6 ? AF_INET6 : AF_INET, bin, text, sizeof(text));
    if (port == NULL) {
        snprintf(out, WEFT_ADDR_MAX, "%s", text);
        return WEFT_OK;
    }
    unsigned p = 0;
    size_t digits = strlen(port);
    if (digits == 0 || digits > 5 || port[0] == '0') {
        return WEFT_EINVAL;
    }
    for (size_t i = 0; i < digits; i++) {
        if (port[i] < '0' || port[i] > '9') {
            return WEFT_EINVAL;
        }
        p = p * 10 + (unsigned)(port[i] - '0');
    }
    if (p < 1 || p > 65535) {
        return WEFT_EINVAL;
    }
    snprintf(out, WEFT_ADDR_MAX, v6 ? "[%s]:%u" : "%s:%u", text, p);
    return WEFT_OK;
}

int weft_cidr_parse(const char *s, struct weft_cidr *out)
{
    memset(out, 0, sizeof(*out));
    const char *slash = strchr(s, '/');
    char host[WEFT_ADDR_MAX], canon[WEFT_ADDR_MAX];
    if (slash == NULL || (size_t)(slash - s) >= sizeof(host) || slash[1] == '\0' ||
        strspn(slash + 1, "0123456789") != strlen(slash + 1) || strlen(slash + 1) > 3) {
        return WEFT_EINVAL;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(slash - s), s);
    unsigned bits = (unsigned)atoi(slash + 1);
    /* a bare address, never one with a port: IPv4 has no ':', IPv6 is bare */
    if (strchr(host, '[') != NULL || weft_addr_canonical(canon, host, &out->ip) != WEFT_OK ||
        (!out->ip.v6 && strchr(host, ':') != NULL) || bits > (out->ip.v6 ? 128u : 32u)) {
        return WEFT_EINVAL;
    }
    out->bits = bits;
    for (unsigned i = bits; i < (out->ip.v6 ? 128u : 32u); i++) {
        if (out->ip.bytes[i / 8] & (0x80 >> (i % 8))) {
            return WEFT_EINVAL; /* host bits set: say 10.0.0.0/8, not 10.1.2.3/8 */
        }
    }
    return WEFT_OK;
}

bool weft_cidr_contains(const struct weft_cidr *c, const struct weft_ip *ip)
{
    if (c->ip.v6 != ip->v6) {
        return false;
    }
    for (unsigned i = 0; i < c->bits; i++) {
        unsigned char m = (unsigned char)(0x80 >> (i % 8));
        if ((c->ip.bytes[i / 8] & m) != (ip->bytes[i / 8] & m)) {
            return false;
        }
    }
    return true;
}
