/*
 * membership.c: SWIM + Lifeguard membership as a pure state machine.
 *
 * Design notes
 * ------------
 * Behaviour follows HashiCorp memberlist (state.go, suspicion.go,
 * awareness.go) with the additions DESIGN.md §2 asks for; see membership.h
 * for the contract. Nothing here reads a clock, does I/O or logs: inputs
 * carry now_ms and every effect is an output the driver drains.
 *
 * Member states (another member, as this node sees it):
 *
 *                 suspect(j>=i)            suspicion expires / dead(j>=i)
 *      ALIVE(i) ----------------> SUSPECT(j) --------------------------> DEAD(j)
 *         ^  ^   alive(j>i)          |                                  |  |
 *         |  +-----------------------+          dead/left(j>=i)         |  | force-leave,
 *         |                    left(j>=i)  ALIVE/SUSPECT ----> DEAD/LEFT|  | left(j>=i)
 *         |      alive(j>i)                                             |  v
 *         +-------------------------------------------------------------+ LEFT(j)
 *                                 reap_ms after the death: forgotten (MOUT_REMOVED)
 *
 *   transition                  | performed by
 *   ----------------------------+------------------------------------------
 *   (new) -> ALIVE              | s_apply: alive about an unknown member
 *   ALIVE -> SUSPECT            | s_apply (suspect j >= i), s_probe_fail
 *   SUSPECT -> SUSPECT (faster) | s_confirm: a new independent accuser
 *   SUSPECT -> DEAD             | s_suspicion_expired, s_apply (dead j >= i)
 *   ALIVE/SUSPECT/DEAD -> LEFT  | s_apply (left j >= i), force_leave (DEAD only)
 *   any -> ALIVE                | s_apply (alive j > i)
 *   DEAD/LEFT -> (forgotten)    | s_reap, reap_ms after the state change
 *
 * Precedence (update state(j) against the current record at incarnation i):
 * alive(j) wins iff j > i; suspect(j) wins over alive iff j >= i; dead/left(j)
 * win over alive/suspect iff j >= i; left(j) also over dead iff j >= i.
 * Updates about an unknown member are ignored unless alive. In a push-pull
 * merge a remote DEAD is taken as SUSPECT (accused by the remote node), as
 * memberlist does, so a node with a stale view cannot kill a live one at
 * once: the accused gets the chance to refute.
 *
 * Self: any suspect/dead/left claim about us at >= our incarnation, or an
 * alive claim at a higher incarnation (or the same one with other
 * fields), is refuted by moving to max(claim, ours) + 1 (MOUT_INCARNATION,
 * health +1). After membership_leave nothing is refuted any more.
 *
 * Restored members (membership_restore) are "hints": DEAD records that are
 * never gossiped nor sent in a SYNC, are contacted to join and reconnect, and
 * are replaced wholesale by any news at an incarnation >= theirs.
 *
 * Probe cycle (one at a time, memberlist's probeNode):
 *   start: PING the next member of the shuffled round robin (alive and
 *          suspect members; a new member is inserted at a random position
 *          not yet probed this round; the order is reshuffled at each wrap);
 *   +probe_timeout*(h+1): no ACK -> PING_REQ to indirect_checks random alive
 *          members, who PING the target and relay its ACK or send a NACK;
 *   +probe_interval*(h+1): no ACK -> health += missing NACKs (or +1 when no
 *          helper was available), and the target is suspected by us.
 *   An ACK ends the probe (health -1). The next probe starts one scaled
 *   interval after the previous one started.
 *
 * Data layout (sized for a simulator running 1,000 instances of 1,000
 * members): members live in stable slots, found by id through an open
 * addressing table; index sets with O(1) add/remove hold all members, the
 * live ones (the probe ring and sampling pool), the dead ones (reconnect
 * candidates) and the recently dead (gossiped to for gossip_to_dead_ms). Each
 * member has at most one timer (suspicion expiry or reap) in one indexed
 * min-heap. Pending broadcasts are one per member, in lists bucketed by
 * transmit count, so picking the fewest-transmitted is O(picked). The
 * checksum is a sum of per-member hashes kept up to date on every change.
 * Per tick the work is O(fanout + due timers); O(N) work happens only when
 * building or merging a full state (SYNC) and reshuffling the probe ring
 * once per round.
 */
#include "membership.h"

#include "gg_error.h"
#include "rng.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S_NONE                UINT32_MAX
#define S_NEVER               UINT64_MAX
#define S_BC_BUCKETS          128 /* > max retransmit limit: 16 * ceil(log10(65537)) */
#define S_MAX_RETRANSMIT_MULT 16
#define S_PICK_SCAN           64   /* below this pool size, sample exactly */
#define S_JOIN_HINTS          3    /* restored members contacted per join attempt */
#define S_PUSH_PULL_SCALE_N   32   /* memberlist's pushPullScaleThreshold */
#define S_SYNC_HEADER_BYTES   1024 /* envelope and sender fields, generously */
#define S_SYNC_BYTES          (WIRE_MAX_MESSAGE - S_SYNC_HEADER_BYTES)
#define S_OUT_CAP_MAX         ((uint32_t) MEMBERSHIP_MAX_MEMBERS * 2u + 4096u)

enum { S_SET_ALL = 0, S_SET_LIVE, S_SET_DEAD, S_SET_RECENT, S_SET_COUNT };

typedef struct {
    uint8_t accuser[MEMBER_ID_LEN]; /* named when this suspicion is gossiped */
    uint8_t seen[MEMBERSHIP_MAX_INDIRECT + 1][MEMBER_ID_LEN]; /* accusers counted */
    uint32_t n_seen;
    uint32_t confirmations; /* independent confirmations after the first accuser */
    uint32_t k;             /* confirmations that drive the timeout to its minimum */
    uint64_t start_ms, min_ms, max_ms;
} s_suspicion_t;

/* What the id table and every update read, kept apart from the records
 * (s_member_t, 450 bytes, most of them name and address) in an array of
 * its own: at 1,000 members a SYNC_REPLY checks 1,000 updates, and most of
 * them only to find nothing new. Its id, state and incarnation repeat the
 * record's; s_add_member and s_change write both. */
typedef struct {
    uint8_t id[MEMBER_ID_LEN];
    uint64_t incarnation;
    member_state_t state;
    bool hint; /* restored from the store, unconfirmed */
} s_hot_t;

typedef struct {
    member_t pub;
    s_suspicion_t *susp; /* SUSPECT only */
    uint64_t timer_at;   /* heap key: suspicion expiry or reap time */
    uint32_t heap_pos;
    uint32_t pos[S_SET_COUNT];
    bool in_use;
} s_member_t;

/* A member's place in the broadcast queue (one per slot, apart from the
 * records: picking a message's updates walks these lists, and through the
 * records it took a cache miss per step). */
typedef struct {
    uint32_t prev, next; /* bucket list of its transmit count */
    uint32_t transmits;
    bool queued;
} s_bc_t;

typedef struct {
    uint64_t ping_seq; /* our PING to the target */
    uint64_t orig_seq; /* the requester's probe */
    uint64_t deadline_ms;
    uint8_t requester[MEMBER_ID_LEN];
    uint8_t target[MEMBER_ID_LEN];
    char requester_address[MEMBER_ADDRESS_MAX + 1];
} s_relay_t;

typedef struct {
    bool active;
    bool indirect_sent;
    uint8_t target[MEMBER_ID_LEN];
    uint64_t incarnation; /* the target's, when the probe started */
    uint64_t seq;
    uint64_t timeout_at, end_at;
    uint32_t n_peers, nacks;
    uint8_t peers[MEMBERSHIP_MAX_INDIRECT][MEMBER_ID_LEN];
    bool nacked[MEMBERSHIP_MAX_INDIRECT];
} s_probe_t;

typedef struct {
    uint32_t *v;
    uint32_t n, cap;
} s_vec_t;

struct _membership_t {
    membership_profile_t p;
    rng_t rng;
    uint32_t self_slot;

    s_member_t *slots;
    s_hot_t *hot;                /* one per slot */
    s_bc_t *bc;                  /* one per slot */
    uint32_t slots_n, slots_cap; /* high-water mark and allocation */
    s_vec_t free_slots;
    uint64_t *hash; /* s_entry(): hash tag and slot + 1; 0 = empty */
    uint32_t hash_cap, hash_n;
    s_vec_t set[S_SET_COUNT];
    uint32_t probe_index; /* next position of the LIVE set to probe */
    s_vec_t heap;
    uint32_t bc_head[S_BC_BUCKETS];
    size_t bc_count;

    uint64_t checksum;
    uint32_t health;
    uint64_t seq;
    s_probe_t probe;
    s_relay_t *relays; /* ordered by deadline */
    uint32_t relays_n, relays_cap;

    uint64_t probe_next, gossip_next, push_pull_next, reconnect_next, join_next;
    uint32_t join_backoff;
    bool joined;
    bool left;
    char (*seeds)[MEMBER_ADDRESS_MAX + 1];
    uint32_t seeds_n;

    membership_out_t *out;
    uint32_t out_head, out_n, out_cap;
    membership_stats_t stats;
};

/* ------------------------------------------------------------------ */
/* profiles                                                           */

const char *member_state_name(member_state_t state)
{
    switch (state) {
    case MEMBER_ALIVE: return "alive";
    case MEMBER_SUSPECT: return "suspect";
    case MEMBER_DEAD: return "dead";
    case MEMBER_LEFT: return "left";
    }
    return "unknown";
}

