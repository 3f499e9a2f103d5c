/*
 * entity_ref.c: Backstage entity references (parse, format, compare) and the
 * field validators of Backstage's default entity policy.
 *
 * Kept pure and free of allocation so the catalog, the plan resolver and the
 * wire code can all use it, and so it can be tested exhaustively against the
 * rules of Backstage's catalog-model package (see entity_ref.h).
 */
#include "entity_ref.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gg_error.h"

static void s_seterr(char *errbuf, size_t errsize, const char *fmt, const char *text)
{
    if (errbuf && errsize > 0)
        snprintf(errbuf, errsize, fmt, text);
}

/* Copies [start, start+len) into a part buffer; false when too long. */
static bool s_copy_part(char *dst, const char *start, size_t len)
{
    if (len > ENTITY_REF_PART_MAX)
        return false;
    memcpy(dst, start, len);
    dst[len] = '\0';
    return true;
}

int entity_ref_parse(const char *text, const char *default_kind, const char *default_namespace,
                     entity_ref_t *ref, char *errbuf, size_t errsize)
{
    if (errbuf && errsize > 0)
        errbuf[0] = '\0';
    if (!text || !*text) {
        s_seterr(errbuf, errsize, "entity reference must not be empty%s", "");
        return GG_EINVAL;
    }
    size_t len = strnlen(text, ENTITY_REF_TEXT_MAX + 1);
    if (len > ENTITY_REF_TEXT_MAX) {
        s_seterr(errbuf, errsize, "entity reference is longer than %s characters", "1024");
        return GG_EINVAL;
    }
    const char *colon = strchr(text, ':');
    const char *slash = strchr(text, '/');
    /* A '/' ahead of the ':' means the ':' belongs to the name. */
    if (slash && colon && slash < colon)
        colon = NULL;

    const char *kind = NULL, *ns = NULL, *name;
    size_t kind_len = 0, ns_len = 0;
    if (colon) {
        kind = text;
        kind_len = (size_t) (colon - text);
    }
    if (slash) {
        ns = colon ? colon + 1 : text;
        ns_len = (size_t) (slash - ns);
        name = slash + 1;
    } else {
        name = colon ? colon + 1 : text;
    }
    size_t name_len = len - (size_t) (name - text);
    if ((kind && kind_len == 0) || (ns && ns_len == 0) || name_len == 0) {
        s_seterr(errbuf, errsize,
                 "entity reference \"%s\" was not on the form [<kind>:][<namespace>/]<name>", text);
        return GG_EINVAL;
    }
    if (!kind && default_kind && *default_kind) {
        kind = default_kind;
        kind_len = strlen(default_kind);
    }
    if (!kind) {
        s_seterr(errbuf, errsize,
                 "entity reference \"%s\" had missing or empty kind (e.g. did not start with "
                 "\"component:\" or similar)",
                 text);
        return GG_EINVAL;
    }
    if (!ns) {
        ns = (default_namespace && *default_namespace) ? default_namespace : "default";
        ns_len = strlen(ns);
    }
    if (!s_copy_part(ref->kind, kind, kind_len) || !s_copy_part(ref->namespace, ns, ns_len) ||
        !s_copy_part(ref->name, name, name_len)) {
        s_seterr(errbuf, errsize, "entity reference \"%s\" has a part longer than 253 characters",
                 text);
        return GG_EINVAL;
    }
    return GG_OK;
}

/* Appends the lower-cased `src` at *pos; false when it does not fit. */
static bool s_append_lower(char *buf, size_t size, size_t *pos, const char *src)
{
    for (; *src; src++) {
        if (*pos + 1 >= size)
            return false;
        char c = *src;
        buf[(*pos)++] = (c >= 'A' && c <= 'Z') ? (char) (c - 'A' + 'a') : c;
    }
    return true;
}

int entity_ref_format(const entity_ref_t *ref, char *buf, size_t size)
{
    size_t pos = 0;
    if (!buf || size == 0)
        return GG_ETOOBIG;
    if (!s_append_lower(buf, size, &pos, ref->kind) || !s_append_lower(buf, size, &pos, ":") ||
        !s_append_lower(buf, size, &pos, ref->namespace) || !s_append_lower(buf, size, &pos, "/") ||
        !s_append_lower(buf, size, &pos, ref->name)) {
        buf[0] = '\0';
        return GG_ETOOBIG;
    }
    buf[pos] = '\0';
    return GG_OK;
}

