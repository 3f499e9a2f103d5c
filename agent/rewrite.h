/*
 * rewrite.h: the built-in `rewrite` step, run in the agent's process.
 *
 * Replaces text in the files of a target's folder that match glob patterns,
 * never leaving that folder: patterns are relative and free of "..",
 * symbolic links are skipped (neither followed nor modified), `.git` is
 * skipped, binary files (a NUL byte in the first 8 KiB) and files over a size
 * cap are skipped and counted. Each changed file is replaced atomically (a
 * temporary file in the same directory, fsync, rename) and keeps its mode.
 *
 * Patterns: `*` any run of characters within one path component, `?` one
 * character, `[...]` a class (fnmatch(3) rules, per component), `**` as a
 * whole component any number of components (zero included): the pattern
 * "** / *.sql" (without the spaces) matches "a.sql" and "x/y/a.sql". `*`
 * matches names starting with a dot.
 *
 * Replacements apply in order, each to the result of the previous one.
 * Modes: literal text; whole words (a match neither preceded nor followed by
 * [A-Za-z0-9_]); POSIX extended regular expressions with REG_NEWLINE (`^`,
 * `$` match at line ends; `.` does not match a newline) where `to` may use
 * \0 (the whole match) and \1..\9, and `\\` for a backslash.
 */
#ifndef GG_REWRITE_H
#define GG_REWRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gg_error.h"

#define REWRITE_MAX_PATTERNS     64
#define REWRITE_MAX_PATTERN_LEN  1024
#define REWRITE_MAX_REPLACEMENTS 256
#define REWRITE_MAX_TEXT         (64u * 1024u)         /* longest from / to */
#define REWRITE_FILE_MAX_DEFAULT (16u * 1024u * 1024u) /* files above are skipped */
#define REWRITE_MAX_LISTED       1000                  /* changed paths kept in the result */
#define REWRITE_SUMMARY_MAX      (64u * 1024u)         /* bytes of summary text */
#define REWRITE_MAX_DEPTH        128                   /* directory nesting */
#define REWRITE_MAX_ENTRIES      1000000               /* directory entries visited */
#define REWRITE_BINARY_PROBE     8192                  /* bytes checked for NUL */

typedef enum {
    REWRITE_LITERAL = 0,
    REWRITE_WORD = 1,
    REWRITE_REGEX = 2,
} rewrite_mode_t;

typedef struct {
    const char *from; /* non-empty; already template-expanded */
    const char *to;
} rewrite_pair_t;

typedef struct {
    const char *const *paths; /* glob patterns relative to the root */
    size_t n_paths;
    const rewrite_pair_t *replace; /* applied in order */
    size_t n_replace;
    rewrite_mode_t mode;
    uint64_t max_file_bytes; /* 0: REWRITE_FILE_MAX_DEFAULT */
    bool dry_run;            /* count and summarise, write nothing */
} rewrite_spec_t;

typedef struct {
    size_t files_matched;  /* regular files matching a pattern */
    size_t files_scanned;  /* of those, read and searched */
    size_t files_changed;  /* of those, rewritten (or that would be, in a dry run) */
    size_t replacements;   /* matches replaced, all files */
    size_t skipped_binary; /* matched, skipped as binary */
    size_t skipped_large;  /* matched, skipped as over max_file_bytes */
    size_t skipped_links;  /* symbolic links met and skipped */
    char **changed;        /* changed paths relative to the root, walk order (sorted) */
    size_t n_changed;
    bool changed_truncated; /* more than REWRITE_MAX_LISTED changed */
    char *summary;          /* NUL-terminated, diff-like, at most REWRITE_SUMMARY_MAX */
} rewrite_result_t;

/* Checks a spec without touching the disk: patterns (present, relative, no
 * "." or ".." component, no empty component), replacements (present, `from`
 * non-empty, bounded), regexes compile and their backreferences exist.
 * Returns 0 or GG_EINVAL with one sentence naming the culprit in errbuf. */
int rewrite_validate_spec(const rewrite_spec_t *spec, char *errbuf, size_t errlen) GG_MUST_CHECK;

/* Validates the spec, then rewrites the matching files under root_dir. `out`
 * is filled (free it with rewrite_result_clear) even on error, up to the
 * failure. Returns 0, GG_EINVAL (bad spec, root not a directory), GG_EIO
 * (a file could not be read or replaced), GG_ETOOBIG (a result over the size
 * cap, a tree too deep or too large), GG_ENOMEM; errbuf says which file. */
int rewrite_run(const rewrite_spec_t *spec, const char *root_dir, rewrite_result_t *out,
                char *errbuf, size_t errlen) GG_MUST_CHECK;

/* Frees what a result holds and zeroes it. NULL-safe. */
void rewrite_result_clear(rewrite_result_t *r);

/* Whether `path` (relative, '/'-separated) matches `pattern` as described
 * above. Exposed for plan dry runs and tests. */
bool rewrite_glob_match(const char *pattern, const char *path);

#endif