int membership_profile_get(const char *name, membership_profile_t *out)
{
    if (!name || !out)
        return GG_EINVAL;
    /* memberlist DefaultLANConfig */
    membership_profile_t p = {
        .probe_interval_ms = 1000,
        .probe_timeout_ms = 500,
        .gossip_interval_ms = 200,
        .gossip_fanout = 3,
        .indirect_checks = 3,
        .suspicion_mult = 4,
        .suspicion_max_timeout_mult = 6,
        .retransmit_mult = 4,
        .push_pull_interval_ms = 30000,
        .awareness_max = 8,
        .gossip_to_dead_ms = 30000,
        .reconnect_interval_ms = 30000,
        .reap_ms = 24ull * 3600 * 1000,
        .max_piggyback = 32,
        .join_backoff_min_ms = 1000,
        .join_backoff_max_ms = 30000,
    };
    if (strcmp(name, "lan") == 0) {
        /* as above */
    } else if (strcmp(name, "wan") == 0) {
        /* memberlist DefaultWANConfig */
        p.suspicion_mult = 6;
        p.push_pull_interval_ms = 60000;
        p.probe_timeout_ms = 3000;
        p.probe_interval_ms = 5000;
        p.gossip_fanout = 4;
        p.gossip_interval_ms = 500;
        p.gossip_to_dead_ms = 60000;
        p.reconnect_interval_ms = 60000;
    } else if (strcmp(name, "test") == 0) {
        p.probe_interval_ms = 100;
        p.probe_timeout_ms = 50;
        p.gossip_interval_ms = 20;
        p.push_pull_interval_ms = 3000;
        p.gossip_to_dead_ms = 3000;
        p.reconnect_interval_ms = 3000;
        p.join_backoff_min_ms = 100;
        p.join_backoff_max_ms = 3000;
    } else {
        return GG_EINVAL;
    }
    *out = p;
    return 0;
}

int membership_profile_check(const membership_profile_t *p)
{
    if (!p)
        return GG_EINVAL;
    if (p->probe_interval_ms == 0 || p->probe_timeout_ms == 0 ||
        p->probe_timeout_ms >= p->probe_interval_ms || p->gossip_interval_ms == 0 ||
        p->push_pull_interval_ms == 0 || p->reconnect_interval_ms == 0 ||
        p->join_backoff_min_ms == 0 || p->join_backoff_max_ms < p->join_backoff_min_ms)
        return GG_EINVAL;
    if (p->gossip_fanout == 0 || p->gossip_fanout > MEMBERSHIP_MAX_INDIRECT ||
        p->indirect_checks > MEMBERSHIP_MAX_INDIRECT)
        return GG_EINVAL;
    if (p->suspicion_mult == 0 || p->suspicion_max_timeout_mult == 0 ||
        p->suspicion_max_timeout_mult > 1000 || p->suspicion_mult > 1000)
        return GG_EINVAL;
    if (p->retransmit_mult == 0 || p->retransmit_mult > S_MAX_RETRANSMIT_MULT)
        return GG_EINVAL;
    if (p->awareness_max == 0 || p->awareness_max > 1000)
        return GG_EINVAL;
    if (p->max_piggyback == 0 || p->max_piggyback > MEMBERSHIP_MAX_PIGGYBACK)
        return GG_EINVAL;
    if (p->reap_ms == 0)
        return GG_EINVAL;
    return 0;
}

/* ------------------------------------------------------------------ */
/* small helpers                                                      */

static bool s_is_live(member_state_t s)
{
    return s == MEMBER_ALIVE || s == MEMBER_SUSPECT;
}

/* Platform-independent: checksums are compared between nodes. */
static uint64_t s_id_hash(const uint8_t id[MEMBER_ID_LEN])
{
    uint64_t h = 0x6761676c65ull; /* "gagle" */
    for (size_t i = 0; i < MEMBER_ID_LEN; i += 8)
        h = rng_mix64(h ^ wire_get_le(id + i, 8));
    return h;
}

static uint64_t s_member_hash(const member_t *p)
{
    return rng_mix64(s_id_hash(p->id) ^ rng_mix64(0x9e3779b97f4a7c15ull + p->flags));
}

static bool s_id_eq(const uint8_t *a, const uint8_t *b)
{
    return memcmp(a, b, MEMBER_ID_LEN) == 0;
}

static void s_copy_str(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static uint64_t s_add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t s_scaled(const membership_t *m, uint64_t base)
{
    return base * ((uint64_t) m->health + 1);
}

static void s_health_delta(membership_t *m, int delta)
{
    int64_t h = (int64_t) m->health + delta;
    if (h < 0)
        h = 0;
    if (h > (int64_t) m->p.awareness_max - 1)
        h = (int64_t) m->p.awareness_max - 1;
    m->health = (uint32_t) h;
}

static s_member_t *s_self(membership_t *m)
{
    return &m->slots[m->self_slot];
}

static size_t s_live_count(const membership_t *m)
{
    const member_t *self = &m->slots[m->self_slot].pub;
    return m->set[S_SET_LIVE].n + (s_is_live(self->state) ? 1 : 0);
}

/* memberlist retransmitLimit: mult * ceil(log10(n + 1)). */
static uint32_t s_retransmit_limit(const membership_t *m)
{
    double scale = ceil(log10((double) s_live_count(m) + 1.0));
    uint32_t limit = m->p.retransmit_mult * (uint32_t) (scale < 1.0 ? 1.0 : scale);
    return limit >= S_BC_BUCKETS ? S_BC_BUCKETS - 1 : limit;
}

/* memberlist pushPullScale: slower push-pull above 32 live members. */
static uint64_t s_push_pull_interval(const membership_t *m)
{
    size_t n = s_live_count(m);
    uint64_t interval = m->p.push_pull_interval_ms;
    if (n <= S_PUSH_PULL_SCALE_N)
        return interval;
    double mult = ceil(log2((double) n) - log2((double) S_PUSH_PULL_SCALE_N)) + 1.0;
    return interval * (uint64_t) mult;
}

/* memberlist suspicionTimeout: mult * max(1, log10(n)) * probe interval. */
static uint64_t s_suspicion_min(const membership_t *m, size_t n)
{
    double scale = log10((double) (n < 1 ? 1 : n));
    if (scale < 1.0)
        scale = 1.0;
    return (uint64_t) floor((double) m->p.suspicion_mult * scale * (double) m->p.probe_interval_ms);
}

static uint64_t s_next_period(uint64_t prev, uint64_t interval, uint64_t now)
{
    uint64_t next = s_add_sat(prev, interval);
    return next <= now ? s_add_sat(now, interval) : next;
}

/* ------------------------------------------------------------------ */
/* vectors and index sets                                             */

static int s_vec_reserve(s_vec_t *v, uint32_t want)
{
    if (want <= v->cap)
        return 0;
    uint32_t cap = v->cap ? v->cap : 8;
    while (cap < want)
        cap *= 2;
    uint32_t *nv = realloc(v->v, (size_t) cap * sizeof *nv);
    if (!nv)
        return GG_ENOMEM;
    v->v = nv;
    v->cap = cap;
    return 0;
}

static void s_set_swap(membership_t *m, int set, uint32_t a, uint32_t b)
{
    s_vec_t *v = &m->set[set];
    uint32_t sa = v->v[a], sb = v->v[b];
    v->v[a] = sb;
    v->v[b] = sa;
    m->slots[sb].pos[set] = a;
    m->slots[sa].pos[set] = b;
}

static int s_set_add(membership_t *m, int set, uint32_t slot)
{
    s_vec_t *v = &m->set[set];
    if (m->slots[slot].pos[set] != S_NONE)
        return 0;
    if (s_vec_reserve(v, v->n + 1) != 0)
        return GG_ENOMEM;
    v->v[v->n] = slot;
    m->slots[slot].pos[set] = v->n;
    v->n++;
    return 0;
}

static void s_set_remove(membership_t *m, int set, uint32_t slot)
{
    s_vec_t *v = &m->set[set];
    uint32_t p = m->slots[slot].pos[set];
    if (p == S_NONE)
        return;
    if (set == S_SET_LIVE && p < m->probe_index) {
        /* Keep the "already probed this round" prefix intact: move the
         * removed member to the end of the prefix, shrink the prefix, then
         * fill its place with the last member (not yet probed). */
        s_set_swap(m, set, p, m->probe_index - 1);
        p = m->probe_index - 1;
        m->probe_index--;
    }
    s_set_swap(m, set, p, v->n - 1);
    v->n--;
    m->slots[slot].pos[set] = S_NONE;
}

/* A new live member goes to a random position not yet probed this round
 * (memberlist inserts at a random offset so detection stays fast). */
static int s_live_add(membership_t *m, uint32_t slot)
{
    s_vec_t *v = &m->set[S_SET_LIVE];
    if (m->slots[slot].pos[S_SET_LIVE] != S_NONE)
        return 0;
    int rc = s_set_add(m, S_SET_LIVE, slot);
    if (rc != 0)
        return rc;
    uint32_t lo = m->probe_index <= v->n - 1 ? m->probe_index : v->n - 1;
    uint32_t r = lo + (uint32_t) rng_below(&m->rng, v->n - lo);
    s_set_swap(m, S_SET_LIVE, r, v->n - 1);
    return 0;
}

static void s_live_shuffle(membership_t *m)
{
    s_vec_t *v = &m->set[S_SET_LIVE];
    for (uint32_t i = v->n; i > 1; i--) {
        uint32_t j = (uint32_t) rng_below(&m->rng, i);
        s_set_swap(m, S_SET_LIVE, i - 1, j);
    }
}

/* ------------------------------------------------------------------ */
/* timer heap (one timer per member)                                  */

static bool s_heap_less(const membership_t *m, uint32_t a, uint32_t b)
{
    return m->slots[m->heap.v[a]].timer_at < m->slots[m->heap.v[b]].timer_at;
}

static void s_heap_swap(membership_t *m, uint32_t a, uint32_t b)
{
    uint32_t sa = m->heap.v[a], sb = m->heap.v[b];
    m->heap.v[a] = sb;
    m->heap.v[b] = sa;
    m->slots[sb].heap_pos = a;
    m->slots[sa].heap_pos = b;
}

static void s_heap_up(membership_t *m, uint32_t i)
{
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!s_heap_less(m, i, parent))
            break;
        s_heap_swap(m, i, parent);
        i = parent;
    }
}

static void s_heap_down(membership_t *m, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, best = i;
        if (l < m->heap.n && s_heap_less(m, l, best))
            best = l;
        if (r < m->heap.n && s_heap_less(m, r, best))
            best = r;
        if (best == i)
            break;
        s_heap_swap(m, i, best);
        i = best;
    }
}

static void s_heap_remove(membership_t *m, uint32_t slot)
{
    uint32_t i = m->slots[slot].heap_pos;
    if (i == S_NONE)
        return;
    uint32_t last = m->heap.n - 1;
    if (i != last) {
        s_heap_swap(m, i, last);
        m->heap.n--;
        s_heap_down(m, i);
        s_heap_up(m, i);
    } else {
        m->heap.n--;
    }
    m->slots[slot].heap_pos = S_NONE;
}

