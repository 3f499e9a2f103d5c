/*
 * mini_net.h: a tiny in-process network for multi-node membership tests.
 *
 * Up to MN_MAX_NODES membership instances share one virtual clock. A SEND
 * output becomes a packet delivered after a random latency to the node whose
 * address it names (the "authenticated" sender is the node that produced it),
 * optionally through the wire codec. Links can be cut one way or both, nodes
 * crashed and restarted, and a loss rate applied. Everything is driven by one
 * seed, so a run is reproducible. Header-only: it is test code, included by
 * one test file at a time.
 */
#ifndef GG_MINI_NET_H
#define GG_MINI_NET_H

#include "gg_error.h"
#include "membership.h"
#include "rng.h"
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MN_MAX_NODES   16
#define MN_MAX_PACKETS 100000

typedef struct {
    int from, to;
    uint64_t at, order;
    membership_msg_t *msg; /* when not encoding */
    uint8_t *data;         /* when encoding */
    size_t len;
} mn_packet_t;

typedef struct mini_net mini_net_t;
/* Called for every CHANGED/REMOVED/INCARNATION output of node `node`. */
typedef void(mn_hook_fn)(void *arg, mini_net_t *net, int node, const membership_out_t *out);

typedef struct {
    membership_t *m; /* NULL while crashed */
    uint8_t id[MEMBER_ID_LEN];
    char name[32];
    char address[64];
    uint64_t incarnation; /* as "persisted" from MOUT_INCARNATION */
    /* the newest wire version it reads and speaks (mn_init: WIRE_VERSION):
     * below 2 it starts without MEMBER_FLAG_WIRE2, as an older node, and a
     * message of a newer version is refused on arrival */
    uint32_t wire_version;
} mn_node_t;

struct mini_net {
    membership_profile_t profile;
    rng_t rng;
    uint64_t now;
    int n;
    mn_node_t nodes[MN_MAX_NODES];
    bool cut[MN_MAX_NODES][MN_MAX_NODES]; /* packets from i to j are dropped */
    double loss;
    uint32_t latency_min, latency_max;
    bool encode;
    mn_packet_t *heap;
    size_t heap_n, heap_cap;
    uint64_t order;
    uint64_t sent, delivered, dropped, codec_errors, handle_errors;
    uint64_t version_refused, delivered_version[WIRE_VERSION + 1];
    uint64_t trace; /* digest of every delivery, for determinism checks */
    mn_hook_fn *hook;
    void *hook_arg;
};

static inline void mn_node_id(int i, uint8_t id[MEMBER_ID_LEN])
{
    uint64_t st = 0x1d5eedull + (uint64_t) i;
    for (int b = 0; b < MEMBER_ID_LEN; b += 8) {
        uint64_t v = rng_splitmix64(&st);
        memcpy(id + b, &v, 8);
    }
}

static inline int mn_init(mini_net_t *net, const membership_profile_t *profile, int n,
                          uint64_t seed)
{
    memset(net, 0, sizeof *net);
    if (n < 1 || n > MN_MAX_NODES)
        return GG_EINVAL;
    net->profile = *profile;
    rng_seed(&net->rng, seed);
    net->n = n;
    net->now = 1000;
    net->latency_min = 1;
    net->latency_max = 5;
    net->encode = true;
    for (int i = 0; i < n; i++) {
        mn_node_id(i, net->nodes[i].id);
        net->nodes[i].wire_version = WIRE_VERSION;
        snprintf(net->nodes[i].name, sizeof net->nodes[i].name, "node%d", i);
        snprintf(net->nodes[i].address, sizeof net->nodes[i].address, "tcp://node%d:7700", i);
    }
    return 0;
}

/* Starts (or restarts) node i at `incarnation`, joining through `seed` (-1:
 * none). Returns 0 or GG_ENOMEM. */
static inline int mn_start(mini_net_t *net, int i, uint64_t incarnation, int seed)
{
    mn_node_t *nd = &net->nodes[i];
    membership_destroy(&nd->m);
    nd->m = membership_new(&net->profile, nd->id, nd->name, nd->address, incarnation,
                           rng_next(&net->rng), net->now);
    if (!nd->m)
        return GG_ENOMEM;
    nd->incarnation = incarnation;
    if (nd->wire_version < 2 &&
        membership_set_flags(nd->m, net->now, membership_self(nd->m)->flags & ~MEMBER_FLAG_WIRE2))
        return GG_EINVAL;
    if (seed >= 0 && membership_add_seed(nd->m, net->nodes[seed].address) != 0)
        return GG_EINVAL;
    return 0;
}

static inline void mn_crash(mini_net_t *net, int i)
{
    membership_destroy(&net->nodes[i].m);
}

static inline void mn_packet_free(mn_packet_t *p)
{
    membership_msg_destroy(&p->msg);
    free(p->data);
    p->data = NULL;
}

static inline bool mn_before(const mn_packet_t *a, const mn_packet_t *b)
{
    return a->at < b->at || (a->at == b->at && a->order < b->order);
}

