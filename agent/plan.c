/*
 * plan.c: plan validation, normalisation, target resolution, rendering
 * (see plan.h).
 *
 * Design notes.
 *  - One validator serves both directions. s_normalize() walks a source
 *    document (a plan file as json_t) and builds the normalised document:
 *    every field checked, every error recorded with its path (never stopping
 *    at the first), defaults written out, refs canonical, paths absolute. The
 *    CLI calls it on the plan file; an agent calls it on a received payload
 *    and then demands that the result equal the payload (json_equal), so the
 *    normalised form is a fixed point and the only form a fleet accepts.
 *  - Views (plan_spec_t, plan_step_t, plan_target_t) are built afterwards
 *    from the normalised document, whose shape is then known; their strings
 *    borrow from it.
 *  - A target's frozen JSON is built by one function, s_target_json(), from
 *    a catalog entity (CLI); an agent checks a frozen target against what it
 *    would build with s_target_matches(), without building it.
 *  - Compact plans (plan_from_canonical): the payload's canonical bytes are
 *    read piece by piece with jansson (JSON_DISABLE_EOF_CHECK), each piece
 *    checked as plan_from_json checks it and freed; an index (s_tix_t) and
 *    the refs stay. Each piece is also re-dumped and compared with its bytes
 *    (so the bytes are canonical and their hash is the id), except the
 *    targets of a replicated document whose bytes hash to the id it was
 *    replicated under: that id is then already the hash of the bytes every
 *    node stores, and the re-dump (a third of the time) is skipped.
 *  - Where an error is: the path of the field ("spec.steps[2].run"); the
 *    line comes from yamljson, or from the nearest ancestor that has one.
 */
#include "plan.h"

#include "entity_ref.h"
#include "gg_error.h"
#include "rewrite.h"
#include "signed.h"
#include "units.h"
#include "yamljson.h"

#include <ctype.h>
#include <sodium.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define S_PATH_MAX       1024 /* bytes of a field path in messages */
#define S_WHERE_MAX      (S_PATH_MAX + 512)
#define S_MSG_MAX        1024
#define S_TIMEOUT_MAX_MS (7ull * 24 * 3600 * 1000)
#define S_BACKOFF_MAX_MS (24ull * 3600 * 1000)

/* ======================================================================
 * Diagnostics
 * ==================================================================== */

struct _plan_diag_t {
    json_t *errors;
    json_t *warnings;
    size_t error_count;
    size_t warning_count;
};

plan_diag_t *plan_diag_new(void)
{
    plan_diag_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->errors = json_array();
    self->warnings = json_array();
    if (!self->errors || !self->warnings)
        plan_diag_destroy(&self);
    return self;
}

void plan_diag_destroy(plan_diag_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    json_decref((*self_p)->errors);
    json_decref((*self_p)->warnings);
    free(*self_p);
    *self_p = NULL;
}

/* json_string() refuses invalid UTF-8: keep what is valid of a message. */
static json_t *s_json_text(const char *text)
{
    json_t *s = json_string(text);
    if (s)
        return s;
    char *copy = strdup(text);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char) *p >= 0x80)
            *p = '?';
    s = json_string(copy);
    free(copy);
    return s;
}

void plan_diag_add(plan_diag_t *self, bool error, const char *where, const char *fmt, ...)
{
    if (!self)
        return;
    size_t *count = error ? &self->error_count : &self->warning_count;
    json_t *list = error ? self->errors : self->warnings;
    (*count)++;
    if (json_array_size(list) >= PLAN_DIAG_MAX)
        return;
    char msg[S_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *w = s_json_text(where ? where : "");
    json_t *m = s_json_text(msg);
    json_t *entry = json_object();
    if (!w || !m || !entry) {
        json_decref(w);
        json_decref(m);
        json_decref(entry);
        return;
    }
    json_object_set_new(entry, "where", w);
    json_object_set_new(entry, "message", m);
    json_array_append_new(list, entry);
}

size_t plan_diag_error_count(const plan_diag_t *self)
{
    return self ? self->error_count : 0;
}

size_t plan_diag_warning_count(const plan_diag_t *self)
{
    return self ? self->warning_count : 0;
}

json_t *plan_diag_errors(const plan_diag_t *self)
{
    return self ? self->errors : NULL;
}

json_t *plan_diag_warnings(const plan_diag_t *self)
{
    return self ? self->warnings : NULL;
}

/* ======================================================================
 * The plan object
 * ==================================================================== */

/* Where a compact plan's target is: its JSON at [off, off + len) of the
 * stored document, its ref at refs + ref. */
typedef struct {
    uint64_t off;
    uint32_t len;
    uint32_t ref;
} s_tix_t;

struct _plan_t {
    json_t *doc; /* normalised; "targets" once resolved */
    bool resolved;
    char id[PLAN_ID_LEN + 1];
    char *display;  /* file name for messages */
    yamljson_t *yj; /* the source, for line numbers (CLI side only) */
    plan_spec_t spec;
    plan_step_t *steps;
    const char **notify_on;
    int *exit_codes;
    plan_target_t *targets;
    size_t target_count;
    /* compact plans (plan_from_canonical): the targets stay in the stored
     * document; per target, where its JSON is and its ref */
    bool compact;
    s_tix_t *tix;
    size_t n_tix, cap_tix;
    uint8_t *gated; /* bitmap, one bit per target */
    char *refs;     /* NUL-terminated refs, back to back */
    size_t refs_len, refs_cap;
    uint8_t bin_id[32];
    char *canon; /* canonical bytes, kept by plan_resolve for signing */
    size_t canon_len;
    plan_doc_reader_fn *reader;
    void *reader_arg;
};

/* A target view handed out by plan_target_load, with the JSON it borrows. */
typedef struct {
    plan_target_t view; /* first: the public pointer is the struct's */
    json_t *json;
} s_loaded_t;

/* ======================================================================
 * Validation context and helpers
 * ==================================================================== */

typedef struct {
    plan_diag_t *diag;
    const char *display;
    const yamljson_t *yj; /* lines, or NULL */
    const char *base_dir; /* NULL: paths must already be absolute */
    bool check_root;
    bool strict;        /* agent side: the payload must be normalised */
    const json_t *vars; /* the normalised spec.vars */
    json_t *dataset;    /* normalised dataset (for validate-time lookups) */
    const char *plan_name;
    const char *step_name; /* the step being checked, for messages */
    size_t errors;         /* errors found by this validation */
} s_vctx_t;

static void s_where(const s_vctx_t *c, const char *path, char *buf, size_t size)
{
    unsigned long line = 0;
    char tmp[S_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    while (c->yj) {
        line = yamljson_line(c->yj, 0, tmp);
        if (line || !*tmp)
            break;
        char *dot = strrchr(tmp, '.'), *br = strrchr(tmp, '[');
        char *cut = dot > br ? dot : br;
        if (!cut)
            cut = tmp;
        *cut = '\0';
    }
    const char *file = c->display ? c->display : "plan";
    if (line && *path)
        snprintf(buf, size, "%s:%lu: %s", file, line, path);
    else if (line)
        snprintf(buf, size, "%s:%lu", file, line);
    else if (*path)
        snprintf(buf, size, "%s: %s", file, path);
    else
        snprintf(buf, size, "%s", file);
}

static void s_err(s_vctx_t *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void s_err(s_vctx_t *c, const char *path, const char *fmt, ...)
{
    char where[S_WHERE_MAX], msg[S_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s_where(c, path, where, sizeof where);
    c->errors++;
    plan_diag_add(c->diag, true, where, "%s", msg);
}

static void s_warn(s_vctx_t *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void s_warn(s_vctx_t *c, const char *path, const char *fmt, ...)
{
    char where[S_WHERE_MAX], msg[S_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s_where(c, path, where, sizeof where);
    plan_diag_add(c->diag, false, where, "%s", msg);
}

static void s_path(char *buf, size_t size, const char *parent, const char *key)
{
    /* Field paths longer than the buffer are cut: they only name a field. */
    if (snprintf(buf, size, "%s%s%s", parent, *parent ? "." : "", key) >= (int) size)
        buf[size - 1] = '\0';
}

static void s_pathi(char *buf, size_t size, const char *parent, size_t i)
{
    if (snprintf(buf, size, "%s[%zu]", parent, i) >= (int) size)
        buf[size - 1] = '\0';
}

static const char *s_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "a mapping";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "true/false";
    default: return "null";
    }
}

/* Checks that obj only has the listed keys (NULL-terminated). */
static void s_fields(s_vctx_t *c, const json_t *obj, const char *path, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *) obj, key, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = !strcmp(key, allowed[i]);
        if (ok)
            continue;
        char list[512] = "", p[S_PATH_MAX];
        size_t n = 0;
        for (size_t i = 0; allowed[i] && n < sizeof list; i++)
            n += (size_t) snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", allowed[i]);
        s_path(p, sizeof p, path, key);
        s_err(c, p, "unknown field '%.64s' (expected one of: %s)", key, list);
    }
}

/* A mapping at obj[key]: returns it, NULL when absent (error if required) or
 * of the wrong type (error). */
static json_t *s_object(s_vctx_t *c, const json_t *obj, const char *path, const char *key,
                        bool required, char *child, size_t child_size)
{
    s_path(child, child_size, path, key);
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required)
            s_err(c, child, "is required");
        return NULL;
    }
    if (!json_is_object(v)) {
        s_err(c, child, "must be a mapping, not %s", s_type_name(v));
        return NULL;
    }
    return v;
}

static bool s_has_nul(const json_t *s)
{
    return strlen(json_string_value(s)) != json_string_length(s);
}

/* Checks a string value. Returns it, or NULL (error recorded). */
static const char *s_check_string(s_vctx_t *c, const json_t *v, const char *path, size_t max,
                                  bool nonempty)
{
    if (!json_is_string(v)) {
        s_err(c, path, "must be a string, not %s", s_type_name(v));
        return NULL;
    }
    if (s_has_nul(v)) {
        s_err(c, path, "must not contain a NUL byte");
        return NULL;
    }
    if (json_string_length(v) > max) {
        s_err(c, path, "is longer than %zu bytes", max);
        return NULL;
    }
    if (nonempty && json_string_length(v) == 0) {
        s_err(c, path, "must not be empty");
        return NULL;
    }
    return json_string_value(v);
}

/* obj[key] as a string: 1 present and good, 0 absent (error if required),
 * -1 bad (error recorded). */
static int s_string(s_vctx_t *c, const json_t *obj, const char *path, const char *key,
                    bool required, size_t max, const char **out)
{
    char p[S_PATH_MAX];
    s_path(p, sizeof p, path, key);
    *out = NULL;
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required)
            s_err(c, p, "is required");
        return 0;
    }
    *out = s_check_string(c, v, p, max, true);
    return *out ? 1 : -1;
}

static int s_bool(s_vctx_t *c, const json_t *obj, const char *path, const char *key, bool *out)
{
    char p[S_PATH_MAX];
    s_path(p, sizeof p, path, key);
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v)) {
        s_err(c, p, "must be true or false, not %s", s_type_name(v));
        return -1;
    }
    *out = json_is_true(v);
    return 1;
}

static int s_uint(s_vctx_t *c, const json_t *obj, const char *path, const char *key, json_int_t min,
                  json_int_t max, json_int_t *out)
{
    char p[S_PATH_MAX];
    s_path(p, sizeof p, path, key);
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_integer(v)) {
        s_err(c, p, "must be a whole number, not %s", s_type_name(v));
        return -1;
    }
    json_int_t n = json_integer_value(v);
    if (n < min || n > max) {
        s_err(c, p, "must be between %lld and %lld, got %lld", (long long) min, (long long) max,
              (long long) n);
        return -1;
    }
    *out = n;
    return 1;
}

static int s_number(s_vctx_t *c, const json_t *obj, const char *path, const char *key, double min,
                    double max, double *out)
{
    char p[S_PATH_MAX];
    s_path(p, sizeof p, path, key);
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_number(v)) {
        s_err(c, p, "must be a number, not %s", s_type_name(v));
        return -1;
    }
    double d = json_number_value(v);
    if (!(d >= min && d <= max)) {
        s_err(c, p, "must be between %g and %g, got %g", min, max, d);
        return -1;
    }
    *out = d;
    return 1;
}

/* A number in canonical JSON: integral values as integers. */
static json_t *s_json_number(double d)
{
    if (d == floor(d) && fabs(d) < 9.0e15)
        return json_integer((json_int_t) d);
    return json_real(d);
}

/* Durations are "500ms", "2s", "10m", "1h", "1d", or a whole number of
 * seconds. */
static int s_duration(s_vctx_t *c, const json_t *obj, const char *path, const char *key,
                      uint64_t min, uint64_t max, uint64_t *out)
{
    char p[S_PATH_MAX];
    s_path(p, sizeof p, path, key);
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    uint64_t ms = 0;
    if (json_is_integer(v) && json_integer_value(v) >= 0 &&
        json_integer_value(v) <= (json_int_t) (UINT64_MAX / 1000)) {
        ms = (uint64_t) json_integer_value(v) * 1000;
    } else if (!json_is_string(v) || s_has_nul(v) ||
               units_parse_duration(json_string_value(v), &ms) != 0) {
        s_err(c, p, "must be a duration such as 500ms, 30s, 10m or 1h");
        return -1;
    }
    if (ms < min || ms > max) {
        char a[32], b[32];
        s_err(c, p, "must be between %s and %s", units_format_duration(min, a, sizeof a),
              units_format_duration(max, b, sizeof b));
        return -1;
    }
    *out = ms;
    return 1;
}

