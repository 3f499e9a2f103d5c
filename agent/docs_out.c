/*
 * docs_out.c: the migrated catalog entity (YAML through libyaml's emitter)
 * and the Markdown change description handed to publish steps.
 *
 * Both are written from data that came through the plan (a signed copy of
 * catalog entities), so nothing here trusts it: path components are checked
 * with Backstage's validators before they touch the file system, output is
 * bounded, and Markdown code spans are fenced with more backticks than the
 * text holds so a value cannot break out of them.
 */
#include "docs_out.h"
#include "fsutil.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "entity_ref.h"

/* ---------------------------------------------------------------------------
 * A bounded, growing text buffer.
 */

typedef struct {
    char *p;
    size_t len;
    size_t cap;
    size_t max;
    bool oom;
    bool full; /* something was cut at max */
} s_buf_t;

static bool s_buf_add(s_buf_t *b, const char *data, size_t n)
{
    if (b->oom || b->full)
        return false;
    if (b->len + n + 1 > b->max) {
        b->full = true;
        return false;
    }
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 1024;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        if (ncap > b->max)
            ncap = b->max;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->oom = true;
            return false;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return true;
}

static void s_buf_str(s_buf_t *b, const char *s)
{
    s_buf_add(b, s, strlen(s));
}

static void s_buf_printf(s_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_buf_printf(s_buf_t *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t) n < sizeof small) {
        s_buf_add(b, small, (size_t) n);
        return;
    }
    char *big = malloc((size_t) n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t) n + 1, fmt, ap);
    va_end(ap);
    s_buf_add(b, big, (size_t) n);
    free(big);
}

/* ---------------------------------------------------------------------------
 * YAML emission.
 */

static int s_yaml_write(void *data, unsigned char *buffer, size_t size)
{
    return s_buf_add(data, (const char *) buffer, size) ? 1 : 0;
}

/* Whether a string may be written as a plain scalar and still read back as a
 * string under the YAML 1.2 core schema and YAML 1.1 readers alike. Anything
 * that could be a number, boolean, null, timestamp or merge key is quoted;
 * libyaml itself refuses plain style for indicators and odd spacing. */
static bool s_plain_ok(const char *s)
{
    static const char *const words[] = {"null", "true", "false", "yes", "no", "on",
                                        "off",  "y",    "n",     "~",   NULL};
    if (!s[0])
        return false;
    unsigned char c = (unsigned char) s[0];
    if (!(isalpha(c) || c == '/' || c == '_'))
        return false;
    for (size_t i = 0; words[i]; i++)
        if (!strcasecmp(s, words[i]))
            return false;
    return true;
}

static int s_emit_event(yaml_emitter_t *em, yaml_event_t *ev, s_buf_t *b)
{
    if (!yaml_emitter_emit(em, ev)) /* frees the event either way */
        return b->full ? GG_ETOOBIG : b->oom ? GG_ENOMEM : GG_EINTERNAL;
    return 0;
}

static int s_emit_scalar(yaml_emitter_t *em, s_buf_t *b, const char *text, size_t len,
                         bool plain_implicit, yaml_scalar_style_t style)
{
    yaml_event_t ev;
    if (len > INT_MAX)
        return GG_ETOOBIG;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *) text, (int) len,
                                      plain_implicit, 1, style))
        return GG_ENOMEM;
    return s_emit_event(em, &ev, b);
}

static int s_emit_string(yaml_emitter_t *em, s_buf_t *b, const char *s, size_t len)
{
    bool multiline = memchr(s, '\n', len) != NULL;
    bool plain = !multiline && strlen(s) == len && s_plain_ok(s);
    return s_emit_scalar(em, b, s, len, plain,
                         multiline ? YAML_LITERAL_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE);
}

