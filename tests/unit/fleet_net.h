/*
 * fleet_net.h: an in-process network of fleet instances for unit tests.
 *
 * Up to FN_MAX_NODES fleet cores share one virtual clock. Every SEND output
 * is a real encoded wire message, delivered (wire_decode + fleet_handle)
 * after a random latency, subject to loss, duplication, cut links, crashed
 * and frozen nodes. Each node has a fake runner (FOUT_RUN starts a job that
 * reports its outcome through fleet_record_local after a random duration),
 * a fake store (every FOUT_RECORD persisted, documents kept) so a crashed
 * node can restart from what it persisted, and a membership view the test
 * sets by hand. The network keeps the accounting the tests check: runs and
 * aborts per target, runs that overlapped a live execution elsewhere, the
 * peak number of running targets, fenced results. One seed drives it all.
 * Header-only test code, included by one test file.
 */
#ifndef GG_FLEET_NET_H
#define GG_FLEET_NET_H

#include "fleet.h"
#include "gg_error.h"
#include "rendezvous.h"
#include "rng.h"
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FN_MAX_NODES   8
#define FN_MAX_PLANS   4
#define FN_MAX_JOBS    64
#define FN_MAX_DOCS    8
#define FN_MAX_PACKETS 400000

typedef struct fleet_net fleet_net_t;

typedef struct {
    int from, to;
    uint64_t at, order;
    uint8_t *data;
    size_t len;
} fn_packet_t;

typedef struct {
    int plan;
    uint32_t index;
    progress_rec_t claim; /* the record FOUT_RUN carried */
    uint64_t finish;
    bool zombie; /* aborted, but the runner did not stop (ignore_abort) */
} fn_job_t;

typedef struct {
    uint8_t id[FLEET_ID_LEN];
    uint32_t n;
    uint64_t *keys;
    bool *gated;
    fleet_rollout_t ro;
    uint32_t *runs;   /* FOUT_RUN per target, all nodes */
    uint32_t *aborts; /* FOUT_ABORT per target, all nodes */
    uint32_t running; /* jobs (not zombies) right now, all nodes */
    uint32_t running_max;
} fn_plan_t;

typedef struct {
    uint8_t id[FLEET_ID_LEN];
    uint8_t kind;
    uint8_t *data;
    size_t len;
    bool accepted;
} fn_doc_t;

typedef struct {
    fleet_t *f; /* NULL while crashed */
    fleet_net_t *net;
    int self;
    uint8_t id[FLEET_ID_LEN];
    char address[64];
    bool frozen;                 /* hung: no ticks, nothing in or out */
    bool view[FN_MAX_NODES];     /* live in this node's view */
    bool draining[FN_MAX_NODES]; /* draining in this node's view */
    /* the newest wire version it reads (fn_init: WIRE_VERSION); a message of
     * a newer one is refused on arrival, as an older node's decoder does */
    uint32_t wire_version;
    uint32_t slots; /* executor size */
    fn_job_t jobs[FN_MAX_JOBS];
    int n_jobs;
    progress_rec_t *store[FN_MAX_PLANS]; /* persisted records */
    bool *stored[FN_MAX_PLANS];
    fn_doc_t docs[FN_MAX_DOCS];
    int n_docs;
    uint64_t runs, aborts, fenced, docs_got;
    uint64_t seed;
} fn_node_t;

/* Test hooks: every non-SEND output of node `node`, after the network acted
 * on it; the outcome a runner reports; whether a completed document is
 * rejected. */
typedef void(fn_out_hook_fn)(void *arg, fleet_net_t *net, int node, const fleet_out_t *out);
typedef uint8_t(fn_outcome_fn)(void *arg, fleet_net_t *net, int node, int plan, uint32_t index,
                               const progress_rec_t *claim);
typedef bool(fn_reject_fn)(void *arg, const uint8_t doc_id[FLEET_ID_LEN]);

