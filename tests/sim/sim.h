/*
 * sim.h: the deterministic simulator (gaggle-sim) -- shared types.
 *
 * The simulator runs the real protocol cores (coordination/membership.c now,
 * the ownership/lease/progress core later) as many nodes in one process, on
 * virtual time and a simulated network, from one seed. Nothing reads a
 * clock: time advances only by popping the event queue (sim_queue.h), every
 * random choice comes from one PRNG per concern derived from the run seed,
 * and nothing depends on pointer values or hash-table iteration order. The
 * same seed therefore replays the same run, which the trace hash shows: every
 * delivered message (time, from, to, type, length) and every state change is
 * folded into one 64-bit value printed at the end.
 *
 * Pieces (one file each):
 *   sim_queue.c       event heap keyed by (time, sequence)
 *   sim_world.c       nodes, the network model, faults, the event loop
 *   sim_membership.c  the membership core as a node "machine"
 *   sim_check.c       invariants, checked during and at the end of every run
 *   sim_experiment.c  measured scenarios (dissemination, detection, join)
 *   sim_main.c        command line, seed sweeps, table and JSON output
 *
 * A node hosts up to SIM_MAX_MACHINES pure state machines behind one
 * interface (sim_machine_ops_t): each is booted from the node's persisted
 * disk, fed the messages whose wire type it accepts and ticked at its own
 * deadline; a crash throws its volatile state away and keeps the disk. The
 * membership core is machine 0 and publishes the node's view; a second core
 * plugs in the same way and reads that view.
 *
 * Run phases:
 *   chaos   [0, duration): loss, duplication, reordering, partitions,
 *           crashes and slow nodes as configured (an experiment runs here);
 *   settle  from `duration`: partitions heal, crashed nodes restart, no new
 *           crash, the network is clean again (slow nodes stay slow). The run
 *           ends at the first check where the views have converged, or fails
 *           when settle_ms passes first.
 */
#ifndef GG_SIM_H
#define GG_SIM_H

#include "membership.h"
#include "rng.h"
#include "sim_queue.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIM_MAX_NODES      4096
#define SIM_MAX_EVENTS     (1u << 24) /* queued at once */
#define SIM_MAX_PARTITIONS 8
#define SIM_MAX_MACHINES   4
#define SIM_MAX_SEEDS      3 /* nodes 0..2 are every node's join seeds */
#define SIM_MAX_TARGETS    (1u << 20)
#define SIM_MAX_TRIALS     1000
#define SIM_MAX_VIOLATIONS 16 /* details kept; the run stops at the first */
#define SIM_NEVER          UINT64_MAX

/* Injected faults that must make the checker fail (its own test). */
#define SIM_FAULT_MUTE_REFUTATIONS 0x1u /* a node's refutations never leave it */
#define SIM_FAULT_BLIND_FLEET      0x2u /* n1's fleet core sees every other member dead */
#define SIM_FAULT_HANG_RUNS        0x4u /* n1's executions never end (and it keeps its leases) */

typedef enum {
    SIM_EXP_NONE = 0,
    SIM_EXP_DISSEMINATE, /* time for one update to reach 99.99% of the fleet */
    SIM_EXP_DETECT,      /* time to detect a crashed node */
    SIM_EXP_JOIN,        /* targets moved when one node joins */
} sim_experiment_t;

typedef enum {
    SIM_CODEC_OFF = 0, /* messages handed over as structures */
    SIM_CODEC_ON,      /* encoded at the sender, decoded at the receiver */
    SIM_CODEC_VERIFY,  /* ... and decoded once more at the sender and compared */
} sim_codec_t;

/* A scheduled split: at split_ms the nodes are dealt into groups (messages
 * across groups are dropped, in flight too), at heal_ms they are one again. */
typedef struct {
    uint64_t split_ms, heal_ms;
    uint32_t fraction_milli; /* 1..999: this share of nodes is cut off */
    uint32_t groups;         /* 2..16 with fraction_milli 0: a random K-way split */
} sim_partition_t;

