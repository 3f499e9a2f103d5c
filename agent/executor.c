/*
 * executor.c: step processes for the agent's zloop, spawned and watched
 * without ever blocking the loop.
 *
 * Design notes
 * - One job = one child (`/bin/sh -c CMD`), leader of its own process group,
 *   so that a timeout or a cancel reaches the grandchildren too. The parent
 *   and the child both call setpgid() so the group exists as soon as fork()
 *   returns on either side.
 * - The child runs between fork() and execve() in a copy of a possibly
 *   multi-threaded process: it calls only async-signal-safe functions on data
 *   prepared before fork() (argv, envp, error messages). It sets
 *   PR_SET_PDEATHSIG then checks that its parent is still the agent (the agent
 *   may have died before prctl), unblocks every signal and resets every
 *   disposition (the agent blocks TERM/HUP/CHLD for its signalfd and may ignore
 *   PIPE; both would survive execve), and closes every descriptor above 2.
 * - Watching: per job a pidfd poller (exit) and a non-blocking output pipe
 *   poller; per executor one timerfd poller armed at the earliest deadline
 *   (timeout, SIGKILL after the grace, or the waitpid polling of children
 *   without a pidfd). A timerfd is one poll item whatever the number of jobs,
 *   wakes the loop only when something is due, and avoids zloop's timer list
 *   (linear per iteration, and zloop_timer_end outside a running loop leaves a
 *   zombie that zloop_destroy asserts on).
 * - On exit: the group is SIGKILLed before the leader is reaped (a zombie
 *   leader keeps the pgid from being reused), then the pipe is drained of what
 *   the child wrote, then the callback runs with the slot already free.
 *
 * Job states:
 *
 *   start --> RUNNING --(timeout or cancel: SIGTERM+SIGCONT to group)--> TERMINATING
 *   TERMINATING --(grace elapsed: SIGKILL to group)--> TERMINATING
 *   RUNNING|TERMINATING --(pidfd readable / waitid: exited)--> kill group, reap,
 *       drain output, callback, freed
 *
 * Group files (pgid_dir/PGID.pgid, "PGID BOOT_ID") exist from spawn to reap so
 * that a restarted agent can kill the grandchildren of a step whose agent was
 * SIGKILLed (the step itself dies with the agent through PR_SET_PDEATHSIG).
 */
#include "executor.h"
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gg_log.h"

extern char **environ;

#define S_READ_CHUNK     (64u * 1024u)
#define S_DRAIN_READS    64 /* reads per drain after exit: 4 MiB at most */
#define S_POLL_READS     4  /* reads per output event, for fairness */
#define S_BOOT_ID_MAX    64
#define S_DEFAULT_PATH   "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define S_LOG_TRUNC_NOTE "\n[gaggle: log truncated here]\n"

static const char *const s_default_allow[] = {"PATH",   "HOME", "LANG",  "LC_ALL", "TZ",
                                              "TMPDIR", "USER", "SHELL", "TERM",   NULL};

typedef struct {
    executor_t *owner;
    uint64_t id;
    pid_t pid;
    int pidfd;  /* -1: watched by waitid polling */
    int out_fd; /* read end of stdout+stderr, -1 once closed */
    int log_fd; /* -1: no log */
    uint64_t log_bytes;
    bool log_truncated;
    bool log_failed;
    char *tail; /* ring of tail_cap bytes (+1 for the final NUL) */
    size_t tail_len;
    size_t tail_pos; /* next write position */
    uint64_t output_bytes;
    uint64_t started_ms;
    uint64_t deadline_ms; /* 0: none */
    uint64_t kill_at_ms;  /* 0: none */
    bool term_sent;
    bool timed_out;
    bool cancelled;
    bool abandoned; /* executor_abandon: no callback */
    void *tag;
    executor_done_fn *on_done; /* the job's own callback or the executor's */
    void *on_done_arg;
    char *pgid_path; /* NULL when not recorded */
    zmq_pollitem_t pid_item;
    zmq_pollitem_t out_item;
    bool pid_polled; /* pid_item registered */
    bool out_polled; /* out_item registered */
} job_t;

struct executor_t {
    zloop_t *loop;
    unsigned max_workers;
    char *log_dir;
    char *pgid_dir;
    size_t tail_cap;
    uint64_t log_max;
    uint64_t grace_ms;
    char **allow;           /* NULL-terminated copies of the allowlist */
    char *shell;            /* absolute path of the shell */
    const char *shell_name; /* its argv[0] */
    executor_done_fn *on_done;
    void *on_done_arg;
    bool no_pidfd;
    int timer_fd;
    zmq_pollitem_t timer_item;
    bool timer_polled;
    job_t **slots; /* max_workers entries, NULL when free */
    uint64_t next_id;
    executor_stats_t stats;
    char boot_id[S_BOOT_ID_MAX];
};

/* Everything the child needs, prepared before fork(). */
typedef struct {
    pid_t parent;
    int in_fd;
    int out_fd;
    const char *workdir;
    const char *shell;
    char *const *argv;
    char *const *envp;
    const char *chdir_msg;
    const char *exec_msg;
    const char *netns_msg;
    bool new_netns;
    int max_fd;
    struct sigaction dfl;
    sigset_t none;
} child_args_t;

