/*
 * fleet.h: ownership, leases and progress replication, as a pure state machine.
 *
 * One fleet_t per node. It knows every plan's targets (by index and
 * rendezvous key), every target's progress record (progress.h), the live
 * membership view (given by the driver), and decides:
 *
 *   - which targets this node claims (it owns them by rendezvous hashing over
 *     live, non-draining members, they are pending or their holder is gone, it
 *     has free capacity, the plan's rollout allows it) -> FOUT_RUN;
 *   - when a running execution must stop (cancelled, fenced by a higher epoch,
 *     lost a same-epoch race) -> FOUT_ABORT;
 *   - what to send to peers to replicate records and documents (plans and
 *     signed commands) -> FOUT_SEND;
 *   - what to persist -> FOUT_RECORD, FOUT_DOC.
 *
 * PURE: no clock, socket, store, thread or global state; every input takes
 * now_ms (monotonic, local); randomness from the instance's seeded generator.
 * The real driver (agent/) and the simulator (tests/sim/) run the same code.
 *
 * Leases and fencing (DESIGN.md §4)
 *   A claim writes the record {epoch+1, state running, holder self}. A record
 *   held (running or retry_wait) by H is live for node X while H is alive or
 *   suspect in X's view AND X has heard H's heartbeat within lease_ttl +
 *   lease_margin (measured on X's clock from when X heard it, or from when
 *   X learnt of the lease if later; holders heartbeat every lease_ttl/3
 *   while they hold anything, to the members that would take their targets
 *   over (the owner of each without them) and push_fanout random others;
 *   any message from H counts). Only when it is not live may the owner take over at epoch+1
 *   (for a holder still live in X's view but silent, the owner among the
 *   other members, so that a hung node cannot keep its own targets);
 *   takeovers are looked for before new claims. A change of ownership never
 *   preempts a live lease. Handing back writes {epoch+1, pending, no holder,
 *   attempt unchanged}: fleet_leave hands back everything held; a draining
 *   node lets its executions finish and hands back what waits to retry.
 *   A restarted node claims nothing until synced (it has completed one pull
 *   from a peer, or found no live peer for lease_ttl); its own records left
 *   running are then re-claimed at epoch+1 unless someone took them over.
 *   A plan added later is claimed from only after a pull that started after
 *   it was added (its records may still be on the way). Same-epoch claims by
 *   two nodes (views racing) are resolved by the merge order (higher holder
 *   id wins); the loser aborts and counts a conflict. A claim made within
 *   4 push intervals of a change of the owner set runs only after 2 push
 *   intervals + 50 ms, and only if it is still this node's, so that the
 *   loser of such a race has usually not started (FOUT_RUN comes late, or
 *   never: a withdrawn claim gets no FOUT_ABORT); its slot counts as taken
 *   meanwhile (fleet_set_capacity subtracts it).
 *
 * Replication (DESIGN.md §5)
 *   Every change to a record or the arrival of a document appends to this
 *   node's change feed (a local sequence number; each item appears once, at
 *   its latest change). Changes are pushed to up to push_fanout live peers
 *   every push_interval (hop-limited forwarding of changes that were new to
 *   the receiver makes it an epidemic for large fleets; push_eager of the
 *   peers get the records, the others an announcement of their versions and
 *   ask for the ones they lack), and every
 *   anti_entropy_interval each node pulls from one random live peer:
 *   PULL{feed_id, since, state sum} -> FEED{feed_id, items after since
 *   (bounded), next, more}; none when the puller's state sum (a hash of its
 *   plans, accepted documents and records) equals the server's. Pushed
 *   changes name the accepted documents of their plans, so that a node
 *   lacking one fetches it from the sender at once. A restarted peer has a
 *   new feed_id, so pullers start over from 0. Records merge as a
 *   join-semilattice (progress_merge), so duplicates, reordering and
 *   re-delivery are harmless.
 *
 * Documents
 *   Plans and signed operator commands are opaque byte strings identified by
 *   their 32-byte hash, replicated as a grow-only set through the same feed.
 *   A node that learns of a document it lacks fetches it in chunks (DOC_GET /
 *   DOC_CHUNK) from a peer that has it. A completed document is handed to the
 *   driver (FOUT_DOC), which verifies its signature and calls
 *   fleet_doc_accept() (announced onward, kept) or fleet_doc_reject() (dropped,
 *   never forwarded). Documents injected locally (HTTP POST) enter with
 *   fleet_doc_add() after the driver verified them.
 */
#ifndef GG_FLEET_H
#define GG_FLEET_H