struct fleet_net {
    fleet_config_t cfg;
    rng_t rng;
    uint64_t now;
    int n;
    fn_node_t nodes[FN_MAX_NODES];
    fn_plan_t plans[FN_MAX_PLANS];
    int n_plans;
    bool cut[FN_MAX_NODES][FN_MAX_NODES];
    double loss, dup;
    uint32_t latency_min, latency_max;
    uint32_t run_min, run_max;
    bool ignore_abort;
    fn_out_hook_fn *hook;
    fn_outcome_fn *outcome;
    fn_reject_fn *reject;
    void *arg;
    fn_packet_t *heap;
    size_t heap_n, heap_cap;
    uint64_t order;
    uint64_t sent, delivered, dropped, handle_errors, codec_errors, sender_mismatch;
    uint64_t version_refused;                     /* newer than the receiver reads */
    uint64_t delivered_version[WIRE_VERSION + 1]; /* by envelope version */
    uint64_t overlaps, overcommit, loops;
};

static inline void fn_node_id(int i, uint8_t id[FLEET_ID_LEN])
{
    uint64_t st = 0xf1ee7ull + (uint64_t) i * 7919;
    for (int b = 0; b < FLEET_ID_LEN; b += 8) {
        uint64_t v = rng_splitmix64(&st);
        memcpy(id + b, &v, 8);
    }
}

static inline int fn_init(fleet_net_t *net, const fleet_config_t *cfg, int n, uint64_t seed)
{
    memset(net, 0, sizeof *net);
    if (n < 1 || n > FN_MAX_NODES)
        return GG_EINVAL;
    net->cfg = *cfg;
    rng_seed(&net->rng, seed);
    net->n = n;
    net->now = 1000;
    net->latency_min = 1;
    net->latency_max = 5;
    net->run_min = 30;
    net->run_max = 120;
    for (int i = 0; i < n; i++) {
        fn_node_t *nd = &net->nodes[i];
        nd->net = net;
        nd->self = i;
        fn_node_id(i, nd->id);
        snprintf(nd->address, sizeof nd->address, "tcp://fleet%d:7700", i);
        nd->slots = 8;
        nd->wire_version = WIRE_VERSION;
    }
    return 0;
}

/* Declares a plan of n targets (keys from "target-<plan>-<i>"); every node
 * started afterwards gets it. Returns the plan slot or -1. */
static inline int fn_plan(fleet_net_t *net, uint32_t n, const fleet_rollout_t *ro)
{
    if (net->n_plans >= FN_MAX_PLANS)
        return -1;
    int k = net->n_plans++;
    fn_plan_t *p = &net->plans[k];
    memset(p->id, 0xa0 + k, FLEET_ID_LEN);
    p->n = n;
    p->keys = calloc(n ? n : 1, sizeof *p->keys);
    p->gated = calloc(n ? n : 1, sizeof *p->gated);
    p->runs = calloc(n ? n : 1, sizeof *p->runs);
    p->aborts = calloc(n ? n : 1, sizeof *p->aborts);
    p->ro = *ro;
    for (uint32_t i = 0; i < n; i++) {
        char ref[64];
        int len = snprintf(ref, sizeof ref, "component:default/target-%d-%u", k, i);
        p->keys[i] = rendezvous_key(ref, (size_t) len);
    }
    for (int i = 0; i < net->n; i++) {
        net->nodes[i].store[k] = calloc(n ? n : 1, sizeof(progress_rec_t));
        net->nodes[i].stored[k] = calloc(n ? n : 1, sizeof(bool));
    }
    return k;
}

static inline int fn_add_plan(fleet_net_t *net, int node, int k)
{
    fn_plan_t *p = &net->plans[k];
    return fleet_add_plan(net->nodes[node].f, net->now, p->id, p->n, p->keys, p->gated, &p->ro);
}

static inline size_t fn_doc_reader(void *arg, const uint8_t doc_id[FLEET_ID_LEN], uint64_t offset,
                                   uint8_t *buf, size_t len)
{
    fn_node_t *nd = arg;
    for (int d = 0; d < nd->n_docs; d++) {
        fn_doc_t *doc = &nd->docs[d];
        if (!doc->accepted || memcmp(doc->id, doc_id, FLEET_ID_LEN) != 0)
            continue;
        if (offset >= doc->len)
            return 0;
        size_t n = doc->len - offset < len ? doc->len - offset : len;
        memcpy(buf, doc->data + offset, n);
        return n;
    }
    return 0;
}

