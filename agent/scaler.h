/*
 * scaler.h: the fleet asks for more agents when a large batch queues, and
 * for fewer when it has drained (SPEC.md "gaggled", config `scale:`).
 *
 * Every agent with a `scale:` section runs a scaler; only one acts: the
 * decider, the live, non-draining member with the highest rendezvous score
 * for the key "gaggle/scaler" in that node's view (no election; a view change
 * hands the role over). Every second the decider weighs the backlog (targets
 * pending, running or waiting to retry in active plans) and wants
 *
 *     desired = clamp(ceil(backlog / targetsPerAgent), minAgents, maxAgents)
 *
 * agents, where the fleet has `current` live members that are not draining:
 *
 *   desired > current, cooldown over  -> runs `scale.run` (action "up")
 *   desired < current, cooldown over  -> picks current - desired elastic
 *       members (scale.elastic: true, announced by MEMBER_FLAG_ELASTIC; never
 *       itself; lowest score first) and asks each to retire (WIRE_SCALE): the
 *       member checks that the sender is the decider in its own view and that
 *       it is elastic, then marks itself DRAINING | RETIRING (gossiped): it
 *       takes no new targets. Agents an operator runs by hand are not elastic
 *       and are never retired; agents the provider starts are. When the only
 *       elastic member left is the decider, it retires itself and the role
 *       passes on.
 *   a RETIRING member holds no target  -> runs `scale.run` (action "down",
 *       "remove": its name), again after each cooldown while it is listed
 *
 * The provider command gets on stdin one JSON object {"action": "up"|"down",
 * "desired", "current", "backlog", "reason", "remove": [names], "members":
 * [names of the live, non-draining members]} and runs through the agent's
 * executor (its --workers cap, a 60 s timeout). The provider stops a removed
 * agent with SIGTERM (a graceful leave). Calls are counted by result
 * (gaggle_scale_calls_total) and the last decision is kept for /metrics
 * (gaggle_scale_desired_agents).
 */
#ifndef GG_SCALER_H
#define GG_SCALER_H

#include "config.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct _agent_t agent_t;
typedef struct _cluster_t cluster_t;
typedef struct _engine_t engine_t;
typedef struct scaler_t scaler_t;

#define SCALER_TICK_MS     1000u
#define SCALER_RUN_TIMEOUT 60000u
#define SCALER_REMOVE_MAX  64u /* names in one "down" call */

typedef struct {
    uint64_t calls_ok, calls_failed; /* provider runs */
    uint64_t retire_sent;            /* retire requests this node sent */
    uint64_t retire_applied;         /* retire requests this node obeyed */
    uint64_t retire_refused;         /* ... refused (not from the decider, no scale:) */
    uint32_t desired;                /* last decision as decider (0: not decider) */
    bool decider;
} scaler_stats_t;

/* The agents a backlog needs under cfg (pure). */
uint32_t scaler_desired(const config_scale_t *cfg, uint64_t backlog);

/* Registers the WIRE_SCALE handler and the timer. The scaler reads the live
 * configuration each tick (a reload may add, change or remove `scale:`).
 * Returns NULL when out of memory or the timer cannot be registered. */
scaler_t *scaler_new(agent_t *agent, cluster_t *cluster, engine_t *engine);
void scaler_destroy(scaler_t **self_p);

const scaler_stats_t *scaler_stats(const scaler_t *self);

#endif
