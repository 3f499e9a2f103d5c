/*
 * template.c: placeholder expansion with shell quoting (see template.h).
 *
 * One scanner serves expansion and checking: it walks the template, copies
 * literal text, and for each placeholder asks the lookup for the value and
 * appends it (quoted in TEMPLATE_SHELL mode). Output grows in a bounded
 * buffer; checking runs the same walk without a buffer.
 */
#include "template.h"

#include "gg_error.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *data; /* NULL when only checking */
    size_t len;
    size_t cap;
    bool build;
} s_buf_t;

static int s_append(s_buf_t *b, const char *p, size_t n)
{
    if (!b->build)
        return 0;
    if (n > TEMPLATE_OUTPUT_MAX || b->len > TEMPLATE_OUTPUT_MAX - n)
        return GG_ETOOBIG;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > TEMPLATE_OUTPUT_MAX + 1)
            cap = TEMPLATE_OUTPUT_MAX + 1;
        char *d = realloc(b->data, cap);
        if (!d)
            return GG_ENOMEM;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

/* 'it'\''s' for it's: close the quote, an escaped quote, reopen. */
static int s_append_quoted(s_buf_t *b, const char *v, size_t n)
{
    int rc = s_append(b, "'", 1);
    const char *start = v;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (v[i] != '\'')
            continue;
        rc = s_append(b, start, (size_t) (v + i - start));
        if (rc == 0)
            rc = s_append(b, "'\\''", 4);
        start = v + i + 1;
    }
    if (rc == 0)
        rc = s_append(b, start, (size_t) (v + n - start));
    if (rc == 0)
        rc = s_append(b, "'", 1);
    return rc;
}

static bool s_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-' || c == '/' || c == ':';
}

static void s_msg(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void s_msg(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int s_walk(const char *tmpl, template_lookup_fn *lookup, void *arg, template_quote_t mode,
                  s_buf_t *b, char *err, size_t errlen)
{
    int rc = 0;
    const char *p = tmpl;
    char name[TEMPLATE_NAME_MAX + 1];
    if (err && errlen)
        err[0] = '\0';
    if (!tmpl)
        return 0;
    while (*p) {
        const char *open = strstr(p, "{{");
        if (!open) {
            rc = s_append(b, p, strlen(p));
            break;
        }
        if ((rc = s_append(b, p, (size_t) (open - p))) != 0)
            break;
        const char *close = strstr(open + 2, "}}");
        if (!close) {
            s_msg(err, errlen, "unterminated '{{' at offset %zu", (size_t) (open - tmpl));
            rc = GG_EINVAL;
            break;
        }
        const char *s = open + 2, *e = close;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        size_t n = (size_t) (e - s);
        bool ok = n > 0 && n <= TEMPLATE_NAME_MAX;
        for (size_t i = 0; ok && i < n; i++)
            ok = s_name_char(s[i]);
        if (!ok) {
            s_msg(err, errlen, "invalid placeholder '%.*s'",
                  (int) ((close + 2 - open) > 80 ? 80 : (close + 2 - open)), open);
            rc = GG_EINVAL;
            break;
        }
        memcpy(name, s, n);
        name[n] = '\0';
        const char *value = NULL;
        rc = lookup(arg, name, &value);
        if (rc == GG_ENOTFOUND) {
            s_msg(err, errlen, "unknown variable {{%s}}", name);
            break;
        }
        if (rc != 0) {
            s_msg(err, errlen, "cannot expand {{%s}}: %s", name, gg_strerror(rc));
            break;
        }
        if (!value)
            value = "";
        size_t vlen = strlen(value);
        rc = mode == TEMPLATE_SHELL ? s_append_quoted(b, value, vlen) : s_append(b, value, vlen);
        if (rc != 0) {
            s_msg(err, errlen, "expanding {{%s}}: %s", name, gg_strerror(rc));
            break;
        }
        p = close + 2;
    }
    if (rc == GG_ETOOBIG && err && errlen && !err[0])
        s_msg(err, errlen, "expansion longer than %u bytes", TEMPLATE_OUTPUT_MAX);
    return rc;
}

int template_expand_err(const char *tmpl, template_lookup_fn *lookup, void *arg,
                        template_quote_t mode, char **out, char *err, size_t errlen)
{
    s_buf_t b = {.build = true};
    *out = NULL;
    int rc = s_walk(tmpl, lookup, arg, mode, &b, err, errlen);
    if (rc == 0 && !b.data && !(b.data = calloc(1, 1)))
        rc = GG_ENOMEM;
    if (rc != 0) {
        free(b.data);
        return rc;
    }
    *out = b.data;
    return 0;
}

int template_expand(const char *tmpl, template_lookup_fn *lookup, void *arg, template_quote_t mode,
                    char **out)
{
    return template_expand_err(tmpl, lookup, arg, mode, out, NULL, 0);
}

int template_check(const char *tmpl, template_lookup_fn *lookup, void *arg, char *err,
                   size_t errlen)
{
    s_buf_t b = {.build = false};
    return s_walk(tmpl, lookup, arg, TEMPLATE_RAW, &b, err, errlen);
}

int template_shell_quote(const char *value, size_t len, char **out)
{
    s_buf_t b = {.build = true};
    *out = NULL;
    if (memchr(value, '\0', len))
        return GG_EINVAL;
    int rc = s_append_quoted(&b, value, len);
    if (rc != 0) {
        free(b.data);
        return rc;
    }
    *out = b.data;
    return 0;
}
