/*
 * cmd_plan.h: `gaggle plan validate FILE` and `gaggle plan apply FILE
 * [--dry-run] [--key FILE]`: read a plan, resolve its targets from the
 * catalog, report every error, sign it with an operator key and hand it to
 * the local agent (or, with --dry-run, show which node would own each target).
 */
#ifndef GG_CMD_PLAN_H
#define GG_CMD_PLAN_H

/* Runs `gaggle plan SUBCOMMAND ...`; argv[0] is "plan", global flags already
 * removed (read through cli_options()). Returns the exit code: 0 success (a
 * valid plan), 1 failure or an invalid plan, 2 usage error. */
int cmd_plan(int argc, char **argv);

/* The usage text, for `gaggle help plan`. */
extern const char cmd_plan_usage[];

#endif