int entity_ref_normalize(const char *text, const char *default_kind, const char *default_namespace,
                         char *buf, size_t size, char *errbuf, size_t errsize)
{
    entity_ref_t ref;
    int rc = entity_ref_parse(text, default_kind, default_namespace, &ref, errbuf, errsize);
    if (rc == 0) {
        rc = entity_ref_format(&ref, buf, size);
        if (rc != 0)
            s_seterr(errbuf, errsize, "entity reference \"%s\" is too long", text);
    }
    return rc;
}

int entity_ref_compare(const entity_ref_t *a, const entity_ref_t *b)
{
    int c = strcasecmp(a->kind, b->kind);
    if (c == 0)
        c = strcasecmp(a->namespace, b->namespace);
    if (c == 0)
        c = strcasecmp(a->name, b->name);
    return c;
}

bool entity_ref_equal(const entity_ref_t *a, const entity_ref_t *b)
{
    return entity_ref_compare(a, b) == 0;
}

/* ---- validators ---- */

static bool s_is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool s_is_alnum(char c)
{
    return s_is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* ^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$, 1..63 */
static bool s_valid_name_n(const char *v, size_t len)
{
    if (len < 1 || len > 63 || !s_is_alnum(v[0]) || !s_is_alnum(v[len - 1]))
        return false;
    for (size_t i = 1; i + 1 < len; i++) {
        char c = v[i];
        if (!s_is_alnum(c) && c != '-' && c != '_' && c != '.')
            return false;
    }
    return true;
}

/* ^[a-z0-9]+(-[a-z0-9]+)*$, 1..63 */
static bool s_valid_dns_label_n(const char *v, size_t len)
{
    if (len < 1 || len > 63 || v[0] == '-' || v[len - 1] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        if (v[i] == '-') {
            if (v[i + 1] == '-')
                return false;
        } else if (!s_is_lower_alnum(v[i])) {
            return false;
        }
    }
    return true;
}

bool entity_ref_valid_dns_subdomain(const char *value, size_t len)
{
    if (!value || len < 1 || len > 253)
        return false;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || value[i] == '.') {
            if (!s_valid_dns_label_n(value + start, i - start))
                return false;
            start = i + 1;
        }
    }
    return true;
}

/* ^[a-z0-9A-Z]+$, 1..63 (the version part of an apiVersion) */
static bool s_valid_version_n(const char *v, size_t len)
{
    if (len < 1 || len > 63)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!s_is_alnum(v[i]))
            return false;
    return true;
}

/* Backstage's isValidPrefixAndOrSuffix with separator '/': one part is the
 * suffix, two parts are prefix and suffix, more is invalid. */
static bool s_prefix_suffix(const char *v, bool (*suffix_ok)(const char *, size_t))
{
    if (!v)
        return false;
    size_t len = strlen(v);
    const char *slash = memchr(v, '/', len);
    if (!slash)
        return suffix_ok(v, len);
    if (memchr(slash + 1, '/', len - (size_t) (slash + 1 - v)))
        return false;
    return entity_ref_valid_dns_subdomain(v, (size_t) (slash - v)) &&
           suffix_ok(slash + 1, len - (size_t) (slash + 1 - v));
}

bool entity_ref_valid_name(const char *value)
{
    return value && s_valid_name_n(value, strlen(value));
}

bool entity_ref_valid_namespace(const char *value)
{
    return value && s_valid_dns_label_n(value, strlen(value));
}

bool entity_ref_valid_kind(const char *value)
{
    if (!value)
        return false;
    size_t len = strlen(value);
    if (len < 1 || len > 63)
        return false;
    if (!((value[0] >= 'a' && value[0] <= 'z') || (value[0] >= 'A' && value[0] <= 'Z')))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!s_is_alnum(value[i]))
            return false;
    return true;
}

bool entity_ref_valid_api_version(const char *value)
{
    return s_prefix_suffix(value, s_valid_version_n);
}

bool entity_ref_valid_label_key(const char *value)
{
    return s_prefix_suffix(value, s_valid_name_n);
}

bool entity_ref_valid_label_value(const char *value)
{
    return value && (value[0] == '\0' || s_valid_name_n(value, strlen(value)));
}

static bool s_is_tag_char(char c)
{
    return s_is_lower_alnum(c) || c == ':' || c == '+' || c == '#';
}

bool entity_ref_valid_tag(const char *value)
{
    if (!value)
        return false;
    size_t len = strlen(value);
    if (len < 1 || len > 63 || value[0] == '-' || value[len - 1] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        if (value[i] == '-') {
            if (value[i + 1] == '-')
                return false;
        } else if (!s_is_tag_char(value[i])) {
            return false;
        }
    }
    return true;
}
