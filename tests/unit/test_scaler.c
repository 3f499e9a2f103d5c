/* test_scaler.c: the fleet scaler's decision rule (scaler_desired): the
 * backlog divided by targetsPerAgent, rounded up, within minAgents and
 * maxAgents. The scaler's messages and provider calls run with real agents in
 * tests/integration/test_scale.py. */
#include "gg_test.h"
#include "scaler.h"

static void test_desired(void)
{
    config_scale_t cfg = {
        .enabled = true, .targets_per_agent = 10, .min_agents = 1, .max_agents = 5};
    CHECK_EQ_INT(scaler_desired(&cfg, 0), 1); /* min */
    CHECK_EQ_INT(scaler_desired(&cfg, 1), 1);
    CHECK_EQ_INT(scaler_desired(&cfg, 10), 1);
    CHECK_EQ_INT(scaler_desired(&cfg, 11), 2); /* rounded up */
    CHECK_EQ_INT(scaler_desired(&cfg, 40), 4);
    CHECK_EQ_INT(scaler_desired(&cfg, 1000), 5); /* max */
    CHECK_EQ_INT(scaler_desired(&cfg, UINT64_MAX), 5);
    cfg.min_agents = 0;
    CHECK_EQ_INT(scaler_desired(&cfg, 0), 0);
    cfg.min_agents = 3;
    CHECK_EQ_INT(scaler_desired(&cfg, 5), 3);
    cfg.targets_per_agent = 0; /* never from the parser; read as 1 */
    CHECK_EQ_INT(scaler_desired(&cfg, 4), 4);
}

int main(void)
{
    GG_RUN(test_desired);
    GG_DONE();
}