/* The largest unit that writes ms exactly: "30m", "1500ms". */
static json_t *s_json_duration(uint64_t ms)
{
    static const struct {
        uint64_t ms;
        const char *unit;
    } units[] = {{86400000ull, "d"}, {3600000ull, "h"}, {60000ull, "m"}, {1000ull, "s"}};
    char buf[48];
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (ms && ms % units[i].ms == 0) {
            snprintf(buf, sizeof buf, "%llu%s", (unsigned long long) (ms / units[i].ms),
                     units[i].unit);
            return json_string(buf);
        }
    }
    snprintf(buf, sizeof buf, "%llums", (unsigned long long) ms);
    return json_string(buf);
}

/* Sets key in obj to value (stolen; NULL means out of memory). */
static void s_set(s_vctx_t *c, json_t *obj, const char *key, json_t *value)
{
    if (!value || json_object_set_new(obj, key, value) != 0)
        s_err(c, "", "out of memory");
}

/* Normalises an entity ref into buf; false (error recorded) when invalid. */
static bool s_ref(s_vctx_t *c, const char *text, const char *default_kind, const char *path,
                  char *buf, size_t size)
{
    char why[256];
    if (entity_ref_normalize(text, default_kind, NULL, buf, size, why, sizeof why) != 0) {
        s_err(c, path, "'%.200s' is not a valid entity ref: %s", text, why);
        return false;
    }
    return true;
}

/* ======================================================================
 * Paths
 * ==================================================================== */

/* Joins base and p (unless p is absolute) and removes ".", ".." and empty
 * components lexically. Returns a malloc'd string or NULL. */
static char *s_abs_path(const char *base, const char *p)
{
    char *joined = NULL;
    if (p[0] == '/')
        joined = strdup(p);
    else if (asprintf(&joined, "%s/%s", base ? base : "/", p) < 0)
        joined = NULL;
    if (!joined)
        return NULL;
    size_t n = strlen(joined);
    char *out = malloc(n + 2);
    size_t *starts = malloc((n / 2 + 2) * sizeof *starts);
    if (!out || !starts) {
        free(out);
        free(starts);
        free(joined);
        return NULL;
    }
    size_t len = 0, depth = 0;
    char *save = NULL;
    for (char *part = strtok_r(joined, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
        if (!strcmp(part, "."))
            continue;
        if (!strcmp(part, "..")) {
            if (depth > 0)
                len = starts[--depth];
            continue;
        }
        starts[depth++] = len;
        out[len++] = '/';
        size_t pl = strlen(part);
        memcpy(out + len, part, pl);
        len += pl;
    }
    if (len == 0)
        out[len++] = '/';
    out[len] = '\0';
    free(starts);
    free(joined);
    return out;
}

static bool s_is_url(const char *s)
{
    return !strncmp(s, "https://", 8) || !strncmp(s, "http://", 7);
}

/* A path field: absolute against base_dir (CLI) or required absolute (agent). */
static json_t *s_norm_path(s_vctx_t *c, const char *value, const char *path)
{
    if (!c->base_dir && value[0] != '/') {
        s_err(c, path, "must be an absolute path in a resolved plan");
        return NULL;
    }
    char *abs = s_abs_path(c->base_dir, value);
    if (!abs) {
        s_err(c, path, "out of memory");
        return NULL;
    }
    if (strlen(abs) > PLAN_VALUE_MAX) {
        s_err(c, path, "is longer than %d bytes", PLAN_VALUE_MAX);
        free(abs);
        return NULL;
    }
    json_t *j = json_string(abs);
    free(abs);
    if (!j)
        s_err(c, path, "is not valid UTF-8");
    return j;
}

/* ======================================================================
 * Template checks at validation
 * ==================================================================== */

static const char *const s_fixed_vars[] = {
    "target.ref",  "target.kind",  "target.namespace",
    "target.name", "target.owner", "target.source",
    "target.path", "dataset.from", "dataset.to",
    "plan.id",     "plan.name",    "attempt",
    "epoch",       "workdir",      NULL,
};

typedef struct {
    s_vctx_t *c;
    bool resolve_known; /* give the values known at validation, GG_EBUSY for others */
} s_check_arg_t;

static int s_check_lookup(void *arg, const char *name, const char **value)
{
    s_check_arg_t *a = arg;
    *value = "";
    if (!strncmp(name, "vars.", 5)) {
        json_t *v = json_object_get(a->c->vars, name + 5);
        if (!v || !name[5])
            return GG_ENOTFOUND;
        *value = json_string_value(v);
        return 0;
    }
    if (!strncmp(name, "target.annotations.", 19))
        return name[19] ? (a->resolve_known ? GG_EBUSY : 0) : GG_ENOTFOUND;
    for (size_t i = 0; s_fixed_vars[i]; i++) {
        if (strcmp(name, s_fixed_vars[i]))
            continue;
        if (!a->resolve_known)
            return 0;
        if (!strcmp(name, "dataset.from") || !strcmp(name, "dataset.to")) {
            const char *v = json_string_value(json_object_get(a->c->dataset, name + 8));
            *value = v ? v : "";
            return 0;
        }
        if (!strcmp(name, "plan.name")) {
            *value = a->c->plan_name ? a->c->plan_name : "";
            return 0;
        }
        return GG_EBUSY;
    }
    return GG_ENOTFOUND;
}

/* Checks the placeholders of a template field. */
static bool s_check_template(s_vctx_t *c, const char *path, const char *tmpl)
{
    char why[512];
    s_check_arg_t arg = {c, false};
    if (template_check(tmpl, s_check_lookup, &arg, why, sizeof why) != 0) {
        if (c->step_name)
            s_err(c, path, "step '%s': %s", c->step_name, why);
        else
            s_err(c, path, "%s", why);
        return false;
    }
    return true;
}

/* A command (run) field: a non-empty template. */
static json_t *s_command(s_vctx_t *c, const json_t *obj, const char *path, const char *key,
                         bool required)
{
    const char *run = NULL;
    char p[S_PATH_MAX];
    s_path(p, sizeof p, path, key);
    if (s_string(c, obj, path, key, required, PLAN_COMMAND_MAX, &run) <= 0)
        return NULL;
    if (!s_check_template(c, p, run))
        return NULL;
    return json_string(run);
}

/* ======================================================================
 * Sections
 * ==================================================================== */

static void s_norm_metadata(s_vctx_t *c, const json_t *src, json_t *out)
{
    static const char *const fields[] = {"name", "owner", "description", NULL};
    char p[S_PATH_MAX];
    json_t *md = s_object(c, src, "", "metadata", true, p, sizeof p);
    if (!md)
        return;
    s_fields(c, md, "metadata", fields);
    json_t *o = json_object();
    s_set(c, out, "metadata", o);
    if (!o)
        return;
    const char *name = NULL, *owner = NULL, *desc = NULL;
    if (s_string(c, md, "metadata", "name", true, 63, &name) > 0) {
        if (!entity_ref_valid_name(name))
            s_err(c, "metadata.name",
                  "'%s' is not a valid name (1-63 letters, digits, '-', '_', '.', starting "
                  "and ending with a letter or digit)",
                  name);
        else {
            s_set(c, o, "name", json_string(name));
            c->plan_name = name;
        }
    }
    if (s_string(c, md, "metadata", "owner", false, ENTITY_REF_TEXT_MAX, &owner) > 0) {
        char ref[ENTITY_REF_FORMAT_MAX];
        if (s_ref(c, owner, "group", "metadata.owner", ref, sizeof ref))
            s_set(c, o, "owner", json_string(ref));
    }
    json_t *dv = json_object_get(md, "description");
    if (dv && (desc = s_check_string(c, dv, "metadata.description", PLAN_TEXT_MAX, false)))
        s_set(c, o, "description", json_string(desc));
}

/* A list of strings at obj[key] into a new array (each checked by `check`,
 * normalised by `norm` when given). Absent: an empty array. NULL on error. */
typedef bool(s_item_check_fn)(s_vctx_t *c, const char *value, const char *path, char *buf,
                              size_t size);

static json_t *s_string_list(s_vctx_t *c, const json_t *obj, const char *path, const char *key,
                             size_t max_items, size_t max_len, s_item_check_fn *check,
                             bool scalar_ok)
{
    char p[S_PATH_MAX], ip[S_PATH_MAX];
    s_path(p, sizeof p, path, key);
    json_t *v = json_object_get(obj, key);
    json_t *out = json_array();
    if (!out) {
        s_err(c, p, "out of memory");
        return NULL;
    }
    if (!v)
        return out;
    json_t *wrapped = NULL;
    if (json_is_string(v) && scalar_ok)
        v = wrapped = json_pack("[O]", v);
    if (!json_is_array(v)) {
        s_err(c, p, "must be a list%s, not %s", scalar_ok ? " or a string" : "", s_type_name(v));
        json_decref(out);
        return NULL;
    }
    if (json_array_size(v) > max_items) {
        s_err(c, p, "has more than %zu entries", max_items);
        json_decref(wrapped);
        json_decref(out);
        return NULL;
    }
    size_t errors = c->errors, i;
    json_t *item;
    json_array_foreach(v, i, item)
    {
        s_pathi(ip, sizeof ip, p, i);
        const char *s = s_check_string(c, item, wrapped ? p : ip, max_len, true);
        if (!s)
            continue;
        char buf[ENTITY_REF_FORMAT_MAX > PLAN_VALUE_MAX ? ENTITY_REF_FORMAT_MAX
                                                        : PLAN_VALUE_MAX + 1];
        snprintf(buf, sizeof buf, "%s", s);
        if (check && !check(c, s, wrapped ? p : ip, buf, sizeof buf))
            continue;
        if (json_array_append_new(out, json_string(buf)) != 0)
            s_err(c, ip, "out of memory");
    }
    json_decref(wrapped);
    if (c->errors != errors) {
        json_decref(out);
        return NULL;
    }
    return out;
}

static bool s_check_kind(s_vctx_t *c, const char *v, const char *path, char *buf, size_t size)
{
    if (entity_ref_valid_kind(v))
        return true;
    s_err(c, path, "'%.100s' is not a valid entity kind", v);
    return false;
}

static bool s_check_tag(s_vctx_t *c, const char *v, const char *path, char *buf, size_t size)
{
    if (entity_ref_valid_tag(v))
        return true;
    s_err(c, path, "'%.100s' is not a valid tag (lower-case letters, digits, '-', ':', '+', '#')",
          v);
    return false;
}

static bool s_check_group_ref(s_vctx_t *c, const char *v, const char *path, char *buf, size_t size)
{
    return s_ref(c, v, "group", path, buf, size);
}

static bool s_check_component_ref(s_vctx_t *c, const char *v, const char *path, char *buf,
                                  size_t size)
{
    return s_ref(c, v, "component", path, buf, size);
}

static bool s_check_lifecycle(s_vctx_t *c, const char *v, const char *path, char *buf, size_t size)
{
    return true;
}

/* A mapping of strings (annotations filters, vars). */
static json_t *s_string_map(s_vctx_t *c, const json_t *obj, const char *path, const char *key,
                            size_t max_items, bool (*key_ok)(const char *), const char *key_rule)
{
    char p[S_PATH_MAX], kp[S_PATH_MAX];
    json_t *m = s_object(c, obj, path, key, false, p, sizeof p);
    json_t *out = json_object();
    if (!out) {
        s_err(c, p, "out of memory");
        return NULL;
    }
    if (!m && json_object_get(obj, key)) {
        json_decref(out);
        return NULL;
    }
    if (!m)
        return out;
    if (json_object_size(m) > max_items) {
        s_err(c, p, "has more than %zu entries", max_items);
        json_decref(out);
        return NULL;
    }
    size_t errors = c->errors;
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v)
    {
        s_path(kp, sizeof kp, p, k);
        if (!key_ok(k)) {
            s_err(c, kp, "'%.100s' is not a valid key (%s)", k, key_rule);
            continue;
        }
        if (!json_is_string(v)) {
            s_err(c, kp, "must be a string, not %s (quote it)", s_type_name(v));
            continue;
        }
        const char *s = s_check_string(c, v, kp, PLAN_VALUE_MAX, false);
        if (s && json_object_set_new(out, k, json_string(s)) != 0)
            s_err(c, kp, "out of memory");
    }
    if (c->errors != errors) {
        json_decref(out);
        return NULL;
    }
    return out;
}

static bool s_label_key_ok(const char *k)
{
    return entity_ref_valid_label_key(k);
}

static bool s_var_key_ok(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > 64)
        return false;
    for (const char *p = k; *p; p++)
        if (!isalnum((unsigned char) *p) && *p != '_' && *p != '-')
            return false;
    return true;
}

