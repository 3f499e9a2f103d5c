/*
 * notify.h: the plan's `notify` hook (SPEC.md "Plan": notify: {run, on}).
 *
 * When one of the plan's events happens, the hook's command runs once, on
 * one node, through the agent's executor (so it counts against --workers and
 * gets its timeout, process group and allowlisted environment):
 *
 *   target events  failed, needs_review, succeeded, skipped: on the node whose
 *                  run of the target ended so (the holder of its lease);
 *   plan events    awaiting_approval (the plan was accepted with gated
 *                  targets), paused, completed, cancelled: on the plan's
 *                  notifier, the live member with the highest rendezvous
 *                  score for the plan id in that node's view (the engine
 *                  decides, see engine.c).
 *
 * The command is the plan's notify.run rendered like a step's (shell quoted;
 * target fields are "" for a plan event). It gets GAGGLE_EVENT, GAGGLE_PLAN
 * (the id), GAGGLE_PLAN_NAME, and for a target event GAGGLE_TARGET, and on
 * stdin one JSON object: {"event", "node", "at" (RFC 3339), "plan": {"id",
 * "name", "state", "total", "counts"}, "target"?: {"ref", "state", "attempt",
 * "epoch", "error"}}. A notification is not retried: a failing or timed-out
 * hook is logged and counted (gaggle_notify_total{result}). Notifications
 * wait in a bounded queue while every worker is busy; beyond
 * NOTIFY_QUEUE_MAX the oldest is dropped and counted.
 */
#ifndef GG_NOTIFY_H
#define GG_NOTIFY_H

#include "executor.h"
#include "plan.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define NOTIFY_QUEUE_MAX 256

typedef struct notify_t notify_t;

typedef struct {
    uint64_t queued;  /* accepted for running */
    uint64_t ok;      /* the hook exited 0 */
    uint64_t failed;  /* non-zero exit, signal, timeout or could not start */
    uint64_t dropped; /* queue full */
    uint64_t skipped; /* the event is not in the plan's notify.on, or no notify */
} notify_stats_t;

/* `executor` is borrowed and must outlive the notifier. `node` is this
 * node's name (copied). Returns NULL when out of memory. */
notify_t *notify_new(executor_t *executor, const char *node);
/* Cancels nothing: running hooks end on their own (or with the executor).
 * NULL-safe; clears *self_p. */
void notify_destroy(notify_t **self_p);

/* True when `plan` asks to be told of `event`. */
bool notify_wants(const plan_t *plan, const char *event);

/* Queues the plan's hook for `event`. `target` is the target index for a
 * target event, or -1. `plan_info` is the "plan" object of the payload and
 * `target_info` the "target" object (or NULL); both borrowed. The plan is
 * only read during the call. Returns 0 (queued or skipped), GG_EINVAL when
 * the command cannot be rendered (logged), GG_ENOMEM. */
int notify_event(notify_t *self, const plan_t *plan, const char *event, long target,
                 const json_t *plan_info, const json_t *target_info);

/* Starts queued hooks while the executor has room. Call it when a worker may
 * have freed up (the engine's ticker). */
void notify_pump(notify_t *self);

const notify_stats_t *notify_stats(const notify_t *self);
/* Hooks queued, not yet started. */
size_t notify_pending(const notify_t *self);

#endif
