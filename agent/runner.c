/*
 * runner.c: one target's pipeline as a small state machine driven by the
 * executor's completion callbacks (see runner.h for the contract).
 *
 * Design notes
 * - A run never waits: it either has one process running (run->job != 0)
 *   or has finished and waits for its deferred callback. Built-in steps
 *   (rewrite, noop, writing prompt files, snapshots, docs) run inline
 *   between two processes; each is bounded (rewrite's own limits, the
 *   snapshot's byte budget, the YAML and Markdown size caps).
 * - The done callback is deferred through an eventfd poller, so it never
 *   runs inside runner_start (re-entrancy) nor inside an executor callback.
 * - Each job carries the run as its callback argument; runner_abort and
 *   runner_destroy use executor_abandon, after which no callback arrives,
 *   so a run can be freed at once.
 * - runner_start refuses (GG_EBUSY) while the executor is full. A run only
 *   starts a process right after runner_start's check or from its own job's
 *   callback, when that job's slot has just been freed: it never meets a
 *   full executor afterwards.
 *
 * States (phase) and transitions:
 *
 *   start --precheck?--> PRECHECK --exit 0--> steps
 *     |                     |--exit 1--> DONE(skipped)
 *     |                     \--other--> fail
 *     \--no precheck--> steps
 *
 *   steps: for step i (s_next_step):
 *     noop                     --> i+1
 *     rewrite (inline)         --ok--> i+1 (unverified)    --error--> fail
 *     run                      --> STEP --exit 0--> i+1 (unverified) --else--> fail
 *     publish, unverified      --> VERIFY(publish)
 *     publish, verified        --> STEP(change file) --exit 0--> i+1 --else--> fail
 *     agent                    --> turn 1
 *     all done, unverified     --> VERIFY(final)
 *     all done, verified       --> docs --> DONE(succeeded | needs_review)
 *
 *   agent turn N: prompt file, snapshot --> AGENT
 *     AGENT --exit != 0--> fail
 *           --no change--> DONE(needs_review "agent made no change in turn N")
 *           --changed--> VERIFY(agent)
 *
 *   VERIFY(p) --pass--> JUDGE(p) if a judge, else verified(p)
 *   JUDGE(p)  --pass--> verified(p)
 *   VERIFY/JUDGE --fail--> p = agent: feedback; turn N+1, or after maxTurns
 *                                     DONE(needs_review)
 *                          p = publish | final: DONE(needs_review)
 *   verified(agent) --> i+1;  verified(publish) --> STEP(publish);
 *   verified(final) --> docs
 *
 *   fail --retryable and attempt < maxAttempts--> DONE(retry_wait, backoff)
 *        --else--> DONE(failed)
 *
 *   DONE --eventfd--> done() called, run freed.  Any state --abort--> freed.
 */
#include "runner.h"
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "docs_out.h"
#include "gg_log.h"
#include "rewrite.h"
#include "rng.h"

#define S_ENV_MAX    8
#define S_LOGBUF_MAX (8u << 10) /* log lines kept before the file is made */
#define S_ERR_MAX    512
#define S_HASH_LEN   16
#define S_SNAP_DEPTH 64
#define S_READ_CHUNK (64u << 10)
#define S_TURN_FILES 50  /* changed paths kept per agent turn */
#define S_STEP_FILES 50  /* changed paths kept per rewrite step note */
#define S_ERROR_TAIL 400 /* output bytes considered for an error line */

typedef enum {
    PH_PRECHECK = 0,
    PH_STEP,
    PH_AGENT,
    PH_VERIFY,
    PH_JUDGE,
    PH_DONE,
} s_phase_t;

typedef enum {
    VP_AGENT = 0, /* an agent turn's check */
    VP_PUBLISH,   /* before a publish step */
    VP_FINAL,     /* after the last step */
} s_purpose_t;

/* One file of a snapshot of the target's folder. */
typedef struct {
    char *path; /* relative */
    uint32_t mode;
    uint64_t size;
    int64_t mtime_ns;
    int64_t ctime_ns;
    uint64_t ino;
    bool hashed;
    uint8_t hash[S_HASH_LEN];
} s_file_t;

typedef struct {
    s_file_t *files;
    size_t n;
    size_t cap;
    uint64_t budget; /* content bytes still allowed to be read */
    bool truncated;  /* more files than RUNNER_SNAPSHOT_FILES_MAX, or too deep */
} s_snapshot_t;

typedef struct s_run {
    struct s_run *next;
    runner_t *owner;
    uint64_t id;
    const plan_t *plan;
    const plan_spec_t *spec;
    plan_target_t *target; /* loaded for the run when it reads it (s_reads_target) */
    uint32_t index;
    uint32_t epoch;
    uint32_t attempt;
    runner_done_fn *done;
    void *arg;

    s_phase_t phase;
    s_purpose_t purpose;
    size_t step;
    uint64_t job; /* 0: none running */
    uint64_t started_ms;
    bool verified;
    char *verification; /* for the change description */
    json_t *notes;      /* what each step did */
    json_t *turns;      /* agent-turns.json */

    /* agent loop */
    uint32_t turn;
    s_snapshot_t snap;
    json_t *turn_rec; /* the current turn's record */
    char *feedback;
    char feedback_label[96];

    char workdir[PATH_MAX];
    char log_path[RUNNER_PATH_MAX];
    /* Built-in steps (noop, rewrite) need no directory and log only a few
     * lines: the work directory is made before the first thing that uses it,
     * and log lines wait in logbuf until a process is started (its output
     * goes to the file), the buffer is full, or the target will run again.
     * A run that never needed the file hands its lines over as its tail. */
    bool workdir_made;
    bool log_file; /* log_path exists (made here, or by an earlier attempt) */
    char *logbuf;
    size_t logbuf_len;
    char s_epoch[16];
    char s_attempt[16];
    char *tail;
    size_t tail_len;
    int last_exit;

    bool finished;
    runner_outcome_t outcome;
} s_run_t;

struct _runner_t {
    zloop_t *loop;
    executor_t *exec;
    char *work_root;
    char *log_root;
    rng_t rng;
    s_run_t *runs;
    size_t n_runs;
    uint64_t next_id;
    int event_fd;
    zmq_pollitem_t event_item;
    bool event_polled;
};

static void s_next_step(s_run_t *run);
static void s_agent_turn(s_run_t *run);

/* ---------------------------------------------------------------------------
 * Small helpers.
 */

static uint64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

/* A duration in its largest exact unit: "30m", "1500ms". */
static const char *s_duration(uint64_t ms, char *buf, size_t size)
{
    if (ms && ms % 3600000u == 0)
        snprintf(buf, size, "%lluh", (unsigned long long) (ms / 3600000u));
    else if (ms && ms % 60000u == 0)
        snprintf(buf, size, "%llum", (unsigned long long) (ms / 60000u));
    else if (ms && ms % 1000u == 0)
        snprintf(buf, size, "%llus", (unsigned long long) (ms / 1000u));
    else
        snprintf(buf, size, "%llums", (unsigned long long) ms);
    return buf;
}