static int s_emit_value(yaml_emitter_t *em, s_buf_t *b, const json_t *v, unsigned depth)
{
    yaml_event_t ev;
    char num[64];
    int rc = 0;
    if (depth > DOCS_OUT_DEPTH_MAX)
        return GG_ETOOBIG;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE))
            return GG_ENOMEM;
        if ((rc = s_emit_event(em, &ev, b)) != 0)
            return rc;
        const char *key;
        size_t klen;
        json_t *item;
        void *tmp;
        json_object_keylen_foreach_safe((json_t *) v, tmp, key, klen, item)
        {
            if ((rc = s_emit_string(em, b, key, klen)) != 0 ||
                (rc = s_emit_value(em, b, item, depth + 1)) != 0)
                return rc;
        }
        if (!yaml_mapping_end_event_initialize(&ev))
            return GG_ENOMEM;
        return s_emit_event(em, &ev, b);
    }
    case JSON_ARRAY: {
        if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE))
            return GG_ENOMEM;
        if ((rc = s_emit_event(em, &ev, b)) != 0)
            return rc;
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            if ((rc = s_emit_value(em, b, item, depth + 1)) != 0)
                return rc;
        }
        if (!yaml_sequence_end_event_initialize(&ev))
            return GG_ENOMEM;
        return s_emit_event(em, &ev, b);
    }
    case JSON_STRING: return s_emit_string(em, b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return s_emit_scalar(em, b, num, strlen(num), true, YAML_PLAIN_SCALAR_STYLE);
    case JSON_REAL: {
        double d = json_real_value(v);
        if (!isfinite(d))
            return GG_EINVAL;
        snprintf(num, sizeof num, "%.17g", d);
        if (!strpbrk(num, ".eE"))
            strcat(num, ".0"); /* stays a float when read back */
        return s_emit_scalar(em, b, num, strlen(num), true, YAML_PLAIN_SCALAR_STYLE);
    }
    case JSON_TRUE: return s_emit_scalar(em, b, "true", 4, true, YAML_PLAIN_SCALAR_STYLE);
    case JSON_FALSE: return s_emit_scalar(em, b, "false", 5, true, YAML_PLAIN_SCALAR_STYLE);
    case JSON_NULL:
    default: return s_emit_scalar(em, b, "null", 4, true, YAML_PLAIN_SCALAR_STYLE);
    }
}

int docs_out_yaml(const json_t *value, char **out, size_t *len_out)
{
    yaml_emitter_t em;
    yaml_event_t ev;
    s_buf_t b = {.max = DOCS_OUT_YAML_MAX};
    int rc = GG_ENOMEM;
    bool em_ok = false;
    *out = NULL;
    if (len_out)
        *len_out = 0;
    if (!value)
        return GG_EINVAL;
    if (!yaml_emitter_initialize(&em))
        goto out;
    em_ok = true;
    yaml_emitter_set_output(&em, s_yaml_write, &b);
    yaml_emitter_set_unicode(&em, 1);
    yaml_emitter_set_width(&em, -1);
    yaml_emitter_set_indent(&em, 2);
    if (!yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) ||
        (rc = s_emit_event(&em, &ev, &b)) != 0)
        goto out;
    rc = GG_ENOMEM;
    if (!yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) ||
        (rc = s_emit_event(&em, &ev, &b)) != 0)
        goto out;
    if ((rc = s_emit_value(&em, &b, value, 0)) != 0)
        goto out;
    rc = GG_ENOMEM;
    if (!yaml_document_end_event_initialize(&ev, 1) || (rc = s_emit_event(&em, &ev, &b)) != 0)
        goto out;
    rc = GG_ENOMEM;
    if (!yaml_stream_end_event_initialize(&ev) || (rc = s_emit_event(&em, &ev, &b)) != 0)
        goto out;
    if (!yaml_emitter_flush(&em)) {
        rc = b.full ? GG_ETOOBIG : GG_ENOMEM;
        goto out;
    }
    if (!b.p && !s_buf_add(&b, "", 0)) {
        rc = GG_ENOMEM;
        goto out;
    }
    *out = b.p;
    if (len_out)
        *len_out = b.len;
    b.p = NULL;
    rc = 0;
