/*
 * rewrite.c: the built-in `rewrite` step: glob-selected files of a target's
 * folder have text replaced in place, atomically, without leaving the folder.
 *
 * Design notes
 * - The walk never resolves a path from the root again: every directory is
 *   opened relative to its parent's descriptor with O_NOFOLLOW, entries are
 *   examined with fstatat(AT_SYMLINK_NOFOLLOW), and symbolic links are skipped
 *   whatever they point to. Only regular files are opened (O_NONBLOCK, so a
 *   FIFO swapped in cannot block, and checked again with fstat).
 * - Glob patterns are matched one path component at a time, as a small NFA
 *   over the pattern's components (`**` loops on itself, and may be skipped);
 *   each directory level carries the live states of every pattern, so a
 *   directory no pattern can reach is not descended into, and matching costs
 *   O(components) per entry.
 * - Replacements run on the whole file in memory (bounded by the file size
 *   cap) into a second buffer, pair after pair; a file is written only when
 *   its bytes changed, through a temporary file in the same directory that is
 *   fsynced, given the original mode and renamed over it; the directory is
 *   fsynced after. A failure stops the run: files already replaced stay
 *   replaced (each is whole), which an idempotent step tolerates.
 */
#include "rewrite.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_SUMMARY_LINES  10  /* changed lines shown per file */
#define S_SUMMARY_LINE   160 /* bytes shown per line */
#define S_NMATCH         10  /* \0..\9 */
#define S_TMP_ATTEMPTS   100
#define S_SUMMARY_CUTOFF "... (summary truncated)\n"

typedef struct {
    char *buf;  /* the pattern, '/' replaced by NUL */
    char **seg; /* its components */
    size_t n;
} pat_t;

typedef struct {
    char *p;
    size_t len;
    size_t cap;
} buf_t;

typedef struct {
    const rewrite_spec_t *spec;
    pat_t *pats;
    size_t *state_off; /* per pattern, offset of its states in a level block */
    size_t state_size; /* bytes of one level block */
    regex_t *res;      /* n_replace compiled expressions (regex mode) */
    size_t n_res;
    uint64_t max_file;
    rewrite_result_t *out;
    char *errbuf;
    size_t errlen;
    size_t entries;
    char rel[PATH_MAX];
    buf_t in;      /* the file read, reused from file to file */
    buf_t summary; /* NUL-terminated text */
    bool summary_full;
    unsigned tmp_counter;
} walk_t;

