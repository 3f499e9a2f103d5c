/* test_report.c: the migration report renderer (JSON and Markdown) on fake
 * input, including hostile text from steps and malformed documents. */
#include "gg_error.h"
#include "gg_test.h"
#include "report.h"

#include <jansson.h>

static const report_target_t s_targets[] = {
    {.ref = "component:default/alpha",
     .state = "succeeded",
     .attempts = 1,
     .epoch = 1,
     .duration_ms = 1500,
     .node = "n1",
     .started_ms = 1700000000000ull,
     .finished_ms = 1700000001500ull},
    {.ref = "component:default/beta",
     .state = "failed",
     .attempts = 3,
     .epoch = 2,
     .duration_ms = 250,
     .node = "n2",
     .error = "exit 2 | <b>boom</b>\nsecond line"},
    {.ref = "component:default/gamma",
     .state = "needs_review",
     .attempts = 1,
     .node = "n1",
     .error = "verify failed"},
    {.ref = "component:default/delta", .state = "pending"},
    {.ref = "component:default/eps", .state = "succeeded", .attempts = 2, .node = "n3"},
};

static report_input_t s_input(void)
{
    report_input_t in = {
        .id = "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12",
        .name = "user-ds-v2",
        .owner = "group:default/data-platform",
        .state = "active",
        .dataset_from = "resource:default/user-ds-v1",
        .dataset_to = "resource:default/user-ds-v2",
        .generated_ms = 1700000100000ull,
        .targets = s_targets,
        .target_count = sizeof s_targets / sizeof s_targets[0],
    };
    return in;
}

static void test_json_shape(void)
{
    report_input_t in = s_input();
    json_t *doc = NULL;
    REQUIRE(report_json(&in, &doc) == 0);
    REQUIRE(doc != NULL);
    CHECK_STR(json_string_value(json_object_get(doc, "plan")), in.id);
    CHECK_STR(json_string_value(json_object_get(doc, "name")), "user-ds-v2");
    CHECK_STR(json_string_value(json_object_get(doc, "owner")), "group:default/data-platform");
    CHECK(json_is_null(json_object_get(doc, "description")));
    CHECK_STR(json_string_value(json_object_get(doc, "state")), "active");
    json_t *ds = json_object_get(doc, "dataset");
    CHECK_STR(json_string_value(json_object_get(ds, "from")), "resource:default/user-ds-v1");
    CHECK_STR(json_string_value(json_object_get(ds, "to")), "resource:default/user-ds-v2");
    CHECK_STR(json_string_value(json_object_get(doc, "generated")), "2023-11-14T22:15:00Z");
    CHECK_EQ_INT(json_integer_value(json_object_get(doc, "total")), 5);

    json_t *totals = json_object_get(doc, "totals");
    CHECK_EQ_INT(json_object_size(totals), 9); /* every target state, zeros included */
    CHECK_EQ_INT(json_integer_value(json_object_get(totals, "succeeded")), 2);
    CHECK_EQ_INT(json_integer_value(json_object_get(totals, "failed")), 1);
    CHECK_EQ_INT(json_integer_value(json_object_get(totals, "needs_review")), 1);
    CHECK_EQ_INT(json_integer_value(json_object_get(totals, "pending")), 1);
    CHECK(json_is_integer(json_object_get(totals, "cancelled")));
    CHECK_EQ_INT(json_integer_value(json_object_get(totals, "cancelled")), 0);

    json_t *targets = json_object_get(doc, "targets");
    REQUIRE(json_array_size(targets) == 5);
    json_t *a = json_array_get(targets, 0), *b = json_array_get(targets, 1);
    json_t *d = json_array_get(targets, 3);
    CHECK_STR(json_string_value(json_object_get(a, "ref")), "component:default/alpha");
    CHECK_EQ_INT(json_integer_value(json_object_get(a, "attempts")), 1);
    CHECK_EQ_INT(json_integer_value(json_object_get(a, "duration_ms")), 1500);
    CHECK_STR(json_string_value(json_object_get(a, "duration")), "1.5s");
    CHECK_STR(json_string_value(json_object_get(a, "node")), "n1");
    CHECK(json_is_null(json_object_get(a, "error")));
    CHECK_STR(json_string_value(json_object_get(a, "started")), "2023-11-14T22:13:20Z");
    CHECK_STR(json_string_value(json_object_get(b, "error")), "exit 2 | <b>boom</b>\nsecond line");
    CHECK_EQ_INT(json_integer_value(json_object_get(b, "epoch")), 2);
    CHECK(json_is_null(json_object_get(d, "node")));
    CHECK(json_is_null(json_object_get(d, "started")));
    json_decref(doc);
}

static void test_json_refuses_bad_input(void)
{
    report_input_t in = s_input();
    json_t *doc = NULL;
    report_target_t bad[] = {{.ref = "component:default/x", .state = "exploded"}};
    in.targets = bad;
    in.target_count = 1;
    CHECK_EQ_INT(report_json(&in, &doc), GG_EINVAL);
    CHECK(doc == NULL);
    in = s_input();
    in.name = NULL;
    CHECK_EQ_INT(report_json(&in, &doc), GG_EINVAL);
    in = s_input();
    in.target_count = REPORT_TARGETS_MAX + 1;
    CHECK_EQ_INT(report_json(&in, &doc), GG_ETOOBIG);

    /* Invalid UTF-8 from a step's output still gives a valid document. */
    report_target_t raw[] = {
        {.ref = "component:default/x", .state = "failed", .error = "bad \xff\xfe bytes"}};
    in = s_input();
    in.targets = raw;
    in.target_count = 1;
    REQUIRE(report_json(&in, &doc) == 0);
    json_t *t = json_array_get(json_object_get(doc, "targets"), 0);
    CHECK_STR(json_string_value(json_object_get(t, "error")), "bad ?? bytes");
    json_decref(doc);

    /* No targets at all. */
    in = s_input();
    in.targets = NULL;
    in.target_count = 0;
    REQUIRE(report_json(&in, &doc) == 0);
    CHECK_EQ_INT(json_array_size(json_object_get(doc, "targets")), 0);
    char *md = NULL;
    REQUIRE(report_markdown(doc, &md, NULL) == 0);
    CHECK(strstr(md, "No targets.") != NULL);
    CHECK(strstr(md, "None.") != NULL);
    free(md);
    json_decref(doc);
}

