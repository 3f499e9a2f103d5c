/*
 * entity_ref.h: Backstage entity references and field validators.
 *
 * An entity reference is written `[<kind>:][<namespace>/]<name>`. Parsing
 * follows Backstage's catalog-model `parseEntityRef` exactly: the first ':'
 * ends the kind unless a '/' comes before it, the first '/' ends the
 * namespace, and the rest (which may itself hold ':' or '/') is the name; an
 * empty part is an error; a missing kind takes the caller's default kind (there
 * may be none: then the reference is an error), a missing namespace takes the
 * default namespace ("default" when none is given). Refs compare
 * case-insensitively; the canonical string form is Backstage's
 * `stringifyEntityRef`: every part lower-cased, `kind:namespace/name`.
 *
 * The validators mirror Backstage's `KubernetesValidatorFunctions` and
 * `CommonValidatorFunctions` as used by `FieldFormatEntityPolicy`. Everything
 * here is pure: no allocation, no I/O.
 */
#ifndef GG_ENTITY_REF_H
#define GG_ENTITY_REF_H

#include <stdbool.h>
#include <stddef.h>

/* Longest accepted part (kind, namespace or name) and whole reference text. */
#define ENTITY_REF_PART_MAX 253
#define ENTITY_REF_TEXT_MAX 1024
/* Enough for any formatted reference: three parts, ':' and '/', NUL. */
#define ENTITY_REF_FORMAT_MAX (3 * ENTITY_REF_PART_MAX + 3)

typedef struct {
    char kind[ENTITY_REF_PART_MAX + 1];
    char namespace[ENTITY_REF_PART_MAX + 1];
    char name[ENTITY_REF_PART_MAX + 1];
} entity_ref_t;

/* Parses `text` into `ref`, filling a missing kind from `default_kind` (NULL or
 * "" means none: a kind-less ref is then an error) and a missing namespace from
 * `default_namespace` (NULL or "" means "default"). Case is kept as written.
 * Returns 0, or GG_EINVAL with a one-sentence reason in errbuf (if errbuf is
 * not NULL). */
int entity_ref_parse(const char *text, const char *default_kind, const char *default_namespace,
                     entity_ref_t *ref, char *errbuf, size_t errsize);

/* Writes Backstage's canonical form, all lower case: "kind:namespace/name".
 * Returns 0, or GG_ETOOBIG when buf is too small (buf then holds ""). */
int entity_ref_format(const entity_ref_t *ref, char *buf, size_t size);

/* Parse then format in one step. Returns 0 or GG_EINVAL/GG_ETOOBIG. */
int entity_ref_normalize(const char *text, const char *default_kind, const char *default_namespace,
                         char *buf, size_t size, char *errbuf, size_t errsize);

/* Case-insensitive comparison (kind, then namespace, then name), for sorting;
 * entity_ref_equal is its == 0. */
int entity_ref_compare(const entity_ref_t *a, const entity_ref_t *b);
bool entity_ref_equal(const entity_ref_t *a, const entity_ref_t *b);

/* Backstage's field validators (a NULL value is invalid for all of them). */
/* metadata.name, link icons, label values: 1..63 chars,
 * ^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$ */
bool entity_ref_valid_name(const char *value);
/* metadata.namespace: a DNS label, 1..63 chars, ^[a-z0-9]+(-[a-z0-9]+)*$ */
bool entity_ref_valid_namespace(const char *value);
/* kind: 1..63 chars, ^[a-zA-Z][a-z0-9A-Z]*$ */
bool entity_ref_valid_kind(const char *value);
/* apiVersion: [<DNS subdomain>/]<1..63 alphanumerics> */
bool entity_ref_valid_api_version(const char *value);
/* label and annotation keys: [<DNS subdomain>/]<name> */
bool entity_ref_valid_label_key(const char *value);
/* label values: "" or a valid name */
bool entity_ref_valid_label_value(const char *value);
/* metadata.tags entries: 1..63 chars, ^[a-z0-9:+#]+(-[a-z0-9:+#]+)*$ */
bool entity_ref_valid_tag(const char *value);
/* DNS subdomain (RFC 1123): 1..253 chars of dot-separated DNS labels */
bool entity_ref_valid_dns_subdomain(const char *value, size_t len);

#endif
