/*
 * sim_selftest.c: checks of the simulator's own machinery (gaggle-sim
 * --self-test, ctest sim/self-test): the event queue orders by (time,
 * insertion) and refuses to grow past its maximum, and the per-concern
 * generators are what a run's determinism rests on.
 */
#include "sim.h"

#include "gg_error.h"

#include <stdio.h>
#include <stdlib.h>

#define S_EVENTS 20000

static int s_fail(const char *what)
{
    fprintf(stderr, "gaggle-sim: self-test failed: %s\n", what);
    return 1;
}

static int s_queue_order(void)
{
    int rc = 0;
    sim_queue_t *q = sim_queue_new(S_EVENTS);
    rng_t rng;
    rng_seed(&rng, 7);
    if (!q)
        return s_fail("queue allocation");
    /* Random times with many ties; arg holds the insertion index. */
    for (uint64_t i = 0; i < S_EVENTS && rc == 0; i++)
        if (sim_queue_push(q, rng_below(&rng, 500), 1, 0, i, NULL) != 0)
            rc = s_fail("push below the maximum");
    if (rc == 0 && sim_queue_push(q, 1, 1, 0, 0, NULL) != GG_ETOOBIG)
        rc = s_fail("push beyond the maximum must fail");
    sim_event_t prev = {0}, ev;
    size_t n = 0;
    while (rc == 0 && sim_queue_pop(q, &ev)) {
        if (n > 0 && (ev.at < prev.at || (ev.at == prev.at && ev.arg < prev.arg)))
            rc = s_fail("events out of (time, insertion) order");
        prev = ev;
        n++;
    }
    if (rc == 0 && n != S_EVENTS)
        rc = s_fail("events lost");
    if (rc == 0 && sim_queue_high_water(q) != S_EVENTS)
        rc = s_fail("high-water mark");
    sim_queue_destroy(&q);
    if (rc == 0 && q != NULL)
        rc = s_fail("destroy must clear the pointer");
    return rc;
}

/* Interleaved pushes and pops keep the order too. */
static int s_queue_interleaved(void)
{
    int rc = 0;
    sim_queue_t *q = sim_queue_new(S_EVENTS);
    rng_t rng;
    rng_seed(&rng, 11);
    if (!q)
        return s_fail("queue allocation");
    uint64_t now = 0, seq = 0;
    sim_event_t ev;
    for (int round = 0; round < S_EVENTS && rc == 0; round++) {
        for (int k = 0; k < 3; k++)
            if (sim_queue_push(q, now + rng_below(&rng, 50), 1, 0, seq++, NULL) != 0)
                rc = s_fail("interleaved push");
        if (sim_queue_pop(q, &ev)) {
            if (ev.at < now)
                rc = s_fail("time went backwards");
            now = ev.at;
        }
        if (sim_queue_size(q) > S_EVENTS / 2) {
            while (rc == 0 && sim_queue_pop(q, &ev)) {
                if (ev.at < now)
                    rc = s_fail("time went backwards while draining");
                now = ev.at;
            }
        }
    }
    sim_queue_destroy(&q);
    return rc;
}

int sim_self_test(void)
{
    int rc = s_queue_order();
    if (rc == 0)
        rc = s_queue_interleaved();
    return rc;
}
