/*
 * test_fleet.c: ownership, leases, fencing and replication (coordination/fleet)
 * on a fake clock, through an in-process network of fleet cores
 * (fleet_net.h) with a fake runner and store per node.
 *
 * Network tests check the guarantees DESIGN.md §3-5 promise: every target
 * runs once in a stable fleet, a join moves ~1/(N+1) of the targets and
 * preempts nothing, a crashed holder's targets are taken over at epoch+1
 * only once it is declared dead (or silent for ttl+margin), a restarted
 * node resumes only what nobody took over, a partition's lower epoch is
 * fenced, same-epoch races resolve to one winner, replicas converge under
 * loss, duplication and reordering, documents travel in chunks, rollout
 * rules hold fleet-wide. Single-node tests check the scan budget, memory
 * per target and that malformed messages are refused and counted.
 */
#include "fleet.h"
#include "fleet_net.h"
#include "gg_error.h"
#include "gg_test.h"
#include "rendezvous.h"
#include "rng.h"
#include "wire.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fleet_config_t s_cfg(void)
{
    fleet_config_t c;
    fleet_config_get("test", &c);
    return c;
}

static fleet_rollout_t s_ro(void)
{
    fleet_rollout_t r;
    memset(&r, 0, sizeof r);
    return r;
}

/* ---- predicates and checks over the network ---- */

typedef struct {
    int plan;
    uint32_t terminal; /* at least this many terminal targets (0: all) */
} s_goal_t;

static uint32_t s_terminal(const fleet_t *f, const uint8_t *plan, uint32_t n)
{
    uint32_t t = 0;
    for (uint32_t i = 0; i < n; i++) {
        const progress_rec_t *r = fleet_record(f, plan, i);
        if (r && target_state_terminal((target_state_t) r->state))
            t++;
    }
    return t;
}

/* Every live node sees every target of the plan terminal (or `terminal`
 * many) and no node has a job left. */
static bool s_done(fleet_net_t *net, void *arg)
{
    const s_goal_t *g = arg;
    const fn_plan_t *p = &net->plans[g->plan];
    uint32_t want = g->terminal ? g->terminal : p->n;
    for (int i = 0; i < net->n; i++) {
        const fn_node_t *nd = &net->nodes[i];
        if (!nd->f || nd->frozen)
            continue;
        if (s_terminal(nd->f, p->id, p->n) < want)
            return false;
        if (!g->terminal && nd->n_jobs > 0)
            return false;
    }
    return true;
}

static bool s_run_done(fleet_net_t *net, int plan, uint64_t budget_ms)
{
    s_goal_t g = {plan, 0};
    return fn_run_until_pred(net, net->now + budget_ms, s_done, &g);
}

/* All live nodes hold identical records and stats for the plan. */
static bool s_converged(fleet_net_t *net, int plan)
{
    const fn_plan_t *p = &net->plans[plan];
    int ref = -1;
    for (int i = 0; i < net->n; i++) {
        if (!net->nodes[i].f || net->nodes[i].frozen)
            continue;
        if (ref < 0) {
            ref = i;
            continue;
        }
        for (uint32_t x = 0; x < p->n; x++) {
            const progress_rec_t *a = fleet_record(net->nodes[ref].f, p->id, x);
            const progress_rec_t *b = fleet_record(net->nodes[i].f, p->id, x);
            if (!a || !b || progress_compare(a, b) != 0 || strcmp(a->error, b->error) != 0)
                return false;
        }
        fleet_plan_stats_t sa, sb;
        if (fleet_plan_stats(net->nodes[ref].f, p->id, &sa) != 0 ||
            fleet_plan_stats(net->nodes[i].f, p->id, &sb) != 0 ||
            memcmp(sa.counts, sb.counts, sizeof sa.counts) != 0 ||
            sa.auto_paused != sb.auto_paused || sa.completed != sb.completed)
            return false;
    }
    return true;
}

typedef struct {
    int plan;
} s_conv_arg_t;

static bool s_converged_pred(fleet_net_t *net, void *arg)
{
    return s_converged(net, ((s_conv_arg_t *) arg)->plan);
}

static uint64_t s_sum_stat(fleet_net_t *net, size_t offset)
{
    uint64_t sum = 0;
    for (int i = 0; i < net->n; i++)
        if (net->nodes[i].f)
            sum += *(const uint64_t *) ((const char *) fleet_stats(net->nodes[i].f) + offset);
    return sum;
}
#define SUM_STAT(net, field) s_sum_stat((net), offsetof(fleet_stats_t, field))

static uint32_t s_count_state(const fleet_t *f, const uint8_t *plan, uint32_t n, uint8_t state)
{
    uint32_t c = 0;
    for (uint32_t i = 0; i < n; i++) {
        const progress_rec_t *r = fleet_record(f, plan, i);
        if (r && r->state == state)
            c++;
    }
    return c;
}

static int s_node_of_id(const fleet_net_t *net, const uint8_t *id)
{
    for (int i = 0; i < net->n; i++)
        if (memcmp(net->nodes[i].id, id, FLEET_ID_LEN) == 0)
            return i;
    return -1;
}

/* ---- output accounting through the hook ---- */

typedef struct {
    uint64_t aborts[8]; /* by reason */
    uint64_t runs_by_node[FN_MAX_NODES];
    uint64_t plan_states;
    uint64_t canary_violations;
    uint32_t canary;
    uint64_t docs[FN_MAX_NODES][4]; /* FOUT_DOC per node per test doc */
    uint8_t doc_ids[4][FLEET_ID_LEN];
    int n_doc_ids;
    uint8_t fail_mod;   /* outcome: fail index % fail_mod == 0 (0: never) */
    int64_t fail_index; /* outcome: fail this index (-1: none) */
    bool reject_second; /* documents: reject doc_ids[1] */
    uint64_t runs_after_mark;
    bool mark;
    bool retry_first; /* outcome: retry_wait on attempt 1 */
} s_acc_t;

static void s_hook(void *arg, fleet_net_t *net, int node, const fleet_out_t *o)
{
    s_acc_t *a = arg;
    switch (o->type) {
    case FOUT_ABORT:
        if (o->reason < 8)
            a->aborts[o->reason]++;
        break;
    case FOUT_RUN: {
        a->runs_by_node[node]++;
        if (a->mark)
            a->runs_after_mark++;
        if (a->canary && o->index >= a->canary) {
            for (uint32_t c = 0; c < a->canary; c++) {
                const progress_rec_t *r = fleet_record(net->nodes[node].f, o->plan_id, c);
                if (!r || (r->state != TARGET_SUCCEEDED && r->state != TARGET_SKIPPED))
                    a->canary_violations++;
            }
        }
        break;
    }
    case FOUT_PLAN_STATE: a->plan_states++; break;
    case FOUT_DOC:
        for (int d = 0; d < a->n_doc_ids; d++)
            if (memcmp(a->doc_ids[d], o->doc_id, FLEET_ID_LEN) == 0)
                a->docs[node][d]++;
        break;
    default: break;
    }
}

static uint8_t s_outcome(void *arg, fleet_net_t *net, int node, int plan, uint32_t index,
                         const progress_rec_t *claim)
{
    s_acc_t *a = arg;
    if (a->retry_first && claim->attempt == 1)
        return TARGET_RETRY_WAIT;
    if (a->fail_index >= 0 && index == (uint32_t) a->fail_index)
        return TARGET_FAILED;
    if (a->fail_mod && index % a->fail_mod == 0)
        return TARGET_FAILED;
    return TARGET_SUCCEEDED;
}

static bool s_reject(void *arg, const uint8_t id[FLEET_ID_LEN])
{
    s_acc_t *a = arg;
    return a->reject_second && a->n_doc_ids > 1 && memcmp(id, a->doc_ids[1], FLEET_ID_LEN) == 0;
}

static void s_net(fleet_net_t *net, s_acc_t *acc, int n, uint64_t seed)
{
    fleet_config_t cfg = s_cfg();
    fn_init(net, &cfg, n, seed);
    memset(acc, 0, sizeof *acc);
    acc->fail_index = -1;
    net->hook = s_hook;
    net->outcome = s_outcome;
    net->reject = s_reject;
    net->arg = acc;
}

/* Network-wide invariants every test ends with, then frees the network. */
static void s_free(fleet_net_t *net)
{
    CHECK(net->loops == 0);           /* no deadline stuck in the past */
    CHECK(net->codec_errors == 0);    /* every message decodes */
    CHECK(net->sender_mismatch == 0); /* envelopes name their sender */
    CHECK(net->overcommit == 0);      /* never more runs than slots */
    CHECK(SUM_STAT(net, malformed) == 0);
    fn_free(net);
}

/* ------------------------------------------------------------------ */
/* single instance                                                    */

static void test_config_and_api(void)
{
    fleet_config_t c;
    CHECK(fleet_config_get("lan", &c) == 0 && c.lease_ttl_ms == 15000);
    CHECK(fleet_config_get("wan", &c) == 0 && c.lease_ttl_ms == 60000);
    CHECK(fleet_config_get("test", &c) == 0 && c.lease_ttl_ms == 2000);
    CHECK(fleet_config_get("bogus", &c) == GG_EINVAL);

    uint8_t id[FLEET_ID_LEN];
    fn_node_id(0, id);
    fleet_config_t bad = c;
    bad.push_fanout = 0;
    CHECK(fleet_new(&bad, id, "tcp://x:1", 1, 0) == NULL);
    bad = c;
    bad.max_hops = 1000;
    CHECK(fleet_new(&bad, id, "tcp://x:1", 1, 0) == NULL);

    fleet_t *f = fleet_new(&c, id, "tcp://x:1", 1, 0);
    REQUIRE(f);
    uint8_t plan[FLEET_ID_LEN];
    memset(plan, 7, sizeof plan);
    uint64_t keys[4] = {1, 2, 3, 4};
    fleet_rollout_t ro = s_ro();
    CHECK(fleet_add_plan(f, 0, plan, FLEET_MAX_TARGETS + 1, keys, NULL, &ro) == GG_ETOOBIG);
    CHECK(fleet_add_plan(f, 0, plan, 4, NULL, NULL, &ro) == GG_EINVAL);
    CHECK(fleet_add_plan(f, 0, plan, 4, keys, NULL, &ro) == 0);
    CHECK(fleet_add_plan(f, 0, plan, 4, keys, NULL, &ro) == 0); /* idempotent */
    progress_rec_t r;
    memset(&r, 0, sizeof r);
    uint8_t other[FLEET_ID_LEN];
    memset(other, 9, sizeof other);
    CHECK(fleet_record_local(f, 0, other, 0, &r) == GG_ENOTFOUND);
    CHECK(fleet_record_local(f, 0, plan, 4, &r) == GG_ENOTFOUND);
    /* not held by self at this epoch: a fenced result */
    r.state = TARGET_SUCCEEDED;
    CHECK(fleet_record_local(f, 0, plan, 0, &r) == GG_ESTALE);
    CHECK(fleet_stats(f)->fenced_results == 1);
    /* an operator change (generation + 1) is accepted from anyone */
    r.generation = 1;
    r.state = TARGET_SKIPPED;
    CHECK(fleet_record_local(f, 0, plan, 1, &r) == 0);
    CHECK(fleet_record(f, plan, 1)->state == TARGET_SKIPPED);
    CHECK(fleet_record_local(f, 0, plan, 1, &r) == 0); /* the same again */
    fleet_plan_stats_t st;
    CHECK(fleet_plan_stats(f, plan, &st) == 0);
    CHECK(st.total == 4 && st.counts[TARGET_PENDING] == 3 && st.counts[TARGET_SKIPPED] == 1);
    CHECK(fleet_plan_stats(f, other, &st) == GG_ENOTFOUND);
    CHECK(fleet_owner_of(f, 1) == -1); /* no members yet */
    fleet_member_t m;
    memset(&m, 0, sizeof m);
    memcpy(m.id, id, FLEET_ID_LEN);
    m.live = true;
    fleet_set_members(f, 0, &m, 1);
    CHECK(fleet_owner_of(f, 1) == 0);
    CHECK(!fleet_synced(f));
    CHECK(fleet_next_deadline(f) <= c.lease_ttl_ms); /* synced alone after ttl */
    fleet_tick(f, c.lease_ttl_ms);
    CHECK(fleet_synced(f));
    CHECK(fleet_memory(f) > 0);
    fleet_destroy(&f);
    CHECK(f == NULL);
    fleet_destroy(&f);
    fleet_destroy(NULL);
}

/* 100,000 targets on one node: bounded work per tick, bounded memory. */
static void test_scan_budget_and_memory(void)
{
    fleet_config_t c = s_cfg();
    uint8_t id[FLEET_ID_LEN], plan[FLEET_ID_LEN];
    fn_node_id(0, id);
    memset(plan, 0x42, sizeof plan);
    const uint32_t n = 100000;
    uint64_t *keys = malloc(n * sizeof *keys);
    bool *gated = calloc(n, sizeof *gated);
    REQUIRE(keys && gated);
    for (uint32_t i = 0; i < n; i++) {
        char ref[48];
        int len = snprintf(ref, sizeof ref, "component:default/t%u", i);
        keys[i] = rendezvous_key(ref, (size_t) len);
        gated[i] = i < n - 10; /* only the last ten are claimable */
    }
    fleet_t *f = fleet_new(&c, id, "tcp://solo:1", 5, 0);
    REQUIRE(f);
    fleet_rollout_t ro = s_ro();
    CHECK(fleet_add_plan(f, 0, plan, n, keys, gated, &ro) == 0);
    fleet_member_t m;
    memset(&m, 0, sizeof m);
    memcpy(m.id, id, FLEET_ID_LEN);
    m.live = true;
    fleet_set_members(f, 0, &m, 1);
    fleet_set_capacity(f, 0, 8);

    size_t per = fleet_memory(f) / n;
    fprintf(stderr, "  memory: %zu bytes per target (record %zu)\n", per, sizeof(progress_rec_t));
    CHECK(per <= sizeof(progress_rec_t) + 25);

    fleet_plan_stats_t st;
    CHECK(fleet_plan_stats(f, plan, &st) == 0);
    CHECK(st.counts[TARGET_AWAITING_APPROVAL] == n - 10 && st.counts[TARGET_PENDING] == 10);

    uint64_t now = 0, max_work = 0, runs = 0, ticks = 0, first_run_tick = 0;
    uint32_t done = 0;
    while (now < 600000 && ticks < 100000) {
        uint64_t d = fleet_next_deadline(f);
        if (d > now)
            now = d;
        uint64_t before = fleet_stats(f)->scan_work;
        fleet_tick(f, now);
        ticks++;
        uint64_t w = fleet_stats(f)->scan_work - before;
        if (w > max_work)
            max_work = w;
        fleet_out_t o;
        while (fleet_poll(f, &o)) {
            if (o.type == FOUT_RUN) {
                runs++;
                if (!first_run_tick)
                    first_run_tick = ticks;
                progress_rec_t r = o.rec;
                r.state = TARGET_SUCCEEDED;
                CHECK(fleet_record_local(f, now, plan, o.index, &r) == 0);
                done++;
            }
            fleet_out_release(&o);
        }
        fleet_set_capacity(f, now, 8);
        if (done == 10 && runs == 10)
            break;
        if (d == UINT64_MAX)
            break;
    }
    fprintf(stderr, "  scan: max %llu work units per tick, first claim at tick %llu\n",
            (unsigned long long) max_work, (unsigned long long) first_run_tick);
    CHECK(runs == 10);
    CHECK(max_work <= FLEET_SCAN_BUDGET);
    CHECK(max_work >= FLEET_SCAN_BUDGET / 2); /* the budget is what bounded it */
    CHECK(first_run_tick >= n / FLEET_SCAN_BUDGET);
    /* nothing left: the node goes quiet */
    uint64_t w0 = fleet_stats(f)->scan_work;
    for (int k = 0; k < 20; k++) {
        uint64_t d = fleet_next_deadline(f);
        if (d == UINT64_MAX)
            break;
        now = d > now ? d : now + 1;
        fleet_tick(f, now);
        fleet_out_t o;
        while (fleet_poll(f, &o))
            fleet_out_release(&o);
    }
    CHECK(fleet_stats(f)->scan_work - w0 <= (uint64_t) n + FLEET_SCAN_BUDGET);

    /* approving everything: claims proceed, still within the budget */
    for (uint32_t i = 0; i < n - 10; i++)
        fleet_set_approved(f, now, plan, i);
    CHECK(fleet_plan_stats(f, plan, &st) == 0);
    CHECK(st.counts[TARGET_AWAITING_APPROVAL] == 0 && st.counts[TARGET_PENDING] == n - 10);
    for (int k = 0; k < 3000 && done < n; k++) {
        uint64_t d = fleet_next_deadline(f);
        if (d > now)
            now = d;
        uint64_t before = fleet_stats(f)->scan_work;
        fleet_tick(f, now);
        CHECK(fleet_stats(f)->scan_work - before <= FLEET_SCAN_BUDGET);
        fleet_out_t o;
        while (fleet_poll(f, &o)) {
            if (o.type == FOUT_RUN) {
                progress_rec_t r = o.rec;
                r.state = TARGET_SUCCEEDED;
                if (fleet_record_local(f, now, plan, o.index, &r) == 0)
                    done++;
            }
            fleet_out_release(&o);
        }
        fleet_set_capacity(f, now, 8);
    }
    CHECK(done > 10 + 3000 * 7);
    per = fleet_memory(f) / n;
    CHECK(per <= sizeof(progress_rec_t) + 25);
    fleet_destroy(&f);
    free(keys);
    free(gated);
}

