/*
 * cmd_ops.h: the operator commands around running plans and nodes:
 * `gaggle approve`, `logs`, `report`, `audit`, `drain` and `force-leave`,
 * plus the helpers the plan subcommands and `status` share with them
 * (plan lookup by id, prefix or name; signed plan commands; progress bars).
 */
#ifndef GG_CMD_OPS_H
#define GG_CMD_OPS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CMD_OPS_TARGETS_MAX 10000 /* --target flags in one command */
#define CMD_OPS_LOG_WAIT_MS 15000 /* default wait for a log held by another node */

int cmd_approve(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_drain(int argc, char **argv);
int cmd_force_leave(int argc, char **argv);

extern const char cmd_approve_usage[];
extern const char cmd_logs_usage[];
extern const char cmd_report_usage[];
extern const char cmd_audit_usage[];
extern const char cmd_drain_usage[];
extern const char cmd_force_leave_usage[];

/* ---- shared with cmd_plan.c and gaggle.c ---- */

/* GET /v1/plans/ID (ID: full id, unique prefix or name). Returns a CLI exit
 * code; on success *plan holds the answer (caller decrefs) with a string
 * "id" and "name" (checked). */
int cmd_ops_plan_get(const char *id, json_t **plan);

/* Looks the plan up, then signs an operator command of `type` for it and
 * POSTs it to /v1/plans/<full id>/<type>. key_path NULL: $GAGGLE_KEY.
 * Prints nothing on success (*answer holds the agent's JSON and *plan, when
 * not NULL, the plan). Returns a CLI exit code. */
int cmd_ops_plan_command(const char *type, const char *id, const char *key_path,
                         const char *const *targets, size_t n_targets, const char *state,
                         json_t **plan, json_t **answer);

/* Reads `--key FILE` / `--key=FILE` at argv[*i] (advancing *i past a
 * separate value). Returns 1 when it was a key flag, 0 when not, -1 (error
 * printed) when the value is missing. */
int cmd_ops_key_flag(int argc, char **argv, int *i, const char *what, const char **key);

/* "[#########.........]" of `width` cells for done/total into buf. */
void cmd_ops_bar(char *buf, size_t size, uint64_t done, uint64_t total, int width);

/* Targets finished (succeeded, skipped, needs_review, failed, cancelled) in
 * a "counts" object. */
uint64_t cmd_ops_done(const json_t *counts);

/* "running 3, failed 1, ..." for the non-zero states (in state order), or
 * "no targets" into buf. */
void cmd_ops_counts_text(const json_t *counts, char *buf, size_t size);

/* A GET whose 2xx status matters (202 for "still fetching"): like cli_call
 * but *status receives the HTTP status. */
int cmd_ops_get(const char *path, json_t **out, long *status);

#endif