/* Pushes node i's view (all nodes in index order) to its fleet. */
static inline void fn_push_view(fleet_net_t *net, int i)
{
    fn_node_t *nd = &net->nodes[i];
    if (!nd->f)
        return;
    fleet_member_t m[FN_MAX_NODES];
    memset(m, 0, sizeof m);
    for (int j = 0; j < net->n; j++) {
        memcpy(m[j].id, net->nodes[j].id, FLEET_ID_LEN);
        snprintf(m[j].address, sizeof m[j].address, "%s", net->nodes[j].address);
        m[j].live = j == i ? true : nd->view[j];
        m[j].draining = nd->draining[j];
        /* an older node knows no newer version: it speaks its own to all */
        uint32_t v = net->nodes[j].wire_version;
        m[j].wire_version = (uint8_t) (v < nd->wire_version ? v : nd->wire_version);
    }
    fleet_set_members(nd->f, net->now, m, (size_t) net->n);
}

/* Observer's view of subject (pushed at once). */
static inline void fn_see(fleet_net_t *net, int observer, int subject, bool live)
{
    net->nodes[observer].view[subject] = live;
    fn_push_view(net, observer);
}

/* Every running (or frozen) node sees exactly the running and frozen nodes
 * among the first n as live. */
static inline void fn_view_all(fleet_net_t *net)
{
    for (int i = 0; i < net->n; i++) {
        if (!net->nodes[i].f)
            continue;
        for (int j = 0; j < net->n; j++)
            net->nodes[i].view[j] = net->nodes[j].f != NULL;
        fn_push_view(net, i);
    }
}

static inline void fn_set_capacity(fleet_net_t *net, int i)
{
    fn_node_t *nd = &net->nodes[i];
    if (nd->f)
        fleet_set_capacity(nd->f, net->now,
                           nd->slots > (uint32_t) nd->n_jobs ? nd->slots - (uint32_t) nd->n_jobs
                                                             : 0);
}

static inline void fn_drain(fleet_net_t *net, int i);

/* Starts (or restarts) node i, with every declared plan when `plans`;
 * with `restore`, from its persisted records and documents. */
static inline int fn_start_ex(fleet_net_t *net, int i, bool restore, bool plans)
{
    fn_node_t *nd = &net->nodes[i];
    fleet_destroy(&nd->f);
    nd->seed = rng_next(&net->rng);
    nd->f = fleet_new(&net->cfg, nd->id, nd->address, nd->seed, net->now);
    if (!nd->f)
        return GG_ENOMEM;
    nd->frozen = false;
    nd->n_jobs = 0;
    fleet_set_doc_reader(nd->f, fn_doc_reader, nd);
    for (int k = 0; plans && k < net->n_plans; k++) {
        int rc = fn_add_plan(net, i, k);
        if (rc)
            return rc;
    }
    if (restore) {
        for (int k = 0; k < net->n_plans; k++)
            for (uint32_t x = 0; x < net->plans[k].n; x++)
                if (nd->stored[k][x] &&
                    fleet_restore_record(nd->f, net->plans[k].id, x, &nd->store[k][x]) != 0)
                    return GG_EINTERNAL;
        for (int d = 0; d < nd->n_docs; d++)
            if (nd->docs[d].accepted &&
                fleet_restore_doc(nd->f, nd->docs[d].id, nd->docs[d].kind, nd->docs[d].len) != 0)
                return GG_EINTERNAL;
    }
    fn_set_capacity(net, i);
    fn_drain(net, i);
    return 0;
}

static inline int fn_start(fleet_net_t *net, int i, bool restore)
{
    return fn_start_ex(net, i, restore, true);
}

/* Ends node i's jobs (the process died with them). */
static inline void fn_kill_jobs(fleet_net_t *net, int i)
{
    fn_node_t *nd = &net->nodes[i];
    for (int j = 0; j < nd->n_jobs; j++)
        if (!nd->jobs[j].zombie)
            net->plans[nd->jobs[j].plan].running--;
    nd->n_jobs = 0;
}

static inline void fn_crash(fleet_net_t *net, int i)
{
    fn_kill_jobs(net, i);
    fleet_destroy(&net->nodes[i].f);
}

static inline int fn_plan_slot(const fleet_net_t *net, const uint8_t *id)
{
    for (int k = 0; k < net->n_plans; k++)
        if (memcmp(net->plans[k].id, id, FLEET_ID_LEN) == 0)
            return k;
    return -1;
}