static void s_heap_set(membership_t *m, uint32_t slot, uint64_t at)
{
    s_member_t *mem = &m->slots[slot];
    mem->timer_at = at;
    if (mem->heap_pos == S_NONE) {
        if (s_vec_reserve(&m->heap, m->heap.n + 1) != 0) {
            /* Cannot happen once the heap has room for every member (it is
             * reserved with the slots); degrade by leaving no timer. */
            return;
        }
        m->heap.v[m->heap.n] = slot;
        mem->heap_pos = m->heap.n;
        m->heap.n++;
    }
    s_heap_up(m, mem->heap_pos);
    s_heap_down(m, mem->heap_pos);
}

/* ------------------------------------------------------------------ */
/* id table                                                           */

/* A table entry: the id hash's upper half, compared before the id (whose
 * record is elsewhere, likely out of the cache), and slot + 1. */
static uint64_t s_entry(uint64_t h, uint32_t slot)
{
    return (h >> 32) << 32 | (uint64_t) (slot + 1);
}

static uint32_t s_entry_slot(uint64_t e)
{
    return (uint32_t) e - 1;
}

/* The slot of id, whose s_id_hash is h; S_NONE when unknown. */
static uint32_t s_find_hashed(const membership_t *m, const uint8_t id[MEMBER_ID_LEN], uint64_t h)
{
    uint32_t mask = m->hash_cap - 1;
    for (uint32_t i = (uint32_t) h & mask; m->hash[i]; i = (i + 1) & mask) {
        uint64_t e = m->hash[i];
        if (e >> 32 == h >> 32 && s_id_eq(m->hot[s_entry_slot(e)].id, id))
            return s_entry_slot(e);
    }
    return S_NONE;
}

static uint32_t s_find(const membership_t *m, const uint8_t id[MEMBER_ID_LEN])
{
    return s_find_hashed(m, id, s_id_hash(id));
}

/* Updates are applied one after another, but their table entries and
 * records are fetched ahead: a SYNC_REPLY names every member and a gossip
 * message a dozen, each in a cold part of a large table, and waiting for
 * those misses one at a time was most of a message's cost. The hashes of
 * the updates ahead are kept in a ring. */
#define S_AHEAD 8             /* updates between a record's fetch and its use */
#define S_RING  (2 * S_AHEAD) /* hashes of the updates in flight */

static void s_fetch_bucket(const membership_t *m, uint64_t h)
{
    __builtin_prefetch(&m->hash[(uint32_t) h & (m->hash_cap - 1)]);
}

/* Fetches the hot record of the entry whose tag matches, if any (the
 * table's next entries are usually in the bucket's cache line). */
static void s_fetch_slot(const membership_t *m, uint64_t h)
{
    uint32_t mask = m->hash_cap - 1;
    for (uint32_t i = (uint32_t) h & mask; m->hash[i]; i = (i + 1) & mask) {
        if (m->hash[i] >> 32 == h >> 32) {
            const char *hot = (const char *) &m->hot[s_entry_slot(m->hash[i])];
            __builtin_prefetch(hot);
            __builtin_prefetch(hot + sizeof(s_hot_t) - 1); /* it may straddle two lines */
            return;
        }
    }
}

static void s_hash_put(uint64_t *table, uint32_t cap, uint64_t h, uint32_t slot)
{
    uint32_t mask = cap - 1;
    uint32_t i = (uint32_t) h & mask;
    while (table[i])
        i = (i + 1) & mask;
    table[i] = s_entry(h, slot);
}

static int s_hash_insert(membership_t *m, uint32_t slot)
{
    if ((m->hash_n + 1) * 2 > m->hash_cap) {
        uint32_t cap = m->hash_cap * 2;
        uint64_t *t = calloc(cap, sizeof *t);
        if (!t)
            return GG_ENOMEM;
        for (uint32_t i = 0; i < m->hash_cap; i++) {
            if (!m->hash[i])
                continue;
            uint32_t k = s_entry_slot(m->hash[i]);
            s_hash_put(t, cap, s_id_hash(m->hot[k].id), k);
        }
        free(m->hash);
        m->hash = t;
        m->hash_cap = cap;
    }
    s_hash_put(m->hash, m->hash_cap, s_id_hash(m->hot[slot].id), slot);
    m->hash_n++;
    return 0;
}

/* Linear probing deletion by backward shift: no tombstones. */
static void s_hash_remove(membership_t *m, uint32_t slot)
{
    uint32_t mask = m->hash_cap - 1;
    uint32_t i = (uint32_t) s_id_hash(m->hot[slot].id) & mask;
    while (m->hash[i] && s_entry_slot(m->hash[i]) != slot)
        i = (i + 1) & mask;
    if (!m->hash[i])
        return;
    m->hash[i] = 0;
    m->hash_n--;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!m->hash[j])
            break;
        uint32_t home = (uint32_t) s_id_hash(m->hot[s_entry_slot(m->hash[j])].id) & mask;
        /* Move j back to i unless its home lies cyclically in (i, j]. */
        bool in_range = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!in_range) {
            m->hash[i] = m->hash[j];
            m->hash[j] = 0;
            i = j;
        }
    }
}

/* ------------------------------------------------------------------ */
/* outputs                                                            */

static membership_out_t *s_out_push(membership_t *m)
{
    if (m->out_n == m->out_cap) {
        if (m->out_cap >= S_OUT_CAP_MAX) {
            m->stats.outputs_dropped++;
            return NULL;
        }
        uint32_t cap = m->out_cap ? m->out_cap * 2 : 16;
        if (cap > S_OUT_CAP_MAX)
            cap = S_OUT_CAP_MAX;
        membership_out_t *no = malloc((size_t) cap * sizeof *no);
        if (!no) {
            m->stats.outputs_dropped++;
            return NULL;
        }
        for (uint32_t i = 0; i < m->out_n; i++)
            no[i] = m->out[(m->out_head + i) % m->out_cap];
        free(m->out);
        m->out = no;
        m->out_cap = cap;
        m->out_head = 0;
    }
    membership_out_t *o = &m->out[(m->out_head + m->out_n) % m->out_cap];
    m->out_n++;
    memset(o, 0, sizeof *o);
    return o;
}

static void s_emit_changed(membership_t *m, uint32_t slot, bool added, member_state_t old_state)
{
    membership_out_t *o = s_out_push(m);
    if (!o)
        return;
    o->type = MOUT_CHANGED;
    o->member = m->slots[slot].pub;
    o->added = added;
    o->old_state = added ? m->slots[slot].pub.state : old_state;
}

static void s_emit_incarnation(membership_t *m)
{
    membership_out_t *o = s_out_push(m);
    if (!o)
        return;
    o->type = MOUT_INCARNATION;
    o->incarnation = s_self(m)->pub.incarnation;
}

/* Queues msg (taking it) for to_address; to_id may be NULL (seed), and
 * slot is to_id's (S_NONE when it is not a member). */
static void s_emit_send(membership_t *m, uint32_t slot, const uint8_t *to_id,
                        const char *to_address, membership_msg_t *msg)
{
    if (!msg)
        return;
    if (!to_address || !to_address[0]) {
        membership_msg_destroy(&msg);
        return;
    }
    membership_out_t *o = s_out_push(m);
    if (!o) {
        membership_msg_destroy(&msg);
        return;
    }
    o->type = MOUT_SEND;
    if (to_id) {
        o->to_id_known = true;
        memcpy(o->to_id, to_id, MEMBER_ID_LEN);
    }
    /* version 2 to a member that reads it, when this node speaks it; a
     * seed known by address only, or an older node, gets version 1 */
    msg->wire_version = slot != S_NONE && (m->slots[slot].pub.flags & MEMBER_FLAG_WIRE2) &&
                                (s_self(m)->pub.flags & MEMBER_FLAG_WIRE2)
                            ? 2
                            : WIRE_MIN_VERSION;
    s_copy_str(o->to_address, sizeof o->to_address, to_address);
    o->msg = msg;
}

static void s_send_to(membership_t *m, uint32_t slot, membership_msg_t *msg)
{
    s_emit_send(m, slot, m->slots[slot].pub.id, m->slots[slot].pub.address, msg);
}

/* ------------------------------------------------------------------ */
/* broadcasts: one pending update per member, bucketed by transmits   */

static void s_bc_unlink(membership_t *m, uint32_t slot)
{
    s_bc_t *b = &m->bc[slot];
    if (!b->queued)
        return;
    if (b->prev != S_NONE)
        m->bc[b->prev].next = b->next;
    else
        m->bc_head[b->transmits] = b->next;
    if (b->next != S_NONE)
        m->bc[b->next].prev = b->prev;
    b->prev = b->next = S_NONE;
    b->queued = false;
    m->bc_count--;
}

static void s_bc_link(membership_t *m, uint32_t slot, uint32_t transmits)
{
    s_bc_t *b = &m->bc[slot];
    b->transmits = transmits;
    b->prev = S_NONE;
    b->next = m->bc_head[transmits];
    if (b->next != S_NONE)
        m->bc[b->next].prev = slot;
    m->bc_head[transmits] = slot;
    b->queued = true;
    m->bc_count++;
}

/* (Re)queues the member's current record, replacing any older one. */
static void s_bc_queue(membership_t *m, uint32_t slot)
{
    if (m->hot[slot].hint)
        return;
    s_bc_unlink(m, slot);
    s_bc_link(m, slot, 0);
}

/* Collects up to max queued members, fewest transmits first (newest first
 * within a count), skipping `skip`. Drops those over the current limit. */
static uint32_t s_bc_collect(membership_t *m, uint32_t *picked, uint32_t max, uint32_t skip)
{
    uint32_t limit = s_retransmit_limit(m);
    for (uint32_t b = limit; b < S_BC_BUCKETS; b++)
        while (m->bc_head[b] != S_NONE)
            s_bc_unlink(m, m->bc_head[b]);
    uint32_t n = 0;
    for (uint32_t b = 0; b < limit && n < max; b++)
        for (uint32_t s = m->bc_head[b]; s != S_NONE && n < max; s = m->bc[s].next)
            if (s != skip)
                picked[n++] = s;
    return n;
}