/* A filter: kinds, owner, lifecycle, tags, annotations (targets and
 * approval.when share it). Adds the normalised fields to out. */
static void s_norm_filter(s_vctx_t *c, const json_t *src, const char *path, json_t *out)
{
    s_set(c, out, "kinds",
          s_string_list(c, src, path, "kinds", PLAN_FILTER_MAX, 63, s_check_kind, true));
    s_set(c, out, "owner",
          s_string_list(c, src, path, "owner", PLAN_FILTER_MAX, ENTITY_REF_TEXT_MAX,
                        s_check_group_ref, true));
    s_set(c, out, "lifecycle",
          s_string_list(c, src, path, "lifecycle", PLAN_FILTER_MAX, 63, s_check_lifecycle, true));
    s_set(c, out, "tags",
          s_string_list(c, src, path, "tags", PLAN_FILTER_MAX, 63, s_check_tag, true));
    s_set(c, out, "annotations",
          s_string_map(c, src, path, "annotations", PLAN_FILTER_MAX, s_label_key_ok,
                       "[prefix/]name, as Backstage annotation keys"));
}

static void s_norm_dataset(s_vctx_t *c, const json_t *spec, json_t *out)
{
    static const char *const fields[] = {"from", "to", NULL};
    char p[S_PATH_MAX];
    json_t *ds = s_object(c, spec, "spec", "dataset", true, p, sizeof p);
    json_t *o = json_object();
    s_set(c, out, "dataset", o);
    c->dataset = o;
    if (!ds || !o)
        return;
    s_fields(c, ds, "spec.dataset", fields);
    const char *from = NULL, *to = NULL;
    char rf[ENTITY_REF_FORMAT_MAX], rt[ENTITY_REF_FORMAT_MAX];
    bool okf = false, okt = false;
    if (s_string(c, ds, "spec.dataset", "from", true, ENTITY_REF_TEXT_MAX, &from) > 0 &&
        (okf = s_ref(c, from, "resource", "spec.dataset.from", rf, sizeof rf)))
        s_set(c, o, "from", json_string(rf));
    if (s_string(c, ds, "spec.dataset", "to", true, ENTITY_REF_TEXT_MAX, &to) > 0 &&
        (okt = s_ref(c, to, "resource", "spec.dataset.to", rt, sizeof rt)))
        s_set(c, o, "to", json_string(rt));
    if (okf && okt && !strcmp(rf, rt))
        s_err(c, "spec.dataset.to", "must differ from dataset.from (%s)", rf);
}

static void s_norm_targets(s_vctx_t *c, const json_t *spec, json_t *out)
{
    static const char *const fields[] = {"consumersOf", "transitive", "kinds",       "owner",
                                         "lifecycle",   "tags",       "annotations", "include",
                                         "exclude",     NULL};
    char p[S_PATH_MAX];
    json_t *t = s_object(c, spec, "spec", "targets", false, p, sizeof p);
    if (!t && json_object_get(spec, "targets"))
        return;
    json_t *empty = NULL;
    if (!t)
        t = empty = json_object();
    json_t *o = json_object();
    s_set(c, out, "targets", o);
    if (!o || !t) {
        json_decref(empty);
        return;
    }
    s_fields(c, t, "spec.targets", fields);
    const char *of = NULL;
    char ref[ENTITY_REF_FORMAT_MAX];
    int has = s_string(c, t, "spec.targets", "consumersOf", false, ENTITY_REF_TEXT_MAX, &of);
    if (has > 0) {
        if (s_ref(c, of, "resource", "spec.targets.consumersOf", ref, sizeof ref))
            s_set(c, o, "consumersOf", json_string(ref));
    } else if (has == 0) {
        json_t *from = json_object_get(c->dataset, "from");
        if (from)
            s_set(c, o, "consumersOf", json_incref(from));
    }
    bool transitive = false;
    s_bool(c, t, "spec.targets", "transitive", &transitive);
    s_set(c, o, "transitive", json_boolean(transitive));
    s_norm_filter(c, t, "spec.targets", o);
    s_set(c, o, "include",
          s_string_list(c, t, "spec.targets", "include", PLAN_LIST_MAX, ENTITY_REF_TEXT_MAX,
                        s_check_component_ref, false));
    s_set(c, o, "exclude",
          s_string_list(c, t, "spec.targets", "exclude", PLAN_LIST_MAX, ENTITY_REF_TEXT_MAX,
                        s_check_component_ref, false));
    json_decref(empty);
}

/* precheck, verify, judge: {run, timeout}; notify adds `on`. */
static void s_norm_hook(s_vctx_t *c, const json_t *spec, const char *key, json_t *out)
{
    static const char *const fields[] = {"run", "timeout", NULL};
    static const char *const notify_fields[] = {"run", "timeout", "on", NULL};
    static const char *const events[] = {"failed",    "needs_review", "awaiting_approval",
                                         "paused",    "completed",    "cancelled",
                                         "succeeded", "skipped",      NULL};
    static const char *const default_events[] = {"failed", "needs_review", "awaiting_approval",
                                                 "paused", "completed",    NULL};
    char p[S_PATH_MAX];
    bool notify = !strcmp(key, "notify");
    json_t *h = s_object(c, spec, "spec", key, false, p, sizeof p);
    if (!h)
        return;
    s_fields(c, h, p, notify ? notify_fields : fields);
    json_t *o = json_object();
    s_set(c, out, key, o);
    if (!o)
        return;
    json_t *run = s_command(c, h, p, "run", true);
    if (run)
        s_set(c, o, "run", run);
    uint64_t ms = PLAN_DEFAULT_TIMEOUT_MS;
    s_duration(c, h, p, "timeout", 1, S_TIMEOUT_MAX_MS, &ms);
    s_set(c, o, "timeout", s_json_duration(ms));
    if (!notify)
        return;
    json_t *on = s_string_list(c, h, p, "on", 16, 32, NULL, false);
    if (!on)
        return;
    if (!json_object_get(h, "on")) {
        for (size_t i = 0; default_events[i]; i++)
            json_array_append_new(on, json_string(default_events[i]));
    }
    size_t i, j;
    json_t *ev, *ev2;
    char ep[S_PATH_MAX], op[S_PATH_MAX];
    s_path(op, sizeof op, p, "on");
    json_array_foreach(on, i, ev)
    {
        s_pathi(ep, sizeof ep, op, i);
        bool known = false;
        for (size_t k = 0; events[k] && !known; k++)
            known = !strcmp(events[k], json_string_value(ev));
        if (!known)
            s_err(c, ep,
                  "unknown event '%.64s' (expected failed, needs_review, awaiting_approval, "
                  "paused, completed, cancelled, succeeded or skipped)",
                  json_string_value(ev));
        json_array_foreach(on, j, ev2)
        {
            if (j < i && json_equal(ev, ev2)) {
                s_err(c, ep, "event '%s' is listed twice", json_string_value(ev));
                break;
            }
        }
    }
    s_set(c, o, "on", on);
}

static json_t *s_norm_rewrite(s_vctx_t *c, const json_t *r, const char *path)
{
    static const char *const fields[] = {"paths", "replace", "word", "regex", NULL};
    char p[S_PATH_MAX], ip[S_PATH_MAX];
    size_t errors = c->errors;
    if (!json_is_object(r)) {
        s_err(c, path, "must be a mapping {paths, replace, word, regex}, not %s", s_type_name(r));
        return NULL;
    }
    s_fields(c, r, path, fields);
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_t *paths = s_string_list(c, r, path, "paths", REWRITE_MAX_PATTERNS,
                                  REWRITE_MAX_PATTERN_LEN, NULL, false);
    s_path(p, sizeof p, path, "paths");
    if (paths && json_array_size(paths) == 0)
        s_err(c, p, "needs at least one glob pattern");
    size_t i;
    json_t *item;
    json_array_foreach(paths, i, item)
    {
        s_pathi(ip, sizeof ip, p, i);
        const char *g = json_string_value(item);
        if (g[0] == '/')
            s_err(c, ip, "must be relative to the target's folder");
        else if (!strcmp(g, "..") || !strncmp(g, "../", 3) || strstr(g, "/../") ||
                 (strlen(g) >= 3 && !strcmp(g + strlen(g) - 3, "/..")))
            s_err(c, ip, "must not leave the target's folder (no '..')");
        else
            s_check_template(c, ip, g);
    }
    if (paths)
        s_set(c, o, "paths", paths);

    /* replace: an ordered mapping {from: to}, or a list of {from, to}. */
    s_path(p, sizeof p, path, "replace");
    json_t *rep = json_object_get(r, "replace");
    json_t *pairs = json_array();
    if (!pairs)
        goto out;
    if (!rep) {
        s_err(c, p, "is required");
    } else if (json_is_object(rep)) {
        const char *from;
        json_t *to;
        json_object_foreach(rep, from, to)
        {
            json_t *pair = json_pack("{s:s,s:O}", "from", from, "to", to);
            if (pair)
                json_array_append_new(pairs, pair);
        }
    } else if (json_is_array(rep)) {
        json_array_foreach(rep, i, item)
        {
            static const char *const pf[] = {"from", "to", NULL};
            s_pathi(ip, sizeof ip, p, i);
            if (!json_is_object(item) || !json_object_get(item, "from") ||
                !json_object_get(item, "to")) {
                s_err(c, ip, "must be a mapping {from, to}");
                continue;
            }
            s_fields(c, item, ip, pf);
            json_array_append(pairs, item);
        }
    } else {
        s_err(c, p, "must be a mapping of text to replacement, not %s", s_type_name(rep));
    }
    if (rep && json_array_size(pairs) == 0 && (json_is_object(rep) || json_is_array(rep)))
        s_err(c, p, "needs at least one replacement");
    if (json_array_size(pairs) > REWRITE_MAX_REPLACEMENTS)
        s_err(c, p, "has more than %d replacements", REWRITE_MAX_REPLACEMENTS);
    json_t *norm = json_array();
    json_array_foreach(pairs, i, item)
    {
        s_pathi(ip, sizeof ip, p, i);
        const json_t *from = json_object_get(item, "from"), *to = json_object_get(item, "to");
        char fp[S_PATH_MAX + 16], tp[S_PATH_MAX + 16];
        if (json_is_object(rep)) {
            s_path(fp, sizeof fp, p, json_string_value(from));
            snprintf(tp, sizeof tp, "%s", fp);
        } else {
            s_path(fp, sizeof fp, ip, "from");
            s_path(tp, sizeof tp, ip, "to");
        }
        const char *f = s_check_string(c, from, fp, REWRITE_MAX_TEXT, true);
        const char *t = s_check_string(c, to, tp, REWRITE_MAX_TEXT, false);
        if (f && s_check_template(c, fp, f) && t && s_check_template(c, tp, t) && norm)
            json_array_append_new(norm, json_pack("{s:s,s:s}", "from", f, "to", t));
    }
    if (norm)
        s_set(c, o, "replace", norm);
    json_decref(pairs);

    bool word = false, regex = false;
    s_bool(c, r, path, "word", &word);
    s_bool(c, r, path, "regex", &regex);
    if (word && regex) {
        s_path(p, sizeof p, path, "regex");
        s_err(c, p, "word and regex cannot both be true");
    }
    s_set(c, o, "word", json_boolean(word));
    s_set(c, o, "regex", json_boolean(regex));

    /* Check the replacements as the rewrite step will, when nothing in them
     * depends on the target. */
    if (c->errors == errors && norm) {
        s_check_arg_t arg = {c, true};
        size_t n = json_array_size(norm), np = json_array_size(paths);
        char **exp = calloc(2 * n + np + 1, sizeof *exp);
        rewrite_pair_t *rp = calloc(n + 1, sizeof *rp);
        bool known = exp && rp;
        for (i = 0; known && i < n; i++) {
            json_t *pair = json_array_get(norm, i);
            known = template_expand(json_string_value(json_object_get(pair, "from")),
                                    s_check_lookup, &arg, TEMPLATE_RAW, &exp[2 * i]) == 0 &&
                    template_expand(json_string_value(json_object_get(pair, "to")), s_check_lookup,
                                    &arg, TEMPLATE_RAW, &exp[2 * i + 1]) == 0;
            if (known) {
                rp[i].from = exp[2 * i];
                rp[i].to = exp[2 * i + 1];
                known = rp[i].from[0] != '\0';
            }
        }
        for (i = 0; known && i < np; i++)
            known = template_expand(json_string_value(json_array_get(paths, i)), s_check_lookup,
                                    &arg, TEMPLATE_RAW, &exp[2 * n + i]) == 0;
        if (known) {
            rewrite_spec_t spec = {.paths = (const char *const *) &exp[2 * n],
                                   .n_paths = np,
                                   .replace = rp,
                                   .n_replace = n,
                                   .mode = regex  ? REWRITE_REGEX
                                           : word ? REWRITE_WORD
                                                  : REWRITE_LITERAL};
            char why[512];
            if (rewrite_validate_spec(&spec, why, sizeof why) != 0)
                s_err(c, path, "%s", why);
        }
        for (i = 0; exp && i < 2 * n + np; i++)
            free(exp[i]);
        free(exp);
        free(rp);
    }
out:
    if (c->errors != errors) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *s_norm_agent(s_vctx_t *c, const json_t *a, const char *path)
{
    static const char *const fields[] = {"run", "prompt", "maxTurns", NULL};
    size_t errors = c->errors;
    if (!json_is_object(a)) {
        s_err(c, path, "must be a mapping {run, prompt, maxTurns}, not %s", s_type_name(a));
        return NULL;
    }
    s_fields(c, a, path, fields);
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_t *run = s_command(c, a, path, "run", true);
    if (run)
        s_set(c, o, "run", run);
    const char *prompt = NULL;
    char p[S_PATH_MAX];
    s_path(p, sizeof p, path, "prompt");
    if (s_string(c, a, path, "prompt", true, PLAN_TEXT_MAX, &prompt) > 0 &&
        s_check_template(c, p, prompt))
        s_set(c, o, "prompt", json_string(prompt));
    json_int_t turns = PLAN_DEFAULT_MAX_TURNS;
    s_uint(c, a, path, "maxTurns", 1, PLAN_MAX_TURNS_MAX, &turns);
    s_set(c, o, "maxTurns", json_integer(turns));
    if (c->errors != errors) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static bool s_step_name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > 63 || !isalnum((unsigned char) n[0]))
        return false;
    for (const char *p = n; *p; p++)
        if (!isalnum((unsigned char) *p) && *p != '-' && *p != '_' && *p != '.')
            return false;
    return true;
}