typedef struct {
    uint64_t seed;
    uint32_t nodes;
    uint32_t targets;      /* for ownership figures (rendezvous over live views) */
    char profile[8];       /* lan, wan, test: protocol timings and network model */
    double loss;           /* per message copy */
    bool loss_gossip_only; /* loss hits GOSSIP messages only (Serf's model) */
    double dup;            /* probability of a second copy */
    double reorder;        /* probability of an extra random delay */
    double crash_rate;     /* crashes per node-hour of virtual time */
    uint64_t downtime_ms;  /* mean time a crashed node stays down (0: profile's) */
    uint32_t slow;         /* how many nodes are slow */
    double slow_factor;    /* how slow (1: not at all) */
    sim_partition_t partitions[SIM_MAX_PARTITIONS];
    uint32_t n_partitions;
    uint64_t duration_ms; /* chaos phase */
    uint64_t settle_ms;   /* longest settle phase (0: profile's) */
    sim_codec_t codec;
    uint32_t faults; /* SIM_FAULT_* */
    sim_experiment_t experiment;
    uint32_t trials;
    bool verbose; /* print every crash, restart, split, heal and violation */
    /* The fleet core (ownership, leases, progress): a plan of `targets`
     * targets injected at one node at plan_at_ms, executed by simulated
     * workers (sim_fleet.c). */
    bool fleet;
    uint32_t workers;            /* executions at once per node */
    uint64_t exec_ms;            /* mean execution time (0: the profile's) */
    double fail_rate;            /* probability that an attempt fails */
    uint32_t attempts;           /* retry.maxAttempts of the plan */
    uint64_t plan_at_ms;         /* when the plan is applied */
    uint32_t bounded_load_milli; /* bounded-load cap: 1000 + eps*1000 (0: none) */
    int32_t push_eager;          /* peers a push sends records to (-1: the profile's;
                                    0: every peer, no announcements) */
} sim_config_t;

/* Fills *cfg with the defaults (lan, 10 nodes, 60 s, no faults). */
void sim_config_defaults(sim_config_t *cfg);
/* 0 when the configuration is usable; otherwise GG_EINVAL and a reason. */
int sim_config_check(const sim_config_t *cfg, char *why, size_t why_len);
/* The command line that replays cfg exactly ("gaggle-sim --seed ..."). */
void sim_config_command(const sim_config_t *cfg, char *buf, size_t size);

/* ---- nodes and their machines ---- */

typedef struct _sim_t sim_t;
typedef struct sim_node sim_node_t;
typedef struct sim_result sim_result_t;

/* A message in flight. Shared by its duplicates (refs). Either the encoded
 * bytes (codec on) or the structure itself (codec off, obj/obj_free). */
typedef struct {
    uint32_t refs;
    uint32_t type; /* wire type */
    uint32_t from, to;
    uint32_t items; /* updates carried */
    size_t len;     /* encoded length (0 with the codec off) */
    uint8_t *data;
    void (*data_free)(uint8_t *data); /* NULL: free() */
    void *obj;
    void (*obj_free)(void *obj);
} sim_packet_t;

/* One pure state machine hosted by every node. */
typedef struct {
    const char *name;
    /* Builds the volatile state from the node's disk: at first start and at
     * every restart. Returns 0 or an error (the run stops). */
    int (*boot)(sim_t *sim, sim_node_t *node, void **state, uint64_t now);
    /* The node crashed: the volatile state is gone (the disk stays). */
    void (*halt)(sim_t *sim, sim_node_t *node, void **state);
    /* True for the wire types this machine handles. */
    bool (*accepts)(uint32_t wire_type);
    void (*deliver)(sim_t *sim, sim_node_t *node, void *state, uint64_t now,
                    const sim_packet_t *packet);
    void (*tick)(sim_t *sim, sim_node_t *node, void *state, uint64_t now);
    uint64_t (*next_deadline)(const void *state);
    /* Optional: frees what the machine keeps in sim_disk_t.machine[] (at
     * the end of the run; the disk outlives every crash). */
    void (*disk_free)(void *disk);
    /* Optional: the node's membership view changed during the last input
     * (read it with sim_membership); e.g. the ownership core's
     * fleet_set_members. Called after the input, before the next one. */
    void (*view_changed)(sim_t *sim, sim_node_t *node, void *state, uint64_t now);
    /* Optional, once per run: state shared by every node's instance (the
     * machine's own invariant checker), made before the first boot and
     * freed after the last halt. Read it with sim_shared. */
    int (*world_new)(sim_t *sim, void **shared);
    void (*world_free)(void **shared);
    /* Optional: true when the settle phase may end as far as this machine
     * is concerned (quiescent, converged across up nodes). Called at the
     * periodic checks of the settle phase once the views have converged. */
    bool (*settled)(sim_t *sim, void *shared);
    /* Optional: the settle phase ran out; record why (sim_violation). */
    void (*settle_failed)(sim_t *sim, void *shared);
    /* Optional: the longest settle phase this machine needs (added to the
     * membership's default; 0: none). */
    uint64_t (*settle_extra_ms)(const sim_config_t *cfg);
    /* Optional: fills the machine's part of the results at the end. */
    void (*results)(sim_t *sim, void *shared, sim_result_t *res);
} sim_machine_ops_t;

