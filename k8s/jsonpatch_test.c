/* k8s/jsonpatch_test.c: RFC 6901 paths and the RFC 6902 applier. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "k8s/jsonpatch.h"

TestSuite(jsonpatch, .timeout = 30);

static json_t *load(const char *s)
{
    json_error_t e;
    json_t *j = json_loads(s, JSON_DECODE_ANY, &e);
    cr_assert_not_null(j, "%s: %s", s, e.text);
    return j;
}

/* apply: |patch| on |doc| gives |want| (NULL: fails, and |doc| is unchanged) */
static void apply(const char *doc, const char *patch, const char *want)
{
    json_t *d = load(doc), *p = load(patch), *orig = json_deep_copy(d);
    char err[256] = "";
    int rc = k8s_jsonpatch_apply(&d, p, err, sizeof(err));
    if (want == NULL) {
        cr_expect_neq(rc, WEFT_OK, "%s on %s applied", patch, doc);
        cr_expect(json_equal(d, orig), "a failed patch changed the document");
        cr_expect_neq(err[0], '\0');
    } else {
        cr_expect_eq(rc, WEFT_OK, "%s on %s: %s", patch, doc, err);
        char *got = json_dumps(d, JSON_COMPACT | JSON_ENCODE_ANY);
        cr_expect_str_eq(got, want, "%s on %s", patch, doc);
        free(got);
    }
    json_decref(d);
    json_decref(p);
    json_decref(orig);
}

Test(jsonpatch, paths_escape_tilde_then_slash)
{
    char *p = k8s_jsonpatch_path("/metadata/annotations", "weft.dev/status");
    cr_expect_str_eq(p, "/metadata/annotations/weft.dev~1status");
    char *q = k8s_jsonpatch_path(p, "a~/b~1");
    cr_expect_str_eq(q, "/metadata/annotations/weft.dev~1status/a~0~1b~01");
    char *r = k8s_jsonpatch_path_index("", 12);
    cr_expect_str_eq(r, "/12");
    free(p), free(q), free(r);
}

Test(jsonpatch, escaped_paths_reach_their_members)
{
    apply("{\"a/b\":1,\"c~d\":2}",
          "[{\"op\":\"replace\",\"path\":\"/a~1b\",\"value\":3},"
          "{\"op\":\"remove\",\"path\":\"/c~0d\"}]",
          "{\"a/b\":3}");
    apply("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/a~2\",\"value\":1}]", NULL);
    apply("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/a~\",\"value\":1}]", NULL);
    apply("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"a\",\"value\":1}]", NULL);
}

Test(jsonpatch, add)
{
    apply("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/b\",\"value\":[1]}]", "{\"a\":1,\"b\":[1]}");
    apply("{\"a\":1,\"b\":2}", "[{\"op\":\"add\",\"path\":\"/a\",\"value\":9}]",
          "{\"a\":9,\"b\":2}"); /* in place: key order kept */
    apply("{\"l\":[1,2]}", "[{\"op\":\"add\",\"path\":\"/l/0\",\"value\":0}]", "{\"l\":[0,1,2]}");
    apply("{\"l\":[1,2]}", "[{\"op\":\"add\",\"path\":\"/l/2\",\"value\":3}]", "{\"l\":[1,2,3]}");
    apply("{\"l\":[1,2]}", "[{\"op\":\"add\",\"path\":\"/l/-\",\"value\":3}]", "{\"l\":[1,2,3]}");
    apply("{\"l\":[1,2]}", "[{\"op\":\"add\",\"path\":\"/l/3\",\"value\":3}]", NULL);
    apply("{\"l\":[1,2]}", "[{\"op\":\"add\",\"path\":\"/l/01\",\"value\":3}]", NULL);
    /* RFC 6902 §4.1: the parent must exist; "/-" on a missing list fails */
    apply("{}", "[{\"op\":\"add\",\"path\":\"/l/-\",\"value\":3}]", NULL);
    apply("{}", "[{\"op\":\"add\",\"path\":\"/a/b\",\"value\":3}]", NULL);
    apply("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"\",\"value\":[]}]", "[]");
    apply("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/a\"}]", NULL);
    apply("{\"a\":\"s\"}", "[{\"op\":\"add\",\"path\":\"/a/b\",\"value\":1}]", NULL);
}

