/*
 * catalog.c: reads a Backstage software catalog and answers "who consumes X".
 *
 * Design notes
 * ------------
 * Pipeline: source (file, directory, Location target, by-query JSON, URL page)
 *   -> documents (libyaml events or jansson) -> json_t per entity
 *   -> validation (Backstage's default policies and built-in kind schemas)
 *   -> de-duplication by canonical ref -> stored entity.
 *
 * YAML is converted with libyaml's event parser into jansson values under the
 * YAML 1.2 core schema, which is what Backstage's `yaml` package applies: plain
 * scalars may become null, booleans, integers or floats; quoted and block
 * scalars stay strings; duplicate keys and complex keys are errors; aliases are
 * expanded as deep copies, counted against CATALOG_MAX_NODES (so a "billion
 * laughs" document is refused, not expanded). A document that is empty is
 * ignored, one that is not a mapping is a warning. libyaml cannot resume after a
 * syntax error, so the documents before it are kept and the rest of that file
 * is reported as one warning.
 *
 * Invariants:
 *  - every stored entity passed validation; its canonical ref is unique in
 *    `by_ref` (case-insensitive, as Backstage compares refs);
 *  - a file is read at most once (keyed by realpath), a directory walked at
 *    most once, so Location loops terminate; Location nesting is bounded too;
 *  - the reverse dependency index is derived data: it is dropped whenever an
 *    entity is added and rebuilt on the next consumers query.
 * Nothing read from a catalog aborts the process: every failure is a warning
 * (and, for the top-level source only, an error code).
 */
#include "catalog.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "entity_ref.h"
#include "gg_error.h"
#include "gg_log.h"

#define S_MSG_MAX   1024
#define S_URL_LIMIT 500 /* entities asked for per by-query page */

/* ------------------------------------------------------------------------ */
/* Small containers                                                          */
/* ------------------------------------------------------------------------ */

/* Open-addressing string -> size_t map (linear probing, power-of-two size,
 * load factor <= 1/2). Keys are borrowed unless owns_keys. */
typedef struct {
    const char *key;
    size_t value;
} s_slot_t;

typedef struct {
    s_slot_t *slots;
    size_t cap;
    size_t count;
    bool owns_keys;
} s_map_t;

static uint64_t s_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char) *s;
        h *= 1099511628211ull;
    }
    return h;
}

static s_slot_t *s_map_get(const s_map_t *m, const char *key)
{
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = (size_t) s_hash(key) & mask;; i = (i + 1) & mask) {
        s_slot_t *slot = &m->slots[i];
        if (!slot->key)
            return NULL;
        if (strcmp(slot->key, key) == 0)
            return slot;
    }
}

static int s_map_grow(s_map_t *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 64;
    s_slot_t *nslots = calloc(ncap, sizeof *nslots);
    if (!nslots)
        return GG_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key)
            continue;
        size_t j = (size_t) s_hash(m->slots[i].key) & (ncap - 1);
        while (nslots[j].key)
            j = (j + 1) & (ncap - 1);
        nslots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = nslots;
    m->cap = ncap;
    return GG_OK;
}

/* Inserts key -> value when absent. Returns 0, GG_EEXIST or GG_ENOMEM. When
 * owns_keys, the map keeps its own copy of the key. */
static int s_map_put(s_map_t *m, const char *key, size_t value)
{
    if (s_map_get(m, key))
        return GG_EEXIST;
    if ((m->count + 1) * 2 > m->cap && s_map_grow(m) != 0)
        return GG_ENOMEM;
    const char *k = key;
    if (m->owns_keys) {
        k = strdup(key);
        if (!k)
            return GG_ENOMEM;
    }
    size_t j = (size_t) s_hash(k) & (m->cap - 1);
    while (m->slots[j].key)
        j = (j + 1) & (m->cap - 1);
    m->slots[j].key = k;
    m->slots[j].value = value;
    m->count++;
    return GG_OK;
}