static uint64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static void s_close(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* Moves *fd to a number above 2 (close-on-exec), so that dup2 onto 0/1/2 in
 * the child can never clobber another descriptor it still needs. */
static int s_fd_above2(int *fd)
{
    if (*fd > 2)
        return 0;
    int nfd = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (nfd < 0)
        return -1;
    close(*fd);
    *fd = nfd;
    return 0;
}

static int s_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return 0;
}

static int s_read_boot_id(char *out, size_t size)
{
    out[0] = '\0';
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, out, size - 1);
    close(fd);
    if (n <= 0) {
        out[0] = '\0';
        return -1;
    }
    out[n] = '\0';
    out[strcspn(out, "\r\n")] = '\0';
    return out[0] ? 0 : -1;
}

static bool s_env_name_ok(const char *name)
{
    if (!name || !name[0] || strlen(name) > 255)
        return false;
    if (!((name[0] >= 'A' && name[0] <= 'Z') || (name[0] >= 'a' && name[0] <= 'z') ||
          name[0] == '_'))
        return false;
    for (const char *p = name; *p; p++) {
        char c = *p;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

/* A relative path with no "." or ".." component. */
static bool s_rel_path_ok(const char *path)
{
    if (!path[0] || path[0] == '/' || strlen(path) >= PATH_MAX)
        return false;
    const char *p = path;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t) (end - p) : strlen(p);
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        if (n == 0 && !end)
            return false;
        p += n;
        if (*p == '/')
            p++;
    }
    return true;
}

static void s_free_strv(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

/* ---------------------------------------------------------------------------
 * Environment: the allowlist read from the agent's environment, then the
 * job's pairs (later ones override earlier ones of the same name).
 */

typedef struct {
    char **v;
    size_t n;
    size_t cap;
    size_t bytes;
} envv_t;

static int s_envv_set(envv_t *env, const char *name, const char *value)
{
    size_t nlen = strlen(name), vlen = strlen(value);
    if (vlen > EXECUTOR_COMMAND_MAX)
        return GG_ETOOBIG;
    char *entry = malloc(nlen + vlen + 2);
    if (!entry)
        return GG_ENOMEM;
    memcpy(entry, name, nlen);
    entry[nlen] = '=';
    memcpy(entry + nlen + 1, value, vlen + 1);
    for (size_t i = 0; i < env->n; i++) {
        if (strncmp(env->v[i], name, nlen) == 0 && env->v[i][nlen] == '=') {
            env->bytes -= strlen(env->v[i]) + 1;
            free(env->v[i]);
            env->v[i] = entry;
            env->bytes += nlen + vlen + 2;
            return env->bytes > EXECUTOR_ENV_BYTES_MAX ? GG_ETOOBIG : 0;
        }
    }
    if (env->n + 1 >= env->cap) {
        size_t ncap = env->cap ? env->cap * 2 : 32;
        char **nv = realloc(env->v, ncap * sizeof *nv);
        if (!nv) {
            free(entry);
            return GG_ENOMEM;
        }
        env->v = nv;
        env->cap = ncap;
    }
    env->v[env->n++] = entry;
    env->v[env->n] = NULL;
    env->bytes += nlen + vlen + 2;
    return env->bytes > EXECUTOR_ENV_BYTES_MAX ? GG_ETOOBIG : 0;
}

static bool s_envv_has(const envv_t *env, const char *name)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < env->n; i++)
        if (strncmp(env->v[i], name, nlen) == 0 && env->v[i][nlen] == '=')
            return true;
    return false;
}

static int s_build_env(const executor_t *e, const executor_job_t *job, char ***envp_out)
{
    envv_t env = {0};
    int rc = 0;
    for (char **a = e->allow; *a; a++) {
        const char *v = getenv(*a);
        if (v && (rc = s_envv_set(&env, *a, v)) != 0)
            goto out;
    }
    if (!s_envv_has(&env, "PATH") && (rc = s_envv_set(&env, "PATH", S_DEFAULT_PATH)) != 0)
        goto out;
    for (size_t i = 0; i < job->env_count; i++) {
        if ((rc = s_envv_set(&env, job->env[i].name, job->env[i].value)) != 0)
            goto out;
    }
out:
    if (rc != 0) {
        if (env.v)
            s_free_strv(env.v);
        return rc;
    }
    *envp_out = env.v;
    return 0;
}

/* ---------------------------------------------------------------------------
 * The child side: async-signal-safe calls only, on prepared data.
 */

