/*
 * cmd_plan.c: `gaggle plan validate` and `gaggle plan apply` (see cmd_plan.h).
 *
 * Both start the same way: load the plan file (every error collected), read
 * its catalog (catalog problems are warnings), resolve and freeze the
 * targets. validate reports; apply signs the resolved plan with the operator
 * key and POSTs the signed document to the agent's /v1/plans. apply --dry-run
 * asks the agent for the members instead and computes each target's owner
 * with the same rendezvous hashing the agents use: the alive members' node
 * ids (hex, or Z85) sorted bytewise, each seeded by rendezvous_node_seed, and
 * the target's key rendezvous_key over its canonical ref string.
 */
#include "cmd_plan.h"

#include "cert.h"
#include "cli.h"
#include "gg_error.h"
#include "plan.h"
#include "rendezvous.h"
#include "signed.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define S_SHOWN_TARGETS 20 /* targets listed by a human-readable validate */
#define S_MEMBERS_MAX   100000

const char cmd_plan_usage[] =
    "usage: gaggle plan validate FILE [--json]\n"
    "       gaggle plan apply FILE [--dry-run] [--key FILE] [--addr IP:PORT] [--json]\n"
    "\n"
    "validate  parse the plan, read its catalog, select its targets and report every\n"
    "          error and warning with its file, line and field; no agent needed.\n"
    "          Exit 0 when the plan is valid, 1 when it is not.\n"
    "apply     validate, sign the resolved plan with the operator key (--key, default\n"
    "          $GAGGLE_KEY) and send it to the agent; prints the plan id.\n"
    "          --dry-run prints each target and the node that would own it (from the\n"
    "          agent's alive members) and changes nothing.\n";

typedef struct {
    const char *file;
    bool dry_run;
    const char *key;
} s_args_t;

