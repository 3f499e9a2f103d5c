/* test_runner.c: the target runner end to end with real processes on a
 * zloop (every run bounded by a deadline): plans are loaded from text over a
 * small generated catalog (a Resource user-ds-v1 and Components depending on
 * it, each in its own folder with a file naming user_ds_v1), resolved, then
 * their targets are run: success with rewrite, verify and catalogOut;
 * precheck skipping; retries with backoff; failures; timeouts; verify and
 * judge vetoes; template injection; the agent verify loop; publish's change
 * file; the exact GAGGLE_* environment; abort; the network sandbox. Also the
 * docs_out module on its own: YAML round trips and dependsOn moves. */
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "docs_out.h"
#include "executor.h"
#include "gg_error.h"
#include "gg_test.h"
#include "notify.h"
#include "plan.h"
#include "runner.h"
#include "yamljson.h"

#define MAX_GOT 8

typedef struct {
    uint64_t run_id;
    runner_outcome_t o;
    char *tail;
} got_t;

typedef struct {
    char base[PATH_MAX];
    zloop_t *loop;
    executor_t *exec;
    runner_t *runner;
    int done;
    got_t got[MAX_GOT];
    bool stray_callback; /* the executor's own on_done was called */
    /* s_loop_until */
    bool (*pred)(void *);
    void *pred_arg;
    uint64_t deadline;
    bool deadline_hit;
} ctx_t;

static char s_root[PATH_MAX];

static uint64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static int s_mkdirs(const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* Writes text to base/rel, creating folders. */
static int s_write(const char *base, const char *rel, const char *text)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", base, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    if (s_mkdirs(path) != 0)
        return -1;
    *slash = '/';
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f) == 0 ? 0 : -1;
}

/* Reads a whole file (NULL when missing). */
static char *s_read(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(f);
    fclose(m);
    return buf;
}

static char *s_readf(const char *fmt, const char *a, const char *b)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, fmt, a, b);
    return s_read(path);
}

static size_t s_count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static bool s_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ------------------------------------------------------------ the catalog */

static const char *s_svc_a = "apiVersion: backstage.io/v1alpha1\n"
                             "kind: Component\n"
                             "metadata:\n"
                             "  name: svc-a\n"
                             "  description: |\n"
                             "    Reads users.\n"
                             "    Two lines.\n"
                             "  labels: {version: '1.10'}\n"
                             "  annotations:\n"
                             "    myorg.org/flag: 'true'\n"
                             "  tags: [java, data]\n"
                             "  links: [{url: 'https://example.com/a', title: Docs}]\n"
                             "spec:\n"
                             "  type: service\n"
                             "  lifecycle: production\n"
                             "  owner: team-a\n"
                             "  replicas: 3\n"
                             "  dependsOn: ['Resource:Default/User-DS-V1', 'component:svc-b']\n";

static const char *s_svc_b =
    "apiVersion: backstage.io/v1alpha1\n"
    "kind: Component\n"
    "metadata:\n"
    "  name: svc-b\n"
    "  annotations:\n"
    "    gaggle.io/evil: \"$(touch PWNED1) `touch PWNED2`; touch PWNED3 ' \\\" x\"\n"
    "spec: {type: service, lifecycle: production, owner: team-b,\n"
    "       dependsOn: ['resource:user-ds-v1']}\n";

/* A fresh folder s_root/name with the catalog; returns 0. */
static int s_setup(ctx_t *ctx, const char *name)
{
    memset(ctx, 0, sizeof *ctx);
    if (snprintf(ctx->base, sizeof ctx->base, "%.512s/%.64s", s_root, name) < 0)
        return -1;
    int rc = s_mkdirs(ctx->base);
    rc |= s_write(ctx->base, "catalog/resources.yaml",
                  "apiVersion: backstage.io/v1alpha1\nkind: Resource\n"
                  "metadata: {name: user-ds-v1}\nspec: {type: database, owner: team-data}\n---\n"
                  "apiVersion: backstage.io/v1alpha1\nkind: Resource\n"
                  "metadata: {name: user-ds-v2}\nspec: {type: database, owner: team-data}\n");
    rc |= s_write(ctx->base, "catalog/svc-a/catalog-info.yaml", s_svc_a);
    rc |= s_write(ctx->base, "catalog/svc-a/query.sql", "SELECT id FROM user_ds_v1;\n");
    rc |= s_write(ctx->base, "catalog/svc-b/catalog-info.yaml", s_svc_b);
    rc |= s_write(ctx->base, "catalog/svc-b/query.sql", "SELECT name FROM user_ds_v1;\n");
    return rc;
}

#define S_PLAN_HEAD                                                                                \
    "apiVersion: gaggle/v1\nkind: MigrationPlan\n"                                                 \
    "metadata: {name: user-ds-v2, description: Move readers to v2}\n"                              \
    "spec:\n"                                                                                      \
    "  catalog: ./catalog\n"                                                                       \
    "  dataset: {from: resource:default/user-ds-v1, to: resource:default/user-ds-v2}\n"            \
    "  vars: {from: user_ds_v1, to: user_ds_v2}\n"

/* Loads S_PLAN_HEAD + body in ctx->base, reads the catalog and resolves. */
static plan_t *s_plan(ctx_t *ctx, const char *body)
{
    char *text = NULL;
    if (asprintf(&text, "%s%s", S_PLAN_HEAD, body) < 0)
        return NULL;
    plan_diag_t *diag = plan_diag_new();
    plan_opts_t opts = {.check_root = false};
    plan_t *p = NULL;
    catalog_t *cat = NULL;
    int rc = plan_load_text(text, strlen(text), "plan.yaml", ctx->base, &opts, &p, diag);
    if (rc == 0)
        rc = plan_load_catalog(p, &cat, diag);
    if (rc == 0)
        rc = plan_resolve(p, cat, diag);
    if (rc != 0) {
        char *e = json_dumps(plan_diag_errors(diag), JSON_INDENT(1));
        fprintf(stderr, "plan refused (%d): %s\n", rc, e ? e : "?");
        free(e);
        plan_destroy(&p);
    }
    catalog_destroy(&cat);
    plan_diag_destroy(&diag);
    free(text);
    return p;
}

/* ------------------------------------------------------------- the loop */

static int s_stray_done(void *arg, uint64_t job_id, const executor_result_t *r)
{
    ((ctx_t *) arg)->stray_callback = true;
    return 0;
}

static void s_on_outcome(void *arg, uint64_t run_id, const runner_outcome_t *o)
{
    ctx_t *ctx = arg;
    if (ctx->done < MAX_GOT) {
        got_t *g = &ctx->got[ctx->done];
        g->run_id = run_id;
        g->o = *o;
        g->tail = strndup(o->tail ? o->tail : "", o->tail_len);
        g->o.tail = g->tail;
    }
    ctx->done++;
}

static int s_start_loop(ctx_t *ctx, unsigned workers)
{
    char work[PATH_MAX + 16], logs[PATH_MAX + 16];
    ctx->loop = zloop_new();
    executor_config_t ec;
    memset(&ec, 0, sizeof ec);
    ec.max_workers = workers;
    ec.kill_grace_ms = 500;
    ec.on_done = s_stray_done;
    ec.on_done_arg = ctx;
    ctx->exec = ctx->loop ? executor_new(ctx->loop, &ec) : NULL;
    snprintf(work, sizeof work, "%s/work", ctx->base);
    snprintf(logs, sizeof logs, "%s/logs", ctx->base);
    runner_config_t rc = {.work_root = work, .log_root = logs, .seed = 42};
    ctx->runner = ctx->exec ? runner_new(ctx->loop, ctx->exec, &rc) : NULL;
    return ctx->runner ? 0 : -1;
}

static void s_teardown(ctx_t *ctx)
{
    runner_destroy(&ctx->runner);
    executor_destroy(&ctx->exec);
    zloop_destroy(&ctx->loop);
    for (int i = 0; i < MAX_GOT; i++)
        free(ctx->got[i].tail);
}

