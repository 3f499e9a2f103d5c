/*
 * engine.h: the main job's driver. It wires the pure fleet core
 * (coordination/fleet: ownership, leases, replication) to the cluster
 * transport, the LMDB store, the target runner (agent/runner) and the HTTP
 * API, the way agent/cluster wires the membership core.
 *
 *   POST /v1/plans ---verify---> store doc --> fleet_doc_add + fleet_add_plan
 *   peer messages (progress, digest, lease, plan) --> fleet_handle
 *   membership changes --> fleet_set_members
 *   one loop timer --> fleet_tick --> outputs:
 *       SEND    cluster_send
 *       RUN     runner_start (claim granted)      ABORT  runner_abort
 *       RECORD  targets db (group commit: one write transaction per drain)
 *       DOC     verify signature, store, accept (plan: fleet_add_plan;
 *               command: apply) or reject
 *   runner outcome --> fleet_record_local (retry_wait: a timer starts the next
 *   attempt under the same lease)
 *
 * LMDB layout owned by the engine:
 *   plans     "d" + doc id (32) -> {kind u8, size u64 BE}        document index
 *             "c" + doc id (32) + chunk (u32 BE) -> bytes        1 MiB chunks
 *             (docstore.h)
 *   targets   plan id (32) + index (u32 BE) -> progress record (msgpack)
 *   logs      plan id (32) + index (u32 BE) -> last output tail of the target
 *   audit     seq (u64 BE) -> {"at", "type", "plan", "operator", "node"} JSON
 *
 * The query functions below serve the HTTP API and metrics; everything runs
 * on the loop thread.
 */
#ifndef GG_ENGINE_H
#define GG_ENGINE_H

#include "fleet.h"
#include "notify.h"
#include "plan.h"
#include "progress.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct _agent_t agent_t;
typedef struct _cluster_t cluster_t;
typedef struct _engine_t engine_t;

#define ENGINE_DOC_PLAN    1
#define ENGINE_DOC_COMMAND 2

/* One accepted plan as the API shows it. */
/* Plans in memory: a plan document in canonical form (what the CLI sends
 * and peers replicate) is verified piece by piece and held compact
 * (plan_from_canonical): the spec and, per target, its ref, approval flag and
 * place in the stored document, whose JSON is read back (plan_target_load)
 * when the target runs. Any other form is parsed whole and held whole
 * (plan_from_json). */
typedef struct {
    uint8_t id[FLEET_ID_LEN];
    char id_hex[FLEET_ID_LEN * 2 + 1];
    plan_t *plan;                 /* verified; compact or whole */
    fleet_plan_control_t control; /* by operator commands */
    uint64_t accepted_ms;         /* wall clock, display */
} engine_plan_t;

engine_t *engine_new(agent_t *agent, cluster_t *cluster, char *err, size_t errlen);
void engine_destroy(engine_t **self_p);

/* Graceful leave: hand back held targets, then engine_leave_done. */
void engine_leave(engine_t *self);
bool engine_leave_done(engine_t *self);

/* ---- queries ---- */
size_t engine_plan_count(engine_t *self);
const engine_plan_t *engine_plan_at(engine_t *self, size_t i);
/* By full hex id or a unique prefix of at least 6 hex digits, or by name. */
const engine_plan_t *engine_plan_find(engine_t *self, const char *id_or_name);
/* "active", "paused", "cancelled", "completed". */
const char *engine_plan_state(engine_t *self, const engine_plan_t *p);
int engine_plan_stats(engine_t *self, const engine_plan_t *p, fleet_plan_stats_t *out);
const progress_rec_t *engine_record(engine_t *self, const engine_plan_t *p, uint32_t index);
/* The displayed state of a target: derived states included. */
target_state_t engine_target_state(engine_t *self, const engine_plan_t *p, uint32_t index);
/* A node's name from its id (members, then certificates seen), or NULL. */
const char *engine_node_name(engine_t *self, const uint8_t id[FLEET_ID_LEN]);

/* ---- mutations (signed documents from the HTTP API) ----
 * Each verifies the document, applies it, stores and replicates it. Returns
 * an HTTP status and fills *answer (a JSON object: the result, or {"error"}). */
int engine_submit_plan(engine_t *self, const char *body, size_t len, json_t **answer);
/* action: pause, resume, cancel, retry, approve, mark (must match the
 * command's type; plan must match the URL's plan). */
int engine_submit_command(engine_t *self, const engine_plan_t *p, const char *action,
                          const char *body, size_t len, json_t **answer);

/* The last output tail of a target: from the local store when this node ran
 * it, else NULL (the API then asks the holder, see engine_fetch_log). */
char *engine_local_log(engine_t *self, const engine_plan_t *p, uint32_t index, size_t *len);
/* Asks the holder node for a target's log; the answer is cached and served by
 * engine_cached_log on a later call. Returns 0 when a request went out. */
int engine_fetch_log(engine_t *self, const engine_plan_t *p, uint32_t index);
char *engine_cached_log(engine_t *self, const engine_plan_t *p, uint32_t index, size_t *len);

/* The audit trail, oldest first: {"entries": [{"at", "type", "plan" | "node", "operator",
 * "issued"}]}. */
json_t *engine_audit_json(engine_t *self, size_t limit);
/* Records a signed node command this node applied (drain, force-leave,
 * revoke: `node` is the node or the certificate subject). */
void engine_audit_node(engine_t *self, const char *type, const char *node, const uint8_t signer[32],
                       uint64_t issued);

/* Targets held (running or waiting to retry) by node `id` in unfinished
 * plans, counted up to `limit`. */
uint64_t engine_held_by(engine_t *self, const uint8_t id[FLEET_ID_LEN], uint64_t limit);
/* {"<target state>": n, ...} of a plan's stats, or NULL. */
json_t *engine_counts_json(const fleet_plan_stats_t *st);

/* The step executor (its --workers cap), shared with the agent's other
 * hooks (the fleet's scaler). */
executor_t *engine_executor(engine_t *self);

/* The notify hook's counters (notify.h). */
const notify_stats_t *engine_notify_stats(engine_t *self);

/* Fleet core statistics (claims, conflicts, fenced results...). */
const fleet_stats_t *engine_fleet_stats(engine_t *self);
/* True once the fleet core may claim (fleet_synced). */
bool engine_fleet_synced(engine_t *self);

#endif