static void s_append_file(const char *path, const char *text, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd < 0)
        return;
    while (len > 0) {
        ssize_t w = write(fd, text, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        text += w;
        len -= (size_t) w;
    }
    close(fd);
}

/* Makes the target's log file from the lines kept so far (best effort: a
 * log that cannot be written never fails a step). */
static void s_log_flush(s_run_t *run)
{
    if (run->log_file)
        return;
    char logdir[RUNNER_PATH_MAX];
    snprintf(logdir, sizeof logdir, "%s", run->log_path);
    char *slash = strrchr(logdir, '/');
    if (slash)
        *slash = '\0';
    if (slash && fsutil_mkdir_p(logdir, 0750) != 0)
        gg_warn("runner: cannot create the log directory %s", logdir);
    s_append_file(run->log_path, run->logbuf ? run->logbuf : "", run->logbuf_len);
    run->log_file = true;
    free(run->logbuf);
    run->logbuf = NULL;
    run->logbuf_len = 0;
}

/* The work directory, made at its first use. */
static int s_workdir(s_run_t *run)
{
    if (run->workdir_made)
        return 0;
    int rc = fsutil_mkdir_p(run->workdir, 0750);
    if (rc == 0)
        run->workdir_made = true;
    return rc;
}

/* Appends text to the target's log. */
static void s_log(s_run_t *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_log(s_run_t *run, const char *fmt, ...)
{
    char *text = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (!run->log_file && run->logbuf_len + (size_t) n <= S_LOGBUF_MAX) {
        char *grown = realloc(run->logbuf, run->logbuf_len + (size_t) n + 1);
        if (grown) {
            memcpy(grown + run->logbuf_len, text, (size_t) n + 1);
            run->logbuf = grown;
            run->logbuf_len += (size_t) n;
            free(text);
            return;
        }
    }
    s_log_flush(run);
    s_append_file(run->log_path, text, (size_t) n);
    free(text);
}

static void s_log_header(s_run_t *run, const char *label)
{
    s_log(run, "== %s (attempt %u, epoch %u) ==\n", label, run->attempt, run->epoch);
}

/* Keeps the last RUNNER_TAIL_MAX bytes of text as the run's tail. */
static void s_set_tail(s_run_t *run, const char *text, size_t len)
{
    if (len > RUNNER_TAIL_MAX) {
        text += len - RUNNER_TAIL_MAX;
        len = RUNNER_TAIL_MAX;
    }
    memcpy(run->tail, text, len);
    run->tail[len] = '\0';
    run->tail_len = len;
}

/* The last lines of output on one line, fitting `room` bytes: newlines
 * become " | ", other control characters spaces. */
static void s_last_lines(const char *text, size_t len, char *buf, size_t room)
{
    char tmp[S_ERROR_TAIL * 3 + 1];
    size_t n = 0;
    buf[0] = '\0';
    if (room == 0)
        return;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ' ||
                       text[len - 1] == '\t'))
        len--;
    size_t start = len > S_ERROR_TAIL ? len - S_ERROR_TAIL : 0;
    if (start > 0) { /* begin at a line start when one is near */
        const char *nl = memchr(text + start, '\n', len - start);
        if (nl)
            start = (size_t) (nl - text) + 1;
    }
    for (size_t i = start; i < len && n + 3 < sizeof tmp; i++) {
        unsigned char c = (unsigned char) text[i];
        if (c == '\n') {
            memcpy(tmp + n, " | ", 3);
            n += 3;
        } else {
            tmp[n++] = c < 0x20 || c == 0x7f ? ' ' : (char) c;
        }
    }
    tmp[n] = '\0';
    const char *p = tmp;
    if (n >= room) { /* keep the end, from a separator when there is one */
        p = tmp + (n - (room - 1));
        const char *sep = strstr(p, " | ");
        if (sep && sep[3])
            p = sep + 3;
    }
    snprintf(buf, room, "%s", p);
}

/* ---------------------------------------------------------------------------
 * Retry policy.
 */

uint32_t runner_backoff_ms(const plan_spec_t *spec, uint32_t attempt, uint64_t random)
{
    double mult = spec->multiplier >= 1.0 ? spec->multiplier : 1.0;
    double max = (double) spec->max_backoff_ms;
    double b = (double) spec->initial_backoff_ms * pow(mult, attempt > 1 ? attempt - 1.0 : 0.0);
    if (!(b <= max)) /* also catches inf and nan */
        b = max;
    if (!(b >= 0.0))
        b = 0.0;
    if (b > (double) UINT32_MAX)
        b = (double) UINT32_MAX;
    uint64_t hi = (uint64_t) b;
    uint64_t lo = hi / 2;
    return (uint32_t) (lo + random % (hi - lo + 1));
}

bool runner_retryable(const plan_spec_t *spec, int exit_code, int signal, bool timed_out)
{
    if (timed_out)
        return true;
    int code = signal > 0 ? 128 + signal : exit_code;
    if (spec->retryable_count == 0)
        return code != 0;
    for (size_t i = 0; i < spec->retryable_count; i++)
        if (spec->retryable_exit_codes[i] == code)
            return true;
    return false;
}

/* ---------------------------------------------------------------------------
 * Finishing a run: the outcome is set now, the callback comes from the loop.
 */

static void s_kick(runner_t *r)
{
    uint64_t one = 1;
    ssize_t w = write(r->event_fd, &one, sizeof one);
    (void) w; /* a full counter still wakes the poller */
}

static void s_finish(s_run_t *run, target_state_t state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_finish(s_run_t *run, target_state_t state, const char *fmt, ...)
{
    runner_outcome_t *o = &run->outcome;
    memset(o, 0, sizeof *o);
    o->state = state;
    o->exit_code = run->last_exit;
    size_t steps = run->spec->step_count;
    size_t step = run->step < steps ? run->step : (steps ? steps - 1 : 0);
    o->step = (uint8_t) (step > UINT8_MAX ? UINT8_MAX : step);
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(o->error, sizeof o->error, fmt, ap);
        va_end(ap);
    }
    uint64_t ms = s_now_ms() - run->started_ms;
    o->duration_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t) ms;
    run->phase = PH_DONE;
    run->finished = true;
    s_log(run, "== %s%s%s ==\n", target_state_name(state), o->error[0] ? ": " : "", o->error);
    if (state == TARGET_RETRY_WAIT)
        s_log_flush(run); /* the next attempt appends to this one's lines */
    if (run->log_file)
        snprintf(o->log_path, sizeof o->log_path, "%s", run->log_path);
    s_kick(run->owner);
}

/* A failure: RETRY_WAIT when retryable and attempts remain, else FAILED. */
static void s_fail(s_run_t *run, bool retryable, const char *error)
{
    if (!run->tail_len)
        s_set_tail(run, error, strlen(error));
    if (retryable && run->attempt < run->spec->max_attempts) {
        uint32_t backoff = runner_backoff_ms(run->spec, run->attempt, rng_next(&run->owner->rng));
        s_finish(run, TARGET_RETRY_WAIT, "%s", error);
        run->outcome.backoff_ms = backoff;
        return;
    }
    s_finish(run, TARGET_FAILED, "%s", error);
}

