/*
 * membership.h: fleet membership as a pure state machine (SWIM with Lifeguard).
 *
 * This module decides who is in the fleet and in which state. It is modelled
 * on HashiCorp memberlist with Lifeguard: one probe per interval in a shuffled
 * round robin, indirect probes through k peers (with NACKs), suspicion whose
 * timeout shrinks with independent confirmations, refutation by incarnation
 * number, updates piggybacked on every message with retransmit ~ mult*log(N),
 * periodic push-pull full-state exchange and a local health score that
 * stretches this node's own timeouts when it is the slow one. Beyond
 * memberlist: nodes are identified by their CURVE public key, seeds are
 * retried with backoff until one answers, dead members and seeds are
 * re-contacted so a healed partition merges by itself, and a restarted node
 * comes back with a higher incarnation its driver persisted.
 *
 * PURE: no clock, socket, store, thread, global state or logging. Every input
 * carries `now_ms`, a monotonic millisecond clock supplied by the driver, and
 * randomness comes from the instance's own seeded generator, so the same
 * inputs and seed give the same outputs (the simulator replays runs from a
 * seed). The driver:
 *
 *     m = membership_new(&profile, id, name, address, stored_incarnation + 1, seed, now);
 *     membership_add_seed(m, "tcp://10.0.0.1:7700");  ... membership_restore(...)
 *     loop:
 *         on message:  membership_handle(m, now, authenticated_sender, msg)
 *         on timer:    membership_tick(m, now)   (at membership_next_deadline(m))
 *         after every input:
 *             while (membership_poll(m, &out)) { act on out; membership_out_release(&out); }
 *             re-arm the timer at membership_next_deadline(m)
 *
 * Outputs are ordered: an MOUT_INCARNATION must be persisted before any SEND
 * that follows it is sent.
 *
 * Lifetimes: pointers returned by the view functions (membership_at/find/self)
 * stay valid until the next call that takes `now_ms` or changes the instance.
 */
#ifndef GG_MEMBERSHIP_H
#define GG_MEMBERSHIP_H

#include "wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEMBER_ID_LEN      WIRE_ID_LEN
#define MEMBER_NAME_MAX    64  /* bytes, without the NUL */
#define MEMBER_ADDRESS_MAX 255 /* bytes, without the NUL */

#define MEMBERSHIP_MAX_MEMBERS   65536 /* member table bound (self included) */
#define MEMBERSHIP_MAX_SYNC      8192  /* entries in one SYNC/SYNC_REPLY, bytes permitting */
#define MEMBERSHIP_MAX_PIGGYBACK 256   /* updates in any other message */
#define MEMBERSHIP_MAX_SEEDS     64
#define MEMBERSHIP_MAX_INDIRECT  16  /* bound on indirect_checks and gossip_fanout */
#define MEMBERSHIP_MAX_RELAYS    256 /* indirect probes this node runs for others at once */

/* Member flags, carried with the member's incarnation. */
#define MEMBER_FLAG_DRAINING 0x1u /* takes no new work (scale-down, `gaggle drain`) */
#define MEMBER_FLAG_RETIRING 0x2u /* the fleet's scaler chose it to go: draining, then stopped */
#define MEMBER_FLAG_ELASTIC  0x4u /* the fleet's scaler may retire it (scale.elastic) */
/* Capability: reads and speaks wire version 2 (membership updates packed,
 * fleet records and announcements in binary). Set on this node's own record
 * from its first incarnation (membership_new); a member without it is an
 * older node and gets version 1 forms only, and a node whose own record
 * lacks it speaks version 1 only. */
#define MEMBER_FLAG_WIRE2 0x8u

typedef enum { MEMBER_ALIVE = 0, MEMBER_SUSPECT, MEMBER_DEAD, MEMBER_LEFT } member_state_t;

/* "alive", "suspect", "dead", "left" ("unknown" otherwise). */
const char *member_state_name(member_state_t state);