static void s_map_clear(s_map_t *m)
{
    if (m->owns_keys)
        for (size_t i = 0; i < m->cap; i++)
            free((char *) m->slots[i].key);
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

/* Growable array of pointers (max bounded by the callers). */
typedef struct {
    void **items;
    size_t count;
    size_t cap;
} s_vec_t;

static int s_vec_push(s_vec_t *v, void *item)
{
    if (v->count == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 16;
        void **n = realloc(v->items, ncap * sizeof *n);
        if (!n)
            return GG_ENOMEM;
        v->items = n;
        v->cap = ncap;
    }
    v->items[v->count++] = item;
    return GG_OK;
}

static void s_vec_free_all(s_vec_t *v)
{
    for (size_t i = 0; i < v->count; i++)
        free(v->items[i]);
    free(v->items);
    v->items = NULL;
    v->count = v->cap = 0;
}

/* List of entity indices, for the reverse dependency index. */
typedef struct {
    size_t *items;
    size_t count;
    size_t cap;
} s_ilist_t;

/* ------------------------------------------------------------------------ */
/* Catalog state                                                             */
/* ------------------------------------------------------------------------ */

typedef struct {
    catalog_entity_t pub; /* the view handed out; its strings are owned below */
    char *ref, *kind, *ns, *name, *type, *lifecycle, *owner, *system, *source;
    char *file, *path, *where;
    char **tags;
    size_t ntags;
    char **deps; /* canonical spec.dependsOn, unique */
    size_t ndeps;
    char **dep_of; /* canonical spec.dependencyOf, unique */
    size_t ndep_of;
    json_t *json;
} s_entity_t;

struct catalog_t {
    s_entity_t **entities;
    size_t count;
    size_t cap;
    size_t max_entities;
    s_map_t by_ref; /* canonical ref -> index in entities */
    s_map_t files;  /* realpaths of files read */
    s_map_t dirs;   /* realpaths of directories walked */
    catalog_warning_t *warnings;
    size_t nwarnings;
    size_t capwarnings;
    size_t dropped;
    bool index_valid;
    s_map_t consumers; /* depended-on ref -> index in lists */
    s_ilist_t *lists;
    size_t nlists;
    size_t caplists;
};

/* Where a batch of documents came from. */
typedef struct {
    const char *where; /* file path or URL, for warnings */
    const char *file;  /* absolute path of the file, or NULL */
    const char *dir;   /* folder that relative Location targets resolve against, or NULL */
    int depth;         /* Location nesting depth of this source */
} s_source_t;

static int s_load_any(catalog_t *cat, const char *path, int loc_depth, int dir_depth,
                      const char *warn_where);

/* ------------------------------------------------------------------------ */
/* Warnings                                                                  */
/* ------------------------------------------------------------------------ */

static void s_warn(catalog_t *cat, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void s_warn(catalog_t *cat, const char *where, const char *fmt, ...)
{
    char msg[S_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gg_debug("catalog: %s: %s", where ? where : "-", msg);

    if (cat->nwarnings >= CATALOG_MAX_WARNINGS) {
        cat->dropped++;
        return;
    }
    if (cat->nwarnings + 1 == CATALOG_MAX_WARNINGS) {
        snprintf(msg, sizeof msg, "too many warnings: later ones are counted, not kept");
        where = "catalog";
        cat->dropped++;
    }
    if (cat->nwarnings == cat->capwarnings) {
        size_t ncap = cat->capwarnings ? cat->capwarnings * 2 : 16;
        catalog_warning_t *n = realloc(cat->warnings, ncap * sizeof *n);
        if (!n) {
            cat->dropped++;
            return;
        }
        cat->warnings = n;
        cat->capwarnings = ncap;
    }
    char *w = strdup(where ? where : "catalog");
    char *m = strdup(msg);
    if (!w || !m) {
        free(w);
        free(m);
        cat->dropped++;
        return;
    }
    cat->warnings[cat->nwarnings].where = w;
    cat->warnings[cat->nwarnings].message = m;
    cat->nwarnings++;
}

/* "FILE:LINE" (or "FILE" when line <= 0) into buf. */
static const char *s_where_line(char *buf, size_t size, const char *where, int line)
{
    if (line > 0)
        snprintf(buf, size, "%s:%d", where, line);
    else
        snprintf(buf, size, "%s", where);
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Entities                                                                  */
/* ------------------------------------------------------------------------ */

static void s_free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void s_entity_free(s_entity_t *e)
{
    if (!e)
        return;
    free(e->ref);
    free(e->kind);
    free(e->ns);
    free(e->name);
    free(e->type);
    free(e->lifecycle);
    free(e->owner);
    free(e->system);
    free(e->source);
    free(e->file);
    free(e->path);
    free(e->where);
    s_free_strv(e->tags, e->ntags);
    s_free_strv(e->deps, e->ndeps);
    s_free_strv(e->dep_of, e->ndep_of);
    json_decref(e->json);
    free(e);
}

catalog_t *catalog_new(void)
{
    catalog_t *cat = calloc(1, sizeof *cat);
    if (!cat)
        return NULL;
    cat->max_entities = CATALOG_MAX_ENTITIES;
    cat->files.owns_keys = true;
    cat->dirs.owns_keys = true;
    return cat;
}

static void s_index_clear(catalog_t *cat)
{
    for (size_t i = 0; i < cat->nlists; i++)
        free(cat->lists[i].items);
    free(cat->lists);
    cat->lists = NULL;
    cat->nlists = cat->caplists = 0;
    s_map_clear(&cat->consumers);
    cat->index_valid = false;
}

void catalog_destroy(catalog_t **p)
{
    if (!p || !*p)
        return;
    catalog_t *cat = *p;
    s_index_clear(cat);
    for (size_t i = 0; i < cat->count; i++)
        s_entity_free(cat->entities[i]);
    free(cat->entities);
    s_map_clear(&cat->by_ref);
    s_map_clear(&cat->files);
    s_map_clear(&cat->dirs);
    for (size_t i = 0; i < cat->nwarnings; i++) {
        free((char *) cat->warnings[i].where);
        free((char *) cat->warnings[i].message);
    }
    free(cat->warnings);
    free(cat);
    *p = NULL;
}

void catalog_set_max_entities(catalog_t *cat, size_t max)
{
    cat->max_entities = max < CATALOG_MAX_ENTITIES ? max : CATALOG_MAX_ENTITIES;
}

size_t catalog_count(const catalog_t *cat)
{
    return cat ? cat->count : 0;
}

const catalog_entity_t *catalog_entity_at(const catalog_t *cat, size_t i)
{
    if (!cat || i >= cat->count)
        return NULL;
    return &cat->entities[i]->pub;
}

const catalog_warning_t *catalog_warnings(const catalog_t *cat, size_t *count)
{
    if (count)
        *count = cat ? cat->nwarnings : 0;
    return cat ? cat->warnings : NULL;
}

size_t catalog_warnings_dropped(const catalog_t *cat)
{
    return cat ? cat->dropped : 0;
}

static const char *s_meta_string(const catalog_entity_t *e, const char *map, const char *key)
{
    if (!e || !key)
        return NULL;
    json_t *m = json_object_get(json_object_get(e->json, "metadata"), map);
    return json_string_value(json_object_get(m, key));
}

const char *catalog_entity_annotation(const catalog_entity_t *e, const char *key)
{
    return s_meta_string(e, "annotations", key);
}

const char *catalog_entity_label(const catalog_entity_t *e, const char *key)
{
    return s_meta_string(e, "labels", key);
}

/* ------------------------------------------------------------------------ */
/* Validation: Backstage's default entity policies and built-in kinds        */
/* ------------------------------------------------------------------------ */

/* A spec field of a built-in kind. Ref fields are parsed like Backstage's
 * BuiltinKindsEntityProcessor does (with its default kind; NULL: the entry
 * must name its kind), so an unparsable ref makes the entity invalid. */
typedef enum { S_STR, S_STRS, S_STR_OR_MAP, S_MAP } s_ftype_t;

typedef struct {
    const char *name;
    s_ftype_t type;
    bool required;
    bool is_ref;
    const char *default_kind;
} s_field_t;

typedef struct {
    const char *kind;
    const s_field_t *fields;
    size_t nfields;
} s_kind_t;

static const s_field_t s_component_fields[] = {
    {"type", S_STR, true, false, NULL},
    {"lifecycle", S_STR, true, false, NULL},
    {"owner", S_STR, true, true, "Group"},
    {"system", S_STR, false, true, "System"},
    {"subcomponentOf", S_STR, false, true, "Component"},
    {"providesApis", S_STRS, false, true, "API"},
    {"consumesApis", S_STRS, false, true, "API"},
    {"dependsOn", S_STRS, false, true, NULL},
    {"dependencyOf", S_STRS, false, true, NULL},
};
static const s_field_t s_api_fields[] = {
    {"type", S_STR, true, false, NULL},
    {"lifecycle", S_STR, true, false, NULL},
    {"owner", S_STR, true, true, "Group"},
    /* a string, or a placeholder such as {$text: ./openapi.yaml} */
    {"definition", S_STR_OR_MAP, true, false, NULL},
    {"system", S_STR, false, true, "System"},
};
static const s_field_t s_resource_fields[] = {
    {"type", S_STR, true, false, NULL},          {"owner", S_STR, true, true, "Group"},
    {"system", S_STR, false, true, "System"},    {"dependsOn", S_STRS, false, true, NULL},
    {"dependencyOf", S_STRS, false, true, NULL},
};
static const s_field_t s_system_fields[] = {
    {"owner", S_STR, true, true, "Group"},
    {"domain", S_STR, false, true, "Domain"},
    {"type", S_STR, false, false, NULL},
};
static const s_field_t s_domain_fields[] = {
    {"owner", S_STR, true, true, "Group"},
    {"subdomainOf", S_STR, false, true, "Domain"},
    {"type", S_STR, false, false, NULL},
};
static const s_field_t s_group_fields[] = {
    {"type", S_STR, true, false, NULL},      {"children", S_STRS, true, true, "Group"},
    {"parent", S_STR, false, true, "Group"}, {"members", S_STRS, false, true, "User"},
    {"profile", S_MAP, false, false, NULL},
};
static const s_field_t s_user_fields[] = {
    {"memberOf", S_STRS, false, true, "Group"},
    {"profile", S_MAP, false, false, NULL},
};
static const s_field_t s_location_fields[] = {
    {"type", S_STR, false, false, NULL},
    {"target", S_STR, false, false, NULL},
    {"targets", S_STRS, false, false, NULL},
};

#define S_KIND(k, f)                                                                               \
    {                                                                                              \
        k, f, sizeof f / sizeof f[0]                                                               \
    }
static const s_kind_t s_kinds[] = {
    S_KIND("Component", s_component_fields), S_KIND("API", s_api_fields),
    S_KIND("Resource", s_resource_fields),   S_KIND("System", s_system_fields),
    S_KIND("Domain", s_domain_fields),       S_KIND("Group", s_group_fields),
    S_KIND("User", s_user_fields),           S_KIND("Location", s_location_fields),
};

static const char *s_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "a mapping";
    case JSON_ARRAY: return "a sequence";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

/* Fails validation: formats msg and returns false. */
static bool s_bad(char *msg, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool s_bad(char *msg, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, size, fmt, ap);
    va_end(ap);
    return false;
}

/* Deeper than `limit` levels of containers? */
static bool s_too_deep(const json_t *v, int limit)
{
    if (limit < 0)
        return true;
    size_t i;
    const char *k;
    json_t *c;
    if (json_is_object(v)) {
        json_object_foreach((json_t *) v, k, c) if (s_too_deep(c, limit - 1)) return true;
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, c) if (s_too_deep(c, limit - 1)) return true;
    }
    return false;
}

/* A non-empty string (JSON schema minLength 1)? */
static bool s_nonempty(const json_t *v)
{
    return json_is_string(v) && json_string_length(v) > 0;
}

/* Backstage's isValidUrl is `new URL(value)`: a scheme is required. */
static bool s_looks_like_url(const char *s)
{
    if (!s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
        return false;
    for (s++; *s; s++) {
        if (*s == ':')
            return true;
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '+' || *s == '-' || *s == '.'))
            return false;
    }
    return false;
}

/* FieldFormatEntityPolicy and the envelope/metadata schemas. */
static bool s_check_envelope(const json_t *doc, char *msg, size_t size)
{
    static const char *const roots[] = {"apiVersion", "kind",      "metadata",
                                        "spec",       "relations", "status"};
    const char *key;
    json_t *v;
    if (!json_object_get(doc, "apiVersion") && !json_object_get(doc, "kind"))
        return s_bad(msg, size, "not a catalog entity (it has no apiVersion and no kind)");
    json_object_foreach((json_t *) doc, key, v)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++)
            known = known || strcmp(key, roots[i]) == 0;
        if (!known)
            return s_bad(msg, size,
                         "unknown root field \"%.100s\" (allowed: apiVersion, kind, metadata, "
                         "spec, relations, status)",
                         key);
    }
    json_t *api = json_object_get(doc, "apiVersion");
    if (!api || json_is_null(api))
        return s_bad(msg, size, "\"apiVersion\" must have a value");
    if (!json_is_string(api) || !entity_ref_valid_api_version(json_string_value(api)))
        return s_bad(msg, size,
                     "\"apiVersion\" is not valid; expected a string of the form "
                     "[<group>/]<version> but found %s%.100s",
                     json_is_string(api) ? "" : s_type_name(api),
                     json_is_string(api) ? json_string_value(api) : "");
    json_t *kind = json_object_get(doc, "kind");
    if (!kind || json_is_null(kind))
        return s_bad(msg, size, "\"kind\" must have a value");
    if (!json_is_string(kind) || !entity_ref_valid_kind(json_string_value(kind)))
        return s_bad(msg, size,
                     "\"kind\" is not valid; expected a string that is a sequence of "
                     "[a-zA-Z][a-z0-9A-Z], at most 63 characters in total, but found %s%.100s",
                     json_is_string(kind) ? "" : s_type_name(kind),
                     json_is_string(kind) ? json_string_value(kind) : "");
    json_t *meta = json_object_get(doc, "metadata");
    if (!json_is_object(meta))
        return s_bad(msg, size, "\"metadata\" must be a mapping, found %s",
                     meta ? s_type_name(meta) : "nothing");
    json_t *name = json_object_get(meta, "name");
    if (!name || json_is_null(name))
        return s_bad(msg, size, "\"metadata.name\" must have a value");
    if (!json_is_string(name) || !entity_ref_valid_name(json_string_value(name)))
        return s_bad(msg, size,
                     "\"metadata.name\" is not valid; expected a string that is sequences of "
                     "[a-zA-Z0-9] separated by any of [-_.], at most 63 characters in total, "
                     "but found %s\"%.100s\"",
                     json_is_string(name) ? "" : s_type_name(name),
                     json_is_string(name) ? json_string_value(name) : "");
    json_t *ns = json_object_get(meta, "namespace");
    if (ns && (!json_is_string(ns) || !entity_ref_valid_namespace(json_string_value(ns))))
        return s_bad(msg, size,
                     "\"metadata.namespace\" is not valid; expected a string that is sequences "
                     "of [a-z0-9] separated by [-], at most 63 characters in total, but found "
                     "%s\"%.100s\"",
                     json_is_string(ns) ? "" : s_type_name(ns),
                     json_is_string(ns) ? json_string_value(ns) : "");

    static const char *const maps[] = {"labels", "annotations"};
    for (size_t m = 0; m < 2; m++) {
        json_t *obj = json_object_get(meta, maps[m]);
        if (!obj)
            continue;
        if (!json_is_object(obj))
            return s_bad(msg, size, "\"metadata.%s\" must be a mapping, found %s", maps[m],
                         s_type_name(obj));
        json_object_foreach(obj, key, v)
        {
            if (!entity_ref_valid_label_key(key))
                return s_bad(msg, size,
                             "\"%s.%.100s\" is not valid; expected a key of the form "
                             "[<DNS subdomain>/]<name>",
                             maps[m], key);
            if (!json_is_string(v))
                return s_bad(msg, size, "\"%s.%.100s\" must be a string, found %s (quote it)",
                             maps[m], key, s_type_name(v));
            if (m == 0 && !entity_ref_valid_label_value(json_string_value(v)))
                return s_bad(msg, size,
                             "\"labels.%.100s\" is not valid; expected a string that is "
                             "sequences of [a-zA-Z0-9] separated by any of [-_.], at most 63 "
                             "characters in total, but found \"%.100s\"",
                             key, json_string_value(v));
        }
    }
    json_t *tags = json_object_get(meta, "tags");
    if (tags) {
        if (!json_is_array(tags))
            return s_bad(msg, size, "\"metadata.tags\" must be a sequence, found %s",
                         s_type_name(tags));
        size_t i;
        json_array_foreach(tags, i, v)
        {
            if (!json_is_string(v) || !entity_ref_valid_tag(json_string_value(v)))
                return s_bad(msg, size,
                             "\"tags.%zu\" is not valid; expected a string that is sequences of "
                             "[a-z0-9+#:] separated by [-], at most 63 characters in total, "
                             "but found %s\"%.100s\"",
                             i, json_is_string(v) ? "" : s_type_name(v),
                             json_is_string(v) ? json_string_value(v) : "");
        }
    }
    json_t *links = json_object_get(meta, "links");
    if (links) {
        if (!json_is_array(links))
            return s_bad(msg, size, "\"metadata.links\" must be a sequence, found %s",
                         s_type_name(links));
        size_t i;
        json_array_foreach(links, i, v)
        {
            json_t *url = json_object_get(v, "url");
            json_t *title = json_object_get(v, "title");
            json_t *icon = json_object_get(v, "icon");
            if (!json_is_object(v) || !json_is_string(url) ||
                !s_looks_like_url(json_string_value(url)))
                return s_bad(msg, size, "\"links.%zu.url\" is not valid; expected a URL", i);
            if (title && !s_nonempty(title))
                return s_bad(msg, size, "\"links.%zu.title\" must be a non-empty string", i);
            if (icon && (!json_is_string(icon) || !entity_ref_valid_name(json_string_value(icon))))
                return s_bad(msg, size, "\"links.%zu.icon\" is not valid", i);
        }
    }
    static const char *const strs[] = {"title", "description", "uid", "etag"};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        v = json_object_get(meta, strs[i]);
        if (v && !json_is_string(v))
            return s_bad(msg, size, "\"metadata.%s\" must be a string, found %s", strs[i],
                         s_type_name(v));
    }
    v = json_object_get(doc, "spec");
    if (v && !json_is_object(v))
        return s_bad(msg, size, "\"spec\" must be a mapping, found %s", s_type_name(v));
    v = json_object_get(doc, "relations");
    if (v && !json_is_array(v))
        return s_bad(msg, size, "\"relations\" must be a sequence, found %s", s_type_name(v));
    v = json_object_get(doc, "status");
    if (v && !json_is_object(v))
        return s_bad(msg, size, "\"status\" must be a mapping, found %s", s_type_name(v));
    return true;
}

