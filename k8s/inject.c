/* k8s/inject.c: what k8s/inject.h promises. Everything is decided first (validation of every
 * annotation and probe), then the patch is written, so an object is either injected whole or
 * refused with a reason. */
#include "k8s/inject.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s/jsonpatch.h"
#include "lib/base/mem.h"
#include "lib/base/netaddr.h"

#define NAME_INIT_TMP "weft-init-tmp" /* weft-init's writable /tmp (xtables lock) */
#define MAX_IDENT 320
#define MAX_QUANTITY 32

/* where: the object being injected, for messages ("Deployment shop/web") */
struct pod {
    char ident[MAX_IDENT];
    const char *ns;
    const json_t *meta; /* the pod's or the template's metadata; may be NULL */
    const json_t *spec; /* the pod spec */
    const char *base;   /* JSON Pointer of the pod (template) in the object: "" or "/spec/..." */
    /* decided */
    bool native, rewrite_probes;
    char in_ports[K8S_INJECT_MAX_ANNOTATION + 16], out_ports[K8S_INJECT_MAX_ANNOTATION];
    char cidrs[K8S_INJECT_MAX_ANNOTATION];
    const char *cpu_req, *mem_req, *mem_limit;
};

static const char *annotation(const struct pod *p, const char *key);
static int errf(char *err, size_t err_len, const struct pod *p, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int errf(char *err, size_t err_len, const struct pod *p, const char *fmt, ...)
{
    int n = snprintf(err, err_len, "%s: ", p->ident);
    if (n >= 0 && (size_t)n < err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, err_len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return WEFT_EINVAL;
}

void k8s_inject_opts_init(struct k8s_inject_opts *opts)
{
    opts->image = K8S_INJECT_DEFAULT_IMAGE;
    opts->native_sidecar = true;
    opts->namespace = NULL;
}

static const char *annotation(const struct pod *p, const char *key)
{
    return json_string_value(json_object_get(json_object_get(p->meta, "annotations"), key));
}

/* ---- finding the pod ---- */

/* locate points |p| at the pod spec inside |obj|, or returns the reason it has none. */
static const char *locate(struct pod *p, const json_t *obj, const struct k8s_inject_opts *opts)
{
    static const struct {
        const char *group, *kind, *path; /* path: the pod template, "" for a Pod */
    } kinds[] = {
        {"", "Pod", ""},
        {"apps", "Deployment", "/spec/template"},
        {"apps", "StatefulSet", "/spec/template"},
        {"apps", "DaemonSet", "/spec/template"},
        {"apps", "ReplicaSet", "/spec/template"},
        {"batch", "Job", "/spec/template"},
        {"batch", "CronJob", "/spec/jobTemplate/spec/template"},
    };
    const char *kind = json_string_value(json_object_get(obj, "kind"));
    const char *api = json_string_value(json_object_get(obj, "apiVersion"));
    if (!json_is_object(obj) || kind == NULL || api == NULL) {
        return "not a workload";
    }
    const char *slash = strchr(api, '/');
    size_t glen = slash != NULL ? (size_t)(slash - api) : 0;
    const json_t *meta = json_object_get(obj, "metadata");
    const char *name = json_string_value(json_object_get(meta, "name"));
    if (name == NULL) {
        name = json_string_value(json_object_get(meta, "generateName"));
    }
    p->ns = json_string_value(json_object_get(meta, "namespace"));
    if (p->ns == NULL || p->ns[0] == '\0') {
        p->ns = opts->namespace != NULL ? opts->namespace : "default";
    }
    snprintf(p->ident, sizeof(p->ident), "%.40s %.100s/%.150s", kind, p->ns,
             name != NULL ? name : "(unnamed)");
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(kind, kinds[i].kind) != 0 || strlen(kinds[i].group) != glen ||
            strncmp(api, kinds[i].group, glen) != 0) {
            continue;
        }
        const json_t *t = obj;
        p->base = kinds[i].path;
        /* walk the path's tokens ("/spec/template" -> spec, template) */
        for (const char *s = kinds[i].path; *s == '/' && t != NULL;) {
            s++;
            size_t len = strcspn(s, "/");
            char tok[32];
            snprintf(tok, sizeof(tok), "%.*s", (int)len, s);
            t = json_object_get(t, tok);
            s += len;
        }
        /* "metadata:" with nothing after it is a YAML null: as good as absent */
        p->meta = json_object_get(t, "metadata");
        p->meta = json_is_null(p->meta) ? NULL : p->meta;
        p->spec = json_object_get(t, "spec");
        return NULL;
    }
    return "not a workload";
}