static inline void mn_push(mini_net_t *net, mn_packet_t p)
{
    if (net->heap_n == net->heap_cap) {
        size_t cap = net->heap_cap ? net->heap_cap * 2 : 256;
        mn_packet_t *nh = cap <= MN_MAX_PACKETS ? realloc(net->heap, cap * sizeof *nh) : NULL;
        if (!nh) {
            net->dropped++;
            mn_packet_free(&p);
            return;
        }
        net->heap = nh;
        net->heap_cap = cap;
    }
    size_t i = net->heap_n++;
    net->heap[i] = p;
    while (i > 0 && mn_before(&net->heap[i], &net->heap[(i - 1) / 2])) {
        mn_packet_t t = net->heap[i];
        net->heap[i] = net->heap[(i - 1) / 2];
        net->heap[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static inline mn_packet_t mn_pop(mini_net_t *net)
{
    mn_packet_t top = net->heap[0];
    net->heap[0] = net->heap[--net->heap_n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, b = i;
        if (l < net->heap_n && mn_before(&net->heap[l], &net->heap[b]))
            b = l;
        if (r < net->heap_n && mn_before(&net->heap[r], &net->heap[b]))
            b = r;
        if (b == i)
            break;
        mn_packet_t t = net->heap[i];
        net->heap[i] = net->heap[b];
        net->heap[b] = t;
        i = b;
    }
    return top;
}

static inline int mn_by_address(const mini_net_t *net, const char *address)
{
    for (int i = 0; i < net->n; i++)
        if (strcmp(net->nodes[i].address, address) == 0)
            return i;
    return -1;
}

/* Drains node i's outputs into the network. */
static inline void mn_drain(mini_net_t *net, int i)
{
    membership_out_t out;
    while (net->nodes[i].m && membership_poll(net->nodes[i].m, &out)) {
        if (out.type == MOUT_SEND) {
            int to = mn_by_address(net, out.to_address);
            net->sent++;
            if (to < 0 || net->cut[i][to] || (net->loss > 0 && rng_unit(&net->rng) < net->loss)) {
                net->dropped++;
            } else {
                mn_packet_t p = {.from = i, .to = to, .order = net->order++};
                uint32_t span = net->latency_max - net->latency_min + 1;
                p.at = net->now + net->latency_min + rng_below(&net->rng, span);
                if (net->encode) {
                    if (membership_msg_encode(out.msg, &p.data, &p.len) != 0)
                        net->codec_errors++;
                    else
                        mn_push(net, p);
                } else {
                    p.msg = out.msg;
                    out.msg = NULL;
                    mn_push(net, p);
                }
            }
        } else {
            if (out.type == MOUT_INCARNATION)
                net->nodes[i].incarnation = out.incarnation;
            if (net->hook)
                net->hook(net->hook_arg, net, i, &out);
        }
        membership_out_release(&out);
    }
}

static inline void mn_deliver(mini_net_t *net, mn_packet_t *p)
{
    mn_node_t *to = &net->nodes[p->to];
    if (!to->m || net->cut[p->from][p->to]) {
        net->dropped++;
        return;
    }
    membership_msg_t *msg = p->msg;
    if (net->encode) {
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
        int rc = membership_msg_decode(&w, &msg);
        wire_msg_release(&w);
        if (rc != 0) {
            net->codec_errors++;
            return;
        }
    }
    net->trace = rng_mix64(net->trace ^ (net->now * 31 + (uint64_t) p->from * 7 + p->to) ^
                           ((uint64_t) msg->type << 56) ^ msg->seq);
    if (membership_handle(to->m, net->now, net->nodes[p->from].id, msg) != 0)
        net->handle_errors++;
    net->delivered++;
    if (net->encode)
        membership_msg_destroy(&msg);
    mn_drain(net, p->to);
}

/* Runs the network until virtual time t. */
static inline void mn_run_until(mini_net_t *net, uint64_t t)
{
    for (int i = 0; i < net->n; i++)
        mn_drain(net, i);
    for (;;) {
        uint64_t next = UINT64_MAX;
        if (net->heap_n > 0)
            next = net->heap[0].at;
        for (int i = 0; i < net->n; i++) {
            if (!net->nodes[i].m)
                continue;
            uint64_t d = membership_next_deadline(net->nodes[i].m);
            if (d < next)
                next = d;
        }
        if (next > t)
            break;
        if (next > net->now)
            net->now = next;
        while (net->heap_n > 0 && net->heap[0].at <= net->now) {
            mn_packet_t p = mn_pop(net);
            mn_deliver(net, &p);
            mn_packet_free(&p);
        }
        for (int i = 0; i < net->n; i++) {
            if (net->nodes[i].m && membership_next_deadline(net->nodes[i].m) <= net->now) {
                membership_tick(net->nodes[i].m, net->now);
                mn_drain(net, i);
            }
        }
    }
    if (t > net->now)
        net->now = t;
}

/* Runs in small steps until pred(net, arg) holds or virtual time `deadline`
 * passes. Returns true when the predicate held. */
static inline bool mn_run_until_pred(mini_net_t *net, uint64_t deadline,
                                     bool (*pred)(mini_net_t *net, void *arg), void *arg)
{
    while (!pred(net, arg)) {
        if (net->now >= deadline)
            return false;
        uint64_t step = net->now + 10;
        mn_run_until(net, step < deadline ? step : deadline);
    }
    return true;
}

/* Cuts (or restores) the links between nodes a and b, both ways. */
static inline void mn_cut(mini_net_t *net, int a, int b, bool cut)
{
    net->cut[a][b] = cut;
    net->cut[b][a] = cut;
}

static inline const member_t *mn_view(const mini_net_t *net, int observer, int subject)
{
    if (!net->nodes[observer].m)
        return NULL;
    return membership_find(net->nodes[observer].m, net->nodes[subject].id);
}

static inline void mn_free(mini_net_t *net)
{
    for (int i = 0; i < net->n; i++)
        membership_destroy(&net->nodes[i].m);
    while (net->heap_n > 0) {
        mn_packet_t p = mn_pop(net);
        mn_packet_free(&p);
    }
    free(net->heap);
    net->heap = NULL;
}

#endif
