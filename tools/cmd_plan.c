/*
 * cmd_plan.c: the `gaggle plan` subcommands (see cmd_plan.h and the usage).
 *
 * validate and apply start the same way: load the plan file (every error
 * collected), read its catalog (catalog problems are warnings), resolve and
 * freeze the targets. validate reports; apply signs the resolved plan with
 * the operator key and POSTs the signed document to the agent's /v1/plans.
 * apply --dry-run asks the agent for the members instead and computes each
 * target's owner with the same rendezvous hashing the agents use: the alive
 * members' node ids (hex, or Z85) sorted bytewise, each seeded by
 * rendezvous_node_seed, and the target's key rendezvous_key over its
 * canonical ref string.
 *
 * list, show and watch read the agent's replicated view (/v1/plans...);
 * watch polls every 500 ms and redraws one line on a terminal (\r), or
 * prints a line per change when the output is not a terminal. pause, resume,
 * cancel, retry and mark look the plan up (id, prefix or name) and post an
 * operator command signed for its full id (cmd_ops.h).
 */
#include "cmd_plan.h"

#include "cert.h"
#include "cli.h"
#include "cli_signed.h"
#include "cmd_ops.h"
#include "gg_error.h"
#include "plan.h"
#include "progress.h"
#include "rendezvous.h"
#include "signed.h"
#include "units.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define S_SHOWN_TARGETS 20 /* targets listed by a human-readable validate */
#define S_MEMBERS_MAX   100000
#define S_WATCH_POLL_MS 500
#define S_SHOW_HUMAN    10 /* targets listed per state by plan show */

const char cmd_plan_usage[] =
    "usage: gaggle plan validate FILE [--json]\n"
    "       gaggle plan apply FILE [--dry-run] [--key FILE] [--addr IP:PORT] [--json]\n"
    "       gaggle plan list\n"
    "       gaggle plan show ID\n"
    "       gaggle plan watch ID [--timeout DURATION]\n"
    "       gaggle plan pause|resume|cancel ID [--key FILE]\n"
    "       gaggle plan retry ID [--state failed|needs_review] [--target REF ...] [--key FILE]\n"
    "       gaggle plan mark ID TARGET succeeded|skipped [--key FILE]\n"
    "\n"
    "validate  parse the plan, read its catalog, select its targets and report every\n"
    "          error and warning with its file, line and field; no agent needed.\n"
    "          Exit 0 when the plan is valid, 1 when it is not.\n"
    "apply     validate, sign the resolved plan with the operator key (--key, default\n"
    "          $GAGGLE_KEY) and send it to the agent; prints the plan id.\n"
    "          --dry-run prints each target and the node that would own it (from the\n"
    "          agent's alive members) and changes nothing.\n"
    "list      every plan the fleet knows: id, name, state, progress.\n"
    "show      one plan: its facts, the count of targets in each state, and the\n"
    "          targets that need a human (failed, needs_review, awaiting_approval).\n"
    "watch     a live progress bar (redrawn on a terminal, one line per change\n"
    "          otherwise), polled every 500ms, until the plan is done; then prints the\n"
    "          counts per state. Exit 0 when the plan completed (even with failed or\n"
    "          needs_review targets: read the counts or `gaggle report`), 1 when it was\n"
    "          cancelled, when --timeout passed first, or on any error.\n"
    "pause     stop starting targets (running ones finish); resume undoes it.\n"
    "cancel    stop the plan for good: running targets are aborted.\n"
    "retry     run failed targets again (--state failed, the default) or the ones\n"
    "          that need review (--state needs_review); --target limits it to refs.\n"
    "mark      a human settles a needs_review TARGET as succeeded or skipped.\n"
    "\n"
    "ID is a plan id, a unique prefix of it (6+ hex digits) or the plan's name.\n"
    "Commands that change a plan are signed with the operator key (--key FILE, else\n"
    "$GAGGLE_KEY). --json prints the agent's JSON answer instead of text.\n";

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

/* Signs the plan's canonical bytes (computed once, for its id, by
 * plan_resolve) and posts the signed document: the same bytes as
 * cli_signed_post would send, without dumping a large plan twice more. */