/* ---- malformed input ---- */

static int s_feed(fleet_t *f, wire_writer_t *w)
{
    const uint8_t *data;
    size_t len;
    int rc = wire_writer_finish(w, &data, &len);
    if (rc)
        return 1000 + rc;
    wire_msg_t m;
    rc = wire_decode(data, len, &m);
    if (rc)
        return 2000 + rc;
    rc = fleet_handle(f, 10, &m);
    wire_msg_release(&m);
    return rc;
}

static void s_put_rec(msgpack_packer *pk, uint32_t state)
{
    progress_rec_t r;
    memset(&r, 0, sizeof r);
    r.state = (uint8_t) (state < TARGET_STATE_COUNT ? state : 0);
    if (state < TARGET_STATE_COUNT) {
        progress_pack(&r, pk);
        return;
    }
    /* a record with an out-of-range state */
    msgpack_pack_map(pk, 11);
    const char *u32keys[] = {"e", "g", "a", "sp", "d"};
    for (int k = 0; k < 5; k++) {
        msgpack_pack_str_with_body(pk, u32keys[k], strlen(u32keys[k]));
        msgpack_pack_uint32(pk, 0);
    }
    msgpack_pack_str_with_body(pk, "st", 2);
    msgpack_pack_uint32(pk, state);
    msgpack_pack_str_with_body(pk, "h", 1);
    msgpack_pack_bin_with_body(pk, r.holder, PROGRESS_ID_LEN);
    msgpack_pack_str_with_body(pk, "x", 1);
    msgpack_pack_int32(pk, 0);
    msgpack_pack_str_with_body(pk, "t0", 2);
    msgpack_pack_uint64(pk, 0);
    msgpack_pack_str_with_body(pk, "t1", 2);
    msgpack_pack_uint64(pk, 0);
    msgpack_pack_str_with_body(pk, "err", 3);
    msgpack_pack_str_with_body(pk, "", 0);
}

/* An item: plan id of plan_len bytes, index, record with `state`. */
static void s_put_item(msgpack_packer *pk, size_t plan_len, int64_t index, uint32_t state)
{
    uint8_t plan[40];
    memset(plan, 0x11, sizeof plan);
    msgpack_pack_map(pk, 3);
    msgpack_pack_str_with_body(pk, "p", 1);
    msgpack_pack_bin_with_body(pk, plan, plan_len);
    msgpack_pack_str_with_body(pk, "i", 1);
    msgpack_pack_int64(pk, index);
    msgpack_pack_str_with_body(pk, "r", 1);
    s_put_rec(pk, state);
}

/* An item of plan 0x11.. (s_put_item's) at index, running, with its own hop
 * h (or none when h < 0). */
static void s_put_hop_item(msgpack_packer *pk, uint32_t index, int h)
{
    uint8_t plan[FLEET_ID_LEN];
    memset(plan, 0x11, sizeof plan);
    msgpack_pack_map(pk, h < 0 ? 3 : 4);
    if (h >= 0) {
        msgpack_pack_str_with_body(pk, "h", 1);
        msgpack_pack_int32(pk, h);
    }
    msgpack_pack_str_with_body(pk, "p", 1);
    msgpack_pack_bin_with_body(pk, plan, sizeof plan);
    msgpack_pack_str_with_body(pk, "i", 1);
    msgpack_pack_uint32(pk, index);
    msgpack_pack_str_with_body(pk, "r", 1);
    s_put_rec(pk, TARGET_RUNNING);
}

/* A valid lazy-push message about plan 0x11..: an announcement of targets 3
 * and 5 (want = false) or a request for them; with hops, at hops 0 and 2. */
static wire_writer_t *s_have_msg(const uint8_t *sender, bool want, bool hops)
{
    uint8_t plan[FLEET_ID_LEN], v[72] = {0}, hop[2] = {0, 2};
    memset(plan, 0x11, sizeof plan);
    wire_writer_t *w = wire_writer_new(WIRE_HAVE, sender, (want ? 4 : 5) + (hops ? 1 : 0));
    wire_put_u64(w, "k", want ? 1 : 0);
    wire_put_u64(w, "hop", 0);
    if (hops)
        wire_put_bin(w, want ? "hs" : "hops", hop, sizeof hop);
    if (want) {
        wire_put_bin(w, "p", plan, sizeof plan);
        uint8_t idx[8] = {3, 0, 0, 0, 5, 0, 0, 0};
        wire_put_bin(w, "i", idx, sizeof idx);
        return w;
    }
    wire_put_str(w, "a", "tcp://b:1");
    wire_put_key(w, "plans");
    msgpack_pack_array(wire_writer_packer(w), 1);
    msgpack_pack_bin_with_body(wire_writer_packer(w), plan, sizeof plan);
    v[2] = TARGET_RUNNING; /* target 3, epoch 1 */
    v[4] = 3;
    v[8] = 1;
    v[36 + 2] = TARGET_SUCCEEDED; /* target 5, epoch 2 */
    v[36 + 4] = 5;
    v[36 + 8] = 2;
    wire_put_bin(w, "v", v, sizeof v);
    return w;
}

/* A version 2 record (fleet.c, s_rec_put: 80 bytes, then the error text) of
 * plan position `plan`, running at epoch 1 with exit code -2, started at
 * 2^40 ms; elen bytes of err. Returns its size. */
static size_t s_rb_rec(uint8_t *b, uint16_t plan, uint8_t hop, uint8_t state, uint32_t index,
                       const char *err, size_t elen)
{
    memset(b, 0, 80);
    b[0] = (uint8_t) plan;
    b[1] = (uint8_t) (plan >> 8);
    b[2] = hop;
    b[3] = state;
    b[5] = (uint8_t) elen;
    memcpy(b + 8, &index, 4); /* the test machines are little-endian, as the wire */
    b[12] = 1;                /* epoch */
    b[24] = 0xfe;             /* exit code -2 */
    b[25] = b[26] = b[27] = 0xff;
    b[32 + 5] = 1; /* started_ms 2^40 */
    memset(b + 48, 0x22, 32);
    memcpy(b + 80, err, elen);
    return 80 + elen;
}

/* PROGRESS in version 2: "plans" (n_plans of plan_len bytes, 0x11..) and
 * "rb" = block[0, len). */
static wire_writer_t *s_progress_v2(const uint8_t *sender, uint32_t n_plans, size_t plan_len,
                                    const uint8_t *block, size_t len, bool with_rb)
{
    uint8_t plan[40];
    memset(plan, 0x11, sizeof plan);
    wire_writer_t *w = wire_writer_new_version(2, WIRE_PROGRESS, sender, with_rb ? 3 : 2);
    msgpack_packer *pk = wire_writer_packer(w);
    wire_put_u64(w, "hop", 0);
    wire_put_key(w, "plans");
    msgpack_pack_array(pk, n_plans);
    for (uint32_t k = 0; k < n_plans; k++)
        msgpack_pack_bin_with_body(pk, plan, plan_len);
    if (with_rb)
        wire_put_bin(w, "rb", block, len);
    return w;
}

static wire_writer_t *s_progress(const uint8_t *sender, int variant)
{
    if (variant >= 10 && variant <= 18) {
        uint8_t b[2 * 300];
        size_t len = 0, plan_len = 32;
        uint32_t n_plans = 1;
        switch (variant) {
        case 10: /* valid: two records */
            len = s_rb_rec(b, 0, 1, TARGET_RUNNING, 3, "", 0);
            len += s_rb_rec(b + len, 0, 2, TARGET_FAILED, 4, "boom", 4);
            break;
        case 11: /* cut short */ len = s_rb_rec(b, 0, 1, TARGET_RUNNING, 3, "", 0) - 1; break;
        case 12: /* plan position beyond "plans" */
            len = s_rb_rec(b, 1, 1, TARGET_RUNNING, 3, "", 0);
            break;
        case 13: /* state out of range */ len = s_rb_rec(b, 0, 1, 99, 3, "", 0); break;
        case 14: /* error text longer than the block */
            len = s_rb_rec(b, 0, 1, TARGET_FAILED, 3, "boom", 4) - 2;
            break;
        case 15: /* error text with a NUL */
            len = s_rb_rec(b, 0, 1, TARGET_FAILED, 3, "bo\0m", 4);
            break;
        case 16: /* hop out of range */ len = s_rb_rec(b, 0, 17, TARGET_RUNNING, 3, "", 0); break;
        case 17: /* a plan id of 31 bytes */
            len = s_rb_rec(b, 0, 1, TARGET_RUNNING, 3, "", 0);
            plan_len = 31;
            break;
        default: /* no "rb" */ break;
        }
        return s_progress_v2(sender, n_plans, plan_len, b, len, variant != 18);
    }
    if (variant == 19) { /* version 1 has no "rb": "items" is missing */
        uint8_t b[80];
        size_t len = s_rb_rec(b, 0, 1, TARGET_RUNNING, 3, "", 0);
        wire_writer_t *w = wire_writer_new(WIRE_PROGRESS, sender, 2);
        wire_put_u64(w, "hop", 0);
        wire_put_bin(w, "rb", b, len);
        return w;
    }
    wire_writer_t *w = wire_writer_new(WIRE_PROGRESS, sender, 2);
    msgpack_packer *pk = wire_writer_packer(w);
    switch (variant) {
    case 0: /* valid */
        wire_put_u64(w, "hop", 0);
        wire_put_key(w, "items");
        msgpack_pack_array(pk, 1);
        s_put_item(pk, 32, 3, TARGET_RUNNING);
        break;
    case 1: /* hop is a string */
        wire_put_str(w, "hop", "0");
        wire_put_key(w, "items");
        msgpack_pack_array(pk, 0);
        break;
    case 2: /* hop out of range */
        wire_put_u64(w, "hop", 1000);
        wire_put_key(w, "items");
        msgpack_pack_array(pk, 0);
        break;
    case 3: /* items is a map */
        wire_put_u64(w, "hop", 0);
        wire_put_key(w, "items");
        msgpack_pack_map(pk, 0);
        break;
    case 4: /* too many items */
        wire_put_u64(w, "hop", 0);
        wire_put_key(w, "items");
        msgpack_pack_array(pk, FLEET_MAX_FEED_ITEMS + 1);
        for (int k = 0; k < FLEET_MAX_FEED_ITEMS + 1; k++)
            msgpack_pack_nil(pk);
        break;
    case 5: /* plan id of 31 bytes */
        wire_put_u64(w, "hop", 0);
        wire_put_key(w, "items");
        msgpack_pack_array(pk, 1);
        s_put_item(pk, 31, 3, TARGET_RUNNING);
        break;
    case 6: /* negative index */
        wire_put_u64(w, "hop", 0);
        wire_put_key(w, "items");
        msgpack_pack_array(pk, 1);
        s_put_item(pk, 32, -1, TARGET_RUNNING);
        break;
    case 7: /* index beyond any plan */
        wire_put_u64(w, "hop", 0);
        wire_put_key(w, "items");
        msgpack_pack_array(pk, 1);
        s_put_item(pk, 32, FLEET_MAX_TARGETS, TARGET_RUNNING);
        break;
    case 8: /* bad state in the second item: nothing applied */
        wire_put_u64(w, "hop", 0);
        wire_put_key(w, "items");
        msgpack_pack_array(pk, 2);
        s_put_item(pk, 32, 4, TARGET_RUNNING);
        s_put_item(pk, 32, 5, 99);
        break;
    default: /* missing items */
        wire_put_u64(w, "hop", 0);
        wire_put_u64(w, "itemz", 0);
        break;
    }
    return w;
}

static wire_writer_t *s_digest(const uint8_t *sender, int variant)
{
    uint32_t fields[] = {4, 4, 4, 3, 7, 7, 7, 7};
    wire_writer_t *w = wire_writer_new(WIRE_DIGEST, sender, fields[variant]);
    msgpack_packer *pk = wire_writer_packer(w);
    switch (variant) {
    case 0: /* valid pull */
        wire_put_u64(w, "k", 0);
        wire_put_u64(w, "f", 1);
        wire_put_u64(w, "s", 0);
        wire_put_u64(w, "q", 1);
        break;
    case 1: /* unknown sub-type */
        wire_put_u64(w, "k", 5);
        wire_put_u64(w, "f", 1);
        wire_put_u64(w, "s", 0);
        wire_put_u64(w, "q", 1);
        break;
    case 2: /* since is negative */
        wire_put_u64(w, "k", 0);
        wire_put_u64(w, "f", 1);
        wire_put_i64(w, "s", -5);
        wire_put_u64(w, "q", 1);
        break;
    case 3: /* pull without since */
        wire_put_u64(w, "k", 0);
        wire_put_u64(w, "f", 1);
        wire_put_u64(w, "q", 1);
        break;
    default: /* feed replies */
        wire_put_u64(w, "k", 1);
        wire_put_u64(w, "f", 1);
        wire_put_u64(w, "n", 1);
        if (variant == 5)
            wire_put_str(w, "m", "false");
        else
            wire_put_bool(w, "m", false);
        wire_put_u64(w, "q", 1);
        wire_put_key(w, "items");
        msgpack_pack_array(pk, 0);
        wire_put_key(w, "docs");
        if (variant == 6) { /* a document of size 0 */
            uint8_t id[FLEET_ID_LEN] = {1};
            msgpack_pack_array(pk, 1);
            msgpack_pack_map(pk, 3);
            msgpack_pack_str_with_body(pk, "id", 2);
            msgpack_pack_bin_with_body(pk, id, FLEET_ID_LEN);
            msgpack_pack_str_with_body(pk, "kind", 4);
            msgpack_pack_uint8(pk, 1);
            msgpack_pack_str_with_body(pk, "size", 4);
            msgpack_pack_uint64(pk, 0);
        } else if (variant == 7) { /* docs is a string */
            msgpack_pack_str_with_body(pk, "x", 1);
        } else {
            msgpack_pack_array(pk, 0);
        }
        break;
    }
    return w;
}