static int s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    ctx_t *ctx = arg;
    if (ctx->pred && ctx->pred(ctx->pred_arg))
        return -1;
    if (s_now_ms() >= ctx->deadline) {
        ctx->deadline_hit = true;
        return -1;
    }
    return 0;
}

/* Runs the loop until pred(arg) holds or ms have passed; returns pred's
 * final value (pred NULL: just runs for ms, returns true). */
static bool s_loop_until(ctx_t *ctx, bool (*pred)(void *), void *arg, uint64_t ms)
{
    if (pred && pred(arg))
        return true;
    ctx->pred = pred;
    ctx->pred_arg = arg;
    ctx->deadline = s_now_ms() + ms;
    ctx->deadline_hit = false;
    int t = zloop_timer(ctx->loop, 5, 0, s_on_tick, ctx);
    zloop_start(ctx->loop);
    zloop_timer_end(ctx->loop, t);
    ctx->pred = NULL;
    return pred ? pred(arg) : true;
}

typedef struct {
    ctx_t *ctx;
    int want;
} want_t;

static bool s_have_outcomes(void *arg)
{
    want_t *w = arg;
    return w->ctx->done >= w->want;
}

/* Starts a run and waits (30 s at most) for its outcome: the latest got_t,
 * or NULL. */
static got_t *s_run(ctx_t *ctx, plan_t *plan, uint32_t index, uint32_t epoch, uint32_t attempt)
{
    uint64_t id = 0;
    int before = ctx->done;
    int rc = runner_start(ctx->runner, plan, index, epoch, attempt, s_on_outcome, ctx, &id);
    if (rc != 0) {
        fprintf(stderr, "runner_start: %s\n", gg_strerror(rc));
        return NULL;
    }
    want_t w = {ctx, before + 1};
    if (!s_loop_until(ctx, s_have_outcomes, &w, 30000) || ctx->done > MAX_GOT)
        return NULL;
    got_t *g = &ctx->got[ctx->done - 1];
    if (g->run_id != id)
        return NULL;
    if (g->o.state != TARGET_SUCCEEDED && g->o.state != TARGET_SKIPPED)
        fprintf(stderr, "  (run %llu: %s: %s)\n", (unsigned long long) id,
                target_state_name(g->o.state), g->o.error);
    return g;
}

/* ---------------------------------------------------------------- tests */

static void test_success_path(void)
{
    ctx_t ctx;
    REQUIRE(s_setup(&ctx, "success") == 0);
    plan_t *p =
        s_plan(&ctx, "  precheck: {run: 'grep -rq {{vars.from}} {{target.path}}'}\n"
                     "  steps:\n"
                     "    - {name: rewrite, rewrite: {paths: ['**/*.sql'],\n"
                     "       replace: {'{{vars.from}}': '{{vars.to}}'}}}\n"
                     "    - {name: check, run: 'grep -c {{vars.to}} {{target.path}}/query.sql'}\n"
                     "    - {name: nothing, noop: true}\n"
                     "  verify: {run: '! grep -r {{vars.from}} {{target.path}}'}\n"
                     "  docs: {catalogOut: ./catalog-out}\n");
    REQUIRE(p);
    REQUIRE(plan_target_count(p) == 2);
    CHECK_STR(plan_target(p, 0)->ref, "component:default/svc-a");
    REQUIRE(s_start_loop(&ctx, 2) == 0);

    got_t *g = s_run(&ctx, p, 0, 7, 1);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_SUCCEEDED);
    CHECK_STR(g->o.error, "");
    CHECK_EQ_INT(g->o.exit_code, 0);
    CHECK_EQ_INT(g->o.step, 2);
    char *sql = s_readf("%s/catalog/svc-a/query.sql%s", ctx.base, "");
    CHECK_STR(sql, "SELECT id FROM user_ds_v2;\n");
    free(sql);
    /* The other target was left alone. */
    sql = s_readf("%s/catalog/svc-b/query.sql%s", ctx.base, "");
    CHECK_STR(sql, "SELECT name FROM user_ds_v1;\n");
    free(sql);

    /* The log: one header per process or built-in step, in order. */
    char want_log[PATH_MAX * 2];
    snprintf(want_log, sizeof want_log, "%s/logs/%s/0.log", ctx.base, plan_id(p));
    CHECK_STR(g->o.log_path, want_log);
    char *log = s_read(want_log);
    REQUIRE(log);
    const char *h1 = strstr(log, "== precheck (attempt 1, epoch 7) ==\n");
    const char *h2 = strstr(log, "== step rewrite (attempt 1, epoch 7) ==\n");
    const char *h3 = strstr(log, "== step check (attempt 1, epoch 7) ==\n1\n");
    const char *h4 = strstr(log, "== step nothing (attempt 1, epoch 7) ==\n");
    const char *h5 = strstr(log, "== verify (attempt 1, epoch 7) ==\n");
    CHECK(h1 && h2 && h3 && h4 && h5 && h1 < h2 && h2 < h3 && h3 < h4 && h4 < h5);
    CHECK(strstr(log, "rewrite: changed 1 file (1 replacement)") != NULL);
    free(log);

    /* catalogOut: dependsOn moved, every other field kept. */
    char out[PATH_MAX * 2];
    snprintf(out, sizeof out, "%s/catalog-out/default/component/svc-a.yaml", ctx.base);
    yamljson_t *y = NULL;
    char err[YAMLJSON_ERR_MAX];
    CHECK_EQ_INT(yamljson_load_file(out, NULL, &y, err, sizeof err), 0);
    REQUIRE(y && yamljson_count(y) == 1);
    json_t *doc = yamljson_doc(y, 0);
    json_t *want = json_deep_copy(plan_target(p, 0)->entity);
    json_t *deps = json_pack("[s, s]", "resource:default/user-ds-v2", "component:svc-b");
    json_object_set_new(json_object_get(want, "spec"), "dependsOn", deps);
    CHECK(json_equal(doc, want));
    CHECK_STR(json_string_value(json_object_get(
                  json_object_get(json_object_get(doc, "metadata"), "labels"), "version")),
              "1.10");
    json_decref(want);
    yamljson_destroy(&y);

    /* Running it again: precheck says it is done. */
    g = s_run(&ctx, p, 0, 8, 1);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_SKIPPED);
    CHECK_STR(g->o.error, "already migrated");
    CHECK_EQ_INT(runner_active(ctx.runner), 0);
    CHECK(!ctx.stray_callback);
    s_teardown(&ctx);
    plan_destroy(&p);
}

/* A run of built-in steps only makes no work directory and no log file: its
 * log lines come back as its tail. A process step makes both, with the lines
 * written before it first in the file. */
static void test_builtin_only_makes_no_files(void)
{
    ctx_t ctx;
    REQUIRE(s_setup(&ctx, "builtin") == 0);
    plan_t *p = s_plan(&ctx, "  steps:\n"
                             "    - {name: first, noop: true}\n"
                             "    - {name: second, noop: true}\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 2) == 0);
    got_t *g = s_run(&ctx, p, 0, 3, 1);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_SUCCEEDED);
    CHECK_STR(g->o.log_path, "");
    CHECK(strstr(g->o.tail, "== step first (attempt 1, epoch 3) ==\n") != NULL);
    CHECK(strstr(g->o.tail, "== step second (attempt 1, epoch 3) ==\n") != NULL);
    CHECK(strstr(g->o.tail, "== succeeded ==\n") != NULL);
    char path[PATH_MAX * 2];
    struct stat st;
    snprintf(path, sizeof path, "%s/work/%s/0", ctx.base, plan_id(p));
    CHECK(stat(path, &st) != 0 && errno == ENOENT);
    snprintf(path, sizeof path, "%s/logs/%s/0.log", ctx.base, plan_id(p));
    CHECK(stat(path, &st) != 0 && errno == ENOENT);
    plan_destroy(&p);

    p = s_plan(&ctx, "  steps:\n"
                     "    - {name: first, noop: true}\n"
                     "    - {name: proc, run: 'pwd'}\n");
    REQUIRE(p);
    g = s_run(&ctx, p, 1, 4, 1);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_SUCCEEDED);
    snprintf(path, sizeof path, "%s/logs/%s/1.log", ctx.base, plan_id(p));
    CHECK_STR(g->o.log_path, path);
    char *log = s_read(path);
    REQUIRE(log);
    const char *a = strstr(log, "== step first (attempt 1, epoch 4) ==\n");
    const char *b = strstr(log, "== step proc (attempt 1, epoch 4) ==\n");
    char wd[PATH_MAX * 2];
    snprintf(wd, sizeof wd, "%s/work/%s/1\n", ctx.base, plan_id(p));
    const char *c = strstr(log, wd); /* pwd ran in the work directory */
    CHECK(a && b && c && a < b && b < c);
    free(log);
    s_teardown(&ctx);
    plan_destroy(&p);
}

