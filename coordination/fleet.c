/*
 * fleet.c: ownership, leases and progress replication as a pure state
 * machine (see fleet.h for the contract, DESIGN.md §3-5 for the why).
 *
 * Design notes
 * ------------
 * Ownership. owner(target) = rendezvous_owner over the seeds of the members
 * that are live and not draining, sorted by id, with the target's key. It is
 * cached per target in two bitmaps (known, self) that are cleared whenever
 * the checksum of that sorted id list changes, and computed lazily by the
 * claim scan.
 *
 * Claim scan. Each plan has two passes, each with its cursor: a takeover
 * pass over held targets (a dead or silent holder's targets come before new
 * ones) and a pass over pending targets. Events that can create a claim
 * opportunity for this node wake the plan: a member set change, a lease
 * that may have expired, a record that became pending or lost its live
 * holder (these owe a takeover pass), more capacity, a freed share of
 * max_parallel, the canary completing, an approval, a resume. fleet_tick
 * spends at most FLEET_SCAN_BUDGET work units per call; a pending pass that
 * went through the whole range marks the plan `exhausted`, so that capacity
 * alone does not restart futile passes. A pass that hits a limit (capacity,
 * share, rate, the fleet-wide max_parallel) is abandoned and restarted by
 * the event that lifts the limit. fleet_next_deadline says "now" while any
 * pass can progress.
 *
 * Target life as seen by one node X (records merge by progress_merge):
 *
 *   pending --X claims (owner, synced, limits)--> running@e+1 held by X  FOUT_RUN
 *           (within s_settle_ms of an owner-set change: FOUT_RUN after
 *           s_confirm_ms if still X's, else withdrawn with no FOUT_ABORT)
 *   running/retry_wait held by H, lease not live for X, X owner
 *           --X takes over--> running@e+1 (retry_wait: attempt+1, or failed
 *                             when attempts are exhausted)
 *   running held by X --outcome (fleet_record_local at e)--> any state
 *   held by X, record superseded by epoch > e (or generation)  FOUT_ABORT FENCED
 *   held by X, same epoch, other holder wins the merge         FOUT_ABORT CONFLICT
 *   held by X, plan cancelled    --> cancelled@e               FOUT_ABORT CANCELLED
 *   held by X, fleet_leave (or waiting to retry on a draining X)
 *                                --> pending@e+1, no holder    FOUT_ABORT LEAVING
 *   held by X in X's own store at a restart: restored as pending@e (a claim
 *   that may never have left X yields to a same-epoch claim by a peer);
 *   held by X in a peer's copy (learned after the restart, not run by this
 *   instance), once synced --> running@e+1 (re-claim), cancelled (plan
 *   cancelled) or pending@e+1 (plan paused, X draining).
 *
 *   transition        | performed by
 *   ------------------+------------------------------------------------
 *   claim, takeover   | s_scan -> s_consider -> s_claim (-> s_start_due)
 *   re-claim          | s_reclaim -> s_claim
 *   outcome, operator | fleet_record_local
 *   fence, conflict   | s_merge_in (a record from a peer)
 *   cancel            | fleet_set_plan_control -> s_cancel_held
 *   hand back         | fleet_leave, s_drain_waiting and fleet_record_local
 *                     | (draining), s_reclaim (paused plan) -> s_handback
 *
 * A lease (a record held by H, running or retry_wait) is live for X while H
 * is live in X's view and X heard from H within lease_ttl + lease_margin
 * (any fleet message from H counts; holders send LEASE every lease_ttl/3).
 * When a member appears live, its clock starts at that moment, so a node
 * never takes over a lease it had no chance to hear being renewed.
 *
 * Lazy push. A push round picks push_fanout peers; push_eager of them get
 * the records, the others a HAVE naming each record's version: in wire
 * version 2 a 32-bit digest of it (s_version_digest, kept per target in a
 * dense array), in version 1 the fields progress_compare orders by (the
 * holder cut to 8 bytes). A receiver asks the announcer (WANT) for the
 * versions it lacks: a digest other than its own (an older version, rare,
 * merges as nothing), or in version 1 a version newer than its own (weighed
 * first against its digest, then the record). Most announced versions are
 * the ones it holds, and the digest answers without touching the record; a
 * digest equal by chance, one in 2^32, only leaves that version to the
 * eager pushes and pulls. It marks each target asked for S_BIT_WANTED so
 * that announcements from other peers do not ask again
 * until any copy of the record arrived or s_want_ms passed; the answer is a
 * PROGRESS at the announcement's hop, merged and forwarded like a push. A
 * node thus receives a change about push_eager + 1 times instead of
 * push_fanout times. A round sends one message per peer: each change goes
 * with its own hop (a node learns changes at several hops between rounds;
 * a batch per hop value made 4 messages per peer and round at 1,000 nodes).
 *
 * Change feed. Every item (a target's record or an accepted document) sits
 * once in a doubly linked list ordered by `seq`, the local sequence number
 * of its latest change; a change moves it to the tail. A pull "items after
 * since" walks back from the tail (or starts at the head, or at the item
 * that ended the previous page: a small cache of recent page ends makes
 * paging O(page)). Sequence numbers are 32 bits; when they run out the
 * feed is numbered again under a new feed id (s_feed_renumber). Per target
 * this costs seq (4) + links (8) bytes; with the key (8) and the version
 * digest (4) a target costs sizeof(progress_rec_t) + 24 bytes plus 6 bits in
 * bitmaps.
 *
 * Sync. A node is synced after one complete pull chain (pages until
 * more=false) from any peer, or after lease_ttl with no live peer. A plan
 * added later is claimable once a pull chain that started after it was
 * added has completed (or no peer is live), so a node never claims from a
 * partial copy of a plan's records.
 *
 * Wire format (bodies of the envelope, wire.h; every field is type- and
 * length-checked). Records travel in one of two forms, by the receiver's
 * version (its MEMBER_FLAG_WIRE2, fleet_member_t.wire_version); the
 * envelope's "v" says which:
 *   version 1  "items": [{"p": bin32 plan id, "i": uint index < 2^20,
 *              "r": record (progress_pack), "h"?: uint hop <= 16}]
 *   version 2  "plans": [bin32] <= S_REC_PLANS, "rb": bin of records, each
 *              S_REC_HEAD bytes and its error text (s_rec_put has the layout)
 * shown as RECORDS below; at most FLEET_MAX_FEED_ITEMS records a message.
 *
 *   type          | body
 *   --------------+-------------------------------------------------------
 *   WIRE_PROGRESS | {"hop": uint <= 16, RECORDS,
 *                 |  "docs"?: [{"id", "kind", "size"}]}   pushed changes (and
 *                 |  the accepted documents of their plans); "hop" is the
 *                 |  smallest of the records', a record's own when it differs
 *                 |  ("h" in version 1; always in version 2)
 *   WIRE_DIGEST   | {"k": 0, "f": feed id, "s": since, "q": request id,
 *                 |  "h"?: the puller's state sum}  pull
 *   WIRE_DIGEST   | {"k": 1, "f": feed id, "n": next, "m": bool more,
 *                 |  "q": request id, RECORDS,
 *                 |  "docs": [{"id": bin32, "kind": uint, "size": uint}]}  feed
 *   WIRE_LEASE    | {"seq": uint}                      heartbeat
 *   WIRE_HAVE     | {"k": 0, "hop", "a": sender's address,
 *                 |  "plans": [bin32] <= 16, "v": bin of 36-byte versions
 *                 |  (version 2: "d", bin of 12-byte index and digest),
 *                 |  "hops"?: bin of a hop per version, when they differ}
 *                 |  announcement (lazy push; s_have_put and s_have_put2
 *                 |  have the layouts)
 *   WIRE_HAVE     | {"k": 1, "hop", "p": bin32 plan id, "i": bin of u32 indices,
 *                 |  "hs"?: bin of a hop per index, when they differ}
 *                 |  request for announced records, answered by PROGRESS
 *   WIRE_PLAN     | {"k": 0, "id": bin32, "kind": uint, "size": uint}  announce
 *   WIRE_PLAN     | {"k": 1, "id": bin32, "off": uint}                 chunk get
 *   WIRE_PLAN     | {"k": 2, "id": bin32, "off": uint, "total": uint,
 *                 |  "data": bin <= FLEET_CHUNK_BYTES}                 chunk
 *
 * A pull names the feed id the puller knows; when it is not the server's
 * current one (the server restarted) the server serves from 0. When the
 * puller's state sum equals the server's, the server answers with no items,
 * next = its current sequence number and more = false (steady state: a pull
 * from a peer never pulled before costs one empty page instead of the whole
 * feed). Fields marked "?" are optional (a node accepts messages of the
 * previous version, which lack them). Messages are sized by bytes
 * (S_BATCH_BYTES) as well as by item count.
 */
#include "fleet.h"

#include "gg_error.h"
#include "rendezvous.h"
#include "rng.h"

#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define S_NONE               UINT32_MAX
#define S_NEVER              UINT64_MAX
#define S_DOC_BIT            0x80000000u
#define S_PLAN_SHIFT         20
#define S_INDEX_MASK         ((1u << S_PLAN_SHIFT) - 1u)
#define S_OWNER_COST_DIV     32u /* 32 rendezvous scores cost a work unit */
#define S_MAX_HOPS           16u
#define S_MAX_FANOUT         64u
#define S_PULL_PARTNERS      3u     /* anti-entropy ring: the next members by id */
#define S_PULL_RANDOM_ONE_IN 4u     /* pulls that go to a random peer instead */
#define S_HB_MAX             512u   /* peers one heartbeat goes to */
#define S_MAX_ORPHANS        16384u /* records of unknown plans kept */
#define S_MAX_PUSH_QUEUE     65536u
#define S_PUSH_MSGS          8u /* PROGRESS messages per push round */
#define S_OUT_CAP_MAX        65536u
#define S_BATCH_BYTES        (WIRE_MAX_MESSAGE - 4096u)
#define S_ITEM_BYTES         192u /* an item without its error text, generously */
#define S_DOC_ITEM_BYTES     64u
#define S_FETCH_WINDOW       16u
#define S_MAX_FETCHES        4u
#define S_MAX_FETCH_BYTES    (2ull * FLEET_MAX_DOC_BYTES) /* assembled in memory at once */
#define S_MAX_WANTED         256u
#define S_MAX_SOURCES        8u
#define S_FETCH_TRIES        10u /* silent timeouts before a fetch is abandoned */
#define S_CURSOR_CACHE       16u
#define S_HINT_DOCS          4u  /* documents named in one PROGRESS message */
#define S_HAVE_PLANS         16u /* plans named in one HAVE message */
#define S_HAVE_ENTRY         36u /* bytes of one announced version (s_have_put) */
#define S_HAVE_ENTRY2        12u /* the same in version 2: index and digest (s_have_put2) */
#define S_HAVE_HOLDER        8u  /* holder id bytes an announcement carries */
#define S_MAX_WANTS          65536u
#define S_NO_HOP             UINT32_MAX
#ifndef S_SEQ_MAX            /* a test builds fleet.c with a small one */
#define S_SEQ_MAX UINT32_MAX /* feed sequence numbers (s_feed_renumber) */
#endif
#define S_REC_PLANS 16u /* plans named in one version 2 records block */
#define S_REC_HEAD  80u /* bytes of a version 2 record before its error (s_rec_put) */

_Static_assert(FLEET_MAX_TARGETS <= (1u << S_PLAN_SHIFT), "target index fits a ref");
_Static_assert(FLEET_MAX_PLANS <= (1u << (31 - S_PLAN_SHIFT)), "plan slot fits a ref");
_Static_assert(FLEET_ID_LEN == PROGRESS_ID_LEN && FLEET_ID_LEN == WIRE_ID_LEN, "one id size");

/* Per-target flags, one bitmap each. */
enum {
    S_BIT_GATED = 0,
    S_BIT_APPROVED,
    S_BIT_MINE,      /* held by self and run (or waited on) by this instance */
    S_BIT_OWN_KNOWN, /* S_BIT_OWN_SELF is valid for the current member set */
    S_BIT_OWN_SELF,
    S_BIT_QUEUED,   /* in the push queue */
    S_BIT_WANTED,   /* announced by a peer and asked for (s_want_ms) */
    S_BIT_STARTING, /* claimed while the view was unsettled: FOUT_RUN waits (s_start_due) */
    S_BITS
};

enum { S_FRESH = 0, S_TAKEOVER, S_RECLAIM };
/* S_DOC_LOST: assembled but not handed over (output queue full): fetched
 * again when heard of. */
enum { S_DOC_HAVE = 1, S_DOC_VERIFYING, S_DOC_REJECTED, S_DOC_LOST };

typedef struct {
    progress_rec_t rec;
    uint64_t key;        /* rendezvous key */
    uint32_t prev, next; /* feed list */
} s_target_t;

typedef struct {
    uint8_t id[FLEET_ID_LEN];
    uint64_t id_hash; /* s_id_hash(id) */
    uint32_t slot;
    uint32_t n;
    s_target_t *t;
    /* per target, apart from the records: s_version_digest of its record
     * (what an announcement is weighed against first) and its feed position
     * (the sequence number of its latest change; 0: never changed) */
    uint32_t *vd, *seq;
    uint64_t *bits; /* S_BITS bitmaps of `words` words */
    uint32_t words;
    fleet_rollout_t ro;
    fleet_plan_control_t control;
    uint32_t counts[TARGET_STATE_COUNT]; /* stored states */
    uint32_t gated_waiting;              /* pending, gated, not approved */
    uint32_t running_self;               /* running and held by self */
    uint32_t canary_n, canary_ok, canary_bad;
    bool st_completed, st_auto_paused; /* last reported state */
    uint64_t ready_chain;              /* claimable once this pull chain completed */
    uint32_t cursor, scan_left;        /* pass over pending targets */
    uint32_t take_cursor, take_left;   /* pass over held targets (takeovers) */
    bool take_owed;                    /* a takeover pass has to complete */
    bool exhausted;                    /* the last complete pass found nothing to take */
    double tokens;                     /* rate limit bucket */
    uint64_t tokens_at;
    /* bounded load (cfg.load_cap_milli): every target's owner, assigned in
     * index order by rendezvous_owner_bounded over the owner list whose
     * checksum is assign_sum; valid once assign_next == n */
    uint32_t *owner_rank;
    uint32_t *load; /* per rank of the owner list */
    uint32_t load_n, assign_next, assign_cap;
    uint64_t assign_sum;
    bool assign_started;
} s_plan_t;

typedef struct {
    uint8_t id[FLEET_ID_LEN];
    uint8_t kind;
    uint8_t state;
    uint64_t size;
    uint32_t seq;
    uint32_t prev, next;
} s_doc_t;

typedef struct {
    bool active;
    uint8_t id[FLEET_ID_LEN];
    uint8_t kind;
    uint64_t size;
    uint8_t *buf;
    uint8_t *chunk; /* per chunk: 0 missing, 1 requested, 2 received */
    uint32_t n_chunks, n_received;
    uint8_t sources[S_MAX_SOURCES][FLEET_ID_LEN];
    uint32_t n_sources, source, tries;
    uint64_t progress_at;
} s_fetch_t;

typedef struct {
    uint8_t id[FLEET_ID_LEN];
    uint8_t kind;
    uint64_t size;
    uint8_t source[FLEET_ID_LEN];
} s_wanted_t;

/* A member as given (fleet_member_t), its address kept in the table's
 * arena (fleet_t.mem_addr) rather than in a 256-byte field: the table is
 * rebuilt at every view change, and at 1,000 members the fixed field was
 * most of what a rebuild touched. */
typedef struct {
    uint8_t id[FLEET_ID_LEN];
    const char *address;
    bool live, draining;
    uint8_t wire; /* highest wire version it reads (fleet_member_t) */
} s_member_pub_t;

typedef struct {
    s_member_pub_t pub;
    uint32_t orig; /* index in the list given to fleet_set_members */
    uint64_t seed;
    uint64_t last_heard;
    bool seen_live;              /* live in a view this node was given since it started */
    uint64_t feed_id, feed_next; /* pull cursor into its feed */
} s_member_t;

typedef struct {
    uint8_t plan[FLEET_ID_LEN];
    uint32_t index;
    bool restored;
    progress_rec_t rec;
} s_orphan_t;

typedef struct {
    uint32_t ref;
    uint8_t hop;
} s_push_t;

typedef struct {
    uint32_t ref;
    uint64_t due; /* when S_BIT_WANTED is cleared unless news came */
} s_want_t;

typedef struct {
    uint32_t ref;
    uint32_t epoch; /* of the claim */
    uint64_t due;   /* when it runs, if it is still this node's */
} s_start_t;

/* Open addressing table of u32 values (slot = value + 1; 0 is empty). */
typedef struct {
    uint32_t *slot;
    uint32_t mask, n;
} s_index_t;

struct _fleet_t {
    fleet_config_t cfg;
    uint8_t self[FLEET_ID_LEN];
    char self_address[FLEET_ADDRESS_MAX + 1];
    rng_t rng;
    fleet_stats_t stats;

    /* change feed */
    uint64_t feed_id, seq;
    uint64_t state_sum; /* s_state_sum: what a pull from this node could serve */
    uint32_t feed_head, feed_tail;
    struct {
        uint64_t seq;
        uint32_t ref;
    } cc[S_CURSOR_CACHE];
    uint32_t cc_next;

    /* membership view */
    s_member_t *mem;
    uint32_t n_mem;
    s_index_t mem_ix;
    char *mem_addr; /* the members' addresses, NUL-terminated one after another */
    size_t mem_addr_len;
    uint32_t *live_peers; /* indices into mem: live, not self, with an address */
    uint32_t n_live_peers;
    uint32_t push_fanout; /* cfg.push_fanout scaled to the fleet (s_scale_push) */
    uint32_t max_hops;    /* cfg.max_hops scaled likewise */
    uint64_t *own_seeds;  /* live non-draining members sorted by id */
    uint32_t *own_orig;   /* their index in the caller's list */
    uint32_t *own_mem;    /* their index in mem */
    uint32_t n_own;
    int32_t self_rank; /* self's position in the owner list, -1 when absent */
    uint64_t own_sum;  /* checksum of the owner list */
    uint64_t live_sum; /* checksum of the set of live members */

    /* plans and targets */
    s_plan_t *plans[FLEET_MAX_PLANS];
    uint32_t n_plans;
    s_index_t plan_ix;
    uint32_t scan_plan;
    uint32_t *held; /* refs held by self (running or retry_wait) */
    uint32_t n_held, held_cap;
    uint32_t n_restored; /* held by self but not MINE */
    uint32_t n_starting; /* S_BIT_STARTING set */
    s_orphan_t *orphans;
    uint32_t n_orphans;
    s_index_t orphan_ix;
    bool orphans_lost;

    /* documents */
    s_doc_t *docs;
    uint32_t n_docs, docs_cap;
    s_index_t doc_ix;
    s_fetch_t fetch[S_MAX_FETCHES];
    s_wanted_t *wanted;
    uint32_t n_wanted;
    fleet_doc_reader_fn *reader;
    void *reader_arg;

    /* push queue (ring) */
    s_push_t *pq;
    uint32_t pq_head, pq_n, pq_cap;

    /* versions asked for after an announcement (ring, in order of due) */
    s_want_t *wq;
    uint32_t wq_head, wq_n, wq_cap;

    /* claims made while the owner set was changing, waiting to run (ring, in
     * order of due); they hold executor slots */
    s_start_t *sq;
    uint32_t sq_head, sq_n, sq_cap;
    uint64_t owners_changed_at; /* when own_sum last changed */

    /* outputs (ring) */
    fleet_out_t *out;
    uint32_t out_head, out_n, out_cap;

    uint32_t capacity;
    bool synced, leaving;
    bool draining;        /* self is draining in its own view */
    uint64_t alone_since; /* S_NEVER while a peer is live */
    bool pull_out, pull_soon;
    uint8_t pull_peer[FLEET_ID_LEN];
    uint64_t pull_rid, pull_at, pull_deadline;
    uint64_t chain_started, chain_cur, chain_done;
    uint64_t push_at, hb_at, hb_seq;
    uint64_t lease_wake, token_wake;
};

/* ------------------------------------------------------------------ */
/* small helpers                                                      */

static const uint8_t s_zero_id[FLEET_ID_LEN];

static bool s_is_self(const fleet_t *f, const uint8_t *id)
{
    return memcmp(id, f->self, FLEET_ID_LEN) == 0;
}

static bool s_held_state(uint8_t state)
{
    return state == TARGET_RUNNING || state == TARGET_RETRY_WAIT;
}

static bool s_held_by_self(const fleet_t *f, const progress_rec_t *r)
{
    return s_held_state(r->state) && s_is_self(f, r->holder);
}

static uint64_t s_id_hash(const uint8_t *id)
{
    uint64_t v;
    memcpy(&v, id, sizeof v);
    return rng_mix64(v);
}

