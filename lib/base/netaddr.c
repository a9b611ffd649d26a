/* lib/base/netaddr.c: see netaddr.h. */
#include "lib/base/netaddr.h"

#include <arpa/inet.h>
#include <stdio.h>
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