static void test_precheck(void)
{
    ctx_t ctx;
    REQUIRE(s_setup(&ctx, "precheck") == 0);
    plan_t *p = s_plan(&ctx, "  precheck: {run: 'exit 1'}\n"
                             "  steps:\n"
                             "    - {name: rewrite, rewrite: {paths: ['*.sql'],\n"
                             "       replace: {'{{vars.from}}': '{{vars.to}}'}}}\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    got_t *g = s_run(&ctx, p, 1, 1, 1);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_SKIPPED);
    CHECK_STR(g->o.error, "already migrated");
    char *sql = s_readf("%s/catalog/svc-b/query.sql%s", ctx.base, "");
    CHECK_STR(sql, "SELECT name FROM user_ds_v1;\n"); /* no step ran */
    free(sql);
    s_teardown(&ctx);
    plan_destroy(&p);

    /* Any other precheck exit code is an error like a failing step. */
    REQUIRE(s_setup(&ctx, "precheck2") == 0);
    p = s_plan(&ctx, "  precheck: {run: 'echo cannot tell; exit 4'}\n"
                     "  steps: [{name: s, noop: true}]\n"
                     "  retry: {maxAttempts: 2, retryableExitCodes: [75]}\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    g = s_run(&ctx, p, 0, 1, 1);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_FAILED);
    CHECK_STR(g->o.error, "precheck exited with 4");
    CHECK_EQ_INT(g->o.exit_code, 4);
    CHECK(strstr(g->o.tail, "cannot tell") != NULL);
    s_teardown(&ctx);
    plan_destroy(&p);
}

static void test_backoff(void)
{
    ctx_t ctx;
    REQUIRE(s_setup(&ctx, "backoff") == 0);
    plan_t *p = s_plan(&ctx, "  steps: [{name: s, noop: true}]\n"
                             "  retry: {maxAttempts: 5, initialBackoff: 2s, multiplier: 2,\n"
                             "          maxBackoff: 5m, retryableExitCodes: [75]}\n");
    REQUIRE(p);
    const plan_spec_t *s = plan_spec(p);
    CHECK_EQ_INT(runner_backoff_ms(s, 1, 0), 1000);
    CHECK_EQ_INT(runner_backoff_ms(s, 1, 1000), 2000);
    CHECK_EQ_INT(runner_backoff_ms(s, 1, 1001), 1000);
    CHECK_EQ_INT(runner_backoff_ms(s, 3, 0), 4000);
    CHECK_EQ_INT(runner_backoff_ms(s, 3, 4000), 8000);
    CHECK_EQ_INT(runner_backoff_ms(s, 30, 0), 150000);
    CHECK_EQ_INT(runner_backoff_ms(s, 1000000, 150000), 300000);
    CHECK_EQ_INT(runner_backoff_ms(s, UINT32_MAX, 0), 150000);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 1000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t b = runner_backoff_ms(s, 2, x);
        CHECK(b >= 2000 && b <= 4000);
    }
    CHECK(runner_retryable(s, 75, 0, false));
    CHECK(!runner_retryable(s, 3, 0, false));
    CHECK(runner_retryable(s, -1, 9, true)); /* a timeout always is */
    CHECK(!runner_retryable(s, -1, 9, false));
    plan_destroy(&p);

    /* Without retryableExitCodes, any failure is retryable. */
    p = s_plan(&ctx, "  steps: [{name: s, noop: true}]\n");
    REQUIRE(p);
    s = plan_spec(p);
    CHECK(runner_retryable(s, 3, 0, false));
    CHECK(runner_retryable(s, -1, 9, false));
    CHECK(!runner_retryable(s, 0, 0, false));
    CHECK_EQ_INT(s->max_attempts, 3);
    CHECK_EQ_INT(runner_backoff_ms(s, 1, 0), 500); /* default 1s */
    plan_destroy(&p);
}

static void test_retry_then_success(void)
{
    ctx_t ctx;
    REQUIRE(s_setup(&ctx, "retry") == 0);
    plan_t *p = s_plan(&ctx, "  steps:\n"
                             "    - {name: flaky, run: 'echo try $GAGGLE_ATTEMPT; "
                             "if [ \"$GAGGLE_ATTEMPT\" = 1 ]; then exit 75; fi'}\n"
                             "  retry: {maxAttempts: 3, initialBackoff: 2s, multiplier: 2,\n"
                             "          maxBackoff: 5m, retryableExitCodes: [75]}\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    got_t *g = s_run(&ctx, p, 0, 3, 1);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_RETRY_WAIT);
    CHECK_STR(g->o.error, "step flaky exited with 75");
    CHECK_EQ_INT(g->o.exit_code, 75);
    CHECK(g->o.backoff_ms >= 1000 && g->o.backoff_ms <= 2000);
    CHECK(strstr(g->o.tail, "try 1") != NULL);
    g = s_run(&ctx, p, 0, 3, 2);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_SUCCEEDED);
    CHECK_EQ_INT(g->o.backoff_ms, 0);
    /* Both attempts appended to the same log. */
    char *log = s_read(g->o.log_path);
    CHECK(log && strstr(log, "== step flaky (attempt 1, epoch 3) ==\ntry 1\n") != NULL);
    CHECK(log && strstr(log, "== step flaky (attempt 2, epoch 3) ==\ntry 2\n") != NULL);
    free(log);
    s_teardown(&ctx);
    plan_destroy(&p);
}

static void test_failures(void)
{
    ctx_t ctx;
    REQUIRE(s_setup(&ctx, "fail") == 0);
    plan_t *p = s_plan(&ctx, "  steps:\n"
                             "    - {name: bad, run: 'exit $((70 + GAGGLE_ATTEMPT))'}\n"
                             "  retry: {maxAttempts: 5, retryableExitCodes: [75]}\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    /* exit 71: not retryable, FAILED at once. */
    got_t *g = s_run(&ctx, p, 0, 1, 1);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_FAILED);
    CHECK_STR(g->o.error, "step bad exited with 71");
    /* exit 75 (attempt 5 = maxAttempts): retryable but no attempt left. */
    g = s_run(&ctx, p, 0, 1, 5);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_FAILED);
    CHECK_STR(g->o.error, "step bad exited with 75");
    s_teardown(&ctx);
    plan_destroy(&p);

    /* The default rule: any failure retries until maxAttempts. */
    REQUIRE(s_setup(&ctx, "fail2") == 0);
    p = s_plan(&ctx, "  steps:\n    - {name: bad, run: 'exit 3'}\n  retry: {maxAttempts: 2}\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    g = s_run(&ctx, p, 0, 1, 1);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_RETRY_WAIT);
    CHECK(g->o.backoff_ms >= 500 && g->o.backoff_ms <= 1000);
    g = s_run(&ctx, p, 0, 1, 2);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_FAILED);
    CHECK_STR(g->o.error, "step bad exited with 3");
    s_teardown(&ctx);
    plan_destroy(&p);
}

