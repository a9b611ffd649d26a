/* k8s/yamljson_test.c: the contract of k8s_yaml_parse and k8s_yaml_emit. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "k8s/yamljson.h"
#include "lib/base/mem.h"

TestSuite(yamljson, .timeout = 30);

static json_t *parse_ok(const char *yaml)
{
    json_t *docs = NULL;
    char err[256];
    int rc = k8s_yaml_parse(&docs, (const uint8_t *)yaml, strlen(yaml), err, sizeof(err));
    cr_assert_eq(rc, WEFT_OK, "%s: %s", yaml, err);
    return docs;
}

static int parse_err(const char *yaml, size_t len, char *err, size_t err_len)
{
    json_t *docs = (json_t *)1;
    int rc = k8s_yaml_parse(&docs, (const uint8_t *)yaml, len, err, err_len);
    cr_assert_null(docs);
    cr_assert_neq(err[0], '\0');
    return rc;
}

/* one: the JSON (compact, keys in order) of the first document of |yaml| */
static char *one(const char *yaml)
{
    json_t *docs = parse_ok(yaml);
    char *s = json_dumps(json_array_get(docs, 0), JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(docs);
    return s;
}

#define EXPECT_JSON(yaml, want)                                                                    \
    do {                                                                                           \
        char *got_ = one(yaml);                                                                    \
        cr_expect_str_eq(got_, want, "%s", yaml);                                                  \
        free(got_);                                                                                \
    } while (0)

Test(yamljson, yaml11_booleans_are_booleans_unless_quoted)
{
    EXPECT_JSON("[yes, Yes, YES, y, on, ON, true, True]",
                "[true,true,true,true,true,true,true,true]");
    EXPECT_JSON("[no, No, n, N, off, Off, false, FALSE]",
                "[false,false,false,false,false,false,false,false]");
    EXPECT_JSON("['yes', \"on\", !!str off, ! true, yEs]",
                "[\"yes\",\"on\",\"off\",\"true\",\"yEs\"]");
}

Test(yamljson, nulls)
{
    EXPECT_JSON(
        "{a: ~, b: null, c: Null, d: NULL, e: , f: \"\", g: nULL}",
        "{\"a\":null,\"b\":null,\"c\":null,\"d\":null,\"e\":null,\"f\":\"\",\"g\":\"nULL\"}");
}

Test(yamljson, numbers_as_go_yaml_v2_reads_them)
{
    EXPECT_JSON("[8080, -3, +4, 0x1F, 0o17, 017, 0b101, 1_000, 09, \"8080\"]",
                "[8080,-3,4,31,15,15,5,1000,9.0,\"8080\"]");
    EXPECT_JSON("[1.5, .5, 1e3, -2.5E-1, 1., 10.0.0.5, 1.2.3, 0x, 1e, 9223372036854775807]",
                "[1.5,0.5,1000.0,-0.25,1.0,\"10.0.0.5\",\"1.2.3\",\"0x\",\"1e\","
                "9223372036854775807]");
    EXPECT_JSON("[-9223372036854775808, 9223372036854775808]",
                "[-9223372036854775808,9.2233720368547758e18]");
}

Test(yamljson, infinity_and_nan_are_refused)
{
    char err[256] = "";
    cr_assert_eq(parse_err("a: .inf\n", 8, err, sizeof(err)), WEFT_EINVAL);
    cr_expect(strstr(err, "line 1 column 4") != NULL, "%s", err);
    cr_assert_eq(parse_err("- .NaN\n", 7, err, sizeof(err)), WEFT_EINVAL);
}

Test(yamljson, keys_keep_their_order_and_become_strings)
{
    EXPECT_JSON("z: 1\na: 2\nm: {q: 1, b: 2}\n", "{\"z\":1,\"a\":2,\"m\":{\"q\":1,\"b\":2}}");
    /* go-yaml v2 reads the key y as true, so sigs.k8s.io/yaml writes it "true": so do we */
    EXPECT_JSON("{y: 1, n: 2, 'y': 3}", "{\"true\":1,\"false\":2,\"y\":3}");
    EXPECT_JSON("{yes: 1, 1: 2, ~: 3, 0x10: 4}", "{\"true\":1,\"1\":2,\"null\":3,\"16\":4}");
}

Test(yamljson, several_documents_and_empty_ones)
{
    json_t *docs = parse_ok("# c\n---\na: 1\n---\n---\n- 2\n...\n");
    cr_assert_eq(json_array_size(docs), 3);
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(docs, 0), "a")), 1);
    cr_expect(json_is_null(json_array_get(docs, 1)));
    cr_expect(json_is_array(json_array_get(docs, 2)));
    json_decref(docs);
    docs = parse_ok("");
    cr_expect_eq(json_array_size(docs), 0);
    json_decref(docs);
}