static wire_writer_t *s_plan_msg(const uint8_t *sender, int variant)
{
    uint8_t id[FLEET_ID_LEN];
    memset(id, 0x33, sizeof id);
    uint32_t fields[] = {4, 4, 4, 3, 3, 5, 5, 4};
    wire_writer_t *w = wire_writer_new(WIRE_PLAN, sender, fields[variant]);
    switch (variant) {
    case 0: /* valid announce: the fetch starts */
        wire_put_u64(w, "k", 0);
        wire_put_bin(w, "id", id, FLEET_ID_LEN);
        wire_put_u64(w, "kind", 1);
        wire_put_u64(w, "size", 100);
        break;
    case 1: /* too big */
        wire_put_u64(w, "k", 0);
        wire_put_bin(w, "id", id, FLEET_ID_LEN);
        wire_put_u64(w, "kind", 1);
        wire_put_u64(w, "size", (uint64_t) FLEET_MAX_DOC_BYTES + 1);
        break;
    case 2: /* kind over a byte */
        wire_put_u64(w, "k", 0);
        wire_put_bin(w, "id", id, FLEET_ID_LEN);
        wire_put_u64(w, "kind", 300);
        wire_put_u64(w, "size", 100);
        break;
    case 3: /* unknown sub-type */
        wire_put_u64(w, "k", 3);
        wire_put_bin(w, "id", id, FLEET_ID_LEN);
        wire_put_u64(w, "off", 0);
        break;
    case 4: /* unaligned offset */
        wire_put_u64(w, "k", 1);
        wire_put_bin(w, "id", id, FLEET_ID_LEN);
        wire_put_u64(w, "off", 7);
        break;
    case 5: /* chunk longer than the document */
        wire_put_u64(w, "k", 2);
        wire_put_bin(w, "id", id, FLEET_ID_LEN);
        wire_put_u64(w, "off", 0);
        wire_put_u64(w, "total", 100);
        wire_put_bin(w, "data", id, 32);
        break;
    case 6: /* data is a string */
        wire_put_u64(w, "k", 2);
        wire_put_bin(w, "id", id, FLEET_ID_LEN);
        wire_put_u64(w, "off", 0);
        wire_put_u64(w, "total", 100);
        wire_put_str(w, "data", "abc");
        break;
    default: /* id of 16 bytes */
        wire_put_u64(w, "k", 1);
        wire_put_bin(w, "id", id, 16);
        wire_put_u64(w, "off", 0);
        wire_put_u64(w, "size", 1);
        break;
    }
    return w;
}

/* An announcement's head at wire `version` from peer, naming plan pid; the
 * caller adds its entries ("v" or "d"). */
static wire_writer_t *s_announcement(const uint8_t *peer, uint32_t version, const uint8_t *pid)
{
    wire_writer_t *w = wire_writer_new_version(version, WIRE_HAVE, peer, 5);
    wire_put_u64(w, "k", 0);
    wire_put_u64(w, "hop", 1);
    wire_put_str(w, "a", "tcp://p:1");
    wire_put_key(w, "plans");
    msgpack_pack_array(wire_writer_packer(w), 1);
    msgpack_pack_bin_with_body(wire_writer_packer(w), pid, FLEET_ID_LEN);
    return w;
}

static void test_malformed_messages(void)
{
    fleet_config_t c = s_cfg();
    uint8_t id[FLEET_ID_LEN], peer[FLEET_ID_LEN];
    fn_node_id(0, id);
    fn_node_id(1, peer);
    fleet_t *f = fleet_new(&c, id, "tcp://a:1", 3, 0);
    REQUIRE(f);
    fleet_member_t m[2];
    memset(m, 0, sizeof m);
    memcpy(m[0].id, id, FLEET_ID_LEN);
    memcpy(m[1].id, peer, FLEET_ID_LEN);
    snprintf(m[1].address, sizeof m[1].address, "tcp://b:1");
    m[0].live = m[1].live = true;
    fleet_set_members(f, 0, m, 2);

    uint64_t bad = 0;
    for (int v = 0; v <= 19; v++) {
        wire_writer_t *w = s_progress(peer, v);
        REQUIRE(w);
        int rc = s_feed(f, w);
        wire_writer_destroy(&w);
        if (v == 0 || v == 10) {
            CHECK(rc == 0); /* an unknown plan: kept for later */
        } else if (v == 4) {
            CHECK(rc == GG_EMALFORMED);
            bad++;
        } else {
            if (rc != GG_EMALFORMED)
                fprintf(stderr, "  progress variant %d: rc %d\n", v, rc);
            CHECK(rc == GG_EMALFORMED);
            bad++;
        }
    }
    for (int v = 0; v <= 7; v++) {
        wire_writer_t *w = s_digest(peer, v);
        REQUIRE(w);
        int rc = s_feed(f, w);
        wire_writer_destroy(&w);
        if (v == 0 || v == 4) {
            CHECK(rc == 0);
        } else {
            if (rc != GG_EMALFORMED)
                fprintf(stderr, "  digest variant %d: rc %d\n", v, rc);
            CHECK(rc == GG_EMALFORMED);
            bad++;
        }
    }
    for (int v = 0; v <= 7; v++) {
        wire_writer_t *w = s_plan_msg(peer, v);
        REQUIRE(w);
        int rc = s_feed(f, w);
        wire_writer_destroy(&w);
        if (v == 0) {
            CHECK(rc == 0);
        } else {
            if (rc != GG_EMALFORMED)
                fprintf(stderr, "  plan variant %d: rc %d\n", v, rc);
            CHECK(rc == GG_EMALFORMED);
            bad++;
        }
    }
    {
        wire_writer_t *w = wire_writer_new(WIRE_LEASE, peer, 1);
        wire_put_str(w, "seq", "1");
        CHECK(s_feed(f, w) == GG_EMALFORMED);
        wire_writer_destroy(&w);
        bad++;
        w = wire_writer_new(WIRE_LEASE, peer, 1);
        wire_put_u64(w, "seq", 1);
        CHECK(s_feed(f, w) == 0);
        wire_writer_destroy(&w);
        CHECK(fleet_stats(f)->heartbeats_in == 1);
        w = wire_writer_new(WIRE_PING, peer, 0);
        CHECK(s_feed(f, w) == GG_EINVAL);
        wire_writer_destroy(&w);
    }
    {
        /* announcements: versions of a whole 36 bytes each, naming a plan
         * the message lists */
        uint8_t v[72] = {0}, pid[FLEET_ID_LEN] = {0};
        for (int variant = 0; variant < 3; variant++) {
            wire_writer_t *w = s_announcement(peer, 1, pid);
            v[36] = variant == 1 ? 1 : 0; /* plan 1 of a list of 1 */
            wire_put_bin(w, "v", v, variant == 0 ? 71 : 72);
            CHECK(s_feed(f, w) == (variant < 2 ? GG_EMALFORMED : 0));
            bad += variant < 2;
            wire_writer_destroy(&w);
        }
        /* version 2: 12-byte entries (plan, index, digest) under "d" */
        uint8_t d[24] = {0};
        for (int variant = 0; variant < 4; variant++) {
            wire_writer_t *w = s_announcement(peer, 2, pid);
            d[12] = variant == 1 ? 1 : 0; /* plan 1 of a list of 1 */
            /* 0: not whole entries; 1: a plan not listed; 2: version 1's
             * "v" in a version 2 message; 3: valid */
            wire_put_bin(w, variant == 2 ? "v" : "d", d, variant == 0 ? 23 : 24);
            CHECK(s_feed(f, w) == (variant < 3 ? GG_EMALFORMED : 0));
            bad += variant < 3;
            wire_writer_destroy(&w);
        }
        wire_writer_t *w = wire_writer_new(WIRE_HAVE, peer, 4);
        wire_put_u64(w, "k", 1);
        wire_put_u64(w, "hop", 1);
        wire_put_bin(w, "p", pid, sizeof pid);
        wire_put_bin(w, "i", v, 3); /* not whole u32 indices */
        CHECK(s_feed(f, w) == GG_EMALFORMED);
        bad++;
        wire_writer_destroy(&w);
        CHECK(fleet_msg_type_known(WIRE_HAVE));
    }
    CHECK(fleet_stats(f)->malformed == bad);
    CHECK(fleet_msg_type_known(WIRE_PROGRESS) && !fleet_msg_type_known(WIRE_PING));

    /* mutations of valid messages: refused or accepted, never a crash (the
     * plan of s_put_item and s_have_msg known, so that announcements and
     * requests reach its targets) */
    {
        uint8_t plan[FLEET_ID_LEN];
        uint64_t keys[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        fleet_rollout_t ro = s_ro();
        memset(plan, 0x11, sizeof plan);
        REQUIRE(fleet_add_plan(f, 20, plan, 8, keys, NULL, &ro) == 0);
        /* the version 2 records kept aside (variant 10) are applied, every
         * field as s_rb_rec wrote it */
        const progress_rec_t *r3 = fleet_record(f, plan, 3), *r4 = fleet_record(f, plan, 4);
        REQUIRE(r3 && r4);
        CHECK(r3->state == TARGET_RUNNING && r3->error[0] == '\0');
        CHECK(r4->state == TARGET_FAILED && strcmp(r4->error, "boom") == 0);
        CHECK(r4->epoch == 1 && r4->generation == 0 && r4->attempt == 0);
        CHECK(r4->exit_code == -2 && r4->started_ms == (1ull << 40) && r4->finished_ms == 0);
        uint8_t holder[PROGRESS_ID_LEN];
        memset(holder, 0x22, sizeof holder);
        CHECK(memcmp(r4->holder, holder, sizeof holder) == 0);
    }
    rng_t rng;
    rng_seed(&rng, 99);
    /* and the optional per-item hops: a PROGRESS whose items carry their
     * own, an announcement and a request with a hop per entry */
    wire_writer_t *hops_progress = wire_writer_new(WIRE_PROGRESS, peer, 2);
    wire_put_u64(hops_progress, "hop", 0);
    wire_put_key(hops_progress, "items");
    msgpack_pack_array(wire_writer_packer(hops_progress), 2);
    s_put_hop_item(wire_writer_packer(hops_progress), 3, -1);
    s_put_hop_item(wire_writer_packer(hops_progress), 4, 2);
    wire_writer_t *hops_have = s_have_msg(peer, false, true);
    wire_writer_t *hops_want = s_have_msg(peer, true, true);
    wire_writer_t *valid[10] = {s_progress(peer, 0),
                                s_digest(peer, 0),
                                s_digest(peer, 4),
                                s_plan_msg(peer, 0),
                                s_have_msg(peer, false, false),
                                s_have_msg(peer, true, false),
                                hops_progress,
                                hops_have,
                                hops_want,
                                s_progress(peer, 10)};
    for (int k = 6; k < 10; k++)
        CHECK(s_feed(f, valid[k]) == 0); /* accepted as they are */
    uint64_t wants = fleet_stats(f)->wants_out;
    for (int round = 0; round < 5000; round++) {
        wire_writer_t *w = valid[round % 10];
        const uint8_t *data;
        size_t len;
        REQUIRE(wire_writer_finish(w, &data, &len) == 0);
        uint8_t buf[2048];
        REQUIRE(len <= sizeof buf);
        memcpy(buf, data, len);
        int flips = 1 + (int) rng_below(&rng, 4);
        for (int k = 0; k < flips; k++)
            buf[rng_below(&rng, len)] = (uint8_t) rng_next(&rng);
        wire_msg_t msg;
        if (wire_decode(buf, len, &msg) == 0) {
            int rc = fleet_handle(f, 20 + (uint64_t) round, &msg);
            CHECK(rc == 0 || rc == GG_EMALFORMED || rc == GG_EINVAL);
            wire_msg_release(&msg);
        }
        fleet_tick(f, 20 + (uint64_t) round);
        fleet_out_t o;
        while (fleet_poll(f, &o))
            fleet_out_release(&o);
    }
    for (int k = 0; k < 10; k++)
        wire_writer_destroy(&valid[k]);
    CHECK(fleet_stats(f)->wants_out > wants); /* some announcements got through */
    fleet_destroy(&f);
}

/* ------------------------------------------------------------------ */
/* network                                                            */

/* Starts every node of net with a plan of n targets, lets them see each
 * other and runs until the plan is done, then 3 s more; checks that every
 * target ran exactly once. Returns the plan's slot, -1 when it could not
 * start. */
static int s_run_plan(fleet_net_t *net, uint32_t n)
{
    fleet_rollout_t ro = s_ro();
    int k = fn_plan(net, n, &ro);
    if (k < 0)
        return -1;
    for (int i = 0; i < net->n; i++)
        if (fn_start(net, i, false) != 0)
            return -1;
    fn_view_all(net);
    CHECK(s_run_done(net, k, 120000));
    fn_run_until(net, net->now + 3000);
    CHECK(fn_ran_once(net, k) == n);
    return k;
}

static void test_net_basic(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 3, 1);
    int k = s_run_plan(&net, 300);
    REQUIRE(k >= 0);
    const fn_plan_t *p = &net.plans[k];
    CHECK(net.overlaps == 0 && net.overcommit == 0 && net.loops == 0);
    CHECK(SUM_STAT(&net, conflicts) == 0 && SUM_STAT(&net, takeovers) == 0);
    CHECK(SUM_STAT(&net, fenced_results) == 0 && SUM_STAT(&net, malformed) == 0);
    CHECK(net.codec_errors == 0 && net.handle_errors == 0 && net.sender_mismatch == 0);
    CHECK(s_converged(&net, k));
    for (int i = 0; i < 3; i++) {
        fleet_plan_stats_t st;
        CHECK(fleet_plan_stats(net.nodes[i].f, p->id, &st) == 0);
        CHECK(st.counts[TARGET_SUCCEEDED] == 300 && st.completed && !st.auto_paused);
        CHECK(st.running_here == 0);
        CHECK(acc.runs_by_node[i] > 50); /* the work was spread */
        CHECK(fleet_synced(net.nodes[i].f));
    }
    CHECK(acc.plan_states >= 3); /* each node reported completion */
    s_free(&net);
}