out:
    if (em_ok)
        yaml_emitter_delete(&em);
    free(b.p);
    return rc;
}

/* ---------------------------------------------------------------------------
 * The migrated entity.
 */

static const char *s_entity_namespace(const json_t *entity)
{
    const char *ns =
        json_string_value(json_object_get(json_object_get(entity, "metadata"), "namespace"));
    return ns && ns[0] ? ns : "default";
}

int docs_out_move_dependency(const json_t *entity, const char *from_ref, const char *to_ref,
                             json_t **out, size_t *moved_out)
{
    entity_ref_t from, to, ref;
    json_t *copy = NULL, *list = NULL;
    size_t moved = 0;
    int rc = GG_EINVAL;
    *out = NULL;
    if (moved_out)
        *moved_out = 0;
    if (!json_is_object(entity) || !from_ref || !to_ref ||
        entity_ref_parse(from_ref, NULL, NULL, &from, NULL, 0) != 0 ||
        entity_ref_parse(to_ref, NULL, NULL, &to, NULL, 0) != 0)
        goto out;
    rc = GG_ENOMEM;
    if (!(copy = json_deep_copy(entity)))
        goto out;
    const char *ns = s_entity_namespace(entity);
    json_t *spec = json_object_get(copy, "spec");
    json_t *deps = json_object_get(spec, "dependsOn");
    if (!json_is_array(deps)) {
        rc = 0;
        goto out;
    }
    bool has_to = false;
    size_t i;
    json_t *item;
    json_array_foreach(deps, i, item)
    {
        const char *text = json_string_value(item);
        if (text && entity_ref_parse(text, NULL, ns, &ref, NULL, 0) == 0 &&
            entity_ref_equal(&ref, &to))
            has_to = true;
    }
    if (!(list = json_array()))
        goto out;
    json_array_foreach(deps, i, item)
    {
        const char *text = json_string_value(item);
        bool is_from = text && entity_ref_parse(text, NULL, ns, &ref, NULL, 0) == 0 &&
                       entity_ref_equal(&ref, &from);
        if (!is_from) {
            if (json_array_append(list, item) != 0)
                goto out;
            continue;
        }
        moved++;
        if (has_to)
            continue;
        if (json_array_append_new(list, json_string(to_ref)) != 0)
            goto out;
        has_to = true;
    }
    if (json_object_set(spec, "dependsOn", list) != 0)
        goto out;
    rc = 0;
out:
    json_decref(list);
    if (rc != 0) {
        json_decref(copy);
        return rc;
    }
    *out = copy;
    if (moved_out)
        *moved_out = moved;
    return 0;
}

int docs_out_entity_path(const char *root, const json_t *entity, char *buf, size_t size)
{
    if (size)
        buf[0] = '\0';
    const json_t *meta = json_object_get(entity, "metadata");
    const char *kind = json_string_value(json_object_get(entity, "kind"));
    const char *name = json_string_value(json_object_get(meta, "name"));
    const char *ns = s_entity_namespace(entity);
    if (!root || !root[0] || !entity_ref_valid_kind(kind) || !entity_ref_valid_name(name) ||
        !entity_ref_valid_namespace(ns))
        return GG_EINVAL;
    char lkind[ENTITY_REF_PART_MAX + 1];
    size_t n = strlen(kind);
    if (n >= sizeof lkind)
        return GG_EINVAL;
    for (size_t i = 0; i <= n; i++)
        lkind[i] = (char) tolower((unsigned char) kind[i]);
    int w = snprintf(buf, size, "%s/%s/%s/%s.yaml", root, ns, lkind, name);
    if (w < 0 || (size_t) w >= size) {
        if (size)
            buf[0] = '\0';
        return GG_ETOOBIG;
    }
    return 0;
}