static uint64_t s_min(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static uint32_t s_ref(uint32_t slot, uint32_t index)
{
    return (slot << S_PLAN_SHIFT) | index;
}

static bool s_bit(const s_plan_t *p, int b, uint32_t i)
{
    return (p->bits[(size_t) b * p->words + i / 64] >> (i % 64)) & 1u;
}

static void s_bit_put(s_plan_t *p, int b, uint32_t i, bool v)
{
    uint64_t *w = &p->bits[(size_t) b * p->words + i / 64];
    if (v)
        *w |= 1ull << (i % 64);
    else
        *w &= ~(1ull << (i % 64));
}

static void s_pack_key(msgpack_packer *pk, const char *key)
{
    msgpack_pack_str_with_body(pk, key, strlen(key));
}

/* State sum. A node's records, plans and accepted documents summed as
 * 64-bit hashes (a multiset hash, updated in O(1) per change): two nodes
 * with equal sums hold the same plans, documents and records up to
 * progress_compare, so a pull between them has nothing to carry (a
 * collision is a 2^-64 event, and the next change ends it). A record never
 * changed (pending at epoch 0) counts 0. */
static uint64_t s_rec_hash(uint64_t plan_hash, uint32_t index, const progress_rec_t *r)
{
    if (r->epoch == 0 && r->generation == 0 && r->attempt == 0 && r->state == TARGET_PENDING &&
        r->step == 0 && r->finished_ms == 0 && memcmp(r->holder, s_zero_id, FLEET_ID_LEN) == 0)
        return 0;
    uint64_t h = rng_mix64(plan_hash ^ ((uint64_t) index << 1 | 1u));
    h = rng_mix64(h ^ r->epoch ^ ((uint64_t) r->generation << 32));
    h = rng_mix64(h ^ r->attempt ^ ((uint64_t) r->state << 32) ^ ((uint64_t) r->step << 40));
    h = rng_mix64(h ^ r->finished_ms);
    for (uint32_t k = 0; k < FLEET_ID_LEN; k += 8) {
        uint64_t w;
        memcpy(&w, r->holder + k, sizeof w);
        h = rng_mix64(h ^ w);
    }
    return h;
}

static uint64_t s_docmeta_hash(const uint8_t *id, uint8_t kind, uint64_t size)
{
    return rng_mix64(rng_mix64(s_id_hash(id) ^ 0xD0C) ^ ((uint64_t) kind << 56) ^ size);
}

/* ------------------------------------------------------------------ */
/* index tables                                                       */

typedef bool(s_eq_fn)(const fleet_t *f, uint32_t v, const void *key);
typedef uint64_t(s_hash_fn)(const fleet_t *f, uint32_t v);

static uint32_t s_ix_find(const fleet_t *f, const s_index_t *ix, uint64_t h, s_eq_fn *eq,
                          const void *key)
{
    if (!ix->slot)
        return S_NONE;
    for (uint32_t i = (uint32_t) h & ix->mask;; i = (i + 1) & ix->mask) {
        uint32_t s = ix->slot[i];
        if (s == 0)
            return S_NONE;
        if (eq(f, s - 1, key))
            return s - 1;
    }
}

static void s_ix_raw_put(s_index_t *ix, uint64_t h, uint32_t v)
{
    uint32_t i = (uint32_t) h & ix->mask;
    while (ix->slot[i] != 0)
        i = (i + 1) & ix->mask;
    ix->slot[i] = v + 1;
    ix->n++;
}

/* Inserts v (absent) under hash h, growing the table (load <= 1/2). */
/* An empty index with room for n values without growing (load <= 1/2). */
static int s_ix_reserve(s_index_t *ix, uint32_t n)
{
    uint32_t cap = 64;
    while (cap < 2 * (n + 1))
        cap *= 2;
    uint32_t *ns = calloc(cap, sizeof *ns);
    if (!ns)
        return GG_ENOMEM;
    *ix = (s_index_t){ns, cap - 1, 0};
    return 0;
}

static int s_ix_put(const fleet_t *f, s_index_t *ix, uint64_t h, uint32_t v, s_hash_fn *hash)
{
    if (!ix->slot || (ix->n + 1) * 2 > ix->mask + 1) {
        uint32_t cap = ix->slot ? (ix->mask + 1) * 2 : 64;
        uint32_t *ns = calloc(cap, sizeof *ns);
        if (!ns)
            return GG_ENOMEM;
        s_index_t nx = {ns, cap - 1, 0};
        if (ix->slot)
            for (uint32_t i = 0; i <= ix->mask; i++)
                if (ix->slot[i])
                    s_ix_raw_put(&nx, hash(f, ix->slot[i] - 1), ix->slot[i] - 1);
        free(ix->slot);
        *ix = nx;
    }
    s_ix_raw_put(ix, h, v);
    return 0;
}

static void s_ix_free(s_index_t *ix)
{
    free(ix->slot);
    memset(ix, 0, sizeof *ix);
}

static size_t s_ix_bytes(const s_index_t *ix)
{
    return ix->slot ? ((size_t) ix->mask + 1) * sizeof *ix->slot : 0;
}

static bool s_member_eq(const fleet_t *f, uint32_t v, const void *key)
{
    return memcmp(f->mem[v].pub.id, key, FLEET_ID_LEN) == 0;
}

static uint64_t s_member_hash(const fleet_t *f, uint32_t v)
{
    return s_id_hash(f->mem[v].pub.id);
}

static bool s_plan_eq(const fleet_t *f, uint32_t v, const void *key)
{
    return memcmp(f->plans[v]->id, key, FLEET_ID_LEN) == 0;
}

static uint64_t s_plan_hash(const fleet_t *f, uint32_t v)
{
    return s_id_hash(f->plans[v]->id);
}

static bool s_doc_eq(const fleet_t *f, uint32_t v, const void *key)
{
    return memcmp(f->docs[v].id, key, FLEET_ID_LEN) == 0;
}

static uint64_t s_doc_hash(const fleet_t *f, uint32_t v)
{
    return s_id_hash(f->docs[v].id);
}

typedef struct {
    const uint8_t *plan;
    uint32_t index;
} s_orphan_key_t;

static uint64_t s_orphan_hash_of(const uint8_t *plan, uint32_t index)
{
    return rng_mix64(s_id_hash(plan) ^ ((uint64_t) index * 0x9E3779B97F4A7C15ull));
}

static bool s_orphan_eq(const fleet_t *f, uint32_t v, const void *key)
{
    const s_orphan_key_t *k = key;
    return f->orphans[v].index == k->index &&
           memcmp(f->orphans[v].plan, k->plan, FLEET_ID_LEN) == 0;
}

static uint64_t s_orphan_hash(const fleet_t *f, uint32_t v)
{
    return s_orphan_hash_of(f->orphans[v].plan, f->orphans[v].index);
}

static s_member_t *s_member(const fleet_t *f, const uint8_t *id)
{
    uint32_t v = s_ix_find(f, &f->mem_ix, s_id_hash(id), s_member_eq, id);
    return v == S_NONE ? NULL : &f->mem[v];
}

static s_plan_t *s_plan(const fleet_t *f, const uint8_t *id)
{
    if (!id)
        return NULL;
    uint32_t v = s_ix_find(f, &f->plan_ix, s_id_hash(id), s_plan_eq, id);
    return v == S_NONE ? NULL : f->plans[v];
}

static s_doc_t *s_doc(const fleet_t *f, const uint8_t *id)
{
    uint32_t v = s_ix_find(f, &f->doc_ix, s_id_hash(id), s_doc_eq, id);
    return v == S_NONE ? NULL : &f->docs[v];
}

/* ------------------------------------------------------------------ */
/* outputs                                                            */

static fleet_out_t *s_out(fleet_t *f, fleet_out_type_t type)
{
    if (f->out_n == f->out_cap) {
        if (f->out_cap >= S_OUT_CAP_MAX) {
            f->stats.outputs_dropped++;
            return NULL;
        }
        uint32_t cap = f->out_cap ? f->out_cap * 2 : 64;
        fleet_out_t *no = malloc((size_t) cap * sizeof *no);
        if (!no) {
            f->stats.outputs_dropped++;
            return NULL;
        }
        for (uint32_t i = 0; i < f->out_n; i++)
            no[i] = f->out[(f->out_head + i) % f->out_cap];
        free(f->out);
        f->out = no;
        f->out_cap = cap;
        f->out_head = 0;
    }
    fleet_out_t *o = &f->out[(f->out_head + f->out_n) % f->out_cap];
    f->out_n++;
    memset(o, 0, sizeof *o);
    o->type = type;
    return o;
}

/* Room for n more outputs: claims are made only when their FOUT_RECORD and
 * FOUT_RUN fit, so that a claim is never made without its run. */
static bool s_out_room(const fleet_t *f, uint32_t n)
{
    return f->out_n + n <= S_OUT_CAP_MAX;
}

static void s_emit_target(fleet_t *f, fleet_out_type_t type, const s_plan_t *p, uint32_t i,
                          fleet_abort_reason_t reason)
{
    fleet_out_t *o = s_out(f, type);
    if (!o)
        return;
    memcpy(o->plan_id, p->id, FLEET_ID_LEN);
    o->index = i;
    o->rec = p->t[i].rec;
    o->reason = reason;
}

/* FOUT_ABORT for a target this instance runs; a claim still waiting to run
 * (S_BIT_STARTING) is withdrawn instead: the driver never heard of it. */
static void s_emit_abort(fleet_t *f, s_plan_t *p, uint32_t i, fleet_abort_reason_t reason)
{
    if (s_bit(p, S_BIT_STARTING, i)) {
        s_bit_put(p, S_BIT_STARTING, i, false);
        f->n_starting--;
        f->stats.starts_withdrawn++;
        return;
    }
    s_emit_target(f, FOUT_ABORT, p, i, reason);
}

/* The bytes of a FOUT_SEND: one copy of a message, shared by the outputs
 * that send it to each of its peers (fleet_send_data_free). */
typedef struct {
    uint32_t refs;
    uint8_t data[];
} s_sendbuf_t;

static s_sendbuf_t *s_sendbuf_new(const uint8_t *data, size_t len)
{
    s_sendbuf_t *b = malloc(sizeof *b + len);
    if (b) {
        b->refs = 1;
        memcpy(b->data, data, len);
    }
    return b;
}

static void s_sendbuf_unref(s_sendbuf_t *b)
{
    if (b && --b->refs == 0)
        free(b);
}

void fleet_send_data_free(uint8_t *data)
{
    if (data)
        s_sendbuf_unref((s_sendbuf_t *) (void *) (data - offsetof(s_sendbuf_t, data)));
}

/* Queues buf's message for address. */
static void s_emit_send(fleet_t *f, const char *address, uint32_t wire_type, s_sendbuf_t *buf,
                        size_t len)
{
    if (!address || !address[0] || len == 0)
        return;
    fleet_out_t *o = s_out(f, FOUT_SEND);
    if (!o)
        return;
    size_t alen = strnlen(address, FLEET_ADDRESS_MAX);
    memcpy(o->address, address, alen);
    o->address[alen] = '\0';
    o->wire_type = wire_type;
    o->data = buf->data;
    o->len = len;
    buf->refs++;
}

/* ------------------------------------------------------------------ */
/* change feed                                                        */

typedef struct {
    uint32_t *seq;
    uint32_t *prev, *next;
} s_link_t;

static s_link_t s_link(const fleet_t *f, uint32_t ref)
{
    if (ref & S_DOC_BIT) {
        s_doc_t *d = &f->docs[ref & ~S_DOC_BIT];
        return (s_link_t){&d->seq, &d->prev, &d->next};
    }
    s_plan_t *p = f->plans[ref >> S_PLAN_SHIFT];
    uint32_t i = ref & S_INDEX_MASK;
    return (s_link_t){&p->seq[i], &p->t[i].prev, &p->t[i].next};
}

static uint64_t s_seq_of(const fleet_t *f, uint32_t ref)
{
    return *s_link(f, ref).seq;
}

/* Sequence numbers are stored in 32 bits. When they run out, the feed is
 * numbered again from 1 in its order under a new feed id: pullers name the
 * old id, so they are served from the start once (or told they hold the
 * same state), as after a restart. */
static void s_feed_renumber(fleet_t *f)
{
    uint32_t n = 0;
    for (uint32_t r = f->feed_head; r != S_NONE; r = *s_link(f, r).next)
        *s_link(f, r).seq = ++n;
    f->seq = n;
    f->feed_id = rng_next(&f->rng) | 1u;
    for (uint32_t k = 0; k < S_CURSOR_CACHE; k++)
        f->cc[k].ref = S_NONE;
}

/* Moves ref to the tail of the feed with a new sequence number. */
static void s_feed_touch(fleet_t *f, uint32_t ref)
{
    if (f->seq >= S_SEQ_MAX)
        s_feed_renumber(f);
    s_link_t l = s_link(f, ref);
    if (*l.seq != 0) {
        if (*l.prev != S_NONE)
            *s_link(f, *l.prev).next = *l.next;
        else
            f->feed_head = *l.next;
        if (*l.next != S_NONE)
            *s_link(f, *l.next).prev = *l.prev;
        else
            f->feed_tail = *l.prev;
    }
    *l.seq = ++f->seq;
    *l.prev = f->feed_tail;
    *l.next = S_NONE;
    if (f->feed_tail != S_NONE)
        *s_link(f, f->feed_tail).next = ref;
    else
        f->feed_head = ref;
    f->feed_tail = ref;
}

/* The first item changed after `since`, or S_NONE. */
static uint32_t s_feed_after(const fleet_t *f, uint64_t since)
{
    if (f->feed_head == S_NONE || since >= f->seq)
        return S_NONE;
    if (since < s_seq_of(f, f->feed_head))
        return f->feed_head;
    for (uint32_t k = 0; k < S_CURSOR_CACHE; k++)
        if (f->cc[k].seq == since && f->cc[k].ref != S_NONE && s_seq_of(f, f->cc[k].ref) == since)
            return *s_link(f, f->cc[k].ref).next;
    uint32_t r = f->feed_tail;
    for (;;) {
        uint32_t prev = *s_link(f, r).prev;
        if (prev == S_NONE || s_seq_of(f, prev) <= since)
            return r;
        r = prev;
    }
}

/* ------------------------------------------------------------------ */
/* peers and sending                                                  */

/* Picks up to k distinct live peers (all when fewer) into out (indices into
 * f->mem). Floyd's sampling: O(k^2), k <= S_MAX_FANOUT. */
static uint32_t s_pick_peers(fleet_t *f, uint32_t k, uint32_t *out)
{
    uint32_t n = f->n_live_peers;
    if (k >= n) {
        for (uint32_t i = 0; i < n; i++)
            out[i] = f->live_peers[i];
        return n;
    }
    uint32_t picked[S_MAX_FANOUT];
    uint32_t m = 0;
    for (uint32_t j = n - k; j < n; j++) {
        uint32_t t = (uint32_t) rng_below(&f->rng, (uint64_t) j + 1);
        bool dup = false;
        for (uint32_t x = 0; x < m; x++)
            if (picked[x] == t)
                dup = true;
        picked[m++] = dup ? j : t;
    }
    for (uint32_t i = 0; i < m; i++)
        out[i] = f->live_peers[picked[i]];
    return m;
}

static void s_scale_push(fleet_t *f);

/* Finishes w and queues it for address (the writer stays the caller's). */
static void s_send_addr(fleet_t *f, const char *address, wire_writer_t *w, uint32_t type)
{
    const uint8_t *data;
    size_t len;
    s_sendbuf_t *buf;
    if (!w || wire_writer_finish(w, &data, &len) != 0)
        return;
    if (!(buf = s_sendbuf_new(data, len))) {
        f->stats.outputs_dropped++;
        return;
    }
    s_emit_send(f, address, type, buf, len);
    s_sendbuf_unref(buf);
}

static void s_send_to(fleet_t *f, const s_member_t *m, wire_writer_t *w, uint32_t type)
{
    s_send_addr(f, m->pub.address, w, type);
}

/* Finishes *w and queues it for each of the peers (indices into mem);
 * destroys the writer. Returns true when it was sent. */
static bool s_send_peers(fleet_t *f, wire_writer_t **w, uint32_t type, const uint32_t *peers,
                         uint32_t n_peers)
{
    const uint8_t *data;
    size_t len;
    s_sendbuf_t *buf = NULL;
    bool ok = *w && wire_writer_finish(*w, &data, &len) == 0;
    if (ok && n_peers > 0 && !(buf = s_sendbuf_new(data, len))) {
        f->stats.outputs_dropped += n_peers;
        ok = false;
    }
    for (uint32_t k = 0; buf && k < n_peers; k++)
        s_emit_send(f, f->mem[peers[k]].pub.address, type, buf, len);
    s_sendbuf_unref(buf);
    wire_writer_destroy(w);
    return ok;
}

/* A 32-bit digest of what an announcement says of a record (the fields
 * progress_compare orders by, the holder cut to S_HAVE_HOLDER bytes).
 * Version 2 announcements carry it: it is part of the wire format, the
 * same on every host and in every build that speaks version 2. */
static uint32_t s_version_digest(const progress_rec_t *r)
{
    uint64_t h = rng_mix64(((uint64_t) r->epoch << 32 | r->generation) ^ 0x243f6a8885a308d3ull);
    h = rng_mix64(h ^ ((uint64_t) r->attempt << 32 | (uint32_t) r->state << 8 | r->step));
    h = rng_mix64(h ^ wire_get_le(r->holder, 8));
    h = rng_mix64(h ^ r->finished_ms);
    return (uint32_t) (h >> 32);
}

/* One record in wire version 2 ("rb"): S_REC_HEAD bytes little-endian, then
 * its error text (no NUL):
 *    0 plan (u16, its position in the message's "plans")
 *    2 hop, 3 state, 4 step, 5 error length (u8 each), 6 zero (u16)
 *    8 index, 12 epoch, 16 generation, 20 attempt, 24 exit code (two's
 *      complement), 28 duration_ms (u32 each)
 *   32 started_ms, 40 finished_ms (u64 each), 48 holder (32 bytes).
 * Returns the bytes written (b holds S_REC_HEAD + PROGRESS_ERROR_MAX). */
static size_t s_rec_put(uint8_t *b, uint32_t plan, uint32_t hop, uint32_t index,
                        const progress_rec_t *r)
{
    size_t elen = strnlen(r->error, PROGRESS_ERROR_MAX);
    b[0] = (uint8_t) plan;
    b[1] = (uint8_t) (plan >> 8);
    b[2] = (uint8_t) hop;
    b[3] = r->state;
    b[4] = r->step;
    b[5] = (uint8_t) elen;
    b[6] = b[7] = 0;
    wire_put_le(b + 8, index, 4);
    wire_put_le(b + 12, r->epoch, 4);
    wire_put_le(b + 16, r->generation, 4);
    wire_put_le(b + 20, r->attempt, 4);
    wire_put_le(b + 24, (uint32_t) r->exit_code, 4);
    wire_put_le(b + 28, r->duration_ms, 4);
    wire_put_le(b + 32, r->started_ms, 8);
    wire_put_le(b + 40, r->finished_ms, 8);
    memcpy(b + 48, r->holder, PROGRESS_ID_LEN);
    memcpy(b + S_REC_HEAD, r->error, elen);
    return S_REC_HEAD + elen;
}

/* Reads the record at b (left bytes to the block's end). Returns its size,
 * or 0 when it is malformed: cut short, a state or hop out of range, an
 * error text over PROGRESS_ERROR_MAX or holding a NUL. The plan position is
 * the caller's to check. */
static size_t s_rec_get(const uint8_t *b, size_t left, uint32_t *plan, uint32_t *hop,
                        uint32_t *index, progress_rec_t *r)
{
    if (left < S_REC_HEAD)
        return 0;
    size_t elen = b[5];
    if (elen > PROGRESS_ERROR_MAX || left - S_REC_HEAD < elen || b[3] >= TARGET_STATE_COUNT ||
        b[2] > S_MAX_HOPS || (elen > 0 && memchr(b + S_REC_HEAD, '\0', elen)))
        return 0;
    *plan = (uint32_t) b[0] | (uint32_t) b[1] << 8;
    *hop = b[2];
    *index = (uint32_t) wire_get_le(b + 8, 4);
    r->state = b[3];
    r->step = b[4];
    r->epoch = (uint32_t) wire_get_le(b + 12, 4);
    r->generation = (uint32_t) wire_get_le(b + 16, 4);
    r->attempt = (uint32_t) wire_get_le(b + 20, 4);
    r->exit_code = (int32_t) (uint32_t) wire_get_le(b + 24, 4);
    r->duration_ms = (uint32_t) wire_get_le(b + 28, 4);
    r->started_ms = wire_get_le(b + 32, 8);
    r->finished_ms = wire_get_le(b + 40, 8);
    memcpy(r->holder, b + 48, PROGRESS_ID_LEN);
    memcpy(r->error, b + S_REC_HEAD, elen);
    r->error[elen] = '\0';
    return S_REC_HEAD + elen;
}

/* Writes "plans" and "rb" (version 2) for the records of refs, hops[k]
 * being ref k's hop (NULL: `hop` for all). The refs name at most
 * S_REC_PLANS plans. */
static void s_pack_records(wire_writer_t *w, const fleet_t *f, const uint32_t *refs,
                           const uint8_t *hops, uint32_t n, uint32_t hop)
{
    uint32_t slots[S_REC_PLANS], n_plans = 0;
    size_t total = 0;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t slot = refs[k] >> S_PLAN_SHIFT, x = 0;
        while (x < n_plans && slots[x] != slot)
            x++;
        assert(x < S_REC_PLANS);
        if (x == n_plans)
            slots[n_plans++] = slot;
        total += S_REC_HEAD +
                 strnlen(f->plans[slot]->t[refs[k] & S_INDEX_MASK].rec.error, PROGRESS_ERROR_MAX);
    }
    msgpack_packer *pk = wire_writer_packer(w);
    wire_put_key(w, "plans");
    msgpack_pack_array(pk, n_plans);
    for (uint32_t x = 0; x < n_plans; x++)
        msgpack_pack_bin_with_body(pk, f->plans[slots[x]]->id, FLEET_ID_LEN);
    wire_put_key(w, "rb");
    msgpack_pack_bin(pk, total);
    uint8_t e[S_REC_HEAD + PROGRESS_ERROR_MAX];
    for (uint32_t k = 0, x = 0; k < n; k++) {
        uint32_t slot = refs[k] >> S_PLAN_SHIFT;
        if (slots[x] != slot)
            for (x = 0; slots[x] != slot; x++)
                ;
        uint32_t i = refs[k] & S_INDEX_MASK;
        size_t len = s_rec_put(e, x, hops ? hops[k] : hop, i, &f->plans[slot]->t[i].rec);
        msgpack_pack_bin_body(pk, e, len);
    }
}

