/* k8s/inject_test.c: the injection contract (k8s/inject.h), checked on real-shaped manifests
 * under k8s/testdata/inject/ and their golden outputs. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s/inject.h"
#include "k8s/jsonpatch.h"
#include "k8s/yamljson.h"
#include "lib/base/file.h"

#define DATA "k8s/testdata/inject/"

TestSuite(inject, .timeout = 30);

/* docs_load reads a YAML file of the test data, without its empty documents. */
static json_t *docs_load(const char *name)
{
    char path[256];
    uint8_t *data;
    size_t len;
    char err[256];
    json_t *docs, *kept = json_array();
    snprintf(path, sizeof(path), DATA "%s", name);
    cr_assert_eq(weft_file_read(&data, &len, path, K8S_YAML_MAX_INPUT), WEFT_OK, "%s", path);
    cr_assert_eq(k8s_yaml_parse(&docs, data, len, err, sizeof(err)), WEFT_OK, "%s: %s", path, err);
    free(data);
    size_t i;
    json_t *d;
    json_array_foreach(docs, i, d)
    {
        if (!json_is_null(d)) {
            json_array_append(kept, d);
        }
    }
    json_decref(docs);
    return kept;
}

static json_t *yaml(const char *s)
{
    json_t *docs;
    char err[256];
    cr_assert_eq(k8s_yaml_parse(&docs, (const uint8_t *)s, strlen(s), err, sizeof(err)), WEFT_OK,
                 "%s", err);
    json_t *d = json_incref(json_array_get(docs, 0));
    json_decref(docs);
    return d;
}

static struct k8s_inject_opts opts_with(bool native)
{
    struct k8s_inject_opts o;
    k8s_inject_opts_init(&o);
    o.native_sidecar = native;
    return o;
}

/* check_golden: the patch of each document of |in|, applied to it, gives the same document of
 * |golden|; and |golden| itself is left alone (injecting twice is injecting once). */
static void check_golden(const char *in, const char *golden, bool native, size_t want_injected)
{
    json_t *docs = docs_load(in), *want = docs_load(golden);
    struct k8s_inject_opts o = opts_with(native);
    size_t injected = 0;
    cr_assert_eq(json_array_size(docs), json_array_size(want), "%s vs %s", in, golden);
    for (size_t i = 0; i < json_array_size(docs); i++) {
        json_t *doc = json_incref(json_array_get(docs, i)), *patch;
        const char *skipped;
        char err[512] = "";
        cr_assert_eq(k8s_inject_patch(&patch, &skipped, doc, &o, err, sizeof(err)), WEFT_OK,
                     "%s #%zu: %s", in, i, err);
        if (patch != NULL) {
            cr_assert_null(skipped);
            cr_assert_eq(k8s_jsonpatch_apply(&doc, patch, err, sizeof(err)), WEFT_OK, "%s #%zu: %s",
                         in, i, err);
            injected++;
            json_decref(patch);
        }
        char *got = json_dumps(doc, JSON_INDENT(1));
        cr_expect(json_equal(doc, json_array_get(want, i)), "%s #%zu differs from %s:\n%s", in, i,
                  golden, got);
        free(got);
        /* again: already injected, nothing to do */
        cr_assert_eq(k8s_inject_patch(&patch, &skipped, doc, &o, err, sizeof(err)), WEFT_OK);
        cr_expect_null(patch, "%s #%zu injected twice", in, i);
        json_decref(doc);
    }
    cr_expect_eq(injected, want_injected, "%s: %zu injected", in, injected);
    json_decref(docs);
    json_decref(want);
}