static void test_timeout(void)
{
    ctx_t ctx;
    REQUIRE(s_setup(&ctx, "timeout") == 0);
    plan_t *p = s_plan(&ctx, "  steps:\n"
                             "    - {name: slow, run: 'sleep 20', timeout: 300ms}\n"
                             "  retry: {maxAttempts: 2, retryableExitCodes: [75]}\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    uint64_t t0 = s_now_ms();
    got_t *g = s_run(&ctx, p, 0, 1, 1);
    REQUIRE(g);
    CHECK(s_now_ms() - t0 < 5000);
    CHECK_EQ_INT(g->o.state, TARGET_RETRY_WAIT); /* a timeout is always retryable */
    CHECK_STR(g->o.error, "step slow timed out after 300ms");
    g = s_run(&ctx, p, 0, 1, 2);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_FAILED);
    CHECK_STR(g->o.error, "step slow timed out after 300ms");
    s_teardown(&ctx);
    plan_destroy(&p);
}

static void test_verify_and_judge(void)
{
    ctx_t ctx;
    REQUIRE(s_setup(&ctx, "verify") == 0);
    plan_t *p = s_plan(&ctx, "  steps: [{name: s, noop: true}]\n"
                             "  verify: {run: 'echo checking; echo still uses user_ds_v1 in "
                             "query.sql; exit 1'}\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    got_t *g = s_run(&ctx, p, 0, 1, 1);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_NEEDS_REVIEW);
    CHECK_STR(g->o.error, "verify failed (exit 1): checking | still uses user_ds_v1 in query.sql");
    CHECK(strstr(g->o.tail, "still uses user_ds_v1") != NULL);
    s_teardown(&ctx);
    plan_destroy(&p);

    /* judge runs after verify passes; its veto is NEEDS_REVIEW. */
    REQUIRE(s_setup(&ctx, "judge") == 0);
    p = s_plan(&ctx, "  steps: [{name: s, noop: true}]\n"
                     "  verify: {run: 'echo verified > {{workdir}}/verify.txt'}\n"
                     "  judge: {run: 'test -f verify.txt && echo not convinced && exit 2'}\n"
                     "  docs: {catalogOut: ./catalog-out}\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    g = s_run(&ctx, p, 1, 1, 1);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_NEEDS_REVIEW);
    CHECK_STR(g->o.error, "judge failed (exit 2): not convinced");
    /* No docs for a target that did not succeed. */
    char out[PATH_MAX * 2];
    snprintf(out, sizeof out, "%s/catalog-out", ctx.base);
    CHECK(!s_exists(out));
    s_teardown(&ctx);
    plan_destroy(&p);
}

static void test_template_injection(void)
{
    ctx_t ctx;
    REQUIRE(s_setup(&ctx, "inject") == 0);
    plan_t *p = s_plan(&ctx, "  steps:\n"
                             "    - {name: echo, run: \"printf '%s' "
                             "{{target.annotations.gaggle.io/evil}} > evil.txt\"}\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    REQUIRE(plan_find_target(p, "component:default/svc-b") == 1);
    got_t *g = s_run(&ctx, p, 1, 1, 1);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_SUCCEEDED);
    char *evil = s_readf("%s/work/%s/1/evil.txt", ctx.base, plan_id(p));
    CHECK_STR(evil, "$(touch PWNED1) `touch PWNED2`; touch PWNED3 ' \" x");
    free(evil);
    char path[PATH_MAX * 2];
    for (int i = 1; i <= 3; i++) {
        snprintf(path, sizeof path, "%s/work/%s/1/PWNED%d", ctx.base, plan_id(p), i);
        CHECK(!s_exists(path));
    }
    s_teardown(&ctx);
    plan_destroy(&p);
}

/* The fake coding agent: fixes the file once the verifier's complaint is in
 * its prompt, and only touches a notes file before that. */
static const char *s_agent_script = "#!/bin/sh\n"
                                    "echo agent turn reading \"$GAGGLE_PROMPT_FILE\"\n"
                                    "if grep -q VERIFY-SAYS-FIX-ME \"$GAGGLE_PROMPT_FILE\"; then\n"
                                    "  sed -i 's/user_ds_v1/user_ds_v2/g' \"$1/query.sql\"\n"
                                    "else\n"
                                    "  echo '-- looked at it' >> \"$1/notes.txt\"\n"
                                    "fi\n";

static void test_agent_loop(void)
{
    ctx_t ctx;
    char body[PATH_MAX + 1024];
    REQUIRE(s_setup(&ctx, "agent") == 0);
    REQUIRE(s_write(ctx.base, "agent.sh", s_agent_script) == 0);
    snprintf(body, sizeof body,
             "  steps:\n"
             "    - name: migrate\n"
             "      agent:\n"
             "        run: 'sh %s/agent.sh {{target.path}}'\n"
             "        prompt: 'Replace {{vars.from}} by {{vars.to}} in {{target.name}}.'\n"
             "        maxTurns: 3\n"
             "    - {name: publish, publish: {run: 'cp \"$GAGGLE_CHANGE_FILE\" published.md'}}\n"
             "  verify: {run: 'if grep -rq {{vars.from}} {{target.path}}; then "
             "echo VERIFY-SAYS-FIX-ME; exit 1; fi'}\n",
             ctx.base);
    plan_t *p = s_plan(&ctx, body);
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    got_t *g = s_run(&ctx, p, 0, 4, 1);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_SUCCEEDED);
    CHECK_EQ_INT(g->o.step, 1);
    char *sql = s_readf("%s/catalog/svc-a/query.sql%s", ctx.base, "");
    CHECK_STR(sql, "SELECT id FROM user_ds_v2;\n");
    free(sql);

    char *p1 = s_readf("%s/work/%s/0/prompt-turn-1.md", ctx.base, plan_id(p));
    char *p2 = s_readf("%s/work/%s/0/prompt-turn-2.md", ctx.base, plan_id(p));
    REQUIRE(p1 && p2);
    CHECK(strstr(p1, "Replace user_ds_v1 by user_ds_v2 in svc-a.") != NULL);
    CHECK(strstr(p1, "resource:default/user-ds-v1") && strstr(p1, "resource:default/user-ds-v2"));
    CHECK(strstr(p1, "name: svc-a") != NULL);      /* the entity, as YAML */
    CHECK(strstr(p1, "from: user_ds_v1") != NULL); /* the vars */
    CHECK(strstr(p1, "Turn 1 of 3") != NULL);
    CHECK(strstr(p1, "VERIFY-SAYS-FIX-ME") == NULL);
    CHECK(strstr(p2, "Turn 2 of 3") != NULL);
    CHECK(strstr(p2, "verify failed (exit 1)") != NULL);
    CHECK(strstr(p2, "VERIFY-SAYS-FIX-ME") != NULL);
    free(p1);
    free(p2);

    /* agent-turns.json: one record per turn. */
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/work/%s/0/agent-turns.json", ctx.base, plan_id(p));
    json_t *turns = json_load_file(path, 0, NULL);
    json_t *list = json_object_get(turns, "turns");
    REQUIRE(json_array_size(list) == 2);
    json_t *t1 = json_array_get(list, 0), *t2 = json_array_get(list, 1);
    CHECK_STR(json_string_value(json_object_get(t1, "step")), "migrate");
    CHECK_EQ_INT(json_integer_value(json_object_get(t1, "turn")), 1);
    CHECK_EQ_INT(json_integer_value(json_object_get(t1, "exit_code")), 0);
    CHECK(json_is_integer(json_object_get(t1, "duration_ms")));
    CHECK_EQ_INT(json_integer_value(json_object_get(t1, "changed_files")), 1);
    CHECK_STR(json_string_value(json_array_get(json_object_get(t1, "files"), 0)), "notes.txt");
    CHECK_STR(json_string_value(json_object_get(t1, "verdict")), "verify_failed");
    CHECK_EQ_INT(json_integer_value(json_object_get(t2, "turn")), 2);
    CHECK_STR(json_string_value(json_array_get(json_object_get(t2, "files"), 0)), "query.sql");
    CHECK_STR(json_string_value(json_object_get(t2, "verdict")), "passed");
    json_decref(turns);

    /* The passing turn verified the change: publish did not verify again. */
    char *log = s_read(g->o.log_path);
    CHECK_EQ_INT(s_count(log, "== verify"), 2);
    CHECK(log && strstr(log, "== step migrate turn 2 (attempt 1, epoch 4) ==\nagent turn") != NULL);
    free(log);
    char *md = s_readf("%s/work/%s/0/published.md", ctx.base, plan_id(p));
    REQUIRE(md);
    CHECK(strstr(md, "passed verify in turn 2 of 3") != NULL);
    CHECK(strstr(md, "verify passed after step migrate's turn 2.") != NULL);
    CHECK(strstr(md, "`resource:default/user-ds-v1` -> `resource:default/user-ds-v2`") != NULL);
    free(md);
    s_teardown(&ctx);
    plan_destroy(&p);
}

static void test_agent_gives_up(void)
{
    ctx_t ctx;
    REQUIRE(s_setup(&ctx, "agent-idle") == 0);
    plan_t *p = s_plan(&ctx, "  steps:\n"
                             "    - {name: migrate, agent: {run: 'true', prompt: 'Fix it.', "
                             "maxTurns: 3}}\n"
                             "  verify: {run: 'false'}\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    got_t *g = s_run(&ctx, p, 0, 1, 1);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_NEEDS_REVIEW);
    CHECK_STR(g->o.error, "agent made no change in turn 1");
    char *turns = s_readf("%s/work/%s/0/agent-turns.json", ctx.base, plan_id(p));
    json_t *j = turns ? json_loads(turns, 0, NULL) : NULL;
    json_t *list = json_object_get(j, "turns");
    CHECK_EQ_INT(json_array_size(list), 1);
    CHECK_STR(json_string_value(json_object_get(json_array_get(list, 0), "verdict")), "no_change");
    CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(list, 0), "changed_files")), 0);
    json_decref(j);
    free(turns);
    char *log = s_read(g->o.log_path);
    CHECK_EQ_INT(s_count(log, "== verify"), 0);
    free(log);
    s_teardown(&ctx);
    plan_destroy(&p);

    /* An agent that keeps changing things but never passes: maxTurns. */
    REQUIRE(s_setup(&ctx, "agent-stuck") == 0);
    p = s_plan(&ctx, "  steps:\n"
                     "    - {name: migrate, agent: {run: 'date +%N >> {{target.path}}/n.txt', "
                     "prompt: 'Fix it.', maxTurns: 2}}\n"
                     "  verify: {run: 'echo nope; exit 1'}\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    g = s_run(&ctx, p, 0, 1, 1);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_NEEDS_REVIEW);
    CHECK_STR(g->o.error, "agent did not pass verify after 2 turns: nope");
    turns = s_readf("%s/work/%s/0/agent-turns.json", ctx.base, plan_id(p));
    j = turns ? json_loads(turns, 0, NULL) : NULL;
    CHECK_EQ_INT(json_array_size(json_object_get(j, "turns")), 2);
    json_decref(j);
    free(turns);
    s_teardown(&ctx);
    plan_destroy(&p);

    /* An agent command that fails is a failing step. */
    REQUIRE(s_setup(&ctx, "agent-crash") == 0);
    p = s_plan(&ctx, "  steps:\n"
                     "    - {name: migrate, agent: {run: 'exit 9', prompt: 'Fix it.'}}\n"
                     "  verify: {run: 'true'}\n"
                     "  retry: {maxAttempts: 1}\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    g = s_run(&ctx, p, 0, 1, 1);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_FAILED);
    CHECK_STR(g->o.error, "step migrate exited with 9");
    s_teardown(&ctx);
    plan_destroy(&p);
}

/* Lines of a file that start with GAGGLE_, in order. */
static void s_check_env(const char *path, const char *const *want)
{
    char *text = s_read(path);
    REQUIRE(text);
    size_t n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "GAGGLE_", 7) != 0)
            continue;
        if (!want[n]) {
            fprintf(stderr, "unexpected %s\n", line);
            CHECK(false);
            break;
        }
        CHECK_STR(line, want[n]);
        n++;
    }
    CHECK(want[n] == NULL);
    free(text);
}

