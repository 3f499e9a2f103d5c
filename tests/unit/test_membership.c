/*
 * test_membership.c: the membership state machine, its codec and a small
 * in-process fleet (mini_net.h), all on a fake clock and fixed seeds.
 *
 * Single-instance tests feed hand-made messages and check every transition
 * and timer the profile implies; network tests run 5-10 instances through
 * joins, crashes, restarts, leaves, partitions and message loss.
 */
#include "gg_error.h"
#include "gg_test.h"
#include "membership.h"
#include "mini_net.h"
#include "rng.h"
#include "wire.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* helpers for single-instance tests                                  */

#define MAX_OUTS 8192
static membership_out_t g_out[MAX_OUTS];
static uint64_t g_out_at[MAX_OUTS];
static int g_n;

static void s_clear(void)
{
    for (int i = 0; i < g_n; i++)
        membership_out_release(&g_out[i]);
    g_n = 0;
}

static void s_drain(membership_t *m, uint64_t now)
{
    membership_out_t o;
    while (membership_poll(m, &o)) {
        if (g_n < MAX_OUTS) {
            g_out_at[g_n] = now;
            g_out[g_n++] = o;
        } else {
            membership_out_release(&o);
        }
    }
}

/* Ticks m at every deadline up to `until` (inclusive), collecting outputs. */
static void s_run(membership_t *m, uint64_t *now, uint64_t until)
{
    for (;;) {
        uint64_t d = membership_next_deadline(m);
        if (d > until)
            break;
        if (d > *now)
            *now = d;
        membership_tick(m, *now);
        s_drain(m, *now);
    }
    *now = until;
}

static void s_id(int i, uint8_t id[MEMBER_ID_LEN])
{
    mn_node_id(i, id);
}

static int s_node_of(const uint8_t *id);
static membership_msg_t *s_msg(int from, uint32_t type, uint32_t n);
static int s_deliver(membership_t *m, uint64_t now, int from, membership_msg_t **msg);

/* Like s_run, in 1 ms steps, every PING being answered by its target
 * (except `silent`, -1 for none). Outputs stay collected. */
static void s_run_acking(membership_t *m, uint64_t *now, uint64_t until, int silent)
{
    while (*now < until) {
        int from = g_n;
        s_run(m, now, *now + 1);
        int n = g_n;
        for (int i = from; i < n; i++) {
            if (g_out[i].type != MOUT_SEND || g_out[i].msg->type != WIRE_PING)
                continue;
            int to = s_node_of(g_out[i].to_id);
            if (to < 0 || to == silent)
                continue;
            membership_msg_t *ack = s_msg(to, WIRE_ACK, 0);
            ack->seq = g_out[i].msg->seq;
            s_id(to, ack->target_id);
            s_deliver(m, *now, to, &ack);
        }
    }
}

static void s_addr(int i, char *buf, size_t size)
{
    snprintf(buf, size, "tcp://node%d:7700", i);
}

static void s_update(member_update_t *u, int i, member_state_t st, uint64_t inc)
{
    memset(u, 0, sizeof *u);
    s_id(i, u->id);
    snprintf(u->name, sizeof u->name, "node%d", i);
    s_addr(i, u->address, sizeof u->address);
    u->state = st;
    u->incarnation = inc;
}

static void s_accuse(member_update_t *u, int accuser)
{
    u->has_accuser = true;
    s_id(accuser, u->accuser);
}

/* A message from node `from` (alive at incarnation 1) with room for n updates. */
static membership_msg_t *s_msg(int from, uint32_t type, uint32_t n)
{
    membership_msg_t *msg = membership_msg_new(type, n);
    if (!msg)
        return NULL;
    s_update(&msg->sender, from, MEMBER_ALIVE, 1);
    return msg;
}

static int s_deliver(membership_t *m, uint64_t now, int from, membership_msg_t **msg)
{
    uint8_t id[MEMBER_ID_LEN];
    s_id(from, id);
    int rc = membership_handle(m, now, id, *msg);
    membership_msg_destroy(msg);
    s_drain(m, now);
    return rc;
}

static membership_profile_t s_profile(void)
{
    membership_profile_t p;
    membership_profile_get("test", &p);
    return p;
}

/* Node 0 at incarnation 1, at time `now`. */
static membership_t *s_node0(const membership_profile_t *p, uint64_t now)
{
    uint8_t id[MEMBER_ID_LEN];
    char addr[64];
    s_id(0, id);
    s_addr(0, addr, sizeof addr);
    return membership_new(p, id, "node0", addr, 1, 42, now);
}

/* Makes nodes 1..n known to m as alive (incarnation 1) through one GOSSIP
 * from node 1. */
static void s_add_peers(membership_t *m, uint64_t now, int n)
{
    membership_msg_t *msg = s_msg(1, WIRE_GOSSIP, (uint32_t) n);
    for (int i = 2; i <= n; i++)
        s_update(&msg->updates[msg->n_updates++], i, MEMBER_ALIVE, 1);
    s_deliver(m, now, 1, &msg);
}

static const member_t *s_view(membership_t *m, int i)
{
    uint8_t id[MEMBER_ID_LEN];
    s_id(i, id);
    return membership_find(m, id);
}

static bool s_is(const uint8_t *id, int i)
{
    uint8_t want[MEMBER_ID_LEN];
    s_id(i, want);
    return memcmp(id, want, MEMBER_ID_LEN) == 0;
}

static int s_node_of(const uint8_t *id)
{
    for (int i = 0; i < 64; i++)
        if (s_is(id, i))
            return i;
    return -1;
}

/* Index of the first output from `from` on that is a SEND of `type`, -1 if none. */
static int s_find_send(int from, uint32_t type)
{
    for (int i = from; i < g_n; i++)
        if (g_out[i].type == MOUT_SEND && g_out[i].msg->type == type)
            return i;
    return -1;
}

static int s_count_send(uint32_t type)
{
    int n = 0;
    for (int i = 0; i < g_n; i++)
        n += g_out[i].type == MOUT_SEND && g_out[i].msg->type == type;
    return n;
}

/* The last CHANGED output about node i, or NULL. */
static const membership_out_t *s_last_change(int i)
{
    for (int k = g_n - 1; k >= 0; k--)
        if (g_out[k].type == MOUT_CHANGED && s_is(g_out[k].member.id, i))
            return &g_out[k];
    return NULL;
}

/* ------------------------------------------------------------------ */
/* profiles, construction, views                                      */

static void test_profiles(void)
{
    membership_profile_t p;
    CHECK_EQ_INT(membership_profile_get("lan", &p), 0);
    CHECK_EQ_INT(p.probe_interval_ms, 1000);
    CHECK_EQ_INT(p.probe_timeout_ms, 500);
    CHECK_EQ_INT(p.gossip_interval_ms, 200);
    CHECK_EQ_INT(p.gossip_fanout, 3);
    CHECK_EQ_INT(p.indirect_checks, 3);
    CHECK_EQ_INT(p.suspicion_mult, 4);
    CHECK_EQ_INT(p.suspicion_max_timeout_mult, 6);
    CHECK_EQ_INT(p.retransmit_mult, 4);
    CHECK_EQ_INT(p.push_pull_interval_ms, 30000);
    CHECK_EQ_INT(p.awareness_max, 8);
    CHECK_EQ_INT(p.gossip_to_dead_ms, 30000);
    CHECK_EQ_INT(membership_profile_check(&p), 0);
    CHECK_EQ_INT(membership_profile_get("wan", &p), 0);
    CHECK_EQ_INT(p.probe_interval_ms, 5000);
    CHECK_EQ_INT(p.probe_timeout_ms, 3000);
    CHECK_EQ_INT(p.suspicion_mult, 6);
    CHECK_EQ_INT(p.gossip_fanout, 4);
    CHECK_EQ_INT(p.push_pull_interval_ms, 60000);
    CHECK_EQ_INT(membership_profile_check(&p), 0);
    CHECK_EQ_INT(membership_profile_get("test", &p), 0);
    CHECK_EQ_INT(p.probe_interval_ms, 100);
    CHECK_EQ_INT(p.probe_timeout_ms, 50);
    CHECK_EQ_INT(p.gossip_interval_ms, 20);
    CHECK_EQ_INT(p.push_pull_interval_ms, 3000);
    CHECK_EQ_INT(membership_profile_check(&p), 0);
    CHECK_EQ_INT(membership_profile_get("fast", &p), GG_EINVAL);
    CHECK_EQ_INT(membership_profile_get(NULL, &p), GG_EINVAL);

    membership_profile_t bad = s_profile();
    bad.probe_timeout_ms = bad.probe_interval_ms;
    CHECK_EQ_INT(membership_profile_check(&bad), GG_EINVAL);
    bad = s_profile();
    bad.indirect_checks = MEMBERSHIP_MAX_INDIRECT + 1;
    CHECK_EQ_INT(membership_profile_check(&bad), GG_EINVAL);
    bad = s_profile();
    bad.max_piggyback = MEMBERSHIP_MAX_PIGGYBACK + 1;
    CHECK_EQ_INT(membership_profile_check(&bad), GG_EINVAL);
    bad = s_profile();
    bad.gossip_interval_ms = 0;
    CHECK_EQ_INT(membership_profile_check(&bad), GG_EINVAL);

    uint8_t id[MEMBER_ID_LEN] = {1};
    CHECK(membership_new(&bad, id, "x", "tcp://x:1", 1, 1, 0) == NULL);
    membership_profile_t ok = s_profile();
    CHECK(membership_new(&ok, id, "x", "", 1, 1, 0) == NULL);
    CHECK_STR(member_state_name(MEMBER_ALIVE), "alive");
    CHECK_STR(member_state_name(MEMBER_SUSPECT), "suspect");
    CHECK_STR(member_state_name(MEMBER_DEAD), "dead");
    CHECK_STR(member_state_name(MEMBER_LEFT), "left");
}

static void test_views_and_checksum(void)
{
    membership_profile_t p = s_profile();
    membership_t *a = s_node0(&p, 1000);
    REQUIRE(a);
    CHECK_EQ_INT(membership_size(a), 1);
    CHECK_EQ_INT(membership_alive_count(a), 1);
    CHECK(membership_at(a, 0) == membership_self(a));
    CHECK(membership_at(a, 1) == NULL);
    CHECK_EQ_INT(membership_self(a)->state, MEMBER_ALIVE);
    CHECK_EQ_INT(membership_self(a)->incarnation, 1);
    CHECK_STR(membership_self(a)->name, "node0");
    CHECK(membership_checksum(a) != 0);
    CHECK_EQ_INT(membership_health(a), 0);

    /* The same live set learnt in another order gives the same checksum. */
    uint8_t id[MEMBER_ID_LEN];
    s_id(0, id);
    membership_t *b = membership_new(&p, id, "node0", "tcp://node0:7700", 1, 7, 1000);
    REQUIRE(b);
    s_add_peers(a, 1000, 4);
    membership_msg_t *msg = s_msg(3, WIRE_GOSSIP, 3);
    s_update(&msg->updates[msg->n_updates++], 4, MEMBER_ALIVE, 1);
    s_update(&msg->updates[msg->n_updates++], 2, MEMBER_ALIVE, 1);
    s_update(&msg->updates[msg->n_updates++], 1, MEMBER_ALIVE, 1);
    s_deliver(b, 1000, 3, &msg);
    CHECK_EQ_INT(membership_size(a), 5);
    CHECK_EQ_INT(membership_size(b), 5);
    CHECK(membership_checksum(a) == membership_checksum(b));
    uint64_t before = membership_checksum(b);
    CHECK_EQ_INT(s_view(a, 2)->state, MEMBER_ALIVE);

    /* A different live set differs; a dead member does not count. */
    msg = s_msg(3, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 4, MEMBER_DEAD, 1);
    s_deliver(b, 1000, 3, &msg);
    CHECK_EQ_INT(s_view(b, 4)->state, MEMBER_DEAD);
    CHECK(membership_checksum(b) != before);
    CHECK_EQ_INT(membership_alive_count(b), 4);
    CHECK_EQ_INT(membership_size(b), 5);

    /* The checksum each peer reports is recorded. */
    msg = s_msg(2, WIRE_GOSSIP, 0);
    msg->checksum = 0xabcdef;
    s_deliver(a, 1000, 2, &msg);
    CHECK(s_view(a, 2)->view_checksum == 0xabcdef);

    s_clear();
    membership_destroy(&a);
    membership_destroy(&b);
    CHECK(a == NULL);
    membership_destroy(&a);
}