static void s_fail_process(s_run_t *run, const char *what, const executor_result_t *res,
                           uint64_t timeout_ms)
{
    char err[S_ERR_MAX], d[32];
    if (res->timed_out)
        snprintf(err, sizeof err, "%s timed out after %s", what,
                 s_duration(timeout_ms, d, sizeof d));
    else if (res->cancelled)
        snprintf(err, sizeof err, "%s was cancelled", what);
    else if (res->signal > 0)
        snprintf(err, sizeof err, "%s killed by signal %d", what, res->signal);
    else
        snprintf(err, sizeof err, "%s exited with %d", what, res->exit_code);
    bool retryable =
        res->cancelled || runner_retryable(run->spec, res->exit_code, res->signal, res->timed_out);
    s_fail(run, retryable, err);
}

/* ---------------------------------------------------------------------------
 * Starting processes.
 */

static int s_on_job(void *arg, uint64_t job_id, const executor_result_t *res);

/* Renders tmpl (shell quoting) and starts it. Returns 0 when the process
 * runs; otherwise the run has been finished (failed or retrying). */
static int s_spawn(s_run_t *run, s_phase_t phase, const char *label, const char *what,
                   const char *tmpl, uint64_t timeout_ms, bool netns, const char *extra_name,
                   const char *extra_value)
{
    runner_t *r = run->owner;
    char err[S_ERR_MAX], rerr[256];
    char *cmd = NULL;
    plan_render_ctx_t ctx = {.attempt = run->attempt, .epoch = run->epoch, .workdir = run->workdir};
    int rc = plan_render_target(run->plan, run->target, &ctx, tmpl, TEMPLATE_SHELL, &cmd, rerr,
                                sizeof rerr);
    if (rc != 0) {
        snprintf(err, sizeof err, "%s: cannot render its command: %s", what, rerr);
        s_fail(run, false, err);
        return rc;
    }
    executor_env_t env[S_ENV_MAX];
    size_t n = 0;
    env[n++] = (executor_env_t){"GAGGLE_PLAN", plan_id(run->plan)};
    env[n++] = (executor_env_t){"GAGGLE_TARGET", run->target->ref};
    env[n++] = (executor_env_t){"GAGGLE_EPOCH", run->s_epoch};
    env[n++] = (executor_env_t){"GAGGLE_ATTEMPT", run->s_attempt};
    env[n++] = (executor_env_t){"GAGGLE_WORKDIR", run->workdir};
    if (extra_name)
        env[n++] = (executor_env_t){extra_name, extra_value};
    executor_job_t job = {
        .command = cmd,
        .workdir = run->workdir,
        .env = env,
        .env_count = n,
        .timeout_ms = timeout_ms,
        .log_path = run->log_path,
        .on_done = s_on_job,
        .on_done_arg = run,
        .new_netns = netns,
    };
    s_log_header(run, label);
    if ((rc = s_workdir(run)) != 0) {
        free(cmd);
        snprintf(err, sizeof err, "%s: cannot create the work directory %.200s: %s", what,
                 run->workdir, gg_strerror(rc));
        s_fail(run, true, err);
        return rc;
    }
    s_log_flush(run); /* the process's output follows these lines in the file */
    uint64_t id = 0;
    rc = executor_start(r->exec, &job, &id);
    free(cmd);
    if (rc == 0) {
        run->phase = phase;
        run->job = id;
        return 0;
    }
    switch (rc) {
    case GG_EPERM:
        snprintf(err, sizeof err, "%s: sandbox network: none needs root (a new network namespace)",
                 what);
        s_fail(run, false, err);
        break;
    case GG_EINVAL:
    case GG_ETOOBIG:
        snprintf(err, sizeof err, "%s: the executor refused its command: %s", what,
                 gg_strerror(rc));
        s_fail(run, false, err);
        break;
    default:
        snprintf(err, sizeof err, "%s could not be started: %s", what, gg_strerror(rc));
        s_fail(run, true, err);
        break;
    }
    return rc;
}

/* ---------------------------------------------------------------------------
 * Notes for the change description.
 */

static void s_note(s_run_t *run, const plan_step_t *st, const char *kind, const char *summary,
                   json_t *files, size_t files_more)
{
    json_t *n = json_pack("{s:s, s:s, s:s}", "name", st->name, "kind", kind, "summary", summary);
    if (n && files)
        json_object_set(n, "files", files);
    if (n && files_more)
        json_object_set_new(n, "files_more", json_integer((json_int_t) files_more));
    if (!n || json_array_append_new(run->notes, n) != 0)
        gg_warn("runner: out of memory noting step %s", st->name);
}

static void s_set_verification(s_run_t *run, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void s_set_verification(s_run_t *run, const char *fmt, ...)
{
    char *text = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    free(run->verification);
    run->verification = text;
}

/* ---------------------------------------------------------------------------
 * Snapshots of the target's folder (agent turns).
 */

static void s_snapshot_clear(s_snapshot_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->files[i].path);
    free(s->files);
    memset(s, 0, sizeof *s);
}

static int s_file_cmp(const void *a, const void *b)
{
    return strcmp(((const s_file_t *) a)->path, ((const s_file_t *) b)->path);
}

static const s_file_t *s_snapshot_find(const s_snapshot_t *s, const char *path)
{
    if (!s || !s->n)
        return NULL;
    s_file_t key = {.path = (char *) path};
    return bsearch(&key, s->files, s->n, sizeof *s->files, s_file_cmp);
}

static bool s_same_stat(const s_file_t *a, const s_file_t *b)
{
    return a->mode == b->mode && a->size == b->size && a->mtime_ns == b->mtime_ns &&
           a->ctime_ns == b->ctime_ns && a->ino == b->ino;
}

static void s_hash_content(s_snapshot_t *s, const char *full, s_file_t *f)
{
    crypto_generichash_state st;
    if (S_ISLNK(f->mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(full, target, sizeof target);
        if (n < 0)
            return;
        crypto_generichash_init(&st, NULL, 0, S_HASH_LEN);
        crypto_generichash_update(&st, (const unsigned char *) target, (size_t) n);
        crypto_generichash_final(&st, f->hash, S_HASH_LEN);
        f->hashed = true;
        return;
    }
    if (f->size > RUNNER_HASH_FILE_MAX || f->size > s->budget)
        return; /* compared by size, times and inode */
    int fd = open(full, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return;
    unsigned char *buf = malloc(S_READ_CHUNK);
    if (!buf) {
        close(fd);
        return;
    }
    crypto_generichash_init(&st, NULL, 0, S_HASH_LEN);
    bool ok = true;
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, S_READ_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ok = false;
            break;
        }
        if (n == 0)
            break;
        total += (uint64_t) n;
        if (total > f->size || total > s->budget) { /* grew while read */
            ok = false;
            break;
        }
        crypto_generichash_update(&st, buf, (size_t) n);
    }
    free(buf);
    close(fd);
    s->budget = total > s->budget ? 0 : s->budget - total;
    if (ok) {
        crypto_generichash_final(&st, f->hash, S_HASH_LEN);
        f->hashed = true;
    }
}