static void s_err(walk_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_err(walk_t *w, const char *fmt, ...)
{
    if (!w->errbuf || !w->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->errbuf, w->errlen, fmt, ap);
    va_end(ap);
}

static void s_errbuf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_errbuf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

static bool s_is_dstar(const char *seg)
{
    return seg[0] == '*' && seg[1] == '*' && seg[2] == '\0';
}

static bool s_is_word(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* ---------------------------------------------------------------------------
 * Buffers (every growth checked against a maximum).
 */

static int s_buf_reserve(buf_t *b, size_t need, size_t max)
{
    if (need > max)
        return GG_ETOOBIG;
    if (need <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 4096;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    if (ncap > max + 1)
        ncap = max + 1;
    char *np = realloc(b->p, ncap);
    if (!np)
        return GG_ENOMEM;
    b->p = np;
    b->cap = ncap;
    return 0;
}

static int s_buf_add(buf_t *b, const char *s, size_t n, size_t max)
{
    if (n > max || b->len > max - n)
        return GG_ETOOBIG;
    int rc = s_buf_reserve(b, b->len + n, max);
    if (rc != 0)
        return rc;
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

/* Keeps a NUL after the data: regexec (and sanitizers' view of it) wants a
 * C string even with REG_STARTEND. */
static int s_buf_terminate(buf_t *b, size_t max)
{
    int rc = s_buf_reserve(b, b->len + 1, max + 1);
    if (rc == 0)
        b->p[b->len] = '\0';
    return rc;
}

/* Appends to the summary, keeping room for the cut-off note; never fails. */
static void s_sum(walk_t *w, const char *s, size_t n)
{
    if (w->summary_full)
        return;
    size_t room = REWRITE_SUMMARY_MAX - 1 - strlen(S_SUMMARY_CUTOFF);
    if (w->summary.len + n > room) {
        w->summary_full = true;
        s = S_SUMMARY_CUTOFF;
        n = strlen(S_SUMMARY_CUTOFF);
    }
    if (s_buf_add(&w->summary, s, n, REWRITE_SUMMARY_MAX - 1) != 0 ||
        s_buf_terminate(&w->summary, REWRITE_SUMMARY_MAX - 1) != 0)
        w->summary_full = true;
}

static void s_sumf(walk_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_sumf(walk_t *w, const char *fmt, ...)
{
    char line[PATH_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        s_sum(w, line, (size_t) n < sizeof line ? (size_t) n : sizeof line - 1);
}

/* ---------------------------------------------------------------------------
 * Glob patterns.
 */

static void s_pat_free(pat_t *p)
{
    free(p->buf);
    free(p->seg);
    memset(p, 0, sizeof *p);
}

static int s_pat_compile(const char *pattern, pat_t *p)
{
    memset(p, 0, sizeof *p);
    size_t len = strlen(pattern);
    p->buf = malloc(len + 1);
    p->seg = calloc(len / 2 + 2, sizeof *p->seg);
    if (!p->buf || !p->seg) {
        s_pat_free(p);
        return GG_ENOMEM;
    }
    memcpy(p->buf, pattern, len + 1);
    char *s = p->buf;
    for (;;) {
        p->seg[p->n++] = s;
        char *slash = strchr(s, '/');
        if (!slash)
            break;
        *slash = '\0';
        s = slash + 1;
    }
    return 0;
}

/* Adds the states reachable by letting a `**` match no component. */
static void s_closure(const pat_t *p, bool *st)
{
    for (size_t i = 0; i < p->n; i++)
        if (st[i] && s_is_dstar(p->seg[i]))
            st[i + 1] = true;
}

static void s_start(const pat_t *p, bool *st)
{
    memset(st, 0, p->n + 1);
    st[0] = true;
    s_closure(p, st);
}

static void s_step(const pat_t *p, const bool *st, const char *name, bool *next)
{
    memset(next, 0, p->n + 1);
    for (size_t i = 0; i < p->n; i++) {
        if (!st[i])
            continue;
        if (s_is_dstar(p->seg[i]))
            next[i] = true;
        else if (fnmatch(p->seg[i], name, 0) == 0)
            next[i + 1] = true;
    }
    s_closure(p, next);
}

/* Whether a state set can still match something below (a state before the end). */
static bool s_alive(const pat_t *p, const bool *st)
{
    for (size_t i = 0; i < p->n; i++)
        if (st[i])
            return true;
    return false;
}

bool rewrite_glob_match(const char *pattern, const char *path)
{
    pat_t p;
    bool matched = false;
    bool *a = NULL, *b = NULL;
    char *copy = NULL;
    if (!pattern || !path || s_pat_compile(pattern, &p) != 0)
        return false;
    a = malloc(p.n + 1);
    b = malloc(p.n + 1);
    copy = strdup(path);
    if (!a || !b || !copy)
        goto out;
    s_start(&p, a);
    char *save = NULL;
    for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        s_step(&p, a, c, b);
        bool *t = a;
        a = b;
        b = t;
    }
    matched = a[p.n];
out:
    free(copy);
    free(a);
    free(b);
    s_pat_free(&p);
    return matched;
}

/* ---------------------------------------------------------------------------
 * Validation.
 */

static int s_check_pattern(size_t idx, const char *pat, char *errbuf, size_t errlen)
{
    if (!pat || !pat[0]) {
        s_errbuf(errbuf, errlen, "paths[%zu]: empty pattern", idx);
        return GG_EINVAL;
    }
    if (strlen(pat) > REWRITE_MAX_PATTERN_LEN) {
        s_errbuf(errbuf, errlen, "paths[%zu]: pattern longer than %d bytes", idx,
                 REWRITE_MAX_PATTERN_LEN);
        return GG_EINVAL;
    }
    if (pat[0] == '/') {
        s_errbuf(errbuf, errlen,
                 "paths[%zu]: \"%.100s\" is absolute; patterns are relative "
                 "to the target's folder",
                 idx, pat);
        return GG_EINVAL;
    }
    const char *s = pat;
    for (;;) {
        const char *slash = strchr(s, '/');
        size_t n = slash ? (size_t) (slash - s) : strlen(s);
        if (n == 0) {
            s_errbuf(errbuf, errlen, "paths[%zu]: \"%.100s\" has an empty path component", idx,
                     pat);
            return GG_EINVAL;
        }
        if (n == 2 && s[0] == '.' && s[1] == '.') {
            s_errbuf(errbuf, errlen, "paths[%zu]: \"%.100s\" leaves the target's folder (\"..\")",
                     idx, pat);
            return GG_EINVAL;
        }
        if (n == 1 && s[0] == '.') {
            s_errbuf(errbuf, errlen, "paths[%zu]: \"%.100s\" has a \".\" component", idx, pat);
            return GG_EINVAL;
        }
        if (!slash)
            break;
        s = slash + 1;
    }
    return 0;
}

/* Checks that `to` refers only to groups the expression has. */
static int s_check_backrefs(size_t idx, const char *to, size_t nsub, char *errbuf, size_t errlen)
{
    for (const char *p = to; *p; p++) {
        if (*p != '\\' || !p[1])
            continue;
        p++;
        if (*p >= '1' && *p <= '9' && (size_t) (*p - '0') > nsub) {
            s_errbuf(errbuf, errlen,
                     "replace[%zu]: \\%c refers to a group the expression does not have "
                     "(it has %zu)",
                     idx, *p, nsub);
            return GG_EINVAL;
        }
    }
    return 0;
}

static int s_compile_regex(size_t idx, const char *from, regex_t *re, char *errbuf, size_t errlen)
{
    int r = regcomp(re, from, REG_EXTENDED | REG_NEWLINE);
    if (r != 0) {
        char msg[256];
        regerror(r, re, msg, sizeof msg);
        s_errbuf(errbuf, errlen, "replace[%zu]: invalid regular expression \"%.100s\": %s", idx,
                 from, msg);
        return GG_EINVAL;
    }
    return 0;
}

int rewrite_validate_spec(const rewrite_spec_t *spec, char *errbuf, size_t errlen)
{
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!spec) {
        s_errbuf(errbuf, errlen, "no rewrite spec");
        return GG_EINVAL;
    }
    if (spec->n_paths == 0 || !spec->paths) {
        s_errbuf(errbuf, errlen, "paths: at least one pattern is required");
        return GG_EINVAL;
    }
    if (spec->n_paths > REWRITE_MAX_PATTERNS) {
        s_errbuf(errbuf, errlen, "paths: more than %d patterns", REWRITE_MAX_PATTERNS);
        return GG_EINVAL;
    }
    for (size_t i = 0; i < spec->n_paths; i++) {
        int rc = s_check_pattern(i, spec->paths[i], errbuf, errlen);
        if (rc != 0)
            return rc;
    }
    if (spec->n_replace == 0 || !spec->replace) {
        s_errbuf(errbuf, errlen, "replace: at least one replacement is required");
        return GG_EINVAL;
    }
    if (spec->n_replace > REWRITE_MAX_REPLACEMENTS) {
        s_errbuf(errbuf, errlen, "replace: more than %d replacements", REWRITE_MAX_REPLACEMENTS);
        return GG_EINVAL;
    }
    if (spec->mode != REWRITE_LITERAL && spec->mode != REWRITE_WORD &&
        spec->mode != REWRITE_REGEX) {
        s_errbuf(errbuf, errlen, "unknown rewrite mode %d", (int) spec->mode);
        return GG_EINVAL;
    }
    for (size_t i = 0; i < spec->n_replace; i++) {
        const rewrite_pair_t *pr = &spec->replace[i];
        if (!pr->from || !pr->from[0]) {
            s_errbuf(errbuf, errlen, "replace[%zu]: the text to replace is empty", i);
            return GG_EINVAL;
        }
        if (!pr->to) {
            s_errbuf(errbuf, errlen, "replace[%zu]: no replacement text", i);
            return GG_EINVAL;
        }
        if (strlen(pr->from) > REWRITE_MAX_TEXT || strlen(pr->to) > REWRITE_MAX_TEXT) {
            s_errbuf(errbuf, errlen, "replace[%zu]: text longer than %u bytes", i,
                     REWRITE_MAX_TEXT);
            return GG_EINVAL;
        }
        if (spec->mode == REWRITE_REGEX) {
            regex_t re;
            int rc = s_compile_regex(i, pr->from, &re, errbuf, errlen);
            if (rc != 0)
                return rc;
            rc = s_check_backrefs(i, pr->to, re.re_nsub, errbuf, errlen);
            regfree(&re);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Replacement.
 */

/* Literal and word modes: in -> out, counting replacements. */
static int s_replace_text(const walk_t *w, const buf_t *in, const rewrite_pair_t *pr, bool word,
                          buf_t *out, size_t *count)
{
    size_t flen = strlen(pr->from), tlen = strlen(pr->to);
    size_t max = (size_t) w->max_file;
    size_t pos = 0;
    int rc;
    out->len = 0;
    while (pos < in->len) {
        const char *hit = memmem(in->p + pos, in->len - pos, pr->from, flen);
        if (!hit)
            break;
        size_t off = (size_t) (hit - in->p);
        if (word && ((off > 0 && s_is_word((unsigned char) in->p[off - 1])) ||
                     (off + flen < in->len && s_is_word((unsigned char) in->p[off + flen])))) {
            if ((rc = s_buf_add(out, in->p + pos, off + 1 - pos, max)) != 0)
                return rc;
            pos = off + 1;
            continue;
        }
        if ((rc = s_buf_add(out, in->p + pos, off - pos, max)) != 0 ||
            (rc = s_buf_add(out, pr->to, tlen, max)) != 0)
            return rc;
        pos = off + flen;
        (*count)++;
    }
    if (pos < in->len && (rc = s_buf_add(out, in->p + pos, in->len - pos, max)) != 0)
        return rc;
    return s_buf_terminate(out, max);
}

/* Appends `to` with \0..\9 replaced by the groups of match m. */
static int s_expand(const char *to, const char *text, const regmatch_t *m, size_t nsub, buf_t *out,
                    size_t max)
{
    int rc = 0;
    const char *run = to;
    const char *p = to;
    while (*p) {
        if (*p != '\\' || !p[1]) {
            p++;
            continue;
        }
        char c = p[1];
        if ((c >= '0' && c <= '9') || c == '\\') {
            if ((rc = s_buf_add(out, run, (size_t) (p - run), max)) != 0)
                return rc;
            if (c == '\\') {
                rc = s_buf_add(out, "\\", 1, max);
            } else {
                size_t g = (size_t) (c - '0');
                if (g <= nsub && m[g].rm_so >= 0)
                    rc = s_buf_add(out, text + m[g].rm_so, (size_t) (m[g].rm_eo - m[g].rm_so), max);
            }
            if (rc != 0)
                return rc;
            p += 2;
            run = p;
            continue;
        }
        p += 2;
    }
    return s_buf_add(out, run, (size_t) (p - run), max);
}

/* Regex mode (glibc REG_STARTEND: offsets are absolute and the text before
 * the start gives `^` its context). An empty match right after a match is
 * not replaced, as in sed's `g`. */
static int s_replace_regex(const walk_t *w, const buf_t *in, const rewrite_pair_t *pr,
                           const regex_t *re, buf_t *out, size_t *count)
{
    size_t max = (size_t) w->max_file;
    size_t pos = 0;
    size_t last_end = SIZE_MAX;
    int rc;
    out->len = 0;
    while (pos <= in->len) {
        regmatch_t m[S_NMATCH];
        m[0].rm_so = (regoff_t) pos;
        m[0].rm_eo = (regoff_t) in->len;
        int r = regexec(re, in->p, S_NMATCH, m, REG_STARTEND);
        if (r == REG_NOMATCH)
            break;
        if (r != 0)
            return GG_EINVAL;
        size_t so = (size_t) m[0].rm_so, eo = (size_t) m[0].rm_eo;
        if (so == eo && so == last_end) {
            if (so < in->len && (rc = s_buf_add(out, in->p + so, 1, max)) != 0)
                return rc;
            pos = so + 1;
            continue;
        }
        if ((rc = s_buf_add(out, in->p + pos, so - pos, max)) != 0 ||
            (rc = s_expand(pr->to, in->p, m, re->re_nsub, out, max)) != 0)
            return rc;
        (*count)++;
        last_end = eo;
        if (so == eo) {
            if (so < in->len && (rc = s_buf_add(out, in->p + so, 1, max)) != 0)
                return rc;
            pos = so + 1;
        } else {
            pos = eo;
        }
    }
    if (pos < in->len && (rc = s_buf_add(out, in->p + pos, in->len - pos, max)) != 0)
        return rc;
    return s_buf_terminate(out, max);
}

/* ---------------------------------------------------------------------------
 * Summary of one file: the changed lines, when the line structure allows a
 * one-to-one comparison.
 */

static size_t s_count_lines(const char *p, size_t n)
{
    size_t lines = 0;
    for (const char *q = p; (q = memchr(q, '\n', (size_t) (p + n - q))) != NULL; q++)
        lines++;
    return lines;
}

static void s_sum_line(walk_t *w, char sign, const char *p, size_t n)
{
    char line[S_SUMMARY_LINE + 8];
    size_t take = n > S_SUMMARY_LINE ? S_SUMMARY_LINE : n;
    line[0] = sign;
    memcpy(line + 1, p, take);
    size_t len = take + 1;
    if (take < n) {
        memcpy(line + len, "...", 3);
        len += 3;
    }
    line[len++] = '\n';
    s_sum(w, line, len);
}

static void s_summarize(walk_t *w, const char *old, size_t olen, const char *new, size_t nlen,
                        size_t count)
{
    s_sumf(w, "--- a/%s\n+++ b/%s\n@@ %zu replacement%s @@\n", w->rel, w->rel, count,
           count == 1 ? "" : "s");
    if (s_count_lines(old, olen) != s_count_lines(new, nlen)) {
        s_sum(w, " (lines added or removed)\n", strlen(" (lines added or removed)\n"));
        return;
    }
    size_t shown = 0, lineno = 1;
    const char *a = old, *b = new, *ae = old + olen, *be = new + nlen;
    while (a < ae && b < be) {
        const char *an = memchr(a, '\n', (size_t) (ae - a));
        const char *bn = memchr(b, '\n', (size_t) (be - b));
        size_t al = an ? (size_t) (an - a) : (size_t) (ae - a);
        size_t bl = bn ? (size_t) (bn - b) : (size_t) (be - b);
        if (al != bl || memcmp(a, b, al) != 0) {
            if (shown == S_SUMMARY_LINES) {
                s_sum(w, " ...\n", 5);
                return;
            }
            s_sumf(w, " line %zu:\n", lineno);
            s_sum_line(w, '-', a, al);
            s_sum_line(w, '+', b, bl);
            shown++;
        }
        a += al + 1;
        b += bl + 1;
        lineno++;
    }
}

/* ---------------------------------------------------------------------------
 * Files.
 */

static int s_write_atomic(walk_t *w, int dfd, const char *name, const struct stat *st,
                          const char *data, size_t len)
{
    char tmp[64];
    int fd = -1;
    int rc = GG_EIO;
    bool created = false;
    for (int attempt = 0; attempt < S_TMP_ATTEMPTS && fd < 0; attempt++) {
        snprintf(tmp, sizeof tmp, ".gaggle-rewrite-%d-%u.tmp", (int) getpid(), w->tmp_counter++);
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        s_err(w, "cannot create a temporary file next to %s: %s", w->rel, strerror(errno));
        goto out;
    }
    created = true;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            s_err(w, "cannot write %s: %s", w->rel, strerror(errno));
            rc = errno == ENOSPC ? GG_ENOSPC : GG_EIO;
            goto out;
        }
        done += (size_t) n;
    }
    if (fchmod(fd, st->st_mode & 07777) != 0) {
        s_err(w, "cannot set the mode of %s: %s", w->rel, strerror(errno));
        goto out;
    }
    if (geteuid() == 0 && fchown(fd, st->st_uid, st->st_gid) != 0) {
        s_err(w, "cannot set the owner of %s: %s", w->rel, strerror(errno));
        goto out;
    }
    if (fsync(fd) != 0) {
        s_err(w, "cannot sync %s: %s", w->rel, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        s_err(w, "cannot write %s: %s", w->rel, strerror(errno));
        goto out;
    }
    fd = -1;
    if (renameat(dfd, tmp, dfd, name) != 0) {
        s_err(w, "cannot replace %s: %s", w->rel, strerror(errno));
        goto out;
    }
    created = false;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (created)
        unlinkat(dfd, tmp, 0);
    return rc;
}

/* Reads a regular file into w->in (at most max_file bytes). Sets *large when
 * it is over the cap. */
static int s_read_file(walk_t *w, int fd, const struct stat *st, bool *large)
{
    *large = false;
    w->in.len = 0;
    if ((uint64_t) st->st_size > w->max_file) {
        *large = true;
        return 0;
    }
    int rc = s_buf_reserve(&w->in, (size_t) st->st_size + 1, (size_t) w->max_file + 1);
    if (rc != 0)
        return rc;
    for (;;) {
        if (w->in.len == w->in.cap) {
            if (w->in.len > w->max_file) {
                *large = true; /* grew while we read */
                return 0;
            }
            rc = s_buf_reserve(&w->in, w->in.cap + 65536, (size_t) w->max_file + 1);
            if (rc != 0) {
                *large = true;
                return 0;
            }
        }
        ssize_t n = read(fd, w->in.p + w->in.len, w->in.cap - w->in.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            s_err(w, "cannot read %s: %s", w->rel, strerror(errno));
            return GG_EIO;
        }
        if (n == 0)
            break;
        w->in.len += (size_t) n;
    }
    if (w->in.len > w->max_file) {
        *large = true;
        return 0;
    }
    return s_buf_terminate(&w->in, (size_t) w->max_file);
}

static int s_record_change(walk_t *w)
{
    rewrite_result_t *r = w->out;
    if (r->n_changed >= REWRITE_MAX_LISTED) {
        r->changed_truncated = true;
        return 0;
    }
    if (!r->changed) {
        r->changed = calloc(REWRITE_MAX_LISTED, sizeof *r->changed);
        if (!r->changed)
            return GG_ENOMEM;
    }
    if (!(r->changed[r->n_changed] = strdup(w->rel)))
        return GG_ENOMEM;
    r->n_changed++;
    return 0;
}

static int s_process_file(walk_t *w, int dfd, const char *name, bool *dir_dirty)
{
    const rewrite_spec_t *spec = w->spec;
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    int rc = 0;
    if (fd < 0) {
        if (errno == ELOOP || errno == ENOENT)
            return 0; /* became a link, or vanished, since fstatat */
        s_err(w, "cannot open %s: %s", w->rel, strerror(errno));
        return GG_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        goto out;
    w->out->files_matched++;
    bool large = false;
    if ((rc = s_read_file(w, fd, &st, &large)) != 0)
        goto out;
    if (large) {
        w->out->skipped_large++;
        s_sumf(w, "skipped %s: larger than %llu bytes\n", w->rel, (unsigned long long) w->max_file);
        goto out;
    }
    size_t probe = w->in.len < REWRITE_BINARY_PROBE ? w->in.len : REWRITE_BINARY_PROBE;
    if (memchr(w->in.p, '\0', probe)) {
        w->out->skipped_binary++;
        goto out;
    }
    w->out->files_scanned++;

    /* Pair after pair: the current text lives in `cur`, the next in `nxt`. */
    buf_t orig = w->in; /* kept intact for the summary */
    buf_t a = {0}, b = {0};
    const buf_t *cur = &orig;
    size_t count = 0;
    for (size_t i = 0; i < spec->n_replace; i++) {
        buf_t *nxt = (cur == &a) ? &b : &a;
        size_t c = 0;
        if (spec->mode == REWRITE_REGEX)
            rc = s_replace_regex(w, cur, &spec->replace[i], &w->res[i], nxt, &c);
        else
            rc = s_replace_text(w, cur, &spec->replace[i], spec->mode == REWRITE_WORD, nxt, &c);
        if (rc != 0) {
            if (rc == GG_ETOOBIG)
                s_err(w, "rewriting %s would make it larger than %llu bytes", w->rel,
                      (unsigned long long) w->max_file);
            else
                s_err(w, "rewriting %s failed: %s", w->rel, gg_strerror(rc));
            goto pairs_out;
        }
        if (c) {
            count += c;
            cur = nxt;
        }
    }
    if (count == 0 || (cur->len == orig.len && memcmp(cur->p, orig.p, orig.len) == 0))
        goto pairs_out;
    if (!spec->dry_run) {
        if ((rc = s_write_atomic(w, dfd, name, &st, cur->p, cur->len)) != 0)
            goto pairs_out;
        *dir_dirty = true;
    }
    w->out->files_changed++;
    w->out->replacements += count;
    s_summarize(w, orig.p, orig.len, cur->p, cur->len, count);
    rc = s_record_change(w);
pairs_out:
    free(a.p);
    free(b.p);
out:
    close(fd);
    return rc;
}

/* ---------------------------------------------------------------------------
 * The walk.
 */

static int s_cmp_names(const void *x, const void *y)
{
    return strcmp(*(char *const *) x, *(char *const *) y);
}

/* Lists a directory's entries, sorted, without "." and "..". */
static int s_list_dir(walk_t *w, int dfd, char ***names_out, size_t *n_out)
{
    int fd = dup(dfd);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    if (!dir) {
        if (fd >= 0)
            close(fd);
        s_err(w, "cannot read directory %s: %s", w->rel[0] ? w->rel : ".", strerror(errno));
        return GG_EIO;
    }
    rewinddir(dir);
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (++w->entries > REWRITE_MAX_ENTRIES) {
            s_err(w, "more than %d entries under the target's folder", REWRITE_MAX_ENTRIES);
            rc = GG_ETOOBIG;
            goto out;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (!nn) {
                rc = GG_ENOMEM;
                goto out;
            }
            names = nn;
            cap = ncap;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = GG_ENOMEM;
            goto out;
        }
        n++;
    }
    if (n)
        qsort(names, n, sizeof *names, s_cmp_names);
out:
    closedir(dir);
    if (rc != 0) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        return rc;
    }
    *names_out = names;
    *n_out = n;
    return 0;
}

static int s_walk(walk_t *w, int dfd, const bool *states, int depth)
{
    char **names = NULL;
    size_t n = 0;
    size_t rel_len = strlen(w->rel);
    bool *next = malloc(w->state_size);
    bool dir_dirty = false;
    int rc = 0;
    if (!next)
        return GG_ENOMEM;
    if ((rc = s_list_dir(w, dfd, &names, &n)) != 0)
        goto out;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *name = names[i];
        int len =
            snprintf(w->rel + rel_len, sizeof w->rel - rel_len, "%s%s", rel_len ? "/" : "", name);
        if (len < 0 || (size_t) len >= sizeof w->rel - rel_len) {
            s_err(w, "path too long under %s", w->rel);
            rc = GG_ETOOBIG;
            break;
        }
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue; /* vanished */
        if (S_ISLNK(st.st_mode)) {
            w->out->skipped_links++;
            continue;
        }
        if (!strcmp(name, ".git"))
            continue;
        bool alive = false, matched = false;
        for (size_t k = 0; k < w->spec->n_paths; k++) {
            const pat_t *p = &w->pats[k];
            bool *nk = next + w->state_off[k];
            s_step(p, states + w->state_off[k], name, nk);
            alive = alive || s_alive(p, nk);
            matched = matched || nk[p->n];
        }
        if (S_ISDIR(st.st_mode)) {
            if (!alive)
                continue;
            if (depth + 1 > REWRITE_MAX_DEPTH) {
                s_err(w, "%s is nested deeper than %d directories", w->rel, REWRITE_MAX_DEPTH);
                rc = GG_ETOOBIG;
                break;
            }
            int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                if (errno == ELOOP || errno == ENOENT || errno == ENOTDIR)
                    continue;
                s_err(w, "cannot open directory %s: %s", w->rel, strerror(errno));
                rc = GG_EIO;
                break;
            }
            rc = s_walk(w, sub, next, depth + 1);
            close(sub);
        } else if (S_ISREG(st.st_mode) && matched) {
            rc = s_process_file(w, dfd, name, &dir_dirty);
        }
    }
    w->rel[rel_len] = '\0';
    if (dir_dirty && fsync(dfd) != 0 && rc == 0) {
        s_err(w, "cannot sync directory %s: %s", rel_len ? w->rel : ".", strerror(errno));
        rc = GG_EIO;
    }
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(next);
    return rc;
}

int rewrite_run(const rewrite_spec_t *spec, const char *root_dir, rewrite_result_t *out,
                char *errbuf, size_t errlen)
{
    walk_t w;
    int rc;
    int root = -1;
    bool *start = NULL;
    memset(&w, 0, sizeof w);
    if (!out)
        return GG_EINVAL;
    memset(out, 0, sizeof *out);
    if ((rc = rewrite_validate_spec(spec, errbuf, errlen)) != 0)
        return rc;
    w.spec = spec;
    w.out = out;
    w.errbuf = errbuf;
    w.errlen = errlen;
    w.max_file = spec->max_file_bytes ? spec->max_file_bytes : REWRITE_FILE_MAX_DEFAULT;
    if (w.max_file > SIZE_MAX / 4)
        w.max_file = SIZE_MAX / 4;

    rc = GG_ENOMEM;
    w.summary.p = calloc(1, 1);
    w.summary.cap = 1;
    w.pats = calloc(spec->n_paths, sizeof *w.pats);
    w.state_off = calloc(spec->n_paths, sizeof *w.state_off);
    if (!w.summary.p || !w.pats || !w.state_off)
        goto out;
    for (size_t k = 0; k < spec->n_paths; k++) {
        if (s_pat_compile(spec->paths[k], &w.pats[k]) != 0)
            goto out;
        w.state_off[k] = w.state_size;
        w.state_size += w.pats[k].n + 1;
    }
    if (spec->mode == REWRITE_REGEX) {
        w.res = calloc(spec->n_replace, sizeof *w.res);
        if (!w.res)
            goto out;
        for (; w.n_res < spec->n_replace; w.n_res++) {
            rc = s_compile_regex(w.n_res, spec->replace[w.n_res].from, &w.res[w.n_res], errbuf,
                                 errlen);
            if (rc != 0)
                goto out;
        }
    }
    start = malloc(w.state_size);
    if (!start) {
        rc = GG_ENOMEM;
        goto out;
    }
    for (size_t k = 0; k < spec->n_paths; k++)
        s_start(&w.pats[k], start + w.state_off[k]);

    if (!root_dir) {
        s_err(&w, "no target folder");
        rc = GG_EINVAL;
        goto out;
    }
    root = open(root_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) {
        s_err(&w, "cannot open the target's folder %s: %s", root_dir, strerror(errno));
        rc = errno == ENOENT || errno == ENOTDIR ? GG_EINVAL : GG_EIO;
        goto out;
    }
    rc = s_walk(&w, root, start, 0);
out:
    if (root >= 0)
        close(root);
    free(start);
    for (size_t i = 0; i < w.n_res; i++)
        regfree(&w.res[i]);
    free(w.res);
    for (size_t k = 0; w.pats && k < spec->n_paths; k++)
        s_pat_free(&w.pats[k]);
    free(w.pats);
    free(w.state_off);
    free(w.in.p);
    out->summary = w.summary.p;
    return rc;
}

void rewrite_result_clear(rewrite_result_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_changed; i++)
        free(r->changed[i]);
    free(r->changed);
    free(r->summary);
    memset(r, 0, sizeof *r);
}