static json_t *s_norm_step(s_vctx_t *c, const json_t *st, const char *path)
{
    static const char *const fields[] = {"name",    "run",     "rewrite", "noop", "agent",
                                         "publish", "timeout", "sandbox", NULL};
    static const char *const actions[] = {"run", "rewrite", "noop", "agent", "publish", NULL};
    char p[S_PATH_MAX];
    if (!json_is_object(st)) {
        s_err(c, path, "a step must be a mapping, not %s", s_type_name(st));
        return NULL;
    }
    s_fields(c, st, path, fields);
    json_t *o = json_object();
    if (!o)
        return NULL;
    const char *name = NULL;
    if (s_string(c, st, path, "name", true, 63, &name) > 0) {
        s_path(p, sizeof p, path, "name");
        if (!s_step_name_ok(name))
            s_err(c, p, "'%.64s' is not a valid step name (letters, digits, '-', '_', '.')", name);
        else {
            s_set(c, o, "name", json_string(name));
            c->step_name = name;
        }
    }
    const char *action = NULL;
    for (size_t i = 0; actions[i]; i++) {
        if (!json_object_get(st, actions[i]))
            continue;
        if (action) {
            s_path(p, sizeof p, path, actions[i]);
            s_err(c, p,
                  "a step takes exactly one of run, rewrite, noop, agent, publish (this "
                  "one has %s and %s)",
                  action, actions[i]);
            continue;
        }
        action = actions[i];
    }
    if (!action)
        s_err(c, path, "a step needs one of run, rewrite, noop, agent, publish");
    s_path(p, sizeof p, path, action ? action : "");
    json_t *av = action ? json_object_get(st, action) : NULL;
    if (action && !strcmp(action, "run")) {
        json_t *run = s_command(c, st, path, "run", true);
        if (run)
            s_set(c, o, "run", run);
    } else if (action && !strcmp(action, "rewrite")) {
        json_t *r = s_norm_rewrite(c, av, p);
        if (r)
            s_set(c, o, "rewrite", r);
    } else if (action && !strcmp(action, "noop")) {
        if (json_is_true(av) || (json_is_object(av) && json_object_size(av) == 0))
            s_set(c, o, "noop", json_true());
        else
            s_err(c, p, "must be true (or {})");
    } else if (action && !strcmp(action, "agent")) {
        json_t *a = s_norm_agent(c, av, p);
        if (a)
            s_set(c, o, "agent", a);
    } else if (action && !strcmp(action, "publish")) {
        static const char *const pf[] = {"run", NULL};
        if (!json_is_object(av)) {
            s_err(c, p, "must be a mapping {run}, not %s", s_type_name(av));
        } else {
            s_fields(c, av, p, pf);
            json_t *run = s_command(c, av, p, "run", true);
            if (run)
                s_set(c, o, "publish", json_pack("{s:o}", "run", run));
        }
    }
    uint64_t ms = PLAN_DEFAULT_TIMEOUT_MS;
    s_duration(c, st, path, "timeout", 1, S_TIMEOUT_MAX_MS, &ms);
    s_set(c, o, "timeout", s_json_duration(ms));
    json_t *sb = s_object(c, st, path, "sandbox", false, p, sizeof p);
    if (sb) {
        static const char *const sf[] = {"network", NULL};
        s_fields(c, sb, p, sf);
        const char *net = NULL;
        char np[S_PATH_MAX];
        s_path(np, sizeof np, p, "network");
        if (s_string(c, sb, p, "network", true, 16, &net) > 0) {
            if (strcmp(net, "none"))
                s_err(c, np, "the only sandbox network is 'none', not '%.16s'", net);
            else if (c->check_root && geteuid() != 0)
                s_err(c, np,
                      "network: none needs root (a new network namespace): run as root or "
                      "remove the sandbox");
            else
                s_set(c, o, "sandbox", json_pack("{s:s}", "network", "none"));
        }
    }
    return o;
}

static void s_norm_steps(s_vctx_t *c, const json_t *spec, json_t *out)
{
    json_t *steps = json_object_get(spec, "steps");
    char p[S_PATH_MAX];
    if (!steps) {
        s_err(c, "spec.steps", "is required (a list of steps)");
        return;
    }
    if (!json_is_array(steps)) {
        s_err(c, "spec.steps", "must be a list, not %s", s_type_name(steps));
        return;
    }
    if (json_array_size(steps) == 0) {
        s_err(c, "spec.steps", "needs at least one step");
        return;
    }
    if (json_array_size(steps) > PLAN_STEPS_MAX) {
        s_err(c, "spec.steps", "has more than %d steps", PLAN_STEPS_MAX);
        return;
    }
    json_t *o = json_array();
    s_set(c, out, "steps", o);
    size_t i;
    json_t *st;
    json_array_foreach(steps, i, st)
    {
        s_pathi(p, sizeof p, "spec.steps", i);
        json_t *n = s_norm_step(c, st, p);
        c->step_name = NULL;
        if (!n)
            continue;
        const char *name = json_string_value(json_object_get(n, "name"));
        size_t j;
        json_t *prev;
        json_array_foreach(o, j, prev)
        {
            const char *pn = json_string_value(json_object_get(prev, "name"));
            if (name && pn && !strcmp(name, pn)) {
                char np[S_PATH_MAX];
                s_path(np, sizeof np, p, "name");
                s_err(c, np, "step name '%s' is used twice", name);
                break;
            }
        }
        if (o)
            json_array_append_new(o, n);
        else
            json_decref(n);
    }
}

static void s_norm_retry(s_vctx_t *c, const json_t *spec, json_t *out)
{
    static const char *const fields[] = {"maxAttempts", "initialBackoff",     "multiplier",
                                         "maxBackoff",  "retryableExitCodes", NULL};
    char p[S_PATH_MAX], ip[S_PATH_MAX];
    json_t *r = s_object(c, spec, "spec", "retry", false, p, sizeof p);
    json_t *empty = NULL;
    if (!r) {
        if (json_object_get(spec, "retry"))
            return;
        r = empty = json_object();
    }
    json_t *o = json_object();
    s_set(c, out, "retry", o);
    if (!o || !r) {
        json_decref(empty);
        return;
    }
    s_fields(c, r, "spec.retry", fields);
    json_int_t attempts = PLAN_DEFAULT_MAX_ATTEMPTS;
    uint64_t initial = PLAN_DEFAULT_BACKOFF_MS, maxb = PLAN_DEFAULT_MAX_BACKOFF_MS;
    double mult = PLAN_DEFAULT_MULTIPLIER;
    s_uint(c, r, "spec.retry", "maxAttempts", 1, 1000, &attempts);
    int hi = s_duration(c, r, "spec.retry", "initialBackoff", 0, S_BACKOFF_MAX_MS, &initial);
    s_number(c, r, "spec.retry", "multiplier", 1.0, 100.0, &mult);
    int hm = s_duration(c, r, "spec.retry", "maxBackoff", 0, S_BACKOFF_MAX_MS, &maxb);
    if (hi >= 0 && hm >= 0 && maxb < initial) {
        if (hm == 0)
            maxb = initial; /* only initialBackoff given: do not shrink it */
        else
            s_err(c, "spec.retry.maxBackoff", "must not be shorter than initialBackoff");
    }
    s_set(c, o, "maxAttempts", json_integer(attempts));
    s_set(c, o, "initialBackoff", s_json_duration(initial));
    s_set(c, o, "multiplier", s_json_number(mult));
    s_set(c, o, "maxBackoff", s_json_duration(maxb));
    json_t *codes = json_object_get(r, "retryableExitCodes"), *norm = json_array();
    s_path(p, sizeof p, "spec.retry", "retryableExitCodes");
    if (codes && !json_is_array(codes)) {
        s_err(c, p, "must be a list of exit codes, not %s", s_type_name(codes));
    } else if (codes && json_array_size(codes) > 255) {
        s_err(c, p, "has more than 255 entries");
    } else if (codes && norm) {
        size_t i;
        json_t *code;
        json_array_foreach(codes, i, code)
        {
            s_pathi(ip, sizeof ip, p, i);
            json_int_t v = json_is_integer(code) ? json_integer_value(code) : -1;
            if (v < 1 || v > 255) {
                s_err(c, ip, "must be an exit code between 1 and 255");
                continue;
            }
            bool dup = false;
            for (size_t j = 0; j < json_array_size(norm) && !dup; j++)
                dup = json_integer_value(json_array_get(norm, j)) == v;
            if (dup)
                s_err(c, ip, "exit code %lld is listed twice", (long long) v);
            else
                json_array_append_new(norm, json_integer(v));
        }
    }
    s_set(c, o, "retryableExitCodes", norm);
    json_decref(empty);
}

static void s_norm_rollout(s_vctx_t *c, const json_t *spec, json_t *out)
{
    static const char *const fields[] = {"canary", "maxParallel", "ratePerMinute",
                                         "maxFailureRatio", NULL};
    char p[S_PATH_MAX];
    json_t *r = s_object(c, spec, "spec", "rollout", false, p, sizeof p);
    json_t *empty = NULL;
    if (!r) {
        if (json_object_get(spec, "rollout"))
            return;
        r = empty = json_object();
    }
    json_t *o = json_object();
    s_set(c, out, "rollout", o);
    if (!o || !r) {
        json_decref(empty);
        return;
    }
    s_fields(c, r, "spec.rollout", fields);
    json_int_t canary = 0, par = 0, rate = 0;
    double ratio = 0;
    s_uint(c, r, "spec.rollout", "canary", 0, PLAN_TARGETS_MAX, &canary);
    s_set(c, o, "canary", json_integer(canary));
    if (s_uint(c, r, "spec.rollout", "maxParallel", 1, PLAN_TARGETS_MAX, &par) > 0)
        s_set(c, o, "maxParallel", json_integer(par));
    if (s_uint(c, r, "spec.rollout", "ratePerMinute", 1, 1000000, &rate) > 0)
        s_set(c, o, "ratePerMinute", json_integer(rate));
    if (s_number(c, r, "spec.rollout", "maxFailureRatio", 0.0, 1.0, &ratio) > 0)
        s_set(c, o, "maxFailureRatio", s_json_number(ratio));
    json_decref(empty);
}

static void s_norm_approval(s_vctx_t *c, const json_t *spec, json_t *out)
{
    static const char *const fields[] = {"when", "quorum", NULL};
    static const char *const when_fields[] = {"annotations", "owner",     "kinds",
                                              "tags",        "lifecycle", NULL};
    char p[S_PATH_MAX], wp[S_PATH_MAX];
    json_t *a = s_object(c, spec, "spec", "approval", false, p, sizeof p);
    if (!a)
        return;
    s_fields(c, a, p, fields);
    json_t *o = json_object(), *w = json_object();
    s_set(c, out, "approval", o);
    if (!o || !w) {
        json_decref(w);
        return;
    }
    json_t *when = s_object(c, a, p, "when", false, wp, sizeof wp);
    json_t *empty = NULL;
    if (!when)
        when = empty = json_object();
    if (when) {
        s_fields(c, when, wp, when_fields);
        s_norm_filter(c, when, wp, w);
    }
    s_set(c, o, "when", w);
    json_int_t quorum = 1;
    s_uint(c, a, p, "quorum", 1, PLAN_QUORUM_MAX, &quorum);
    s_set(c, o, "quorum", json_integer(quorum));
    json_decref(empty);
}