/* Walks dir (full path in `full`, `flen` bytes used; relative part starts
 * at `rel_off`), appending files. */
static int s_walk(s_snapshot_t *s, char *full, size_t flen, size_t rel_off, unsigned depth)
{
    if (depth > S_SNAP_DEPTH) {
        s->truncated = true;
        return 0;
    }
    DIR *dir = opendir(full);
    if (!dir)
        return depth == 0 ? GG_EIO : 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        const char *name = de->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, ".git"))
            continue;
        size_t nlen = strlen(name);
        if (flen + 1 + nlen >= PATH_MAX)
            continue;
        full[flen] = '/';
        memcpy(full + flen + 1, name, nlen + 1);
        struct stat st;
        if (lstat(full, &st) != 0) {
            full[flen] = '\0';
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            rc = s_walk(s, full, flen + 1 + nlen, rel_off, depth + 1);
        } else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
            if (s->n >= RUNNER_SNAPSHOT_FILES_MAX) {
                s->truncated = true;
            } else {
                if (s->n == s->cap) {
                    size_t ncap = s->cap ? s->cap * 2 : 256;
                    s_file_t *nf = realloc(s->files, ncap * sizeof *nf);
                    if (!nf) {
                        rc = GG_ENOMEM;
                        full[flen] = '\0';
                        break;
                    }
                    s->files = nf;
                    s->cap = ncap;
                }
                s_file_t *f = &s->files[s->n];
                memset(f, 0, sizeof *f);
                f->path = strdup(full + rel_off);
                if (!f->path) {
                    rc = GG_ENOMEM;
                    full[flen] = '\0';
                    break;
                }
                f->mode = st.st_mode;
                f->size = (uint64_t) st.st_size;
                f->mtime_ns = (int64_t) st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
                f->ctime_ns = (int64_t) st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
                f->ino = (uint64_t) st.st_ino;
                s->n++;
            }
        }
        full[flen] = '\0';
        if (rc != 0)
            break;
    }
    closedir(dir);
    return rc;
}

/* Takes a snapshot of root into *out, reusing the hashes of `prev` for files
 * whose metadata has not changed. */
static int s_snapshot_take(const char *root, const s_snapshot_t *prev, s_snapshot_t *out)
{
    char full[PATH_MAX];
    memset(out, 0, sizeof *out);
    size_t rlen = strlen(root);
    if (rlen == 0 || rlen >= sizeof full - 2)
        return GG_EINVAL;
    memcpy(full, root, rlen + 1);
    while (rlen > 1 && full[rlen - 1] == '/')
        full[--rlen] = '\0';
    out->budget = RUNNER_SNAPSHOT_BYTES_MAX;
    int rc = s_walk(out, full, rlen, rlen + 1, 0);
    if (rc != 0) {
        s_snapshot_clear(out);
        return rc;
    }
    if (out->n > 1)
        qsort(out->files, out->n, sizeof *out->files, s_file_cmp);
    for (size_t i = 0; i < out->n; i++) {
        s_file_t *f = &out->files[i];
        const s_file_t *old = s_snapshot_find(prev, f->path);
        if (old && old->hashed && s_same_stat(old, f)) {
            memcpy(f->hash, old->hash, S_HASH_LEN);
            f->hashed = true;
            continue;
        }
        if (snprintf(full, sizeof full, "%s/%s", root, f->path) >= (int) sizeof full)
            continue;
        s_hash_content(out, full, f);
    }
    return 0;
}

static bool s_file_changed(const s_file_t *a, const s_file_t *b)
{
    if ((a->mode & S_IFMT) != (b->mode & S_IFMT) || (a->mode & 0777) != (b->mode & 0777))
        return true;
    if (a->hashed && b->hashed)
        return memcmp(a->hash, b->hash, S_HASH_LEN) != 0;
    return !s_same_stat(a, b);
}

/* Counts files added, removed or changed from a to b; lists the first
 * S_TURN_FILES of them in files (may be NULL). */
static size_t s_snapshot_diff(const s_snapshot_t *a, const s_snapshot_t *b, json_t *files)
{
    size_t i = 0, j = 0, changed = 0;
    while (i < a->n || j < b->n) {
        const char *path;
        int cmp = i >= a->n ? 1 : j >= b->n ? -1 : strcmp(a->files[i].path, b->files[j].path);
        if (cmp < 0) {
            path = a->files[i++].path;
        } else if (cmp > 0) {
            path = b->files[j++].path;
        } else {
            bool ch = s_file_changed(&a->files[i], &b->files[j]);
            path = b->files[j].path;
            i++;
            j++;
            if (!ch)
                continue;
        }
        if (files && json_array_size(files) < S_TURN_FILES)
            json_array_append_new(files, json_string(path));
        changed++;
    }
    return changed;
}

/* ---------------------------------------------------------------------------
 * Built-in steps.
 */

/* Runs a rewrite step inline. Returns 0, or an error after finishing the run. */
static int s_rewrite(s_run_t *run, const plan_step_t *st)
{
    plan_render_ctx_t ctx = {.attempt = run->attempt, .epoch = run->epoch, .workdir = run->workdir};
    char **paths = calloc(st->path_count ? st->path_count : 1, sizeof *paths);
    char **texts = calloc(st->replace_count ? st->replace_count * 2 : 1, sizeof *texts);
    rewrite_pair_t *pairs = calloc(st->replace_count ? st->replace_count : 1, sizeof *pairs);
    rewrite_result_t res;
    memset(&res, 0, sizeof res);
    char err[S_ERR_MAX], rerr[256];
    int rc = GG_ENOMEM;
    char label[128];
    snprintf(label, sizeof label, "step %s", st->name);
    s_log_header(run, label);
    if (!paths || !texts || !pairs) {
        snprintf(err, sizeof err, "step %s: out of memory", st->name);
        s_fail(run, true, err);
        goto out;
    }
    if (!run->target->path) {
        rc = GG_EINVAL;
        snprintf(err, sizeof err, "step %s: the target has no folder (its catalog file is unknown)",
                 st->name);
        s_fail(run, false, err);
        goto out;
    }
    for (size_t i = 0; i < st->path_count; i++) {
        if ((rc = plan_render_target(run->plan, run->target, &ctx, st->paths[i], TEMPLATE_RAW,
                                     &paths[i], rerr, sizeof rerr)) != 0)
            goto render_failed;
    }
    for (size_t i = 0; i < st->replace_count; i++) {
        if ((rc = plan_render_target(run->plan, run->target, &ctx, st->replace[i].from,
                                     TEMPLATE_RAW, &texts[2 * i], rerr, sizeof rerr)) != 0 ||
            (rc = plan_render_target(run->plan, run->target, &ctx, st->replace[i].to, TEMPLATE_RAW,
                                     &texts[2 * i + 1], rerr, sizeof rerr)) != 0)
            goto render_failed;
        pairs[i].from = texts[2 * i];
        pairs[i].to = texts[2 * i + 1];
    }
    rewrite_spec_t spec = {
        .paths = (const char *const *) paths,
        .n_paths = st->path_count,
        .replace = pairs,
        .n_replace = st->replace_count,
        .mode = st->regex  ? REWRITE_REGEX
                : st->word ? REWRITE_WORD
                           : REWRITE_LITERAL,
    };
    rc = rewrite_run(&spec, run->target->path, &res, rerr, sizeof rerr);
    if (res.summary && res.summary[0])
        s_log(run, "%s%s", res.summary, res.summary[strlen(res.summary) - 1] == '\n' ? "" : "\n");
    if (rc != 0) {
        snprintf(err, sizeof err, "step %s: rewrite failed: %s", st->name, rerr);
        s_fail(run, rc != GG_EINVAL, err);
        goto out;
    }
    char summary[160];
    snprintf(summary, sizeof summary, "changed %zu file%s (%zu replacement%s)", res.files_changed,
             res.files_changed == 1 ? "" : "s", res.replacements, res.replacements == 1 ? "" : "s");
    s_log(run, "rewrite: %s\n", summary);
    json_t *files = json_array();
    size_t listed = 0;
    for (size_t i = 0; files && i < res.n_changed && listed < S_STEP_FILES; i++, listed++)
        json_array_append_new(files, json_string(res.changed[i]));
    s_note(run, st, "rewrite", summary, files, res.files_changed - listed);
    json_decref(files);
    rc = 0;
    goto out;
render_failed:
    snprintf(err, sizeof err, "step %s: cannot render a rewrite pattern: %s", st->name, rerr);
    s_fail(run, false, err);
out:
    rewrite_result_clear(&res);
    for (size_t i = 0; paths && i < st->path_count; i++)
        free(paths[i]);
    for (size_t i = 0; texts && i < st->replace_count * 2; i++)
        free(texts[i]);
    free(paths);
    free(texts);
    free(pairs);
    return rc;
}

