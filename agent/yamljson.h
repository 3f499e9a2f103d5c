/*
 * yamljson.h: YAML (and therefore JSON) text to jansson values, with limits
 * and line numbers.
 *
 * Plans, configs and catalog files are written in YAML; the rest of gaggle
 * works on json_t. This module reads a (multi-document) YAML stream with
 * libyaml's event parser and builds one json_t per document, following the
 * YAML 1.2 core schema as Backstage's js-yaml does:
 *  - plain scalars: null (~, null, Null, NULL, empty), booleans (true/false in
 *    three casings), integers (decimal, 0x hex, 0o octal), floats; everything
 *    else, and every quoted scalar, is a string ("yes", "1.10.2" are strings);
 *  - the standard tags !!str !!int !!float !!bool !!null !!map !!seq and the
 *    non-specific "!" are honoured; any other tag is an error;
 *  - anchors and aliases (an alias is a deep copy of its anchor's value), and
 *    merge keys ("<<: *base", "<<: [*a, *b]"; explicit keys win);
 *  - duplicate keys, non-scalar keys, keys holding NUL, .inf and .nan are
 *    errors (JSON cannot hold them).
 * Every input is bounded: bytes, nesting depth, values per stream (aliases
 * counted as expanded, so an "alias bomb" stops at the limit), scalar length
 * and document count. Documents whose root is empty ("---" alone) are skipped.
 *
 * With keep_lines, the 1-based source line of every value is kept under its
 * path, written as in error messages: "spec.steps[2].run" (keys joined with
 * '.', sequence items as [i]; the root is ""). A mapping entry's line is the
 * line of its key.
 */
#ifndef GG_YAMLJSON_H
#define GG_YAMLJSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define YAMLJSON_ERR_MAX 512 /* a good size for error buffers */

typedef struct {
    size_t max_bytes;     /* input length */
    unsigned max_depth;   /* nesting of mappings and sequences */
    size_t max_nodes;     /* values in the whole stream, aliases expanded */
    size_t max_scalar;    /* bytes in one scalar (keys included) */
    size_t max_documents; /* non-empty documents */
    bool keep_lines;      /* record path -> line for yamljson_line() */
} yamljson_opts_t;

typedef struct _yamljson_t yamljson_t;

/* Defaults: 16 MiB, depth 64, 4,000,000 values, 1 MiB scalars, 100,000
 * documents, keep_lines off. */
void yamljson_opts_default(yamljson_opts_t *opts);

/* Parses `len` bytes of YAML. `name` (a file name, may be NULL) prefixes error
 * messages: "NAME:LINE:COL: reason". opts NULL means the defaults.
 * Returns 0 and a new yamljson_t in *out; or GG_EMALFORMED (syntax or schema
 * error), GG_ETOOBIG (a limit), GG_ENOMEM, with one line in err. On error,
 * *out still receives the documents completed before the error (possibly
 * none), so a caller may keep them; it must be destroyed either way. */
int yamljson_parse(const char *text, size_t len, const char *name, const yamljson_opts_t *opts,
                   yamljson_t **out, char *err, size_t errlen);

/* Reads the file at `path` (at most opts->max_bytes, else GG_ETOOBIG) and
 * parses it; GG_ENOTFOUND / GG_EIO when it cannot be read (then *out is
 * NULL). Error messages are prefixed with the path. */
int yamljson_load_file(const char *path, const yamljson_opts_t *opts, yamljson_t **out, char *err,
                       size_t errlen);

/* Frees everything; NULL-safe; clears *self_p. */
void yamljson_destroy(yamljson_t **self_p);

/* Number of (non-empty) documents. */
size_t yamljson_count(const yamljson_t *self);

/* Document i, borrowed: valid until yamljson_destroy (json_incref to keep). */
json_t *yamljson_doc(const yamljson_t *self, size_t i);

/* 1-based line where document i starts. */
unsigned long yamljson_doc_line(const yamljson_t *self, size_t i);

/* 1-based line of the value at `path` in document i, or 0 when unknown (no
 * keep_lines, no such path, or a value copied from an alias). */
unsigned long yamljson_line(const yamljson_t *self, size_t i, const char *path);

#endif