/* ---- annotations ---- */

static int bool_annotation(bool *out, const struct pod *p, const char *key, char *err,
                           size_t err_len)
{
    const char *v = annotation(p, key);
    if (v == NULL) {
        return WEFT_OK;
    }
    if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0) {
        *out = v[0] == 't';
        return WEFT_OK;
    }
    return errf(err, err_len, p, "annotation %s: \"%.64s\" is neither \"true\" nor \"false\"", key,
                v);
}

/* next_item cuts the next comma-separated item of |*s| into |out| (spaces trimmed). */
static bool next_item(const char **s, char *out, size_t out_len)
{
    while (**s == ' ') {
        (*s)++;
    }
    if (**s == '\0') {
        return false;
    }
    size_t len = strcspn(*s, ",");
    const char *start = *s;
    *s += len;
    if (**s == ',') {
        (*s)++;
    }
    while (len > 0 && start[len - 1] == ' ') {
        len--;
    }
    snprintf(out, out_len, "%.*s", (int)len, start);
    return true;
}

static bool parse_port(const char *s, unsigned *out)
{
    unsigned v = 0;
    if (*s == '\0' || strlen(s) > 5) {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
        v = v * 10 + (unsigned)(*s - '0');
    }
    *out = v;
    return v >= 1 && v <= 65535;
}

/* port_list validates "P[,P-Q]..." (ports 1-65535) into the normalised |out|, after |prefix|. */
static int port_list(char *out, size_t out_len, const char *prefix, const struct pod *p,
                     const char *key, char *err, size_t err_len)
{
    const char *v = annotation(p, key), *s = v;
    char item[64];
    size_t n = 0;
    snprintf(out, out_len, "%s", prefix);
    if (v == NULL) {
        return WEFT_OK;
    }
    if (strlen(v) > K8S_INJECT_MAX_ANNOTATION) {
        return errf(err, err_len, p, "annotation %s: longer than %d bytes", key,
                    K8S_INJECT_MAX_ANNOTATION);
    }
    while (next_item(&s, item, sizeof(item))) {
        char *dash = strchr(item, '-');
        unsigned lo, hi;
        if (dash != NULL) {
            *dash = '\0';
        }
        bool ok =
            parse_port(item, &lo) && (dash == NULL ? (hi = lo, true) : parse_port(dash + 1, &hi));
        if (dash != NULL) {
            *dash = '-';
        }
        if (!ok || lo > hi) {
            return errf(err, err_len, p,
                        "annotation %s: \"%.32s\" is not a port or range of ports 1-65535", key,
                        item);
        }
        if (++n > K8S_INJECT_MAX_LIST) {
            return errf(err, err_len, p, "annotation %s: more than %d items", key,
                        K8S_INJECT_MAX_LIST);
        }
        size_t len = strlen(out);
        if (lo == hi) {
            snprintf(out + len, out_len - len, "%s%u", len > 0 ? "," : "", lo);
        } else {
            snprintf(out + len, out_len - len, "%s%u-%u", len > 0 ? "," : "", lo, hi);
        }
    }
    return WEFT_OK;
}

static int cidr_list(char *out, size_t out_len, const struct pod *p, char *err, size_t err_len)
{
    const char *key = K8S_ANN_EXCLUDE_CIDRS, *v = annotation(p, key), *s = v;
    char item[80], full[96];
    size_t n = 0;
    out[0] = '\0';
    if (v == NULL) {
        return WEFT_OK;
    }
    if (strlen(v) > K8S_INJECT_MAX_ANNOTATION) {
        return errf(err, err_len, p, "annotation %s: longer than %d bytes", key,
                    K8S_INJECT_MAX_ANNOTATION);
    }
    while (next_item(&s, item, sizeof(item))) {
        struct weft_cidr c;
        /* a bare address is a host: /32 or /128 */
        snprintf(full, sizeof(full), "%s%s", item,
                 strchr(item, '/') != NULL ? "" : (strchr(item, ':') != NULL ? "/128" : "/32"));
        if (weft_cidr_parse(full, &c) != WEFT_OK) {
            return errf(err, err_len, p,
                        "annotation %s: \"%.64s\" is not an address or network (10.0.0.0/8, "
                        "fd00::/8; host bits zero)",
                        key, item);
        }
        if (++n > K8S_INJECT_MAX_LIST) {
            return errf(err, err_len, p, "annotation %s: more than %d items", key,
                        K8S_INJECT_MAX_LIST);
        }
        size_t len = strlen(out);
        snprintf(out + len, out_len - len, "%s%s", len > 0 ? "," : "", full);
    }
    return WEFT_OK;
}

