/*
 * yamljson.c: YAML events to json_t, bounded (see yamljson.h).
 *
 * Built on libyaml's event parser rather than its document loader: the events
 * tell a plain scalar from a quoted one and an explicit tag from none, which
 * the core schema needs, and building the values ourselves lets every limit
 * be enforced while reading. A stack of frames holds the open mappings and
 * sequences; a scalar, an alias or a closed container is added to the frame
 * on top (as a mapping key or value, or a sequence item). An anchor is
 * registered when its value is complete, so an alias can never refer to a
 * value that contains it.
 */
#include "yamljson.h"

#include "gg_error.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#define S_TAG_PREFIX "tag:yaml.org,2002:"

typedef struct {
    json_t *value; /* the document root */
    unsigned long line;
    json_t *lines; /* object: path -> integer line, or NULL */
} s_doc_t;

struct _yamljson_t {
    s_doc_t *docs;
    size_t count;
    size_t cap;
};

typedef struct {
    json_t *value; /* object or array being filled */
    bool is_map;
    char *key; /* pending mapping key (malloc'd), NULL when a key is expected */
    size_t key_len;
    unsigned long key_line;
    bool key_is_merge; /* the pending key is "<<" */
    json_t *merges;    /* array of objects merged in at the end, or NULL */
    size_t index;      /* next sequence index */
    char *anchor;      /* registered when the container closes, or NULL */
    size_t nodes_at_start;
    unsigned long line; /* where the container starts */
    char *path;         /* this container's path (only with keep_lines) */
} s_frame_t;

typedef struct {
    const yamljson_opts_t *opts;
    const char *name;
    char *err;
    size_t errlen;
    s_frame_t *stack;
    size_t depth;
    size_t nodes;    /* values so far in the stream, aliases expanded */
    json_t *anchors; /* name -> [value, expanded size] */
    json_t *root;    /* the current document's root once complete */
    unsigned long doc_line;
    json_t *lines; /* the current document's path -> line, or NULL */
    yamljson_t *out;
} s_ctx_t;

