/*
 * report.h: a plan's migration report (SPEC.md "Docs"): every target with its
 * state, attempts, duration, node and anomaly, and the totals per state.
 *
 * The renderer knows nothing of the engine: the caller (agent/api.c) copies
 * what it needs into a plain report_input_t, so the renderer is tested with
 * fake input. There is one source of truth, the JSON document:
 *
 *   report_input_t --report_json--> {"plan", "name", "dataset", "totals",
 *                                    "targets": [...], ...}
 *                  --report_markdown--> Markdown text
 *
 * report_markdown reads the JSON (checking every field, since the CLI renders
 * the Markdown from an agent's answer), so the agent's Markdown and the CLI's
 * are the same text.
 *
 * JSON shape (fields may be added, never renamed or removed):
 *   {"plan": "<id>", "name", "owner": str|null, "description": str|null,
 *    "state": "active|paused|cancelled|completed",
 *    "dataset": {"from", "to"},
 *    "generated": "<UTC ISO 8601>",
 *    "total": n,
 *    "totals": {"<target state>": n, ...}          (every state, zeros included)
 *    "targets": [{"ref", "state", "attempts", "duration_ms", "duration",
 *                 "node": str|null, "error": str|null, "epoch",
 *                 "started": str|null, "finished": str|null}]}
 */
#ifndef GG_REPORT_H
#define GG_REPORT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define REPORT_TARGETS_MAX 1000000      /* targets in one report */
#define REPORT_FIELD_MAX   4096         /* bytes of one text field kept */
#define REPORT_MD_MAX      (256u << 20) /* bytes of Markdown */

/* One target. Strings are borrowed; NULL or "" means none. */
typedef struct {
    const char *ref;
    const char *state; /* a target state name (progress.h) */
    uint32_t attempts;
    uint32_t epoch;
    uint64_t duration_ms;
    const char *node;     /* the node that ran (or runs) it */
    const char *error;    /* the anomaly, if any */
    uint64_t started_ms;  /* unix ms, 0 unknown */
    uint64_t finished_ms; /* unix ms, 0 unknown */
} report_target_t;

typedef struct {
    const char *id; /* plan id (hex) */
    const char *name;
    const char *owner;       /* or NULL */
    const char *description; /* or NULL */
    const char *state;       /* plan state */
    const char *dataset_from;
    const char *dataset_to;
    uint64_t generated_ms; /* unix ms of the report */
    const report_target_t *targets;
    size_t target_count;
} report_input_t;

/* Builds the report document. Returns 0 and a new reference in *out,
 * GG_EINVAL (a NULL id/name or an unknown state name), GG_ETOOBIG (more than
 * REPORT_TARGETS_MAX targets) or GG_ENOMEM. */
int report_json(const report_input_t *in, json_t **out);

/* Renders a report document (as made by report_json, possibly received from
 * an agent) as Markdown: a heading, the plan's facts, a totals table, then a
 * table of every target; anomalies are listed after the table. Every text
 * cell is escaped (pipes, newlines, HTML, backticks). Returns 0 with a
 * malloc'd NUL-terminated text in *out (length in *len, may be NULL),
 * GG_EMALFORMED when a required field is missing or of the wrong type,
 * GG_ETOOBIG past REPORT_MD_MAX, or GG_ENOMEM. */
int report_markdown(const json_t *report, char **out, size_t *len);

#endif