static void s_child_fail(const char *msg, int err) __attribute__((noreturn));
static void s_child_fail(const char *msg, int err)
{
    char num[16];
    size_t n = 0;
    unsigned v = err < 0 ? 0u : (unsigned) err;
    do {
        num[sizeof num - 1 - n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v && n < sizeof num - 2);
    ssize_t w = write(2, msg, strlen(msg));
    w = write(2, num + sizeof num - n, n);
    w = write(2, "\n", 1);
    (void) w;
    _exit(127);
}

static void s_child(const child_args_t *a) __attribute__((noreturn));
static void s_child(const child_args_t *a)
{
    setpgid(0, 0);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        _exit(127);
    if (getppid() != a->parent)
        _exit(127); /* the agent died before prctl: do not outlive it */
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &a->dfl, NULL); /* glibc's internal signals fail: fine */
    }
    sigprocmask(SIG_SETMASK, &a->none, NULL);
    if (dup2(a->in_fd, 0) < 0 || dup2(a->out_fd, 1) < 0 || dup2(a->out_fd, 2) < 0)
        _exit(127);
    if (close_range(3, ~0u, 0) != 0) {
        for (int fd = 3; fd < a->max_fd; fd++)
            close(fd);
    }
    if (a->new_netns && unshare(CLONE_NEWNET) != 0)
        s_child_fail(a->netns_msg, errno);
    if (a->workdir && chdir(a->workdir) != 0)
        s_child_fail(a->chdir_msg, errno);
    execve(a->shell, a->argv, a->envp);
    s_child_fail(a->exec_msg, errno);
}

/* ---------------------------------------------------------------------------
 * Output: log file (capped) and in-memory tail ring.
 */

static void s_log_write(job_t *job, const char *buf, size_t n)
{
    if (job->log_fd < 0 || job->log_failed || job->log_truncated)
        return;
    uint64_t room = job->owner->log_max - job->log_bytes;
    size_t take = n > room ? (size_t) room : n;
    while (take > 0) {
        ssize_t w = write(job->log_fd, buf, take);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            job->log_failed = true;
            gg_warn("executor: job %llu: writing its log failed: %s", (unsigned long long) job->id,
                    strerror(errno));
            return;
        }
        buf += w;
        take -= (size_t) w;
        job->log_bytes += (uint64_t) w;
    }
    if (n > room) {
        job->log_truncated = true;
        ssize_t w = write(job->log_fd, S_LOG_TRUNC_NOTE, strlen(S_LOG_TRUNC_NOTE));
        (void) w;
    }
}

static void s_tail_write(job_t *job, const char *buf, size_t n)
{
    size_t cap = job->owner->tail_cap;
    if (n >= cap) {
        memcpy(job->tail, buf + (n - cap), cap);
        job->tail_pos = 0;
        job->tail_len = cap;
        return;
    }
    size_t first = cap - job->tail_pos;
    if (first > n)
        first = n;
    memcpy(job->tail + job->tail_pos, buf, first);
    memcpy(job->tail, buf + first, n - first);
    job->tail_pos = (job->tail_pos + n) % cap;
    job->tail_len = job->tail_len + n > cap ? cap : job->tail_len + n;
}

static void s_reverse(char *p, size_t n)
{
    for (size_t i = 0, j = n; i + 1 < j; i++, j--) {
        char t = p[i];
        p[i] = p[j - 1];
        p[j - 1] = t;
    }
}

/* Makes the tail contiguous from the start of the buffer and NUL-terminates
 * it. While the ring has not wrapped the data already starts at 0. */
static void s_tail_linearize(job_t *job)
{
    size_t cap = job->owner->tail_cap;
    if (job->tail_len == cap && job->tail_pos != 0) {
        s_reverse(job->tail, job->tail_pos);
        s_reverse(job->tail + job->tail_pos, cap - job->tail_pos);
        s_reverse(job->tail, cap);
        job->tail_pos = 0;
    }
    job->tail[job->tail_len] = '\0';
}

static void s_output_close(job_t *job)
{
    if (job->out_polled) {
        zloop_poller_end(job->owner->loop, &job->out_item);
        job->out_polled = false;
    }
    s_close(&job->out_fd);
}

