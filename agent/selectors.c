/* agent/selectors.c: see selectors.h. */
#include "agent/selectors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int agent_selectors_add(struct agent_selectors *s, const char *fmt, ...)
{
    if (s->num >= AGENT_MAX_SELECTORS) {
        return WEFT_ELIMIT;
    }
    char *out = s->sel[s->num];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, AGENT_SELECTOR_MAX + 1, fmt, ap);
    va_end(ap);
    if (n < 0 || n > AGENT_SELECTOR_MAX) {
        out[0] = '\0';
        return WEFT_ELIMIT;
    }
    for (const char *p = out; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) {
            out[0] = '\0';
            return WEFT_EINVAL;
        }
    }
    if (agent_selectors_has(s, out)) {
        out[0] = '\0';
        return WEFT_OK;
    }
    s->num++;
    return WEFT_OK;
}

bool agent_selectors_has(const struct agent_selectors *s, const char *sel)
{
    for (size_t i = 0; i < s->num; i++) {
        if (strcmp(s->sel[i], sel) == 0) {
            return true;
        }
    }
    return false;
}

bool agent_selectors_match(const struct agent_selectors *observed, const char *const *want,
                           size_t num)
{
    if (num == 0) {
        return false;
    }
    for (size_t i = 0; i < num; i++) {
        if (!agent_selectors_has(observed, want[i])) {
            return false;
        }
    }
    return true;
}
