/*
 * catalog.h: a Backstage software catalog, read from files, directories,
 * Location entities, by-query JSON or a live Backstage URL.
 *
 * The catalog is how a plan finds its targets: the consumers of a dataset are
 * the entities whose spec.dependsOn names it (Backstage's dependsOn /
 * dependencyOf relation pair). Reading follows Backstage's own rules (entity
 * refs, the default entity policies, the built-in kinds' required fields), and
 * bad input never stops a load: an invalid entity, an unreadable file or a YAML
 * syntax error is a warning {where, message} and the rest loads.
 *
 * Inputs (any mix, any number of calls, each file read once):
 *  - a YAML file, multi-document ("---"); empty documents are ignored;
 *  - a JSON file: one entity, an array of entities, or Backstage's
 *    `GET /api/catalog/entities/by-query` response `{"items": [...]}`;
 *  - a directory: every *.yaml, *.yml and *.json below it, in sorted order,
 *    skipping hidden files and folders (".git");
 *  - `kind: Location` entities: their spec.target / spec.targets are read,
 *    relative to the Location file's folder (`./x`, `x`, `../x`, `file:x`,
 *    absolute paths and glob patterns with `*`, `?`, `[...]` and `**`);
 *    http(s) targets are warned about and skipped;
 *  - an http(s) Backstage base URL, read page by page through by-query.
 *
 * An entity reached twice (same ref, compared case-insensitively) counts once;
 * a second copy with different content is a warning and is dropped.
 *
 * Not thread-safe: one catalog is used from one thread at a time.
 */
#ifndef GG_CATALOG_H
#define GG_CATALOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Bounds on what a catalog will read. */
#define CATALOG_MAX_FILE_SIZE      (64u << 20) /* bytes per file or HTTP response */
#define CATALOG_MAX_DOCUMENTS      1000000     /* YAML documents per file */
#define CATALOG_MAX_DEPTH          64          /* nesting of mappings/sequences */
#define CATALOG_MAX_NODES          2000000     /* values per document, aliases expanded */
#define CATALOG_MAX_ENTITIES       1000000     /* default entity limit */
#define CATALOG_MAX_FILES          1000000     /* distinct files read */
#define CATALOG_MAX_WARNINGS       10000       /* warnings kept (more are counted) */
#define CATALOG_MAX_LOCATION_DEPTH 32          /* Location -> file -> Location ... */
#define CATALOG_MAX_DIR_DEPTH      64          /* directory recursion */
#define CATALOG_MAX_PAGES          100000      /* by-query pages per URL */

typedef struct catalog_t catalog_t;

typedef struct {
    const char *where;   /* "FILE", "FILE:LINE" or a URL */
    const char *message; /* one sentence */
} catalog_warning_t;

/* A loaded, valid entity. Every pointer lives as long as the catalog. */
typedef struct {
    const char *ref;         /* canonical, lower case: "component:default/artist-lookup" */
    const char *kind;        /* as written: "Component" */
    const char *namespace;   /* metadata.namespace, "default" when absent */
    const char *name;        /* metadata.name */
    const char *type;        /* spec.type or NULL */
    const char *lifecycle;   /* spec.lifecycle or NULL */
    const char *owner;       /* spec.owner as a canonical ref (default kind group) or NULL */
    const char *system;      /* spec.system as a canonical ref (default kind system) or NULL */
    const char *source;      /* backstage.io/source-location without url:/dir:, or NULL */
    const char *file;        /* absolute path of the file it came from, or NULL (URL/text) */
    const char *path;        /* the folder of that file ({{target.path}}), or NULL */
    const char *where;       /* "FILE:LINE", "FILE" or the URL it came from */
    const char *const *tags; /* metadata.tags */
    size_t tag_count;
    const char *const *depends_on; /* spec.dependsOn, then dependsOn relations (by-query
                                      output), as canonical refs, in order, unique */
    size_t depends_on_count;
    const json_t *json; /* the whole entity as read, every field kept */
} catalog_entity_t;

