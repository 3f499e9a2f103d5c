/* test_template.c: placeholder expansion, syntax errors, and shell quoting
 * that keeps hostile values literal when the command runs through /bin/sh. */
#include "gg_error.h"
#include "gg_test.h"
#include "template.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Variables for the tests: name=value pairs, NULL-terminated. */
static const char *s_vars[] = {
    "target.ref", "component:default/x",
    "vars.from",  "user_ds_v1",
    "vars.to",    "user_ds_v2",
    "empty",      "",
    "x",          "X",
    NULL,
};

static const char *s_value; /* "hostile" resolves to this */

static int s_lookup(void *arg, const char *name, const char **value)
{
    (void) arg;
    if (!strcmp(name, "hostile")) {
        *value = s_value;
        return 0;
    }
    if (!strcmp(name, "broken"))
        return GG_EIO;
    for (size_t i = 0; s_vars[i]; i += 2) {
        if (!strcmp(s_vars[i], name)) {
            *value = s_vars[i + 1];
            return 0;
        }
    }
    return GG_ENOTFOUND;
}

static void test_expand_raw(void)
{
    char *out = NULL;
    CHECK_EQ_INT(
        template_expand("from {{vars.from}} to {{ vars.to }}!", s_lookup, NULL, TEMPLATE_RAW, &out),
        0);
    CHECK_STR(out, "from user_ds_v1 to user_ds_v2!");
    free(out);
    CHECK_EQ_INT(template_expand("", s_lookup, NULL, TEMPLATE_RAW, &out), 0);
    CHECK_STR(out, "");
    free(out);
    CHECK_EQ_INT(template_expand("no placeholders }} here", s_lookup, NULL, TEMPLATE_RAW, &out), 0);
    CHECK_STR(out, "no placeholders }} here");
    free(out);
    CHECK_EQ_INT(template_expand("{{x}}{{x}}{{\tx\t}}", s_lookup, NULL, TEMPLATE_RAW, &out), 0);
    CHECK_STR(out, "XXX");
    free(out);
    CHECK_EQ_INT(template_expand("[{{empty}}]", s_lookup, NULL, TEMPLATE_RAW, &out), 0);
    CHECK_STR(out, "[]");
    free(out);
}

static void test_expand_shell(void)
{
    char *out = NULL;
    CHECK_EQ_INT(
        template_expand("make -C {{target.ref}} [{{empty}}]", s_lookup, NULL, TEMPLATE_SHELL, &out),
        0);
    CHECK_STR(out, "make -C 'component:default/x' ['']");
    free(out);
    s_value = "it's";
    CHECK_EQ_INT(template_expand("echo {{hostile}}", s_lookup, NULL, TEMPLATE_SHELL, &out), 0);
    CHECK_STR(out, "echo 'it'\\''s'");
    free(out);
    CHECK_EQ_INT(template_shell_quote("a'b", 3, &out), 0);
    CHECK_STR(out, "'a'\\''b'");
    free(out);
    CHECK_EQ_INT(template_shell_quote("a\0b", 3, &out), GG_EINVAL);
    CHECK(out == NULL);
}

static void test_errors(void)
{
    char *out = (char *) 1;
    char err[256];
    CHECK_EQ_INT(template_expand_err("run {{vars.nope}}", s_lookup, NULL, TEMPLATE_RAW, &out, err,
                                     sizeof err),
                 GG_ENOTFOUND);
    CHECK(out == NULL);
    CHECK(strstr(err, "{{vars.nope}}") != NULL);
    CHECK_EQ_INT(
        template_expand_err("run {{x", s_lookup, NULL, TEMPLATE_RAW, &out, err, sizeof err),
        GG_EINVAL);
    CHECK(strstr(err, "unterminated") != NULL);
    CHECK_EQ_INT(
        template_expand_err("run {{}}", s_lookup, NULL, TEMPLATE_RAW, &out, err, sizeof err),
        GG_EINVAL);
    CHECK_EQ_INT(
        template_expand_err("run {{ a b }}", s_lookup, NULL, TEMPLATE_RAW, &out, err, sizeof err),
        GG_EINVAL);
    CHECK_EQ_INT(
        template_expand_err("run {{$(id)}}", s_lookup, NULL, TEMPLATE_RAW, &out, err, sizeof err),
        GG_EINVAL);
    CHECK_EQ_INT(
        template_expand_err("{{broken}}", s_lookup, NULL, TEMPLATE_RAW, &out, err, sizeof err),
        GG_EIO);
    CHECK(out == NULL);
    /* template_check reports the same errors without building anything. */
    CHECK_EQ_INT(template_check("ok {{x}} then {{y}}", s_lookup, NULL, err, sizeof err),
                 GG_ENOTFOUND);
    CHECK(strstr(err, "{{y}}") != NULL);
    CHECK_EQ_INT(template_check("ok {{x}}", s_lookup, NULL, err, sizeof err), 0);
    CHECK_EQ_INT(template_check("ok {{x", s_lookup, NULL, err, sizeof err), GG_EINVAL);
    CHECK_EQ_INT(template_check(NULL, s_lookup, NULL, err, sizeof err), 0);
}

