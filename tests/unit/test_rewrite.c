/* test_rewrite.c: the built-in rewrite step on real files in a temporary tree:
 * modes, globs, what is skipped (.git, links, binary, large), atomic
 * replacement keeping the mode, idempotence and spec validation. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gg_error.h"
#include "gg_test.h"
#include "rewrite.h"

static char s_root[256];

static void s_mkdirs(const char *rel)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", s_root, rel);
    for (char *p = path + strlen(s_root) + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    }
    mkdir(path, 0755);
}

static void s_write(const char *rel, const char *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", s_root, rel);
    char *slash = strrchr(path, '/');
    if (slash && slash > path + strlen(s_root)) {
        *slash = '\0';
        s_mkdirs(path + strlen(s_root) + 1);
        *slash = '/';
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        return;
    fwrite(data, 1, len, f);
    fclose(f);
}

static void s_put(const char *rel, const char *text)
{
    s_write(rel, text, strlen(text));
}

/* Reads a file under the root (or an absolute path) into a static buffer. */
static const char *s_get(const char *rel)
{
    static char buf[65536];
    char path[512];
    if (rel[0] == '/')
        snprintf(path, sizeof path, "%s", rel);
    else
        snprintf(path, sizeof path, "%s/%s", s_root, rel);
    FILE *f = fopen(path, "rb");
    if (!f)
        return "(missing)";
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void s_fresh_root(void)
{
    if (s_root[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_root);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", s_root);
    }
    snprintf(s_root, sizeof s_root, "/tmp/gg-rewrite-XXXXXX");
    if (!mkdtemp(s_root))
        s_root[0] = '\0';
}

static int s_run1(const char *pattern, const char *from, const char *to, rewrite_mode_t mode,
                  rewrite_result_t *r, char *err, size_t errlen)
{
    const char *paths[] = {pattern};
    rewrite_pair_t pairs[] = {{from, to}};
    rewrite_spec_t spec = {
        .paths = paths, .n_paths = 1, .replace = pairs, .n_replace = 1, .mode = mode};
    return rewrite_run(&spec, s_root, r, err, errlen);
}

static void test_literal(void)
{
    s_fresh_root();
    REQUIRE(s_root[0]);
    s_put("q.sql", "select * from user_ds_v1;\nselect * from user_ds_v10;\n");
    rewrite_result_t r;
    char err[256];
    CHECK_EQ_INT(s_run1("*.sql", "user_ds_v1", "user_ds_v2", REWRITE_LITERAL, &r, err, sizeof err),
                 0);
    CHECK_STR(s_get("q.sql"), "select * from user_ds_v2;\nselect * from user_ds_v20;\n");
    CHECK_EQ_INT(r.files_changed, 1);
    CHECK_EQ_INT(r.replacements, 2);
    CHECK_EQ_INT(r.n_changed, 1);
    if (r.n_changed == 1)
        CHECK_STR(r.changed[0], "q.sql");
    REQUIRE(r.summary);
    CHECK(strstr(r.summary, "--- a/q.sql") != NULL);
    CHECK(strstr(r.summary, "-select * from user_ds_v1;\n+select * from user_ds_v2;\n") != NULL);
    rewrite_result_clear(&r);
    CHECK(r.summary == NULL && r.changed == NULL);
}

static void test_word(void)
{
    s_fresh_root();
    s_put("q.sql", "from user_ds_v1 join user_ds_v10 on x.user_ds_v1=y; (user_ds_v1)\n"
                   "xuser_ds_v1 user_ds_v1_old user_ds_v1");
    rewrite_result_t r;
    char err[256];
    CHECK_EQ_INT(s_run1("q.sql", "user_ds_v1", "user_ds_v2", REWRITE_WORD, &r, err, sizeof err), 0);
    CHECK_STR(s_get("q.sql"), "from user_ds_v2 join user_ds_v10 on x.user_ds_v2=y; (user_ds_v2)\n"
                              "xuser_ds_v1 user_ds_v1_old user_ds_v2");
    CHECK_EQ_INT(r.replacements, 4);
    rewrite_result_clear(&r);
}

static void test_regex(void)
{
    s_fresh_root();
    s_put("a.yaml", "table: user_ds_v1\nother: user_ds_v12\nname: keep\n");
    rewrite_result_t r;
    char err[256];
    CHECK_EQ_INT(s_run1("*.yaml", "user_ds_v([0-9]+)", "users_\\1_new(\\0)\\\\", REWRITE_REGEX, &r,
                        err, sizeof err),
                 0);
    CHECK_STR(s_get("a.yaml"), "table: users_1_new(user_ds_v1)\\\nother: users_12_new(user_ds_v12)"
                               "\\\nname: keep\n");
    CHECK_EQ_INT(r.replacements, 2);
    rewrite_result_clear(&r);

    /* Anchors work per line (REG_NEWLINE) even when the search restarts mid-text. */
    s_put("b.txt", "x1\nx2\nax3\n");
    CHECK_EQ_INT(s_run1("b.txt", "^x", "y", REWRITE_REGEX, &r, err, sizeof err), 0);
    CHECK_STR(s_get("b.txt"), "y1\ny2\nax3\n");
    rewrite_result_clear(&r);

    /* Empty matches behave as sed's s///g. */
    s_put("c.txt", "abc");
    CHECK_EQ_INT(s_run1("c.txt", "b*", "X", REWRITE_REGEX, &r, err, sizeof err), 0);
    CHECK_STR(s_get("c.txt"), "XaXcX");
    rewrite_result_clear(&r);

    /* Groups that did not take part expand to nothing. */
    s_put("d.txt", "k=v\nk\n");
    CHECK_EQ_INT(s_run1("d.txt", "^k(=v)?$", "K\\1", REWRITE_REGEX, &r, err, sizeof err), 0);
    CHECK_STR(s_get("d.txt"), "K=v\nK\n");
    rewrite_result_clear(&r);
}

static void test_ordered_pairs_and_dry_run(void)
{
    s_fresh_root();
    s_put("f.txt", "a b c");
    const char *paths[] = {"f.txt"};
    rewrite_pair_t pairs[] = {{"a", "b"}, {"b", "c"}};
    rewrite_spec_t spec = {
        .paths = paths, .n_paths = 1, .replace = pairs, .n_replace = 2, .dry_run = true};
    rewrite_result_t r;
    char err[256];
    CHECK_EQ_INT(rewrite_run(&spec, s_root, &r, err, sizeof err), 0);
    CHECK_STR(s_get("f.txt"), "a b c");
    CHECK_EQ_INT(r.files_changed, 1);
    CHECK_EQ_INT(r.replacements, 3); /* a->b once, then b->c twice */
    rewrite_result_clear(&r);
    spec.dry_run = false;
    CHECK_EQ_INT(rewrite_run(&spec, s_root, &r, err, sizeof err), 0);
    CHECK_STR(s_get("f.txt"), "c c c");
    rewrite_result_clear(&r);
}

static void test_glob(void)
{
    CHECK(rewrite_glob_match("**/*.sql", "a.sql"));
    CHECK(rewrite_glob_match("**/*.sql", "x/y/z/a.sql"));
    CHECK(!rewrite_glob_match("**/*.sql", "x/a.sqlx"));
    CHECK(rewrite_glob_match("config/*.yaml", "config/a.yaml"));
    CHECK(!rewrite_glob_match("config/*.yaml", "config/sub/a.yaml"));
    CHECK(!rewrite_glob_match("config/*.yaml", "other/config/a.yaml"));
    CHECK(rewrite_glob_match("src/**/test_?.[ch]", "src/test_a.c"));
    CHECK(rewrite_glob_match("src/**/test_?.[ch]", "src/a/b/test_b.h"));
    CHECK(!rewrite_glob_match("src/**/test_?.[ch]", "src/a/test_ab.c"));
    CHECK(rewrite_glob_match("**", "any/depth/file"));
    CHECK(rewrite_glob_match("a/**/b/**/c", "a/b/c"));
    CHECK(rewrite_glob_match("a/**/b/**/c", "a/x/b/y/z/c"));
    CHECK(!rewrite_glob_match("a/**/b/**/c", "a/x/y/c"));
    CHECK(rewrite_glob_match("*.yaml", ".hidden.yaml"));

    s_fresh_root();
    s_put("a.sql", "v1");
    s_put("x/b.sql", "v1");
    s_put("x/y/z/c.sql", "v1");
    s_put("x/d.txt", "v1");
    s_put("config/a.yaml", "v1");
    s_put("config/sub/b.yaml", "v1");
    const char *paths[] = {"**/*.sql", "config/*.yaml"};
    rewrite_pair_t pairs[] = {{"v1", "v2"}};
    rewrite_spec_t spec = {.paths = paths, .n_paths = 2, .replace = pairs, .n_replace = 1};
    rewrite_result_t r;
    char err[256];
    CHECK_EQ_INT(rewrite_run(&spec, s_root, &r, err, sizeof err), 0);
    CHECK_EQ_INT(r.files_changed, 4);
    CHECK_EQ_INT(r.n_changed, 4);
    if (r.n_changed == 4) { /* walk order is sorted */
        CHECK_STR(r.changed[0], "a.sql");
        CHECK_STR(r.changed[1], "config/a.yaml");
        CHECK_STR(r.changed[2], "x/b.sql");
        CHECK_STR(r.changed[3], "x/y/z/c.sql");
    }
    CHECK_STR(s_get("x/y/z/c.sql"), "v2");
    CHECK_STR(s_get("x/d.txt"), "v1");
    CHECK_STR(s_get("config/sub/b.yaml"), "v1");
    rewrite_result_clear(&r);
}

static void test_skips_git_links_binary_large(void)
{
    s_fresh_root();
    char outside[256];
    snprintf(outside, sizeof outside, "/tmp/gg-rewrite-out-XXXXXX");
    REQUIRE(mkdtemp(outside));
    char outfile[300], link[600], dirlink[600];
    snprintf(outfile, sizeof outfile, "%s/secret.txt", outside);
    FILE *f = fopen(outfile, "w");
    REQUIRE(f);
    fputs("v1 outside", f);
    fclose(f);

    s_put(".git/config", "v1");
    s_put("sub/.git", "gitdir: v1");
    s_put("plain.txt", "v1 inside");
    s_write("blob.bin", "v1\0v1", 5);
    char big[300];
    memset(big, 'v', sizeof big);
    s_write("big.txt", big, sizeof big);
    snprintf(link, sizeof link, "%s/link.txt", s_root);
    REQUIRE(symlink(outfile, link) == 0);
    snprintf(dirlink, sizeof dirlink, "%s/linkdir", s_root);
    REQUIRE(symlink(outside, dirlink) == 0);

    const char *paths[] = {"**"};
    rewrite_pair_t pairs[] = {{"v1", "v2"}, {"vvv", "www"}};
    rewrite_spec_t spec = {
        .paths = paths, .n_paths = 1, .replace = pairs, .n_replace = 2, .max_file_bytes = 200};
    rewrite_result_t r;
    char err[256];
    CHECK_EQ_INT(rewrite_run(&spec, s_root, &r, err, sizeof err), 0);
    CHECK_STR(s_get(".git/config"), "v1");
    CHECK_STR(s_get("sub/.git"), "gitdir: v1");
    CHECK_STR(s_get("plain.txt"), "v2 inside");
    CHECK_STR(s_get(outfile), "v1 outside");
    CHECK_EQ_INT(r.files_changed, 1);
    CHECK_EQ_INT(r.skipped_links, 2);
    CHECK_EQ_INT(r.skipped_binary, 1);
    CHECK_EQ_INT(r.skipped_large, 1);
    CHECK(r.summary && strstr(r.summary, "skipped big.txt") != NULL);
    struct stat st;
    CHECK(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
    char blob[8] = {0};
    int fd = open(link, O_RDONLY); /* through the link: the outside file */
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(read(fd, blob, sizeof blob - 1) > 0);
        close(fd);
    }
    CHECK(strncmp(blob, "v1", 2) == 0);
    rewrite_result_clear(&r);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", outside);
    CHECK(system(cmd) == 0);
}

static void test_atomic_keeps_mode_and_idempotent(void)
{
    s_fresh_root();
    s_put("run.sh", "#!/bin/sh\necho user_ds_v1\n");
    char path[300];
    snprintf(path, sizeof path, "%s/run.sh", s_root);
    REQUIRE(chmod(path, 0751) == 0);
    struct stat before, after;
    REQUIRE(stat(path, &before) == 0);
    rewrite_result_t r;
    char err[256];
    CHECK_EQ_INT(s_run1("*.sh", "user_ds_v1", "user_ds_v2", REWRITE_LITERAL, &r, err, sizeof err),
                 0);
    CHECK_EQ_INT(r.files_changed, 1);
    rewrite_result_clear(&r);
    REQUIRE(stat(path, &after) == 0);
    CHECK_EQ_INT(after.st_mode & 07777, 0751);
    CHECK(after.st_ino != before.st_ino); /* replaced by rename, not rewritten in place */
    CHECK_STR(s_get("run.sh"), "#!/bin/sh\necho user_ds_v2\n");
    /* No temporary file left behind. */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", s_root);
    CHECK(system(cmd) == 0);

    /* A second run finds nothing to do and does not touch the file. */
    CHECK_EQ_INT(s_run1("*.sh", "user_ds_v1", "user_ds_v2", REWRITE_LITERAL, &r, err, sizeof err),
                 0);
    CHECK_EQ_INT(r.files_scanned, 1);
    CHECK_EQ_INT(r.files_changed, 0);
    CHECK_EQ_INT(r.replacements, 0);
    CHECK_EQ_INT(r.n_changed, 0);
    rewrite_result_clear(&r);
    struct stat again;
    REQUIRE(stat(path, &again) == 0);
    CHECK(again.st_ino == after.st_ino);

    /* Replacing text by itself is no change: the file is left alone. */
    CHECK_EQ_INT(s_run1("*.sh", "echo", "echo", REWRITE_LITERAL, &r, err, sizeof err), 0);
    CHECK_EQ_INT(r.files_changed, 0);
    CHECK_EQ_INT(r.replacements, 0);
    rewrite_result_clear(&r);
    REQUIRE(stat(path, &again) == 0);
    CHECK(again.st_ino == after.st_ino);

    /* Same for word and regex modes. */
    CHECK_EQ_INT(
        s_run1("*.sh", "user_ds_v([0-9])", "user_ds_x\\1", REWRITE_REGEX, &r, err, sizeof err), 0);
    CHECK_EQ_INT(r.files_changed, 1);
    rewrite_result_clear(&r);
    CHECK_EQ_INT(
        s_run1("*.sh", "user_ds_v([0-9])", "user_ds_x\\1", REWRITE_REGEX, &r, err, sizeof err), 0);
    CHECK_EQ_INT(r.files_changed, 0);
    rewrite_result_clear(&r);
}

static void test_validation(void)
{
    char err[256];
    rewrite_result_t r;
    rewrite_pair_t ok_pair[] = {{"a", "b"}};
    const char *bad_paths[] = {"../x", "a/../b", "/etc/passwd", "a//b", "./a", "", "a/"};
    for (size_t i = 0; i < sizeof bad_paths / sizeof *bad_paths; i++) {
        const char *paths[] = {bad_paths[i]};
        rewrite_spec_t spec = {.paths = paths, .n_paths = 1, .replace = ok_pair, .n_replace = 1};
        err[0] = '\0';
        CHECK_EQ_INT(rewrite_validate_spec(&spec, err, sizeof err), GG_EINVAL);
        CHECK(strstr(err, "paths[0]") != NULL);
    }
    {
        const char *paths[] = {"../x"};
        rewrite_spec_t spec = {.paths = paths, .n_paths = 1, .replace = ok_pair, .n_replace = 1};
        CHECK_EQ_INT(rewrite_validate_spec(&spec, err, sizeof err), GG_EINVAL);
        CHECK(strstr(err, "leaves the target's folder") != NULL);
        s_fresh_root();
        CHECK_EQ_INT(rewrite_run(&spec, s_root, &r, err, sizeof err), GG_EINVAL);
        rewrite_result_clear(&r);
    }
    const char *paths[] = {"**/*.sql"};
    rewrite_pair_t bad_re[] = {{"user_(", "x"}};
    rewrite_spec_t spec = {
        .paths = paths, .n_paths = 1, .replace = bad_re, .n_replace = 1, .mode = REWRITE_REGEX};
    CHECK_EQ_INT(rewrite_validate_spec(&spec, err, sizeof err), GG_EINVAL);
    CHECK(strstr(err, "replace[0]: invalid regular expression \"user_(\"") != NULL);
    /* The same text is fine as a literal. */
    spec.mode = REWRITE_LITERAL;
    CHECK_EQ_INT(rewrite_validate_spec(&spec, err, sizeof err), 0);

    rewrite_pair_t bad_ref[] = {{"a(b)", "\\2"}};
    spec.replace = bad_ref;
    spec.mode = REWRITE_REGEX;
    CHECK_EQ_INT(rewrite_validate_spec(&spec, err, sizeof err), GG_EINVAL);
    CHECK(strstr(err, "\\2 refers to a group") != NULL);

    rewrite_pair_t empty_from[] = {{"", "x"}};
    spec.replace = empty_from;
    spec.mode = REWRITE_LITERAL;
    CHECK_EQ_INT(rewrite_validate_spec(&spec, err, sizeof err), GG_EINVAL);
    spec.n_replace = 0;
    CHECK_EQ_INT(rewrite_validate_spec(&spec, err, sizeof err), GG_EINVAL);
    spec.replace = ok_pair;
    spec.n_replace = 1;
    spec.n_paths = 0;
    CHECK_EQ_INT(rewrite_validate_spec(&spec, err, sizeof err), GG_EINVAL);
    CHECK_EQ_INT(rewrite_validate_spec(NULL, err, sizeof err), GG_EINVAL);

    /* A missing root is an error, not a crash. */
    spec.n_paths = 1;
    CHECK_EQ_INT(rewrite_run(&spec, "/nonexistent/gg-rewrite", &r, err, sizeof err), GG_EINVAL);
    CHECK(strstr(err, "/nonexistent/gg-rewrite") != NULL);
    rewrite_result_clear(&r);
}

static void test_growth_cap(void)
{
    s_fresh_root();
    s_put("g.txt", "aaaaaaaaaa");
    const char *paths[] = {"g.txt"};
    rewrite_pair_t pairs[] = {{"a", "aaaaaaaaaaaaaaaaaaaa"}};
    rewrite_spec_t spec = {
        .paths = paths, .n_paths = 1, .replace = pairs, .n_replace = 1, .max_file_bytes = 100};
    rewrite_result_t r;
    char err[256];
    CHECK_EQ_INT(rewrite_run(&spec, s_root, &r, err, sizeof err), GG_ETOOBIG);
    CHECK(strstr(err, "g.txt") != NULL);
    CHECK_STR(s_get("g.txt"), "aaaaaaaaaa");
    rewrite_result_clear(&r);
}

int main(void)
{
    GG_RUN(test_literal);
    GG_RUN(test_word);
    GG_RUN(test_regex);
    GG_RUN(test_ordered_pairs_and_dry_run);
    GG_RUN(test_glob);
    GG_RUN(test_skips_git_links_binary_large);
    GG_RUN(test_atomic_keeps_mode_and_idempotent);
    GG_RUN(test_validation);
    GG_RUN(test_growth_cap);
    if (s_root[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_root);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", s_root);
    }
    GG_DONE();
}