/* quantity reads a Kubernetes resource quantity (resource.Quantity: a non-negative decimal
 * number and a suffix: Ki Mi Gi Ti Pi Ei, n u m k M G T P E, or an exponent eN) into |*out|. */
static bool quantity(const char *s, double *out)
{
    static const struct {
        const char *suffix;
        double mult;
    } suffixes[] = {
        {"", 1},
        {"n", 1e-9},
        {"u", 1e-6},
        {"m", 1e-3},
        {"k", 1e3},
        {"M", 1e6},
        {"G", 1e9},
        {"T", 1e12},
        {"P", 1e15},
        {"E", 1e18},
        {"Ki", 1024.0},
        {"Mi", 1048576.0},
        {"Gi", 1073741824.0},
        {"Ti", 1099511627776.0},
        {"Pi", 1125899906842624.0},
        {"Ei", 1152921504606846976.0},
    };
    size_t i = 0, digits = 0;
    if (strlen(s) > MAX_QUANTITY) {
        return false;
    }
    while (s[i] >= '0' && s[i] <= '9') {
        i++, digits++;
    }
    if (s[i] == '.') {
        i++;
        while (s[i] >= '0' && s[i] <= '9') {
            i++, digits++;
        }
    }
    if (digits == 0) {
        return false;
    }
    double v = strtod(s, NULL);
    const char *suf = s + i;
    if ((suf[0] == 'e' || suf[0] == 'E') && suf[1] != '\0') {
        size_t j = 1;
        if (suf[j] == '+' || suf[j] == '-') {
            j++;
        }
        if (suf[j] == '\0' || strspn(suf + j, "0123456789") != strlen(suf + j) ||
            strlen(suf + j) > 3) {
            return false;
        }
        *out = strtod(s, NULL); /* strtod reads the exponent itself */
        return true;
    }
    for (size_t k = 0; k < sizeof(suffixes) / sizeof(suffixes[0]); k++) {
        if (strcmp(suf, suffixes[k].suffix) == 0) {
            *out = v * suffixes[k].mult;
            return true;
        }
    }
    return false;
}

static int quantity_annotation(const char **out, double *out_value, const struct pod *p,
                               const char *key, const char *dflt, char *err, size_t err_len)
{
    const char *v = annotation(p, key);
    *out = v != NULL ? v : dflt;
    if (!quantity(*out, out_value)) {
        return errf(err, err_len, p,
                    "annotation %s: \"%.40s\" is not a resource quantity (e.g. 10m, 24Mi, 1Gi)",
                    key, *out);
    }
    return WEFT_OK;
}

static int decide(struct pod *p, const struct k8s_inject_opts *opts, char *err, size_t err_len)
{
    double cpu, mem_req, mem_limit;
    p->native = opts->native_sidecar;
    p->rewrite_probes = true;
    TRY(bool_annotation(&p->native, p, K8S_ANN_NATIVE_SIDECAR, err, err_len));
    TRY(bool_annotation(&p->rewrite_probes, p, K8S_ANN_REWRITE_PROBES, err, err_len));
    /* the probe port is never redirected: the kubelet reaches it in plain HTTP */
    TRY(port_list(p->in_ports, sizeof(p->in_ports), "15021", p, K8S_ANN_EXCLUDE_IN, err, err_len));
    TRY(port_list(p->out_ports, sizeof(p->out_ports), "", p, K8S_ANN_EXCLUDE_OUT, err, err_len));
    TRY(cidr_list(p->cidrs, sizeof(p->cidrs), p, err, err_len));
    TRY(quantity_annotation(&p->cpu_req, &cpu, p, K8S_ANN_CPU_REQUEST, "10m", err, err_len));
    TRY(quantity_annotation(&p->mem_req, &mem_req, p, K8S_ANN_MEMORY_REQUEST, "24Mi", err,
                            err_len));
    TRY(quantity_annotation(&p->mem_limit, &mem_limit, p, K8S_ANN_MEMORY_LIMIT, "64Mi", err,
                            err_len));
    if (mem_req > mem_limit) {
        return errf(err, err_len, p, "annotation %s: %s is more than %s %s", K8S_ANN_MEMORY_REQUEST,
                    p->mem_req, K8S_ANN_MEMORY_LIMIT, p->mem_limit);
    }
    return WEFT_OK;
}

