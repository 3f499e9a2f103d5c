/* test_metrics.c: the Prometheus registry and its text renderer: escaping,
 * canonical label order, families sorted and grouped, histogram buckets
 * cumulative with +Inf, the series bound, collectors, number formatting, and
 * a rendered sample through `promtool check metrics` when promtool exists. */
#include "gg_error.h"
#include "gg_test.h"
#include "metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define L(...) ((const char *[]){__VA_ARGS__, NULL})

static bool s_contains(const char *text, const char *part)
{
    bool ok = text && strstr(text, part) != NULL;
    if (!ok)
        fprintf(stderr, "  expected \"%s\" in:\n%s\n", part, text ? text : "(null)");
    return ok;
}

static void test_counter_gauge(void)
{
    metrics_t *m = metrics_new();
    REQUIRE(m);
    CHECK_EQ_INT(metrics_describe(m, "t_requests_total", METRICS_COUNTER, "Requests."), 0);
    CHECK_EQ_INT(metrics_describe(m, "t_requests_total", METRICS_COUNTER, "Again."), 0);
    CHECK_EQ_INT(metrics_describe(m, "t_requests_total", METRICS_GAUGE, "Other."), GG_EEXIST);
    CHECK_EQ_INT(metrics_describe(m, "t_temp", METRICS_GAUGE, "Temperature."), 0);
    CHECK_EQ_INT(metrics_counter_add(m, "t_requests_total", L("code", "200"), 1), 0);
    CHECK_EQ_INT(metrics_counter_add(m, "t_requests_total", L("code", "200"), 2), 0);
    CHECK_EQ_INT(metrics_counter_add(m, "t_requests_total", L("code", "500"), 1), 0);
    CHECK_EQ_INT(metrics_counter_add(m, "t_requests_total", L("code", "500"), -1), GG_EINVAL);
    CHECK_EQ_INT(metrics_counter_add(m, "t_requests_total", L("code", "500"), NAN), GG_EINVAL);
    CHECK_EQ_INT(metrics_gauge_set(m, "t_requests_total", NULL, 1), GG_EINVAL); /* wrong type */
    CHECK_EQ_INT(metrics_counter_add(m, "t_undeclared", NULL, 1), GG_ENOTFOUND);
    CHECK_EQ_INT(metrics_gauge_set(m, "t_temp", NULL, 21.5), 0);
    CHECK_EQ_INT(metrics_gauge_add(m, "t_temp", NULL, -0.25), 0);
    double v = 0;
    CHECK_EQ_INT(metrics_value(m, "t_requests_total", L("code", "200"), &v), 0);
    CHECK(v == 3);
    CHECK_EQ_INT(metrics_value(m, "t_temp", NULL, &v), 0);
    CHECK(v == 21.25);
    CHECK_EQ_INT(metrics_value(m, "t_temp", L("x", "y"), &v), GG_ENOTFOUND);
    CHECK_EQ_INT(metrics_counter_set(m, "t_requests_total", L("code", "404"), 7), 0);

    char *text = metrics_render(m);
    REQUIRE(text);
    CHECK(s_contains(text, "# HELP t_requests_total Requests.\n"
                           "# TYPE t_requests_total counter\n"
                           "t_requests_total{code=\"200\"} 3\n"
                           "t_requests_total{code=\"404\"} 7\n"
                           "t_requests_total{code=\"500\"} 1\n"));
    CHECK(s_contains(text, "# TYPE t_temp gauge\nt_temp 21.25\n"));
    free(text);
    metrics_destroy(&m);
    CHECK(m == NULL);
    metrics_destroy(&m); /* NULL-safe */
}

static void test_escaping(void)
{
    metrics_t *m = metrics_new();
    REQUIRE(m);
    REQUIRE(metrics_describe(m, "t_esc", METRICS_GAUGE, "Help with \\ and\nnewline \"q\".") == 0);
    CHECK_EQ_INT(metrics_gauge_set(m, "t_esc", L("path", "a\\b\"c\nd"), 1), 0);
    /* invalid UTF-8 becomes U+FFFD; valid multi-byte text is kept */
    CHECK_EQ_INT(metrics_gauge_set(m, "t_esc", L("path", "x\xff\xc3\xa9"), 2), 0);
    char *text = metrics_render(m);
    REQUIRE(text);
    CHECK(s_contains(text, "# HELP t_esc Help with \\\\ and\\nnewline \"q\".\n"));
    CHECK(s_contains(text, "t_esc{path=\"a\\\\b\\\"c\\nd\"} 1\n"));
    CHECK(s_contains(text, "t_esc{path=\"x\xef\xbf\xbd\xc3\xa9\"} 2\n"));
    free(text);
    metrics_destroy(&m);
}