Test(jsonpatch, remove_and_replace_need_the_target)
{
    apply("{\"a\":1,\"b\":2}", "[{\"op\":\"remove\",\"path\":\"/a\"}]", "{\"b\":2}");
    apply("{\"l\":[1,2,3]}", "[{\"op\":\"remove\",\"path\":\"/l/1\"}]", "{\"l\":[1,3]}");
    apply("{\"l\":[1,2,3]}", "[{\"op\":\"replace\",\"path\":\"/l/2\",\"value\":0}]",
          "{\"l\":[1,2,0]}");
    apply("{\"l\":[1]}", "[{\"op\":\"remove\",\"path\":\"/l/1\"}]", NULL);
    apply("{\"l\":[1]}", "[{\"op\":\"remove\",\"path\":\"/l/-\"}]", NULL);
    apply("{\"a\":1}", "[{\"op\":\"replace\",\"path\":\"/b\",\"value\":0}]", NULL);
    apply("{\"a\":1}", "[{\"op\":\"remove\",\"path\":\"\"}]", NULL);
}

Test(jsonpatch, test_op_and_unsupported_ops)
{
    apply("{\"a\":[1]}", "[{\"op\":\"test\",\"path\":\"/a\",\"value\":[1]}]", "{\"a\":[1]}");
    apply("{\"a\":[1]}", "[{\"op\":\"test\",\"path\":\"/a/0\",\"value\":2}]", NULL);
    apply("{\"a\":1}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/b\"}]", NULL);
    apply("{\"a\":1}", "[{\"path\":\"/b\",\"value\":1}]", NULL);
    apply("{\"a\":1}", "{\"op\":\"add\"}", NULL);
}

Test(jsonpatch, all_or_nothing)
{
    /* the first operation applies, the second fails: the document is as it was */
    apply("{\"a\":1}",
          "[{\"op\":\"add\",\"path\":\"/b\",\"value\":2},{\"op\":\"remove\",\"path\":\"/zz\"}]",
          NULL);
}

Test(jsonpatch, limits)
{
    json_t *doc = json_object(), *patch = json_array();
    char err[1024];
    for (size_t i = 0; i < K8S_PATCH_MAX_OPS; i++) {
        k8s_jsonpatch_append(patch, "add", "/a", json_integer((json_int_t)i));
    }
    cr_assert_eq(k8s_jsonpatch_apply(&doc, patch, err, sizeof(err)), WEFT_OK, "%s", err);
    k8s_jsonpatch_append(patch, "add", "/a", json_integer(0));
    cr_assert_eq(k8s_jsonpatch_apply(&doc, patch, err, sizeof(err)), WEFT_ELIMIT);
    json_decref(patch);

    /* K8S_PATCH_MAX_TOKENS tokens reach; one more is refused */
    char path[4 * K8S_PATCH_MAX_TOKENS + 8] = "";
    for (size_t i = 0; i < K8S_PATCH_MAX_TOKENS; i++) {
        strcat(path, "/x");
    }
    patch = json_array();
    k8s_jsonpatch_append(patch, "add", path, json_integer(1));
    cr_assert_eq(k8s_jsonpatch_apply(&doc, patch, err, sizeof(err)), WEFT_EINVAL); /* no /x */
    cr_expect(strstr(err, "is not there") != NULL, "%s", err);
    json_decref(patch);
    strcat(path, "/x");
    patch = json_array();
    k8s_jsonpatch_append(patch, "add", path, json_integer(1));
    cr_assert_eq(k8s_jsonpatch_apply(&doc, patch, err, sizeof(err)), WEFT_ELIMIT);
    json_decref(patch);

    char longpath[K8S_PATCH_MAX_PATH + 3];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    patch = json_array();
    k8s_jsonpatch_append(patch, "add", longpath, json_integer(1));
    cr_assert_eq(k8s_jsonpatch_apply(&doc, patch, err, sizeof(err)), WEFT_ELIMIT);
    json_decref(patch);
    json_decref(doc);
}
