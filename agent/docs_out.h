/*
 * docs_out.h: the documents a target's run leaves behind.
 *
 * - The migrated catalog entity (SPEC.md "Docs"): when a target succeeds and
 *   the plan sets docs.catalogOut, its frozen entity is written to
 *   catalogOut/<namespace>/<kind in lower case>/<name>.yaml with every
 *   spec.dependsOn entry that names dataset.from replaced by dataset.to and
 *   every other field kept. Refs compare as Backstage does: case-insensitive,
 *   a dependsOn entry must name its kind (a kind-less entry never matches and
 *   is kept as written), a missing namespace is the entity's own. When
 *   dataset.to is already listed, the dataset.from entry is dropped instead
 *   of duplicated. YAML comes from libyaml's emitter; strings that a YAML
 *   reader would take for another type ("true", "1.10", "null", "") are
 *   quoted, so the file reads back as the same JSON value.
 * - The change description a `publish` step receives (GAGGLE_CHANGE_FILE): a
 *   Markdown summary of the plan, the dataset move, the target, what each
 *   step did and the verification result.
 *
 * Files are written atomically: a temporary file in the same folder, fsync,
 * rename, fsync of the folder; missing folders are created.
 */
#ifndef GG_DOCS_OUT_H
#define GG_DOCS_OUT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "gg_error.h"

#define DOCS_OUT_YAML_MAX   (8u << 20) /* bytes of one emitted YAML document */
#define DOCS_OUT_MD_MAX     (1u << 20) /* bytes of a change description */
#define DOCS_OUT_DEPTH_MAX  64         /* nesting of an emitted value */
#define DOCS_OUT_FILES_LIST 50         /* changed files listed per step */

/* Emits `value` (any JSON value) as one YAML document into a new malloc'd,
 * NUL-terminated string. Returns 0, GG_ETOOBIG (over DOCS_OUT_YAML_MAX or
 * DOCS_OUT_DEPTH_MAX), GG_EINVAL (a real that is not finite) or GG_ENOMEM. */
int docs_out_yaml(const json_t *value, char **out, size_t *len_out) GG_MUST_CHECK;

/* A deep copy of `entity` with spec.dependsOn moved from `from_ref` to
 * `to_ref` (both canonical refs, kind:namespace/name). *moved_out (may be
 * NULL) receives the number of entries that named from_ref. Returns 0,
 * GG_EINVAL (entity not an object, a ref not parseable) or GG_ENOMEM. */
int docs_out_move_dependency(const json_t *entity, const char *from_ref, const char *to_ref,
                             json_t **out, size_t *moved_out) GG_MUST_CHECK;

/* root/<namespace>/<kind lower case>/<name>.yaml for the entity. Namespace,
 * kind and name must pass Backstage's validators (so none can leave root).
 * Returns 0, GG_EINVAL (missing or invalid field) or GG_ETOOBIG (buf). */
int docs_out_entity_path(const char *root, const json_t *entity, char *buf, size_t size);

/* Writes the moved entity under root (docs_out_move_dependency, then
 * docs_out_entity_path, then docs_out_write_file). The path written goes to
 * path_out (may be NULL). Returns 0 or an error with one sentence in err. */
int docs_out_write_entity(const char *root, const json_t *entity, const char *from_ref,
                          const char *to_ref, char *path_out, size_t path_size, char *err,
                          size_t errlen) GG_MUST_CHECK;

/* Writes len bytes to path atomically (mode 0644), creating its folders.
 * Returns 0, GG_EINVAL (bad path), GG_ENOSPC or GG_EIO. */
int docs_out_write_file(const char *path, const void *data, size_t len) GG_MUST_CHECK;

/* What a change description says. Strings may be NULL (left out). */
typedef struct {
    const char *plan_name;
    const char *plan_id;
    const char *plan_description;
    const char *dataset_from;
    const char *dataset_to;
    const char *target_ref;
    const char *target_path;
    uint32_t attempt;
    uint32_t epoch;
    /* [{"name", "kind", "summary", "files"?: [paths], "files_more"?: n}], in order */
    const json_t *steps;
    const char *verification; /* one paragraph: what verify and judge said */
} docs_change_t;

/* Builds the Markdown change description into a new malloc'd string (at
 * most DOCS_OUT_MD_MAX bytes: long lists are cut with a note). Returns 0 or
 * GG_ENOMEM. */
int docs_out_change_md(const docs_change_t *change, char **out) GG_MUST_CHECK;

/* The longest run of backticks in text, plus one, at least three: a Markdown
 * fence that text cannot close. Writes it into buf (size >= 2). */
void docs_out_fence(const char *text, char *buf, size_t size);

#endif