/* One member record as the membership driver persists it (agent/cluster.c
 * stores name, address, state, incarnation and flags by id; in the
 * simulator name and address follow from the node index). */
typedef struct {
    uint64_t incarnation;
    uint32_t flags;
    uint8_t state;
    uint8_t present;
} sim_disk_member_t;

/* What survives a crash: the node's "LMDB". The membership part is spelt
 * out; any other machine keeps its records behind machine[its index]. */
typedef struct {
    uint64_t incarnation;       /* last persisted MOUT_INCARNATION */
    sim_disk_member_t *members; /* indexed by node index, allocated at first use */
    uint32_t n_members;
    void *machine[SIM_MAX_MACHINES];
} sim_disk_t;

struct sim_node {
    uint32_t index;
    uint8_t id[MEMBER_ID_LEN];
    char name[16];
    char address[32];
    bool up;
    bool held; /* not started yet (the join experiment's newcomer) */
    bool slow;
    bool view_dirty; /* the membership view changed during this input */
    uint32_t gen;    /* bumped at every crash: stale events are ignored */
    uint32_t boots;
    uint32_t group;            /* partition group */
    uint64_t tick_due;         /* earliest machine deadline with a tick queued for it */
    uint64_t tick_at;          /* when that tick runs (later than due on a slow node) */
    uint64_t busy_until;       /* a slow node handles inputs in order, not before this */
    uint64_t boot_incarnation; /* incarnation of the current life */
    uint64_t max_incarnation;  /* highest incarnation this node ever announced */
    uint64_t up_since, down_since;
    uint64_t false_dead_inc; /* last incarnation counted in a false-dead episode */
    void *state[SIM_MAX_MACHINES];
    sim_disk_t disk;
};

/* ---- statistics and results ---- */

typedef struct {
    uint64_t msgs_sent, msgs_delivered, bytes_sent;
    uint64_t dropped_loss, dropped_partition, dropped_down, dropped_unknown;
    uint64_t duplicated, reordered;
    uint64_t by_type[32];    /* delivered, by wire type (< 32) */
    uint64_t handle_ignored; /* membership_handle refused a message */
    uint64_t ticks, busy_ticks, events;
    uint64_t crashes, restarts, splits, heals;
    uint64_t suspicions;           /* observer moved a member to SUSPECT */
    uint64_t suspicions_of_slow;   /* ... a slow member */
    uint64_t dead_declarations;    /* observer moved a member to DEAD */
    uint64_t false_dead;           /* ... while that member was up in that life */
    uint64_t false_dead_episodes;  /* distinct (member, incarnation) falsely dead */
    uint64_t false_dead_partition; /* ... across or just after a partition (expected) */
    uint64_t refutations, probes, probes_failed, syncs;
    uint64_t persisted_writes;
    uint64_t node_ms; /* sum over nodes of time up, for per node-hour rates */
} sim_stats_t;

typedef struct {
    char invariant[32];
    char detail[256];
    uint64_t at;
    int32_t node_a, node_b; /* -1 when not about a node */
} sim_violation_t;

typedef struct {
    double t50, t90, t99, t9999, t100; /* seconds after the start; <0: not reached */
    uint32_t reached, expected;
    double first_suspect, first_dead, all_dead; /* detection trials */
    int32_t node;
} sim_trial_t;

typedef struct {
    sim_experiment_t kind;
    uint32_t trials_done;
    sim_trial_t trials[SIM_MAX_TRIALS];
    double warmup_s; /* time for the initial fleet to converge */
    /* join: ownership before and after the newcomer */
    uint32_t owners_before, owners_after;
    uint32_t moved, targets;
    double max_mean_before, max_mean_after;
    bool join_done;
} sim_exp_result_t;