static void s_bc_commit(membership_t *m, const uint32_t *picked, uint32_t n)
{
    uint32_t limit = s_retransmit_limit(m);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t s = picked[i];
        uint32_t t = m->bc[s].transmits + 1;
        s_bc_unlink(m, s);
        if (t < limit)
            s_bc_link(m, s, t);
    }
}

/* ------------------------------------------------------------------ */
/* messages                                                           */

/* Strings are copied up to their NUL only: this runs for every update sent. */
static void s_fill_update(const s_member_t *mem, member_update_t *u)
{
    memcpy(u->id, mem->pub.id, MEMBER_ID_LEN);
    s_copy_str(u->name, sizeof u->name, mem->pub.name);
    s_copy_str(u->address, sizeof u->address, mem->pub.address);
    u->state = mem->pub.state;
    u->incarnation = mem->pub.incarnation;
    u->flags = mem->pub.flags;
    u->has_accuser = mem->pub.state == MEMBER_SUSPECT && mem->susp;
    if (u->has_accuser)
        memcpy(u->accuser, mem->susp->accuser, MEMBER_ID_LEN);
}

static membership_msg_t *s_msg_new(membership_t *m, uint32_t type, uint32_t n_updates)
{
    membership_msg_t *msg = membership_msg_new(type, n_updates);
    if (!msg)
        return NULL;
    s_fill_update(s_self(m), &msg->sender);
    msg->checksum = m->checksum;
    return msg;
}

/* A message carrying piggybacked updates for the member in to_slot (S_NONE
 * for an address-only peer). A peer we believe suspect or dead first gets its
 * own record, so it can refute. */
static membership_msg_t *s_msg_piggyback(membership_t *m, uint32_t type, uint32_t to_slot)
{
    uint32_t picked[MEMBERSHIP_MAX_PIGGYBACK];
    bool force = to_slot != S_NONE && to_slot != m->self_slot && !m->hot[to_slot].hint &&
                 m->slots[to_slot].pub.state != MEMBER_ALIVE;
    uint32_t room = m->p.max_piggyback - (force ? 1 : 0);
    uint32_t n = s_bc_collect(m, picked, room, force ? to_slot : S_NONE);
    membership_msg_t *msg = s_msg_new(m, type, n + (force ? 1 : 0));
    if (!msg)
        return NULL;
    if (force)
        s_fill_update(&m->slots[to_slot], &msg->updates[msg->n_updates++]);
    for (uint32_t i = 0; i < n; i++)
        s_fill_update(&m->slots[picked[i]], &msg->updates[msg->n_updates++]);
    /* The forced record counts as a transmission of its queued broadcast. */
    if (force && m->bc[to_slot].queued)
        picked[n++] = to_slot;
    s_bc_commit(m, picked, n);
    return msg;
}

/* Upper bound of one update's encoded size (membership_codec.c: a 7-element
 * array of bin32, str, str, uint, uint64, uint32, bin32). */
static size_t s_update_wire_size(const member_t *p)
{
    return 89 + strlen(p->name) + strlen(p->address);
}

/* SYNC / SYNC_REPLY: self and every member but hints, within
 * MEMBERSHIP_MAX_SYNC entries and S_SYNC_BYTES encoded bytes. When the table
 * is larger, a window starting at a random member is sent, so successive
 * exchanges cover all of it. */
static membership_msg_t *s_msg_full_state(membership_t *m, uint32_t type)
{
    const s_vec_t *all = &m->set[S_SET_ALL];
    uint32_t cap = all->n > MEMBERSHIP_MAX_SYNC ? MEMBERSHIP_MAX_SYNC : all->n;
    membership_msg_t *msg = s_msg_new(m, type, cap);
    if (!msg)
        return NULL;
    s_fill_update(s_self(m), &msg->updates[msg->n_updates++]);
    size_t bytes = S_SYNC_HEADER_BYTES + s_update_wire_size(&s_self(m)->pub);
    uint32_t start = (uint32_t) rng_below(&m->rng, all->n);
    for (uint32_t i = 0; i < all->n && msg->n_updates < cap; i++) {
        uint32_t slot = all->v[(start + i) % all->n];
        if (slot == m->self_slot || m->hot[slot].hint)
            continue;
        bytes += s_update_wire_size(&m->slots[slot].pub);
        if (bytes > S_SYNC_BYTES)
            break;
        s_fill_update(&m->slots[slot], &msg->updates[msg->n_updates++]);
    }
    return msg;
}

/* ------------------------------------------------------------------ */
/* member records                                                     */

static void s_suspicion_free(s_member_t *mem)
{
    free(mem->susp);
    mem->susp = NULL;
}

/* Moves a member to the record in u (state, incarnation, flags, name and
 * address) and keeps every derived structure in step: checksum, index sets,
 * timers, suspicion and the CHANGED output. The SUSPECT timer is the
 * caller's (s_suspicion_start). */
static void s_change(membership_t *m, uint32_t slot, const member_update_t *u, uint64_t now,
                     bool added, bool emit)
{
    s_member_t *mem = &m->slots[slot];
    member_t *p = &mem->pub;
    member_state_t old_state = p->state;
    bool is_self = slot == m->self_slot;
    bool old_live = !added && s_is_live(old_state);
    bool changed = added || old_state != u->state || p->incarnation != u->incarnation ||
                   p->flags != u->flags || strcmp(p->name, u->name) != 0 ||
                   strcmp(p->address, u->address) != 0;

    if (old_live)
        m->checksum -= s_member_hash(p);
    s_copy_str(p->name, sizeof p->name, u->name);
    s_copy_str(p->address, sizeof p->address, u->address);
    p->state = m->hot[slot].state = u->state;
    p->incarnation = m->hot[slot].incarnation = u->incarnation;
    p->flags = u->flags;
    if (added || old_state != p->state)
        p->state_since_ms = now;
    bool new_live = s_is_live(p->state);
    if (new_live)
        m->checksum += s_member_hash(p);

    if (!is_self) {
        if (old_live && !new_live)
            s_set_remove(m, S_SET_LIVE, slot);
        else if (!old_live && new_live)
            (void) s_live_add(m, slot);
        bool was_dead = !added && old_state == MEMBER_DEAD;
        bool is_dead = p->state == MEMBER_DEAD;
        if (was_dead && !is_dead) {
            s_set_remove(m, S_SET_DEAD, slot);
            s_set_remove(m, S_SET_RECENT, slot);
        } else if (!was_dead && is_dead) {
            (void) s_set_add(m, S_SET_DEAD, slot);
            if (!m->hot[slot].hint)
                (void) s_set_add(m, S_SET_RECENT, slot);
        }
        if (p->state != MEMBER_SUSPECT)
            s_suspicion_free(mem);
        if (p->state == MEMBER_ALIVE)
            s_heap_remove(m, slot);
        else if ((p->state == MEMBER_DEAD || p->state == MEMBER_LEFT) &&
                 (added || old_state != p->state))
            s_heap_set(m, slot, s_add_sat(now, m->p.reap_ms));
    }
    if (changed && emit)
        s_emit_changed(m, slot, added, old_state);
}

/* Doubles the room of the slots, their hot records and their queue places together. */
static int s_grow_slots(membership_t *m)
{
    uint32_t cap = m->slots_cap ? m->slots_cap * 2 : 16;
    s_member_t *ns = realloc(m->slots, (size_t) cap * sizeof *ns);
    if (!ns)
        return GG_ENOMEM;
    m->slots = ns; /* larger than slots_cap says until both have grown */
    s_hot_t *nh = realloc(m->hot, (size_t) cap * sizeof *nh);
    if (!nh)
        return GG_ENOMEM;
    m->hot = nh;
    s_bc_t *nb = realloc(m->bc, (size_t) cap * sizeof *nb);
    if (!nb)
        return GG_ENOMEM;
    m->bc = nb;
    m->slots_cap = cap;
    return 0;
}

/* A new slot with the record in u, listed and indexed; S_NONE when full. */
static uint32_t s_add_member(membership_t *m, const member_update_t *u, uint64_t now, bool hint,
                             bool emit)
{
    if (m->set[S_SET_ALL].n >= MEMBERSHIP_MAX_MEMBERS) {
        m->stats.updates_dropped++;
        return S_NONE;
    }
    /* Reserve every structure first so nothing below can fail half-way. */
    uint32_t want = m->set[S_SET_ALL].n + 1;
    if (s_vec_reserve(&m->heap, want) != 0 || s_vec_reserve(&m->set[S_SET_ALL], want) != 0 ||
        s_vec_reserve(&m->set[S_SET_LIVE], want) != 0 ||
        s_vec_reserve(&m->set[S_SET_DEAD], want) != 0 ||
        s_vec_reserve(&m->set[S_SET_RECENT], want) != 0) {
        m->stats.updates_dropped++;
        return S_NONE;
    }
    uint32_t slot;
    if (m->free_slots.n > 0) {
        slot = m->free_slots.v[--m->free_slots.n];
    } else {
        if (m->slots_n == m->slots_cap && s_grow_slots(m) != 0) {
            m->stats.updates_dropped++;
            return S_NONE;
        }
        slot = m->slots_n++;
    }
    s_member_t *mem = &m->slots[slot];
    memset(mem, 0, sizeof *mem);
    memcpy(mem->pub.id, u->id, MEMBER_ID_LEN);
    mem->heap_pos = S_NONE;
    for (int i = 0; i < S_SET_COUNT; i++)
        mem->pos[i] = S_NONE;
    mem->in_use = true;
    m->bc[slot] = (s_bc_t){S_NONE, S_NONE, 0, false};
    s_hot_t *h = &m->hot[slot];
    memset(h, 0, sizeof *h);
    memcpy(h->id, u->id, MEMBER_ID_LEN);
    h->hint = hint;
    if (s_hash_insert(m, slot) != 0) {
        mem->in_use = false;
        (void) s_vec_reserve(&m->free_slots, m->free_slots.n + 1);
        if (m->free_slots.n < m->free_slots.cap)
            m->free_slots.v[m->free_slots.n++] = slot;
        m->stats.updates_dropped++;
        return S_NONE;
    }
    (void) s_set_add(m, S_SET_ALL, slot);
    s_change(m, slot, u, now, true, emit);
    return slot;
}

