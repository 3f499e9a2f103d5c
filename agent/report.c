/*
 * report.c: the migration report as JSON and Markdown (see report.h).
 *
 * The JSON is built from a plain input; the Markdown is rendered from the
 * JSON, checking every field it reads, because the CLI renders it from an
 * agent's answer. Text that came from a catalog or a child process (refs,
 * node names, errors) is escaped for Markdown and HTML so a report cannot be
 * turned into links, markup or broken tables by what a step printed.
 */
#include "report.h"

#include "gg_error.h"
#include "progress.h"
#include "units.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- a bounded growing buffer ---- */

typedef struct {
    char *data;
    size_t len, cap;
    int err; /* first error: GG_ENOMEM or GG_ETOOBIG; later appends are no-ops */
} s_buf_t;

static void s_reserve(s_buf_t *b, size_t more)
{
    if (b->err)
        return;
    if (more > REPORT_MD_MAX || b->len + more + 1 > REPORT_MD_MAX) {
        b->err = GG_ETOOBIG;
        return;
    }
    if (b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) {
        b->err = GG_ENOMEM;
        return;
    }
    b->data = data;
    b->cap = cap;
}

static void s_put(s_buf_t *b, const char *text, size_t n)
{
    s_reserve(b, n);
    if (b->err)
        return;
    memcpy(b->data + b->len, text, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void s_puts(s_buf_t *b, const char *text)
{
    s_put(b, text, strlen(text));
}

static void s_printf(s_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_printf(s_buf_t *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        if (!b->err)
            b->err = GG_EINTERNAL;
        return;
    }
    if ((size_t) n < sizeof small) {
        s_put(b, small, (size_t) n);
        return;
    }
    s_reserve(b, (size_t) n);
    if (b->err)
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t) n;
}

/* Appends text escaped for a Markdown table cell or list item: no line
 * breaks, no table pipes, no inline markup, no HTML. At most
 * REPORT_FIELD_MAX bytes of input are used. */
static void s_put_escaped(s_buf_t *b, const char *text)
{
    if (!text)
        return;
    size_t n = strnlen(text, REPORT_FIELD_MAX);
    for (size_t i = 0; i < n && !b->err; i++) {
        unsigned char c = (unsigned char) text[i];
        switch (c) {
        case '&': s_puts(b, "&amp;"); break;
        case '<': s_puts(b, "&lt;"); break;
        case '>': s_puts(b, "&gt;"); break;
        case '|':
        case '\\':
        case '`':
        case '*':
        case '_':
        case '[':
        case ']':
        case '#':
        case '~':
            s_put(b, "\\", 1);
            s_put(b, (const char *) &text[i], 1);
            break;
        default:
            if (c < 0x20 || c == 0x7f)
                s_put(b, " ", 1);
            else
                s_put(b, (const char *) &text[i], 1);
        }
    }
    if (strnlen(text, REPORT_FIELD_MAX + 1) > REPORT_FIELD_MAX)
        s_puts(b, "...");
}

/* ---- JSON ---- */

static void s_iso8601(uint64_t unix_ms, char out[32])
{
    time_t t = (time_t) (unix_ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "%llu", (unsigned long long) (unix_ms / 1000));
}

static json_t *s_opt_string(const char *text)
{
    if (!text || !*text)
        return json_null();
    /* Invalid UTF-8 cannot be a JSON string: keep the printable ASCII. */
    json_t *s = json_stringn(text, strnlen(text, REPORT_FIELD_MAX));
    if (s)
        return s;
    size_t n = strnlen(text, REPORT_FIELD_MAX);
    char *copy = malloc(n + 1);
    if (!copy)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) text[i];
        copy[i] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
    }
    copy[n] = '\0';
    s = json_string(copy);
    free(copy);
    return s;
}

static json_t *s_opt_time(uint64_t unix_ms)
{
    char stamp[32];
    if (unix_ms == 0)
        return json_null();
    s_iso8601(unix_ms, stamp);
    return json_string(stamp);
}

