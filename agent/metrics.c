/*
 * metrics.c: the Prometheus registry and its text renderer (see metrics.h).
 *
 * Families live in an array sorted by name, series in an array per family
 * sorted by their canonical label text, both found by binary search. The
 * canonical label text is the label pairs sorted by name, values escaped and
 * made valid UTF-8: it is both the series key and what is printed between
 * the braces, so rendering is a walk over the arrays. Histogram series keep
 * per-bucket counts and make them cumulative when rendered.
 */
#include "metrics.h"
#include "gg_error.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define S_DROPPED  "gaggle_metrics_dropped_total"
#define S_NAME_MAX 200

typedef struct {
    char *labels;     /* canonical 'a="x",b="y"', "" for none */
    double value;     /* counter and gauge */
    uint64_t *counts; /* histogram: per bucket, last one +Inf; not cumulative */
    double sum;
    uint64_t count;
} s_series_t;

typedef struct {
    char *name;
    char *help;
    metrics_type_t type;
    double *buckets;
    size_t nbuckets;
    s_series_t **series;
    size_t nseries;
    size_t cap;
} s_family_t;

typedef struct {
    metrics_collect_fn *fn;
    void *arg;
} s_collector_t;

struct _metrics_t {
    s_family_t **families;
    size_t nfamilies;
    size_t cap;
    s_collector_t collectors[METRICS_COLLECTORS_MAX];
    size_t ncollectors;
};

/* ---- a bounded string builder ---- */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
    bool failed;
} s_buf_t;

static void s_buf_append(s_buf_t *b, const char *text, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > b->max + 1)
            cap = b->max + 1;
        if (b->len + n + 1 > cap) {
            b->failed = true;
            return;
        }
        char *data = realloc(b->data, cap);
        if (!data) {
            b->failed = true;
            return;
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, text, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void s_buf_puts(s_buf_t *b, const char *text)
{
    s_buf_append(b, text, strlen(text));
}

static void s_buf_printf(s_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_buf_printf(s_buf_t *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t) n >= sizeof tmp) {
        b->failed = true;
        return;
    }
    s_buf_append(b, tmp, (size_t) n);
}

/* ---- names, values, labels ---- */