Test(inject, deployment_native)
{
    check_golden("deployment.yaml", "deployment.golden.yaml", true, 1);
}
Test(inject, deployment_classic)
{
    check_golden("deployment.yaml", "deployment.classic.golden.yaml", false, 1);
}
Test(inject, pod) { check_golden("pod.yaml", "pod.golden.yaml", true, 1); }
Test(inject, multi_document_passes_others_through)
{
    check_golden("multi.yaml", "multi.golden.yaml", true, 1);
    json_t *in = docs_load("multi.yaml"), *out = docs_load("multi.golden.yaml");
    cr_expect(json_equal(json_array_get(in, 0), json_array_get(out, 0)), "Service changed");
    cr_expect(json_equal(json_array_get(in, 1), json_array_get(out, 1)), "ConfigMap changed");
    json_decref(in);
    json_decref(out);
}
Test(inject, jobs_and_other_workloads) { check_golden("jobs.yaml", "jobs.golden.yaml", true, 4); }
Test(inject, jobs_classic) { check_golden("jobs.yaml", "jobs.classic.golden.yaml", false, 4); }
Test(inject, untouched) { check_golden("untouched.yaml", "untouched.golden.yaml", true, 0); }

Test(inject, skip_reasons)
{
    static const char *const want[] = {"hostNetwork",
                                       "namespace kube-system",
                                       "namespace weft-system",
                                       "weft.dev/inject: disabled",
                                       "weft.dev/inject: disabled",
                                       "not a workload",
                                       "not a workload"};
    json_t *docs = docs_load("untouched.yaml");
    struct k8s_inject_opts o = opts_with(true);
    cr_assert_eq(json_array_size(docs), 7);
    for (size_t i = 0; i < 7; i++) {
        json_t *patch;
        const char *skipped;
        char err[256];
        cr_assert_eq(
            k8s_inject_patch(&patch, &skipped, json_array_get(docs, i), &o, err, sizeof(err)),
            WEFT_OK);
        cr_assert_null(patch);
        cr_expect_str_eq(skipped, want[i], "#%zu", i);
    }
    json_decref(docs);
}

/* the contract other parts build on, read from the injected Deployment */
Test(inject, what_is_injected)
{
    json_t *docs = docs_load("deployment.yaml");
    json_t *d = json_incref(json_array_get(docs, 0));
    json_decref(docs);
    struct k8s_inject_opts o = opts_with(true);
    const char *skipped;
    char err[256];
    cr_assert_eq(k8s_inject_object(&d, &skipped, &o, err, sizeof(err)), WEFT_OK, "%s", err);
    json_t *spec = json_object_get(json_object_get(json_object_get(d, "spec"), "template"), "spec");
    json_t *inits = json_object_get(spec, "initContainers");
    cr_assert_eq(json_array_size(inits), 3);
    json_t *init = json_array_get(inits, 0), *proxy = json_array_get(inits, 1);
    cr_expect_str_eq(json_string_value(json_object_get(init, "name")), "weft-init");
    cr_expect_str_eq(json_string_value(json_object_get(proxy, "name")), "weft-proxy");
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(inits, 2), "name")),
                     "migrate");
    const char *script = json_string_value(json_array_get(json_object_get(init, "command"), 2));
    cr_expect(strstr(script, "weftctl iptables install --proxy-uid 1337 --exclude-inbound-ports "
                             "15021 --exclude-outbound-ports 5432,6379 --exclude-outbound-cidrs "
                             "10.96.0.1/32,fd00::/8 && exec weftctl iptables check") == script,
              "%s", script);
    cr_expect(strstr(script, "--self-test") != NULL);
    cr_expect_str_eq(json_string_value(json_object_get(proxy, "restartPolicy")), "Always");
    cr_expect_eq(json_integer_value(json_object_get(
                     json_object_get(json_object_get(proxy, "startupProbe"), "httpGet"), "port")),
                 15021);
    /* the named port "http" was resolved to 8080; headers and timeout kept */
    const char *env = json_string_value(
        json_object_get(json_array_get(json_object_get(proxy, "env"), 0), "value"));
    json_t *probes = json_loads(env, 0, NULL);
    cr_assert_not_null(probes, "%s", env);
    json_t *ready = json_object_get(probes, "/app-health/web/readyz");
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(ready, "httpGet"), "port")),
                 8080);
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(ready, "httpGet"), "path")),
                     "/healthz");
    cr_expect_eq(json_integer_value(json_object_get(ready, "timeoutSeconds")), 2);
    cr_expect_eq(json_array_size(json_object_get(json_object_get(ready, "httpGet"), "httpHeaders")),
                 1);
    cr_expect_eq(json_object_size(probes), 2, "the tcpSocket startup probe is not rewritten");
    json_decref(probes);
    json_t *web = json_array_get(json_object_get(spec, "containers"), 0);
    json_t *get = json_object_get(json_object_get(web, "readinessProbe"), "httpGet");
    cr_expect_str_eq(json_string_value(json_object_get(get, "path")), "/app-health/web/readyz");
    cr_expect_eq(json_integer_value(json_object_get(get, "port")), 15021);
    cr_expect_not_null(json_object_get(json_object_get(web, "startupProbe"), "tcpSocket"));
    json_decref(d);
}