static void test_labels(void)
{
    metrics_t *m = metrics_new();
    REQUIRE(m);
    REQUIRE(metrics_describe(m, "t_l", METRICS_GAUGE, "Labels.") == 0);
    /* pairs are sorted by name: both orders are one series */
    CHECK_EQ_INT(metrics_gauge_set(m, "t_l", L("b", "1", "a", "2"), 5), 0);
    CHECK_EQ_INT(metrics_gauge_add(m, "t_l", L("a", "2", "b", "1"), 1), 0);
    CHECK_EQ_INT(metrics_gauge_set(m, "t_l", L("a", "1", "a", "2"), 1), GG_EINVAL);
    CHECK_EQ_INT(metrics_gauge_set(m, "t_l", L("9a", "1"), 1), GG_EINVAL);
    CHECK_EQ_INT(metrics_gauge_set(m, "t_l", L("__reserved", "1"), 1), GG_EINVAL);
    CHECK_EQ_INT(metrics_gauge_set(m, "t_l", L("a-b", "1"), 1), GG_EINVAL);
    CHECK_EQ_INT(metrics_describe(m, "bad-name", METRICS_GAUGE, "x"), GG_EINVAL);
    CHECK_EQ_INT(metrics_describe(m, "0bad", METRICS_GAUGE, "x"), GG_EINVAL);
    CHECK_EQ_INT(metrics_describe(m, "ok:name_1", METRICS_GAUGE, "x"), 0);
    char *text = metrics_render(m);
    REQUIRE(text);
    CHECK(s_contains(text, "t_l{a=\"2\",b=\"1\"} 6\n"));
    free(text);
    metrics_destroy(&m);
}

static void test_sorted_grouped(void)
{
    metrics_t *m = metrics_new();
    REQUIRE(m);
    REQUIRE(metrics_describe(m, "zz_last", METRICS_GAUGE, "Z.") == 0);
    REQUIRE(metrics_describe(m, "aa_first", METRICS_COUNTER, "A.") == 0);
    REQUIRE(metrics_describe(m, "mm_middle", METRICS_GAUGE, "M.") == 0);
    metrics_gauge_set(m, "zz_last", L("k", "2"), 1);
    metrics_counter_add(m, "aa_first", NULL, 1);
    metrics_gauge_set(m, "mm_middle", NULL, 1);
    metrics_gauge_set(m, "zz_last", L("k", "1"), 1);
    char *text = metrics_render(m);
    REQUIRE(text);
    char *a = strstr(text, "# HELP aa_first"), *mm = strstr(text, "# HELP mm_middle"),
         *z = strstr(text, "# HELP zz_last");
    REQUIRE(a && mm && z);
    CHECK(a < mm && mm < z);
    /* a family's samples directly follow its TYPE line, sorted */
    CHECK(s_contains(text, "# TYPE zz_last gauge\nzz_last{k=\"1\"} 1\nzz_last{k=\"2\"} 1\n"));
    CHECK(s_contains(text, "# TYPE aa_first counter\naa_first 1\n"));
    free(text);
    metrics_destroy(&m);
}