static void s_reap(membership_t *m, uint32_t slot)
{
    s_member_t *mem = &m->slots[slot];
    membership_out_t *o = s_out_push(m);
    if (o) {
        o->type = MOUT_REMOVED;
        o->member = mem->pub;
    }
    s_heap_remove(m, slot);
    s_bc_unlink(m, slot);
    for (int i = 0; i < S_SET_COUNT; i++)
        s_set_remove(m, i, slot);
    s_hash_remove(m, slot);
    s_suspicion_free(mem);
    mem->in_use = false;
    if (s_vec_reserve(&m->free_slots, m->free_slots.n + 1) == 0)
        m->free_slots.v[m->free_slots.n++] = slot;
    m->stats.reaped++;
}

/* ------------------------------------------------------------------ */
/* suspicion (memberlist suspicion.go)                                */

static uint64_t s_suspicion_deadline(const s_suspicion_t *s)
{
    double timeout;
    if (s->k < 1) {
        timeout = (double) s->min_ms;
    } else {
        double frac = log((double) s->confirmations + 1.0) / log((double) s->k + 1.0);
        timeout = floor((double) s->max_ms - frac * (double) (s->max_ms - s->min_ms));
        if (timeout < (double) s->min_ms)
            timeout = (double) s->min_ms;
    }
    return s_add_sat(s->start_ms, (uint64_t) timeout);
}

static void s_suspicion_start(membership_t *m, uint32_t slot, const uint8_t *accuser, uint64_t now)
{
    s_member_t *mem = &m->slots[slot];
    size_t n = s_live_count(m);
    uint32_t k = m->p.indirect_checks;
    if (n < (size_t) k + 2)
        k = n >= 2 ? (uint32_t) (n - 2) : 0;
    uint64_t min = s_suspicion_min(m, n);
    uint64_t max = min * m->p.suspicion_max_timeout_mult;
    s_suspicion_free(mem);
    mem->susp = calloc(1, sizeof *mem->susp);
    if (!mem->susp) {
        /* Degrade to a plain timeout at the minimum. */
        s_heap_set(m, slot, s_add_sat(now, min));
        return;
    }
    s_suspicion_t *s = mem->susp;
    memcpy(s->accuser, accuser, MEMBER_ID_LEN);
    memcpy(s->seen[0], accuser, MEMBER_ID_LEN);
    s->n_seen = 1;
    s->k = k;
    s->start_ms = now;
    s->min_ms = min;
    s->max_ms = max;
    s_heap_set(m, slot, s_suspicion_deadline(s));
}

/* A possibly new accuser: true when it counted (then the caller re-gossips). */
static bool s_confirm(membership_t *m, uint32_t slot, const uint8_t *accuser)
{
    s_suspicion_t *s = m->slots[slot].susp;
    if (!s || s->confirmations >= s->k)
        return false;
    for (uint32_t i = 0; i < s->n_seen; i++)
        if (s_id_eq(s->seen[i], accuser))
            return false;
    if (s->n_seen >= MEMBERSHIP_MAX_INDIRECT + 1)
        return false;
    memcpy(s->seen[s->n_seen++], accuser, MEMBER_ID_LEN);
    memcpy(s->accuser, accuser, MEMBER_ID_LEN);
    s->confirmations++;
    s_heap_set(m, slot, s_suspicion_deadline(s));
    return true;
}

/* ------------------------------------------------------------------ */
/* applying what others say                                           */

static void s_refute(membership_t *m, uint64_t now, uint64_t accused)
{
    s_member_t *self = s_self(m);
    if (accused == UINT64_MAX || self->pub.incarnation == UINT64_MAX)
        return; /* cannot out-number it: nothing sane to do */
    member_update_t u;
    s_fill_update(self, &u);
    u.incarnation = (accused > self->pub.incarnation ? accused : self->pub.incarnation) + 1;
    s_change(m, m->self_slot, &u, now, false, true);
    s_emit_incarnation(m);
    s_bc_queue(m, m->self_slot);
    s_health_delta(m, 1);
    m->stats.refutations++;
}

static void s_apply_self(membership_t *m, uint64_t now, const member_update_t *u)
{
    const member_t *self = &s_self(m)->pub;
    if (m->left || u->incarnation < self->incarnation)
        return;
    if (u->state == MEMBER_ALIVE && u->incarnation == self->incarnation &&
        u->flags == self->flags && strcmp(u->address, self->address) == 0 &&
        strcmp(u->name, self->name) == 0)
        return;
    s_refute(m, now, u->incarnation);
}

/* Applies one update learnt from `from` (piggyback, header or merge);
 * id_hash is s_id_hash(u->id). */
static void s_apply(membership_t *m, uint64_t now, const member_update_t *u, uint64_t id_hash,
                    const uint8_t *from, bool merge)
{
    if (u->state > MEMBER_LEFT || !u->address[0])
        return;
    if (s_id_eq(u->id, s_self(m)->pub.id)) {
        s_apply_self(m, now, u);
        return;
    }
    uint32_t slot = s_find_hashed(m, u->id, id_hash);
    if (slot == S_NONE) {
        if (u->state != MEMBER_ALIVE)
            return;
        slot = s_add_member(m, u, now, false, true);
        if (slot != S_NONE)
            s_bc_queue(m, slot);
        return;
    }
    s_hot_t *h = &m->hot[slot];
    const uint8_t *accuser = u->has_accuser ? u->accuser : from;

    if (h->hint) {
        /* A restored hint: any news at least as new replaces it. */
        if (u->incarnation < h->incarnation)
            return;
        h->hint = false;
        s_change(m, slot, u, now, false, true);
        if (u->state == MEMBER_SUSPECT)
            s_suspicion_start(m, slot, accuser, now);
        return;
    }

    member_state_t st = u->state;
    if (merge && st == MEMBER_DEAD) {
        st = MEMBER_SUSPECT;
        accuser = from;
    }
    uint64_t inc = h->incarnation;
    member_update_t nu;
    switch (st) {
    case MEMBER_ALIVE:
        if (u->incarnation <= inc)
            return;
        s_change(m, slot, u, now, false, true);
        s_bc_queue(m, slot);
        return;
    case MEMBER_SUSPECT:
        if (u->incarnation < inc)
            return;
        if (h->state == MEMBER_SUSPECT) {
            if (s_confirm(m, slot, accuser))
                s_bc_queue(m, slot);
            return;
        }
        if (h->state != MEMBER_ALIVE)
            return;
        s_fill_update(&m->slots[slot], &nu);
        nu.state = MEMBER_SUSPECT;
        nu.incarnation = u->incarnation;
        s_change(m, slot, &nu, now, false, true);
        s_suspicion_start(m, slot, accuser, now);
        s_bc_queue(m, slot);
        m->stats.suspicions++;
        return;
    case MEMBER_DEAD:
    case MEMBER_LEFT:
        if (u->incarnation < inc || h->state == MEMBER_LEFT)
            return;
        if (h->state == MEMBER_DEAD && st == MEMBER_DEAD)
            return;
        s_fill_update(&m->slots[slot], &nu);
        nu.state = st;
        nu.incarnation = u->incarnation;
        s_change(m, slot, &nu, now, false, true);
        s_bc_queue(m, slot);
        m->stats.deaths++;
        return;
    }
}

static void s_suspicion_expired(membership_t *m, uint32_t slot, uint64_t now)
{
    s_member_t *mem = &m->slots[slot];
    member_update_t u;
    s_fill_update(mem, &u);
    u.state = MEMBER_DEAD;
    s_change(m, slot, &u, now, false, true);
    s_bc_queue(m, slot);
    m->stats.deaths++;
}

/* ------------------------------------------------------------------ */
/* random peer selection                                              */

typedef struct {
    bool alive_only;       /* skip suspects */
    bool with_recent_dead; /* also members dead for less than gossip_to_dead_ms */
    uint32_t exclude;      /* a slot to leave out, or S_NONE */
    uint64_t now;
} s_pick_t;

static bool s_recent_expired(const membership_t *m, uint32_t slot, uint64_t now)
{
    const member_t *p = &m->slots[slot].pub;
    return p->state != MEMBER_DEAD || now - p->state_since_ms > m->p.gossip_to_dead_ms;
}

static bool s_pick_ok(const membership_t *m, const s_pick_t *f, uint32_t slot)
{
    if (slot == f->exclude)
        return false;
    if (f->alive_only && m->slots[slot].pub.state != MEMBER_ALIVE)
        return false;
    return true;
}

/* Up to k distinct random members from the live set (and the recently
 * dead); expired recently-dead entries are pruned on the way. */
static uint32_t s_pick(membership_t *m, const s_pick_t *f, uint32_t k, uint32_t *out)
{
    if (k == 0)
        return 0;
    s_vec_t *live = &m->set[S_SET_LIVE], *recent = &m->set[S_SET_RECENT];
    uint32_t n_rec = f->with_recent_dead ? recent->n : 0;
    if (live->n + n_rec <= S_PICK_SCAN) {
        uint32_t cand[S_PICK_SCAN], c = 0;
        for (uint32_t i = 0; i < live->n; i++)
            if (s_pick_ok(m, f, live->v[i]))
                cand[c++] = live->v[i];
        if (f->with_recent_dead) {
            for (uint32_t i = recent->n; i > 0; i--) {
                uint32_t slot = recent->v[i - 1];
                if (s_recent_expired(m, slot, f->now))
                    s_set_remove(m, S_SET_RECENT, slot);
                else if (s_pick_ok(m, f, slot))
                    cand[c++] = slot;
            }
        }
        uint32_t got = c < k ? c : k;
        for (uint32_t i = 0; i < got; i++) {
            uint32_t j = i + (uint32_t) rng_below(&m->rng, c - i);
            uint32_t t = cand[i];
            cand[i] = cand[j];
            cand[j] = t;
            out[i] = cand[i];
        }
        return got;
    }
    uint32_t got = 0;
    for (uint32_t tries = 4 * k + 16; got < k && tries > 0; tries--) {
        n_rec = f->with_recent_dead ? recent->n : 0;
        uint32_t total = live->n + n_rec;
        if (total == 0)
            break;
        uint32_t r = (uint32_t) rng_below(&m->rng, total);
        uint32_t slot;
        if (r < live->n) {
            slot = live->v[r];
        } else {
            slot = recent->v[r - live->n];
            if (s_recent_expired(m, slot, f->now)) {
                s_set_remove(m, S_SET_RECENT, slot);
                continue;
            }
        }
        if (!s_pick_ok(m, f, slot))
            continue;
        bool dup = false;
        for (uint32_t i = 0; i < got && !dup; i++)
            dup = out[i] == slot;
        if (!dup)
            out[got++] = slot;
    }
    return got;
}