static void s_norm_docs(s_vctx_t *c, const json_t *spec, json_t *out)
{
    static const char *const fields[] = {"catalogOut", "report", NULL};
    char p[S_PATH_MAX], fp[S_PATH_MAX];
    json_t *d = s_object(c, spec, "spec", "docs", false, p, sizeof p);
    if (!d)
        return;
    s_fields(c, d, p, fields);
    json_t *o = json_object();
    s_set(c, out, "docs", o);
    if (!o)
        return;
    for (size_t i = 0; fields[i]; i++) {
        const char *v = NULL;
        s_path(fp, sizeof fp, p, fields[i]);
        if (s_string(c, d, p, fields[i], false, PLAN_VALUE_MAX, &v) > 0) {
            json_t *abs = s_norm_path(c, v, fp);
            if (abs)
                s_set(c, o, fields[i], abs);
        }
    }
}

static void s_norm_vars(s_vctx_t *c, const json_t *spec, json_t *out)
{
    json_t *vars = s_string_map(c, spec, "spec", "vars", PLAN_VARS_MAX, s_var_key_ok,
                                "letters, digits, '_' and '-', at most 64");
    if (!vars) {
        /* Keep checking templates against the names that were given. */
        json_t *src = json_object_get(spec, "vars");
        vars = json_object();
        const char *k;
        json_t *v;
        if (vars && json_is_object(src)) {
            json_object_foreach(src, k, v)
            {
                json_object_set_new(vars, k, json_string(""));
            }
        }
    }
    s_set(c, out, "vars", vars);
    c->vars = vars;
}

static void s_norm_spec(s_vctx_t *c, const json_t *src, json_t *out)
{
    static const char *const fields[] = {"catalog",  "dataset", "targets", "vars",  "precheck",
                                         "steps",    "verify",  "judge",   "retry", "rollout",
                                         "approval", "docs",    "notify",  NULL};
    char p[S_PATH_MAX];
    json_t *spec = s_object(c, src, "", "spec", true, p, sizeof p);
    if (!spec)
        return;
    s_fields(c, spec, "spec", fields);
    json_t *o = json_object();
    s_set(c, out, "spec", o);
    if (!o)
        return;
    const char *cat = NULL;
    if (s_string(c, spec, "spec", "catalog", true, PLAN_VALUE_MAX, &cat) > 0) {
        if (s_is_url(cat))
            s_set(c, o, "catalog", json_string(cat));
        else {
            json_t *abs = s_norm_path(c, cat, "spec.catalog");
            if (abs)
                s_set(c, o, "catalog", abs);
        }
    }
    s_norm_dataset(c, spec, o);
    s_norm_targets(c, spec, o);
    s_norm_vars(c, spec, o);
    s_norm_hook(c, spec, "precheck", o);
    s_norm_steps(c, spec, o);
    s_norm_hook(c, spec, "verify", o);
    s_norm_hook(c, spec, "judge", o);
    s_norm_retry(c, spec, o);
    s_norm_rollout(c, spec, o);
    s_norm_approval(c, spec, o);
    s_norm_docs(c, spec, o);
    s_norm_hook(c, spec, "notify", o);

    /* Cross-field rules (on the source, so they hold even when a step has
     * errors of its own). */
    json_t *steps = json_object_get(spec, "steps");
    size_t i;
    json_t *st;
    json_array_foreach(steps, i, st)
    {
        if (json_object_get(st, "agent") && !json_object_get(spec, "verify")) {
            s_pathi(p, sizeof p, "spec.steps", i);
            s_err(c, p, "an agent step needs spec.verify (the check each turn is judged by)");
        }
    }
    if (json_object_get(spec, "judge") && !json_object_get(spec, "verify"))
        s_err(c, "spec.judge", "needs spec.verify (judge runs after verify passes)");
}

/* The whole document: returns the normalised document (NULL when c->errors
 * grew). */
static json_t *s_normalize(s_vctx_t *c, const json_t *src, bool with_targets)
{
    static const char *const fields[] = {"apiVersion", "kind", "metadata", "spec", NULL};
    static const char *const resolved_fields[] = {"apiVersion", "kind",    "metadata",
                                                  "spec",       "targets", NULL};
    size_t errors = c->errors;
    if (!json_is_object(src)) {
        s_err(c, "", "a plan must be a mapping, not %s", s_type_name(src));
        return NULL;
    }
    json_t *out = json_object();
    if (!out) {
        s_err(c, "", "out of memory");
        return NULL;
    }
    s_fields(c, src, "", with_targets ? resolved_fields : fields);
    const char *api = NULL, *kind = NULL;
    if (s_string(c, src, "", "apiVersion", true, 64, &api) > 0 && strcmp(api, PLAN_API_VERSION))
        s_err(c, "apiVersion", "must be %s, not '%s'", PLAN_API_VERSION, api);
    if (s_string(c, src, "", "kind", true, 64, &kind) > 0 && strcmp(kind, PLAN_KIND))
        s_err(c, "kind", "must be %s, not '%s'", PLAN_KIND, kind);
    s_set(c, out, "apiVersion", json_string(PLAN_API_VERSION));
    s_set(c, out, "kind", json_string(PLAN_KIND));
    s_norm_metadata(c, src, out);
    s_norm_spec(c, src, out);
    if (c->errors != errors) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* ======================================================================
 * Target selection and freezing
 * ==================================================================== */

/* What a filter looks at. */
typedef struct {
    const char *kind;
    const char *owner;
    const char *lifecycle;
    const json_t *annotations; /* object or NULL */
    const json_t *tags;        /* array or NULL */
} s_subject_t;

static bool s_in_list_ci(const json_t *list, const char *v)
{
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        if (v && !strcasecmp(json_string_value(item), v))
            return true;
    }
    return false;
}

static bool s_in_list(const json_t *list, const char *v)
{
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        if (v && !strcmp(json_string_value(item), v))
            return true;
    }
    return false;
}

/* Every given criterion must hold: kinds (any, case-insensitive), owner
 * (any), lifecycle (any), tags (all present), annotations (all equal). */
static bool s_match(const json_t *filter, const s_subject_t *s)
{
    json_t *kinds = json_object_get(filter, "kinds"), *owner = json_object_get(filter, "owner");
    json_t *life = json_object_get(filter, "lifecycle"), *tags = json_object_get(filter, "tags");
    json_t *ann = json_object_get(filter, "annotations");
    if (json_array_size(kinds) && !s_in_list_ci(kinds, s->kind))
        return false;
    if (json_array_size(owner) && !s_in_list(owner, s->owner))
        return false;
    if (json_array_size(life) && !s_in_list(life, s->lifecycle))
        return false;
    size_t i;
    json_t *item;
    json_array_foreach(tags, i, item)
    {
        if (!s_in_list(s->tags, json_string_value(item)))
            return false;
    }
    const char *k;
    json_object_foreach(ann, k, item)
    {
        json_t *have = json_object_get(s->annotations, k);
        if (!json_is_string(have) || strcmp(json_string_value(have), json_string_value(item)))
            return false;
    }
    return true;
}

static const json_t *s_entity_tags(const json_t *entity)
{
    json_t *t = json_object_get(json_object_get(entity, "metadata"), "tags");
    return json_is_array(t) ? t : NULL;
}

static const json_t *s_entity_annotations(const json_t *entity)
{
    json_t *a = json_object_get(json_object_get(entity, "metadata"), "annotations");
    return json_is_object(a) ? a : NULL;
}

/* Adds a string field when value is not NULL; false when out of memory or
 * not UTF-8. */
static bool s_opt_string(json_t *o, const char *key, const char *value)
{
    if (!value)
        return true;
    json_t *s = json_string(value);
    return s && json_object_set_new(o, key, s) == 0;
}

