/* test/testlib/fake_kube.h: a fake Kubernetes API server on loopback (plain HTTP/1.1, one
 * request per connection) for weft's policy resources (reference/kubernetes.md §5.1). It serves
 * LIST of /apis/security.weft.dev/v1alpha1/<plural> with limit/continue pagination, and WATCH
 * as a chunked stream: for authorizationpolicies, the lines the test pushes, in order (each
 * split across two chunks); for the other kinds, an open stream with nothing in it. It records
 * what it was asked. Threads of its own; everything is joined by fake_kube_stop. */
#ifndef WEFT_TEST_TESTLIB_FAKE_KUBE_H
#define WEFT_TEST_TESTLIB_FAKE_KUBE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "lib/base/err.h"

#define FAKE_KUBE_DROP "!DROP" /* pushed: closes the watch in the middle of an event */
#define FAKE_KUBE_END "!END"   /* pushed: ends the watch response properly */

struct fake_kube;

/* fake_kube_start listens on 127.0.0.1 (a free port); its lists are empty at resourceVersion
 * "10". */
WEFT_MUST_USE int fake_kube_start(struct fake_kube **out);

/* fake_kube_start_tls is fake_kube_start over HTTPS (BoringSSL), presenting |cert| (whose key
 * is |key|; both are referenced, not taken). It ignores SIGPIPE in the process. */
WEFT_MUST_USE int fake_kube_start_tls(struct fake_kube **out, X509 *cert, EVP_PKEY *key);
uint16_t fake_kube_port(const struct fake_kube *k);
void fake_kube_stop(struct fake_kube *k);

/* fake_kube_set_items makes the LIST of authorizationpolicies return |objects| (JSON) at
 * resourceVersion |rv| (at most 16). */
void fake_kube_set_items(struct fake_kube *k, const char *rv, char *const *objects, size_t num);

/* fake_kube_push queues a line for the authorizationpolicies watch (or FAKE_KUBE_DROP/END). */
void fake_kube_push(struct fake_kube *k, const char *line);

/* fake_kube_expire_next_watch answers the next authorizationpolicies watch with HTTP 410. */
void fake_kube_expire_next_watch(struct fake_kube *k);

/* struct fake_kube_seen: what was asked about authorizationpolicies, and the last
 * Authorization header of any request. */
struct fake_kube_seen {
    int list_requests, continued_lists, watch_requests;
    char last_watch_rv[64];
    char last_auth[256];
};

void fake_kube_seen(struct fake_kube *k, struct fake_kube_seen *out);

/* fake_kube_authz returns (malloc'd) an AuthorizationPolicy in namespace shop with one rule
 * that matches any peer, in the shape of a LIST item (no apiVersion or kind), or with them
 * when |typed|. */
char *fake_kube_authz(const char *name, const char *action, const char *rv, int typed);

/* fake_kube_event returns (malloc'd) a watch line of |type| for fake_kube_authz's object. */
char *fake_kube_event(const char *type, const char *name, const char *action, const char *rv);

#endif
