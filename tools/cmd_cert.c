/*
 * cmd_cert.c: `gaggle cert revoke NAME|KEY [--key FILE]`: an operator-signed
 * revocation of a node certificate (by node name, or by the node's CURVE
 * public key in hex). The agent verifies it and spreads it to every member;
 * from then on no agent accepts that certificate.
 */
#include "cmd_cert.h"
#include "cli.h"
#include "cli_signed.h"

#include <stdio.h>
#include <string.h>

const char cmd_cert_usage[] =
    "usage: gaggle cert revoke NAME|KEY [--key FILE] [--addr IP:PORT] [--json]\n\n"
    "Revokes a node certificate fleet-wide: by node name, or by the node's public\n"
    "key (64 hex digits, the id shown by `gaggle members --json`). The command is\n"
    "signed with the operator key (--key FILE, else $GAGGLE_KEY); every agent\n"
    "verifies it and refuses that certificate from then on.\n";

int cmd_cert(int argc, char **argv)
{
    const char *key = NULL, *subject = NULL;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(cmd_cert_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "revoke") != 0) {
        cli_fail("cert: unknown subcommand '%.100s' (see gaggle cert --help)", argv[1]);
        return CLI_EXIT_USAGE;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            key = argv[++i];
        else if (strncmp(argv[i], "--key=", 6) == 0)
            key = argv[i] + 6;
        else if (argv[i][0] == '-') {
            cli_fail("cert revoke: unknown flag '%.100s' (see gaggle cert --help)", argv[i]);
            return CLI_EXIT_USAGE;
        } else if (!subject)
            subject = argv[i];
        else {
            cli_fail("cert revoke: one NAME or KEY at a time (got '%.100s' too)", argv[i]);
            return CLI_EXIT_USAGE;
        }
    }
    if (!subject) {
        cli_fail("cert revoke: which certificate? give a node NAME or KEY");
        return CLI_EXIT_USAGE;
    }
    json_t *answer = NULL;
    int rc = cli_command_post("cert revoke", key, "revoke", NULL, NULL, 0, NULL, NULL, subject,
                              "/v1/certs/revoke", &answer);
    if (rc == CLI_EXIT_OK) {
        if (cli_options()->json)
            rc = cli_print_json(answer);
        else
            printf("revoked %s\n", subject);
    }
    json_decref(answer);
    return rc;
}