/* One frozen target. annotations only string values are kept. */
static json_t *s_target_json(const json_t *spec, const char *ref, const char *kind, const char *ns,
                             const char *name, const char *owner, const char *lifecycle,
                             const char *source, const char *path, const json_t *entity)
{
    json_t *o = json_object(), *ann = json_object();
    const json_t *src_ann = s_entity_annotations(entity);
    const char *k;
    json_t *v;
    bool ok = o && ann;
    if (ok && src_ann)
        json_object_foreach((json_t *) src_ann, k, v)
        {
            if (json_is_string(v) && json_object_set(ann, k, v) != 0)
                ok = false;
        }
    s_subject_t subj = {kind, owner, lifecycle, ann, s_entity_tags(entity)};
    json_t *approval = json_object_get(spec, "approval");
    bool gated = approval && s_match(json_object_get(approval, "when"), &subj);
    ok = ok && s_opt_string(o, "ref", ref) && s_opt_string(o, "kind", kind) &&
         s_opt_string(o, "namespace", ns) && s_opt_string(o, "name", name) &&
         s_opt_string(o, "owner", owner) && s_opt_string(o, "lifecycle", lifecycle) &&
         s_opt_string(o, "source", source) && s_opt_string(o, "path", path) &&
         json_object_set(o, "annotations", ann) == 0 &&
         json_object_set(o, "entity", (json_t *) entity) == 0 &&
         json_object_set_new(o, "approval", json_boolean(gated)) == 0;
    json_decref(ann);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int s_entity_cmp(const void *a, const void *b)
{
    const catalog_entity_t *x = *(const catalog_entity_t *const *) a;
    const catalog_entity_t *y = *(const catalog_entity_t *const *) b;
    return strcmp(x->ref, y->ref);
}

/* ======================================================================
 * Views
 * ==================================================================== */

static uint64_t s_view_duration(const json_t *v, uint64_t def)
{
    uint64_t ms = def;
    if (json_is_string(v) && units_parse_duration(json_string_value(v), &ms) != 0)
        ms = def;
    return ms;
}

static void s_view_hook(const json_t *spec, const char *key, plan_hook_t *h)
{
    json_t *o = json_object_get(spec, key);
    h->run = json_string_value(json_object_get(o, "run"));
    h->timeout_ms = s_view_duration(json_object_get(o, "timeout"), PLAN_DEFAULT_TIMEOUT_MS);
}

static void s_views_free(plan_t *p)
{
    for (size_t i = 0; p->steps && i < p->spec.step_count; i++) {
        free((void *) p->steps[i].paths);
        free((void *) p->steps[i].replace);
    }
    free(p->steps);
    free(p->notify_on);
    free(p->exit_codes);
    free(p->targets);
    p->steps = NULL;
    p->notify_on = NULL;
    p->exit_codes = NULL;
    p->targets = NULL;
    p->target_count = 0;
    memset(&p->spec, 0, sizeof p->spec);
}

/* A frozen target's view; its strings borrow from t. */
static void s_target_view(const json_t *t, plan_target_t *v)
{
    v->ref = json_string_value(json_object_get(t, "ref"));
    v->kind = json_string_value(json_object_get(t, "kind"));
    v->namespace = json_string_value(json_object_get(t, "namespace"));
    v->name = json_string_value(json_object_get(t, "name"));
    v->owner = json_string_value(json_object_get(t, "owner"));
    v->lifecycle = json_string_value(json_object_get(t, "lifecycle"));
    v->source = json_string_value(json_object_get(t, "source"));
    v->path = json_string_value(json_object_get(t, "path"));
    v->annotations = json_object_get(t, "annotations");
    v->entity = json_object_get(t, "entity");
    v->needs_approval = json_is_true(json_object_get(t, "approval"));
}

/* Builds the views from the normalised document. */
static int s_views_build(plan_t *p)
{
    plan_spec_t *s = &p->spec;
    json_t *doc = p->doc, *md = json_object_get(doc, "metadata");
    json_t *spec = json_object_get(doc, "spec");
    s_views_free(p);
    s->name = json_string_value(json_object_get(md, "name"));
    s->owner = json_string_value(json_object_get(md, "owner"));
    s->description = json_string_value(json_object_get(md, "description"));
    s->catalog = json_string_value(json_object_get(spec, "catalog"));
    json_t *ds = json_object_get(spec, "dataset"), *tg = json_object_get(spec, "targets");
    s->dataset_from = json_string_value(json_object_get(ds, "from"));
    s->dataset_to = json_string_value(json_object_get(ds, "to"));
    s->consumers_of = json_string_value(json_object_get(tg, "consumersOf"));
    s->transitive = json_is_true(json_object_get(tg, "transitive"));
    s->vars = json_object_get(spec, "vars");
    s_view_hook(spec, "precheck", &s->precheck);
    s_view_hook(spec, "verify", &s->verify);
    s_view_hook(spec, "judge", &s->judge);
    s_view_hook(spec, "notify", &s->notify);
    json_t *on = json_object_get(json_object_get(spec, "notify"), "on");
    size_t n = json_array_size(on), i;
    if (n) {
        if (!(p->notify_on = calloc(n, sizeof *p->notify_on)))
            return GG_ENOMEM;
        for (i = 0; i < n; i++)
            p->notify_on[i] = json_string_value(json_array_get(on, i));
    }
    s->notify_on = p->notify_on;
    s->notify_on_count = n;

    json_t *steps = json_object_get(spec, "steps");
    n = json_array_size(steps);
    if (!(p->steps = calloc(n ? n : 1, sizeof *p->steps)))
        return GG_ENOMEM;
    s->steps = p->steps;
    s->step_count = n;
    for (i = 0; i < n; i++) {
        json_t *st = json_array_get(steps, i);
        plan_step_t *v = &p->steps[i];
        v->name = json_string_value(json_object_get(st, "name"));
        v->timeout_ms = s_view_duration(json_object_get(st, "timeout"), PLAN_DEFAULT_TIMEOUT_MS);
        v->sandbox_network_none = json_object_get(st, "sandbox") != NULL;
        json_t *a;
        if ((a = json_object_get(st, "run"))) {
            v->kind = PLAN_STEP_RUN;
            v->run = json_string_value(a);
        } else if ((a = json_object_get(st, "agent"))) {
            v->kind = PLAN_STEP_AGENT;
            v->run = json_string_value(json_object_get(a, "run"));
            v->prompt = json_string_value(json_object_get(a, "prompt"));
            v->max_turns = (uint32_t) json_integer_value(json_object_get(a, "maxTurns"));
        } else if ((a = json_object_get(st, "publish"))) {
            v->kind = PLAN_STEP_PUBLISH;
            v->run = json_string_value(json_object_get(a, "run"));
        } else if ((a = json_object_get(st, "rewrite"))) {
            v->kind = PLAN_STEP_REWRITE;
            json_t *paths = json_object_get(a, "paths"), *rep = json_object_get(a, "replace");
            size_t np = json_array_size(paths), nr = json_array_size(rep);
            const char **pv = calloc(np + 1, sizeof *pv);
            plan_replace_t *rv = calloc(nr + 1, sizeof *rv);
            v->paths = pv;
            v->replace = rv;
            if (!pv || !rv)
                return GG_ENOMEM;
            for (size_t j = 0; j < np; j++)
                pv[j] = json_string_value(json_array_get(paths, j));
            for (size_t j = 0; j < nr; j++) {
                json_t *pair = json_array_get(rep, j);
                rv[j].from = json_string_value(json_object_get(pair, "from"));
                rv[j].to = json_string_value(json_object_get(pair, "to"));
            }
            v->path_count = np;
            v->replace_count = nr;
            v->word = json_is_true(json_object_get(a, "word"));
            v->regex = json_is_true(json_object_get(a, "regex"));
        } else {
            v->kind = PLAN_STEP_NOOP;
        }
    }

    json_t *r = json_object_get(spec, "retry");
    s->max_attempts = (uint32_t) json_integer_value(json_object_get(r, "maxAttempts"));
    s->initial_backoff_ms =
        s_view_duration(json_object_get(r, "initialBackoff"), PLAN_DEFAULT_BACKOFF_MS);
    s->multiplier = json_number_value(json_object_get(r, "multiplier"));
    s->max_backoff_ms =
        s_view_duration(json_object_get(r, "maxBackoff"), PLAN_DEFAULT_MAX_BACKOFF_MS);
    json_t *codes = json_object_get(r, "retryableExitCodes");
    n = json_array_size(codes);
    if (n) {
        if (!(p->exit_codes = calloc(n, sizeof *p->exit_codes)))
            return GG_ENOMEM;
        for (i = 0; i < n; i++)
            p->exit_codes[i] = (int) json_integer_value(json_array_get(codes, i));
    }
    s->retryable_exit_codes = p->exit_codes;
    s->retryable_count = n;

    json_t *ro = json_object_get(spec, "rollout");
    s->canary = (uint32_t) json_integer_value(json_object_get(ro, "canary"));
    s->max_parallel = (uint32_t) json_integer_value(json_object_get(ro, "maxParallel"));
    s->rate_per_minute = (uint32_t) json_integer_value(json_object_get(ro, "ratePerMinute"));
    json_t *ratio = json_object_get(ro, "maxFailureRatio");
    s->max_failure_ratio = ratio ? json_number_value(ratio) : -1.0;
    json_t *ap = json_object_get(spec, "approval");
    s->approval = ap != NULL;
    s->quorum = ap ? (uint32_t) json_integer_value(json_object_get(ap, "quorum")) : 0;
    json_t *docs = json_object_get(spec, "docs");
    s->docs_catalog_out = json_string_value(json_object_get(docs, "catalogOut"));
    s->docs_report = json_string_value(json_object_get(docs, "report"));

    json_t *targets = json_object_get(doc, "targets");
    n = json_array_size(targets);
    if (n) {
        if (!(p->targets = calloc(n, sizeof *p->targets)))
            return GG_ENOMEM;
        for (i = 0; i < n; i++)
            s_target_view(json_array_get(targets, i), &p->targets[i]);
    }
    p->target_count = n;
    return 0;
}

/* ======================================================================
 * Loading
 * ==================================================================== */

static plan_t *s_plan_new(const char *display)
{
    plan_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->display = strdup(display ? display : "plan");
    if (!p->display) {
        free(p);
        return NULL;
    }
    return p;
}

void plan_destroy(plan_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    plan_t *p = *self_p;
    s_views_free(p);
    free(p->tix);
    free(p->gated);
    free(p->refs);
    free(p->canon);
    json_decref(p->doc);
    yamljson_destroy(&p->yj);
    free(p->display);
    free(p);
    *self_p = NULL;
}

/* Takes the parsed source (yj, owned) and validates its single document. */
static int s_load_parsed(yamljson_t *yj, const char *display, const char *base_dir,
                         const plan_opts_t *opts, plan_t **out, plan_diag_t *diag)
{
    s_vctx_t c = {.diag = diag, .display = display, .yj = yj, .base_dir = base_dir};
    c.check_root = opts ? opts->check_root : false;
    int rc = 0;
    plan_t *p = NULL;
    json_t *doc = NULL;
    if (yamljson_count(yj) != 1) {
        if (yamljson_count(yj) == 0)
            s_err(&c, "", "the file holds no plan (it is empty)");
        else {
            c.yj = NULL;
            s_err(&c, "", "a plan file holds exactly one document, this one holds %zu",
                  yamljson_count(yj));
        }
        rc = GG_EINVAL;
        goto out;
    }
    doc = s_normalize(&c, yamljson_doc(yj, 0), false);
    if (!doc || c.errors) {
        rc = GG_EINVAL;
        goto out;
    }
    if (!(p = s_plan_new(display))) {
        rc = GG_ENOMEM;
        goto out;
    }
    p->doc = doc;
    doc = NULL;
    p->yj = yj;
    yj = NULL;
    if ((rc = s_views_build(p)) != 0)
        goto out;
    *out = p;
    p = NULL;
out:
    if (rc == GG_ENOMEM)
        plan_diag_add(diag, true, display, "out of memory");
    json_decref(doc);
    plan_destroy(&p);
    yamljson_destroy(&yj);
    return rc;
}

/* "LINE:COL: reason" from yamljson becomes where "FILE:LINE:COL". */
static void s_syntax_error(plan_diag_t *diag, const char *display, const char *msg)
{
    unsigned long line = 0, col = 0;
    int used = 0;
    if (sscanf(msg, "%lu:%lu: %n", &line, &col, &used) == 2 && used > 0) {
        char where[S_WHERE_MAX];
        snprintf(where, sizeof where, "%s:%lu:%lu", display, line, col);
        plan_diag_add(diag, true, where, "%s", msg + used);
    } else {
        plan_diag_add(diag, true, display, "%s", msg);
    }
}

static void s_opts(yamljson_opts_t *o)
{
    yamljson_opts_default(o);
    o->max_bytes = PLAN_FILE_MAX;
    o->max_scalar = PLAN_TEXT_MAX;
    o->max_documents = 16;
    o->keep_lines = true;
}

int plan_load_text(const char *text, size_t len, const char *display, const char *base_dir,
                   const plan_opts_t *opts, plan_t **out, plan_diag_t *diag)
{
    yamljson_opts_t yo;
    yamljson_t *yj = NULL;
    char err[YAMLJSON_ERR_MAX];
    char cwd[PATH_MAX];
    *out = NULL;
    if (!display)
        display = "plan";
    if (!base_dir) {
        if (!getcwd(cwd, sizeof cwd)) {
            plan_diag_add(diag, true, display, "cannot read the current directory");
            return GG_EIO;
        }
        base_dir = cwd;
    }
    s_opts(&yo);
    int rc = yamljson_parse(text, len, NULL, &yo, &yj, err, sizeof err);
    if (rc != 0) {
        s_syntax_error(diag, display, err + (strncmp(err, "<input>:", 8) ? 0 : 8));
        yamljson_destroy(&yj);
        return rc == GG_EMALFORMED ? GG_EINVAL : rc;
    }
    return s_load_parsed(yj, display, base_dir, opts, out, diag);
}

int plan_load_file(const char *path, const char *display, const plan_opts_t *opts, plan_t **out,
                   plan_diag_t *diag)
{
    yamljson_opts_t yo;
    yamljson_t *yj = NULL;
    char err[YAMLJSON_ERR_MAX];
    *out = NULL;
    if (!display)
        display = path;
    s_opts(&yo);
    /* The folder of the plan file, absolute: relative paths resolve there. */
    char *copy = strdup(path), *base = NULL;
    if (!copy)
        return GG_ENOMEM;
    char *slash = strrchr(copy, '/');
    if (slash == copy)
        copy[1] = '\0';
    else if (slash)
        *slash = '\0';
    base = realpath(slash ? copy : ".", NULL);
    free(copy);
    int rc = yamljson_load_file(path, &yo, &yj, err, sizeof err);
    if (rc == 0 && !base)
        rc = GG_EIO;
    if (rc != 0) {
        /* yamljson names the path; keep the display name the caller chose. */
        const char *msg = err;
        size_t pl = strlen(path);
        if (!strncmp(err, path, pl) && err[pl] == ':')
            msg = err + pl + (err[pl + 1] == ' ' ? 2 : 1);
        if (rc == GG_ENOTFOUND || rc == GG_EIO || rc == GG_ETOOBIG || !*err)
            plan_diag_add(diag, true, display, "cannot read the plan: %s",
                          *err ? msg : gg_strerror(rc));
        else
            s_syntax_error(diag, display, msg);
        yamljson_destroy(&yj);
        free(base);
        return rc == GG_EMALFORMED ? GG_EINVAL : rc;
    }
    rc = s_load_parsed(yj, display, base, opts, out, diag);
    free(base);
    return rc;
}

/* True when frozen target t is exactly what s_target_json builds from its
 * own fields f (ref, kind, namespace, name, owner, lifecycle, source, path)
 * and entity under spec, without building it: the same keys and nothing
 * else, annotations the entity's string annotations, approval the match of
 * spec.approval.when. *gated receives that match. */
static bool s_target_matches(const json_t *spec, const json_t *t, const char *const f[8],
                             const json_t *entity, bool *gated)
{
    size_t want = 3; /* annotations, entity, approval */
    for (size_t k = 0; k < 8; k++)
        if (f[k])
            want++;
    json_t *ann = json_object_get(t, "annotations");
    if (json_object_size(t) != want || !json_is_object(ann))
        return false;
    const json_t *src = s_entity_annotations(entity);
    size_t n = 0;
    const char *k;
    json_t *v;
    if (src)
        json_object_foreach((json_t *) src, k, v)
        {
            if (!json_is_string(v))
                continue;
            n++;
            if (!json_equal(json_object_get(ann, k), v))
                return false;
        }
    if (json_object_size(ann) != n)
        return false;
    s_subject_t subj = {f[1], f[4], f[5], ann, s_entity_tags(entity)};
    json_t *approval = json_object_get(spec, "approval");
    bool g = approval && s_match(json_object_get(approval, "when"), &subj);
    json_t *a = json_object_get(t, "approval");
    if (!json_is_boolean(a) || json_is_true(a) != g)
        return false;
    *gated = g;
    return true;
}

/* Checks frozen target i (agent side): a valid, canonical ref greater than
 * the previous one (prev, a buffer of ENTITY_REF_FORMAT_MAX bytes, updated),
 * fields matching (s_target_matches). Errors go to c; returns true when t
 * is good, with its approval in *gated. */
static void s_target_err(s_vctx_t *c, size_t i, const char *msg)
{
    char p[S_PATH_MAX];
    s_pathi(p, sizeof p, "targets", i);
    s_err(c, p, "%s", msg);
}

static bool s_check_target(s_vctx_t *c, const json_t *spec, const json_t *t, size_t i, char *prev,
                           bool *gated)
{
    if (!json_is_object(t)) {
        s_target_err(c, i, "must be a mapping");
        return false;
    }
    const char *f[8];
    static const char *const keys[8] = {"ref",   "kind",      "namespace", "name",
                                        "owner", "lifecycle", "source",    "path"};
    bool ok = true;
    for (size_t k = 0; k < 8; k++) {
        json_t *v = json_object_get(t, keys[k]);
        f[k] = json_string_value(v);
        if ((v && (!json_is_string(v) || s_has_nul(v))) || (k < 4 && !v))
            ok = false;
    }
    const json_t *entity = json_object_get(t, "entity");
    char ref[ENTITY_REF_FORMAT_MAX];
    if (!ok || !json_is_object(entity) ||
        entity_ref_normalize(f[0], NULL, NULL, ref, sizeof ref, NULL, 0) != 0 ||
        strcmp(ref, f[0])) {
        s_target_err(c, i, "is not a valid frozen target");
        return false;
    }
    if (prev[0] && strcmp(prev, f[0]) >= 0) {
        s_target_err(c, i, "targets must be sorted by ref, without duplicates");
        ok = false;
    }
    memcpy(prev, ref, strlen(ref) + 1); /* ref fits: it is the normalised copy */
    if (!s_target_matches(spec, t, f, entity, gated)) {
        s_target_err(c, i, "does not match its own fields or spec.approval");
        ok = false;
    }
    return ok;
}

/* Checks a frozen target list against the spec (agent side). */
static void s_check_frozen(s_vctx_t *c, const json_t *spec, const json_t *targets)
{
    if (!json_is_array(targets)) {
        s_err(c, "targets", "must be a list, not %s", s_type_name(targets));
        return;
    }
    if (json_array_size(targets) > PLAN_TARGETS_MAX) {
        s_err(c, "targets", "has more than %d targets", PLAN_TARGETS_MAX);
        return;
    }
    size_t i;
    json_t *t;
    char prev[ENTITY_REF_FORMAT_MAX] = "";
    json_array_foreach(targets, i, t)
    {
        bool gated;
        s_check_target(c, spec, t, i, prev, &gated);
    }
}

int plan_from_json(const json_t *payload, plan_t **out, plan_diag_t *diag)
{
    s_vctx_t c = {.diag = diag, .display = "plan", .strict = true};
    plan_t *p = NULL;
    json_t *doc = NULL, *targets = NULL;
    int rc = 0;
    *out = NULL;
    if (!json_is_object(payload)) {
        s_err(&c, "", "a plan must be a JSON object");
        rc = GG_EINVAL;
        goto out;
    }
    doc = s_normalize(&c, payload, true);
    if (!doc) {
        rc = GG_EINVAL;
        goto out;
    }
    json_t *src_targets = json_object_get(payload, "targets");
    if (!src_targets)
        s_err(&c, "targets", "is required in a resolved plan");
    else
        s_check_frozen(&c, json_object_get(doc, "spec"), src_targets);
    if (c.errors == 0 &&
        (!(targets = json_deep_copy(src_targets)) || json_object_set(doc, "targets", targets) != 0))
        rc = GG_ENOMEM;
    if (c.errors == 0 && rc == 0 && !json_equal(doc, payload))
        s_err(&c, "",
              "the plan is not in its normalised form (defaults, refs and durations "
              "must be written out as plan_json does)");
    if (c.errors) {
        rc = GG_EINVAL;
        goto out;
    }
    if (rc)
        goto out;
    if (!(p = s_plan_new("plan"))) {
        rc = GG_ENOMEM;
        goto out;
    }
    p->doc = doc;
    doc = NULL;
    p->resolved = true;
    if ((rc = signed_hash_hex(p->doc, p->id)) != 0 || (rc = s_views_build(p)) != 0)
        goto out;
    *out = p;
    p = NULL;
out:
    json_decref(targets);
    json_decref(doc);
    plan_destroy(&p);
    return rc;
}

/* ======================================================================
 * Compact plans: the payload read piece by piece
 * ==================================================================== */

/* A cursor over canonical JSON text. */
typedef struct {
    const char *text;
    size_t len, pos;
    bool prove;    /* re-dump each value and compare it with its bytes */
    char *scratch; /* canonical dump of the last value */
    size_t cap;
} s_scan_t;

static bool s_scan_lit(s_scan_t *s, const char *lit)
{
    size_t n = strlen(lit);
    if (s->len - s->pos < n || memcmp(s->text + s->pos, lit, n) != 0)
        return false;
    s->pos += n;
    return true;
}

/* Parses the JSON object or array at the cursor and moves past it. Returns 0
 * with a new reference when the bytes there are its canonical form (or, when
 * s->prove is off, any JSON jansson reads without duplicate keys),
 * GG_EMALFORMED when they are not JSON or not canonical, GG_ENOMEM. */
static int s_scan_value(s_scan_t *s, json_t **out)
{
    *out = NULL;
    size_t avail = s->len - s->pos;
    json_error_t jerr;
    json_t *v =
        json_loadb(s->text + s->pos, avail, JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &jerr);
    if (!v)
        return GG_EMALFORMED;
    if (!s->prove) {
        /* jansson leaves the bytes it read in position, even on success. */
        if (jerr.position <= 0 || (size_t) jerr.position > avail) {
            json_decref(v);
            return GG_EMALFORMED;
        }
        s->pos += (size_t) jerr.position;
        *out = v;
        return 0;
    }
    size_t need = json_dumpb(v, s->scratch, s->cap, SIGNED_CANON_FLAGS);
    if (need > s->cap && need <= avail) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < need)
            cap *= 2;
        char *grown = realloc(s->scratch, cap);
        if (!grown) {
            json_decref(v);
            return GG_ENOMEM;
        }
        s->scratch = grown;
        s->cap = cap;
        need = json_dumpb(v, s->scratch, s->cap, SIGNED_CANON_FLAGS);
    }
    if (need == 0 || need > avail || need > s->cap ||
        memcmp(s->scratch, s->text + s->pos, need) != 0) {
        json_decref(v);
        return GG_EMALFORMED;
    }
    s->pos += need;
    *out = v;
    return 0;
}

