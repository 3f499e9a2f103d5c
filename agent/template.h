/*
 * template.h: `{{ name }}` substitution in plan commands, paths and prompts.
 *
 * A template is text with placeholders `{{ name }}` (spaces inside the braces
 * are optional). A name is one or more of [A-Za-z0-9_.:/-], e.g. target.ref,
 * vars.from, target.annotations.backstage.io/source-location. The caller's
 * lookup function gives each name's value; there is no escape for a literal
 * "{{", an unterminated "{{" is an error, and a lone "}}" is literal text.
 *
 * Quoting is the point of this module: in TEMPLATE_SHELL mode every
 * substituted value is wrapped in single quotes ('...', an embedded ' written
 * '\''), so whatever a catalog field holds ($(...), backticks, quotes,
 * newlines, ;) reaches /bin/sh as one literal word and cannot inject commands.
 * Write placeholders unquoted in run commands: `make -C {{target.path}}`.
 * TEMPLATE_RAW substitutes values as they are (rewrite replacements, prompts,
 * paths). Values are C strings: a lookup whose source value holds a NUL byte
 * must refuse it (GG_EINVAL) rather than let it be cut short.
 */
#ifndef GG_TEMPLATE_H
#define GG_TEMPLATE_H

#include <stddef.h>

#define TEMPLATE_NAME_MAX   512        /* bytes in one placeholder name */
#define TEMPLATE_OUTPUT_MAX (4u << 20) /* bytes in one expansion */

typedef enum {
    TEMPLATE_RAW = 0,   /* values substituted verbatim */
    TEMPLATE_SHELL = 1, /* values single-quoted for /bin/sh */
} template_quote_t;

/* Looks up a placeholder's value. Returns 0 with *value set (borrowed: it
 * must stay valid until template_expand returns; "" is a fine value),
 * GG_ENOTFOUND for an unknown name, or another GG_E* error to abort. */
typedef int(template_lookup_fn)(void *arg, const char *name, const char **value);

/* Expands tmpl into a new malloc'd string in *out. Returns 0; GG_EINVAL for a
 * syntax error (unterminated "{{", empty or invalid name) or a value holding
 * NUL; GG_ENOTFOUND for an unknown name; GG_ETOOBIG when the result would
 * exceed TEMPLATE_OUTPUT_MAX; GG_ENOMEM; or the lookup's own error. On error
 * *out is NULL and, when err is not NULL, err receives one sentence naming
 * the placeholder ("unknown variable {{vars.x}}"). */
int template_expand(const char *tmpl, template_lookup_fn *lookup, void *arg, template_quote_t mode,
                    char **out);
int template_expand_err(const char *tmpl, template_lookup_fn *lookup, void *arg,
                        template_quote_t mode, char **out, char *err, size_t errlen);

/* Checks tmpl without building the result: syntax and every name (through
 * lookup, whose values are ignored). Returns 0 or an error as above, with
 * the same message in err. */
int template_check(const char *tmpl, template_lookup_fn *lookup, void *arg, char *err,
                   size_t errlen);

/* Appends the shell single-quoted form of value (len bytes) to nothing: a
 * new malloc'd string in *out. Returns 0, GG_EINVAL (NUL byte), GG_ETOOBIG or
 * GG_ENOMEM. Exposed for callers that build commands themselves. */
int template_shell_quote(const char *value, size_t len, char **out);

#endif