/* Writes the change description and starts the publish step. */
static void s_publish(s_run_t *run)
{
    const plan_step_t *st = &run->spec->steps[run->step];
    char path[PATH_MAX + 32], err[S_ERR_MAX], label[128], what[128];
    char *md = NULL;
    docs_change_t c = {
        .plan_name = plan_name(run->plan),
        .plan_id = plan_id(run->plan),
        .plan_description = run->spec->description,
        .dataset_from = run->spec->dataset_from,
        .dataset_to = run->spec->dataset_to,
        .target_ref = run->target->ref,
        .target_path = run->target->path,
        .attempt = run->attempt,
        .epoch = run->epoch,
        .steps = run->notes,
        .verification = run->verification,
    };
    int rc = docs_out_change_md(&c, &md);
    if (rc == 0)
        rc = s_workdir(run);
    snprintf(path, sizeof path, "%s/%s", run->workdir, RUNNER_CHANGE_FILE);
    if (rc == 0)
        rc = docs_out_write_file(path, md, strlen(md));
    free(md);
    if (rc != 0) {
        snprintf(err, sizeof err, "step %s: cannot write the change description: %s", st->name,
                 gg_strerror(rc));
        s_fail(run, true, err);
        return;
    }
    snprintf(label, sizeof label, "step %s", st->name);
    snprintf(what, sizeof what, "step %s", st->name);
    s_spawn(run, PH_STEP, label, what, st->run, st->timeout_ms, st->sandbox_network_none,
            "GAGGLE_CHANGE_FILE", path);
}

/* Starts verify (purpose p). */
static void s_verify(s_run_t *run, s_purpose_t p)
{
    run->purpose = p;
    char label[128];
    if (p == VP_AGENT)
        snprintf(label, sizeof label, "verify for step %s turn %u",
                 run->spec->steps[run->step].name, run->turn);
    else
        snprintf(label, sizeof label, "verify");
    s_spawn(run, PH_VERIFY, label, "verify", run->spec->verify.run, run->spec->verify.timeout_ms,
            false, NULL, NULL);
}

static void s_judge(s_run_t *run)
{
    char label[128];
    if (run->purpose == VP_AGENT)
        snprintf(label, sizeof label, "judge for step %s turn %u", run->spec->steps[run->step].name,
                 run->turn);
    else
        snprintf(label, sizeof label, "judge");
    s_spawn(run, PH_JUDGE, label, "judge", run->spec->judge.run, run->spec->judge.timeout_ms, false,
            NULL, NULL);
}

/* Writes the catalog entity (docs.catalogOut) and finishes: SUCCEEDED. */
static void s_succeed(s_run_t *run)
{
    const char *out = run->spec->docs_catalog_out;
    run->last_exit = 0;
    if (out) {
        char path[PATH_MAX], err[S_ERR_MAX];
        if (docs_out_write_entity(out, run->target->entity, run->spec->dataset_from,
                                  run->spec->dataset_to, path, sizeof path, err, sizeof err) != 0) {
            s_set_tail(run, err, strlen(err));
            s_finish(run, TARGET_NEEDS_REVIEW,
                     "migrated, but the catalog entity was not written: %s", err);
            return;
        }
        s_log(run, "docs: wrote %s\n", path);
    }
    run->tail_len = 0;
    run->tail[0] = '\0';
    s_finish(run, TARGET_SUCCEEDED, NULL);
}

/* ---------------------------------------------------------------------------
 * Agent turns.
 */

static int s_write_turns(s_run_t *run)
{
    char path[PATH_MAX + 32];
    json_t *doc = json_pack("{s:O}", "turns", run->turns);
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    json_decref(doc);
    if (!text)
        return GG_ENOMEM;
    snprintf(path, sizeof path, "%s/%s", run->workdir, RUNNER_TURNS_FILE);
    int rc = s_workdir(run);
    if (rc == 0)
        rc = docs_out_write_file(path, text, strlen(text));
    free(text);
    if (rc != 0)
        gg_warn("runner: cannot write %s: %s", path, gg_strerror(rc));
    return rc;
}

/* Closes the current turn's record with a verdict and saves the turns. */
static void s_turn_verdict(s_run_t *run, const char *verdict)
{
    if (!run->turn_rec)
        return;
    json_object_set_new(run->turn_rec, "verdict", json_string(verdict));
    json_array_append_new(run->turns, run->turn_rec);
    run->turn_rec = NULL;
    (void) s_write_turns(run);
}

static void s_md_fenced(FILE *f, const char *info, const char *text)
{
    char fence[64];
    docs_out_fence(text, fence, sizeof fence);
    size_t len = strlen(text);
    fprintf(f, "%s%s\n%s%s%s\n\n", fence, info, text, len && text[len - 1] == '\n' ? "" : "\n",
            fence);
}

