/* test_rendezvous.c: ownership spreads evenly and moves minimally. */
#include "gg_test.h"
#include "rendezvous.h"

#include <stdint.h>

#define NODES   100
#define TARGETS 20000

static void s_seeds(uint64_t *seeds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t id[32] = {0};
        id[0] = (uint8_t) i;
        id[1] = (uint8_t) (i >> 8);
        id[31] = 0xA5;
        seeds[i] = rendezvous_node_seed(id);
    }
}

static void test_deterministic(void)
{
    CHECK(rendezvous_key("abc", 3) == rendezvous_key("abc", 3));
    CHECK(rendezvous_key("abc", 3) != rendezvous_key("abd", 3));
    uint64_t seeds[3];
    s_seeds(seeds, 3);
    uint64_t k = rendezvous_key("component:default/x", 19);
    CHECK_EQ_INT(rendezvous_owner(seeds, 3, k), rendezvous_owner(seeds, 3, k));
}

static void test_balance_and_minimal_moves(void)
{
    static uint64_t seeds[NODES + 1];
    static size_t owner_before[TARGETS];
    size_t counts[NODES] = {0};
    s_seeds(seeds, NODES + 1);
    for (size_t t = 0; t < TARGETS; t++) {
        uint64_t k = rendezvous_key(&t, sizeof t);
        owner_before[t] = rendezvous_owner(seeds, NODES, k);
        counts[owner_before[t]]++;
    }
    size_t max = 0;
    for (size_t i = 0; i < NODES; i++)
        if (counts[i] > max)
            max = counts[i];
    double mean = (double) TARGETS / NODES;
    /* Plain rendezvous hashing: max/mean stays within binomial spread. */
    CHECK((double) max / mean < 1.5);

    /* A join moves only targets to the newcomer, about 1/(N+1) of them. */
    size_t moved = 0, moved_elsewhere = 0;
    for (size_t t = 0; t < TARGETS; t++) {
        uint64_t k = rendezvous_key(&t, sizeof t);
        size_t now = rendezvous_owner(seeds, NODES + 1, k);
        if (now != owner_before[t]) {
            moved++;
            if (now != NODES)
                moved_elsewhere++;
        }
    }
    CHECK_EQ_INT(moved_elsewhere, 0);
    double ideal = (double) TARGETS / (NODES + 1);
    CHECK(moved > ideal * 0.6 && moved < ideal * 1.4);

    /* Removing a node moves only its own targets. */
    size_t victim = 7;
    uint64_t fewer[NODES - 1];
    for (size_t i = 0, j = 0; i < NODES; i++)
        if (i != victim)
            fewer[j++] = seeds[i];
    for (size_t t = 0; t < TARGETS; t++) {
        uint64_t k = rendezvous_key(&t, sizeof t);
        size_t now = rendezvous_owner(fewer, NODES - 1, k);
        size_t now_orig = now >= victim ? now + 1 : now;
        if (owner_before[t] != victim)
            CHECK_EQ_INT(now_orig, owner_before[t]);
    }
}

int main(void)
{
    GG_RUN(test_deterministic);
    GG_RUN(test_balance_and_minimal_moves);
    GG_DONE();
}