/* What the fleet machine measured (sim_fleet.c). */
typedef struct {
    bool on;
    uint32_t targets;
    uint32_t terminal;  /* targets terminal on every up node at the end */
    uint32_t succeeded; /* ... of which succeeded, failed */
    uint32_t failed;
    double applied_s;     /* plan applied (virtual seconds) */
    double done_s;        /* every target terminal on its holder (<0: never) */
    uint64_t runs;        /* executions started */
    uint64_t completions; /* executions that reported an outcome */
    uint64_t claims, takeovers, reclaims, handbacks;
    uint64_t conflicts;            /* same-epoch races lost (aborted) */
    uint64_t same_epoch;           /* (target, epoch) claimed by two nodes */
    uint64_t same_epoch_partition; /* ... while views disagreed (partition, churn) */
    uint64_t overlaps;             /* a target executed by two nodes at once */
    uint64_t overlaps_partition;
    uint64_t double_results;                  /* two nodes' results of one epoch accepted locally */
    uint64_t fenced_results;                  /* outcomes refused: superseded */
    uint64_t aborted;                         /* executions stopped (fenced, conflict, leave) */
    uint64_t records_persisted, records_lost; /* lost: unflushed at a crash */
    uint64_t bytes_sent, msgs_sent;
    uint64_t records_in, records_merged;             /* records received by fleets, of which news */
    double converge_p50, converge_p99, converge_max; /* terminal on holder -> on all */
    uint32_t converge_samples;
    double claimed_max_mean; /* claims per node: max / mean */
} sim_fleet_result_t;

struct sim_result {
    uint64_t trace;
    uint64_t end_ms;       /* virtual time at the end */
    uint64_t settle_start; /* virtual time the settle phase began */
    double converged_s;    /* settle start to convergence; <0: never */
    double formed_s;       /* first convergence in the chaos phase; <0: never */
    double formed_wall_s;  /* wall seconds until then (setup included); <0: never */
    double wall_s;
    double steady_speed; /* simulated s per wall s after formed_s (0: unknown) */
    bool ok;             /* no invariant violated, no internal error */
    bool error;          /* the run could not be carried out (not a violation) */
    char error_text[160];
    sim_violation_t violation;
    uint32_t n_violations;
    sim_stats_t stats;
    sim_exp_result_t exp;
    /* ownership of `targets` over node 0's final view */
    uint32_t owners;
    double owned_max_mean;
    uint32_t distinct_checksums; /* among up nodes at the end */
    size_t queue_high_water;
    sim_fleet_result_t fleet;
};

/* Runs one simulation; fills *res. Returns 0 when the run was carried out
 * (look at res->ok for the invariants) or an error. */
int sim_run(const sim_config_t *cfg, sim_result_t *res);

/* ---- used by the machines, the checker and the experiments ---- */

const sim_config_t *sim_config(const sim_t *sim);
const membership_profile_t *sim_profile(const sim_t *sim);
uint64_t sim_now(const sim_t *sim);
uint32_t sim_node_count(const sim_t *sim);
sim_node_t *sim_node(sim_t *sim, uint32_t index);
/* The node with that id or that address; NULL when none. */
sim_node_t *sim_node_by_id(sim_t *sim, const uint8_t id[MEMBER_ID_LEN]);
sim_node_t *sim_node_by_address(sim_t *sim, const char *address);
/* Join seeds (addresses of nodes 0..2). */
uint32_t sim_seed_count(const sim_t *sim);
const char *sim_seed_address(const sim_t *sim, uint32_t i);
/* Seed for a machine's own generator: one draw of the seeds concern. */
uint64_t sim_machine_seed(sim_t *sim);
sim_stats_t *sim_stats(sim_t *sim);
/* The state a machine shares across nodes (world_new), by machine ops. */
void *sim_shared(sim_t *sim, const sim_machine_ops_t *ops);
/* The node's instance of a machine (NULL while down or not hosted). */
void *sim_machine_state(sim_t *sim, sim_node_t *node, const sim_machine_ops_t *ops);

/* Puts a packet on the network (takes the caller's reference). */
void sim_send(sim_t *sim, sim_packet_t *packet);
sim_packet_t *sim_packet_new(uint32_t type, uint32_t from, uint32_t to);
void sim_packet_unref(sim_packet_t **packet_p);

/* After an input to the node: tells the machines about a changed view and
 * queues the node's next tick for their new deadlines. */