Test(inject, patch_creates_missing_lists_and_escapes_annotation_keys)
{
    json_t *pod = yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {a: b}}\n"
                       "spec: {containers: [{name: c, image: i}]}\n");
    struct k8s_inject_opts o = opts_with(true);
    json_t *patch;
    const char *skipped;
    char err[256];
    cr_assert_eq(k8s_inject_patch(&patch, &skipped, pod, &o, err, sizeof(err)), WEFT_OK, "%s", err);
    size_t i;
    json_t *op;
    bool saw_init = false, saw_vol = false, saw_status = false;
    json_array_foreach(patch, i, op)
    {
        const char *path = json_string_value(json_object_get(op, "path"));
        json_t *v = json_object_get(op, "value");
        if (strcmp(path, "/spec/initContainers") == 0) {
            saw_init = json_is_array(v) && json_array_size(v) == 2;
        } else if (strcmp(path, "/spec/volumes") == 0) {
            saw_vol = json_is_array(v);
        } else if (strcmp(path, "/metadata/annotations/weft.dev~1status") == 0) {
            json_t *st = json_loads(json_string_value(v), 0, NULL);
            saw_status = st != NULL && strcmp(json_string_value(json_object_get(st, "version")),
                                              K8S_INJECT_VERSION) == 0;
            json_decref(st);
        }
        cr_expect(strstr(path, "/-") == NULL || strncmp(path, "/spec/volumes", 13) != 0);
    }
    cr_expect(saw_init && saw_vol && saw_status);
    json_decref(patch);
    json_decref(pod);

    /* no metadata at all: added whole */
    pod = yaml("apiVersion: v1\nkind: Pod\nspec: {containers: [{name: c, image: i}], "
               "initContainers: [{name: x, image: i}], volumes: [{name: v, emptyDir: {}}]}\n");
    cr_assert_eq(k8s_inject_patch(&patch, &skipped, pod, &o, err, sizeof(err)), WEFT_OK, "%s", err);
    bool saw_meta = false, saw_append = false, saw_insert = false;
    json_array_foreach(patch, i, op)
    {
        const char *path = json_string_value(json_object_get(op, "path"));
        saw_meta |= strcmp(path, "/metadata") == 0;
        saw_append |= strcmp(path, "/spec/volumes/-") == 0;
        saw_insert |= strcmp(path, "/spec/initContainers/0") == 0;
    }
    cr_expect(saw_meta && saw_append && saw_insert);
    cr_assert_eq(k8s_jsonpatch_apply(&pod, patch, err, sizeof(err)), WEFT_OK, "%s", err);
    json_decref(patch);
    json_decref(pod);
}

Test(inject, webhook_namespace_decides_for_pods_without_one)
{
    json_t *pod = yaml("apiVersion: v1\nkind: Pod\nmetadata: {generateName: web-}\n"
                       "spec: {containers: [{name: c, image: i}]}\n");
    struct k8s_inject_opts o = opts_with(true);
    json_t *patch;
    const char *skipped;
    char err[256];
    o.namespace = "kube-system";
    cr_assert_eq(k8s_inject_patch(&patch, &skipped, pod, &o, err, sizeof(err)), WEFT_OK);
    cr_expect_null(patch);
    cr_expect_str_eq(skipped, "namespace kube-system");
    o.namespace = "shop";
    cr_assert_eq(k8s_inject_patch(&patch, &skipped, pod, &o, err, sizeof(err)), WEFT_OK);
    cr_expect_not_null(patch);
    json_decref(patch);
    json_decref(pod);
}

