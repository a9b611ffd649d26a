/* proto/workload_test.c: the generated Workload API code speaks the standard's wire format
 * (spiffe.md §F), round-trips every field and refuses bytes that are not a message. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

#include "proto/workload.pb-c.h"

/* An X509SVIDResponse encoded by hand from §F.2/§F.3, independent of protobuf-c. Fields appear in
 * field-number order; the second SVID has no bundle or hint, which proto3 leaves out. */
static const char x509_svid_response_wire[] =
    "\x0a\x2f" /* svids (1), 47 bytes */
    "\x0a\x16"
    "spiffe://example.org/a" /*   spiffe_id (1) */
    "\x12\x03"
    "\x30\x01\x02" /*   x509_svid (2) */
    "\x1a\x02"
    "\x30\x03" /*   x509_svid_key (3) */
    "\x22\x02"
    "\x30\x04" /*   bundle (4) */
    "\x2a\x08"
    "internal" /*   hint (5) */
    "\x0a\x20" /* svids (1), 32 bytes */
    "\x0a\x16"
    "spiffe://example.org/b" /*   spiffe_id (1) */
    "\x12\x02"
    "\x30\x05" /*   x509_svid (2) */
    "\x1a\x02"
    "\x30\x06" /*   x509_svid_key (3) */
    "\x1a\x19" /* federated_bundles (3), one entry, 25 bytes */
    "\x0a\x12"
    "spiffe://other.org" /*   key (1) */
    "\x12\x03"
    "\x30\x07\x08"; /*   value (2) */

static const uint8_t svid_a_der[] = {0x30, 0x01, 0x02};
static const uint8_t svid_a_key[] = {0x30, 0x03};
static const uint8_t svid_a_bundle[] = {0x30, 0x04};
static const uint8_t svid_b_der[] = {0x30, 0x05};
static const uint8_t svid_b_key[] = {0x30, 0x06};
static const uint8_t other_bundle[] = {0x30, 0x07, 0x08};

static ProtobufCBinaryData bin(const uint8_t *data, size_t len)
{
    return (ProtobufCBinaryData){.len = len, .data = (uint8_t *)data};
}

static void assert_bin_eq(ProtobufCBinaryData got, const uint8_t *want, size_t want_len)
{
    cr_assert_eq(got.len, want_len);
    cr_assert(want_len == 0 || memcmp(got.data, want, want_len) == 0);
}

static const Google__Protobuf__Value *find_claim(const Google__Protobuf__Struct *s, const char *key)
{
    for (size_t i = 0; i < s->n_fields; i++) {
        if (strcmp(s->fields[i]->key, key) == 0) {
            return s->fields[i]->value;
        }
    }
    return NULL;
}

Test(workload_x509_svid_response, packs_to_standard_wire_format)
{
    X509SVID a = X509_SVID__INIT;
    a.spiffe_id = "spiffe://example.org/a";
    a.x509_svid = bin(svid_a_der, sizeof(svid_a_der));
    a.x509_svid_key = bin(svid_a_key, sizeof(svid_a_key));
    a.bundle = bin(svid_a_bundle, sizeof(svid_a_bundle));
    a.hint = "internal";
    X509SVID b = X509_SVID__INIT;
    b.spiffe_id = "spiffe://example.org/b";
    b.x509_svid = bin(svid_b_der, sizeof(svid_b_der));
    b.x509_svid_key = bin(svid_b_key, sizeof(svid_b_key));
    X509SVIDResponse__FederatedBundlesEntry other =
        X509_SVIDRESPONSE__FEDERATED_BUNDLES_ENTRY__INIT;
    other.key = "spiffe://other.org";
    other.value = bin(other_bundle, sizeof(other_bundle));

    X509SVID *svids[] = {&a, &b};
    X509SVIDResponse__FederatedBundlesEntry *bundles[] = {&other};
    X509SVIDResponse resp = X509_SVIDRESPONSE__INIT;
    resp.n_svids = 2;
    resp.svids = svids;
    resp.n_federated_bundles = 1;
    resp.federated_bundles = bundles;

    uint8_t buf[256];
    size_t len = x509_svidresponse__get_packed_size(&resp);
    cr_assert_eq(len, sizeof(x509_svid_response_wire) - 1);
    cr_assert_leq(len, sizeof(buf));
    cr_assert_eq(x509_svidresponse__pack(&resp, buf), len);

    /* §F.3: svids is field 1, length-delimited (0x0A); inside it spiffe_id is 0x0A again. */
    cr_assert_eq(buf[0], 0x0a, "svids tag: got 0x%02x", buf[0]);
    cr_assert_eq(buf[1], 47);
    cr_assert_eq(buf[2], 0x0a, "spiffe_id tag: got 0x%02x", buf[2]);
    cr_assert_eq(buf[3], 22);
    cr_assert_eq(buf[4 + 22], 0x12, "x509_svid tag: got 0x%02x", buf[4 + 22]);
    cr_assert_eq(memcmp(buf, x509_svid_response_wire, len), 0);
}