int docs_out_write_file(const char *path, const void *data, size_t len)
{
    char dir[PATH_MAX], tmp[PATH_MAX];
    int fd = -1, rc = GG_EINVAL;
    bool tmp_made = false;
    if (!path || path[0] != '/' || strlen(path) >= sizeof dir)
        return GG_EINVAL;
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    const char *base = path + (slash - dir) + 1;
    if (!base[0])
        return GG_EINVAL;
    if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    int n = snprintf(tmp, sizeof tmp, "%s/.%s.tmp-XXXXXX", slash == dir ? "" : dir, base);
    if (n < 0 || (size_t) n >= sizeof tmp)
        return GG_EINVAL;
    if ((rc = fsutil_mkdir_p(dir, 0755)) != 0)
        return rc;
    rc = GG_EIO;
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        goto fail;
    tmp_made = true;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto fail;
        p += w;
        left -= (size_t) w;
    }
    if (fchmod(fd, 0644) != 0 || fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto fail;
    tmp_made = false;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void) fsync(dfd);
        close(dfd);
    }
    return 0;
fail:
    rc = errno == ENOSPC ? GG_ENOSPC : GG_EIO;
    if (fd >= 0)
        close(fd);
    if (tmp_made)
        unlink(tmp);
    return rc;
}

int docs_out_write_entity(const char *root, const json_t *entity, const char *from_ref,
                          const char *to_ref, char *path_out, size_t path_size, char *err,
                          size_t errlen)
{
    char path[PATH_MAX];
    json_t *moved = NULL;
    char *yaml = NULL;
    size_t len = 0;
    int rc;
    if (err && errlen)
        err[0] = '\0';
    if (path_out && path_size)
        path_out[0] = '\0';
    if ((rc = docs_out_entity_path(root, entity, path, sizeof path)) != 0) {
        if (err)
            snprintf(err, errlen, "the entity has no valid kind, namespace and name for a file");
        goto out;
    }
    if ((rc = docs_out_move_dependency(entity, from_ref, to_ref, &moved, NULL)) != 0) {
        if (err)
            snprintf(err, errlen, "cannot move the entity's dependsOn: %s", gg_strerror(rc));
        goto out;
    }
    if ((rc = docs_out_yaml(moved, &yaml, &len)) != 0) {
        if (err)
            snprintf(err, errlen, "cannot write the entity as YAML: %s", gg_strerror(rc));
        goto out;
    }
    if ((rc = docs_out_write_file(path, yaml, len)) != 0) {
        if (err)
            snprintf(err, errlen, "cannot write %s: %s", path, gg_strerror(rc));
        goto out;
    }
    if (path_out)
        snprintf(path_out, path_size, "%s", path);
out:
    free(yaml);
    json_decref(moved);
    return rc;
}

/* ---------------------------------------------------------------------------
 * The change description.
 */

static size_t s_longest_backticks(const char *text)
{
    size_t best = 0, run = 0;
    for (const char *p = text; p && *p; p++) {
        run = *p == '`' ? run + 1 : 0;
        if (run > best)
            best = run;
    }
    return best;
}

void docs_out_fence(const char *text, char *buf, size_t size)
{
    size_t n = s_longest_backticks(text) + 1;
    if (n < 3)
        n = 3;
    if (n > size - 1)
        n = size - 1;
    memset(buf, '`', n);
    buf[n] = '\0';
}

/* An inline code span that `text` cannot close; control characters become
 * spaces so the span stays on its line. */
static void s_code(s_buf_t *b, const char *text)
{
    size_t ticks = s_longest_backticks(text) + 1;
    if (ticks > 16)
        ticks = 16;
    char fence[17];
    memset(fence, '`', ticks);
    fence[ticks] = '\0';
    bool pad = text[0] == '`' || (text[0] && text[strlen(text) - 1] == '`');
    s_buf_str(b, fence);
    if (pad)
        s_buf_str(b, " ");
    for (const char *p = text; *p; p++) {
        char c = (unsigned char) *p < 0x20 ? ' ' : *p;
        s_buf_add(b, &c, 1);
    }
    if (pad)
        s_buf_str(b, " ");
    s_buf_str(b, fence);
}