/* ------------------------------------------------------------------ */
/* transitions                                                        */

static void test_suspect_then_dead_by_timeout(void)
{
    membership_profile_t p = s_profile();
    uint64_t now = 1000;
    membership_t *a = s_node0(&p, now);
    REQUIRE(a);
    s_add_peers(a, now, 1); /* only node 1: every probe goes to it */
    REQUIRE(s_view(a, 1) && s_view(a, 1)->state == MEMBER_ALIVE);
    s_clear();

    s_run(a, &now, now + p.probe_interval_ms);
    int ping = s_find_send(0, WIRE_PING);
    REQUIRE(ping >= 0);
    uint64_t t_ping = g_out_at[ping];
    CHECK(s_is(g_out[ping].to_id, 1));
    CHECK(g_out[ping].to_id_known);
    CHECK_STR(g_out[ping].to_address, "tcp://node1:7700");
    CHECK(s_is(g_out[ping].msg->target_id, 1));

    /* No ACK: no helper exists for an indirect probe; at the end of the
     * interval node 1 is suspected and our health drops by one. */
    s_run(a, &now, t_ping + p.probe_interval_ms - 1);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_ALIVE);
    CHECK_EQ_INT(s_count_send(WIRE_PING_REQ), 0);
    s_run(a, &now, t_ping + p.probe_interval_ms);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_SUSPECT);
    CHECK_EQ_INT(membership_health(a), 1);
    const membership_out_t *ch = s_last_change(1);
    REQUIRE(ch);
    CHECK_EQ_INT(ch->old_state, MEMBER_ALIVE);
    CHECK_EQ_INT(ch->member.state, MEMBER_SUSPECT);
    CHECK(!ch->added);

    /* Two live members: no confirmation can come (K = 0), so the timeout
     * is the minimum: suspicion_mult * max(1, log10 2) * probe_interval. */
    uint64_t t_suspect = t_ping + p.probe_interval_ms;
    uint64_t expect = t_suspect + (uint64_t) p.suspicion_mult * p.probe_interval_ms;
    /* The probe that follows tells node 1 it is suspected, so it can refute:
     * its own record comes first in the piggyback. */
    int ping2 = s_find_send(ping + 1, WIRE_PING);
    REQUIRE(ping2 >= 0);
    REQUIRE(g_out[ping2].msg->n_updates >= 1);
    CHECK(s_is(g_out[ping2].msg->updates[0].id, 1));
    CHECK_EQ_INT(g_out[ping2].msg->updates[0].state, MEMBER_SUSPECT);
    CHECK(g_out[ping2].msg->updates[0].has_accuser);
    CHECK(s_is(g_out[ping2].msg->updates[0].accuser, 0));
    CHECK_EQ_INT(membership_suspicion_deadline(a, s_view(a, 1)->id), expect);
    s_run(a, &now, expect - 1);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_SUSPECT);
    /* So does every probe while it stays suspect, also after the
     * suspicion's own broadcast has been sent its full count. */
    CHECK_EQ_INT(membership_broadcasts_pending(a), 0);
    int pings = 0;
    for (int i = ping2; i < g_n; i++) {
        if (g_out[i].type != MOUT_SEND || g_out[i].msg->type != WIRE_PING)
            continue;
        pings++;
        REQUIRE(g_out[i].msg->n_updates >= 1);
        CHECK(s_is(g_out[i].msg->updates[0].id, 1));
        CHECK_EQ_INT(g_out[i].msg->updates[0].state, MEMBER_SUSPECT);
    }
    CHECK(pings >= 2);
    s_run(a, &now, expect);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_DEAD);
    CHECK_EQ_INT(s_view(a, 1)->state_since_ms, expect);
    ch = s_last_change(1);
    REQUIRE(ch);
    CHECK_EQ_INT(ch->old_state, MEMBER_SUSPECT);
    CHECK_EQ_INT(ch->member.state, MEMBER_DEAD);
    CHECK_EQ_INT(membership_suspicion_deadline(a, s_view(a, 1)->id), 0);
    CHECK_EQ_INT(membership_alive_count(a), 1);
    CHECK_EQ_INT(membership_stats(a)->deaths, 1);

    /* Dead members are not probed any more. */
    s_clear();
    s_run(a, &now, now + 10 * p.probe_interval_ms);
    CHECK_EQ_INT(s_count_send(WIRE_PING), 0);
    s_clear();
    membership_destroy(&a);
}

static void test_suspect_refuted_by_alive(void)
{
    membership_profile_t p = s_profile();
    uint64_t now = 1000;
    membership_t *a = s_node0(&p, now);
    REQUIRE(a);
    s_add_peers(a, now, 4);

    membership_msg_t *msg = s_msg(2, WIRE_GOSSIP, 1);
    s_update(&msg->updates[0], 1, MEMBER_SUSPECT, 1);
    s_accuse(&msg->updates[0], 2);
    msg->n_updates = 1;
    s_deliver(a, now, 2, &msg);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_SUSPECT);
    CHECK(membership_suspicion_deadline(a, s_view(a, 1)->id) > now);

    /* A suspicion at an older incarnation than the record is ignored; an
     * alive at the same incarnation does not refute. */
    msg = s_msg(3, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 1, MEMBER_ALIVE, 1);
    s_deliver(a, now, 3, &msg);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_SUSPECT);

    /* alive(i+1) overrides suspect(i). */
    s_clear();
    msg = s_msg(3, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 1, MEMBER_ALIVE, 2);
    s_deliver(a, now + 5, 3, &msg);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_ALIVE);
    CHECK_EQ_INT(s_view(a, 1)->incarnation, 2);
    CHECK_EQ_INT(membership_suspicion_deadline(a, s_view(a, 1)->id), 0);
    const membership_out_t *ch = s_last_change(1);
    REQUIRE(ch);
    CHECK_EQ_INT(ch->old_state, MEMBER_SUSPECT);

    /* suspect(i) where the record is alive(i+1): stale, ignored. */
    msg = s_msg(2, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 1, MEMBER_SUSPECT, 1);
    s_deliver(a, now + 6, 2, &msg);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_ALIVE);

    /* dead(j >= i) overrides alive; alive(i+1) brings it back. */
    msg = s_msg(2, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 1, MEMBER_DEAD, 2);
    s_deliver(a, now + 7, 2, &msg);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_DEAD);
    msg = s_msg(2, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 1, MEMBER_ALIVE, 2);
    s_deliver(a, now + 8, 2, &msg);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_DEAD);
    msg = s_msg(2, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 1, MEMBER_ALIVE, 3);
    s_deliver(a, now + 9, 2, &msg);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_ALIVE);
    CHECK_EQ_INT(s_view(a, 1)->incarnation, 3);

    /* Suspect/dead about an unknown member is ignored. */
    msg = s_msg(2, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 9, MEMBER_DEAD, 5);
    s_deliver(a, now + 10, 2, &msg);
    CHECK(s_view(a, 9) == NULL);
    s_clear();
    membership_destroy(&a);
}

static void test_confirmations_shrink_suspicion(void)
{
    membership_profile_t p = s_profile();
    uint64_t t0 = 5000;
    membership_t *a = s_node0(&p, 1000);
    REQUIRE(a);
    s_add_peers(a, 1000, 5); /* 6 live members: K = min(indirect_checks, N - 2) = 3 */
    const uint64_t min = (uint64_t) p.suspicion_mult * p.probe_interval_ms; /* log10(6) < 1 */
    const uint64_t max = min * p.suspicion_max_timeout_mult;
    const double k = 3;
    uint64_t expect[4];
    for (int c = 0; c < 4; c++) {
        double t = floor((double) max - (double) (max - min) * log(c + 1.0) / log(k + 1.0));
        expect[c] = t0 + (t < (double) min ? min : (uint64_t) t);
    }
    CHECK_EQ_INT(expect[0], t0 + 2400);
    CHECK_EQ_INT(expect[1], t0 + 1400);
    CHECK_EQ_INT(expect[2], t0 + 815);
    CHECK_EQ_INT(expect[3], t0 + 400);

    uint8_t target[MEMBER_ID_LEN];
    s_id(1, target);
    for (int c = 0; c < 4; c++) {
        int accuser = 2 + c;
        membership_msg_t *msg = s_msg(accuser, WIRE_GOSSIP, 1);
        s_update(&msg->updates[0], 1, MEMBER_SUSPECT, 1);
        s_accuse(&msg->updates[0], accuser);
        msg->n_updates = 1;
        s_deliver(a, t0, accuser, &msg);
        CHECK_EQ_INT(membership_suspicion_deadline(a, target), expect[c]);
    }
    /* The same accuser twice, or more than K confirmations, change nothing. */
    membership_msg_t *msg = s_msg(3, WIRE_GOSSIP, 1);
    s_update(&msg->updates[0], 1, MEMBER_SUSPECT, 1);
    s_accuse(&msg->updates[0], 3);
    msg->n_updates = 1;
    s_deliver(a, t0, 3, &msg);
    CHECK_EQ_INT(membership_suspicion_deadline(a, target), expect[3]);

    /* A confirmation relayed by a third party counts its accuser, not the
     * relay: accuser 2 again through node 4 is a duplicate. */
    membership_t *b = s_node0(&p, 1000);
    REQUIRE(b);
    s_add_peers(b, 1000, 5);
    msg = s_msg(2, WIRE_GOSSIP, 1);
    s_update(&msg->updates[0], 1, MEMBER_SUSPECT, 1);
    s_accuse(&msg->updates[0], 2);
    msg->n_updates = 1;
    s_deliver(b, t0, 2, &msg);
    msg = s_msg(4, WIRE_GOSSIP, 1);
    s_update(&msg->updates[0], 1, MEMBER_SUSPECT, 1);
    s_accuse(&msg->updates[0], 2);
    msg->n_updates = 1;
    s_deliver(b, t0, 4, &msg);
    CHECK_EQ_INT(membership_suspicion_deadline(b, target), expect[0]);

    /* Expiry at the shrunk deadline. */
    uint64_t now = t0;
    s_run(a, &now, expect[3] - 1);
    CHECK(s_view(a, 1)->state == MEMBER_SUSPECT);
    s_run(a, &now, expect[3]);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_DEAD);
    s_clear();
    membership_destroy(&a);
    membership_destroy(&b);
}