/* Whether a ref's plan is among the n_plans in slots, else adds it when
 * there is room. False: a new plan and no room. */
static bool s_plan_room(uint32_t *slots, uint32_t *n_plans, uint32_t ref)
{
    uint32_t slot = ref >> S_PLAN_SHIFT;
    for (uint32_t x = 0; x < *n_plans; x++)
        if (slots[x] == slot)
            return true;
    if (*n_plans == S_REC_PLANS)
        return false;
    slots[(*n_plans)++] = slot;
    return true;
}

static size_t s_item_bytes(const s_target_t *t)
{
    return S_ITEM_BYTES + strnlen(t->rec.error, PROGRESS_ERROR_MAX);
}

static size_t s_ref_bytes(const fleet_t *f, uint32_t ref)
{
    if (ref & S_DOC_BIT)
        return S_DOC_ITEM_BYTES;
    return s_item_bytes(&f->plans[ref >> S_PLAN_SHIFT]->t[ref & S_INDEX_MASK]);
}

/* An item; `hop` (S_NO_HOP: none) is its own hop when it differs from the
 * message's. */
static void s_pack_item(msgpack_packer *pk, const fleet_t *f, uint32_t ref, uint32_t hop)
{
    const s_plan_t *p = f->plans[ref >> S_PLAN_SHIFT];
    uint32_t i = ref & S_INDEX_MASK;
    msgpack_pack_map(pk, hop == S_NO_HOP ? 3 : 4);
    if (hop != S_NO_HOP) {
        s_pack_key(pk, "h");
        msgpack_pack_uint32(pk, hop);
    }
    s_pack_key(pk, "p");
    msgpack_pack_bin_with_body(pk, p->id, FLEET_ID_LEN);
    s_pack_key(pk, "i");
    msgpack_pack_uint32(pk, i);
    s_pack_key(pk, "r");
    progress_pack(&p->t[i].rec, pk);
}

static void s_pack_doc(msgpack_packer *pk, const s_doc_t *d)
{
    msgpack_pack_map(pk, 3);
    s_pack_key(pk, "id");
    msgpack_pack_bin_with_body(pk, d->id, FLEET_ID_LEN);
    s_pack_key(pk, "kind");
    msgpack_pack_uint8(pk, d->kind);
    s_pack_key(pk, "size");
    msgpack_pack_uint64(pk, d->size);
}

/* The smallest of n hops in *min; true when they are not all equal (the
 * message then carries each one's own). */
static bool s_hops_mixed(const uint8_t *hops, uint32_t n, uint8_t *min)
{
    uint8_t lo = UINT8_MAX, hi = 0;
    for (uint32_t k = 0; k < n; k++) {
        if (hops[k] < lo)
            lo = hops[k];
        if (hops[k] > hi)
            hi = hops[k];
    }
    *min = lo;
    return n > 0 && lo != hi;
}

/* The n peers (indices into mem) in *sorted, those that read wire version
 * 2 first (*n2 of them): in `small` (S_MAX_FANOUT entries) when they fit,
 * else in an allocation the caller frees. False when out of memory. */
static bool s_peers_by_version(const fleet_t *f, const uint32_t *peers, uint32_t n, uint32_t *small,
                               uint32_t **sorted, uint32_t *n2)
{
    uint32_t *v = small;
    if (n > S_MAX_FANOUT && !(v = malloc((size_t) n * sizeof *v)))
        return false;
    uint32_t x = 0;
    for (uint32_t k = 0; k < n; k++)
        if (f->mem[peers[k]].pub.wire >= 2)
            v[x++] = peers[k];
    *n2 = x;
    for (uint32_t k = 0; k < n; k++)
        if (f->mem[peers[k]].pub.wire < 2)
            v[x++] = peers[k];
    *sorted = v;
    return true;
}

/* One PROGRESS message of the n records of refs at `version` (see
 * s_send_items), with the documents of their plans; queued for each of the
 * peers. Returns true when it was sent. */
static bool s_send_progress(fleet_t *f, uint32_t version, const uint32_t *refs, const uint8_t *hops,
                            uint32_t n, uint8_t hop, const s_doc_t *const *docs, uint32_t n_docs,
                            const uint32_t *peers, uint32_t n_peers)
{
    uint32_t fields = (version >= 2 ? 3 : 2) + (n_docs ? 1 : 0);
    wire_writer_t *w = wire_writer_new_version(version, WIRE_PROGRESS, f->self, fields);
    if (!w)
        return false;
    wire_put_u64(w, "hop", hop);
    msgpack_packer *pk = wire_writer_packer(w);
    if (version >= 2) {
        s_pack_records(w, f, refs, hops, n, hop);
    } else {
        wire_put_key(w, "items");
        msgpack_pack_array(pk, n);
        for (uint32_t k = 0; k < n; k++)
            s_pack_item(pk, f, refs[k], hops && hops[k] != hop ? hops[k] : S_NO_HOP);
    }
    if (n_docs) {
        wire_put_key(w, "docs");
        msgpack_pack_array(pk, n_docs);
        for (uint32_t k = 0; k < n_docs; k++)
            s_pack_doc(pk, docs[k]);
    }
    return s_send_peers(f, &w, WIRE_PROGRESS, peers, n_peers);
}

/* Sends the records of refs to each of the peers as PROGRESS messages
 * (batched by count, bytes and plans), hops[k] being ref k's hop (NULL:
 * `hop` for all). A message's hop is the smallest of its items'; an item
 * with another hop carries its own. Peers that read wire version 2 get the
 * records in binary ("rb"), older ones as maps ("items"). */
static void s_send_items(fleet_t *f, const uint32_t *refs, const uint8_t *hops, uint32_t n,
                         uint8_t hop, const uint32_t *peers, uint32_t n_peers)
{
    if (n == 0 || n_peers == 0)
        return;
    uint32_t small[S_MAX_FANOUT], *sorted, n2;
    if (!s_peers_by_version(f, peers, n_peers, small, &sorted, &n2))
        return; /* pulls carry them */
    uint32_t at = 0;
    while (at < n) {
        uint32_t cnt = 0, slots[S_REC_PLANS], n_plans = 0;
        size_t bytes = 0;
        while (at + cnt < n && cnt < FLEET_MAX_FEED_ITEMS) {
            size_t b = s_ref_bytes(f, refs[at + cnt]);
            if (cnt > 0 && bytes + b > S_BATCH_BYTES)
                break;
            if (!s_plan_room(slots, &n_plans, refs[at + cnt]))
                break;
            bytes += b;
            cnt++;
        }
        if (hops)
            s_hops_mixed(hops + at, cnt, &hop);
        /* the documents of the batch's plans go with it, so that a node
         * that lacks one fetches it from the sender at once instead of
         * keeping the records aside until an announcement or a pull */
        const s_doc_t *docs[S_HINT_DOCS];
        uint32_t n_docs = 0, last_slot = S_NONE;
        for (uint32_t k = 0; k < cnt; k++) {
            uint32_t slot = refs[at + k] >> S_PLAN_SHIFT;
            if (slot == last_slot)
                continue;
            last_slot = slot;
            const s_doc_t *d = s_doc(f, f->plans[slot]->id);
            bool dup = !d || d->state != S_DOC_HAVE;
            for (uint32_t x = 0; x < n_docs && !dup; x++)
                dup = docs[x] == d;
            if (!dup && n_docs < S_HINT_DOCS)
                docs[n_docs++] = d;
        }
        const uint8_t *batch_hops = hops ? hops + at : NULL;
        if (n2 > 0 &&
            s_send_progress(f, 2, refs + at, batch_hops, cnt, hop, docs, n_docs, sorted, n2))
            f->stats.records_out += cnt;
        if (n2 < n_peers && s_send_progress(f, 1, refs + at, batch_hops, cnt, hop, docs, n_docs,
                                            sorted + n2, n_peers - n2))
            f->stats.records_out += cnt;
        at += cnt;
    }
    if (sorted != small)
        free(sorted);
}

/* Rings of `elem`-byte elements (*buf, *head, *n used of *cap). s_ring_push
 * appends one, doubling the ring up to max, and returns where the caller
 * writes it (NULL when full or out of memory); s_ring_pop drops the head. */
static void *s_ring_push(void **buf, uint32_t *head, uint32_t *n, uint32_t *cap, size_t elem,
                         uint32_t max)
{
    if (*n == *cap) {
        if (*cap >= max)
            return NULL;
        uint32_t ncap = *cap ? *cap * 2 : 256;
        uint8_t *nb = malloc((size_t) ncap * elem);
        if (!nb)
            return NULL;
        for (uint32_t k = 0; k < *n; k++)
            memcpy(nb + (size_t) k * elem, (uint8_t *) *buf + (size_t) ((*head + k) % *cap) * elem,
                   elem);
        free(*buf);
        *buf = nb;
        *cap = ncap;
        *head = 0;
    }
    void *slot = (uint8_t *) *buf + (size_t) ((*head + *n) % *cap) * elem;
    (*n)++;
    return slot;
}

static void s_ring_pop(uint32_t *head, uint32_t *n, uint32_t cap)
{
    *head = (*head + 1) % cap;
    (*n)--;
}

static void s_push_queue(fleet_t *f, uint32_t ref, uint8_t hop)
{
    s_plan_t *p = f->plans[ref >> S_PLAN_SHIFT];
    uint32_t i = ref & S_INDEX_MASK;
    if (s_bit(p, S_BIT_QUEUED, i) || f->n_live_peers == 0)
        return; /* queued already, or nobody to push to: pulls carry it */
    s_push_t *e = s_ring_push((void **) &f->pq, &f->pq_head, &f->pq_n, &f->pq_cap, sizeof *f->pq,
                              S_MAX_PUSH_QUEUE);
    if (!e) {
        f->stats.push_dropped++;
        return;
    }
    *e = (s_push_t){ref, hop};
    s_bit_put(p, S_BIT_QUEUED, i, true);
}

/* ------------------------------------------------------------------ */
/* lazy push: announcements (HAVE) and requests (WANT)                */

static int s_get_u32(const msgpack_object *body, const char *key, uint32_t max, uint32_t *out);

/* One announced version, S_HAVE_ENTRY bytes little-endian: plan (u16, its
 * position in the message's "plans"), state (u8), step (u8), index, epoch,
 * generation, attempt (u32 each), the holder's first S_HAVE_HOLDER bytes,
 * finished_ms (u64): every field progress_compare orders by. */
static void s_have_put(uint8_t *b, uint32_t plan, uint32_t index, const progress_rec_t *r)
{
    b[0] = (uint8_t) plan;
    b[1] = (uint8_t) (plan >> 8);
    b[2] = r->state;
    b[3] = r->step;
    wire_put_le(b + 4, index, 4);
    wire_put_le(b + 8, r->epoch, 4);
    wire_put_le(b + 12, r->generation, 4);
    wire_put_le(b + 16, r->attempt, 4);
    memcpy(b + 20, r->holder, S_HAVE_HOLDER);
    wire_put_le(b + 28, r->finished_ms, 8);
}

/* Reads an entry into *r (key fields only; the holder's tail is zero). */
static void s_have_get(const uint8_t *b, uint32_t *plan, uint32_t *index, progress_rec_t *r)
{
    *plan = (uint32_t) b[0] | (uint32_t) b[1] << 8;
    r->state = b[2];
    r->step = b[3];
    *index = (uint32_t) wire_get_le(b + 4, 4);
    r->epoch = (uint32_t) wire_get_le(b + 8, 4);
    r->generation = (uint32_t) wire_get_le(b + 12, 4);
    r->attempt = (uint32_t) wire_get_le(b + 16, 4);
    memset(r->holder, 0, PROGRESS_ID_LEN);
    memcpy(r->holder, b + 20, S_HAVE_HOLDER);
    r->finished_ms = wire_get_le(b + 28, 8);
}

/* Version 2: S_HAVE_ENTRY2 bytes little-endian: plan (u16, its position in
 * the message's "plans"), zero (u16), index, and the digest of the version
 * (s_version_digest), u32 each. */
static void s_have_put2(uint8_t *b, uint32_t plan, uint32_t index, uint32_t digest)
{
    b[0] = (uint8_t) plan;
    b[1] = (uint8_t) (plan >> 8);
    b[2] = b[3] = 0;
    wire_put_le(b + 4, index, 4);
    wire_put_le(b + 8, digest, 4);
}

/* One announcement of n entries at `version` ("v": S_HAVE_ENTRY-byte
 * versions; version 2, "d": S_HAVE_ENTRY2-byte digests); hops[k] is entry
 * k's hop. The message's hop is the smallest; "hops" (a byte per entry)
 * goes with it only when they differ. */
static void s_have_flush(fleet_t *f, uint32_t version, const uint8_t (*plans)[FLEET_ID_LEN],
                         uint32_t n_plans, const uint8_t *entries, const uint8_t *hops, uint32_t n,
                         const uint32_t *peers, uint32_t n_peers)
{
    uint8_t hop;
    bool mixed = s_hops_mixed(hops, n, &hop);
    wire_writer_t *w = wire_writer_new_version(version, WIRE_HAVE, f->self, mixed ? 6 : 5);
    if (!w)
        return;
    wire_put_u64(w, "k", 0);
    wire_put_u64(w, "hop", hop);
    wire_put_str(w, "a", f->self_address);
    wire_put_key(w, "plans");
    msgpack_packer *pk = wire_writer_packer(w);
    msgpack_pack_array(pk, n_plans);
    for (uint32_t k = 0; k < n_plans; k++)
        msgpack_pack_bin_with_body(pk, plans[k], FLEET_ID_LEN);
    if (version >= 2)
        wire_put_bin(w, "d", entries, (size_t) n * S_HAVE_ENTRY2);
    else
        wire_put_bin(w, "v", entries, (size_t) n * S_HAVE_ENTRY);
    if (mixed)
        wire_put_bin(w, "hops", hops, n);
    if (s_send_peers(f, &w, WIRE_HAVE, peers, n_peers))
        f->stats.haves_out += n;
}

/* Announces the versions of target refs (HAVE) at `version` to each of the
 * peers, hops[k] being ref k's hop. A version 2 entry is read from the
 * digests alone, not the records. */
static void s_send_have_version(fleet_t *f, uint32_t version, const uint32_t *refs,
                                const uint8_t *hops, uint32_t n, const uint32_t *peers,
                                uint32_t n_peers)
{
    size_t esize = version >= 2 ? S_HAVE_ENTRY2 : S_HAVE_ENTRY;
    uint32_t cap = n < FLEET_MAX_FEED_ITEMS ? n : FLEET_MAX_FEED_ITEMS;
    uint8_t *entries = malloc((size_t) cap * (esize + 1));
    if (!entries)
        return; /* the eager peers and pulls carry them */
    uint8_t *entry_hops = entries + (size_t) cap * esize;
    uint8_t plans[S_HAVE_PLANS][FLEET_ID_LEN];
    uint32_t slots[S_HAVE_PLANS];
    uint32_t n_plans = 0, cnt = 0;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t slot = refs[k] >> S_PLAN_SHIFT;
        uint32_t x = 0;
        while (x < n_plans && slots[x] != slot)
            x++;
        if (cnt == cap || (x == n_plans && n_plans == S_HAVE_PLANS)) {
            s_have_flush(f, version, (const uint8_t(*)[FLEET_ID_LEN]) plans, n_plans, entries,
                         entry_hops, cnt, peers, n_peers);
            cnt = n_plans = x = 0;
        }
        if (x == n_plans) {
            slots[n_plans] = slot;
            memcpy(plans[n_plans++], f->plans[slot]->id, FLEET_ID_LEN);
        }
        const s_plan_t *p = f->plans[slot];
        uint32_t i = refs[k] & S_INDEX_MASK;
        entry_hops[cnt] = hops[k];
        uint8_t *e = entries + (size_t) cnt++ * esize;
        if (version >= 2)
            s_have_put2(e, x, i, p->vd[i]);
        else
            s_have_put(e, x, i, &p->t[i].rec);
    }
    s_have_flush(f, version, (const uint8_t(*)[FLEET_ID_LEN]) plans, n_plans, entries, entry_hops,
                 cnt, peers, n_peers);
    free(entries);
}

/* Announces the versions of target refs (HAVE) to each of the peers, in the
 * form each reads, hops[k] being ref k's hop. */
static void s_send_have(fleet_t *f, const uint32_t *refs, const uint8_t *hops, uint32_t n,
                        const uint32_t *peers, uint32_t n_peers)
{
    if (n == 0 || n_peers == 0)
        return;
    uint32_t small[S_MAX_FANOUT], *sorted, n2;
    if (!s_peers_by_version(f, peers, n_peers, small, &sorted, &n2))
        return; /* the eager peers and pulls carry them */
    if (n2 > 0)
        s_send_have_version(f, 2, refs, hops, n, sorted, n2);
    if (n2 < n_peers)
        s_send_have_version(f, 1, refs, hops, n, sorted + n2, n_peers - n2);
    if (sorted != small)
        free(sorted);
}

static uint64_t s_want_ms(const fleet_t *f)
{
    return 2ull * f->cfg.push_interval_ms + 50;
}

/* Marks target i of p as asked for until the answer is due. Returns false
 * when it already is. */
static bool s_want_mark(fleet_t *f, s_plan_t *p, uint32_t i, uint64_t now)
{
    if (s_bit(p, S_BIT_WANTED, i))
        return false;
    /* a full ring asks without the mark: a duplicate answer at worst */
    s_want_t *e = s_ring_push((void **) &f->wq, &f->wq_head, &f->wq_n, &f->wq_cap, sizeof *f->wq,
                              S_MAX_WANTS);
    if (e) {
        *e = (s_want_t){s_ref(p->slot, i), now + s_want_ms(f)};
        s_bit_put(p, S_BIT_WANTED, i, true);
    }
    return true;
}

static void s_want_expire(fleet_t *f, uint64_t now)
{
    while (f->wq_n > 0 && f->wq[f->wq_head].due <= now) {
        uint32_t ref = f->wq[f->wq_head].ref;
        s_bit_put(f->plans[ref >> S_PLAN_SHIFT], S_BIT_WANTED, ref & S_INDEX_MASK, false);
        s_ring_pop(&f->wq_head, &f->wq_n, f->wq_cap);
    }
}

/* Asks `address` for the records of `indices` of a plan (WANT), each to
 * come at its announced hop (hops[k]; "hs" when they differ). */
static void s_send_want(fleet_t *f, const char *address, const uint8_t *plan,
                        const uint8_t *indices, const uint8_t *hops, uint32_t n)
{
    uint8_t hop;
    bool mixed = s_hops_mixed(hops, n, &hop);
    wire_writer_t *w = wire_writer_new(WIRE_HAVE, f->self, mixed ? 5 : 4);
    if (!w)
        return;
    wire_put_u64(w, "k", 1);
    wire_put_u64(w, "hop", hop);
    wire_put_bin(w, "p", plan, FLEET_ID_LEN);
    wire_put_bin(w, "i", indices, (size_t) n * 4);
    if (mixed)
        wire_put_bin(w, "hs", hops, n);
    s_send_addr(f, address, w, WIRE_HAVE);
    wire_writer_destroy(&w);
    f->stats.wants_out += n;
}

/* An optional bin of one hop per entry (n of them), each <= S_MAX_HOPS;
 * *hops is NULL when the field is absent. */
static int s_get_hops(const msgpack_object *body, const char *key, uint32_t n, const uint8_t **hops)
{
    size_t len;
    *hops = NULL;
    if (!wire_map_get(body, key))
        return 0;
    if (wire_get_bin(body, key, hops, &len, FLEET_MAX_FEED_ITEMS) != 0 || len != n)
        return GG_EMALFORMED;
    for (uint32_t k = 0; k < n; k++)
        if ((*hops)[k] > S_MAX_HOPS)
            return GG_EMALFORMED;
    return 0;
}