/* ------------------------------------------------------------------ */
/* probing                                                            */

static uint32_t s_probe_target(const membership_t *m)
{
    if (!m->probe.active)
        return S_NONE;
    uint32_t slot = s_find(m, m->probe.target);
    if (slot == S_NONE || !s_is_live(m->slots[slot].pub.state))
        return S_NONE;
    return slot;
}

static void s_probe_start(membership_t *m, uint64_t now)
{
    s_vec_t *live = &m->set[S_SET_LIVE];
    if (live->n == 0) {
        m->probe_next = s_add_sat(now, s_scaled(m, m->p.probe_interval_ms));
        return;
    }
    if (m->probe_index >= live->n) {
        s_live_shuffle(m);
        m->probe_index = 0;
    }
    uint32_t slot = live->v[m->probe_index++];
    s_probe_t *pr = &m->probe;
    memset(pr, 0, sizeof *pr);
    pr->active = true;
    memcpy(pr->target, m->slots[slot].pub.id, MEMBER_ID_LEN);
    pr->incarnation = m->slots[slot].pub.incarnation;
    pr->seq = ++m->seq;
    pr->timeout_at = s_add_sat(now, s_scaled(m, m->p.probe_timeout_ms));
    pr->end_at = s_add_sat(now, s_scaled(m, m->p.probe_interval_ms));
    m->probe_next = pr->end_at;
    m->stats.probes++;
    membership_msg_t *msg = s_msg_piggyback(m, WIRE_PING, slot);
    if (msg) {
        msg->seq = pr->seq;
        memcpy(msg->target_id, pr->target, MEMBER_ID_LEN);
    }
    s_send_to(m, slot, msg);
}

static void s_probe_indirect(membership_t *m, uint64_t now)
{
    s_probe_t *pr = &m->probe;
    pr->indirect_sent = true;
    uint32_t target = s_probe_target(m);
    if (target == S_NONE) {
        pr->active = false; /* declared dead or gone meanwhile */
        return;
    }
    s_pick_t f = {.alive_only = true, .exclude = target, .now = now};
    uint32_t peers[MEMBERSHIP_MAX_INDIRECT];
    uint32_t n = s_pick(m, &f, m->p.indirect_checks, peers);
    for (uint32_t i = 0; i < n; i++) {
        memcpy(pr->peers[pr->n_peers++], m->slots[peers[i]].pub.id, MEMBER_ID_LEN);
        membership_msg_t *msg = s_msg_piggyback(m, WIRE_PING_REQ, peers[i]);
        if (msg) {
            msg->seq = pr->seq;
            memcpy(msg->target_id, pr->target, MEMBER_ID_LEN);
            s_copy_str(msg->target_address, sizeof msg->target_address,
                       m->slots[target].pub.address);
        }
        s_send_to(m, peers[i], msg);
        m->stats.ping_reqs_sent++;
    }
}

static void s_probe_fail(membership_t *m, uint64_t now)
{
    s_probe_t *pr = &m->probe;
    pr->active = false;
    uint32_t target = s_find(m, pr->target);
    if (target == S_NONE || !s_is_live(m->slots[target].pub.state))
        return;
    m->stats.probes_failed++;
    /* Lifeguard: helpers that answered NACK show our own network works;
     * missing NACKs (or no helper at all) count against our health. */
    if (pr->n_peers > 0)
        s_health_delta(m, (int) (pr->n_peers - pr->nacks));
    else
        s_health_delta(m, 1);
    member_update_t u;
    s_fill_update(&m->slots[target], &u);
    u.state = MEMBER_SUSPECT;
    u.incarnation = pr->incarnation;
    u.has_accuser = true;
    memcpy(u.accuser, s_self(m)->pub.id, MEMBER_ID_LEN);
    s_apply(m, now, &u, s_id_hash(u.id), s_self(m)->pub.id, false);
}

static void s_probe_tick(membership_t *m, uint64_t now)
{
    s_probe_t *pr = &m->probe;
    if (pr->active && !pr->indirect_sent && now >= pr->timeout_at)
        s_probe_indirect(m, now);
    if (pr->active && now >= pr->end_at)
        s_probe_fail(m, now);
    if (!pr->active && now >= m->probe_next)
        s_probe_start(m, now);
}

static int s_peer_index(const s_probe_t *pr, const uint8_t *id)
{
    for (uint32_t i = 0; i < pr->n_peers; i++)
        if (s_id_eq(pr->peers[i], id))
            return (int) i;
    return -1;
}

/* ------------------------------------------------------------------ */
/* relays: indirect probes run for others                             */

static void s_relay_remove(membership_t *m, uint32_t i)
{
    memmove(&m->relays[i], &m->relays[i + 1], (m->relays_n - i - 1) * sizeof *m->relays);
    m->relays_n--;
}

static void s_send_nack(membership_t *m, uint64_t seq, const uint8_t *requester,
                        const char *address, const uint8_t *target)
{
    uint32_t slot = s_find(m, requester);
    membership_msg_t *msg = s_msg_piggyback(m, WIRE_NACK, slot);
    if (msg) {
        msg->seq = seq;
        memcpy(msg->target_id, target, MEMBER_ID_LEN);
    }
    s_emit_send(m, slot, requester, address, msg);
    m->stats.nacks_sent++;
}

static void s_on_ping_req(membership_t *m, uint64_t now, const uint8_t *from,
                          const membership_msg_t *msg)
{
    if (m->left || s_id_eq(msg->target_id, s_self(m)->pub.id) || s_id_eq(msg->target_id, from) ||
        !msg->target_address[0]) {
        m->stats.msgs_ignored++;
        return;
    }
    if (m->relays_n >= MEMBERSHIP_MAX_RELAYS) {
        s_send_nack(m, msg->seq, from, msg->sender.address, msg->target_id);
        return;
    }
    if (m->relays_n == m->relays_cap) {
        uint32_t cap = m->relays_cap ? m->relays_cap * 2 : 4;
        s_relay_t *nr = realloc(m->relays, (size_t) cap * sizeof *nr);
        if (!nr) {
            s_send_nack(m, msg->seq, from, msg->sender.address, msg->target_id);
            return;
        }
        m->relays = nr;
        m->relays_cap = cap;
    }
    s_relay_t r = {0};
    r.ping_seq = ++m->seq;
    r.orig_seq = msg->seq;
    r.deadline_ms = s_add_sat(now, m->p.probe_timeout_ms);
    memcpy(r.requester, from, MEMBER_ID_LEN);
    memcpy(r.target, msg->target_id, MEMBER_ID_LEN);
    s_copy_str(r.requester_address, sizeof r.requester_address, msg->sender.address);
    uint32_t i = m->relays_n;
    while (i > 0 && m->relays[i - 1].deadline_ms > r.deadline_ms)
        i--;
    memmove(&m->relays[i + 1], &m->relays[i], (m->relays_n - i) * sizeof *m->relays);
    m->relays[i] = r;
    m->relays_n++;
    m->stats.relays++;

    uint32_t tslot = s_find(m, msg->target_id);
    membership_msg_t *ping = s_msg_piggyback(m, WIRE_PING, tslot);
    if (ping) {
        ping->seq = r.ping_seq;
        memcpy(ping->target_id, msg->target_id, MEMBER_ID_LEN);
    }
    s_emit_send(m, tslot, msg->target_id, msg->target_address, ping);
}

static void s_on_ack(membership_t *m, const uint8_t *from, const membership_msg_t *msg)
{
    s_probe_t *pr = &m->probe;
    if (pr->active && msg->seq == pr->seq) {
        bool direct = s_id_eq(from, pr->target);
        bool relayed = s_peer_index(pr, from) >= 0 && s_id_eq(msg->target_id, pr->target);
        if (direct || relayed) {
            pr->active = false;
            s_health_delta(m, -1);
        } else {
            m->stats.msgs_ignored++;
        }
        return;
    }
    for (uint32_t i = 0; i < m->relays_n; i++) {
        s_relay_t *r = &m->relays[i];
        if (r->ping_seq != msg->seq || !s_id_eq(r->target, from))
            continue;
        uint32_t slot = s_find(m, r->requester);
        membership_msg_t *ack = s_msg_piggyback(m, WIRE_ACK, slot);
        if (ack) {
            ack->seq = r->orig_seq;
            memcpy(ack->target_id, r->target, MEMBER_ID_LEN);
        }
        s_emit_send(m, slot, r->requester, r->requester_address, ack);
        s_relay_remove(m, i);
        return;
    }
    /* A late or duplicate ACK: nothing to do. */
}

static void s_on_nack(membership_t *m, const uint8_t *from, const membership_msg_t *msg)
{
    s_probe_t *pr = &m->probe;
    int i = pr->active && msg->seq == pr->seq ? s_peer_index(pr, from) : -1;
    if (i < 0 || pr->nacked[i])
        return;
    pr->nacked[i] = true;
    pr->nacks++;
}

/* ------------------------------------------------------------------ */
/* gossip, push-pull, join, reconnect                                 */

static void s_gossip(membership_t *m, uint64_t now)
{
    m->gossip_next = s_next_period(m->gossip_next, m->p.gossip_interval_ms, now);
    if (m->bc_count == 0)
        return;
    s_pick_t f = {.with_recent_dead = true, .exclude = S_NONE, .now = now};
    uint32_t targets[MEMBERSHIP_MAX_INDIRECT];
    uint32_t n = s_pick(m, &f, m->p.gossip_fanout, targets);
    for (uint32_t i = 0; i < n; i++) {
        membership_msg_t *msg = s_msg_piggyback(m, WIRE_GOSSIP, targets[i]);
        if (!msg)
            break;
        if (msg->n_updates == 0) {
            membership_msg_destroy(&msg);
            break;
        }
        s_send_to(m, targets[i], msg);
    }
}

/* A SYNC to the member in slot, or to a seed's address (slot S_NONE). */
static void s_send_sync(membership_t *m, uint32_t slot, const char *address)
{
    const uint8_t *to_id = slot != S_NONE ? m->slots[slot].pub.id : NULL;
    s_emit_send(m, slot, to_id, address, s_msg_full_state(m, WIRE_SYNC));
    m->stats.syncs_sent++;
}