/* Plain text on one line: control characters become spaces. */
static void s_line(s_buf_t *b, const char *text)
{
    for (const char *p = text; *p; p++) {
        char c = (unsigned char) *p < 0x20 ? ' ' : *p;
        s_buf_add(b, &c, 1);
    }
}

int docs_out_change_md(const docs_change_t *c, char **out)
{
    s_buf_t b = {.max = DOCS_OUT_MD_MAX - 64};
    const char *none = "(unknown)";
    *out = NULL;
    const char *ref = c->target_ref ? c->target_ref : none;
    const char *from = c->dataset_from ? c->dataset_from : none;
    const char *to = c->dataset_to ? c->dataset_to : none;

    s_buf_str(&b, "# Migrate ");
    s_line(&b, ref);
    s_buf_str(&b, " from ");
    s_line(&b, from);
    s_buf_str(&b, " to ");
    s_line(&b, to);
    s_buf_str(&b, "\n\n");
    s_buf_str(&b, "- Plan: ");
    s_code(&b, c->plan_name ? c->plan_name : none);
    if (c->plan_id) {
        s_buf_str(&b, " (id ");
        s_code(&b, c->plan_id);
        s_buf_str(&b, ")");
    }
    s_buf_str(&b, "\n- Dataset: ");
    s_code(&b, from);
    s_buf_str(&b, " -> ");
    s_code(&b, to);
    s_buf_str(&b, "\n- Target: ");
    s_code(&b, ref);
    if (c->target_path) {
        s_buf_str(&b, "\n- Folder: ");
        s_code(&b, c->target_path);
    }
    s_buf_printf(&b, "\n- Attempt %u, epoch %u\n", c->attempt, c->epoch);
    if (c->plan_description && c->plan_description[0]) {
        s_buf_str(&b, "\n");
        s_buf_str(&b, c->plan_description);
        s_buf_str(&b, "\n");
    }

    s_buf_str(&b, "\n## What each step did\n\n");
    size_t i;
    json_t *st;
    if (json_array_size(c->steps) == 0)
        s_buf_str(&b, "No step ran.\n");
    json_array_foreach(c->steps, i, st)
    {
        const char *name = json_string_value(json_object_get(st, "name"));
        const char *kind = json_string_value(json_object_get(st, "kind"));
        const char *summary = json_string_value(json_object_get(st, "summary"));
        s_buf_printf(&b, "%zu. ", i + 1);
        s_code(&b, name ? name : none);
        if (kind)
            s_buf_printf(&b, " (%s)", kind);
        if (summary) {
            s_buf_str(&b, ": ");
            s_line(&b, summary);
        }
        s_buf_str(&b, "\n");
        const json_t *files = json_object_get(st, "files");
        size_t j;
        json_t *f;
        json_array_foreach(files, j, f)
        {
            if (!json_is_string(f) || j >= DOCS_OUT_FILES_LIST)
                continue;
            s_buf_str(&b, "   - ");
            s_code(&b, json_string_value(f));
            s_buf_str(&b, "\n");
        }
        json_int_t more = json_integer_value(json_object_get(st, "files_more"));
        if (json_array_size(files) > DOCS_OUT_FILES_LIST)
            more += (json_int_t) (json_array_size(files) - DOCS_OUT_FILES_LIST);
        if (more > 0)
            s_buf_printf(&b, "   - and %" JSON_INTEGER_FORMAT " more\n", more);
    }

    s_buf_str(&b, "\n## Verification\n\n");
    s_buf_str(&b, c->verification && c->verification[0] ? c->verification
                                                        : "No verification configured.");
    s_buf_str(&b, "\n");
    if (b.oom) {
        free(b.p);
        return GG_ENOMEM;
    }
    if (b.full) {
        b.full = false;
        b.max += 64;
        s_buf_str(&b, "\n(description cut at its size limit)\n");
    }
    if (!b.p) {
        free(b.p);
        return GG_ENOMEM;
    }
    *out = b.p;
    return 0;
}
