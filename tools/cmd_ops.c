/*
 * cmd_ops.c: `gaggle approve`, `logs`, `report`, `audit`, `drain` and
 * `force-leave` (see cmd_ops.h), and the helpers the plan subcommands share.
 *
 * Reads go to the local agent's API, which answers for the whole fleet.
 * Mutations are operator commands signed with --key (else $GAGGLE_KEY) and
 * verified by every agent. A plan is named by its id, a unique id prefix or
 * its name; the CLI looks it up first so the signed command carries the full
 * id. `logs` asks the agent, which fetches the output from the node that ran
 * the target when it is not local (202 while fetching): the CLI polls with a
 * deadline. `report` fetches the JSON report and renders the Markdown with
 * the agent's own renderer (agent/report.c), so both are the same text.
 */
#include "cmd_ops.h"

#include "cli.h"
#include "cli_signed.h"
#include "gg_error.h"
#include "progress.h"
#include "report.h"
#include "units.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_POLL_MS 200

const char cmd_approve_usage[] =
    "usage: gaggle approve ID [--target REF ...] [--key FILE] [--addr IP:PORT] [--json]\n\n"
    "Approves a plan's gated targets (those matching spec.approval.when): all of them\n"
    "by default, or only the --target refs given. ID is the plan id, a unique prefix\n"
    "of it, or the plan's name. Signed with the operator key (--key, else $GAGGLE_KEY);\n"
    "a target starts once it has the plan's approval quorum.\n";

const char cmd_logs_usage[] =
    "usage: gaggle logs ID TARGET [--wait DURATION] [--addr IP:PORT] [--json]\n\n"
    "Prints the step output of TARGET (a ref such as component:default/name) in plan\n"
    "ID, from whichever node ran it: the local agent asks that node when the log is\n"
    "not here, and the CLI waits for the answer up to --wait (default 15s).\n";

const char cmd_report_usage[] =
    "usage: gaggle report ID [--format md|json] [--addr IP:PORT] [--json]\n\n"
    "Prints the plan's migration report: every target with its state, attempts,\n"
    "duration, node and anomalies, and the totals per state. Markdown by default;\n"
    "--format json (or --json) prints the JSON document.\n";

const char cmd_audit_usage[] =
    "usage: gaggle audit [--limit N] [--addr IP:PORT] [--json]\n\n"
    "Lists every signed command the fleet has accepted, oldest first: when, what,\n"
    "which plan (or node: drain, force-leave, revoke), which operator key, and the\n"
    "node it came through.\n";

const char cmd_drain_usage[] =
    "usage: gaggle drain NODE [--key FILE] [--addr IP:PORT] [--json]\n\n"
    "Drains NODE: it takes no new targets and finishes (or hands back) the ones it\n"
    "runs. Signed with the operator key (--key, else $GAGGLE_KEY). Send it to the\n"
    "node's own agent (--addr): other agents answer that they cannot do it yet.\n";

const char cmd_force_leave_usage[] =
    "usage: gaggle force-leave NODE [--key FILE] [--addr IP:PORT] [--json]\n\n"
    "Declares a dead NODE (a name, or its 64-hex-digit id) gone for good: it is\n"
    "marked left fleet-wide and its targets move to the other nodes. A node that is\n"
    "alive or suspect is refused (it would refute). Signed with the operator key.\n";

/* ---- shared helpers ---- */

int cmd_ops_key_flag(int argc, char **argv, int *i, const char *what, const char **key)
{
    const char *arg = argv[*i];
    if (!strncmp(arg, "--key=", 6)) {
        *key = arg + 6;
        return 1;
    }
    if (strcmp(arg, "--key") != 0)
        return 0;
    if (*i + 1 >= argc) {
        cli_fail("%s: --key needs a file", what);
        return -1;
    }
    *key = argv[++*i];
    return 1;
}