static void test_markdown(void)
{
    report_input_t in = s_input();
    json_t *doc = NULL;
    char *md = NULL;
    size_t len = 0;
    REQUIRE(report_json(&in, &doc) == 0);
    REQUIRE(report_markdown(doc, &md, &len) == 0);
    REQUIRE(md != NULL);
    CHECK_EQ_INT(len, strlen(md));
    CHECK(strncmp(md, "# Migration report: user-ds-v2\n", 31) == 0);
    CHECK(strstr(md, "| Dataset from | resource:default/user-ds-v1 |\n") != NULL);
    CHECK(strstr(md, "| Owner | group:default/data-platform |\n") != NULL);
    CHECK(strstr(md, "| Targets | 5 |\n") != NULL);
    CHECK(strstr(md, "| succeeded | 2 |\n") != NULL);
    CHECK(strstr(md, "| cancelled | 0 |\n") != NULL);
    CHECK(strstr(md, "| component:default/alpha | succeeded | 1 | 1.5s | n1 |  |\n") != NULL);
    CHECK(strstr(md, "| component:default/delta | pending | 0 | 0ms |  |  |\n") != NULL);
    /* The hostile error stays in its cell: pipe escaped, HTML neutralised,
     * the newline flattened. */
    CHECK(strstr(md, "| component:default/beta | failed | 3 | 250ms | n2 | exit 2 \\| "
                     "&lt;b&gt;boom&lt;/b&gt; second line |\n") != NULL);
    CHECK(strstr(md, "<b>") == NULL);
    /* Anomalies: the failed and needs_review targets, not the good ones. */
    const char *anom = strstr(md, "## Anomalies");
    REQUIRE(anom != NULL);
    CHECK(strstr(anom, "- component:default/gamma (needs\\_review): verify failed\n") != NULL);
    CHECK(strstr(anom, "- component:default/beta (failed): exit 2") != NULL);
    CHECK(strstr(anom, "alpha") == NULL);
    /* One row per target in the targets table. */
    const char *tbl = strstr(md, "## Targets");
    REQUIRE(tbl != NULL);
    size_t rows = 0;
    for (const char *p = tbl; (p = strstr(p, "\n| component:")) != NULL && p < anom; p++)
        rows++;
    CHECK_EQ_INT(rows, 5);
    free(md);
    json_decref(doc);
}

static void test_markdown_refuses_malformed(void)
{
    const char *bad[] = {
        "[]",
        "{}",
        "{\"plan\": \"x\", \"name\": \"n\", \"dataset\": {}, \"totals\": {}}",
        "{\"plan\": \"x\", \"name\": \"n\", \"dataset\": {}, \"totals\": {}, \"targets\": [1]}",
        "{\"plan\": \"x\", \"name\": \"n\", \"dataset\": {}, \"totals\": {\"failed\": \"1\"}, "
        "\"targets\": []}",
        "{\"plan\": \"x\", \"name\": \"n\", \"dataset\": {}, \"totals\": {}, "
        "\"targets\": [{\"ref\": \"a\", \"state\": \"failed\", \"attempts\": -1, "
        "\"duration_ms\": 0}]}",
        "{\"plan\": \"x\", \"name\": \"n\", \"dataset\": {}, \"totals\": {}, "
        "\"targets\": [{\"ref\": \"a\", \"state\": \"failed\", \"attempts\": 1, "
        "\"duration_ms\": 0, \"error\": 7}]}",
        "{\"plan\": 1, \"name\": \"n\", \"dataset\": {}, \"totals\": {}, \"targets\": []}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *doc = json_loads(bad[i], 0, NULL);
        char *md = (char *) "untouched";
        REQUIRE(doc != NULL);
        CHECK_EQ_INT(report_markdown(doc, &md, NULL), GG_EMALFORMED);
        CHECK(md == NULL);
        json_decref(doc);
    }
    /* The minimal good document renders. */
    json_t *ok = json_loads("{\"plan\": \"x\", \"name\": \"n\", \"dataset\": {}, \"totals\": {},"
                            " \"targets\": [{\"ref\": \"a\", \"state\": \"failed\", \"attempts\":"
                            " 1, \"duration_ms\": 0, \"error\": null, \"node\": null}]}",
                            0, NULL);
    char *md = NULL;
    REQUIRE(ok != NULL);
    CHECK_EQ_INT(report_markdown(ok, &md, NULL), 0);
    CHECK(md && strstr(md, "- a (failed)\n") != NULL);
    free(md);
    json_decref(ok);
}

int main(void)
{
    GG_RUN(test_json_shape);
    GG_RUN(test_json_refuses_bad_input);
    GG_RUN(test_markdown);
    GG_RUN(test_markdown_refuses_malformed);
    GG_DONE();
}
