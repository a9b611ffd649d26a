/* lib/transport/grpcfd_test.c: the contract of grpcfd: the "fd:N" peer string gRPC gives a call
 * on an adopted fd, its strict parse, and failing closed on everything else. No TLS here: a
 * socketpair stands in for the relay. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>

#include "lib/transport/fixtures.h"
#include "lib/transport/grpcfd.h"
#include "lib/transport/internal.h"

TestSuite(grpcfd, .timeout = 30);

static struct weft_peer peer_of(const char *id, int64_t not_after)
{
    struct weft_peer p = {.id = fixture_id(id), .not_after = not_after};
    return p;
}

Test(grpcfd, parse_reads_the_fd_number)
{
    static const struct {
        const char *in;
        int fd;
    } good[] = {{"fd:0", 0}, {"fd:7", 7}, {"fd:1234", 1234}, {"fd:1048575", GRPCFD_MAX_FD - 1}};
    for (size_t i = 0; i < nitems(good); i++) {
        int fd;
        cr_assert_eq(grpcfd_parse_peer_fd(&fd, good[i].in), WEFT_OK, "%s", good[i].in);
        cr_assert_eq(fd, good[i].fd, "%s", good[i].in);
    }
}

Test(grpcfd, parse_refuses_anything_but_fd_and_a_number)
{
    static const char *const bad[] = {
        "",
        "fd",
        "fd:",
        "FD:3",
        "fd:-1",
        "fd:+1",
        "fd: 1",
        "fd:1 ",
        "fd:1\n",
        "fd:01",
        "fd:00",
        "fd:1x",
        "fd:0x1",
        "fd:1048576",
        "fd:99999999999999999999",
        "fdx:1",
        " fd:1",
        "ipv4:127.0.0.1:5000",
        "ipv6:[::1]:5000",
        "unix:/run/weft.sock",
        "fd-client",
    };
    for (size_t i = 0; i < nitems(bad); i++) {
        int fd = 42;
        cr_assert_eq(grpcfd_parse_peer_fd(&fd, bad[i]), WEFT_ENOTFOUND, "\"%s\"", bad[i]);
        cr_assert_eq(fd, -1);
    }
    int fd;
    cr_assert_eq(grpcfd_parse_peer_fd(&fd, NULL), WEFT_ENOTFOUND);
}

Test(grpcfd, lookup_finds_a_recorded_socket)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct weft_peer in = peer_of(FIXTURE_NODE_A_ID, 1234);
    cr_assert_eq(grpcfd_record(NULL, sv[1], &in), WEFT_OK);
    char peer_str[32];
    snprintf(peer_str, sizeof(peer_str), "fd:%d", sv[1]);
    struct weft_peer out;
    cr_assert_eq(grpcfd_peer_lookup(&out, peer_str), WEFT_OK);
    cr_assert_str_eq(out.id.str, FIXTURE_NODE_A_ID);
    cr_assert_eq(out.not_after, 1234);
    close(sv[0]);
    close(sv[1]);
}

Test(grpcfd, lookup_misses_an_fd_never_recorded)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    char peer_str[32];
    snprintf(peer_str, sizeof(peer_str), "fd:%d", sv[0]);
    struct weft_peer out;
    cr_assert_eq(grpcfd_peer_lookup(&out, peer_str), WEFT_ENOTFOUND);
    cr_assert_eq(out.id.len, 0);
    cr_assert_eq(grpcfd_peer_lookup(&out, "fd:1048575"), WEFT_ENOTFOUND);
    cr_assert_eq(grpcfd_peer_lookup(&out, "unix:/run/weft.sock"), WEFT_ENOTFOUND);
    close(sv[0]);
    close(sv[1]);
}

Test(grpcfd, lookup_misses_a_number_now_naming_another_socket)
{
    int sv[2], other[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, other), 0);
    struct weft_peer in = peer_of(FIXTURE_NODE_A_ID, 1234);
    cr_assert_eq(grpcfd_record(NULL, sv[1], &in), WEFT_OK);
    char peer_str[32];
    snprintf(peer_str, sizeof(peer_str), "fd:%d", sv[1]);
    /* The recorded socket goes and its number comes back as another socket. */
    cr_assert_eq(dup2(other[0], sv[1]), sv[1]);
    struct weft_peer out;
    cr_assert_eq(grpcfd_peer_lookup(&out, peer_str), WEFT_ENOTFOUND);
    /* Or stays closed. */
    close(sv[1]);
    cr_assert_eq(grpcfd_peer_lookup(&out, peer_str), WEFT_ENOTFOUND);
    close(sv[0]);
    close(other[0]);
    close(other[1]);
}