static void test_histogram(void)
{
    const double buckets[] = {0.1, 1, 10};
    metrics_t *m = metrics_new();
    REQUIRE(m);
    CHECK_EQ_INT(metrics_histogram_describe(m, "t_dur_seconds", "Durations.", buckets, 3), 0);
    CHECK_EQ_INT(metrics_histogram_describe(m, "t_dur_seconds", "Durations.", buckets, 2),
                 GG_EEXIST);
    const double unsorted[] = {1, 0.5};
    CHECK_EQ_INT(metrics_histogram_describe(m, "t_bad", "x", unsorted, 2), GG_EINVAL);
    const double inf[] = {1, INFINITY};
    CHECK_EQ_INT(metrics_histogram_describe(m, "t_bad", "x", inf, 2), GG_EINVAL);
    CHECK_EQ_INT(metrics_histogram_describe(m, "t_bad", "x", buckets, 0), GG_EINVAL);
    const double obs[] = {0.05, 0.5, 0.5, 1, 5, 50};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
        CHECK_EQ_INT(metrics_histogram_observe(m, "t_dur_seconds", L("step", "build"), obs[i]), 0);
    CHECK_EQ_INT(metrics_histogram_observe(m, "t_dur_seconds", L("le", "1"), 1), GG_EINVAL);
    CHECK_EQ_INT(metrics_histogram_observe(m, "t_dur_seconds", NULL, NAN), GG_EINVAL);
    CHECK_EQ_INT(metrics_histogram_observe(m, "t_dur_seconds", NULL, 0.2), 0);
    char *text = metrics_render(m);
    REQUIRE(text);
    CHECK(s_contains(text, "# TYPE t_dur_seconds histogram\n"
                           "t_dur_seconds_bucket{le=\"0.1\"} 0\n"
                           "t_dur_seconds_bucket{le=\"1\"} 1\n"
                           "t_dur_seconds_bucket{le=\"10\"} 1\n"
                           "t_dur_seconds_bucket{le=\"+Inf\"} 1\n"
                           "t_dur_seconds_sum 0.2\n"
                           "t_dur_seconds_count 1\n"
                           "t_dur_seconds_bucket{step=\"build\",le=\"0.1\"} 1\n"
                           "t_dur_seconds_bucket{step=\"build\",le=\"1\"} 4\n"
                           "t_dur_seconds_bucket{step=\"build\",le=\"10\"} 5\n"
                           "t_dur_seconds_bucket{step=\"build\",le=\"+Inf\"} 6\n"
                           "t_dur_seconds_sum{step=\"build\"} 57.05\n"
                           "t_dur_seconds_count{step=\"build\"} 6\n"));
    free(text);
    metrics_destroy(&m);
}

static void test_numbers(void)
{
    metrics_t *m = metrics_new();
    REQUIRE(m);
    REQUIRE(metrics_describe(m, "t_n", METRICS_GAUGE, "Numbers.") == 0);
    metrics_gauge_set(m, "t_n", L("v", "a"), 0.1);
    metrics_gauge_set(m, "t_n", L("v", "b"), 1e-7);
    metrics_gauge_set(m, "t_n", L("v", "c"), NAN);
    metrics_gauge_set(m, "t_n", L("v", "d"), -INFINITY);
    metrics_gauge_set(m, "t_n", L("v", "e"), 1234567890123.0);
    metrics_gauge_set(m, "t_n", L("v", "f"), -3);
    metrics_gauge_set(m, "t_n", L("v", "g"), 1.0 / 3.0);
    char *text = metrics_render(m);
    REQUIRE(text);
    CHECK(s_contains(text, "t_n{v=\"a\"} 0.1\n"));
    CHECK(s_contains(text, "t_n{v=\"b\"} 1e-07\n"));
    CHECK(s_contains(text, "t_n{v=\"c\"} NaN\n"));
    CHECK(s_contains(text, "t_n{v=\"d\"} -Inf\n"));
    CHECK(s_contains(text, "t_n{v=\"e\"} 1234567890123\n"));
    CHECK(s_contains(text, "t_n{v=\"f\"} -3\n"));
    CHECK(s_contains(text, "t_n{v=\"g\"} 0.33333333333333331\n"));
    free(text);
    metrics_destroy(&m);
}

static int s_collected;

static void s_collector(metrics_t *m, void *arg)
{
    s_collected++;
    metrics_family_reset(m, "t_members");
    metrics_gauge_set(m, "t_members", L("state", "alive"), *(int *) arg);
}

static void test_collect_reset(void)
{
    int alive = 3;
    metrics_t *m = metrics_new();
    REQUIRE(m);
    REQUIRE(metrics_describe(m, "t_members", METRICS_GAUGE, "Members.") == 0);
    metrics_gauge_set(m, "t_members", L("state", "dead"), 9); /* stale: reset drops it */
    CHECK_EQ_INT(metrics_on_collect(m, s_collector, &alive), 0);
    CHECK_EQ_INT(metrics_family_reset(m, "t_nope"), GG_ENOTFOUND);
    s_collected = 0;
    char *text = metrics_render(m);
    REQUIRE(text);
    CHECK_EQ_INT(s_collected, 1);
    CHECK(s_contains(text, "t_members{state=\"alive\"} 3\n"));
    CHECK(strstr(text, "state=\"dead\"") == NULL);
    free(text);
    for (int i = 1; i < METRICS_COLLECTORS_MAX; i++)
        CHECK_EQ_INT(metrics_on_collect(m, s_collector, &alive), 0);
    CHECK_EQ_INT(metrics_on_collect(m, s_collector, &alive), GG_ETOOBIG);
    metrics_destroy(&m);
}

