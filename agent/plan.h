/*
 * plan.h: migration plans: parse, validate, resolve targets, canonical form.
 *
 * A plan is written in YAML or JSON (SPEC.md "Plan"). Its life:
 *
 *   plan_load_file()     the CLI reads the file: every field checked, every
 *                        error collected (not just the first) with its file,
 *                        line and field; defaults filled in, entity refs
 *                        normalised, relative paths made absolute against the
 *                        plan file's folder. A bad plan yields no plan_t.
 *   plan_load_catalog()  the CLI reads spec.catalog (catalog warnings become
 *   plan_resolve()       plan warnings), selects the targets and freezes each
 *                        one's fields into the plan, sorted by ref.
 *   plan_json()          the resolved plan as one JSON document; its
 *   plan_id()            canonical bytes (signed.h) are what the operator
 *                        signs, and their BLAKE2b-256 is the plan id.
 *   plan_from_json()     an agent rebuilds the plan from a verified payload:
 *                        the same checks, plus: the payload must already be
 *                        in the normalised form (so every node reads the same
 *                        values from the same signed bytes).
 *   plan_from_canonical() the same from the payload's canonical bytes, read
 *                        one target at a time: the agent's way to hold a
 *                        large plan (a compact index; each target's JSON is
 *                        read back from the stored document on demand).
 *
 * The resolved document is the source form with everything explicit:
 *
 *   {"apiVersion": "gaggle/v1", "kind": "MigrationPlan",
 *    "metadata": {"name", "owner"?, "description"?},
 *    "spec": {"catalog": "/abs/path" | "https://...",
 *             "dataset": {"from", "to"},
 *             "targets": {"consumersOf", "transitive", "kinds", "owner",
 *                         "lifecycle", "tags", "annotations", "include",
 *                         "exclude"},
 *             "vars": {}, "precheck"?, "steps": [...], "verify"?, "judge"?,
 *             "retry": {...}, "rollout": {"canary", "maxParallel"?,
 *             "ratePerMinute"?, "maxFailureRatio"?}, "approval"?, "docs"?,
 *             "notify"?},
 *    "targets": [{"ref", "kind", "namespace", "name", "owner"?, "lifecycle"?,
 *                 "source"?, "path"?, "annotations", "entity", "approval"}]}
 *
 * where durations are strings in their largest exact unit ("30m", "1500ms"),
 * rewrite.replace is a list of {"from", "to"} pairs (JSON objects have no
 * order once keys are sorted), owner and lifecycle filters are lists, and
 * "approval" in a target says it matches spec.approval.when.
 *
 * Template placeholders (template.h) are checked at validation: an unknown
 * variable, or {{vars.X}} with no X in spec.vars, is an error naming the field.
 * Commands (run, precheck, verify, judge, notify, agent.run, publish.run) are
 * expanded with shell quoting; rewrite paths and replacements and agent
 * prompts without.
 */
#ifndef GG_PLAN_H
#define GG_PLAN_H

#include "catalog.h"
#include "template.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PLAN_API_VERSION "gaggle/v1"
#define PLAN_KIND        "MigrationPlan"

/* Bounds. */
#define PLAN_FILE_MAX      (16u << 20) /* bytes of a plan file */
#define PLAN_TARGETS_MAX   1000000     /* frozen targets */
#define PLAN_STEPS_MAX     64
#define PLAN_COMMAND_MAX   (64u << 10)  /* bytes of one run command (before expansion) */
#define PLAN_TEXT_MAX      (256u << 10) /* bytes of a prompt or description */
#define PLAN_VALUE_MAX     4096         /* bytes of a var value, a filter value, a path */
#define PLAN_VARS_MAX      256
#define PLAN_LIST_MAX      100000 /* entries in include/exclude */
#define PLAN_FILTER_MAX    256    /* entries in kinds/owner/lifecycle/tags/annotations */
#define PLAN_DIAG_MAX      1000   /* errors (and warnings) kept; more are counted */
#define PLAN_ID_LEN        64     /* hex digits */
#define PLAN_MAX_TURNS_MAX 100
#define PLAN_QUORUM_MAX    64