/* Adds a canonical ref to a unique list (bounded by the document's size). */
static int s_strv_add_unique(char ***v, size_t *n, const char *s)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*v)[i], s) == 0)
            return GG_OK;
    char **nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv)
        return GG_ENOMEM;
    *v = nv;
    nv[*n] = strdup(s);
    if (!nv[*n])
        return GG_ENOMEM;
    (*n)++;
    return GG_OK;
}

/* Checks one spec field of a built-in kind; for ref fields, parses every entry
 * (with the entity's namespace as the default) and collects dependsOn /
 * dependencyOf into the entity. */
static bool s_check_field(const s_field_t *f, const json_t *spec, const char *ns, s_entity_t *e,
                          char *msg, size_t size, int *err)
{
    json_t *v = json_object_get(spec, f->name);
    if (!v) {
        if (f->required)
            return s_bad(msg, size, "\"spec.%s\" is required", f->name);
        return true;
    }
    switch (f->type) {
    case S_STR:
        if (!s_nonempty(v))
            return s_bad(msg, size, "\"spec.%s\" must be a non-empty string, found %s", f->name,
                         json_is_string(v) ? "an empty string" : s_type_name(v));
        break;
    case S_STR_OR_MAP:
        if (!s_nonempty(v) && !json_is_object(v))
            return s_bad(msg, size, "\"spec.%s\" must be a non-empty string, found %s", f->name,
                         json_is_string(v) ? "an empty string" : s_type_name(v));
        break;
    case S_MAP:
        if (!json_is_object(v))
            return s_bad(msg, size, "\"spec.%s\" must be a mapping, found %s", f->name,
                         s_type_name(v));
        break;
    case S_STRS: {
        if (!json_is_array(v))
            return s_bad(msg, size, "\"spec.%s\" must be a sequence of strings, found %s", f->name,
                         s_type_name(v));
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) if (!s_nonempty(item)) return s_bad(
            msg, size, "\"spec.%s[%zu]\" must be a non-empty string, found %s", f->name, i,
            json_is_string(item) ? "an empty string" : s_type_name(item));
        break;
    }
    }
    if (!f->is_ref)
        return true;

    bool is_deps = strcmp(f->name, "dependsOn") == 0;
    bool is_dep_of = strcmp(f->name, "dependencyOf") == 0;
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t i = 0; i < n; i++) {
        const char *text = json_string_value(json_is_array(v) ? json_array_get(v, i) : v);
        char canon[ENTITY_REF_FORMAT_MAX], why[S_MSG_MAX / 2];
        if (entity_ref_normalize(text, f->default_kind, ns, canon, sizeof canon, why, sizeof why) !=
            0) {
            if (json_is_array(v))
                return s_bad(msg, size, "\"spec.%s[%zu]\": %s", f->name, i, why);
            return s_bad(msg, size, "\"spec.%s\": %s", f->name, why);
        }
        int rc = GG_OK;
        if (is_deps)
            rc = s_strv_add_unique(&e->deps, &e->ndeps, canon);
        else if (is_dep_of)
            rc = s_strv_add_unique(&e->dep_of, &e->ndep_of, canon);
        if (rc != 0) {
            *err = rc;
            return s_bad(msg, size, "out of memory");
        }
    }
    return true;
}

/* Fields of a kind this catalog does not know: dependsOn / dependencyOf are
 * honoured like Component's (a custom processor is what makes such a kind
 * valid in Backstage); nothing else is checked. */
static const s_field_t s_custom_fields[] = {
    {"dependsOn", S_STRS, false, true, NULL},
    {"dependencyOf", S_STRS, false, true, NULL},
};

/* Validates `doc` and fills the entity's derived fields. Returns true when
 * valid; otherwise msg says why. *err is set on allocation failure. */
static bool s_validate(const json_t *doc, s_entity_t *e, char *msg, size_t size, int *err)
{
    if (!s_check_envelope(doc, msg, size))
        return false;
    const char *kind = json_string_value(json_object_get(doc, "kind"));
    const char *api = json_string_value(json_object_get(doc, "apiVersion"));
    json_t *meta = json_object_get(doc, "metadata");
    const char *ns = json_string_value(json_object_get(meta, "namespace"));
    if (!ns)
        ns = "default"; /* DefaultNamespaceEntityPolicy */
    json_t *spec = json_object_get(doc, "spec");

    const s_kind_t *known = NULL;
    for (size_t i = 0; i < sizeof s_kinds / sizeof s_kinds[0]; i++) {
        if (strcmp(kind, s_kinds[i].kind) == 0)
            known = &s_kinds[i];
        else if (strcasecmp(kind, s_kinds[i].kind) == 0)
            return s_bad(msg, size,
                         "kind \"%s\" is not recognized; kinds are case-sensitive (did you "
                         "mean \"%s\"?)",
                         kind, s_kinds[i].kind);
    }
    const s_field_t *fields = s_custom_fields;
    size_t nfields = sizeof s_custom_fields / sizeof s_custom_fields[0];
    if (known) {
        if (strcmp(api, "backstage.io/v1alpha1") != 0 && strcmp(api, "backstage.io/v1beta1") != 0)
            return s_bad(msg, size,
                         "apiVersion \"%.100s\" is not supported for kind %s (expected "
                         "backstage.io/v1alpha1 or backstage.io/v1beta1)",
                         api, kind);
        if (!json_is_object(spec))
            return s_bad(msg, size, "\"spec\" is required for kind %s", kind);
        fields = known->fields;
        nfields = known->nfields;
    }
    for (size_t i = 0; spec && i < nfields; i++)
        if (!s_check_field(&fields[i], spec, ns, e, msg, size, err))
            return false;
    if (known && strcmp(kind, "Location") == 0 && !json_object_get(spec, "target") &&
        !json_object_get(spec, "targets"))
        return s_bad(msg, size, "a Location needs \"spec.target\" or \"spec.targets\"");
    return true;
}

/* Entities read back from Backstage carry computed `relations`; their
 * dependsOn / dependencyOf edges count like spec.dependsOn / dependencyOf
 * (they may come from processors that leave the spec alone). Relations whose
 * target does not parse are ignored: they are Backstage's output, not input
 * this entity is judged by. */