/* Returns a new empty catalog, or NULL when out of memory. */
catalog_t *catalog_new(void);
/* Frees the catalog and everything it handed out; NULL-safe; clears *p. */
void catalog_destroy(catalog_t **p);

/* Lowers the entity limit (default CATALOG_MAX_ENTITIES); for tests. */
void catalog_set_max_entities(catalog_t *cat, size_t max);

/* Loads a file, a directory, or (when it starts with http:// or https://) a
 * Backstage base URL. Returns 0 when the source was read, even if some of
 * what it held produced warnings; GG_ENOTFOUND / GG_EIO when the path itself
 * cannot be read; GG_ETOOBIG when a limit stopped the load; GG_ECONN /
 * GG_EMALFORMED for a URL that fails. A warning is recorded in every case. */
int catalog_load_path(catalog_t *cat, const char *path);

/* Reads every entity of a live Backstage: GET BASE/api/catalog/entities/by-query,
 * following pageInfo.nextCursor. Sends "Authorization: Bearer $GAGGLE_CATALOG_TOKEN"
 * when that variable is set. A base URL that already ends in
 * /api/catalog/entities/by-query is used as is. Returns 0 or GG_ECONN (transport
 * error or HTTP status other than 200), GG_EMALFORMED (a page that is not a
 * by-query response), GG_ETOOBIG (a limit was reached), GG_ENOMEM. */
int catalog_load_url(catalog_t *cat, const char *base_url);

/* Loads JSON text: one entity, an array of entities, or a by-query response.
 * `where` names the source in warnings (and, if it is a path, relative
 * Location targets are resolved against its folder). Returns 0, or
 * GG_EMALFORMED when the text is not JSON of one of those shapes. */
int catalog_load_json_text(catalog_t *cat, const char *text, size_t len, const char *where);

/* Loads multi-document YAML text, as if read from the file `where`.
 * Returns 0 (syntax errors are warnings) or GG_ETOOBIG / GG_ENOMEM. */
int catalog_load_yaml_text(catalog_t *cat, const char *text, size_t len, const char *where);

/* Entities in load order. */
size_t catalog_count(const catalog_t *cat);
const catalog_entity_t *catalog_entity_at(const catalog_t *cat, size_t i);

/* Finds an entity by reference text, parsed with the given defaults (NULL
 * default_kind: the ref must carry its kind; NULL default_namespace:
 * "default"). Case-insensitive. Returns NULL when absent or unparsable. */
const catalog_entity_t *catalog_find(const catalog_t *cat, const char *ref,
                                     const char *default_kind, const char *default_namespace);

/* The entities that depend on `ref` (it must carry its kind; namespace
 * defaults to "default"): those whose spec.dependsOn names it, those a
 * Resource or Component names in its spec.dependencyOf, and the same edges
 * given as `relations` (dependsOn / dependencyOf) in by-query output. With `transitive`
 * also the consumers of those consumers, cycle-safe; `ref` itself is never
 * listed. Sorted by canonical ref. *out is a malloc'd array (free() it; NULL
 * when *count is 0) of pointers that live as long as the catalog.
 * Returns 0, GG_EINVAL for an unparsable ref, or GG_ENOMEM. */
int catalog_consumers_of(catalog_t *cat, const char *ref, bool transitive,
                         const catalog_entity_t ***out, size_t *count);

/* Value of an annotation or label, or NULL when absent. */
const char *catalog_entity_annotation(const catalog_entity_t *e, const char *key);
const char *catalog_entity_label(const catalog_entity_t *e, const char *key);

/* Warnings so far, in order. The array is valid until the next load call. */
const catalog_warning_t *catalog_warnings(const catalog_t *cat, size_t *count);
/* Warnings that were not kept because CATALOG_MAX_WARNINGS was reached. */
size_t catalog_warnings_dropped(const catalog_t *cat);

#endif