#include "progress.h"
#include "wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FLEET_ID_LEN         32
#define FLEET_ADDRESS_MAX    255
#define FLEET_MAX_PLANS      1024
#define FLEET_MAX_TARGETS    (1u << 20)   /* per plan */
#define FLEET_MAX_DOC_BYTES  (64u << 20)  /* a plan with every frozen target */
#define FLEET_CHUNK_BYTES    (512u << 10) /* document chunk on the wire */
#define FLEET_MAX_FEED_ITEMS 2048         /* items in one FEED or PROGRESS message */
#define FLEET_MAX_MEMBERS    65536        /* members in one view (MEMBERSHIP_MAX_MEMBERS) */
#define FLEET_MAX_DOCS       65536        /* documents known (plans and commands) */

typedef struct {
    uint32_t lease_ttl_ms;     /* test 2000, lan 15000, wan 60000 */
    uint32_t lease_margin_ms;  /* extra silence tolerated before takeover */
    uint32_t push_interval_ms; /* batching of pushed changes */
    uint32_t push_fanout;      /* peers per push (all live peers when fewer) */
    /* Of those, how many get the records themselves; the others get an
     * announcement of the versions (HAVE) and ask for what they lack
     * (lazy push: each node receives a change about once instead of
     * push_fanout times). 0: all of them. */
    uint32_t push_eager;
    uint32_t anti_entropy_interval_ms;
    uint32_t max_hops; /* forwarding limit for pushed changes */
    /* Bounded load (DESIGN.md §3): 0 plain rendezvous; else 1000..100000,
     * no member owns more than load_cap_milli/1000 x the mean of a plan's
     * targets (rendezvous_owner_bounded, assigned in target order). */
    uint32_t load_cap_milli;
} fleet_config_t;

/* "lan", "wan" or "test" (same names as the membership profiles). */
int fleet_config_get(const char *profile, fleet_config_t *out);

typedef struct {
    uint8_t id[FLEET_ID_LEN];
    char address[FLEET_ADDRESS_MAX + 1];
    bool live;     /* alive or suspect in membership */
    bool draining; /* takes no new targets */
    /* highest wire version it reads: 2 with MEMBER_FLAG_WIRE2 in its
     * membership flags, 1 (or 0, the same) for an older node */
    uint8_t wire_version;
} fleet_member_t;

/* Rollout rules of a plan (SPEC.md "rollout"), decided identically by every
 * node from replicated state. 0 means "no limit" / "none". */
typedef struct {
    uint32_t max_parallel;    /* fleet-wide running targets */
    uint32_t canary;          /* first N targets (by index) must all succeed first */
    uint32_t rate_per_minute; /* fleet-wide claims per minute */
    double max_failure_ratio; /* (failed + needs_review) / finished beyond which the plan pauses */
    uint32_t max_attempts;    /* retry.maxAttempts: a takeover of a target in retry_wait
                                 at attempt >= this finishes it as failed */
} fleet_rollout_t;

typedef enum {
    FLEET_PLAN_ACTIVE = 0,
    FLEET_PLAN_PAUSED,    /* by an operator command */
    FLEET_PLAN_CANCELLED, /* by an operator command: running targets abort */
} fleet_plan_control_t;

typedef struct {
    uint32_t counts[TARGET_STATE_COUNT]; /* awaiting_approval and cancelled derived */
    uint32_t total;
    bool auto_paused; /* max_failure_ratio exceeded */
    bool completed;   /* nothing pending/awaiting/running/retry_wait */
    uint32_t running_here;
} fleet_plan_stats_t;

typedef struct _fleet_t fleet_t;

fleet_t *fleet_new(const fleet_config_t *cfg, const uint8_t self_id[FLEET_ID_LEN],
                   const char *self_address, uint64_t seed, uint64_t now_ms);
void fleet_destroy(fleet_t **self_p);

/* ---- inputs from the driver ---- */

/* The membership view changed (call with the full list, self included). */
void fleet_set_members(fleet_t *f, uint64_t now_ms, const fleet_member_t *members, size_t n);

/* How many more targets this node may start now (free executor slots). Each
 * FOUT_RUN consumes one; call again when slots free up. Re-runs of a target
 * in retry_wait (fleet_record_local running, attempt+1) are the driver's
 * and not counted here. */
void fleet_set_capacity(fleet_t *f, uint64_t now_ms, uint32_t free_slots);

/* Declares a plan whose document was accepted: target i has rendezvous key
 * keys[i] (rendezvous_key of its lower-case ref); gated[i] (may be NULL) marks
 * targets that need approval. Idempotent for the same id. */
int fleet_add_plan(fleet_t *f, uint64_t now_ms, const uint8_t plan_id[FLEET_ID_LEN],
                   uint32_t n_targets, const uint64_t *keys, const bool *gated,
                   const fleet_rollout_t *rollout);