/* ---- probes ---- */

/* probe_port resolves an httpGet port (a number, or the name of one of the container's ports). */
static int probe_port(json_int_t *out, const struct pod *p, const json_t *c, const char *cname,
                      const char *probe, const json_t *port, char *err, size_t err_len)
{
    if (json_is_integer(port)) {
        *out = json_integer_value(port);
        if (*out >= 1 && *out <= 65535) {
            return WEFT_OK;
        }
        return errf(err, err_len, p,
                    "container %s: %s: port %" JSON_INTEGER_FORMAT " is not 1-65535", cname, probe,
                    *out);
    }
    const char *name = json_string_value(port);
    if (name == NULL) {
        return errf(err, err_len, p,
                    "container %s: %s: httpGet.port is neither a number nor a name", cname, probe);
    }
    size_t i;
    json_t *cp;
    json_array_foreach(json_object_get(c, "ports"), i, cp)
    {
        const char *n = json_string_value(json_object_get(cp, "name"));
        json_t *num = json_object_get(cp, "containerPort");
        if (n != NULL && strcmp(n, name) == 0 && json_is_integer(num)) {
            *out = json_integer_value(num);
            if (*out >= 1 && *out <= 65535) {
                return WEFT_OK;
            }
        }
    }
    return errf(err, err_len, p,
                "container %s: %s: port name \"%.64s\" is not one of the "
                "container's ports",
                cname, probe, name);
}

/* rewrite_probes writes the replace operations for every httpGet probe of the app containers
 * into |patch| and the originals into |probes|. tcpSocket and exec probes stay as they are:
 * a tcpSocket probe is answered by the proxy's inbound listener (iptables sends it there), so
 * it says the pod is up, as it did; an exec probe runs inside the container and never crosses
 * the network. */
static int rewrite_probes(json_t *patch, json_t *probes, const struct pod *p, const char *spec,
                          char *err, size_t err_len)
{
    static const struct {
        const char *field, *suffix;
    } kinds[] = {
        {"livenessProbe", "livez"}, {"readinessProbe", "readyz"}, {"startupProbe", "startupz"}};
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(p->spec, "containers"), i, c)
    {
        const char *cname = json_string_value(json_object_get(c, "name"));
        for (size_t k = 0; k < 3; k++) {
            json_t *probe = json_object_get(c, kinds[k].field);
            json_t *get = json_object_get(probe, "httpGet");
            if (!json_is_object(get)) {
                continue;
            }
            json_int_t port = 0;
            TRY(probe_port(&port, p, c, cname, kinds[k].field, json_object_get(get, "port"), err,
                           err_len));
            const char *path = json_string_value(json_object_get(get, "path"));
            const char *scheme = json_string_value(json_object_get(get, "scheme"));
            json_t *headers = json_object_get(get, "httpHeaders");
            json_t *timeout = json_object_get(probe, "timeoutSeconds");
            if (scheme != NULL && strcmp(scheme, "HTTP") != 0 && strcmp(scheme, "HTTPS") != 0) {
                return errf(err, err_len, p,
                            "container %s: %s: scheme \"%.16s\" is neither HTTP "
                            "nor HTTPS",
                            cname, kinds[k].field, scheme);
            }
            if (headers != NULL && !json_is_array(headers)) {
                return errf(err, err_len, p, "container %s: %s: httpHeaders is not a list", cname,
                            kinds[k].field);
            }
            char key[128];
            snprintf(key, sizeof(key), "/app-health/%s/%s", cname, kinds[k].suffix);
            json_t *orig = json_pack("{s:s, s:I, s:s}", "path", path != NULL ? path : "/", "port",
                                     port, "scheme", scheme != NULL ? scheme : "HTTP");
            if (headers != NULL) {
                json_object_set(orig, "httpHeaders", headers);
            }
            /* the kubelet's default timeout is 1 s (core/v1 Probe.timeoutSeconds) */
            json_object_set_new(
                probes, key,
                json_pack("{s:o, s:I}", "httpGet", orig, "timeoutSeconds",
                          json_is_integer(timeout) ? json_integer_value(timeout) : (json_int_t)1));
            char *cpath = k8s_jsonpatch_path(spec, "containers");
            char *ipath = k8s_jsonpatch_path_index(cpath, i);
            char *ppath = k8s_jsonpatch_path(ipath, kinds[k].field);
            char *gpath = k8s_jsonpatch_path(ppath, "httpGet");
            k8s_jsonpatch_append(patch, "replace", gpath,
                                 json_pack("{s:s, s:i, s:s}", "path", key, "port", K8S_PROBE_PORT,
                                           "scheme", "HTTP"));
            free(cpath), free(ipath), free(ppath), free(gpath);
        }
    }
    return WEFT_OK;
}

