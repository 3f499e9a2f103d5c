/*
 * cmd_members.c: `gaggle members` lists every member of the fleet as the local
 * agent sees it (GET /v1/members): name, state, address, incarnation and id.
 */
#include "cmd_members.h"
#include "cli.h"

#include <stdio.h>
#include <string.h>

const char cmd_members_usage[] =
    "usage: gaggle members [--addr IP:PORT] [--json]\n\n"
    "Lists every member the local agent knows: name, state (alive, suspect, dead,\n"
    "left), address, incarnation, id (the node's CURVE public key, shortened here)\n"
    "and whether it is draining (retiring: drained by the fleet's scaler). --json\n"
    "prints the agent's /v1/members answer.\n";

int cmd_members(int argc, char **argv)
{
    if (argc > 1) {
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
            fputs(cmd_members_usage, stdout);
            return CLI_EXIT_OK;
        }
        cli_fail("members: unexpected argument '%.100s' (see gaggle members --help)", argv[1]);
        return CLI_EXIT_USAGE;
    }
    json_t *body = NULL;
    int rc = cli_call("/v1/members", NULL, 0, &body);
    if (rc)
        return rc;
    if (cli_options()->json) {
        rc = cli_print_json(body);
        json_decref(body);
        return rc;
    }
    json_t *list = json_object_get(body, "members");
    if (!json_is_array(list)) {
        cli_fail("members: the agent answered without a member list");
        json_decref(body);
        return CLI_EXIT_FAIL;
    }
    printf("%-24s %-8s %-28s %11s  %-12s %s\n", "NAME", "STATE", "ADDRESS", "INCARNATION", "ID",
           "NOTE");
    size_t i;
    json_t *m;
    json_array_foreach(list, i, m)
    {
        const char *name = json_string_value(json_object_get(m, "name"));
        const char *state = json_string_value(json_object_get(m, "state"));
        const char *addr = json_string_value(json_object_get(m, "address"));
        const char *id = json_string_value(json_object_get(m, "id"));
        json_int_t inc = json_integer_value(json_object_get(m, "incarnation"));
        bool draining = json_is_true(json_object_get(m, "draining"));
        bool retiring = json_is_true(json_object_get(m, "retiring"));
        bool self = json_is_true(json_object_get(m, "self"));
        char note[40] = "";
        snprintf(note, sizeof note, "%s%s%s", self ? "self" : "", self && draining ? ", " : "",
                 retiring   ? "retiring"
                 : draining ? "draining"
                            : "");
        printf("%-24s %-8s %-28s %11lld  %-12.12s %s\n", name ? name : "?", state ? state : "?",
               addr ? addr : "?", (long long) inc, id ? id : "?", note);
    }
    json_decref(body);
    return CLI_EXIT_OK;
}
