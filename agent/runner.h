/*
 * runner.h: runs one claimed target's pipeline for a plan, on the agent's
 * loop, without ever blocking it.
 *
 * One run is one attempt at one target (SPEC.md "Plan"):
 *
 *   1. precheck (optional): exit 0 the target needs migrating; exit 1 it is
 *      already migrated (SKIPPED); anything else fails like a step.
 *   2. steps, in order: `run` (/bin/sh -c, the command rendered with shell
 *      quoting), `rewrite` (in-process, replacements and paths rendered raw,
 *      rooted at the target's folder), `noop`, `agent` (a coding agent in a
 *      verify loop, below) and `publish` (a run step that also gets
 *      GAGGLE_CHANGE_FILE, a Markdown change description in the work dir).
 *   3. verify (optional): non-zero is NEEDS_REVIEW (an anomaly for a human),
 *      the error being the last lines of its output.
 *   4. judge (optional, after verify passes): non-zero is NEEDS_REVIEW.
 *   5. docs: with docs.catalogOut, the target's entity is written there with
 *      its dependsOn moved from dataset.from to dataset.to (docs_out.h). A
 *      failure to write it is NEEDS_REVIEW: the migration itself is done.
 *   6. SUCCEEDED.
 *
 * Verification happens once per state of the target's folder: verify (and
 * judge) also run just before the first `publish` step, so that nothing
 * unverified is published and the change description can report the result;
 * an agent step's passing turn counts as verification too. A `run`,
 * `rewrite` or `agent` step after that makes the next publish (or the end of
 * the pipeline) verify again. A plan without verify is never verified.
 *
 * Failures and retries. A failing step (or precheck) is retryable when:
 *   - it timed out, or could not be started for a reason of this node
 *     (a fork, disk or file error), or
 *   - spec.retry.retryableExitCodes is present and holds its exit code (a
 *     process killed by signal N counts as exit code 128+N), or
 *   - retryableExitCodes is absent (SPEC.md's default retry) and it failed
 *     at all.
 * A retryable failure at attempt < maxAttempts gives RETRY_WAIT with
 * backoff_ms = a uniform random value in [b/2, b], where
 * b = min(maxBackoff, initialBackoff * multiplier^(attempt-1)) ("full
 * jitter", halved so a retry never comes back at once). Anything else is
 * FAILED with "step NAME exited with N", "step NAME timed out after 30m",
 * "step NAME killed by signal N" or a sentence naming the problem (a
 * template that cannot be rendered, a refused sandbox, a bad rewrite).
 *
 * Agent steps: for turn = 1..maxTurns the runner writes
 * WORKDIR/prompt-turn-N.md (the step's prompt, the target's entity as YAML,
 * the dataset move, the plan's vars and the previous turn's verify or judge
 * output) and passes it as GAGGLE_PROMPT_FILE; it snapshots the target's
 * folder before and after the agent's command (paths, modes and a BLAKE2b
 * hash of each file's content, .git excepted; files whose size, times and
 * inode are unchanged are not read again). A turn that changes nothing ends
 * the loop: NEEDS_REVIEW "agent made no change in turn N". Otherwise verify
 * then judge run; both passing ends the step; a failure is fed into the
 * next turn; after maxTurns the target is NEEDS_REVIEW. An agent command
 * that fails is a failing step (retry rules above). Every turn
 * {step, turn, exit_code, duration_ms, changed_files, files, verdict} is
 * kept in WORKDIR/agent-turns.json.
 *
 * Processes: every one goes through the executor (its --workers cap, its
 * timeouts, its process groups), with the working directory
 * WORK_ROOT/<plan-id>/<index> (the {{workdir}}) and the environment
 * GAGGLE_PLAN (plan id), GAGGLE_TARGET (ref), GAGGLE_EPOCH, GAGGLE_ATTEMPT,
 * GAGGLE_WORKDIR (plus GAGGLE_PROMPT_FILE for agents, GAGGLE_CHANGE_FILE for
 * publish) over the executor's allowlist. `sandbox: {network: none}` runs the
 * step in a new network namespace (root only). All output of an attempt is
 * appended to LOG_ROOT/<plan-id>/<index>.log, one header line per process or
 * built-in step: "== step NAME (attempt N, epoch E) ==".
 *
 * Threading and callbacks: everything runs on the loop's thread. The done
 * callback is always called from the loop, never from inside runner_start;
 * it may call runner_start and runner_abort but must not destroy the runner
 * or the executor. The plan must stay alive until the run's callback has
 * been called or the run aborted.
 */
#ifndef GG_RUNNER_H
#define GG_RUNNER_H

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "executor.h"
#include "gg_error.h"
#include "plan.h"
#include "progress.h"