/* ---- what is added ---- */

static json_t *init_container(const struct pod *p, const struct k8s_inject_opts *opts)
{
    char flags[4 * K8S_INJECT_MAX_ANNOTATION];
    char script[10 * K8S_INJECT_MAX_ANNOTATION];
    /* every value here was validated to digits, '.', ':', '/', ',' and '-', so the shell sees
     * no metacharacter */
    int n = snprintf(flags, sizeof(flags), "--proxy-uid %d --exclude-inbound-ports %s",
                     K8S_PROXY_UID, p->in_ports);
    if (p->out_ports[0] != '\0') {
        n += snprintf(flags + n, sizeof(flags) - (size_t)n, " --exclude-outbound-ports %s",
                      p->out_ports);
    }
    if (p->cidrs[0] != '\0') {
        snprintf(flags + n, sizeof(flags) - (size_t)n, " --exclude-outbound-cidrs %s", p->cidrs);
    }
    /* the check sends real connections through the rules, so a pod whose redirect does not
     * work fails here, loudly, rather than running unprotected */
    snprintf(script, sizeof(script),
             "weftctl iptables install %s && exec weftctl iptables check %s --self-test", flags,
             flags);
    return json_pack(
        "{s:s, s:s, s:s, s:[s,s,s], s:[{s:s, s:s}],"
        " s:{s:{s:s, s:s}, s:{s:s}},"
        " s:{s:i, s:b, s:b, s:b, s:{s:[s,s,s,s], s:[s]}},"
        " s:[{s:s, s:s}]}",
        "name", K8S_NAME_INIT, "image", opts->image, "imagePullPolicy", "IfNotPresent", "command",
        "/bin/sh", "-c", script, "env", "name", "XTABLES_LOCKFILE", "value", "/tmp/xtables.lock",
        "resources", "requests", "cpu", "10m", "memory", "16Mi", "limits", "memory", "64Mi",
        "securityContext", "runAsUser", 0, "runAsNonRoot", 0, "readOnlyRootFilesystem", 1,
        "allowPrivilegeEscalation", 0, "capabilities", "add",
        /* NET_ADMIN for the nat table; NET_RAW for iptables' raw sockets and the self-test's
         * SYN; SETUID and SETGID for the self-test's child under a uid other than the proxy's */
        "NET_ADMIN", "NET_RAW", "SETUID", "SETGID", "drop", "ALL", "volumeMounts", "name",
        NAME_INIT_TMP, "mountPath", "/tmp");
}

static json_t *ready_probe(int period_s, int failures)
{
    return json_pack("{s:{s:s, s:i}, s:i, s:i}", "httpGet", "path", "/ready", "port",
                     K8S_PROBE_PORT, "periodSeconds", period_s, "failureThreshold", failures);
}