/* Operator control (from verified, replicated commands), a register the
 * driver versions with the command's Lamport order; here just the value. */
int fleet_set_plan_control(fleet_t *f, uint64_t now_ms, const uint8_t plan_id[FLEET_ID_LEN],
                           fleet_plan_control_t control);

/* Approval quorum reached for a gated target (from replicated commands). */
int fleet_set_approved(fleet_t *f, uint64_t now_ms, const uint8_t plan_id[FLEET_ID_LEN],
                       uint32_t index);

/* An operator retry or mark: the driver builds the new record (generation+1)
 * and hands it in as a local change. A runner's outcome is handed in the
 * same way. Returns 0, GG_ENOTFOUND, or GG_ESTALE when the record was
 * superseded meanwhile (a fenced result: counted, discarded). */
int fleet_record_local(fleet_t *f, uint64_t now_ms, const uint8_t plan_id[FLEET_ID_LEN],
                       uint32_t index, const progress_rec_t *rec);

/* Restores state from the store at start (no outputs, no feed pushes).
 * Add the plan (fleet_add_plan) before restoring its records: records of an
 * unknown plan wait in a bounded buffer. Records this node held are resumed
 * (re-claimed at epoch+1) only after the node has synced. */
int fleet_restore_record(fleet_t *f, const uint8_t plan_id[FLEET_ID_LEN], uint32_t index,
                         const progress_rec_t *rec);
int fleet_restore_doc(fleet_t *f, const uint8_t doc_id[FLEET_ID_LEN], uint8_t kind, uint64_t size);

/* Documents: kind is the driver's (plan, command, ...). fleet_doc_add is a
 * locally injected, already verified document: the core keeps its id, kind
 * and size only (len bytes, 1..FLEET_MAX_DOC_BYTES); the driver must have
 * stored it so that the doc reader can serve it. Returns 0, GG_EINVAL,
 * GG_ETOOBIG (size, or FLEET_MAX_DOCS reached) or GG_ENOMEM. */
int fleet_doc_add(fleet_t *f, uint64_t now_ms, const uint8_t doc_id[FLEET_ID_LEN], uint8_t kind,
                  const uint8_t *data, size_t len);
void fleet_doc_accept(fleet_t *f, uint64_t now_ms, const uint8_t doc_id[FLEET_ID_LEN]);
void fleet_doc_reject(fleet_t *f, uint64_t now_ms, const uint8_t doc_id[FLEET_ID_LEN]);
/* Documents live in the driver's store, not in the core: to serve a chunk
 * the core reads [offset, offset + len) through this callback, which fills
 * buf and returns the bytes read (0 when the document is gone). */
typedef size_t(fleet_doc_reader_fn)(void *arg, const uint8_t doc_id[FLEET_ID_LEN], uint64_t offset,
                                    uint8_t *buf, size_t len);
void fleet_set_doc_reader(fleet_t *f, fleet_doc_reader_fn *fn, void *arg);

typedef enum {
    FLEET_DOC_UNKNOWN = 0,
    FLEET_DOC_FETCHING,  /* learnt of, being fetched (or waiting for a fetch slot) */
    FLEET_DOC_VERIFYING, /* FOUT_DOC emitted, awaiting accept or reject */
    FLEET_DOC_ACCEPTED,  /* added, accepted or restored: served and announced */
    FLEET_DOC_REJECTED,  /* never fetched again, never forwarded */
} fleet_doc_state_t;
fleet_doc_state_t fleet_doc_state(const fleet_t *f, const uint8_t doc_id[FLEET_ID_LEN]);

/* A message from an authenticated peer (its decoded envelope; the driver
 * has checked that msg->sender is the connection's key). Types:
 * WIRE_PROGRESS, WIRE_DIGEST (pull), WIRE_LEASE (heartbeat), WIRE_PLAN (doc
 * announce/get/chunk); the bodies are documented in fleet.c. Returns 0,
 * GG_EMALFORMED (dropped whole, counted), GG_EINVAL (not a fleet type). A
 * record whose index is beyond its (known) plan is skipped and counted. */
int fleet_handle(fleet_t *f, uint64_t now_ms, const wire_msg_t *msg);
bool fleet_msg_type_known(uint32_t wire_type);

void fleet_tick(fleet_t *f, uint64_t now_ms);
uint64_t fleet_next_deadline(const fleet_t *f);

/* Graceful leave: every target this node holds is handed back (FOUT_ABORT
 * LEAVING for each one this instance runs or waits on, records pushed at once
 * to every live peer); no claims afterwards. fleet_leave_done: true once the
 * driver has drained every output since (the hand-backs are sent). */
