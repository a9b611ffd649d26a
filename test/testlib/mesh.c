/* test/testlib/mesh.c: see mesh.h. */
#include "test/testlib/mesh.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <jansson.h>

#include "lib/base/file.h"
#include "test/testlib/net.h"

/* weft-mesh-a-PID, weft-mesh-b-PID (weft-mesh-c-PID, and weft-mesh-s-PID for the bridge
 * wmbrPID); veths wmaPID, wmbPID (wmcPID; their bridge ends wmsaPID, wmsbPID, wmscPID) */
#define NS_PREFIX "weft-mesh-"

static const char *const own_runfiles[] = {"proxy/weft-proxy", "cli/weftctl"};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int say(char *err, size_t err_len, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int say(char *err, size_t err_len, int rc, const char *fmt, ...)
{
    if (err_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* sh runs a shell command as we are; WEFT_EIO (with the command in |err|) when it fails. */
static int sh(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int sh(char *err, size_t err_len, const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(cmd)) {
        return say(err, err_len, WEFT_ELIMIT, "command too long: %.200s", cmd);
    }
    int st = system(cmd);
    if (st != 0) {
        return say(err, err_len, WEFT_EIO, "failed (status %d): %s", st, cmd);
    }
    return WEFT_OK;
}

void mesh_init(struct mesh *m) { memset(m, 0, sizeof(*m)); }

const char *mesh_bin(const struct mesh *m, const char *name)
{
    for (size_t i = 0; i < m->num_bins; i++) {
        const char *slash = strrchr(m->bins[i], '/');
        if (strcmp(slash != NULL ? slash + 1 : m->bins[i], name) == 0) {
            return m->bins[i];
        }
    }
    return NULL;
}

const char *mesh_path(const struct mesh *m, const char *name)
{
    static char bufs[8][160];
    static unsigned next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", m->run_dir, name);
    return b;
}

int mesh_serve(struct mesh *m, enum mesh_pod_id pod, const char *mode, const char *ip,
               const char *port, const char *out_name, char *err, size_t err_len)
{
    const char *app = mesh_bin(m, "mesh_app");
    const char *argv[] = {app, mode, ip, port, NULL};
    pid_t pid;
    if (app == NULL) {
        snprintf(err, err_len, "mesh_serve: proxy/mesh_app is not among the runfiles");
        return WEFT_EINVAL;
    }
    if (mesh_spawn(m, pod, MESH_UID_APP, mesh_path(m, out_name), argv, &pid) != WEFT_OK ||
        mesh_wait_file_has(mesh_path(m, out_name), "listening", 20000) != WEFT_OK) {
        snprintf(err, err_len, "mesh_app %s %s:%s did not listen (see %s)", mode, ip, port,
                 mesh_path(m, out_name));
        return WEFT_EIO;
    }
    return WEFT_OK;
}

int mesh_policy_write(struct mesh *m, const char *yaml)
{
    char file[160];
    snprintf(file, sizeof(file), "%s/" MESH_POLICY_FILE, m->policy_dir);
    return weft_file_write_atomic(file, yaml, strlen(yaml), 0644);
}

/* --- processes -------------------------------------------------------------------------- */

/* forget drops |pid| from the processes we started; false when it was not one of them. */
static bool forget(struct mesh *m, pid_t pid)
{
    for (size_t i = 0; i < m->num_pids; i++) {
        if (m->pids[i] == pid) {
            m->pids[i] = m->pids[--m->num_pids];
            for (size_t p = 0; p < nitems(m->pods); p++) {
                if (m->pods[p].proxy_pid == pid) {
                    m->pods[p].proxy_pid = 0;
                }
            }
            return true;
        }
    }
    return false;
}

/* pod_argv writes into |full| the command that runs |argv| in |pod| as |uid|: `ip netns exec
 * NS setpriv ...`; ip and setpriv each exec the next, and setpriv asks for SIGKILL when our
 * process dies (a change of uid clears what PR_SET_PDEATHSIG set before it). */
static int pod_argv(const struct mesh *m, enum mesh_pod_id pod, char *ids, size_t ids_len,
                    unsigned uid, const char *const *argv, const char **full, size_t cap)
{
    snprintf(ids, ids_len, "%u", uid);
    const char *head[] = {"ip", "netns",   "exec", m->pods[pod].ns,  "setpriv",     "--reuid",
                          ids,  "--regid", ids,    "--clear-groups", "--pdeathsig", "KILL"};
    size_t n = 0;
    for (; n < nitems(head); n++) {
        full[n] = head[n];
    }
    for (size_t i = 0; argv[i] != NULL; i++) {
        ENSURE(i < MESH_MAX_ARGS && n + 1 < cap, WEFT_ELIMIT);
        full[n++] = argv[i];
    }
    full[n] = NULL;
    return WEFT_OK;
}

int mesh_spawn(struct mesh *m, enum mesh_pod_id pod, unsigned uid, const char *out_path,
               const char *const *argv, pid_t *out_pid)
{
    ENSURE(m->num_pids < MESH_MAX_PROCS, WEFT_ELIMIT);
    char ids[16];
    const char *full[MESH_MAX_ARGS + 16];
    TRY(pod_argv(m, pod, ids, sizeof(ids), uid, argv, full, nitems(full)));
    pid_t parent = getpid();
    pid_t pid = fork();
    ENSURE(pid >= 0, WEFT_EIO);
    if (pid == 0) {
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL); /* until setpriv sets it again */
        if (getppid() != parent) {
            _exit(125);
        }
        int fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int null = open("/dev/null", O_RDONLY);
        if (fd < 0 || null < 0 || dup2(null, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
            _exit(126);
        }
        execvp("ip", (char *const *)full);
        _exit(127);
    }
    m->pids[m->num_pids++] = pid;
    *out_pid = pid;
    return WEFT_OK;
}

int mesh_kill(struct mesh *m, pid_t pid, int sig, int timeout_ms, int *out_status)
{
    bool ours = false;
    for (size_t i = 0; i < m->num_pids && !ours; i++) {
        ours = m->pids[i] == pid;
    }
    ENSURE(ours && pid > 0, WEFT_ENOTFOUND);
    if (sig != 0) {
        kill(pid, sig);
    }
    int64_t end = now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            forget(m, pid);
            if (out_status != NULL) {
                *out_status = st;
            }
            return WEFT_OK;
        }
        if (r < 0 && errno != EINTR) {
            forget(m, pid); /* reaped elsewhere */
            return WEFT_ENOTFOUND;
        }
        if (now_ms() >= end) {
            return WEFT_EAGAIN;
        }
        sleep_ms(20);
    }
}

/* quote appends |s| to |out| in single quotes, for sh. */
static bool quote(char *out, size_t cap, size_t *len, const char *s)
{
    if (*len + 3 >= cap) {
        return false;
    }
    out[(*len)++] = '\'';
    for (; *s != '\0'; s++) {
        const char *piece = *s == '\'' ? "'\\''" : NULL;
        size_t n = piece != NULL ? strlen(piece) : 1;
        if (*len + n + 3 >= cap) {
            return false;
        }
        memcpy(out + *len, piece != NULL ? piece : s, n);
        *len += n;
    }
    out[(*len)++] = '\'';
    out[(*len)++] = ' ';
    out[*len] = '\0';
    return true;
}

int mesh_run(struct mesh *m, enum mesh_pod_id pod, unsigned uid, const char *const *argv,
             int timeout_ms, char *out, size_t out_len, int *out_status)
{
    char ids[16], cmd[2048];
    const char *full[MESH_MAX_ARGS + 16];
    TRY(pod_argv(m, pod, ids, sizeof(ids), uid, argv, full, nitems(full)));
    size_t len = 0;
    cmd[0] = '\0';
    for (size_t i = 0; full[i] != NULL; i++) {
        ENSURE(quote(cmd, sizeof(cmd), &len, full[i]), WEFT_ELIMIT);
    }
    /* as root: the uid is setpriv's to change, inside the namespace */
    return agent_proc_run(0, cmd, false, timeout_ms, out, out_len, out_status);
}

/* --- the proxies -------------------------------------------------------------------------- */

int mesh_proxy_start(struct mesh *m, enum mesh_pod_id pod, const char *const *extra, char *err,
                     size_t err_len)
{
    struct mesh_pod *p = &m->pods[pod];
    if (p->proxy_pid != 0) {
        return say(err, err_len, WEFT_EINVAL, "the proxy of %s runs already", p->ns);
    }
    char admin[160];
    snprintf(admin, sizeof(admin), "unix:%s", p->admin_sock);
    unlink(p->admin_sock); /* a restart: the last one's socket */
    const char *argv[MESH_MAX_ARGS + 1] = {mesh_bin(m, "weft-proxy"),
                                           "--agent-socket",
                                           m->agent.sock,
                                           "--admin",
                                           admin,
                                           "--claim",
                                           p->ip};
    size_t n = 7;
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        if (n == MESH_MAX_ARGS) {
            return say(err, err_len, WEFT_ELIMIT, "over %d arguments for weft-proxy",
                       MESH_MAX_ARGS);
        }
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    int rc = mesh_spawn(m, pod, p->proxy_uid, p->log, argv, &p->proxy_pid);
    if (rc != WEFT_OK) {
        return say(err, err_len, rc, "cannot start the proxy of %s: %s", p->ns, weft_strerror(rc));
    }
    return WEFT_OK;
}

int mesh_proxy_wait_ready(struct mesh *m, enum mesh_pod_id pod, int directory_entries,
                          int timeout_ms, char *err, size_t err_len)
{
    struct mesh_pod *p = &m->pods[pod];
    char buf[4096] = "", want[64];
    snprintf(want, sizeof(want), "\"directory_entries\":%d,", directory_entries);
    int64_t end = now_ms() + timeout_ms;
    for (;;) {
        int st;
        if (p->proxy_pid == 0 || mesh_kill(m, p->proxy_pid, 0, 0, &st) == WEFT_OK) {
            return say(err, err_len, WEFT_EIO, "the proxy of %s is not running; see %s", p->ns,
                       p->log);
        }
        if (mesh_admin(m, pod, "GET", "/ready", buf, sizeof(buf)) == 200 &&
            mesh_admin(m, pod, "GET", "/config", buf, sizeof(buf)) == 200 &&
            strstr(buf, want) != NULL) {
            return WEFT_OK;
        }
        if (now_ms() >= end) {
            const char *body = strstr(buf, "\r\n\r\n");
            return say(err, err_len, WEFT_EAGAIN,
                       "the proxy of %s: not ready with %d directory entries within %d ms (%.300s)"
                       "; see %s",
                       p->ns, directory_entries, timeout_ms, body != NULL ? body + 4 : buf, p->log);
        }
        sleep_ms(100);
    }
}

int mesh_proxies_start(struct mesh *m, const char *const *extra_a, const char *const *extra_b,
                       char *err, size_t err_len)
{
    TRY(mesh_proxy_start(m, MESH_POD_A, extra_a, err, err_len));
    TRY(mesh_proxy_start(m, MESH_POD_B, extra_b, err, err_len));
    if (m->num_pods == 3) {
        TRY(mesh_proxy_start(m, MESH_POD_C, NULL, err, err_len));
    }
    for (size_t i = 0; i < m->num_pods; i++) {
        TRY(mesh_proxy_wait_ready(m, (enum mesh_pod_id)i, (int)m->num_pods, 30000, err, err_len));
    }
    return WEFT_OK;
}

int mesh_proxy_stop(struct mesh *m, enum mesh_pod_id pod, int sig, int timeout_ms, int *out_status)
{
    ENSURE(m->pods[pod].proxy_pid != 0, WEFT_ENOTFOUND);
    return mesh_kill(m, m->pods[pod].proxy_pid, sig, timeout_ms, out_status);
}

int mesh_admin(const struct mesh *m, enum mesh_pod_id pod, const char *method, const char *path,
               char *buf, size_t len)
{
    return testlib_http_unix(m->pods[pod].admin_sock, method, path, buf, len);
}

double mesh_metric(const struct mesh *m, enum mesh_pod_id pod, const char *series, double missing)
{
    static char buf[1 << 16];
    if (mesh_admin(m, pod, "GET", "/metrics", buf, sizeof(buf)) != 200) {
        return missing;
    }
    return agent_proc_metric(buf, series, missing);
}

/* --- files ---------------------------------------------------------------------------------- */

size_t mesh_file_count(const char *path, const char *needle)
{
    uint8_t *text;
    size_t len, n = 0, nl = strlen(needle);
    if (nl == 0 || weft_file_read(&text, &len, path, 1 << 20) != WEFT_OK) {
        return 0;
    }
    for (const uint8_t *p = text; (p = memmem(p, len - (size_t)(p - text), needle, nl)) != NULL;
         p += nl) {
        n++;
    }
    free(text);
    return n;
}

bool mesh_file_has(const char *path, const char *needle)
{
    return mesh_file_count(path, needle) > 0;
}

int mesh_wait_file_has(const char *path, const char *needle, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    while (!mesh_file_has(path, needle)) {
        if (now_ms() >= end) {
            return WEFT_EAGAIN;
        }
        sleep_ms(50);
    }
    return WEFT_OK;
}

bool mesh_file_has_line(const char *path, const char *const *needles)
{
    uint8_t *text;
    size_t len;
    if (weft_file_read(&text, &len, path, 1 << 20) != WEFT_OK) {
        return false;
    }
    bool found = false;
    for (char *line = (char *)text; line != NULL && !found;) {
        char *nl = strchr(line, '\n');
        if (nl != NULL) {
            *nl = '\0'; /* weft_file_read put a NUL after the text */
        }
        found = true;
        for (size_t i = 0; needles[i] != NULL && found; i++) {
            found = strstr(line, needles[i]) != NULL;
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    free(text);
    return found;
}

int mesh_wait_file_line(const char *path, const char *const *needles, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    while (!mesh_file_has_line(path, needles)) {
        if (now_ms() >= end) {
            return WEFT_EAGAIN;
        }
        sleep_ms(50);
    }
    return WEFT_OK;
}

static void dump(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    fprintf(stderr, "--- %s\n", path);
    char line[2048];
    while (fgets(line, sizeof(line), f) != NULL) {
        fputs(line, stderr);
    }
    fclose(f);
}

void mesh_dump_tail(const char *path, size_t max)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    char buf[8192];
    if (max > sizeof(buf) - 1) {
        max = sizeof(buf) - 1;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, len > (long)max ? len - (long)max : 0, SEEK_SET);
    size_t n = fread(buf, 1, max, f);
    buf[n] = '\0';
    fclose(f);
    fprintf(stderr, "--- the end of %s:\n%s\n", path, buf);
}

void mesh_dump_logs(const struct mesh *m)
{
    if (m->ca.dir[0] != '\0') {
        agent_proc_dump_logs(&m->agent);
    }
    for (size_t i = 0; i < nitems(m->pods); i++) {
        if (m->pods[i].log[0] != '\0') {
            dump(m->pods[i].log);
        }
    }
}

/* --- setup and teardown ---------------------------------------------------------------------- */

/* A run's record, /tmp/weft-mesh-PID.run: "CA_PID CA_DIR". The CA is the one process a killed
 * run leaves running: it drops to nobody, which clears the parent-death signal ca_proc set. */
#define RUN_RECORD "/tmp/weft-mesh-%d.run"
#define CA_DIR_PREFIX "/tmp/weft-ca-proc-"

static void run_record(const struct mesh *m, bool keep)
{
    char file[64];
    snprintf(file, sizeof(file), RUN_RECORD, (int)getpid());
    if (!keep) {
        unlink(file);
        return;
    }
    char text[128];
    int n = snprintf(text, sizeof(text), "%d %s\n", (int)m->ca.pid, m->ca.dir);
    (void)!weft_file_write_atomic(file, text, (size_t)n, 0600);
}

/* reap_record kills the CA of a dead run (when /proc says it is still that CA) and removes its
 * directory and the record. */
static void reap_record(const char *file)
{
    uint8_t *text;
    size_t len;
    if (weft_file_read(&text, &len, file, 256) != WEFT_OK) {
        return;
    }
    int ca_pid = 0;
    char dir[64] = "";
    bool ok = sscanf((const char *)text, "%d %63s", &ca_pid, dir) == 2 &&
              strncmp(dir, CA_DIR_PREFIX, strlen(CA_DIR_PREFIX)) == 0 &&
              strspn(dir + strlen(CA_DIR_PREFIX),
                     "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") ==
                  strlen(dir + strlen(CA_DIR_PREFIX));
    free(text);
    if (!ok) {
        unlink(file);
        return;
    }
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/%d/cmdline", ca_pid);
    uint8_t *cmdline;
    if (ca_pid > 0 && weft_file_read(&cmdline, &len, proc, 1 << 16) == WEFT_OK) {
        if (memmem(cmdline, len, dir, strlen(dir)) != NULL) {
            kill(ca_pid, SIGKILL); /* its signer ends with it */
        }
        free(cmdline);
    }
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    (void)!system(cmd);
    unlink(file);
}

/* dead says whether no process has the PID |pid| now. */
static bool dead(int pid) { return pid > 0 && kill(pid, 0) != 0 && errno == ESRCH; }

/* reap_stale undoes what an earlier run of this harness left when it was killed (a test
 * timeout runs no teardown), for runs whose PID is gone: its CA and directory, and its
 * namespaces, after killing what still runs in them (the rest died with the run). */
static void reap_stale(void)
{
    DIR *t = opendir("/tmp");
    struct dirent *e;
    while (t != NULL && (e = readdir(t)) != NULL) {
        int pid, used = 0;
        if (sscanf(e->d_name, "weft-mesh-%d.run%n", &pid, &used) == 1 && e->d_name[used] == '\0' &&
            dead(pid)) {
            char file[300];
            snprintf(file, sizeof(file), "/tmp/%s", e->d_name);
            reap_record(file);
        }
    }
    if (t != NULL) {
        closedir(t);
    }
    DIR *d = opendir("/run/netns");
    if (d == NULL) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        char pod;
        int pid, used = 0;
        if (sscanf(e->d_name, NS_PREFIX "%c-%d%n", &pod, &pid, &used) != 2 ||
            e->d_name[used] != '\0' || strchr("abcs", pod) == NULL || !dead(pid)) {
            continue;
        }
        char cmd[256];
        snprintf(cmd, sizeof(cmd),
                 "for p in $(ip netns pids %.64s); do kill -9 $p; done; ip netns del %.64s",
                 e->d_name, e->d_name);
        (void)!system(cmd);
    }
    closedir(d);
}

/* wire_pods joins the pods: two by one veth; three by a veth each to a bridge in a namespace
 * of their own (so that no run's traffic touches the node's namespace or another run's). */
static int wire_pods(struct mesh *m, char *err, size_t err_len)
{
    int id = (int)getpid();
    if (m->num_pods == 2) {
        TRY(sh(err, err_len, "ip link add %s type veth peer name %s", m->pods[0].veth,
               m->pods[1].veth));
        return sh(err, err_len, "ip link set %s netns %s && ip link set %s netns %s",
                  m->pods[0].veth, m->pods[0].ns, m->pods[1].veth, m->pods[1].ns);
    }
    TRY(sh(err, err_len,
           "ip netns add %s && ip -n %s link add wmbr%d type bridge && "
           "ip -n %s link set wmbr%d up",
           m->switch_ns, m->switch_ns, id, m->switch_ns, id));
    for (size_t i = 0; i < m->num_pods; i++) {
        char c = (char)('a' + i);
        TRY(sh(err, err_len,
               "ip link add %s type veth peer name wms%c%d && ip link set %s netns %s && "
               "ip link set wms%c%d netns %s && ip -n %s link set wms%c%d master wmbr%d up",
               m->pods[i].veth, c, id, m->pods[i].veth, m->pods[i].ns, c, id, m->switch_ns,
               m->switch_ns, c, id, id));
    }
    return WEFT_OK;
}

static int make_pods(struct mesh *m, const struct mesh_opts *o, char *err, size_t err_len)
{
    m->made_ns = true;
    for (size_t i = 0; i < m->num_pods; i++) {
        TRY(sh(err, err_len, "ip netns add %s", m->pods[i].ns));
    }
    TRY(wire_pods(m, err, err_len));
    for (size_t i = 0; i < m->num_pods; i++) {
        struct mesh_pod *p = &m->pods[i];
        TRY(sh(err, err_len,
               "ip -n %s addr add %s/24 dev %s && ip -n %s link set %s up && "
               "ip -n %s link set lo up",
               p->ns, p->ip, p->veth, p->ns, p->veth, p->ns));
        TRY(sh(err, err_len,
               "ip netns exec %s %s iptables install --proxy-uid %u --no-ipv6 %s >/dev/null", p->ns,
               mesh_bin(m, "weftctl"), p->proxy_uid,
               o->iptables_extra[i] != NULL ? o->iptables_extra[i] : ""));
    }
    return WEFT_OK;
}

static int copy_bins(struct mesh *m, const struct mesh_opts *o, char *err, size_t err_len)
{
    const char *all[nitems(own_runfiles) + MESH_MAX_RUNFILES];
    size_t n = 0;
    for (size_t i = 0; i < nitems(own_runfiles); i++) {
        all[n++] = own_runfiles[i];
    }
    for (size_t i = 0; o->runfiles[i] != NULL; i++) {
        if (i == MESH_MAX_RUNFILES) {
            return say(err, err_len, WEFT_ELIMIT, "over %d runfiles", MESH_MAX_RUNFILES);
        }
        all[n++] = o->runfiles[i];
    }
    for (size_t i = 0; i < n; i++) {
        const char *slash = strrchr(all[i], '/');
        const char *name = slash != NULL ? slash + 1 : all[i];
        int rc = agent_proc_copy_runfile(&m->ca, all[i], name, m->bins[i], sizeof(m->bins[i]));
        if (rc != WEFT_OK) {
            return say(err, err_len, rc,
                       "cannot copy the runfile %s (is it in the target's data?): %s", all[i],
                       weft_strerror(rc));
        }
        m->num_bins = i + 1;
    }
    return WEFT_OK;
}

int mesh_start(struct mesh *m, const struct mesh_opts *o, char *err, size_t err_len)
{
    if (geteuid() != 0) {
        return say(err, err_len, WEFT_EINVAL, "pods as network namespaces need root");
    }
    if (o->num_pods != 0 && o->num_pods != 2 && o->num_pods != 3) {
        return say(err, err_len, WEFT_EINVAL, "%d pods: 2 or 3", o->num_pods);
    }
    reap_stale();
    int id = (int)getpid();
    static const char *const ips[] = {MESH_IP_A, MESH_IP_B, MESH_IP_C};
    static const unsigned uids[] = {MESH_UID_PROXY_A, MESH_UID_PROXY_B, MESH_UID_PROXY_C};
    m->num_pods = o->num_pods == 3 ? 3 : 2;
    for (size_t i = 0; i < m->num_pods; i++) {
        struct mesh_pod *p = &m->pods[i];
        snprintf(p->ns, sizeof(p->ns), NS_PREFIX "%c-%d", (char)('a' + i), id);
        snprintf(p->veth, sizeof(p->veth), "wm%c%d", (char)('a' + i), id);
        p->ip = ips[i];
        p->proxy_uid = uids[i];
    }
    if (m->num_pods == 3) {
        snprintf(m->switch_ns, sizeof(m->switch_ns), NS_PREFIX "s-%d", id);
    }
    grpc_init();
    m->grpc = true;
    if (ca_proc_init(&m->ca) != WEFT_OK) {
        return say(err, err_len, WEFT_EIO, "cannot make the CA's directory");
    }
    /* the CA reads the policy as nobody */
    snprintf(m->policy_dir, sizeof(m->policy_dir), "%s/policy", m->ca.dir);
    if (chmod(m->ca.dir, 0755) != 0 || mkdir(m->policy_dir, 0755) != 0 ||
        (o->policy_yaml != NULL && mesh_policy_write(m, o->policy_yaml) != WEFT_OK)) {
        return say(err, err_len, WEFT_EIO, "cannot write the policy in %s: %s", m->policy_dir,
                   strerror(errno));
    }
    size_t f = 0;
    m->ca_flags[f++] = "--policy-dir";
    m->ca_flags[f++] = m->policy_dir;
    if (o->svid_ttl != NULL) {
        m->ca_flags[f++] = "--intermediate-ttl";
        m->ca_flags[f++] = o->svid_ttl;
    }
    for (size_t i = 0; i < f; i++) {
        m->ca.extra[i] = m->ca_flags[i];
    }
    int rc = ca_proc_start(&m->ca, "1h");
    run_record(m, true);
    if (rc != WEFT_OK) {
        return say(err, err_len, WEFT_EIO, "the CA did not start; see %s/ca.log", m->ca.dir);
    }
    if (agent_proc_init(&m->agent, &m->ca) != WEFT_OK) {
        return say(err, err_len, WEFT_EIO, "no join token for the agent");
    }
    struct rpc_status st = {0};
    static const char *const ids[] = {MESH_ID_A, MESH_ID_B, MESH_ID_C};
    for (size_t i = 0; i < m->num_pods; i++) {
        if (agent_proc_entry(&m->ca, ids[i], uids[i], &st) != WEFT_OK) {
            return say(err, err_len, WEFT_EIO, "CreateEntry: %s", st.details);
        }
    }
    m->agent.extra[0] = "--claim-cidr";
    m->agent.extra[1] = "198.18.0.0/15";
    for (size_t i = 0; o->agent_extra[i] != NULL; i++) {
        if (i + 2 >= nitems(m->agent.extra)) {
            return say(err, err_len, WEFT_ELIMIT, "over %zu agent flags",
                       nitems(m->agent.extra) - 2);
        }
        m->agent.extra[i + 2] = o->agent_extra[i];
    }
    if (agent_proc_start(&m->agent, true) != WEFT_OK ||
        agent_proc_wait_served(&m->agent, (int)m->num_pods, 20000) != WEFT_OK) {
        return say(err, err_len, WEFT_EIO, "the agent never served the %zu pods' SVIDs; see %s",
                   m->num_pods, m->agent.log);
    }
    /* what the proxies and apps (other uids) write: admin sockets, logs, outputs */
    snprintf(m->run_dir, sizeof(m->run_dir), "%s/pods", m->ca.dir);
    if (mkdir(m->run_dir, 0777) != 0 || chmod(m->run_dir, 0777) != 0) {
        return say(err, err_len, WEFT_EIO, "cannot make %s: %s", m->run_dir, strerror(errno));
    }
    for (size_t i = 0; i < m->num_pods; i++) {
        struct mesh_pod *p = &m->pods[i];
        snprintf(p->admin_sock, sizeof(p->admin_sock), "%s/proxy-%c.sock", m->run_dir,
                 (char)('a' + i));
        snprintf(p->log, sizeof(p->log), "%s/proxy-%c.log", m->run_dir, (char)('a' + i));
    }
    TRY(copy_bins(m, o, err, err_len));
    return make_pods(m, o, err, err_len);
}

/* keep_outputs copies the logs and outputs to Bazel's undeclared outputs, when it set them. */
static void keep_outputs(const struct mesh *m)
{
    const char *outputs = getenv("TEST_UNDECLARED_OUTPUTS_DIR");
    if (outputs == NULL || m->ca.dir[0] == '\0' || strlen(outputs) > 512) {
        return;
    }
    const char *base = strrchr(m->ca.dir, '/');
    char cmd[1536];
    snprintf(cmd, sizeof(cmd),
             "d='%s/%s' && mkdir -p \"$d\" && cp %s/ca.log %s/agent.log \"$d\" 2>/dev/null; "
             "find %s -maxdepth 1 -type f -exec cp {} \"$d\" ';' 2>/dev/null",
             outputs, base != NULL ? base + 1 : m->ca.dir, m->ca.dir, m->ca.dir,
             m->run_dir[0] != '\0' ? m->run_dir : "/nonexistent");
    (void)!system(cmd);
}

void mesh_cleanup(struct mesh *m)
{
    while (m->num_pids > 0) {
        pid_t pid = m->pids[0];
        if (mesh_kill(m, pid, SIGKILL, 10000, NULL) == WEFT_EAGAIN) {
            forget(m, pid); /* unkillable: do not loop on it */
        }
    }
    if (m->made_ns) { /* the veths, the bridge and the iptables rules go with the namespaces */
        for (size_t i = 0; i <= m->num_pods; i++) {
            const char *ns = i < m->num_pods ? m->pods[i].ns : m->switch_ns;
            if (ns[0] == '\0') {
                continue;
            }
            char cmd[256];
            snprintf(cmd, sizeof(cmd),
                     "for p in $(ip netns pids %s 2>/dev/null); do kill -9 $p; done; "
                     "ip netns del %s 2>/dev/null",
                     ns, ns);
            (void)!system(cmd);
        }
    }
    keep_outputs(m);
    agent_proc_stop(&m->agent);
    ca_proc_cleanup(&m->ca);
    if (m->ca.dir[0] != '\0') {
        run_record(m, false);
    }
    if (m->grpc) {
        grpc_shutdown();
    }
    mesh_init(m);
}

/* --- certificates and rotation ----------------------------------------------------------- */

int mesh_certs(const struct mesh *m, enum mesh_pod_id pod, struct mesh_certs *out)
{
    char buf[8192];
    memset(out, 0, sizeof(*out));
    ENSURE(mesh_admin(m, pod, "GET", "/certs", buf, sizeof(buf)) == 200, WEFT_EIO);
    const char *body = strstr(buf, "\r\n\r\n");
    ENSURE(body != NULL, WEFT_EIO);
    json_t *o = json_loads(body + 4, JSON_DISABLE_EOF_CHECK, NULL);
    ENSURE(o != NULL, WEFT_EIO);
    int rc = WEFT_EIO;
    const char *serial = json_string_value(json_object_get(o, "serial"));
    json_t *not_after = json_object_get(o, "not_after");
    json_t *chain = json_object_get(o, "chain");
    if (serial == NULL || serial[0] == '\0' || strlen(serial) >= sizeof(out->serial) ||
        !json_is_integer(not_after) || !json_is_array(chain)) {
        goto out;
    }
    snprintf(out->serial, sizeof(out->serial), "%s", serial);
    out->not_after = (long long)json_integer_value(not_after);
    out->chain_not_after = out->not_after;
    size_t i;
    json_t *c;
    json_array_foreach(chain, i, c)
    {
        json_t *na = json_object_get(c, "not_after");
        if (!json_is_integer(na)) {
            goto out;
        }
        if ((long long)json_integer_value(na) < out->chain_not_after) {
            out->chain_not_after = (long long)json_integer_value(na);
        }
    }
    rc = WEFT_OK;
out:
    json_decref(o);
    return rc;
}

static long long min_ll(long long a, long long b) { return a < b ? a : b; }

int mesh_certs_lasting(const struct mesh *m, long long seconds, int timeout_ms,
                       struct mesh_certs out[2], char *err, size_t err_len)
{
    long long best = -1;
    int64_t end = now_ms() + timeout_ms;
    for (;;) {
        if (mesh_certs(m, MESH_POD_A, &out[0]) == WEFT_OK &&
            mesh_certs(m, MESH_POD_B, &out[1]) == WEFT_OK) {
            long long left = min_ll(out[0].not_after, out[1].not_after) - (long long)time(NULL);
            if (left >= seconds) {
                return WEFT_OK;
            }
            best = left > best ? left : best;
        }
        if (now_ms() >= end) {
            return say(err, err_len, WEFT_EAGAIN,
                       "in %d ms the SVIDs of pods A and B never had %lld s left at once (at best "
                       "%lld); see %s, %s",
                       timeout_ms, seconds, best, m->pods[0].log, m->pods[1].log);
        }
        sleep_ms(100);
    }
}

/* touch makes the empty file |path|. */
static bool touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    if (fd < 0) {
        return false;
    }
    close(fd);
    return true;
}