/* A fleet halfway through an upgrade: nodes 0-2 read wire version 1 only
 * (and speak nothing newer), nodes 3-5 read version 2. Every message a node
 * gets is one it reads, both forms are in use, and the plan completes as in
 * a fleet of one version. */
static void test_net_mixed_versions(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 6, 7);
    for (int i = 0; i < 3; i++)
        net.nodes[i].wire_version = 1;
    int k = s_run_plan(&net, 300);
    REQUIRE(k >= 0);
    CHECK(net.version_refused == 0);
    CHECK(net.delivered_version[1] > 0 && net.delivered_version[2] > 0);
    CHECK(net.overlaps == 0 && net.overcommit == 0 && net.loops == 0);
    CHECK(SUM_STAT(&net, fenced_results) == 0 && SUM_STAT(&net, malformed) == 0);
    CHECK(net.codec_errors == 0 && net.handle_errors == 0);
    CHECK(s_converged(&net, k));
    s_free(&net);
}

static void test_net_join_moves_few(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 4, 2);
    net.run_min = 200;
    net.run_max = 400;
    fleet_rollout_t ro = s_ro();
    int k = fn_plan(&net, 400, &ro);
    const fn_plan_t *p = &net.plans[k];
    for (int i = 0; i < 3; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    int before[400], count[4] = {0};
    for (uint32_t i = 0; i < p->n; i++) {
        before[i] = fleet_owner_of(net.nodes[0].f, p->keys[i]);
        REQUIRE(before[i] >= 0 && before[i] < 3);
        count[before[i]]++;
        CHECK(fleet_owner_of(net.nodes[1].f, p->keys[i]) == before[i]);
    }
    for (int i = 0; i < 3; i++)
        CHECK(count[i] > 400 / 3 * 7 / 10 && count[i] < 400 / 3 * 13 / 10);
    s_goal_t third = {k, 130};
    CHECK(fn_run_until_pred(&net, net.now + 60000, s_done, &third));
    REQUIRE(fn_start(&net, 3, false) == 0);
    fn_view_all(&net);
    int moved = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        int now_owner = fleet_owner_of(net.nodes[0].f, p->keys[i]);
        if (now_owner != before[i]) {
            moved++;
            CHECK(now_owner == 3); /* only to the newcomer */
        }
    }
    fprintf(stderr, "  join moved %d of 400 targets\n", moved);
    CHECK(moved > 400 * 15 / 100 && moved < 400 * 35 / 100);
    CHECK(s_run_done(&net, k, 120000));
    fn_run_until(&net, net.now + 3000);
    uint32_t once = 0;
    for (uint32_t i = 0; i < p->n; i++)
        once += p->runs[i] == 1 && p->aborts[i] == 0;
    CHECK(once == p->n);
    CHECK(acc.runs_by_node[3] > 0);
    CHECK(net.overlaps == 0 && SUM_STAT(&net, takeovers) == 0);
    CHECK(SUM_STAT(&net, conflicts) == 0);
    CHECK(s_converged(&net, k));
    s_free(&net);
}

/* Jobs of node `node` running right now. */
static int s_jobs(const fleet_net_t *net, int node)
{
    return net->nodes[node].n_jobs;
}

static void test_net_crash_takeover_and_restart(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 3, 3);
    net.run_min = 300;
    net.run_max = 600;
    fleet_rollout_t ro = s_ro();
    int k = fn_plan(&net, 300, &ro);
    const fn_plan_t *p = &net.plans[k];
    for (int i = 0; i < 3; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    s_goal_t part = {k, 90};
    CHECK(fn_run_until_pred(&net, net.now + 60000, s_done, &part));
    int held = s_jobs(&net, 2);
    REQUIRE(held > 0);
    /* the targets node 2 was running when it died, and whether its claim had
     * reached node 0 (one made in the last push interval may not have) */
    uint32_t victims[FN_MAX_JOBS], epochs[FN_MAX_JOBS];
    bool seen[FN_MAX_JOBS];
    uint64_t held_seen = 0;
    for (int x = 0; x < held; x++) {
        victims[x] = net.nodes[2].jobs[x].index;
        epochs[x] = net.nodes[2].jobs[x].claim.epoch;
        const progress_rec_t *r = fleet_record(net.nodes[0].f, p->id, victims[x]);
        seen[x] =
            r && r->epoch == epochs[x] && memcmp(r->holder, net.nodes[2].id, FLEET_ID_LEN) == 0;
    }
    for (uint32_t i = 0; i < p->n; i++) {
        const progress_rec_t *r = fleet_record(net.nodes[0].f, p->id, i);
        held_seen += (r->state == TARGET_RUNNING || r->state == TARGET_RETRY_WAIT) &&
                     memcmp(r->holder, net.nodes[2].id, FLEET_ID_LEN) == 0;
    }
    fn_crash(&net, 2);
    /* others still think it is alive for a while: no takeover yet */
    fn_run_until(&net, net.now + 500);
    CHECK(SUM_STAT(&net, takeovers) == 0);
    fn_see(&net, 0, 2, false);
    fn_see(&net, 1, 2, false);
    fn_run_until(&net, net.now + 700); /* once slots free up */
    /* what node 0 knew node 2 held is taken over, before new targets */
    CHECK(held_seen > 0 && SUM_STAT(&net, takeovers) == held_seen);
    CHECK(s_run_done(&net, k, 120000));
    for (int x = 0; x < held; x++) {
        /* taken over at epoch + 1; a claim that never left node 2 is claimed
         * anew at its epoch (DESIGN.md §4) */
        const progress_rec_t *r = fleet_record(net.nodes[0].f, p->id, victims[x]);
        CHECK(r && r->state == TARGET_SUCCEEDED && r->epoch == epochs[x] + (seen[x] ? 1 : 0));
    }
    CHECK(net.overlaps == 0);
    CHECK(s_count_state(net.nodes[0].f, p->id, p->n, TARGET_SUCCEEDED) == p->n);

    /* restart node 2 from its store, cut off: it resumes nothing */
    uint64_t runs2 = acc.runs_by_node[2];
    fn_cut(&net, 2, 0, true);
    fn_cut(&net, 2, 1, true);
    REQUIRE(fn_start(&net, 2, true) == 0);
    for (int j = 0; j < 3; j++)
        net.nodes[2].view[j] = true;
    fn_push_view(&net, 2);
    /* its own stored claim comes back pending at the same epoch: a claim
     * that may never have left it yields to any peer's claim at that epoch */
    const progress_rec_t *r = fleet_record(net.nodes[2].f, p->id, victims[0]);
    CHECK(r && r->state == TARGET_PENDING && r->epoch == epochs[0]);
    fn_run_until(&net, net.now + 2500);
    CHECK(!fleet_synced(net.nodes[2].f));
    CHECK(acc.runs_by_node[2] == runs2);
    /* healed: it syncs, learns of the takeovers, re-claims nothing */
    fn_cut(&net, 2, 0, false);
    fn_cut(&net, 2, 1, false);
    fn_view_all(&net);
    s_conv_arg_t ca = {k};
    CHECK(fn_run_until_pred(&net, net.now + 20000, s_converged_pred, &ca));
    CHECK(fleet_synced(net.nodes[2].f));
    CHECK(fleet_stats(net.nodes[2].f)->reclaims == 0);
    CHECK(acc.runs_by_node[2] == runs2);
    CHECK(s_count_state(net.nodes[2].f, p->id, p->n, TARGET_SUCCEEDED) == p->n);
    CHECK(net.overlaps == 0);
    s_free(&net);
}

static bool s_synced_pred(fleet_net_t *net, void *arg)
{
    const fn_node_t *nd = arg;
    return nd->f && fleet_synced(nd->f);
}

static void test_net_quick_restart_reclaims(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 3, 4);
    net.run_min = 4000;
    net.run_max = 5000;
    fleet_rollout_t ro = s_ro();
    int k = fn_plan(&net, 60, &ro);
    const fn_plan_t *p = &net.plans[k];
    for (int i = 0; i < 3; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    fn_run_until(&net, net.now + 1500);
    int held = s_jobs(&net, 2);
    REQUIRE(held > 0);
    uint32_t victims[FN_MAX_JOBS], epochs[FN_MAX_JOBS];
    for (int x = 0; x < held; x++) {
        victims[x] = net.nodes[2].jobs[x].index;
        epochs[x] = net.nodes[2].jobs[x].claim.epoch;
    }
    uint64_t runs2 = acc.runs_by_node[2];
    fn_crash(&net, 2);
    fn_cut(&net, 2, 0, true);
    fn_cut(&net, 2, 1, true);
    REQUIRE(fn_start(&net, 2, true) == 0);
    for (int j = 0; j < 3; j++)
        net.nodes[2].view[j] = true;
    fn_push_view(&net, 2);
    fn_run_until(&net, net.now + 1000);
    CHECK(acc.runs_by_node[2] == runs2); /* not synced: nothing resumed */
    CHECK(!fleet_synced(net.nodes[2].f));
    fn_cut(&net, 2, 0, false);
    fn_cut(&net, 2, 1, false);
    CHECK(fn_run_until_pred(&net, net.now + 3000, s_synced_pred, &net.nodes[2]));
    fn_run_until(&net, net.now + 100); /* the re-claims reach the others */
    CHECK(fleet_stats(net.nodes[2].f)->reclaims == (uint64_t) held);
    CHECK(acc.runs_by_node[2] == runs2 + (uint64_t) held);
    for (int x = 0; x < held; x++) {
        const progress_rec_t *r = fleet_record(net.nodes[0].f, p->id, victims[x]);
        CHECK(r && r->epoch == epochs[x] + 1 && s_node_of_id(&net, r->holder) == 2);
    }
    CHECK(SUM_STAT(&net, takeovers) == 0);
    CHECK(s_run_done(&net, k, 120000));
    CHECK(net.overlaps == 0);
    CHECK(s_count_state(net.nodes[1].f, p->id, p->n, TARGET_SUCCEEDED) == p->n);
    s_free(&net);
}

/* A restarted node's view holds its peers as dead until it hears from
 * them. Once it has synced with one peer, the leases of another peer that
 * is alive and working (but not yet heard from) must not look dead to it: no
 * takeover, no second execution, until that peer has been seen alive and
 * then dead, or its lease has gone ttl + margin without news. */
static void test_net_restart_respects_unheard_holders(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 4, 11);
    net.run_min = 4000;
    net.run_max = 5000;
    fleet_rollout_t ro = s_ro();
    int k = fn_plan(&net, 80, &ro);
    for (int i = 0; i < 4; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    fn_run_until(&net, net.now + 1500);
    REQUIRE(s_jobs(&net, 1) > 0);
    fn_crash(&net, 3);
    REQUIRE(fn_start(&net, 3, true) == 0);
    for (int j = 0; j < 4; j++)
        net.nodes[3].view[j] = j != 1; /* 1: restored as dead, not heard from yet */
    fn_push_view(&net, 3);
    CHECK(fn_run_until_pred(&net, net.now + 3000, s_synced_pred, &net.nodes[3]));
    /* Node 1 keeps claiming as its runs end (4-5 s each); node 3 learns
     * of those claims while 1 is still dead in the view it started with. */
    uint64_t claims1 = fleet_stats(net.nodes[1].f)->claims;
    fn_run_until(&net, net.now + 6000);
    CHECK(fleet_stats(net.nodes[1].f)->claims > claims1);
    CHECK(fleet_stats(net.nodes[3].f)->takeovers == 0);
    CHECK(net.overlaps == 0);
    fn_see(&net, 3, 1, true);
    CHECK(s_run_done(&net, k, 120000));
    CHECK(net.overlaps == 0);
    s_free(&net);
}

static void test_net_partition_fences_lower_epoch(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 3, 5);
    net.run_min = 2500;
    net.run_max = 3000;
    net.ignore_abort = true; /* runners finish and report anyway */
    for (int i = 0; i < 3; i++)
        net.nodes[i].slots = 64;
    fleet_rollout_t ro = s_ro();
    int k = fn_plan(&net, 40, &ro);
    const fn_plan_t *p = &net.plans[k];
    for (int i = 0; i < 3; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    fn_run_until(&net, net.now + 500);
    REQUIRE(s_jobs(&net, 2) > 0 && s_jobs(&net, 0) > 0);
    fn_cut(&net, 0, 2, true);
    fn_cut(&net, 1, 2, true);
    fn_see(&net, 0, 2, false);
    fn_see(&net, 1, 2, false);
    fn_see(&net, 2, 0, false);
    fn_see(&net, 2, 1, false);
    fn_run_until(&net, net.now + 1000);
    CHECK(SUM_STAT(&net, takeovers) > 0);
    CHECK(net.overlaps > 0); /* both sides run some targets: a real partition */
    fn_cut(&net, 0, 2, false);
    fn_cut(&net, 1, 2, false);
    fn_view_all(&net);
    CHECK(s_run_done(&net, k, 120000));
    s_conv_arg_t ca = {k};
    CHECK(fn_run_until_pred(&net, net.now + 20000, s_converged_pred, &ca));
    uint64_t fenced = SUM_STAT(&net, fenced_results);
    uint64_t net_fenced = net.nodes[0].fenced + net.nodes[1].fenced + net.nodes[2].fenced;
    fprintf(stderr, "  partition: %llu fenced results, %llu fenced aborts, %llu conflicts\n",
            (unsigned long long) fenced, (unsigned long long) acc.aborts[FLEET_ABORT_FENCED],
            (unsigned long long) SUM_STAT(&net, conflicts));
    CHECK(fenced > 0 && fenced == net_fenced);
    CHECK(acc.aborts[FLEET_ABORT_FENCED] > 0);
    CHECK(s_count_state(net.nodes[0].f, p->id, p->n, TARGET_SUCCEEDED) == p->n);
    s_free(&net);
}

static void test_net_silent_holder_taken_over(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 3, 6);
    net.run_min = 20000;
    net.run_max = 30000;
    for (int i = 0; i < 3; i++)
        net.nodes[i].slots = 64;
    fleet_rollout_t ro = s_ro();
    int k = fn_plan(&net, 30, &ro);
    const fn_plan_t *p = &net.plans[k];
    for (int i = 0; i < 3; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    fn_run_until(&net, net.now + 2000);
    int held = s_jobs(&net, 2);
    REQUIRE(held > 0);
    uint32_t victim = net.nodes[2].jobs[0].index;
    net.nodes[2].frozen = true; /* hung: alive in every view, silent */
    uint64_t t0 = net.now;
    uint64_t ttl = net.cfg.lease_ttl_ms, margin = net.cfg.lease_margin_ms;
    fn_run_until(&net, t0 + ttl + margin - ttl / 3 - 50);
    CHECK(SUM_STAT(&net, takeovers) == 0);
    fn_run_until(&net, t0 + ttl + margin + 500);
    CHECK(SUM_STAT(&net, takeovers) == (uint64_t) held);
    const progress_rec_t *r = fleet_record(net.nodes[0].f, p->id, victim);
    CHECK(r && r->state == TARGET_RUNNING && s_node_of_id(&net, r->holder) != 2);
    s_free(&net);
}

