/* policy/internal.h: what the files of policy/ share and nothing outside may use. */
#ifndef WEFT_POLICY_INTERNAL_H
#define WEFT_POLICY_INTERNAL_H

#include <stdarg.h>

#include "policy/policy.h"

/* policy_set_add_error records "FILE:LINE:COLUMN: PATH: message" (path may be NULL). */
void policy_set_add_error(struct policy_set *set, const struct policy_loc *loc, const char *path,
                          const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Name rules of Kubernetes (DNS-1123), used for namespaces, names and service accounts. */
bool policy_is_dns_label(const char *s);     /* [a-z0-9]([-a-z0-9]*[a-z0-9])?, <= 63 */
bool policy_is_dns_subdomain(const char *s); /* labels joined by '.', <= 253 */

/* policy_selector_missing_label returns the index of the first matchLabels entry of |sel| that
 * |w| lacks, or sel->num_labels when it has them all. */
size_t policy_selector_missing_label(const struct policy_selector *sel,
                                     const struct policy_workload *w);

/* policy_source_matches / policy_target_matches: one `from` / `to` entry. */
bool policy_source_matches(const struct policy_source *src, const char *peer_id);
bool policy_target_matches(const struct policy_target *dst, uint16_t port);

/* policy_peer_namespace finds the <ns> of spiffe://<td>/ns/<ns>/sa/<sa>; returns its length and
 * sets |*out| into |peer_id|, or returns 0 when |peer_id| has another shape. */
size_t policy_peer_namespace(const char *peer_id, const char **out);

/* policy_principal_matches: one principals entry against an authenticated peer. */
bool policy_principal_matches(const struct policy_principal *p, const char *peer_id,
                              size_t peer_len);

#endif