/* Reads up to max_reads chunks; closes the pipe at EOF or on an error. */
static void s_output_read(job_t *job, int max_reads)
{
    char buf[S_READ_CHUNK];
    for (int i = 0; i < max_reads && job->out_fd >= 0; i++) {
        ssize_t n = read(job->out_fd, buf, sizeof buf);
        if (n > 0) {
            job->output_bytes += (uint64_t) n;
            s_log_write(job, buf, (size_t) n);
            s_tail_write(job, buf, (size_t) n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0)
            gg_warn("executor: job %llu: reading its output failed: %s",
                    (unsigned long long) job->id, strerror(errno));
        s_output_close(job);
    }
}

/* ---------------------------------------------------------------------------
 * Signals, deadlines and the timerfd.
 */

static void s_signal_group(job_t *job, int sig)
{
    if (kill(-job->pid, sig) != 0 && errno == ESRCH)
        kill(job->pid, sig); /* group gone: the leader may still be there */
}

static void s_terminate(job_t *job, uint64_t now)
{
    if (job->term_sent)
        return;
    job->term_sent = true;
    s_signal_group(job, SIGTERM);
    s_signal_group(job, SIGCONT); /* a stopped process must run to see TERM */
    job->kill_at_ms = now + job->owner->grace_ms;
}

static void s_rearm(executor_t *e)
{
    uint64_t now = s_now_ms();
    uint64_t next = UINT64_MAX;
    for (unsigned i = 0; i < e->max_workers; i++) {
        job_t *job = e->slots[i];
        if (!job)
            continue;
        if (job->deadline_ms && !job->term_sent && job->deadline_ms < next)
            next = job->deadline_ms;
        if (job->kill_at_ms && job->kill_at_ms < next)
            next = job->kill_at_ms;
        if (job->pidfd < 0 && now + EXECUTOR_REAP_POLL_MS < next)
            next = now + EXECUTOR_REAP_POLL_MS;
    }
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    if (next != UINT64_MAX) {
        if (next == 0)
            next = 1;
        its.it_value.tv_sec = (time_t) (next / 1000u);
        its.it_value.tv_nsec = (long) (next % 1000u) * 1000000L;
    }
    if (timerfd_settime(e->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) != 0)
        gg_error("executor: timerfd_settime failed: %s", strerror(errno));
}

/* ---------------------------------------------------------------------------
 * Completion.
 */

static void s_job_free(job_t *job)
{
    if (!job)
        return;
    s_output_close(job);
    if (job->pid_polled) {
        zloop_poller_end(job->owner->loop, &job->pid_item);
        job->pid_polled = false;
    }
    s_close(&job->pidfd);
    s_close(&job->log_fd);
    if (job->pgid_path) {
        unlink(job->pgid_path);
        free(job->pgid_path);
    }
    free(job->tail);
    free(job);
}

static void s_slot_release(executor_t *e, job_t *job)
{
    for (unsigned i = 0; i < e->max_workers; i++) {
        if (e->slots[i] == job) {
            e->slots[i] = NULL;
            e->stats.running--;
            return;
        }
    }
}

/* The child has exited (status known when `reaped`): kill its group, drain
 * its output, hand the result to the callback and free the job. Returns the
 * callback's -1 to stop the loop, else 0. */
static int s_job_finish(job_t *job, int status, bool reaped)
{
    executor_t *e = job->owner;
    executor_result_t r;
    memset(&r, 0, sizeof r);
    r.exit_code = -1;
    if (reaped && WIFEXITED(status)) {
        r.exit_code = WEXITSTATUS(status);
    } else if (reaped && WIFSIGNALED(status)) {
        r.signal = WTERMSIG(status);
    }
    r.duration_ms = s_now_ms() - job->started_ms;

    s_output_read(job, S_DRAIN_READS);
    s_output_close(job);
    if (job->pid_polled) {
        zloop_poller_end(e->loop, &job->pid_item);
        job->pid_polled = false;
    }
    s_close(&job->pidfd);
    s_close(&job->log_fd);
    s_slot_release(e, job);
    s_tail_linearize(job);

    r.timed_out = job->timed_out;
    r.cancelled = job->cancelled;
    r.tail = job->tail;
    r.tail_len = job->tail_len;
    r.truncated = job->output_bytes > job->tail_len;
    r.output_bytes = job->output_bytes;
    r.log_truncated = job->log_truncated;
    r.log_failed = job->log_failed;
    r.pid = (int) job->pid;
    r.tag = job->tag;
    if (job->cancelled)
        e->stats.killed++;
    else if (job->timed_out)
        e->stats.timed_out++;
    else if (r.exit_code == 0)
        e->stats.succeeded++;
    else
        e->stats.failed++;
    gg_debug("executor: job %llu (pid %d) ended: exit %d signal %d%s%s after %llu ms",
             (unsigned long long) job->id, r.pid, r.exit_code, r.signal,
             r.timed_out ? " timed out" : "", r.cancelled ? " cancelled" : "",
             (unsigned long long) r.duration_ms);
    s_rearm(e);
    int rc = job->abandoned ? 0 : job->on_done(job->on_done_arg, job->id, &r);
    s_job_free(job);
    return rc == -1 ? -1 : 0;
}

/* Checks whether the job's child has exited; if so finishes the job.
 * Sets *finished. Returns what s_job_finish returns, else 0. */
static int s_job_check(job_t *job, bool *finished)
{
    *finished = false;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t) job->pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0) {
        if (errno == EINTR)
            return 0;
        /* Reaped by someone else (a waitpid(-1) elsewhere): status unknown. */
        gg_warn("executor: job %llu: child %d vanished: %s", (unsigned long long) job->id,
                (int) job->pid, strerror(errno));
        *finished = true;
        return s_job_finish(job, 0, false);
    }
    if (si.si_pid == 0)
        return 0;
    /* Kill stray grandchildren while the zombie leader pins the pgid. */
    kill(-job->pid, SIGKILL);
    int status = 0;
    pid_t w;
    do {
        w = waitpid(job->pid, &status, 0);
    } while (w < 0 && errno == EINTR);
    *finished = true;
    return s_job_finish(job, status, w == job->pid);
}

static int s_on_exit(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    bool finished;
    return s_job_check((job_t *) arg, &finished);
}

static int s_on_output(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    s_output_read((job_t *) arg, S_POLL_READS);
    return 0;
}

/* Finishes every exited child watched without a pidfd. A callback may start
 * or end jobs, so the scan restarts after each completion. */