static void test_net_same_epoch_race(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 2, 7);
    net.run_min = 500;
    net.run_max = 600;
    net.nodes[0].slots = 1;
    net.nodes[1].slots = 1;
    fleet_rollout_t ro = s_ro();
    int k = fn_plan(&net, 1, &ro);
    const fn_plan_t *p = &net.plans[k];
    uint64_t t0 = net.now;
    for (int i = 0; i < 2; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    /* each sees only itself: both own the target, both sync alone */
    fn_push_view(&net, 0);
    fn_push_view(&net, 1);
    fn_run_until(&net, t0 + net.cfg.lease_ttl_ms);
    CHECK(acc.runs_by_node[0] == 1 && acc.runs_by_node[1] == 1);
    fn_view_all(&net);
    fn_run_until(&net, net.now + 200);
    int winner = memcmp(net.nodes[0].id, net.nodes[1].id, FLEET_ID_LEN) > 0 ? 0 : 1;
    CHECK(acc.aborts[FLEET_ABORT_CONFLICT] == 1);
    CHECK(fleet_stats(net.nodes[1 - winner].f)->conflicts == 1);
    CHECK(fleet_stats(net.nodes[winner].f)->conflicts == 0);
    for (int i = 0; i < 2; i++) {
        const progress_rec_t *r = fleet_record(net.nodes[i].f, p->id, 0);
        CHECK(r && r->epoch == 1 && s_node_of_id(&net, r->holder) == winner);
    }
    CHECK(s_run_done(&net, k, 20000));
    fn_run_until(&net, net.now + 1000);
    CHECK(s_converged(&net, k));
    CHECK(SUM_STAT(&net, takeovers) == 0);
    const progress_rec_t *r = fleet_record(net.nodes[0].f, p->id, 0);
    CHECK(r && r->state == TARGET_SUCCEEDED && s_node_of_id(&net, r->holder) == winner);
    s_free(&net);
}

/* Claims made while the owner set is changing (here: the fleet forming) wait
 * before they run, so that a competing claim of the same epoch can arrive
 * first; once the set has settled, claims run at once. */
static void test_net_claims_wait_while_owners_change(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 3, 8);
    net.run_min = 30;
    net.run_max = 60;
    fleet_rollout_t ro = s_ro();
    int k = fn_plan(&net, 60, &ro);
    for (int i = 0; i < 3; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    uint64_t t0 = net.now;
    /* claimed (records running) within the settle window, not started yet */
    fn_run_until(&net, t0 + net.cfg.push_interval_ms * 2);
    uint64_t delayed = SUM_STAT(&net, starts_delayed), runs = 0;
    for (int i = 0; i < 3; i++)
        runs += acc.runs_by_node[i];
    CHECK(delayed > 0);
    CHECK(runs == 0);
    CHECK(s_count_state(net.nodes[0].f, net.plans[k].id, 60, TARGET_RUNNING) > 0);
    CHECK(s_run_done(&net, k, 20000));
    CHECK(net.overlaps == 0 && net.overcommit == 0);
    /* the claims after the window ran at once */
    CHECK(SUM_STAT(&net, starts_delayed) == delayed);
    CHECK(SUM_STAT(&net, claims) > delayed);
    s_free(&net);
}

static void test_net_lossy_convergence(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 4, 8);
    net.loss = 0.2;
    net.dup = 0.2;
    net.latency_min = 1;
    net.latency_max = 60; /* reorders */
    fleet_rollout_t ro = s_ro();
    int k = fn_plan(&net, 200, &ro);
    const fn_plan_t *p = &net.plans[k];
    for (int i = 0; i < 4; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    CHECK(s_run_done(&net, k, 300000));
    /* operator retries on node 3: generation + 1, pending again */
    for (uint32_t i = 0; i < 20; i++) {
        progress_rec_t r = *fleet_record(net.nodes[3].f, p->id, i);
        r.generation++;
        r.state = TARGET_PENDING;
        r.attempt = 0;
        memset(r.holder, 0, FLEET_ID_LEN);
        CHECK(fleet_record_local(net.nodes[3].f, net.now, p->id, i, &r) == 0);
    }
    CHECK(s_run_done(&net, k, 300000));
    net.loss = 0.2;
    s_conv_arg_t ca = {k};
    CHECK(fn_run_until_pred(&net, net.now + 60000, s_converged_pred, &ca));
    for (uint32_t i = 0; i < 20; i++) {
        const progress_rec_t *r = fleet_record(net.nodes[0].f, p->id, i);
        CHECK(r && r->generation == 1 && r->state == TARGET_SUCCEEDED);
    }
    CHECK(s_count_state(net.nodes[2].f, p->id, p->n, TARGET_SUCCEEDED) == p->n);
    CHECK(net.overlaps == 0);
    CHECK(net.codec_errors == 0 && SUM_STAT(&net, malformed) == 0);
    fprintf(stderr, "  lossy: %llu sent, %llu dropped, %llu pulls\n", (unsigned long long) net.sent,
            (unsigned long long) net.dropped, (unsigned long long) SUM_STAT(&net, pulls));
    s_free(&net);
}

/* Node i holds doc d (accepted) with these bytes. */
static bool s_has_doc(const fleet_net_t *net, int i, const uint8_t *id, const uint8_t *data,
                      size_t len)
{
    const fn_node_t *nd = &net->nodes[i];
    for (int d = 0; d < nd->n_docs; d++)
        if (memcmp(nd->docs[d].id, id, FLEET_ID_LEN) == 0)
            return nd->docs[d].accepted && nd->docs[d].len == len &&
                   memcmp(nd->docs[d].data, data, len) == 0;
    return false;
}

typedef struct {
    const uint8_t *id, *data;
    size_t len;
} s_doc_goal_t;

static bool s_doc_everywhere(fleet_net_t *net, void *arg)
{
    const s_doc_goal_t *g = arg;
    for (int i = 0; i < net->n; i++)
        if (net->nodes[i].f && !s_has_doc(net, i, g->id, g->data, g->len))
            return false;
    return true;
}

static void s_local_doc(fleet_net_t *net, int i, const uint8_t *id, uint8_t kind,
                        const uint8_t *data, size_t len)
{
    fn_node_t *nd = &net->nodes[i];
    fn_doc_t *d = &nd->docs[nd->n_docs++];
    memcpy(d->id, id, FLEET_ID_LEN);
    d->kind = kind;
    d->data = malloc(len);
    memcpy(d->data, data, len);
    d->len = len;
    d->accepted = true;
    CHECK(fleet_doc_add(nd->f, net->now, id, kind, data, len) == 0);
}

static void test_net_documents(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 3, 9);
    for (int i = 0; i < 3; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    fn_cut(&net, 0, 2, true); /* C learns everything through B */
    fn_run_until(&net, net.now + 500);

    size_t len = 3u << 20;
    uint8_t *doc = malloc(len);
    REQUIRE(doc);
    rng_t rng;
    rng_seed(&rng, 1234);
    for (size_t i = 0; i < len; i++)
        doc[i] = (uint8_t) rng_next(&rng);
    memset(acc.doc_ids[0], 0xd1, FLEET_ID_LEN);
    memset(acc.doc_ids[1], 0xd2, FLEET_ID_LEN);
    acc.n_doc_ids = 2;
    acc.reject_second = true;
    CHECK(fleet_doc_add(net.nodes[0].f, net.now, acc.doc_ids[0], 1, doc, 0) == GG_EINVAL);
    s_local_doc(&net, 0, acc.doc_ids[0], 1, doc, len);
    s_doc_goal_t g = {acc.doc_ids[0], doc, len};
    CHECK(fn_run_until_pred(&net, net.now + 30000, s_doc_everywhere, &g));
    CHECK(acc.docs[1][0] == 1 && acc.docs[2][0] == 1); /* one FOUT_DOC each */
    CHECK(fleet_stats(net.nodes[1].f)->docs_in == 1);
    CHECK(fleet_stats(net.nodes[0].f)->docs_out >= 6); /* 512 KiB chunks */

    /* a rejected document is not forwarded */
    uint8_t small[1000];
    memset(small, 0x5a, sizeof small);
    s_local_doc(&net, 0, acc.doc_ids[1], 2, small, sizeof small);
    fn_run_until(&net, net.now + 8000);
    CHECK(acc.docs[1][1] == 1);
    CHECK(acc.docs[2][1] == 0);
    CHECK(fleet_doc_state(net.nodes[1].f, acc.doc_ids[1]) == FLEET_DOC_REJECTED);
    CHECK(fleet_doc_state(net.nodes[2].f, acc.doc_ids[1]) == FLEET_DOC_UNKNOWN);
    CHECK(fleet_doc_state(net.nodes[2].f, acc.doc_ids[0]) == FLEET_DOC_ACCEPTED);
    CHECK(!s_has_doc(&net, 1, acc.doc_ids[1], small, sizeof small));
    CHECK(fleet_stats(net.nodes[2].f)->docs_failed == 0);

    /* a node restarted from its store serves the document again */
    fn_cut(&net, 0, 2, false);
    fn_crash(&net, 1);
    REQUIRE(fn_start(&net, 1, true) == 0);
    fn_view_all(&net);
    fn_run_until(&net, net.now + 3000);
    CHECK(acc.docs[1][0] == 1); /* restored, not fetched again */
    free(doc);
    s_free(&net);
}

static void test_net_feed_restart(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 2, 10);
    fleet_rollout_t ro = s_ro();
    int k = fn_plan(&net, 50, &ro);
    const fn_plan_t *p = &net.plans[k];
    for (int i = 0; i < 2; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    CHECK(s_run_done(&net, k, 60000));
    fn_run_until(&net, net.now + 3000); /* node 1's cursor into node 0's feed is far */
    /* node 0 persisted a change it never sent, then restarted */
    fn_crash(&net, 0);
    progress_rec_t r = net.nodes[0].store[k][7];
    r.generation++;
    r.state = TARGET_SKIPPED;
    net.nodes[0].store[k][7] = r;
    REQUIRE(fn_start(&net, 0, true) == 0);
    fn_view_all(&net);
    CHECK(fleet_record(net.nodes[1].f, p->id, 7)->generation == 0);
    s_conv_arg_t ca = {k};
    CHECK(fn_run_until_pred(&net, net.now + 10000, s_converged_pred, &ca));
    const progress_rec_t *got = fleet_record(net.nodes[1].f, p->id, 7);
    CHECK(got && got->generation == 1 && got->state == TARGET_SKIPPED);
    s_free(&net);
}

