/* test/testlib/agent_proc.c: see agent_proc.h. */
#include "test/testlib/agent_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto/ca.pb-c.h"
#include "test/testlib/net.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* die_with_parent: a child we start never outlives the test process that started it (a
 * Criterion timeout kills the test without running its .fini). Call it after any setuid,
 * which clears the setting. */
static void die_with_parent(pid_t parent)
{
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
        _exit(125);
    }
}

int agent_proc_init(struct agent_proc *a, struct ca_proc *ca)
{
    memset(a, 0, sizeof(*a));
    a->ca = ca;
    /* workloads under other uids must reach the socket: a directory all may enter */
    ENSURE(chmod(ca->dir, 0755) == 0, WEFT_EIO);
    snprintf(a->sock, sizeof(a->sock), "%s/run/agent.sock", ca->dir);
    snprintf(a->http_sock, sizeof(a->http_sock), "%s/http.sock", ca->dir);
    snprintf(a->state, sizeof(a->state), "%s/agent-state", ca->dir);
    snprintf(a->log, sizeof(a->log), "%s/agent.log", ca->dir);
    char *t = ca_proc_token(ca, AGENT_PROC_NODE, 600);
    ENSURE(t != NULL, WEFT_EIO);
    snprintf(a->token, sizeof(a->token), "%s", t);
    free(t);
    return WEFT_OK;
}

int agent_proc_start(struct agent_proc *a, bool with_token)
{
    char bundle[160], http[160];
    snprintf(bundle, sizeof(bundle), "%s/bundle.pem", a->ca->dir);
    snprintf(http, sizeof(http), "unix:%s", a->http_sock);
    pid_t parent = getpid();
    a->pid = fork();
    ENSURE(a->pid >= 0, WEFT_EIO);
    if (a->pid == 0) {
        die_with_parent(parent);
        int fd = open(a->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
        }
        char *argv[32] = {"weft-agent",  "--ca",
                          a->ca->listen, "--trust-domain",
                          CA_PROC_TD,    "--bootstrap-bundle",
                          bundle,        "--state-dir",
                          a->state,      "--socket",
                          a->sock,       "--http",
                          http};
        size_t n = 13;
        for (size_t i = 0; i < nitems(a->extra) && a->extra[i] != NULL; i++) {
            argv[n++] = (char *)a->extra[i];
        }
        char token_file[160];
        if (with_token) { /* as `weftctl token create` prints it, saved to a file */
            snprintf(token_file, sizeof(token_file), "%s/join-token", a->ca->dir);
            FILE *f = fopen(token_file, "w");
            if (f != NULL) {
                fprintf(f, "%s\n# for node %s, valid for 10 min, once\n", a->token,
                        AGENT_PROC_NODE);
                fclose(f);
            }
            argv[n++] = "--join-token-file";
            argv[n++] = token_file;
        }
        execv(AGENT_PROC_BIN, argv);
        _exit(127);
    }
    return WEFT_OK;
}

void agent_proc_stop(struct agent_proc *a)
{
    if (a->pid > 0) {
        kill(a->pid, SIGTERM);
        int status;
        while (waitpid(a->pid, &status, 0) < 0 && errno == EINTR) {
        }
        a->pid = 0;
    }
}

int agent_proc_http(const struct agent_proc *a, const char *path, char *buf, size_t len)
{
    return testlib_http_unix(a->http_sock, "GET", path, buf, len);
}

double agent_proc_metric(const char *text, const char *series, double missing)
{
    size_t n = strlen(series);
    for (const char *p = text; (p = strstr(p, series)) != NULL; p += n) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ') {
            return strtod(p + n + 1, NULL);
        }
    }
    return missing;
}

int agent_proc_wait_served(struct agent_proc *a, int svids, int timeout_ms)
{
    static char buf[65536];
    int64_t end = now_ms() + timeout_ms;
    do {
        if (a->pid <= 0 || waitpid(a->pid, NULL, WNOHANG) != 0) {
            a->pid = 0;
            return WEFT_EIO; /* it exited */
        }
        if (agent_proc_http(a, "/ready", buf, sizeof(buf)) == 200 &&
            agent_proc_http(a, "/metrics", buf, sizeof(buf)) == 200 &&
            agent_proc_metric(buf, "weft_agent_svids_held", 0) >= svids) {
            return WEFT_OK;
        }
        usleep(100 * 1000);
    } while (now_ms() < end);
    return WEFT_EIO;
}