/* bad: injecting |obj| fails, and the message has each of |parts| */
static void bad(const char *obj, const char *const *parts)
{
    json_t *d = yaml(obj), *patch = (json_t *)1;
    struct k8s_inject_opts o = opts_with(true);
    const char *skipped;
    char err[512] = "";
    cr_expect_eq(k8s_inject_patch(&patch, &skipped, d, &o, err, sizeof(err)), WEFT_EINVAL, "%s",
                 obj);
    cr_expect_null(patch);
    for (size_t i = 0; parts[i] != NULL; i++) {
        cr_expect(strstr(err, parts[i]) != NULL, "\"%s\" not in \"%s\"", parts[i], err);
    }
    json_decref(d);
}

static void bad_annotation(const char *key, const char *value, const char *detail)
{
    char obj[1024];
    snprintf(obj, sizeof(obj),
             "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n"
             "spec: {template: {metadata: {annotations: {\"%s\": \"%s\"}},\n"
             "  spec: {containers: [{name: web, image: i}]}}}\n",
             key, value);
    const char *const parts[] = {"Deployment shop/web: annotation ", key, detail, NULL};
    bad(obj, parts);
}

Test(inject, bad_annotations_name_the_object_and_the_annotation)
{
    bad_annotation(K8S_ANN_EXCLUDE_IN, "0", "\"0\" is not a port");
    bad_annotation(K8S_ANN_EXCLUDE_IN, "65536", "\"65536\" is not a port");
    bad_annotation(K8S_ANN_EXCLUDE_IN, "90-80", "\"90-80\"");
    bad_annotation(K8S_ANN_EXCLUDE_OUT, "5432,http", "\"http\" is not a port");
    bad_annotation(K8S_ANN_EXCLUDE_CIDRS, "10.0.0.1/8", "\"10.0.0.1/8\" is not an address");
    bad_annotation(K8S_ANN_EXCLUDE_CIDRS, "fd00::/129", "\"fd00::/129\"");
    bad_annotation(K8S_ANN_EXCLUDE_CIDRS, "300.1.1.1", "\"300.1.1.1\"");
    bad_annotation(K8S_ANN_EXCLUDE_CIDRS, "10.0.0.0/8; rm -rf /", "is not an address");
    bad_annotation(K8S_ANN_CPU_REQUEST, "ten", "\"ten\" is not a resource quantity");
    bad_annotation(K8S_ANN_MEMORY_REQUEST, "24MB", "\"24MB\"");
    bad_annotation(K8S_ANN_MEMORY_LIMIT, "-1Mi", "\"-1Mi\"");
    bad_annotation(K8S_ANN_NATIVE_SIDECAR, "no", "neither \"true\" nor \"false\"");
    bad_annotation(K8S_ANN_REWRITE_PROBES, "0", "neither \"true\" nor \"false\"");
    bad_annotation(K8S_ANN_INJECT, "true", "neither enabled nor disabled");
    bad_annotation(K8S_ANN_MEMORY_REQUEST, "128Mi", "is more than");
    const char *const unquoted[] = {"Pod default/p",
                                    "annotation weft.dev/native-sidecar: not a string", NULL};
    bad("apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {weft.dev/native-sidecar: "
        "false}}\nspec: {containers: [{name: c, image: i}]}\n",
        unquoted);
}

Test(inject, list_limit)
{
    char value[8 * (K8S_INJECT_MAX_LIST + 1)] = "";
    for (int i = 0; i < K8S_INJECT_MAX_LIST; i++) {
        snprintf(value + strlen(value), sizeof(value) - strlen(value), "%s%d", i ? "," : "",
                 1000 + i);
    }
    char obj[2048];
    snprintf(obj, sizeof(obj),
             "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {\"%s\": \"%s\"}}\n"
             "spec: {containers: [{name: c, image: i}]}\n",
             K8S_ANN_EXCLUDE_IN, value);
    json_t *d = yaml(obj), *patch;
    struct k8s_inject_opts o = opts_with(true);
    const char *skipped;
    char err[512];
    cr_assert_eq(k8s_inject_patch(&patch, &skipped, d, &o, err, sizeof(err)), WEFT_OK, "%s", err);
    json_decref(patch);
    json_decref(d);
    strcat(value, ",2000");
    snprintf(obj, sizeof(obj),
             "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {\"%s\": \"%s\"}}\n"
             "spec: {containers: [{name: c, image: i}]}\n",
             K8S_ANN_EXCLUDE_IN, value);
    const char *const parts[] = {"Pod default/p", "more than 64 items", NULL};
    bad(obj, parts);
}