static void test_self_refutation(void)
{
    membership_profile_t p = s_profile();
    uint64_t now = 1000;
    membership_t *a = s_node0(&p, now);
    REQUIRE(a);
    s_add_peers(a, now, 3);
    s_clear();

    /* Told we are suspect at our incarnation: refute with incarnation + 1. */
    membership_msg_t *msg = s_msg(2, WIRE_GOSSIP, 1);
    s_update(&msg->updates[0], 0, MEMBER_SUSPECT, 1);
    s_accuse(&msg->updates[0], 2);
    msg->n_updates = 1;
    s_deliver(a, now, 2, &msg);
    CHECK_EQ_INT(membership_self(a)->state, MEMBER_ALIVE);
    CHECK_EQ_INT(membership_self(a)->incarnation, 2);
    CHECK_EQ_INT(membership_health(a), 1);
    CHECK_EQ_INT(membership_stats(a)->refutations, 1);
    int inc = -1;
    for (int i = 0; i < g_n; i++)
        if (g_out[i].type == MOUT_INCARNATION)
            inc = i;
    REQUIRE(inc >= 0);
    CHECK_EQ_INT(g_out[inc].incarnation, 2);

    /* The refutation is gossiped: the next GOSSIP carries alive(self, 2). */
    s_clear();
    s_run(a, &now, now + p.gossip_interval_ms);
    int g = s_find_send(0, WIRE_GOSSIP);
    REQUIRE(g >= 0);
    bool found = false;
    for (uint32_t i = 0; i < g_out[g].msg->n_updates; i++) {
        const member_update_t *u = &g_out[g].msg->updates[i];
        if (s_is(u->id, 0) && u->state == MEMBER_ALIVE && u->incarnation == 2)
            found = true;
    }
    CHECK(found);
    CHECK_EQ_INT(g_out[g].msg->sender.incarnation, 2);

    /* Old accusations are ignored; dead at our incarnation is refuted; an
     * alive claim above ours (a past life) is out-numbered. */
    s_clear();
    msg = s_msg(2, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 0, MEMBER_DEAD, 1);
    s_deliver(a, now, 2, &msg);
    CHECK_EQ_INT(membership_self(a)->incarnation, 2);
    msg = s_msg(2, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 0, MEMBER_DEAD, 2);
    s_deliver(a, now, 2, &msg);
    CHECK_EQ_INT(membership_self(a)->incarnation, 3);
    CHECK_EQ_INT(membership_self(a)->state, MEMBER_ALIVE);
    msg = s_msg(2, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 0, MEMBER_ALIVE, 7);
    s_deliver(a, now, 2, &msg);
    CHECK_EQ_INT(membership_self(a)->incarnation, 8);
    /* An alive claim equal to our record (flags included) is just an echo. */
    msg = s_msg(2, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 0, MEMBER_ALIVE, 8);
    msg->updates[0].flags = membership_self(a)->flags;
    s_deliver(a, now, 2, &msg);
    CHECK_EQ_INT(membership_self(a)->incarnation, 8);

    /* A SYNC listing us as dead makes us refute too. */
    msg = s_msg(3, WIRE_SYNC, 2);
    s_update(&msg->updates[msg->n_updates++], 0, MEMBER_DEAD, 8);
    s_update(&msg->updates[msg->n_updates++], 1, MEMBER_ALIVE, 1);
    s_deliver(a, now, 3, &msg);
    CHECK_EQ_INT(membership_self(a)->incarnation, 9);
    int reply = s_find_send(0, WIRE_SYNC_REPLY);
    REQUIRE(reply >= 0);
    CHECK_EQ_INT(g_out[reply].msg->sender.incarnation, 9);
    CHECK(s_is(g_out[reply].to_id, 3));
    s_clear();
    membership_destroy(&a);
}

static void test_merge_dead_is_suspect(void)
{
    membership_profile_t p = s_profile();
    membership_t *a = s_node0(&p, 1000);
    REQUIRE(a);
    s_add_peers(a, 1000, 4);
    /* A push-pull that lists a live member as dead only makes it suspect
     * (accused by the remote), so it can still refute; left is taken as is. */
    membership_msg_t *msg = s_msg(2, WIRE_SYNC_REPLY, 3);
    s_update(&msg->updates[msg->n_updates++], 1, MEMBER_DEAD, 1);
    s_update(&msg->updates[msg->n_updates++], 3, MEMBER_LEFT, 1);
    s_update(&msg->updates[msg->n_updates++], 5, MEMBER_ALIVE, 1);
    CHECK_EQ_INT(s_deliver(a, 1000, 2, &msg), 0);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_SUSPECT);
    CHECK_EQ_INT(s_view(a, 3)->state, MEMBER_LEFT);
    CHECK_EQ_INT(s_view(a, 5)->state, MEMBER_ALIVE);
    CHECK(membership_joined(a));
    s_clear();
    membership_destroy(&a);
}

static void test_leave(void)
{
    membership_profile_t p = s_profile();
    uint64_t now = 1000;
    membership_t *a = s_node0(&p, now);
    REQUIRE(a);
    s_add_peers(a, now, 2);
    s_clear();

    membership_leave(a, now);
    s_drain(a, now);
    CHECK_EQ_INT(membership_self(a)->state, MEMBER_LEFT);
    CHECK_EQ_INT(membership_self(a)->incarnation, 2);
    CHECK_EQ_INT(membership_alive_count(a), 2);
    int inc = -1;
    for (int i = 0; i < g_n; i++)
        if (g_out[i].type == MOUT_INCARNATION)
            inc = i;
    REQUIRE(inc >= 0);
    CHECK_EQ_INT(g_out[inc].incarnation, 2);
    CHECK_EQ_INT(s_count_send(WIRE_LEAVE), 2);
    int leave = s_find_send(0, WIRE_LEAVE);
    REQUIRE(leave >= 0);
    CHECK_EQ_INT(g_out[leave].msg->sender.state, MEMBER_LEFT);
    CHECK(inc < leave); /* persist the incarnation before sending */

    /* A receiving node lists the leaver as LEFT, not dead. */
    uint8_t id1[MEMBER_ID_LEN], id0[MEMBER_ID_LEN];
    s_id(1, id1);
    s_id(0, id0);
    membership_t *b = membership_new(&p, id1, "node1", "tcp://node1:7700", 1, 9, now);
    REQUIRE(b);
    membership_msg_t *hello = s_msg(0, WIRE_GOSSIP, 0);
    CHECK_EQ_INT(membership_handle(b, now, id0, hello), 0);
    membership_msg_destroy(&hello);
    CHECK_EQ_INT(membership_find(b, id0)->state, MEMBER_ALIVE);
    CHECK_EQ_INT(membership_handle(b, now + 1, id0, g_out[leave].msg), 0);
    CHECK_EQ_INT(membership_find(b, id0)->state, MEMBER_LEFT);
    CHECK_EQ_INT(membership_find(b, id0)->incarnation, 2);

    /* After leaving: no probes, no push-pull, no refutation; gossip only
     * until the LEFT record has been sent its full count. */
    s_clear();
    s_run(a, &now, now + 50 * p.probe_interval_ms);
    CHECK_EQ_INT(s_count_send(WIRE_PING), 0);
    CHECK_EQ_INT(s_count_send(WIRE_SYNC), 0);
    CHECK(s_count_send(WIRE_GOSSIP) > 0);
    CHECK_EQ_INT(membership_broadcasts_pending(a), 0);
    membership_msg_t *msg = s_msg(1, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 0, MEMBER_DEAD, 2);
    s_deliver(a, now, 1, &msg);
    CHECK_EQ_INT(membership_self(a)->state, MEMBER_LEFT);
    CHECK_EQ_INT(membership_self(a)->incarnation, 2);
    /* A left node still answers a ping, saying it has left. */
    s_clear();
    msg = s_msg(1, WIRE_PING, 0);
    msg->seq = 5;
    memcpy(msg->target_id, id0, MEMBER_ID_LEN);
    s_deliver(a, now, 1, &msg);
    int ack = s_find_send(0, WIRE_ACK);
    REQUIRE(ack >= 0);
    CHECK_EQ_INT(g_out[ack].msg->sender.state, MEMBER_LEFT);
    membership_leave(a, now); /* idempotent */
    CHECK_EQ_INT(membership_self(a)->incarnation, 2);
    CHECK_EQ_INT(membership_set_flags(a, now, MEMBER_FLAG_DRAINING), GG_EINVAL);
    s_clear();
    membership_destroy(&a);
    membership_destroy(&b);
}

static void test_reap(void)
{
    membership_profile_t p = s_profile();
    p.reap_ms = 2000;
    uint64_t now = 1000;
    membership_t *a = s_node0(&p, now);
    REQUIRE(a);
    s_add_peers(a, now, 3);
    membership_msg_t *msg = s_msg(2, WIRE_GOSSIP, 2);
    s_update(&msg->updates[msg->n_updates++], 1, MEMBER_DEAD, 1);
    s_update(&msg->updates[msg->n_updates++], 3, MEMBER_LEFT, 1);
    s_deliver(a, now, 2, &msg);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_DEAD);
    CHECK_EQ_INT(s_view(a, 3)->state, MEMBER_LEFT);
    CHECK_EQ_INT(membership_size(a), 4);
    s_clear();

    /* Node 2 answers its probes, so only 1 and 3 go. */
    uint64_t t_dead = now;
    s_run_acking(a, &now, t_dead + p.reap_ms - 1, -1);
    CHECK(s_view(a, 1) != NULL);
    CHECK(s_view(a, 3) != NULL);
    s_run(a, &now, t_dead + p.reap_ms);
    CHECK(s_view(a, 1) == NULL);
    CHECK(s_view(a, 3) == NULL);
    CHECK(s_view(a, 2) != NULL);
    CHECK_EQ_INT(membership_size(a), 2);
    int removed = 0;
    for (int i = 0; i < g_n; i++)
        if (g_out[i].type == MOUT_REMOVED)
            removed++;
    CHECK_EQ_INT(removed, 2);
    CHECK_EQ_INT(membership_stats(a)->reaped, 2);
    /* A reaped member can join again. */
    msg = s_msg(2, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 1, MEMBER_ALIVE, 2);
    s_deliver(a, now, 2, &msg);
    CHECK(s_view(a, 1) && s_view(a, 1)->state == MEMBER_ALIVE);
    s_clear();
    membership_destroy(&a);
}

static void test_gossip_to_the_dead(void)
{
    membership_profile_t p = s_profile();
    uint64_t now = 1000;
    membership_t *a = s_node0(&p, now);
    REQUIRE(a);
    s_add_peers(a, now, 2);
    membership_msg_t *msg = s_msg(2, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 1, MEMBER_DEAD, 1);
    s_deliver(a, now, 2, &msg);
    uint64_t t_dead = now;
    s_clear();
    /* Within gossip_to_dead_ms the dead member still gets gossip (with its
     * own record first, so that a live node wrongly declared dead learns
     * it and refutes)... */
    s_run_acking(a, &now, now + 5 * p.gossip_interval_ms, -1);
    int to_dead = 0;
    for (int i = 0; i < g_n; i++) {
        if (g_out[i].type != MOUT_SEND || g_out[i].msg->type != WIRE_GOSSIP ||
            !s_is(g_out[i].to_id, 1))
            continue;
        to_dead++;
        CHECK(s_is(g_out[i].msg->updates[0].id, 1));
        CHECK_EQ_INT(g_out[i].msg->updates[0].state, MEMBER_DEAD);
    }
    CHECK(to_dead > 0);
    /* ...and not after it, even with news to spread. */
    s_run_acking(a, &now, t_dead + p.gossip_to_dead_ms + 1, -1);
    s_clear();
    msg = s_msg(2, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 3, MEMBER_ALIVE, 1);
    s_deliver(a, now, 2, &msg);
    s_run_acking(a, &now, now + 10 * p.gossip_interval_ms, -1);
    int gossips = 0;
    for (int i = 0; i < g_n; i++) {
        if (g_out[i].type != MOUT_SEND || g_out[i].msg->type != WIRE_GOSSIP)
            continue;
        gossips++;
        CHECK(!s_is(g_out[i].to_id, 1));
    }
    CHECK(gossips > 0);
    s_clear();
    membership_destroy(&a);
}