static json_t *proxy_container(const struct pod *p, const struct k8s_inject_opts *opts,
                               const json_t *probes)
{
    json_t *c = json_pack(
        "{s:s, s:s, s:s, s:[s,s,s,s,s], s:[{s:s, s:i, s:s}],"
        " s:{s:{s:s, s:s}, s:{s:s}},"
        " s:{s:i, s:i, s:b, s:b, s:b, s:{s:[s]}},"
        " s:[{s:s, s:s, s:b}]}",
        "name", K8S_NAME_PROXY, "image", opts->image, "imagePullPolicy", "IfNotPresent", "command",
        "weft-proxy", "--agent-socket", "/run/weft/agent.sock", "--probe-listen", "0.0.0.0:15021",
        "ports", "name", "weft-health", "containerPort", K8S_PROBE_PORT, "protocol", "TCP",
        "resources", "requests", "cpu", p->cpu_req, "memory", p->mem_req, "limits", "memory",
        p->mem_limit, "securityContext", "runAsUser", K8S_PROXY_UID, "runAsGroup", K8S_PROXY_UID,
        "runAsNonRoot", 1, "readOnlyRootFilesystem", 1, "allowPrivilegeEscalation", 0,
        "capabilities", "drop", "ALL", "volumeMounts", "name", K8S_NAME_VOLUME, "mountPath",
        "/run/weft", "readOnly", 1);
    if (json_object_size(probes) > 0) {
        char *v = json_dumps(probes, JSON_COMPACT);
        json_object_set_new(c, "env",
                            json_pack("[{s:s, s:s}]", "name", "WEFT_APP_PROBES", "value", v));
        free(v);
    }
    json_object_set_new(c, "readinessProbe", ready_probe(5, 3));
    if (p->native) {
        /* KEP-753: an init container with restartPolicy Always runs beside the app; the kubelet
         * starts the next container once its startupProbe passes */
        json_object_set_new(c, "restartPolicy", json_string("Always"));
        json_object_set_new(c, "startupProbe", ready_probe(1, 120));
    } else {
        /* the kubelet starts containers in order and waits for each postStart hook, so the
         * app starts once the proxy is ready */
        json_object_set_new(c, "lifecycle",
                            json_pack("{s:{s:{s:[s,s,s,s,s,s]}}}", "postStart", "exec", "command",
                                      "weftctl", "wait-ready", "--addr", "127.0.0.1:15021",
                                      "--timeout-s", "120"));
    }
    return c;
}

/* taken refuses a pod that already has a container or volume with a name weft injects. */
static int taken(const struct pod *p, char *err, size_t err_len)
{
    static const char *const lists[] = {"initContainers", "containers", "volumes"};
    for (size_t l = 0; l < 3; l++) {
        const json_t *list = json_object_get(p->spec, lists[l]);
        if (list != NULL && !json_is_array(list) && !json_is_null(list)) {
            return errf(err, err_len, p, "spec.%s is not a list", lists[l]);
        }
        if (json_array_size(list) > K8S_INJECT_MAX_CONTAINERS) {
            return errf(err, err_len, p, "spec.%s has more than %d entries", lists[l],
                        K8S_INJECT_MAX_CONTAINERS);
        }
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e)
        {
            const char *n = json_string_value(json_object_get(e, "name"));
            if (n == NULL) {
                return errf(err, err_len, p, "spec.%s[%zu] has no name", lists[l], i);
            }
            if (strlen(n) > 63) { /* Kubernetes names these with DNS labels */
                return errf(err, err_len, p, "spec.%s[%zu]: name longer than 63 bytes", lists[l],
                            i);
            }
            if (strcmp(n, K8S_NAME_INIT) == 0 || strcmp(n, K8S_NAME_PROXY) == 0 ||
                strcmp(n, K8S_NAME_VOLUME) == 0 || strcmp(n, NAME_INIT_TMP) == 0) {
                return errf(err, err_len, p,
                            "spec.%s already has \"%s\", a name weft injects, but no %s "
                            "annotation",
                            lists[l], n, K8S_ANN_STATUS);
            }
        }
    }
    return WEFT_OK;
}

/* proxy_uid_free refuses a pod whose app runs as the proxy's uid: iptables lets that uid's
 * traffic through untouched (so that the proxy's own connections do not loop), so the app would
 * talk past the mesh, in plain text. */