static int s_reap_polled(executor_t *e)
{
    int rc = 0;
    bool again = true;
    while (again) {
        again = false;
        for (unsigned i = 0; i < e->max_workers; i++) {
            job_t *job = e->slots[i];
            if (!job || job->pidfd >= 0)
                continue;
            bool finished = false;
            if (s_job_check(job, &finished) == -1)
                rc = -1;
            if (finished) {
                again = true;
                break;
            }
        }
    }
    return rc;
}

static int s_on_timer(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    executor_t *e = arg;
    uint64_t expirations;
    ssize_t n = read(e->timer_fd, &expirations, sizeof expirations);
    (void) n;
    uint64_t now = s_now_ms();
    for (unsigned i = 0; i < e->max_workers; i++) {
        job_t *job = e->slots[i];
        if (!job)
            continue;
        if (!job->term_sent && job->deadline_ms && now >= job->deadline_ms) {
            gg_info("executor: job %llu (pid %d) timed out; terminating its group",
                    (unsigned long long) job->id, (int) job->pid);
            job->timed_out = true;
            s_terminate(job, now);
        }
        if (job->kill_at_ms && now >= job->kill_at_ms) {
            gg_info("executor: job %llu (pid %d) still running after the grace; killing",
                    (unsigned long long) job->id, (int) job->pid);
            s_signal_group(job, SIGKILL);
            job->kill_at_ms = 0;
        }
    }
    int rc = s_reap_polled(e);
    s_rearm(e);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Group files.
 */

static void s_record_group(executor_t *e, job_t *job)
{
    if (!e->pgid_dir)
        return;
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%d.pgid", e->pgid_dir, (int) job->pid);
    if (n < 0 || (size_t) n >= sizeof path)
        return;
    char line[128];
    int len = snprintf(line, sizeof line, "%d %s\n", (int) job->pid, e->boot_id);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || write(fd, line, (size_t) len) != (ssize_t) len) {
        gg_warn("executor: cannot record process group %d in %s: %s", (int) job->pid, path,
                strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(path);
        }
        return;
    }
    close(fd);
    job->pgid_path = strdup(path);
    if (!job->pgid_path)
        unlink(path);
}

int executor_kill_stale_groups(const char *pgid_dir, int *killed_out)
{
    int killed = 0;
    int rc = 0;
    DIR *dir = NULL;
    char boot[S_BOOT_ID_MAX];
    if (killed_out)
        *killed_out = 0;
    if (!pgid_dir)
        return GG_EINVAL;
    bool have_boot = s_read_boot_id(boot, sizeof boot) == 0;
    dir = opendir(pgid_dir);
    if (!dir) {
        if (errno != ENOENT) {
            gg_warn("executor: cannot read %s: %s", pgid_dir, strerror(errno));
            rc = GG_EIO;
        }
        goto out;
    }
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        size_t nlen = strlen(de->d_name);
        if (nlen < 6 || strcmp(de->d_name + nlen - 5, ".pgid") != 0)
            continue;
        char path[PATH_MAX];
        int pn = snprintf(path, sizeof path, "%s/%s", pgid_dir, de->d_name);
        if (pn < 0 || (size_t) pn >= sizeof path)
            continue;
        char buf[160] = {0};
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0)
            close(fd);
        int pgid = 0;
        char file_boot[S_BOOT_ID_MAX] = {0};
        bool parsed = n > 0 && sscanf(buf, "%d %63s", &pgid, file_boot) == 2 && pgid > 1;
        if (!parsed) {
            gg_warn("executor: ignoring malformed group file %s", path);
        } else if (!have_boot || strcmp(file_boot, boot) != 0) {
            gg_info("executor: group %d recorded before a reboot: left alone", pgid);
        } else if (pgid != (int) getpgrp() && kill(-pgid, 0) == 0) {
            if (kill(-pgid, SIGKILL) == 0) {
                gg_warn("executor: killed process group %d left by a previous run", pgid);
                killed++;
            }
        }
        if (unlink(path) != 0 && errno != ENOENT)
            gg_warn("executor: cannot delete %s: %s", path, strerror(errno));
    }
out:
    if (dir)
        closedir(dir);
    if (killed_out)
        *killed_out = killed;
    return rc;
}

/* ---------------------------------------------------------------------------
 * Construction.
 */