static int s_fail(s_ctx_t *ctx, int rc, const yaml_mark_t *mark, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int s_fail(s_ctx_t *ctx, int rc, const yaml_mark_t *mark, const char *fmt, ...)
{
    if (!ctx->err || ctx->errlen == 0)
        return rc;
    char msg[YAMLJSON_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *name = ctx->name ? ctx->name : "<input>";
    if (mark)
        snprintf(ctx->err, ctx->errlen, "%s:%lu:%lu: %s", name, (unsigned long) mark->line + 1,
                 (unsigned long) mark->column + 1, msg);
    else
        snprintf(ctx->err, ctx->errlen, "%s: %s", name, msg);
    return rc;
}

void yamljson_opts_default(yamljson_opts_t *opts)
{
    opts->max_bytes = 16u << 20;
    opts->max_depth = 64;
    opts->max_nodes = 4000000;
    opts->max_scalar = 1u << 20;
    opts->max_documents = 100000;
    opts->keep_lines = false;
}

/* ---- scalar resolution (YAML 1.2 core schema) ---- */

static bool s_is_null(const char *s)
{
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static int s_bool(const char *s)
{
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        return 1;
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return 0;
    return -1;
}

/* 1: an integer in *out; 2: a decimal integer too big for json_int_t (use a
 * real); 0: not an integer. */
static int s_int(const char *s, json_int_t *out)
{
    const char *p = s;
    bool neg = false;
    int base = 10;
    if (*p == '-' || *p == '+')
        neg = *p++ == '-';
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'o')) {
        if (p != s)
            return 0; /* no sign on hex/octal */
        base = p[1] == 'x' ? 16 : 8;
        p += 2;
    }
    if (!*p)
        return 0;
    for (const char *q = p; *q; q++) {
        int ok = base == 16 ? (*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f') ||
                                  (*q >= 'A' && *q <= 'F')
                 : base == 8 ? (*q >= '0' && *q <= '7')
                             : (*q >= '0' && *q <= '9');
        if (!ok)
            return 0;
    }
    errno = 0;
    unsigned long long v = strtoull(p, NULL, base);
    if (errno == ERANGE || v > (unsigned long long) INT64_MAX + (neg ? 1 : 0))
        return base == 10 ? 2 : 0;
    if (neg)
        *out = v == (unsigned long long) INT64_MAX + 1 ? INT64_MIN : -(json_int_t) v;
    else
        *out = (json_int_t) v;
    return 1;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static bool s_float_syntax(const char *s)
{
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    size_t int_digits = 0, frac_digits = 0;
    while (*p >= '0' && *p <= '9')
        p++, int_digits++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9')
            p++, frac_digits++;
        if (!int_digits && !frac_digits)
            return false;
    } else if (!int_digits) {
        return false;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0';
}

static bool s_is_special_float(const char *s)
{
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    if (!strcmp(p, ".inf") || !strcmp(p, ".Inf") || !strcmp(p, ".INF"))
        return true;
    return p == s && (!strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".NAN"));
}

/* Builds the json value of a scalar event; *out NULL with an error set. */
static int s_scalar_value(s_ctx_t *ctx, const yaml_event_t *ev, json_t **out)
{
    const char *text = (const char *) ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *) ev->data.scalar.tag;
    bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    const yaml_mark_t *mark = &ev->start_mark;
    *out = NULL;

    const char *want = NULL; /* the tag's type: str, int, float, bool, null */
    if (!tag) {
        if (!plain)
            want = "str";
    } else if (!strcmp(tag, "!")) {
        want = "str";
    } else if (!strncmp(tag, S_TAG_PREFIX, strlen(S_TAG_PREFIX))) {
        want = tag + strlen(S_TAG_PREFIX);
        if (!strcmp(want, "binary") || !strcmp(want, "timestamp"))
            want = "str";
        if (strcmp(want, "str") && strcmp(want, "int") && strcmp(want, "float") &&
            strcmp(want, "bool") && strcmp(want, "null"))
            return s_fail(ctx, GG_EMALFORMED, mark, "tag !!%s is not allowed on a scalar", want);
    } else {
        return s_fail(ctx, GG_EMALFORMED, mark, "unsupported tag %s", tag);
    }

    bool has_nul = memchr(text, '\0', len) != NULL;
    if (want && !strcmp(want, "str")) {
        *out = json_stringn(text, len);
        if (!*out)
            return s_fail(ctx, GG_EMALFORMED, mark, "string is not valid UTF-8");
        return 0;
    }
    if (has_nul)
        return s_fail(ctx, GG_EMALFORMED, mark, "NUL byte in a %s", want ? want : "plain scalar");

    json_int_t iv = 0;
    int b;
    if ((!want || !strcmp(want, "null")) && s_is_null(text)) {
        *out = json_null();
    } else if ((!want || !strcmp(want, "bool")) && (b = s_bool(text)) >= 0) {
        *out = json_boolean(b);
    } else if ((!want || !strcmp(want, "int") || !strcmp(want, "float")) &&
               (b = s_int(text, &iv)) > 0) {
        if (b == 2 || (want && !strcmp(want, "float")))
            *out = json_real(strtod(text, NULL));
        else
            *out = json_integer(iv);
    } else if ((!want || !strcmp(want, "float")) && s_float_syntax(text)) {
        double d = strtod(text, NULL);
        if (d == HUGE_VAL || d == -HUGE_VAL)
            return s_fail(ctx, GG_EMALFORMED, mark, "number %s is out of range", text);
        *out = json_real(d);
    } else if ((!want || !strcmp(want, "float")) && s_is_special_float(text)) {
        return s_fail(ctx, GG_EMALFORMED, mark, "%s cannot be represented in JSON", text);
    } else if (!want) {
        *out = json_stringn(text, len);
        if (!*out)
            return s_fail(ctx, GG_EMALFORMED, mark, "string is not valid UTF-8");
        return 0;
    } else {
        return s_fail(ctx, GG_EMALFORMED, mark, "'%.64s' is not a valid !!%s", text, want);
    }
    if (!*out)
        return s_fail(ctx, GG_ENOMEM, mark, "out of memory");
    return 0;
}

/* ---- building ---- */

static void s_frame_clear(s_frame_t *f)
{
    json_decref(f->value);
    json_decref(f->merges);
    free(f->key);
    free(f->anchor);
    free(f->path);
    memset(f, 0, sizeof *f);
}

static char *s_child_path(const s_frame_t *top, bool root)
{
    char *p = NULL;
    if (root)
        return strdup("");
    if (!top->path)
        return NULL;
    int n;
    if (top->is_map)
        n = asprintf(&p, "%s%s%.*s", top->path, *top->path ? "." : "", (int) top->key_len,
                     top->key);
    else
        n = asprintf(&p, "%s[%zu]", top->path, top->index);
    return n < 0 ? NULL : p;
}

static int s_record_line(s_ctx_t *ctx, const char *path, unsigned long line)
{
    if (!ctx->lines || !path)
        return 0;
    json_t *v = json_integer((json_int_t) line);
    if (!v || json_object_set_new(ctx->lines, path, v) != 0)
        return s_fail(ctx, GG_ENOMEM, NULL, "out of memory");
    return 0;
}

static int s_count_node(s_ctx_t *ctx, size_t n, const yaml_mark_t *mark)
{
    if (n > ctx->opts->max_nodes || ctx->nodes > ctx->opts->max_nodes - n)
        return s_fail(ctx, GG_ETOOBIG, mark, "more than %zu values (aliases count expanded)",
                      ctx->opts->max_nodes);
    ctx->nodes += n;
    return 0;
}

static int s_register_anchor(s_ctx_t *ctx, const char *anchor, json_t *value, size_t size)
{
    if (!anchor)
        return 0;
    json_t *entry = json_pack("[O,I]", value, (json_int_t) size);
    if (!entry || json_object_set_new(ctx->anchors, anchor, entry) != 0)
        return s_fail(ctx, GG_ENOMEM, NULL, "out of memory");
    return 0;
}

/* Adds a complete value (stolen) to the frame on top, or makes it the root.
 * `line` is the value's own line (used for sequence items and the root). */
static int s_add(s_ctx_t *ctx, json_t *v, unsigned long line, const yaml_mark_t *mark)
{
    int rc = 0;
    char *path = NULL;
    if (ctx->depth == 0) {
        json_decref(ctx->root);
        ctx->root = v;
        return 0;
    }
    s_frame_t *top = &ctx->stack[ctx->depth - 1];
    if (ctx->lines) {
        path = s_child_path(top, false);
        if (!path) {
            rc = s_fail(ctx, GG_ENOMEM, NULL, "out of memory");
            goto out;
        }
        if ((rc = s_record_line(ctx, path, top->is_map ? top->key_line : line)) != 0)
            goto out;
    }
    if (!top->is_map) {
        if (json_array_append_new(top->value, v) != 0) {
            v = NULL;
            rc = s_fail(ctx, GG_ENOMEM, NULL, "out of memory");
            goto out;
        }
        v = NULL;
        top->index++;
        goto out;
    }
    if (top->key_is_merge) {
        if (!top->merges && !(top->merges = json_array())) {
            rc = s_fail(ctx, GG_ENOMEM, NULL, "out of memory");
            goto out;
        }
        if (json_is_object(v)) {
            rc = json_array_append(top->merges, v) ? GG_ENOMEM : 0;
        } else if (json_is_array(v)) {
            size_t i;
            json_t *item;
            json_array_foreach(v, i, item)
            {
                if (!json_is_object(item)) {
                    rc = s_fail(ctx, GG_EMALFORMED, mark,
                                "a merge key (<<) takes a mapping or a list of mappings");
                    goto out;
                }
                if (json_array_append(top->merges, item) != 0)
                    rc = GG_ENOMEM;
            }
        } else {
            rc = s_fail(ctx, GG_EMALFORMED, mark,
                        "a merge key (<<) takes a mapping or a list of mappings");
            goto out;
        }
        if (rc)
            rc = s_fail(ctx, rc, NULL, "out of memory");
    } else {
        if (json_object_getn(top->value, top->key, top->key_len)) {
            rc = s_fail(ctx, GG_EMALFORMED, mark, "duplicate key '%.*s'",
                        (int) (top->key_len > 64 ? 64 : top->key_len), top->key);
            goto out;
        }
        if (json_object_setn_new(top->value, top->key, top->key_len, v) != 0) {
            v = NULL;
            rc = s_fail(ctx, GG_ENOMEM, NULL, "out of memory");
            goto out;
        }
        v = NULL;
    }
    free(top->key);
    top->key = NULL;
    top->key_is_merge = false;
out:
    json_decref(v);
    free(path);
    return rc;
}

static int s_push(s_ctx_t *ctx, const yaml_event_t *ev, bool is_map)
{
    const yaml_mark_t *mark = &ev->start_mark;
    const char *tag = is_map ? (const char *) ev->data.mapping_start.tag
                             : (const char *) ev->data.sequence_start.tag;
    const char *anchor = is_map ? (const char *) ev->data.mapping_start.anchor
                                : (const char *) ev->data.sequence_start.anchor;
    if (tag && strcmp(tag, "!") && strcmp(tag, is_map ? S_TAG_PREFIX "map" : S_TAG_PREFIX "seq"))
        return s_fail(ctx, GG_EMALFORMED, mark, "unsupported tag %s", tag);
    if (ctx->depth > 0) {
        s_frame_t *top = &ctx->stack[ctx->depth - 1];
        if (top->is_map && !top->key)
            return s_fail(ctx, GG_EMALFORMED, mark, "mapping keys must be scalars");
    }
    if (ctx->depth >= ctx->opts->max_depth)
        return s_fail(ctx, GG_ETOOBIG, mark, "nested deeper than %u levels", ctx->opts->max_depth);
    int rc = s_count_node(ctx, 1, mark);
    if (rc)
        return rc;
    s_frame_t f = {0};
    f.is_map = is_map;
    f.value = is_map ? json_object() : json_array();
    f.nodes_at_start = ctx->nodes - 1;
    f.line = (unsigned long) mark->line + 1;
    if (anchor)
        f.anchor = strdup(anchor);
    if (ctx->lines) {
        f.path = ctx->depth == 0 ? strdup("") : s_child_path(&ctx->stack[ctx->depth - 1], false);
        if (f.path && ctx->depth == 0)
            rc = s_record_line(ctx, "", (unsigned long) mark->line + 1);
    }
    if (!f.value || (anchor && !f.anchor) || (ctx->lines && !f.path)) {
        s_frame_clear(&f);
        return s_fail(ctx, GG_ENOMEM, NULL, "out of memory");
    }
    ctx->stack[ctx->depth++] = f;
    return rc;
}

static int s_apply_merges(s_ctx_t *ctx, s_frame_t *f)
{
    if (!f->merges)
        return 0;
    size_t i;
    json_t *src;
    json_array_foreach(f->merges, i, src)
    {
        const char *key;
        size_t key_len;
        json_t *val;
        json_object_keylen_foreach(src, key, key_len, val)
        {
            if (json_object_getn(f->value, key, key_len))
                continue;
            json_t *copy = json_deep_copy(val);
            if (!copy || json_object_setn_new(f->value, key, key_len, copy) != 0)
                return s_fail(ctx, GG_ENOMEM, NULL, "out of memory");
        }
    }
    return 0;
}

static int s_pop(s_ctx_t *ctx, const yaml_event_t *ev)
{
    s_frame_t f = ctx->stack[--ctx->depth];
    memset(&ctx->stack[ctx->depth], 0, sizeof f);
    int rc = 0;
    if (f.is_map && (rc = s_apply_merges(ctx, &f)) != 0)
        goto out;
    if ((rc = s_register_anchor(ctx, f.anchor, f.value, ctx->nodes - f.nodes_at_start)) != 0)
        goto out;
    json_t *v = f.value;
    f.value = NULL;
    rc = s_add(ctx, v, f.line, &ev->start_mark);
out:
    s_frame_clear(&f);
    return rc;
}

static int s_on_scalar(s_ctx_t *ctx, const yaml_event_t *ev)
{
    const yaml_mark_t *mark = &ev->start_mark;
    size_t len = ev->data.scalar.length;
    if (len > ctx->opts->max_scalar)
        return s_fail(ctx, GG_ETOOBIG, mark, "scalar longer than %zu bytes", ctx->opts->max_scalar);
    s_frame_t *top = ctx->depth ? &ctx->stack[ctx->depth - 1] : NULL;
    if (top && top->is_map && !top->key) {
        /* A mapping key: its text, whatever it would resolve to. */
        const char *text = (const char *) ev->data.scalar.value;
        if (memchr(text, '\0', len))
            return s_fail(ctx, GG_EMALFORMED, mark, "NUL byte in a mapping key");
        top->key = malloc(len + 1);
        if (!top->key)
            return s_fail(ctx, GG_ENOMEM, NULL, "out of memory");
        memcpy(top->key, text, len);
        top->key[len] = '\0';
        top->key_len = len;
        top->key_line = (unsigned long) mark->line + 1;
        top->key_is_merge = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                            !ev->data.scalar.tag && !strcmp(text, "<<");
        return 0;
    }
    int rc = s_count_node(ctx, 1, mark);
    if (rc)
        return rc;
    json_t *v = NULL;
    if ((rc = s_scalar_value(ctx, ev, &v)) != 0)
        return rc;
    const char *anchor = (const char *) ev->data.scalar.anchor;
    if ((rc = s_register_anchor(ctx, anchor, v, 1)) != 0) {
        json_decref(v);
        return rc;
    }
    if (!top && ctx->lines && (rc = s_record_line(ctx, "", (unsigned long) mark->line + 1)))
        return rc;
    return s_add(ctx, v, (unsigned long) mark->line + 1, mark);
}

static int s_on_alias(s_ctx_t *ctx, const yaml_event_t *ev)
{
    const yaml_mark_t *mark = &ev->start_mark;
    const char *anchor = (const char *) ev->data.alias.anchor;
    s_frame_t *top = ctx->depth ? &ctx->stack[ctx->depth - 1] : NULL;
    if (top && top->is_map && !top->key)
        return s_fail(ctx, GG_EMALFORMED, mark, "an alias cannot be a mapping key");
    json_t *entry = json_object_get(ctx->anchors, anchor);
    if (!entry)
        return s_fail(ctx, GG_EMALFORMED, mark, "undefined alias *%.64s", anchor);
    size_t size = (size_t) json_integer_value(json_array_get(entry, 1));
    int rc = s_count_node(ctx, size, mark);
    if (rc)
        return rc;
    json_t *copy = json_deep_copy(json_array_get(entry, 0));
    if (!copy)
        return s_fail(ctx, GG_ENOMEM, NULL, "out of memory");
    return s_add(ctx, copy, (unsigned long) mark->line + 1, mark);
}

static int s_doc_append(s_ctx_t *ctx)
{
    yamljson_t *o = ctx->out;
    if (o->count >= ctx->opts->max_documents)
        return s_fail(ctx, GG_ETOOBIG, NULL, "more than %zu documents", ctx->opts->max_documents);
    if (o->count == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 4;
        s_doc_t *d = realloc(o->docs, cap * sizeof *d);
        if (!d)
            return s_fail(ctx, GG_ENOMEM, NULL, "out of memory");
        o->docs = d;
        o->cap = cap;
    }
    o->docs[o->count++] = (s_doc_t){ctx->root, ctx->doc_line, ctx->lines};
    ctx->root = NULL;
    ctx->lines = NULL;
    return 0;
}

static const char *s_problem(const yaml_parser_t *p)
{
    return p->problem ? p->problem : "syntax error";
}

int yamljson_parse(const char *text, size_t len, const char *name, const yamljson_opts_t *opts,
                   yamljson_t **out, char *err, size_t errlen)
{
    yamljson_opts_t defaults;
    if (!opts) {
        yamljson_opts_default(&defaults);
        opts = &defaults;
    }
    s_ctx_t ctx = {.opts = opts, .name = name, .err = err, .errlen = errlen};
    yaml_parser_t parser;
    bool parser_ready = false;
    int rc = 0;
    if (err && errlen)
        err[0] = '\0';
    *out = calloc(1, sizeof **out);
    ctx.out = *out;
    ctx.stack = calloc(opts->max_depth ? opts->max_depth : 1, sizeof *ctx.stack);
    ctx.anchors = json_object();
    if (!*out || !ctx.stack || !ctx.anchors) {
        rc = s_fail(&ctx, GG_ENOMEM, NULL, "out of memory");
        goto out;
    }
    if (len > opts->max_bytes) {
        rc = s_fail(&ctx, GG_ETOOBIG, NULL, "larger than %zu bytes", opts->max_bytes);
        goto out;
    }
    if (!yaml_parser_initialize(&parser)) {
        rc = s_fail(&ctx, GG_ENOMEM, NULL, "out of memory");
        goto out;
    }
    parser_ready = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *) text, len);

    bool done = false;
    while (!done && rc == 0) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            yaml_mark_t m = parser.problem_mark;
            if (parser.error == YAML_MEMORY_ERROR)
                rc = s_fail(&ctx, GG_ENOMEM, NULL, "out of memory");
            else if (parser.context)
                rc = s_fail(&ctx, GG_EMALFORMED, &m, "%s %s", parser.context, s_problem(&parser));
            else
                rc = s_fail(&ctx, GG_EMALFORMED, &m, "%s", s_problem(&parser));
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = true; break;
        case YAML_DOCUMENT_START_EVENT:
            json_object_clear(ctx.anchors);
            json_decref(ctx.root);
            ctx.root = NULL;
            ctx.doc_line = (unsigned long) ev.start_mark.line + 1;
            if (opts->keep_lines && !(ctx.lines = json_object()))
                rc = s_fail(&ctx, GG_ENOMEM, NULL, "out of memory");
            break;
        case YAML_DOCUMENT_END_EVENT:
            if (ctx.root && !json_is_null(ctx.root))
                rc = s_doc_append(&ctx);
            json_decref(ctx.root);
            json_decref(ctx.lines);
            ctx.root = NULL;
            ctx.lines = NULL;
            break;
        case YAML_MAPPING_START_EVENT: rc = s_push(&ctx, &ev, true); break;
        case YAML_SEQUENCE_START_EVENT: rc = s_push(&ctx, &ev, false); break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT: rc = s_pop(&ctx, &ev); break;
        case YAML_SCALAR_EVENT: rc = s_on_scalar(&ctx, &ev); break;
        case YAML_ALIAS_EVENT: rc = s_on_alias(&ctx, &ev); break;
        default: break;
        }
        yaml_event_delete(&ev);
    }
