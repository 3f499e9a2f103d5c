/* test_executor.c: the step process runner with real processes, driven by a
 * zloop whose runs are bounded by a deadline timer: exit codes, captured and
 * bounded output, timeouts reaching grandchildren, the environment allowlist,
 * descriptor and signal hygiene in the child, the worker cap, death with the
 * agent and the killing of groups left by a previous run. */
#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "executor.h"
#include "gg_error.h"
#include "gg_test.h"

#define MAX_RESULTS 8

typedef struct {
    uint64_t id;
    executor_result_t r;
    char *tail; /* copy */
} got_t;

typedef struct {
    int expect; /* stop the loop after this many completions */
    int done;
    bool deadline_hit;
    got_t got[MAX_RESULTS];
} ctx_t;

static char s_dir[256];

static uint64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static int s_on_done(void *arg, uint64_t job_id, const executor_result_t *r)
{
    ctx_t *ctx = arg;
    if (ctx->done < MAX_RESULTS) {
        got_t *g = &ctx->got[ctx->done];
        g->id = job_id;
        g->r = *r;
        g->tail = malloc(r->tail_len + 1);
        if (g->tail) {
            memcpy(g->tail, r->tail, r->tail_len);
            g->tail[r->tail_len] = '\0';
        }
        g->r.tail = g->tail;
    }
    ctx->done++;
    return ctx->done >= ctx->expect ? -1 : 0;
}

static void s_ctx_clear(ctx_t *ctx)
{
    for (int i = 0; i < MAX_RESULTS; i++)
        free(ctx->got[i].tail);
    memset(ctx, 0, sizeof *ctx);
}

static got_t *s_find(ctx_t *ctx, uint64_t id)
{
    for (int i = 0; i < ctx->done && i < MAX_RESULTS; i++)
        if (ctx->got[i].id == id)
            return &ctx->got[i];
    return NULL;
}

static int s_on_deadline(zloop_t *loop, int timer_id, void *arg)
{
    ((ctx_t *) arg)->deadline_hit = true;
    return -1;
}

/* Runs the loop until ctx->expect completions or `ms` have passed. */
static void s_run(zloop_t *loop, ctx_t *ctx, int expect, size_t ms)
{
    ctx->expect = expect;
    if (ctx->done >= expect)
        return;
    int t = zloop_timer(loop, ms, 1, s_on_deadline, ctx);
    zloop_start(loop);
    if (!ctx->deadline_hit)
        zloop_timer_end(loop, t); /* the loop has stopped: removed at once */
}

static executor_config_t s_cfg(ctx_t *ctx, unsigned workers)
{
    executor_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.max_workers = workers;
    cfg.log_dir = s_dir;
    cfg.on_done = s_on_done;
    cfg.on_done_arg = ctx;
    cfg.kill_grace_ms = 2000;
    return cfg;
}

/* A pid is gone when /proc no longer has it or it is a zombie (our tests'
 * orphans are reaped by init, which may take a moment or never happen). */
static bool s_pid_gone(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    return !rp || rp[1] != ' ' || rp[2] == 'Z' || rp[2] == 'X';
}

static int s_pid_pgrp(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    char state;
    int ppid, pgrp;
    if (!rp || sscanf(rp + 1, " %c %d %d", &state, &ppid, &pgrp) != 3)
        return -1;
    return pgrp;
}