static void test_too_big(void)
{
    size_t n = TEMPLATE_OUTPUT_MAX / 2 + 10;
    char *big = malloc(n + 1);
    REQUIRE(big);
    memset(big, 'a', n);
    big[n] = '\0';
    s_value = big;
    char *out = NULL;
    CHECK_EQ_INT(template_expand("{{hostile}}", s_lookup, NULL, TEMPLATE_RAW, &out), 0);
    free(out);
    out = NULL;
    CHECK_EQ_INT(template_expand("{{hostile}}{{hostile}}", s_lookup, NULL, TEMPLATE_RAW, &out),
                 GG_ETOOBIG);
    CHECK(out == NULL);
    free(big);
}

/* Runs cmd with /bin/sh -c, PATH pointing nowhere (so an injected external
 * command could not run even if quoting failed), in dir; returns its stdout. */
static char *s_sh(const char *cmd, const char *dir, int *status)
{
    int fds[2];
    if (pipe(fds) != 0)
        return NULL;
    pid_t pid = fork();
    if (pid < 0)
        return NULL;
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        if (chdir(dir) != 0)
            _exit(126);
        char *const argv[] = {"sh", "-c", (char *) cmd, NULL};
        char *const envp[] = {"PATH=/nonexistent-gaggle-path", "HOME=/nonexistent", NULL};
        execve("/bin/sh", argv, envp);
        _exit(127);
    }
    close(fds[1]);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t n;
    while (buf && (n = read(fds[0], buf + len, cap - len - 1)) > 0)
        len += (size_t) n;
    close(fds[0]);
    waitpid(pid, status, 0);
    if (buf)
        buf[len] = '\0';
    return buf;
}

static void test_injection(void)
{
    static const char *hostile[] = {
        "$(rm -rf /)",
        "`rm -rf /`",
        "$(echo pwned > marker)",
        "`echo pwned > marker`",
        "; echo pwned > marker",
        "&& echo pwned > marker",
        "| echo pwned > marker",
        "'; echo pwned > marker; echo '",
        "\"; echo pwned > marker; echo \"",
        "a'b\"c\\d",
        "line1\necho pwned > marker\nline3",
        "$HOME ${HOME} $0 $$ * ? [a] ~",
        "'",
        "''",
        "\\'",
        "trailing newline\n",
        "",
        "-n",
        "\t tabs and spaces  ",
    };
    char dir[] = "/tmp/gaggle-template-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    char marker[sizeof dir + 16];
    snprintf(marker, sizeof marker, "%s/marker", dir);
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        s_value = hostile[i];
        char *cmd = NULL;
        REQUIRE(template_expand("printf '%s' {{hostile}}", s_lookup, NULL, TEMPLATE_SHELL, &cmd) ==
                0);
        int status = -1;
        char *out = s_sh(cmd, dir, &status);
        REQUIRE(out != NULL);
        if (strcmp(out, hostile[i]) != 0)
            fprintf(stderr, "value %zu came out as [%s] from [%s]\n", i, out, cmd);
        CHECK_STR(out, hostile[i]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK(access(marker, F_OK) != 0);
        free(out);
        free(cmd);
    }
    /* The same value unquoted (RAW) does run: the test can tell. */
    s_value = "$(echo pwned > marker)";
    char *cmd = NULL;
    REQUIRE(template_expand("printf '%s' {{hostile}}", s_lookup, NULL, TEMPLATE_RAW, &cmd) == 0);
    int status = -1;
    free(s_sh(cmd, dir, &status));
    free(cmd);
    CHECK(access(marker, F_OK) == 0);
    unlink(marker);
    rmdir(dir);
}

int main(void)
{
    GG_RUN(test_expand_raw);
    GG_RUN(test_expand_shell);
    GG_RUN(test_errors);
    GG_RUN(test_too_big);
    GG_RUN(test_injection);
    GG_DONE();
}