/* One member as this node sees it. */
typedef struct {
    uint8_t id[MEMBER_ID_LEN]; /* CURVE public key: the identity */
    char name[MEMBER_NAME_MAX + 1];
    char address[MEMBER_ADDRESS_MAX + 1]; /* where it receives, tcp://HOST:PORT */
    member_state_t state;
    uint64_t incarnation;
    uint32_t flags;          /* MEMBER_FLAG_* */
    uint64_t state_since_ms; /* local monotonic time of the last state change */
    uint64_t view_checksum;  /* the membership checksum it last reported (0: none yet) */
} member_t;

/* Protocol timings. Obtain one with membership_profile_get and adjust. */
typedef struct {
    uint32_t probe_interval_ms;          /* one probe per interval (scaled by health) */
    uint32_t probe_timeout_ms;           /* direct ACK wait before indirect probes */
    uint32_t gossip_interval_ms;         /* piggyback-only GOSSIP rounds */
    uint32_t gossip_fanout;              /* peers per gossip round */
    uint32_t indirect_checks;            /* peers asked to probe on our behalf */
    uint32_t suspicion_mult;             /* min suspicion = mult * max(1,log10 N) * probe */
    uint32_t suspicion_max_timeout_mult; /* max suspicion = this * min */
    uint32_t retransmit_mult;            /* each update is sent mult * ceil(log10(N+1)) times */
    uint32_t push_pull_interval_ms;      /* full-state exchange (scaled up above 32 nodes) */
    uint32_t awareness_max;              /* health score stays in [0, awareness_max) */
    uint32_t gossip_to_dead_ms;          /* keep gossiping to the dead this long */
    uint32_t reconnect_interval_ms;      /* SYNC to a dead member or a seed (healing) */
    uint64_t reap_ms;                    /* dead/left members are forgotten after this */
    uint32_t max_piggyback;              /* updates per message, <= MEMBERSHIP_MAX_PIGGYBACK */
    uint32_t join_backoff_min_ms;        /* seeds: first retry after this... */
    uint32_t join_backoff_max_ms;        /* ...doubling up to this */
} membership_profile_t;

/* Fills *out with the named profile: "lan" (memberlist's LAN defaults), "wan"
 * (memberlist's WAN defaults) or "test" (about ten times faster than lan).
 * Returns 0 or GG_EINVAL for another name. */
int membership_profile_get(const char *name, membership_profile_t *out);

/* 0 when every field is usable, GG_EINVAL otherwise (zero intervals, counts
 * over their MEMBERSHIP_MAX_* bound, timeout not below the interval, ...). */
int membership_profile_check(const membership_profile_t *profile);

/* ---- messages ---- */

/* What one node says about one member. `accuser` is set for SUSPECT: the node
 * whose failed probe raised the suspicion (confirmations count accusers). */
typedef struct {
    uint8_t id[MEMBER_ID_LEN];
    char name[MEMBER_NAME_MAX + 1];
    char address[MEMBER_ADDRESS_MAX + 1];
    member_state_t state;
    uint64_t incarnation;
    uint32_t flags;
    bool has_accuser;
    uint8_t accuser[MEMBER_ID_LEN];
} member_update_t;

/* A membership message. `type` is a wire_type_t: WIRE_PING, WIRE_ACK,
 * WIRE_PING_REQ, WIRE_NACK, WIRE_GOSSIP, WIRE_SYNC, WIRE_SYNC_REPLY or
 * WIRE_LEAVE. Every message carries its sender's own record (`sender`: id,
 * name, address to reply to, incarnation, state ALIVE or LEFT, flags) and the
 * sender's membership checksum. */
typedef struct {
    uint32_t type;
    uint64_t seq;      /* PING, ACK, PING_REQ, NACK: the probe's sequence number */
    uint64_t checksum; /* sender's membership_checksum() */
    member_update_t sender;
    /* PING: the node expected to answer; ACK: the node that answered (the
     * probed target when relayed); PING_REQ: the node to probe; NACK: the
     * node that could not be reached. */
    uint8_t target_id[MEMBER_ID_LEN];
    char target_address[MEMBER_ADDRESS_MAX + 1]; /* PING_REQ only */
    /* Piggybacked updates; for SYNC and SYNC_REPLY the sender's full list. */
    uint32_t n_updates;
    uint32_t max_updates; /* capacity of `updates` */
    member_update_t *updates;
    /* the wire version to encode it at: 1 (membership_msg_new), or 2 for a
     * peer whose record carries MEMBER_FLAG_WIRE2 (set by the state machine
     * on its SEND outputs); a decoded message has the version it came in */
    uint32_t wire_version;
} membership_msg_t;

