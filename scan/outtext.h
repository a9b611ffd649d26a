/* scan/outtext.h: strings a peer controls, made safe for the report and the alerts (issue 9).
 * Private to scan/report and scan/alert: subjects, SPIFFE IDs and error texts come from the
 * endpoint scanned, so they may hold invalid UTF-8 or control characters. */
#ifndef WEFT_SCAN_OUTTEXT_H
#define WEFT_SCAN_OUTTEXT_H

#include <stddef.h>

#include <jansson.h>

/* scan_text_utf8 copies |in| into |out| (|out_len| > 0, always NUL-terminated), replacing each
 * byte that does not start a well-formed UTF-8 sequence (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF) with '?'. A copy that does not fit is cut at a character
 * boundary. */
void scan_text_utf8(char *out, size_t out_len, const char *in);

/* scan_text_printable is scan_text_utf8 that also replaces control characters (C0, DEL and the
 * C1 range U+0080..U+009F) with '?', for a terminal. */
void scan_text_printable(char *out, size_t out_len, const char *in);

/* scan_text_json returns a new JSON string holding scan_text_utf8 of |in| (at most 1023 bytes
 * of it; our strings are at most 255). Never NULL. */
json_t *scan_text_json(const char *in);

#endif