static void test_net_max_parallel(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 3, 11);
    fleet_rollout_t ro = s_ro();
    ro.max_parallel = 5;
    int k = fn_plan(&net, 60, &ro);
    fn_plan_t *p = &net.plans[k];
    for (int i = 0; i < 3; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    CHECK(s_run_done(&net, k, 120000));
    fprintf(stderr, "  max_parallel 5: peak %u running\n", p->running_max);
    CHECK(p->running_max <= 5 && p->running_max >= 3);
    CHECK(net.overlaps == 0);
    s_free(&net);

    /* all five running targets on a node that dies: taken over, not stuck */
    s_net(&net, &acc, 3, 21);
    net.run_min = 3000;
    net.run_max = 4000;
    net.nodes[2].slots = 5;
    ro.max_parallel = 5;
    k = fn_plan(&net, 30, &ro);
    p = &net.plans[k];
    for (int i = 0; i < 3; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    /* node 2 alone in the fleet at first: it takes the whole budget */
    net.nodes[2].view[2] = true;
    fn_push_view(&net, 2);
    fn_see(&net, 0, 2, true);
    fn_see(&net, 1, 2, true);
    fn_see(&net, 0, 1, true);
    fn_see(&net, 1, 0, true);
    for (int i = 0; i < 2; i++)
        fleet_set_capacity(net.nodes[i].f, net.now, 0);
    net.nodes[0].slots = net.nodes[1].slots = 0;
    fn_run_until(&net, net.now + 2500);
    CHECK(s_jobs(&net, 2) == 5);
    fn_crash(&net, 2);
    net.nodes[0].slots = net.nodes[1].slots = 8;
    fn_set_capacity(&net, 0);
    fn_set_capacity(&net, 1);
    fn_view_all(&net);
    CHECK(s_run_done(&net, k, 120000));
    CHECK(SUM_STAT(&net, takeovers) == 5);
    CHECK(p->running_max <= 5);
    s_free(&net);
}

static void test_net_canary(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 3, 12);
    fleet_rollout_t ro = s_ro();
    ro.canary = 3;
    acc.canary = 3;
    int k = fn_plan(&net, 30, &ro);
    for (int i = 0; i < 3; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    CHECK(s_run_done(&net, k, 60000));
    CHECK(acc.canary_violations == 0);
    s_free(&net);

    /* a failing canary pauses the plan */
    s_net(&net, &acc, 3, 13);
    acc.fail_index = 1;
    k = fn_plan(&net, 30, &ro);
    const fn_plan_t *p = &net.plans[k];
    for (int i = 0; i < 3; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    fn_run_until(&net, net.now + 10000);
    uint32_t ran = 0;
    for (uint32_t i = 3; i < p->n; i++)
        ran += p->runs[i];
    CHECK(ran == 0);
    CHECK(p->runs[1] == 1);
    for (int i = 0; i < 3; i++) {
        fleet_plan_stats_t st;
        CHECK(fleet_plan_stats(net.nodes[i].f, p->id, &st) == 0);
        CHECK(st.auto_paused && !st.completed && st.counts[TARGET_FAILED] == 1);
    }
    CHECK(acc.plan_states >= 3);
    s_free(&net);
}

static void test_net_failure_ratio(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 3, 14);
    acc.fail_mod = 3; /* a third fail */
    fleet_rollout_t ro = s_ro();
    ro.max_failure_ratio = 0.2;
    ro.max_parallel = 3;
    int k = fn_plan(&net, 200, &ro);
    const fn_plan_t *p = &net.plans[k];
    for (int i = 0; i < 3; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    fn_run_until(&net, net.now + 20000);
    uint32_t ran = 0;
    for (uint32_t i = 0; i < p->n; i++)
        ran += p->runs[i] > 0;
    fprintf(stderr, "  failure ratio: %u of 200 ran before the pause\n", ran);
    CHECK(ran >= 10 && ran < 60);
    CHECK(s_converged(&net, k));
    fleet_plan_stats_t st;
    CHECK(fleet_plan_stats(net.nodes[0].f, p->id, &st) == 0);
    CHECK(st.auto_paused && !st.completed);
    CHECK(st.counts[TARGET_RUNNING] == 0);
    s_free(&net);
}

static void test_net_cancel(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 3, 15);
    net.run_min = 1000;
    net.run_max = 2000;
    fleet_rollout_t ro = s_ro();
    int k = fn_plan(&net, 100, &ro);
    const fn_plan_t *p = &net.plans[k];
    for (int i = 0; i < 3; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    fn_run_until(&net, net.now + 1800);
    int running = s_jobs(&net, 0) + s_jobs(&net, 1) + s_jobs(&net, 2);
    REQUIRE(running > 0);
    acc.mark = true;
    for (int i = 0; i < 3; i++)
        CHECK(fleet_set_plan_control(net.nodes[i].f, net.now, p->id, FLEET_PLAN_CANCELLED) == 0);
    fn_drain(&net, 0);
    fn_drain(&net, 1);
    fn_drain(&net, 2);
    CHECK(acc.aborts[FLEET_ABORT_CANCELLED] == (uint64_t) running);
    CHECK(s_jobs(&net, 0) + s_jobs(&net, 1) + s_jobs(&net, 2) == 0);
    s_conv_arg_t ca = {k};
    CHECK(fn_run_until_pred(&net, net.now + 20000, s_converged_pred, &ca));
    CHECK(acc.runs_after_mark == 0);
    fleet_plan_stats_t st;
    CHECK(fleet_plan_stats(net.nodes[1].f, p->id, &st) == 0);
    CHECK(st.counts[TARGET_CANCELLED] == p->n - st.counts[TARGET_SUCCEEDED]);
    CHECK(st.counts[TARGET_PENDING] == 0 && st.counts[TARGET_RUNNING] == 0);
    CHECK(!st.completed);
    CHECK(s_count_state(net.nodes[1].f, p->id, p->n, TARGET_CANCELLED) == (uint32_t) running);
    CHECK(fleet_set_plan_control(net.nodes[0].f, net.now, p->id, 77) == GG_EINVAL);
    s_free(&net);
}

static void test_net_gated(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 3, 16);
    fleet_rollout_t ro = s_ro();
    int k = fn_plan(&net, 20, &ro);
    fn_plan_t *p = &net.plans[k];
    for (uint32_t i = 0; i < p->n; i += 2)
        p->gated[i] = true;
    for (int i = 0; i < 3; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    s_goal_t half = {k, 10};
    CHECK(fn_run_until_pred(&net, net.now + 30000, s_done, &half));
    fn_run_until(&net, net.now + 3000);
    fleet_plan_stats_t st;
    CHECK(fleet_plan_stats(net.nodes[0].f, p->id, &st) == 0);
    CHECK(st.counts[TARGET_AWAITING_APPROVAL] == 10 && st.counts[TARGET_SUCCEEDED] == 10);
    CHECK(!st.completed);
    for (uint32_t i = 0; i < p->n; i += 2)
        CHECK(p->runs[i] == 0);
    for (int n = 0; n < 3; n++)
        for (uint32_t i = 0; i < p->n; i += 2)
            CHECK(fleet_set_approved(net.nodes[n].f, net.now, p->id, i) == 0);
    CHECK(fleet_set_approved(net.nodes[0].f, net.now, p->id, 999) == GG_ENOTFOUND);
    CHECK(s_run_done(&net, k, 30000));
    CHECK(fleet_plan_stats(net.nodes[2].f, p->id, &st) == 0);
    CHECK(st.counts[TARGET_SUCCEEDED] == 20 && st.completed);
    s_free(&net);
}

static void test_net_leave_hands_back(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 3, 17);
    net.run_min = 2000;
    net.run_max = 3000;
    fleet_rollout_t ro = s_ro();
    int k = fn_plan(&net, 60, &ro);
    const fn_plan_t *p = &net.plans[k];
    for (int i = 0; i < 3; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    fn_run_until(&net, net.now + 1000);
    int held = s_jobs(&net, 2);
    REQUIRE(held > 0);
    uint32_t victim = net.nodes[2].jobs[0].index;
    uint32_t epoch = net.nodes[2].jobs[0].claim.epoch;
    fleet_leave(net.nodes[2].f, net.now);
    CHECK(!fleet_leave_done(net.nodes[2].f));
    uint64_t sent = net.sent;
    fn_drain(&net, 2);
    CHECK(net.sent >= sent + 2); /* pushed to both peers at once */
    CHECK(fleet_leave_done(net.nodes[2].f));
    CHECK(acc.aborts[FLEET_ABORT_LEAVING] == (uint64_t) held);
    CHECK(fleet_stats(net.nodes[2].f)->handbacks == (uint64_t) held);
    fn_run_until(&net, net.now + 6); /* latency, not a pull */
    const progress_rec_t *r = fleet_record(net.nodes[0].f, p->id, victim);
    CHECK(r && r->epoch == epoch + 1 && r->state == TARGET_PENDING);
    r = fleet_record(net.nodes[1].f, p->id, victim);
    CHECK(r && r->epoch == epoch + 1 && r->state == TARGET_PENDING);
    /* the others see it leave and take the targets */
    fn_crash(&net, 2);
    fn_view_all(&net);
    CHECK(s_run_done(&net, k, 60000));
    r = fleet_record(net.nodes[0].f, p->id, victim);
    CHECK(r && r->epoch == epoch + 2 && r->state == TARGET_SUCCEEDED);
    CHECK(SUM_STAT(&net, takeovers) == 0); /* handed back, not taken */
    CHECK(net.overlaps == 0);
    s_free(&net);
}

static void test_net_rate_limit(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 3, 18);
    fleet_rollout_t ro = s_ro();
    ro.rate_per_minute = 60; /* 20 per node per minute */
    int k = fn_plan(&net, 100, &ro);
    const fn_plan_t *p = &net.plans[k];
    for (int i = 0; i < 3; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    uint64_t t0 = net.now;
    fn_run_until(&net, t0 + 30000);
    uint32_t runs = 0;
    for (uint32_t i = 0; i < p->n; i++)
        runs += p->runs[i];
    fprintf(stderr, "  rate 60/min: %u claims in 30 s\n", runs);
    CHECK(runs >= 24 && runs <= 36); /* 30 plus each node's small burst */
    fn_run_until(&net, t0 + 60000);
    runs = 0;
    for (uint32_t i = 0; i < p->n; i++)
        runs += p->runs[i];
    CHECK(runs >= 54 && runs <= 66);
    s_free(&net);
}

static void test_net_retry_wait_takeover(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 2, 19);
    acc.retry_first = true;
    fleet_rollout_t ro = s_ro();
    ro.max_attempts = 3;
    int a = fn_plan(&net, 20, &ro);
    ro.max_attempts = 1;
    int b = fn_plan(&net, 20, &ro);
    for (int i = 0; i < 2; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    fn_run_until(&net, net.now + 3000);
    /* every target waits to retry under its holder's lease */
    for (int k = 0; k < 2; k++)
        CHECK(s_count_state(net.nodes[0].f, net.plans[k].id, 20, TARGET_RETRY_WAIT) == 20);
    fn_run_until(&net, net.now + 5000);
    CHECK(SUM_STAT(&net, takeovers) == 0); /* heartbeats keep the leases */
    uint32_t held_b = 0;
    for (uint32_t i = 0; i < 20; i++)
        held_b += s_node_of_id(&net, fleet_record(net.nodes[0].f, net.plans[b].id, i)->holder) == 1;
    fn_crash(&net, 1);
    fn_view_all(&net);
    fn_run_until(&net, net.now + 3000);
    uint32_t retried = 0, failed = 0;
    for (uint32_t i = 0; i < 20; i++) {
        const progress_rec_t *r = fleet_record(net.nodes[0].f, net.plans[a].id, i);
        if (r->epoch == 2) {
            CHECK(r->attempt == 2 && r->state == TARGET_SUCCEEDED);
            retried++;
        }
        r = fleet_record(net.nodes[0].f, net.plans[b].id, i);
        if (r->epoch == 2) {
            CHECK(r->attempt == 1 && r->state == TARGET_FAILED);
            CHECK(s_node_of_id(&net, r->holder) == 0);
            failed++;
        }
    }
    CHECK(retried > 0);
    CHECK(failed == held_b && failed > 0);
    CHECK(fleet_stats(net.nodes[0].f)->takeovers == retried + failed);
    s_free(&net);
}

static bool s_held_state(uint8_t st);

static void test_net_draining(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 3, 20);
    fleet_rollout_t ro = s_ro();
    ro.max_parallel = 4;
    int k = fn_plan(&net, 60, &ro);
    for (int i = 0; i < 3; i++) {
        REQUIRE(fn_start(&net, i, false) == 0);
        for (int j = 0; j < 3; j++)
            net.nodes[i].draining[j] = j == 2;
    }
    fn_view_all(&net);
    CHECK(fleet_owner_of(net.nodes[0].f, net.plans[k].keys[0]) != 2);
    CHECK(s_run_done(&net, k, 60000));
    CHECK(acc.runs_by_node[2] == 0);
    CHECK(acc.runs_by_node[0] > 0 && acc.runs_by_node[1] > 0);
    CHECK(net.plans[k].running_max <= 4);
    s_free(&net);

    /* draining later: running executions finish, waiting ones go back */
    s_net(&net, &acc, 3, 24);
    acc.retry_first = true;
    net.run_min = 1500;
    net.run_max = 1500;
    ro = s_ro();
    k = fn_plan(&net, 30, &ro);
    const fn_plan_t *p = &net.plans[k];
    for (int i = 0; i < 3; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    fn_run_until(&net, net.now + 1700); /* the first wave waits to retry */
    uint32_t waiting2 = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        const progress_rec_t *r = fleet_record(net.nodes[2].f, p->id, i);
        waiting2 += r->state == TARGET_RETRY_WAIT && s_node_of_id(&net, r->holder) == 2;
    }
    int running2 = s_jobs(&net, 2);
    REQUIRE(waiting2 > 0 && running2 > 0);
    for (int i = 0; i < 3; i++) {
        net.nodes[i].draining[2] = true;
        fn_push_view(&net, i);
    }
    fn_drain(&net, 2);
    CHECK(acc.aborts[FLEET_ABORT_LEAVING] == waiting2);
    CHECK(s_jobs(&net, 2) == running2); /* executions go on */
    fn_run_until(&net, net.now + 6000);
    uint32_t held2 = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        const progress_rec_t *r = fleet_record(net.nodes[0].f, p->id, i);
        held2 += s_held_state(r->state) && s_node_of_id(&net, r->holder) == 2;
    }
    CHECK(held2 == 0); /* even the later retry_waits went back */
    CHECK(fleet_stats(net.nodes[2].f)->handbacks == waiting2 + (uint32_t) running2);
    CHECK(net.overlaps == 0);
    s_free(&net);
}

static bool s_held_state(uint8_t st)
{
    return st == TARGET_RUNNING || st == TARGET_RETRY_WAIT;
}

/* Records of a plan not known yet wait and apply when it arrives. */
static void test_unknown_plan_records(void)
{
    fleet_config_t c = s_cfg();
    uint8_t id[FLEET_ID_LEN], peer[FLEET_ID_LEN], plan[FLEET_ID_LEN];
    fn_node_id(0, id);
    fn_node_id(1, peer);
    memset(plan, 0x11, sizeof plan); /* the plan s_put_item names */
    fleet_t *f = fleet_new(&c, id, "tcp://a:1", 3, 0);
    REQUIRE(f);
    wire_writer_t *w = s_progress(peer, 0); /* plan 0x11.., index 3, running */
    CHECK(s_feed(f, w) == 0);
    wire_writer_destroy(&w);
    CHECK(fleet_record(f, plan, 3) == NULL);
    CHECK(fleet_stats(f)->records_in == 1);
    uint64_t keys[5] = {1, 2, 3, 4, 5};
    fleet_rollout_t ro = s_ro();
    fleet_out_t o;
    while (fleet_poll(f, &o))
        fleet_out_release(&o);
    CHECK(fleet_add_plan(f, 20, plan, 5, keys, NULL, &ro) == 0);
    const progress_rec_t *r = fleet_record(f, plan, 3);
    CHECK(r && r->state == TARGET_RUNNING);
    int records = 0;
    while (fleet_poll(f, &o)) {
        if (o.type == FOUT_RECORD && o.index == 3)
            records++;
        fleet_out_release(&o);
    }
    CHECK(records == 1);
    /* restored records of an unknown plan apply silently */
    uint8_t plan2[FLEET_ID_LEN];
    memset(plan2, 0x22, sizeof plan2);
    progress_rec_t rr;
    memset(&rr, 0, sizeof rr);
    rr.epoch = 4;
    rr.state = TARGET_SUCCEEDED;
    CHECK(fleet_restore_record(f, plan2, 1, &rr) == 0);
    CHECK(fleet_restore_record(f, plan2, 9, &rr) == 0); /* beyond the plan: ignored */
    CHECK(fleet_add_plan(f, 30, plan2, 2, keys, NULL, &ro) == 0);
    CHECK(fleet_record(f, plan2, 1)->epoch == 4);
    /* and records of a known plan too */
    rr.epoch = 6;
    CHECK(fleet_restore_record(f, plan2, 0, &rr) == 0);
    CHECK(fleet_record(f, plan2, 0)->epoch == 6);
    CHECK(fleet_restore_record(f, plan2, 2, &rr) == GG_ENOTFOUND);
    while (fleet_poll(f, &o)) {
        CHECK(o.type != FOUT_RECORD);
        fleet_out_release(&o);
    }
    fleet_destroy(&f);
}

static void test_net_doc_source_retry(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 3, 22);
    for (int i = 0; i < 3; i++)
        REQUIRE(fn_start(&net, i, false) == 0);
    fn_view_all(&net);
    fn_run_until(&net, net.now + 200);
    size_t len = (1u << 20) + 100;
    uint8_t *doc = malloc(len);
    REQUIRE(doc);
    for (size_t i = 0; i < len; i++)
        doc[i] = (uint8_t) (i * 7);
    memset(acc.doc_ids[0], 0xd3, FLEET_ID_LEN);
    acc.n_doc_ids = 1;
    /* nodes 0 and 1 have it; node 0 lost its copy; node 2 hears of it from
     * node 0 first (node 1 cannot reach it yet) */
    fn_cut(&net, 1, 2, true);
    s_local_doc(&net, 1, acc.doc_ids[0], 1, doc, len);
    s_local_doc(&net, 0, acc.doc_ids[0], 1, doc, len);
    net.nodes[0].docs[0].accepted = false; /* its reader finds nothing */
    fn_run_until(&net, net.now + 100);
    fn_cut(&net, 1, 2, false);
    CHECK(fleet_doc_state(net.nodes[2].f, acc.doc_ids[0]) == FLEET_DOC_FETCHING);
    uint64_t t0 = net.now;
    bool ok = false;
    while (net.now < t0 + 20000 && !(ok = s_has_doc(&net, 2, acc.doc_ids[0], doc, len)))
        fn_run_until(&net, net.now + 10);
    CHECK(ok);
    CHECK(net.now - t0 >= net.cfg.lease_ttl_ms / 2); /* after a timeout */
    CHECK(acc.docs[2][0] == 1);
    CHECK(fleet_stats(net.nodes[0].f)->docs_out == 0);
    free(doc);
    s_free(&net);
}

/* A plan accepted after the node synced: it claims nothing from it before a
 * pull has brought the plan's records. */