static void test_publish_and_env(void)
{
    ctx_t ctx;
    REQUIRE(s_setup(&ctx, "publish") == 0);
    setenv("GAGGLE_SECRET_OF_THE_AGENT", "x", 1); /* not passed on */
    plan_t *p = s_plan(&ctx, "  steps:\n"
                             "    - {name: rewrite, rewrite: {paths: ['**/*.sql'],\n"
                             "       replace: {'{{vars.from}}': '{{vars.to}}'}}}\n"
                             "    - {name: env, run: 'env | sort > env.txt'}\n"
                             "    - {name: publish, publish: {run: 'env | sort > env-publish.txt; "
                             "cp \"$GAGGLE_CHANGE_FILE\" published.md'}}\n"
                             "  verify: {run: '! grep -r {{vars.from}} {{target.path}}'}\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    got_t *g = s_run(&ctx, p, 0, 9, 2);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_SUCCEEDED);

    char wd[PATH_MAX * 2], path[PATH_MAX * 3 + 64];
    snprintf(wd, sizeof wd, "%s/work/%s/0", ctx.base, plan_id(p));
    char e_plan[128], e_wd[PATH_MAX * 2 + 32], e_change[PATH_MAX * 2 + 64];
    snprintf(e_plan, sizeof e_plan, "GAGGLE_PLAN=%s", plan_id(p));
    snprintf(e_wd, sizeof e_wd, "GAGGLE_WORKDIR=%s", wd);
    snprintf(e_change, sizeof e_change, "GAGGLE_CHANGE_FILE=%s/change.md", wd);
    const char *want[] = {"GAGGLE_ATTEMPT=2",
                          "GAGGLE_EPOCH=9",
                          e_plan,
                          "GAGGLE_TARGET=component:default/svc-a",
                          e_wd,
                          NULL};
    snprintf(path, sizeof path, "%s/env.txt", wd);
    s_check_env(path, want);
    const char *want_pub[] = {"GAGGLE_ATTEMPT=2",
                              e_change,
                              "GAGGLE_EPOCH=9",
                              e_plan,
                              "GAGGLE_TARGET=component:default/svc-a",
                              e_wd,
                              NULL};
    snprintf(path, sizeof path, "%s/env-publish.txt", wd);
    s_check_env(path, want_pub);
    unsetenv("GAGGLE_SECRET_OF_THE_AGENT");

    /* The change description: plan, dataset, target, steps, verification. */
    snprintf(path, sizeof path, "%s/published.md", wd);
    char *md = s_read(path);
    REQUIRE(md);
    CHECK(strstr(md, "# Migrate component:default/svc-a from resource:default/user-ds-v1 to "
                     "resource:default/user-ds-v2\n") != NULL);
    CHECK(strstr(md, "- Plan: `user-ds-v2`") != NULL);
    CHECK(strstr(md, plan_id(p)) != NULL);
    CHECK(strstr(md, "Move readers to v2") != NULL);
    CHECK(
        strstr(md, "1. `rewrite` (rewrite): changed 1 file (1 replacement)\n   - `query.sql`\n") !=
        NULL);
    CHECK(strstr(md, "2. `env` (run): ran, exit 0 in") != NULL);
    CHECK(strstr(md, "## Verification\n\nverify passed before publishing.\n") != NULL);
    free(md);
    /* verify ran once, before publish, and not again after it. */
    char *log = s_read(g->o.log_path);
    const char *v = log ? strstr(log, "== verify (attempt 2, epoch 9) ==") : NULL;
    const char *pub = log ? strstr(log, "== step publish (attempt 2, epoch 9) ==") : NULL;
    CHECK(v && pub && v < pub);
    CHECK_EQ_INT(s_count(log, "== verify"), 1);
    free(log);
    s_teardown(&ctx);
    plan_destroy(&p);

    /* Nothing is published when verify fails first. */
    REQUIRE(s_setup(&ctx, "publish-unverified") == 0);
    p = s_plan(&ctx, "  steps:\n"
                     "    - {name: publish, publish: {run: 'touch published'}}\n"
                     "  verify: {run: 'echo broken; exit 1'}\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    g = s_run(&ctx, p, 0, 1, 1);
    REQUIRE(g);
    CHECK_EQ_INT(g->o.state, TARGET_NEEDS_REVIEW);
    CHECK_STR(g->o.error, "verify failed (exit 1): broken");
    snprintf(path, sizeof path, "%s/work/%s/0/published", ctx.base, plan_id(p));
    CHECK(!s_exists(path));
    s_teardown(&ctx);
    plan_destroy(&p);
}

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

typedef struct {
    char path[PATH_MAX * 2];
    int pid;
} pidfile_t;

static bool s_pidfile_ready(void *arg)
{
    pidfile_t *pf = arg;
    char *text = s_read(pf->path);
    pf->pid = text ? atoi(text) : 0;
    free(text);
    return pf->pid > 0;
}

static bool s_pidfile_gone(void *arg)
{
    return s_pid_gone(((pidfile_t *) arg)->pid);
}

static bool s_exec_idle(void *arg)
{
    return executor_running(((ctx_t *) arg)->exec) == 0;
}

static void test_abort(void)
{
    ctx_t ctx;
    REQUIRE(s_setup(&ctx, "abort") == 0);
    plan_t *p = s_plan(&ctx, "  steps:\n"
                             "    - {name: nap, run: 'echo $$ > pid.tmp && mv pid.tmp pid && "
                             "exec sleep 30'}\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    uint64_t id = 0, id2 = 0;
    REQUIRE(runner_start(ctx.runner, p, 0, 1, 1, s_on_outcome, &ctx, &id) == 0);
    CHECK(id > 0);
    CHECK_EQ_INT(runner_active(ctx.runner), 1);
    /* The only worker is busy. */
    CHECK_EQ_INT(runner_start(ctx.runner, p, 1, 1, 1, s_on_outcome, &ctx, &id2), GG_EBUSY);
    pidfile_t pf;
    snprintf(pf.path, sizeof pf.path, "%s/work/%s/0/pid", ctx.base, plan_id(p));
    REQUIRE(s_loop_until(&ctx, s_pidfile_ready, &pf, 10000));
    CHECK(!s_pid_gone(pf.pid));
    CHECK_EQ_INT(runner_abort(ctx.runner, id), 0);
    CHECK_EQ_INT(runner_abort(ctx.runner, id), GG_ENOTFOUND);
    CHECK_EQ_INT(runner_active(ctx.runner), 0);
    CHECK(s_loop_until(&ctx, s_pidfile_gone, &pf, 10000));
    CHECK(s_loop_until(&ctx, s_exec_idle, &ctx, 10000));
    /* No callback follows, from the runner or the executor. */
    s_loop_until(&ctx, NULL, NULL, 300);
    CHECK_EQ_INT(ctx.done, 0);
    CHECK(!ctx.stray_callback);
    /* The worker is free again. */
    CHECK_EQ_INT(runner_start(ctx.runner, p, 1, 1, 1, s_on_outcome, &ctx, &id2), 0);
    CHECK_EQ_INT(runner_abort(ctx.runner, id2), 0);
    CHECK(s_loop_until(&ctx, s_exec_idle, &ctx, 10000));
    CHECK_EQ_INT(ctx.done, 0);
    s_teardown(&ctx);
    plan_destroy(&p);
}

/* runner_destroy with a run in flight: its process dies, nothing is called. */
static void test_destroy_in_flight(void)
{
    ctx_t ctx;
    REQUIRE(s_setup(&ctx, "destroy") == 0);
    plan_t *p = s_plan(&ctx, "  steps:\n"
                             "    - {name: nap, run: 'echo $$ > pid.tmp && mv pid.tmp pid && "
                             "exec sleep 30'}\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 2) == 0);
    uint64_t id = 0;
    REQUIRE(runner_start(ctx.runner, p, 0, 1, 1, s_on_outcome, &ctx, &id) == 0);
    pidfile_t pf;
    snprintf(pf.path, sizeof pf.path, "%s/work/%s/0/pid", ctx.base, plan_id(p));
    REQUIRE(s_loop_until(&ctx, s_pidfile_ready, &pf, 10000));
    runner_destroy(&ctx.runner);
    CHECK(ctx.runner == NULL);
    CHECK(s_loop_until(&ctx, s_exec_idle, &ctx, 10000));
    CHECK(s_pid_gone(pf.pid));
    CHECK_EQ_INT(ctx.done, 0);
    CHECK(!ctx.stray_callback);
    s_teardown(&ctx);
    plan_destroy(&p);
}

static void test_sandbox(void)
{
    ctx_t ctx;
    REQUIRE(s_setup(&ctx, "sandbox") == 0);
    plan_t *p = s_plan(&ctx, "  steps:\n"
                             "    - {name: boxed, run: 'readlink /proc/self/ns/net > boxed.txt; "
                             "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d '' '' > ifaces.txt',\n"
                             "       sandbox: {network: none}}\n"
                             "    - {name: open, run: 'readlink /proc/self/ns/net > open.txt'}\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    got_t *g = s_run(&ctx, p, 0, 1, 1);
    REQUIRE(g);
    if (geteuid() != 0) {
        CHECK_EQ_INT(g->o.state, TARGET_FAILED);
        CHECK(strstr(g->o.error, "needs root") != NULL);
    } else {
        char self[128] = {0};
        CHECK(readlink("/proc/self/ns/net", self, sizeof self - 1) > 0);
        strcat(self, "\n");
        char *boxed = s_readf("%s/work/%s/0/boxed.txt", ctx.base, plan_id(p));
        char *open_ns = s_readf("%s/work/%s/0/open.txt", ctx.base, plan_id(p));
        if (g->o.state == TARGET_SUCCEEDED) {
            CHECK_STR(open_ns, self);
            CHECK(boxed && strncmp(boxed, "net:[", 5) == 0 && strcmp(boxed, self) != 0);
            char *ifaces = s_readf("%s/work/%s/0/ifaces.txt", ctx.base, plan_id(p));
            CHECK_STR(ifaces, "lo\n");
            free(ifaces);
        } else {
            /* Root without CAP_SYS_ADMIN (a restricted container): the
             * child reports the refusal; the step fails. */
            fprintf(stderr, "  (no network namespaces here: %s)\n", g->o.error);
            CHECK(strstr(g->tail, "cannot create a network namespace") != NULL);
        }
        free(boxed);
        free(open_ns);
    }
    s_teardown(&ctx);
    plan_destroy(&p);
}

/* executor_start refuses new_netns for a non-root caller. */
static void test_sandbox_needs_root(void)
{
    if (geteuid() != 0)
        return; /* test_sandbox covered the refusal */
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0)
            _exit(2);
        zloop_t *loop = zloop_new();
        executor_config_t ec;
        memset(&ec, 0, sizeof ec);
        ec.max_workers = 1;
        ec.on_done = s_stray_done;
        ec.on_done_arg = NULL;
        executor_t *e = executor_new(loop, &ec);
        executor_job_t job = {.command = "true", .new_netns = true};
        uint64_t id;
        int rc = e ? executor_start(e, &job, &id) : -100;
        executor_destroy(&e);
        zloop_destroy(&loop);
        _exit(rc == GG_EPERM ? 0 : 1);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_bad_args(void)
{
    ctx_t ctx;
    REQUIRE(s_setup(&ctx, "args") == 0);
    plan_t *p = s_plan(&ctx, "  steps: [{name: s, noop: true}]\n");
    REQUIRE(p);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    uint64_t id = 5;
    CHECK_EQ_INT(runner_start(ctx.runner, p, 2, 1, 1, s_on_outcome, &ctx, &id), GG_EINVAL);
    CHECK_EQ_INT(id, 0);
    CHECK_EQ_INT(runner_start(ctx.runner, p, 0, 1, 0, s_on_outcome, &ctx, &id), GG_EINVAL);
    CHECK_EQ_INT(runner_start(ctx.runner, p, 0, 1, 1, NULL, &ctx, &id), GG_EINVAL);
    CHECK_EQ_INT(runner_abort(ctx.runner, 12345), GG_ENOTFOUND);
    /* A pipeline without processes still reports from the loop, not from
     * runner_start. */
    CHECK_EQ_INT(runner_start(ctx.runner, p, 0, 1, 1, s_on_outcome, &ctx, &id), 0);
    CHECK_EQ_INT(ctx.done, 0);
    want_t w = {&ctx, 1};
    CHECK(s_loop_until(&ctx, s_have_outcomes, &w, 5000));
    CHECK_EQ_INT(ctx.got[0].o.state, TARGET_SUCCEEDED);
    /* Aborting a finished run before its callback: no callback. */
    CHECK_EQ_INT(runner_start(ctx.runner, p, 1, 1, 1, s_on_outcome, &ctx, &id), 0);
    CHECK_EQ_INT(runner_abort(ctx.runner, id), 0);
    s_loop_until(&ctx, NULL, NULL, 100);
    CHECK_EQ_INT(ctx.done, 1);
    s_teardown(&ctx);
    plan_destroy(&p);

    runner_config_t rc = {.work_root = "relative", .log_root = "/tmp"};
    zloop_t *loop = zloop_new();
    CHECK(runner_new(loop, NULL, &rc) == NULL);
    zloop_destroy(&loop);
    runner_destroy(NULL);
}

/* ------------------------------------------------------------- docs_out */

static void test_yaml_round_trip(void)
{
    static const char *const text =
        "{\"a\": \"true\", \"b\": \"1.10\", \"c\": \"\", \"d\": \"null\", "
        "\"e\": \"multi\\nline\\n\", \"f\": 3, \"g\": 1.5, \"h\": true, \"i\": null, "
        "\"j\": \"- x\", \"k\": \"a: b\", \"l\": \"#c\", \"m\": [], \"n\": {}, "
        "\"o\": \"~\", \"p\": \"yes\", \"q\": \"0x1F\", \"r\": \".inf\", "
        "\"s\": \"text with 'quotes' and \\\"dq\\\"\", \"t\": \"\u00fcn\u00efcode\", "
        "\"u\": \"  padded  \", \"v\": [\"x\", {\"nested\": [1, \"2\"]}], "
        "\"y\": \"[1, 2]\", \"z\": \"No\", \"w\": \"trailing\\n\\n\", \"big\": 1e300, "
        "\"neg\": -7, \"2024-01-01\": \"2024-01-01\", \"tab\": \"a\\tb\", "
        "\"<<\": \"merge\", \"amp\": \"&anchor\", \"star\": \"*alias\", "
        "\"colon\": \"abc:\", \"hash\": \"a #b\", \"q2\": \"'\", \"bs\": \"back\\\\slash\", "
        "\"flow\": \"{a: 1}\", \"pct\": \"%x\", \"at\": \"@x\", \"bang\": \"!x\", "
        "\"ctl\": \"bell\\u0007\", \"Yes\": \"OFF\", \"e1\": \"1e3\", \"dot\": \".5\"}";
    json_error_t jerr;
    json_t *v = json_loads(text, 0, &jerr);
    if (!v)
        fprintf(stderr, "json: %s\n", jerr.text);
    REQUIRE(v);
    char *yaml = NULL;
    size_t len = 0;
    CHECK_EQ_INT(docs_out_yaml(v, &yaml, &len), 0);
    REQUIRE(yaml);
    CHECK_EQ_INT(strlen(yaml), len);
    yamljson_t *y = NULL;
    char err[YAMLJSON_ERR_MAX];
    CHECK_EQ_INT(yamljson_parse(yaml, len, "emitted", NULL, &y, err, sizeof err), 0);
    REQUIRE(y && yamljson_count(y) == 1);
    if (!json_equal(yamljson_doc(y, 0), v)) {
        fprintf(stderr, "YAML does not read back:\n%s\n", yaml);
        CHECK(false);
    }
    CHECK(strstr(yaml, "multi\n") != NULL); /* a literal block, not an escape */
    yamljson_destroy(&y);
    free(yaml);
    json_decref(v);

    /* Bounded depth. */
    json_t *deep = json_array();
    json_t *cur = deep;
    for (int i = 0; i < DOCS_OUT_DEPTH_MAX + 5; i++) {
        json_t *next = json_array();
        json_array_append_new(cur, next);
        cur = next;
    }
    CHECK_EQ_INT(docs_out_yaml(deep, &yaml, NULL), GG_ETOOBIG);
    CHECK(yaml == NULL);
    json_decref(deep);
}

static json_t *s_entity(const char *ns, const char *deps_json)
{
    json_t *deps = json_loads(deps_json, 0, NULL);
    json_t *e = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:o}}", "apiVersion",
                          "backstage.io/v1alpha1", "kind", "Component", "metadata", "name", "svc",
                          "namespace", ns, "spec", "type", "service", "dependsOn", deps);
    return e;
}

static void test_move_dependency(void)
{
    const char *from = "resource:default/user-ds-v1", *to = "resource:default/user-ds-v2";
    json_t *e = s_entity("default", "[\"Resource:Default/User-DS-V1\", \"component:svc-b\", "
                                    "\"resource:other/user-ds-v1\", \"user-ds-v1\", 5]");
    json_t *out = NULL;
    size_t moved = 0;
    CHECK_EQ_INT(docs_out_move_dependency(e, from, to, &out, &moved), 0);
    CHECK_EQ_INT(moved, 1);
    json_t *want = json_loads("[\"resource:default/user-ds-v2\", \"component:svc-b\", "
                              "\"resource:other/user-ds-v1\", \"user-ds-v1\", 5]",
                              0, NULL);
    CHECK(json_equal(json_object_get(json_object_get(out, "spec"), "dependsOn"), want));
    json_decref(want);
    /* The input is untouched. */
    CHECK_STR(json_string_value(
                  json_array_get(json_object_get(json_object_get(e, "spec"), "dependsOn"), 0)),
              "Resource:Default/User-DS-V1");
    json_decref(out);
    json_decref(e);

    /* A namespace-less ref takes the entity's namespace. */
    e = s_entity("other", "[\"resource:user-ds-v1\"]");
    CHECK_EQ_INT(docs_out_move_dependency(e, from, to, &out, &moved), 0);
    CHECK_EQ_INT(moved, 0);
    json_decref(out);
    json_decref(e);
    e = s_entity("default", "[\"resource:user-ds-v1\", \"resource:user-ds-v2\"]");
    CHECK_EQ_INT(docs_out_move_dependency(e, from, to, &out, &moved), 0);
    CHECK_EQ_INT(moved, 1); /* to already listed: from dropped, no duplicate */
    want = json_loads("[\"resource:user-ds-v2\"]", 0, NULL);
    CHECK(json_equal(json_object_get(json_object_get(out, "spec"), "dependsOn"), want));
    json_decref(want);
    json_decref(out);

    char path[PATH_MAX];
    CHECK_EQ_INT(docs_out_entity_path("/out", e, path, sizeof path), 0);
    CHECK_STR(path, "/out/default/component/svc.yaml");
    json_object_set_new(json_object_get(e, "metadata"), "name", json_string("../../etc"));
    CHECK_EQ_INT(docs_out_entity_path("/out", e, path, sizeof path), GG_EINVAL);
    json_object_set_new(json_object_get(e, "metadata"), "name", json_string("ok"));
    json_object_set_new(json_object_get(e, "metadata"), "namespace", json_string("a/b"));
    CHECK_EQ_INT(docs_out_entity_path("/out", e, path, sizeof path), GG_EINVAL);
    CHECK_EQ_INT(docs_out_move_dependency(e, "no-kind", to, &out, NULL), GG_EINVAL);
    json_decref(e);
}

static void test_change_md(void)
{
    json_t *steps = json_pack("[{s:s, s:s, s:s, s:[s, s]}, {s:s, s:s, s:s}]", "name", "rw", "kind",
                              "rewrite", "summary", "changed 2 files", "files", "a.sql",
                              "we`ird.sql", "name", "p", "kind", "publish", "summary", "published");
    docs_change_t c = {.plan_name = "n",
                       .plan_id = "abc",
                       .dataset_from = "resource:default/a",
                       .dataset_to = "resource:default/b",
                       .target_ref = "component:default/x",
                       .target_path = "/srv/x",
                       .attempt = 2,
                       .epoch = 3,
                       .steps = steps,
                       .verification = "verify passed."};
    char *md = NULL;
    CHECK_EQ_INT(docs_out_change_md(&c, &md), 0);
    REQUIRE(md);
    CHECK(strstr(md, "# Migrate component:default/x from resource:default/a to "
                     "resource:default/b\n") != NULL);
    CHECK(strstr(md, "- Attempt 2, epoch 3\n") != NULL);
    CHECK(strstr(md, "1. `rw` (rewrite): changed 2 files\n   - `a.sql`\n   - ``we`ird.sql``\n") !=
          NULL);
    CHECK(strstr(md, "2. `p` (publish): published\n") != NULL);
    CHECK(strstr(md, "## Verification\n\nverify passed.\n") != NULL);
    free(md);
    json_decref(steps);
    char fence[16];
    docs_out_fence("a ```` b", fence, sizeof fence);
    CHECK_STR(fence, "`````");
    docs_out_fence("plain", fence, sizeof fence);
    CHECK_STR(fence, "```");
}

static void s_rm_rf(const char *path)
{
    char cmd[PATH_MAX + 32];
    if (strncmp(path, "/tmp/gg-runner-", 15) != 0)
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", path);
}

/* ---------------------------------------------------------------- notify */

static bool s_notify_idle(void *arg)
{
    notify_t *n = arg;
    const notify_stats_t *st = notify_stats(n);
    return notify_pending(n) == 0 && st->ok + st->failed + st->dropped == st->queued;
}

/* The notify hook: only listed events run it, once each, with the GAGGLE_*
 * variables and the JSON description on stdin; a failing hook is counted; a
 * queue beyond the workers waits, and one beyond NOTIFY_QUEUE_MAX drops the
 * oldest. */
static void test_notify_hook(void)
{
    ctx_t ctx;
    REQUIRE(s_setup(&ctx, "notify") == 0);
    char out[PATH_MAX + 16];
    snprintf(out, sizeof out, "%s/out", ctx.base);
    REQUIRE(s_mkdirs(out) == 0);
    char body[PATH_MAX * 2];
    snprintf(body, sizeof body,
             "  steps: [{name: s, noop: {}}]\n"
             "  notify:\n"
             "    run: \"test $GAGGLE_EVENT != cancelled || exit 9; "
             "{ echo \\\"$GAGGLE_EVENT|$GAGGLE_PLAN|$GAGGLE_PLAN_NAME|$GAGGLE_TARGET\\\"; "
             "cat; } > %s/$GAGGLE_EVENT-{{target.name}}.out\"\n"
             "    on: [failed, completed, cancelled]\n",
             out);
    plan_t *plan = s_plan(&ctx, body);
    REQUIRE(plan);
    REQUIRE(s_start_loop(&ctx, 1) == 0);
    notify_t *n = notify_new(ctx.exec, "node-x");
    REQUIRE(n);
    CHECK(notify_wants(plan, "failed"));
    CHECK(notify_wants(plan, "completed"));
    CHECK(!notify_wants(plan, "succeeded"));

    json_t *pinfo = json_pack("{s:s, s:s}", "id", plan_id(plan), "name", plan_name(plan));
    json_t *tinfo = json_pack("{s:s, s:s, s:i, s:i, s:s}", "ref", plan_target_ref(plan, 0), "state",
                              "failed", "attempt", 3, "epoch", 2, "error", "boom");
    CHECK(notify_event(n, plan, "succeeded", 0, pinfo, tinfo) == 0); /* not listed */
    CHECK(notify_event(n, plan, "failed", 0, pinfo, tinfo) == 0);
    CHECK(notify_event(n, plan, "completed", -1, pinfo, NULL) == 0);
    /* One worker: the second waits in the queue. */
    CHECK(notify_pending(n) == 1);
    CHECK(s_loop_until(&ctx, s_notify_idle, n, 20000));
    const notify_stats_t *st = notify_stats(n);
    CHECK(st->queued == 2 && st->ok == 2 && st->failed == 0 && st->skipped == 1);

    const plan_target_t *t0 = plan_target(plan, 0);
    REQUIRE(t0);
    char *failed = s_readf("%s/failed-%s.out", out, t0->name);
    REQUIRE(failed);
    char want[512];
    snprintf(want, sizeof want, "failed|%s|user-ds-v2|%s\n", plan_id(plan), t0->ref);
    CHECK(!strncmp(failed, want, strlen(want)));
    json_t *doc = json_loads(failed + strlen(want), 0, NULL);
    CHECK(doc && !strcmp(json_string_value(json_object_get(doc, "event")), "failed"));
    CHECK(doc && !strcmp(json_string_value(json_object_get(doc, "node")), "node-x"));
    json_t *dt = json_object_get(doc, "target");
    CHECK(dt && json_integer_value(json_object_get(dt, "epoch")) == 2);
    CHECK(dt && !strcmp(json_string_value(json_object_get(dt, "error")), "boom"));
    json_decref(doc);
    free(failed);
    char *completed = s_readf("%s/completed-%s.out", out, "");
    REQUIRE(completed);
    snprintf(want, sizeof want, "completed|%s|user-ds-v2|\n", plan_id(plan));
    CHECK(!strncmp(completed, want, strlen(want)));
    doc = json_loads(completed + strlen(want), 0, NULL);
    CHECK(doc && json_object_get(doc, "target") == NULL);
    CHECK(doc && json_object_get(doc, "at") && json_object_get(doc, "plan"));
    json_decref(doc);
    free(completed);
    char *none = s_readf("%s/succeeded-%s.out", out, t0->name);
    CHECK(none == NULL);
    free(none);

    /* A failing hook is counted, not retried. */
    CHECK(notify_event(n, plan, "cancelled", -1, pinfo, NULL) == 0);
    CHECK(s_loop_until(&ctx, s_notify_idle, n, 20000));
    CHECK(st->queued == 3 && st->ok == 2 && st->failed == 1);

    /* A full queue drops the oldest. */
    for (int i = 0; i < NOTIFY_QUEUE_MAX + 3; i++)
        CHECK(notify_event(n, plan, "completed", -1, pinfo, NULL) == 0);
    CHECK(notify_pending(n) <= NOTIFY_QUEUE_MAX);
    CHECK(notify_stats(n)->dropped >= 2);
    CHECK(s_loop_until(&ctx, s_notify_idle, n, 60000));
    CHECK(st->ok + st->failed + st->dropped == st->queued && st->failed == 1);
    CHECK(st->ok == st->queued - st->dropped - 1);

    json_decref(pinfo);
    json_decref(tinfo);
    notify_destroy(&n);
    CHECK(n == NULL);
    plan_destroy(&plan);
    s_teardown(&ctx);
}

int main(void)
{
    zsys_init();
    zsys_handler_set(NULL);
    snprintf(s_root, sizeof s_root, "/tmp/gg-runner-XXXXXX");
    if (!mkdtemp(s_root)) {
        perror("mkdtemp");
        return 1;
    }
    GG_RUN(test_yaml_round_trip);
    GG_RUN(test_move_dependency);
    GG_RUN(test_change_md);
    GG_RUN(test_backoff);
    GG_RUN(test_success_path);
    GG_RUN(test_builtin_only_makes_no_files);
    GG_RUN(test_precheck);
    GG_RUN(test_retry_then_success);
    GG_RUN(test_failures);
    GG_RUN(test_timeout);
    GG_RUN(test_verify_and_judge);
    GG_RUN(test_template_injection);
    GG_RUN(test_agent_loop);
    GG_RUN(test_agent_gives_up);
    GG_RUN(test_publish_and_env);
    GG_RUN(test_abort);
    GG_RUN(test_destroy_in_flight);
    GG_RUN(test_sandbox);
    GG_RUN(test_sandbox_needs_root);
    GG_RUN(test_bad_args);
    GG_RUN(test_notify_hook);
    if (gg_tests_failed == 0 && !getenv("GG_TEST_KEEP"))
        s_rm_rf(s_root);
    else
        fprintf(stderr, "files kept in %s\n", s_root);
    GG_DONE();
}