static int s_parse_args(int argc, char **argv, bool apply, s_args_t *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (apply && !strcmp(arg, "--dry-run")) {
            a->dry_run = true;
        } else if (apply && !strcmp(arg, "--key")) {
            if (i + 1 >= argc) {
                cli_fail("plan apply: --key needs a file");
                return CLI_EXIT_USAGE;
            }
            a->key = argv[++i];
        } else if (apply && !strncmp(arg, "--key=", 6)) {
            a->key = arg + 6;
        } else if (arg[0] == '-' && arg[1] != '\0') {
            cli_fail("plan %s: unknown option '%.100s' (see gaggle plan --help)", argv[1], arg);
            return CLI_EXIT_USAGE;
        } else if (a->file) {
            cli_fail("plan %s: one plan file at a time (got '%.100s' and '%.100s')", argv[1],
                     a->file, arg);
            return CLI_EXIT_USAGE;
        } else {
            a->file = arg;
        }
    }
    if (!a->file) {
        cli_fail("plan %s: which plan file? (see gaggle plan --help)", argv[1]);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

/* Loads, reads the catalog and resolves. Returns 0 with a resolved plan, or
 * an error with the reasons in diag (*out NULL). */
static int s_resolve(const char *file, plan_t **out, plan_diag_t *diag)
{
    plan_opts_t opts = {.check_root = true};
    catalog_t *cat = NULL;
    plan_t *p = NULL;
    *out = NULL;
    int rc = plan_load_file(file, file, &opts, &p, diag);
    if (rc == 0)
        rc = plan_load_catalog(p, &cat, diag);
    if (rc == 0)
        rc = plan_resolve(p, cat, diag);
    catalog_destroy(&cat);
    if (rc != 0) {
        plan_destroy(&p);
        return rc;
    }
    *out = p;
    return 0;
}

static void s_print_diag(FILE *f, const char *label, const json_t *list, size_t total)
{
    size_t i;
    json_t *d;
    json_array_foreach(list, i, d)
    {
        fprintf(f, "%s: %s: %s\n", label, json_string_value(json_object_get(d, "where")),
                json_string_value(json_object_get(d, "message")));
    }
    if (total > json_array_size(list))
        fprintf(f, "%s: ... and %zu more\n", label, total - json_array_size(list));
}

static int s_validate(int argc, char **argv)
{
    s_args_t a;
    int rc = s_parse_args(argc, argv, false, &a);
    if (rc)
        return rc;
    plan_diag_t *diag = plan_diag_new();
    plan_t *p = NULL;
    json_t *out = NULL, *refs = json_array();
    if (!diag || !refs) {
        cli_fail("out of memory");
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    int prc = s_resolve(a.file, &p, diag);
    bool valid = prc == 0 && plan_diag_error_count(diag) == 0;
    for (size_t i = 0; valid && i < plan_target_count(p); i++)
        json_array_append_new(refs, json_string(plan_target(p, i)->ref));
    if (prc == GG_ENOMEM) {
        cli_fail("out of memory");
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    if (cli_options()->json) {
        out = json_pack("{s:b,s:O,s:O,s:O}", "valid", valid, "targets", refs, "errors",
                        plan_diag_errors(diag), "warnings", plan_diag_warnings(diag));
        if (out && valid) {
            json_object_set_new(out, "id", json_string(plan_id(p)));
            json_object_set_new(out, "name", json_string(plan_name(p)));
        }
        if (!out || cli_print_json(out) != CLI_EXIT_OK) {
            cli_fail("cannot print the result");
            rc = CLI_EXIT_FAIL;
            goto out;
        }
    } else {
        s_print_diag(stdout, "warning", plan_diag_warnings(diag), plan_diag_warning_count(diag));
        s_print_diag(stdout, "error", plan_diag_errors(diag), plan_diag_error_count(diag));
        if (valid) {
            size_t n = plan_target_count(p);
            printf("valid: %zu target%s\n", n, n == 1 ? "" : "s");
            for (size_t i = 0; i < n && i < S_SHOWN_TARGETS; i++)
                printf("  %s\n", plan_target(p, i)->ref);
            if (n > S_SHOWN_TARGETS)
                printf("  ... and %zu more\n", n - S_SHOWN_TARGETS);
            printf("id: %s\n", plan_id(p));
        } else {
            size_t n = plan_diag_error_count(diag);
            printf("invalid: %zu error%s\n", n, n == 1 ? "" : "s");
        }
        fflush(stdout);
    }
    rc = valid ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    if (!valid)
        cli_fail("plan %s is invalid", a.file);
out:
    json_decref(out);
    json_decref(refs);
    plan_destroy(&p);
    plan_diag_destroy(&diag);
    return rc;
}

/* ---- apply --dry-run ---- */

typedef struct {
    uint8_t id[32];
    const char *name;
    uint64_t seed;
} s_member_t;

static int s_member_cmp(const void *a, const void *b)
{
    return memcmp(((const s_member_t *) a)->id, ((const s_member_t *) b)->id, 32);
}

/* A node id as the members list writes it: 64 hex digits, or 40 Z85 chars. */
static int s_node_id(const char *text, uint8_t id[32])
{
    if (!text)
        return GG_EMALFORMED;
    if (strlen(text) == 64)
        return signed_hex_decode(text, id, 32);
    if (strlen(text) == 40 && zmq_z85_decode(id, text))
        return 0;
    return GG_EMALFORMED;
}

static int s_dry_run(const plan_t *p)
{
    json_t *members = NULL, *out = NULL, *list = NULL;
    s_member_t *m = NULL;
    size_t n = 0, i;
    int rc = cli_call("/v1/members", NULL, 0, &members);
    if (rc)
        return rc;
    json_t *arr = json_object_get(members, "members"), *item;
    if (!json_is_array(arr) || json_array_size(arr) > S_MEMBERS_MAX) {
        cli_fail("the agent at %s sent a members list without \"members\"", cli_options()->addr);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    if (!(m = calloc(json_array_size(arr) + 1, sizeof *m))) {
        cli_fail("out of memory");
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    json_array_foreach(arr, i, item)
    {
        const char *state = json_string_value(json_object_get(item, "state"));
        const char *name = json_string_value(json_object_get(item, "name"));
        const char *id = json_string_value(json_object_get(item, "id"));
        if (!state || strcmp(state, "alive"))
            continue;
        if (!name || s_node_id(id, m[n].id) != 0) {
            cli_fail("the agent at %s sent a member without a valid name and id",
                     cli_options()->addr);
            rc = CLI_EXIT_FAIL;
            goto out;
        }
        m[n].name = name;
        m[n].seed = rendezvous_node_seed(m[n].id);
        n++;
    }
    if (n == 0) {
        cli_fail("no alive members: no node would own the targets");
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    qsort(m, n, sizeof *m, s_member_cmp);
    uint64_t *seeds = calloc(n, sizeof *seeds);
    if (!seeds || !(list = json_array())) {
        free(seeds);
        cli_fail("out of memory");
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    for (i = 0; i < n; i++)
        seeds[i] = m[i].seed;
    for (i = 0; i < plan_target_count(p); i++) {
        const char *ref = plan_target(p, i)->ref;
        size_t owner = rendezvous_owner(seeds, n, rendezvous_key(ref, strlen(ref)));
        if (cli_options()->json)
            json_array_append_new(list, json_pack("{s:s,s:s}", "ref", ref, "node", m[owner].name));
        else
            printf("%s\t%s\n", ref, m[owner].name);
    }
    free(seeds);
    if (cli_options()->json) {
        out = json_pack("{s:O}", "assignments", list);
        rc = out ? cli_print_json(out) : CLI_EXIT_FAIL;
    } else {
        fflush(stdout);
    }
out:
    json_decref(out);
    json_decref(list);
    json_decref(members);
    free(m);
    return rc;
}

/* ---- apply ---- */

static int s_send(const plan_t *p, const char *key_path)
{
    operator_key_t key;
    json_t *doc = NULL, *answer = NULL, *out = NULL;
    char *body = NULL;
    int rc = CLI_EXIT_FAIL;
    memset(&key, 0, sizeof key);
    if (!key_path || !*key_path) {
        cli_fail("plan apply needs an operator key: --key FILE or GAGGLE_KEY");
        return CLI_EXIT_USAGE;
    }
    int err = operator_key_load(key_path, &key);
    if (err != 0) {
        cli_fail("cannot load the operator key %s: %s", key_path, gg_strerror(err));
        goto out;
    }
    if (!key.has_secret) {
        cli_fail("%s holds only a public key: --key needs the secret .key file", key_path);
        goto out;
    }
    err = signed_sign((json_t *) plan_json(p), &key, &doc);
    if (err != 0) {
        cli_fail("cannot sign the plan: %s", gg_strerror(err));
        goto out;
    }
    size_t len = 0;
    if ((err = signed_canonical(doc, &body, &len)) != 0) {
        cli_fail("cannot encode the signed plan: %s", gg_strerror(err));
        goto out;
    }
    if ((rc = cli_call("/v1/plans", body, len, &answer)) != CLI_EXIT_OK)
        goto out;
    const char *id = json_string_value(json_object_get(answer, "id"));
    if (id && strcmp(id, plan_id(p)))
        cli_fail("warning: the agent answered with plan id %.64s, expected %s", id, plan_id(p));
    json_t *total = json_object_get(answer, "total");
    if (cli_options()->json) {
        out = json_pack("{s:s,s:s,s:I}", "id", id ? id : plan_id(p), "name", plan_name(p), "total",
                        json_is_integer(total) ? json_integer_value(total)
                                               : (json_int_t) plan_target_count(p));
        rc = out ? cli_print_json(out) : CLI_EXIT_FAIL;
    } else {
        printf("%s\n", id ? id : plan_id(p));
        fflush(stdout);
        rc = CLI_EXIT_OK;
    }
out:
    operator_key_wipe(&key);
    json_decref(out);
    json_decref(answer);
    json_decref(doc);
    free(body);
    return rc;
}

static int s_apply(int argc, char **argv)
{
    s_args_t a;
    int rc = s_parse_args(argc, argv, true, &a);
    if (rc)
        return rc;
    if (!a.key)
        a.key = getenv("GAGGLE_KEY");
    plan_diag_t *diag = plan_diag_new();
    plan_t *p = NULL;
    if (!diag) {
        cli_fail("out of memory");
        return CLI_EXIT_FAIL;
    }
    int prc = s_resolve(a.file, &p, diag);
    s_print_diag(stderr, "warning", plan_diag_warnings(diag), plan_diag_warning_count(diag));
    if (prc != 0 || plan_diag_error_count(diag)) {
        s_print_diag(stderr, "error", plan_diag_errors(diag), plan_diag_error_count(diag));
        cli_fail("plan %s is invalid (%zu error%s): nothing was applied", a.file,
                 plan_diag_error_count(diag), plan_diag_error_count(diag) == 1 ? "" : "s");
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    rc = a.dry_run ? s_dry_run(p) : s_send(p, a.key);
out:
    plan_destroy(&p);
    plan_diag_destroy(&diag);
    return rc;
}

int cmd_plan(int argc, char **argv)
{
    if (argc < 2) {
        fputs(cmd_plan_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    const char *sub = argv[1];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(cmd_plan_usage, stdout);
            return CLI_EXIT_OK;
        }
    }
    if (!strcmp(sub, "validate"))
        return s_validate(argc, argv);
    if (!strcmp(sub, "apply"))
        return s_apply(argc, argv);
    cli_fail("plan: unknown subcommand '%.100s' (see gaggle plan --help)", sub);
    return CLI_EXIT_USAGE;
}