Test(yamljson, refuses_what_kubernetes_would_not_take_or_we_do_not_expand)
{
    char err[256] = "";
    const char *dup = "a: 1\nb: 2\na: 3\n";
    cr_assert_eq(parse_err(dup, strlen(dup), err, sizeof(err)), WEFT_EINVAL);
    cr_expect(strstr(err, "line 3") != NULL && strstr(err, "\"a\" repeated") != NULL, "%s", err);
    const char *alias = "a: &x {b: 1}\nc: *x\n";
    cr_assert_eq(parse_err(alias, strlen(alias), err, sizeof(err)), WEFT_EINVAL);
    cr_expect(strstr(err, "aliases") != NULL, "%s", err);
    const char *merge = "a: {b: 1}\nc: {<<: 1}\n";
    cr_assert_eq(parse_err(merge, strlen(merge), err, sizeof(err)), WEFT_EINVAL);
    const char *complex = "? [a]\n: 1\n";
    cr_assert_eq(parse_err(complex, strlen(complex), err, sizeof(err)), WEFT_EINVAL);
    cr_expect(strstr(err, "key must be a scalar") != NULL, "%s", err);
    const char *bad = "a: [1, 2\n";
    cr_assert_eq(parse_err(bad, strlen(bad), err, sizeof(err)), WEFT_EINVAL);
    cr_expect(strstr(err, "line ") == err, "%s", err);
    const char *nulkey = "\"a\\0b\": 1\na: 2\n";
    cr_assert_eq(parse_err(nulkey, strlen(nulkey), err, sizeof(err)), WEFT_EINVAL);
    cr_expect(strstr(err, "NUL") != NULL, "%s", err);
    const char nul[] = "a: \"x\\0y\"\nb: c";
    json_t *docs = parse_ok(nul); /* a NUL in a string is valid JSON too */
    cr_expect_eq(json_string_length(json_object_get(json_array_get(docs, 0), "a")), 3);
    json_decref(docs);
}

