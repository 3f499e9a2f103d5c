/* test_plan.c: YAML to JSON (yamljson), plan validation with every error
 * collected, defaults, target resolution against a catalog on disk, the
 * canonical form and plan id, rebuilding a plan from its JSON, rendering. */
#include "catalog.h"
#include "gg_error.h"
#include "gg_test.h"
#include "plan.h"
#include "signed.h"
#include "yamljson.h"

#include <errno.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static char s_dir[PATH_MAX]; /* a temporary folder for catalogs and plans */

static int s_mkdirs(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int) sizeof tmp)
        return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return 0;
}

static int s_write(const char *rel, const char *text)
{
    char path[2 * PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", s_dir, rel);
    if (s_mkdirs(path) != 0)
        return -1;
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static int s_rm_rf(const char *path)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    return system(cmd);
}

/* ---------------------------------------------------------------- yamljson */

static json_t *s_yaml1(const char *text, int *rc_out, char *err, size_t errlen)
{
    yamljson_t *y = NULL;
    int rc = yamljson_parse(text, strlen(text), "t.yaml", NULL, &y, err, errlen);
    if (rc_out)
        *rc_out = rc;
    json_t *doc = yamljson_count(y) == 1 ? json_incref(yamljson_doc(y, 0)) : NULL;
    yamljson_destroy(&y);
    return doc;
}

static char *s_dump(const json_t *v)
{
    return json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY);
}