static json_t *s_target_json(const report_target_t *t)
{
    char dur[32];
    json_t *o = json_object();
    if (!o)
        return NULL;
    units_format_duration(t->duration_ms, dur, sizeof dur);
    int rc = 0;
    rc |= json_object_set_new(o, "ref", s_opt_string(t->ref));
    rc |= json_object_set_new(o, "state", json_string(t->state));
    rc |= json_object_set_new(o, "attempts", json_integer((json_int_t) t->attempts));
    rc |= json_object_set_new(o, "epoch", json_integer((json_int_t) t->epoch));
    rc |= json_object_set_new(o, "duration_ms", json_integer((json_int_t) t->duration_ms));
    rc |= json_object_set_new(o, "duration", json_string(dur));
    rc |= json_object_set_new(o, "node", s_opt_string(t->node));
    rc |= json_object_set_new(o, "error", s_opt_string(t->error));
    rc |= json_object_set_new(o, "started", s_opt_time(t->started_ms));
    rc |= json_object_set_new(o, "finished", s_opt_time(t->finished_ms));
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int report_json(const report_input_t *in, json_t **out)
{
    uint32_t counts[TARGET_STATE_COUNT] = {0};
    json_t *doc = NULL, *targets = NULL, *totals = NULL;
    char stamp[32];
    int rc = GG_ENOMEM;
    *out = NULL;
    if (!in || !in->id || !in->name || (in->target_count && !in->targets))
        return GG_EINVAL;
    if (in->target_count > REPORT_TARGETS_MAX)
        return GG_ETOOBIG;
    if (!(targets = json_array()) || !(totals = json_object()))
        goto out;
    for (size_t i = 0; i < in->target_count; i++) {
        const report_target_t *t = &in->targets[i];
        target_state_t st;
        if (!t->ref || !t->state || target_state_parse(t->state, &st) != 0) {
            rc = GG_EINVAL;
            goto out;
        }
        counts[st]++;
        if (json_array_append_new(targets, s_target_json(t)) != 0)
            goto out;
    }
    for (int s = 0; s < TARGET_STATE_COUNT; s++)
        if (json_object_set_new(totals, target_state_name((target_state_t) s),
                                json_integer((json_int_t) counts[s])) != 0)
            goto out;
    s_iso8601(in->generated_ms, stamp);
    doc = json_pack("{s:s, s:s, s:o, s:o, s:s?, s:{s:o, s:o}, s:s, s:I, s:O, s:O}", "plan", in->id,
                    "name", in->name, "owner", s_opt_string(in->owner), "description",
                    s_opt_string(in->description), "state", in->state, "dataset", "from",
                    s_opt_string(in->dataset_from), "to", s_opt_string(in->dataset_to), "generated",
                    stamp, "total", (json_int_t) in->target_count, "totals", totals, "targets",
                    targets);
    if (!doc)
        goto out;
    *out = doc;
    rc = 0;
out:
    json_decref(targets);
    json_decref(totals);
    return rc;
}

/* ---- Markdown ---- */

static const char *s_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* A string or null/absent field; false when present with another type. */
static bool s_opt_str_ok(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return !v || json_is_null(v) || json_is_string(v);
}

static int s_check(const json_t *r)
{
    const json_t *ds = json_object_get(r, "dataset");
    const json_t *targets = json_object_get(r, "targets");
    const json_t *totals = json_object_get(r, "totals");
    if (!json_is_object(r) || !s_str(r, "plan") || !s_str(r, "name") || !json_is_object(ds) ||
        !s_opt_str_ok(ds, "from") || !s_opt_str_ok(ds, "to") || !json_is_array(targets) ||
        !json_is_object(totals) || !s_opt_str_ok(r, "owner") || !s_opt_str_ok(r, "state") ||
        !s_opt_str_ok(r, "description") || !s_opt_str_ok(r, "generated"))
        return GG_EMALFORMED;
    if (json_array_size(targets) > REPORT_TARGETS_MAX)
        return GG_ETOOBIG;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *) totals, key, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return GG_EMALFORMED;
    }
    size_t i;
    json_array_foreach(targets, i, v)
    {
        const json_t *att = json_object_get(v, "attempts");
        const json_t *dur = json_object_get(v, "duration_ms");
        if (!json_is_object(v) || !s_str(v, "ref") || !s_str(v, "state") || !json_is_integer(att) ||
            json_integer_value(att) < 0 || !json_is_integer(dur) || json_integer_value(dur) < 0 ||
            !s_opt_str_ok(v, "node") || !s_opt_str_ok(v, "error"))
            return GG_EMALFORMED;
    }
    return 0;
}