/* Defaults (SPEC.md "Defaults when a field is absent"). */
#define PLAN_DEFAULT_TIMEOUT_MS     (30ull * 60 * 1000)
#define PLAN_DEFAULT_MAX_ATTEMPTS   3
#define PLAN_DEFAULT_BACKOFF_MS     1000ull
#define PLAN_DEFAULT_MULTIPLIER     2.0
#define PLAN_DEFAULT_MAX_BACKOFF_MS 60000ull
#define PLAN_DEFAULT_MAX_TURNS      3

/* ---- diagnostics: every error and warning, with where it is ---- */

typedef struct _plan_diag_t plan_diag_t;

plan_diag_t *plan_diag_new(void);
void plan_diag_destroy(plan_diag_t **self_p);
/* Adds {where, message}. Past PLAN_DIAG_MAX entries of a kind, only counts. */
void plan_diag_add(plan_diag_t *self, bool error, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Totals, including entries past the cap. */
size_t plan_diag_error_count(const plan_diag_t *self);
size_t plan_diag_warning_count(const plan_diag_t *self);
/* Arrays of {"where", "message"} objects (at most PLAN_DIAG_MAX), borrowed. */
json_t *plan_diag_errors(const plan_diag_t *self);
json_t *plan_diag_warnings(const plan_diag_t *self);

/* ---- the plan ---- */

typedef enum {
    PLAN_STEP_RUN = 0,
    PLAN_STEP_REWRITE,
    PLAN_STEP_NOOP,
    PLAN_STEP_AGENT,
    PLAN_STEP_PUBLISH,
} plan_step_kind_t;

typedef struct {
    const char *from; /* template (TEMPLATE_RAW) */
    const char *to;   /* template (TEMPLATE_RAW) */
} plan_replace_t;

/* Every pointer in these views borrows from the plan and lives as long as it. */
typedef struct {
    const char *name;
    plan_step_kind_t kind;
    const char *run;          /* run, agent.run or publish.run (TEMPLATE_SHELL); else NULL */
    const char *const *paths; /* rewrite: glob templates (TEMPLATE_RAW) */
    size_t path_count;
    const plan_replace_t *replace; /* rewrite: in order */
    size_t replace_count;
    bool word;          /* rewrite: whole words */
    bool regex;         /* rewrite: POSIX ERE */
    const char *prompt; /* agent (TEMPLATE_RAW) */
    uint32_t max_turns; /* agent */
    uint64_t timeout_ms;
    bool sandbox_network_none;
} plan_step_t;

typedef struct {
    const char *run; /* NULL when the hook is absent */
    uint64_t timeout_ms;
} plan_hook_t;

typedef struct {
    /* plan */
    const char *name;
    const char *owner;       /* canonical ref or NULL */
    const char *description; /* or NULL */
    /* spec */
    const char *catalog;      /* absolute path or http(s) URL */
    const char *dataset_from; /* canonical refs */
    const char *dataset_to;
    const char *consumers_of;
    bool transitive;
    const json_t *vars; /* object of strings */
    plan_hook_t precheck, verify, judge, notify;
    const char *const *notify_on; /* event names */
    size_t notify_on_count;
    const plan_step_t *steps;
    size_t step_count;
    uint32_t max_attempts;
    uint64_t initial_backoff_ms;
    double multiplier;
    uint64_t max_backoff_ms;
    const int *retryable_exit_codes; /* empty: every failure is retryable */
    size_t retryable_count;
    uint32_t canary;          /* 0: no canary */
    uint32_t max_parallel;    /* 0: unlimited */
    uint32_t rate_per_minute; /* 0: unlimited */
    double max_failure_ratio; /* < 0: never pause on failures */
    bool approval;            /* spec.approval present */
    uint32_t quorum;
    const char *docs_catalog_out; /* absolute path or NULL */
    const char *docs_report;      /* absolute path or NULL */
} plan_spec_t;

typedef struct {
    const char *ref;  /* canonical, lower case */
    const char *kind; /* as written in the catalog */
    const char *namespace;
    const char *name;
    const char *owner;         /* canonical ref or NULL */
    const char *lifecycle;     /* or NULL */
    const char *source;        /* or NULL */
    const char *path;          /* absolute folder or NULL */
    const json_t *annotations; /* object */
    const json_t *entity;      /* the whole entity */
    bool needs_approval;
} plan_target_t;

typedef struct _plan_t plan_t;

typedef struct {
    bool check_root; /* refuse sandbox steps unless geteuid() == 0 (the CLI) */
} plan_opts_t;

/* Reads and validates a plan file. `display` names the file in messages
 * (NULL: path). Returns 0 and a new unresolved plan, or GG_EINVAL when the
 * plan has errors (all in diag), GG_ENOTFOUND/GG_EIO/GG_ETOOBIG when it
 * cannot be read (also in diag), GG_ENOMEM. Warnings go to diag too. */
int plan_load_file(const char *path, const char *display, const plan_opts_t *opts, plan_t **out,
                   plan_diag_t *diag);

/* Same from text; relative paths resolve against base_dir (must be absolute;
 * NULL: the current directory). */
int plan_load_text(const char *text, size_t len, const char *display, const char *base_dir,
                   const plan_opts_t *opts, plan_t **out, plan_diag_t *diag);

/* Rebuilds a resolved plan from its JSON (a verified payload). Returns 0, or
 * GG_EINVAL with the reasons in diag (which may be NULL). The payload is
 * copied: every frozen target stays in memory (plan_target works). */
int plan_from_json(const json_t *payload, plan_t **out, plan_diag_t *diag);

/* Reads [offset, offset + len) of the stored document `id` (the plan id, 32
 * bytes) into buf; returns the bytes read (fewer: the document is gone or
 * shorter). The engine's LMDB document reader has this shape. */
typedef size_t(plan_doc_reader_fn)(void *arg, const uint8_t id[32], uint64_t offset, uint8_t *buf,
                                   size_t len);

/* The agent's way to hold a large plan: builds a compact plan from the text
 * of a stored signed document whose payload (bytes [payload_off,
 * payload_off + payload_len) of text) is already in canonical form
 * (signed.h). The payload is read piece by piece (head, then one frozen
 * target at a time, each parsed with jansson, duplicate keys refused,
 * checked exactly as plan_from_json checks it, and freed), so the whole
 * document is never a JSON tree in memory. What is kept: the spec, and per
 * target its ref, its approval flag and where its JSON lies in `text`;
 * plan_target_load reads a target back through `reader` (which must serve
 * the same bytes as text for the plan's id; may be NULL when no target is
 * ever loaded). The id is the BLAKE2b-256 of the payload bytes.
 *
 * The form of the bytes: each piece is re-dumped and compared with its
 * bytes, which proves them canonical, so the id equals signed_hash_hex of
 * the parsed payload (what the CLI printed and every other path computes).
 * replicated_id (32 bytes, or NULL) is the id a document was replicated or
 * stored under: when the payload's hash equals it, the targets are not
 * re-dumped (about a third of the time), because that id already is the hash
 * of the bytes every node stores, so all nodes agree on it whatever their
 * form. Their fields are checked all the same. The node a plan is submitted
 * to passes NULL and keeps the full proof; a document whose hash differs
 * from replicated_id (one re-serialised before it was submitted, whose id is
 * that of its canonical form) is proven as with NULL.
 *
 * Returns 0; GG_EMALFORMED when the payload is not in canonical form or not a
 * plan's shape (the caller may then parse it whole: plan_from_json gives the
 * exact errors); GG_EINVAL for a plan with errors (in diag, may be NULL);
 * GG_ENOMEM. */
int plan_from_canonical(const char *text, size_t len, size_t payload_off, size_t payload_len,
                        const uint8_t *replicated_id, plan_doc_reader_fn *reader, void *reader_arg,
                        plan_t **out, plan_diag_t *diag);

void plan_destroy(plan_t **self_p);

/* Reads spec.catalog into a new catalog; its warnings are copied into diag.
 * Returns 0, or the catalog's error (also as a diag error at spec.catalog). */
int plan_load_catalog(const plan_t *self, catalog_t **out, plan_diag_t *diag);

/* Selects and freezes the targets from cat. Errors (an include ref not in
 * the catalog, too many targets) go to diag and return GG_EINVAL, leaving the
 * plan unresolved. Zero targets is a warning. */
int plan_resolve(plan_t *self, catalog_t *cat, plan_diag_t *diag);

bool plan_is_resolved(const plan_t *self);
/* The plan id (64 hex digits), "" until resolved. */
const char *plan_id(const plan_t *self);
const char *plan_name(const plan_t *self);
const plan_spec_t *plan_spec(const plan_t *self);
/* The normalised (and, once resolved, frozen) document, borrowed. A compact
 * plan's holds no "targets". */
const json_t *plan_json(const plan_t *self);
/* The canonical bytes of plan_json (signed.h), what the id hashes and the
 * operator signs: kept by plan_resolve (borrowed, not NUL-terminated).
 * Returns 0, or GG_EINVAL for a plan that plan_resolve did not resolve. */
int plan_canonical(const plan_t *self, const char **bytes, size_t *len);

size_t plan_target_count(const plan_t *self);
/* True for a plan from plan_from_canonical: its targets are not in memory. */
bool plan_is_compact(const plan_t *self);
/* The in-memory view of target i; NULL when i is out of range or the plan is
 * compact (use plan_target_load). Borrowed: lives as long as the plan. */
const plan_target_t *plan_target(const plan_t *self, size_t i);
/* Cheap on every plan: target i's canonical ref and approval flag (NULL /
 * false when i is out of range). The ref lives as long as the plan. */
const char *plan_target_ref(const plan_t *self, size_t i);
bool plan_target_needs_approval(const plan_t *self, size_t i);
/* Target i with every field (entity, annotations, ...) in a new view the
 * caller releases with plan_target_release; for a compact plan it is read
 * back from the stored document. Its pointers live until the release (the
 * plan must outlive it). Returns 0, GG_ENOTFOUND (no target i), GG_EIO (the
 * stored document cannot be read or no longer holds that target), GG_ENOMEM. */
int plan_target_load(const plan_t *self, size_t i, plan_target_t **out);
/* NULL-safe; clears *target_p. */
void plan_target_release(plan_target_t **target_p);
/* Index of the target whose ref equals `ref` (case-insensitive; kind
 * defaults to component), or -1. */
long plan_find_target(const plan_t *self, const char *ref);
/* Heap bytes held for the targets (index, refs, or the in-memory views);
 * the JSON document of an in-memory plan is not counted. */
size_t plan_targets_memory(const plan_t *self);

/* What a template sees at run time. */
typedef struct {
    uint32_t attempt;
    uint64_t epoch;
    const char *workdir; /* NULL: "" */
} plan_render_ctx_t;

/* Expands a template from this plan (a step's run, a prompt, ...) for target
 * i (pass (size_t)-1 for none: target fields are then ""). Returns 0 and a
 * malloc'd string in *out, or template_expand's errors with a reason in err;
 * GG_ENOTFOUND for no target i (a compact plan's target is loaded for the
 * call: plan_render_target avoids that for repeated renders). */
int plan_render(const plan_t *self, size_t target_index, const plan_render_ctx_t *ctx,
                const char *tmpl, template_quote_t mode, char **out, char *err, size_t errlen);
/* Same for a target already at hand (plan_target or plan_target_load; NULL
 * for none). */
int plan_render_target(const plan_t *self, const plan_target_t *target,
                       const plan_render_ctx_t *ctx, const char *tmpl, template_quote_t mode,
                       char **out, char *err, size_t errlen);

#endif