int agent_proc_entry(struct ca_proc *ca, const char *spiffe_id, unsigned uid, struct rpc_status *st)
{
    Weft__Ca__V1__Entry e = WEFT__CA__V1__ENTRY__INIT;
    char sel[32];
    snprintf(sel, sizeof(sel), "unix:uid:%u", uid);
    char *selp = sel;
    e.spiffe_id = (char *)spiffe_id;
    e.node = AGENT_PROC_NODE;
    e.selectors = &selp;
    e.n_selectors = 1;
    Weft__Ca__V1__CreateEntryRequest req = WEFT__CA__V1__CREATE_ENTRY_REQUEST__INIT;
    req.entry = &e;
    ProtobufCMessage *resp = NULL;
    TRY(ca_proc_admin(ca, "CreateEntry", &req.base,
                      &weft__ca__v1__create_entry_response__descriptor, &resp, st));
    protobuf_c_message_free_unpacked(resp, NULL);
    return WEFT_OK;
}

int agent_proc_copy_runfile(const struct ca_proc *ca, const char *runfile, const char *name,
                            char *out, size_t out_len)
{
    int w = snprintf(out, out_len, "%s/%s", ca->dir, name);
    ENSURE(w > 0 && (size_t)w < out_len, WEFT_ELIMIT);
    int in = open(runfile, O_RDONLY | O_CLOEXEC);
    ENSURE(in >= 0, WEFT_EIO);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    bool ok = fd >= 0;
    char buf[65536];
    ssize_t n;
    while (ok && (n = read(in, buf, sizeof(buf))) != 0) {
        ok = n > 0 && write(fd, buf, (size_t)n) == n;
    }
    close(in);
    if (fd >= 0) {
        ok = fchmod(fd, 0755) == 0 && ok; /* whatever the umask said */
        ok = close(fd) == 0 && ok;
    }
    return ok ? WEFT_OK : WEFT_EIO;
}

/* exited: whether |pid| is a zombie, without reaping it (its group can still be killed). */
static bool exited(pid_t pid)
{
    siginfo_t si = {0};
    return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

/* drain reads what the pipe holds now into |out| (past |out_len| - 1 it is dropped). */
static void drain(int fd, char *out, size_t out_len, size_t *len, bool *eof)
{
    char sink[4096];
    while (!*eof) {
        bool room = *len < out_len - 1;
        ssize_t r = read(fd, room ? out + *len : sink, room ? out_len - 1 - *len : sizeof(sink));
        if (r < 0) {
            return; /* EAGAIN: nothing more for now */
        }
        *eof = r == 0;
        if (room && r > 0) {
            *len += (size_t)r;
            out[*len] = '\0';
        }
    }
}

int agent_proc_run(unsigned uid, const char *cmd, bool first_line, int timeout_ms, char *out,
                   size_t out_len, int *status)
{
    int p[2];
    ENSURE(out_len > 0 && pipe2(p, O_CLOEXEC) == 0, WEFT_EIO);
    out[0] = '\0';
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return WEFT_EIO;
    }
    if (pid == 0) {
        setpgid(0, 0);
        dup2(p[1], 1);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) {
            dup2(null, 0);
        }
        if (geteuid() == 0 && uid != 0 &&
            (setgroups(0, NULL) != 0 || setgid(uid) != 0 || setuid(uid) != 0)) {
            _exit(126);
        }
        die_with_parent(parent);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid); /* either of us may get there first */
    close(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    int64_t end = now_ms() + timeout_ms;
    size_t len = 0;
    bool eof = false;
    int rc = WEFT_EAGAIN;
    for (;;) {
        drain(p[0], out, out_len, &len, &eof);
        if (first_line && strchr(out, '\n') != NULL) {
            rc = WEFT_OK;
            break;
        }
        if (exited(pid)) {
            drain(p[0], out, out_len, &len, &eof); /* all it wrote before it exited */
            rc = !first_line || strchr(out, '\n') != NULL ? WEFT_OK : WEFT_EIO;
            break;
        }
        if (first_line && eof) {
            rc = WEFT_EIO; /* no line will come */
            break;
        }
        int64_t left = end - now_ms();
        if (left <= 0) {
            break; /* WEFT_EAGAIN */
        }
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        (void)poll(&pfd, eof ? 0 : 1, left < 50 ? (int)left : 50);
    }
    close(p[0]);
    kill(-pid, SIGKILL); /* a streaming client still waiting, or what it left in its group */
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    if (first_line) {
        char *nl = strchr(out, '\n');
        if (nl != NULL) {
            nl[1] = '\0';
        }
    } else if (rc == WEFT_OK && status != NULL) {
        *status = ws;
    }
    return rc;
}

static void dump(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    fprintf(stderr, "--- %s\n", path);
    char line[1024];
    while (fgets(line, sizeof(line), f) != NULL) {
        fputs(line, stderr);
    }
    fclose(f);
}

void agent_proc_dump_logs(const struct agent_proc *a)
{
    char log[192];
    snprintf(log, sizeof(log), "%s/ca.log", a->ca->dir);
    dump(log);
    dump(a->log);
}