/* HAVE: asks the sender for every announced version newer than ours (and
 * for the records of plans not known yet, which wait as orphans for their
 * document). One WANT per plan named. */
/* Whether announcement entry e says target i of p has a version this node
 * lacks. Version 2 names only the version's digest: any other digest is
 * asked for (an older version is rare and merges as nothing). Version 1
 * names the version: asked for when newer. */
static bool s_have_newer(const s_plan_t *p, uint32_t i, const uint8_t *e, bool v2)
{
    if (v2)
        return (uint32_t) wire_get_le(e + 8, 4) != p->vd[i];
    progress_rec_t r;
    uint32_t plan, index;
    s_have_get(e, &plan, &index, &r);
    return p->vd[i] != s_version_digest(&r) &&
           progress_compare_prefix(&r, &p->t[i].rec, S_HAVE_HOLDER) > 0;
}

static int s_on_have_announce(fleet_t *f, uint64_t now, const wire_msg_t *msg,
                              const s_member_t *from)
{
    const msgpack_object *body = &msg->body;
    bool v2 = msg->version >= 2;
    size_t esize = v2 ? S_HAVE_ENTRY2 : S_HAVE_ENTRY;
    uint32_t hop;
    const msgpack_object_array *plans;
    const uint8_t *v, *hops;
    size_t len;
    char address[FLEET_ADDRESS_MAX + 1];
    if (s_get_u32(body, "hop", S_MAX_HOPS, &hop) != 0 ||
        wire_get_str(body, "a", address, sizeof address) != 0 ||
        wire_get_array(body, "plans", &plans, S_HAVE_PLANS) != 0 ||
        wire_get_bin(body, v2 ? "d" : "v", &v, &len, (size_t) FLEET_MAX_FEED_ITEMS * esize) != 0 ||
        len % esize != 0 || s_get_hops(body, "hops", (uint32_t) (len / esize), &hops) != 0)
        return GG_EMALFORMED;
    uint8_t ids[S_HAVE_PLANS][FLEET_ID_LEN];
    for (uint32_t k = 0; k < plans->size; k++)
        if (wire_obj_bin_exact(&plans->ptr[k], ids[k], FLEET_ID_LEN) != 0)
            return GG_EMALFORMED;
    uint32_t n = (uint32_t) (len / esize);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t plan = (uint32_t) v[(size_t) k * esize] | (uint32_t) v[(size_t) k * esize + 1]
                                                               << 8;
        if (plan >= plans->size)
            return GG_EMALFORMED;
    }
    f->stats.haves_in += n;
    /* the sender's own address, for a sender not in this node's view yet */
    const char *reply = from && from->pub.address[0] ? from->pub.address : address;
    if (!reply[0] || n == 0)
        return 0; /* nobody to ask */
    uint8_t *want = malloc((size_t) n * 5);
    if (!want)
        return 0;
    uint8_t *want_hops = want + (size_t) n * 4;
    /* each version is weighed first against our digest of the record, likely
     * out of the cache: ask for them all before the first is read */
    s_plan_t *known[S_HAVE_PLANS];
    for (uint32_t x = 0; x < plans->size; x++)
        known[x] = s_plan(f, ids[x]);
    for (uint32_t k = 0; k < n; k++) {
        const uint8_t *e = v + (size_t) k * esize;
        const s_plan_t *p = known[(uint32_t) e[0] | (uint32_t) e[1] << 8];
        uint32_t i = (uint32_t) wire_get_le(e + 4, 4); /* the index, in both forms */
        if (p && i < p->n)
            __builtin_prefetch(&p->vd[i]);
    }
    for (uint32_t x = 0; x < plans->size; x++) {
        s_plan_t *p = known[x];
        uint32_t m = 0;
        for (uint32_t k = 0; k < n; k++) {
            const uint8_t *e = v + (size_t) k * esize;
            if (((uint32_t) e[0] | (uint32_t) e[1] << 8) != x)
                continue; /* another plan's entry */
            uint32_t i = (uint32_t) wire_get_le(e + 4, 4);
            if (p) {
                if (i >= p->n) {
                    f->stats.malformed++;
                    continue;
                }
                if (!s_have_newer(p, i, e, v2) || !s_want_mark(f, p, i, now))
                    continue;
            } else if (i >= FLEET_MAX_TARGETS) {
                f->stats.malformed++;
                continue;
            }
            want_hops[m] = hops ? hops[k] : (uint8_t) hop;
            wire_put_le(want + (size_t) m++ * 4, i, 4);
        }
        if (m > 0)
            s_send_want(f, reply, ids[x], want, want_hops, m);
    }
    free(want);
    return 0;
}

/* WANT: sends the asked records of a known plan back as PROGRESS at the
 * announcement's hop, as if they had been pushed. */
static int s_on_have_want(fleet_t *f, const msgpack_object *body, const s_member_t *from)
{
    uint32_t hop;
    uint8_t id[FLEET_ID_LEN];
    const uint8_t *v, *hops;
    size_t len;
    if (s_get_u32(body, "hop", S_MAX_HOPS, &hop) != 0 ||
        wire_get_bin_exact(body, "p", id, FLEET_ID_LEN) != 0 ||
        wire_get_bin(body, "i", &v, &len, (size_t) FLEET_MAX_FEED_ITEMS * 4) != 0 || len % 4 != 0 ||
        s_get_hops(body, "hs", (uint32_t) (len / 4), &hops) != 0)
        return GG_EMALFORMED;
    s_plan_t *p = s_plan(f, id);
    if (!p || !from || !from->pub.address[0] || len == 0)
        return 0;
    uint32_t n = (uint32_t) (len / 4), m = 0;
    uint32_t *refs = malloc((size_t) n * (sizeof *refs + 1));
    if (!refs)
        return 0;
    uint8_t *ref_hops = (uint8_t *) (refs + n);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = (uint32_t) wire_get_le(v + (size_t) k * 4, 4);
        if (i < p->n) {
            ref_hops[m] = hops ? hops[k] : (uint8_t) hop;
            refs[m++] = s_ref(p->slot, i);
        }
    }
    uint32_t to = (uint32_t) (from - f->mem);
    if (m > 0)
        s_send_items(f, refs, ref_hops, m, 0, &to, 1);
    free(refs);
    return m == n ? 0 : GG_EMALFORMED;
}

static int s_on_have(fleet_t *f, uint64_t now, const wire_msg_t *msg, const s_member_t *from)
{
    uint32_t k;
    if (s_get_u32(&msg->body, "k", 1, &k) != 0)
        return GG_EMALFORMED;
    return k == 0 ? s_on_have_announce(f, now, msg, from) : s_on_have_want(f, &msg->body, from);
}

/* One push round: up to S_PUSH_MSGS messages' worth of queued changes,
 * grouped by hop, to push_fanout random live peers: push_eager of them get
 * the records, the others an announcement of the versions (lazy push). */
static void s_push_round(fleet_t *f, uint64_t now)
{
    uint32_t take = f->pq_n;
    if (take > S_PUSH_MSGS * FLEET_MAX_FEED_ITEMS)
        take = S_PUSH_MSGS * FLEET_MAX_FEED_ITEMS;
    uint32_t *refs = malloc(((size_t) take + 1) * sizeof *refs);
    uint8_t *hops = malloc((size_t) take + 1);
    uint32_t peers[S_MAX_FANOUT];
    uint32_t n_peers = s_pick_peers(f, f->push_fanout, peers);

    f->push_at = now + f->cfg.push_interval_ms;
    for (uint32_t k = 0; k < take; k++) {
        s_push_t e = f->pq[f->pq_head];
        s_ring_pop(&f->pq_head, &f->pq_n, f->pq_cap);
        s_bit_put(f->plans[e.ref >> S_PLAN_SHIFT], S_BIT_QUEUED, e.ref & S_INDEX_MASK, false);
        if (refs && hops) {
            refs[k] = e.ref;
            hops[k] = e.hop;
        }
    }
    if (!refs || !hops) {
        f->stats.push_dropped += take;
        goto out;
    }
    /* the first n_eager peers (a random choice) get the records, the others
     * an announcement of their versions */
    uint32_t n_eager =
        f->cfg.push_eager && f->cfg.push_eager < n_peers ? f->cfg.push_eager : n_peers;
    for (uint32_t k = 0; k < n_eager && n_eager < n_peers; k++) {
        uint32_t j = k + (uint32_t) rng_below(&f->rng, n_peers - k);
        uint32_t t = peers[k];
        peers[k] = peers[j];
        peers[j] = t;
    }
    /* in queue order, each item with its hop */
    s_send_items(f, refs, hops, take, 0, peers, n_eager);
    s_send_have(f, refs, hops, take, peers + n_eager, n_peers - n_eager);
out:
    free(refs);
    free(hops);
}

/* ------------------------------------------------------------------ */
/* plan state, shares and limits                                      */

static uint32_t s_share(uint32_t total, uint32_t m, int32_t rank)
{
    if (rank < 0 || m == 0)
        return 0;
    return total / m + ((uint32_t) rank < total % m ? 1u : 0u);
}

static bool s_auto_paused(const s_plan_t *p)
{
    if (p->canary_bad > 0)
        return true;
    if (p->ro.max_failure_ratio > 0) {
        uint32_t bad = p->counts[TARGET_FAILED] + p->counts[TARGET_NEEDS_REVIEW];
        uint32_t term = bad + p->counts[TARGET_SUCCEEDED] + p->counts[TARGET_SKIPPED];
        uint32_t min = p->canary_n > 10 ? p->canary_n : 10;
        if (term >= min && (double) bad > p->ro.max_failure_ratio * (double) term)
            return true;
    }
    return false;
}

static bool s_completed(const s_plan_t *p)
{
    return p->control != FLEET_PLAN_CANCELLED &&
           p->counts[TARGET_PENDING] + p->counts[TARGET_AWAITING_APPROVAL] +
                   p->counts[TARGET_RUNNING] + p->counts[TARGET_RETRY_WAIT] ==
               0;
}

static bool s_canary_active(const s_plan_t *p)
{
    return p->canary_n > 0 && p->canary_ok < p->canary_n;
}

/* Starts a new pass over the plan's pending targets (and resumes a
 * takeover pass a limit interrupted). */
static void s_wake(s_plan_t *p)
{
    p->exhausted = false;
    p->scan_left = s_canary_active(p) ? p->canary_n : p->n;
    if (p->take_owed)
        p->take_left = p->n;
}

/* A holder may have gone: a takeover pass is owed. */
static void s_wake_takeover(s_plan_t *p)
{
    p->take_owed = true;
    p->take_left = p->n;
}

static void s_wake_all(fleet_t *f, bool takeover)
{
    for (uint32_t k = 0; k < f->n_plans; k++) {
        if (takeover)
            s_wake_takeover(f->plans[k]);
        s_wake(f->plans[k]);
    }
}

static void s_plan_state(fleet_t *f, s_plan_t *p, bool emit)
{
    bool ap = s_auto_paused(p), done = s_completed(p);
    if (ap == p->st_auto_paused && done == p->st_completed)
        return;
    bool lifted = p->st_auto_paused && !ap;
    p->st_auto_paused = ap;
    p->st_completed = done;
    if (lifted)
        s_wake(p);
    if (emit) {
        fleet_out_t *o = s_out(f, FOUT_PLAN_STATE);
        if (o)
            memcpy(o->plan_id, p->id, FLEET_ID_LEN);
    }
}

static void s_count(const fleet_t *f, s_plan_t *p, uint32_t i, const progress_rec_t *r, bool add)
{
    uint32_t d = add ? 1u : UINT32_MAX; /* +1 or -1 modulo 2^32 */
    p->counts[r->state] += d;
    if (r->state == TARGET_PENDING && s_bit(p, S_BIT_GATED, i) && !s_bit(p, S_BIT_APPROVED, i))
        p->gated_waiting += d;
    if (r->state == TARGET_RUNNING && s_is_self(f, r->holder))
        p->running_self += d;
    if (i < p->canary_n) {
        if (r->state == TARGET_SUCCEEDED || r->state == TARGET_SKIPPED)
            p->canary_ok += d;
        if (r->state == TARGET_FAILED || r->state == TARGET_NEEDS_REVIEW)
            p->canary_bad += d;
    }
}

static void s_held_add(fleet_t *f, uint32_t ref)
{
    if (f->n_held == f->held_cap) {
        uint32_t cap = f->held_cap ? f->held_cap * 2 : 32;
        uint32_t *nh = realloc(f->held, (size_t) cap * sizeof *nh);
        if (!nh)
            return; /* only heartbeats and hand-backs miss it; records stay right */
        f->held = nh;
        f->held_cap = cap;
    }
    f->held[f->n_held++] = ref;
}

static void s_held_remove(fleet_t *f, uint32_t ref)
{
    for (uint32_t k = 0; k < f->n_held; k++)
        if (f->held[k] == ref) {
            f->held[k] = f->held[--f->n_held];
            return;
        }
}

static void s_set_mine(fleet_t *f, s_plan_t *p, uint32_t i, bool mine)
{
    if (s_bit(p, S_BIT_MINE, i) == mine)
        return;
    s_bit_put(p, S_BIT_MINE, i, mine);
    if (s_held_by_self(f, &p->t[i].rec)) {
        if (mine)
            f->n_restored--;
        else
            f->n_restored++;
    }
}

static bool s_lease_live(fleet_t *f, const uint8_t *holder, uint64_t now);

/* Replaces a target's record: counts, held set, feed, FOUT_RECORD (when
 * persist), derived plan state and claim wake-ups. */
static void s_set(fleet_t *f, s_plan_t *p, uint32_t i, const progress_rec_t *nr, bool persist,
                  uint64_t now)
{
    s_target_t *t = &p->t[i];
    progress_rec_t old = t->rec;
    bool was_held = s_held_by_self(f, &old);
    bool was_mine = s_bit(p, S_BIT_MINE, i);
    bool canary_before = s_canary_active(p);
    uint32_t ref = s_ref(p->slot, i);

    if (was_held && !was_mine)
        f->n_restored--;
    s_count(f, p, i, &old, false);
    f->state_sum += s_rec_hash(p->id_hash, i, nr) - s_rec_hash(p->id_hash, i, &old);
    t->rec = *nr;
    p->vd[i] = s_version_digest(nr);
    s_count(f, p, i, &t->rec, true);
    bool now_held = s_held_by_self(f, &t->rec);
    if (!now_held)
        s_bit_put(p, S_BIT_MINE, i, false);
    if (now_held && !s_bit(p, S_BIT_MINE, i))
        f->n_restored++;
    if (was_held && !now_held)
        s_held_remove(f, ref);
    else if (!was_held && now_held)
        s_held_add(f, ref);
    s_feed_touch(f, ref);
    if (persist)
        s_emit_target(f, FOUT_RECORD, p, i, 0);

    /* Claim opportunities this change may have created. */
    bool wake = false;
    uint8_t st = t->rec.state;
    if (st == TARGET_PENDING || st == TARGET_AWAITING_APPROVAL)
        wake = true;
    else if (s_held_state(st) && !s_is_self(f, t->rec.holder) &&
             !s_lease_live(f, t->rec.holder, now))
        s_wake_takeover(p);
    if (old.state == TARGET_RUNNING && st != TARGET_RUNNING &&
        (s_is_self(f, old.holder) || p->ro.max_parallel))
        wake = true;
    if (canary_before && !s_canary_active(p))
        wake = true; /* the canary phase is over: the whole plan opens */
    if (wake)
        s_wake(p);
    s_plan_state(f, p, persist);
}

/* ------------------------------------------------------------------ */
/* leases and ownership                                               */

static bool s_lease_live(fleet_t *f, const uint8_t *holder, uint64_t now)
{
    if (memcmp(holder, s_zero_id, FLEET_ID_LEN) == 0)
        return false;
    const s_member_t *m = s_member(f, holder);
    if (!m || (!m->pub.live && m->seen_live))
        return false; /* unknown, or its death was seen here */
    /* Live, or dead only in the view this node started with (never heard
     * from since): its lease stands until ttl + margin without news. */
    uint64_t expiry = m->last_heard + f->cfg.lease_ttl_ms + f->cfg.lease_margin_ms;
    if (now >= expiry)
        return false;
    if (expiry < f->lease_wake)
        f->lease_wake = expiry;
    return true;
}

static bool s_owned(fleet_t *f, s_plan_t *p, uint32_t i, uint64_t *work)
{
    if (f->self_rank < 0)
        return false;
    if (f->cfg.load_cap_milli)
        return p->owner_rank && p->assign_started && p->assign_sum == f->own_sum &&
               p->assign_next == p->n && p->owner_rank[i] == (uint32_t) f->self_rank;
    if (s_bit(p, S_BIT_OWN_KNOWN, i))
        return s_bit(p, S_BIT_OWN_SELF, i);
    size_t scored;
    bool own =
        rendezvous_is_owner(f->own_seeds, f->n_own, p->t[i].key, (size_t) f->self_rank, &scored);
    s_bit_put(p, S_BIT_OWN_KNOWN, i, true);
    s_bit_put(p, S_BIT_OWN_SELF, i, own);
    *work += scored / S_OWNER_COST_DIV;
    return own;
}

static bool s_plan_ready(const fleet_t *f, const s_plan_t *p)
{
    return f->synced && (f->chain_done >= p->ready_chain || f->n_live_peers == 0);
}

/* Why the plan cannot claim now (true: blocked). Refills the rate bucket and
 * arms the token wake-up when it is empty. */