static void s_push_pull(membership_t *m, uint64_t now)
{
    m->push_pull_next = s_add_sat(now, s_push_pull_interval(m));
    s_pick_t f = {.alive_only = true, .exclude = S_NONE, .now = now};
    uint32_t slot;
    if (s_pick(m, &f, 1, &slot) == 1)
        s_send_sync(m, slot, m->slots[slot].pub.address);
}

static bool s_is_own_address(const membership_t *m, const char *address)
{
    return strcmp(m->slots[m->self_slot].pub.address, address) == 0;
}

/* Up to k distinct random hints (restored members, in the dead set). */
static uint32_t s_pick_hints(membership_t *m, uint32_t k, uint32_t *out)
{
    s_vec_t *dead = &m->set[S_SET_DEAD];
    uint32_t got = 0;
    if (dead->n <= S_PICK_SCAN) {
        uint32_t cand[S_PICK_SCAN], c = 0;
        for (uint32_t i = 0; i < dead->n; i++)
            if (m->hot[dead->v[i]].hint)
                cand[c++] = dead->v[i];
        for (; got < k && got < c; got++) {
            uint32_t j = got + (uint32_t) rng_below(&m->rng, c - got);
            uint32_t t = cand[got];
            cand[got] = cand[j];
            cand[j] = t;
            out[got] = cand[got];
        }
        return got;
    }
    for (uint32_t tries = 8 * k; tries > 0 && got < k; tries--) {
        uint32_t slot = dead->v[rng_below(&m->rng, dead->n)];
        bool dup = !m->hot[slot].hint;
        for (uint32_t j = 0; j < got && !dup; j++)
            dup = out[j] == slot;
        if (!dup)
            out[got++] = slot;
    }
    return got;
}

static void s_join_attempt(membership_t *m, uint64_t now)
{
    bool any = false;
    for (uint32_t i = 0; i < m->seeds_n; i++) {
        if (s_is_own_address(m, m->seeds[i]))
            continue;
        s_send_sync(m, S_NONE, m->seeds[i]);
        any = true;
    }
    uint32_t hints[S_JOIN_HINTS];
    uint32_t n = s_pick_hints(m, S_JOIN_HINTS, hints);
    for (uint32_t i = 0; i < n; i++) {
        s_send_sync(m, hints[i], m->slots[hints[i]].pub.address);
        any = true;
    }
    if (!any) {
        m->join_next = S_NEVER; /* re-armed by add_seed or restore */
        return;
    }
    m->join_next = s_add_sat(now, m->join_backoff);
    uint64_t next = (uint64_t) m->join_backoff * 2;
    m->join_backoff = next > m->p.join_backoff_max_ms ? m->p.join_backoff_max_ms : (uint32_t) next;
}

/* True when address is a live (alive or suspect) member's. O(live members),
 * run once per reconnect interval. */
static bool s_is_live_address(const membership_t *m, const char *address)
{
    const s_vec_t *live = &m->set[S_SET_LIVE];
    for (uint32_t k = 0; k < live->n; k++)
        if (strcmp(m->slots[live->v[k]].pub.address, address) == 0)
            return true;
    return false;
}

static void s_reconnect(membership_t *m, uint64_t now)
{
    m->reconnect_next = s_add_sat(now, m->p.reconnect_interval_ms);
    s_vec_t *dead = &m->set[S_SET_DEAD];
    uint64_t total = (uint64_t) dead->n + m->seeds_n;
    if (total == 0)
        return;
    uint64_t r = rng_below(&m->rng, total);
    if (r < dead->n) {
        uint32_t slot = dead->v[r];
        s_send_sync(m, slot, m->slots[slot].pub.address);
    } else if (!s_is_own_address(m, m->seeds[r - dead->n]) &&
               !s_is_live_address(m, m->seeds[r - dead->n])) {
        /* A seed that is a live member is already in touch: the regular
         * push-pull covers it, a full exchange every interval would not. */
        s_send_sync(m, S_NONE, m->seeds[r - dead->n]);
    }
}

/* State exchanged with a peer: stop contacting seeds; reconnects start one
 * interval from now. */
static void s_set_joined(membership_t *m, uint64_t now)
{
    if (m->joined)
        return;
    m->joined = true;
    m->join_next = S_NEVER;
    m->reconnect_next = s_add_sat(now, m->p.reconnect_interval_ms);
}

static void s_arm_join(membership_t *m)
{
    if (m->joined || m->left || m->join_next != S_NEVER)
        return;
    m->join_next = 0; /* due now */
    m->join_backoff = m->p.join_backoff_min_ms;
}

/* ------------------------------------------------------------------ */
/* public API                                                         */

membership_t *membership_new(const membership_profile_t *profile,
                             const uint8_t self_id[MEMBER_ID_LEN], const char *name,
                             const char *address, uint64_t incarnation, uint64_t seed,
                             uint64_t now_ms)
{
    if (membership_profile_check(profile) != 0 || !self_id || !name || !address || !address[0] ||
        strlen(name) > MEMBER_NAME_MAX || strlen(address) > MEMBER_ADDRESS_MAX)
        return NULL;
    membership_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->p = *profile;
    rng_seed(&m->rng, seed);
    for (int i = 0; i < S_BC_BUCKETS; i++)
        m->bc_head[i] = S_NONE;
    m->hash_cap = 16;
    m->hash = calloc(m->hash_cap, sizeof *m->hash);
    if (!m->hash)
        goto fail;
    m->seq = rng_next(&m->rng) >> 33; /* a random start: stale ACKs of a past life miss */
    m->probe_next = now_ms + rng_below(&m->rng, m->p.probe_interval_ms);
    m->gossip_next = now_ms + rng_below(&m->rng, m->p.gossip_interval_ms);
    m->push_pull_next = now_ms + rng_below(&m->rng, m->p.push_pull_interval_ms);
    m->reconnect_next = now_ms + m->p.reconnect_interval_ms;
    m->join_next = S_NEVER;

    member_update_t u = {0};
    memcpy(u.id, self_id, MEMBER_ID_LEN);
    s_copy_str(u.name, sizeof u.name, name);
    s_copy_str(u.address, sizeof u.address, address);
    u.state = MEMBER_ALIVE;
    u.incarnation = incarnation;
    u.flags = MEMBER_FLAG_WIRE2; /* what this build reads */
    /* Self takes the first slot (index 0 of every view). */
    m->self_slot = 0;
    if (s_add_member(m, &u, now_ms, false, false) != 0)
        goto fail;
    return m;
fail:
    membership_destroy(&m);
    return NULL;
}

void membership_destroy(membership_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    membership_t *m = *self_p;
    for (uint32_t i = 0; i < m->slots_n; i++)
        if (m->slots[i].in_use)
            s_suspicion_free(&m->slots[i]);
    while (m->out_n > 0) {
        membership_out_t *o = &m->out[m->out_head];
        membership_msg_destroy(&o->msg);
        m->out_head = (m->out_head + 1) % m->out_cap;
        m->out_n--;
    }
    free(m->out);
    free(m->seeds);
    free(m->relays);
    free(m->heap.v);
    for (int i = 0; i < S_SET_COUNT; i++)
        free(m->set[i].v);
    free(m->free_slots.v);
    free(m->hash);
    free(m->slots);
    free(m->hot);
    free(m->bc);
    free(m);
    *self_p = NULL;
}

int membership_add_seed(membership_t *m, const char *address)
{
    if (!m || !address || !address[0] || strlen(address) > MEMBER_ADDRESS_MAX)
        return GG_EINVAL;
    for (uint32_t i = 0; i < m->seeds_n; i++)
        if (strcmp(m->seeds[i], address) == 0)
            return 0;
    if (m->seeds_n >= MEMBERSHIP_MAX_SEEDS)
        return GG_ETOOBIG;
    void *ns = realloc(m->seeds, (size_t) (m->seeds_n + 1) * sizeof *m->seeds);
    if (!ns)
        return GG_ENOMEM;
    m->seeds = ns;
    s_copy_str(m->seeds[m->seeds_n++], MEMBER_ADDRESS_MAX + 1, address);
    s_arm_join(m);
    return 0;
}

int membership_restore(membership_t *m, const member_t *known, size_t n, uint64_t now_ms)
{
    if (!m || (!known && n > 0))
        return GG_EINVAL;
    for (size_t i = 0; i < n; i++) {
        const member_t *k = &known[i];
        if (k->state > MEMBER_LEFT || !k->address[0] ||
            strnlen(k->address, sizeof k->address) > MEMBER_ADDRESS_MAX ||
            strnlen(k->name, sizeof k->name) > MEMBER_NAME_MAX)
            continue;
        if (s_id_eq(k->id, s_self(m)->pub.id) || s_find(m, k->id) != S_NONE)
            continue;
        member_update_t u = {0};
        memcpy(u.id, k->id, MEMBER_ID_LEN);
        s_copy_str(u.name, sizeof u.name, k->name);
        s_copy_str(u.address, sizeof u.address, k->address);
        u.state = k->state == MEMBER_LEFT ? MEMBER_LEFT : MEMBER_DEAD;
        u.incarnation = k->incarnation;
        u.flags = k->flags;
        if (s_add_member(m, &u, now_ms, true, false) == S_NONE)
            return GG_ETOOBIG;
    }
    if (m->set[S_SET_DEAD].n > 0)
        s_arm_join(m);
    return 0;
}