static bool s_valid_metric_name(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > S_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                  (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static bool s_valid_label_name(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > S_NAME_MAX || strncmp(name, "__", 2) == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0. */
static size_t s_utf8_len(const unsigned char *p, size_t n)
{
    size_t len;
    uint32_t cp;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xE0) == 0xC0) {
        len = 2;
        cp = p[0] & 0x1F;
    } else if ((p[0] & 0xF0) == 0xE0) {
        len = 3;
        cp = p[0] & 0x0F;
    } else if ((p[0] & 0xF8) == 0xF0) {
        len = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* Escapes a label value: \\ \" \n; bytes that are not UTF-8 become U+FFFD. */
static void s_escape_label_value(s_buf_t *b, const char *value)
{
    const unsigned char *p = (const unsigned char *) value;
    size_t n = strlen(value);
    if (n > METRICS_LABEL_VALUE_MAX)
        n = METRICS_LABEL_VALUE_MAX;
    for (size_t i = 0; i < n;) {
        size_t len = s_utf8_len(p + i, n - i);
        if (len == 0) {
            s_buf_puts(b, "\xEF\xBF\xBD");
            i++;
            continue;
        }
        if (p[i] == '\\')
            s_buf_puts(b, "\\\\");
        else if (p[i] == '"')
            s_buf_puts(b, "\\\"");
        else if (p[i] == '\n')
            s_buf_puts(b, "\\n");
        else
            s_buf_append(b, (const char *) p + i, len);
        i += len;
    }
}

/* HELP text escapes only backslash and newline. */
static void s_escape_help(s_buf_t *b, const char *help)
{
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            s_buf_puts(b, "\\\\");
        else if (*p == '\n')
            s_buf_puts(b, "\\n");
        else
            s_buf_append(b, p, 1);
    }
}

/* Prometheus floats: integers plainly, others in the shortest form that
 * reads back exactly; NaN, +Inf and -Inf by name. */
static void s_format_double(double v, char *out, size_t len)
{
    if (isnan(v)) {
        snprintf(out, len, "NaN");
    } else if (isinf(v)) {
        snprintf(out, len, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        snprintf(out, len, "%.0f", v);
    } else {
        snprintf(out, len, "%.15g", v);
        if (strtod(out, NULL) != v)
            snprintf(out, len, "%.17g", v);
    }
}

/* Builds the canonical label text for labels (pairs sorted by name).
 * Returns 0, GG_EINVAL for a bad or repeated name (or "le" on a histogram),
 * GG_ENOMEM. */
static int s_canonical_labels(const char *const *labels, bool histogram, char **out)
{
    const char *names[METRICS_LABELS_MAX], *values[METRICS_LABELS_MAX];
    size_t n = 0;
    s_buf_t b = {NULL, 0, 0, (size_t) METRICS_LABELS_MAX * (METRICS_LABEL_VALUE_MAX * 3 + 256),
                 false};
    *out = NULL;
    for (size_t i = 0; labels && labels[i]; i += 2) {
        if (n == METRICS_LABELS_MAX || !labels[i + 1] || !s_valid_label_name(labels[i]) ||
            (histogram && strcmp(labels[i], "le") == 0))
            return GG_EINVAL;
        /* insertion sort by name */
        size_t j = n;
        while (j > 0 && strcmp(names[j - 1], labels[i]) > 0) {
            names[j] = names[j - 1];
            values[j] = values[j - 1];
            j--;
        }
        if (j > 0 && strcmp(names[j - 1], labels[i]) == 0)
            return GG_EINVAL;
        names[j] = labels[i];
        values[j] = labels[i + 1];
        n++;
    }
    s_buf_puts(&b, "");
    for (size_t i = 0; i < n; i++) {
        s_buf_printf(&b, "%s%s=\"", i ? "," : "", names[i]);
        s_escape_label_value(&b, values[i]);
        s_buf_puts(&b, "\"");
    }
    if (b.failed) {
        free(b.data);
        return GG_ENOMEM;
    }
    *out = b.data;
    return GG_OK;
}

/* ---- families and series ---- */

static size_t s_family_search(const metrics_t *self, const char *name, bool *found)
{
    size_t lo = 0, hi = self->nfamilies;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(self->families[mid]->name, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static s_family_t *s_family(const metrics_t *self, const char *name)
{
    bool found;
    size_t at = s_family_search(self, name, &found);
    return found ? self->families[at] : NULL;
}

static void s_series_free(s_series_t *s)
{
    if (!s)
        return;
    free(s->labels);
    free(s->counts);
    free(s);
}

static void s_family_free(s_family_t *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->nseries; i++)
        s_series_free(f->series[i]);
    free(f->series);
    free(f->buckets);
    free(f->name);
    free(f->help);
    free(f);
}

static int s_add_family(metrics_t *self, const char *name, metrics_type_t type, const char *help,
                        const double *buckets, size_t nbuckets)
{
    int rc = GG_OK;
    bool found;
    s_family_t *f = NULL;
    if (!s_valid_metric_name(name) || !help)
        return GG_EINVAL;
    size_t at = s_family_search(self, name, &found);
    if (found)
        return self->families[at]->type == type ? GG_OK : GG_EEXIST;
    if (self->nfamilies >= METRICS_FAMILIES_MAX)
        return GG_ETOOBIG;
    if (self->nfamilies == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 32;
        s_family_t **list = realloc(self->families, cap * sizeof *list);
        if (!list)
            return GG_ENOMEM;
        self->families = list;
        self->cap = cap;
    }
    f = calloc(1, sizeof *f);
    if (!f)
        return GG_ENOMEM;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help);
    if (!f->name || !f->help) {
        rc = GG_ENOMEM;
        goto out;
    }
    if (nbuckets) {
        f->buckets = malloc(nbuckets * sizeof *f->buckets);
        if (!f->buckets) {
            rc = GG_ENOMEM;
            goto out;
        }
        memcpy(f->buckets, buckets, nbuckets * sizeof *f->buckets);
        f->nbuckets = nbuckets;
    }
    memmove(self->families + at + 1, self->families + at,
            (self->nfamilies - at) * sizeof *self->families);
    self->families[at] = f;
    self->nfamilies++;
    f = NULL;
out:
    s_family_free(f);
    return rc;
}

static size_t s_series_search(const s_family_t *f, const char *labels, bool *found)
{
    size_t lo = 0, hi = f->nseries;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(f->series[mid]->labels, labels);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static void s_count_dropped(metrics_t *self, const char *family);

/* Finds or creates the series of family name for labels; the family must
 * have the given type. */
static int s_series(metrics_t *self, const char *name, metrics_type_t type,
                    const char *const *labels, bool create, s_series_t **out)
{
    int rc = GG_OK;
    char *key = NULL;
    s_series_t *s = NULL;
    bool found;
    *out = NULL;
    s_family_t *f = name ? s_family(self, name) : NULL;
    if (!f)
        return GG_ENOTFOUND;
    if (f->type != type)
        return GG_EINVAL;
    rc = s_canonical_labels(labels, type == METRICS_HISTOGRAM, &key);
    if (rc)
        return rc;
    size_t at = s_series_search(f, key, &found);
    if (found) {
        *out = f->series[at];
        goto out;
    }
    if (!create) {
        rc = GG_ENOTFOUND;
        goto out;
    }
    if (f->nseries >= METRICS_SERIES_MAX) {
        s_count_dropped(self, f->name);
        rc = GG_ETOOBIG;
        goto out;
    }
    if (f->nseries == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        s_series_t **list = realloc(f->series, cap * sizeof *list);
        if (!list) {
            rc = GG_ENOMEM;
            goto out;
        }
        f->series = list;
        f->cap = cap;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        rc = GG_ENOMEM;
        goto out;
    }
    if (type == METRICS_HISTOGRAM) {
        s->counts = calloc(f->nbuckets + 1, sizeof *s->counts);
        if (!s->counts) {
            rc = GG_ENOMEM;
            goto out;
        }
    }
    s->labels = key;
    key = NULL;
    memmove(f->series + at + 1, f->series + at, (f->nseries - at) * sizeof *f->series);
    f->series[at] = s;
    f->nseries++;
    *out = s;
    s = NULL;
out:
    s_series_free(s);
    free(key);
    return rc;
}

static void s_count_dropped(metrics_t *self, const char *family)
{
    s_series_t *s = NULL;
    if (strcmp(family, S_DROPPED) == 0)
        return;
    if (s_series(self, S_DROPPED, METRICS_COUNTER, (const char *[]){"family", family, NULL}, true,
                 &s) == GG_OK)
        s->value += 1;
}

/* ---- public API ---- */

metrics_t *metrics_new(void)
{
    metrics_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    if (metrics_describe(self, S_DROPPED, METRICS_COUNTER,
                         "Series not recorded because their family reached its series limit.")) {
        metrics_destroy(&self);
        return NULL;
    }
    return self;
}

void metrics_destroy(metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    metrics_t *self = *self_p;
    for (size_t i = 0; i < self->nfamilies; i++)
        s_family_free(self->families[i]);
    free(self->families);
    free(self);
    *self_p = NULL;
}

int metrics_describe(metrics_t *self, const char *name, metrics_type_t type, const char *help)
{
    if (type != METRICS_COUNTER && type != METRICS_GAUGE)
        return GG_EINVAL;
    return s_add_family(self, name, type, help, NULL, 0);
}

int metrics_histogram_describe(metrics_t *self, const char *name, const char *help,
                               const double *buckets, size_t n)
{
    if (n == 0 || n > METRICS_BUCKETS_MAX || !buckets)
        return GG_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
            return GG_EINVAL;
    s_family_t *f = s_family(self, name);
    if (f && f->type == METRICS_HISTOGRAM &&
        (f->nbuckets != n || memcmp(f->buckets, buckets, n * sizeof *buckets) != 0))
        return GG_EEXIST;
    return s_add_family(self, name, METRICS_HISTOGRAM, help, buckets, n);
}

int metrics_counter_add(metrics_t *self, const char *name, const char *const *labels, double v)
{
    s_series_t *s;
    if (!(v >= 0) || isinf(v))
        return GG_EINVAL;
    int rc = s_series(self, name, METRICS_COUNTER, labels, true, &s);
    if (!rc)
        s->value += v;
    return rc;
}

int metrics_counter_set(metrics_t *self, const char *name, const char *const *labels, double v)
{
    s_series_t *s;
    if (!(v >= 0))
        return GG_EINVAL;
    int rc = s_series(self, name, METRICS_COUNTER, labels, true, &s);
    if (!rc)
        s->value = v;
    return rc;
}

int metrics_gauge_set(metrics_t *self, const char *name, const char *const *labels, double v)
{
    s_series_t *s;
    int rc = s_series(self, name, METRICS_GAUGE, labels, true, &s);
    if (!rc)
        s->value = v;
    return rc;
}

int metrics_gauge_add(metrics_t *self, const char *name, const char *const *labels, double v)
{
    s_series_t *s;
    int rc = s_series(self, name, METRICS_GAUGE, labels, true, &s);
    if (!rc)
        s->value += v;
    return rc;
}

int metrics_histogram_observe(metrics_t *self, const char *name, const char *const *labels,
                              double v)
{
    s_series_t *s;
    if (isnan(v))
        return GG_EINVAL;
    int rc = s_series(self, name, METRICS_HISTOGRAM, labels, true, &s);
    if (rc)
        return rc;
    s_family_t *f = s_family(self, name);
    size_t i = 0;
    while (i < f->nbuckets && v > f->buckets[i])
        i++;
    s->counts[i]++;
    s->count++;
    s->sum += v;
    return GG_OK;
}

int metrics_value(metrics_t *self, const char *name, const char *const *labels, double *value)
{
    s_series_t *s;
    s_family_t *f = name ? s_family(self, name) : NULL;
    if (!f || f->type == METRICS_HISTOGRAM)
        return GG_ENOTFOUND;
    int rc = s_series(self, name, f->type, labels, false, &s);
    if (!rc)
        *value = s->value;
    return rc;
}

int metrics_family_reset(metrics_t *self, const char *name)
{
    s_family_t *f = name ? s_family(self, name) : NULL;
    if (!f)
        return GG_ENOTFOUND;
    for (size_t i = 0; i < f->nseries; i++)
        s_series_free(f->series[i]);
    f->nseries = 0;
    return GG_OK;
}

int metrics_on_collect(metrics_t *self, metrics_collect_fn *fn, void *arg)
{
    if (!fn)
        return GG_EINVAL;
    if (self->ncollectors >= METRICS_COLLECTORS_MAX)
        return GG_ETOOBIG;
    self->collectors[self->ncollectors++] = (s_collector_t){fn, arg};
    return GG_OK;
}

static const char *s_type_name(metrics_type_t type)
{
    switch (type) {
    case METRICS_COUNTER: return "counter";
    case METRICS_GAUGE: return "gauge";
    default: return "histogram";
    }
}

static void s_render_histogram(s_buf_t *b, const s_family_t *f, const s_series_t *s)
{
    char num[64], le[64];
    const char *sep = s->labels[0] ? "," : "";
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= f->nbuckets; i++) {
        cumulative += s->counts[i];
        if (i < f->nbuckets)
            s_format_double(f->buckets[i], le, sizeof le);
        else
            snprintf(le, sizeof le, "+Inf");
        s_buf_printf(b, "%s_bucket{", f->name);
        s_buf_puts(b, s->labels);
        s_buf_printf(b, "%sle=\"%s\"} %llu\n", sep, le, (unsigned long long) cumulative);
    }
    s_format_double(s->sum, num, sizeof num);
    s_buf_printf(b, "%s_sum", f->name);
    if (s->labels[0]) {
        s_buf_puts(b, "{");
        s_buf_puts(b, s->labels);
        s_buf_puts(b, "}");
    }
    s_buf_printf(b, " %s\n%s_count", num, f->name);
    if (s->labels[0]) {
        s_buf_puts(b, "{");
        s_buf_puts(b, s->labels);
        s_buf_puts(b, "}");
    }
    s_buf_printf(b, " %llu\n", (unsigned long long) s->count);
}

char *metrics_render(metrics_t *self)
{
    char num[64];
    s_buf_t b = {NULL, 0, 0, METRICS_RENDER_MAX, false};
    for (size_t i = 0; i < self->ncollectors; i++)
        self->collectors[i].fn(self, self->collectors[i].arg);
    s_buf_puts(&b, "");
    for (size_t i = 0; i < self->nfamilies; i++) {
        const s_family_t *f = self->families[i];
        s_buf_printf(&b, "# HELP %s ", f->name);
        s_escape_help(&b, f->help);
        s_buf_printf(&b, "\n# TYPE %s %s\n", f->name, s_type_name(f->type));
        for (size_t j = 0; j < f->nseries; j++) {
            const s_series_t *s = f->series[j];
            if (f->type == METRICS_HISTOGRAM) {
                s_render_histogram(&b, f, s);
                continue;
            }
            s_buf_puts(&b, f->name);
            if (s->labels[0]) {
                s_buf_puts(&b, "{");
                s_buf_puts(&b, s->labels);
                s_buf_puts(&b, "}");
            }
            s_format_double(s->value, num, sizeof num);
            s_buf_printf(&b, " %s\n", num);
        }
    }
    if (b.failed) {
        free(b.data);
        return NULL;
    }
    return b.data;
}

/* ---- process metrics from /proc ---- */

static int s_read_file(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return GG_EIO;
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
    return n ? GG_OK : GG_EIO;
}

static double s_boot_time(void)
{
    char buf[16384];
    if (s_read_file("/proc/stat", buf, sizeof buf))
        return 0;
    const char *p = strstr(buf, "\nbtime ");
    return p ? strtod(p + 7, NULL) : 0;
}

void metrics_collect_process(metrics_t *m, void *arg)
{
    char buf[4096];
    (void) arg;
    metrics_describe(m, "process_start_time_seconds", METRICS_GAUGE,
                     "Start time of the process since unix epoch in seconds.");
    metrics_describe(m, "process_resident_memory_bytes", METRICS_GAUGE,
                     "Resident memory size in bytes.");
    metrics_describe(m, "process_virtual_memory_bytes", METRICS_GAUGE,
                     "Virtual memory size in bytes.");
    metrics_describe(m, "process_open_fds", METRICS_GAUGE, "Number of open file descriptors.");
    metrics_describe(m, "process_max_fds", METRICS_GAUGE,
                     "Maximum number of open file descriptors.");
    metrics_describe(m, "process_cpu_seconds_total", METRICS_COUNTER,
                     "Total user and system CPU time spent in seconds.");

    if (s_read_file("/proc/self/stat", buf, sizeof buf) == GG_OK) {
        /* Fields after the command name, which may hold spaces and ')'. */
        const char *p = strrchr(buf, ')');
        unsigned long long field[24] = {0};
        size_t n = 0;
        if (p) {
            p += 2; /* ") " then the state letter: field 3 */
            while (*p && n < 24) {
                char *end;
                field[n++] = strtoull(p, &end, 10);
                p = end == p ? p + 1 : end;
                while (*p == ' ')
                    p++;
            }
        }
        if (n >= 22) {
            double tck = (double) sysconf(_SC_CLK_TCK);
            double page = (double) sysconf(_SC_PAGESIZE);
            if (tck > 0) {
                metrics_counter_set(m, "process_cpu_seconds_total", NULL,
                                    (double) (field[11] + field[12]) / tck);
                double boot = s_boot_time();
                if (boot > 0)
                    metrics_gauge_set(m, "process_start_time_seconds", NULL,
                                      boot + (double) field[19] / tck);
            }
            metrics_gauge_set(m, "process_virtual_memory_bytes", NULL, (double) field[20]);
            metrics_gauge_set(m, "process_resident_memory_bytes", NULL, (double) field[21] * page);
        }
    }
    DIR *dir = opendir("/proc/self/fd");
    if (dir) {
        size_t count = 0;
        struct dirent *e;
        while ((e = readdir(dir)) && count < 10000000)
            if (e->d_name[0] != '.')
                count++;
        closedir(dir);
        metrics_gauge_set(m, "process_open_fds", NULL, (double) (count ? count - 1 : 0));
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        metrics_gauge_set(m, "process_max_fds", NULL,
                          rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double) rl.rlim_cur);
}
