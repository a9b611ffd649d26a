#include "scan/outtext.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static size_t utf8_seq_len(const unsigned char *s, uint32_t *out_cp);
static void copy_clean(char *out, size_t out_len, const char *in, bool printable);

/* utf8_seq_len returns the length of the well-formed UTF-8 sequence at |s| (RFC 3629 §4, the
 * table of well-formed byte sequences), or 0 when there is none; |*out_cp| is its code point. */
static size_t utf8_seq_len(const unsigned char *s, uint32_t *out_cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *out_cp = c;
        return 1;
    }
    size_t n;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) { /* also stops at the NUL */
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    *out_cp = cp;
    return n;
}

static void copy_clean(char *out, size_t out_len, const char *in, bool printable)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0;
    while (*s != '\0') {
        uint32_t cp;
        size_t n = utf8_seq_len(s, &cp);
        bool control = cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f);
        if (n == 0 || (printable && control)) {
            if (o + 1 >= out_len) {
                break;
            }
            out[o++] = '?';
            s += n == 0 ? 1 : n;
            continue;
        }
        if (o + n >= out_len) {
            break;
        }
        memcpy(out + o, s, n);
        o += n;
        s += n;
    }
    out[o] = '\0';
}

void scan_text_utf8(char *out, size_t out_len, const char *in)
{
    copy_clean(out, out_len, in, false);
}

void scan_text_printable(char *out, size_t out_len, const char *in)
{
    copy_clean(out, out_len, in, true);
}

json_t *scan_text_json(const char *in)
{
    char buf[1024];
    scan_text_utf8(buf, sizeof(buf), in);
    json_t *j = json_string(buf);
    if (j == NULL) {
        abort(); /* valid UTF-8 without NUL: only out of memory gets here (STYLE.md decision 1) */
    }
    return j;
}
