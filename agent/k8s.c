/* agent/k8s.c: see k8s.h. */
#include "agent/k8s.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/cgroup.h"
#include "agent/podlist.h"
#include "lib/base/file.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/httpclient/httpclient.h"

struct agent_k8s {
    char *url, *token_file, *ca_file, *proc;
    bool insecure;
    int timeout_ms, retries, interval_ms;
    struct httpclient_response list; /* the last pod list fetched; body NULL before the first */
    int64_t list_at_ms;              /* when it was fetched (monotonic) */
    struct agent_k8s_stats stats;
};

static int64_t mono_ms(void);

static char *dup_or_null(const char *s) { return s != NULL ? weft_xstrndup(s, strlen(s)) : NULL; }

int agent_k8s_new(struct agent_k8s **out, const struct agent_k8s_config *cfg, char *err,
                  size_t err_len)
{
    *out = NULL;
    const char *url = cfg->url != NULL ? cfg->url : AGENT_KUBELET_DEFAULT_URL;
    if (strncmp(url, "https://", 8) == 0 && cfg->ca_file == NULL && !cfg->insecure_skip_verify) {
        snprintf(err, err_len,
                 "the kubelet at %.200s: give its CA, or say explicitly to skip verifying it", url);
        return WEFT_EINVAL;
    }
    if (strncmp(url, "http://", 7) == 0 && cfg->token_file != NULL) {
        weft_log(WEFT_LOG_WARN,
                 "the kubelet is reached over plain HTTP: its token travels in the clear and "
                 "its pod list is not authenticated",
                 1, "url", url);
    }
    struct agent_k8s *k = weft_xcalloc(1, sizeof(*k));
    k->url = dup_or_null(url);
    k->token_file = dup_or_null(cfg->token_file);
    k->ca_file = dup_or_null(cfg->ca_file);
    k->proc = dup_or_null(cfg->proc != NULL ? cfg->proc : "/proc");
    k->insecure = cfg->insecure_skip_verify;
    k->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 5000;
    k->retries = cfg->retries > 0 ? cfg->retries : AGENT_KUBELET_DEFAULT_RETRIES;
    k->interval_ms =
        cfg->retry_interval_ms > 0 ? cfg->retry_interval_ms : AGENT_KUBELET_DEFAULT_INTERVAL_MS;
    *out = k;
    return WEFT_OK;
}

void agent_k8s_free(struct agent_k8s *k)
{
    if (k == NULL) {
        return;
    }
    httpclient_response_free(&k->list);
    free(k->url);
    free(k->token_file);
    free(k->ca_file);
    free(k->proc);
    free(k);
}

void agent_k8s_stats(const struct agent_k8s *k, struct agent_k8s_stats *out) { *out = k->stats; }

/* fetch replaces the cached pod list. */
static int fetch(struct agent_k8s *k, char *err, size_t err_len)
{
    k->stats.fetches++;
    char header[32 + AGENT_KUBELET_TOKEN_MAX];
    const char *headers[1] = {header};
    size_t num_headers = 0;
    if (k->token_file != NULL) {
        uint8_t *tok;
        size_t len;
        if (weft_file_read(&tok, &len, k->token_file, AGENT_KUBELET_TOKEN_MAX) != WEFT_OK) {
            k->stats.fetch_failures++;
            snprintf(err, err_len, "the kubelet token %.200s: %s", k->token_file, strerror(errno));
            return WEFT_EIO;
        }
        while (len > 0 && (tok[len - 1] == '\n' || tok[len - 1] == '\r' || tok[len - 1] == ' ')) {
            len--;
        }
        snprintf(header, sizeof(header), "Authorization: Bearer %.*s", (int)len, (char *)tok);
        memset(tok, 0, len);
        free(tok);
        num_headers = 1;
    }
    struct httpclient_request req = {
        .method = "GET",
        .url = k->url,
        .headers = headers,
        .num_headers = num_headers,
        .timeout_ms = k->timeout_ms,
        .max_body = AGENT_PODLIST_MAX,
        .ca_file = k->ca_file,
        .insecure_skip_verify = k->insecure,
    };
    struct httpclient_response resp;
    int rc = httpclient_do(&req, &resp, err, err_len);
    memset(header, 0, sizeof(header));
    if (rc == WEFT_OK && resp.status != 200) {
        snprintf(err, err_len, "the kubelet at %.200s answered %d%s", k->url, resp.status,
                 resp.status == 401 || resp.status == 403
                     ? " (the agent's token is refused, or lacks RBAC on nodes/proxy)"
                     : "");
        httpclient_response_free(&resp);
        rc = WEFT_EIO;
    }
    if (rc != WEFT_OK) {
        k->stats.fetch_failures++;
        return rc;
    }
    httpclient_response_free(&k->list);
    k->list = resp;
    k->list_at_ms = mono_ms();
    return WEFT_OK;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int agent_attest_k8s(struct agent_k8s *k, const struct agent_peer *p, struct agent_selectors *out,
                     char *err, size_t err_len)
{
    char path[160];
    snprintf(path, sizeof(path), "%.100s/%d/cgroup", k->proc, (int)p->pid);
    uint8_t *text;
    size_t len;
    if (weft_file_read(&text, &len, path, AGENT_CGROUP_MAX) != WEFT_OK) {
        snprintf(err, err_len, "pid %d: cannot read its cgroups: %s", (int)p->pid, strerror(errno));
        return agent_peer_same(p, k->proc) ? WEFT_EIO : WEFT_ESTALE;
    }
    char uid[AGENT_POD_UID_LEN + 1], cid[AGENT_CONTAINER_ID_LEN + 1];
    int rc = agent_cgroup_parse((char *)text, len, uid, cid, err, err_len);
    free(text);
    if (!agent_peer_same(p, k->proc)) {
        snprintf(err, err_len, "pid %d: the process changed while it was attested", (int)p->pid);
        return WEFT_ESTALE;
    }
    if (rc == WEFT_ENOTFOUND) {
        snprintf(err, err_len, "pid %d is not in a Kubernetes pod's container", (int)p->pid);
    }
    TRY(rc);
    struct agent_selectors *got = weft_xcalloc(1, sizeof(*got));
    size_t skipped;
    rc = WEFT_ENOTFOUND;
    for (int attempt = 0; rc == WEFT_ENOTFOUND && attempt <= k->retries; attempt++) {
        /* labels change: a list older than AGENT_KUBELET_MAX_AGE_MS is not trusted */
        if (attempt > 0 || k->list.body == NULL ||
            mono_ms() - k->list_at_ms > AGENT_KUBELET_MAX_AGE_MS) {
            if (attempt > 1) {
                sleep_ms(k->interval_ms);
            }
            int frc = fetch(k, err, err_len);
            if (frc != WEFT_OK) {
                rc = frc;
                break;
            }
        }
        rc = agent_podlist_selectors((char *)k->list.body, k->list.body_len, uid, cid, got,
                                     &skipped, err, err_len);
        if (rc == WEFT_ENOTFOUND) {
            k->stats.misses++;
        }
    }
    if (rc == WEFT_ENOTFOUND) {
        snprintf(err, err_len, "pod %s container %.12s: the kubelet does not list it", uid, cid);
    }
    for (size_t i = 0; rc == WEFT_OK && i < got->num; i++) {
        if (agent_selectors_add(out, "%s", got->sel[i]) != WEFT_OK) {
            snprintf(err, err_len, "too many selectors");
            rc = WEFT_ELIMIT;
        }
    }
    free(got);
    return rc;
}