/* True for the wire types this module handles. */
bool membership_msg_type_known(uint32_t wire_type);

/* A zeroed message of `type` with room for max_updates updates; NULL on
 * allocation failure or when max_updates is over MEMBERSHIP_MAX_SYNC. */
membership_msg_t *membership_msg_new(uint32_t type, uint32_t max_updates);
void membership_msg_destroy(membership_msg_t **self_p);

/* Encodes msg as one wire envelope at msg->wire_version (updates as an array
 * of arrays in version 1, as one bin of packed updates in version 2), whose
 * sender is msg->sender.id. On success
 * *data is a malloc'd buffer of *len bytes (the caller frees it). Returns 0,
 * GG_EINVAL (unknown type, bad field), GG_ETOOBIG or GG_ENOMEM. */
int membership_msg_encode(const membership_msg_t *msg, uint8_t **data, size_t *len);

/* Decodes a membership message from a decoded envelope: every field is
 * type- and length-checked, update counts bounded (MEMBERSHIP_MAX_SYNC for
 * SYNC/SYNC_REPLY, MEMBERSHIP_MAX_PIGGYBACK otherwise). sender.id is the
 * envelope's sender. Returns 0 and *out (free with membership_msg_destroy),
 * GG_EINVAL when the type is not a membership type, GG_EMALFORMED or
 * GG_ENOMEM. */
int membership_msg_decode(const wire_msg_t *w, membership_msg_t **out);

/* ---- the state machine ---- */

typedef struct _membership_t membership_t;

/* Creates the membership of the node `self_id` (name and address as others
 * should see them) at `incarnation`, which must be above any incarnation the
 * node used before (the driver persists MOUT_INCARNATION). Its flags start
 * as MEMBER_FLAG_WIRE2. Returns NULL on a bad profile or argument, or
 * allocation failure. */
membership_t *membership_new(const membership_profile_t *profile,
                             const uint8_t self_id[MEMBER_ID_LEN], const char *name,
                             const char *address, uint64_t incarnation, uint64_t seed,
                             uint64_t now_ms);
void membership_destroy(membership_t **self_p);

/* Adds a join seed: until this node has exchanged state with anyone, every
 * seed is sent a SYNC on a backoff (join_backoff_min_ms doubling to
 * join_backoff_max_ms); afterwards seeds remain reconnect targets. Returns 0,
 * GG_EINVAL (empty or too long) or GG_ETOOBIG (MEMBERSHIP_MAX_SEEDS). A
 * duplicate is ignored. */
int membership_add_seed(membership_t *m, const char *address);

/* Restores last-known members (from the store after a restart). They are
 * listed as DEAD hints -- never trusted as alive -- and contacted like seeds
 * until this node joins, and later by the reconnect timer. Any news about a
 * hint at an incarnation at least the stored one replaces it. Self and
 * entries already known are skipped. Emits no outputs. Returns 0, GG_EINVAL
 * or GG_ETOOBIG (table full; the rest is skipped). */
int membership_restore(membership_t *m, const member_t *known, size_t n, uint64_t now_ms);

/* Feeds one received message. from_id is the sender proven by the transport;
 * a message whose body claims another sender is ignored (GG_EPERM), one that
 * is inconsistent (a sender claiming to be suspect or dead, a LEAVE that is
 * not a leave) is ignored with GG_EMALFORMED. Returns 0 when processed. */
int membership_handle(membership_t *m, uint64_t now_ms, const uint8_t from_id[MEMBER_ID_LEN],
                      const membership_msg_t *msg);

/* Runs every timer due at now_ms. */
void membership_tick(membership_t *m, uint64_t now_ms);

/* The earliest time membership_tick must run (may be <= now: run it now). */
uint64_t membership_next_deadline(const membership_t *m);

/* Graceful leave: this node becomes LEFT at incarnation + 1, announces it
 * with LEAVE messages and gossip, and stops probing, push-pull and
 * reconnects. Keep ticking until membership_broadcasts_pending() is 0 (or a
 * deadline passes) before exiting. Idempotent. */
