/* agent/alert_test.c: the two alerts fire once and resolve once, through a command sink and an
 * Alertmanager-shaped POST to a receiver of the test's own on loopback. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/alert.h"
#include "lib/base/file.h"
#include "test/testlib/net.h"

#define NB INT64_C(1700000000)

static char dir[] = "/tmp/weft-alert-test-XXXXXX";
static char out[128], cmd[320];

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the agent does */
    cr_assert_not_null(mkdtemp(dir));
    snprintf(out, sizeof(out), "%s/alerts", dir);
    snprintf(cmd, sizeof(cmd), "cat >> %s; echo >> %s", out, out);
}

static void teardown(void)
{
    char rm[96];
    snprintf(rm, sizeof(rm), "rm -rf %s", dir);
    cr_assert_eq(system(rm), 0);
}

TestSuite(alert, .init = setup, .fini = teardown, .timeout = 30);

static char *delivered(void)
{
    uint8_t *data = NULL;
    size_t len;
    if (weft_file_read(&data, &len, out, 1 << 20) != WEFT_OK) {
        return strdup("");
    }
    return (char *)data;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++) {
        n++;
    }
    return n;
}

Test(alert, runway_fires_once_below_a_quarter_and_resolves_once)
{
    struct agent_alert_config cfg = {.command = cmd, .node = "node-a"};
    struct agent_alerts *a = agent_alerts_new(&cfg);
    /* an SVID of one hour: fine at half-life */
    struct agent_alert_input in = {NB + 1800, NB, NB + 3600, 0, 0};
    cr_assert_eq(agent_alerts_evaluate(a, &in), 0);
    cr_assert(!agent_alerts_firing(a, AGENT_ALERT_RUNWAY));
    /* 14 minutes left of 60: below a quarter */
    in.now = NB + 3600 - 14 * 60;
    cr_assert_eq(agent_alerts_evaluate(a, &in), 0);
    cr_assert(agent_alerts_firing(a, AGENT_ALERT_RUNWAY));
    in.now += 60;
    cr_assert_eq(agent_alerts_evaluate(a, &in), 0, "still firing: not delivered again");
    /* expired unrenewed: no SVID left, and the page stays up */
    in = (struct agent_alert_input){NB + 3700, 0, 0, 1, 0};
    cr_assert_eq(agent_alerts_evaluate(a, &in), 0);
    cr_assert(agent_alerts_firing(a, AGENT_ALERT_RUNWAY), "a lapsed SVID keeps it firing");
    /* renewed: a new hour */
    in = (struct agent_alert_input){NB + 3800, NB + 3790, NB + 3790 + 3600, 0, 0};
    cr_assert_eq(agent_alerts_evaluate(a, &in), 0);
    cr_assert(!agent_alerts_firing(a, AGENT_ALERT_RUNWAY));
    char *text = delivered();
    cr_assert_eq(count(text, "\"status\":\"firing\""), 1, "%s", text);
    cr_assert_eq(count(text, "\"status\":\"resolved\""), 1, "%s", text);
    cr_assert_eq(count(text, "\"alertname\":\"WeftSVIDRunwayLow\""), 2);
    cr_assert_eq(count(text, "\"node\":\"node-a\""), 2);
    cr_assert_eq(count(text, "\"endsAt\""), 1, "only the resolution has an end");
    free(text);
    agent_alerts_free(a);
}

Test(alert, renewal_failing_fires_after_n_in_a_row)
{
    struct agent_alert_config cfg = {.command = cmd, .failures = 3};
    struct agent_alerts *a = agent_alerts_new(&cfg);
    struct agent_alert_input in = {NB, 0, 0, 0, 2};
    cr_assert_eq(agent_alerts_evaluate(a, &in), 0);
    cr_assert(!agent_alerts_firing(a, AGENT_ALERT_RENEWAL));
    in.consecutive_failures = 3;
    cr_assert_eq(agent_alerts_evaluate(a, &in), 0);
    cr_assert(agent_alerts_firing(a, AGENT_ALERT_RENEWAL));
    in.consecutive_failures = 0;
    cr_assert_eq(agent_alerts_evaluate(a, &in), 0);
    char *text = delivered();
    cr_assert_eq(count(text, "WeftSVIDRenewalFailing"), 2, "%s", text);
    cr_assert_not_null(strstr(text, "3 renewals failed in a row"), "%s", text);
    free(text);
    agent_alerts_free(a);
}

/* --- an Alertmanager of our own --------------------------------------------------------------- */

struct receiver {
    int lfd, port, status[2]; /* the answers to the first and second delivery */
    pthread_t th;
    char body[8192];
    int served;
};

static void *receive(void *arg)
{
    struct receiver *r = arg;
    for (r->served = 0; r->served < 2; r->served++) {
        int fd = accept(r->lfd, NULL, NULL);
        if (fd < 0) {
            return NULL;
        }
        char buf[8192] = "";
        size_t len = 0;
        for (;;) {
            ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
            if (n <= 0) {
                break;
            }
            len += (size_t)n;
            buf[len] = '\0';
            char *end = strstr(buf, "\r\n\r\n");
            const char *cl = strstr(buf, "Content-Length: ");
            if (end != NULL && cl != NULL &&
                len >= (size_t)(end + 4 - buf) + (size_t)atoi(cl + 16)) {
                snprintf(r->body, sizeof(r->body), "%s", end + 4);
                break;
            }
        }
        char resp[64];
        int n = snprintf(resp, sizeof(resp), "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n",
                         r->status[r->served]);
        (void)!send(fd, resp, (size_t)n, MSG_NOSIGNAL);
        close(fd);
    }
    return NULL;
}

static void receiver_start(struct receiver *r, int first, int second)
{
    r->status[0] = first;
    r->status[1] = second;
    r->lfd = testlib_listen_loopback(&r->port);
    cr_assert_geq(r->lfd, 0);
    cr_assert_eq(pthread_create(&r->th, NULL, receive, r), 0);
}

static void receiver_stop(struct receiver *r)
{
    shutdown(r->lfd, SHUT_RDWR);
    pthread_join(r->th, NULL);
    close(r->lfd);
}

Test(alert, alertmanager_gets_a_v2_alert_list_and_a_refusal_is_retried)
{
    struct receiver r = {0};
    receiver_start(&r, 500, 200); /* the first delivery is refused, the retry taken */
    char url[96];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/v2/alerts", r.port);
    struct agent_alert_config cfg = {.url = url, .node = "node-a", .timeout_ms = 2000};
    struct agent_alerts *a = agent_alerts_new(&cfg);
    struct agent_alert_input in = {NB, 0, 0, 0, 5};
    cr_assert_eq(agent_alerts_evaluate(a, &in), 1, "a refused delivery counts as failed");
    cr_assert_eq(agent_alerts_evaluate(a, &in), 0, "and is tried again, and taken");
    cr_assert_eq(agent_alerts_evaluate(a, &in), 0, "then nothing more to tell");
    receiver_stop(&r);
    cr_assert_eq(r.served, 2);
    cr_assert_eq(r.body[0], '[', "a JSON list: %s", r.body);
    cr_assert_not_null(strstr(r.body, "\"alertname\":\"WeftSVIDRenewalFailing\""), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"startsAt\":\"2023-11-14T22:13:20Z\""), "%s", r.body);
    cr_assert_null(strstr(r.body, "endsAt"), "firing: no end");
    agent_alerts_free(a);
}