/* Builds the prompt file of the current turn. Returns 0 or an error. */
static int s_write_prompt(s_run_t *run, const plan_step_t *st, char *path, size_t size, char *err,
                          size_t errlen)
{
    plan_render_ctx_t ctx = {.attempt = run->attempt, .epoch = run->epoch, .workdir = run->workdir};
    char *prompt = NULL, *entity = NULL, *vars = NULL, *text = NULL;
    size_t text_len = 0;
    FILE *f = NULL;
    int rc = 0;
    char rerr[256];
    if (st->prompt && (rc = plan_render_target(run->plan, run->target, &ctx, st->prompt,
                                               TEMPLATE_RAW, &prompt, rerr, sizeof rerr)) != 0) {
        snprintf(err, errlen, "cannot render its prompt: %s", rerr);
        goto out;
    }
    if ((rc = docs_out_yaml(run->target->entity, &entity, NULL)) != 0) {
        snprintf(err, errlen, "cannot write the entity as YAML: %s", gg_strerror(rc));
        goto out;
    }
    if (json_object_size(run->spec->vars) && (rc = docs_out_yaml(run->spec->vars, &vars, NULL))) {
        snprintf(err, errlen, "cannot write the vars as YAML: %s", gg_strerror(rc));
        goto out;
    }
    rc = GG_ENOMEM;
    if (!(f = open_memstream(&text, &text_len))) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    fprintf(f, "# Instructions\n\n%s\n\n", prompt && prompt[0] ? prompt : "(no instructions)");
    fprintf(f, "# Context\n\n");
    fprintf(f, "- Plan: %s (%s)\n", plan_name(run->plan), plan_id(run->plan));
    fprintf(f, "- Target: %s\n", run->target->ref);
    fprintf(f, "- Folder: %s\n", run->target->path ? run->target->path : "(unknown)");
    fprintf(f, "- Dataset: from %s to %s\n", run->spec->dataset_from, run->spec->dataset_to);
    fprintf(f, "- Turn %u of %u\n\n", run->turn, st->max_turns);
    fprintf(f, "## The target's catalog entity\n\n");
    s_md_fenced(f, "yaml", entity);
    if (vars) {
        fprintf(f, "## Variables\n\n");
        s_md_fenced(f, "yaml", vars);
    }
    if (run->turn > 1 && run->feedback) {
        fprintf(f, "# Previous turn\n\nTurn %u's change did not pass: %s. Its output:\n\n",
                run->turn - 1, run->feedback_label);
        s_md_fenced(f, "", run->feedback);
    }
    if (fclose(f) != 0) {
        f = NULL;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    f = NULL;
    snprintf(path, size, "%s/prompt-turn-%u.md", run->workdir, run->turn);
    if ((rc = s_workdir(run)) != 0 || (rc = docs_out_write_file(path, text, text_len)) != 0)
        snprintf(err, errlen, "cannot write %.200s: %s", path, gg_strerror(rc));
out:
    if (f)
        fclose(f);
    free(text);
    free(prompt);
    free(entity);
    free(vars);
    return rc;
}

/* Starts turn run->turn + 1 of the current agent step. */
static void s_agent_turn(s_run_t *run)
{
    const plan_step_t *st = &run->spec->steps[run->step];
    char path[PATH_MAX + 32], err[S_ERR_MAX], msg[S_ERR_MAX - 140], label[160], what[128];
    run->turn++;
    snprintf(what, sizeof what, "step %s", st->name);
    if (!run->target->path) {
        snprintf(err, sizeof err, "step %s: the target has no folder (its catalog file is unknown)",
                 st->name);
        s_fail(run, false, err);
        return;
    }
    int rc = s_write_prompt(run, st, path, sizeof path, msg, sizeof msg);
    if (rc != 0) {
        snprintf(err, sizeof err, "step %s: %s", st->name, msg);
        s_fail(run, rc != GG_EINVAL && rc != GG_ETOOBIG, err);
        return;
    }
    s_snapshot_t snap;
    rc = s_snapshot_take(run->target->path, &run->snap, &snap);
    if (rc != 0) {
        snprintf(err, sizeof err, "step %s: cannot read the target's folder %s: %s", st->name,
                 run->target->path, gg_strerror(rc));
        s_fail(run, true, err);
        return;
    }
    s_snapshot_clear(&run->snap);
    run->snap = snap;
    json_decref(run->turn_rec);
    run->turn_rec = json_pack("{s:s, s:I}", "step", st->name, "turn", (json_int_t) run->turn);
    snprintf(label, sizeof label, "step %s turn %u", st->name, run->turn);
    s_spawn(run, PH_AGENT, label, what, st->run, st->timeout_ms, st->sandbox_network_none,
            "GAGGLE_PROMPT_FILE", path);
}

/* The agent's command has ended successfully: did it change anything? */
static void s_agent_done(s_run_t *run, const executor_result_t *res)
{
    const plan_step_t *st = &run->spec->steps[run->step];
    char err[S_ERR_MAX];
    s_snapshot_t after;
    int rc = s_snapshot_take(run->target->path, &run->snap, &after);
    if (rc != 0) {
        snprintf(err, sizeof err, "step %s: cannot read the target's folder %s: %s", st->name,
                 run->target->path, gg_strerror(rc));
        s_turn_verdict(run, "error");
        s_fail(run, true, err);
        return;
    }
    json_t *files = json_array();
    size_t changed = s_snapshot_diff(&run->snap, &after, files);
    s_snapshot_clear(&run->snap);
    run->snap = after;
    if (run->turn_rec) {
        json_object_set_new(run->turn_rec, "changed_files", json_integer((json_int_t) changed));
        json_object_set_new(run->turn_rec, "files", files ? files : json_array());
        files = NULL;
    }
    json_decref(files);
    s_log(run, "agent: turn %u changed %zu file%s%s\n", run->turn, changed, changed == 1 ? "" : "s",
          run->snap.truncated ? " (folder too large: only part of it compared)" : "");
    if (changed == 0) {
        s_turn_verdict(run, "no_change");
        char summary[96];
        snprintf(summary, sizeof summary, "made no change in turn %u", run->turn);
        s_note(run, st, "agent", summary, NULL, 0);
        s_finish(run, TARGET_NEEDS_REVIEW, "agent made no change in turn %u", run->turn);
        return;
    }
    s_verify(run, VP_AGENT);
}

/* ---------------------------------------------------------------------------
 * Verification results.
 */

/* verify and (if any) judge passed for the current purpose. */
static void s_verified(s_run_t *run)
{
    const char *judged = run->spec->judge.run ? " and judge" : "";
    run->verified = true;
    switch (run->purpose) {
    case VP_AGENT: {
        const plan_step_t *st = &run->spec->steps[run->step];
        s_set_verification(run, "verify%s passed after step %s's turn %u.", judged, st->name,
                           run->turn);
        s_turn_verdict(run, "passed");
        char summary[128];
        snprintf(summary, sizeof summary, "passed verify%s in turn %u of %u", judged, run->turn,
                 st->max_turns);
        s_note(run, st, "agent", summary, NULL, 0);
        free(run->feedback);
        run->feedback = NULL;
        s_snapshot_clear(&run->snap);
        run->step++;
        s_next_step(run);
        return;
    }
    case VP_PUBLISH:
        s_set_verification(run, "verify%s passed before publishing.", judged);
        s_publish(run);
        return;
    case VP_FINAL:
    default:
        s_set_verification(run, "verify%s passed.", judged);
        s_succeed(run);
        return;
    }
}

/* verify or judge failed (`which`). */
static void s_check_failed(s_run_t *run, const char *which, const executor_result_t *res,
                           uint64_t timeout_ms)
{
    char why[96], lines[PROGRESS_ERROR_MAX + 1], d[32];
    if (res->timed_out)
        snprintf(why, sizeof why, "%s timed out after %s", which,
                 s_duration(timeout_ms, d, sizeof d));
    else if (res->signal > 0)
        snprintf(why, sizeof why, "%s killed by signal %d", which, res->signal);
    else
        snprintf(why, sizeof why, "%s failed (exit %d)", which, res->exit_code);
    if (run->purpose == VP_AGENT) {
        const plan_step_t *st = &run->spec->steps[run->step];
        s_turn_verdict(run, !strcmp(which, "verify") ? "verify_failed" : "judge_failed");
        free(run->feedback);
        size_t len = res->tail_len;
        const char *t = res->tail ? res->tail : "";
        if (len > RUNNER_FEEDBACK_MAX) {
            t += len - RUNNER_FEEDBACK_MAX;
            len = RUNNER_FEEDBACK_MAX;
        }
        run->feedback = strndup(t, len);
        snprintf(run->feedback_label, sizeof run->feedback_label, "%s", why);
        if (run->turn < st->max_turns) {
            s_agent_turn(run);
            return;
        }
        char summary[160];
        snprintf(summary, sizeof summary, "did not pass %s in %u turns", which, run->turn);
        s_note(run, st, "agent", summary, NULL, 0);
        s_last_lines(res->tail ? res->tail : "", res->tail_len, lines, 120);
        s_finish(run, TARGET_NEEDS_REVIEW, "agent did not pass %s after %u turns%s%s", which,
                 run->turn, lines[0] ? ": " : "", lines);
        return;
    }
    s_last_lines(res->tail ? res->tail : "", res->tail_len, lines, 140);
    s_set_verification(run, "%s.", why);
    s_finish(run, TARGET_NEEDS_REVIEW, "%s%s%s", why, lines[0] ? ": " : "", lines);
}

/* ---------------------------------------------------------------------------
 * The pipeline.
 */

/* Runs built-in steps from run->step until a process is started or the run
 * is finished. */
static void s_next_step(s_run_t *run)
{
    const plan_spec_t *spec = run->spec;
    char label[128], what[128];
    while (run->step < spec->step_count) {
        const plan_step_t *st = &spec->steps[run->step];
        snprintf(label, sizeof label, "step %s", st->name);
        snprintf(what, sizeof what, "step %s", st->name);
        switch (st->kind) {
        case PLAN_STEP_NOOP:
            s_log_header(run, label);
            s_note(run, st, "noop", "nothing to do", NULL, 0);
            run->step++;
            continue;
        case PLAN_STEP_REWRITE:
            if (s_rewrite(run, st) != 0)
                return;
            run->verified = false;
            run->step++;
            continue;
        case PLAN_STEP_RUN:
            run->verified = false;
            s_spawn(run, PH_STEP, label, what, st->run, st->timeout_ms, st->sandbox_network_none,
                    NULL, NULL);
            return;
        case PLAN_STEP_PUBLISH:
            if (spec->verify.run && !run->verified) {
                s_verify(run, VP_PUBLISH);
                return;
            }
            s_publish(run);
            return;
        case PLAN_STEP_AGENT:
            run->verified = false;
            run->turn = 0;
            free(run->feedback);
            run->feedback = NULL;
            s_snapshot_clear(&run->snap);
            s_agent_turn(run);
            return;
        default: s_fail(run, false, "unknown step kind"); return;
        }
    }
    if (spec->verify.run && !run->verified) {
        s_verify(run, VP_FINAL);
        return;
    }
    s_succeed(run);
}

static int s_on_job(void *arg, uint64_t job_id, const executor_result_t *res)
{
    s_run_t *run = arg;
    if (run->job != job_id) /* cannot happen: abandoned jobs have no callback */
        return 0;
    run->job = 0;
    run->last_exit = res->exit_code;
    s_set_tail(run, res->tail ? res->tail : "", res->tail_len);
    bool ok = res->exit_code == 0 && !res->timed_out && !res->cancelled && res->signal == 0;
    const plan_spec_t *spec = run->spec;
    const plan_step_t *st = run->step < spec->step_count ? &spec->steps[run->step] : NULL;
    char what[128], summary[128], d[32];
    if (st)
        snprintf(what, sizeof what, "step %s", st->name);
    switch (run->phase) {
    case PH_PRECHECK:
        if (ok) {
            s_next_step(run);
        } else if (res->exit_code == 1 && !res->timed_out && !res->cancelled) {
            s_finish(run, TARGET_SKIPPED, "already migrated");
        } else {
            s_fail_process(run, "precheck", res, spec->precheck.timeout_ms);
        }
        break;
    case PH_STEP:
        if (!ok) {
            s_fail_process(run, what, res, st->timeout_ms);
            break;
        }
        snprintf(summary, sizeof summary, "%s, exit 0 in %s",
                 st->kind == PLAN_STEP_PUBLISH ? "published" : "ran",
                 s_duration(res->duration_ms, d, sizeof d));
        s_note(run, st, st->kind == PLAN_STEP_PUBLISH ? "publish" : "run", summary, NULL, 0);
        run->step++;
        s_next_step(run);
        break;
    case PH_AGENT:
        if (run->turn_rec) {
            json_object_set_new(run->turn_rec, "exit_code", json_integer(res->exit_code));
            json_object_set_new(run->turn_rec, "duration_ms",
                                json_integer((json_int_t) res->duration_ms));
        }
        if (!ok) {
            s_turn_verdict(run, res->timed_out ? "timed_out" : "agent_failed");
            s_fail_process(run, what, res, st->timeout_ms);
            break;
        }
        s_agent_done(run, res);
        break;
    case PH_VERIFY:
        if (!ok) {
            s_check_failed(run, "verify", res, spec->verify.timeout_ms);
        } else if (spec->judge.run) {
            s_judge(run);
        } else {
            s_verified(run);
        }
        break;
    case PH_JUDGE:
        if (ok)
            s_verified(run);
        else
            s_check_failed(run, "judge", res, spec->judge.timeout_ms);
        break;
    case PH_DONE:
    default: break;
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Runs: creation, deferred completion, abort.
 */

static void s_run_free(s_run_t *run)
{
    if (!run)
        return;
    s_snapshot_clear(&run->snap);
    plan_target_release(&run->target);
    json_decref(run->turn_rec);
    json_decref(run->turns);
    json_decref(run->notes);
    free(run->feedback);
    free(run->verification);
    free(run->tail);
    free(run->logbuf);
    free(run);
}

static void s_unlink(runner_t *r, s_run_t *run)
{
    for (s_run_t **pp = &r->runs; *pp; pp = &(*pp)->next) {
        if (*pp == run) {
            *pp = run->next;
            run->next = NULL;
            r->n_runs--;
            return;
        }
    }
}

static int s_on_event(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    runner_t *r = arg;
    uint64_t count;
    ssize_t n = read(r->event_fd, &count, sizeof count);
    (void) n;
    /* A callback may start or abort runs: rescan from the head after each. */
    for (;;) {
        s_run_t *run = r->runs;
        while (run && !run->finished)
            run = run->next;
        if (!run)
            break;
        s_unlink(r, run);
        run->outcome.tail = run->tail;
        run->outcome.tail_len = run->tail_len;
        if (!run->log_file && run->logbuf) { /* no file: its lines are the log */
            run->outcome.tail = run->logbuf;
            run->outcome.tail_len = run->logbuf_len;
        }
        gg_debug("runner: run %llu (%s, attempt %u) ended %s", (unsigned long long) run->id,
                 plan_target_ref(run->plan, run->index), run->attempt,
                 target_state_name(run->outcome.state));
        run->done(run->arg, run->id, &run->outcome);
        s_run_free(run);
    }
    return 0;
}

runner_t *runner_new(zloop_t *loop, executor_t *exec, const runner_config_t *cfg)
{
    runner_t *r = NULL;
    if (!loop || !exec || !cfg || !cfg->work_root || !cfg->log_root || cfg->work_root[0] != '/' ||
        cfg->log_root[0] != '/') {
        gg_error("runner: invalid configuration (work_root and log_root must be absolute)");
        return NULL;
    }
    if (sodium_init() < 0) {
        gg_error("runner: libsodium failed to initialise");
        return NULL;
    }
    r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->loop = loop;
    r->exec = exec;
    r->event_fd = -1;
    r->next_id = 1;
    r->work_root = strdup(cfg->work_root);
    r->log_root = strdup(cfg->log_root);
    if (!r->work_root || !r->log_root)
        goto fail;
    if (fsutil_mkdir_p(r->work_root, 0750) != 0 || fsutil_mkdir_p(r->log_root, 0750) != 0) {
        gg_error("runner: cannot create %s or %s", r->work_root, r->log_root);
        goto fail;
    }
    uint64_t seed = cfg->seed;
    if (!seed)
        randombytes_buf(&seed, sizeof seed);
    rng_seed(&r->rng, seed);
    r->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->event_fd < 0) {
        gg_error("runner: eventfd failed: %s", strerror(errno));
        goto fail;
    }
    r->event_item = (zmq_pollitem_t){NULL, r->event_fd, ZMQ_POLLIN, 0};
    if (zloop_poller(loop, &r->event_item, s_on_event, r) != 0)
        goto fail;
    r->event_polled = true;
    return r;
fail:
    runner_destroy(&r);
    return NULL;
}

void runner_destroy(runner_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    runner_t *r = *self_p;
    while (r->runs) {
        s_run_t *run = r->runs;
        r->runs = run->next;
        if (run->job)
            executor_abandon(r->exec, run->job);
        s_run_free(run);
    }
    if (r->event_polled)
        zloop_poller_end(r->loop, &r->event_item);
    if (r->event_fd >= 0)
        close(r->event_fd);
    free(r->work_root);
    free(r->log_root);
    free(r);
    *self_p = NULL;
}

/* Whether a run reads its target's fields (ref, path, entity, ...): every
 * step but noop does, and so do the hooks and docs.catalogOut. A run that
 * does not never loads its target (run->target stays NULL). */
static bool s_reads_target(const plan_spec_t *s)
{
    if (s->precheck.run || s->verify.run || s->judge.run || s->docs_catalog_out)
        return true;
    for (size_t i = 0; i < s->step_count; i++)
        if (s->steps[i].kind != PLAN_STEP_NOOP)
            return true;
    return false;
}

int runner_start(runner_t *r, const plan_t *plan, uint32_t index, uint32_t epoch, uint32_t attempt,
                 runner_done_fn *done, void *arg, uint64_t *run_id)
{
    if (run_id)
        *run_id = 0;
    if (!r || !plan || !done || attempt < 1 || !plan_is_resolved(plan) ||
        index >= plan_target_count(plan))
        return GG_EINVAL;
    if (r->n_runs >= RUNNER_RUNS_MAX || executor_running(r->exec) >= executor_max_workers(r->exec))
        return GG_EBUSY;
    s_run_t *run = calloc(1, sizeof *run);
    if (!run)
        return GG_ENOMEM;
    run->owner = r;
    run->plan = plan;
    run->spec = plan_spec(plan);
    /* A compact plan's target is read back from the store: only when the
     * run reads its fields. */
    int lrc = s_reads_target(run->spec) ? plan_target_load(plan, index, &run->target) : 0;
    if (lrc != 0) {
        s_run_free(run);
        return lrc;
    }
    run->index = index;
    run->epoch = epoch;
    run->attempt = attempt;
    run->done = done;
    run->arg = arg;
    run->started_ms = s_now_ms();
    run->tail = malloc(RUNNER_TAIL_MAX + 1);
    run->notes = json_array();
    run->turns = json_array();
    if (!run->tail || !run->notes || !run->turns) {
        s_run_free(run);
        return GG_ENOMEM;
    }
    run->tail[0] = '\0';
    snprintf(run->s_epoch, sizeof run->s_epoch, "%u", epoch);
    snprintf(run->s_attempt, sizeof run->s_attempt, "%u", attempt);
    int wn =
        snprintf(run->workdir, sizeof run->workdir, "%s/%s/%u", r->work_root, plan_id(plan), index);
    int ln = snprintf(run->log_path, sizeof run->log_path, "%s/%s/%u.log", r->log_root,
                      plan_id(plan), index);
    if (wn < 0 || (size_t) wn >= sizeof run->workdir || ln < 0 ||
        (size_t) ln >= sizeof run->log_path) {
        s_run_free(run);
        return GG_EINVAL;
    }
    run->id = r->next_id++;
    run->next = r->runs;
    r->runs = run;
    r->n_runs++;
    if (run_id)
        *run_id = run->id;

    /* An earlier attempt's log: this one appends to it. */
    struct stat lst;
    run->log_file = stat(run->log_path, &lst) == 0;
    if (run->spec->precheck.run)
        s_spawn(run, PH_PRECHECK, "precheck", "precheck", run->spec->precheck.run,
                run->spec->precheck.timeout_ms, false, NULL, NULL);
    else
        s_next_step(run);
    return 0;
}

int runner_abort(runner_t *r, uint64_t run_id)
{
    if (!r)
        return GG_EINVAL;
    for (s_run_t *run = r->runs; run; run = run->next) {
        if (run->id != run_id)
            continue;
        if (run->job)
            executor_abandon(r->exec, run->job);
        s_log(run, "== aborted ==\n");
        s_unlink(r, run);
        s_run_free(run);
        return 0;
    }
    return GG_ENOTFOUND;
}

size_t runner_active(const runner_t *r)
{
    return r ? r->n_runs : 0;
}
