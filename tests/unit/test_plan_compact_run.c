/* test_plan_compact_run.c: running the targets of a compact plan (one held
 * as an index, its targets read back from the stored document): a run reads
 * its target back only when it uses the target's fields (a run step, a hook,
 * docs), so a plan of noop steps costs no read per target, and a run that
 * does need its target and cannot read it is refused at start. */
#include "executor.h"
#include "gg_error.h"
#include "gg_test.h"
#include "plan.h"
#include "runner.h"

#include <czmq.h>
#include <errno.h>
#include <limits.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char s_dir[PATH_MAX];

static int s_write(const char *rel, const char *text)
{
    return gg_test_write_file(s_dir, rel, text);
}

/* The document as a reader serves it: counts calls; `broken` serves nothing. */
typedef struct {
    const char *bytes;
    size_t len;
    size_t calls;
    bool broken;
} s_doc_t;

static size_t s_read(void *arg, const uint8_t id[32], uint64_t offset, uint8_t *buf, size_t len)
{
    (void) id;
    s_doc_t *d = arg;
    d->calls++;
    if (d->broken || offset >= d->len)
        return 0;
    size_t n = d->len - offset < len ? (size_t) (d->len - offset) : len;
    memcpy(buf, d->bytes + offset, n);
    return n;
}

/* A resolved plan with the given steps over two components, and its compact
 * twin reading the canonical bytes through doc. */