static int proxy_uid_free(const struct pod *p, char *err, size_t err_len)
{
    json_t *uid = json_object_get(json_object_get(p->spec, "securityContext"), "runAsUser");
    if (json_is_integer(uid) && json_integer_value(uid) == K8S_PROXY_UID) {
        return errf(err, err_len, p,
                    "spec.securityContext.runAsUser is %d, the proxy's uid, whose traffic is "
                    "never redirected",
                    K8S_PROXY_UID);
    }
    static const char *const lists[] = {"initContainers", "containers"};
    for (size_t l = 0; l < 2; l++) {
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(p->spec, lists[l]), i, c)
        {
            uid = json_object_get(json_object_get(c, "securityContext"), "runAsUser");
            if (json_is_integer(uid) && json_integer_value(uid) == K8S_PROXY_UID) {
                return errf(err, err_len, p,
                            "container %s: runAsUser is %d, the proxy's uid, whose traffic is "
                            "never redirected",
                            json_string_value(json_object_get(c, "name")), K8S_PROXY_UID);
            }
        }
    }
    return WEFT_OK;
}

/* add_to_list adds |items| (a reference it takes) to the list |field| of |parent| at |index|
 * (SIZE_MAX: the end): an RFC 6902 "add" to a missing list fails, so a missing list is added
 * whole (kubernetes.md §2.1). */
static void add_to_list(json_t *patch, const json_t *parent, const char *parent_path,
                        const char *field, size_t index, json_t *items)
{
    char *path = k8s_jsonpatch_path(parent_path, field);
    const json_t *list = json_object_get(parent, field);
    if (list == NULL || json_is_null(list)) {
        /* "add" on a member that is there replaces it: a null list becomes ours */
        k8s_jsonpatch_append(patch, "add", path, items);
        free(path);
        return;
    }
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        char *ipath = index == SIZE_MAX ? k8s_jsonpatch_path(path, "-")
                                        : k8s_jsonpatch_path_index(path, index + i);
        k8s_jsonpatch_append(patch, "add", ipath, json_incref(item));
        free(ipath);
    }
    json_decref(items);
    free(path);
}