Test(yamljson, depth_limit)
{
    char *y = weft_xmalloc(2 * K8S_YAML_MAX_DEPTH + 8);
    char err[256] = "";
    memset(y, '[', K8S_YAML_MAX_DEPTH);
    memset(y + K8S_YAML_MAX_DEPTH, ']', K8S_YAML_MAX_DEPTH);
    json_t *docs = NULL;
    cr_assert_eq(k8s_yaml_parse(&docs, (uint8_t *)y, 2 * K8S_YAML_MAX_DEPTH, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    json_decref(docs);
    memset(y, '[', K8S_YAML_MAX_DEPTH + 1);
    memset(y + K8S_YAML_MAX_DEPTH + 1, ']', K8S_YAML_MAX_DEPTH + 1);
    cr_assert_eq(parse_err(y, 2 * K8S_YAML_MAX_DEPTH + 2, err, sizeof(err)), WEFT_ELIMIT);
    cr_expect(strstr(err, "nested deeper") != NULL, "%s", err);
    free(y);
}

/* flow_seq makes "[0,0,...,0]" with |num_scalars| scalars: num_scalars + 1 nodes. */
static char *flow_seq(size_t num_scalars, size_t *out_len)
{
    char *y = weft_xmalloc(2 * num_scalars + 2);
    y[0] = '[';
    for (size_t i = 0; i < num_scalars; i++) {
        y[1 + 2 * i] = '0';
        y[2 + 2 * i] = i + 1 < num_scalars ? ',' : ']';
    }
    *out_len = 2 * num_scalars + 1;
    return y;
}

Test(yamljson, node_and_document_and_size_limits)
{
    char err[256] = "";
    size_t len;
    char *y = flow_seq(K8S_YAML_MAX_NODES - 1, &len);
    json_t *docs = NULL;
    cr_assert_eq(k8s_yaml_parse(&docs, (uint8_t *)y, len, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_expect_eq(json_array_size(json_array_get(docs, 0)), K8S_YAML_MAX_NODES - 1);
    json_decref(docs);
    free(y);
    y = flow_seq(K8S_YAML_MAX_NODES, &len);
    cr_assert_eq(parse_err(y, len, err, sizeof(err)), WEFT_ELIMIT);
    cr_expect(strstr(err, "nodes") != NULL, "%s", err);
    free(y);

    size_t ndocs = K8S_YAML_MAX_DOCS + 1;
    y = weft_xmalloc(4 * ndocs + 1);
    for (size_t i = 0; i < ndocs; i++) {
        memcpy(y + 4 * i, "---\n", 4);
    }
    cr_assert_eq(k8s_yaml_parse(&docs, (uint8_t *)y, 4 * (ndocs - 1), err, sizeof(err)), WEFT_OK,
                 "%s", err);
    cr_expect_eq(json_array_size(docs), K8S_YAML_MAX_DOCS);
    json_decref(docs);
    cr_assert_eq(parse_err(y, 4 * ndocs, err, sizeof(err)), WEFT_ELIMIT);
    cr_expect(strstr(err, "documents") != NULL, "%s", err);
    free(y);

    cr_assert_eq(parse_err("a", (size_t)K8S_YAML_MAX_INPUT + 1, err, sizeof(err)), WEFT_ELIMIT);
}

Test(yamljson, emit_quotes_strings_that_would_read_back_as_something_else)
{
    json_t *docs =
        json_pack("[{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:f, s:f, s:b, s:n}]", "a", "yes",
                  "b", "8080", "c", "", "d", "~", "e", "plain text", "f", "two\nlines\n", "g",
                  "0x10", "h", "- x", "i", 7, "j", 1.0, "k", 0.1, "l", 0, "m");
    char *y;
    size_t len;
    cr_assert_eq(k8s_yaml_emit(&y, &len, docs), WEFT_OK);
    cr_expect_str_eq(y, "---\na: \"yes\"\nb: \"8080\"\nc: \"\"\nd: \"~\"\ne: plain text\nf: |\n"
                        "  two\n  lines\ng: \"0x10\"\nh: '- x'\ni: 7\nj: 1.0\nk: 0.1\nl: false\n"
                        "m: null\n");
    json_t *back = NULL;
    char err[256];
    cr_assert_eq(k8s_yaml_parse(&back, (uint8_t *)y, len, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_expect(json_equal(back, docs));
    json_decref(back);
    free(y);
    json_decref(docs);
}

Test(yamljson, emit_then_parse_keeps_every_document)
{
    const char *src =
        "a: [1, {b: \"c\", \"<<\": '<<'}]\n---\n[x, 'on', 2.5]\n---\n\"str\"\n---\n{}\n---\n[]\n";
    json_t *docs = parse_ok(src);
    char *y;
    size_t len;
    cr_assert_eq(k8s_yaml_emit(&y, &len, docs), WEFT_OK);
    json_t *back = parse_ok(y);
    cr_expect(json_equal(back, docs), "%s", y);
    json_decref(back);
    json_decref(docs);
    free(y);
}