static void test_seed_backoff(void)
{
    membership_profile_t p = s_profile();
    uint64_t now = 1000;
    membership_t *a = s_node0(&p, now);
    REQUIRE(a);
    CHECK_EQ_INT(membership_add_seed(a, "tcp://seed:7700"), 0);
    CHECK_EQ_INT(membership_add_seed(a, "tcp://seed:7700"), 0);  /* duplicate */
    CHECK_EQ_INT(membership_add_seed(a, "tcp://node0:7700"), 0); /* ourselves: skipped */
    CHECK_EQ_INT(membership_add_seed(a, ""), GG_EINVAL);
    CHECK(membership_next_deadline(a) <= now);

    s_run(a, &now, now + 30000);
    uint64_t times[64];
    int n = 0;
    for (int i = 0; i < g_n && n < 64; i++) {
        if (g_out[i].type != MOUT_SEND || g_out[i].msg->type != WIRE_SYNC)
            continue;
        CHECK(!g_out[i].to_id_known);
        CHECK_STR(g_out[i].to_address, "tcp://seed:7700");
        times[n++] = g_out_at[i];
    }
    /* 1000 (at once), then backoff 100, 200, 400, 800, 1600, 3000 (max), 3000... */
    REQUIRE(n >= 9);
    CHECK_EQ_INT(times[0], 1000);
    uint64_t gap = p.join_backoff_min_ms;
    for (int i = 1; i < n; i++) {
        CHECK_EQ_INT(times[i] - times[i - 1], gap);
        gap = gap * 2 > p.join_backoff_max_ms ? p.join_backoff_max_ms : gap * 2;
    }
    CHECK(!membership_joined(a));

    /* The seed answers: joined, no more seed contacts until the reconnect
     * interval (which may then pick the seed). */
    s_clear();
    membership_msg_t *msg = s_msg(5, WIRE_SYNC_REPLY, 1);
    s_update(&msg->updates[msg->n_updates++], 6, MEMBER_ALIVE, 1);
    CHECK_EQ_INT(s_deliver(a, now, 5, &msg), 0);
    CHECK(membership_joined(a));
    CHECK_EQ_INT(membership_alive_count(a), 3);
    uint64_t joined_at = now;
    s_run(a, &now, joined_at + p.reconnect_interval_ms - 1);
    for (int i = 0; i < g_n; i++)
        if (g_out[i].type == MOUT_SEND && g_out[i].msg->type == WIRE_SYNC)
            CHECK(g_out[i].to_id_known); /* push-pull to a member, not a seed */
    s_clear();
    membership_destroy(&a);
}

static void test_awareness_scales_probes(void)
{
    membership_profile_t p = s_profile();
    uint64_t now = 1000;
    membership_t *a = s_node0(&p, now);
    REQUIRE(a);
    s_add_peers(a, now, 4);
    s_clear();

    /* First probe at health 0: PING, PING_REQs after probe_timeout, failure
     * at probe_interval. Three helpers sent no NACK: health += 3. */
    s_run(a, &now, now + p.probe_interval_ms);
    int ping1 = s_find_send(0, WIRE_PING);
    REQUIRE(ping1 >= 0);
    uint64_t t1 = g_out_at[ping1];
    s_run(a, &now, t1 + p.probe_timeout_ms);
    int req = s_find_send(0, WIRE_PING_REQ);
    REQUIRE(req >= 0);
    CHECK_EQ_INT(g_out_at[req], t1 + p.probe_timeout_ms);
    CHECK_EQ_INT(s_count_send(WIRE_PING_REQ), 3);
    CHECK(memcmp(g_out[req].msg->target_id, g_out[ping1].msg->target_id, MEMBER_ID_LEN) == 0);
    CHECK_STR(g_out[req].msg->target_address, g_out[ping1].to_address);
    CHECK(!s_is(g_out[req].to_id, s_node_of(g_out[ping1].to_id)));
    s_clear();
    s_run(a, &now, t1 + p.probe_interval_ms);
    CHECK_EQ_INT(membership_health(a), 3);

    /* The next probe starts then (same tick), with timeout and interval
     * scaled by health + 1 = 4. */
    int ping2 = s_find_send(0, WIRE_PING);
    REQUIRE(ping2 >= 0);
    uint64_t t2 = g_out_at[ping2];
    CHECK_EQ_INT(t2, t1 + p.probe_interval_ms);
    s_run(a, &now, t2 + 4 * p.probe_timeout_ms - 1);
    CHECK_EQ_INT(s_count_send(WIRE_PING_REQ), 0);
    s_run(a, &now, t2 + 4 * p.probe_timeout_ms);
    /* Only alive members help: the first target is suspect now. */
    CHECK_EQ_INT(s_count_send(WIRE_PING_REQ), 2);

    /* This time every helper answers NACK: the target is the problem, not
     * us, so health does not move. */
    uint64_t seq2 = g_out[ping2].msg->seq;
    for (int i = 0; i < g_n; i++) {
        if (g_out[i].type != MOUT_SEND || g_out[i].msg->type != WIRE_PING_REQ)
            continue;
        int helper = s_node_of(g_out[i].to_id);
        membership_msg_t *nack = s_msg(helper, WIRE_NACK, 0);
        nack->seq = seq2;
        memcpy(nack->target_id, g_out[ping2].msg->target_id, MEMBER_ID_LEN);
        s_deliver(a, now, helper, &nack);
    }
    s_run(a, &now, t2 + 4 * p.probe_interval_ms - 1);
    CHECK_EQ_INT(s_count_send(WIRE_PING), 1);
    s_clear();
    s_run(a, &now, t2 + 4 * p.probe_interval_ms);
    CHECK_EQ_INT(membership_health(a), 3);

    /* The third probe is answered: health - 1, and the next one comes one
     * (scaled) interval after it started. */
    int ping3 = s_find_send(0, WIRE_PING);
    REQUIRE(ping3 >= 0);
    uint64_t t3 = g_out_at[ping3];
    CHECK_EQ_INT(t3, t2 + 4 * p.probe_interval_ms);
    int target = s_node_of(g_out[ping3].to_id);
    membership_msg_t *ack = s_msg(target, WIRE_ACK, 0);
    ack->seq = g_out[ping3].msg->seq;
    s_id(target, ack->target_id);
    ack->sender.incarnation = 5; /* it may have refuted meanwhile */
    s_deliver(a, t3 + 3, target, &ack);
    CHECK_EQ_INT(membership_health(a), 2);
    now = t3 + 3;
    s_clear();
    s_run(a, &now, t3 + 4 * p.probe_interval_ms - 1);
    CHECK_EQ_INT(s_count_send(WIRE_PING), 0);
    CHECK_EQ_INT(s_count_send(WIRE_PING_REQ), 0);
    s_run(a, &now, t3 + 4 * p.probe_interval_ms);
    CHECK_EQ_INT(s_count_send(WIRE_PING), 1);
    s_clear();
    membership_destroy(&a);
}

static void test_ping_ack_relay_nack(void)
{
    membership_profile_t p = s_profile();
    uint64_t now = 1000;
    membership_t *a = s_node0(&p, now);
    REQUIRE(a);
    s_add_peers(a, now, 4);
    s_clear();
    uint8_t id0[MEMBER_ID_LEN];
    s_id(0, id0);

    /* PING -> ACK to the sender's address, same seq. */
    membership_msg_t *msg = s_msg(1, WIRE_PING, 0);
    msg->seq = 77;
    memcpy(msg->target_id, id0, MEMBER_ID_LEN);
    s_deliver(a, now, 1, &msg);
    int ack = s_find_send(0, WIRE_ACK);
    REQUIRE(ack >= 0);
    CHECK_EQ_INT(g_out[ack].msg->seq, 77);
    CHECK(s_is(g_out[ack].msg->target_id, 0));
    CHECK(s_is(g_out[ack].to_id, 1));
    CHECK_STR(g_out[ack].to_address, "tcp://node1:7700");
    CHECK(g_out[ack].msg->checksum == membership_checksum(a));

    /* PING_REQ for node 3 -> our PING to 3; its ACK -> ACK relayed to 1. */
    s_clear();
    msg = s_msg(1, WIRE_PING_REQ, 0);
    msg->seq = 88;
    s_id(3, msg->target_id);
    s_addr(3, msg->target_address, sizeof msg->target_address);
    s_deliver(a, now, 1, &msg);
    int ping = s_find_send(0, WIRE_PING);
    REQUIRE(ping >= 0);
    CHECK(s_is(g_out[ping].to_id, 3));
    CHECK(s_is(g_out[ping].msg->target_id, 3));
    uint64_t relay_seq = g_out[ping].msg->seq;
    /* An ACK with that seq from someone else is not the target's. */
    msg = s_msg(2, WIRE_ACK, 0);
    msg->seq = relay_seq;
    s_id(2, msg->target_id);
    s_deliver(a, now + 1, 2, &msg);
    CHECK_EQ_INT(s_count_send(WIRE_ACK), 0);
    msg = s_msg(3, WIRE_ACK, 0);
    msg->seq = relay_seq;
    s_id(3, msg->target_id);
    s_deliver(a, now + 2, 3, &msg);
    ack = s_find_send(0, WIRE_ACK);
    REQUIRE(ack >= 0);
    CHECK(s_is(g_out[ack].to_id, 1));
    CHECK_EQ_INT(g_out[ack].msg->seq, 88);
    CHECK(s_is(g_out[ack].msg->target_id, 3));

    /* PING_REQ for node 4 that never answers -> NACK after probe_timeout. */
    s_clear();
    msg = s_msg(2, WIRE_PING_REQ, 0);
    msg->seq = 99;
    s_id(4, msg->target_id);
    s_addr(4, msg->target_address, sizeof msg->target_address);
    s_deliver(a, now, 2, &msg);
    s_run(a, &now, now + p.probe_timeout_ms - 1);
    CHECK_EQ_INT(s_count_send(WIRE_NACK), 0);
    s_run(a, &now, now + 1);
    int nack = s_find_send(0, WIRE_NACK);
    REQUIRE(nack >= 0);
    CHECK(s_is(g_out[nack].to_id, 2));
    CHECK_EQ_INT(g_out[nack].msg->seq, 99);
    CHECK(s_is(g_out[nack].msg->target_id, 4));
    CHECK_EQ_INT(membership_stats(a)->relays, 2);
    CHECK_EQ_INT(membership_stats(a)->nacks_sent, 1);
    s_clear();
    membership_destroy(&a);
}