executor_t *executor_new(zloop_t *loop, const executor_config_t *cfg)
{
    executor_t *e = NULL;
    if (!loop || !cfg || !cfg->on_done || cfg->max_workers < 1 ||
        cfg->max_workers > EXECUTOR_WORKERS_MAX || cfg->tail_cap > EXECUTOR_TAIL_MAX) {
        gg_error("executor: invalid configuration");
        return NULL;
    }
    e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->loop = loop;
    e->timer_fd = -1;
    e->max_workers = cfg->max_workers;
    e->tail_cap = cfg->tail_cap ? cfg->tail_cap : EXECUTOR_TAIL_DEFAULT;
    e->log_max = cfg->log_max_bytes ? cfg->log_max_bytes : EXECUTOR_LOG_DEFAULT;
    e->grace_ms = cfg->kill_grace_ms ? cfg->kill_grace_ms : EXECUTOR_GRACE_DEFAULT;
    e->on_done = cfg->on_done;
    e->on_done_arg = cfg->on_done_arg;
    e->no_pidfd = cfg->no_pidfd;
    e->next_id = 1;
    e->shell = strdup(cfg->shell ? cfg->shell : "/bin/sh");
    if (!e->shell || e->shell[0] != '/') {
        gg_error("executor: the shell must be an absolute path");
        goto fail;
    }
    e->shell_name = strrchr(e->shell, '/') + 1;
    if (s_read_boot_id(e->boot_id, sizeof e->boot_id) != 0)
        snprintf(e->boot_id, sizeof e->boot_id, "unknown");
    e->slots = calloc(e->max_workers, sizeof *e->slots);
    if (!e->slots)
        goto fail;

    size_t n_allow = 0, n_extra = 0;
    while (s_default_allow[n_allow])
        n_allow++;
    while (cfg->env_allow && cfg->env_allow[n_extra])
        n_extra++;
    if (n_extra > EXECUTOR_ENV_MAX)
        goto fail;
    e->allow = calloc(n_allow + n_extra + 1, sizeof *e->allow);
    if (!e->allow)
        goto fail;
    for (size_t i = 0; i < n_allow + n_extra; i++) {
        const char *name = i < n_allow ? s_default_allow[i] : cfg->env_allow[i - n_allow];
        if (!s_env_name_ok(name)) {
            gg_error("executor: invalid environment variable name in the allowlist");
            goto fail;
        }
        if (!(e->allow[i] = strdup(name)))
            goto fail;
    }

    if (cfg->log_dir) {
        if (!(e->log_dir = strdup(cfg->log_dir)))
            goto fail;
        if (fsutil_mkdir_p(e->log_dir, 0750) != 0) {
            gg_error("executor: cannot create log directory %s", e->log_dir);
            goto fail;
        }
    }
    if (cfg->pgid_dir) {
        if (!(e->pgid_dir = strdup(cfg->pgid_dir)))
            goto fail;
        if (fsutil_mkdir_p(e->pgid_dir, 0700) != 0) {
            gg_error("executor: cannot create directory %s", e->pgid_dir);
            goto fail;
        }
        int killed = 0;
        if (executor_kill_stale_groups(e->pgid_dir, &killed) != 0)
            goto fail;
    }

    e->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (e->timer_fd < 0) {
        gg_error("executor: timerfd_create failed: %s", strerror(errno));
        goto fail;
    }
    e->timer_item = (zmq_pollitem_t){NULL, e->timer_fd, ZMQ_POLLIN, 0};
    if (zloop_poller(loop, &e->timer_item, s_on_timer, e) != 0)
        goto fail;
    e->timer_polled = true;
    return e;
fail:
    executor_destroy(&e);
    return NULL;
}

void executor_destroy(executor_t **ep)
{
    if (!ep || !*ep)
        return;
    executor_t *e = *ep;
    for (unsigned i = 0; e->slots && i < e->max_workers; i++) {
        job_t *job = e->slots[i];
        if (!job)
            continue;
        kill(-job->pid, SIGKILL);
        kill(job->pid, SIGKILL);
        pid_t w;
        do {
            w = waitpid(job->pid, NULL, 0);
        } while (w < 0 && errno == EINTR);
        e->slots[i] = NULL;
        s_job_free(job);
    }
    if (e->timer_polled)
        zloop_poller_end(e->loop, &e->timer_item);
    s_close(&e->timer_fd);
    s_free_strv(e->allow);
    free(e->shell);
    free(e->slots);
    free(e->log_dir);
    free(e->pgid_dir);
    free(e);
    *ep = NULL;
}

/* ---------------------------------------------------------------------------
 * Starting a job.
 */

static int s_validate_job(const executor_job_t *job)
{
    if (!job || !job->command || !job->command[0])
        return GG_EINVAL;
    if (strlen(job->command) > EXECUTOR_COMMAND_MAX)
        return GG_ETOOBIG;
    if (job->env_count > EXECUTOR_ENV_MAX)
        return GG_ETOOBIG;
    if (job->env_count && !job->env)
        return GG_EINVAL;
    for (size_t i = 0; i < job->env_count; i++) {
        if (!s_env_name_ok(job->env[i].name) || !job->env[i].value)
            return GG_EINVAL;
    }
    if (job->stdin_len > EXECUTOR_STDIN_MAX)
        return GG_ETOOBIG;
    if (job->stdin_len && !job->stdin_data)
        return GG_EINVAL;
    if (job->workdir && (!job->workdir[0] || strlen(job->workdir) >= PATH_MAX))
        return GG_EINVAL;
    if (job->log_path && job->log_path[0] != '/' && !s_rel_path_ok(job->log_path))
        return GG_EINVAL;
    if (job->new_netns && geteuid() != 0) {
        gg_warn("executor: a sandbox with network: none needs root (a new network namespace)");
        return GG_EPERM;
    }
    return 0;
}