static int s_collect_relations(s_entity_t *e, const json_t *doc)
{
    size_t i;
    json_t *rel;
    json_array_foreach(json_object_get(doc, "relations"), i, rel)
    {
        const char *type = json_string_value(json_object_get(rel, "type"));
        bool deps = type && strcmp(type, "dependsOn") == 0;
        bool dep_of = type && strcmp(type, "dependencyOf") == 0;
        if (!deps && !dep_of)
            continue;
        char canon[ENTITY_REF_FORMAT_MAX];
        const char *target = json_string_value(json_object_get(rel, "targetRef"));
        int rc = GG_EINVAL;
        if (target) {
            rc = entity_ref_normalize(target, NULL, NULL, canon, sizeof canon, NULL, 0);
        } else {
            /* older Backstage: target: {kind, namespace, name} */
            json_t *t = json_object_get(rel, "target");
            entity_ref_t ref;
            const char *k = json_string_value(json_object_get(t, "kind"));
            const char *ns = json_string_value(json_object_get(t, "namespace"));
            const char *n = json_string_value(json_object_get(t, "name"));
            if (k && ns && n && strlen(k) <= ENTITY_REF_PART_MAX &&
                strlen(ns) <= ENTITY_REF_PART_MAX && strlen(n) <= ENTITY_REF_PART_MAX && *k &&
                *ns && *n) {
                snprintf(ref.kind, sizeof ref.kind, "%s", k);
                snprintf(ref.namespace, sizeof ref.namespace, "%s", ns);
                snprintf(ref.name, sizeof ref.name, "%s", n);
                rc = entity_ref_format(&ref, canon, sizeof canon);
            }
        }
        if (rc != 0)
            continue;
        rc = deps ? s_strv_add_unique(&e->deps, &e->ndeps, canon)
                  : s_strv_add_unique(&e->dep_of, &e->ndep_of, canon);
        if (rc != 0)
            return rc;
    }
    return GG_OK;
}

/* ------------------------------------------------------------------------ */
/* Adding entities                                                           */
/* ------------------------------------------------------------------------ */

static char *s_dirname_dup(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t) (slash - path));
}

/* Fills the entity's view from its validated json. Returns 0 or GG_ENOMEM. */
static int s_entity_fill(s_entity_t *e, const s_source_t *src, const char *where)
{
    json_t *doc = e->json;
    json_t *meta = json_object_get(doc, "metadata");
    json_t *spec = json_object_get(doc, "spec");
    const char *ns = json_string_value(json_object_get(meta, "namespace"));
    entity_ref_t ref;
    char canon[ENTITY_REF_FORMAT_MAX];

    e->kind = strdup(json_string_value(json_object_get(doc, "kind")));
    e->ns = strdup(ns ? ns : "default");
    e->name = strdup(json_string_value(json_object_get(meta, "name")));
    e->where = strdup(where);
    if (!e->kind || !e->ns || !e->name || !e->where)
        return GG_ENOMEM;
    /* Validated: every part is short and well-formed, so these cannot fail. */
    snprintf(ref.kind, sizeof ref.kind, "%s", e->kind);
    snprintf(ref.namespace, sizeof ref.namespace, "%s", e->ns);
    snprintf(ref.name, sizeof ref.name, "%s", e->name);
    if (entity_ref_format(&ref, canon, sizeof canon) != 0)
        return GG_EINTERNAL;
    e->ref = strdup(canon);
    if (!e->ref)
        return GG_ENOMEM;

    const char *s = json_string_value(json_object_get(spec, "type"));
    if (s && !(e->type = strdup(s)))
        return GG_ENOMEM;
    s = json_string_value(json_object_get(spec, "lifecycle"));
    if (s && !(e->lifecycle = strdup(s)))
        return GG_ENOMEM;
    s = json_string_value(json_object_get(spec, "owner"));
    if (s && entity_ref_normalize(s, "Group", e->ns, canon, sizeof canon, NULL, 0) == 0 &&
        !(e->owner = strdup(canon)))
        return GG_ENOMEM;
    s = json_string_value(json_object_get(spec, "system"));
    if (s && entity_ref_normalize(s, "System", e->ns, canon, sizeof canon, NULL, 0) == 0 &&
        !(e->system = strdup(canon)))
        return GG_ENOMEM;
    s = json_string_value(
        json_object_get(json_object_get(meta, "annotations"), "backstage.io/source-location"));
    if (s) {
        if (strncmp(s, "url:", 4) == 0 || strncmp(s, "dir:", 4) == 0)
            s += 4;
        if (!(e->source = strdup(s)))
            return GG_ENOMEM;
    }
    if (src->file) {
        e->file = strdup(src->file);
        e->path = s_dirname_dup(src->file);
        if (!e->file || !e->path)
            return GG_ENOMEM;
    }
    json_t *tags = json_object_get(meta, "tags");
    if (json_array_size(tags) > 0) {
        e->tags = calloc(json_array_size(tags), sizeof *e->tags);
        if (!e->tags)
            return GG_ENOMEM;
        size_t i;
        json_t *t;
        json_array_foreach(tags, i, t)
        {
            if (!(e->tags[e->ntags] = strdup(json_string_value(t))))
                return GG_ENOMEM;
            e->ntags++;
        }
    }

    catalog_entity_t *p = &e->pub;
    p->ref = e->ref;
    p->kind = e->kind;
    p->namespace = e->ns;
    p->name = e->name;
    p->type = e->type;
    p->lifecycle = e->lifecycle;
    p->owner = e->owner;
    p->system = e->system;
    p->source = e->source;
    p->file = e->file;
    p->path = e->path;
    p->where = e->where;
    p->tags = (const char *const *) e->tags;
    p->tag_count = e->ntags;
    p->depends_on = (const char *const *) e->deps;
    p->depends_on_count = e->ndeps;
    p->json = e->json;
    return GG_OK;
}

/* Validates and stores one entity document. `doc` is borrowed (a reference is
 * taken when stored). `item` >= 0 names its position in a JSON array. Returns
 * 0 (stored, duplicate or invalid: the last two are warnings), GG_ETOOBIG when
 * the entity limit is reached, or GG_ENOMEM. When stored and a Location, its
 * index is pushed onto `locations` for the caller to follow. */
