/* agent/alert.c: see alert.h. */
#include "agent/alert.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/base/timefmt.h"
#include "lib/httpclient/httpclient.h"

static const char *const names[AGENT_ALERT_KINDS] = {"WeftSVIDRunwayLow", "WeftSVIDRenewalFailing"};

struct state {
    bool firing;    /* what the condition says */
    bool delivered; /* the sinks were told of |firing| (or nothing to tell yet) */
    int64_t since;  /* when it started firing */
    int64_t ended;  /* when it resolved */
    char detail[256];
};

struct agent_alerts {
    struct agent_alert_config cfg;
    char *command, *url, *node;
    struct state st[AGENT_ALERT_KINDS];
};

struct agent_alerts *agent_alerts_new(const struct agent_alert_config *cfg)
{
    struct agent_alerts *a = weft_xcalloc(1, sizeof(*a));
    a->cfg = *cfg;
    a->command = cfg->command != NULL ? weft_xstrndup(cfg->command, strlen(cfg->command)) : NULL;
    a->url = cfg->url != NULL ? weft_xstrndup(cfg->url, strlen(cfg->url)) : NULL;
    a->node = weft_xstrndup(cfg->node != NULL ? cfg->node : "",
                            cfg->node != NULL ? strlen(cfg->node) : 0);
    if (a->cfg.runway_fraction <= 0 || a->cfg.runway_fraction >= 1) {
        a->cfg.runway_fraction = AGENT_ALERT_DEFAULT_FRACTION;
    }
    if (a->cfg.failures == 0) {
        a->cfg.failures = AGENT_ALERT_DEFAULT_FAILURES;
    }
    if (a->cfg.timeout_ms <= 0) {
        a->cfg.timeout_ms = 5000;
    }
    for (int k = 0; k < AGENT_ALERT_KINDS; k++) {
        a->st[k].delivered = true; /* nothing fires at start: nothing to tell */
    }
    return a;
}

void agent_alerts_free(struct agent_alerts *a)
{
    if (a == NULL) {
        return;
    }
    free(a->command);
    free(a->url);
    free(a->node);
    free(a);
}

bool agent_alerts_firing(const struct agent_alerts *a, enum agent_alert_kind k)
{
    return a->st[k].firing;
}

/* alert_json is one alert in Alertmanager v2's shape. */
static json_t *alert_json(const struct agent_alerts *a, enum agent_alert_kind k)
{
    const struct state *s = &a->st[k];
    char starts[WEFT_RFC3339_LEN], ends[WEFT_RFC3339_LEN];
    weft_time_format_rfc3339(starts, s->since);
    json_t *o =
        json_pack("{s:{s:s,s:s,s:s},s:{s:s,s:s},s:s}", "labels", "alertname", names[k], "node",
                  a->node, "severity", "page", "annotations", "summary",
                  k == AGENT_ALERT_RUNWAY ? "workload SVIDs expire soon unless the CA is reached"
                                          : "the agent cannot renew its SVIDs",
                  "description", s->detail, "startsAt", starts);
    if (!s->firing) {
        weft_time_format_rfc3339(ends, s->ended);
        json_object_set_new(o, "endsAt", json_string(ends));
    }
    return o;
}

extern char **environ;

/* run_command runs the command with |json| on its stdin. posix_spawn, not fork: gRPC's fork
 * handlers would stall a fork from a process whose other threads are in gRPC calls. */
static int run_command(const struct agent_alerts *a, const char *json, size_t len)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        return WEFT_EIO;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[0], 0);
    char *argv[] = {"sh", "-c", a->command, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[0]);
    if (rc != 0) {
        close(pipefd[1]);
        return WEFT_EIO;
    }
    /* (SIGPIPE is ignored by the agent: a command that does not read gets EPIPE here) */
    bool wrote = write(pipefd[1], json, len) == (ssize_t)len;
    close(pipefd[1]);
    /* bounded: a command that hangs is killed after the delivery timeout */
    int status = 0;
    for (int waited = 0; waitpid(pid, &status, WNOHANG) == 0; waited += 50) {
        if (waited >= a->cfg.timeout_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return WEFT_EIO;
        }
        usleep(50 * 1000);
    }
    return wrote && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? WEFT_OK : WEFT_EIO;
}