static inline int fn_by_address(const fleet_net_t *net, const char *address)
{
    for (int i = 0; i < net->n; i++)
        if (strcmp(net->nodes[i].address, address) == 0)
            return i;
    return -1;
}

static inline bool fn_before(const fn_packet_t *a, const fn_packet_t *b)
{
    return a->at < b->at || (a->at == b->at && a->order < b->order);
}

static inline void fn_heap_push(fleet_net_t *net, fn_packet_t p)
{
    if (net->heap_n == net->heap_cap) {
        size_t cap = net->heap_cap ? net->heap_cap * 2 : 1024;
        fn_packet_t *nh = cap <= FN_MAX_PACKETS ? realloc(net->heap, cap * sizeof *nh) : NULL;
        if (!nh) {
            net->dropped++;
            free(p.data);
            return;
        }
        net->heap = nh;
        net->heap_cap = cap;
    }
    size_t i = net->heap_n++;
    net->heap[i] = p;
    while (i > 0 && fn_before(&net->heap[i], &net->heap[(i - 1) / 2])) {
        fn_packet_t t = net->heap[i];
        net->heap[i] = net->heap[(i - 1) / 2];
        net->heap[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static inline fn_packet_t fn_heap_pop(fleet_net_t *net)
{
    fn_packet_t top = net->heap[0];
    net->heap[0] = net->heap[--net->heap_n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, b = i;
        if (l < net->heap_n && fn_before(&net->heap[l], &net->heap[b]))
            b = l;
        if (r < net->heap_n && fn_before(&net->heap[r], &net->heap[b]))
            b = r;
        if (b == i)
            break;
        fn_packet_t t = net->heap[i];
        net->heap[i] = net->heap[b];
        net->heap[b] = t;
        i = b;
    }
    return top;
}

static inline void fn_send(fleet_net_t *net, int from, fleet_out_t *out)
{
    int to = fn_by_address(net, out->address);
    net->sent++;
    if (to < 0 || net->cut[from][to] || (net->loss > 0 && rng_unit(&net->rng) < net->loss)) {
        net->dropped++;
        return;
    }
    int copies = net->dup > 0 && rng_unit(&net->rng) < net->dup ? 2 : 1;
    for (int c = 0; c < copies; c++) {
        fn_packet_t p = {.from = from, .to = to, .order = net->order++};
        uint32_t span = net->latency_max - net->latency_min + 1;
        p.at = net->now + net->latency_min + rng_below(&net->rng, span);
        p.data = malloc(out->len);
        if (!p.data)
            return;
        memcpy(p.data, out->data, out->len);
        p.len = out->len;
        fn_heap_push(net, p);
    }
}

static inline void fn_on_run(fleet_net_t *net, int i, const fleet_out_t *o)
{
    fn_node_t *nd = &net->nodes[i];
    int k = fn_plan_slot(net, o->plan_id);
    if (k < 0)
        return;
    fn_plan_t *p = &net->plans[k];
    p->runs[o->index]++;
    nd->runs++;
    for (int j = 0; j < net->n; j++) {
        if (j == i || !net->nodes[j].f)
            continue;
        for (int x = 0; x < net->nodes[j].n_jobs; x++) {
            const fn_job_t *jb = &net->nodes[j].jobs[x];
            if (jb->plan == k && jb->index == o->index)
                net->overlaps++;
        }
    }
    if ((uint32_t) nd->n_jobs >= nd->slots || nd->n_jobs >= FN_MAX_JOBS) {
        net->overcommit++;
        if (nd->n_jobs >= FN_MAX_JOBS)
            return;
    }
    fn_job_t *jb = &nd->jobs[nd->n_jobs++];
    memset(jb, 0, sizeof *jb);
    jb->plan = k;
    jb->index = o->index;
    jb->claim = o->rec;
    uint32_t span = net->run_max - net->run_min + 1;
    jb->finish = net->now + net->run_min + rng_below(&net->rng, span);
    p->running++;
    if (p->running > p->running_max)
        p->running_max = p->running;
}

static inline void fn_on_abort(fleet_net_t *net, int i, const fleet_out_t *o)
{
    fn_node_t *nd = &net->nodes[i];
    int k = fn_plan_slot(net, o->plan_id);
    if (k < 0)
        return;
    nd->aborts++;
    net->plans[k].aborts[o->index]++;
    for (int x = 0; x < nd->n_jobs; x++) {
        fn_job_t *jb = &nd->jobs[x];
        if (jb->plan != k || jb->index != o->index || jb->zombie)
            continue;
        net->plans[k].running--;
        if (net->ignore_abort)
            jb->zombie = true;
        else
            nd->jobs[x--] = nd->jobs[--nd->n_jobs];
    }
}

static inline void fn_on_doc(fleet_net_t *net, int i, fleet_out_t *o)
{
    fn_node_t *nd = &net->nodes[i];
    nd->docs_got++;
    if (net->reject && net->reject(net->arg, o->doc_id)) {
        fleet_doc_reject(nd->f, net->now, o->doc_id);
        return;
    }
    if (nd->n_docs >= FN_MAX_DOCS)
        return;
    fn_doc_t *d = &nd->docs[nd->n_docs++];
    memcpy(d->id, o->doc_id, FLEET_ID_LEN);
    d->kind = o->doc_kind;
    d->data = o->data; /* taken */
    d->len = o->len;
    d->accepted = true;
    o->data = NULL;
    fleet_doc_accept(nd->f, net->now, o->doc_id);
}

static inline void fn_drain(fleet_net_t *net, int i)
{
    fn_node_t *nd = &net->nodes[i];
    fleet_out_t o;
    while (nd->f && fleet_poll(nd->f, &o)) {
        int k = o.type == FOUT_SEND || o.type == FOUT_DOC ? -1 : fn_plan_slot(net, o.plan_id);
        switch (o.type) {
        case FOUT_SEND:
            if (!nd->frozen)
                fn_send(net, i, &o);
            break;
        case FOUT_RUN: fn_on_run(net, i, &o); break;
        case FOUT_ABORT: fn_on_abort(net, i, &o); break;
        case FOUT_RECORD:
            if (k >= 0 && o.index < net->plans[k].n) {
                nd->store[k][o.index] = o.rec;
                nd->stored[k][o.index] = true;
            }
            break;
        case FOUT_DOC: fn_on_doc(net, i, &o); break;
        default: break;
        }
        if (o.type != FOUT_SEND && net->hook)
            net->hook(net->arg, net, i, &o);
        fleet_out_type_t type = o.type;
        fleet_out_release(&o);
        if (type == FOUT_RUN || type == FOUT_ABORT)
            fn_set_capacity(net, i);
    }
}

/* The runner of node i reports the outcome of job x. */
static inline void fn_finish(fleet_net_t *net, int i, int x)
{
    fn_node_t *nd = &net->nodes[i];
    fn_job_t jb = nd->jobs[x];
    nd->jobs[x] = nd->jobs[--nd->n_jobs];
    if (!jb.zombie)
        net->plans[jb.plan].running--;
    progress_rec_t r = jb.claim;
    r.state = net->outcome ? net->outcome(net->arg, net, i, jb.plan, jb.index, &jb.claim)
                           : TARGET_SUCCEEDED;
    r.finished_ms = net->now;
    r.duration_ms = 1;
    if (r.state != TARGET_SUCCEEDED && r.state != TARGET_SKIPPED)
        snprintf(r.error, sizeof r.error, "exit 1 on node %d", i);
    int rc = fleet_record_local(nd->f, net->now, net->plans[jb.plan].id, jb.index, &r);
    if (rc == GG_ESTALE)
        nd->fenced++;
    fn_set_capacity(net, i);
    fn_drain(net, i);
}

static inline void fn_deliver(fleet_net_t *net, fn_packet_t *p)
{
    fn_node_t *to = &net->nodes[p->to];
    if (!to->f || to->frozen || net->cut[p->from][p->to] || !net->nodes[p->from].f) {
        net->dropped++;
        return;
    }
    wire_msg_t w;
    if (wire_decode(p->data, p->len, &w) != 0) {
        net->codec_errors++;
        return;
    }
    if (w.version > to->wire_version) {
        net->version_refused++;
        wire_msg_release(&w);
        return;
    }
    net->delivered_version[w.version]++;
    if (memcmp(w.sender, net->nodes[p->from].id, FLEET_ID_LEN) != 0)
        net->sender_mismatch++;
    if (fleet_handle(to->f, net->now, &w) != 0)
        net->handle_errors++;
    wire_msg_release(&w);
    net->delivered++;
    fn_drain(net, p->to);
}

static inline bool fn_active(const fn_node_t *nd)
{
    return nd->f && !nd->frozen;
}

/* Runs the network until virtual time t. A node whose deadline stays in
 * the past without progress (a busy loop) stops the network for good:
 * net->loops counts it and tests fail fast. */
static inline void fn_run_until(fleet_net_t *net, uint64_t t)
{
    uint64_t last = UINT64_MAX, same = 0;
    if (net->loops) {
        if (t > net->now)
            net->now = t;
        return;
    }
    for (int i = 0; i < net->n; i++)
        fn_drain(net, i);
    for (;;) {
        uint64_t next = UINT64_MAX;
        if (net->heap_n > 0)
            next = net->heap[0].at;
        for (int i = 0; i < net->n; i++) {
            fn_node_t *nd = &net->nodes[i];
            if (!fn_active(nd))
                continue;
            uint64_t d = fleet_next_deadline(nd->f);
            if (d < next)
                next = d;
            for (int x = 0; x < nd->n_jobs; x++)
                if (nd->jobs[x].finish < next)
                    next = nd->jobs[x].finish;
        }
        if (next > t)
            break;
        if (next > net->now)
            net->now = next;
        if (net->now == last) {
            if (++same > 100000) {
                net->loops++;
                break;
            }
        } else {
            last = net->now;
            same = 0;
        }
        while (net->heap_n > 0 && net->heap[0].at <= net->now) {
            fn_packet_t p = fn_heap_pop(net);
            fn_deliver(net, &p);
            free(p.data);
        }
        for (int i = 0; i < net->n; i++) {
            fn_node_t *nd = &net->nodes[i];
            for (int x = 0; fn_active(nd) && x < nd->n_jobs; x++)
                if (nd->jobs[x].finish <= net->now) {
                    fn_finish(net, i, x);
                    x = -1; /* the job table changed */
                }
        }
        for (int i = 0; i < net->n; i++) {
            fn_node_t *nd = &net->nodes[i];
            if (fn_active(nd) && fleet_next_deadline(nd->f) <= net->now) {
                fleet_tick(nd->f, net->now);
                fn_drain(net, i);
            }
        }
    }
    if (t > net->now)
        net->now = t;
}

/* Runs in 10 ms steps until pred holds or `deadline` passes. */
static inline bool fn_run_until_pred(fleet_net_t *net, uint64_t deadline,
                                     bool (*pred)(fleet_net_t *net, void *arg), void *arg)
{
    while (!pred(net, arg)) {
        if (net->now >= deadline)
            return false;
        uint64_t step = net->now + 10;
        fn_run_until(net, step < deadline ? step : deadline);
    }
    return true;
}

/* How many targets of plan k ran exactly once (runs less aborted ones). */
static inline uint32_t fn_ran_once(const fleet_net_t *net, int k)
{
    const fn_plan_t *p = &net->plans[k];
    uint32_t once = 0;
    for (uint32_t i = 0; i < p->n; i++)
        once += p->runs[i] - p->aborts[i] == 1;
    return once;
}

static inline void fn_cut(fleet_net_t *net, int a, int b, bool cut)
{
    net->cut[a][b] = cut;
    net->cut[b][a] = cut;
}

static inline void fn_free(fleet_net_t *net)
{
    for (int i = 0; i < net->n; i++) {
        fn_node_t *nd = &net->nodes[i];
        fleet_destroy(&nd->f);
        for (int k = 0; k < net->n_plans; k++) {
            free(nd->store[k]);
            free(nd->stored[k]);
        }
        for (int d = 0; d < nd->n_docs; d++)
            free(nd->docs[d].data);
    }
    for (int k = 0; k < net->n_plans; k++) {
        free(net->plans[k].keys);
        free(net->plans[k].gated);
        free(net->plans[k].runs);
        free(net->plans[k].aborts);
    }
    while (net->heap_n > 0) {
        fn_packet_t p = fn_heap_pop(net);
        free(p.data);
    }
    free(net->heap);
    net->heap = NULL;
}

#endif