static int s_plans(const char *name, const char *steps, plan_t **whole, plan_t **compact,
                   s_doc_t *doc)
{
    char rel[PATH_MAX], text[2048], path[2 * PATH_MAX];
    snprintf(rel, sizeof rel, "%s/catalog/catalog-info.yaml", name);
    if (s_write(rel,
                "apiVersion: backstage.io/v1alpha1\nkind: Resource\n"
                "metadata: {name: ds-v1}\nspec: {type: database, owner: data}\n---\n"
                "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
                "metadata: {name: svc-a}\n"
                "spec: {type: service, lifecycle: x, owner: t, dependsOn: [resource:ds-v1]}\n"
                "---\napiVersion: backstage.io/v1alpha1\nkind: Component\n"
                "metadata: {name: svc-b}\n"
                "spec: {type: service, lifecycle: x, owner: t, dependsOn: [resource:ds-v1]}\n") !=
        0)
        return -1;
    snprintf(text, sizeof text,
             "apiVersion: gaggle/v1\nkind: MigrationPlan\nmetadata: {name: %s}\n"
             "spec:\n  catalog: ./catalog\n  dataset: {from: ds-v1, to: ds-v2}\n  steps: %s\n",
             name, steps);
    snprintf(rel, sizeof rel, "%s/plan.yaml", name);
    if (s_write(rel, text) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/%s", s_dir, rel);
    plan_opts_t opts = {0};
    catalog_t *cat = NULL;
    int rc = plan_load_file(path, NULL, &opts, whole, NULL);
    if (rc == 0)
        rc = plan_load_catalog(*whole, &cat, NULL);
    if (rc == 0)
        rc = plan_resolve(*whole, cat, NULL);
    catalog_destroy(&cat);
    if (rc == 0)
        rc = plan_canonical(*whole, &doc->bytes, &doc->len);
    if (rc == 0)
        rc = plan_from_canonical(doc->bytes, doc->len, 0, doc->len, NULL, s_read, doc, compact,
                                 NULL);
    return rc;
}

typedef struct {
    zloop_t *loop;
    executor_t *exec;
    runner_t *runner;
    int done;
    runner_outcome_t last;
    char last_log[PATH_MAX]; /* the outcome's strings live during the callback only */
} s_ctx_t;

static void s_on_outcome(void *arg, uint64_t run_id, const runner_outcome_t *o)
{
    (void) run_id;
    s_ctx_t *c = arg;
    c->done++;
    c->last = *o;
    snprintf(c->last_log, sizeof c->last_log, "%s", o->log_path);
}

static int s_stray_done(void *arg, uint64_t job_id, const executor_result_t *r)
{
    (void) arg;
    (void) job_id;
    (void) r;
    return 0; /* the runner's jobs carry their own callbacks */
}

static int s_stop_when_done(zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    return ((s_ctx_t *) arg)->done > 0 ? -1 : 0;
}

static int s_deadline(zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    (void) arg;
    return -1;
}

/* Runs target index of plan to its end (10 s at most); 0 when it ended. */
static int s_run_one(s_ctx_t *c, const plan_t *plan, uint32_t index)
{
    uint64_t id = 0;
    c->done = 0;
    int rc = runner_start(c->runner, plan, index, 1, 1, s_on_outcome, c, &id);
    if (rc != 0)
        return rc;
    int t1 = zloop_timer(c->loop, 5, 0, s_stop_when_done, c);
    int t2 = zloop_timer(c->loop, 10000, 1, s_deadline, c);
    zloop_start(c->loop);
    zloop_timer_end(c->loop, t1);
    zloop_timer_end(c->loop, t2);
    return c->done > 0 ? 0 : GG_ETIMEOUT;
}

static void test_noop_reads_nothing(void)
{
    char base[PATH_MAX + 16];
    snprintf(base, sizeof base, "%s/noop", s_dir);
    s_ctx_t c = {0};
    plan_t *whole = NULL, *compact = NULL;
    s_doc_t doc = {0};
    REQUIRE(s_plans("noop", "[{name: a, noop: {}}, {name: b, noop: {}}]", &whole, &compact, &doc) ==
            0);
    REQUIRE(plan_is_compact(compact) && plan_target_count(compact) == 2);
    c.loop = zloop_new();
    REQUIRE(c.loop);
    executor_config_t ec = {.max_workers = 2, .kill_grace_ms = 500, .on_done = s_stray_done};
    c.exec = executor_new(c.loop, &ec);
    REQUIRE(c.exec);
    char work[PATH_MAX + 32], logs[PATH_MAX + 32];
    snprintf(work, sizeof work, "%s/work", base);
    snprintf(logs, sizeof logs, "%s/logs", base);
    runner_config_t rc = {.work_root = work, .log_root = logs, .seed = 1};
    c.runner = runner_new(c.loop, c.exec, &rc);
    REQUIRE(c.runner);

    doc.calls = 0;
    CHECK_EQ_INT(s_run_one(&c, compact, 1), 0);
    CHECK_EQ_INT(c.last.state, TARGET_SUCCEEDED);
    CHECK_EQ_INT(doc.calls, 0);
    /* Even a document that can no longer be read does not matter to it. */
    doc.broken = true;
    CHECK_EQ_INT(s_run_one(&c, compact, 0), 0);
    CHECK_EQ_INT(c.last.state, TARGET_SUCCEEDED);
    doc.broken = false;

    /* A run step renders the target's fields: the target is read back. */
    plan_t *whole2 = NULL, *compact2 = NULL;
    s_doc_t doc2 = {0};
    REQUIRE(s_plans("run", "[{name: say, run: 'echo {{target.name}}'}]", &whole2, &compact2,
                    &doc2) == 0);
    CHECK_EQ_INT(s_run_one(&c, compact2, 1), 0);
    CHECK_EQ_INT(c.last.state, TARGET_SUCCEEDED);
    char line[256] = "";
    FILE *log = fopen(c.last_log, "r");
    bool said = false;
    while (log && fgets(line, sizeof line, log))
        said = said || strcmp(line, "svc-b\n") == 0;
    if (log)
        fclose(log);
    CHECK(said);
    CHECK(doc2.calls > 0);
    /* ... and one that cannot be read back is refused at start. */
    doc2.broken = true;
    uint64_t id = 0;
    CHECK_EQ_INT(runner_start(c.runner, compact2, 0, 1, 1, s_on_outcome, &c, &id), GG_EIO);

    runner_destroy(&c.runner);
    executor_destroy(&c.exec);
    zloop_destroy(&c.loop);
    plan_destroy(&compact2);
    plan_destroy(&whole2);
    plan_destroy(&compact);
    plan_destroy(&whole);
}

int main(void)
{
    snprintf(s_dir, sizeof s_dir, "/tmp/gaggle-test-plan-compact-run-XXXXXX");
    if (!mkdtemp(s_dir)) {
        perror("mkdtemp");
        return 1;
    }
    GG_RUN(test_noop_reads_nothing);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", s_dir);
    GG_DONE();
}