Test(grpcfd, record_refuses_what_is_not_a_socket)
{
    int pipe_fds[2];
    cr_assert_eq(pipe(pipe_fds), 0);
    struct weft_peer in = peer_of(FIXTURE_NODE_A_ID, 0);
    cr_assert_eq(grpcfd_record(NULL, pipe_fds[0], &in), WEFT_EINVAL);
    cr_assert_eq(grpcfd_record(NULL, -1, &in), WEFT_EINVAL);
    cr_assert_eq(grpcfd_record(NULL, GRPCFD_MAX_FD, &in), WEFT_ELIMIT);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
}

/* --- with a gRPC server ------------------------------------------------------------------- */

static struct fixture_echo echo;

static void echo_setup(void) { fixture_echo_start(&echo); }

static void echo_teardown(void) { fixture_echo_free(&echo); }

TestSuite(grpcfd_server, .init = echo_setup, .fini = echo_teardown, .timeout = 30);

Test(grpcfd_server, call_peer_string_is_fd_and_the_adopted_number)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    struct weft_peer in = peer_of(FIXTURE_NODE_A_ID, 1234);
    int adopted = sv[1];
    cr_assert_eq(grpcfd_adopt(echo.fds, adopted, &in), WEFT_OK);
    grpc_channel *ch = grpcfd_channel_new(sv[0], FIXTURE_AUTHORITY);
    cr_assert_not_null(ch);
    char reply[256];
    cr_assert_eq(fixture_unary(ch, reply, sizeof(reply)), GRPC_STATUS_OK);
    cr_assert_str_eq(reply, FIXTURE_NODE_A_ID);
    /* gRPC core 1.51's format, which grpcfd_call_peer depends on: pinned here. */
    char want[32];
    snprintf(want, sizeof(want), "fd:%d", adopted);
    cr_assert_eq(echo.num_calls, 1);
    cr_assert_str_eq(echo.peer_strs[0], want);
    grpc_channel_destroy(ch);
}

Test(grpcfd_server, call_on_an_fd_not_adopted_finds_no_peer)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    /* Straight to gRPC, as nothing in weft does: the call must fail closed. */
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    grpc_server_add_channel_from_fd(echo.server, sv[1], creds);
    grpc_server_credentials_release(creds);
    grpc_channel *ch = grpcfd_channel_new(sv[0], FIXTURE_AUTHORITY);
    char reply[256];
    cr_assert_eq(fixture_unary(ch, reply, sizeof(reply)), GRPC_STATUS_PERMISSION_DENIED);
    cr_assert_str_eq(reply, "");
    cr_assert_eq(echo.num_denied, 1);
    grpc_channel_destroy(ch);
}

Test(grpcfd_server, adopt_after_close_closes_the_fd)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    grpcfd_server_close(echo.fds);
    struct weft_peer in = peer_of(FIXTURE_NODE_A_ID, 0);
    cr_assert_eq(grpcfd_adopt(echo.fds, sv[1], &in), WEFT_EINVAL);
    cr_assert(fixture_wait_eof(sv[0]), "the refused fd was left open");
    close(sv[0]);
}