/* Appends target (off, len, ref, gated) to a compact plan's index. */
static int s_index_add(plan_t *p, uint64_t off, size_t len, const char *ref, bool gated)
{
    size_t rlen = strlen(ref) + 1;
    if (len > UINT32_MAX || p->refs_len + rlen > UINT32_MAX)
        return GG_ETOOBIG;
    if (p->n_tix == p->cap_tix) {
        size_t cap = p->cap_tix ? p->cap_tix * 2 : 1024;
        s_tix_t *t = realloc(p->tix, cap * sizeof *t);
        if (!t)
            return GG_ENOMEM;
        p->tix = t;
        uint8_t *g = realloc(p->gated, (cap + 7) / 8);
        if (!g)
            return GG_ENOMEM;
        memset(g + (p->cap_tix + 7) / 8, 0, (cap + 7) / 8 - (p->cap_tix + 7) / 8);
        p->gated = g;
        p->cap_tix = cap;
    }
    if (p->refs_len + rlen > p->refs_cap) {
        size_t cap = p->refs_cap ? p->refs_cap * 2 : 32768;
        while (cap < p->refs_len + rlen)
            cap *= 2;
        char *r = realloc(p->refs, cap);
        if (!r)
            return GG_ENOMEM;
        p->refs = r;
        p->refs_cap = cap;
    }
    s_tix_t *t = &p->tix[p->n_tix];
    t->off = off;
    t->len = (uint32_t) len;
    t->ref = (uint32_t) p->refs_len;
    memcpy(p->refs + p->refs_len, ref, rlen);
    p->refs_len += rlen;
    if (gated)
        p->gated[p->n_tix / 8] |= (uint8_t) (1u << (p->n_tix % 8));
    p->n_tix++;
    return 0;
}

/* Gives back the slack of the index arrays once they are complete. */
static void s_index_shrink(plan_t *p)
{
    if (p->n_tix && p->n_tix < p->cap_tix) {
        s_tix_t *t = realloc(p->tix, p->n_tix * sizeof *t);
        if (t) {
            p->tix = t;
            p->cap_tix = p->n_tix;
        }
    }
    if (p->refs_len && p->refs_len < p->refs_cap) {
        char *r = realloc(p->refs, p->refs_len);
        if (r) {
            p->refs = r;
            p->refs_cap = p->refs_len;
        }
    }
}

int plan_from_canonical(const char *text, size_t len, size_t payload_off, size_t payload_len,
                        const uint8_t *replicated_id, plan_doc_reader_fn *reader, void *reader_arg,
                        plan_t **out, plan_diag_t *diag)
{
    static const char head_lit[] =
        "{\"apiVersion\":\"" PLAN_API_VERSION "\",\"kind\":\"" PLAN_KIND "\",\"metadata\":";
    s_vctx_t c = {.diag = diag, .display = "plan", .strict = true};
    s_scan_t sc = {.prove = true};
    json_t *md = NULL, *spec = NULL, *head = NULL, *doc = NULL, *t = NULL;
    plan_t *p = NULL;
    uint8_t hash[32];
    int rc = 0;
    *out = NULL;
    if (!text || payload_off > len || payload_len > len - payload_off)
        return GG_EINVAL;
    sc.text = text + payload_off;
    sc.len = payload_len;
    crypto_generichash(hash, sizeof hash, (const unsigned char *) sc.text, sc.len, NULL, 0);
    if (!s_scan_lit(&sc, head_lit) || (rc = s_scan_value(&sc, &md)) != 0 || !json_is_object(md) ||
        !s_scan_lit(&sc, ",\"spec\":") || (rc = s_scan_value(&sc, &spec)) != 0 ||
        !json_is_object(spec) || !s_scan_lit(&sc, ",\"targets\":[")) {
        rc = rc ? rc : GG_EMALFORMED;
        goto out;
    }
    head = json_pack("{s:s, s:s, s:O, s:O}", "apiVersion", PLAN_API_VERSION, "kind", PLAN_KIND,
                     "metadata", md, "spec", spec);
    if (!head) {
        rc = GG_ENOMEM;
        goto out;
    }
    doc = s_normalize(&c, head, false);
    if (!doc) {
        rc = GG_EINVAL;
        goto out;
    }
    if (!json_equal(doc, head)) {
        s_err(&c, "",
              "the plan is not in its normalised form (defaults, refs and durations "
              "must be written out as plan_json does)");
        rc = GG_EINVAL;
        goto out;
    }
    if (!(p = s_plan_new("plan"))) {
        rc = GG_ENOMEM;
        goto out;
    }
    p->doc = doc;
    doc = NULL;
    p->resolved = true;
    p->compact = true;
    p->reader = reader;
    p->reader_arg = reader_arg;
    if ((rc = s_views_build(p)) != 0)
        goto out;
    const json_t *nspec = json_object_get(p->doc, "spec");
    char prev[ENTITY_REF_FORMAT_MAX] = "";
    /* The targets of a document replicated under the hash of these very
     * bytes need no proof of their form: the id is already what every node
     * computes from what it stores. Anything else is proven canonical. */
    sc.prove = !replicated_id || memcmp(replicated_id, hash, sizeof hash) != 0;
    if (!s_scan_lit(&sc, "]")) {
        for (size_t i = 0;; i++) {
            if (i >= PLAN_TARGETS_MAX) {
                s_err(&c, "targets", "has more than %d targets", PLAN_TARGETS_MAX);
                rc = GG_EINVAL;
                goto out;
            }
            size_t start = sc.pos;
            if ((rc = s_scan_value(&sc, &t)) != 0)
                goto out;
            bool gated = false;
            if (s_check_target(&c, nspec, t, i, prev, &gated))
                rc = s_index_add(p, payload_off + start, sc.pos - start,
                                 json_string_value(json_object_get(t, "ref")), gated);
            json_decref(t);
            t = NULL;
            if (rc)
                goto out;
            if (s_scan_lit(&sc, ","))
                continue;
            if (s_scan_lit(&sc, "]"))
                break;
            rc = GG_EMALFORMED;
            goto out;
        }
    }
    if (!s_scan_lit(&sc, "}") || sc.pos != sc.len) {
        rc = GG_EMALFORMED;
        goto out;
    }
    if (c.errors) {
        rc = GG_EINVAL;
        goto out;
    }
    s_index_shrink(p);
    memcpy(p->bin_id, hash, sizeof p->bin_id);
    signed_hex_encode(p->bin_id, sizeof p->bin_id, p->id);
    *out = p;
    p = NULL;
out:
    if (rc == GG_ENOMEM)
        plan_diag_add(diag, true, "plan", "out of memory");
    json_decref(t);
    json_decref(doc);
    json_decref(head);
    json_decref(md);
    json_decref(spec);
    free(sc.scratch);
    plan_destroy(&p);
    return rc;
}

/* ======================================================================
 * Catalog and resolution
 * ==================================================================== */

int plan_load_catalog(const plan_t *self, catalog_t **out, plan_diag_t *diag)
{
    s_vctx_t c = {.diag = diag, .display = self->display, .yj = self->yj};
    *out = NULL;
    catalog_t *cat = catalog_new();
    if (!cat) {
        s_err(&c, "spec.catalog", "out of memory");
        return GG_ENOMEM;
    }
    const char *src = self->spec.catalog;
    int rc = s_is_url(src) ? catalog_load_url(cat, src) : catalog_load_path(cat, src);
    size_t n = 0;
    const catalog_warning_t *w = catalog_warnings(cat, &n);
    for (size_t i = 0; i < n; i++)
        plan_diag_add(diag, false, w[i].where, "%s", w[i].message);
    if (catalog_warnings_dropped(cat))
        plan_diag_add(diag, false, src, "%zu more catalog warnings not shown",
                      catalog_warnings_dropped(cat));
    if (rc != 0) {
        s_err(&c, "spec.catalog", "cannot read the catalog %s: %s", src, gg_strerror(rc));
        catalog_destroy(&cat);
        return rc;
    }
    *out = cat;
    return 0;
}