static int post(const struct agent_alerts *a, const char *json, size_t len, char *err,
                size_t err_len)
{
    const char *headers[] = {"Content-Type: application/json"};
    struct httpclient_request req = {.method = "POST",
                                     .url = a->url,
                                     .headers = headers,
                                     .num_headers = 1,
                                     .body = json,
                                     .body_len = len,
                                     .timeout_ms = a->cfg.timeout_ms,
                                     .max_body = 64 * 1024};
    struct httpclient_response resp;
    TRY(httpclient_do(&req, &resp, err, err_len));
    int status = resp.status;
    httpclient_response_free(&resp);
    if (status / 100 != 2) {
        snprintf(err, err_len, "the alert receiver answered %d", status);
        return WEFT_EIO;
    }
    return WEFT_OK;
}

/* deliver tells every sink of alert |k|'s state; WEFT_OK when all took it. */
static int deliver(struct agent_alerts *a, enum agent_alert_kind k)
{
    json_t *alert = alert_json(a, k);
    int rc = WEFT_OK;
    char err[256] = "";
    if (a->command != NULL) {
        json_t *doc = json_pack("{s:s,s:O}", "status", a->st[k].firing ? "firing" : "resolved",
                                "alert", alert);
        char *text = json_dumps(doc, JSON_COMPACT);
        if (text == NULL || run_command(a, text, strlen(text)) != WEFT_OK) {
            snprintf(err, sizeof(err), "the alert command failed");
            rc = WEFT_EIO;
        }
        free(text);
        json_decref(doc);
    }
    if (a->url != NULL) {
        json_t *list = json_pack("[O]", alert);
        char *text = json_dumps(list, JSON_COMPACT);
        if (text == NULL || post(a, text, strlen(text), err, sizeof(err)) != WEFT_OK) {
            rc = WEFT_EIO;
        }
        free(text);
        json_decref(list);
    }
    json_decref(alert);
    weft_log(rc == WEFT_OK ? WEFT_LOG_INFO : WEFT_LOG_ERROR,
             rc == WEFT_OK ? "alert delivered" : "alert delivery failed", 3, "alert", names[k],
             "status", a->st[k].firing ? "firing" : "resolved", "error", err);
    return rc;
}

static void set(struct agent_alerts *a, enum agent_alert_kind k, bool firing, int64_t now,
                const char *detail)
{
    struct state *s = &a->st[k];
    if (firing != s->firing) {
        s->firing = firing;
        s->delivered = false;
        if (firing) {
            s->since = now;
        } else {
            s->ended = now;
        }
        weft_log(firing ? WEFT_LOG_ERROR : WEFT_LOG_INFO,
                 firing ? "alert firing" : "alert resolved", 2, "alert", names[k], "detail",
                 detail);
    }
    if (firing) {
        snprintf(s->detail, sizeof(s->detail), "%s", detail);
    }
}

int agent_alerts_evaluate(struct agent_alerts *a, const struct agent_alert_input *in)
{
    char detail[256];
    int64_t life = in->earliest_not_after - in->earliest_life_from;
    int64_t left = in->earliest_not_after - in->now;
    bool low = in->lapsed > 0 || (in->earliest_not_after != 0 && life > 0 &&
                                  (double)left < a->cfg.runway_fraction * (double)life);
    if (in->lapsed > 0) {
        snprintf(detail, sizeof(detail),
                 "%zu SVID(s) expired unrenewed: their workloads have no identity", in->lapsed);
    } else {
        snprintf(detail, sizeof(detail),
                 "%lld s left of the first SVID to expire (lifetime %lld s)", (long long)left,
                 (long long)life);
    }
    set(a, AGENT_ALERT_RUNWAY, low, in->now, detail);
    snprintf(detail, sizeof(detail), "%u renewals failed in a row", in->consecutive_failures);
    set(a, AGENT_ALERT_RENEWAL, in->consecutive_failures >= a->cfg.failures, in->now, detail);
    int failed = 0;
    for (int k = 0; k < AGENT_ALERT_KINDS; k++) {
        if (!a->st[k].delivered && (a->command != NULL || a->url != NULL)) {
            if (deliver(a, (enum agent_alert_kind)k) == WEFT_OK) {
                a->st[k].delivered = true;
            } else {
                failed++;
            }
        }
    }
    return failed;
}