void fleet_leave(fleet_t *f, uint64_t now_ms);
bool fleet_leave_done(const fleet_t *f);

/* ---- outputs ---- */

typedef enum {
    FOUT_SEND = 1,  /* send data (an encoded wire message) to address */
    FOUT_RUN,       /* start executing (plan, index) at epoch/attempt */
    FOUT_ABORT,     /* stop executing (plan, index): reason says why */
    FOUT_RECORD,    /* persist the record of (plan, index) */
    FOUT_DOC,       /* a complete document arrived: verify, then accept or reject */
    FOUT_PLAN_STATE /* a plan's derived state or control changed: see fleet_plan_stats */
} fleet_out_type_t;

typedef enum {
    FLEET_ABORT_CANCELLED = 1,
    FLEET_ABORT_FENCED,   /* a higher epoch exists */
    FLEET_ABORT_CONFLICT, /* same epoch, the other holder won */
    FLEET_ABORT_LEAVING,  /* handed back: leave, or drain of a target waiting to retry */
    FLEET_ABORT_PAUSED,   /* never: pausing does not stop running targets */
} fleet_abort_reason_t;

typedef struct {
    fleet_out_type_t type;
    char address[FLEET_ADDRESS_MAX + 1]; /* SEND */
    uint32_t wire_type;                  /* SEND */
    uint8_t *data;                       /* SEND, DOC: owned by the output */
    size_t len;
    uint8_t plan_id[FLEET_ID_LEN]; /* RUN, ABORT, RECORD, PLAN_STATE */
    uint32_t index;
    progress_rec_t rec;           /* RUN (the claim), RECORD */
    fleet_abort_reason_t reason;  /* ABORT */
    uint8_t doc_id[FLEET_ID_LEN]; /* DOC */
    uint8_t doc_kind;
} fleet_out_t;

bool fleet_poll(fleet_t *f, fleet_out_t *out);
void fleet_out_release(fleet_out_t *out);
/* A FOUT_SEND's data is one copy shared by the outputs sending the same
 * message to several peers: a caller that keeps it (takes out->data and
 * sets it to NULL before fleet_out_release) frees it with this, not free(). */
void fleet_send_data_free(uint8_t *data);

/* ---- views ---- */
const progress_rec_t *fleet_record(const fleet_t *f, const uint8_t plan_id[FLEET_ID_LEN],
                                   uint32_t index);
int fleet_plan_stats(const fleet_t *f, const uint8_t plan_id[FLEET_ID_LEN],
                     fleet_plan_stats_t *out);
/* The owner's index in `members` as given to fleet_set_members, or -1. */
int fleet_owner_of(const fleet_t *f, uint64_t key);
bool fleet_synced(const fleet_t *f);

typedef struct {
    uint64_t claims, takeovers, reclaims, handbacks;
    uint64_t conflicts;           /* same-epoch races lost (aborted) */
    uint64_t fenced_results;      /* outcomes discarded: superseded epoch */
    uint64_t records_in;          /* records received (pushed or pulled) */
    uint64_t records_out;         /* records sent (per message, not per peer) */
    uint64_t records_merged;      /* received records that changed ours */
    uint64_t docs_in;             /* documents assembled and handed over (FOUT_DOC) */
    uint64_t docs_out;            /* document chunks served */
    uint64_t pulls;               /* pull requests sent (one per page) */
    uint64_t malformed;           /* messages or items refused */
    uint64_t haves_in, haves_out; /* versions announced to / by this node */
    uint64_t wants_out;           /* announced versions asked for */
    uint64_t starts_delayed;      /* claims made while the owner set changed, run after a wait */
    uint64_t starts_withdrawn;    /* ... of which lost or ended before they ran */
    uint64_t heartbeats_out, heartbeats_in;
    uint64_t scan_work;       /* claim-scan work units done by fleet_tick (one per target
                                 check, plus members/32 per ownership computation); at
                                 most FLEET_SCAN_BUDGET per call */
    uint64_t orphans_dropped; /* records of unknown plans dropped (buffer full) */
    uint64_t push_dropped;    /* changes not queued for push (queue full; pulls repair) */
    uint64_t outputs_dropped; /* output queue full (driver not polling) */
    uint64_t docs_failed;     /* document fetches abandoned (no source answered) */
} fleet_stats_t;
const fleet_stats_t *fleet_stats(const fleet_t *f);

/* Work units one fleet_tick spends at most on scanning targets for claims. */
#define FLEET_SCAN_BUDGET 20000

/* Heap bytes held by the instance (plans, targets, feed, buffers, queues). */
size_t fleet_memory(const fleet_t *f);

#endif