static void test_net_late_plan_waits_for_pull(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 3, 23);
    net.run_min = 5000;
    net.run_max = 6000;
    fleet_rollout_t ro = s_ro();
    int k = fn_plan(&net, 60, &ro);
    const fn_plan_t *p = &net.plans[k];
    REQUIRE(fn_start(&net, 0, false) == 0);
    REQUIRE(fn_start(&net, 1, false) == 0);
    REQUIRE(fn_start_ex(&net, 2, false, false) == 0);
    /* 0 and 1 do not see 2 yet (so they push nothing to it); 2 sees all */
    fn_see(&net, 0, 1, true);
    fn_see(&net, 1, 0, true);
    for (int j = 0; j < 3; j++)
        net.nodes[2].view[j] = true;
    fn_push_view(&net, 2);
    fn_run_until(&net, net.now + 300);
    CHECK(fleet_synced(net.nodes[2].f));
    /* node 2 hears nothing while 0 and 1 start 16 targets */
    net.cut[0][2] = net.cut[1][2] = true;
    fn_run_until(&net, net.now + 2000);
    CHECK(s_jobs(&net, 0) == 8 && s_jobs(&net, 1) == 8);
    net.cut[0][2] = net.cut[1][2] = false;
    REQUIRE(fn_add_plan(&net, 2, k) == 0);
    fn_run_until(&net, net.now + 500);
    CHECK(acc.runs_by_node[2] > 0);
    CHECK(net.overlaps == 0);
    for (uint32_t i = 0; i < p->n; i++)
        CHECK(p->runs[i] <= 1);
    s_free(&net);
}

/* Starts 8 nodes (seed; push fanout 2, `eager` of them sent records, no
 * anti-entropy in sight) with a plan of 10 gated targets (nothing runs), lets
 * them settle, changes target 3 on node 0 (generation 1, skipped) and runs
 * 300 ms: returns how many nodes have the change; *pulls and *received are
 * the pulls and records received meanwhile. */
static int s_push_one_change(fleet_net_t *net, s_acc_t *acc, uint64_t seed, uint32_t eager,
                             uint64_t *pulls, uint64_t *received)
{
    const int n = 8;
    s_net(net, acc, n, seed);
    net->cfg.push_fanout = 2;
    net->cfg.push_eager = eager;
    net->cfg.max_hops = 4;
    net->cfg.anti_entropy_interval_ms = 600000;
    fleet_rollout_t ro = s_ro();
    int k = fn_plan(net, 10, &ro);
    fn_plan_t *p = &net->plans[k];
    for (uint32_t i = 0; i < p->n; i++)
        p->gated[i] = true; /* nothing runs: only the operator's change moves */
    for (int i = 0; i < n; i++)
        if (fn_start(net, i, false) != 0)
            return -1;
    fn_view_all(net);
    fn_run_until(net, net->now + 500);
    uint64_t pulls0 = SUM_STAT(net, pulls), in0 = SUM_STAT(net, records_in);
    progress_rec_t r = *fleet_record(net->nodes[0].f, p->id, 3);
    r.generation = 1;
    r.state = TARGET_SKIPPED;
    if (fleet_record_local(net->nodes[0].f, net->now, p->id, 3, &r) != 0)
        return -1;
    fn_run_until(net, net->now + 300);
    int got = 0;
    for (int i = 0; i < n; i++)
        got += fleet_record(net->nodes[i].f, p->id, 3)->generation == 1;
    *pulls = SUM_STAT(net, pulls) - pulls0;
    *received = SUM_STAT(net, records_in) - in0;
    return got;
}

/* With a small fanout and no anti-entropy in sight, a change reaches every
 * node by hop-limited forwarding. */
static void test_net_push_epidemic(void)
{
    fleet_net_t net;
    s_acc_t acc;
    uint64_t pulls, received;
    CHECK(s_push_one_change(&net, &acc, 25, 3, &pulls, &received) == 8);
    CHECK(pulls == 0); /* pushes alone */
    s_free(&net);
}

/* Lazy push: with one peer per round getting the record and the others an
 * announcement, a change still reaches every node by pushes alone (the
 * announced-to ask for it), and each node receives the record a few times
 * instead of once per forwarding peer. */
static void test_net_lazy_push(void)
{
    fleet_net_t net;
    s_acc_t acc;
    uint64_t pulls, received;
    CHECK(s_push_one_change(&net, &acc, 26, 1, &pulls, &received) == 8);
    CHECK(pulls == 0); /* pushes alone */
    CHECK(SUM_STAT(&net, wants_out) > 0);
    CHECK(SUM_STAT(&net, haves_in) > SUM_STAT(&net, wants_out));
    /* pushed to every peer, each of 7 nodes would receive it from each of
     * the 7 others that forward it (up to 49 times) */
    if (received > 7 * 3)
        fprintf(stderr, "  records received %llu for 7 nodes\n", (unsigned long long) received);
    CHECK(received <= 7 * 3);
    s_free(&net);
}

/* Pushes reach a large fleet: the fanout grows with ln N (a change forwarded
 * once to F peers misses a node with probability ~e^-F), and with 3 members
 * every peer gets it. Counts the distinct peers one change is pushed to
 * (PROGRESS) and, with lazy push (eager > 0), announced to (HAVE). */
static uint32_t s_push_peers(uint32_t members, uint32_t eager, uint32_t *announced)
{
    fleet_config_t c = s_cfg();
    c.push_fanout = 3;
    c.push_eager = eager;
    c.max_hops = 3;
    *announced = 0;
    uint8_t id[FLEET_ID_LEN], plan[FLEET_ID_LEN];
    fn_node_id(0, id);
    memset(plan, 0x51, sizeof plan);
    fleet_t *f = fleet_new(&c, id, "tcp://m0:1", 3, 0);
    fleet_member_t *m = calloc(members, sizeof *m);
    char(*seen)[FLEET_ADDRESS_MAX + 1] = calloc(members, sizeof *seen);
    uint32_t distinct = 0;
    uint64_t keys[2] = {11, 12};
    fleet_rollout_t ro = s_ro();
    bool gated[2] = {true, true};
    if (!f || !m || !seen)
        goto out;
    for (uint32_t i = 0; i < members; i++) {
        fn_node_id((int) i, m[i].id);
        snprintf(m[i].address, sizeof m[i].address, "tcp://m%u:1", i);
        m[i].live = true;
    }
    memcpy(m[0].id, id, FLEET_ID_LEN);
    fleet_set_members(f, 0, m, members);
    if (fleet_add_plan(f, 0, plan, 2, keys, gated, &ro) != 0)
        goto out;
    fleet_out_t o;
    while (fleet_poll(f, &o))
        fleet_out_release(&o);
    progress_rec_t r = *fleet_record(f, plan, 0);
    r.generation = 1;
    r.state = TARGET_SKIPPED;
    if (fleet_record_local(f, 1, plan, 0, &r) != 0)
        goto out;
    fleet_tick(f, 1 + c.push_interval_ms);
    while (fleet_poll(f, &o)) {
        if (o.type == FOUT_SEND && o.wire_type == WIRE_PROGRESS) {
            bool dup = false;
            for (uint32_t k = 0; k < distinct; k++)
                dup = dup || strcmp(seen[k], o.address) == 0;
            if (!dup && distinct < members)
                snprintf(seen[distinct++], sizeof seen[0], "%s", o.address);
        }
        if (o.type == FOUT_SEND && o.wire_type == WIRE_HAVE)
            (*announced)++; /* one HAVE per peer: the change fits one message */
        fleet_out_release(&o);
    }
out:
    fleet_destroy(&f);
    free(m);
    free(seen);
    return distinct;
}

static void test_push_fanout_scales(void)
{
    uint32_t ann;
    CHECK(s_push_peers(3, 0, &ann) == 2); /* every peer */
    CHECK(ann == 0);
    CHECK(s_push_peers(100, 0, &ann) == 10);  /* ceil(ln 100) + 5 */
    CHECK(s_push_peers(1000, 0, &ann) == 12); /* ceil(ln 1000) + 5 */
    CHECK(ann == 0);
    /* lazy push: 3 peers get the record, the rest of 1.5 x the fanout an
     * announcement; a fleet smaller than that gets records only */
    CHECK(s_push_peers(3, 3, &ann) == 2);
    CHECK(ann == 0);
    CHECK(s_push_peers(100, 3, &ann) == 3);
    CHECK(ann == 12);
    CHECK(s_push_peers(1000, 3, &ann) == 3);
    CHECK(ann == 15);
}

/* A feed longer than one message is pulled in pages; the puller is synced
 * only once it has them all. */
static void test_net_paged_pull(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 2, 26);
    fleet_rollout_t ro = s_ro();
    const uint32_t n = 5000;
    int k = fn_plan(&net, n, &ro);
    fn_plan_t *p = &net.plans[k];
    for (uint32_t i = 0; i < n; i++)
        p->gated[i] = true;
    REQUIRE(fn_start(&net, 0, false) == 0);
    fn_push_view(&net, 0);
    for (uint32_t i = 0; i < n; i++) {
        progress_rec_t r = *fleet_record(net.nodes[0].f, p->id, i);
        r.generation = 1;
        r.state = TARGET_SKIPPED;
        snprintf(r.error, sizeof r.error, "settled by hand (%u)", i);
        CHECK(fleet_record_local(net.nodes[0].f, net.now, p->id, i, &r) == 0);
    }
    REQUIRE(fn_start(&net, 1, false) == 0);
    fn_view_all(&net);
    CHECK(fn_run_until_pred(&net, net.now + 5000, s_synced_pred, &net.nodes[1]));
    CHECK(s_count_state(net.nodes[1].f, p->id, n, TARGET_SKIPPED) == n);
    CHECK(fleet_stats(net.nodes[1].f)->pulls >= 3);
    s_free(&net);
}

/* Steady state: a pull between two nodes that hold the same records (a
 * restarted node pulls the whole feed from 0) carries nothing; once they
 * differ, it carries the feed again. */
static void test_net_pull_same_state(void)
{
    fleet_net_t net;
    s_acc_t acc;
    s_net(&net, &acc, 2, 27);
    fleet_rollout_t ro = s_ro();
    const uint32_t n = 300;
    int k = fn_plan(&net, n, &ro);
    fn_plan_t *p = &net.plans[k];
    for (uint32_t i = 0; i < n; i++)
        p->gated[i] = true; /* nothing is claimed: the records are set by hand */
    REQUIRE(fn_start(&net, 0, false) == 0);
    fn_push_view(&net, 0);
    for (uint32_t i = 0; i < n; i++) {
        progress_rec_t r = *fleet_record(net.nodes[0].f, p->id, i);
        r.generation = 1;
        r.state = TARGET_SKIPPED;
        CHECK(fleet_record_local(net.nodes[0].f, net.now, p->id, i, &r) == 0);
    }
    REQUIRE(fn_start(&net, 1, false) == 0);
    fn_view_all(&net);
    CHECK(fn_run_until_pred(&net, net.now + 5000, s_synced_pred, &net.nodes[1]));
    fn_run_until(&net, net.now + 500);
    CHECK(s_count_state(net.nodes[1].f, p->id, n, TARGET_SKIPPED) == n);

    /* restarted from its store: the same records, its pulls start from 0 */
    fn_crash(&net, 1);
    REQUIRE(fn_start(&net, 1, true) == 0);
    fn_push_view(&net, 1);
    uint64_t out0 = fleet_stats(net.nodes[0].f)->records_out;
    CHECK(fn_run_until_pred(&net, net.now + 5000, s_synced_pred, &net.nodes[1]));
    fn_run_until(&net, net.now + 3 * net.cfg.anti_entropy_interval_ms);
    CHECK(fleet_stats(net.nodes[1].f)->pulls >= 3);
    CHECK(fleet_stats(net.nodes[0].f)->records_out == out0); /* nothing to carry */
    CHECK(s_count_state(net.nodes[1].f, p->id, n, TARGET_SKIPPED) == n);

    /* one record changes while it is down: the next pull carries the feed */
    fn_crash(&net, 1);
    progress_rec_t r = *fleet_record(net.nodes[0].f, p->id, 7);
    r.generation = 2;
    r.state = TARGET_NEEDS_REVIEW;
    CHECK(fleet_record_local(net.nodes[0].f, net.now, p->id, 7, &r) == 0);
    fn_run_until(&net, net.now + 100);
    REQUIRE(fn_start(&net, 1, true) == 0);
    fn_push_view(&net, 1);
    CHECK(fn_run_until_pred(&net, net.now + 5000, s_synced_pred, &net.nodes[1]));
    CHECK(fleet_record(net.nodes[1].f, p->id, 7)->generation == 2);
    CHECK(fleet_stats(net.nodes[0].f)->records_out >= out0 + n);
    s_free(&net);
}

static int s_feed_from(fleet_t *f, wire_writer_t *w, uint64_t now)
{
    const uint8_t *data;
    size_t len;
    int rc = wire_writer_finish(w, &data, &len);
    if (rc)
        return 1000 + rc;
    wire_msg_t m;
    rc = wire_decode(data, len, &m);
    if (rc)
        return 2000 + rc;
    rc = fleet_handle(f, now, &m);
    wire_msg_release(&m);
    return rc;
}

/* Counts the outputs of f: SEND of wire_type to address (NULL: any). */
static int s_count_sends(fleet_t *f, uint32_t wire_type, const char *address)
{
    fleet_out_t o;
    int sends = 0;
    while (fleet_poll(f, &o)) {
        if (o.type == FOUT_SEND && o.wire_type == wire_type &&
            (!address || strcmp(o.address, address) == 0))
            sends++;
        fleet_out_release(&o);
    }
    return sends;
}

/* A PROGRESS message names the documents of its plans: a node that lacks
 * one fetches it from the sender at once; a source this node cannot ask
 * yet (not in its view) gives way to one it can. */