static void s_fact(s_buf_t *b, const char *label, const char *value)
{
    if (!value)
        return;
    s_printf(b, "| %s | ", label);
    s_put_escaped(b, value);
    s_puts(b, " |\n");
}

static bool s_is_anomaly(const json_t *t)
{
    const char *state = s_str(t, "state");
    const char *error = s_str(t, "error");
    return (error && *error) || !strcmp(state, "failed") || !strcmp(state, "needs_review");
}

int report_markdown(const json_t *report, char **out, size_t *len)
{
    s_buf_t b = {0};
    char dur[32];
    *out = NULL;
    if (len)
        *len = 0;
    int rc = s_check(report);
    if (rc)
        return rc;
    const json_t *ds = json_object_get(report, "dataset");
    const json_t *targets = json_object_get(report, "targets");
    const json_t *totals = json_object_get(report, "totals");
    size_t n = json_array_size(targets), i, anomalies = 0;
    const json_t *t;

    s_puts(&b, "# Migration report: ");
    s_put_escaped(&b, s_str(report, "name"));
    s_puts(&b, "\n\n| | |\n|---|---|\n");
    s_fact(&b, "Plan", s_str(report, "plan"));
    s_fact(&b, "Owner", s_str(report, "owner"));
    s_fact(&b, "Description", s_str(report, "description"));
    s_fact(&b, "Dataset from", s_str(ds, "from"));
    s_fact(&b, "Dataset to", s_str(ds, "to"));
    s_fact(&b, "State", s_str(report, "state"));
    s_printf(&b, "| Targets | %zu |\n", n);
    s_fact(&b, "Generated", s_str(report, "generated"));

    s_puts(&b, "\n## Totals\n\n| State | Targets |\n|---|---:|\n");
    for (int s = 0; s < TARGET_STATE_COUNT; s++) {
        const char *name = target_state_name((target_state_t) s);
        json_int_t v = json_integer_value(json_object_get(totals, name));
        s_printf(&b, "| %s | %lld |\n", name, (long long) v);
    }

    s_puts(&b, "\n## Targets\n\n");
    if (n == 0) {
        s_puts(&b, "No targets.\n");
    } else {
        s_puts(&b, "| Target | State | Attempts | Duration | Node | Anomaly |\n"
                   "|---|---|---:|---:|---|---|\n");
        json_array_foreach(targets, i, t)
        {
            s_puts(&b, "| ");
            s_put_escaped(&b, s_str(t, "ref"));
            s_puts(&b, " | ");
            s_put_escaped(&b, s_str(t, "state"));
            s_printf(&b, " | %lld | %s | ",
                     (long long) json_integer_value(json_object_get(t, "attempts")),
                     units_format_duration(
                         (uint64_t) json_integer_value(json_object_get(t, "duration_ms")), dur,
                         sizeof dur));
            s_put_escaped(&b, s_str(t, "node"));
            s_puts(&b, " | ");
            s_put_escaped(&b, s_str(t, "error"));
            s_puts(&b, " |\n");
            if (s_is_anomaly(t))
                anomalies++;
        }
    }

    s_puts(&b, "\n## Anomalies\n\n");
    if (anomalies == 0)
        s_puts(&b, "None.\n");
    json_array_foreach(targets, i, t)
    {
        if (!s_is_anomaly(t))
            continue;
        const char *error = s_str(t, "error");
        s_puts(&b, "- ");
        s_put_escaped(&b, s_str(t, "ref"));
        s_puts(&b, " (");
        s_put_escaped(&b, s_str(t, "state"));
        s_puts(&b, ")");
        if (error && *error) {
            s_puts(&b, ": ");
            s_put_escaped(&b, error);
        }
        s_puts(&b, "\n");
    }
    if (b.err) {
        rc = b.err;
        free(b.data);
        return rc;
    }
    *out = b.data;
    if (len)
        *len = b.len;
    return 0;
}