int k8s_inject_patch(json_t **out_patch, const char **out_skipped, const json_t *obj,
                     const struct k8s_inject_opts *opts, char *err, size_t err_len)
{
    struct pod p;
    memset(&p, 0, sizeof(p));
    *out_patch = NULL;
    *out_skipped = locate(&p, obj, opts);
    if (*out_skipped != NULL) {
        return WEFT_OK;
    }
    if (strcmp(p.ns, "kube-system") == 0) {
        *out_skipped = "namespace kube-system";
        return WEFT_OK;
    }
    if (strcmp(p.ns, "weft-system") == 0) {
        *out_skipped = "namespace weft-system";
        return WEFT_OK;
    }
    if (p.meta != NULL && !json_is_object(p.meta)) {
        return errf(err, err_len, &p, "metadata is not a mapping");
    }
    const json_t *anns = json_object_get(p.meta, "annotations");
    if (anns != NULL && !json_is_object(anns) && !json_is_null(anns)) {
        return errf(err, err_len, &p, "metadata.annotations is not a mapping");
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)anns, key, val)
    {
        /* YAML reads an unquoted false or 8080 as a boolean or a number, which Kubernetes
         * refuses for an annotation: say so rather than act as if it were not there */
        if (strncmp(key, "weft.dev/", 9) == 0 && !json_is_string(val)) {
            return errf(err, err_len, &p, "annotation %.64s: not a string (quote the value)", key);
        }
    }
    json_t *image = json_string(opts->image);
    json_decref(image);
    if (image == NULL || opts->image[0] == '\0') {
        return errf(err, err_len, &p, "the injected image's name is empty or not UTF-8");
    }
    const char *inject = annotation(&p, K8S_ANN_INJECT);
    const char *label =
        json_string_value(json_object_get(json_object_get(p.meta, "labels"), K8S_ANN_INJECT));
    if (inject != NULL && strcmp(inject, "enabled") != 0 && strcmp(inject, "disabled") != 0) {
        return errf(err, err_len, &p, "annotation %s: \"%.32s\" is neither enabled nor disabled",
                    K8S_ANN_INJECT, inject);
    }
    if ((inject != NULL && strcmp(inject, "disabled") == 0) ||
        (label != NULL && strcmp(label, "disabled") == 0)) {
        *out_skipped = K8S_ANN_INJECT ": disabled";
        return WEFT_OK;
    }
    if (json_object_get(json_object_get(p.meta, "annotations"), K8S_ANN_STATUS) != NULL) {
        *out_skipped = "already injected";
        return WEFT_OK;
    }
    if (!json_is_object(p.spec)) {
        return errf(err, err_len, &p, "has no pod spec");
    }
    if (json_is_true(json_object_get(p.spec, "hostNetwork"))) {
        /* iptables in the node's own network namespace would capture the whole node */
        *out_skipped = "hostNetwork";
        return WEFT_OK;
    }
    if (json_array_size(json_object_get(p.spec, "containers")) == 0) {
        return errf(err, err_len, &p, "spec.containers is empty or missing");
    }
    TRY(taken(&p, err, err_len));
    TRY(proxy_uid_free(&p, err, err_len));
    TRY(decide(&p, opts, err, err_len));

    char *spec = k8s_jsonpatch_path(p.base, "spec");
    char *meta = k8s_jsonpatch_path(p.base, "metadata");
    json_t *patch = json_array(), *probes = json_object();
    int rc = p.rewrite_probes ? rewrite_probes(patch, probes, &p, spec, err, err_len) : WEFT_OK;
    if (rc == WEFT_OK) {
        json_t *proxy = proxy_container(&p, opts, probes);
        json_t *init = p.native ? json_pack("[o,o]", init_container(&p, opts), proxy)
                                : json_pack("[o]", init_container(&p, opts));
        add_to_list(patch, p.spec, spec, "initContainers", 0, init);
        if (!p.native) {
            add_to_list(patch, p.spec, spec, "containers", 0, json_pack("[o]", proxy));
        }
        add_to_list(patch, p.spec, spec, "volumes", SIZE_MAX,
                    json_pack("[{s:s, s:{s:s, s:s}}, {s:s, s:{s:s}}]", "name", K8S_NAME_VOLUME,
                              "hostPath", "path", "/run/weft", "type", "DirectoryOrCreate", "name",
                              NAME_INIT_TMP, "emptyDir", "medium", "Memory"));
        json_t *status = json_pack(
            "{s:s, s:[s,s*], s:[s*], s:[s,s]}", "version", K8S_INJECT_VERSION, "initContainers",
            K8S_NAME_INIT, p.native ? K8S_NAME_PROXY : NULL, "containers",
            p.native ? NULL : K8S_NAME_PROXY, "volumes", K8S_NAME_VOLUME, NAME_INIT_TMP);
        char *sv = json_dumps(status, JSON_COMPACT);
        json_decref(status);
        if (p.meta == NULL) {
            k8s_jsonpatch_append(patch, "add", meta,
                                 json_pack("{s:{s:s}}", "annotations", K8S_ANN_STATUS, sv));
        } else if (anns == NULL || json_is_null(anns)) {
            char *apath = k8s_jsonpatch_path(meta, "annotations");
            k8s_jsonpatch_append(patch, "add", apath, json_pack("{s:s}", K8S_ANN_STATUS, sv));
            free(apath);
        } else {
            /* "weft.dev/status" becomes the token "weft.dev~1status" (RFC 6901 §3) */
            char *apath = k8s_jsonpatch_path(meta, "annotations");
            char *spath = k8s_jsonpatch_path(apath, K8S_ANN_STATUS);
            k8s_jsonpatch_append(patch, "add", spath, json_string(sv));
            free(apath), free(spath);
        }
        free(sv);
    }
    free(spec);
    free(meta);
    json_decref(probes);
    if (rc != WEFT_OK) {
        json_decref(patch);
        return rc;
    }
    *out_patch = patch;
    return WEFT_OK;
}

int k8s_inject_object(json_t **obj, const char **out_skipped, const struct k8s_inject_opts *opts,
                      char *err, size_t err_len)
{
    json_t *patch;
    char why[512];
    TRY(k8s_inject_patch(&patch, out_skipped, *obj, opts, err, err_len));
    if (patch == NULL) {
        return WEFT_OK;
    }
    int rc = k8s_jsonpatch_apply(obj, patch, why, sizeof(why));
    json_decref(patch);
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "applying the injection patch: %s", why);
        return WEFT_EINTERNAL;
    }
    return WEFT_OK;
}
