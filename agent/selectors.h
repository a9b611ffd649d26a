/* agent/selectors.h: what the agent observed about a caller, as selectors ("unix:uid:1001",
 * "k8s:ns:shop"), and the rule that gives a workload its entries: every entry whose selectors
 * are all among the observed ones (issue 5). A selector is printable ASCII without spaces, as
 * weft-ca accepts them in entries (ca/core.c); an observation that would not fit that is left
 * out, never truncated into something else. */
#ifndef WEFT_AGENT_SELECTORS_H
#define WEFT_AGENT_SELECTORS_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/base/err.h"

#define AGENT_SELECTOR_MAX 256 /* bytes of one selector: CA_SELECTOR_MAX of ca/store.h */
#define AGENT_MAX_SELECTORS 128

struct agent_selectors {
    size_t num;
    char sel[AGENT_MAX_SELECTORS][AGENT_SELECTOR_MAX + 1];
};

/* agent_selectors_add appends "TYPE:KEY:VALUE" (printf-style). WEFT_ELIMIT when the set is full
 * or the selector is too long, WEFT_EINVAL when it holds a byte outside 0x21..0x7e: the selector
 * is then not added. A selector already there is not added twice. */
WEFT_MUST_USE int agent_selectors_add(struct agent_selectors *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* agent_selectors_has reports whether |sel| was observed. */
bool agent_selectors_has(const struct agent_selectors *s, const char *sel);

/* agent_selectors_match reports whether every one of |want| (|num| selectors, as an entry
 * lists them) was observed. An entry with no selectors matches nothing. */
bool agent_selectors_match(const struct agent_selectors *observed, const char *const *want,
                           size_t num);

#endif