out:
    if (parser_ready)
        yaml_parser_delete(&parser);
    while (ctx.depth > 0)
        s_frame_clear(&ctx.stack[--ctx.depth]);
    free(ctx.stack);
    json_decref(ctx.anchors);
    json_decref(ctx.root);
    json_decref(ctx.lines);
    return rc;
}

int yamljson_load_file(const char *path, const yamljson_opts_t *opts, yamljson_t **out, char *err,
                       size_t errlen)
{
    yamljson_opts_t defaults;
    if (!opts) {
        yamljson_opts_default(&defaults);
        opts = &defaults;
    }
    *out = NULL;
    int rc = 0;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        rc = errno == ENOENT ? GG_ENOTFOUND : GG_EIO;
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = GG_EIO;
        if (err && errlen)
            snprintf(err, errlen, "%s: not a regular file", path);
        goto out;
    }
    if ((uint64_t) st.st_size > opts->max_bytes) {
        rc = GG_ETOOBIG;
        if (err && errlen)
            snprintf(err, errlen, "%s: larger than %zu bytes", path, opts->max_bytes);
        goto out;
    }
    size_t cap = (size_t) st.st_size + 1, len = 0;
    buf = malloc(cap);
    if (!buf) {
        rc = GG_ENOMEM;
        goto out;
    }
    /* Read up to one byte more than the limit, in case the file grew. */
    for (;;) {
        if (len == cap) {
            if (cap > opts->max_bytes) {
                rc = GG_ETOOBIG;
                if (err && errlen)
                    snprintf(err, errlen, "%s: larger than %zu bytes", path, opts->max_bytes);
                goto out;
            }
            size_t ncap = cap * 2 > opts->max_bytes + 1 ? opts->max_bytes + 1 : cap * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                rc = GG_ENOMEM;
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        rc = GG_EIO;
        if (err && errlen)
            snprintf(err, errlen, "%s: read error", path);
        goto out;
    }
    if (len > opts->max_bytes) {
        rc = GG_ETOOBIG;
        if (err && errlen)
            snprintf(err, errlen, "%s: larger than %zu bytes", path, opts->max_bytes);
        goto out;
    }
    rc = yamljson_parse(buf, len, path, opts, out, err, errlen);
out:
    if (rc == GG_ENOMEM && err && errlen && !err[0])
        snprintf(err, errlen, "%s: out of memory", path);
    free(buf);
    if (f)
        fclose(f);
    return rc;
}

void yamljson_destroy(yamljson_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    yamljson_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++) {
        json_decref(self->docs[i].value);
        json_decref(self->docs[i].lines);
    }
    free(self->docs);
    free(self);
    *self_p = NULL;
}

size_t yamljson_count(const yamljson_t *self)
{
    return self ? self->count : 0;
}

json_t *yamljson_doc(const yamljson_t *self, size_t i)
{
    return self && i < self->count ? self->docs[i].value : NULL;
}

unsigned long yamljson_doc_line(const yamljson_t *self, size_t i)
{
    return self && i < self->count ? self->docs[i].line : 0;
}

unsigned long yamljson_line(const yamljson_t *self, size_t i, const char *path)
{
    if (!self || i >= self->count || !self->docs[i].lines || !path)
        return 0;
    json_t *v = json_object_get(self->docs[i].lines, path);
    return v ? (unsigned long) json_integer_value(v) : 0;
}