static int s_post_plan(const plan_t *p, const char *key_path, json_t **answer)
{
    operator_key_t key;
    const char *bytes = NULL;
    char *body = NULL;
    size_t len = 0, body_len = 0;
    int rc = cli_operator_key("plan apply", key_path, &key);
    if (rc != CLI_EXIT_OK)
        return rc;
    rc = CLI_EXIT_FAIL;
    int err;
    if ((err = plan_canonical(p, &bytes, &len)) != 0 ||
        (err = signed_sign_bytes(bytes, len, &key, &body, &body_len)) != 0) {
        cli_fail("plan apply: cannot sign: %s", gg_strerror(err));
        goto out;
    }
    rc = cli_call("/v1/plans", body, body_len, answer);
out:
    operator_key_wipe(&key);
    free(body);
    return rc;
}

static int s_send(const plan_t *p, const char *key_path)
{
    json_t *answer = NULL, *out = NULL;
    int rc = s_post_plan(p, key_path, &answer);
    if (rc != CLI_EXIT_OK)
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
    json_decref(out);
    json_decref(answer);
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

/* ---- list, show, watch ---- */

/* Takes exactly n_pos positional arguments after the subcommand (into pos)
 * and no options. */
static int s_positional(int argc, char **argv, const char **pos, int n_pos, const char *usage_hint)
{
    int got = 0;
    for (int i = 2; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            cli_fail("plan %s: unknown option '%.100s' (see gaggle plan --help)", argv[1], argv[i]);
            return CLI_EXIT_USAGE;
        }
        if (got == n_pos) {
            cli_fail("plan %s: unexpected argument '%.100s' (%s)", argv[1], argv[i], usage_hint);
            return CLI_EXIT_USAGE;
        }
        pos[got++] = argv[i];
    }
    if (got < n_pos) {
        cli_fail("plan %s: missing argument (%s)", argv[1], usage_hint);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

static json_int_t s_int(const json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

static const char *s_strf(const json_t *o, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : dflt;
}

static int s_percent(uint64_t done, uint64_t total)
{
    if (!total)
        return 100;
    return (int) ((done * 100) / total);
}

static int s_list(int argc, char **argv)
{
    json_t *answer = NULL;
    int rc = s_positional(argc, argv, NULL, 0, "gaggle plan list");
    if (rc)
        return rc;
    if ((rc = cli_call("/v1/plans", NULL, 0, &answer)) != CLI_EXIT_OK)
        return rc;
    if (cli_options()->json) {
        rc = cli_print_json(answer);
        goto out;
    }
    const json_t *plans = json_object_get(answer, "plans"), *p;
    if (!json_is_array(plans)) {
        cli_fail("the agent at %s sent a plan list without \"plans\"", cli_options()->addr);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    if (json_array_size(plans) == 0) {
        printf("no plans\n");
        goto flush;
    }
    printf("%-12s  %-24s  %-10s  %8s  %13s  %s\n", "ID", "NAME", "STATE", "PROGRESS", "DONE/TOTAL",
           "COUNTS");
    size_t i;
    json_array_foreach(plans, i, p)
    {
        char counts[512];
        const json_t *c = json_object_get(p, "counts");
        uint64_t total = (uint64_t) s_int(p, "total"), done = cmd_ops_done(c);
        cmd_ops_counts_text(c, counts, sizeof counts);
        char frac[32];
        snprintf(frac, sizeof frac, "%llu/%llu", (unsigned long long) done,
                 (unsigned long long) total);
        printf("%-12.12s  %-24s  %-10s  %7d%%  %13s  %s\n", s_strf(p, "id", "?"),
               s_strf(p, "name", "?"), s_strf(p, "state", "?"), s_percent(done, total), frac,
               counts);
    }
flush:
    rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
out:
    json_decref(answer);
    return rc;
}

/* Lists up to S_SHOW_HUMAN targets of plan `id` in `state`. */
static void s_show_targets(const char *id, const char *state, json_int_t count)
{
    char *esc = cli_url_escape(id), path[512];
    json_t *answer = NULL;
    if (!esc)
        return;
    snprintf(path, sizeof path, "/v1/plans/%.300s/targets?state=%s&limit=%d", esc, state,
             S_SHOW_HUMAN);
    free(esc);
    if (cli_call(path, NULL, 0, &answer) != CLI_EXIT_OK)
        return;
    const json_t *targets = json_object_get(answer, "targets"), *t;
    size_t i;
    json_array_foreach(targets, i, t)
    {
        const char *node = s_strf(t, "node", "-"), *error = s_strf(t, "error", "");
        printf("  %-40s  %-17s  %-16s  %s\n", s_strf(t, "ref", "?"), state, node, error);
    }
    if (count > (json_int_t) json_array_size(targets))
        printf("  ... and %lld more %s (gaggle --json plan show, or the targets API)\n",
               (long long) (count - (json_int_t) json_array_size(targets)), state);
    json_decref(answer);
}

static int s_show(int argc, char **argv)
{
    const char *id;
    json_t *p = NULL;
    int rc = s_positional(argc, argv, &id, 1, "gaggle plan show ID");
    if (rc)
        return rc;
    if ((rc = cmd_ops_plan_get(id, &p)) != CLI_EXIT_OK)
        return rc;
    if (cli_options()->json) {
        rc = cli_print_json(p);
        json_decref(p);
        return rc;
    }
    const json_t *counts = json_object_get(p, "counts");
    const json_t *ds = json_object_get(p, "dataset");
    uint64_t total = (uint64_t) s_int(p, "total"), done = cmd_ops_done(counts);
    char bar[64];
    cmd_ops_bar(bar, sizeof bar, done, total, 30);
    printf("plan       %s\n", s_strf(p, "name", "?"));
    printf("id         %s\n", s_strf(p, "id", "?"));
    printf("state      %s", s_strf(p, "state", "?"));
    if (json_string_value(json_object_get(p, "paused_reason")))
        printf(" (by %s)", s_strf(p, "paused_reason", ""));
    printf("\n");
    if (json_string_value(json_object_get(p, "owner")))
        printf("owner      %s\n", s_strf(p, "owner", ""));
    if (json_is_object(ds))
        printf("dataset    %s -> %s\n", s_strf(ds, "from", "?"), s_strf(ds, "to", "?"));
    if (json_string_value(json_object_get(p, "accepted")))
        printf("accepted   %s\n", s_strf(p, "accepted", ""));
    printf("progress   %s %d%% (%llu/%llu done)\n", bar, s_percent(done, total),
           (unsigned long long) done, (unsigned long long) total);
    printf("targets    %llu\n", (unsigned long long) total);
    for (int s = 0; s < TARGET_STATE_COUNT; s++) {
        const char *name = target_state_name((target_state_t) s);
        printf("  %-18s %lld\n", name, (long long) s_int(counts, name));
    }
    static const char *const human[] = {"failed", "needs_review", "awaiting_approval"};
    bool header = false;
    for (size_t i = 0; i < sizeof human / sizeof human[0]; i++) {
        json_int_t n = s_int(counts, human[i]);
        if (n <= 0)
            continue;
        if (!header) {
            printf("needs a human:\n");
            header = true;
        }
        s_show_targets(s_strf(p, "id", id), human[i], n);
    }
    json_decref(p);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

static uint64_t s_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static void s_sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t) (ms / 1000), .tv_nsec = (long) (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* One progress line: "NAME [####....]  45%  45/100  active  running 3, ..." */
static void s_watch_line(const json_t *p, char *buf, size_t size)
{
    const json_t *counts = json_object_get(p, "counts");
    uint64_t total = (uint64_t) s_int(p, "total"), done = cmd_ops_done(counts);
    char bar[64], text[512], state[64];
    cmd_ops_bar(bar, sizeof bar, done, total, 30);
    cmd_ops_counts_text(counts, text, sizeof text);
    snprintf(state, sizeof state, "%s%s%s%s", s_strf(p, "state", "?"),
             json_object_get(p, "paused_reason") ? " (by " : "", s_strf(p, "paused_reason", ""),
             json_object_get(p, "paused_reason") ? ")" : "");
    snprintf(buf, size, "%s %s %3d%%  %llu/%llu  %s  %s", s_strf(p, "name", "?"), bar,
             s_percent(done, total), (unsigned long long) done, (unsigned long long) total, state,
             text);
}

static int s_watch(int argc, char **argv)
{
    const char *id = NULL, *timeout_text = NULL;
    uint64_t timeout_ms = 0;
    json_t *p = NULL;
    char *last = NULL;
    int rc = CLI_EXIT_USAGE;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
            timeout_text = argv[++i];
        else if (!strncmp(argv[i], "--timeout=", 10))
            timeout_text = argv[i] + 10;
        else if (argv[i][0] == '-' && argv[i][1]) {
            cli_fail("plan watch: unknown option '%.100s' (see gaggle plan --help)", argv[i]);
            return CLI_EXIT_USAGE;
        } else if (id) {
            cli_fail("plan watch: one plan at a time (got '%.100s' too)", argv[i]);
            return CLI_EXIT_USAGE;
        } else
            id = argv[i];
    }
    if (!id) {
        cli_fail("plan watch: which plan? (gaggle plan watch ID)");
        return CLI_EXIT_USAGE;
    }
    if (timeout_text && (units_parse_duration(timeout_text, &timeout_ms) != 0 || !timeout_ms)) {
        cli_fail("plan watch: --timeout takes a duration such as 10m, got '%.50s'", timeout_text);
        return CLI_EXIT_USAGE;
    }
    /* Follow the plan by its full id: a name may later point to another plan. */
    if ((rc = cmd_ops_plan_get(id, &p)) != CLI_EXIT_OK)
        return rc;
    char full[80];
    snprintf(full, sizeof full, "%s", s_strf(p, "id", id));
    bool tty = isatty(fileno(stdout)) && !cli_options()->json;
    bool quiet = cli_options()->json;
    uint64_t deadline = timeout_ms ? s_mono_ms() + timeout_ms : 0;
    char line[1024];
    for (;;) {
        const char *state = s_strf(p, "state", "");
        bool finished = json_is_true(json_object_get(p, "completed")) ||
                        !strcmp(state, "completed") || !strcmp(state, "cancelled");
        s_watch_line(p, line, sizeof line);
        if (tty) {
            struct winsize ws;
            /* One screen line, or \r cannot return over what wrapped. */
            if (ioctl(fileno(stdout), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 &&
                strlen(line) >= ws.ws_col)
                line[ws.ws_col - 1] = '\0';
            printf("\r%s\033[K", line);
            fflush(stdout);
        } else if (!quiet && (!last || strcmp(last, line))) {
            printf("%s\n", line);
            fflush(stdout);
            free(last);
            last = strdup(line);
        }
        if (finished)
            break;
        if (deadline && s_mono_ms() >= deadline) {
            if (tty)
                printf("\n");
            fflush(stdout);
            cli_fail("plan %s is not done after %s", s_strf(p, "name", id), timeout_text);
            rc = CLI_EXIT_FAIL;
            goto out;
        }
        s_sleep_ms(S_WATCH_POLL_MS);
        json_decref(p);
        p = NULL;
        if ((rc = cmd_ops_plan_get(full, &p)) != CLI_EXIT_OK) {
            if (tty)
                printf("\n");
            goto out;
        }
    }
    if (tty)
        printf("\n");
    const char *state = s_strf(p, "state", "");
    char counts[512];
    cmd_ops_counts_text(json_object_get(p, "counts"), counts, sizeof counts);
    if (quiet) {
        rc = cli_print_json(p);
    } else {
        printf("plan %s %s: %s\n", s_strf(p, "name", id),
               !strcmp(state, "cancelled") ? "cancelled" : "completed", counts);
        rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    }
    if (!strcmp(state, "cancelled")) {
        cli_fail("plan %s was cancelled before it completed", s_strf(p, "name", id));
        rc = CLI_EXIT_FAIL;
    }
out:
    free(last);
    json_decref(p);
    return rc;
}

/* ---- pause, resume, cancel, retry, mark ---- */

static int s_control(int argc, char **argv)
{
    const char *action = argv[1], *id = NULL, *key = NULL, *state = NULL, *target = NULL,
               *mark_state = NULL;
    const char **targets = calloc((size_t) argc, sizeof *targets);
    size_t n = 0;
    json_t *answer = NULL, *plan = NULL;
    bool retry = !strcmp(action, "retry"), mark = !strcmp(action, "mark");
    int rc = CLI_EXIT_USAGE;
    if (!targets) {
        cli_fail("out of memory");
        return CLI_EXIT_FAIL;
    }
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        int k = cmd_ops_key_flag(argc, argv, &i, action, &key);
        if (k < 0)
            goto out;
        if (k)
            continue;
        if (retry && (!strcmp(arg, "--state") || !strcmp(arg, "--target"))) {
            if (i + 1 >= argc) {
                cli_fail("plan retry: %s needs a value", arg);
                goto out;
            }
            if (!strcmp(arg, "--state"))
                state = argv[++i];
            else if (n < CMD_OPS_TARGETS_MAX)
                targets[n++] = argv[++i];
            else {
                cli_fail("plan retry: at most %d --target flags", CMD_OPS_TARGETS_MAX);
                goto out;
            }
        } else if (retry && !strncmp(arg, "--state=", 8)) {
            state = arg + 8;
        } else if (retry && !strncmp(arg, "--target=", 9) && n < CMD_OPS_TARGETS_MAX) {
            targets[n++] = arg + 9;
        } else if (arg[0] == '-' && arg[1]) {
            cli_fail("plan %s: unknown option '%.100s' (see gaggle plan --help)", action, arg);
            goto out;
        } else if (!id) {
            id = arg;
        } else if (mark && !target) {
            target = arg;
        } else if (mark && !mark_state) {
            mark_state = arg;
        } else {
            cli_fail("plan %s: unexpected argument '%.100s' (see gaggle plan --help)", action, arg);
            goto out;
        }
    }
    if (!id) {
        cli_fail("plan %s: which plan? (see gaggle plan --help)", action);
        goto out;
    }
    if (mark) {
        if (!target || !mark_state) {
            cli_fail("plan mark: gaggle plan mark ID TARGET succeeded|skipped");
            goto out;
        }
        if (strcmp(mark_state, "succeeded") && strcmp(mark_state, "skipped")) {
            cli_fail("plan mark: a target is marked succeeded or skipped, not '%.50s'", mark_state);
            goto out;
        }
        targets[0] = target;
        n = 1;
        state = mark_state;
    }
    if (retry && state && strcmp(state, "failed") && strcmp(state, "needs_review")) {
        cli_fail("plan retry: --state is failed or needs_review, not '%.50s'", state);
        goto out;
    }
    rc = cmd_ops_plan_command(action, id, key, n ? targets : NULL, n, state, &plan, &answer);
    if (rc != CLI_EXIT_OK)
        goto out;
    if (cli_options()->json) {
        rc = cli_print_json(answer);
        goto out;
    }
    const char *name = s_strf(plan, "name", id);
    if (mark)
        printf("marked %s %s in plan %s\n", target, mark_state, name);
    else if (retry)
        printf("retrying %s targets of plan %s\n", state ? state : "failed", name);
    else
        printf("%s plan %s (%.12s)\n",
               !strcmp(action, "pause")    ? "paused"
               : !strcmp(action, "resume") ? "resumed"
                                           : "cancelled",
               name, s_strf(plan, "id", ""));
    rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
out:
    json_decref(answer);
    json_decref(plan);
    free(targets);
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
    if (!strcmp(sub, "list"))
        return s_list(argc, argv);
    if (!strcmp(sub, "show"))
        return s_show(argc, argv);
    if (!strcmp(sub, "watch"))
        return s_watch(argc, argv);
    if (!strcmp(sub, "pause") || !strcmp(sub, "resume") || !strcmp(sub, "cancel") ||
        !strcmp(sub, "retry") || !strcmp(sub, "mark"))
        return s_control(argc, argv);
    cli_fail("plan: unknown subcommand '%.100s' (see gaggle plan --help)", sub);
    return CLI_EXIT_USAGE;
}