void sim_node_reschedule(sim_t *sim, sim_node_t *node);
/* Folds a value into the trace hash. */
void sim_trace(sim_t *sim, uint64_t value);
/* Records an invariant violation; the run stops after the current event. */
void sim_violation(sim_t *sim, const char *invariant, int32_t node_a, int32_t node_b,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
bool sim_failed(const sim_t *sim);
/* True while a partition is in force or was healed less than the longest
 * suspicion timeout ago (suspicions it started may still expire). */
bool sim_partition_recent(const sim_t *sim);
bool sim_settling(const sim_t *sim);

/* Crash and restart (experiments and the fault schedule). */
void sim_crash(sim_t *sim, sim_node_t *node);
int sim_restart(sim_t *sim, sim_node_t *node);
/* Network impairments now in force (experiments switch them on late). */
void sim_set_impairments(sim_t *sim, double loss, double dup, double reorder);

/* ---- the membership machine (sim_membership.c) ---- */

extern const sim_machine_ops_t sim_membership_ops;
/* The node's membership, NULL while it is down. */
membership_t *sim_membership(sim_node_t *node);
/* Drains the membership outputs of node (after an input from outside the
 * machine, e.g. an experiment's membership_set_flags). */
void sim_membership_drain(sim_t *sim, sim_node_t *node);
/* Adds the membership statistics of a node's current life to the totals
 * (at a crash and at the end). */
void sim_membership_collect(sim_t *sim, sim_node_t *node);

/* ---- the fleet machine (sim_fleet.c) ---- */

extern const sim_machine_ops_t sim_fleet_ops;
/* Ownership of `targets` by node's fleet core (its own rule, bounded load
 * included); same outputs as sim_ownership. -1 when the node has no fleet. */
int sim_fleet_ownership(sim_t *sim, sim_node_t *node, const uint64_t *keys, uint32_t targets,
                        uint32_t *owner_of, uint32_t *n_owners, double *max_mean);

/* ---- invariants (sim_check.c) ---- */

/* A member record changed in observer's view (MOUT_CHANGED). */
void sim_check_changed(sim_t *sim, sim_node_t *observer, const member_t *member, bool added,
                       member_state_t old_state);
/* Observer is about to persist incarnation `inc` for itself. */
void sim_check_incarnation(sim_t *sim, sim_node_t *node, uint64_t inc);
/* Periodic checks; true when the settle phase may end (views converged). */
bool sim_check_periodic(sim_t *sim);
/* The settle phase ran out: report why the views did not converge. */
void sim_check_settle_failed(sim_t *sim);
/* O(N): every up node has as many live members as there are up nodes, and
 * all their checksums are equal (the fleet has formed). */
bool sim_views_converged(sim_t *sim);
/* Number of distinct checksums among up nodes, and whether every up node
 * lists every up node as live (alive or suspect) and nothing else as live. */
uint32_t sim_view_checksums(sim_t *sim, bool *all_live_agree);

/* ---- experiments (sim_experiment.c) ---- */

typedef struct sim_exp sim_exp_t;
sim_exp_t *sim_exp_new(sim_t *sim, const sim_config_t *cfg);
void sim_exp_destroy(sim_exp_t **self_p);
/* Called at every periodic check of the chaos phase; true when finished. */
bool sim_exp_step(sim_exp_t *exp, sim_t *sim);
/* Every member change, for measurements. */
void sim_exp_changed(sim_exp_t *exp, sim_t *sim, sim_node_t *observer, const member_t *member,
                     member_state_t old_state, bool added);
void sim_exp_result(const sim_exp_t *exp, sim_exp_result_t *out);
/* Ownership of `targets` over the live, non-draining members of observer's
 * view: number of owners and max/mean owned; owner_of (may be NULL, else
 * `targets` entries) receives each target's owner as a node index. */
int sim_ownership(sim_t *sim, sim_node_t *observer, const uint64_t *keys, uint32_t targets,
                  uint32_t *owner_of, uint32_t *n_owners, double *max_mean);
/* Rendezvous keys of targets "component:default/target-<i>". */
uint64_t *sim_target_keys(uint32_t targets);
sim_exp_t *sim_experiment(sim_t *sim);

/* ---- the simulator's own checks (sim_selftest.c) ---- */

/* 0 when the event queue and generators behave; prints what failed. */
int sim_self_test(void);

#endif