static void test_identity_checks(void)
{
    membership_profile_t p = s_profile();
    uint64_t now = 1000;
    membership_t *a = s_node0(&p, now);
    REQUIRE(a);
    s_add_peers(a, now, 3);
    s_clear();
    uint8_t id1[MEMBER_ID_LEN], id2[MEMBER_ID_LEN];
    s_id(1, id1);
    s_id(2, id2);

    /* The body claims node 1, the transport proved node 2: ignored. */
    membership_msg_t *msg = s_msg(1, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 3, MEMBER_DEAD, 1);
    CHECK_EQ_INT(membership_handle(a, now, id2, msg), GG_EPERM);
    membership_msg_destroy(&msg);
    CHECK_EQ_INT(s_view(a, 3)->state, MEMBER_ALIVE);

    /* A sender cannot claim to be suspect or dead; a LEAVE must say left. */
    msg = s_msg(1, WIRE_GOSSIP, 0);
    msg->sender.state = MEMBER_DEAD;
    CHECK_EQ_INT(s_deliver(a, now, 1, &msg), GG_EMALFORMED);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_ALIVE);
    msg = s_msg(1, WIRE_LEAVE, 0);
    CHECK_EQ_INT(s_deliver(a, now, 1, &msg), GG_EMALFORMED);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_ALIVE);

    /* Piggybacked claims about the sender itself are not taken: its own
     * record is the header. */
    msg = s_msg(1, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 1, MEMBER_DEAD, 9);
    CHECK_EQ_INT(s_deliver(a, now, 1, &msg), 0);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_ALIVE);

    /* A PING for someone else (a stale address) gets no ACK. */
    msg = s_msg(1, WIRE_PING, 0);
    msg->seq = 3;
    memcpy(msg->target_id, id2, MEMBER_ID_LEN);
    CHECK_EQ_INT(s_deliver(a, now, 1, &msg), 0);
    CHECK_EQ_INT(s_count_send(WIRE_ACK), 0);

    /* A message from ourselves (a seed that is our own address) and an
     * unknown type are refused. */
    msg = s_msg(0, WIRE_GOSSIP, 0);
    CHECK_EQ_INT(s_deliver(a, now, 0, &msg), GG_EINVAL);
    msg = s_msg(1, WIRE_PLAN, 0);
    CHECK_EQ_INT(s_deliver(a, now, 1, &msg), GG_EINVAL);
    CHECK(membership_stats(a)->msgs_ignored >= 5);

    /* An unknown sender is learnt from its header. */
    msg = s_msg(7, WIRE_GOSSIP, 0);
    msg->sender.flags = MEMBER_FLAG_DRAINING;
    CHECK_EQ_INT(s_deliver(a, now, 7, &msg), 0);
    REQUIRE(s_view(a, 7));
    CHECK_EQ_INT(s_view(a, 7)->state, MEMBER_ALIVE);
    CHECK_EQ_INT(s_view(a, 7)->flags, MEMBER_FLAG_DRAINING);
    const membership_out_t *ch = s_last_change(7);
    REQUIRE(ch);
    CHECK(ch->added);
    s_clear();
    membership_destroy(&a);
}

static void test_restore_hints(void)
{
    membership_profile_t p = s_profile();
    uint64_t now = 1000;
    membership_t *a = s_node0(&p, now);
    REQUIRE(a);
    member_t known[4];
    memset(known, 0, sizeof known);
    for (int i = 0; i < 4; i++) {
        s_id(i, known[i].id); /* known[0] is ourselves: skipped */
        snprintf(known[i].name, sizeof known[i].name, "node%d", i);
        s_addr(i, known[i].address, sizeof known[i].address);
        known[i].state = MEMBER_ALIVE;
        known[i].incarnation = 3;
    }
    known[2].state = MEMBER_LEFT;
    known[3].state = MEMBER_SUSPECT;
    CHECK_EQ_INT(membership_restore(a, known, 4, now), 0);
    s_drain(a, now);
    CHECK_EQ_INT(g_n, 0); /* restoring emits nothing */
    CHECK_EQ_INT(membership_size(a), 4);
    CHECK_EQ_INT(membership_alive_count(a), 1);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_DEAD);
    CHECK_EQ_INT(s_view(a, 2)->state, MEMBER_LEFT);
    CHECK_EQ_INT(s_view(a, 3)->state, MEMBER_DEAD);
    CHECK_EQ_INT(membership_self(a)->incarnation, 1);

    /* Hints are contacted to join (not the left one). */
    s_run(a, &now, now);
    int syncs = 0;
    for (int i = 0; i < g_n; i++) {
        if (g_out[i].type != MOUT_SEND || g_out[i].msg->type != WIRE_SYNC)
            continue;
        syncs++;
        CHECK(g_out[i].to_id_known);
        int to = s_node_of(g_out[i].to_id);
        CHECK(to == 1 || to == 3);
        /* Hints are never passed on as facts. */
        for (uint32_t k = 0; k < g_out[i].msg->n_updates; k++)
            CHECK(s_node_of(g_out[i].msg->updates[k].id) == 0);
    }
    CHECK_EQ_INT(syncs, 2);

    /* News at the stored incarnation replaces a hint, even "alive" at the
     * same incarnation (a plain dead record would need a higher one). */
    membership_msg_t *msg = s_msg(5, WIRE_GOSSIP, 2);
    s_update(&msg->updates[msg->n_updates++], 1, MEMBER_ALIVE, 3);
    s_update(&msg->updates[msg->n_updates++], 3, MEMBER_ALIVE, 2); /* older: ignored */
    s_deliver(a, now, 5, &msg);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_ALIVE);
    CHECK_EQ_INT(s_view(a, 3)->state, MEMBER_DEAD);
    CHECK_EQ_INT(membership_restore(a, NULL, 1, now), GG_EINVAL);
    s_clear();
    membership_destroy(&a);
}

static void test_flags_and_force_leave(void)
{
    membership_profile_t p = s_profile();
    uint64_t now = 1000;
    membership_t *a = s_node0(&p, now);
    REQUIRE(a);
    s_add_peers(a, now, 3);
    s_clear();
    uint64_t sum = membership_checksum(a);
    CHECK_EQ_INT(membership_set_flags(a, now, MEMBER_FLAG_DRAINING), 0);
    s_drain(a, now);
    CHECK_EQ_INT(membership_self(a)->flags, MEMBER_FLAG_DRAINING);
    CHECK_EQ_INT(membership_self(a)->incarnation, 2);
    CHECK(membership_checksum(a) != sum);
    bool inc = false;
    for (int i = 0; i < g_n; i++)
        inc |= g_out[i].type == MOUT_INCARNATION && g_out[i].incarnation == 2;
    CHECK(inc);
    CHECK_EQ_INT(membership_set_flags(a, now, MEMBER_FLAG_DRAINING), 0); /* no change */
    CHECK_EQ_INT(membership_self(a)->incarnation, 2);

    uint8_t id[MEMBER_ID_LEN];
    s_id(1, id);
    CHECK_EQ_INT(membership_force_leave(a, now, id), GG_EBUSY);
    membership_msg_t *msg = s_msg(2, WIRE_GOSSIP, 1);
    s_update(&msg->updates[msg->n_updates++], 1, MEMBER_DEAD, 1);
    s_deliver(a, now, 2, &msg);
    CHECK_EQ_INT(membership_force_leave(a, now, id), 0);
    CHECK_EQ_INT(s_view(a, 1)->state, MEMBER_LEFT);
    CHECK_EQ_INT(membership_force_leave(a, now, id), 0);
    s_id(0, id);
    CHECK_EQ_INT(membership_force_leave(a, now, id), GG_EINVAL);
    s_id(9, id);
    CHECK_EQ_INT(membership_force_leave(a, now, id), GG_ENOTFOUND);
    /* The LEFT record is gossiped. */
    s_clear();
    s_run(a, &now, now + p.gossip_interval_ms);
    bool found = false;
    for (int i = 0; i < g_n; i++) {
        if (g_out[i].type != MOUT_SEND || g_out[i].msg->type != WIRE_GOSSIP)
            continue;
        for (uint32_t k = 0; k < g_out[i].msg->n_updates; k++)
            found |= s_is(g_out[i].msg->updates[k].id, 1) &&
                     g_out[i].msg->updates[k].state == MEMBER_LEFT;
    }
    CHECK(found);
    s_clear();
    membership_destroy(&a);
}

static void test_piggyback_bounds(void)
{
    membership_profile_t p = s_profile();
    p.max_piggyback = 4;
    uint64_t now = 1000;
    membership_t *a = s_node0(&p, now);
    REQUIRE(a);
    s_add_peers(a, now, 20);
    s_clear();
    /* 20 new members queued: every message carries at most 4 updates and
     * each update is sent retransmit_mult * ceil(log10(N + 1)) times. Pings
     * are answered so that no suspicion replaces a queued record. */
    uint32_t limit = p.retransmit_mult * (uint32_t) ceil(log10(21.0 + 1.0));
    int per_member[32] = {0};
    s_run_acking(a, &now, now + 200 * p.gossip_interval_ms, -1);
    for (int i = 0; i < g_n; i++) {
        if (g_out[i].type != MOUT_SEND)
            continue;
        uint32_t type = g_out[i].msg->type;
        if (type == WIRE_SYNC || type == WIRE_SYNC_REPLY)
            continue;
        CHECK(g_out[i].msg->n_updates <= 4);
        for (uint32_t k = 0; k < g_out[i].msg->n_updates; k++) {
            int who = s_node_of(g_out[i].msg->updates[k].id);
            if (who >= 2 && who <= 20 && g_out[i].msg->updates[k].state == MEMBER_ALIVE)
                per_member[who]++;
        }
    }
    CHECK_EQ_INT(membership_stats(a)->suspicions, 0);
    for (int who = 2; who <= 20; who++)
        CHECK_EQ_INT(per_member[who], limit);
    s_clear();
    membership_destroy(&a);
}

static void test_sync_is_bounded(void)
{
    /* 3,000 members with the longest names and addresses do not fit one
     * message: a SYNC carries a window that encodes within WIRE_MAX_MESSAGE,
     * and successive SYNCs cover different members. */
    membership_profile_t p = s_profile();
    uint64_t now = 1000;
    membership_t *a = s_node0(&p, now);
    REQUIRE(a);
    const uint32_t n = 3000, batch = 200;
    for (uint32_t first = 0; first < n; first += batch) {
        membership_msg_t *msg = s_msg(1, WIRE_SYNC_REPLY, batch);
        REQUIRE(msg);
        for (uint32_t i = first; i < first + batch; i++) {
            member_update_t *u = &msg->updates[msg->n_updates++];
            s_update(u, 2, MEMBER_ALIVE, 1);
            memcpy(u->id, &i, sizeof i);
            u->id[31] = 0xee;
            memset(u->name, 'n', MEMBER_NAME_MAX);
            memset(u->address, 'a', MEMBER_ADDRESS_MAX);
        }
        s_deliver(a, now, 1, &msg);
        s_clear();
    }
    CHECK_EQ_INT(membership_size(a), n + 2);
    uint8_t seen_first[2][MEMBER_ID_LEN];
    for (int round = 0; round < 2; round++) {
        membership_msg_t *sync = s_msg(1, WIRE_SYNC, 0);
        s_deliver(a, now, 1, &sync);
        int r = s_find_send(0, WIRE_SYNC_REPLY);
        REQUIRE(r >= 0);
        membership_msg_t *reply = g_out[r].msg;
        CHECK(reply->n_updates > 1000 && reply->n_updates < n);
        CHECK(s_is(reply->updates[0].id, 0)); /* self always */
        memcpy(seen_first[round], reply->updates[1].id, MEMBER_ID_LEN);
        uint8_t *data = NULL;
        size_t len = 0;
        CHECK_EQ_INT(membership_msg_encode(reply, &data, &len), 0);
        CHECK(len <= WIRE_MAX_MESSAGE);
        free(data);
        s_clear();
    }
    CHECK(memcmp(seen_first[0], seen_first[1], MEMBER_ID_LEN) != 0);
    membership_destroy(&a);
}