void membership_leave(membership_t *m, uint64_t now_ms);

/* Number of queued updates not yet transmitted their full count. */
size_t membership_broadcasts_pending(const membership_t *m);

/* Sets this node's flags (e.g. MEMBER_FLAG_DRAINING): bumps the incarnation
 * and gossips it. Returns 0, or GG_EINVAL after leaving. */
int membership_set_flags(membership_t *m, uint64_t now_ms, uint32_t flags);

/* Operator's force-leave: a DEAD member is marked LEFT fleet-wide. Returns 0
 * (also when already LEFT), GG_ENOTFOUND, GG_EINVAL (self) or GG_EBUSY (the
 * member is alive or suspect: it would refute). */
int membership_force_leave(membership_t *m, uint64_t now_ms, const uint8_t id[MEMBER_ID_LEN]);

/* ---- outputs, drained by the driver after every input ---- */

typedef enum {
    MOUT_SEND = 1,    /* send msg to to_address (to_id when known) */
    MOUT_CHANGED,     /* a member was added or its record changed: persist/act */
    MOUT_REMOVED,     /* a dead or left member was reaped: forget it */
    MOUT_INCARNATION, /* our incarnation changed: persist it before sending more */
} membership_out_type_t;

typedef struct {
    membership_out_type_t type;
    /* SEND */
    bool to_id_known; /* false for a seed contacted by address only */
    uint8_t to_id[MEMBER_ID_LEN];
    char to_address[MEMBER_ADDRESS_MAX + 1];
    membership_msg_t *msg; /* owned by the output: membership_out_release frees it */
    /* CHANGED, REMOVED */
    member_t member;          /* the new record (REMOVED: the last one) */
    bool added;               /* CHANGED: a member this node did not list before */
    member_state_t old_state; /* CHANGED: the previous state (when !added) */
    /* INCARNATION */
    uint64_t incarnation;
} membership_out_t;

/* Takes the oldest output into *out; false when there is none. */
bool membership_poll(membership_t *m, membership_out_t *out);
/* Frees what an output owns (its message) and clears it. NULL-safe. */
void membership_out_release(membership_out_t *out);

/* ---- views ---- */

size_t membership_size(const membership_t *m); /* listed members, self included */
/* The i-th member (i < size) in no particular order; index 0 is self. */
const member_t *membership_at(const membership_t *m, size_t i);
const member_t *membership_find(const membership_t *m, const uint8_t id[MEMBER_ID_LEN]);
const member_t *membership_self(const membership_t *m);
size_t membership_alive_count(const membership_t *m); /* alive + suspect, self included */
/* Order-independent digest of the live view: the (id, flags) of every alive
 * or suspect member. Equal live views give equal checksums; dead and left
 * members, whose reaping time differs per node, do not count. */
uint64_t membership_checksum(const membership_t *m);
uint32_t membership_health(const membership_t *m); /* Lifeguard awareness, 0 = healthy */
bool membership_joined(const membership_t *m);     /* exchanged state with a peer */
/* When the member's suspicion expires (0 when it is not suspect). */
uint64_t membership_suspicion_deadline(const membership_t *m, const uint8_t id[MEMBER_ID_LEN]);

typedef struct {
    uint64_t probes;         /* direct probes started */
    uint64_t probes_failed;  /* ended without any ACK */
    uint64_t ping_reqs_sent; /* indirect probe requests */
    uint64_t relays;         /* indirect probes run for others */
    uint64_t nacks_sent;
    uint64_t suspicions;  /* members this node moved to suspect */
    uint64_t deaths;      /* members this node moved to dead or left */
    uint64_t refutations; /* incarnation bumps to refute a rumour about us */
    uint64_t reaped;
    uint64_t syncs_sent; /* SYNC, join and reconnect included */
    uint64_t syncs_received;
    uint64_t msgs_ignored;    /* identity mismatch, stale address, inconsistent body */
    uint64_t updates_dropped; /* member table full */
    uint64_t outputs_dropped; /* output queue full (driver not polling) */
} membership_stats_t;

const membership_stats_t *membership_stats(const membership_t *m);

#endif
