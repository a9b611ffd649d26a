/* test/integration/ca_kube_test.c: a real weft-ca with --policy-source kubernetes, against the
 * fake API server of test/testlib/fake_kube.h on loopback: the policy it serves follows the
 * API's objects, an invalid object is reported and left out, and the token file is read as the
 * user weft-ca runs as. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "lib/base/file.h"
#include "proto/ca.pb-c.h"
#include "test/testlib/ca_proc.h"
#include "test/testlib/fake_kube.h"

static struct ca_proc ca;
static struct fake_kube *fk;
static char token[128], api[64];

static void setup(void)
{
    grpc_init();
    cr_assert_eq(fake_kube_start(&fk), WEFT_OK);
    cr_assert_eq(ca_proc_init(&ca), WEFT_OK);
    cr_assert_eq(chmod(ca.dir, 0755), 0); /* weft-ca reads the token as nobody */
    snprintf(token, sizeof(token), "%s/token", ca.dir);
    cr_assert_eq(weft_file_write_atomic(token, "tok-ca\n", 7, 0644), WEFT_OK);
    snprintf(api, sizeof(api), "http://127.0.0.1:%u", fake_kube_port(fk));
    ca.extra[0] = "--policy-source";
    ca.extra[1] = "kubernetes";
    ca.extra[2] = "--kube-api";
    ca.extra[3] = api;
    ca.extra[4] = "--kube-token-file";
    ca.extra[5] = token;
}

static void teardown(void)
{
    ca_proc_cleanup(&ca); /* the CA first: its watchers are the fake's clients */
    fake_kube_stop(fk);
    grpc_shutdown();
}

TestSuite(ca_kube, .init = setup, .fini = teardown, .timeout = 45);

static uint64_t policy_status(char *out_err, size_t out_err_len)
{
    Weft__Ca__V1__StatusRequest req = WEFT__CA__V1__STATUS_REQUEST__INIT;
    Weft__Ca__V1__StatusResponse *sr;
    struct rpc_status st;
    cr_assert_eq(ca_proc_admin(&ca, "Status", &req.base, &weft__ca__v1__status_response__descriptor,
                               (ProtobufCMessage **)&sr, &st),
                 WEFT_OK, "%s", st.details);
    uint64_t v = sr->policy_version;
    snprintf(out_err, out_err_len, "%s", sr->policy_error != NULL ? sr->policy_error : "");
    protobuf_c_message_free_unpacked(&sr->base, NULL);
    return v;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t wait_version(uint64_t want, char *err, size_t err_len)
{
    uint64_t v = 0;
    for (double until = mono_now() + 10;
         (v = policy_status(err, err_len)) != want && mono_now() < until;) {
        usleep(50 * 1000);
    }
    return v;
}

static void assert_log_has(const char *want)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/ca.log", ca.dir);
    uint8_t *data = NULL;
    size_t len = 0;
    cr_assert_eq(weft_file_read(&data, &len, path, 16 << 20), WEFT_OK);
    bool found = strstr((const char *)data, want) != NULL;
    free(data);
    cr_assert(found, "%s has no \"%s\"", path, want);
}

Test(ca_kube, the_policy_served_follows_the_api)
{
    char *objs[2] = {fake_kube_authz("allow-web", "ALLOW", "10", 0),
                     fake_kube_authz("bad-one", "MAYBE", "10", 0)};
    fake_kube_set_items(fk, "10", objs, 2);
    free(objs[0]);
    free(objs[1]);
    cr_assert_eq(ca_proc_start(&ca, "1h"), WEFT_OK, "weft-ca did not start; see %s/ca.log", ca.dir);
    char err[1024];
    cr_assert_eq(wait_version(1, err, sizeof(err)), 1, "%s", err);
    cr_assert_not_null(strstr(err, "1 object refused; the first: AuthorizationPolicy shop/bad-one "
                                   "(resourceVersion 10): "
                                   "k8s/authorizationpolicies/shop/bad-one.json:"),
                       "%s", err);
    struct fake_kube_seen s;
    fake_kube_seen(fk, &s);
    cr_assert_str_eq(s.last_auth, "Authorization: Bearer tok-ca");

    char *line = fake_kube_event("MODIFIED", "bad-one", "DENY", "11");
    fake_kube_push(fk, line);
    free(line);
    cr_assert_eq(wait_version(2, err, sizeof(err)), 2, "%s", err);
    cr_assert_str_eq(err, "", "nothing is refused any more");
    assert_log_has("msg=\"policy change accepted\" source=kubernetes version=2 objects=2 "
                   "authorization_policies=2");
    assert_log_has("msg=\"kubernetes policy object refused\" kind=AuthorizationPolicy "
                   "object=shop/bad-one resource_version=10");
}

Test(ca_kube, plain_http_off_loopback_stops_the_start)
{
    ca.extra[3] = "http://192.0.2.1:8080";
    cr_assert_eq(ca_proc_start(&ca, "1h"), WEFT_EIO, "weft-ca started");
    assert_log_has("weft-ca: --policy-source kubernetes: the Kubernetes API URL must be https://");
}
