/*
 * test_fleet_feed_wrap.c: the change feed when its 32-bit sequence numbers
 * run out. fleet.c is built here with a small S_SEQ_MAX, so that a plan's
 * few hundred changes renumber every node's feed several times; pulls then
 * name a feed id the server no longer has and are served from the start.
 * Under loss, duplication and reordering (pushes are lost, so pulls must
 * carry the changes) every target still runs once and every replica ends
 * with the same records.
 */
#define S_SEQ_MAX 120u
#include "fleet.c"

#include "fleet_net.h"
#include "gg_test.h"

#include <stdio.h>

#define NODES   4
#define TARGETS 80

static bool s_all_done(fleet_net_t *net, void *arg)
{
    const fn_plan_t *p = &net->plans[*(const int *) arg];
    for (int n = 0; n < net->n; n++)
        for (uint32_t i = 0; i < p->n; i++) {
            const progress_rec_t *r = fleet_record(net->nodes[n].f, p->id, i);
            if (!r || !target_state_terminal(r->state))
                return false;
        }
    return true;
}

static bool s_same_everywhere(fleet_net_t *net, void *arg)
{
    const fn_plan_t *p = &net->plans[*(const int *) arg];
    for (int n = 1; n < net->n; n++)
        for (uint32_t i = 0; i < p->n; i++) {
            const progress_rec_t *a = fleet_record(net->nodes[0].f, p->id, i);
            const progress_rec_t *b = fleet_record(net->nodes[n].f, p->id, i);
            if (!a || !b || progress_compare(a, b) != 0 || strcmp(a->error, b->error) != 0)
                return false;
        }
    return true;
}

static void test_feed_wraps(void)
{
    fleet_config_t cfg;
    REQUIRE(fleet_config_get("test", &cfg) == 0);
    fleet_net_t net;
    REQUIRE(fn_init(&net, &cfg, NODES, 21) == 0);
    net.loss = 0.3;
    net.dup = 0.2;
    net.latency_max = 60;
    fleet_rollout_t ro;
    memset(&ro, 0, sizeof ro);
    int k = fn_plan(&net, TARGETS, &ro);
    REQUIRE(k >= 0);
    uint64_t first_id[NODES];
    for (int i = 0; i < NODES; i++) {
        REQUIRE(fn_start(&net, i, false) == 0);
        first_id[i] = net.nodes[i].f->feed_id;
    }
    fn_view_all(&net);
    CHECK(fn_run_until_pred(&net, net.now + 600000, s_all_done, &k));
    net.loss = 0;
    net.dup = 0;
    CHECK(fn_run_until_pred(&net, net.now + 120000, s_same_everywhere, &k));
    const fn_plan_t *p = &net.plans[k];
    CHECK(fn_ran_once(&net, k) == p->n);
    CHECK(net.overlaps == 0 && net.codec_errors == 0 && net.handle_errors == 0);
    for (int i = 0; i < NODES; i++) {
        const fleet_t *f = net.nodes[i].f;
        fprintf(stderr, "  node %d: feed at %llu, %llu changes\n", i, (unsigned long long) f->seq,
                (unsigned long long) fleet_stats(f)->records_in);
        CHECK(f->feed_id != first_id[i]); /* renumbered at least once */
        CHECK(f->seq <= S_SEQ_MAX);
        /* the feed is in order, numbered from 1 up */
        uint64_t last = 0;
        uint32_t items = 0;
        for (uint32_t r = f->feed_head; r != S_NONE; r = *s_link(f, r).next, items++) {
            CHECK(s_seq_of(f, r) > last);
            last = s_seq_of(f, r);
        }
        CHECK(last == f->seq && items >= TARGETS);
    }
    fprintf(stderr, "  %llu sent, %llu dropped\n", (unsigned long long) net.sent,
            (unsigned long long) net.dropped);
    fn_free(&net);
}

int main(void)
{
    GG_RUN(test_feed_wraps);
    GG_DONE();
}