/* ------------------------------------------------------------------ */
/* codec                                                              */

static bool s_update_eq(const member_update_t *a, const member_update_t *b)
{
    return memcmp(a->id, b->id, MEMBER_ID_LEN) == 0 && strcmp(a->name, b->name) == 0 &&
           strcmp(a->address, b->address) == 0 && a->state == b->state &&
           a->incarnation == b->incarnation && a->flags == b->flags &&
           a->has_accuser == b->has_accuser &&
           (!a->has_accuser || memcmp(a->accuser, b->accuser, MEMBER_ID_LEN) == 0);
}

static int s_roundtrip(const membership_msg_t *in, membership_msg_t **out)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = membership_msg_encode(in, &data, &len);
    if (rc != 0)
        return rc;
    wire_msg_t w;
    rc = wire_decode(data, len, &w);
    free(data);
    if (rc != 0)
        return rc;
    rc = membership_msg_decode(&w, out);
    wire_msg_release(&w);
    return rc;
}

static void test_codec_roundtrip(void)
{
    const uint32_t types[] = {WIRE_PING,   WIRE_ACK,  WIRE_PING_REQ,   WIRE_NACK,
                              WIRE_GOSSIP, WIRE_SYNC, WIRE_SYNC_REPLY, WIRE_LEAVE};
    /* every type in both wire versions (updates as arrays; packed in a bin) */
    for (size_t tv = 0; tv < 2 * sizeof types / sizeof types[0]; tv++) {
        size_t t = tv / 2;
        uint32_t version = tv % 2 ? 2 : 1;
        membership_msg_t *in = s_msg(3, types[t], 3);
        REQUIRE(in);
        in->wire_version = version;
        in->seq = 0xfedcba9876543210ull;
        in->checksum = 0x0123456789abcdefull;
        in->sender.incarnation = UINT64_MAX;
        in->sender.flags = UINT32_MAX;
        if (types[t] == WIRE_LEAVE)
            in->sender.state = MEMBER_LEFT;
        s_id(4, in->target_id);
        s_addr(4, in->target_address, sizeof in->target_address);
        s_update(&in->updates[in->n_updates++], 5, MEMBER_ALIVE, 0);
        s_update(&in->updates[in->n_updates], 6, MEMBER_SUSPECT, 12);
        s_accuse(&in->updates[in->n_updates++], 7);
        s_update(&in->updates[in->n_updates], 8, MEMBER_LEFT, 99);
        memset(in->updates[in->n_updates].name, 'n', MEMBER_NAME_MAX);
        memset(in->updates[in->n_updates].address, 'a', MEMBER_ADDRESS_MAX);
        in->updates[in->n_updates++].flags = MEMBER_FLAG_DRAINING;

        membership_msg_t *out = NULL;
        CHECK_EQ_INT(s_roundtrip(in, &out), 0);
        REQUIRE(out);
        CHECK_EQ_INT(out->type, types[t]);
        CHECK_EQ_INT(out->wire_version, version);
        CHECK(s_update_eq(&out->sender, &in->sender));
        CHECK(out->checksum == in->checksum);
        CHECK_EQ_INT(out->n_updates, 3);
        for (uint32_t i = 0; i < 3 && i < out->n_updates; i++)
            CHECK(s_update_eq(&out->updates[i], &in->updates[i]));
        bool probe = types[t] == WIRE_PING || types[t] == WIRE_ACK || types[t] == WIRE_PING_REQ ||
                     types[t] == WIRE_NACK;
        if (probe) {
            CHECK(out->seq == in->seq);
            CHECK(memcmp(out->target_id, in->target_id, MEMBER_ID_LEN) == 0);
        }
        if (types[t] == WIRE_PING_REQ)
            CHECK_STR(out->target_address, in->target_address);
        membership_msg_destroy(&in);
        membership_msg_destroy(&out);
    }

    /* A SYNC at the entry bound with typical names and addresses fits. */
    membership_msg_t *big = s_msg(1, WIRE_SYNC, MEMBERSHIP_MAX_SYNC);
    REQUIRE(big);
    for (uint32_t i = 0; i < MEMBERSHIP_MAX_SYNC; i++) {
        member_update_t *u = &big->updates[big->n_updates++];
        s_update(u, 2, MEMBER_ALIVE, i);
        memcpy(u->id, &i, sizeof i);
        snprintf(u->name, sizeof u->name, "host-%05u", i);
        snprintf(u->address, sizeof u->address, "tcp://10.0.%u.%u:7700", i / 256, i % 256);
    }
    for (uint32_t version = 1; version <= 2; version++) {
        big->wire_version = version;
        membership_msg_t *out = NULL;
        CHECK_EQ_INT(s_roundtrip(big, &out), 0);
        CHECK(out && out->n_updates == MEMBERSHIP_MAX_SYNC);
        for (uint32_t i = 0; out && i < out->n_updates; i += 97)
            CHECK(s_update_eq(&out->updates[i], &big->updates[i]));
        membership_msg_destroy(&out);
    }
    membership_msg_destroy(&big);

    /* Encoding refuses what could not be decoded. */
    membership_msg_t *bad = s_msg(1, WIRE_GOSSIP, MEMBERSHIP_MAX_PIGGYBACK + 1);
    REQUIRE(bad);
    for (uint32_t i = 0; i <= MEMBERSHIP_MAX_PIGGYBACK; i++)
        s_update(&bad->updates[bad->n_updates++], 2, MEMBER_ALIVE, 1);
    uint8_t *data = NULL;
    size_t len = 0;
    CHECK_EQ_INT(membership_msg_encode(bad, &data, &len), GG_EINVAL);
    bad->n_updates = 1;
    bad->updates[0].address[0] = '\0';
    CHECK_EQ_INT(membership_msg_encode(bad, &data, &len), GG_EINVAL);
    bad->updates[0].address[0] = 't';
    bad->updates[0].state = (member_state_t) 7;
    CHECK_EQ_INT(membership_msg_encode(bad, &data, &len), GG_EINVAL);
    bad->updates[0].state = MEMBER_ALIVE;
    bad->type = WIRE_PLAN;
    CHECK_EQ_INT(membership_msg_encode(bad, &data, &len), GG_EINVAL);
    membership_msg_destroy(&bad);
    CHECK(membership_msg_new(WIRE_SYNC, MEMBERSHIP_MAX_SYNC + 1) == NULL);
}

/* Version 2 updates, packed: a valid pair decodes; each broken variant of
 * it is refused as a whole. */
static int s_decode_packed(const uint8_t *u, size_t len)
{
    uint8_t sender[MEMBER_ID_LEN];
    s_id(1, sender);
    wire_writer_t *w = wire_writer_new_version(2, WIRE_GOSSIP, sender, 7);
    wire_put_u64(w, "c", 1);
    wire_put_str(w, "n", "node1");
    wire_put_str(w, "a", "tcp://node1:7700");
    wire_put_u64(w, "i", 1);
    wire_put_u64(w, "st", 0);
    wire_put_u64(w, "f", 0);
    wire_put_bin(w, "u", u, len);
    const uint8_t *data;
    size_t n;
    int rc = wire_writer_finish(w, &data, &n);
    if (rc == 0) {
        wire_msg_t msg;
        rc = wire_decode(data, n, &msg);
        if (rc == 0) {
            membership_msg_t *out = NULL;
            rc = membership_msg_decode(&msg, &out);
            if (rc == 0) {
                CHECK_EQ_INT(out->n_updates, 2);
                CHECK_STR(out->updates[1].name, "b");
                CHECK_STR(out->updates[1].address, "tcp://b:1");
                CHECK(out->updates[1].has_accuser && out->updates[1].accuser[0] == 0xAC);
                CHECK(out->updates[1].incarnation == 0x0102030405060708ull);
                CHECK(out->updates[1].flags == 0x8u && out->updates[1].state == MEMBER_SUSPECT);
            }
            membership_msg_destroy(&out);
            wire_msg_release(&msg);
        }
    }
    wire_writer_destroy(&w);
    return rc;
}

static void test_codec_packed_malformed(void)
{
    /* update 0 (47 bytes): node 2, alive at incarnation 1 (one byte), no
     * flags, "a" at tcp://a:1; update 1 (87 bytes): node 3, suspect at
     * incarnation 0x0102030405060708 (eight bytes), flags 0x8 (one byte),
     * accused by 0xAC.., "b" at tcp://b:1 */
    uint8_t u[47 + 87] = {0};
    memset(u, 2, 32);
    u[33] = 1, u[34] = 9, u[35] = 0, u[36] = 1;
    memcpy(u + 37, "atcp://a:1", 10);
    uint8_t *v1 = u + 47;
    memset(v1, 3, 32);
    v1[32] = MEMBER_SUSPECT, v1[33] = 1, v1[34] = 9;
    v1[35] = 1 | 7 << 1 | 1 << 4; /* accuser, 8 incarnation bytes, 1 flags byte */
    for (int k = 0; k < 8; k++)
        v1[36 + k] = (uint8_t) (8 - k);
    v1[44] = 0x8;
    memset(v1 + 45, 0xAC, 32);
    memcpy(v1 + 77, "btcp://b:1", 10);
    size_t len = sizeof u;
    CHECK_EQ_INT(s_decode_packed(u, len), 0);
    CHECK_EQ_INT(s_decode_packed(u, len - 1), GG_EMALFORMED); /* cut short */
    CHECK_EQ_INT(s_decode_packed(u, 35), GG_EMALFORMED);      /* less than a header */
    uint8_t v[sizeof u];
    const struct {
        size_t off;
        uint8_t val;
    } bad[] = {
        {32, 4},                        /* state beyond LEFT */
        {33, 65},                       /* name longer than MEMBER_NAME_MAX */
        {34, 0},                        /* empty address */
        {35, 0x80},                     /* the widths byte's top bit */
        {47 + 35, 1 | 7 << 1 | 5 << 4}, /* five bytes of flags */
        {37, 0},                        /* a NUL in the name */
        {40, 0},                        /* a NUL in the address */
        {47 + 34, 200},                 /* address beyond the bin */
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        memcpy(v, u, len);
        v[bad[k].off] = bad[k].val;
        CHECK_EQ_INT(s_decode_packed(v, len), GG_EMALFORMED);
    }
    /* more updates than a gossip message may carry */
    size_t many = (size_t) (MEMBERSHIP_MAX_PIGGYBACK + 1) * 47;
    uint8_t *m = malloc(many);
    REQUIRE(m);
    for (size_t k = 0; k < many; k += 47)
        memcpy(m + k, u, 47);
    CHECK_EQ_INT(s_decode_packed(m, many), GG_EMALFORMED);
    free(m);
}

/* Builds an envelope of `type` from node 1 whose body is written by fn. */
typedef void(s_body_fn)(wire_writer_t *w, int variant);

static int s_decode_custom(uint32_t type, uint32_t fields, s_body_fn *fn, int variant)
{
    uint8_t sender[MEMBER_ID_LEN];
    s_id(1, sender);
    wire_writer_t *w = wire_writer_new(type, sender, fields);
    if (!w)
        return GG_ENOMEM;
    fn(w, variant);
    const uint8_t *data;
    size_t len;
    int rc = wire_writer_finish(w, &data, &len);
    if (rc == 0) {
        wire_msg_t msg;
        rc = wire_decode(data, len, &msg);
        if (rc == 0) {
            membership_msg_t *out = NULL;
            rc = membership_msg_decode(&msg, &out);
            CHECK(rc == 0 ? out != NULL : out == NULL);
            membership_msg_destroy(&out);
            wire_msg_release(&msg);
        }
    }
    wire_writer_destroy(&w);
    return rc;
}