Test(workload_x509_svid_response, unpacks_every_field)
{
    const uint8_t *wire = (const uint8_t *)x509_svid_response_wire;
    X509SVIDResponse *resp =
        x509_svidresponse__unpack(NULL, sizeof(x509_svid_response_wire) - 1, wire);
    cr_assert_not_null(resp);

    cr_assert_eq(resp->n_svids, 2);
    const X509SVID *a = resp->svids[0];
    cr_assert_str_eq(a->spiffe_id, "spiffe://example.org/a");
    assert_bin_eq(a->x509_svid, svid_a_der, sizeof(svid_a_der));
    assert_bin_eq(a->x509_svid_key, svid_a_key, sizeof(svid_a_key));
    assert_bin_eq(a->bundle, svid_a_bundle, sizeof(svid_a_bundle));
    cr_assert_str_eq(a->hint, "internal");
    const X509SVID *b = resp->svids[1];
    cr_assert_str_eq(b->spiffe_id, "spiffe://example.org/b");
    assert_bin_eq(b->x509_svid, svid_b_der, sizeof(svid_b_der));
    assert_bin_eq(b->x509_svid_key, svid_b_key, sizeof(svid_b_key));
    assert_bin_eq(b->bundle, NULL, 0);
    cr_assert_str_eq(b->hint, ""); /* absent and empty are the same to a client (§F.3) */

    cr_assert_eq(resp->n_crl, 0);
    cr_assert_eq(resp->n_federated_bundles, 1);
    cr_assert_str_eq(resp->federated_bundles[0]->key, "spiffe://other.org");
    assert_bin_eq(resp->federated_bundles[0]->value, other_bundle, sizeof(other_bundle));

    x509_svidresponse__free_unpacked(resp, NULL);
}

Test(workload_x509_svid_response, refuses_garbage)
{
    static const struct {
        const char *why;
        const char *bytes;
        size_t len;
    } cases[] = {
        {"svids longer than the input", "\x0a\x05\x0a", 3},
        {"svids length varint cut short", "\x0a\x80", 2},
        {"spiffe_id overruns its svid", "\x0a\x02\x0a\x05", 4},
        {"svids sent as a varint", "\x08\x01", 2},
        {"reserved wire type 6", "\xde\xad\xbe\xef", 4},
        {"tag varint cut short", "\xff", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        X509SVIDResponse *resp =
            x509_svidresponse__unpack(NULL, cases[i].len, (const uint8_t *)cases[i].bytes);
        cr_expect_null(resp, "unpacked: %s", cases[i].why);
        if (resp != NULL) {
            x509_svidresponse__free_unpacked(resp, NULL);
        }
    }
}

Test(workload_validate_jwt_svid_response, round_trips_struct_claims)
{
    Google__Protobuf__Value sub = GOOGLE__PROTOBUF__VALUE__INIT;
    sub.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    sub.string_value = "spiffe://example.org/a";
    Google__Protobuf__Value exp = GOOGLE__PROTOBUF__VALUE__INIT;
    exp.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    exp.number_value = 1767225600.0;
    Google__Protobuf__Value aud0 = GOOGLE__PROTOBUF__VALUE__INIT;
    aud0.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    aud0.string_value = "weft";
    Google__Protobuf__Value aud1 = GOOGLE__PROTOBUF__VALUE__INIT;
    aud1.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    aud1.string_value = "spire";
    Google__Protobuf__Value *aud_values[] = {&aud0, &aud1};
    Google__Protobuf__ListValue aud_list = GOOGLE__PROTOBUF__LIST_VALUE__INIT;
    aud_list.n_values = 2;
    aud_list.values = aud_values;
    Google__Protobuf__Value aud = GOOGLE__PROTOBUF__VALUE__INIT;
    aud.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
    aud.list_value = &aud_list;

    Google__Protobuf__Struct__FieldsEntry f_sub = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
    f_sub.key = "sub";
    f_sub.value = &sub;
    Google__Protobuf__Struct__FieldsEntry f_exp = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
    f_exp.key = "exp";
    f_exp.value = &exp;
    Google__Protobuf__Struct__FieldsEntry f_aud = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
    f_aud.key = "aud";
    f_aud.value = &aud;
    Google__Protobuf__Struct__FieldsEntry *fields[] = {&f_sub, &f_exp, &f_aud};
    Google__Protobuf__Struct claims = GOOGLE__PROTOBUF__STRUCT__INIT;
    claims.n_fields = 3;
    claims.fields = fields;

    ValidateJWTSVIDResponse in = VALIDATE_JWTSVIDRESPONSE__INIT;
    in.spiffe_id = "spiffe://example.org/a";
    in.claims = &claims;

    uint8_t buf[512];
    size_t len = validate_jwtsvidresponse__get_packed_size(&in);
    cr_assert_leq(len, sizeof(buf));
    cr_assert_eq(validate_jwtsvidresponse__pack(&in, buf), len);
    cr_assert_eq(buf[0], 0x0a); /* spiffe_id (1) */
    cr_assert_eq(buf[1], 22);
    cr_assert_eq(buf[2 + 22], 0x12); /* claims (2) */

    ValidateJWTSVIDResponse *out = validate_jwtsvidresponse__unpack(NULL, len, buf);
    cr_assert_not_null(out);
    cr_assert_str_eq(out->spiffe_id, "spiffe://example.org/a");
    cr_assert_not_null(out->claims);
    cr_assert_eq(out->claims->n_fields, 3);

    const Google__Protobuf__Value *v = find_claim(out->claims, "sub");
    cr_assert_not_null(v);
    cr_assert_eq(v->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE);
    cr_assert_str_eq(v->string_value, "spiffe://example.org/a");
    v = find_claim(out->claims, "exp");
    cr_assert_not_null(v);
    cr_assert_eq(v->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE);
    cr_assert_eq(v->number_value, 1767225600.0);
    v = find_claim(out->claims, "aud");
    cr_assert_not_null(v);
    cr_assert_eq(v->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE);
    cr_assert_eq(v->list_value->n_values, 2);
    cr_assert_eq(v->list_value->values[0]->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE);
    cr_assert_str_eq(v->list_value->values[0]->string_value, "weft");
    cr_assert_eq(v->list_value->values[1]->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE);
    cr_assert_str_eq(v->list_value->values[1]->string_value, "spire");

    validate_jwtsvidresponse__free_unpacked(out, NULL);
}
