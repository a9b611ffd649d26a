/* ca/kube_watch_test.c: the Kubernetes API's bytes, parsed: lines, events, list pages, files. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ca/kube_watch.h"

TestSuite(ca_kube_watch, .timeout = 30);

struct got {
    char lines[8][64];
    size_t num;
};

static int collect(void *arg, const char *line, size_t len)
{
    struct got *g = arg;
    cr_assert_lt(g->num, 8);
    cr_assert_lt(len, 64);
    memcpy(g->lines[g->num], line, len);
    g->lines[g->num++][len] = '\0';
    return WEFT_OK;
}

Test(ca_kube_watch, lines_split_across_chunks_and_skip_empty_ones)
{
    struct ca_kube_lines l;
    ca_kube_lines_init(&l, 16);
    struct got g = {.num = 0};
    cr_assert_eq(ca_kube_lines_feed(&l, "ab", 2, collect, &g), WEFT_OK);
    cr_assert_eq(g.num, 0);
    cr_assert_eq(ca_kube_lines_feed(&l, "c\r\n\nde\nf", 8, collect, &g), WEFT_OK);
    cr_assert_eq(g.num, 2);
    cr_assert_str_eq(g.lines[0], "abc");
    cr_assert_str_eq(g.lines[1], "de");
    cr_assert_eq(l.len, 1, "\"f\" waits for its newline");
    ca_kube_lines_cleanup(&l);
}

Test(ca_kube_watch, a_line_one_past_the_limit_is_refused)
{
    struct ca_kube_lines l;
    ca_kube_lines_init(&l, 16);
    struct got g = {.num = 0};
    char line[18];
    memset(line, 'x', 16);
    line[16] = '\n';
    cr_assert_eq(ca_kube_lines_feed(&l, line, 17, collect, &g), WEFT_OK, "16 bytes fit");
    cr_assert_eq(g.num, 1);
    cr_assert_eq(ca_kube_lines_feed(&l, line, 16, collect, &g), WEFT_OK);
    cr_assert_eq(ca_kube_lines_feed(&l, "x", 1, collect, &g), WEFT_ELIMIT, "17 do not");
    ca_kube_lines_cleanup(&l);
}

static int parse(struct ca_kube_event *ev, const char *line)
{
    char err[256];
    return ca_kube_event_parse(ev, line, strlen(line), err, sizeof(err));
}

Test(ca_kube_watch, events_of_each_type)
{
    struct ca_kube_event ev;
    cr_assert_eq(parse(&ev, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\","
                            "\"namespace\":\"shop\",\"resourceVersion\":\"7\"}}}"),
                 WEFT_OK);
    cr_assert_eq(ev.type, CA_KUBE_ADDED);
    cr_assert_str_eq(ev.rv, "7");
    cr_assert_not_null(ev.object);
    ca_kube_event_cleanup(&ev);
    cr_assert_eq(parse(&ev, "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"AuthorizationPolicy\","
                            "\"metadata\":{\"resourceVersion\":\"12\"}}}"),
                 WEFT_OK);
    cr_assert_eq(ev.type, CA_KUBE_BOOKMARK);
    cr_assert_str_eq(ev.rv, "12");
    cr_assert_null(ev.object, "a bookmark carries no object");
    ca_kube_event_cleanup(&ev);
    cr_assert_eq(parse(&ev, "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,"
                            "\"reason\":\"Expired\",\"message\":\"too old resource version\"}}"),
                 WEFT_OK);
    cr_assert_eq(ev.type, CA_KUBE_ERROR);
    cr_assert_eq(ev.code, 410);
    cr_assert_str_eq(ev.message, "too old resource version");
    ca_kube_event_cleanup(&ev);
}

Test(ca_kube_watch, broken_events_are_refused)
{
    struct ca_kube_event ev;
    cr_assert_eq(parse(&ev, "{\"type\":\"ADDED\""), WEFT_EPROTO, "not JSON");
    cr_assert_eq(parse(&ev, "{\"type\":\"EXPLODED\",\"object\":{}}"), WEFT_EPROTO);
    cr_assert_eq(parse(&ev, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}"),
                 WEFT_EPROTO, "no resourceVersion");
    cr_assert_eq(parse(&ev, "{\"type\":\"DELETED\",\"object\":{\"metadata\":{"
                            "\"resourceVersion\":\"3\"}}}"),
                 WEFT_EPROTO, "no name");
    cr_assert_eq(parse(&ev, "[1,2]"), WEFT_EPROTO);
    cr_assert_eq(parse(&ev, "{\"type\":\"ADDED\",\"type\":\"DELETED\",\"object\":{}}"), WEFT_EPROTO,
                 "duplicate keys");
    char rv[CA_KUBE_MAX_RV + 2];
    memset(rv, '1', sizeof(rv) - 1);
    rv[sizeof(rv) - 1] = '\0';
    char line[400];
    snprintf(line, sizeof(line),
             "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"%s\"}}}", rv);
    cr_assert_eq(parse(&ev, line), WEFT_EPROTO, "a resourceVersion one past the limit");
}

Test(ca_kube_watch, list_pages)
{
    struct ca_kube_list l;
    char err[256];
    const char *body = "{\"kind\":\"AuthorizationPolicyList\",\"metadata\":{\"resourceVersion\":"
                       "\"40\",\"continue\":\"tok\"},\"items\":[{\"metadata\":{\"name\":\"a\"}}]}";
    cr_assert_eq(ca_kube_list_parse(&l, body, strlen(body), err, sizeof(err)), WEFT_OK);
    cr_assert_str_eq(l.rv, "40");
    cr_assert_str_eq(l.cont, "tok");
    cr_assert_eq(json_array_size(l.items), 1);
    ca_kube_list_cleanup(&l);
    body = "{\"metadata\":{\"resourceVersion\":\"41\"},\"items\":null}";
    cr_assert_eq(ca_kube_list_parse(&l, body, strlen(body), err, sizeof(err)), WEFT_OK);
    cr_assert_str_eq(l.cont, "");
    cr_assert_eq(json_array_size(l.items), 0);
    ca_kube_list_cleanup(&l);
    body = "{\"metadata\":{},\"items\":[]}";
    cr_assert_eq(ca_kube_list_parse(&l, body, strlen(body), err, sizeof(err)), WEFT_EPROTO);
    cr_assert_not_null(strstr(err, "resourceVersion"), "%s", err);
    cr_assert_eq(ca_kube_list_parse(&l, body, CA_KUBE_MAX_BODY + 1, err, sizeof(err)), WEFT_ELIMIT,
                 "the size is checked before any byte is read");
}

Test(ca_kube_watch, an_object_becomes_a_file_with_only_what_the_loader_reads)
{
    json_error_t jerr;
    json_t *obj = json_loads(
        "{\"apiVersion\":\"security.weft.dev/v1alpha1\",\"kind\":\"AuthorizationPolicy\","
        "\"metadata\":{\"name\":\"allow-web\",\"namespace\":\"shop\",\"resourceVersion\":\"9\","
        "\"generation\":2,\"uid\":\"u-1\",\"labels\":{\"a\":\"b\"},"
        "\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":\"{}\"},"
        "\"managedFields\":[{}]},\"spec\":{\"action\":\"ALLOW\"},\"status\":{\"x\":1}}",
        0, &jerr);
    cr_assert_not_null(obj);
    struct ca_kube_file f;
    char err[256];
    cr_assert_eq(ca_kube_object_file(&f, obj, "authorizationpolicies", err, sizeof(err)), WEFT_OK);
    cr_assert_str_eq(f.name, "k8s/authorizationpolicies/shop/allow-web.json");
    cr_assert_str_eq(f.rv, "9");
    json_t *back = json_loadb(f.data, f.len, 0, &jerr);
    cr_assert_not_null(back);
    cr_assert_eq(json_object_size(back), 4, "apiVersion, kind, metadata, spec");
    json_t *md = json_object_get(back, "metadata");
    cr_assert_eq(json_object_size(md), 5);
    cr_assert_null(json_object_get(md, "uid"));
    cr_assert_null(json_object_get(md, "managedFields"));
    cr_assert_eq(json_integer_value(json_object_get(md, "generation")), 2);
    cr_assert_null(json_object_get(back, "status"));
    json_decref(back);
    ca_kube_file_cleanup(&f);
    json_decref(obj);
}

Test(ca_kube_watch, names_that_would_escape_the_file_name_are_refused)
{
    static const char *const bad[] = {
        "{\"metadata\":{\"name\":\"../x\",\"resourceVersion\":\"1\"}}",
        "{\"metadata\":{\"name\":\"..\",\"resourceVersion\":\"1\"}}",
        "{\"metadata\":{\"name\":\"a\",\"namespace\":\"a/b\",\"resourceVersion\":\"1\"}}",
        "{\"metadata\":{\"name\":\"\",\"resourceVersion\":\"1\"}}",
        "{\"metadata\":{\"name\":\"a\",\"namespace\":7,\"resourceVersion\":\"1\"}}",
        "{\"metadata\":{\"name\":\"a\"}}",
        "{\"metadata\":{\"name\":\"a\",\"namespace\":\"..shop\",\"resourceVersion\":\"1\"}}",
        "{\"metadata\":{\"name\":\"a..b\",\"resourceVersion\":\"1\"}}",
        "{\"metadata\":{\"name\":\"-a\",\"resourceVersion\":\"1\"}}",
        "{\"metadata\":{\"name\":\"a\",\"namespace\":\"a.b\",\"resourceVersion\":\"1\"}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_error_t jerr;
        json_t *obj = json_loads(bad[i], 0, &jerr);
        cr_assert_not_null(obj);
        struct ca_kube_file f;
        char err[256];
        cr_assert_eq(ca_kube_object_file(&f, obj, "authorizationpolicies", err, sizeof(err)),
                     WEFT_EINVAL, "%s", bad[i]);
        json_decref(obj);
    }
}

Test(ca_kube_watch, names_at_their_limits)
{
    char name[300], line[500];
    memset(name, 'a', sizeof(name));
    /* 253 bytes: four labels of 63 and a dot between each (4 * 63 + 3 = 255 is one over) */
    for (size_t i = 63; i < 253; i += 64) {
        name[i] = '.';
    }
    for (size_t len = 253; len <= 254; len++) {
        snprintf(line, sizeof(line), "{\"metadata\":{\"name\":\"%.*s\",\"resourceVersion\":\"1\"}}",
                 (int)len, name);
        json_error_t jerr;
        json_t *obj = json_loads(line, 0, &jerr);
        cr_assert_not_null(obj);
        struct ca_kube_file f;
        char err[256];
        int rc = ca_kube_object_file(&f, obj, "meshconfigs", err, sizeof(err));
        cr_assert_eq(rc, len == 253 ? WEFT_OK : WEFT_EINVAL, "a name of %zu bytes", len);
        ca_kube_file_cleanup(&f);
        json_decref(obj);
    }
}

Test(ca_kube_watch, a_cluster_scoped_object_gets_its_own_folder)
{
    json_error_t jerr;
    json_t *obj =
        json_loads("{\"metadata\":{\"name\":\"mesh\",\"resourceVersion\":\"1\"}}", 0, &jerr);
    struct ca_kube_file f;
    char err[256];
    cr_assert_eq(ca_kube_object_file(&f, obj, "meshconfigs", err, sizeof(err)), WEFT_OK);
    cr_assert_str_eq(f.name, "k8s/meshconfigs/_cluster/mesh.json");
    ca_kube_file_cleanup(&f);
    json_decref(obj);
}