static void test_yamljson_schema(void)
{
    char err[YAMLJSON_ERR_MAX];
    int rc = -1;
    json_t *d =
        s_yaml1("a: [~, null, '', true, False, yes, no, 12, -3, 0x1f, 0o17, 1.5, .5, 1e3,\n"
                "    '12', \"true\", 1.10.2, 2001-12-14, !!str 7, ! 8, !!int '9', !!float 2]\n"
                "b:\nc: \"multi\\nline\"\n",
                &rc, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    REQUIRE(d);
    char *s = s_dump(d);
    CHECK_STR(s, "{\"a\":[null,null,\"\",true,false,\"yes\",\"no\",12,-3,31,15,1.5,0.5,1000.0,"
                 "\"12\",\"true\",\"1.10.2\",\"2001-12-14\",\"7\",\"8\",9,2.0],\"b\":null,"
                 "\"c\":\"multi\\nline\"}");
    free(s);
    json_decref(d);

    /* JSON is YAML. */
    d = s_yaml1("{\"k\": [1, {\"x\": \"y\"}], \"n\":null,\"t\":true}", &rc, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    s = s_dump(d);
    CHECK_STR(s, "{\"k\":[1,{\"x\":\"y\"}],\"n\":null,\"t\":true}");
    free(s);
    json_decref(d);
}

static void test_yamljson_anchors(void)
{
    char err[YAMLJSON_ERR_MAX];
    int rc = -1;
    json_t *d = s_yaml1("base: &b {x: 1, y: 2}\n"
                        "more: &m {z: 3}\n"
                        "one: {<<: *b, y: 20}\n"
                        "two:\n  <<: [*b, *m]\n  x: 10\n"
                        "list: &l [1, 2]\n"
                        "copy: *l\n",
                        &rc, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    REQUIRE(d);
    char *s = s_dump(json_object_get(d, "one"));
    CHECK_STR(s, "{\"x\":1,\"y\":20}");
    free(s);
    s = s_dump(json_object_get(d, "two"));
    CHECK_STR(s, "{\"x\":10,\"y\":2,\"z\":3}");
    free(s);
    s = s_dump(json_object_get(d, "copy"));
    CHECK_STR(s, "[1,2]");
    free(s);
    /* An alias is a copy: changing one leaves the other alone. */
    json_array_append_new(json_object_get(d, "copy"), json_integer(3));
    CHECK_EQ_INT(json_array_size(json_object_get(d, "list")), 2);
    json_decref(d);

    d = s_yaml1("a: *nope\n", &rc, err, sizeof err);
    CHECK_EQ_INT(rc, GG_EMALFORMED);
    CHECK(strstr(err, "undefined alias") != NULL);
    d = s_yaml1("a: &x [1, *x]\n", &rc, err, sizeof err);
    CHECK_EQ_INT(rc, GG_EMALFORMED);
    CHECK(d == NULL);
}

static void test_yamljson_errors(void)
{
    char err[YAMLJSON_ERR_MAX];
    int rc = 0;
    CHECK(s_yaml1("a: 1\na: 2\n", &rc, err, sizeof err) == NULL);
    CHECK_EQ_INT(rc, GG_EMALFORMED);
    CHECK(strstr(err, "t.yaml:2:") == err);
    CHECK(strstr(err, "duplicate key 'a'") != NULL);
    s_yaml1("a: !Ref x\n", &rc, err, sizeof err);
    CHECK_EQ_INT(rc, GG_EMALFORMED);
    s_yaml1("a: .inf\n", &rc, err, sizeof err);
    CHECK_EQ_INT(rc, GG_EMALFORMED);
    s_yaml1("? [a]\n: 1\n", &rc, err, sizeof err);
    CHECK_EQ_INT(rc, GG_EMALFORMED);
    s_yaml1("a: !!int x\n", &rc, err, sizeof err);
    CHECK_EQ_INT(rc, GG_EMALFORMED);
    s_yaml1("a: [1, 2\n", &rc, err, sizeof err);
    CHECK_EQ_INT(rc, GG_EMALFORMED);
    CHECK(strstr(err, "t.yaml:") == err);
    json_t *d = s_yaml1("a: \"\\0\"\n", &rc, err, sizeof err);
    CHECK_EQ_INT(rc, 0); /* NUL inside a string is kept (callers decide) */
    CHECK_EQ_INT(json_string_length(json_object_get(d, "a")), 1);
    json_decref(d);
    s_yaml1("\"a\\0b\": 1\n", &rc, err, sizeof err);
    CHECK_EQ_INT(rc, GG_EMALFORMED);
}

static void test_yamljson_limits(void)
{
    char err[YAMLJSON_ERR_MAX];
    yamljson_opts_t o;
    yamljson_t *y = NULL;
    /* Nesting. */
    char deep[300];
    memset(deep, '[', 150);
    memset(deep + 150, ']', 150);
    yamljson_opts_default(&o);
    o.max_depth = 100;
    CHECK_EQ_INT(yamljson_parse(deep, sizeof deep, "d", &o, &y, err, sizeof err), GG_ETOOBIG);
    yamljson_destroy(&y);
    o.max_depth = 200;
    CHECK_EQ_INT(yamljson_parse(deep, sizeof deep, "d", &o, &y, err, sizeof err), 0);
    yamljson_destroy(&y);
    /* An alias bomb stops at the value limit. */
    const char *bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                       "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                       "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                       "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                       "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
    yamljson_opts_default(&o);
    o.max_nodes = 100000;
    CHECK_EQ_INT(yamljson_parse(bomb, strlen(bomb), "b", &o, &y, err, sizeof err), GG_ETOOBIG);
    CHECK(strstr(err, "values") != NULL);
    yamljson_destroy(&y);
    /* Bytes, scalars, documents. */
    o.max_bytes = 4;
    CHECK_EQ_INT(yamljson_parse("a: 12345", 8, "s", &o, &y, err, sizeof err), GG_ETOOBIG);
    yamljson_destroy(&y);
    yamljson_opts_default(&o);
    o.max_scalar = 4;
    CHECK_EQ_INT(yamljson_parse("a: 12345", 8, "s", &o, &y, err, sizeof err), GG_ETOOBIG);
    yamljson_destroy(&y);
    yamljson_opts_default(&o);
    o.max_documents = 2;
    const char *docs = "a: 1\n---\nb: 2\n---\nc: 3\n";
    CHECK_EQ_INT(yamljson_parse(docs, strlen(docs), "m", &o, &y, err, sizeof err), GG_ETOOBIG);
    CHECK_EQ_INT(yamljson_count(y), 2); /* the documents before the error are kept */
    yamljson_destroy(&y);
    CHECK(y == NULL);
}

static void test_yamljson_documents_and_lines(void)
{
    char err[YAMLJSON_ERR_MAX];
    yamljson_opts_t o;
    yamljson_t *y = NULL;
    yamljson_opts_default(&o);
    o.keep_lines = true;
    const char *text = "# comment\n"
                       "a: 1\n"
                       "---\n"
                       "---\n"
                       "spec:\n"
                       "  steps:\n"
                       "    - name: x\n"
                       "      run: make\n"
                       "    - {name: y,\n"
                       "       run: test}\n"
                       "---\n"
                       "[1, 2]\n"
                       "---\n"
                       "oops: [\n";
    int rc = yamljson_parse(text, strlen(text), "f.yaml", &o, &y, err, sizeof err);
    CHECK_EQ_INT(rc, GG_EMALFORMED);
    REQUIRE(y);
    CHECK_EQ_INT(yamljson_count(y), 3); /* the empty one is skipped; the broken one lost */
    CHECK_EQ_INT(yamljson_doc_line(y, 0), 2);
    CHECK_EQ_INT(yamljson_doc_line(y, 1), 4);
    CHECK_EQ_INT(yamljson_line(y, 1, "spec"), 5);
    CHECK_EQ_INT(yamljson_line(y, 1, "spec.steps"), 6);
    CHECK_EQ_INT(yamljson_line(y, 1, "spec.steps[0]"), 7);
    CHECK_EQ_INT(yamljson_line(y, 1, "spec.steps[0].run"), 8);
    CHECK_EQ_INT(yamljson_line(y, 1, "spec.steps[1].run"), 10);
    CHECK_EQ_INT(yamljson_line(y, 1, "spec.nope"), 0);
    CHECK(json_is_array(yamljson_doc(y, 2)));
    CHECK(yamljson_doc(y, 3) == NULL);
    yamljson_destroy(&y);
    CHECK_EQ_INT(yamljson_load_file("/nonexistent/plan.yaml", NULL, &y, err, sizeof err),
                 GG_ENOTFOUND);
    CHECK(y == NULL);
}

/* ------------------------------------------------------------------ plans */

static plan_t *s_plan(const char *text, plan_diag_t **diag_out)
{
    plan_t *p = NULL;
    plan_diag_t *diag = plan_diag_new();
    plan_opts_t opts = {.check_root = false};
    int rc = plan_load_text(text, strlen(text), "p.yaml", s_dir, &opts, &p, diag);
    if (rc != 0 && plan_diag_error_count(diag) == 0)
        fprintf(stderr, "plan_load_text: %d without errors\n", rc);
    if (diag_out)
        *diag_out = diag;
    else
        plan_diag_destroy(&diag);
    return p;
}

/* Whether some error's where contains `where` and its message `what`. */
static bool s_has(const json_t *list, const char *where, const char *what)
{
    size_t i;
    json_t *d;
    json_array_foreach(list, i, d)
    {
        const char *w = json_string_value(json_object_get(d, "where"));
        const char *m = json_string_value(json_object_get(d, "message"));
        if (w && m && strstr(w, where) && (!what || strstr(m, what)))
            return true;
    }
    return false;
}

static void s_print_diag(const plan_diag_t *diag)
{
    char *s = json_dumps(plan_diag_errors(diag), JSON_INDENT(1));
    fprintf(stderr, "errors: %s\n", s);
    free(s);
}

static const char *s_minimal = "apiVersion: gaggle/v1\n"
                               "kind: MigrationPlan\n"
                               "metadata: {name: minimal}\n"
                               "spec:\n"
                               "  catalog: ./catalog\n"
                               "  dataset: {from: ds-v1, to: ds-v2}\n"
                               "  steps: [{name: build, run: make}]\n";

static void test_defaults(void)
{
    plan_diag_t *diag = NULL;
    plan_t *p = s_plan(s_minimal, &diag);
    if (!p)
        s_print_diag(diag);
    REQUIRE(p);
    const plan_spec_t *s = plan_spec(p);
    CHECK_STR(s->name, "minimal");
    CHECK(s->owner == NULL);
    char want[PATH_MAX + 16];
    snprintf(want, sizeof want, "%s/catalog", s_dir);
    CHECK_STR(s->catalog, want);
    CHECK_STR(s->dataset_from, "resource:default/ds-v1");
    CHECK_STR(s->dataset_to, "resource:default/ds-v2");
    CHECK_STR(s->consumers_of, "resource:default/ds-v1");
    CHECK(!s->transitive);
    CHECK_EQ_INT(s->step_count, 1);
    CHECK_STR(s->steps[0].name, "build");
    CHECK_EQ_INT(s->steps[0].kind, PLAN_STEP_RUN);
    CHECK_STR(s->steps[0].run, "make");
    CHECK_EQ_INT(s->steps[0].timeout_ms, 30 * 60 * 1000);
    CHECK(!s->steps[0].sandbox_network_none);
    CHECK_EQ_INT(s->max_attempts, 3);
    CHECK_EQ_INT(s->initial_backoff_ms, 1000);
    CHECK(s->multiplier == 2.0);
    CHECK_EQ_INT(s->max_backoff_ms, 60000);
    CHECK_EQ_INT(s->retryable_count, 0);
    CHECK_EQ_INT(s->canary, 0);
    CHECK_EQ_INT(s->max_parallel, 0);
    CHECK_EQ_INT(s->rate_per_minute, 0);
    CHECK(s->max_failure_ratio < 0);
    CHECK(!s->approval);
    CHECK(s->precheck.run == NULL && s->verify.run == NULL && s->judge.run == NULL);
    CHECK(s->notify.run == NULL);
    CHECK(s->docs_catalog_out == NULL && s->docs_report == NULL);
    CHECK(!plan_is_resolved(p));
    CHECK_STR(plan_id(p), "");
    CHECK_EQ_INT(plan_diag_error_count(diag), 0);
    /* The normalised document spells the defaults out. */
    const json_t *doc = plan_json(p);
    json_t *retry = json_object_get(json_object_get(doc, "spec"), "retry");
    CHECK_STR(json_string_value(json_object_get(retry, "initialBackoff")), "1s");
    CHECK_STR(json_string_value(json_object_get(retry, "maxBackoff")), "1m");
    plan_destroy(&p);
    CHECK(p == NULL);
    plan_diag_destroy(&diag);
    CHECK(diag == NULL);
}

static const char *s_full =
    "apiVersion: gaggle/v1\n"
    "kind: MigrationPlan\n"
    "metadata: {name: user-ds-v2, owner: data-platform, description: Move them all}\n"
    "spec:\n"
    "  catalog: ./catalog\n"
    "  dataset: {from: resource:default/ds-v1, to: resource:default/ds-v2}\n"
    "  targets:\n"
    "    consumersOf: ds-v1\n"
    "    transitive: true\n"
    "    kinds: [Component, resource]\n"
    "    owner: [team-a, group:default/team-b]\n"
    "    tags: []\n"
    "    exclude: [svc-b]\n"
    "    include: [component:other/svc-e]\n"
    "  vars: {from: user_ds_v1, to: user_ds_v2}\n"
    "  precheck: {run: \"grep -rq {{vars.from}} {{target.path}}\", timeout: 30s}\n"
    "  steps:\n"
    "    - name: rewrite\n"
    "      rewrite:\n"
    "        paths: [\"**/*.sql\", \"**/*.yaml\"]\n"
    "        replace: {\"{{vars.from}}\": \"{{vars.to}}\", b_old: b_new, a_old: a_new}\n"
    "        word: true\n"
    "    - {name: build, run: \"make -C {{target.path}} test\", timeout: 10m}\n"
    "    - name: migrate\n"
    "      agent: {run: \"agent --prompt-file $GAGGLE_PROMPT_FILE\", prompt: \"Move "
    "{{dataset.from}} to {{dataset.to}} in {{target.name}}\", maxTurns: 5}\n"
    "    - {name: publish, publish: {run: \"git -C {{workdir}} push\"}, timeout: 90}\n"
    "    - {name: bench, noop: true}\n"
    "  verify: {run: \"make -C {{target.path}} verify\"}\n"
    "  judge: {run: \"judge {{target.ref}}\"}\n"
    "  retry: {maxAttempts: 5, initialBackoff: 2s, multiplier: 1.5, maxBackoff: 5m, "
    "retryableExitCodes: [75, 69]}\n"
    "  rollout: {canary: 5, maxParallel: 50, ratePerMinute: 600, maxFailureRatio: 0.1}\n"
    "  approval: {when: {annotations: {myorg.org/security: \"true\"}}, quorum: 2}\n"
    "  docs: {catalogOut: ./catalog-out, report: ../reports}\n"
    "  notify: {run: \"notify {{plan.id}}\", on: [failed, completed]}\n";

static void test_full(void)
{
    plan_diag_t *diag = NULL;
    plan_t *p = s_plan(s_full, &diag);
    if (!p)
        s_print_diag(diag);
    REQUIRE(p);
    const plan_spec_t *s = plan_spec(p);
    CHECK_STR(s->owner, "group:default/data-platform");
    CHECK_STR(s->description, "Move them all");
    CHECK(s->transitive);
    CHECK_EQ_INT(s->step_count, 5);
    const plan_step_t *rw = &s->steps[0];
    CHECK_EQ_INT(rw->kind, PLAN_STEP_REWRITE);
    CHECK_EQ_INT(rw->path_count, 2);
    CHECK_STR(rw->paths[1], "**/*.yaml");
    REQUIRE(rw->replace_count == 3);
    /* The order of replace is the file's, not sorted. */
    CHECK_STR(rw->replace[0].from, "{{vars.from}}");
    CHECK_STR(rw->replace[0].to, "{{vars.to}}");
    CHECK_STR(rw->replace[1].from, "b_old");
    CHECK_STR(rw->replace[2].from, "a_old");
    CHECK(rw->word && !rw->regex);
    CHECK_EQ_INT(s->steps[1].timeout_ms, 600000);
    CHECK_EQ_INT(s->steps[2].kind, PLAN_STEP_AGENT);
    CHECK_EQ_INT(s->steps[2].max_turns, 5);
    CHECK(strstr(s->steps[2].prompt, "{{dataset.from}}") != NULL);
    CHECK_EQ_INT(s->steps[3].kind, PLAN_STEP_PUBLISH);
    CHECK_EQ_INT(s->steps[3].timeout_ms, 90000);
    CHECK_EQ_INT(s->steps[4].kind, PLAN_STEP_NOOP);
    CHECK_EQ_INT(s->precheck.timeout_ms, 30000);
    CHECK_EQ_INT(s->verify.timeout_ms, 30 * 60 * 1000);
    CHECK(s->judge.run != NULL);
    CHECK_EQ_INT(s->max_attempts, 5);
    CHECK(s->multiplier == 1.5);
    CHECK_EQ_INT(s->max_backoff_ms, 300000);
    REQUIRE(s->retryable_count == 2);
    CHECK_EQ_INT(s->retryable_exit_codes[1], 69);
    CHECK_EQ_INT(s->canary, 5);
    CHECK_EQ_INT(s->max_parallel, 50);
    CHECK_EQ_INT(s->rate_per_minute, 600);
    CHECK(s->max_failure_ratio > 0.099 && s->max_failure_ratio < 0.101);
    CHECK(s->approval);
    CHECK_EQ_INT(s->quorum, 2);
    char want[PATH_MAX + 32];
    snprintf(want, sizeof want, "%s/catalog-out", s_dir);
    CHECK_STR(s->docs_catalog_out, want);
    CHECK(s->docs_report[0] == '/' && strstr(s->docs_report, "..") == NULL);
    CHECK(strcmp(s->docs_report + strlen(s->docs_report) - 8, "/reports") == 0);
    REQUIRE(s->notify_on_count == 2);
    CHECK_STR(s->notify_on[1], "completed");
    const json_t *tg = json_object_get(json_object_get(plan_json(p), "spec"), "targets");
    char *dump = s_dump(json_object_get(tg, "owner"));
    CHECK_STR(dump, "[\"group:default/team-a\",\"group:default/team-b\"]");
    free(dump);
    dump = s_dump(json_object_get(tg, "include"));
    CHECK_STR(dump, "[\"component:other/svc-e\"]");
    free(dump);
    CHECK_EQ_INT(plan_diag_error_count(diag), 0);
    plan_destroy(&p);
    plan_diag_destroy(&diag);
}

static void test_errors_collected(void)
{
    const char *text = "apiVersion: gaggle/v2\n"                               /* 1 */
                       "kind: Plan\n"                                          /* 2 */
                       "metadata: {name: 'bad name', colour: red}\n"           /* 3 */
                       "spec:\n"                                               /* 4 */
                       "  catalog: ./c\n"                                      /* 5 */
                       "  dataset: {from: ds-v1}\n"                            /* 6 */
                       "  targets: {kinds: [Component, '9bad'], flavour: x}\n" /* 7 */
                       "  vars: {ok: yes, num: 5}\n"                           /* 8 */
                       "  steps:\n"                                            /* 9 */
                       "    - {name: a, run: make, noop: true}\n"              /* 10 */
                       "    - {name: a, run: 'x {{vars.nope}}'}\n"             /* 11 */
                       "    - {run: 'echo {{target.colour}}'}\n"               /* 12 */
                       "    - {name: t, noop: true, timeout: forever}\n"       /* 13 */
                       "    - {name: r, rewrite: {paths: ['../x', '/etc/passwd'], replace: {}}}\n"
                       "    - {name: g, agent: {run: x}}\n" /* 15 */
                       "  retry: {maxAttempts: 0, initialBackoff: 1m, maxBackoff: 1s,\n"
                       "          retryableExitCodes: [0, 75, 75]}\n"      /* 17 */
                       "  rollout: {maxFailureRatio: 2, maxParallel: 0}\n" /* 18 */
                       "  approval: {quorum: 0, when: {tags: ['Not A Tag']}}\n"
                       "  notify: {run: x, on: [exploded]}\n" /* 20 */
                       "  docs: {catalogOut: 5}\n";           /* 21 */
    plan_diag_t *diag = NULL;
    plan_t *p = s_plan(text, &diag);
    CHECK(p == NULL);
    const json_t *e = plan_diag_errors(diag);
    CHECK(s_has(e, "p.yaml:1: apiVersion", "gaggle/v1"));
    CHECK(s_has(e, "p.yaml:2: kind", "MigrationPlan"));
    CHECK(s_has(e, "p.yaml:3: metadata.name", "not a valid name"));
    CHECK(s_has(e, "p.yaml:3: metadata.colour", "unknown field"));
    CHECK(s_has(e, "p.yaml:6: spec.dataset.to", "required"));
    CHECK(s_has(e, "p.yaml:7: spec.targets.kinds[1]", "kind"));
    CHECK(s_has(e, "p.yaml:7: spec.targets.flavour", "unknown field"));
    CHECK(s_has(e, "p.yaml:8: spec.vars.num", "string"));
    CHECK(s_has(e, "p.yaml:10: spec.steps[0].noop", "exactly one"));
    CHECK(s_has(e, "p.yaml:11: spec.steps[1].name", "twice"));
    CHECK(s_has(e, "p.yaml:11: spec.steps[1].run", "{{vars.nope}}"));
    CHECK(s_has(e, "p.yaml:12: spec.steps[2].name", "required"));
    CHECK(s_has(e, "p.yaml:12: spec.steps[2].run", "{{target.colour}}"));
    CHECK(s_has(e, "p.yaml:13: spec.steps[3].timeout", "duration"));
    CHECK(s_has(e, "spec.steps[4].rewrite.paths[0]", "'..'"));
    CHECK(s_has(e, "spec.steps[4].rewrite.paths[1]", "relative"));
    CHECK(s_has(e, "spec.steps[4].rewrite.replace", "at least one"));
    CHECK(s_has(e, "p.yaml:15: spec.steps[5].agent.prompt", "required"));
    CHECK(s_has(e, "spec.steps[5]", "spec.verify"));
    CHECK(s_has(e, "p.yaml:16: spec.retry.maxAttempts", "between 1 and 1000"));
    CHECK(s_has(e, "spec.retry.maxBackoff", "initialBackoff"));
    CHECK(s_has(e, "p.yaml:17: spec.retry.retryableExitCodes[0]", "exit code"));
    CHECK(s_has(e, "p.yaml:17: spec.retry.retryableExitCodes[2]", "twice"));
    CHECK(s_has(e, "p.yaml:18: spec.rollout.maxFailureRatio", "between"));
    CHECK(s_has(e, "p.yaml:18: spec.rollout.maxParallel", "between"));
    CHECK(s_has(e, "spec.approval.quorum", "between"));
    CHECK(s_has(e, "spec.approval.when.tags[0]", "tag"));
    CHECK(s_has(e, "p.yaml:20: spec.notify.on[0]", "unknown event"));
    CHECK(s_has(e, "p.yaml:21: spec.docs.catalogOut", "string"));
    CHECK(plan_diag_error_count(diag) >= 29);
    if (plan_diag_error_count(diag) < 29)
        s_print_diag(diag);
    plan_diag_destroy(&diag);

    /* Structural errors. */
    p = s_plan("just a string\n", &diag);
    CHECK(p == NULL);
    CHECK(s_has(plan_diag_errors(diag), "p.yaml", "must be a mapping"));
    plan_diag_destroy(&diag);
    p = s_plan("a: 1\n---\nb: 2\n", &diag);
    CHECK(p == NULL);
    CHECK(s_has(plan_diag_errors(diag), "p.yaml", "exactly one document"));
    plan_diag_destroy(&diag);
    p = s_plan("", &diag);
    CHECK(p == NULL);
    CHECK(s_has(plan_diag_errors(diag), "p.yaml", "empty"));
    plan_diag_destroy(&diag);
    p = s_plan("apiVersion: [\n", &diag);
    CHECK(p == NULL);
    CHECK(s_has(plan_diag_errors(diag), "p.yaml:2:", NULL));
    plan_diag_destroy(&diag);
    p = s_plan("apiVersion: gaggle/v1\nkind: MigrationPlan\n", &diag);
    CHECK(p == NULL);
    CHECK(s_has(plan_diag_errors(diag), "metadata", "required"));
    CHECK(s_has(plan_diag_errors(diag), "spec", "required"));
    plan_diag_destroy(&diag);
}

static void test_template_checks(void)
{
    const char *text =
        "apiVersion: gaggle/v1\nkind: MigrationPlan\nmetadata: {name: t}\n"
        "spec:\n  catalog: ./c\n  dataset: {from: a, to: b}\n"
        "  vars: {known: k}\n"
        "  precheck: {run: 'x {{ vars.known }} {{target.annotations.backstage.io/x}}'}\n"
        "  steps:\n"
        "    - {name: ok, run: '{{target.ref}} {{target.kind}} {{target.namespace}} "
        "{{target.name}} {{target.owner}} {{target.source}} {{target.path}} {{dataset.from}} "
        "{{dataset.to}} {{plan.id}} {{plan.name}} {{attempt}} {{epoch}} {{workdir}}'}\n"
        "    - {name: deploy, run: 'deploy {{target.colour}}'}\n"
        "    - {name: unterminated, run: 'make {{target.path'}\n"
        "    - {name: r, rewrite: {paths: ['{{vars.dir}}/*'], replace: {'{{vars.a}}': x}}}\n"
        "  verify: {run: '{{target.annotations.}}'}\n";
    plan_diag_t *diag = NULL;
    plan_t *p = s_plan(text, &diag);
    CHECK(p == NULL);
    const json_t *e = plan_diag_errors(diag);
    CHECK(s_has(e, "spec.steps[1].run", "step 'deploy': unknown variable {{target.colour}}"));
    CHECK(s_has(e, "spec.steps[2].run", "unterminated"));
    CHECK(s_has(e, "spec.steps[3].rewrite.paths[0]", "{{vars.dir}}"));
    CHECK(s_has(e, "spec.steps[3].rewrite.replace", "{{vars.a}}"));
    CHECK(s_has(e, "spec.verify.run", "{{target.annotations.}}"));
    CHECK_EQ_INT(plan_diag_error_count(diag), 5);
    if (plan_diag_error_count(diag) != 5)
        s_print_diag(diag);
    plan_diag_destroy(&diag);

    /* A regex that cannot compile is caught when it does not depend on the target. */
    const char *rx = "apiVersion: gaggle/v1\nkind: MigrationPlan\nmetadata: {name: t}\n"
                     "spec:\n  catalog: ./c\n  dataset: {from: a, to: b}\n"
                     "  steps:\n"
                     "    - {name: r, rewrite: {paths: ['*'], replace: {'(': x}, regex: true}}\n";
    p = s_plan(rx, &diag);
    CHECK(p == NULL);
    CHECK(s_has(plan_diag_errors(diag), "spec.steps[0].rewrite", NULL));
    plan_diag_destroy(&diag);
}

static void test_sandbox(void)
{
    const char *text = "apiVersion: gaggle/v1\nkind: MigrationPlan\nmetadata: {name: s}\n"
                       "spec:\n  catalog: ./c\n  dataset: {from: a, to: b}\n"
                       "  steps:\n"
                       "    - {name: build, run: make, sandbox: {network: none}}\n";
    plan_diag_t *diag = plan_diag_new();
    plan_t *p = NULL;
    plan_opts_t opts = {.check_root = true};
    int rc = plan_load_text(text, strlen(text), "p.yaml", s_dir, &opts, &p, diag);
    if (geteuid() == 0) {
        CHECK_EQ_INT(rc, 0);
        REQUIRE(p);
        CHECK(plan_spec(p)->steps[0].sandbox_network_none);
    } else {
        CHECK_EQ_INT(rc, GG_EINVAL);
        CHECK(s_has(plan_diag_errors(diag), "spec.steps[0].sandbox.network", "root"));
    }
    plan_destroy(&p);
    plan_diag_destroy(&diag);
    /* Without the root check (an agent reading a signed plan) it is accepted. */
    p = s_plan(text, NULL);
    CHECK(p != NULL);
    plan_destroy(&p);
    const char *host = "apiVersion: gaggle/v1\nkind: MigrationPlan\nmetadata: {name: s}\n"
                       "spec:\n  catalog: ./c\n  dataset: {from: a, to: b}\n"
                       "  steps: [{name: b, run: make, sandbox: {network: host}}]\n";
    p = s_plan(host, &diag);
    CHECK(p == NULL);
    CHECK(s_has(plan_diag_errors(diag), "spec.steps[0].sandbox.network", "none"));
    plan_diag_destroy(&diag);
}

static void test_limits(void)
{
    /* 65 steps. */
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    REQUIRE(text);
    len += (size_t) snprintf(text + len, cap - len,
                             "apiVersion: gaggle/v1\nkind: MigrationPlan\nmetadata: {name: l}\n"
                             "spec:\n  catalog: ./c\n  dataset: {from: a, to: b}\n  steps:\n");
    for (int i = 0; i < PLAN_STEPS_MAX + 1; i++)
        len += (size_t) snprintf(text + len, cap - len, "    - {name: s%d, noop: true}\n", i);
    plan_diag_t *diag = NULL;
    plan_t *p = s_plan(text, &diag);
    CHECK(p == NULL);
    CHECK(s_has(plan_diag_errors(diag), "spec.steps", "more than 64"));
    plan_diag_destroy(&diag);
    free(text);

    /* A plan file over the size limit. */
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/big.yaml", s_dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs("apiVersion: gaggle/v1\nmetadata: {description: \"", f);
    for (size_t i = 0; i < PLAN_FILE_MAX / 64 + 1; i++)
        fputs("0123456789012345678901234567890123456789012345678901234567890123", f);
    fputs("\"}\n", f);
    fclose(f);
    diag = plan_diag_new();
    CHECK_EQ_INT(plan_load_file(path, "big.yaml", NULL, &p, diag), GG_ETOOBIG);
    CHECK(p == NULL);
    CHECK(s_has(plan_diag_errors(diag), "big.yaml", "larger"));
    plan_diag_destroy(&diag);
    unlink(path);

    /* A missing file. */
    diag = plan_diag_new();
    CHECK_EQ_INT(plan_load_file("/nonexistent/p.yaml", NULL, NULL, &p, diag), GG_ENOTFOUND);
    CHECK(s_has(plan_diag_errors(diag), "/nonexistent/p.yaml", "cannot read"));
    plan_diag_destroy(&diag);

    /* The diagnostics cap: 2,000 bad vars keep PLAN_DIAG_MAX and count the rest. */
    cap = 1 << 20;
    len = 0;
    text = malloc(cap);
    REQUIRE(text);
    len += (size_t) snprintf(text + len, cap - len,
                             "apiVersion: gaggle/v1\nkind: MigrationPlan\nmetadata: {name: l}\n"
                             "spec:\n  catalog: ./c\n  dataset: {from: a, to: b}\n"
                             "  steps: [{name: s, noop: true}]\n  targets: {tags: [");
    for (int i = 0; i < 2000; i++)
        len += (size_t) snprintf(text + len, cap - len, "%s'Bad %d'", i ? ", " : "", i);
    snprintf(text + len, cap - len, "]}\n");
    p = s_plan(text, &diag);
    CHECK(p == NULL);
    /* the list itself has more than PLAN_FILTER_MAX entries: one error */
    CHECK(s_has(plan_diag_errors(diag), "spec.targets.tags", "more than"));
    plan_diag_destroy(&diag);
    free(text);

    diag = plan_diag_new();
    for (int i = 0; i < PLAN_DIAG_MAX + 10; i++)
        plan_diag_add(diag, true, "w", "error %d", i);
    CHECK_EQ_INT(plan_diag_error_count(diag), PLAN_DIAG_MAX + 10);
    CHECK_EQ_INT(json_array_size(plan_diag_errors(diag)), PLAN_DIAG_MAX);
    plan_diag_destroy(&diag);
}

/* ------------------------------------------------------- catalog and ids */

static int s_make_catalog(void)
{
    int rc = 0;
    rc |= s_write("catalog/resources.yaml",
                  "apiVersion: backstage.io/v1alpha1\nkind: Resource\n"
                  "metadata: {name: ds-v1}\nspec: {type: database, owner: team-a}\n---\n"
                  "apiVersion: backstage.io/v1alpha1\nkind: Resource\n"
                  "metadata: {name: ds-v2}\nspec: {type: database, owner: team-a}\n---\n"
                  "apiVersion: backstage.io/v1alpha1\nkind: Resource\n"
                  "metadata: {name: ds-view}\n"
                  "spec: {type: view, owner: team-b, dependsOn: ['resource:ds-v1']}\n");
    rc |= s_write("catalog/a/catalog-info.yaml",
                  "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
                  "metadata:\n  name: svc-a\n  tags: [java, data]\n"
                  "  annotations:\n"
                  "    backstage.io/source-location: url:https://github.com/org/svc-a/\n"
                  "    myorg.org/security: 'true'\n"
                  "spec: {type: service, lifecycle: production, owner: team-a,\n"
                  "       dependsOn: ['resource:ds-v1']}\n");
    rc |= s_write("catalog/b/catalog-info.yaml",
                  "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
                  "metadata: {name: svc-b, tags: [go]}\n"
                  "spec: {type: service, lifecycle: experimental, owner: team-b,\n"
                  "       dependsOn: ['resource:default/ds-v1']}\n");
    rc |= s_write("catalog/c/catalog-info.yaml",
                  "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
                  "metadata: {name: svc-c, tags: [java]}\n"
                  "spec: {type: service, lifecycle: production, owner: team-a,\n"
                  "       dependsOn: ['component:svc-a']}\n");
    rc |= s_write("catalog/e/catalog-info.yaml",
                  "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
                  "metadata:\n  name: svc-e\n  namespace: other\n"
                  "  annotations:\n    gaggle.io/evil: \"$(echo pwned) `id` ' \\\" ;\"\n"
                  "    backstage.io/source-location: 'dir:./src'\n"
                  "spec: {type: service, lifecycle: production, owner: team-a}\n");
    rc |= s_write("catalog/z/catalog-info.yaml",
                  "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
                  "metadata: {name: 'bad name'}\nspec: {type: service, owner: x, "
                  "lifecycle: production}\n");
    return rc;
}

/* Loads text as a plan, reads its catalog and resolves it. */
static plan_t *s_resolved(const char *text, plan_diag_t **diag_out)
{
    plan_diag_t *diag = NULL;
    plan_t *p = s_plan(text, &diag);
    catalog_t *cat = NULL;
    int rc = p ? plan_load_catalog(p, &cat, diag) : GG_EINVAL;
    if (rc == 0)
        rc = plan_resolve(p, cat, diag);
    catalog_destroy(&cat);
    if (rc != 0)
        plan_destroy(&p);
    if (diag_out)
        *diag_out = diag;
    else
        plan_diag_destroy(&diag);
    return p;
}

static void s_check_refs(const plan_t *p, const char *const *refs)
{
    size_t n = 0;
    while (refs[n])
        n++;
    CHECK_EQ_INT(plan_target_count(p), n);
    for (size_t i = 0; i < n && i < plan_target_count(p); i++)
        CHECK_STR(plan_target(p, i)->ref, refs[i]);
}

#define S_HEAD                                                                                     \
    "apiVersion: gaggle/v1\nkind: MigrationPlan\nmetadata: {name: r}\n"                            \
    "spec:\n  catalog: ./catalog\n  dataset: {from: ds-v1, to: ds-v2}\n"                           \
    "  steps: [{name: s, noop: true}]\n"

static void test_resolve(void)
{
    REQUIRE(s_make_catalog() == 0);
    plan_diag_t *diag = NULL;
    plan_t *p = s_resolved(S_HEAD, &diag);
    if (!p)
        s_print_diag(diag);
    REQUIRE(p);
    CHECK(plan_is_resolved(p));
    CHECK_EQ_INT(strlen(plan_id(p)), 64);
    const char *direct[] = {"component:default/svc-a", "component:default/svc-b",
                            "resource:default/ds-view", NULL};
    s_check_refs(p, direct);
    /* The invalid catalog entity is a warning naming its file. */
    CHECK(s_has(plan_diag_warnings(diag), "z/catalog-info.yaml", NULL));
    CHECK_EQ_INT(plan_diag_error_count(diag), 0);
    const plan_target_t *a = plan_target(p, 0);
    CHECK_STR(a->kind, "Component");
    CHECK_STR(a->namespace, "default");
    CHECK_STR(a->name, "svc-a");
    CHECK_STR(a->owner, "group:default/team-a");
    CHECK_STR(a->lifecycle, "production");
    CHECK_STR(a->source, "https://github.com/org/svc-a/");
    char want[PATH_MAX + 16];
    snprintf(want, sizeof want, "%s/catalog/a", s_dir);
    CHECK_STR(a->path, want);
    CHECK_STR(json_string_value(json_object_get(a->annotations, "myorg.org/security")), "true");
    CHECK_STR(json_string_value(json_object_get(json_object_get(a->entity, "metadata"), "name")),
              "svc-a");
    CHECK(!a->needs_approval);
    CHECK_EQ_INT(plan_find_target(p, "svc-b"), 1);
    CHECK_EQ_INT(plan_find_target(p, "Resource:Default/DS-VIEW"), 2);
    CHECK_EQ_INT(plan_find_target(p, "svc-zzz"), -1);
    plan_destroy(&p);
    plan_diag_destroy(&diag);

    p = s_resolved(S_HEAD "  targets: {transitive: true}\n", NULL);
    REQUIRE(p);
    const char *trans[] = {"component:default/svc-a", "component:default/svc-b",
                           "component:default/svc-c", "resource:default/ds-view", NULL};
    s_check_refs(p, trans);
    plan_destroy(&p);

    p = s_resolved(S_HEAD "  targets: {transitive: true, kinds: [COMPONENT], owner: team-a, "
                          "lifecycle: production, tags: [java]}\n",
                   NULL);
    REQUIRE(p);
    const char *filtered[] = {"component:default/svc-a", "component:default/svc-c", NULL};
    s_check_refs(p, filtered);
    plan_destroy(&p);

    p = s_resolved(S_HEAD "  targets: {annotations: {myorg.org/security: 'true'}}\n", NULL);
    REQUIRE(p);
    const char *annotated[] = {"component:default/svc-a", NULL};
    s_check_refs(p, annotated);
    plan_destroy(&p);

    p = s_resolved(S_HEAD "  targets: {include: ['component:other/svc-e', svc-c], "
                          "exclude: [svc-b, svc-c, svc-nobody]}\n",
                   &diag);
    REQUIRE(p);
    const char *incl[] = {"component:default/svc-a", "component:other/svc-e",
                          "resource:default/ds-view", NULL};
    s_check_refs(p, incl);
    CHECK(s_has(plan_diag_warnings(diag), "spec.targets.exclude[2]", "svc-nobody"));
    plan_destroy(&p);
    plan_diag_destroy(&diag);

    p = s_resolved(S_HEAD "  targets: {include: [svc-missing]}\n", &diag);
    CHECK(p == NULL);
    CHECK(s_has(plan_diag_errors(diag), "p.yaml:8: spec.targets.include[0]", "svc-missing"));
    plan_diag_destroy(&diag);

    p = s_resolved(S_HEAD "  targets: {consumersOf: resource:nothing}\n", &diag);
    REQUIRE(p);
    CHECK_EQ_INT(plan_target_count(p), 0);
    CHECK(s_has(plan_diag_warnings(diag), "spec.targets", "no targets"));
    CHECK_EQ_INT(strlen(plan_id(p)), 64);
    plan_destroy(&p);
    plan_diag_destroy(&diag);

    /* Approval gating is frozen per target. */
    p = s_resolved(S_HEAD "  approval: {when: {annotations: {myorg.org/security: 'true'}}}\n",
                   NULL);
    REQUIRE(p);
    CHECK(plan_target(p, 0)->needs_approval);
    CHECK(!plan_target(p, 1)->needs_approval);
    CHECK_EQ_INT(plan_spec(p)->quorum, 1);
    plan_destroy(&p);
    p = s_resolved(S_HEAD "  approval: {}\n", NULL);
    REQUIRE(p);
    CHECK(plan_target(p, 0)->needs_approval && plan_target(p, 2)->needs_approval);
    plan_destroy(&p);

    /* A catalog that is not there is an error at spec.catalog. */
    p = s_resolved("apiVersion: gaggle/v1\nkind: MigrationPlan\nmetadata: {name: r}\n"
                   "spec:\n  catalog: ./no-catalog\n  dataset: {from: ds-v1, to: ds-v2}\n"
                   "  steps: [{name: s, noop: true}]\n",
                   &diag);
    CHECK(p == NULL);
    CHECK(s_has(plan_diag_errors(diag), "p.yaml:5: spec.catalog", "no-catalog"));
    plan_diag_destroy(&diag);
}

static void test_ids_and_from_json(void)
{
    REQUIRE(s_make_catalog() == 0);
    plan_t *p = s_resolved(s_full, NULL);
    REQUIRE(p);
    char id[PLAN_ID_LEN + 1];
    snprintf(id, sizeof id, "%s", plan_id(p));
    /* The id is the hash of the canonical document. */
    char h[SIGNED_HASH_HEX_LEN + 1];
    CHECK_EQ_INT(signed_hash_hex(plan_json(p), h), 0);
    CHECK_STR(h, id);

    /* The same plan written differently (JSON, other order, defaults
     * spelled out, other spacing) has the same id. */
    const char *as_json =
        "{\"kind\": \"MigrationPlan\", \"apiVersion\": \"gaggle/v1\",\n"
        " \"spec\": {\"notify\": {\"on\": [\"failed\", \"completed\"], \"run\": \"notify "
        "{{plan.id}}\", \"timeout\": \"30m\"},\n"
        "  \"docs\": {\"report\": \"../reports\", \"catalogOut\": \"catalog-out\"},\n"
        "  \"approval\": {\"quorum\": 2, \"when\": {\"annotations\": {\"myorg.org/security\": "
        "\"true\"}}},\n"
        "  \"rollout\": {\"maxFailureRatio\": 0.1, \"ratePerMinute\": 600, \"maxParallel\": 50, "
        "\"canary\": 5},\n"
        "  \"retry\": {\"retryableExitCodes\": [75, 69], \"maxBackoff\": \"300s\", "
        "\"multiplier\": 1.5, \"initialBackoff\": \"2000ms\", \"maxAttempts\": 5},\n"
        "  \"judge\": {\"run\": \"judge {{target.ref}}\"},\n"
        "  \"verify\": {\"run\": \"make -C {{target.path}} verify\", \"timeout\": 1800},\n"
        "  \"steps\": [\n"
        "   {\"name\": \"rewrite\", \"rewrite\": {\"word\": true, \"paths\": [\"**/*.sql\", "
        "\"**/*.yaml\"], \"replace\": [{\"from\": \"{{vars.from}}\", \"to\": \"{{vars.to}}\"}, "
        "{\"from\": \"b_old\", \"to\": \"b_new\"}, {\"from\": \"a_old\", \"to\": \"a_new\"}]}},\n"
        "   {\"timeout\": \"10m\", \"name\": \"build\", \"run\": \"make -C {{target.path}} "
        "test\"},\n"
        "   {\"name\": \"migrate\", \"agent\": {\"maxTurns\": 5, \"run\": \"agent --prompt-file "
        "$GAGGLE_PROMPT_FILE\", \"prompt\": \"Move {{dataset.from}} to {{dataset.to}} in "
        "{{target.name}}\"}},\n"
        "   {\"name\": \"publish\", \"publish\": {\"run\": \"git -C {{workdir}} push\"}, "
        "\"timeout\": \"90s\"},\n"
        "   {\"name\": \"bench\", \"noop\": {}}],\n"
        "  \"precheck\": {\"timeout\": 30, \"run\": \"grep -rq {{vars.from}} "
        "{{target.path}}\"},\n"
        "  \"vars\": {\"to\": \"user_ds_v2\", \"from\": \"user_ds_v1\"},\n"
        "  \"targets\": {\"include\": [\"other/svc-e\"], \"exclude\": "
        "[\"component:default/svc-b\"], \"owner\": [\"group:team-a\", \"team-b\"], \"kinds\": "
        "[\"Component\", \"resource\"], \"transitive\": true, \"consumersOf\": "
        "\"resource:ds-v1\"},\n"
        "  \"dataset\": {\"to\": \"ds-v2\", \"from\": \"DS-V1\"},\n"
        "  \"catalog\": \"./x/../catalog/\"},\n"
        " \"metadata\": {\"description\": \"Move them all\", \"owner\": "
        "\"group:data-platform\", \"name\": \"user-ds-v2\"}}\n";
    plan_diag_t *diag = NULL;
    plan_t *q = s_resolved(as_json, &diag);
    if (!q)
        s_print_diag(diag);
    plan_diag_destroy(&diag);
    REQUIRE(q);
    CHECK_STR(plan_id(q), id);
    if (strcmp(plan_id(q), id) != 0) {
        char *a = s_dump(plan_json(p)), *b = s_dump(plan_json(q));
        fprintf(stderr, "yaml: %.3000s\njson: %.3000s\n", a, b);
        free(a);
        free(b);
    }
    plan_destroy(&q);

    /* Any change of content changes the id. */
    char *changed = strdup(s_full);
    REQUIRE(changed);
    char *where = strstr(changed, "maxAttempts: 5");
    REQUIRE(where);
    where[13] = '4';
    q = s_resolved(changed, NULL);
    REQUIRE(q);
    CHECK(strcmp(plan_id(q), id) != 0);
    plan_destroy(&q);
    free(changed);

    /* An agent rebuilds the same plan from its JSON. */
    json_t *copy = json_deep_copy(plan_json(p));
    REQUIRE(copy);
    diag = plan_diag_new();
    CHECK_EQ_INT(plan_from_json(copy, &q, diag), 0);
    if (!q)
        s_print_diag(diag);
    REQUIRE(q);
    CHECK_STR(plan_id(q), id);
    CHECK(plan_is_resolved(q));
    CHECK_EQ_INT(plan_target_count(q), plan_target_count(p));
    CHECK_STR(plan_spec(q)->steps[0].replace[1].from, "b_old");
    CHECK_EQ_INT(plan_spec(q)->steps[1].timeout_ms, 600000);
    CHECK(plan_target(q, 0)->needs_approval);
    plan_destroy(&q);
    plan_diag_destroy(&diag);

    /* Through the wire: canonical text, parsed back. */
    char *bytes = NULL;
    size_t len = 0;
    CHECK_EQ_INT(signed_canonical(plan_json(p), &bytes, &len), 0);
    json_t *back = json_loadb(bytes, len, JSON_REJECT_DUPLICATES, NULL);
    free(bytes);
    REQUIRE(back);
    CHECK_EQ_INT(plan_from_json(back, &q, NULL), 0);
    CHECK_STR(plan_id(q), id);
    plan_destroy(&q);
    json_decref(back);

    /* Not normalised, tampered or inconsistent payloads are refused. */
    struct {
        const char *what;
        const char *path; /* '/'-separated keys */
        json_t *value;    /* NULL: delete */
        const char *expect;
    } cases[] = {
        {"default left out", "spec/retry", NULL, "normalised"},
        {"duration not canonical", "spec/steps/1/timeout", json_string("600s"), "normalised"},
        {"relative path", "spec/catalog", json_string("./catalog"), "absolute"},
        {"approval flag flipped", "targets/0/approval", json_false(), "targets[0]"},
        {"frozen field of the wrong type", "targets/1/owner", json_integer(5), "targets[1]"},
        {"gating field changed", "targets/0/annotations/myorg.org~security", json_string("no"),
         "targets[0]"},
        {"target not canonical", "targets/1/ref", json_string("Component:default/svc-b"),
         "targets[1]"},
        {"unknown field", "spec/colour", json_string("red"), "unknown field"},
        {"no targets", "targets", NULL, "required"},
        {"bad step", "spec/steps/0/rewrite/paths/0", json_string("../x"), "'..'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *doc = json_deep_copy(plan_json(p)), *parent = doc;
        char keys[256];
        snprintf(keys, sizeof keys, "%s", cases[i].path);
        char *save = NULL, *k = strtok_r(keys, "/", &save), *next;
        while ((next = strtok_r(NULL, "/", &save))) {
            parent = json_is_array(parent) ? json_array_get(parent, (size_t) atoi(k))
                                           : json_object_get(parent, k);
            k = next;
        }
        for (char *t = k; *t; t++)
            if (*t == '~')
                *t = '/'; /* a key holding '/' */
        REQUIRE(parent);
        if (json_is_array(parent))
            json_array_set_new(parent, (size_t) atoi(k), cases[i].value);
        else if (cases[i].value)
            json_object_set_new(parent, k, cases[i].value);
        else
            json_object_del(parent, k);
        diag = plan_diag_new();
        q = NULL;
        int rc = plan_from_json(doc, &q, diag);
        bool named = s_has(plan_diag_errors(diag), "", cases[i].expect) ||
                     s_has(plan_diag_errors(diag), cases[i].expect, NULL);
        if (rc != GG_EINVAL || !named) {
            fprintf(stderr, "case '%s':\n", cases[i].what);
            s_print_diag(diag);
        }
        CHECK_EQ_INT(rc, GG_EINVAL);
        CHECK(q == NULL);
        CHECK(named);
        plan_destroy(&q);
        plan_diag_destroy(&diag);
        json_decref(doc);
    }
    /* Unsorted targets. */
    json_t *doc = json_deep_copy(plan_json(p));
    json_t *targets = json_object_get(doc, "targets");
    REQUIRE(json_array_size(targets) >= 2);
    json_t *first = json_incref(json_array_get(targets, 0));
    json_array_remove(targets, 0);
    json_array_append_new(targets, first);
    diag = plan_diag_new();
    CHECK_EQ_INT(plan_from_json(doc, &q, diag), GG_EINVAL);
    CHECK(s_has(plan_diag_errors(diag), "targets", "sorted"));
    plan_diag_destroy(&diag);
    json_decref(doc);
    json_decref(copy);
    plan_destroy(&p);
}

static void test_render(void)
{
    REQUIRE(s_make_catalog() == 0);
    plan_t *p =
        s_resolved(S_HEAD "  vars: {v: \"it's\"}\n  targets: {include: [other/svc-e]}\n", NULL);
    REQUIRE(p);
    long e = plan_find_target(p, "component:other/svc-e");
    REQUIRE(e >= 0);
    plan_render_ctx_t ctx = {.attempt = 2, .epoch = 7, .workdir = "/w/d"};
    char *out = NULL, err[256];
    CHECK_EQ_INT(plan_render(p, (size_t) e, &ctx,
                             "run {{target.name}} {{target.annotations.gaggle.io/evil}} "
                             "{{vars.v}} {{attempt}} {{epoch}} {{workdir}} {{target.source}} "
                             "{{target.annotations.absent}} {{plan.name}}",
                             TEMPLATE_SHELL, &out, err, sizeof err),
                 0);
    CHECK_STR(out, "run 'svc-e' '$(echo pwned) `id` '\\'' \" ;' 'it'\\''s' '2' '7' '/w/d' "
                   "'./src' '' 'r'");
    free(out);
    CHECK_EQ_INT(plan_render(p, (size_t) e, &ctx, "{{dataset.from}}->{{dataset.to}} {{plan.id}}",
                             TEMPLATE_RAW, &out, err, sizeof err),
                 0);
    char want[256];
    snprintf(want, sizeof want, "resource:default/ds-v1->resource:default/ds-v2 %s", plan_id(p));
    CHECK_STR(out, want);
    free(out);
    CHECK_EQ_INT(plan_render(p, (size_t) -1, NULL, "[{{target.ref}}] {{attempt}}", TEMPLATE_RAW,
                             &out, err, sizeof err),
                 0);
    CHECK_STR(out, "[] 0");
    free(out);
    CHECK_EQ_INT(plan_render(p, 0, &ctx, "{{vars.nope}}", TEMPLATE_RAW, &out, err, sizeof err),
                 GG_ENOTFOUND);
    CHECK(strstr(err, "vars.nope") != NULL);
    CHECK_EQ_INT(plan_render(p, 999, &ctx, "x", TEMPLATE_RAW, &out, err, sizeof err), GG_ENOTFOUND);
    plan_destroy(&p);
}

int main(void)
{
    snprintf(s_dir, sizeof s_dir, "/tmp/gaggle-test-plan-XXXXXX");
    if (!mkdtemp(s_dir)) {
        perror("mkdtemp");
        return 1;
    }
    GG_RUN(test_yamljson_schema);
    GG_RUN(test_yamljson_anchors);
    GG_RUN(test_yamljson_errors);
    GG_RUN(test_yamljson_limits);
    GG_RUN(test_yamljson_documents_and_lines);
    GG_RUN(test_defaults);
    GG_RUN(test_full);
    GG_RUN(test_errors_collected);
    GG_RUN(test_template_checks);
    GG_RUN(test_sandbox);
    GG_RUN(test_limits);
    GG_RUN(test_resolve);
    GG_RUN(test_ids_and_from_json);
    GG_RUN(test_render);
    s_rm_rf(s_dir);
    GG_DONE();
}