static void s_put_header(wire_writer_t *w, int skip)
{
    if (skip != 0)
        wire_put_u64(w, "c", 1);
    if (skip != 1)
        wire_put_str(w, "n", "node1");
    if (skip != 2)
        wire_put_str(w, "a", "tcp://node1:7700");
    if (skip != 3)
        wire_put_u64(w, "i", 1);
    if (skip != 4)
        wire_put_u64(w, "st", 0);
    if (skip != 5)
        wire_put_u64(w, "f", 0);
}

static void s_pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* One update array element; variant chooses the defect. */
static void s_pack_update_variant(msgpack_packer *pk, int variant)
{
    uint8_t id[MEMBER_ID_LEN];
    s_id(2, id);
    char longname[MEMBER_NAME_MAX + 2];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    msgpack_pack_array(pk, variant == 1 ? 5 : 7);
    msgpack_pack_bin(pk, variant == 2 ? 31 : MEMBER_ID_LEN);
    msgpack_pack_bin_body(pk, id, variant == 2 ? 31 : MEMBER_ID_LEN);
    s_pack_str(pk, variant == 3 ? longname : "node2");
    s_pack_str(pk, variant == 4 ? "" : "tcp://node2:7700");
    if (variant == 5)
        msgpack_pack_uint64(pk, 4); /* no such state */
    else if (variant == 6)
        s_pack_str(pk, "alive");
    else
        msgpack_pack_uint64(pk, 1);
    if (variant == 7)
        msgpack_pack_int64(pk, -1);
    else
        msgpack_pack_uint64(pk, 3);
    if (variant != 1)
        msgpack_pack_uint64(pk, variant == 8 ? (uint64_t) UINT32_MAX + 1 : 0);
    if (variant == 9)
        msgpack_pack_bin(pk, 0), msgpack_pack_bin_body(pk, id, 0);
    else if (variant != 1)
        msgpack_pack_nil(pk);
}

static void s_body_header_skip(wire_writer_t *w, int variant)
{
    s_put_header(w, variant);
    wire_put_key(w, "u");
    msgpack_pack_array(wire_writer_packer(w), 0);
}

static void s_body_update(wire_writer_t *w, int variant)
{
    s_put_header(w, -1);
    wire_put_key(w, "u");
    msgpack_pack_array(wire_writer_packer(w), 1);
    s_pack_update_variant(wire_writer_packer(w), variant);
}

static void s_body_misc(wire_writer_t *w, int variant)
{
    s_put_header(w, -1);
    switch (variant) {
    case 0: wire_put_str(w, "u", "not an array"); break;
    case 1: wire_put_u64(w, "u", 1); break;
    case 2: /* state out of range in the header */
        wire_put_key(w, "u");
        msgpack_pack_array(wire_writer_packer(w), 1);
        msgpack_pack_uint64(wire_writer_packer(w), 5);
        break;
    default: /* an update that is not an array */
        wire_put_key(w, "u");
        msgpack_pack_array(wire_writer_packer(w), 1);
        msgpack_pack_map(wire_writer_packer(w), 0);
        break;
    }
}

static void s_body_ping(wire_writer_t *w, int variant)
{
    s_put_header(w, -1);
    wire_put_key(w, "u");
    msgpack_pack_array(wire_writer_packer(w), 0);
    uint8_t id[MEMBER_ID_LEN] = {0};
    if (variant != 0)
        wire_put_u64(w, "q", 1);
    if (variant == 2)
        wire_put_bin(w, "ti", id, 16);
    else if (variant != 1)
        wire_put_bin(w, "ti", id, MEMBER_ID_LEN);
    if (variant == 3)
        wire_put_str(w, "ta", "");
    else if (variant == 4)
        wire_put_u64(w, "ta", 4);
}

static void s_body_too_many(wire_writer_t *w, int variant)
{
    s_put_header(w, -1);
    wire_put_key(w, "u");
    uint32_t n = (variant ? MEMBERSHIP_MAX_SYNC : MEMBERSHIP_MAX_PIGGYBACK) + 1;
    msgpack_pack_array(wire_writer_packer(w), n);
    for (uint32_t i = 0; i < n; i++)
        s_pack_update_variant(wire_writer_packer(w), 0);
}

static void test_codec_malformed(void)
{
    /* The valid baseline decodes. */
    CHECK_EQ_INT(s_decode_custom(WIRE_GOSSIP, 7, s_body_header_skip, -1), 0);
    CHECK_EQ_INT(s_decode_custom(WIRE_GOSSIP, 7, s_body_update, 0), 0);
    /* Every missing header field. */
    for (int skip = 0; skip < 6; skip++)
        CHECK_EQ_INT(s_decode_custom(WIRE_GOSSIP, 6, s_body_header_skip, skip), GG_EMALFORMED);
    /* Every defective update field. */
    for (int v = 1; v <= 9; v++)
        CHECK_EQ_INT(s_decode_custom(WIRE_GOSSIP, 7, s_body_update, v), GG_EMALFORMED);
    for (int v = 0; v <= 3; v++)
        CHECK_EQ_INT(s_decode_custom(WIRE_GOSSIP, 7, s_body_misc, v), GG_EMALFORMED);
    /* Probe fields: missing seq, missing or short target, bad target address. */
    CHECK_EQ_INT(s_decode_custom(WIRE_PING, 8, s_body_ping, 0), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_custom(WIRE_PING, 8, s_body_ping, 1), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_custom(WIRE_PING, 9, s_body_ping, 2), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_custom(WIRE_PING, 9, s_body_ping, 5), 0);
    CHECK_EQ_INT(s_decode_custom(WIRE_PING_REQ, 9, s_body_ping, 5), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_custom(WIRE_PING_REQ, 10, s_body_ping, 3), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_custom(WIRE_PING_REQ, 10, s_body_ping, 4), GG_EMALFORMED);
    /* Counts over the bound. */
    CHECK_EQ_INT(s_decode_custom(WIRE_GOSSIP, 7, s_body_too_many, 0), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_custom(WIRE_SYNC, 7, s_body_too_many, 0), 0);
    /* Not a membership type. */
    CHECK_EQ_INT(s_decode_custom(WIRE_PLAN, 7, s_body_header_skip, -1), GG_EINVAL);
}

static void test_codec_mutations(void)
{
    /* Random corruption of a valid message never crashes the decoder. */
    membership_msg_t *in = s_msg(3, WIRE_PING_REQ, 4);
    REQUIRE(in);
    s_id(4, in->target_id);
    s_addr(4, in->target_address, sizeof in->target_address);
    for (int i = 0; i < 4; i++) {
        s_update(&in->updates[in->n_updates], 5 + i, (member_state_t) (i % 4), (uint64_t) i);
        if (i % 2)
            s_accuse(&in->updates[in->n_updates], 9);
        in->n_updates++;
    }
    rng_t rng;
    rng_seed(&rng, 1234);
    /* in both wire versions */
    for (uint32_t version = 1; version <= 2; version++) {
        in->wire_version = version;
        uint8_t *data = NULL;
        size_t len = 0;
        REQUIRE(membership_msg_encode(in, &data, &len) == 0);
        uint8_t *buf = malloc(len);
        REQUIRE(buf);
        int decoded = 0;
        for (int iter = 0; iter < 20000; iter++) {
            memcpy(buf, data, len);
            int flips = 1 + (int) rng_below(&rng, 4);
            for (int f = 0; f < flips; f++)
                buf[rng_below(&rng, len)] = (uint8_t) rng_next(&rng);
            size_t l = rng_below(&rng, 8) == 0 ? rng_below(&rng, len + 1) : len;
            wire_msg_t w;
            if (wire_decode(buf, l, &w) != 0)
                continue;
            membership_msg_t *out = NULL;
            if (membership_msg_decode(&w, &out) == 0) {
                decoded++;
                CHECK(out->n_updates <= MEMBERSHIP_MAX_PIGGYBACK || out->type == WIRE_SYNC ||
                      out->type == WIRE_SYNC_REPLY);
            }
            membership_msg_destroy(&out);
            wire_msg_release(&w);
        }
        CHECK(decoded > 0);
        free(buf);
        free(data);
    }
    membership_msg_destroy(&in);
}

/* ------------------------------------------------------------------ */
/* a small fleet                                                      */

typedef struct {
    int subject;   /* node whose transitions are recorded, -1: any */
    int dead_seen; /* CHANGED to DEAD observed */
    int left_seen; /* CHANGED to LEFT observed */
    int removed_seen;
    uint64_t first_dead_at;
} s_watch_t;

static void s_watch_hook(void *arg, mini_net_t *net, int node, const membership_out_t *out)
{
    s_watch_t *w = arg;
    if (out->type == MOUT_REMOVED) {
        w->removed_seen++;
        return;
    }
    if (out->type != MOUT_CHANGED)
        return;
    if (w->subject >= 0 && (node == w->subject ||
                            memcmp(out->member.id, net->nodes[w->subject].id, MEMBER_ID_LEN) != 0))
        return;
    if (out->member.state == MEMBER_DEAD) {
        if (!w->dead_seen)
            w->first_dead_at = net->now;
        w->dead_seen++;
    }
    if (out->member.state == MEMBER_LEFT)
        w->left_seen++;
}

/* Every running node lists every running node alive, with one checksum. */
static bool s_converged(mini_net_t *net, void *arg)
{
    (void) arg;
    uint64_t sum = 0;
    bool first = true;
    size_t up = 0;
    for (int i = 0; i < net->n; i++)
        up += net->nodes[i].m != NULL;
    for (int i = 0; i < net->n; i++) {
        membership_t *m = net->nodes[i].m;
        if (!m)
            continue;
        if (membership_alive_count(m) != up)
            return false;
        for (int j = 0; j < net->n; j++) {
            if (!net->nodes[j].m)
                continue;
            const member_t *v = mn_view(net, i, j);
            if (!v || v->state != MEMBER_ALIVE)
                return false;
        }
        if (first)
            sum = membership_checksum(m);
        else if (membership_checksum(m) != sum)
            return false;
        first = false;
    }
    return true;
}

typedef struct {
    int subject;
    member_state_t state;
} s_state_goal_t;

/* Every running node (but the subject) sees the subject in `state`. */
static bool s_all_see(mini_net_t *net, void *arg)
{
    const s_state_goal_t *g = arg;
    for (int i = 0; i < net->n; i++) {
        if (!net->nodes[i].m || i == g->subject)
            continue;
        const member_t *v = mn_view(net, i, g->subject);
        if (!v || v->state != g->state)
            return false;
    }
    return true;
}

static int s_fleet(mini_net_t *net, int n, uint64_t seed)
{
    membership_profile_t p = s_profile();
    if (mn_init(net, &p, n, seed) != 0)
        return -1;
    for (int i = 0; i < n; i++)
        if (mn_start(net, i, 1, i == 0 ? -1 : 0) != 0)
            return -1;
    return 0;
}

/* The detection bound the profile implies for n nodes: every survivor
 * probes the crashed node within two probe rounds, the probe takes one
 * interval, the suspicion at most its maximum, and the news a few gossip
 * rounds. */
static uint64_t s_detect_bound(const membership_profile_t *p, int n)
{
    double scale = log10((double) n);
    uint64_t min = (uint64_t) (p->suspicion_mult * (scale < 1 ? 1 : scale) * p->probe_interval_ms);
    return 2ull * n * p->probe_interval_ms + p->probe_interval_ms +
           min * p->suspicion_max_timeout_mult + 10ull * p->gossip_interval_ms;
}

