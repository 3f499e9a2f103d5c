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
    {"cert", cmd_cert, "revoke a node certificate fleet-wide (operator-signed)", cmd_cert_usage},
    {"keygen", s_cmd_keygen, "make operator key pairs and signed node certificates", NULL},
    {"members", cmd_members, "every member of the fleet and its state", cmd_members_usage},
    {"plan", cmd_plan, "validate a migration plan, or sign and apply it", cmd_plan_usage},
    {"status", s_cmd_status, "this node at a glance: name, id, members, plans",
     "usage: gaggle status [--addr IP:PORT] [--json]\n\n"
     "Shows the local agent's node name and id and counts its members and plans.\n"
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
        fprintf(out, "  %-10s %s\n", s_commands[i].name, s_commands[i].help);
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
    printf("members  %zu\n", json_array_size(members));
    printf("plans    %zu\n", json_array_size(plans));
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