/* Polls (10 ms steps) until the pid is gone or the deadline passes. */
static bool s_wait_gone(int pid, uint64_t ms)
{
    uint64_t end = s_now_ms() + ms;
    while (!s_pid_gone(pid)) {
        if (s_now_ms() > end)
            return false;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return true;
}

/* Polls until `path` exists and holds a number; returns it, or -1. */
static int s_wait_pid_file(const char *path, uint64_t ms)
{
    uint64_t end = s_now_ms() + ms;
    for (;;) {
        FILE *f = fopen(path, "r");
        if (f) {
            int v = -1;
            int ok = fscanf(f, "%d", &v);
            fclose(f);
            if (ok == 1 && v > 0)
                return v;
        }
        if (s_now_ms() > end)
            return -1;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static long s_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long) st.st_size : -1;
}

static void test_exit_codes(void)
{
    ctx_t ctx = {0};
    zloop_t *loop = zloop_new();
    executor_config_t cfg = s_cfg(&ctx, 4);
    executor_t *e = executor_new(loop, &cfg);
    REQUIRE(e);
    const char *cmds[] = {"exit 0", "exit 1", "exit 75", "kill -USR1 $$"};
    uint64_t ids[4];
    int tags[4] = {0, 1, 2, 3};
    for (int i = 0; i < 4; i++) {
        executor_job_t job = {.command = cmds[i], .tag = &tags[i]};
        CHECK_EQ_INT(executor_start(e, &job, &ids[i]), 0);
        CHECK(ids[i] > 0);
    }
    CHECK_EQ_INT(executor_running(e), 4);
    s_run(loop, &ctx, 4, 10000);
    CHECK(!ctx.deadline_hit);
    REQUIRE(ctx.done == 4);
    int want[] = {0, 1, 75, -1};
    for (int i = 0; i < 4; i++) {
        got_t *g = s_find(&ctx, ids[i]);
        REQUIRE(g);
        CHECK_EQ_INT(g->r.exit_code, want[i]);
        CHECK(g->r.tag == &tags[i]);
        CHECK(!g->r.timed_out && !g->r.cancelled);
    }
    CHECK_EQ_INT(s_find(&ctx, ids[3])->r.signal, SIGUSR1);
    executor_stats_t st;
    executor_stats(e, &st);
    CHECK_EQ_INT(st.started, 4);
    CHECK_EQ_INT(st.succeeded, 1);
    CHECK_EQ_INT(st.failed, 3);
    CHECK_EQ_INT(st.running, 0);
    executor_destroy(&e);
    CHECK(e == NULL);
    executor_destroy(&e);
    zloop_destroy(&loop);
    s_ctx_clear(&ctx);
}

static void test_output_and_log(void)
{
    ctx_t ctx = {0};
    zloop_t *loop = zloop_new();
    executor_config_t cfg = s_cfg(&ctx, 1);
    executor_t *e = executor_new(loop, &cfg);
    REQUIRE(e);
    char log[512];
    snprintf(log, sizeof log, "%s/plan-a/target-1.log", s_dir);
    executor_job_t job = {.command = "echo out; echo err >&2; exit 3",
                          .log_path = "plan-a/target-1.log"};
    uint64_t id;
    CHECK_EQ_INT(executor_start(e, &job, &id), 0);
    s_run(loop, &ctx, 1, 10000);
    REQUIRE(ctx.done == 1);
    CHECK_EQ_INT(ctx.got[0].r.exit_code, 3);
    CHECK_STR(ctx.got[0].r.tail, "out\nerr\n");
    CHECK_EQ_INT(ctx.got[0].r.output_bytes, 8);
    CHECK(!ctx.got[0].r.truncated);
    CHECK_EQ_INT(s_file_size(log), 8);

    /* Appends: a second run adds to the same log. */
    CHECK_EQ_INT(executor_start(e, &job, &id), 0);
    s_run(loop, &ctx, 2, 10000);
    CHECK_EQ_INT(s_file_size(log), 16);

    /* stdin data and the work directory. */
    executor_job_t job2 = {
        .command = "cat; pwd", .workdir = s_dir, .stdin_data = "hello\n", .stdin_len = 6};
    CHECK_EQ_INT(executor_start(e, &job2, &id), 0);
    s_run(loop, &ctx, 3, 10000);
    REQUIRE(ctx.done == 3);
    char want[600];
    snprintf(want, sizeof want, "hello\n%s\n", s_dir);
    CHECK_STR(ctx.got[2].r.tail, want);

    /* A missing work directory is the child's failure, reported in the tail. */
    executor_job_t job3 = {.command = "true", .workdir = "/nonexistent/gg-exec"};
    CHECK_EQ_INT(executor_start(e, &job3, &id), 0);
    s_run(loop, &ctx, 4, 10000);
    REQUIRE(ctx.done == 4);
    CHECK_EQ_INT(ctx.got[3].r.exit_code, 127);
    CHECK(strstr(ctx.got[3].r.tail, "cannot enter work directory /nonexistent/gg-exec") != NULL);
    executor_destroy(&e);
    zloop_destroy(&loop);
    s_ctx_clear(&ctx);
}

static void test_tail_bounded(void)
{
    ctx_t ctx = {0};
    zloop_t *loop = zloop_new();
    executor_config_t cfg = s_cfg(&ctx, 1);
    cfg.tail_cap = 65536;
    executor_t *e = executor_new(loop, &cfg);
    REQUIRE(e);
    /* seq 1 1500000 writes 10,388,895 bytes. */
    long expected = 0;
    for (long i = 1, width = 1, next = 10; i <= 1500000; i++) {
        if (i == next) {
            width++;
            next *= 10;
        }
        expected += width + 1;
    }
    executor_job_t job = {.command = "seq 1 1500000", .log_path = "big.log"};
    uint64_t id;
    CHECK_EQ_INT(executor_start(e, &job, &id), 0);
    s_run(loop, &ctx, 1, 60000);
    REQUIRE(ctx.done == 1);
    executor_result_t *r = &ctx.got[0].r;
    CHECK_EQ_INT(r->exit_code, 0);
    CHECK_EQ_INT(r->output_bytes, expected);
    CHECK_EQ_INT(r->tail_len, 65536);
    CHECK(r->truncated);
    const char *end = "1499999\n1500000\n";
    CHECK(r->tail_len > strlen(end) &&
          memcmp(r->tail + r->tail_len - strlen(end), end, strlen(end)) == 0);
    char log[512];
    snprintf(log, sizeof log, "%s/big.log", s_dir);
    CHECK_EQ_INT(s_file_size(log), expected);
    /* The tail is exactly the end of the log. */
    FILE *f = fopen(log, "rb");
    REQUIRE(f);
    char *buf = malloc(65536);
    REQUIRE(buf);
    CHECK(fseek(f, -65536, SEEK_END) == 0);
    CHECK(fread(buf, 1, 65536, f) == 65536);
    fclose(f);
    CHECK(memcmp(buf, r->tail, 65536) == 0);
    free(buf);
    executor_destroy(&e);
    zloop_destroy(&loop);
    s_ctx_clear(&ctx);
}

static void test_log_cap(void)
{
    ctx_t ctx = {0};
    zloop_t *loop = zloop_new();
    executor_config_t cfg = s_cfg(&ctx, 1);
    cfg.log_max_bytes = 1000;
    executor_t *e = executor_new(loop, &cfg);
    REQUIRE(e);
    executor_job_t job = {.command = "seq 1 10000", .log_path = "capped.log"};
    uint64_t id;
    CHECK_EQ_INT(executor_start(e, &job, &id), 0);
    s_run(loop, &ctx, 1, 10000);
    REQUIRE(ctx.done == 1);
    CHECK(ctx.got[0].r.log_truncated);
    CHECK(ctx.got[0].r.output_bytes > 1000);
    char log[512];
    snprintf(log, sizeof log, "%s/capped.log", s_dir);
    long size = s_file_size(log);
    CHECK(size > 1000 && size < 1100);
    executor_destroy(&e);
    zloop_destroy(&loop);
    s_ctx_clear(&ctx);
}

static void test_timeout_kills_group(void)
{
    ctx_t ctx = {0};
    zloop_t *loop = zloop_new();
    executor_config_t cfg = s_cfg(&ctx, 2);
    executor_t *e = executor_new(loop, &cfg);
    REQUIRE(e);
    executor_job_t job = {.command = "sleep 100 & echo $!; sleep 100", .timeout_ms = 300};
    uint64_t id;
    uint64_t t0 = s_now_ms();
    CHECK_EQ_INT(executor_start(e, &job, &id), 0);
    s_run(loop, &ctx, 1, 10000);
    REQUIRE(ctx.done == 1);
    executor_result_t *r = &ctx.got[0].r;
    CHECK(r->timed_out);
    CHECK(!r->cancelled);
    CHECK_EQ_INT(r->exit_code, -1);
    CHECK_EQ_INT(r->signal, SIGTERM);
    CHECK(r->duration_ms >= 300);
    CHECK(s_now_ms() - t0 < 2000); /* TERM was enough: no wait for the grace */
    int grandchild = atoi(r->tail);
    CHECK(grandchild > 1);
    if (grandchild > 1)
        CHECK(s_wait_gone(grandchild, 5000));
    executor_stats_t st;
    executor_stats(e, &st);
    CHECK_EQ_INT(st.timed_out, 1);

    /* A group that ignores TERM gets KILL after the grace. */
    executor_job_t job2 = {.command = "trap '' TERM; sleep 100 & echo $!; wait", .timeout_ms = 200};
    CHECK_EQ_INT(executor_start(e, &job2, &id), 0);
    t0 = s_now_ms();
    s_run(loop, &ctx, 2, 10000);
    REQUIRE(ctx.done == 2);
    r = &ctx.got[1].r;
    CHECK(r->timed_out);
    CHECK_EQ_INT(r->signal, SIGKILL);
    CHECK(s_now_ms() - t0 >= 2000); /* the grace was given */
    grandchild = atoi(r->tail);
    CHECK(grandchild > 1);
    if (grandchild > 1)
        CHECK(s_wait_gone(grandchild, 5000));

    /* A step that exits leaves no background process behind. */
    executor_job_t job3 = {.command = "sleep 100 & echo $!"};
    CHECK_EQ_INT(executor_start(e, &job3, &id), 0);
    t0 = s_now_ms();
    s_run(loop, &ctx, 3, 10000);
    REQUIRE(ctx.done == 3);
    r = &ctx.got[2].r;
    CHECK_EQ_INT(r->exit_code, 0);
    CHECK(s_now_ms() - t0 < 2000); /* the grandchild holding the pipe does not delay it */
    grandchild = atoi(r->tail);
    CHECK(grandchild > 1);
    if (grandchild > 1)
        CHECK(s_wait_gone(grandchild, 5000));

    /* TERM reaches the whole group, so a grandchild can clean up and exit. */
    char flag[400], cmd[1200];
    snprintf(flag, sizeof flag, "%s/gc-got-term", s_dir);
    snprintf(cmd, sizeof cmd,
             "sh -c 'trap \"echo term > %s; exit 0\" TERM; while :; do sleep 0.05; done' & "
             "trap 'wait; exit 0' TERM; wait",
             flag);
    executor_job_t job4 = {.command = cmd, .timeout_ms = 300};
    CHECK_EQ_INT(executor_start(e, &job4, &id), 0);
    t0 = s_now_ms();
    s_run(loop, &ctx, 4, 10000);
    REQUIRE(ctx.done == 4);
    r = &ctx.got[3].r;
    CHECK(r->timed_out);
    CHECK_EQ_INT(r->exit_code, 0);
    CHECK(s_now_ms() - t0 < 2000);
    CHECK(access(flag, F_OK) == 0);
    executor_destroy(&e);
    zloop_destroy(&loop);
    s_ctx_clear(&ctx);
}

static void test_env_allowlist(void)
{
    ctx_t ctx = {0};
    zloop_t *loop = zloop_new();
    executor_config_t cfg = s_cfg(&ctx, 1);
    const char *allow[] = {"GG_TEST_ALLOWED", NULL};
    cfg.env_allow = allow;
    executor_t *e = executor_new(loop, &cfg);
    REQUIRE(e);
    setenv("GG_TEST_SECRET", "hidden", 1);
    setenv("GG_TEST_ALLOWED", "visible", 1);
    setenv("HOME", "/home/gg-test", 1);
    executor_env_t env[] = {{"GAGGLE_PLAN", "p1"},
                            {"GAGGLE_EPOCH", "7"},
                            {"GAGGLE_TARGET", "component:default/a b"},
                            {"HOME", "/override"}};
    executor_job_t job = {.command = "env", .env = env, .env_count = 4};
    uint64_t id;
    CHECK_EQ_INT(executor_start(e, &job, &id), 0);
    s_run(loop, &ctx, 1, 10000);
    REQUIRE(ctx.done == 1);
    char *out = malloc(ctx.got[0].r.tail_len + 2);
    REQUIRE(out);
    out[0] = '\n';
    memcpy(out + 1, ctx.got[0].r.tail, ctx.got[0].r.tail_len + 1);
    CHECK(strstr(out, "\nGAGGLE_PLAN=p1\n") != NULL);
    CHECK(strstr(out, "\nGAGGLE_EPOCH=7\n") != NULL);
    CHECK(strstr(out, "\nGAGGLE_TARGET=component:default/a b\n") != NULL);
    CHECK(strstr(out, "\nGG_TEST_ALLOWED=visible\n") != NULL);
    CHECK(strstr(out, "\nHOME=/override\n") != NULL);
    CHECK(strstr(out, "\nPATH=") != NULL);
    CHECK(strstr(out, "GG_TEST_SECRET") == NULL);
    CHECK(strstr(out, "hidden") == NULL);
    free(out);
    unsetenv("GG_TEST_SECRET");
    unsetenv("GG_TEST_ALLOWED");

    /* Bad jobs are refused before anything is spawned. */
    executor_env_t bad_env[] = {{"1BAD", "x"}};
    executor_job_t bad = {.command = "true", .env = bad_env, .env_count = 1};
    CHECK_EQ_INT(executor_start(e, &bad, &id), GG_EINVAL);
    executor_env_t eq_env[] = {{"A=B", "x"}};
    bad.env = eq_env;
    CHECK_EQ_INT(executor_start(e, &bad, &id), GG_EINVAL);
    executor_job_t empty = {.command = ""};
    CHECK_EQ_INT(executor_start(e, &empty, &id), GG_EINVAL);
    executor_job_t escape = {.command = "true", .log_path = "../outside.log"};
    CHECK_EQ_INT(executor_start(e, &escape, &id), GG_EINVAL);
    static char big[EXECUTOR_STDIN_MAX + 1];
    executor_job_t big_in = {.command = "true", .stdin_data = big, .stdin_len = sizeof big};
    CHECK_EQ_INT(executor_start(e, &big_in, &id), GG_ETOOBIG);
    CHECK_EQ_INT(executor_running(e), 0);
    executor_destroy(&e);
    zloop_destroy(&loop);
    s_ctx_clear(&ctx);
}

static void test_no_inherited_fds(void)
{
    ctx_t ctx = {0};
    zloop_t *loop = zloop_new();
    executor_config_t cfg = s_cfg(&ctx, 1);
    executor_t *e = executor_new(loop, &cfg);
    REQUIRE(e);
    int fd = open("/dev/null", O_RDONLY); /* no O_CLOEXEC, on purpose */
    REQUIRE(fd >= 0);
    REQUIRE(dup2(fd, 100) == 100);
    executor_job_t job = {.command = "ls /proc/self/fd"};
    uint64_t id;
    CHECK_EQ_INT(executor_start(e, &job, &id), 0);
    s_run(loop, &ctx, 1, 10000);
    close(100);
    close(fd);
    REQUIRE(ctx.done == 1);
    CHECK_EQ_INT(ctx.got[0].r.exit_code, 0);
    /* ls sees 0, 1, 2 and the descriptor of the directory it lists. */
    CHECK_STR(ctx.got[0].r.tail, "0\n1\n2\n3\n");
    executor_destroy(&e);
    zloop_destroy(&loop);
    s_ctx_clear(&ctx);
}

static void test_max_workers_and_cancel(void)
{
    ctx_t ctx = {0};
    zloop_t *loop = zloop_new();
    executor_config_t cfg = s_cfg(&ctx, 2);
    executor_t *e = executor_new(loop, &cfg);
    REQUIRE(e);
    executor_job_t job = {.command = "sleep 100"};
    uint64_t a, b, c = 77;
    CHECK_EQ_INT(executor_start(e, &job, &a), 0);
    CHECK_EQ_INT(executor_start(e, &job, &b), 0);
    CHECK_EQ_INT(executor_start(e, &job, &c), GG_EBUSY);
    CHECK_EQ_INT(c, 0);
    CHECK_EQ_INT(executor_running(e), 2);
    CHECK_EQ_INT(executor_cancel(e, 9999), GG_ENOTFOUND);
    CHECK_EQ_INT(executor_cancel(e, a), 0);
    s_run(loop, &ctx, 1, 10000);
    REQUIRE(ctx.done == 1);
    CHECK(ctx.got[0].id == a);
    CHECK(ctx.got[0].r.cancelled);
    CHECK_EQ_INT(ctx.got[0].r.signal, SIGTERM);
    CHECK_EQ_INT(executor_running(e), 1);
    /* The freed slot takes a new job. */
    executor_job_t quick = {.command = "exit 0"};
    CHECK_EQ_INT(executor_start(e, &quick, &c), 0);
    s_run(loop, &ctx, 2, 10000);
    REQUIRE(ctx.done == 2);
    CHECK(ctx.got[1].id == c);
    executor_cancel_all(e);
    s_run(loop, &ctx, 3, 10000);
    REQUIRE(ctx.done == 3);
    CHECK(ctx.got[2].id == b && ctx.got[2].r.cancelled);
    executor_stats_t st;
    executor_stats(e, &st);
    CHECK_EQ_INT(st.started, 3);
    CHECK_EQ_INT(st.killed, 2);
    CHECK_EQ_INT(st.succeeded, 1);
    CHECK_EQ_INT(st.running, 0);

    /* Destroying with jobs running kills and reaps them, no callback. */
    CHECK_EQ_INT(executor_start(e, &job, &a), 0);
    executor_destroy(&e);
    CHECK_EQ_INT(ctx.done, 3);
    zloop_destroy(&loop);
    s_ctx_clear(&ctx);
}

/* The agent blocks TERM and CHLD for its signalfd (and may ignore some): the
 * child must start with an empty mask and default dispositions. dash clears
 * its mask itself, bash does not: both are run. */
static void s_signals_with(const char *shell)
{
    ctx_t ctx = {0};
    zloop_t *loop = zloop_new();
    executor_config_t cfg = s_cfg(&ctx, 1);
    cfg.kill_grace_ms = 20000;
    cfg.shell = shell;
    executor_t *e = executor_new(loop, &cfg);
    REQUIRE(e);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGCHLD);
    sigaddset(&block, SIGHUP);
    REQUIRE(sigprocmask(SIG_BLOCK, &block, &old) == 0);
    struct sigaction ign, old_act;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    REQUIRE(sigaction(SIGTERM, &ign, &old_act) == 0);
    executor_job_t job = {.command = "grep -E '^Sig(Blk|Ign)' /proc/self/status; sleep 100",
                          .timeout_ms = 300};
    uint64_t id;
    uint64_t t0 = s_now_ms();
    CHECK_EQ_INT(executor_start(e, &job, &id), 0);
    s_run(loop, &ctx, 1, 15000);
    sigaction(SIGTERM, &old_act, NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    REQUIRE(ctx.done == 1);
    CHECK(ctx.got[0].r.timed_out);
    CHECK_EQ_INT(ctx.got[0].r.signal, SIGTERM); /* died of TERM, not of the KILL 20 s later */
    CHECK(s_now_ms() - t0 < 10000);
    CHECK(strstr(ctx.got[0].r.tail, "SigBlk:\t0000000000000000\n") != NULL);
    CHECK(strstr(ctx.got[0].r.tail, "SigIgn:\t0000000000000000\n") != NULL);
    executor_destroy(&e);
    zloop_destroy(&loop);
    s_ctx_clear(&ctx);
}

static void test_signals_reset_in_child(void)
{
    s_signals_with(NULL);
    if (access("/bin/bash", X_OK) == 0)
        s_signals_with("/bin/bash");
    else
        fprintf(stderr, "note: no /bin/bash, the mask reset is checked through dash only\n");
}

static void test_waitpid_fallback(void)
{
    ctx_t ctx = {0};
    zloop_t *loop = zloop_new();
    executor_config_t cfg = s_cfg(&ctx, 2);
    cfg.no_pidfd = true;
    executor_t *e = executor_new(loop, &cfg);
    REQUIRE(e);
    executor_job_t job = {.command = "echo fallback; exit 3"};
    executor_job_t slow = {.command = "sleep 100", .timeout_ms = 200};
    uint64_t a, b;
    CHECK_EQ_INT(executor_start(e, &job, &a), 0);
    CHECK_EQ_INT(executor_start(e, &slow, &b), 0);
    s_run(loop, &ctx, 2, 10000);
    REQUIRE(ctx.done == 2);
    got_t *ga = s_find(&ctx, a), *gb = s_find(&ctx, b);
    REQUIRE(ga && gb);
    CHECK_EQ_INT(ga->r.exit_code, 3);
    CHECK_STR(ga->r.tail, "fallback\n");
    CHECK(gb->r.timed_out);
    CHECK_EQ_INT(gb->r.signal, SIGTERM);

    /* An exit noticed before the output was read: the pipe is drained then. */
    executor_job_t burst = {.command = "seq 1 5000; exit 4"};
    CHECK_EQ_INT(executor_start(e, &burst, &a), 0);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    CHECK(waitid(P_ALL, 0, &si, WEXITED | WNOWAIT) == 0); /* blocks until it exits */
    executor_reap(e);
    REQUIRE(ctx.done == 3);
    CHECK_EQ_INT(ctx.got[2].r.exit_code, 4);
    CHECK_EQ_INT(ctx.got[2].r.output_bytes, 23893);
    CHECK(strstr(ctx.got[2].r.tail, "\n4999\n5000\n") != NULL);
    executor_destroy(&e);
    zloop_destroy(&loop);
    s_ctx_clear(&ctx);
}

static int s_noop_done(void *arg, uint64_t job_id, const executor_result_t *r)
{
    return 0;
}

/* An intermediate process plays the agent: it runs a step whose shell
 * records its pid and a background grandchild's, and is SIGKILLed. The step
 * must die with it (PDEATHSIG); the grandchild, which does not inherit that,
 * survives in the step's group until executor_kill_stale_groups. */
static void test_pdeathsig_and_stale_groups(void)
{
    char groups[300];
    snprintf(groups, sizeof groups, "%s/groups", s_dir);
    REQUIRE(mkdir(groups, 0700) == 0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "echo $$ > %s/sh.tmp && mv %s/sh.tmp %s/sh.pid; "
             "sleep 100 & echo $! > %s/gc.tmp && mv %s/gc.tmp %s/gc.pid; wait",
             s_dir, s_dir, s_dir, s_dir, s_dir, s_dir);
    pid_t mid = fork();
    REQUIRE(mid >= 0);
    if (mid == 0) {
        zloop_t *loop = zloop_new();
        executor_config_t cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.max_workers = 1;
        cfg.pgid_dir = groups;
        cfg.on_done = s_noop_done;
        executor_t *e = loop ? executor_new(loop, &cfg) : NULL;
        executor_job_t job = {.command = cmd};
        uint64_t id;
        if (!e || executor_start(e, &job, &id) != 0)
            _exit(1);
        zloop_start(loop);
        _exit(0);
    }
    char path[600];
    snprintf(path, sizeof path, "%s/gc.pid", s_dir);
    int gc = s_wait_pid_file(path, 10000);
    snprintf(path, sizeof path, "%s/sh.pid", s_dir);
    int sh = s_wait_pid_file(path, 1000);
    if (gc <= 0 || sh <= 0) {
        kill(mid, SIGKILL);
        waitpid(mid, NULL, 0);
    }
    REQUIRE(gc > 0 && sh > 0);
    char pgid_file[600];
    snprintf(pgid_file, sizeof pgid_file, "%s/%d.pgid", groups, sh);
    CHECK(access(pgid_file, F_OK) == 0);
    CHECK_EQ_INT(s_pid_pgrp(gc), sh);

    REQUIRE(kill(mid, SIGKILL) == 0);
    REQUIRE(waitpid(mid, NULL, 0) == mid);
    CHECK(s_wait_gone(sh, 5000)); /* the step died with its agent */
    CHECK(!s_pid_gone(gc));       /* its background child did not */
    CHECK(access(pgid_file, F_OK) == 0);

    int killed = -1;
    CHECK_EQ_INT(executor_kill_stale_groups(groups, &killed), 0);
    CHECK_EQ_INT(killed, 1);
    CHECK(s_wait_gone(gc, 5000));
    CHECK(access(pgid_file, F_OK) != 0);
    if (!s_pid_gone(gc))
        kill(gc, SIGKILL);
}

/* Group files from another boot are deleted without killing anything; a
 * group of this boot is killed; executor_new does it at start. */
static void test_stale_group_file(void)
{
    char groups[300];
    snprintf(groups, sizeof groups, "%s/groups2", s_dir);
    REQUIRE(mkdir(groups, 0700) == 0);
    pid_t p = fork();
    REQUIRE(p >= 0);
    if (p == 0) {
        setpgid(0, 0);
        execl("/bin/sleep", "sleep", "100", (char *) NULL);
        _exit(127);
    }
    setpgid(p, p);
    char file[600];
    snprintf(file, sizeof file, "%s/%d.pgid", groups, (int) p);
    FILE *f = fopen(file, "w");
    REQUIRE(f);
    fprintf(f, "%d 00000000-0000-0000-0000-000000000000\n", (int) p);
    fclose(f);
    snprintf(file, sizeof file, "%s/junk.pgid", groups);
    f = fopen(file, "w");
    REQUIRE(f);
    fputs("not a group\n", f);
    fclose(f);
    int killed = -1;
    CHECK_EQ_INT(executor_kill_stale_groups(groups, &killed), 0);
    CHECK_EQ_INT(killed, 0);
    CHECK(access(file, F_OK) != 0);
    CHECK_EQ_INT(waitpid(p, NULL, WNOHANG), 0); /* still running */

    char boot[64] = {0};
    f = fopen("/proc/sys/kernel/random/boot_id", "r");
    REQUIRE(f);
    CHECK(fgets(boot, sizeof boot, f) != NULL);
    fclose(f);
    snprintf(file, sizeof file, "%s/%d.pgid", groups, (int) p);
    f = fopen(file, "w");
    REQUIRE(f);
    fprintf(f, "%d %s", (int) p, boot);
    fclose(f);
    ctx_t ctx = {0};
    zloop_t *loop = zloop_new();
    executor_config_t cfg = s_cfg(&ctx, 1);
    cfg.pgid_dir = groups;
    executor_t *e = executor_new(loop, &cfg);
    CHECK(e != NULL);
    int status = 0;
    CHECK_EQ_INT(waitpid(p, &status, 0), p);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK(access(file, F_OK) != 0);
    /* A missing directory is no error. */
    CHECK_EQ_INT(executor_kill_stale_groups("/nonexistent/gg-groups", &killed), 0);
    CHECK_EQ_INT(killed, 0);
    executor_destroy(&e);
    zloop_destroy(&loop);
}

static void test_bad_config(void)
{
    ctx_t ctx = {0};
    zloop_t *loop = zloop_new();
    executor_config_t cfg = s_cfg(&ctx, 0);
    CHECK(executor_new(loop, &cfg) == NULL);
    cfg = s_cfg(&ctx, 1);
    cfg.on_done = NULL;
    CHECK(executor_new(loop, &cfg) == NULL);
    cfg = s_cfg(&ctx, 1);
    const char *allow[] = {"NOT-A-NAME", NULL};
    cfg.env_allow = allow;
    CHECK(executor_new(loop, &cfg) == NULL);
    cfg = s_cfg(&ctx, 1);
    cfg.log_dir = "/proc/gg-cannot-create";
    CHECK(executor_new(loop, &cfg) == NULL);
    cfg = s_cfg(&ctx, 1);
    cfg.shell = "bash";
    CHECK(executor_new(loop, &cfg) == NULL);
    zloop_destroy(&loop);
}

int main(void)
{
    zsys_handler_set(NULL);
    snprintf(s_dir, sizeof s_dir, "/tmp/gg-exec-XXXXXX");
    if (!mkdtemp(s_dir)) {
        perror("mkdtemp");
        return 1;
    }
    GG_RUN(test_exit_codes);
    GG_RUN(test_output_and_log);
    GG_RUN(test_tail_bounded);
    GG_RUN(test_log_cap);
    GG_RUN(test_timeout_kills_group);
    GG_RUN(test_env_allowlist);
    GG_RUN(test_no_inherited_fds);
    GG_RUN(test_max_workers_and_cancel);
    GG_RUN(test_signals_reset_in_child);
    GG_RUN(test_waitpid_fallback);
    GG_RUN(test_pdeathsig_and_stale_groups);
    GG_RUN(test_stale_group_file);
    GG_RUN(test_bad_config);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", s_dir);
    GG_DONE();
}
