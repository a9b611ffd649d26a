/* Fuzzes the alert state file reader of weftctl scan (scan/alert.h). A state that parses holds
 * at most SCAN_ALERT_MAX_STATE alerts, sorted and unique by key, and must write back to a file
 * that parses to the same alerts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scan/alert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct scan_alert_state s, s2;
    char err[256];
    if (scan_alert_state_parse(&s, data, size, err, sizeof(err)) == WEFT_OK) {
        if (s.num > SCAN_ALERT_MAX_STATE) {
            abort();
        }
        for (size_t i = 0; i < s.num; i++) {
            const struct scan_alert_entry *e = &s.entries[i];
            if (e->endpoint[0] == '\0' || e->code[0] == '\0' ||
                (e->severity != SCAN_SEV_PAGE && e->severity != SCAN_SEV_CRITICAL)) {
                abort();
            }
        }
        char *text;
        size_t len;
        scan_alert_state_to_json(&text, &len, &s);
        if (scan_alert_state_parse(&s2, (const uint8_t *)text, len, err, sizeof(err)) != WEFT_OK ||
            s2.num != s.num ||
            (s.num > 0 && memcmp(s.entries, s2.entries, s.num * sizeof(*s.entries)) != 0)) {
            abort(); /* whatever we accept, we write back the same */
        }
        scan_alert_state_cleanup(&s2);
        free(text);
    } else if (s.num != 0 && s.entries == NULL) {
        abort();
    }
    scan_alert_state_cleanup(&s);
    return 0;
}