Test(inject, bad_pods)
{
    const char *const port[] = {"Pod default/p", "container app", "readinessProbe",
                                "port name \"web\"", NULL};
    bad("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: app, image: i,"
        " ports: [{name: http, containerPort: 80}], readinessProbe: {httpGet: {port: web}}}]}\n",
        port);
    const char *const range[] = {"container app", "livenessProbe", "port 70000", NULL};
    bad("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: app, image: i,"
        " livenessProbe: {httpGet: {port: 70000}}}]}\n",
        range);
    const char *const taken[] = {"Pod default/p", "\"weft-proxy\"", "weft.dev/status", NULL};
    bad("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: weft-proxy, "
        "image: i}]}\n",
        taken);
    const char *const empty[] = {"Job default/j", "spec.containers", NULL};
    bad("apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {template: {spec: {}}}\n",
        empty);
    const char *const uid[] = {"Pod default/p", "container app", "runAsUser is 1337", NULL};
    bad("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: app, "
        "image: i, securityContext: {runAsUser: 1337}}]}\n",
        uid);
    const char *const poduid[] = {"spec.securityContext.runAsUser is 1337", NULL};
    bad("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {securityContext: {runAsUser: "
        "1337}, containers: [{name: app, image: i}]}\n",
        poduid);
    const char *const none[] = {"Deployment default/d", "no pod spec", NULL};
    bad("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n", none);
}

Test(inject, probes_left_alone_when_asked)
{
    json_t *d = yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: "
                     "{weft.dev/rewrite-probes: \"false\"}}\nspec: {containers: [{name: app, "
                     "image: i, readinessProbe: {httpGet: {port: web}}}]}\n");
    json_t *orig = json_deep_copy(d);
    struct k8s_inject_opts o = opts_with(true);
    const char *skipped;
    char err[256];
    cr_assert_eq(k8s_inject_object(&d, &skipped, &o, err, sizeof(err)), WEFT_OK, "%s", err);
    json_t *c = json_array_get(json_object_get(json_object_get(d, "spec"), "containers"), 0);
    json_t *c0 = json_array_get(json_object_get(json_object_get(orig, "spec"), "containers"), 0);
    cr_expect(json_equal(c, c0));
    json_decref(d);
    json_decref(orig);
}

Test(inject, null_lists_and_maps_count_as_absent)
{
    /* "annotations:" and "initContainers:" with nothing after them are YAML nulls */
    json_t *d = yaml("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n"
                     "spec:\n  initContainers:\n  volumes:\n  containers: [{name: c, image: i}]\n");
    struct k8s_inject_opts o = opts_with(true);
    const char *skipped;
    char err[512];
    cr_assert_eq(k8s_inject_object(&d, &skipped, &o, err, sizeof(err)), WEFT_OK, "%s", err);
    json_t *spec = json_object_get(d, "spec");
    cr_expect_eq(json_array_size(json_object_get(spec, "initContainers")), 2);
    cr_expect_eq(json_array_size(json_object_get(spec, "volumes")), 2);
    cr_expect_not_null(json_object_get(
        json_object_get(json_object_get(d, "metadata"), "annotations"), K8S_ANN_STATUS));
    json_decref(d);
    d = yaml("apiVersion: v1\nkind: Pod\nmetadata:\nspec: {containers: [{name: c, image: i}]}\n");
    cr_assert_eq(k8s_inject_object(&d, &skipped, &o, err, sizeof(err)), WEFT_OK, "%s", err);
    json_decref(d);
    const char *const parts[] = {"Pod default/p", "metadata.annotations is not a mapping", NULL};
    bad("apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: x}\n"
        "spec: {containers: [{name: c, image: i}]}\n",
        parts);
}