#define RUNNER_PATH_MAX           512            /* log path in an outcome */
#define RUNNER_TAIL_MAX           (64u << 10)    /* output tail kept for the outcome */
#define RUNNER_FEEDBACK_MAX       (32u << 10)    /* verifier output given to the next turn */
#define RUNNER_RUNS_MAX           8192           /* runs in flight per runner */
#define RUNNER_SNAPSHOT_FILES_MAX 200000         /* files in an agent turn's snapshot */
#define RUNNER_SNAPSHOT_BYTES_MAX (256ull << 20) /* content read per snapshot */
#define RUNNER_HASH_FILE_MAX      (16ull << 20)  /* bigger files: compared by size and times */
#define RUNNER_CHANGE_FILE        "change.md"    /* in the work dir, for publish steps */
#define RUNNER_TURNS_FILE         "agent-turns.json"

typedef struct _runner_t runner_t;

typedef struct {
    const char *work_root; /* <data-dir>/work: per target work dirs; required */
    const char *log_root;  /* <data-dir>/logs: <plan-id>/<index>.log; required */
    uint64_t seed;         /* backoff jitter generator; 0: a random seed */
} runner_config_t;

typedef struct {
    target_state_t state;               /* SUCCEEDED, SKIPPED, NEEDS_REVIEW, FAILED or RETRY_WAIT */
    uint32_t backoff_ms;                /* RETRY_WAIT: wait this long before the next attempt */
    int exit_code;                      /* of the process that decided the outcome (-1: signal or
                                           timeout; 0 when none did) */
    uint8_t step;                       /* index in spec.steps of the last step reached */
    char error[PROGRESS_ERROR_MAX + 1]; /* one line; "" on success */
    uint32_t duration_ms;               /* the whole attempt */
    char log_path[RUNNER_PATH_MAX];     /* the target's full log */
    const char *tail;                   /* last output (or the error): valid during
                                           the callback only */
    size_t tail_len;
} runner_outcome_t;

typedef void(runner_done_fn)(void *arg, uint64_t run_id, const runner_outcome_t *outcome);

/* Creates a runner that starts its processes on `exec` (shared, not owned)
 * and is driven by `loop` (not owned). Creates work_root and log_root when
 * missing. Returns NULL on a bad config or a system error (logged). */
runner_t *runner_new(zloop_t *loop, executor_t *exec, const runner_config_t *cfg);

/* Abandons every run (their processes are killed, no callback follows) and
 * frees the runner. NULL-safe; clears *self_p. Not from a done callback. */
void runner_destroy(runner_t **self_p);

/* Starts attempt `attempt` (>= 1) of target `index` of a resolved plan under
 * fencing epoch `epoch`. done(arg, run_id, outcome) follows exactly once,
 * from the loop, unless the run is aborted. Returns 0 and sets *run_id
 * (> 0; may be NULL), GG_EBUSY when the executor has no free worker (try
 * again after a completion) or too many runs are in flight, GG_EINVAL (bad
 * arguments, unresolved plan, index out of range, work or log path over
 * PATH_MAX / RUNNER_PATH_MAX), GG_EIO (the target cannot be read back from
 * a compact plan's stored document: plan_target_load; the run holds the
 * loaded target until it ends) or GG_ENOMEM. Everything else that goes wrong
 * (a folder that cannot be created, a command that cannot be rendered) is
 * reported through the outcome. */
int runner_start(runner_t *r, const plan_t *plan, uint32_t index, uint32_t epoch, uint32_t attempt,
                 runner_done_fn *done, void *arg, uint64_t *run_id) GG_MUST_CHECK;

/* Stops a run: kills its current process (TERM to its group, KILL after the
 * executor's grace) and forgets it; its callback is NOT called afterwards.
 * For a fenced or cancelled target. Returns 0 or GG_ENOTFOUND. */
int runner_abort(runner_t *r, uint64_t run_id);

/* Runs in flight (started, callback not yet called, not aborted). */
size_t runner_active(const runner_t *r);

/* The backoff before attempt+1 after attempt `attempt` failed, for a
 * random value `random` (pure: the jitter comes from the argument): in
 * [b/2, b] for b = min(maxBackoff, initialBackoff * multiplier^(attempt-1)),
 * at most UINT32_MAX. */
uint32_t runner_backoff_ms(const plan_spec_t *spec, uint32_t attempt, uint64_t random);

/* Whether a failure is retryable under the rules above (attempts aside):
 * exit_code as the executor reports it, signal when killed (else 0). */
bool runner_retryable(const plan_spec_t *spec, int exit_code, int signal, bool timed_out);

#endif