static int s_add_entity(catalog_t *cat, const s_source_t *src, json_t *doc, int line, long item,
                        s_vec_t *locations)
{
    char where[PATH_MAX + 64], msg[S_MSG_MAX], prefix[48] = "";
    int rc = GG_OK, err = GG_OK;
    s_where_line(where, sizeof where, src->where, line);
    if (item >= 0)
        snprintf(prefix, sizeof prefix, "items[%ld]: ", item);

    if (!json_is_object(doc)) {
        s_warn(cat, where, "%sentity must be a mapping, found %s", prefix, s_type_name(doc));
        return GG_OK;
    }
    if (s_too_deep(doc, CATALOG_MAX_DEPTH)) {
        s_warn(cat, where, "%sentity is nested deeper than %d levels", prefix, CATALOG_MAX_DEPTH);
        return GG_OK;
    }
    s_entity_t *e = calloc(1, sizeof *e);
    if (!e)
        return GG_ENOMEM;
    e->json = json_incref(doc);
    if (!s_validate(doc, e, msg, sizeof msg, &err)) {
        if (err != GG_OK) {
            rc = err;
            goto out;
        }
        const char *name =
            json_string_value(json_object_get(json_object_get(doc, "metadata"), "name"));
        const char *kind = json_string_value(json_object_get(doc, "kind"));
        if (name && kind)
            s_warn(cat, where, "%s%.63s \"%.100s\" skipped: %s", prefix, kind, name, msg);
        else
            s_warn(cat, where, "%sentity skipped: %s", prefix, msg);
        goto out;
    }
    rc = s_collect_relations(e, doc);
    if (rc == 0)
        rc = s_entity_fill(e, src, where);
    if (rc != 0)
        goto out;

    s_slot_t *seen = s_map_get(&cat->by_ref, e->ref);
    if (seen) {
        const s_entity_t *first = cat->entities[seen->value];
        if (!json_equal(first->json, doc))
            s_warn(cat, where, "%sduplicate entity ref %s in %s, first seen in %s", prefix, e->ref,
                   where, first->where);
        goto out;
    }
    if (cat->count >= cat->max_entities) {
        s_warn(cat, where, "entity limit (%zu) reached: the rest of the catalog is not read",
               cat->max_entities);
        rc = GG_ETOOBIG;
        goto out;
    }
    if (cat->count == cat->cap) {
        size_t ncap = cat->cap ? cat->cap * 2 : 256;
        s_entity_t **n = realloc(cat->entities, ncap * sizeof *n);
        if (!n) {
            rc = GG_ENOMEM;
            goto out;
        }
        cat->entities = n;
        cat->cap = ncap;
    }
    rc = s_map_put(&cat->by_ref, e->ref, cat->count);
    if (rc != 0)
        goto out;
    if (strcmp(e->kind, "Location") == 0 && locations &&
        s_vec_push(locations, (void *) (uintptr_t) cat->count) != 0) {
        /* the map entry points at a slot we are about to fill: keep going */
        gg_warn("catalog: out of memory following Location %s", e->ref);
    }
    cat->entities[cat->count++] = e;
    cat->index_valid = false;
    e = NULL;
out:
    s_entity_free(e);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Location entities                                                         */
/* ------------------------------------------------------------------------ */

static bool s_has_glob(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

static int s_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Lists the entries of a directory (without "." and ".."), sorted. Hidden
 * entries are skipped unless keep_hidden. Returns 0 or GG_EIO/GG_ENOMEM. */
static int s_list_dir(const char *path, bool keep_hidden, s_vec_t *names)
{
    DIR *d = opendir(path);
    if (!d)
        return GG_EIO;
    int rc = GG_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (de->d_name[0] == '.' && !keep_hidden)
            continue;
        if (names->count >= CATALOG_MAX_FILES) {
            rc = GG_ETOOBIG;
            break;
        }
        char *n = strdup(de->d_name);
        if (!n || s_vec_push(names, n) != 0) {
            free(n);
            rc = GG_ENOMEM;
            break;
        }
    }
    closedir(d);
    if (names->count > 1)
        qsort(names->items, names->count, sizeof(void *), s_cmp_str);
    return rc;
}

static char *s_join(const char *dir, const char *name)
{
    size_t dl = strlen(dir);
    bool slash = dl > 0 && dir[dl - 1] == '/';
    size_t n = dl + (slash ? 0 : 1) + strlen(name) + 1;
    if (n > PATH_MAX)
        return NULL;
    char *out = malloc(n);
    if (out && snprintf(out, n, "%s%s%s", dir, slash ? "" : "/", name) >= (int) n)
        out[n - 1] = '\0'; /* cannot happen: n was computed from the parts */
    return out;
}

/* Glob walk: segment i of the pattern is matched below `dir`. `**` matches
 * any number of folders (hidden and symlinked ones excluded), like the `glob`
 * package the Backstage file reader uses. Matches are collected, not loaded. */
static void s_glob_walk(const char *dir, char **segs, size_t nseg, size_t i, int depth,
                        s_vec_t *matches)
{
    if (depth > CATALOG_MAX_DIR_DEPTH || matches->count >= CATALOG_MAX_FILES)
        return;
    if (i == nseg) {
        char *m = strdup(dir);
        if (m && s_vec_push(matches, m) != 0)
            free(m);
        return;
    }
    const char *seg = segs[i];
    struct stat st;
    if (strcmp(seg, "**") == 0) {
        s_glob_walk(dir, segs, nseg, i + 1, depth, matches);
        s_vec_t names = {0};
        s_list_dir(dir, false, &names);
        for (size_t k = 0; k < names.count; k++) {
            char *child = s_join(dir, names.items[k]);
            /* like node-glob, `**` does not follow symlinked folders (loops) */
            if (child && lstat(child, &st) == 0 && S_ISDIR(st.st_mode))
                s_glob_walk(child, segs, nseg, i, depth + 1, matches);
            free(child);
        }
        s_vec_free_all(&names);
    } else if (s_has_glob(seg)) {
        s_vec_t names = {0};
        s_list_dir(dir, seg[0] == '.', &names);
        for (size_t k = 0; k < names.count; k++) {
            if (fnmatch(seg, names.items[k], FNM_PERIOD) != 0)
                continue;
            char *child = s_join(dir, names.items[k]);
            if (child && (i + 1 == nseg || (stat(child, &st) == 0 && S_ISDIR(st.st_mode))))
                s_glob_walk(child, segs, nseg, i + 1, depth + 1, matches);
            free(child);
        }
        s_vec_free_all(&names);
    } else {
        char *child = s_join(dir, seg);
        if (child && stat(child, &st) == 0)
            s_glob_walk(child, segs, nseg, i + 1, depth + 1, matches);
        free(child);
    }
}

/* Loads every file matching an absolute glob pattern. */
static void s_load_glob(catalog_t *cat, const char *pattern, int loc_depth, const char *where)
{
    char *copy = strdup(pattern);
    s_vec_t segs = {0}, matches = {0};
    if (!copy)
        return;
    for (char *save = NULL, *tok = strtok_r(copy, "/", &save); tok;
         tok = strtok_r(NULL, "/", &save)) {
        if (s_vec_push(&segs, tok) != 0)
            goto out;
    }
    s_glob_walk("/", (char **) segs.items, segs.count, 0, 0, &matches);
    if (matches.count == 0)
        s_warn(cat, where, "no files match Location target %s", pattern);
    if (matches.count > 1)
        qsort(matches.items, matches.count, sizeof(void *), s_cmp_str);
    for (size_t i = 0; i < matches.count; i++)
        if (s_load_any(cat, matches.items[i], loc_depth, 0, where) == GG_ETOOBIG)
            break;
out:
    free(segs.items);
    s_vec_free_all(&matches);
    free(copy);
}

static bool s_is_http(const char *s)
{
    return strncasecmp(s, "http://", 7) == 0 || strncasecmp(s, "https://", 8) == 0;
}

/* Follows the targets of the Location entity at index `li`, read from `src`. */
static int s_follow_location(catalog_t *cat, const s_source_t *src, size_t li)
{
    const s_entity_t *loc = cat->entities[li];
    json_t *spec = json_object_get(loc->json, "spec");
    const char *type = json_string_value(json_object_get(spec, "type"));
    const char *where = loc->where;
    int rc = GG_OK;

    if (type && strcmp(type, "file") != 0 && strcmp(type, "url") != 0) {
        s_warn(cat, where, "Location %s: type \"%.100s\" is not supported here; skipped", loc->ref,
               type);
        return GG_OK;
    }
    if (src->depth + 1 > CATALOG_MAX_LOCATION_DEPTH) {
        s_warn(cat, where, "Location %s: nested deeper than %d Locations; not followed", loc->ref,
               CATALOG_MAX_LOCATION_DEPTH);
        return GG_OK;
    }
    s_vec_t targets = {0};
    json_t *one = json_object_get(spec, "target");
    if (json_is_string(one))
        s_vec_push(&targets, (void *) json_string_value(one));
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(spec, "targets"), i, t) if (json_is_string(t))
        s_vec_push(&targets, (void *) json_string_value(t));

    for (i = 0; i < targets.count && rc != GG_ETOOBIG; i++) {
        const char *target = targets.items[i];
        if (strncmp(target, "url:", 4) == 0)
            target += 4;
        if (strncmp(target, "file:", 5) == 0) {
            target += 5;
            if (strncmp(target, "//", 2) == 0)
                target += 2;
        }
        if (s_is_http(target)) {
            s_warn(cat, where, "Location %s: URL target %.200s is not read from files; skipped",
                   loc->ref, target);
            continue;
        }
        if (!*target) {
            s_warn(cat, where, "Location %s: empty target", loc->ref);
            continue;
        }
        char *path = NULL;
        if (target[0] == '/') {
            path = strdup(target);
        } else if (src->dir) {
            path = s_join(src->dir, target);
        } else {
            s_warn(cat, where,
                   "Location %s: relative target %.200s has no folder to resolve "
                   "against; skipped",
                   loc->ref, target);
            continue;
        }
        if (!path) {
            s_warn(cat, where, "Location %s: target path too long: %.200s", loc->ref, target);
            continue;
        }
        if (s_has_glob(path))
            s_load_glob(cat, path, src->depth + 1, where);
        else
            rc = s_load_any(cat, path, src->depth + 1, 0, where);
        free(path);
    }
    free(targets.items);
    return rc == GG_ETOOBIG ? rc : GG_OK;
}