static void test_net_join_converges(void)
{
    mini_net_t net;
    REQUIRE(s_fleet(&net, 8, 11) == 0);
    CHECK(mn_run_until_pred(&net, net.now + 5000, s_converged, NULL));
    for (int i = 0; i < net.n; i++) {
        CHECK_EQ_INT(membership_size(net.nodes[i].m), 8);
        CHECK(membership_joined(net.nodes[i].m));
        CHECK_EQ_INT(membership_health(net.nodes[i].m), 0);
    }
    /* Stays converged, with no suspicion at all on a healthy network. */
    mn_run_until(&net, net.now + 10000);
    CHECK(s_converged(&net, NULL));
    uint64_t suspicions = 0;
    for (int i = 0; i < net.n; i++)
        suspicions += membership_stats(net.nodes[i].m)->suspicions;
    CHECK_EQ_INT(suspicions, 0);
    CHECK_EQ_INT(net.codec_errors, 0);
    CHECK_EQ_INT(net.handle_errors, 0);
    mn_free(&net);
}

/* A fleet halfway through an upgrade: nodes 1, 3, 5 and 7 speak wire
 * version 1 only and start without MEMBER_FLAG_WIRE2. Every message a node
 * gets is one it reads, both versions are in use, and the views converge
 * with no suspicion. */
static void test_net_mixed_versions(void)
{
    mini_net_t net;
    membership_profile_t p = s_profile();
    REQUIRE(mn_init(&net, &p, 8, 12) == 0);
    for (int i = 1; i < 8; i += 2)
        net.nodes[i].wire_version = 1;
    for (int i = 0; i < 8; i++)
        REQUIRE(mn_start(&net, i, 1, i == 0 ? -1 : 0) == 0);
    CHECK(mn_run_until_pred(&net, net.now + 5000, s_converged, NULL));
    mn_run_until(&net, net.now + 10000);
    CHECK(s_converged(&net, NULL));
    for (int i = 0; i < 8; i++) {
        const member_t *self = membership_self(net.nodes[i].m);
        CHECK(((self->flags & MEMBER_FLAG_WIRE2) != 0) == (i % 2 == 0));
        CHECK_EQ_INT(membership_stats(net.nodes[i].m)->suspicions, 0);
    }
    CHECK_EQ_INT(net.version_refused, 0);
    CHECK(net.delivered_version[1] > 0 && net.delivered_version[2] > 0);
    CHECK_EQ_INT(net.codec_errors, 0);
    CHECK_EQ_INT(net.handle_errors, 0);
    mn_free(&net);
}

static void test_net_deterministic(void)
{
    uint64_t trace[2], sums[2];
    for (int run = 0; run < 2; run++) {
        mini_net_t net;
        REQUIRE(s_fleet(&net, 6, 99) == 0);
        mn_run_until(&net, net.now + 3000);
        mn_crash(&net, 2);
        mn_run_until(&net, net.now + 3000);
        trace[run] = net.trace;
        sums[run] = membership_checksum(net.nodes[0].m);
        mn_free(&net);
    }
    CHECK(trace[0] == trace[1]);
    CHECK(sums[0] == sums[1]);
    mini_net_t other;
    REQUIRE(s_fleet(&other, 6, 100) == 0);
    mn_run_until(&other, other.now + 3000);
    mn_crash(&other, 2);
    mn_run_until(&other, other.now + 3000);
    CHECK(other.trace != trace[0]);
    mn_free(&other);
}

static void test_net_crash_and_restart(void)
{
    mini_net_t net;
    REQUIRE(s_fleet(&net, 8, 21) == 0);
    REQUIRE(mn_run_until_pred(&net, net.now + 5000, s_converged, NULL));
    s_watch_t watch = {.subject = -1};
    net.hook = s_watch_hook;
    net.hook_arg = &watch;

    /* Crash node 5: everyone else sees it DEAD within the bound, and no
     * one else is ever declared dead. */
    uint64_t crashed_at = net.now;
    mn_crash(&net, 5);
    s_state_goal_t dead5 = {5, MEMBER_DEAD};
    uint64_t bound = s_detect_bound(&net.profile, 8);
    CHECK(mn_run_until_pred(&net, crashed_at + bound, s_all_see, &dead5));
    CHECK(net.now - crashed_at <= bound);
    CHECK(watch.dead_seen == 7);
    for (int i = 0; i < net.n; i++) {
        if (i == 5)
            continue;
        CHECK_EQ_INT(membership_alive_count(net.nodes[i].m), 7);
    }

    /* Restart it with a higher incarnation: alive everywhere again. */
    uint64_t old_inc = net.nodes[5].incarnation;
    REQUIRE(mn_start(&net, 5, old_inc + 1, 0) == 0);
    uint64_t restarted_at = net.now;
    CHECK(mn_run_until_pred(&net, restarted_at + net.profile.push_pull_interval_ms, s_converged,
                            NULL));
    CHECK_EQ_INT(watch.dead_seen, 7);
    mn_free(&net);
}

static void test_net_restart_without_seed(void)
{
    /* A node restarted with only its stored member list (no seed) finds
     * the fleet again through those hints. */
    mini_net_t net;
    REQUIRE(s_fleet(&net, 5, 31) == 0);
    REQUIRE(mn_run_until_pred(&net, net.now + 5000, s_converged, NULL));
    member_t known[8];
    size_t n_known = 0;
    for (size_t i = 0; i < membership_size(net.nodes[3].m) && n_known < 8; i++)
        known[n_known++] = *membership_at(net.nodes[3].m, i);
    mn_crash(&net, 3);
    s_state_goal_t dead3 = {3, MEMBER_DEAD};
    REQUIRE(mn_run_until_pred(&net, net.now + s_detect_bound(&net.profile, 5), s_all_see, &dead3));
    REQUIRE(mn_start(&net, 3, net.nodes[3].incarnation + 1, -1) == 0);
    CHECK_EQ_INT(membership_restore(net.nodes[3].m, known, n_known, net.now), 0);
    CHECK(mn_run_until_pred(&net, net.now + 3000, s_converged, NULL));
    mn_free(&net);
}

static void test_net_leave(void)
{
    mini_net_t net;
    REQUIRE(s_fleet(&net, 6, 41) == 0);
    REQUIRE(mn_run_until_pred(&net, net.now + 5000, s_converged, NULL));
    s_watch_t watch = {.subject = 3};
    net.hook = s_watch_hook;
    net.hook_arg = &watch;
    membership_leave(net.nodes[3].m, net.now);
    mn_drain(&net, 3);
    s_state_goal_t left3 = {3, MEMBER_LEFT};
    CHECK(mn_run_until_pred(&net, net.now + 2000, s_all_see, &left3));
    /* The leaver stops once its announcement is out; the rest never call
     * it dead. */
    mn_run_until(&net, net.now + 1000);
    CHECK_EQ_INT(membership_broadcasts_pending(net.nodes[3].m), 0);
    mn_crash(&net, 3);
    mn_run_until(&net, net.now + 10000);
    CHECK(s_all_see(&net, &left3));
    CHECK_EQ_INT(watch.dead_seen, 0);
    CHECK_EQ_INT(watch.left_seen, 5);
    for (int i = 0; i < net.n; i++)
        if (i != 3)
            CHECK_EQ_INT(membership_alive_count(net.nodes[i].m), 5);
    mn_free(&net);
}

static void test_net_partition_heals(void)
{
    mini_net_t net;
    REQUIRE(s_fleet(&net, 8, 51) == 0);
    REQUIRE(mn_run_until_pred(&net, net.now + 5000, s_converged, NULL));
    /* {0,1,2,3} | {4,5,6,7} */
    for (int a = 0; a < 4; a++)
        for (int b = 4; b < 8; b++)
            mn_cut(&net, a, b, true);
    mn_run_until(&net, net.now + 2 * s_detect_bound(&net.profile, 8));
    for (int a = 0; a < 8; a++) {
        CHECK_EQ_INT(membership_alive_count(net.nodes[a].m), 4);
        for (int b = 0; b < 8; b++) {
            const member_t *v = mn_view(&net, a, b);
            bool same_side = (a < 4) == (b < 4);
            CHECK(v && v->state == (same_side ? MEMBER_ALIVE : MEMBER_DEAD));
        }
    }
    /* Healed: the sides find each other through reconnects. */
    for (int a = 0; a < 4; a++)
        for (int b = 4; b < 8; b++)
            mn_cut(&net, a, b, false);
    uint64_t bound = 4ull * net.profile.reconnect_interval_ms + s_detect_bound(&net.profile, 8);
    CHECK(mn_run_until_pred(&net, net.now + bound, s_converged, NULL));
    mn_free(&net);
}

static void test_net_loss_no_false_dead(void)
{
    mini_net_t net;
    REQUIRE(s_fleet(&net, 10, 61) == 0);
    REQUIRE(mn_run_until_pred(&net, net.now + 5000, s_converged, NULL));
    s_watch_t watch = {.subject = -1};
    net.hook = s_watch_hook;
    net.hook_arg = &watch;
    net.loss = 0.10;
    mn_run_until(&net, net.now + 120000); /* 1,200 probe intervals */
    CHECK_EQ_INT(watch.dead_seen, 0);
    uint64_t suspicions = 0, refutations = 0;
    for (int i = 0; i < net.n; i++) {
        suspicions += membership_stats(net.nodes[i].m)->suspicions;
        refutations += membership_stats(net.nodes[i].m)->refutations;
    }
    fprintf(stderr,
            "  10%% loss over 120 s: %llu messages, %llu dropped, %llu suspicions, "
            "%llu refutations, 0 deaths expected (%d)\n",
            (unsigned long long) net.sent, (unsigned long long) net.dropped,
            (unsigned long long) suspicions, (unsigned long long) refutations, watch.dead_seen);
    CHECK(net.dropped > net.sent / 20); /* the loss really happened */
    net.loss = 0;
    CHECK(mn_run_until_pred(&net, net.now + 5000, s_converged, NULL));
    mn_free(&net);
}

int main(void)
{
    GG_RUN(test_profiles);
    GG_RUN(test_views_and_checksum);
    GG_RUN(test_suspect_then_dead_by_timeout);
    GG_RUN(test_suspect_refuted_by_alive);
    GG_RUN(test_confirmations_shrink_suspicion);
    GG_RUN(test_self_refutation);
    GG_RUN(test_merge_dead_is_suspect);
    GG_RUN(test_leave);
    GG_RUN(test_reap);
    GG_RUN(test_gossip_to_the_dead);
    GG_RUN(test_seed_backoff);
    GG_RUN(test_awareness_scales_probes);
    GG_RUN(test_ping_ack_relay_nack);
    GG_RUN(test_identity_checks);
    GG_RUN(test_restore_hints);
    GG_RUN(test_flags_and_force_leave);
    GG_RUN(test_piggyback_bounds);
    GG_RUN(test_sync_is_bounded);
    GG_RUN(test_codec_roundtrip);
    GG_RUN(test_codec_malformed);
    GG_RUN(test_codec_packed_malformed);
    GG_RUN(test_codec_mutations);
    GG_RUN(test_net_join_converges);
    GG_RUN(test_net_mixed_versions);
    GG_RUN(test_net_deterministic);
    GG_RUN(test_net_crash_and_restart);
    GG_RUN(test_net_restart_without_seed);
    GG_RUN(test_net_leave);
    GG_RUN(test_net_partition_heals);
    GG_RUN(test_net_loss_no_false_dead);
    GG_DONE();
}