/* Reads `--NAME VALUE` / `--NAME=VALUE` at argv[*i]: 1, 0 or -1 as above. */
static int s_value_flag(int argc, char **argv, int *i, const char *what, const char *name,
                        const char **value)
{
    size_t n = strlen(name);
    const char *arg = argv[*i];
    if (!strncmp(arg, name, n) && arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (strcmp(arg, name) != 0)
        return 0;
    if (*i + 1 >= argc) {
        cli_fail("%s: %s needs a value", what, name);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

static char *s_plan_path(const char *id, const char *suffix)
{
    char *esc = cli_url_escape(id);
    if (!esc)
        return NULL;
    size_t n = strlen("/v1/plans/") + strlen(esc) + (suffix ? strlen(suffix) : 0) + 1;
    char *path = malloc(n);
    if (path)
        snprintf(path, n, "/v1/plans/%s%s", esc, suffix ? suffix : "");
    free(esc);
    return path;
}

int cmd_ops_plan_get(const char *id, json_t **plan)
{
    *plan = NULL;
    char *path = s_plan_path(id, NULL);
    if (!path) {
        cli_fail("out of memory");
        return CLI_EXIT_FAIL;
    }
    json_t *answer = NULL;
    int rc = cli_call(path, NULL, 0, &answer);
    free(path);
    if (rc)
        return rc;
    if (!json_string_value(json_object_get(answer, "id")) ||
        !json_string_value(json_object_get(answer, "name"))) {
        cli_fail("the agent at %s sent a plan without id or name", cli_options()->addr);
        json_decref(answer);
        return CLI_EXIT_FAIL;
    }
    *plan = answer;
    return CLI_EXIT_OK;
}

int cmd_ops_plan_command(const char *type, const char *id, const char *key_path,
                         const char *const *targets, size_t n_targets, const char *state,
                         json_t **plan, json_t **answer)
{
    json_t *p = NULL;
    char what[64], *path = NULL;
    *answer = NULL;
    if (plan)
        *plan = NULL;
    snprintf(what, sizeof what, "%s", type);
    int rc = cmd_ops_plan_get(id, &p);
    if (rc)
        return rc;
    const char *full = json_string_value(json_object_get(p, "id"));
    char suffix[32];
    snprintf(suffix, sizeof suffix, "/%s", type);
    if (!(path = s_plan_path(full, suffix))) {
        cli_fail("out of memory");
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    rc = cli_command_post(what, key_path, type, full, targets, n_targets, state, NULL, NULL, path,
                          answer);
out:
    free(path);
    if (plan && rc == CLI_EXIT_OK)
        *plan = p;
    else
        json_decref(p);
    return rc;
}

void cmd_ops_bar(char *buf, size_t size, uint64_t done, uint64_t total, int width)
{
    if (size < 3 || width < 1) {
        if (size)
            buf[0] = '\0';
        return;
    }
    if ((size_t) width + 3 > size)
        width = (int) size - 3;
    int full = total ? (int) ((done * (uint64_t) width) / total) : 0;
    if (total && done >= total)
        full = width;
    buf[0] = '[';
    for (int i = 0; i < width; i++)
        buf[1 + i] = i < full ? '#' : '.';
    buf[1 + width] = ']';
    buf[2 + width] = '\0';
}

uint64_t cmd_ops_done(const json_t *counts)
{
    uint64_t done = 0;
    for (int s = 0; s < TARGET_STATE_COUNT; s++) {
        if (!target_state_terminal((target_state_t) s))
            continue;
        json_int_t n =
            json_integer_value(json_object_get(counts, target_state_name((target_state_t) s)));
        if (n > 0)
            done += (uint64_t) n;
    }
    return done;
}

void cmd_ops_counts_text(const json_t *counts, char *buf, size_t size)
{
    size_t used = 0;
    if (!size)
        return;
    buf[0] = '\0';
    for (int s = 0; s < TARGET_STATE_COUNT; s++) {
        const char *name = target_state_name((target_state_t) s);
        json_int_t n = json_integer_value(json_object_get(counts, name));
        if (n <= 0)
            continue;
        int w =
            snprintf(buf + used, size - used, "%s%s %lld", used ? ", " : "", name, (long long) n);
        if (w < 0 || (size_t) w >= size - used)
            return;
        used += (size_t) w;
    }
    if (!used)
        snprintf(buf, size, "no targets");
}

int cmd_ops_get(const char *path, json_t **out, long *status)
{
    char err[1024];
    json_t *json = NULL;
    *out = NULL;
    *status = 0;
    if (cli_get(cli_options()->addr, path, &json, status, err, sizeof err) != 0) {
        cli_fail("%s", err);
        return CLI_EXIT_FAIL;
    }
    if (*status < 200 || *status > 299) {
        const char *msg = json_string_value(json_object_get(json, "error"));
        if (*status == 401)
            cli_fail("%s (set GAGGLE_HTTP_TOKEN or GAGGLE_HTTP_TOKEN_FILE)",
                     msg ? msg : "the agent needs a bearer token");
        else if (msg)
            cli_fail("%s", msg);
        else
            cli_fail("the agent at %s answered HTTP %ld for %s", cli_options()->addr, *status,
                     path);
        json_decref(json);
        return CLI_EXIT_FAIL;
    }
    if (!json) {
        cli_fail("the agent at %s sent an answer that is not JSON for %s", cli_options()->addr,
                 path);
        return CLI_EXIT_FAIL;
    }
    *out = json;
    return CLI_EXIT_OK;
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

static int s_print_or_json(json_t *answer, const char *line)
{
    if (cli_options()->json)
        return cli_print_json(answer);
    fputs(line, stdout);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

static bool s_help(int argc, char **argv, const char *usage)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return true;
        }
    return false;
}

/* ---- approve ---- */

int cmd_approve(int argc, char **argv)
{
    const char *id = NULL, *key = NULL;
    const char **targets = NULL;
    size_t n = 0;
    json_t *answer = NULL, *plan = NULL;
    int rc = CLI_EXIT_USAGE;
    if (s_help(argc, argv, cmd_approve_usage))
        return CLI_EXIT_OK;
    if (!(targets = calloc((size_t) argc, sizeof *targets))) {
        cli_fail("out of memory");
        return CLI_EXIT_FAIL;
    }
    for (int i = 1; i < argc; i++) {
        const char *value = NULL;
        int k = cmd_ops_key_flag(argc, argv, &i, "approve", &key);
        if (k == 0)
            k = s_value_flag(argc, argv, &i, "approve", "--target", &value);
        if (k < 0)
            goto out;
        if (value) {
            if (n >= CMD_OPS_TARGETS_MAX) {
                cli_fail("approve: at most %d --target flags at a time", CMD_OPS_TARGETS_MAX);
                goto out;
            }
            targets[n++] = value;
        } else if (k == 0 && argv[i][0] == '-') {
            cli_fail("approve: unknown option '%.100s' (see gaggle approve --help)", argv[i]);
            goto out;
        } else if (k == 0 && id) {
            cli_fail("approve: one plan at a time (targets go with --target REF)");
            goto out;
        } else if (k == 0) {
            id = argv[i];
        }
    }
    if (!id) {
        cli_fail("approve: which plan? (see gaggle approve --help)");
        goto out;
    }
    rc = cmd_ops_plan_command("approve", id, key, n ? targets : NULL, n, NULL, &plan, &answer);
    if (rc == CLI_EXIT_OK) {
        char line[512];
        const char *name = json_string_value(json_object_get(plan, "name"));
        if (n)
            snprintf(line, sizeof line, "approved %zu target%s of plan %s\n", n, n == 1 ? "" : "s",
                     name);
        else
            snprintf(line, sizeof line, "approved every gated target of plan %s\n", name);
        rc = s_print_or_json(answer, line);
    }
out:
    json_decref(answer);
    json_decref(plan);
    free(targets);
    return rc;
}

/* ---- logs ---- */

int cmd_logs(int argc, char **argv)
{
    const char *id = NULL, *target = NULL, *wait_text = NULL;
    uint64_t wait_ms = CMD_OPS_LOG_WAIT_MS;
    json_t *answer = NULL;
    char *path = NULL, *esc = NULL, *suffix = NULL;
    int rc = CLI_EXIT_USAGE;
    if (s_help(argc, argv, cmd_logs_usage))
        return CLI_EXIT_OK;
    for (int i = 1; i < argc; i++) {
        int k = s_value_flag(argc, argv, &i, "logs", "--wait", &wait_text);
        if (k < 0)
            return CLI_EXIT_USAGE;
        if (k)
            continue;
        if (argv[i][0] == '-') {
            cli_fail("logs: unknown option '%.100s' (see gaggle logs --help)", argv[i]);
            return CLI_EXIT_USAGE;
        }
        if (!id)
            id = argv[i];
        else if (!target)
            target = argv[i];
        else {
            cli_fail("logs: one plan and one target (got '%.100s' too)", argv[i]);
            return CLI_EXIT_USAGE;
        }
    }
    if (!id || !target) {
        cli_fail("logs: give a plan and a target: gaggle logs ID TARGET");
        return CLI_EXIT_USAGE;
    }
    if (wait_text && units_parse_duration(wait_text, &wait_ms) != 0) {
        cli_fail("logs: --wait takes a duration such as 10s, got '%.50s'", wait_text);
        return CLI_EXIT_USAGE;
    }
    size_t slen;
    if (!(esc = cli_url_escape(target)) ||
        !(suffix = malloc(slen = strlen(esc) + sizeof "/log?target="))) {
        cli_fail("out of memory");
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    snprintf(suffix, slen, "/log?target=%s", esc);
    if (!(path = s_plan_path(id, suffix))) {
        cli_fail("out of memory");
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    uint64_t deadline = s_mono_ms() + wait_ms;
    for (;;) {
        long status = 0;
        if ((rc = cmd_ops_get(path, &answer, &status)) != CLI_EXIT_OK)
            goto out;
        if (status != 202)
            break;
        if (s_mono_ms() >= deadline) {
            const char *node = json_string_value(json_object_get(answer, "node"));
            cli_fail("the log of %s is on node %s, which did not answer within %s", target,
                     node ? node : "(unknown)", wait_text ? wait_text : "15s");
            rc = CLI_EXIT_FAIL;
            goto out;
        }
        json_decref(answer);
        answer = NULL;
        s_sleep_ms(S_POLL_MS);
    }
    if (cli_options()->json) {
        rc = cli_print_json(answer);
        goto out;
    }
    const json_t *log = json_object_get(answer, "log");
    if (!json_is_string(log)) {
        cli_fail("the agent at %s sent a log answer without \"log\"", cli_options()->addr);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    size_t len = json_string_length(log);
    fwrite(json_string_value(log), 1, len, stdout);
    if (len && json_string_value(log)[len - 1] != '\n')
        fputc('\n', stdout);
    if (json_is_true(json_object_get(answer, "truncated")))
        fprintf(stderr, "gaggle: (only the end of the log is shown)\n");
    rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
out:
    json_decref(answer);
    free(path);
    free(suffix);
    free(esc);
    return rc;
}

/* ---- report ---- */

int cmd_report(int argc, char **argv)
{
    const char *id = NULL, *format = NULL;
    json_t *doc = NULL;
    char *path = NULL, *md = NULL;
    int rc = CLI_EXIT_USAGE;
    if (s_help(argc, argv, cmd_report_usage))
        return CLI_EXIT_OK;
    for (int i = 1; i < argc; i++) {
        int k = s_value_flag(argc, argv, &i, "report", "--format", &format);
        if (k < 0)
            return CLI_EXIT_USAGE;
        if (k)
            continue;
        if (argv[i][0] == '-') {
            cli_fail("report: unknown option '%.100s' (see gaggle report --help)", argv[i]);
            return CLI_EXIT_USAGE;
        }
        if (id) {
            cli_fail("report: one plan at a time (got '%.100s' too)", argv[i]);
            return CLI_EXIT_USAGE;
        }
        id = argv[i];
    }
    if (!id) {
        cli_fail("report: which plan? (see gaggle report --help)");
        return CLI_EXIT_USAGE;
    }
    bool json = cli_options()->json;
    if (format && !strcmp(format, "json"))
        json = true;
    else if (format && strcmp(format, "md") && strcmp(format, "markdown")) {
        cli_fail("report: --format is md or json, not '%.50s'", format);
        return CLI_EXIT_USAGE;
    }
    if (!(path = s_plan_path(id, "/report?format=json"))) {
        cli_fail("out of memory");
        return CLI_EXIT_FAIL;
    }
    if ((rc = cli_call(path, NULL, 0, &doc)) != CLI_EXIT_OK)
        goto out;
    if (json) {
        rc = cli_print_json(doc);
        goto out;
    }
    size_t len = 0;
    int err = report_markdown(doc, &md, &len);
    if (err) {
        cli_fail("the agent at %s sent a report that cannot be rendered: %s", cli_options()->addr,
                 gg_strerror(err));
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    fwrite(md, 1, len, stdout);
    rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
out:
    free(md);
    free(path);
    json_decref(doc);
    return rc;
}

/* ---- audit ---- */

/* A stamp as the audit gives it (ISO text, or unix seconds or ms). */
static void s_stamp(const json_t *v, char *buf, size_t size)
{
    if (json_is_string(v)) {
        snprintf(buf, size, "%s", json_string_value(v));
        return;
    }
    if (json_is_integer(v) && json_integer_value(v) > 0) {
        json_int_t n = json_integer_value(v);
        time_t t = (time_t) (n > 100000000000LL ? n / 1000 : n);
        struct tm tm;
        if (gmtime_r(&t, &tm) && strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
            return;
    }
    snprintf(buf, size, "-");
}

static const char *s_field(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v && *v ? v : "-";
}

int cmd_audit(int argc, char **argv)
{
    const char *limit = NULL;
    json_t *answer = NULL;
    char path[64];
    int rc;
    if (s_help(argc, argv, cmd_audit_usage))
        return CLI_EXIT_OK;
    for (int i = 1; i < argc; i++) {
        int k = s_value_flag(argc, argv, &i, "audit", "--limit", &limit);
        if (k < 0)
            return CLI_EXIT_USAGE;
        if (!k) {
            cli_fail("audit: unexpected argument '%.100s' (see gaggle audit --help)", argv[i]);
            return CLI_EXIT_USAGE;
        }
    }
    uint64_t n = 0;
    if (limit) {
        char *end = NULL;
        n = strtoull(limit, &end, 10);
        if (!*limit || *end || n == 0 || n > 10000) {
            cli_fail("audit: --limit is a number from 1 to 10000");
            return CLI_EXIT_USAGE;
        }
        snprintf(path, sizeof path, "/v1/audit?limit=%llu", (unsigned long long) n);
    } else {
        snprintf(path, sizeof path, "/v1/audit");
    }
    if ((rc = cli_call(path, NULL, 0, &answer)) != CLI_EXIT_OK)
        return rc;
    if (cli_options()->json) {
        rc = cli_print_json(answer);
        json_decref(answer);
        return rc;
    }
    const json_t *entries = json_object_get(answer, "entries");
    if (!json_is_array(entries)) {
        cli_fail("the agent at %s sent an audit without \"entries\"", cli_options()->addr);
        json_decref(answer);
        return CLI_EXIT_FAIL;
    }
    if (json_array_size(entries) == 0) {
        printf("no signed commands accepted yet\n");
    } else {
        printf("%-20s  %-12s  %-12s  %-16s  %s\n", "AT", "TYPE", "PLAN/NODE", "OPERATOR", "VIA");
        size_t i;
        const json_t *e;
        json_array_foreach(entries, i, e)
        {
            char at[40];
            s_stamp(json_object_get(e, "at"), at, sizeof at);
            const char *what = json_object_get(e, "plan") ? s_field(e, "plan") : s_field(e, "node");
            printf("%-20s  %-12.12s  %-12.12s  %-16.16s  %s\n", at, s_field(e, "type"), what,
                   s_field(e, "operator"), s_field(e, "via"));
        }
    }
    json_decref(answer);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

/* ---- drain, force-leave ---- */

static int s_node_command(int argc, char **argv, const char *type, const char *usage)
{
    const char *node = NULL, *key = NULL;
    if (s_help(argc, argv, usage))
        return CLI_EXIT_OK;
    for (int i = 1; i < argc; i++) {
        int k = cmd_ops_key_flag(argc, argv, &i, type, &key);
        if (k < 0)
            return CLI_EXIT_USAGE;
        if (k)
            continue;
        if (argv[i][0] == '-') {
            cli_fail("%s: unknown option '%.100s' (see gaggle %s --help)", type, argv[i], type);
            return CLI_EXIT_USAGE;
        }
        if (node) {
            cli_fail("%s: one node at a time (got '%.100s' too)", type, argv[i]);
            return CLI_EXIT_USAGE;
        }
        node = argv[i];
    }
    if (!node) {
        cli_fail("%s: which node? (see gaggle %s --help)", type, type);
        return CLI_EXIT_USAGE;
    }
    char *esc = cli_url_escape(node);
    if (!esc) {
        cli_fail("out of memory");
        return CLI_EXIT_FAIL;
    }
    size_t n = strlen(esc) + strlen(type) + 16;
    char *path = malloc(n);
    json_t *answer = NULL;
    int rc = CLI_EXIT_FAIL;
    if (!path) {
        cli_fail("out of memory");
        goto out;
    }
    snprintf(path, n, "/v1/nodes/%s/%s", esc, type);
    rc = cli_command_post(type, key, type, NULL, NULL, 0, NULL, node, NULL, path, &answer);
    if (rc == CLI_EXIT_OK) {
        char line[300];
        snprintf(line, sizeof line, "%s %s\n",
                 !strcmp(type, "drain") ? "draining" : "forced to leave:", node);
        rc = s_print_or_json(answer, line);
    }
out:
    json_decref(answer);
    free(path);
    free(esc);
    return rc;
}

int cmd_drain(int argc, char **argv)
{
    return s_node_command(argc, argv, "drain", cmd_drain_usage);
}

int cmd_force_leave(int argc, char **argv)
{
    return s_node_command(argc, argv, "force-leave", cmd_force_leave_usage);
}