static void test_progress_names_documents(void)
{
    fleet_config_t c = s_cfg();
    uint8_t id[FLEET_ID_LEN], peer[FLEET_ID_LEN], stranger[FLEET_ID_LEN], plan[FLEET_ID_LEN];
    fn_node_id(0, id);
    fn_node_id(1, peer);
    fn_node_id(2, stranger);
    memset(plan, 0x11, sizeof plan); /* the plan s_put_item names, and its document */

    /* the sender side: a plan whose document is accepted */
    fleet_t *s = fleet_new(&c, peer, "tcp://b:1", 5, 0);
    REQUIRE(s);
    fleet_member_t sm[2];
    memset(sm, 0, sizeof sm);
    memcpy(sm[0].id, peer, FLEET_ID_LEN);
    snprintf(sm[0].address, sizeof sm[0].address, "tcp://b:1");
    memcpy(sm[1].id, id, FLEET_ID_LEN);
    snprintf(sm[1].address, sizeof sm[1].address, "tcp://a:1");
    sm[0].live = sm[1].live = true;
    fleet_set_members(s, 0, sm, 2);
    uint8_t body[3000];
    memset(body, 0x5a, sizeof body);
    uint64_t keys[5] = {1, 2, 3, 4, 5};
    bool gated[5] = {true, true, true, true, true};
    fleet_rollout_t ro = s_ro();
    CHECK(fleet_doc_add(s, 0, plan, 1, body, sizeof body) == 0);
    CHECK(fleet_add_plan(s, 0, plan, 5, keys, gated, &ro) == 0);
    s_count_sends(s, WIRE_PLAN, NULL);
    progress_rec_t r = *fleet_record(s, plan, 2);
    r.generation = 1;
    r.state = TARGET_SKIPPED;
    CHECK(fleet_record_local(s, 10, plan, 2, &r) == 0);
    fleet_tick(s, 1000);
    fleet_out_t o;
    int named = 0;
    while (fleet_poll(s, &o)) {
        wire_msg_t m;
        if (o.type == FOUT_SEND && o.wire_type == WIRE_PROGRESS &&
            wire_decode(o.data, o.len, &m) == 0) {
            const msgpack_object_array *docs;
            uint8_t got[FLEET_ID_LEN];
            if (wire_get_array(&m.body, "docs", &docs, 4) == 0 && docs->size == 1 &&
                wire_get_bin_exact(&docs->ptr[0], "id", got, FLEET_ID_LEN) == 0 &&
                memcmp(got, plan, FLEET_ID_LEN) == 0)
                named++;
            wire_msg_release(&m);
        }
        fleet_out_release(&o);
    }
    CHECK(named == 1);
    fleet_destroy(&s);

    /* the receiving side */
    fleet_t *f = fleet_new(&c, id, "tcp://a:1", 3, 0);
    REQUIRE(f);
    fleet_member_t m[2];
    memset(m, 0, sizeof m);
    memcpy(m[0].id, id, FLEET_ID_LEN);
    snprintf(m[0].address, sizeof m[0].address, "tcp://a:1");
    memcpy(m[1].id, peer, FLEET_ID_LEN);
    snprintf(m[1].address, sizeof m[1].address, "tcp://b:1");
    m[0].live = m[1].live = true;
    fleet_set_members(f, 0, m, 2);
    s_count_sends(f, WIRE_PLAN, NULL);
    /* heard of from a node not in the view: nobody to ask yet */
    wire_writer_t *w = wire_writer_new(WIRE_PLAN, stranger, 4);
    wire_put_u64(w, "k", 0);
    wire_put_bin(w, "id", plan, FLEET_ID_LEN);
    wire_put_u64(w, "kind", 1);
    wire_put_u64(w, "size", sizeof body);
    CHECK(s_feed_from(f, w, 20) == 0);
    wire_writer_destroy(&w);
    CHECK(fleet_doc_state(f, plan) == FLEET_DOC_FETCHING);
    CHECK(s_count_sends(f, WIRE_PLAN, NULL) == 0);
    /* a malformed document entry drops the whole message */
    w = wire_writer_new(WIRE_PROGRESS, peer, 3);
    wire_put_u64(w, "hop", 0);
    wire_put_key(w, "items");
    msgpack_pack_array(wire_writer_packer(w), 1);
    s_put_item(wire_writer_packer(w), 32, 3, TARGET_RUNNING);
    wire_put_key(w, "docs");
    msgpack_pack_array(wire_writer_packer(w), 1);
    msgpack_pack_map(wire_writer_packer(w), 3);
    msgpack_pack_str_with_body(wire_writer_packer(w), "id", 2);
    msgpack_pack_bin_with_body(wire_writer_packer(w), plan, FLEET_ID_LEN);
    msgpack_pack_str_with_body(wire_writer_packer(w), "kind", 4);
    msgpack_pack_uint8(wire_writer_packer(w), 1);
    msgpack_pack_str_with_body(wire_writer_packer(w), "size", 4);
    msgpack_pack_uint64(wire_writer_packer(w), 0);
    CHECK(s_feed_from(f, w, 30) == GG_EMALFORMED);
    wire_writer_destroy(&w);
    CHECK(fleet_stats(f)->records_in == 0);
    /* records from the peer, naming the document: asked of the peer at once */
    w = wire_writer_new(WIRE_PROGRESS, peer, 3);
    wire_put_u64(w, "hop", 0);
    wire_put_key(w, "items");
    msgpack_pack_array(wire_writer_packer(w), 1);
    s_put_item(wire_writer_packer(w), 32, 3, TARGET_RUNNING);
    wire_put_key(w, "docs");
    msgpack_pack_array(wire_writer_packer(w), 1);
    msgpack_pack_map(wire_writer_packer(w), 3);
    msgpack_pack_str_with_body(wire_writer_packer(w), "id", 2);
    msgpack_pack_bin_with_body(wire_writer_packer(w), plan, FLEET_ID_LEN);
    msgpack_pack_str_with_body(wire_writer_packer(w), "kind", 4);
    msgpack_pack_uint8(wire_writer_packer(w), 1);
    msgpack_pack_str_with_body(wire_writer_packer(w), "size", 4);
    msgpack_pack_uint64(wire_writer_packer(w), sizeof body);
    CHECK(s_feed_from(f, w, 40) == 0);
    wire_writer_destroy(&w);
    CHECK(fleet_stats(f)->records_in == 1);
    CHECK(s_count_sends(f, WIRE_PLAN, "tcp://b:1") == 1);
    CHECK(fleet_doc_state(f, plan) == FLEET_DOC_FETCHING);
    /* a PROGRESS of the previous version (no "docs") is accepted */
    w = s_progress(peer, 0);
    CHECK(s_feed_from(f, w, 50) == 0);
    wire_writer_destroy(&w);
    fleet_destroy(&f);
}

/* A PROGRESS at `hop` of items (index, own hop or -1) from peer. */
static int s_feed_hops(fleet_t *f, const uint8_t *peer, uint32_t hop, const uint32_t *index,
                       const int *h, uint32_t n, uint64_t now)
{
    wire_writer_t *w = wire_writer_new(WIRE_PROGRESS, peer, 2);
    wire_put_u64(w, "hop", hop);
    wire_put_key(w, "items");
    msgpack_pack_array(wire_writer_packer(w), n);
    for (uint32_t k = 0; k < n; k++)
        s_put_hop_item(wire_writer_packer(w), index[k], h[k]);
    int rc = s_feed_from(f, w, now);
    wire_writer_destroy(&w);
    return rc;
}

/* The index and own hop (-1: none) of each item of a PROGRESS; returns the
 * message's hop, or -1. */
static int s_read_hops(const fleet_out_t *o, uint32_t *index, int *h, uint32_t *n, uint32_t cap)
{
    wire_msg_t m;
    const msgpack_object_array *items;
    uint64_t hop, v;
    int rc = -1;
    *n = 0;
    if (wire_decode(o->data, o->len, &m) != 0)
        return -1;
    if (wire_get_u64(&m.body, "hop", &hop) == 0 &&
        wire_get_array(&m.body, "items", &items, cap) == 0) {
        rc = (int) hop;
        for (uint32_t k = 0; k < items->size; k++) {
            index[k] = wire_get_u64(&items->ptr[k], "i", &v) == 0 ? (uint32_t) v : UINT32_MAX;
            h[k] = wire_get_u64(&items->ptr[k], "h", &v) == 0 ? (int) v : -1;
        }
        *n = items->size;
    }
    wire_msg_release(&m);
    return rc;
}

/* Changes learnt at different hops leave in one push round as one message
 * per peer, each item (and each announced version) with its own hop; a
 * receiver forwards each item by its own hop, and a request names the hop
 * of each record it asks for. */
static void test_push_round_per_item_hops(void)
{
    fleet_config_t c = s_cfg();
    c.push_fanout = 3;
    c.push_eager = 1;
    c.max_hops = 5; /* above what 5 members scale it to */
    uint8_t id[FLEET_ID_LEN], plan[FLEET_ID_LEN];
    fleet_member_t m[5];
    memset(m, 0, sizeof m);
    for (int i = 0; i < 5; i++) {
        fn_node_id(i, m[i].id);
        snprintf(m[i].address, sizeof m[i].address, "tcp://n%d:1", i);
        m[i].live = true;
    }
    memcpy(id, m[0].id, FLEET_ID_LEN);
    memset(plan, 0x11, sizeof plan);
    fleet_t *f = fleet_new(&c, id, "tcp://n0:1", 3, 0);
    REQUIRE(f);
    fleet_set_members(f, 0, m, 5);
    uint64_t keys[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    bool gated[8] = {true, true, true, true, true, true, true, true};
    fleet_rollout_t ro = s_ro();
    REQUIRE(fleet_add_plan(f, 0, plan, 8, keys, gated, &ro) == 0);
    s_count_sends(f, WIRE_PLAN, NULL);

    /* target 3 at hop 0 (+1), 4 at its own hop 1 (+1), 5 at the last hop
     * (not forwarded), and 6 in another message at hop 4 (+1) */
    uint32_t idx_a[3] = {3, 4, 5}, idx_b[1] = {6};
    int h_a[3] = {-1, 1, 5}, h_b[1] = {-1};
    CHECK(s_feed_hops(f, m[1].id, 0, idx_a, h_a, 3, 10) == 0);
    CHECK(s_feed_hops(f, m[1].id, 4, idx_b, h_b, 1, 10) == 0);
    fleet_tick(f, 10 + c.push_interval_ms);
    fleet_out_t o;
    int progress = 0, have = 0, per_peer[5] = {0};
    while (fleet_poll(f, &o)) {
        if (o.type == FOUT_SEND && (o.wire_type == WIRE_PROGRESS || o.wire_type == WIRE_HAVE)) {
            for (int i = 0; i < 5; i++)
                per_peer[i] += strcmp(o.address, m[i].address) == 0;
        }
        if (o.type == FOUT_SEND && o.wire_type == WIRE_PROGRESS) {
            uint32_t idx[8], n;
            int h[8];
            progress++;
            CHECK(s_read_hops(&o, idx, h, &n, 8) == 1);
            CHECK(n == 3);
            CHECK(idx[0] == 3 && h[0] == -1); /* at the message's hop */
            CHECK(idx[1] == 4 && h[1] == 2);
            CHECK(idx[2] == 6 && h[2] == 5);
        }
        if (o.type == FOUT_SEND && o.wire_type == WIRE_HAVE) {
            wire_msg_t msg;
            const uint8_t *hops;
            size_t len = 0;
            uint64_t hop = 0;
            have++;
            REQUIRE(wire_decode(o.data, o.len, &msg) == 0);
            CHECK(wire_get_u64(&msg.body, "hop", &hop) == 0 && hop == 1);
            CHECK(wire_get_bin(&msg.body, "hops", &hops, &len, 64) == 0 && len == 3);
            CHECK(len == 3 && hops[0] == 1 && hops[1] == 2 && hops[2] == 5);
            wire_msg_release(&msg);
        }
        fleet_out_release(&o);
    }
    CHECK(progress == 1 && have == 3);
    CHECK(per_peer[0] == 0);
    for (int i = 1; i < 5; i++)
        CHECK(per_peer[i] == 1); /* one message per peer for the round */

    /* a request with a hop per index is answered with those hops */
    uint8_t idx4[8] = {3, 0, 0, 0, 4, 0, 0, 0}, hs[2] = {0, 2};
    wire_writer_t *w = wire_writer_new(WIRE_HAVE, m[2].id, 5);
    wire_put_u64(w, "k", 1);
    wire_put_u64(w, "hop", 0);
    wire_put_bin(w, "p", plan, sizeof plan);
    wire_put_bin(w, "i", idx4, sizeof idx4);
    wire_put_bin(w, "hs", hs, sizeof hs);
    CHECK(s_feed_from(f, w, 20 + c.push_interval_ms) == 0);
    wire_writer_destroy(&w);
    int answers = 0;
    while (fleet_poll(f, &o)) {
        if (o.type == FOUT_SEND && o.wire_type == WIRE_PROGRESS) {
            uint32_t idx[8], n;
            int h[8];
            answers++;
            CHECK(strcmp(o.address, m[2].address) == 0);
            CHECK(s_read_hops(&o, idx, h, &n, 8) == 0);
            CHECK(n == 2 && idx[0] == 3 && h[0] == -1 && idx[1] == 4 && h[1] == 2);
        }
        fleet_out_release(&o);
    }
    CHECK(answers == 1);

    /* hops out of range or of the wrong count: the message is refused */
    uint64_t bad = fleet_stats(f)->malformed;
    int h_bad[1] = {17};
    CHECK(s_feed_hops(f, m[1].id, 0, idx_b, h_bad, 1, 30) == GG_EMALFORMED);
    uint8_t hs_long[3] = {0, 0, 0}, hs_big[2] = {0, 17};
    for (int v = 0; v < 2; v++) {
        w = wire_writer_new(WIRE_HAVE, m[2].id, 5);
        wire_put_u64(w, "k", 1);
        wire_put_u64(w, "hop", 0);
        wire_put_bin(w, "p", plan, sizeof plan);
        wire_put_bin(w, "i", idx4, sizeof idx4);
        wire_put_bin(w, "hs", v ? hs_big : hs_long, v ? sizeof hs_big : sizeof hs_long);
        CHECK(s_feed_from(f, w, 30) == GG_EMALFORMED);
        wire_writer_destroy(&w);
    }
    uint8_t v[36] = {0};
    w = wire_writer_new(WIRE_HAVE, m[2].id, 6);
    wire_put_u64(w, "k", 0);
    wire_put_u64(w, "hop", 0);
    wire_put_str(w, "a", "tcp://n2:1");
    wire_put_key(w, "plans");
    msgpack_pack_array(wire_writer_packer(w), 1);
    msgpack_pack_bin_with_body(wire_writer_packer(w), plan, sizeof plan);
    wire_put_bin(w, "v", v, sizeof v);
    wire_put_bin(w, "hops", hs, sizeof hs); /* two hops for one version */
    CHECK(s_feed_from(f, w, 30) == GG_EMALFORMED);
    wire_writer_destroy(&w);
    CHECK(fleet_stats(f)->malformed == bad + 4);
    fleet_destroy(&f);
}

int main(void)
{
    GG_RUN(test_config_and_api);
    GG_RUN(test_scan_budget_and_memory);
    GG_RUN(test_malformed_messages);
    GG_RUN(test_net_basic);
    GG_RUN(test_net_mixed_versions);
    GG_RUN(test_net_join_moves_few);
    GG_RUN(test_net_crash_takeover_and_restart);
    GG_RUN(test_net_quick_restart_reclaims);
    GG_RUN(test_net_restart_respects_unheard_holders);
    GG_RUN(test_net_partition_fences_lower_epoch);
    GG_RUN(test_net_silent_holder_taken_over);
    GG_RUN(test_net_same_epoch_race);
    GG_RUN(test_net_claims_wait_while_owners_change);
    GG_RUN(test_net_lossy_convergence);
    GG_RUN(test_net_documents);
    GG_RUN(test_net_feed_restart);
    GG_RUN(test_net_max_parallel);
    GG_RUN(test_net_canary);
    GG_RUN(test_net_failure_ratio);
    GG_RUN(test_net_cancel);
    GG_RUN(test_net_gated);
    GG_RUN(test_net_leave_hands_back);
    GG_RUN(test_net_rate_limit);
    GG_RUN(test_net_retry_wait_takeover);
    GG_RUN(test_net_draining);
    GG_RUN(test_unknown_plan_records);
    GG_RUN(test_net_doc_source_retry);
    GG_RUN(test_net_late_plan_waits_for_pull);
    GG_RUN(test_net_push_epidemic);
    GG_RUN(test_net_lazy_push);
    GG_RUN(test_net_paged_pull);
    GG_RUN(test_net_pull_same_state);
    GG_RUN(test_progress_names_documents);
    GG_RUN(test_push_fanout_scales);
    GG_RUN(test_push_round_per_item_hops);
    GG_DONE();
}