static int s_open_log(executor_t *e, const executor_job_t *job, uint64_t id, int *fd_out)
{
    char path[PATH_MAX];
    char rel[64];
    const char *name = job->log_path;
    *fd_out = -1;
    if (name && name[0] == '/') {
        if (strlen(name) >= sizeof path)
            return GG_EINVAL;
        snprintf(path, sizeof path, "%s", name);
    } else {
        if (!e->log_dir)
            return name ? GG_EINVAL : 0; /* no log dir, no path: tail only */
        if (!name) {
            snprintf(rel, sizeof rel, "job-%llu.log", (unsigned long long) id);
            name = rel;
        }
        int n = snprintf(path, sizeof path, "%s/%s", e->log_dir, name);
        if (n < 0 || (size_t) n >= sizeof path)
            return GG_EINVAL;
        char *slash = strrchr(path, '/');
        if (slash && slash > path + strlen(e->log_dir)) {
            *slash = '\0';
            int rc = fsutil_mkdir_p(path, 0750);
            *slash = '/';
            if (rc != 0) {
                gg_warn("executor: cannot create the directory of log %s", path);
                return GG_EIO;
            }
        }
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd < 0) {
        gg_warn("executor: cannot open log %s: %s", path, strerror(errno));
        return GG_EIO;
    }
    *fd_out = fd;
    return 0;
}

/* Creates the stdin pipe and fills it completely before the child exists, so
 * that no write can block the loop or raise SIGPIPE later. */
static int s_stdin_pipe(const executor_job_t *job, int *read_fd_out)
{
    int p[2] = {-1, -1};
    int rc = GG_EINTERNAL;
    *read_fd_out = -1;
    if (pipe2(p, O_CLOEXEC) != 0 || s_fd_above2(&p[0]) != 0 || s_fd_above2(&p[1]) != 0)
        goto out;
    int size = fcntl(p[1], F_GETPIPE_SZ);
    if (size >= 0 && (size_t) size < job->stdin_len)
        size = fcntl(p[1], F_SETPIPE_SZ, (int) job->stdin_len);
    if (size < 0 || (size_t) size < job->stdin_len) {
        rc = GG_ETOOBIG;
        goto out;
    }
    if (s_set_nonblock(p[1]) != 0)
        goto out;
    const char *data = job->stdin_data;
    size_t left = job->stdin_len;
    while (left > 0) {
        ssize_t w = write(p[1], data, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = GG_ETOOBIG;
            goto out;
        }
        data += w;
        left -= (size_t) w;
    }
    *read_fd_out = p[0];
    p[0] = -1;
    rc = 0;
out:
    s_close(&p[0]);
    s_close(&p[1]);
    return rc;
}