static void test_series_bound(void)
{
    char value[32];
    metrics_t *m = metrics_new();
    REQUIRE(m);
    REQUIRE(metrics_describe(m, "t_many", METRICS_COUNTER, "Many.") == 0);
    for (int i = 0; i < METRICS_SERIES_MAX; i++) {
        snprintf(value, sizeof value, "%d", i);
        if (metrics_counter_add(m, "t_many", L("i", value), 1) != 0) {
            CHECK(!"series refused below the bound");
            break;
        }
    }
    CHECK_EQ_INT(metrics_counter_add(m, "t_many", L("i", "one-too-many"), 1), GG_ETOOBIG);
    CHECK_EQ_INT(metrics_counter_add(m, "t_many", L("i", "two-too-many"), 1), GG_ETOOBIG);
    /* an existing series still counts */
    CHECK_EQ_INT(metrics_counter_add(m, "t_many", L("i", "7"), 1), 0);
    double v = 0;
    CHECK_EQ_INT(metrics_value(m, "gaggle_metrics_dropped_total", L("family", "t_many"), &v), 0);
    CHECK(v == 2);
    CHECK_EQ_INT(metrics_value(m, "t_many", L("i", "7"), &v), 0);
    CHECK(v == 2);
    metrics_destroy(&m);
}

static void test_process(void)
{
    metrics_t *m = metrics_new();
    REQUIRE(m);
    REQUIRE(metrics_on_collect(m, metrics_collect_process, NULL) == 0);
    char *text = metrics_render(m);
    REQUIRE(text);
    CHECK(s_contains(text, "# TYPE process_cpu_seconds_total counter\n"));
    CHECK(s_contains(text, "\nprocess_open_fds "));
    CHECK(s_contains(text, "\nprocess_resident_memory_bytes "));
    CHECK(s_contains(text, "\nprocess_virtual_memory_bytes "));
    CHECK(s_contains(text, "\nprocess_start_time_seconds "));
    double fds = 0, start = 0;
    CHECK_EQ_INT(metrics_value(m, "process_open_fds", NULL, &fds), 0);
    CHECK(fds >= 3);
    CHECK_EQ_INT(metrics_value(m, "process_start_time_seconds", NULL, &start), 0);
    CHECK(start > 1.5e9);
    free(text);
    metrics_destroy(&m);
}

static bool s_have_promtool(void)
{
    return system("command -v promtool >/dev/null 2>&1") == 0;
}

/* A sample with every feature, checked by Prometheus's own linter. */
static void test_promtool(void)
{
    if (!s_have_promtool()) {
        fprintf(stderr, "  promtool not on PATH: skipping the promtool check\n");
        return;
    }
    const double buckets[] = {0.005, 0.5, 30};
    metrics_t *m = metrics_new();
    REQUIRE(m);
    metrics_describe(m, "gaggle_members", METRICS_GAUGE, "Members by state, this node's view.");
    metrics_gauge_set(m, "gaggle_members", L("state", "alive"), 3);
    metrics_gauge_set(m, "gaggle_members", L("state", "quote\"back\\slash\nnewline"), 1);
    metrics_describe(m, "gaggle_http_requests_total", METRICS_COUNTER, "HTTP requests.");
    metrics_counter_add(m, "gaggle_http_requests_total", L("code", "200"), 4);
    metrics_histogram_describe(m, "gaggle_step_duration_seconds", "Step durations.", buckets, 3);
    metrics_histogram_observe(m, "gaggle_step_duration_seconds", L("step", "build"), 0.25);
    metrics_histogram_observe(m, "gaggle_step_duration_seconds", L("step", "build"), 100);
    metrics_on_collect(m, metrics_collect_process, NULL);
    char *text = metrics_render(m);
    REQUIRE(text);
    char path[] = "/tmp/gg-test-metrics-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    FILE *f = fdopen(fd, "w");
    REQUIRE(f);
    fputs(text, f);
    fclose(f);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "  promtool rejected:\n%s\n", text);
    CHECK_EQ_INT(rc, 0);
    unlink(path);
    free(text);
    metrics_destroy(&m);
}

int main(void)
{
    GG_RUN(test_counter_gauge);
    GG_RUN(test_escaping);
    GG_RUN(test_labels);
    GG_RUN(test_sorted_grouped);
    GG_RUN(test_histogram);
    GG_RUN(test_numbers);
    GG_RUN(test_collect_reset);
    GG_RUN(test_series_bound);
    GG_RUN(test_process);
    GG_RUN(test_promtool);
    GG_DONE();
}