int membership_handle(membership_t *m, uint64_t now_ms, const uint8_t from_id[MEMBER_ID_LEN],
                      const membership_msg_t *msg)
{
    if (!m || !from_id || !msg)
        return GG_EINVAL;
    if (!s_id_eq(msg->sender.id, from_id)) {
        m->stats.msgs_ignored++;
        return GG_EPERM;
    }
    if (!membership_msg_type_known(msg->type) || s_id_eq(from_id, s_self(m)->pub.id)) {
        m->stats.msgs_ignored++;
        return GG_EINVAL;
    }
    /* A sender speaks for itself as alive or left, never suspect or dead; a
     * LEAVE is sent by a node that has left. */
    bool full = msg->type == WIRE_SYNC || msg->type == WIRE_SYNC_REPLY;
    uint32_t max_updates = full ? MEMBERSHIP_MAX_SYNC : MEMBERSHIP_MAX_PIGGYBACK;
    if ((msg->sender.state != MEMBER_ALIVE && msg->sender.state != MEMBER_LEFT) ||
        (msg->type == WIRE_LEAVE && msg->sender.state != MEMBER_LEFT) || !msg->sender.address[0] ||
        msg->n_updates > max_updates || (msg->n_updates > 0 && !msg->updates)) {
        m->stats.msgs_ignored++;
        return GG_EMALFORMED;
    }

    /* The sender's own record: authoritative for itself. */
    s_apply(m, now_ms, &msg->sender, s_id_hash(msg->sender.id), from_id, false);
    uint32_t from_slot = s_find(m, from_id);
    if (from_slot != S_NONE)
        m->slots[from_slot].pub.view_checksum = msg->checksum;

    /* Piggybacked updates or the full state; claims about the sender are
     * taken from its own record above only. */
    uint64_t ring[S_RING];
    uint32_t n = msg->n_updates;
    for (uint32_t i = 0; i < n && i < 2 * S_AHEAD; i++) {
        ring[i % S_RING] = s_id_hash(msg->updates[i].id);
        s_fetch_bucket(m, ring[i % S_RING]);
    }
    for (uint32_t i = 0; i < n && i < S_AHEAD; i++)
        s_fetch_slot(m, ring[i % S_RING]);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t h = ring[i % S_RING]; /* its place is taken by update i + 2 * S_AHEAD */
        if (i + S_AHEAD < n)
            s_fetch_slot(m, ring[(i + S_AHEAD) % S_RING]);
        if (i + 2 * S_AHEAD < n) {
            ring[(i + 2 * S_AHEAD) % S_RING] = s_id_hash(msg->updates[i + 2 * S_AHEAD].id);
            s_fetch_bucket(m, ring[(i + 2 * S_AHEAD) % S_RING]);
        }
        if (s_id_eq(msg->updates[i].id, from_id))
            continue;
        s_apply(m, now_ms, &msg->updates[i], h, from_id, full);
    }

    from_slot = s_find(m, from_id);
    switch (msg->type) {
    case WIRE_PING: {
        if (!s_id_eq(msg->target_id, s_self(m)->pub.id)) {
            m->stats.msgs_ignored++; /* meant for whoever had this address before */
            break;
        }
        membership_msg_t *ack = s_msg_piggyback(m, WIRE_ACK, from_slot);
        if (ack) {
            ack->seq = msg->seq;
            memcpy(ack->target_id, s_self(m)->pub.id, MEMBER_ID_LEN);
        }
        s_emit_send(m, from_slot, from_id, msg->sender.address, ack);
        break;
    }
    case WIRE_ACK: s_on_ack(m, from_id, msg); break;
    case WIRE_NACK: s_on_nack(m, from_id, msg); break;
    case WIRE_PING_REQ: s_on_ping_req(m, now_ms, from_id, msg); break;
    case WIRE_SYNC:
        m->stats.syncs_received++;
        s_set_joined(m, now_ms);
        s_emit_send(m, from_slot, from_id, msg->sender.address,
                    s_msg_full_state(m, WIRE_SYNC_REPLY));
        break;
    case WIRE_SYNC_REPLY:
        m->stats.syncs_received++;
        s_set_joined(m, now_ms);
        break;
    default: break; /* GOSSIP, LEAVE: updates only */
    }
    return 0;
}

void membership_tick(membership_t *m, uint64_t now_ms)
{
    if (!m)
        return;
    while (m->heap.n > 0 && m->slots[m->heap.v[0]].timer_at <= now_ms) {
        uint32_t slot = m->heap.v[0];
        member_state_t st = m->slots[slot].pub.state;
        if (st == MEMBER_SUSPECT)
            s_suspicion_expired(m, slot, now_ms);
        else if (st == MEMBER_DEAD || st == MEMBER_LEFT)
            s_reap(m, slot);
        else
            s_heap_remove(m, slot); /* impossible: alive members hold no timer */
    }
    while (m->relays_n > 0 && m->relays[0].deadline_ms <= now_ms) {
        s_relay_t r = m->relays[0];
        s_relay_remove(m, 0);
        s_send_nack(m, r.orig_seq, r.requester, r.requester_address, r.target);
    }
    if (!m->left) {
        s_probe_tick(m, now_ms);
        if (now_ms >= m->push_pull_next)
            s_push_pull(m, now_ms);
        if (!m->joined && now_ms >= m->join_next)
            s_join_attempt(m, now_ms);
        if (m->joined && now_ms >= m->reconnect_next)
            s_reconnect(m, now_ms);
    }
    if (now_ms >= m->gossip_next)
        s_gossip(m, now_ms);
}

uint64_t membership_next_deadline(const membership_t *m)
{
    if (!m)
        return S_NEVER;
    uint64_t t = m->gossip_next;
    if (m->heap.n > 0 && m->slots[m->heap.v[0]].timer_at < t)
        t = m->slots[m->heap.v[0]].timer_at;
    if (m->relays_n > 0 && m->relays[0].deadline_ms < t)
        t = m->relays[0].deadline_ms;
    if (!m->left) {
        const s_probe_t *pr = &m->probe;
        uint64_t probe = !pr->active ? m->probe_next
                         : pr->indirect_sent
                             ? pr->end_at
                             : (pr->timeout_at < pr->end_at ? pr->timeout_at : pr->end_at);
        if (probe < t)
            t = probe;
        if (m->push_pull_next < t)
            t = m->push_pull_next;
        if (!m->joined && m->join_next < t)
            t = m->join_next;
        if (m->joined && m->reconnect_next < t)
            t = m->reconnect_next;
    }
    return t;
}

void membership_leave(membership_t *m, uint64_t now_ms)
{
    if (!m || m->left)
        return;
    s_member_t *self = s_self(m);
    member_update_t u;
    s_fill_update(self, &u);
    u.state = MEMBER_LEFT;
    if (u.incarnation < UINT64_MAX)
        u.incarnation++;
    s_change(m, m->self_slot, &u, now_ms, false, true);
    m->left = true;
    m->probe.active = false;
    s_emit_incarnation(m);
    s_bc_queue(m, m->self_slot);
    s_pick_t f = {.alive_only = true, .exclude = S_NONE, .now = now_ms};
    uint32_t targets[MEMBERSHIP_MAX_INDIRECT];
    uint32_t n = s_pick(m, &f, m->p.gossip_fanout, targets);
    for (uint32_t i = 0; i < n; i++)
        s_send_to(m, targets[i], s_msg_piggyback(m, WIRE_LEAVE, targets[i]));
}

size_t membership_broadcasts_pending(const membership_t *m)
{
    return m ? m->bc_count : 0;
}

int membership_set_flags(membership_t *m, uint64_t now_ms, uint32_t flags)
{
    if (!m || m->left)
        return GG_EINVAL;
    s_member_t *self = s_self(m);
    if (self->pub.flags == flags)
        return 0;
    if (self->pub.incarnation == UINT64_MAX)
        return GG_EINVAL;
    member_update_t u;
    s_fill_update(self, &u);
    u.flags = flags;
    u.incarnation++;
    s_change(m, m->self_slot, &u, now_ms, false, true);
    s_emit_incarnation(m);
    s_bc_queue(m, m->self_slot);
    return 0;
}

int membership_force_leave(membership_t *m, uint64_t now_ms, const uint8_t id[MEMBER_ID_LEN])
{
    if (!m || !id)
        return GG_EINVAL;
    if (s_id_eq(id, s_self(m)->pub.id))
        return GG_EINVAL;
    uint32_t slot = s_find(m, id);
    if (slot == S_NONE)
        return GG_ENOTFOUND;
    s_member_t *mem = &m->slots[slot];
    if (mem->pub.state == MEMBER_LEFT)
        return 0;
    if (mem->pub.state != MEMBER_DEAD)
        return GG_EBUSY;
    member_update_t u;
    s_fill_update(mem, &u);
    u.state = MEMBER_LEFT;
    m->hot[slot].hint = false;
    s_change(m, slot, &u, now_ms, false, true);
    s_bc_queue(m, slot);
    return 0;
}

bool membership_poll(membership_t *m, membership_out_t *out)
{
    if (!m || !out || m->out_n == 0)
        return false;
    *out = m->out[m->out_head];
    m->out_head = (m->out_head + 1) % m->out_cap;
    m->out_n--;
    if (m->out_n == 0) {
        m->out_head = 0;
        if (m->out_cap > 64) {
            /* Give a burst's memory back (1,000 instances share a process). */
            free(m->out);
            m->out = NULL;
            m->out_cap = 0;
        }
    }
    return true;
}

void membership_out_release(membership_out_t *out)
{
    if (!out)
        return;
    membership_msg_destroy(&out->msg);
    memset(out, 0, sizeof *out);
}

size_t membership_size(const membership_t *m)
{
    return m ? m->set[S_SET_ALL].n : 0;
}

const member_t *membership_at(const membership_t *m, size_t i)
{
    if (!m || i >= m->set[S_SET_ALL].n)
        return NULL;
    return &m->slots[m->set[S_SET_ALL].v[i]].pub;
}

const member_t *membership_find(const membership_t *m, const uint8_t id[MEMBER_ID_LEN])
{
    if (!m || !id)
        return NULL;
    uint32_t slot = s_find(m, id);
    return slot == S_NONE ? NULL : &m->slots[slot].pub;
}

const member_t *membership_self(const membership_t *m)
{
    return m ? &m->slots[m->self_slot].pub : NULL;
}

size_t membership_alive_count(const membership_t *m)
{
    return m ? s_live_count(m) : 0;
}

uint64_t membership_checksum(const membership_t *m)
{
    return m ? m->checksum : 0;
}

uint32_t membership_health(const membership_t *m)
{
    return m ? m->health : 0;
}

bool membership_joined(const membership_t *m)
{
    return m && m->joined;
}

uint64_t membership_suspicion_deadline(const membership_t *m, const uint8_t id[MEMBER_ID_LEN])
{
    if (!m || !id)
        return 0;
    uint32_t slot = s_find(m, id);
    if (slot == S_NONE || m->slots[slot].pub.state != MEMBER_SUSPECT)
        return 0;
    return m->slots[slot].timer_at;
}

const membership_stats_t *membership_stats(const membership_t *m)
{
    return m ? &m->stats : NULL;
}
