/*
 * metrics.h: a small Prometheus registry rendered as the text exposition
 * format (version 0.0.4) by hand.
 *
 * A family (counter, gauge or histogram) is described once with its help
 * text; its series are keyed by label sets. Labels are passed as a
 * NULL-terminated array of alternating names and values:
 *
 *     metrics_counter_add(m, "gaggle_http_requests_total",
 *                         (const char *[]){"code", "200", NULL}, 1);
 *
 * or NULL for none. Label values are escaped on output (backslash, double
 * quote, newline); names are checked. Families render sorted by name, series
 * sorted by label set. Each family holds at most METRICS_SERIES_MAX series:
 * beyond it a new series is dropped and counted in
 * gaggle_metrics_dropped_total{family}. Gauges recomputed at each scrape are
 * refreshed by metrics_on_collect callbacks, which run before rendering and
 * typically call metrics_family_reset then metrics_gauge_set.
 *
 * Not thread-safe: the agent uses it from its loop thread only.
 */
#ifndef GG_METRICS_H
#define GG_METRICS_H

#include <stddef.h>

#define METRICS_SERIES_MAX      10000 /* series per family */
#define METRICS_FAMILIES_MAX    512
#define METRICS_LABELS_MAX      8 /* label pairs per series */
#define METRICS_LABEL_VALUE_MAX 1024
#define METRICS_BUCKETS_MAX     32
#define METRICS_COLLECTORS_MAX  32
#define METRICS_RENDER_MAX      (64u << 20) /* bytes of exposition text */

typedef enum {
    METRICS_COUNTER = 0,
    METRICS_GAUGE = 1,
    METRICS_HISTOGRAM = 2,
} metrics_type_t;

typedef struct _metrics_t metrics_t;
typedef void(metrics_collect_fn)(metrics_t *m, void *arg);

metrics_t *metrics_new(void);
void metrics_destroy(metrics_t **self_p);

/* Declares a counter or gauge family. Describing the same name again with
 * the same type is a no-op (0); another type is GG_EEXIST; a bad name is
 * GG_EINVAL; more than METRICS_FAMILIES_MAX families is GG_ETOOBIG. */
int metrics_describe(metrics_t *self, const char *name, metrics_type_t type, const char *help);

/* Declares a histogram with n strictly increasing finite upper bounds (the
 * +Inf bucket is implicit). */
int metrics_histogram_describe(metrics_t *self, const char *name, const char *help,
                               const double *buckets, size_t n);

/* Adds v (>= 0) to a counter series, creating it at 0 first. */
int metrics_counter_add(metrics_t *self, const char *name, const char *const *labels, double v);
/* Sets a counter series to a cumulative total kept elsewhere (a store's
 * commit count, the process's CPU time). */
int metrics_counter_set(metrics_t *self, const char *name, const char *const *labels, double v);
int metrics_gauge_set(metrics_t *self, const char *name, const char *const *labels, double v);
int metrics_gauge_add(metrics_t *self, const char *name, const char *const *labels, double v);
int metrics_histogram_observe(metrics_t *self, const char *name, const char *const *labels,
                              double v);

/* The current value of a counter or gauge series; GG_ENOTFOUND when absent. */
int metrics_value(metrics_t *self, const char *name, const char *const *labels, double *value);

/* Removes every series of the family (the description stays). */
int metrics_family_reset(metrics_t *self, const char *name);

/* Registers fn to run at the start of every metrics_render. */
int metrics_on_collect(metrics_t *self, metrics_collect_fn *fn, void *arg);

/* Runs the collectors and renders every family. Returns a malloc'd string
 * the caller frees, or NULL when out of memory or over METRICS_RENDER_MAX. */
char *metrics_render(metrics_t *self);

/* A collector for the standard process_* metrics, read from /proc/self:
 * start time, resident and virtual memory, open descriptors, CPU seconds. */
void metrics_collect_process(metrics_t *m, void *arg);

#endif
