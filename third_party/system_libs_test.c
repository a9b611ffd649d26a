/* third_party/system_libs_test.c: every Debian library wrapped in third_party/BUILD.bazel links
 * and answers, in one process, the way weft's daemons will use them together. */
#include <criterion/criterion.h>
#include <string.h>

#include <curl/curl.h>
#include <ev.h>
#include <grpc/grpc.h>
#include <http_parser.h>
#include <jansson.h>
#include <openssl/ssl.h>
#include <protobuf-c/protobuf-c.h>
#include <sqlite3.h>
#include <yaml.h>

#if !defined(OPENSSL_IS_BORINGSSL)
#error "<openssl/ssl.h> is not BoringSSL's: the include path must put /usr/include/android first"
#endif

Test(system_libs, boringssl_is_the_tls_library)
{
    /* The headers (checked above) and the library are BoringSSL's, not OpenSSL's
     * (DESIGN.md §3). */
    cr_assert_str_eq(OpenSSL_version(OPENSSL_VERSION), "BoringSSL");
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    cr_assert_not_null(ctx);
    cr_assert(SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION));
    SSL_CTX_free(ctx);
}

Test(system_libs, grpc_core_starts_and_stops_beside_boringssl)
{
    grpc_init();
    cr_assert_not_null(grpc_version_string());
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    cr_assert_not_null(cq);
    grpc_completion_queue_shutdown(cq);
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    cr_assert_eq(ev.type, GRPC_QUEUE_SHUTDOWN);
    grpc_completion_queue_destroy(cq);
    grpc_shutdown();
}

Test(system_libs, curl_is_the_gnutls_flavour_beside_boringssl)
{
    /* weft-ca's Kubernetes client: libcurl over GnuTLS, so no OpenSSL symbols meet BoringSSL's
     * in one process, and BoringSSL still answers for our own TLS. */
    cr_assert_eq(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
    curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    cr_assert_not_null(v->ssl_version);
    cr_assert_not_null(strstr(v->ssl_version, "GnuTLS"), "libcurl's TLS is %s", v->ssl_version);
    cr_assert_str_eq(OpenSSL_version(OPENSSL_VERSION), "BoringSSL");
    curl_global_cleanup();
}

Test(system_libs, libev_runs_a_loop)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    cr_assert_not_null(loop);
    cr_assert_eq(ev_version_major(), EV_VERSION_MAJOR);
    cr_assert_eq(ev_run(loop, EVRUN_NOWAIT), 0, "a loop with no watchers has nothing to do");
    ev_loop_destroy(loop);
}

Test(system_libs, parsers_parse)
{
    json_error_t err;
    json_t *doc = json_loads("{\"a\": 1}", 0, &err);
    cr_assert_not_null(doc);
    cr_assert_eq(json_integer_value(json_object_get(doc, "a")), 1);
    json_decref(doc);

    yaml_parser_t parser;
    yaml_event_t event;
    static const unsigned char yaml[] = "a: 1\n";
    cr_assert(yaml_parser_initialize(&parser));
    yaml_parser_set_input_string(&parser, yaml, sizeof(yaml) - 1);
    cr_assert(yaml_parser_parse(&parser, &event));
    cr_assert_eq(event.type, YAML_STREAM_START_EVENT);
    yaml_event_delete(&event);
    yaml_parser_delete(&parser);

    http_parser hp;
    http_parser_settings settings;
    memset(&settings, 0, sizeof(settings));
    http_parser_init(&hp, HTTP_REQUEST);
    static const char req[] = "GET /ready HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(http_parser_execute(&hp, &settings, req, sizeof(req) - 1), sizeof(req) - 1);
    cr_assert_eq(hp.method, HTTP_GET);

    cr_assert_gt(protobuf_c_version_number(), 1000000);
}

Test(system_libs, sqlite_keeps_a_row)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
    cr_assert_eq(
        sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES (42);", NULL, NULL, NULL),
        SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT x FROM t", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(st, 0), 42);
    sqlite3_finalize(st);
    sqlite3_close(db);
}