static int s_follow_locations(catalog_t *cat, const s_source_t *src, s_vec_t *locations)
{
    int rc = GG_OK;
    for (size_t i = 0; i < locations->count && rc != GG_ETOOBIG; i++)
        rc = s_follow_location(cat, src, (size_t) (uintptr_t) locations->items[i]);
    free(locations->items);
    locations->items = NULL;
    locations->count = locations->cap = 0;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* YAML -> JSON (YAML 1.2 core schema)                                        */
/* ------------------------------------------------------------------------ */

typedef struct {
    json_t *container;
    char *key;    /* pending key of a mapping, owned */
    char *anchor; /* this container's anchor, owned */
} s_frame_t;

typedef struct {
    s_frame_t stack[CATALOG_MAX_DEPTH];
    size_t depth;
    json_t *anchors; /* anchor name -> completed value */
    json_t *root;
    size_t nodes;
    int line; /* line of the document's root node */
    bool failed;
    int fail_line;
    char err[S_MSG_MAX / 2];
} s_ydoc_t;

static void s_ydoc_reset(s_ydoc_t *d)
{
    for (size_t i = 0; i < d->depth; i++) {
        json_decref(d->stack[i].container);
        free(d->stack[i].key);
        free(d->stack[i].anchor);
    }
    d->depth = 0;
    json_object_clear(d->anchors);
    json_decref(d->root);
    d->root = NULL;
    d->nodes = 0;
    d->line = 0;
    d->failed = false;
    d->fail_line = 0;
    d->err[0] = '\0';
}

static void s_ydoc_fail(s_ydoc_t *d, const yaml_mark_t *mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void s_ydoc_fail(s_ydoc_t *d, const yaml_mark_t *mark, const char *fmt, ...)
{
    if (d->failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->err, sizeof d->err, fmt, ap);
    va_end(ap);
    d->failed = true;
    d->fail_line = (int) mark->line + 1;
}

/* Counts values in v, stopping once over `limit`. */
static size_t s_count_nodes(const json_t *v, size_t limit)
{
    size_t n = 1, i;
    const char *k;
    json_t *c;
    if (json_is_object(v)) {
        json_object_foreach((json_t *) v, k, c)
        {
            n += s_count_nodes(c, limit);
            if (n > limit)
                return n;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, c)
        {
            n += s_count_nodes(c, limit);
            if (n > limit)
                return n;
        }
    }
    return n;
}

static bool s_match_digits(const char *s, size_t n, size_t *i, int base)
{
    size_t start = *i;
    while (*i < n) {
        char c = s[*i];
        bool ok = (c >= '0' && c <= '9' && (base > 8 || c <= '7')) ||
                  (base == 16 && ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')));
        if (!ok)
            break;
        (*i)++;
    }
    return *i > start;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static bool s_match_float(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    bool d1 = s_match_digits(s, n, &i, 10), d2 = false;
    if (i < n && s[i] == '.') {
        i++;
        d2 = s_match_digits(s, n, &i, 10);
    }
    if (!d1 && !d2)
        return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        if (!s_match_digits(s, n, &i, 10))
            return false;
    }
    return i == n;
}

static bool s_one_of(const char *s, const char *const *words)
{
    for (; *words; words++)
        if (strcmp(s, *words) == 0)
            return true;
    return false;
}

/* Resolves a plain scalar under the YAML 1.2 core schema. */
static json_t *s_resolve_plain(const char *s, size_t n)
{
    static const char *const nulls[] = {"~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    if (n == 0 || s_one_of(s, nulls))
        return json_null();
    if (s_one_of(s, trues))
        return json_true();
    if (s_one_of(s, falses))
        return json_false();
    size_t i = 0;
    if (n > 0 && (s[0] == '-' || s[0] == '+'))
        i++;
    if (s_match_digits(s, n, &i, 10) && i == n) {
        errno = 0;
        long long v = strtoll(s, NULL, 10);
        if (errno == 0)
            return json_integer(v);
        return json_real(strtod(s, NULL)); /* like a JavaScript Number */
    }
    int base = 0;
    if (n > 2 && s[0] == '0' && s[1] == 'o')
        base = 8;
    else if (n > 2 && s[0] == '0' && s[1] == 'x')
        base = 16;
    i = 2;
    if (base && s_match_digits(s, n, &i, base) && i == n) {
        errno = 0;
        long long v = strtoll(s + 2, NULL, base);
        if (errno == 0)
            return json_integer(v);
        return json_string(s);
    }
    if (s_match_float(s, n)) {
        double v = strtod(s, NULL);
        if (isfinite(v))
            return json_real(v);
    }
    /* .inf and .nan have no JSON form: they stay text, as does anything else */
    return json_stringn(s, n);
}

static json_t *s_scalar(s_ydoc_t *d, const yaml_event_t *ev)
{
    const char *s = (const char *) ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    const char *tag = (const char *) ev->data.scalar.tag;
    if (memchr(s, '\0', n)) {
        s_ydoc_fail(d, &ev->start_mark, "a string holds a NUL character");
        return NULL;
    }
    json_t *v;
    bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (tag && (strcmp(tag, YAML_NULL_TAG) == 0 || strcmp(tag, YAML_BOOL_TAG) == 0 ||
                strcmp(tag, YAML_INT_TAG) == 0 || strcmp(tag, YAML_FLOAT_TAG) == 0))
        v = s_resolve_plain(s, n);
    else if (tag || !plain)
        v = json_stringn(s, n); /* !!str, "!", custom tags, quoted and block scalars */
    else
        v = s_resolve_plain(s, n);
    if (!v)
        s_ydoc_fail(d, &ev->start_mark, "a string is not valid UTF-8");
    return v;
}

/* Attaches a completed value (stolen) to the current container or as root. */
static void s_ydoc_add(s_ydoc_t *d, json_t *v, const char *anchor, const yaml_mark_t *mark)
{
    if (!v)
        return;
    if (++d->nodes > CATALOG_MAX_NODES) {
        s_ydoc_fail(d, mark, "document has more than %d values", CATALOG_MAX_NODES);
        json_decref(v);
        return;
    }
    if (anchor && json_object_set(d->anchors, anchor, v) != 0) {
        s_ydoc_fail(d, mark, "out of memory");
        json_decref(v);
        return;
    }
    if (d->depth == 0) {
        json_decref(d->root);
        d->root = v;
        return;
    }
    s_frame_t *top = &d->stack[d->depth - 1];
    if (json_is_array(top->container)) {
        if (json_array_append_new(top->container, v) != 0)
            s_ydoc_fail(d, mark, "out of memory");
        return;
    }
    /* a mapping: the key was taken when its scalar arrived */
    if (json_object_get(top->container, top->key)) {
        s_ydoc_fail(d, mark, "duplicate key \"%.100s\" in a mapping", top->key);
        json_decref(v);
    } else if (json_object_set_new(top->container, top->key, v) != 0) {
        s_ydoc_fail(d, mark, "out of memory");
    }
    free(top->key);
    top->key = NULL;
}

static bool s_expecting_key(const s_ydoc_t *d)
{
    return d->depth > 0 && json_is_object(d->stack[d->depth - 1].container) &&
           !d->stack[d->depth - 1].key;
}

static char *s_anchor_dup(const yaml_char_t *anchor)
{
    return anchor ? strdup((const char *) anchor) : NULL;
}

/* Handles one parser event for the document being built. */
static void s_ydoc_event(s_ydoc_t *d, const yaml_event_t *ev)
{
    if (d->failed)
        return;
    if (d->depth == 0 && d->line == 0 &&
        (ev->type == YAML_SCALAR_EVENT || ev->type == YAML_SEQUENCE_START_EVENT ||
         ev->type == YAML_MAPPING_START_EVENT || ev->type == YAML_ALIAS_EVENT))
        d->line = (int) ev->start_mark.line + 1;

    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        if (s_expecting_key(d)) {
            const char *s = (const char *) ev->data.scalar.value;
            if (memchr(s, '\0', ev->data.scalar.length)) {
                s_ydoc_fail(d, &ev->start_mark, "a key holds a NUL character");
                return;
            }
            char *key = strndup(s, ev->data.scalar.length);
            if (!key) {
                s_ydoc_fail(d, &ev->start_mark, "out of memory");
                return;
            }
            d->stack[d->depth - 1].key = key;
            if (ev->data.scalar.anchor)
                json_object_set_new(d->anchors, (const char *) ev->data.scalar.anchor,
                                    json_string(key));
            return;
        }
        s_ydoc_add(d, s_scalar(d, ev), (const char *) ev->data.scalar.anchor, &ev->start_mark);
        return;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        if (s_expecting_key(d)) {
            s_ydoc_fail(d, &ev->start_mark, "a mapping key must be a scalar");
            return;
        }
        if (d->depth >= CATALOG_MAX_DEPTH) {
            s_ydoc_fail(d, &ev->start_mark, "nested deeper than %d levels", CATALOG_MAX_DEPTH);
            return;
        }
        bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
        const yaml_char_t *anchor =
            seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
        s_frame_t *f = &d->stack[d->depth];
        f->container = seq ? json_array() : json_object();
        f->key = NULL;
        f->anchor = s_anchor_dup(anchor);
        if (!f->container || (anchor && !f->anchor)) {
            json_decref(f->container);
            free(f->anchor);
            s_ydoc_fail(d, &ev->start_mark, "out of memory");
            return;
        }
        d->depth++;
        return;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT: {
        if (d->depth == 0)
            return; /* cannot happen with a well-formed event stream */
        s_frame_t f = d->stack[--d->depth];
        free(f.key);
        s_ydoc_add(d, f.container, f.anchor, &ev->start_mark);
        free(f.anchor);
        return;
    }
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *) ev->data.alias.anchor;
        json_t *target = json_object_get(d->anchors, name);
        if (!target) {
            s_ydoc_fail(d, &ev->start_mark, "unknown alias *%.100s", name);
            return;
        }
        if (s_expecting_key(d)) {
            if (!json_is_string(target)) {
                s_ydoc_fail(d, &ev->start_mark, "a mapping key must be a scalar");
                return;
            }
            d->stack[d->depth - 1].key = strdup(json_string_value(target));
            if (!d->stack[d->depth - 1].key)
                s_ydoc_fail(d, &ev->start_mark, "out of memory");
            return;
        }
        size_t n = s_count_nodes(target, CATALOG_MAX_NODES);
        if (d->nodes + n > CATALOG_MAX_NODES) {
            s_ydoc_fail(d, &ev->start_mark,
                        "aliases expand to more than %d values (refused as a resource "
                        "exhaustion attack)",
                        CATALOG_MAX_NODES);
            return;
        }
        d->nodes += n - 1; /* s_ydoc_add counts one */
        json_t *copy = json_deep_copy(target);
        if (!copy) {
            s_ydoc_fail(d, &ev->start_mark, "out of memory");
            return;
        }
        s_ydoc_add(d, copy, NULL, &ev->start_mark);
        return;
    }
    default: return;
    }
}

/* Parses multi-document YAML and adds every entity. Returns 0, GG_ETOOBIG or
 * GG_ENOMEM; syntax and document errors are warnings. */
static int s_load_yaml(catalog_t *cat, const s_source_t *src, const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    s_ydoc_t *d = calloc(1, sizeof *d);
    s_vec_t locations = {0};
    char where[PATH_MAX + 64];
    int rc = GG_OK;
    size_t ndocs = 0;

    if (!d)
        return GG_ENOMEM;
    d->anchors = json_object();
    if (!d->anchors || !yaml_parser_initialize(&parser)) {
        json_decref(d->anchors);
        free(d);
        return GG_ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *) text, len);
    for (bool done = false; !done && rc == GG_OK;) {
        if (!yaml_parser_parse(&parser, &ev)) {
            s_warn(
                cat,
                s_where_line(where, sizeof where, src->where, (int) parser.problem_mark.line + 1),
                "YAML syntax error: %s%s%s%s", parser.problem ? parser.problem : "unknown",
                parser.context ? " " : "", parser.context ? parser.context : "",
                ndocs > 1 ? " (documents before it were read)" : "");
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = true; break;
        case YAML_DOCUMENT_START_EVENT:
            s_ydoc_reset(d);
            if (++ndocs > CATALOG_MAX_DOCUMENTS) {
                s_warn(cat, src->where, "more than %d YAML documents: the rest is not read",
                       CATALOG_MAX_DOCUMENTS);
                rc = GG_ETOOBIG;
            }
            break;
        case YAML_DOCUMENT_END_EVENT:
            s_where_line(where, sizeof where, src->where, d->failed ? d->fail_line : d->line);
            if (d->failed)
                s_warn(cat, where, "YAML document skipped: %s", d->err);
            else if (d->root && !json_is_null(d->root) && !json_is_object(d->root))
                s_warn(cat, where,
                       "YAML document skipped: expected a mapping at its root, "
                       "found %s",
                       s_type_name(d->root));
            else if (json_is_object(d->root))
                rc = s_add_entity(cat, src, d->root, d->line, -1, &locations);
            s_ydoc_reset(d);
            break;
        default: s_ydoc_event(d, &ev); break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    s_ydoc_reset(d);
    json_decref(d->anchors);
    free(d);
    if (rc == GG_OK)
        rc = s_follow_locations(cat, src, &locations);
    free(locations.items);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* JSON sources                                                              */
/* ------------------------------------------------------------------------ */

/* Adds the entities of a parsed JSON value: by-query response, array or one
 * entity. Returns 0, GG_EMALFORMED (warned), GG_ETOOBIG or GG_ENOMEM. */
static int s_load_json_value(catalog_t *cat, const s_source_t *src, json_t *root)
{
    s_vec_t locations = {0};
    int rc = GG_OK;
    json_t *items = NULL;
    /* Locations in a by-query response were already expanded by Backstage
     * (their targets are in the same response): they are kept, not followed. */
    bool follow = src->dir != NULL;
    if (json_is_object(root) && !json_object_get(root, "kind") && json_object_get(root, "items")) {
        follow = false;
        items = json_object_get(root, "items");
        if (!json_is_array(items)) {
            s_warn(cat, src->where, "\"items\" must be an array of entities, found %s",
                   s_type_name(items));
            return GG_EMALFORMED;
        }
    } else if (json_is_array(root)) {
        items = root;
    } else if (!json_is_object(root)) {
        s_warn(cat, src->where,
               "expected an entity, an array of entities or {\"items\": "
               "[...]}, found %s",
               s_type_name(root));
        return GG_EMALFORMED;
    }
    if (items) {
        size_t i;
        json_t *item;
        json_array_foreach(items, i, item)
        {
            rc = s_add_entity(cat, src, item, 0, (long) i, follow ? &locations : NULL);
            if (rc != GG_OK)
                break;
        }
    } else {
        rc = s_add_entity(cat, src, root, 0, -1, follow ? &locations : NULL);
    }
    if (rc == GG_OK)
        rc = s_follow_locations(cat, src, &locations);
    free(locations.items);
    return rc;
}

static int s_load_json(catalog_t *cat, const s_source_t *src, const char *text, size_t len)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        char where[PATH_MAX + 64];
        s_warn(cat, s_where_line(where, sizeof where, src->where, jerr.line),
               "JSON syntax error: %s", jerr.text);
        return GG_EMALFORMED;
    }
    int rc = s_load_json_value(cat, src, root);
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Files and directories                                                     */
/* ------------------------------------------------------------------------ */

/* Reads a whole regular file of at most CATALOG_MAX_FILE_SIZE bytes. */
static int s_read_file(const char *path, char **out, size_t *len, char *why, size_t whysize)
{
    int rc = GG_OK;
    char *buf = NULL;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block */
    if (fd < 0) {
        snprintf(why, whysize, "cannot open: %s", strerror(errno));
        return errno == ENOENT ? GG_ENOTFOUND : GG_EIO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, whysize, "not a regular file");
        rc = GG_EIO;
        goto out;
    }
    if ((uint64_t) st.st_size > CATALOG_MAX_FILE_SIZE) {
        snprintf(why, whysize, "file is larger than %u bytes", CATALOG_MAX_FILE_SIZE);
        rc = GG_ETOOBIG;
        goto out;
    }
    size_t cap = (size_t) st.st_size + 1, n = 0;
    buf = malloc(cap);
    if (!buf) {
        rc = GG_ENOMEM;
        snprintf(why, whysize, "out of memory");
        goto out;
    }
    for (;;) {
        if (n + 1 >= cap) {
            /* the file grew while being read: stop at the bound */
            if (cap > CATALOG_MAX_FILE_SIZE) {
                snprintf(why, whysize, "file is larger than %u bytes", CATALOG_MAX_FILE_SIZE);
                rc = GG_ETOOBIG;
                goto out;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = GG_ENOMEM;
                snprintf(why, whysize, "out of memory");
                goto out;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, whysize, "read failed: %s", strerror(errno));
            rc = GG_EIO;
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t) r;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

static bool s_has_ext(const char *name, const char *ext)
{
    size_t n = strlen(name), e = strlen(ext);
    return n > e && strcasecmp(name + n - e, ext) == 0;
}

static bool s_is_catalog_file(const char *name)
{
    return s_has_ext(name, ".yaml") || s_has_ext(name, ".yml") || s_has_ext(name, ".json");
}

/* Reads one file (once per realpath). */
static int s_load_file(catalog_t *cat, const char *path, int loc_depth, const char *warn_where)
{
    char real[PATH_MAX], why[256];
    char *text = NULL, *dir = NULL;
    size_t len = 0;
    if (!realpath(path, real)) {
        int e = errno;
        s_warn(cat, warn_where ? warn_where : path, "cannot read %s: %s", path, strerror(e));
        return e == ENOENT ? GG_ENOTFOUND : GG_EIO;
    }
    if (s_map_get(&cat->files, real))
        return GG_OK; /* already read: an entity reached twice counts once */
    if (cat->files.count >= CATALOG_MAX_FILES) {
        s_warn(cat, real, "more than %d files: the rest is not read", CATALOG_MAX_FILES);
        return GG_ETOOBIG;
    }
    int rc = s_map_put(&cat->files, real, 0);
    if (rc != 0)
        return rc;
    rc = s_read_file(real, &text, &len, why, sizeof why);
    if (rc != 0) {
        s_warn(cat, real, "cannot read file: %s", why);
        return rc == GG_ENOMEM ? rc : GG_EIO;
    }
    dir = s_dirname_dup(real);
    if (!dir) {
        free(text);
        return GG_ENOMEM;
    }
    s_source_t src = {.where = real, .file = real, .dir = dir, .depth = loc_depth};
    if (s_has_ext(real, ".json")) {
        rc = s_load_json(cat, &src, text, len);
        if (rc == GG_EMALFORMED)
            rc = GG_OK; /* warned; the file was read */
    } else {
        rc = s_load_yaml(cat, &src, text, len);
    }
    free(dir);
    free(text);
    return rc;
}

static int s_load_dir(catalog_t *cat, const char *path, int loc_depth, int dir_depth,
                      const char *warn_where)
{
    char real[PATH_MAX];
    s_vec_t names = {0};
    int rc = GG_OK;
    if (dir_depth > CATALOG_MAX_DIR_DEPTH) {
        s_warn(cat, path, "directories nested deeper than %d levels are not read",
               CATALOG_MAX_DIR_DEPTH);
        return GG_OK;
    }
    if (!realpath(path, real)) {
        s_warn(cat, warn_where ? warn_where : path, "cannot read %s: %s", path, strerror(errno));
        return GG_EIO;
    }
    if (s_map_get(&cat->dirs, real))
        return GG_OK;
    rc = s_map_put(&cat->dirs, real, 0);
    if (rc != 0)
        return rc;
    rc = s_list_dir(real, false, &names);
    if (rc == GG_EIO)
        s_warn(cat, real, "cannot list directory: %s", strerror(errno));
    if (rc != GG_OK && rc != GG_ETOOBIG)
        goto out;
    rc = GG_OK;
    for (size_t i = 0; i < names.count && rc != GG_ETOOBIG && rc != GG_ENOMEM; i++) {
        char *child = s_join(real, names.items[i]);
        struct stat st;
        if (!child) {
            s_warn(cat, real, "path too long: %s", (char *) names.items[i]);
            continue;
        }
        if (stat(child, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                rc = s_load_dir(cat, child, loc_depth, dir_depth + 1, NULL);
            else if (S_ISREG(st.st_mode) && s_is_catalog_file(names.items[i]))
                rc = s_load_file(cat, child, loc_depth, NULL);
        }
        if (rc != GG_ETOOBIG && rc != GG_ENOMEM)
            rc = GG_OK;
        free(child);
    }
out:
    s_vec_free_all(&names);
    return rc;
}

static int s_load_any(catalog_t *cat, const char *path, int loc_depth, int dir_depth,
                      const char *warn_where)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        s_warn(cat, warn_where ? warn_where : path, "cannot read %s: %s", path, strerror(e));
        return e == ENOENT ? GG_ENOTFOUND : GG_EIO;
    }
    if (S_ISDIR(st.st_mode))
        return s_load_dir(cat, path, loc_depth, dir_depth, warn_where);
    return s_load_file(cat, path, loc_depth, warn_where);
}

int catalog_load_path(catalog_t *cat, const char *path)
{
    if (!cat || !path || !*path)
        return GG_EINVAL;
    if (s_is_http(path))
        return catalog_load_url(cat, path);
    if (strncmp(path, "file:", 5) == 0)
        path += 5;
    return s_load_any(cat, path, 0, 0, NULL);
}

/* Text loads: `where` acts as the file name. */
static int s_load_text(catalog_t *cat, const char *text, size_t len, const char *where, bool json)
{
    if (!cat || (!text && len > 0))
        return GG_EINVAL;
    if (len > CATALOG_MAX_FILE_SIZE) {
        s_warn(cat, where, "text is larger than %u bytes", CATALOG_MAX_FILE_SIZE);
        return GG_ETOOBIG;
    }
    const char *w = where && *where ? where : "(text)";
    char *dir = s_dirname_dup(w);
    if (!dir)
        return GG_ENOMEM;
    s_source_t src = {.where = w, .file = NULL, .dir = dir, .depth = 0};
    int rc = json ? s_load_json(cat, &src, text ? text : "", len)
                  : s_load_yaml(cat, &src, text ? text : "", len);
    free(dir);
    return rc;
}

int catalog_load_json_text(catalog_t *cat, const char *text, size_t len, const char *where)
{
    return s_load_text(cat, text, len, where, true);
}

int catalog_load_yaml_text(catalog_t *cat, const char *text, size_t len, const char *where)
{
    return s_load_text(cat, text, len, where, false);
}

/* ------------------------------------------------------------------------ */
/* Backstage over HTTP                                                       */
/* ------------------------------------------------------------------------ */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    bool too_big;
} s_body_t;

static size_t s_curl_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    s_body_t *b = ud;
    size_t n = size * nmemb;
    if (b->len + n > CATALOG_MAX_FILE_SIZE) {
        b->too_big = true;
        return 0; /* aborts the transfer */
    }
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 65536;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        char *nd = realloc(b->data, ncap);
        if (!nd)
            return 0;
        b->data = nd;
        b->cap = ncap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

int catalog_load_url(catalog_t *cat, const char *base_url)
{
    static const char suffix[] = "/api/catalog/entities/by-query";
    char endpoint[2048], url[4096], auth[4096] = "";
    char *cursor = NULL;
    struct curl_slist *headers = NULL;
    s_body_t body = {0};
    int rc = GG_OK;

    if (!cat || !base_url || !s_is_http(base_url))
        return GG_EINVAL;
    size_t blen = strlen(base_url);
    while (blen > 0 && base_url[blen - 1] == '/')
        blen--;
    size_t slen = sizeof suffix - 1;
    bool has_suffix = blen >= slen && strncmp(base_url + blen - slen, suffix, slen) == 0;
    if (blen + slen + 1 > sizeof endpoint) {
        s_warn(cat, "catalog", "Backstage URL is too long");
        return GG_EINVAL;
    }
    snprintf(endpoint, sizeof endpoint, "%.*s%s", (int) blen, base_url, has_suffix ? "" : suffix);

    CURL *curl = curl_easy_init();
    if (!curl)
        return GG_ENOMEM;
    const char *token = getenv("GAGGLE_CATALOG_TOKEN");
    if (token && *token) {
        bool bad = false;
        for (const char *c = token; *c; c++)
            bad = bad || (unsigned char) *c < 0x20 || *c == 0x7f;
        if (bad || strlen(token) + 32 > sizeof auth) {
            s_warn(cat, endpoint, "GAGGLE_CATALOG_TOKEN is too long or holds control characters");
            rc = GG_EINVAL;
            goto out;
        }
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        headers = curl_slist_append(headers, auth);
        if (!headers) {
            rc = GG_ENOMEM;
            goto out;
        }
    }
    struct curl_slist *h2 = curl_slist_append(headers, "Accept: application/json");
    if (!h2) {
        rc = GG_ENOMEM;
        goto out;
    }
    headers = h2;
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_curl_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "gaggle/" GAGGLE_VERSION);

    for (size_t page = 0;; page++) {
        if (page >= CATALOG_MAX_PAGES) {
            s_warn(cat, endpoint, "more than %d pages: the rest is not read", CATALOG_MAX_PAGES);
            rc = GG_ETOOBIG;
            goto out;
        }
        if (cursor) {
            char *esc = curl_easy_escape(curl, cursor, 0);
            if (!esc) {
                rc = GG_ENOMEM;
                goto out;
            }
            int n = snprintf(url, sizeof url, "%s?limit=%d&cursor=%s", endpoint, S_URL_LIMIT, esc);
            curl_free(esc);
            if (n < 0 || (size_t) n >= sizeof url) {
                s_warn(cat, endpoint, "pagination cursor is too long");
                rc = GG_EMALFORMED;
                goto out;
            }
        } else {
            snprintf(url, sizeof url, "%s?limit=%d", endpoint, S_URL_LIMIT);
        }
        body.len = 0;
        body.too_big = false;
        curl_easy_setopt(curl, CURLOPT_URL, url);
        CURLcode cc = curl_easy_perform(curl);
        if (body.too_big) {
            s_warn(cat, url, "response is larger than %u bytes", CATALOG_MAX_FILE_SIZE);
            rc = GG_ETOOBIG;
            goto out;
        }
        if (cc != CURLE_OK) {
            s_warn(cat, url, "request failed: %s", curl_easy_strerror(cc));
            rc = GG_ECONN;
            goto out;
        }
        long status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (status != 200) {
            s_warn(cat, url, "Backstage answered HTTP %ld%s", status,
                   status == 401 || status == 403 ? " (set GAGGLE_CATALOG_TOKEN?)" : "");
            rc = GG_ECONN;
            goto out;
        }
        json_error_t jerr;
        json_t *root =
            json_loadb(body.data ? body.data : "", body.len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root || !json_is_object(root) || !json_is_array(json_object_get(root, "items"))) {
            s_warn(cat, url, "not a by-query response ({\"items\": [...]})%s%s", root ? "" : ": ",
                   root ? "" : jerr.text);
            json_decref(root);
            rc = GG_EMALFORMED;
            goto out;
        }
        s_source_t src = {.where = url, .file = NULL, .dir = NULL, .depth = 0};
        rc = s_load_json_value(cat, &src, root);
        const char *next =
            json_string_value(json_object_get(json_object_get(root, "pageInfo"), "nextCursor"));
        bool again = rc == GG_OK && next && *next;
        if (again && cursor && strcmp(cursor, next) == 0) {
            s_warn(cat, url, "Backstage returned the same cursor twice; stopping");
            again = false;
            rc = GG_EMALFORMED;
        }
        char *ncur = again ? strdup(next) : NULL;
        json_decref(root);
        if (again && !ncur)
            rc = GG_ENOMEM;
        free(cursor);
        cursor = ncur;
        if (!cursor)
            break;
    }
out:
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    memset(auth, 0, sizeof auth);
    free(cursor);
    free(body.data);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Queries                                                                   */
/* ------------------------------------------------------------------------ */

const catalog_entity_t *catalog_find(const catalog_t *cat, const char *ref,
                                     const char *default_kind, const char *default_namespace)
{
    char canon[ENTITY_REF_FORMAT_MAX];
    if (!cat || entity_ref_normalize(ref, default_kind, default_namespace, canon, sizeof canon,
                                     NULL, 0) != 0)
        return NULL;
    s_slot_t *slot = s_map_get(&cat->by_ref, canon);
    return slot ? &cat->entities[slot->value]->pub : NULL;
}

/* Records "consumer depends on target" in the reverse index. */
static int s_index_add(catalog_t *cat, const char *target, size_t consumer)
{
    s_slot_t *slot = s_map_get(&cat->consumers, target);
    size_t li;
    if (slot) {
        li = slot->value;
    } else {
        if (cat->nlists == cat->caplists) {
            size_t ncap = cat->caplists ? cat->caplists * 2 : 256;
            s_ilist_t *n = realloc(cat->lists, ncap * sizeof *n);
            if (!n)
                return GG_ENOMEM;
            cat->lists = n;
            cat->caplists = ncap;
        }
        li = cat->nlists;
        if (s_map_put(&cat->consumers, target, li) != 0)
            return GG_ENOMEM;
        cat->lists[cat->nlists++] = (s_ilist_t){0};
    }
    s_ilist_t *l = &cat->lists[li];
    if (l->count > 0 && l->items[l->count - 1] == consumer)
        return GG_OK;
    if (l->count == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 4;
        size_t *n = realloc(l->items, ncap * sizeof *n);
        if (!n)
            return GG_ENOMEM;
        l->items = n;
        l->cap = ncap;
    }
    l->items[l->count++] = consumer;
    return GG_OK;
}

static int s_index_build(catalog_t *cat)
{
    s_index_clear(cat);
    for (size_t i = 0; i < cat->count; i++) {
        const s_entity_t *e = cat->entities[i];
        for (size_t k = 0; k < e->ndeps; k++)
            if (s_index_add(cat, e->deps[k], i) != 0)
                goto fail;
        /* X in spec.dependencyOf of E: X depends on E (when X is loaded) */
        for (size_t k = 0; k < e->ndep_of; k++) {
            s_slot_t *x = s_map_get(&cat->by_ref, e->dep_of[k]);
            if (x && s_index_add(cat, e->ref, x->value) != 0)
                goto fail;
        }
    }
    cat->index_valid = true;
    return GG_OK;
fail:
    s_index_clear(cat);
    return GG_ENOMEM;
}

static int s_cmp_entity_ref(const void *a, const void *b)
{
    const catalog_entity_t *x = *(const catalog_entity_t *const *) a;
    const catalog_entity_t *y = *(const catalog_entity_t *const *) b;
    return strcmp(x->ref, y->ref);
}

int catalog_consumers_of(catalog_t *cat, const char *ref, bool transitive,
                         const catalog_entity_t ***out, size_t *count)
{
    char root[ENTITY_REF_FORMAT_MAX];
    const char **queue = NULL;
    unsigned char *seen = NULL;
    const catalog_entity_t **result = NULL;
    size_t nresult = 0, qhead = 0, qtail = 0;
    int rc = GG_OK;

    if (!cat || !out || !count)
        return GG_EINVAL;
    *out = NULL;
    *count = 0;
    if (entity_ref_normalize(ref, NULL, NULL, root, sizeof root, NULL, 0) != 0)
        return GG_EINVAL;
    if (!cat->index_valid && (rc = s_index_build(cat)) != 0)
        return rc;
    if (cat->count == 0)
        return GG_OK;
    seen = calloc(cat->count, 1);
    queue = malloc((cat->count + 1) * sizeof *queue);
    result = malloc(cat->count * sizeof *result);
    if (!seen || !queue || !result) {
        rc = GG_ENOMEM;
        goto out;
    }
    s_slot_t *self = s_map_get(&cat->by_ref, root);
    if (self)
        seen[self->value] = 1; /* never list the dependency itself */
    queue[qtail++] = root;
    while (qhead < qtail) {
        s_slot_t *slot = s_map_get(&cat->consumers, queue[qhead++]);
        if (!slot)
            continue;
        const s_ilist_t *l = &cat->lists[slot->value];
        for (size_t k = 0; k < l->count; k++) {
            size_t c = l->items[k];
            if (seen[c])
                continue;
            seen[c] = 1;
            result[nresult++] = &cat->entities[c]->pub;
            if (transitive)
                queue[qtail++] = cat->entities[c]->ref;
        }
    }
    if (nresult > 1)
        qsort(result, nresult, sizeof *result, s_cmp_entity_ref);
    if (nresult > 0) {
        *out = result;
        *count = nresult;
        result = NULL;
    }
out:
    free(result);
    free(queue);
    free(seen);
    return rc;
}
