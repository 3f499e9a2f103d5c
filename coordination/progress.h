/*
 * progress.h: a target's progress record and its merge (pure).
 *
 * Every node holds a copy of every target's record. Records merge as a
 * join-semilattice: the join of two records is the greater under the total
 * order
 *
 *     (epoch, generation, attempt, rank(state), holder id)
 *
 * so merging is commutative, associative and idempotent, and replicas that
 * have seen the same records hold the same value whatever the order of
 * arrival. Wall-clock stamps are carried for display only and never compared.
 *
 *   epoch       fencing token: bumped by every claim (first claim, takeover,
 *               re-claim after restart). Progress from a lower epoch loses.
 *   generation  bumped by an operator's retry or mark, so a terminal target can
 *               become pending again without comparing clocks.
 *   attempt     execution attempts within (epoch, generation).
 *
 * Target state machine (per claim; "derived" states are computed, not stored):
 *
 *     pending --claim--> running --ok--> succeeded
 *        ^                  |  \--precheck says done--> skipped
 *        |                  |  \--verify fails--> needs_review
 *        |                  |  \--retryable failure--> retry_wait --backoff--> running
 *        |                  |  \--attempts exhausted / not retryable--> failed
 *        |                  \--plan cancelled--> cancelled
 *        \--operator retry / mark (generation+1)-- any terminal state
 *
 *     awaiting_approval: derived for a pending target whose plan's approval
 *     rule matches it while its approvals are below quorum.
 *
 * Terminal states (succeeded, skipped, needs_review, failed, cancelled) are
 * final for their (epoch, generation): rank makes them win over running.
 */
#ifndef GG_PROGRESS_H
#define GG_PROGRESS_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    TARGET_PENDING = 0,
    TARGET_AWAITING_APPROVAL,
    TARGET_RUNNING,
    TARGET_RETRY_WAIT,
    TARGET_SUCCEEDED,
    TARGET_SKIPPED,
    TARGET_NEEDS_REVIEW,
    TARGET_FAILED,
    TARGET_CANCELLED,
    TARGET_STATE_COUNT
} target_state_t;

#define PROGRESS_ERROR_MAX 200
#define PROGRESS_ID_LEN    32

typedef struct {
    uint32_t epoch;
    uint32_t generation;
    uint32_t attempt;
    uint8_t state;                   /* target_state_t */
    uint8_t step;                    /* index of the step being run or last run */
    uint8_t holder[PROGRESS_ID_LEN]; /* node id; all zero when never claimed */
    int32_t exit_code;
    uint64_t started_ms;  /* unix ms, display only */
    uint64_t finished_ms; /* unix ms, display only */
    uint32_t duration_ms;
    char error[PROGRESS_ERROR_MAX + 1];
} progress_rec_t;

/* "pending", "running", ... (SPEC.md target states). */
const char *target_state_name(target_state_t state);
/* Parses a state name; returns 0 or GG_EINVAL. */
int target_state_parse(const char *name, target_state_t *out);
bool target_state_terminal(target_state_t state);

/* Total order used by the merge: <0, 0 or >0. */
int progress_compare(const progress_rec_t *a, const progress_rec_t *b);
/* The same order with only the first holder_len bytes of the holders
 * compared (an announcement carries a prefix of the holder's id). */
int progress_compare_prefix(const progress_rec_t *a, const progress_rec_t *b, size_t holder_len);

/* local := join(local, incoming). Returns true when local changed. */
bool progress_merge(progress_rec_t *local, const progress_rec_t *incoming);

/* Wire/storage form: a msgpack map. Unpack checks every field's type and
 * bounds and returns 0 or GG_EMALFORMED. */
void progress_pack(const progress_rec_t *rec, msgpack_packer *pk);
int progress_unpack(const msgpack_object *obj, progress_rec_t *out);

#endif
