/*
 * gaggle.c: the `gaggle` CLI's main: global flags, then one table of
 * commands. A new command is one line in s_commands (name, function, one-line
 * help, usage); `gaggle help` lists exactly what the table holds.
 *
 *   gaggle [--addr IP:PORT] [--json] COMMAND [ARGS]
 *
 * Global flags may also follow the command; they are removed from argv
 * before the command runs. `gaggle CMD --help` prints the command's usage
 * (a command with no usage in the table prints its own).
 */
#include "cli.h"
#include "cmd_cert.h"
#include "cmd_keygen.h"
#include "cmd_members.h"
#include "cmd_ops.h"
#include "cmd_plan.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    cli_command_fn *fn;
    const char *help;  /* one line for `gaggle help` */
    const char *usage; /* full usage; NULL: the command handles --help */
} s_command_t;

static int s_cmd_help(int argc, char **argv);
static int s_cmd_keygen(int argc, char **argv);
static int s_cmd_status(int argc, char **argv);
static int s_cmd_version(int argc, char **argv);

static const s_command_t s_commands[] = {
    {"approve", cmd_approve, "approve a plan's gated targets (operator-signed)", cmd_approve_usage},
    {"audit", cmd_audit, "every signed command the fleet has accepted", cmd_audit_usage},
    {"cert", cmd_cert, "revoke a node certificate fleet-wide (operator-signed)", cmd_cert_usage},
    {"drain", cmd_drain, "stop a node taking new targets (operator-signed)", cmd_drain_usage},
    {"force-leave", cmd_force_leave, "declare a dead node gone for good (operator-signed)",
     cmd_force_leave_usage},
    {"keygen", s_cmd_keygen, "make operator key pairs and signed node certificates", NULL},
    {"logs", cmd_logs, "a target's step output, from whichever node ran it", cmd_logs_usage},
    {"members", cmd_members, "every member of the fleet and its state", cmd_members_usage},
    {"plan", cmd_plan, "validate, apply, list, show, watch and steer migration plans",
     cmd_plan_usage},
    {"report", cmd_report, "a plan's migration report (Markdown or JSON)", cmd_report_usage},
    {"status", s_cmd_status, "one screen: this node, members, plans, what needs a human",
     "usage: gaggle status [--addr IP:PORT] [--json]\n\n"
     "Shows the local agent's node name and id, the members and their states, every\n"
     "plan with its progress, and what needs a human: paused plans and targets that\n"
     "failed, need review or await approval.\n"
     "--json prints the agent's /v1/status answer as is.\n"},
    {"version", s_cmd_version, "print the CLI's version", "usage: gaggle version [--json]\n"},
    {"help", s_cmd_help, "list the commands, or show one command's usage",
     "usage: gaggle help [COMMAND]\n"},
};

#define S_COMMAND_COUNT (sizeof s_commands / sizeof s_commands[0])

static const s_command_t *s_find(const char *name)
{
    for (size_t i = 0; i < S_COMMAND_COUNT; i++)
        if (strcmp(s_commands[i].name, name) == 0)
            return &s_commands[i];
    return NULL;
}

static void s_usage(FILE *out)
{
    fprintf(out,
            "usage: gaggle [--addr IP:PORT] [--json] COMMAND [ARGS]\n\n"
            "Talks to the local gaggled's HTTP API (--addr, default $GAGGLE_ADDR or "
            "%s).\n\ncommands:\n",
            CLI_DEFAULT_ADDR);
    for (size_t i = 0; i < S_COMMAND_COUNT; i++)
        fprintf(out, "  %-12s %s\n", s_commands[i].name, s_commands[i].help);
    fprintf(out, "\nglobal flags (also accepted after the command):\n"
                 "  --addr IP:PORT   the agent's HTTP address\n"
                 "  --json           machine-readable output\n"
                 "\nenvironment: GAGGLE_ADDR, GAGGLE_HTTP_TOKEN or GAGGLE_HTTP_TOKEN_FILE (the\n"
                 "bearer token when the agent runs with --http-token).\n"
                 "`gaggle COMMAND --help` shows a command's usage. Exit status: 0 success,\n"
                 "1 failure, 2 usage error.\n");
}