int plan_resolve(plan_t *self, catalog_t *cat, plan_diag_t *diag)
{
    s_vctx_t c = {.diag = diag, .display = self->display, .yj = self->yj};
    const catalog_entity_t **consumers = NULL, **sel = NULL;
    size_t ncons = 0, nsel = 0, cap = 0, i;
    json_t *excluded = json_object(), *arr = NULL, *spec = json_object_get(self->doc, "spec");
    json_t *tspec = json_object_get(spec, "targets");
    char p[S_PATH_MAX];
    int rc = 0;
    if (!excluded) {
        rc = GG_ENOMEM;
        goto out;
    }
    const char *of = self->spec.consumers_of;
    if (!catalog_find(cat, of, NULL, NULL))
        s_warn(&c, "spec.targets.consumersOf", "no entity %s in the catalog", of);
    rc = catalog_consumers_of(cat, of, self->spec.transitive, &consumers, &ncons);
    if (rc != 0) {
        s_err(&c, "spec.targets.consumersOf", "cannot list the consumers of %s: %s", of,
              gg_strerror(rc));
        goto out;
    }
    json_t *exclude = json_object_get(tspec, "exclude"),
           *include = json_object_get(tspec, "include");
    json_t *item;
    json_array_foreach(exclude, i, item)
    {
        const char *ref = json_string_value(item);
        if (!catalog_find(cat, ref, NULL, NULL)) {
            s_pathi(p, sizeof p, "spec.targets.exclude", i);
            s_warn(&c, p, "no entity %s in the catalog", ref);
        }
        json_object_set(excluded, ref, json_true());
    }
    cap = ncons + json_array_size(include) + 1;
    if (!(sel = calloc(cap, sizeof *sel))) {
        rc = GG_ENOMEM;
        goto out;
    }
    for (i = 0; i < ncons; i++) {
        const catalog_entity_t *e = consumers[i];
        s_subject_t subj = {e->kind, e->owner, e->lifecycle, s_entity_annotations(e->json),
                            s_entity_tags(e->json)};
        if (!json_object_get(excluded, e->ref) && s_match(tspec, &subj))
            sel[nsel++] = e;
    }
    json_array_foreach(include, i, item)
    {
        const char *ref = json_string_value(item);
        const catalog_entity_t *e = catalog_find(cat, ref, NULL, NULL);
        s_pathi(p, sizeof p, "spec.targets.include", i);
        if (!e)
            s_err(&c, p, "no entity %s in the catalog", ref);
        else if (!json_object_get(excluded, e->ref))
            sel[nsel++] = e;
    }
    if (nsel)
        qsort(sel, nsel, sizeof *sel, s_entity_cmp);
    size_t uniq = 0;
    for (i = 0; i < nsel; i++)
        if (uniq == 0 || strcmp(sel[uniq - 1]->ref, sel[i]->ref))
            sel[uniq++] = sel[i];
    nsel = uniq;
    if (nsel > PLAN_TARGETS_MAX)
        s_err(&c, "spec.targets", "selects %zu targets, more than %d", nsel, PLAN_TARGETS_MAX);
    if (c.errors) {
        rc = GG_EINVAL;
        goto out;
    }
    if (nsel == 0)
        s_warn(&c, "spec.targets", "no targets selected: the plan would do nothing");
    if (!(arr = json_array())) {
        rc = GG_ENOMEM;
        goto out;
    }
    for (i = 0; i < nsel; i++) {
        const catalog_entity_t *e = sel[i];
        json_t *t = s_target_json(spec, e->ref, e->kind, e->namespace, e->name, e->owner,
                                  e->lifecycle, e->source, e->path, e->json);
        if (!t || json_array_append_new(arr, t) != 0) {
            s_err(&c, "spec.targets", "cannot freeze target %s (out of memory or not UTF-8)",
                  e->ref);
            rc = GG_EINVAL;
            goto out;
        }
    }
    if (json_object_set(self->doc, "targets", arr) != 0) {
        rc = GG_ENOMEM;
        goto out;
    }
    self->resolved = true;
    free(self->canon);
    self->canon = NULL;
    if ((rc = signed_canonical(self->doc, &self->canon, &self->canon_len)) == 0) {
        crypto_generichash(self->bin_id, sizeof self->bin_id, (const unsigned char *) self->canon,
                           self->canon_len, NULL, 0);
        signed_hex_encode(self->bin_id, sizeof self->bin_id, self->id);
    }
    if (rc != 0 || (rc = s_views_build(self)) != 0) {
        free(self->canon);
        self->canon = NULL;
        json_object_del(self->doc, "targets");
        self->resolved = false;
        self->id[0] = '\0';
        s_views_build(self);
        s_err(&c, "", "cannot compute the plan id: %s", gg_strerror(rc));
    }
out:
    if (rc == GG_ENOMEM)
        s_err(&c, "spec.targets", "out of memory");
    json_decref(arr);
    json_decref(excluded);
    free(sel);
    free(consumers);
    return rc;
}

/* ======================================================================
 * Accessors and rendering
 * ==================================================================== */

bool plan_is_resolved(const plan_t *self)
{
    return self && self->resolved;
}

const char *plan_id(const plan_t *self)
{
    return self ? self->id : "";
}

const char *plan_name(const plan_t *self)
{
    return self ? self->spec.name : NULL;
}

const plan_spec_t *plan_spec(const plan_t *self)
{
    return &self->spec;
}

const json_t *plan_json(const plan_t *self)
{
    return self ? self->doc : NULL;
}

int plan_canonical(const plan_t *self, const char **bytes, size_t *len)
{
    *bytes = NULL;
    *len = 0;
    if (!self || !self->canon)
        return GG_EINVAL;
    *bytes = self->canon;
    *len = self->canon_len;
    return 0;
}

size_t plan_target_count(const plan_t *self)
{
    return !self ? 0 : self->compact ? self->n_tix : self->target_count;
}

bool plan_is_compact(const plan_t *self)
{
    return self && self->compact;
}

const plan_target_t *plan_target(const plan_t *self, size_t i)
{
    return self && !self->compact && i < self->target_count ? &self->targets[i] : NULL;
}

const char *plan_target_ref(const plan_t *self, size_t i)
{
    if (!self || i >= plan_target_count(self))
        return NULL;
    return self->compact ? self->refs + self->tix[i].ref : self->targets[i].ref;
}

bool plan_target_needs_approval(const plan_t *self, size_t i)
{
    if (!self || i >= plan_target_count(self))
        return false;
    if (self->compact)
        return (self->gated[i / 8] >> (i % 8)) & 1u;
    return self->targets[i].needs_approval;
}

int plan_target_load(const plan_t *self, size_t i, plan_target_t **out)
{
    *out = NULL;
    if (!self || i >= plan_target_count(self))
        return GG_ENOTFOUND;
    s_loaded_t *l = calloc(1, sizeof *l);
    if (!l)
        return GG_ENOMEM;
    int rc = 0;
    char *buf = NULL;
    if (!self->compact) {
        l->json = json_incref(json_array_get(json_object_get(self->doc, "targets"), i));
    } else {
        const s_tix_t *t = &self->tix[i];
        json_error_t jerr;
        if (!self->reader) {
            rc = GG_EIO;
            goto out;
        }
        if (!(buf = malloc(t->len ? t->len : 1))) {
            rc = GG_ENOMEM;
            goto out;
        }
        if (self->reader(self->reader_arg, self->bin_id, t->off, (uint8_t *) buf, t->len) !=
                t->len ||
            !(l->json = json_loadb(buf, t->len, JSON_REJECT_DUPLICATES, &jerr))) {
            rc = GG_EIO;
            goto out;
        }
    }
    if (!json_is_object(l->json)) {
        rc = GG_EIO;
        goto out;
    }
    s_target_view(l->json, &l->view);
    if (!l->view.ref || strcmp(l->view.ref, plan_target_ref(self, i)) != 0 ||
        !json_is_object(l->view.entity) || !l->view.kind || !l->view.namespace || !l->view.name) {
        rc = GG_EIO; /* the stored document is not the one indexed */
        goto out;
    }
    l->view.needs_approval = plan_target_needs_approval(self, i);
    *out = &l->view;
    l = NULL;
out:
    free(buf);
    if (l) {
        json_decref(l->json);
        free(l);
    }
    return rc;
}

void plan_target_release(plan_target_t **target_p)
{
    if (!target_p || !*target_p)
        return;
    s_loaded_t *l = (s_loaded_t *) *target_p;
    json_decref(l->json);
    free(l);
    *target_p = NULL;
}

size_t plan_targets_memory(const plan_t *self)
{
    if (!self)
        return 0;
    if (self->compact)
        return self->cap_tix * sizeof *self->tix + (self->cap_tix + 7) / 8 + self->refs_cap;
    return self->target_count * sizeof *self->targets;
}

long plan_find_target(const plan_t *self, const char *ref)
{
    char norm[ENTITY_REF_FORMAT_MAX];
    if (!self || !ref ||
        entity_ref_normalize(ref, "component", NULL, norm, sizeof norm, NULL, 0) != 0)
        return -1;
    size_t lo = 0, hi = plan_target_count(self);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(plan_target_ref(self, mid), norm);
        if (cmp == 0)
            return (long) mid;
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

typedef struct {
    const plan_t *plan;
    const plan_target_t *target;
    const plan_render_ctx_t *ctx;
    char attempt[24];
    char epoch[24];
} s_render_arg_t;

static const char *s_or_empty(const char *s)
{
    return s ? s : "";
}

static int s_render_lookup(void *arg, const char *name, const char **value)
{
    s_render_arg_t *a = arg;
    const plan_target_t *t = a->target;
    const plan_spec_t *s = &a->plan->spec;
    json_t *v = NULL;
    *value = "";
    if (!strncmp(name, "vars.", 5)) {
        v = json_object_get(s->vars, name + 5);
        if (!v || !name[5])
            return GG_ENOTFOUND;
    } else if (!strncmp(name, "target.annotations.", 19)) {
        if (!name[19])
            return GG_ENOTFOUND;
        v = t ? json_object_get(t->annotations, name + 19) : NULL;
        if (!v)
            return 0;
    } else if (!strcmp(name, "target.ref")) {
        *value = t ? t->ref : "";
    } else if (!strcmp(name, "target.kind")) {
        *value = t ? t->kind : "";
    } else if (!strcmp(name, "target.namespace")) {
        *value = t ? t->namespace : "";
    } else if (!strcmp(name, "target.name")) {
        *value = t ? t->name : "";
    } else if (!strcmp(name, "target.owner")) {
        *value = t ? s_or_empty(t->owner) : "";
    } else if (!strcmp(name, "target.source")) {
        *value = t ? s_or_empty(t->source) : "";
    } else if (!strcmp(name, "target.path")) {
        *value = t ? s_or_empty(t->path) : "";
    } else if (!strcmp(name, "dataset.from")) {
        *value = s->dataset_from;
    } else if (!strcmp(name, "dataset.to")) {
        *value = s->dataset_to;
    } else if (!strcmp(name, "plan.id")) {
        *value = a->plan->id;
    } else if (!strcmp(name, "plan.name")) {
        *value = s->name;
    } else if (!strcmp(name, "attempt")) {
        *value = a->attempt;
    } else if (!strcmp(name, "epoch")) {
        *value = a->epoch;
    } else if (!strcmp(name, "workdir")) {
        *value = a->ctx && a->ctx->workdir ? a->ctx->workdir : "";
    } else {
        return GG_ENOTFOUND;
    }
    if (v) {
        if (!json_is_string(v) || s_has_nul(v))
            return GG_EINVAL;
        *value = json_string_value(v);
    }
    return 0;
}

int plan_render(const plan_t *self, size_t target_index, const plan_render_ctx_t *ctx,
                const char *tmpl, template_quote_t mode, char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (target_index == (size_t) -1)
        return plan_render_target(self, NULL, ctx, tmpl, mode, out, err, errlen);
    if (target_index >= plan_target_count(self)) {
        if (err && errlen)
            snprintf(err, errlen, "no target %zu in the plan", target_index);
        return GG_ENOTFOUND;
    }
    if (!self->compact)
        return plan_render_target(self, plan_target(self, target_index), ctx, tmpl, mode, out, err,
                                  errlen);
    plan_target_t *t = NULL;
    int rc = plan_target_load(self, target_index, &t);
    if (rc != 0) {
        if (err && errlen)
            snprintf(err, errlen, "cannot read target %zu of the plan: %s", target_index,
                     gg_strerror(rc));
        return rc;
    }
    rc = plan_render_target(self, t, ctx, tmpl, mode, out, err, errlen);
    plan_target_release(&t);
    return rc;
}

int plan_render_target(const plan_t *self, const plan_target_t *target,
                       const plan_render_ctx_t *ctx, const char *tmpl, template_quote_t mode,
                       char **out, char *err, size_t errlen)
{
    s_render_arg_t a = {.plan = self, .target = target, .ctx = ctx};
    *out = NULL;
    snprintf(a.attempt, sizeof a.attempt, "%u", ctx ? ctx->attempt : 0);
    snprintf(a.epoch, sizeof a.epoch, "%llu", (unsigned long long) (ctx ? ctx->epoch : 0));
    return template_expand_err(tmpl, s_render_lookup, &a, mode, out, err, errlen);
}