int mesh_stream_rotations(struct mesh *m, const char *port, int min_left_s, int rotations,
                          const char *out_name, struct mesh_stream *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof(*out));
    const char *app = mesh_bin(m, "mesh_app");
    if (app == NULL) {
        return say(err, err_len, WEFT_EINVAL, "proxy/mesh_app is not among the runfiles");
    }
    TRY(mesh_certs_lasting(m, min_left_s, 40000, out->start, err, err_len));
    out->seconds =
        min_ll(out->start[0].not_after, out->start[1].not_after) - (long long)time(NULL) - 2;
    char secs[24], path[160], stop[176];
    snprintf(secs, sizeof(secs), "%lld", out->seconds);
    snprintf(path, sizeof(path), "%s", mesh_path(m, out_name));
    snprintf(stop, sizeof(stop), "%s.stop", path);
    const char *argv[] = {app, "stream", MESH_IP_B, port, secs, stop, NULL};
    pid_t pid;
    int rc = mesh_spawn(m, MESH_POD_A, MESH_UID_APP, path, argv, &pid);
    if (rc != WEFT_OK) {
        return say(err, err_len, rc, "cannot start mesh_app stream: %s", weft_strerror(rc));
    }
    if (mesh_wait_file_has(path, "stream started", 10000) != WEFT_OK) {
        return say(err, err_len, WEFT_EIO, "the stream never started; see %s", path);
    }
    /* count the rotations while it flows; once there were enough (the server's among them), let
     * it flow 2 s more on the new credentials, then stop it */
    struct mesh_certs last[2] = {out->start[0], out->start[1]};
    time_t give_up = time(NULL) + out->seconds + 20, stop_at = 0;
    while (!mesh_file_has(path, "stream done") && !mesh_file_has(path, "stream broken") &&
           time(NULL) < give_up) {
        for (int pod = 0; pod < 2; pod++) {
            struct mesh_certs now;
            if (mesh_certs(m, pod, &now) == WEFT_OK && strcmp(now.serial, last[pod].serial) != 0) {
                out->rotations[pod]++;
                last[pod] = now;
            }
        }
        if (stop_at == 0 && out->rotations[MESH_POD_B] >= 1 &&
            out->rotations[0] + out->rotations[1] >= rotations) {
            stop_at = time(NULL) + 2;
        }
        if (stop_at != 0 && time(NULL) >= stop_at && !touch(stop)) {
            return say(err, err_len, WEFT_EIO, "cannot make %s: %s", stop, strerror(errno));
        }
        sleep_ms(200);
    }
    if (mesh_kill(m, pid, 0, 5000, NULL) == WEFT_EAGAIN) {
        (void)!mesh_kill(m, pid, SIGKILL, 5000, NULL);
    }
    uint8_t *text;
    size_t len;
    if (weft_file_read(&text, &len, path, 1 << 16) != WEFT_OK) {
        return say(err, err_len, WEFT_EIO, "cannot read %s", path);
    }
    const char *done = strstr((const char *)text, "stream done ");
    rc = WEFT_OK;
    if (done == NULL || sscanf(done, "stream done sent=%llu echoed=%llu max_gap_ms=%lld",
                               &out->sent, &out->echoed, &out->max_gap_ms) != 3) {
        const char *broken = strstr((const char *)text, "stream broken");
        rc = say(err, err_len, WEFT_EIO, "the stream did not end within %lld s: %.*s (see %s, %s)",
                 out->seconds + 20, broken != NULL ? (int)strcspn(broken, "\n") : 9,
                 broken != NULL ? broken : "no result", m->pods[0].log, m->pods[1].log);
    }
    free(text);
    return rc;
}