static bool s_plan_blocked(fleet_t *f, s_plan_t *p, uint64_t now)
{
    if (p->control != FLEET_PLAN_ACTIVE || p->st_auto_paused || !s_plan_ready(f, p))
        return true;
    if (f->self_rank < 0)
        return true;
    uint32_t m = f->n_own;
    /* the fleet-wide count is checked per claim (s_consider): a takeover of
     * a running target does not raise it */
    if (p->ro.max_parallel && p->running_self >= s_share(p->ro.max_parallel, m, f->self_rank))
        return true;
    if (p->ro.rate_per_minute) {
        uint32_t share = s_share(p->ro.rate_per_minute, m, f->self_rank);
        if (share == 0)
            return true;
        double cap = (double) share / 12.0;
        if (cap < 1.0)
            cap = 1.0;
        if (now > p->tokens_at) {
            p->tokens += (double) (now - p->tokens_at) * (double) share / 60000.0;
            p->tokens_at = now;
        }
        if (p->tokens > cap)
            p->tokens = cap;
        if (p->tokens < 1.0) {
            uint64_t wait = (uint64_t) ((1.0 - p->tokens) * 60000.0 / (double) share) + 1;
            f->token_wake = s_min(f->token_wake, now + wait);
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* claims                                                             */

/* Confirmation before running. While the owner set changes (a join, a
 * death, a fleet forming), two nodes may each see themselves as a target's
 * owner and claim it at the same epoch; the merge then keeps one claim (the
 * higher holder id) and the other node aborts. To keep the loser from having
 * started, a claim made within s_settle_ms of an owner-set change runs only
 * after s_confirm_ms, long enough for the competing claim's push to arrive,
 * and only if it is still this node's then (s_start_due); otherwise it is
 * withdrawn (s_emit_abort). A settled fleet runs its claims at once. */
static uint64_t s_settle_ms(const fleet_t *f)
{
    return 4ull * f->cfg.push_interval_ms;
}

static uint64_t s_confirm_ms(const fleet_t *f)
{
    return 2ull * f->cfg.push_interval_ms + 50;
}

/* Returns true when the claim of target i at epoch waits for confirmation. */
static bool s_confirm_first(fleet_t *f, s_plan_t *p, uint32_t i, uint32_t epoch, uint64_t now)
{
    if (now >= f->owners_changed_at + s_settle_ms(f))
        return false;
    s_start_t *e = s_ring_push((void **) &f->sq, &f->sq_head, &f->sq_n, &f->sq_cap, sizeof *f->sq,
                               S_MAX_PUSH_QUEUE);
    if (!e)
        return false;
    *e = (s_start_t){s_ref(p->slot, i), epoch, now + s_confirm_ms(f)};
    s_bit_put(p, S_BIT_STARTING, i, true);
    f->n_starting++;
    f->stats.starts_delayed++;
    return true;
}

/* Runs the confirmed claims whose wait is over (FOUT_RUN). */
static void s_start_due(fleet_t *f, uint64_t now)
{
    while (f->sq_n > 0 && f->sq[f->sq_head].due <= now && s_out_room(f, 1)) {
        s_start_t e = f->sq[f->sq_head];
        s_ring_pop(&f->sq_head, &f->sq_n, f->sq_cap);
        s_plan_t *p = f->plans[e.ref >> S_PLAN_SHIFT];
        uint32_t i = e.ref & S_INDEX_MASK;
        const progress_rec_t *r = &p->t[i].rec;
        if (!s_bit(p, S_BIT_STARTING, i) || r->epoch != e.epoch)
            continue; /* withdrawn, or claimed again since: that claim has its own entry */
        s_bit_put(p, S_BIT_STARTING, i, false);
        f->n_starting--;
        if (s_bit(p, S_BIT_MINE, i) && r->state == TARGET_RUNNING && s_is_self(f, r->holder))
            s_emit_target(f, FOUT_RUN, p, i, 0);
    }
}

static void s_claim(fleet_t *f, s_plan_t *p, uint32_t i, int kind, uint64_t now)
{
    const progress_rec_t *cur = &p->t[i].rec;
    if (cur->epoch == UINT32_MAX || !s_out_room(f, 4))
        return; /* cannot be fenced any higher, or the driver is not polling */
    progress_rec_t nr = *cur;
    bool run = true;
    nr.epoch = cur->epoch + 1;
    memcpy(nr.holder, f->self, FLEET_ID_LEN);
    if (cur->state == TARGET_RETRY_WAIT) {
        if (p->ro.max_attempts && cur->attempt >= p->ro.max_attempts) {
            nr.state = TARGET_FAILED;
            run = false;
        } else {
            nr.state = TARGET_RUNNING;
            nr.attempt = cur->attempt + 1;
        }
    } else {
        nr.state = TARGET_RUNNING;
        if (nr.attempt == 0)
            nr.attempt = 1;
    }
    if (run) {
        nr.step = 0;
        nr.exit_code = 0;
        nr.started_ms = 0;
        nr.finished_ms = 0;
        nr.duration_ms = 0;
        nr.error[0] = '\0';
    }
    f->stats.claims++;
    if (kind == S_TAKEOVER)
        f->stats.takeovers++;
    else if (kind == S_RECLAIM)
        f->stats.reclaims++;
    s_set(f, p, i, &nr, true, now);
    s_push_queue(f, s_ref(p->slot, i), 0);
    if (run) {
        s_set_mine(f, p, i, true);
        if (!s_confirm_first(f, p, i, nr.epoch, now))
            s_emit_target(f, FOUT_RUN, p, i, 0);
        if (f->capacity > 0)
            f->capacity--;
        if (p->ro.rate_per_minute)
            p->tokens -= 1.0;
    }
}

/* The owner of target i for a takeover from `holder`, which is live in this
 * view but silent: the owner among the others, so that a hung node that
 * still answers probes cannot keep its own targets. */
/* Rank in the owner list of the owner of `key` among the members other than
 * the one whose seed is `without`; -1 when there is none. */
static int64_t s_owner_without(const fleet_t *f, uint64_t key, uint64_t without)
{
    uint64_t best_score = 0;
    int64_t best = -1;
    for (uint32_t k = 0; k < f->n_own; k++) {
        if (f->own_seeds[k] == without)
            continue;
        uint64_t sc = rendezvous_score(f->own_seeds[k], key);
        if (best < 0 || sc > best_score) {
            best = k;
            best_score = sc;
        }
    }
    return best;
}

static bool s_owned_without(fleet_t *f, s_plan_t *p, uint32_t i, const uint8_t *holder,
                            uint64_t *work)
{
    if (f->self_rank < 0)
        return false;
    *work += f->n_own / S_OWNER_COST_DIV;
    return s_owner_without(f, p->t[i].key, rendezvous_node_seed(holder)) == f->self_rank;
}

/* Looks at one target during a pass (the takeover pass looks only at held
 * targets): claims it when this node may. Returns 1 when it was taken, 0
 * when not, -1 when the fleet-wide max_parallel stops the pass. */
static int s_consider(fleet_t *f, s_plan_t *p, uint32_t i, bool takeover_pass, uint64_t now,
                      uint64_t *work)
{
    const progress_rec_t *r = &p->t[i].rec;
    const s_member_t *holder = NULL;
    int kind;
    switch (r->state) {
    case TARGET_PENDING:
    case TARGET_AWAITING_APPROVAL:
        if (takeover_pass || (s_bit(p, S_BIT_GATED, i) && !s_bit(p, S_BIT_APPROVED, i)))
            return 0;
        kind = S_FRESH;
        break;
    case TARGET_RUNNING:
    case TARGET_RETRY_WAIT:
        if (s_is_self(f, r->holder))
            return 0; /* ours (restored ones are s_reclaim's) */
        if (s_lease_live(f, r->holder, now))
            return 0;
        holder = s_member(f, r->holder);
        kind = S_TAKEOVER;
        break;
    default: return 0;
    }
    if (s_canary_active(p) && i >= p->canary_n)
        return 0;
    bool own = holder && holder->pub.live ? s_owned_without(f, p, i, r->holder, work)
                                          : s_owned(f, p, i, work);
    if (!own)
        return 0;
    if (p->ro.max_parallel && r->state != TARGET_RUNNING &&
        p->counts[TARGET_RUNNING] >= p->ro.max_parallel)
        return -1; /* woken when a running target ends */
    s_claim(f, p, i, kind, now);
    return 1;
}

/* Runs one kind of pass over a plan within the budget. Returns false when a
 * limit stopped it (capacity, share, rate). */
static bool s_pass(fleet_t *f, s_plan_t *p, bool takeover_pass, uint64_t now, uint64_t *work)
{
    uint32_t *left = takeover_pass ? &p->take_left : &p->scan_left;
    uint32_t *cursor = takeover_pass ? &p->take_cursor : &p->cursor;
    uint32_t candidates = takeover_pass
                              ? p->counts[TARGET_RUNNING] + p->counts[TARGET_RETRY_WAIT]
                              : p->counts[TARGET_PENDING] + p->counts[TARGET_AWAITING_APPROVAL];
    if (*left > 0 && candidates == 0) { /* nothing of that kind left in the plan */
        *left = 0;
        if (takeover_pass)
            p->take_owed = false;
        else
            p->exhausted = true;
    }
    while (*left > 0 && *work < FLEET_SCAN_BUDGET) {
        uint32_t range = takeover_pass || !s_canary_active(p) ? p->n : p->canary_n;
        if (*left > range)
            *left = range;
        if (*left == 0)
            break;
        if (*cursor >= range)
            *cursor = 0;
        uint32_t i = (*cursor)++;
        (*left)--;
        (*work)++;
        int rc = s_consider(f, p, i, takeover_pass, now, work);
        if (rc < 0 || (rc > 0 && (f->capacity == 0 || s_plan_blocked(f, p, now)))) {
            *left = 0; /* the event that lifts the limit wakes it again */
            return false;
        }
        if (*left == 0) {
            if (takeover_pass)
                p->take_owed = false;
            else
                p->exhausted = true;
        }
    }
    return true;
}

/* Claim scan: per plan a takeover pass (targets whose holder is gone come
 * first), then the pass over pending targets; FLEET_SCAN_BUDGET work units
 * per call across plans, resumed on the next call. */
/* Bounded load: (re)computes the plan's assignment for the current owner
 * list, within the work budget. True once it is complete. */
static bool s_assign(fleet_t *f, s_plan_t *p, uint64_t *work)
{
    if (!f->cfg.load_cap_milli)
        return true;
    if (f->n_own == 0)
        return false;
    if (!p->assign_started || p->assign_sum != f->own_sum || p->load_n != f->n_own) {
        if (!p->owner_rank) {
            p->owner_rank = calloc(p->n > 0 ? p->n : 1, sizeof *p->owner_rank);
            if (!p->owner_rank)
                return false;
        }
        if (p->load_n != f->n_own) {
            uint32_t *grown = realloc(p->load, (size_t) f->n_own * sizeof *grown);
            if (!grown)
                return false;
            p->load = grown;
            p->load_n = f->n_own;
        }
        memset(p->load, 0, (size_t) p->load_n * sizeof *p->load);
        p->assign_next = 0;
        p->assign_sum = f->own_sum;
        p->assign_cap = rendezvous_cap(p->n, f->n_own, f->cfg.load_cap_milli);
        p->assign_started = true;
    }
    while (p->assign_next < p->n && *work < FLEET_SCAN_BUDGET) {
        uint32_t i = p->assign_next++;
        p->owner_rank[i] = (uint32_t) rendezvous_owner_bounded(f->own_seeds, f->n_own, p->t[i].key,
                                                               p->assign_cap, p->load);
        *work += 1 + f->n_own / S_OWNER_COST_DIV;
    }
    return p->assign_next == p->n;
}

static void s_scan(fleet_t *f, uint64_t now)
{
    uint64_t work = 0;
    if (!f->synced || f->leaving || f->n_plans == 0 || !s_out_room(f, 4))
        return;
    for (uint32_t k = 0; k < f->n_plans && work < FLEET_SCAN_BUDGET && f->capacity > 0; k++) {
        uint32_t slot = (f->scan_plan + k) % f->n_plans;
        s_plan_t *p = f->plans[slot];
        if (p->scan_left == 0 && p->take_left == 0)
            continue;
        if (s_plan_blocked(f, p, now)) {
            p->scan_left = 0;
            p->take_left = 0;
            continue;
        }
        if (!s_assign(f, p, &work)) {
            f->scan_plan = slot; /* the assignment goes on next call */
            break;
        }
        if (!s_pass(f, p, true, now, &work) || !s_pass(f, p, false, now, &work)) {
            p->scan_left = 0;
            p->take_left = 0;
        }
        if (p->scan_left > 0 || p->take_left > 0)
            f->scan_plan = slot; /* resume here next call */
    }
    f->stats.scan_work += work;
}

/* Hands a held target back: {epoch+1, pending, no holder, attempt
 * unchanged}; FOUT_ABORT when this instance was running or waiting on it. */
static bool s_handback(fleet_t *f, s_plan_t *p, uint32_t i, uint64_t now)
{
    progress_rec_t nr = p->t[i].rec;
    if (nr.epoch == UINT32_MAX)
        return false;
    if (s_bit(p, S_BIT_MINE, i))
        s_emit_abort(f, p, i, FLEET_ABORT_LEAVING);
    nr.epoch++;
    nr.state = TARGET_PENDING;
    memset(nr.holder, 0, FLEET_ID_LEN);
    f->stats.handbacks++;
    s_set(f, p, i, &nr, true, now);
    return true;
}

/* Draining: executions finish, but what waits (retry_wait, restored) goes
 * back to the fleet. */
static void s_drain_waiting(fleet_t *f, uint64_t now)
{
    for (uint32_t k = f->n_held; k-- > 0;) {
        if (k >= f->n_held)
            continue;
        uint32_t ref = f->held[k];
        s_plan_t *p = f->plans[ref >> S_PLAN_SHIFT];
        uint32_t i = ref & S_INDEX_MASK;
        if (p->t[i].rec.state == TARGET_RUNNING && s_bit(p, S_BIT_MINE, i))
            continue;
        if (s_handback(f, p, i, now))
            s_push_queue(f, ref, 0);
    }
}

/* Restored targets held by self, once synced: re-claimed, cancelled or
 * handed back. */
static void s_reclaim(fleet_t *f, uint64_t now)
{
    for (uint32_t k = f->n_held; k-- > 0;) {
        if (k >= f->n_held)
            continue;
        uint32_t ref = f->held[k];
        s_plan_t *p = f->plans[ref >> S_PLAN_SHIFT];
        uint32_t i = ref & S_INDEX_MASK;
        if (s_bit(p, S_BIT_MINE, i))
            continue;
        progress_rec_t nr = p->t[i].rec;
        if (p->control == FLEET_PLAN_CANCELLED) {
            nr.state = TARGET_CANCELLED;
            s_set(f, p, i, &nr, true, now);
            s_push_queue(f, ref, 0);
        } else if (p->control == FLEET_PLAN_PAUSED || p->st_auto_paused || f->draining) {
            if (s_handback(f, p, i, now))
                s_push_queue(f, ref, 0);
        } else if (f->capacity > 0 && s_plan_ready(f, p)) {
            s_claim(f, p, i, S_RECLAIM, now);
        }
    }
}

/* True when s_reclaim has something it can do now. */
static bool s_reclaim_due(const fleet_t *f)
{
    for (uint32_t k = 0; k < f->n_held; k++) {
        const s_plan_t *p = f->plans[f->held[k] >> S_PLAN_SHIFT];
        uint32_t i = f->held[k] & S_INDEX_MASK;
        if (s_bit(p, S_BIT_MINE, i))
            continue;
        if (p->control != FLEET_PLAN_ACTIVE || p->st_auto_paused || f->draining ||
            (f->capacity > 0 && s_plan_ready(f, p)))
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* records in                                                         */

/* Aborts the execution of a target this instance held, when `nr` (already
 * applied) took it away. */
static void s_check_fenced(fleet_t *f, s_plan_t *p, uint32_t i, const progress_rec_t *old,
                           bool was_mine)
{
    const progress_rec_t *nr = &p->t[i].rec;
    if (!was_mine || s_is_self(f, nr->holder))
        return;
    if (nr->epoch > old->epoch || nr->generation > old->generation) {
        s_emit_abort(f, p, i, FLEET_ABORT_FENCED);
    } else {
        f->stats.conflicts++;
        s_emit_abort(f, p, i, FLEET_ABORT_CONFLICT);
    }
}

/* Merges a record from a peer; forwards it (hop + 1) when it was news. */
static void s_merge_in(fleet_t *f, s_plan_t *p, uint32_t i, const progress_rec_t *rec, uint32_t hop,
                       uint64_t now)
{
    if (progress_compare(rec, &p->t[i].rec) <= 0)
        return; /* nothing new: the common case in an epidemic */
    progress_rec_t m = *rec;
    progress_rec_t old = p->t[i].rec;
    bool was_mine = s_bit(p, S_BIT_MINE, i);
    f->stats.records_merged++;
    /* A lease this node just learnt of (a claim, a retry, a re-claim,
     * perhaps relayed by a third node) starts its clock now: its holder may
     * not have had to talk to us for a long while (no heartbeats while it
     * held nothing), and must not look expired on arrival. */
    if (s_held_state(m.state) && !s_is_self(f, m.holder) &&
        (m.epoch != old.epoch || m.attempt != old.attempt || m.state != old.state ||
         memcmp(m.holder, old.holder, FLEET_ID_LEN) != 0)) {
        s_member_t *h = s_member(f, m.holder);
        if (h && h->last_heard < now)
            h->last_heard = now;
    }
    s_set(f, p, i, &m, true, now);
    s_check_fenced(f, p, i, &old, was_mine);
    if (hop < f->max_hops)
        s_push_queue(f, s_ref(p->slot, i), (uint8_t) (hop + 1));
}

static void s_orphan_add(fleet_t *f, const uint8_t *plan, uint32_t index, const progress_rec_t *rec,
                         bool restored)
{
    s_orphan_key_t key = {plan, index};
    uint64_t h = s_orphan_hash_of(plan, index);
    uint32_t v = s_ix_find(f, &f->orphan_ix, h, s_orphan_eq, &key);
    if (v != S_NONE) {
        progress_merge(&f->orphans[v].rec, rec);
        f->orphans[v].restored = f->orphans[v].restored && restored;
        return;
    }
    if (f->n_orphans >= S_MAX_ORPHANS) {
        f->stats.orphans_dropped++;
        f->orphans_lost = true;
        return;
    }
    if (!f->orphans) {
        f->orphans = malloc((size_t) S_MAX_ORPHANS * sizeof *f->orphans);
        if (!f->orphans) {
            f->stats.orphans_dropped++;
            f->orphans_lost = true;
            return;
        }
    }
    s_orphan_t *o = &f->orphans[f->n_orphans];
    memcpy(o->plan, plan, FLEET_ID_LEN);
    o->index = index;
    o->rec = *rec;
    o->restored = restored;
    if (s_ix_put(f, &f->orphan_ix, h, f->n_orphans, s_orphan_hash) != 0) {
        f->stats.orphans_dropped++;
        f->orphans_lost = true;
        return;
    }
    f->n_orphans++;
}

/* Applies and removes the waiting records of a plan just added. */
static void s_orphans_apply(fleet_t *f, s_plan_t *p, uint64_t now)
{
    uint32_t kept = 0;
    bool any = false;
    for (uint32_t k = 0; k < f->n_orphans; k++) {
        s_orphan_t *o = &f->orphans[k];
        if (memcmp(o->plan, p->id, FLEET_ID_LEN) != 0) {
            f->orphans[kept++] = *o;
            continue;
        }
        any = true;
        if (o->index >= p->n)
            continue;
        progress_rec_t m = p->t[o->index].rec;
        if (progress_merge(&m, &o->rec)) {
            if (!o->restored)
                f->stats.records_merged++;
            s_set(f, p, o->index, &m, !o->restored, now);
        }
    }
    if (!any)
        return;
    f->n_orphans = kept;
    s_ix_free(&f->orphan_ix);
    for (uint32_t k = 0; k < f->n_orphans; k++)
        if (s_ix_put(f, &f->orphan_ix, s_orphan_hash(f, k), k, s_orphan_hash) != 0) {
            /* the table cannot be rebuilt: drop what it cannot find */
            f->stats.orphans_dropped += f->n_orphans - k;
            f->n_orphans = k;
            f->orphans_lost = true;
            break;
        }
}

/* ------------------------------------------------------------------ */
/* message parsing                                                    */

/* One record of a message, as parsed. Lifetime of `plan`: the message's. */
typedef struct {
    const uint8_t *plan;
    uint32_t index;
    uint32_t hop; /* its own hop, S_NO_HOP when it has none (version 1) */
    progress_rec_t rec;
} s_item_t;

/* Version 1: {"p": plan, "i": index, "r": record, "h"?: hop}, in one pass
 * over the map (the first occurrence of a key counts, as with wire_map_get;
 * others are ignored). */
static int s_parse_item(const msgpack_object *o, s_item_t *it)
{
    const msgpack_object *pv = NULL, *iv = NULL, *rv = NULL, *hv = NULL;
    uint64_t index, hop = S_NO_HOP;
    if (!o || o->type != MSGPACK_OBJECT_MAP)
        return GG_EMALFORMED;
    for (uint32_t k = 0; k < o->via.map.size; k++) {
        const msgpack_object *key = &o->via.map.ptr[k].key;
        const msgpack_object *val = &o->via.map.ptr[k].val;
        if (key->type != MSGPACK_OBJECT_STR || key->via.str.size != 1)
            continue;
        char c = key->via.str.ptr[0];
        if (c == 'p' && !pv)
            pv = val;
        else if (c == 'i' && !iv)
            iv = val;
        else if (c == 'r' && !rv)
            rv = val;
        else if (c == 'h' && !hv)
            hv = val;
    }
    if (hv && (wire_obj_u64(hv, &hop) != 0 || hop > S_MAX_HOPS))
        return GG_EMALFORMED;
    if (!pv || !iv || !rv || pv->type != MSGPACK_OBJECT_BIN || pv->via.bin.size != FLEET_ID_LEN ||
        wire_obj_u64(iv, &index) != 0 || index >= FLEET_MAX_TARGETS ||
        rv->type != MSGPACK_OBJECT_MAP || progress_unpack(rv, &it->rec) != 0)
        return GG_EMALFORMED;
    it->plan = (const uint8_t *) pv->via.bin.ptr;
    it->index = (uint32_t) index;
    it->hop = (uint32_t) hop;
    return 0;
}

/* The records of a PROGRESS or feed message, read one by one: version 1
 * "items" (an array of maps), version 2 "plans" and "rb" (s_rec_put). */
typedef struct {
    const msgpack_object_array *items; /* version 1 */
    const msgpack_object_array *plans; /* version 2 */
    const uint8_t *rb;
    size_t rb_len, off;
    uint32_t k; /* records read */
} s_records_t;

/* The next record into *it: 1, 0 at the end, or GG_EMALFORMED. */
static int s_records_next(s_records_t *rs, s_item_t *it)
{
    if (rs->items) {
        if (rs->k == rs->items->size)
            return 0;
        if (s_parse_item(&rs->items->ptr[rs->k], it) != 0)
            return GG_EMALFORMED;
        rs->k++;
        return 1;
    }
    if (rs->off == rs->rb_len)
        return 0;
    uint32_t plan, index;
    size_t len =
        s_rec_get(rs->rb + rs->off, rs->rb_len - rs->off, &plan, &it->hop, &index, &it->rec);
    if (len == 0 || len > rs->rb_len - rs->off || plan >= rs->plans->size ||
        index >= FLEET_MAX_TARGETS || rs->k == FLEET_MAX_FEED_ITEMS)
        return GG_EMALFORMED;
    it->plan = (const uint8_t *) rs->plans->ptr[plan].via.bin.ptr;
    it->index = index;
    rs->off += len;
    rs->k++;
    return 1;
}

/* Opens the records of msg's body for s_records_next after checking every
 * one of them: a message with one malformed record is dropped whole. */
static int s_records_open(const wire_msg_t *msg, s_records_t *rs)
{
    const msgpack_object *body = &msg->body;
    memset(rs, 0, sizeof *rs);
    if (msg->version < 2) {
        if (wire_get_array(body, "items", &rs->items, FLEET_MAX_FEED_ITEMS) != 0)
            return GG_EMALFORMED;
    } else {
        size_t len;
        if (wire_get_array(body, "plans", &rs->plans, S_REC_PLANS) != 0 ||
            wire_get_bin(body, "rb", &rs->rb, &len, WIRE_MAX_MESSAGE) != 0)
            return GG_EMALFORMED;
        for (uint32_t x = 0; x < rs->plans->size; x++)
            if (rs->plans->ptr[x].type != MSGPACK_OBJECT_BIN ||
                rs->plans->ptr[x].via.bin.size != FLEET_ID_LEN)
                return GG_EMALFORMED;
        rs->rb_len = len;
    }
    s_item_t it;
    int rc;
    while ((rc = s_records_next(rs, &it)) == 1)
        ;
    if (rc != 0)
        return rc;
    rs->k = 0;
    rs->off = 0;
    return 0;
}

/* Applies the records of rs at `hop` (a record's own hop, when it has one
 * and own_hops is set, instead); an index beyond a known plan is counted. */
static void s_apply_records(fleet_t *f, s_records_t *rs, uint32_t hop, bool own_hops, uint64_t now)
{
    s_plan_t *p = NULL;
    s_item_t it;
    while (s_records_next(rs, &it) == 1) {
        f->stats.records_in++;
        if (!p || memcmp(p->id, it.plan, FLEET_ID_LEN) != 0)
            p = s_plan(f, it.plan); /* records mostly come plan by plan */
        if (!p) {
            s_orphan_add(f, it.plan, it.index, &it.rec, false);
            continue;
        }
        if (it.index >= p->n) {
            f->stats.malformed++;
            continue;
        }
        /* an answer (or an eager copy) came: later announcements are
         * weighed against what it brought */
        s_bit_put(p, S_BIT_WANTED, it.index, false);
        s_merge_in(f, p, it.index, &it.rec, own_hops && it.hop != S_NO_HOP ? it.hop : hop, now);
    }
}

static int s_get_u32(const msgpack_object *body, const char *key, uint32_t max, uint32_t *out)
{
    uint64_t v;
    if (wire_get_u64(body, key, &v) != 0 || v > max)
        return GG_EMALFORMED;
    *out = (uint32_t) v;
    return 0;
}

/* ------------------------------------------------------------------ */
/* documents                                                          */

/* Sets a document's state; an accepted one (S_DOC_HAVE) counts in the
 * state sum with its kind and size. */
static void s_doc_state(fleet_t *f, s_doc_t *d, uint8_t state)
{
    if (d->state == S_DOC_HAVE)
        f->state_sum -= s_docmeta_hash(d->id, d->kind, d->size);
    d->state = state;
    if (state == S_DOC_HAVE)
        f->state_sum += s_docmeta_hash(d->id, d->kind, d->size);
}

static uint32_t s_doc_insert(fleet_t *f, const uint8_t *id, uint8_t kind, uint64_t size,
                             uint8_t state)
{
    if (f->n_docs >= FLEET_MAX_DOCS)
        return S_NONE;
    if (f->n_docs == f->docs_cap) {
        uint32_t cap = f->docs_cap ? f->docs_cap * 2 : 16;
        s_doc_t *nd = realloc(f->docs, (size_t) cap * sizeof *nd);
        if (!nd)
            return S_NONE;
        f->docs = nd;
        f->docs_cap = cap;
    }
    uint32_t v = f->n_docs;
    s_doc_t *d = &f->docs[v];
    memset(d, 0, sizeof *d);
    memcpy(d->id, id, FLEET_ID_LEN);
    d->kind = kind;
    d->size = size;
    d->prev = d->next = S_NONE;
    if (s_ix_put(f, &f->doc_ix, s_id_hash(id), v, s_doc_hash) != 0)
        return S_NONE;
    f->n_docs++;
    s_doc_state(f, d, state);
    return v;
}

static void s_announce(fleet_t *f, const s_doc_t *d)
{
    uint32_t peers[S_MAX_FANOUT];
    uint32_t n = s_pick_peers(f, f->push_fanout, peers);
    if (n == 0)
        return;
    wire_writer_t *w = wire_writer_new(WIRE_PLAN, f->self, 4);
    if (!w)
        return;
    wire_put_u64(w, "k", 0);
    wire_put_bin(w, "id", d->id, FLEET_ID_LEN);
    wire_put_u64(w, "kind", d->kind);
    wire_put_u64(w, "size", d->size);
    s_send_peers(f, &w, WIRE_PLAN, peers, n);
}

static void s_doc_have(fleet_t *f, s_doc_t *d)
{
    s_doc_state(f, d, S_DOC_HAVE);
    s_feed_touch(f, S_DOC_BIT | (uint32_t) (d - f->docs));
    s_announce(f, d);
}

static s_fetch_t *s_fetch_find(fleet_t *f, const uint8_t *id)
{
    for (uint32_t k = 0; k < S_MAX_FETCHES; k++)
        if (f->fetch[k].active && memcmp(f->fetch[k].id, id, FLEET_ID_LEN) == 0)
            return &f->fetch[k];
    return NULL;
}

static void s_fetch_free(s_fetch_t *fe)
{
    free(fe->buf);
    free(fe->chunk);
    memset(fe, 0, sizeof *fe);
}

/* Adds a source; when the list is full, in place of one that is not live
 * in this view (never the current one). */
static void s_fetch_add_source(const fleet_t *f, s_fetch_t *fe, const uint8_t *source)
{
    for (uint32_t k = 0; k < fe->n_sources; k++)
        if (memcmp(fe->sources[k], source, FLEET_ID_LEN) == 0)
            return;
    if (fe->n_sources < S_MAX_SOURCES) {
        memcpy(fe->sources[fe->n_sources++], source, FLEET_ID_LEN);
        return;
    }
    for (uint32_t k = 0; k < fe->n_sources; k++) {
        const s_member_t *m = s_member(f, fe->sources[k]);
        if (k != fe->source && (!m || !m->pub.live)) {
            memcpy(fe->sources[k], source, FLEET_ID_LEN);
            return;
        }
    }
}

/* The current source, or the next one that is live in this view (a source
 * this node does not know yet as a member cannot be asked). */
static const s_member_t *s_fetch_source(const fleet_t *f, s_fetch_t *fe)
{
    for (uint32_t step = 0; step < fe->n_sources; step++) {
        uint32_t k = (fe->source + step) % fe->n_sources;
        const s_member_t *m = s_member(f, fe->sources[k]);
        if (m && m->pub.live && m->pub.address[0]) {
            fe->source = k;
            return m;
        }
    }
    return NULL;
}

/* Requests missing chunks from the current source, up to the window. */
static void s_fetch_pump(fleet_t *f, s_fetch_t *fe)
{
    const s_member_t *src = s_fetch_source(f, fe);
    if (!src)
        return;
    uint32_t inflight = 0;
    for (uint32_t c = 0; c < fe->n_chunks; c++)
        inflight += fe->chunk[c] == 1;
    for (uint32_t c = 0; c < fe->n_chunks && inflight < S_FETCH_WINDOW; c++) {
        if (fe->chunk[c] != 0)
            continue;
        wire_writer_t *w = wire_writer_new(WIRE_PLAN, f->self, 3);
        if (!w)
            return;
        wire_put_u64(w, "k", 1);
        wire_put_bin(w, "id", fe->id, FLEET_ID_LEN);
        wire_put_u64(w, "off", (uint64_t) c * FLEET_CHUNK_BYTES);
        s_send_to(f, src, w, WIRE_PLAN);
        wire_writer_destroy(&w);
        fe->chunk[c] = 1;
        inflight++;
    }
}

static uint64_t s_fetch_bytes(const fleet_t *f)
{
    uint64_t b = 0;
    for (uint32_t k = 0; k < S_MAX_FETCHES; k++)
        if (f->fetch[k].active)
            b += f->fetch[k].size;
    return b;
}

/* Starts fetching a document; false when no slot or memory is free. */
static bool s_fetch_start(fleet_t *f, const uint8_t *id, uint8_t kind, uint64_t size,
                          const uint8_t *source, uint64_t now)
{
    s_fetch_t *fe = NULL;
    for (uint32_t k = 0; k < S_MAX_FETCHES && !fe; k++)
        if (!f->fetch[k].active)
            fe = &f->fetch[k];
    if (!fe || s_fetch_bytes(f) + size > S_MAX_FETCH_BYTES)
        return false;
    memset(fe, 0, sizeof *fe);
    fe->n_chunks = (uint32_t) ((size + FLEET_CHUNK_BYTES - 1) / FLEET_CHUNK_BYTES);
    fe->buf = malloc(size);
    fe->chunk = calloc(fe->n_chunks, 1);
    if (!fe->buf || !fe->chunk) {
        s_fetch_free(fe);
        return false;
    }
    fe->active = true;
    memcpy(fe->id, id, FLEET_ID_LEN);
    fe->kind = kind;
    fe->size = size;
    s_fetch_add_source(f, fe, source);
    fe->progress_at = now;
    s_fetch_pump(f, fe);
    return true;
}

/* Known for good (have, verifying or rejected): not to be fetched. */
static bool s_doc_settled(const fleet_t *f, const uint8_t *id)
{
    const s_doc_t *d = s_doc(f, id);
    return d && d->state != S_DOC_LOST;
}

/* Starts waiting fetches while slots are free. */
static void s_fetch_next(fleet_t *f, uint64_t now)
{
    uint32_t k = 0;
    while (k < f->n_wanted) {
        s_wanted_t *wd = &f->wanted[k];
        if (s_doc_settled(f, wd->id) || s_fetch_find(f, wd->id)) {
            f->wanted[k] = f->wanted[--f->n_wanted];
            continue;
        }
        if (!s_fetch_start(f, wd->id, wd->kind, wd->size, wd->source, now))
            return;
        f->wanted[k] = f->wanted[--f->n_wanted];
    }
}

/* A peer has (or announced) a document. */
static void s_doc_learn(fleet_t *f, const uint8_t *id, uint8_t kind, uint64_t size,
                        const uint8_t *source, uint64_t now)
{
    if (s_doc_settled(f, id))
        return;
    s_fetch_t *fe = s_fetch_find(f, id);
    if (fe) {
        if (fe->size == size) {
            s_fetch_add_source(f, fe, source);
            s_fetch_pump(f, fe); /* none of the sources so far may have been askable */
        }
        return;
    }
    for (uint32_t k = 0; k < f->n_wanted; k++)
        if (memcmp(f->wanted[k].id, id, FLEET_ID_LEN) == 0)
            return;
    if (s_fetch_start(f, id, kind, size, source, now))
        return;
    if (!f->wanted) {
        f->wanted = malloc(S_MAX_WANTED * sizeof *f->wanted);
        if (!f->wanted)
            return;
    }
    if (f->n_wanted >= S_MAX_WANTED) {
        f->stats.docs_failed++;
        return;
    }
    s_wanted_t *wd = &f->wanted[f->n_wanted++];
    memcpy(wd->id, id, FLEET_ID_LEN);
    wd->kind = kind;
    wd->size = size;
    memcpy(wd->source, source, FLEET_ID_LEN);
}

static void s_fetch_complete(fleet_t *f, s_fetch_t *fe, uint64_t now)
{
    s_doc_t *d = s_doc(f, fe->id); /* a lost one fetched again */
    if (!d) {
        uint32_t v = s_doc_insert(f, fe->id, fe->kind, fe->size, S_DOC_LOST);
        d = v == S_NONE ? NULL : &f->docs[v];
    }
    fleet_out_t *o = d ? s_out(f, FOUT_DOC) : NULL;
    if (o) {
        s_doc_state(f, d, S_DOC_VERIFYING);
        d->kind = fe->kind;
        d->size = fe->size;
        memcpy(o->doc_id, fe->id, FLEET_ID_LEN);
        o->doc_kind = fe->kind;
        o->data = fe->buf;
        o->len = fe->size;
        fe->buf = NULL;
        f->stats.docs_in++;
    } else {
        f->stats.docs_failed++;
    }
    s_fetch_free(fe);
    s_fetch_next(f, now);
}

static void s_fetch_timeouts(fleet_t *f, uint64_t now)
{
    uint64_t timeout = f->cfg.lease_ttl_ms / 2;
    for (uint32_t k = 0; k < S_MAX_FETCHES; k++) {
        s_fetch_t *fe = &f->fetch[k];
        if (!fe->active || now < fe->progress_at + timeout)
            continue;
        if (++fe->tries > S_FETCH_TRIES) {
            f->stats.docs_failed++;
            s_fetch_free(fe);
            continue;
        }
        for (uint32_t c = 0; c < fe->n_chunks; c++)
            if (fe->chunk[c] == 1)
                fe->chunk[c] = 0;
        /* the next source that is live, else the same one again */
        for (uint32_t step = 1; step <= fe->n_sources; step++) {
            uint32_t s = (fe->source + step) % fe->n_sources;
            const s_member_t *m = s_member(f, fe->sources[s]);
            if (m && m->pub.live) {
                fe->source = s;
                break;
            }
        }
        fe->progress_at = now;
        s_fetch_pump(f, fe);
    }
    s_fetch_next(f, now);
}

/* ------------------------------------------------------------------ */
/* message handlers                                                   */

/* Validates a list of document entries {"id", "kind", "size"}. */
static int s_check_docs(const msgpack_object_array *docs)
{
    for (uint32_t k = 0; k < docs->size; k++) {
        uint8_t id[FLEET_ID_LEN];
        uint32_t dk;
        uint64_t size;
        const msgpack_object *d = &docs->ptr[k];
        if (wire_get_bin_exact(d, "id", id, FLEET_ID_LEN) != 0 ||
            s_get_u32(d, "kind", UINT8_MAX, &dk) != 0 || wire_get_u64(d, "size", &size) != 0 ||
            size == 0 || size > FLEET_MAX_DOC_BYTES)
            return GG_EMALFORMED;
    }
    return 0;
}

/* The sender has these (validated) documents: fetch those not known. */
static void s_learn_docs(fleet_t *f, const msgpack_object_array *docs, const uint8_t *sender,
                         uint64_t now)
{
    for (uint32_t k = 0; k < docs->size; k++) {
        uint8_t id[FLEET_ID_LEN];
        uint32_t dk = 0;
        uint64_t size = 0;
        const msgpack_object *d = &docs->ptr[k];
        wire_get_bin_exact(d, "id", id, FLEET_ID_LEN);
        s_get_u32(d, "kind", UINT8_MAX, &dk);
        wire_get_u64(d, "size", &size);
        s_doc_learn(f, id, (uint8_t) dk, size, sender, now);
    }
}

static int s_on_progress(fleet_t *f, uint64_t now, const wire_msg_t *msg)
{
    const msgpack_object *body = &msg->body;
    const msgpack_object_array *docs = NULL;
    uint32_t hop;
    if (s_get_u32(body, "hop", S_MAX_HOPS, &hop) != 0)
        return GG_EMALFORMED;
    /* "docs" (the documents of the items' plans) is optional: older nodes
     * do not send it */
    if (wire_map_get(body, "docs") &&
        (wire_get_array(body, "docs", &docs, FLEET_MAX_FEED_ITEMS) != 0 || s_check_docs(docs) != 0))
        return GG_EMALFORMED;
    s_records_t rs;
    int rc = s_records_open(msg, &rs);
    if (rc != 0)
        return rc;
    s_apply_records(f, &rs, hop, true, now);
    if (docs)
        s_learn_docs(f, docs, msg->sender, now);
    return 0;
}

static void s_serve_pull(fleet_t *f, const s_member_t *to, uint64_t since, uint64_t rid,
                         bool same_state)
{
    /* the puller holds what this node holds: nothing to carry, and its
     * cursor moves to the end of this feed */
    uint32_t start = same_state ? S_NONE : s_feed_after(f, since);
    uint32_t n_items = 0, n_docs = 0, last = S_NONE, r = start;
    uint32_t refs[FLEET_MAX_FEED_ITEMS], slots[S_REC_PLANS], n_plans = 0;
    size_t bytes = 0;
    while (r != S_NONE && n_items + n_docs < FLEET_MAX_FEED_ITEMS) {
        size_t b = s_ref_bytes(f, r);
        if (bytes + b > S_BATCH_BYTES || (!(r & S_DOC_BIT) && !s_plan_room(slots, &n_plans, r)))
            break;
        bytes += b;
        if (r & S_DOC_BIT)
            n_docs++;
        else
            refs[n_items++] = r;
        last = r;
        r = *s_link(f, r).next;
    }
    bool more = r != S_NONE;
    uint64_t next = last != S_NONE ? s_seq_of(f, last) : f->seq;
    uint32_t version = to->pub.wire >= 2 ? 2 : 1;
    wire_writer_t *w = wire_writer_new_version(version, WIRE_DIGEST, f->self, version >= 2 ? 8 : 7);
    if (!w)
        return;
    wire_put_u64(w, "k", 1);
    wire_put_u64(w, "f", f->feed_id);
    wire_put_u64(w, "n", next);
    wire_put_bool(w, "m", more);
    wire_put_u64(w, "q", rid);
    msgpack_packer *pk = wire_writer_packer(w);
    if (version >= 2) {
        s_pack_records(w, f, refs, NULL, n_items, 0);
    } else {
        wire_put_key(w, "items");
        msgpack_pack_array(pk, n_items);
        for (uint32_t k = 0; k < n_items; k++)
            s_pack_item(pk, f, refs[k], S_NO_HOP);
    }
    wire_put_key(w, "docs");
    msgpack_pack_array(pk, n_docs);
    for (uint32_t x = start, k = 0; k < n_items + n_docs; x = *s_link(f, x).next, k++)
        if (x & S_DOC_BIT)
            s_pack_doc(pk, &f->docs[x & ~S_DOC_BIT]);
    s_send_to(f, to, w, WIRE_DIGEST);
    wire_writer_destroy(&w);
    f->stats.records_out += n_items;
    if (last != S_NONE) {
        f->cc[f->cc_next].seq = next;
        f->cc[f->cc_next].ref = last;
        f->cc_next = (f->cc_next + 1) % S_CURSOR_CACHE;
    }
}

static void s_set_synced(fleet_t *f)
{
    if (f->synced)
        return;
    f->synced = true;
    s_wake_all(f, true);
}

static void s_pull_send(fleet_t *f, s_member_t *m, uint64_t now)
{
    wire_writer_t *w = wire_writer_new(WIRE_DIGEST, f->self, 5);
    if (!w)
        return;
    f->pull_rid = rng_next(&f->rng);
    wire_put_u64(w, "k", 0);
    wire_put_u64(w, "f", m->feed_id);
    wire_put_u64(w, "s", m->feed_next);
    wire_put_u64(w, "q", f->pull_rid);
    wire_put_u64(w, "h", f->state_sum);
    s_send_to(f, m, w, WIRE_DIGEST);
    wire_writer_destroy(&w);
    f->pull_out = true;
    memcpy(f->pull_peer, m->pub.id, FLEET_ID_LEN);
    f->pull_deadline = now + f->cfg.lease_ttl_ms / 2;
    f->stats.pulls++;
}

/* Anti-entropy partner. A pull names the position reached in that peer's
 * feed, so pulling the same few peers again costs only what changed since,
 * while a peer pulled for the first time (or long ago) serves its whole
 * feed. In a large fleet a random peer is nearly always new: every node
 * would copy every record every anti_entropy_interval. So most pulls go to
 * one of the S_PULL_PARTNERS members that follow this node in id order (a
 * ring every node agrees on), and one in S_PULL_RANDOM_ONE_IN to a random
 * peer, which keeps the ring from being the only path. */
static bool s_pull_partner(fleet_t *f, uint32_t *peer)
{
    if (f->self_rank < 0 || f->n_own <= S_PULL_PARTNERS + 1 ||
        rng_below(&f->rng, S_PULL_RANDOM_ONE_IN) == 0)
        return false;
    uint32_t step = 1 + (uint32_t) rng_below(&f->rng, S_PULL_PARTNERS);
    uint32_t k = f->own_mem[((uint32_t) f->self_rank + step) % f->n_own];
    if (s_is_self(f, f->mem[k].pub.id) || !f->mem[k].pub.address[0])
        return false;
    *peer = k;
    return true;
}

static void s_pull_start(fleet_t *f, uint64_t now)
{
    uint32_t peer;
    if (!s_pull_partner(f, &peer) && s_pick_peers(f, 1, &peer) == 0)
        return;
    f->chain_cur = ++f->chain_started;
    f->pull_soon = false;
    s_pull_send(f, &f->mem[peer], now);
}

static int s_on_digest(fleet_t *f, uint64_t now, const wire_msg_t *msg, s_member_t *from)
{
    const msgpack_object *body = &msg->body;
    uint32_t kind;
    uint64_t feed_id, rid;
    if (s_get_u32(body, "k", 1, &kind) != 0 || wire_get_u64(body, "f", &feed_id) != 0 ||
        wire_get_u64(body, "q", &rid) != 0)
        return GG_EMALFORMED;
    if (kind == 0) {
        uint64_t since, sum;
        if (wire_get_u64(body, "s", &since) != 0)
            return GG_EMALFORMED;
        /* "h" (the puller's state sum) is optional: older nodes do not send it */
        int hrc = wire_get_u64(body, "h", &sum);
        if (hrc != 0 && hrc != GG_ENOTFOUND)
            return GG_EMALFORMED;
        if (feed_id != f->feed_id)
            since = 0;
        if (from)
            s_serve_pull(f, from, since, rid, hrc == 0 && sum == f->state_sum);
        return 0;
    }
    const msgpack_object_array *docs;
    uint64_t next;
    bool more;
    if (wire_get_u64(body, "n", &next) != 0 || wire_get_bool(body, "m", &more) != 0 ||
        wire_get_array(body, "docs", &docs, FLEET_MAX_FEED_ITEMS) != 0 || s_check_docs(docs) != 0)
        return GG_EMALFORMED;
    s_records_t rs;
    int rc = s_records_open(msg, &rs);
    if (rc != 0)
        return rc;
    s_apply_records(f, &rs, f->max_hops, false, now);
    s_learn_docs(f, docs, msg->sender, now);
    if (!from || !f->pull_out || rid != f->pull_rid ||
        memcmp(f->pull_peer, msg->sender, FLEET_ID_LEN) != 0)
        return 0; /* not the answer awaited: data merged, cursor unchanged */
    from->feed_id = feed_id;
    from->feed_next = next;
    if (more && !f->leaving) {
        s_pull_send(f, from, now);
        return 0;
    }
    f->pull_out = false;
    uint64_t before = f->chain_done;
    f->chain_done = f->chain_cur;
    f->pull_at = f->pull_soon ? now : now + f->cfg.anti_entropy_interval_ms;
    if (!f->synced) {
        s_set_synced(f);
    } else {
        for (uint32_t k = 0; k < f->n_plans; k++) /* plans that waited for this chain */
            if (f->plans[k]->ready_chain > before && f->plans[k]->ready_chain <= f->chain_done) {
                s_wake_takeover(f->plans[k]);
                s_wake(f->plans[k]);
            }
    }
    return 0;
}

static int s_on_plan(fleet_t *f, uint64_t now, const wire_msg_t *msg, s_member_t *from)
{
    const msgpack_object *body = &msg->body;
    uint32_t kind;
    uint8_t id[FLEET_ID_LEN];
    if (s_get_u32(body, "k", 2, &kind) != 0 ||
        wire_get_bin_exact(body, "id", id, FLEET_ID_LEN) != 0)
        return GG_EMALFORMED;
    if (kind == 0) {
        uint32_t dk;
        uint64_t size;
        if (s_get_u32(body, "kind", UINT8_MAX, &dk) != 0 ||
            wire_get_u64(body, "size", &size) != 0 || size == 0 || size > FLEET_MAX_DOC_BYTES)
            return GG_EMALFORMED;
        s_doc_learn(f, id, (uint8_t) dk, size, msg->sender, now);
        return 0;
    }
    uint64_t off;
    if (wire_get_u64(body, "off", &off) != 0 || off % FLEET_CHUNK_BYTES != 0 ||
        off >= FLEET_MAX_DOC_BYTES)
        return GG_EMALFORMED;
    if (kind == 1) {
        const s_doc_t *d = s_doc(f, id);
        if (!from || !d || d->state != S_DOC_HAVE || !f->reader || off >= d->size)
            return 0;
        size_t len = (size_t) s_min(FLEET_CHUNK_BYTES, d->size - off);
        uint8_t *buf = malloc(len);
        if (!buf)
            return 0;
        size_t got = f->reader(f->reader_arg, id, off, buf, len);
        if (got == len) {
            wire_writer_t *w = wire_writer_new(WIRE_PLAN, f->self, 5);
            if (w) {
                wire_put_u64(w, "k", 2);
                wire_put_bin(w, "id", id, FLEET_ID_LEN);
                wire_put_u64(w, "off", off);
                wire_put_u64(w, "total", d->size);
                wire_put_bin(w, "data", buf, len);
                s_send_to(f, from, w, WIRE_PLAN);
                wire_writer_destroy(&w);
                f->stats.docs_out++;
            }
        }
        free(buf);
        return 0;
    }
    uint64_t total;
    const uint8_t *data;
    size_t len;
    if (wire_get_u64(body, "total", &total) != 0 || total == 0 || total > FLEET_MAX_DOC_BYTES ||
        off >= total || wire_get_bin(body, "data", &data, &len, FLEET_CHUNK_BYTES) != 0 ||
        len != s_min(FLEET_CHUNK_BYTES, total - off))
        return GG_EMALFORMED;
    s_fetch_t *fe = s_fetch_find(f, id);
    if (!fe || fe->size != total)
        return 0;
    uint32_t c = (uint32_t) (off / FLEET_CHUNK_BYTES);
    if (fe->chunk[c] == 2)
        return 0;
    memcpy(fe->buf + off, data, len);
    fe->chunk[c] = 2;
    fe->n_received++;
    fe->tries = 0;
    fe->progress_at = now;
    if (fe->n_received == fe->n_chunks)
        s_fetch_complete(f, fe, now);
    else
        s_fetch_pump(f, fe);
    return 0;
}

/* ------------------------------------------------------------------ */
/* public API                                                         */

int fleet_config_get(const char *profile, fleet_config_t *out)
{
    if (!profile || !out)
        return GG_EINVAL;
    fleet_config_t c = {
        .lease_ttl_ms = 15000,
        .lease_margin_ms = 5000,
        .push_interval_ms = 200,
        .push_fanout = 3,
        .push_eager = 3,
        .anti_entropy_interval_ms = 10000,
        .max_hops = 3,
    };
    if (strcmp(profile, "lan") == 0) {
        /* as above */
    } else if (strcmp(profile, "wan") == 0) {
        c.lease_ttl_ms = 60000;
        c.lease_margin_ms = 20000;
        c.push_interval_ms = 1000;
        c.push_fanout = 4;
        c.anti_entropy_interval_ms = 30000;
        c.max_hops = 4;
    } else if (strcmp(profile, "test") == 0) {
        c.lease_ttl_ms = 2000;
        c.lease_margin_ms = 1000;
        c.push_interval_ms = 20;
        c.anti_entropy_interval_ms = 1000;
    } else {
        return GG_EINVAL;
    }
    *out = c;
    return 0;
}

static bool s_config_ok(const fleet_config_t *c)
{
    return c->lease_ttl_ms >= 3 && c->push_interval_ms > 0 && c->push_fanout > 0 &&
           c->push_fanout <= S_MAX_FANOUT && c->anti_entropy_interval_ms > 0 &&
           c->max_hops <= S_MAX_HOPS &&
           (c->load_cap_milli == 0 || (c->load_cap_milli >= 1000 && c->load_cap_milli <= 100000));
}

fleet_t *fleet_new(const fleet_config_t *cfg, const uint8_t self_id[FLEET_ID_LEN],
                   const char *self_address, uint64_t seed, uint64_t now_ms)
{
    if (!cfg || !self_id || !s_config_ok(cfg))
        return NULL;
    if (!self_address || strlen(self_address) > FLEET_ADDRESS_MAX)
        return NULL;
    fleet_t *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->cfg = *cfg;
    s_scale_push(f);
    memcpy(f->self, self_id, FLEET_ID_LEN);
    snprintf(f->self_address, sizeof f->self_address, "%s", self_address);
    rng_seed(&f->rng, seed);
    f->feed_id = rng_next(&f->rng) | 1u;
    f->feed_head = f->feed_tail = S_NONE;
    for (uint32_t k = 0; k < S_CURSOR_CACHE; k++)
        f->cc[k].ref = S_NONE;
    f->self_rank = -1;
    f->alone_since = now_ms;
    f->pull_at = now_ms;
    f->lease_wake = S_NEVER;
    f->token_wake = S_NEVER;
    return f;
}

void fleet_destroy(fleet_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fleet_t *f = *self_p;
    for (uint32_t k = 0; k < f->n_plans; k++) {
        free(f->plans[k]->t);
        free(f->plans[k]->vd);
        free(f->plans[k]->seq);
        free(f->plans[k]->bits);
        free(f->plans[k]->owner_rank);
        free(f->plans[k]->load);
        free(f->plans[k]);
    }
    s_ix_free(&f->plan_ix);
    free(f->mem);
    free(f->mem_addr);
    s_ix_free(&f->mem_ix);
    free(f->live_peers);
    free(f->own_seeds);
    free(f->own_orig);
    free(f->own_mem);
    free(f->held);
    free(f->orphans);
    s_ix_free(&f->orphan_ix);
    free(f->docs);
    s_ix_free(&f->doc_ix);
    for (uint32_t k = 0; k < S_MAX_FETCHES; k++)
        s_fetch_free(&f->fetch[k]);
    free(f->wanted);
    free(f->pq);
    free(f->wq);
    free(f->sq);
    while (f->out_n > 0) {
        fleet_out_release(&f->out[f->out_head]);
        f->out_head = (f->out_head + 1) % f->out_cap;
        f->out_n--;
    }
    free(f->out);
    free(f);
    *self_p = NULL;
}

void fleet_set_members(fleet_t *f, uint64_t now_ms, const fleet_member_t *members, size_t n)
{
    if (!f || (!members && n > 0))
        return;
    if (n > FLEET_MAX_MEMBERS)
        n = FLEET_MAX_MEMBERS;
    size_t alloc_n = n > 0 ? n : 1;
    /* every field of these is written before it is read */
    s_member_t *nm = malloc(alloc_n * sizeof *nm);
    uint32_t *live = malloc(alloc_n * sizeof *live);
    uint32_t *order = malloc(alloc_n * sizeof *order);
    uint64_t *seeds = malloc(alloc_n * sizeof *seeds);
    uint32_t *orig = malloc(alloc_n * sizeof *orig);
    s_index_t nix = {0};
    size_t addr_len = 0;
    for (size_t j = 0; j < n; j++)
        addr_len += strnlen(members[j].address, FLEET_ADDRESS_MAX) + 1;
    char *addr = malloc(addr_len > 0 ? addr_len : 1), *addr_at = addr;
    fleet_t tmp_view;
    if (!nm || !live || !order || !seeds || !orig || !addr ||
        s_ix_reserve(&nix, (uint32_t) alloc_n) != 0) /* sized at once, not grown */
        goto fail;

    /* the new table, deduplicated by id, keeping each member's local state */
    uint32_t cnt = 0;
    bool newcomer = false;
    tmp_view.mem = nm;
    for (size_t j = 0; j < n; j++) {
        const fleet_member_t *in = &members[j];
        uint64_t h = s_id_hash(in->id);
        if (s_ix_find(&tmp_view, &nix, h, s_member_eq, in->id) != S_NONE)
            continue;
        s_member_t *m = &nm[cnt];
        memcpy(m->pub.id, in->id, FLEET_ID_LEN);
        size_t alen = strnlen(in->address, FLEET_ADDRESS_MAX);
        memcpy(addr_at, in->address, alen);
        addr_at[alen] = '\0';
        m->pub.address = addr_at;
        addr_at += alen + 1;
        m->pub.live = in->live;
        m->pub.draining = in->draining;
        m->pub.wire = in->wire_version;
        m->orig = (uint32_t) j;
        /* a list in the same order as the last one finds each member at
         * its old place, without a lookup */
        const s_member_t *old =
            cnt < f->n_mem && memcmp(f->mem[cnt].pub.id, in->id, FLEET_ID_LEN) == 0
                ? &f->mem[cnt]
                : s_member(f, in->id);
        m->seed = old ? old->seed : rendezvous_node_seed(in->id);
        /* A member first listed now, live or not, starts its lease clock now:
         * a restarted node's view holds every peer as dead until it hears from
         * it, and their leases (restored or learnt) must not look expired. */
        m->last_heard = old ? old->last_heard : now_ms;
        m->seen_live = (old && old->seen_live) || in->live;
        m->feed_id = old ? old->feed_id : 0;
        m->feed_next = old ? old->feed_next : 0;
        if (in->live && !(old && old->pub.live)) {
            if (m->last_heard < now_ms)
                m->last_heard = now_ms; /* its lease clock starts now */
            if (!s_is_self(f, in->id))
                newcomer = true;
        }
        if (s_ix_put(&tmp_view, &nix, h, cnt, s_member_hash) != 0)
            goto fail;
        cnt++;
    }

    uint32_t n_live = 0, n_own = 0;
    bool draining = false;
    uint64_t live_sum = 0;
    for (uint32_t k = 0; k < cnt; k++) {
        const s_member_t *m = &nm[k];
        bool self = s_is_self(f, m->pub.id);
        if (self)
            draining = m->pub.draining;
        if (m->pub.live)
            live_sum += s_id_hash(m->pub.id) | 1u;
        if (m->pub.live && !self && m->pub.address[0])
            live[n_live++] = k;
        if (m->pub.live && !m->pub.draining)
            order[n_own++] = k;
    }
    rendezvous_sort_ids(order, n_own, nm[0].pub.id, sizeof *nm);
    int32_t rank = -1;
    uint64_t sum = 0x6a09e667f3bcc908ull;
    for (uint32_t k = 0; k < n_own; k++) {
        seeds[k] = nm[order[k]].seed;
        orig[k] = nm[order[k]].orig;
        sum = rng_mix64(sum ^ seeds[k]) + k;
        if (s_is_self(f, nm[order[k]].pub.id))
            rank = (int32_t) k;
    }

    free(f->mem);
    free(f->mem_addr);
    s_ix_free(&f->mem_ix);
    free(f->live_peers);
    free(f->own_seeds);
    free(f->own_orig);
    free(f->own_mem);
    f->mem = nm;
    f->mem_addr = addr;
    f->mem_addr_len = addr_len;
    f->n_mem = cnt;
    f->mem_ix = nix;
    f->live_peers = live;
    f->n_live_peers = n_live;
    s_scale_push(f);
    f->own_seeds = seeds;
    f->own_orig = orig;
    f->n_own = n_own;
    f->self_rank = rank;
    f->own_mem = order;

    /* who owns what, or whose leases are live, may have changed */
    bool changed = sum != f->own_sum || live_sum != f->live_sum;
    f->live_sum = live_sum;
    if (sum != f->own_sum) {
        f->own_sum = sum;
        f->owners_changed_at = now_ms;
        for (uint32_t k = 0; k < f->n_plans; k++) {
            s_plan_t *p = f->plans[k];
            memset(&p->bits[(size_t) S_BIT_OWN_KNOWN * p->words], 0, p->words * sizeof(uint64_t));
        }
    }
    if (n_live == 0) {
        if (f->alone_since == S_NEVER)
            f->alone_since = now_ms;
    } else {
        f->alone_since = S_NEVER;
    }
    if (f->pull_out) {
        const s_member_t *pp = s_member(f, f->pull_peer);
        if (!pp || !pp->pub.live)
            f->pull_out = false; /* ask someone else */
    }
    if (newcomer) {
        /* a peer (back) in view: exchange what changed without waiting */
        if (f->pull_out)
            f->pull_soon = true;
        else
            f->pull_at = now_ms;
    }
    if (changed)
        s_wake_all(f, true);
    f->draining = draining;
    if (draining && f->synced && !f->leaving)
        s_drain_waiting(f, now_ms);
    return;
fail:
    free(nm);
    free(live);
    free(order);
    free(seeds);
    free(orig);
    free(addr);
    s_ix_free(&nix);
}

void fleet_set_capacity(fleet_t *f, uint64_t now_ms, uint32_t free_slots)
{
    if (!f)
        return;
    /* claims waiting to run hold slots the driver does not know are taken */
    free_slots = free_slots > f->n_starting ? free_slots - f->n_starting : 0;
    if (free_slots > f->capacity)
        for (uint32_t k = 0; k < f->n_plans; k++)
            if (!f->plans[k]->exhausted || f->plans[k]->take_owed)
                s_wake(f->plans[k]);
    f->capacity = free_slots;
}

int fleet_add_plan(fleet_t *f, uint64_t now_ms, const uint8_t plan_id[FLEET_ID_LEN],
                   uint32_t n_targets, const uint64_t *keys, const bool *gated,
                   const fleet_rollout_t *rollout)
{
    if (!f || !plan_id || !rollout || (n_targets > 0 && !keys))
        return GG_EINVAL;
    if (s_plan(f, plan_id))
        return 0;
    if (n_targets > FLEET_MAX_TARGETS || f->n_plans >= FLEET_MAX_PLANS)
        return GG_ETOOBIG;
    if (rollout->max_failure_ratio < 0 || rollout->max_failure_ratio != rollout->max_failure_ratio)
        return GG_EINVAL;
    s_plan_t *p = calloc(1, sizeof *p);
    if (!p)
        return GG_ENOMEM;
    p->words = (n_targets + 63) / 64;
    p->t = calloc(n_targets > 0 ? n_targets : 1, sizeof *p->t);
    p->vd = malloc((n_targets > 0 ? n_targets : 1) * sizeof *p->vd);
    p->seq = calloc(n_targets > 0 ? n_targets : 1, sizeof *p->seq);
    p->bits = calloc((size_t) S_BITS * (p->words > 0 ? p->words : 1), sizeof(uint64_t));
    if (!p->t || !p->bits || !p->vd || !p->seq) {
        free(p->vd);
        free(p->seq);
        free(p->t);
        free(p->bits);
        free(p);
        return GG_ENOMEM;
    }
    memcpy(p->id, plan_id, FLEET_ID_LEN);
    p->id_hash = s_id_hash(plan_id);
    for (uint32_t i = 0; i < n_targets; i++)
        p->vd[i] = s_version_digest(&p->t[i].rec);
    p->slot = f->n_plans;
    p->n = n_targets;
    p->ro = *rollout;
    p->control = FLEET_PLAN_ACTIVE;
    p->canary_n = rollout->canary < n_targets ? rollout->canary : n_targets;
    for (uint32_t i = 0; i < n_targets; i++) {
        p->t[i].key = keys[i];
        p->t[i].prev = p->t[i].next = S_NONE;
        if (gated && gated[i]) {
            s_bit_put(p, S_BIT_GATED, i, true);
            p->gated_waiting++;
        }
    }
    p->counts[TARGET_PENDING] = n_targets;
    f->plans[f->n_plans] = p;
    if (s_ix_put(f, &f->plan_ix, s_id_hash(plan_id), f->n_plans, s_plan_hash) != 0) {
        f->plans[f->n_plans] = NULL;
        free(p->t);
        free(p->vd);
        free(p->seq);
        free(p->bits);
        free(p);
        return GG_ENOMEM;
    }
    f->n_plans++;
    f->state_sum += rng_mix64(p->id_hash ^ 0x91A);
    /* claimable after a pull chain that starts from now on has completed: one
     * starts at the next tick (an outstanding one is dropped; its answer still
     * merges) */
    p->ready_chain = f->chain_started + 1;
    f->pull_out = false;
    f->pull_at = now_ms;
    if (f->orphans_lost) {
        /* records were dropped before their plan was known: pull them again */
        f->orphans_lost = false;
        for (uint32_t k = 0; k < f->n_mem; k++)
            f->mem[k].feed_next = 0;
    }
    s_orphans_apply(f, p, now_ms);
    s_plan_state(f, p, true);
    s_wake_takeover(p);
    s_wake(p);
    return 0;
}

static void s_cancel_held(fleet_t *f, s_plan_t *p, uint64_t now)
{
    for (uint32_t k = f->n_held; k-- > 0;) {
        if (k >= f->n_held)
            continue;
        uint32_t ref = f->held[k];
        if (ref >> S_PLAN_SHIFT != p->slot)
            continue;
        uint32_t i = ref & S_INDEX_MASK;
        if (s_bit(p, S_BIT_MINE, i))
            s_emit_abort(f, p, i, FLEET_ABORT_CANCELLED);
        progress_rec_t nr = p->t[i].rec;
        nr.state = TARGET_CANCELLED;
        s_set(f, p, i, &nr, true, now);
        s_push_queue(f, ref, 0);
    }
}

int fleet_set_plan_control(fleet_t *f, uint64_t now_ms, const uint8_t plan_id[FLEET_ID_LEN],
                           fleet_plan_control_t control)
{
    if (!f || control > FLEET_PLAN_CANCELLED)
        return GG_EINVAL;
    s_plan_t *p = s_plan(f, plan_id);
    if (!p)
        return GG_ENOTFOUND;
    if (p->control == control)
        return 0;
    p->control = control;
    if (control == FLEET_PLAN_CANCELLED)
        s_cancel_held(f, p, now_ms);
    else if (control == FLEET_PLAN_ACTIVE)
        s_wake(p);
    s_plan_state(f, p, false);
    fleet_out_t *o = s_out(f, FOUT_PLAN_STATE); /* the control is part of the state */
    if (o)
        memcpy(o->plan_id, p->id, FLEET_ID_LEN);
    return 0;
}

int fleet_set_approved(fleet_t *f, uint64_t now_ms, const uint8_t plan_id[FLEET_ID_LEN],
                       uint32_t index)
{
    if (!f)
        return GG_EINVAL;
    s_plan_t *p = s_plan(f, plan_id);
    if (!p || index >= p->n)
        return GG_ENOTFOUND;
    if (s_bit(p, S_BIT_APPROVED, index))
        return 0;
    s_count(f, p, index, &p->t[index].rec, false);
    s_bit_put(p, S_BIT_APPROVED, index, true);
    s_count(f, p, index, &p->t[index].rec, true);
    s_wake(p);
    s_plan_state(f, p, true);
    return 0;
}

int fleet_record_local(fleet_t *f, uint64_t now_ms, const uint8_t plan_id[FLEET_ID_LEN],
                       uint32_t index, const progress_rec_t *rec)
{
    if (!f || !rec || rec->state >= TARGET_STATE_COUNT)
        return GG_EINVAL;
    s_plan_t *p = s_plan(f, plan_id);
    if (!p || index >= p->n)
        return GG_ENOTFOUND;
    const progress_rec_t *cur = &p->t[index].rec;
    if (progress_compare(rec, cur) == 0)
        return 0; /* the same record again */
    bool operator= rec->generation> cur->generation;
    if (!operator&&(rec->epoch != cur->epoch || !s_is_self(f, rec->holder) ||
                    !s_is_self(f, cur->holder))) {
        f->stats.fenced_results++;
        return GG_ESTALE;
    }
    progress_rec_t m = *cur;
    if (!progress_merge(&m, rec)) {
        f->stats.fenced_results++;
        return GG_ESTALE;
    }
    progress_rec_t old = *cur;
    bool was_mine = s_bit(p, S_BIT_MINE, index);
    s_set(f, p, index, &m, true, now_ms);
    if (s_held_by_self(f, &m) && !f->leaving)
        s_set_mine(f, p, index, true);
    s_check_fenced(f, p, index, &old, was_mine);
    if (f->draining && m.state == TARGET_RETRY_WAIT && s_held_by_self(f, &m))
        s_handback(f, p, index, now_ms); /* draining: someone else retries it */
    s_push_queue(f, s_ref(p->slot, index), 0);
    return 0;
}

int fleet_restore_record(fleet_t *f, const uint8_t plan_id[FLEET_ID_LEN], uint32_t index,
                         const progress_rec_t *rec)
{
    if (!f || !plan_id || !rec || rec->state >= TARGET_STATE_COUNT || index >= FLEET_MAX_TARGETS)
        return GG_EINVAL;
    s_plan_t *p = s_plan(f, plan_id);
    if (!p) {
        s_orphan_add(f, plan_id, index, rec, true);
        return 0;
    }
    if (index >= p->n)
        return GG_ENOTFOUND;
    progress_rec_t r = *rec;
    if (s_held_by_self(f, &r)) {
        /* A claim this node stored before it stopped may never have left it:
         * another node, not knowing it, may have claimed the same epoch.
         * Restored as pending (same epoch), it yields to any claim a peer
         * holds at that epoch; if a peer has our claim, that copy (running)
         * wins the merge and it is re-claimed at epoch+1 once synced. */
        r.state = TARGET_PENDING;
    }
    progress_rec_t m = p->t[index].rec;
    if (progress_merge(&m, &r))
        s_set(f, p, index, &m, false, 0);
    return 0;
}

int fleet_restore_doc(fleet_t *f, const uint8_t doc_id[FLEET_ID_LEN], uint8_t kind, uint64_t size)
{
    if (!f || !doc_id || size == 0)
        return GG_EINVAL;
    if (size > FLEET_MAX_DOC_BYTES)
        return GG_ETOOBIG;
    s_doc_t *d = s_doc(f, doc_id);
    if (d) {
        if (d->state == S_DOC_HAVE)
            return 0;
        d->size = size;
        d->kind = kind;
    } else {
        uint32_t v = s_doc_insert(f, doc_id, kind, size, S_DOC_HAVE);
        if (v == S_NONE)
            return f->n_docs >= FLEET_MAX_DOCS ? GG_ETOOBIG : GG_ENOMEM;
        d = &f->docs[v];
    }
    s_doc_state(f, d, S_DOC_HAVE);
    s_feed_touch(f, S_DOC_BIT | (uint32_t) (d - f->docs));
    return 0;
}

int fleet_doc_add(fleet_t *f, uint64_t now_ms, const uint8_t doc_id[FLEET_ID_LEN], uint8_t kind,
                  const uint8_t *data, size_t len)
{
    if (!f || !doc_id || !data || len == 0)
        return GG_EINVAL;
    if (len > FLEET_MAX_DOC_BYTES)
        return GG_ETOOBIG;
    s_fetch_t *fe = s_fetch_find(f, doc_id);
    if (fe)
        s_fetch_free(fe);
    s_doc_t *d = s_doc(f, doc_id);
    if (d && d->state == S_DOC_HAVE)
        return 0;
    if (!d) {
        uint32_t v = s_doc_insert(f, doc_id, kind, len, S_DOC_HAVE);
        if (v == S_NONE)
            return f->n_docs >= FLEET_MAX_DOCS ? GG_ETOOBIG : GG_ENOMEM;
        d = &f->docs[v];
    }
    d->kind = kind;
    d->size = len;
    s_doc_have(f, d);
    s_fetch_next(f, now_ms);
    return 0;
}

void fleet_doc_accept(fleet_t *f, uint64_t now_ms, const uint8_t doc_id[FLEET_ID_LEN])
{
    if (!f || !doc_id)
        return;
    s_doc_t *d = s_doc(f, doc_id);
    if (d && d->state == S_DOC_VERIFYING)
        s_doc_have(f, d);
}

void fleet_doc_reject(fleet_t *f, uint64_t now_ms, const uint8_t doc_id[FLEET_ID_LEN])
{
    if (!f || !doc_id)
        return;
    s_doc_t *d = s_doc(f, doc_id);
    if (d && d->state == S_DOC_VERIFYING)
        s_doc_state(f, d, S_DOC_REJECTED);
}

void fleet_set_doc_reader(fleet_t *f, fleet_doc_reader_fn *fn, void *arg)
{
    if (!f)
        return;
    f->reader = fn;
    f->reader_arg = arg;
}

fleet_doc_state_t fleet_doc_state(const fleet_t *f, const uint8_t doc_id[FLEET_ID_LEN])
{
    if (!f || !doc_id)
        return FLEET_DOC_UNKNOWN;
    const s_doc_t *d = s_doc(f, doc_id);
    if (d && d->state != S_DOC_LOST)
        return d->state == S_DOC_HAVE        ? FLEET_DOC_ACCEPTED
               : d->state == S_DOC_VERIFYING ? FLEET_DOC_VERIFYING
                                             : FLEET_DOC_REJECTED;
    for (uint32_t k = 0; k < S_MAX_FETCHES; k++)
        if (f->fetch[k].active && memcmp(f->fetch[k].id, doc_id, FLEET_ID_LEN) == 0)
            return FLEET_DOC_FETCHING;
    for (uint32_t k = 0; k < f->n_wanted; k++)
        if (memcmp(f->wanted[k].id, doc_id, FLEET_ID_LEN) == 0)
            return FLEET_DOC_FETCHING;
    return FLEET_DOC_UNKNOWN;
}

bool fleet_msg_type_known(uint32_t wire_type)
{
    return wire_type == WIRE_PROGRESS || wire_type == WIRE_DIGEST || wire_type == WIRE_LEASE ||
           wire_type == WIRE_PLAN || wire_type == WIRE_HAVE;
}

int fleet_handle(fleet_t *f, uint64_t now_ms, const wire_msg_t *msg)
{
    if (!f || !msg)
        return GG_EINVAL;
    if (!fleet_msg_type_known(msg->type))
        return GG_EINVAL;
    if (s_is_self(f, msg->sender))
        return 0; /* our own message looped back: nothing to learn */
    if (msg->body.type != MSGPACK_OBJECT_MAP) {
        f->stats.malformed++;
        return GG_EMALFORMED;
    }
    s_member_t *from = s_member(f, msg->sender);
    int rc = 0;
    switch (msg->type) {
    case WIRE_PROGRESS: rc = s_on_progress(f, now_ms, msg); break;
    case WIRE_DIGEST: rc = s_on_digest(f, now_ms, msg, from); break;
    case WIRE_LEASE: {
        uint64_t seq;
        if (wire_get_u64(&msg->body, "seq", &seq) != 0)
            rc = GG_EMALFORMED;
        else
            f->stats.heartbeats_in++;
        break;
    }
    case WIRE_PLAN: rc = s_on_plan(f, now_ms, msg, from); break;
    case WIRE_HAVE: rc = s_on_have(f, now_ms, msg, from); break;
    default: break;
    }
    if (rc == GG_EMALFORMED) {
        f->stats.malformed++;
        return rc;
    }
    /* any well-formed message from a member is a sign of life (lease renewal) */
    if (from && from->last_heard < now_ms)
        from->last_heard = now_ms;
    return rc;
}

/* Push fanout and hop limit for the fleet's size. A change forwarded once by
 * each node that found it new, to F random peers, misses a given node with
 * probability about e^-F; for every node of N to have it by push alone (the
 * rest waits for anti-entropy) with probability 0.99, F > ln N + 4.6. The
 * hop limit lets the epidemic cover N: log_F N rounds and a margin. The
 * configured values are the minimums (small fleets: every peer). */
static void s_scale_push(fleet_t *f)
{
    uint32_t n = f->n_live_peers + 1;
    uint32_t ln = 0; /* ceil(ln n), in fixed point */
    for (uint64_t v = 1000; v < (uint64_t) n * 1000; v = v * 2718 / 1000)
        ln++;
    uint32_t fanout = ln + 5;
    if (fanout < f->cfg.push_fanout)
        fanout = f->cfg.push_fanout;
    if (fanout > S_MAX_FANOUT)
        fanout = S_MAX_FANOUT;
    uint32_t hops = 0;
    for (uint64_t reach = 1; reach < n; reach *= fanout)
        hops++;
    hops += 3;
    if (hops < f->cfg.max_hops)
        hops = f->cfg.max_hops;
    if (hops > S_MAX_HOPS)
        hops = S_MAX_HOPS;
    /* With lazy push, most of the peers get a 36-byte announcement per
     * change instead of the record: half as many peers again cost less than
     * the records did. It matters because an epidemic runs mostly in one
     * push round, in which a node is picked about Poisson(fanout) times: a
     * node picked by nobody in that round misses every change that round
     * carried until anti-entropy (measured at 1,000 nodes: p99 convergence
     * 9 s at fanout 12, 0.6 s at 18). */
    if (f->cfg.push_eager > 0 && f->cfg.push_eager < fanout)
        fanout += fanout / 2;
    if (fanout > S_MAX_FANOUT)
        fanout = S_MAX_FANOUT;
    f->push_fanout = fanout;
    f->max_hops = hops;
}

/* Adds mem index k to the heartbeat set unless it is there (or self). */
static void s_hb_add(const fleet_t *f, uint32_t *set, uint32_t *n, uint32_t cap, uint32_t k)
{
    if (s_is_self(f, f->mem[k].pub.id) || !f->mem[k].pub.address[0])
        return;
    for (uint32_t x = 0; x < *n; x++)
        if (set[x] == k)
            return;
    if (*n < cap)
        set[(*n)++] = k;
}

/* Lease renewal. Only a node that would take over one of our targets needs
 * to hear from us: for a holder live in its view, that is the owner of the
 * target among the members other than the holder (s_owned_without). So a
 * holder heartbeats those successors, as its own view names them, plus
 * push_fanout random peers (views that differ a little); in a small fleet
 * that is every peer. A successor that views the fleet differently for
 * longer than the lease may take over at epoch+1: fenced, as across a
 * partition. O(held + fanout) messages per node instead of O(N). */
static void s_heartbeat(fleet_t *f, uint64_t now)
{
    f->hb_at = now + f->cfg.lease_ttl_ms / 3;
    if (f->n_live_peers == 0)
        return;
    uint32_t cap = S_HB_MAX;
    uint32_t set[S_HB_MAX], n = 0;
    if (f->n_live_peers <= f->push_fanout + f->n_held) {
        for (uint32_t k = 0; k < f->n_live_peers && n < cap; k++)
            set[n++] = f->live_peers[k];
    } else {
        uint32_t peers[S_MAX_FANOUT];
        uint32_t np = s_pick_peers(f, f->push_fanout, peers);
        for (uint32_t k = 0; k < np; k++)
            s_hb_add(f, set, &n, cap, peers[k]);
        uint64_t self_seed = rendezvous_node_seed(f->self);
        for (uint32_t h = 0; h < f->n_held && n < cap; h++) {
            uint32_t ref = f->held[h];
            if (ref & S_DOC_BIT)
                continue;
            const s_plan_t *p = f->plans[ref >> S_PLAN_SHIFT];
            int64_t best = s_owner_without(f, p->t[ref & S_INDEX_MASK].key, self_seed);
            if (best >= 0)
                s_hb_add(f, set, &n, cap, f->own_mem[best]);
        }
    }
    wire_writer_t *w = wire_writer_new(WIRE_LEASE, f->self, 1);
    if (!w)
        return;
    wire_put_u64(w, "seq", ++f->hb_seq);
    if (s_send_peers(f, &w, WIRE_LEASE, set, n))
        f->stats.heartbeats_out += n;
}

void fleet_tick(fleet_t *f, uint64_t now_ms)
{
    if (!f)
        return;
    if (!f->synced && f->n_live_peers == 0 && f->alone_since != S_NEVER &&
        now_ms >= f->alone_since + f->cfg.lease_ttl_ms)
        s_set_synced(f);
    if (f->pull_out && now_ms >= f->pull_deadline) {
        f->pull_out = false;
        f->pull_at = now_ms;
    }
    if (!f->pull_out && now_ms >= f->pull_at) {
        if (f->n_live_peers > 0)
            s_pull_start(f, now_ms);
        else
            f->pull_at = now_ms + f->cfg.anti_entropy_interval_ms;
    }
    if (now_ms >= f->lease_wake) {
        f->lease_wake = S_NEVER;
        for (uint32_t k = 0; k < f->n_plans; k++)
            s_wake_takeover(f->plans[k]);
    }
    if (now_ms >= f->token_wake) {
        f->token_wake = S_NEVER;
        s_wake_all(f, false);
    }
    if (f->n_held > 0 && now_ms >= f->hb_at)
        s_heartbeat(f, now_ms);
    s_fetch_timeouts(f, now_ms);
    if (f->synced && !f->leaving && f->n_restored > 0)
        s_reclaim(f, now_ms);
    s_scan(f, now_ms);
    if (f->pq_n > 0 && now_ms >= f->push_at)
        s_push_round(f, now_ms);
    s_want_expire(f, now_ms);
    s_start_due(f, now_ms);
}

uint64_t fleet_next_deadline(const fleet_t *f)
{
    if (!f)
        return S_NEVER;
    uint64_t d = S_NEVER;
    if (f->synced && !f->leaving) {
        if (f->n_restored > 0 && s_reclaim_due(f))
            return 0;
        if (f->capacity > 0)
            for (uint32_t k = 0; k < f->n_plans; k++)
                if (f->plans[k]->scan_left > 0 || f->plans[k]->take_left > 0)
                    return 0;
    }
    if (!f->synced && f->n_live_peers == 0 && f->alone_since != S_NEVER)
        d = s_min(d, f->alone_since + f->cfg.lease_ttl_ms);
    if (f->pull_out)
        d = s_min(d, f->pull_deadline);
    else if (f->n_live_peers > 0)
        d = s_min(d, f->pull_at);
    d = s_min(d, f->lease_wake);
    d = s_min(d, f->token_wake);
    if (f->n_held > 0)
        d = s_min(d, f->hb_at);
    if (f->pq_n > 0)
        d = s_min(d, f->push_at);
    if (f->wq_n > 0)
        d = s_min(d, f->wq[f->wq_head].due);
    if (f->sq_n > 0)
        d = s_min(d, f->sq[f->sq_head].due);
    for (uint32_t k = 0; k < S_MAX_FETCHES; k++)
        if (f->fetch[k].active)
            d = s_min(d, f->fetch[k].progress_at + f->cfg.lease_ttl_ms / 2);
    return d;
}

void fleet_leave(fleet_t *f, uint64_t now_ms)
{
    if (!f || f->leaving)
        return;
    f->leaving = true;
    uint32_t n = f->n_held;
    uint32_t *refs = n > 0 ? malloc((size_t) n * sizeof *refs) : NULL;
    uint32_t got = 0;
    for (uint32_t k = f->n_held; k-- > 0;) {
        if (k >= f->n_held)
            continue;
        uint32_t ref = f->held[k];
        if (!s_handback(f, f->plans[ref >> S_PLAN_SHIFT], ref & S_INDEX_MASK, now_ms))
            continue;
        if (refs)
            refs[got++] = ref;
        else
            s_push_queue(f, ref, 0);
    }
    if (got > 0)
        s_send_items(f, refs, NULL, got, 0, f->live_peers, f->n_live_peers);
    free(refs);
}

bool fleet_leave_done(const fleet_t *f)
{
    return f && f->leaving && f->out_n == 0;
}

bool fleet_poll(fleet_t *f, fleet_out_t *out)
{
    if (!f || !out || f->out_n == 0)
        return false;
    *out = f->out[f->out_head];
    f->out_head = (f->out_head + 1) % f->out_cap;
    f->out_n--;
    if (f->out_n == 0) {
        f->out_head = 0;
        if (f->out_cap > 256) {
            free(f->out);
            f->out = NULL;
            f->out_cap = 0;
        }
    }
    return true;
}

void fleet_out_release(fleet_out_t *out)
{
    if (!out)
        return;
    if (out->type == FOUT_SEND)
        fleet_send_data_free(out->data);
    else
        free(out->data);
    memset(out, 0, sizeof *out);
}

const progress_rec_t *fleet_record(const fleet_t *f, const uint8_t plan_id[FLEET_ID_LEN],
                                   uint32_t index)
{
    if (!f)
        return NULL;
    const s_plan_t *p = s_plan(f, plan_id);
    if (!p || index >= p->n)
        return NULL;
    return &p->t[index].rec;
}

int fleet_plan_stats(const fleet_t *f, const uint8_t plan_id[FLEET_ID_LEN], fleet_plan_stats_t *out)
{
    if (!f || !out)
        return GG_EINVAL;
    const s_plan_t *p = s_plan(f, plan_id);
    if (!p)
        return GG_ENOTFOUND;
    memset(out, 0, sizeof *out);
    memcpy(out->counts, p->counts, sizeof out->counts);
    out->counts[TARGET_PENDING] -= p->gated_waiting;
    out->counts[TARGET_AWAITING_APPROVAL] += p->gated_waiting;
    if (p->control == FLEET_PLAN_CANCELLED) {
        static const target_state_t live[] = {TARGET_PENDING, TARGET_AWAITING_APPROVAL,
                                              TARGET_RUNNING, TARGET_RETRY_WAIT};
        for (size_t k = 0; k < sizeof live / sizeof live[0]; k++) {
            out->counts[TARGET_CANCELLED] += out->counts[live[k]];
            out->counts[live[k]] = 0;
        }
    }
    out->total = p->n;
    out->auto_paused = s_auto_paused(p);
    out->completed = s_completed(p);
    out->running_here = p->running_self;
    return 0;
}

int fleet_owner_of(const fleet_t *f, uint64_t key)
{
    if (!f || f->n_own == 0)
        return -1;
    return (int) f->own_orig[rendezvous_owner(f->own_seeds, f->n_own, key)];
}

bool fleet_synced(const fleet_t *f)
{
    return f && f->synced;
}

const fleet_stats_t *fleet_stats(const fleet_t *f)
{
    return f ? &f->stats : NULL;
}

size_t fleet_memory(const fleet_t *f)
{
    if (!f)
        return 0;
    size_t b = sizeof *f;
    for (uint32_t k = 0; k < f->n_plans; k++) {
        const s_plan_t *p = f->plans[k];
        b += sizeof *p +
             (size_t) (p->n > 0 ? p->n : 1) * (sizeof *p->t + sizeof *p->vd + sizeof *p->seq) +
             (size_t) S_BITS * (p->words > 0 ? p->words : 1) * sizeof(uint64_t) +
             (p->owner_rank ? (size_t) (p->n > 0 ? p->n : 1) * sizeof *p->owner_rank : 0) +
             (size_t) p->load_n * sizeof *p->load;
    }
    b += s_ix_bytes(&f->plan_ix) + s_ix_bytes(&f->mem_ix) + s_ix_bytes(&f->doc_ix) +
         s_ix_bytes(&f->orphan_ix);
    b += (size_t) f->n_mem * (sizeof *f->mem + sizeof *f->live_peers + sizeof *f->own_seeds +
                              sizeof *f->own_orig + sizeof *f->own_mem) +
         f->mem_addr_len;
    b += (size_t) f->held_cap * sizeof *f->held;
    b += f->orphans ? (size_t) S_MAX_ORPHANS * sizeof *f->orphans : 0;
    b += (size_t) f->docs_cap * sizeof *f->docs;
    b += f->wanted ? S_MAX_WANTED * sizeof *f->wanted : 0;
    b += (size_t) f->pq_cap * sizeof *f->pq;
    b += (size_t) f->out_cap * sizeof *f->out;
    for (uint32_t k = 0; k < S_MAX_FETCHES; k++)
        if (f->fetch[k].active)
            b += f->fetch[k].size + f->fetch[k].n_chunks;
    return b;
}