static int s_cmd_help(int argc, char **argv)
{
    if (argc > 2) {
        cli_fail("help takes at most one command (see gaggle help)");
        return CLI_EXIT_USAGE;
    }
    if (argc == 2) {
        const s_command_t *cmd = s_find(argv[1]);
        if (!cmd) {
            cli_fail("unknown command '%.100s' (see gaggle help)", argv[1]);
            return CLI_EXIT_USAGE;
        }
        if (cmd->usage) {
            fputs(cmd->usage, stdout);
            return CLI_EXIT_OK;
        }
        char *args[] = {(char *) cmd->name, "--help", NULL};
        return cmd->fn(2, args);
    }
    s_usage(stdout);
    return CLI_EXIT_OK;
}

/* keygen reads --json itself: hand it back the flag the globals took. */
static int s_cmd_keygen(int argc, char **argv)
{
    char **args = calloc((size_t) argc + 2, sizeof *args);
    if (!args) {
        cli_fail("out of memory");
        return CLI_EXIT_FAIL;
    }
    memcpy(args, argv, (size_t) argc * sizeof *args);
    if (cli_options()->json)
        args[argc++] = "--json";
    int rc = cmd_keygen(argc, args);
    free(args);
    return rc;
}

static int s_no_args(int argc, char **argv)
{
    if (argc > 1) {
        cli_fail("%s: unexpected argument '%.100s' (see gaggle %s --help)", argv[0], argv[1],
                 argv[0]);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

static int s_cmd_version(int argc, char **argv)
{
    int rc = s_no_args(argc, argv);
    if (rc)
        return rc;
    if (cli_options()->json) {
        json_t *v = json_pack("{s:s}", "version", GAGGLE_VERSION);
        rc = v ? cli_print_json(v) : CLI_EXIT_FAIL;
        json_decref(v);
        return rc;
    }
    printf("gaggle %s\n", GAGGLE_VERSION);
    return CLI_EXIT_OK;
}

#define S_STATUS_MEMBERS 20 /* members listed by name on the status screen */
#define S_STATUS_PLANS   20
#define S_STATUS_HUMAN   20

static const char *s_str(const json_t *o, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : dflt;
}

static void s_status_members(const json_t *members)
{
    static const char *const states[] = {"alive", "suspect", "dead", "left"};
    size_t n[4] = {0}, i;
    const json_t *m;
    json_array_foreach(members, i, m)
    {
        const char *st = s_str(m, "state", "");
        for (size_t k = 0; k < 4; k++)
            if (!strcmp(st, states[k]))
                n[k]++;
    }
    printf("members  %zu", json_array_size(members));
    const char *sep = " (";
    for (size_t k = 0; k < 4; k++)
        if (n[k]) {
            printf("%s%zu %s", sep, n[k], states[k]);
            sep = ", ";
        }
    printf("%s\n", json_array_size(members) ? ")" : "");
    json_array_foreach(members, i, m)
    {
        if (i >= S_STATUS_MEMBERS) {
            printf("  ... and %zu more (gaggle members)\n", json_array_size(members) - i);
            break;
        }
        printf("  %-24s %-8s %s%s%s\n", s_str(m, "name", "?"), s_str(m, "state", "?"),
               s_str(m, "address", "?"),
               json_is_true(json_object_get(m, "self")) ? "  (this node)" : "",
               json_is_true(json_object_get(m, "draining")) ? "  draining" : "");
    }
}

static void s_status_plans(const json_t *plans)
{
    size_t i;
    const json_t *p;
    printf("plans    %zu\n", json_array_size(plans));
    json_array_foreach(plans, i, p)
    {
        if (i >= S_STATUS_PLANS) {
            printf("  ... and %zu more (gaggle plan list)\n", json_array_size(plans) - i);
            break;
        }
        const json_t *counts = json_object_get(p, "counts");
        uint64_t total = (uint64_t) json_integer_value(json_object_get(p, "total"));
        uint64_t done = cmd_ops_done(counts);
        char bar[40], text[512];
        cmd_ops_bar(bar, sizeof bar, done, total, 20);
        cmd_ops_counts_text(counts, text, sizeof text);
        printf("  %-24s %-10s %s %3d%%  %llu/%llu  %s\n", s_str(p, "name", "?"),
               s_str(p, "state", "?"), bar, total ? (int) (done * 100 / total) : 100,
               (unsigned long long) done, (unsigned long long) total, text);
    }
}

/* Paused plans, then the targets the agent listed (bounded by the agent). */
static void s_status_human(const json_t *plans, const json_t *needs, json_int_t needs_total)
{
    size_t i, paused = 0, listed = json_array_size(needs);
    const json_t *p, *t;
    json_array_foreach(plans, i, p)
    {
        if (!strcmp(s_str(p, "state", ""), "paused"))
            paused++;
    }
    if (!paused && needs_total <= 0 && listed == 0) {
        printf("needs a human: nothing\n");
        return;
    }
    printf("needs a human:\n");
    json_array_foreach(plans, i, p)
    {
        if (strcmp(s_str(p, "state", ""), "paused"))
            continue;
        const char *reason = s_str(p, "paused_reason", NULL);
        printf("  plan %s is paused%s%s (gaggle plan resume %.12s)\n", s_str(p, "name", "?"),
               reason ? " by " : "", reason ? reason : "", s_str(p, "id", "?"));
    }
    if (listed > S_STATUS_HUMAN)
        listed = S_STATUS_HUMAN;
    for (i = 0; i < listed; i++) {
        t = json_array_get(needs, i);
        printf("  %-20s %-40s %-17s %s\n", s_str(t, "plan", "?"), s_str(t, "ref", "?"),
               s_str(t, "state", "?"), s_str(t, "error", ""));
    }
    if (needs_total > (json_int_t) listed)
        printf("  ... and %lld more (gaggle plan show ID)\n",
               (long long) (needs_total - (json_int_t) listed));
}

static int s_cmd_status(int argc, char **argv)
{
    json_t *body = NULL;
    int rc = s_no_args(argc, argv);
    if (rc)
        return rc;
    rc = cli_call("/v1/status", NULL, 0, &body);
    if (rc)
        return rc;
    if (cli_options()->json) {
        rc = cli_print_json(body);
        goto out;
    }
    json_t *node = json_object_get(body, "node");
    const char *name = json_string_value(json_object_get(node, "name"));
    const char *id = json_string_value(json_object_get(node, "id"));
    const char *address = json_string_value(json_object_get(node, "address"));
    json_t *members = json_object_get(body, "members");
    json_t *plans = json_object_get(body, "plans");
    json_t *needs = json_object_get(body, "needs_human");
    if (!name || !id || !json_is_array(members) || !json_is_array(plans)) {
        cli_fail("the agent at %s sent a status without node name, id, members or plans",
                 cli_options()->addr);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    printf("node     %s\n", name);
    printf("id       %s\n", id);
    if (address)
        printf("address  %s\n", address);
    s_status_members(members);
    s_status_plans(plans);
    s_status_human(plans, json_is_array(needs) ? needs : NULL,
                   json_integer_value(json_object_get(body, "needs_human_total")));
    rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
out:
    json_decref(body);
    return rc;
}

int main(int argc, char **argv)
{
    int rc;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        cli_fail("cannot initialise libcurl");
        return CLI_EXIT_FAIL;
    }
    rc = cli_parse_globals(&argc, argv);
    if (rc)
        goto out;
    if (argc < 2) {
        s_usage(stderr);
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        s_usage(stdout);
        rc = CLI_EXIT_OK;
        goto out;
    }
    if (strcmp(name, "--version") == 0)
        name = "version";
    const s_command_t *cmd = s_find(name);
    if (!cmd) {
        cli_fail("unknown command '%.100s' (see gaggle --help)", name);
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    if (cmd->usage) {
        for (int i = 2; i < argc && strcmp(argv[i], "--") != 0; i++)
            if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                fputs(cmd->usage, stdout);
                rc = CLI_EXIT_OK;
                goto out;
            }
    }
    rc = cmd->fn(argc - 1, argv + 1);
out:
    curl_global_cleanup();
    return rc;
}