/* --- the node's daemons -------------------------------------------------------------------- */

void mesh_ca_stop(struct mesh *m, int sig) { ca_proc_stop(&m->ca, sig); }

int mesh_ca_restart(struct mesh *m, char *err, size_t err_len)
{
    int rc = ca_proc_start(&m->ca, "1h");
    run_record(m, true); /* its new PID, for a run killed later */
    if (rc != WEFT_OK) {
        return say(err, err_len, WEFT_EIO, "the CA did not start again; see %s/ca.log", m->ca.dir);
    }
    return WEFT_OK;
}

int mesh_agent_restart(struct mesh *m, int timeout_ms, char *err, size_t err_len)
{
    agent_proc_stop(&m->agent);
    if (agent_proc_start(&m->agent, false) != WEFT_OK ||
        agent_proc_wait_served(&m->agent, (int)m->num_pods, timeout_ms) != WEFT_OK) {
        return say(err, err_len, WEFT_EIO,
                   "the restarted agent did not serve the %zu pods' SVIDs within %d ms; see %s",
                   m->num_pods, timeout_ms, m->agent.log);
    }
    return WEFT_OK;
}

/* --- stopping a run from a signal (benchmarks: a test has Criterion's own handling) ---------- */

static struct mesh *sig_mesh;
static volatile sig_atomic_t *sig_stop;
static char sig_ip[64] = "/usr/sbin/ip"; /* found before any signal: a handler cannot search */