int executor_start(executor_t *e, const executor_job_t *job, uint64_t *job_id_out)
{
    int rc = s_validate_job(job);
    char **envp = NULL;
    char *chdir_msg = NULL, *exec_msg = NULL;
    int in_fd = -1, out_p[2] = {-1, -1}, log_fd = -1;
    job_t *j = NULL;
    unsigned slot = 0;
    if (job_id_out)
        *job_id_out = 0;
    if (!e || rc != 0)
        return rc != 0 ? rc : GG_EINVAL;
    if (e->stats.running >= e->max_workers)
        return GG_EBUSY;
    while (slot < e->max_workers && e->slots[slot])
        slot++;
    if (slot == e->max_workers)
        return GG_EINTERNAL;
    uint64_t id = e->next_id;

    if ((rc = s_build_env(e, job, &envp)) != 0)
        goto out;
    char *argv[] = {(char *) e->shell_name, "-c", (char *) job->command, NULL};
    const char *wd = job->workdir ? job->workdir : "";
    size_t mlen = strlen(wd) + 64;
    chdir_msg = malloc(mlen);
    size_t elen = strlen(e->shell) + 48;
    exec_msg = malloc(elen);
    j = calloc(1, sizeof *j);
    if (!chdir_msg || !exec_msg || !j) {
        rc = GG_ENOMEM;
        goto out;
    }
    snprintf(chdir_msg, mlen, "gaggle: cannot enter work directory %s: errno ", wd);
    snprintf(exec_msg, elen, "gaggle: cannot execute %s: errno ", e->shell);
    j->owner = e;
    j->id = id;
    j->pidfd = -1;
    j->out_fd = -1;
    j->log_fd = -1;
    j->tag = job->tag;
    j->on_done = job->on_done ? job->on_done : e->on_done;
    j->on_done_arg = job->on_done ? job->on_done_arg : e->on_done_arg;
    j->tail = malloc(e->tail_cap + 1);
    if (!j->tail) {
        rc = GG_ENOMEM;
        goto out;
    }
    if ((rc = s_open_log(e, job, id, &log_fd)) != 0)
        goto out;

    rc = GG_EINTERNAL;
    if (pipe2(out_p, O_CLOEXEC) != 0 || s_fd_above2(&out_p[0]) != 0 ||
        s_fd_above2(&out_p[1]) != 0 || s_set_nonblock(out_p[0]) != 0) {
        gg_warn("executor: cannot create the output pipe: %s", strerror(errno));
        goto out;
    }
    if (job->stdin_data && job->stdin_len) {
        if ((rc = s_stdin_pipe(job, &in_fd)) != 0)
            goto out;
    } else {
        in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (in_fd < 0 || s_fd_above2(&in_fd) != 0) {
            rc = GG_EIO;
            goto out;
        }
    }

    child_args_t ca;
    memset(&ca, 0, sizeof ca);
    ca.parent = getpid();
    ca.in_fd = in_fd;
    ca.out_fd = out_p[1];
    ca.workdir = job->workdir;
    ca.shell = e->shell;
    ca.argv = argv;
    ca.envp = envp;
    ca.chdir_msg = chdir_msg;
    ca.exec_msg = exec_msg;
    ca.netns_msg = "gaggle: cannot create a network namespace (sandbox network: none): errno ";
    ca.new_netns = job->new_netns;
    struct rlimit rl;
    ca.max_fd = (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
                 rl.rlim_cur < (rlim_t) INT_MAX)
                    ? (int) rl.rlim_cur
                    : 65536;
    ca.dfl.sa_handler = SIG_DFL;
    sigemptyset(&ca.dfl.sa_mask);
    sigemptyset(&ca.none);

    uint64_t started = s_now_ms();
    pid_t pid = fork();
    if (pid < 0) {
        gg_warn("executor: fork failed: %s", strerror(errno));
        rc = GG_EINTERNAL;
        goto out;
    }
    if (pid == 0)
        s_child(&ca);

    /* Parent. */
    setpgid(pid, pid); /* may fail once the child has exec'd: it did it itself */
    s_close(&out_p[1]);
    s_close(&in_fd);
    j->pid = pid;
    j->started_ms = started;
    j->deadline_ms = job->timeout_ms ? started + job->timeout_ms : 0;
    j->out_fd = out_p[0];
    out_p[0] = -1;
    j->log_fd = log_fd;
    log_fd = -1;
    if (!e->no_pidfd) {
        j->pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (j->pidfd < 0)
            gg_warn("executor: pidfd_open failed (%s); polling waitpid instead", strerror(errno));
        else
            fcntl(j->pidfd, F_SETFD, FD_CLOEXEC);
    }
    s_record_group(e, j);

    j->out_item = (zmq_pollitem_t){NULL, j->out_fd, ZMQ_POLLIN, 0};
    if (zloop_poller(e->loop, &j->out_item, s_on_output, j) != 0)
        goto spawned_fail;
    j->out_polled = true;
    zloop_poller_set_tolerant(e->loop, &j->out_item); /* EOF shows as POLLHUP */
    if (j->pidfd >= 0) {
        j->pid_item = (zmq_pollitem_t){NULL, j->pidfd, ZMQ_POLLIN, 0};
        if (zloop_poller(e->loop, &j->pid_item, s_on_exit, j) != 0)
            goto spawned_fail;
        j->pid_polled = true;
        zloop_poller_set_tolerant(e->loop, &j->pid_item);
    }
    e->slots[slot] = j;
    e->next_id++;
    e->stats.started++;
    e->stats.running++;
    gg_debug("executor: job %llu started as pid %d", (unsigned long long) id, (int) pid);
    j = NULL;
    s_rearm(e);
    if (job_id_out)
        *job_id_out = id;
    rc = 0;
    goto out;

spawned_fail:
    rc = GG_ENOMEM;
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
out:
    if (rc != 0 && rc != GG_EINVAL && rc != GG_ETOOBIG && rc != GG_EPERM)
        e->stats.spawn_failed++;
    s_job_free(j);
    s_close(&log_fd);
    s_close(&out_p[0]);
    s_close(&out_p[1]);
    s_close(&in_fd);
    s_free_strv(envp);
    free(chdir_msg);
    free(exec_msg);
    return rc;
}

unsigned executor_running(const executor_t *e)
{
    return e ? e->stats.running : 0;
}

static job_t *s_find(executor_t *e, uint64_t id)
{
    for (unsigned i = 0; i < e->max_workers; i++)
        if (e->slots[i] && e->slots[i]->id == id)
            return e->slots[i];
    return NULL;
}

int executor_cancel(executor_t *e, uint64_t job_id)
{
    if (!e)
        return GG_EINVAL;
    job_t *job = s_find(e, job_id);
    if (!job)
        return GG_ENOTFOUND;
    job->cancelled = true;
    s_terminate(job, s_now_ms());
    s_rearm(e);
    return 0;
}

int executor_abandon(executor_t *e, uint64_t job_id)
{
    if (!e)
        return GG_EINVAL;
    job_t *job = s_find(e, job_id);
    if (!job)
        return GG_ENOTFOUND;
    job->abandoned = true;
    job->cancelled = true;
    job->tag = NULL;
    s_terminate(job, s_now_ms());
    s_rearm(e);
    return 0;
}

unsigned executor_max_workers(const executor_t *e)
{
    return e ? e->max_workers : 0;
}

void executor_cancel_all(executor_t *e)
{
    if (!e)
        return;
    uint64_t now = s_now_ms();
    for (unsigned i = 0; i < e->max_workers; i++) {
        if (e->slots[i]) {
            e->slots[i]->cancelled = true;
            s_terminate(e->slots[i], now);
        }
    }
    s_rearm(e);
}

void executor_reap(executor_t *e)
{
    if (!e)
        return;
    (void) s_reap_polled(e);
    s_rearm(e);
}

void executor_stats(const executor_t *e, executor_stats_t *out)
{
    if (!out)
        return;
    if (!e) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = e->stats;
}