/* on_stop notes the signal and kills (SIGKILL, by PID) the processes started in the pods, so
 * that whatever the run waits for fails at once; the run then cleans up (mesh_cleanup) and
 * exits. Async-signal-safe calls only. */
static void on_stop(int sig)
{
    *sig_stop = sig;
    for (size_t i = 0; i < sig_mesh->num_pids; i++) {
        kill(sig_mesh->pids[i], SIGKILL);
    }
}

/* on_crash kills everything by PID and deletes the namespaces (fork and execve of `ip netns
 * del`), then lets the signal take its course. Async-signal-safe calls only; what it cannot do,
 * the next mesh_start's sweep of dead runs does. */
static void on_crash(int sig)
{
    struct mesh *m = sig_mesh;
    for (size_t i = 0; i < m->num_pids; i++) {
        kill(m->pids[i], SIGKILL);
    }
    if (m->agent.pid > 0) {
        kill(m->agent.pid, SIGKILL);
    }
    if (m->ca.pid > 0) {
        kill(m->ca.pid, SIGKILL);
    }
    for (size_t i = 0; m->made_ns && i <= m->num_pods; i++) {
        char *ns = i < m->num_pods ? m->pods[i].ns : m->switch_ns;
        if (ns[0] == '\0') {
            continue;
        }
        pid_t pid = fork();
        if (pid == 0) {
            char *const argv[] = {"ip", "netns", "del", ns, NULL};
            char *const envp[] = {NULL};
            execve(sig_ip, argv, envp);
            _exit(127);
        }
        if (pid > 0) {
            waitpid(pid, NULL, 0);
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void mesh_catch_signals(struct mesh *m, volatile sig_atomic_t *stop)
{
    static const char *const ips[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"};
    for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++) {
        if (access(ips[i], X_OK) == 0) {
            snprintf(sig_ip, sizeof(sig_ip), "%s", ips[i]);
            break;
        }
    }
    sig_mesh = m;
    sig_stop = stop;
    static const int stops[] = {SIGINT, SIGTERM, SIGHUP};
    static const int crashes[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    struct sigaction sa = {.sa_handler = on_stop};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); i++) {
        sigaction(stops[i], &sa, NULL);
    }
    sa.sa_handler = on_crash;
    sa.sa_flags = SA_RESETHAND;
    for (size_t i = 0; i < sizeof(crashes) / sizeof(crashes[0]); i++) {
        sigaction(crashes[i], &sa, NULL);
    }
}
